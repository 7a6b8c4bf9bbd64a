/* Private to the kvm accelerator (accel/kvm*.c). */
#ifndef VMON_ACCEL_KVM_INTERNAL_H
#define VMON_ACCEL_KVM_INTERNAL_H

#include <linux/kvm.h>

#include "accel/accel.h"

/* MSRs of struct x86_msrs, in the order get/set transfer them. */
#define KVM_STATE_MAX_MSRS 48

struct kvm_vm {
    int dev_fd;               /* /dev/kvm */
    int vm_fd;
    int run_size;             /* KVM_GET_VCPU_MMAP_SIZE */
    bool has_xcrs;            /* KVM_CAP_XCRS and the model advertises XSAVE */
    bool has_debugregs;
    /* FPU/SSE state moves as an XSAVE image of this size (0: KVM_GET_FPU).
     * PVM's KVM_GET_FPU loses MXCSR, and KVM_SET_FPU is invisible while the
     * image's XSTATE_BV says "init"; the XSAVE ioctls have neither problem. */
    int xsave_size;
    bool exception_payload;   /* KVM_CAP_EXCEPTION_PAYLOAD enabled */
    /* Which entries of the MSR table this KVM accepts; probed on the first
     * vCPU, since KVM_GET_MSR_INDEX_LIST omits some it handles (MTRRs). */
    bool msrs_probed;
    bool msr_ok[KVM_STATE_MAX_MSRS];
    /* MSI routes (GSIs from KVM_IOAPIC_PINS up) with their irqfds, and
     * whether ioeventfds match writes of any width. */
    struct kvm_msi_route *msi_routes;
    unsigned nr_msi_routes;
    bool ioeventfd_any_length;
    /* The in-kernel devices as created, restored on machine reset. */
    struct kvm_irqchip chip_reset[3]; /* PIC master, PIC slave, I/O APIC */
    struct kvm_pit_state2 pit_reset;
};

struct kvm_vcpu_priv {
    int fd;
    struct kvm_run *run;
    /* The guest stopped for good (triple fault, reset or power-off request):
     * do not enter it again until set_state loads a new state. */
    bool dead;
    /* TSC as last read by get_state: a set_state with the same value (a plain
     * pause/resume) leaves the running TSC alone. */
    bool tsc_valid;
    uint64_t tsc;
    /* The LAPIC as last read by get_state, for the same reason: a
     * set_state with it leaves the live LAPIC (and interrupts injected
     * since) alone. */
    bool lapic_valid;
    uint8_t lapic[X86_LAPIC_REGS_SIZE];
};

/* GSIs 0-23 are the PIC/IOAPIC pins; MSI routes come after them. */
#define KVM_IOAPIC_PINS 24
#define KVM_MAX_MSI_ROUTES 1000

struct kvm_msi_route {
    bool used;
    uint64_t addr;
    uint32_t data;
    int irqfd;               /* eventfd bound to the route's GSI, or -1 */
};

static inline struct kvm_vm *kvm_vm_of(struct machine *m)
{
    return m->accel_priv;
}

/* kvm_state.c */
int kvm_get_state(struct vcpu *v, struct cpu_state *s);
int kvm_set_state(struct vcpu *v, const struct cpu_state *s);
void kvm_probe_msrs(struct kvm_vm *vm, int vcpu_fd);

/* kvm_vcpu.c */
int kvm_vcpu_init(struct vcpu *v);
void kvm_vcpu_destroy(struct vcpu *v);
enum vcpu_exit kvm_vcpu_run(struct vcpu *v);
void kvm_vcpu_kick(struct vcpu *v);

/* kvm_dirty.c */
int kvm_dirty_log_start(struct machine *m);
void kvm_dirty_log_stop(struct machine *m);
int kvm_dirty_log_sync(struct machine *m);

/* kvm_eventfd.c */
int kvm_irq_routing_commit(struct kvm_vm *vm);
int kvm_eventfd_init(struct machine *m, struct kvm_vm *vm);
void kvm_eventfd_destroy(struct kvm_vm *vm);
int kvm_ioeventfd(struct machine *m, uint64_t addr, int fd, bool assign);
int kvm_msi_route(struct machine *m, unsigned route, uint64_t addr, uint32_t data, int fd);

/* ioctl, retried on EINTR; returns the result or -errno. */
int kvm_ioctl(int fd, unsigned long req, void *arg);

#endif
