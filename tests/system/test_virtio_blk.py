"""virtio-blk-pci and virtio-rng-pci with the Debian guest kit under -accel
emu, in one boot: the guest's own virtio_pci/virtio_blk/virtio-rng drivers
bind; /dev/vda has the image's size and the host's pattern reads back with
the same sha256; the serial (GET_ID) arrives; a guest write persists in the
image after power-off; a readonly=on drive refuses writes; /dev/hwrng yields
bytes.  Runs once per -drive aio= backend (io_uring, threads); the
blk_aio_io trace shows which backend moved the pattern disk's reads and
writes.  The checks run from /tests/blk.sh, appended to the kit's initrd as a
second cpio archive and started by the kit's vmon.test= hook.

Environment: VMON, GUEST_KIT (default build/guest: vmlinuz, initrd.cpio.gz,
built by scripts/guest-kit.sh)."""
import hashlib
import os
import subprocess

import pytest

from conftest import ROOT, accel_unavailable, run_vmon, serial_text

KIT = os.environ.get("GUEST_KIT", os.path.join(ROOT, "build", "guest"))
DISK_SIZE = 4 * 1024 * 1024
WRITE_OFFSET = 1024 * 1024

GUEST_SCRIPT = r"""
echo "T size vda=$(cat /sys/block/vda/size) vdb=$(cat /sys/block/vdb/size)"
echo "T serial=$(cat /sys/block/vda/serial)"
echo "T sha=$(dd if=/dev/vda bs=65536 2>/dev/null | sha256sum | cut -d' ' -f1)"
echo "T ro=$(cat /sys/block/vdb/ro)"
if dd if=/dev/zero of=/dev/vdb bs=512 count=1 2>/dev/null; then echo "T rowrite=ok"; else echo "T rowrite=refused"; fi
printf VMON-GUEST-WROTE-THIS | dd of=/dev/vda bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null
echo "T wrote=$?"
echo "T rng=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c)"
echo "T rngdev=$(cat /sys/class/misc/hw_random/rng_current)"
echo T-END
"""


def make_initrd(tmp_path, name, script):
    """The kit's initrd plus a cpio with /tests/NAME.sh."""
    root = tmp_path / "extra"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / f"{name}.sh").write_text(script)
    extra = subprocess.run("find . | cpio -o -H newc --quiet", shell=True, cwd=root,
                           check=True, capture_output=True).stdout
    out = tmp_path / "initrd"
    with open(os.path.join(KIT, "initrd.cpio.gz"), "rb") as f:
        kit = f.read()
    # Linux looks for the next archive of an initramfs at a 4-byte boundary.
    out.write_bytes(kit + b"\0" * (-len(kit) % 4) + extra)
    return str(out)


def results(out):
    res = {}
    for line in serial_text(out).splitlines():
        if line.startswith("T "):
            for kv in line[2:].split():
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    res[k] = v
    return res


@pytest.fixture
def kit():
    reason = accel_unavailable("emu")
    if reason:
        pytest.skip(f"accel emu: {reason}")
    for f in ("vmlinuz", "initrd.cpio.gz"):
        if not os.path.exists(os.path.join(KIT, f)):
            pytest.fail(f"guest kit missing ({KIT}/{f}): run scripts/guest-kit.sh {KIT}")
    return KIT


def aio_backends(trace_path):
    """{(backend, op)} of the blk_aio_io trace lines."""
    seen = set()
    with open(trace_path) as f:
        for line in f:
            if " blk_aio_io " not in line:
                continue
            kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
            seen.add((kv["backend"], kv["op"]))
    return seen


@pytest.mark.parametrize("aio", ["io_uring", "threads"])
def test_virtio_blk_and_rng(tmp_path, kit, aio):
    pattern = bytes((i * 7 + (i >> 12)) & 0xff for i in range(DISK_SIZE))
    disk = tmp_path / "disk.img"
    disk.write_bytes(pattern)
    ro = tmp_path / "ro.img"
    ro.write_bytes(b"\x5a" * (1024 * 1024))
    initrd = make_initrd(tmp_path, "blk", GUEST_SCRIPT)
    trace = tmp_path / "trace.log"
    status, out, err = run_vmon(
        ["-accel", "emu", "-m", "256", "-nographic", "-no-reboot",
         "-kernel", os.path.join(kit, "vmlinuz"), "-initrd", initrd,
         "-append", "console=ttyS0 quiet vmon.test=blk",
         "-drive", f"file={disk},format=raw,if=none,id=d0,cache=writeback,aio={aio}",
         "-device", "virtio-blk-pci,drive=d0,serial=VMON-SERIAL-1",
         "-drive", f"file={ro},format=raw,readonly=on",
         "-device", "virtio-rng-pci",
         "-trace", f"enable=blk_aio_io,file={trace}"], timeout=900)
    assert "T-END" in out, f"guest did not finish: status {status}\n{out[-3000:]}\n{err}"
    r = results(out)
    print(serial_text(out)[-2000:])
    assert (r["vda"], r["vdb"]) == ("8192", "2048"), out
    assert r["serial"] == "VMON-SERIAL-1"
    assert r["sha"] == hashlib.sha256(pattern).hexdigest()
    assert r["ro"] == "1"
    assert r["rowrite"] == "refused"
    assert r["wrote"] == "0"
    assert r["rng"] == "64"
    assert r["rngdev"].startswith("virtio_rng")
    data = disk.read_bytes()
    msg = b"VMON-GUEST-WROTE-THIS"
    assert data[WRITE_OFFSET:WRITE_OFFSET + len(msg)] == msg
    # The rest of that sector: dd wrote a short block, so only the message
    # changed; everything else is the host's pattern.
    assert data[:WRITE_OFFSET] == pattern[:WRITE_OFFSET]
    assert data[WRITE_OFFSET + 512:] == pattern[WRITE_OFFSET + 512:]
    assert ro.read_bytes() == b"\x5a" * (1024 * 1024)
    assert status == 0, err
    # Both drives are raw: the pattern disk uses the backend asked for;
    # the read-only one (no aio=, so the default io_uring) only reads.
    seen = aio_backends(trace)
    for op in ("read", "write", "flush"):
        assert (aio, op) in seen, seen
    assert ("io_uring", "read") in seen, seen
    if aio == "io_uring":
        assert not any(b == "threads" for b, _ in seen), seen
    else:
        assert ("io_uring", "write") not in seen and ("io_uring", "flush") not in seen, seen
