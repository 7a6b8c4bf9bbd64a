"""Trace events end to end: vmon -trace writes the documented line format
with the exact number of events the guest caused, and
scripts/trace-analyse.py finds leaked virtqueue elements and overlapping
block writes in synthetic traces."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, kernel_path

ANALYSE = os.path.join(ROOT, "scripts", "trace-analyse.py")
LINE = re.compile(r"^\d+ [a-z0-9_]+( [a-z_]+=\S+)*$")


def analyse(*args):
    p = subprocess.run([sys.executable, ANALYSE, *args], capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


def write_trace(tmp_path, text):
    path = tmp_path / "trace.log"
    path.write_text(text)
    return str(path)


VQ_TRACE = """\
1000 virtqueue_pop dev=virtio-blk0 vq=0 head=0
1100 virtqueue_pop dev=virtio-blk0 vq=0 head=1
1150 pio op=write port=0x3f8 size=1 val=0x41 dev=serial
1200 virtqueue_push dev=virtio-blk0 vq=0 head=0 len=512
1300 virtqueue_pop dev=virtio-net0 vq=1 head=7
1400 virtqueue_pop dev=virtio-blk0 vq=0 head=0
1500 virtqueue_push dev=virtio-blk0 vq=0 head=0 len=1
1600 virtqueue_pop dev=virtio-net0 vq=0 head=3
1700 virtio_reset dev=virtio-net0
garbage line that is not a trace event
"""


def test_vq_leaks_finds_popped_never_pushed(tmp_path):
    status, out, _ = analyse("vq-leaks", write_trace(tmp_path, VQ_TRACE))
    assert status == 1
    assert "virtio-blk0 vq 0 head 1: popped at line 2 (t=1100) and never pushed" in out
    assert "1 element(s) popped but never pushed" in out
    # the reset of virtio-net0 legitimately dropped its two elements
    assert "virtio-net0" not in out


def test_vq_leaks_clean_trace_and_double_pop(tmp_path):
    clean = "1 virtqueue_pop dev=d vq=0 head=5\n2 virtqueue_push dev=d vq=0 head=5 len=0\n"
    status, out, _ = analyse("vq-leaks", write_trace(tmp_path, clean))
    assert status == 0 and "0 element(s)" in out
    double = "1 virtqueue_pop dev=d vq=0 head=5\n2 virtqueue_pop dev=d vq=0 head=5\n" \
             "3 virtqueue_push dev=d vq=2 head=9 len=0\n"
    status, out, _ = analyse("vq-leaks", write_trace(tmp_path, double))
    assert status == 1
    assert "line 2: d vq 0 head 5 popped again (first popped at line 1)" in out
    assert "line 3: d vq 2 head 9 pushed but never popped" in out


BLK_TRACE = """\
10 blk_req dev=disk0 op=write offset=0 bytes=4096
20 blk_req dev=disk0 op=read offset=8192 bytes=4096
30 blk_req dev=disk0 op=write offset=8192 bytes=512
40 blk_req dev=disk0 op=write offset=12288 bytes=4096
50 blk_req dev=disk1 op=write offset=8192 bytes=4096
60 blk_req dev=disk0 op=write_zeroes offset=4096 bytes=4097
70 blk_req dev=disk0 op=flush offset=0 bytes=0
"""


def test_blk_overlap_finds_writes_in_range(tmp_path):
    path = write_trace(tmp_path, BLK_TRACE)
    # [8192, 12288): the read does not count, the write ending at 12288+4096
    # starts at the range's end and does not overlap, the write_zeroes
    # reaching byte 8192 does.
    status, out, _ = analyse("blk-overlap", path, "--start", "0x2000", "--length", "4096",
                             "--dev", "disk0")
    assert status == 1
    lines = [l for l in out.splitlines() if l.startswith("line ")]
    assert [l.split()[1] for l in lines] == ["3", "6"]
    assert "2 write(s) overlap [0x2000, 0x3000)" in out
    # without --dev the other disk's write shows too
    status, out, _ = analyse("blk-overlap", path, "--start", "8192", "--length", "1")
    assert "3 write(s) overlap" in out
    # nothing there
    status, out, _ = analyse("blk-overlap", path, "--start", "0x100000", "--length", "512")
    assert status == 0 and "0 write(s)" in out


def test_analyser_usage_errors(tmp_path):
    assert analyse("blk-overlap", "x", "--start", "0")[0] == 2          # argparse
    assert analyse("blk-overlap", "x", "--start", "0", "--length", "0")[0] == 2
    status, _, err = analyse("summary", str(tmp_path / "missing"))
    assert status == 2 and "missing" in err


def test_vmon_trace_counts_guest_port_writes(vmon, accel, tmp_path):
    """The exits kernel writes port 0x900 (no device) exactly count times:
    the trace has exactly that many pio_unassigned lines for it."""
    n = 250
    trace = tmp_path / "vmon.trace"
    p = subprocess.run([vmon, "-accel", accel, "-m", "128", "-nographic",
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                        "-kernel", kernel_path("exits.elf"), "-append", f"count={n}",
                        "-trace", "pio*", "-trace", f"vcpu_exit,file={trace}"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert p.returncode == 1, p.stderr
    lines = trace.read_text().splitlines()
    assert lines and all(LINE.match(l) for l in lines), lines[:5]
    port = [l for l in lines if " pio_unassigned op=write port=0x900 " in l]
    assert len(port) == n
    assert any(" pio op=write port=0x3f8 " in l and "dev=" in l for l in lines)
    exits = [l for l in lines if " vcpu_exit cpu=0 reason=io " in l]
    assert len(exits) >= n
    stamps = [int(l.split()[0]) for l in lines]
    assert stamps == sorted(stamps)
    status, out, _ = analyse("summary", str(trace))
    unassigned = sum(1 for l in lines if l.split()[1] == "pio_unassigned")
    assert status == 0
    assert re.search(rf"^\s+{unassigned}  pio_unassigned$", out, re.M), out


def test_trace_help_and_bad_option(vmon):
    p = subprocess.run([vmon, "-trace", "help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    assert {"pio", "mmio", "vcpu_exit", "irq_set"} <= set(p.stdout.split())
    p = subprocess.run([vmon, "-trace", "file=/nonexistent/dir/t.log", "-kernel", "/dev/null"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "-trace file=/nonexistent/dir/t.log" in p.stderr


def test_virtqueue_trace_pairs_every_pop_with_a_push(vmon, accel, tmp_path):
    """The virtio test kernel reads virtio-rng (chains popped and pushed)
    and then submits malformed chains, which the device refuses without
    popping: every traced pop has its push, and vq-leaks finds nothing."""
    trace = tmp_path / "vq.trace"
    p = subprocess.run([vmon, "-accel", accel, "-m", "128", "-nographic",
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                        "-device", "virtio-rng-pci", "-kernel", kernel_path("virtio.elf"),
                        "-trace", f"virtqueue_*,file={trace}"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert p.returncode == 1, p.stderr
    lines = trace.read_text().splitlines()
    pops = [l for l in lines if " virtqueue_pop dev=virtio-rng-pci " in l]
    pushes = [l for l in lines if " virtqueue_push dev=virtio-rng-pci " in l]
    assert pops and len(pops) == len(pushes)
    status, out, _ = analyse("vq-leaks", str(trace))
    assert status == 0, out
