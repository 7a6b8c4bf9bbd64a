/* The 8254 PIT, computed from the host clock. */
#include <string.h>
#include "hw/pit.h"
#include "util/log.h"

#define NS_PER_SEC 1000000000ull
/* DRAM refresh request toggles port 0x61 bit 4 every 15.085 us. */
#define REFRESH_NS 15085ull

static uint64_t ticks_at(const struct pit_channel *c, uint64_t now)
{
    int64_t elapsed = (int64_t)(now - (uint64_t)c->count_load_time);
    if (elapsed <= 0)
        return 0;
    return (uint64_t)((unsigned __int128)elapsed * PIT_FREQ_HZ / NS_PER_SEC);
}

/* The host time at which tick n begins (rounded up to a whole ns). */
static uint64_t time_of_tick(const struct pit_channel *c, uint64_t n)
{
    unsigned __int128 ns = ((unsigned __int128)n * NS_PER_SEC + PIT_FREQ_HZ - 1) / PIT_FREQ_HZ;
    return (uint64_t)c->count_load_time + (uint64_t)ns;
}

static bool programmed(const struct pit_channel *c)
{
    return c->mode <= 5 && c->count != 0;
}

/* The counting element, in binary (BCD conversion happens on read). */
static uint32_t counter_value(const struct pit_channel *c, uint64_t now)
{
    if (!programmed(c))
        return 0;
    uint64_t d = ticks_at(c, now), n = c->count;
    switch (c->mode) {
    case 2:
        return (uint32_t)(n - d % n);
    case 3:
        return (uint32_t)(n - (2 * d) % n);
    default: { /* 0, 1, 4, 5: count down and wrap */
        uint64_t modulus = c->bcd ? 10000 : 0x10000;
        return (uint32_t)((n + modulus - d % modulus) % modulus);
    }
    }
}

static bool out_value(const struct pit_channel *c, uint64_t now)
{
    if (!programmed(c))
        return false;
    uint64_t d = ticks_at(c, now), n = c->count;
    switch (c->mode) {
    case 0:
    case 1:
        return d >= n;
    case 2:
        return !c->gate || d % n != n - 1;
    case 3:
        return !c->gate || d % n < (n + 1) / 2;
    default: /* 4, 5: low for one clock at terminal count */
        return d != n;
    }
}

uint32_t pit_counter(const struct pit *p, unsigned ch, uint64_t now)
{
    return ch < 3 ? counter_value(&p->ch[ch], now) : 0;
}

bool pit_out(const struct pit *p, unsigned ch, uint64_t now)
{
    return ch < 3 && out_value(&p->ch[ch], now);
}

static uint16_t to_bcd(uint32_t v)
{
    v %= 10000;
    return (uint16_t)((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | v % 10);
}

static uint32_t from_bcd(uint32_t v)
{
    /* Nibbles above 9 are the guest's problem; keep the arithmetic sane. */
    return ((v >> 12) & 0xf) * 1000 + ((v >> 8) & 0xf) * 100 + ((v >> 4) & 0xf) * 10 + (v & 0xf);
}

static uint16_t visible_count(const struct pit_channel *c, uint64_t now)
{
    uint32_t v = counter_value(c, now);
    return c->bcd ? to_bcd(v) : (uint16_t)v;
}

/* ---- IRQ0 ---- */

static bool mode_periodic(uint8_t mode)
{
    return mode == 2 || mode == 3;
}

/* Next IRQ0 edge strictly after `now`: OUT rises at each period boundary in
 * modes 2 and 3, once at terminal count otherwise. */
static void irq_schedule(struct pit *p, uint64_t now)
{
    const struct pit_channel *c = &p->ch[0];
    p->irq_deadline_ns = 0;
    if (!programmed(c))
        return;
    uint64_t d = ticks_at(c, now), n = c->count;
    if (!mode_periodic(c->mode)) {
        uint64_t t = time_of_tick(c, n);
        if (t > now)
            p->irq_deadline_ns = t;
        return;
    }
    uint64_t t = time_of_tick(c, (d / n + 1) * n);
    if (t <= now)  /* rounding: the boundary is this very ns */
        t = time_of_tick(c, (d / n + 2) * n);
    uint64_t period_ns = n * NS_PER_SEC / PIT_FREQ_HZ;
    if (period_ns < PIT_MIN_PERIOD_NS && t - now < PIT_MIN_PERIOD_NS)
        t = now + PIT_MIN_PERIOD_NS;
    p->irq_deadline_ns = t;
}

uint64_t pit_next_deadline_ns(const struct pit *p)
{
    return p->irq_deadline_ns;
}

static void pulse(struct pit *p)
{
    if (p->set_irq) {
        p->set_irq(p->opaque, 1);
        p->set_irq(p->opaque, 0);
    }
}

void pit_timer_check(struct pit *p, uint64_t now)
{
    if (!p->irq_deadline_ns || now < p->irq_deadline_ns)
        return;
    pulse(p);
    /* Periods that passed unseen (the host did not run us) are owed to the
     * guest and paid one per acknowledge (pit_irq_acked), as KVM's PIT
     * reinjects them: a kernel counting ticks keeps time. */
    const struct pit_channel *c = &p->ch[0];
    uint64_t period_ns = (uint64_t)c->count * NS_PER_SEC / PIT_FREQ_HZ;
    if (mode_periodic(c->mode) && period_ns >= PIT_MIN_PERIOD_NS) {
        uint64_t lost = (now - p->irq_deadline_ns) / period_ns;
        uint64_t cap = MIN(PIT_MAX_BACKLOG, NS_PER_SEC / period_ns);
        p->irq_missed = (uint32_t)MIN(p->irq_missed + lost, cap);
    }
    irq_schedule(p, now);
}

void pit_irq_acked(struct pit *p)
{
    if (p->irq_missed) {
        p->irq_missed--;
        pulse(p);
    }
}

void pit_restore(struct pit *p, uint64_t now)
{
    p->irq_missed = 0;
    irq_schedule(p, now);
}

/* ---- programming ---- */

static void load_count(struct pit *p, unsigned ch, uint32_t val, uint64_t now)
{
    struct pit_channel *c = &p->ch[ch];
    if (c->bcd)
        val = from_bcd(val);
    if (val == 0)
        val = c->bcd ? 10000 : 0x10000;
    c->count = val;
    c->count_load_time = (int64_t)now;
    if (ch == 0) {
        p->irq_missed = 0;
        irq_schedule(p, now);
    }
}

static void latch_count(struct pit_channel *c, uint64_t now)
{
    if (c->count_latched)
        return;  /* a second latch before the read is ignored */
    c->latched_count = visible_count(c, now);
    c->count_latched = c->rw_mode;
}

static void latch_status(struct pit_channel *c, uint64_t now)
{
    if (c->status_latched)
        return;
    c->status = (uint8_t)(out_value(c, now) << 7 | (c->rw_mode & 3) << 4 | (c->mode & 7) << 1 |
                          (c->bcd & 1));
    c->status_latched = 1;
}

static void write_control(struct pit *p, uint8_t val, uint64_t now)
{
    unsigned ch = val >> 6;
    if (ch == 3) { /* read-back: bits 1-3 select, bit 5 = !count, bit 4 = !status */
        for (unsigned i = 0; i < 3; i++) {
            if (!(val & (2u << i)))
                continue;
            if (!(val & 0x20))
                latch_count(&p->ch[i], now);
            if (!(val & 0x10))
                latch_status(&p->ch[i], now);
        }
        return;
    }
    struct pit_channel *c = &p->ch[ch];
    unsigned access = (val >> 4) & 3;
    if (access == 0) {
        latch_count(c, now);
        return;
    }
    c->rw_mode = (uint8_t)access;
    c->read_state = (uint8_t)access;
    c->write_state = (uint8_t)access;
    c->mode = (val >> 1) & 7;
    if (c->mode >= 6)
        c->mode -= 4;  /* modes 6 and 7 are aliases of 2 and 3 */
    c->bcd = val & 1;
    c->count_latched = 0;
    /* A control word stops the counter until the new count is written. */
    if (ch == 0) {
        p->irq_deadline_ns = 0;
        p->irq_missed = 0;
    }
}

static uint8_t read_channel(struct pit_channel *c, uint64_t now)
{
    if (c->status_latched) {
        c->status_latched = 0;
        return c->status;
    }
    if (c->count_latched) {
        uint8_t v;
        switch (c->count_latched) {
        case PIT_RW_MSB:
            v = c->latched_count >> 8;
            c->count_latched = 0;
            break;
        case PIT_RW_WORD0:
            v = c->latched_count & 0xff;
            c->count_latched = PIT_RW_WORD1;
            break;
        case PIT_RW_WORD1:
            v = c->latched_count >> 8;
            c->count_latched = 0;
            break;
        default:
            v = c->latched_count & 0xff;
            c->count_latched = 0;
            break;
        }
        return v;
    }
    uint16_t count = visible_count(c, now);
    switch (c->read_state) {
    case PIT_RW_LSB:
        return count & 0xff;
    case PIT_RW_MSB:
        return count >> 8;
    case PIT_RW_WORD0:
        c->read_state = PIT_RW_WORD1;
        return count & 0xff;
    case PIT_RW_WORD1:
        c->read_state = PIT_RW_WORD0;
        return count >> 8;
    default:
        return 0;  /* never programmed */
    }
}

static void write_channel(struct pit *p, unsigned ch, uint8_t val, uint64_t now)
{
    struct pit_channel *c = &p->ch[ch];
    switch (c->write_state) {
    case PIT_RW_LSB:
        load_count(p, ch, val, now);
        break;
    case PIT_RW_MSB:
        load_count(p, ch, (uint32_t)val << 8, now);
        break;
    case PIT_RW_WORD0:
        c->write_latch = val;
        c->write_state = PIT_RW_WORD1;
        break;
    case PIT_RW_WORD1:
        load_count(p, ch, c->write_latch | (uint32_t)val << 8, now);
        c->write_state = PIT_RW_WORD0;
        break;
    default:
        LOG(LOG_GUEST_ERRORS, "pit: count written to unprogrammed channel %u\n", ch);
        break;
    }
}

void pit_set_gate(struct pit *p, unsigned ch, bool gate, uint64_t now)
{
    if (ch >= 3)
        return;
    struct pit_channel *c = &p->ch[ch];
    /* A rising gate restarts the count in modes 1, 2, 3 and 5. */
    if (gate && !c->gate && c->mode <= 5 && c->mode != 0 && c->mode != 4) {
        c->count_load_time = (int64_t)now;
        if (ch == 0)
            irq_schedule(p, now);
    }
    c->gate = gate;
}

uint8_t pit_ioport_read(struct pit *p, uint16_t port, uint64_t now)
{
    if (port == PIT_PORT61) {
        return (uint8_t)((p->port61 & 0x0f) | ((now / REFRESH_NS) & 1) << 4 |
                         out_value(&p->ch[2], now) << 5);
    }
    unsigned idx = port - PIT_BASE_PORT;
    if (idx < 3)
        return read_channel(&p->ch[idx], now);
    return 0xff;  /* the control word register is write-only */
}

void pit_ioport_write(struct pit *p, uint16_t port, uint8_t val, uint64_t now)
{
    if (port == PIT_PORT61) {
        p->port61 = val & 0x0f;
        pit_set_gate(p, 2, val & 1, now);
        return;
    }
    unsigned idx = port - PIT_BASE_PORT;
    if (idx < 3)
        write_channel(p, idx, val, now);
    else if (idx == 3)
        write_control(p, val, now);
}

void pit_reset(struct pit *p, uint64_t now)
{
    for (unsigned i = 0; i < 3; i++) {
        struct pit_channel *c = &p->ch[i];
        memset(c, 0, sizeof(*c));
        c->mode = 0xff;
        c->gate = i != 2;
        c->count_load_time = (int64_t)now;
    }
    p->port61 = 0;
    p->irq_deadline_ns = 0;
    p->irq_missed = 0;
}

void pit_init(struct pit *p, void (*set_irq)(void *opaque, int level), void *opaque)
{
    memset(p, 0, sizeof(*p));
    p->set_irq = set_irq;
    p->opaque = opaque;
    pit_reset(p, 0);
}
