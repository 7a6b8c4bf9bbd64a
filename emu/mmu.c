/* The soft-MMU: segmentation checks, page walks (4-level long mode, PAE,
 * 2-level 32-bit), the soft-TLB and the slow paths of memory access (page
 * splits, MMIO, writes to pages that hold decoded code).  SDM vol. 3,
 * chapters 3 and 4. */
#include "emu/emu_int.h"
#include "machine/dirty_log.h"

#define PTE_P (1ULL << 0)
#define PTE_W (1ULL << 1)
#define PTE_U (1ULL << 2)
#define PTE_A (1ULL << 5)
#define PTE_D (1ULL << 6)
#define PTE_PS (1ULL << 7)
#define PTE_G (1ULL << 8)
#define PTE_NX (1ULL << 63)

#define PFEC_P (1u << 0)
#define PFEC_W (1u << 1)
#define PFEC_U (1u << 2)
#define PFEC_RSVD (1u << 3)
#define PFEC_I (1u << 4)

#define TAG_FLAGS (EMU_TLB_MMIO | EMU_TLB_NOTDIRTY | EMU_TLB_WATCH)

/* A new TLB state: see emu_cpu.tlb_gen. */
static void tlb_bump(struct emu_cpu *c)
{
    static uint64_t counter;

    c->tlb_gen = __atomic_add_fetch(&counter, 2, __ATOMIC_RELAXED);
}

static void tlb_invalidate(struct emu_cpu *c, struct emu_tlb_entry *e)
{
    e->tag_read = e->tag_write = e->tag_code = EMU_TLB_INVALID;
    emu_tlb_page_of(c, e)->global = 0;
}

void emu_tlb_flush(struct emu_cpu *c, bool keep_global)
{
    struct emu_tlb_entry *base = &c->tlb[0][0];

    tlb_bump(c);
    for (unsigned n = 0; n < c->tlb_nlocal; n++) {
        struct emu_tlb_entry *e = &base[c->tlb_local[n]];
        struct emu_tlb_page *pg = emu_tlb_page_of(c, e);

        /* Refilled as global since it was listed: tlb_global has it. */
        if (!(keep_global && pg->global))
            tlb_invalidate(c, e);
        pg->used &= (uint8_t)~EMU_TLB_LISTED_LOCAL;
    }
    c->tlb_nlocal = 0;
    if (!keep_global) {
        for (unsigned n = 0; n < c->tlb_nglobal; n++) {
            struct emu_tlb_entry *e = &base[c->tlb_global[n]];

            tlb_invalidate(c, e);
            emu_tlb_page_of(c, e)->used = 0;
        }
        c->tlb_nglobal = 0;
    }
    LOG(LOG_MMU, "emu: TLB flush%s\n", keep_global ? " (non-global)" : "");
}

/* Start with every entry invalid and the fill lists empty. */
void emu_tlb_reset(struct emu_cpu *c)
{
    tlb_bump(c);
    for (int k = 0; k < 2; k++) {
        for (unsigned j = 0; j < EMU_TLB_SIZE; j++) {
            struct emu_tlb_entry *e = &c->tlb[k][j];

            tlb_invalidate(c, e);
            emu_tlb_page_of(c, e)->used = 0;
        }
    }
    c->tlb_nlocal = c->tlb_nglobal = 0;
}

void emu_tlb_flush_page(struct emu_cpu *c, gva_t la)
{
    uint64_t page = la & ~0xfffULL;

    tlb_bump(c);
    for (int k = 0; k < 2; k++) {
        struct emu_tlb_entry *e = &c->tlb[k][(la >> 12) & (EMU_TLB_SIZE - 1)];

        if ((e->tag_read & ~0xfffULL) == page || (e->tag_write & ~0xfffULL) == page ||
            (e->tag_code & ~0xfffULL) == page)
            tlb_invalidate(c, e);
    }
}

static void mmu_set_bits(uint64_t *pte, uint64_t bits)
{
    if ((__atomic_load_n(pte, __ATOMIC_RELAXED) & bits) != bits)
        __atomic_fetch_or(pte, bits, __ATOMIC_RELAXED);
}

__attribute__((noreturn)) static void mmu_page_fault(struct emu_cpu *c, uint64_t la,
                                                     uint32_t err)
{
    LOG(LOG_MMU, "emu: #PF la=%#llx err=%#x rip=%#llx\n", (unsigned long long)la, err,
        (unsigned long long)c->insn_rip);
    c->s->cr2 = la;
    emu_fault_err(c, EXC_PF, err);
}

/* Read a paging-structure entry; a table outside RAM reads as not
 * present (hardware would read whatever the bus returns: all ones would be
 * worse, as it sets reserved bits). */
static uint64_t *mmu_entry(struct emu_cpu *c, gpa_t gpa, unsigned size)
{
    return machine_gpa_to_hva(c->m, gpa, size);
}

struct mmu_walk {
    gpa_t gpa;      /* physical address of the 4 KiB page */
    bool w, u, nx, g, dirty;
};

/* Walk the page tables for la; on failure raise #PF. */
static void mmu_walk(struct emu_cpu *c, uint64_t la, enum emu_access acc, bool user,
                     struct mmu_walk *out)
{
    struct cpu_state *s = c->s;
    bool nxe = s->efer & X86_EFER_NXE;
    uint64_t rsvd_phys = ~0ULL << c->phys_bits & ((1ULL << 52) - 1);
    uint32_t err = (acc == ACC_WRITE ? PFEC_W : 0) | (user ? PFEC_U : 0) |
                   (acc == ACC_EXEC && nxe ? PFEC_I : 0);
    bool w = true, u = true, nx = false;
    uint64_t *ptes[5];
    int nptes = 0;
    uint64_t pte = 0, page_gpa = 0;
    uint64_t *leaf;

    if (s->cr4 & X86_CR4_PAE) {
        bool lm = s->efer & X86_EFER_LMA;
        int level = lm ? 4 : 3;
        gpa_t table = lm ? s->cr3 & 0x000ffffffffff000ULL : s->cr3 & 0xffffffe0ULL;

        while (level >= 1) {
            unsigned shift = 12 + 9 * (level - 1);
            unsigned idx = level == 3 && !lm ? (la >> 30) & 3 : (la >> shift) & 511;
            uint64_t *p = mmu_entry(c, table + idx * 8, 8);
            uint64_t rsvd = rsvd_phys;

            if (!p)
                mmu_page_fault(c, la, err);
            pte = __atomic_load_n(p, __ATOMIC_RELAXED);
            if (!(pte & PTE_P))
                mmu_page_fault(c, la, err);
            if (!nxe)
                rsvd |= PTE_NX;
            if (level == 3 && !lm)
                rsvd |= 0x1e6ULL | PTE_NX;  /* PAE PDPTE: no R/W, U/S, A, NX */
            if (level == 4)
                rsvd |= PTE_PS;
            if (pte & PTE_PS) {
                if (level == 3 && lm)
                    rsvd |= 0x3fffe000ULL;
                else if (level == 2)
                    rsvd |= 0x1fe000ULL;
            }
            if (pte & rsvd)
                mmu_page_fault(c, la, err | PFEC_P | PFEC_RSVD);
            if (!(level == 3 && !lm)) {
                w = w && (pte & PTE_W);
                u = u && (pte & PTE_U);
                nx = nx || (nxe && (pte & PTE_NX));
            }
            ptes[nptes++] = p;
            if (level == 1 || ((pte & PTE_PS) && level <= (lm ? 3 : 2))) {
                uint64_t mask = (1ULL << shift) - 1;

                page_gpa = (pte & 0x000ffffffffff000ULL & ~mask) | (la & mask & ~0xfffULL);
                break;
            }
            table = pte & 0x000ffffffffff000ULL;
            level--;
        }
    } else {
        uint32_t *pde = (uint32_t *)mmu_entry(c, (s->cr3 & 0xfffff000ULL) + ((la >> 22) & 1023) * 4, 4);
        uint32_t e;

        if (!pde)
            mmu_page_fault(c, la, err);
        e = __atomic_load_n(pde, __ATOMIC_RELAXED);
        if (!(e & PTE_P))
            mmu_page_fault(c, la, err);
        w = e & PTE_W;
        u = e & PTE_U;
        ptes[nptes++] = (uint64_t *)pde;
        if ((e & PTE_PS) && (s->cr4 & X86_CR4_PSE)) {
            page_gpa = (e & 0xffc00000ULL) | ((uint64_t)((e >> 13) & 0xff) << 32) |
                       (la & 0x3ff000ULL);
            pte = e;
        } else {
            uint32_t *pt = (uint32_t *)mmu_entry(c, (e & 0xfffff000ULL) + ((la >> 12) & 1023) * 4, 4);

            if (!pt)
                mmu_page_fault(c, la, err);
            e = __atomic_load_n(pt, __ATOMIC_RELAXED);
            if (!(e & PTE_P))
                mmu_page_fault(c, la, err);
            w = w && (e & PTE_W);
            u = u && (e & PTE_U);
            ptes[nptes++] = (uint64_t *)pt;
            page_gpa = e & 0xfffff000ULL;
            pte = e;
        }
    }

    /* Permission checks (no SMEP/SMAP: not advertised). */
    if (user && !u)
        mmu_page_fault(c, la, err | PFEC_P);
    if (acc == ACC_WRITE && !w && (user || (s->cr0 & X86_CR0_WP)))
        mmu_page_fault(c, la, err | PFEC_P);
    if (acc == ACC_EXEC && nx)
        mmu_page_fault(c, la, err | PFEC_P);

    /* Accessed on every level, dirty on the leaf for writes.  32-bit
     * entries are updated through their own 4-byte words. */
    leaf = ptes[nptes - 1];
    for (int k = 0; k < nptes; k++) {
        if (s->cr4 & X86_CR4_PAE)
            mmu_set_bits(ptes[k], PTE_A | (k == nptes - 1 && acc == ACC_WRITE ? PTE_D : 0));
        else {
            uint32_t bits = PTE_A | (k == nptes - 1 && acc == ACC_WRITE ? PTE_D : 0);
            uint32_t *p32 = (uint32_t *)ptes[k];

            if ((__atomic_load_n(p32, __ATOMIC_RELAXED) & bits) != bits)
                __atomic_fetch_or(p32, bits, __ATOMIC_RELAXED);
        }
    }
    (void)leaf;
    if (unlikely(dirty_log_active(c->m)))
        for (int k = 0; k < nptes; k++)
            dirty_log_mark_hva(c->m, ptes[k], 8);
    out->gpa = page_gpa;
    out->w = w;
    out->u = u;
    out->nx = nx;
    out->g = (pte & PTE_G) && (s->cr4 & X86_CR4_PGE);
    out->dirty = acc == ACC_WRITE || (pte & PTE_D);
}

static bool mmu_canonical(uint64_t la)
{
    return (uint64_t)((int64_t)(la << 16) >> 16) == la;
}

/* Fill the TLB entry for la so that acc hits, or raise the fault. */
static struct emu_tlb_entry *mmu_fill(struct emu_cpu *c, uint64_t la, enum emu_access acc)
{
    struct cpu_state *s = c->s;
    struct emu_tlb_entry *e = emu_tlb_entry(c, la);
    struct emu_tlb_page *pg = emu_tlb_page_of(c, e);
    bool user = c->mmu_idx == 1;
    uint64_t page = la & ~0xfffULL;
    struct mmu_walk w;
    bool can_write;
    uint8_t *host;
    uint64_t flags = 0;

    c->stats.tlb_misses++;
    tlb_bump(c);

    if (c->mode == EMU_MODE_64 && !mmu_canonical(la))
        emu_fault_err(c, EXC_GP, 0);
    if (s->cr0 & X86_CR0_PG) {
        mmu_walk(c, la, acc, user, &w);
    } else {
        w = (struct mmu_walk){ .gpa = page & 0xffffffffULL, .w = true, .u = true, .dirty = true };
    }
    host = machine_gpa_to_hva(c->m, w.gpa, 0x1000);
    if (!host)
        flags = EMU_TLB_MMIO;
    can_write = w.dirty && (user ? w.w : (w.w || !(s->cr0 & X86_CR0_WP)));
    e->tag_read = page | flags;
    e->tag_write = can_write ? page | flags : EMU_TLB_INVALID;
    /* Live migration: every write takes the slow path to be logged. */
    if (can_write && host &&
        (emu_cache_page_has_code(c->cache, w.gpa) || dirty_log_active(c->m)))
        e->tag_write |= EMU_TLB_NOTDIRTY;
    if (unlikely(c->dbg_data | c->ac_check)) {
        /* Accesses to a page with a data breakpoint take the slow path,
         * which reports hits (emu/debug.c); with alignment checking on,
         * all user accesses do (emu_ac_check). */
        unsigned wb = emu_debug_page_watch(c, page);

        if (c->ac_check && user)
            wb = EMU_DEBUG_WATCH_READ | EMU_DEBUG_WATCH_WRITE;

        if (wb & EMU_DEBUG_WATCH_READ)
            e->tag_read |= EMU_TLB_WATCH;
        if ((wb & EMU_DEBUG_WATCH_WRITE) && can_write)
            e->tag_write |= EMU_TLB_WATCH;
    }
    e->tag_code = w.nx ? EMU_TLB_INVALID : page | flags;
    e->addend = host ? (uintptr_t)host - (uintptr_t)page : 0;
    pg->gpa = w.gpa;
    pg->global = w.g;
    if (w.g && !(pg->used & EMU_TLB_LISTED_GLOBAL)) {
        pg->used |= EMU_TLB_LISTED_GLOBAL;
        c->tlb_global[c->tlb_nglobal++] = (uint16_t)(e - &c->tlb[0][0]);
    } else if (!w.g && !(pg->used & EMU_TLB_LISTED_LOCAL)) {
        pg->used |= EMU_TLB_LISTED_LOCAL;
        c->tlb_local[c->tlb_nlocal++] = (uint16_t)(e - &c->tlb[0][0]);
    }
    LOG(LOG_MMU, "emu: TLB fill la=%#llx -> gpa=%#llx%s%s%s\n", (unsigned long long)page,
        (unsigned long long)w.gpa, can_write ? " w" : "", w.nx ? " nx" : "",
        host ? "" : " mmio");
    return e;
}

gpa_t emu_translate(struct emu_cpu *c, uint64_t la, enum emu_access acc, uint8_t **hostp)
{
    struct emu_tlb_entry *e = emu_tlb_entry(c, la);
    uint64_t page = la & ~0xfffULL;
    uint64_t tag = acc == ACC_READ ? e->tag_read : acc == ACC_WRITE ? e->tag_write : e->tag_code;

    if ((tag & ~TAG_FLAGS) != page) {
        e = mmu_fill(c, la, acc);
        tag = acc == ACC_READ ? e->tag_read : acc == ACC_WRITE ? e->tag_write : e->tag_code;
        if ((tag & ~TAG_FLAGS) != page)
            emu_fault_err(c, EXC_GP, 0);  /* cannot happen: fill faults first */
    }
    if (acc == ACC_WRITE && (tag & EMU_TLB_NOTDIRTY)) {
        emu_cache_page_written(c, emu_tlb_page_of(c, e)->gpa);
        if (!dirty_log_mark_gpa(c->m, emu_tlb_page_of(c, e)->gpa, 1))
            e->tag_write &= ~EMU_TLB_NOTDIRTY;
    }
    *hostp = (tag & EMU_TLB_MMIO) ? NULL : (uint8_t *)(uintptr_t)(la + e->addend);
    return emu_tlb_page_of(c, e)->gpa | (la & 0xfff);
}

static uint64_t mmu_mmio_read(struct emu_cpu *c, gpa_t gpa, unsigned size)
{
    uint64_t v = 0;

    vcpu_dispatch_mmio(c->vcpu, c->m, gpa, &v, size, false);
    return v;
}

static void mmu_mmio_write(struct emu_cpu *c, gpa_t gpa, unsigned size, uint64_t v)
{
    vcpu_dispatch_mmio(c->vcpu, c->m, gpa, &v, size, true);
    if (c->io_written)
        c->io_written(c->irq_opaque);
    /* A device may have asked the machine to stop (debug-exit, reset):
     * leave the block so the kick is seen before the next instruction. */
    if (__atomic_load_n(&c->kick, __ATOMIC_RELAXED))
        emu_break_block(c);
}

uint64_t emu_read_slow(struct emu_cpu *c, uint64_t la, unsigned size, enum emu_access acc)
{
    uint8_t *h, *h2;
    gpa_t g, g2;
    unsigned first;
    uint64_t v = 0;

    if (c->mode != EMU_MODE_64)
        la = (uint32_t)la;
    if (acc != ACC_EXEC)
        emu_ac_check(c, la, size);
    if (emu_in_page(la, size)) {
        g = emu_translate(c, la, acc, &h);
        if (unlikely(c->dbg_data) && acc != ACC_EXEC)
            emu_debug_data(c, la, size, false);
        return h ? emu_load_host(h, size) : mmu_mmio_read(c, g, size);
    }
    /* Split across two pages: translate both before reading anything. */
    first = 0x1000 - (la & 0xfff);
    g = emu_translate(c, la, acc, &h);
    g2 = emu_translate(c, c->mode == EMU_MODE_64 ? la + first : (uint32_t)(la + first), acc, &h2);
    if (unlikely(c->dbg_data) && acc != ACC_EXEC)
        emu_debug_data(c, la, size, false);
    for (unsigned k = 0; k < size; k++) {
        uint64_t byte;

        if (k < first)
            byte = h ? h[k] : mmu_mmio_read(c, g + k, 1);
        else
            byte = h2 ? h2[k - first] : mmu_mmio_read(c, g2 + k - first, 1);
        v |= byte << (8 * k);
    }
    return v;
}

void emu_write_slow(struct emu_cpu *c, uint64_t la, unsigned size, uint64_t v)
{
    uint8_t *h, *h2;
    gpa_t g, g2;
    unsigned first;

    if (c->mode != EMU_MODE_64)
        la = (uint32_t)la;
    emu_ac_check(c, la, size);
    if (unlikely(c->dbg_data))
        emu_debug_data(c, la, size, true);  /* pending until the insn completes */
    if (emu_in_page(la, size)) {
        g = emu_translate(c, la, ACC_WRITE, &h);
        if (h)
            emu_store_host(h, size, v);
        else
            mmu_mmio_write(c, g, size, v);
        return;
    }
    first = 0x1000 - (la & 0xfff);
    g = emu_translate(c, la, ACC_WRITE, &h);
    g2 = emu_translate(c, c->mode == EMU_MODE_64 ? la + first : (uint32_t)(la + first),
                       ACC_WRITE, &h2);
    for (unsigned k = 0; k < size; k++) {
        uint8_t byte = v >> (8 * k);

        if (k < first) {
            if (h)
                h[k] = byte;
            else
                mmu_mmio_write(c, g + k, 1, byte);
        } else {
            if (h2)
                h2[k - first] = byte;
            else
                mmu_mmio_write(c, g2 + k - first, 1, byte);
        }
    }
}

void emu_probe_write(struct emu_cpu *c, uint64_t la, unsigned size)
{
    uint8_t *h;

    if (c->mode != EMU_MODE_64)
        la = (uint32_t)la;
    emu_translate(c, la, ACC_WRITE, &h);
    if (!emu_in_page(la, size))
        emu_translate(c, c->mode == EMU_MODE_64 ? la + size - 1 : (uint32_t)(la + size - 1),
                      ACC_WRITE, &h);
}

void *emu_rmw_ptr_slow(struct emu_cpu *c, uint64_t la, unsigned size)
{
    uint8_t *h;

    if (c->mode != EMU_MODE_64)
        la = (uint32_t)la;
    emu_ac_check(c, la, size);
    if (emu_in_page(la, size)) {
        emu_translate(c, la, ACC_WRITE, &h);
        if (unlikely(c->dbg_data))
            emu_debug_data(c, la, size, true);
        return h;
    }
    emu_probe_write(c, la, size);
    return NULL;
}

/* Segmentation outside 64-bit mode: null, type and limit checks. */
uint64_t emu_linear_slow(struct emu_cpu *c, unsigned seg, uint64_t off, unsigned size,
                         enum emu_access acc)
{
    const struct x86_segment *sg = &c->s->seg[seg];
    unsigned vec = seg == S_SS ? EXC_SS : EXC_GP;

    if (c->mode == EMU_MODE_64)
        return seg >= S_FS ? off + sg->base : off;
    if (c->mode != EMU_MODE_REAL) {
        uint64_t last = off + size - 1, max;

        if (sg->unusable || !sg->present)
            emu_fault_err(c, vec, 0);
        if (sg->s && (sg->type & 8)) {              /* code */
            if (acc == ACC_WRITE || (acc == ACC_READ && !(sg->type & 2)))
                emu_fault_err(c, vec, 0);
        } else if (sg->s && acc == ACC_WRITE && !(sg->type & 2)) {
            emu_fault_err(c, vec, 0);
        }
        if (sg->s && !(sg->type & 8) && (sg->type & 4)) {  /* expand-down */
            max = sg->db ? 0xffffffffULL : 0xffffULL;
            if (off <= sg->limit || last > max)
                emu_fault_err(c, vec, 0);
        } else if (last > sg->limit) {
            emu_fault_err(c, vec, 0);
        }
    }
    return (uint32_t)(sg->base + off);
}
