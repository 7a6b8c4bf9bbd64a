#!/usr/bin/env python3
"""Make a minimal bzImage from the real-mode setup sectors (rt/bzsetup.S,
flat, (SETUP_SECTS + 1) * 512 bytes) and a flat protected-mode payload (linked at 0x100000,
32-bit entry at +0, 64-bit entry at +0x200): fill in the Linux boot protocol
header (version 2.15, XLF_KERNEL_64) and append the payload."""
import struct
import sys

SETUP_SECTS = 8
LOAD_ADDR = 0x100000


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: mkbzimage.py SETUP.bin PAYLOAD.bin OUT")
    setup = bytearray(open(sys.argv[1], "rb").read())
    if len(setup) != 512 * (1 + SETUP_SECTS) or setup[0x1f1] != SETUP_SECTS:
        sys.exit("mkbzimage.py: setup code must be %d bytes with setup_sects %d"
                 % (512 * (1 + SETUP_SECTS), SETUP_SECTS))
    if any(setup[0x202:0x268]):
        sys.exit("mkbzimage.py: setup code overlaps the header")
    payload = open(sys.argv[2], "rb").read()
    payload += b"\0" * (-len(payload) % 16)

    def put(off, fmt, val):
        struct.pack_into("<" + fmt, setup, off, val)

    put(0x1f1, "B", SETUP_SECTS)
    put(0x1f4, "I", len(payload) // 16)        # syssize, 16-byte units
    put(0x1fe, "H", 0xAA55)                    # boot_flag
    setup[0x202:0x206] = b"HdrS"
    put(0x206, "H", 0x020F)                    # protocol version 2.15
    put(0x211, "B", 0x01)                      # loadflags: LOADED_HIGH
    put(0x214, "I", LOAD_ADDR)                 # code32_start
    put(0x230, "I", 0x1000)                    # kernel_alignment
    put(0x234, "B", 0)                         # relocatable_kernel: no
    put(0x235, "B", 12)                        # min_alignment
    put(0x236, "H", 0x0001)                    # xloadflags: XLF_KERNEL_64
    put(0x238, "I", 2047)                      # cmdline_size
    put(0x258, "Q", LOAD_ADDR)                 # pref_address
    put(0x260, "I", (len(payload) + 0xFFF) & ~0xFFF)  # init_size
    with open(sys.argv[3], "wb") as f:
        f.write(setup)
        f.write(payload)


if __name__ == "__main__":
    main()
