/* Privileged and mode-changing instructions: control and debug registers,
 * descriptor tables, MSRs, SYSCALL/SYSRET, SWAPGS, far transfers (code
 * segments, call gates, returns to outer levels). */
#include "emu/exec_ops.h"
#include "emu/seg.h"
#include "hw/lapic.h"

#define MSR_TSC 0x10
#define MSR_APIC_BASE 0x1b
#define MSR_MTRRCAP 0xfe
#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
#define MSR_MISC_ENABLE 0x1a0
#define MSR_PAT 0x277
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_TSC_DEADLINE 0x6e0
#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103

static inline void priv_check(struct emu_cpu *c)
{
    if (c->cpl)
        emu_fault_err(c, EXC_GP, 0);
}

static bool canonical(uint64_t v)
{
    return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

/* --- control and debug registers ------------------------------------------ */

static void set_cr0(struct emu_cpu *c, uint64_t v)
{
    struct cpu_state *s = c->s;
    uint64_t old = s->cr0;

    if (v >> 32)
        emu_fault_err(c, EXC_GP, 0);
    v |= X86_CR0_ET;
    if (((v & X86_CR0_PG) && !(v & X86_CR0_PE)) || ((v & X86_CR0_NW) && !(v & X86_CR0_CD)))
        emu_fault_err(c, EXC_GP, 0);
    if ((v & X86_CR0_PG) && !(old & X86_CR0_PG) && (s->efer & X86_EFER_LME)) {
        if (!(s->cr4 & X86_CR4_PAE) || s->seg[S_CS].l)
            emu_fault_err(c, EXC_GP, 0);
        s->efer |= X86_EFER_LMA;
    }
    if (!(v & X86_CR0_PG) && (old & X86_CR0_PG) && (s->efer & X86_EFER_LMA)) {
        if (c->mode == EMU_MODE_64)
            emu_fault_err(c, EXC_GP, 0);
        s->efer &= ~X86_EFER_LMA;
    }
    s->cr0 = v;
    if ((old ^ v) & (X86_CR0_PG | X86_CR0_WP | X86_CR0_PE))
        emu_tlb_flush(c, false);
    emu_update_mode(c);
    emu_break_block(c);
}

static void set_cr4(struct emu_cpu *c, uint64_t v)
{
    struct cpu_state *s = c->s;
    uint64_t old = s->cr4;
    uint64_t ok = X86_CR4_VME | X86_CR4_PVI | X86_CR4_TSD | X86_CR4_DE | X86_CR4_PSE |
                  X86_CR4_PAE | X86_CR4_MCE | X86_CR4_PGE | X86_CR4_PCE | X86_CR4_OSFXSR |
                  X86_CR4_OSXMMEXCPT;

    if (v & ~ok)
        emu_fault_err(c, EXC_GP, 0);
    if ((s->efer & X86_EFER_LMA) && !(v & X86_CR4_PAE))
        emu_fault_err(c, EXC_GP, 0);
    s->cr4 = v;
    if ((old ^ v) & (X86_CR4_PGE | X86_CR4_PAE | X86_CR4_PSE))
        emu_tlb_flush(c, false);
    if ((old ^ v) & X86_CR4_DE)
        emu_debug_update(c);  /* I/O breakpoints */
    emu_break_block(c);
}

/* CR8 is the LAPIC's TPR[7:4]: the model keeps PPR and kicks the vCPU when
 * lowering it unmasks a pending interrupt.  Without a LAPIC (unit tests)
 * cpu_state.cr8 is the register. */
static uint64_t priv_get_cr8(struct emu_cpu *c)
{
    uint64_t v;

    if (!c->lapic)
        return c->s->cr8;
    machine_lock();
    v = lapic_get_cr8(c->lapic);
    machine_unlock();
    return v;
}

static void priv_set_cr8(struct emu_cpu *c, uint64_t v)
{
    if (!c->lapic) {
        c->s->cr8 = v;
        return;
    }
    machine_lock();
    lapic_set_cr8(c->lapic, v);
    machine_unlock();
    if (c->io_written)
        c->io_written(c->irq_opaque);
}

/* 0F 20 / 0F 22: MOV r64, CRn / MOV CRn, r64 (ModRM.mod ignored). */
static void mov_cr(struct emu_cpu *c, const struct emu_insn *i)
{
    struct cpu_state *s = c->s;
    unsigned cr = i->reg;
    unsigned size = c->mode == EMU_MODE_64 ? 8 : 4;
    bool to_cr = i->op == 0x22;
    uint64_t v;

    if (i->lock && cr == 0)
        cr = 8;  /* AMD's alternative CR8 encoding */
    if (cr != 0 && cr != 2 && cr != 3 && cr != 4 && cr != 8)
        emu_exec_ud(c, i);
    priv_check(c);
    if (!to_cr) {
        switch (cr) {
        case 0: v = s->cr0; break;
        case 2: v = s->cr2; break;
        case 3: v = s->cr3; break;
        case 4: v = s->cr4; break;
        default: v = priv_get_cr8(c); break;
        }
        emu_set_reg(c, i->rm, size, v);
        return;
    }
    v = emu_reg(c, i->rm, size);
    switch (cr) {
    case 0: set_cr0(c, v); break;
    case 2: s->cr2 = v; break;
    case 3:
        s->cr3 = v;
        emu_tlb_flush(c, true);
        break;
    case 4: set_cr4(c, v); break;
    default:
        if (v & ~15ULL)
            emu_fault_err(c, EXC_GP, 0);
        priv_set_cr8(c, v);
        emu_break_block(c);
        break;
    }
}

EMU_HANDLER(exec_mov_cr)
{
    mov_cr(c, i);
}

EMU_HANDLER(exec_mov_dr)
{
    struct cpu_state *s = c->s;
    unsigned dr = i->reg, size = c->mode == EMU_MODE_64 ? 8 : 4;

    if (dr > 7)
        emu_exec_ud(c, i);
    if ((dr == 4 || dr == 5) && (s->cr4 & X86_CR4_DE))
        emu_exec_ud(c, i);
    priv_check(c);
    emu_debug_mov_dr(c);
    if (dr == 4 || dr == 5)
        dr += 2;
    if (i->op == 0x21) {
        emu_set_reg(c, i->rm, size, s->dr[dr]);
    } else {
        uint64_t v = emu_reg(c, i->rm, size);

        if (dr >= 6 && (v >> 32))
            emu_fault_err(c, EXC_GP, 0);
        if (dr == 6)
            v = (v & 0xe00f) | 0xffff0ff0ULL;
        else if (dr == 7)
            v = (v & ~0xd000ULL) | 0x400;
        s->dr[dr] = v;
        if (dr != 6)
            emu_debug_update(c);
        /* A breakpoint just enabled applies from the next instruction. */
        emu_break_block(c);
    }
}

EMU_HANDLER(exec_clts)
{
    priv_check(c);
    c->s->cr0 &= ~X86_CR0_TS;
}

/* INVD, WBINVD: caches are coherent here. */
EMU_HANDLER(exec_wbinvd)
{
    priv_check(c);
}

/* --- descriptor tables (0F 00, 0F 01) ------------------------------------- */

static void load_dtable(struct emu_cpu *c, const struct emu_insn *i, struct x86_dtable *t)
{
    uint64_t ea = emu_ea(c, i);
    uint16_t limit;
    uint64_t base;

    priv_check(c);
    limit = (uint16_t)emu_read(c, i->seg, ea, 2);
    base = emu_read(c, i->seg, ea + 2, c->mode == EMU_MODE_64 ? 8 : 4);
    if (c->mode != EMU_MODE_64) {
        base &= 0xffffffff;
        if (i->opsize == 2)
            base &= 0xffffff;
    } else if (!canonical(base)) {
        emu_fault_err(c, EXC_GP, 0);
    }
    t->limit = limit;
    t->base = base;
}

static void store_dtable(struct emu_cpu *c, const struct emu_insn *i, const struct x86_dtable *t)
{
    uint64_t ea = emu_ea(c, i);
    unsigned bsize = c->mode == EMU_MODE_64 ? 8 : 4;
    uint64_t la = emu_linear(c, i->seg, ea, 2 + bsize, ACC_WRITE);

    emu_probe_write(c, la, 2 + bsize);
    emu_write(c, i->seg, ea, 2, t->limit);
    emu_write(c, i->seg, ea + 2, bsize, t->base);
}

static void load_ldt_tr(struct emu_cpu *c, const struct emu_insn *i, bool tr)
{
    struct cpu_state *s = c->s;
    uint16_t sel;
    uint64_t d, la, hi = 0;
    unsigned type;
    struct x86_segment *dst = tr ? &s->tr : &s->ldt;

    priv_check(c);
    sel = (uint16_t)op_get_E(c, i, 2);
    if ((sel & ~3u) == 0) {
        if (tr)
            emu_fault_err(c, EXC_GP, 0);
        memset(dst, 0, sizeof(*dst));
        dst->unusable = 1;
        return;
    }
    if (sel & 4)
        emu_fault_err(c, EXC_GP, sel & ~3u);
    d = emu_read_descriptor(c, sel, &la);
    type = (d >> 40) & 15;
    if ((d >> 44) & 1)
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if (tr ? (type != 9 && type != 1) : type != 2)
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_NP, sel & ~3u);
    if (c->s->efer & X86_EFER_LMA) {
        uint64_t la2;

        hi = emu_read_descriptor(c, (uint16_t)(sel + 8), &la2);
    }
    if (tr) {
        /* Mark the TSS busy. */
        emu_sys_write(c, la + 5, 1, ((d >> 40) & 0xff) | 2);
        d |= 2ULL << 40;
    }
    emu_seg_from_desc(dst, sel, d);
    dst->base |= (hi & 0xffffffff) << 32;
}

EMU_HANDLER(exec_grp6)
{
    struct cpu_state *s = c->s;

    if (c->mode == EMU_MODE_REAL || (s->rflags & X86_RFLAGS_VM))
        emu_exec_ud(c, i);
    switch (i->sub) {
    case 0: /* SLDT */
    case 1: /* STR */
        if ((s->cr4 & X86_CR4_UMIP) && c->cpl)
            emu_fault_err(c, EXC_GP, 0);
        op_set_E(c, i, i->mem ? 2 : i->opsize, i->sub ? s->tr.selector : s->ldt.selector);
        return;
    case 2:
        load_ldt_tr(c, i, false);
        return;
    case 3:
        load_ldt_tr(c, i, true);
        return;
    }
    if (i->sub == 4 || i->sub == 5) {
        /* VERR/VERW: ZF says whether the segment is readable/writable
         * from here; a bad selector only clears ZF. */
        uint16_t sel = (uint16_t)op_get_E(c, i, 2);
        uint64_t f = emu_cc_flags(c) & ~X86_RFLAGS_ZF;
        uint64_t limit = (sel & 4) ? s->ldt.limit : s->gdt.limit;
        bool ok = false;

        if ((sel & ~3u) && (sel | 7u) <= limit && (!(sel & 4) || !s->ldt.unusable)) {
            uint64_t la, d = emu_read_descriptor(c, sel, &la);
            unsigned dpl = (d >> 45) & 3;
            bool code = (d >> 43) & 1, conforming = code && ((d >> 42) & 1);

            if ((d >> 44) & 1) {
                bool priv = conforming || (dpl >= c->cpl && dpl >= (sel & 3u));

                ok = priv && (i->sub == 4 ? (!code || ((d >> 41) & 1))
                                          : (!code && ((d >> 41) & 1)));
            }
        }
        emu_cc_set_flags(c, f | (ok ? X86_RFLAGS_ZF : 0));
        return;
    }
    emu_exec_ud(c, i);
}

EMU_HANDLER(exec_grp7)
{
    struct cpu_state *s = c->s;

    if (!i->mem) {
        switch (i->modrm) {
        case 0xf8: /* SWAPGS */
            if (c->mode != EMU_MODE_64)
                emu_exec_ud(c, i);
            priv_check(c);
            {
                uint64_t t = s->seg[S_GS].base;

                s->seg[S_GS].base = s->msr.kernel_gs_base;
                s->msr.kernel_gs_base = t;
            }
            return;
        case 0xf9: /* RDTSCP */
            exec_rdtscp(c, i);
            return;
        case 0xd0: /* XGETBV: XSAVE not advertised */
        default:
            break;
        }
        if (i->sub == 4 || i->sub == 6)
            goto msw;
        emu_exec_ud(c, i);
    }
    switch (i->sub) {
    case 0:
        store_dtable(c, i, &s->gdt);
        return;
    case 1:
        store_dtable(c, i, &s->idt);
        return;
    case 2:
        load_dtable(c, i, &s->gdt);
        return;
    case 3:
        load_dtable(c, i, &s->idt);
        return;
    case 7: /* INVLPG */
        priv_check(c);
        emu_tlb_flush_page(c, emu_linear(c, i->seg, emu_ea(c, i), 1, ACC_READ));
        return;
    case 4:
    case 6:
        goto msw;
    }
    emu_exec_ud(c, i);
msw:
    if (i->sub == 4) { /* SMSW */
        op_set_E(c, i, i->mem ? 2 : i->opsize, s->cr0 & 0xffffffff);
    } else { /* LMSW: PE can be set, not cleared */
        uint64_t v = op_get_E(c, i, 2);

        priv_check(c);
        set_cr0(c, (s->cr0 & ~0xeULL) | (v & 0xf) | (s->cr0 & X86_CR0_PE));
    }
}

/* --- MSRs ------------------------------------------------------------------------ */

/* Fixed-range MTRRs 0x250, 0x258, 0x259, 0x268-0x26f in cpu_state order. */
static int mtrr_fixed_index(uint32_t msr)
{
    if (msr == 0x250)
        return 0;
    if (msr == 0x258 || msr == 0x259)
        return (int)(msr - 0x258 + 1);
    if (msr >= 0x268 && msr <= 0x26f)
        return (int)(msr - 0x268 + 3);
    return -1;
}

static bool msr_read(struct emu_cpu *c, uint32_t msr, uint64_t *v)
{
    struct cpu_state *s = c->s;

    switch (msr) {
    case MSR_TSC: *v = emu_rdtsc(c); return true;
    case MSR_APIC_BASE: *v = s->apic_base; return true;
    case MSR_MTRRCAP: *v = 0x508; return true;  /* 8 variable, fixed, WC */
    case MSR_SYSENTER_CS: *v = s->msr.sysenter_cs; return true;
    case MSR_SYSENTER_ESP: *v = s->msr.sysenter_esp; return true;
    case MSR_SYSENTER_EIP: *v = s->msr.sysenter_eip; return true;
    case MSR_MISC_ENABLE: *v = s->msr.misc_enable; return true;
    case MSR_PAT: *v = s->msr.pat; return true;
    case MSR_MTRR_DEF_TYPE: *v = s->msr.mtrr_def_type; return true;
    case MSR_TSC_DEADLINE: *v = s->msr.tsc_deadline; return true;
    case MSR_EFER: *v = s->efer; return true;
    case MSR_STAR: *v = s->msr.star; return true;
    case MSR_LSTAR: *v = s->msr.lstar; return true;
    case MSR_CSTAR: *v = s->msr.cstar; return true;
    case MSR_SFMASK: *v = s->msr.sfmask; return true;
    case MSR_FS_BASE: *v = s->seg[S_FS].base; return true;
    case MSR_GS_BASE: *v = s->seg[S_GS].base; return true;
    case MSR_KERNEL_GS_BASE: *v = s->msr.kernel_gs_base; return true;
    case MSR_TSC_AUX: *v = s->msr.tsc_aux; return true;
    }
    if (msr >= 0x200 && msr < 0x210) {
        *v = s->msr.mtrr_var[msr - 0x200];
        return true;
    }
    if (mtrr_fixed_index(msr) >= 0) {
        *v = s->msr.mtrr_fixed[mtrr_fixed_index(msr)];
        return true;
    }
    switch (msr) {
    case 0x8b:   /* IA32_BIOS_SIGN_ID: no microcode */
    case 0x3a:   /* IA32_FEATURE_CONTROL: no VMX/SMX */
    case 0x140:  /* MISC_FEATURES_ENABLES */
        *v = 0;
        return true;
    }
    return false;
}

static bool msr_write(struct emu_cpu *c, uint32_t msr, uint64_t v)
{
    struct cpu_state *s = c->s;

    switch (msr) {
    case MSR_TSC: emu_set_tsc(c, v); return true;
    case MSR_APIC_BASE: {
        int r;

        if (!c->lapic) {
            s->apic_base = v;
            return true;
        }
        machine_lock();
        r = lapic_set_base(c->lapic, v);
        machine_unlock();
        if (c->io_written)
            c->io_written(c->irq_opaque);
        return r == 0;  /* -EINVAL: reserved bits or x2APIC: #GP */
    }
    case MSR_SYSENTER_CS: s->msr.sysenter_cs = v; return true;
    case MSR_SYSENTER_ESP: s->msr.sysenter_esp = v; return true;
    case MSR_SYSENTER_EIP: s->msr.sysenter_eip = v; return true;
    case MSR_MISC_ENABLE: s->msr.misc_enable = v; return true;
    case MSR_PAT: s->msr.pat = v; return true;
    case MSR_MTRR_DEF_TYPE: s->msr.mtrr_def_type = v; return true;
    case MSR_TSC_DEADLINE: s->msr.tsc_deadline = v; return true;
    case MSR_EFER: {
        uint64_t ok = X86_EFER_SCE | X86_EFER_LME | X86_EFER_NXE;

        if (v & ~(ok | X86_EFER_LMA))
            return false;
        /* LME cannot change while paging is on; LMA is read-only. */
        if ((s->cr0 & X86_CR0_PG) && ((v ^ s->efer) & X86_EFER_LME))
            return false;
        s->efer = (v & ok) | (s->efer & X86_EFER_LMA);
        emu_tlb_flush(c, false);
        return true;
    }
    case MSR_STAR: s->msr.star = v; return true;
    case MSR_LSTAR:
    case MSR_CSTAR:
    case MSR_FS_BASE:
    case MSR_GS_BASE:
    case MSR_KERNEL_GS_BASE:
        if (!canonical(v))
            return false;
        if (msr == MSR_LSTAR) s->msr.lstar = v;
        else if (msr == MSR_CSTAR) s->msr.cstar = v;
        else if (msr == MSR_FS_BASE) s->seg[S_FS].base = v;
        else if (msr == MSR_GS_BASE) s->seg[S_GS].base = v;
        else s->msr.kernel_gs_base = v;
        return true;
    case MSR_SFMASK: s->msr.sfmask = v & 0xffffffff; return true;
    case MSR_TSC_AUX: s->msr.tsc_aux = v & 0xffffffff; return true;
    }
    if (msr >= 0x200 && msr < 0x210) {
        s->msr.mtrr_var[msr - 0x200] = v;
        return true;
    }
    if (mtrr_fixed_index(msr) >= 0) {
        s->msr.mtrr_fixed[mtrr_fixed_index(msr)] = v;
        return true;
    }
    switch (msr) {
    case 0x8b:   /* writing 0 before CPUID(1) is how the revision is read */
    case 0x140:
        return true;
    }
    return false;
}

EMU_HANDLER(exec_rdmsr)
{
    struct cpu_state *s = c->s;
    uint32_t msr = (uint32_t)s->gpr[R_ECX];
    uint64_t v;

    priv_check(c);
    if (!msr_read(c, msr, &v)) {
        LOG(LOG_UNIMP, "emu: rdmsr %#x not modelled: #GP\n", msr);
        emu_fault_err(c, EXC_GP, 0);
    }
    s->gpr[R_EAX] = (uint32_t)v;
    s->gpr[R_EDX] = v >> 32;
}

EMU_HANDLER(exec_wrmsr)
{
    struct cpu_state *s = c->s;
    uint32_t msr = (uint32_t)s->gpr[R_ECX];
    uint64_t v = (s->gpr[R_EDX] << 32) | (uint32_t)s->gpr[R_EAX];

    priv_check(c);
    if (!msr_write(c, msr, v)) {
        LOG(LOG_UNIMP, "emu: wrmsr %#x <- %#llx not modelled: #GP\n", msr,
            (unsigned long long)v);
        emu_fault_err(c, EXC_GP, 0);
    }
    emu_break_block(c);
}

/* --- SYSCALL / SYSRET ------------------------------------------------------------ */

static void flat_seg(struct x86_segment *sg, uint16_t sel, bool code, bool l, unsigned dpl)
{
    sg->selector = sel;
    sg->base = 0;
    sg->limit = 0xffffffff;
    sg->type = code ? 0xb : 0x3;
    sg->s = 1;
    sg->dpl = dpl;
    sg->present = 1;
    sg->l = l;
    sg->db = !l;
    sg->g = 1;
    sg->avl = 0;
    sg->unusable = 0;
}

EMU_HANDLER(exec_syscall)
{
    struct cpu_state *s = c->s;
    uint16_t sel = (uint16_t)(s->msr.star >> 32) & 0xfffc;

    if (!(s->efer & X86_EFER_SCE) || c->mode != EMU_MODE_64)
        emu_exec_ud(c, i);
    s->gpr[R_ECX] = s->rip;
    s->gpr[R_R11] = emu_get_rflags(c) & ~X86_RFLAGS_RF;
    flat_seg(&s->seg[S_CS], sel, true, true, 0);
    flat_seg(&s->seg[S_SS], (uint16_t)(sel + 8), false, false, 0);
    emu_set_rflags(c, emu_get_rflags(c) & ~s->msr.sfmask & ~X86_RFLAGS_RF);
    s->rip = s->msr.lstar;
    emu_update_mode(c);
}

EMU_HANDLER(exec_sysret)
{
    struct cpu_state *s = c->s;
    uint16_t sel = (uint16_t)(s->msr.star >> 48);

    if (!(s->efer & X86_EFER_SCE) || c->mode != EMU_MODE_64)
        emu_exec_ud(c, i);
    priv_check(c);
    if (i->opsize == 8) {
        if (!canonical(s->gpr[R_ECX]))
            emu_fault_err(c, EXC_GP, 0);
        flat_seg(&s->seg[S_CS], (uint16_t)((sel + 16) | 3), true, true, 3);
        s->rip = s->gpr[R_ECX];
    } else {
        flat_seg(&s->seg[S_CS], (uint16_t)(sel | 3), true, false, 3);
        s->rip = (uint32_t)s->gpr[R_ECX];
    }
    /* SS keeps a flat descriptor; only the selector and DPL change. */
    flat_seg(&s->seg[S_SS], (uint16_t)((sel + 8) | 3), false, false, 3);
    emu_set_rflags(c, (s->gpr[R_R11] & 0x3c7fd7ULL & ~X86_RFLAGS_RF) | X86_RFLAGS_FIXED);
    emu_update_mode(c);
}

/* --- far transfers: code segments, call gates, returns to outer levels ----- */

/* The limit of a code descriptor as its hidden part would have it. */
static uint64_t desc_limit(uint64_t d)
{
    struct x86_segment t;

    emu_seg_from_desc(&t, 0, d);
    return t.limit;
}

/* Write the words of a far CALL's frame (vals[0] pushed first) below sp on
 * the current stack, then move ESP/RSP: a fault leaves nothing changed. */
static void far_push_current(struct emu_cpu *c, unsigned size, const uint64_t *vals, unsigned n)
{
    struct cpu_state *s = c->s;
    uint64_t m = emu_mask(emu_stack_size(c)), sp = s->gpr[R_ESP];

    emu_probe_write(c, emu_linear(c, S_SS, (sp - n * size) & m, n * size, ACC_WRITE), n * size);
    for (unsigned k = 0; k < n; k++) {
        sp = (sp & ~m) | ((sp - size) & m);
        emu_write(c, S_SS, sp & m, size, vals[k]);
    }
    s->gpr[R_ESP] = sp;
}

/* A far CALL/JMP through a call gate (SDM vol. 3, 5.8.3-5.8.6 and vol. 2
 * CALL/JMP): 16- and 32-bit gates in protected mode, 64-bit (16-byte) gates
 * in long mode.  A CALL to a more privileged non-conforming segment
 * switches to the stack the TSS holds for that level and, for 16/32-bit
 * gates, copies the gate's parameter count of words/dwords across. */
static void far_via_gate(struct emu_cpu *c, uint16_t gsel, uint64_t g, bool call)
{
    struct cpu_state *s = c->s;
    bool lm = s->efer & X86_EFER_LMA;
    unsigned type = (g >> 40) & 15, gdpl = (g >> 45) & 3, dpl, new_cpl;
    unsigned size = lm ? 8 : type == 0xc ? 4 : 2;
    uint16_t sel = (g >> 16) & 0xffff, old_cs = s->seg[S_CS].selector;
    uint64_t off = (g & 0xffff) | (size > 2 ? (g >> 32) & 0xffff0000ULL : 0);
    uint64_t d, la, ret = s->rip;
    bool conforming;

    if (lm) {
        uint64_t hi = emu_read_descriptor(c, (uint16_t)(gsel + 8), &la);

        if ((hi >> 40) & 0x1f)
            emu_fault_err(c, EXC_GP, gsel & ~3u);
        off |= (hi & 0xffffffffULL) << 32;
    }
    if (gdpl < c->cpl || gdpl < (gsel & 3u))
        emu_fault_err(c, EXC_GP, gsel & ~3u);
    if (!((g >> 47) & 1))
        emu_fault_err(c, EXC_NP, gsel & ~3u);
    if ((sel & ~3u) == 0)
        emu_fault_err(c, EXC_GP, 0);
    d = emu_read_descriptor(c, sel, &la);
    dpl = (d >> 45) & 3;
    conforming = (d >> 42) & 1;
    if (!((d >> 44) & 1) || !((d >> 43) & 1) || dpl > c->cpl ||
        (lm && (!((d >> 53) & 1) || ((d >> 54) & 1))))
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if (!call && !conforming && dpl != c->cpl)
        emu_fault_err(c, EXC_GP, sel & ~3u);  /* JMP never changes privilege */
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_NP, sel & ~3u);
    if (lm ? !canonical(off) : off > desc_limit(d))
        emu_fault_err(c, EXC_GP, 0);
    new_cpl = call && !conforming ? dpl : c->cpl;

    if (new_cpl < c->cpl) {
        uint64_t old_sp = s->gpr[R_ESP], old_ss = s->seg[S_SS].selector;
        uint64_t nsp, ss_base = 0, ss_mask = ~0ULL, ss_desc = 0;
        uint16_t nss = new_cpl;
        unsigned nparam = lm ? 0 : (g >> 32) & 0x1f;
        uint64_t params[31];

        if (lm) {
            nsp = emu_tss_read(c, 4 + new_cpl * 8, 8, 0);
            if (!canonical(nsp))
                emu_fault_err(c, EXC_SS, 0);
        } else {
            bool tss16 = s->tr.type == 1 || s->tr.type == 3;

            nsp = emu_tss_read(c, tss16 ? 2 + new_cpl * 4 : 4 + new_cpl * 8, tss16 ? 2 : 4, 0);
            nss = (uint16_t)emu_tss_read(c, tss16 ? 4 + new_cpl * 4 : 8 + new_cpl * 8, 2, 0);
            if ((nss & ~3u) == 0)
                emu_fault_err(c, EXC_TS, 0);
            ss_desc = emu_read_descriptor(c, nss, &la);
            if ((nss & 3u) != new_cpl || ((ss_desc >> 45) & 3) != new_cpl ||
                !((ss_desc >> 44) & 1) || ((ss_desc >> 43) & 1) || !((ss_desc >> 41) & 1))
                emu_fault_err(c, EXC_TS, nss & ~3u);
            if (!((ss_desc >> 47) & 1))
                emu_fault_err(c, EXC_SS, nss & ~3u);
            ss_base = ((ss_desc >> 16) & 0xffffff) | ((ss_desc >> 32) & 0xff000000);
            ss_mask = (ss_desc >> 54) & 1 ? 0xffffffffULL : 0xffffULL;
        }
        /* Parameters come from the caller's stack, the lowest first. */
        for (unsigned k = 0; k < nparam; k++) {
            uint64_t m = emu_mask(emu_stack_size(c));

            params[k] = emu_read(c, S_SS, (old_sp + k * size) & m, size);
        }
        {
            uint64_t frame[4 + 31];
            unsigned n = 0;

            frame[n++] = old_ss;
            frame[n++] = old_sp;
            for (unsigned k = nparam; k-- > 0;)
                frame[n++] = params[k];
            frame[n++] = old_cs;
            frame[n++] = ret;
            for (unsigned k = 0; k < n; k++) {
                nsp = (nsp & ~ss_mask) | ((nsp - size) & ss_mask);
                emu_sys_write(c, lm ? nsp : (uint32_t)(ss_base + (nsp & ss_mask)), size,
                              frame[k]);
            }
        }
        /* Commit: nothing below faults. */
        emu_seg_from_desc(&s->seg[S_CS], (uint16_t)((sel & ~3u) | new_cpl), d);
        if (lm) {
            emu_load_ss_checked(c, nss, 0, new_cpl);
        } else {
            emu_seg_from_desc(&s->seg[S_SS], nss, ss_desc);
        }
        s->gpr[R_ESP] = lm ? nsp : (s->gpr[R_ESP] & ~ss_mask) | (nsp & ss_mask);
        if (!lm && ss_mask == 0xffffffffULL)
            s->gpr[R_ESP] = (uint32_t)nsp;
    } else if (call) {
        const uint64_t frame[2] = { old_cs, ret };

        far_push_current(c, size, frame, 2);
        emu_seg_from_desc(&s->seg[S_CS], (uint16_t)((sel & ~3u) | c->cpl), d);
    } else {
        emu_seg_from_desc(&s->seg[S_CS], (uint16_t)((sel & ~3u) | c->cpl), d);
    }
    s->rip = off;
    emu_update_mode(c);
    emu_break_block(c);
}

/* Far JMP/CALL (direct or m16:xx) to sel:off: a code segment at the
 * current privilege, a call gate, or (outside long mode) a task gate or
 * TSS: a hardware task switch (task.c). */
static void far_transfer(struct emu_cpu *c, uint16_t sel, uint64_t off, unsigned size, bool call)
{
    struct cpu_state *s = c->s;
    uint16_t old_cs = s->seg[S_CS].selector;
    uint64_t d, la, ret = s->rip;
    unsigned dpl;

    if (c->mode == EMU_MODE_REAL || (s->rflags & X86_RFLAGS_VM)) {
        if (call) {
            const uint64_t frame[2] = { old_cs, ret };

            far_push_current(c, size, frame, 2);
        }
        if (s->rflags & X86_RFLAGS_VM) {
            emu_seg_vm86(&s->seg[S_CS], sel, true);
        } else {
            s->seg[S_CS].selector = sel;
            s->seg[S_CS].base = (uint64_t)sel << 4;
        }
        s->rip = off & emu_mask(size);
        emu_break_block(c);
        return;
    }
    if ((sel & ~3u) == 0)
        emu_fault_err(c, EXC_GP, 0);
    d = emu_read_descriptor(c, sel, &la);
    dpl = (d >> 45) & 3;
    if (!((d >> 44) & 1)) {
        unsigned type = (d >> 40) & 15;

        if (type == 0xc || (type == 4 && !(s->efer & X86_EFER_LMA))) {
            far_via_gate(c, sel, d, call);
            return;
        }
        /* A task gate or an available 32-bit TSS: a task switch (none
         * in long mode). */
        if ((type == 5 || type == 9) && !(s->efer & X86_EFER_LMA)) {
            if (dpl < c->cpl || dpl < (sel & 3u))
                emu_fault_err(c, EXC_GP, sel & ~3u);
            if (!((d >> 47) & 1))
                emu_fault_err(c, EXC_NP, sel & ~3u);
            emu_task_switch(c, type == 5 ? (uint16_t)(d >> 16) : sel,
                            call ? TASK_CALL : TASK_JMP, false, 0);
            return;
        }
        emu_fault_err(c, EXC_GP, sel & ~3u);
    }
    if (!((d >> 43) & 1))
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if ((d >> 42) & 1 ? dpl > c->cpl : (dpl != c->cpl || (sel & 3) > c->cpl))
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_NP, sel & ~3u);
    if (call) {
        const uint64_t frame[2] = { old_cs, ret };

        far_push_current(c, size, frame, 2);
    }
    emu_seg_from_desc(&s->seg[S_CS], (uint16_t)((sel & ~3u) | c->cpl), d);
    s->rip = off & emu_mask(size);
    emu_update_mode(c);
    emu_break_block(c);
}

EMU_HANDLER(exec_jmp_far)
{
    far_transfer(c, i->imm2, i->imm, i->opsize, false);
}

EMU_HANDLER(exec_call_far)
{
    far_transfer(c, i->imm2, i->imm, i->opsize, true);
}

/* FF /3 CALL m16:xx and FF /5 JMP m16:xx. */
EMU_HANDLER(exec_far_E)
{
    unsigned size = i->opsize;
    uint64_t ea = emu_ea(c, i), off;
    uint16_t sel;

    if (!i->mem)
        emu_exec_ud(c, i);
    off = emu_read(c, i->seg, ea, size);
    sel = (uint16_t)emu_read(c, i->seg, (ea + size) & emu_mask(i->addrsize), 2);
    far_transfer(c, sel, off, size, i->sub == 3);
}

/* CA/CB: RETF (imm16).  To the same level, or (protected mode, popped CS
 * RPL > CPL) to an outer one: SS:ESP are popped too (after skipping imm16
 * bytes of parameters, which the new stack releases as well), and data
 * segments the outer level may not use become null. */
EMU_HANDLER(exec_retf)
{
    struct cpu_state *s = c->s;
    unsigned size = i->opsize, ssize = emu_stack_size(c);
    uint64_t m = emu_mask(ssize), sp = s->gpr[R_ESP];
    uint64_t imm = i->op == 0xca ? i->imm & 0xffff : 0;
    uint64_t rip = emu_read(c, S_SS, sp & m, size);
    uint16_t sel = (uint16_t)emu_read(c, S_SS, (sp + size) & m, size);
    uint64_t d, la;
    unsigned rpl = sel & 3, dpl;

    if (c->mode == EMU_MODE_REAL || (s->rflags & X86_RFLAGS_VM)) {
        if (s->rflags & X86_RFLAGS_VM)
            emu_seg_vm86(&s->seg[S_CS], sel, true);
        else {
            s->seg[S_CS].selector = sel;
            s->seg[S_CS].base = (uint64_t)sel << 4;
        }
        s->gpr[R_ESP] = (sp & ~m) | ((sp + 2 * size + imm) & m);
        s->rip = rip & emu_mask(size);
        emu_break_block(c);
        return;
    }
    if ((sel & ~3u) == 0)
        emu_fault_err(c, EXC_GP, 0);
    if (rpl < c->cpl)
        emu_fault_err(c, EXC_GP, sel & ~3u);
    d = emu_read_descriptor(c, sel, &la);
    dpl = (d >> 45) & 3;
    if (!((d >> 44) & 1) || !((d >> 43) & 1) || ((d >> 42) & 1 ? dpl > rpl : dpl != rpl))
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_NP, sel & ~3u);
    if (rpl > c->cpl) {
        uint64_t at = sp + 2 * size + imm;
        uint64_t nsp = emu_read(c, S_SS, at & m, size);
        uint16_t nss = (uint16_t)emu_read(c, S_SS, (at + size) & m, size);
        uint64_t ss_desc = emu_ret_ss_desc(c, nss, rpl, (d >> 53) & 1);
        uint64_t nm;

        emu_seg_from_desc(&s->seg[S_CS], sel, d);
        emu_load_ss_checked(c, nss, ss_desc, rpl);
        emu_update_mode(c);
        nm = emu_mask(emu_stack_size(c));
        s->gpr[R_ESP] = size == 8 ? nsp + imm : (uint32_t)((nsp & ~nm) | ((nsp + imm) & nm));
        s->rip = rip & emu_mask(size);
        emu_null_inaccessible_segs(c);
        emu_break_block(c);
        return;
    }
    emu_seg_from_desc(&s->seg[S_CS], (uint16_t)((sel & ~3u) | c->cpl), d);
    s->gpr[R_ESP] = (sp & ~m) | ((sp + 2 * size + imm) & m);
    s->rip = rip & emu_mask(size);
    emu_update_mode(c);
    emu_break_block(c);
}

EMU_HANDLER(exec_rdtscp)
{
    uint64_t t = emu_rdtsc(c);

    c->s->gpr[R_EAX] = (uint32_t)t;
    c->s->gpr[R_EDX] = t >> 32;
    c->s->gpr[R_ECX] = (uint32_t)c->s->msr.tsc_aux;
}
