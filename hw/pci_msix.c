/* MSI-X for devices on the vmon PCI bus: capability, vector table and
 * pending-bit array in a dedicated memory BAR, delivery through one MSI
 * route per vector (machine/eventfd_io.h: an irqfd under kvm, else
 * machine_send_msi()).  The guest can write anything into the table; a
 * message goes out only with MSI-X enabled and neither the function nor
 * the vector masked, as the spec says.  Masking stays here: a masked
 * vector sets its pending bit and never writes the route's eventfd, so the
 * accelerator's route need not follow the mask; it follows the message,
 * updated when the guest rewrites an unmasked entry or unmasks one (and
 * checked again at every send). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/pci.h"
#include "hw/pci_internal.h"
#include "machine/eventfd_io.h"
#include "util/log.h"

#define PCI_CAP_ID_MSIX 0x11
#define MSIX_CAP_LEN 12
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_ENTRY_SIZE 16
#define MSIX_ENTRY_CTRL 12
#define MSIX_MAX_VECTORS 2048

struct pci_msix {
    struct pci_device *d;
    unsigned nr;
    unsigned cap;
    uint32_t pba_offset;
    uint8_t *table;
    uint64_t *pba;
    struct msi_route *routes;   /* one per vector */
};

static uint16_t msix_ctrl(const struct pci_msix *x)
{
    const uint8_t *c = x->d->config + x->cap + 2;

    return (uint16_t)(c[0] | c[1] << 8);
}

static bool vector_masked(const struct pci_msix *x, unsigned v)
{
    uint16_t ctrl = msix_ctrl(x);

    if (!(ctrl & MSIX_CTRL_ENABLE) || (ctrl & MSIX_CTRL_MASKALL))
        return true;
    return x->table[v * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL] & 1;
}

static void msix_message(const struct pci_msix *x, unsigned v, uint64_t *addr, uint32_t *data)
{
    const uint8_t *e = x->table + v * MSIX_ENTRY_SIZE;

    *addr = 0;
    *data = 0;
    for (int i = 0; i < 8; i++)
        *addr |= (uint64_t)e[i] << (8 * i);
    for (int i = 0; i < 4; i++)
        *data |= (uint32_t)e[8 + i] << (8 * i);
}

static void msix_send(struct pci_msix *x, unsigned v)
{
    uint64_t addr;
    uint32_t data;

    msix_message(x, v, &addr, &data);
    if (x->d->bus)
        msi_route_send(x->d->bus->m, &x->routes[v], addr, data);
}

/* The guest rewrote entry v or unmasked it: keep its route current. */
static void msix_route_sync(struct pci_msix *x, unsigned v)
{
    uint64_t addr;
    uint32_t data;

    if (!x->d->bus || vector_masked(x, v))
        return;
    msix_message(x, v, &addr, &data);
    msi_route_update(x->d->bus->m, &x->routes[v], addr, data);
}

/* Deliver whatever became deliverable (after an unmask or enable). */
static void msix_flush_pending(struct pci_msix *x)
{
    for (unsigned v = 0; v < x->nr; v++) {
        uint64_t bit = 1ULL << (v % 64);
        if ((x->pba[v / 64] & bit) && !vector_masked(x, v)) {
            x->pba[v / 64] &= ~bit;
            msix_send(x, v);
        }
    }
}

void pci_msix_notify(struct pci_device *d, unsigned v)
{
    struct pci_msix *x = d->msix;

    if (!x || v >= x->nr)
        return;
    if (vector_masked(x, v)) {
        x->pba[v / 64] |= 1ULL << (v % 64);
        return;
    }
    msix_send(x, v);
}

bool pci_msix_enabled(const struct pci_device *d)
{
    return d->msix && (msix_ctrl(d->msix) & MSIX_CTRL_ENABLE);
}

static uint64_t msix_bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_msix *x = opaque;
    uint64_t v = 0;

    for (unsigned i = 0; i < size; i++) {
        uint64_t o = offset + i;
        uint8_t b = 0;
        if (o < (uint64_t)x->nr * MSIX_ENTRY_SIZE)
            b = x->table[o];
        else if (o >= x->pba_offset && o - x->pba_offset < 8 * ((x->nr + 63) / 64))
            b = (uint8_t)(x->pba[(o - x->pba_offset) / 8] >> (8 * ((o - x->pba_offset) % 8)));
        v |= (uint64_t)b << (8 * i);
    }
    return v;
}

static void msix_bar_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct pci_msix *x = opaque;
    bool ctrl_written = false;

    /* Only the table is writable; the PBA and the gap ignore writes. */
    for (unsigned i = 0; i < size; i++) {
        uint64_t o = offset + i;
        if (o >= (uint64_t)x->nr * MSIX_ENTRY_SIZE)
            continue;
        if (o % MSIX_ENTRY_SIZE >= MSIX_ENTRY_CTRL) {
            /* Vector control: only the mask bit exists. */
            if (o % MSIX_ENTRY_SIZE == MSIX_ENTRY_CTRL) {
                x->table[o] = (uint8_t)(value >> (8 * i)) & 1;
                ctrl_written = true;
            }
            continue;
        }
        x->table[o] = (uint8_t)(value >> (8 * i));
    }
    /* An access touches at most two entries (8 bytes at most). */
    if (offset < (uint64_t)x->nr * MSIX_ENTRY_SIZE) {
        unsigned first = (unsigned)(offset / MSIX_ENTRY_SIZE);
        unsigned last = (unsigned)MIN((offset + size - 1) / MSIX_ENTRY_SIZE, x->nr - 1);

        for (unsigned v = first; v <= last; v++)
            msix_route_sync(x, v);
    }
    if (ctrl_written)
        msix_flush_pending(x);
}

static const struct io_ops msix_bar_ops = {
    .read = msix_bar_read,
    .write = msix_bar_write,
};

static void msix_reset_table(struct pci_msix *x)
{
    memset(x->table, 0, (size_t)x->nr * MSIX_ENTRY_SIZE);
    for (unsigned v = 0; v < x->nr; v++)
        x->table[v * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL] = 1;   /* masked */
    memset(x->pba, 0, 8 * ((x->nr + 63) / 64));
}

int pci_msix_init(struct pci_device *d, unsigned nr_vectors, int bar)
{
    struct pci_msix *x;
    uint64_t bar_size = 4096;
    int cap, ret;

    if (d->msix || nr_vectors == 0 || nr_vectors > MSIX_MAX_VECTORS || bar < 0 ||
        bar >= PCI_NUM_BARS)
        return -EINVAL;
    x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->d = d;
    x->nr = nr_vectors;
    x->pba_offset = ALIGN_UP(nr_vectors * MSIX_ENTRY_SIZE, 8u);
    x->table = malloc((size_t)nr_vectors * MSIX_ENTRY_SIZE);
    x->pba = malloc(8 * ((nr_vectors + 63) / 64));
    x->routes = malloc(nr_vectors * sizeof(*x->routes));
    if (!x->table || !x->pba || !x->routes) {
        ret = -ENOMEM;
        goto err;
    }
    for (unsigned v = 0; v < nr_vectors; v++)
        msi_route_init(&x->routes[v]);
    while (bar_size < x->pba_offset + 8 * ((nr_vectors + 63) / 64))
        bar_size *= 2;
    ret = pci_device_set_bar(d, bar, PCI_BAR_MEM32, bar_size, false, &msix_bar_ops, x);
    if (ret < 0)
        goto err;
    cap = pci_add_capability(d, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
    if (cap < 0) {
        ret = cap;
        goto err;
    }
    x->cap = (unsigned)cap;
    d->config[cap + 2] = (uint8_t)(nr_vectors - 1);
    d->config[cap + 3] = (uint8_t)((nr_vectors - 1) >> 8);
    d->wmask[cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
    /* Table at offset 0 of the BAR, PBA after it (BIR in bits 2:0). */
    for (int i = 0; i < 4; i++) {
        d->config[cap + 4 + i] = (uint8_t)((uint32_t)bar >> (8 * i));
        d->config[cap + 8 + i] = (uint8_t)((x->pba_offset | (uint32_t)bar) >> (8 * i));
    }
    msix_reset_table(x);
    d->msix = x;
    return 0;
err:
    free(x->table);
    free(x->pba);
    free(x->routes);
    free(x);
    return ret;
}

void pci_msix_free(struct pci_device *d)
{
    if (!d->msix)
        return;
    for (unsigned v = 0; v < d->msix->nr; v++)
        if (d->bus)
            msi_route_release(d->bus->m, &d->msix->routes[v]);
    free(d->msix->routes);
    free(d->msix->table);
    free(d->msix->pba);
    free(d->msix);
    d->msix = NULL;
}

void pci_msix_config_written(struct pci_device *d)
{
    if (d->msix)
        msix_flush_pending(d->msix);
}

void pci_msix_reset(struct pci_device *d)
{
    if (d->msix)
        msix_reset_table(d->msix);
}

unsigned pci_msix_nr_vectors(const struct pci_device *d)
{
    return d->msix ? d->msix->nr : 0;
}

void pci_msix_get(const struct pci_device *d, uint8_t *table, uint64_t *pba, unsigned nr)
{
    unsigned have = MIN(pci_msix_nr_vectors(d), nr);

    memset(table, 0, (size_t)nr * MSIX_ENTRY_SIZE);
    memset(pba, 0, 8 * ((nr + 63) / 64));
    if (!have)
        return;
    memcpy(table, d->msix->table, (size_t)have * MSIX_ENTRY_SIZE);
    for (unsigned v = 0; v < have; v++)
        if (d->msix->pba[v / 64] & (1ULL << (v % 64)))
            pba[v / 64] |= 1ULL << (v % 64);
}

int pci_msix_check(const struct pci_device *d, const uint8_t *table, const uint64_t *pba,
                   unsigned nr, unsigned *bad_vector)
{
    unsigned have = pci_msix_nr_vectors(d);

    for (unsigned v = 0; v < nr; v++) {
        const uint8_t *e = table + (size_t)v * MSIX_ENTRY_SIZE;
        bool pending = (pba[v / 64] >> (v % 64)) & 1;
        bool bad = false;

        if (v >= have) {
            for (unsigned i = 0; i < MSIX_ENTRY_SIZE; i++)
                bad |= e[i] != 0;
            bad |= pending;
        } else {
            /* Vector control: only the mask bit exists. */
            bad = (e[MSIX_ENTRY_CTRL] & ~1u) || e[MSIX_ENTRY_CTRL + 1] ||
                  e[MSIX_ENTRY_CTRL + 2] || e[MSIX_ENTRY_CTRL + 3];
        }
        if (bad) {
            *bad_vector = v;
            return -EINVAL;
        }
    }
    /* Words past nr's bits are not ours to look at; bits in the last word
     * past nr count as vectors >= nr. */
    for (unsigned v = nr; v % 64; v++)
        if ((pba[v / 64] >> (v % 64)) & 1) {
            *bad_vector = v;
            return -EINVAL;
        }
    return 0;
}

void pci_msix_restore(struct pci_device *d, const uint8_t *table, const uint64_t *pba,
                      unsigned nr)
{
    struct pci_msix *x = d->msix;
    unsigned have = MIN(pci_msix_nr_vectors(d), nr);

    if (!x)
        return;
    msix_reset_table(x);
    memcpy(x->table, table, (size_t)have * MSIX_ENTRY_SIZE);
    for (unsigned v = 0; v < have; v++)
        if ((pba[v / 64] >> (v % 64)) & 1)
            x->pba[v / 64] |= 1ULL << (v % 64);
}
