/* Asynchronous block requests: io_uring for raw images, a worker pool over
 * the synchronous block layer for everything else (block/aio.h).
 *
 * Both backends signal one eventfd: the ring has it registered
 * (io_uring_register_eventfd, one count per CQE) and the workers write it
 * after putting a request on the done list.  blk_aio_complete() reads the
 * eventfd first and only then looks at the CQ and the done list, so a
 * completion that arrives meanwhile leaves the eventfd readable.
 *
 * io_uring may transfer less than asked (a read across the end of the file,
 * a signal): the request's iovec is advanced and it goes round again; a
 * read that reaches the end of the file fills the rest with zeros, as
 * block_file_pread does.  A request that finds the submission queue full
 * waits on a backlog that is retried whenever completions are reaped. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/block.h"
#include "util/trace.h"

#define AIO_WORKERS 2
#define AIO_RING_ENTRIES 256

struct aio_req {
    struct aio_req *next;
    enum blk_aio_op op;
    uint64_t off;          /* advances with partial transfers */
    int ret;
    blk_aio_done_fn fn;
    void *opaque;
    unsigned first, niov;  /* iov[first..niov) is what is left */
    struct iovec iov[];
};

struct blk_aio {
    struct block_state *bs;
    enum blk_aio_backend backend;
    int efd;
    unsigned inflight;

    bool have_ring;
    struct io_uring ring;
    struct aio_req *backlog, **backlog_tail;   /* waiting for an SQE */

    pthread_mutex_t lock;                      /* todo, done, quit */
    pthread_cond_t cond;
    struct aio_req *todo, **todo_tail;
    struct aio_req *done;                      /* LIFO */
    bool quit;
    pthread_t workers[AIO_WORKERS];
    int nr_workers;
};

static const char *const op_names[] = { [BLK_AIO_READ] = "read", [BLK_AIO_WRITE] = "write",
                                        [BLK_AIO_FLUSH] = "flush" };

int blk_aio_backend_parse(const char *name, enum blk_aio_backend *backend)
{
    if (!strcmp(name, "threads"))
        *backend = BLK_AIO_THREADS;
    else if (!strcmp(name, "io_uring") || !strcmp(name, "native"))
        *backend = BLK_AIO_IO_URING;
    else
        return -EINVAL;
    return 0;
}

const char *blk_aio_backend_name(enum blk_aio_backend backend)
{
    return backend == BLK_AIO_IO_URING ? "io_uring" : "threads";
}

enum blk_aio_backend blk_aio_backend(const struct blk_aio *a)
{
    return a->backend;
}

int blk_aio_fd(const struct blk_aio *a)
{
    return a->efd;
}

unsigned blk_aio_inflight(const struct blk_aio *a)
{
    return a->inflight;
}

static uint64_t req_bytes(const struct aio_req *r)
{
    uint64_t n = 0;

    for (unsigned i = r->first; i < r->niov; i++)
        n += r->iov[i].iov_len;
    return n;
}

static void trace_io(const char *backend, const struct aio_req *r)
{
    TRACE(blk_aio_io, "backend=%s op=%s offset=%llu bytes=%llu", backend, op_names[r->op],
          (unsigned long long)r->off, (unsigned long long)req_bytes(r));
}

/* ---- worker pool ---- */

static int pool_execute(struct block_state *bs, struct aio_req *r)
{
    if (r->op == BLK_AIO_FLUSH)
        return block_flush(bs);
    for (unsigned i = r->first; i < r->niov; i++) {
        int ret = r->op == BLK_AIO_WRITE
                      ? block_pwrite(bs, r->off, r->iov[i].iov_base, r->iov[i].iov_len)
                      : block_pread(bs, r->off, r->iov[i].iov_base, r->iov[i].iov_len);

        if (ret < 0)
            return ret;
        r->off += r->iov[i].iov_len;
    }
    return 0;
}

static void signal_efd(struct blk_aio *a)
{
    uint64_t one = 1;

    /* Cannot fail short of counter overflow. */
    (void)!write(a->efd, &one, sizeof(one));
}

static void *pool_worker(void *opaque)
{
    struct blk_aio *a = opaque;

    pthread_mutex_lock(&a->lock);
    for (;;) {
        struct aio_req *r;

        while (!a->todo && !a->quit)
            pthread_cond_wait(&a->cond, &a->lock);
        if (!a->todo)
            break;   /* quit, and nothing left to do */
        r = a->todo;
        a->todo = r->next;
        if (!a->todo)
            a->todo_tail = &a->todo;
        pthread_mutex_unlock(&a->lock);
        r->ret = pool_execute(a->bs, r);
        pthread_mutex_lock(&a->lock);
        r->next = a->done;
        a->done = r;
        signal_efd(a);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

static void pool_queue(struct blk_aio *a, struct aio_req *r)
{
    trace_io("threads", r);
    pthread_mutex_lock(&a->lock);
    r->next = NULL;
    *a->todo_tail = r;
    a->todo_tail = &r->next;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

/* ---- io_uring ---- */

static bool fd_is_direct(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl >= 0 && (fl & O_DIRECT);
}

static bool write_through(const struct block_state *bs)
{
    return bs->cache == BLOCK_CACHE_WRITETHROUGH || bs->cache == BLOCK_CACHE_DIRECTSYNC;
}

/* Put r into an SQE, or on the backlog when the queue is full.  Returns
 * true if an SQE was filled. */
static bool ring_prep(struct blk_aio *a, struct aio_req *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
    int fd = a->bs->fd;

    if (!sqe) {
        r->next = NULL;
        *a->backlog_tail = r;
        a->backlog_tail = &r->next;
        return false;
    }
    trace_io("io_uring", r);
    switch (r->op) {
    case BLK_AIO_READ:
        io_uring_prep_readv(sqe, fd, r->iov + r->first, r->niov - r->first, r->off);
        break;
    case BLK_AIO_WRITE:
        io_uring_prep_writev(sqe, fd, r->iov + r->first, r->niov - r->first, r->off);
        /* What the block layer's flush after each write does. */
        if (write_through(a->bs))
            sqe->rw_flags = RWF_DSYNC;
        break;
    case BLK_AIO_FLUSH:
        if (a->bs->cache == BLOCK_CACHE_UNSAFE)
            io_uring_prep_nop(sqe);
        else
            io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    }
    io_uring_sqe_set_data(sqe, r);
    return true;
}

static void ring_submit(struct blk_aio *a)
{
    int ret;

    do
        ret = io_uring_submit(&a->ring);
    while (ret == -EINTR || ret == -EAGAIN);
    /* Other errors (-EBUSY with a full CQ) leave the SQEs queued; the next
     * submit after reaping sends them. */
}

static void finish(struct blk_aio *a, struct aio_req *r, int ret)
{
    a->inflight--;
    r->fn(r->opaque, ret);
    free(r);
}

/* Drop n transferred bytes from the front of r. */
static void req_advance(struct aio_req *r, size_t n)
{
    r->off += n;
    while (n && r->first < r->niov) {
        struct iovec *v = &r->iov[r->first];
        size_t k = MIN(n, v->iov_len);

        v->iov_base = (uint8_t *)v->iov_base + k;
        v->iov_len -= k;
        n -= k;
        if (!v->iov_len)
            r->first++;
    }
    while (r->first < r->niov && !r->iov[r->first].iov_len)
        r->first++;
}

static void ring_result(struct blk_aio *a, struct aio_req *r, int res)
{
    if (res == -EINTR || res == -EAGAIN) {
        ring_prep(a, r);
        return;
    }
    if (res == -EINVAL && r->op != BLK_AIO_FLUSH && fd_is_direct(a->bs->fd)) {
        /* Unaligned for O_DIRECT: the block layer's bounce path. */
        pool_queue(a, r);
        return;
    }
    if (res < 0 || r->op == BLK_AIO_FLUSH) {
        finish(a, r, res < 0 ? res : 0);
        return;
    }
    if (res == 0) {
        if (r->op == BLK_AIO_WRITE) {
            finish(a, r, -EIO);
            return;
        }
        /* End of file: the rest reads as zeros. */
        for (unsigned i = r->first; i < r->niov; i++)
            memset(r->iov[i].iov_base, 0, r->iov[i].iov_len);
        finish(a, r, 0);
        return;
    }
    req_advance(r, (size_t)res);
    if (r->first == r->niov)
        finish(a, r, 0);
    else
        ring_prep(a, r);
}

static void ring_reap(struct blk_aio *a)
{
    struct io_uring_cqe *cqe;
    bool again = false;

    while (io_uring_peek_cqe(&a->ring, &cqe) == 0) {
        struct aio_req *r = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        io_uring_cqe_seen(&a->ring, cqe);
        ring_result(a, r, res);
        again = true;
    }
    /* Requeued partial transfers and the backlog, while SQEs last. */
    while (a->backlog) {
        struct aio_req *r = a->backlog;

        a->backlog = r->next;
        if (!a->backlog)
            a->backlog_tail = &a->backlog;
        if (!ring_prep(a, r))
            break;   /* back on the backlog */
        again = true;
    }
    if (again)
        ring_submit(a);
}

/* ---- interface ---- */

static bool wants_pool(const struct blk_aio *a, enum blk_aio_op op, uint64_t off)
{
    if (a->backend != BLK_AIO_IO_URING)
        return true;
    /* block_pwrite keeps a probed image's block 0 from turning into
     * another format. */
    return op == BLK_AIO_WRITE && a->bs->probed_raw && off < 512;
}

int blk_aio_submit(struct blk_aio *a, enum blk_aio_op op, uint64_t off,
                   const struct iovec *iov, unsigned niov, blk_aio_done_fn fn, void *opaque)
{
    struct aio_req *r;
    uint64_t len = 0, size = block_getlength(a->bs);

    if (op == BLK_AIO_FLUSH) {
        niov = 0;
        off = 0;
    }
    if (niov > IOV_MAX)
        return -EINVAL;
    for (unsigned i = 0; i < niov; i++) {
        if (iov[i].iov_len > size)
            return -EINVAL;
        len += iov[i].iov_len;
        if (len > size)
            return -EINVAL;
    }
    if (off > size || len > size - off)
        return -EINVAL;
    if (op == BLK_AIO_WRITE && !(a->bs->flags & BLOCK_O_RDWR))
        return -EROFS;
    r = calloc(1, sizeof(*r) + niov * sizeof(r->iov[0]));
    if (!r)
        return -ENOMEM;
    r->op = op;
    r->off = off;
    r->fn = fn;
    r->opaque = opaque;
    r->niov = niov;
    if (niov)
        memcpy(r->iov, iov, niov * sizeof(*iov));
    req_advance(r, 0);   /* skip empty segments */
    a->inflight++;
    if (op != BLK_AIO_FLUSH && r->first == r->niov) {
        /* Nothing to transfer: still complete asynchronously. */
        pool_queue(a, r);
        return 0;
    }
    if (wants_pool(a, op, off)) {
        pool_queue(a, r);
    } else if (ring_prep(a, r)) {
        ring_submit(a);
    }
    return 0;
}

void blk_aio_complete(struct blk_aio *a)
{
    struct aio_req *list, *rev = NULL;
    uint64_t cnt;

    /* EAGAIN just means an earlier call already drained it. */
    (void)!read(a->efd, &cnt, sizeof(cnt));
    if (a->have_ring)
        ring_reap(a);
    pthread_mutex_lock(&a->lock);
    list = a->done;
    a->done = NULL;
    pthread_mutex_unlock(&a->lock);
    /* The list is LIFO; complete in the order the workers finished. */
    while (list) {
        struct aio_req *n = list->next;

        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        struct aio_req *n = rev->next;

        finish(a, rev, rev->ret);
        rev = n;
    }
}

void blk_aio_drain(struct blk_aio *a)
{
    for (;;) {
        struct pollfd p = { .fd = a->efd, .events = POLLIN };

        blk_aio_complete(a);
        if (!a->inflight)
            return;
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return;   /* cannot happen with a valid fd */
    }
}

static int ring_setup(struct blk_aio *a, char *why, size_t whylen)
{
    int ret;

    if (a->bs->drv != &block_driver_raw) {
        snprintf(why, whylen, "%s images use the thread pool", a->bs->drv->name);
        return -ENOTSUP;
    }
    ret = io_uring_queue_init(AIO_RING_ENTRIES, &a->ring, 0);
    if (ret < 0) {
        snprintf(why, whylen, "io_uring unavailable (%s), using threads", strerror(-ret));
        return ret;
    }
    ret = io_uring_register_eventfd(&a->ring, a->efd);
    if (ret < 0) {
        snprintf(why, whylen, "io_uring eventfd registration failed (%s), using threads",
                 strerror(-ret));
        io_uring_queue_exit(&a->ring);
        return ret;
    }
    a->have_ring = true;
    return 0;
}

struct blk_aio *blk_aio_new(struct block_state *bs, enum blk_aio_backend want, char *why,
                            size_t whylen)
{
    struct blk_aio *a = calloc(1, sizeof(*a));
    char scratch[1];

    if (!why) {
        why = scratch;
        whylen = sizeof(scratch);
    }
    if (whylen)
        why[0] = 0;
    if (!a) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    a->bs = bs;
    a->backend = BLK_AIO_THREADS;
    a->backlog_tail = &a->backlog;
    a->todo_tail = &a->todo;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0) {
        snprintf(why, whylen, "cannot create an eventfd: %s", strerror(errno));
        goto fail;
    }
    if (want == BLK_AIO_IO_URING && ring_setup(a, why, whylen) == 0)
        a->backend = BLK_AIO_IO_URING;
    /* The pool serves the threads backend and io_uring's exceptions. */
    for (int i = 0; i < AIO_WORKERS; i++) {
        if (pthread_create(&a->workers[i], NULL, pool_worker, a))
            break;
        a->nr_workers++;
    }
    if (!a->nr_workers) {
        snprintf(why, whylen, "cannot start I/O threads");
        if (a->have_ring)
            io_uring_queue_exit(&a->ring);
        goto fail;
    }
    return a;
fail:
    if (a->efd >= 0)
        close(a->efd);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->cond);
    free(a);
    return NULL;
}

void blk_aio_free(struct blk_aio *a)
{
    if (!a)
        return;
    blk_aio_drain(a);
    pthread_mutex_lock(&a->lock);
    a->quit = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    for (int i = 0; i < a->nr_workers; i++)
        pthread_join(a->workers[i], NULL);
    if (a->have_ring)
        io_uring_queue_exit(&a->ring);
    close(a->efd);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->cond);
    free(a);
}
