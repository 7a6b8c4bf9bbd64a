/* Intel MultiProcessor Specification 1.4 tables, for guests (and Linux
 * with acpi=off) that look for "_MP_" instead of ACPI: CPUs, the ISA bus,
 * the IOAPIC and the ISA IRQ wiring (IRQ0 on pin 2).  Rewritten at reset. */
#include <errno.h>
#include <string.h>

#include "hw/acpi.h"
#include "hw/fw_bytes.h"
#include "hw/pc_devices.h"
#include "util/log.h"

#define MPTABLE_ADDR 0xf0000ULL
#define MP_MAX_SIZE 4096


static void irq_entry(uint8_t *e, uint8_t type, uint8_t src_irq, uint8_t ioapic, uint8_t pin)
{
    e[0] = 3;
    e[1] = type;          /* 0 INT, 3 ExtINT */
    fw_put_le(e + 2, 0, 2);     /* conforms to bus */
    e[4] = 0;             /* ISA bus */
    e[5] = src_irq;
    e[6] = ioapic;
    e[7] = pin;
}

static int mptable_build(struct machine *m)
{
    uint8_t buf[MP_MAX_SIZE];
    int n = m->nr_vcpus > 0 ? m->nr_vcpus : 1;
    uint8_t ioapic_id = ACPI_IOAPIC_ID;
    uint8_t *fp = buf, *cfg = buf + 16, *e;
    unsigned entries = 0;

    memset(buf, 0, sizeof(buf));
    e = cfg + 44;
    for (int i = 0; i < n; i++, e += 20, entries++) {
        e[0] = 0;
        e[1] = (uint8_t)i;                   /* LAPIC ID */
        e[2] = 0x14;                         /* LAPIC version */
        e[3] = (uint8_t)(0x01 | (i == 0 ? 0x02 : 0));  /* enabled, BSP */
        fw_put_le(e + 4, 0x600, 4);                /* CPU signature: family 6 */
        fw_put_le(e + 8, 0x201, 4);                /* FPU, APIC */
    }
    e[0] = 1;
    e[1] = 0;
    memcpy(e + 2, "ISA   ", 6);
    e += 8, entries++;
    e[0] = 2;
    e[1] = ioapic_id;
    e[2] = 0x11;
    e[3] = 1;
    fw_put_le(e + 4, ACPI_IOAPIC_ADDR, 4);
    e += 8, entries++;
    irq_entry(e, 3, 0, ioapic_id, 0);        /* the 8259's ExtINT on pin 0 */
    e += 8, entries++;
    for (uint8_t irq = 0; irq < 16; irq++) {
        if (irq == 2)
            continue;                        /* cascade */
        irq_entry(e, 0, irq, ioapic_id, irq == 0 ? 2 : irq);
        e += 8, entries++;
    }
    /* Local interrupts: ExtINT on LINT0, NMI on LINT1, every CPU. */
    for (uint8_t lint = 0; lint < 2; lint++) {
        e[0] = 4;
        e[1] = lint == 0 ? 3 : 1;
        fw_put_le(e + 2, 0, 2);
        e[4] = 0;
        e[5] = 0;
        e[6] = 0xff;
        e[7] = lint;
        e += 8, entries++;
    }

    uint16_t len = (uint16_t)(e - cfg);
    memcpy(cfg, "PCMP", 4);
    fw_put_le(cfg + 4, len, 2);
    cfg[6] = 4;
    memcpy(cfg + 8, "VMON    ", 8);
    memcpy(cfg + 16, "PC          ", 12);
    fw_put_le(cfg + 34, entries, 2);
    fw_put_le(cfg + 36, ACPI_LAPIC_ADDR, 4);
    cfg[7] = fw_checksum(cfg, len);

    memcpy(fp, "_MP_", 4);
    fw_put_le(fp + 4, MPTABLE_ADDR + 16, 4);
    fp[8] = 1;
    fp[9] = 4;
    fp[10] = fw_checksum(fp, 16);

    if (machine_write_gpa(m, MPTABLE_ADDR, buf, 16 + len) < 0) {
        error_report("mptable: cannot write at 0x%llx", (unsigned long long)MPTABLE_ADDR);
        return -EFAULT;
    }
    return 0;
}

static void mptable_reset(void *opaque)
{
    mptable_build(opaque);
}

int mptable_create(struct machine *m)
{
    int ret = mptable_build(m);

    if (ret < 0)
        return ret;
    return machine_add_device(m, "mptable", m, mptable_reset, NULL);
}
