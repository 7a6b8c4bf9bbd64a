/* The accelerator interface: the only way the machine runs guest code.
 *
 * Two implementations: kvm (accel/kvm*.c) and emu (accel/emu.c on top of
 * emu/).  Both present the same CPUID model (cpu/cpuid.h) and move state
 * through struct cpu_state, so a vCPU can be moved from one to the other. */
#ifndef VMON_ACCEL_ACCEL_H
#define VMON_ACCEL_ACCEL_H

#include "machine/machine.h"

struct accel_ops {
    const char *name;
    /* All vCPUs on one thread, round robin (emu), or a thread each (kvm). */
    bool single_thread;

    /* Can this accelerator run here?  If not, write why into why. */
    bool (*available)(char *why, size_t why_len);
    /* Create the VM: register guest RAM, interrupt controllers, clocks. */
    int (*init)(struct machine *m);
    void (*destroy)(struct machine *m);

    int (*vcpu_init)(struct vcpu *v);
    void (*vcpu_destroy)(struct vcpu *v);
    /* Run the vCPU, dispatching port/MMIO exits to machine_pio/mmio, until
     * something the machine must handle happens (enum vcpu_exit). */
    enum vcpu_exit (*vcpu_run)(struct vcpu *v);
    /* single_thread only: every vCPU returned VCPU_EXIT_HALT; sleep until an
     * interrupt, a timer or a kick makes one runnable. */
    void (*idle_wait)(struct machine *m);
    /* Make vcpu_run return VCPU_EXIT_STOP soon; callable from any thread. */
    void (*vcpu_kick)(struct vcpu *v);
    /* Move state between the accelerator and v->state.  Only while the vCPU
     * is not running. */
    int (*get_state)(struct vcpu *v, struct cpu_state *s);
    int (*set_state)(struct vcpu *v, const struct cpu_state *s);

    /* Machine reset, with every vCPU parked: put what the accelerator owns
     * (kvm: the in-kernel PIC, I/O APIC and PIT) back in its power-on
     * state.  Optional (NULL: nothing to do). */
    void (*reset)(struct machine *m);

    /* Live migration's dirty page tracking (machine/dirty_log.h), with
     * every vCPU parked for start and stop.  start: make guest writes to RAM
     * reach the log (kvm: KVM_MEM_LOG_DIRTY_PAGES on every memslot); sync:
     * fold the writes the accelerator tracked itself into m->dirty (kvm:
     * KVM_GET_DIRTY_LOG).  emu needs neither: its soft-MMU keeps writes off
     * the TLB fast path while the log is active and marks m->dirty
     * directly.  Optional (NULL: nothing to do); 0 or -errno. */
    int (*dirty_log_start)(struct machine *m);
    void (*dirty_log_stop)(struct machine *m);
    int (*dirty_log_sync)(struct machine *m);
    /* A device wrote [gpa, gpa+len) of guest RAM (machine_notify_ram_write,
     * any thread): drop what the accelerator derived from it.  Optional. */
    void (*ram_written)(struct machine *m, gpa_t gpa, uint64_t len);

    /* Interrupt lines and MSIs (route to in-kernel or vmon's own models). */
    void (*set_irq)(struct machine *m, unsigned gsi, int level);
    void (*send_msi)(struct machine *m, uint64_t addr, uint32_t data);

    /* Eventfd shortcuts (machine/eventfd_io.h); optional, NULL where the
     * guest's accesses and the device's messages take the normal path.
     * ioeventfd: a guest write of any width to MMIO address addr signals
     * fd without an exit (assign false: stop).  Before the accelerator is
     * initialised, init picks the machine's registry up instead.
     * msi_route: writing fd delivers the MSI addr/data; called again with
     * the same route and other values to reprogram it, fd -1 to drop it.
     * 0 or -errno (the caller then uses send_msi). */
    int (*ioeventfd)(struct machine *m, uint64_t addr, int fd, bool assign);
    int (*msi_route)(struct machine *m, unsigned route, uint64_t addr, uint32_t data, int fd);
};

extern const struct accel_ops accel_kvm_ops;
extern const struct accel_ops accel_emu_ops;

/* Resolve an -accel name ("kvm", "emu", "tcg", "auto") to an accelerator,
 * explaining the choice under -d accel.  NULL + error message on failure. */
const struct accel_ops *accel_select(const char *name);
/* -accel help: list the accelerators that can run here, one per line. */
void accel_print_available(void);
/* True if the host CPU has vmx or svm (real hardware virtualization). */
bool accel_host_has_hw_virt(void);

#endif
