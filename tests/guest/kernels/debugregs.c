/* debugregs: the debug registers as a kernel uses them, printed so that
 * runs under different accelerators can be compared line by line.
 *
 * An instruction breakpoint (DR0) on a function called twice: a #DB fault
 * each time at its first instruction, pushed RF clear, DR6.B0; the
 * handler sets RF in the image so the instruction then runs.  Single-step
 * (TF) over the five instructions after a POPF that sets it, with DR6.BS;
 * general detect (DR7.GD): MOV from DR7 is a #DB fault with DR6.BD and GD
 * clear in the handler.  Data breakpoints are left to the unit tests
 * (tests/unit/test_emu_run_sys.c): this host's /dev/kvm (PVM) does not
 * deliver them to guest kernel code. */
#include "rt.h"

#define SEL_CODE64 0x10
#define DR7_L(n) (1ul << (2 * (n)))
#define DR7_GD (1ul << 13)
#define RF (1ul << 16)

/* Written by the #DB handler (db_entry). */
volatile uint64_t db_count, db_dr6, db_rip, db_rflags, db_dr7, db_skip;

void bp_target(void);
extern char db_entry[], gd_insn[];

__asm__(
    ".text\n"
    ".globl bp_target\n"
    "bp_target:\n"
    "    nop\n"
    "    ret\n"
    /* The #DB handler: frame RIP, CS, RFLAGS, RSP, SS (no error code). */
    ".globl db_entry\n"
    "db_entry:\n"
    "    push %rax\n"
    "    mov %dr6, %rax\n"
    "    mov %rax, db_dr6(%rip)\n"
    "    mov %dr7, %rax\n"
    "    mov %rax, db_dr7(%rip)\n"
    "    mov 8(%rsp), %rax\n"
    "    mov %rax, db_rip(%rip)\n"
    "    mov 24(%rsp), %rax\n"
    "    mov %rax, db_rflags(%rip)\n"
    "    incq db_count(%rip)\n"
    "    orq $0x10000, 24(%rsp)\n"
    "    mov db_skip(%rip), %rax\n"
    "    add %rax, 8(%rsp)\n"
    "    movq $0, db_skip(%rip)\n"
    "    xor %eax, %eax\n"
    "    mov %rax, %dr6\n"
    "    pop %rax\n"
    "    iretq\n");

static void set_db_gate(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) r;
    uint64_t a = (uint64_t)db_entry;
    uint64_t *g;

    __asm__ volatile("sidt %0" : "=m"(r));
    g = (uint64_t *)(r.base + 16 * 1);
    g[0] = (a & 0xffff) | ((uint64_t)SEL_CODE64 << 16) | (0x8eull << 40) |
           ((a >> 16) & 0xffff) << 48;
    g[1] = a >> 32;
}

static void set_dr(unsigned n, uint64_t v)
{
    switch (n) {
    case 0: __asm__ volatile("mov %0, %%dr0" :: "r"(v)); break;
    case 1: __asm__ volatile("mov %0, %%dr1" :: "r"(v)); break;
    case 2: __asm__ volatile("mov %0, %%dr2" :: "r"(v)); break;
    case 6: __asm__ volatile("mov %0, %%dr6" :: "r"(v)); break;
    default: __asm__ volatile("mov %0, %%dr7" :: "r"(v)); break;
    }
}

/* The pushed RF is printed for instruction breakpoints only: for the
 * general-detect fault the SDM's rule (RF = 1 for every fault but an
 * instruction breakpoint), which emu follows, and KVM's injection (#DB
 * as a trap, RF = 0) differ. */
static void report(const char *what, const char *where_name, uint64_t where, bool rf)
{
    kprintf("%s: #DB %lu, DR6 B0-3 %lx BD %lu BS %lu, %s %s", what, db_count, db_dr6 & 0xf,
            (db_dr6 >> 13) & 1, (db_dr6 >> 14) & 1, db_rip == where ? "at" : "NOT at",
            where_name);
    if (rf)
        kprintf(", pushed RF %lu", (db_rflags & RF) >> 16);
    kprintf("\n");
    db_count = 0;
    db_dr6 = db_rip = db_rflags = 0;
}

static void test_exec(void)
{
    set_dr(0, (uint64_t)bp_target);
    set_dr(7, DR7_L(0));
    bp_target();
    kprintf("exec: first call returned\n");
    bp_target();
    set_dr(7, 0);
    report("exec (2 calls)", "bp_target", (uint64_t)bp_target, true);
}

static void test_single_step(void)
{
    /* pushf; or TF; popf: the trap comes after the instruction that
     * follows the POPF, then after each one until TF is cleared. */
    __asm__ volatile("pushfq\n"
                     "orq $0x100, (%%rsp)\n"
                     "popfq\n"
                     "nop\n"
                     "nop\n"
                     "pushfq\n"
                     "andq $~0x100, (%%rsp)\n"
                     "popfq\n" ::: "memory", "cc");
    kprintf("single-step: #DB %lu, DR6 BS %lu\n", db_count, (db_dr6 >> 14) & 1);
    db_count = 0;
    db_dr6 = 0;
}

static void test_general_detect(void)
{
    uint64_t v;

    db_skip = 3;    /* the handler skips the 3-byte MOV from DR7 */
    set_dr(7, DR7_GD);
    __asm__ volatile(".globl gd_insn\n"
                     "gd_insn: mov %%dr7, %0\n" : "=a"(v));
    kprintf("general detect: DR7.GD in the handler %lu\n", (db_dr7 >> 13) & 1);
    report("general detect", "the MOV", (uint64_t)gd_insn, false);
    set_dr(7, 0);
}

void test_main(void)
{
    idt_init();
    set_db_gate();
    set_dr(6, 0);
    test_exec();
    test_single_step();
    test_general_detect();
}
