/* x87/SSE state management: the x87 control instructions an OS uses to
 * detect and initialise the FPU, FXSAVE/FXRSTOR, LDMXCSR/STMXCSR.  The
 * state is cpu_state.fpu (the FXSAVE image).  x87 arithmetic is not
 * implemented yet (#UD, logged); SSE is in exec_sse.c. */
#include "emu/exec_ops.h"

#define MXCSR_MASK 0xffffU  /* DAZ supported */

/* CR0.EM / CR0.TS rules for x87 (wait: only TS with MP). */
static void fpu_check(struct emu_cpu *c, bool is_wait)
{
    uint64_t cr0 = c->s->cr0;

    if (is_wait) {
        if ((cr0 & X86_CR0_TS) && (cr0 & X86_CR0_MP))
            emu_fault(c, EXC_NM);
        return;
    }
    if (cr0 & (X86_CR0_EM | X86_CR0_TS))
        emu_fault(c, EXC_NM);
}

static void sse_check(struct emu_cpu *c, const struct emu_insn *i)
{
    if ((c->s->cr0 & X86_CR0_EM) || !(c->s->cr4 & X86_CR4_OSFXSR))
        emu_exec_ud(c, i);
    if (c->s->cr0 & X86_CR0_TS)
        emu_fault(c, EXC_NM);
}

EMU_HANDLER(exec_fwait)
{
    fpu_check(c, true);
}

/* D8-DF. */
EMU_HANDLER(exec_x87)
{
    struct x86_fxsave *f = &c->s->fpu;
    unsigned op = i->op;

    fpu_check(c, false);
    if (!i->mem) {
        if (op == 0xdb && i->modrm == 0xe3) {          /* FNINIT */
            f->fcw = 0x37f;
            f->fsw = 0;
            f->ftw = 0;
            f->fop = 0;
            f->fip = 0;
            f->fdp = 0;
            return;
        }
        if (op == 0xdb && i->modrm == 0xe2) {          /* FNCLEX */
            f->fsw &= 0x7f00;
            return;
        }
        if (op == 0xdf && i->modrm == 0xe0) {          /* FNSTSW AX */
            emu_set_reg(c, R_EAX, 2, f->fsw);
            return;
        }
    } else {
        if (op == 0xd9 && i->sub == 7) {               /* FNSTCW m16 */
            emu_write(c, i->seg, emu_ea(c, i), 2, f->fcw);
            return;
        }
        if (op == 0xd9 && i->sub == 5) {               /* FLDCW m16 */
            f->fcw = (uint16_t)emu_read(c, i->seg, emu_ea(c, i), 2);
            return;
        }
        if (op == 0xdd && i->sub == 7) {               /* FNSTSW m16 */
            emu_write(c, i->seg, emu_ea(c, i), 2, f->fsw);
            return;
        }
    }
    emu_exec_ud(c, i);
}

static void fx_save(struct emu_cpu *c, const struct emu_insn *i)
{
    uint64_t ea = emu_ea(c, i);
    uint64_t la = emu_linear(c, i->seg, ea, 512, ACC_WRITE);
    struct x86_fxsave img = c->s->fpu;
    const uint8_t *p = (const uint8_t *)&img;

    if (la & 15)
        emu_fault_err(c, EXC_GP, 0);
    emu_probe_write(c, la, 512);
    img.mxcsr_mask = MXCSR_MASK;
    if (i->opsize != 8) {
        /* FXSAVE (32-bit format): FIP/FDP are 32-bit with CS/DS selectors. */
        img.fip = (uint32_t)img.fip;
        img.fdp = (uint32_t)img.fdp;
    }
    for (unsigned k = 0; k < 512; k += 8) {
        uint64_t v;

        memcpy(&v, p + k, 8);
        emu_write_la(c, la + k, 8, v);
    }
}

static void fx_restore(struct emu_cpu *c, const struct emu_insn *i)
{
    uint64_t ea = emu_ea(c, i);
    uint64_t la = emu_linear(c, i->seg, ea, 512, ACC_READ);
    struct x86_fxsave img;
    uint8_t *p = (uint8_t *)&img;

    if (la & 15)
        emu_fault_err(c, EXC_GP, 0);
    for (unsigned k = 0; k < 512; k += 8) {
        uint64_t v = emu_read_la(c, la + k, 8);

        memcpy(p + k, &v, 8);
    }
    if (img.mxcsr & ~MXCSR_MASK)
        emu_fault_err(c, EXC_GP, 0);
    img.mxcsr_mask = MXCSR_MASK;
    memset(img.reserved1, 0, sizeof(img.reserved1));
    c->s->fpu = img;
}

/* 0F AE with a memory operand, /0-/3. */
bool emu_exec_fxsave_group(struct emu_cpu *c, const struct emu_insn *i)
{
    switch (i->sub) {
    case 0:
        fpu_check(c, false);
        fx_save(c, i);
        return true;
    case 1:
        fpu_check(c, false);
        fx_restore(c, i);
        return true;
    case 2: { /* LDMXCSR */
        uint32_t v;

        sse_check(c, i);
        v = (uint32_t)emu_read(c, i->seg, emu_ea(c, i), 4);
        if (v & ~MXCSR_MASK)
            emu_fault_err(c, EXC_GP, 0);
        c->s->fpu.mxcsr = v;
        return true;
    }
    case 3: /* STMXCSR */
        sse_check(c, i);
        emu_write(c, i->seg, emu_ea(c, i), 4, c->s->fpu.mxcsr);
        return true;
    }
    return false;
}
