/* Event delivery (exceptions, software and external interrupts) and IRET:
 * through the IVT in real mode, through the IDT in long mode and 32-bit
 * protected mode, including events that leave virtual-8086 mode and the
 * IRETs that enter it or run inside it.  Task gates and IRET with NT
 * switch tasks (task.c).  SDM vol. 3, chapters 6, 7 and 20. */
#include "emu/exec_ops.h"
#include "emu/seg.h"

#define DR7_GD (1ULL << 13)

/* Real mode: the vector's 4-byte far pointer in the IVT at IDTR.base;
 * FLAGS, CS and IP are pushed as words, no error code (SDM 20.1.4). */
static void deliver_real(struct emu_cpu *c, unsigned vec)
{
    struct cpu_state *s = c->s;
    unsigned ssize = emu_stack_size(c);
    uint64_t m = emu_mask(ssize), sp = s->gpr[R_ESP];
    uint64_t ent, fl = emu_get_rflags(c);
    const uint16_t words[3] = { (uint16_t)fl, s->seg[S_CS].selector, (uint16_t)s->rip };

    if ((uint64_t)vec * 4 + 3 > s->idt.limit)
        emu_fault_err(c, EXC_GP, vec * 8 + 2);
    ent = emu_read_la(c, (uint32_t)(s->idt.base + vec * 4), 4);
    for (unsigned k = 0; k < 3; k++) {
        sp = (sp & ~m) | ((sp - 2) & m);
        emu_write(c, S_SS, sp & m, 2, words[k]);
    }
    s->gpr[R_ESP] = sp;
    s->seg[S_CS].selector = (uint16_t)(ent >> 16);
    s->seg[S_CS].base = (ent >> 16 << 4) & 0xffff0;
    s->rip = ent & 0xffff;
    s->rflags &= ~(X86_RFLAGS_IF | X86_RFLAGS_TF | X86_RFLAGS_AC | X86_RFLAGS_RF);
    if (vec == EXC_DB)
        s->dr[7] &= ~DR7_GD;
    LOG(LOG_INT, "emu: delivered vector %u (real mode) -> %04x:%04llx\n", vec,
        s->seg[S_CS].selector, (unsigned long long)s->rip);
}

/* Push for event delivery: the new stack, supervisor (or new CPL) access. */
struct frame {
    uint64_t sp;
    uint64_t ss_base;
    uint64_t mask;   /* stack address mask */
    uint8_t mmu_idx;
};

static void frame_push(struct emu_cpu *c, struct frame *f, unsigned size, uint64_t v)
{
    uint8_t idx = c->mmu_idx;

    f->sp = (f->sp - size) & f->mask;
    c->mmu_idx = f->mmu_idx;
    emu_write_la(c, c->mode == EMU_MODE_64 ? f->sp : (uint32_t)(f->ss_base + f->sp), size, v);
    c->mmu_idx = idx;
}

void emu_deliver_event(struct emu_cpu *c, unsigned vec, bool has_err, uint32_t err, bool soft,
                       bool ext)
{
    struct cpu_state *s = c->s;
    bool lm = s->efer & X86_EFER_LMA;
    unsigned gsize = lm ? 16 : 8;
    uint32_t idt_err = vec * 8 + 2 + (ext ? 1 : 0);
    uint64_t lo, hi = 0, off, cs_desc, la;
    unsigned type, dpl, new_cpl, ist, push;
    uint16_t sel;
    struct frame f;
    uint64_t old_rflags = emu_get_rflags(c), old_sp = s->gpr[R_ESP];
    uint16_t old_ss = s->seg[S_SS].selector, old_cs = s->seg[S_CS].selector;
    bool stack_switch = false;

    bool vm86 = (s->rflags & X86_RFLAGS_VM) && !lm;

    if (!(s->cr0 & X86_CR0_PE)) {
        deliver_real(c, vec);
        return;
    }
    if ((uint64_t)vec * gsize + gsize - 1 > s->idt.limit)
        emu_fault_err(c, EXC_GP, idt_err);
    la = s->idt.base + (uint64_t)vec * gsize;
    lo = emu_sys_read(c, lm ? la : (uint32_t)la, 8);
    if (lm)
        hi = emu_sys_read(c, la + 8, 8);
    type = (lo >> 40) & 15;
    dpl = (lo >> 45) & 3;
    if (lm ? (type != 0xe && type != 0xf)
           : (type != 0xe && type != 0xf && type != 6 && type != 7 && type != 5))
        emu_fault_err(c, EXC_GP, idt_err);
    if (soft && dpl < c->cpl)
        emu_fault_err(c, EXC_GP, idt_err);
    if (!((lo >> 47) & 1))
        emu_fault_err(c, EXC_NP, idt_err);
    if (type == 5) {   /* task gate: the handler is another task */
        emu_task_switch(c, (uint16_t)(lo >> 16), TASK_INT, has_err, err);
        if (vec == EXC_DB)
            s->dr[7] &= ~DR7_GD;
        c->dbg_pending = 0;
        return;
    }
    sel = (lo >> 16) & 0xffff;
    off = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ULL);
    if (lm)
        off |= hi << 32;
    ist = lm ? (lo >> 32) & 7 : 0;
    push = lm ? 8 : (type & 8) ? 4 : 2;

    if ((sel & ~3u) == 0)
        emu_fault_err(c, EXC_GP, ext ? 1 : 0);
    cs_desc = emu_read_descriptor(c, sel, &la);
    if (!((cs_desc >> 44) & 1) || !((cs_desc >> 43) & 1) || (lm && !((cs_desc >> 53) & 1)))
        emu_fault_err(c, EXC_GP, (sel & ~3u) | (ext ? 1 : 0));
    if (!((cs_desc >> 47) & 1))
        emu_fault_err(c, EXC_NP, (sel & ~3u) | (ext ? 1 : 0));
    new_cpl = ((cs_desc >> 42) & 1) ? c->cpl : (cs_desc >> 45) & 3;
    if (new_cpl > c->cpl)
        emu_fault_err(c, EXC_GP, (sel & ~3u) | (ext ? 1 : 0));
    /* Leaving virtual-8086 mode: only to a ring-0 non-conforming handler. */
    if (vm86 && new_cpl != 0)
        emu_fault_err(c, EXC_GP, (sel & ~3u) | (ext ? 1 : 0));

    f.mmu_idx = new_cpl == 3;
    f.sp = s->gpr[R_ESP];
    f.ss_base = s->seg[S_SS].base;
    f.mask = lm ? ~0ULL : s->seg[S_SS].db ? 0xffffffffULL : 0xffffULL;
    if (lm) {
        if (ist) {
            f.sp = emu_tss_read(c, 0x24 + (ist - 1) * 8, 8, ext);
            stack_switch = true;
        } else if (new_cpl < c->cpl) {
            f.sp = emu_tss_read(c, 4 + new_cpl * 8, 8, ext);
            stack_switch = true;
        }
        if (new_cpl < c->cpl)
            stack_switch = true;
        f.sp &= ~15ULL;
    } else if (new_cpl < c->cpl) {
        uint16_t ss_sel = (uint16_t)emu_tss_read(c, 8 + new_cpl * 8, 2, ext);
        uint64_t ss_desc;

        f.sp = emu_tss_read(c, 4 + new_cpl * 8, 4, ext);
        if ((ss_sel & ~3u) == 0)
            emu_fault_err(c, EXC_TS, ext ? 1 : 0);
        ss_desc = emu_read_descriptor(c, ss_sel, &la);
        f.ss_base = ((ss_desc >> 16) & 0xffffff) | ((ss_desc >> 32) & 0xff000000);
        f.mask = (ss_desc >> 54) & 1 ? 0xffffffffULL : 0xffffULL;
        stack_switch = true;
        /* The new SS is loaded below, once nothing can fault any more. */
        emu_seg_from_desc(&c->scratch_seg, ss_sel, ss_desc);
    }

    if (vm86) {
        frame_push(c, &f, push, s->seg[S_GS].selector);
        frame_push(c, &f, push, s->seg[S_FS].selector);
        frame_push(c, &f, push, s->seg[S_DS].selector);
        frame_push(c, &f, push, s->seg[S_ES].selector);
    }
    if (lm || stack_switch) {
        frame_push(c, &f, push, old_ss);
        frame_push(c, &f, push, old_sp);
    }
    frame_push(c, &f, push, old_rflags);
    frame_push(c, &f, push, old_cs);
    frame_push(c, &f, push, s->rip);
    if (has_err)
        frame_push(c, &f, push, err);

    /* Commit: nothing below faults. */
    emu_seg_from_desc(&s->seg[S_CS], (sel & ~3u) | new_cpl, cs_desc);
    if (stack_switch) {
        if (lm) {
            if (new_cpl < c->cpl) {
                struct x86_segment *ss = &s->seg[S_SS];

                ss->selector = new_cpl;
                ss->unusable = 1;
                ss->present = 0;
                ss->dpl = new_cpl;
                ss->base = 0;
            }
        } else {
            s->seg[S_SS] = c->scratch_seg;
        }
    }
    if (vm86) {
        static const unsigned segs[] = { S_ES, S_DS, S_FS, S_GS };

        for (unsigned k = 0; k < 4; k++) {
            struct x86_segment *sg = &s->seg[segs[k]];

            sg->selector = 0;
            sg->base = 0;
            sg->unusable = 1;
            sg->present = 0;
        }
    }
    s->seg[S_SS].dpl = new_cpl;
    s->gpr[R_ESP] = lm ? f.sp : (s->gpr[R_ESP] & ~f.mask) | (f.sp & f.mask);
    if (stack_switch && !lm)
        s->gpr[R_ESP] = f.sp;
    s->rip = off;
    s->rflags &= ~(X86_RFLAGS_TF | X86_RFLAGS_NT | X86_RFLAGS_RF | X86_RFLAGS_VM);
    if (!(type & 1))
        s->rflags &= ~X86_RFLAGS_IF;
    /* The #DB handler may use the debug registers (SDM 17.2.4). */
    if (vec == EXC_DB)
        s->dr[7] &= ~DR7_GD;
    /* Breakpoint hits of the delivery's own accesses are not reported. */
    c->dbg_pending = 0;
    emu_update_mode(c);
    LOG(LOG_INT, "emu: delivered vector %u%s err=%#x -> %04x:%#llx cpl %u\n", vec,
        soft ? " (soft)" : ext ? " (ext)" : "", has_err ? err : 0, s->seg[S_CS].selector,
        (unsigned long long)off, c->cpl);
}

/* IRET in real mode, and in virtual-8086 mode at IOPL 3 (else #GP(0), for
 * the monitor): IP, CS and FLAGS from the stack; in vm86 mode IOPL (and VM,
 * VIP, VIF) keep their values. */
static void iret_real(struct emu_cpu *c, const struct emu_insn *i)
{
    struct cpu_state *s = c->s;
    bool vm86 = (s->rflags & X86_RFLAGS_VM) != 0;
    unsigned size = i->opsize, ssize = emu_stack_size(c);
    uint64_t m = emu_mask(ssize), sp = s->gpr[R_ESP], old = emu_get_rflags(c);
    uint64_t ip, cs, fl, keep;

    if (vm86 && ((old >> 12) & 3) < 3)
        emu_fault_err(c, EXC_GP, 0);
    ip = emu_read(c, S_SS, sp & m, size);
    cs = emu_read(c, S_SS, (sp + size) & m, size);
    fl = emu_read(c, S_SS, (sp + 2 * size) & m, size);
    if (ip > s->seg[S_CS].limit && (vm86 || size == 4))
        emu_fault_err(c, EXC_GP, 0);
    if (size == 2)
        keep = ~0xffffULL | (vm86 ? X86_RFLAGS_IOPL : 0);
    else if (vm86)
        keep = X86_RFLAGS_VM | X86_RFLAGS_IOPL | X86_RFLAGS_VIP | X86_RFLAGS_VIF;
    else
        keep = X86_RFLAGS_VM | X86_RFLAGS_VIP | X86_RFLAGS_VIF;
    s->gpr[R_ESP] = (sp & ~m) | ((sp + 3 * size) & m);
    s->seg[S_CS].selector = (uint16_t)cs;
    s->seg[S_CS].base = (cs & 0xffff) << 4;
    s->rip = ip;
    emu_set_rflags(c, (old & keep) | (fl & ~keep));
    c->s->events.nmi_masked = 0;
    emu_break_block(c);
}

/* IRET at CPL 0 whose EFLAGS image has VM set: pop ESP, SS, ES, DS, FS, GS
 * (v[0..5]) and continue in virtual-8086 mode at CPL 3 (SDM IRET,
 * RETURN-TO-VIRTUAL-8086-MODE). */
static void iret_to_vm86(struct emu_cpu *c, uint64_t eip, uint16_t cs, uint64_t fl,
                         const uint64_t *v)
{
    struct cpu_state *s = c->s;
    static const unsigned segs[4] = { S_ES, S_DS, S_FS, S_GS };

    emu_set_rflags(c, fl);
    emu_seg_vm86(&s->seg[S_CS], cs, true);
    emu_seg_vm86(&s->seg[S_SS], (uint16_t)v[1], false);
    for (unsigned k = 0; k < 4; k++)
        emu_seg_vm86(&s->seg[segs[k]], (uint16_t)v[2 + k], false);
    s->gpr[R_ESP] = (uint32_t)v[0];
    s->rip = eip & 0xffff;
    s->events.nmi_masked = 0;
    emu_update_mode(c);
    emu_break_block(c);
}

/* Load CS for a return to privilege rpl (IRET/RETF). */
static uint64_t ret_cs_desc(struct emu_cpu *c, uint16_t sel)
{
    uint64_t d, la;

    if ((sel & ~3u) == 0)
        emu_fault_err(c, EXC_GP, 0);
    if ((sel & 3) < c->cpl)
        emu_fault_err(c, EXC_GP, sel & ~3u);
    d = emu_read_descriptor(c, sel, &la);
    if (!((d >> 44) & 1) || !((d >> 43) & 1))
        emu_fault_err(c, EXC_GP, sel & ~3u);
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_NP, sel & ~3u);
    return d;
}

EMU_HANDLER(exec_iret)
{
    struct cpu_state *s = c->s;
    unsigned size = i->opsize, ssize = emu_stack_size(c);
    uint64_t m = emu_mask(ssize), sp = s->gpr[R_ESP];
    uint64_t rip, cs, fl, nsp = 0, nss = 0, cs_desc;
    uint64_t old_fl = emu_get_rflags(c), mask;
    unsigned rpl;
    bool outer;

    if (!(s->cr0 & X86_CR0_PE) || (s->rflags & X86_RFLAGS_VM)) {
        iret_real(c, i);
        return;
    }
    if (s->rflags & X86_RFLAGS_NT) {
        /* Return to the task in the back link (none in long mode). */
        if (s->efer & X86_EFER_LMA)
            emu_fault_err(c, EXC_GP, 0);
        emu_task_switch(c, (uint16_t)emu_tss_read(c, 0, 2, 0), TASK_IRET, false, 0);
        s->events.nmi_masked = 0;
        return;
    }
#define POP(v) do { (v) = emu_read(c, S_SS, sp & m, size); sp = (sp & ~m) | ((sp + size) & m); } while (0)
    POP(rip);
    POP(cs);
    POP(fl);
    cs &= 0xffff;
    if ((fl & X86_RFLAGS_VM) && size == 4 && c->cpl == 0 && c->mode != EMU_MODE_64) {
        uint64_t v[6];

        for (unsigned k = 0; k < 6; k++)
            POP(v[k]);
        iret_to_vm86(c, rip, (uint16_t)cs, fl, v);
        return;
    }
    rpl = cs & 3;
    outer = rpl > c->cpl;
    if (c->mode == EMU_MODE_64 || outer) {
        POP(nsp);
        POP(nss);
        nss &= 0xffff;
    }
#undef POP
    cs_desc = ret_cs_desc(c, (uint16_t)cs);
    if (((cs_desc >> 53) & 1) && !(s->efer & X86_EFER_LMA))
        emu_fault_err(c, EXC_GP, cs & ~3u);

    mask = EMU_CC_MASK | X86_RFLAGS_TF | X86_RFLAGS_DF | X86_RFLAGS_NT | X86_RFLAGS_RF |
           X86_RFLAGS_AC | X86_RFLAGS_ID;
    if (c->cpl == 0)
        mask |= X86_RFLAGS_IOPL | X86_RFLAGS_VIF | X86_RFLAGS_VIP;
    if (c->cpl <= ((old_fl >> 12) & 3))
        mask |= X86_RFLAGS_IF;
    if (size == 2)
        mask &= 0xffff;

    if (c->mode == EMU_MODE_64 || outer) {
        uint64_t ss_desc = emu_ret_ss_desc(c, (uint16_t)nss, rpl, (cs_desc >> 53) & 1);

        emu_seg_from_desc(&s->seg[S_CS], (uint16_t)cs, cs_desc);
        emu_load_ss_checked(c, (uint16_t)nss, ss_desc, rpl);
        s->gpr[R_ESP] = size == 8 || c->mode == EMU_MODE_64 ? nsp : (uint32_t)nsp;
    } else {
        emu_seg_from_desc(&s->seg[S_CS], (uint16_t)cs, cs_desc);
        s->gpr[R_ESP] = sp;
    }
    s->rip = size == 8 ? rip : rip & emu_mask(size);
    emu_set_rflags(c, (old_fl & ~mask) | (fl & mask));
    /* IRET ends NMI blocking (SDM 6.7.1), even when not returning from the
     * NMI handler; a pending NMI is then taken at the next boundary. */
    s->events.nmi_masked = 0;
    emu_update_mode(c);
    /* Data segments the new privilege may not use become null (outer). */
    if (outer)
        emu_null_inaccessible_segs(c);
    emu_break_block(c);
}

/* Deliver a pending NMI unless NMIs are blocked (an NMI handler runs until
 * its IRET) or a MOV SS shadow is in force.  IF does not matter; a halted
 * CPU wakes.  Called between blocks. */
bool emu_take_nmi(struct emu_cpu *c)
{
    struct cpu_state *s = c->s;

    if (!s->events.nmi_pending || s->events.nmi_masked || (s->events.interrupt_shadow & 2))
        return false;
    s->events.nmi_pending = 0;
    s->events.nmi_masked = 1;
    s->mp_state = MP_RUNNABLE;
    c->insn_rip = s->rip;
    c->delivering = EXC_NMI;
    c->exc_ext = true;
    emu_deliver_event(c, EXC_NMI, false, 0, false, true);
    c->delivering = -1;
    c->exc_ext = false;
    return true;
}
