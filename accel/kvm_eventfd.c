/* The kvm accelerator's eventfd shortcuts (machine/eventfd_io.h):
 * KVM_IOEVENTFD for doorbells, and MSI routes with KVM_IRQFD for device
 * interrupts.  Also the GSI routing table, which KVM only takes whole.
 *
 * Routing: as on a PC chipset (and as QEMU sets it up), ISA IRQs 0-15 go
 * to the PICs and to the same I/O APIC pins, except IRQ0 (the PIT), which
 * is wired to pin 2 (the MADT's interrupt source override); GSI 2, the PIC
 * cascade, goes nowhere.  GSIs 16-23 are the PCI pins.  MSI route n is
 * GSI 24 + n, an MSI entry with the message the device last sent.
 *
 * Everything here runs under the machine lock, so the route table needs
 * no lock of its own.  The routes and eventfd bindings belong to the VM:
 * an accelerator switch builds a new VM, which starts with no MSI routes
 * (each is programmed again by its next send) and registers the machine's
 * doorbell registry in kvm_eventfd_init. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "accel/kvm_internal.h"
#include "machine/eventfd_io.h"
#include "util/log.h"

#define KVM_BASE_ROUTES 48   /* 15 PIC + 23 IOAPIC entries, rounded up */

int kvm_irq_routing_commit(struct kvm_vm *vm)
{
    struct kvm_irq_routing *r;
    int ret;

    r = calloc(1, sizeof(*r) + (KVM_BASE_ROUTES + vm->nr_msi_routes) * sizeof(r->entries[0]));
    if (!r)
        return -ENOMEM;
    for (uint32_t i = 0; i < 16; i++) {
        if (i == 2)
            continue;
        r->entries[r->nr++] = (struct kvm_irq_routing_entry){
            .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = { .irqchip = i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                           .pin = i & 7 },
        };
    }
    for (uint32_t i = 0; i < KVM_IOAPIC_PINS; i++) {
        if (i == 2)
            continue;
        r->entries[r->nr++] = (struct kvm_irq_routing_entry){
            .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = i == 0 ? 2 : i },
        };
    }
    for (unsigned n = 0; n < vm->nr_msi_routes; n++) {
        const struct kvm_msi_route *mr = &vm->msi_routes[n];

        if (!mr->used)
            continue;
        r->entries[r->nr++] = (struct kvm_irq_routing_entry){
            .gsi = KVM_IOAPIC_PINS + n, .type = KVM_IRQ_ROUTING_MSI,
            .u.msi = { .address_lo = (uint32_t)mr->addr,
                       .address_hi = (uint32_t)(mr->addr >> 32), .data = mr->data },
        };
    }
    ret = kvm_ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r);
    free(r);
    return ret < 0 ? ret : 0;
}

static int ioeventfd_set(struct kvm_vm *vm, uint64_t addr, int fd, bool assign)
{
    /* Without ANY_LENGTH, match the 16-bit write virtio drivers use. */
    struct kvm_ioeventfd io = {
        .addr = addr,
        .len = vm->ioeventfd_any_length ? 0 : 2,
        .fd = fd,
        .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
    };
    int r = kvm_ioctl(vm->vm_fd, KVM_IOEVENTFD, &io);

    return r < 0 ? r : 0;
}

int kvm_ioeventfd(struct machine *m, uint64_t addr, int fd, bool assign)
{
    struct kvm_vm *vm = kvm_vm_of(m);

    if (!vm)
        return 0;   /* kvm_eventfd_init registers it with the VM */
    return ioeventfd_set(vm, addr, fd, assign);
}

int kvm_eventfd_init(struct machine *m, struct kvm_vm *vm)
{
    int ok = 0;

    vm->ioeventfd_any_length =
        ioctl(vm->dev_fd, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD_ANY_LENGTH) > 0;
    for (int i = 0; i < m->nr_ioeventfds; i++) {
        int r = ioeventfd_set(vm, m->ioeventfds[i].addr, m->ioeventfds[i].fd, true);

        if (r < 0)
            LOG(LOG_ACCEL, "kvm: no ioeventfd at 0x%llx: %s\n",
                (unsigned long long)m->ioeventfds[i].addr, strerror(-r));
        else
            ok++;
    }
    if (m->nr_ioeventfds)
        LOG(LOG_ACCEL, "kvm: %d of %d doorbell(s) on ioeventfds%s\n", ok, m->nr_ioeventfds,
            vm->ioeventfd_any_length ? "" : " (16-bit writes only)");
    return 0;
}

void kvm_eventfd_destroy(struct kvm_vm *vm)
{
    /* The irqfds and ioeventfds went with the VM's fd. */
    free(vm->msi_routes);
    vm->msi_routes = NULL;
    vm->nr_msi_routes = 0;
}

static int route_drop(struct kvm_vm *vm, unsigned route)
{
    struct kvm_msi_route *mr;

    if (route >= vm->nr_msi_routes || !vm->msi_routes[route].used)
        return 0;
    mr = &vm->msi_routes[route];
    if (mr->irqfd >= 0) {
        struct kvm_irqfd irqfd = { .fd = (uint32_t)mr->irqfd, .gsi = KVM_IOAPIC_PINS + route,
                                   .flags = KVM_IRQFD_FLAG_DEASSIGN };

        kvm_ioctl(vm->vm_fd, KVM_IRQFD, &irqfd);
    }
    *mr = (struct kvm_msi_route){ .irqfd = -1 };
    return kvm_irq_routing_commit(vm);
}

int kvm_msi_route(struct machine *m, unsigned route, uint64_t addr, uint32_t data, int fd)
{
    struct kvm_vm *vm = kvm_vm_of(m);
    struct kvm_msi_route *mr;
    int r;

    if (!vm)
        return -ENODEV;
    if (fd < 0)
        return route_drop(vm, route);
    if (route >= KVM_MAX_MSI_ROUTES)
        return -ENOSPC;
    if (route >= vm->nr_msi_routes) {
        struct kvm_msi_route *n = realloc(vm->msi_routes, (route + 1) * sizeof(*n));

        if (!n)
            return -ENOMEM;
        for (unsigned i = vm->nr_msi_routes; i <= route; i++)
            n[i] = (struct kvm_msi_route){ .irqfd = -1 };
        vm->msi_routes = n;
        vm->nr_msi_routes = route + 1;
    }
    mr = &vm->msi_routes[route];
    if (mr->used && mr->addr == addr && mr->data == data && mr->irqfd == fd)
        return 0;   /* the common case: nothing changed */
    if (!mr->used || mr->addr != addr || mr->data != data) {
        mr->used = true;
        mr->addr = addr;
        mr->data = data;
        r = kvm_irq_routing_commit(vm);
        if (r < 0) {
            *mr = (struct kvm_msi_route){ .irqfd = mr->irqfd };
            LOG(LOG_ACCEL, "kvm: KVM_SET_GSI_ROUTING for MSI route %u: %s\n", route,
                strerror(-r));
            return r;
        }
    }
    if (mr->irqfd != fd) {
        struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = KVM_IOAPIC_PINS + route };

        if (mr->irqfd >= 0) {
            struct kvm_irqfd old = { .fd = (uint32_t)mr->irqfd, .gsi = irqfd.gsi,
                                     .flags = KVM_IRQFD_FLAG_DEASSIGN };

            kvm_ioctl(vm->vm_fd, KVM_IRQFD, &old);
            mr->irqfd = -1;
        }
        r = kvm_ioctl(vm->vm_fd, KVM_IRQFD, &irqfd);
        if (r < 0) {
            LOG(LOG_ACCEL, "kvm: KVM_IRQFD for MSI route %u: %s\n", route, strerror(-r));
            return r;
        }
        mr->irqfd = fd;
    }
    return 0;
}
