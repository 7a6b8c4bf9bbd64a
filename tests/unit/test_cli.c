/* The command line: sizes, CPU counts, accelerators, serial backends, and
 * every error path returning -1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "config/config.h"

static int parse(struct vm_config *cfg, const char *const *args)
{
    char *argv[32];
    int argc = 0;

    argv[argc++] = (char *)"vmon";
    while (*args)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    return config_parse_cli(cfg, argc, argv);
}

static void sizes(void **state)
{
    uint64_t v;

    assert_int_equal(parse_size("256", 1 << 20, &v), 0);
    assert_int_equal(v, 256ULL << 20);
    assert_int_equal(parse_size("256M", 1, &v), 0);
    assert_int_equal(v, 256ULL << 20);
    assert_int_equal(parse_size("1G", 1, &v), 0);
    assert_int_equal(v, 1ULL << 30);
    assert_int_equal(parse_size("2GiB", 1, &v), 0);
    assert_int_equal(v, 2ULL << 30);
    assert_int_equal(parse_size("512k", 1, &v), 0);
    assert_int_equal(v, 512ULL << 10);
    assert_int_equal(parse_size("", 1, &v), -1);
    assert_int_equal(parse_size("-1", 1, &v), -1);
    assert_int_equal(parse_size("12Q", 1, &v), -1);
    assert_int_equal(parse_size("1GX", 1, &v), -1);
    assert_int_equal(parse_size("99999999999999999999", 1, &v), -1);
    assert_int_equal(parse_size("17179869184T", 1, &v), -1);
}

static void good_command_line(void **state)
{
    struct vm_config cfg;
    const char *args[] = { "-kernel", "/dev/null", "-m", "1G", "-smp", "2", "-accel", "tcg",
                           "-append", "console=ttyS0", "-nographic", "-no-reboot",
                           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                           "--name", "g1", NULL };

    assert_int_equal(parse(&cfg, args), 0);
    assert_int_equal(cfg.ram_size, 1ULL << 30);
    assert_int_equal(cfg.smp, 2);
    assert_string_equal(cfg.accel, "tcg");
    assert_string_equal(cfg.append, "console=ttyS0");
    assert_true(cfg.nographic);
    assert_true(cfg.no_reboot);
    assert_int_equal(cfg.nr_devices, 1);
    assert_string_equal(cfg.name, "g1");
    assert_int_equal(cfg.serial, SERIAL_STDIO);
}

static void defaults(void **state)
{
    struct vm_config cfg;
    const char *a1[] = { "-kernel", "/dev/null", NULL };
    const char *a2[] = { "-kernel", "/dev/null", "-nodefaults", NULL };
    const char *a3[] = { "-kernel", "/dev/null", "-serial", "file:/tmp/x", NULL };
    const char *a4[] = { "-kernel", "/dev/null", "-enable-kvm", "-smp", "cpus=4,sockets=2,cores=2", NULL };

    assert_int_equal(parse(&cfg, a1), 0);
    assert_int_equal(cfg.ram_size, 128ULL << 20);
    assert_int_equal(cfg.smp, 1);
    assert_string_equal(cfg.accel, "auto");
    assert_int_equal(cfg.serial, SERIAL_STDIO);
    assert_int_equal(parse(&cfg, a2), 0);
    assert_int_equal(cfg.serial, SERIAL_NONE);
    assert_int_equal(parse(&cfg, a3), 0);
    assert_int_equal(cfg.serial, SERIAL_FILE);
    assert_string_equal(cfg.serial_path, "/tmp/x");
    assert_int_equal(parse(&cfg, a4), 0);
    assert_string_equal(cfg.accel, "kvm");
    assert_int_equal(cfg.smp, 4);
}

static void errors(void **state)
{
    static const char *const cases[][8] = {
        { "-bogus", NULL },
        { "-kernel", NULL },
        { "-kernel", "/nonexistent/kernel", NULL },
        { "-kernel", "/dev/null", "-m", "abc", NULL },
        { "-kernel", "/dev/null", "-m", "1M", NULL },
        { "-kernel", "/dev/null", "-m", "0", NULL },
        { "-kernel", "/dev/null", "-m", "4097K", NULL },
        { "-kernel", "/dev/null", "-smp", "0", NULL },
        { "-kernel", "/dev/null", "-smp", "65", NULL },
        { "-kernel", "/dev/null", "-smp", "cpus=4,sockets=3", NULL },
        { "-kernel", "/dev/null", "-smp", "cpus=2,bogus=1", NULL },
        { "-kernel", "/dev/null", "-accel", "xen", NULL },
        { "-kernel", "/dev/null", "-serial", "pty", NULL },
        { "-kernel", "/dev/null", "-display", "gtk", NULL },
        { "-kernel", "/dev/null", "stray", NULL },
        { "-m", "256", NULL },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vm_config cfg;
        assert_int_equal(parse(&cfg, (const char *const *)cases[i]), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sizes),
        cmocka_unit_test(good_command_line),
        cmocka_unit_test(defaults),
        cmocka_unit_test(errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
