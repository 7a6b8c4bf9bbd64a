"""Snapshots of a VM with virtio devices (issue 7): the Debian guest kit
under -accel emu with a virtio-blk disk runs a loop that writes a sector
per round to /dev/vda (fsync), drops the page cache, reads the sector back
from the device and prints "T round N ok".  The test stops the VM after a
few rounds, snapshots it (QMP migrate file:), ends it, and resumes the
snapshot in a new vmon with -incoming file: on the same disk (paused, as
it was saved; the test continues it).  The loop
must continue from where it was (no reboot, no round lost or repeated),
every sector read back must match, and at the end the host finds every
round's sector in the image.  The guest script uses no network (udhcpc
blocked an earlier attempt).

Environment: VMON, GUEST_KIT."""
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import VMON
from test_snapshot import QMP
from test_virtio_blk import make_initrd, kit  # noqa: F401  (fixture)

ROUNDS = 30
ROUND = re.compile(rb"T round (\d+) (\w+)")

# Sector i holds "VMONBLK-<i>-" repeated: a lost or misplaced write shows.
GUEST_SCRIPT = r"""
i=0
while [ $i -lt %d ]; do
    yes "VMONBLK-$i-" | head -c 512 > /tmp/s
    dd if=/tmp/s of=/dev/vda bs=512 seek=$i count=1 conv=notrunc,fsync 2>/dev/null
    echo 3 > /proc/sys/vm/drop_caches
    if dd if=/dev/vda bs=512 skip=$i count=1 2>/dev/null | cmp -s - /tmp/s; then
        echo "T round $i ok"
    else
        echo "T round $i BAD"
    fi
    i=$((i+1))
done
echo 3 > /proc/sys/vm/drop_caches
bad=0
i=0
while [ $i -lt %d ]; do
    yes "VMONBLK-$i-" | head -c 512 > /tmp/s
    dd if=/dev/vda bs=512 skip=$i count=1 2>/dev/null | cmp -s - /tmp/s || bad=$((bad+1))
    i=$((i+1))
done
echo "T verify bad=$bad"
echo T-END
""" % (ROUNDS, ROUNDS)


class Kit:
    """vmon running the guest kit with a QMP socket; output pumped."""

    def __init__(self, tmp_path, name, args):
        self.sock = str(tmp_path / f"{name}.qmp")
        self.proc = subprocess.Popen(
            [VMON, *args, "-qmp", f"unix:{self.sock},server=on,wait=off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""
        self.err = b""
        self.threads = [threading.Thread(target=self._pump, args=(f, n), daemon=True)
                        for f, n in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))]
        for t in self.threads:
            t.start()
        self.q = QMP(self.sock)

    def _pump(self, f, name):
        for chunk in iter(lambda: f.read1(4096), b""):
            setattr(self, name, getattr(self, name) + chunk)

    def rounds(self):
        return [(int(n), s.decode()) for n, s in ROUND.findall(self.out)]

    def wait_for(self, cond, timeout, what):
        deadline = time.time() + timeout
        while not cond():
            if self.proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"{what}: {self.out[-1500:]!r} {self.err[-1500:]!r}")
            time.sleep(0.1)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_virtio_blk_snapshot_resume(tmp_path, kit, guests):  # noqa: F811
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * (1 << 20))
    initrd = make_initrd(tmp_path, "loop", GUEST_SCRIPT)
    args = ["-accel", "emu", "-m", "256", "-nographic", "-no-reboot",
            "-kernel", os.path.join(kit, "vmlinuz"), "-initrd", initrd,
            "-append", "console=ttyS0 quiet vmon.test=loop",
            "-drive", f"file={disk},format=raw,if=none,id=d0",
            "-device", "virtio-blk-pci,drive=d0",
            "-device", "virtio-rng-pci"]
    a = Kit(tmp_path, "src", args)
    guests.append(a)
    a.wait_for(lambda: len(a.rounds()) >= 4, 600, "the guest loop did not start")
    a.q.ret("stop")
    snap = tmp_path / "snap.vmon"
    assert a.q.ret("migrate", {"uri": f"file:{snap}"}) == {}
    assert a.q.ret("query-migrate")["status"] == "completed"
    before = a.rounds()
    a.kill()      # the disk now belongs to the restored VM
    assert all(s == "ok" for _, s in before), before

    b = Kit(tmp_path, "dst", args + ["-incoming", f"file:{snap}"])
    guests.append(b)
    # Saved while stopped, it resumes stopped (QEMU's globalstate).
    assert b.q.ret("query-status")["status"] == "paused"
    b.q.ret("cont")
    b.wait_for(lambda: b"T-END" in b.out, 600, "the restored guest did not finish")
    after = b.rounds()
    assert b"VMON-GUEST-UP" not in b.out      # resumed, not rebooted
    assert all(s == "ok" for _, s in after), after
    # Rounds go on from the snapshot point: at most the one the guest was
    # in when stopped is printed after the restore, none is skipped.
    last = before[-1][0]
    nums = [n for n, _ in after]
    assert nums == list(range(nums[0], ROUNDS)), nums
    assert nums[0] == last + 1, (last, nums)
    assert b"T verify bad=0" in b.out, b.out[-1500:]
    try:
        status = b.proc.wait(120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the guest did not power off: {b.out[-500:]!r}")
    assert status == 0, b.err[-2000:]
    data = disk.read_bytes()
    for i in range(ROUNDS):
        want = (b"VMONBLK-%d-\n" % i) * 64
        assert data[512 * i:512 * (i + 1)] == want[:512], i


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_virtio_blk_live_migration(tmp_path, kit, guests, fmt):  # noqa: F811
    """The loop migrated live over TCP while it runs, the destination on the
    same image (shared storage).  The destination starts while the source
    still writes to the image, so it opens the disk read-only and unlocked
    and re-opens it when the state is in (QEMU's image inactivation); the
    source flushes and closes it in its last stage, after the drain.  Reads
    land in guest RAM from the block backend and must reach the destination
    through the dirty log.  The loop goes on in the destination without a
    lost or repeated round, qcow2 clusters the source allocated after the
    destination started are seen (only moving the lock across read back a
    wrong sector here), and the source cannot take the disk back with cont
    while the destination owns it."""
    disk = tmp_path / f"disk.{fmt}"
    if fmt == "qcow2":
        subprocess.run([os.environ["VMON_IMG"], "create", "-q", "-f", "qcow2", str(disk), "1M"],
                       check=True)
    else:
        disk.write_bytes(b"\0" * (1 << 20))
    initrd = make_initrd(tmp_path, "loop", GUEST_SCRIPT)
    args = ["-accel", "emu", "-m", "256", "-nographic", "-no-reboot",
            "-kernel", os.path.join(kit, "vmlinuz"), "-initrd", initrd,
            "-append", "console=ttyS0 quiet vmon.test=loop",
            "-drive", f"file={disk},format={fmt},if=none,id=d0",
            "-device", "virtio-blk-pci,drive=d0",
            "-device", "virtio-rng-pci"]
    port = free_port()
    a = Kit(tmp_path, "src", args)
    guests.append(a)
    b = Kit(tmp_path, "dst", args + ["-incoming", f"tcp:127.0.0.1:{port}"])
    guests.append(b)
    a.wait_for(lambda: len(a.rounds()) >= 4, 600, "the guest loop did not start")
    assert b.q.ret("query-status")["status"] == "inmigrate"
    assert a.q.ret("migrate", {"uri": f"tcp:127.0.0.1:{port}"}) == {}
    a.wait_for(lambda: a.q.ret("query-migrate")["status"] in ("completed", "failed"), 300,
               "the migration did not end")
    st = a.q.ret("query-migrate")
    assert st["status"] == "completed", st
    before = a.rounds()
    assert all(s == "ok" for _, s in before), before
    b.wait_for(lambda: b.q.ret("query-status")["status"] == "running", 60,
               "the destination did not run")
    # The destination holds the image now: the source cannot run again.
    r = a.q.cmd("cont")
    assert "error" in r and "lock" in r["error"]["desc"], r
    assert a.q.ret("query-status")["status"] == "postmigrate"
    b.wait_for(lambda: b"T-END" in b.out, 600, "the migrated guest did not finish")
    after = b.rounds()
    assert b"VMON-GUEST-UP" not in b.out      # migrated, not rebooted
    assert all(s == "ok" for _, s in after), after
    nums = [n for n, _ in after]
    assert nums == list(range(nums[0], ROUNDS)), nums
    assert nums[0] == before[-1][0] + 1, (before, nums)
    assert b"T verify bad=0" in b.out, b.out[-1500:]
    try:
        status = b.proc.wait(120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the guest did not power off: {b.out[-500:]!r}")
    assert status == 0, b.err[-2000:]
    a.kill()
    if fmt == "qcow2":
        chk = subprocess.run(["qemu-img", "check", str(disk)], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        raw = tmp_path / "disk.raw"
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)], check=True)
        disk = raw
    data = disk.read_bytes()
    for i in range(ROUNDS):
        want = (b"VMONBLK-%d-\n" % i) * 64
        assert data[512 * i:512 * (i + 1)] == want[:512], i
