#!/usr/bin/python3
"""virtio-net guest->host TCP throughput inside the Debian guest kit:
vmon -accel emu vs qemu-system-x86_64 -accel tcg, same kernel, initrd and
guest script, both on -netdev user (libslirp), one boot each per run,
alternating.

In the guest (static 10.0.2.15/24, slirp's host is 10.0.2.2), ITERS times:
  dd if=/dev/zero bs=64k count=MB*16 | nc 10.0.2.2 PORT
timed with /proc/uptime deltas (10 ms resolution) around the pipeline;
a host listener on 127.0.0.1:PORT counts the bytes of each connection, and
an iteration whose byte count is short fails the run.  Throughput is bytes
received / guest seconds; the table gives medians over RUNS x ITERS and
vmon/QEMU.

Usage: bench/virtio_net.py [-n RUNS] [--iters N] [--mb MB] [--append]
Environment: VMON, QEMU, GUEST_KIT (vmlinuz + initrd.cpio.gz)."""
import argparse
import os
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

SCRIPT = r"""
up() { cut -d' ' -f1 /proc/uptime; }
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
port=$(sed 's/.*vmon.port=\([0-9]*\).*/\1/' /proc/cmdline)
i=0
while [ $i -lt %(iters)d ]; do
  t0=$(up); dd if=/dev/zero bs=65536 count=%(blocks)d 2>/dev/null | nc 10.0.2.2 $port; t1=$(up)
  echo "N $i $t0 $t1"
  i=$((i + 1))
done
echo N-END
"""


def make_initrd(tmp, iters, mb):
    return kit_initrd(tmp, "netbench", SCRIPT % {"iters": iters, "blocks": mb * 16})


def boot(which, initrd, iters, mb):
    """One VM; returns MB/s per iteration."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got = []
    t = threading.Thread(target=byte_sink, args=(srv, got), daemon=True)
    t.start()
    port = srv.getsockname()[1]
    common = ["-m", "256", "-nographic", "-no-reboot", "-kernel", os.path.join(KIT, "vmlinuz"),
              "-initrd", initrd, "-append",
              f"console=ttyS0 quiet vmon.test=netbench vmon.port={port}",
              "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]
    if which == "vmon":
        cmd = [VMON, "-accel", "emu", *common]
    else:
        cmd = [QEMU, "-M", "pc", "-accel", "tcg", *common]
        cmd = [a.replace("virtio-net-pci,", "virtio-net-pci,disable-legacy=on,romfile=,")
               for a in cmd]
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=BOOT_TIMEOUT).stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench: {which} did not finish its boot and transfers within "
                         f"{BOOT_TIMEOUT} s (host overloaded or guest hung); killed it")
    srv.close()
    rates = []
    for line in out.replace("\r", "").splitlines():
        w = line.split()
        if len(w) == 4 and w[0] == "N":
            i, secs = int(w[1]), float(w[3]) - float(w[2])
            if i >= len(got) or got[i] != mb << 20:
                raise SystemExit(f"bench: {which} iteration {i}: host received "
                                 f"{got[i] if i < len(got) else 0} of {mb << 20} bytes")
            rates.append(got[i] / 1e6 / secs if secs > 0 else float("inf"))
    if "N-END" not in out or len(rates) != iters:
        raise SystemExit(f"bench: {which} did not finish:\n{out[-3000:]}")
    return rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3, help="boots per VMM")
    ap.add_argument("--iters", type=int, default=3, help="transfers inside each boot")
    ap.add_argument("--mb", type=int, default=16, help="MiB per transfer")
    ap.add_argument("--append", action="store_true", help="add the result to docs/benchmarks.md")
    args = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        initrd = make_initrd(tmp, args.iters, args.mb)
        runs = {"vmon": [], "qemu": []}
        for _ in range(args.n):
            for which in ("vmon", "qemu"):   # alternate, so load drifts hit both
                runs[which] += boot(which, initrd, args.iters, args.mb)
    load1 = os.getloadavg()
    v, q = median(runs["vmon"]), median(runs["qemu"])
    lines = [f"### virtio-net guest->host TCP, -netdev user: vmon -accel emu vs QEMU -accel tcg "
             f"({machine_line()}, load average {load0[0]:.1f} -> {load1[0]:.1f}, "
             f"{args.n} boot(s) x {args.iters} transfers of {args.mb} MiB, medians)",
             "", "| metric | vmon | qemu | vmon/qemu |", "|---|---|---|---|",
             f"| busybox dd \\| nc to 10.0.2.2, MB/s | {v:.1f} | {q:.1f} | {ratio(v, q)} |",
             "", "per transfer, MB/s: vmon " + " ".join(f"{x:.1f}" for x in runs["vmon"]) +
             "; qemu " + " ".join(f"{x:.1f}" for x in runs["qemu"])]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(os.path.join(ROOT, "docs", "benchmarks.md"), "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
