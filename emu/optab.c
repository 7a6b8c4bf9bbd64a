/* The x86 opcode map as declarative tables: one row per opcode, naming the
 * handler and the operand format.  Rows with a NULL handler but D_KNOWN
 * describe instructions whose encoding the decoder knows (so lengths are
 * right) but that the executor does not implement: they raise #UD.  Empty
 * rows are invalid opcodes.  SDM vol. 2, appendix A. */
#include "emu/exec.h"

#define OP(f, fl) { (f), (fl), NULL }
#define GRP(g, fl) { NULL, (fl) | D_GROUP | D_MODRM, (g) }
#define FMT(fl) { NULL, (fl) | D_KNOWN, NULL }
#define PFX { NULL, D_PREFIX, NULL }

#define ALU_ROW(b)                                                             \
    [(b) + 0] = OP(exec_alu_EG, D_MODRM | D_BYTE),                             \
    [(b) + 1] = OP(exec_alu_EG, D_MODRM),                                      \
    [(b) + 2] = OP(exec_alu_GE, D_MODRM | D_BYTE),                             \
    [(b) + 3] = OP(exec_alu_GE, D_MODRM),                                      \
    [(b) + 4] = OP(exec_alu_AI, D_BYTE | D_IMM8),                              \
    [(b) + 5] = OP(exec_alu_AI, D_IMMZ)

#define ROW8(first, ...)                                                       \
    [(first) + 0] = __VA_ARGS__, [(first) + 1] = __VA_ARGS__,                  \
    [(first) + 2] = __VA_ARGS__, [(first) + 3] = __VA_ARGS__,                  \
    [(first) + 4] = __VA_ARGS__, [(first) + 5] = __VA_ARGS__,                  \
    [(first) + 6] = __VA_ARGS__, [(first) + 7] = __VA_ARGS__
#define ROW16(first, ...) ROW8(first, __VA_ARGS__), ROW8((first) + 8, __VA_ARGS__)

static const struct emu_opdesc grp1[8] = {
    ROW8(0, OP(exec_alu_EI, 0)),
};
static const struct emu_opdesc grp1a[8] = {
    [0] = OP(exec_pop_E, D_DEF64),
};
static const struct emu_opdesc grp2[8] = {
    ROW8(0, OP(exec_shift, 0)),
};
static const struct emu_opdesc grp3b[8] = {
    [0] = OP(exec_test_EI, D_IMM8), [1] = OP(exec_test_EI, D_IMM8),
    [2] = OP(exec_not, 0), [3] = OP(exec_neg, 0),
    [4] = OP(exec_mul, 0), [5] = OP(exec_imul1, 0),
    [6] = OP(exec_div, 0), [7] = OP(exec_idiv, 0),
};
static const struct emu_opdesc grp3v[8] = {
    [0] = OP(exec_test_EI, D_IMMZ), [1] = OP(exec_test_EI, D_IMMZ),
    [2] = OP(exec_not, 0), [3] = OP(exec_neg, 0),
    [4] = OP(exec_mul, 0), [5] = OP(exec_imul1, 0),
    [6] = OP(exec_div, 0), [7] = OP(exec_idiv, 0),
};
static const struct emu_opdesc grp4[8] = {
    [0] = OP(exec_inc_E, 0), [1] = OP(exec_dec_E, 0),
};
static const struct emu_opdesc grp5[8] = {
    [0] = OP(exec_inc_E, 0), [1] = OP(exec_dec_E, 0),
    [2] = OP(exec_call_E, D_F64), [3] = OP(exec_far_E, 0),
    [4] = OP(exec_jmp_E, D_F64), [5] = OP(exec_far_E, 0),
    [6] = OP(exec_push_E, D_DEF64),
};
static const struct emu_opdesc grp11b[8] = {
    [0] = OP(exec_mov_EI, D_IMM8),
};
static const struct emu_opdesc grp11v[8] = {
    [0] = OP(exec_mov_EI, D_IMMZ),
};

const struct emu_opdesc emu_optab1[256] = {
    ALU_ROW(0x00), ALU_ROW(0x08), ALU_ROW(0x10), ALU_ROW(0x18),
    ALU_ROW(0x20), ALU_ROW(0x28), ALU_ROW(0x30), ALU_ROW(0x38),
    [0x06] = OP(exec_push_sreg, D_INV64), [0x07] = OP(exec_pop_sreg, D_INV64),
    [0x0e] = OP(exec_push_sreg, D_INV64),
    [0x16] = OP(exec_push_sreg, D_INV64), [0x17] = OP(exec_pop_sreg, D_INV64),
    [0x1e] = OP(exec_push_sreg, D_INV64), [0x1f] = OP(exec_pop_sreg, D_INV64),
    [0x26] = PFX, [0x2e] = PFX, [0x36] = PFX, [0x3e] = PFX,
    [0x27] = FMT(D_INV64), [0x2f] = FMT(D_INV64), [0x37] = FMT(D_INV64),
    [0x3f] = FMT(D_INV64),
    ROW16(0x40, OP(exec_incdec_r, D_INV64)),
    ROW8(0x50, OP(exec_push_r, D_DEF64)),
    ROW8(0x58, OP(exec_pop_r, D_DEF64)),
    [0x60] = OP(exec_pusha, D_INV64), [0x61] = OP(exec_popa, D_INV64), [0x62] = FMT(D_INV64 | D_MODRM),
    [0x63] = OP(exec_movsxd, D_MODRM),
    [0x64] = PFX, [0x65] = PFX, [0x66] = PFX, [0x67] = PFX,
    [0x68] = OP(exec_push_imm, D_IMMZ | D_DEF64),
    [0x69] = OP(exec_imul_GEI, D_MODRM | D_IMMZ),
    [0x6a] = OP(exec_push_imm, D_IMM8 | D_DEF64),
    [0x6b] = OP(exec_imul_GEI, D_MODRM | D_IMM8),
    [0x6c] = OP(exec_ins, D_BYTE), [0x6d] = OP(exec_ins, 0),
    [0x6e] = OP(exec_outs, D_BYTE), [0x6f] = OP(exec_outs, 0),
    ROW16(0x70, OP(exec_jcc, D_IMM8 | D_REL | D_F64)),
    [0x80] = GRP(grp1, D_BYTE | D_IMM8),
    [0x81] = GRP(grp1, D_IMMZ),
    [0x82] = GRP(grp1, D_BYTE | D_IMM8 | D_INV64),
    [0x83] = GRP(grp1, D_IMM8),
    [0x84] = OP(exec_test_EG, D_MODRM | D_BYTE), [0x85] = OP(exec_test_EG, D_MODRM),
    [0x86] = OP(exec_xchg_EG, D_MODRM | D_BYTE), [0x87] = OP(exec_xchg_EG, D_MODRM),
    [0x88] = OP(exec_mov_EG, D_MODRM | D_BYTE), [0x89] = OP(exec_mov_EG, D_MODRM),
    [0x8a] = OP(exec_mov_GE, D_MODRM | D_BYTE), [0x8b] = OP(exec_mov_GE, D_MODRM),
    [0x8c] = OP(exec_mov_E_sreg, D_MODRM),
    [0x8d] = OP(exec_lea, D_MODRM),
    [0x8e] = OP(exec_mov_sreg_E, D_MODRM),
    [0x8f] = GRP(grp1a, 0),
    ROW8(0x90, OP(exec_xchg_acc, 0)),
    [0x98] = OP(exec_cbw, 0), [0x99] = OP(exec_cwd, 0),
    [0x9a] = OP(exec_call_far, D_INV64 | D_FARPTR), [0x9b] = OP(exec_fwait, 0),
    [0x9c] = OP(exec_pushf, D_DEF64), [0x9d] = OP(exec_popf, D_DEF64),
    [0x9e] = OP(exec_sahf, 0), [0x9f] = OP(exec_lahf, 0),
    [0xa0] = OP(exec_mov_moffs, D_BYTE | D_MOFFS), [0xa1] = OP(exec_mov_moffs, D_MOFFS),
    [0xa2] = OP(exec_mov_moffs, D_BYTE | D_MOFFS), [0xa3] = OP(exec_mov_moffs, D_MOFFS),
    [0xa4] = OP(exec_movs, D_BYTE), [0xa5] = OP(exec_movs, 0),
    [0xa6] = OP(exec_cmps, D_BYTE), [0xa7] = OP(exec_cmps, 0),
    [0xa8] = OP(exec_test_AI, D_BYTE | D_IMM8), [0xa9] = OP(exec_test_AI, D_IMMZ),
    [0xaa] = OP(exec_stos, D_BYTE), [0xab] = OP(exec_stos, 0),
    [0xac] = OP(exec_lods, D_BYTE), [0xad] = OP(exec_lods, 0),
    [0xae] = OP(exec_scas, D_BYTE), [0xaf] = OP(exec_scas, 0),
    ROW8(0xb0, OP(exec_mov_rI, D_BYTE | D_IMM8)),
    ROW8(0xb8, OP(exec_mov_rI, D_IMMV)),
    [0xc0] = GRP(grp2, D_BYTE | D_IMM8), [0xc1] = GRP(grp2, D_IMM8),
    [0xc2] = OP(exec_ret, D_IMM16 | D_F64), [0xc3] = OP(exec_ret, D_F64),
    [0xc4] = OP(exec_lxs, D_INV64 | D_MODRM), [0xc5] = OP(exec_lxs, D_INV64 | D_MODRM),
    [0xc6] = GRP(grp11b, D_BYTE), [0xc7] = GRP(grp11v, 0),
    [0xc8] = OP(exec_enter, D_IMM8_16 | D_DEF64), [0xc9] = OP(exec_leave, D_DEF64),
    [0xca] = OP(exec_retf, D_IMM16), [0xcb] = OP(exec_retf, 0),
    [0xcc] = OP(exec_int3, 0), [0xcd] = OP(exec_int, D_IMM8 | D_ZIMM),
    [0xce] = OP(exec_into, D_INV64), [0xcf] = OP(exec_iret, 0),
    [0xd0] = GRP(grp2, D_BYTE), [0xd1] = GRP(grp2, 0),
    [0xd2] = GRP(grp2, D_BYTE), [0xd3] = GRP(grp2, 0),
    [0xd4] = FMT(D_INV64 | D_IMM8), [0xd5] = FMT(D_INV64 | D_IMM8),
    [0xd7] = OP(exec_xlat, D_BYTE),
    ROW8(0xd8, OP(exec_x87, D_MODRM)),
    [0xe0] = OP(exec_loop, D_IMM8 | D_REL | D_F64),
    [0xe1] = OP(exec_loop, D_IMM8 | D_REL | D_F64),
    [0xe2] = OP(exec_loop, D_IMM8 | D_REL | D_F64),
    [0xe3] = OP(exec_jrcxz, D_IMM8 | D_REL | D_F64),
    [0xe4] = OP(exec_in, D_BYTE | D_IMM8 | D_ZIMM), [0xe5] = OP(exec_in, D_IMM8 | D_ZIMM),
    [0xe6] = OP(exec_out, D_BYTE | D_IMM8 | D_ZIMM), [0xe7] = OP(exec_out, D_IMM8 | D_ZIMM),
    [0xe8] = OP(exec_call_rel, D_IMMZ | D_REL | D_F64),
    [0xe9] = OP(exec_jmp_rel, D_IMMZ | D_REL | D_F64),
    [0xea] = OP(exec_jmp_far, D_INV64 | D_FARPTR),
    [0xeb] = OP(exec_jmp_rel, D_IMM8 | D_REL | D_F64),
    [0xec] = OP(exec_in, D_BYTE), [0xed] = OP(exec_in, 0),
    [0xee] = OP(exec_out, D_BYTE), [0xef] = OP(exec_out, 0),
    [0xf0] = PFX, [0xf1] = OP(exec_icebp, 0), [0xf2] = PFX, [0xf3] = PFX,
    [0xf4] = OP(exec_hlt, 0), [0xf5] = OP(exec_flagop, 0),
    [0xf6] = GRP(grp3b, D_BYTE), [0xf7] = GRP(grp3v, 0),
    [0xf8] = OP(exec_flagop, 0), [0xf9] = OP(exec_flagop, 0),
    [0xfa] = OP(exec_cli, 0), [0xfb] = OP(exec_sti, 0),
    [0xfc] = OP(exec_flagop, 0), [0xfd] = OP(exec_flagop, 0),
    [0xfe] = GRP(grp4, D_BYTE), [0xff] = GRP(grp5, 0),
};

static const struct emu_opdesc grp8[8] = {
    [4] = OP(exec_bt_EI, 0), [5] = OP(exec_bt_EI, 0),
    [6] = OP(exec_bt_EI, 0), [7] = OP(exec_bt_EI, 0),
};
static const struct emu_opdesc grp9[8] = {
    [1] = OP(exec_cmpxchg8b, 0),
};
static const struct emu_opdesc grp15[8] = {
    ROW8(0, OP(exec_grp15, 0)),
};

const struct emu_opdesc emu_optab2[256] = {
    [0x00] = OP(exec_grp6, D_MODRM), [0x01] = OP(exec_grp7, D_MODRM),
    [0x02] = FMT(D_MODRM), [0x03] = FMT(D_MODRM),
    [0x05] = OP(exec_syscall, 0), [0x06] = OP(exec_clts, 0), [0x07] = OP(exec_sysret, 0),
    [0x08] = OP(exec_wbinvd, 0), [0x09] = OP(exec_wbinvd, 0), [0x0b] = OP(exec_ud2, 0),
    [0x0d] = OP(exec_hint_nop, D_MODRM),
    ROW8(0x10, OP(exec_sse, D_MODRM)),
    ROW8(0x18, OP(exec_hint_nop, D_MODRM)),
    [0x20] = OP(exec_mov_cr, D_MODRM | D_REGONLY), [0x21] = OP(exec_mov_dr, D_MODRM | D_REGONLY),
    [0x22] = OP(exec_mov_cr, D_MODRM | D_REGONLY), [0x23] = OP(exec_mov_dr, D_MODRM | D_REGONLY),
    ROW8(0x28, OP(exec_sse, D_MODRM)),
    [0x30] = OP(exec_wrmsr, 0), [0x31] = OP(exec_rdtsc, 0), [0x32] = OP(exec_rdmsr, 0), [0x33] = FMT(0),
    [0x34] = FMT(0), [0x35] = FMT(0),
    ROW16(0x40, OP(exec_cmov, D_MODRM)),
    ROW16(0x50, OP(exec_sse, D_MODRM)),
    ROW16(0x60, OP(exec_sse, D_MODRM)),
    [0x70] = OP(exec_sse, D_MODRM | D_IMM8), [0x71] = OP(exec_sse, D_MODRM | D_IMM8),
    [0x72] = OP(exec_sse, D_MODRM | D_IMM8), [0x73] = OP(exec_sse, D_MODRM | D_IMM8),
    [0x74] = OP(exec_sse, D_MODRM), [0x75] = OP(exec_sse, D_MODRM),
    [0x76] = OP(exec_sse, D_MODRM),
    [0x77] = OP(exec_sse, 0),
    [0x7c] = OP(exec_sse, D_MODRM), [0x7d] = OP(exec_sse, D_MODRM), [0x7e] = OP(exec_sse, D_MODRM),
    [0x7f] = OP(exec_sse, D_MODRM),
    ROW16(0x80, OP(exec_jcc, D_IMMZ | D_REL | D_F64)),
    ROW16(0x90, OP(exec_setcc, D_MODRM | D_BYTE)),
    [0xa0] = OP(exec_push_sreg, D_DEF64), [0xa1] = OP(exec_pop_sreg, D_DEF64),
    [0xa2] = OP(exec_cpuid, 0), [0xa3] = OP(exec_bt_EG, D_MODRM),
    [0xa4] = OP(exec_shld, D_MODRM | D_IMM8), [0xa5] = OP(exec_shld, D_MODRM),
    [0xa8] = OP(exec_push_sreg, D_DEF64), [0xa9] = OP(exec_pop_sreg, D_DEF64),
    [0xab] = OP(exec_bt_EG, D_MODRM),
    [0xac] = OP(exec_shrd, D_MODRM | D_IMM8), [0xad] = OP(exec_shrd, D_MODRM),
    [0xae] = GRP(grp15, 0), [0xaf] = OP(exec_imul_GE, D_MODRM),
    [0xb0] = OP(exec_cmpxchg, D_MODRM | D_BYTE), [0xb1] = OP(exec_cmpxchg, D_MODRM),
    [0xb2] = OP(exec_lxs, D_MODRM), [0xb3] = OP(exec_bt_EG, D_MODRM),
    [0xb4] = OP(exec_lxs, D_MODRM), [0xb5] = OP(exec_lxs, D_MODRM),
    [0xb6] = OP(exec_movzx, D_MODRM), [0xb7] = OP(exec_movzx, D_MODRM),
    [0xb8] = OP(exec_popcnt, D_MODRM),
    [0xb9] = FMT(D_MODRM),
    [0xba] = GRP(grp8, D_IMM8),
    [0xbb] = OP(exec_bt_EG, D_MODRM),
    [0xbc] = OP(exec_bsf, D_MODRM), [0xbd] = OP(exec_bsr, D_MODRM),
    [0xbe] = OP(exec_movsx, D_MODRM), [0xbf] = OP(exec_movsx, D_MODRM),
    [0xc0] = OP(exec_xadd, D_MODRM | D_BYTE), [0xc1] = OP(exec_xadd, D_MODRM),
    [0xc2] = OP(exec_sse, D_MODRM | D_IMM8), [0xc3] = OP(exec_sse, D_MODRM),
    [0xc4] = OP(exec_sse, D_MODRM | D_IMM8), [0xc5] = OP(exec_sse, D_MODRM | D_IMM8),
    [0xc6] = OP(exec_sse, D_MODRM | D_IMM8),
    [0xc7] = GRP(grp9, 0),
    ROW8(0xc8, OP(exec_bswap, 0)),
    ROW16(0xd0, OP(exec_sse, D_MODRM)),
    ROW16(0xe0, OP(exec_sse, D_MODRM)),
    ROW16(0xf0, OP(exec_sse, D_MODRM)),
};
