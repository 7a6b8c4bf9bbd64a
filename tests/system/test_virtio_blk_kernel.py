"""The virtio_blk test kernel (tests/guest/kernels/virtio_blk.c): real
sector reads and writes through virtio-blk-pci with MSI-X, under every
accelerator.  The host writes a pattern into the image; the guest checks
it, writes its own pattern into sectors 8-11, flushes and reads back; the
image must hold exactly that afterwards, and the serial output must be the
expected text, the same under kvm and emu.

Under kvm the queue's doorbell is a KVM_IOEVENTFD and the interrupt a
KVM_IRQFD on an MSI route (docs/virtio.md): with ioeventfd=off every kick
is an MMIO exit, with the default none is, which query-stats shows; the
msi_send trace shows each interrupt going out through its route."""
import os
import time

import pytest

from conftest import guest_kernels, kernel_path, run_vmon, serial_text
from test_qmp import VM, QMP  # noqa: F401

SECTORS = 64
WRITE_SECTOR, WRITE_COUNT = 8, 4
EXPECTED = os.path.join(os.path.dirname(guest_kernels.__file__), "expected", "virtio_blk.txt")
BASE = ["-m", "128", "-nographic", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]


def host_pattern():
    return bytes((s * 37 + i * 7 + 1) & 0xff for s in range(SECTORS) for i in range(512))


def guest_pattern(s):
    return bytes((s * 11 + i * 3 + 0x80) & 0xff for i in range(512))


def disk_args(img, ioeventfd=None):
    dev = "virtio-blk-pci,drive=d0" + (f",ioeventfd={ioeventfd}" if ioeventfd else "")
    return ["-drive", f"file={img},format=raw,if=none,id=d0", "-device", dev]


def test_sector_io(vmon, accel, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(host_pattern())
    trace = tmp_path / "trace.log"
    status, out, err = run_vmon(["-accel", accel, *BASE,
                                 "-kernel", kernel_path("virtio_blk.elf"), *disk_args(img),
                                 "-trace", f"enable=msi_send,file={trace}"])
    with open(EXPECTED) as f:
        assert serial_text(out) == f.read(), f"stderr: {err}"
    assert status == 1, err
    data = img.read_bytes()
    want = bytearray(host_pattern())
    for k in range(WRITE_COUNT):
        s = WRITE_SECTOR + k
        want[s * 512:(s + 1) * 512] = guest_pattern(s)
    assert data == bytes(want)
    # 12 requests, 12 interrupts: through irqfd routes under kvm only.
    sends = [line for line in trace.read_text().splitlines() if " msi_send " in line]
    assert len(sends) == 12, sends
    routed = [line for line in sends if "route=" in line]
    assert len(routed) == (12 if accel == "kvm" else 0), sends


def mmio_exits(vmon, tmp_path, img, ioeventfd, count):
    """query-stats mmio_exits after the kernel's run, with the VM kept up."""
    sub = tmp_path / f"io-{ioeventfd}"
    sub.mkdir()
    img.write_bytes(host_pattern())
    v = VM(vmon, sub, "kvm", kernel="virtio_blk.elf", append=f"count={count}",
           extra=["-no-shutdown", *disk_args(img, ioeventfd)], base=BASE)
    try:
        v.wait_serial("PASS", timeout=120)
        q = v.client()
        deadline = time.time() + 20
        while q.ret("query-status")["status"] == "running":
            assert time.time() < deadline, "guest did not stop after PASS"
            time.sleep(0.05)
        stats = q.ret("query-stats", {"target": "vm"})
        values = {s["name"]: s["value"] for s in stats[0]["stats"]}
        q.cmd("quit")
        v.wait()
    finally:
        v.kill()
    assert f"interrupts: {count + 4} for {count + 4} requests" in serial_text(v.out.decode())
    return values["mmio_exits"]


def test_kvm_kicks_do_not_exit(vmon, tmp_path):
    from conftest import accel_unavailable
    reason = accel_unavailable("kvm")
    if reason:
        pytest.skip(f"accel kvm: {reason}")
    img = tmp_path / "disk.img"
    n = 64
    off = mmio_exits(vmon, tmp_path, img, "off", n)
    on = mmio_exits(vmon, tmp_path, img, "on", n)
    print(f"mmio_exits for {n + 4} requests: ioeventfd=off {off}, on {on}")
    # Every request is one doorbell write: an exit each with ioeventfd=off,
    # none with it on (the rest, device setup, is the same in both runs).
    assert off - on == n + 4, (off, on)


def test_accel_switch_keeps_doorbells_and_routes(vmon, tmp_path):
    """kvm -> emu -> kvm -> emu -> kvm while the kernel streams requests:
    the new VMs get the doorbells back (ioeventfd) and the routes are
    programmed again on their next use, so no kick or interrupt is lost
    (the kernel fails on a request without its used element or
    interrupt) and the image ends up right."""
    from conftest import accel_unavailable
    reason = accel_unavailable("kvm")
    if reason:
        pytest.skip(f"accel kvm: {reason}")
    img = tmp_path / "disk.img"
    img.write_bytes(host_pattern())
    n = 4000
    v = VM(vmon, tmp_path, "kvm", kernel="virtio_blk.elf", append=f"count={n}",
           extra=[*disk_args(img), "-d", "accel"], base=BASE)
    mid_run = []
    try:
        v.wait_serial("MSI-X vector 1", timeout=60)
        q = v.client()
        for to in ("emu", "kvm", "emu", "kvm"):
            r = q.cmd("x-accel-switch", {"accel": to})
            assert "return" in r, r
            # Still reading after the switch returned: it happened mid-run.
            if b"reads:" not in v.out:
                mid_run.append(to)
            time.sleep(0.05)
        v.wait_serial("PASS", timeout=240)
        assert v.wait(timeout=60) == 1
    finally:
        v.kill()
    assert mid_run[:2] == ["emu", "kvm"], f"switched mid-run only to {mid_run}: raise n"
    # Each VM built by a switch to kvm registered the doorbell again.
    err = v.err.decode()
    assert err.count("kvm: 1 of 1 doorbell(s) on ioeventfds") == 2, err
    out = serial_text(v.out.decode())
    assert f"interrupts: {n + 4} for {n + 4} requests" in out, out
    data = img.read_bytes()
    for k in range(WRITE_COUNT):
        s = WRITE_SECTOR + k
        assert data[s * 512:(s + 1) * 512] == guest_pattern(s)


def test_stop_cont_loses_no_interrupt(vmon, tmp_path):
    """QMP stop/cont over and over while the kernel streams requests under
    kvm: an irqfd interrupt that lands while the vCPU is parked must still
    be there when it runs again (set_state after a plain pause keeps the
    live LAPIC); the kernel fails a request whose interrupt never comes."""
    from conftest import accel_unavailable
    reason = accel_unavailable("kvm")
    if reason:
        pytest.skip(f"accel kvm: {reason}")
    img = tmp_path / "disk.img"
    img.write_bytes(host_pattern())
    n = 3000
    v = VM(vmon, tmp_path, "kvm", kernel="virtio_blk.elf", append=f"count={n}",
           extra=disk_args(img), base=BASE)
    cycles = 0
    try:
        v.wait_serial("MSI-X vector 1", timeout=60)
        q = v.client()
        while b"reads:" not in v.out and b"FAIL" not in v.out and cycles < 300:
            assert "return" in q.cmd("stop")
            assert "return" in q.cmd("cont")
            cycles += 1
        v.wait_serial("PASS", timeout=240)
        assert v.wait(timeout=60) == 1
    finally:
        v.kill()
    assert cycles >= 20, f"only {cycles} stop/cont cycles before the reads ended: raise n"
    assert f"interrupts: {n + 4} for {n + 4} requests" in serial_text(v.out.decode())
