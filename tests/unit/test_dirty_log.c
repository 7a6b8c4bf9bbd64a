/* Dirty page tracking for live migration: the bitmap (ranges, clipping,
 * take-and-clear, OR at an unaligned offset, racing markers) and the
 * machine's log (what marks it, what does not, only while active). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "machine/dirty_log.h"

static uint64_t popcount(const uint64_t *w, size_t n)
{
    uint64_t c = 0;

    for (size_t i = 0; i < n; i++)
        c += (uint64_t)__builtin_popcountll(w[i]);
    return c;
}

static bool bit(const uint64_t *w, uint64_t i)
{
    return (w[i / 64] >> (i % 64)) & 1;
}

static void ranges_and_clipping(void **state)
{
    struct dirty_bitmap *b = dirty_bitmap_new(200);
    uint64_t out[4] = { 0 };

    assert_non_null(b);
    dirty_bitmap_mark(b, 60, 10);      /* across a word boundary */
    dirty_bitmap_mark(b, 128, 64);     /* one whole word */
    dirty_bitmap_mark(b, 195, 100);    /* clipped at 200 */
    dirty_bitmap_mark(b, 500, 1);      /* outside: ignored */
    dirty_bitmap_mark(b, 61, 2);       /* already dirty */
    assert_int_equal(dirty_bitmap_take(b, out), 10 + 64 + 5);
    for (uint64_t i = 0; i < 256; i++)
        assert_int_equal(bit(out, i), (i >= 60 && i < 70) || (i >= 128 && i < 192) ||
                                      (i >= 195 && i < 200));
    /* Taken means cleared. */
    memset(out, 0, sizeof(out));
    assert_int_equal(dirty_bitmap_take(b, out), 0);
    assert_int_equal(popcount(out, 4), 0);
    dirty_bitmap_free(b);
}

static void take_counts_only_new_bits(void **state)
{
    struct dirty_bitmap *b = dirty_bitmap_new(128);
    uint64_t out[2] = { 0 };

    dirty_bitmap_mark(b, 3, 1);
    assert_int_equal(dirty_bitmap_take(b, out), 1);
    dirty_bitmap_mark(b, 3, 2);        /* page 3 still pending in out */
    assert_int_equal(dirty_bitmap_take(b, out), 1);
    assert_int_equal(popcount(out, 2), 2);
    dirty_bitmap_free(b);
}

static void or_at_unaligned_offset(void **state)
{
    struct dirty_bitmap *b = dirty_bitmap_new(300);
    uint64_t src[2] = { 0x8000000000000001ULL, 0xffULL };
    uint64_t out[5] = { 0 };

    /* 70 bits of src at page 100: bits 0, 63, 64..69 (the rest ignored). */
    dirty_bitmap_or(b, 100, src, 70);
    assert_int_equal(dirty_bitmap_take(b, out), 8);
    assert_true(bit(out, 100) && bit(out, 163) && bit(out, 164) && bit(out, 169));
    assert_false(bit(out, 170) || bit(out, 101));
    dirty_bitmap_free(b);
}

struct racer {
    struct dirty_bitmap *b;
    uint64_t first;
};

static void *mark_all(void *arg)
{
    struct racer *r = arg;

    for (uint64_t i = 0; i < 4096; i++)
        dirty_bitmap_mark(r->b, r->first + (i * 7) % 4096, 1);
    return NULL;
}

/* Marks that race with takes are never lost: each lands in a take. */
static void racing_marks_are_kept(void **state)
{
    struct dirty_bitmap *b = dirty_bitmap_new(8192);
    uint64_t out[128] = { 0 };
    struct racer r[2] = { { b, 0 }, { b, 4096 } };
    pthread_t t[2];

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, mark_all, &r[i]), 0);
    for (int k = 0; k < 1000; k++)
        dirty_bitmap_take(b, out);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    dirty_bitmap_take(b, out);
    assert_int_equal(popcount(out, 128), 8192);
    dirty_bitmap_free(b);
}

static void machine_log_marks_ram_writes(void **state)
{
    struct vm_config cfg = { .ram_size = 64 * MiB, .smp = 1 };
    struct machine m;
    size_t words = dirty_bitmap_words((64 * MiB) >> DIRTY_PAGE_SHIFT);
    uint64_t *out = calloc(words, sizeof(uint64_t));
    uint8_t buf[16] = { 1 };

    assert_int_equal(machine_init(&m, &cfg), 0);
    /* Inactive: writes mark nothing, sync refuses. */
    assert_int_equal(machine_write_gpa(&m, 0x5000, buf, sizeof(buf)), 0);
    assert_false(dirty_log_active(&m));
    assert_true(dirty_log_sync(&m, out) < 0);

    assert_int_equal(dirty_log_start(&m), 0);
    assert_true(dirty_log_active(&m));
    assert_int_equal(machine_write_gpa(&m, 0x5ff8, buf, sizeof(buf)), 0);  /* 2 pages */
    machine_notify_ram_write(&m, 0x100000, 0x3000);                           /* 3 pages */
    machine_notify_ram_write(&m, 0xfee00000, 0x1000);                         /* not RAM */
    dirty_log_mark_hva(&m, m.ram + 0x200010, 8);
    dirty_log_mark_hva(&m, buf, 8);                                          /* not RAM */
    assert_int_equal(dirty_log_sync(&m, out), 2 + 3 + 1);
    assert_true(bit(out, 5) && bit(out, 6));
    assert_true(bit(out, 0x100) && bit(out, 0x101) && bit(out, 0x102));
    assert_true(bit(out, 0x200));
    memset(out, 0, words * sizeof(uint64_t));
    assert_int_equal(dirty_log_sync(&m, out), 0);

    /* Restarting clears what was logged before. */
    machine_notify_ram_write(&m, 0x7000, 1);
    dirty_log_stop(&m);
    assert_false(dirty_log_active(&m));
    assert_int_equal(dirty_log_start(&m), 0);
    assert_int_equal(dirty_log_sync(&m, out), 0);
    dirty_log_stop(&m);
    free(out);
    machine_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ranges_and_clipping),
        cmocka_unit_test(take_counts_only_new_bits),
        cmocka_unit_test(or_at_unaligned_offset),
        cmocka_unit_test(racing_marks_are_kept),
        cmocka_unit_test(machine_log_marks_ram_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
