/* System and I/O instructions. */
#include <x86intrin.h>

#include "emu/exec_ops.h"

static inline unsigned sys_iopl(struct emu_cpu *c)
{
    return (c->s->rflags >> 12) & 3;
}

EMU_HANDLER(exec_hlt)
{
    if (c->cpl)
        emu_fault_err(c, EXC_GP, 0);
    c->s->mp_state = MP_HALTED;
    c->stop_req = EMU_STOP_HALT + 1;
}

EMU_HANDLER(exec_cli)
{
    if (c->cpl > sys_iopl(c))
        emu_fault_err(c, EXC_GP, 0);
    c->s->rflags &= ~X86_RFLAGS_IF;
}

EMU_HANDLER(exec_sti)
{
    if (c->cpl > sys_iopl(c))
        emu_fault_err(c, EXC_GP, 0);
    if (!(c->s->rflags & X86_RFLAGS_IF))
        c->s->events.interrupt_shadow |= 1;  /* one more instruction first */
    c->s->rflags |= X86_RFLAGS_IF;
}

EMU_HANDLER(exec_cpuid)
{
    struct cpu_state *s = c->s;
    uint32_t out[4];
    unsigned apic_id = s->lapic[0x23];  /* ID register bits 31:24 */

    cpuid_query(&c->m->cpuid, apic_id, (uint32_t)s->gpr[R_EAX], (uint32_t)s->gpr[R_ECX], out);
    s->gpr[R_EAX] = out[0];
    s->gpr[R_EBX] = out[1];
    s->gpr[R_ECX] = out[2];
    s->gpr[R_EDX] = out[3];
}

uint64_t emu_rdtsc(struct emu_cpu *c)
{
    return __rdtsc() + (uint64_t)c->tsc_offset;
}

void emu_set_tsc(struct emu_cpu *c, uint64_t tsc)
{
    c->tsc_offset = (int64_t)(tsc - __rdtsc());
}

EMU_HANDLER(exec_rdtsc)
{
    uint64_t t;

    if ((c->s->cr4 & X86_CR4_TSD) && c->cpl)
        emu_fault_err(c, EXC_GP, 0);
    t = emu_rdtsc(c);
    c->s->gpr[R_EAX] = (uint32_t)t;
    c->s->gpr[R_EDX] = t >> 32;
}

uint64_t emu_pio_in(struct emu_cpu *c, uint16_t port, unsigned size)
{
    uint64_t v = 0;

    vcpu_dispatch_pio(c->vcpu, c->m, port, &v, size, false);
    if (unlikely(c->dbg_io))
        emu_debug_io(c, port, size);
    return v & emu_mask(size);
}

void emu_pio_out(struct emu_cpu *c, uint16_t port, unsigned size, uint64_t v)
{
    vcpu_dispatch_pio(c->vcpu, c->m, port, &v, size, true);
    if (unlikely(c->dbg_io))
        emu_debug_io(c, port, size);
    if (c->io_written)
        c->io_written(c->irq_opaque);
    /* A device may have asked the machine to stop (debug-exit, reset):
     * leave the block so the kick is seen before the next instruction. */
    if (__atomic_load_n(&c->kick, __ATOMIC_RELAXED))
        emu_break_block(c);
}

/* Port access rights (SDM vol. 1, 19.5): in protected mode with CPL > IOPL
 * (and in vm86), every bit of the TSS I/O permission bitmap for the ports
 * touched must be clear.  The bitmap starts at the 16-bit offset at TSS+0x66;
 * a bitmap (or the 2 bytes read) beyond the TSS limit, or a 16-bit TSS,
 * means #GP(0). */
static void io_check(struct emu_cpu *c, uint16_t port, unsigned size)
{
    const struct x86_segment *tr = &c->s->tr;
    uint64_t base_off, off;
    uint8_t idx = c->mmu_idx;
    unsigned bits;

    if (c->mode == EMU_MODE_REAL)
        return;
    if (c->cpl <= sys_iopl(c) && !(c->s->rflags & X86_RFLAGS_VM))
        return;
    if (!tr->present || (tr->type & 7) != 3 || tr->limit < 0x67)
        emu_fault_err(c, EXC_GP, 0);  /* no 32/64-bit TSS (type 9/11) */
    c->mmu_idx = 0;  /* TSS accesses are supervisor accesses */
    base_off = emu_read_la(c, tr->base + 0x66, 2);
    off = base_off + port / 8;
    if (off + 1 > tr->limit) {
        c->mmu_idx = idx;
        emu_fault_err(c, EXC_GP, 0);
    }
    bits = (unsigned)emu_read_la(c, tr->base + off, 2);
    c->mmu_idx = idx;
    if ((bits >> (port & 7)) & ((1u << size) - 1))
        emu_fault_err(c, EXC_GP, 0);
}

EMU_HANDLER(exec_in)
{
    unsigned size = i->opsize == 8 ? 4 : i->opsize;
    uint16_t port = (i->op & 8) ? (uint16_t)c->s->gpr[R_EDX] : (uint16_t)i->imm;

    io_check(c, port, size);
    emu_set_reg(c, R_EAX, size, emu_pio_in(c, port, size));
}

EMU_HANDLER(exec_out)
{
    unsigned size = i->opsize == 8 ? 4 : i->opsize;
    uint16_t port = (i->op & 8) ? (uint16_t)c->s->gpr[R_EDX] : (uint16_t)i->imm;

    io_check(c, port, size);
    emu_pio_out(c, port, size, emu_reg(c, R_EAX, size));
}

/* Iterations of REP INS/OUTS per execution before yielding (RIP stays on
 * the instruction), so interrupts and kicks are seen during long transfers. */
#define REP_IO_CHUNK 1024

/* 6C/6D: INS to ES:rDI (no segment override); 6E/6F: OUTS from seg:rSI
 * (DS unless overridden).  The memory operand is checked before the port
 * is touched, so a fault loses no device data. */
static void string_io(struct emu_cpu *c, const struct emu_insn *i, bool out)
{
    struct cpu_state *s = c->s;
    unsigned size = i->opsize == 8 ? 4 : i->opsize, as = i->addrsize;
    uint64_t amask = emu_mask(as), n = 1;
    uint16_t port = (uint16_t)s->gpr[R_EDX];
    int64_t step = (s->rflags & X86_RFLAGS_DF) ? -(int64_t)size : (int64_t)size;
    unsigned r = out ? R_ESI : R_EDI;

    if (i->rep)
        n = s->gpr[R_ECX] & amask;
    if (n)
        io_check(c, port, size);  /* REP with a zero count does nothing */
    for (uint64_t k = 0; k < n; k++) {
        uint64_t off = s->gpr[r] & amask, la;

        if (k == REP_IO_CHUNK || (k && c->break_block)) {
            s->rip = c->insn_rip;
            emu_break_block(c);
            return;
        }
        if (out) {
            uint64_t v = emu_read(c, i->seg, off, size);

            emu_pio_out(c, port, size, v);
        } else {
            la = emu_linear(c, S_ES, off, size, ACC_WRITE);
            emu_probe_write(c, la, size);
            emu_write_la(c, la, size, emu_pio_in(c, port, size));
        }
        emu_set_reg(c, r, as, s->gpr[r] + (uint64_t)step);
        if (i->rep)
            emu_set_reg(c, R_ECX, as, s->gpr[R_ECX] - 1);
    }
}

EMU_HANDLER(exec_ins)
{
    string_io(c, i, false);
}

EMU_HANDLER(exec_outs)
{
    string_io(c, i, true);
}

/* F1: INT1/ICEBP: a #DB trap delivered like a hardware event (no gate DPL
 * check, unlike INT 1); DR6 is not changed. */
EMU_HANDLER(exec_icebp)
{
    emu_raise_trap(c, EXC_DB);
}

EMU_HANDLER(exec_ud2)
{
    emu_fault(c, EXC_UD);
}

/* 0F AE: fences, CLFLUSH, FXSAVE/FXRSTOR/LDMXCSR/STMXCSR (exec_fpu.c). */
EMU_HANDLER(exec_grp15)
{
    if (!i->mem) {
        if (i->rep || i->pfx66)
            emu_exec_ud(c, i);  /* RDFSBASE & co: FSGSBASE not advertised */
        switch (i->sub) {
        case 5: /* LFENCE */
        case 7: /* SFENCE */
            return;
        case 6: /* MFENCE */
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            return;
        }
        emu_exec_ud(c, i);
    }
    if (i->sub < 4 && !i->rep && !i->pfx66 && emu_exec_fxsave_group(c, i))
        return;
    if (i->sub == 7 && !i->rep) {
        /* CLFLUSH/CLFLUSHOPT: caches are coherent; only the access check. */
        emu_read(c, i->seg, emu_ea(c, i), 1);
        return;
    }
    emu_exec_ud(c, i);
}
