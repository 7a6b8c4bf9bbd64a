/* The 8254 PIT on a simulated clock: counts in modes 0, 2 and 3, latch and
 * read-back commands, BCD, IRQ0 deadlines, and port 0x61 as Linux's TSC
 * calibration uses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hw/pit.h"

#define T0 5000000000ull

struct fix {
    struct pit p;
    int raises, lowers;
    int level;
};

static void irq(void *opaque, int level)
{
    struct fix *f = opaque;
    if (level && !f->level)
        f->raises++;
    if (!level && f->level)
        f->lowers++;
    f->level = level;
}

static int setup(void **state)
{
    struct fix *f = test_calloc(1, sizeof(*f));
    pit_init(&f->p, irq, f);
    pit_reset(&f->p, T0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    test_free(*state);
    return 0;
}

/* ns after which `ticks` PIT clocks have elapsed (rounded up). */
static uint64_t ns(uint64_t ticks)
{
    return (ticks * 1000000000ull + PIT_FREQ_HZ - 1) / PIT_FREQ_HZ;
}

static void out8(struct fix *f, uint16_t port, uint8_t v, uint64_t t)
{
    pit_ioport_write(&f->p, port, v, t);
}

static uint8_t in8(struct fix *f, uint16_t port, uint64_t t)
{
    return pit_ioport_read(&f->p, port, t);
}

static uint16_t in16(struct fix *f, uint16_t port, uint64_t t)
{
    uint8_t lo = in8(f, port, t);
    return (uint16_t)(lo | in8(f, port, t) << 8);
}

static void test_reset_state(void **state)
{
    struct fix *f = *state;
    assert_int_equal(pit_next_deadline_ns(&f->p), 0);
    pit_timer_check(&f->p, T0 + 10000000000ull);
    assert_int_equal(f->raises, 0);
    assert_int_equal(in8(f, 0x61, T0) & 0x23, 0);        /* gate 2 low, OUT2 low */
    assert_int_equal(in8(f, 0x43, T0), 0xff);            /* write-only */
}

static void test_mode0_oneshot_irq(void **state)
{
    struct fix *f = *state;
    out8(f, 0x43, 0x30, T0);                             /* ch0, lo/hi, mode 0 */
    out8(f, 0x40, 0xa9, T0);
    assert_int_equal(pit_next_deadline_ns(&f->p), 0);    /* not loaded yet */
    out8(f, 0x40, 0x04, T0);                             /* 1193 = ~1 ms */
    assert_int_equal(pit_next_deadline_ns(&f->p), T0 + ns(1193));
    assert_int_equal(pit_counter(&f->p, 0, T0 + ns(596)), 1193 - 596);
    assert_false(pit_out(&f->p, 0, T0 + ns(1192)));
    assert_true(pit_out(&f->p, 0, T0 + ns(1193)));
    pit_timer_check(&f->p, T0 + ns(1193) - 1);
    assert_int_equal(f->raises, 0);
    pit_timer_check(&f->p, T0 + ns(1193));
    assert_int_equal(f->raises, 1);
    assert_int_equal(f->level, 0);                       /* a pulse: edge seen */
    assert_int_equal(pit_next_deadline_ns(&f->p), 0);
    pit_timer_check(&f->p, T0 + 1000000000ull);
    assert_int_equal(f->raises, 1);
    /* After terminal count mode 0 wraps to 0xffff and keeps counting. */
    assert_int_equal(pit_counter(&f->p, 0, T0 + ns(1194)), 0xffff);
}

static void test_mode2_periodic_irq(void **state)
{
    struct fix *f = *state;
    out8(f, 0x43, 0x34, T0);                             /* ch0, lo/hi, mode 2 */
    out8(f, 0x40, 11932 & 0xff, T0);
    out8(f, 0x40, 11932 >> 8, T0);                       /* ~10 ms */
    assert_int_equal(pit_next_deadline_ns(&f->p), T0 + ns(11932));
    pit_timer_check(&f->p, T0 + ns(3 * 11932) + 5000000); /* 3.5 periods */
    assert_int_equal(f->raises, 1);                      /* one now, */
    assert_int_equal(f->p.irq_missed, 2);                /* two owed */
    pit_irq_acked(&f->p);
    pit_irq_acked(&f->p);
    pit_irq_acked(&f->p);                                /* nothing left */
    assert_int_equal(f->raises, 3);
    f->raises = 1;
    assert_int_equal(pit_next_deadline_ns(&f->p), T0 + ns(4 * 11932));
    pit_timer_check(&f->p, T0 + ns(4 * 11932));
    assert_int_equal(f->raises, 2);
    assert_int_equal(pit_counter(&f->p, 0, T0 + ns(11932 + 100)), 11932 - 100);
    assert_false(pit_out(&f->p, 0, T0 + ns(11931)));    /* low at count 1 */
    assert_true(pit_out(&f->p, 0, T0 + ns(11932)));
    /* A new control word stops IRQ0 until the count is written. */
    out8(f, 0x43, 0x38, T0 + 1);                         /* mode 4 */
    assert_int_equal(pit_next_deadline_ns(&f->p), 0);
    /* A hostile tiny period is clamped for IRQs. */
    out8(f, 0x43, 0x34, T0 + 2);
    out8(f, 0x40, 2, T0 + 2);
    out8(f, 0x40, 0, T0 + 2);
    assert_int_equal(pit_next_deadline_ns(&f->p), T0 + 2 + PIT_MIN_PERIOD_NS);
    pit_timer_check(&f->p, T0 + 2 + PIT_MIN_PERIOD_NS);
    assert_int_equal(f->raises, 3);
    assert_true(pit_next_deadline_ns(&f->p) >= T0 + 2 + 2 * PIT_MIN_PERIOD_NS);
}

static void test_mode3_square_wave(void **state)
{
    struct fix *f = *state;
    out8(f, 0x43, 0x36, T0);                             /* ch0, lo/hi, mode 3 */
    out8(f, 0x40, 0x00, T0);
    out8(f, 0x40, 0x00, T0);                             /* 0 = 65536 */
    assert_int_equal(f->p.ch[0].count, 0x10000);
    assert_int_equal(pit_counter(&f->p, 0, T0 + ns(10)), 65536 - 20);
    assert_true(pit_out(&f->p, 0, T0 + ns(32767)));
    assert_false(pit_out(&f->p, 0, T0 + ns(32768)));
    assert_true(pit_out(&f->p, 0, T0 + ns(65536)));
    assert_int_equal(pit_next_deadline_ns(&f->p), T0 + ns(65536));
    /* Modes 6 and 7 are 2 and 3. */
    out8(f, 0x43, 0x3e, T0);
    assert_int_equal(f->p.ch[0].mode, 3);
}

static void test_latch_and_readback(void **state)
{
    struct fix *f = *state;
    out8(f, 0x43, 0x34, T0);
    out8(f, 0x40, 0x10, T0);
    out8(f, 0x40, 0x27, T0);                             /* 10000 */
    out8(f, 0x43, 0x00, T0 + ns(100));                   /* latch ch0 */
    out8(f, 0x43, 0x00, T0 + ns(200));                   /* ignored: pending */
    assert_int_equal(in16(f, 0x40, T0 + ns(5000)), 9900);
    assert_int_equal(in16(f, 0x40, T0 + ns(5000)), 5000);  /* live again */
    /* Read-back: status and count of channel 0. */
    out8(f, 0x43, 0xc2, T0 + ns(300));
    assert_int_equal(in8(f, 0x40, T0 + ns(900)), 0x80 | 0x30 | (2 << 1));
    assert_int_equal(in16(f, 0x40, T0 + ns(900)), 9700);
    /* Read-back of status only, channels 0 and 2 (channel 2 unprogrammed). */
    out8(f, 0x43, 0xea, T0);
    assert_int_equal(in8(f, 0x40, T0), 0x80 | 0x30 | (2 << 1));
    assert_int_equal(in8(f, 0x42, T0), (0xff & 7) << 1);
    /* Byte-only access modes. */
    out8(f, 0x43, 0x10, T0);                             /* ch0 LSB only, mode 0 */
    out8(f, 0x40, 0x80, T0);
    assert_int_equal(in8(f, 0x40, T0 + ns(0x10)), 0x70);
    assert_int_equal(in8(f, 0x40, T0 + ns(0x10)), 0x70);
    out8(f, 0x43, 0x20, T0);                             /* MSB only */
    out8(f, 0x40, 0x12, T0);
    assert_int_equal(f->p.ch[0].count, 0x1200);
    assert_int_equal(in8(f, 0x40, T0 + ns(0x100)), 0x11);
}

static void test_bcd(void **state)
{
    struct fix *f = *state;
    out8(f, 0x43, 0x31, T0);                             /* ch0, lo/hi, mode 0, BCD */
    out8(f, 0x40, 0x00, T0);
    out8(f, 0x40, 0x10, T0);                             /* 1000 decimal */
    assert_int_equal(f->p.ch[0].count, 1000);
    assert_int_equal(in16(f, 0x40, T0 + ns(1)), 0x0999);
    assert_int_equal(in16(f, 0x40, T0 + ns(1001)), 0x9999);  /* wraps in BCD */
}

/* arch/x86/kernel/tsc.c: pit_calibrate_tsc() and quick_pit_calibrate(). */
static void test_port61_linux_calibration(void **state)
{
    struct fix *f = *state;
    const uint16_t latch = PIT_FREQ_HZ / 20;             /* 50 ms */
    uint64_t t = T0;
    out8(f, 0x61, (in8(f, 0x61, t) & ~0x02) | 0x01, t);  /* gate high, speaker off */
    out8(f, 0x43, 0xb0, t);                              /* ch2, lo/hi, mode 0 */
    out8(f, 0x42, latch & 0xff, t);
    out8(f, 0x42, latch >> 8, t);
    assert_int_equal(in8(f, 0x61, t) & 0x21, 0x01);
    /* Poll OUT2 every 10 us, as the kernel's loop does (much faster). */
    uint64_t seen = 0;
    for (uint64_t now = t; now < t + 60000000; now += 10000) {
        if (in8(f, 0x61, now) & 0x20) {
            seen = now;
            break;
        }
    }
    assert_true(seen >= t + ns(latch));
    assert_true(seen < t + ns(latch) + 10000);
    assert_true(seen - t > 49990000 && seen - t < 50010000);

    /* quick_pit_calibrate: count from 0xffff, read LSB then MSB. */
    t = T0 + 1000000000ull;
    out8(f, 0x43, 0xb0, t);
    out8(f, 0x42, 0xff, t);
    out8(f, 0x42, 0xff, t);
    for (unsigned i = 1; i < 200; i++) {
        uint64_t now = t + ns(256 * i) + 1000;           /* ~215 us steps */
        in8(f, 0x42, now);
        assert_int_equal(in8(f, 0x42, now), 0xff - i);   /* MSB drops by one */
    }
    /* Refresh toggles every ~15 us; speaker bit reads back. */
    out8(f, 0x61, 0x03, t);
    assert_int_equal(in8(f, 0x61, 0) & 0x13, 0x03);
    assert_int_equal(in8(f, 0x61, 15085) & 0x10, 0x10);
    assert_int_equal(in8(f, 0x61, 30170) & 0x10, 0x00);
}

static void test_gate_retrigger(void **state)
{
    struct fix *f = *state;
    out8(f, 0x61, 0x01, T0);
    out8(f, 0x43, 0xb4, T0);                             /* ch2, mode 2 */
    out8(f, 0x42, 0x00, T0);
    out8(f, 0x42, 0x10, T0);                             /* 4096 */
    assert_int_equal(pit_counter(&f->p, 2, T0 + ns(1000)), 3096);
    out8(f, 0x61, 0x00, T0 + ns(1000));                  /* gate low: OUT high */
    assert_true(pit_out(&f->p, 2, T0 + ns(4095)));
    out8(f, 0x61, 0x01, T0 + ns(2000));                  /* rising edge: reload */
    assert_int_equal(pit_counter(&f->p, 2, T0 + ns(2000) + ns(10)), 4086);
}

static void test_hostile(void **state)
{
    struct fix *f = *state;
    struct pit before = f->p;
    out8(f, 0x41, 0x55, T0);                             /* never programmed */
    assert_int_equal(in8(f, 0x41, T0), 0);
    before.ch[1] = f->p.ch[1];
    assert_memory_equal(&before, &f->p, sizeof(before));
    assert_int_equal(pit_counter(&f->p, 7, T0), 0);
    assert_false(pit_out(&f->p, 3, T0));
    pit_set_gate(&f->p, 3, true, T0);
    /* A clock before the load time reads as the full count. */
    out8(f, 0x43, 0x34, T0);
    out8(f, 0x40, 0x00, T0);
    out8(f, 0x40, 0x01, T0);
    assert_int_equal(pit_counter(&f->p, 0, T0 - 5000), 256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reset_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode0_oneshot_irq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode2_periodic_irq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode3_square_wave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latch_and_readback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bcd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port61_linux_calibration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_retrigger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
