/* Just enough ACPI: find the RSDP, walk the RSDT/XSDT, parse the MADT. */
#include "rt.h"

struct rsdp {
    char signature[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt;
    uint32_t length;
    uint64_t xsdt;
    uint8_t ext_checksum, reserved[3];
} __attribute__((packed));

static bool checksum_ok(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    while (len--)
        sum += *b++;
    return sum == 0;
}

static const struct rsdp *rsdp_scan(uint64_t start, uint64_t len)
{
    /* "RSD PTR " compared as one word keeps the CPL0 loop short. */
    const uint64_t sig = 0x2052545020445352ULL;
    for (uint64_t p = start; p + sizeof(struct rsdp) <= start + len; p += 16)
        if (*(const volatile uint64_t *)p == sig && checksum_ok((const void *)p, 20))
            return (const struct rsdp *)p;
    return NULL;
}

static const struct rsdp *rsdp_find(void)
{
    static const struct rsdp *cached;
    if (cached)
        return cached;
    uint64_t ebda = (uint64_t)*(const volatile uint16_t *)0x40e << 4;
    if (ebda >= 0x80000 && ebda < 0xa0000)
        cached = rsdp_scan(ebda, 1024);
    if (!cached)
        cached = rsdp_scan(0xe0000, 0x20000);
    return cached;
}

static const struct acpi_sdt_header *table_at(uint64_t addr, const char *sig)
{
    const struct acpi_sdt_header *h = (const void *)addr;
    if (!addr || addr >= 0x100000000ULL)
        return NULL;
    if (memcmp(h->signature, sig, 4) || h->length < sizeof(*h) || h->length > 0x100000)
        return NULL;
    return checksum_ok(h, h->length) ? h : NULL;
}

const struct acpi_sdt_header *acpi_find_table(const char *sig)
{
    const struct rsdp *r = rsdp_find();
    if (!r)
        return NULL;
    const struct acpi_sdt_header *root = NULL;
    unsigned entry_size = 4;
    if (r->revision >= 2 && r->xsdt && (root = table_at(r->xsdt, "XSDT")))
        entry_size = 8;
    else
        root = table_at(r->rsdt, "RSDT");
    if (!root)
        return NULL;
    const uint8_t *e = (const uint8_t *)root + sizeof(*root);
    unsigned n = (root->length - sizeof(*root)) / entry_size;
    for (unsigned i = 0; i < n; i++, e += entry_size) {
        uint64_t addr = entry_size == 8 ? *(const uint64_t *)e : *(const uint32_t *)e;
        const struct acpi_sdt_header *t = table_at(addr, sig);
        if (t)
            return t;
    }
    return NULL;
}

void acpi_parse_madt(struct madt_info *mi)
{
    memset(mi, 0, sizeof(*mi));
    mi->ioapic_base = 0xfec00000;
    const struct acpi_sdt_header *h = acpi_find_table("APIC");
    if (!h)
        return;
    mi->found = true;
    const uint8_t *p = (const uint8_t *)h + 44, *end = (const uint8_t *)h + h->length;
    bool have_iso = false;
    while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
        switch (p[0]) {
        case 0:     /* processor local APIC */
            if (p[1] >= 8 && (*(const uint32_t *)(p + 4) & 1) &&
                mi->nr_cpus < ARRAY_SIZE(mi->apic_ids))
                mi->apic_ids[mi->nr_cpus++] = p[3];
            break;
        case 1:     /* I/O APIC: the first one is ours */
            if (p[1] >= 12 && mi->ioapic_base == 0xfec00000) {
                mi->ioapic_base = *(const uint32_t *)(p + 4);
                mi->ioapic_gsi_base = *(const uint32_t *)(p + 8);
            }
            break;
        case 2:     /* interrupt source override */
            if (p[1] >= 10 && p[2] == 0 && p[3] == 0) {
                mi->irq0_gsi = *(const uint32_t *)(p + 4);
                mi->irq0_flags = *(const uint16_t *)(p + 8);
                have_iso = true;
            }
            break;
        }
        p += p[1];
    }
    if (!have_iso)
        mi->irq0_gsi = 0;
}
