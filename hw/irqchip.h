/* The user-space interrupt controllers and timers of a PC, wired together:
 * 8259 pair, I/O APIC, 8254 PIT (+ port 0x61) and one LAPIC per vCPU.
 *
 * The emu accelerator always uses them; under kvm the in-kernel irqchip is
 * used instead and hw/kvm_irqchip_state.h converts its state to and from
 * these models.  Routing (what a PC board wires):
 *   ISA IRQ n (0-15) -> PIC pin n and IOAPIC pin n, except IRQ0 -> IOAPIC
 *   pin 2 (the MADT's interrupt source override); GSIs 16-23 -> IOAPIC only.
 *   PIC INTR -> LINT0 of every LAPIC that accepts it (ExtINT, virtual wire)
 *   or whose APIC is hardware-disabled.  PIT channel 0 -> ISA IRQ0.
 *   MSI (SDM vol. 3, 10.11) -> LAPICs.  Level EOIs -> IOAPIC.
 * The IOAPIC's ID is 0 (the MADT must say so).
 *
 * Every entry point runs under the machine lock.  The clock is injectable
 * (irqchip_new) so tests never depend on wall-clock timing. */
#ifndef VMON_HW_IRQCHIP_H
#define VMON_HW_IRQCHIP_H

#include "machine/machine.h"
#include "hw/lapic.h"
#include "hw/ioapic.h"
#include "hw/pic.h"
#include "hw/pit.h"

#define LAPIC_MMIO_SIZE 0x1000
/* irqchip_pending(): the interrupt comes from the 8259; its vector is only
 * known at irqchip_ack(). */
#define IRQCHIP_PENDING_EXTINT 256

struct irqchip {
    struct machine *m;          /* NULL for a standalone chip (tests) */
    uint64_t (*clock)(void);    /* host CLOCK_MONOTONIC ns */

    struct pic pic;
    struct ioapic ioapic;
    struct pit pit;
    struct lapic_bus bus;
    struct lapic lapic[MACHINE_MAX_VCPUS];
    bool attached[MACHINE_MAX_VCPUS];

    /* One io region per port range; the opaque says which. */
    struct irqchip_pio {
        struct irqchip *c;
        uint16_t base;
    } pio[5];
};

/* Models only, no I/O registration; clock NULL means clock_ns(). */
struct irqchip *irqchip_new(struct machine *m, uint64_t (*clock)(void));
void irqchip_free(struct irqchip *c);
/* For a board whose accelerator has no in-kernel irqchip: irqchip_new()
 * plus the port/MMIO regions and a machine device (reset, destroy).  NULL
 * after an error_report(). */
struct irqchip *irqchip_create(struct machine *m);
/* The same with a board-table signature (hw/pc.c's board_devices[], with
 * board_user_irqchip as the condition): 0 or -ENOMEM/-EEXIST. */
int irqchip_board_create(struct machine *m);
/* The chip irqchip_create() made for m, or NULL. */
struct irqchip *irqchip_of(struct machine *m);
void irqchip_reset(struct irqchip *c);

/* Bind vCPU `index`'s LAPIC to the state the accelerator runs on (the
 * register page is cpu->lapic).  Call from vcpu_init; -EINVAL/-ENOSPC. */
int irqchip_attach_vcpu(struct irqchip *c, int index, struct cpu_state *cpu,
                        const struct lapic_host_ops *ops, void *vcpu);
struct lapic *irqchip_lapic(struct irqchip *c, int index);

/* The vCPU whose LAPIC the 0xfee00000 page shows on this thread.  The emu
 * accelerator sets it before running a vCPU; -1 (unset) means vCPU 0. */
void irqchip_set_current_cpu(int index);
int irqchip_current_cpu(void);

/* Interrupt sources. */
void irqchip_set_irq(struct irqchip *c, unsigned gsi, int level);
void irqchip_send_msi(struct irqchip *c, uint64_t addr, uint32_t data);
/* accel_ops.set_irq / send_msi for accelerators that use these models. */
void irqchip_accel_set_irq(struct machine *m, unsigned gsi, int level);
void irqchip_accel_send_msi(struct machine *m, uint64_t addr, uint32_t data);

/* The CPU loop: is an external interrupt pending for vCPU `index`?  A
 * LAPIC vector, IRQCHIP_PENDING_EXTINT, or -1.  The caller checks
 * RFLAGS.IF and the interrupt shadow, then takes it with irqchip_ack(),
 * which returns the vector to deliver (-1 if it went away). */
int irqchip_pending(struct irqchip *c, int index);
int irqchip_ack(struct irqchip *c, int index);

/* Timers: the earliest deadline (host ns, 0 = none) the CPU loop may sleep
 * until, and firing whatever is due at `now`. */
uint64_t irqchip_next_deadline_ns(struct irqchip *c);
void irqchip_timers_check(struct irqchip *c, uint64_t now);

/* Snapshots: save puts the LAPIC timers' current counts into the pages;
 * restore rebuilds all derived state after the models' data was loaded. */
void irqchip_save(struct irqchip *c);
void irqchip_restore(struct irqchip *c);

/* The register interfaces the io regions dispatch to (also for tests):
 * ports 0x20-0x21, 0xa0-0xa1, 0x4d0-0x4d1, 0x40-0x43, 0x61; MMIO at the
 * LAPIC and IOAPIC pages.  Multi-byte port accesses act byte by byte. */
uint64_t irqchip_port_read(struct irqchip *c, uint16_t port, unsigned size);
void irqchip_port_write(struct irqchip *c, uint16_t port, uint64_t val, unsigned size);
uint64_t irqchip_mmio_read(struct irqchip *c, gpa_t gpa, unsigned size);
void irqchip_mmio_write(struct irqchip *c, gpa_t gpa, uint64_t val, unsigned size);

#endif
