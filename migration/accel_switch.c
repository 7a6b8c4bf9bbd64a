/* Live accelerator switching (kvm <-> emu).
 *
 * Protocol, all under the machine lock on the main loop:
 *  0. drain the devices (machine_drain_devices: virtio-blk requests in
 *     flight complete) while the vCPUs still run:
 *     their interrupts must reach interrupt state the vCPUs still own
 *     (once parked, v->state holds the LAPIC as it was, and an interrupt
 *     injected into the old VM after that would be lost with it).
 *     Requests the guest starts after the drain complete on the main loop
 *     once the switch is over, through the new accelerator;
 *  1. park every vCPU (machine_pause_vcpus): v->state is authoritative;
 *  2. end the vCPU threads (the threading models differ);
 *  3. take the interrupt controllers' state out of the old accelerator as
 *     KVM's pure-data structs (the conversions in hw/kvm_irqchip_state.h
 *     make them a neutral carrier): kvm_devices_get, or kvm_irqchip_to_kvm
 *     from vmon's models;
 *  4. destroy the old vCPUs and VM; guest RAM (the memfd) and the board's
 *     devices stay as they are;
 *  5. create the new VM on the same RAM, its vCPUs, load the irqchip
 *     (kvm_devices_set, or kvm_irqchip_from_kvm into vmon's models, which
 *     exist for the machine's lifetime once created) and every v->state;
 *  6. start the new threads and resume unless the VM was paused.
 * If step 5 fails, the old accelerator is brought up again the same way. */
#include <errno.h>
#include <string.h>

#include "accel/accel.h"
#include "accel/kvm.h"
#include "hw/irqchip.h"
#include "hw/kvm_irqchip_state.h"
#include "migration/migration.h"
#include "util/log.h"
#include "util/main_loop.h"

struct irq_carrier {
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;
};

static bool is_kvm(const struct accel_ops *a)
{
    return a == &accel_kvm_ops;
}

static int take_irqchip(struct machine *m, struct irq_carrier *ic)
{
    memset(ic, 0, sizeof(*ic));
    if (is_kvm(m->accel))
        return kvm_devices_get(m, ic->chips, &ic->pit);
    struct irqchip *c = irqchip_of(m);

    if (!c)
        return -ENODEV;
    kvm_irqchip_to_kvm(c, ic->chips, &ic->pit);
    return 0;
}

static void tear_down(struct machine *m)
{
    for (int i = 0; i < m->nr_vcpus; i++)
        m->accel->vcpu_destroy(m->vcpus[i]);
    m->accel->destroy(m);
}

/* Create `to` on the machine and load the carried state.  On failure
 * nothing of `to` remains. */
static int bring_up(struct machine *m, const struct accel_ops *to,
                    const struct irq_carrier *ic)
{
    int ret, made = 0;

    m->accel = to;
    ret = to->init(m);
    if (ret < 0) {
        error_report("x-accel-switch: cannot create the %s VM: %s", to->name, strerror(-ret));
        return ret;
    }
    /* emu's vcpu_init takes the machine lock itself. */
    machine_unlock();
    for (; made < m->nr_vcpus; made++) {
        ret = to->vcpu_init(m->vcpus[made]);
        if (ret < 0)
            break;
    }
    machine_lock();
    if (ret < 0) {
        error_report("x-accel-switch: %s: cannot create vCPU %d: %s", to->name, made,
                     strerror(-ret));
        goto fail;
    }
    if (is_kvm(to)) {
        ret = kvm_devices_set(m, ic->chips, &ic->pit);
    } else {
        struct irqchip *c = irqchip_of(m);

        ret = c ? kvm_irqchip_from_kvm(c, ic->chips, &ic->pit) : -ENODEV;
    }
    if (ret < 0) {
        error_report("x-accel-switch: %s: cannot load the interrupt controllers: %s",
                     to->name, strerror(-ret));
        goto fail;
    }
    for (int i = 0; i < m->nr_vcpus; i++) {
        ret = to->set_state(m->vcpus[i], &m->vcpus[i]->state);
        if (ret < 0) {
            error_report("x-accel-switch: %s: vCPU %d refused its state: %s", to->name, i,
                         strerror(-ret));
            goto fail;
        }
    }
    return 0;
fail:
    for (int i = 0; i < made; i++)
        to->vcpu_destroy(m->vcpus[i]);
    to->destroy(m);
    return ret;
}

int accel_switch(struct machine *m, const struct accel_ops *to)
{
    const struct accel_ops *from = m->accel;
    struct irq_carrier ic;
    char why[256] = "";
    uint64_t t0 = clock_ns(), t_pause = 0, t_join = 0, t_down = 0, t_up = 0;
    int ret;

    if (to == from)
        return 0;
    if (!to->available(why, sizeof(why))) {
        error_report("x-accel-switch: %s is not usable here: %s", to->name, why);
        return -ENODEV;
    }
    machine_drain_devices(m);
    machine_pause_vcpus(m);
    if (atomic_load(&m->shutdown_requested))
        return -ESHUTDOWN;
    t_pause = clock_ns();
    machine_end_vcpu_threads(m);
    t_join = clock_ns();
    ret = take_irqchip(m, &ic);
    if (ret < 0) {
        error_report("x-accel-switch: cannot read the %s interrupt controllers: %s",
                     from->name, strerror(-ret));
        goto restart;
    }
    tear_down(m);
    t_down = clock_ns();
    ret = bring_up(m, to, &ic);
    t_up = clock_ns();
    if (ret < 0) {
        int r2 = bring_up(m, from, &ic);

        if (r2 < 0) {
            error_report("x-accel-switch: cannot bring %s back either: stopping the VM",
                         from->name);
            machine_request_shutdown(m, SHUTDOWN_GUEST_PANIC, 1);
            return ret;
        }
    }
restart:
    {
        int r3 = machine_start_vcpus(m);

        if (r3 < 0) {
            error_report("x-accel-switch: cannot start vCPU threads: %s", strerror(-r3));
            machine_request_shutdown(m, SHUTDOWN_GUEST_PANIC, 1);
            return r3;
        }
    }
    machine_resume_vcpus(m);
    LOG(LOG_ACCEL,
        "accel: switched %s -> %s in %llu us (pause %llu, join %llu, teardown %llu, "
        "bring-up %llu)%s\n", from->name, m->accel->name,
        (unsigned long long)((clock_ns() - t0) / 1000),
        (unsigned long long)((t_pause - t0) / 1000),
        (unsigned long long)(t_join ? (t_join - t_pause) / 1000 : 0),
        (unsigned long long)(t_down ? (t_down - t_join) / 1000 : 0),
        (unsigned long long)(t_up ? (t_up - t_down) / 1000 : 0),
        ret < 0 ? " (failed, rolled back)" : "");
    return ret;
}
