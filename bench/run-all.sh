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
# emu vs QEMU TCG on the guest kit; skipped (with a note) when the kit or
# the emu accelerator is missing.  GUEST_KIT overrides build/guest.
echo
if [ -e "${GUEST_KIT:-$here/../build/guest}/vmlinuz" ]; then
    /usr/bin/python3 "$here/emu_boot.py"
else
    echo "emu_boot: no guest kit (scripts/guest-kit.sh build/guest); skipped"
fi
