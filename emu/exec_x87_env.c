/* x87 control instructions: FNINIT, FNCLEX, FLDCW/FNSTCW, FNSTSW,
 * FNSTENV/FLDENV and FNSAVE/FRSTOR in the four environment layouts
 * (16/32-bit operand size x real/protected mode, SDM vol. 1, 8.1.10).
 * None of them updates FIP/FDP/FOP; the FN* forms do not wait. */
#include "emu/x87.h"

#define ENV_MAX 28
#define REGS_SIZE 80

/* FLDCW keeps bits 0-5 and 8-12; bit 6 reads as 1 (checked on hardware). */
static uint16_t fcw_load(uint16_t v)
{
    return (uint16_t)((v & 0x1f3f) | 0x40);
}

static void put16(uint8_t *b, uint16_t v)
{
    memcpy(b, &v, 2);
}

static void put32(uint8_t *b, uint32_t v)
{
    memcpy(b, &v, 4);
}

static uint16_t get16(const uint8_t *b)
{
    uint16_t v;

    memcpy(&v, b, 2);
    return v;
}

static uint32_t get32(const uint8_t *b)
{
    uint32_t v;

    memcpy(&v, b, 4);
    return v;
}

/* FCS and FDS are not kept (see x87_record): stored as 0. */
static unsigned env_build(struct emu_cpu *c, const struct emu_insn *i, uint8_t *b)
{
    const struct x86_fxsave *f = &c->s->fpu;
    bool real = x87_real_format(c);
    uint16_t tw = x87_full_tags(f);
    uint32_t fop = f->fop & 0x7ff;
    uint32_t fip = (uint32_t)f->fip, fdp = (uint32_t)f->fdp;

    if (i->opsize == 2) {
        put16(b + 0, f->fcw);
        put16(b + 2, f->fsw);
        put16(b + 4, tw);
        put16(b + 6, (uint16_t)fip);
        put16(b + 8, (uint16_t)(real ? ((fip >> 16) & 0xf) << 12 | fop : 0));
        put16(b + 10, (uint16_t)fdp);
        put16(b + 12, (uint16_t)(real ? ((fdp >> 16) & 0xf) << 12 : 0));
        return 14;
    }
    put32(b + 0, 0xffff0000U | f->fcw);
    put32(b + 4, 0xffff0000U | f->fsw);
    put32(b + 8, 0xffff0000U | tw);
    if (real) {
        put32(b + 12, fip & 0xffff);
        put32(b + 16, (fip >> 16) << 12 | fop);
        put32(b + 20, fdp & 0xffff);
        put32(b + 24, (fdp >> 16) << 12);
    } else {
        put32(b + 12, fip);
        put32(b + 16, fop << 16);
        put32(b + 20, fdp);
        put32(b + 24, 0xffff0000U);
    }
    return 28;
}

static unsigned env_size(const struct emu_insn *i)
{
    return i->opsize == 2 ? 14 : 28;
}

static void env_load(struct emu_cpu *c, const struct emu_insn *i, const uint8_t *b)
{
    struct x86_fxsave *f = &c->s->fpu;
    bool real = x87_real_format(c);
    uint16_t fcw = fcw_load(get16(b));
    uint16_t fsw = get16(b + (i->opsize == 2 ? 2 : 4));
    uint16_t tw = get16(b + (i->opsize == 2 ? 4 : 8));

    if (i->opsize == 2) {
        uint16_t w8 = get16(b + 8);

        f->fip = get16(b + 6) | (real ? (uint64_t)(w8 >> 12) << 16 : 0);
        f->fop = real ? w8 & 0x7ff : 0;
        f->fdp = get16(b + 10) | (real ? (uint64_t)(get16(b + 12) >> 12) << 16 : 0);
    } else if (real) {
        uint32_t w16 = get32(b + 16);

        f->fip = (get32(b + 12) & 0xffff) | (uint64_t)((w16 >> 12) & 0xffff) << 16;
        f->fop = w16 & 0x7ff;
        f->fdp = (get32(b + 20) & 0xffff) | (uint64_t)((get32(b + 24) >> 12) & 0xffff) << 16;
    } else {
        f->fip = get32(b + 12);
        f->fop = (get32(b + 16) >> 16) & 0x7ff;
        f->fdp = get32(b + 20);
    }
    f->fcw = fcw;
    x87_set_fsw(f, x87_fsw_summary(fsw, fcw));
    f->ftw = x87_abridged_tags(tw);
}

static void fninit(struct x86_fxsave *f)
{
    f->fcw = X87_FCW_INIT;
    x87_set_fsw(f, 0);
    f->ftw = 0;
    f->fop = 0;
    f->fip = 0;
    f->fdp = 0;
}

static uint64_t mem_la(struct emu_cpu *c, const struct emu_insn *i, unsigned size,
                       enum emu_access acc)
{
    uint64_t la = emu_linear(c, i->seg, emu_ea(c, i), size, acc);

    if (acc == ACC_WRITE)
        emu_probe_write(c, la, size);
    return la;
}

static void copy_out(struct emu_cpu *c, uint64_t la, const uint8_t *b, unsigned n)
{
    for (unsigned k = 0; k < n; k += 2)
        emu_write_la(c, la + k, 2, get16(b + k));
}

static void copy_in(struct emu_cpu *c, uint64_t la, uint8_t *b, unsigned n)
{
    for (unsigned k = 0; k < n; k += 2)
        put16(b + k, (uint16_t)emu_read_la(c, la + k, 2));
}

/* FNSTENV / FNSAVE (save_regs): store, then FNSTENV masks all exceptions
 * and FNSAVE reinitialises. */
static void store_env(struct emu_cpu *c, const struct emu_insn *i, bool save_regs)
{
    struct x86_fxsave *f = &c->s->fpu;
    uint8_t b[ENV_MAX + REGS_SIZE];
    unsigned n = env_build(c, i, b);
    uint64_t la;

    if (save_regs) {
        for (unsigned k = 0; k < 8; k++)
            memcpy(b + n + 10 * k, f->st[k], 10);
        n += REGS_SIZE;
    }
    la = mem_la(c, i, n, ACC_WRITE);
    copy_out(c, la, b, n);
    if (save_regs)
        fninit(f);
    else
        f->fcw |= X87_FCW_MASKS;
}

static void load_env(struct emu_cpu *c, const struct emu_insn *i, bool load_regs)
{
    struct x86_fxsave *f = &c->s->fpu;
    uint8_t b[ENV_MAX + REGS_SIZE];
    unsigned n = env_size(i) + (load_regs ? REGS_SIZE : 0);

    x87_check_pending(c);
    copy_in(c, mem_la(c, i, n, ACC_READ), b, n);
    env_load(c, i, b);
    if (load_regs) {
        for (unsigned k = 0; k < 8; k++) {
            memcpy(f->st[k], b + env_size(i) + 10 * k, 10);
            memset(f->st[k] + 10, 0, 6);
        }
    }
}

bool x87_exec_control(struct emu_cpu *c, const struct emu_insn *i)
{
    struct x86_fxsave *f = &c->s->fpu;

    if (!i->mem) {
        switch (i->op << 8 | i->modrm) {
        case 0xdbe0: case 0xdbe1: case 0xdbe4:   /* FENI, FDISI, FSETPM: no-ops since the 387 */
            return true;
        case 0xdbe2:                             /* FNCLEX */
            f->fsw &= 0x7f00;
            return true;
        case 0xdbe3:
            fninit(f);
            return true;
        case 0xdfe0:                             /* FNSTSW AX */
            emu_set_reg(c, R_EAX, 2, f->fsw);
            return true;
        }
        return false;
    }
    switch (i->op << 8 | i->sub) {
    case 0xd904:
        load_env(c, i, false);
        return true;
    case 0xd905: {                               /* FLDCW */
        uint16_t v;

        x87_check_pending(c);
        v = (uint16_t)emu_read(c, i->seg, emu_ea(c, i), 2);
        f->fcw = fcw_load(v);
        f->fsw = x87_fsw_summary(f->fsw, f->fcw);
        return true;
    }
    case 0xd906:
        store_env(c, i, false);
        return true;
    case 0xd907:                                 /* FNSTCW */
        emu_write(c, i->seg, emu_ea(c, i), 2, f->fcw);
        return true;
    case 0xdd04:
        load_env(c, i, true);
        return true;
    case 0xdd06:
        store_env(c, i, true);
        return true;
    case 0xdd07:                                 /* FNSTSW m16 */
        emu_write(c, i->seg, emu_ea(c, i), 2, f->fsw);
        return true;
    }
    return false;
}
