/* QMP transport: listening sockets from -qmp, one non-blocking client per
 * connection on the main loop, and events broadcast to negotiated clients.
 *
 * Flow control: each client has an input buffer capped by the splitter and
 * an output queue.  A client that stops reading first stops being read
 * (its replies would pile up), and is dropped only if events alone push
 * its queue past a hard cap.  Nothing here ever blocks the main loop; the
 * vCPUs never wait for the monitor. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "machine/machine.h"
#include "monitor/json_stream.h"
#include "monitor/monitor.h"
#include "monitor/qmp.h"
#include "util/log.h"
#include "util/main_loop.h"
#include "util/trace.h"
#include "version.h"

#define QMP_MAX_INPUT (1u << 20)        /* one request, like QEMU's token cap */
#define QMP_READ_CHUNK 65536
#define QMP_OUT_SUSPEND (1u << 20)      /* stop reading a client behind this */
#define QMP_OUT_MAX (16u << 20)         /* drop a client this far behind */
#define QMP_FLUSH_TIMEOUT_MS 1000
#define QMP_MAX_CLIENTS 64

struct qmp_listener {
    int fd;
    char *unix_path;     /* to unlink at exit */
    char *filename;      /* for query-chardev */
    struct timer *retry; /* re-arms accepting after EMFILE */
};

struct qmp_client {
    int fd;
    struct machine *m;
    struct json_stream in;
    char *out;
    size_t out_len, out_cap, out_off;
    bool negotiated;
    bool suspended;      /* not reading until the output drains */
    bool want_out;       /* EPOLLOUT armed */
    bool closing;
    struct qmp_client *next;
};

static struct qmp_listener listeners[CONFIG_MAX_QMP];
static int nr_listeners;
static struct qmp_client *clients;
static struct machine *qmp_machine;

enum qmp_run_state qmp_run_state = QMP_RUN_RUNNING;
bool qmp_quit_requested;
bool qmp_reset_requested;

int qmp_nr_endpoints(void)
{
    return nr_listeners;
}

const char *qmp_endpoint_filename(int i)
{
    return i >= 0 && i < nr_listeners ? listeners[i].filename : NULL;
}

/* ---- clients ---- */

static void client_free(struct qmp_client *c)
{
    for (struct qmp_client **p = &clients; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    main_loop_del_fd(c->fd);
    close(c->fd);
    json_stream_destroy(&c->in);
    free(c->out);
    free(c);
}

static void client_update_events(struct qmp_client *c)
{
    uint32_t ev = (c->suspended ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0);

    main_loop_mod_fd(c->fd, ev);
}

/* Write what the socket takes now.  Returns -1 if the client is gone. */
static int client_flush(struct qmp_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    return 0;
}

static int client_queue(struct qmp_client *c, const char *s, size_t len)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len - c->out_off + len > QMP_OUT_MAX)
        return -1;
    if (c->out_len + len > c->out_cap) {
        size_t cap;
        char *b;

        if (c->out_off) {     /* reclaim the sent prefix first */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        if (cap != c->out_cap) {
            b = realloc(c->out, cap);
            if (!b)
                return -1;
            c->out = b;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, s, len);
    c->out_len += len;
    return 0;
}

/* Queue one JSON message ("...\r\n" as QEMU ends them) and try to send it. */
static int client_send(struct qmp_client *c, json_t *msg)
{
    char *s = json_dumps(msg, JSON_PRESERVE_ORDER);
    bool backlog;
    int ret;

    if (!s)
        return -1;
    ret = client_queue(c, s, strlen(s));
    free(s);
    if (ret == 0)
        ret = client_queue(c, "\r\n", 2);
    if (ret == 0)
        ret = client_flush(c);
    if (ret < 0) {
        c->closing = true;
        return -1;
    }
    backlog = c->out_len > c->out_off;
    if (backlog != c->want_out || (c->out_len - c->out_off > QMP_OUT_SUSPEND) != c->suspended) {
        c->want_out = backlog;
        c->suspended = c->out_len - c->out_off > QMP_OUT_SUSPEND;
        client_update_events(c);
    }
    return 0;
}

static int client_input(void *opaque, const char *text, size_t len, int err)
{
    struct qmp_client *c = opaque;
    json_t *reply;

    if (err) {
        struct qmp_error e = { 0 };

        qmp_error_set(&e, QMP_ERR_GENERIC, "JSON parse error, %s",
                      err == -E2BIG ? "JSON token size limit exceeded"
                                    : "JSON nesting depth limit exceeded");
        reply = json_pack("{s:{s:s,s:s}}", "error", "class", "GenericError", "desc", e.desc);
    } else {
        reply = qmp_dispatch_text(c->m, text, len, &c->negotiated);
    }
    if (reply) {
        client_send(c, reply);
        json_decref(reply);
    }
    /* Stop handling input while the replies cannot leave. */
    return c->closing || c->suspended;
}

static void client_ready(void *opaque, uint32_t events)
{
    struct qmp_client *c = opaque;
    char buf[QMP_READ_CHUNK];

    if (events & EPOLLOUT) {
        if (client_flush(c) < 0) {
            client_free(c);
            return;
        }
        c->want_out = c->out_len > c->out_off;
        if (c->suspended && c->out_len - c->out_off <= QMP_OUT_SUSPEND / 2) {
            c->suspended = false;
            /* Requests may be waiting in the buffer already. */
            json_stream_feed(&c->in, NULL, 0, client_input, c);
        }
        if (c->closing) {
            client_free(c);
            return;
        }
        client_update_events(c);
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->suspended) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            /* Disconnected, perhaps in the middle of a request: whatever
             * was half-sent is dropped with the client. */
            client_free(c);
            return;
        }
        if (json_stream_feed(&c->in, buf, (size_t)n, client_input, c) == -ENOMEM)
            c->closing = true;
        if (c->closing)
            client_free(c);
    }
}

static void client_add(struct machine *m, int fd)
{
    struct qmp_client *c = calloc(1, sizeof(*c));
    json_t *greeting;

    if (!c) {
        close(fd);
        return;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    c->m = m;
    json_stream_init(&c->in, QMP_MAX_INPUT);
    if (main_loop_add_fd(fd, EPOLLIN, client_ready, c) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->next = clients;
    clients = c;
    greeting = json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[]}}", "QMP", "version", "qemu",
                         "micro", 0, "minor", 2, "major", 7, "package", "vmon-" VMON_VERSION,
                         "capabilities");
    client_send(c, greeting);
    json_decref(greeting);
    if (c->closing)
        client_free(c);
}

static void listener_resume(void *opaque)
{
    struct qmp_listener *l = opaque;

    main_loop_mod_fd(l->fd, EPOLLIN);
}

static int nr_clients(void)
{
    int n = 0;

    for (struct qmp_client *c = clients; c; c = c->next)
        n++;
    return n;
}

static void listener_ready(void *opaque, uint32_t events)
{
    struct qmp_listener *l = opaque;
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* The pending connection keeps the socket readable: look again
             * later instead of spinning the main loop. */
            warn_report("QMP %s: accept: %s", l->filename, strerror(errno));
            main_loop_mod_fd(l->fd, 0);
            if (!l->retry)
                l->retry = timer_new(listener_resume, l);
            timer_mod(l->retry, clock_ns() + 100000000ULL);
        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            warn_report("QMP %s: accept: %s", l->filename, strerror(errno));
        }
        return;
    }
    if (nr_clients() >= QMP_MAX_CLIENTS) {
        close(fd);
        return;
    }
    client_add(qmp_machine, fd);
}

/* Clients that failed while another client's request was running are
 * freed here, outside any handler that might still use them. */
static void reap_clients(void *opaque)
{
    for (struct qmp_client *c = clients, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            client_free(c);
    }
}

void qmp_event_send(const char *event, json_t *data)
{
    bool reap = false;

    struct timeval tv;
    json_t *msg;

    TRACE(qmp_event, "event=%s", event);
    gettimeofday(&tv, NULL);
    msg = json_pack("{s:{s:I,s:I},s:s}", "timestamp", "seconds", (json_int_t)tv.tv_sec,
                    "microseconds", (json_int_t)tv.tv_usec, "event", event);
    if (data)
        json_object_set(msg, "data", data);
    for (struct qmp_client *c = clients; c; c = c->next) {
        if (c->negotiated && !c->closing)
            client_send(c, msg);
        reap |= c->closing;
    }
    if (reap)
        main_loop_call(reap_clients, NULL);
    json_decref(msg);
    json_decref(data);
}

/* ---- endpoints ---- */

static int parse_bool_opt(const char *val, bool *out)
{
    if (!val || !strcmp(val, "on") || !strcmp(val, "yes") || !strcmp(val, "true")) {
        *out = true;
        return 0;
    }
    if (!strcmp(val, "off") || !strcmp(val, "no") || !strcmp(val, "false")) {
        *out = false;
        return 0;
    }
    return -1;
}

/* "unix:PATH" or "tcp:HOST:PORT", then ,server[=on] ,wait=off / ,nowait. */
static int listener_open(struct qmp_listener *l, const char *spec, bool *wait)
{
    char *copy = strdup(spec), *save = NULL, *addr, *opt;
    bool server = false;
    int fd = -1, ret = -1;

    *wait = true;
    if (!copy)
        return -1;
    addr = strtok_r(copy, ",", &save);
    for (opt = strtok_r(NULL, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(opt, '=');
        const char *val = eq ? eq + 1 : NULL;

        if (eq)
            *eq = '\0';
        if (!strcmp(opt, "server") && parse_bool_opt(val, &server) == 0)
            continue;
        if (!strcmp(opt, "wait") && parse_bool_opt(val, wait) == 0)
            continue;
        if (!strcmp(opt, "nowait") && !val) {
            *wait = false;
            continue;
        }
        error_report("-qmp %s: unsupported option '%s%s%s' (server=on, wait=off)", spec, opt,
                     val ? "=" : "", val ? val : "");
        goto out;
    }
    if (!addr || !server) {
        error_report("-qmp %s: vmon only listens: add server=on,wait=off", spec);
        goto out;
    }
    if (!strncmp(addr, "unix:", 5) && addr[5]) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        if (strlen(addr + 5) >= sizeof(sa.sun_path)) {
            error_report("-qmp %s: socket path too long", spec);
            goto out;
        }
        /* Bind and listen under a temporary name, then rename: a client
         * that sees the path can connect at once. */
        if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%d", addr + 5,
                             (int)getpid()) >= sizeof(sa.sun_path))
            strcpy(sa.sun_path, addr + 5);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            goto sys_err;
        unlink(sa.sun_path);   /* a stale socket from an earlier run */
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            goto sys_err;
        if (listen(fd, 16) < 0 || (strcmp(sa.sun_path, addr + 5) &&
                                   rename(sa.sun_path, addr + 5) < 0)) {
            int err = errno;

            unlink(sa.sun_path);
            errno = err;
            goto sys_err;
        }
        l->unix_path = strdup(addr + 5);
    } else if (!strncmp(addr, "tcp:", 4)) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_PASSIVE };
        struct addrinfo *ai = NULL;
        char *host = addr + 4, *port = strrchr(host, ':');
        int one = 1, r;

        if (!port || !port[1]) {
            error_report("-qmp %s: expected tcp:HOST:PORT", spec);
            goto out;
        }
        *port++ = '\0';
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
            host[strlen(host) - 1] = '\0';
            host++;
        }
        r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
        if (r) {
            error_report("-qmp %s: %s", spec, gai_strerror(r));
            goto out;
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            r = bind(fd, ai->ai_addr, ai->ai_addrlen);
        }
        freeaddrinfo(ai);
        if (fd < 0 || r < 0)
            goto sys_err;
    } else {
        error_report("-qmp %s: expected unix:PATH or tcp:HOST:PORT", spec);
        goto out;
    }
    if (listen(fd, 16) < 0)    /* again for a unix socket: harmless */
        goto sys_err;
    l->fd = fd;
    /* query-chardev shows it as QEMU does: the address and server=on. */
    if (asprintf(&l->filename, "%.*s,server=on", (int)strcspn(spec, ","), spec) < 0)
        l->filename = NULL;
    fd = -1;
    ret = 0;
    goto out;
sys_err:
    error_report("-qmp %s: %s", spec, strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    free(copy);
    return ret;
}

/* wait=on (QEMU's default for a server): hold start-up until a client. */
static int wait_for_client(struct qmp_listener *l)
{
    struct pollfd p = { .fd = l->fd, .events = POLLIN };
    int fd;

    fprintf(stderr, "vmon: waiting for a QMP connection on %s\n", l->filename ? l->filename : "?");
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return -1;
    fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return -1;
    client_add(qmp_machine, fd);
    return 0;
}

/* ---- run-state events from the machine ---- */

static const char *shutdown_reason(int cause)
{
    switch (cause) {
    case SHUTDOWN_GUEST_POWEROFF: return "guest-shutdown";
    case SHUTDOWN_GUEST_RESET: return "guest-reset";
    case SHUTDOWN_GUEST_PANIC: return "guest-panic";
    default: break;
    }
    return qmp_quit_requested ? "host-qmp-quit" : "host-signal";
}

static void machine_event(struct machine *m, enum machine_event ev, int cause)
{
    if (ev == MACHINE_EVENT_RESET) {
        bool host = qmp_reset_requested;

        qmp_reset_requested = false;
        qmp_event_send("RESET", json_pack("{s:b,s:s}", "guest", !host, "reason",
                                          host ? "host-qmp-system-reset" : "guest-reset"));
        return;
    }
    bool guest = cause != SHUTDOWN_HOST_QUIT;
    const char *reason = shutdown_reason(cause);

    if (cause == SHUTDOWN_GUEST_RESET && qmp_reset_requested) {
        guest = false;   /* system_reset under -no-reboot */
        reason = "host-qmp-system-reset";
    }
    qmp_run_state = cause == SHUTDOWN_GUEST_PANIC ? QMP_RUN_GUEST_PANICKED : QMP_RUN_SHUTDOWN;
    /* quit announced its SHUTDOWN already, before its reply, as QEMU does */
    if (!(cause == SHUTDOWN_HOST_QUIT && qmp_quit_requested))
        qmp_event_send("SHUTDOWN", json_pack("{s:b,s:s}", "guest", guest, "reason", reason));
    /* -no-shutdown: the VM stops instead of exiting, as QEMU reports it. */
    if (m->cfg && m->cfg->no_shutdown && cause != SHUTDOWN_HOST_QUIT)
        qmp_event_send("STOP", NULL);
}

int monitor_init(struct machine *m)
{
    const struct vm_config *cfg = m->cfg;

    qmp_machine = m;
    qmp_commands_register();
    qmp_stats_register(m);
    m->event_hook = machine_event;
    if (cfg->start_paused) {
        /* The vCPU threads park before running a single instruction. */
        m->paused = true;
        atomic_store(&m->vcpus_should_stop, 1);
        qmp_run_state = QMP_RUN_PRELAUNCH;
    }
    for (int i = 0; i < cfg->nr_qmp; i++) {
        struct qmp_listener *l = &listeners[nr_listeners];
        bool wait;

        if (listener_open(l, cfg->qmp[i], &wait) < 0)
            goto fail;
        nr_listeners++;
        if (main_loop_add_fd(l->fd, EPOLLIN, listener_ready, l) < 0) {
            error_report("-qmp %s: cannot watch the socket", cfg->qmp[i]);
            goto fail;
        }
        if (wait && wait_for_client(l) < 0) {
            error_report("-qmp %s: accept: %s", cfg->qmp[i], strerror(errno));
            goto fail;
        }
    }
    return 0;
fail:
    monitor_cleanup();
    return -1;
}

void monitor_cleanup(void)
{
    uint64_t deadline = clock_ns() + QMP_FLUSH_TIMEOUT_MS * 1000000ULL;

    /* SHUTDOWN is queued by now; give each client a moment to take it. */
    while (clients) {
        struct qmp_client *c = clients;

        while (!c->closing && c->out_len > c->out_off) {
            struct pollfd p = { .fd = c->fd, .events = POLLOUT };
            uint64_t now = clock_ns();

            if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000000) + 1) <= 0)
                break;
            if (client_flush(c) < 0)
                break;
        }
        client_free(c);
    }
    for (int i = 0; i < nr_listeners; i++) {
        main_loop_del_fd(listeners[i].fd);
        close(listeners[i].fd);
        if (listeners[i].unix_path)
            unlink(listeners[i].unix_path);
        free(listeners[i].unix_path);
        free(listeners[i].filename);
        timer_free(listeners[i].retry);
        listeners[i].retry = NULL;
    }
    nr_listeners = 0;
    if (qmp_machine)
        qmp_machine->event_hook = NULL;
    qmp_machine = NULL;
}
