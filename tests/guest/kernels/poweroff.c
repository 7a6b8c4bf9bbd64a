/* poweroff: ACPI S5 the way an OS does it.  The FADT gives PM1a_CNT_BLK
 * (and SMI_CMD/ACPI_ENABLE), the DSDT's \_S5 package gives SLP_TYPa; writing
 * SLP_TYPa|SLP_EN must end the VM with exit status 0. */
#include "rt.h"

#define SLP_EN (1u << 13)
#define SCI_EN 1u

/* Decode an AML integer constant; false for anything else. */
static bool aml_int(const uint8_t *p, const uint8_t *end, unsigned *out)
{
    if (p >= end)
        return false;
    switch (p[0]) {
    case 0x00: *out = 0; return true;              /* ZeroOp */
    case 0x01: *out = 1; return true;              /* OneOp */
    case 0x0a:                                     /* BytePrefix */
        if (p + 1 >= end)
            return false;
        *out = p[1];
        return true;
    default:
        return false;
    }
}

/* Find Name(_S5_, Package(){SLP_TYPa, ...}) in the AML. */
static bool find_s5(const struct acpi_sdt_header *dsdt, unsigned *slp_typa)
{
    const uint8_t *p = (const uint8_t *)dsdt + sizeof(*dsdt);
    const uint8_t *end = (const uint8_t *)dsdt + dsdt->length;
    const uint32_t s5 = 0x5f35535f;     /* "_S5_" */
    for (; p + 4 <= end; p++) {
        if (*(const uint32_t *)p != s5)
            continue;
        const uint8_t *q = p + 4;
        if (p[-1] != 0x08 && !(p[-1] == '\\' && p[-2] == 0x08))
            continue;                   /* not a NameOp */
        if (q >= end || *q != 0x12)     /* PackageOp */
            continue;
        q++;
        if (q >= end)
            return false;
        q += 1 + (*q >> 6);             /* PkgLength */
        q++;                            /* NumElements */
        return aml_int(q, end, slp_typa);
    }
    return false;
}

void test_main(void)
{
    const struct acpi_sdt_header *fadt = acpi_find_table("FACP");
    if (!fadt || fadt->length < 116)
        test_fail("poweroff: no usable FADT");
    const uint8_t *f = (const uint8_t *)fadt;
    uint64_t dsdt_addr = *(const uint32_t *)(f + 40);
    if (fadt->length >= 148 && *(const uint64_t *)(f + 140))
        dsdt_addr = *(const uint64_t *)(f + 140);
    uint32_t smi_cmd = *(const uint32_t *)(f + 48);
    uint8_t acpi_enable = f[52];
    uint32_t pm1a_cnt = *(const uint32_t *)(f + 64);
    if (!pm1a_cnt || pm1a_cnt > 0xffff)
        test_fail("poweroff: no PM1a control block");
    kprintf("poweroff: FADT has PM1a_CNT_BLK\n");

    const struct acpi_sdt_header *dsdt = NULL;
    if (dsdt_addr && dsdt_addr < 0x100000000ULL &&
        !memcmp(((const struct acpi_sdt_header *)dsdt_addr)->signature, "DSDT", 4))
        dsdt = (const struct acpi_sdt_header *)dsdt_addr;
    if (!dsdt)
        test_fail("poweroff: no DSDT");
    unsigned slp_typ;
    if (!find_s5(dsdt, &slp_typ))
        test_fail("poweroff: no \\_S5 package in the DSDT");
    kprintf("poweroff: found \\_S5\n");

    if (smi_cmd && acpi_enable && !(inw((uint16_t)pm1a_cnt) & SCI_EN)) {
        outb((uint16_t)smi_cmd, acpi_enable);
        for (int i = 0; i < 1000 && !(inw((uint16_t)pm1a_cnt) & SCI_EN); i++)
            pit_delay_us(1000);
    }
    kprintf("poweroff: entering S5\n");
    outw((uint16_t)pm1a_cnt, (uint16_t)((slp_typ & 7) << 10 | SLP_EN));
    pit_delay_us(1000000);
    test_fail("poweroff: still running after S5");
}
