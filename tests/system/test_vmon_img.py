"""vmon-img and the qcow2 driver, checked against qemu-img / qemu-io.

qemu-img is the oracle: images it writes must read back byte-identical
through vmon, and images vmon writes must pass `qemu-img check` and
`qemu-img compare` against the content we expect."""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VMON_IMG = os.environ.get("VMON_IMG") or os.path.join(ROOT, "build", "vmon-img")
# Hostile-image cases prefer the sanitizer build when there is one.
VMON_IMG_ASAN = os.environ.get("VMON_IMG_ASAN") or VMON_IMG

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None or shutil.which("qemu-io") is None,
                                reason="qemu-utils (the oracle) is not installed")

MiB = 1024 * 1024


def run(*args, check=True, binary=None):
    cmd = [binary or VMON_IMG] + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def qemu(tool, *args, check=True):
    p = subprocess.run([tool] + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"{tool} {args} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def qemu_raw(tmp_path, img):
    out = tmp_path / "qemu.raw"
    qemu("qemu-img", "convert", "-O", "raw", img, out)
    return out.read_bytes()


def vmon_raw(tmp_path, img, fmt=None):
    out = tmp_path / "vmon.raw"
    args = ["convert", "-O", "raw"] + (["-f", fmt] if fmt else []) + [img, out]
    run(*args)
    return out.read_bytes()


def qemu_check_ok(img, allow_leaks=False):
    p = qemu("qemu-img", "check", img, check=False)
    ok = (0, 3) if allow_leaks else (0,)
    assert p.returncode in ok, f"qemu-img check {img} -> {p.returncode}\n{p.stdout}{p.stderr}"


def qemu_io(img, *cmds, fmt="qcow2"):
    args = ["-f", fmt]
    for c in cmds:
        args += ["-c", c]
    qemu("qemu-io", *args, img)


# ---- the crash-test writer's pattern, replayed in Python ----

def xorshift(s):
    s ^= (s << 13) & 0xFFFFFFFFFFFFFFFF
    s ^= s >> 7
    s ^= (s << 17) & 0xFFFFFFFFFFFFFFFF
    return s


def pattern_writes(seed, count, size):
    st = seed or 1
    for i in range(1, count + 1):
        st = xorshift(st)
        length = 1 + st % (256 * 1024)
        st = xorshift(st)
        off = st % (size - length)
        yield i, off, length, (i % 251) + 1


def replay(base, seed, count, size):
    buf = bytearray(base)
    for _, off, length, val in pattern_writes(seed, count, size):
        buf[off:off + length] = bytes([val]) * length
    return buf


# ---- reading images qemu wrote ----

QEMU_WRITES = [
    "write -P 0x11 0 4096",
    "write -P 0x22 1000 3000",          # unaligned, partial clusters
    "write -P 0x33 1048575 70000",      # crosses a 1 MiB boundary
    "write -P 0x44 3145728 2097152",    # a 2 MiB run
    "write -P 0x55 7340032 512",
]


@pytest.mark.parametrize("compat", ["0.10", "1.1"])
@pytest.mark.parametrize("cluster", ["512", "1k", "4k", "64k", "2M"])
def test_reads_qemu_images_byte_identical(tmp_path, cluster, compat):
    img = tmp_path / "q.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-o", f"cluster_size={cluster},compat={compat}", img, "8M")
    cmds = list(QEMU_WRITES)
    if compat == "1.1":
        cmds += ["write -z 3145728 65536", "write -z 0 512"]  # zero clusters / zeroed ranges
    qemu_io(img, *cmds)
    assert vmon_raw(tmp_path, img) == qemu_raw(tmp_path, img)


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16, 32, 64])
def test_refcount_widths_read_and_write(tmp_path, bits):
    img = tmp_path / "r.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-o", f"refcount_bits={bits},cluster_size=4k", img, "16M")
    qemu_io(img, "write -P 0x5a 0 100k")
    assert vmon_raw(tmp_path, img) == qemu_raw(tmp_path, img)
    run("write-pattern", img, 3, 40, 10, tmp_path / "log")
    qemu_check_ok(img)
    base = bytearray(16 * MiB)
    base[0:100 * 1024] = b"\x5a" * (100 * 1024)
    assert qemu_raw(tmp_path, img) == replay(base, 3, 40, 16 * MiB)


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_reads_compressed_clusters(tmp_path, ctype):
    raw = tmp_path / "src.raw"
    rnd = random.Random(5)
    data = bytearray(4 * MiB)
    for i in range(0, len(data), 65536):
        data[i:i + 65536] = bytes([rnd.randrange(4)]) * 30000 + bytes(rnd.randrange(256) for _ in range(64)) * 555 + bytes(65536 - 30000 - 64 * 555)
    raw.write_bytes(bytes(data))
    img = tmp_path / "c.qcow2"
    qemu("qemu-img", "convert", "-c", "-O", "qcow2", "-o", f"compression_type={ctype}", raw, img)
    info = json.loads(run("info", "--output=json", img).stdout)
    assert info["format-specific"]["data"]["compression-type"] == ctype
    assert vmon_raw(tmp_path, img) == bytes(data)
    # Overwriting part of a compressed cluster copies it out first.
    run("write-pattern", img, 11, 20, 5, tmp_path / "log")
    qemu_check_ok(img)
    assert qemu_raw(tmp_path, img) == replay(data, 11, 20, 4 * MiB)


def test_backing_chain_three_levels(tmp_path):
    base = tmp_path / "base.raw"
    qemu("qemu-img", "create", "-f", "raw", base, "8M")
    qemu_io(base, "write -P 0xa1 0 8M", fmt="raw")
    mid = tmp_path / "mid.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", mid)
    qemu_io(mid, "write -P 0xb2 65536 131072", "write -z 1048576 65536")
    top = tmp_path / "top.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "mid.qcow2", "-F", "qcow2", top, "12M")
    qemu_io(top, "write -P 0xc3 100000 5000", "write -P 0xc4 9437184 4096")
    assert vmon_raw(tmp_path, top) == qemu_raw(tmp_path, top)
    info = json.loads(run("info", "--output=json", top).stdout)
    assert info["backing-filename"] == "mid.qcow2"
    assert info["backing-filename-format"] == "qcow2"
    # Copy-on-write from the backing chain for vmon's partial writes.
    expected = bytearray(qemu_raw(tmp_path, top))
    run("write-pattern", top, 21, 60, 10, tmp_path / "log")
    qemu_check_ok(top)
    assert qemu_raw(tmp_path, top) == replay(expected, 21, 60, 12 * MiB)


# ---- images vmon writes ----

@pytest.mark.parametrize("opts", ["cluster_size=512", "cluster_size=64k", "cluster_size=2M",
                                  "compat=0.10", "lazy_refcounts=on", "refcount_bits=1,cluster_size=4k",
                                  "refcount_bits=64,cluster_size=512"])
def test_vmon_written_images_pass_qemu_check(tmp_path, opts):
    img = tmp_path / "v.qcow2"
    size = 32 * MiB
    run("create", "-q", "-f", "qcow2", "-o", opts, img, size)
    qemu_check_ok(img)
    run("write-pattern", img, 99, 150, 25, tmp_path / "log")
    qemu_check_ok(img)
    expected = tmp_path / "expected.raw"
    expected.write_bytes(replay(bytes(size), 99, 150, size))
    assert qemu("qemu-img", "compare", expected, img, check=False).returncode == 0
    assert run("check", img).returncode == 0


def test_writes_keep_internal_snapshots_intact(tmp_path):
    img = tmp_path / "s.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4k", img, "8M")
    qemu_io(img, "write -P 0x31 0 2M", "write -c -P 0x32 4M 64k")
    qemu("qemu-img", "snapshot", "-c", "before", img)
    snap = tmp_path / "snap.raw"
    qemu("qemu-img", "convert", "-l", "snapshot.name=before", "-O", "raw", img, snap)
    before = snap.read_bytes()
    run("write-pattern", img, 17, 40, 8, tmp_path / "log")
    qemu_check_ok(img)
    assert qemu_raw(tmp_path, img) == replay(before, 17, 40, 8 * MiB)
    qemu("qemu-img", "convert", "-l", "snapshot.name=before", "-O", "raw", img, snap)
    assert snap.read_bytes() == before
    assert "before" in run("info", img).stdout


def snap_raw(tmp_path, img, name, tool="qemu"):
    out = tmp_path / f"snap-{tool}.raw"
    if tool == "qemu":
        qemu("qemu-img", "convert", "-l", f"snapshot.name={name}", "-O", "raw", img, out)
    else:
        run("convert", "-l", f"snapshot.name={name}", "-O", "raw", img, out)
    return out.read_bytes()


def snapshot_lists_agree(img):
    ours = run("snapshot", "-l", img).stdout
    assert ours == qemu("qemu-img", "snapshot", "-l", img).stdout
    return ours


def qemu_check_clean(img):
    """Not even leaks: snapshot operations must leave exact refcounts."""
    p = qemu("qemu-img", "check", "--output=json", img, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    j = json.loads(p.stdout)
    assert j.get("leaks", 0) == 0 and j.get("corruptions", 0) == 0, j


@pytest.mark.parametrize("opts", ["cluster_size=4k,compat=1.1", "cluster_size=64k,compat=0.10",
                                  "cluster_size=512,refcount_bits=16"])
def test_internal_snapshots_interoperate_with_qemu(tmp_path, opts):
    img = tmp_path / "s.qcow2"
    size = 8 * MiB
    qemu("qemu-img", "create", "-f", "qcow2", "-o", opts, img, size)
    qemu_io(img, "write -P 0x31 0 2M", "write -c -P 0x32 4M 64k", "write -z 6M 64k")
    a = qemu_raw(tmp_path, img)

    # vmon creates s1; vmon then writes (copy-on-write of shared clusters).
    assert run("snapshot", "-c", "s1", img).stdout == ""
    qemu_check_clean(img)
    assert "s1" in snapshot_lists_agree(img)
    run("write-pattern", img, 23, 30, 7, tmp_path / "log")
    qemu_check_clean(img)
    b = qemu_raw(tmp_path, img)
    assert b == replay(a, 23, 30, size)
    assert snap_raw(tmp_path, img, "s1") == a
    assert snap_raw(tmp_path, img, "s1", "vmon") == a

    # qemu creates s2 on top; both list the same two.
    qemu("qemu-img", "snapshot", "-c", "s2", img)
    lines = snapshot_lists_agree(img).splitlines()
    assert [l.split()[:2] for l in lines[2:]] == [["1", "s1"], ["2", "s2"]]

    # vmon applies s1 (by name) and then s2 (by ID), qemu checks each.
    run("snapshot", "-a", "s1", img)
    qemu_check_clean(img)
    assert qemu_raw(tmp_path, img) == a
    qemu_io(img, "write -P 0x77 100k 300k")   # qemu writes over the applied state
    qemu_check_clean(img)
    run("snapshot", "-a", "2", img)
    qemu_check_clean(img)
    assert qemu_raw(tmp_path, img) == b

    # vmon deletes s1; qemu still reads s2 and applies it; qemu deletes s2.
    run("snapshot", "-d", "s1", img)
    qemu_check_clean(img)
    assert [l.split()[1] for l in snapshot_lists_agree(img).splitlines()[2:]] == ["s2"]
    run("write-pattern", img, 29, 20, 5, tmp_path / "log2")
    qemu("qemu-img", "snapshot", "-a", "s2", img)
    assert qemu_raw(tmp_path, img) == b
    qemu("qemu-img", "snapshot", "-d", "s2", img)
    assert run("check", img).returncode == 0
    assert snapshot_lists_agree(img) == ""
    # With no snapshot left, everything is writable in place again.
    run("write-pattern", img, 31, 20, 5, tmp_path / "log3")
    qemu_check_clean(img)


def test_snapshot_refcount_overflow_leaves_image_intact(tmp_path):
    """With 1-bit refcounts no cluster can be shared: creating a snapshot
    must fail (qemu-img fails too) and undo its partial increments, so the
    image stays clean and unchanged."""
    img = tmp_path / "o.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4k,refcount_bits=1", img, "4M")
    qemu_io(img, "write -P 0x41 0 256k", "write -P 0x42 1M 64k")
    before = qemu_raw(tmp_path, img)
    p = run("snapshot", "-c", "s", img, check=False)
    assert p.returncode == 1 and "Could not create snapshot 's'" in p.stderr
    qemu_check_clean(img)
    assert qemu_raw(tmp_path, img) == before
    assert snapshot_lists_agree(img) == ""
    run("write-pattern", img, 3, 10, 3, tmp_path / "log")
    qemu_check_clean(img)


def test_snapshot_command_errors_match_qemu(tmp_path):
    img = tmp_path / "e.qcow2"
    raw = tmp_path / "e.raw"
    run("create", "-q", "-f", "qcow2", img, "1M")
    run("create", "-q", "-f", "raw", raw, "1M")
    run("snapshot", "-c", "x", img)
    run("snapshot", "-c", "x", img)          # names need not be unique, IDs are
    assert [l.split()[0] for l in snapshot_lists_agree(img).splitlines()[2:]] == ["1", "2"]
    cases = [
        (["-a", "nope"], "Could not apply snapshot 'nope': Failed to load snapshot: No such file or directory"),
        (["-d", "nope"], "Could not delete snapshot 'nope': snapshot not found"),
        (["-d", "2"], "Could not delete snapshot '2': snapshot not found"),   # -d is by name only
        (["-l", "-c", "y"], "Cannot mix '-l', '-a', '-c', '-d'"),
    ]
    for args, msg in cases:
        p = run("snapshot", *args, img, check=False)
        q = qemu("qemu-img", "snapshot", *args, img, check=False)
        assert (p.returncode, q.returncode) == (1, 1), (args, p.stderr, q.stderr)
        assert msg in p.stderr and msg in q.stderr.splitlines()[0], (p.stderr, q.stderr)
    p = run("snapshot", "-f", "raw", "-c", "x", raw, check=False)
    assert p.returncode == 1 and "Could not create snapshot 'x': -95 (Operation not supported)" in p.stderr
    p = run("snapshot", "-f", "raw", "-l", raw)
    assert p.stdout == ""
    run("snapshot", "-d", "x", img)
    assert [l.split()[0] for l in snapshot_lists_agree(img).splitlines()[2:]] == ["2"]
    p = run("convert", "-l", "snapshot.name=nope", "-O", "raw", img, tmp_path / "o", check=False)
    assert p.returncode == 1 and "Failed to load snapshot" in p.stderr
    qemu_check_clean(img)


def test_resize_grows_l1(tmp_path):
    img = tmp_path / "g.qcow2"
    run("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", img, "1M")
    qemu_io(img, "write -P 0x7e 1000 20000")
    before = qemu_raw(tmp_path, img)
    assert "Image resized." in run("resize", img, "+63M").stdout
    qemu_check_ok(img)
    info = json.loads(qemu("qemu-img", "info", "--output=json", img).stdout)
    assert info["virtual-size"] == 64 * MiB
    after = qemu_raw(tmp_path, img)
    assert after[:len(before)] == before and after[len(before):] == bytes(63 * MiB)
    qemu_io(img, "write -P 0x7f 60M 4096")
    assert vmon_raw(tmp_path, img) == qemu_raw(tmp_path, img)
    p = run("resize", img, "-1M", check=False)
    assert p.returncode == 1 and "Use the --shrink option" in p.stderr


@pytest.mark.parametrize("with_snapshot", [False, True])
@pytest.mark.parametrize("new_size", [10 * MiB, 10 * MiB + 1536])
def test_resize_shrink_qcow2_like_qemu(tmp_path, new_size, with_snapshot):
    """--shrink drops everything past the new end, as qemu-img does: the
    same guest content as qemu-img's shrink, a clean image, a shorter file,
    and a snapshot taken before still intact."""
    base = tmp_path / "base.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4k", base, "64M")
    qemu_io(base, "write -P 0x61 0 12M", "write -P 0x62 9M 2M", "write -c -P 0x63 40M 64k",
            "write -z 50M 1M", "write -P 0x64 63M 1M")
    if with_snapshot:
        run("snapshot", "-c", "keep", base)
        snap_before = snap_raw(tmp_path, base, "keep")
    ours, theirs = tmp_path / "ours.qcow2", tmp_path / "theirs.qcow2"
    shutil.copyfile(base, ours)
    shutil.copyfile(base, theirs)
    p = run("resize", ours, str(new_size), check=False)
    assert p.returncode == 1 and "Use the --shrink option" in p.stderr
    assert run("resize", "--shrink", ours, str(new_size)).stdout == "Image resized.\n"
    qemu("qemu-img", "resize", "--shrink", theirs, new_size)
    qemu_check_clean(ours)
    assert json.loads(qemu("qemu-img", "info", "--output=json", ours).stdout)["virtual-size"] == new_size
    assert qemu("qemu-img", "compare", ours, theirs, check=False).returncode == 0
    assert vmon_raw(tmp_path, ours) == qemu_raw(tmp_path, theirs)
    if with_snapshot:
        # qemu-img reads a snapshot at the image's current size; vmon at the
        # size the snapshot recorded.
        assert snap_raw(tmp_path, ours, "keep") == snap_before[:new_size]
        assert snap_raw(tmp_path, ours, "keep", "vmon") == snap_before
    else:
        assert os.path.getsize(ours) < 14 * MiB
    # Writable afterwards, and growing again reads zeros past the old end.
    run("write-pattern", ours, 41, 20, 4, tmp_path / "log")
    qemu_check_clean(ours)
    if new_size % 65536 == 0:
        run("resize", ours, "64M")
        assert qemu_raw(tmp_path, ours)[new_size:] == bytes(64 * MiB - new_size)
        qemu_check_clean(ours)
    assert run("resize", "--shrink", ours, "1000", check=False).returncode == 1


def test_resize_raw(tmp_path):
    img = tmp_path / "r.img"
    run("create", "-q", "-f", "raw", img, "1M")
    run("resize", "-f", "raw", img, "2M")
    assert os.path.getsize(img) == 2 * MiB
    p = run("resize", "-f", "raw", img, "1M", check=False)
    assert p.returncode == 1 and "--shrink" in p.stderr
    run("resize", "-f", "raw", "--shrink", img, "1M")
    assert os.path.getsize(img) == MiB


@pytest.mark.parametrize("direction", ["raw-to-qcow2", "qcow2-to-raw", "compressed"])
def test_convert(tmp_path, direction):
    raw = tmp_path / "in.raw"
    rnd = random.Random(1)
    data = bytearray(6 * MiB)
    for _ in range(40):
        off = rnd.randrange(len(data) - 70000)
        data[off:off + 70000] = bytes([rnd.randrange(1, 256)]) * 35000 + rnd.randbytes(35000)
    raw.write_bytes(bytes(data))
    if direction == "qcow2-to-raw":
        src = tmp_path / "in.qcow2"
        qemu("qemu-img", "convert", "-O", "qcow2", raw, src)
        out = tmp_path / "out.raw"
        run("convert", "-f", "qcow2", "-O", "raw", src, out)
    else:
        out = tmp_path / "out.qcow2"
        extra = ["-c"] if direction == "compressed" else []
        p = run("convert", "-p", "-f", "raw", "-O", "qcow2", *extra, raw, out)
        assert "(100.00/100%)" in p.stdout
        qemu_check_ok(out)
        if direction == "compressed":
            chk = json.loads(qemu("qemu-img", "check", "--output=json", out).stdout)
            assert chk.get("compressed-clusters", 0) > 0
    assert qemu("qemu-img", "compare", raw, out, check=False).returncode == 0


@pytest.mark.parametrize("cache", ["none", "directsync", "writethrough"])
def test_convert_cache_modes(tmp_path, cache):
    """-t none/directsync write through O_DIRECT (unaligned pieces via the
    bounce buffer): same content, clean image, as with the page cache."""
    raw = tmp_path / "in.raw"
    rnd = random.Random(2)
    data = bytearray(3 * MiB + 1536)   # not a multiple of 4 KiB
    for _ in range(20):
        off = rnd.randrange(len(data) - 9000)
        data[off:off + 9000] = rnd.randbytes(9000)
    raw.write_bytes(bytes(data))
    for fmt, opts in (("qcow2", "cluster_size=512"), ("qcow2", "cluster_size=64k"), ("raw", None)):
        out = tmp_path / f"out.{fmt}"
        args = ["convert", "-t", cache, "-f", "raw", "-O", fmt] + (["-o", opts] if opts else [])
        run(*args, raw, out)
        if fmt == "qcow2":
            qemu_check_ok(out)
        assert qemu("qemu-img", "compare", "-f", "raw", "-F", fmt, raw, out,
                    check=False).returncode == 0
    assert run("convert", "-t", "bogus", "-O", "raw", raw, tmp_path / "x", check=False).returncode == 1


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_cache_none_refused_where_o_direct_is(tmp_path):
    """ramfs refuses O_DIRECT: like qemu-img, cache=none fails with a clear
    reason instead of quietly using the page cache; writeback still works."""
    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    src = tmp_path / "s.raw"
    src.write_bytes(b"\x5a" * MiB)
    script = f"""set -e
mount -t ramfs none {mnt}
for tool in {VMON_IMG} qemu-img; do
  if $tool convert -t none -f raw -O raw {src} {mnt}/o.raw 2>{mnt}/err; then echo "$tool: accepted"; fi
  grep -q "filesystem does not support O_DIRECT" {mnt}/err && echo "$tool: refused"
done
{VMON_IMG} convert -t writeback -f raw -O qcow2 {src} {mnt}/o.qcow2 && echo "writeback ok"
"""
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                       timeout=120)
    if "mount" in p.stderr and p.returncode != 0 and "refused" not in p.stdout:
        pytest.skip(f"cannot mount ramfs here: {p.stderr.strip()}")
    assert p.stdout.split("\n")[:3] == [f"{VMON_IMG}: refused", "qemu-img: refused", "writeback ok"], \
        p.stdout + p.stderr


def test_create_backing_and_info_match_qemu(tmp_path):
    base = tmp_path / "base.qcow2"
    run("create", "-q", "-f", "qcow2", base, "64M")
    top = tmp_path / "top.qcow2"
    p = run("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)
    assert "backing_file=base.qcow2" in p.stdout
    qemu_io(top, "write -P 1 0 100k")
    for img in (base, top):
        mine = json.loads(run("info", "--output=json", img).stdout)
        theirs = json.loads(qemu("qemu-img", "info", "--output=json", img).stdout)
        assert mine == theirs
        mine_h = run("info", img).stdout.splitlines()
        theirs_h = qemu("qemu-img", "info", img).stdout.splitlines()
        assert mine_h == theirs_h


@pytest.mark.parametrize("compat", ["0.10", "1.1"])
def test_info_human_and_json_match_qemu(tmp_path, compat):
    img = tmp_path / "i.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-o", f"compat={compat}", img, "1G")
    qemu_io(img, "write 0 1M")
    qemu("qemu-img", "snapshot", "-c", "s1", img)
    assert json.loads(run("info", "--output=json", img).stdout) == \
        json.loads(qemu("qemu-img", "info", "--output=json", img).stdout)
    assert run("info", img).stdout == qemu("qemu-img", "info", img).stdout


def test_map_matches_qemu(tmp_path):
    base = tmp_path / "b.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", base, "4M")
    qemu_io(base, "write 0 64k", "write 1M 128k")
    top = tmp_path / "t.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", top, "8M")
    qemu_io(top, "write 64k 64k", "write -z 1M 64k", "write 3M 4k")
    for img in (base, top):
        assert run("map", "--output=json", img).stdout == qemu("qemu-img", "map", "--output=json", img).stdout
        assert run("map", img).stdout == qemu("qemu-img", "map", img).stdout


def test_check_exit_codes_and_repair(tmp_path):
    img = tmp_path / "k.qcow2"
    run("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", img, "4M")
    qemu_io(img, "write 0 64k")
    assert run("check", img).returncode == 0
    out = json.loads(run("check", "--output=json", img).stdout)
    theirs = json.loads(qemu("qemu-img", "check", "--output=json", img).stdout)
    assert out == theirs
    hdr = img.read_bytes()[:104]
    reftable = struct.unpack(">Q", hdr[48:56])[0]
    with open(img, "r+b") as f:
        f.seek(reftable)
        rb0 = struct.unpack(">Q", f.read(8))[0]
        # A leak: count a cluster past everything (the file's end).
        end_cluster = os.path.getsize(img) // 4096
        f.seek(0, 2)
        f.write(bytes(4096))
        f.seek(rb0 + end_cluster * 2)
        f.write(struct.pack(">H", 1))
    assert qemu("qemu-img", "check", img, check=False).returncode == 3
    p = run("check", img, check=False)
    assert p.returncode == 3 and "1 leaked clusters were found" in p.stdout
    assert run("check", "-r", "leaks", img).returncode == 0
    qemu_check_ok(img)
    # A corruption: the L1 table's cluster counted as free.
    l1 = struct.unpack(">Q", hdr[40:48])[0]
    with open(img, "r+b") as f:
        f.seek(rb0 + (l1 // 4096) * 2)
        f.write(struct.pack(">H", 0))
    assert qemu("qemu-img", "check", img, check=False).returncode == 2
    p = run("check", img, check=False)
    assert p.returncode == 2 and "errors were found" in p.stdout
    expected = qemu_raw(tmp_path, img)
    assert run("check", "-r", "all", img).returncode == 0
    qemu_check_ok(img)
    assert qemu_raw(tmp_path, img) == expected
    # raw has no check, like qemu-img
    r = tmp_path / "x.raw"
    run("create", "-q", "-f", "raw", r, "1M")
    assert run("check", "-f", "raw", r, check=False).returncode == 63


def test_second_writer_is_refused(tmp_path):
    img = tmp_path / "l.qcow2"
    run("create", "-q", "-f", "qcow2", img, "64M")
    w = subprocess.Popen([VMON_IMG, "write-pattern", str(img), "1", "100000000", "0", str(tmp_path / "log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        assert w.poll() is None
        p = run("write-pattern", img, 2, 1, 0, tmp_path / "log2", check=False)
        assert p.returncode == 1 and "lock" in p.stderr
        # qemu refuses too: the lock bytes are QEMU's.
        assert qemu("qemu-io", "-c", "write 0 512", img, check=False).returncode != 0
    finally:
        w.kill()
        w.wait()


def test_dirty_image_is_repaired_on_open(tmp_path):
    img = tmp_path / "d.qcow2"
    run("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4k", img, "32M")
    w = subprocess.Popen([VMON_IMG, "write-pattern", str(img), "5", "100000000", "0", str(tmp_path / "log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    w.send_signal(signal.SIGKILL)
    w.wait()
    assert json.loads(run("info", "--output=json", img).stdout)["dirty-flag"] is True
    assert "cleanly shut down: no" in run("info", img).stdout
    run("write-pattern", img, 6, 1, 1, tmp_path / "log2")   # rw open repairs, then clears the bit
    assert json.loads(run("info", "--output=json", img).stdout)["dirty-flag"] is False
    qemu_check_ok(img)


def make_dirty(tmp_path, img, seed):
    run("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4k", img, "32M")
    w = subprocess.Popen([VMON_IMG, "write-pattern", str(img), str(seed), "100000000", "0",
                          str(tmp_path / "log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    w.send_signal(signal.SIGKILL)
    w.wait()
    assert json.loads(run("info", "--output=json", img).stdout)["dirty-flag"] is True


@pytest.mark.parametrize("mode", ["leaks", "all"])
def test_check_repair_clears_dirty_bit(tmp_path, mode):
    """qemu-img check -r flushes and marks a repaired image clean; so must we."""
    img = tmp_path / "d.qcow2"
    make_dirty(tmp_path, img, 7)
    expected = qemu_raw(tmp_path, img)
    # Without -r nothing is written: the bit stays.
    run("check", img, check=False)
    assert json.loads(run("info", "--output=json", img).stdout)["dirty-flag"] is True
    assert run("check", "-r", mode, img).returncode == 0
    info = json.loads(qemu("qemu-img", "info", "--output=json", img).stdout)
    assert info["dirty-flag"] is False
    qemu_check_ok(img)
    assert qemu_raw(tmp_path, img) == expected


def test_check_repair_clears_corrupt_bit(tmp_path):
    img = qcow2_with(tmp_path, "c.qcow2", lambda f: put(f, 72, ">Q", 2))
    expected = qemu_raw(tmp_path, img)
    assert run("check", "-r", "all", img).returncode == 0
    info = json.loads(qemu("qemu-img", "info", "--output=json", img).stdout)
    assert info["format-specific"]["data"]["corrupt"] is False
    qemu_check_ok(img)
    assert qemu_raw(tmp_path, img) == expected


def test_crash_consistency_under_sigkill(tmp_path):
    """SIGKILL the writer at random moments: qemu-img check must never see
    corruption (leaks are fine), and every write before the last completed
    flush must be intact."""
    size = 16 * MiB
    flush_every = 4
    rnd = random.Random(int(os.environ.get("CRASH_SEED", "1234")))
    img = tmp_path / "crash.qcow2"
    run("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", img, size)
    content = bytearray(size)
    kills = int(os.environ.get("CRASH_KILLS", "30"))
    for k in range(kills):
        seed = 1000 + k
        log = tmp_path / f"log{k}"
        log.write_text("")
        w = subprocess.Popen([VMON_IMG, "write-pattern", str(img), str(seed), "1000000", str(flush_every), str(log)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rnd.uniform(0.02, 0.4))
        w.send_signal(signal.SIGKILL)
        w.wait()
        p = qemu("qemu-img", "check", img, check=False)
        assert p.returncode in (0, 3), f"kill {k}: qemu-img check -> {p.returncode}\n{p.stdout}{p.stderr}"
        lines = log.read_text().split()
        flushed = int(lines[-1]) if lines else 0
        # Writes up to `flushed` are durable; the next flush_every writes may
        # or may not have landed: leave the bytes they touch out of the check.
        touched = bytearray(size)
        writes = list(pattern_writes(seed, flushed + flush_every, size))
        for i, off, length, val in writes:
            if i <= flushed:
                content[off:off + length] = bytes([val]) * length
            else:
                touched[off:off + length] = b"\x01" * length
        actual = qemu_raw(tmp_path, img)
        mask_start = None
        for pos in range(0, size, 4096):
            if touched[pos:pos + 4096].count(1):
                continue
            if actual[pos:pos + 4096] != content[pos:pos + 4096]:
                mask_start = pos
                break
        assert mask_start is None, f"kill {k}: flushed data lost near byte {mask_start}"
        # Whatever landed after the flush point is the next round's truth.
        content = bytearray(actual)
    qemu_check_ok(img, allow_leaks=True)


@pytest.fixture
def shm_path(tmp_path):
    """tmpfs when there is one: the stop-at-write model needs no real
    durability, and fdatasync on disk would dominate the run time."""
    import tempfile
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    d = tempfile.mkdtemp(prefix="vmon-img-crash-", dir="/dev/shm")
    try:
        yield __import__("pathlib").Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("opts", ["cluster_size=4k", "cluster_size=512,refcount_bits=64"])
def test_crash_at_every_write_boundary(shm_path, opts):
    tmp_path = shm_path
    """Stop the writer before its Nth image write (N over every write, or an
    even sample of them): the places a SIGKILL can land.  Each stopped image
    must check clean (leaks allowed) and keep every write that a completed
    flush covered."""
    size = 4 * MiB
    base = tmp_path / "base.qcow2"
    run("create", "-q", "-f", "qcow2", "-o", opts, base, size)
    qemu_io(base, "write -P 0x99 0 1M")
    start = bytearray(qemu_raw(tmp_path, base))
    seed, count, flush_every = 8, 30, 3
    img = tmp_path / "c.qcow2"
    env = dict(os.environ)
    env["VMON_IMG_CRASH_AFTER_WRITES"] = str(1 << 62)
    shutil.copyfile(base, img)
    p = subprocess.run([VMON_IMG, "write-pattern", str(img), str(seed), str(count), str(flush_every),
                        str(tmp_path / "log")], env=env, capture_output=True, text=True, timeout=60)
    total = int(p.stderr.split("image writes:")[1])
    stride = max(1, total // int(os.environ.get("CRASH_POINTS", "25")))
    n, stopped = 1, 0
    while True:
        shutil.copyfile(base, img)
        log = tmp_path / "log"
        log.write_text("")
        env["VMON_IMG_CRASH_AFTER_WRITES"] = str(n)
        p = subprocess.run([VMON_IMG, "write-pattern", str(img), str(seed), str(count), str(flush_every), str(log)],
                           env=env, capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            break                       # N is past the last write: done
        assert p.returncode == 99, p.stderr
        stopped += 1
        chk = qemu("qemu-img", "check", img, check=False)
        assert chk.returncode in (0, 3), f"stopped before write {n}:\n{chk.stdout}{chk.stderr}"
        lines = log.read_text().split()
        flushed = int(lines[-1]) if lines else 0
        expected = replay(start, seed, flushed, size)
        untouched = bytearray(b"\x01") * size
        for i, off, length, _ in pattern_writes(seed, count, size):
            if i > flushed:
                untouched[off:off + length] = bytes(length)
        actual = qemu_raw(tmp_path, img)
        for pos in range(0, size, 4096):
            if untouched[pos:pos + 4096].count(0) == 0:
                assert actual[pos:pos + 4096] == expected[pos:pos + 4096], \
                    f"stopped before write {n}: flushed data lost at {pos}"
        n += stride
    assert stopped >= min(total, 20)


# ---- hostile images ----

def qcow2_with(tmp_path, name, patch, size="4M", opts="cluster_size=64k"):
    img = tmp_path / name
    qemu("qemu-img", "create", "-f", "qcow2", "-o", opts, img, size)
    qemu_io(img, "write -P 0x42 0 128k")
    with open(img, "r+b") as f:
        patch(f)
    return img


def put(f, off, fmt, val):
    f.seek(off)
    f.write(struct.pack(fmt, val))


def get(f, off, fmt):
    f.seek(off)
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


HOSTILE = {
    "huge-l1-size": (lambda f: put(f, 36, ">I", 0x10000000), "L1 table"),
    "l1-beyond-eof": (lambda f: put(f, 40, ">Q", 1 << 40), "beyond the end"),
    "reftable-beyond-eof": (lambda f: put(f, 48, ">Q", 1 << 40), "beyond the end"),
    "reftable-huge": (lambda f: put(f, 56, ">I", 0xFFFFFFFF), "Reference count table"),
    "l1-overlaps-reftable": (lambda f: put(f, 40, ">Q", get(f, 48, ">Q")), "overlap"),
    "cluster-bits-30": (lambda f: put(f, 20, ">I", 30), "cluster size"),
    "unknown-incompatible": (lambda f: put(f, 72, ">Q", 1 << 40), "Unsupported qcow2 feature"),
    "bad-version": (lambda f: put(f, 4, ">I", 7), "version"),
    "absurd-size": (lambda f: put(f, 24, ">Q", 1 << 62), "too large"),
    "header-length": (lambda f: put(f, 100, ">I", 0x7FFFFFF8), "header"),
    "extension-too-long": (lambda f: (put(f, 112, ">I", 0x12345678), put(f, 116, ">I", 0xFFFFFF00)), "extension"),
    "encrypted": (lambda f: put(f, 32, ">I", 1), "encrypted"),
    "refblock-beyond-eof": (lambda f: put(f, get(f, 48, ">Q"), ">Q", 1 << 45), "refcount block"),
    "too-many-snapshots": (lambda f: (put(f, 60, ">I", 0x7FFFFFFF), put(f, 64, ">Q", 0x10000)), "snapshot"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_header_refused(tmp_path, case):
    patch, words = HOSTILE[case]
    img = qcow2_with(tmp_path, "h.qcow2", patch)
    p = run("info", img, check=False, binary=VMON_IMG_ASAN)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stderr.startswith(f"vmon-img: {img}: ") and words.lower() in p.stderr.lower(), p.stderr
    assert "Sanitizer" not in p.stderr


def test_hostile_tables_do_not_crash(tmp_path):
    def l2_beyond_eof(f):
        l1 = get(f, 40, ">Q")
        l2 = get(f, l1, ">Q") & 0x00FFFFFFFFFFFE00
        put(f, l2, ">Q", (1 << 63) | (1 << 50))          # data cluster far past EOF
        put(f, l2 + 8, ">Q", (1 << 62) | 0x3FFFFFFFFFFF)  # compressed garbage

    def l1_bad_l2(f):
        l1 = get(f, 40, ">Q")
        put(f, l1, ">Q", (1 << 63) | 0x1234000)           # L2 past EOF

    for name, patch in (("l2", l2_beyond_eof), ("l1", l1_bad_l2)):
        img = qcow2_with(tmp_path, f"{name}.qcow2", patch)
        p = run("convert", "-O", "raw", img, tmp_path / "o.raw", check=False, binary=VMON_IMG_ASAN)
        assert p.returncode in (0, 1) and "Sanitizer" not in p.stderr, p.stderr
        p = run("check", img, check=False, binary=VMON_IMG_ASAN)
        assert p.returncode == 2 and "Sanitizer" not in p.stderr, p.stdout + p.stderr
        # writes must not grow the file without bound
        run("write-pattern", img, 1, 5, 1, tmp_path / "log", check=False, binary=VMON_IMG_ASAN)
        assert os.path.getsize(img) < 64 * MiB


def test_refcount_overflow_is_a_corruption(tmp_path):
    def dup(f):
        l1 = get(f, 40, ">Q")
        l2 = get(f, l1, ">Q") & 0x00FFFFFFFFFFFE00
        e0 = get(f, l2, ">Q")
        put(f, l2 + 16, ">Q", e0)   # two references, 1-bit refcounts
    img = qcow2_with(tmp_path, "o.qcow2", dup, opts="cluster_size=64k,refcount_bits=1")
    p = run("check", img, check=False, binary=VMON_IMG_ASAN)
    assert p.returncode == 2 and "overflow" in p.stderr
    assert qemu("qemu-img", "check", img, check=False).returncode == 2


def test_backing_loops_refused(tmp_path):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", b, "1M")
    qemu("qemu-img", "create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a, "1M")
    qemu("qemu-img", "rebase", "-u", "-b", "a.qcow2", "-F", "qcow2", b)
    p = run("convert", "-O", "raw", a, tmp_path / "x.raw", check=False, binary=VMON_IMG_ASAN)
    assert p.returncode == 1 and ("loop" in p.stderr or "deeper" in p.stderr), p.stderr
    qemu("qemu-img", "rebase", "-u", "-b", "a.qcow2", "-F", "qcow2", a)
    p = run("convert", "-O", "raw", a, tmp_path / "x.raw", check=False, binary=VMON_IMG_ASAN)
    assert p.returncode == 1 and "itself" in p.stderr, p.stderr


def test_corrupt_bit_read_only(tmp_path):
    img = qcow2_with(tmp_path, "c.qcow2", lambda f: put(f, 72, ">Q", 2))
    assert json.loads(run("info", "--output=json", img).stdout)["format-specific"]["data"]["corrupt"] is True
    assert vmon_raw(tmp_path, img)[:4] == b"\x42" * 4
    p = run("resize", img, "+1M", check=False)
    assert p.returncode == 1 and "corrupt" in p.stderr


def test_header_extensions_survive_writes(tmp_path):
    img = tmp_path / "e.qcow2"
    qemu("qemu-img", "create", "-f", "qcow2", img, "8M")
    with open(img, "r+b") as f:
        # An unknown extension after the feature table; our writes must keep it.
        data = f.read(65536)
        off = 112
        while True:
            t, l = struct.unpack(">II", data[off:off + 8])
            if t == 0:
                break
            off += 8 + (l + 7) // 8 * 8
        f.seek(off)
        f.write(struct.pack(">II", 0x12345678, 5) + b"hello\0\0\0" + struct.pack(">II", 0, 0))
    run("write-pattern", img, 4, 20, 5, tmp_path / "log")
    run("resize", img, "+8M")
    assert b"\x12\x34\x56\x78\x00\x00\x00\x05hello" in img.read_bytes()[:65536]
    qemu_check_ok(img)
