#!/usr/bin/env python3
"""Issue 7 benchmarks: live accelerator switch latency (kvm->emu, emu->kvm),
snapshot save/restore time and live migration over loopback TCP, vmon (emu)
vs QEMU (tcg), on the same 256 MiB guest running
tests/guest/kernels/switch.c (which rewrites a 64 KiB table all the time),
once with its RAM otherwise idle and once with a 128 MiB working set
(switch.c's ws=) filled with non-zero data and kept dirty.

Live migration: both at max-bandwidth 1 GiB/s with the default
downtime-limit (300 ms), cancelled if not converged in 60 s; destination started with -incoming tcp:; total
time is from the migrate command to the source's status completed, and
total-time and downtime are what each source's query-migrate reports.

QEMU 7.2 has no `file:` migration URI (it arrived in 8.2): its snapshot is
`migrate exec:cat>PATH` and `-incoming exec:cat PATH`, which is what 7.2
users do.  Save: from the migrate command of a stopped VM to status completed.  Restore:
from process start to query-status "running" with the state loaded.
Usage: bench/migration.py [RUNS]   (env VMON, QEMU, GUEST_TESTS)"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEBUG_EXIT, GUEST_TESTS, QEMU, VMON, ensure_built  # noqa: E402

MEM = "256"
# MiB the guest keeps dirty in the second set of runs (switch.c's ws=).
WORKING_SET = 128
# Live migration: both VMMs at 1 GiB/s (the 128 MiB/s default is slower than
# the working set is rewritten), the default 300 ms downtime limit, and a
# run that has not converged after this many seconds is cancelled.
MAX_BANDWIDTH = 1 << 30
CONVERGE_TIMEOUT = 60


def reap(p):
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def quit_vm(q):
    try:
        q.cmd("quit")
    except (OSError, ValueError):
        pass   # the process may close the socket before its reply


class QMP:
    def __init__(self, path, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.005)
        self.f = self.s.makefile("rwb")
        json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, args=None):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.f.write((json.dumps(req) + "\n").encode())
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "event" not in msg:
                if "error" in msg:
                    raise RuntimeError(f"{name}: {msg['error']}")
                return msg["return"]


def start(which, accel, sock, extra=(), ws=0):
    kernel = os.path.join(GUEST_TESTS, "switch.elf")
    args = ["-accel", accel, "-m", MEM, "-nographic", "-no-reboot", *DEBUG_EXIT,
            "-kernel", kernel, "-append", f"rounds=0 ws={ws}", "-qmp",
            f"unix:{sock},server=on,wait=off", *extra]
    cmd = [VMON, *args] if which == "vmon" else [QEMU, "-M", "pc", "-net", "none", *args]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    p.serial = b""

    def pump():
        for chunk in iter(lambda: p.stdout.read1(65536), b""):
            p.serial += chunk
    threading.Thread(target=pump, daemon=True).start()
    return p


def settle(p, ws, timeout=120):
    """Let the guest dirty its table for a second, after it has filled its
    working set (emu and tcg fill it at different speeds)."""
    deadline = time.time() + timeout
    while ws and b"working set ready" not in p.serial:
        if time.time() > deadline or p.poll() is not None:
            raise RuntimeError("the guest never filled its working set")
        time.sleep(0.01)
    time.sleep(1.0)


def wait_running(q, timeout=60):
    """Until the guest runs.  A VM restored from a snapshot of a stopped VM
    comes up paused in QEMU (its runstate travels in the stream): cont."""
    deadline = time.time() + timeout
    while True:
        st = q.cmd("query-status")["status"]
        if st == "running":
            return
        if st == "paused":
            q.cmd("cont")
        if time.time() > deadline:
            raise RuntimeError(f"never running (status {st})")
        time.sleep(0.002)


def snapshot_once(which, accel, tmp, ws):
    sock, sock2 = os.path.join(tmp, "a.qmp"), os.path.join(tmp, "b.qmp")
    path = os.path.join(tmp, "snap")
    for p in (sock, sock2, path):
        if os.path.exists(p):
            os.unlink(p)
    p = start(which, accel, sock, ws=ws)
    try:
        q = QMP(sock)
        settle(p, ws)
        # A snapshot of a stopped VM: QEMU's migrate of a running one is a
        # live migration into the file, which never converges while the
        # working set is rewritten faster than it is copied.
        q.cmd("stop")
        t0 = time.perf_counter()
        if which == "vmon":
            q.cmd("migrate", {"uri": f"file:{path}"})
        else:
            q.cmd("migrate", {"uri": f"exec:cat>{path}"})
        while q.cmd("query-migrate").get("status") != "completed":
            # A snapshot that never completes would fill the disk.
            if time.perf_counter() - t0 > CONVERGE_TIMEOUT:
                q.cmd("migrate_cancel")
                raise RuntimeError(f"snapshot not completed in {CONVERGE_TIMEOUT} s")
            time.sleep(0.001)
        save = time.perf_counter() - t0
        quit_vm(q)
    finally:
        reap(p)
    size = os.path.getsize(path)
    t0 = time.perf_counter()
    inc = f"file:{path}" if which == "vmon" else f"exec:cat {path}"
    p = start(which, accel, sock2, ["-incoming", inc], ws=ws)
    try:
        q = QMP(sock2)
        wait_running(q)
        restore = time.perf_counter() - t0
        quit_vm(q)
    finally:
        reap(p)
    return save, restore, size


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def live_once(which, accel, tmp, ws):
    sock, sock2 = os.path.join(tmp, "src.qmp"), os.path.join(tmp, "dst.qmp")
    for p in (sock, sock2):
        if os.path.exists(p):
            os.unlink(p)
    port = free_port()
    dst = start(which, accel, sock2, ["-incoming", f"tcp:127.0.0.1:{port}"], ws=ws)
    src = start(which, accel, sock, ws=ws)
    try:
        qd = QMP(sock2)
        q = QMP(sock)
        settle(src, ws)
        q.cmd("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
        t0 = time.perf_counter()
        q.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
        while True:
            st = q.cmd("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.perf_counter() - t0 > CONVERGE_TIMEOUT:
                q.cmd("migrate_cancel")
                raise RuntimeError(f"no convergence in {CONVERGE_TIMEOUT} s "
                                   f"(dirty rate {st.get('ram', {}).get('dirty-pages-rate')} pages/s)")
            time.sleep(0.001)
        wall = time.perf_counter() - t0
        if st["status"] != "completed":
            raise RuntimeError(f"migration {st['status']}: {st.get('error-desc')}")
        wait_running(qd)
        quit_vm(q)
        quit_vm(qd)
    finally:
        reap(src)
        reap(dst)
    return (wall, st["total-time"] / 1000, st["downtime"] / 1000,
            st["ram"]["transferred"], st["ram"].get("dirty-sync-count", 0))


def switch_latency(runs):
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "s.qmp")
        p = start("vmon", "emu", sock)
        out = {"kvm": [], "emu": []}
        try:
            q = QMP(sock)
            time.sleep(0.5)
            cur = "emu"
            for _ in range(2 * runs):
                cur = "kvm" if cur == "emu" else "emu"
                t0 = time.perf_counter()
                q.cmd("x-accel-switch", {"accel": cur})
                out[cur].append((time.perf_counter() - t0) * 1000)
                time.sleep(0.3)
            quit_vm(q)
        finally:
            reap(p)
    return out


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ensure_built()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()}, {MEM} MiB guest, "
          f"median of {runs}")
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        sw = switch_latency(runs)
        print("| switch | median ms | min ms | max ms |")
        print("|---|---|---|---|")
        for to, name in (("emu", "kvm -> emu"), ("kvm", "emu -> kvm")):
            v = sw[to]
            print(f"| {name} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
    for ws in (0, WORKING_SET):
        snapshot_and_live(runs, ws)


def median_rows(runs, once, ws, ncols):
    """Medians of each column of runs of once(which, accel, tmp, ws), per VMM."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which, accel in (("vmon", "emu"), ("qemu", "tcg")):
            res = []
            for _ in range(runs):
                try:
                    res.append(once(which, accel, tmp, ws))
                except (OSError, RuntimeError, ValueError) as e:
                    print(f"# {which}: {once.__name__} failed: {e!r}")
            # No successful run: the row says "-" rather than a number.
            out[which] = ([statistics.median(r[k] for r in res) for k in range(ncols)]
                          if res else [float("nan")] * ncols)
    return out["vmon"], out["qemu"]


def snapshot_and_live(runs, ws):
    what = f"working set {ws} MiB" if ws else "idle RAM"
    v, qm = median_rows(runs, snapshot_once, ws, 3)
    print(f"| snapshot, {what} | vmon (emu) | QEMU (tcg) | ratio |")
    print("|---|---|---|---|")
    print(f"| save s | {v[0]:.3f} | {qm[0]:.3f} | {v[0] / qm[0]:.2f} |")
    print(f"| restore to running s | {v[1]:.3f} | {qm[1]:.3f} | {v[1] / qm[1]:.2f} |")
    print(f"| file MiB | {v[2] / 2**20:.1f} | {qm[2] / 2**20:.1f} | {v[2] / qm[2]:.2f} |")
    v, qm = median_rows(runs, live_once, ws, 5)
    print(f"| live migration (loopback), {what} | vmon (emu) | QEMU (tcg) | ratio |")
    print("|---|---|---|---|")
    print(f"| migrate to completed s | {v[0]:.3f} | {qm[0]:.3f} | {v[0] / qm[0]:.2f} |")
    print(f"| total-time s (reported) | {v[1]:.3f} | {qm[1]:.3f} | {v[1] / qm[1]:.2f} |")
    print(f"| downtime ms (reported) | {v[2] * 1000:.0f} | {qm[2] * 1000:.0f} | "
          f"{v[2] / qm[2] if qm[2] else float('nan'):.2f} |")
    print(f"| transferred MiB | {v[3] / 2**20:.1f} | {qm[3] / 2**20:.1f} | {v[3] / qm[3]:.2f} |")
    print(f"| dirty syncs | {v[4]:.0f} | {qm[4]:.0f} | |")


if __name__ == "__main__":
    main()
