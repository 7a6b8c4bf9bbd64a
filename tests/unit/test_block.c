/* The block layer through its public interface: raw and qcow2 opened by
 * name and by probing, byte-granular I/O across cluster boundaries,
 * persistence across reopen, zero writes, resize, map, the image lock, and
 * concurrent requests from several threads on one image. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"

static char path[64];
static char err[256];
/* The I/O tests run once with the page cache and again with cache=none
 * (O_DIRECT) on ext4 (/tmp) and on tmpfs (/dev/shm). */
static enum block_cache_mode mode;
static const char *dir = "/tmp";

static int make_path(void)
{
    int fd;

    snprintf(path, sizeof(path), "%s/vmon-test-block-XXXXXX", dir);
    fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int setup(void **st)
{
    mode = BLOCK_CACHE_WRITEBACK;
    dir = "/tmp";
    assert_int_equal(make_path(), 0);
    return 0;
}

/* Whether the file system under path takes O_DIRECT at all: when it does
 * not, the test expects block_open to refuse as QEMU does. */
static bool direct_supported(void)
{
    int fd = open(path, O_RDWR | O_DIRECT);

    if (fd >= 0) {
        close(fd);
        return true;
    }
    assert_int_equal(errno, EINVAL);
    return false;
}

static int setup_direct_ext4(void **st)
{
    mode = BLOCK_CACHE_NONE;
    dir = "/tmp";
    return make_path();
}

static int setup_direct_tmpfs(void **st)
{
    mode = BLOCK_CACHE_NONE;
    dir = "/dev/shm";
    return make_path();
}

static int teardown(void **st)
{
    unlink(path);
    return 0;
}

static struct block_state *open_rw(const char *fmt)
{
    struct block_state *bs = block_open(path, fmt, BLOCK_O_RDWR, mode, err, sizeof(err));

    if (!bs)
        fail_msg("open %s: %s", path, err);
    if (mode == BLOCK_CACHE_NONE)
        assert_true(fcntl(bs->fd, F_GETFL) & O_DIRECT);
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
    bs = block_open(path, NULL, 0, mode, err, sizeof(err));
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
    bs = block_open(path, NULL, BLOCK_O_RDWR, mode, err, sizeof(err));
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

/* Unaligned offsets, lengths and buffers through O_DIRECT (the bounce
 * path), on a raw file whose size is not a multiple of the block size:
 * contents match what a plain read sees and the file keeps its size. */
static void test_direct_unaligned(void **st)
{
    static uint8_t w[300000], r[300001], plain[300000];
    const uint64_t size = 1 * MiB + 100;
    struct block_state *bs;
    int fd;

    assert_int_equal(raw_create(path, size, err, sizeof(err)), 0);
    if (!direct_supported()) {
        assert_null(block_open(path, "raw", BLOCK_O_RDWR, mode, err, sizeof(err)));
        assert_non_null(strstr(err, "filesystem does not support O_DIRECT"));
        return;
    }
    bs = open_rw("raw");
    fill(w, sizeof(w), 5);
    /* Odd buffer address, offset and length; the last write ends at the
     * unaligned end of the file. */
    assert_int_equal(block_pwrite(bs, 777, w + 1, 100001), 0);
    assert_int_equal(block_pwrite(bs, size - 33, w + 3, 33), 0);
    /* Aligned offset and length; the buffer is wherever the array lies. */
    assert_int_equal(block_pwrite(bs, 8192, w, 4096), 0);
    memset(r, 0xee, sizeof(r));
    assert_int_equal(block_pread(bs, 777, r + 1, 100001), 0);
    assert_memory_equal(r + 1, w + 1, 8192 - 777);
    assert_memory_equal(r + 1 + 8192 - 777, w, 4096);
    assert_int_equal(block_pread(bs, size - 40, r + 1, 40), 0);
    assert_memory_equal(r + 1 + 7, w + 3, 33);
    assert_int_equal(block_flush(bs), 0);
    assert_int_equal(block_getlength(bs), size);
    block_close(bs);

    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)size);
    assert_int_equal(pread(fd, plain, 100001, 777), 100001);
    close(fd);
    memcpy(w + 1 + 8192 - 777, w, 4096);
    assert_memory_equal(plain, w + 1, 100001);
}

/* qcow2 under O_DIRECT: the image must stay clean for qemu-img too, which
 * the system tests check; here the layer's own check and a reread. */
static void test_direct_qcow2(void **st)
{
    if (!direct_supported()) {
        struct qcow2_create_opts o = { .size = 1 * MiB, .cluster_bits = 16, .version = 3,
                                       .refcount_order = 4 };

        assert_int_equal(qcow2_create(path, &o, err, sizeof(err)), 0);
        assert_null(block_open(path, "qcow2", BLOCK_O_RDWR, mode, err, sizeof(err)));
        assert_non_null(strstr(err, "filesystem does not support O_DIRECT"));
        return;
    }
    test_qcow2_io_reopen(st);
}

static void test_cache_mode_names(void **st)
{
    static const char *const names[] = { "writeback", "none", "unsafe", "writethrough",
                                          "directsync" };
    enum block_cache_mode m;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(block_cache_mode_parse(names[i], &m), 0);
        assert_int_equal((int)m, (int)i);
    }
    assert_int_equal(block_cache_mode_parse("direct", &m), -EINVAL);
}

/* writethrough flushes after every write: a qcow2 allocation is on disk
 * (its L2 entry written) before block_pwrite returns, so a second opener
 * that ignores our lock sees the data without any flush or close. */
static void test_writethrough_persists_each_write(void **st)
{
    struct qcow2_create_opts o = { .size = 4 * MiB, .cluster_bits = 16, .version = 3,
                                   .refcount_order = 4 };
    struct block_state *bs, *peek;
    uint8_t w[5000], r[5000];

    assert_int_equal(qcow2_create(path, &o, err, sizeof(err)), 0);
    bs = block_open(path, "qcow2", BLOCK_O_RDWR, BLOCK_CACHE_WRITETHROUGH, err, sizeof(err));
    assert_non_null(bs);
    fill(w, sizeof(w), 9);
    assert_int_equal(block_pwrite(bs, 70000, w, sizeof(w)), 0);
    peek = block_open(path, "qcow2", BLOCK_O_NO_LOCK, BLOCK_CACHE_WRITEBACK, err, sizeof(err));
    assert_non_null(peek);
    assert_int_equal(block_pread(peek, 70000, r, sizeof(r)), 0);
    assert_memory_equal(w, r, sizeof(w));
    block_close(peek);
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
        cmocka_unit_test_setup_teardown(test_cache_mode_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writethrough_persists_each_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_unaligned, setup_direct_ext4, teardown),
        cmocka_unit_test_setup_teardown(test_direct_unaligned, setup_direct_tmpfs, teardown),
        cmocka_unit_test_setup_teardown(test_direct_qcow2, setup_direct_ext4, teardown),
        cmocka_unit_test_setup_teardown(test_direct_qcow2, setup_direct_tmpfs, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
