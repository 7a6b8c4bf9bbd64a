"""`vmon stat`, the perf-kvm-stat-like exit table, against the `exits`
kernel, which makes a known number of port writes (count=N) from user
mode.  -no-shutdown keeps vmon and its QMP socket up after the guest has
finished, so the table can be read once the count is complete."""
import re
import subprocess
import time

import pytest

from test_qmp import VM, QMP  # noqa: F401  (the standard-library QMP client)

ROW = re.compile(r"^\s*([A-Z_]+)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)us\s+([\d.]+)us"
                 r"\s+([\d.]+)us$")


def stat(vmon, vm, *args):
    p = subprocess.run([vmon, "stat", "--qmp", vm.sock_path, *args], capture_output=True,
                       timeout=60)
    assert p.returncode == 0, (p.stderr, vm.proc.poll(), vm.err, vm.out)
    return p.stdout.decode()


def tables(text):
    """Each table as {reason: (samples, samples%, time%, min, max, avg)} in
    printed order, plus its total."""
    out = []
    for block in text.split("Analyze events")[1:]:
        rows = {}
        for line in block.splitlines():
            m = ROW.match(line)
            if m:
                rows[m.group(1)] = (int(m.group(2)), *map(float, m.groups()[2:]))
        total = int(re.search(r"Total Samples:(\d+),", block).group(1))
        out.append((rows, total))
    return out


@pytest.fixture
def vm(vmon, tmp_path, accel):
    vms = []

    def make(*args, **kw):
        v = VM(vmon, tmp_path, accel, *args, **kw)
        vms.append(v)
        return v
    yield make
    for v in vms:
        v.kill()


def test_stat_counts_known_port_exits(vmon, vm):
    n = 3000
    v = vm(extra=["-S", "-no-shutdown"], append=f"count={n}")
    [(rows, total)] = tables(stat(vmon, v, "--once"))
    assert total == 0 and rows == {}          # prelaunch: nothing ran

    q = v.client()
    q.cmd("cont")
    assert q.event("SHUTDOWN", timeout=60)["data"]["reason"] == "guest-shutdown"
    v.wait_serial("exits: done")   # the output may trail the event
    [(rows, total)] = tables(stat(vmon, v, "--once"))
    samples, pct, time_pct, mn, mx, avg = rows["IO"]
    # N port writes, plus the serial port's few hundred accesses
    assert n <= samples < n + 1000
    assert total >= samples
    assert 0 < mn <= avg <= mx
    # the columns are self-consistent
    assert abs(pct - 100.0 * samples / total) < 0.01
    assert sum(r[2] for r in rows.values()) == pytest.approx(100.0, abs=0.1)
    order = [r[2] for r in rows.values()]
    assert order == sorted(order, reverse=True)   # sorted by time
    q.cmd("quit")
    assert v.wait() == 1                          # the guest's debug-exit status


def test_stat_live_intervals(vmon, vm):
    v = vm()
    q = v.client()
    v.wait_serial("accesses")
    live = tables(stat(vmon, v, "-n", "2", "-d", "0.3"))
    assert len(live) == 2
    for rows, total in live:
        assert rows["IO"][0] > 0 and total >= rows["IO"][0]
    # a paused VM has no exits in the interval, while totals stay
    q.cmd("stop")
    q.event("STOP")
    [(rows, total)] = tables(stat(vmon, v, "-n", "1", "-d", "0.3"))
    assert total == 0
    [(rows, total)] = tables(stat(vmon, v, "--total", "-n", "1", "-d", "0.1"))
    assert rows["IO"][0] > 0
    # one vCPU only
    [(rows, total)] = tables(stat(vmon, v, "--once", "--vcpu", "0"))
    assert rows["IO"][0] > 0


def test_stat_usage_errors(vmon, tmp_path):
    p = subprocess.run([vmon, "stat"], capture_output=True, timeout=30)
    assert p.returncode == 1 and b"usage: vmon stat" in p.stderr
    p = subprocess.run([vmon, "stat", "--qmp", str(tmp_path / "none.sock"), "--once"],
                       capture_output=True, timeout=30)
    assert p.returncode == 1 and b"cannot connect" in p.stderr
    p = subprocess.run([vmon, "stat", "--help"], capture_output=True, timeout=30)
    assert p.returncode == 0 and b"--once" in p.stdout
