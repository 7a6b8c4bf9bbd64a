#!/usr/bin/env python3
"""Analyse a vmon trace (vmon -trace PATTERN,file=PATH).

Each line is "<ns> <event> key=value key=value ...", ns from CLOCK_MONOTONIC
(docs/tracing.md).  Subcommands:

  summary FILE                   events per name, first/last timestamp
  vq-leaks FILE                  virtqueue elements popped but never pushed
  blk-overlap FILE --start B --length N [--dev NAME]
                                 block writes touching bytes [B, B+N)

vq-leaks reads   virtqueue_pop  dev=D vq=Q head=H
                 virtqueue_push dev=D vq=Q head=H len=L
                 virtio_reset   dev=D        (drops what D still held)
blk-overlap reads blk_req dev=D op=write|write_zeroes|... offset=O bytes=N

Exit status: 0, or 1 when vq-leaks/blk-overlap found something (so scripts
can branch on it), 2 on bad usage or an unreadable file."""
import argparse
import collections
import sys


def parse_int(s):
    return int(s, 0)


def events(path):
    """Yield (lineno, ns, name, fields) for each well-formed line."""
    with open(path, errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            words = line.split()
            if len(words) < 2 or not words[0].isdigit():
                continue        # not a trace line (stray output, truncation)
            fields = {}
            for w in words[2:]:
                k, sep, v = w.partition("=")
                if sep:
                    fields[k] = v
            yield lineno, int(words[0]), words[1], fields


def cmd_summary(args, out):
    counts = collections.Counter()
    first = last = None
    for _, ns, name, _ in events(args.file):
        counts[name] += 1
        first = ns if first is None else first
        last = ns
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{n:10d}  {name}", file=out)
    if first is not None:
        print(f"{sum(counts.values())} events over {(last - first) / 1e6:.3f} ms", file=out)
    return 0


def cmd_vq_leaks(args, out):
    held = {}           # (dev, vq, head) -> (lineno, ns)
    problems = 0
    for lineno, ns, name, f in events(args.file):
        if name == "virtio_reset":
            for key in [k for k in held if k[0] == f.get("dev")]:
                del held[key]
            continue
        if name not in ("virtqueue_pop", "virtqueue_push"):
            continue
        try:
            key = (f["dev"], parse_int(f["vq"]), parse_int(f["head"]))
        except (KeyError, ValueError):
            print(f"line {lineno}: {name} without dev/vq/head", file=out)
            problems += 1
            continue
        if name == "virtqueue_pop":
            if key in held:
                print(f"line {lineno}: {key[0]} vq {key[1]} head {key[2]} popped again "
                      f"(first popped at line {held[key][0]})", file=out)
                problems += 1
            held[key] = (lineno, ns)
        elif key in held:
            del held[key]
        else:
            print(f"line {lineno}: {key[0]} vq {key[1]} head {key[2]} pushed but never popped",
                  file=out)
            problems += 1
    for (dev, vq, head), (lineno, ns) in sorted(held.items(), key=lambda kv: kv[1]):
        print(f"{dev} vq {vq} head {head}: popped at line {lineno} (t={ns}) and never pushed",
              file=out)
    leaks = len(held)
    print(f"{leaks} element(s) popped but never pushed", file=out)
    return 1 if leaks or problems else 0


WRITE_OPS = {"write", "write_zeroes"}


def cmd_blk_overlap(args, out):
    lo, hi = args.start, args.start + args.length
    found = 0
    for lineno, ns, name, f in events(args.file):
        if name != "blk_req" or f.get("op") not in WRITE_OPS:
            continue
        if args.dev and f.get("dev") != args.dev:
            continue
        try:
            off, n = parse_int(f["offset"]), parse_int(f["bytes"])
        except (KeyError, ValueError):
            print(f"line {lineno}: blk_req without offset/bytes", file=out)
            continue
        if off < hi and lo < off + n:
            found += 1
            print(f"line {lineno} t={ns}: {f.get('dev', '?')} {f['op']} "
                  f"[{off:#x}, {off + n:#x}) overlaps [{lo:#x}, {hi:#x})", file=out)
    print(f"{found} write(s) overlap [{lo:#x}, {hi:#x})", file=out)
    return 1 if found else 0


def main(argv=None, out=sys.stdout):
    p = argparse.ArgumentParser(prog="trace-analyse.py",
                                description="Analyse a vmon trace file (docs/tracing.md).")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="events per name")
    s.add_argument("file")
    s.set_defaults(fn=cmd_summary)
    s = sub.add_parser("vq-leaks", help="virtqueue elements popped but never pushed")
    s.add_argument("file")
    s.set_defaults(fn=cmd_vq_leaks)
    s = sub.add_parser("blk-overlap", help="block writes overlapping a byte range")
    s.add_argument("file")
    s.add_argument("--start", type=parse_int, required=True, help="first byte (0x.. ok)")
    s.add_argument("--length", type=parse_int, required=True, help="bytes in the range")
    s.add_argument("--dev", help="only this block device")
    s.set_defaults(fn=cmd_blk_overlap)
    args = p.parse_args(argv)
    if getattr(args, "length", 1) <= 0:
        p.error("--length must be positive")
    try:
        return args.fn(args, out)
    except OSError as e:
        print(f"trace-analyse.py: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
