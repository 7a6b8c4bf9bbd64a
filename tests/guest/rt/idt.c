/* IDT, exception reporting, interrupt dispatch, TSS and the ring-3 entry. */
#include "rt.h"

#define SEL_CODE64 0x10
#define SEL_TSS 0x30

struct idt_gate {
    uint16_t off_lo, sel;
    uint8_t ist, type;
    uint16_t off_mid;
    uint32_t off_hi, reserved;
} __attribute__((packed));

struct exc_frame {
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1, ist[7], reserved2;
    uint16_t reserved3, iopb;
    /* I/O permission bitmap: all ports allowed, plus the terminating byte.
     * IOPL=3 already allows port I/O; the bitmap is for hosts that only
     * honour the bitmap. */
    uint8_t iomap[8192 + 1];
} __attribute__((packed));

extern char exc_stubs[], irq_stubs[];
extern uint64_t tss_desc[2];
extern char boot_stack_top[];
NORETURN void enter_user_asm(void (*fn)(uint64_t), uint64_t arg, uint64_t rsp);
void exception_handler(struct exc_frame *f);
void irq_dispatch(uint64_t vector);

static struct idt_gate idt[256] __attribute__((aligned(16)));
static irq_handler_t handlers[256];
static struct tss64 tss __attribute__((aligned(16)));
static uint8_t user_stack[16384] __attribute__((aligned(16)));

static void set_gate(unsigned v, uint64_t addr)
{
    idt[v].off_lo = (uint16_t)addr;
    idt[v].sel = SEL_CODE64;
    idt[v].ist = 0;
    idt[v].type = 0x8e;     /* present, DPL 0, interrupt gate */
    idt[v].off_mid = (uint16_t)(addr >> 16);
    idt[v].off_hi = (uint32_t)(addr >> 32);
}

static void idt_load(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) r = {
        sizeof(idt) - 1, (uint64_t)idt };
    __asm__ volatile("lidt %0" :: "m"(r));
}

void idt_init(void)
{
    /* Only the exception gates up front: 256 gates at CPL0 would cost a
     * noticeable time where supervisor code is emulated. */
    for (unsigned v = 0; v < 32; v++)
        set_gate(v, (uint64_t)exc_stubs + 16 * v);
    idt_load();
}

/* Loads the IDT on an AP (the table itself is shared). */
void idt_load_ap(void);
void idt_load_ap(void)
{
    idt_load();
}

void idt_set_handler(unsigned vector, irq_handler_t h)
{
    if (vector < 32 || vector > 255)
        return;
    handlers[vector] = h;
    set_gate(vector, (uint64_t)irq_stubs + 16 * (vector - 32));
}

void exception_handler(struct exc_frame *f)
{
    test_fail("exception %lu (error %lx) at rip %lx", f->vector, f->error, f->rip);
}

void irq_dispatch(uint64_t vector)
{
    if (vector < 256 && handlers[vector]) {
        handlers[vector]();
        return;
    }
    test_fail("unexpected interrupt vector %lu", vector);
}

static void tss_load(void)
{
    uint64_t base = (uint64_t)&tss;
    uint64_t limit = sizeof(tss) - 1;
    tss.rsp[0] = (uint64_t)boot_stack_top;
    tss.iopb = __builtin_offsetof(struct tss64, iomap);
    tss.iomap[8192] = 0xff;
    tss_desc[0] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
                  (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    tss_desc[1] = base >> 32;
    __asm__ volatile("ltr %w0" :: "r"(SEL_TSS));
}

irq_handler_t syscall_handler;
extern char syscall_entry[];

static void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return lo | (uint64_t)hi << 32;
}

void syscall_init(irq_handler_t h)
{
    syscall_handler = h;
    wrmsr(0xc0000080, rdmsr(0xc0000080) | 1);       /* EFER.SCE */
    wrmsr(0xc0000081, (uint64_t)SEL_CODE64 << 32);  /* STAR: kernel CS/SS */
    wrmsr(0xc0000082, (uint64_t)syscall_entry);     /* LSTAR */
    wrmsr(0xc0000084, 0x200);                       /* FMASK: IF off */
}

NORETURN void enter_user(void (*fn)(uint64_t), uint64_t arg)
{
    tss_load();
    /* As if called: the ABI expects rsp = 8 mod 16 at function entry. */
    enter_user_asm(fn, arg, (uint64_t)(user_stack + sizeof(user_stack) - 8));
}
