/* Asynchronous requests on an open image, for devices (virtio-blk).
 *
 * Two backends behind one interface: io_uring straight on the file of a raw
 * image (readv/writev/fsync, completions signalled on an eventfd registered
 * with the ring), and a small pool of worker threads calling the synchronous
 * block layer (every other format: qcow2's metadata code is synchronous;
 * also the fallback when io_uring cannot be set up).  The io_uring backend
 * still hands a few requests to the pool: writes to block 0 of an image
 * whose format was probed (the block layer's format-change check) and
 * O_DIRECT requests the kernel refused as unaligned (the bounce path).
 *
 * Completions are never delivered from inside blk_aio_submit(): the caller
 * watches blk_aio_fd() and calls blk_aio_complete() when it is readable,
 * which runs the callbacks.  submit/complete/drain/free must be serialised
 * by the caller (virtio-blk: the machine lock); the worker threads only
 * touch the request and its buffers.  See docs/block.md. */
#ifndef VMON_BLOCK_AIO_H
#define VMON_BLOCK_AIO_H

#include <sys/uio.h>

#include "util/types.h"

struct block_state;
struct blk_aio;

enum blk_aio_backend { BLK_AIO_THREADS, BLK_AIO_IO_URING };
enum blk_aio_op { BLK_AIO_READ, BLK_AIO_WRITE, BLK_AIO_FLUSH };

/* ret: 0 or -errno.  Runs inside blk_aio_complete() or blk_aio_drain(). */
typedef void (*blk_aio_done_fn)(void *opaque, int ret);

/* -drive aio= values: "threads", "io_uring", and QEMU's "native" (Linux AIO
 * in QEMU; io_uring is the kernel's native asynchronous I/O here, so it
 * means io_uring).  0 or -EINVAL. */
int blk_aio_backend_parse(const char *name, enum blk_aio_backend *backend);
const char *blk_aio_backend_name(enum blk_aio_backend backend);

/* Set up requests on bs (which must outlive the blk_aio).  When want is
 * io_uring but the image is not raw or the ring cannot be created, the
 * thread pool is used and why (if not NULL) says why; otherwise why is "".
 * NULL (reason in why) only when not even the pool can start. */
struct blk_aio *blk_aio_new(struct block_state *bs, enum blk_aio_backend want, char *why,
                            size_t whylen);
/* The backend in use. */
enum blk_aio_backend blk_aio_backend(const struct blk_aio *a);
/* Readable when finished requests wait for blk_aio_complete(). */
int blk_aio_fd(const struct blk_aio *a);

/* Start a request: read or write [off, off + total iov length) through
 * iov (copied; the buffers must stay valid until the callback), or flush
 * (off and iov ignored: every write completed before makes it durable).
 * Returns 0 (fn will be called exactly once) or -errno without calling fn:
 * -EINVAL for a range outside the image or too many segments, -EROFS for a
 * write to a read-only image, -ENOMEM. */
int blk_aio_submit(struct blk_aio *a, enum blk_aio_op op, uint64_t off,
                   const struct iovec *iov, unsigned niov, blk_aio_done_fn fn, void *opaque);
/* Run the callbacks of every finished request; never blocks. */
void blk_aio_complete(struct blk_aio *a);
/* Requests submitted whose callback has not run yet. */
unsigned blk_aio_inflight(const struct blk_aio *a);
/* Wait until every submitted request has finished and its callback has
 * run (for quiescing a device: accelerator switch, teardown). */
void blk_aio_drain(struct blk_aio *a);
/* Drain, then free.  The image stays open. */
void blk_aio_free(struct blk_aio *a);

#endif
