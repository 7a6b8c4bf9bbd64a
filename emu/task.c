/* Hardware task switches in 32-bit protected mode (SDM vol. 3, 7.3): far
 * JMP/CALL to a TSS descriptor or a task gate, events through a task gate
 * in the IDT, IRET with EFLAGS.NT back to the previous task.  Long mode
 * has none (its callers raise #GP first).  Only 32-bit TSSs (types 9/B)
 * are switched to or from; a 16-bit TSS gives #GP/#TS.
 *
 * Everything that can fault in the outgoing task is done first (reading
 * the whole new TSS, checking its descriptor, writing the old state),
 * then the switch commits; faults while loading the new task's segments
 * are raised in the new task, as on hardware (as #GP/#NP/#SS where the
 * SDM says #TS for some of them). */
#include "emu/emu_int.h"
#include "emu/seg.h"

#define TSS32_MIN_LIMIT 0x67

/* 32-bit TSS field offsets. */
enum {
    TSS_LINK = 0x00, TSS_CR3 = 0x1c, TSS_EIP = 0x20, TSS_EFLAGS = 0x24,
    TSS_EAX = 0x28, TSS_ES = 0x48, TSS_LDT = 0x60,
};

/* GPRs in TSS order: EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI (the R_*
 * numbering is the same order). */
#define TSS_GPR(n) (TSS_EAX + 4 * (n))
#define TSS_SEG(sr) (TSS_ES + 4 * (sr))   /* ES, CS, SS, DS, FS, GS */

static void set_busy(struct emu_cpu *c, uint64_t desc_la, uint64_t d, bool busy)
{
    uint8_t access = (uint8_t)(d >> 40);

    access = busy ? access | 2 : access & ~2;
    emu_sys_write(c, desc_la + 5, 1, access);
}

/* The new task's LDT from its TSS (null is allowed). */
static void load_ldt(struct emu_cpu *c, uint16_t sel)
{
    struct x86_segment *ldt = &c->s->ldt;
    uint64_t d, la;

    if ((sel & ~3u) == 0) {
        memset(ldt, 0, sizeof(*ldt));
        ldt->unusable = 1;
        return;
    }
    if (sel & 4)
        emu_fault_err(c, EXC_TS, sel & ~3u);
    d = emu_read_descriptor(c, sel, &la);
    if (((d >> 44) & 1) || ((d >> 40) & 15) != 2)
        emu_fault_err(c, EXC_TS, sel & ~3u);
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_NP, sel & ~3u);
    emu_seg_from_desc(ldt, sel, d);
}

/* CS of the new task: a present code segment; its RPL is the new CPL. */
static void load_cs(struct emu_cpu *c, uint16_t sel)
{
    uint64_t d, la;
    unsigned dpl, rpl = sel & 3;

    if ((sel & ~3u) == 0)
        emu_fault_err(c, EXC_TS, 0);
    d = emu_read_descriptor(c, sel, &la);
    dpl = (d >> 45) & 3;
    if (!((d >> 44) & 1) || !((d >> 43) & 1) || ((d >> 42) & 1 ? dpl > rpl : dpl != rpl))
        emu_fault_err(c, EXC_TS, sel & ~3u);
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_NP, sel & ~3u);
    emu_seg_from_desc(&c->s->seg[S_CS], sel, d);
}

void emu_task_switch(struct emu_cpu *c, uint16_t sel, enum emu_task_reason why, bool has_err,
                     uint32_t err)
{
    struct cpu_state *s = c->s;
    uint64_t d, la, old_la, old_d, fl = emu_get_rflags(c);
    uint32_t t[TSS32_MIN_LIMIT / 4 + 1];
    uint16_t old_sel = s->tr.selector;
    struct x86_segment nt;
    unsigned type;

    /* The incoming TSS descriptor: GDT, 32-bit, busy exactly for IRET. */
    if (sel & 4)
        emu_fault_err(c, why == TASK_IRET ? EXC_TS : EXC_GP, sel & ~3u);
    d = emu_read_descriptor(c, sel, &la);
    type = (d >> 40) & 15;
    if ((d >> 44) & 1 || (type != 9 && type != 0xb))
        emu_fault_err(c, why == TASK_IRET ? EXC_TS : EXC_GP, sel & ~3u);
    if ((type == 0xb) != (why == TASK_IRET))
        emu_fault_err(c, why == TASK_IRET ? EXC_TS : EXC_GP, sel & ~3u);
    if (!((d >> 47) & 1))
        emu_fault_err(c, EXC_NP, sel & ~3u);
    emu_seg_from_desc(&nt, sel, d);
    if (nt.limit < TSS32_MIN_LIMIT)
        emu_fault_err(c, EXC_TS, sel & ~3u);
    if (!s->tr.present || s->tr.limit < TSS32_MIN_LIMIT ||
        (s->tr.type != 9 && s->tr.type != 0xb))
        emu_fault_err(c, EXC_TS, old_sel & ~3u);
    old_d = emu_read_descriptor(c, old_sel, &old_la);

    /* Read the whole new TSS, then save the outgoing task: everything up
     * to here faults in the old task with nothing changed. */
    for (unsigned k = 0; k <= TSS32_MIN_LIMIT / 4; k++)
        t[k] = (uint32_t)emu_sys_read(c, (uint32_t)(nt.base + 4 * k), 4);
    if (why == TASK_IRET)
        fl &= ~X86_RFLAGS_NT;
    emu_sys_write(c, (uint32_t)(s->tr.base + TSS_EIP), 4, (uint32_t)s->rip);
    emu_sys_write(c, (uint32_t)(s->tr.base + TSS_EFLAGS), 4, (uint32_t)fl);
    for (unsigned r = 0; r < 8; r++)
        emu_sys_write(c, (uint32_t)(s->tr.base + TSS_GPR(r)), 4, (uint32_t)s->gpr[r]);
    for (unsigned sr = 0; sr < S_NR; sr++)
        emu_sys_write(c, (uint32_t)(s->tr.base + TSS_SEG(sr)), 2, s->seg[sr].selector);
    if (why == TASK_JMP || why == TASK_IRET)
        set_busy(c, old_la, old_d, false);
    if (why == TASK_CALL || why == TASK_INT) {
        emu_sys_write(c, (uint32_t)(nt.base + TSS_LINK), 2, old_sel);
        t[TSS_LINK / 4] = (t[TSS_LINK / 4] & ~0xffffu) | old_sel;
    }
    if (why != TASK_IRET) {
        set_busy(c, la, d, true);
        nt.type |= 2;
    }

    /* Commit: the new task's state.  Faults from here on belong to it. */
    s->tr = nt;
    s->cr0 |= X86_CR0_TS;
    if (s->cr0 & X86_CR0_PG) {
        s->cr3 = t[TSS_CR3 / 4];
        emu_tlb_flush(c, true);
    }
    fl = t[TSS_EFLAGS / 4];
    if (why == TASK_CALL || why == TASK_INT)
        fl |= X86_RFLAGS_NT;
    emu_set_rflags(c, fl | X86_RFLAGS_FIXED);
    s->rip = t[TSS_EIP / 4];
    for (unsigned r = 0; r < 8; r++)
        s->gpr[r] = t[TSS_GPR(r) / 4];
    for (unsigned sr = 0; sr < S_NR; sr++) {
        /* Selectors first: a fault below leaves the new task's values. */
        s->seg[sr].selector = (uint16_t)t[TSS_SEG(sr) / 4];
    }
    load_ldt(c, (uint16_t)t[TSS_LDT / 4]);
    if (s->rflags & X86_RFLAGS_VM) {
        for (unsigned sr = 0; sr < S_NR; sr++)
            emu_seg_vm86(&s->seg[sr], (uint16_t)t[TSS_SEG(sr) / 4], sr == S_CS);
        emu_update_mode(c);
    } else {
        load_cs(c, (uint16_t)t[TSS_SEG(S_CS) / 4]);
        /* CPL is the new CS's RPL; SS is checked against it. */
        s->seg[S_SS].dpl = s->seg[S_CS].selector & 3;
        emu_update_mode(c);
        emu_load_seg(c, S_SS, (uint16_t)t[TSS_SEG(S_SS) / 4]);
        emu_load_seg(c, S_ES, (uint16_t)t[TSS_SEG(S_ES) / 4]);
        emu_load_seg(c, S_DS, (uint16_t)t[TSS_SEG(S_DS) / 4]);
        emu_load_seg(c, S_FS, (uint16_t)t[TSS_SEG(S_FS) / 4]);
        emu_load_seg(c, S_GS, (uint16_t)t[TSS_SEG(S_GS) / 4]);
    }
    if (s->rip > s->seg[S_CS].limit)
        emu_fault_err(c, EXC_GP, 0);
    /* An exception's error code goes on the new task's stack. */
    if (has_err)
        emu_push(c, s->seg[S_CS].db ? 4 : 2, err);
    emu_break_block(c);
    LOG(LOG_INT, "emu: task switch %04x -> %04x (%s)\n", old_sel, sel,
        why == TASK_JMP ? "jmp" : why == TASK_CALL ? "call" : why == TASK_INT ? "int" : "iret");
}
