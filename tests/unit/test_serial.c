/* 16550A as Linux's 8250 driver probes and drives it: UART type detection
 * (scratch, loopback, FIFO bits), THRE interrupt semantics, OUT2 gating,
 * the receive FIFO with overrun, interrupt priorities, output to a file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "chardev/chardev.h"
#include "config/config.h"
#include "hw/serial.h"
#include "machine/machine.h"

#define B SERIAL_COM1_BASE
enum { RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR };
#define FCR IIR

static int irq_level[32];

static void fake_set_irq(struct machine *m, unsigned gsi, int level)
{
    if (gsi < 32)
        irq_level[gsi] = level;
}

static const struct accel_ops fake_accel = { .name = "test", .set_irq = fake_set_irq };
static struct vm_config cfg = { .ram_size = 16 * MiB, .smp = 1 };

struct fixture {
    struct machine m;
    struct serial *s;
    char path[64];
};

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

static int setup(void **st)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct chardev *chr;
    int fd;

    memset(irq_level, 0, sizeof(irq_level));
    assert_int_equal(machine_init(&f->m, &cfg), 0);
    f->m.accel = &fake_accel;
    strcpy(f->path, "/tmp/vmon-test-serial-XXXXXX");
    fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    chr = chardev_file_new(f->path);
    assert_non_null(chr);
    f->s = serial_new(&f->m, B, SERIAL_COM1_IRQ, chr);
    assert_non_null(f->s);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fixture *f = *st;

    serial_free(f->s);
    f->m.accel = NULL;
    machine_destroy(&f->m);
    unlink(f->path);
    free(f);
    return 0;
}

/* What serial8250's autoconfig() does to decide "16550A". */
static void test_autoconfig_16550a(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;

    outb(m, B + IER, 0);
    assert_int_equal(inb(m, B + IER) & 0x0f, 0);
    outb(m, B + IER, 0x0f);
    assert_int_equal(inb(m, B + IER) & 0x0f, 0x0f);
    outb(m, B + IER, 0);
    outb(m, B + SCR, 0xa5);
    assert_int_equal(inb(m, B + SCR), 0xa5);

    /* Loopback: RTS -> CTS, OUT2 -> DCD gives MSR 0x90. */
    outb(m, B + MCR, 0x10 | 0x0a);
    assert_int_equal(inb(m, B + MSR) & 0xf0, 0x90);
    outb(m, B + MCR, 0);

    /* FIFO probe: IIR bits 7:6 = 11, bit 5 clear (not a 16750). */
    outb(m, B + FCR, 0x01);
    assert_int_equal(inb(m, B + IIR) >> 6, 3);
    outb(m, B + FCR, 0x01 | 0x20);
    assert_int_equal(inb(m, B + IIR) >> 5, 6);
    outb(m, B + FCR, 0);
    assert_int_equal(inb(m, B + IIR) & 0xc0, 0);
    /* No EFR: in config mode B, offset 2 is not 0. */
    outb(m, B + LCR, 0xbf);
    assert_int_not_equal(inb(m, B + IIR), 0);
    outb(m, B + LCR, 0x03);
}

static void test_divisor_latch(void **st)
{
    struct machine *m = &((struct fixture *)*st)->m;

    outb(m, B + IER, 0x05);
    outb(m, B + LCR, 0x83);
    outb(m, B + 0, 0x01);
    outb(m, B + 1, 0x02);
    assert_int_equal(inb(m, B + 0), 0x01);
    assert_int_equal(inb(m, B + 1), 0x02);
    outb(m, B + LCR, 0x03);
    assert_int_equal(inb(m, B + IER), 0x05);   /* IER untouched by DLM */
}

/* serial8250_do_startup's THRE test and interrupt-driven transmission. */
static void test_thre_interrupt(void **st)
{
    struct machine *m = &((struct fixture *)*st)->m;

    outb(m, B + MCR, 0x08);                     /* OUT2 */
    outb(m, B + FCR, 0x07);
    outb(m, B + IER, 0x02);
    assert_int_equal(irq_level[4], 1);
    assert_true(inb(m, B + LSR) & 0x40);         /* TEMT */
    assert_int_equal(inb(m, B + IIR), 0xc2);     /* THRE, and reading acks it */
    assert_int_equal(irq_level[4], 0);
    assert_int_equal(inb(m, B + IIR), 0xc1);
    /* Re-enabling THRI with THR empty raises it again. */
    outb(m, B + IER, 0);
    outb(m, B + IER, 0x02);
    assert_int_equal(irq_level[4], 1);
    assert_int_equal(inb(m, B + IIR) & 0x0f, 0x02);
    /* Each byte written re-arms THRE once it has gone out. */
    outb(m, B + RBR, 'x');
    assert_int_equal(irq_level[4], 1);
    outb(m, B + IER, 0);
    assert_int_equal(irq_level[4], 0);
}

static void test_out2_gates_irq(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;

    outb(m, B + IER, 0x01);
    serial_receive(f->s, (const uint8_t *)"a", 1);
    assert_int_equal(irq_level[4], 0);          /* no OUT2: line held low */
    assert_int_equal(inb(m, B + IIR) & 0x0f, 0x04);
    outb(m, B + MCR, 0x08);
    assert_int_equal(irq_level[4], 1);
    assert_int_equal(inb(m, B + RBR), 'a');
    assert_int_equal(irq_level[4], 0);
}

static void test_rx_fifo_overrun(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;
    uint8_t buf[20];

    for (int i = 0; i < 20; i++)
        buf[i] = (uint8_t)('A' + i);
    outb(m, B + FCR, 0xc7);                    /* FIFO on, trigger 14 */
    outb(m, B + MCR, 0x08);
    outb(m, B + IER, 0x05);                    /* RX data + line status */
    assert_int_equal(serial_receive(f->s, buf, 20), 16);
    assert_int_equal(irq_level[4], 1);
    /* Line status outranks received data. */
    assert_int_equal(inb(m, B + IIR), 0xc6);
    assert_int_equal(inb(m, B + LSR) & 0x03, 0x03);   /* DR | OE */
    assert_int_equal(inb(m, B + LSR) & 0x02, 0);      /* OE cleared by the read */
    assert_int_equal(inb(m, B + IIR), 0xc4);          /* at/above trigger level */
    for (int i = 0; i < 16; i++) {
        if (i == 3)
            assert_int_equal(inb(m, B + IIR), 0xcc);  /* below trigger: timeout */
        assert_int_equal(inb(m, B + RBR), 'A' + i);
    }
    assert_int_equal(inb(m, B + LSR) & 0x01, 0);
    assert_int_equal(inb(m, B + IIR), 0xc1);
    assert_int_equal(irq_level[4], 0);
    /* Reading an empty RBR is harmless. */
    assert_int_equal(inb(m, B + RBR), 0);
}

static void test_non_fifo_mode_holds_one_byte(void **st)
{
    struct fixture *f = *st;

    assert_int_equal(serial_receive(f->s, (const uint8_t *)"xy", 2), 1);
    assert_int_equal(inb(&f->m, B + LSR) & 0x03, 0x03);
    assert_int_equal(inb(&f->m, B + RBR), 'x');
}

static void test_loopback(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;
    char out[16] = { 0 };
    FILE *fp;

    outb(m, B + FCR, 0x01);
    outb(m, B + MCR, 0x10 | 0x08);
    outb(m, B + IER, 0x01);
    outb(m, B + RBR, 'L');
    assert_int_equal(irq_level[4], 0);          /* loopback keeps the line quiet */
    assert_int_equal(inb(m, B + IIR) & 0x0f, 0x04);   /* trigger level 1 reached */
    assert_int_equal(inb(m, B + RBR), 'L');
    outb(m, B + MCR, 0x08);
    outb(m, B + RBR, 'O');
    outb(m, B + RBR, 'K');
    fp = fopen(f->path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(out, sizeof(out), fp));
    fclose(fp);
    assert_string_equal(out, "OK");
}

/* Wider and straddling accesses must stay inside the 8 registers. */
static void test_hostile_accesses(void **st)
{
    struct machine *m = &((struct fixture *)*st)->m;
    uint32_t v = 0;

    outb(m, B + SCR, 0x5a);
    machine_pio(m, B + 6, &v, 4, false);
    assert_int_equal((v >> 8) & 0xff, 0x5a);
    assert_int_equal(v >> 16, 0xffff);
    v = 0xffffffff;
    machine_pio(m, B + 7, &v, 4, true);
    assert_int_equal(inb(m, B + SCR), 0xff);
    outb(m, B + LSR, 0);                       /* read-only */
    assert_true(inb(m, B + LSR) & 0x60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_autoconfig_16550a, setup, teardown),
        cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out2_gates_irq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_fifo_overrun, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_fifo_mode_holds_one_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
