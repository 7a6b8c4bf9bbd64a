/* The 8254 programmable interval timer (ports 0x40-0x43) and the PC's
 * system control port B (0x61: channel 2 gate, speaker, OUT2, refresh).
 *
 * Counters are not ticked: their values and OUT pins are computed from the
 * host clock (1.193182 MHz since count_load_time), so a guest polling them
 * (Linux's PIT TSC calibration reads channel 2 and port 0x61 bit 5) sees
 * accurate time without any thread.  Channel 0's OUT drives IRQ0 through
 * the set_irq hook; its next edge is pit_next_deadline_ns().
 *
 * Every time-dependent function takes `now` (host CLOCK_MONOTONIC ns), the
 * same time base as KVM's count_load_time.  The channel fields are those of
 * KVM's struct kvm_pit_channel_state.  Gate low only matters for
 * retriggering (modes 1, 2, 3, 5) and for OUT in modes 2 and 3; a low gate
 * does not pause counting in modes 0 and 4 (nor does it under KVM).
 * Callers hold the machine lock. */
#ifndef VMON_HW_PIT_H
#define VMON_HW_PIT_H

#include "util/types.h"

#define PIT_FREQ_HZ 1193182ull
#define PIT_BASE_PORT 0x40
#define PIT_PORT61 0x61
/* Periodic IRQ0 is not raised more often than this (KVM clamps too). */
#define PIT_MIN_PERIOD_NS 100000ull
/* At most this many (and at most one second of) periodic IRQ0 edges that
 * the host was too busy to raise on time are owed to the guest. */
#define PIT_MAX_BACKLOG 1000u

/* read_state / write_state / count_latched values (KVM's encoding). */
enum { PIT_RW_LSB = 1, PIT_RW_MSB = 2, PIT_RW_WORD0 = 3, PIT_RW_WORD1 = 4 };

struct pit_channel {
    uint32_t count;          /* loaded count, 1..0x10000 (binary) */
    uint16_t latched_count;
    uint8_t count_latched;   /* PIT_RW_* of the pending latched read, 0 none */
    uint8_t status_latched;
    uint8_t status;
    uint8_t read_state;
    uint8_t write_state;
    uint8_t write_latch;
    uint8_t rw_mode;         /* 1 LSB, 2 MSB, 3 word */
    uint8_t mode;            /* 0-5; 0xff = never programmed */
    uint8_t bcd;
    uint8_t gate;
    int64_t count_load_time; /* ns, host CLOCK_MONOTONIC */
};

struct pit {
    struct pit_channel ch[3];
    uint8_t port61;           /* bits 0-3 as last written */
    uint64_t irq_deadline_ns; /* next IRQ0 edge, 0 = none (derived) */
    uint32_t irq_missed;      /* periodic IRQ0 edges owed to the guest */

    void (*set_irq)(void *opaque, int level);  /* IRQ0 */
    void *opaque;
};

void pit_init(struct pit *p, void (*set_irq)(void *opaque, int level), void *opaque);
/* Reset: no channel programmed, gates 0 and 1 high, gate 2 low. */
void pit_reset(struct pit *p, uint64_t now);
/* Port access: port is 0x40-0x43 or 0x61. */
uint8_t pit_ioport_read(struct pit *p, uint16_t port, uint64_t now);
void pit_ioport_write(struct pit *p, uint16_t port, uint8_t val, uint64_t now);
/* Channel state at `now` (tests, the speaker). */
uint32_t pit_counter(const struct pit *p, unsigned ch, uint64_t now);
bool pit_out(const struct pit *p, unsigned ch, uint64_t now);
void pit_set_gate(struct pit *p, unsigned ch, bool gate, uint64_t now);
/* IRQ0 timer. */
uint64_t pit_next_deadline_ns(const struct pit *p);
void pit_timer_check(struct pit *p, uint64_t now);
/* The CPU acknowledged IRQ0's interrupt: raise the next owed edge, if any
 * (the irqchip glue calls this). */
void pit_irq_acked(struct pit *p);
/* Rebuild derived state (the IRQ0 deadline) after loading the channels. */
void pit_restore(struct pit *p, uint64_t now);

#endif
