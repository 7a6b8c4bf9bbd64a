"""Every test kernel under every accelerator: the exit status and the whole
serial output must match tests/guest/expected/, and kvm and emu must print
the same thing."""
import os

import pytest

from conftest import ACCELS, guest_args, guest_kernels, run_vmon, serial_text

VMON_ASAN = os.environ.get("VMON_ASAN")

KERNELS = sorted(guest_kernels.load())
_results = {}

# Known vmon bugs, as (kernel, accel) -> reason.  Strict: once fixed the
# test XPASSes, fails, and the entry must go.
KNOWN_BROKEN = {}

# What a host cannot run, as (kernel, accel) -> (condition, reason): not
# vmon's to fix.  PVM (kvm_pvm, this machine's /dev/kvm) runs the guest
# kernel in host user mode and raises #UD for a far CALL through a call
# gate; real KVM runs it in hardware.
HOST_LIMITS = {
    ("callgate", "kvm"): (lambda: os.path.isdir("/sys/module/kvm_pvm"),
                          "PVM raises #UD on a far CALL through a call gate"),
}


def host_limit(name, accel):
    cond, reason = HOST_LIMITS.get((name, accel), (lambda: False, ""))
    return reason if cond() else None


def boot(kernel, accel):
    """Run a kernel once per accelerator and session; later tests reuse it."""
    key = (kernel.name, accel)
    if key not in _results:
        _results[key] = run_vmon(guest_args(kernel, accel))
    return _results[key]


@pytest.mark.parametrize("name", KERNELS)
def test_kernel(name, accel, kernels, request):
    if (name, accel) in KNOWN_BROKEN:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_BROKEN[(name, accel)], strict=True))
    if host_limit(name, accel):
        pytest.skip(f"accel {accel}: {host_limit(name, accel)}")
    k = kernels[name]
    status, out, err = boot(k, accel)
    assert serial_text(out) == k.expected(), f"stderr: {err}"
    assert status == k.status, f"stderr: {err}"


@pytest.mark.parametrize("name", KERNELS)
def test_accels_agree(name, vmon, kernels):
    from conftest import accel_unavailable
    for a in ACCELS:
        reason = accel_unavailable(a)
        if reason:
            pytest.skip(f"accel {a}: {reason}")
        if host_limit(name, a):
            pytest.skip(f"accel {a}: {host_limit(name, a)}")
    k = kernels[name]
    runs = {a: boot(k, a) for a in ACCELS}
    first = ACCELS[0]
    for a in ACCELS[1:]:
        assert runs[a][0] == runs[first][0], f"exit status {first} vs {a}"
        assert serial_text(runs[a][1]) == serial_text(runs[first][1]), f"output {first} vs {a}"


def test_failing_kernel_fails(accel, kernels):
    """The harness sees a kernel's failure: debug-exit value 1 is status 3
    and the FAIL line reaches the serial output."""
    k = kernels["exits"]
    status, out, err = run_vmon(guest_args(k, accel, ["-append", "mode=bogus"]))
    assert status == 3, f"stderr: {err}"
    assert "FAIL: exits: unknown mode" in serial_text(out)


def test_multiboot_cmdline_reaches_guest(accel, kernels):
    k = kernels["hello"]
    status, out, err = run_vmon(guest_args(k, accel, ["-append", "a=1 b=two"]))
    assert status == 1, f"stderr: {err}"
    assert 'cmdline: "a=1 b=two"' in serial_text(out)


def test_linux_cmdline_reaches_guest(accel, kernels):
    k = kernels["bzhello"]
    status, out, err = run_vmon(guest_args(k, accel, ["-append", "root=/dev/x quiet"]))
    assert status == 1, f"stderr: {err}"
    assert 'cmdline: "root=/dev/x quiet"' in serial_text(out)


@pytest.mark.parametrize("mode", ["pio", "user-mmio"])
def test_exits_modes(accel, kernels, mode):
    """The benchmark's other access kinds work too."""
    k = kernels["exits"]
    status, out, err = run_vmon(guest_args(k, accel, ["-append", f"count=500 mode={mode}"]))
    assert serial_text(out) == f"exits: 500 accesses, mode {mode}\nexits: done\nPASS\n", err
    assert status == 1, f"stderr: {err}"


def test_ram_size_reaches_guest(accel, kernels):
    k = kernels["hello"]
    status, out, err = run_vmon(guest_args(k, accel, ["-m", "256"]))
    assert status == 1, f"stderr: {err}"
    assert "memory: ~256 MiB usable" in serial_text(out)


def test_smp_single_cpu(accel, kernels):
    k = kernels["smp"]
    status, out, err = run_vmon(guest_args(k, accel, ["-smp", "1"]))
    assert status == 1, f"stderr: {err}"
    assert "smp: MADT lists 1 cpus\n" in serial_text(out)
    assert "cpus: 1 online\n" in serial_text(out)


@pytest.mark.parametrize("name", KERNELS)
def test_kernel_asan(name, accel, kernels, request):
    """The same runs under the ASan+UBSan build (make system-test sets
    VMON_ASAN): any sanitizer report fails the run."""
    if not VMON_ASAN:
        pytest.skip("VMON_ASAN not set")
    if not os.access(VMON_ASAN, os.X_OK):
        pytest.fail(f"VMON_ASAN={VMON_ASAN} is not an executable")
    if (name, accel) in KNOWN_BROKEN:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_BROKEN[(name, accel)], strict=True))
    if host_limit(name, accel):
        pytest.skip(f"accel {accel}: {host_limit(name, accel)}")
    k = kernels[name]
    status, out, err = run_vmon(guest_args(k, accel), binary=VMON_ASAN)
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert serial_text(out) == k.expected(), f"stderr: {err}"
    assert status == k.status, f"stderr: {err}"
