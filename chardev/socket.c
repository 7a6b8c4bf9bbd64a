/* The unix socket backend: -chardev socket,id=ID,path=P[,server=on|off]
 * [,wait=on|off], as QEMU spells it.  A server listens on P and serves one
 * client at a time (later ones are closed at once); wait=on (QEMU's
 * default for a server) blocks start-up until the first client connects.
 * server=off connects to P at start-up.
 *
 * Input the frontend cannot take yet (a guest driver not ready, receive
 * buffers full) stays here and the socket is not read meanwhile, so the
 * peer is pushed back, not dropped; chardev_accept_input() delivers it.
 * Output with no client connected is dropped, as QEMU does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "chardev/chardev_internal.h"
#include "util/log.h"
#include "util/main_loop.h"

#define SOCK_PENDING 4096

struct socket_chardev {
    struct chardev c;      /* in_fd = out_fd = the connected client, or -1 */
    int listen_fd;
    char *path;            /* unlinked at teardown (server) */
    uint8_t pending[SOCK_PENDING];
    size_t pending_len;
    bool reading;          /* the client's EPOLLIN is on */
};

static void client_closed(struct socket_chardev *s)
{
    if (s->c.in_fd < 0)
        return;
    main_loop_del_fd(s->c.in_fd);
    close(s->c.in_fd);
    s->c.in_fd = s->c.out_fd = -1;
    s->reading = false;
}

static void set_reading(struct socket_chardev *s, bool on)
{
    if (s->c.in_fd < 0 || s->reading == on)
        return;
    if (main_loop_mod_fd(s->c.in_fd, on ? EPOLLIN : 0) == 0)
        s->reading = on;
}

/* Hand held input to the frontend; read more only once it is all taken. */
static void flush_pending(struct socket_chardev *s)
{
    if (s->pending_len && s->c.fe) {
        size_t n = chardev_deliver(&s->c, s->pending, s->pending_len);

        memmove(s->pending, s->pending + n, s->pending_len - n);
        s->pending_len -= n;
    }
    set_reading(s, s->pending_len == 0);
}

static void client_ready(void *opaque, uint32_t events)
{
    struct socket_chardev *s = opaque;
    ssize_t n;

    if (s->pending_len) {
        set_reading(s, false);
        return;
    }
    n = read(s->c.in_fd, s->pending, sizeof(s->pending));
    if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        client_closed(s);   /* a server takes the next client */
        return;
    }
    s->pending_len = (size_t)n;
    flush_pending(s);
}

static int client_attach(struct socket_chardev *s, int fd)
{
    if (main_loop_add_fd(fd, EPOLLIN, client_ready, s) < 0) {
        close(fd);
        return -EIO;
    }
    s->c.in_fd = s->c.out_fd = fd;
    s->reading = true;
    /* Input held from an earlier client goes first. */
    if (s->pending_len)
        flush_pending(s);
    return 0;
}

static void listen_ready(void *opaque, uint32_t events)
{
    struct socket_chardev *s = opaque;
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return;
    if (s->c.in_fd >= 0) {
        close(fd);   /* one client at a time */
        return;
    }
    client_attach(s, fd);
}

static void socket_write(struct chardev *c, const uint8_t *buf, size_t len)
{
    struct socket_chardev *s = (struct socket_chardev *)c;

    while (len && c->out_fd >= 0) {
        ssize_t n = send(c->out_fd, buf, len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            client_closed(s);   /* gone: the rest is dropped */
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

static void socket_accept_input(struct chardev *c)
{
    flush_pending((struct socket_chardev *)c);
}

static void socket_free(struct chardev *c)
{
    struct socket_chardev *s = (struct socket_chardev *)c;

    client_closed(s);
    if (s->listen_fd >= 0) {
        main_loop_del_fd(s->listen_fd);
        close(s->listen_fd);
        unlink(s->path);
    }
    free(s->path);
    free(s);
}

static const struct chardev_ops socket_ops = {
    .write = socket_write,
    .accept_input = socket_accept_input,
    .free = socket_free,
};

struct chardev *chardev_socket_new(const char *path, bool server, bool wait, const char *ctx)
{
    struct socket_chardev *s;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        error_report("%s: path '%s' is too long for a unix socket", ctx, path);
        return NULL;
    }
    strcpy(sa.sun_path, path);
    s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return NULL;
    }
    s->c.ops = &socket_ops;
    s->c.in_fd = s->c.out_fd = -1;
    s->listen_fd = -1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto err;
    if (!server) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || client_attach(s, fd) < 0)
            goto err_fd;
        return &s->c;
    }
    /* A stale socket of an earlier run is replaced, anything else is not. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
        goto err_fd;
    s->listen_fd = fd;
    if (wait) {
        int c;

        warn_report("%s: waiting for a connection on %s (wait=on)", ctx, path);
        do
            c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        while (c < 0 && errno == EINTR);
        if (c < 0 || client_attach(s, c) < 0)
            goto err_listen;
    }
    if (main_loop_add_fd(fd, EPOLLIN, listen_ready, s) < 0)
        goto err_listen;
    return &s->c;
err_fd:
    error_report("%s: %s: %s", ctx, path, strerror(errno));
    close(fd);
    free(s->path);
    free(s);
    return NULL;
err_listen:
    error_report("%s: %s: %s", ctx, path, strerror(errno ? errno : EIO));
    client_closed(s);
    close(fd);
    unlink(path);
    free(s->path);
    free(s);
    return NULL;
err:
    error_report("%s: socket: %s", ctx, strerror(errno));
    free(s->path);
    free(s);
    return NULL;
}
