/* The machine: guest RAM, the port and MMIO address spaces, interrupt lines,
 * devices and vCPUs.  It knows no particular device: the board (hw/pc.c)
 * populates it from a table. */
#ifndef VMON_MACHINE_MACHINE_H
#define VMON_MACHINE_MACHINE_H

#include <pthread.h>
#include <stdatomic.h>
#include "util/types.h"
#include "machine/ioport.h"
#include "cpu/cpu_state.h"
#include "cpu/cpuid.h"

struct vm_config;
struct accel_ops;
struct machine;
struct dirty_bitmap;

/* Guest RAM below 4 GiB ends here at most; the rest is mapped above 4 GiB,
 * leaving the PCI hole (MMIO: LAPIC, IOAPIC, PCI BARs) in between. */
#define MACHINE_LOWMEM_MAX (3ULL * GiB)
#define MACHINE_HIGHMEM_BASE (4ULL * GiB)
#define MACHINE_MAX_VCPUS 64

struct ram_block {
    gpa_t gpa;
    uint64_t size;
    uint8_t *host;     /* host mapping of this block */
    uint64_t fd_offset; /* offset of this block in the memfd */
};

enum e820_type { E820_RAM = 1, E820_RESERVED = 2, E820_ACPI = 3, E820_NVS = 4 };

struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

#define MACHINE_MAX_E820 16

/* Why a vCPU left the accelerator's run loop. */
enum vcpu_exit {
    VCPU_EXIT_NONE = 0,
    VCPU_EXIT_STOP,     /* kicked: the machine wants the vCPU stopped */
    VCPU_EXIT_YIELD,    /* time slice over (single-threaded accelerators) */
    VCPU_EXIT_HALT,     /* halted with nothing to do */
    VCPU_EXIT_FATAL,    /* the guest cannot continue; state dumped */
};

/* Per-vCPU exit statistics (the "perf kvm stat" counters). */
enum vcpu_stat_kind {
    STAT_EXIT_IO, STAT_EXIT_MMIO, STAT_EXIT_HLT, STAT_EXIT_SHUTDOWN,
    STAT_EXIT_SYSTEM_EVENT, STAT_EXIT_INTR, STAT_EXIT_IRQ_WINDOW,
    STAT_EXIT_MSR, STAT_EXIT_OTHER, STAT_NR,
};

struct vcpu_stat {
    uint64_t count;
    uint64_t total_ns, min_ns, max_ns;
};

struct vcpu {
    int index;
    struct machine *m;
    pthread_t thread;
    bool thread_started;
    /* Canonical state.  Authoritative while the vCPU is stopped and after
     * accel->get_state(); the accelerator may hold a newer copy while it
     * runs. */
    struct cpu_state state;
    void *accel_priv;
    struct vcpu_stat stats[STAT_NR];
    int thread_id;           /* Linux TID of the thread running it (QMP) */
};

enum machine_run_state { RUN_STATE_RUNNING, RUN_STATE_PAUSED, RUN_STATE_SHUTDOWN };

/* Run-state changes reported to an observer (the monitor), always on the
 * main loop thread; cause is an enum shutdown_cause for SHUTDOWN. */
enum machine_event { MACHINE_EVENT_RESET, MACHINE_EVENT_SHUTDOWN };

struct machine {
    const struct vm_config *cfg;
    const struct accel_ops *accel;
    void *accel_priv;

    /* RAM: one memfd, mapped once; blocks index into it. */
    int ram_fd;
    uint8_t *ram;
    uint64_t ram_size;
    uint64_t lowmem_size;    /* bytes at gpa 0 */
    uint64_t highmem_size;   /* bytes at MACHINE_HIGHMEM_BASE */
    struct ram_block ram_blocks[2];
    int nr_ram_blocks;

    struct e820_entry e820[MACHINE_MAX_E820];
    int nr_e820;

    /* Address spaces: ports index a table; MMIO regions are kept sorted. */
    struct io_region *pio_regions;
    int nr_pio_regions;
    uint16_t *pio_map;       /* 65536 entries, region index + 1, 0 = none */
    struct io_region *mmio_regions;
    int nr_mmio_regions;

    struct cpuid_model cpuid;

    /* Pages written while live migration tracks them (machine/dirty_log.h);
     * NULL until the first migration. */
    struct dirty_bitmap *dirty;

    /* Doorbells and MSI routes on eventfds (machine/eventfd_io.h). */
    struct machine_ioeventfd *ioeventfds;
    int nr_ioeventfds;
    unsigned nr_msi_routes;

    int nr_vcpus;
    struct vcpu *vcpus[MACHINE_MAX_VCPUS];

    /* Devices, in creation order; reset in that order, destroyed reversed. */
    struct machine_device *devices;
    int nr_devices;

    /* Shutdown / reset requests from any thread. */
    atomic_int shutdown_requested;  /* 1: stop everything and exit */
    atomic_int reset_requested;
    int exit_status;
    atomic_int vcpus_should_stop;
    int nr_vcpu_threads;
    int nr_parked;            /* vCPU threads parked, under the lock */
    bool paused;              /* the user asked for a pause (-S, QMP stop) */

    /* Puts the machine back in its power-on state after a guest reset:
     * set by whoever assembled the machine (main.c), since the machine
     * itself knows neither the board nor the boot protocol. */
    int (*reset_hook)(struct machine *m);

    /* Set by the monitor; the machine calls it without knowing about QMP. */
    void (*event_hook)(struct machine *m, enum machine_event ev, int cause);
    int shutdown_cause;       /* enum shutdown_cause of the first request */
};

/* Lifecycle. */
int machine_init(struct machine *m, const struct vm_config *cfg);
void machine_destroy(struct machine *m);

/* Guest RAM.  Returns a host pointer for [gpa, gpa+len) if it lies wholly in
 * one RAM block, else NULL.  This is the only way code turns a guest-physical
 * address into a host pointer. */
static inline void *machine_gpa_to_hva(struct machine *m, gpa_t gpa, uint64_t len)
{
    if (gpa < m->lowmem_size && len <= m->lowmem_size - gpa)
        return m->ram + gpa;
    if (gpa >= MACHINE_HIGHMEM_BASE) {
        uint64_t off = gpa - MACHINE_HIGHMEM_BASE;
        if (off < m->highmem_size && len <= m->highmem_size - off)
            return m->ram + m->lowmem_size + off;
    }
    return NULL;
}
/* Copy to/from guest RAM; -EFAULT if any byte is outside RAM. */
int machine_write_gpa(struct machine *m, gpa_t gpa, const void *src, uint64_t len);
int machine_read_gpa(struct machine *m, gpa_t gpa, void *dst, uint64_t len);
void machine_e820_add(struct machine *m, uint64_t addr, uint64_t size, uint32_t type);

/* Port I/O and MMIO.  Registration fails with -EEXIST on overlap. */
int machine_register_pio(struct machine *m, uint16_t base, uint32_t len,
                         const struct io_ops *ops, void *opaque, const char *name);
int machine_register_mmio(struct machine *m, gpa_t base, uint64_t len,
                          const struct io_ops *ops, void *opaque, const char *name);
int machine_unregister_mmio(struct machine *m, gpa_t base);
/* Dispatch one access; data is little-endian, size 1/2/4/8.  Accesses
 * nobody claims read as all-ones and writes are dropped (-d unimp logs
 * them).  Returns true if a device handled it.  Caller holds the lock. */
bool machine_pio(struct machine *m, uint16_t port, void *data, unsigned size, bool is_write);
bool machine_mmio(struct machine *m, gpa_t gpa, void *data, unsigned size, bool is_write);
const struct io_region *machine_find_mmio(struct machine *m, gpa_t gpa);

/* Interrupts: a GSI line (ISA IRQs 0-15 are GSIs 0-15) and MSI messages. */
void machine_set_irq(struct machine *m, unsigned gsi, int level);
void machine_send_msi(struct machine *m, uint64_t addr, uint32_t data);

/* Devices: the board adds each with its reset and teardown callbacks. */
struct machine_device {
    const char *name;
    void *opaque;
    void (*reset)(void *opaque);
    void (*destroy)(void *opaque);
    /* Optional: finish every request in flight (complete it to the guest)
     * so that the device's state says all there is: before a snapshot,
     * the last stage of a live migration, an accelerator switch.  Returns
     * how many it completed. */
    unsigned (*drain)(void *opaque);
};
int machine_add_device(struct machine *m, const char *name, void *opaque,
                       void (*reset)(void *opaque), void (*destroy)(void *opaque));
/* Give the device added with opaque a drain hook; -ENOENT if none is. */
int machine_set_device_drain(struct machine *m, void *opaque, unsigned (*drain)(void *opaque));
/* Every device's drain hook, in creation order; how many requests they
 * completed.  Machine lock held (no vCPU submits new requests meanwhile). */
unsigned machine_drain_devices(struct machine *m);

/* The big machine lock (QEMU's BQL): held by the main loop while it runs
 * callbacks and by a vCPU thread while it dispatches an access. */
void machine_lock(void);
void machine_unlock(void);
/* Wait on a condition variable, releasing the machine lock meanwhile. */
void machine_cond_wait(pthread_cond_t *cond);

/* Requests, callable from any thread (vCPU, main loop, device). */
enum shutdown_cause {
    SHUTDOWN_GUEST_POWEROFF,  /* ACPI S5, debug-exit etc. */
    SHUTDOWN_GUEST_RESET,     /* reset with -no-reboot */
    SHUTDOWN_HOST_QUIT,       /* Ctrl-a x, QMP quit, signal */
    SHUTDOWN_GUEST_PANIC,     /* fatal guest error */
};
void machine_request_shutdown(struct machine *m, enum shutdown_cause cause, int exit_status);
void machine_request_reset(struct machine *m);
/* The same, done before returning; main loop only (QMP system_reset, whose
 * RESET event QEMU sends before the command's reply). */
void machine_reset_now(struct machine *m);

/* vCPUs (machine/cpus.c): create, start threads, stop, join. */
int machine_create_vcpus(struct machine *m);
int machine_start_vcpus(struct machine *m);
void machine_stop_vcpus(struct machine *m);
/* Park every vCPU thread with its state in v->state (under the lock), and
 * let them go again (loading v->state back into the accelerator). */
void machine_pause_vcpus(struct machine *m);
void machine_resume_vcpus(struct machine *m);
/* With every vCPU parked and the lock held: end the vCPU threads (their
 * state stays in v->state), e.g. to change accelerators; start new ones
 * with machine_start_vcpus() (they park while vcpus_should_stop is set). */
void machine_end_vcpu_threads(struct machine *m);
/* Make every running vCPU leave the accelerator and look at the flags. */
void machine_kick_vcpus(struct machine *m);
/* A device wrote [gpa, gpa+len) of guest RAM directly (DMA): the pages are
 * marked dirty for live migration, and accelerators that cache decoded
 * guest code (emu) drop it.  Any thread.  Call before publishing the completion (when the buffer is mapped is
 * early enough: a guest does not run code from a buffer a device owns). */
void machine_notify_ram_write(struct machine *m, gpa_t gpa, uint64_t len);
/* A vCPU's port or MMIO access: dispatched under the machine lock and
 * counted as one exit of that kind (with its handling time), for
 * accelerators that have no exit loop of their own (emu).  v may be NULL
 * (unit tests): then it is only dispatched. */
void vcpu_dispatch_pio(struct vcpu *v, struct machine *m, uint16_t port, void *data,
                       unsigned size, bool is_write);
void vcpu_dispatch_mmio(struct vcpu *v, struct machine *m, gpa_t gpa, void *data,
                        unsigned size, bool is_write);
/* Record one exit in a vCPU's statistics. */
void vcpu_stat_add(struct vcpu *v, enum vcpu_stat_kind kind, uint64_t ns);
/* Short lower-case name of an exit reason ("io", "hlt"): stats and traces. */
const char *vcpu_stat_name(enum vcpu_stat_kind kind);

#endif
