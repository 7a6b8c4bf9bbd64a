#!/bin/sh
# The demo: boot the Linux guest kit with -accel auto (kvm where the CPU has
# real hardware virtualization, vmon's own emulator elsewhere; -d accel
# prints the choice).  APPEND=shell gives an interactive busybox shell.
set -eu

VMON=${VMON:-build/vmon}
KIT=${KIT:-build/guest}

echo "demo: $VMON -accel auto -m 512 -kernel $KIT/vmlinuz -initrd $KIT/initrd.cpio.gz -append \"console=ttyS0 ${APPEND:-}\" -nographic"
exec "$VMON" -accel auto -d accel -m 512 -kernel "$KIT/vmlinuz" -initrd "$KIT/initrd.cpio.gz" \
    -append "console=ttyS0 ${APPEND:-}" -nographic
