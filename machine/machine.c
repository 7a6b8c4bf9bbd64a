/* Machine lifecycle: guest RAM, the e820 map, devices, the big lock, and
 * shutdown/reset requests. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "accel/accel.h"
#include "config/config.h"
#include "machine/machine.h"
#include "machine/dirty_log.h"
#include "util/log.h"
#include "util/main_loop.h"
#include "util/trace.h"

static pthread_mutex_t machine_mutex = PTHREAD_MUTEX_INITIALIZER;

void machine_lock(void)
{
    pthread_mutex_lock(&machine_mutex);
}

void machine_unlock(void)
{
    pthread_mutex_unlock(&machine_mutex);
}

void machine_cond_wait(pthread_cond_t *cond)
{
    pthread_cond_wait(cond, &machine_mutex);
}

void machine_e820_add(struct machine *m, uint64_t addr, uint64_t size, uint32_t type)
{
    if (m->nr_e820 >= MACHINE_MAX_E820)
        fatal("e820 map full adding 0x%llx+0x%llx",
              (unsigned long long)addr, (unsigned long long)size);
    m->e820[m->nr_e820++] = (struct e820_entry){ addr, size, type };
}

/* The map a PC BIOS would report: conventional memory up to the EBDA, the
 * legacy VGA/ROM hole as reserved, RAM from 1 MiB, RAM above 4 GiB, and
 * the LAPIC/IOAPIC/BIOS range at the top of the 32-bit space. */
static void build_e820(struct machine *m)
{
    m->nr_e820 = 0;
    machine_e820_add(m, 0, 0x9fc00, E820_RAM);
    machine_e820_add(m, 0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED);
    if (m->lowmem_size > 0x100000)
        machine_e820_add(m, 0x100000, m->lowmem_size - 0x100000, E820_RAM);
    machine_e820_add(m, 0xfec00000, 0x100000000ULL - 0xfec00000, E820_RESERVED);
    if (m->highmem_size)
        machine_e820_add(m, MACHINE_HIGHMEM_BASE, m->highmem_size, E820_RAM);
}

static int ram_init(struct machine *m, uint64_t size)
{
    if (size < 2 * MiB) {
        error_report("-m %llu: at least 2 MiB of RAM are needed",
                     (unsigned long long)(size / MiB));
        return -EINVAL;
    }
    m->ram_size = size;
    m->lowmem_size = MIN(size, MACHINE_LOWMEM_MAX);
    m->highmem_size = size - m->lowmem_size;

    m->ram_fd = memfd_create("vmon-ram", MFD_CLOEXEC);
    if (m->ram_fd < 0) {
        error_report("guest RAM: memfd_create: %s", strerror(errno));
        return -errno;
    }
    if (ftruncate(m->ram_fd, (off_t)size) < 0) {
        int err = errno;
        error_report("guest RAM: cannot size memfd to %llu MiB: %s",
                     (unsigned long long)(size / MiB), strerror(err));
        close(m->ram_fd);
        m->ram_fd = -1;
        return -err;
    }
    m->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                  m->ram_fd, 0);
    if (m->ram == MAP_FAILED) {
        int err = errno;
        error_report("guest RAM: mmap of %llu MiB: %s",
                     (unsigned long long)(size / MiB), strerror(err));
        m->ram = NULL;
        close(m->ram_fd);
        m->ram_fd = -1;
        return -err;
    }
    madvise(m->ram, size, MADV_HUGEPAGE);

    m->nr_ram_blocks = 0;
    m->ram_blocks[m->nr_ram_blocks++] = (struct ram_block){
        .gpa = 0, .size = m->lowmem_size, .host = m->ram, .fd_offset = 0,
    };
    if (m->highmem_size)
        m->ram_blocks[m->nr_ram_blocks++] = (struct ram_block){
            .gpa = MACHINE_HIGHMEM_BASE, .size = m->highmem_size,
            .host = m->ram + m->lowmem_size, .fd_offset = m->lowmem_size,
        };
    build_e820(m);
    return 0;
}

int machine_init(struct machine *m, const struct vm_config *cfg)
{
    int ret;

    memset(m, 0, sizeof(*m));
    m->cfg = cfg;
    m->ram_fd = -1;
    m->pio_map = calloc(65536, sizeof(*m->pio_map));
    if (!m->pio_map)
        return -ENOMEM;
    ret = ram_init(m, cfg->ram_size);
    if (ret < 0)
        goto err;
    cpuid_model_build(&m->cpuid, cfg->smp ? cfg->smp : 1);
    return 0;
err:
    free(m->pio_map);
    m->pio_map = NULL;
    return ret;
}

void machine_destroy(struct machine *m)
{
    for (int i = m->nr_devices - 1; i >= 0; i--)
        if (m->devices[i].destroy)
            m->devices[i].destroy(m->devices[i].opaque);
    free(m->devices);
    m->devices = NULL;
    m->nr_devices = 0;
    for (int i = 0; i < m->nr_vcpus; i++) {
        if (m->accel && m->accel->vcpu_destroy)
            m->accel->vcpu_destroy(m->vcpus[i]);
        free(m->vcpus[i]);
        m->vcpus[i] = NULL;
    }
    m->nr_vcpus = 0;
    if (m->accel && m->accel->destroy)
        m->accel->destroy(m);
    m->accel = NULL;
    free(m->ioeventfds);
    m->ioeventfds = NULL;
    m->nr_ioeventfds = 0;
    dirty_log_free(m);
    if (m->ram)
        munmap(m->ram, m->ram_size);
    if (m->ram_fd >= 0)
        close(m->ram_fd);
    m->ram = NULL;
    m->ram_fd = -1;
    free(m->pio_regions);
    free(m->mmio_regions);
    free(m->pio_map);
    m->pio_regions = m->mmio_regions = NULL;
    m->pio_map = NULL;
}

int machine_write_gpa(struct machine *m, gpa_t gpa, const void *src, uint64_t len)
{
    void *dst = machine_gpa_to_hva(m, gpa, len);

    if (!dst)
        return -EFAULT;
    memcpy(dst, src, len);
    dirty_log_mark_gpa(m, gpa, len);
    return 0;
}

int machine_read_gpa(struct machine *m, gpa_t gpa, void *dst, uint64_t len)
{
    const void *src = machine_gpa_to_hva(m, gpa, len);

    if (!src)
        return -EFAULT;
    memcpy(dst, src, len);
    return 0;
}

int machine_add_device(struct machine *m, const char *name, void *opaque,
                       void (*reset)(void *opaque), void (*destroy)(void *opaque))
{
    struct machine_device *d = realloc(m->devices, (m->nr_devices + 1) * sizeof(*d));

    if (!d)
        return -ENOMEM;
    m->devices = d;
    m->devices[m->nr_devices++] = (struct machine_device){
        .name = name, .opaque = opaque, .reset = reset, .destroy = destroy,
    };
    return 0;
}

int machine_set_device_drain(struct machine *m, void *opaque, unsigned (*drain)(void *opaque))
{
    for (int i = 0; i < m->nr_devices; i++)
        if (m->devices[i].opaque == opaque) {
            m->devices[i].drain = drain;
            return 0;
        }
    return -ENOENT;
}

unsigned machine_drain_devices(struct machine *m)
{
    unsigned n = 0;

    for (int i = 0; i < m->nr_devices; i++)
        if (m->devices[i].drain)
            n += m->devices[i].drain(m->devices[i].opaque);
    return n;
}

void machine_set_irq(struct machine *m, unsigned gsi, int level)
{
    TRACE(irq_set, "gsi=%u level=%d", gsi, level);
    if (m->accel && m->accel->set_irq)
        m->accel->set_irq(m, gsi, level);
}

void machine_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    TRACE(msi_send, "addr=0x%llx data=0x%x", (unsigned long long)addr, data);
    if (m->accel && m->accel->send_msi)
        m->accel->send_msi(m, addr, data);
}

void machine_kick_vcpus(struct machine *m)
{
    for (int i = 0; i < m->nr_vcpus; i++)
        if (m->accel && m->accel->vcpu_kick && m->vcpus[i]->thread_started)
            m->accel->vcpu_kick(m->vcpus[i]);
}

static void kick_all_vcpus(struct machine *m)
{
    atomic_store(&m->vcpus_should_stop, 1);
    machine_kick_vcpus(m);
}

static void shutdown_bh(void *opaque)
{
    struct machine *m = opaque;

    if (m->event_hook)
        m->event_hook(m, MACHINE_EVENT_SHUTDOWN, m->shutdown_cause);
    /* -no-shutdown: the vCPUs are done, but the monitor stays up so a
     * management tool can read the final state; a host quit ends it. */
    if (m->cfg && m->cfg->no_shutdown && m->shutdown_cause != SHUTDOWN_HOST_QUIT)
        return;
    main_loop_quit();
}

static void quit_bh(void *opaque)
{
    main_loop_quit();
}

void machine_request_shutdown(struct machine *m, enum shutdown_cause cause, int exit_status)
{
    int expected = 0;

    /* The first request decides the exit status. */
    if (!atomic_compare_exchange_strong(&m->shutdown_requested, &expected, 1)) {
        if (cause == SHUTDOWN_HOST_QUIT)    /* ends a -no-shutdown wait */
            main_loop_call(quit_bh, m);
        return;
    }
    m->exit_status = exit_status;
    m->shutdown_cause = cause;
    LOG(LOG_EXIT, "shutdown requested: cause %d, exit status %d\n", cause, exit_status);
    kick_all_vcpus(m);
    main_loop_call(shutdown_bh, m);
}

/* Runs on the main loop: park the vCPUs, put the machine back to its
 * power-on state, and let them go. */
static void reset_bh(void *opaque)
{
    struct machine *m = opaque;

    /* Already done by machine_reset_now() since it was posted. */
    if (atomic_load(&m->shutdown_requested) || !atomic_load(&m->reset_requested))
        return;
    machine_pause_vcpus(m);
    atomic_store(&m->reset_requested, 0);
    LOG(LOG_EXIT, "machine reset\n");
    if (m->reset_hook && m->reset_hook(m) < 0) {
        error_report("machine reset failed; shutting down");
        machine_request_shutdown(m, SHUTDOWN_GUEST_PANIC, 2);
        return;
    }
    /* The loaders rewrote RAM behind every log: a migration resends it. */
    if (dirty_log_active(m))
        dirty_bitmap_mark(m->dirty, 0, m->ram_size >> DIRTY_PAGE_SHIFT);
    if (m->event_hook)
        m->event_hook(m, MACHINE_EVENT_RESET, 0);
    machine_resume_vcpus(m);
}

void machine_reset_now(struct machine *m)
{
    if (m->cfg && m->cfg->no_reboot) {
        machine_request_shutdown(m, SHUTDOWN_GUEST_RESET, 0);
        return;
    }
    atomic_store(&m->reset_requested, 1);
    reset_bh(m);
}

void machine_request_reset(struct machine *m)
{
    int expected = 0;

    if (m->cfg && m->cfg->no_reboot) {
        machine_request_shutdown(m, SHUTDOWN_GUEST_RESET, 0);
        return;
    }
    if (!atomic_compare_exchange_strong(&m->reset_requested, &expected, 1))
        return;
    kick_all_vcpus(m);
    main_loop_call(reset_bh, m);
}
