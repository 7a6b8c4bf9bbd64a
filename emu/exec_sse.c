/* SSE/SSE2 data movement, logic, integer arithmetic, shuffles and the
 * compares glibc and busybox use (the 66/F3/F2-prefixed 0F opcodes).
 * Floating-point arithmetic and conversions are not implemented yet (#UD).
 * One handler dispatches on (opcode, mandatory prefix). */
#include <stdlib.h>

#include "emu/exec_ops.h"

typedef union {
    uint8_t b[16];
    int8_t sb[16];
    uint16_t w[8];
    int16_t sw[8];
    uint32_t d[4];
    int32_t sd[4];
    uint64_t q[2];
    float f[4];
    double df[2];
} xmm_t;

static inline xmm_t *xreg(struct emu_cpu *c, unsigned r)
{
    return (xmm_t *)(void *)c->s->fpu.xmm[r & 15];
}

static uint64_t sse_la(struct emu_cpu *c, const struct emu_insn *i, unsigned size, bool align,
                       enum emu_access acc)
{
    uint64_t la = emu_linear(c, i->seg, emu_ea(c, i), size, acc);

    if (align && (la & 15))
        emu_fault_err(c, EXC_GP, 0);
    return la;
}

/* The r/m operand as 128 bits (aligned: legacy SSE m128 rule). */
static xmm_t sse_src(struct emu_cpu *c, const struct emu_insn *i, bool align)
{
    xmm_t v;
    uint64_t la;

    if (!i->mem)
        return *xreg(c, i->rm);
    la = sse_la(c, i, 16, align, ACC_READ);
    v.q[0] = emu_read_la(c, la, 8);
    v.q[1] = emu_read_la(c, la + 8, 8);
    return v;
}

static void sse_store(struct emu_cpu *c, const struct emu_insn *i, const xmm_t *v, unsigned size,
                      bool align)
{
    uint64_t la = sse_la(c, i, size, align, ACC_WRITE);

    emu_probe_write(c, la, size);
    if (size >= 8) {
        emu_write_la(c, la, 8, v->q[0]);
        if (size == 16)
            emu_write_la(c, la + 8, 8, v->q[1]);
    } else {
        emu_write_la(c, la, size, v->d[0]);
    }
}

static uint64_t sse_load64(struct emu_cpu *c, const struct emu_insn *i)
{
    if (!i->mem)
        return xreg(c, i->rm)->q[0];
    return emu_read_la(c, sse_la(c, i, 8, false, ACC_READ), 8);
}

static inline uint8_t sat_u8(int v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }
static inline int8_t sat_s8(int v) { return v < -128 ? -128 : v > 127 ? 127 : (int8_t)v; }
static inline uint16_t sat_u16(int v) { return v < 0 ? 0 : v > 65535 ? 65535 : (uint16_t)v; }
static inline int16_t sat_s16(int v) { return v < -32768 ? -32768 : v > 32767 ? 32767 : (int16_t)v; }

/* Shifts by a count (imm8 or the low quadword of an xmm). */
static void sse_shift(xmm_t *d, unsigned kind, unsigned width, uint64_t cnt)
{
    unsigned n = 16 / width;

    for (unsigned k = 0; k < n; k++) {
        switch (width) {
        case 2:
            if (kind == 4)
                d->sw[k] = (int16_t)(d->sw[k] >> (cnt > 15 ? 15 : cnt));
            else
                d->w[k] = cnt > 15 ? 0 : kind == 2 ? d->w[k] >> cnt : (uint16_t)(d->w[k] << cnt);
            break;
        case 4:
            if (kind == 4)
                d->sd[k] = d->sd[k] >> (cnt > 31 ? 31 : cnt);
            else
                d->d[k] = cnt > 31 ? 0 : kind == 2 ? d->d[k] >> cnt : d->d[k] << cnt;
            break;
        default:
            d->q[k] = cnt > 63 ? 0 : kind == 2 ? d->q[k] >> cnt : d->q[k] << cnt;
            break;
        }
    }
}

static void sse_byteshift(xmm_t *d, unsigned cnt, bool left)
{
    xmm_t r = { .q = { 0, 0 } };

    if (cnt > 16)
        cnt = 16;
    for (unsigned k = 0; k < 16; k++) {
        int from = left ? (int)k - (int)cnt : (int)k + (int)cnt;

        if (from >= 0 && from < 16)
            r.b[k] = d->b[from];
    }
    *d = r;
}

static void sse_compare_flags(struct emu_cpu *c, double a, double b)
{
    uint64_t f = 0;

    if (a != a || b != b)
        f = X86_RFLAGS_ZF | X86_RFLAGS_PF | X86_RFLAGS_CF;
    else if (a < b)
        f = X86_RFLAGS_CF;
    else if (a == b)
        f = X86_RFLAGS_ZF;
    emu_cc_set_flags(c, f);
}

static bool sse_is_int_op(unsigned op)
{
    return (op >= 0x60 && op <= 0x6d) || (op >= 0x74 && op <= 0x76) ||
           (op >= 0xd1 && op <= 0xd5) || (op >= 0xd8 && op <= 0xdf) ||
           (op >= 0xe0 && op <= 0xe5) || (op >= 0xe8 && op <= 0xef) ||
           (op >= 0xf1 && op <= 0xf6) || (op >= 0xf8 && op <= 0xfe);
}

/* 66-prefixed integer ops on whole registers: returns false if op is not
 * one of them. */
static bool sse_int_op(unsigned op, xmm_t *d, const xmm_t *s)
{
    xmm_t r = *d;

    switch (op) {
    case 0x60: for (int k = 0; k < 16; k++) r.b[k] = k & 1 ? s->b[k / 2] : d->b[k / 2]; break;
    case 0x61: for (int k = 0; k < 8; k++) r.w[k] = k & 1 ? s->w[k / 2] : d->w[k / 2]; break;
    case 0x62: for (int k = 0; k < 4; k++) r.d[k] = k & 1 ? s->d[k / 2] : d->d[k / 2]; break;
    case 0x68: for (int k = 0; k < 16; k++) r.b[k] = k & 1 ? s->b[8 + k / 2] : d->b[8 + k / 2]; break;
    case 0x69: for (int k = 0; k < 8; k++) r.w[k] = k & 1 ? s->w[4 + k / 2] : d->w[4 + k / 2]; break;
    case 0x6a: for (int k = 0; k < 4; k++) r.d[k] = k & 1 ? s->d[2 + k / 2] : d->d[2 + k / 2]; break;
    case 0x6c: r.q[0] = d->q[0]; r.q[1] = s->q[0]; break;
    case 0x6d: r.q[0] = d->q[1]; r.q[1] = s->q[1]; break;
    case 0x63:
        for (int k = 0; k < 8; k++) {
            r.sb[k] = sat_s8(d->sw[k]);
            r.sb[k + 8] = sat_s8(s->sw[k]);
        }
        break;
    case 0x67:
        for (int k = 0; k < 8; k++) {
            r.b[k] = sat_u8(d->sw[k]);
            r.b[k + 8] = sat_u8(s->sw[k]);
        }
        break;
    case 0x6b:
        for (int k = 0; k < 4; k++) {
            r.sw[k] = sat_s16(d->sd[k] < -32768 ? -32768 : d->sd[k] > 32767 ? 32767 : d->sd[k]);
            r.sw[k + 4] = sat_s16(s->sd[k] < -32768 ? -32768 : s->sd[k] > 32767 ? 32767 : s->sd[k]);
        }
        break;
    case 0x64: for (int k = 0; k < 16; k++) r.b[k] = d->sb[k] > s->sb[k] ? 0xff : 0; break;
    case 0x65: for (int k = 0; k < 8; k++) r.w[k] = d->sw[k] > s->sw[k] ? 0xffff : 0; break;
    case 0x66: for (int k = 0; k < 4; k++) r.d[k] = d->sd[k] > s->sd[k] ? ~0u : 0; break;
    case 0x74: for (int k = 0; k < 16; k++) r.b[k] = d->b[k] == s->b[k] ? 0xff : 0; break;
    case 0x75: for (int k = 0; k < 8; k++) r.w[k] = d->w[k] == s->w[k] ? 0xffff : 0; break;
    case 0x76: for (int k = 0; k < 4; k++) r.d[k] = d->d[k] == s->d[k] ? ~0u : 0; break;
    case 0xd4: for (int k = 0; k < 2; k++) r.q[k] = d->q[k] + s->q[k]; break;
    case 0xd5: for (int k = 0; k < 8; k++) r.w[k] = (uint16_t)(d->sw[k] * s->sw[k]); break;
    case 0xd8: for (int k = 0; k < 16; k++) r.b[k] = sat_u8(d->b[k] - s->b[k]); break;
    case 0xd9: for (int k = 0; k < 8; k++) r.w[k] = sat_u16(d->w[k] - s->w[k]); break;
    case 0xda: for (int k = 0; k < 16; k++) r.b[k] = MIN(d->b[k], s->b[k]); break;
    case 0xdb: r.q[0] = d->q[0] & s->q[0]; r.q[1] = d->q[1] & s->q[1]; break;
    case 0xdc: for (int k = 0; k < 16; k++) r.b[k] = sat_u8(d->b[k] + s->b[k]); break;
    case 0xdd: for (int k = 0; k < 8; k++) r.w[k] = sat_u16(d->w[k] + s->w[k]); break;
    case 0xde: for (int k = 0; k < 16; k++) r.b[k] = MAX(d->b[k], s->b[k]); break;
    case 0xdf: r.q[0] = ~d->q[0] & s->q[0]; r.q[1] = ~d->q[1] & s->q[1]; break;
    case 0xe0: for (int k = 0; k < 16; k++) r.b[k] = (uint8_t)((d->b[k] + s->b[k] + 1) >> 1); break;
    case 0xe3: for (int k = 0; k < 8; k++) r.w[k] = (uint16_t)((d->w[k] + s->w[k] + 1) >> 1); break;
    case 0xe4: for (int k = 0; k < 8; k++) r.w[k] = (uint16_t)(((uint32_t)d->w[k] * s->w[k]) >> 16); break;
    case 0xe5: for (int k = 0; k < 8; k++) r.w[k] = (uint16_t)((d->sw[k] * s->sw[k]) >> 16); break;
    case 0xe8: for (int k = 0; k < 16; k++) r.sb[k] = sat_s8(d->sb[k] - s->sb[k]); break;
    case 0xe9: for (int k = 0; k < 8; k++) r.sw[k] = sat_s16(d->sw[k] - s->sw[k]); break;
    case 0xea: for (int k = 0; k < 8; k++) r.sw[k] = MIN(d->sw[k], s->sw[k]); break;
    case 0xeb: r.q[0] = d->q[0] | s->q[0]; r.q[1] = d->q[1] | s->q[1]; break;
    case 0xec: for (int k = 0; k < 16; k++) r.sb[k] = sat_s8(d->sb[k] + s->sb[k]); break;
    case 0xed: for (int k = 0; k < 8; k++) r.sw[k] = sat_s16(d->sw[k] + s->sw[k]); break;
    case 0xee: for (int k = 0; k < 8; k++) r.sw[k] = MAX(d->sw[k], s->sw[k]); break;
    case 0xef: r.q[0] = d->q[0] ^ s->q[0]; r.q[1] = d->q[1] ^ s->q[1]; break;
    case 0xf4: for (int k = 0; k < 2; k++) r.q[k] = (uint64_t)d->d[2 * k] * s->d[2 * k]; break;
    case 0xf5:
        for (int k = 0; k < 4; k++)
            r.sd[k] = d->sw[2 * k] * s->sw[2 * k] + d->sw[2 * k + 1] * s->sw[2 * k + 1];
        break;
    case 0xf6:
        for (int h = 0; h < 2; h++) {
            unsigned sum = 0;

            for (int k = 0; k < 8; k++)
                sum += (unsigned)abs(d->b[8 * h + k] - s->b[8 * h + k]);
            r.q[h] = sum;
        }
        break;
    case 0xf8: for (int k = 0; k < 16; k++) r.b[k] = (uint8_t)(d->b[k] - s->b[k]); break;
    case 0xf9: for (int k = 0; k < 8; k++) r.w[k] = (uint16_t)(d->w[k] - s->w[k]); break;
    case 0xfa: for (int k = 0; k < 4; k++) r.d[k] = d->d[k] - s->d[k]; break;
    case 0xfb: for (int k = 0; k < 2; k++) r.q[k] = d->q[k] - s->q[k]; break;
    case 0xfc: for (int k = 0; k < 16; k++) r.b[k] = (uint8_t)(d->b[k] + s->b[k]); break;
    case 0xfd: for (int k = 0; k < 8; k++) r.w[k] = (uint16_t)(d->w[k] + s->w[k]); break;
    case 0xfe: for (int k = 0; k < 4; k++) r.d[k] = d->d[k] + s->d[k]; break;
    case 0xd1: sse_shift(&r, 2, 2, s->q[0]); break;
    case 0xd2: sse_shift(&r, 2, 4, s->q[0]); break;
    case 0xd3: sse_shift(&r, 2, 8, s->q[0]); break;
    case 0xe1: sse_shift(&r, 4, 2, s->q[0]); break;
    case 0xe2: sse_shift(&r, 4, 4, s->q[0]); break;
    case 0xf1: sse_shift(&r, 6, 2, s->q[0]); break;
    case 0xf2: sse_shift(&r, 6, 4, s->q[0]); break;
    case 0xf3: sse_shift(&r, 6, 8, s->q[0]); break;
    default:
        return false;
    }
    *d = r;
    return true;
}

EMU_HANDLER(exec_sse)
{
    struct cpu_state *s = c->s;
    unsigned pfx = i->rep == 0xf3 ? 3 : i->rep == 0xf2 ? 2 : i->pfx66 ? 1 : 0;
    unsigned op = i->op;
    xmm_t *d = xreg(c, i->reg), v;

    if ((s->cr0 & X86_CR0_EM) || !(s->cr4 & X86_CR4_OSFXSR))
        emu_exec_ud(c, i);
    if (s->cr0 & X86_CR0_TS)
        emu_fault(c, EXC_NM);

    if (pfx == 1 && sse_is_int_op(op)) {
        v = sse_src(c, i, true);
        sse_int_op(op, d, &v);
        return;
    }

    switch (op | pfx << 8) {
    case 0x010: case 0x110:          /* MOVUPS/MOVUPD xmm, xmm/m128 */
        *d = sse_src(c, i, false);
        return;
    case 0x011: case 0x111:          /* MOVUPS/MOVUPD xmm/m128, xmm */
        if (i->mem)
            sse_store(c, i, d, 16, false);
        else
            *xreg(c, i->rm) = *d;
        return;
    case 0x310:                      /* MOVSS */
        if (i->mem) {
            d->q[0] = (uint32_t)emu_read_la(c, sse_la(c, i, 4, false, ACC_READ), 4);
            d->q[1] = 0;
        } else {
            d->d[0] = xreg(c, i->rm)->d[0];
        }
        return;
    case 0x210:                      /* MOVSD */
        if (i->mem) {
            d->q[0] = sse_load64(c, i);
            d->q[1] = 0;
        } else {
            d->q[0] = xreg(c, i->rm)->q[0];
        }
        return;
    case 0x311:
        if (i->mem)
            sse_store(c, i, d, 4, false);
        else
            xreg(c, i->rm)->d[0] = d->d[0];
        return;
    case 0x211:
        if (i->mem)
            sse_store(c, i, d, 8, false);
        else
            xreg(c, i->rm)->q[0] = d->q[0];
        return;
    case 0x012:                      /* MOVHLPS / MOVLPS m64 */
        d->q[0] = i->mem ? sse_load64(c, i) : xreg(c, i->rm)->q[1];
        return;
    case 0x112:                      /* MOVLPD m64 */
        if (!i->mem)
            break;
        d->q[0] = sse_load64(c, i);
        return;
    case 0x212:                      /* MOVDDUP */
        d->q[0] = d->q[1] = sse_load64(c, i);
        return;
    case 0x013: case 0x113:          /* MOVLPS/MOVLPD m64, xmm */
    case 0x017: case 0x117:          /* MOVHPS/MOVHPD m64, xmm */
        if (!i->mem)
            break;
        v.q[0] = (op == 0x13) ? d->q[0] : d->q[1];
        sse_store(c, i, &v, 8, false);
        return;
    case 0x016:                      /* MOVLHPS / MOVHPS m64 */
        d->q[1] = i->mem ? sse_load64(c, i) : xreg(c, i->rm)->q[0];
        return;
    case 0x116:
        if (!i->mem)
            break;
        d->q[1] = sse_load64(c, i);
        return;
    case 0x014: case 0x015: {        /* UNPCKLPS/UNPCKHPS */
        xmm_t a = *d, b = sse_src(c, i, true);
        unsigned h = op == 0x15 ? 2 : 0;

        d->d[0] = a.d[h];
        d->d[1] = b.d[h];
        d->d[2] = a.d[h + 1];
        d->d[3] = b.d[h + 1];
        return;
    }
    case 0x114: case 0x115: {        /* UNPCKLPD/UNPCKHPD */
        xmm_t a = *d, b = sse_src(c, i, true);
        unsigned h = op == 0x15;

        d->q[0] = a.q[h];
        d->q[1] = b.q[h];
        return;
    }
    case 0x028: case 0x128:          /* MOVAPS/MOVAPD */
    case 0x16f:                      /* MOVDQA */
        *d = sse_src(c, i, true);
        return;
    case 0x36f:                      /* MOVDQU */
        *d = sse_src(c, i, false);
        return;
    case 0x029: case 0x129: case 0x17f: case 0x37f: case 0x02b: case 0x12b: case 0x1e7:
        if (i->mem)
            sse_store(c, i, d, 16, op != 0x7f || pfx != 3);
        else if (op == 0x2b || op == 0xe7)
            break;
        else
            *xreg(c, i->rm) = *d;
        return;
    case 0x02e: case 0x02f: {        /* UCOMISS/COMISS */
        float b;

        if (i->mem) {
            uint32_t raw = (uint32_t)emu_read_la(c, sse_la(c, i, 4, false, ACC_READ), 4);

            memcpy(&b, &raw, 4);
        } else {
            b = xreg(c, i->rm)->f[0];
        }
        sse_compare_flags(c, d->f[0], b);
        return;
    }
    case 0x12e: case 0x12f: {        /* UCOMISD/COMISD */
        uint64_t raw = sse_load64(c, i);
        double b;

        memcpy(&b, &raw, 8);
        sse_compare_flags(c, d->df[0], b);
        return;
    }
    case 0x050: case 0x150: {        /* MOVMSKPS/MOVMSKPD */
        xmm_t *src = xreg(c, i->rm);
        unsigned m = 0;

        if (i->mem)
            break;
        if (pfx)
            m = (unsigned)(src->q[0] >> 63) | (unsigned)(src->q[1] >> 63) << 1;
        else
            for (int k = 0; k < 4; k++)
                m |= (src->d[k] >> 31) << k;
        emu_set_reg(c, i->reg, 4, m);
        return;
    }
    case 0x054: case 0x154: v = sse_src(c, i, true); d->q[0] &= v.q[0]; d->q[1] &= v.q[1]; return;
    case 0x055: case 0x155:
        v = sse_src(c, i, true);
        d->q[0] = ~d->q[0] & v.q[0];
        d->q[1] = ~d->q[1] & v.q[1];
        return;
    case 0x056: case 0x156: v = sse_src(c, i, true); d->q[0] |= v.q[0]; d->q[1] |= v.q[1]; return;
    case 0x057: case 0x157: v = sse_src(c, i, true); d->q[0] ^= v.q[0]; d->q[1] ^= v.q[1]; return;
    case 0x16e: {                    /* MOVD/MOVQ xmm, r/m32/64 */
        unsigned size = i->rex & 8 ? 8 : 4;

        d->q[0] = i->mem ? emu_read(c, i->seg, emu_ea(c, i), size) : emu_reg(c, i->rm, size);
        d->q[1] = 0;
        return;
    }
    case 0x17e: {                    /* MOVD/MOVQ r/m32/64, xmm */
        unsigned size = i->rex & 8 ? 8 : 4;

        if (i->mem)
            emu_write(c, i->seg, emu_ea(c, i), size, d->q[0]);
        else
            emu_set_reg(c, i->rm, size, d->q[0]);
        return;
    }
    case 0x37e:                      /* MOVQ xmm, xmm/m64 */
        d->q[0] = sse_load64(c, i);
        d->q[1] = 0;
        return;
    case 0x1d6:                      /* MOVQ xmm/m64, xmm */
        if (i->mem) {
            sse_store(c, i, d, 8, false);
        } else {
            xreg(c, i->rm)->q[0] = d->q[0];
            xreg(c, i->rm)->q[1] = 0;
        }
        return;
    case 0x170: case 0x270: case 0x370: {  /* PSHUFD / PSHUFLW / PSHUFHW */
        xmm_t src = sse_src(c, i, true), r = src;
        unsigned imm = (unsigned)i->imm;

        if (pfx == 1) {
            for (int k = 0; k < 4; k++)
                r.d[k] = src.d[(imm >> (2 * k)) & 3];
        } else {
            unsigned base = pfx == 2 ? 0 : 4;

            for (int k = 0; k < 4; k++)
                r.w[base + k] = src.w[base + ((imm >> (2 * k)) & 3)];
        }
        *d = r;
        return;
    }
    case 0x171: case 0x172: case 0x173: {  /* shift groups, xmm by imm8 */
        xmm_t *r = xreg(c, i->rm);
        unsigned width = op == 0x71 ? 2 : op == 0x72 ? 4 : 8;
        unsigned cnt = (unsigned)i->imm & 0xff;

        if (i->mem)
            break;
        if (op == 0x73 && (i->sub == 3 || i->sub == 7)) {
            sse_byteshift(r, cnt, i->sub == 7);
            return;
        }
        if (i->sub != 2 && i->sub != 6 && !(i->sub == 4 && width != 8))
            break;
        sse_shift(r, i->sub, width, cnt);
        return;
    }
    case 0x1d7: {                    /* PMOVMSKB */
        xmm_t *src = xreg(c, i->rm);
        unsigned m = 0;

        if (i->mem)
            break;
        for (int k = 0; k < 16; k++)
            m |= (unsigned)(src->b[k] >> 7) << k;
        emu_set_reg(c, i->reg, 4, m);
        return;
    }
    case 0x0c6: case 0x1c6: {        /* SHUFPS / SHUFPD */
        xmm_t a = *d, b = sse_src(c, i, true);
        unsigned imm = (unsigned)i->imm;

        if (pfx) {
            d->q[0] = a.q[imm & 1];
            d->q[1] = b.q[(imm >> 1) & 1];
        } else {
            d->d[0] = a.d[imm & 3];
            d->d[1] = a.d[(imm >> 2) & 3];
            d->d[2] = b.d[(imm >> 4) & 3];
            d->d[3] = b.d[(imm >> 6) & 3];
        }
        return;
    }
    case 0x1c4: {                    /* PINSRW */
        uint16_t w = (uint16_t)(i->mem ? emu_read(c, i->seg, emu_ea(c, i), 2) : emu_reg(c, i->rm, 2));

        d->w[i->imm & 7] = w;
        return;
    }
    case 0x1c5:                      /* PEXTRW r32, xmm, imm8 */
        if (i->mem)
            break;
        emu_set_reg(c, i->reg, 4, xreg(c, i->rm)->w[i->imm & 7]);
        return;
    case 0x0c3:                      /* MOVNTI m32/64, r */
        if (!i->mem)
            break;
        emu_write(c, i->seg, emu_ea(c, i), i->opsize == 8 ? 8 : 4,
                  emu_reg(c, i->reg, i->opsize == 8 ? 8 : 4));
        return;
    }
    emu_exec_ud(c, i);
}
