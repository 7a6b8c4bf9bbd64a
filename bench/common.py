"""Shared helpers for the benchmark scripts: locating binaries, building
what is missing, running a VM and timing it."""
import os
import statistics
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VMON = os.environ.get("VMON", os.path.join(ROOT, "build", "vmon"))
GUEST_TESTS = os.environ.get("GUEST_TESTS", os.path.join(ROOT, "build", "guest-tests"))
BENCH_OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "build", "bench"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
KIT = os.environ.get("GUEST_KIT", os.path.join(ROOT, "build", "guest"))
DEBUG_EXIT = ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]


def ensure_built():
    if not os.path.exists(os.path.join(GUEST_TESTS, "hello.elf")):
        subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tests", "guest"),
                        f"OUT={os.path.abspath(GUEST_TESTS)}"], check=True)
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "bench"),
                    f"OUT={os.path.abspath(BENCH_OUT)}"], check=True)
    if not os.access(VMON, os.X_OK):
        raise SystemExit(f"bench: {VMON} not built (run make, or set VMON)")


def vm_cmd(which, accel, kernel, append=None):
    """The same VM for vmon and QEMU; QEMU also gets -M pc and no NIC so
    its defaults do not add work vmon does not do."""
    k = os.path.join(GUEST_TESTS, kernel)
    common = ["-accel", accel, "-m", "128", "-nographic", "-no-reboot", "-kernel", k, *DEBUG_EXIT]
    if append is not None:
        common += ["-append", append]
    if which == "vmon":
        return [VMON, *common]
    return [QEMU, "-M", "pc", "-net", "none", *common]


def run_timed(cmd, marker=None, timeout=600):
    """Run cmd; return (seconds to the first occurrence of marker on stdout or
    None, seconds to exit, peak RSS KiB, exit status, stdout bytes)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    os.set_blocking(p.stdout.fileno(), False)
    buf = b""
    t_marker = None
    deadline = t0 + timeout
    while True:
        chunk = p.stdout.read()
        if chunk:
            buf += chunk
            if marker is not None and t_marker is None and marker in buf:
                t_marker = time.monotonic() - t0
        # wait4 on this pid gives its own peak RSS, not the sum of children.
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            t_exit = time.monotonic() - t0
            buf += p.stdout.read() or b""
            if marker is not None and t_marker is None and marker in buf:
                t_marker = t_exit
            p.returncode = os.waitstatus_to_exitcode(status)
            return t_marker, t_exit, ru.ru_maxrss, p.returncode, buf
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise SystemExit(f"bench: timed out: {' '.join(cmd)}")
        time.sleep(0.0005)


def median(xs):
    return statistics.median(xs)


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def machine_line():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, nproc {os.cpu_count()}, {model}"


def kit_initrd(tmp, name, script):
    """The guest kit's initramfs plus /tests/NAME.sh (run by vmon.test=NAME)."""
    root = os.path.join(tmp, "extra", "tests")
    os.makedirs(root)
    with open(os.path.join(root, f"{name}.sh"), "w") as f:
        f.write(script)
    extra = subprocess.run("find . | cpio -o -H newc --quiet", shell=True,
                           cwd=os.path.join(tmp, "extra"), check=True,
                           capture_output=True).stdout
    out = os.path.join(tmp, "initrd")
    with open(os.path.join(KIT, "initrd.cpio.gz"), "rb") as f, open(out, "wb") as o:
        kit = f.read()
        # Linux looks for the next archive of an initramfs at a 4-byte boundary.
        o.write(kit + b"\0" * (-len(kit) % 4) + extra)
    return out


def byte_sink(srv, got):
    """Append the byte count of each connection to srv, in order, until the
    listening socket closes."""
    while True:
        try:
            c, _ = srv.accept()
        except OSError:
            return
        n = 0
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            n += len(b)
        got.append(n)
        c.close()
