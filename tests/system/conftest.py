"""Fixtures for vmon's system tests.

Environment:
  VMON         the vmon binary (default build/vmon)
  GUEST_TESTS  directory of built test kernels (default build/guest-tests;
               `make guest-tests` builds it)

Every test that boots a guest takes the `accel` fixture and so runs once per
accelerator in ACCELS.  An accelerator that cannot run here is skipped with
the reason: kvm when /dev/kvm cannot be opened, emu until vmon is built
with it (detected by asking vmon, not assumed)."""
import functools
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "guest"))
sys.dont_write_bytecode = True

import kernels as guest_kernels  # noqa: E402  (tests/guest/kernels.py)

# Every accelerator the guest tests run under.
ACCELS = ["kvm", "emu"]

VMON = os.path.abspath(os.environ.get("VMON", os.path.join(ROOT, "build", "vmon")))
GUEST_TESTS = os.path.abspath(os.environ.get("GUEST_TESTS",
                                             os.path.join(ROOT, "build", "guest-tests")))
DEFAULT_TIMEOUT = 300


class VmonTimeout(Exception):
    pass


def run_vmon(args, timeout=DEFAULT_TIMEOUT, binary=None):
    """Run vmon with args; return (status, stdout, stderr) as text.
    stdin is /dev/null; a run past timeout is killed and fails the test."""
    cmd = [binary or VMON, *args]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"vmon timed out after {timeout}s: {' '.join(cmd)}\nstdout so far:\n{out}")
    return (p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace"))


def serial_text(out):
    """Guest serial output as the kernels mean it: "\\r\\n" -> "\\n"."""
    return out.replace("\r", "")


def kernel_path(image):
    path = os.path.join(GUEST_TESTS, image)
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: run `make guest-tests` (or set GUEST_TESTS)")
    return path


def guest_args(kernel, accel, extra=()):
    """The command line a QEMU user would type for one test kernel."""
    return ["-accel", accel, *guest_kernels.BASE_ARGS,
            "-kernel", kernel_path(kernel.image), *kernel.args, *extra]


@functools.lru_cache(maxsize=None)
def accel_unavailable(accel):
    """None if vmon can run guests with accel here, else why not."""
    if accel == "kvm":
        try:
            os.close(os.open("/dev/kvm", os.O_RDWR))
        except OSError as e:
            return f"/dev/kvm cannot be opened: {e.strerror}"
        return None
    # Ask vmon itself: a one-line "-accel X: ..." error with status 1 means
    # it was built without that accelerator.
    hello = guest_kernels.load()["hello"]
    status, out, err = run_vmon(guest_args(hello, accel))
    lines = err.strip().splitlines()
    if status == 1 and not out and len(lines) == 1 and f"-accel {accel}" in lines[0]:
        return f"vmon says: {lines[0]}"
    return None


@pytest.fixture(scope="session")
def vmon():
    if not os.access(VMON, os.X_OK):
        pytest.fail(f"{VMON} is not an executable: run `make` (or set VMON)")
    return VMON


@pytest.fixture(params=ACCELS)
def accel(request, vmon):
    reason = accel_unavailable(request.param)
    if reason:
        pytest.skip(f"accel {request.param}: {reason}")
    return request.param


@pytest.fixture(scope="session")
def kernels():
    return guest_kernels.load()


@pytest.fixture
def guests():
    """A list the test appends each vmon it starts to (anything with a
    kill() method); they are all killed at teardown, pass or fail."""
    made = []
    yield made
    for g in made:
        g.kill()
