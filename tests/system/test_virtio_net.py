"""virtio-net-pci on -netdev user (libslirp) and the virtio console, with the
Debian guest kit under -accel emu: the guest's virtio_net takes a DHCP lease
from slirp (busybox udhcpc), fetches a file with busybox wget from an HTTP
server this test runs on 127.0.0.1 (reached as 10.0.2.2) and checks its
sha256, uploads 1 MiB of random bytes with busybox nc to a listener here
(guest->host: the NIC's checksum completion and TSO, whose feature bits the
guest reports from sysfs), and a hostfwd rule lets the host connect to a
guest `nc -l`.
(hvc0 is not checked yet: host->guest input on the virtio console does not
arrive -- see docs/virtio.md.)

Environment: VMON, GUEST_KIT (see test_virtio_blk.py)."""
import hashlib
import http.server
import os
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import VMON, serial_text
from test_virtio_blk import kit, make_initrd, results  # noqa: F401 (kit is a fixture)

# Seconds for the whole boot: the kit boots in ~1 min on an idle host, but
# the shared test machine is often loaded many times over.
BUDGET = 900

GUEST_SCRIPT = r"""
cat > /tmp/dhcp.sh <<'S'
#!/bin/sh
case "$1" in bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    ip route add default via "$router" ;;
esac
S
chmod +x /tmp/dhcp.sh
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -s /tmp/dhcp.sh >/dev/null 2>&1
echo "T ip=$(ip -4 addr show eth0 | sed -n 's/.*inet \([0-9.]*\).*/\1/p')"
port=$(sed 's/.*vmon.port=\([0-9]*\).*/\1/' /proc/cmdline)
echo "T wget=$(wget -q -O - http://10.0.2.2:$port/blob | sha256sum | cut -d' ' -f1)"
echo "T features=$(cat /sys/class/net/eth0/device/features)"
upport=$(sed 's/.*vmon.upport=\([0-9]*\).*/\1/' /proc/cmdline)
head -c 1048576 /dev/urandom > /tmp/up
echo "T upsha=$(sha256sum < /tmp/up | cut -d' ' -f1)"
nc 10.0.2.2 $upport < /tmp/up
echo "T listening"
nc -l -p 7777 > /tmp/nc.out
echo "T nc=$(cat /tmp/nc.out)"
echo T-END
"""


class Handler(http.server.BaseHTTPRequestHandler):
    blob = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.blob)))
        self.end_headers()
        self.wfile.write(self.blob)

    def log_message(self, *a):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def upload_sink(srv, digest):
    """sha256 of the bytes of the one connection srv accepts."""
    c, _ = srv.accept()
    h = hashlib.sha256()
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b)
    c.close()
    digest.append(h.hexdigest())


def test_virtio_net_user(tmp_path, kit):
    Handler.blob = os.urandom(256 * 1024)
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen(1)
    uploaded = []
    threading.Thread(target=upload_sink, args=(up, uploaded), daemon=True).start()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    fwd = free_port()
    initrd = make_initrd(tmp_path, "net", GUEST_SCRIPT)
    serial = tmp_path / "serial.log"
    cmd = [VMON, "-accel", "emu", "-m", "256", "-nographic", "-no-reboot",
           "-serial", f"file:{serial}",
           "-kernel", os.path.join(kit, "vmlinuz"), "-initrd", initrd,
           "-append", f"console=ttyS0 quiet vmon.test=net vmon.port={httpd.server_address[1]} "
                      f"vmon.upport={up.getsockname()[1]}",
           "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{fwd}-:7777",
           "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:99"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    hvc = b""
    sent_nc = False
    start = time.monotonic()
    try:
        while time.monotonic() - start < BUDGET and p.poll() is None:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                hvc += os.read(p.stdout.fileno(), 4096)
            log = serial.read_text(errors="replace") if serial.exists() else ""
            if not sent_nc and "T listening" in log:
                time.sleep(1)
                with socket.create_connection(("127.0.0.1", fwd), timeout=30) as s:
                    s.sendall(b"hello-through-hostfwd\n")
                sent_nc = True
            if "T-END" in log:
                break
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        httpd.shutdown()
        up.close()
    log = serial_text(serial.read_text(errors="replace"))
    print(log[-2500:])
    r = results(log)
    assert "T-END" in log, f"guest did not finish\n{log[-3000:]}\n{p.stderr.read()}"
    assert r["ip"] == "10.0.2.15"
    assert r["wget"] == hashlib.sha256(Handler.blob).hexdigest()
    assert r["nc"] == "hello-through-hostfwd"
    # Offered and taken: CSUM (bit 0) and HOST_TSO4 (bit 11) on -netdev user.
    assert r["features"][0] == "1" and r["features"][11] == "1", r["features"]
    # Every byte arrived intact: slirp drops a segment whose checksum the
    # device finished wrongly, and the upload would then stall.
    assert uploaded and uploaded[0] == r["upsha"]
