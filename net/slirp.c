/* -netdev user: libslirp's user-mode TCP/IP stack (DHCP, DNS, the 10.0.2.2
 * host alias, hostfwd).  libslirp is not thread-safe; every call into it
 * happens under the machine lock.
 *
 * Its sockets wake the main loop like any other fd: after each round,
 * slirp_pollfds_fill() says which sockets it wants with which events, and
 * those go into a private epoll set that the main loop watches as one fd.
 * A round (slirp_service) runs when that set is ready, when a guest frame
 * went in, and at the timeout slirp asked for (its TCP timers, <= 1 s);
 * the revents it is handed come from a poll() of the fds the last fill
 * named.  A private set, not main-loop watches: slirp closes sockets on its
 * own, and a closed fd's number may come back for some other device. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <libslirp.h>

#include "net/net.h"
#include "util/keyval.h"
#include "util/log.h"
#include "util/main_loop.h"

struct net_slirp {
    struct net_backend nb;
    Slirp *slirp;
    struct timer *poll_timer;
    struct pollfd *pfd;       /* what the last fill asked for, by its index */
    int nr_pfd, cap_pfd;
    int epfd;                 /* private epoll set of slirp's sockets */
    struct pollfd *watched;   /* what epfd holds: fd and events */
    int nr_watched, cap_watched;
};

struct slirp_timer {
    struct timer *t;
    SlirpTimerCb cb;
    void *cb_opaque;
};

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
    struct net_slirp *s = opaque;

    net_backend_deliver(&s->nb, buf, len);
    return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
    LOG(LOG_GUEST_ERRORS, "slirp: %s\n", msg);
}

static int64_t cb_clock_get_ns(void *opaque)
{
    return (int64_t)clock_ns();
}

static void slirp_timer_fire(void *opaque)
{
    struct slirp_timer *st = opaque;

    st->cb(st->cb_opaque);
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
    struct slirp_timer *st = calloc(1, sizeof(*st));

    if (!st)
        return NULL;
    st->cb = cb;
    st->cb_opaque = cb_opaque;
    st->t = timer_new(slirp_timer_fire, st);
    return st;
}

static void cb_timer_free(void *timer, void *opaque)
{
    struct slirp_timer *st = timer;

    if (!st)
        return;
    timer_free(st->t);
    free(st);
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    struct slirp_timer *st = timer;

    if (st)
        timer_mod(st->t, (uint64_t)expire_ms * 1000000ULL);
}

static void service_soon(struct net_slirp *s);

/* A new socket: watch it from the next round on. */
static void cb_register_poll_fd(int fd, void *opaque)
{
    service_soon(opaque);
}

/* slirp is about to close fd: forget it now, so that a socket which gets
 * the same number later is added to the set, not taken as watched. */
static void cb_unregister_poll_fd(int fd, void *opaque)
{
    struct net_slirp *s = opaque;

    for (int i = 0; i < s->nr_watched; i++) {
        if (s->watched[i].fd == fd) {
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
            s->watched[i] = s->watched[--s->nr_watched];
            return;
        }
    }
}

/* slirp's sockets or wishes changed outside a round. */
static void cb_notify(void *opaque)
{
    service_soon(opaque);
}

static const SlirpCb slirp_cbs = {
    .send_packet = cb_send_packet,
    .guest_error = cb_guest_error,
    .clock_get_ns = cb_clock_get_ns,
    .timer_new = cb_timer_new,
    .timer_free = cb_timer_free,
    .timer_mod = cb_timer_mod,
    .register_poll_fd = cb_register_poll_fd,
    .unregister_poll_fd = cb_unregister_poll_fd,
    .notify = cb_notify,
};

static int add_poll(int fd, int events, void *opaque)
{
    struct net_slirp *s = opaque;
    short ev = 0;

    if (s->nr_pfd == s->cap_pfd) {
        int nc = s->cap_pfd ? s->cap_pfd * 2 : 16;
        struct pollfd *n = realloc(s->pfd, (size_t)nc * sizeof(*n));

        if (!n)
            return -1;
        s->pfd = n;
        s->cap_pfd = nc;
    }
    if (events & SLIRP_POLL_IN)
        ev |= POLLIN;
    if (events & SLIRP_POLL_OUT)
        ev |= POLLOUT;
    if (events & SLIRP_POLL_PRI)
        ev |= POLLPRI;
    s->pfd[s->nr_pfd] = (struct pollfd){ .fd = fd, .events = ev };
    return s->nr_pfd++;
}

static int get_revents(int idx, void *opaque)
{
    struct net_slirp *s = opaque;
    short r;
    int ev = 0;

    if (idx < 0 || idx >= s->nr_pfd)
        return 0;
    r = s->pfd[idx].revents;
    if (r & POLLIN)
        ev |= SLIRP_POLL_IN;
    if (r & POLLOUT)
        ev |= SLIRP_POLL_OUT;
    if (r & POLLPRI)
        ev |= SLIRP_POLL_PRI;
    if (r & POLLERR)
        ev |= SLIRP_POLL_ERR;
    if (r & POLLHUP)
        ev |= SLIRP_POLL_HUP;
    return ev;
}

static uint32_t epoll_events_of(short ev)
{
    return (ev & POLLIN ? EPOLLIN : 0) | (ev & POLLOUT ? EPOLLOUT : 0) |
           (ev & POLLPRI ? EPOLLPRI : 0);
}

/* Make epfd hold exactly the fds and events of s->pfd. */
static void sync_watches(struct net_slirp *s)
{
    struct pollfd *w = s->watched;

    for (int i = 0; i < s->nr_watched; i++) {
        bool wanted = false;

        for (int j = 0; j < s->nr_pfd && !wanted; j++)
            wanted = s->pfd[j].fd == w[i].fd;
        if (!wanted) {
            /* ENOENT/EBADF when slirp already closed it: nothing to undo. */
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, w[i].fd, NULL);
            w[i--] = w[--s->nr_watched];
        }
    }
    for (int j = 0; j < s->nr_pfd; j++) {
        struct epoll_event ev = { .events = epoll_events_of(s->pfd[j].events),
                                  .data.fd = s->pfd[j].fd };
        int i;

        for (i = 0; i < s->nr_watched && w[i].fd != s->pfd[j].fd; i++)
            ;
        if (i < s->nr_watched) {
            if (w[i].events == s->pfd[j].events)
                continue;
            /* A closed and reopened fd left the set when it closed. */
            if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, w[i].fd, &ev) == 0 || errno != ENOENT) {
                w[i].events = s->pfd[j].events;
                continue;
            }
        } else {
            if (s->nr_watched == s->cap_watched) {
                int nc = s->cap_watched ? s->cap_watched * 2 : 16;
                struct pollfd *n = realloc(w, (size_t)nc * sizeof(*n));

                if (!n)
                    fatal("out of memory watching slirp's sockets");
                s->watched = w = n;
                s->cap_watched = nc;
            }
            i = s->nr_watched++;
            w[i].fd = s->pfd[j].fd;
        }
        w[i].events = s->pfd[j].events;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, w[i].fd, &ev) < 0 && errno == EEXIST)
            epoll_ctl(s->epfd, EPOLL_CTL_MOD, w[i].fd, &ev);
    }
}

/* Main loop, machine lock held: hand slirp what happened on the sockets the
 * last fill named (and run its due TCP timers), then ask again what to
 * watch and until when. */
static void slirp_service(void *opaque)
{
    struct net_slirp *s = opaque;
    struct epoll_event evs[16];
    uint32_t timeout_ms = UINT32_MAX;
    int n;

    /* Drain the set's ready list; the revents come from poll() below. */
    while (epoll_wait(s->epfd, evs, ARRAY_SIZE(evs), 0) == ARRAY_SIZE(evs))
        ;
    n = s->nr_pfd ? poll(s->pfd, (nfds_t)s->nr_pfd, 0) : 0;
    slirp_pollfds_poll(s->slirp, n < 0, get_revents, s);
    s->nr_pfd = 0;
    slirp_pollfds_fill(s->slirp, &timeout_ms, add_poll, s);
    sync_watches(s);
    timer_mod(s->poll_timer, clock_ns() + (uint64_t)timeout_ms * 1000000ULL);
}

static void slirp_ready(void *opaque, uint32_t events)
{
    slirp_service(opaque);
}

/* A round as soon as the main loop is free (end of this dispatch). */
static void service_soon(struct net_slirp *s)
{
    timer_mod(s->poll_timer, 0);
}

static void slirp_send(struct net_backend *nb, const uint8_t *buf, size_t len)
{
    struct net_slirp *s = (struct net_slirp *)nb;

    slirp_input(s->slirp, buf, (int)len);
    /* The frame may have opened a socket or queued data for one. */
    service_soon(s);
}

static int parse_net(const char *v, struct in_addr *net, struct in_addr *mask)
{
    char buf[64], *slash;
    unsigned bits = 24;

    snprintf(buf, sizeof(buf), "%s", v);
    slash = strchr(buf, '/');
    if (slash) {
        char *end;

        *slash = 0;
        bits = (unsigned)strtoul(slash + 1, &end, 10);
        if (*end || bits < 8 || bits > 30)
            return -1;
    }
    if (inet_pton(AF_INET, buf, net) != 1)
        return -1;
    mask->s_addr = htonl(~0u << (32 - bits));
    net->s_addr &= mask->s_addr;
    return 0;
}

/* tcp|udp:[HADDR]:HPORT-[GADDR]:GPORT */
static int add_hostfwd(struct net_slirp *s, const char *spec)
{
    char buf[128], *p, *hport, *gaddr, *gport, *dash;
    struct in_addr haddr = { .s_addr = htonl(INADDR_ANY) }, ga = { 0 };
    bool udp;

    snprintf(buf, sizeof(buf), "%s", spec);
    if (!strncmp(buf, "tcp:", 4))
        udp = false;
    else if (!strncmp(buf, "udp:", 4))
        udp = true;
    else
        return -1;
    p = buf + 4;
    dash = strchr(p, '-');
    if (!dash)
        return -1;
    *dash = 0;
    gaddr = dash + 1;
    hport = strrchr(p, ':');
    gport = strrchr(gaddr, ':');
    if (!hport || !gport)
        return -1;
    *hport++ = 0;
    *gport++ = 0;
    if (*p && inet_pton(AF_INET, p, &haddr) != 1)
        return -1;
    if (*gaddr && inet_pton(AF_INET, gaddr, &ga) != 1)
        return -1;
    if (!*hport || !*gport)
        return -1;
    return slirp_add_hostfwd(s->slirp, udp, haddr, atoi(hport), ga, atoi(gport));
}

struct net_backend *net_slirp_new(struct machine *m, struct keyval *opts)
{
    struct net_slirp *s = calloc(1, sizeof(*s));
    const char *net = keyval_get(opts, "net");
    const char *fwd = keyval_get(opts, "hostfwd");
    bool restrict_ = false;
    SlirpConfig cfg = { .version = 1, .in_enabled = true };
    uint32_t base;

    if (!s)
        return NULL;
    /* Before slirp_new(): hostfwd's listening socket already registers. */
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        error_report("%s: epoll_create1: %s", opts->context, strerror(errno));
        free(s);
        return NULL;
    }
    s->poll_timer = timer_new(slirp_service, s);
    if (keyval_get_bool(opts, "restrict", false, &restrict_) < 0)
        goto fail;
    cfg.restricted = restrict_;
    inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
    inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
    if (net && parse_net(net, &cfg.vnetwork, &cfg.vnetmask) < 0) {
        error_report("%s: property 'net': expected ADDR[/BITS], e.g. 10.0.2.0/24",
                     opts->context);
        goto fail;
    }
    /* QEMU's addresses inside the network: .2 host, .3 DNS, .15 first lease. */
    base = ntohl(cfg.vnetwork.s_addr);
    cfg.vhost.s_addr = htonl(base + 2);
    cfg.vnameserver.s_addr = htonl(base + 3);
    cfg.vdhcp_start.s_addr = htonl(base + 15);
    cfg.vhostname = "vmon";
    cfg.if_mtu = 1500;
    cfg.if_mru = 1500;
    s->slirp = slirp_new(&cfg, &slirp_cbs, s);
    if (!s->slirp) {
        error_report("%s: libslirp refused the configuration", opts->context);
        goto fail;
    }
    if (fwd && add_hostfwd(s, fwd) < 0) {
        error_report("%s: property 'hostfwd': cannot forward %s "
                     "(syntax tcp:[HOST]:PORT-[GUEST]:PORT; port in use?)", opts->context, fwd);
        goto fail;
    }
    s->nb.type = "user";
    s->nb.send = slirp_send;
    /* slirp_input() sizes its buffer to the frame and slirp's TCP reads a
     * segment of any length within the window it advertised. */
    s->nb.takes_tso = true;
    if (main_loop_add_fd(s->epfd, EPOLLIN, slirp_ready, s) < 0) {
        error_report("%s: cannot watch slirp's sockets", opts->context);
        goto fail;
    }
    service_soon(s);
    return &s->nb;
fail:
    if (s->slirp)
        slirp_cleanup(s->slirp);
    timer_free(s->poll_timer);
    close(s->epfd);
    free(s);
    return NULL;
}
