/* Operand helpers shared by the instruction handlers. */
#ifndef VMON_EMU_EXEC_OPS_H
#define VMON_EMU_EXEC_OPS_H

#include "emu/exec.h"

/* Read the ModRM r/m operand. */
static inline uint64_t op_get_E(struct emu_cpu *c, const struct emu_insn *i, unsigned size)
{
    if (i->mem)
        return emu_read(c, i->seg, emu_ea(c, i), size);
    return emu_reg(c, i->rm, size);
}

static inline void op_set_E(struct emu_cpu *c, const struct emu_insn *i, unsigned size,
                            uint64_t v)
{
    if (i->mem)
        emu_write(c, i->seg, emu_ea(c, i), size, v);
    else
        emu_set_reg(c, i->rm, size, v);
}

/* A read-modify-write destination: translated for writing before it is
 * read, so a fault leaves nothing changed. */
struct op_rmw {
    uint8_t *p;     /* host pointer, or NULL: go through emu_write_la */
    uint64_t la;
    bool mem;
};

static inline uint64_t op_rmw_begin(struct emu_cpu *c, const struct emu_insn *i, unsigned size,
                                    struct op_rmw *r)
{
    r->mem = i->mem;
    if (!i->mem)
        return emu_reg(c, i->rm, size);
    r->la = emu_linear(c, i->seg, emu_ea(c, i), size, ACC_WRITE);
    r->p = emu_rmw_ptr(c, r->la, size);
    return r->p ? emu_load_host(r->p, size) : emu_read_la(c, r->la, size);
}

static inline void op_rmw_end(struct emu_cpu *c, const struct emu_insn *i, unsigned size,
                              struct op_rmw *r, uint64_t v)
{
    if (!r->mem)
        emu_set_reg(c, i->rm, size, v);
    else if (r->p)
        emu_store_host(r->p, size, v);
    else
        emu_write_la(c, r->la, size, v);
}

/* LOCK'd update of RAM: compare-and-swap old -> v; false if memory
 * changed meanwhile (the caller recomputes).  Unaligned or non-RAM
 * operands fall back to a plain store: vCPUs share one thread today. */
static inline bool op_rmw_cas(struct emu_cpu *c, const struct emu_insn *i, unsigned size,
                              struct op_rmw *r, uint64_t *old, uint64_t v)
{
    if (!i->lock || !r->mem || !r->p || ((uintptr_t)r->p & (size - 1))) {
        op_rmw_end(c, i, size, r, v);
        return true;
    }
    switch (size) {
    case 1: {
        uint8_t o = (uint8_t)*old;
        bool ok = __atomic_compare_exchange_n(r->p, &o, (uint8_t)v, false, __ATOMIC_SEQ_CST,
                                              __ATOMIC_SEQ_CST);
        *old = o;
        return ok;
    }
    case 2: {
        uint16_t o = (uint16_t)*old;
        bool ok = __atomic_compare_exchange_n((uint16_t *)r->p, &o, (uint16_t)v, false,
                                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        *old = o;
        return ok;
    }
    case 4: {
        uint32_t o = (uint32_t)*old;
        bool ok = __atomic_compare_exchange_n((uint32_t *)r->p, &o, (uint32_t)v, false,
                                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        *old = o;
        return ok;
    }
    default: {
        uint64_t o = *old;
        bool ok = __atomic_compare_exchange_n((uint64_t *)r->p, &o, v, false,
                                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        *old = o;
        return ok;
    }
    }
}

static inline uint64_t op_flags_keep(struct emu_cpu *c)
{
    return emu_cc_flags(c);
}

#endif
