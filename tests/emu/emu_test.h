/* A tiny machine for emulator unit tests: guest RAM only (no devices), a
 * 64-bit long-mode vCPU and 4-level page tables built in guest RAM.
 * Header-only so each test binary stays one file plus libvmon.a. */
#ifndef VMON_TESTS_EMU_TEST_H
#define VMON_TESTS_EMU_TEST_H

#include <stdlib.h>
#include <string.h>

#include "emu/emu.h"

#define EMU_TM_PT_BASE 0x1000ULL   /* page tables are allocated upwards from here */
#define EMU_TM_PT_END 0x80000ULL

#define EMU_TM_P 1ULL
#define EMU_TM_W 2ULL
#define EMU_TM_U 4ULL
#define EMU_TM_NX (1ULL << 63)

struct emu_tm {
    struct machine m;
    struct cpu_state s;
    struct emu_cache *cache;
    struct emu_cpu c;
    gpa_t pt_next;
};

static inline uint64_t *emu_tm_pte(struct emu_tm *t, gpa_t table, unsigned idx)
{
    return (uint64_t *)(t->m.ram + table + idx * 8);
}

/* Map [va, va+len) to [pa, pa+len) with 4 KiB pages and the given leaf
 * flags (intermediate levels are P|W|U). */
static inline void emu_tm_map(struct emu_tm *t, uint64_t va, gpa_t pa, uint64_t len,
                              uint64_t flags)
{
    for (uint64_t off = 0; off < len; off += 0x1000) {
        gpa_t table = t->s.cr3 & ~0xfffULL;
        uint64_t a = va + off;

        for (int level = 4; level > 1; level--) {
            uint64_t *e = emu_tm_pte(t, table, (a >> (12 + 9 * (level - 1))) & 511);

            if (!(*e & EMU_TM_P)) {
                gpa_t nt = t->pt_next;

                t->pt_next += 0x1000;
                if (t->pt_next > EMU_TM_PT_END)
                    abort();
                memset(t->m.ram + nt, 0, 0x1000);
                *e = nt | EMU_TM_P | EMU_TM_W | EMU_TM_U;
            }
            table = *e & 0x000ffffffffff000ULL;
        }
        *emu_tm_pte(t, table, (a >> 12) & 511) = ((pa + off) & ~0xfffULL) | flags | EMU_TM_P;
    }
}

/* 64-bit code segment at CPL cpl, paging on, NX enabled. */
static inline int emu_tm_init(struct emu_tm *t, uint64_t ram_size, unsigned cpl)
{
    memset(t, 0, sizeof(*t));
    t->m.ram = aligned_alloc(0x1000, ram_size);
    if (!t->m.ram)
        return -1;
    memset(t->m.ram, 0, ram_size);
    t->m.ram_size = ram_size;
    t->m.lowmem_size = ram_size;
    t->pt_next = EMU_TM_PT_BASE + 0x1000;
    t->s.cr3 = EMU_TM_PT_BASE;
    t->s.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_WP | X86_CR0_ET | X86_CR0_NE;
    t->s.cr4 = X86_CR4_PAE | X86_CR4_PGE | X86_CR4_OSFXSR;
    t->s.efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE | X86_EFER_SCE;
    t->s.rflags = X86_RFLAGS_FIXED | X86_RFLAGS_IF;
    for (int i = 0; i < S_NR; i++) {
        struct x86_segment *sg = &t->s.seg[i];

        sg->selector = i == S_CS ? (0x33 & ~3u) | cpl : (0x2b & ~3u) | cpl;
        sg->limit = 0xffffffff;
        sg->present = 1;
        sg->s = 1;
        sg->g = 1;
        sg->dpl = cpl;
        sg->type = i == S_CS ? 0xb : 0x3;
        sg->l = i == S_CS;
        sg->db = i != S_CS;
    }
    t->s.gdt.limit = 0xffff;
    t->cache = emu_cache_new(&t->m);
    if (!t->cache)
        return -1;
    if (emu_cpu_init(&t->c, &t->s, &t->m, t->cache) < 0)
        return -1;
    t->c.deliver_exceptions = false;
    return 0;
}

static inline void emu_tm_destroy(struct emu_tm *t)
{
    emu_cpu_destroy(&t->c);
    emu_cache_free(t->cache);
    free(t->m.ram);
}

#endif
