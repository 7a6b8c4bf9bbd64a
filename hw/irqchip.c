/* The glue between the interrupt controllers, the timers, the vCPUs and the
 * machine's buses.  The wiring is described in hw/irqchip.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "hw/irqchip.h"
#include "util/log.h"
#include "util/main_loop.h"

static __thread int current_cpu = -1;

void irqchip_set_current_cpu(int index)
{
    current_cpu = index;
}

int irqchip_current_cpu(void)
{
    return current_cpu;
}

/* A process normally has one machine; a few slots keep tests honest. */
static struct {
    struct machine *m;
    struct irqchip *c;
} registry[4];

struct irqchip *irqchip_of(struct machine *m)
{
    for (size_t i = 0; i < ARRAY_SIZE(registry); i++)
        if (registry[i].m == m && m)
            return registry[i].c;
    return NULL;
}

static uint64_t now_of(struct irqchip *c)
{
    return c->clock();
}

struct lapic *irqchip_lapic(struct irqchip *c, int index)
{
    if (index < 0 || index >= MACHINE_MAX_VCPUS || !c->attached[index])
        return NULL;
    return &c->lapic[index];
}

/* ---- routing ---- */

static int ioapic_deliver(void *opaque, const struct apic_msg *msg)
{
    struct irqchip *c = opaque;
    return lapic_bus_deliver(&c->bus, NULL, msg);
}

static void bus_eoi(void *opaque, uint8_t vector)
{
    struct irqchip *c = opaque;
    ioapic_eoi(&c->ioapic, vector);
}

/* The 8259's INTR may have risen: wake whoever takes it. */
static void pic_changed(struct irqchip *c)
{
    if (!pic_get_output(&c->pic))
        return;
    for (int i = 0; i < c->bus.nr; i++) {
        struct lapic *l = c->bus.lapics[i];
        if (lapic_accepts_pic(l) && l->ops && l->ops->kick)
            l->ops->kick(l->vcpu);
    }
}

static void pit_irq(void *opaque, int level)
{
    irqchip_set_irq(opaque, 0, level);
}

void irqchip_set_irq(struct irqchip *c, unsigned gsi, int level)
{
    if (gsi == 2) {
        /* The cascade: no device drives it (KVM routes nothing there). */
        LOG(LOG_GUEST_ERRORS, "irqchip: ISA IRQ2 is the cascade\n");
    } else if (gsi < 16) {
        pic_set_irq(&c->pic, gsi, level);
        /* IRQ0 is IOAPIC pin 2 (MADT override); IOAPIC pin 0 stays
         * unconnected, as under KVM's default routing. */
        ioapic_set_irq(&c->ioapic, gsi == 0 ? 2 : gsi, level);
        pic_changed(c);
    } else if (gsi < IOAPIC_NUM_PINS) {
        ioapic_set_irq(&c->ioapic, gsi, level);
    } else {
        LOG(LOG_UNIMP, "irqchip: no GSI %u\n", gsi);
    }
}

void irqchip_send_msi(struct irqchip *c, uint64_t addr, uint32_t data)
{
    /* SDM vol. 3, 10.11: address 0xfeeXXXXX carries the destination, the
     * redirection hint and the destination mode; data the vector, delivery
     * mode and trigger. */
    if ((addr >> 20) != 0xfee) {
        LOG(LOG_GUEST_ERRORS, "irqchip: MSI to bad address %#llx dropped\n",
            (unsigned long long)addr);
        return;
    }
    struct apic_msg msg = {
        .vector = data & 0xff,
        .delivery = (data >> 8) & 7,
        .dest = (addr >> 12) & 0xff,
        .logical = (addr >> 2) & 1,
        .level_trig = (data >> 15) & 1,
        .assert = !((data >> 15) & 1) || ((data >> 14) & 1),
        .shorthand = APIC_SH_NONE,
    };
    if (msg.delivery == 3 || msg.delivery == APIC_DM_SIPI) {
        LOG(LOG_GUEST_ERRORS, "irqchip: MSI with reserved delivery mode %u dropped\n",
            msg.delivery);
        return;
    }
    lapic_bus_deliver(&c->bus, NULL, &msg);
}

void irqchip_accel_set_irq(struct machine *m, unsigned gsi, int level)
{
    struct irqchip *c = irqchip_of(m);
    if (c)
        irqchip_set_irq(c, gsi, level);
}

void irqchip_accel_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    struct irqchip *c = irqchip_of(m);
    if (c)
        irqchip_send_msi(c, addr, data);
}

/* ---- the CPU side ---- */

static bool extint_ready(struct irqchip *c, struct lapic *l)
{
    return (l->extint_pending || lapic_accepts_pic(l)) && pic_get_output(&c->pic);
}

int irqchip_pending(struct irqchip *c, int index)
{
    struct lapic *l = irqchip_lapic(c, index);
    if (!l)
        return -1;
    if (extint_ready(c, l))
        return IRQCHIP_PENDING_EXTINT;
    return lapic_pending_interrupt(l);
}

int irqchip_ack(struct irqchip *c, int index)
{
    struct lapic *l = irqchip_lapic(c, index);
    if (!l)
        return -1;
    if (extint_ready(c, l)) {
        l->extint_pending = false;
        int v = pic_ack(&c->pic);
        if (v == c->pic.chip[0].irq_base)
            pit_irq_acked(&c->pit);  /* IRQ0 through the 8259 */
        return v;
    }
    l->extint_pending = false;
    int v = lapic_pending_interrupt(l);
    if (v < 0)
        return -1;
    v = lapic_ack(l, v);
    uint64_t pin2 = c->ioapic.redir[2];
    if (!(pin2 & IOAPIC_RTE_MASKED) && v == (int)(pin2 & 0xff))
        pit_irq_acked(&c->pit);  /* IRQ0 through IOAPIC pin 2 */
    return v;
}

uint64_t irqchip_next_deadline_ns(struct irqchip *c)
{
    uint64_t best = pit_next_deadline_ns(&c->pit);
    for (int i = 0; i < c->bus.nr; i++) {
        uint64_t d = lapic_next_deadline_ns(c->bus.lapics[i]);
        if (d && (!best || d < best))
            best = d;
    }
    return best;
}

void irqchip_timers_check(struct irqchip *c, uint64_t now)
{
    pit_timer_check(&c->pit, now);
    for (int i = 0; i < c->bus.nr; i++)
        lapic_timer_check(c->bus.lapics[i], now);
}

int irqchip_attach_vcpu(struct irqchip *c, int index, struct cpu_state *cpu,
                        const struct lapic_host_ops *ops, void *vcpu)
{
    if (index < 0 || index >= MACHINE_MAX_VCPUS || !cpu)
        return -EINVAL;
    struct lapic *l = &c->lapic[index];
    if (c->attached[index]) {  /* rebinding (accelerator switch) */
        l->cpu = cpu;
        l->ops = ops;
        l->vcpu = vcpu;
        lapic_restore(l, now_of(c));
        return 0;
    }
    lapic_init(l, cpu, index, ops, vcpu, &c->bus);
    int r = lapic_bus_add(&c->bus, l);
    if (r < 0)
        return r;
    c->attached[index] = true;
    lapic_restore(l, now_of(c));
    return 0;
}

/* ---- register interfaces ---- */

static uint8_t port_read8(struct irqchip *c, uint16_t port, uint64_t now)
{
    switch (port) {
    case 0x20: case 0x21:
        return pic_read(&c->pic, false, port & 1);
    case 0xa0: case 0xa1:
        return pic_read(&c->pic, true, port & 1);
    case 0x4d0: case 0x4d1:
        return pic_elcr_read(&c->pic, port & 1);
    case 0x40: case 0x41: case 0x42: case 0x43: case PIT_PORT61:
        return pit_ioport_read(&c->pit, port, now);
    default:
        return 0xff;
    }
}

static void port_write8(struct irqchip *c, uint16_t port, uint8_t val, uint64_t now)
{
    switch (port) {
    case 0x20: case 0x21:
        pic_write(&c->pic, false, port & 1, val);
        pic_changed(c);
        break;
    case 0xa0: case 0xa1:
        pic_write(&c->pic, true, port & 1, val);
        pic_changed(c);
        break;
    case 0x4d0: case 0x4d1:
        pic_elcr_write(&c->pic, port & 1, val);
        pic_changed(c);
        break;
    case 0x40: case 0x41: case 0x42: case 0x43: case PIT_PORT61:
        pit_ioport_write(&c->pit, port, val, now);
        break;
    default:
        break;
    }
}

uint64_t irqchip_port_read(struct irqchip *c, uint16_t port, unsigned size)
{
    uint64_t now = now_of(c), v = 0;
    for (unsigned i = 0; i < size && i < 8; i++)
        v |= (uint64_t)port_read8(c, (uint16_t)(port + i), now) << (8 * i);
    return v;
}

void irqchip_port_write(struct irqchip *c, uint16_t port, uint64_t val, unsigned size)
{
    uint64_t now = now_of(c);
    for (unsigned i = 0; i < size && i < 8; i++)
        port_write8(c, (uint16_t)(port + i), (uint8_t)(val >> (8 * i)), now);
}

static struct lapic *current_lapic(struct irqchip *c)
{
    return irqchip_lapic(c, current_cpu < 0 ? 0 : current_cpu);
}

uint64_t irqchip_mmio_read(struct irqchip *c, gpa_t gpa, unsigned size)
{
    if (gpa - X86_APIC_DEFAULT_BASE < LAPIC_MMIO_SIZE) {
        struct lapic *l = current_lapic(c);
        return l ? lapic_read(l, gpa - X86_APIC_DEFAULT_BASE, size, now_of(c)) : ~0ull;
    }
    if (gpa - IOAPIC_BASE < IOAPIC_MMIO_SIZE)
        return ioapic_read(&c->ioapic, gpa - IOAPIC_BASE, size);
    return ~0ull;
}

void irqchip_mmio_write(struct irqchip *c, gpa_t gpa, uint64_t val, unsigned size)
{
    if (gpa - X86_APIC_DEFAULT_BASE < LAPIC_MMIO_SIZE) {
        struct lapic *l = current_lapic(c);
        if (l)
            lapic_write(l, gpa - X86_APIC_DEFAULT_BASE, val, size, now_of(c));
    } else if (gpa - IOAPIC_BASE < IOAPIC_MMIO_SIZE) {
        ioapic_write(&c->ioapic, gpa - IOAPIC_BASE, val, size);
    }
}

static uint64_t pio_read_cb(void *opaque, uint64_t offset, unsigned size)
{
    struct irqchip_pio *r = opaque;
    return irqchip_port_read(r->c, (uint16_t)(r->base + offset), size);
}

static void pio_write_cb(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct irqchip_pio *r = opaque;
    irqchip_port_write(r->c, (uint16_t)(r->base + offset), value, size);
}

static const struct io_ops pio_ops = { .read = pio_read_cb, .write = pio_write_cb };

static uint64_t lapic_mmio_read_cb(void *opaque, uint64_t offset, unsigned size)
{
    return irqchip_mmio_read(opaque, X86_APIC_DEFAULT_BASE + offset, size);
}

static void lapic_mmio_write_cb(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    irqchip_mmio_write(opaque, X86_APIC_DEFAULT_BASE + offset, value, size);
}

static const struct io_ops lapic_mmio_ops = { .read = lapic_mmio_read_cb,
                                              .write = lapic_mmio_write_cb };

static uint64_t ioapic_mmio_read_cb(void *opaque, uint64_t offset, unsigned size)
{
    struct irqchip *c = opaque;
    return ioapic_read(&c->ioapic, offset, size);
}

static void ioapic_mmio_write_cb(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct irqchip *c = opaque;
    ioapic_write(&c->ioapic, offset, value, size);
}

static const struct io_ops ioapic_mmio_ops = { .read = ioapic_mmio_read_cb,
                                               .write = ioapic_mmio_write_cb };

/* ---- lifecycle ---- */

void irqchip_reset(struct irqchip *c)
{
    uint64_t now = now_of(c);
    pic_reset(&c->pic);
    ioapic_reset(&c->ioapic);
    pit_reset(&c->pit, now);
    for (int i = 0; i < c->bus.nr; i++)
        lapic_reset(c->bus.lapics[i]);
}

void irqchip_save(struct irqchip *c)
{
    uint64_t now = now_of(c);
    for (int i = 0; i < c->bus.nr; i++)
        lapic_save(c->bus.lapics[i], now);
}

void irqchip_restore(struct irqchip *c)
{
    uint64_t now = now_of(c);
    pic_restore(&c->pic);
    pit_restore(&c->pit, now);
    for (int i = 0; i < c->bus.nr; i++)
        lapic_restore(c->bus.lapics[i], now);
    pic_changed(c);
}

struct irqchip *irqchip_new(struct machine *m, uint64_t (*clock)(void))
{
    struct irqchip *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->m = m;
    c->clock = clock ? clock : clock_ns;
    pic_init(&c->pic);
    ioapic_init(&c->ioapic, ioapic_deliver, c);
    pit_init(&c->pit, pit_irq, c);
    pit_reset(&c->pit, now_of(c));
    c->bus.eoi = bus_eoi;
    c->bus.eoi_opaque = c;
    return c;
}

void irqchip_free(struct irqchip *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(registry); i++)
        if (registry[i].c == c)
            registry[i].m = NULL, registry[i].c = NULL;
    free(c);
}

static void irqchip_reset_cb(void *opaque)
{
    irqchip_reset(opaque);
}

static void irqchip_destroy_cb(void *opaque)
{
    irqchip_free(opaque);
}

int irqchip_board_create(struct machine *m)
{
    static const struct { uint16_t base, len; const char *name; } ports[] = {
        { 0x20, 2, "pic-master" }, { 0xa0, 2, "pic-slave" }, { 0x4d0, 2, "elcr" },
        { 0x40, 4, "pit" }, { PIT_PORT61, 1, "port61" },
    };
    _Static_assert(ARRAY_SIZE(ports) == ARRAY_SIZE(((struct irqchip *)0)->pio), "pio slots");
    size_t slot = ARRAY_SIZE(registry);
    for (size_t i = 0; i < ARRAY_SIZE(registry); i++)
        if (!registry[i].c) {
            slot = i;
            break;
        }
    if (slot == ARRAY_SIZE(registry)) {
        error_report("irqchip: too many machines");
        return -ENOSPC;
    }
    struct irqchip *c = irqchip_new(m, NULL);
    if (!c) {
        error_report("irqchip: out of memory");
        return -ENOMEM;
    }
    int r = 0, registered = 0;
    for (size_t i = 0; i < ARRAY_SIZE(ports) && r == 0; i++) {
        c->pio[i] = (struct irqchip_pio){ .c = c, .base = ports[i].base };
        r = machine_register_pio(m, ports[i].base, ports[i].len, &pio_ops, &c->pio[i],
                                 ports[i].name);
        if (r < 0)
            error_report("irqchip: cannot register ports %#x-%#x (%s): %s", ports[i].base,
                         ports[i].base + ports[i].len - 1, ports[i].name, strerror(-r));
        else
            registered++;
    }
    if (r == 0 && (r = machine_register_mmio(m, X86_APIC_DEFAULT_BASE, LAPIC_MMIO_SIZE,
                                             &lapic_mmio_ops, c, "lapic")) < 0)
        error_report("irqchip: cannot register the LAPIC page at %#llx: %s",
                     X86_APIC_DEFAULT_BASE, strerror(-r));
    if (r == 0 && (r = machine_register_mmio(m, IOAPIC_BASE, IOAPIC_MMIO_SIZE,
                                             &ioapic_mmio_ops, c, "ioapic")) < 0)
        error_report("irqchip: cannot register the IOAPIC page at %#llx: %s", IOAPIC_BASE,
                     strerror(-r));
    if (r == 0 && (r = machine_add_device(m, "irqchip", c, irqchip_reset_cb,
                                          irqchip_destroy_cb)) < 0)
        error_report("irqchip: cannot add device: %s", strerror(-r));
    if (r < 0) {
        /* Registered regions point at c and ports cannot be unregistered,
         * so c is freed only if nothing was registered. */
        if (registered == 0)
            free(c);
        return r;
    }
    registry[slot].m = m;
    registry[slot].c = c;
    return 0;
}

struct irqchip *irqchip_create(struct machine *m)
{
    return irqchip_board_create(m) < 0 ? NULL : irqchip_of(m);
}
