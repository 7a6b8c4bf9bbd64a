/* rtc: read the CMOS clock twice with the update-in-progress protocol and
 * check ranges and that time did not go backwards.  Never prints the time,
 * so output does not depend on when the test runs. */
#include "rt.h"

struct rtc_time {
    unsigned sec, min, hour, day, mon, year;
};

static bool bcd_ok(uint8_t v)
{
    return (v & 0x0f) <= 9 && (v >> 4) <= 9;
}

static unsigned from_bcd(uint8_t v)
{
    return (v >> 4) * 10 + (v & 0x0f);
}

static void read_raw(uint8_t r[6])
{
    static const uint8_t regs[6] = { 0x00, 0x02, 0x04, 0x07, 0x08, 0x09 };
    for (int i = 0; i < 100000 && (cmos_read(0x0a) & 0x80); i++)
        ;
    for (int i = 0; i < 6; i++)
        r[i] = cmos_read(regs[i]);
}

static void rtc_read(struct rtc_time *t)
{
    uint8_t a[6], b[6];
    int tries = 0;
    /* Two equal snapshots mean no update happened in between. */
    read_raw(a);
    do {
        memcpy(b, a, sizeof(a));
        read_raw(a);
        if (++tries > 10)
            test_fail("rtc: readings never agreed");
    } while (memcmp(a, b, sizeof(a)));

    uint8_t regb = cmos_read(0x0b);
    bool bcd = !(regb & 0x04), h24 = regb & 0x02;
    bool pm = !h24 && (a[2] & 0x80);
    a[2] &= 0x7f;
    if (bcd) {
        for (int i = 0; i < 6; i++) {
            if (!bcd_ok(a[i]))
                test_fail("rtc: register %d is not BCD", i);
            a[i] = (uint8_t)from_bcd(a[i]);
        }
    }
    t->sec = a[0];
    t->min = a[1];
    t->hour = a[2];
    t->day = a[3];
    t->mon = a[4];
    t->year = a[5];
    if (!h24) {
        if (t->hour < 1 || t->hour > 12)
            test_fail("rtc: 12-hour value out of range");
        t->hour = t->hour % 12 + (pm ? 12 : 0);
    }
}

static void check_ranges(const struct rtc_time *t)
{
    if (t->sec > 59)
        test_fail("rtc: seconds out of range");
    if (t->min > 59)
        test_fail("rtc: minutes out of range");
    if (t->hour > 23)
        test_fail("rtc: hours out of range");
    if (t->day < 1 || t->day > 31)
        test_fail("rtc: day out of range");
    if (t->mon < 1 || t->mon > 12)
        test_fail("rtc: month out of range");
    if (t->year > 99)
        test_fail("rtc: year out of range");
}

void test_main(void)
{
    if (!(cmos_read(0x0d) & 0x80))
        test_fail("rtc: register D says time is not valid");
    struct rtc_time t1, t2;
    rtc_read(&t1);
    check_ranges(&t1);
    pit_delay_us(20000);
    rtc_read(&t2);
    check_ranges(&t2);
    long s1 = (long)t1.hour * 3600 + t1.min * 60 + t1.sec;
    long s2 = (long)t2.hour * 3600 + t2.min * 60 + t2.sec;
    bool same_day = t1.day == t2.day && t1.mon == t2.mon && t1.year == t2.year;
    if (same_day && s2 < s1)
        test_fail("rtc: time went backwards");
    if (same_day && s2 - s1 > 600)
        test_fail("rtc: clock jumped forward");
    if (!same_day && !(s1 > 86000 && s2 < 400))
        test_fail("rtc: date changed outside midnight");
    kprintf("rtc: ok\n");
}
