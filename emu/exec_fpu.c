/* x87/SSE state management: FWAIT, FXSAVE/FXRSTOR, LDMXCSR/STMXCSR.  The
 * state is cpu_state.fpu (the FXSAVE image).  The x87 instructions (D8-DF)
 * are in exec_x87*.c and x87.c; SSE is in exec_sse.c. */
#include "emu/x87.h"

#define MXCSR_MASK 0xffffU  /* DAZ supported */

static void sse_check(struct emu_cpu *c, const struct emu_insn *i)
{
    if ((c->s->cr0 & X86_CR0_EM) || !(c->s->cr4 & X86_CR4_OSFXSR))
        emu_exec_ud(c, i);
    if (c->s->cr0 & X86_CR0_TS)
        emu_fault(c, EXC_NM);
}

/* FWAIT: #NM only with TS and MP, then a pending unmasked exception. */
EMU_HANDLER(exec_fwait)
{
    x87_check_nm(c, true);
    x87_check_pending(c);
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
        x87_check_nm(c, false);
        fx_save(c, i);
        return true;
    case 1:
        x87_check_nm(c, false);
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
