/* libFuzzer harness over section payload parsing in migration streams.
 * Section CRCs stop random corruption, not a crafted stream, so the payload
 * parser is what a hostile migration source reaches: the first input byte
 * picks a state table (the vCPU, the irqchip models, each device) and a
 * stream version, the rest is the payload.  vmstate_load must accept it or
 * refuse it; it never writes outside the target structure.  Checking and
 * applying are separate passes, as in migration_load(); post_load hooks
 * need a live device and are left to the system tests. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/migration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define NR_TABLES 11u
/* Larger than any state structure, so a table's offsets stay inside it. */
static uint8_t target[1 << 20];

static const struct vmstate_desc *table(unsigned i)
{
    static const char *const devs[] = { "serial", "rtc", "acpi-pm", "i8042", "fw_cfg",
                                        "port92", "pci-host" };
    const struct vmstate_desc *fixed[] = { &cpu_vmstate, &pic_chip_vmstate, &ioapic_vmstate,
                                           &pit_vmstate };
    unsigned n = sizeof(fixed) / sizeof(fixed[0]);
    bool stateless;

    if (i < n)
        return fixed[i];
    i = (i - n) % (sizeof(devs) / sizeof(devs[0]));
    return migration_device_desc(devs[i], &stateless);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct vmstate_desc *d;

    if (size < 2)
        return 0;
    d = table(data[0] % NR_TABLES);
    if (!d)
        return 0;
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
