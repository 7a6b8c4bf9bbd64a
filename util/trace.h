/* Trace events: named points in the code, off by default, enabled with
 * -trace PATTERN (glob) and written one line each, with a timestamp, to
 * stderr or -trace file=PATH.
 *
 *     TRACE(pio_write, "port=0x%x size=%u val=0x%llx", port, size, val);
 *
 * Each TRACE() site owns a static descriptor placed in the "vmon_trace"
 * section, so adding an event needs no central list: -trace walks the
 * section.  Disabled, a site costs one load and one predicted branch; the
 * arguments are not evaluated.  Names are lower_case, subsystem first
 * (virtqueue_pop, blk_write); arguments are key=value pairs separated by
 * spaces so scripts/trace-analyse.py can read them (docs/tracing.md). */
#ifndef VMON_UTIL_TRACE_H
#define VMON_UTIL_TRACE_H

#include "util/types.h"

struct trace_event {
    const char *name;
    bool enabled;
} __attribute__((aligned(16)));

void trace_emit(const struct trace_event *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define TRACE(event, fmt, ...)                                                 \
    do {                                                                       \
        static struct trace_event trace_ev_                                    \
            __attribute__((section("vmon_trace"), used)) = { .name = #event }; \
        if (unlikely(__atomic_load_n(&trace_ev_.enabled, __ATOMIC_RELAXED)))   \
            trace_emit(&trace_ev_, fmt, ##__VA_ARGS__);                        \
    } while (0)

/* One -trace argument: [enable=]PATTERN, events=FILE, file=PATH, joined by
 * commas.  A pattern starting with '-' disables.  Returns 0, 1 after
 * printing the event list ("help"), or -1 after error_report(). */
int trace_parse_option(const char *arg);
/* Enable (or disable) every event matching a glob; returns how many. */
int trace_enable_pattern(const char *pattern, bool enable);
/* Write trace output to path (NULL: stderr).  Returns 0 or -errno. */
int trace_set_file(const char *path);
/* Flush buffered trace output (also done at exit). */
void trace_flush(void);
/* Visit every event compiled in, for -trace help and tests. */
void trace_foreach(void (*fn)(const struct trace_event *ev, void *opaque), void *opaque);

#endif
