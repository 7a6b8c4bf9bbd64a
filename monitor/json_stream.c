/* Incremental JSON value splitter; see json_stream.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/json_stream.h"

void json_stream_init(struct json_stream *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max;
}

void json_stream_destroy(struct json_stream *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = s->pos = s->start = 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool ends_scalar(char c)
{
    return is_space(c) || strchr("{}[]\",:", c) != NULL;
}

static void value_done(struct json_stream *s)
{
    s->in_value = s->in_string = s->escape = s->in_scalar = false;
    s->depth = 0;
}

/* Drop the scanned bytes that no value needs any more. */
static void compact(struct json_stream *s)
{
    size_t keep_from = s->in_value && !s->skipping ? s->start : s->pos;

    if (keep_from == 0)
        return;
    memmove(s->buf, s->buf + keep_from, s->len - keep_from);
    s->len -= keep_from;
    s->pos -= keep_from;
    s->start = s->start > keep_from ? s->start - keep_from : 0;
}

static int append(struct json_stream *s, const char *data, size_t len)
{
    if (!len)
        return 0;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        char *b;

        while (cap < s->len + len)
            cap *= 2;
        b = realloc(s->buf, cap);
        if (!b)
            return -ENOMEM;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 0;
}

/* A value ended at s->pos (exclusive). */
static int emit(struct json_stream *s, json_stream_fn fn, void *opaque)
{
    bool skipped = s->skipping;
    size_t start = s->start;

    value_done(s);
    s->skipping = false;
    s->start = s->pos;
    if (skipped)
        return 0;
    return fn(opaque, s->buf + start, s->pos - start, 0);
}

static int fail(struct json_stream *s, json_stream_fn fn, void *opaque, int err)
{
    s->skipping = true;
    return fn(opaque, NULL, 0, err);
}

int json_stream_feed(struct json_stream *s, const char *data, size_t len,
                     json_stream_fn fn, void *opaque)
{
    int ret = append(s, data, len);

    if (ret < 0)
        return ret;
    while (s->pos < s->len && !ret) {
        char c = s->buf[s->pos];

        if (!s->in_value) {
            s->pos++;
            if (is_space(c))
                continue;
            s->in_value = true;
            s->start = s->pos - 1;
            if (c == '{' || c == '[')
                s->depth = 1;
            else if (c == '"')
                s->in_string = true;
            else if (c == '}' || c == ']')
                ret = emit(s, fn, opaque);    /* the parser explains it */
            else
                s->in_scalar = true;
        } else if (s->in_string) {
            s->pos++;
            if (s->escape)
                s->escape = false;
            else if (c == '\\')
                s->escape = true;
            else if (c == '"') {
                s->in_string = false;
                if (s->depth == 0)
                    ret = emit(s, fn, opaque);
            }
        } else if (s->in_scalar) {
            if (ends_scalar(c))
                ret = emit(s, fn, opaque);   /* c belongs to what follows */
            else
                s->pos++;
        } else {
            s->pos++;
            if (c == '"') {
                s->in_string = true;
            } else if (c == '{' || c == '[') {
                if (++s->depth > JSON_STREAM_MAX_DEPTH && !s->skipping)
                    ret = fail(s, fn, opaque, -ELOOP);
            } else if (c == '}' || c == ']') {
                if (--s->depth == 0)
                    ret = emit(s, fn, opaque);
            }
        }
        if (!ret && s->in_value && !s->skipping && s->pos - s->start > s->max)
            ret = fail(s, fn, opaque, -E2BIG);
    }
    compact(s);
    return ret;
}
