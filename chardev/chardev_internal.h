/* What every chardev backend implements. */
#ifndef VMON_CHARDEV_INTERNAL_H
#define VMON_CHARDEV_INTERNAL_H

#include "chardev/chardev.h"

struct chardev_ops {
    void (*write)(struct chardev *c, const uint8_t *buf, size_t len);
    void (*accept_input)(struct chardev *c);
    void (*free)(struct chardev *c);
};

struct chardev {
    const struct chardev_ops *ops;
    const struct chardev_frontend *fe;
    void *fe_opaque;
    int in_fd, out_fd;
    bool input_paused;
};

/* Write all of buf to fd, retrying on EINTR and short writes. */
void chardev_write_all(int fd, const uint8_t *buf, size_t len);
/* Hand bytes to the frontend, as many as it takes. Returns bytes taken. */
size_t chardev_deliver(struct chardev *c, const uint8_t *buf, size_t len);

#endif
