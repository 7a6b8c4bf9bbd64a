#!/usr/bin/env python3
"""Run the Multiboot test kernels under QEMU and compare their serial output
with expected/ -- the reference the vmon system tests use too.

    tests/guest/qemu_check.py [GUEST_TESTS_DIR] [--accel tcg|kvm]

QEMU's firmware prints a banner first; everything up to "Booting from ROM.."
is dropped.  QEMU enters the bzImage flavour through its real-mode setup
code and 32-bit entry; vmon uses the 64-bit entry."""
import argparse
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
import kernels as ktab  # noqa: E402


def clean(out):
    out = out.replace("\r", "")
    return re.sub(r"^.*?Booting from ROM\.+\s*", "", out, count=1, flags=re.S)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?", default=os.path.join(ktab.HERE, "../../build/guest-tests"))
    ap.add_argument("--accel", default="tcg")
    a = ap.parse_args()
    passed = failed = 0
    for k in ktab.load().values():
        cmd = ["qemu-system-x86_64", "-accel", a.accel, "-M", "pc", "-net", "none", *ktab.BASE_ARGS,
               "-kernel", os.path.join(a.dir, k.image), *k.args, *k.qemu_args]
        # QEMU joins repeated -append? No: the last wins, so merge them.
        if cmd.count("-append") > 1:
            parts = [cmd[i + 1] for i, w in enumerate(cmd) if w == "-append"]
            while "-append" in cmd:
                i = cmd.index("-append")
                del cmd[i:i + 2]
            cmd += ["-append", " ".join(parts)]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, errors="replace", timeout=300)
        got, want = clean(p.stdout), k.expected(qemu=True)
        if p.returncode == k.status and got == want:
            print(f"ok   {k.name}")
            passed += 1
        else:
            print(f"FAIL {k.name}: status {p.returncode} (want {k.status})")
            print("  got:  " + repr(got))
            print("  want: " + repr(want))
            failed += 1
    print(f"qemu_check: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
