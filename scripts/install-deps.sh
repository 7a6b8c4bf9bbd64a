#!/bin/sh
# Install what vmon needs to build and test, from Debian's archive.
# Idempotent: installs only the packages that are missing and says which.
set -eu

PACKAGES="build-essential pkg-config libcmocka-dev python3-pytest libcapstone-dev libjansson-dev zlib1g-dev libzstd-dev qemu-system-x86 qemu-utils cpio dpkg-dev clang libslirp-dev libglib2.0-dev dmidecode liburing-dev libisal-dev"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all build and test dependencies are present"
    exit 0
fi

echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
