/* The emulator running code end to end: exceptions through the IDT and
 * IRETQ, page faults (CR2, error codes), accessed/dirty bits, self-
 * modifying code, exact instruction budgets, and a micro-benchmark of a
 * simple loop (MIPS printed for information, no threshold). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "tests/emu/emu_test.h"

#define CODE 0x100000ULL
#define GDT 0x90000ULL
#define IDT 0x91000ULL
#define STACK_TOP 0x8f000ULL

/* A CPL-0 long-mode guest with identity-mapped low 4 MiB (the data page
 * at 0x300000 read-only), a flat GDT and an IDT. */
static void guest_init(struct emu_tm *t)
{
    uint64_t *gdt;

    assert_int_equal(emu_tm_init(t, 4 * MiB, 0), 0);
    emu_tm_map(t, 0, 0, 0x300000, EMU_TM_W);
    emu_tm_map(t, 0x300000, 0x300000, 0x1000, 0);
    gdt = (uint64_t *)(t->m.ram + GDT);
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffULL;  /* 0x08: 64-bit code, DPL 0 */
    gdt[2] = 0x00cf93000000ffffULL;  /* 0x10: data */
    t->s.gdt.base = GDT;
    t->s.gdt.limit = 0x17;
    t->s.idt.base = IDT;
    t->s.idt.limit = 0xfff;
    t->s.seg[S_CS].selector = 0x08;
    t->s.seg[S_SS].selector = 0x10;
    t->s.gpr[R_ESP] = STACK_TOP;
    t->s.rip = CODE;
    t->c.deliver_exceptions = true;
    emu_invalidate(&t->c);
}

static void set_gate(struct emu_tm *t, unsigned vec, uint64_t off, unsigned dpl)
{
    uint64_t *g = (uint64_t *)(t->m.ram + IDT + vec * 16);

    g[0] = (off & 0xffff) | (0x08ULL << 16) | (0xeULL << 40) | ((uint64_t)dpl << 45) |
           (1ULL << 47) | (((off >> 16) & 0xffff) << 48);
    g[1] = off >> 32;
}

static void put(struct emu_tm *t, gpa_t at, const void *bytes, size_t len)
{
    memcpy(t->m.ram + at, bytes, len);
    emu_cache_invalidate_range(t->cache, at, len);
}

static void test_idt_delivery_and_iretq(void **state)
{
    static const uint8_t main_code[] = {
        0x31, 0xc9,             /* xor ecx, ecx */
        0x31, 0xc0,             /* xor eax, eax */
        0xf7, 0xf1,             /* div ecx: #DE */
        0xcd, 0x80,             /* int 0x80 */
        0xf4,                   /* hlt */
    };
    static const uint8_t de_handler[] = {
        0x48, 0xc7, 0xc3, 0x34, 0x12, 0x00, 0x00,   /* mov rbx, 0x1234 */
        0x48, 0x83, 0x04, 0x24, 0x02,               /* add qword [rsp], 2 */
        0x48, 0xcf,                                 /* iretq */
    };
    static const uint8_t int80_handler[] = {
        0x48, 0xc7, 0xc6, 0x78, 0x56, 0x00, 0x00,   /* mov rsi, 0x5678 */
        0x48, 0xcf,                                 /* iretq */
    };
    struct emu_tm t;

    guest_init(&t);
    put(&t, CODE, main_code, sizeof(main_code));
    put(&t, CODE + 0x1000, de_handler, sizeof(de_handler));
    put(&t, CODE + 0x1100, int80_handler, sizeof(int80_handler));
    set_gate(&t, 0, CODE + 0x1000, 0);
    set_gate(&t, 0x80, CODE + 0x1100, 0);
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EBX], 0x1234);
    assert_int_equal(t.s.gpr[R_ESI], 0x5678);
    assert_int_equal(t.s.gpr[R_ESP], STACK_TOP);
    assert_int_equal(t.s.rip, CODE + sizeof(main_code));
    assert_int_equal(t.s.seg[S_CS].selector, 0x08);
    emu_tm_destroy(&t);
}

static void test_double_and_triple_fault(void **state)
{
    static const uint8_t code[] = { 0x31, 0xc9, 0xf7, 0xf1 };  /* div by zero */
    static const uint8_t df_handler[] = { 0xf4 };             /* hlt */
    struct emu_tm t;

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    put(&t, CODE + 0x1000, df_handler, sizeof(df_handler));
    /* #DE's gate is not present: #NP during delivery -> #DF. */
    set_gate(&t, 8, CODE + 0x1000, 0);
    assert_int_equal(emu_run(&t.c, 100), EMU_STOP_HALT);
    assert_int_equal(t.s.rip, CODE + 0x1001);
    /* The #DF frame carries error code 0 and the faulting RIP. */
    assert_int_equal(*(uint64_t *)(t.m.ram + STACK_TOP - 48), 0);
    assert_int_equal(*(uint64_t *)(t.m.ram + STACK_TOP - 40), CODE + 2);

    /* Without a #DF gate either: shutdown. */
    memset(t.m.ram + IDT + 8 * 16, 0, 16);
    t.s.rip = CODE;
    t.s.gpr[R_ESP] = STACK_TOP;
    t.s.mp_state = MP_RUNNABLE;
    assert_int_equal(emu_run(&t.c, 100), EMU_STOP_SHUTDOWN);
    emu_tm_destroy(&t);
}

static void test_page_faults(void **state)
{
    static const uint8_t load[] = { 0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x50, 0x00 }; /* mov rax,[0x500000] */
    static const uint8_t store[] = { 0xc6, 0x04, 0x25, 0x10, 0x00, 0x30, 0x00, 0x01 }; /* mov byte [0x300010],1 */
    struct emu_tm t;

    guest_init(&t);
    t.c.deliver_exceptions = false;
    put(&t, CODE, load, sizeof(load));
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_PF);
    assert_int_equal(t.c.exc_error, 0);          /* supervisor read, not present */
    assert_int_equal(t.s.cr2, 0x500000);
    assert_int_equal(t.s.rip, CODE);

    put(&t, CODE, store, sizeof(store));
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_PF);
    assert_int_equal(t.c.exc_error, 3);          /* write, protection */
    assert_int_equal(t.s.cr2, 0x300010);
    assert_int_equal(t.m.ram[0x300010], 0);

    /* CR0.WP clear: the supervisor may write read-only pages. */
    t.s.cr0 &= ~X86_CR0_WP;
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    assert_int_equal(t.m.ram[0x300010], 1);
    emu_tm_destroy(&t);
}

/* Find the leaf PTE of va in the test machine's tables. */
static uint64_t *leaf_pte_ptr(struct emu_tm *t, uint64_t va)
{
    gpa_t table = t->s.cr3 & ~0xfffULL;

    for (int level = 4; level > 1; level--)
        table = *emu_tm_pte(t, table, (va >> (12 + 9 * (level - 1))) & 511) & 0x000ffffffffff000ULL;
    return emu_tm_pte(t, table, (va >> 12) & 511);
}

static uint64_t leaf_pte(struct emu_tm *t, uint64_t va)
{
    return *leaf_pte_ptr(t, va);
}

/* Run code at CODE to its HLT. */
static void run_to_hlt(struct emu_tm *t, const void *code, size_t len)
{
    put(t, CODE, code, len);
    t->s.rip = CODE;
    t->s.mp_state = MP_RUNNABLE;
    assert_int_equal(emu_run(&t->c, 100), EMU_STOP_HALT);
}

/* The soft-TLB keeps fill lists of non-global and global entries, so that
 * a flush touches only what was filled.  LOCAL (0x400000) and GLOB
 * (0x1400000, PTE.G) share a TLB slot, so one entry is listed as both.
 * The guest edits its page tables behind the TLB's back, as Linux does
 * before a CR3 write: MOV CR3 must drop the non-global translation even
 * in a slot once filled as global, and clearing CR4.PGE must drop global
 * ones. */
static void test_tlb_flushes(void **state)
{
#define LOCAL 0x400000ULL
#define GLOB 0x1400000ULL
#define LD(reg, va) 0x8b, (uint8_t)(0x04 | ((reg) << 3)), 0x25, (uint8_t)(va), \
                    (uint8_t)((va) >> 8), (uint8_t)((va) >> 16), (uint8_t)((va) >> 24)
    static const uint8_t fill[] = { LD(3, LOCAL), LD(0, GLOB), LD(3, LOCAL), 0xf4 };
    static const uint8_t reload_cr3[] = {
        0x0f, 0x20, 0xd9, 0x0f, 0x22, 0xd9,         /* mov rcx, cr3; mov cr3, rcx */
        LD(3, LOCAL), 0xf4,
    };
    static const uint8_t fill_global[] = {
        0x0f, 0x20, 0xd9, 0x0f, 0x22, 0xd9,         /* mov rcx, cr3; mov cr3, rcx */
        LD(0, GLOB), 0xf4,
    };
    static const uint8_t toggle_pge[] = {
        0x0f, 0x20, 0xe2,                           /* mov rdx, cr4 */
        0x81, 0xe2, 0x7f, 0xff, 0xff, 0xff,         /* and edx, ~PGE */
        0x0f, 0x22, 0xe2,                           /* mov cr4, rdx */
        0x81, 0xca, 0x80, 0x00, 0x00, 0x00,         /* or edx, PGE */
        0x0f, 0x22, 0xe2,                           /* mov cr4, rdx */
        LD(0, GLOB), 0xf4,
    };
    struct emu_tm t;

    guest_init(&t);
    for (unsigned k = 1; k <= 5; k++)
        t.m.ram[0x300000 + k * 0x10000] = (uint8_t)k;
    emu_tm_map(&t, LOCAL, 0x310000, 0x1000, EMU_TM_W);
    emu_tm_map(&t, GLOB, 0x320000, 0x1000, EMU_TM_W | 0x100);

    /* LOCAL, then GLOB (global), then LOCAL again in the same slot. */
    run_to_hlt(&t, fill, sizeof(fill));
    assert_int_equal(t.s.gpr[R_EBX] & 0xff, 1);
    assert_int_equal(t.s.gpr[R_EAX] & 0xff, 2);
    *leaf_pte_ptr(&t, LOCAL) = 0x330000 | EMU_TM_W | EMU_TM_P;
    run_to_hlt(&t, reload_cr3, sizeof(reload_cr3));
    assert_int_equal(t.s.gpr[R_EBX] & 0xff, 3);

    /* After a CR3 write (the slot's LOCAL dropped) GLOB is filled again,
     * so only the global list has it; remapped, then a full flush through
     * CR4.PGE. */
    run_to_hlt(&t, fill_global, sizeof(fill_global));
    assert_int_equal(t.s.gpr[R_EAX] & 0xff, 2);
    *leaf_pte_ptr(&t, GLOB) = 0x340000 | EMU_TM_W | EMU_TM_P | 0x100;
    run_to_hlt(&t, toggle_pge, sizeof(toggle_pge));
    assert_int_equal(t.s.gpr[R_EAX] & 0xff, 4);
    emu_tm_destroy(&t);
#undef LD
#undef GLOB
#undef LOCAL
}

static void test_accessed_dirty(void **state)
{
    static const uint8_t code[] = {
        0x8b, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00,              /* mov eax, [0x200000] */
        0xc7, 0x04, 0x25, 0x00, 0x10, 0x20, 0x00, 1, 0, 0, 0,  /* mov dword [0x201000], 1 */
        0xf4,
    };
    struct emu_tm t;

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    assert_int_equal(leaf_pte(&t, 0x200000) & 0x60, 0);
    assert_int_equal(emu_run(&t.c, 10), EMU_STOP_HALT);
    assert_int_equal(leaf_pte(&t, 0x200000) & 0x60, 0x20);   /* accessed only */
    assert_int_equal(leaf_pte(&t, 0x201000) & 0x60, 0x60);   /* accessed + dirty */
    emu_tm_destroy(&t);
}

static void test_self_modifying_code(void **state)
{
    /* The first instruction rewrites the immediate of the second, which
     * is already decoded in the same block. */
    static const uint8_t code[] = {
        0xc6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x42,   /* mov byte [rip+1], 0x42 */
        0xb8, 0x00, 0x00, 0x00, 0x00,               /* mov eax, 0 */
        0xf4,
    };
    /* Runs a block once, then patches it and jumps back to it. */
    static const uint8_t code2[] = {
        0xe8, 0x09, 0x00, 0x00, 0x00,               /* call f */
        0xc6, 0x05, 0x03, 0x00, 0x00, 0x00, 0x07,   /* mov byte [rip+3], 7  (f's imm) */
        0xeb, 0x06,                                 /* jmp f2 */
        /* f: */ 0xb9, 0x01, 0x00, 0x00, 0x00,      /* mov ecx, 1 */
        0xc3,                                       /* ret */
        /* f2: */ 0xe8, 0xf5, 0xff, 0xff, 0xff,     /* call f */
        0xf4,
    };
    struct emu_tm t;

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    assert_int_equal(emu_run(&t.c, 10), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EAX], 0x42);

    put(&t, CODE, code2, sizeof(code2));
    t.s.rip = CODE;
    t.s.mp_state = MP_RUNNABLE;
    assert_int_equal(emu_run(&t.c, 100), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_ECX], 7);
    emu_tm_destroy(&t);
}

/* A register rotate whose flags the next instruction overwrites runs
 * without computing them, but a run that stops between the two (here a
 * budget of one instruction) must still show the rotate's flags. */
static void test_dead_flags_at_budget_end(void **state)
{
    static const uint8_t code[] = {
        0xc1, 0xc0, 0x01,   /* rol eax, 1 */
        0x01, 0xcb,         /* add ebx, ecx */
        0xf4,
    };
    struct emu_tm t;

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    t.s.gpr[R_EAX] = 0x80000000;
    t.s.gpr[R_EBX] = 1;
    t.s.gpr[R_ECX] = 1;
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    emu_sync_state(&t.c);
    assert_int_equal(t.s.gpr[R_EAX], 1);
    assert_int_equal(t.s.rflags & (X86_RFLAGS_CF | X86_RFLAGS_OF),
                     X86_RFLAGS_CF | X86_RFLAGS_OF);
    assert_int_equal(emu_run(&t.c, 10), EMU_STOP_HALT);
    emu_sync_state(&t.c);
    assert_int_equal(t.s.gpr[R_EBX], 2);
    assert_int_equal(t.s.rflags & (X86_RFLAGS_CF | X86_RFLAGS_OF), 0);
    emu_tm_destroy(&t);
}

/* SUB (or CMP/TEST) + Jcc ending a block run fused as one handler; a
 * budget that stops between the two must run the SUB alone (its flags and
 * RIP visible, the Jcc next), and full runs count both instructions. */
static void test_fused_jcc_at_budget_end(void **state)
{
    static const uint8_t code[] = {
        0x83, 0xe9, 0x01,   /* l: sub ecx, 1 */
        0x75, 0xfb,         /* jnz l */
        0xf4,
    };
    struct emu_tm t;

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    t.s.gpr[R_ECX] = 3;
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    emu_sync_state(&t.c);
    assert_int_equal(t.s.gpr[R_ECX], 2);
    assert_int_equal(t.s.rip, CODE + 3);
    assert_int_equal(t.s.rflags & X86_RFLAGS_ZF, 0);
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);  /* the jnz alone */
    emu_sync_state(&t.c);
    assert_int_equal(t.s.rip, CODE);
    /* sub+jnz fused, then a budget of one: the last sub alone */
    assert_int_equal(emu_run(&t.c, 3), EMU_STOP_BUDGET);
    emu_sync_state(&t.c);
    assert_int_equal(t.s.gpr[R_ECX], 0);
    assert_int_equal(t.s.rip, CODE + 3);
    assert_int_equal(t.s.rflags & X86_RFLAGS_ZF, X86_RFLAGS_ZF);
    assert_int_equal(emu_run(&t.c, 10), EMU_STOP_HALT);
    emu_sync_state(&t.c);
    assert_int_equal(t.s.rip, CODE + sizeof(code));
    emu_tm_destroy(&t);
}

/* A 64-bit Jcc does not end its block: taken, it leaves the block from
 * the middle; not taken, the block goes on, with CMP/TEST/SUB + Jcc pairs
 * fused anywhere in it; a JMP to the same page is followed.  Every budget must stop after exactly that many
 * instructions, in the state single steps reach: registers, RIP and the
 * arithmetic flags (so a stop between a fused pair's halves shows the
 * producer's flags), and icount must count exactly what ran. */
static void test_side_exits_match_single_steps(void **state)
{
    static const uint8_t code[] = {
        0x31, 0xc0,                         /* xor eax, eax */
        0xb9, 0x05, 0x00, 0x00, 0x00,       /* mov ecx, 5 */
        0x01, 0xc8,                         /* l: add eax, ecx */
        0x83, 0xf9, 0x03,                   /* cmp ecx, 3 */
        0x74, 0x02,                         /* je skip (taken once) */
        0x01, 0xc0,                         /* add eax, eax */
        0xf7, 0xc1, 0x01, 0x00, 0x00, 0x00, /* skip: test ecx, 1 */
        0x74, 0x07,                         /* jz even */
        0x83, 0xc3, 0x07,                   /* add ebx, 7 */
        0xeb, 0x02,                         /* jmp even (followed) */
        0x0f, 0x0b,                         /* ud2 (never run) */
        0x83, 0xe9, 0x01,                   /* even: sub ecx, 1 */
        0x75, 0xe3,                         /* jnz l */
        0xf4,                               /* hlt */
    };
    const uint64_t arith = X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF |
                           X86_RFLAGS_SF | X86_RFLAGS_OF;
    struct emu_tm t, ref;
    unsigned total = 0;

    guest_init(&ref);
    put(&ref, CODE, code, sizeof(code));
    /* The reference: one instruction per emu_run, to the HLT. */
    while (emu_run(&ref.c, 1) == EMU_STOP_BUDGET)
        total++;
    emu_sync_state(&ref.c);
    /* eax: 5 -> 10, 14 -> 28, 31 (je taken), 33 -> 66, 67 -> 134 */
    assert_int_equal(ref.s.gpr[R_EAX], 134);
    assert_int_equal(ref.s.gpr[R_EBX], 3 * 7);  /* ecx odd: 5, 3, 1 */
    assert_int_equal(total, 2 + 5 * 7 + 4 + 3 * 2);
    emu_tm_destroy(&ref);

    for (unsigned k = 1; k <= total; k++) {
        guest_init(&ref);
        put(&ref, CODE, code, sizeof(code));
        for (unsigned n = 0; n < k; n++)
            assert_int_equal(emu_run(&ref.c, 1), EMU_STOP_BUDGET);
        emu_sync_state(&ref.c);

        guest_init(&t);
        put(&t, CODE, code, sizeof(code));
        /* Twice: the block cache is built by the first run, the second one
         * runs the fused handlers. */
        for (int pass = 0; pass < 2; pass++) {
            uint64_t icount0 = t.c.icount;

            t.s.rip = CODE;
            t.s.gpr[R_EAX] = t.s.gpr[R_EBX] = t.s.gpr[R_ECX] = 0;
            emu_invalidate(&t.c);
            assert_int_equal(emu_run(&t.c, k), EMU_STOP_BUDGET);
            emu_sync_state(&t.c);
            assert_int_equal(t.c.icount - icount0, k);
            assert_int_equal(t.s.rip, ref.s.rip);
            assert_int_equal(t.s.gpr[R_EAX], ref.s.gpr[R_EAX]);
            assert_int_equal(t.s.gpr[R_EBX], ref.s.gpr[R_EBX]);
            assert_int_equal(t.s.gpr[R_ECX], ref.s.gpr[R_ECX]);
            assert_int_equal(t.s.rflags & arith, ref.s.rflags & arith);
        }
        emu_tm_destroy(&t);
        emu_tm_destroy(&ref);
    }
}

/* Run code at CODE from the given registers to its HLT, either in whole
 * blocks (fused pairs) or one instruction per emu_run (the block's own
 * entries, lazy flags read by the plain Jcc). */
static void run_pair_to_hlt(struct emu_tm *t, const uint8_t *code, size_t len, uint64_t rax,
                        uint64_t rbx, bool single)
{
    put(t, CODE, code, len);
    t->s.gpr[R_EAX] = rax;
    t->s.gpr[R_EBX] = rbx;
    t->s.gpr[R_ECX] = 0;
    t->s.rip = CODE;
    t->s.rflags = X86_RFLAGS_FIXED;
    t->s.mp_state = MP_RUNNABLE;
    emu_invalidate(&t->c);
    if (single) {
        while (emu_run(&t->c, 1) == EMU_STOP_BUDGET)
            ;
    } else {
        assert_int_equal(emu_run(&t->c, 100), EMU_STOP_HALT);
    }
    emu_sync_state(&t->c);
}

/* ADD (and SUB, CMP) + Jcc run fused in a full block: for every condition,
 * form and size and boundary operands, the branch, the result and the
 * flags match the same code run one instruction at a time (the plain
 * handlers, which test_emu_diff compares with the host). */
static void test_fused_pairs_match_single_steps(void **state)
{
    static const uint64_t vals[] = {
        0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000ULL,
        0xffffffffULL, 0x7fffffffffffffffULL, 0x8000000000000000ULL, ~0ULL, 0x123456789abcdefULL,
    };
    static const uint8_t ops[] = { 0x00, 0x28, 0x38 };  /* ADD, SUB, CMP Eb,Gb */
    const uint64_t arith = X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF |
                           X86_RFLAGS_SF | X86_RFLAGS_OF;
    struct emu_tm a, b;

    guest_init(&a);
    guest_init(&b);
    for (unsigned op = 0; op < 3; op++) {
        for (unsigned size = 0; size < 4; size++) {
            for (unsigned form = 0; form < 3; form++) {
                for (unsigned cc = 0; cc < 16; cc++) {
                    uint8_t code[16];
                    size_t n = 0;

                    if (size == 1)
                        code[n++] = 0x66;
                    if (size == 3)
                        code[n++] = 0x48;
                    if (form == 0) {         /* op rax, rbx (EG) */
                        code[n++] = (uint8_t)(ops[op] | (size ? 1 : 0));
                        code[n++] = 0xd8;
                    } else if (form == 1) {  /* op rbx, rax (GE) */
                        code[n++] = (uint8_t)(ops[op] | 2 | (size ? 1 : 0));
                        code[n++] = 0xd8;
                    } else {                 /* op rax, imm8 (EI) */
                        code[n++] = size ? 0x83 : 0x80;
                        code[n++] = (uint8_t)(0xc0 | (ops[op] & 0x38));
                        code[n++] = 0;       /* patched per operand below */
                    }
                    code[n++] = (uint8_t)(0x70 | cc);  /* jcc +2 */
                    code[n++] = 2;
                    code[n++] = 0xb1;                  /* mov cl, 1 (not taken) */
                    code[n++] = 1;
                    code[n++] = 0xf4;                  /* hlt */
                    for (size_t x = 0; x < ARRAY_SIZE(vals); x++) {
                        for (size_t y = 0; y < ARRAY_SIZE(vals); y++) {
                            if (form == 2) {
                                if (y >= 6)
                                    break;
                                code[n - 6] = (uint8_t)vals[y];
                            }
                            run_pair_to_hlt(&a, code, n, vals[x], vals[y], false);
                            run_pair_to_hlt(&b, code, n, vals[x], vals[y], true);
                            assert_int_equal(a.s.gpr[R_ECX], b.s.gpr[R_ECX]);
                            assert_int_equal(a.s.gpr[R_EAX], b.s.gpr[R_EAX]);
                            assert_int_equal(a.s.gpr[R_EBX], b.s.gpr[R_EBX]);
                            assert_int_equal(a.s.rip, b.s.rip);
                            assert_int_equal(a.s.rflags & arith, b.s.rflags & arith);
                        }
                    }
                }
            }
        }
    }
    emu_tm_destroy(&a);
    emu_tm_destroy(&b);
}

/* A block whose side exit branches back to its own entry (a loop whose
 * body takes no other exit) is run again inside the run loop's fast path:
 * every budget must still stop after exactly that many instructions, in
 * the state single steps reach. */
static void test_loop_block_budget(void **state)
{
    static const uint8_t code[] = {
        0xb9, 0x64, 0x00, 0x00, 0x00,       /* mov ecx, 100 */
        0x31, 0xc0,                         /* xor eax, eax */
        0x01, 0xc8,                         /* l: add eax, ecx */
        0x83, 0xf8, 0xff,                   /* cmp eax, -1 */
        0x74, 0x05,                         /* je out (never taken) */
        0x83, 0xe9, 0x01,                   /* sub ecx, 1 */
        0x75, 0xf4,                         /* jnz l */
        0xf4,                               /* out: hlt */
    };
    enum { TOTAL = 2 + 100 * 5 };
    static struct { uint64_t rip, eax, ecx; } ref[TOTAL + 1];
    struct emu_tm t;

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    for (unsigned k = 1; k <= TOTAL; k++) {
        assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
        emu_sync_state(&t.c);
        ref[k].rip = t.s.rip;
        ref[k].eax = t.s.gpr[R_EAX];
        ref[k].ecx = t.s.gpr[R_ECX];
    }
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EAX], 5050);
    emu_tm_destroy(&t);

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    for (unsigned k = 1; k <= TOTAL; k++) {
        uint64_t icount0 = t.c.icount;

        t.s.rip = CODE;
        emu_invalidate(&t.c);
        assert_int_equal(emu_run(&t.c, k), EMU_STOP_BUDGET);
        emu_sync_state(&t.c);
        assert_int_equal(t.c.icount - icount0, k);
        assert_int_equal(t.s.rip, ref[k].rip);
        assert_int_equal(t.s.gpr[R_EAX], ref[k].eax);
        assert_int_equal(t.s.gpr[R_ECX], ref[k].ecx);
    }
    t.s.rip = CODE;
    assert_int_equal(emu_run(&t.c, TOTAL + 1), EMU_STOP_HALT);
    emu_tm_destroy(&t);
}

/* Instructions that cross a page are fetched outside the block cache
 * (fetch_slow): a fetch fault names the first missing byte, and the
 * decoded instruction it keeps for the next execution must follow its
 * bytes when they change. */
static void test_page_crossing_fetch(void **state)
{
    static const uint8_t movabs[] = { 0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8 };  /* mov rax, imm64 */
    static const uint8_t mov_eax[] = { 0xb8, 0x11, 0x22, 0x33, 0x44, 0xf4 };  /* mov eax, imm32 */
    const gpa_t at = 0x101ffd;  /* b8 and two bytes on one page, the rest on the next */
    struct emu_tm t;

    guest_init(&t);
    t.c.deliver_exceptions = false;
    /* 0x301000 is not mapped: the fetch faults on its first byte. */
    put(&t, 0x300ffe, movabs, 2);
    t.s.rip = 0x300ffe;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_PF);
    assert_int_equal(t.s.cr2, 0x301000);
    assert_true(t.c.exc_error & 0x10);  /* instruction fetch */

    put(&t, at, mov_eax, sizeof(mov_eax));
    for (int k = 0; k < 3; k++) {
        t.s.rip = at;
        t.s.gpr[R_EAX] = 0;
        assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
        assert_int_equal(t.s.gpr[R_EAX], 0x44332211);
        assert_int_equal(t.s.rip, at + 5);
    }
    /* The bytes on the second page change: the new immediate counts. */
    t.m.ram[at + 3] = 0x99;
    t.s.rip = at;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    assert_int_equal(t.s.gpr[R_EAX], 0x44992211);
    /* ...and so does a different instruction with the same first byte. */
    t.m.ram[at + 1] = 0x66;
    t.s.rip = at;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    assert_int_equal(t.s.gpr[R_EAX], 0x44992266);
    t.m.ram[at] = 0x90;  /* nop: a one-byte instruction now */
    t.s.rip = at;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    assert_int_equal(t.s.rip, at + 1);
    emu_tm_destroy(&t);
}

/* A chained block is entered without translating its address while the
 * vCPU's TLB has not changed since its last entry there: remapping its
 * page and INVLPG must still send the next call to the new code.  X
 * alternates between two physical pages, four calls through one call
 * site (the third and fourth follow a learned chain). */
static void test_chain_after_remap(void **state)
{
    static const uint8_t ret1[] = { 0xb8, 1, 0, 0, 0, 0xc3 };  /* mov eax, 1; ret */
    static const uint8_t ret2[] = { 0xb8, 2, 0, 0, 0, 0xc3 };
    const uint64_t x = 0x400000;
    uint8_t code[64];
    unsigned n = 0, loop;
    uint32_t pte, v;
    int32_t rel;
    struct emu_tm t;

    guest_init(&t);
    put(&t, 0x310000, ret1, sizeof(ret1));
    put(&t, 0x320000, ret2, sizeof(ret2));
    emu_tm_map(&t, x, 0x310000, 0x1000, 0);
    pte = (uint32_t)((uint8_t *)leaf_pte_ptr(&t, x) - t.m.ram);

    code[n++] = 0xb9; v = 4; memcpy(code + n, &v, 4); n += 4;           /* mov ecx, 4 */
    loop = n;
    code[n++] = 0xe8; rel = (int32_t)(x - (CODE + n + 4));              /* call x */
    memcpy(code + n, &rel, 4); n += 4;
    code[n++] = 0x01; code[n++] = 0xc3;                                 /* add ebx, eax */
    code[n++] = 0x48; code[n++] = 0x81; code[n++] = 0x34; code[n++] = 0x25;
    memcpy(code + n, &pte, 4); n += 4;
    v = 0x310000 ^ 0x320000; memcpy(code + n, &v, 4); n += 4;          /* xor qword [pte], .. */
    code[n++] = 0x0f; code[n++] = 0x01; code[n++] = 0x3c; code[n++] = 0x25;
    v = (uint32_t)x; memcpy(code + n, &v, 4); n += 4;                   /* invlpg [x] */
    code[n++] = 0xff; code[n++] = 0xc9;                                 /* dec ecx */
    code[n++] = 0x75; code[n] = (uint8_t)(loop - (n + 1)); n++;         /* jnz loop */
    code[n++] = 0xf4;
    t.s.gpr[R_EBX] = 0;
    run_to_hlt(&t, code, n);
    assert_int_equal(t.s.gpr[R_EBX], 1 + 2 + 1 + 2);
    emu_tm_destroy(&t);
}

static void test_budget_is_exact(void **state)
{
    static const uint8_t code[] = { 0xff, 0xc0, 0xeb, 0xfc };  /* inc eax; jmp back */
    struct emu_tm t;

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    t.s.gpr[R_EAX] = 0;
    assert_int_equal(emu_run(&t.c, 7), EMU_STOP_BUDGET);
    assert_int_equal(t.s.gpr[R_EAX], 4);
    assert_int_equal(t.s.rip, CODE + 2);
    emu_tm_destroy(&t);
}

static void test_loop_mips(void **state)
{
    static const uint8_t code[] = {
        0xb9, 0x80, 0x84, 0x1e, 0x00,   /* mov ecx, 2000000 */
        0x31, 0xc0,                     /* xor eax, eax */
        0x48, 0x01, 0xc8,               /* 1: add rax, rcx */
        0x48, 0x31, 0xc2,               /* xor rdx, rax */
        0xff, 0xc9,                     /* dec ecx */
        0x75, 0xf6,                     /* jnz 1b */
        0xf4,
    };
    struct emu_tm t;
    struct timespec a, b;
    uint64_t n0;
    double secs;

    guest_init(&t);
    put(&t, CODE, code, sizeof(code));
    n0 = t.c.icount;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(emu_run(&t.c, ~0ULL), EMU_STOP_HALT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_int_equal(t.s.gpr[R_EAX], 2000000ULL * 2000001ULL / 2);
    printf("emu loop: %llu instructions in %.3f s = %.1f MIPS (information only)\n",
           (unsigned long long)(t.c.icount - n0), secs, (double)(t.c.icount - n0) / secs / 1e6);
    emu_tm_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idt_delivery_and_iretq),
        cmocka_unit_test(test_double_and_triple_fault),
        cmocka_unit_test(test_page_faults),
        cmocka_unit_test(test_accessed_dirty),
        cmocka_unit_test(test_tlb_flushes),
        cmocka_unit_test(test_self_modifying_code),
        cmocka_unit_test(test_budget_is_exact),
        cmocka_unit_test(test_dead_flags_at_budget_end),
        cmocka_unit_test(test_fused_jcc_at_budget_end),
        cmocka_unit_test(test_side_exits_match_single_steps),
        cmocka_unit_test(test_loop_block_budget),
        cmocka_unit_test(test_fused_pairs_match_single_steps),
        cmocka_unit_test(test_page_crossing_fetch),
        cmocka_unit_test(test_chain_after_remap),
        cmocka_unit_test(test_loop_mips),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
