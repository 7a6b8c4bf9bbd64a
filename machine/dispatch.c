/* Port and MMIO dispatch.  Ports index a 64 Ki-entry table straight to their
 * region; MMIO regions stay sorted by base and are found by binary search.
 * Neither path scans linearly. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "machine/machine.h"
#include "util/log.h"
#include "util/trace.h"

static uint64_t load_le(const void *data, unsigned size)
{
    uint64_t v = 0;

    memcpy(&v, data, size);
    return v;
}

static void store_le(void *data, uint64_t v, unsigned size)
{
    memcpy(data, &v, size);
}

int machine_register_pio(struct machine *m, uint16_t base, uint32_t len,
                         const struct io_ops *ops, void *opaque, const char *name)
{
    struct io_region *r;

    if (len == 0 || base + len > 65536)
        return -EINVAL;
    for (uint32_t p = base; p < base + len; p++) {
        if (m->pio_map[p]) {
            error_report("%s: port 0x%x already belongs to %s", name, p,
                         m->pio_regions[m->pio_map[p] - 1].name);
            return -EEXIST;
        }
    }
    if (m->nr_pio_regions >= 65535)
        return -ENOSPC;
    r = realloc(m->pio_regions, (m->nr_pio_regions + 1) * sizeof(*r));
    if (!r)
        return -ENOMEM;
    m->pio_regions = r;
    m->pio_regions[m->nr_pio_regions++] = (struct io_region){
        .base = base, .len = len, .ops = ops, .opaque = opaque, .name = name,
    };
    for (uint32_t p = base; p < base + len; p++)
        m->pio_map[p] = (uint16_t)m->nr_pio_regions;
    return 0;
}

/* Index of the first region whose base is greater than gpa. */
static int mmio_upper_bound(const struct machine *m, gpa_t gpa)
{
    int lo = 0, hi = m->nr_mmio_regions;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (m->mmio_regions[mid].base <= gpa)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int machine_register_mmio(struct machine *m, gpa_t base, uint64_t len,
                          const struct io_ops *ops, void *opaque, const char *name)
{
    struct io_region *r;
    int pos;

    if (len == 0 || base + len < base)
        return -EINVAL;
    pos = mmio_upper_bound(m, base);
    if (pos > 0) {
        const struct io_region *prev = &m->mmio_regions[pos - 1];
        if (prev->base + prev->len > base) {
            error_report("%s: MMIO 0x%llx overlaps %s", name,
                         (unsigned long long)base, prev->name);
            return -EEXIST;
        }
    }
    if (pos < m->nr_mmio_regions && m->mmio_regions[pos].base < base + len) {
        error_report("%s: MMIO 0x%llx overlaps %s", name,
                     (unsigned long long)base, m->mmio_regions[pos].name);
        return -EEXIST;
    }
    r = realloc(m->mmio_regions, (m->nr_mmio_regions + 1) * sizeof(*r));
    if (!r)
        return -ENOMEM;
    m->mmio_regions = r;
    memmove(&r[pos + 1], &r[pos], (m->nr_mmio_regions - pos) * sizeof(*r));
    r[pos] = (struct io_region){
        .base = base, .len = len, .ops = ops, .opaque = opaque, .name = name,
    };
    m->nr_mmio_regions++;
    return 0;
}

int machine_unregister_mmio(struct machine *m, gpa_t base)
{
    int pos = mmio_upper_bound(m, base) - 1;

    if (pos < 0 || m->mmio_regions[pos].base != base)
        return -ENOENT;
    memmove(&m->mmio_regions[pos], &m->mmio_regions[pos + 1],
            (m->nr_mmio_regions - pos - 1) * sizeof(*m->mmio_regions));
    m->nr_mmio_regions--;
    return 0;
}

const struct io_region *machine_find_mmio(struct machine *m, gpa_t gpa)
{
    int pos = mmio_upper_bound(m, gpa) - 1;

    if (pos < 0)
        return NULL;
    if (gpa - m->mmio_regions[pos].base >= m->mmio_regions[pos].len)
        return NULL;
    return &m->mmio_regions[pos];
}

static void region_access(const struct io_region *r, uint64_t offset, void *data,
                          unsigned size, bool is_write)
{
    if (is_write) {
        if (r->ops->write)
            r->ops->write(r->opaque, offset, load_le(data, size), size);
    } else {
        store_le(data, r->ops->read ? r->ops->read(r->opaque, offset, size) : ~0ULL, size);
    }
}

bool machine_pio(struct machine *m, uint16_t port, void *data, unsigned size, bool is_write)
{
    uint16_t idx = m->pio_map[port];

    if (size != 1 && size != 2 && size != 4)
        return false;
    if (likely(idx)) {
        const struct io_region *r = &m->pio_regions[idx - 1];
        /* An access straddling the region's end is the device's to clip: it
         * sees its own offset and the access size. */
        region_access(r, port - r->base, data, size, is_write);
        TRACE(pio, "op=%s port=0x%x size=%u val=0x%llx dev=%s", is_write ? "write" : "read",
              port, size, (unsigned long long)load_le(data, size), r->name);
        LOG(LOG_IOPORT, "pio %s port 0x%04x size %u value 0x%llx (%s)\n",
            is_write ? "write" : "read", port, size,
            (unsigned long long)load_le(data, size), r->name);
        return true;
    }
    TRACE(pio_unassigned, "op=%s port=0x%x size=%u", is_write ? "write" : "read", port, size);
    LOG(LOG_UNIMP, "unassigned port %s 0x%04x size %u\n", is_write ? "write" : "read",
        port, size);
    if (!is_write)
        store_le(data, ~0ULL, size);
    return false;
}

bool machine_mmio(struct machine *m, gpa_t gpa, void *data, unsigned size, bool is_write)
{
    const struct io_region *r;

    if (size == 0 || size > 8)
        return false;
    r = machine_find_mmio(m, gpa);
    if (likely(r)) {
        region_access(r, gpa - r->base, data, size, is_write);
        TRACE(mmio, "op=%s addr=0x%llx size=%u val=0x%llx dev=%s", is_write ? "write" : "read",
              (unsigned long long)gpa, size, (unsigned long long)load_le(data, size), r->name);
        LOG(LOG_MMIO, "mmio %s 0x%llx size %u value 0x%llx (%s)\n",
            is_write ? "write" : "read", (unsigned long long)gpa, size,
            (unsigned long long)load_le(data, size), r->name);
        return true;
    }
    TRACE(mmio_unassigned, "op=%s addr=0x%llx size=%u", is_write ? "write" : "read",
          (unsigned long long)gpa, size);
    LOG(LOG_UNIMP, "unassigned MMIO %s 0x%llx size %u\n", is_write ? "write" : "read",
        (unsigned long long)gpa, size);
    if (!is_write)
        store_le(data, ~0ULL, size);
    return false;
}
