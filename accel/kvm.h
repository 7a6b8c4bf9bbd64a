/* kvm-only entry points for code that moves the state of KVM's in-kernel
 * devices (PICs, I/O APIC, PIT) to and from vmon's models: snapshots and
 * accelerator switches (see hw/kvm_irqchip_state.h for the conversions).
 * The LAPICs are not here: they travel in struct cpu_state. */
#ifndef VMON_ACCEL_KVM_H
#define VMON_ACCEL_KVM_H

#include <linux/kvm.h>

#include "machine/machine.h"

/* chips[0..2] are KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC.  Only while
 * the vCPUs are parked.  0 or -errno (-ENODEV if m does not run on kvm). */
int kvm_devices_get(struct machine *m, struct kvm_irqchip chips[3], struct kvm_pit_state2 *pit);
int kvm_devices_set(struct machine *m, const struct kvm_irqchip chips[3],
                    const struct kvm_pit_state2 *pit);

#endif
