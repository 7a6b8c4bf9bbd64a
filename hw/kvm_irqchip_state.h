/* Pure-data conversions between KVM's in-kernel interrupt controller state
 * (KVM_GET/SET_IRQCHIP, KVM_GET/SET_PIT2, KVM_GET/SET_LAPIC) and vmon's
 * models, for snapshots and for switching a running guest between the kvm
 * and emu accelerators.  No ioctls here: the kvm accelerator does those.
 *
 * Time: KVM's count_load_time is host CLOCK_MONOTONIC ns, the models' time
 * base too, so PIT channel 1 and 2 times copy unchanged within one host
 * boot (channel 0: see kvm_irqchip_pit_from_kvm).  The LAPIC
 * timer travels as the current-count register (TMCCT): call lapic_save()
 * (irqchip_save()) before reading a model's page, and lapic_restore() after
 * writing one; KVM_GET_LAPIC fills TMCCT and recent kernels restart the
 * timer from it on KVM_SET_LAPIC.
 *
 * from_kvm functions sanitise what they load (a snapshot file is input):
 * out-of-range modes, states and counts become valid values. */
#ifndef VMON_HW_KVM_IRQCHIP_STATE_H
#define VMON_HW_KVM_IRQCHIP_STATE_H

#include <linux/kvm.h>
#include "hw/irqchip.h"

void kvm_irqchip_pic_to_kvm(const struct pic_chip *c, struct kvm_pic_state *k);
void kvm_irqchip_pic_from_kvm(const struct kvm_pic_state *k, struct pic_chip *c);
void kvm_irqchip_ioapic_to_kvm(const struct ioapic *io, struct kvm_ioapic_state *k);
void kvm_irqchip_ioapic_from_kvm(const struct kvm_ioapic_state *k, struct ioapic *io);
void kvm_irqchip_pit_to_kvm(const struct pit *p, struct kvm_pit_state2 *k);
/* Also rebuilds the PIT's IRQ0 deadline for `now`.  Channel 0 restarts at
 * `now`: KVM keeps its phase in an hrtimer and reports a stale load time. */
void kvm_irqchip_pit_from_kvm(const struct kvm_pit_state2 *k, struct pit *p, uint64_t now);
/* The LAPIC page has one layout in both (xAPIC, KVM_CAP_X2APIC_API off). */
void kvm_irqchip_lapic_to_kvm(const uint8_t *regs, struct kvm_lapic_state *k);
void kvm_irqchip_lapic_from_kvm(const struct kvm_lapic_state *k, uint8_t *regs);

/* Whole chip: chips[0..2] are KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC.
 * to_kvm also saves every attached LAPIC's timer into its page (the pages
 * themselves move with cpu_state via KVM_SET_LAPIC).  from_kvm returns
 * -EINVAL if a chip_id is wrong, and restores the derived state of the
 * PIT and of every attached LAPIC (load the LAPIC pages first). */
void kvm_irqchip_to_kvm(struct irqchip *c, struct kvm_irqchip chips[3],
                        struct kvm_pit_state2 *pit);
int kvm_irqchip_from_kvm(struct irqchip *c, const struct kvm_irqchip chips[3],
                         const struct kvm_pit_state2 *pit);

#endif
