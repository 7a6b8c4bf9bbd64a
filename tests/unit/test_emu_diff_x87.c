/* Differential test of the emulator's x87 FPU against the host CPU.
 *
 * Each case is one D8-DF instruction (memory operand [rsi]) run on a random
 * x87 state: registers biased to the special encodings (signed zeros,
 * infinities, QNaN/SNaN, the indefinite, denormals, pseudo-denormals,
 * unnormals, pseudo-infinities/NaNs, extremes, integers), random tags (so
 * stack overflow and underflow happen), TOP, condition codes, FCW
 * precision/rounding and exception masks, masked sticky flags, RFLAGS.  It
 * runs natively from a generated stub (FRSTOR, the instruction, FNSAVE:
 * FNSAVE does not wait, so an unmasked exception stays pending instead of
 * raising SIGFPE) and under emu as the instruction followed by FNSAVE.
 * The two FNSAVE images (FCW, FSW, full tag word, ST0-7; not FIP/FOP/FDP,
 * which name different addresses), the 128-byte memory operand area,
 * RFLAGS (FCMOVcc, FCOMI) and AX (FNSTSW) must agree.  EMU_DIFF_SEED
 * replays a run; a failure prints the bytes and the inputs.
 * Also: #NM and #MF rules, FIP/FOP/FDP, FNSTENV formats. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <time.h>
#include <cmocka.h>

#include "tests/emu/emu_test.h"

#define CODE_VA 0x20000000ULL
#define DATA_VA 0x10000000ULL
#define G_CODE_PA 0x200000ULL
#define G_DATA_PA 0x100000ULL
#define RO_VA 0x10010000ULL      /* read-only page */
#define G_RO_PA 0x110000ULL
#define SAVE_OFF 0x800          /* guest FNSAVE area in the data page */
#define MEM_SIZE 128
#define CASES_PER_FORM 400
#define FSAVE_SIZE 108
#define ARITH_FLAGS 0x8d5ULL

/* Native frame: offsets are disp8/disp32 in the stub. */
struct nat {
    uint8_t fsave[112];     /* 0: in for FRSTOR, out from FNSAVE */
    uint64_t rflags_in;     /* 112: arithmetic bits */
    uint64_t rflags_out;    /* 120 */
    uint64_t rsi;           /* 128 */
    uint64_t rax;           /* 136 */
};

enum mtype { T_NONE, T_F32, T_F64, T_F80, T_I16, T_I32, T_I64, T_BCD, T_CW, T_ENV, T_SAVE };

struct form {
    const char *name;
    uint8_t pfx;       /* 0 or 0x66 */
    uint8_t op;
    uint8_t modrm;     /* register: base ModRM; memory: ModRM.reg << 3 */
    uint8_t plus_i;    /* register form takes ST(i) in ModRM.rm */
    uint8_t mem;       /* enum mtype of [rsi], T_NONE for register forms */
    uint8_t store_env; /* writes an environment: its FIP/FOP/FDP bytes differ */
};

#define R(n, o, m) { n, 0, o, m, 1, T_NONE, 0 }
#define R1(n, o, m) { n, 0, o, m, 0, T_NONE, 0 }
#define M(n, o, r, t) { n, 0, o, (r) << 3, 0, t, 0 }

static const struct form forms[] = {
    R("fadd st,sti", 0xd8, 0xc0), R("fmul st,sti", 0xd8, 0xc8), R("fcom", 0xd8, 0xd0),
    R("fcomp", 0xd8, 0xd8), R("fsub st,sti", 0xd8, 0xe0), R("fsubr st,sti", 0xd8, 0xe8),
    R("fdiv st,sti", 0xd8, 0xf0), R("fdivr st,sti", 0xd8, 0xf8),
    R("fld sti", 0xd9, 0xc0), R("fxch", 0xd9, 0xc8), R("fstp1", 0xd9, 0xd8),
    R1("fnop", 0xd9, 0xd0), R1("fchs", 0xd9, 0xe0), R1("fabs", 0xd9, 0xe1),
    R1("ftst", 0xd9, 0xe4), R1("fxam", 0xd9, 0xe5), R1("fld1", 0xd9, 0xe8),
    R1("fldl2t", 0xd9, 0xe9), R1("fldl2e", 0xd9, 0xea), R1("fldpi", 0xd9, 0xeb),
    R1("fldlg2", 0xd9, 0xec), R1("fldln2", 0xd9, 0xed), R1("fldz", 0xd9, 0xee),
    R1("f2xm1", 0xd9, 0xf0), R1("fyl2x", 0xd9, 0xf1), R1("fptan", 0xd9, 0xf2),
    R1("fpatan", 0xd9, 0xf3), R1("fxtract", 0xd9, 0xf4), R1("fprem1", 0xd9, 0xf5),
    R1("fdecstp", 0xd9, 0xf6), R1("fincstp", 0xd9, 0xf7), R1("fprem", 0xd9, 0xf8),
    R1("fyl2xp1", 0xd9, 0xf9), R1("fsqrt", 0xd9, 0xfa), R1("fsincos", 0xd9, 0xfb),
    R1("frndint", 0xd9, 0xfc), R1("fscale", 0xd9, 0xfd), R1("fsin", 0xd9, 0xfe),
    R1("fcos", 0xd9, 0xff),
    R("fcmovb", 0xda, 0xc0), R("fcmove", 0xda, 0xc8), R("fcmovbe", 0xda, 0xd0),
    R("fcmovu", 0xda, 0xd8), R1("fucompp", 0xda, 0xe9),
    R("fcmovnb", 0xdb, 0xc0), R("fcmovne", 0xdb, 0xc8), R("fcmovnbe", 0xdb, 0xd0),
    R("fcmovnu", 0xdb, 0xd8), R("fucomi", 0xdb, 0xe8), R("fcomi", 0xdb, 0xf0),
    R1("feni", 0xdb, 0xe0), R1("fdisi", 0xdb, 0xe1), R1("fnclex", 0xdb, 0xe2),
    R1("fninit", 0xdb, 0xe3), R1("fsetpm", 0xdb, 0xe4),
    R("fadd sti,st", 0xdc, 0xc0), R("fmul sti,st", 0xdc, 0xc8), R("fcom2", 0xdc, 0xd0),
    R("fcomp3", 0xdc, 0xd8), R("fsubr sti,st", 0xdc, 0xe0), R("fsub sti,st", 0xdc, 0xe8),
    R("fdivr sti,st", 0xdc, 0xf0), R("fdiv sti,st", 0xdc, 0xf8),
    R("ffree", 0xdd, 0xc0), R("fxch4", 0xdd, 0xc8), R("fst sti", 0xdd, 0xd0),
    R("fstp sti", 0xdd, 0xd8), R("fucom", 0xdd, 0xe0), R("fucomp", 0xdd, 0xe8),
    R("faddp", 0xde, 0xc0), R("fmulp", 0xde, 0xc8), R("fcomp5", 0xde, 0xd0),
    R1("fcompp", 0xde, 0xd9), R("fsubrp", 0xde, 0xe0), R("fsubp", 0xde, 0xe8),
    R("fdivrp", 0xde, 0xf0), R("fdivp", 0xde, 0xf8),
    R("ffreep", 0xdf, 0xc0), R("fxch7", 0xdf, 0xc8), R("fstp8", 0xdf, 0xd0),
    R("fstp9", 0xdf, 0xd8), R1("fnstsw ax", 0xdf, 0xe0), R("fucomip", 0xdf, 0xe8),
    R("fcomip", 0xdf, 0xf0),
    M("fadd m32", 0xd8, 0, T_F32), M("fmul m32", 0xd8, 1, T_F32), M("fcom m32", 0xd8, 2, T_F32),
    M("fcomp m32", 0xd8, 3, T_F32), M("fsub m32", 0xd8, 4, T_F32), M("fsubr m32", 0xd8, 5, T_F32),
    M("fdiv m32", 0xd8, 6, T_F32), M("fdivr m32", 0xd8, 7, T_F32),
    M("fld m32", 0xd9, 0, T_F32), M("fst m32", 0xd9, 2, T_F32), M("fstp m32", 0xd9, 3, T_F32),
    M("fldenv", 0xd9, 4, T_ENV), M("fldcw", 0xd9, 5, T_CW),
    { "fnstenv", 0, 0xd9, 6 << 3, 0, T_ENV, 1 }, M("fnstcw", 0xd9, 7, T_CW),
    { "fldenv16", 0x66, 0xd9, 4 << 3, 0, T_ENV, 0 },
    { "fnstenv16", 0x66, 0xd9, 6 << 3, 0, T_ENV, 1 },
    M("fiadd m32", 0xda, 0, T_I32), M("fimul m32", 0xda, 1, T_I32),
    M("ficom m32", 0xda, 2, T_I32), M("ficomp m32", 0xda, 3, T_I32),
    M("fisub m32", 0xda, 4, T_I32), M("fisubr m32", 0xda, 5, T_I32),
    M("fidiv m32", 0xda, 6, T_I32), M("fidivr m32", 0xda, 7, T_I32),
    M("fild m32", 0xdb, 0, T_I32), M("fisttp m32", 0xdb, 1, T_I32), M("fist m32", 0xdb, 2, T_I32),
    M("fistp m32", 0xdb, 3, T_I32), M("fld m80", 0xdb, 5, T_F80), M("fstp m80", 0xdb, 7, T_F80),
    M("fadd m64", 0xdc, 0, T_F64), M("fmul m64", 0xdc, 1, T_F64), M("fcom m64", 0xdc, 2, T_F64),
    M("fcomp m64", 0xdc, 3, T_F64), M("fsub m64", 0xdc, 4, T_F64), M("fsubr m64", 0xdc, 5, T_F64),
    M("fdiv m64", 0xdc, 6, T_F64), M("fdivr m64", 0xdc, 7, T_F64),
    M("fld m64", 0xdd, 0, T_F64), M("fisttp m64", 0xdd, 1, T_I64), M("fst m64", 0xdd, 2, T_F64),
    M("fstp m64", 0xdd, 3, T_F64), M("frstor", 0xdd, 4, T_SAVE),
    { "fnsave", 0, 0xdd, 6 << 3, 0, T_SAVE, 1 }, M("fnstsw m16", 0xdd, 7, T_CW),
    { "frstor16", 0x66, 0xdd, 4 << 3, 0, T_SAVE, 0 },
    { "fnsave16", 0x66, 0xdd, 6 << 3, 0, T_SAVE, 1 },
    M("fiadd m16", 0xde, 0, T_I16), M("fimul m16", 0xde, 1, T_I16),
    M("ficom m16", 0xde, 2, T_I16), M("ficomp m16", 0xde, 3, T_I16),
    M("fisub m16", 0xde, 4, T_I16), M("fisubr m16", 0xde, 5, T_I16),
    M("fidiv m16", 0xde, 6, T_I16), M("fidivr m16", 0xde, 7, T_I16),
    M("fild m16", 0xdf, 0, T_I16), M("fisttp m16", 0xdf, 1, T_I16), M("fist m16", 0xdf, 2, T_I16),
    M("fistp m16", 0xdf, 3, T_I16), M("fbld", 0xdf, 4, T_BCD), M("fild m64", 0xdf, 5, T_I64),
    M("fbstp", 0xdf, 6, T_BCD), M("fistp m64", 0xdf, 7, T_I64),
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void put80(uint8_t *p, uint64_t mant, uint16_t se)
{
    memcpy(p, &mant, 8);
    memcpy(p + 8, &se, 2);
}

/* An 80-bit register value biased to the special encodings. */
static void rnd_f80(uint8_t *p)
{
    static const struct { uint64_t m; uint16_t se; } special[] = {
        { 0, 0 }, { 0, 0x8000 }, { 1ULL << 63, 0x7fff }, { 1ULL << 63, 0xffff },
        { 3ULL << 62, 0x7fff }, { 3ULL << 62, 0xffff },           /* QNaN, indefinite */
        { (1ULL << 63) | 1, 0x7fff }, { (1ULL << 63) | (1ULL << 40), 0xffff }, /* SNaN */
        { 1, 0 }, { (1ULL << 63) - 1, 0x8000 },                 /* denormals */
        { 1ULL << 63, 0 }, { (1ULL << 63) | 5, 0x8000 },         /* pseudo-denormals */
        { 1ULL << 62, 0x3fff }, { 12345, 0x4005 },               /* unnormals */
        { 0, 0x7fff }, { 1ULL << 62, 0xffff },                   /* pseudo-inf / pseudo-NaN */
        { 1ULL << 63, 0x3fff }, { 1ULL << 63, 0xbfff }, { ~0ULL, 0x7ffe }, { 1ULL << 63, 1 },
        { 0xc90fdaa22168c235ULL, 0x4000 }, { 1ULL << 63, 0x403e }, { 1ULL << 63, 0xc03e },
        { 1ULL << 63, 0x401e }, { 0xfffffffffffff800ULL, 0x43fe }, { 1ULL << 63, 0x3f81 },
    };
    uint64_t r = rnd();

    switch (r % 6) {
    case 0: case 1: {
        unsigned k = (unsigned)((r >> 8) % (sizeof(special) / sizeof(special[0])));

        put80(p, special[k].m, special[k].se);
        return;
    }
    case 2:   /* ordinary numbers near 1 */
        put80(p, rnd() | 1ULL << 63, (uint16_t)((r >> 16 & 0x8000) | (0x3fff - 40 + (r >> 8) % 80)));
        return;
    case 3: { /* integers (FIST, FRNDINT, FBSTP) */
        unsigned sh = (unsigned)((r >> 8) % 64);

        put80(p, (rnd() | 1ULL << 63) >> sh << sh,
              (uint16_t)((r >> 16 & 0x8000) | (0x403e - (r >> 24) % 70)));
        return;
    }
    case 4:   /* edges of the float, double and extended ranges */
        put80(p, rnd() | 1ULL << 63,
              (uint16_t)((r >> 16 & 0x8000) |
                         (((r >> 24) % 3 == 0) ? 0x3f81 - 30 + (r >> 8) % 60
                          : ((r >> 24) % 3 == 1) ? 0x3c01 - 60 + (r >> 8) % 120
                          : (r >> 8) % 2 ? (r >> 32) % 64 : 0x7ffe - (r >> 32) % 64)));
        return;
    default:
        put80(p, rnd(), (uint16_t)rnd());
    }
}

static uint32_t rnd_f32(void)
{
    static const uint32_t special[] = {
        0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000,
        0x7fa00001, 0xff800123, 0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff,
        0x3f800000, 0xbf800000, 0x4f000000, 0xdf000000,
    };
    uint64_t r = rnd();

    if (r % 3 == 0)
        return special[(r >> 8) % (sizeof(special) / sizeof(special[0]))];
    if (r % 3 == 1)
        return (uint32_t)(r >> 16 & 0x807fffff) | (uint32_t)(110 + (r >> 8) % 40) << 23;
    return (uint32_t)(r >> 24);
}

static uint64_t rnd_f64(void)
{
    static const uint64_t special[] = {
        0, 0x8000000000000000ULL, 0x7ff0000000000000ULL, 0xfff0000000000000ULL,
        0x7ff8000000000000ULL, 0x7ff4000000000001ULL, 0x0000000000000001ULL,
        0x800fffffffffffffULL, 0x0010000000000000ULL, 0x7fefffffffffffffULL,
        0x3ff0000000000000ULL, 0x43e0000000000000ULL, 0xc3e0000000000000ULL,
    };
    uint64_t r = rnd();

    if (r % 3 == 0)
        return special[(r >> 8) % (sizeof(special) / sizeof(special[0]))];
    if (r % 3 == 1)
        return (rnd() & 0x800fffffffffffffULL) | (uint64_t)(1000 + (r >> 8) % 48) << 52;
    return rnd();
}

static uint64_t rnd_int(unsigned bits)
{
    static const uint64_t special[] = {
        0, 1, 0xffffffffffffffffULL, 0x8000, 0x7fff, 0x80000000, 0x7fffffff,
        0x8000000000000000ULL, 0x7fffffffffffffffULL, 0xffff8000, 0xffffffff80000000ULL,
    };
    uint64_t r = rnd();

    if (r % 3 == 0)
        return special[(r >> 8) % (sizeof(special) / sizeof(special[0]))];
    return (uint64_t)((int64_t)rnd() >> (64 - (r >> 8) % (bits + 1) - 1) % 64);
}

/* Packed BCD: mostly valid digits, sometimes garbage nibbles. */
static void rnd_bcd(uint8_t *p)
{
    bool valid = rnd() % 4;

    for (unsigned k = 0; k < 9; k++)
        p[k] = valid ? (uint8_t)((rnd() % 10) << 4 | rnd() % 10) : (uint8_t)rnd();
    p[9] = (uint8_t)(rnd() & 0x80) | (valid ? 0 : (uint8_t)(rnd() & 0x7f));
}

/* FCW: any precision and rounding; all exceptions masked half the time. */
static uint16_t rnd_fcw(void)
{
    uint64_t r = rnd();
    uint16_t cw = (uint16_t)(0x40 | (r & 0xf00));

    cw |= (r >> 12) % 2 ? 0x3f : (uint16_t)(r >> 16 & 0x3f);
    return cw;
}

static void rnd_mem(uint8_t *p, enum mtype t, uint16_t fcw)
{
    for (unsigned k = 0; k < MEM_SIZE; k++)
        p[k] = (uint8_t)rnd();
    switch (t) {
    case T_F32: { uint32_t v = rnd_f32(); memcpy(p, &v, 4); break; }
    case T_F64: { uint64_t v = rnd_f64(); memcpy(p, &v, 8); break; }
    case T_F80: rnd_f80(p); break;
    case T_I16: { uint16_t v = (uint16_t)rnd_int(16); memcpy(p, &v, 2); break; }
    case T_I32: { uint32_t v = (uint32_t)rnd_int(32); memcpy(p, &v, 4); break; }
    case T_I64: { uint64_t v = rnd_int(64); memcpy(p, &v, 8); break; }
    case T_BCD: rnd_bcd(p); break;
    case T_CW: { uint16_t v = rnd_fcw(); memcpy(p, &v, 2); break; }
    case T_ENV: case T_SAVE: {
        /* A plausible environment: random FCW/FSW (any flags: FLDENV may
         * leave an exception pending), random tags; registers follow. */
        uint16_t w[3] = { rnd_fcw(), (uint16_t)rnd(), (uint16_t)rnd() };
        bool e16 = rnd() & 1;

        (void)fcw;
        for (unsigned k = 0; k < 3; k++)
            memcpy(p + (e16 ? 2 : 4) * k, &w[k], 2);
        for (unsigned k = 0; k < 8; k++) {
            rnd_f80(p + 28 + 10 * k);
            if (rnd() % 3 == 0)
                rnd_f80(p + 14 + 10 * k);
        }
        break;
    }
    case T_NONE: break;
    }
}

/* --- native ------------------------------------------------------------ */

static uint8_t *ncode;

static unsigned put(uint8_t *p, unsigned n, const char *bytes, unsigned len)
{
    memcpy(p + n, bytes, len);
    return n + len;
}

/* Stub: rdi = struct nat *. */
static void native_build(const uint8_t *insn, unsigned len)
{
    unsigned n = 0;

    n = put(ncode, n, "\xdd\x27", 2);                         /* frstor [rdi] */
    n = put(ncode, n, "\x9c\x58", 2);                         /* pushf; pop rax */
    n = put(ncode, n, "\x48\x25\x2a\xf7\xff\xff", 6);         /* and rax, ~0x8d5 */
    n = put(ncode, n, "\x48\x0b\x47\x70", 4);                 /* or rax, [rdi+112] */
    n = put(ncode, n, "\x50\x9d", 2);                         /* push rax; popf */
    n = put(ncode, n, "\x48\x8b\xb7\x80\x00\x00\x00", 7);     /* mov rsi, [rdi+128] */
    n = put(ncode, n, "\x48\x8b\x87\x88\x00\x00\x00", 7);     /* mov rax, [rdi+136] */
    n = put(ncode, n, (const char *)insn, len);
    n = put(ncode, n, "\x9c\x5a", 2);                         /* pushf; pop rdx */
    n = put(ncode, n, "\x48\x89\x57\x78", 4);                 /* mov [rdi+120], rdx */
    n = put(ncode, n, "\x48\x89\x87\x88\x00\x00\x00", 7);     /* mov [rdi+136], rax */
    n = put(ncode, n, "\xdd\x37", 2);                         /* fnsave [rdi] */
    put(ncode, n, "\xc3", 1);
    __builtin___clear_cache((char *)ncode, (char *)ncode + 256);
}

static void native_run(struct nat *io)
{
    uint16_t cw;

    __asm__ volatile("fnstcw %0" : "=m"(cw));
    ((void (*)(struct nat *))(void *)ncode)(io);
    __asm__ volatile("fldcw %0" : : "m"(cw));
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
    emu_tm_map(&tm, CODE_VA, G_CODE_PA, 0x1000, EMU_TM_U);
    emu_tm_map(&tm, DATA_VA, G_DATA_PA, 0x1000, EMU_TM_U | EMU_TM_W | EMU_TM_NX);
    emu_tm_map(&tm, RO_VA, G_RO_PA, 0x1000, EMU_TM_U | EMU_TM_NX);
    rng_state = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761ULL;
    if (!rng_state)
        rng_state = 1;
    printf("emu x87 diff: seed %#llx (EMU_DIFF_SEED to replay)\n",
           (unsigned long long)rng_state);
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

/* cpu_state.fpu from an FNSAVE image (what FRSTOR would load). */
static void fpu_from_fsave(struct x86_fxsave *f, const uint8_t *img)
{
    uint16_t tw;

    memcpy(&f->fcw, img, 2);
    memcpy(&f->fsw, img + 4, 2);
    memcpy(&tw, img + 8, 2);
    f->ftw = 0;
    for (unsigned p = 0; p < 8; p++)
        if (((tw >> (2 * p)) & 3) != 3)
            f->ftw |= (uint8_t)(1u << p);
    memset(f->st, 0, sizeof(f->st));
    for (unsigned k = 0; k < 8; k++)
        memcpy(f->st[k], img + 28 + 10 * k, 10);
    f->fip = f->fdp = 0;
    f->fop = 0;
}

static void load_code(const uint8_t *code, unsigned len)
{
    memcpy(tm.m.ram + G_CODE_PA, code, len);
    emu_cache_invalidate_range(tm.cache, G_CODE_PA, 64);
}

/* insn; fnsave [rdi].  Returns the stop reason's vector or -1 if none. */
static int emu_case(const uint8_t *insn, unsigned len, const struct nat *in, struct nat *out)
{
    struct cpu_state *s = &tm.s;
    uint8_t code[32];
    enum emu_stop st;

    memcpy(code, insn, len);
    memcpy(code + len, "\xdd\x37", 2);
    load_code(code, len + 2);
    memcpy(tm.m.ram + G_DATA_PA, hostmem, MEM_SIZE);
    memset(tm.m.ram + G_DATA_PA + SAVE_OFF, 0, FSAVE_SIZE);
    memset(s->gpr, 0, sizeof(s->gpr));
    s->gpr[R_EAX] = in->rax;
    s->gpr[R_ESI] = DATA_VA;
    s->gpr[R_EDI] = DATA_VA + SAVE_OFF;
    fpu_from_fsave(&s->fpu, in->fsave);
    s->rip = CODE_VA;
    s->rflags = X86_RFLAGS_FIXED | X86_RFLAGS_IF | (in->rflags_in & ARITH_FLAGS);
    emu_invalidate(&tm.c);
    st = emu_run(&tm.c, 2);
    emu_sync_state(&tm.c);
    *out = *in;
    out->rax = s->gpr[R_EAX];
    out->rflags_out = s->rflags;
    memcpy(out->fsave, tm.m.ram + G_DATA_PA + SAVE_OFF, FSAVE_SIZE);
    return st == EMU_STOP_EXCEPTION ? (int)tm.c.exc_vector : -1;
}

/* --- cases ------------------------------------------------------------- */

static void hex(const char *what, const uint8_t *p, unsigned n)
{
    fprintf(stderr, "  %s:", what);
    for (unsigned k = 0; k < n; k++)
        fprintf(stderr, "%s%02x", k && !(k % 10) ? " " : "", p[k]);
    fprintf(stderr, "\n");
}

static void dump_fsave(const char *side, const uint8_t *img, uint64_t rax, uint64_t fl)
{
    uint16_t cw, sw, tw;

    memcpy(&cw, img, 2);
    memcpy(&sw, img + 4, 2);
    memcpy(&tw, img + 8, 2);
    fprintf(stderr, " %s: fcw %04x fsw %04x ftw %04x ax %04x rflags %03llx\n", side, cw, sw, tw,
            (unsigned)(uint16_t)rax, (unsigned long long)(fl & ARITH_FLAGS));
    for (unsigned k = 0; k < 8; k++) {
        char name[8];

        snprintf(name, sizeof(name), "st%u", k);
        hex(name, img + 28 + 10 * k, 10);
    }
}

static int failures;
static unsigned pending_cases;   /* native ended with an unmasked exception pending */

static bool same_fsave(const uint8_t *a, const uint8_t *b)
{
    return !memcmp(a, b, 12) && !memcmp(a + 28, b + 28, 80);
}

static bool run_one(const struct form *f)
{
    uint8_t insn[8], nmem[MEM_SIZE], in_mem[MEM_SIZE];
    unsigned len = 0;
    struct nat in, nat, emu;
    uint16_t fcw = rnd_fcw(), fsw, tw = 0;
    uint64_t r = rnd();
    unsigned skip_lo = MEM_SIZE, skip_hi = MEM_SIZE;
    int ee;
    bool ok;

    if (f->pfx)
        insn[len++] = f->pfx;
    insn[len++] = f->op;
    if (f->mem != T_NONE)
        insn[len++] = (uint8_t)(f->modrm | 0x06);   /* [rsi] */
    else
        insn[len++] = (uint8_t)(f->modrm + (f->plus_i ? rnd() % 8 : 0));

    memset(&in, 0, sizeof(in));
    /* Sticky flags only where masked: an unmasked one would be pending
     * and make the instruction itself fault (#MF), tested separately. */
    fsw = (uint16_t)((r & 0x4700) | ((r >> 16) & 7) << 11 | ((r >> 20) & fcw & 0x3f));
    if ((r >> 28) % 8 == 0)
        fsw |= 0x40;   /* SF */
    for (unsigned p = 0; p < 8; p++)
        if ((rnd() % 3) == 0)
            tw |= (uint16_t)(3u << (2 * p));
    if ((r >> 32) % 8 == 0)
        tw = 0xffff;   /* empty stack */
    if ((r >> 32) % 8 == 1)
        tw = 0;        /* full stack */
    memcpy(in.fsave, &fcw, 2);
    memcpy(in.fsave + 4, &fsw, 2);
    memcpy(in.fsave + 8, &tw, 2);
    for (unsigned k = 0; k < 8; k++)
        rnd_f80(in.fsave + 28 + 10 * k);
    in.rflags_in = rnd() & ARITH_FLAGS;
    in.rax = rnd();
    rnd_mem(hostmem, (enum mtype)f->mem, fcw);
    memcpy(in_mem, hostmem, MEM_SIZE);
    in.rsi = (uint64_t)(uintptr_t)hostmem;

    nat = in;
    native_build(insn, len);
    native_run(&nat);
    memcpy(nmem, hostmem, MEM_SIZE);
    memcpy(hostmem, in_mem, MEM_SIZE);
    ee = emu_case(insn, len, &in, &emu);

    if (nat.fsave[4] & 0x80)
        pending_cases++;
    if (f->store_env) {   /* FIP, FOP/FCS, FDP, FDS of the stored environment */
        skip_lo = f->pfx ? 6 : 12;
        skip_hi = f->pfx ? 14 : 28;
    }
    ok = ee == -1 && same_fsave(nat.fsave, emu.fsave) && (uint16_t)nat.rax == (uint16_t)emu.rax &&
         (nat.rflags_out & ARITH_FLAGS) == (emu.rflags_out & ARITH_FLAGS);
    for (unsigned k = 0; k < MEM_SIZE; k++)
        if ((k < skip_lo || k >= skip_hi) && nmem[k] != tm.m.ram[G_DATA_PA + k])
            ok = false;
    if (ok)
        return true;
    fprintf(stderr, "MISMATCH %s\n  bytes:", f->name);
    for (unsigned k = 0; k < len; k++)
        fprintf(stderr, " %02x", insn[k]);
    fprintf(stderr, "\n  emu stop vector %d\n", ee);
    dump_fsave("in    ", in.fsave, in.rax, in.rflags_in);
    hex("mem in ", in_mem, 32);
    dump_fsave("native", nat.fsave, nat.rax, nat.rflags_out);
    hex("mem nat", nmem, 32);
    dump_fsave("emu   ", emu.fsave, emu.rax, emu.rflags_out);
    hex("mem emu", tm.m.ram + G_DATA_PA, 32);
    failures++;
    return false;
}

static void test_diff_x87(void **state)
{
    const char *env = getenv("EMU_DIFF_N");
    unsigned per_form = env ? (unsigned)strtoul(env, NULL, 0) : CASES_PER_FORM;
    unsigned n = 0;

    for (unsigned k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
        unsigned bad = 0;

        for (unsigned j = 0; j < per_form && bad < 3; j++, n++)
            bad += !run_one(&forms[k]);
    }
    printf("emu x87 diff: %u cases over %zu forms (%u left an unmasked exception pending), "
           "%d mismatches\n", n, sizeof(forms) / sizeof(forms[0]), pending_cases, failures);
    assert_int_equal(failures, 0);
}

/* --- control: #NM, #MF, FIP/FOP/FDP ------------------------------------- */

static void x87_reset(void)
{
    struct cpu_state *s = &tm.s;

    memset(&s->fpu.st, 0, sizeof(s->fpu.st));
    s->fpu.fcw = 0x37f;
    s->fpu.fsw = 0;
    s->fpu.ftw = 0;
    s->fpu.fip = s->fpu.fdp = 0;
    s->fpu.fop = 0;
    s->cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_WP | X86_CR0_ET | X86_CR0_NE;
    s->gpr[R_ESI] = DATA_VA;
    s->rip = CODE_VA;
    emu_invalidate(&tm.c);
}

/* Runs one instruction; returns its exception vector or -1. */
static int step(void)
{
    enum emu_stop st = emu_step(&tm.c);

    return st == EMU_STOP_EXCEPTION ? (int)tm.c.exc_vector : -1;
}

static void test_nm(void **state)
{
    static const uint8_t code[] = { 0xd8, 0xc1, 0x9b, 0xdd, 0x36 };   /* fadd; fwait; fnsave */
    struct cpu_state *s = &tm.s;

    load_code(code, sizeof(code));
    x87_reset();
    s->cr0 |= X86_CR0_TS;
    emu_invalidate(&tm.c);
    assert_int_equal(step(), EXC_NM);
    assert_int_equal(s->rip, CODE_VA);
    s->rip = CODE_VA + 2;               /* FWAIT: TS alone does not fault */
    assert_int_equal(step(), -1);
    s->cr0 |= X86_CR0_MP;
    s->rip = CODE_VA + 2;
    emu_invalidate(&tm.c);
    assert_int_equal(step(), EXC_NM);
    s->cr0 &= ~(X86_CR0_TS | X86_CR0_MP);
    s->cr0 |= X86_CR0_EM;               /* EM: every ESC opcode, FWAIT does not care */
    s->rip = CODE_VA + 3;
    emu_invalidate(&tm.c);
    assert_int_equal(step(), EXC_NM);
    s->rip = CODE_VA + 2;
    assert_int_equal(step(), -1);
    x87_reset();
}

/* 0/0 with IE unmasked: nothing changes but the flags, ES and B; the next
 * waiting instruction raises #MF (vector 16) with RIP on itself; the FN*
 * forms do not wait; FNCLEX clears it; with CR0.NE clear there is no #MF. */
static void test_mf(void **state)
{
    static const uint8_t code[] = {
        0xd9, 0xee, 0xd9, 0xee,         /* fldz; fldz */
        0xde, 0xf9,                     /* fdivp (0/0) */
        0xdf, 0xe0,                     /* fnstsw ax */
        0x9b,                           /* fwait */
        0xd8, 0xc1,                     /* fadd st, st1 */
        0xdb, 0xe2,                     /* fnclex */
        0x9b,                           /* fwait */
    };
    struct cpu_state *s = &tm.s;

    load_code(code, sizeof(code));
    x87_reset();
    s->fpu.fcw = 0x37e;
    for (unsigned k = 0; k < 4; k++)
        assert_int_equal(step(), -1);
    assert_int_equal(s->gpr[R_EAX] & 0xffff, 0xb081);   /* B, TOP 6, ES, IE */
    assert_int_equal(s->fpu.ftw, 0xc0);                 /* no pop */
    assert_int_equal(step(), EXC_MF);
    assert_int_equal(s->rip, CODE_VA + 8);
    s->rip = CODE_VA + 9;
    emu_invalidate(&tm.c);
    assert_int_equal(step(), EXC_MF);
    assert_int_equal(s->rip, CODE_VA + 9);
    s->cr0 &= ~X86_CR0_NE;
    emu_invalidate(&tm.c);
    assert_int_equal(step(), -1);       /* FERR# not modelled: runs */
    s->cr0 |= X86_CR0_NE;
    emu_invalidate(&tm.c);
    assert_int_equal(step(), -1);       /* fnclex */
    assert_int_equal(s->fpu.fsw & 0x80ff, 0);
    assert_int_equal(step(), -1);       /* fwait */

    /* FLDCW unmasking a sticky flag makes it pending. */
    x87_reset();
    s->fpu.fsw = 0x0004;                /* ZE, masked */
    memcpy(tm.m.ram + G_DATA_PA, "\x7b\x03", 2);   /* FCW 0x37b: ZE unmasked */
    load_code((const uint8_t *)"\xd9\x2e\x9b", 3);  /* fldcw [rsi]; fwait */
    assert_int_equal(step(), -1);
    assert_int_equal(s->fpu.fsw, 0x8084);
    assert_int_equal(step(), EXC_MF);
    x87_reset();
}

static uint32_t ram32(uint64_t off)
{
    uint32_t v;

    memcpy(&v, tm.m.ram + G_DATA_PA + off, 4);
    return v;
}

/* FIP, FOP and FDP follow the last non-control instruction; FNSTENV stores
 * them (32- and 16-bit protected-mode layouts) and then masks everything. */
static void test_fip_fop_fdp(void **state)
{
    static const uint8_t code[] = {
        0xdd, 0x46, 0x10,               /* fld qword [rsi+16] */
        0xd9, 0x76, 0x40,               /* fnstenv [rsi+64] */
        0xd8, 0xc0,                     /* fadd st, st0 */
        0x66, 0xd9, 0x76, 0x60,         /* fnstenv16 [rsi+96] */
    };
    struct cpu_state *s = &tm.s;
    uint16_t w;

    load_code(code, sizeof(code));
    x87_reset();
    s->fpu.fcw = 0x27f;
    assert_int_equal(emu_run(&tm.c, 4), EMU_STOP_BUDGET);
    assert_int_equal(ram32(64) & 0xffff, 0x27f);
    assert_int_equal(ram32(72) & 0xffff, 0x3fff);           /* ST0 valid, rest empty */
    assert_int_equal(ram32(76), (uint32_t)CODE_VA);         /* FIP */
    assert_int_equal(ram32(80) >> 16, 0x546);               /* FOP: dd 46 */
    assert_int_equal(ram32(84), (uint32_t)DATA_VA + 16);    /* FDP */
    memcpy(&w, tm.m.ram + G_DATA_PA + 96 + 6, 2);
    assert_int_equal(w, (uint16_t)(CODE_VA + 6));           /* 16-bit FIP: fadd */
    memcpy(&w, tm.m.ram + G_DATA_PA + 96 + 10, 2);
    assert_int_equal(w, (uint16_t)(DATA_VA + 16));          /* FDP unchanged by fadd */
    assert_int_equal(s->fpu.fop, 0x0c0);
    assert_int_equal(s->fpu.fcw, 0x27f | 0x3f);
    x87_reset();
}

/* Real mode: the real-mode environment layouts with linear FIP/FDP
 * (CS base 0x90000, DS base 0x98000, [bx+disp8] addressing). */
static void test_real_mode_env(void **state)
{
    static const uint8_t code[] = {
        0xdd, 0x47, 0x10,               /* fld qword [bx+0x10] */
        0xd9, 0x77, 0x40,               /* fnstenv [bx+0x40] (14 bytes) */
        0x66, 0xd9, 0x77, 0x60,         /* fnstenv [bx+0x60] (28 bytes) */
    };
    struct cpu_state *s = &tm.s, saved = tm.s;
    const uint8_t *env16 = tm.m.ram + 0x98040, *env32 = tm.m.ram + 0x98060;
    uint16_t w;
    uint32_t d;

    memcpy(tm.m.ram + 0x90000, code, sizeof(code));
    emu_cache_invalidate_range(tm.cache, 0x90000, sizeof(code));
    x87_reset();
    s->cr0 = X86_CR0_ET | X86_CR0_NE;
    s->efer = 0;
    for (int k = 0; k < S_NR; k++) {
        struct x86_segment *sg = &s->seg[k];

        sg->selector = k == S_CS ? 0x9000 : 0x9800;
        sg->base = (uint64_t)sg->selector << 4;
        sg->limit = 0xffff;
        sg->type = k == S_CS ? 0xb : 0x3;
        sg->s = 1;
        sg->present = 1;
        sg->db = sg->l = sg->g = 0;
        sg->dpl = 0;
    }
    s->gpr[R_EBX] = 0;
    s->rip = 0;
    emu_invalidate(&tm.c);
    assert_int_equal(emu_run(&tm.c, 3), EMU_STOP_BUDGET);
    memcpy(&w, env16 + 6, 2);
    assert_int_equal(w, 0x0000);                        /* FIP[15:0] of 0x90000 */
    memcpy(&w, env16 + 8, 2);
    assert_int_equal(w, 0x9547);                        /* FIP[19:16], FOP dd 47 */
    memcpy(&w, env16 + 10, 2);
    assert_int_equal(w, 0x8010);                        /* FDP[15:0] of 0x98010 */
    memcpy(&w, env16 + 12, 2);
    assert_int_equal(w, 0x9000);                        /* FDP[19:16] */
    memcpy(&d, env32 + 16, 4);
    assert_int_equal(d, 0x9547);
    memcpy(&d, env32 + 20, 4);
    assert_int_equal(d, 0x8010);
    memcpy(&d, env32 + 24, 4);
    assert_int_equal(d, 0x9000);
    tm.s = saved;
    x87_reset();
}

/* A faulting memory operand changes nothing: FSTP m64 and FNSAVE to a
 * read-only page, FLD m80 straddling into an unmapped page. */
static void test_memory_faults(void **state)
{
    static const struct { uint8_t code[4]; uint64_t rsi; } cases[] = {
        { { 0xdd, 0x1e }, RO_VA },                      /* fstp qword [rsi] */
        { { 0xdd, 0x36 }, RO_VA },                      /* fnsave [rsi] */
        { { 0xdb, 0x2e }, DATA_VA + 0xffc },            /* fld tword [rsi]: 4 bytes mapped */
    };
    struct cpu_state *s = &tm.s;

    for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct x86_fxsave before;

        load_code(cases[k].code, 2);
        x87_reset();
        s->fpu.fsw = 0x3800;                            /* TOP 7, ST0 valid: 1.0 */
        s->fpu.ftw = 0x80;
        memcpy(s->fpu.st[0], "\0\0\0\0\0\0\0\x80\xff\x3f", 10);
        s->gpr[R_ESI] = cases[k].rsi;
        before = s->fpu;
        assert_int_equal(step(), EXC_PF);
        assert_int_equal(s->rip, CODE_VA);
        assert_memory_equal(&s->fpu, &before, sizeof(before));
    }
    /* The same store to writable memory works (the fixture is sound). */
    load_code(cases[0].code, 2);
    x87_reset();
    s->fpu.fsw = 0x3800;
    s->fpu.ftw = 0x80;
    memcpy(s->fpu.st[0], "\0\0\0\0\0\0\0\x80\xff\x3f", 10);
    assert_int_equal(step(), -1);
    assert_memory_equal(tm.m.ram + G_DATA_PA, "\0\0\0\0\0\0\xf0\x3f", 8);
    assert_int_equal(s->fpu.ftw, 0);
    assert_int_equal(s->fpu.fsw & 0x3800, 0);
    x87_reset();
}

/* Reserved encodings are #UD, never run on the host. */
static void test_reserved_ud(void **state)
{
    static const uint8_t bad[][2] = {
        { 0xd9, 0xd1 }, { 0xd9, 0xe2 }, { 0xd9, 0xef }, { 0xda, 0xe8 }, { 0xdb, 0xe5 },
        { 0xdb, 0xf8 }, { 0xdd, 0xf0 }, { 0xde, 0xd8 }, { 0xdf, 0xe1 }, { 0xdf, 0xf8 },
        { 0xd9, 0x0e }, { 0xdb, 0x26 }, { 0xdb, 0x36 }, { 0xdd, 0x2e },
    };

    for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        load_code(bad[k], 2);
        x87_reset();
        assert_int_equal(step(), EXC_UD);
    }
    x87_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff_x87),
        cmocka_unit_test(test_nm),
        cmocka_unit_test(test_mf),
        cmocka_unit_test(test_fip_fop_fdp),
        cmocka_unit_test(test_real_mode_env),
        cmocka_unit_test(test_memory_faults),
        cmocka_unit_test(test_reserved_ud),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
