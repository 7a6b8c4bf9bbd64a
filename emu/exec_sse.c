/* SSE/SSE2 data movement, logic, integer arithmetic, shuffles and the
 * compares glibc and busybox use (the 66/F3/F2-prefixed 0F opcodes).
 * plus the SSE/SSE2/SSE3 floating-point instructions (run on the host's
 * SSE unit under the guest's MXCSR, see below).  One handler dispatches on (opcode, mandatory prefix). */
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

/* --- floating point ------------------------------------------------------
 * Every SSE FP operation runs as the same instruction on the host under the
 * guest's MXCSR (rounding, DAZ, FTZ) with all exceptions masked, between a
 * save and a restore of the host MXCSR in one asm statement: results and
 * flags are then the hardware's, bit for bit.  The guest's exception masks
 * are applied afterwards (sse_fp_finish).  RCPPS/RSQRTPS are approximations
 * whose exact bits are implementation specific: they are the host's. */

typedef float v4f __attribute__((vector_size(16)));

#define MX_IE 0x01
#define MX_DE 0x02
#define MX_ZE 0x04
#define MX_OE 0x08
#define MX_UE 0x10
#define MX_PE 0x20
#define MX_FTZ 0x8000

typedef uint32_t (*sse_fp_fn)(xmm_t *d, const xmm_t *s, uint32_t mx);

#define HOST_FP(name, insn)                                                      \
    static uint32_t name(xmm_t *d, const xmm_t *s, uint32_t mx)                  \
    {                                                                            \
        uint32_t old, out;                                                       \
        v4f a, b;                                                                \
                                                                                 \
        memcpy(&a, d, 16);                                                       \
        memcpy(&b, s, 16);                                                       \
        __asm__ volatile("stmxcsr %[old]\n\tldmxcsr %[mx]\n\t" insn " %[b], %[a]\n\t" \
                         "stmxcsr %[out]\n\tldmxcsr %[old]"                      \
                         : [a] "+x"(a), [old] "=m"(old), [out] "=m"(out)         \
                         : [b] "x"(b), [mx] "m"(mx));                            \
        memcpy(d, &a, 16);                                                       \
        return out;                                                              \
    }

#define HOST_FP4(op)                                                             \
    HOST_FP(h_##op##ps, #op "ps") HOST_FP(h_##op##pd, #op "pd")                  \
    HOST_FP(h_##op##ss, #op "ss") HOST_FP(h_##op##sd, #op "sd")

HOST_FP4(add)
HOST_FP4(sub)
HOST_FP4(mul)
HOST_FP4(div)
HOST_FP4(min)
HOST_FP4(max)
HOST_FP4(sqrt)
HOST_FP(h_rcpps, "rcpps")
HOST_FP(h_rcpss, "rcpss")
HOST_FP(h_rsqrtps, "rsqrtps")
HOST_FP(h_rsqrtss, "rsqrtss")
HOST_FP(h_addsubps, "addsubps")
HOST_FP(h_addsubpd, "addsubpd")
HOST_FP(h_haddps, "haddps")
HOST_FP(h_haddpd, "haddpd")
HOST_FP(h_hsubps, "hsubps")
HOST_FP(h_hsubpd, "hsubpd")
HOST_FP(h_cvtps2pd, "cvtps2pd")
HOST_FP(h_cvtpd2ps, "cvtpd2ps")
HOST_FP(h_cvtss2sd, "cvtss2sd")
HOST_FP(h_cvtsd2ss, "cvtsd2ss")
HOST_FP(h_cvtdq2ps, "cvtdq2ps")
HOST_FP(h_cvtps2dq, "cvtps2dq")
HOST_FP(h_cvttps2dq, "cvttps2dq")
HOST_FP(h_cvtdq2pd, "cvtdq2pd")
HOST_FP(h_cvtpd2dq, "cvtpd2dq")
HOST_FP(h_cvttpd2dq, "cvttpd2dq")

#define HOST_CMP(form)                                                           \
    HOST_FP(h_cmp##form##0, "cmpeq" #form) HOST_FP(h_cmp##form##1, "cmplt" #form) \
    HOST_FP(h_cmp##form##2, "cmple" #form) HOST_FP(h_cmp##form##3, "cmpunord" #form) \
    HOST_FP(h_cmp##form##4, "cmpneq" #form) HOST_FP(h_cmp##form##5, "cmpnlt" #form) \
    HOST_FP(h_cmp##form##6, "cmpnle" #form) HOST_FP(h_cmp##form##7, "cmpord" #form) \
    static const sse_fp_fn h_cmp##form[8] = {                                    \
        h_cmp##form##0, h_cmp##form##1, h_cmp##form##2, h_cmp##form##3,          \
        h_cmp##form##4, h_cmp##form##5, h_cmp##form##6, h_cmp##form##7,          \
    };

HOST_CMP(ps)
HOST_CMP(pd)
HOST_CMP(ss)
HOST_CMP(sd)

/* COMISS/UCOMISS/COMISD/UCOMISD: ZF, PF, CF from the host. */
#define HOST_COMI(name, insn)                                                    \
    static uint32_t name(const xmm_t *d, const xmm_t *s, uint32_t mx, uint64_t *fl) \
    {                                                                            \
        uint32_t old, out;                                                       \
        v4f a, b;                                                                \
        bool z, p, cf;                                                           \
                                                                                 \
        memcpy(&a, d, 16);                                                       \
        memcpy(&b, s, 16);                                                       \
        __asm__ volatile("stmxcsr %[old]\n\tldmxcsr %[mx]\n\t" insn " %[b], %[a]\n\t" \
                         "stmxcsr %[out]\n\tldmxcsr %[old]"                      \
                         : [old] "=m"(old), [out] "=m"(out), "=@ccz"(z), "=@ccp"(p), \
                           "=@ccc"(cf)                                           \
                         : [a] "x"(a), [b] "x"(b), [mx] "m"(mx));                \
        *fl = (z ? X86_RFLAGS_ZF : 0) | (p ? X86_RFLAGS_PF : 0) |                \
              (cf ? X86_RFLAGS_CF : 0);                                          \
        return out;                                                              \
    }

HOST_COMI(h_comiss, "comiss")
HOST_COMI(h_ucomiss, "ucomiss")
HOST_COMI(h_comisd, "comisd")
HOST_COMI(h_ucomisd, "ucomisd")

/* CVTSI2SS/SD from a 32- or 64-bit integer. */
#define HOST_CVTI2F(name, insn, type, mod)                                       \
    static uint32_t name(xmm_t *d, type v, uint32_t mx)                          \
    {                                                                            \
        uint32_t old, out;                                                       \
        v4f a;                                                                   \
                                                                                 \
        memcpy(&a, d, 16);                                                       \
        __asm__ volatile("stmxcsr %[old]\n\tldmxcsr %[mx]\n\t" insn " %" mod "[v], %[a]\n\t" \
                         "stmxcsr %[out]\n\tldmxcsr %[old]"                      \
                         : [a] "+x"(a), [old] "=m"(old), [out] "=m"(out)         \
                         : [v] "r"(v), [mx] "m"(mx));                            \
        memcpy(d, &a, 16);                                                       \
        return out;                                                              \
    }

HOST_CVTI2F(h_cvtsi2ssl, "cvtsi2ssl", uint32_t, "k")
HOST_CVTI2F(h_cvtsi2ssq, "cvtsi2ssq", uint64_t, "q")
HOST_CVTI2F(h_cvtsi2sdl, "cvtsi2sdl", uint32_t, "k")
HOST_CVTI2F(h_cvtsi2sdq, "cvtsi2sdq", uint64_t, "q")

/* CVT(T)SS2SI / CVT(T)SD2SI to a 32- or 64-bit register. */
#define HOST_CVTF2I(name, insn, type, mod)                                       \
    static uint32_t name(const xmm_t *s, uint64_t *res, uint32_t mx)             \
    {                                                                            \
        uint32_t old, out;                                                       \
        type r;                                                                  \
        v4f b;                                                                   \
                                                                                 \
        memcpy(&b, s, 16);                                                       \
        __asm__ volatile("stmxcsr %[old]\n\tldmxcsr %[mx]\n\t" insn " %[b], %" mod "[r]\n\t" \
                         "stmxcsr %[out]\n\tldmxcsr %[old]"                      \
                         : [r] "=r"(r), [old] "=m"(old), [out] "=m"(out)         \
                         : [b] "x"(b), [mx] "m"(mx));                            \
        *res = r;                                                                \
        return out;                                                              \
    }

HOST_CVTF2I(h_cvtss2sil, "cvtss2si", uint32_t, "k")
HOST_CVTF2I(h_cvtss2siq, "cvtss2si", uint64_t, "q")
HOST_CVTF2I(h_cvttss2sil, "cvttss2si", uint32_t, "k")
HOST_CVTF2I(h_cvttss2siq, "cvttss2si", uint64_t, "q")
HOST_CVTF2I(h_cvtsd2sil, "cvtsd2si", uint32_t, "k")
HOST_CVTF2I(h_cvtsd2siq, "cvtsd2si", uint64_t, "q")
HOST_CVTF2I(h_cvttsd2sil, "cvttsd2si", uint32_t, "k")
HOST_CVTF2I(h_cvttsd2siq, "cvttsd2si", uint64_t, "q")

/* The host MXCSR for an operation: the guest's modes, flags clear, every
 * exception masked.  FTZ only acts when underflow is masked. */
static uint32_t sse_host_mxcsr(uint32_t g)
{
    uint32_t mx = (g & ~0x3fU) | 0x1f80;

    if (!(g & (MX_UE << 7)))
        mx &= ~MX_FTZ;
    return mx & 0xffff;
}

/* Result elements to check for tininess: an unmasked underflow is signalled
 * for a tiny result even when it is exact, which a masked run does not flag. */
enum { TINY_NONE, TINY_F1, TINY_F2, TINY_F4, TINY_D1, TINY_D2,
       TINY_LANES /* flags were gathered per element (sse_lane_flags) */ };

static bool sse_tiny(const xmm_t *r, unsigned kind)
{
    unsigned n = kind == TINY_F1 || kind == TINY_D1 ? 1 : kind == TINY_F2 || kind == TINY_D2 ? 2 : 4;

    for (unsigned k = 0; k < n; k++) {
        if (kind >= TINY_D1) {
            if (!(r->q[k] & 0x7ff0000000000000ULL) && (r->q[k] & 0x000fffffffffffffULL))
                return true;
        } else if (!(r->d[k] & 0x7f800000U) && (r->d[k] & 0x007fffffU)) {
            return true;
        }
    }
    return false;
}

static void sse_xm(struct emu_cpu *c)
{
    emu_fault(c, (c->s->cr4 & X86_CR4_OSXMMEXCPT) ? EXC_XM : EXC_UD);
}

/* Apply the guest masks to the flags a masked host run raised.  Unmasked
 * pre-computation exceptions (IE, DE, ZE) suppress the post-computation
 * ones; an unmasked exception leaves the destination untouched. */
static void sse_fp_finish(struct emu_cpu *c, uint32_t hflags, const xmm_t *r, unsigned tiny)
{
    uint32_t *mx = &c->s->fpu.mxcsr;
    uint32_t masks = (*mx >> 7) & 0x3f;
    uint32_t pre = hflags & (MX_IE | MX_DE | MX_ZE);
    uint32_t post = hflags & (MX_OE | MX_UE | MX_PE);

    if (pre & ~masks) {
        *mx |= pre;
        sse_xm(c);
    }
    if (!(masks & MX_UE) && tiny != TINY_NONE && tiny != TINY_LANES && r && sse_tiny(r, tiny))
        post |= MX_UE;
    /* An unmasked overflow/underflow traps before precision is evaluated
     * (observed on the host: UE alone, no PE). */
    *mx |= pre | post;
    if (post & ~masks)
        sse_xm(c);
}

/* Scalar memory operands are 4 or 8 bytes; packed ones 16, aligned. */
static xmm_t sse_fp_src(struct emu_cpu *c, const struct emu_insn *i, unsigned size)
{
    xmm_t v = { .q = { 0, 0 } };

    if (size == 16)
        return sse_src(c, i, true);
    if (!i->mem)
        return *xreg(c, i->rm);
    v.q[0] = emu_read_la(c, sse_la(c, i, size, false, ACC_READ), size);
    return v;
}

struct sse_fp_row {
    sse_fp_fn fn[4];        /* by mandatory prefix: none, 66, F2, F3 */
    uint8_t size[4];        /* memory operand size */
    uint8_t tiny[4];
};

#define R4(a, b, c_, d_) { a, b, c_, d_ }

/* Arithmetic 0F 51-5F (not 54-57, logic). */
static const struct sse_fp_row sse_arith[16] = {
    [0x1] = { R4(h_sqrtps, h_sqrtpd, h_sqrtsd, h_sqrtss), R4(16, 16, 8, 4),
              R4(TINY_NONE, TINY_NONE, TINY_NONE, TINY_NONE) },
    [0x2] = { R4(h_rsqrtps, NULL, NULL, h_rsqrtss), R4(16, 0, 0, 4), R4(0, 0, 0, 0) },
    [0x3] = { R4(h_rcpps, NULL, NULL, h_rcpss), R4(16, 0, 0, 4), R4(0, 0, 0, 0) },
    [0x8] = { R4(h_addps, h_addpd, h_addsd, h_addss), R4(16, 16, 8, 4),
              R4(TINY_F4, TINY_D2, TINY_D1, TINY_F1) },
    [0x9] = { R4(h_mulps, h_mulpd, h_mulsd, h_mulss), R4(16, 16, 8, 4),
              R4(TINY_F4, TINY_D2, TINY_D1, TINY_F1) },
    [0xa] = { R4(h_cvtps2pd, h_cvtpd2ps, h_cvtsd2ss, h_cvtss2sd), R4(8, 16, 8, 4),
              R4(TINY_NONE, TINY_F2, TINY_F1, TINY_NONE) },
    [0xb] = { R4(h_cvtdq2ps, h_cvtps2dq, NULL, h_cvttps2dq), R4(16, 16, 0, 16),
              R4(0, 0, 0, 0) },
    [0xc] = { R4(h_subps, h_subpd, h_subsd, h_subss), R4(16, 16, 8, 4),
              R4(TINY_F4, TINY_D2, TINY_D1, TINY_F1) },
    [0xd] = { R4(h_minps, h_minpd, h_minsd, h_minss), R4(16, 16, 8, 4), R4(0, 0, 0, 0) },
    [0xe] = { R4(h_divps, h_divpd, h_divsd, h_divss), R4(16, 16, 8, 4),
              R4(TINY_F4, TINY_D2, TINY_D1, TINY_F1) },
    [0xf] = { R4(h_maxps, h_maxpd, h_maxsd, h_maxss), R4(16, 16, 8, 4), R4(0, 0, 0, 0) },
};

/* Packed operations that can overflow or underflow, re-run lane by lane as
 * scalars when OE or UE is unmasked: an element that traps on OE/UE does not
 * report PE, while the other elements still do, so the flags must be
 * gathered per element. */
enum { MAP_SAME, MAP_ADDSUB, MAP_HORIZ };

enum { X_ADD, X_SUB, X_MUL, X_DIV, X_CVT };

struct sse_lanes {
    sse_fp_fn f, f_odd;     /* scalar op (odd lanes: f_odd for ADDSUB) */
    uint8_t n, w;           /* lanes, source element width */
    uint8_t out;            /* TINY_F1 or TINY_D1: result element */
    uint8_t map;
    uint8_t xop;            /* the operation, for sse_inexact_unbounded */
};

static const struct sse_lanes l_addps = { h_addss, NULL, 4, 4, TINY_F1, MAP_SAME, X_ADD };
static const struct sse_lanes l_addpd = { h_addsd, NULL, 2, 8, TINY_D1, MAP_SAME, X_ADD };
static const struct sse_lanes l_subps = { h_subss, NULL, 4, 4, TINY_F1, MAP_SAME, X_SUB };
static const struct sse_lanes l_subpd = { h_subsd, NULL, 2, 8, TINY_D1, MAP_SAME, X_SUB };
static const struct sse_lanes l_mulps = { h_mulss, NULL, 4, 4, TINY_F1, MAP_SAME, X_MUL };
static const struct sse_lanes l_mulpd = { h_mulsd, NULL, 2, 8, TINY_D1, MAP_SAME, X_MUL };
static const struct sse_lanes l_divps = { h_divss, NULL, 4, 4, TINY_F1, MAP_SAME, X_DIV };
static const struct sse_lanes l_divpd = { h_divsd, NULL, 2, 8, TINY_D1, MAP_SAME, X_DIV };
static const struct sse_lanes l_cvtpd2ps = { h_cvtsd2ss, NULL, 2, 8, TINY_F1, MAP_SAME, X_CVT };
static const struct sse_lanes l_addsubps = { h_subss, h_addss, 4, 4, TINY_F1, MAP_ADDSUB, X_SUB };
static const struct sse_lanes l_addsubpd = { h_subsd, h_addsd, 2, 8, TINY_D1, MAP_ADDSUB, X_SUB };
static const struct sse_lanes l_haddps = { h_addss, NULL, 4, 4, TINY_F1, MAP_HORIZ, X_ADD };
static const struct sse_lanes l_haddpd = { h_addsd, NULL, 2, 8, TINY_D1, MAP_HORIZ, X_ADD };
static const struct sse_lanes l_hsubps = { h_subss, NULL, 4, 4, TINY_F1, MAP_HORIZ, X_SUB };
static const struct sse_lanes l_hsubpd = { h_subsd, NULL, 2, 8, TINY_D1, MAP_HORIZ, X_SUB };
static const struct sse_lanes l_addss = { h_addss, NULL, 1, 4, TINY_F1, MAP_SAME, X_ADD };
static const struct sse_lanes l_addsd = { h_addsd, NULL, 1, 8, TINY_D1, MAP_SAME, X_ADD };
static const struct sse_lanes l_subss = { h_subss, NULL, 1, 4, TINY_F1, MAP_SAME, X_SUB };
static const struct sse_lanes l_subsd = { h_subsd, NULL, 1, 8, TINY_D1, MAP_SAME, X_SUB };
static const struct sse_lanes l_mulss = { h_mulss, NULL, 1, 4, TINY_F1, MAP_SAME, X_MUL };
static const struct sse_lanes l_mulsd = { h_mulsd, NULL, 1, 8, TINY_D1, MAP_SAME, X_MUL };
static const struct sse_lanes l_divss = { h_divss, NULL, 1, 4, TINY_F1, MAP_SAME, X_DIV };
static const struct sse_lanes l_divsd = { h_divsd, NULL, 1, 8, TINY_D1, MAP_SAME, X_DIV };
static const struct sse_lanes l_cvtsd2ss = { h_cvtsd2ss, NULL, 1, 8, TINY_F1, MAP_SAME, X_CVT };

/* An element that traps on unmasked OE/UE reports PE when its result,
 * rounded to the destination precision with an unbounded exponent, is
 * inexact.  The x87 unit computes exactly that: precision control 24/53
 * bits keeps its 15-bit exponent.  DAZ is applied to the inputs first. */
static long double lane_ld(uint64_t bits, unsigned w, bool daz)
{
    if (w == 8) {
        double v;

        if (daz && !(bits & 0x7ff0000000000000ULL))
            bits &= 0x8000000000000000ULL;
        memcpy(&v, &bits, 8);
        return v;
    } else {
        uint32_t b32 = (uint32_t)bits;
        float v;

        if (daz && !(b32 & 0x7f800000U))
            b32 &= 0x80000000U;
        memcpy(&v, &b32, 4);
        return v;
    }
}

#define X87_OP(insn)                                                             \
    __asm__ volatile("fnstcw %[old]\n\tfldcw %[cw]\n\tfnclex\n\t" insn " %%st(1), %%st\n\t" \
                     "fnstsw %[sw]\n\tfnclex\n\tfldcw %[old]"                \
                     : "+t"(a), [old] "=m"(old), [sw] "=m"(sw) : "u"(b), [cw] "m"(cw))

static bool sse_inexact_unbounded(unsigned xop, long double a, long double b, unsigned out_w,
                                  uint32_t mxcsr)
{
    uint16_t cw = (uint16_t)(0x007f | (out_w == 8 ? 0x200 : 0) | ((mxcsr >> 13) & 3) << 10);
    uint16_t old, sw;

    if (xop == X_CVT) {
        a = b;
        b = 1.0L;
        xop = X_MUL;
    }
    switch (xop) {
    case X_ADD: X87_OP("fadd"); break;
    case X_SUB: X87_OP("fsub"); break;
    case X_MUL: X87_OP("fmul"); break;
    default: X87_OP("fdiv"); break;
    }
    return sw & 0x20;
}

static uint64_t lane_get(const xmm_t *v, unsigned w, unsigned k)
{
    return w == 8 ? v->q[k] : v->d[k];
}

static void lane_set0(xmm_t *v, unsigned w, uint64_t x)
{
    if (w == 8)
        v->q[0] = x;
    else
        v->d[0] = (uint32_t)x;
}

static uint32_t sse_lane_flags(const struct sse_lanes *l, const xmm_t *d, const xmm_t *s,
                               uint32_t mx, uint32_t masks)
{
    uint32_t all = 0;

    for (unsigned k = 0; k < l->n; k++) {
        xmm_t a = { .q = { 0, 0 } }, b = { .q = { 0, 0 } };
        sse_fp_fn f = l->f;
        uint32_t fl;

        if (l->map == MAP_HORIZ) {
            const xmm_t *src = k < l->n / 2 ? d : s;
            unsigned j = (k % (l->n / 2)) * 2;

            lane_set0(&a, l->w, lane_get(src, l->w, j));
            lane_set0(&b, l->w, lane_get(src, l->w, j + 1));
        } else {
            lane_set0(&a, l->w, lane_get(d, l->w, k));
            lane_set0(&b, l->w, lane_get(s, l->w, k));
            if (l->map == MAP_ADDSUB && (k & 1))
                f = l->f_odd;
        }
        {
            long double la = lane_ld(a.q[0], l->w, mx & 0x40);
            long double lb = lane_ld(b.q[0], l->w, mx & 0x40);

            fl = f(&a, &b, mx) & 0x3f;
            if (!(masks & MX_UE) && sse_tiny(&a, l->out))
                fl |= MX_UE;
            if (fl & (MX_OE | MX_UE) & ~masks) {
                fl &= ~MX_PE;
                if (sse_inexact_unbounded(f == l->f_odd ? X_ADD : l->xop, la, lb,
                                          l->out == TINY_D1 ? 8 : 4, mx))
                    fl |= MX_PE;
            }
        }
        all |= fl;
    }
    return all;
}

static void sse_fp_run_l(struct emu_cpu *c, const struct emu_insn *i, sse_fp_fn fn,
                         unsigned size, unsigned tiny, const struct sse_lanes *l)
{
    xmm_t *d = xreg(c, i->reg);
    xmm_t s = sse_fp_src(c, i, size), r = *d;
    uint32_t mx = sse_host_mxcsr(c->s->fpu.mxcsr);
    uint32_t masks = (c->s->fpu.mxcsr >> 7) & 0x3f;
    uint32_t fl = fn(&r, &s, mx) & 0x3f;

    if (l && (~masks & (MX_OE | MX_UE)) &&
        ((fl & (MX_OE | MX_UE | MX_PE)) || (!(masks & MX_UE) && sse_tiny(&r, tiny)))) {
        fl = sse_lane_flags(l, d, &s, mx, masks);
        tiny = TINY_LANES;
    }
    sse_fp_finish(c, fl, &r, tiny);
    *d = r;
}

static void sse_fp_run(struct emu_cpu *c, const struct emu_insn *i, sse_fp_fn fn, unsigned size,
                       unsigned tiny)
{
    sse_fp_run_l(c, i, fn, size, tiny, NULL);
}

static const struct sse_lanes *sse_arith_lanes(unsigned op, unsigned px)
{
    switch (op) {
    case 0x58: return px ? &l_addpd : &l_addps;
    case 0x59: return px ? &l_mulpd : &l_mulps;
    case 0x5c: return px ? &l_subpd : &l_subps;
    case 0x5e: return px ? &l_divpd : &l_divps;
    case 0x5a: return px ? &l_cvtpd2ps : NULL;
    }
    return NULL;
}

static const struct sse_lanes *sse_scalar_lanes(unsigned op, unsigned px)
{
    bool sd = px == 2;

    switch (op) {
    case 0x58: return sd ? &l_addsd : &l_addss;
    case 0x59: return sd ? &l_mulsd : &l_mulss;
    case 0x5c: return sd ? &l_subsd : &l_subss;
    case 0x5e: return sd ? &l_divsd : &l_divss;
    case 0x5a: return sd ? &l_cvtsd2ss : NULL;
    }
    return NULL;
}

/* Prefix index into sse_fp_row: none, 66, F2, F3. */
static unsigned sse_pfx_index(unsigned pfx)
{
    return pfx == 3 ? 3 : pfx == 2 ? 2 : pfx;
}

/* The FP instructions; false if op/pfx is not one of them. */
static bool sse_fp(struct emu_cpu *c, const struct emu_insn *i, unsigned pfx)
{
    unsigned op = i->op, px = sse_pfx_index(pfx);
    uint32_t mx = sse_host_mxcsr(c->s->fpu.mxcsr);

    if (op >= 0x51 && op <= 0x5f && !(op >= 0x54 && op <= 0x57)) {
        const struct sse_fp_row *row = &sse_arith[op & 15];

        if (!row->fn[px])
            emu_exec_ud(c, i);
        sse_fp_run_l(c, i, row->fn[px], row->size[px], row->tiny[px],
                     px < 2 ? sse_arith_lanes(op, px) : sse_scalar_lanes(op, px));
        return true;
    }
    switch (op | pfx << 8) {
    case 0x0c2: case 0x1c2: case 0x2c2: case 0x3c2: {   /* CMPPS/PD/SD/SS */
        static const sse_fp_fn *const tab[4] = { h_cmpps, h_cmppd, h_cmpsd, h_cmpss };
        static const uint8_t sz[4] = { 16, 16, 8, 4 };

        sse_fp_run(c, i, tab[px][i->imm & 7], sz[px], TINY_NONE);
        return true;
    }
    case 0x1d0: sse_fp_run_l(c, i, h_addsubpd, 16, TINY_D2, &l_addsubpd); return true;
    case 0x2d0: sse_fp_run_l(c, i, h_addsubps, 16, TINY_F4, &l_addsubps); return true;
    case 0x17c: sse_fp_run_l(c, i, h_haddpd, 16, TINY_D2, &l_haddpd); return true;
    case 0x27c: sse_fp_run_l(c, i, h_haddps, 16, TINY_F4, &l_haddps); return true;
    case 0x17d: sse_fp_run_l(c, i, h_hsubpd, 16, TINY_D2, &l_hsubpd); return true;
    case 0x27d: sse_fp_run_l(c, i, h_hsubps, 16, TINY_F4, &l_hsubps); return true;
    case 0x1e6: sse_fp_run(c, i, h_cvttpd2dq, 16, TINY_NONE); return true;
    case 0x2e6: sse_fp_run(c, i, h_cvtpd2dq, 16, TINY_NONE); return true;
    case 0x3e6: sse_fp_run(c, i, h_cvtdq2pd, 8, TINY_NONE); return true;
    case 0x02e: case 0x02f: case 0x12e: case 0x12f: {   /* (U)COMISS/SD */
        xmm_t s = sse_fp_src(c, i, pfx ? 8 : 4);
        const xmm_t *d = xreg(c, i->reg);
        uint64_t f;
        uint32_t fl;

        if (pfx)
            fl = (op == 0x2f ? h_comisd : h_ucomisd)(d, &s, mx, &f);
        else
            fl = (op == 0x2f ? h_comiss : h_ucomiss)(d, &s, mx, &f);
        sse_fp_finish(c, fl & 0x3f, NULL, TINY_NONE);
        emu_cc_set_flags(c, f);
        return true;
    }
    case 0x22a: case 0x32a: {                           /* CVTSI2SD/SS */
        bool q = i->rex & 8;
        uint64_t v = i->mem ? emu_read(c, i->seg, emu_ea(c, i), q ? 8 : 4)
                            : emu_reg(c, i->rm, q ? 8 : 4);
        xmm_t r = *xreg(c, i->reg);
        uint32_t fl;

        if (pfx == 3)
            fl = q ? h_cvtsi2ssq(&r, v, mx) : h_cvtsi2ssl(&r, (uint32_t)v, mx);
        else
            fl = q ? h_cvtsi2sdq(&r, v, mx) : h_cvtsi2sdl(&r, (uint32_t)v, mx);
        sse_fp_finish(c, fl & 0x3f, NULL, TINY_NONE);
        *xreg(c, i->reg) = r;
        return true;
    }
    case 0x22c: case 0x22d: case 0x32c: case 0x32d: {   /* CVT(T)SD/SS2SI */
        bool q = i->rex & 8;
        xmm_t s = sse_fp_src(c, i, pfx == 2 ? 8 : 4);
        uint64_t r;
        uint32_t fl;

        if (pfx == 2 && op == 0x2c)
            fl = q ? h_cvttsd2siq(&s, &r, mx) : h_cvttsd2sil(&s, &r, mx);
        else if (pfx == 2)
            fl = q ? h_cvtsd2siq(&s, &r, mx) : h_cvtsd2sil(&s, &r, mx);
        else if (op == 0x2c)
            fl = q ? h_cvttss2siq(&s, &r, mx) : h_cvttss2sil(&s, &r, mx);
        else
            fl = q ? h_cvtss2siq(&s, &r, mx) : h_cvtss2sil(&s, &r, mx);
        sse_fp_finish(c, fl & 0x3f, NULL, TINY_NONE);
        emu_set_reg(c, i->reg, q ? 8 : 4, r);
        return true;
    }
    case 0x312: case 0x316: {                           /* MOVSLDUP/MOVSHDUP */
        xmm_t s = sse_src(c, i, true);
        xmm_t *d = xreg(c, i->reg);
        unsigned h = op == 0x16;

        d->d[0] = d->d[1] = s.d[h];
        d->d[2] = d->d[3] = s.d[2 + h];
        return true;
    }
    case 0x2f0:                                         /* LDDQU */
        if (!i->mem)
            emu_exec_ud(c, i);
        *xreg(c, i->reg) = sse_src(c, i, false);
        return true;
    }
    return false;
}

/* MASKMOVQ mm1, mm2 / MASKMOVDQU xmm1, xmm2: the bytes of reg whose mask
 * byte (rm) has its top bit set go to DS:rDI (overridable), with the
 * address size.  All selected bytes are checked for writing first, so a
 * fault stores nothing; an all-zero mask accesses no memory. */
static void sse_maskmov(struct emu_cpu *c, const struct emu_insn *i, const uint8_t *data,
                        const uint8_t *mask, unsigned n)
{
    uint64_t di = c->s->gpr[R_EDI] & emu_mask(i->addrsize);
    int first = -1, last = -1;
    uint64_t la;

    for (unsigned k = 0; k < n; k++) {
        if (mask[k] & 0x80) {
            if (first < 0)
                first = (int)k;
            last = (int)k;
        }
    }
    if (first < 0)
        return;
    la = emu_linear(c, i->seg, (di + (unsigned)first) & emu_mask(i->addrsize),
                    (unsigned)(last - first + 1), ACC_WRITE);
    emu_probe_write(c, la, (unsigned)(last - first + 1));
    for (int k = first; k <= last; k++)
        if (mask[k] & 0x80)
            emu_write_la(c, c->mode == EMU_MODE_64 ? la + (unsigned)(k - first)
                                                   : (uint32_t)(la + (unsigned)(k - first)),
                         1, data[k]);
}

/* --- MMX -----------------------------------------------------------------
 * MMi is the mantissa of physical x87 register i.  cpu_state.fpu.st[] is
 * the FXSAVE image, ordered by ST(i) = physical (TOP + i) & 7, so an MMX
 * instruction first rotates it to TOP = 0; it then marks every register
 * valid (abridged FTW 0xff), and a written MMi gets exponent/sign 0xffff. */

static void mmx_enter(struct emu_cpu *c)
{
    struct x86_fxsave *f = &c->s->fpu;
    unsigned top = (f->fsw >> 11) & 7;

    if (f->fsw & 0x80) {    /* ES: an unmasked x87 exception is pending */
        if (c->s->cr0 & X86_CR0_NE)
            emu_fault(c, EXC_MF);
    }
    if (top) {
        uint8_t st[8][16];

        for (unsigned p = 0; p < 8; p++)
            memcpy(st[p], f->st[(p - top) & 7], 16);
        memcpy(f->st, st, sizeof(st));
        f->fsw &= (uint16_t)~(7u << 11);
    }
    f->ftw = 0xff;
}

static uint64_t mm_get(struct emu_cpu *c, unsigned r)
{
    uint64_t v;

    memcpy(&v, c->s->fpu.st[r & 7], 8);
    return v;
}

static void mm_set(struct emu_cpu *c, unsigned r, uint64_t v)
{
    memcpy(c->s->fpu.st[r & 7], &v, 8);
    c->s->fpu.st[r & 7][8] = 0xff;
    c->s->fpu.st[r & 7][9] = 0xff;
}

static bool mmx_is_op(unsigned op)
{
    return (sse_is_int_op(op) && op != 0x6c && op != 0x6d) || op == 0x6e || op == 0x6f ||
           (op >= 0x70 && op <= 0x73) || op == 0x77 || op == 0x7e || op == 0x7f ||
           op == 0xc4 || op == 0xc5 || op == 0xd7 || op == 0xe7 || op == 0xf7;
}

/* The unprefixed MMX forms; false if op is not one. */
static bool mmx_op(struct emu_cpu *c, const struct emu_insn *i)
{
    unsigned op = i->op, r = i->reg & 7;
    xmm_t a = { .q = { 0, 0 } }, b = { .q = { 0, 0 } };

    if (!mmx_is_op(op))
        return false;
    if (c->s->cr0 & X86_CR0_EM)
        emu_exec_ud(c, i);
    if (c->s->cr0 & X86_CR0_TS)
        emu_fault(c, EXC_NM);
    if ((op == 0xc5 || op == 0xd7 || (op >= 0x71 && op <= 0x73)) && i->mem)
        emu_exec_ud(c, i);
    if ((op == 0xe7 && !i->mem) || (op == 0xf7 && i->mem))
        emu_exec_ud(c, i);
    if (op == 0x73 && (i->sub == 3 || i->sub == 7))
        emu_exec_ud(c, i);
    if (op >= 0x71 && op <= 0x73 && i->sub != 2 && i->sub != 6 && !(i->sub == 4 && op != 0x73))
        emu_exec_ud(c, i);
    /* Operands (and their faults) before any state change. */
    switch (op) {
    case 0x6e: {                                    /* MOVD/MOVQ mm, r/m */
        unsigned size = i->rex & 8 ? 8 : 4;
        uint64_t v = i->mem ? emu_read(c, i->seg, emu_ea(c, i), size) : emu_reg(c, i->rm, size);

        mmx_enter(c);
        mm_set(c, r, v);
        return true;
    }
    case 0x7e: {                                    /* MOVD/MOVQ r/m, mm */
        unsigned size = i->rex & 8 ? 8 : 4;

        mmx_enter(c);
        if (i->mem)
            emu_write(c, i->seg, emu_ea(c, i), size, mm_get(c, r));
        else
            emu_set_reg(c, i->rm, size, mm_get(c, r));
        return true;
    }
    case 0xf7: {                                    /* MASKMOVQ mm, mm */
        uint64_t data, mask;

        mmx_enter(c);
        data = mm_get(c, r);
        mask = mm_get(c, i->rm);
        sse_maskmov(c, i, (const uint8_t *)&data, (const uint8_t *)&mask, 8);
        return true;
    }
    case 0x77:                                      /* EMMS */
        c->s->fpu.ftw = 0;
        return true;
    case 0x7f: case 0xe7:                           /* MOVQ/MOVNTQ mm/m64, mm */
        mmx_enter(c);
        if (i->mem)
            emu_write(c, i->seg, emu_ea(c, i), 8, mm_get(c, r));
        else
            mm_set(c, i->rm, mm_get(c, r));
        return true;
    case 0x71: case 0x72: case 0x73:                /* shifts by imm8 */
        mmx_enter(c);
        a.q[0] = mm_get(c, i->rm);
        sse_shift(&a, i->sub, op == 0x71 ? 2 : op == 0x72 ? 4 : 8, i->imm & 0xff);
        mm_set(c, i->rm, a.q[0]);
        return true;
    case 0xc5:                                      /* PEXTRW r32, mm, imm8 */
        mmx_enter(c);
        a.q[0] = mm_get(c, i->rm);
        emu_set_reg(c, i->reg, 4, a.w[i->imm & 3]);
        return true;
    case 0xd7:                                      /* PMOVMSKB r32, mm */
        mmx_enter(c);
        a.q[0] = mm_get(c, i->rm);
        {
            unsigned m = 0;

            for (int k = 0; k < 8; k++)
                m |= (unsigned)(a.b[k] >> 7) << k;
            emu_set_reg(c, i->reg, 4, m);
        }
        return true;
    case 0xc4: {                                    /* PINSRW mm, r32/m16, imm8 */
        uint16_t w = (uint16_t)(i->mem ? emu_read(c, i->seg, emu_ea(c, i), 2)
                                       : emu_reg(c, i->rm, 2));

        mmx_enter(c);
        a.q[0] = mm_get(c, r);
        a.w[i->imm & 3] = w;
        mm_set(c, r, a.q[0]);
        return true;
    }
    }
    if (i->mem)
        b.q[0] = emu_read(c, i->seg, emu_ea(c, i), 8);
    mmx_enter(c);
    if (!i->mem)
        b.q[0] = mm_get(c, i->rm);
    a.q[0] = mm_get(c, r);
    switch (op) {
    case 0x6f:                                      /* MOVQ mm, mm/m64 */
        a.q[0] = b.q[0];
        break;
    case 0x70:                                      /* PSHUFW */
        for (int k = 0; k < 4; k++)
            a.w[k] = (uint16_t)(b.q[0] >> (16 * ((i->imm >> (2 * k)) & 3)));
        break;
    case 0x68: case 0x69: case 0x6a:                /* high unpacks: low ones on the top halves */
        a.q[0] >>= 32;
        b.q[0] >>= 32;
        sse_int_op(op - 8, &a, &b);
        break;
    case 0x63: case 0x67: case 0x6b:                /* packs: dest and source side by side */
        a.q[1] = b.q[0];
        sse_int_op(op, &a, &b);
        break;
    default:
        sse_int_op(op, &a, &b);
        break;
    }
    mm_set(c, r, a.q[0]);
    return true;
}

/* --- MMX <-> SSE conversions and masked stores ----------------------------
 * CVTPI2PS/CVTPI2PD take two int32 from mm/m64, CVT(T)PS2PI two floats
 * from xmm/m64, CVT(T)PD2PI two doubles from xmm/m128 (aligned) into mm.
 * Each lane runs as the scalar instruction on the host; the flags of the
 * lanes are OR'ed, which is what the packed forms report (only IE, a
 * pre-computation flag, and PE can occur).  An MMX register operand is an
 * MMX instruction (x87 transition, #MF); CVTPI2PD from memory is not
 * (SDM vol. 2, CVTPI2PD), CVTPI2PS always is. */
static bool sse_mmx_cvt(struct emu_cpu *c, const struct emu_insn *i, unsigned pfx)
{
    unsigned op = i->op;
    uint32_t mx = sse_host_mxcsr(c->s->fpu.mxcsr), fl = 0;
    xmm_t s = { .q = { 0, 0 } }, t, r;

    if (pfx > 1 || (op != 0x2a && op != 0x2c && op != 0x2d))
        return false;
    if (op == 0x2a) {
        if (i->mem)
            s.q[0] = emu_read_la(c, sse_la(c, i, 8, false, ACC_READ), 8);
        if (!i->mem || !pfx)
            mmx_enter(c);
        if (!i->mem)
            s.q[0] = mm_get(c, i->rm);
        r = *xreg(c, i->reg);
        for (unsigned k = 0; k < 2; k++) {
            if (pfx) {
                r.df[k] = (double)s.sd[k];  /* exact */
            } else {
                t = r;
                fl |= h_cvtsi2ssl(&t, s.d[k], mx) & 0x3f;
                r.d[k] = t.d[0];
            }
        }
        sse_fp_finish(c, fl, NULL, TINY_NONE);
        *xreg(c, i->reg) = r;
        return true;
    }
    if (i->mem && pfx)
        s = sse_src(c, i, true);
    else if (i->mem)
        s.q[0] = emu_read_la(c, sse_la(c, i, 8, false, ACC_READ), 8);
    else
        s = *xreg(c, i->rm);
    mmx_enter(c);
    for (unsigned k = 0; k < 2; k++) {
        uint64_t v;

        memset(&t, 0, sizeof(t));
        if (pfx) {
            t.q[0] = s.q[k];
            fl |= (op == 0x2c ? h_cvttsd2sil : h_cvtsd2sil)(&t, &v, mx) & 0x3f;
        } else {
            t.d[0] = s.d[k];
            fl |= (op == 0x2c ? h_cvttss2sil : h_cvtss2sil)(&t, &v, mx) & 0x3f;
        }
        r.d[k] = (uint32_t)v;
    }
    sse_fp_finish(c, fl, NULL, TINY_NONE);
    mm_set(c, i->reg, r.q[0]);
    return true;
}

EMU_HANDLER(exec_sse)
{
    struct cpu_state *s = c->s;
    unsigned pfx = i->rep == 0xf3 ? 3 : i->rep == 0xf2 ? 2 : i->pfx66 ? 1 : 0;
    unsigned op = i->op;
    xmm_t *d = xreg(c, i->reg), v;

    if (pfx == 0 && mmx_op(c, i))
        return;
    if ((s->cr0 & X86_CR0_EM) || !(s->cr4 & X86_CR4_OSFXSR))
        emu_exec_ud(c, i);
    if (s->cr0 & X86_CR0_TS)
        emu_fault(c, EXC_NM);

    if (sse_mmx_cvt(c, i, pfx))
        return;
    if (pfx == 1 && sse_is_int_op(op)) {
        v = sse_src(c, i, true);
        sse_int_op(op, d, &v);
        return;
    }
    if (sse_fp(c, i, pfx))
        return;

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
    case 0x1f7:                      /* MASKMOVDQU xmm, xmm */
        if (i->mem)
            break;
        sse_maskmov(c, i, d->b, xreg(c, i->rm)->b, 16);
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
