/* PCI: configuration mechanism #1 as Linux probes it, the host bridge,
 * absent functions, partial and straddling accesses, BAR sizing and
 * mapping (and refusal of absurd addresses), capabilities, INTx, reset. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "config/config.h"
#include "hw/pc_devices.h"
#include "hw/pci.h"
#include "machine/machine.h"
#include "util/keyval.h"
#include "util/main_loop.h"

static int irq_level[32];

static void fake_set_irq(struct machine *m, unsigned gsi, int level)
{
    if (gsi < 32)
        irq_level[gsi] = level;
}

static struct { uint64_t addr; uint32_t data; } msi_log[16];
static int nr_msi;

static void fake_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    if (nr_msi < 16)
        msi_log[nr_msi] = (typeof(msi_log[0])){ addr, data };
    nr_msi++;
}

static const struct accel_ops fake_accel = {
    .name = "test", .set_irq = fake_set_irq, .send_msi = fake_send_msi,
};
static struct vm_config cfg = { .ram_size = 16 * MiB, .smp = 1 };

struct testdev {
    struct pci_device pci;
    uint64_t last_offset;
    unsigned accesses, maps, unmaps, resets;
    uint64_t mapped_at[PCI_NUM_BARS];
};

static uint64_t bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct testdev *t = opaque;

    t->accesses++;
    t->last_offset = offset;
    return 0xabcd0000 | offset;
}

static void bar_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct testdev *t = opaque;

    t->accesses++;
    t->last_offset = offset;
}

static const struct io_ops bar_ops = { .read = bar_read, .write = bar_write };

static void on_bar_map(struct pci_device *d, int bar, uint64_t addr, bool mapped)
{
    struct testdev *t = d->opaque;

    if (mapped) {
        t->maps++;
        t->mapped_at[bar] = addr;
    } else {
        t->unmaps++;
    }
}

static void on_reset(struct pci_device *d)
{
    ((struct testdev *)d->opaque)->resets++;
}

struct fixture {
    struct machine m;
    struct testdev dev;
};

static void outl(struct machine *m, uint16_t port, uint32_t v)
{
    machine_pio(m, port, &v, 4, true);
}

static uint32_t inl(struct machine *m, uint16_t port)
{
    uint32_t v = 0;

    machine_pio(m, port, &v, 4, false);
    return v;
}

static uint32_t cfg_read(struct machine *m, unsigned slot, unsigned off, unsigned size)
{
    uint32_t v = 0;

    outl(m, 0xcf8, 0x80000000u | slot << 11 | (off & 0xfc));
    machine_pio(m, (uint16_t)(0xcfc + (off & 3)), &v, size, false);
    return v;
}

static void cfg_write(struct machine *m, unsigned slot, unsigned off, uint32_t v, unsigned size)
{
    outl(m, 0xcf8, 0x80000000u | slot << 11 | (off & 0xfc));
    machine_pio(m, (uint16_t)(0xcfc + (off & 3)), &v, size, true);
}

static int setup(void **st)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct pci_device *d = &f->dev.pci;

    memset(irq_level, 0, sizeof(irq_level));
    assert_int_equal(machine_init(&f->m, &cfg), 0);
    f->m.accel = &fake_accel;
    assert_int_equal(pci_host_create(&f->m), 0);
    pci_device_init(d, "testdev", 0x1af4, 0x1041, 0x020000, 1);
    d->opaque = &f->dev;
    d->bar_map = on_bar_map;
    d->reset = on_reset;
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_MEM32, 0x1000, false, &bar_ops, &f->dev), 0);
    assert_int_equal(pci_device_set_bar(d, 1, PCI_BAR_IO, 0x20, false, &bar_ops, &f->dev), 0);
    assert_int_equal(pci_device_set_bar(d, 2, PCI_BAR_MEM64, 0x4000, true, &bar_ops, &f->dev), 0);
    pci_device_set_intx_pin(d, 1);
    assert_int_equal(pci_register_device(pci_root_bus(&f->m), d), 0);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fixture *f = *st;

    f->m.accel = NULL;
    machine_destroy(&f->m);
    free(f);
    return 0;
}

static void test_conf1_probe_and_host_bridge(void **st)
{
    struct machine *m = &((struct fixture *)*st)->m;

    outl(m, 0xcf8, 0x80000000);
    assert_int_equal(inl(m, 0xcf8), 0x80000000);
    assert_int_equal(cfg_read(m, 0, 0, 4), 0x12378086);
    assert_int_equal(cfg_read(m, 0, 0x0a, 2), 0x0600);
    assert_int_equal(cfg_read(m, 0, 0x0b, 1), 0x06);
    assert_int_equal(cfg_read(m, 0, 0x0e, 1), 0x00);
    /* The test device took the first free slot. */
    assert_int_equal(((struct fixture *)*st)->dev.pci.devfn, 1 << 3);
    assert_int_equal(cfg_read(m, 1, 0, 4), 0x10411af4);
}

static void test_absent_functions(void **st)
{
    struct machine *m = &((struct fixture *)*st)->m;
    uint32_t v = 0;

    assert_int_equal(cfg_read(m, 7, 0, 4), 0xffffffff);
    assert_int_equal(cfg_read(m, 31, 0x3c, 1), 0xff);
    outl(m, 0xcf8, 0x80010000);                 /* bus 1 */
    assert_int_equal(inl(m, 0xcfc), 0xffffffff);
    outl(m, 0xcf8, 0x80000100);                 /* 00:00.1 */
    assert_int_equal(inl(m, 0xcfc), 0xffffffff);
    outl(m, 0xcf8, 0x00000000);                 /* enable bit clear */
    assert_int_equal(inl(m, 0xcfc), 0xffffffff);
    /* Writes to nothing go nowhere. */
    outl(m, 0xcf8, 0x80003800);
    outl(m, 0xcfc, 0x12345678);
    /* Non-dword accesses at 0xcf8 are not CONFIG_ADDRESS. */
    outl(m, 0xcf8, 0x80000000);
    v = 0x55;
    machine_pio(m, 0xcfb, &v, 1, true);
    assert_int_equal(inl(m, 0xcf8), 0x80000000);
}

static void test_partial_and_straddling(void **st)
{
    struct machine *m = &((struct fixture *)*st)->m;
    uint32_t v = 0;

    assert_int_equal(cfg_read(m, 0, 2, 2), 0x1237);
    assert_int_equal(cfg_read(m, 0, 1, 1), 0x80);
    /* Dword at 0xcfe: only two bytes of config space, the rest floats. */
    outl(m, 0xcf8, 0x80000000);
    machine_pio(m, 0xcfe, &v, 4, false);
    assert_int_equal(v, 0xffff1237);
    /* Read-only ID registers ignore writes. */
    cfg_write(m, 1, 0, 0, 4);
    assert_int_equal(cfg_read(m, 1, 0, 4), 0x10411af4);
    /* Offsets at the end of config space. */
    cfg_write(m, 1, 0xfc, 0xffffffff, 4);
    assert_int_equal(cfg_read(m, 1, 0xfc, 4), 0);
}

static void test_bar_sizing(void **st)
{
    struct machine *m = &((struct fixture *)*st)->m;

    assert_int_equal(cfg_read(m, 1, 0x10, 4), 0);
    cfg_write(m, 1, 0x10, 0xffffffff, 4);
    assert_int_equal(cfg_read(m, 1, 0x10, 4), 0xfffff000);
    cfg_write(m, 1, 0x14, 0xffffffff, 4);
    assert_int_equal(cfg_read(m, 1, 0x14, 4), 0xffffffe1);
    cfg_write(m, 1, 0x18, 0xffffffff, 4);
    assert_int_equal(cfg_read(m, 1, 0x18, 4), 0xffffc00c);
    cfg_write(m, 1, 0x1c, 0xffffffff, 4);
    assert_int_equal(cfg_read(m, 1, 0x1c, 4), 0xffffffff);
    cfg_write(m, 1, 0x20, 0xffffffff, 4);
    assert_int_equal(cfg_read(m, 1, 0x20, 4), 0);   /* no BAR 4 */
}

static void test_bar_mapping(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;
    uint32_t v = 0;

    cfg_write(m, 1, 0x10, 0xe0000000, 4);
    cfg_write(m, 1, 0x14, 0xc100, 4);
    cfg_write(m, 1, 0x18, 0x00000000, 4);
    cfg_write(m, 1, 0x1c, 0x100, 4);                 /* 1 TiB */
    /* Nothing decodes before COMMAND enables it. */
    assert_false(machine_mmio(m, 0xe0000010, &v, 4, false));
    cfg_write(m, 1, 0x04, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
    assert_int_equal(f->dev.maps, 3);
    assert_true(machine_mmio(m, 0xe0000010, &v, 4, false));
    assert_int_equal(v, 0xabcd0010);
    assert_true(machine_mmio(m, 0x10000000000ULL + 0x3ff8, &v, 4, false));
    assert_int_equal(f->dev.last_offset, 0x3ff8);
    v = 0;
    assert_true(machine_pio(m, 0xc104, &v, 4, false));
    assert_int_equal(v, 0xabcd0004);
    /* A port in the window no BAR decodes. */
    machine_pio(m, 0xc200, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
    /* Moving a BAR unmaps the old place. */
    cfg_write(m, 1, 0x10, 0xe0100000, 4);
    assert_false(machine_mmio(m, 0xe0000010, &v, 4, false));
    assert_true(machine_mmio(m, 0xe0100010, &v, 4, false));
    assert_int_equal(f->dev.mapped_at[0], 0xe0100000);
    /* Decoding off: all gone. */
    cfg_write(m, 1, 0x04, 0, 2);
    assert_false(machine_mmio(m, 0xe0100010, &v, 4, false));
    v = 0;
    machine_pio(m, 0xc104, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
    assert_int_equal(f->dev.unmaps, 4);
}

static void test_absurd_bar_addresses(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;
    static const struct io_ops lapic_ops = { 0 };
    uint32_t v = 0;

    assert_int_equal(machine_register_mmio(m, 0xfee00000, 0x1000, &lapic_ops, NULL, "lapic"), 0);
    cfg_write(m, 1, 0x04, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
    static const uint32_t bad_mem[] = { 0x00000000, 0x00100000 /* RAM */, 0xfee00000 };
    for (size_t i = 0; i < 3; i++) {
        cfg_write(m, 1, 0x10, bad_mem[i], 4);
        assert_false(f->dev.pci.bars[0].mapped);
    }
    assert_int_equal(*(uint8_t *)machine_gpa_to_hva(m, 0x100000, 1), 0);   /* RAM intact */
    /* I/O BARs outside the window, on legacy ports, or running off its end. */
    static const uint32_t bad_io[] = { 0x3f8, 0xcf8, 0x10000, 0x0 };
    for (size_t i = 0; i < 4; i++) {
        cfg_write(m, 1, 0x14, bad_io[i], 4);
        assert_false(f->dev.pci.bars[1].mapped);
    }
    /* A 64-bit BAR wrapping the address space. */
    cfg_write(m, 1, 0x18, 0xffffc000, 4);
    cfg_write(m, 1, 0x1c, 0xffffffff, 4);
    assert_false(f->dev.pci.bars[2].mapped);
    /* Two I/O BARs of two functions cannot overlap. */
    cfg_write(m, 1, 0x14, 0xc000, 4);
    assert_true(f->dev.pci.bars[1].mapped);
    machine_pio(m, 0xc000, &v, 1, false);
    assert_int_equal(f->dev.last_offset, 0);
}

static void test_capabilities(void **st)
{
    struct fixture *f = *st;
    struct pci_device d2;
    int a, b;

    pci_device_init(&d2, "capdev", 0x1af4, 0x1042, 0x010000, 0);
    a = pci_add_capability(&d2, 0x09, 16);
    b = pci_add_capability(&d2, 0x11, 12);
    assert_int_equal(a, 0x40);
    assert_int_equal(b, 0x50);
    assert_int_equal(pci_register_device(pci_root_bus(&f->m), &d2), 0);
    unsigned slot = (unsigned)d2.devfn >> 3;
    assert_true(cfg_read(&f->m, slot, 0x06, 2) & PCI_STATUS_CAP_LIST);
    assert_int_equal(cfg_read(&f->m, slot, 0x34, 1), 0x50);
    assert_int_equal(cfg_read(&f->m, slot, 0x50, 2), 0x4011);
    assert_int_equal(cfg_read(&f->m, slot, 0x40, 2), 0x0009);
    /* Running out of space fails cleanly. */
    while (pci_add_capability(&d2, 0x09, 40) >= 0)
        ;
    assert_int_equal(pci_add_capability(&d2, 0x09, 40), -ENOSPC);
    /* An explicit slot is that slot or an error. */
    struct pci_device d3;
    pci_device_init(&d3, "d3", 1, 2, 0, 0);
    d3.devfn = 1 << 3;
    assert_int_equal(pci_register_device(pci_root_bus(&f->m), &d3), -EBUSY);
    d3.devfn = (7 << 3) | 1;
    assert_int_equal(pci_register_device(pci_root_bus(&f->m), &d3), -EBUSY);
    d3.devfn = 0x1e << 3;
    assert_int_equal(pci_register_device(pci_root_bus(&f->m), &d3), 0);
    assert_int_equal(cfg_read(&f->m, 0x1e, 0, 4), 0x00020001);
}

static void test_intx(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;
    unsigned gsi = pci_intx_gsi(1, 1);

    assert_int_equal(cfg_read(m, 1, PCI_INTERRUPT_PIN, 1), 1);
    assert_int_equal(cfg_read(m, 1, PCI_INTERRUPT_LINE, 1), gsi);
    pci_set_irq(&f->dev.pci, 1);
    assert_int_equal(irq_level[gsi], 1);
    assert_true(cfg_read(m, 1, 0x06, 2) & PCI_STATUS_INTERRUPT);
    cfg_write(m, 1, 0x04, PCI_COMMAND_INTX_DISABLE, 2);
    assert_int_equal(irq_level[gsi], 0);
    assert_true(cfg_read(m, 1, 0x06, 2) & PCI_STATUS_INTERRUPT);
    cfg_write(m, 1, 0x04, 0, 2);
    assert_int_equal(irq_level[gsi], 1);
    pci_set_irq(&f->dev.pci, 0);
    assert_int_equal(irq_level[gsi], 0);
}

static void test_reset_and_reset_register(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;
    uint8_t b = 0x06;

    cfg_write(m, 1, 0x10, 0xe0000000, 4);
    cfg_write(m, 1, 0x04, PCI_COMMAND_MEMORY, 2);
    assert_true(f->dev.pci.bars[0].mapped);
    for (int i = 0; i < m->nr_devices; i++)
        m->devices[i].reset(m->devices[i].opaque);
    assert_false(f->dev.pci.bars[0].mapped);
    assert_int_equal(f->dev.resets, 1);
    assert_int_equal(cfg_read(m, 1, 0x10, 4), 0);
    assert_int_equal(cfg_read(m, 1, 0x04, 2), 0);
    /* 0xcf9 (byte) is the reset control register the FADT names. */
    assert_int_equal(atomic_load(&m->reset_requested), 0);
    machine_pio(m, 0xcf9, &b, 1, true);
    assert_int_equal(atomic_load(&m->reset_requested), 1);
}

/* Random configuration writes (BARs, COMMAND, everything) from a hostile
 * guest: afterwards every mapped BAR is where the machine dispatches it,
 * and none sits on RAM.  Seeded, so failures reproduce. */
static void test_random_config_storm(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;
    struct pci_device *d = &f->dev.pci;
    unsigned seed = 4242;

    for (int i = 0; i < 100000; i++) {
        unsigned r = (unsigned)rand_r(&seed);
        unsigned off = (r & 0x1) ? 0x04 + (r >> 1) % 0x24 : (r >> 1) & 0xff;
        unsigned size = 1u << ((r >> 9) % 3);
        uint32_t v = (uint32_t)rand_r(&seed);
        if (r & 0x400000)
            v = (r & 0x800000) ? 0xffffffff : (v & 0xfff0f000) | 0xe0000000;
        off &= ~(size - 1) & 0xff;
        if ((r >> 24) & 1)
            cfg_write(m, 1, off, v, size);
        else
            (void)cfg_read(m, 1, off, size);
        if ((r & 0xff) == 0x17) {
            uint32_t x;
            machine_mmio(m, 0xe0000000 + (v & 0xffffff), &x, 4, false);
            machine_pio(m, (uint16_t)(0xc000 + (v & 0x3fff)), &x, 1, false);
        }
    }
    assert_true(f->dev.maps > 10);   /* the storm did move BARs around */
    for (int n = 0; n < PCI_NUM_BARS; n++) {
        const struct pci_bar *b = &d->bars[n];
        if (!b->mapped || b->type == PCI_BAR_IO)
            continue;
        const struct io_region *reg = machine_find_mmio(m, b->addr);
        assert_non_null(reg);
        assert_int_equal(reg->base, b->addr);
        assert_int_equal(reg->len, b->size);
        assert_null(machine_gpa_to_hva(m, b->addr, 1));
    }
}

static void mmio_write32(struct machine *m, uint64_t gpa, uint32_t v)
{
    machine_mmio(m, gpa, &v, 4, true);
}

static uint32_t mmio_read32(struct machine *m, uint64_t gpa)
{
    uint32_t v = 0;

    machine_mmio(m, gpa, &v, 4, false);
    return v;
}

/* MSI-X as Linux programs it: find the capability, map the table BAR,
 * write entries, unmask, enable; vectors fire, pend while masked, and
 * come out when unmasked. */
static void test_msix(void **st)
{
    struct fixture *f = *st;
    struct machine *m = &f->m;
    struct pci_device d;
    const uint64_t tbl = 0xe1000000;
    unsigned slot, cap;

    nr_msi = 0;
    pci_device_init(&d, "msixdev", 0x1af4, 0x1043, 0x010000, 1);
    assert_int_equal(pci_msix_init(&d, 3, 1), 0);
    assert_int_equal(pci_msix_init(&d, 3, 1), -EINVAL);     /* only once */
    assert_int_equal(pci_register_device(pci_root_bus(m), &d), 0);
    slot = (unsigned)d.devfn >> 3;
    cap = cfg_read(m, slot, 0x34, 1);
    assert_int_equal(cfg_read(m, slot, cap, 1), 0x11);
    assert_int_equal(cfg_read(m, slot, cap + 2, 2), 2);       /* table size - 1 */
    assert_int_equal(cfg_read(m, slot, cap + 4, 4), 1);       /* BIR 1, offset 0 */
    assert_int_equal(cfg_read(m, slot, cap + 8, 4), 48 | 1);  /* PBA after 3 entries */
    cfg_write(m, slot, 0x14, 0xffffffff, 4);
    assert_int_equal(cfg_read(m, slot, 0x14, 4), 0xfffff000);
    cfg_write(m, slot, 0x14, (uint32_t)tbl, 4);
    cfg_write(m, slot, 0x04, PCI_COMMAND_MEMORY, 2);

    /* Masked at reset. */
    assert_int_equal(mmio_read32(m, tbl + 16 + 12), 1);
    mmio_write32(m, tbl + 16 + 0, 0xfee01000);
    mmio_write32(m, tbl + 16 + 4, 0);
    mmio_write32(m, tbl + 16 + 8, 0x4041);
    assert_int_equal(mmio_read32(m, tbl + 16 + 8), 0x4041);

    /* Not enabled yet: pending. */
    pci_msix_notify(&d, 1);
    assert_int_equal(nr_msi, 0);
    assert_int_equal(mmio_read32(m, tbl + 48), 0x2);
    cfg_write(m, slot, cap + 2, 0x8000, 2);                  /* enable */
    assert_true(pci_msix_enabled(&d));
    assert_int_equal(nr_msi, 0);                             /* vector still masked */
    mmio_write32(m, tbl + 16 + 12, 0);                       /* unmask: delivered */
    assert_int_equal(nr_msi, 1);
    assert_int_equal(msi_log[0].addr, 0xfee01000);
    assert_int_equal(msi_log[0].data, 0x4041);
    assert_int_equal(mmio_read32(m, tbl + 48), 0);
    pci_msix_notify(&d, 1);
    assert_int_equal(nr_msi, 2);

    /* Function mask holds it; clearing it releases it. */
    cfg_write(m, slot, cap + 2, 0xc000, 2);
    pci_msix_notify(&d, 1);
    assert_int_equal(nr_msi, 2);
    cfg_write(m, slot, cap + 2, 0x8000, 2);
    assert_int_equal(nr_msi, 3);

    /* Hostile: vectors out of range, PBA writes, accesses past the table,
     * table size field read-only. */
    pci_msix_notify(&d, 3);
    pci_msix_notify(&d, 1u << 31);
    mmio_write32(m, tbl + 48, 0xffffffff);
    assert_int_equal(mmio_read32(m, tbl + 48), 0);
    mmio_write32(m, tbl + 0xff8, 0xffffffff);
    assert_int_equal(mmio_read32(m, tbl + 0xff8), 0);
    cfg_write(m, slot, cap + 2, 0x87ff, 2);
    assert_int_equal(cfg_read(m, slot, cap + 2, 2), 0x8002);
    assert_int_equal(nr_msi, 3);

    /* Reset: disabled, masked, nothing pending. */
    pci_msix_notify(&d, 1);
    for (int i = 0; i < m->nr_devices; i++)
        m->devices[i].reset(m->devices[i].opaque);
    assert_false(pci_msix_enabled(&d));
    cfg_write(m, slot, 0x14, (uint32_t)tbl, 4);
    cfg_write(m, slot, 0x04, PCI_COMMAND_MEMORY, 2);
    assert_int_equal(mmio_read32(m, tbl + 16 + 12), 1);
    assert_int_equal(mmio_read32(m, tbl + 48), 0);
    pci_msix_free(&d);
    assert_null(d.msix);
    /* A too-large or invalid request fails cleanly. */
    struct pci_device e;
    pci_device_init(&e, "e", 1, 2, 0, 0);
    assert_int_equal(pci_msix_init(&e, 0, 0), -EINVAL);
    assert_int_equal(pci_msix_init(&e, 2049, 0), -EINVAL);
    assert_int_equal(pci_msix_init(&e, 4, 6), -EINVAL);
    assert_int_equal(pci_msix_init(&e, 2048, 0), 0);
    assert_int_equal(e.bars[0].size, 65536);
    pci_msix_free(&e);
}

static void test_keyval_addr(void **st)
{
    static const struct { const char *opt; int devfn; } ok[] = {
        { "x,addr=5", 5 << 3 }, { "x,addr=0x1f", 0x1f << 3 }, { "x,addr=0a.0", 10 << 3 },
        { "x", -1 },
    };
    static const char *const bad[] = { "x,addr=20", "x,addr=5.1", "x,addr=", "x,addr=zz",
                                       "x,addr=5.", "x,addr=1.0.0" };
    struct pci_device d;
    struct keyval kv;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        pci_device_init(&d, "x", 1, 2, 0, 0);
        assert_int_equal(keyval_parse(&kv, ok[i].opt, true, ok[i].opt), 0);
        assert_int_equal(pci_keyval_addr(&kv, &d), 0);
        assert_int_equal(d.devfn, ok[i].devfn);
        assert_int_equal(keyval_check_unused(&kv), 0);
        keyval_free(&kv);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pci_device_init(&d, "x", 1, 2, 0, 0);
        assert_int_equal(keyval_parse(&kv, bad[i], true, bad[i]), 0);
        assert_int_equal(pci_keyval_addr(&kv, &d), -EINVAL);
        keyval_free(&kv);
    }
}

static int group_setup(void **st)
{
    return main_loop_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_conf1_probe_and_host_bridge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absent_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_and_straddling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absurd_bar_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_and_reset_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_config_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msix, setup, teardown),
        cmocka_unit_test(test_keyval_addr),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
