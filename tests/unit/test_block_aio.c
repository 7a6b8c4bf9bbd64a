/* block/aio.c on real files in /tmp: both backends move the same bytes
 * (scattered iovecs, many requests in flight, short reads at a truncated
 * end of file, O_DIRECT with unaligned buffers), io_uring is chosen only
 * for raw images, validation refuses bad ranges without calling back,
 * drain waits for everything, and a probed image's block 0 stays
 * protected. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/block.h"

#define DISK (4 * MiB)
#define NREQ 200

static char path[64];
static char err[256];
static enum blk_aio_backend want;
static enum block_cache_mode mode;

static int setup_common(void)
{
    int fd;

    snprintf(path, sizeof(path), "/tmp/vmon-test-aio-XXXXXX");
    fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int setup_uring(void **st)
{
    want = BLK_AIO_IO_URING;
    mode = BLOCK_CACHE_WRITEBACK;
    return setup_common();
}

static int setup_threads(void **st)
{
    want = BLK_AIO_THREADS;
    mode = BLOCK_CACHE_WRITEBACK;
    return setup_common();
}

static int setup_uring_direct(void **st)
{
    want = BLK_AIO_IO_URING;
    mode = BLOCK_CACHE_NONE;
    return setup_common();
}

static int teardown(void **st)
{
    unlink(path);
    return 0;
}

struct done {
    int calls;
    int ret;
};

static void on_done(void *opaque, int ret)
{
    struct done *d = opaque;

    d->calls++;
    d->ret = ret;
}

/* Wait on the fd as a main loop would, until d has been called back. */
static void wait_for(struct blk_aio *a, struct done *d)
{
    while (!d->calls) {
        struct pollfd p = { .fd = blk_aio_fd(a), .events = POLLIN };

        assert_true(poll(&p, 1, 10000) > 0);
        blk_aio_complete(a);
    }
    assert_int_equal(d->calls, 1);
}

static struct block_state *open_image(const char *fmt, unsigned flags)
{
    struct block_state *bs = block_open(path, fmt, flags, mode, err, sizeof(err));

    if (!bs)
        fail_msg("open %s: %s", path, err);
    return bs;
}

static struct blk_aio *new_aio(struct block_state *bs, enum blk_aio_backend expect)
{
    char why[160];
    struct blk_aio *a = blk_aio_new(bs, want, why, sizeof(why));

    assert_non_null(a);
    if (blk_aio_backend(a) != expect)
        fail_msg("backend %s, expected %s (%s)", blk_aio_backend_name(blk_aio_backend(a)),
                 blk_aio_backend_name(expect), why);
    return a;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static void test_parse(void **st)
{
    enum blk_aio_backend b;

    assert_int_equal(blk_aio_backend_parse("threads", &b), 0);
    assert_int_equal(b, BLK_AIO_THREADS);
    assert_int_equal(blk_aio_backend_parse("io_uring", &b), 0);
    assert_int_equal(b, BLK_AIO_IO_URING);
    assert_int_equal(blk_aio_backend_parse("native", &b), 0);
    assert_int_equal(b, BLK_AIO_IO_URING);
    assert_int_equal(blk_aio_backend_parse("uring", &b), -EINVAL);
    assert_string_equal(blk_aio_backend_name(BLK_AIO_IO_URING), "io_uring");
}

/* NREQ writes in flight at once, each of three segments (one empty) at
 * sector-aligned but scattered offsets, then reads back through aio into
 * other buffers and through the block layer. */
static void run_many(struct block_state *bs, struct blk_aio *a)
{
    uint8_t *src = malloc(DISK), *dst = calloc(1, DISK), *check = malloc(DISK);
    struct done *d = calloc(NREQ * 2 + 1, sizeof(*d));
    const size_t chunk = DISK / NREQ / 512 * 512;

    assert_non_null(src);
    fill(src, DISK, 3);
    for (int i = 0; i < NREQ; i++) {
        size_t off = (size_t)((i * 37) % NREQ) * chunk, half = chunk / 2 / 512 * 512;
        struct iovec v[3] = { { src + off, half }, { src, 0 }, { src + off + half, chunk - half } };

        assert_int_equal(blk_aio_submit(a, BLK_AIO_WRITE, off, v, 3, on_done, &d[i]), 0);
    }
    assert_true(blk_aio_inflight(a) > 0);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_FLUSH, 0, NULL, 0, on_done, &d[NREQ * 2]), 0);
    blk_aio_drain(a);
    assert_int_equal(blk_aio_inflight(a), 0);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].ret, 0);
    }
    assert_int_equal(d[NREQ * 2].calls, 1);
    assert_int_equal(d[NREQ * 2].ret, 0);
    for (int i = 0; i < NREQ; i++) {
        size_t off = (size_t)i * chunk;
        struct iovec v = { dst + off, chunk };

        assert_int_equal(blk_aio_submit(a, BLK_AIO_READ, off, &v, 1, on_done, &d[NREQ + i]), 0);
    }
    blk_aio_drain(a);
    for (int i = 0; i < NREQ; i++)
        assert_int_equal(d[NREQ + i].ret, 0);
    assert_memory_equal(src, dst, chunk * NREQ);
    assert_int_equal(block_pread(bs, 0, check, chunk * NREQ), 0);
    assert_memory_equal(src, check, chunk * NREQ);
    free(src);
    free(dst);
    free(check);
    free(d);
}

static void test_raw_many(void **st)
{
    struct block_state *bs;
    struct blk_aio *a;

    assert_int_equal(raw_create(path, DISK, err, sizeof(err)), 0);
    bs = open_image("raw", BLOCK_O_RDWR);
    a = new_aio(bs, want);
    run_many(bs, a);
    blk_aio_free(a);
    block_close(bs);
}

/* qcow2 goes through the pool whatever was asked, and the reason says so. */
static void test_qcow2_uses_threads(void **st)
{
    struct qcow2_create_opts o = { .size = DISK, .cluster_bits = 16, .version = 3,
                                   .refcount_order = 4 };
    struct block_state *bs;
    struct blk_aio *a;
    char why[160];

    assert_int_equal(qcow2_create(path, &o, err, sizeof(err)), 0);
    bs = open_image("qcow2", BLOCK_O_RDWR);
    a = blk_aio_new(bs, BLK_AIO_IO_URING, why, sizeof(why));
    assert_non_null(a);
    assert_int_equal(blk_aio_backend(a), BLK_AIO_THREADS);
    assert_non_null(strstr(why, "qcow2"));
    run_many(bs, a);
    blk_aio_free(a);
    block_close(bs);
}

/* Bad ranges and read-only writes are refused at submission and never
 * called back. */
static void test_validation(void **st)
{
    uint8_t buf[1024];
    struct iovec v = { buf, sizeof(buf) };
    struct iovec wrap[2] = { { buf, 512 }, { buf, SIZE_MAX - 100 } };
    struct done d = { 0 };
    struct block_state *bs;
    struct blk_aio *a;

    assert_int_equal(raw_create(path, 1 * MiB, err, sizeof(err)), 0);
    bs = open_image("raw", 0);
    a = new_aio(bs, want);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_READ, 1 * MiB - 512, &v, 1, on_done, &d),
                     -EINVAL);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_READ, UINT64_MAX - 100, &v, 1, on_done, &d),
                     -EINVAL);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_READ, 0, wrap, 2, on_done, &d), -EINVAL);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_WRITE, 0, &v, 1, on_done, &d), -EROFS);
    assert_int_equal(blk_aio_inflight(a), 0);
    /* The last byte of the disk is fine. */
    assert_int_equal(blk_aio_submit(a, BLK_AIO_READ, 1 * MiB - 1024, &v, 1, on_done, &d), 0);
    wait_for(a, &d);
    assert_int_equal(d.ret, 0);
    blk_aio_free(a);
    block_close(bs);
}

/* The file shrank behind vmon's back: io_uring's read comes back short,
 * the rest reads as zeros as it does through the block layer. */
static void test_short_read_past_eof(void **st)
{
    uint8_t pattern[8192], buf[8192];
    struct iovec v = { buf, sizeof(buf) };
    struct done d = { 0 };
    struct block_state *bs;
    struct blk_aio *a;
    int fd;

    assert_int_equal(raw_create(path, 1 * MiB, err, sizeof(err)), 0);
    bs = open_image("raw", BLOCK_O_RDWR);
    a = new_aio(bs, want);
    fill(pattern, sizeof(pattern), 9);
    assert_int_equal(block_pwrite(bs, 512 * 1024 - 4096, pattern, sizeof(pattern)), 0);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 512 * 1024), 0);
    close(fd);
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(blk_aio_submit(a, BLK_AIO_READ, 512 * 1024 - 4096, &v, 1, on_done, &d),
                     0);
    wait_for(a, &d);
    assert_int_equal(d.ret, 0);
    assert_memory_equal(buf, pattern, 4096);
    for (int i = 4096; i < 8192; i++)
        assert_int_equal(buf[i], 0);
    blk_aio_free(a);
    block_close(bs);
}

/* cache=none: a buffer that is not 512-aligned makes the kernel refuse
 * O_DIRECT; the request still completes (through the bounce path). */
static void test_direct_unaligned(void **st)
{
    uint8_t *mem = malloc(3 * 4096 + 1), *w = mem + 1, *r = malloc(3 * 4096);
    struct iovec vw = { w, 3 * 4096 }, vr = { r, 3 * 4096 };
    struct done d1 = { 0 }, d2 = { 0 };
    struct block_state *bs;
    struct blk_aio *a;
    int fd;

    assert_int_equal(raw_create(path, 1 * MiB, err, sizeof(err)), 0);
    fd = open(path, O_RDWR | O_DIRECT);
    if (fd < 0) {
        free(mem);
        free(r);
        skip();   /* the file system under /tmp has no O_DIRECT */
    }
    close(fd);
    bs = open_image("raw", BLOCK_O_RDWR);
    a = new_aio(bs, BLK_AIO_IO_URING);
    fill(w, 3 * 4096, 5);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_WRITE, 8192, &vw, 1, on_done, &d1), 0);
    wait_for(a, &d1);
    assert_int_equal(d1.ret, 0);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_READ, 8192, &vr, 1, on_done, &d2), 0);
    wait_for(a, &d2);
    assert_int_equal(d2.ret, 0);
    assert_memory_equal(w, r, 3 * 4096);
    blk_aio_free(a);
    block_close(bs);
    free(mem);
    free(r);
}

/* As with block_pwrite: a guessed-raw image's block 0 cannot become a
 * qcow2 header, whichever backend is in use. */
static void test_probed_block0(void **st)
{
    uint8_t hdr[512] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
    uint8_t plain[512] = { 1, 2, 3 };
    struct iovec v = { hdr, sizeof(hdr) }, p = { plain, sizeof(plain) };
    struct done d1 = { 0 }, d2 = { 0 };
    struct block_state *bs;
    struct blk_aio *a;

    assert_int_equal(raw_create(path, 1 * MiB, err, sizeof(err)), 0);
    bs = open_image(NULL, BLOCK_O_RDWR);
    assert_true(bs->probed_raw);
    a = new_aio(bs, want);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_WRITE, 0, &v, 1, on_done, &d1), 0);
    wait_for(a, &d1);
    assert_int_equal(d1.ret, -EPERM);
    assert_int_equal(blk_aio_submit(a, BLK_AIO_WRITE, 0, &p, 1, on_done, &d2), 0);
    wait_for(a, &d2);
    assert_int_equal(d2.ret, 0);
    blk_aio_free(a);
    block_close(bs);
}

/* Freeing with requests in flight waits for them: every callback runs. */
static void test_free_drains(void **st)
{
    static uint8_t buf[NREQ][4096];
    struct done d[NREQ] = { { 0 } };
    struct block_state *bs;
    struct blk_aio *a;

    assert_int_equal(raw_create(path, 1 * MiB, err, sizeof(err)), 0);
    bs = open_image("raw", BLOCK_O_RDWR);
    a = new_aio(bs, want);
    for (int i = 0; i < NREQ; i++) {
        struct iovec v = { buf[i], sizeof(buf[i]) };

        fill(buf[i], sizeof(buf[i]), (unsigned)i);
        assert_int_equal(blk_aio_submit(a, BLK_AIO_WRITE, (uint64_t)(i % 256) * 4096, &v, 1,
                                        on_done, &d[i]), 0);
    }
    blk_aio_free(a);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].ret, 0);
    }
    block_close(bs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test_setup_teardown(test_raw_many, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_raw_many, setup_threads, teardown),
        cmocka_unit_test_setup_teardown(test_raw_many, setup_uring_direct, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_uses_threads, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup_threads, teardown),
        cmocka_unit_test_setup_teardown(test_short_read_past_eof, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_short_read_past_eof, setup_threads, teardown),
        cmocka_unit_test_setup_teardown(test_direct_unaligned, setup_uring_direct, teardown),
        cmocka_unit_test_setup_teardown(test_probed_block0, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_probed_block0, setup_threads, teardown),
        cmocka_unit_test_setup_teardown(test_free_drains, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_free_drains, setup_threads, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
