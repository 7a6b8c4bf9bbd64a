/* The emulator's decoder against capstone: instruction lengths must agree
 * for every instruction both decode, over random byte sequences and over
 * the .text of real binaries.  Also reports how much of real code the
 * executor implements (information, not a threshold). */
#include <elf.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>
#include <capstone/capstone.h>

#include "emu/emu.h"

static csh cs;

static int setup(void **state)
{
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    cs_close(&cs);
    return 0;
}

struct stats {
    unsigned compared, mismatched, unknown, implemented, total;
};

/* Where capstone and Intel parts disagree, the host CPU wins (the
 * differential test checks those against it): in 64-bit mode Intel ignores
 * 66 on near branches (capstone decodes rel16, as AMD does), UD0/UD1
 * take a ModRM byte, and REX.W RET imm16 still has a 16-bit immediate. */
static bool capstone_differs(const uint8_t *p, size_t avail)
{
    size_t k = 0;
    bool p66 = false, rexw = false;

    while (k < avail && k < 15 && (p[k] == 0x66 || p[k] == 0x67 || p[k] == 0xf2 ||
                                   p[k] == 0xf3 || p[k] == 0xf0 || p[k] == 0x2e ||
                                   p[k] == 0x3e || p[k] == 0x26 || p[k] == 0x36 ||
                                   p[k] == 0x64 || p[k] == 0x65 || (p[k] & 0xf0) == 0x40)) {
        p66 |= p[k] == 0x66;
        rexw = (p[k] & 0xf8) == 0x48;
        k++;
    }
    if (k >= avail)
        return false;
    if (p66 && (p[k] == 0xe8 || p[k] == 0xe9))
        return true;
    if (rexw && p[k] == 0xc2)
        return true;  /* capstone 4 reads a wider immediate: RET imm16 is always 16 */
    if (p[k] == 0x0f && k + 1 < avail) {
        uint8_t b = p[k + 1];

        if (p66 && b >= 0x80 && b <= 0x8f)
            return true;
        if (b == 0xb9 || b == 0xff)
            return true;
    }
    return false;
}

/* Compare one instruction at p; returns capstone's length (0 if it does
 * not decode). */
static unsigned compare_one(const uint8_t *p, size_t avail, uint64_t addr, struct stats *st,
                            bool quiet)
{
    cs_insn *insn;
    size_t n = cs_disasm(cs, p, avail, addr, 1, &insn);
    unsigned clen;
    bool impl;
    int elen;

    if (!n)
        return 0;
    clen = insn[0].size;
    st->total++;
    elen = emu_insn_length_impl(p, (unsigned)(avail < 15 ? avail : 15), EMU_MODE_64, &impl);
    if (elen < 0 || capstone_differs(p, avail)) {
        st->unknown++;
    } else {
        st->compared++;
        st->implemented += impl;
        if ((unsigned)elen != clen) {
            st->mismatched++;
            if (!quiet && st->mismatched <= 12) {
                fprintf(stderr, "length mismatch at %#llx: capstone %u (%s %s), emu %d:",
                        (unsigned long long)addr, clen, insn[0].mnemonic, insn[0].op_str, elen);
                for (unsigned k = 0; k < clen + 2 && k < avail; k++)
                    fprintf(stderr, " %02x", p[k]);
                fprintf(stderr, "\n");
            }
        }
    }
    cs_free(insn, n);
    return clen;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

/* Random instructions: optional prefixes, then a one-byte or 0F opcode,
 * then random ModRM/SIB/displacement/immediate bytes. */
static void test_random_lengths(void **state)
{
    static const uint8_t pfx[] = { 0x66, 0x67, 0xf2, 0xf3, 0x2e, 0x64, 0x65, 0xf0, 0x48, 0x41,
                                   0x4c, 0x40 };
    struct stats st = { 0 };

    for (unsigned k = 0; k < 60000; k++) {
        uint8_t b[16];
        unsigned n = 0, np = (unsigned)(rnd() % 4);

        for (unsigned j = 0; j < np; j++)
            b[n++] = pfx[rnd() % sizeof(pfx)];
        switch (rnd() % 4) {
        case 0:
            b[n++] = 0x0f;
            break;
        case 1:
            b[n++] = 0x0f;
            b[n++] = rnd() & 1 ? 0x38 : 0x3a;
            break;
        }
        while (n < 16)
            b[n++] = (uint8_t)rnd();
        compare_one(b, 16, 0x1000, &st, false);
    }
    printf("decode random: %u decoded by capstone, %u compared, %u unknown to emu, "
           "%u mismatches\n", st.total, st.compared, st.unknown, st.mismatched);
    assert_int_equal(st.mismatched, 0);
    assert_true(st.compared > st.total / 2);
}

/* Walk the executable sections of an ELF file linearly. */
static void scan_elf(const char *path, struct stats *st)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    uint8_t *img;
    const Elf64_Ehdr *eh;

    if (fd < 0)
        return;
    if (fstat(fd, &sb) < 0 || sb.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return;
    }
    img = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (img == MAP_FAILED)
        return;
    eh = (const Elf64_Ehdr *)img;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_machine != EM_X86_64 || eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) >
                                          (uint64_t)sb.st_size)
        goto out;
    for (unsigned s = 0; s < eh->e_shnum; s++) {
        const Elf64_Shdr *sh = (const Elf64_Shdr *)(img + eh->e_shoff) + s;
        uint64_t off = 0;

        if (sh->sh_type != SHT_PROGBITS || !(sh->sh_flags & SHF_EXECINSTR) ||
            sh->sh_offset + sh->sh_size > (uint64_t)sb.st_size)
            continue;
        while (off < sh->sh_size) {
            unsigned len = compare_one(img + sh->sh_offset + off, sh->sh_size - off,
                                       sh->sh_addr + off, st, false);

            off += len ? len : 1;
        }
    }
out:
    munmap(img, (size_t)sb.st_size);
}

static void test_real_code_lengths(void **state)
{
    static const char *const files[] = { "/usr/bin/ls", "/usr/bin/bash", "/usr/bin/gzip",
                                         "/usr/lib/x86_64-linux-gnu/libc.so.6" };
    struct stats st = { 0 };

    for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++)
        scan_elf(files[k], &st);
    printf("decode real code: %u instructions, %u compared, %u unknown to emu, %u "
           "mismatches; executor implements %.1f%% of the compared ones\n",
           st.total, st.compared, st.unknown, st.mismatched,
           st.compared ? 100.0 * st.implemented / st.compared : 0.0);
    assert_true(st.total > 10000);
    assert_int_equal(st.mismatched, 0);
}

/* Decoder edge cases with known answers. */
static void test_decode_edges(void **state)
{
    static const struct {
        const char *what;
        uint8_t b[16];
        unsigned avail;
        int len;
    } cases[] = {
        { "endbr64", { 0xf3, 0x0f, 0x1e, 0xfa }, 4, 4 },
        { "mov rax, imm64", { 0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8 }, 10, 10 },
        { "mov al, moffs64", { 0xa0, 1, 2, 3, 4, 5, 6, 7, 8 }, 9, 9 },
        { "mov al, moffs32 (67)", { 0x67, 0xa0, 1, 2, 3, 4 }, 6, 6 },
        { "rip-relative + imm32", { 0x48, 0x81, 0x05, 0, 0, 0, 0, 1, 2, 3, 4 }, 11, 11 },
        { "66 push imm16", { 0x66, 0x68, 1, 2 }, 4, 4 },
        { "REX then legacy prefix drops REX", { 0x48, 0x66, 0xb8, 1, 2 }, 5, 5 },
        { "enter", { 0xc8, 1, 2, 3 }, 4, 4 },
        { "sib no base", { 0x8b, 0x04, 0x25, 1, 2, 3, 4 }, 7, 7 },
        { "truncated needs more", { 0x48, 0x8b }, 2, -2 },
        { "VEX is not known", { 0xc5, 0xf8, 0x77 }, 3, -1 },
        { "16 bytes of prefixes", { 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
                                    0x66, 0x66, 0x66, 0x66, 0x66, 0x90 }, 16, -1 },
        { "lock on a register is invalid", { 0xf0, 0x01, 0xc0 }, 3, -1 },
    };

    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        int len = emu_insn_length(cases[k].b, cases[k].avail, EMU_MODE_64);

        if (len != cases[k].len)
            fprintf(stderr, "%s: got %d want %d\n", cases[k].what, len, cases[k].len);
        assert_int_equal(len, cases[k].len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_edges),
        cmocka_unit_test(test_random_lengths),
        cmocka_unit_test(test_real_code_lengths),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
