#!/usr/bin/python3
"""vmon -accel emu against qemu-system-x86_64 -accel tcg on the guest kit
(scripts/guest-kit.sh): boot to VMON-GUEST-UP, a CPU-bound workload in the
guest (md5sum of 64 MiB from /dev/zero, fed to the kit's shell on stdin),
and the CPU an idle guest at its shell prompt uses.

Not a test: prints medians and ratios.  The host is shared and noisy, so
CPU time (user+sys of the VM process) is the primary metric, wall time
secondary.  Environment: VMON, QEMU, GUEST_KIT (dir with vmlinuz and
initrd.cpio.gz; default build/guest)."""
import argparse
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import QEMU, ROOT, VMON, machine_line, median, ratio  # noqa: E402

KIT = os.environ.get("GUEST_KIT", os.path.join(ROOT, "build", "guest"))
TICK = os.sysconf("SC_CLK_TCK")
MARKER = b"VMON-GUEST-UP"
PROMPT = b"init: starting a shell"
WORK = b"dd if=/dev/zero bs=1M count=64 2>/dev/null | md5sum; echo MD5-"b"\"\"DONE\n"
WORK_DONE = b"MD5-DONE"


def vm_cmd(which, shell):
    append = "console=ttyS0 quiet" + (" shell" if shell else "")
    common = ["-m", "256", "-nographic", "-no-reboot",
              "-kernel", os.path.join(KIT, "vmlinuz"),
              "-initrd", os.path.join(KIT, "initrd.cpio.gz"), "-append", append]
    if which == "vmon":
        return [VMON, "-accel", "emu", *common]
    return [QEMU, "-M", "pc", "-accel", "tcg", "-net", "none", *common]


def proc_cpu(pid):
    """user+sys seconds of a live process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Vm:
    def __init__(self, cmd):
        self.cpu0 = children_cpu()
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.buf = b""

    def wait_for(self, text, timeout):
        """Seconds since start when text appeared, CPU at that point."""
        deadline = time.monotonic() + timeout
        while text not in self.buf:
            chunk = self.p.stdout.read()
            if chunk:
                self.buf += chunk
                continue
            if self.p.poll() is not None:
                raise SystemExit(f"bench: VM exited before {text!r}:\n"
                                 + self.buf[-2000:].decode(errors="replace"))
            if time.monotonic() > deadline:
                self.kill()
                raise SystemExit(f"bench: timed out waiting for {text!r}")
            time.sleep(0.002)
        return time.monotonic() - self.t0, proc_cpu(self.p.pid)

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def finish(self, timeout):
        """Wait for exit; (wall, CPU incl. everything after the last sample)."""
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SystemExit("bench: VM did not power off")
        return time.monotonic() - self.t0, children_cpu() - self.cpu0

    def kill(self):
        self.p.kill()
        self.p.wait()


def run_boot(which, timeout):
    vm = Vm(vm_cmd(which, False))
    vm.wait_for(MARKER, timeout)
    wall, cpu = vm.finish(timeout)
    return wall, cpu


def run_work(which, timeout):
    vm = Vm(vm_cmd(which, True))
    vm.wait_for(PROMPT, timeout)
    time.sleep(0.5)
    t0, c0 = time.monotonic(), proc_cpu(vm.p.pid)
    vm.send(WORK)
    vm.wait_for(WORK_DONE, timeout)  # the echoed command line reads MD5-""DONE
    wall, cpu = time.monotonic() - t0, proc_cpu(vm.p.pid) - c0
    vm.send(b"poweroff -f\n")
    vm.finish(timeout)
    return wall, cpu


def run_idle(which, secs, timeout):
    vm = Vm(vm_cmd(which, True))
    vm.wait_for(PROMPT, timeout)
    time.sleep(2)
    c0, t0 = proc_cpu(vm.p.pid), time.monotonic()
    time.sleep(secs)
    frac = (proc_cpu(vm.p.pid) - c0) / (time.monotonic() - t0)
    vm.send(b"poweroff -f\n")
    vm.finish(timeout)
    return frac


def table(title, res, unit="s"):
    print(f"{title}: median of {len(res['vmon'])} runs")
    print(f"  {'':8} {'CPU ' + unit:>10} {'wall ' + unit:>10}")
    for w in ("vmon", "qemu"):
        if res[w]:
            print(f"  {w:8} {median([r[1] for r in res[w]]):10.2f} "
                  f"{median([r[0] for r in res[w]]):10.2f}")
    if res["vmon"] and res["qemu"]:
        c = ratio(median([r[1] for r in res["vmon"]]), median([r[1] for r in res["qemu"]]))
        wr = ratio(median([r[0] for r in res["vmon"]]), median([r[0] for r in res["qemu"]]))
        print(f"  vmon/qemu: CPU {c}, wall {wr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=3)
    ap.add_argument("--only", choices=["boot", "work", "idle"], action="append")
    ap.add_argument("--no-qemu", action="store_true", help="vmon only")
    ap.add_argument("--idle-secs", type=float, default=10)
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    for f in ("vmlinuz", "initrd.cpio.gz"):
        if not os.path.exists(os.path.join(KIT, f)):
            raise SystemExit(f"bench: {KIT}/{f} missing (scripts/guest-kit.sh {KIT}, "
                             "or set GUEST_KIT)")
    if not os.access(VMON, os.X_OK):
        raise SystemExit(f"bench: {VMON} not built (run make, or set VMON)")
    which = ["vmon"] if a.no_qemu else ["vmon", "qemu"]
    parts = a.only or ["boot", "work", "idle"]
    print(f"emu vs QEMU TCG, guest kit {KIT} ({machine_line()})")
    if "boot" in parts:
        res = {"vmon": [], "qemu": []}
        for _ in range(a.runs):
            for w in which:
                res[w].append(run_boot(w, a.timeout))
        table("boot to VMON-GUEST-UP and power-off", res)
    if "work" in parts:
        res = {"vmon": [], "qemu": []}
        for _ in range(a.runs):
            for w in which:
                res[w].append(run_work(w, a.timeout))
        table("md5sum of 64 MiB of /dev/zero in the guest", res)
    if "idle" in parts:
        for w in which:
            frac = run_idle(w, a.idle_secs, a.timeout)
            print(f"idle at the shell prompt over {a.idle_secs:.0f} s: {w} uses "
                  f"{100 * frac:.1f}% of a core")


if __name__ == "__main__":
    main()
