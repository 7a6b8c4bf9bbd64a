/* The 8259A pair, programmed the way Linux programs it: initialisation,
 * IRR/ISR reads, EOIs, priorities, the cascade, ELCR level mode, spurious
 * interrupts, auto-EOI, poll mode, rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hw/pic.h"

static void outb(struct pic *p, uint16_t port, uint8_t v)
{
    if (port == 0x4d0 || port == 0x4d1)
        pic_elcr_write(p, port & 1, v);
    else
        pic_write(p, port >= 0xa0, port & 1, v);
}

static uint8_t inb(struct pic *p, uint16_t port)
{
    if (port == 0x4d0 || port == 0x4d1)
        return pic_elcr_read(p, port & 1);
    return pic_read(p, port >= 0xa0, port & 1);
}

/* arch/x86/kernel/i8259.c: init_8259A(0). */
static void linux_init(struct pic *p, uint8_t icw4)
{
    outb(p, 0x21, 0xff);
    outb(p, 0xa1, 0xff);
    outb(p, 0x20, 0x11);
    outb(p, 0x21, 0x20);
    outb(p, 0x21, 0x04);
    outb(p, 0x21, icw4);
    outb(p, 0xa0, 0x11);
    outb(p, 0xa1, 0x28);
    outb(p, 0xa1, 0x02);
    outb(p, 0xa1, icw4);
    outb(p, 0x21, 0x00);
    outb(p, 0xa1, 0x00);
}

static int setup(void **state)
{
    struct pic *p = test_calloc(1, sizeof(*p));
    pic_init(p);
    linux_init(p, 0x01);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    test_free(*state);
    return 0;
}

static uint8_t read_irr(struct pic *p, uint16_t cmd)
{
    outb(p, cmd, 0x0a);
    return inb(p, cmd);
}

static uint8_t read_isr(struct pic *p, uint16_t cmd)
{
    outb(p, cmd, 0x0b);
    return inb(p, cmd);
}

static void pulse(struct pic *p, unsigned irq)
{
    pic_set_irq(p, irq, 1);
    pic_set_irq(p, irq, 0);
}

static void test_init_sequence(void **state)
{
    struct pic *p = *state;
    assert_int_equal(p->chip[0].irq_base, 0x20);
    assert_int_equal(p->chip[1].irq_base, 0x28);
    assert_int_equal(p->chip[0].init_state, 0);
    assert_int_equal(p->chip[1].init_state, 0);
    assert_int_equal(inb(p, 0x21), 0);
    outb(p, 0x21, 0xfb);
    assert_int_equal(inb(p, 0x21), 0xfb);
    assert_false(pic_get_output(p));
}

static void test_irr_isr_and_eoi(void **state)
{
    struct pic *p = *state;
    pic_set_irq(p, 1, 1);
    assert_true(pic_get_output(p));
    assert_int_equal(read_irr(p, 0x20), 0x02);
    assert_int_equal(pic_ack(p), 0x21);
    assert_int_equal(read_irr(p, 0x20), 0x00);          /* edge consumed */
    assert_int_equal(read_isr(p, 0x20), 0x02);
    assert_false(pic_get_output(p));
    pic_set_irq(p, 1, 0);
    pic_set_irq(p, 1, 1);                                /* new edge, in service */
    assert_false(pic_get_output(p));
    outb(p, 0x20, 0x20);                                 /* non-specific EOI */
    assert_int_equal(read_isr(p, 0x20), 0x00);
    assert_true(pic_get_output(p));
    assert_int_equal(pic_ack(p), 0x21);
    outb(p, 0x20, 0x61);                                 /* specific EOI IRQ1 */
    assert_int_equal(read_isr(p, 0x20), 0x00);
}

static void test_priorities_and_nesting(void **state)
{
    struct pic *p = *state;
    pulse(p, 5);
    pulse(p, 3);
    assert_int_equal(pic_ack(p), 0x23);
    assert_true(pic_get_output(p) == false);             /* 5 below 3 in service */
    pulse(p, 1);
    assert_true(pic_get_output(p));                      /* 1 preempts 3 */
    assert_int_equal(pic_ack(p), 0x21);
    assert_int_equal(read_isr(p, 0x20), 0x0a);
    outb(p, 0x20, 0x20);                                 /* clears the highest: 1 */
    assert_int_equal(read_isr(p, 0x20), 0x08);
    assert_false(pic_get_output(p));
    outb(p, 0x20, 0x20);
    assert_int_equal(pic_ack(p), 0x25);
    outb(p, 0x20, 0x20);
    /* Masking holds a request back without losing it. */
    outb(p, 0x21, 0x40);
    pulse(p, 6);
    assert_false(pic_get_output(p));
    outb(p, 0x21, 0x00);
    assert_int_equal(pic_ack(p), 0x26);
}

static void test_cascade(void **state)
{
    struct pic *p = *state;
    pulse(p, 12);
    assert_true(pic_get_output(p));
    assert_int_equal(read_irr(p, 0xa0), 0x10);
    assert_int_equal(pic_ack(p), 0x2c);
    assert_int_equal(read_isr(p, 0xa0), 0x10);
    assert_int_equal(read_isr(p, 0x20), 0x04);
    pulse(p, 14);                                        /* lower than 12 */
    assert_false(pic_get_output(p));
    outb(p, 0xa0, 0x20);
    outb(p, 0x20, 0x20);
    assert_true(pic_get_output(p));
    assert_int_equal(pic_ack(p), 0x2e);
    outb(p, 0xa0, 0x20);
    outb(p, 0x20, 0x20);
    assert_false(pic_get_output(p));
    /* Masking IRQ2 on the master hides the whole slave. */
    outb(p, 0x21, 0x04);
    pulse(p, 9);
    assert_false(pic_get_output(p));
    outb(p, 0x21, 0x00);
    assert_int_equal(pic_ack(p), 0x29);
}

static void test_elcr_level(void **state)
{
    struct pic *p = *state;
    outb(p, 0x4d0, 0xff);
    assert_int_equal(inb(p, 0x4d0), 0xf8);               /* IRQ0-2 always edge */
    outb(p, 0x4d1, 0xff);
    assert_int_equal(inb(p, 0x4d1), 0xde);               /* IRQ8, 13 always edge */
    outb(p, 0x4d0, 0x00);
    outb(p, 0x4d1, 0x08);                                /* IRQ11 level */
    pic_set_irq(p, 11, 1);
    assert_int_equal(pic_ack(p), 0x2b);
    outb(p, 0xa0, 0x20);
    outb(p, 0x20, 0x20);
    assert_true(pic_get_output(p));                      /* still asserted */
    assert_int_equal(pic_ack(p), 0x2b);
    pic_set_irq(p, 11, 0);
    outb(p, 0xa0, 0x20);
    outb(p, 0x20, 0x20);
    assert_false(pic_get_output(p));
}

static void test_spurious(void **state)
{
    struct pic *p = *state;
    assert_int_equal(pic_ack(p), 0x27);                  /* nothing pending */
    assert_int_equal(read_isr(p, 0x20), 0x00);           /* no ISR bit for it */
    /* A level request on the master that goes away before INTA. */
    outb(p, 0x4d0, 0x20);
    pic_set_irq(p, 5, 1);
    assert_true(pic_get_output(p));
    pic_set_irq(p, 5, 0);
    assert_int_equal(pic_ack(p), 0x27);
    /* The same on the slave: the master saw IRQ2, the slave has nothing. */
    outb(p, 0x4d1, 0x04);
    pic_set_irq(p, 10, 1);
    pic_set_irq(p, 10, 0);
    assert_true(pic_get_output(p));                      /* the cascade edge */
    assert_int_equal(pic_ack(p), 0x2f);
    assert_int_equal(read_isr(p, 0xa0), 0x00);
}

static void test_auto_eoi_poll_rotate(void **state)
{
    struct pic *p = *state;
    linux_init(p, 0x03);                                 /* auto-EOI */
    pulse(p, 4);
    assert_int_equal(pic_ack(p), 0x24);
    assert_int_equal(read_isr(p, 0x20), 0x00);
    linux_init(p, 0x01);
    /* Poll mode: the read acknowledges. */
    pulse(p, 6);
    outb(p, 0x20, 0x0c);
    assert_int_equal(inb(p, 0x20), 0x86);
    assert_int_equal(read_isr(p, 0x20), 0x40);
    outb(p, 0x20, 0x0c);
    assert_int_equal(inb(p, 0x20), 0x00);                /* nothing pending */
    outb(p, 0x20, 0x20);
    /* Set priority: IRQ3 lowest, so IRQ4 is the highest. */
    outb(p, 0x20, 0xc3);
    pulse(p, 1);
    pulse(p, 5);
    assert_int_equal(pic_ack(p), 0x25);
    outb(p, 0x20, 0xa0);                                 /* rotate on EOI: 5 lowest */
    assert_int_equal(p->chip[0].priority_add, 6);
    assert_int_equal(pic_ack(p), 0x21);
}

static void test_icw1_resets_edge_detect_and_single_mode(void **state)
{
    struct pic *p = *state;
    pic_set_irq(p, 1, 1);
    linux_init(p, 0x01);                                 /* line still high */
    assert_false(pic_get_output(p));
    pic_set_irq(p, 1, 1);
    assert_false(pic_get_output(p));
    pic_set_irq(p, 1, 0);
    pic_set_irq(p, 1, 1);
    assert_true(pic_get_output(p));
    /* ICW1 with SNGL: no ICW3 follows. */
    outb(p, 0xa0, 0x13);
    outb(p, 0xa1, 0x70);
    outb(p, 0xa1, 0x01);
    assert_int_equal(p->chip[1].init_state, 0);
    assert_int_equal(p->chip[1].irq_base, 0x70);
    outb(p, 0xa1, 0x5a);                                 /* now OCW1 */
    assert_int_equal(inb(p, 0xa1), 0x5a);
    /* Out-of-range lines are ignored. */
    struct pic before = *p;
    pic_set_irq(p, 16, 1);
    pic_set_irq(p, 0xffffffffu, 1);
    assert_memory_equal(&before, p, sizeof(before));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_irr_isr_and_eoi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priorities_and_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elcr_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spurious, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_eoi_poll_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_icw1_resets_edge_detect_and_single_mode, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
