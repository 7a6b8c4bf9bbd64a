/* Legacy (non-64-bit) instructions: PUSHA/POPA and the far-pointer loads
 * LES/LDS/LSS/LFS/LGS.  (C4/C5 are VEX in 64-bit mode and #UD there, as the
 * decoder's D_INV64 says; 0F B2/B4/B5 exist in every mode.) */
#include "emu/exec_ops.h"
#include "emu/seg.h"

/* 60: PUSHA/PUSHAD.  Registers change only after the last store, so a
 * fault part-way leaves ESP as it was (the bytes below it are free). */
EMU_HANDLER(exec_pusha)
{
    struct cpu_state *s = c->s;
    unsigned size = i->opsize, ssize = emu_stack_size(c);
    uint64_t m = emu_mask(ssize), sp = s->gpr[R_ESP];
    static const unsigned order[8] = { R_EAX, R_ECX, R_EDX, R_EBX, R_ESP, R_EBP, R_ESI, R_EDI };

    for (unsigned k = 0; k < 8; k++) {
        uint64_t v = s->gpr[order[k]];

        sp = (sp & ~m) | ((sp - size) & m);
        emu_write(c, S_SS, sp & m, size, v);
    }
    s->gpr[R_ESP] = ssize == 2 ? (s->gpr[R_ESP] & ~0xffffULL) | (sp & 0xffff) : (uint32_t)sp;
}

/* 61: POPA/POPAD: all loads first, then the registers (the stored ESP
 * image is skipped). */
EMU_HANDLER(exec_popa)
{
    struct cpu_state *s = c->s;
    unsigned size = i->opsize, ssize = emu_stack_size(c);
    uint64_t m = emu_mask(ssize), sp = s->gpr[R_ESP], v[8];
    static const unsigned order[8] = { R_EDI, R_ESI, R_EBP, R_ESP, R_EBX, R_EDX, R_ECX, R_EAX };

    for (unsigned k = 0; k < 8; k++) {
        v[k] = emu_read(c, S_SS, sp & m, size);
        sp = (sp & ~m) | ((sp + size) & m);
    }
    for (unsigned k = 0; k < 8; k++)
        if (order[k] != R_ESP)
            emu_set_reg(c, order[k], size, v[k]);
    s->gpr[R_ESP] = ssize == 2 ? (s->gpr[R_ESP] & ~0xffffULL) | (sp & 0xffff) : (uint32_t)sp;
}

/* C4 LES, C5 LDS, 0F B2 LSS, 0F B4 LFS, 0F B5 LGS: Gv <- offset, sreg <-
 * selector from m16:16/32/64.  The segment load may fault; the register
 * is written after it. */
EMU_HANDLER(exec_lxs)
{
    unsigned sr, size = i->opsize;
    uint64_t ea, off;
    uint16_t sel;

    if (!i->mem)
        emu_exec_ud(c, i);
    switch (i->op) {
    case 0xc4: sr = S_ES; break;
    case 0xc5: sr = S_DS; break;
    case 0xb2: sr = S_SS; break;
    case 0xb4: sr = S_FS; break;
    default: sr = S_GS; break;
    }
    ea = emu_ea(c, i);
    off = emu_read(c, i->seg, ea, size);
    sel = (uint16_t)emu_read(c, i->seg, (ea + size) & emu_mask(i->addrsize), 2);
    emu_load_seg(c, sr, sel);
    emu_set_reg(c, i->reg, size, off);
}
