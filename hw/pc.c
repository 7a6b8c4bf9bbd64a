/* The PC board: which devices a vmon machine has, as two plain tables.
 *
 * board_devices[] is the fixed board, created in order (kvmtool style: a
 * name, a constructor, an optional condition).  pluggable_devices[] are the
 * drivers -device can name; their options are QEMU "key=val" strings.  The
 * firmware tables come last, once every device they describe exists. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "accel/accel.h"
#include "config/config.h"
#include "hw/board.h"
#include "hw/irqchip.h"
#include "hw/pc_devices.h"
#include "util/keyval.h"
#include "util/log.h"
#include "virtio/virtio_devices.h"

struct board_device {
    const char *name;
    int (*create)(struct machine *m);
    bool (*wanted)(const struct machine *m);   /* NULL: always */
};

struct pluggable_device {
    const char *name;
    int (*create)(struct machine *m, struct keyval *opts);
};

bool board_user_irqchip(const struct machine *m)
{
    /* KVM brings its in-kernel LAPIC/IOAPIC/PIC/PIT; emu needs vmon's. */
    return !(m->accel && m->accel->name && !strcmp(m->accel->name, "kvm"));
}

/* vmon's own PIC/IOAPIC/PIT/LAPICs, unless KVM has them in-kernel or the
 * accelerator already created them. */
static bool want_irqchip(const struct machine *m)
{
    return board_user_irqchip(m) && !irqchip_of((struct machine *)m);
}

static bool want_serial(const struct machine *m)
{
    return m->cfg && m->cfg->serial != SERIAL_NONE;
}

static const struct board_device board_devices[] = {
    /* First, so that every later device's interrupt lines land somewhere. */
    { "irqchip", irqchip_board_create, want_irqchip },
    { "acpi-pm", pm_create, NULL },
    { "port92", port92_create, NULL },
    { "fw_cfg", fw_cfg_create, NULL },
    { "rtc", rtc_create, NULL },
    { "i8042", i8042_create, NULL },
    { "serial", serial_com1_create, want_serial },
    { "pci-host", pci_host_create, NULL },
};

static const struct pluggable_device pluggable_devices[] = {
    { "isa-debug-exit", debug_exit_create },
    { "virtio-rng-pci", virtio_rng_create },
    { "virtio-blk-pci", virtio_blk_create },
    { "virtio-serial-pci", virtio_console_create },
    { "virtio-console-pci", virtio_console_create },
    { "virtconsole", virtconsole_create },
    { "virtio-net-pci", virtio_net_create },
};

/* Built after every device exists, and rebuilt on reset since the guest
 * may have scribbled over them. */
static const struct board_device firmware_tables[] = {
    { "acpi-tables", acpi_create, NULL },
    { "mptable", mptable_create, NULL },
    { "smbios", smbios_create, NULL },
};

static int create_table(struct machine *m, const struct board_device *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int ret;

        if (t[i].wanted && !t[i].wanted(m))
            continue;
        ret = t[i].create(m);
        if (ret < 0) {
            error_report("board: cannot create %s: %s", t[i].name, strerror(-ret));
            return ret;
        }
    }
    return 0;
}

static int create_pluggable(struct machine *m, const char *arg)
{
    char ctx[256];
    struct keyval kv;
    int ret = -EINVAL;

    snprintf(ctx, sizeof(ctx), "-device %s", arg);
    if (keyval_parse(&kv, arg, true, ctx) < 0)
        return -EINVAL;
    for (size_t i = 0; i < ARRAY_SIZE(pluggable_devices); i++) {
        if (strcmp(kv.driver, pluggable_devices[i].name))
            continue;
        /* "id" names any device in QEMU; nothing refers to it here yet. */
        (void)keyval_get(&kv, "id");
        ret = pluggable_devices[i].create(m, &kv);
        if (ret == 0)
            ret = keyval_check_unused(&kv);
        goto out;
    }
    error_report("-device %s: unknown device type '%s'", arg, kv.driver);
out:
    keyval_free(&kv);
    return ret;
}

int board_init(struct machine *m)
{
    int ret = create_table(m, board_devices, ARRAY_SIZE(board_devices));

    if (ret < 0)
        return ret;
    for (int i = 0; m->cfg && i < m->cfg->nr_devices; i++) {
        ret = create_pluggable(m, m->cfg->devices[i]);
        if (ret < 0)
            return ret;
    }
    return create_table(m, firmware_tables, ARRAY_SIZE(firmware_tables));
}

void board_reset(struct machine *m)
{
    for (int i = 0; i < m->nr_devices; i++)
        if (m->devices[i].reset)
            m->devices[i].reset(m->devices[i].opaque);
}
