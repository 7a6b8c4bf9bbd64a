/* ACPI tables: RSDP, RSDT/XSDT, FADT (+FACS), DSDT, MADT.
 *
 * They are built in a host buffer and copied into the reserved BIOS area
 * at every reset, since the guest owns that RAM while it runs.  The DSDT
 * is AML emitted by hw/acpi_aml.c: \_S5, the PCI root bridge (bus range,
 * windows, _PRT) and COM1. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "hw/acpi.h"
#include "hw/acpi_aml.h"
#include "hw/fw_bytes.h"
#include "hw/pc_devices.h"
#include "hw/pci.h"
#include "hw/pm.h"
#include "hw/serial.h"
#include "util/log.h"

#define HDR_LEN 36

struct acpi_image {
    uint8_t buf[ACPI_TABLES_SIZE];
    uint32_t len;
};


/* Reserve len bytes aligned to align; returns the offset, or -1 if the
 * image is full (cannot happen with vmon's tables and 64 vCPUs). */
static int64_t img_alloc(struct acpi_image *img, uint32_t len, uint32_t align)
{
    uint32_t off = ALIGN_UP(img->len, align);

    if (off + len > sizeof(img->buf))
        return -1;
    img->len = off + len;
    return off;
}

static void header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(t, sig, 4);
    fw_put_le(t + 4, len, 4);
    t[8] = rev;
    t[9] = 0;
    memcpy(t + 10, "VMON  ", 6);
    memcpy(t + 16, "VMONPC  ", 8);
    fw_put_le(t + 24, 1, 4);
    memcpy(t + 28, "VMON", 4);
    fw_put_le(t + 32, 1, 4);
}

static void finish(uint8_t *t)
{
    uint32_t len = (uint32_t)(t[4] | t[5] << 8 | t[6] << 16 | (uint32_t)t[7] << 24);

    t[9] = 0;
    t[9] = fw_checksum(t, len);
}

/* Generic address structure: system I/O. */
static void gas_io(uint8_t *p, uint8_t bit_width, uint8_t access_size, uint64_t port)
{
    p[0] = 1;
    p[1] = bit_width;
    p[2] = 0;
    p[3] = access_size;
    fw_put_le(p + 4, port, 8);
}

/* Device(name) { _HID, _UID, _CRS } */
static void legacy_device(struct aml *scope, const char *name, const char *hid, unsigned uid,
                          const struct aml *descriptors)
{
    struct aml dev, v;

    aml_init(&dev);
    aml_init(&v);
    aml_eisaid(&v, hid);
    aml_name_decl(&dev, "_HID", &v);
    v.len = 0;
    aml_integer(&v, uid);
    aml_name_decl(&dev, "_UID", &v);
    v.len = 0;
    aml_resource_template(&v, descriptors);
    aml_name_decl(&dev, "_CRS", &v);
    aml_device(scope, name, &dev);
    if (v.error)
        scope->error = true;
    aml_free(&dev);
    aml_free(&v);
}

static void build_dsdt_body(const struct machine *m, struct aml *out)
{
    struct aml s5, pkg, sb, pci, v, res, prt;
    uint64_t win = pci_mem_window_base(m);

    aml_init(&s5);
    aml_init(&pkg);
    aml_init(&sb);
    aml_init(&pci);
    aml_init(&v);
    aml_init(&res);
    aml_init(&prt);

    /* \_S5: SLP_TYPa, SLP_TYPb, reserved, reserved. */
    for (int i = 0; i < 2; i++)
        aml_integer(&pkg, PM_SLP_TYP_S5);
    aml_integer(&pkg, 0);
    aml_integer(&pkg, 0);
    aml_package(&s5, 4, &pkg);
    aml_name_decl(out, "\\_S5_", &s5);

    /* \_SB.PCI0 */
    aml_eisaid(&v, "PNP0A03");
    aml_name_decl(&pci, "_HID", &v);
    v.len = 0;
    aml_integer(&v, 0);
    aml_name_decl(&pci, "_ADR", &v);
    aml_name_decl(&pci, "_UID", &v);
    aml_name_decl(&pci, "_BBN", &v);

    aml_res_word_bus(&res, 0, 0xff);
    aml_res_io(&res, PCI_CONFIG_ADDRESS, PCI_CONFIG_ADDRESS, 1, 8);
    aml_res_word_io(&res, 0x0000, 0x0cf7);
    aml_res_word_io(&res, PCI_IO_WINDOW_BASE,
                    (uint16_t)(PCI_IO_WINDOW_BASE + PCI_IO_WINDOW_SIZE - 1));
    aml_res_dword_mem(&res, (uint32_t)win, (uint32_t)(PCI_MEM_WINDOW_END - 1), false);
    v.len = 0;
    aml_resource_template(&v, &res);
    aml_name_decl(&pci, "_CRS", &v);

    /* _PRT: every slot's INTA-D straight to a GSI (Source = 0). */
    unsigned nr = 0;
    for (unsigned slot = 1; slot < PCI_MAX_SLOTS; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            struct aml e;
            aml_init(&e);
            aml_integer(&e, ((uint64_t)slot << 16) | 0xffff);
            aml_integer(&e, pin);
            aml_integer(&e, 0);
            aml_integer(&e, pci_intx_gsi(slot, pin + 1));
            aml_package(&prt, 4, &e);
            aml_free(&e);
            nr++;
        }
    }
    v.len = 0;
    {
        struct aml list;
        aml_init(&list);
        aml_package(&list, (uint8_t)nr, &prt);
        aml_name_decl(&pci, "_PRT", &list);
        aml_free(&list);
    }
    aml_device(&sb, "PCI0", &pci);

    /* The ISA devices, so Linux's PNP drivers (8250_pnp, rtc_cmos, i8042)
     * bind them with their resources. */
    res.len = 0;
    aml_res_io(&res, 0x70, 0x70, 1, 2);
    aml_res_irq_noflags(&res, 1u << 8);
    legacy_device(&sb, "RTC_", "PNP0B00", 0, &res);
    res.len = 0;
    aml_res_io(&res, 0x60, 0x60, 1, 1);
    aml_res_io(&res, 0x64, 0x64, 1, 1);
    aml_res_irq_noflags(&res, 1u << 1);
    legacy_device(&sb, "KBD_", "PNP0303", 0, &res);
    if (m->cfg && m->cfg->serial != SERIAL_NONE) {
        res.len = 0;
        aml_res_io(&res, SERIAL_COM1_BASE, SERIAL_COM1_BASE, 8, 8);
        aml_res_irq_noflags(&res, 1u << SERIAL_COM1_IRQ);
        legacy_device(&sb, "COM1", "PNP0501", 1, &res);
    }
    aml_scope(out, "\\_SB_", &sb);

    if (s5.error || pkg.error || sb.error || pci.error || v.error || res.error || prt.error)
        out->error = true;
    aml_free(&s5);
    aml_free(&pkg);
    aml_free(&sb);
    aml_free(&pci);
    aml_free(&v);
    aml_free(&res);
    aml_free(&prt);
}

static int64_t build_madt(const struct machine *m, struct acpi_image *img)
{
    int n = m->nr_vcpus > 0 ? m->nr_vcpus : 1;
    uint32_t len = HDR_LEN + 8 + 8 * (uint32_t)n + 12 + 10 * 2 + 6;
    int64_t off = img_alloc(img, len, 8);
    uint8_t *t, *e;

    if (off < 0)
        return -1;
    t = img->buf + off;
    header(t, "APIC", len, 3);
    fw_put_le(t + 36, ACPI_LAPIC_ADDR, 4);
    fw_put_le(t + 40, 1, 4);                 /* PCAT_COMPAT: there are 8259s too */
    e = t + 44;
    for (int i = 0; i < n; i++, e += 8) {
        e[0] = 0;                      /* processor local APIC */
        e[1] = 8;
        e[2] = (uint8_t)i;             /* ACPI processor UID */
        e[3] = (uint8_t)i;             /* APIC ID = vCPU index */
        fw_put_le(e + 4, 1, 4);              /* enabled */
    }
    e[0] = 1;                          /* I/O APIC */
    e[1] = 12;
    e[2] = ACPI_IOAPIC_ID;
    e[3] = 0;
    fw_put_le(e + 4, ACPI_IOAPIC_ADDR, 4);
    fw_put_le(e + 8, 0, 4);                  /* GSI base */
    e += 12;
    /* IRQ0 (PIT) is wired to pin 2, as on every PC with an IOAPIC. */
    e[0] = 2;
    e[1] = 10;
    e[2] = 0;
    e[3] = 0;
    fw_put_le(e + 4, 2, 4);
    fw_put_le(e + 8, 0, 2);                  /* conforms to the bus (edge, high) */
    e += 10;
    /* SCI: level-triggered, active high. */
    e[0] = 2;
    e[1] = 10;
    e[2] = 0;
    e[3] = PM_SCI_IRQ;
    fw_put_le(e + 4, PM_SCI_IRQ, 4);
    fw_put_le(e + 8, 0x000d, 2);
    e += 10;
    /* LINT1 of every CPU is NMI. */
    e[0] = 4;
    e[1] = 6;
    e[2] = 0xff;
    fw_put_le(e + 3, 0, 2);
    e[5] = 1;
    finish(t);
    return off;
}

static int64_t build_fadt(struct acpi_image *img, uint64_t facs, uint64_t dsdt)
{
    const uint32_t len = 244;
    int64_t off = img_alloc(img, len, 8);
    uint8_t *t;

    if (off < 0)
        return -1;
    t = img->buf + off;
    header(t, "FACP", len, 3);
    fw_put_le(t + 36, facs, 4);
    fw_put_le(t + 40, dsdt, 4);
    t[45] = 0;                           /* preferred PM profile: unspecified */
    fw_put_le(t + 46, PM_SCI_IRQ, 2);
    fw_put_le(t + 48, 0, 4);                   /* no SMI_CMD: always in ACPI mode */
    fw_put_le(t + 56, PM1A_EVT_BLK, 4);
    fw_put_le(t + 64, PM1A_CNT_BLK, 4);
    fw_put_le(t + 76, PM_TMR_BLK, 4);
    t[88] = PM1A_EVT_LEN;
    t[89] = PM1A_CNT_LEN;
    t[91] = PM_TMR_LEN;
    fw_put_le(t + 96, 0x0fff, 2);              /* no C2 */
    fw_put_le(t + 98, 0x0fff, 2);              /* no C3 */
    t[108] = 0x32;                       /* RTC century register */
    /* IAPC_BOOT_ARCH: legacy devices, 8042, no VGA. */
    fw_put_le(t + 109, 0x0001 | 0x0002 | 0x0004, 2);
    /* Flags: WBINVD, PROC_C1, no fixed sleep button, FIX_RTC,
     * RESET_REG_SUP.  The power button is the fixed-feature one (PM1
     * PWRBTN), which pm_power_button() presses. */
    fw_put_le(t + 112, (1u << 0) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 10), 4);
    gas_io(t + 116, 8, 1, PM_RESET_PORT);
    t[128] = PM_RESET_VALUE;
    /* X_FIRMWARE_CTRL stays 0: the spec allows only one of the two FACS
     * pointers, and Linux would otherwise map the FACS twice. */
    fw_put_le(t + 140, dsdt, 8);
    gas_io(t + 148, 8 * PM1A_EVT_LEN, 0, PM1A_EVT_BLK);
    gas_io(t + 172, 8 * PM1A_CNT_LEN, 0, PM1A_CNT_BLK);
    gas_io(t + 208, 8 * PM_TMR_LEN, 0, PM_TMR_BLK);
    finish(t);
    return off;
}

static int acpi_build_image(const struct machine *m, struct acpi_image *img)
{
    const uint64_t base = ACPI_TABLES_BASE;
    int64_t rsdp, rsdt, xsdt, fadt, facs, dsdt, madt;
    struct aml body;
    uint8_t *t;

    memset(img, 0, sizeof(*img));
    rsdp = img_alloc(img, 36, 16);
    rsdt = img_alloc(img, HDR_LEN + 2 * 4, 8);
    xsdt = img_alloc(img, HDR_LEN + 2 * 8, 8);
    facs = img_alloc(img, 64, 64);
    if (rsdp < 0 || rsdt < 0 || xsdt < 0 || facs < 0)
        return -ENOSPC;

    memcpy(img->buf + facs, "FACS", 4);
    fw_put_le(img->buf + facs + 4, 64, 4);
    img->buf[facs + 32] = 2;             /* version */

    aml_init(&body);
    build_dsdt_body(m, &body);
    if (body.error || body.len > sizeof(img->buf)) {
        aml_free(&body);
        return -ENOMEM;
    }
    dsdt = img_alloc(img, HDR_LEN + (uint32_t)body.len, 8);
    if (dsdt < 0) {
        aml_free(&body);
        return -ENOSPC;
    }
    header(img->buf + dsdt, "DSDT", HDR_LEN + (uint32_t)body.len, 2);
    memcpy(img->buf + dsdt + HDR_LEN, body.buf, body.len);
    finish(img->buf + dsdt);
    aml_free(&body);

    fadt = build_fadt(img, base + (uint64_t)facs, base + (uint64_t)dsdt);
    madt = build_madt(m, img);
    if (fadt < 0 || madt < 0)
        return -ENOSPC;

    t = img->buf + rsdt;
    header(t, "RSDT", HDR_LEN + 2 * 4, 1);
    fw_put_le(t + 36, base + (uint64_t)fadt, 4);
    fw_put_le(t + 40, base + (uint64_t)madt, 4);
    finish(t);

    t = img->buf + xsdt;
    header(t, "XSDT", HDR_LEN + 2 * 8, 1);
    fw_put_le(t + 36, base + (uint64_t)fadt, 8);
    fw_put_le(t + 44, base + (uint64_t)madt, 8);
    finish(t);

    t = img->buf + rsdp;
    memcpy(t, "RSD PTR ", 8);
    memcpy(t + 9, "VMON  ", 6);
    t[15] = 2;
    fw_put_le(t + 16, base + (uint64_t)rsdt, 4);
    fw_put_le(t + 20, 36, 4);
    fw_put_le(t + 24, base + (uint64_t)xsdt, 8);
    t[8] = fw_checksum(t, 20);
    t[32] = fw_checksum(t, 36);
    return 0;
}

int acpi_build(struct machine *m)
{
    struct acpi_image *img = malloc(sizeof(*img));
    int ret;

    if (!img)
        return -ENOMEM;
    ret = acpi_build_image(m, img);
    if (ret == 0 && machine_write_gpa(m, ACPI_TABLES_BASE, img->buf, img->len) < 0)
        ret = -EFAULT;
    free(img);
    if (ret < 0)
        error_report("acpi: cannot build the tables: %s", strerror(-ret));
    return ret;
}

static void acpi_reset(void *opaque)
{
    acpi_build(opaque);
}

int acpi_create(struct machine *m)
{
    int ret = acpi_build(m);

    if (ret < 0)
        return ret;
    return machine_add_device(m, "acpi-tables", m, acpi_reset, NULL);
}
