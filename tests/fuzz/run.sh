#!/bin/sh
# Bounded libFuzzer runs over the parsers of hostile input: qcow2 images,
# kernel images, QMP input and migration section payloads.  libvmon is built
# once with clang's fuzzer instrumentation (a private build variant of the
# Makefile), each harness links against it and runs FUZZ_TIME seconds from
# a seeded corpus.  Usage: run.sh OUTDIR VMON_IMG GUEST_TESTS_DIR
set -eu
out=$1
img=$2
kernels=$3
time=${FUZZ_TIME:-20}
cd "$(dirname "$0")/../.."
san="-fsanitize=address,undefined -fno-sanitize-recover=all"
pkgs="capstone zlib libzstd jansson slirp liburing libisal"
echo "fuzz: building libvmon with clang's fuzzer instrumentation"
# gcc's -Werror is the project's warning gate; clang's different set of
# warnings is not an error in this build (-w keeps the log readable).
make -s CC=clang B="$out/lib" OPT="-O1 -g $san -fsanitize=fuzzer-no-link" CFLAGS="-w" \
    "$out/lib/libvmon.a"
for h in qcow2 boot qmp vmstate; do
    clang -std=gnu11 -g -O1 -D_GNU_SOURCE -I. $san -fsanitize=fuzzer -o "$out/fuzz_$h" \
        tests/fuzz/fuzz_$h.c "$out/lib/libvmon.a" $(pkg-config --libs $pkgs) -lpthread -lrt
    rm -rf "$out/corpus-$h"
    mkdir -p "$out/corpus-$h" "$out/artifacts-$h"
done

c=$out/corpus-qcow2
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

# Kernel seeds: the test kernels (ELF64 and Multiboot) and the bzImage one,
# each behind the harness's one-byte "no initrd" prefix.
for k in "$kernels"/*.elf "$kernels"/*.bzImage; do
    { printf '\0'; cat "$k"; } > "$out/corpus-boot/seed-${k##*/}"
done

c=$out/corpus-qmp
printf '{"execute":"qmp_capabilities"}{"execute":"query-status"}' > "$c/seed-status"
printf '{"execute":"qmp_capabilities"}{"execute":"query-stats","arguments":{"target":"vcpu","providers":[{"provider":"kvm"}]},"id":[1]}' > "$c/seed-stats"
printf '{"execute":"query-version","id":"x"} [1,2,{"a":"\\u00e9"}] {"execute":1}' > "$c/seed-errors"

FUZZ_VMSTATE_SEEDS=$out/corpus-vmstate "$out/fuzz_vmstate" -runs=0 "$out/corpus-vmstate" >/dev/null 2>&1

# -close_fd_mask=2 silences the loaders' one-line errors; libFuzzer keeps
# its own reports (and the sanitizers') on a duplicate of stderr.
run() {
    h=$1
    shift
    echo "fuzz: $h for ${time}s"
    st=0
    "$out/fuzz_$h" -max_total_time="$time" -rss_limit_mb=1024 -timeout=10 -close_fd_mask=2 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts-$h/" "$@" "$out/corpus-$h" \
        > "$out/$h.log" 2>&1 || st=$?
    grep -E '^stat::number_of_executed_units' "$out/$h.log" || true
    if [ $st -ne 0 ] || [ -n "$(ls "$out/artifacts-$h")" ]; then
        tail -n 60 "$out/$h.log" >&2
        echo "fuzz: $h failed (exit $st), inputs kept in $out/artifacts-$h" >&2
        exit 1
    fi
}
run qcow2 -max_len=65536
run boot -max_len=262144
run qmp -max_len=8192
run vmstate -max_len=16384
echo "fuzz: all harnesses ran clean"
