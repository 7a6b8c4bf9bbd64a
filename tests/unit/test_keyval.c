/* QEMU-style option strings: driver first, key=val pairs, ",," escapes,
 * numbers with range checks, and unknown or malformed keys refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/keyval.h"

static void test_driver_and_numbers(void **st)
{
    struct keyval kv;
    uint64_t base, size;

    assert_int_equal(keyval_parse(&kv, "isa-debug-exit,iobase=0xf4,iosize=0x04", true, "t"), 0);
    assert_string_equal(kv.driver, "isa-debug-exit");
    assert_int_equal(kv.nr_items, 2);
    assert_int_equal(keyval_get_u64(&kv, "iobase", 0x501, 0xffff, &base), 0);
    assert_int_equal(keyval_get_u64(&kv, "iosize", 2, 0xffff, &size), 0);
    assert_int_equal(base, 0xf4);
    assert_int_equal(size, 4);
    assert_int_equal(keyval_check_unused(&kv), 0);
    keyval_free(&kv);
}

static void test_defaults_and_bare_driver(void **st)
{
    struct keyval kv;
    uint64_t v;
    bool b;

    assert_int_equal(keyval_parse(&kv, "isa-debug-exit", true, "t"), 0);
    assert_string_equal(kv.driver, "isa-debug-exit");
    assert_int_equal(kv.nr_items, 0);
    assert_int_equal(keyval_get_u64(&kv, "iobase", 0x501, 0xffff, &v), 0);
    assert_int_equal(v, 0x501);
    assert_int_equal(keyval_get_bool(&kv, "x", true, &b), 0);
    assert_true(b);
    keyval_free(&kv);
}

static void test_comma_escape(void **st)
{
    struct keyval kv;

    assert_int_equal(keyval_parse(&kv, "drv,path=/a,,b,,,c=1", true, "t"), 0);
    assert_string_equal(keyval_get(&kv, "path"), "/a,b,");
    assert_string_equal(keyval_get(&kv, "c"), "1");
    keyval_free(&kv);
}

static void test_unknown_key(void **st)
{
    struct keyval kv;
    uint64_t v;

    assert_int_equal(keyval_parse(&kv, "drv,iobase=1,bogus=2", true, "t"), 0);
    assert_int_equal(keyval_get_u64(&kv, "iobase", 0, 0xffff, &v), 0);
    assert_int_equal(keyval_check_unused(&kv), -EINVAL);
    keyval_free(&kv);
}

static void test_bad_values(void **st)
{
    static const char *const bad[] = { "x", "", "-1", "0x10000", "12abc", "99999999999999999999" };
    struct keyval kv;
    uint64_t v;
    bool b;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char s[64];
        snprintf(s, sizeof(s), "drv,n=%s", bad[i]);
        assert_int_equal(keyval_parse(&kv, s, true, "t"), 0);
        assert_int_equal(keyval_get_u64(&kv, "n", 0, 0xffff, &v), -EINVAL);
        keyval_free(&kv);
    }
    assert_int_equal(keyval_parse(&kv, "drv,b=maybe", true, "t"), 0);
    assert_int_equal(keyval_get_bool(&kv, "b", false, &b), -EINVAL);
    keyval_free(&kv);
}

static void test_malformed(void **st)
{
    struct keyval kv;

    assert_int_equal(keyval_parse(&kv, "", true, "t"), -EINVAL);
    assert_int_equal(keyval_parse(&kv, "a=b", true, "t"), -EINVAL);      /* no driver */
    assert_int_equal(keyval_parse(&kv, "drv,novalue", true, "t"), -EINVAL);
    assert_int_equal(keyval_parse(&kv, "drv,=v", true, "t"), -EINVAL);
    assert_int_equal(keyval_parse(&kv, "drv,a=1,a=2", true, "t"), -EINVAL);
    assert_null(kv.items);
    /* Without a driver, every element is key=val. */
    assert_int_equal(keyval_parse(&kv, "a=1,b=", false, "t"), 0);
    assert_null(kv.driver);
    assert_string_equal(keyval_get(&kv, "b"), "");
    keyval_free(&kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_driver_and_numbers),
        cmocka_unit_test(test_defaults_and_bare_driver),
        cmocka_unit_test(test_comma_escape),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
