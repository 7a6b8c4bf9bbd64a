/* QEMU's isa-debug-exit: a write of v to the port ends vmon with exit
 * status (v << 1) | 1, so a test kernel can report pass/fail and never be
 * mistaken for a clean poweroff (status 0). */
#include <errno.h>
#include <stdlib.h>

#include "hw/pc_devices.h"
#include "util/keyval.h"
#include "util/log.h"

struct debug_exit {
    struct machine *m;
};

static uint64_t debug_exit_read(void *opaque, uint64_t offset, unsigned size)
{
    return ~0ULL;
}

static void debug_exit_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct debug_exit *d = opaque;

    /* The process exit status keeps only the low 8 bits of this, as
     * with QEMU: see docs/devices.md. */
    machine_request_shutdown(d->m, SHUTDOWN_GUEST_POWEROFF, (int)(((uint32_t)value << 1) | 1));
}

static const struct io_ops debug_exit_ops = {
    .read = debug_exit_read,
    .write = debug_exit_write,
};

int debug_exit_create(struct machine *m, struct keyval *opts)
{
    uint64_t iobase, iosize;
    struct debug_exit *d;
    int ret;

    if (keyval_get_u64(opts, "iobase", 0x501, 0xffff, &iobase) < 0 ||
        keyval_get_u64(opts, "iosize", 0x02, 0x10000, &iosize) < 0)
        return -EINVAL;
    if (iosize == 0 || iobase + iosize > 0x10000) {
        error_report("%s: property 'iosize': ports 0x%llx+0x%llx do not fit the I/O space",
                     opts->context, (unsigned long long)iobase, (unsigned long long)iosize);
        return -EINVAL;
    }
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->m = m;
    ret = machine_register_pio(m, (uint16_t)iobase, (uint32_t)iosize, &debug_exit_ops, d,
                               "isa-debug-exit");
    if (ret < 0) {
        error_report("%s: cannot claim ports 0x%llx+0x%llx", opts->context,
                     (unsigned long long)iobase, (unsigned long long)iosize);
        free(d);
        return ret;
    }
    ret = machine_add_device(m, "isa-debug-exit", d, NULL, free);
    if (ret < 0)
        return ret;   /* the port region keeps d; freed with the process */
    return 0;
}
