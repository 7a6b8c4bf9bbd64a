/* System control port A (0x92: fast reset, A20) and the POST code port
 * (0x80), which Linux uses as an I/O delay. */
#include <errno.h>
#include <stdlib.h>

#include "hw/pc_devices.h"
#include "util/log.h"

#define PORT92_RESET 0x01
#define PORT92_A20 0x02

struct port92 {
    struct machine *m;
    uint8_t val;
};

static uint64_t port92_read(void *opaque, uint64_t offset, unsigned size)
{
    struct port92 *p = opaque;

    return offset == 0 ? p->val : 0xff;
}

static void port92_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct port92 *p = opaque;
    uint8_t old = p->val;

    if (offset != 0)
        return;
    /* A20 is always on in this machine: the bit is remembered only. */
    p->val = (uint8_t)(value & PORT92_A20);
    if ((value & PORT92_RESET) && !(old & PORT92_RESET))
        machine_request_reset(p->m);
}

static const struct io_ops port92_ops = {
    .read = port92_read,
    .write = port92_write,
};

static uint64_t post_read(void *opaque, uint64_t offset, unsigned size)
{
    return ~0ULL;
}

static void post_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
}

static const struct io_ops post_ops = {
    .read = post_read,
    .write = post_write,
};

static void port92_reset(void *opaque)
{
    struct port92 *p = opaque;

    p->val = PORT92_A20;
}

int port92_create(struct machine *m)
{
    struct port92 *p = calloc(1, sizeof(*p));
    int ret;

    if (!p)
        return -ENOMEM;
    p->m = m;
    port92_reset(p);
    ret = machine_register_pio(m, 0x92, 1, &port92_ops, p, "port92");
    if (ret < 0) {
        free(p);
        return ret;
    }
    ret = machine_register_pio(m, 0x80, 1, &post_ops, NULL, "post");
    if (ret < 0)
        return ret;
    return machine_add_device(m, "port92", p, port92_reset, free);
}

/* ---- snapshot state (migration/vmstate.h) ---- */

#include "migration/migration.h"

static const struct vmstate_field port92_fields[] = {
    VMS_U8_FIELD(struct port92, val),
    VMS_END,
};

const struct vmstate_desc port92_vmstate = {
    .name = "port92", .version = 1, .fields = port92_fields,
};
