/* vCPU threads.  Under a multi-threaded accelerator (kvm) each vCPU has a
 * thread running accel->vcpu_run in a loop; a single-threaded one (emu) runs
 * every vCPU round robin on one thread.  Threads park when the machine asks
 * them to stop (pause, reset, snapshot): parked, their state is in
 * v->state, which is what everything outside the accelerator reads. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "config/config.h"
#include "machine/machine.h"
#include "util/log.h"
#include "util/main_loop.h"
#include "util/trace.h"

static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;    /* parked threads */
static pthread_cond_t parked_cond = PTHREAD_COND_INITIALIZER;  /* the pauser */
/* Parked threads end instead of resuming (accelerator switch). */
static atomic_int threads_exit;

int machine_create_vcpus(struct machine *m)
{
    unsigned n = m->cfg->smp ? m->cfg->smp : 1;

    for (unsigned i = 0; i < n; i++) {
        struct vcpu *v = calloc(1, sizeof(*v));
        int ret;

        if (!v)
            return -ENOMEM;
        v->index = (int)i;
        v->m = m;
        for (int k = 0; k < STAT_NR; k++)
            v->stats[k].min_ns = UINT64_MAX;
        cpu_state_reset(&v->state, i, i == 0);
        m->vcpus[m->nr_vcpus++] = v;
        ret = m->accel->vcpu_init(v);
        if (ret < 0) {
            error_report("vCPU %u: %s accelerator could not create it: %s", i,
                         m->accel->name, strerror(-ret));
            return ret;
        }
    }
    return 0;
}

const char *vcpu_stat_name(enum vcpu_stat_kind kind)
{
    static const char *const names[STAT_NR] = {
        [STAT_EXIT_IO] = "io", [STAT_EXIT_MMIO] = "mmio", [STAT_EXIT_HLT] = "hlt",
        [STAT_EXIT_SHUTDOWN] = "shutdown", [STAT_EXIT_SYSTEM_EVENT] = "system_event",
        [STAT_EXIT_INTR] = "intr", [STAT_EXIT_IRQ_WINDOW] = "irq_window",
        [STAT_EXIT_MSR] = "msr", [STAT_EXIT_OTHER] = "other",
    };

    return (unsigned)kind < STAT_NR && names[kind] ? names[kind] : "unknown";
}

static void vcpu_dispatch(struct vcpu *v, struct machine *m, bool mmio, uint64_t addr,
                          void *data, unsigned size, bool is_write)
{
    uint64_t t0 = v ? clock_ns() : 0;

    machine_lock();
    if (mmio)
        machine_mmio(m, addr, data, size, is_write);
    else
        machine_pio(m, (uint16_t)addr, data, size, is_write);
    machine_unlock();
    if (v)
        vcpu_stat_add(v, mmio ? STAT_EXIT_MMIO : STAT_EXIT_IO, clock_ns() - t0);
}

void vcpu_dispatch_pio(struct vcpu *v, struct machine *m, uint16_t port, void *data,
                       unsigned size, bool is_write)
{
    vcpu_dispatch(v, m, false, port, data, size, is_write);
}

void vcpu_dispatch_mmio(struct vcpu *v, struct machine *m, gpa_t gpa, void *data,
                        unsigned size, bool is_write)
{
    vcpu_dispatch(v, m, true, gpa, data, size, is_write);
}

void vcpu_stat_add(struct vcpu *v, enum vcpu_stat_kind kind, uint64_t ns)
{
    struct vcpu_stat *s = &v->stats[kind];

    TRACE(vcpu_exit, "cpu=%d reason=%s ns=%llu", v->index, vcpu_stat_name(kind),
          (unsigned long long)ns);

    s->count++;
    s->total_ns += ns;
    if (ns < s->min_ns)
        s->min_ns = ns;
    if (ns > s->max_ns)
        s->max_ns = ns;
}

/* Park the calling vCPU thread until the machine lets it go.  The vCPUs it
 * runs save their state first, and load it again on the way out, because
 * whoever paused them may have changed it (reset, snapshot load, switch). */
static bool park(struct machine *m, struct vcpu **vs, int n)
{
    bool leave;

    machine_lock();
    for (int i = 0; i < n; i++)
        m->accel->get_state(vs[i], &vs[i]->state);
    m->nr_parked++;
    pthread_cond_broadcast(&parked_cond);
    while (atomic_load(&m->vcpus_should_stop) && !atomic_load(&m->shutdown_requested) &&
           !atomic_load(&threads_exit))
        machine_cond_wait(&park_cond);
    m->nr_parked--;
    leave = atomic_load(&threads_exit);
    if (!atomic_load(&m->shutdown_requested) && !leave)
        for (int i = 0; i < n; i++)
            m->accel->set_state(vs[i], &vs[i]->state);
    machine_unlock();
    return leave;
}

static void fatal_guest_error(struct machine *m)
{
    machine_request_shutdown(m, SHUTDOWN_GUEST_PANIC, 2);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct machine *m = v->m;

    v->thread_id = gettid();
    while (!atomic_load(&m->shutdown_requested)) {
        if (atomic_load(&m->vcpus_should_stop)) {
            if (park(m, &v, 1))
                return NULL;
            continue;
        }
        TRACE(vcpu_run, "cpu=%d", v->index);
        switch (m->accel->vcpu_run(v)) {
        case VCPU_EXIT_FATAL:
            fatal_guest_error(m);
            return NULL;
        default:
            break;
        }
    }
    return NULL;
}

static void *single_thread(void *arg)
{
    struct machine *m = arg;

    for (int i = 0; i < m->nr_vcpus; i++) {
        if (i)  /* vCPU 0's handle is pthread_create's */
            m->vcpus[i]->thread = pthread_self();
        m->vcpus[i]->thread_id = gettid();
    }
    while (!atomic_load(&m->shutdown_requested)) {
        bool all_halted = true;

        if (atomic_load(&m->vcpus_should_stop)) {
            if (park(m, m->vcpus, m->nr_vcpus))
                return NULL;
            continue;
        }
        for (int i = 0; i < m->nr_vcpus; i++) {
            enum vcpu_exit e = m->accel->vcpu_run(m->vcpus[i]);

            if (e == VCPU_EXIT_FATAL) {
                fatal_guest_error(m);
                return NULL;
            }
            if (e != VCPU_EXIT_HALT)
                all_halted = false;
            if (atomic_load(&m->vcpus_should_stop))
                break;
        }
        if (all_halted && m->accel->idle_wait && !atomic_load(&m->vcpus_should_stop))
            m->accel->idle_wait(m);
    }
    return NULL;
}

static void kick_signal_handler(int sig)
{
    /* Only interrupts blocking calls (KVM_RUN, sleeps) in the vCPU thread. */
}

int machine_start_vcpus(struct machine *m)
{
    struct sigaction sa = { .sa_handler = kick_signal_handler };
    int ret;

    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);

    /* One thread for all vCPUs (emu): thread_started is set before it runs,
     * or a guest that ends (a debug-exit write kicks the started vCPUs)
     * before this thread got to mark it is not kicked and runs on.  Its
     * kick needs no thread handle; the thread stores its own. */
    if (m->accel->single_thread) {
        m->nr_vcpu_threads = 1;
        for (int i = 0; i < m->nr_vcpus; i++)
            m->vcpus[i]->thread_started = true;
        ret = pthread_create(&m->vcpus[0]->thread, NULL, single_thread, m);
        if (ret) {
            for (int i = 0; i < m->nr_vcpus; i++)
                m->vcpus[i]->thread_started = false;
            return -ret;
        }
        return 0;
    }
    m->nr_vcpu_threads = m->nr_vcpus;
    for (int i = 0; i < m->nr_vcpus; i++) {
        ret = pthread_create(&m->vcpus[i]->thread, NULL, vcpu_thread, m->vcpus[i]);
        if (ret)
            return -ret;
        m->vcpus[i]->thread_started = true;
    }
    return 0;
}

/* Called with the machine lock held (main loop). */
void machine_pause_vcpus(struct machine *m)
{
    atomic_store(&m->vcpus_should_stop, 1);
    machine_kick_vcpus(m);
    while (m->nr_parked < m->nr_vcpu_threads && !atomic_load(&m->shutdown_requested))
        machine_cond_wait(&parked_cond);
}

void machine_resume_vcpus(struct machine *m)
{
    if (m->paused)
        return;
    atomic_store(&m->vcpus_should_stop, 0);
    pthread_cond_broadcast(&park_cond);
}

/* Called without the machine lock, after the main loop has ended. */
void machine_stop_vcpus(struct machine *m)
{
    atomic_store(&m->shutdown_requested, 1);
    machine_lock();
    pthread_cond_broadcast(&park_cond);
    machine_unlock();
    machine_kick_vcpus(m);
    if (m->accel->single_thread) {
        if (m->nr_vcpus && m->vcpus[0]->thread_started)
            pthread_join(m->vcpus[0]->thread, NULL);
    } else {
        for (int i = 0; i < m->nr_vcpus; i++)
            if (m->vcpus[i]->thread_started)
                pthread_join(m->vcpus[i]->thread, NULL);
    }
    for (int i = 0; i < m->nr_vcpus; i++)
        m->vcpus[i]->thread_started = false;
}

/* Called with the machine lock held and every vCPU parked (after
 * machine_pause_vcpus): the threads end, their state stays in v->state.
 * The lock is dropped while they are joined. */
void machine_end_vcpu_threads(struct machine *m)
{
    atomic_store(&threads_exit, 1);
    pthread_cond_broadcast(&park_cond);
    machine_unlock();
    if (m->accel->single_thread) {
        if (m->nr_vcpus && m->vcpus[0]->thread_started)
            pthread_join(m->vcpus[0]->thread, NULL);
    } else {
        for (int i = 0; i < m->nr_vcpus; i++)
            if (m->vcpus[i]->thread_started)
                pthread_join(m->vcpus[i]->thread, NULL);
    }
    machine_lock();
    for (int i = 0; i < m->nr_vcpus; i++)
        m->vcpus[i]->thread_started = false;
    m->nr_vcpu_threads = 0;
    atomic_store(&threads_exit, 0);
}
