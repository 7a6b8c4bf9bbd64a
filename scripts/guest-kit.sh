#!/bin/sh
# Build the Linux guest kit: OUT/vmlinuz and OUT/initrd.cpio.gz, from
# Debian's linux-image-cloud-amd64 and busybox-static packages.  The packages
# are fetched with `apt-get download` and unpacked with `dpkg-deb -x`; nothing
# is installed on the host.
#
# The initrd's /init mounts proc, sys and devtmpfs, loads the virtio modules,
# prints "VMON-GUEST-UP uptime=<seconds>" and powers off, or starts a shell
# when `shell` is on the kernel command line.  /bin/randio (bench/randio.c,
# built here with gcc -static) does the guest-side random 4 KiB I/O of
# bench/virtio_blk.py, which busybox cannot do in one process.
set -eu

RANDIO_SRC=$(cd "$(dirname "$0")/.." && pwd)/bench/randio.c
OUT=${1:-build/guest}
CACHE=$OUT/cache
mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
CACHE=$OUT/cache

if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.cpio.gz" ] && [ "${FORCE:-0}" != 1 ]; then
    echo "guest-kit: $OUT/vmlinuz and initrd.cpio.gz are ready (FORCE=1 rebuilds)"
    exit 0
fi

# The metapackage names the current kernel ABI package.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
       awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$kpkg" ]; then
    echo "guest-kit: cannot resolve linux-image-cloud-amd64 (run apt-get update?)" >&2
    exit 1
fi

cd "$CACHE"
for p in "$kpkg" busybox-static; do
    if ! ls "${p}"_*.deb >/dev/null 2>&1; then
        echo "guest-kit: downloading $p"
        # _apt cannot write into root-owned folders; download as the caller.
        apt-get download -o APT::Sandbox::User=root "$p" >/dev/null
    fi
done

echo "guest-kit: unpacking $kpkg and busybox-static"
rm -rf kernel busybox root
dpkg-deb -x "$(ls "${kpkg}"_*.deb | head -n 1)" kernel
dpkg-deb -x "$(ls busybox-static_*.deb | head -n 1)" busybox

# Both outputs are written under temporary names and renamed into place, so
# a FORCE=1 rebuild of a kit other test runs use never shows them half a file.
cp kernel/boot/vmlinuz-* "$OUT/vmlinuz.tmp"
kver=$(ls kernel/lib/modules | head -n 1)
moddir=kernel/lib/modules/$kver

# The modules /init loads, dependencies first.  The package has no
# modules.dep (depmod runs at install time), so read each module's own
# "depends=" field from its .modinfo strings.
WANT="virtio_pci virtio_blk virtio_net virtio_console virtio-rng"
order=""
module_path() {
    # Module names use - and _ interchangeably.
    n1=$(echo "$1" | tr - _); n2=$(echo "$1" | tr _ -)
    find "$moddir/kernel" \( -name "$n1.ko" -o -name "$n2.ko" \) | head -n 1
}
add_module() {
    path=$(module_path "$1")
    if [ -z "$path" ]; then
        echo "guest-kit: module $1 not found in $kpkg" >&2
        exit 1
    fi
    case " $order " in *" $path "*) return ;; esac
    deps=$(tr '\0' '\n' < "$path" | sed -n 's/^depends=//p' | tr , ' ')
    for d in $deps; do add_module "$d"; done
    order="$order $(module_path "$1")"
}
for name in $WANT; do
    add_module "$name"
done

mkdir -p root/bin root/dev root/proc root/sys root/tmp root/lib/modules root/etc
cp busybox/bin/busybox root/bin/busybox
if ! ${CC:-cc} -static -O2 -Wall -Wextra -Werror -o root/bin/randio "$RANDIO_SRC"; then
    echo "guest-kit: cannot build $RANDIO_SRC statically (is libc6-dev installed?)" >&2
    exit 1
fi
for mod in $order; do
    cp "$mod" root/lib/modules/
    echo "$(basename "$mod")" >> root/etc/modules
done

cat > root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do
    insmod /lib/modules/$m || echo "init: insmod $m failed"
done
echo "VMON-GUEST-UP uptime=$(cut -d' ' -f1 /proc/uptime)"
# vmon.test=NAME runs /tests/NAME.sh, which a system test appends to the
# initrd as a second cpio archive (the kernel unpacks them in turn).
for arg in $(cat /proc/cmdline); do
    case $arg in
    vmon.test=*) sh "/tests/${arg#vmon.test=}.sh" ;;
    esac
done
if grep -qw shell /proc/cmdline; then
    echo "init: starting a shell; 'poweroff -f' ends the VM"
    setsid cttyhack sh -l
fi
poweroff -f
INIT
chmod +x root/init

(cd root && find . | cpio -o -H newc --quiet) | gzip -9 > "$OUT/initrd.cpio.gz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/initrd.cpio.gz.tmp" "$OUT/initrd.cpio.gz"
rm -rf kernel busybox root
echo "guest-kit: $OUT/vmlinuz ($kpkg) and $OUT/initrd.cpio.gz ready"
