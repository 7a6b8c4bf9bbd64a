/* `vmon stat`: a QMP client that shows VM-exit statistics as a live table,
 * like `perf kvm stat live`.
 *
 *   vmon stat --qmp PATH [--once | -n COUNT] [-d SECS] [--vcpu N] [--total]
 *
 * Every interval it asks query-stats for the vCPU exit counters and prints,
 * sorted by time, what happened since the previous sample (or, with
 * --total and --once, since boot).  Min and max are since boot: the
 * counters keep no per-interval extremes. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "monitor/json_stream.h"
#include "monitor/monitor.h"
#include "monitor/stat_table.h"
#include "util/log.h"
#include "util/types.h"

#include <jansson.h>

#define STAT_MAX_ROWS 32
#define STAT_TIMEOUT_MS 5000

struct stat_conn {
    int fd;
    struct json_stream in;
    json_t *msg;          /* the message the callback stopped on */
};

static int stat_connect(const char *where)
{
    int fd;

    if (!strncmp(where, "tcp:", 4)) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
        struct addrinfo *ai;
        char host[256], *port;
        int r;

        snprintf(host, sizeof(host), "%s", where + 4);
        port = strrchr(host, ':');
        if (!port) {
            error_report("--qmp %s: expected tcp:HOST:PORT", where);
            return -1;
        }
        *port++ = '\0';
        r = getaddrinfo(host, port, &hints, &ai);
        if (r) {
            error_report("--qmp %s: %s", where, gai_strerror(r));
            return -1;
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
        freeaddrinfo(ai);
    } else {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = strncmp(where, "unix:", 5) ? where : where + 5;

        if (strlen(path) >= sizeof(sa.sun_path)) {
            error_report("--qmp %s: socket path too long", where);
            return -1;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        error_report("--qmp %s: cannot connect: %s", where, strerror(errno));
    return fd;
}

static int take_message(void *opaque, const char *text, size_t len, int err)
{
    struct stat_conn *c = opaque;

    if (err)
        return 0;
    c->msg = json_loadb(text, len, 0, NULL);
    return c->msg != NULL;
}

/* The next message that is not an event, or NULL on error/timeout. */
static json_t *stat_recv(struct stat_conn *c)
{
    for (;;) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        char buf[65536];
        ssize_t n;

        c->msg = NULL;
        json_stream_feed(&c->in, NULL, 0, take_message, c);
        while (!c->msg) {
            if (poll(&p, 1, STAT_TIMEOUT_MS) <= 0)
                return NULL;
            n = read(c->fd, buf, sizeof(buf));
            if (n <= 0)
                return NULL;
            json_stream_feed(&c->in, buf, (size_t)n, take_message, c);
        }
        if (!json_object_get(c->msg, "event"))
            return c->msg;
        json_decref(c->msg);
    }
}

static json_t *stat_execute(struct stat_conn *c, const char *request)
{
    size_t len = strlen(request);
    json_t *reply, *ret;

    /* MSG_NOSIGNAL: a vmon that went away is an error, not a SIGPIPE. */
    if (send(c->fd, request, len, MSG_NOSIGNAL) != (ssize_t)len)
        return NULL;
    reply = stat_recv(c);
    if (!reply)
        return NULL;
    ret = json_object_get(reply, "return");
    if (!ret) {
        json_t *e = json_object_get(reply, "error");

        error_report("QMP error: %s", e ? json_string_value(json_object_get(e, "desc")) : "?");
        json_decref(reply);
        return NULL;
    }
    json_incref(ret);
    json_decref(reply);
    return ret;
}

static int find_row(struct stat_row *rows, int *nr, const char *reason, size_t len)
{
    char upper[32];

    if (len >= sizeof(upper))
        len = sizeof(upper) - 1;
    for (size_t i = 0; i < len; i++)
        upper[i] = (char)(reason[i] >= 'a' && reason[i] <= 'z' ? reason[i] - 32 : reason[i]);
    upper[len] = '\0';
    for (int i = 0; i < *nr; i++)
        if (!strcmp(rows[i].reason, upper))
            return i;
    if (*nr >= STAT_MAX_ROWS)
        return -1;
    memset(&rows[*nr], 0, sizeof(rows[*nr]));
    strcpy(rows[*nr].reason, upper);
    return (*nr)++;
}

/* Fold query-stats results into rows: "<reason>_exits", "_exit_time",
 * "_exit_time_min", "_exit_time_max", summed over the chosen vCPUs. */
static int fold_stats(json_t *results, int vcpu, struct stat_row *rows)
{
    static const char *const suffix[] = { "_exit_time_min", "_exit_time_max", "_exit_time",
                                          "_exits" };
    int nr = 0;
    size_t i, j;
    json_t *res, *st;

    json_array_foreach(results, i, res) {
        const char *path = json_string_value(json_object_get(res, "qom-path"));
        char want[64];

        snprintf(want, sizeof(want), "/machine/unattached/device[%d]", vcpu);
        if (vcpu >= 0 && (!path || strcmp(path, want)))
            continue;
        json_array_foreach(json_object_get(res, "stats"), j, st) {
            const char *name = json_string_value(json_object_get(st, "name"));
            json_t *val = json_object_get(st, "value");
            uint64_t v;
            size_t nl;

            if (!name || !json_is_integer(val))
                continue;
            v = (uint64_t)json_integer_value(val);
            nl = strlen(name);
            for (int s = 0; s < 4; s++) {
                size_t sl = strlen(suffix[s]);
                struct stat_row *r;
                int k;

                if (nl <= sl || strcmp(name + nl - sl, suffix[s]))
                    continue;
                k = find_row(rows, &nr, name, nl - sl);
                if (k < 0)
                    break;
                r = &rows[k];
                if (s == 0 && v && (!r->min_ns || v < r->min_ns))
                    r->min_ns = v;
                else if (s == 1 && v > r->max_ns)
                    r->max_ns = v;
                else if (s == 2)
                    r->total_ns += v;
                else if (s == 3)
                    r->count += v;
                break;
            }
        }
    }
    return nr;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vmon stat --qmp PATH|unix:PATH|tcp:HOST:PORT [options]\n"
               "Live VM-exit statistics of a running vmon, like perf kvm stat live.\n\n"
               "  --qmp ADDR     the vmon's QMP socket (-qmp unix:PATH,server=on,wait=off)\n"
               "  -d, --delay S  refresh interval in seconds (default 1)\n"
               "  -n, --count N  print N tables, then exit\n"
               "  --once         print the totals since boot once and exit\n"
               "  --total        show totals since boot instead of per interval\n"
               "  --vcpu N       only vCPU N (default: all)\n"
               "  -h, --help     this help\n");
}

int monitor_stat_main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "qmp", required_argument, NULL, 'q' }, { "delay", required_argument, NULL, 'd' },
        { "count", required_argument, NULL, 'n' }, { "once", no_argument, NULL, 'o' },
        { "total", no_argument, NULL, 't' }, { "vcpu", required_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    struct stat_row prev[STAT_MAX_ROWS], cur[STAT_MAX_ROWS], show[STAT_MAX_ROWS];
    const char *qmp = NULL;
    double delay = 1.0;
    long count = -1;
    bool total = false, tty = isatty(STDOUT_FILENO);
    int vcpu = -1, nr_prev = 0, opt, status = 1;
    struct stat_conn c = { .fd = -1 };
    json_t *r;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "d:n:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'q': qmp = optarg; break;
        case 'd': delay = atof(optarg); break;
        case 'n': count = atol(optarg); break;
        case 'o': count = 1; total = true; break;
        case 't': total = true; break;
        case 'v': vcpu = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (!qmp || optind != argc || delay <= 0 || count == 0) {
        usage(stderr);
        return 1;
    }
    c.fd = stat_connect(qmp);
    if (c.fd < 0)
        return 1;
    json_stream_init(&c.in, 16 << 20);
    r = stat_recv(&c);                       /* the greeting */
    if (!r || !json_object_get(r, "QMP")) {
        error_report("--qmp %s: no QMP greeting", qmp);
        goto out;
    }
    json_decref(r);
    r = stat_execute(&c, "{\"execute\": \"qmp_capabilities\"}\n");
    if (!r)
        goto out;
    json_decref(r);

    if (!total) {     /* the baseline the first interval is measured from */
        r = stat_execute(&c, "{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"vcpu\"}}\n");
        if (!r)
            goto out;
        nr_prev = fold_stats(r, vcpu, prev);
        json_decref(r);
    }
    for (long i = 0; count < 0 || i < count; i++) {
        struct timespec ts = { (time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9) };
        int nr;

        if (!(total && count == 1))
            nanosleep(&ts, NULL);
        r = stat_execute(&c, "{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"vcpu\"}}\n");
        if (!r) {
            status = i ? 0 : 1;    /* the VM went away */
            goto out;
        }
        nr = fold_stats(r, vcpu, cur);
        json_decref(r);
        memcpy(show, cur, sizeof(cur[0]) * (size_t)nr);
        if (!total) {
            for (int k = 0; k < nr; k++) {
                for (int p = 0; p < nr_prev; p++) {
                    if (!strcmp(prev[p].reason, cur[k].reason)) {
                        show[k].count -= MIN(prev[p].count, cur[k].count);
                        show[k].total_ns -= MIN(prev[p].total_ns, cur[k].total_ns);
                    }
                }
            }
            memcpy(prev, cur, sizeof(cur[0]) * (size_t)nr);
            nr_prev = nr;
        }
        stat_rows_sort(show, nr);
        if (tty && count != 1)
            fputs("\033[H\033[2J", stdout);
        printf("\nAnalyze events for %s:\n\n", vcpu < 0 ? "all VCPUs" : "one VCPU");
        stat_table_print(stdout, show, nr);
        fflush(stdout);
    }
    status = 0;
out:
    json_stream_destroy(&c.in);
    close(c.fd);
    return status;
}
