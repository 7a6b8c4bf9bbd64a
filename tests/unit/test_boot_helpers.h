/* Shared fixture for the boot loader tests (test_boot_*.c): a real machine
 * from machine_init() with two vCPUs in their reset state, files in a
 * private temporary directory, and a page-table walker to check what the
 * guest will see at entry. */
#ifndef VMON_TEST_BOOT_HELPERS_H
#define VMON_TEST_BOOT_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "boot/boot.h"
#include "config/config.h"
#include "machine/machine.h"

#define FX_MAX_FILES 8

struct boot_fx {
    struct vm_config cfg;
    struct machine m;
    struct vcpu bsp, ap;
    struct cpu_state ap_reset;     /* what the AP must still look like */
    char dir[64];
    char files[FX_MAX_FILES][128];
    int nr_files;
    char initrd_list[512];
};

static inline struct boot_fx *fx_new(uint64_t ram)
{
    struct boot_fx *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    strcpy(fx->dir, "/tmp/vmon-boot-test-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    fx->cfg.ram_size = ram;
    fx->cfg.smp = 2;
    assert_int_equal(machine_init(&fx->m, &fx->cfg), 0);
    cpu_state_reset(&fx->bsp.state, 0, true);
    cpu_state_reset(&fx->ap.state, 1, false);
    /* A recognisable local APIC page: boot_load must leave it alone. */
    memset(fx->bsp.state.lapic, 0x5a, sizeof(fx->bsp.state.lapic));
    fx->ap_reset = fx->ap.state;
    fx->bsp.m = fx->ap.m = &fx->m;
    fx->ap.index = 1;
    fx->m.vcpus[0] = &fx->bsp;
    fx->m.vcpus[1] = &fx->ap;
    fx->m.nr_vcpus = 2;
    return fx;
}

static inline void fx_free(struct boot_fx *fx)
{
    for (int i = 0; i < fx->nr_files; i++)
        unlink(fx->files[i]);
    rmdir(fx->dir);
    fx->m.vcpus[0] = fx->m.vcpus[1] = NULL;
    fx->m.nr_vcpus = 0;
    machine_destroy(&fx->m);
    free(fx);
}

/* Write a file into the fixture's directory; returns its path. */
static inline const char *fx_file(struct boot_fx *fx, const char *name, const void *data,
                                  size_t len)
{
    char *path;
    FILE *f;

    assert_true(fx->nr_files < FX_MAX_FILES);
    path = fx->files[fx->nr_files++];
    snprintf(path, sizeof(fx->files[0]), "%s/%s", fx->dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* A sparse file of the given size (fast, even if huge). */
static inline const char *fx_sparse_file(struct boot_fx *fx, const char *name, uint64_t size)
{
    const char *path = fx_file(fx, name, NULL, 0);

    assert_int_equal(truncate(path, (off_t)size), 0);
    return path;
}

static inline uint8_t *fx_ram(struct boot_fx *fx, uint64_t gpa, uint64_t len)
{
    uint8_t *p = machine_gpa_to_hva(&fx->m, gpa, len);

    assert_non_null(p);
    return p;
}

static inline uint16_t fx_r16(struct boot_fx *fx, uint64_t gpa)
{
    uint16_t v;
    memcpy(&v, fx_ram(fx, gpa, 2), 2);
    return v;
}

static inline uint32_t fx_r32(struct boot_fx *fx, uint64_t gpa)
{
    uint32_t v;
    memcpy(&v, fx_ram(fx, gpa, 4), 4);
    return v;
}

static inline uint64_t fx_r64(struct boot_fx *fx, uint64_t gpa)
{
    uint64_t v;
    memcpy(&v, fx_ram(fx, gpa, 8), 8);
    return v;
}

static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Translate va through 4-level paging from cr3, as the CPU would; returns
 * UINT64_MAX if not present. */
static inline uint64_t fx_walk(struct boot_fx *fx, uint64_t cr3, uint64_t va)
{
    uint64_t table = cr3 & ~0xfffULL;
    const uint64_t addr_mask = 0x000ffffffffff000ULL;

    for (int level = 3; level >= 0; level--) {
        unsigned idx = (va >> (12 + 9 * level)) & 511;
        uint64_t e = fx_r64(fx, table + idx * 8);

        if (!(e & 1))
            return UINT64_MAX;
        if (level == 3 && (e & 0x80))
            return UINT64_MAX;  /* PS is reserved in a PML4E */
        if ((level == 1 || level == 2) && (e & 0x80)) {
            uint64_t page = 1ULL << (12 + 9 * level);
            return (e & addr_mask & ~(page - 1)) | (va & (page - 1));
        }
        table = e & addr_mask;
    }
    return table | (va & 0xfff);
}

/* The boot vCPU is in 64-bit mode per the Linux boot protocol. */
static inline void fx_check_long_mode(struct boot_fx *fx, uint64_t rip, uint64_t rsi)
{
    const struct cpu_state *s = &fx->bsp.state;

    assert_int_equal(s->rip, rip);
    assert_int_equal(s->gpr[R_ESI], rsi);
    assert_int_equal(s->rflags, 2);
    assert_true(s->cr0 & X86_CR0_PE);
    assert_true(s->cr0 & X86_CR0_PG);
    assert_true(s->cr4 & X86_CR4_PAE);
    assert_int_equal(s->efer & (X86_EFER_LME | X86_EFER_LMA), X86_EFER_LME | X86_EFER_LMA);
    assert_int_equal(s->seg[S_CS].selector, 0x10);
    assert_int_equal(s->seg[S_CS].l, 1);
    assert_int_equal(s->seg[S_CS].db, 0);
    assert_int_equal(s->seg[S_CS].present, 1);
    for (int i = 0; i < S_NR; i++) {
        if (i == S_CS)
            continue;
        assert_int_equal(s->seg[i].selector, 0x18);
        assert_int_equal(s->seg[i].base, 0);
        assert_int_equal(s->seg[i].limit, 0xffffffff);
    }
    assert_int_equal(s->mp_state, MP_RUNNABLE);
    /* The GDT in RAM says the same as the descriptor caches. */
    assert_int_equal(s->gdt.limit, 31);
    assert_int_equal(fx_r64(fx, s->gdt.base + 0x10), 0x00af9b000000ffffULL);
    assert_int_equal(fx_r64(fx, s->gdt.base + 0x18), 0x00cf93000000ffffULL);
    /* Identity map: the entry point, the zero page, the top of 4 GiB. */
    assert_int_equal(fx_walk(fx, s->cr3, rip), rip);
    assert_int_equal(fx_walk(fx, s->cr3, rsi), rsi);
    assert_int_equal(fx_walk(fx, s->cr3, 0x20000), 0x20000);
    assert_int_equal(fx_walk(fx, s->cr3, 0xfffff123ULL), 0xfffff123ULL);
    /* The page tables must not sit where the kernel could scribble first:
     * they are below 1 MiB. */
    assert_true(s->cr3 < 0x100000);
}

/* Everything but the boot vCPU stays as reset left it; the BSP keeps its
 * local APIC and APIC base. */
static inline bool fx_untouched(struct boot_fx *fx)
{
    uint8_t lapic[X86_LAPIC_REGS_SIZE];

    memset(lapic, 0x5a, sizeof(lapic));
    return !memcmp(&fx->ap.state, &fx->ap_reset, sizeof(fx->ap_reset)) &&
           !memcmp(fx->bsp.state.lapic, lapic, sizeof(lapic)) &&
           fx->bsp.state.apic_base ==
               (X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE | X86_APIC_BASE_BSP);
}

static inline void fx_check_untouched(struct boot_fx *fx)
{
    assert_true(fx_untouched(fx));
}

/* A failed load must not have started the CPU anywhere. */
static inline bool fx_not_started(struct boot_fx *fx)
{
    struct cpu_state reset;

    cpu_state_reset(&reset, 0, true);
    memset(reset.lapic, 0x5a, sizeof(reset.lapic));
    return !memcmp(&fx->bsp.state, &reset, sizeof(reset)) && fx_untouched(fx);
}

static inline void fx_check_not_started(struct boot_fx *fx)
{
    assert_true(fx_not_started(fx));
}

/* Load many corrupted copies of a valid image: random bytes and 32-bit
 * words overwritten in [lo, hi).  Each load either succeeds with the boot
 * vCPU entering inside RAM, or fails leaving the vCPU unstarted; ASan and
 * UBSan watch for everything else.  The loads' error messages go to a log
 * file, not the test output; a mutant that misbehaves is kept for replay.
 * Returns how many loads succeeded. */
static inline int fx_mutation_run(struct boot_fx *fx, const uint8_t *image, size_t len,
                                  size_t lo, size_t hi, int iterations, uint64_t seed)
{
    uint8_t *copy = malloc(len);
    char path[160], log_path[160];
    int ok = 0, bad = -1, saved_stderr, log_fd;

    assert_non_null(copy);
    assert_true(lo < hi && hi <= len);
    snprintf(path, sizeof(path), "%s/mutant", fx->dir);
    snprintf(log_path, sizeof(log_path), "%s/mutant-errors.log", fx->dir);
    fx->cfg.kernel = path;
    fprintf(stderr, "(%d corrupted images: their error messages go to %s)\n", iterations,
            log_path);
    fflush(stderr);
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(log_fd >= 0);
    saved_stderr = dup(2);
    assert_true(saved_stderr >= 0);
    dup2(log_fd, 2);
    for (int it = 0; it < iterations && bad < 0; it++) {
        int changes = 1 + (int)(seed % 4);
        FILE *f;

        memcpy(copy, image, len);
        for (int c = 0; c < changes; c++) {
            size_t off;

            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            off = lo + (size_t)(seed % (hi - lo));
            if ((seed >> 32) & 1 && off + 4 <= hi) {
                uint32_t v = (uint32_t)(seed >> 24);

                if ((seed >> 33) & 1)
                    v = (seed >> 34) & 1 ? 0xffffffffu : 0;
                memcpy(copy + (off & ~(size_t)3), &v, 4);
            } else {
                copy[off] = (uint8_t)(seed >> 40);
            }
        }
        f = fopen(path, "wb");
        if (!f || fwrite(copy, 1, len, f) != len || fclose(f)) {
            bad = it;
            break;
        }
        cpu_state_reset(&fx->bsp.state, 0, true);
        memset(fx->bsp.state.lapic, 0x5a, sizeof(fx->bsp.state.lapic));
        if (boot_load(&fx->m) == 0) {
            ok++;
            if (!machine_gpa_to_hva(&fx->m, fx->bsp.state.rip, 1) ||
                fx->bsp.state.mp_state != MP_RUNNABLE || !fx_untouched(fx))
                bad = it;
        } else if (!fx_not_started(fx)) {
            bad = it;
        }
    }
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(log_fd);
    free(copy);
    if (bad >= 0)
        fprintf(stderr, "corrupted image %d misbehaved; kept as %s\n", bad, path);
    assert_int_equal(bad, -1);
    unlink(path);
    unlink(log_path);
    return ok;
}

#endif
