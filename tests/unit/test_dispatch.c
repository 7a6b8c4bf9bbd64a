/* Port and MMIO dispatch: registration, overlap refusal, lookup at region
 * edges, unassigned accesses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "config/config.h"
#include "machine/machine.h"

struct fake_dev {
    uint64_t last_offset, last_value;
    unsigned last_size, reads, writes;
};

static uint64_t fake_read(void *opaque, uint64_t offset, unsigned size)
{
    struct fake_dev *d = opaque;

    d->reads++;
    d->last_offset = offset;
    d->last_size = size;
    /* Wider than any access: dispatch must hand back only size bytes. */
    return 0x1122334455667788ULL;
}

static void fake_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct fake_dev *d = opaque;

    d->writes++;
    d->last_offset = offset;
    d->last_value = value;
    d->last_size = size;
}

static const struct io_ops fake_ops = { .read = fake_read, .write = fake_write };

static struct vm_config cfg = { .ram_size = 16 * MiB, .smp = 1 };

static int setup(void **state)
{
    static struct machine m;

    if (machine_init(&m, &cfg) < 0)
        return -1;
    *state = &m;
    return 0;
}

static int teardown(void **state)
{
    machine_destroy(*state);
    return 0;
}

static void pio_reaches_device_with_offset(void **state)
{
    struct machine *m = *state;
    struct fake_dev d = { 0 };
    uint32_t v = 0xabcd;

    assert_int_equal(machine_register_pio(m, 0x3f8, 8, &fake_ops, &d, "uart"), 0);
    assert_true(machine_pio(m, 0x3fb, &v, 1, true));
    assert_int_equal(d.last_offset, 3);
    assert_int_equal(d.last_value, 0xcd);
    assert_int_equal(d.last_size, 1);
    v = 0;
    assert_true(machine_pio(m, 0x3f8, &v, 2, false));
    assert_int_equal(v, 0x7788);
}

static void pio_overlap_refused(void **state)
{
    struct machine *m = *state;
    struct fake_dev d = { 0 };

    assert_int_equal(machine_register_pio(m, 0x60, 1, &fake_ops, &d, "a"), 0);
    assert_int_equal(machine_register_pio(m, 0x5f, 2, &fake_ops, &d, "b"), -EEXIST);
    assert_int_equal(machine_register_pio(m, 0xffff, 2, &fake_ops, &d, "c"), -EINVAL);
    assert_int_equal(machine_register_pio(m, 0x70, 0, &fake_ops, &d, "d"), -EINVAL);
}

static void unassigned_port_reads_all_ones(void **state)
{
    struct machine *m = *state;
    uint32_t v = 0;

    assert_false(machine_pio(m, 0x1234, &v, 4, false));
    assert_int_equal(v, 0xffffffff);
    v = 0;
    assert_false(machine_pio(m, 0x1234, &v, 1, false));
    assert_int_equal(v, 0xff);
    /* Bad sizes are refused, not dispatched. */
    assert_false(machine_pio(m, 0x1234, &v, 3, false));
}

static void mmio_sorted_lookup_and_edges(void **state)
{
    struct machine *m = *state;
    struct fake_dev a = { 0 }, b = { 0 }, c = { 0 };
    uint64_t v = 0x55;

    /* Registered out of order; lookup must still find each. */
    assert_int_equal(machine_register_mmio(m, 0xfec00000, 0x1000, &fake_ops, &b, "b"), 0);
    assert_int_equal(machine_register_mmio(m, 0xfee00000, 0x1000, &fake_ops, &c, "c"), 0);
    assert_int_equal(machine_register_mmio(m, 0xe0000000, 0x100, &fake_ops, &a, "a"), 0);
    assert_int_equal(machine_register_mmio(m, 0xfec00800, 0x1000, &fake_ops, &a, "x"), -EEXIST);
    assert_int_equal(machine_register_mmio(m, 0xfebfff00, 0x101, &fake_ops, &a, "y"), -EEXIST);

    assert_true(machine_mmio(m, 0xfee000b0, &v, 4, true));
    assert_int_equal(c.writes, 1);
    assert_int_equal(c.last_offset, 0xb0);
    assert_true(machine_mmio(m, 0xe00000ff, &v, 1, false));
    assert_int_equal(a.last_offset, 0xff);
    /* One past the end of a region is unassigned. */
    v = 0;
    assert_false(machine_mmio(m, 0xe0000100, &v, 8, false));
    assert_int_equal(v, ~0ULL);
    assert_null(machine_find_mmio(m, 0xfebfffff));
    assert_non_null(machine_find_mmio(m, 0xfec00fff));

    assert_int_equal(machine_unregister_mmio(m, 0xfec00000), 0);
    assert_null(machine_find_mmio(m, 0xfec00000));
    assert_int_equal(machine_unregister_mmio(m, 0xfec00000), -ENOENT);
    assert_non_null(machine_find_mmio(m, 0xfee00000));
}

static void gpa_translation_is_bounds_checked(void **state)
{
    struct machine *m = *state;
    uint8_t buf[16] = { 1, 2, 3 };

    assert_non_null(machine_gpa_to_hva(m, 0, 16 * MiB));
    assert_null(machine_gpa_to_hva(m, 0, 16 * MiB + 1));
    assert_null(machine_gpa_to_hva(m, 16 * MiB - 1, 2));
    assert_null(machine_gpa_to_hva(m, ~0ULL, 2));
    assert_int_equal(machine_write_gpa(m, 16 * MiB - 8, buf, 16), -EFAULT);
    assert_int_equal(machine_write_gpa(m, 0x1000, buf, 3), 0);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(machine_read_gpa(m, 0x1000, buf, 3), 0);
    assert_int_equal(buf[2], 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(pio_reaches_device_with_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(pio_overlap_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(unassigned_port_reads_all_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(mmio_sorted_lookup_and_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(gpa_translation_is_bounds_checked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
