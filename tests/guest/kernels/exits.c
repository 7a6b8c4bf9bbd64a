/* exits: the exit-cost benchmark's guest.  Does count=N (default 1000)
 * accesses that each leave the guest, then exits through debug-exit; the
 * host measures, the guest only counts.  mode= picks the access:
 *   user-pio   OUT to an unused port from ring 3 (default)
 *   user-mmio  a store to unassigned MMIO from ring 3
 *   pio        OUT to an unused port from ring 0
 * Ring 3 matters where guest supervisor code is emulated (PVM): user mode
 * runs natively there. */
#include "rt.h"

#define EXIT_PORT 0x0900
#define EXIT_MMIO 0xd0000000ULL

enum { MODE_USER_PIO, MODE_USER_MMIO, MODE_PIO };
static const char *const mode_names[] = { "user-pio", "user-mmio", "pio" };

static uint64_t count = 1000;
static unsigned mode = MODE_USER_PIO;

static void NORETURN run_loop(uint64_t n)
{
    if (mode == MODE_USER_MMIO) {
        for (uint64_t i = 0; i < n; i++)
            mmio_write32(EXIT_MMIO, 0);
    } else {
        for (uint64_t i = 0; i < n; i++)
            __asm__ volatile("outb %%al, %0" :: "Nd"(EXIT_PORT), "a"(0));
    }
    /* Back to ring 0 to report: user-mode port I/O may be refused. */
    __asm__ volatile("syscall" ::: "rcx", "r11", "memory");
    for (;;)
        ;
}

static void on_done(void)
{
    kprintf("exits: done\n");
    test_pass();
}

static unsigned parse_mode(void)
{
    const char *s = boot_info.cmdline;
    while (*s) {
        while (*s == ' ')
            s++;
        if (!strncmp(s, "mode=", 5)) {
            s += 5;
            for (unsigned m = 0; m < ARRAY_SIZE(mode_names); m++) {
                size_t l = strlen(mode_names[m]);
                if (!strncmp(s, mode_names[m], l) && (s[l] == ' ' || !s[l]))
                    return m;
            }
            test_fail("exits: unknown mode");
        }
        while (*s && *s != ' ')
            s++;
    }
    return MODE_USER_PIO;
}

void test_main(void)
{
    cmdline_get_u64("count", &count);
    mode = parse_mode();
    kprintf("exits: %lu accesses, mode %s\n", count, mode_names[mode]);
    syscall_init(on_done);
    if (mode == MODE_PIO)
        run_loop(count);
    enter_user((void (*)(uint64_t))run_loop, count);
}
