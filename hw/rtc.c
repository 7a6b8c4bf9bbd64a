/* MC146818 RTC: the guest's wall clock is the host's UTC plus an offset the
 * guest sets by writing the time registers.  Periodic, update-ended and
 * alarm interrupts run from one main-loop timer while enabled; with them
 * off, the flags in register C are derived when the guest reads it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw/pc_devices.h"
#include "hw/rtc.h"
#include "util/log.h"
#include "util/main_loop.h"

#define NSEC 1000000000LL
/* UIP is set for the 244 us before each update (the 1 s boundary). */
#define RTC_UIP_NS 244000LL

struct rtc {
    struct machine *m;
    struct timer *timer;
    uint8_t index;
    uint8_t cmos[RTC_CMOS_SIZE];
    int64_t offset_s;       /* guest time - host time, whole seconds */
    uint64_t next_periodic; /* monotonic ns of the next periodic tick */
    uint64_t last_c_read;   /* monotonic ns of the last lazy flag update */
    int64_t last_update_s;  /* guest second last seen by the update logic */
    int irq_level;
};

/* Guest wall clock: seconds since the epoch, and ns into the second.  Kept
 * apart because the guest may set any year up to 9999, whose seconds do
 * not fit an int64 count of nanoseconds. */
static int64_t rtc_now(const struct rtc *r, int64_t *nsec)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (nsec)
        *nsec = ts.tv_nsec;
    return (int64_t)ts.tv_sec + r->offset_s;
}

static bool rtc_binary(const struct rtc *r)
{
    return r->cmos[RTC_REG_B] & RTC_B_DM_BINARY;
}

static uint8_t to_reg(const struct rtc *r, int v)
{
    v = v < 0 ? 0 : v % 100;
    if (rtc_binary(r))
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static int from_reg(const struct rtc *r, uint8_t v)
{
    if (rtc_binary(r))
        return v;
    return ((v >> 4) & 0x0f) * 10 + (v & 0x0f);
}

static uint8_t hours_to_reg(const struct rtc *r, int h)
{
    if (r->cmos[RTC_REG_B] & RTC_B_24H)
        return to_reg(r, h);
    /* 12-hour mode: 12, 1..11, bit 7 = PM. */
    return (uint8_t)(to_reg(r, h % 12 ? h % 12 : 12) | (h >= 12 ? 0x80 : 0));
}

static int hours_from_reg(const struct rtc *r, uint8_t v)
{
    int h;

    if (r->cmos[RTC_REG_B] & RTC_B_24H)
        return from_reg(r, v);
    h = from_reg(r, v & 0x7f) % 12;
    return (v & 0x80) ? h + 12 : h;
}

/* Write the guest time into the time registers (unless the guest holds
 * them with SET, in which case they are its to edit). */
static void rtc_latch_time(struct rtc *r)
{
    time_t t;
    struct tm tm;

    if (r->cmos[RTC_REG_B] & RTC_B_SET)
        return;
    t = (time_t)rtc_now(r, NULL);
    if (!gmtime_r(&t, &tm))
        return;
    int year = tm.tm_year + 1900;
    r->cmos[RTC_SECONDS] = to_reg(r, tm.tm_sec);
    r->cmos[RTC_MINUTES] = to_reg(r, tm.tm_min);
    r->cmos[RTC_HOURS] = hours_to_reg(r, tm.tm_hour);
    r->cmos[RTC_DAY_OF_WEEK] = to_reg(r, tm.tm_wday + 1);
    r->cmos[RTC_DAY_OF_MONTH] = to_reg(r, tm.tm_mday);
    r->cmos[RTC_MONTH] = to_reg(r, tm.tm_mon + 1);
    r->cmos[RTC_YEAR] = to_reg(r, year % 100);
    r->cmos[RTC_CENTURY] = to_reg(r, year / 100);
}

/* The guest edited the time registers: make them the new guest time.
 * Nonsense values (hostile or not) still give some time; timegm
 * normalises them. */
static void rtc_take_time(struct rtc *r)
{
    struct tm tm = { 0 };
    struct timespec ts;
    time_t t;

    tm.tm_sec = from_reg(r, r->cmos[RTC_SECONDS]) % 60;
    tm.tm_min = from_reg(r, r->cmos[RTC_MINUTES]) % 60;
    tm.tm_hour = hours_from_reg(r, r->cmos[RTC_HOURS]) % 24;
    tm.tm_mday = from_reg(r, r->cmos[RTC_DAY_OF_MONTH]) % 32;
    if (tm.tm_mday == 0)
        tm.tm_mday = 1;
    tm.tm_mon = (from_reg(r, r->cmos[RTC_MONTH]) + 11) % 12;
    tm.tm_year = from_reg(r, r->cmos[RTC_CENTURY]) % 100 * 100 +
                 from_reg(r, r->cmos[RTC_YEAR]) % 100 - 1900;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->offset_s = (int64_t)t - (int64_t)ts.tv_sec;
}

static void rtc_update_irq(struct rtc *r)
{
    uint8_t b = r->cmos[RTC_REG_B];
    uint8_t c = r->cmos[RTC_REG_C] & ~RTC_C_IRQF;
    int level;

    if ((c & RTC_C_PF && b & RTC_B_PIE) || (c & RTC_C_AF && b & RTC_B_AIE) ||
        (c & RTC_C_UF && b & RTC_B_UIE))
        c |= RTC_C_IRQF;
    r->cmos[RTC_REG_C] = c;
    level = (c & RTC_C_IRQF) != 0;
    if (level != r->irq_level) {
        r->irq_level = level;
        machine_set_irq(r->m, RTC_IRQ, level);
    }
}

/* Periodic rate from register A's RS bits (0 = off), in ns. */
static uint64_t rtc_period_ns(const struct rtc *r)
{
    unsigned rs = r->cmos[RTC_REG_A] & 0x0f;

    if (rs == 0 || (r->cmos[RTC_REG_A] & 0x70) != 0x20)
        return 0;   /* no rate, or divider not in normal 32.768 kHz mode */
    if (rs < 3)
        rs += 7;
    return (uint64_t)NSEC * (1ULL << (rs - 1)) / 32768;
}

static bool alarm_field_matches(const struct rtc *r, uint8_t alarm, uint8_t now)
{
    return (alarm & 0xc0) == 0xc0 || alarm == now;   /* 0xc0-0xff: don't care */
}

/* Catch up register C with time: the seconds that ended since the last look
 * set UF (and AF on an alarm match), periodic ticks set PF. */
static void rtc_catch_up(struct rtc *r)
{
    uint64_t mono = clock_ns();
    int64_t sec = rtc_now(r, NULL);
    uint64_t period = rtc_period_ns(r);

    if (sec != r->last_update_s && !(r->cmos[RTC_REG_B] & RTC_B_SET)) {
        r->last_update_s = sec;
        r->cmos[RTC_REG_C] |= RTC_C_UF;
        rtc_latch_time(r);
        if (alarm_field_matches(r, r->cmos[RTC_SECONDS_ALARM], r->cmos[RTC_SECONDS]) &&
            alarm_field_matches(r, r->cmos[RTC_MINUTES_ALARM], r->cmos[RTC_MINUTES]) &&
            alarm_field_matches(r, r->cmos[RTC_HOURS_ALARM], r->cmos[RTC_HOURS]))
            r->cmos[RTC_REG_C] |= RTC_C_AF;
    }
    if (period && mono >= r->next_periodic) {
        r->cmos[RTC_REG_C] |= RTC_C_PF;
        r->next_periodic = mono + period - (mono - r->next_periodic) % period;
    }
    rtc_update_irq(r);
}

static void rtc_arm_timer(struct rtc *r);

static void rtc_timer_cb(void *opaque)
{
    struct rtc *r = opaque;

    rtc_catch_up(r);
    rtc_arm_timer(r);
}

/* Run the timer only while an interrupt that needs it is enabled. */
static void rtc_arm_timer(struct rtc *r)
{
    uint8_t b = r->cmos[RTC_REG_B];
    uint64_t mono = clock_ns();
    uint64_t deadline = UINT64_MAX;

    if (!r->timer)
        return;
    if ((b & RTC_B_PIE) && rtc_period_ns(r)) {
        if (r->next_periodic <= mono)
            r->next_periodic = mono + rtc_period_ns(r);
        deadline = r->next_periodic;
    }
    if (b & (RTC_B_UIE | RTC_B_AIE)) {
        int64_t into;
        rtc_now(r, &into);
        deadline = MIN(deadline, mono + (uint64_t)(NSEC - into));
    }
    if (deadline == UINT64_MAX)
        timer_del(r->timer);
    else
        timer_mod(r->timer, deadline);
}

static uint8_t rtc_read(struct rtc *r, uint8_t idx)
{
    uint8_t v;

    switch (idx) {
    case RTC_SECONDS: case RTC_MINUTES: case RTC_HOURS: case RTC_DAY_OF_WEEK:
    case RTC_DAY_OF_MONTH: case RTC_MONTH: case RTC_YEAR: case RTC_CENTURY:
        rtc_latch_time(r);
        return r->cmos[idx];
    case RTC_REG_A: {
        int64_t into;
        rtc_now(r, &into);
        v = r->cmos[RTC_REG_A] & ~RTC_A_UIP;
        if (!(r->cmos[RTC_REG_B] & RTC_B_SET) && (v & 0x70) == 0x20 &&
            into >= NSEC - RTC_UIP_NS)
            v |= RTC_A_UIP;
        return v;
    }
    case RTC_REG_C:
        rtc_catch_up(r);
        v = r->cmos[RTC_REG_C];
        r->cmos[RTC_REG_C] = 0;
        rtc_update_irq(r);
        return v;
    case RTC_REG_D:
        return RTC_D_VRT;
    default:
        return r->cmos[idx];
    }
}

static void rtc_write(struct rtc *r, uint8_t idx, uint8_t v)
{
    switch (idx) {
    case RTC_SECONDS: case RTC_MINUTES: case RTC_HOURS: case RTC_DAY_OF_WEEK:
    case RTC_DAY_OF_MONTH: case RTC_MONTH: case RTC_YEAR: case RTC_CENTURY:
        rtc_latch_time(r);
        r->cmos[idx] = v;
        if (!(r->cmos[RTC_REG_B] & RTC_B_SET))
            rtc_take_time(r);
        break;
    case RTC_REG_A:
        r->cmos[RTC_REG_A] = v & ~RTC_A_UIP;
        r->next_periodic = 0;
        rtc_arm_timer(r);
        break;
    case RTC_REG_B: {
        uint8_t old = r->cmos[RTC_REG_B];
        /* Latch the time in the old format before the format changes. */
        rtc_latch_time(r);
        if (!(old & RTC_B_SET) && (v & RTC_B_SET)) {
            r->cmos[RTC_REG_B] = v;
        } else if ((old & RTC_B_SET) && !(v & RTC_B_SET)) {
            rtc_take_time(r);   /* registers are in the old format still */
            r->cmos[RTC_REG_B] = v;
        } else {
            r->cmos[RTC_REG_B] = v;
        }
        rtc_latch_time(r);
        rtc_update_irq(r);
        rtc_arm_timer(r);
        break;
    }
    case RTC_REG_C:
    case RTC_REG_D:
        break;   /* read-only */
    default:
        r->cmos[idx] = v;
        break;
    }
}

static uint64_t rtc_io_read(void *opaque, uint64_t offset, unsigned size)
{
    struct rtc *r = opaque;

    if (offset == 0)
        return 0xff;   /* the index register is write-only */
    return rtc_read(r, r->index);
}

static void rtc_io_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct rtc *r = opaque;

    if (offset == 0) {
        /* Bit 7 masks NMIs on a PC; vmon raises no NMIs through it. */
        r->index = value & 0x7f;
        return;
    }
    rtc_write(r, r->index, (uint8_t)value);
}

static const struct io_ops rtc_ops = {
    .read = rtc_io_read,
    .write = rtc_io_write,
};

/* Memory sizes where BIOSes and QEMU leave them. */
static void rtc_set_memory(struct rtc *r)
{
    struct machine *m = r->m;
    uint64_t ext_kb, above16, above4g;

    r->cmos[0x15] = 640 & 0xff;
    r->cmos[0x16] = 640 >> 8;
    ext_kb = m->lowmem_size > MiB ? (m->lowmem_size - MiB) / KiB : 0;
    ext_kb = MIN(ext_kb, 0xffffULL);
    r->cmos[0x17] = r->cmos[0x30] = (uint8_t)ext_kb;
    r->cmos[0x18] = r->cmos[0x31] = (uint8_t)(ext_kb >> 8);
    above16 = m->lowmem_size > 16 * MiB ? (m->lowmem_size - 16 * MiB) / (64 * KiB) : 0;
    above16 = MIN(above16, 0xffffULL);
    r->cmos[0x34] = (uint8_t)above16;
    r->cmos[0x35] = (uint8_t)(above16 >> 8);
    above4g = m->highmem_size / (64 * KiB);
    above4g = MIN(above4g, 0xffffffULL);
    r->cmos[0x5b] = (uint8_t)above4g;
    r->cmos[0x5c] = (uint8_t)(above4g >> 8);
    r->cmos[0x5d] = (uint8_t)(above4g >> 16);
    r->cmos[0x5f] = (uint8_t)(m->nr_vcpus > 0 ? m->nr_vcpus - 1 : 0);
    r->cmos[0x14] = 0x02;   /* equipment: FPU present, no floppy */
}

static void rtc_reset(void *opaque)
{
    struct rtc *r = opaque;

    /* NVRAM survives a reset; control registers go to BIOS defaults. */
    r->cmos[RTC_REG_A] = 0x26;   /* 32.768 kHz, 1024 Hz periodic rate */
    r->cmos[RTC_REG_B] = RTC_B_24H;
    r->cmos[RTC_REG_C] = 0;
    r->index = 0;
    r->next_periodic = 0;
    r->last_update_s = rtc_now(r, NULL);
    rtc_set_memory(r);
    rtc_latch_time(r);
    rtc_update_irq(r);
    rtc_arm_timer(r);
}

static void rtc_destroy(void *opaque)
{
    struct rtc *r = opaque;

    if (r->timer)
        timer_free(r->timer);
    free(r);
}

int rtc_create(struct machine *m)
{
    struct rtc *r = calloc(1, sizeof(*r));
    int ret;

    if (!r)
        return -ENOMEM;
    r->m = m;
    r->timer = timer_new(rtc_timer_cb, r);
    if (!r->timer) {
        free(r);
        return -ENOMEM;
    }
    rtc_reset(r);
    ret = machine_register_pio(m, RTC_IO_BASE, 2, &rtc_ops, r, "rtc");
    if (ret < 0) {
        rtc_destroy(r);
        return ret;
    }
    return machine_add_device(m, "rtc", r, rtc_reset, rtc_destroy);
}

/* ---- snapshot state (migration/vmstate.h) ---- */

#include "migration/migration.h"

static void rtc_post_load(void *opaque)
{
    struct rtc *r = opaque;

    r->index &= RTC_CMOS_SIZE - 1;
    r->irq_level = r->irq_level ? 1 : 0;
    rtc_arm_timer(r);
}

static const struct vmstate_field rtc_fields[] = {
    VMS_U8_FIELD(struct rtc, index), VMS_U8_FIELD(struct rtc, cmos),
    VMS_U64_FIELD(struct rtc, offset_s), VMS_CLOCK_FIELD(struct rtc, next_periodic),
    VMS_CLOCK_FIELD(struct rtc, last_c_read), VMS_U64_FIELD(struct rtc, last_update_s),
    VMS_INT_FIELD(struct rtc, irq_level),
    VMS_END,
};

const struct vmstate_desc rtc_vmstate = {
    .name = "rtc", .version = 1, .fields = rtc_fields, .post_load = rtc_post_load,
};
