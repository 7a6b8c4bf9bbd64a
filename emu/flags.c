/* Lazy condition flags: instructions record what they computed
 * (struct emu_lazy); RFLAGS' arithmetic bits are derived only when an
 * instruction or the outside world looks at them. */
#include "emu/emu_int.h"

static inline unsigned cc_sign(uint64_t v, unsigned size)
{
    return (v >> (size * 8 - 1)) & 1;
}

uint64_t emu_cc_compute(const struct emu_lazy *cc)
{
    unsigned sz = cc->size;
    uint64_t m = emu_mask(sz);
    uint64_t a = cc->src1 & m, b = cc->src2 & m, r = cc->res & m;
    uint64_t cf = 0, of = 0, af = 0, cin;

    switch (cc->op) {
    case CC_EFLAGS:
        return cc->src1 & EMU_CC_MASK;
    case CC_ADD:
        cf = r < a;
        of = cc_sign((a ^ r) & (b ^ r), sz);
        af = (a ^ b ^ r) & 0x10;
        break;
    case CC_ADC:
        cin = ((r - a - b) & m) != 0;
        cf = cin ? r <= a : r < a;
        of = cc_sign((a ^ r) & (b ^ r), sz);
        af = (a ^ b ^ r) & 0x10;
        break;
    case CC_SUB:
        cf = a < b;
        of = cc_sign((a ^ b) & (a ^ r), sz);
        af = (a ^ b ^ r) & 0x10;
        break;
    case CC_SBB:
        cin = ((a - b - r) & m) != 0;
        cf = cin ? a <= b : a < b;
        of = cc_sign((a ^ b) & (a ^ r), sz);
        af = (a ^ b ^ r) & 0x10;
        break;
    case CC_LOGIC:
        break;
    case CC_INC:
        cf = b & 1;
        of = r == (1ULL << (sz * 8 - 1));
        af = (a ^ r) & 0x10;
        break;
    case CC_DEC:
        cf = b & 1;
        of = a == (1ULL << (sz * 8 - 1));
        af = (a ^ r) & 0x10;
        break;
    case CC_MUL:
        /* SF and PF from the low half, ZF and AF clear: what Intel parts
         * do for these "undefined" flags. */
        return (a ? X86_RFLAGS_CF | X86_RFLAGS_OF : 0) |
               (__builtin_parityll(r & 0xff) ? 0 : X86_RFLAGS_PF) |
               (cc_sign(r, sz) ? X86_RFLAGS_SF : 0);
    }
    return (cf ? X86_RFLAGS_CF : 0) |
           (__builtin_parityll(r & 0xff) ? 0 : X86_RFLAGS_PF) |
           (af ? X86_RFLAGS_AF : 0) |
           (r == 0 ? X86_RFLAGS_ZF : 0) |
           (cc_sign(r, sz) ? X86_RFLAGS_SF : 0) |
           (of ? X86_RFLAGS_OF : 0);
}

bool emu_cc_cf(const struct emu_lazy *cc)
{
    uint64_t m = emu_mask(cc->size);

    switch (cc->op) {
    case CC_ADD:
        return (cc->res & m) < (cc->src1 & m);
    case CC_SUB:
        return (cc->src1 & m) < (cc->src2 & m);
    case CC_LOGIC:
        return false;
    case CC_INC:
    case CC_DEC:
        return cc->src2 & 1;
    default:
        return emu_cc_compute(cc) & X86_RFLAGS_CF;
    }
}

bool emu_cc_test(struct emu_cpu *c, unsigned cond)
{
    const struct emu_lazy *cc = &c->cc;
    uint64_t f;
    bool r;

    /* CMP/SUB followed by Jcc is the common pair: answer from the operands. */
    if (cc->op == CC_SUB) {
        unsigned sz = cc->size;
        uint64_t m = emu_mask(sz), a = cc->src1 & m, b = cc->src2 & m;
        int64_t sa = (int64_t)emu_sext(a, sz), sb = (int64_t)emu_sext(b, sz);

        switch (cond >> 1) {
        case 1: r = a < b; goto out;
        case 2: r = a == b; goto out;
        case 3: r = a <= b; goto out;
        case 6: r = sa < sb; goto out;
        case 7: r = sa <= sb; goto out;
        }
    } else if (cc->op == CC_LOGIC) {
        unsigned sz = cc->size;
        uint64_t v = cc->res & emu_mask(sz);
        int64_t sv = (int64_t)emu_sext(v, sz);

        switch (cond >> 1) {
        case 0: r = false; goto out;
        case 1: r = false; goto out;
        case 2: r = v == 0; goto out;
        case 3: r = v == 0; goto out;
        case 4: r = sv < 0; goto out;
        case 6: r = sv < 0; goto out;
        case 7: r = sv <= 0; goto out;
        }
    }
    f = emu_cc_flags(c);
    switch (cond >> 1) {
    case 0: r = f & X86_RFLAGS_OF; break;
    case 1: r = f & X86_RFLAGS_CF; break;
    case 2: r = f & X86_RFLAGS_ZF; break;
    case 3: r = f & (X86_RFLAGS_CF | X86_RFLAGS_ZF); break;
    case 4: r = f & X86_RFLAGS_SF; break;
    case 5: r = f & X86_RFLAGS_PF; break;
    case 6: r = !(f & X86_RFLAGS_SF) != !(f & X86_RFLAGS_OF); break;
    default:
        r = (f & X86_RFLAGS_ZF) || (!(f & X86_RFLAGS_SF) != !(f & X86_RFLAGS_OF));
        break;
    }
out:
    return r ^ (cond & 1);
}

uint64_t emu_get_rflags(struct emu_cpu *c)
{
    return (c->s->rflags & ~EMU_CC_MASK) | emu_cc_flags(c) | X86_RFLAGS_FIXED;
}

void emu_set_rflags(struct emu_cpu *c, uint64_t v)
{
    uint64_t old = c->s->rflags;

    c->s->rflags = (v & ~EMU_CC_MASK & ~(1ULL << 3) & ~(1ULL << 5) & ~(1ULL << 15) &
                    0x3fffffULL) | X86_RFLAGS_FIXED;
    emu_cc_set_flags(c, v);
    if (unlikely((old ^ c->s->rflags) & X86_RFLAGS_AC))
        emu_ac_update(c);
    if (c->s->rflags & (X86_RFLAGS_TF | X86_RFLAGS_RF))
        c->dbg_step = true;  /* single-step or RF: the run loop's slow path */
}
