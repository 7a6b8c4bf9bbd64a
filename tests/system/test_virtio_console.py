"""The virtio console both ways (issue 4), in QEMU's spelling: -chardev
socket,id=c0,path=P,server=on,wait=off + -device virtio-serial-pci +
-device virtconsole,chardev=c0, with the Debian guest kit under -accel emu.

The host connects to the socket at once and sends a line long before the
guest is up: it must be held (not dropped, as Linux drops data reaching a
port it has not opened) and be what the guest's first read of /dev/hvc0
returns.  The guest writes a line the host must receive, reads the held
line and echoes it back; the host sends a second line after seeing the
guest's, which the guest echoes too.  The guest script uses no network.
Every wait is bounded; a missing line fails fast with what arrived.

Also the option errors: unknown backend, missing id or path, duplicate
ids, virtconsole without virtio-serial-pci, without or with an unknown
chardev, and two virtconsoles on one virtio-serial-pci: one line naming
the option, exit 1.

Environment: VMON, GUEST_KIT."""
import os
import socket
import subprocess
import time

import pytest

from conftest import VMON, kernel_path, run_vmon
from test_virtio_blk import kit, make_initrd  # noqa: F401  (fixture)

GUEST_SCRIPT = r"""
echo "T hvc=$(ls /dev/hvc0 2>&1)"
exec 3<>/dev/hvc0
stty -F /dev/hvc0 -echo
echo "GUEST-HELLO" >&3
for n in 1 2; do
    if read -t 120 line <&3; then echo "T got$n=$line"; else echo "T got$n=TIMEOUT"; fi
    echo "ECHO$n:$line" >&3
done
echo T-END
"""


def recv_until(s, buf, marker, timeout, vm):
    deadline = time.time() + timeout
    while marker not in buf:
        if time.time() > deadline or vm.poll() is not None:
            return buf, False
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        if not d:
            return buf, False
        buf += d
    return buf, True


def test_virtconsole_socket_both_ways(tmp_path, kit):  # noqa: F811
    sock = str(tmp_path / "con.sock")
    initrd = make_initrd(tmp_path, "con", GUEST_SCRIPT)
    out = open(tmp_path / "serial.txt", "wb")
    vm = subprocess.Popen(
        [VMON, "-accel", "emu", "-m", "256", "-nographic", "-no-reboot",
         "-kernel", os.path.join(kit, "vmlinuz"), "-initrd", initrd,
         "-append", "console=ttyS0 quiet vmon.test=con",
         "-chardev", f"socket,id=c0,path={sock},server=on,wait=off",
         "-device", "virtio-serial-pci", "-device", "virtconsole,chardev=c0"],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while not os.path.exists(sock):
            assert time.time() < deadline and vm.poll() is None, "no socket"
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.settimeout(1)
        s.sendall(b"early-line-from-host\n")     # the guest is not even booted
        buf, ok = recv_until(s, b"", b"GUEST-HELLO", 600, vm)
        serial = (tmp_path / "serial.txt").read_bytes()
        assert ok, f"no line from the guest: {buf!r}\nserial: {serial[-1500:]!r}"
        buf, ok = recv_until(s, buf, b"ECHO1:", 180, vm)
        buf, ok = recv_until(s, buf, b"\n", 30, vm) if ok else (buf, ok)
        assert ok and b"ECHO1:early-line-from-host" in buf, buf
        s.sendall(b"second line\n")
        buf, ok = recv_until(s, buf, b"ECHO2:second line", 180, vm)
        assert ok, buf
        vm.wait(120)
    finally:
        if vm.poll() is None:
            vm.kill()
            vm.wait()
    serial = (tmp_path / "serial.txt").read_bytes()
    assert b"T hvc=/dev/hvc0" in serial
    assert b"T got1=early-line-from-host" in serial and b"T got2=second line" in serial
    assert b"T-END" in serial
    assert vm.returncode == 0, vm.stderr.read()


@pytest.mark.parametrize("args,msg", [
    (["-chardev", "pty,id=c0"], "backend 'pty' is not supported"),
    (["-chardev", "socket,path=/tmp/x.sock,server=on"], "property 'id' is required"),
    (["-chardev", "socket,id=c0,server=on"], "property 'path' is required"),
    (["-chardev", "null,id=c0", "-chardev", "null,id=c0"], "duplicate chardev id 'c0'"),
    (["-chardev", "null,id=c0", "-device", "virtconsole,chardev=c0"],
     "no virtio-serial-pci before it"),
    (["-device", "virtio-serial-pci", "-device", "virtconsole"], "property 'chardev' is required"),
    (["-device", "virtio-serial-pci", "-device", "virtconsole,chardev=nope"],
     "no -chardev with id=nope"),
    (["-chardev", "null,id=a", "-chardev", "null,id=b", "-device", "virtio-serial-pci",
      "-device", "virtconsole,chardev=a", "-device", "virtconsole,chardev=b"],
     "one port is taken"),
    (["-chardev", "null,id=a", "-device", "virtio-serial-pci,chardev=a",
      "-device", "virtio-serial-pci,chardev=a"], "chardev 'a' is already in use"),
])
def test_chardev_errors(args, msg):
    st, out, err = run_vmon(["-accel", "emu", "-nographic", "-kernel", kernel_path("hello.elf"),
                             *args], timeout=60)
    assert st == 1, (st, err)
    assert msg in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_query_chardev_lists_chardevs(tmp_path):
    """query-chardev shows each -chardev by id, QEMU's filename, and whether
    a frontend took it."""
    from test_snapshot import QMP
    sock, qmp = str(tmp_path / "c.sock"), str(tmp_path / "q.sock")
    vm = subprocess.Popen(
        [VMON, "-accel", "emu", "-nographic", "-S", "-kernel", kernel_path("hello.elf"),
         "-chardev", f"socket,id=c0,path={sock},server=on,wait=off",
         "-chardev", "null,id=spare", "-device", "virtio-serial-pci",
         "-device", "virtconsole,chardev=c0", "-qmp", f"unix:{qmp},server=on,wait=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        q = QMP(qmp)
        devs = {d["label"]: d for d in q.ret("query-chardev")}
        assert devs["c0"] == {"label": "c0", "filename": f"unix:{sock},server=on",
                              "frontend-open": True}, devs
        assert devs["spare"] == {"label": "spare", "filename": "null",
                                 "frontend-open": False}, devs
        q.cmd("quit")
        assert vm.wait(30) == 0
    finally:
        if vm.poll() is None:
            vm.kill()
            vm.wait()


ECHO_SCRIPT = r"""
exec 3<>/dev/hvc0
stty -F /dev/hvc0 -echo
echo READY >&3
while read -t 300 line <&3; do
    echo "ECHO:$line" >&3
    [ "$line" = quit ] && break
done
echo T-END
"""


def test_virtconsole_snapshot_resume(tmp_path, kit):  # noqa: F811
    """A guest echoing hvc0 lines is snapshotted (port open, buffers
    posted) and resumed in a new vmon on another socket: a line sent there
    still comes back (the port's open state travelled: without it the
    input would wait for an open that never comes again)."""
    from test_snapshot import QMP
    initrd = make_initrd(tmp_path, "con", ECHO_SCRIPT)

    def start(name, extra=()):
        sock, qmp = str(tmp_path / f"{name}.sock"), str(tmp_path / f"{name}.qmp")
        vm = subprocess.Popen(
            [VMON, "-accel", "emu", "-m", "256", "-nographic", "-no-reboot",
             "-kernel", os.path.join(kit, "vmlinuz"), "-initrd", initrd,
             "-append", "console=ttyS0 quiet vmon.test=con",
             "-chardev", f"socket,id=c0,path={sock},server=on,wait=off",
             "-device", "virtio-serial-pci", "-device", "virtconsole,chardev=c0",
             "-qmp", f"unix:{qmp},server=on,wait=off", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        q = QMP(qmp)
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.settimeout(1)
        return vm, q, s

    a, qa, sa = start("src")
    b = None
    try:
        buf, ok = recv_until(sa, b"", b"READY", 600, a)
        assert ok, buf
        sa.sendall(b"before\n")
        buf, ok = recv_until(sa, buf, b"ECHO:before", 120, a)
        assert ok, buf
        qa.ret("stop")
        snap = tmp_path / "snap.vmon"
        assert qa.ret("migrate", {"uri": f"file:{snap}"}) == {}
        a.kill()
        a.wait()
        b, qb, sb = start("dst", ["-incoming", f"file:{snap}"])
        qb.ret("cont")
        sb.sendall(b"after\nquit\n")
        buf, ok = recv_until(sb, b"", b"ECHO:quit", 120, b)
        assert ok and b"ECHO:after" in buf, buf
        assert b.wait(120) == 0
    finally:
        for vm in (a, b):
            if vm and vm.poll() is None:
                vm.kill()
                vm.wait()
