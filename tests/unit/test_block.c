/* The block layer through its public interface: raw and qcow2 opened by
 * name and by probing, byte-granular I/O across cluster boundaries,
 * persistence across reopen, zero writes, resize, map, the image lock, and
 * concurrent requests from several threads on one image. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"

static char path[64];
static char err[256];

static int setup(void **st)
{
    int fd;

    snprintf(path, sizeof(path), "/tmp/vmon-test-block-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return 0;
}

static int teardown(void **st)
{
    unlink(path);
    return 0;
}

static struct block_state *open_rw(const char *fmt)
{
    struct block_state *bs = block_open(path, fmt, BLOCK_O_RDWR, BLOCK_CACHE_WRITEBACK, err,
                                        sizeof(err));

    if (!bs)
        fail_msg("open %s: %s", path, err);
    return bs;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static void test_raw_io_and_probe(void **st)
{
    uint8_t w[10000], r[10000];
    struct block_state *bs;

    assert_int_equal(raw_create(path, 1 * MiB, err, sizeof(err)), 0);
    bs = open_rw("raw");
    assert_int_equal(block_getlength(bs), 1 * MiB);
    fill(w, sizeof(w), 1);
    assert_int_equal(block_pwrite(bs, 4095, w, sizeof(w)), 0);
    assert_int_equal(block_pread(bs, 4095, r, sizeof(r)), 0);
    assert_memory_equal(w, r, sizeof(w));
    assert_int_equal(block_pwrite(bs, 1 * MiB - 10, w, 11), -EINVAL);
    assert_int_equal(block_flush(bs), 0);
    block_close(bs);
    bs = block_open(path, NULL, 0, BLOCK_CACHE_WRITEBACK, err, sizeof(err));
    assert_non_null(bs);
    assert_string_equal(bs->drv->name, "raw");
    assert_int_equal(block_pwrite(bs, 0, w, 1), -EROFS);
    block_close(bs);
}

static void test_qcow2_io_reopen(void **st)
{
    static uint8_t w[300000], r[300000];
    struct qcow2_create_opts o = { .size = 64 * MiB, .cluster_bits = 12, .version = 3,
                                   .refcount_order = 4 };
    struct block_state *bs;

    assert_int_equal(qcow2_create(path, &o, err, sizeof(err)), 0);
    bs = block_open(path, NULL, BLOCK_O_RDWR, BLOCK_CACHE_WRITEBACK, err, sizeof(err));
    assert_non_null(bs);
    assert_string_equal(bs->drv->name, "qcow2");
    fill(w, sizeof(w), 2);
    assert_int_equal(block_pwrite(bs, 12345, w, sizeof(w)), 0);
    assert_int_equal(block_pwrite(bs, 12345 + 5000, w, 100), 0);
    memcpy(w + 5000, w, 100);
    memset(r, 0xee, sizeof(r));
    assert_int_equal(block_pread(bs, 12345, r, sizeof(r)), 0);
    assert_memory_equal(w, r, sizeof(w));
    /* Unwritten space reads as zero. */
    assert_int_equal(block_pread(bs, 40 * MiB, r, 9000), 0);
    for (int i = 0; i < 9000; i++)
        assert_int_equal(r[i], 0);
    block_close(bs);

    bs = open_rw("qcow2");
    assert_int_equal(block_pread(bs, 12345, r, sizeof(r)), 0);
    assert_memory_equal(w, r, sizeof(w));
    assert_int_equal(block_pwrite_zeroes(bs, 12345 + 4096, 3 * 4096), 0);
    memset(w + 4096, 0, 3 * 4096);
    assert_int_equal(block_pread(bs, 12345, r, sizeof(r)), 0);
    assert_memory_equal(w, r, sizeof(w));
    assert_int_equal(block_truncate(bs, 128 * MiB), 0);
    assert_int_equal(block_getlength(bs), 128 * MiB);
    assert_int_equal(block_pwrite(bs, 128 * MiB - 3, w, 3), 0);
    block_close(bs);

    bs = open_rw("qcow2");
    struct block_check res;

    assert_int_equal(block_check(bs, 0, &res), 0);
    assert_int_equal(res.corruptions, 0);
    assert_int_equal(res.leaks, 0);
    assert_int_equal(block_pread(bs, 128 * MiB - 3, r, 3), 0);
    assert_memory_equal(w, r, 3);
    block_close(bs);
}

static void test_map(void **st)
{
    struct qcow2_create_opts o = { .size = 8 * MiB, .cluster_bits = 16, .version = 3,
                                   .refcount_order = 4 };
    struct block_state *bs;
    struct block_map m;
    uint8_t b[100] = { 1 };

    assert_int_equal(qcow2_create(path, &o, err, sizeof(err)), 0);
    bs = open_rw("qcow2");
    assert_int_equal(block_pwrite(bs, 65536, b, sizeof(b)), 0);
    assert_int_equal(block_map(bs, 0, 8 * MiB, &m), 0);
    assert_int_equal(m.len, 65536);
    assert_true(m.flags & BLOCK_MAP_ZERO);
    assert_false(m.flags & BLOCK_MAP_ALLOCATED);
    assert_int_equal(block_map(bs, 65536, 8 * MiB - 65536, &m), 0);
    assert_int_equal(m.len, 65536);
    assert_true(m.flags & BLOCK_MAP_DATA);
    assert_true(m.flags & BLOCK_MAP_OFFSET);
    block_close(bs);
}

static void test_second_writer_refused(void **st)
{
    struct block_state *a, *b;

    assert_int_equal(raw_create(path, 1 * MiB, err, sizeof(err)), 0);
    a = open_rw("raw");
    b = block_open(path, "raw", BLOCK_O_RDWR, BLOCK_CACHE_WRITEBACK, err, sizeof(err));
    assert_null(b);
    assert_non_null(strstr(err, "lock"));
    block_close(a);
    b = open_rw("raw");
    block_close(b);
}

static void test_unknown_format(void **st)
{
    assert_null(block_open(path, "vmdk", 0, BLOCK_CACHE_WRITEBACK, err, sizeof(err)));
    assert_non_null(strstr(err, "Unknown driver"));
}

struct worker {
    struct block_state *bs;
    unsigned id;
};

#define WORKERS 4
#define SLICE (2 * MiB)

static void *worker_fn(void *opaque)
{
    struct worker *w = opaque;
    static __thread uint8_t buf[7777];

    for (uint64_t off = 0; off + sizeof(buf) <= SLICE; off += sizeof(buf)) {
        fill(buf, sizeof(buf), w->id + (unsigned)off);
        if (block_pwrite(w->bs, w->id * SLICE + off, buf, sizeof(buf)) < 0)
            return (void *)1;
        if (off % (10 * sizeof(buf)) == 0 && block_flush(w->bs) < 0)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **st)
{
    struct qcow2_create_opts o = { .size = WORKERS * SLICE, .cluster_bits = 9, .version = 3,
                                   .refcount_order = 4 };
    struct worker w[WORKERS];
    pthread_t t[WORKERS];
    struct block_state *bs;
    uint8_t buf[7777], got[7777];
    struct block_check res;

    assert_int_equal(qcow2_create(path, &o, err, sizeof(err)), 0);
    bs = open_rw("qcow2");
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){ bs, i };
        pthread_create(&t[i], NULL, worker_fn, &w[i]);
    }
    for (unsigned i = 0; i < WORKERS; i++) {
        void *ret;

        pthread_join(t[i], &ret);
        assert_null(ret);
    }
    for (unsigned i = 0; i < WORKERS; i++) {
        for (uint64_t off = 0; off + sizeof(buf) <= SLICE; off += sizeof(buf)) {
            fill(buf, sizeof(buf), i + (unsigned)off);
            assert_int_equal(block_pread(bs, i * SLICE + off, got, sizeof(got)), 0);
            assert_memory_equal(buf, got, sizeof(buf));
        }
    }
    assert_int_equal(block_check(bs, 0, &res), 0);
    assert_int_equal(res.corruptions + res.leaks, 0);
    block_close(bs);
}

static void test_probed_raw_protects_block0(void **st)
{
    static const uint8_t qcow2_magic[8] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
    uint8_t data[600];
    struct block_state *bs;

    assert_int_equal(raw_create(path, 1 * MiB, err, sizeof(err)), 0);
    bs = open_rw(NULL);
    assert_true(bs->probed_raw);
    assert_int_equal(block_pwrite(bs, 0, qcow2_magic, sizeof(qcow2_magic)), -EPERM);
    fill(data, sizeof(data), 3);
    assert_int_equal(block_pwrite(bs, 0, data, sizeof(data)), 0);
    assert_int_equal(block_pwrite(bs, 4096, qcow2_magic, sizeof(qcow2_magic)), 0);
    block_close(bs);
    /* Named explicitly, the format is the user's word: no restriction. */
    bs = open_rw("raw");
    assert_false(bs->probed_raw);
    assert_int_equal(block_pwrite(bs, 0, qcow2_magic, sizeof(qcow2_magic)), 0);
    block_close(bs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_raw_io_and_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_io_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_writer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probed_raw_protects_block0, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
