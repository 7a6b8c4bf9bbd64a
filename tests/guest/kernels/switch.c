/* switch: a self-checking workload for snapshots and live accelerator
 * switches.  Most time is spent in ring 3 (native speed under PVM).
 *
 * Each round runs a xorshift64 generator twice in lockstep, once in general
 * registers and once in SSE registers (xmm8/xmm9, kept live across the whole
 * run), and folds every value into a 64 KiB table in RAM.  The end of a
 * round compares the two generators and the table's checksum with a running
 * sum: a register, FPU/SSE or memory value lost by a switch or a snapshot
 * shows up as "FAIL".  A periodic LAPIC timer runs throughout; ring 3 runs
 * with IF=0 (PVM refuses STI there, and after SYSCALL too), so each round
 * checks the timer's registers and the end checks that it still counts
 * and that its interrupt is pending in the IRR.
 *
 * Prints "switch: round N ok" (N counts the lines) when every=CYCLES of TSC
 * time (default 1e8) have passed since the last line, at the end of a
 * round of iters=N (default 65536) steps.  rounds=N (default 4) lines end
 * with PASS; rounds=0 runs until the host stops it.
 *
 * ws=MIB (default 0) adds a working set of that many MiB at 64 MiB
 * physical, filled with non-zero words at start and then kept dirty: each
 * step also adds its value to the first word of a pseudo-random page of it,
 * and a round checks those words' sum.  It gives live migration something
 * to copy and a steady dirty rate (bench/migration.py).
 *
 * virtio=1 (with -device virtio-rng-pci): ring 0 drives the device's queue
 * at every progress line, so its transport state (BARs, features, queue
 * layout and indexes, ISR) must survive switches and snapshots: each line
 * takes 32 random bytes, checks the used index moved by exactly one (a
 * request lost or answered twice fails) and the INTx status, and prints
 * "switch: virtio N ok". */
#include "virtio.h"

#define VEC_TIMER 0x40
#define LVT_PERIODIC (1u << 17)
#define LAPIC_DIV_16 0x3
#define TIMER_10MS 625000
#define TABLE_WORDS 8192
#define LAPIC_IRR_TIMER (0x200 + (VEC_TIMER / 32) * 0x10)

static uint64_t rounds = 4, iters = 1u << 16;
/* TSC cycles between progress lines (about 40 ms on a 2.5 GHz host). */
static uint64_t every = 100000000;
static volatile uint64_t ticks;
static uint64_t table[TABLE_WORDS];

#define WS_BASE (64ull << 20)
#define PAGE_WORDS 512
static uint64_t ws_mib, ws_pages;

static void on_timer(void)
{
    ticks++;
    lapic_eoi();
}

/* Ring 3 does no port I/O: PVM hides RFLAGS.IOPL from KVM_GET_REGS and
 * emu does not consult the TSS I/O bitmap, so a guest that relies on either
 * would not survive kvm -> emu.  Output goes through SYSCALL instead: rax
 * selects the service, rdi/rsi/rdx/r10 are its arguments. */
enum { SYS_ROUND = 1, SYS_TIMER_OK, SYS_FAIL, SYS_DONE, SYS_WS_READY };

/* ---- virtio-rng-pci, driven from ring 0 ---- */

static uint64_t use_virtio;
static struct virtio_dev vdev;
static struct virtq vq;
static uint8_t vq_buf[32] __attribute__((aligned(64)));

static void virtio_setup(void)
{
    unsigned slot = virtio_pci_find(VIRTIO_ID_RNG);

    if (!slot)
        test_fail("virtio=1: no virtio-rng-pci on bus 0");
    virtio_pci_map(&vdev, slot);
    if (!vdev.common || !vdev.notify || !vdev.isr)
        test_fail("virtio=1: missing capabilities");
    virtio_negotiate(&vdev);
    virtq_setup(&vdev, &vq, 0, VIRTIO_NO_VECTOR);
    virtio_driver_ok(&vdev);
    kprintf("switch: virtio-rng-pci in slot %u ready\n", slot);
}

static inline uint64_t rdtsc_now(void)
{
    uint32_t lo, hi;

    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return lo | (uint64_t)hi << 32;
}

/* One request.  Without ioeventfd vmon answers inside the notify write;
 * with it (kvm) the main loop does, a moment later: wait up to ~1e10 TSC
 * cycles for the used index to move. */
static void virtio_round(uint64_t line)
{
    uint16_t idx = vq.avail.idx, used;
    uint32_t len = 0;
    int nonzero = 0;
    uint64_t t0;

    for (unsigned i = 0; i < sizeof(vq_buf); i++)
        vq_buf[i] = 0;
    vq.desc[idx % VIRTQ_SIZE] = (struct virtq_desc){ (uint64_t)(uintptr_t)vq_buf, sizeof(vq_buf),
                                                    VIRTQ_DESC_WRITE, 0 };
    virtq_submit(&vq, (uint16_t)(idx % VIRTQ_SIZE));
    t0 = rdtsc_now();
    used = vq.used.idx;
    while (used == vq.used_seen && rdtsc_now() - t0 < 10000000000ull) {
        __asm__ volatile("pause" ::: "memory");
        used = vq.used.idx;
    }
    if (used != (uint16_t)(vq.used_seen + 1))
        test_fail("round %lu: virtio used index %u, expected %u", line, used,
                  (uint16_t)(vq.used_seen + 1));
    virtq_take_used(&vq, &len);
    for (unsigned i = 0; i < sizeof(vq_buf); i++)
        nonzero |= vq_buf[i];
    if (len != sizeof(vq_buf) || !nonzero)
        test_fail("round %lu: virtio request: len %u, %s", line, len,
                  nonzero ? "random" : "zeros");
    /* INTx mode: the used buffer notification shows in the ISR (and reading
     * it drops the line); the device must still be DRIVER_OK. */
    {
        uint8_t isr_bits = rd8(vdev.isr);

        /* The device publishes the used index before it raises the ISR. */
        t0 = rdtsc_now();
        while (!(isr_bits & 1) && rdtsc_now() - t0 < 10000000000ull)
            isr_bits = rd8(vdev.isr);
        if (!(isr_bits & 1) || virtio_status(&vdev) != VIRTIO_ST_READY)
            test_fail("round %lu: virtio ISR or status lost", line);
    }
    kprintf("switch: virtio %lu ok\n", line);
}

uint64_t switch_syscall(uint64_t nr, uint64_t a, uint64_t b, uint64_t c, uint64_t d);
uint64_t switch_syscall(uint64_t nr, uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    switch (nr) {
    case SYS_ROUND:
        if (use_virtio)
            virtio_round(a);
        kprintf("switch: round %lu ok\n", a);
        return 0;
    case SYS_TIMER_OK:
        kprintf("switch: timer ok\n");
        return 0;
    case SYS_FAIL:
        kprintf("FAIL: round %lu: %s: %lx != %lx\n", a, (const char *)b, c, d);
        debug_exit(1);
    case SYS_DONE:
        test_pass();
    case SYS_WS_READY:
        kprintf("switch: working set ready\n");
        return 0;
    }
    return (uint64_t)-1;
}

/* SYSCALL lands here at CPL0 on the user stack with IF masked. */
__asm__(".text\n"
        ".globl switch_syscall_entry\n"
        "switch_syscall_entry:\n"
        "    push %rcx\n"
        "    push %r11\n"
        "    push %rbx\n"
        "    mov %rsp, %rbx\n"
        "    and $-16, %rsp\n"
        "    mov %rdx, %rcx\n"      /* c */
        "    mov %rsi, %rdx\n"      /* b */
        "    mov %rdi, %rsi\n"      /* a */
        "    mov %rax, %rdi\n"      /* nr */
        "    mov %r10, %r8\n"       /* d */
        "    call switch_syscall\n"
        "    mov %rbx, %rsp\n"
        "    pop %rbx\n"
        "    pop %r11\n"
        "    pop %rcx\n"
        /* Back by IRETQ: PVM's supervisor emulation faults on SYSRETQ. */
        "    mov %rsp, %r9\n"
        "    pushq $0x23\n"
        "    push %r9\n"
        "    push %r11\n"
        "    pushq $0x2b\n"
        "    push %rcx\n"
        "    iretq\n");
void switch_syscall_entry(void);

static uint64_t sys(uint64_t nr, uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    register uint64_t r10 __asm__("r10") = d;

    __asm__ volatile("syscall"
                     : "+a"(nr), "+D"(a), "+S"(b), "+d"(c), "+r"(r10)
                     :
                     : "rcx", "r8", "r9", "r11", "memory");
    return nr;
}

static void wrmsr64(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline uint64_t rdtsc64(void)
{
    uint32_t lo, hi;

    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return lo | (uint64_t)hi << 32;
}

static uint64_t xs(uint64_t x)
{
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

/* One xorshift step on xmm8 (state) with xmm9 as scratch, same as xs().
 * -mgeneral-regs-only: the compiler never touches xmm, so no clobbers. */
#define XMM_STEP \
    "movdqa %%xmm8, %%xmm9\n\tpsllq $13, %%xmm9\n\tpxor %%xmm9, %%xmm8\n\t" \
    "movdqa %%xmm8, %%xmm9\n\tpsrlq $7, %%xmm9\n\tpxor %%xmm9, %%xmm8\n\t"  \
    "movdqa %%xmm8, %%xmm9\n\tpsllq $17, %%xmm9\n\tpxor %%xmm9, %%xmm8\n\t"

static NORETURN void fail(uint64_t round, const char *what, uint64_t a, uint64_t b)
{
    sys(SYS_FAIL, round, (uint64_t)what, a, b);
    for (;;)
        ;
}

static NORETURN void workload(uint64_t seed)
{
    uint64_t x = seed, sum = 0, ws_sum = 0, round = 0, line = 0, last = rdtsc64();
    uint64_t *ws = (uint64_t *)WS_BASE;

    /* Every word non-zero, so no page of the working set is skipped as a
     * zero page; the first word of each page starts at 1 and is summed. */
    for (uint64_t i = 0; i < ws_pages * PAGE_WORDS; i++)
        ws[i] = i % PAGE_WORDS ? ~i : 1;
    ws_sum = ws_pages;
    if (ws_pages)
        sys(SYS_WS_READY, 0, 0, 0, 0);

    __asm__ volatile("movq %0, %%xmm8" :: "r"(x));
    for (;;) {
        uint64_t v, check = 0;

        round++;
        for (uint64_t i = 0; i < iters; i++) {
            x = xs(x);
            __asm__ volatile(XMM_STEP ::: "memory");
            table[x % TABLE_WORDS] += x;
            sum += x;
            if (ws_pages) {
                ws[(x >> 20) % ws_pages * PAGE_WORDS] += x;
                ws_sum += x;
            }
        }
        __asm__ volatile("movq %%xmm8, %0" : "=r"(v));
        if (v != x)
            fail(round, "sse state", v, x);
        for (unsigned i = 0; i < TABLE_WORDS; i++)
            check += table[i];
        if (check != sum)
            fail(round, "memory", check, sum);
        check = 0;
        for (uint64_t p = 0; p < ws_pages; p++)
            check += ws[p * PAGE_WORDS];
        if (check != ws_sum)
            fail(round, "working set", check, ws_sum);
        if (lapic_read(LAPIC_LVT_TIMER) != (VEC_TIMER | LVT_PERIODIC))
            fail(round, "lapic lvt timer", lapic_read(LAPIC_LVT_TIMER), VEC_TIMER | LVT_PERIODIC);
        if (lapic_read(LAPIC_TIMER_INIT) != TIMER_10MS)
            fail(round, "lapic initial count", lapic_read(LAPIC_TIMER_INIT), TIMER_10MS);
        /* Lines by time, not by round: under PVM ring 0 (where printing
         * happens) is emulated, and a vCPU stopped there cannot move to emu
         * (docs/migration.md), so it should spend little time there. */
        if (rdtsc64() - last < every)
            continue;
        last = rdtsc64();
        sys(SYS_ROUND, ++line, 0, 0, 0);
        if (rounds && line >= rounds)
            break;
    }
    /* The timer still counts, and its interrupt is pending in the IRR. */
    uint32_t c0 = lapic_read(LAPIC_TIMER_CUR), c1 = c0;

    for (uint64_t spin = 0; c1 == c0 && spin < (1u << 24); spin++)
        c1 = lapic_read(LAPIC_TIMER_CUR);
    if (c1 == c0)
        fail(round, "lapic timer stopped", c0, c1);
    if (!(lapic_read(LAPIC_IRR_TIMER) & (1u << (VEC_TIMER % 32))))
        fail(round, "timer interrupt not pending", lapic_read(LAPIC_IRR_TIMER), 0);
    sys(SYS_TIMER_OK, 0, 0, 0, 0);
    sys(SYS_DONE, 0, 0, 0, 0);
    for (;;)
        ;
}

void test_main(void)
{
    uint64_t cr4;

    cmdline_get_u64("rounds", &rounds);
    cmdline_get_u64("iters", &iters);
    cmdline_get_u64("every", &every);
    cmdline_get_u64("ws", &ws_mib);
    /* The identity map covers 4 GiB; the working set must also be RAM. */
    if (ws_mib && (ws_mib > 4000 || WS_BASE + (ws_mib << 20) > boot_info.usable_bytes + (1u << 20)))
        test_fail("switch: ws=%lu MiB does not fit above 64 MiB in RAM", ws_mib);
    ws_pages = ws_mib << 8;
    cmdline_get_u64("virtio", &use_virtio);
    /* SSE in ring 3: CR4.OSFXSR and OSXMMEXCPT. */
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" :: "r"(cr4 | 0x600));
    kprintf("switch: %lu rounds of %lu\n", rounds, iters);
    if (ws_mib)
        kprintf("switch: working set %lu MiB\n", ws_mib);
    if (use_virtio)
        virtio_setup();
    idt_set_handler(VEC_TIMER, on_timer);
    lapic_enable();
    lapic_write(LAPIC_TIMER_DIV, LAPIC_DIV_16);
    lapic_write(LAPIC_LVT_TIMER, VEC_TIMER | LVT_PERIODIC);
    lapic_write(LAPIC_TIMER_INIT, TIMER_10MS);
    /* SYSCALL: kernel CS 0x10 (STAR[47:32]), IF masked on entry. */
    syscall_init(NULL);
    wrmsr64(0xc0000081, 0x10ull << 32);
    wrmsr64(0xc0000082, (uint64_t)switch_syscall_entry);
    enter_user(workload, 0x9e3779b97f4a7c15ull);
}
