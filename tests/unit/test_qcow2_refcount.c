/* Refcount block arithmetic for every refcount_order: values round-trip,
 * neighbours are untouched, and sub-byte entries use QEMU's bit order
 * (entry 0 in the least significant bits of byte 0). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

static void test_roundtrip_all_orders(void **st)
{
    uint8_t blk[512];

    for (unsigned order = 0; order <= 6; order++) {
        unsigned bits = 1u << order;
        uint64_t max = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
        uint64_t n = sizeof(blk) * 8 / bits;

        memset(blk, 0, sizeof(blk));
        for (uint64_t i = 0; i < n; i++)
            qcow2_refcount_set(blk, i, order, (i * 0x9e3779b97f4a7c15ULL) & max);
        for (uint64_t i = 0; i < n; i++)
            assert_int_equal(qcow2_refcount_get(blk, i, order), (i * 0x9e3779b97f4a7c15ULL) & max);
        /* Setting one entry to max and back leaves the others alone. */
        qcow2_refcount_set(blk, 3, order, max);
        assert_int_equal(qcow2_refcount_get(blk, 3, order), max);
        assert_int_equal(qcow2_refcount_get(blk, 2, order), (2 * 0x9e3779b97f4a7c15ULL) & max);
        assert_int_equal(qcow2_refcount_get(blk, 4, order), (4 * 0x9e3779b97f4a7c15ULL) & max);
    }
}

static void test_layout(void **st)
{
    uint8_t blk[16];

    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set(blk, 0, 0, 1);
    qcow2_refcount_set(blk, 9, 0, 1);
    assert_int_equal(blk[0], 0x01);
    assert_int_equal(blk[1], 0x02);
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set(blk, 1, 2, 0xa); /* 4-bit: entry 1 is the high nibble */
    assert_int_equal(blk[0], 0xa0);
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set(blk, 1, 4, 0x1234); /* 16-bit big-endian */
    assert_int_equal(blk[2], 0x12);
    assert_int_equal(blk[3], 0x34);
    qcow2_refcount_set(blk, 1, 6, 0x0102030405060708ULL);
    assert_int_equal(blk[8], 0x01);
    assert_int_equal(blk[15], 0x08);
}

static void test_values_are_masked(void **st)
{
    uint8_t blk[4] = { 0 };

    qcow2_refcount_set(blk, 1, 1, 0xff); /* 2-bit entries take only 2 bits */
    assert_int_equal(qcow2_refcount_get(blk, 1, 1), 3);
    assert_int_equal(qcow2_refcount_get(blk, 0, 1), 0);
    assert_int_equal(qcow2_refcount_get(blk, 2, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_orders),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_values_are_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
