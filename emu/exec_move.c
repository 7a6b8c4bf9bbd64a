/* Data movement: mov forms, exchange, conditional moves, the stack, flag
 * transfers and the string instructions. */
#include "emu/exec_ops.h"
#include "emu/seg.h"

EMU_HANDLER(exec_mov_EG)
{
    op_set_E(c, i, i->opsize, emu_reg(c, i->reg, i->opsize));
}

EMU_HANDLER(exec_mov_GE)
{
    emu_set_reg(c, i->reg, i->opsize, op_get_E(c, i, i->opsize));
}

EMU_HANDLER(exec_mov_EI)
{
    op_set_E(c, i, i->opsize, i->imm);
}

EMU_HANDLER(exec_mov_rI)
{
    emu_set_reg(c, i->rm, i->opsize, i->imm);
}

EMU_HANDLER(exec_mov_moffs)
{
    uint64_t ea = emu_ea(c, i);

    if (i->op & 2)
        emu_write(c, i->seg, ea, i->opsize, emu_reg(c, R_EAX, i->opsize));
    else
        emu_set_reg(c, R_EAX, i->opsize, emu_read(c, i->seg, ea, i->opsize));
}

EMU_HANDLER(exec_mov_E_sreg)
{
    unsigned sr = i->sub;

    if (sr >= S_NR)
        emu_exec_ud(c, i);
    if (i->mem)
        emu_write(c, i->seg, emu_ea(c, i), 2, c->s->seg[sr].selector);
    else
        emu_set_reg(c, i->rm, i->opsize == 2 ? 2 : 8, c->s->seg[sr].selector);
}

EMU_HANDLER(exec_mov_sreg_E)
{
    unsigned sr = i->sub;
    uint16_t sel;

    if (sr >= S_NR || sr == S_CS)
        emu_exec_ud(c, i);
    sel = (uint16_t)op_get_E(c, i, 2);
    emu_load_seg(c, sr, sel);
    if (sr == S_SS)
        c->s->events.interrupt_shadow |= 2;
}

EMU_HANDLER(exec_movzx)
{
    unsigned ssize = i->op == 0xb6 ? 1 : 2;

    emu_set_reg(c, i->reg, i->opsize, op_get_E(c, i, ssize));
}

EMU_HANDLER(exec_movsx)
{
    unsigned ssize = i->op == 0xbe ? 1 : 2;

    emu_set_reg(c, i->reg, i->opsize, emu_sext(op_get_E(c, i, ssize), ssize));
}

EMU_HANDLER(exec_movsxd)
{
    if (c->mode != EMU_MODE_64)
        emu_exec_ud(c, i);  /* ARPL: not implemented */
    if (i->opsize == 8)
        emu_set_reg(c, i->reg, 8, emu_sext(op_get_E(c, i, 4), 4));
    else
        emu_set_reg(c, i->reg, i->opsize, op_get_E(c, i, i->opsize));
}

EMU_HANDLER(exec_lea)
{
    if (!i->mem)
        emu_exec_ud(c, i);
    emu_set_reg(c, i->reg, i->opsize, emu_ea(c, i));
}

EMU_HANDLER(exec_xchg_EG)
{
    unsigned size = i->opsize;
    uint64_t r = emu_reg(c, i->reg, size), a;
    struct op_rmw rw;

    if (!i->mem) {
        a = emu_reg(c, i->rm, size);
        emu_set_reg(c, i->rm, size, r);
        emu_set_reg(c, i->reg, size, a);
        return;
    }
    /* XCHG with memory is always locked. */
    a = op_rmw_begin(c, i, size, &rw);
    if (rw.p && !((uintptr_t)rw.p & (size - 1))) {
        switch (size) {
        case 1: a = __atomic_exchange_n(rw.p, (uint8_t)r, __ATOMIC_SEQ_CST); break;
        case 2: a = __atomic_exchange_n((uint16_t *)rw.p, (uint16_t)r, __ATOMIC_SEQ_CST); break;
        case 4: a = __atomic_exchange_n((uint32_t *)rw.p, (uint32_t)r, __ATOMIC_SEQ_CST); break;
        default: a = __atomic_exchange_n((uint64_t *)rw.p, r, __ATOMIC_SEQ_CST); break;
        }
    } else {
        op_rmw_end(c, i, size, &rw, r);
    }
    emu_set_reg(c, i->reg, size, a);
}

EMU_HANDLER(exec_xchg_acc)
{
    unsigned size = i->opsize;
    uint64_t a;

    if (i->rm == R_EAX)
        return;  /* NOP (and PAUSE with F3) */
    a = emu_reg(c, R_EAX, size);
    emu_set_reg(c, R_EAX, size, emu_reg(c, i->rm, size));
    emu_set_reg(c, i->rm, size, a);
}

EMU_HANDLER(exec_cmov)
{
    uint64_t v = op_get_E(c, i, i->opsize);

    if (emu_cc_test(c, i->op & 15))
        emu_set_reg(c, i->reg, i->opsize, v);
    else if (i->opsize == 4)
        emu_set_reg(c, i->reg, 4, emu_reg(c, i->reg, 4));
}

EMU_HANDLER(exec_setcc)
{
    op_set_E(c, i, 1, emu_cc_test(c, i->op & 15));
}

/* --- stack -------------------------------------------------------------------- */

unsigned emu_stack_size(struct emu_cpu *c)
{
    if (c->mode == EMU_MODE_64)
        return 8;
    return c->s->seg[S_SS].db ? 4 : 2;
}

static inline uint64_t sp_add(struct emu_cpu *c, unsigned ssize, int64_t delta)
{
    uint64_t m = emu_mask(ssize);
    uint64_t sp = c->s->gpr[R_ESP];

    return (sp & ~m) | ((sp + (uint64_t)delta) & m);
}

void emu_push(struct emu_cpu *c, unsigned size, uint64_t v)
{
    unsigned ssize = emu_stack_size(c);
    uint64_t nsp = sp_add(c, ssize, -(int64_t)size);

    emu_write(c, S_SS, nsp & emu_mask(ssize), size, v);
    c->s->gpr[R_ESP] = nsp;
}

uint64_t emu_pop(struct emu_cpu *c, unsigned size)
{
    unsigned ssize = emu_stack_size(c);
    uint64_t v = emu_read(c, S_SS, c->s->gpr[R_ESP] & emu_mask(ssize), size);

    c->s->gpr[R_ESP] = sp_add(c, ssize, size);
    return v;
}

EMU_HANDLER(exec_push_r)
{
    emu_push(c, i->opsize, emu_reg(c, i->rm, i->opsize));
}

EMU_HANDLER(exec_pop_r)
{
    uint64_t v = emu_pop(c, i->opsize);

    emu_set_reg(c, i->rm, i->opsize, v);
}

EMU_HANDLER(exec_push_imm)
{
    emu_push(c, i->opsize, i->imm);
}

EMU_HANDLER(exec_push_E)
{
    emu_push(c, i->opsize, op_get_E(c, i, i->opsize));
}

EMU_HANDLER(exec_pop_E)
{
    unsigned ssize = emu_stack_size(c);
    uint64_t old = c->s->gpr[R_ESP];
    uint64_t v = emu_read(c, S_SS, old & emu_mask(ssize), i->opsize);

    /* The destination address is computed with the incremented RSP. */
    c->s->gpr[R_ESP] = sp_add(c, ssize, i->opsize);
    if (i->mem) {
        uint64_t la = emu_linear(c, i->seg, emu_ea(c, i), i->opsize, ACC_WRITE);
        uint64_t nsp = c->s->gpr[R_ESP];

        c->s->gpr[R_ESP] = old;  /* a fault must leave RSP unchanged */
        emu_write_la(c, la, i->opsize, v);
        c->s->gpr[R_ESP] = nsp;
    } else {
        emu_set_reg(c, i->rm, i->opsize, v);
    }
}

static unsigned sreg_of(const struct emu_insn *i)
{
    if (i->map == 1)
        return i->op < 0xa8 ? S_FS : S_GS;
    return (i->op >> 3) & 3;
}

EMU_HANDLER(exec_push_sreg)
{
    unsigned ssize = emu_stack_size(c);
    uint64_t nsp = sp_add(c, ssize, -(int64_t)i->opsize);

    /* Recent Intel parts write only the 16-bit selector. */
    emu_write(c, S_SS, nsp & emu_mask(ssize), 2, c->s->seg[sreg_of(i)].selector);
    c->s->gpr[R_ESP] = nsp;
}

EMU_HANDLER(exec_pop_sreg)
{
    unsigned ssize = emu_stack_size(c), sr = sreg_of(i);
    uint16_t sel = (uint16_t)emu_read(c, S_SS, c->s->gpr[R_ESP] & emu_mask(ssize), 2);

    emu_load_seg(c, sr, sel);
    c->s->gpr[R_ESP] = sp_add(c, ssize, i->opsize);
    if (sr == S_SS)
        c->s->events.interrupt_shadow |= 2;
}

EMU_HANDLER(exec_enter)
{
    unsigned size = i->opsize, ssize = emu_stack_size(c);
    uint64_t m = emu_mask(ssize), bp = c->s->gpr[R_EBP];
    unsigned level = i->imm2 & 31;
    uint64_t sp = c->s->gpr[R_ESP], frame;

    sp = (sp & ~m) | ((sp - size) & m);
    emu_write(c, S_SS, sp & m, size, bp);
    frame = sp;
    if (level) {
        for (unsigned k = 1; k < level; k++) {
            uint64_t v;

            bp = (bp & ~m) | ((bp - size) & m);
            v = emu_read(c, S_SS, bp & m, size);
            sp = (sp & ~m) | ((sp - size) & m);
            emu_write(c, S_SS, sp & m, size, v);
        }
        sp = (sp & ~m) | ((sp - size) & m);
        emu_write(c, S_SS, sp & m, size, frame);
    }
    sp = (sp & ~m) | ((sp - i->imm) & m);
    emu_set_reg(c, R_EBP, size, frame);
    c->s->gpr[R_ESP] = sp;
}

EMU_HANDLER(exec_leave)
{
    unsigned ssize = emu_stack_size(c);
    uint64_t m = emu_mask(ssize);
    uint64_t sp = (c->s->gpr[R_ESP] & ~m) | (c->s->gpr[R_EBP] & m);
    uint64_t v = emu_read(c, S_SS, sp & m, i->opsize);

    c->s->gpr[R_ESP] = (sp & ~m) | ((sp + i->opsize) & m);
    emu_set_reg(c, R_EBP, i->opsize, v);
}

/* --- conversions and flags ---------------------------------------------------- */

EMU_HANDLER(exec_cbw)
{
    unsigned half = i->opsize / 2;

    emu_set_reg(c, R_EAX, i->opsize, emu_sext(emu_reg(c, R_EAX, half), half));
}

EMU_HANDLER(exec_cwd)
{
    unsigned size = i->opsize;
    uint64_t a = emu_reg(c, R_EAX, size);

    emu_set_reg(c, R_EDX, size, (a >> (size * 8 - 1)) & 1 ? ~0ULL : 0);
}

EMU_HANDLER(exec_pushf)
{
    uint64_t f = emu_get_rflags(c) & ~(X86_RFLAGS_VM | X86_RFLAGS_RF);

    if ((c->s->rflags & X86_RFLAGS_VM) && (f & X86_RFLAGS_IOPL) != X86_RFLAGS_IOPL)
        emu_fault_err(c, EXC_GP, 0);  /* IOPL-sensitive in vm86 mode */

    emu_push(c, i->opsize, f);
}

EMU_HANDLER(exec_popf)
{
    uint64_t v;

    if ((c->s->rflags & X86_RFLAGS_VM) && (c->s->rflags & X86_RFLAGS_IOPL) != X86_RFLAGS_IOPL)
        emu_fault_err(c, EXC_GP, 0);  /* IOPL-sensitive in vm86 mode */
    v = emu_pop(c, i->opsize);
    uint64_t old = emu_get_rflags(c);
    uint64_t mask = EMU_CC_MASK | X86_RFLAGS_TF | X86_RFLAGS_DF | X86_RFLAGS_NT |
                    X86_RFLAGS_AC | X86_RFLAGS_ID;
    unsigned iopl = (old >> 12) & 3;

    if (c->cpl == 0)
        mask |= X86_RFLAGS_IOPL;
    if (c->cpl <= iopl)
        mask |= X86_RFLAGS_IF;
    if (i->opsize == 2)
        mask &= 0xffff;
    emu_set_rflags(c, ((old & ~mask) | (v & mask)) & ~X86_RFLAGS_RF);
}

EMU_HANDLER(exec_sahf)
{
    uint64_t f = emu_cc_flags(c) & ~0xffULL;
    uint64_t ah = (c->s->gpr[R_EAX] >> 8) & 0xff;

    emu_cc_set_flags(c, f | (ah & (X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF |
                                   X86_RFLAGS_ZF | X86_RFLAGS_SF)));
}

EMU_HANDLER(exec_lahf)
{
    uint64_t f = emu_cc_flags(c) & 0xff;

    emu_set_reg(c, 16, 1, f | X86_RFLAGS_FIXED);
}

EMU_HANDLER(exec_flagop)
{
    uint64_t f;

    switch (i->op) {
    case 0xf5: /* CMC */
        f = emu_cc_flags(c);
        emu_cc_set_flags(c, f ^ X86_RFLAGS_CF);
        break;
    case 0xf8: /* CLC */
        emu_cc_set_flags(c, emu_cc_flags(c) & ~X86_RFLAGS_CF);
        break;
    case 0xf9: /* STC */
        emu_cc_set_flags(c, emu_cc_flags(c) | X86_RFLAGS_CF);
        break;
    case 0xfc: /* CLD */
        c->s->rflags &= ~X86_RFLAGS_DF;
        break;
    case 0xfd: /* STD */
        c->s->rflags |= X86_RFLAGS_DF;
        break;
    }
}

EMU_HANDLER(exec_xlat)
{
    uint64_t ea = (c->s->gpr[R_EBX] + (c->s->gpr[R_EAX] & 0xff)) & emu_mask(i->addrsize);

    emu_set_reg(c, R_EAX, 1, emu_read(c, i->seg, ea, 1));
}

EMU_HANDLER(exec_nop)
{
}

/* 0F 0D, 0F 18-1F: prefetches, hints, NOP Ev, ENDBR64 (F3 0F 1E FA). */
EMU_HANDLER(exec_hint_nop)
{
}

/* --- strings ------------------------------------------------------------------ */

/* Iterations per execution of a REP instruction before it yields (RIP
 * stays on it), so interrupts and kicks are seen during long copies. */
#define REP_CHUNK 4096

struct str_state {
    uint64_t amask;
    int64_t step;
};

static inline void str_init(struct emu_cpu *c, const struct emu_insn *i, struct str_state *st)
{
    st->amask = emu_mask(i->addrsize);
    st->step = (c->s->rflags & X86_RFLAGS_DF) ? -(int64_t)i->opsize : i->opsize;
}

static inline void str_adv(struct emu_cpu *c, const struct str_state *st, unsigned r,
                           unsigned asize)
{
    emu_set_reg(c, r, asize, c->s->gpr[r] + (uint64_t)st->step);
}

/* Returns the number of iterations to run now, 0 if RCX is zero. */
static inline uint64_t str_count(struct emu_cpu *c, const struct emu_insn *i,
                                 const struct str_state *st)
{
    uint64_t n;

    if (!i->rep)
        return 1;
    n = c->s->gpr[R_ECX] & st->amask;
    return n;
}

static inline void str_yield(struct emu_cpu *c)
{
    c->s->rip = c->insn_rip;
    emu_break_block(c);
}

/* Bulk REP MOVS/STOS: 64-bit mode and addressing, DF clear.  As many whole
 * elements (at most max) as fit in the current page of the destination
 * (and source) are moved at once when the TLB gives plain RAM for them: a
 * tag with any flag bit set (MMIO, a code page, dirty logging, a data
 * breakpoint, #AC) misses, and so does anything the slow path must see.
 * Returns the number of elements done, 0 if the caller must do the next
 * one itself.  Nothing here can fault. */
static inline bool str_bulk_ok(struct emu_cpu *c, const struct emu_insn *i,
                               const struct str_state *st)
{
    return i->rep && c->mode == EMU_MODE_64 && i->addrsize == 8 && st->step > 0;
}

static uint8_t *str_bulk_ptr(struct emu_cpu *c, uint64_t la, bool write, unsigned sz,
                             uint64_t *room)
{
    struct emu_tlb_entry *e = emu_tlb_entry(c, la);
    uint64_t tag = write ? e->tag_write : e->tag_read;
    uint64_t r = (0x1000 - (la & 0xfff)) / sz;

    if (tag != (la & ~0xfffULL) || !r)
        return NULL;
    if (r < *room)
        *room = r;
    return (uint8_t *)(uintptr_t)(la + e->addend);
}

static uint64_t stos_bulk(struct emu_cpu *c, unsigned sz, uint64_t v, uint64_t max)
{
    uint64_t n = max;
    uint8_t *d = str_bulk_ptr(c, c->s->gpr[R_EDI], true, sz, &n);

    if (!d)
        return 0;
    if (sz == 1) {
        memset(d, (int)(v & 0xff), n);
    } else {
        for (uint64_t k = 0; k < n; k++)
            emu_store_host(d + k * sz, sz, v);
    }
    c->s->gpr[R_EDI] += n * sz;
    c->s->gpr[R_ECX] -= n;
    return n;
}

static uint64_t movs_bulk(struct emu_cpu *c, const struct emu_insn *i, unsigned sz,
                          uint64_t max)
{
    uint64_t n = max;
    uint8_t *src = str_bulk_ptr(c, emu_linear(c, i->seg, c->s->gpr[R_ESI], sz, ACC_READ),
                                false, sz, &n);
    uint8_t *dst = src ? str_bulk_ptr(c, c->s->gpr[R_EDI], true, sz, &n) : NULL;

    /* A destination inside the source's range ahead of it would see
     * elements this copy wrote (an element at a time, forwards). */
    if (!dst || (dst > src && dst < src + n * sz))
        return 0;
    memmove(dst, src, n * sz);
    c->s->gpr[R_ESI] += n * sz;
    c->s->gpr[R_EDI] += n * sz;
    c->s->gpr[R_ECX] -= n;
    return n;
}

EMU_HANDLER(exec_movs)
{
    struct str_state st;
    uint64_t n;
    unsigned as = i->addrsize, sz = i->opsize;
    bool bulk;

    str_init(c, i, &st);
    n = str_count(c, i, &st);
    bulk = str_bulk_ok(c, i, &st);
    for (uint64_t k = 0; k < n; k++) {
        uint64_t v;

        if (k >= REP_CHUNK) {
            str_yield(c);
            return;
        }
        if (bulk) {
            uint64_t done = movs_bulk(c, i, sz, (n < REP_CHUNK ? n : REP_CHUNK) - k);

            if (done) {
                k += done - 1;
                continue;
            }
        }
        v = emu_read(c, i->seg, c->s->gpr[R_ESI] & st.amask, sz);
        emu_write(c, S_ES, c->s->gpr[R_EDI] & st.amask, sz, v);
        str_adv(c, &st, R_ESI, as);
        str_adv(c, &st, R_EDI, as);
        if (i->rep)
            emu_set_reg(c, R_ECX, as, c->s->gpr[R_ECX] - 1);
    }
}

EMU_HANDLER(exec_stos)
{
    struct str_state st;
    uint64_t n, v = emu_reg(c, R_EAX, i->opsize);
    unsigned as = i->addrsize, sz = i->opsize;
    bool bulk;

    str_init(c, i, &st);
    n = str_count(c, i, &st);
    bulk = str_bulk_ok(c, i, &st);
    for (uint64_t k = 0; k < n; k++) {
        if (k >= REP_CHUNK) {
            str_yield(c);
            return;
        }
        if (bulk) {
            uint64_t done = stos_bulk(c, sz, v, (n < REP_CHUNK ? n : REP_CHUNK) - k);

            if (done) {
                k += done - 1;
                continue;
            }
        }
        emu_write(c, S_ES, c->s->gpr[R_EDI] & st.amask, sz, v);
        str_adv(c, &st, R_EDI, as);
        if (i->rep)
            emu_set_reg(c, R_ECX, as, c->s->gpr[R_ECX] - 1);
    }
}

EMU_HANDLER(exec_lods)
{
    struct str_state st;
    uint64_t n;
    unsigned as = i->addrsize, sz = i->opsize;

    str_init(c, i, &st);
    n = str_count(c, i, &st);
    for (uint64_t k = 0; k < n; k++) {
        if (k == REP_CHUNK) {
            str_yield(c);
            return;
        }
        emu_set_reg(c, R_EAX, sz, emu_read(c, i->seg, c->s->gpr[R_ESI] & st.amask, sz));
        str_adv(c, &st, R_ESI, as);
        if (i->rep)
            emu_set_reg(c, R_ECX, as, c->s->gpr[R_ECX] - 1);
    }
}

/* CMPS/SCAS: REPE (F3) continues while equal, REPNE (F2) while not. */
static inline bool str_cmp_done(struct emu_cpu *c, const struct emu_insn *i)
{
    bool zf = (c->cc.res & emu_mask(c->cc.size)) == 0;

    return i->rep == 0xf3 ? !zf : zf;
}

EMU_HANDLER(exec_cmps)
{
    struct str_state st;
    uint64_t n;
    unsigned as = i->addrsize, sz = i->opsize;

    str_init(c, i, &st);
    n = str_count(c, i, &st);
    for (uint64_t k = 0; k < n; k++) {
        uint64_t a, b;

        if (k == REP_CHUNK) {
            str_yield(c);
            return;
        }
        a = emu_read(c, i->seg, c->s->gpr[R_ESI] & st.amask, sz);
        b = emu_read(c, S_ES, c->s->gpr[R_EDI] & st.amask, sz);
        emu_cc_set(c, CC_SUB, sz, a, b, (a - b) & emu_mask(sz));
        str_adv(c, &st, R_ESI, as);
        str_adv(c, &st, R_EDI, as);
        if (i->rep) {
            emu_set_reg(c, R_ECX, as, c->s->gpr[R_ECX] - 1);
            if (str_cmp_done(c, i))
                return;
        }
    }
}

EMU_HANDLER(exec_scas)
{
    struct str_state st;
    uint64_t n, a = emu_reg(c, R_EAX, i->opsize);
    unsigned as = i->addrsize, sz = i->opsize;

    str_init(c, i, &st);
    n = str_count(c, i, &st);
    for (uint64_t k = 0; k < n; k++) {
        uint64_t b;

        if (k == REP_CHUNK) {
            str_yield(c);
            return;
        }
        b = emu_read(c, S_ES, c->s->gpr[R_EDI] & st.amask, sz);
        emu_cc_set(c, CC_SUB, sz, a, b, (a - b) & emu_mask(sz));
        str_adv(c, &st, R_EDI, as);
        if (i->rep) {
            emu_set_reg(c, R_ECX, as, c->s->gpr[R_ECX] - 1);
            if (str_cmp_done(c, i))
                return;
        }
    }
}
