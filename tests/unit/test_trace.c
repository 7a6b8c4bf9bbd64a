/* Trace events: every TRACE() site is found by -trace patterns, a disabled
 * site does not even evaluate its arguments, enabled ones write
 * "<ns> <name> <args>" lines, and -trace's option syntax (enable=, events=,
 * file=, "-pattern") does what QEMU's does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/trace.h"

static int evaluated;

static int side_effect(int v)
{
    evaluated++;
    return v;
}

static void fire_a(int v)
{
    TRACE(ttest_alpha, "v=%d", side_effect(v));
}

static void fire_b(const char *s)
{
    TRACE(ttest_beta, "s=%s", s);
}

static char path[64];

static char *slurp(void)
{
    static char buf[4096];
    FILE *f;
    size_t n;

    trace_flush();
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int setup(void **state)
{
    int fd;

    strcpy(path, "/tmp/vmon-test-trace-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(trace_set_file(path), 0);
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    return 0;
}

static void disabled_costs_nothing(void **state)
{
    evaluated = 0;
    trace_enable_pattern("*", false);
    fire_a(1);
    fire_b("x");
    assert_int_equal(evaluated, 0);
    assert_string_equal(slurp(), "");
}

static void globs_select_events(void **state)
{
    unsigned long long ns;
    char name[32];
    int v;

    assert_int_equal(trace_enable_pattern("ttest_*", true), 2);
    assert_int_equal(trace_enable_pattern("ttest_beta", false), 1);
    evaluated = 0;
    fire_a(42);
    fire_b("nope");
    assert_int_equal(evaluated, 1);
    assert_int_equal(sscanf(slurp(), "%llu %31s v=%d\n", &ns, name, &v), 3);
    assert_true(ns > 0);
    assert_string_equal(name, "ttest_alpha");
    assert_int_equal(v, 42);
    assert_null(strstr(slurp(), "ttest_beta"));
}

static void option_syntax(void **state)
{
    char events[64];
    FILE *f;
    int fd;

    trace_enable_pattern("*", false);
    assert_int_equal(setup(NULL), 0);
    /* "-pattern" disables what an earlier pattern enabled */
    assert_int_equal(trace_parse_option("ttest_*"), 0);
    assert_int_equal(trace_parse_option("-ttest_alpha"), 0);
    fire_a(1);
    fire_b("b1");
    assert_string_equal(strchr(slurp(), ' ') + 1, "ttest_beta s=b1\n");

    strcpy(events, "/tmp/vmon-test-events-XXXXXX");
    fd = mkstemp(events);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs("# a comment\n\n  ttest_alpha  \n-ttest_beta\n", f);
    fclose(f);
    unlink(path);
    {
        char opt[160];

        snprintf(opt, sizeof(opt), "events=%s,file=%s", events, path);
        assert_int_equal(trace_parse_option(opt), 0);
    }
    fire_a(5);
    fire_b("b2");
    assert_string_equal(strchr(slurp(), ' ') + 1, "ttest_alpha v=5\n");
    unlink(events);

    assert_int_equal(trace_parse_option("enable=ttest_beta"), 0);
    assert_int_equal(trace_parse_option("bogus=1"), -1);
    assert_int_equal(trace_parse_option("events=/nonexistent/file"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disabled_costs_nothing),
        cmocka_unit_test(globs_select_events),
        cmocka_unit_test(option_syntax),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
