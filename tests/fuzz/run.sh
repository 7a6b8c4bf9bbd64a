#!/bin/sh
# Bounded libFuzzer run over the qcow2 parser: build the harness with clang,
# seed a corpus with small images made by vmon-img (and qemu-img when it is
# installed), fuzz for FUZZ_TIME seconds.  Usage: run.sh OUTDIR VMON_IMG
set -eu
out=$1
img=$2
time=${FUZZ_TIME:-20}
cd "$(dirname "$0")/../.."
mkdir -p "$out/corpus" "$out/artifacts"
clang -std=gnu11 -g -O1 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -o "$out/fuzz_qcow2" tests/fuzz/fuzz_qcow2.c block/*.c util/log.c \
    -lz -lzstd -lpthread
c=$out/corpus
"$img" create -q -f qcow2 -o cluster_size=512 "$c/seed-v3" 1M
"$img" create -q -f qcow2 -o cluster_size=512,compat=0.10 "$c/seed-v2" 64M
"$img" create -q -f qcow2 -o cluster_size=512,refcount_bits=1 "$c/seed-rc1" 1M
"$img" create -q -f qcow2 -o cluster_size=512,refcount_bits=64,lazy_refcounts=on "$c/seed-rc64" 1M
"$img" create -q -f qcow2 -o cluster_size=512 -b base.img -F raw "$c/seed-backing" 1M
if command -v qemu-img >/dev/null && command -v qemu-io >/dev/null; then
    qemu-img create -q -f qcow2 -o cluster_size=512 "$c/seed-data" 256k
    qemu-io -f qcow2 -c "write -P 0x33 1000 3000" -c "write -z 8192 1024" "$c/seed-data" >/dev/null
    head -c 65536 /dev/urandom > "$out/r.raw"
    qemu-img convert -c -O qcow2 -o cluster_size=512 "$out/r.raw" "$c/seed-compressed"
    qemu-img snapshot -c snap "$c/seed-data"
fi
"$out/fuzz_qcow2" -max_total_time="$time" -max_len=65536 -rss_limit_mb=1024 -timeout=10 \
    -artifact_prefix="$out/artifacts/" "$c"
