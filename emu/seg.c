/* Segmentation: descriptor loads for the data and stack segment registers.
 * Real mode and virtual-8086 take the "base = selector << 4" path (real
 * mode keeps the hidden limit and attributes, vm86 sets its fixed ones).
 * SDM vol. 3, 3.4-3.5, 5.5-5.8 and 20.2. */
#include "emu/seg.h"

void emu_seg_from_desc(struct x86_segment *sg, uint16_t sel, uint64_t d)
{
    uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));

    sg->selector = sel;
    sg->base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
    sg->type = (d >> 40) & 15;
    sg->s = (d >> 44) & 1;
    sg->dpl = (d >> 45) & 3;
    sg->present = (d >> 47) & 1;
    sg->avl = (d >> 52) & 1;
    sg->l = (d >> 53) & 1;
    sg->db = (d >> 54) & 1;
    sg->g = (d >> 55) & 1;
    sg->limit = sg->g ? (limit << 12) | 0xfff : limit;
    sg->unusable = 0;
}

void emu_seg_vm86(struct x86_segment *sg, uint16_t sel, bool code)
{
    sg->selector = sel;
    sg->base = (uint64_t)sel << 4;
    sg->limit = 0xffff;
    sg->type = code ? 0xb : 0x3;
    sg->s = 1;
    sg->dpl = 3;
    sg->present = 1;
    sg->avl = 0;
    sg->l = 0;
    sg->db = 0;
    sg->g = 0;
    sg->unusable = 0;
}

uint64_t emu_sys_read(struct emu_cpu *c, uint64_t la, unsigned size)
{
    uint8_t idx = c->mmu_idx;
    uint64_t v;

    c->mmu_idx = 0;
    v = emu_read_la(c, la, size);
    c->mmu_idx = idx;
    return v;
}

void emu_sys_write(struct emu_cpu *c, uint64_t la, unsigned size, uint64_t v)
{
    uint8_t idx = c->mmu_idx;

    c->mmu_idx = 0;
    emu_write_la(c, la, size, v);
    c->mmu_idx = idx;
}

uint64_t emu_read_descriptor(struct emu_cpu *c, uint16_t sel, uint64_t *la_out)
{
    struct cpu_state *s = c->s;
    uint64_t base, limit, off = sel & ~7u;

    if (sel & 4) {
        if (s->ldt.unusable || !s->ldt.present)
            emu_fault_err(c, EXC_GP, sel & ~3u);
        base = s->ldt.base;
        limit = s->ldt.limit;
    } else {
        base = s->gdt.base;
        limit = s->gdt.limit;
    }
    if (off + 7 > limit)
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if (c->mode != EMU_MODE_64)
        base = (uint32_t)base;
    *la_out = base + off;
    return emu_sys_read(c, base + off, 8);
}

void emu_load_seg(struct emu_cpu *c, unsigned sr, uint16_t sel)
{
    struct cpu_state *s = c->s;
    struct x86_segment *sg = &s->seg[sr];
    unsigned rpl = sel & 3, dpl;
    uint64_t d, la;

    if (s->rflags & X86_RFLAGS_VM) {
        emu_seg_vm86(sg, sel, false);
        return;
    }
    if (c->mode == EMU_MODE_REAL) {
        sg->selector = sel;
        sg->base = (uint64_t)sel << 4;
        sg->present = 1;
        sg->unusable = 0;
        return;
    }
    if ((sel & ~3u) == 0) {
        if (sr == S_SS && (c->mode != EMU_MODE_64 || c->cpl == 3 || rpl != c->cpl))
            emu_fault_err(c, EXC_GP, 0);
        sg->selector = sel;
        sg->unusable = 1;
        sg->present = 0;
        if (c->mode != EMU_MODE_64)
            sg->base = 0;
        if (sr == S_SS)
            sg->dpl = rpl;
        return;
    }
    d = emu_read_descriptor(c, sel, &la);
    dpl = (d >> 45) & 3;
    if (!((d >> 44) & 1))
        emu_fault_err(c, EXC_GP, sel & ~3u);  /* system descriptor */
    if (sr == S_SS) {
        /* Writable data, RPL = DPL = CPL. */
        if ((d >> 43) & 1 || !((d >> 41) & 1) || rpl != c->cpl || dpl != c->cpl)
            emu_fault_err(c, EXC_GP, sel & ~3u);
        if (!((d >> 47) & 1))
            emu_fault_err(c, EXC_SS, sel & ~3u);
    } else {
        bool code = (d >> 43) & 1, readable = (d >> 41) & 1, conforming = (d >> 42) & 1;

        if (code && !readable)
            emu_fault_err(c, EXC_GP, sel & ~3u);
        if ((!code || !conforming) && (dpl < rpl || dpl < c->cpl))
            emu_fault_err(c, EXC_GP, sel & ~3u);
        if (!((d >> 47) & 1))
            emu_fault_err(c, EXC_NP, sel & ~3u);
    }
    if (!((d >> 40) & 1)) {
        d |= 1ULL << 40;
        emu_sys_write(c, la + 5, 1, (d >> 40) & 0xff);
    }
    emu_seg_from_desc(sg, sel, d);
    if (sr == S_SS)
        emu_update_mode(c);
}

uint64_t emu_tss_read(struct emu_cpu *c, unsigned off, unsigned size, uint32_t ext)
{
    const struct x86_segment *tr = &c->s->tr;

    if (!tr->present || off + size - 1 > tr->limit)
        emu_fault_err(c, EXC_TS, (tr->selector & ~3u) | ext);
    return emu_sys_read(c, tr->base + off, size);
}

uint64_t emu_ret_ss_desc(struct emu_cpu *c, uint16_t sel, unsigned rpl, bool to_64bit)
{
    uint64_t d, la;

    if ((sel & ~3u) == 0) {
        if (!(c->mode == EMU_MODE_64 && to_64bit && rpl != 3))
            emu_fault_err(c, EXC_GP, 0);
        return 0;
    }
    if ((sel & 3) != rpl)
        emu_fault_err(c, EXC_GP, sel & ~3u);
    d = emu_read_descriptor(c, sel, &la);
    if (!((d >> 44) & 1) || ((d >> 43) & 1) || !((d >> 41) & 1) || ((d >> 45) & 3) != rpl)
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_SS, sel & ~3u);
    return d;
}

void emu_load_ss_checked(struct emu_cpu *c, uint16_t sel, uint64_t d, unsigned cpl)
{
    struct x86_segment *ss = &c->s->seg[S_SS];

    if ((sel & ~3u) == 0) {
        ss->selector = sel;
        ss->unusable = 1;
        ss->present = 0;
        ss->base = 0;
    } else {
        emu_seg_from_desc(ss, sel, d);
    }
    ss->dpl = cpl;
}

void emu_null_inaccessible_segs(struct emu_cpu *c)
{
    static const unsigned segs[] = { S_ES, S_DS, S_FS, S_GS };

    for (unsigned k = 0; k < 4; k++) {
        struct x86_segment *sg = &c->s->seg[segs[k]];
        bool conf_code = sg->s && (sg->type & 0xc) == 0xc;

        if (!sg->unusable && !conf_code && sg->dpl < c->cpl) {
            sg->selector = 0;
            sg->unusable = 1;
            sg->present = 0;
        }
    }
}

/* Alignment checking (SDM vol. 3, 6.15 #AC): for CPL-3 data accesses when
 * CR0.AM and RFLAGS.AC are both set.  Linux keeps AM set and AC clear in
 * user mode, so this flips (and flushes the TLB) only when a program
 * sets AC. */
void emu_ac_update(struct emu_cpu *c)
{
    const struct cpu_state *s = c->s;
    bool on = (s->cr0 & X86_CR0_AM) && (s->rflags & X86_RFLAGS_AC) && c->cpl == 3;

    if (on != c->ac_check) {
        c->ac_check = on;
        emu_tlb_flush(c, false);
    }
}
