/* Checksum completion as virtio-net's NEEDS_CSUM asks for it: a TCP/IPv4
 * frame whose checksum field holds only the pseudo-header sum comes out
 * with a checksum a receiver accepts; requests outside the frame fail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "net/checksum.h"

#define ETH 14
#define IPH 20
#define TCPH 20

static uint32_t add16(uint32_t sum, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* What a receiver computes over pseudo-header and segment: 0xffff if good. */
static uint16_t verify(const uint8_t *f, size_t len)
{
    size_t seg = len - ETH - IPH;
    uint32_t sum = add16(0, f + ETH + 12, 8);   /* source and destination */

    sum += 6 + (uint32_t)seg;                   /* protocol, TCP length */
    return fold(add16(sum, f + ETH + IPH, seg));
}

static size_t make_frame(uint8_t *f, size_t payload)
{
    size_t len = ETH + IPH + TCPH + payload;
    size_t seg = TCPH + payload;
    uint32_t pseudo;

    memset(f, 0, len);
    f[12] = 0x08;
    f[ETH] = 0x45;
    f[ETH + 9] = 6;
    memcpy(f + ETH + 12, (uint8_t[]){ 10, 0, 2, 15, 10, 0, 2, 2 }, 8);
    f[ETH + IPH + 12] = 0x50;
    for (size_t i = 0; i < payload; i++)
        f[ETH + IPH + TCPH + i] = (uint8_t)(i * 7 + 3);
    /* The guest leaves the folded pseudo-header sum in the field. */
    pseudo = fold(add16(6 + (uint32_t)seg, f + ETH + 12, 8));
    f[ETH + IPH + 16] = (uint8_t)(pseudo >> 8);
    f[ETH + IPH + 17] = (uint8_t)pseudo;
    return len;
}

static void tcp_checksum_verifies(void **state)
{
    static uint8_t f[ETH + IPH + TCPH + 65000];

    /* Odd and even payloads, and one as big as a TSO segment. */
    for (size_t payload = 0; payload < 70; payload += 13) {
        size_t len = make_frame(f, payload);

        assert_int_equal(net_checksum_finish(f, len, ETH + IPH, 16), 0);
        assert_int_equal(verify(f, len), 0xffff);
    }
    size_t len = make_frame(f, 65000);
    assert_int_equal(net_checksum_finish(f, len, ETH + IPH, 16), 0);
    assert_int_equal(verify(f, len), 0xffff);
    f[ETH + IPH + TCPH + 100] ^= 1;   /* and a changed byte is noticed */
    assert_int_not_equal(verify(f, len), 0xffff);
}

static void zero_checksum_is_written_as_ffff(void **state)
{
    uint8_t f[4] = { 0xff, 0xff, 0, 0 };   /* sums to 0xffff: complement 0 */

    assert_int_equal(net_checksum_finish(f, sizeof(f), 0, 2), 0);
    assert_int_equal(f[2], 0xff);
    assert_int_equal(f[3], 0xff);
}

static void requests_outside_the_frame_fail(void **state)
{
    uint8_t f[64] = { 0 }, copy[64];

    memcpy(copy, f, sizeof(f));
    assert_int_equal(net_checksum_finish(f, 64, 64, 0), -1);       /* start at end */
    assert_int_equal(net_checksum_finish(f, 64, 70, 0), -1);       /* start past end */
    assert_int_equal(net_checksum_finish(f, 64, 40, 23), -1);      /* field straddles end */
    assert_int_equal(net_checksum_finish(f, 64, 40, 0xffff), -1);  /* offset far out */
    assert_int_equal(net_checksum_finish(f, 64, 0xffff, 0xffff), -1);
    assert_memory_equal(f, copy, sizeof(f));
    assert_int_equal(net_checksum_finish(f, 64, 40, 22), 0);       /* last field fits */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp_checksum_verifies),
        cmocka_unit_test(zero_checksum_is_written_as_ffff),
        cmocka_unit_test(requests_outside_the_frame_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
