"""virtio-net-pci on -netdev tap, in a network namespace this test creates:
a tap device with 10.9.0.1/24 on the host side of the namespace, vmon
started inside it with -netdev tap,ifname=...,script=no,downscript=no, and
the Debian guest kit under -accel emu configuring 10.9.0.2/24 on eth0.
The guest pings the host, sends a line to a host listener with busybox nc,
and receives one from the host on a `nc -l`.  Without CAP_NET_ADMIN (no
`ip netns add`) the test skips and says why.

Environment: VMON, GUEST_KIT (see test_virtio_blk.py)."""
import os
import subprocess
import time

import pytest

from conftest import VMON, serial_text
from test_virtio_blk import kit, make_initrd, results  # noqa: F401 (kit is a fixture)

BUDGET = 900
HOST_IP, GUEST_IP = "10.9.0.1", "10.9.0.2"
TAP = "vmontap0"

GUEST_SCRIPT = r"""
ip link set lo up
ip link set eth0 up
ip addr add 10.9.0.2/24 dev eth0
echo "T ping=$(ping -c 3 -W 10 10.9.0.1 2>/dev/null | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
echo hello-from-guest | nc 10.9.0.1 7001
echo "T sent=$?"
echo "T listening"
nc -l -p 7777 > /tmp/nc.out
echo "T nc=$(cat /tmp/nc.out)"
echo T-END
"""

LISTENER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.9.0.1", 7001))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
data = b""
while True:
    b = c.recv(4096)
    if not b:
        break
    data += b
print(data.decode(errors="replace").strip(), flush=True)
"""

SENDER = r"""
import socket
with socket.create_connection(("10.9.0.2", 7777), timeout=30) as s:
    s.sendall(b"hello-from-host\n")
"""


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.fixture
def netns():
    name = f"vmon-tap-{os.getpid()}"
    r = sh("ip", "netns", "add", name)
    if r.returncode != 0:
        pytest.skip(f"cannot create a network namespace (needs CAP_NET_ADMIN): "
                    f"{r.stderr.strip()}")
    try:
        for cmd in (["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                    ["ip", "addr", "add", f"{HOST_IP}/24", "dev", TAP],
                    ["ip", "link", "set", TAP, "up"], ["ip", "link", "set", "lo", "up"]):
            r = sh("ip", "netns", "exec", name, *cmd)
            if r.returncode != 0:
                pytest.skip(f"cannot set up {TAP} in {name} ({' '.join(cmd)}): "
                            f"{r.stderr.strip()}")
        yield name
    finally:
        sh("ip", "netns", "del", name)


def test_virtio_net_tap(tmp_path, kit, netns):
    initrd = make_initrd(tmp_path, "tap", GUEST_SCRIPT)
    serial = tmp_path / "serial.log"
    listener = subprocess.Popen(["ip", "netns", "exec", netns, "/usr/bin/python3", "-c",
                                 LISTENER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    assert listener.stdout.readline().strip() == "ready", listener.stderr.read()
    cmd = ["ip", "netns", "exec", netns, VMON, "-accel", "emu", "-m", "256", "-nographic",
           "-no-reboot", "-serial", f"file:{serial}",
           "-kernel", os.path.join(kit, "vmlinuz"), "-initrd", initrd,
           "-append", "console=ttyS0 quiet vmon.test=tap",
           "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
           "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:77"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    sent = False
    start = time.monotonic()
    try:
        while time.monotonic() - start < BUDGET and p.poll() is None:
            time.sleep(0.5)
            log = serial.read_text(errors="replace") if serial.exists() else ""
            if not sent and "T listening" in log:
                time.sleep(1)
                r = sh("ip", "netns", "exec", netns, "/usr/bin/python3", "-c", SENDER)
                assert r.returncode == 0, r.stderr
                sent = True
            if "T-END" in log:
                break
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        if listener.poll() is None:
            listener.kill()
    got, _ = listener.communicate(timeout=30)
    log = serial_text(serial.read_text(errors="replace"))
    print(log[-2000:])
    r = results(log)
    assert "T-END" in log, f"guest did not finish\n{log[-3000:]}\n{p.stderr.read()}"
    assert r["ping"] == "3", log[-2000:]
    assert r["sent"] == "0"
    assert got.strip() == "hello-from-guest"
    assert r["nc"] == "hello-from-host"
