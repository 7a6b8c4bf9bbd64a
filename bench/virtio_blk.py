#!/usr/bin/python3
"""virtio-blk (raw and qcow2) and virtio-net throughput inside the Debian
guest kit: vmon -accel emu vs qemu-system-x86_64 -accel tcg, same kernel,
initrd, images and guest script, one boot each per run.

Each VM gets two disks with the same content: vda a raw image, vdb a qcow2
image (qemu-img convert of the raw one, so every cluster is allocated),
and two empty ones, vdc qcow2 and vdd a sparse raw file, that take one
pass of N random 4 KiB writes at boot (every write allocates).
In the guest, ITERS times for each disk:
  seq read   busybox dd if=/dev/vdX bs=1M iflag=direct   (MB/s)
  seq write  busybox dd of=/dev/vdX bs=1M oflag=direct conv=fsync (MB/s)
  rand read  randio read  /dev/vdX N SEED: N 4 KiB O_DIRECT reads (IOPS)
  rand write randio write /dev/vdX N SEED, then fdatasync (IOPS)
dd is timed with /proc/uptime deltas, randio with CLOCK_MONOTONIC in the
guest.  randio (bench/randio.c) is built into the kit by
scripts/guest-kit.sh.  Then once: guest->host TCP through -netdev user
(dd | nc to a host listener via 10.0.2.2).  Every VM starts from fresh
copies of the images.  Results are medians over ITERS x RUNS; the table
gives vmon, QEMU and vmon/QEMU, plus qcow2/raw for each VMM.

vmon boots once per -drive aio= backend given with --aio (default
io_uring,threads: the io_uring backend and the worker-thread pool it
replaced for raw images; qcow2 uses the pool under both), so the table also
gives io_uring/threads.  QEMU keeps its default (aio=threads).

Usage: bench/virtio_blk.py [-n RUNS] [--iters N] [--aio LIST] [--append]
Environment: VMON, QEMU, GUEST_KIT (vmlinuz + initrd.cpio.gz with /bin/randio)."""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(__file__))
from common import KIT, QEMU, ROOT, VMON, byte_sink, kit_initrd, machine_line, median, ratio  # noqa: E402,E501

# One boot plus its transfers; a loaded host needs a few minutes, a hung
# guest would otherwise hold the run forever.
BOOT_TIMEOUT = 600
DISK_MB = 64
RANDOM_OPS = 1000
NET_MB = 16

SCRIPT = r"""
up() { cut -d' ' -f1 /proc/uptime; }
for d in vdc vdd; do
  set -- $(randio write /dev/$d %(ops)d 99)
  echo "B $d allocwrite 0 $4"
done
i=0
while [ $i -lt %(iters)d ]; do
  for d in vda vdb; do
    t0=$(up); dd if=/dev/$d of=/dev/null bs=1048576 iflag=direct 2>/dev/null; t1=$(up)
    echo "B $d seqread $t0 $t1"
    t0=$(up); dd if=/dev/zero of=/dev/$d bs=1048576 count=%(mb)d oflag=direct conv=fsync 2>/dev/null; t1=$(up)
    echo "B $d seqwrite $t0 $t1"
    set -- $(randio read /dev/$d %(ops)d $((i + 1)))
    echo "B $d randread 0 $4"
    set -- $(randio write /dev/$d %(ops)d $((i + 1)))
    echo "B $d randwrite 0 $4"
  done
  i=$((i + 1))
done
ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0
port=$(sed 's/.*vmon.port=\([0-9]*\).*/\1/' /proc/cmdline)
t0=$(up); dd if=/dev/zero bs=65536 count=%(netblocks)d 2>/dev/null | nc 10.0.2.2 $port; t1=$(up)
echo "B net net $t0 $t1"
echo B-END
"""

METRICS = [("seqread", "seq read MB/s", DISK_MB), ("seqwrite", "seq write MB/s", DISK_MB),
           ("randread", "4K rand read IOPS", RANDOM_OPS),
           ("randwrite", "4K rand write IOPS", RANDOM_OPS)]
DISKS = [("vda", "raw"), ("vdb", "qcow2")]
# Empty images, written once per boot: every random write allocates (a
# qcow2 cluster with its refcount and L2 update, or a block of the sparse
# raw file on the host file system).
EMPTY_DISKS = [("vdc", "qcow2"), ("vdd", "raw")]


def kit_has_randio():
    p = subprocess.run(f"zcat {os.path.join(KIT, 'initrd.cpio.gz')} | cpio -t --quiet",
                       shell=True, capture_output=True, text=True)
    return "bin/randio" in p.stdout.split()


def make_initrd(tmp, iters):
    return kit_initrd(tmp, "bench", SCRIPT % {"iters": iters, "mb": DISK_MB, "ops": RANDOM_OPS,
                                              "netblocks": NET_MB * 16})


def boot(which, tmp, initrd, images, aio=None):
    """One VM; returns {(disk, test): [seconds per iteration]} and net MB/s."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got = []
    threading.Thread(target=byte_sink, args=(srv, got), daemon=True).start()
    port = srv.getsockname()[1]
    disks = []
    for i, (dev, fmt) in enumerate(DISKS + EMPTY_DISKS):
        fresh = os.path.join(tmp, f"{which}.{dev}.{fmt}")
        if i < len(DISKS):
            shutil.copyfile(images[fmt], fresh)
        elif fmt == "qcow2":
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", fresh, f"{DISK_MB}M"],
                           check=True)
        else:
            with open(fresh, "wb") as f:
                f.truncate(DISK_MB << 20)
        aio_opt = f",aio={aio}" if aio else ""
        disks += ["-drive", f"file={fresh},format={fmt},if=none,id=d{i},cache=writeback{aio_opt}",
                  "-device", f"virtio-blk-pci,drive=d{i}"]
    common = ["-m", "256", "-nographic", "-no-reboot", "-kernel", os.path.join(KIT, "vmlinuz"),
              "-initrd", initrd, "-append",
              f"console=ttyS0 quiet vmon.test=bench vmon.port={port}", *disks,
              "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]
    if which == "vmon":
        cmd = [VMON, "-accel", "emu", *common]
    else:
        cmd = [QEMU, "-M", "pc", "-accel", "tcg", *common]
        cmd = [a.replace("virtio-blk-pci,", "virtio-blk-pci,disable-legacy=on,")
               .replace("virtio-net-pci,", "virtio-net-pci,disable-legacy=on,romfile=,")
               for a in cmd]
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=BOOT_TIMEOUT).stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench: {which} did not finish its boot and transfers within "
                         f"{BOOT_TIMEOUT} s (host overloaded or guest hung); killed it")
    res, net = {}, None
    for line in out.replace("\r", "").splitlines():
        w = line.split()
        if len(w) == 5 and w[0] == "B":
            secs = float(w[4]) - float(w[3])
            if w[1] == "net":
                net = (got[0] if got else 0) / 1e6 / secs if secs > 0 else 0.0
            else:
                res.setdefault((w[1], w[2]), []).append(secs)
    if "B-END" not in out or net is None:
        raise SystemExit(f"bench: {which} did not finish:\n{out[-3000:]}")
    return res, net


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=1, help="boots per VMM")
    ap.add_argument("--iters", type=int, default=3, help="repetitions inside each boot")
    ap.add_argument("--aio", default="io_uring,threads",
                    help="vmon -drive aio= backends, comma-separated (first one is compared "
                         "with QEMU)")
    ap.add_argument("--append", action="store_true", help="add the table to docs/benchmarks.md")
    args = ap.parse_args()
    if not kit_has_randio():
        raise SystemExit(f"bench: {KIT}/initrd.cpio.gz has no /bin/randio; rebuild the kit: "
                         f"FORCE=1 scripts/guest-kit.sh {KIT}")
    aios = args.aio.split(",")
    variants = [f"vmon {a}" for a in aios] + ["qemu"]
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        images = {"raw": os.path.join(tmp, "disk.raw"), "qcow2": os.path.join(tmp, "disk.qcow2")}
        with open(images["raw"], "wb") as f:
            f.write(os.urandom(DISK_MB << 20))
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", images["raw"],
                        images["qcow2"]], check=True)
        initrd = make_initrd(tmp, args.iters)
        runs = {v: [] for v in variants}
        for _ in range(args.n):
            for v, aio in zip(variants, aios + [None]):   # alternate, so load drifts hit all
                runs[v].append(boot("qemu" if v == "qemu" else "vmon", tmp, initrd, images,
                                    aio))
    load1 = os.getloadavg()

    def value(which, disk, test, work):
        secs = [s for res, _ in runs[which] for s in res[(disk, test)]]
        return work / median(secs)

    main_v = variants[0]
    head = " | ".join(variants)
    extra = [f"{main_v}/vmon {a}" for a in aios[1:]] + [f"{main_v}/qemu"]
    lines = [f"### virtio in the guest kit: vmon -accel emu vs QEMU -accel tcg "
             f"({machine_line()}, load average {load0[0]:.1f} -> {load1[0]:.1f}, "
             f"{args.n} boot(s) x {args.iters} iterations, medians)",
             "", f"| disk | metric | {head} | {' | '.join(extra)} |",
             "|---|---|" + "---|" * (len(variants) + len(extra))]

    def row(disk, test, work):
        vals = [value(v, disk, test, work) for v in variants]
        cells = [f"{x:.1f}" for x in vals]
        cells += [ratio(vals[0], vals[i]) for i in range(1, len(vals))]
        return " | ".join(cells)

    for disk, fmt in DISKS:
        for test, label, work in METRICS:
            lines.append(f"| {fmt} | {label} | {row(disk, test, work)} |")
    for disk, fmt in EMPTY_DISKS:
        lines.append(f"| {fmt}, empty | 4K rand write IOPS, allocating | "
                     f"{row(disk, 'allocwrite', RANDOM_OPS)} |")
    lines += ["", f"| metric | {' | '.join(v + ' qcow2/raw' for v in variants)} |",
              "|---|" + "---|" * len(variants)]
    for test, label, work in METRICS:
        cells = [ratio(value(w, "vdb", test, work), value(w, "vda", test, work))
                 for w in variants]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    cells = [ratio(value(w, "vdc", "allocwrite", RANDOM_OPS),
                   value(w, "vdd", "allocwrite", RANDOM_OPS)) for w in variants]
    lines.append(f"| 4K rand write IOPS, allocating | {' | '.join(cells)} |")
    nets = {v: median([n for _, n in runs[v]]) for v in variants}
    lines += ["", "net guest->host (16 MiB, -netdev user): " +
              ", ".join(f"{v} {n:.1f} MB/s" for v, n in nets.items())]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(os.path.join(ROOT, "docs", "benchmarks.md"), "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
