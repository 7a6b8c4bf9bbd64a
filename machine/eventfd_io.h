/* Guest doorbells and device interrupts on eventfds, for accelerators that
 * can wire them up in the kernel (kvm: KVM_IOEVENTFD and KVM_IRQFD on MSI
 * routes), so a virtqueue kick costs no exit to user space and an
 * interrupt no ioctl.
 *
 * Devices use this unconditionally.  The machine keeps the doorbells in a
 * registry: the accelerator registers them when it is created (and again
 * after an accelerator switch builds a new VM) and whenever one is added
 * while it runs.  MSI routes are programmed lazily: every send tells the
 * accelerator the route's current address and data, and it reprograms only
 * what changed.  Under an accelerator without these hooks (emu) nothing
 * changes: the doorbell write reaches the device's MMIO handler, and
 * messages go out through machine_send_msi().  All calls under the machine
 * lock. */
#ifndef VMON_MACHINE_EVENTFD_IO_H
#define VMON_MACHINE_EVENTFD_IO_H

#include "machine/machine.h"

struct machine_ioeventfd {
    uint64_t addr;   /* guest-physical MMIO address; a write of any width */
    int fd;
};

/* Let a guest write to addr signal fd (where the accelerator can).  0, or
 * -ENOMEM. */
int machine_ioeventfd_add(struct machine *m, uint64_t addr, int fd);
void machine_ioeventfd_del(struct machine *m, uint64_t addr, int fd);

/* One MSI source (an MSI-X vector): an eventfd and a route number, both
 * made on first use. */
struct msi_route {
    int fd;          /* -1 until used */
    int id;          /* accelerator route number, -1 until used */
};

void msi_route_init(struct msi_route *r);
/* Deliver the message addr/data: through the route's eventfd when the
 * accelerator has MSI routes (reprogramming the route if addr/data
 * changed), else machine_send_msi(). */
void msi_route_send(struct machine *m, struct msi_route *r, uint64_t addr, uint32_t data);
/* The guest rewrote the message: bring an existing route up to date now
 * rather than at the next send. */
void msi_route_update(struct machine *m, struct msi_route *r, uint64_t addr, uint32_t data);
void msi_route_release(struct machine *m, struct msi_route *r);

#endif
