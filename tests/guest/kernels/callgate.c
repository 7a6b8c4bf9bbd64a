/* callgate: a far CALL from ring 3 through a 64-bit call gate (GDT 0x40,
 * DPL 3) to a ring-0 routine, and the far RET back.  The routine records
 * what the transfer set up: CS, SS (the null selector with RPL 0), the
 * frame the CPU pushed on the TSS's RSP0 stack (RIP, CS, RSP, SS of the
 * caller) and whether RSP0 was used; after the far RET, ring 3 hands
 * over to ring 0 with SYSCALL, which prints it.
 * The refusals (gate DPL < CPL, JMP to an inner level, 16-bit gates in
 * long mode, not present) are unit-tested (tests/unit/test_emu_run_sys.c). */
#include "rt.h"

#define SEL_GATE 0x43        /* gdt_spare, RPL 3 */
#define SEL_CODE64 0x10

extern uint64_t gdt_spare[2];
extern char gate_target[], after_call[];
volatile uint64_t g_cs, g_ss, g_rsp, g_frame[4];
extern char boot_stack_top[];

__asm__(
    ".text\n"
    ".globl gate_target\n"
    "gate_target:\n"
    "    mov %cs, %rax\n"
    "    mov %rax, g_cs(%rip)\n"
    "    mov %ss, %rax\n"
    "    mov %rax, g_ss(%rip)\n"
    "    mov %rsp, g_rsp(%rip)\n"
    "    mov (%rsp), %rax\n"
    "    mov %rax, g_frame(%rip)\n"
    "    mov 8(%rsp), %rax\n"
    "    mov %rax, g_frame+8(%rip)\n"
    "    mov 16(%rsp), %rax\n"
    "    mov %rax, g_frame+16(%rip)\n"
    "    mov 24(%rsp), %rax\n"
    "    mov %rax, g_frame+24(%rip)\n"
    "    lretq\n");

static void set_gate(unsigned dpl)
{
    uint64_t a = (uint64_t)gate_target;

    gdt_spare[0] = (a & 0xffff) | ((uint64_t)SEL_CODE64 << 16) | (0xcul << 40) |
                   ((uint64_t)dpl << 45) | (1ul << 47) | (((a >> 16) & 0xffff) << 48);
    gdt_spare[1] = a >> 32;
}

static uint64_t u_rsp, u_cs;

/* Ring 3 is done (SYSCALL, as the other ring-3 kernels end): report from
 * ring 0. */
static void on_done(void)
{
    kprintf("in ring 0: CS %lx SS %lx, on the RSP0 stack: %s\n", g_cs, g_ss,
            g_rsp == (uint64_t)boot_stack_top - 32 ? "yes" : "no");
    kprintf("pushed: RIP %s, CS %lx, RSP %s, SS %lx\n",
            g_frame[0] == (uint64_t)after_call ? "after the call" : "wrong", g_frame[1],
            g_frame[2] == u_rsp ? "the caller's" : "wrong", g_frame[3]);
    kprintf("back in ring 3: CS %lx\n", u_cs);
    test_pass();
}

static void user(uint64_t arg)
{
    struct { uint32_t off; uint16_t sel; } __attribute__((packed)) far = { 0, SEL_GATE };
    uint64_t rsp, cs;

    (void)arg;
    __asm__ volatile("mov %%rsp, %0\n"
                     "lcall *%2\n"
                     ".globl after_call\n"
                     "after_call:\n"
                     "mov %%cs, %1\n"
                     : "=&r"(rsp), "=r"(cs) : "m"(far) : "rax", "memory");
    u_rsp = rsp;
    u_cs = cs;
    __asm__ volatile("syscall" ::: "rcx", "r11", "memory");
    for (;;)
        ;
}

void test_main(void)
{
    idt_init();
    set_gate(3);
    syscall_init(on_done);
    enter_user(user, 0);
}
