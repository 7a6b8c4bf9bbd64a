/* PCI bus 0 behind an i440FX-like host bridge, configuration mechanism #1.
 *
 * The configuration space of every function lives in its struct pci_device;
 * guest writes go through the wmask/w1cmask so read-only bits stay put, and
 * after any write that touches COMMAND or a BAR the bus recomputes where
 * each BAR should be decoded and (un)maps it.  A BAR the guest places on
 * RAM, outside the 32-bit space, across the I/O window's edge or over
 * another region simply stays unmapped: the guest gets no decoding, vmon
 * stays consistent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/pc_devices.h"
#include "hw/pci.h"
#include "hw/pci_internal.h"
#include "hw/pm.h"
#include "util/keyval.h"
#include "util/log.h"

#define PCI_HOST_NAME "pci-host"

static uint16_t cfg_get16(const struct pci_device *d, unsigned off)
{
    return (uint16_t)(d->config[off] | (d->config[off + 1] << 8));
}

static uint32_t cfg_get32(const struct pci_device *d, unsigned off)
{
    return (uint32_t)cfg_get16(d, off) | ((uint32_t)cfg_get16(d, off + 2) << 16);
}

static void cfg_set16(uint8_t *c, unsigned off, uint16_t v)
{
    c[off] = (uint8_t)v;
    c[off + 1] = (uint8_t)(v >> 8);
}

static void cfg_set32(uint8_t *c, unsigned off, uint32_t v)
{
    cfg_set16(c, off, (uint16_t)v);
    cfg_set16(c, off + 2, (uint16_t)(v >> 16));
}

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor,
                     uint16_t device, uint32_t class_code, uint8_t revision)
{
    memset(d, 0, sizeof(*d));
    d->name = name;
    d->devfn = -1;
    d->next_cap = PCI_CAP_START;
    cfg_set16(d->config, PCI_VENDOR_ID, vendor);
    cfg_set16(d->config, PCI_DEVICE_ID, device);
    d->config[PCI_REVISION_ID] = revision;
    d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
    cfg_set16(d->config, PCI_CLASS_PROG + 1, (uint16_t)(class_code >> 8));
    d->config[PCI_HEADER_TYPE] = 0;
    /* COMMAND: I/O, memory, bus master, SERR, INTx disable. */
    cfg_set16(d->wmask, PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
              PCI_COMMAND_MASTER | 0x0100 | PCI_COMMAND_INTX_DISABLE);
    /* STATUS error bits are write-one-to-clear. */
    cfg_set16(d->w1cmask, PCI_STATUS, 0xf900);
    d->wmask[0x0c] = 0xff;   /* cache line size */
    d->wmask[0x0d] = 0xff;   /* latency timer */
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

int pci_device_set_bar(struct pci_device *d, int n, enum pci_bar_type type,
                       uint64_t size, bool prefetchable, const struct io_ops *ops,
                       void *opaque)
{
    unsigned off;
    uint32_t low_bits;

    if (n < 0 || n >= PCI_NUM_BARS || (type == PCI_BAR_MEM64 && n == PCI_NUM_BARS - 1))
        return -EINVAL;
    if (size == 0 || (size & (size - 1)))
        return -EINVAL;
    if (type == PCI_BAR_IO && (size < 4 || size > 256))
        return -EINVAL;
    if (type == PCI_BAR_MEM32 && (size < 16 || size > 1ULL << 31))
        return -EINVAL;
    if (type == PCI_BAR_MEM64 && size < 16)
        return -EINVAL;
    off = PCI_BASE_ADDRESS_0 + 4 * (unsigned)n;
    d->bars[n] = (struct pci_bar){
        .type = type, .size = size, .prefetchable = prefetchable,
        .ops = ops, .opaque = opaque,
    };
    if (type == PCI_BAR_IO) {
        low_bits = 0x1;
        cfg_set32(d->wmask, off, ~(uint32_t)(size - 1) & ~3u);
    } else {
        low_bits = (type == PCI_BAR_MEM64 ? 0x4 : 0) | (prefetchable ? 0x8 : 0);
        cfg_set32(d->wmask, off, ~(uint32_t)(size - 1) & ~0xfu);
        if (type == PCI_BAR_MEM64) {
            cfg_set32(d->wmask, off + 4, ~(uint32_t)((size - 1) >> 32));
            cfg_set32(d->config, off + 4, 0);
            d->bars[n + 1].type = PCI_BAR_NONE;
        }
    }
    cfg_set32(d->config, off, low_bits);
    return 0;
}

int pci_add_capability(struct pci_device *d, uint8_t cap_id, uint8_t len)
{
    unsigned off = ALIGN_UP((unsigned)d->next_cap, 4u);

    if (len < 2 || off < PCI_CAP_START || off + len > PCI_CONFIG_SPACE_SIZE)
        return -ENOSPC;
    d->config[off] = cap_id;
    d->config[off + 1] = d->config[PCI_CAPABILITY_LIST];
    d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
    d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    d->next_cap = (uint8_t)MIN(off + len, 0xffu);
    if (off + len >= PCI_CONFIG_SPACE_SIZE)
        d->next_cap = 0xff;
    return (int)off;
}

void pci_device_set_intx_pin(struct pci_device *d, uint8_t pin)
{
    d->config[PCI_INTERRUPT_PIN] = pin <= 4 ? pin : 0;
}

unsigned pci_intx_gsi(unsigned slot, unsigned pin)
{
    return PCI_INTX_GSI_BASE + ((slot + pin - 1) & 3);
}

uint64_t pci_mem_window_base(const struct machine *m)
{
    return MIN(ALIGN_UP(m->lowmem_size, 256 * MiB), 0xe0000000ULL);
}

static unsigned dev_slot(const struct pci_device *d)
{
    return (unsigned)d->devfn >> 3;
}

/* The line the device drives, counting INTx disable; devices sharing a
 * GSI are ORed. */
static void pci_update_intx(struct pci_device *d)
{
    struct pci_bus *bus = d->bus;
    unsigned pin = d->config[PCI_INTERRUPT_PIN];
    bool disabled = cfg_get16(d, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
    bool want = d->irq_level && !disabled;
    unsigned gsi, idx;

    if (d->irq_level)
        d->config[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
    else
        d->config[PCI_STATUS] &= ~PCI_STATUS_INTERRUPT;
    if (!bus || pin < 1 || pin > 4 || want == d->intx_asserted)
        return;
    gsi = pci_intx_gsi(dev_slot(d), pin);
    idx = gsi - PCI_INTX_GSI_BASE;
    d->intx_asserted = want;
    if (want) {
        if (bus->intx_count[idx]++ == 0)
            machine_set_irq(bus->m, gsi, 1);
    } else {
        if (--bus->intx_count[idx] == 0)
            machine_set_irq(bus->m, gsi, 0);
    }
}

void pci_set_irq(struct pci_device *d, int level)
{
    d->irq_level = level != 0;
    pci_update_intx(d);
}

/* ---- BAR mapping ---- */

static bool range_overlaps_ram(const struct machine *m, uint64_t addr, uint64_t size)
{
    for (int i = 0; i < m->nr_ram_blocks; i++) {
        const struct ram_block *rb = &m->ram_blocks[i];
        if (addr < rb->gpa + rb->size && rb->gpa < addr + size)
            return true;
    }
    return false;
}

static bool range_overlaps_mmio(const struct machine *m, uint64_t addr, uint64_t size)
{
    for (int i = 0; i < m->nr_mmio_regions; i++) {
        const struct io_region *r = &m->mmio_regions[i];
        if (addr < r->base + r->len && r->base < addr + size)
            return true;
    }
    return false;
}

/* Where BAR n should decode now, or false if it should not. */
static bool bar_target(const struct pci_device *d, int n, uint64_t *addr)
{
    const struct pci_bar *b = &d->bars[n];
    uint16_t cmd = cfg_get16(d, PCI_COMMAND);
    unsigned off = PCI_BASE_ADDRESS_0 + 4 * (unsigned)n;
    uint64_t a;

    switch (b->type) {
    case PCI_BAR_IO:
        if (!(cmd & PCI_COMMAND_IO))
            return false;
        a = cfg_get32(d, off) & ~3u;
        if (a < PCI_IO_WINDOW_BASE || a + b->size > PCI_IO_WINDOW_BASE + PCI_IO_WINDOW_SIZE)
            return false;
        break;
    case PCI_BAR_MEM32:
    case PCI_BAR_MEM64:
        if (!(cmd & PCI_COMMAND_MEMORY))
            return false;
        a = cfg_get32(d, off) & ~0xfu;
        if (b->type == PCI_BAR_MEM64)
            a |= (uint64_t)cfg_get32(d, off + 4) << 32;
        /* 0 means unassigned; the top of the space is what sizing leaves
         * behind; neither decodes. */
        if (a == 0 || a + b->size < a || a + b->size > (1ULL << 46))
            return false;
        if (b->type == PCI_BAR_MEM32 && a + b->size > 1ULL << 32)
            return false;
        break;
    default:
        return false;
    }
    *addr = a;
    return true;
}

static void bar_unmap(struct pci_device *d, int n)
{
    struct pci_bar *b = &d->bars[n];

    if (!b->mapped)
        return;
    if (b->type != PCI_BAR_IO)
        machine_unregister_mmio(d->bus->m, b->addr);
    b->mapped = false;
    if (d->bar_map)
        d->bar_map(d, n, b->addr, false);
}

static bool io_bar_conflicts(const struct pci_bus *bus, const struct pci_device *self,
                             int self_n, uint64_t addr, uint64_t size)
{
    for (int s = 0; s < PCI_MAX_SLOTS; s++) {
        const struct pci_device *d = bus->slots[s];
        if (!d)
            continue;
        for (int n = 0; n < PCI_NUM_BARS; n++) {
            const struct pci_bar *b = &d->bars[n];
            if ((d == self && n == self_n) || !b->mapped || b->type != PCI_BAR_IO)
                continue;
            if (addr < b->addr + b->size && b->addr < addr + size)
                return true;
        }
    }
    return false;
}

static void bar_update(struct pci_device *d, int n)
{
    struct pci_bar *b = &d->bars[n];
    struct machine *m = d->bus->m;
    uint64_t addr;
    bool want = bar_target(d, n, &addr);

    if (b->mapped && want && b->addr == addr)
        return;
    bar_unmap(d, n);
    if (!want)
        return;
    if (b->type == PCI_BAR_IO) {
        if (io_bar_conflicts(d->bus, d, n, addr, b->size)) {
            LOG(LOG_GUEST_ERRORS, "pci %s: I/O BAR%d at 0x%llx overlaps another BAR\n",
                d->name, n, (unsigned long long)addr);
            return;
        }
    } else {
        if (range_overlaps_ram(m, addr, b->size) || range_overlaps_mmio(m, addr, b->size) ||
            machine_register_mmio(m, addr, b->size, b->ops, b->opaque, d->name) < 0) {
            LOG(LOG_GUEST_ERRORS, "pci %s: BAR%d at 0x%llx+0x%llx overlaps RAM or a device; "
                "not decoded\n", d->name, n, (unsigned long long)addr,
                (unsigned long long)b->size);
            return;
        }
    }
    b->addr = addr;
    b->mapped = true;
    if (d->bar_map)
        d->bar_map(d, n, addr, true);
}

static void pci_update_mappings(struct pci_device *d)
{
    for (int n = 0; n < PCI_NUM_BARS; n++)
        if (d->bars[n].type != PCI_BAR_NONE)
            bar_update(d, n);
}

/* ---- configuration space accesses ---- */

static uint32_t pci_config_read(struct pci_device *d, unsigned off, unsigned size)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < size && off + i < PCI_CONFIG_SPACE_SIZE; i++)
        v |= (uint32_t)d->config[off + i] << (8 * i);
    return v;
}

static void pci_config_write(struct pci_device *d, unsigned off, uint32_t val, unsigned size)
{
    bool remap = false;

    for (unsigned i = 0; i < size && off + i < PCI_CONFIG_SPACE_SIZE; i++) {
        unsigned o = off + i;
        uint8_t b = (uint8_t)(val >> (8 * i));
        uint8_t wm = d->wmask[o];

        d->config[o] = (uint8_t)((d->config[o] & ~wm) | (b & wm));
        d->config[o] &= (uint8_t)~(b & d->w1cmask[o]);
        if ((o >= PCI_COMMAND && o < PCI_COMMAND + 2) ||
            (o >= PCI_BASE_ADDRESS_0 && o < PCI_BASE_ADDRESS_0 + 4 * PCI_NUM_BARS))
            remap = true;
    }
    if (remap && d->bus) {
        pci_update_mappings(d);
        pci_update_intx(d);
    }
    pci_msix_config_written(d);
    if (d->config_write)
        d->config_write(d, off, val, size);
}

/* The function config_address selects, or NULL (absent: all-ones). */
static struct pci_device *pci_addressed(struct pci_bus *bus, unsigned *reg)
{
    uint32_t a = bus->config_address;
    unsigned busno = (a >> 16) & 0xff, devfn = (a >> 8) & 0xff;

    if (!(a & 0x80000000u) || busno != 0 || (devfn & 7) != 0)
        return NULL;
    *reg = a & 0xfc;
    return bus->slots[devfn >> 3];
}

static uint64_t pci_data_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_bus *bus = opaque;
    struct pci_device *d;
    unsigned reg;

    if (offset >= 4)
        return ~0ULL;
    d = pci_addressed(bus, &reg);
    if (!d)
        return ~0ULL;
    /* An access running past 0xcff is clipped to the dword; the rest of
     * the bytes float high. */
    size = MIN(size, 4u - (unsigned)offset);
    uint64_t v = pci_config_read(d, reg + (unsigned)offset, size);
    if (size < 4)
        v |= ~0ULL << (8 * size);
    return v;
}

static void pci_data_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct pci_bus *bus = opaque;
    struct pci_device *d;
    unsigned reg;

    if (offset >= 4)
        return;
    d = pci_addressed(bus, &reg);
    if (!d)
        return;
    size = MIN(size, 4u - (unsigned)offset);
    pci_config_write(d, reg + (unsigned)offset, (uint32_t)value, size);
}

static const struct io_ops pci_data_ops = {
    .read = pci_data_read,
    .write = pci_data_write,
};

/* 0xcf8: a dword access is CONFIG_ADDRESS; a byte at 0xcf9 is the PIIX3
 * reset control register the FADT points at; other accesses go nowhere
 * (on a PC they would reach the ISA bus). */
static uint64_t pci_addr_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_bus *bus = opaque;

    if (offset == 0 && size == 4)
        return bus->config_address;
    if (offset == 1 && size == 1)
        return bus->reset_control;
    return ~0ULL;
}

static void pci_addr_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct pci_bus *bus = opaque;

    if (offset == 0 && size == 4) {
        bus->config_address = (uint32_t)value & 0x80fffffcu;
        return;
    }
    if (offset == 1 && size == 1) {
        /* Bit 2 (RST_CPU) starts the reset; bits 1 and 3 select its kind. */
        bus->reset_control = (uint8_t)(value & 0x0a);
        if (value & 0x04)
            machine_request_reset(bus->m);
    }
}

static const struct io_ops pci_addr_ops = {
    .read = pci_addr_read,
    .write = pci_addr_write,
};

/* The I/O window: dispatched here to whichever I/O BAR decodes the port. */
static struct pci_bar *io_bar_at(struct pci_bus *bus, uint64_t port)
{
    for (int s = 0; s < PCI_MAX_SLOTS; s++) {
        struct pci_device *d = bus->slots[s];
        if (!d)
            continue;
        for (int n = 0; n < PCI_NUM_BARS; n++) {
            struct pci_bar *b = &d->bars[n];
            if (b->mapped && b->type == PCI_BAR_IO && port >= b->addr &&
                port - b->addr < b->size)
                return b;
        }
    }
    return NULL;
}

static uint64_t pci_io_read(void *opaque, uint64_t offset, unsigned size)
{
    uint64_t port = PCI_IO_WINDOW_BASE + offset;
    struct pci_bar *b = io_bar_at(opaque, port);

    if (!b || !b->ops || !b->ops->read)
        return ~0ULL;
    return b->ops->read(b->opaque, port - b->addr, size);
}

static void pci_io_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    uint64_t port = PCI_IO_WINDOW_BASE + offset;
    struct pci_bar *b = io_bar_at(opaque, port);

    if (b && b->ops && b->ops->write)
        b->ops->write(b->opaque, port - b->addr, value, size);
}

static const struct io_ops pci_io_ops = {
    .read = pci_io_read,
    .write = pci_io_write,
};

/* ---- snapshot state ---- */

int pci_config_check(const struct pci_device *d, const uint8_t *config, unsigned *bad_off)
{
    for (unsigned o = 0; o < PCI_CONFIG_SPACE_SIZE; o++) {
        uint8_t ro = (uint8_t)~(d->wmask[o] | d->w1cmask[o]);

        /* The interrupt status bit follows the line (restored separately). */
        if (o == PCI_STATUS)
            ro &= (uint8_t)~PCI_STATUS_INTERRUPT;
        if ((config[o] ^ d->config_init[o]) & ro) {
            *bad_off = o;
            return -EINVAL;
        }
    }
    return 0;
}

void pci_config_restore(struct pci_device *d, const uint8_t *config, bool irq_level)
{
    memcpy(d->config, config, PCI_CONFIG_SPACE_SIZE);
    if (d->bus)
        pci_update_mappings(d);
    pci_set_irq(d, irq_level);
}

/* ---- bus ---- */

int pci_keyval_addr(struct keyval *kv, struct pci_device *d)
{
    const char *v = keyval_get(kv, "addr");
    unsigned long slot, fn = 0;
    char *end;

    if (!v)
        return 0;
    /* QEMU's "SLOT[.FN]" in hex, with or without 0x. */
    slot = strtoul(v, &end, 16);
    if (end != v && *end == '.') {
        const char *f = end + 1;
        fn = strtoul(f, &end, 16);
        if (end == f)
            end = (char *)v;   /* force the error below */
    }
    if (end == v || *end || slot >= PCI_MAX_SLOTS || fn != 0) {
        error_report("%s: property 'addr': '%s' is not a slot on bus 0 (00-1f, function 0)",
                     kv->context, v);
        return -EINVAL;
    }
    d->devfn = (int)(slot << 3);
    return 0;
}

int pci_register_device(struct pci_bus *bus, struct pci_device *d)
{
    int slot = -1;

    if (d->devfn >= 0) {
        /* An explicit address (addr=) is that slot or an error. */
        if ((d->devfn & 7) || d->devfn >= 256 || bus->slots[d->devfn >> 3]) {
            error_report("pci: %s: slot %d function %d is not available", d->name,
                         d->devfn >> 3, d->devfn & 7);
            return -EBUSY;
        }
        slot = d->devfn >> 3;
    }
    for (int s = 0; slot < 0 && s < PCI_MAX_SLOTS; s++)
        if (!bus->slots[s])
            slot = s;
    if (slot < 0) {
        error_report("pci: no free slot on bus 0 for %s", d->name);
        return -ENOSPC;
    }
    d->devfn = slot << 3;
    d->bus = bus;
    unsigned pin = d->config[PCI_INTERRUPT_PIN];
    if (pin >= 1 && pin <= 4)
        d->config[PCI_INTERRUPT_LINE] = (uint8_t)pci_intx_gsi((unsigned)slot, pin);
    memcpy(d->config_init, d->config, sizeof(d->config));
    bus->slots[slot] = d;
    return 0;
}

static void pci_device_reset(struct pci_device *d)
{
    for (int n = 0; n < PCI_NUM_BARS; n++)
        bar_unmap(d, n);
    d->irq_level = 0;
    pci_update_intx(d);
    memcpy(d->config, d->config_init, sizeof(d->config));
    pci_msix_reset(d);
    if (d->reset)
        d->reset(d);
}

static void pci_bus_reset(void *opaque)
{
    struct pci_bus *bus = opaque;

    bus->config_address = 0;
    bus->reset_control = 0;
    for (int s = 0; s < PCI_MAX_SLOTS; s++)
        if (bus->slots[s])
            pci_device_reset(bus->slots[s]);
}

struct pci_bus *pci_root_bus(struct machine *m)
{
    for (int i = 0; i < m->nr_devices; i++)
        if (!strcmp(m->devices[i].name, PCI_HOST_NAME))
            return m->devices[i].opaque;
    return NULL;
}

int pci_host_create(struct machine *m)
{
    struct pci_bus *bus = calloc(1, sizeof(*bus));
    int ret;

    if (!bus)
        return -ENOMEM;
    bus->m = m;
    pci_device_init(&bus->host, "i440fx", 0x8086, 0x1237, 0x060000, 0x02);
    bus->host.devfn = 0;
    pci_register_device(bus, &bus->host);

    ret = machine_register_pio(m, PCI_CONFIG_ADDRESS, 4, &pci_addr_ops, bus, "pci-conf-addr");
    if (ret < 0) {
        free(bus);
        return ret;
    }
    /* Regions now point at bus: it lives as long as the machine. */
    ret = machine_register_pio(m, PCI_CONFIG_DATA, 4, &pci_data_ops, bus, "pci-conf-data");
    if (ret < 0)
        return ret;
    ret = machine_register_pio(m, PCI_IO_WINDOW_BASE, PCI_IO_WINDOW_SIZE, &pci_io_ops, bus,
                               "pci-io");
    if (ret < 0)
        return ret;
    return machine_add_device(m, PCI_HOST_NAME, bus, pci_bus_reset, free);
}

/* ---- snapshot state (migration/vmstate.h) ---- */

#include "migration/migration.h"

/* The bus registers and the host bridge's configuration space.  Functions
 * in other slots are devices of their own and carry their own sections. */
static const struct vmstate_field pci_host_fields[] = {
    VMS_U32_FIELD(struct pci_bus, config_address),
    VMS_U8_FIELD(struct pci_bus, reset_control),
    VMS_U8_FIELD(struct pci_bus, host.config),
    VMS_END,
};

const struct vmstate_desc pci_host_vmstate = {
    .name = PCI_HOST_NAME, .version = 1, .fields = pci_host_fields,
};
