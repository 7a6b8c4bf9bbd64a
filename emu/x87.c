/* x87 core: #NM/#MF rules, tag words, FIP/FOP/FDP, and execution of an
 * x87 instruction on the host's own FPU.
 *
 * Every computing x87 instruction runs as itself on the host: the guest's
 * registers, FCW (precision, rounding and its real exception masks), TOP,
 * tags and condition codes are loaded with FRSTOR, the instruction runs
 * from a fixed stub, FNSAVE reads the outcome back.  x87 exceptions are
 * delivered at the next *waiting* instruction, and FNSAVE does not wait,
 * so an unmasked exception never traps on the host: it just leaves the
 * hardware's exact response (destination untouched for IE/DE/ZE, the
 * exponent-wrapped result for OE/UE) and its flags.  FNSAVE also
 * reinitialises the FPU; the host's FCW is restored after it.  The guest's
 * sticky flags are not loaded (they would make ES pending on the host);
 * they are ORed back afterwards. */
#include "emu/x87.h"

void x87_check_nm(struct emu_cpu *c, bool is_wait)
{
    uint64_t cr0 = c->s->cr0;

    if (is_wait) {
        if ((cr0 & X86_CR0_TS) && (cr0 & X86_CR0_MP))
            emu_fault(c, EXC_NM);
        return;
    }
    if (cr0 & (X86_CR0_EM | X86_CR0_TS))
        emu_fault(c, EXC_NM);
}

void x87_check_pending(struct emu_cpu *c)
{
    if ((c->s->fpu.fsw & X87_FSW_ES) && (c->s->cr0 & X86_CR0_NE))
        emu_fault(c, EXC_MF);
}

uint16_t x87_fsw_summary(uint16_t fsw, uint16_t fcw)
{
    fsw &= (uint16_t)~(X87_FSW_ES | X87_FSW_B);
    if (fsw & ~fcw & X87_FCW_MASKS)
        fsw |= X87_FSW_ES | X87_FSW_B;
    return fsw;
}

void x87_set_fsw(struct x86_fxsave *f, uint16_t fsw)
{
    unsigned old_top = (f->fsw >> 11) & 7, top = (fsw >> 11) & 7;

    if (top != old_top) {
        uint8_t st[8][16];

        /* ST(k) under the new TOP is physical (top + k) = old ST(top + k - old_top). */
        for (unsigned k = 0; k < 8; k++)
            memcpy(st[k], f->st[(top + k - old_top) & 7], 16);
        memcpy(f->st, st, sizeof(st));
    }
    f->fsw = fsw;
}

static unsigned reg_tag(const uint8_t *r)
{
    uint16_t se;
    uint64_t m;

    memcpy(&m, r, 8);
    memcpy(&se, r + 8, 2);
    if ((se & 0x7fff) == 0x7fff)
        return X87_TAG_SPECIAL;
    if ((se & 0x7fff) == 0)
        return m ? X87_TAG_SPECIAL : X87_TAG_ZERO;
    return (m >> 63) ? X87_TAG_VALID : X87_TAG_SPECIAL;   /* unnormal */
}

uint16_t x87_full_tags(const struct x86_fxsave *f)
{
    unsigned top = (f->fsw >> 11) & 7;
    uint16_t tw = 0;

    for (unsigned p = 0; p < 8; p++) {
        unsigned t = X87_TAG_EMPTY;

        if (f->ftw & (1u << p))
            t = reg_tag(f->st[(p - top) & 7]);
        tw |= (uint16_t)(t << (2 * p));
    }
    return tw;
}

uint8_t x87_abridged_tags(uint16_t full)
{
    uint8_t ftw = 0;

    for (unsigned p = 0; p < 8; p++)
        if (((full >> (2 * p)) & 3) != X87_TAG_EMPTY)
            ftw |= (uint8_t)(1u << p);
    return ftw;
}

bool x87_real_format(const struct emu_cpu *c)
{
    return c->mode == EMU_MODE_REAL || (c->s->rflags & X86_RFLAGS_VM);
}

/* FIP and FDP are offsets (real and vm86 mode: linear addresses, the
 * format the real-mode FNSTENV stores); FCS and FDS are not kept (stored
 * as 0). */
void x87_record(struct emu_cpu *c, const struct emu_insn *i)
{
    struct x86_fxsave *f = &c->s->fpu;
    bool real = x87_real_format(c);

    f->fip = c->insn_rip + (real ? c->s->seg[S_CS].base : 0);
    f->fop = (uint16_t)(((i->op & 7) << 8) | i->modrm);
    if (i->mem) {
        uint64_t ea = emu_ea(c, i);

        f->fdp = ea + (real ? c->s->seg[i->seg].base : 0);
    }
}

/* --- host execution ------------------------------------------------------ */

/* FNSAVE/FRSTOR image, 32-bit protected-mode format (SDM vol. 1, 8.1.10). */
struct x87_fsave {
    uint32_t fcw, fsw, ftw, fip, fop_fcs, fdp, fds;
    uint8_t st[8][10];
} __attribute__((packed));
_Static_assert(sizeof(struct x87_fsave) == 108, "FSAVE image is 108 bytes");

/* One 8-byte stub per D8-DF encoding: ENDBR64, the opcode, the ModRM,
 * RET.  Per opcode byte: 64 register forms (ModRM C0-FF), then the 8
 * memory forms as ModRM.reg with [rdi]. */
#define X87_STUB_SIZE 8
#define X87_STUBS_PER_OP 72
extern const uint8_t x87_host_stubs[] __attribute__((visibility("hidden")));
__asm__(".pushsection .text.x87_host_stubs,\"ax\",@progbits\n"
        ".balign 64\n"
        ".hidden x87_host_stubs\n"
        ".globl x87_host_stubs\n"
        "x87_host_stubs:\n"
        ".set x87_op, 0xd8\n"
        ".rept 8\n"
        "  .set x87_m, 0xc0\n"
        "  .rept 64\n"
        "    .byte 0xf3, 0x0f, 0x1e, 0xfa, x87_op, x87_m, 0xc3, 0xcc\n"
        "    .set x87_m, x87_m + 1\n"
        "  .endr\n"
        "  .set x87_m, 0x07\n"
        "  .rept 8\n"
        "    .byte 0xf3, 0x0f, 0x1e, 0xfa, x87_op, x87_m, 0xc3, 0xcc\n"
        "    .set x87_m, x87_m + 8\n"
        "  .endr\n"
        "  .set x87_op, x87_op + 1\n"
        ".endr\n"
        ".popsection\n");

#define RFLAGS_ARITH (X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF | \
                      X86_RFLAGS_SF | X86_RFLAGS_OF)

/* The red zone below RSP may hold the compiler's data: step over it
 * before CALL.  Memory operands are used only outside that window. */
static uint64_t host_run(const uint8_t *stub, struct x87_fsave *img, void *mem, uint64_t fl)
{
    uint16_t host_cw;

    __asm__ volatile("fnstcw %[hcw]\n\t"
                     "frstor %[img]\n\t"
                     "sub $128, %%rsp\n\t"
                     "pushfq\n\t"
                     "andq %[keep], (%%rsp)\n\t"
                     "orq %[fl], (%%rsp)\n\t"
                     "popfq\n\t"
                     "call *%[stub]\n\t"
                     "pushfq\n\t"
                     "popq %[fl]\n\t"
                     "add $128, %%rsp\n\t"
                     "fnsave %[img]\n\t"
                     "fldcw %[hcw]"
                     : [fl] "+r"(fl), [img] "+m"(*img), [hcw] "=m"(host_cw)
                     : [stub] "r"(stub), "D"(mem), [keep] "i"(~(int32_t)RFLAGS_ARITH)
                     : "memory", "cc");
    return fl;
}

void x87_host_exec(struct emu_cpu *c, uint8_t op, uint8_t modrm, void *mem, bool use_flags)
{
    struct x86_fxsave *f = &c->s->fpu;
    struct x87_fsave img;
    unsigned idx = mem ? 64u + ((modrm >> 3) & 7u) : (unsigned)modrm - 0xc0u;
    const uint8_t *stub = x87_host_stubs + ((op - 0xd8) * X87_STUBS_PER_OP + idx) * X87_STUB_SIZE;
    uint64_t fl = use_flags ? emu_cc_flags(c) & RFLAGS_ARITH : 0;
    uint16_t sw;

    memset(&img, 0, sizeof(img));
    img.fcw = f->fcw;
    img.fsw = f->fsw & (uint16_t)~(X87_FSW_FLAGS | X87_FSW_ES | X87_FSW_B);
    img.ftw = x87_full_tags(f);
    for (unsigned k = 0; k < 8; k++)
        memcpy(img.st[k], f->st[k], 10);

    fl = host_run(stub, &img, mem, fl);

    sw = (uint16_t)img.fsw | (f->fsw & X87_FSW_FLAGS);
    f->fsw = x87_fsw_summary(sw, f->fcw);
    f->ftw = x87_abridged_tags((uint16_t)img.ftw);
    for (unsigned k = 0; k < 8; k++) {
        memcpy(f->st[k], img.st[k], 10);
        memset(f->st[k] + 10, 0, 6);
    }
    if (use_flags)
        emu_cc_set_flags(c, (emu_cc_flags(c) & ~(uint64_t)RFLAGS_ARITH) | (fl & RFLAGS_ARITH));
}
