"""Opt-in slow test (`make slow-test`, not part of `make check`): boot the
Linux guest kit under -accel kvm and report how far it got and how long it
took.

On a machine whose /dev/kvm is PVM, the host emulates every guest supervisor
instruction (~1/3500 of native speed), so the kernel crawls; on real VT-x or
AMD-V hardware it reaches the busybox marker in about a second.  The test
passes when the kernel at least printed its banner; the milestones reached
and their times are printed either way.
"""
import os
import select
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VMON = os.environ.get("VMON", os.path.join(ROOT, "build", "vmon"))
KIT = os.environ.get("GUEST_KIT", os.path.join(ROOT, "build", "guest"))
BUDGET = float(os.environ.get("SLOW_BOOT_SECONDS", "900"))

MILESTONES = [
    ("banner", b"Linux version"),
    ("command line", b"Command line:"),
    ("smp", b"smp: Brought up"),
    ("serial driver", b"ttyS0 at I/O 0x3f8"),
    ("initramfs", b"Unpacking initramfs"),
    ("init", b"Run /init as init process"),
    ("marker", b"VMON-GUEST-UP"),
    ("power off", b"reboot: Power down"),
]


def test_linux_guest_kit_under_kvm():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable here")
    kernel = os.path.join(KIT, "vmlinuz")
    initrd = os.path.join(KIT, "initrd.cpio.gz")
    if not os.path.exists(kernel):
        pytest.fail("guest kit missing: run `make guest-kit` first")

    start = time.monotonic()
    proc = subprocess.Popen(
        [VMON, "-accel", "kvm", "-m", "512", "-kernel", kernel, "-initrd", initrd,
         "-append", "console=ttyS0 earlyprintk=ttyS0", "-nographic", "-no-reboot"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = b""
    reached = []
    try:
        while time.monotonic() - start < BUDGET:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                output += chunk
                for name, needle in MILESTONES:
                    if name not in [r[0] for r in reached] and needle in output:
                        reached.append((name, time.monotonic() - start))
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    elapsed = time.monotonic() - start
    print("\nLinux guest kit under -accel kvm:")
    for name, t in reached:
        print(f"  {name:14s} after {t:8.1f} s")
    tail = output.decode(errors="replace").strip().splitlines()[-5:]
    print(f"  ran {elapsed:.1f} s, exit status {proc.returncode}; last lines:")
    for line in tail:
        print("   | " + line)
    assert reached and reached[0][0] == "banner", "the kernel did not print its banner"
