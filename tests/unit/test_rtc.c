/* CMOS RTC: host UTC in BCD and binary, 12/24 h, setting the time, the
 * status registers, interrupts flags, memory size bytes, and the index
 * register masking hostile indexes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accel/accel.h"
#include "config/config.h"
#include "hw/pc_devices.h"
#include "hw/rtc.h"
#include "machine/machine.h"

static int irq8_level, irq8_raises;

static void fake_set_irq(struct machine *m, unsigned gsi, int level)
{
    if (gsi == RTC_IRQ) {
        if (level && !irq8_level)
            irq8_raises++;
        irq8_level = level;
    }
}

static const struct accel_ops fake_accel = { .name = "test", .set_irq = fake_set_irq };
static struct vm_config cfg = { .ram_size = 64 * MiB, .smp = 1 };

static int setup(void **st)
{
    struct machine *m = calloc(1, sizeof(*m));

    irq8_level = irq8_raises = 0;
    assert_int_equal(machine_init(m, &cfg), 0);
    m->accel = &fake_accel;
    assert_int_equal(rtc_create(m), 0);
    *st = m;
    return 0;
}

static int teardown(void **st)
{
    struct machine *m = *st;

    m->accel = NULL;
    machine_destroy(m);
    free(m);
    return 0;
}

static uint8_t cmos_read(struct machine *m, uint8_t idx)
{
    uint8_t v = 0;

    machine_pio(m, 0x70, &idx, 1, true);
    machine_pio(m, 0x71, &v, 1, false);
    return v;
}

static void cmos_write(struct machine *m, uint8_t idx, uint8_t v)
{
    machine_pio(m, 0x70, &idx, 1, true);
    machine_pio(m, 0x71, &v, 1, true);
}

static int bcd(uint8_t v)
{
    return (v >> 4) * 10 + (v & 0x0f);
}

/* Seconds since the epoch from the RTC registers, BCD 24 h. */
static time_t rtc_time_bcd(struct machine *m)
{
    struct tm tm = { 0 };

    tm.tm_sec = bcd(cmos_read(m, RTC_SECONDS));
    tm.tm_min = bcd(cmos_read(m, RTC_MINUTES));
    tm.tm_hour = bcd(cmos_read(m, RTC_HOURS));
    tm.tm_mday = bcd(cmos_read(m, RTC_DAY_OF_MONTH));
    tm.tm_mon = bcd(cmos_read(m, RTC_MONTH)) - 1;
    tm.tm_year = bcd(cmos_read(m, RTC_CENTURY)) * 100 + bcd(cmos_read(m, RTC_YEAR)) - 1900;
    return timegm(&tm);
}

static void test_host_utc_bcd(void **st)
{
    struct machine *m = *st;
    time_t now = time(NULL), t = rtc_time_bcd(m);

    assert_true(cmos_read(m, RTC_REG_B) & RTC_B_24H);
    assert_false(cmos_read(m, RTC_REG_B) & RTC_B_DM_BINARY);
    assert_true(t >= now - 2 && t <= now + 2);
    assert_int_equal(cmos_read(m, RTC_REG_D), RTC_D_VRT);
}

static void test_binary_and_12h(void **st)
{
    struct machine *m = *st;
    time_t now = time(NULL);
    struct tm tm;
    uint8_t h;

    gmtime_r(&now, &tm);
    cmos_write(m, RTC_REG_B, RTC_B_DM_BINARY | RTC_B_24H);
    assert_int_equal(cmos_read(m, RTC_YEAR), tm.tm_year % 100);
    assert_int_equal(cmos_read(m, RTC_CENTURY), 20);
    cmos_write(m, RTC_REG_B, RTC_B_DM_BINARY);    /* 12 h */
    h = cmos_read(m, RTC_HOURS);
    gmtime_r(&now, &tm);
    if (tm.tm_min != 59) {    /* skip the check across an hour boundary */
        int want = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12;
        assert_int_equal(h & 0x7f, want);
        assert_int_equal(!!(h & 0x80), tm.tm_hour >= 12);
    }
}

static void test_set_time(void **st)
{
    struct machine *m = *st;

    cmos_write(m, RTC_REG_B, RTC_B_SET | RTC_B_24H);
    cmos_write(m, RTC_SECONDS, 0x30);
    cmos_write(m, RTC_MINUTES, 0x45);
    cmos_write(m, RTC_HOURS, 0x13);
    cmos_write(m, RTC_DAY_OF_MONTH, 0x28);
    cmos_write(m, RTC_MONTH, 0x02);
    cmos_write(m, RTC_YEAR, 0x31);
    cmos_write(m, RTC_CENTURY, 0x20);
    assert_int_equal(cmos_read(m, RTC_YEAR), 0x31);   /* held while SET */
    cmos_write(m, RTC_REG_B, RTC_B_24H);
    time_t want = 1930052730;                       /* 2031-02-28 13:45:30 UTC */
    time_t got = rtc_time_bcd(m);
    assert_true(got >= want && got <= want + 2);
    /* The far ends of what the registers can say: 9999 and 0000. */
    static const uint8_t centuries[] = { 0x99, 0x00 };
    for (int i = 0; i < 2; i++) {
        cmos_write(m, RTC_REG_B, RTC_B_SET | RTC_B_24H);
        cmos_write(m, RTC_CENTURY, centuries[i]);
        cmos_write(m, RTC_YEAR, centuries[i]);
        cmos_write(m, RTC_REG_B, RTC_B_24H);
        assert_int_equal(cmos_read(m, RTC_CENTURY), centuries[i]);
        assert_int_equal(cmos_read(m, RTC_YEAR), centuries[i]);
        (void)cmos_read(m, RTC_REG_A);
        (void)cmos_read(m, RTC_REG_C);
    }
    /* Nonsense values from the guest give some time, never a crash. */
    cmos_write(m, RTC_REG_B, RTC_B_SET | RTC_B_24H);
    cmos_write(m, RTC_MONTH, 0xff);
    cmos_write(m, RTC_DAY_OF_MONTH, 0x00);
    cmos_write(m, RTC_HOURS, 0xee);
    cmos_write(m, RTC_REG_B, RTC_B_24H);
    (void)rtc_time_bcd(m);
}

static void test_index_and_nvram(void **st)
{
    struct machine *m = *st;

    cmos_write(m, 0x40, 0x12);
    assert_int_equal(cmos_read(m, 0x40), 0x12);
    assert_int_equal(cmos_read(m, 0x80 | 0x40), 0x12);   /* NMI-disable bit */
    cmos_write(m, 0xff, 0x34);                           /* masked to 0x7f */
    assert_int_equal(cmos_read(m, 0x7f), 0x34);
    cmos_write(m, RTC_REG_D, 0);
    assert_int_equal(cmos_read(m, RTC_REG_D), RTC_D_VRT);
    uint8_t v = 0;
    machine_pio(m, 0x70, &v, 1, false);
    assert_int_equal(v, 0xff);                           /* index is write-only */
    uint32_t w = 0x7e;
    machine_pio(m, 0x70, &w, 4, true);                   /* wide access */
    assert_int_equal(cmos_read(m, 0x7e), cmos_read(m, 0x7e));
}

static void test_memory_size_bytes(void **st)
{
    struct machine *m = *st;

    assert_int_equal(cmos_read(m, 0x15) | cmos_read(m, 0x16) << 8, 640);
    assert_int_equal(cmos_read(m, 0x17) | cmos_read(m, 0x18) << 8, 63 * 1024);
    assert_int_equal(cmos_read(m, 0x30) | cmos_read(m, 0x31) << 8, 63 * 1024);
    assert_int_equal(cmos_read(m, 0x34) | cmos_read(m, 0x35) << 8, 48 * 16);
    assert_int_equal(cmos_read(m, 0x5b) | cmos_read(m, 0x5c) << 8 | cmos_read(m, 0x5d) << 16, 0);
}

static void test_periodic_flag_and_irq(void **st)
{
    struct machine *m = *st;
    uint8_t c;

    cmos_read(m, RTC_REG_C);
    cmos_write(m, RTC_REG_A, 0x26);                     /* 1024 Hz */
    usleep(3000);
    c = cmos_read(m, RTC_REG_C);
    assert_true(c & RTC_C_PF);
    assert_false(c & RTC_C_IRQF);                       /* PIE off */
    assert_int_equal(irq8_raises, 0);
    cmos_write(m, RTC_REG_B, RTC_B_24H | RTC_B_PIE);
    usleep(3000);
    c = cmos_read(m, RTC_REG_C);
    assert_int_equal(c & (RTC_C_PF | RTC_C_IRQF), RTC_C_PF | RTC_C_IRQF);
    assert_int_equal(irq8_raises, 1);
    assert_int_equal(irq8_level, 0);                    /* reading C lowered it */
    cmos_write(m, RTC_REG_C, 0xff);                     /* read-only */
    cmos_write(m, RTC_REG_B, RTC_B_24H);
}

/* Over one second boundary: UIP shows before it, UF and (with a
 * don't-care alarm) AF after it. */
static void test_update_cycle(void **st)
{
    struct machine *m = *st;
    bool uip = false;
    uint8_t c;

    cmos_write(m, RTC_SECONDS_ALARM, 0xc0);
    cmos_write(m, RTC_MINUTES_ALARM, 0xc0);
    cmos_write(m, RTC_HOURS_ALARM, 0xc0);
    cmos_write(m, RTC_REG_B, RTC_B_24H | RTC_B_UIE | RTC_B_AIE);
    cmos_read(m, RTC_REG_C);
    time_t start = time(NULL);
    while (!uip && time(NULL) < start + 3)
        uip = cmos_read(m, RTC_REG_A) & RTC_A_UIP;
    assert_true(uip);
    usleep(2000);
    c = cmos_read(m, RTC_REG_C);
    assert_int_equal(c & (RTC_C_UF | RTC_C_AF | RTC_C_IRQF), RTC_C_UF | RTC_C_AF | RTC_C_IRQF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_utc_bcd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_and_12h, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_and_nvram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_size_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_flag_and_irq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_cycle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
