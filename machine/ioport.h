/* One dispatch path for port I/O and MMIO.
 *
 * A device registers a region with an io_ops table; the same signature serves
 * both buses, so device code does not care which bus reaches it.  Offsets
 * passed to the callbacks are relative to the region's base.  Callbacks run
 * with the big machine lock held (machine_lock()). */
#ifndef VMON_MACHINE_IOPORT_H
#define VMON_MACHINE_IOPORT_H

#include "util/types.h"

struct io_ops {
    uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
    void (*write)(void *opaque, uint64_t offset, uint64_t value, unsigned size);
};

struct io_region {
    uint64_t base;
    uint64_t len;
    const struct io_ops *ops;
    void *opaque;
    const char *name;
};

#endif
