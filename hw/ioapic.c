/* The I/O APIC model. */
#include <string.h>
#include "hw/ioapic.h"
#include "util/log.h"

/* Writable bits of a redirection entry: vector, delivery mode, destination
 * mode, polarity, trigger mode, mask, destination.  Delivery status and
 * remote IRR are read-only. */
#define RTE_WRITABLE 0xff0000000001afffull

void ioapic_init(struct ioapic *io, int (*deliver)(void *opaque, const struct apic_msg *msg),
                 void *opaque)
{
    memset(io, 0, sizeof(*io));
    io->deliver = deliver;
    io->opaque = opaque;
    ioapic_reset(io);
}

void ioapic_reset(struct ioapic *io)
{
    io->base = IOAPIC_BASE;
    io->ioregsel = 0;
    io->id = 0;
    io->irr = 0;
    io->line = 0;
    for (int i = 0; i < IOAPIC_NUM_PINS; i++)
        io->redir[i] = IOAPIC_RTE_MASKED;
}

/* Send the pin's message if its entry lets it through now. */
static void service(struct ioapic *io, unsigned pin)
{
    uint64_t e = io->redir[pin];
    bool level = (e & IOAPIC_RTE_LEVEL) != 0;
    if ((e & IOAPIC_RTE_MASKED) || (level && (e & IOAPIC_RTE_REMOTE_IRR)))
        return;
    struct apic_msg m = {
        .vector = e & 0xff,
        .delivery = (e >> 8) & 7,
        .logical = (e >> 11) & 1,
        .level_trig = level,
        .assert = true,
        .dest = e >> 56,
        .shorthand = APIC_SH_NONE,
    };
    LOG(LOG_INT, "ioapic: pin %u -> vector %#x dest %#x\n", pin, m.vector, m.dest);
    int accepted = io->deliver ? io->deliver(io->opaque, &m) : 0;
    if (!level)
        io->irr &= ~(1u << pin);  /* the edge is spent, taken or not */
    else if (accepted > 0)
        io->redir[pin] |= IOAPIC_RTE_REMOTE_IRR;  /* wait for the EOI */
}

void ioapic_set_irq(struct ioapic *io, unsigned pin, int level)
{
    if (pin >= IOAPIC_NUM_PINS)
        return;
    uint32_t bit = 1u << pin;
    if (!level) {
        io->line &= ~bit;
        io->irr &= ~bit;
        return;
    }
    bool rising = !(io->line & bit);
    io->line |= bit;
    io->irr |= bit;
    /* An edge pin fires on a rising edge only.  A repeated assert leaves
     * IRR set without firing, and an edge on a masked pin stays in IRR but
     * is not delivered on unmask: both exactly what KVM's IOAPIC does. */
    if (!(io->redir[pin] & IOAPIC_RTE_LEVEL) && !rising)
        return;
    service(io, pin);
}

void ioapic_eoi(struct ioapic *io, uint8_t vector)
{
    for (unsigned pin = 0; pin < IOAPIC_NUM_PINS; pin++) {
        uint64_t e = io->redir[pin];
        if ((e & 0xff) != vector || !(e & IOAPIC_RTE_LEVEL) || !(e & IOAPIC_RTE_REMOTE_IRR))
            continue;
        io->redir[pin] &= ~IOAPIC_RTE_REMOTE_IRR;
        if (io->irr & (1u << pin))
            service(io, pin);  /* line still asserted: deliver again */
    }
}

static uint32_t reg_read(const struct ioapic *io)
{
    uint32_t sel = io->ioregsel;
    switch (sel) {
    case IOAPIC_REG_ID:
    case IOAPIC_REG_ARB:
        return (io->id & 0xf) << 24;
    case IOAPIC_REG_VER:
        return IOAPIC_VERSION_VALUE;
    default:
        if (sel >= IOAPIC_REG_REDIR && sel < IOAPIC_REG_REDIR + 2 * IOAPIC_NUM_PINS) {
            uint64_t e = io->redir[(sel - IOAPIC_REG_REDIR) / 2];
            return (sel & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
        }
        LOG(LOG_GUEST_ERRORS, "ioapic: read of register %#x\n", sel);
        return 0;
    }
}

static void reg_write(struct ioapic *io, uint32_t val)
{
    uint32_t sel = io->ioregsel;
    if (sel == IOAPIC_REG_ID) {
        io->id = (val >> 24) & 0xf;
        return;
    }
    if (sel < IOAPIC_REG_REDIR || sel >= IOAPIC_REG_REDIR + 2 * IOAPIC_NUM_PINS) {
        LOG(LOG_GUEST_ERRORS, "ioapic: write to register %#x ignored\n", sel);
        return;
    }
    unsigned pin = (sel - IOAPIC_REG_REDIR) / 2;
    uint64_t e = io->redir[pin];
    uint64_t ne = (sel & 1) ? (e & 0xffffffffull) | ((uint64_t)val << 32)
                            : (e & ~0xffffffffull) | val;
    ne = (ne & RTE_WRITABLE) | (e & ~RTE_WRITABLE);
    if (!(ne & IOAPIC_RTE_LEVEL))
        ne &= ~IOAPIC_RTE_REMOTE_IRR;
    io->redir[pin] = ne;
    /* An asserted level pin that became deliverable fires now. */
    if ((ne & IOAPIC_RTE_LEVEL) && (io->irr & (1u << pin)))
        service(io, pin);
}

/* Only IOREGSEL (0x00) and IOWIN (0x10) exist.  The spec asks for 32-bit
 * accesses; narrower ones act on their byte lanes, wider or straddling ones
 * read as zero and are dropped. */
static bool decode(uint64_t offset, unsigned size, unsigned *reg, unsigned *shift)
{
    unsigned r = (unsigned)(offset & ~3ull);
    unsigned align = offset & 3;
    if (offset >= IOAPIC_MMIO_SIZE || (r != IOAPIC_REGSEL && r != IOAPIC_WINDOW) ||
        align + size > 4 || size == 0)
        return false;
    *reg = r;
    *shift = align * 8;
    return true;
}

uint64_t ioapic_read(struct ioapic *io, uint64_t offset, unsigned size)
{
    unsigned reg, shift;
    if (!decode(offset, size, &reg, &shift))
        return 0;
    uint32_t v = reg == IOAPIC_REGSEL ? io->ioregsel : reg_read(io);
    uint64_t mask = size == 4 ? 0xffffffffull : (1ull << (size * 8)) - 1;
    return (v >> shift) & mask;
}

void ioapic_write(struct ioapic *io, uint64_t offset, uint64_t value, unsigned size)
{
    unsigned reg, shift;
    if (!decode(offset, size, &reg, &shift)) {
        LOG(LOG_GUEST_ERRORS, "ioapic: %u-byte write at %#llx ignored\n", size,
            (unsigned long long)offset);
        return;
    }
    uint32_t mask = (size == 4 ? 0xffffffffu : (1u << (size * 8)) - 1) << shift;
    uint32_t old = reg == IOAPIC_REGSEL ? io->ioregsel : reg_read(io);
    uint32_t v = (old & ~mask) | (((uint32_t)value << shift) & mask);
    if (reg == IOAPIC_REGSEL)
        io->ioregsel = v & 0xff;
    else
        reg_write(io, v);
}
