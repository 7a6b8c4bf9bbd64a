/* The local APIC model: register semantics, priorities, EOI broadcast,
 * IPIs (including INIT/SIPI), the timer on a simulated clock, hostile
 * accesses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hw/lapic.h"

#define T0 1000000000ull /* simulated time starts at 1 s */

struct host_rec {
    int init, sipi, nmi, kick;
    uint8_t sipi_vector;
};

struct fix {
    struct cpu_state cpu[3];
    struct lapic l[3];
    struct lapic_bus bus;
    struct host_rec rec[3];
    int eois;
    uint8_t eoi_vector;
};

static void h_init(void *v) { ((struct host_rec *)v)->init++; }
static void h_nmi(void *v) { ((struct host_rec *)v)->nmi++; }
static void h_kick(void *v) { ((struct host_rec *)v)->kick++; }
static void h_sipi(void *v, uint8_t vec)
{
    ((struct host_rec *)v)->sipi++;
    ((struct host_rec *)v)->sipi_vector = vec;
}
static const struct lapic_host_ops host_ops = { h_init, h_sipi, h_nmi, h_kick };

static void on_eoi(void *opaque, uint8_t vector)
{
    struct fix *f = opaque;
    f->eois++;
    f->eoi_vector = vector;
}

static int setup(void **state)
{
    struct fix *f = test_calloc(1, sizeof(*f));
    f->bus.eoi = on_eoi;
    f->bus.eoi_opaque = f;
    for (int i = 0; i < 3; i++) {
        f->cpu[i].apic_base = X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE |
                              (i == 0 ? X86_APIC_BASE_BSP : 0);
        lapic_init(&f->l[i], &f->cpu[i], i, &host_ops, &f->rec[i], &f->bus);
        lapic_reset(&f->l[i]);
        assert_int_equal(lapic_bus_add(&f->bus, &f->l[i]), 0);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    test_free(*state);
    return 0;
}

static uint32_t r32(struct lapic *l, unsigned off) { return (uint32_t)lapic_read(l, off, 4, T0); }
static void w32(struct lapic *l, unsigned off, uint32_t v) { lapic_write(l, off, v, 4, T0); }
static void enable(struct lapic *l) { w32(l, APIC_SVR, 0x1ff); }

static uint32_t esr(struct lapic *l)
{
    w32(l, APIC_ESR, 0);
    return r32(l, APIC_ESR);
}

static void test_reset_values(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[1];
    assert_int_equal(r32(l, APIC_ID), 1u << 24);
    assert_int_equal(r32(l, APIC_LVR), 0x00050014);
    assert_int_equal(r32(l, APIC_DFR), 0xffffffff);
    assert_int_equal(r32(l, APIC_SVR), 0xff);
    for (unsigned off = APIC_LVTT; off <= APIC_LVTERR; off += 0x10)
        assert_int_equal(r32(l, off), APIC_LVT_MASKED);
    assert_false(lapic_sw_enabled(l));
    assert_int_equal(lapic_pending_interrupt(l), -1);
}

static void test_register_masks(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    w32(l, APIC_LVR, 0x12345678);             /* read-only */
    assert_int_equal(r32(l, APIC_LVR), 0x00050014);
    w32(l, APIC_LDR, 0xffffffff);
    assert_int_equal(r32(l, APIC_LDR), 0xff000000);
    w32(l, APIC_DFR, 0);
    assert_int_equal(r32(l, APIC_DFR), 0x0fffffff);
    w32(l, APIC_TPR, 0x1ff);
    assert_int_equal(r32(l, APIC_TPR), 0xff);
    w32(l, APIC_LVT0, 0xffffffff);            /* remote IRR and status are RO */
    assert_int_equal(r32(l, APIC_LVT0), 0x1a7ff);
    w32(l, APIC_LVTT, 0xffffffff);            /* no TSC-deadline bit */
    assert_int_equal(r32(l, APIC_LVTT), 0x300ff);
    w32(l, APIC_TDCR, 0xff);
    assert_int_equal(r32(l, APIC_TDCR), 0xb);
    w32(l, APIC_ICR2, 0xffffffff);
    assert_int_equal(r32(l, APIC_ICR2), 0xff000000);
    /* Byte reads see the register's lanes. */
    assert_int_equal(lapic_read(l, APIC_LVR + 2, 1, T0), 0x05);
    assert_int_equal(lapic_read(l, APIC_LVR, 2, T0), 0x0014);
}

static void test_software_disable_masks_lvts(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    w32(l, APIC_LVT0, 0x700);
    assert_true(lapic_accepts_pic(l));
    w32(l, APIC_SVR, 0xff);                   /* software disable */
    assert_int_equal(r32(l, APIC_LVT0), 0x10700);
    assert_false(lapic_accepts_pic(l));
    w32(l, APIC_LVT0, 0x700);                 /* stays masked while disabled */
    assert_int_equal(r32(l, APIC_LVT0), 0x10700);
    lapic_accept_irq(l, 0x40, false);         /* fixed interrupts are dropped */
    assert_int_equal(lapic_pending_interrupt(l), -1);
}

static void test_priority_and_ppr(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    lapic_accept_irq(l, 0x31, false);
    lapic_accept_irq(l, 0x51, false);
    assert_int_equal(f->rec[0].kick, 2);
    assert_int_equal(lapic_pending_interrupt(l), 0x51);
    assert_int_equal(lapic_ack(l, 0x51), 0x51);
    assert_int_equal(r32(l, APIC_ISR + 0x20), 1u << (0x51 - 0x40));
    assert_int_equal(r32(l, APIC_PPR), 0x50);
    assert_int_equal(lapic_pending_interrupt(l), -1);   /* 0x31 below PPR */
    w32(l, APIC_TPR, 0x40);
    assert_int_equal(r32(l, APIC_PPR), 0x50);           /* ISR class wins */
    int kicks = f->rec[0].kick;
    w32(l, APIC_EOI, 0);
    assert_int_equal(r32(l, APIC_ISR + 0x20), 0);
    assert_int_equal(r32(l, APIC_PPR), 0x40);
    assert_int_equal(lapic_pending_interrupt(l), -1);   /* class 3 <= TPR 4 */
    assert_int_equal(f->rec[0].kick, kicks);            /* nothing to take */
    lapic_set_cr8(l, 2);
    assert_int_equal(f->rec[0].kick, kicks + 1);        /* 0x31 now is */
    assert_int_equal(r32(l, APIC_TPR), 0x20);
    assert_int_equal(lapic_get_cr8(l), 2);
    assert_int_equal(lapic_pending_interrupt(l), 0x31);
    /* Same class as PPR is blocked too. */
    lapic_set_cr8(l, 3);
    assert_int_equal(lapic_pending_interrupt(l), -1);
    /* Acking a vector that is not deliverable yields the spurious vector. */
    assert_int_equal(lapic_ack(l, 0x31), 0xff);
    assert_int_equal(lapic_ack(l, 0x99), 0xff);
    /* EOI with nothing in service is harmless. */
    lapic_set_cr8(l, 0);
    w32(l, APIC_EOI, 0);
    assert_int_equal(lapic_ack(l, 0x31), 0x31);
}

static void test_illegal_vector(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    lapic_accept_irq(l, 5, false);
    assert_int_equal(lapic_pending_interrupt(l), -1);
    assert_int_equal(esr(l), APIC_ESR_RECV_ILLEGAL_VECTOR);
    assert_int_equal(esr(l), 0);                        /* latched, then clear */
    w32(l, APIC_ICR2, 1u << 24);
    w32(l, APIC_ICR, 0x0007);                           /* fixed IPI, vector 7 */
    assert_int_equal(esr(l), APIC_ESR_SEND_ILLEGAL_VECTOR);
    assert_int_equal(f->rec[1].kick, 0);
}

static void test_eoi_broadcast_level_only(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    lapic_accept_irq(l, 0x40, true);
    assert_int_equal(r32(l, APIC_TMR + 0x20), 1);
    assert_int_equal(lapic_ack(l, 0x40), 0x40);
    w32(l, APIC_EOI, 0);
    assert_int_equal(f->eois, 1);
    assert_int_equal(f->eoi_vector, 0x40);
    lapic_accept_irq(l, 0x40, false);                   /* edge clears TMR */
    assert_int_equal(r32(l, APIC_TMR + 0x20), 0);
    assert_int_equal(lapic_ack(l, 0x40), 0x40);
    w32(l, APIC_EOI, 0);
    assert_int_equal(f->eois, 1);
}

static void send(struct lapic *l, uint8_t dest, uint32_t icr)
{
    w32(l, APIC_ICR2, (uint32_t)dest << 24);
    w32(l, APIC_ICR, icr);
}

static void test_ipi_physical_logical_shorthand(void **state)
{
    struct fix *f = *state;
    for (int i = 0; i < 3; i++)
        enable(&f->l[i]);
    send(&f->l[0], 2, 0x4041);                          /* physical, fixed */
    assert_int_equal(lapic_pending_interrupt(&f->l[2]), 0x41);
    assert_int_equal(lapic_pending_interrupt(&f->l[1]), -1);
    assert_int_equal(r32(&f->l[0], APIC_ICR) & (1u << 12), 0);  /* idle */

    /* Flat logical: LDR bits 1, 2, 4. */
    for (int i = 0; i < 3; i++)
        w32(&f->l[i], APIC_LDR, (1u << i) << 24);
    send(&f->l[0], 0x06, 0x4842);                       /* logical, CPUs 1+2 */
    assert_int_equal(lapic_pending_interrupt(&f->l[1]), 0x42);
    assert_int_equal(lapic_pending_interrupt(&f->l[2]), 0x42);
    assert_int_equal(lapic_pending_interrupt(&f->l[0]), -1);

    /* Cluster logical: cluster 1, members 1 and 2; CPU 2 in cluster 2. */
    for (int i = 0; i < 3; i++)
        w32(&f->l[i], APIC_DFR, 0x0fffffff);
    w32(&f->l[0], APIC_LDR, 0x11u << 24);
    w32(&f->l[1], APIC_LDR, 0x12u << 24);
    w32(&f->l[2], APIC_LDR, 0x21u << 24);
    send(&f->l[2], 0x12, 0x4843);
    assert_int_equal(lapic_pending_interrupt(&f->l[1]), 0x43);
    assert_int_equal(lapic_pending_interrupt(&f->l[0]), -1);
    send(&f->l[2], 0x13, 0x4844);                       /* 0x11 and 0x12 */
    assert_int_equal(lapic_pending_interrupt(&f->l[0]), 0x44);

    /* Shorthands. */
    send(&f->l[1], 0, 0x44050);                         /* self */
    assert_int_equal(lapic_pending_interrupt(&f->l[1]), 0x50);
    send(&f->l[1], 0, 0xc4060);                         /* all but self */
    assert_int_equal(lapic_pending_interrupt(&f->l[0]), 0x60);
    assert_int_equal(lapic_pending_interrupt(&f->l[2]), 0x60);
    assert_int_equal(lapic_pending_interrupt(&f->l[1]), 0x50);
    send(&f->l[1], 0, 0x84070);                         /* all incl. self */
    for (int i = 0; i < 3; i++)
        assert_int_equal(lapic_pending_interrupt(&f->l[i]), 0x70);
    /* Physical broadcast. */
    send(&f->l[0], 0xff, 0x4080);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lapic_pending_interrupt(&f->l[i]), 0x80);
}

static void test_ipi_lowest_priority(void **state)
{
    struct fix *f = *state;
    for (int i = 0; i < 3; i++)
        enable(&f->l[i]);
    w32(&f->l[0], APIC_TPR, 0x30);
    w32(&f->l[1], APIC_TPR, 0x10);
    w32(&f->l[2], APIC_TPR, 0x10);
    send(&f->l[0], 0xff, 0x4141);                       /* lowest, broadcast */
    assert_int_equal(lapic_pending_interrupt(&f->l[1]), 0x41);
    assert_int_equal(lapic_pending_interrupt(&f->l[0]), -1);
    assert_int_equal(lapic_pending_interrupt(&f->l[2]), -1);
}

static void test_init_sipi_nmi(void **state)
{
    struct fix *f = *state;
    struct lapic *ap = &f->l[1];
    enable(&f->l[0]);
    enable(ap);
    w32(ap, APIC_LDR, 0x5u << 24);
    lapic_accept_irq(ap, 0x40, false);
    send(&f->l[0], 1, 0xc500);                          /* INIT assert, level */
    assert_int_equal(f->rec[1].init, 1);
    assert_int_equal(f->rec[0].init, 0);
    /* The AP's APIC was reset except its ID. */
    assert_int_equal(r32(ap, APIC_ID), 1u << 24);
    assert_int_equal(r32(ap, APIC_LDR), 0);
    assert_int_equal(r32(ap, APIC_SVR), 0xff);
    assert_int_equal(lapic_pending_interrupt(ap), -1);
    send(&f->l[0], 1, 0x8500);                          /* INIT de-assert */
    assert_int_equal(f->rec[1].init, 1);
    send(&f->l[0], 1, 0x4608);                          /* SIPI, vector 8 */
    assert_int_equal(f->rec[1].sipi, 1);
    assert_int_equal(f->rec[1].sipi_vector, 0x08);
    send(&f->l[0], 0, 0xc4400);                         /* NMI all-but-self */
    assert_int_equal(f->rec[1].nmi, 1);
    assert_int_equal(f->rec[2].nmi, 1);
    assert_int_equal(f->rec[0].nmi, 0);
    send(&f->l[0], 1, 0x4700);                          /* ExtINT via ICR: illegal */
    assert_false(ap->extint_pending);
}

static void test_timer_divide_and_oneshot(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    static const struct { uint32_t tdcr; uint64_t div; } divs[] = {
        { 0x0, 2 }, { 0x1, 4 }, { 0x2, 8 }, { 0x3, 16 },
        { 0x8, 32 }, { 0x9, 64 }, { 0xa, 128 }, { 0xb, 1 },
    };
    enable(l);
    w32(l, APIC_LVTT, 0x30);                            /* one-shot, vector 0x30 */
    for (size_t i = 0; i < sizeof(divs) / sizeof(divs[0]); i++) {
        w32(l, APIC_TDCR, divs[i].tdcr);
        w32(l, APIC_TMICT, 1000);
        assert_int_equal(lapic_next_deadline_ns(l), T0 + 1000 * divs[i].div);
        assert_int_equal(lapic_read(l, APIC_TMCCT, 4, T0 + 250 * divs[i].div), 750);
        /* The count drops once per `div` ns. */
        assert_int_equal(lapic_read(l, APIC_TMCCT, 4, T0 + 251 * divs[i].div - 1), 750);
        assert_int_equal(lapic_read(l, APIC_TMCCT, 4, T0 + 251 * divs[i].div), 749);
    }
    /* Fire exactly at the deadline (divide by 1 from the last iteration). */
    lapic_timer_check(l, T0 + 999);
    assert_int_equal(lapic_pending_interrupt(l), -1);
    lapic_timer_check(l, T0 + 1000);
    assert_int_equal(lapic_pending_interrupt(l), 0x30);
    assert_int_equal(lapic_next_deadline_ns(l), 0);
    assert_int_equal(lapic_read(l, APIC_TMCCT, 4, T0 + 5000), 0);
    lapic_timer_check(l, T0 + 1000000);                 /* one-shot: once */
    assert_int_equal(lapic_ack(l, 0x30), 0x30);
    assert_int_equal(lapic_pending_interrupt(l), -1);
    /* Initial count 0 stops the timer. */
    w32(l, APIC_TMICT, 0);
    assert_int_equal(lapic_next_deadline_ns(l), 0);
    assert_int_equal(r32(l, APIC_TMCCT), 0);
}

static void test_timer_periodic(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    w32(l, APIC_TDCR, 0x0);                             /* divide by 2 */
    w32(l, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x31);
    w32(l, APIC_TMICT, 100000);                         /* 200 us period */
    assert_int_equal(lapic_next_deadline_ns(l), T0 + 200000);
    lapic_timer_check(l, T0 + 500000);                  /* 2.5 periods: coalesced */
    assert_int_equal(lapic_pending_interrupt(l), 0x31);
    assert_int_equal(lapic_next_deadline_ns(l), T0 + 600000);
    assert_int_equal(lapic_timer_current(l, T0 + 500000), 50000);
    assert_int_equal(lapic_timer_current(l, T0 + 600000), 100000);  /* reloaded */
    assert_int_equal(lapic_timer_current(l, T0 + 600002), 99999);
    /* Masked: no wake-ups, and an expiry while masked is not delivered on
     * unmask. */
    lapic_ack(l, 0x31);
    w32(l, APIC_EOI, 0);
    lapic_write(l, APIC_LVTT, APIC_LVT_MASKED | APIC_LVT_TIMER_PERIODIC | 0x31, 4, T0 + 500001);
    assert_int_equal(lapic_next_deadline_ns(l), 0);
    lapic_timer_check(l, T0 + 700000);
    lapic_write(l, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x31, 4, T0 + 700001);
    assert_int_equal(lapic_pending_interrupt(l), -1);
    assert_int_equal(lapic_next_deadline_ns(l), T0 + 800000);
    /* A hostile tiny period is clamped for interrupts, not for the count. */
    lapic_write(l, APIC_TMICT, 1, 4, T0 + 1000000);
    assert_int_equal(lapic_ack(l, 0x31), 0x31);          /* the 0.8 ms expiry */
    w32(l, APIC_EOI, 0);
    assert_int_equal(lapic_next_deadline_ns(l), T0 + 1000000 + LAPIC_MIN_PERIOD_NS);
    lapic_timer_check(l, T0 + 1000000 + LAPIC_MIN_PERIOD_NS);
    assert_int_equal(lapic_pending_interrupt(l), 0x31);
    assert_true(lapic_next_deadline_ns(l) >= T0 + 1000000 + 2 * LAPIC_MIN_PERIOD_NS);
    assert_int_equal(lapic_timer_current(l, T0 + 1000001), 1);
}

static void test_timer_divide_change_keeps_count(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    w32(l, APIC_TDCR, 0xb);                             /* divide by 1 */
    w32(l, APIC_LVTT, 0x32);
    w32(l, APIC_TMICT, 10000);
    lapic_write(l, APIC_TDCR, 0x3, 4, T0 + 4000);       /* now divide by 16 */
    assert_int_equal(lapic_timer_current(l, T0 + 4000), 6000);
    assert_int_equal(lapic_next_deadline_ns(l), T0 + 4000 + 6000 * 16);
}

static void test_timer_save_restore(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    w32(l, APIC_TDCR, 0x1);                             /* divide by 4 */
    w32(l, APIC_LVTT, 0x33);
    w32(l, APIC_TMICT, 50000);
    lapic_save(l, T0 + 40000);                          /* 10000 ticks gone */
    assert_int_equal(lapic_reg(f->cpu[0].lapic, APIC_TMCCT), 40000);

    /* Another model on a copy of the page, restored at a later host time. */
    struct cpu_state cpu2 = f->cpu[0];
    struct lapic l2;
    lapic_init(&l2, &cpu2, 0, &host_ops, &f->rec[0], NULL);
    lapic_restore(&l2, 5 * T0);
    assert_int_equal(lapic_timer_current(&l2, 5 * T0), 40000);
    assert_int_equal(lapic_next_deadline_ns(&l2), 5 * T0 + 40000 * 4);
    lapic_timer_check(&l2, 5 * T0 + 160000);
    assert_int_equal(lapic_pending_interrupt(&l2), 0x33);

    /* A one-shot that expired before the save, not yet checked: its
     * interrupt is in the saved IRR, and it stays expired. */
    w32(l, APIC_TMICT, 50000);
    lapic_save(l, T0 + 300000);
    lapic_restore(l, 7 * T0);
    assert_int_equal(lapic_next_deadline_ns(l), 0);
    assert_int_equal(lapic_pending_interrupt(l), 0x33);
}

static void test_hostile_accesses(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    uint8_t before[X86_LAPIC_REGS_SIZE];
    memcpy(before, f->cpu[0].lapic, sizeof(before));
    assert_int_equal(lapic_read(l, 0x3f0, 4, T0), 0);   /* reserved */
    assert_int_equal(esr(l), APIC_ESR_ILLEGAL_REGISTER);
    memcpy(before, f->cpu[0].lapic, sizeof(before));
    assert_int_equal(lapic_read(l, 0x800, 4, T0), 0);   /* beyond the page */
    assert_int_equal(lapic_read(l, 0xfff, 1, T0), 0);
    assert_int_equal(lapic_read(l, APIC_ID, 8, T0), 0); /* wider than a dword */
    assert_int_equal(lapic_read(l, APIC_ID + 3, 2, T0), 0);
    lapic_write(l, 0xfff, 0xff, 1, T0);
    lapic_write(l, 0x2f0, 0xffffffff, 4, T0);           /* no CMCI LVT */
    lapic_write(l, APIC_TPR + 1, 0xff, 1, T0);          /* misaligned */
    lapic_write(l, APIC_TPR, 0xff, 2, T0);              /* narrow */
    lapic_write(l, APIC_TPR, 0xffffffffffffull, 8, T0);
    lapic_write(l, APIC_IRR, 0xffffffff, 4, T0);        /* read-only */
    lapic_write(l, APIC_TMCCT, 0xffffffff, 4, T0);
    w32(l, APIC_ESR, 0);                                 /* the errors latched */
    assert_int_equal(r32(l, APIC_ESR), APIC_ESR_ILLEGAL_REGISTER);
    lapic_set_reg(before, APIC_ESR, APIC_ESR_ILLEGAL_REGISTER);
    assert_memory_equal(before, f->cpu[0].lapic, sizeof(before));
}

static void test_apic_base(void **state)
{
    struct fix *f = *state;
    struct lapic *l = &f->l[0];
    enable(l);
    assert_int_equal(lapic_set_base(l, X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE |
                                       X86_APIC_BASE_EXTD), -EINVAL);
    assert_int_equal(lapic_set_base(l, X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE | 1),
                     -EINVAL);
    lapic_accept_irq(l, 0x40, false);
    assert_int_equal(lapic_set_base(l, X86_APIC_DEFAULT_BASE), 0);    /* disable */
    assert_false(lapic_hw_enabled(l));
    assert_true(lapic_accepts_pic(l));
    assert_int_equal(lapic_pending_interrupt(l), -1);
    assert_int_equal(lapic_read(l, APIC_ID, 4, T0), ~0ull);
    lapic_accept_irq(l, 0x41, false);
    assert_int_equal(lapic_set_base(l, X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE), 0);
    assert_int_equal(r32(l, APIC_SVR), 0xff);           /* came back reset */
    assert_int_equal(r32(l, APIC_IRR + 0x20), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reset_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_masks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_software_disable_masks_lvts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priority_and_ppr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_illegal_vector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eoi_broadcast_level_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipi_physical_logical_shorthand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipi_lowest_priority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_sipi_nmi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_divide_and_oneshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_periodic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_divide_change_keeps_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_save_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apic_base, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
