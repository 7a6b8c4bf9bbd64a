/* The emu accelerator: vmon's own x86-64 emulator (emu/) behind the
 * accelerator interface.  All vCPUs run round robin on one thread
 * (single_thread), each for a slice of instructions; interrupts come from
 * vmon's user-space irqchip (hw/irqchip.h), timers are checked between
 * slices, and a machine whose vCPUs all halted sleeps in idle_wait until
 * the next timer deadline or a kick. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "accel/accel.h"
#include "emu/emu.h"
#include "hw/irqchip.h"
#include "util/log.h"
#include "util/stats.h"
#include "util/main_loop.h"

/* Instructions per vcpu_run: long enough to amortise the slice overhead,
 * short enough that round-robin SMP and timers stay responsive. */
#define EMU_SLICE 200000
/* Longest idle sleep without a timer deadline: every interrupt source
 * wakes idle_wait through the LAPIC kick (-d accel reports any interrupt
 * found pending after an uninterrupted sleep; none seen booting the guest
 * kit), so this only bounds the cost of a missed one. */
#define EMU_IDLE_MAX_MS 100

/* Device writes into guest RAM queued for the vCPU thread; more than this
 * many between two slices flush the whole block cache. */
#define EMU_DMA_RANGES 16

struct emu_machine {
    struct emu_cache *cache;
    struct irqchip *chip;
    int wake_fd;           /* eventfd: wakes idle_wait */
    /* machine_notify_ram_write() runs on device threads; the block cache
     * belongs to the vCPU thread, which drops the queued ranges before it
     * runs again (emu_dma_invalidate). */
    atomic_flag dma_lock;
    atomic_bool dma_pending;
    unsigned dma_n;        /* > EMU_DMA_RANGES: flush everything */
    struct { gpa_t gpa; uint64_t len; } dma[EMU_DMA_RANGES];
};

struct emu_vcpu {
    struct emu_cpu c;
    struct vcpu *v;
    struct emu_machine *em;
    atomic_int irq_hint;   /* an interrupt may be pending: look (under the lock) */
};

static bool emu_available(char *why, size_t why_len)
{
    return true;
}

/* The emulator's own counters, per vCPU and summed for the VM, next to the
 * exit counts every accelerator reports. */
static const struct stats_desc emu_stat_descs[] = {
    { "instructions", STATS_CUMULATIVE, STATS_UNIT_NONE, 0 },
    { "blocks-translated", STATS_CUMULATIVE, STATS_UNIT_NONE, 0 },
    { "blocks-executed", STATS_CUMULATIVE, STATS_UNIT_NONE, 0 },
    { "tlb-misses", STATS_CUMULATIVE, STATS_UNIT_NONE, 0 },
    { "exceptions", STATS_CUMULATIVE, STATS_UNIT_NONE, 0 },
    { "interrupts", STATS_CUMULATIVE, STATS_UNIT_NONE, 0 },
};

static void emu_stats_add(const struct emu_cpu *c, uint64_t *values)
{
    values[0] += __atomic_load_n(&c->icount, __ATOMIC_RELAXED);
    values[1] += __atomic_load_n(&c->stats.blocks_translated, __ATOMIC_RELAXED);
    values[2] += __atomic_load_n(&c->stats.blocks_executed, __ATOMIC_RELAXED);
    values[3] += __atomic_load_n(&c->stats.tlb_misses, __ATOMIC_RELAXED);
    values[4] += __atomic_load_n(&c->stats.exceptions, __ATOMIC_RELAXED);
    values[5] += __atomic_load_n(&c->stats.interrupts, __ATOMIC_RELAXED);
}

/* Zeros while another accelerator runs the machine. */
static void emu_stats_read(struct machine *m, int vcpu, uint64_t *values, void *opaque)
{
    memset(values, 0, sizeof(emu_stat_descs) / sizeof(emu_stat_descs[0]) * sizeof(*values));
    if (m->accel != &accel_emu_ops)
        return;
    for (int i = 0; i < m->nr_vcpus; i++) {
        const struct emu_vcpu *ev = m->vcpus[i]->accel_priv;

        if (ev && (vcpu < 0 || vcpu == i))
            emu_stats_add(&ev->c, values);
    }
}

static const struct stats_provider emu_vcpu_stats = {
    .name = "emu", .target = STATS_TARGET_VCPU, .descs = emu_stat_descs,
    .nr_descs = ARRAY_SIZE(emu_stat_descs), .read = emu_stats_read,
};
static const struct stats_provider emu_vm_stats = {
    .name = "emu", .target = STATS_TARGET_VM, .descs = emu_stat_descs,
    .nr_descs = ARRAY_SIZE(emu_stat_descs), .read = emu_stats_read,
};

static int emu_init(struct machine *m)
{
    struct emu_machine *em = calloc(1, sizeof(*em));

    if (!em)
        return -ENOMEM;
    em->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    em->cache = emu_cache_new(m);
    if (em->wake_fd < 0 || !em->cache)
        goto fail;
    /* After a switch from kvm and back, the chip of the first emu run is
     * still a machine device: take it over (its LAPICs are rebound). */
    em->chip = irqchip_of(m);
    if (!em->chip)
        em->chip = irqchip_create(m);
    if (!em->chip)
        goto fail;
    m->accel_priv = em;
    /* Registered once per process; -EEXIST after an accelerator switch. */
    stats_register_provider(&emu_vcpu_stats);
    stats_register_provider(&emu_vm_stats);
    LOG(LOG_ACCEL, "emu: decoded-block cache and user-space irqchip ready\n");
    return 0;
fail:
    if (em->wake_fd >= 0)
        close(em->wake_fd);
    emu_cache_free(em->cache);
    free(em);
    return -ENOMEM;
}

static void emu_destroy(struct machine *m)
{
    struct emu_machine *em = m->accel_priv;

    if (!em)
        return;
    /* The irqchip is a machine device: the machine destroys it. */
    emu_cache_free(em->cache);
    close(em->wake_fd);
    free(em);
    m->accel_priv = NULL;
}

static void emu_wake(struct emu_machine *em)
{
    uint64_t one = 1;

    if (write(em->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is saturated, a wake-up is pending anyway. */
    }
}

/* --- LAPIC callbacks (machine lock held) ------------------------------------ */

static void emu_host_init(void *opaque)
{
    struct emu_vcpu *ev = opaque;
    struct cpu_state *s = &ev->v->state;
    uint64_t apic_base = s->apic_base;

    cpu_state_reset(s, (unsigned)ev->v->index, false);
    s->apic_base = apic_base;
    s->mp_state = MP_INIT_RECEIVED;
    emu_invalidate(&ev->c);
    emu_kick(&ev->c);
}

static void emu_host_sipi(void *opaque, uint8_t vector)
{
    struct emu_vcpu *ev = opaque;
    struct cpu_state *s = &ev->v->state;

    if (s->mp_state != MP_INIT_RECEIVED)
        return;
    s->seg[S_CS].selector = (uint16_t)(vector << 8);
    s->seg[S_CS].base = (uint64_t)vector << 12;
    s->rip = 0;
    s->mp_state = MP_RUNNABLE;
    emu_invalidate(&ev->c);
    emu_wake(ev->em);
}

static void emu_host_nmi(void *opaque)
{
    struct emu_vcpu *ev = opaque;

    ev->v->state.events.nmi_pending = 1;
    atomic_store(&ev->irq_hint, 1);
    emu_wake(ev->em);
}

static void emu_host_kick(void *opaque)
{
    struct emu_vcpu *ev = opaque;

    atomic_store(&ev->irq_hint, 1);
    emu_wake(ev->em);
}

static const struct lapic_host_ops emu_lapic_ops = {
    .init = emu_host_init,
    .sipi = emu_host_sipi,
    .nmi = emu_host_nmi,
    .kick = emu_host_kick,
};

/* --- interrupt hooks for the emulator (called between blocks) --------------- */

static int emu_irq_pending(void *opaque)
{
    struct emu_vcpu *ev = opaque;
    int v;

    if (!atomic_load_explicit(&ev->irq_hint, memory_order_relaxed))
        return -1;
    machine_lock();
    v = irqchip_pending(ev->em->chip, ev->v->index);
    machine_unlock();
    if (v < 0)
        atomic_store(&ev->irq_hint, 0);
    return v;
}

static int emu_irq_ack(void *opaque)
{
    struct emu_vcpu *ev = opaque;
    int v;

    machine_lock();
    v = irqchip_ack(ev->em->chip, ev->v->index);
    machine_unlock();
    return v;
}

static void emu_io_written(void *opaque)
{
    struct emu_vcpu *ev = opaque;

    atomic_store_explicit(&ev->irq_hint, 1, memory_order_relaxed);
}

/* --- device writes into guest RAM ------------------------------------------ */

static void emu_dma_lock(struct emu_machine *em)
{
    while (atomic_flag_test_and_set_explicit(&em->dma_lock, memory_order_acquire))
        ;
}

static void emu_dma_unlock(struct emu_machine *em)
{
    atomic_flag_clear_explicit(&em->dma_lock, memory_order_release);
}

/* A device wrote [gpa, gpa+len) of guest RAM behind the CPU's back (DMA,
 * through machine_notify_ram_write).  Any thread.  Decoded blocks of those
 * pages are dropped before any vCPU runs another block: the kick ends the
 * running slice at its next block boundary, and the device's completion
 * (used ring, interrupt) is published after this call. */
static void emu_ram_written(struct machine *m, gpa_t gpa, uint64_t len)
{
    struct emu_machine *em = m->accel_priv;

    if (!em)
        return;
    emu_dma_lock(em);
    if (em->dma_n < EMU_DMA_RANGES) {
        em->dma[em->dma_n].gpa = gpa;
        em->dma[em->dma_n].len = len;
    }
    if (em->dma_n <= EMU_DMA_RANGES)
        em->dma_n++;
    atomic_store(&em->dma_pending, true);
    emu_dma_unlock(em);
    for (int k = 0; k < m->nr_vcpus; k++) {
        struct vcpu *v = m->vcpus[k];
        struct emu_vcpu *ev = v ? v->accel_priv : NULL;

        if (ev)
            emu_kick(&ev->c);
    }
}

/* On the vCPU thread: drop the blocks of every page devices wrote. */
static void emu_dma_invalidate(struct emu_machine *em)
{
    emu_dma_lock(em);
    atomic_store(&em->dma_pending, false);
    if (em->dma_n > EMU_DMA_RANGES)
        emu_cache_flush(em->cache);
    else
        for (unsigned k = 0; k < em->dma_n; k++)
            emu_cache_invalidate_range(em->cache, em->dma[k].gpa, em->dma[k].len);
    em->dma_n = 0;
    emu_dma_unlock(em);
}

static int emu_vcpu_init(struct vcpu *v)
{
    struct emu_machine *em = v->m->accel_priv;
    struct emu_vcpu *ev;
    int ret;

    /* The soft-TLB entries are 32-byte aligned (malloc gives 16). */
    if (posix_memalign((void **)&ev, _Alignof(struct emu_vcpu), sizeof(*ev)))
        return -ENOMEM;
    memset(ev, 0, sizeof(*ev));
    ev->v = v;
    ev->em = em;
    ret = emu_cpu_init(&ev->c, &v->state, v->m, em->cache);
    if (ret < 0)
        goto fail;
    machine_lock();
    ret = irqchip_attach_vcpu(em->chip, v->index, &v->state, &emu_lapic_ops, ev);
    machine_unlock();
    if (ret < 0)
        goto fail;
    ev->c.irq_pending = emu_irq_pending;
    ev->c.irq_ack = emu_irq_ack;
    ev->c.io_written = emu_io_written;
    ev->c.irq_opaque = ev;
    ev->c.irq_hint = &ev->irq_hint;
    ev->c.vcpu = v;
    ev->c.lapic = irqchip_lapic(em->chip, v->index);
    ev->c.deliver_exceptions = true;
    atomic_store(&ev->irq_hint, 1);
    v->accel_priv = ev;
    return 0;
fail:
    emu_cpu_destroy(&ev->c);
    free(ev);
    return ret;
}

static void emu_vcpu_destroy(struct vcpu *v)
{
    struct emu_vcpu *ev = v->accel_priv;

    if (!ev)
        return;
    emu_cpu_destroy(&ev->c);
    free(ev);
    v->accel_priv = NULL;
}

static void emu_timers(struct emu_machine *em)
{
    machine_lock();
    irqchip_timers_check(em->chip, clock_ns());
    machine_unlock();
}

static enum vcpu_exit emu_vcpu_run(struct vcpu *v)
{
    struct emu_vcpu *ev = v->accel_priv;
    struct cpu_state *s = &v->state;
    enum emu_stop st;

    irqchip_set_current_cpu(v->index);
    emu_timers(ev->em);
    if (atomic_load(&ev->em->dma_pending))
        emu_dma_invalidate(ev->em);
    if (s->mp_state == MP_UNINITIALIZED || s->mp_state == MP_INIT_RECEIVED)
        return VCPU_EXIT_HALT;
    /* Look for interrupts at least once per slice: the hint is an
     * optimisation, not the only path. */
    atomic_store(&ev->irq_hint, 1);
    st = emu_run(&ev->c, EMU_SLICE);
    switch (st) {
    case EMU_STOP_BUDGET:
    case EMU_STOP_IRQ_WINDOW:
        return VCPU_EXIT_YIELD;
    case EMU_STOP_HALT:
        return VCPU_EXIT_HALT;
    case EMU_STOP_KICK:
        return VCPU_EXIT_STOP;
    case EMU_STOP_SHUTDOWN:
        LOG(LOG_INT, "emu: vCPU %d triple fault: machine reset\n", v->index);
        machine_request_reset(v->m);
        return VCPU_EXIT_STOP;
    case EMU_STOP_EXCEPTION:
    default:
        error_report("vCPU %d: emulator stopped on exception %u at rip %#llx", v->index,
                     ev->c.exc_vector, (unsigned long long)s->rip);
        return VCPU_EXIT_FATAL;
    }
}

/* Every vCPU halted: sleep until the next timer deadline or a wake-up. */
static void emu_idle_wait(struct machine *m)
{
    struct emu_machine *em = m->accel_priv;
    struct pollfd pfd = { .fd = em->wake_fd, .events = POLLIN };
    uint64_t deadline, now, junk;
    int timeout = EMU_IDLE_MAX_MS;

    machine_lock();
    deadline = irqchip_next_deadline_ns(em->chip);
    machine_unlock();
    now = clock_ns();
    if (deadline) {
        uint64_t ms = deadline > now ? (deadline - now + 999999) / 1000000 : 0;

        timeout = ms < EMU_IDLE_MAX_MS ? (int)ms : EMU_IDLE_MAX_MS;
    }
    bool woken = false;

    if (timeout > 0 && poll(&pfd, 1, timeout) > 0) {
        woken = true;
        if (read(em->wake_fd, &junk, sizeof(junk)) < 0) {
            /* nothing to drain */
        }
    }
    emu_timers(em);
    if (unlikely(log_mask & LOG_ACCEL) && timeout > 0 && !woken) {
        /* Diagnose lost wake-ups: an interrupt pending after a sleep that
         * nothing interrupted was not signalled by a kick.  (A timer that
         * was already due, timeout 0, is not a sleep.) */
        machine_lock();
        for (int k = 0; k < m->nr_vcpus; k++) {
            int v = irqchip_pending(em->chip, k);

            if (v >= 0)
                LOG(LOG_ACCEL, "emu: idle timeout (%d ms) found vector %d pending on vCPU %d\n",
                    timeout, v, k);
        }
        machine_unlock();
    }
}

static void emu_vcpu_kick(struct vcpu *v)
{
    struct emu_vcpu *ev = v->accel_priv;

    if (!ev)
        return;
    emu_kick(&ev->c);
    emu_wake(ev->em);
}

static int emu_get_state(struct vcpu *v, struct cpu_state *s)
{
    struct emu_vcpu *ev = v->accel_priv;

    emu_sync_state(&ev->c);
    v->state.msr.tsc = emu_rdtsc(&ev->c);
    if (s != &v->state)
        *s = v->state;
    return 0;
}

static int emu_set_state(struct vcpu *v, const struct cpu_state *s)
{
    struct emu_vcpu *ev = v->accel_priv;

    if (s != &v->state)
        v->state = *s;
    emu_set_tsc(&ev->c, v->state.msr.tsc);
    emu_invalidate(&ev->c);
    return 0;
}

/* Machine reset: the loader rewrites guest RAM behind the emulator. */
static void emu_reset(struct machine *m)
{
    struct emu_machine *em = m->accel_priv;

    if (em)
        emu_cache_flush(em->cache);
}

const struct accel_ops accel_emu_ops = {
    .name = "emu",
    .single_thread = true,
    .available = emu_available,
    .init = emu_init,
    .destroy = emu_destroy,
    .vcpu_init = emu_vcpu_init,
    .vcpu_destroy = emu_vcpu_destroy,
    .vcpu_run = emu_vcpu_run,
    .idle_wait = emu_idle_wait,
    .vcpu_kick = emu_vcpu_kick,
    .get_state = emu_get_state,
    .set_state = emu_set_state,
    .reset = emu_reset,
    .ram_written = emu_ram_written,
    .set_irq = irqchip_accel_set_irq,
    .send_msi = irqchip_accel_send_msi,
};
