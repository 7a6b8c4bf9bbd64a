/* The I/O APIC (82093AA-style, version 0x11, 24 pins) at 0xfec00000.
 *
 * ISA and PCI lines arrive through ioapic_set_irq(); each redirection entry
 * turns a pin into an APIC bus message handed to the `deliver` hook (the
 * irqchip glue routes it to the LAPICs).  Level-triggered pins hold remote
 * IRR until the LAPIC broadcasts the EOI for their vector (ioapic_eoi()).
 *
 * `level` arguments are logical: 1 = asserted.  The polarity bit is stored
 * and read back but not applied (KVM and QEMU do the same): devices model
 * their lines as asserted/deasserted, not as voltages.
 *
 * The state fields are what KVM_GET_IRQCHIP carries, with KVM's meaning
 * (checked against the in-kernel IOAPIC by test_irqchip): for a level pin
 * irr is the line; for an edge pin it is an edge not yet sent (set while
 * masked, cleared when sent or when the line drops).  `line` holds the input
 * levels for edge detection.  As on the 82093AA, an edge on a masked pin is
 * not delivered on unmask, while an asserted level pin fires when unmasked.
 * Callers hold the machine lock. */
#ifndef VMON_HW_IOAPIC_H
#define VMON_HW_IOAPIC_H

#include "util/types.h"
#include "hw/lapic.h"

#define IOAPIC_BASE 0xfec00000ull
#define IOAPIC_MMIO_SIZE 0x1000
#define IOAPIC_NUM_PINS 24
#define IOAPIC_VERSION_VALUE 0x00170011u /* 24 entries, version 0x11 */

/* MMIO offsets and register indexes. */
#define IOAPIC_REGSEL 0x00
#define IOAPIC_WINDOW 0x10
#define IOAPIC_REG_ID 0x00
#define IOAPIC_REG_VER 0x01
#define IOAPIC_REG_ARB 0x02
#define IOAPIC_REG_REDIR 0x10

/* Redirection entry bits. */
#define IOAPIC_RTE_DELIVERY_STATUS (1ull << 12)
#define IOAPIC_RTE_POLARITY_LOW (1ull << 13)
#define IOAPIC_RTE_REMOTE_IRR (1ull << 14)
#define IOAPIC_RTE_LEVEL (1ull << 15)
#define IOAPIC_RTE_MASKED (1ull << 16)

struct ioapic {
    uint64_t base;      /* guest-physical base (informational) */
    uint32_t ioregsel;
    uint32_t id;        /* 4-bit APIC ID, not shifted */
    uint32_t irr;       /* KVM's irr: level lines, unsent edges */
    uint32_t line;      /* input levels (not in KVM's state) */
    uint64_t redir[IOAPIC_NUM_PINS];

    /* Returns how many LAPICs accepted the message. */
    int (*deliver)(void *opaque, const struct apic_msg *msg);
    void *opaque;
};

void ioapic_init(struct ioapic *io, int (*deliver)(void *opaque, const struct apic_msg *msg),
                 void *opaque);
/* Reset: ID 0, every pin masked and edge-triggered, all lines low. */
void ioapic_reset(struct ioapic *io);
/* MMIO at offset in the IOAPIC page; size 1/2/4/8. */
uint64_t ioapic_read(struct ioapic *io, uint64_t offset, unsigned size);
void ioapic_write(struct ioapic *io, uint64_t offset, uint64_t value, unsigned size);
/* Input pin `pin` changes level (1 asserted); pins >= 24 are ignored. */
void ioapic_set_irq(struct ioapic *io, unsigned pin, int level);
/* A LAPIC saw an EOI for a level-triggered `vector`. */
void ioapic_eoi(struct ioapic *io, uint8_t vector);

#endif
