/* The CPU state a kernel is entered with: a flat GDT in guest RAM (so the
 * kernel can reload segments from it), identity-mapped page tables for
 * 64-bit entry, and the register values.  Both protocols use selector 0x10
 * for code and 0x18 for data: Linux's __BOOT_CS/__BOOT_DS. */
#include <errno.h>
#include <stdlib.h>

#include "boot/loader.h"
#include "util/log.h"

#define GDT_ENTRIES 4
#define GDT_CODE64 0x00af9b000000ffffULL /* base 0, limit 4G, G, L, P, DPL0, code r/x */
#define GDT_CODE32 0x00cf9b000000ffffULL /* base 0, limit 4G, G, D, P, DPL0, code r/x */
#define GDT_DATA 0x00cf93000000ffffULL   /* base 0, limit 4G, G, B, P, DPL0, data r/w */

#define PTE_P (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_PS (1ULL << 7)
#define PT_ENTRIES 512

static int place_gdt(struct boot_plan *p, uint64_t code)
{
    uint8_t *gdt = calloc(GDT_ENTRIES, 8);

    if (!gdt)
        return -ENOMEM;
    boot_put64(gdt + BOOT_SEL_CODE, code);
    boot_put64(gdt + BOOT_SEL_DATA, GDT_DATA);
    return boot_place(p, &p->kernel, "GDT", BOOT_GDT, GDT_ENTRIES * 8, gdt, GDT_ENTRIES * 8,
                      false, gdt);
}

static gpa_t pd_address(unsigned gib)
{
    return gib < BOOT_PD_LOW_COUNT ? BOOT_PD_LOW + gib * 0x1000ULL
                                   : BOOT_PD_HIGH + (gib - BOOT_PD_LOW_COUNT) * 0x1000ULL;
}

/* Page directories of 2 MiB pages mapping GiB first..first+count-1. */
static uint8_t *build_pds(unsigned first, unsigned count)
{
    uint8_t *pd = calloc(count, 0x1000);

    if (!pd)
        return NULL;
    for (unsigned i = 0; i < count * PT_ENTRIES; i++) {
        uint64_t addr = (uint64_t)first * GiB + (uint64_t)i * 2 * MiB;

        boot_put64(pd + i * 8ULL, addr | PTE_P | PTE_RW | PTE_PS);
    }
    return pd;
}

/* Identity map the first 4 GiB (everything the boot protocol needs mapped
 * lives there) and, as far as the page-directory area allows, all RAM above
 * it.  2 MiB pages: our CPUID model has no 1 GiB pages. */
int boot_setup_long_mode(struct boot_plan *p)
{
    struct machine *m = p->m;
    uint64_t top = m->highmem_size ? MACHINE_HIGHMEM_BASE + m->highmem_size : 4 * GiB;
    unsigned nr_pd = (unsigned)MIN((top + GiB - 1) / GiB, (uint64_t)PT_ENTRIES);
    unsigned max_high = (unsigned)((BOOT_LOW_END - BOOT_PD_HIGH) / 0x1000);
    unsigned nr_high;
    uint8_t *pml4, *pdpt, *pd;
    int ret;

    nr_pd = MAX(nr_pd, (unsigned)BOOT_PD_LOW_COUNT);
    nr_high = nr_pd - BOOT_PD_LOW_COUNT;
    if (nr_high > max_high) {
        LOG(LOG_BOOT, "boot: identity map stops at %u GiB; the kernel maps the rest itself\n",
            BOOT_PD_LOW_COUNT + max_high);
        nr_high = max_high;
        nr_pd = BOOT_PD_LOW_COUNT + nr_high;
    }

    ret = place_gdt(p, GDT_CODE64);
    if (ret < 0)
        return ret;

    pml4 = calloc(1, 0x1000);
    if (!pml4)
        return -ENOMEM;
    boot_put64(pml4, BOOT_PDPT | PTE_P | PTE_RW);
    ret = boot_place(p, &p->kernel, "PML4", BOOT_PML4, 0x1000, pml4, 0x1000, false, pml4);
    if (ret < 0)
        return ret;

    pdpt = calloc(1, 0x1000);
    if (!pdpt)
        return -ENOMEM;
    for (unsigned i = 0; i < nr_pd; i++)
        boot_put64(pdpt + i * 8, pd_address(i) | PTE_P | PTE_RW);
    ret = boot_place(p, &p->kernel, "PDPT", BOOT_PDPT, 0x1000, pdpt, 0x1000, false, pdpt);
    if (ret < 0)
        return ret;

    pd = build_pds(0, BOOT_PD_LOW_COUNT);
    if (!pd)
        return -ENOMEM;
    ret = boot_place(p, &p->kernel, "page directories", BOOT_PD_LOW,
                     BOOT_PD_LOW_COUNT * 0x1000ULL, pd, BOOT_PD_LOW_COUNT * 0x1000ULL, false, pd);
    if (ret < 0)
        return ret;

    if (nr_high) {
        pd = build_pds(BOOT_PD_LOW_COUNT, nr_high);
        if (!pd)
            return -ENOMEM;
        ret = boot_place(p, &p->kernel, "page directories", BOOT_PD_HIGH, nr_high * 0x1000ULL,
                         pd, nr_high * 0x1000ULL, false, pd);
        if (ret < 0)
            return ret;
    }

    p->mode = BOOT_ENTRY_LONG64;
    p->cr3 = BOOT_PML4;
    p->gpr[R_ESP] = BOOT_STACK_TOP;
    return 0;
}

int boot_setup_prot32(struct boot_plan *p)
{
    int ret = place_gdt(p, GDT_CODE32);

    if (ret < 0)
        return ret;
    p->mode = BOOT_ENTRY_PROT32;
    p->cr3 = 0;
    p->gpr[R_ESP] = BOOT_STACK_TOP;
    return 0;
}

/* The descriptor caches must match the GDT entries above: the kernel may
 * never reload a segment before using it. */
static struct x86_segment flat_segment(uint16_t sel, uint8_t type, bool code64)
{
    return (struct x86_segment){
        .base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
        .present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1, .l = code64, .g = 1,
    };
}

/* Only the fields the boot protocols define are set; the rest of the reset
 * state (local APIC, APIC base, MSRs, FPU) stays as cpu_state_reset() left it. */
void boot_apply_entry_state(const struct boot_plan *p, struct cpu_state *s)
{
    bool long_mode = p->mode == BOOT_ENTRY_LONG64;

    memcpy(s->gpr, p->gpr, sizeof(s->gpr));
    s->rip = p->rip;
    s->rflags = X86_RFLAGS_FIXED;  /* IF=0: interrupts off */

    s->seg[S_CS] = flat_segment(BOOT_SEL_CODE, 0xb, long_mode);
    for (int i = 0; i < S_NR; i++)
        if (i != S_CS)
            s->seg[i] = flat_segment(BOOT_SEL_DATA, 0x3, false);
    /* VM entry wants a busy TSS in TR and a usable LDT cache even though
     * neither selector points into our GDT. */
    s->tr = (struct x86_segment){ .limit = 0xffff, .type = 0xb, .present = 1 };
    s->ldt = (struct x86_segment){ .limit = 0xffff, .type = 0x2, .present = 1 };
    s->gdt = (struct x86_dtable){ .base = BOOT_GDT, .limit = GDT_ENTRIES * 8 - 1 };

    if (long_mode) {
        s->cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
        s->cr3 = p->cr3;
        s->cr4 = X86_CR4_PAE;
        s->efer = X86_EFER_LME | X86_EFER_LMA;
    } else {
        s->cr0 = X86_CR0_PE | X86_CR0_ET;
        s->cr3 = 0;
        s->cr4 = 0;
        s->efer = 0;
    }
    s->cr2 = 0;
    s->mp_state = MP_RUNNABLE;
}
