/* Backend-independent chardev plumbing, and the file and null backends. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chardev/chardev_internal.h"
#include "util/log.h"

void chardev_write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* A vanished reader must not take the guest down; drop output. */
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

size_t chardev_deliver(struct chardev *c, const uint8_t *buf, size_t len)
{
    size_t room;

    if (!c->fe)
        return len;
    room = c->fe->can_receive(c->fe_opaque);
    if (room > len)
        room = len;
    if (room)
        c->fe->receive(c->fe_opaque, buf, room);
    return room;
}

void chardev_set_frontend(struct chardev *c, const struct chardev_frontend *fe, void *opaque)
{
    c->fe = fe;
    c->fe_opaque = opaque;
}

void chardev_write(struct chardev *c, const uint8_t *buf, size_t len)
{
    c->ops->write(c, buf, len);
}

void chardev_accept_input(struct chardev *c)
{
    if (c->ops->accept_input)
        c->ops->accept_input(c);
}

void chardev_free(struct chardev *c)
{
    if (c)
        c->ops->free(c);
}

static void fd_write(struct chardev *c, const uint8_t *buf, size_t len)
{
    if (c->out_fd >= 0)
        chardev_write_all(c->out_fd, buf, len);
}

static void fd_free(struct chardev *c)
{
    if (c->out_fd > 2)
        close(c->out_fd);
    free(c);
}

static const struct chardev_ops file_ops = { .write = fd_write, .free = fd_free };

struct chardev *chardev_file_new(const char *path)
{
    struct chardev *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->ops = &file_ops;
    c->in_fd = -1;
    c->out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (c->out_fd < 0) {
        error_report("-serial file:%s: %s", path, strerror(errno));
        free(c);
        return NULL;
    }
    return c;
}

struct chardev *chardev_null_new(void)
{
    struct chardev *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->ops = &file_ops;
    c->in_fd = c->out_fd = -1;
    return c;
}
