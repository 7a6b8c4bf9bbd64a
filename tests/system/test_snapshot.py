"""Snapshots (issue 7): QMP migrate to file:PATH, vmon -incoming file:PATH,
-incoming defer + migrate-incoming, across both accelerators, and the
refusal of truncated or corrupted streams.

The guest is tests/guest/kernels/switch.c: a self-checking ring-3 workload
that prints "switch: round N ok" and fails loudly if registers, SSE state,
memory or its LAPIC timer lose anything.  A restored VM must continue the
round numbering where the snapshot left it (not reboot) and reach PASS."""
import json
import os
import random
import re
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import VMON, kernel_path, run_vmon

BASE = ["-m", "64", "-nographic", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
ROUND = re.compile(rb"switch: round (\d+) ok")


def kvm_usable():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def need(accel):
    if accel == "kvm" and not kvm_usable():
        pytest.skip("kvm: /dev/kvm not usable here")


class QMP:
    """Minimal stdlib QMP client (unix socket)."""

    def __init__(self, path, timeout=20):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.02)
        self.buf = b""
        self.events = []
        assert "QMP" in self.recv()
        assert "return" in self.cmd("qmp_capabilities")

    def recv(self, timeout=60):
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            r, _, _ = select.select([self.sock], [], [], max(0, left))
            if not r:
                raise TimeoutError("QMP: no message")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None, timeout=60):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        self.sock.sendall((json.dumps(req) + "\n").encode())
        while True:
            msg = self.recv(timeout)
            if "event" in msg:
                self.events.append(msg)
            else:
                return msg

    def ret(self, name, args=None, timeout=60):
        r = self.cmd(name, args, timeout)
        assert "return" in r, r
        return r["return"]

    def close(self):
        self.sock.close()


class Guest:
    """vmon running the switch kernel with a QMP socket."""

    def __init__(self, tmp_path, accel, append="rounds=0 every=500000000", extra=(), name="vm",
                 qmp=True):
        self.sock = str(tmp_path / f"{name}.qmp")
        args = [VMON, "-accel", accel, *BASE, "-kernel", kernel_path("switch.elf"),
                "-append", append, *extra]
        if qmp:
            args += ["-qmp", f"unix:{self.sock},server=on,wait=off"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = b""
        self.err = b""
        self.threads = [threading.Thread(target=self._pump, args=(f, n), daemon=True)
                        for f, n in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))]
        for t in self.threads:
            t.start()
        self.q = QMP(self.sock) if qmp else None

    def _pump(self, f, name):
        for chunk in iter(lambda: f.read1(4096), b""):
            setattr(self, name, getattr(self, name) + chunk)

    def rounds(self):
        return [int(n) for n in ROUND.findall(self.out)]

    def wait_rounds(self, n, timeout=60, settle=0.1):
        """Wait until n more rounds were printed than now; returns the last.

        Then let the guest settle back into ring 3: under PVM a vCPU
        stopped in (emulated) ring 0 reports CPL 3, so its state cannot
        move to emu (docs/migration.md), and lines are printed from ring 0."""
        start = len(self.rounds())
        deadline = time.time() + timeout
        while len(self.rounds()) < start + n:
            if self.proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"guest stalled: {self.out[-400:]!r} {self.err!r}")
            time.sleep(0.02)
        time.sleep(settle)
        return self.rounds()[-1]

    def check_consistent(self):
        """No FAIL, and the round numbers count up by one."""
        assert b"FAIL" not in self.out, self.out[-400:]
        r = self.rounds()
        assert r == list(range(r[0], r[0] + len(r))), r

    def wait(self, timeout=60):
        try:
            st = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"vmon did not exit: {self.out[-400:]!r}")
        for t in self.threads:
            t.join(5)
        return st

    def quit(self):
        if self.q:
            try:
                self.q.cmd("quit")
            except (ConnectionError, OSError, TimeoutError):
                pass
        return self.wait()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def take_snapshot(g, path):
    g.q.events.clear()
    assert g.q.ret("migrate", {"uri": f"file:{path}"}) == {}
    st = g.q.ret("query-migrate")
    assert st["status"] == "completed", st
    assert st["ram"]["total"] == 64 << 20
    statuses = [e["data"]["status"] for e in g.q.events if e["event"] == "MIGRATION"]
    assert statuses == ["setup", "active", "completed"], g.q.events


@pytest.mark.parametrize("src,dst", [("emu", "emu"), ("kvm", "kvm"), ("emu", "kvm"),
                                     ("kvm", "emu")])
def test_snapshot_restore(tmp_path, guests, src, dst):
    need(src)
    need(dst)
    snap = tmp_path / "snap.vmon"
    a = Guest(tmp_path, src, name="src")
    guests.append(a)
    before = a.wait_rounds(3)
    take_snapshot(a, snap)
    after = a.rounds()[-1]
    # The source keeps running after the snapshot.
    a.wait_rounds(2)
    a.check_consistent()
    assert a.quit() == 0

    # Restored with rounds=0 in the snapshot's RAM: it continues for good;
    # the test stops it after a few rounds.
    b = Guest(tmp_path, dst, name="dst", extra=["-incoming", f"file:{snap}"])
    guests.append(b)
    b.wait_rounds(3)
    b.check_consistent()
    first = b.rounds()[0]
    # Continues from the snapshot point, not from a reboot.
    assert before < first <= after + 2, (before, after, b.rounds())
    assert b"switch: 0 rounds" not in b.out    # the boot banner is not printed again
    assert b.q.ret("query-accel") == {"accel": dst}
    assert b.quit() == 0


@pytest.mark.parametrize("src,dst", [("emu", "kvm"), ("kvm", "emu")])
def test_snapshot_restore_virtio(tmp_path, guests, src, dst):
    """With a virtio-rng-pci the kernel drives at every line (virtio=1): the
    restored device continues the queue where the snapshot left it (the
    kernel fails on a used index that does not move by exactly one)."""
    need(src)
    need(dst)
    snap = tmp_path / "snap.vmon"
    extra = ["-device", "virtio-rng-pci"]
    a = Guest(tmp_path, src, name="src", append="rounds=0 every=500000000 virtio=1",
              extra=extra)
    guests.append(a)
    a.wait_rounds(2)
    take_snapshot(a, snap)
    assert a.quit() == 0
    b = Guest(tmp_path, dst, name="dst", append="rounds=0 every=500000000 virtio=1",
              extra=extra + ["-incoming", f"file:{snap}"])
    guests.append(b)
    b.wait_rounds(3)
    b.check_consistent()
    assert b"switch: virtio " in b.out and b"virtio-rng-pci in slot" not in b.out
    assert b.quit() == 0


def test_snapshot_refuses_other_devices(tmp_path, guests):
    """A snapshot with a virtio device does not load into a VM without it."""
    snap = tmp_path / "snap.vmon"
    a = Guest(tmp_path, "emu", name="src", append="rounds=0 every=500000000 virtio=1",
              extra=["-device", "virtio-rng-pci"])
    guests.append(a)
    a.wait_rounds(1)
    take_snapshot(a, snap)
    assert a.quit() == 0
    st, out, err = run_vmon(["-accel", "emu", *BASE, "-kernel", kernel_path("switch.elf"),
                             "-incoming", f"file:{snap}"], timeout=60)
    assert st == 1
    assert "device list differs" in err and "virtio-rng-pci" in err, err


def test_snapshot_of_stopped_vm_stays_stopped(tmp_path, guests):
    """The source stays paused after the snapshot, and so does the restored
    VM (the stream carries the run state, as QEMU's does) until cont."""
    snap = tmp_path / "s"
    a = Guest(tmp_path, "emu", name="src")
    guests.append(a)
    a.wait_rounds(1)
    a.q.ret("stop")
    take_snapshot(a, snap)
    assert a.q.ret("query-status")["status"] == "paused"
    n = len(a.rounds())
    time.sleep(0.5)
    assert len(a.rounds()) == n
    a.q.ret("cont")
    a.wait_rounds(1)
    a.check_consistent()
    assert a.quit() == 0

    for i, how in enumerate((["-incoming", f"file:{snap}"], ["-incoming", "defer"])):
        b = Guest(tmp_path, "emu", name=f"dst{i}", extra=how)
        guests.append(b)
        if how[1] == "defer":
            assert b.q.ret("migrate-incoming", {"uri": f"file:{snap}"}) == {}
        assert b.q.ret("query-status")["status"] == "paused"
        time.sleep(0.5)
        assert b.rounds() == []
        b.q.events.clear()
        b.q.ret("cont")
        b.wait_rounds(1)
        b.check_consistent()
        assert b.rounds()[0] >= n
        assert b.quit() == 0


def test_incoming_with_S_waits_for_cont(tmp_path, guests):
    """-S with -incoming: the state loads, the VM waits for cont (QEMU's
    autostart off)."""
    snap = tmp_path / "s"
    a = Guest(tmp_path, "emu", name="src")
    guests.append(a)
    a.wait_rounds(1)
    take_snapshot(a, snap)
    a.quit()
    b = Guest(tmp_path, "emu", name="dst", extra=["-S", "-incoming", "defer"])
    guests.append(b)
    assert b.q.ret("migrate-incoming", {"uri": f"file:{snap}"}) == {}
    assert b.q.ret("query-status")["status"] == "paused"
    time.sleep(0.5)
    assert b.rounds() == []
    b.q.ret("cont")
    b.wait_rounds(1)
    b.check_consistent()
    assert b.quit() == 0


def test_incoming_defer(tmp_path, guests):
    snap = tmp_path / "snap.vmon"
    a = Guest(tmp_path, "emu", name="src")
    guests.append(a)
    a.wait_rounds(2)
    take_snapshot(a, snap)
    a.quit()
    b = Guest(tmp_path, "emu", name="dst", extra=["-incoming", "defer"])
    guests.append(b)
    assert b.q.ret("query-status")["status"] == "prelaunch"
    time.sleep(0.3)
    assert b.rounds() == []     # nothing runs before the state arrives
    assert b.q.ret("migrate-incoming", {"uri": f"file:{snap}"}) == {}
    b.wait_rounds(2)
    b.check_consistent()
    assert b.rounds()[0] > 1
    assert b.quit() == 0


def test_migrate_rejects_other_uris(tmp_path, guests):
    a = Guest(tmp_path, "emu")
    guests.append(a)
    r = a.q.cmd("migrate", {"uri": "exec:cat"})
    assert "only file:PATH" in r["error"]["desc"]
    r = a.q.cmd("migrate-incoming", {"uri": "file:/nonexistent"})
    assert "-incoming defer" in r["error"]["desc"]
    a.quit()


def restore_args(accel, snap, append="rounds=0", m="64"):
    return ["-accel", accel, "-m", m, "-nographic", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel", kernel_path("switch.elf"), "-append", append,
            "-incoming", f"file:{snap}"]


@pytest.fixture(scope="module")
def snapshot_bytes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snap")
    snap = tmp / "good.vmon"
    a = Guest(tmp, "emu", name="src")
    try:
        a.wait_rounds(2)
        take_snapshot(a, snap)
        a.quit()
    finally:
        a.kill()
    return snap.read_bytes()


def test_truncated_streams_are_refused(tmp_path, snapshot_bytes):
    rng = random.Random(7)
    cuts = [0, 7, 16, 40, len(snapshot_bytes) - 1] + \
        [rng.randrange(len(snapshot_bytes)) for _ in range(5)]
    for cut in cuts:
        p = tmp_path / f"cut{cut}"
        p.write_bytes(snapshot_bytes[:cut])
        st, out, err = run_vmon(restore_args("emu", p), timeout=60)
        assert st == 1, (cut, st, err)
        assert "switch: round" not in out, cut      # never started
        assert err.count("\n") <= 3 and "vmon:" in err, err
        assert ("truncated" in err or "not a vmon snapshot" in err), (cut, err)


def test_corrupted_byte_is_refused(tmp_path, snapshot_bytes):
    rng = random.Random(11)
    for _ in range(6):
        data = bytearray(snapshot_bytes)
        off = rng.randrange(len(data))
        data[off] ^= 1 << rng.randrange(8)
        p = tmp_path / f"bad{off}"
        p.write_bytes(bytes(data))
        st, out, err = run_vmon(restore_args("emu", p), timeout=60)
        assert st == 1, (off, st, err)
        assert "switch: round" not in out
        assert re.search(r"checksum mismatch|corrupted|bad magic|format version|truncated",
                         err), (off, err)


def test_configuration_mismatch_is_explained(tmp_path, snapshot_bytes):
    p = tmp_path / "s"
    p.write_bytes(snapshot_bytes)
    st, out, err = run_vmon(restore_args("emu", p, m="128"), timeout=60)
    assert st == 1
    assert "64 MiB of RAM, this one 128 MiB" in err, err
