"""Issue 3 end to end: vmon's own emulator (-accel emu, alias tcg) boots the
Debian guest kit (GUEST_KIT, default build/guest; `make guest-kit` builds it)
to its busybox /init, with one and two vCPUs, and runs an interactive shell
driven through the serial console on stdin/stdout.

Each boot costs ~20 s of host CPU; the timeouts are generous because the
machine is shared, and nothing here asserts on wall-clock time."""
import hashlib
import os
import select
import subprocess
import time

import pytest

from conftest import ROOT, VMON, serial_text

KIT = os.path.abspath(os.environ.get("GUEST_KIT", os.path.join(ROOT, "build", "guest")))
BOOT_TIMEOUT = float(os.environ.get("EMU_LINUX_TIMEOUT", "900"))
MARKER = "VMON-GUEST-UP uptime="


def kit_args(accel, smp, append=""):
    kernel = os.path.join(KIT, "vmlinuz")
    initrd = os.path.join(KIT, "initrd.cpio.gz")
    for p in (kernel, initrd):
        if not os.path.exists(p):
            pytest.fail(f"{p} missing: run `make guest-kit` (or set GUEST_KIT)")
    return [VMON, "-accel", accel, "-smp", str(smp), "-m", "512",
            "-kernel", kernel, "-initrd", initrd,
            "-append", ("console=ttyS0 " + append).strip(),
            "-nographic", "-no-reboot"]


def boot_to_poweroff(accel, smp):
    cmd = kit_args(accel, smp)
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=BOOT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout or b"").decode(errors="replace")[-3000:]
        pytest.fail(f"no power-off after {BOOT_TIMEOUT}s: {' '.join(cmd)}\n{tail}")
    out = serial_text(p.stdout.decode(errors="replace"))
    err = p.stderr.decode(errors="replace")
    assert MARKER in out, f"no marker; last output:\n{out[-3000:]}\nstderr:\n{err}"
    assert p.returncode == 0, f"exit status {p.returncode}\nstderr:\n{err}\n{out[-2000:]}"
    return out


def test_emu_boots_kit_smp1(vmon):
    out = boot_to_poweroff("emu", 1)
    assert "smp: Brought up 1 node, 1 CPU" in out
    assert "DMI: vmon Standard PC (vmon), BIOS" in out
    assert "reboot: Power down" in out


def test_tcg_alias_boots_kit_smp2(vmon):
    """-accel tcg (QEMU command lines) is emu; the AP comes up through
    INIT/SIPI and the real-mode trampoline."""
    out = boot_to_poweroff("tcg", 2)
    assert "smp: Brought up 1 node, 2 CPUs" in out, out[-3000:]
    assert "reboot: Power down" in out


class Console:
    """A pexpect-like driver of the guest's serial console (stdlib only)."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buf = ""
        self.log = ""

    def expect(self, needle, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"timed out waiting for {needle!r}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.fail(f"vmon exited (status {self.proc.wait()}) before {needle!r}")
            text = chunk.decode(errors="replace").replace("\r", "")
            self.buf += text
            self.log += text
        before, _, self.buf = self.buf.partition(needle)
        return before

    def run(self, command, timeout=300):
        """Run one shell command; return its output.  The begin/end markers
        are split by quotes in the command line, so the terminal's echo of
        it (however the line editor wraps it) cannot match them."""
        self.proc.stdin.write(
            f"echo EMU-B''EGIN; {command}; echo EMU-E''ND\n".encode())
        self.proc.stdin.flush()
        self.expect("EMU-BEGIN\n", timeout)
        return self.expect("EMU-END\n", timeout)

    def fail(self, why):
        self.close()
        pytest.fail(f"{why}; console so far:\n{self.log[-4000:]}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def cpuinfo_field(text, name):
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


GUEST_UUID = "12345678-9abc-def0-1122-334455667788"


def test_emu_interactive_shell(vmon):
    con = Console(kit_args("emu", 1, "shell") + ["-uuid", GUEST_UUID])
    try:
        con.expect("init: starting a shell", BOOT_TIMEOUT)
        # The shell has started once it answers.
        con.run("true")

        ls = con.run("ls /").split()
        for d in ("proc", "sys", "dev", "bin", "init"):
            assert d in ls, f"ls / lacks {d}: {ls}"

        cpuinfo = con.run("cat /proc/cpuinfo")
        # vmon's CPUID model (cpu/cpuid.c): brand string, family 6 model 15
        # stepping 11, SSE2 and SSE3 (pni) advertised, no AVX or XSAVE.
        assert cpuinfo_field(cpuinfo, "model name") == "vmon virtual CPU", cpuinfo
        assert cpuinfo_field(cpuinfo, "cpu family") == "6", cpuinfo
        assert cpuinfo_field(cpuinfo, "model") == "15", cpuinfo
        assert cpuinfo_field(cpuinfo, "stepping") == "11", cpuinfo
        flags = set((cpuinfo_field(cpuinfo, "flags") or "").split())
        for f in ("fpu", "tsc", "msr", "pae", "cx8", "apic", "cmov", "pat",
                  "clflush", "mmx", "fxsr", "sse", "sse2", "syscall", "nx",
                  "rdtscp", "lm", "pni", "cx16", "popcnt", "hypervisor"):
            assert f in flags, f"/proc/cpuinfo flags lack {f}: {sorted(flags)}"
        for f in ("avx", "xsave", "ssse3", "sse4_1", "movbe", "x2apic"):
            assert f not in flags, f"/proc/cpuinfo advertises {f}"

        # SMBIOS (hw/smbios.c) as Linux exports it, with the -uuid given.
        dmi = con.run("cd /sys/class/dmi/id && cat sys_vendor product_name bios_vendor "
                      "product_uuid chassis_type; cd /").split("\n")
        assert dmi[:5] == ["vmon", "Standard PC (vmon)", "vmon", GUEST_UUID, "1"], dmi

        out = con.run("dd if=/dev/zero bs=1k count=1024 2>/dev/null | md5sum")
        want = hashlib.md5(bytes(1024 * 1024)).hexdigest()
        assert out.split()[:1] == [want], f"md5sum printed {out!r}, host says {want}"

        con.proc.stdin.write(b"poweroff -f\n")
        con.proc.stdin.flush()
        con.expect("reboot: Power down", 300)
        try:
            status = con.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            con.fail("vmon did not exit after the guest powered off")
        assert status == 0, f"exit status {status}"
    finally:
        con.close()
