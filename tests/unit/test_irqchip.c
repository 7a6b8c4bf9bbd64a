/* The irqchip glue: ISA/GSI routing to the PIC and IOAPIC, PIT -> IRQ0 ->
 * IOAPIC pin 2, level EOIs from the LAPIC back to the IOAPIC, ExtINT in
 * virtual-wire mode, MSI decoding, the per-vCPU LAPIC page, timer
 * deadlines, and the KVM state conversions (round trips both ways). */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hw/irqchip.h"
#include "hw/kvm_irqchip_state.h"

#define T0 3000000000ull

static uint64_t fake_now = T0;
static uint64_t fake_clock(void)
{
    return fake_now;
}

struct fix {
    struct irqchip *c;
    struct cpu_state cpu[2];
    int kicks[2];
};

static void h_kick(void *v)
{
    if (v)
        (*(int *)v)++;
}
static const struct lapic_host_ops host_ops = { .kick = h_kick };

static int setup(void **state)
{
    struct fix *f = test_calloc(1, sizeof(*f));
    fake_now = T0;
    f->c = irqchip_new(NULL, fake_clock);
    assert_non_null(f->c);
    for (int i = 0; i < 2; i++) {
        cpu_state_reset(&f->cpu[i], (unsigned)i, i == 0);
        assert_int_equal(irqchip_attach_vcpu(f->c, i, &f->cpu[i], &host_ops, &f->kicks[i]), 0);
    }
    irqchip_reset(f->c);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    irqchip_free(f->c);
    irqchip_set_current_cpu(-1);
    test_free(f);
    return 0;
}

static void apic_wr(struct fix *f, int cpu, unsigned off, uint32_t v)
{
    irqchip_set_current_cpu(cpu);
    irqchip_mmio_write(f->c, X86_APIC_DEFAULT_BASE + off, v, 4);
}

static uint32_t apic_rd(struct fix *f, int cpu, unsigned off)
{
    irqchip_set_current_cpu(cpu);
    return (uint32_t)irqchip_mmio_read(f->c, X86_APIC_DEFAULT_BASE + off, 4);
}

static void ioapic_route(struct fix *f, unsigned pin, uint64_t rte)
{
    irqchip_mmio_write(f->c, IOAPIC_BASE, 0x11 + 2 * pin, 4);
    irqchip_mmio_write(f->c, IOAPIC_BASE + 0x10, (uint32_t)(rte >> 32), 4);
    irqchip_mmio_write(f->c, IOAPIC_BASE, 0x10 + 2 * pin, 4);
    irqchip_mmio_write(f->c, IOAPIC_BASE + 0x10, (uint32_t)rte, 4);
}

static void outb(struct fix *f, uint16_t port, uint8_t v)
{
    irqchip_port_write(f->c, port, v, 1);
}

static void pic_linux_init(struct fix *f)
{
    static const uint8_t seq[][2] = {
        { 0x21, 0xff }, { 0xa1, 0xff }, { 0x20, 0x11 }, { 0x21, 0x20 }, { 0x21, 0x04 },
        { 0x21, 0x01 }, { 0xa0, 0x11 }, { 0xa1, 0x28 }, { 0xa1, 0x02 }, { 0xa1, 0x01 },
    };
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++)
        outb(f, seq[i][0], seq[i][1]);
}

static void test_current_cpu_selects_lapic(void **state)
{
    struct fix *f = *state;
    assert_int_equal(apic_rd(f, 0, 0x20), 0);
    assert_int_equal(apic_rd(f, 1, 0x20), 1u << 24);
    irqchip_set_current_cpu(-1);                         /* unset: vCPU 0 */
    assert_int_equal(irqchip_mmio_read(f->c, X86_APIC_DEFAULT_BASE + 0x20, 4), 0);
    irqchip_set_current_cpu(5);                          /* no such vCPU */
    assert_int_equal(irqchip_mmio_read(f->c, X86_APIC_DEFAULT_BASE + 0x20, 4), ~0ull);
    irqchip_mmio_write(f->c, X86_APIC_DEFAULT_BASE + 0x80, 0xff, 4);
    assert_int_equal(irqchip_attach_vcpu(f->c, -1, &f->cpu[0], &host_ops, NULL), -EINVAL);
    assert_int_equal(irqchip_attach_vcpu(f->c, MACHINE_MAX_VCPUS, &f->cpu[0], &host_ops, NULL),
                     -EINVAL);
}

static void test_pit_through_ioapic_pin2(void **state)
{
    struct fix *f = *state;
    apic_wr(f, 0, APIC_SVR, 0x1ff);
    outb(f, 0x21, 0xff);                                 /* PIC fully masked */
    ioapic_route(f, 2, 0x30);                            /* edge, fixed, dest 0 */
    outb(f, 0x43, 0x34);                                 /* PIT mode 2, ~1 ms */
    outb(f, 0x40, 1193 & 0xff);
    outb(f, 0x40, 1193 >> 8);
    uint64_t d = irqchip_next_deadline_ns(f->c);
    assert_true(d > T0 && d < T0 + 1000000);
    irqchip_timers_check(f->c, d - 1);
    assert_int_equal(irqchip_pending(f->c, 0), -1);
    irqchip_timers_check(f->c, d);
    assert_int_equal(irqchip_pending(f->c, 0), 0x30);
    assert_true(f->kicks[0] > 0);
    assert_int_equal(irqchip_pending(f->c, 1), -1);
    assert_int_equal(irqchip_ack(f->c, 0), 0x30);
    assert_int_equal(irqchip_pending(f->c, 0), -1);
    /* Ticks the host was too late for are paid one per acknowledge. */
    uint64_t late = irqchip_next_deadline_ns(f->c) + 2 * 999847 + 1000;
    irqchip_timers_check(f->c, late);
    apic_wr(f, 0, APIC_EOI, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(irqchip_pending(f->c, 0), 0x30);
        assert_int_equal(irqchip_ack(f->c, 0), 0x30);
        apic_wr(f, 0, APIC_EOI, 0);
    }
    assert_int_equal(irqchip_pending(f->c, 0), -1);
    d = irqchip_next_deadline_ns(f->c) - 999847;
    /* The LAPIC timer's deadline competes with the PIT's. */
    apic_wr(f, 1, APIC_SVR, 0x1ff);
    apic_wr(f, 1, APIC_TDCR, 0xb);
    apic_wr(f, 1, APIC_LVTT, 0x40);
    apic_wr(f, 1, APIC_TMICT, 1000);
    assert_int_equal(irqchip_next_deadline_ns(f->c), T0 + 1000);
    irqchip_timers_check(f->c, T0 + 1000);
    assert_int_equal(irqchip_pending(f->c, 1), 0x40);
    assert_int_equal(irqchip_next_deadline_ns(f->c), d + 999847);
}

static void test_level_eoi_redelivers(void **state)
{
    struct fix *f = *state;
    apic_wr(f, 1, APIC_SVR, 0x1ff);
    ioapic_route(f, 10, 0x0100000000008000ull | 0x3a);   /* level, dest 1 */
    irqchip_set_irq(f->c, 10, 1);
    assert_int_equal(irqchip_pending(f->c, 1), 0x3a);
    assert_int_equal(irqchip_ack(f->c, 1), 0x3a);
    apic_wr(f, 1, APIC_EOI, 0);                          /* line still high */
    assert_int_equal(irqchip_pending(f->c, 1), 0x3a);
    assert_int_equal(irqchip_ack(f->c, 1), 0x3a);
    irqchip_set_irq(f->c, 10, 0);
    apic_wr(f, 1, APIC_EOI, 0);
    assert_int_equal(irqchip_pending(f->c, 1), -1);
    assert_int_equal(f->c->ioapic.redir[10] & IOAPIC_RTE_REMOTE_IRR, 0);
    /* GSIs above 15 reach only the IOAPIC; beyond 23 nothing. */
    ioapic_route(f, 20, 0x0100000000000055ull);
    irqchip_set_irq(f->c, 20, 1);
    assert_int_equal(irqchip_pending(f->c, 1), 0x55);
    struct pic pic_before = f->c->pic;
    struct ioapic ioapic_before = f->c->ioapic;
    irqchip_set_irq(f->c, 24, 1);
    irqchip_set_irq(f->c, 2, 1);                          /* the cascade */
    assert_memory_equal(&pic_before, &f->c->pic, sizeof(pic_before));
    assert_memory_equal(&ioapic_before, &f->c->ioapic, sizeof(ioapic_before));
}

static void test_extint_virtual_wire(void **state)
{
    struct fix *f = *state;
    pic_linux_init(f);
    outb(f, 0x21, 0x00);
    irqchip_set_irq(f->c, 1, 1);
    /* LINT0 masked after reset: nobody takes the 8259's INTR. */
    assert_int_equal(irqchip_pending(f->c, 0), -1);
    apic_wr(f, 0, APIC_SVR, 0x1ff);
    apic_wr(f, 0, APIC_LVT0, 0x700);                     /* ExtINT, unmasked */
    assert_int_equal(irqchip_pending(f->c, 0), IRQCHIP_PENDING_EXTINT);
    assert_int_equal(irqchip_pending(f->c, 1), -1);
    assert_int_equal(irqchip_ack(f->c, 0), 0x21);
    assert_int_equal(irqchip_pending(f->c, 0), -1);
    int kicks = f->kicks[0];
    irqchip_set_irq(f->c, 1, 0);
    irqchip_port_write(f->c, 0x20, 0x20, 1);             /* EOI */
    irqchip_set_irq(f->c, 12, 1);                        /* via the slave */
    assert_true(f->kicks[0] > kicks);
    assert_int_equal(irqchip_ack(f->c, 0), 0x2c);
    /* A hardware-disabled APIC passes INTR straight through. */
    irqchip_set_irq(f->c, 12, 0);
    outb(f, 0xa0, 0x20);
    outb(f, 0x20, 0x20);
    f->cpu[1].apic_base &= ~X86_APIC_BASE_ENABLE;
    irqchip_set_irq(f->c, 3, 1);
    assert_int_equal(irqchip_pending(f->c, 1), IRQCHIP_PENDING_EXTINT);
    /* An IOAPIC ExtINT message also fetches the vector from the 8259. */
    apic_wr(f, 0, APIC_LVT0, 0x10700);
    assert_int_equal(irqchip_pending(f->c, 0), -1);
    ioapic_route(f, 5, 0x700);
    irqchip_set_irq(f->c, 5, 1);
    assert_int_equal(irqchip_pending(f->c, 0), IRQCHIP_PENDING_EXTINT);
    assert_int_equal(irqchip_ack(f->c, 0), 0x23);
}

static void test_msi(void **state)
{
    struct fix *f = *state;
    apic_wr(f, 0, APIC_SVR, 0x1ff);
    apic_wr(f, 1, APIC_SVR, 0x1ff);
    irqchip_send_msi(f->c, 0xfee01000, 0x0045);          /* physical dest 1 */
    assert_int_equal(irqchip_pending(f->c, 1), 0x45);
    assert_int_equal(irqchip_pending(f->c, 0), -1);
    apic_wr(f, 0, APIC_LDR, 0x01000000);
    apic_wr(f, 1, APIC_LDR, 0x02000000);
    irqchip_send_msi(f->c, 0xfee03004, 0x0066);          /* logical, both */
    assert_int_equal(irqchip_pending(f->c, 0), 0x66);
    assert_int_equal(irqchip_pending(f->c, 1), 0x66);
    irqchip_send_msi(f->c, 0xfed00000, 0x0077);          /* not an MSI address */
    irqchip_send_msi(f->c, 0x1fee00000ull, 0x0077);
    irqchip_send_msi(f->c, 0xfee00000, 0x0677);          /* SIPI: reserved */
    irqchip_send_msi(f->c, 0xfee00000, 0x0007);          /* illegal vector */
    assert_int_equal(irqchip_pending(f->c, 0), 0x66);
    irqchip_send_msi(f->c, 0xfee00000, 0x0400);          /* NMI */
}

static void test_ports(void **state)
{
    struct fix *f = *state;
    pic_linux_init(f);
    outb(f, 0x21, 0x5a);
    assert_int_equal(irqchip_port_read(f->c, 0x21, 1), 0x5a);
    assert_int_equal(irqchip_port_read(f->c, 0x20, 2), 0x5a00);   /* IRR, IMR */
    outb(f, 0x4d1, 0xff);
    assert_int_equal(irqchip_port_read(f->c, 0x4d0, 2), 0xde00);
    outb(f, 0x61, 0x01);
    assert_int_equal(irqchip_port_read(f->c, 0x61, 1) & 0x0f, 0x01);
    assert_int_equal(irqchip_port_read(f->c, 0x43, 1), 0xff);
    assert_int_equal(irqchip_port_read(f->c, 0x44, 1), 0xff);     /* not ours */
    irqchip_port_write(f->c, 0x44, 0xff, 4);
}

/* Build a busy state in every model. */
static void make_state(struct fix *f)
{
    pic_linux_init(f);
    outb(f, 0x21, 0x10);
    outb(f, 0x4d1, 0x08);
    irqchip_set_irq(f->c, 1, 1);
    irqchip_set_irq(f->c, 3, 1);
    pic_ack(&f->c->pic);                                 /* IRQ1 in service */
    irqchip_set_irq(f->c, 11, 1);
    apic_wr(f, 0, APIC_SVR, 0x1ff);
    ioapic_route(f, 9, 0x0000000000008039ull);
    ioapic_route(f, 4, 0x0100000000010824ull);
    irqchip_set_irq(f->c, 9, 1);
    irqchip_set_irq(f->c, 4, 1);
    irqchip_mmio_write(f->c, IOAPIC_BASE, 0x13, 4);
    outb(f, 0x43, 0x34);
    outb(f, 0x40, 0x34);
    outb(f, 0x40, 0x12);
    outb(f, 0x61, 0x03);
    outb(f, 0x43, 0xb0);
    outb(f, 0x42, 0xff);                                 /* half-written word */
    outb(f, 0x43, 0x00);                                 /* ch0 latched */
    apic_wr(f, 0, APIC_TDCR, 0x1);
    apic_wr(f, 0, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x41);
    apic_wr(f, 0, APIC_TMICT, 300000);
    fake_now += 123456;
}

static void test_kvm_round_trip_model_kvm_model(void **state)
{
    struct fix *f = *state;
    make_state(f);
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;
    kvm_irqchip_to_kvm(f->c, chips, &pit);
    assert_int_equal(chips[2].chip_id, KVM_IRQCHIP_IOAPIC);
    assert_int_equal(chips[0].chip.pic.irq_base, 0x20);
    assert_int_equal(chips[0].chip.pic.isr, 0x02);
    assert_int_equal(chips[2].chip.ioapic.redirtbl[9].fields.vector, 0x39);
    assert_int_equal(chips[2].chip.ioapic.redirtbl[9].fields.remote_irr, 1);
    assert_int_equal(chips[2].chip.ioapic.redirtbl[4].fields.dest_id, 1);
    assert_int_equal(pit.channels[0].count, 0x1234);
    assert_true(pit.flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON);

    struct kvm_lapic_state kl;
    kvm_irqchip_lapic_to_kvm(f->cpu[0].lapic, &kl);

    /* A second chip, loaded from the KVM structs, later in host time. */
    struct irqchip *c2 = irqchip_new(NULL, fake_clock);
    struct cpu_state cpu2;
    memset(&cpu2, 0, sizeof(cpu2));
    cpu2.apic_base = f->cpu[0].apic_base;
    kvm_irqchip_lapic_from_kvm(&kl, cpu2.lapic);
    assert_int_equal(irqchip_attach_vcpu(c2, 0, &cpu2, &host_ops, NULL), 0);
    assert_int_equal(kvm_irqchip_from_kvm(c2, chips, &pit), 0);

    struct pic_chip expect0 = f->c->pic.chip[0], expect1 = f->c->pic.chip[1];
    expect0.single = expect1.single = 0;
    assert_memory_equal(&expect0, &c2->pic.chip[0], sizeof(expect0));
    assert_memory_equal(&expect1, &c2->pic.chip[1], sizeof(expect1));
    assert_int_equal(c2->ioapic.ioregsel, f->c->ioapic.ioregsel);
    assert_int_equal(c2->ioapic.id, f->c->ioapic.id);
    assert_int_equal(c2->ioapic.irr, f->c->ioapic.irr);
    assert_memory_equal(c2->ioapic.redir, f->c->ioapic.redir, sizeof(c2->ioapic.redir));
    /* Channel 0 restarts at the conversion (KVM does not report its phase). */
    struct pit expect_pit = f->c->pit;
    expect_pit.ch[0].count_load_time = (int64_t)fake_now;
    assert_memory_equal(c2->pit.ch, expect_pit.ch, sizeof(c2->pit.ch));
    assert_int_equal(c2->pit.port61 & 3, f->c->pit.port61 & 3);
    assert_int_equal(pit_next_deadline_ns(&c2->pit),
                     fake_now + (0x1234 * 1000000000ull + PIT_FREQ_HZ - 1) / PIT_FREQ_HZ);
    assert_memory_equal(cpu2.lapic, f->cpu[0].lapic, X86_LAPIC_REGS_SIZE);
    struct lapic *l1 = irqchip_lapic(f->c, 0), *l2 = irqchip_lapic(c2, 0);
    assert_int_equal(lapic_timer_current(l2, fake_now), lapic_timer_current(l1, fake_now));
    assert_int_equal(lapic_next_deadline_ns(l2), lapic_next_deadline_ns(l1));
    /* The copy behaves the same: the latched PIT count and the held IRQ. */
    assert_int_equal(c2->pit.ch[0].count_latched, PIT_RW_WORD0);
    irqchip_free(c2);
}

static void test_kvm_round_trip_kvm_model_kvm(void **state)
{
    struct fix *f = *state;
    make_state(f);
    struct kvm_irqchip chips[3], chips2[3];
    struct kvm_pit_state2 pit, pit2;
    kvm_irqchip_to_kvm(f->c, chips, &pit);
    struct irqchip *c2 = irqchip_new(NULL, fake_clock);
    assert_int_equal(kvm_irqchip_from_kvm(c2, chips, &pit), 0);
    kvm_irqchip_to_kvm(c2, chips2, &pit2);
    pit.channels[0].count_load_time = (int64_t)fake_now;
    assert_memory_equal(chips, chips2, sizeof(chips));
    assert_memory_equal(&pit, &pit2, sizeof(pit));
    /* Wrong chip ids are refused. */
    chips2[0].chip_id = KVM_IRQCHIP_IOAPIC;
    assert_int_equal(kvm_irqchip_from_kvm(c2, chips2, &pit2), -EINVAL);
    irqchip_free(c2);
}

static void test_kvm_hostile_state_sanitised(void **state)
{
    struct fix *f = *state;
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;
    kvm_irqchip_to_kvm(f->c, chips, &pit);
    memset(&chips[0].chip.pic, 0xff, sizeof(chips[0].chip.pic));
    memset(&chips[2].chip.ioapic, 0xff, sizeof(chips[2].chip.ioapic));
    memset(&pit, 0xff, sizeof(pit));
    assert_int_equal(kvm_irqchip_from_kvm(f->c, chips, &pit), 0);
    struct pic_chip *m = &f->c->pic.chip[0];
    assert_true(m->init_state <= 3 && m->priority_add <= 7 && m->read_reg_select <= 1);
    assert_true(f->c->ioapic.id <= 0xf && f->c->ioapic.ioregsel <= 0xff);
    assert_true(f->c->ioapic.irr < (1u << 24));
    for (int i = 0; i < 3; i++) {
        struct pit_channel *ch = &f->c->pit.ch[i];
        assert_true(ch->count <= 0x10000);
        assert_true(ch->mode <= 5 || ch->mode == 0xff);
        assert_true(ch->read_state <= 4 && ch->write_state <= 4 && ch->count_latched <= 4);
    }
    /* And the models still work on it. */
    irqchip_port_read(f->c, 0x40, 1);
    irqchip_port_read(f->c, 0x20, 1);
    irqchip_mmio_read(f->c, IOAPIC_BASE + 0x10, 4);
    irqchip_timers_check(f->c, fake_now + 1000000000ull);
    for (int pin = 0; pin < 24; pin++)
        irqchip_set_irq(f->c, (unsigned)pin, 1);
    irqchip_pending(f->c, 0);
}

/* irqchip_create() on a bare machine: the real dispatch path reaches the
 * models, the accelerator hooks find the chip, reset and destroy work. */
static void test_board_registration(void **state)
{
    (void)state;
    struct machine *m = test_calloc(1, sizeof(*m));
    m->pio_map = test_calloc(65536, sizeof(*m->pio_map));
    assert_int_equal(irqchip_board_create(m), 0);
    struct irqchip *c = irqchip_of(m);
    assert_non_null(c);
    assert_int_equal(irqchip_board_create(m) < 0, 1);   /* ports taken */
    struct cpu_state cpu;
    int kicks = 0;
    cpu_state_reset(&cpu, 0, true);
    assert_int_equal(irqchip_attach_vcpu(c, 0, &cpu, &host_ops, &kicks), 0);

    uint8_t b = 0x5a;
    assert_true(machine_pio(m, 0x21, &b, 1, true));
    b = 0;
    assert_true(machine_pio(m, 0x21, &b, 1, false));
    assert_int_equal(b, 0x5a);
    assert_true(machine_pio(m, 0x61, &b, 1, false));
    assert_true(machine_pio(m, 0x4d1, &b, 1, false));
    assert_true(machine_pio(m, 0x43, &b, 1, false));
    uint32_t v = 0;
    irqchip_set_current_cpu(0);
    assert_true(machine_mmio(m, X86_APIC_DEFAULT_BASE + APIC_LVR, &v, 4, false));
    assert_int_equal(v, APIC_VERSION_VALUE);
    v = IOAPIC_REG_VER;
    assert_true(machine_mmio(m, IOAPIC_BASE, &v, 4, true));
    assert_true(machine_mmio(m, IOAPIC_BASE + IOAPIC_WINDOW, &v, 4, false));
    assert_int_equal(v, IOAPIC_VERSION_VALUE);

    /* The accelerator hooks route into the chip. */
    irqchip_accel_set_irq(m, 1, 1);
    assert_int_equal(c->pic.chip[0].irr & 2, 2);
    lapic_write(irqchip_lapic(c, 0), APIC_SVR, 0x1ff, 4, 0);
    irqchip_accel_send_msi(m, 0xfee00000, 0x51);
    assert_int_equal(irqchip_pending(c, 0), 0x51);
    assert_int_equal(kicks, 1);
    irqchip_accel_set_irq(NULL, 1, 1);                   /* no chip: ignored */

    /* Machine reset and teardown through the device table. */
    assert_int_equal(m->nr_devices, 1);
    m->devices[0].reset(m->devices[0].opaque);
    assert_int_equal(c->pic.chip[0].imr, 0);
    assert_int_equal(irqchip_pending(c, 0), -1);
    m->devices[0].destroy(m->devices[0].opaque);
    assert_null(irqchip_of(m));
    free(m->devices);
    free(m->pio_regions);
    free(m->mmio_regions);
    test_free(m->pio_map);
    test_free(m);
}

/* The conversions against the real in-kernel irqchip: our state loaded
 * into KVM and read back converts to the same models (KVM restarts PIT
 * counts on KVM_SET_PIT2, so their load times move to "now"). */
static void test_kvm_real_round_trip(void **state)
{
    struct fix *f = *state;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        skip();  /* no KVM on this host */
        return;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    assert_true(vm >= 0);
    assert_int_equal(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
    struct kvm_pit_config pc = { .flags = KVM_PIT_SPEAKER_DUMMY };
    assert_int_equal(ioctl(vm, KVM_CREATE_PIT2, &pc), 0);
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    assert_true(vcpu >= 0);

    make_state(f);
    struct kvm_irqchip chips[3], back[3];
    struct kvm_pit_state2 pit, pit_back;
    struct kvm_lapic_state kl, kl_back;
    kvm_irqchip_to_kvm(f->c, chips, &pit);
    kvm_irqchip_lapic_to_kvm(f->cpu[0].lapic, &kl);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ioctl(vm, KVM_SET_IRQCHIP, &chips[i]), 0);
    assert_int_equal(ioctl(vm, KVM_SET_PIT2, &pit), 0);
    assert_int_equal(ioctl(vcpu, KVM_SET_LAPIC, &kl), 0);

    for (int i = 0; i < 3; i++) {
        memset(&back[i], 0, sizeof(back[i]));
        back[i].chip_id = (uint32_t)i;
        assert_int_equal(ioctl(vm, KVM_GET_IRQCHIP, &back[i]), 0);
    }
    assert_int_equal(ioctl(vm, KVM_GET_PIT2, &pit_back), 0);
    assert_int_equal(ioctl(vcpu, KVM_GET_LAPIC, &kl_back), 0);

    /* KVM's PIT time base is host CLOCK_MONOTONIC, the models' one. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t host_now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    assert_true(pit_back.channels[2].count_load_time <= host_now);
    assert_true(pit_back.channels[2].count_load_time > host_now - 1000000000);

    struct irqchip *c2 = irqchip_new(NULL, fake_clock);
    assert_int_equal(kvm_irqchip_from_kvm(c2, back, &pit_back), 0);
    struct pic_chip expect0 = f->c->pic.chip[0], expect1 = f->c->pic.chip[1];
    expect0.single = expect1.single = 0;
    assert_memory_equal(&expect0, &c2->pic.chip[0], sizeof(expect0));
    assert_memory_equal(&expect1, &c2->pic.chip[1], sizeof(expect1));
    assert_int_equal(c2->ioapic.ioregsel, f->c->ioapic.ioregsel);
    assert_int_equal(c2->ioapic.irr, f->c->ioapic.irr);
    assert_memory_equal(c2->ioapic.redir, f->c->ioapic.redir, sizeof(c2->ioapic.redir));
    for (int i = 0; i < 3; i++) {
        struct pit_channel a = f->c->pit.ch[i], b = c2->pit.ch[i];
        a.count_load_time = b.count_load_time = 0;
        if (a.count == 0)  /* KVM loads "no count yet" as 0x10000 */
            a.count = 0x10000;
        assert_memory_equal(&a, &b, sizeof(a));
    }
    /* The LAPIC page is the same format: registers equal, and the timer
     * still running with a count no larger than the one we saved. */
    uint32_t saved = lapic_reg(f->cpu[0].lapic, APIC_TMCCT);
    uint32_t now_count = lapic_reg((uint8_t *)kl_back.regs, APIC_TMCCT);
    assert_true(now_count <= saved && now_count > 0);
    for (unsigned off = 0; off < X86_LAPIC_REGS_SIZE; off += 0x10) {
        if (off == APIC_TMCCT || off == APIC_PPR || off == APIC_APR)
            continue;
        assert_int_equal(lapic_reg((uint8_t *)kl_back.regs, off), lapic_reg((uint8_t *)kl.regs, off));
    }
    irqchip_free(c2);
    close(vcpu);
    close(vm);
    close(kvm);
}

/* Hostile guest: a seeded storm of random port, MMIO, line, MSI, timer and
 * acknowledge traffic.  Nothing may crash (ASan/UBSan watch), hang, or
 * produce an out-of-range vector. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return rng_state >> 17;
}

static void test_random_storm(void **state)
{
    struct fix *f = *state;
    static const uint16_t ports[] = { 0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1,
                                      0x40, 0x41, 0x42, 0x43, 0x61 };
    static const unsigned sizes[] = { 1, 2, 4, 8, 3 };
    int delivered = 0, extint = 0;
    /* The kick contract: an interrupt only becomes takeable after a kick,
     * so a CPU loop may poll only when kicked since its last empty poll. */
    int seen_kicks[2] = { -1, -1 };
    rng_state = 0x1234567;
    for (int i = 0; i < 200000; i++) {
        uint64_t r = rnd(), v = rnd() << 20 ^ rnd();
        unsigned size = sizes[r % 5];
        switch ((r >> 3) % 10) {
        case 0:
            irqchip_port_write(f->c, ports[(r >> 8) % 11], v, size > 4 ? 1 : size);
            break;
        case 1:
            irqchip_port_read(f->c, ports[(r >> 8) % 11], size > 4 ? 1 : size);
            break;
        case 2: {
            /* Half of the writes hit a real register the way a driver does;
             * a quarter of those are EOIs so that ISR drains. */
            uint64_t off = (r >> 10) % 0x1000;
            if ((r >> 22) & 1) {
                off = ((r >> 23) % 64) * 16;
                size = 4;
                if (((r >> 30) & 3) == 0)
                    off = APIC_EOI;
            }
            irqchip_set_current_cpu((int)((r >> 8) % 3) - 1);
            irqchip_mmio_write(f->c, X86_APIC_DEFAULT_BASE + off, v, size);
            break;
        }
        case 3:
            irqchip_mmio_read(f->c, X86_APIC_DEFAULT_BASE + ((r >> 10) % 0x1000), size);
            break;
        case 4:
            irqchip_mmio_write(f->c, IOAPIC_BASE + ((r >> 10) % 0x40), v, size);
            break;
        case 5:
            irqchip_mmio_read(f->c, IOAPIC_BASE + ((r >> 10) % 0x40), size);
            break;
        case 6:
            irqchip_set_irq(f->c, (unsigned)((r >> 8) % 30), (int)((r >> 16) & 1));
            break;
        case 7:
            irqchip_send_msi(f->c, 0xfee00000 | (v & 0xff00c), (uint32_t)v);
            break;
        case 8:
            fake_now += (r >> 8) % 2000000;
            irqchip_timers_check(f->c, fake_now);
            break;
        default: {
            int cpu = (int)((r >> 8) & 1);
            int p = irqchip_pending(f->c, cpu);
            assert_true(p >= -1 && p <= IRQCHIP_PENDING_EXTINT);
            if (p >= 0)
                assert_int_not_equal(f->kicks[cpu], seen_kicks[cpu]);
            else
                seen_kicks[cpu] = f->kicks[cpu];
            extint += p == IRQCHIP_PENDING_EXTINT;
            int vec = irqchip_ack(f->c, cpu);
            assert_true(vec >= -1 && vec <= 255);
            delivered += vec >= 0;
            break;
        }
        }
        /* Keep the APICs enabled often enough for deliveries to happen. */
        if ((i & 1023) == 0)
            for (int c = 0; c < 2; c++) {
                struct lapic *l = irqchip_lapic(f->c, c);
                lapic_set_base(l, X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE);
                lapic_write(l, APIC_SVR, 0x1ff, 4, fake_now);
            }
        else if ((i & 1023) == 512)
            lapic_set_base(irqchip_lapic(f->c, (int)(r & 1)), X86_APIC_DEFAULT_BASE);
        uint64_t d = irqchip_next_deadline_ns(f->c);
        assert_true(d == 0 || d > fake_now);  /* never a stale deadline to spin on */
    }
    /* The storm did reach the delivery paths. */
    print_message("storm: %d interrupts taken, %d from the 8259\n", delivered, extint);
    assert_true(delivered > 100);
    assert_true(extint > 50);
}

/* Differential test of the line semantics against KVM's in-kernel PIC and
 * IOAPIC: both start from the same programmed state, get the same random
 * sequence of GSI level changes (the vCPU never runs, so nothing is
 * acknowledged), and must agree on IRR, edge detection, remote IRR and
 * what reached the LAPIC. */
static void test_kvm_real_line_semantics(void **state)
{
    struct fix *f = *state;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        skip();
        return;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    assert_true(vm >= 0);
    assert_int_equal(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    assert_true(vcpu >= 0);
    /* The PC routing vmon's kvm accelerator installs (accel/kvm.c). */
    struct kvm_irq_routing *rt = calloc(1, sizeof(*rt) + 48 * sizeof(rt->entries[0]));
    assert_non_null(rt);
    for (uint32_t i = 0; i < 16; i++)
        if (i != 2)
            rt->entries[rt->nr++] = (struct kvm_irq_routing_entry){
                .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP,
                .u.irqchip = { .irqchip = i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                               .pin = i & 7 } };
    for (uint32_t i = 0; i < IOAPIC_NUM_PINS; i++)
        if (i != 2)
            rt->entries[rt->nr++] = (struct kvm_irq_routing_entry){
                .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP,
                .u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = i == 0 ? 2 : i } };
    assert_int_equal(ioctl(vm, KVM_SET_GSI_ROUTING, rt), 0);
    free(rt);

    /* Linux-style PIC, a few level pins, some IOAPIC pins masked. */
    pic_linux_init(f);
    outb(f, 0x21, 0x48);
    outb(f, 0xa1, 0x02);
    outb(f, 0x4d0, 0x20);
    outb(f, 0x4d1, 0x0e);
    apic_wr(f, 0, APIC_SVR, 0x1ff);
    static const unsigned gsis[] = { 0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15, 16, 19, 23 };
    for (unsigned pin = 1; pin < IOAPIC_NUM_PINS; pin++) {
        uint64_t rte = 0x30 + pin;
        if (pin >= 9 && pin <= 11)
            rte |= IOAPIC_RTE_LEVEL;
        if (pin >= 16 && (pin & 1))
            rte |= IOAPIC_RTE_LEVEL | IOAPIC_RTE_POLARITY_LOW;
        if (pin == 5 || pin == 19 || pin == 10)
            rte |= IOAPIC_RTE_MASKED;
        ioapic_route(f, pin, rte);
    }
    struct kvm_irqchip chips[3], back[3];
    struct kvm_pit_state2 pit;
    struct kvm_lapic_state kl;
    kvm_irqchip_to_kvm(f->c, chips, &pit);
    kvm_irqchip_lapic_to_kvm(f->cpu[0].lapic, &kl);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ioctl(vm, KVM_SET_IRQCHIP, &chips[i]), 0);
    assert_int_equal(ioctl(vcpu, KVM_SET_LAPIC, &kl), 0);

    rng_state = 42;
    for (int step = 0; step < 3000; step++) {
        uint64_t r = rnd();
        unsigned gsi = gsis[r % (sizeof(gsis) / sizeof(gsis[0]))];
        int level = (int)((r >> 8) & 1);
        struct kvm_irq_level line = { .irq = gsi, .level = (uint32_t)level };
        assert_true(ioctl(vm, KVM_IRQ_LINE, &line) >= 0);
        irqchip_set_irq(f->c, gsi, level);
        if (step % 20 == 5) {  /* occasionally the guest unmasks/masks */
            uint8_t mask = (uint8_t)(rnd() & 0xfb);
            struct kvm_irqchip m = { .chip_id = KVM_IRQCHIP_PIC_MASTER };
            assert_int_equal(ioctl(vm, KVM_GET_IRQCHIP, &m), 0);
            m.chip.pic.imr = mask;
            assert_int_equal(ioctl(vm, KVM_SET_IRQCHIP, &m), 0);
            outb(f, 0x21, mask);
        }
        for (int i = 0; i < 3; i++) {
            memset(&back[i], 0, sizeof(back[i]));
            back[i].chip_id = (uint32_t)i;
            assert_int_equal(ioctl(vm, KVM_GET_IRQCHIP, &back[i]), 0);
        }
        kvm_irqchip_to_kvm(f->c, chips, &pit);
        for (int i = 0; i < 2; i++) {
            struct kvm_pic_state *a = &chips[i].chip.pic, *b = &back[i].chip.pic;
            uint8_t cascade = i == 0 ? 0x04 : 0;
            if (a->irr != b->irr || a->isr != b->isr || a->imr != b->imr ||
                (a->last_irr & ~cascade) != (b->last_irr & ~cascade))
                fail_msg("step %d gsi %u level %d: pic%d irr %#x/%#x isr %#x/%#x last %#x/%#x",
                         step, gsi, level, i, a->irr, b->irr, a->isr, b->isr, a->last_irr,
                         b->last_irr);
        }
        struct kvm_ioapic_state *a = &chips[2].chip.ioapic, *b = &back[2].chip.ioapic;
        if (a->irr != b->irr)
            fail_msg("step %d gsi %u level %d: ioapic irr %#x/%#x", step, gsi, level, a->irr,
                     b->irr);
        for (int pin = 0; pin < IOAPIC_NUM_PINS; pin++)
            if (a->redirtbl[pin].bits != b->redirtbl[pin].bits)
                fail_msg("step %d: ioapic pin %d %#llx/%#llx", step, pin,
                         (unsigned long long)a->redirtbl[pin].bits,
                         (unsigned long long)b->redirtbl[pin].bits);
    }
    /* What the IOAPIC delivered to the LAPIC (the vCPU never ran). */
    assert_int_equal(ioctl(vcpu, KVM_GET_LAPIC, &kl), 0);
    for (unsigned off = APIC_ISR; off < APIC_ESR; off += 0x10)
        assert_int_equal(lapic_reg((uint8_t *)kl.regs, off), lapic_reg(f->cpu[0].lapic, off));
    close(vcpu);
    close(vm);
    close(kvm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_current_cpu_selects_lapic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pit_through_ioapic_pin2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_eoi_redelivers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extint_virtual_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kvm_round_trip_model_kvm_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kvm_round_trip_kvm_model_kvm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kvm_hostile_state_sanitised, setup, teardown),
        cmocka_unit_test(test_board_registration),
        cmocka_unit_test_setup_teardown(test_random_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kvm_real_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kvm_real_line_semantics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
