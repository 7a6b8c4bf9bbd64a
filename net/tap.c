/* -netdev tap,ifname=NAME[,script=no,downscript=no]: a Linux tap device
 * (IFF_TAP | IFF_NO_PI, no vnet header), its fd non-blocking in the main
 * loop.  Configuring the interface on the host is the user's job: vmon runs
 * no scripts, and refuses script= values other than no. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "net/net.h"
#include "util/keyval.h"
#include "util/log.h"
#include "util/main_loop.h"

#define TAP_MAX_FRAME 65536

struct net_tap {
    struct net_backend nb;
    int fd;
    uint8_t buf[TAP_MAX_FRAME];
};

static void tap_readable(void *opaque, uint32_t events)
{
    struct net_tap *t = opaque;

    /* A bounded batch, so one busy tap cannot starve the main loop. */
    for (int i = 0; i < 64; i++) {
        ssize_t n = read(t->fd, t->buf, sizeof(t->buf));

        if (n <= 0)
            return;
        net_backend_deliver(&t->nb, t->buf, (size_t)n);
    }
}

static void tap_send(struct net_backend *nb, const uint8_t *buf, size_t len)
{
    struct net_tap *t = (struct net_tap *)nb;

    /* Non-blocking: a full tap queue drops the frame, as a real NIC would. */
    if (write(t->fd, buf, len) < 0)
        LOG(LOG_GUEST_ERRORS, "tap %s: frame dropped: %s\n", nb->id, strerror(errno));
}

static bool script_off(const char *v)
{
    return !v || !strcmp(v, "no") || !*v;
}

struct net_backend *net_tap_new(struct machine *m, struct keyval *opts)
{
    const char *ifname = keyval_get(opts, "ifname");
    const char *script = keyval_get(opts, "script");
    const char *down = keyval_get(opts, "downscript");
    struct ifreq ifr;
    struct net_tap *t;

    if (!script_off(script) || !script_off(down)) {
        error_report("%s: only script=no,downscript=no are supported", opts->context);
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (t->fd < 0) {
        error_report("%s: /dev/net/tun: %s", opts->context, strerror(errno));
        free(t);
        return NULL;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ifname)
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
        error_report("%s: cannot attach to tap %s: %s", opts->context,
                     ifname ? ifname : "(new)", strerror(errno));
        close(t->fd);
        free(t);
        return NULL;
    }
    if (main_loop_add_fd(t->fd, EPOLLIN, tap_readable, t) < 0) {
        error_report("%s: cannot watch the tap fd", opts->context);
        close(t->fd);
        free(t);
        return NULL;
    }
    t->nb.type = "tap";
    t->nb.send = tap_send;
    return &t->nb;
}
