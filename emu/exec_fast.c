/* Decode-time specialisation of the hottest instructions.
 *
 * The generic handlers (exec_alu.c, exec_move.c, exec_ctl.c) re-dispatch
 * on the operation, the operand size and the register/memory form every
 * time they run.  When a block is built, emu_specialize() replaces the
 * handler of the common forms by one compiled for exactly that
 * (operation, size, form), so the size masks, the ModRM.mod test and the
 * operation switch are constant-folded away.  Each specialised handler
 * must behave exactly like the generic one it replaces (same faults in
 * the same order, same lazy-flag record); test_emu_diff drives every
 * instruction through the block builder, so it compares these against
 * the host CPU.  Forms not listed here (LOCK, 16-bit addressing is fine,
 * CL counts, ...) keep the generic handler. */
#include "emu/exec_ops.h"

/* --- helpers ------------------------------------------------------------------- */

#define FAST(name) static void name(struct emu_cpu *c, const struct emu_insn *i)

/* Read-modify-write of the memory operand: translated for writing first. */
#define RMW_BEGIN(S)                                                           \
    uint64_t la_ = emu_linear(c, i->seg, emu_ea(c, i), S, ACC_WRITE);          \
    uint8_t *p_ = emu_rmw_ptr(c, la_, S);                                      \
    uint64_t a = p_ ? emu_load_host(p_, S) : emu_read_la(c, la_, S)
#define RMW_END(S, v)                                                          \
    do {                                                                       \
        if (p_)                                                                \
            emu_store_host(p_, S, v);                                          \
        else                                                                   \
            emu_write_la(c, la_, S, v);                                        \
    } while (0)

#define MEM_READ(S) emu_read(c, i->seg, emu_ea(c, i), S)
#define MEM_WRITE(S, v) emu_write(c, i->seg, emu_ea(c, i), S, v)

/* op: 0 add, 1 or, 2 adc, 3 sbb, 4 and, 5 sub, 6 xor, 7 cmp (as exec_alu.c). */
static inline __attribute__((always_inline)) uint64_t fast_alu(struct emu_cpu *c, unsigned op,
                                                               unsigned size, uint64_t a,
                                                               uint64_t b)
{
    uint64_t r, cin;

    b &= emu_mask(size);
    switch (op) {
    case 0: r = a + b; emu_cc_set(c, CC_ADD, size, a, b, r); break;
    case 1: r = a | b; emu_cc_set(c, CC_LOGIC, size, 0, 0, r); break;
    case 2:
        cin = emu_cc_cf(&c->cc);
        r = a + b + cin;
        emu_cc_set(c, CC_ADC, size, a, b, r);
        break;
    case 3:
        cin = emu_cc_cf(&c->cc);
        r = a - b - cin;
        emu_cc_set(c, CC_SBB, size, a, b, r);
        break;
    case 4: r = a & b; emu_cc_set(c, CC_LOGIC, size, 0, 0, r); break;
    case 6: r = a ^ b; emu_cc_set(c, CC_LOGIC, size, 0, 0, r); break;
    default: r = a - b; emu_cc_set(c, CC_SUB, size, a, b, r); break;
    }
    return r & emu_mask(size);
}

/* --- ALU: ADD OR ADC SBB AND SUB XOR CMP ----------------------------------------- */

/* Forms: EG (r/m op= reg), GE (reg op= r/m), EI (r/m op= imm; also AI with
 * rm = rAX), each with r/m a register (r) or memory (m). */
#define ALU_FORMS(OP, S)                                                       \
    FAST(alu_EGr_##OP##_##S)                                                   \
    {                                                                          \
        uint64_t r = fast_alu(c, OP, S, emu_reg(c, i->rm, S), emu_reg(c, i->reg, S)); \
        if (OP != 7)                                                           \
            emu_set_reg(c, i->rm, S, r);                                       \
    }                                                                          \
    FAST(alu_EGm_##OP##_##S)                                                   \
    {                                                                          \
        uint64_t b = emu_reg(c, i->reg, S);                                    \
        if (OP == 7) {                                                         \
            fast_alu(c, OP, S, MEM_READ(S), b);                                \
        } else {                                                               \
            RMW_BEGIN(S);                                                      \
            RMW_END(S, fast_alu(c, OP, S, a, b));                              \
        }                                                                      \
    }                                                                          \
    FAST(alu_GEr_##OP##_##S)                                                   \
    {                                                                          \
        uint64_t r = fast_alu(c, OP, S, emu_reg(c, i->reg, S), emu_reg(c, i->rm, S)); \
        if (OP != 7)                                                           \
            emu_set_reg(c, i->reg, S, r);                                      \
    }                                                                          \
    FAST(alu_GEm_##OP##_##S)                                                   \
    {                                                                          \
        uint64_t b = MEM_READ(S);                                              \
        uint64_t r = fast_alu(c, OP, S, emu_reg(c, i->reg, S), b);             \
        if (OP != 7)                                                           \
            emu_set_reg(c, i->reg, S, r);                                      \
    }                                                                          \
    FAST(alu_EIr_##OP##_##S)                                                   \
    {                                                                          \
        uint64_t r = fast_alu(c, OP, S, emu_reg(c, i->rm, S), i->imm);         \
        if (OP != 7)                                                           \
            emu_set_reg(c, i->rm, S, r);                                       \
    }                                                                          \
    FAST(alu_EIm_##OP##_##S)                                                   \
    {                                                                          \
        if (OP == 7) {                                                         \
            fast_alu(c, OP, S, MEM_READ(S), i->imm);                           \
        } else {                                                               \
            RMW_BEGIN(S);                                                      \
            RMW_END(S, fast_alu(c, OP, S, a, i->imm));                         \
        }                                                                      \
    }

#define ALU_SIZES(OP) ALU_FORMS(OP, 1) ALU_FORMS(OP, 2) ALU_FORMS(OP, 4) ALU_FORMS(OP, 8)
ALU_SIZES(0) ALU_SIZES(1) ALU_SIZES(2) ALU_SIZES(3)
ALU_SIZES(4) ALU_SIZES(5) ALU_SIZES(6) ALU_SIZES(7)

enum { F_EGr, F_EGm, F_GEr, F_GEm, F_EIr, F_EIm, F_NFORMS };

#define ALU_ROW(OP, S) { alu_EGr_##OP##_##S, alu_EGm_##OP##_##S, alu_GEr_##OP##_##S, \
                         alu_GEm_##OP##_##S, alu_EIr_##OP##_##S, alu_EIm_##OP##_##S }
#define ALU_OPROW(OP) { ALU_ROW(OP, 1), ALU_ROW(OP, 2), ALU_ROW(OP, 4), ALU_ROW(OP, 8) }
static const emu_exec_fn alu_fast[8][4][F_NFORMS] = {
    ALU_OPROW(0), ALU_OPROW(1), ALU_OPROW(2), ALU_OPROW(3),
    ALU_OPROW(4), ALU_OPROW(5), ALU_OPROW(6), ALU_OPROW(7),
};

/* --- TEST ------------------------------------------------------------------------- */

#define TEST_FORMS(S)                                                          \
    FAST(test_EGr_##S)                                                         \
    {                                                                          \
        emu_cc_set(c, CC_LOGIC, S, 0, 0, emu_reg(c, i->rm, S) & emu_reg(c, i->reg, S)); \
    }                                                                          \
    FAST(test_EGm_##S)                                                         \
    {                                                                          \
        emu_cc_set(c, CC_LOGIC, S, 0, 0, MEM_READ(S) & emu_reg(c, i->reg, S)); \
    }                                                                          \
    FAST(test_EIr_##S)                                                         \
    {                                                                          \
        emu_cc_set(c, CC_LOGIC, S, 0, 0, emu_reg(c, i->rm, S) & i->imm);       \
    }                                                                          \
    FAST(test_EIm_##S)                                                         \
    {                                                                          \
        emu_cc_set(c, CC_LOGIC, S, 0, 0, MEM_READ(S) & i->imm);                \
    }
TEST_FORMS(1) TEST_FORMS(2) TEST_FORMS(4) TEST_FORMS(8)

#define TEST_ROW(S) { test_EGr_##S, test_EGm_##S, test_EIr_##S, test_EIm_##S }
static const emu_exec_fn test_fast[4][4] = { TEST_ROW(1), TEST_ROW(2), TEST_ROW(4), TEST_ROW(8) };

/* --- INC, DEC (FE/FF /0 /1) ---------------------------------------------------------- */

#define INCDEC_FORMS(NAME, CCOP, DELTA, S)                                     \
    FAST(NAME##_r_##S)                                                         \
    {                                                                          \
        uint64_t cf = emu_cc_cf(&c->cc), a = emu_reg(c, i->rm, S);             \
        uint64_t v = (a + (DELTA)) & emu_mask(S);                              \
        emu_cc_set(c, CCOP, S, a, cf, v);                                      \
        emu_set_reg(c, i->rm, S, v);                                           \
    }                                                                          \
    FAST(NAME##_m_##S)                                                         \
    {                                                                          \
        uint64_t cf = emu_cc_cf(&c->cc);                                       \
        RMW_BEGIN(S);                                                          \
        uint64_t v = (a + (DELTA)) & emu_mask(S);                              \
        emu_cc_set(c, CCOP, S, a, cf, v);                                      \
        RMW_END(S, v);                                                         \
    }
#define INCDEC_SIZES(S) INCDEC_FORMS(inc, CC_INC, 1, S) INCDEC_FORMS(dec, CC_DEC, ~0ULL, S)
INCDEC_SIZES(1) INCDEC_SIZES(2) INCDEC_SIZES(4) INCDEC_SIZES(8)

#define INCDEC_ROW(S) { { inc_r_##S, inc_m_##S }, { dec_r_##S, dec_m_##S } }
static const emu_exec_fn incdec_fast[4][2][2] = {
    INCDEC_ROW(1), INCDEC_ROW(2), INCDEC_ROW(4), INCDEC_ROW(8),
};

/* --- shifts by an immediate (or 1): SHL/SAL, SHR, SAR ----------------------------- */

/* SF, ZF, PF of a result. */
static inline uint64_t fast_szp(uint64_t r, unsigned size)
{
    r &= emu_mask(size);
    return (r == 0 ? X86_RFLAGS_ZF : 0) |
           (((r >> (size * 8 - 1)) & 1) ? X86_RFLAGS_SF : 0) |
           (__builtin_parityll(r & 0xff) ? 0 : X86_RFLAGS_PF);
}

/* kind 0 SHL, 1 SHR, 2 SAR; cnt = i->imm, already masked and nonzero.
 * The flags are fully defined by the operand (AF clear, OF from the first
 * single-bit step, as exec_shift models the host), so nothing of the old
 * flags is evaluated. */
static inline __attribute__((always_inline)) uint64_t fast_shift(struct emu_cpu *c,
                                                                 unsigned kind, unsigned size,
                                                                 uint64_t a, unsigned cnt)
{
    unsigned bits = size * 8;
    uint64_t m = emu_mask(size), r, cf, of;

    switch (kind) {
    case 0:
        r = cnt < 64 ? (a << cnt) & m : 0;
        cf = cnt <= bits ? (a >> (bits - cnt)) & 1 : 0;
        of = ((a >> (bits - 1)) ^ (a >> (bits - 2))) & 1;
        break;
    case 1:
        r = cnt < 64 ? a >> cnt : 0;
        cf = (a >> (cnt - 1)) & 1;
        of = (a >> (bits - 1)) & 1;
        break;
    default: {
        int64_t sa = (int64_t)emu_sext(a, size);

        r = (uint64_t)(sa >> (cnt < 64 ? cnt : 63)) & m;
        cf = (uint64_t)(sa >> (cnt - 1)) & 1;
        of = 0;
        break;
    }
    }
    emu_cc_set_flags(c, fast_szp(r, size) | (cf ? X86_RFLAGS_CF : 0) |
                        (of ? X86_RFLAGS_OF : 0));
    return r;
}

#define SHIFT_FORMS(NAME, KIND, S)                                             \
    FAST(NAME##_r_##S)                                                         \
    {                                                                          \
        emu_set_reg(c, i->rm, S,                                               \
                    fast_shift(c, KIND, S, emu_reg(c, i->rm, S), (unsigned)i->imm)); \
    }                                                                          \
    FAST(NAME##_m_##S)                                                         \
    {                                                                          \
        RMW_BEGIN(S);                                                          \
        uint64_t r = fast_shift(c, KIND, S, a, (unsigned)i->imm);              \
        RMW_END(S, r);                                                         \
    }
#define SHIFT_SIZES(S) SHIFT_FORMS(shl, 0, S) SHIFT_FORMS(shr, 1, S) SHIFT_FORMS(sar, 2, S)
SHIFT_SIZES(1) SHIFT_SIZES(2) SHIFT_SIZES(4) SHIFT_SIZES(8)

#define SHIFT_ROW(S) { { shl_r_##S, shl_m_##S }, { shr_r_##S, shr_m_##S }, { sar_r_##S, sar_m_##S } }
static const emu_exec_fn shift_fast[4][3][2] = {
    SHIFT_ROW(1), SHIFT_ROW(2), SHIFT_ROW(4), SHIFT_ROW(8),
};

/* By CL: a masked count of 0 changes no flags (but still writes a 32-bit
 * register): the generic handler does that case. */
#define SHIFT_CL_FORMS(NAME, KIND, S)                                          \
    FAST(NAME##_cl_r_##S)                                                      \
    {                                                                          \
        unsigned cnt = (unsigned)c->s->gpr[R_ECX] & (S == 8 ? 0x3f : 0x1f);    \
        if (unlikely(!cnt)) {                                                  \
            exec_shift(c, i);                                                  \
            return;                                                            \
        }                                                                      \
        emu_set_reg(c, i->rm, S, fast_shift(c, KIND, S, emu_reg(c, i->rm, S), cnt)); \
    }                                                                          \
    FAST(NAME##_cl_m_##S)                                                      \
    {                                                                          \
        unsigned cnt = (unsigned)c->s->gpr[R_ECX] & (S == 8 ? 0x3f : 0x1f);    \
        if (unlikely(!cnt)) {                                                  \
            exec_shift(c, i);                                                  \
            return;                                                            \
        }                                                                      \
        RMW_BEGIN(S);                                                          \
        uint64_t r = fast_shift(c, KIND, S, a, cnt);                           \
        RMW_END(S, r);                                                         \
    }
#define SHIFT_CL_SIZES(S) SHIFT_CL_FORMS(shl, 0, S) SHIFT_CL_FORMS(shr, 1, S) SHIFT_CL_FORMS(sar, 2, S)
SHIFT_CL_SIZES(1) SHIFT_CL_SIZES(2) SHIFT_CL_SIZES(4) SHIFT_CL_SIZES(8)

#define SHIFT_CL_ROW(S) { { shl_cl_r_##S, shl_cl_m_##S }, { shr_cl_r_##S, shr_cl_m_##S }, \
                          { sar_cl_r_##S, sar_cl_m_##S } }
static const emu_exec_fn shift_cl_fast[4][3][2] = {
    SHIFT_CL_ROW(1), SHIFT_CL_ROW(2), SHIFT_CL_ROW(4), SHIFT_CL_ROW(8),
};

/* --- ROL, ROR by an immediate (or 1) ----------------------------------------------- */

/* As exec_shift: CF from the rotated result, OF by the first single-bit
 * step from the operand, except that a register rotated by an immediate
 * whose count is not 1 modulo the width keeps OF (KEEPOF, decided at
 * decode time); SF ZF AF PF are kept, so the old flags are materialised.
 * cnt = i->imm, masked and nonzero. */
static inline __attribute__((always_inline)) uint64_t fast_rotate(unsigned ror, unsigned size,
                                                                  uint64_t a, unsigned cnt)
{
    unsigned bits = size * 8, k = cnt & (bits - 1);
    uint64_t m = emu_mask(size);

    if (!k)
        return a;
    if (ror)
        return ((a >> k) | (a << (bits - k))) & m;
    return ((a << k) | (a >> (bits - k))) & m;
}

static inline __attribute__((always_inline)) void fast_rotate_flags(struct emu_cpu *c,
                                                                    unsigned ror, unsigned size,
                                                                    bool keep_of, uint64_t a,
                                                                    uint64_t r)
{
    unsigned bits = size * 8;
    uint64_t f = emu_cc_flags(c), cf, of;

    if (ror) {
        cf = (r >> (bits - 1)) & 1;
        of = (a ^ (a >> (bits - 1))) & 1;
    } else {
        cf = r & 1;
        of = ((a >> (bits - 1)) ^ (a >> (bits - 2))) & 1;
    }
    if (keep_of)
        of = (f & X86_RFLAGS_OF) != 0;
    emu_cc_set_flags(c, (f & ~(X86_RFLAGS_CF | X86_RFLAGS_OF)) | (cf ? X86_RFLAGS_CF : 0) |
                        (of ? X86_RFLAGS_OF : 0));
}

/* _nf: the flags are dead (the next instruction of the block overwrites
 * all of them and cannot fault; emu_fast_sequence). */
#define ROT_FORMS(NAME, ROR, S)                                                \
    FAST(NAME##_r_##S)                                                         \
    {                                                                          \
        uint64_t a = emu_reg(c, i->rm, S), r = fast_rotate(ROR, S, a, (unsigned)i->imm); \
        fast_rotate_flags(c, ROR, S, false, a, r);                             \
        emu_set_reg(c, i->rm, S, r);                                           \
    }                                                                          \
    FAST(NAME##_rk_##S)                                                        \
    {                                                                          \
        uint64_t a = emu_reg(c, i->rm, S), r = fast_rotate(ROR, S, a, (unsigned)i->imm); \
        fast_rotate_flags(c, ROR, S, true, a, r);                              \
        emu_set_reg(c, i->rm, S, r);                                           \
    }                                                                          \
    FAST(NAME##_nf_##S)                                                        \
    {                                                                          \
        emu_set_reg(c, i->rm, S, fast_rotate(ROR, S, emu_reg(c, i->rm, S), (unsigned)i->imm)); \
    }                                                                          \
    FAST(NAME##_m_##S)                                                         \
    {                                                                          \
        RMW_BEGIN(S);                                                          \
        uint64_t r = fast_rotate(ROR, S, a, (unsigned)i->imm);                 \
        fast_rotate_flags(c, ROR, S, false, a, r);                             \
        RMW_END(S, r);                                                         \
    }
#define ROT_SIZES(S) ROT_FORMS(rol, 0, S) ROT_FORMS(ror, 1, S)
ROT_SIZES(1) ROT_SIZES(2) ROT_SIZES(4) ROT_SIZES(8)

/* [size][ROL/ROR][0 reg, 1 reg keeping OF, 2 memory, 3 reg without flags] */
#define ROT_ROW(S) { { rol_r_##S, rol_rk_##S, rol_m_##S, rol_nf_##S }, \
                     { ror_r_##S, ror_rk_##S, ror_m_##S, ror_nf_##S } }
static const emu_exec_fn rot_fast[4][2][4] = { ROT_ROW(1), ROT_ROW(2), ROT_ROW(4), ROT_ROW(8) };

/* --- IMUL Gv, Ev (, imm): 32 and 64 bits ----------------------------------------- */

/* As exec_alu.c's imul2: the low half to reg, CF = OF = the product did
 * not fit (lazy CC_MUL). */
static inline __attribute__((always_inline)) void fast_imul(struct emu_cpu *c, unsigned size,
                                                            unsigned reg, uint64_t a, uint64_t b)
{
    uint64_t low;
    bool ovf;

    if (size == 8) {
        int64_t p;

        ovf = __builtin_mul_overflow((int64_t)a, (int64_t)b, &p);
        low = (uint64_t)p;
    } else {
        int64_t p = (int64_t)(int32_t)a * (int32_t)b;

        ovf = p != (int32_t)p;
        low = (uint32_t)p;
    }
    c->s->gpr[reg] = low;
    emu_cc_set(c, CC_MUL, size, ovf, 0, low);
}

#define IMUL_FORMS(S)                                                          \
    FAST(imul_GEr_##S) { fast_imul(c, S, i->reg, emu_reg(c, i->reg, S), emu_reg(c, i->rm, S)); } \
    FAST(imul_GEm_##S) { fast_imul(c, S, i->reg, emu_reg(c, i->reg, S), MEM_READ(S)); } \
    FAST(imul_GEIr_##S) { fast_imul(c, S, i->reg, emu_reg(c, i->rm, S), i->imm); } \
    FAST(imul_GEIm_##S) { fast_imul(c, S, i->reg, MEM_READ(S), i->imm); }
IMUL_FORMS(4) IMUL_FORMS(8)

/* [64-bit][with immediate][reg/mem] */
static const emu_exec_fn imul_fast[2][2][2] = {
    { { imul_GEr_4, imul_GEm_4 }, { imul_GEIr_4, imul_GEIm_4 } },
    { { imul_GEr_8, imul_GEm_8 }, { imul_GEIr_8, imul_GEIm_8 } },
};

/* --- without flags ---------------------------------------------------------------- */

/* Register forms whose flags the block overwrites before anything can see
 * them (emu_fast_sequence): the result only.  Each must leave the
 * registers exactly as its flag-computing form does. */
static inline __attribute__((always_inline)) uint64_t nf_alu(unsigned op, uint64_t a, uint64_t b)
{
    switch (op) {
    case 0: return a + b;
    case 1: return a | b;
    case 4: return a & b;
    case 5: return a - b;
    default: return a ^ b;
    }
}

#define ALU_NF_FORMS(OP, S)                                                    \
    FAST(alu_nf_EGr_##OP##_##S)                                                \
    {                                                                          \
        emu_set_reg(c, i->rm, S,                                               \
                    nf_alu(OP, emu_reg(c, i->rm, S), emu_reg(c, i->reg, S)) & emu_mask(S)); \
    }                                                                          \
    FAST(alu_nf_GEr_##OP##_##S)                                                \
    {                                                                          \
        emu_set_reg(c, i->reg, S,                                              \
                    nf_alu(OP, emu_reg(c, i->reg, S), emu_reg(c, i->rm, S)) & emu_mask(S)); \
    }                                                                          \
    FAST(alu_nf_EIr_##OP##_##S)                                                \
    {                                                                          \
        emu_set_reg(c, i->rm, S, nf_alu(OP, emu_reg(c, i->rm, S), i->imm) & emu_mask(S)); \
    }
#define ALU_NF_SIZES(OP) ALU_NF_FORMS(OP, 1) ALU_NF_FORMS(OP, 2) ALU_NF_FORMS(OP, 4) ALU_NF_FORMS(OP, 8)
ALU_NF_SIZES(0) ALU_NF_SIZES(1) ALU_NF_SIZES(4) ALU_NF_SIZES(5) ALU_NF_SIZES(6)

#define ALU_NF_ROW(OP, S) { alu_nf_EGr_##OP##_##S, alu_nf_GEr_##OP##_##S, alu_nf_EIr_##OP##_##S }
#define ALU_NF_OP(OP) { ALU_NF_ROW(OP, 1), ALU_NF_ROW(OP, 2), ALU_NF_ROW(OP, 4), ALU_NF_ROW(OP, 8) }
/* [op][size][EGr, GEr, EIr]; ADC, SBB (they read CF) and CMP have none. */
static const emu_exec_fn alu_nf[8][4][3] = {
    [0] = ALU_NF_OP(0), [1] = ALU_NF_OP(1), [4] = ALU_NF_OP(4), [5] = ALU_NF_OP(5),
    [6] = ALU_NF_OP(6),
};

/* As fast_shift's result, count nonzero and masked. */
#define SHIFT_NF_FORMS(S)                                                      \
    FAST(shl_nf_##S)                                                           \
    {                                                                          \
        emu_set_reg(c, i->rm, S, (emu_reg(c, i->rm, S) << i->imm) & emu_mask(S)); \
    }                                                                          \
    FAST(shr_nf_##S) { emu_set_reg(c, i->rm, S, emu_reg(c, i->rm, S) >> i->imm); } \
    FAST(sar_nf_##S)                                                           \
    {                                                                          \
        int64_t sa = (int64_t)emu_sext(emu_reg(c, i->rm, S), S);               \
        emu_set_reg(c, i->rm, S, (uint64_t)(sa >> i->imm) & emu_mask(S));     \
    }
SHIFT_NF_FORMS(1) SHIFT_NF_FORMS(2) SHIFT_NF_FORMS(4) SHIFT_NF_FORMS(8)
static const emu_exec_fn shift_nf[4][3] = {
    { shl_nf_1, shr_nf_1, sar_nf_1 }, { shl_nf_2, shr_nf_2, sar_nf_2 },
    { shl_nf_4, shr_nf_4, sar_nf_4 }, { shl_nf_8, shr_nf_8, sar_nf_8 },
};

FAST(imul_nf_GEr_4) { c->s->gpr[i->reg] = (uint32_t)(emu_reg(c, i->reg, 4) * emu_reg(c, i->rm, 4)); }
FAST(imul_nf_GEIr_4) { c->s->gpr[i->reg] = (uint32_t)(emu_reg(c, i->rm, 4) * i->imm); }
FAST(imul_nf_GEr_8) { c->s->gpr[i->reg] = emu_reg(c, i->reg, 8) * emu_reg(c, i->rm, 8); }
FAST(imul_nf_GEIr_8) { c->s->gpr[i->reg] = emu_reg(c, i->rm, 8) * i->imm; }
/* [64-bit][with immediate] */
static const emu_exec_fn imul_nf[2][2] = {
    { imul_nf_GEr_4, imul_nf_GEIr_4 }, { imul_nf_GEr_8, imul_nf_GEIr_8 },
};

/* --- MOV, MOVZX, MOVSX, MOVSXD, LEA ---------------------------------------------- */

#define MOV_FORMS(S)                                                           \
    FAST(mov_EGr_##S) { emu_set_reg(c, i->rm, S, emu_reg(c, i->reg, S)); }     \
    FAST(mov_EGm_##S) { MEM_WRITE(S, emu_reg(c, i->reg, S)); }                 \
    FAST(mov_GEr_##S) { emu_set_reg(c, i->reg, S, emu_reg(c, i->rm, S)); }     \
    FAST(mov_GEm_##S) { emu_set_reg(c, i->reg, S, MEM_READ(S)); }              \
    FAST(mov_EIr_##S) { emu_set_reg(c, i->rm, S, i->imm); }                    \
    FAST(mov_EIm_##S) { MEM_WRITE(S, i->imm); }
MOV_FORMS(1) MOV_FORMS(2) MOV_FORMS(4) MOV_FORMS(8)

#define MOV_ROW(S) { mov_EGr_##S, mov_EGm_##S, mov_GEr_##S, mov_GEm_##S, mov_EIr_##S, mov_EIm_##S }
static const emu_exec_fn mov_fast[4][F_NFORMS] = { MOV_ROW(1), MOV_ROW(2), MOV_ROW(4), MOV_ROW(8) };

/* Flat 64-bit memory operands (64-bit mode and addressing, no FS/GS
 * segment: the offset is the linear address): a base register plus
 * displacement (b) or plus a scaled index too (bi), without emu_ea's and
 * emu_linear's tests of the operand's form.  Faults as the generic path:
 * the same TLB access. */
#define FLAT_B() (c->s->gpr[i->base] + (uint64_t)i->disp)
#define FLAT_BI() (c->s->gpr[i->base] + (c->s->gpr[i->index] << i->scale) + (uint64_t)i->disp)
#define MOV_FLAT_FORMS(S)                                                      \
    FAST(mov_GEb_##S) { emu_set_reg(c, i->reg, S, emu_read_la(c, FLAT_B(), S)); } \
    FAST(mov_GEbi_##S) { emu_set_reg(c, i->reg, S, emu_read_la(c, FLAT_BI(), S)); } \
    FAST(mov_EGb_##S) { emu_write_la(c, FLAT_B(), S, emu_reg(c, i->reg, S)); }  \
    FAST(mov_EGbi_##S) { emu_write_la(c, FLAT_BI(), S, emu_reg(c, i->reg, S)); }
MOV_FLAT_FORMS(1) MOV_FLAT_FORMS(2) MOV_FLAT_FORMS(4) MOV_FLAT_FORMS(8)

/* [size][load b, load bi, store b, store bi] */
#define MOV_FLAT_ROW(S) { mov_GEb_##S, mov_GEbi_##S, mov_EGb_##S, mov_EGbi_##S }
static const emu_exec_fn mov_flat[4][4] = {
    MOV_FLAT_ROW(1), MOV_FLAT_ROW(2), MOV_FLAT_ROW(4), MOV_FLAT_ROW(8),
};

/* MOVZX from a flat operand with a base and displacement. */
FAST(movzx_b_4_1) { emu_set_reg(c, i->reg, 4, emu_read_la(c, FLAT_B(), 1)); }
FAST(movzx_b_4_2) { emu_set_reg(c, i->reg, 4, emu_read_la(c, FLAT_B(), 2)); }

/* 0 if the memory operand of i is not flat, 1 for base + displacement, 2
 * for base + scaled index + displacement (the FLAT_ forms). */
static int flat_form(const struct emu_insn *i, enum emu_mode mode)
{
    if (mode != EMU_MODE_64 || i->addrsize != 8 || i->seg == S_FS || i->seg == S_GS ||
        i->base >= 16)
        return 0;
    return i->index == EMU_NOREG ? 1 : i->index < 16 ? 2 : 0;
}

/* Destination size D from a source of size SS, zero- or sign-extended. */
#define MOVX_FORMS(D, SS)                                                      \
    FAST(movzx_r_##D##_##SS) { emu_set_reg(c, i->reg, D, emu_reg(c, i->rm, SS)); } \
    FAST(movzx_m_##D##_##SS) { emu_set_reg(c, i->reg, D, MEM_READ(SS)); }      \
    FAST(movsx_r_##D##_##SS)                                                   \
    {                                                                          \
        emu_set_reg(c, i->reg, D, emu_sext(emu_reg(c, i->rm, SS), SS));        \
    }                                                                          \
    FAST(movsx_m_##D##_##SS) { emu_set_reg(c, i->reg, D, emu_sext(MEM_READ(SS), SS)); }
MOVX_FORMS(2, 1) MOVX_FORMS(4, 1) MOVX_FORMS(8, 1)
MOVX_FORMS(2, 2) MOVX_FORMS(4, 2) MOVX_FORMS(8, 2)

/* MOVSXD Gq, Ed (64-bit mode). */
FAST(movsxd_r) { c->s->gpr[i->reg] = emu_sext(emu_reg(c, i->rm, 4), 4); }
FAST(movsxd_m) { c->s->gpr[i->reg] = emu_sext(MEM_READ(4), 4); }

/* [sign][source size 1/2][destination size 2/4/8][reg/mem] */
#define MOVX_ROW(K, SS) { { K##_r_2_##SS, K##_m_2_##SS }, { K##_r_4_##SS, K##_m_4_##SS }, \
                          { K##_r_8_##SS, K##_m_8_##SS } }
static const emu_exec_fn movx_fast[2][2][3][2] = {
    { MOVX_ROW(movzx, 1), MOVX_ROW(movzx, 2) },
    { MOVX_ROW(movsx, 1), MOVX_ROW(movsx, 2) },
};

FAST(lea_4) { c->s->gpr[i->reg] = (uint32_t)emu_ea(c, i); }
FAST(lea_8) { c->s->gpr[i->reg] = emu_ea(c, i); }

/* --- PUSH, POP of a register in 64-bit mode ------------------------------------- */

FAST(push64_r)
{
    uint64_t v = c->s->gpr[i->rm], nsp = c->s->gpr[R_ESP] - 8;

    emu_write(c, S_SS, nsp, 8, v);
    c->s->gpr[R_ESP] = nsp;
}

FAST(pop64_r)
{
    uint64_t v = emu_read(c, S_SS, c->s->gpr[R_ESP], 8);

    c->s->gpr[R_ESP] += 8;
    c->s->gpr[i->rm] = v;
}

/* --- conditions: Jcc, SETcc, CMOVcc ---------------------------------------------- */

/* emu_cc_test for a constant condition: the tests that the last
 * flag-setting operation answers from its operands without building
 * RFLAGS are inlined; everything else goes to emu_cc_test. */
static inline __attribute__((always_inline)) bool fast_cond(struct emu_cpu *c, unsigned cond)
{
    const struct emu_lazy *cc = &c->cc;
    unsigned op = cc->op, sz = cc->size;
    uint64_t m = emu_mask(sz);
    bool r;

    if (op == CC_EFLAGS) {  /* materialised (shifts, POPF, ...): test the bits */
        uint64_t f = cc->src1;
        bool sf = f & X86_RFLAGS_SF, of = f & X86_RFLAGS_OF;

        switch (cond >> 1) {
        case 0: r = of; break;
        case 1: r = f & X86_RFLAGS_CF; break;
        case 2: r = f & X86_RFLAGS_ZF; break;
        case 3: r = f & (X86_RFLAGS_CF | X86_RFLAGS_ZF); break;
        case 4: r = sf; break;
        case 5: r = f & X86_RFLAGS_PF; break;
        case 6: r = sf != of; break;
        default: r = (f & X86_RFLAGS_ZF) || sf != of; break;
        }
        return r ^ (cond & 1);
    }
    switch (cond >> 1) {
    case 1: /* B: CF */
        if (op == CC_SUB)
            r = (cc->src1 & m) < (cc->src2 & m);
        else if (op == CC_ADD)
            r = (cc->res & m) < (cc->src1 & m);
        else if (op == CC_LOGIC)
            r = false;
        else if (op == CC_INC || op == CC_DEC)
            r = cc->src2 & 1;
        else
            return emu_cc_test(c, cond);
        break;
    case 2: /* Z: every lazy operation but MUL defines ZF from the result */
        if (op != CC_MUL)
            r = (cc->res & m) == 0;
        else
            return emu_cc_test(c, cond);
        break;
    case 3: /* BE */
        if (op == CC_SUB)
            r = (cc->src1 & m) <= (cc->src2 & m);
        else if (op == CC_LOGIC)
            r = (cc->res & m) == 0;
        else
            return emu_cc_test(c, cond);
        break;
    case 4: /* S: from the result for every lazy operation */
        r = (cc->res >> (sz * 8 - 1)) & 1;
        break;
    case 6: /* L */
        if (op == CC_SUB)
            r = (int64_t)emu_sext(cc->src1, sz) < (int64_t)emu_sext(cc->src2, sz);
        else if (op == CC_LOGIC)
            r = (cc->res >> (sz * 8 - 1)) & 1;
        else
            return emu_cc_test(c, cond);
        break;
    case 7: /* LE */
        if (op == CC_SUB)
            r = (int64_t)emu_sext(cc->src1, sz) <= (int64_t)emu_sext(cc->src2, sz);
        else if (op == CC_LOGIC)
            r = (int64_t)emu_sext(cc->res, sz) <= 0;
        else
            return emu_cc_test(c, cond);
        break;
    default:
        return emu_cc_test(c, cond);
    }
    return r ^ (cond & 1);
}

/* 64-bit mode, operand size 64: the target must be canonical. */
static inline void fast_branch64(struct emu_cpu *c, uint64_t target)
{
    if (unlikely((uint64_t)((int64_t)(target << 16) >> 16) != target))
        emu_fault_err(c, EXC_GP, 0);
    c->s->rip = target;
}

#define COND_FORMS(CC)                                                         \
    FAST(jcc64_##CC)                                                           \
    {                                                                          \
        if (fast_cond(c, CC)) {                                                \
            fast_branch64(c, c->s->rip + i->imm);                              \
            emu_leave_block(c);                                                \
        }                                                                      \
    }                                                                          \
    FAST(setcc_r_##CC) { emu_set_reg(c, i->rm, 1, fast_cond(c, CC)); }        \
    FAST(cmov_r_##CC)                                                          \
    {                                                                          \
        unsigned size = i->opsize;                                             \
        uint64_t v = emu_reg(c, i->rm, size);                                  \
        if (fast_cond(c, CC))                                                  \
            emu_set_reg(c, i->reg, size, v);                                   \
        else if (size == 4)                                                    \
            emu_set_reg(c, i->reg, 4, emu_reg(c, i->reg, 4));                  \
    }                                                                          \
    FAST(cmov_m_##CC)                                                          \
    {                                                                          \
        unsigned size = i->opsize;                                             \
        uint64_t v = MEM_READ(size);                                           \
        if (fast_cond(c, CC))                                                  \
            emu_set_reg(c, i->reg, size, v);                                   \
        else if (size == 4)                                                    \
            emu_set_reg(c, i->reg, 4, emu_reg(c, i->reg, 4));                  \
    }
COND_FORMS(0) COND_FORMS(1) COND_FORMS(2) COND_FORMS(3)
COND_FORMS(4) COND_FORMS(5) COND_FORMS(6) COND_FORMS(7)
COND_FORMS(8) COND_FORMS(9) COND_FORMS(10) COND_FORMS(11)
COND_FORMS(12) COND_FORMS(13) COND_FORMS(14) COND_FORMS(15)

#define COND_TAB(K) { K##_0, K##_1, K##_2, K##_3, K##_4, K##_5, K##_6, K##_7, \
                      K##_8, K##_9, K##_10, K##_11, K##_12, K##_13, K##_14, K##_15 }
static const emu_exec_fn jcc64_fast[16] = COND_TAB(jcc64);
static const emu_exec_fn setcc_fast[16] = COND_TAB(setcc_r);
static const emu_exec_fn cmov_fast[2][16] = { COND_TAB(cmov_r), COND_TAB(cmov_m) };

FAST(jmp64_rel)
{
    fast_branch64(c, c->s->rip + i->imm);
}

/* A JMP the block followed to its target on the same page: the run loop
 * moved RIP there (the entry's adv); a target on the page of a canonical
 * RIP is canonical. */
FAST(jmp64_followed)
{
}

/* As exec_call_rel/exec_ret with a 64-bit stack: the stack access faults
 * before the #GP for a non-canonical target, and RSP changes only when
 * neither happened. */
FAST(call64_rel)
{
    uint64_t ret = c->s->rip, target = ret + i->imm, nsp = c->s->gpr[R_ESP] - 8;

    emu_write(c, S_SS, nsp, 8, ret);
    fast_branch64(c, target);
    c->s->gpr[R_ESP] = nsp;
}

FAST(ret64)
{
    uint64_t sp = c->s->gpr[R_ESP];

    fast_branch64(c, emu_read(c, S_SS, sp, 8));
    c->s->gpr[R_ESP] = sp + 8;
}

/* --- CMP, TEST, SUB fused with the Jcc that follows -------------------------------- */

/* The condition cond after a - b (CMP, SUB), from the operands: what
 * fast_cond would answer from the lazy record, without reading it. */
static inline __attribute__((always_inline)) bool sub_cond(unsigned cond, unsigned size,
                                                           uint64_t a, uint64_t b)
{
    uint64_t m = emu_mask(size), r;
    unsigned top = size * 8 - 1;
    bool x;

    a &= m;
    b &= m;
    r = (a - b) & m;
    switch (cond >> 1) {
    case 0: x = (((a ^ b) & (a ^ r)) >> top) & 1; break;
    case 1: x = a < b; break;
    case 2: x = a == b; break;
    case 3: x = a <= b; break;
    case 4: x = (r >> top) & 1; break;
    case 5: x = !__builtin_parityll(r & 0xff); break;
    case 6: x = (int64_t)emu_sext(a, size) < (int64_t)emu_sext(b, size); break;
    default: x = (int64_t)emu_sext(a, size) <= (int64_t)emu_sext(b, size); break;
    }
    return x ^ (cond & 1);
}

/* The condition cond after r = a + b (ADD), from the operands. */
static inline __attribute__((always_inline)) bool add_cond(unsigned cond, unsigned size,
                                                           uint64_t a, uint64_t b)
{
    uint64_t m = emu_mask(size), r;
    unsigned top = size * 8 - 1;
    bool cf, zf, sf, of, x;

    a &= m;
    b &= m;
    r = (a + b) & m;
    cf = r < a;
    zf = r == 0;
    sf = (r >> top) & 1;
    of = (((a ^ r) & (b ^ r)) >> top) & 1;
    switch (cond >> 1) {
    case 0: x = of; break;
    case 1: x = cf; break;
    case 2: x = zf; break;
    case 3: x = cf || zf; break;
    case 4: x = sf; break;
    case 5: x = !__builtin_parityll(r & 0xff); break;
    case 6: x = sf != of; break;
    default: x = zf || sf != of; break;
    }
    return x ^ (cond & 1);
}

/* The condition cond after a logical result r (TEST): CF = OF = 0. */
static inline __attribute__((always_inline)) bool logic_cond(unsigned cond, unsigned size,
                                                             uint64_t r)
{
    bool x, sf;

    r &= emu_mask(size);
    sf = (r >> (size * 8 - 1)) & 1;
    switch (cond >> 1) {
    case 0: case 1: x = false; break;
    case 2: case 3: x = r == 0; break;
    case 4: case 6: x = sf; break;
    case 5: x = !__builtin_parityll(r & 0xff); break;
    default: x = r == 0 || sf; break;
    }
    return x ^ (cond & 1);
}

/* The Jcc half of a fused pair.  The pair's entry (emu_fast_sequence)
 * carries the Jcc's length in imm2 and its displacement in disp (unused
 * by the register-form producers), and the run loop has already moved
 * RIP past both.  The Jcc becomes the current instruction (its RIP is the
 * one a #GP on a non-canonical target reports). */
static inline __attribute__((always_inline)) void fused_jcc(struct emu_cpu *c,
                                                            const struct emu_insn *i, bool taken)
{
    c->insn_rip = c->s->rip - i->imm2;
    if (taken) {
        fast_branch64(c, c->s->rip + (uint64_t)i->disp);
        emu_leave_block(c);
    }
}

/* Register forms only: they cannot fault, touch memory or end the block,
 * so the pair behaves exactly as its two instructions; the lazy flags are
 * recorded as alu_fast/test_fast record them, for any later reader.
 * OP 7 CMP, 5 SUB; forms as alu_fast's EGr, GEr, EIr. */
/* dst: the register the result goes to (ADD, SUB; CMP writes none). */
static inline __attribute__((always_inline)) void fused_sub(struct emu_cpu *c,
                                                            const struct emu_insn *i,
                                                            unsigned op, unsigned size,
                                                            unsigned cond, unsigned dst,
                                                            uint64_t a, uint64_t b)
{
    uint64_t r = fast_alu(c, op, size, a, b);

    if (op != 7)
        emu_set_reg(c, dst, size, r);
    fused_jcc(c, i, op == 0 ? add_cond(cond, size, a, b) : sub_cond(cond, size, a, b));
}

#define FUSED_SUB(OP, S, CC)                                                   \
    FAST(fused_EGr_##OP##_##S##_##CC)                                          \
    {                                                                          \
        fused_sub(c, i, OP, S, CC, i->rm, emu_reg(c, i->rm, S), emu_reg(c, i->reg, S)); \
    }                                                                          \
    FAST(fused_GEr_##OP##_##S##_##CC)                                          \
    {                                                                          \
        fused_sub(c, i, OP, S, CC, i->reg, emu_reg(c, i->reg, S), emu_reg(c, i->rm, S)); \
    }                                                                          \
    FAST(fused_EIr_##OP##_##S##_##CC)                                          \
    {                                                                          \
        fused_sub(c, i, OP, S, CC, i->rm, emu_reg(c, i->rm, S), i->imm);       \
    }
static inline __attribute__((always_inline)) void fused_test(struct emu_cpu *c,
                                                             const struct emu_insn *i,
                                                             unsigned size, unsigned cond,
                                                             uint64_t r)
{
    emu_cc_set(c, CC_LOGIC, size, 0, 0, r);
    fused_jcc(c, i, logic_cond(cond, size, r));
}

#define FUSED_TEST(S, CC)                                                      \
    FAST(fused_testGr_##S##_##CC)                                              \
    {                                                                          \
        fused_test(c, i, S, CC, emu_reg(c, i->rm, S) & emu_reg(c, i->reg, S)); \
    }                                                                          \
    FAST(fused_testIr_##S##_##CC)                                              \
    {                                                                          \
        fused_test(c, i, S, CC, emu_reg(c, i->rm, S) & i->imm);                \
    }
#define FUSED_ALL(S, CC) FUSED_SUB(7, S, CC) FUSED_SUB(5, S, CC) FUSED_SUB(0, S, CC) FUSED_TEST(S, CC)
#define FUSED_CONDS(S)                                                         \
    FUSED_ALL(S, 0) FUSED_ALL(S, 1) FUSED_ALL(S, 2) FUSED_ALL(S, 3)            \
    FUSED_ALL(S, 4) FUSED_ALL(S, 5) FUSED_ALL(S, 6) FUSED_ALL(S, 7)            \
    FUSED_ALL(S, 8) FUSED_ALL(S, 9) FUSED_ALL(S, 10) FUSED_ALL(S, 11)          \
    FUSED_ALL(S, 12) FUSED_ALL(S, 13) FUSED_ALL(S, 14) FUSED_ALL(S, 15)
FUSED_CONDS(1) FUSED_CONDS(2) FUSED_CONDS(4) FUSED_CONDS(8)

/* [cond] rows of one form and size. */
#define FUSED_TAB(K, S) { K##_##S##_0, K##_##S##_1, K##_##S##_2, K##_##S##_3,         \
                          K##_##S##_4, K##_##S##_5, K##_##S##_6, K##_##S##_7,         \
                          K##_##S##_8, K##_##S##_9, K##_##S##_10, K##_##S##_11,       \
                          K##_##S##_12, K##_##S##_13, K##_##S##_14, K##_##S##_15 }
/* The pair kinds, each with the producer it replaces. */
enum { FK_CMP_EG, FK_CMP_GE, FK_CMP_EI, FK_SUB_EG, FK_SUB_GE, FK_SUB_EI, FK_ADD_EG, FK_ADD_GE,
       FK_ADD_EI, FK_TEST_G, FK_TEST_I, FK_N };
#define FUSED_SIZE(S) { FUSED_TAB(fused_EGr_7, S), FUSED_TAB(fused_GEr_7, S),         \
                        FUSED_TAB(fused_EIr_7, S), FUSED_TAB(fused_EGr_5, S),         \
                        FUSED_TAB(fused_GEr_5, S), FUSED_TAB(fused_EIr_5, S),         \
                        FUSED_TAB(fused_EGr_0, S), FUSED_TAB(fused_GEr_0, S),         \
                        FUSED_TAB(fused_EIr_0, S),                                    \
                        FUSED_TAB(fused_testGr, S), FUSED_TAB(fused_testIr, S) }
static const emu_exec_fn fused_fast[4][FK_N][16] = {
    FUSED_SIZE(1), FUSED_SIZE(2), FUSED_SIZE(4), FUSED_SIZE(8),
};

/* The unfused producer of pair kind k, size index sz. */
static emu_exec_fn fused_producer(int sz, int k)
{
    switch (k) {
    case FK_CMP_EG: return alu_fast[7][sz][F_EGr];
    case FK_CMP_GE: return alu_fast[7][sz][F_GEr];
    case FK_CMP_EI: return alu_fast[7][sz][F_EIr];
    case FK_SUB_EG: return alu_fast[5][sz][F_EGr];
    case FK_SUB_GE: return alu_fast[5][sz][F_GEr];
    case FK_SUB_EI: return alu_fast[5][sz][F_EIr];
    case FK_ADD_EG: return alu_fast[0][sz][F_EGr];
    case FK_ADD_GE: return alu_fast[0][sz][F_GEr];
    case FK_ADD_EI: return alu_fast[0][sz][F_EIr];
    case FK_TEST_G: return test_fast[sz][0];
    default: return test_fast[sz][2];
    }
}

/* --- MOV r,r folded into the next instruction ------------------------------------- */

/* Compilers move a register before operating on the copy (`mov %rcx,%rax;
 * imul %r9,%rax`; lib/mpi's inner loop has eight MOVs in 37
 * instructions).  emu_fast_sequence folds a 32/64-bit register MOV into
 * the entry of the register instruction after it (one that cannot fault,
 * from the list below): the entry is the second instruction's, with the
 * MOV's destination in base and its source in index (unused by register
 * forms), and its handler does the MOV and then the instruction: one
 * dispatch for the pair. */
#define MOVPAIR(X)                                                             \
    FAST(mp8_##X) { c->s->gpr[i->base] = c->s->gpr[i->index]; X(c, i); }       \
    FAST(mp4_##X) { c->s->gpr[i->base] = (uint32_t)c->s->gpr[i->index]; X(c, i); }
#define MOVPAIR_ROW(X) { X, mp8_##X, mp4_##X },
#define MOVPAIR_LIST(M) \
    M(alu_EGr_0_4) \
    M(alu_GEr_0_4) \
    M(alu_EIr_0_4) \
    M(alu_EGr_1_4) \
    M(alu_GEr_1_4) \
    M(alu_EIr_1_4) \
    M(alu_EGr_4_4) \
    M(alu_GEr_4_4) \
    M(alu_EIr_4_4) \
    M(alu_EGr_5_4) \
    M(alu_GEr_5_4) \
    M(alu_EIr_5_4) \
    M(alu_EGr_6_4) \
    M(alu_GEr_6_4) \
    M(alu_EIr_6_4) \
    M(alu_EGr_7_4) \
    M(alu_GEr_7_4) \
    M(alu_EIr_7_4) \
    M(alu_nf_EGr_0_4) \
    M(alu_nf_GEr_0_4) \
    M(alu_nf_EIr_0_4) \
    M(alu_nf_EGr_1_4) \
    M(alu_nf_GEr_1_4) \
    M(alu_nf_EIr_1_4) \
    M(alu_nf_EGr_4_4) \
    M(alu_nf_GEr_4_4) \
    M(alu_nf_EIr_4_4) \
    M(alu_nf_EGr_5_4) \
    M(alu_nf_GEr_5_4) \
    M(alu_nf_EIr_5_4) \
    M(alu_nf_EGr_6_4) \
    M(alu_nf_GEr_6_4) \
    M(alu_nf_EIr_6_4) \
    M(shl_r_4) \
    M(shl_nf_4) \
    M(shr_r_4) \
    M(shr_nf_4) \
    M(sar_r_4) \
    M(sar_nf_4) \
    M(imul_GEr_4) \
    M(imul_GEIr_4) \
    M(imul_nf_GEr_4) \
    M(imul_nf_GEIr_4) \
    M(mov_EGr_4) \
    M(mov_GEr_4) \
    M(alu_EGr_0_8) \
    M(alu_GEr_0_8) \
    M(alu_EIr_0_8) \
    M(alu_EGr_1_8) \
    M(alu_GEr_1_8) \
    M(alu_EIr_1_8) \
    M(alu_EGr_4_8) \
    M(alu_GEr_4_8) \
    M(alu_EIr_4_8) \
    M(alu_EGr_5_8) \
    M(alu_GEr_5_8) \
    M(alu_EIr_5_8) \
    M(alu_EGr_6_8) \
    M(alu_GEr_6_8) \
    M(alu_EIr_6_8) \
    M(alu_EGr_7_8) \
    M(alu_GEr_7_8) \
    M(alu_EIr_7_8) \
    M(alu_nf_EGr_0_8) \
    M(alu_nf_GEr_0_8) \
    M(alu_nf_EIr_0_8) \
    M(alu_nf_EGr_1_8) \
    M(alu_nf_GEr_1_8) \
    M(alu_nf_EIr_1_8) \
    M(alu_nf_EGr_4_8) \
    M(alu_nf_GEr_4_8) \
    M(alu_nf_EIr_4_8) \
    M(alu_nf_EGr_5_8) \
    M(alu_nf_GEr_5_8) \
    M(alu_nf_EIr_5_8) \
    M(alu_nf_EGr_6_8) \
    M(alu_nf_GEr_6_8) \
    M(alu_nf_EIr_6_8) \
    M(shl_r_8) \
    M(shl_nf_8) \
    M(shr_r_8) \
    M(shr_nf_8) \
    M(sar_r_8) \
    M(sar_nf_8) \
    M(imul_GEr_8) \
    M(imul_GEIr_8) \
    M(imul_nf_GEr_8) \
    M(imul_nf_GEIr_8) \
    M(mov_EGr_8) \
    M(mov_GEr_8) \
    M(cmov_r_0) \
    M(cmov_r_1) \
    M(cmov_r_2) \
    M(cmov_r_3) \
    M(cmov_r_4) \
    M(cmov_r_5) \
    M(cmov_r_6) \
    M(cmov_r_7) \
    M(cmov_r_8) \
    M(cmov_r_9) \
    M(cmov_r_10) \
    M(cmov_r_11) \
    M(cmov_r_12) \
    M(cmov_r_13) \
    M(cmov_r_14) \
    M(cmov_r_15) \
    M(movzx_r_4_1) \
    M(movsxd_r)
MOVPAIR_LIST(MOVPAIR)

static const struct {
    emu_exec_fn second, with_mov64, with_mov32;
} movpairs[] = { MOVPAIR_LIST(MOVPAIR_ROW) };

/* The handler running a 64-bit (or 32-bit) register MOV and then second,
 * or NULL. */
static emu_exec_fn movpair_handler(emu_exec_fn second, bool mov64)
{
    for (size_t k = 0; k < sizeof(movpairs) / sizeof(movpairs[0]); k++)
        if (movpairs[k].second == second)
            return mov64 ? movpairs[k].with_mov64 : movpairs[k].with_mov32;
    return NULL;
}

/* A 32/64-bit register-to-register MOV: its destination and source. */
static bool reg_mov(const struct emu_insn *i, unsigned *dst, unsigned *src, bool *mov64)
{
    for (int sz = 2; sz < 4; sz++) {
        if (i->fn == mov_fast[sz][F_EGr] || i->fn == mov_fast[sz][F_GEr]) {
            bool eg = i->fn == mov_fast[sz][F_EGr];

            *dst = eg ? i->rm : i->reg;
            *src = eg ? i->reg : i->rm;
            *mov64 = sz == 3;
            return true;
        }
    }
    return false;
}

/* --- selection ---------------------------------------------------------------------- */

static int size_index(unsigned size)
{
    switch (size) {
    case 1: return 0;
    case 2: return 1;
    case 4: return 2;
    case 8: return 3;
    default: return -1;
    }
}

void emu_specialize(struct emu_insn *i, enum emu_mode mode)
{
    emu_exec_fn fn = i->fn;
    int sz = size_index(i->opsize);
    bool m = i->mem;

    if (sz < 0)
        return;
    /* LOCK'd read-modify-writes keep the generic compare-and-swap path. */
    if (i->lock)
        return;
    if (fn == exec_alu_EG) {
        i->fn = alu_fast[(i->op >> 3) & 7][sz][m ? F_EGm : F_EGr];
    } else if (fn == exec_alu_GE) {
        i->fn = alu_fast[(i->op >> 3) & 7][sz][m ? F_GEm : F_GEr];
    } else if (fn == exec_alu_EI) {
        i->fn = alu_fast[i->sub & 7][sz][m ? F_EIm : F_EIr];
    } else if (fn == exec_alu_AI) {
        i->rm = R_EAX;
        i->fn = alu_fast[(i->op >> 3) & 7][sz][F_EIr];
    } else if (fn == exec_test_EG) {
        i->fn = test_fast[sz][m ? 1 : 0];
    } else if (fn == exec_test_EI) {
        i->fn = test_fast[sz][m ? 3 : 2];
    } else if (fn == exec_test_AI) {
        i->rm = R_EAX;
        i->fn = test_fast[sz][2];
    } else if (fn == exec_inc_E || fn == exec_dec_E) {
        i->fn = incdec_fast[sz][fn == exec_dec_E][m];
    } else if (fn == exec_shift && (i->op == 0xc0 || i->op == 0xc1 || i->op == 0xd0 ||
                                    i->op == 0xd1) && i->sub >= 4) {
        unsigned cnt = (i->op >= 0xd0 ? 1 : (unsigned)i->imm) & (i->opsize == 8 ? 0x3f : 0x1f);
        unsigned kind = i->sub == 5 ? 1 : i->sub == 7 ? 2 : 0;

        if (cnt) {  /* a zero count leaves the flags: the generic path */
            i->imm = cnt;
            i->fn = shift_fast[sz][kind][m];
        }
    } else if (fn == exec_shift && (i->op == 0xc0 || i->op == 0xc1 || i->op == 0xd0 ||
                                    i->op == 0xd1) && i->sub < 2) {
        unsigned cnt = (i->op >= 0xd0 ? 1 : (unsigned)i->imm) & (i->opsize == 8 ? 0x3f : 0x1f);
        /* exec_shift: a register rotated by an immediate keeps OF unless
         * the count is 1 modulo the width. */
        bool keep_of = i->op < 0xd0 && !m && (cnt & (i->opsize * 8 - 1)) != 1;

        if (cnt) {  /* a zero count leaves the flags: the generic path */
            i->imm = cnt;
            i->fn = rot_fast[sz][i->sub][m ? 2 : keep_of];
        }
    } else if (fn == exec_shift && (i->op == 0xd2 || i->op == 0xd3) && i->sub >= 4) {
        i->fn = shift_cl_fast[sz][i->sub == 5 ? 1 : i->sub == 7 ? 2 : 0][m];
    } else if ((fn == exec_imul_GE || fn == exec_imul_GEI) && sz >= 2) {
        i->fn = imul_fast[sz == 3][fn == exec_imul_GEI][m];
    } else if (fn == exec_mov_EG) {
        int flat = m ? flat_form(i, mode) : 0;

        i->fn = flat ? mov_flat[sz][1 + flat] : mov_fast[sz][m ? F_EGm : F_EGr];
    } else if (fn == exec_mov_GE) {
        int flat = m ? flat_form(i, mode) : 0;

        i->fn = flat ? mov_flat[sz][flat - 1] : mov_fast[sz][m ? F_GEm : F_GEr];
    } else if (fn == exec_mov_EI) {
        i->fn = mov_fast[sz][m ? F_EIm : F_EIr];
    } else if (fn == exec_mov_rI) {
        i->fn = mov_fast[sz][F_EIr];
    } else if ((fn == exec_movzx || fn == exec_movsx) && sz >= 1) {
        unsigned ssize = (i->op & 1) ? 1 : 0;  /* B6/BE byte, B7/BF word */

        i->fn = movx_fast[fn == exec_movsx][ssize][sz - 1][m];
        if (fn == exec_movzx && m && sz == 2 && flat_form(i, mode) == 1)
            i->fn = ssize ? movzx_b_4_2 : movzx_b_4_1;
    } else if (fn == exec_movsxd && mode == EMU_MODE_64 && i->opsize == 8) {
        i->fn = m ? movsxd_m : movsxd_r;
    } else if (fn == exec_lea && m && (i->opsize == 4 || i->opsize == 8)) {
        i->fn = i->opsize == 8 ? lea_8 : lea_4;
    } else if (fn == exec_push_r && mode == EMU_MODE_64 && i->opsize == 8) {
        i->fn = push64_r;
    } else if (fn == exec_pop_r && mode == EMU_MODE_64 && i->opsize == 8) {
        i->fn = pop64_r;
    } else if (fn == exec_jcc && mode == EMU_MODE_64 && i->opsize == 8) {
        i->fn = jcc64_fast[i->op & 15];
    } else if (fn == exec_jmp_rel && mode == EMU_MODE_64 && i->opsize == 8) {
        i->fn = jmp64_rel;
    } else if (fn == exec_call_rel && mode == EMU_MODE_64 && i->opsize == 8) {
        i->fn = call64_rel;
    } else if (fn == exec_ret && i->op == 0xc3 && mode == EMU_MODE_64 && i->opsize == 8) {
        i->fn = ret64;
    } else if (fn == exec_setcc && !m) {
        i->fn = setcc_fast[i->op & 15];
    } else if (fn == exec_cmov) {
        i->fn = cmov_fast[m][i->op & 15];
    }
}

/* --- dead flags ---------------------------------------------------------------- */

/* Handlers that overwrite CF PF AF ZF SF OF without reading them and
 * cannot fault: register-only ALU ops but ADC/SBB, TEST, shifts by a
 * nonzero immediate and register IMUL (its lazy record replaces them
 * all). */
static bool writes_all_flags(emu_exec_fn fn)
{
    for (int sz = 0; sz < 4; sz++) {
        for (int op = 0; op < 8; op++) {
            if (op == 2 || op == 3)
                continue;
            if (fn == alu_fast[op][sz][F_EGr] || fn == alu_fast[op][sz][F_GEr] ||
                fn == alu_fast[op][sz][F_EIr])
                return true;
        }
        if (fn == test_fast[sz][0] || fn == test_fast[sz][2])
            return true;
        for (int k = 0; k < 3; k++)
            if (fn == shift_fast[sz][k][0])
                return true;
    }
    for (int w = 0; w < 2; w++)
        for (int imm = 0; imm < 2; imm++)
            if (fn == imul_fast[w][imm][0])
                return true;
    return false;
}

/* Handlers that neither read nor write the flags and cannot fault:
 * register and immediate MOV, LEA, register MOVZX/MOVSX/MOVSXD. */
static bool flags_neutral(emu_exec_fn fn)
{
    for (int sz = 0; sz < 4; sz++)
        if (fn == mov_fast[sz][F_EGr] || fn == mov_fast[sz][F_GEr] || fn == mov_fast[sz][F_EIr])
            return true;
    for (int x = 0; x < 2; x++)
        for (int ss = 0; ss < 2; ss++)
            for (int d = 0; d < 3; d++)
                if (fn == movx_fast[x][ss][d][0])
                    return true;
    return fn == lea_4 || fn == lea_8 || fn == movsxd_r;
}

/* The handler that runs a register ALU op, shift by an immediate, IMUL or
 * rotate by an immediate without computing flags, or NULL. */
static emu_exec_fn nf_variant(emu_exec_fn fn)
{
    for (int sz = 0; sz < 4; sz++) {
        for (int op = 0; op < 8; op++) {
            if (!alu_nf[op][sz][0])
                continue;
            if (fn == alu_fast[op][sz][F_EGr])
                return alu_nf[op][sz][0];
            if (fn == alu_fast[op][sz][F_GEr])
                return alu_nf[op][sz][1];
            if (fn == alu_fast[op][sz][F_EIr])
                return alu_nf[op][sz][2];
        }
        for (int k = 0; k < 3; k++)
            if (fn == shift_fast[sz][k][0])
                return shift_nf[sz][k];
        for (int ror = 0; ror < 2; ror++)
            if (fn == rot_fast[sz][ror][0] || fn == rot_fast[sz][ror][1])
                return rot_fast[sz][ror][3];
    }
    for (int w = 0; w < 2; w++)
        for (int imm = 0; imm < 2; imm++)
            if (fn == imul_fast[w][imm][0])
                return imul_nf[w][imm];
    return NULL;
}

/* For each instruction whose flags the next flag writer overwrites before
 * anything can see them (only instructions that cannot fault and leave
 * the flags alone in between), the handler that skips them, or NULL. */
static emu_exec_fn dead_flags_handler(const struct emu_insn *ins, unsigned n, unsigned k)
{
    emu_exec_fn nf = nf_variant(ins[k].fn);
    unsigned j = k + 1;

    if (!nf || j >= n)
        return NULL;
    while (j + 1 < n && flags_neutral(ins[j].fn))
        j++;
    return writes_all_flags(ins[j].fn) ? nf : NULL;
}

/* --- CMP/TEST/SUB + Jcc ------------------------------------------------------------ */

/* The fused handler for producer p and the 64-bit Jcc j after it, or NULL. */
static emu_exec_fn fused_handler(const struct emu_insn *p, const struct emu_insn *j)
{
    if (j->fn != jcc64_fast[j->op & 15])
        return NULL;
    for (int sz = 0; sz < 4; sz++)
        for (int f = 0; f < FK_N; f++)
            if (p->fn == fused_producer(sz, f))
                return fused_fast[sz][f][j->op & 15];
    return NULL;
}

unsigned emu_fast_sequence(const struct emu_insn *ins, unsigned n, struct emu_insn *out)
{
    unsigned m = 0;
    bool differs = false;

    for (unsigned k = 0; k < n; k++, m++) {
        const struct emu_insn *i = &ins[k];
        emu_exec_fn fused = k + 1 < n ? fused_handler(i, &ins[k + 1]) : NULL;
        emu_exec_fn nf = dead_flags_handler(ins, n, k);
        unsigned dst, src;
        bool mov64;

        /* A register MOV folded into the next instruction, unless that
         * one fuses with its Jcc. */
        if (k + 1 < n && reg_mov(i, &dst, &src, &mov64) &&
            !(k + 2 < n && fused_handler(&ins[k + 1], &ins[k + 2]))) {
            emu_exec_fn second = dead_flags_handler(ins, n, k + 1);
            emu_exec_fn pair = movpair_handler(second ? second : ins[k + 1].fn, mov64);

            if (pair) {
                out[m] = ins[k + 1];
                out[m].fn = pair;
                out[m].base = (uint8_t)dst;
                out[m].index = (uint8_t)src;
                out[m].adv = (int16_t)(i->len + ins[k + 1].len);
                out[m].nth = i->nth;
                k++;
                differs = true;
                continue;
            }
        }
        out[m] = *i;
        if (nf) {
            out[m].fn = nf;
            differs = true;
        } else if (fused) {
            out[m].fn = fused;
            out[m].adv = (int16_t)(i->len + ins[k + 1].len);
            out[m].imm2 = ins[k + 1].len;
            out[m].disp = (int64_t)ins[k + 1].imm;
            k++;
            differs = true;
        } else if (emu_direct_jump(i) && k + 1 < n) {
            /* Followed (block_continues_at): the target is on this page,
             * so the advance fits an int16_t. */
            out[m].fn = jmp64_followed;
            out[m].adv = (int16_t)(i->len + (int64_t)i->imm);
            differs = true;
        }
    }
    return differs ? m : 0;
}

bool emu_side_exit(const struct emu_insn *i)
{
    return i->fn == jcc64_fast[i->op & 15];
}

bool emu_direct_jump(const struct emu_insn *i)
{
    return i->fn == jmp64_rel;
}