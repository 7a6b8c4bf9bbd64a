#!/usr/bin/env python3
"""Start-up benchmark: time from launching the VMM to the first byte the
hello kernel prints, time to exit, and peak RSS -- vmon vs QEMU with the
same kernel and accelerator; median of N runs.

    bench/startup.py [-n RUNS] [--accel kvm]"""
import argparse
import sys

from common import ensure_built, machine_line, median, ratio, run_timed, vm_cmd

MARKER = b"Hello from vmon test kernel"


def measure(which, accel, runs):
    first, total, rss = [], [], []
    for _ in range(runs):
        t_first, t_exit, maxrss, status, out = run_timed(vm_cmd(which, accel, "hello.elf"), MARKER)
        if t_first is None or status != 1:
            sys.exit(f"startup: {which} did not run the hello kernel (status {status}): "
                     f"{out[-200:]!r}")
        first.append(t_first * 1000)
        total.append(t_exit * 1000)
        rss.append(maxrss / 1024)
    return median(first), median(total), median(rss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--runs", type=int, default=5)
    ap.add_argument("--accel", default="kvm")
    a = ap.parse_args()
    ensure_built()
    v = measure("vmon", a.accel, a.runs)
    q = measure("qemu", a.accel, a.runs)
    print(f"startup: hello kernel, -accel {a.accel}, median of {a.runs} runs ({machine_line()})")
    print(f"{'':28}{'vmon':>10}{'qemu':>10}{'qemu/vmon':>11}")
    for i, label in enumerate(["first kernel byte (ms)", "to exit (ms)", "peak RSS (MiB)"]):
        print(f"{label:28}{v[i]:10.1f}{q[i]:10.1f}{ratio(q[i], v[i]):>11}")


if __name__ == "__main__":
    main()
