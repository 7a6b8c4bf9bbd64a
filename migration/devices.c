/* Which machine devices carry state, by their machine_add_device() name.
 * A device missing from both lists blocks snapshots (it would be lost). */
#include <string.h>

#include "migration/migration.h"

static const struct {
    const char *name;
    const struct vmstate_desc *desc;
} device_descs[] = {
    { "serial", &serial_vmstate },
    { "rtc", &rtc_vmstate },
    { "acpi-pm", &pm_vmstate },
    { "i8042", &i8042_vmstate },
    { "fw_cfg", &fw_cfg_vmstate },
    { "port92", &port92_vmstate },
    { "pci-host", &pci_host_vmstate },
    { "virtio-blk-pci", &virtio_blk_vmstate },
    { "virtio-net-pci", &virtio_net_vmstate },
    { "virtio-rng-pci", &virtio_rng_vmstate },
    { "virtio-serial-pci", &virtio_console_vmstate },
};

/* Stateless, or saved elsewhere: the irqchip travels in its own sections
 * whichever accelerator owns it; the firmware tables are rebuilt. */
static const char *const stateless[] = {
    "irqchip", "acpi-tables", "mptable", "smbios", "isa-debug-exit",
};

const struct vmstate_desc *migration_device_desc(const char *name, bool *is_stateless)
{
    *is_stateless = false;
    for (size_t i = 0; i < ARRAY_SIZE(device_descs); i++)
        if (!strcmp(device_descs[i].name, name))
            return device_descs[i].desc;
    for (size_t i = 0; i < ARRAY_SIZE(stateless); i++)
        if (!strcmp(stateless[i], name))
            *is_stateless = true;
    return NULL;
}
