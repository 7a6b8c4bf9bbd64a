/* fw_cfg port interface: signature, ID, RAM size, CPU count, the file
 * directory and etc/e820, and hostile use (unknown keys, reads past the
 * end, data port writes, odd access sizes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "hw/fw_cfg.h"
#include "hw/pc_devices.h"
#include "machine/machine.h"

static struct vm_config cfg = { .ram_size = 64 * MiB, .smp = 2 };

static int setup(void **st)
{
    struct machine *m = calloc(1, sizeof(*m));

    assert_int_equal(machine_init(m, &cfg), 0);
    m->nr_vcpus = 2;   /* as if created: fw_cfg only reads the count */
    assert_int_equal(fw_cfg_create(m), 0);
    *st = m;
    return 0;
}

static int teardown(void **st)
{
    struct machine *m = *st;

    m->nr_vcpus = 0;
    machine_destroy(m);
    free(m);
    return 0;
}

static void select_key(struct machine *m, uint16_t key)
{
    machine_pio(m, FW_CFG_PORT_SEL, &key, 2, true);
}

static void read_data(struct machine *m, void *buf, size_t n)
{
    uint8_t *p = buf;

    for (size_t i = 0; i < n; i++)
        machine_pio(m, FW_CFG_PORT_DATA, &p[i], 1, false);
}

static uint64_t le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void test_basic_keys(void **st)
{
    struct machine *m = *st;
    uint8_t buf[16];

    select_key(m, FW_CFG_SIGNATURE);
    read_data(m, buf, 4);
    assert_memory_equal(buf, "QEMU", 4);
    select_key(m, FW_CFG_ID);
    read_data(m, buf, 4);
    assert_int_equal(le(buf, 4), 1);
    select_key(m, FW_CFG_RAM_SIZE);
    read_data(m, buf, 8);
    assert_int_equal(le(buf, 8), 64 * MiB);
    select_key(m, FW_CFG_NB_CPUS);
    read_data(m, buf, 2);
    assert_int_equal(le(buf, 2), 2);
    select_key(m, FW_CFG_UUID);
    read_data(m, buf, 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(buf[i], 0);
}

static void test_file_dir_and_e820(void **st)
{
    struct machine *m = *st;
    uint8_t dir[4 + 64], e820[20 * MACHINE_MAX_E820];
    uint32_t size;

    select_key(m, FW_CFG_FILE_DIR);
    read_data(m, dir, sizeof(dir));
    assert_int_equal(be(dir, 4), 1);
    size = (uint32_t)be(dir + 4, 4);
    assert_int_equal(size, 20 * (uint32_t)m->nr_e820);
    assert_string_equal((char *)dir + 12, "etc/e820");
    select_key(m, (uint16_t)be(dir + 8, 2));
    read_data(m, e820, size);
    for (int i = 0; i < m->nr_e820; i++) {
        assert_int_equal(le(e820 + 20 * i, 8), m->e820[i].addr);
        assert_int_equal(le(e820 + 20 * i + 8, 8), m->e820[i].size);
        assert_int_equal(le(e820 + 20 * i + 16, 4), m->e820[i].type);
    }
}

static void test_hostile(void **st)
{
    struct machine *m = *st;
    uint8_t buf[64];
    uint32_t w = 0;

    /* Past the end: zeros, forever. */
    select_key(m, FW_CFG_SIGNATURE);
    read_data(m, buf, sizeof(buf));
    for (size_t i = 4; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
    /* Unknown keys read as zeros. */
    select_key(m, 0x7fff);
    memset(buf, 0xaa, sizeof(buf));
    read_data(m, buf, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(buf[i], 0);
    select_key(m, 0xffff);
    read_data(m, buf, 8);
    assert_int_equal(buf[0], 0);
    /* Data writes and byte-sized selector writes change nothing. */
    select_key(m, FW_CFG_SIGNATURE);
    uint8_t b = 0x55;
    machine_pio(m, FW_CFG_PORT_DATA, &b, 1, true);
    machine_pio(m, FW_CFG_PORT_SEL, &b, 1, true);
    read_data(m, buf, 4);
    assert_memory_equal(buf, "QEMU", 4);
    /* A wide read of the data port returns consecutive bytes. */
    select_key(m, FW_CFG_SIGNATURE);
    machine_pio(m, FW_CFG_PORT_DATA, &w, 4, false);
    assert_memory_equal(&w, "QEMU", 4);
    /* The selector port reads nothing useful but does not misbehave. */
    machine_pio(m, FW_CFG_PORT_SEL, &w, 2, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_dir_and_e820, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
