/* The kvm accelerator, vCPU level: creation (kvm_run mapping, CPUID), the
 * KVM_RUN loop with its exit dispatch, kicks, and the fatal-exit report. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "accel/kvm_internal.h"
#include "util/log.h"

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void kick_handler(int sig)
{
    /* Only interrupts KVM_RUN; immediate_exit covers the window before it. */
}

/* The machine's thread code installs the same kind of handler; this one
 * serves users of the accelerator without it (unit tests).  No SA_RESTART:
 * KVM_RUN must return EINTR. */
static void install_kick_handler(void)
{
    struct sigaction old, sa = { .sa_handler = kick_handler };

    if (sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler != SIG_DFL)
        return;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
}

static int set_cpuid(struct vcpu *v, int fd)
{
    const struct cpuid_model *model = &v->m->cpuid;
    struct kvm_cpuid2 *c;
    int ret;

    c = calloc(1, sizeof(*c) + (size_t)model->nr * sizeof(c->entries[0]));
    if (!c)
        return -ENOMEM;
    for (int i = 0; i < model->nr; i++) {
        const struct cpuid_entry *e = &model->e[i];
        struct kvm_cpuid_entry2 *k = &c->entries[c->nent++];
        uint32_t out[4];

        /* APIC ID = vCPU index, as KVM_CREATE_VCPU's id. */
        cpuid_query(model, (unsigned)v->index, e->function, e->index, out);
        k->function = e->function;
        k->index = e->index;
        k->flags = e->flags & CPUID_FLAG_INDEXED ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
        k->eax = out[0];
        k->ebx = out[1];
        k->ecx = out[2];
        k->edx = out[3];
    }
    ret = kvm_ioctl(fd, KVM_SET_CPUID2, c);
    free(c);
    return ret < 0 ? ret : 0;
}

int kvm_vcpu_init(struct vcpu *v)
{
    struct kvm_vm *vm = kvm_vm_of(v->m);
    struct kvm_vcpu_priv *p;
    int ret;

    if (!vm)
        return -EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    install_kick_handler();

    ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)v->index);
    if (ret < 0) {
        error_report("kvm: vCPU %d: KVM_CREATE_VCPU: %s (this KVM recommends at most %d vCPUs)",
                     v->index, strerror(-ret), ioctl(vm->dev_fd, KVM_CHECK_EXTENSION,
                                                     KVM_CAP_NR_VCPUS));
        goto err_free;
    }
    p->fd = ret;
    p->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
    if (p->run == MAP_FAILED) {
        ret = -errno;
        error_report("kvm: vCPU %d: mmap of kvm_run: %s", v->index, strerror(errno));
        goto err_close;
    }
    ret = set_cpuid(v, p->fd);
    if (ret < 0) {
        error_report("kvm: vCPU %d: KVM_SET_CPUID2: %s", v->index, strerror(-ret));
        goto err_unmap;
    }
    if (!vm->msrs_probed)
        kvm_probe_msrs(vm, p->fd);
    v->accel_priv = p;
    LOG(LOG_ACCEL, "kvm: vCPU %d created (APIC ID %d)\n", v->index, v->index);
    return 0;

err_unmap:
    munmap(p->run, (size_t)vm->run_size);
err_close:
    close(p->fd);
err_free:
    free(p);
    return ret;
}

void kvm_vcpu_destroy(struct vcpu *v)
{
    struct kvm_vcpu_priv *p = v->accel_priv;
    struct kvm_vm *vm = kvm_vm_of(v->m);

    if (!p)
        return;
    if (vm)
        munmap(p->run, (size_t)vm->run_size);
    close(p->fd);
    free(p);
    v->accel_priv = NULL;
}

void kvm_vcpu_kick(struct vcpu *v)
{
    struct kvm_vcpu_priv *p = v->accel_priv;

    if (!p)
        return;
    /* Covers a vCPU between its flag check and KVM_RUN; the signal covers
     * one already inside. */
    __atomic_store_n(&p->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (v->thread_started)
        pthread_kill(v->thread, SIGUSR1);
}

static bool should_stop(struct machine *m)
{
    return atomic_load(&m->vcpus_should_stop) || atomic_load(&m->shutdown_requested);
}

static void print_line(void *opaque, const char *line)
{
    fprintf(opaque, "%s\n", line);
}

/* The bytes around RIP, "<xx>" marking the first one: kvmtool and QEMU
 * show the same, and it usually names the faulting instruction. */
static void dump_code(struct vcpu *v, const struct cpu_state *s)
{
    struct kvm_vcpu_priv *p = v->accel_priv;
    uint64_t lin = s->seg[S_CS].base + s->rip;
    uint64_t gpa;
    char line[160];
    int pos;

    if (!(s->efer & X86_EFER_LMA))
        lin = (uint32_t)lin;
    gpa = lin;
    if (s->cr0 & X86_CR0_PG) {
        struct kvm_translation t = { .linear_address = lin };

        if (kvm_ioctl(p->fd, KVM_TRANSLATE, &t) < 0 || !t.valid) {
            fprintf(stderr, "Code=<linear 0x%llx not mapped>\n", (unsigned long long)lin);
            return;
        }
        gpa = t.physical_address;
    }
    /* Stay inside the page: its neighbours may map elsewhere. */
    uint64_t page = gpa & ~0xfffULL;
    uint64_t start = gpa - MIN(gpa - page, 16);
    uint64_t end = MIN(gpa + 16, page + 0x1000);
    const uint8_t *code = machine_gpa_to_hva(v->m, start, end - start);

    if (!code) {
        fprintf(stderr, "Code=<gpa 0x%llx outside RAM>\n", (unsigned long long)gpa);
        return;
    }
    pos = snprintf(line, sizeof(line), "Code=");
    for (uint64_t a = start; a < end && pos < (int)sizeof(line) - 6; a++)
        pos += snprintf(line + pos, sizeof(line) - (size_t)pos, a == gpa ? "<%02x> " : "%02x ",
                        code[a - start]);
    fprintf(stderr, "%s\n", line);
}

static enum vcpu_exit fatal_exit(struct vcpu *v, const char *what)
{
    struct cpu_state *s = malloc(sizeof(*s));

    error_report("kvm: vCPU %d: %s; guest state follows", v->index, what);
    if (!s)
        return VCPU_EXIT_FATAL;
    if (kvm_get_state(v, s) == 0) {
        cpu_state_dump(s, print_line, stderr);
        dump_code(v, s);
    }
    free(s);
    return VCPU_EXIT_FATAL;
}

static enum vcpu_exit internal_error(struct vcpu *v)
{
    const struct kvm_run *run = ((struct kvm_vcpu_priv *)v->accel_priv)->run;
    char what[256];
    int pos;
    uint32_t n = MIN(run->internal.ndata, (uint32_t)ARRAY_SIZE(run->internal.data));

    pos = snprintf(what, sizeof(what), "KVM_EXIT_INTERNAL_ERROR suberror %u%s",
                   run->internal.suberror,
                   run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                       ? " (the host could not emulate an instruction)" : "");
    for (uint32_t i = 0; i < n && pos < (int)sizeof(what) - 20; i++)
        pos += snprintf(what + pos, sizeof(what) - (size_t)pos, " %llx",
                        (unsigned long long)run->internal.data[i]);
    return fatal_exit(v, what);
}

/* Hand a port exit to the devices; the data of string I/O sits in the
 * kvm_run page, count items of size bytes. */
static bool handle_io(struct vcpu *v, struct kvm_vcpu_priv *p)
{
    struct kvm_run *run = p->run;
    struct kvm_vm *vm = kvm_vm_of(v->m);
    unsigned size = run->io.size;
    uint64_t bytes = (uint64_t)run->io.count * size;
    bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

    if ((size != 1 && size != 2 && size != 4) || run->io.data_offset > (uint64_t)vm->run_size ||
        bytes > (uint64_t)vm->run_size - run->io.data_offset)
        return false;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;

    machine_lock();
    for (uint32_t i = 0; i < run->io.count; i++)
        machine_pio(v->m, run->io.port, data + (size_t)i * size, size, is_write);
    machine_unlock();
    return true;
}

static bool handle_mmio(struct vcpu *v, struct kvm_vcpu_priv *p)
{
    struct kvm_run *run = p->run;
    unsigned len = run->mmio.len;

    if (len != 1 && len != 2 && len != 4 && len != 8)
        return false;
    machine_lock();
    machine_mmio(v->m, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write);
    machine_unlock();
    return true;
}

/* After a triple fault or a reset/power-off request the vCPU must not run
 * again until the machine has reset it: wait for the kick. */
static enum vcpu_exit wait_dead(struct vcpu *v)
{
    while (!should_stop(v->m)) {
        struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };

        nanosleep(&ts, NULL);
    }
    return VCPU_EXIT_STOP;
}

enum vcpu_exit kvm_vcpu_run(struct vcpu *v)
{
    struct kvm_vcpu_priv *p = v->accel_priv;
    struct machine *m = v->m;
    struct kvm_run *run = p->run;
    bool io_pending = false;

    for (;;) {
        uint64_t t0;
        int r;

        if (p->dead)
            return wait_dead(v);
        /* Clear before looking at the flags: a kick that sets a flag after
         * the check re-arms immediate_exit, so KVM_RUN returns at once. */
        __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (should_stop(m)) {
            /* KVM finishes an I/O or MMIO instruction on the next KVM_RUN;
             * until then its register state is mid-instruction (PVM even
             * reports the wrong CPL).  Complete it before anyone reads the
             * state (snapshots, accelerator switches): KVM_RUN with
             * immediate_exit does that and returns EINTR. */
            if (io_pending) {
                __atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
                r = ioctl(p->fd, KVM_RUN, 0);
                __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
            }
            return VCPU_EXIT_STOP;
        }
        io_pending = false;

        r = ioctl(p->fd, KVM_RUN, 0);
        t0 = now_ns();
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                vcpu_stat_add(v, STAT_EXIT_INTR, now_ns() - t0);
                continue;
            }
            char what[96];

            snprintf(what, sizeof(what), "KVM_RUN: %s", strerror(errno));
            return fatal_exit(v, what);
        }
        LOG(LOG_EXIT, "kvm: vCPU %d exit %u\n", v->index, run->exit_reason);

        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            if (!handle_io(v, p))
                return fatal_exit(v, "malformed KVM_EXIT_IO");
            io_pending = true;
            vcpu_stat_add(v, STAT_EXIT_IO, now_ns() - t0);
            break;
        case KVM_EXIT_MMIO:
            if (!handle_mmio(v, p))
                return fatal_exit(v, "malformed KVM_EXIT_MMIO");
            io_pending = true;
            vcpu_stat_add(v, STAT_EXIT_MMIO, now_ns() - t0);
            break;
        case KVM_EXIT_INTR:
            vcpu_stat_add(v, STAT_EXIT_INTR, now_ns() - t0);
            break;
        case KVM_EXIT_IRQ_WINDOW_OPEN:
            vcpu_stat_add(v, STAT_EXIT_IRQ_WINDOW, now_ns() - t0);
            break;
        case KVM_EXIT_HLT:
            /* Not seen with the in-kernel LAPIC, which halts in the kernel. */
            vcpu_stat_add(v, STAT_EXIT_HLT, now_ns() - t0);
            return VCPU_EXIT_HALT;
        case KVM_EXIT_SHUTDOWN:
            LOG(LOG_ACCEL, "kvm: vCPU %d: triple fault, requesting a reset\n", v->index);
            p->dead = true;
            machine_request_reset(m);
            vcpu_stat_add(v, STAT_EXIT_SHUTDOWN, now_ns() - t0);
            return VCPU_EXIT_STOP;
        case KVM_EXIT_SYSTEM_EVENT:
            vcpu_stat_add(v, STAT_EXIT_SYSTEM_EVENT, now_ns() - t0);
            switch (run->system_event.type) {
            case KVM_SYSTEM_EVENT_SHUTDOWN:
                machine_request_shutdown(m, SHUTDOWN_GUEST_POWEROFF, 0);
                break;
            case KVM_SYSTEM_EVENT_RESET:
                machine_request_reset(m);
                break;
            case KVM_SYSTEM_EVENT_CRASH:
                machine_request_shutdown(m, SHUTDOWN_GUEST_PANIC, 2);
                break;
            default:
                /* Suspend/wakeup and newer kinds: nothing for us; go on. */
                LOG(LOG_UNIMP, "kvm: vCPU %d: system event %u ignored\n", v->index,
                    run->system_event.type);
                continue;
            }
            p->dead = true;
            return VCPU_EXIT_STOP;
        case KVM_EXIT_INTERNAL_ERROR:
            return internal_error(v);
        case KVM_EXIT_FAIL_ENTRY: {
            char what[96];

            snprintf(what, sizeof(what), "KVM_EXIT_FAIL_ENTRY reason 0x%llx",
                     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
            return fatal_exit(v, what);
        }
        default: {
            char what[64];

            snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
            return fatal_exit(v, what);
        }
        }
    }
}
