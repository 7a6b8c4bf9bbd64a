/* D8-DF: the x87 instructions.  Control instructions are emulated in
 * exec_x87_env.c; everything that computes runs on the host's x87
 * (x87.c) after the decoding, validity, #NM/#MF and memory work here. */
#include "emu/x87.h"

enum mem_kind { M_BAD, M_LOAD, M_STORE, M_CTRL };

struct mem_form {
    uint8_t kind;
    uint8_t size;
};

#define L(n) { M_LOAD, n }
#define S(n) { M_STORE, n }
#define CTRL { M_CTRL, 0 }
#define BAD { M_BAD, 0 }

/* [opcode - D8][ModRM.reg] (Intel SDM vol. 2, table ...). */
static const struct mem_form mem_forms[8][8] = {
    { L(4), L(4), L(4), L(4), L(4), L(4), L(4), L(4) },     /* m32fp arithmetic */
    { L(4), BAD, S(4), S(4), CTRL, CTRL, CTRL, CTRL },      /* FLD FST FSTP m32, env, cw */
    { L(4), L(4), L(4), L(4), L(4), L(4), L(4), L(4) },     /* m32int arithmetic */
    { L(4), S(4), S(4), S(4), BAD, L(10), BAD, S(10) },     /* FILD FISTTP FIST FISTP, m80 */
    { L(8), L(8), L(8), L(8), L(8), L(8), L(8), L(8) },     /* m64fp arithmetic */
    { L(8), S(8), S(8), S(8), CTRL, BAD, CTRL, CTRL },      /* m64, FRSTOR FNSAVE FNSTSW */
    { L(2), L(2), L(2), L(2), L(2), L(2), L(2), L(2) },     /* m16int arithmetic */
    { L(2), S(2), S(2), S(2), L(10), L(8), S(10), S(8) },   /* m16int, FBLD FILD FBSTP FISTP */
};

/* Register forms the hardware executes, including the aliases Intel and
 * AMD parts share (FSTP1 D9 D8+i, FCOM2 DC D0+i, FCOMP3 DC D8+i, FXCH4
 * DD C8+i, FCOMP5 DE D0+i, FFREEP DF C0+i, FXCH7 DF C8+i, FSTP8/9 DF
 * D0+i/D8+i).  Control forms (DB E0-E4, DF E0) are not listed. */
static bool reg_form_valid(uint8_t op, uint8_t m)
{
    switch (op) {
    case 0xd8: case 0xdc:
        return true;
    case 0xd9:
        return !(m >= 0xd1 && m <= 0xd7) && m != 0xe2 && m != 0xe3 && m != 0xe6 && m != 0xe7 &&
               m != 0xef;
    case 0xda:
        return m < 0xe0 || m == 0xe9;
    case 0xdb:
        return m < 0xe0 || (m >= 0xe8 && m < 0xf8);
    case 0xdd:
        return m < 0xf0;
    case 0xde:
        return m < 0xd8 || m >= 0xe0 || m == 0xd9;
    case 0xdf:
        return m < 0xe0 || (m >= 0xe8 && m < 0xf8);
    }
    return false;
}

/* FCMOVcc reads and FCOMI/FUCOMI(P) write RFLAGS. */
static bool uses_rflags(uint8_t op, uint8_t m)
{
    if (op == 0xda || op == 0xdb)
        return m < 0xe0 || (op == 0xdb && m >= 0xe8 && m < 0xf8);
    return op == 0xdf && m >= 0xe8 && m < 0xf8;
}

static void mem_copy_in(struct emu_cpu *c, uint64_t la, uint8_t *buf, unsigned size)
{
    for (unsigned k = 0; k < size;) {
        unsigned n = size - k >= 8 ? 8 : size - k >= 4 ? 4 : 2;
        uint64_t v = emu_read_la(c, la + k, n);

        memcpy(buf + k, &v, n);
        k += n;
    }
}

static void mem_copy_out(struct emu_cpu *c, uint64_t la, const uint8_t *buf, unsigned size)
{
    for (unsigned k = 0; k < size;) {
        unsigned n = size - k >= 8 ? 8 : size - k >= 4 ? 4 : 2;
        uint64_t v = 0;

        memcpy(&v, buf + k, n);
        emu_write_la(c, la + k, n, v);
        k += n;
    }
}

static void exec_mem(struct emu_cpu *c, const struct emu_insn *i)
{
    const struct mem_form *mf = &mem_forms[i->op - 0xd8][i->sub];
    uint8_t buf[16], old[16];
    uint64_t la;

    if (mf->kind == M_BAD)
        emu_exec_ud(c, i);
    x87_check_pending(c);
    memset(buf, 0, sizeof(buf));
    if (mf->kind == M_LOAD) {
        la = emu_linear(c, i->seg, emu_ea(c, i), mf->size, ACC_READ);
        mem_copy_in(c, la, buf, mf->size);
    } else {
        /* Every fault is taken before anything changes; what the host
         * leaves in the buffer is written back only if it stored (an
         * unmasked exception can suppress the store). */
        la = emu_linear(c, i->seg, emu_ea(c, i), mf->size, ACC_WRITE);
        emu_probe_write(c, la, mf->size);
        mem_copy_in(c, la, buf, mf->size);
        memcpy(old, buf, sizeof(old));
    }
    x87_host_exec(c, i->op, (uint8_t)(i->sub << 3 | 7), buf, false);
    if (mf->kind == M_STORE && memcmp(buf, old, mf->size))
        mem_copy_out(c, la, buf, mf->size);
    x87_record(c, i);
}

EMU_HANDLER(exec_x87)
{
    x87_check_nm(c, false);
    if (x87_exec_control(c, i))
        return;
    if (i->mem) {
        exec_mem(c, i);
        return;
    }
    if (!reg_form_valid(i->op, i->modrm))
        emu_exec_ud(c, i);
    x87_check_pending(c);
    x87_host_exec(c, i->op, i->modrm, NULL, uses_rflags(i->op, i->modrm));
    x87_record(c, i);
}
