#!/bin/sh
# vmon-img convert vs qemu-img convert on a 1 GiB image, qcow2->raw and
# raw->qcow2: median of RUNS runs each, alternating between the two, and the
# ratio vmon/qemu (lower is better for vmon).
# Usage: bench/img-convert.sh [VMON_IMG]  (RUNS=5, DIR=/tmp)
set -eu
VMON_IMG=${1:-${VMON_IMG:-build/tools/vmon-img}}
RUNS=${RUNS:-5}
DIR=$(mktemp -d "${DIR:-/tmp}/img-bench-XXXXXX")
trap 'rm -rf "$DIR"' EXIT

command -v qemu-img >/dev/null || { echo "img-convert: qemu-img is not installed" >&2; exit 1; }
[ -x "$VMON_IMG" ] || { echo "img-convert: $VMON_IMG is not built" >&2; exit 1; }

# 1 GiB with 3/4 data: random, compressible and zero regions mixed.
src=$DIR/src.raw
head -c 256M /dev/urandom > "$DIR/rand"
{ cat "$DIR/rand"; yes "vmon block benchmark line" | head -c 256M; cat "$DIR/rand"; } > "$src"
truncate -s 1G "$src"
rm -f "$DIR/rand"
qemu-img convert -f raw -O qcow2 "$src" "$DIR/src.qcow2"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

one_run() { # command...: seconds for one run, from a fresh output file
    rm -f "$DIR/out"
    sync
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}

# vmon and qemu runs alternate, so drifting machine load hits both alike.
printf '%-14s %10s %10s %8s\n' "case" "vmon-img s" "qemu-img s" "ratio"
for case in qcow2-to-raw raw-to-qcow2; do
    if [ $case = qcow2-to-raw ]; then in=$DIR/src.qcow2 f=qcow2 o=raw; else in=$src f=raw o=qcow2; fi
    : > "$DIR/v"; : > "$DIR/q"
    for _ in $(seq "$RUNS"); do
        one_run "$VMON_IMG" convert -f $f -O $o "$in" "$DIR/out" >> "$DIR/v"
        one_run qemu-img convert -f $f -O $o "$in" "$DIR/out" >> "$DIR/q"
    done
    v=$(median < "$DIR/v")
    q=$(median < "$DIR/q")
    printf '%-14s %10.3f %10.3f %8.2f\n' $case "$v" "$q" "$(echo "$v / $q" | bc -l)"
done
