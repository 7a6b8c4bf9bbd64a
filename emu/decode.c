/* Instruction decoder: prefixes, opcode maps, ModRM/SIB/displacement and
 * immediates, into a struct emu_insn the executor runs without looking at
 * the bytes again.  The per-opcode knowledge lives in emu/optab.c; this file
 * only knows the encoding rules (SDM vol. 2, chapter 2). */
#include "emu/exec.h"

enum dec_status { DEC_OK, DEC_UNIMPL, DEC_INVALID, DEC_TOOLONG, DEC_MORE };

static const struct emu_opdesc desc_0f38 = { NULL, D_MODRM | D_KNOWN, NULL };
static const struct emu_opdesc desc_0f3a = { NULL, D_MODRM | D_IMM8 | D_KNOWN, NULL };

/* LOCK is legal only on these read-modify-write forms with a memory
 * destination (SDM vol. 2, "LOCK"). */
static bool dec_lockable(const struct emu_insn *i)
{
    uint8_t b = i->op;

    if (!i->mem)
        return false;
    if (i->map == 0) {
        if (b < 0x40)
            return (b & 7) < 2 && (b >> 3) != 7;
        switch (b) {
        case 0x80: case 0x81: case 0x82: case 0x83:
            return i->sub != 7;
        case 0x86: case 0x87:
            return true;
        case 0xf6: case 0xf7:
            return i->sub == 2 || i->sub == 3;
        case 0xfe: case 0xff:
            return i->sub < 2;
        }
        return false;
    }
    if (i->map == 1) {
        switch (b) {
        case 0xab: case 0xb3: case 0xbb: case 0xb0: case 0xb1: case 0xc0: case 0xc1:
            return true;
        case 0xba:
            return i->sub >= 5;
        case 0xc7:
            return i->sub == 1;
        }
    }
    return false;
}

static inline unsigned dec_breg(unsigned r, bool rex)
{
    return !rex && r >= 4 && r < 8 ? r + 12 : r;
}

static int dec_core(struct emu_insn *i, const uint8_t *p, unsigned avail, enum emu_mode mode,
                    enum dec_status *st)
{
    const bool m64 = mode == EMU_MODE_64;
    const struct emu_opdesc *d;
    unsigned n = 0, seg_ovr = EMU_NOREG;
    bool p66 = false, p67 = false;
    uint32_t fl;
    uint8_t b, rex = 0;
    unsigned opsize, addrsize;

#define FETCH(v)                                                               \
    do {                                                                       \
        if (n >= 15)                                                           \
            goto too_long;                                                     \
        if (n >= avail)                                                        \
            goto more;                                                         \
        (v) = p[n++];                                                          \
    } while (0)
#define FETCHN(v, nb)                                                          \
    do {                                                                       \
        uint64_t _v = 0;                                                       \
        for (unsigned _k = 0; _k < (nb); _k++) {                               \
            uint8_t _b;                                                        \
            FETCH(_b);                                                         \
            _v |= (uint64_t)_b << (8 * _k);                                    \
        }                                                                      \
        (v) = _v;                                                              \
    } while (0)

    memset(i, 0, sizeof(*i));
    i->base = EMU_NOREG;
    i->index = EMU_NOREG;
    i->seg = S_DS;  /* also for implicit operands (MASKMOVQ's DS:rDI) */

    for (;;) {
        FETCH(b);
        switch (b) {
        case 0x26: case 0x2e: case 0x36: case 0x3e:
            if (!m64)
                seg_ovr = (b >> 3) & 3;
            rex = 0;
            continue;
        case 0x64: case 0x65:
            seg_ovr = b - 0x64 + S_FS;
            rex = 0;
            continue;
        case 0x66:
            p66 = true;
            rex = 0;
            continue;
        case 0x67:
            p67 = true;
            rex = 0;
            continue;
        case 0xf0:
            i->lock = 1;
            rex = 0;
            continue;
        case 0xf2: case 0xf3:
            i->rep = b;
            rex = 0;
            continue;
        }
        if (m64 && (b & 0xf0) == 0x40) {
            rex = b;
            continue;
        }
        break;
    }
    i->rex = rex;
    i->pfx66 = p66;

    if (b == 0x0f) {
        FETCH(b);
        if (b == 0x38) {
            FETCH(b);
            i->map = 2;
            d = &desc_0f38;
        } else if (b == 0x3a) {
            FETCH(b);
            i->map = 3;
            d = &desc_0f3a;
        } else {
            i->map = 1;
            d = &emu_optab2[b];
        }
    } else {
        d = &emu_optab1[b];
        /* VEX, EVEX and XOP escapes: no AVX is advertised.  Outside 64-bit
         * mode, C4/C5 with a memory ModRM are LES/LDS. */
        if (b == 0x62 || ((b == 0xc4 || b == 0xc5) && (m64 || (n < avail && p[n] >= 0xc0))))
            goto invalid;
    }
    i->op = b;
    fl = d->flags;
    if (!d->fn && !(fl & (D_KNOWN | D_GROUP)))
        goto invalid;
    if (m64 && (fl & D_INV64))
        goto invalid;

    addrsize = m64 ? (p67 ? 4 : 8) : ((mode == EMU_MODE_32) != p67 ? 4 : 2);

    if (fl & D_MODRM) {
        uint8_t m, mod, rm;

        FETCH(m);
        i->modrm = m;
        mod = m >> 6;
        rm = m & 7;
        i->sub = (m >> 3) & 7;
        if (fl & D_GROUP) {
            d = &d->group[i->sub];
            if (!d->fn && !(d->flags & D_KNOWN))
                goto invalid;
            fl |= d->flags;
        }
        i->reg = i->sub | ((rex & 4) << 1);
        if (mod == 3 || (fl & D_REGONLY)) {
            i->rm = rm | ((rex & 1) << 3);
        } else {
            i->mem = 1;
            i->seg = S_DS;
            if (addrsize != 2) {
                uint8_t base = rm;

                if (rm == 4) {
                    uint8_t sib, idx;

                    FETCH(sib);
                    i->scale = sib >> 6;
                    idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
                    i->index = idx == 4 ? EMU_NOREG : idx;
                    base = sib & 7;
                }
                if (base == 5 && mod == 0) {
                    uint64_t d32;

                    i->base = rm == 5 && m64 ? EMU_RIPREL : EMU_NOREG;
                    FETCHN(d32, 4);
                    i->disp = (int32_t)d32;
                } else {
                    i->base = base | ((rex & 1) << 3);
                    if (base == 4 || base == 5)
                        i->seg = S_SS;
                }
            } else {
                static const uint8_t b16[8] = { R_EBX, R_EBX, R_EBP, R_EBP, R_ESI, R_EDI,
                                                R_EBP, R_EBX };
                static const uint8_t x16[8] = { R_ESI, R_EDI, R_ESI, R_EDI, EMU_NOREG,
                                                EMU_NOREG, EMU_NOREG, EMU_NOREG };

                if (rm == 6 && mod == 0) {
                    uint64_t d16;

                    FETCHN(d16, 2);
                    i->disp = (int16_t)d16;
                } else {
                    i->base = b16[rm];
                    i->index = x16[rm];
                    if (rm == 2 || rm == 3 || rm == 6)
                        i->seg = S_SS;
                }
            }
            if (mod == 1) {
                uint8_t d8;

                FETCH(d8);
                i->disp = (int8_t)d8;
            } else if (mod == 2) {
                uint64_t dd;

                if (addrsize == 2) {
                    FETCHN(dd, 2);
                    i->disp = (int16_t)dd;
                } else {
                    FETCHN(dd, 4);
                    i->disp = (int32_t)dd;
                }
            }
        }
    } else {
        i->rm = (b & 7) | ((rex & 1) << 3);
        i->seg = S_DS;
    }
    if (seg_ovr != EMU_NOREG)
        i->seg = seg_ovr;

    if (fl & D_BYTE)
        opsize = 1;
    else if (m64 && (rex & 8))
        opsize = 8;
    else if (m64 && (fl & D_F64))
        opsize = 8;
    else if (p66)
        opsize = mode == EMU_MODE_32 || m64 ? 2 : 4;
    else if (m64 && (fl & D_DEF64))
        opsize = 8;
    else
        opsize = mode == EMU_MODE_32 || m64 ? 4 : 2;
    i->opsize = opsize;
    i->addrsize = addrsize;

    if (fl & D_BYTE) {
        i->reg = dec_breg(i->reg, rex);
        if (!i->mem)
            i->rm = dec_breg(i->rm, rex);
    } else if (i->map == 1 && (b == 0xb6 || b == 0xbe) && !i->mem) {
        i->rm = dec_breg(i->rm, rex);
    }

    if (fl & D_IMM8) {
        uint8_t v;

        FETCH(v);
        i->imm = fl & D_ZIMM ? v : (uint64_t)(int64_t)(int8_t)v;
    } else if (fl & D_IMMZ) {
        uint64_t v;

        if (opsize == 2) {
            FETCHN(v, 2);
            i->imm = (uint64_t)(int64_t)(int16_t)v;
        } else {
            FETCHN(v, 4);
            i->imm = (uint64_t)(int64_t)(int32_t)v;
        }
    } else if (fl & D_IMMV) {
        FETCHN(i->imm, opsize);
    } else if (fl & D_IMM16) {
        FETCHN(i->imm, 2);
    } else if (fl & D_IMM8_16) {
        uint64_t v;

        FETCHN(i->imm, 2);
        FETCHN(v, 1);
        i->imm2 = (uint16_t)v;
    } else if (fl & D_MOFFS) {
        uint64_t v;

        FETCHN(v, addrsize);
        i->disp = (int64_t)v;
        i->mem = 1;
    } else if (fl & D_FARPTR) {
        uint64_t v;

        FETCHN(i->imm, opsize == 2 ? 2 : 4);
        FETCHN(v, 2);
        i->imm2 = (uint16_t)v;
    }

    i->len = n;
    if (i->lock && !dec_lockable(i)) {
        i->fn = emu_exec_ud;
        *st = DEC_INVALID;
        return n;
    }
    if (!d->fn) {
        i->fn = emu_exec_ud;
        *st = DEC_UNIMPL;
        return n;
    }
    i->fn = d->fn;
    *st = DEC_OK;
    return n;

invalid:
    i->len = n;
    i->fn = emu_exec_ud;
    *st = DEC_INVALID;
    return n;
too_long:
    i->len = 15;
    i->fn = emu_exec_gp_len;
    *st = DEC_TOOLONG;
    return 15;
more:
    *st = DEC_MORE;
    return 0;
#undef FETCH
#undef FETCHN
}

int emu_decode(struct emu_insn *i, const uint8_t *p, unsigned avail, enum emu_mode mode)
{
    enum dec_status st;

    return dec_core(i, p, avail, mode, &st);
}

int emu_insn_length_impl(const uint8_t *code, unsigned avail, enum emu_mode mode,
                         bool *implemented)
{
    struct emu_insn i;
    enum dec_status st;
    int n = dec_core(&i, code, avail, mode, &st);

    if (implemented)
        *implemented = st == DEC_OK;
    switch (st) {
    case DEC_OK:
    case DEC_UNIMPL:
        return n;
    case DEC_MORE:
        return -2;
    default:
        return -1;
    }
}

int emu_insn_length(const uint8_t *code, unsigned avail, enum emu_mode mode)
{
    return emu_insn_length_impl(code, avail, mode, NULL);
}
