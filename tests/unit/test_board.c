/* The PC board: devices from the table, -device drivers and their option
 * errors, and the small devices reached through it: isa-debug-exit, the
 * ACPI PM block (S5, PM timer), port 0x92, the i8042, board_reset. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "config/config.h"
#include "hw/board.h"
#include "hw/pm.h"
#include "machine/machine.h"
#include "util/main_loop.h"

static struct vm_config cfg;
static int irq_level[32];

static void fake_set_irq(struct machine *m, unsigned gsi, int level)
{
    if (gsi < 32)
        irq_level[gsi] = level;
}

static const struct accel_ops fake_accel = { .name = "test", .set_irq = fake_set_irq };

static const struct accel_ops *board_accel;

static struct machine *board(const char *const *devices, enum serial_backend serial, int *ret)
{
    struct machine *m = calloc(1, sizeof(*m));

    memset(&cfg, 0, sizeof(cfg));
    cfg.ram_size = 32 * MiB;
    cfg.smp = 1;
    cfg.serial = serial;
    cfg.serial_path = "/dev/null";
    for (; devices && *devices; devices++)
        cfg.devices[cfg.nr_devices++] = *devices;
    assert_int_equal(machine_init(m, &cfg), 0);
    m->accel = board_accel;
    *ret = board_init(m);
    m->accel = NULL;
    return m;
}

static void destroy(struct machine *m)
{
    m->accel = NULL;
    machine_destroy(m);
    free(m);
}

static void outb(struct machine *m, uint16_t port, uint8_t v)
{
    machine_pio(m, port, &v, 1, true);
}

static uint8_t inb(struct machine *m, uint16_t port)
{
    uint8_t v = 0;

    machine_pio(m, port, &v, 1, false);
    return v;
}

static uint32_t inl(struct machine *m, uint16_t port)
{
    uint32_t v = 0;

    machine_pio(m, port, &v, 4, false);
    return v;
}

static bool claimed(struct machine *m, uint16_t port)
{
    return m->pio_map[port] != 0;
}

static void test_default_board(void **st)
{
    int ret;
    struct machine *m = board(NULL, SERIAL_NONE, &ret);

    assert_int_equal(ret, 0);
    static const uint16_t ports[] = { 0x60, 0x64, 0x70, 0x71, 0x80, 0x92, 0x510, 0x511,
                                      PM1A_EVT_BLK, PM1A_CNT_BLK, PM_TMR_BLK, 0xcf8, 0xcf9,
                                      0xcfc, 0xcff };
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
        assert_true(claimed(m, ports[i]));
    assert_false(claimed(m, 0x3f8));     /* -serial none: no UART at all */
    assert_false(claimed(m, 0x501));     /* no debug-exit unless asked */
    /* No accelerator irqchip: vmon's PIC, PIT and port B are on the board. */
    assert_true(claimed(m, 0x20) && claimed(m, 0xa0) && claimed(m, 0x40) && claimed(m, 0x61));
    destroy(m);

    /* KVM brings its own: the ports stay free for it. */
    static const struct accel_ops kvm = { .name = "kvm" };
    board_accel = &kvm;
    m = board(NULL, SERIAL_NONE, &ret);
    board_accel = NULL;
    assert_int_equal(ret, 0);
    assert_false(claimed(m, 0x20) || claimed(m, 0x40) || claimed(m, 0x61));
    assert_true(claimed(m, 0x70));
    destroy(m);

    m = board(NULL, SERIAL_FILE, &ret);
    assert_int_equal(ret, 0);
    assert_true(claimed(m, 0x3f8) && claimed(m, 0x3ff));
    destroy(m);
}

static void test_debug_exit(void **st)
{
    static const char *const devs[] = { "isa-debug-exit,iobase=0xf4,iosize=0x04", NULL };
    int ret;
    struct machine *m = board(devs, SERIAL_NONE, &ret);

    assert_int_equal(ret, 0);
    assert_true(claimed(m, 0xf4) && claimed(m, 0xf7));
    assert_false(claimed(m, 0xf8));
    assert_int_equal(inb(m, 0xf4), 0xff);
    outb(m, 0xf4, 0x10);
    assert_int_equal(atomic_load(&m->shutdown_requested), 1);
    assert_int_equal(m->exit_status, 0x21);
    destroy(m);

    static const char *const defaults[] = { "isa-debug-exit,id=dbg0", NULL };
    m = board(defaults, SERIAL_NONE, &ret);
    assert_int_equal(ret, 0);
    assert_true(claimed(m, 0x501) && claimed(m, 0x502));
    uint32_t v = 0x7f;
    machine_pio(m, 0x501, &v, 4, true);
    assert_int_equal(m->exit_status, 0xff);
    destroy(m);
}

static void test_device_errors(void **st)
{
    static const char *const bad[][2] = {
        { "no-such-device,x=1", NULL },
        { "isa-debug-exit,iobase=zzz", NULL },
        { "isa-debug-exit,bogus=1", NULL },
        { "isa-debug-exit,iobase=0xffff,iosize=2", NULL },
        { "isa-debug-exit,iosize=0", NULL },
        { "isa-debug-exit,iobase=0x70", NULL },      /* the RTC's port */
        { "isa-debug-exit,iobase=0x1,iobase=0x2", NULL },
        { ",iobase=1", NULL },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int ret;
        struct machine *m = board(bad[i], SERIAL_NONE, &ret);
        assert_true(ret < 0);
        destroy(m);
    }
}

static void test_pm_s5_and_timer(void **st)
{
    int ret;
    struct machine *m = board(NULL, SERIAL_NONE, &ret);
    uint16_t w;
    uint32_t t0, t1;

    assert_int_equal(ret, 0);
    w = 0;
    machine_pio(m, PM1A_CNT_BLK, &w, 2, false);
    assert_true(w & 1);                                  /* SCI_EN */
    t0 = inl(m, PM_TMR_BLK);
    usleep(20000);
    t1 = inl(m, PM_TMR_BLK);
    assert_true(t0 <= 0xffffff && t1 <= 0xffffff);
    uint32_t delta = (t1 - t0) & 0xffffff;
    assert_true(delta > 20000 * 3.579545 * 0.9 && delta < 20000 * 3.579545 * 5);
    /* Another sleep type does nothing. */
    w = (5 << 10) | (1 << 13);
    machine_pio(m, PM1A_CNT_BLK, &w, 2, true);
    assert_int_equal(atomic_load(&m->shutdown_requested), 0);
    /* Status is write-one-to-clear; enables keep only defined bits. */
    w = 0xffff;
    machine_pio(m, PM1A_EVT_BLK + 2, &w, 2, true);
    machine_pio(m, PM1A_EVT_BLK + 2, &w, 2, false);
    assert_int_equal(w, 0x0721);
    /* The power button sets PWRBTN_STS; the SCI follows the enable. */
    m->accel = &fake_accel;
    w = 0x0100;
    machine_pio(m, PM1A_EVT_BLK + 2, &w, 2, true);      /* PWRBTN_EN only */
    assert_int_equal(pm_power_button(m), 0);
    w = 0;
    machine_pio(m, PM1A_EVT_BLK, &w, 2, false);
    assert_int_equal(w & 0x0100, 0x0100);
    assert_int_equal(irq_level[PM_SCI_IRQ], 1);
    w = 0x0100;
    machine_pio(m, PM1A_EVT_BLK, &w, 2, true);
    machine_pio(m, PM1A_EVT_BLK, &w, 2, false);
    assert_int_equal(w & 0x0100, 0);
    assert_int_equal(irq_level[PM_SCI_IRQ], 0);
    /* SLP_TYP from \_S5 with SLP_EN, as a byte pair write: poweroff. */
    w = (PM_SLP_TYP_S5 << 10) | (1 << 13);
    machine_pio(m, PM1A_CNT_BLK, &w, 2, true);
    assert_int_equal(atomic_load(&m->shutdown_requested), 1);
    assert_int_equal(m->exit_status, 0);
    destroy(m);
}

static void test_port92_reset(void **st)
{
    int ret;
    struct machine *m = board(NULL, SERIAL_NONE, &ret);

    assert_int_equal(inb(m, 0x92), 0x02);
    outb(m, 0x80, 0x55);                                /* delay port: nothing */
    assert_int_equal(atomic_load(&m->reset_requested), 0);
    outb(m, 0x92, 0x03);
    assert_int_equal(atomic_load(&m->reset_requested), 1);
    destroy(m);
}

static uint8_t kbc_read(struct machine *m)
{
    assert_true(inb(m, 0x64) & 0x01);
    return inb(m, 0x60);
}

static void test_i8042(void **st)
{
    int ret;
    struct machine *m = board(NULL, SERIAL_NONE, &ret);

    assert_int_equal(inb(m, 0x64) & 0x01, 0);
    outb(m, 0x64, 0xaa);
    assert_int_equal(kbc_read(m), 0x55);
    outb(m, 0x64, 0xab);
    assert_int_equal(kbc_read(m), 0x00);
    outb(m, 0x64, 0x20);
    uint8_t ctr = kbc_read(m);
    outb(m, 0x64, 0x60);
    outb(m, 0x60, ctr & ~0x01);
    outb(m, 0x64, 0x20);
    assert_int_equal(kbc_read(m), ctr & ~0x01);
    /* AUX loop test: the byte comes back without AUXDATA, so no mouse. */
    outb(m, 0x64, 0xd3);
    outb(m, 0x60, 0x5a);
    assert_int_equal(inb(m, 0x64) & 0x21, 0x01);
    assert_int_equal(inb(m, 0x60), 0x5a);
    /* Keyboard identifies as MF2 (translated). */
    outb(m, 0x60, 0xf2);
    assert_int_equal(kbc_read(m), 0xfa);
    assert_int_equal(kbc_read(m), 0xab);
    assert_int_equal(kbc_read(m), 0x41);
    assert_int_equal(inb(m, 0x64) & 0x01, 0);
    /* Unknown commands and floods must not wedge it. */
    for (int i = 0; i < 100; i++)
        outb(m, 0x60, 0xee);
    while (inb(m, 0x64) & 0x01)
        inb(m, 0x60);
    outb(m, 0x64, 0x12);
    assert_int_equal(atomic_load(&m->reset_requested), 0);
    outb(m, 0x64, 0xfe);
    assert_int_equal(atomic_load(&m->reset_requested), 1);
    destroy(m);
}

static void test_board_reset(void **st)
{
    int ret;
    struct machine *m = board(NULL, SERIAL_FILE, &ret);
    uint32_t v = 0x80000800;

    assert_int_equal(ret, 0);
    machine_pio(m, 0xcf8, &v, 4, true);
    outb(m, 0x3f8 + 7, 0x42);
    outb(m, 0x64, 0xaa);
    board_reset(m);
    assert_int_equal(inl(m, 0xcf8), 0);
    assert_int_equal(inb(m, 0x3f8 + 7), 0);
    assert_int_equal(inb(m, 0x64) & 0x01, 0);
    destroy(m);
}

/* A guest hammering every port of the board with random sizes and values
 * (including the PCI window and config space) must not crash, hang or
 * trip the sanitizers.  Seeded, so a failure reproduces. */
static void test_random_port_storm(void **st)
{
    static const struct { uint16_t base, len; } ranges[] = {
        { 0x60, 8 }, { 0x70, 2 }, { 0x80, 1 }, { 0x92, 1 }, { 0x3f8, 8 }, { 0x510, 2 },
        { 0x600, 0x10 }, { 0xcf8, 8 }, { 0xc000, 0x100 },
    };
    int ret;
    struct machine *m = board(NULL, SERIAL_FILE, &ret);
    unsigned seed = 12345;

    assert_int_equal(ret, 0);
    for (int i = 0; i < 200000; i++) {
        unsigned r = (unsigned)rand_r(&seed);
        unsigned k = r % (sizeof(ranges) / sizeof(ranges[0]));
        uint16_t port = (uint16_t)(ranges[k].base + (unsigned)rand_r(&seed) % ranges[k].len);
        unsigned size = 1u << ((r >> 8) % 3);
        uint32_t v = (uint32_t)rand_r(&seed) * 2654435761u;
        /* Keep CONFIG_ADDRESS pointing at real functions half the time. */
        if (port == 0xcf8 && size == 4 && (r & 0x10000))
            v = 0x80000000u | (v & 0x0800fc);
        machine_pio(m, port, &v, size, (r >> 12) & 1);
    }
    board_reset(m);
    assert_int_equal(inl(m, 0xcf8), 0);
    destroy(m);
}

static void test_user_irqchip(void **st)
{
    static const struct accel_ops kvm = { .name = "kvm" }, emu = { .name = "emu" };
    struct machine m = { 0 };

    assert_true(board_user_irqchip(&m));
    m.accel = &kvm;
    assert_false(board_user_irqchip(&m));
    m.accel = &emu;
    assert_true(board_user_irqchip(&m));
}

static int group_setup(void **st)
{
    return main_loop_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_board),
        cmocka_unit_test(test_debug_exit),
        cmocka_unit_test(test_device_errors),
        cmocka_unit_test(test_pm_s5_and_timer),
        cmocka_unit_test(test_port92_reset),
        cmocka_unit_test(test_i8042),
        cmocka_unit_test(test_board_reset),
        cmocka_unit_test(test_random_port_storm),
        cmocka_unit_test(test_user_irqchip),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
