"""Live migration over TCP (issue 7): QMP migrate tcp:HOST:PORT to a vmon
started with -incoming tcp:HOST:PORT (or -incoming defer + migrate-incoming),
pre-copy passes over the pages the guest dirtied, across both accelerators;
migrate_cancel, a destination that dies mid-way, and truncated or corrupted
streams at the destination.

The guest is the self-checking switch kernel (tests/guest/kernels/switch.c):
it rewrites a 64 KiB table all the time and prints "switch: round N ok";
a migrated guest must keep counting from where the source stopped, with no
FAIL.  Multiple passes are forced with a tiny downtime-limit and
max-bandwidth (nothing small enough to send in 1 ms at 1 MiB/s), not with
timing."""
import socket
import time

import pytest

from conftest import run_vmon, kernel_path
from test_snapshot import ROUND, Guest, need


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_event(g, name, pred=lambda e: True, timeout=120):
    """The first event called name (matching pred) seen on g's QMP, waiting
    for it if needed; consumes nothing else."""
    deadline = time.time() + timeout
    while True:
        for e in g.q.events:
            if e["event"] == name and pred(e):
                return e
        if time.time() > deadline or g.proc.poll() is not None:
            pytest.fail(f"no {name} event: {g.q.events} {g.err[-400:]!r}")
        try:
            g.q.events.append(g.q.recv(timeout=max(0.1, deadline - time.time())))
        except TimeoutError:
            pass


def assert_continues(a, b):
    """b's serial output continues a's: end to end, rounds count up by one
    (a line the source was printing when it stopped is finished by b)."""
    joined = [int(n) for n in ROUND.findall(a.out + b.out)]
    assert joined == list(range(joined[0], joined[0] + len(joined))), (a.out[-200:],
                                                                        b.out[:200])
    assert b.rounds(), b.out


def migration_statuses(g):
    return [e["data"]["status"] for e in g.q.events if e["event"] == "MIGRATION"]


def wait_migration_end(g):
    e = wait_event(g, "MIGRATION", lambda e: e["data"]["status"] in
                   ("completed", "failed", "cancelled"))
    return e["data"]["status"]


def migrate_and_check(tmp_path, guests, src_accel, dst_accel, smp=1, params=None,
                      defer=False, virtio=False):
    need(src_accel)
    need(dst_accel)
    port = free_port()
    extra = ["-smp", str(smp)] if smp > 1 else []
    if virtio:
        extra += ["-device", "virtio-rng-pci"]
    # kvm -> emu: the source must stop in ring 3 (docs/migration.md, PVM),
    # so its progress lines (printed from ring 0) are made rare: the
    # migration completes well before the next one.
    append = "rounds=0 every=2000000000" if (src_accel, dst_accel) == ("kvm", "emu") \
        else "rounds=0 every=500000000"
    if virtio:
        append += " virtio=1"
    a = Guest(tmp_path, src_accel, name="src", extra=extra, append=append)
    guests.append(a)
    incoming = ["-incoming", "defer" if defer else f"tcp:127.0.0.1:{port}"]
    b = Guest(tmp_path, dst_accel, name="dst", extra=extra + incoming, append=append)
    guests.append(b)
    assert b.q.ret("query-status")["status"] == ("prelaunch" if defer else "inmigrate")
    if defer:
        assert b.q.ret("migrate-incoming", {"uri": f"tcp:127.0.0.1:{port}"}) == {}
        assert b.q.ret("query-status")["status"] == "inmigrate"
    before = a.wait_rounds(2)
    if params:
        assert a.q.ret("migrate-set-parameters", params) == {}
    a.q.events.clear()
    assert a.q.ret("migrate", {"uri": f"tcp:127.0.0.1:{port}"}) == {}
    assert wait_migration_end(a) == "completed", (a.q.ret("query-migrate"), b.err)
    st = a.q.ret("query-migrate")
    assert st["status"] == "completed", st
    assert st["ram"]["total"] == 64 << 20
    assert st["ram"]["remaining"] == 0
    assert st["ram"]["transferred"] > 0
    assert st["total-time"] >= st["downtime"] >= 0
    assert migration_statuses(a)[:2] == ["setup", "active"]
    # The source stays paused, as QEMU leaves it.
    assert a.q.ret("query-status")["status"] == "postmigrate"
    wait_event(b, "RESUME")
    assert b.q.ret("query-status")["status"] == "running"
    n = len(a.rounds())
    b.wait_rounds(3)
    time.sleep(0.3)
    assert len(a.rounds()) == n                 # the source no longer runs
    a.check_consistent()
    b.check_consistent()
    # The destination continues where the source stopped: the serial
    # output of both, end to end, counts up by one (a line the source was
    # printing when it stopped is finished by the destination).
    assert_continues(a, b)
    assert b.rounds()[0] > before
    assert b"switch: 0 rounds" not in b.out
    assert b.q.ret("query-accel") == {"accel": dst_accel}
    passes = [e["data"]["pass"] for e in a.q.events if e["event"] == "MIGRATION_PASS"]
    assert passes == list(range(1, len(passes) + 1)) and passes, a.q.events
    assert st["ram"]["dirty-sync-count"] == passes[-1]
    assert a.quit() == 0
    assert b.quit() == 0
    return st, passes


@pytest.mark.parametrize("src,dst", [("emu", "emu"), ("kvm", "kvm"), ("emu", "kvm"),
                                     ("kvm", "emu")])
def test_live_migration(tmp_path, guests, src, dst):
    migrate_and_check(tmp_path, guests, src, dst)


@pytest.mark.parametrize("src,dst", [("emu", "emu"), ("kvm", "kvm")])
def test_live_migration_virtio(tmp_path, guests, src, dst):
    """With a virtio-rng-pci driven at every line (switch.c virtio=1): its
    used ring, written by vmon and not by the vCPU, must reach the
    destination (dirty-marked), and the transport state with it."""
    migrate_and_check(tmp_path, guests, src, dst, virtio=True)


@pytest.mark.parametrize("accel", ["kvm", "emu"])
def test_live_migration_smp2_defer(tmp_path, guests, accel):
    migrate_and_check(tmp_path, guests, accel, accel, smp=2, defer=True)


def test_parameters_query_and_validation(tmp_path, guests):
    a = Guest(tmp_path, "emu")
    guests.append(a)
    p = a.q.ret("query-migrate-parameters")
    assert p["downtime-limit"] == 300 and p["max-bandwidth"] == 128 << 20, p
    assert a.q.ret("migrate-set-parameters", {"downtime-limit": 5,
                                              "max-bandwidth": 1 << 20}) == {}
    p = a.q.ret("query-migrate-parameters")
    assert p["downtime-limit"] == 5 and p["max-bandwidth"] == 1 << 20
    r = a.q.cmd("migrate-set-parameters", {"downtime-limit": 2000001})
    assert "downtime_limit" in r["error"]["desc"], r
    r = a.q.cmd("migrate", {"uri": "tcp:127.0.0.1"})
    assert "tcp:HOST:PORT" in r["error"]["desc"], r
    assert a.q.ret("migrate_cancel") == {}      # nothing to cancel: no error
    assert a.quit() == 0


@pytest.mark.parametrize("accel", ["emu", "kvm"])
def test_dirty_pages_force_more_passes(tmp_path, guests, accel):
    """Nothing fits 1 ms at 1 MiB/s while the guest rewrites its table, so
    the source keeps iterating; raising downtime-limit lets it converge."""
    need(accel)
    port = free_port()
    a = Guest(tmp_path, accel, name="src")
    guests.append(a)
    b = Guest(tmp_path, accel, name="dst", extra=["-incoming", f"tcp:127.0.0.1:{port}"])
    guests.append(b)
    a.wait_rounds(2)
    a.q.ret("migrate-set-parameters", {"downtime-limit": 1, "max-bandwidth": 1 << 20})
    a.q.events.clear()
    a.q.ret("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    wait_event(a, "MIGRATION_PASS", lambda e: e["data"]["pass"] >= 4)
    st = a.q.ret("query-migrate")
    assert st["status"] == "active", st
    assert st["ram"]["dirty-sync-count"] >= 4
    assert st["ram"]["dirty-pages-rate"] > 0
    assert a.q.ret("query-status")["status"] == "running"
    a.q.ret("migrate-set-parameters", {"downtime-limit": 10000, "max-bandwidth": 1 << 30})
    assert wait_migration_end(a) == "completed", a.q.ret("query-migrate")
    wait_event(b, "RESUME")
    b.wait_rounds(2)
    b.check_consistent()
    a.check_consistent()
    assert_continues(a, b)
    assert a.quit() == 0
    assert b.quit() == 0


def test_cancel_keeps_source_running(tmp_path, guests):
    port = free_port()
    a = Guest(tmp_path, "emu", name="src")
    guests.append(a)
    b = Guest(tmp_path, "emu", name="dst", extra=["-incoming", f"tcp:127.0.0.1:{port}"])
    guests.append(b)
    a.wait_rounds(2)
    a.q.ret("migrate-set-parameters", {"downtime-limit": 1, "max-bandwidth": 1 << 20})
    a.q.events.clear()
    a.q.ret("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    wait_event(a, "MIGRATION_PASS", lambda e: e["data"]["pass"] >= 2)
    assert a.q.ret("migrate_cancel") == {}
    assert wait_migration_end(a) == "cancelled"
    assert migration_statuses(a)[-2:] == ["cancelling", "cancelled"]
    assert a.q.ret("query-migrate")["status"] == "cancelled"
    assert a.q.ret("query-status")["status"] == "running"
    a.wait_rounds(2)
    a.check_consistent()
    # The destination saw the stream end early: it refuses and exits 1.
    assert b.wait() == 1
    assert b"truncated" in b.err, b.err
    assert b.rounds() == []
    assert a.quit() == 0


def test_destination_killed_then_retry(tmp_path, guests):
    port = free_port()
    a = Guest(tmp_path, "emu", name="src")
    guests.append(a)
    b = Guest(tmp_path, "emu", name="dst", extra=["-incoming", f"tcp:127.0.0.1:{port}"])
    guests.append(b)
    a.wait_rounds(2)
    a.q.ret("migrate-set-parameters", {"downtime-limit": 1, "max-bandwidth": 1 << 20})
    a.q.events.clear()
    a.q.ret("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    wait_event(a, "MIGRATION_PASS", lambda e: e["data"]["pass"] >= 2)
    b.kill()
    assert wait_migration_end(a) == "failed"
    st = a.q.ret("query-migrate")
    assert st["status"] == "failed" and st["error-desc"], st
    assert a.q.ret("query-status")["status"] == "running"
    a.wait_rounds(2)
    a.check_consistent()
    # A second migration, to a new destination, succeeds.
    port = free_port()
    c = Guest(tmp_path, "emu", name="dst2", extra=["-incoming", f"tcp:127.0.0.1:{port}"])
    guests.append(c)
    a.q.ret("migrate-set-parameters", {"downtime-limit": 300, "max-bandwidth": 128 << 20})
    a.q.events.clear()
    a.q.ret("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    assert wait_migration_end(a) == "completed", a.q.ret("query-migrate")
    wait_event(c, "RESUME")
    c.wait_rounds(2)
    c.check_consistent()
    a.check_consistent()
    assert_continues(a, c)
    assert a.quit() == 0
    assert c.quit() == 0


def test_connection_refused_fails_cleanly(tmp_path, guests):
    a = Guest(tmp_path, "emu")
    guests.append(a)
    a.wait_rounds(1)
    a.q.events.clear()
    a.q.ret("migrate", {"uri": f"tcp:127.0.0.1:{free_port()}"})
    assert wait_migration_end(a) == "failed"
    assert "Failed to connect" in a.q.ret("query-migrate")["error-desc"]
    assert a.q.ret("query-status")["status"] == "running"
    a.wait_rounds(1)
    assert a.quit() == 0


@pytest.fixture(scope="module")
def snapshot_bytes(tmp_path_factory):
    """A valid stream: a file snapshot is one (format version 1)."""
    tmp = tmp_path_factory.mktemp("mig")
    snap = tmp / "good.vmon"
    a = Guest(tmp, "emu", name="src")
    try:
        a.wait_rounds(2)
        assert a.q.ret("migrate", {"uri": f"file:{snap}"}) == {}
        a.quit()
    finally:
        a.kill()
    return snap.read_bytes()


def send_to_incoming(data):
    """Start a -incoming tcp: vmon, send data, close; (status, out, err)."""
    import subprocess
    port = free_port()
    from conftest import VMON
    p = subprocess.Popen([VMON, "-accel", "emu", "-m", "64", "-nographic", "-no-reboot",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                          "-kernel", kernel_path("switch.elf"), "-append", "rounds=0",
                          "-incoming", f"tcp:127.0.0.1:{port}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            if time.time() > deadline or p.poll() is not None:
                p.kill()
                pytest.fail("-incoming tcp: never listened")
            time.sleep(0.05)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass          # the destination may refuse before reading it all
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("destination did not exit")
    s.close()
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def test_stream_over_tcp_loads(snapshot_bytes):
    """The complete stream is accepted (a positive control for the two
    refusal tests below); the guest then runs until killed."""
    import subprocess
    from conftest import VMON
    port = free_port()
    p = subprocess.Popen([VMON, "-accel", "emu", "-m", "64", "-nographic", "-no-reboot",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                          "-kernel", kernel_path("switch.elf"), "-append", "rounds=0",
                          "-incoming", f"tcp:127.0.0.1:{port}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                assert time.time() < deadline and p.poll() is None
                time.sleep(0.05)
        s.sendall(snapshot_bytes)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(60)
        assert s.recv(8) == b"VMONDONE"
        s.close()
    finally:
        p.terminate()
        p.wait(30)


def test_truncated_stream_over_tcp_refused(snapshot_bytes):
    for cut in (0, 20, len(snapshot_bytes) // 2, len(snapshot_bytes) - 1):
        st, out, err = send_to_incoming(snapshot_bytes[:cut])
        assert st == 1, (cut, st, err)
        assert "switch: round" not in out
        assert "truncated" in err and err.count("\n") <= 3, (cut, err)


def test_corrupted_stream_over_tcp_refused(snapshot_bytes):
    for off in (3, 30, len(snapshot_bytes) // 3, len(snapshot_bytes) - 10):
        data = bytearray(snapshot_bytes)
        data[off] ^= 0x10
        st, out, err = send_to_incoming(bytes(data))
        assert st == 1, (off, st, err)
        assert "switch: round" not in out
        assert any(w in err for w in ("checksum mismatch", "corrupted", "bad magic",
                                      "format version", "truncated")), (off, err)
        assert err.count("\n") <= 3, err
