"""The x87 FPU of vmon's emulator as Linux user space sees it: the Debian
guest kit boots under -accel emu and runs tests/system/guest/x87_probe.c, a
freestanding static program (built here with the host gcc) that prints the
FNSAVE image after fixed x87 sequences (transcendentals, every rounding and
precision control, a stack overflow with FUCOMIP/FXAM, BCD and integer
conversions, FXTRACT/FSCALE/FPREM1, registers live across a nanosleep).
The guest's output must equal the same binary's output on the host.  Then
`x87_probe mf` leaves an unmasked exception pending and runs FWAIT: the
guest kernel's #MF handler must kill it with SIGFPE (shell status 136).

Environment: VMON, GUEST_KIT (default build/guest)."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, accel_unavailable, run_vmon, serial_text

KIT = os.environ.get("GUEST_KIT", os.path.join(ROOT, "build", "guest"))
PROBE_SRC = os.path.join(ROOT, "tests", "system", "guest", "x87_probe.c")

GUEST_SCRIPT = r"""
/tests/x87_probe
/tests/x87_probe mf
echo "T mf=$?"
echo T-END
"""


def build_probe(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        pytest.fail("no host C compiler (gcc) to build the x87 probe")
    exe = tmp_path / "x87_probe"
    subprocess.run([cc, "-O1", "-static", "-nostdlib", "-fno-pie", "-no-pie",
                    "-fno-stack-protector", "-o", str(exe), PROBE_SRC], check=True)
    return exe


def make_initrd(tmp_path, probe):
    """The kit's initrd plus a cpio with /tests/x87.sh and the probe."""
    root = tmp_path / "extra"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "x87.sh").write_text(GUEST_SCRIPT)
    shutil.copy(probe, root / "tests" / "x87_probe")
    os.chmod(root / "tests" / "x87_probe", 0o755)
    extra = subprocess.run("find . | cpio -o -H newc --quiet", shell=True, cwd=root,
                           check=True, capture_output=True).stdout
    out = tmp_path / "initrd"
    with open(os.path.join(KIT, "initrd.cpio.gz"), "rb") as f:
        kit = f.read()
    # Linux looks for the next archive of an initramfs at a 4-byte boundary.
    out.write_bytes(kit + b"\0" * (-len(kit) % 4) + extra)
    return str(out)


def probe_lines(text):
    return [l for l in serial_text(text).splitlines() if l.startswith("X87")]


def test_emu_linux_x87_matches_host(tmp_path):
    reason = accel_unavailable("emu")
    if reason:
        pytest.skip(f"accel emu: {reason}")
    for f in ("vmlinuz", "initrd.cpio.gz"):
        if not os.path.exists(os.path.join(KIT, f)):
            pytest.fail(f"guest kit missing ({KIT}/{f}): run scripts/guest-kit.sh {KIT}")
    probe = build_probe(tmp_path)
    native = subprocess.run([str(probe)], capture_output=True, check=True).stdout.decode()
    want = probe_lines(native)
    assert want[-1] == "X87-END" and len(want) > 100, native
    initrd = make_initrd(tmp_path, probe)
    status, out, err = run_vmon(
        ["-accel", "emu", "-m", "256", "-nographic", "-no-reboot",
         "-kernel", os.path.join(KIT, "vmlinuz"), "-initrd", initrd,
         "-append", "console=ttyS0 quiet vmon.test=x87"], timeout=900)
    assert "T-END" in out, f"guest did not finish: status {status}\n{out[-3000:]}\n{err}"
    got = probe_lines(out)
    diff = [f"host {w!r} guest {g!r}" for w, g in zip(want, got) if w != g]
    assert got == want, "\n".join(diff[:20]) or f"{len(got)} lines vs {len(want)}"
    assert "T mf=136" in serial_text(out), serial_text(out)[-2000:]
    assert "x87 mf: survived" not in out
    assert status == 0, err
