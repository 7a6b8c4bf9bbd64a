#!/usr/bin/env python3
"""Wrap a flat protected-mode payload (linked at 0x100000, 64-bit entry at
+0x200) in a minimal bzImage: a boot sector and one setup sector holding the
Linux boot protocol header (version 2.15, XLF_KERNEL_64).  There is no
real-mode setup code: only loaders that use the 64-bit entry can boot it."""
import struct
import sys

SETUP_SECTS = 1
LOAD_ADDR = 0x100000


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mkbzimage.py PAYLOAD.bin OUT")
    payload = open(sys.argv[1], "rb").read()
    payload += b"\0" * (-len(payload) % 16)
    setup = bytearray(512 * (1 + SETUP_SECTS))

    def put(off, fmt, val):
        struct.pack_into("<" + fmt, setup, off, val)

    put(0x1f1, "B", SETUP_SECTS)
    put(0x1f4, "I", len(payload) // 16)        # syssize, 16-byte units
    put(0x1fe, "H", 0xAA55)                    # boot_flag
    setup[0x200:0x202] = b"\xeb\xfe"           # no real-mode setup: spin
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
    with open(sys.argv[2], "wb") as f:
        f.write(setup)
        f.write(payload)


if __name__ == "__main__":
    main()
