"""The command line as QEMU users type it: every error is one line on
stderr with exit status 1 and starts no guest; --help/--version; serial
backends; -no-reboot; exit statuses."""
import os
import subprocess
import time

import pytest

from conftest import ACCELS, VMON, accel_unavailable, guest_args, kernel_path, run_vmon, serial_text

# A guest must never start for these, so a short timeout is plenty.
ERR_TIMEOUT = 30


def assert_cli_error(args, *needles):
    status, out, err = run_vmon(args, timeout=ERR_TIMEOUT)
    assert status == 1, f"status {status}, stderr: {err!r}"
    assert out == "", "a guest ran (stdout not empty)"
    lines = err.splitlines()
    assert len(lines) == 1, f"want one stderr line, got: {err!r}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


@pytest.fixture
def hello(kernels):
    return kernel_path(kernels["hello"].image)


def test_unknown_flag(vmon, hello):
    assert_cli_error(["-kernel", hello, "-bogus-flag"], "-bogus-flag")


def test_positional_argument(vmon, hello):
    assert_cli_error(["-kernel", hello, "stray"], "stray")


def test_missing_option_argument(vmon, hello):
    assert_cli_error(["-kernel", hello, "-m"], "-m")


@pytest.mark.parametrize("size", ["abc", "0", "1K", "4097K", "2T", "-5", "12Q"])
def test_bad_ram_size(vmon, hello, size):
    assert_cli_error(["-kernel", hello, "-m", size], "-m", size)


@pytest.mark.parametrize("smp", ["0", "abc", "65", "2,bogus=1", "-1"])
def test_bad_smp(vmon, hello, smp):
    assert_cli_error(["-kernel", hello, "-smp", smp], "-smp")


@pytest.mark.parametrize("uuid", ["1234", "12345678-9abc-def0-1122-33445566778g",
                                  "123456789abcdef011223344556677880",
                                  "12345678-9abc-def0-1122-3344556677889",
                                  "12345678+9abc-def0-1122-334455667788"])
def test_bad_uuid(vmon, hello, uuid):
    assert_cli_error(["-kernel", hello, "-uuid", uuid], "-uuid")


def test_bogus_accel(vmon, hello):
    assert_cli_error(["-kernel", hello, "-accel", "bogus"], "-accel", "bogus")


def test_no_kernel(vmon):
    assert_cli_error(["-nographic"], "-kernel")


def test_missing_kernel_file(vmon, tmp_path):
    missing = str(tmp_path / "no-such-kernel")
    assert_cli_error(["-kernel", missing], missing)


def test_not_a_kernel(vmon, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not a kernel image\n" * 100)
    assert_cli_error(["-nographic", "-kernel", str(junk)], str(junk))


def test_empty_kernel(vmon, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert_cli_error(["-nographic", "-kernel", str(empty)], str(empty))


def test_bad_serial_backend(vmon, hello):
    assert_cli_error(["-kernel", hello, "-serial", "bogus:x"], "-serial")


def test_help(vmon):
    for flag in ["--help", "-h", "-help"]:
        status, out, err = run_vmon([flag], timeout=ERR_TIMEOUT)
        assert status == 0, flag
        assert out.startswith("usage: vmon"), flag
        for opt in ["-kernel", "-append", "-m", "-smp", "-accel", "-serial", "-no-reboot"]:
            assert opt in out, f"{opt} missing from {flag}"
        assert err == ""


def test_version(vmon):
    status, out, err = run_vmon(["--version"], timeout=ERR_TIMEOUT)
    assert status == 0
    assert out.startswith("vmon ") or out.lower().startswith("vmon version"), out
    assert err == ""


def test_serial_file(accel, kernels, tmp_path):
    k = kernels["hello"]
    log = tmp_path / "serial.log"
    args = [a for a in guest_args(k, accel) if a != "-nographic"]
    status, out, err = run_vmon(args + ["-display", "none", "-serial", f"file:{log}"])
    assert status == 1, f"stderr: {err}"
    assert out == ""
    assert serial_text(log.read_text()) == k.expected()


@pytest.mark.parametrize("fmt", ["probe-raw", "raw", "probe-qcow2"])
def test_drive_format_probe_warning(kernels, tmp_path, fmt):
    """A -drive without format= probes, and when probing guesses raw prints
    QEMU's three-line warning (block 0 writes get restricted); an explicit
    format= or a probed qcow2 image is silent."""
    if fmt == "probe-qcow2":
        img = tmp_path / "d.qcow2"
        subprocess.run([os.environ["VMON_IMG"], "create", "-q", "-f", "qcow2", str(img), "1M"],
                       check=True)
    else:
        img = tmp_path / "d.raw"
        img.write_bytes(bytes(1 << 20))
    drive = f"file={img}" + (",format=raw" if fmt == "raw" else "")
    status, out, err = run_vmon(guest_args(kernels["hello"], "emu", ["-drive", drive]))
    assert status == 1, f"stderr: {err}"
    warned = f"WARNING: Image format was not specified for '{img}' and probing guessed raw." in err
    assert warned == (fmt == "probe-raw"), err


def test_serial_none(accel, kernels):
    k = kernels["hello"]
    status, out, err = run_vmon(guest_args(k, accel, ["-serial", "none"]))
    assert status == 1, f"stderr: {err}"
    assert out == ""


def test_exit_status_poweroff(accel, kernels):
    status, _, err = run_vmon(guest_args(kernels["poweroff"], accel))
    assert status == 0, f"stderr: {err}"


@pytest.mark.parametrize("value", [0, 1, 5, 127])
def test_exit_status_debug_exit(accel, kernels, value):
    """isa-debug-exit: the guest writes v, vmon exits with (v << 1) | 1."""
    k = kernels["hello"]
    status, out, err = run_vmon(guest_args(k, accel, ["-append", f"exit={value}"]))
    assert f"exit: {value}" in serial_text(out)
    assert status == (value << 1) | 1, f"stderr: {err}"


@pytest.mark.parametrize("serial", ["stdio", "mon:stdio"])
def test_serial_stdio(accel, kernels, serial):
    k = kernels["hello"]
    args = [a for a in guest_args(k, accel) if a != "-nographic"]
    status, out, err = run_vmon(args + ["-display", "none", "-serial", serial])
    assert status == 1, f"stderr: {err}"
    assert serial_text(out) == k.expected()


def test_no_reboot_exits_on_reset(accel, kernels):
    """Without isa-debug-exit the kernel ends with a triple fault; -no-reboot
    turns that reset into an exit."""
    k = kernels["hello"]
    args = ["-accel", accel, "-m", "128", "-nographic", "-no-reboot",
            "-kernel", kernel_path(k.image)]
    status, out, err = run_vmon(args)
    assert "PASS" in serial_text(out)
    assert status == 0, f"stderr: {err}"


def test_reset_reboots_without_no_reboot(accel, kernels):
    """Without -no-reboot a triple fault resets the machine and the kernel
    boots again."""
    k = kernels["hello"]
    args = [VMON, "-accel", accel, "-m", "128", "-nographic",
            "-kernel", kernel_path(k.image)]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    os.set_blocking(p.stdout.fileno(), False)
    buf = b""
    deadline = time.monotonic() + 240
    try:
        while buf.count(b"Hello from vmon test kernel") < 2 and time.monotonic() < deadline:
            if p.poll() is not None:
                buf += p.stdout.read() or b""
                break
            time.sleep(0.1)
            buf += p.stdout.read() or b""
    finally:
        p.kill()
        p.wait()
    assert buf.count(b"Hello from vmon test kernel") >= 2, buf.decode(errors="replace")


def test_accel_auto_boots(vmon, kernels):
    """-accel auto picks whatever runs here and the guest behaves the same."""
    if all(accel_unavailable(a) for a in ACCELS):
        pytest.skip("no accelerator can run here")
    k = kernels["hello"]
    args = guest_args(k, "kvm")
    args[args.index("kvm")] = "auto"
    status, out, err = run_vmon(args)
    assert status == 1, f"stderr: {err}"
    assert serial_text(out) == k.expected()


def test_enable_kvm_is_accel_kvm(accel, kernels):
    if accel != "kvm":
        pytest.skip("-enable-kvm is -accel kvm")
    k = kernels["hello"]
    args = guest_args(k, accel)
    i = args.index("-accel")
    del args[i:i + 2]
    status, out, err = run_vmon(["-enable-kvm", *args])
    assert status == 1, f"stderr: {err}"
    assert serial_text(out) == k.expected()


def test_accel_help_lists_what_runs_here(vmon):
    status, out, err = run_vmon(["-accel", "help"], timeout=ERR_TIMEOUT)
    assert status == 0, err
    names = out.splitlines()[1:]
    assert "emu" in names and "tcg" in names
    assert ("kvm" in names) == (not accel_unavailable("kvm"))
