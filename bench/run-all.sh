#!/bin/sh
# Run every benchmark (vmon against QEMU, same kernels, same accelerator).
# Not a test: prints tables with ratios; record results in docs/benchmarks.md.
# Environment: VMON, GUEST_TESTS, BENCH_OUT, QEMU override the defaults.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
/usr/bin/python3 "$here/startup.py" "$@"
echo
/usr/bin/python3 "$here/exits.py" --mode user-pio
echo
/usr/bin/python3 "$here/exits.py" --mode pio
