/* Splitting a byte stream into JSON values (QMP input).
 *
 * QMP input is a sequence of JSON texts with no framing.  The splitter
 * tracks bracket depth, strings and escapes incrementally, so each byte is
 * scanned once however the input is fragmented, and hands every complete
 * top-level value to a callback for a real JSON parser to check.  A value
 * larger than the cap, or nested deeper than JSON_STREAM_MAX_DEPTH, is
 * reported once and skipped to its end, so the stream stays usable. */
#ifndef VMON_MONITOR_JSON_STREAM_H
#define VMON_MONITOR_JSON_STREAM_H

#include "util/types.h"

#define JSON_STREAM_MAX_DEPTH 1024

struct json_stream {
    char *buf;
    size_t len, cap;
    size_t max;         /* largest value passed on */
    size_t pos;         /* next byte to scan */
    size_t start;       /* first byte of the value being scanned */
    int depth;
    bool in_value, in_string, escape, in_scalar;
    bool skipping;      /* inside a value already reported as bad */
};

/* Called for each value: text/len is the value, or err is -E2BIG (too
 * large) or -ELOOP (too deep) and text is NULL.  Return non-zero to stop
 * scanning; the rest stays buffered for the next json_stream_feed(). */
typedef int (*json_stream_fn)(void *opaque, const char *text, size_t len, int err);

void json_stream_init(struct json_stream *s, size_t max);
void json_stream_destroy(struct json_stream *s);
/* Append data (may be NULL/0 to resume a stopped scan) and scan.  Returns
 * the callback's non-zero value if it stopped, -ENOMEM, or 0. */
int json_stream_feed(struct json_stream *s, const char *data, size_t len,
                     json_stream_fn fn, void *opaque);

#endif
