#!/bin/sh
# The demo: boot the Linux guest kit with -accel auto (on a machine without
# hardware virtualization that is emu).  While the emu accelerator is not
# built, boot the project's hello test kernel on kvm instead, and say so.
set -eu

VMON=${VMON:-build/vmon}
KIT=${KIT:-build/guest}
TESTS=${GUEST_TESTS:-build/guest-tests}

emu_ready() {
    "$VMON" -accel help | grep -qx emu
}

if emu_ready; then
    echo "demo: booting the Debian cloud kernel with busybox (-accel auto)"
    echo "demo: vmon -accel auto -m 512 -kernel $KIT/vmlinuz -initrd $KIT/initrd.cpio.gz -append console=ttyS0 -nographic"
    exec "$VMON" -accel auto -d accel -m 512 -kernel "$KIT/vmlinuz" -initrd "$KIT/initrd.cpio.gz" \
        -append "console=ttyS0 ${APPEND:-}" -nographic
fi

echo "demo: the emu accelerator is not built yet, so the Linux guest kit"
echo "demo: cannot boot here (this machine's /dev/kvm runs guest kernels"
echo "demo: ~3500x slower than native).  Booting the hello test kernel on kvm."
echo "demo: vmon -accel kvm -kernel $TESTS/hello.elf -nographic -device isa-debug-exit,iobase=0xf4,iosize=0x04"
set +e
"$VMON" -accel kvm -kernel "$TESTS/hello.elf" -append "demo" -nographic \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
status=$?
# The test kernels exit through debug-exit with value 0: status 1.
if [ "$status" -eq 1 ]; then
    echo "demo: the guest exited through debug-exit (status 1): success"
    exit 0
fi
echo "demo: vmon exited with status $status" >&2
exit 1
