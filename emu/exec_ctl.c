/* Control transfer within the code segment: jumps, calls, returns, loops
 * and the software-interrupt instructions. */
#include "emu/exec_ops.h"

/* Jump to target with the operand size of the branch: IP/EIP truncation
 * outside 64-bit mode, #GP(0) on a non-canonical target or one beyond the
 * CS limit. */
static inline void branch_to(struct emu_cpu *c, unsigned opsize, uint64_t target)
{
    if (likely(c->mode == EMU_MODE_64)) {
        if (opsize == 2)
            target &= 0xffff;
        else if (unlikely((uint64_t)((int64_t)(target << 16) >> 16) != target))
            emu_fault_err(c, EXC_GP, 0);
    } else {
        target &= emu_mask(opsize);
        if (c->mode != EMU_MODE_REAL && target > c->s->seg[S_CS].limit)
            emu_fault_err(c, EXC_GP, 0);
    }
    c->s->rip = target;
}

EMU_HANDLER(exec_jcc)
{
    if (emu_cc_test(c, i->op & 15))
        branch_to(c, i->opsize, c->s->rip + i->imm);
}

EMU_HANDLER(exec_jmp_rel)
{
    branch_to(c, i->opsize, c->s->rip + i->imm);
}

EMU_HANDLER(exec_call_rel)
{
    uint64_t ret = c->s->rip, target = (ret + i->imm) & emu_mask(i->opsize);
    uint64_t sp = c->s->gpr[R_ESP];

    emu_push(c, i->opsize, ret);
    if (c->mode == EMU_MODE_64 && i->opsize == 8 &&
        (uint64_t)((int64_t)(target << 16) >> 16) != target) {
        c->s->gpr[R_ESP] = sp;
        emu_fault_err(c, EXC_GP, 0);
    }
    branch_to(c, i->opsize, target);
}

EMU_HANDLER(exec_jmp_E)
{
    branch_to(c, i->opsize, op_get_E(c, i, i->opsize));
}

EMU_HANDLER(exec_call_E)
{
    uint64_t target = op_get_E(c, i, i->opsize), sp = c->s->gpr[R_ESP];

    emu_push(c, i->opsize, c->s->rip);
    if (c->mode == EMU_MODE_64 && i->opsize == 8 &&
        (uint64_t)((int64_t)(target << 16) >> 16) != target) {
        c->s->gpr[R_ESP] = sp;
        emu_fault_err(c, EXC_GP, 0);
    }
    branch_to(c, i->opsize, target);
}

EMU_HANDLER(exec_ret)
{
    unsigned ssize = emu_stack_size(c);
    uint64_t sp = c->s->gpr[R_ESP];
    uint64_t target = emu_pop(c, i->opsize);

    if (i->op == 0xc2) {
        uint64_t m = emu_mask(ssize), nsp = c->s->gpr[R_ESP];

        c->s->gpr[R_ESP] = (nsp & ~m) | ((nsp + i->imm) & m);
    }
    if (c->mode == EMU_MODE_64 && i->opsize == 8 &&
        (uint64_t)((int64_t)(target << 16) >> 16) != target) {
        c->s->gpr[R_ESP] = sp;
        emu_fault_err(c, EXC_GP, 0);
    }
    branch_to(c, i->opsize, target);
}

EMU_HANDLER(exec_loop)
{
    unsigned as = i->addrsize;
    uint64_t n = (c->s->gpr[R_ECX] - 1) & emu_mask(as);
    bool take = n != 0;

    if (i->op == 0xe1)
        take = take && emu_cc_test(c, 4);
    else if (i->op == 0xe0)
        take = take && emu_cc_test(c, 5);
    if (take)
        branch_to(c, i->opsize, c->s->rip + i->imm);
    emu_set_reg(c, R_ECX, as, n);
}

EMU_HANDLER(exec_jrcxz)
{
    if ((c->s->gpr[R_ECX] & emu_mask(i->addrsize)) == 0)
        branch_to(c, i->opsize, c->s->rip + i->imm);
}

EMU_HANDLER(exec_int3)
{
    emu_raise_trap(c, EXC_BP);
}

/* INT n is IOPL-sensitive in virtual-8086 mode (no CR4.VME here): the
 * monitor gets #GP(0).  INT3 and INTO are not. */
EMU_HANDLER(exec_int)
{
    if ((c->s->rflags & X86_RFLAGS_VM) && ((c->s->rflags >> 12) & 3) < 3)
        emu_fault_err(c, EXC_GP, 0);
    c->exc_soft_int1 = (i->imm & 0xff) == EXC_DB;
    emu_raise_trap(c, (unsigned)i->imm & 0xff);
}

EMU_HANDLER(exec_into)
{
    if (emu_cc_flags(c) & X86_RFLAGS_OF)
        emu_raise_trap(c, EXC_OF);
}
