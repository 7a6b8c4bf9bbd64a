/* Differential test of the emulator's SSE/SSE2/SSE3 floating point against
 * the host CPU.
 *
 * Each case is one instruction (xmm0 = ModRM.reg, xmm1/rcx or [rsi] =
 * ModRM.rm, rax = integer destination) with random operands biased to the
 * special values (signed zeros, infinities, QNaN/SNaN, denormals, extremes)
 * and a random MXCSR (rounding mode, DAZ, FTZ, masks, sticky flags).  It
 * runs natively from a generated stub (an unmasked exception arrives as
 * SIGFPE; its MXCSR and XMM come from the signal context) and under emu in a
 * small long-mode guest.  XMM0/1, RAX, MXCSR, ZF/PF/CF (COMIS*) and the
 * exception (#XM) must agree.  EMU_DIFF_SEED replays a run; a failure prints
 * the instruction bytes and the inputs. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <cmocka.h>

#include "tests/emu/emu_test.h"

#define CODE_VA 0x20000000ULL
#define DATA_VA 0x10000000ULL
#define G_CODE_PA 0x200000ULL
#define G_DATA_PA 0x100000ULL
#define CASES_PER_FORM 160
#define MX_ZE_BIT 0x04
#define MX_PE_BIT 0x20

/* Native frame: offsets are disp8 in the stub. */
struct nat {
    uint8_t x0[16];     /* 0 */
    uint8_t x1[16];     /* 16 */
    uint64_t rax;       /* 32 */
    uint64_t rcx;       /* 40 */
    uint64_t rsi;       /* 48 */
    uint64_t rflags;    /* 56 */
    uint32_t mx_in;     /* 64 */
    uint32_t mx_out;    /* 68 */
    uint32_t mx_host;   /* 72 */
};

enum elem { E_F32, E_F64, E_I32 };
enum kind {
    K_XX,   /* xmm0 op= xmm1/m */
    K_XG,   /* xmm0 <- r/m32/64 integer (rcx) */
    K_GX,   /* rax <- xmm1/m */
    K_CMI,  /* flags <- xmm0 ? xmm1/m */
};

struct form {
    const char *name;
    uint8_t pfx;        /* 0, 0x66, 0xf2, 0xf3 */
    uint8_t op;
    uint8_t kind;
    uint8_t elem;       /* element type of the inputs */
    uint8_t msize;      /* memory operand size */
    uint8_t imm;        /* has an imm8 (CMPxx: predicate) */
    uint8_t w;          /* REX.W variant */
    uint8_t memonly;
};

#define XX(n, p, o, e, m) { n, p, o, K_XX, e, m, 0, 0, 0 }
static const struct form forms[] = {
    XX("sqrtps", 0, 0x51, E_F32, 16), XX("sqrtpd", 0x66, 0x51, E_F64, 16),
    XX("sqrtss", 0xf3, 0x51, E_F32, 4), XX("sqrtsd", 0xf2, 0x51, E_F64, 8),
    XX("rsqrtps", 0, 0x52, E_F32, 16), XX("rsqrtss", 0xf3, 0x52, E_F32, 4),
    XX("rcpps", 0, 0x53, E_F32, 16), XX("rcpss", 0xf3, 0x53, E_F32, 4),
    XX("andps", 0, 0x54, E_F32, 16), XX("andnpd", 0x66, 0x55, E_F64, 16),
    XX("orps", 0, 0x56, E_F32, 16), XX("xorpd", 0x66, 0x57, E_F64, 16),
    XX("addps", 0, 0x58, E_F32, 16), XX("addpd", 0x66, 0x58, E_F64, 16),
    XX("addss", 0xf3, 0x58, E_F32, 4), XX("addsd", 0xf2, 0x58, E_F64, 8),
    XX("mulps", 0, 0x59, E_F32, 16), XX("mulpd", 0x66, 0x59, E_F64, 16),
    XX("mulss", 0xf3, 0x59, E_F32, 4), XX("mulsd", 0xf2, 0x59, E_F64, 8),
    XX("cvtps2pd", 0, 0x5a, E_F32, 8), XX("cvtpd2ps", 0x66, 0x5a, E_F64, 16),
    XX("cvtss2sd", 0xf3, 0x5a, E_F32, 4), XX("cvtsd2ss", 0xf2, 0x5a, E_F64, 8),
    XX("cvtdq2ps", 0, 0x5b, E_I32, 16), XX("cvtps2dq", 0x66, 0x5b, E_F32, 16),
    XX("cvttps2dq", 0xf3, 0x5b, E_F32, 16),
    XX("subps", 0, 0x5c, E_F32, 16), XX("subpd", 0x66, 0x5c, E_F64, 16),
    XX("subss", 0xf3, 0x5c, E_F32, 4), XX("subsd", 0xf2, 0x5c, E_F64, 8),
    XX("minps", 0, 0x5d, E_F32, 16), XX("minpd", 0x66, 0x5d, E_F64, 16),
    XX("minss", 0xf3, 0x5d, E_F32, 4), XX("minsd", 0xf2, 0x5d, E_F64, 8),
    XX("divps", 0, 0x5e, E_F32, 16), XX("divpd", 0x66, 0x5e, E_F64, 16),
    XX("divss", 0xf3, 0x5e, E_F32, 4), XX("divsd", 0xf2, 0x5e, E_F64, 8),
    XX("maxps", 0, 0x5f, E_F32, 16), XX("maxpd", 0x66, 0x5f, E_F64, 16),
    XX("maxss", 0xf3, 0x5f, E_F32, 4), XX("maxsd", 0xf2, 0x5f, E_F64, 8),
    { "cmpps", 0, 0xc2, K_XX, E_F32, 16, 1, 0, 0 },
    { "cmppd", 0x66, 0xc2, K_XX, E_F64, 16, 1, 0, 0 },
    { "cmpss", 0xf3, 0xc2, K_XX, E_F32, 4, 1, 0, 0 },
    { "cmpsd", 0xf2, 0xc2, K_XX, E_F64, 8, 1, 0, 0 },
    XX("unpcklps", 0, 0x14, E_F32, 16), XX("unpckhps", 0, 0x15, E_F32, 16),
    XX("unpcklpd", 0x66, 0x14, E_F64, 16), XX("unpckhpd", 0x66, 0x15, E_F64, 16),
    { "shufps", 0, 0xc6, K_XX, E_F32, 16, 1, 0, 0 },
    { "shufpd", 0x66, 0xc6, K_XX, E_F64, 16, 1, 0, 0 },
    XX("addsubpd", 0x66, 0xd0, E_F64, 16), XX("addsubps", 0xf2, 0xd0, E_F32, 16),
    XX("haddpd", 0x66, 0x7c, E_F64, 16), XX("haddps", 0xf2, 0x7c, E_F32, 16),
    XX("hsubpd", 0x66, 0x7d, E_F64, 16), XX("hsubps", 0xf2, 0x7d, E_F32, 16),
    XX("cvttpd2dq", 0x66, 0xe6, E_F64, 16), XX("cvtpd2dq", 0xf2, 0xe6, E_F64, 16),
    XX("cvtdq2pd", 0xf3, 0xe6, E_I32, 8),
    XX("movsldup", 0xf3, 0x12, E_F32, 16), XX("movshdup", 0xf3, 0x16, E_F32, 16),
    XX("movddup", 0xf2, 0x12, E_F64, 8),
    { "lddqu", 0xf2, 0xf0, K_XX, E_F32, 16, 0, 0, 1 },
    { "comiss", 0, 0x2f, K_CMI, E_F32, 4, 0, 0, 0 },
    { "ucomiss", 0, 0x2e, K_CMI, E_F32, 4, 0, 0, 0 },
    { "comisd", 0x66, 0x2f, K_CMI, E_F64, 8, 0, 0, 0 },
    { "ucomisd", 0x66, 0x2e, K_CMI, E_F64, 8, 0, 0, 0 },
    { "cvtsi2ss r32", 0xf3, 0x2a, K_XG, E_I32, 4, 0, 0, 0 },
    { "cvtsi2ss r64", 0xf3, 0x2a, K_XG, E_I32, 8, 0, 1, 0 },
    { "cvtsi2sd r32", 0xf2, 0x2a, K_XG, E_I32, 4, 0, 0, 0 },
    { "cvtsi2sd r64", 0xf2, 0x2a, K_XG, E_I32, 8, 0, 1, 0 },
    { "cvttss2si r32", 0xf3, 0x2c, K_GX, E_F32, 4, 0, 0, 0 },
    { "cvttss2si r64", 0xf3, 0x2c, K_GX, E_F32, 4, 0, 1, 0 },
    { "cvtss2si r32", 0xf3, 0x2d, K_GX, E_F32, 4, 0, 0, 0 },
    { "cvtss2si r64", 0xf3, 0x2d, K_GX, E_F32, 4, 0, 1, 0 },
    { "cvttsd2si r32", 0xf2, 0x2c, K_GX, E_F64, 8, 0, 0, 0 },
    { "cvttsd2si r64", 0xf2, 0x2c, K_GX, E_F64, 8, 0, 1, 0 },
    { "cvtsd2si r32", 0xf2, 0x2d, K_GX, E_F64, 8, 0, 0, 0 },
    { "cvtsd2si r64", 0xf2, 0x2d, K_GX, E_F64, 8, 0, 1, 0 },
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint32_t rnd_f32(void)
{
    static const uint32_t special[] = {
        0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000,
        0x7fa00001, 0xff800123, 0x00000001, 0x807fffff, 0x00400000, 0x00800000,
        0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf800000, 0x4f000000, 0xcf000000,
        0x5f000000, 0xdf000000, 0x3f000000, 0x00800001,
    };
    uint64_t r = rnd();

    switch (r % 6) {
    case 0: case 1:
        return special[(r >> 8) % (sizeof(special) / sizeof(special[0]))];
    case 2: {   /* small exponent range: sums and products stay interesting */
        uint32_t v = (uint32_t)(r >> 16);

        return (v & 0x807fffff) | (uint32_t)(120 + (r >> 8) % 16) << 23;
    }
    case 3: {   /* near the denormal boundary */
        uint32_t v = (uint32_t)(r >> 16);

        return (v & 0x807fffff) | (uint32_t)((r >> 8) % 4) << 23;
    }
    default:
        return (uint32_t)(r >> 20);
    }
}

static uint64_t rnd_f64(void)
{
    static const uint64_t special[] = {
        0, 0x8000000000000000ULL, 0x7ff0000000000000ULL, 0xfff0000000000000ULL,
        0x7ff8000000000000ULL, 0xfff8000000000000ULL, 0x7ff4000000000001ULL,
        0x0000000000000001ULL, 0x800fffffffffffffULL, 0x0010000000000000ULL,
        0x7fefffffffffffffULL, 0x3ff0000000000000ULL, 0xbff0000000000000ULL,
        0x41e0000000000000ULL, 0xc1e0000000000000ULL, 0x43e0000000000000ULL,
        0x47efffffe0000000ULL, 0x3810000000000000ULL, 0x36a0000000000000ULL,
        0x41dfffffffc00000ULL, 0x3fe0000000000000ULL,
    };
    uint64_t r = rnd();

    switch (r % 6) {
    case 0: case 1:
        return special[(r >> 8) % (sizeof(special) / sizeof(special[0]))];
    case 2:
        return (rnd() & 0x800fffffffffffffULL) | (uint64_t)(1016 + (r >> 8) % 16) << 52;
    case 3:   /* float range edges: conversions to single over/underflow */
        return (rnd() & 0x800fffffffffffffULL) | (uint64_t)(1023 - 150 + (r >> 8) % 30) << 52;
    case 4:
        return (rnd() & 0x800fffffffffffffULL) | (uint64_t)(1023 + 100 + (r >> 8) % 40) << 52;
    default:
        return rnd();
    }
}

static uint64_t rnd_int(void)
{
    static const uint64_t special[] = {
        0, 1, 0xffffffff, 0x80000000, 0x7fffffff, 0x8000000000000000ULL,
        0x7fffffffffffffffULL, 0xffffffffffffffffULL, 16777217, 0x20000000000001ULL,
    };
    uint64_t r = rnd();

    if (r % 3 == 0)
        return special[(r >> 8) % (sizeof(special) / sizeof(special[0]))];
    if (r % 3 == 1)
        return (uint64_t)(int64_t)(int32_t)(rnd() >> (rnd() % 32));
    return rnd() >> (r >> 8) % 64;
}

static void rnd_vec(uint8_t *p, unsigned elem)
{
    for (unsigned k = 0; k < 16; k += (elem == E_F64 ? 8 : 4)) {
        if (elem == E_F64) {
            uint64_t v = rnd_f64();

            memcpy(p + k, &v, 8);
        } else {
            uint32_t v = elem == E_F32 ? rnd_f32() : (uint32_t)rnd_int();

            memcpy(p + k, &v, 4);
        }
    }
}

/* Random MXCSR: any rounding mode, DAZ, FTZ; all exceptions masked most of
 * the time, otherwise random masks; random sticky flags. */
static uint32_t rnd_mxcsr(void)
{
    uint64_t r = rnd();
    uint32_t mx = (uint32_t)(r & 0x3f) & (uint32_t)-(r >> 6 & 1);

    mx |= (uint32_t)(r >> 8 & 3) << 13;
    mx |= (uint32_t)(r >> 10 & 1) << 6;
    mx |= (uint32_t)(r >> 11 & 1) << 15;
    mx |= (r >> 12) % 4 ? 0x1f80 : (uint32_t)(r >> 16 & 0x3f) << 7;
    return mx;
}

/* --- native ------------------------------------------------------------ */

static uint8_t *ncode;
static sigjmp_buf n_jb;
static struct nat n_sig;   /* state at SIGFPE */

static void on_fpe(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;

    n_sig.mx_out = uc->uc_mcontext.fpregs->mxcsr;
    memcpy(n_sig.x0, &uc->uc_mcontext.fpregs->_xmm[0], 16);
    memcpy(n_sig.x1, &uc->uc_mcontext.fpregs->_xmm[1], 16);
    siglongjmp(n_jb, sig);
}

static unsigned put(uint8_t *p, unsigned n, const char *bytes, unsigned len)
{
    memcpy(p + n, bytes, len);
    return n + len;
}

static unsigned put_d8(uint8_t *p, unsigned n, const char *bytes, unsigned len, uint8_t d)
{
    n = put(p, n, bytes, len);
    p[n] = d;
    return n + 1;
}

/* Stub: rdi = struct nat *.  Loads, runs the instruction, stores. */
static void native_build(const uint8_t *insn, unsigned len)
{
    unsigned n = 0;

    n = put_d8(ncode, n, "\x0f\xae\x57", 3, offsetof(struct nat, mx_in));
    n = put_d8(ncode, n, "\xf3\x0f\x6f\x47", 4, offsetof(struct nat, x0));
    n = put_d8(ncode, n, "\xf3\x0f\x6f\x4f", 4, offsetof(struct nat, x1));
    n = put_d8(ncode, n, "\x48\x8b\x47", 3, offsetof(struct nat, rax));
    n = put_d8(ncode, n, "\x48\x8b\x4f", 3, offsetof(struct nat, rcx));
    n = put_d8(ncode, n, "\x48\x8b\x77", 3, offsetof(struct nat, rsi));
    n = put(ncode, n, "\x57", 1);
    n = put(ncode, n, (const char *)insn, len);
    n = put(ncode, n, "\x5f\x9c\x5a", 3);
    n = put_d8(ncode, n, "\x48\x89\x57", 3, offsetof(struct nat, rflags));
    n = put_d8(ncode, n, "\x0f\xae\x5f", 3, offsetof(struct nat, mx_out));
    n = put_d8(ncode, n, "\xf3\x0f\x7f\x47", 4, offsetof(struct nat, x0));
    n = put_d8(ncode, n, "\xf3\x0f\x7f\x4f", 4, offsetof(struct nat, x1));
    n = put_d8(ncode, n, "\x48\x89\x47", 3, offsetof(struct nat, rax));
    n = put_d8(ncode, n, "\x48\x89\x4f", 3, offsetof(struct nat, rcx));
    n = put_d8(ncode, n, "\x0f\xae\x57", 3, offsetof(struct nat, mx_host));
    put(ncode, n, "\xc3", 1);
    __builtin___clear_cache((char *)ncode, (char *)ncode + 256);
}

/* Returns 0, or 19 (#XM) when the host raised SIGFPE. */
static int native_run(struct nat *io)
{
    void (*fn)(struct nat *) = (void (*)(struct nat *))(void *)ncode;

    if (sigsetjmp(n_jb, 1)) {
        uint32_t def = 0x1f80;

        __asm__ volatile("ldmxcsr %0" : : "m"(def));
        io->mx_out = n_sig.mx_out;
        memcpy(io->x0, n_sig.x0, 16);
        memcpy(io->x1, n_sig.x1, 16);
        return EXC_XM;
    }
    fn(io);
    return 0;
}

/* --- emu --------------------------------------------------------------- */

static struct emu_tm tm;
static uint8_t *hostmem;

static int setup(void **state)
{
    const char *env = getenv("EMU_DIFF_SEED");

    ncode = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE | PROT_EXEC,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    hostmem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ncode == MAP_FAILED || hostmem == MAP_FAILED)
        return -1;
    if (emu_tm_init(&tm, 4 * MiB, 3) < 0)
        return -1;
    tm.s.cr4 |= X86_CR4_OSXMMEXCPT;
    emu_tm_map(&tm, CODE_VA, G_CODE_PA, 0x1000, EMU_TM_U);
    emu_tm_map(&tm, DATA_VA, G_DATA_PA, 0x1000, EMU_TM_U | EMU_TM_W | EMU_TM_NX);
    rng_state = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761ULL;
    if (!rng_state)
        rng_state = 1;
    printf("emu fp diff: seed %#llx (EMU_DIFF_SEED to replay)\n", (unsigned long long)rng_state);
    *state = NULL;
    return 0;
}

static int teardown(void **state)
{
    emu_tm_destroy(&tm);
    munmap(ncode, 0x1000);
    munmap(hostmem, 0x1000);
    return 0;
}

static int emu_case(const uint8_t *insn, unsigned len, const struct nat *in, struct nat *out)
{
    struct cpu_state *s = &tm.s;
    enum emu_stop st;

    memcpy(tm.m.ram + G_CODE_PA, insn, len);
    emu_cache_invalidate_range(tm.cache, G_CODE_PA, len);
    memcpy(tm.m.ram + G_DATA_PA, hostmem, 64);
    memset(s->gpr, 0, sizeof(s->gpr));
    s->gpr[R_EAX] = in->rax;
    s->gpr[R_ECX] = in->rcx;
    s->gpr[R_ESI] = DATA_VA;
    memcpy(s->fpu.xmm[0], in->x0, 16);
    memcpy(s->fpu.xmm[1], in->x1, 16);
    s->fpu.mxcsr = in->mx_in;
    s->rip = CODE_VA;
    s->rflags = X86_RFLAGS_FIXED | X86_RFLAGS_IF;
    emu_invalidate(&tm.c);
    st = emu_step(&tm.c);
    emu_sync_state(&tm.c);
    *out = *in;
    out->rax = s->gpr[R_EAX];
    out->rcx = s->gpr[R_ECX];
    out->rflags = s->rflags;
    out->mx_out = s->fpu.mxcsr;
    memcpy(out->x0, s->fpu.xmm[0], 16);
    memcpy(out->x1, s->fpu.xmm[1], 16);
    return st == EMU_STOP_EXCEPTION ? (int)tm.c.exc_vector : 0;
}

/* --- cases ------------------------------------------------------------- */

static unsigned encode(const struct form *f, bool mem, uint8_t imm, uint8_t *b)
{
    unsigned n = 0;

    if (f->pfx)
        b[n++] = f->pfx;
    if (f->w)
        b[n++] = 0x48;
    b[n++] = 0x0f;
    b[n++] = f->op;
    b[n++] = mem ? 0x06 : 0xc1;   /* reg 0; rm [rsi] or register 1 */
    if (f->imm)
        b[n++] = imm;
    return n;
}

static void hex(const char *what, const uint8_t *p, unsigned n)
{
    fprintf(stderr, "  %s:", what);
    for (unsigned k = 0; k < n; k++)
        fprintf(stderr, "%s%02x", k && !(k % 4) ? " " : "", p[n - 1 - k]);
    fprintf(stderr, "\n");
}

static void dump(const char *side, const struct nat *s, int exc)
{
    fprintf(stderr, " %s: exc %d mxcsr %#x rax %#llx flags %#llx\n", side, exc, s->mx_out,
            (unsigned long long)s->rax, (unsigned long long)s->rflags);
    hex("xmm0", s->x0, 16);
    hex("xmm1", s->x1, 16);
}

static int failures;

static bool run_one(const struct form *f)
{
    uint8_t insn[16];
    bool mem = f->memonly || (rnd() & 1);
    unsigned len = encode(f, mem, (uint8_t)rnd(), insn);
    struct nat in, nat, emu;
    int ne, ee;
    bool ok;

    memset(&in, 0, sizeof(in));
    rnd_vec(in.x0, f->elem == E_I32 && f->kind == K_XG ? E_F32 : f->elem);
    rnd_vec(in.x1, f->elem);
    rnd_vec(hostmem, f->elem);
    in.rax = rnd();
    in.rcx = f->kind == K_XG ? rnd_int() : rnd();
    in.rsi = (uint64_t)(uintptr_t)hostmem;
    in.mx_in = rnd_mxcsr();
    __asm__ volatile("stmxcsr %0" : "=m"(in.mx_host));
    nat = in;
    native_build(insn, len);
    ne = native_run(&nat);
    ee = emu_case(insn, len, &in, &emu);

    ok = ne == ee && nat.mx_out == emu.mx_out && !memcmp(nat.x0, emu.x0, 16) &&
         !memcmp(nat.x1, emu.x1, 16);
    if (f->kind == K_GX && !ne)
        ok = ok && nat.rax == emu.rax;
    if (f->kind == K_CMI && !ne) {
        uint64_t m = X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF |
                     X86_RFLAGS_SF | X86_RFLAGS_OF;

        ok = ok && (nat.rflags & m) == (emu.rflags & m);
    }
    if (ok)
        return true;
    fprintf(stderr, "MISMATCH %s (%s form)\n  bytes:", f->name, mem ? "memory" : "register");
    for (unsigned k = 0; k < len; k++)
        fprintf(stderr, " %02x", insn[k]);
    fprintf(stderr, "\n  in: mxcsr %#x rcx %#llx\n", in.mx_in, (unsigned long long)in.rcx);
    hex("xmm0", in.x0, 16);
    hex("xmm1", in.x1, 16);
    hex("mem ", hostmem, 16);
    dump("native", &nat, ne);
    dump("emu   ", &emu, ee);
    failures++;
    return false;
}

static void test_diff_sse_fp(void **state)
{
    struct sigaction sa, old;
    unsigned n = 0;

    /* cmocka has its own SIGFPE handler while a test runs: ours goes on top. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fpe;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGFPE, &sa, &old);

    for (unsigned k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
        unsigned bad = 0;

        for (unsigned j = 0; j < CASES_PER_FORM && bad < 3; j++, n++)
            bad += !run_one(&forms[k]);
    }
    sigaction(SIGFPE, &old, NULL);
    printf("emu fp diff: %u cases, %d mismatches\n", n, failures);
    assert_int_equal(failures, 0);
}

/* Without CR4.OSXMMEXCPT an unmasked SIMD exception is #UD, and the
 * destination stays as it was. */
static void test_xm_without_osxmmexcpt(void **state)
{
    static const uint8_t divps[] = { 0xf3, 0x0f, 0x5e, 0xc1 };   /* divss xmm0, xmm1 */
    struct nat in, out;
    float one = 1.0f;
    int e;

    memset(&in, 0, sizeof(in));
    memcpy(in.x0, &one, 4);
    in.mx_in = 0x1f80 & ~(MX_ZE_BIT << 7);
    tm.s.cr4 &= ~X86_CR4_OSXMMEXCPT;
    e = emu_case(divps, sizeof(divps), &in, &out);
    tm.s.cr4 |= X86_CR4_OSXMMEXCPT;
    assert_int_equal(e, EXC_UD);
    assert_int_equal(out.mx_out, in.mx_in | MX_ZE_BIT);
    assert_memory_equal(out.x0, in.x0, 16);
    e = emu_case(divps, sizeof(divps), &in, &out);
    assert_int_equal(e, EXC_XM);
}

/* FXSAVE/FXRSTOR carry MXCSR and the XMM registers the FP ops produce. */
static void test_fxsave_roundtrip(void **state)
{
    /* fxsave [rsi]; addps xmm0, xmm1; fxrstor [rsi] */
    static const uint8_t prog[] = { 0x0f, 0xae, 0x06, 0x0f, 0x58, 0xc1, 0x0f, 0xae, 0x0e };
    struct cpu_state *s = &tm.s;
    float a = 1.5f, b = 2.25f;
    uint8_t x0[16];

    memcpy(tm.m.ram + G_CODE_PA, prog, sizeof(prog));
    emu_cache_invalidate_range(tm.cache, G_CODE_PA, sizeof(prog));
    memset(s->fpu.xmm, 0, sizeof(s->fpu.xmm));
    memcpy(s->fpu.xmm[0], &a, 4);
    memcpy(s->fpu.xmm[1], &b, 4);
    memcpy(x0, s->fpu.xmm[0], 16);
    s->fpu.mxcsr = 0x3f80 | MX_PE_BIT;
    s->gpr[R_ESI] = DATA_VA;
    s->rip = CODE_VA;
    emu_invalidate(&tm.c);
    assert_int_equal(emu_run(&tm.c, 2), EMU_STOP_BUDGET);
    memcpy(&a, s->fpu.xmm[0], 4);
    assert_true(a == 3.75f);
    assert_int_equal(emu_run(&tm.c, 1), EMU_STOP_BUDGET);
    assert_memory_equal(s->fpu.xmm[0], x0, 16);
    assert_int_equal(s->fpu.mxcsr, 0x3f80 | MX_PE_BIT);
}

/* --- MMX: integer ops on mm0 (reg) and mm1 / [rsi] (rm) ------------------- */

static void native_build_mmx(const uint8_t *insn, unsigned len)
{
    unsigned n = 0;

    n = put_d8(ncode, n, "\x0f\x6f\x47", 3, offsetof(struct nat, x0));
    n = put_d8(ncode, n, "\x0f\x6f\x4f", 3, offsetof(struct nat, x1));
    n = put_d8(ncode, n, "\x48\x8b\x77", 3, offsetof(struct nat, rsi));
    n = put(ncode, n, (const char *)insn, len);
    n = put_d8(ncode, n, "\x0f\x7f\x47", 3, offsetof(struct nat, x0));
    n = put_d8(ncode, n, "\x0f\x7f\x4f", 3, offsetof(struct nat, x1));
    n = put(ncode, n, "\x0f\x77\xc3", 3);
    __builtin___clear_cache((char *)ncode, (char *)ncode + 256);
}

static const uint8_t mmx_ops[] = {
    0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6f, 0x70,
    0x74, 0x75, 0x76, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd,
    0xde, 0xdf, 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed,
    0xee, 0xef, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
    0xfe,
};

static void test_diff_mmx(void **state)
{
    struct cpu_state *s = &tm.s;
    unsigned n = 0;

    for (unsigned k = 0; k < sizeof(mmx_ops); k++) {
        for (unsigned j = 0; j < 64; j++, n++) {
            uint8_t insn[8] = { 0x0f, mmx_ops[k], (rnd() & 1) ? 0x06 : 0xc1, (uint8_t)rnd() };
            unsigned len = mmx_ops[k] == 0x70 ? 4 : 3;
            bool shift = (mmx_ops[k] & 0x0f) >= 1 && (mmx_ops[k] & 0x0f) <= 3 && mmx_ops[k] >= 0xd1;
            unsigned top = (unsigned)rnd() & 7;
            struct nat in, nat;
            uint64_t m0, m1;

            memset(&in, 0, sizeof(in));
            for (unsigned b = 0; b < 8; b++) {
                in.x0[b] = (uint8_t)rnd();
                in.x1[b] = (uint8_t)rnd();
                hostmem[b] = (uint8_t)rnd();
            }
            if (shift && (rnd() & 1)) {   /* small counts too */
                in.x1[0] = (uint8_t)(rnd() % 70);
                memset(in.x1 + 1, 0, 7);
                hostmem[0] = in.x1[0];
                memset(hostmem + 1, 0, 7);
            }
            in.rsi = (uint64_t)(uintptr_t)hostmem;
            nat = in;
            native_build_mmx(insn, len);
            ((void (*)(struct nat *))(void *)ncode)(&nat);

            memcpy(tm.m.ram + G_CODE_PA, insn, len);
            emu_cache_invalidate_range(tm.cache, G_CODE_PA, len);
            memcpy(tm.m.ram + G_DATA_PA, hostmem, 64);
            memset(s->fpu.st, 0, sizeof(s->fpu.st));
            memcpy(s->fpu.st[(0 - top) & 7], in.x0, 8);
            memcpy(s->fpu.st[(1 - top) & 7], in.x1, 8);
            s->fpu.fsw = (uint16_t)(top << 11);
            s->fpu.ftw = 0;
            s->gpr[R_ESI] = DATA_VA;
            s->rip = CODE_VA;
            emu_invalidate(&tm.c);
            assert_int_equal(emu_step(&tm.c), EMU_STOP_BUDGET);
            memcpy(&m0, s->fpu.st[0], 8);
            memcpy(&m1, s->fpu.st[1], 8);
            if (memcmp(&m0, nat.x0, 8) || memcmp(&m1, nat.x1, 8) || s->fpu.ftw != 0xff ||
                (s->fpu.fsw & 0x3800) || s->fpu.st[0][8] != 0xff || s->fpu.st[0][9] != 0xff) {
                fprintf(stderr, "MMX MISMATCH bytes %02x %02x %02x %02x top %u\n", insn[0],
                        insn[1], insn[2], insn[3], top);
                hex("mm0 in ", in.x0, 8);
                hex("mm1 in ", in.x1, 8);
                hex("mem    ", hostmem, 8);
                hex("native0", nat.x0, 8);
                hex("emu0   ", (uint8_t *)&m0, 8);
                fprintf(stderr, "  ftw %#x fsw %#x\n", s->fpu.ftw, s->fpu.fsw);
                failures++;
            }
        }
    }
    printf("emu mmx diff: %u cases, %d mismatches\n", n, failures);
    assert_int_equal(failures, 0);
}

/* --- MMX <-> SSE conversions and the masked stores ------------------------
 * mm0 (reg of the MMX-destination forms) and mm1 (rm) travel in nat.rax
 * and nat.rcx; xmm0/xmm1 as above; [rsi] is the memory operand and rdi
 * points at the data page for MASKMOVQ/MASKMOVDQU. */

struct mmx_form {
    const char *name;
    uint8_t pfx, op;
    uint8_t elem;       /* what the source holds */
    bool mem_ok;        /* has a memory form */
    bool cvt_xmm_dst;   /* destination is xmm0 (CVTPI2Px), else mm0 or memory */
};

static const struct mmx_form mmx_cvt_forms[] = {
    { "cvtpi2ps", 0, 0x2a, E_I32, true, true },
    { "cvtpi2pd", 0x66, 0x2a, E_I32, true, true },
    { "cvtps2pi", 0, 0x2d, E_F32, true, false },
    { "cvttps2pi", 0, 0x2c, E_F32, true, false },
    { "cvtpd2pi", 0x66, 0x2d, E_F64, true, false },
    { "cvttpd2pi", 0x66, 0x2c, E_F64, true, false },
    { "maskmovq", 0, 0xf7, E_I32, false, false },
    { "maskmovdqu", 0x66, 0xf7, E_I32, false, false },
};

static void native_build_mmx_cvt(const uint8_t *insn, unsigned len)
{
    unsigned n = 0;

    n = put_d8(ncode, n, "\x0f\xae\x57", 3, offsetof(struct nat, mx_in));
    n = put_d8(ncode, n, "\xf3\x0f\x6f\x47", 4, offsetof(struct nat, x0));
    n = put_d8(ncode, n, "\xf3\x0f\x6f\x4f", 4, offsetof(struct nat, x1));
    n = put_d8(ncode, n, "\x0f\x6f\x47", 3, offsetof(struct nat, rax));   /* movq mm0 */
    n = put_d8(ncode, n, "\x0f\x6f\x4f", 3, offsetof(struct nat, rcx));   /* movq mm1 */
    n = put_d8(ncode, n, "\x48\x8b\x77", 3, offsetof(struct nat, rsi));
    n = put(ncode, n, "\x57\x48\x89\xf7", 4);                          /* push rdi; mov rdi, rsi */
    n = put(ncode, n, (const char *)insn, len);
    n = put(ncode, n, "\x5f", 1);
    n = put_d8(ncode, n, "\x0f\xae\x5f", 3, offsetof(struct nat, mx_out));
    n = put_d8(ncode, n, "\xf3\x0f\x7f\x47", 4, offsetof(struct nat, x0));
    n = put_d8(ncode, n, "\xf3\x0f\x7f\x4f", 4, offsetof(struct nat, x1));
    n = put_d8(ncode, n, "\x0f\x7f\x47", 3, offsetof(struct nat, rax));
    n = put_d8(ncode, n, "\x0f\x7f\x4f", 3, offsetof(struct nat, rcx));
    n = put_d8(ncode, n, "\x0f\xae\x57", 3, offsetof(struct nat, mx_host));
    put(ncode, n, "\x0f\x77\xc3", 3);                                   /* emms; ret */
    __builtin___clear_cache((char *)ncode, (char *)ncode + 256);
}

static bool run_one_mmx_cvt(const struct mmx_form *f)
{
    struct cpu_state *s = &tm.s;
    uint8_t insn[8], nat_mem[32];
    bool mem = f->mem_ok && (rnd() & 1);
    unsigned len = 0, top = (unsigned)rnd() & 7;
    struct nat in, nat;
    uint64_t m0, m1;
    int ne, ee;
    enum emu_stop st;
    bool ok, transition;

    if (f->pfx)
        insn[len++] = f->pfx;
    insn[len++] = 0x0f;
    insn[len++] = f->op;
    insn[len++] = mem ? 0x06 : 0xc1;
    memset(&in, 0, sizeof(in));
    rnd_vec(in.x0, E_F32);
    rnd_vec(in.x1, f->elem);
    rnd_vec(hostmem, f->elem);
    rnd_vec(hostmem + 16, E_I32);
    in.rax = rnd();
    in.rcx = (uint64_t)rnd_int() << 32 | (uint32_t)rnd_int();
    if (f->op == 0xf7 && (rnd() & 1)) {   /* sparse masks, sometimes none */
        in.rcx &= rnd() & rnd();
        memcpy(in.x1, &in.rcx, 8);
    }
    in.rsi = (uint64_t)(uintptr_t)hostmem;
    in.mx_in = rnd_mxcsr();
    __asm__ volatile("stmxcsr %0" : "=m"(in.mx_host));
    memcpy(tm.m.ram + G_DATA_PA, hostmem, 64);
    nat = in;
    native_build_mmx_cvt(insn, len);
    ne = native_run(&nat);
    if (ne)
        __asm__ volatile("emms");
    memcpy(nat_mem, hostmem, sizeof(nat_mem));

    memcpy(tm.m.ram + G_CODE_PA, insn, len);
    emu_cache_invalidate_range(tm.cache, G_CODE_PA, len);
    memset(s->fpu.st, 0, sizeof(s->fpu.st));
    memcpy(s->fpu.st[(0 - top) & 7], &in.rax, 8);
    memcpy(s->fpu.st[(1 - top) & 7], &in.rcx, 8);
    s->fpu.fsw = (uint16_t)(top << 11);
    s->fpu.ftw = 0;
    memcpy(s->fpu.xmm[0], in.x0, 16);
    memcpy(s->fpu.xmm[1], in.x1, 16);
    s->fpu.mxcsr = in.mx_in;
    s->gpr[R_ESI] = DATA_VA;
    s->gpr[R_EDI] = DATA_VA;
    s->rip = CODE_VA;
    emu_invalidate(&tm.c);
    st = emu_step(&tm.c);
    ee = st == EMU_STOP_EXCEPTION ? (int)tm.c.exc_vector : 0;
    transition = !(f->op == 0x2a && f->pfx && mem) && !(f->op == 0xf7 && f->pfx);
    memcpy(&m0, s->fpu.st[transition ? 0 : (0 - top) & 7], 8);
    memcpy(&m1, s->fpu.st[transition ? 1 : (1 - top) & 7], 8);

    ok = ne == ee && nat.mx_out == s->fpu.mxcsr && !memcmp(nat.x0, s->fpu.xmm[0], 16) &&
         !memcmp(nat.x1, s->fpu.xmm[1], 16) &&
         !memcmp(nat_mem, tm.m.ram + G_DATA_PA, sizeof(nat_mem));
    if (!ne)
        ok = ok && m0 == nat.rax && m1 == nat.rcx;
    /* The x87 -> MMX transition: TOP = 0, all tags valid; CVTPI2PD from
     * memory and MASKMOVDQU leave the x87 state alone. */
    if (transition)
        ok = ok && s->fpu.ftw == 0xff && !(s->fpu.fsw & 0x3800);
    else
        ok = ok && s->fpu.ftw == 0 && (s->fpu.fsw >> 11 & 7) == top;
    if (ok)
        return true;
    fprintf(stderr, "MISMATCH %s (%s form) top %u\n", f->name, mem ? "memory" : "register",
            top);
    fprintf(stderr, "  in: mxcsr %#x mm0 %#llx mm1 %#llx\n", in.mx_in,
            (unsigned long long)in.rax, (unsigned long long)in.rcx);
    hex("xmm0", in.x0, 16);
    hex("xmm1", in.x1, 16);
    hex("mem ", hostmem, 16);
    fprintf(stderr, " native: exc %d mxcsr %#x mm0 %#llx mm1 %#llx\n", ne, nat.mx_out,
            (unsigned long long)nat.rax, (unsigned long long)nat.rcx);
    hex("xmm0", nat.x0, 16);
    hex("mem ", nat_mem, 32);
    fprintf(stderr, " emu:    exc %d mxcsr %#x mm0 %#llx mm1 %#llx ftw %#x fsw %#x\n", ee,
            s->fpu.mxcsr, (unsigned long long)m0, (unsigned long long)m1, s->fpu.ftw,
            s->fpu.fsw);
    hex("xmm0", s->fpu.xmm[0], 16);
    hex("mem ", tm.m.ram + G_DATA_PA, 32);
    failures++;
    return false;
}

static void test_diff_mmx_sse_cvt(void **state)
{
    struct sigaction sa, old;
    unsigned n = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fpe;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGFPE, &sa, &old);
    for (unsigned k = 0; k < sizeof(mmx_cvt_forms) / sizeof(mmx_cvt_forms[0]); k++) {
        unsigned bad = 0;

        for (unsigned j = 0; j < CASES_PER_FORM && bad < 3; j++, n++)
            bad += !run_one_mmx_cvt(&mmx_cvt_forms[k]);
    }
    sigaction(SIGFPE, &old, NULL);
    printf("emu mmx/sse conversion diff: %u cases, %d mismatches\n", n, failures);
    assert_int_equal(failures, 0);
}

/* MASKMOVQ with a memory ModRM is #UD; a mask that selects a byte on a
 * read-only page faults (#PF, nothing stored); an empty mask touches
 * nothing, so it does not fault there. */
static void test_maskmovq_faults(void **state)
{
    static const uint8_t maskmovq_mem[] = { 0x0f, 0xf7, 0x06 };
    static const uint8_t maskmovq[] = { 0x0f, 0xf7, 0xc1 };
    struct cpu_state *s = &tm.s;
    uint64_t mask = 0x8000000000000080ULL;

    memcpy(tm.m.ram + G_CODE_PA, maskmovq_mem, sizeof(maskmovq_mem));
    emu_cache_invalidate_range(tm.cache, G_CODE_PA, 16);
    s->rip = CODE_VA;
    emu_invalidate(&tm.c);
    assert_int_equal(emu_step(&tm.c), EMU_STOP_EXCEPTION);
    assert_int_equal(tm.c.exc_vector, EXC_UD);

    memcpy(tm.m.ram + G_CODE_PA, maskmovq, sizeof(maskmovq));
    emu_cache_invalidate_range(tm.cache, G_CODE_PA, 16);
    s->fpu.fsw = 0;
    memcpy(s->fpu.st[1], &mask, 8);
    memset(tm.m.ram + G_CODE_PA + 0x100, 0xaa, 8);
    s->gpr[R_EDI] = CODE_VA + 0x100;       /* user, read-only */
    s->rip = CODE_VA;
    emu_invalidate(&tm.c);
    assert_int_equal(emu_step(&tm.c), EMU_STOP_EXCEPTION);
    assert_int_equal(tm.c.exc_vector, EXC_PF);
    assert_int_equal(tm.c.exc_error, 7);   /* P | W | U */
    assert_int_equal(tm.m.ram[G_CODE_PA + 0x100], 0xaa);
    mask = 0;
    memcpy(s->fpu.st[1], &mask, 8);
    s->rip = CODE_VA;
    assert_int_equal(emu_step(&tm.c), EMU_STOP_BUDGET);
    assert_int_equal(s->rip, CODE_VA + sizeof(maskmovq));
}

/* EMMS empties the tag word; CR0.EM makes MMX #UD. */
static void test_mmx_emms_em(void **state)
{
    static const uint8_t emms[] = { 0x0f, 0x77 };
    static const uint8_t paddb[] = { 0x0f, 0xfc, 0xc1 };
    struct cpu_state *s = &tm.s;

    memcpy(tm.m.ram + G_CODE_PA, emms, sizeof(emms));
    emu_cache_invalidate_range(tm.cache, G_CODE_PA, 16);
    s->fpu.ftw = 0xff;
    s->rip = CODE_VA;
    emu_invalidate(&tm.c);
    assert_int_equal(emu_step(&tm.c), EMU_STOP_BUDGET);
    assert_int_equal(s->fpu.ftw, 0);
    memcpy(tm.m.ram + G_CODE_PA, paddb, sizeof(paddb));
    emu_cache_invalidate_range(tm.cache, G_CODE_PA, 16);
    s->cr0 |= X86_CR0_EM;
    s->rip = CODE_VA;
    emu_invalidate(&tm.c);
    assert_int_equal(emu_step(&tm.c), EMU_STOP_EXCEPTION);
    assert_int_equal(tm.c.exc_vector, EXC_UD);
    s->cr0 &= ~X86_CR0_EM;
    emu_invalidate(&tm.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff_sse_fp),
        cmocka_unit_test(test_xm_without_osxmmexcpt),
        cmocka_unit_test(test_fxsave_roundtrip),
        cmocka_unit_test(test_diff_mmx),
        cmocka_unit_test(test_mmx_emms_em),
        cmocka_unit_test(test_diff_mmx_sse_cvt),
        cmocka_unit_test(test_maskmovq_faults),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
