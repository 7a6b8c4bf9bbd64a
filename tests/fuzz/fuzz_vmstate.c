/* libFuzzer harness over section payload parsing in migration streams.
 * Section CRCs stop random corruption, not a crafted stream, so the payload
 * parser is what a hostile migration source reaches: the first input byte
 * picks a state table (the vCPU, the irqchip models, each device) and a
 * stream version, the rest is the payload.  vmstate_load must accept it or
 * refuse it; it never writes outside the target structure.  Checking and
 * applying are separate passes, as in migration_load(); post_load hooks
 * need a live device and are left to the system tests.
 *
 * The virtio tables (a staging copy checked against the device) run their
 * whole path against a live virtio-rng-pci on a PCI bus: parse, check
 * (queue layouts against guest RAM, vectors, read-only configuration
 * bytes), and for a section that passes, apply it (BARs mapped, MSI-X
 * table, queues enabled), then the bus reset puts the device back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "config/config.h"
#include "hw/pc_devices.h"
#include "machine/machine.h"
#include "migration/migration.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_pci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define NR_TABLES 15u
/* Larger than any state structure, so a table's offsets stay inside it. */
static uint8_t target[1 << 20];

static const struct vmstate_desc *table(unsigned i)
{
    static const char *const devs[] = { "serial", "rtc", "acpi-pm", "i8042", "fw_cfg",
                                        "port92", "pci-host", "virtio-rng-pci",
                                        "virtio-blk-pci", "virtio-net-pci",
                                        "virtio-serial-pci" };
    const struct vmstate_desc *fixed[] = { &cpu_vmstate, &pic_chip_vmstate, &ioapic_vmstate,
                                           &pit_vmstate };
    unsigned n = sizeof(fixed) / sizeof(fixed[0]);
    bool stateless;

    if (i < n)
        return fixed[i];
    i = (i - n) % (sizeof(devs) / sizeof(devs[0]));
    return migration_device_desc(devs[i], &stateless);
}

static void fake_set_irq(struct machine *m, unsigned gsi, int level)
{
}

static void fake_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
}

static const struct accel_ops fake_accel = {
    .name = "fuzz", .set_irq = fake_set_irq, .send_msi = fake_send_msi,
};
static struct vm_config cfg = { .ram_size = 16 * MiB, .smp = 1 };
static struct machine M;
static void *rng;                       /* the live virtio-rng-pci */
static struct machine_device *pci_host;

static void live_machine(void)
{
    if (machine_init(&M, &cfg) < 0 || pci_host_create(&M) < 0 ||
        virtio_rng_create(&M, NULL) < 0)
        abort();
    M.accel = &fake_accel;
    for (int i = 0; i < M.nr_devices; i++) {
        if (!strcmp(M.devices[i].name, "virtio-rng-pci"))
            rng = M.devices[i].opaque;
        if (!strcmp(M.devices[i].name, "pci-host"))
            pci_host = &M.devices[i];
    }
    if (!rng || !pci_host)
        abort();
}

/* A staged table: check against the live device, apply what passes.  The
 * rng's own table goes the whole way (get, parse, check, set); the other
 * devices' get() and set() would treat the rng as their own struct, so
 * their sections are parsed into a staging copy that starts from the rng's
 * transport state and checked (their checks look at the transport only). */
static void run_staged(const struct vmstate_desc *d, const uint8_t *p, size_t n,
                       uint32_t version)
{
    void *staged;

    if (d != &virtio_rng_vmstate) {
        staged = calloc(1, d->state_size);
        if (!staged)
            abort();
        virtio_plain_get(rng, staged);
        if (vmstate_load(p, n, version, d, NULL, 0, false, "fuzz") == 0) {
            if (vmstate_load(p, n, version, d, staged, 0, true, "fuzz") != 0)
                abort();
            d->check(rng, staged, "fuzz");
        }
        free(staged);
        return;
    }
    if (vmstate_check_device(p, n, version, d, rng, 0, "fuzz", &staged) != 0)
        return;
    if (vmstate_commit_device(p, n, version, d, rng, 0, "fuzz", staged) != 0)
        abort();
    free(staged);
    pci_host->reset(pci_host->opaque);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct vmstate_desc *d;

    if (size < 2)
        return 0;
    d = table(data[0] % NR_TABLES);
    if (!d)
        return 0;
    if (d->state_size) {
        run_staged(d, data + 2, size - 2, 1 + data[1] % 4);
        return 0;
    }
    struct vmstate_desc no_hook = *d;
    uint32_t version = 1 + data[1] % 4;

    no_hook.post_load = NULL;
    memset(target, 0, sizeof(target));
    if (vmstate_load(data + 2, size - 2, version, &no_hook, target, 0, false, "fuzz") == 0 &&
        vmstate_load(data + 2, size - 2, version, &no_hook, target, 0, true, "fuzz") != 0)
        abort();    /* a payload that checks out must apply */
    return 0;
}

/* With FUZZ_VMSTATE_SEEDS=DIR, write one well-formed payload per table (of a
 * zeroed structure) into DIR first: a corpus that starts from valid field
 * layouts reaches the per-field checks at once. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("FUZZ_VMSTATE_SEEDS");

    live_machine();
    if (!dir)
        return 0;
    for (unsigned i = 0; i < NR_TABLES; i++) {
        const struct vmstate_desc *d = table(i);
        struct vmbuf b;
        char path[4096];
        uint8_t head[2] = { (uint8_t)i, (uint8_t)(d ? d->version - 1 : 0) };
        FILE *f;

        if (!d)
            continue;
        memset(target, 0, sizeof(target));
        vmbuf_init(&b);
        /* Virtio: the live device's own state (the rng's passes the
         * check; the others differ in host features, a start for the
         * mutations). */
        if (d->state_size)
            virtio_plain_get(rng, target);   /* the staging structs begin with it */
        vmstate_save(&b, d, target, 0);
        snprintf(path, sizeof(path), "%s/seed-%s", dir, d->name);
        f = fopen(path, "wb");
        if (!f || fwrite(head, 1, 2, f) != 2 || fwrite(b.data, 1, b.len, f) != b.len ||
            fclose(f) != 0)
            abort();
        vmbuf_free(&b);
    }
    return 0;
}
