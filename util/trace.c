/* Trace events: -trace parsing, enabling by glob, and the line writer.
 * Output lines are "<ns> <event> <args>\n" where ns is CLOCK_MONOTONIC. */
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/trace.h"

/* The linker provides these for the section TRACE() sites live in.  A
 * binary without any site has no section, hence weak. */
extern struct trace_event __start_vmon_trace[] __attribute__((weak));
extern struct trace_event __stop_vmon_trace[] __attribute__((weak));

static pthread_mutex_t trace_mutex = PTHREAD_MUTEX_INITIALIZER;
static FILE *trace_out;
static bool trace_atexit_done;

void trace_foreach(void (*fn)(const struct trace_event *ev, void *opaque), void *opaque)
{
    for (struct trace_event *ev = __start_vmon_trace; ev && ev < __stop_vmon_trace; ev++)
        fn(ev, opaque);
}

int trace_enable_pattern(const char *pattern, bool enable)
{
    int n = 0;

    for (struct trace_event *ev = __start_vmon_trace; ev && ev < __stop_vmon_trace; ev++) {
        if (fnmatch(pattern, ev->name, 0) == 0) {
            __atomic_store_n(&ev->enabled, enable, __ATOMIC_RELAXED);
            n++;
        }
    }
    return n;
}

void trace_flush(void)
{
    pthread_mutex_lock(&trace_mutex);
    if (trace_out)
        fflush(trace_out);
    pthread_mutex_unlock(&trace_mutex);
}

static void trace_at_exit(void)
{
    trace_flush();
}

int trace_set_file(const char *path)
{
    FILE *f = stderr;

    if (path) {
        f = fopen(path, "we");
        if (!f)
            return -errno;
        setvbuf(f, NULL, _IOFBF, 1 << 16);
    }
    pthread_mutex_lock(&trace_mutex);
    if (trace_out && trace_out != stderr)
        fclose(trace_out);
    trace_out = f;
    pthread_mutex_unlock(&trace_mutex);
    if (!trace_atexit_done) {
        atexit(trace_at_exit);
        trace_atexit_done = true;
    }
    return 0;
}

void trace_emit(const struct trace_event *ev, const char *fmt, ...)
{
    struct timespec ts;
    char line[512];
    int n;
    va_list ap;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    n = snprintf(line, sizeof(line), "%llu %s ",
                 (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec,
                 ev->name);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&trace_mutex);
    fputs(line, trace_out ? trace_out : stderr);
    fputc('\n', trace_out ? trace_out : stderr);
    pthread_mutex_unlock(&trace_mutex);
}

static void print_event(const struct trace_event *ev, void *opaque)
{
    const struct trace_event *first = __start_vmon_trace;

    /* Several sites may share a name; list it once. */
    for (const struct trace_event *e = first; e < ev; e++)
        if (!strcmp(e->name, ev->name))
            return;
    printf("%s\n", ev->name);
}

static int enable_checked(const char *pattern, const char *context)
{
    bool enable = pattern[0] != '-';
    const char *glob = enable ? pattern : pattern + 1;

    if (!strcmp(glob, "help")) {
        trace_foreach(print_event, NULL);
        return 1;
    }
    if (!*glob) {
        error_report("-trace %s: empty event pattern", context);
        return -1;
    }
    if (trace_enable_pattern(glob, enable) == 0 && !strpbrk(glob, "*?["))
        warn_report("-trace %s: no trace event named '%s' (-trace help lists them)",
                    context, glob);
    if (!trace_out)
        trace_out = stderr;
    return 0;
}

static int enable_from_file(const char *path, const char *context)
{
    FILE *f = fopen(path, "re");
    char line[256];
    int ret = 0;

    if (!f) {
        error_report("-trace %s: events file %s: %s", context, path, strerror(errno));
        return -1;
    }
    while (!ret && fgets(line, sizeof(line), f)) {
        char *s = line, *e;

        while (*s == ' ' || *s == '\t')
            s++;
        e = s + strcspn(s, "\r\n#");
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *e = '\0';
        if (*s)
            ret = enable_checked(s, context);
    }
    fclose(f);
    return ret;
}

int trace_parse_option(const char *arg)
{
    char *copy = strdup(arg), *save = NULL, *tok;
    int ret = 0;

    if (!copy)
        return -1;
    for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
        if (!strncmp(tok, "enable=", 7)) {
            ret = enable_checked(tok + 7, arg);
        } else if (!strncmp(tok, "events=", 7)) {
            ret = enable_from_file(tok + 7, arg);
        } else if (!strncmp(tok, "file=", 5)) {
            int r = trace_set_file(tok + 5);

            if (r < 0) {
                error_report("-trace %s: cannot open %s: %s", arg, tok + 5, strerror(-r));
                ret = -1;
            }
        } else if (strchr(tok, '=')) {
            error_report("-trace %s: unknown property (enable=, events=, file=)", arg);
            ret = -1;
        } else {
            ret = enable_checked(tok, arg);
        }
    }
    free(copy);
    return ret;
}
