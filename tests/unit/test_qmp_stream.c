/* The QMP input splitter: values come out whole however the bytes arrive,
 * strings and escapes never confuse the depth count, and oversized or
 * over-deep input is reported once without losing what follows. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/json_stream.h"

struct seen {
    char text[8][256];
    int err[8];
    int n;
    int stop_after;     /* return 1 after this many values (0: never) */
};

static int collect(void *opaque, const char *text, size_t len, int err)
{
    struct seen *s = opaque;

    assert_true(s->n < 8);
    s->err[s->n] = err;
    if (text) {
        assert_true(len < sizeof(s->text[0]));
        memcpy(s->text[s->n], text, len);
        s->text[s->n][len] = '\0';
    }
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static void feed_str(struct json_stream *js, const char *str, struct seen *s)
{
    json_stream_feed(js, str, strlen(str), collect, s);
}

static void two_objects_in_one_read(void **state)
{
    struct json_stream js;
    struct seen s = { 0 };

    json_stream_init(&js, 4096);
    feed_str(&js, "{\"execute\": \"stop\"}\r\n  {\"execute\":\"cont\",\"id\":[1,{}]}", &s);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.text[0], "{\"execute\": \"stop\"}");
    assert_string_equal(s.text[1], "{\"execute\":\"cont\",\"id\":[1,{}]}");
    json_stream_destroy(&js);
}

static void byte_at_a_time(void **state)
{
    const char *in = "{\"a\": [1, {\"b\": \"x\"}]}[2]";
    struct json_stream js;
    struct seen s = { 0 };

    json_stream_init(&js, 4096);
    for (size_t i = 0; in[i]; i++) {
        json_stream_feed(&js, &in[i], 1, collect, &s);
        if (i < 21)
            assert_int_equal(s.n, 0);
    }
    assert_int_equal(s.n, 2);
    assert_string_equal(s.text[0], "{\"a\": [1, {\"b\": \"x\"}]}");
    assert_string_equal(s.text[1], "[2]");
    json_stream_destroy(&js);
}

static void brackets_inside_strings(void **state)
{
    struct json_stream js;
    struct seen s = { 0 };

    json_stream_init(&js, 4096);
    feed_str(&js, "{\"a\": \"}{]\\\"[\\\\\"}{\"b\":1}", &s);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.text[0], "{\"a\": \"}{]\\\"[\\\\\"}");
    assert_string_equal(s.text[1], "{\"b\":1}");
    json_stream_destroy(&js);
}

static void scalars_and_stray_closers(void **state)
{
    struct json_stream js;
    struct seen s = { 0 };

    json_stream_init(&js, 4096);
    feed_str(&js, "42 \"x y\" true}", &s);
    /* "true" is only known complete once a delimiter follows: the '}'. */
    assert_int_equal(s.n, 4);
    assert_string_equal(s.text[0], "42");
    assert_string_equal(s.text[1], "\"x y\"");
    assert_string_equal(s.text[2], "true");
    assert_string_equal(s.text[3], "}");
    feed_str(&js, "nul", &s);
    assert_int_equal(s.n, 4);
    feed_str(&js, "l\n", &s);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.text[4], "null");
    json_stream_destroy(&js);
}

static void oversized_value_is_skipped(void **state)
{
    struct json_stream js;
    struct seen s = { 0 };
    char big[300];

    json_stream_init(&js, 64);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    feed_str(&js, "{\"k\": \"", &s);
    feed_str(&js, big, &s);
    feed_str(&js, big, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.err[0], -E2BIG);
    /* The bad value's own closing brace is not a new value. */
    feed_str(&js, "\"}{\"ok\":1}", &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.err[1], 0);
    assert_string_equal(s.text[1], "{\"ok\":1}");
    /* Memory stays bounded while skipping. */
    assert_true(js.cap <= 4096);
    json_stream_destroy(&js);
}

static void too_deep_is_reported_once(void **state)
{
    struct json_stream js;
    struct seen s = { 0 };
    char *deep = malloc(2 * (JSON_STREAM_MAX_DEPTH + 10) + 1);
    size_t n = 0;

    for (int i = 0; i < JSON_STREAM_MAX_DEPTH + 10; i++)
        deep[n++] = '[';
    for (int i = 0; i < JSON_STREAM_MAX_DEPTH + 10; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    json_stream_init(&js, 1 << 20);
    feed_str(&js, deep, &s);
    feed_str(&js, "[1]", &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.err[0], -ELOOP);
    assert_string_equal(s.text[1], "[1]");
    json_stream_destroy(&js);
    free(deep);
}

static void stop_and_resume(void **state)
{
    struct json_stream js;
    struct seen s = { .stop_after = 1 };

    json_stream_init(&js, 4096);
    assert_int_equal(json_stream_feed(&js, "{}[]", 4, collect, &s), 1);
    assert_int_equal(s.n, 1);
    s.stop_after = 0;
    assert_int_equal(json_stream_feed(&js, NULL, 0, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.text[1], "[]");
    json_stream_destroy(&js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_objects_in_one_read),
        cmocka_unit_test(byte_at_a_time),
        cmocka_unit_test(brackets_inside_strings),
        cmocka_unit_test(scalars_and_stray_closers),
        cmocka_unit_test(oversized_value_is_skipped),
        cmocka_unit_test(too_deep_is_reported_once),
        cmocka_unit_test(stop_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
