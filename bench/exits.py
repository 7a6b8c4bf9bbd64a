#!/usr/bin/env python3
"""Exit-cost benchmark: the `exits` test kernel does N port writes that each
leave the guest; ns per exit for vmon and QEMU is the difference between a
run with N accesses and one with none, divided by N (so start-up cancels
out), median of R runs each.  bench/kvm_floor does the same loop on a bare
KVM_RUN loop: the floor any VMM pays here.

    bench/exits.py [-n N] [-r RUNS] [--mode user-pio|pio] [--accel kvm]

user-pio runs the loop in guest ring 3 (native speed even on PVM hosts,
where guest ring-0 code is emulated); pio runs it in ring 0."""
import argparse
import os
import re
import subprocess
import sys

from common import BENCH_OUT, ensure_built, machine_line, median, ratio, run_timed, vm_cmd

FLOOR_MODE = {"user-pio": "user", "pio": "kernel"}


def per_exit_ns(which, accel, n, runs, mode):
    base, full = [], []
    for _ in range(runs):
        for count, acc in ((0, base), (n, full)):
            _, t, _, status, out = run_timed(
                vm_cmd(which, accel, "exits.elf", f"count={count} mode={mode}"))
            if status != 1 or b"exits: done" not in out:
                sys.exit(f"exits: {which} failed (status {status}): {out[-300:]!r}")
            acc.append(t)
    return (median(full) - median(base)) * 1e9 / n


def floor_ns(n, runs, mode):
    vals = []
    for _ in range(runs):
        p = subprocess.run([os.path.join(BENCH_OUT, "kvm_floor"), str(n), FLOOR_MODE[mode]],
                           capture_output=True, text=True)
        m = re.search(r"([0-9.]+) ns/exit", p.stdout)
        if p.returncode or not m:
            sys.exit(f"exits: kvm_floor failed: {p.stderr.strip()}")
        vals.append(float(m.group(1)))
    return median(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000, help="exits per run")
    ap.add_argument("-r", "--runs", type=int, default=3)
    ap.add_argument("--mode", default="user-pio", choices=sorted(FLOOR_MODE))
    ap.add_argument("--accel", default="kvm")
    a = ap.parse_args()
    ensure_built()
    fl = floor_ns(a.n, a.runs, a.mode)
    v = per_exit_ns("vmon", a.accel, a.n, a.runs, a.mode)
    q = per_exit_ns("qemu", a.accel, a.n, a.runs, a.mode)
    print(f"exits: {a.n} port writes ({a.mode}), -accel {a.accel}, median of {a.runs} "
          f"runs ({machine_line()})")
    print(f"{'':12}{'ns/exit':>10}{'vs floor':>10}")
    print(f"{'kvm_floor':12}{fl:10.0f}{'1.00x':>10}")
    print(f"{'vmon':12}{v:10.0f}{ratio(v, fl):>10}")
    print(f"{'qemu':12}{q:10.0f}{ratio(q, fl):>10}")
    print(f"qemu/vmon: {ratio(q, v)}")


if __name__ == "__main__":
    main()
