#!/usr/bin/python3
"""virtio-blk and virtio-net throughput inside the Debian guest kit:
vmon -accel emu vs qemu-system-x86_64 -accel tcg, same kernel, initrd,
disk and guest script, one boot each.

In the guest (busybox): sequential read of a 64 MiB raw disk with dd bs=1M
(MB/s from /proc/uptime deltas), RANDOM_READS single 4 KiB reads at
pseudo-random offsets with dd iflag=direct (IOPS; each read is one dd
process, so process start-up is part of the number for both VMMs), and
guest->host TCP throughput through -netdev user (dd | nc to a host
listener via 10.0.2.2).  Prints a table and, with --append, adds it to
docs/benchmarks.md.

Environment: VMON, QEMU, GUEST_KIT (vmlinuz + initrd.cpio.gz)."""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import QEMU, ROOT, VMON, machine_line, ratio  # noqa: E402

KIT = os.environ.get("GUEST_KIT", os.path.join(ROOT, "build", "guest"))
DISK_MB = 64
RANDOM_READS = 200
NET_MB = 16

SCRIPT = r"""
up() { cut -d' ' -f1 /proc/uptime; }
t0=$(up); dd if=/dev/vda of=/dev/null bs=1048576 2>/dev/null; t1=$(up)
echo "B seq $t0 $t1"
n=0; s=12345; t0=$(up)
while [ $n -lt %(reads)d ]; do
    s=$(( (s * 1103515245 + 12345) %% 2147483648 ))
    dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=$(( s %% %(blocks)d )) iflag=direct 2>/dev/null
    n=$((n + 1))
done
t1=$(up); echo "B rand $t0 $t1"
ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0
port=$(sed 's/.*vmon.port=\([0-9]*\).*/\1/' /proc/cmdline)
t0=$(up); dd if=/dev/zero bs=65536 count=%(netblocks)d 2>/dev/null | nc 10.0.2.2 $port; t1=$(up)
echo "B net $t0 $t1"
echo B-END
"""


def make_initrd(tmp):
    root = os.path.join(tmp, "extra", "tests")
    os.makedirs(root)
    with open(os.path.join(root, "bench.sh"), "w") as f:
        f.write(SCRIPT % {"reads": RANDOM_READS, "blocks": DISK_MB * 256,
                          "netblocks": NET_MB * 16})
    extra = subprocess.run("find . | cpio -o -H newc --quiet", shell=True,
                           cwd=os.path.join(tmp, "extra"), check=True,
                           capture_output=True).stdout
    out = os.path.join(tmp, "initrd")
    with open(os.path.join(KIT, "initrd.cpio.gz"), "rb") as f, open(out, "wb") as o:
        o.write(f.read() + extra)
    return out


def sink(srv, got):
    c, _ = srv.accept()
    n = 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        n += len(b)
    got.append(n)
    c.close()


def run(which, tmp, initrd, disk):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got = []
    threading.Thread(target=sink, args=(srv, got), daemon=True).start()
    port = srv.getsockname()[1]
    common = ["-m", "256", "-nographic", "-no-reboot", "-kernel", os.path.join(KIT, "vmlinuz"),
              "-initrd", initrd, "-append",
              f"console=ttyS0 quiet vmon.test=bench vmon.port={port}",
              "-drive", f"file={disk},format=raw,if=none,id=d0,cache=writeback",
              "-device", "virtio-blk-pci,drive=d0",
              "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]
    if which == "vmon":
        cmd = [VMON, "-accel", "emu", *common]
    else:
        cmd = [QEMU, "-M", "pc", "-accel", "tcg", *common]
        cmd = [a.replace("virtio-blk-pci,", "virtio-blk-pci,disable-legacy=on,")
               .replace("virtio-net-pci,", "virtio-net-pci,disable-legacy=on,romfile=,")
               for a in cmd]
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=3600).stdout.decode(errors="replace")
    res = {}
    for line in out.replace("\r", "").splitlines():
        w = line.split()
        if len(w) == 4 and w[0] == "B":
            res[w[1]] = float(w[3]) - float(w[2])
    if "B-END" not in out or len(res) != 3:
        raise SystemExit(f"bench: {which} did not finish:\n{out[-2000:]}")
    return {"seq MB/s": DISK_MB / res["seq"],
            "4K rand IOPS": RANDOM_READS / res["rand"],
            "net guest->host MB/s": (got[0] if got else 0) / 1e6 / res["net"]}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "disk.img")
        with open(disk, "wb") as f:
            f.write(os.urandom(DISK_MB << 20))
        initrd = make_initrd(tmp)
        r = {w: run(w, tmp, initrd, disk) for w in ("vmon", "qemu")}
    lines = [f"### virtio in the guest kit: vmon -accel emu vs QEMU -accel tcg ({machine_line()})",
             "", "| metric | vmon | qemu | vmon/qemu |", "|---|---|---|---|"]
    for k in r["vmon"]:
        lines.append(f"| {k} | {r['vmon'][k]:.1f} | {r['qemu'][k]:.1f} | "
                     f"{ratio(r['vmon'][k], r['qemu'][k])} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if "--append" in sys.argv:
        with open(os.path.join(ROOT, "docs", "benchmarks.md"), "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
