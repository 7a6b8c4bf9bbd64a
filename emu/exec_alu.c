/* Integer arithmetic and logic: ALU ops, inc/dec/neg/not, multiply and
 * divide, shifts and rotates, bit tests and scans, cmpxchg/xadd, bswap. */
#include "emu/exec_ops.h"

#define F_CF X86_RFLAGS_CF
#define F_PF X86_RFLAGS_PF
#define F_AF X86_RFLAGS_AF
#define F_ZF X86_RFLAGS_ZF
#define F_SF X86_RFLAGS_SF
#define F_OF X86_RFLAGS_OF

static inline uint64_t msb(uint64_t v, unsigned size)
{
    return (v >> (size * 8 - 1)) & 1;
}

/* SF, ZF, PF of a result. */
static inline uint64_t szp(uint64_t r, unsigned size)
{
    r &= emu_mask(size);
    return (r == 0 ? F_ZF : 0) | (msb(r, size) ? F_SF : 0) |
           (__builtin_parityll(r & 0xff) ? 0 : F_PF);
}

/* op: 0 add, 1 or, 2 adc, 3 sbb, 4 and, 5 sub, 6 xor, 7 cmp. */
static inline uint64_t alu_op(struct emu_cpu *c, unsigned op, unsigned size, uint64_t a,
                              uint64_t b, uint64_t cin)
{
    uint64_t r;

    switch (op) {
    case 0: r = a + b; emu_cc_set(c, CC_ADD, size, a, b, r); break;
    case 1: r = a | b; emu_cc_set(c, CC_LOGIC, size, 0, 0, r); break;
    case 2: r = a + b + cin; emu_cc_set(c, CC_ADC, size, a, b, r); break;
    case 3: r = a - b - cin; emu_cc_set(c, CC_SBB, size, a, b, r); break;
    case 4: r = a & b; emu_cc_set(c, CC_LOGIC, size, 0, 0, r); break;
    case 6: r = a ^ b; emu_cc_set(c, CC_LOGIC, size, 0, 0, r); break;
    default: r = a - b; emu_cc_set(c, CC_SUB, size, a, b, r); break;
    }
    return r & emu_mask(size);
}

static void alu_rmw(struct emu_cpu *c, const struct emu_insn *i, unsigned op, uint64_t src)
{
    unsigned size = i->opsize;
    uint64_t cin = (op == 2 || op == 3) ? emu_cc_cf(&c->cc) : 0;
    struct op_rmw r;
    uint64_t a;

    src &= emu_mask(size);
    if (op == 7) {
        alu_op(c, 7, size, op_get_E(c, i, size), src, 0);
        return;
    }
    a = op_rmw_begin(c, i, size, &r);
    for (;;) {
        uint64_t v = alu_op(c, op, size, a, src, cin);

        if (op_rmw_cas(c, i, size, &r, &a, v))
            break;
    }
}

EMU_HANDLER(exec_alu_EG)
{
    alu_rmw(c, i, (i->op >> 3) & 7, emu_reg(c, i->reg, i->opsize));
}

EMU_HANDLER(exec_alu_EI)
{
    alu_rmw(c, i, i->sub, i->imm);
}

EMU_HANDLER(exec_alu_GE)
{
    unsigned op = (i->op >> 3) & 7, size = i->opsize;
    uint64_t cin = (op == 2 || op == 3) ? emu_cc_cf(&c->cc) : 0;
    uint64_t b = op_get_E(c, i, size);
    uint64_t r = alu_op(c, op, size, emu_reg(c, i->reg, size), b, cin);

    if (op != 7)
        emu_set_reg(c, i->reg, size, r);
}

EMU_HANDLER(exec_alu_AI)
{
    unsigned op = (i->op >> 3) & 7, size = i->opsize;
    uint64_t cin = (op == 2 || op == 3) ? emu_cc_cf(&c->cc) : 0;
    uint64_t r = alu_op(c, op, size, emu_reg(c, R_EAX, size), i->imm & emu_mask(size), cin);

    if (op != 7)
        emu_set_reg(c, R_EAX, size, r);
}

EMU_HANDLER(exec_test_EG)
{
    uint64_t r = op_get_E(c, i, i->opsize) & emu_reg(c, i->reg, i->opsize);

    emu_cc_set(c, CC_LOGIC, i->opsize, 0, 0, r);
}

EMU_HANDLER(exec_test_AI)
{
    emu_cc_set(c, CC_LOGIC, i->opsize, 0, 0, emu_reg(c, R_EAX, i->opsize) & i->imm);
}

EMU_HANDLER(exec_test_EI)
{
    emu_cc_set(c, CC_LOGIC, i->opsize, 0, 0, op_get_E(c, i, i->opsize) & i->imm);
}

EMU_HANDLER(exec_not)
{
    struct op_rmw r;
    uint64_t a = op_rmw_begin(c, i, i->opsize, &r);

    while (!op_rmw_cas(c, i, i->opsize, &r, &a, ~a & emu_mask(i->opsize)))
        ;
}

EMU_HANDLER(exec_neg)
{
    struct op_rmw r;
    uint64_t a = op_rmw_begin(c, i, i->opsize, &r);

    for (;;) {
        uint64_t v = (0 - a) & emu_mask(i->opsize);

        emu_cc_set(c, CC_SUB, i->opsize, 0, a, v);
        if (op_rmw_cas(c, i, i->opsize, &r, &a, v))
            break;
    }
}

static void incdec(struct emu_cpu *c, const struct emu_insn *i, bool dec)
{
    uint64_t cf = emu_cc_cf(&c->cc);
    struct op_rmw r;
    uint64_t a = op_rmw_begin(c, i, i->opsize, &r);

    for (;;) {
        uint64_t v = (dec ? a - 1 : a + 1) & emu_mask(i->opsize);

        emu_cc_set(c, dec ? CC_DEC : CC_INC, i->opsize, a, cf, v);
        if (op_rmw_cas(c, i, i->opsize, &r, &a, v))
            break;
    }
}

EMU_HANDLER(exec_inc_E)
{
    incdec(c, i, false);
}

EMU_HANDLER(exec_dec_E)
{
    incdec(c, i, true);
}

/* 40-4F outside 64-bit mode. */
EMU_HANDLER(exec_incdec_r)
{
    unsigned r = i->op & 7, size = i->opsize;
    uint64_t cf = emu_cc_cf(&c->cc), a = emu_reg(c, r, size);
    bool dec = i->op & 8;
    uint64_t v = (dec ? a - 1 : a + 1) & emu_mask(size);

    emu_cc_set(c, dec ? CC_DEC : CC_INC, size, a, cf, v);
    emu_set_reg(c, r, size, v);
}

/* --- multiply and divide ---------------------------------------------------- */

/* Intel leaves SF/ZF/PF/AF "undefined" after MUL/IMUL; the lazy CC_MUL
 * derives them from the low half of the result. */
static void mul_flags(struct emu_cpu *c, unsigned size, uint64_t low, bool ovf)
{
    emu_cc_set(c, CC_MUL, size, ovf, 0, low);
}

EMU_HANDLER(exec_mul)
{
    unsigned size = i->opsize;
    uint64_t b = op_get_E(c, i, size), a = emu_reg(c, R_EAX, size);

    switch (size) {
    case 1: {
        uint64_t r = a * b;

        emu_set_reg(c, R_EAX, 2, r);
        mul_flags(c, 1, r, (r >> 8) != 0);
        break;
    }
    case 2: {
        uint64_t r = a * b;

        emu_set_reg(c, R_EAX, 2, r);
        emu_set_reg(c, R_EDX, 2, r >> 16);
        mul_flags(c, 2, r, (r >> 16) != 0);
        break;
    }
    case 4: {
        uint64_t r = a * b;

        emu_set_reg(c, R_EAX, 4, r);
        emu_set_reg(c, R_EDX, 4, r >> 32);
        mul_flags(c, 4, r, (r >> 32) != 0);
        break;
    }
    default: {
        unsigned __int128 r = (unsigned __int128)a * b;

        c->s->gpr[R_EAX] = (uint64_t)r;
        c->s->gpr[R_EDX] = (uint64_t)(r >> 64);
        mul_flags(c, 8, (uint64_t)r, (uint64_t)(r >> 64) != 0);
        break;
    }
    }
}

EMU_HANDLER(exec_imul1)
{
    unsigned size = i->opsize;
    int64_t b = (int64_t)emu_sext(op_get_E(c, i, size), size);
    int64_t a = (int64_t)emu_sext(emu_reg(c, R_EAX, size), size);

    switch (size) {
    case 1: {
        int64_t r = a * b;

        emu_set_reg(c, R_EAX, 2, (uint64_t)r);
        mul_flags(c, 1, (uint64_t)r, r != (int8_t)r);
        break;
    }
    case 2: {
        int64_t r = a * b;

        emu_set_reg(c, R_EAX, 2, (uint64_t)r);
        emu_set_reg(c, R_EDX, 2, (uint64_t)r >> 16);
        mul_flags(c, 2, (uint64_t)r, r != (int16_t)r);
        break;
    }
    case 4: {
        int64_t r = a * b;

        emu_set_reg(c, R_EAX, 4, (uint64_t)r);
        emu_set_reg(c, R_EDX, 4, (uint64_t)r >> 32);
        mul_flags(c, 4, (uint64_t)r, r != (int32_t)r);
        break;
    }
    default: {
        __int128 r = (__int128)a * b;

        c->s->gpr[R_EAX] = (uint64_t)r;
        c->s->gpr[R_EDX] = (uint64_t)((unsigned __int128)r >> 64);
        mul_flags(c, 8, (uint64_t)r, r != (int64_t)r);
        break;
    }
    }
}

static void imul2(struct emu_cpu *c, const struct emu_insn *i, int64_t a, int64_t b)
{
    unsigned size = i->opsize;
    __int128 r = (__int128)a * b;
    uint64_t low = (uint64_t)r & emu_mask(size);

    emu_set_reg(c, i->reg, size, low);
    mul_flags(c, size, low, r != (__int128)(int64_t)emu_sext(low, size));
}

EMU_HANDLER(exec_imul_GE)
{
    unsigned size = i->opsize;

    imul2(c, i, (int64_t)emu_sext(emu_reg(c, i->reg, size), size),
          (int64_t)emu_sext(op_get_E(c, i, size), size));
}

EMU_HANDLER(exec_imul_GEI)
{
    unsigned size = i->opsize;

    imul2(c, i, (int64_t)emu_sext(op_get_E(c, i, size), size),
          (int64_t)emu_sext(i->imm, size));
}

EMU_HANDLER(exec_div)
{
    unsigned size = i->opsize;
    uint64_t b = op_get_E(c, i, size);

    if (b == 0)
        emu_fault(c, EXC_DE);
    if (size == 8) {
        unsigned __int128 n = ((unsigned __int128)c->s->gpr[R_EDX] << 64) | c->s->gpr[R_EAX];
        unsigned __int128 q = n / b;

        if (q >> 64)
            emu_fault(c, EXC_DE);
        c->s->gpr[R_EAX] = (uint64_t)q;
        c->s->gpr[R_EDX] = (uint64_t)(n % b);
    } else {
        unsigned bits = size * 8;
        uint64_t n = size == 1 ? emu_reg(c, R_EAX, 2)
                               : (emu_reg(c, R_EDX, size) << bits) | emu_reg(c, R_EAX, size);
        uint64_t q = n / b;

        if (q >> bits)
            emu_fault(c, EXC_DE);
        if (size == 1) {
            emu_set_reg(c, R_EAX, 2, (q & 0xff) | ((n % b) << 8));
        } else {
            emu_set_reg(c, R_EAX, size, q);
            emu_set_reg(c, R_EDX, size, n % b);
        }
    }
}

EMU_HANDLER(exec_idiv)
{
    unsigned size = i->opsize;
    int64_t b = (int64_t)emu_sext(op_get_E(c, i, size), size);

    if (b == 0)
        emu_fault(c, EXC_DE);
    if (size == 8) {
        __int128 n = (__int128)(((unsigned __int128)c->s->gpr[R_EDX] << 64) | c->s->gpr[R_EAX]);
        __int128 q, rem;

        if (b == -1 && n == (__int128)((unsigned __int128)1 << 127))
            emu_fault(c, EXC_DE);
        q = n / b;
        rem = n % b;
        if (q != (int64_t)q)
            emu_fault(c, EXC_DE);
        c->s->gpr[R_EAX] = (uint64_t)q;
        c->s->gpr[R_EDX] = (uint64_t)rem;
    } else {
        unsigned bits = size * 8;
        int64_t n = size == 1 ? (int64_t)emu_sext(emu_reg(c, R_EAX, 2), 2)
                              : (int64_t)((emu_reg(c, R_EDX, size) << bits) | emu_reg(c, R_EAX, size));
        int64_t q, rem;

        if (size == 4)
            n = (int64_t)((uint64_t)emu_reg(c, R_EDX, 4) << 32 | emu_reg(c, R_EAX, 4));
        else if (size == 2)
            n = (int32_t)((uint32_t)emu_reg(c, R_EDX, 2) << 16 | (uint32_t)emu_reg(c, R_EAX, 2));
        if (size == 4 && b == -1 && n == INT64_MIN)
            emu_fault(c, EXC_DE);
        q = n / b;
        rem = n % b;
        if (q != (int64_t)emu_sext((uint64_t)q, size))
            emu_fault(c, EXC_DE);
        if (size == 1) {
            emu_set_reg(c, R_EAX, 2, ((uint64_t)q & 0xff) | (((uint64_t)rem & 0xff) << 8));
        } else {
            emu_set_reg(c, R_EAX, size, (uint64_t)q);
            emu_set_reg(c, R_EDX, size, (uint64_t)rem);
        }
    }
}

/* --- shifts and rotates ------------------------------------------------------ */

static unsigned shift_count(struct emu_cpu *c, const struct emu_insn *i)
{
    unsigned cnt;

    if (i->op == 0xc0 || i->op == 0xc1)
        cnt = (unsigned)i->imm;
    else if (i->op == 0xd2 || i->op == 0xd3)
        cnt = (unsigned)c->s->gpr[R_ECX];
    else
        cnt = 1;
    return cnt & (i->opsize == 8 ? 0x3f : 0x1f);
}

EMU_HANDLER(exec_shift)
{
    unsigned size = i->opsize, bits = size * 8, cnt = shift_count(c, i);
    uint64_t m = emu_mask(size), f, r, cf, of;
    struct op_rmw rw;
    uint64_t a;

    if (!cnt) {
        /* No flags change, but the operand is still accessed and a 32-bit
         * register is still written (zero-extended). */
        a = op_rmw_begin(c, i, size, &rw);
        if (!i->mem && size == 4)
            emu_set_reg(c, i->rm, 4, a);
        return;
    }
    a = op_rmw_begin(c, i, size, &rw);
    f = emu_cc_flags(c);
    switch (i->sub) {
    case 0: { /* ROL */
        unsigned k = cnt & (bits - 1);

        r = k ? ((a << k) | (a >> (bits - k))) & m : a;
        cf = r & 1;
        of = msb(r, size) ^ cf;
        f = (f & ~(F_CF | F_OF)) | (cf ? F_CF : 0) | (of ? F_OF : 0);
        break;
    }
    case 1: { /* ROR */
        unsigned k = cnt & (bits - 1);

        r = k ? ((a >> k) | (a << (bits - k))) & m : a;
        cf = msb(r, size);
        of = cf ^ ((r >> (bits - 2)) & 1);
        f = (f & ~(F_CF | F_OF)) | (cf ? F_CF : 0) | (of ? F_OF : 0);
        break;
    }
    case 2: { /* RCL */
        unsigned k = size < 4 ? cnt % (bits + 1) : cnt;
        uint64_t c0 = f & F_CF;

        if (!k)
            return;  /* a whole turn through CF: nothing changes */

        r = a;
        cf = c0;
        for (unsigned n = 0; n < k; n++) {
            uint64_t out = msb(r, size);

            r = ((r << 1) | cf) & m;
            cf = out;
        }
        of = msb(r, size) ^ cf;
        f = (f & ~(F_CF | F_OF)) | (cf ? F_CF : 0) | (of ? F_OF : 0);
        break;
    }
    case 3: { /* RCR */
        unsigned k = size < 4 ? cnt % (bits + 1) : cnt;

        if (!k)
            return;

        r = a;
        cf = f & F_CF;
        for (unsigned n = 0; n < k; n++) {
            uint64_t out = r & 1;

            r = (r >> 1) | (cf << (bits - 1));
            cf = out;
        }
        of = msb(r, size) ^ ((r >> (bits - 2)) & 1);
        f = (f & ~(F_CF | F_OF)) | (cf ? F_CF : 0) | (of ? F_OF : 0);
        break;
    }
    case 4: case 6: /* SHL/SAL */
        r = cnt < 64 ? (a << cnt) & m : 0;
        cf = cnt <= bits ? (a >> (bits - cnt)) & 1 : 0;
        of = msb(r, size) ^ cf;
        f = (f & ~EMU_CC_MASK) | szp(r, size) | (cf ? F_CF : 0) | (of ? F_OF : 0);
        break;
    case 5: /* SHR */
        r = cnt < 64 ? a >> cnt : 0;
        cf = (a >> (cnt - 1)) & 1;
        of = cnt == 1 ? msb(a, size) : 0;
        f = (f & ~EMU_CC_MASK) | szp(r, size) | (cf ? F_CF : 0) | (of ? F_OF : 0);
        break;
    default: { /* SAR */
        int64_t sa = (int64_t)emu_sext(a, size);

        r = (uint64_t)(sa >> (cnt < 64 ? cnt : 63)) & m;
        cf = (uint64_t)(sa >> (cnt - 1)) & 1;
        f = (f & ~EMU_CC_MASK) | szp(r, size) | (cf ? F_CF : 0);
        break;
    }
    }
    /* For counts above one OF is "undefined"; Intel parts compute it from
     * the first single-bit step, so the count-1 rule applies to the
     * original operand. */
    switch (i->sub) {
    case 1: of = (a & 1) ^ msb(a, size); break;
    case 3: of = msb(a, size) ^ !!(emu_cc_flags(c) & F_CF); break;
    case 5: of = msb(a, size); break;
    case 7: of = 0; break;
    default: of = msb(a, size) ^ ((a >> (bits - 2)) & 1); break;
    }
    /* ...except register ROL/ROR by an immediate that is not 1 modulo the
     * width:
     * those leave OF alone (measured on the host). */
    if ((i->op == 0xc0 || i->op == 0xc1) && i->sub < 2 && !i->mem && (cnt & (bits - 1)) != 1)
        of = emu_cc_flags(c) & F_OF;
    f = (f & ~F_OF) | (of ? F_OF : 0);
    op_rmw_end(c, i, size, &rw, r);
    emu_cc_set_flags(c, f);
}

static void shxd(struct emu_cpu *c, const struct emu_insn *i, bool left)
{
    unsigned size = i->opsize, bits = size * 8;
    unsigned cnt = (unsigned)(i->op == 0xa4 || i->op == 0xac ? i->imm : c->s->gpr[R_ECX]);
    uint64_t m = emu_mask(size), src = emu_reg(c, i->reg, size), f, r, cf;
    struct op_rmw rw;
    uint64_t a;

    cnt &= size == 8 ? 63 : 31;
    if (!cnt) {
        a = op_rmw_begin(c, i, size, &rw);
        if (!i->mem && size == 4)
            emu_set_reg(c, i->rm, 4, a);
        return;
    }
    a = op_rmw_begin(c, i, size, &rw);
    f = emu_cc_flags(c);
    if (size == 2) {
        /* Counts above 16 shift through a 48-bit temporary, as Intel
         * parts do: dst:src:dst for SHLD, dst:src:dst read downwards for
         * SHRD. */
        uint64_t t = (a << 32) | (src << 16) | a;

        if (left) {
            r = (t << cnt) >> 32 & m;
            cf = (t >> (48 - cnt)) & 1;
        } else {
            r = (t >> cnt) & m;
            cf = (t >> (cnt - 1)) & 1;
        }
    } else if (left) {
        r = ((a << cnt) | (src >> (bits - cnt))) & m;
        cf = (a >> (bits - cnt)) & 1;
    } else {
        r = ((a >> cnt) | (src << (bits - cnt))) & m;
        cf = (a >> (cnt - 1)) & 1;
    }
    /* OF from the first single-bit step, as Intel parts do. */
    f = (f & ~EMU_CC_MASK) | szp(r, size) | (cf ? F_CF : 0) |
        ((left ? msb(a, size) ^ ((a >> (bits - 2)) & 1) : msb(a, size) ^ (src & 1)) ? F_OF : 0);
    op_rmw_end(c, i, size, &rw, r);
    emu_cc_set_flags(c, f);
}

EMU_HANDLER(exec_shld)
{
    shxd(c, i, true);
}

EMU_HANDLER(exec_shrd)
{
    shxd(c, i, false);
}

/* --- bit operations ------------------------------------------------------------ */

/* sub: 4 bt, 5 bts, 6 btr, 7 btc. */
static void bt_common(struct emu_cpu *c, const struct emu_insn *i, unsigned sub, uint64_t bit,
                      int64_t byte_off)
{
    unsigned size = i->opsize;
    uint64_t a, v, f;
    struct op_rmw rw;
    bool old;

    if (sub == 4) {
        if (i->mem)
            a = emu_read(c, i->seg, (emu_ea(c, i) + (uint64_t)byte_off) & emu_mask(i->addrsize),
                         size);
        else
            a = emu_reg(c, i->rm, size);
        old = (a >> bit) & 1;
    } else {
        struct emu_insn shifted = *i;

        shifted.disp += byte_off;
        a = op_rmw_begin(c, &shifted, size, &rw);
        for (;;) {
            old = (a >> bit) & 1;
            v = sub == 5 ? a | (1ULL << bit) : sub == 6 ? a & ~(1ULL << bit) : a ^ (1ULL << bit);
            if (op_rmw_cas(c, &shifted, size, &rw, &a, v))
                break;
        }
    }
    f = emu_cc_flags(c);
    emu_cc_set_flags(c, (f & ~F_CF) | (old ? F_CF : 0));
}

EMU_HANDLER(exec_bt_EG)
{
    static const uint8_t sub_of[4] = { 4, 5, 6, 7 };  /* A3 BT, AB BTS, B3 BTR, BB BTC */
    unsigned size = i->opsize, bits = size * 8;
    unsigned sub = sub_of[(i->op >> 3) & 3];
    uint64_t off = emu_reg(c, i->reg, size);
    int64_t byte_off = 0;

    if (i->mem) {
        int64_t so = (int64_t)emu_sext(off, size);

        byte_off = (so >> (bits == 64 ? 6 : bits == 32 ? 5 : 4)) * (int64_t)size;
    }
    bt_common(c, i, sub, off & (bits - 1), byte_off);
}

EMU_HANDLER(exec_bt_EI)
{
    bt_common(c, i, i->sub, i->imm & (i->opsize * 8 - 1), 0);
}

EMU_HANDLER(exec_bsf)
{
    unsigned size = i->opsize;
    uint64_t v = op_get_E(c, i, size), idx;

    /* Intel: ZF from the source, PF from the index, the rest clear. */
    if (!v) {
        emu_cc_set_flags(c, F_ZF | F_PF);
        return;
    }
    idx = (uint64_t)__builtin_ctzll(v);
    emu_set_reg(c, i->reg, size, idx);
    emu_cc_set_flags(c, __builtin_parityll(idx) ? 0 : F_PF);
}

EMU_HANDLER(exec_bsr)
{
    unsigned size = i->opsize;
    uint64_t v = op_get_E(c, i, size), idx;

    if (!v) {
        emu_cc_set_flags(c, F_ZF | F_PF);
        return;
    }
    idx = 63 - (uint64_t)__builtin_clzll(v);
    emu_set_reg(c, i->reg, size, idx);
    emu_cc_set_flags(c, __builtin_parityll(idx) ? 0 : F_PF);
}

EMU_HANDLER(exec_popcnt)
{
    unsigned size = i->opsize;
    uint64_t v;

    if (i->rep != 0xf3)
        emu_exec_ud(c, i);
    v = op_get_E(c, i, size);
    emu_set_reg(c, i->reg, size, (uint64_t)__builtin_popcountll(v));
    emu_cc_set_flags(c, v ? 0 : F_ZF);
}

EMU_HANDLER(exec_xadd)
{
    unsigned size = i->opsize;
    uint64_t src = emu_reg(c, i->reg, size), a, v;
    struct op_rmw rw;

    a = op_rmw_begin(c, i, size, &rw);
    for (;;) {
        v = (a + src) & emu_mask(size);
        emu_cc_set(c, CC_ADD, size, a, src, v);
        if (op_rmw_cas(c, i, size, &rw, &a, v))
            break;
    }
    emu_set_reg(c, i->reg, size, a);
    if (!i->mem)
        emu_set_reg(c, i->rm, size, v);
}

EMU_HANDLER(exec_cmpxchg)
{
    unsigned size = i->opsize;
    uint64_t acc = emu_reg(c, R_EAX, size), src = emu_reg(c, i->reg, size), a;
    struct op_rmw rw;

    a = op_rmw_begin(c, i, size, &rw);
    for (;;) {
        uint64_t old = a;

        if (a == acc) {
            if (op_rmw_cas(c, i, size, &rw, &a, src)) {
                emu_cc_set(c, CC_SUB, size, acc, old, acc - old);
                return;
            }
            continue;
        }
        /* Mismatch: the destination is written back with its own value. */
        if (rw.mem && !i->lock)
            op_rmw_end(c, i, size, &rw, a);
        emu_cc_set(c, CC_SUB, size, acc, a, acc - a);
        emu_set_reg(c, R_EAX, size, a);
        return;
    }
}

static bool cas128(void *p, uint64_t *lo, uint64_t *hi, uint64_t nlo, uint64_t nhi)
{
    bool ok;

    __asm__ volatile("lock cmpxchg16b %1"
                     : "=@ccz"(ok), "+m"(*(volatile unsigned __int128 *)p), "+a"(*lo), "+d"(*hi)
                     : "b"(nlo), "c"(nhi)
                     : "memory");
    return ok;
}

EMU_HANDLER(exec_cmpxchg8b)
{
    struct cpu_state *s = c->s;
    uint64_t f = emu_cc_flags(c) & ~F_ZF;
    uint64_t ea, la;
    uint8_t *p;

    if (!i->mem)
        emu_exec_ud(c, i);
    ea = emu_ea(c, i);
    if (i->opsize == 8) {
        uint64_t lo, hi;

        la = emu_linear(c, i->seg, ea, 16, ACC_WRITE);
        if (la & 15)
            emu_fault_err(c, EXC_GP, 0);
        p = emu_rmw_ptr(c, la, 16);
        lo = s->gpr[R_EAX];
        hi = s->gpr[R_EDX];
        if (p) {
            if (cas128(p, &lo, &hi, s->gpr[R_EBX], s->gpr[R_ECX])) {
                emu_cc_set_flags(c, f | F_ZF);
                return;
            }
        } else {
            lo = emu_read_la(c, la, 8);
            hi = emu_read_la(c, la + 8, 8);
            if (lo == s->gpr[R_EAX] && hi == s->gpr[R_EDX]) {
                emu_write_la(c, la, 8, s->gpr[R_EBX]);
                emu_write_la(c, la + 8, 8, s->gpr[R_ECX]);
                emu_cc_set_flags(c, f | F_ZF);
                return;
            }
        }
        s->gpr[R_EAX] = lo;
        s->gpr[R_EDX] = hi;
        emu_cc_set_flags(c, f);
    } else {
        uint64_t cmp = (s->gpr[R_EDX] << 32) | (uint32_t)s->gpr[R_EAX];
        uint64_t nv = (s->gpr[R_ECX] << 32) | (uint32_t)s->gpr[R_EBX];
        uint64_t old;
        bool ok;

        la = emu_linear(c, i->seg, ea, 8, ACC_WRITE);
        p = emu_rmw_ptr(c, la, 8);
        if (p && !((uintptr_t)p & 7)) {
            old = cmp;
            ok = __atomic_compare_exchange_n((uint64_t *)p, &old, nv, false, __ATOMIC_SEQ_CST,
                                             __ATOMIC_SEQ_CST);
        } else {
            old = emu_read_la(c, la, 8);
            ok = old == cmp;
            emu_write_la(c, la, 8, ok ? nv : old);
        }
        if (ok) {
            emu_cc_set_flags(c, f | F_ZF);
            return;
        }
        emu_set_reg(c, R_EAX, 4, old);
        emu_set_reg(c, R_EDX, 4, old >> 32);
        emu_cc_set_flags(c, f);
    }
}

EMU_HANDLER(exec_bswap)
{
    unsigned r = i->rm;

    if (i->opsize == 8)
        c->s->gpr[r] = __builtin_bswap64(c->s->gpr[r]);
    else if (i->opsize == 4)
        c->s->gpr[r] = __builtin_bswap32((uint32_t)c->s->gpr[r]);
    else
        emu_set_reg(c, r, 2, 0);  /* BSWAP r16 is undefined; Intel parts clear it */
}
