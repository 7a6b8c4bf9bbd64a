/* virtio-blk-pci on top of the block layer.
 *
 * Requests are parsed and validated under the machine lock (vCPU thread, or
 * the main loop for an ioeventfd kick), then started through block/aio.h:
 * io_uring on a raw image's file, the worker pool over the block layer for
 * qcow2 (or when io_uring is unavailable or aio=threads).  Data moves
 * straight between the file and the guest buffers.  Completions are reaped
 * on the main loop, under the machine lock, from the backend's eventfd:
 * the status byte is written, the used ring updated and the guest
 * interrupted once per batch.  So neither a vCPU nor the main loop waits
 * for the disk, except at a device reset, which drains the requests in
 * flight (their completions, of an older generation, are dropped). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/block.h"
#include "config/config.h"
#include "machine/dirty_log.h"
#include "util/keyval.h"
#include "util/log.h"
#include "util/trace.h"
#include "util/main_loop.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_pci.h"

#define BLK_F_SEG_MAX 2
#define BLK_F_RO 5
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH 9

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2

#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2)
#define BLK_ID_BYTES 20
#define SECTOR 512

struct blk_req {
    struct virtio_blk *b;
    struct vq_elem e;
    uint64_t generation;
    uint32_t type;
    uint64_t offset;
    uint8_t *status;      /* last writable byte of the chain */
    unsigned n_data;      /* data segments: e.in[0..n) or e.out[skip..] */
    struct iovec *data;
    uint32_t written;     /* bytes for the used ring */
    uint8_t result;
};

struct virtio_blk {
    struct virtio_dev vdev;
    struct block_state *bs;
    struct blk_aio *aio;
    bool readonly;
    bool completed;       /* used ring pushed since the last interrupt */
    bool aio_explicit;    /* -drive aio= was given */
    char serial[BLK_ID_BYTES + 1];
    char *drive_id;
};

static struct virtio_blk *drives_in_use[CONFIG_MAX_DRIVES];
static int nr_drives_in_use;

static void req_free(struct blk_req *r)
{
    vq_elem_free(&r->e);
    free(r->data);
    free(r);
}

static const char *op_name(uint32_t type)
{
    return type == BLK_T_IN ? "read" : type == BLK_T_OUT ? "write" : "flush";
}

static uint64_t data_bytes(const struct blk_req *r)
{
    uint64_t bytes = 0;

    for (unsigned i = 0; i < r->n_data; i++)
        bytes += r->data[i].iov_len;
    return bytes;
}

/* Inside blk_aio_complete/drain: main loop, machine lock held. */
static void req_done(void *opaque, int ret)
{
    struct blk_req *r = opaque;
    struct virtio_blk *b = r->b;
    struct virtio_dev *v = &b->vdev;

    TRACE(blk_complete, "dev=%s op=%s offset=%llu bytes=%llu ret=%d", b->drive_id,
          op_name(r->type), (unsigned long long)r->offset, (unsigned long long)data_bytes(r),
          ret);
    if (ret < 0) {
        LOG(LOG_GUEST_ERRORS, "virtio-blk %s: request type %u at %llu: %s\n", b->drive_id,
            r->type, (unsigned long long)r->offset, strerror(-ret));
        r->result = BLK_S_IOERR;
        r->written = 1;
    }
    /* After a reset (an older generation) the ring is not ours to touch. */
    if (r->generation == v->generation && v->vq[0].enabled) {
        /* The backend filled these pages behind the vCPUs' back; pop time
         * was too early for a live migration's log, which may have been
         * synced since. */
        if (r->type == BLK_T_IN)
            for (unsigned i = 0; i < r->n_data; i++)
                dirty_log_mark_hva(v->m, r->data[i].iov_base, r->data[i].iov_len);
        dirty_log_mark_hva(v->m, r->status, 1);
        *r->status = r->result;
        vq_push(&v->vq[0], r->e.head, r->written);
        b->completed = true;
    }
    req_free(r);
}

static void blk_interrupt(struct virtio_blk *b)
{
    if (b->completed) {
        b->completed = false;
        virtio_notify(&b->vdev, 0);
    }
}

/* Main loop, machine lock held. */
static void blk_done_ready(void *opaque, uint32_t events)
{
    struct virtio_blk *b = opaque;

    blk_aio_complete(b->aio);
    blk_interrupt(b);
}

static int submit(struct virtio_blk *b, struct blk_req *r)
{
    enum blk_aio_op op = r->type == BLK_T_IN ? BLK_AIO_READ
                         : r->type == BLK_T_OUT ? BLK_AIO_WRITE : BLK_AIO_FLUSH;

    TRACE(blk_req, "dev=%s op=%s offset=%llu bytes=%llu", b->drive_id, op_name(r->type),
          (unsigned long long)r->offset, (unsigned long long)data_bytes(r));
    return blk_aio_submit(b->aio, op, r->offset, r->data, r->n_data, req_done, r);
}

/* Parse one chain and start it, or answer it here (r completed and freed). */
static void handle_chain(struct virtio_blk *b, struct blk_req *r)
{
    struct vq_elem *e = &r->e;
    struct { uint32_t type, reserved; uint64_t sector; } hdr;
    uint64_t data_len, cap = b->bs ? block_getlength(b->bs) : 0;

    r->b = b;
    r->generation = b->vdev.generation;
    if (e->in_len < 1 || iov_to_buf(e->out, e->n_out, 0, &hdr, sizeof(hdr)) != sizeof(hdr)) {
        /* No room for a status byte or no header: not a request at all. */
        virtio_set_needs_reset(&b->vdev);
        req_free(r);
        return;
    }
    {
        struct iovec *last = &e->in[e->n_in - 1];

        r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
    }
    r->type = hdr.type;
    r->result = BLK_S_OK;
    r->written = 1;
    data_len = 0;
    switch (hdr.type) {
    case BLK_T_IN:
    case BLK_T_OUT: {
        bool in = hdr.type == BLK_T_IN;
        struct iovec *src = in ? e->in : e->out;
        unsigned n = in ? e->n_in : e->n_out;
        size_t skip = in ? 0 : sizeof(hdr), tail = in ? 1 : 0;

        r->data = calloc(n ? n : 1, sizeof(*r->data));
        if (!r->data)
            goto ioerr;
        /* Data segments: after the header (out) / before the status (in). */
        for (unsigned i = 0; i < n; i++) {
            struct iovec s = src[i];

            if (skip) {
                size_t k = MIN(skip, s.iov_len);

                s.iov_base = (uint8_t *)s.iov_base + k;
                s.iov_len -= k;
                skip -= k;
            }
            if (in && i == n - 1)
                s.iov_len -= tail;
            if (s.iov_len)
                r->data[r->n_data++] = s;
            data_len += s.iov_len;
        }
        if (!in && e->in_len != 1)
            goto ioerr;
        if (data_len % SECTOR || hdr.sector > cap / SECTOR ||
            data_len > cap - hdr.sector * SECTOR)
            goto ioerr;
        if (!in && b->readonly)
            goto ioerr;
        r->offset = hdr.sector * SECTOR;
        if (in)
            r->written += (uint32_t)data_len;
        if (submit(b, r) < 0)
            goto ioerr;
        return;
    }
    case BLK_T_FLUSH:
        if (submit(b, r) < 0)
            goto ioerr;
        return;
    case BLK_T_GET_ID: {
        uint8_t id[BLK_ID_BYTES] = { 0 };

        memcpy(id, b->serial, strlen(b->serial));
        r->written += (uint32_t)iov_from_buf(e->in, e->n_in, 0, id,
                                             MIN(sizeof(id), e->in_len - 1));
        break;
    }
    default:
        r->result = BLK_S_UNSUPP;
        break;
    }
    goto inline_done;
ioerr:
    r->result = BLK_S_IOERR;
    r->written = 1;
inline_done:
    *r->status = r->result;
    vq_push(&b->vdev.vq[0], e->head, r->written);
    req_free(r);
    b->completed = true;
}

static void blk_queue_notify(struct virtio_dev *v, unsigned q)
{
    struct virtio_blk *b = v->opaque;

    for (;;) {
        struct blk_req *r = calloc(1, sizeof(*r));
        int ret;

        if (!r)
            break;
        ret = virtio_pop(v, q, &r->e);
        if (ret <= 0) {
            req_free(r);
            break;
        }
        handle_chain(b, r);
    }
    /* io_uring finishes reads from the page cache inside the submit: take
     * those now rather than after a trip through the main loop. */
    blk_aio_complete(b->aio);
    blk_interrupt(b);
}

/* Every request in flight finished and completed to the guest (status
 * byte, used ring, interrupt): before a snapshot, the last stage of a
 * live migration, an accelerator switch.  Machine lock held, vCPUs parked,
 * so nothing new is submitted meanwhile. */
static unsigned blk_drain(void *opaque)
{
    struct virtio_blk *b = ((struct virtio_dev *)opaque)->opaque;
    unsigned n = b->aio ? blk_aio_inflight(b->aio) : 0;

    if (b->aio)
        blk_aio_drain(b->aio);
    blk_interrupt(b);
    return n;
}

static void blk_reset(struct virtio_dev *v)
{
    struct virtio_blk *b = v->opaque;

    /* After a reset the device must not touch the driver's memory, and an
     * in-flight read would still land in it: wait for them (as QEMU does).
     * The generation is already new, so their completions are dropped. */
    if (b->aio)
        blk_aio_drain(b->aio);
    b->completed = false;
}

static void blk_destroy(struct virtio_dev *v)
{
    struct virtio_blk *b = v->opaque;

    if (b->aio) {
        main_loop_del_fd(blk_aio_fd(b->aio));
        blk_aio_free(b->aio);   /* drains */
        b->aio = NULL;
    }
    if (b->bs) {
        block_flush(b->bs);
        block_close(b->bs);
        b->bs = NULL;
    }
    for (int i = 0; i < nr_drives_in_use; i++)
        if (drives_in_use[i] == b) {
            drives_in_use[i] = drives_in_use[--nr_drives_in_use];
            break;
        }
    free(b->drive_id);
}

static const struct virtio_device_ops blk_ops = {
    .name = "virtio-blk-pci",
    .device_id = VIRTIO_ID_BLOCK,
    .class_code = 0x010000,
    .queue_notify = blk_queue_notify,
    .reset = blk_reset,
    .destroy = blk_destroy,
};

/* ---- snapshot state ---- */

/* Drained before saving (blk_drain): the disk holds every write, the guest
 * every completion; the count travels to refuse a stream that says else. */
struct virtio_blk_state {
    struct virtio_pci_state t;
    uint32_t inflight;
};

static const struct vmstate_field blk_fields[] = {
    VIRTIO_PCI_STATE_FIELDS(struct virtio_blk_state),
    VMS_U32_FIELD(struct virtio_blk_state, inflight),
    VMS_END,
};

static void blk_state_get(const void *dev, void *state)
{
    const struct virtio_dev *v = dev;
    const struct virtio_blk *b = v->opaque;
    struct virtio_blk_state *s = state;

    virtio_pci_state_get(v, &s->t);
    s->inflight = b->aio ? blk_aio_inflight(b->aio) : 0;
}

static int blk_state_check(const void *dev, const void *state, const char *what)
{
    const struct virtio_blk_state *s = state;

    if (s->inflight) {
        error_report("%s: field inflight: %u requests in flight (a saved disk has none)",
                     what, s->inflight);
        return -EINVAL;
    }
    return virtio_pci_state_check(dev, &s->t, what);
}

/* The loaded VM is about to run: the image is ours now.  It was opened
 * inactive (read-only, unlocked) while the source still wrote to it; open
 * it for real -- fresh qcow2 metadata, the write lock -- before queued
 * requests are picked up. */
static int blk_post_commit(void *dev)
{
    struct virtio_blk *b = ((struct virtio_dev *)dev)->opaque;
    char err[512];

    if (b->bs && block_activate(b->bs, err, sizeof(err)) < 0) {
        error_report("drive %s: %s: %s", b->drive_id, b->bs->filename, err);
        return -EAGAIN;
    }
    return virtio_pci_kick_pending(dev);
}

static void blk_state_set(void *dev, const void *state)
{
    virtio_pci_state_set(dev, &((const struct virtio_blk_state *)state)->t);
}

const struct vmstate_desc virtio_blk_vmstate = {
    .name = "virtio-blk-pci", .version = 1, .fields = blk_fields,
    .state_size = sizeof(struct virtio_blk_state),
    .get = blk_state_get, .check = blk_state_check, .set = blk_state_set,
    .post_commit = blk_post_commit,
};

/* Find -drive ...,id=ID in the configuration and open it. */
static int open_drive(struct machine *m, struct virtio_blk *b, const char *id,
                      const char *ctx, enum blk_aio_backend *aio_backend)
{
    const struct vm_config *cfg = m->cfg;

    for (int i = 0; cfg && i < cfg->nr_drives; i++) {
        char dctx[512], err[BLOCK_ERRMSG_LEN];
        struct keyval kv;
        const char *did, *file, *fmt, *cache, *ifname, *aio;
        bool ro = false;
        enum block_cache_mode mode = BLOCK_CACHE_WRITEBACK;
        int ret = -EINVAL;

        snprintf(dctx, sizeof(dctx), "-drive %s", cfg->drives[i]);
        if (keyval_parse(&kv, cfg->drives[i], false, dctx) < 0)
            return -EINVAL;
        did = keyval_get(&kv, "id");
        if (!did || strcmp(did, id)) {
            keyval_free(&kv);
            continue;
        }
        file = keyval_get(&kv, "file");
        fmt = keyval_get(&kv, "format");
        cache = keyval_get(&kv, "cache");
        aio = keyval_get(&kv, "aio");
        ifname = keyval_get(&kv, "if");
        (void)ifname;
        (void)keyval_get(&kv, "media");
        if (keyval_get_bool(&kv, "readonly", false, &ro) < 0)
            goto out;
        if (cache && block_cache_mode_parse(cache, &mode) < 0) {
            error_report("%s: cache=%s: expected writeback, none, writethrough, directsync or "
                         "unsafe", dctx, cache);
            goto out;
        }
        if (aio && blk_aio_backend_parse(aio, aio_backend) < 0) {
            error_report("%s: aio=%s: expected threads, io_uring or native", dctx, aio);
            goto out;
        }
        if (!file || !*file) {
            error_report("%s: no file= given", dctx);
            goto out;
        }
        if (keyval_check_unused(&kv) < 0)
            goto out;
        /* No format=: probe, and say so the way QEMU does when it guessed raw. */
        b->bs = block_open(file, fmt,
                           (ro ? 0 : BLOCK_O_RDWR) | (fmt ? 0 : BLOCK_O_PROBE_WARN) | BLOCK_O_DEVICE,
                           mode, err, sizeof(err));
        if (!b->bs) {
            error_report("%s: %s: %s", dctx, file, err);
            ret = -EIO;
            goto out;
        }
        b->readonly = ro;
        b->aio_explicit = aio != NULL;
        ret = 0;
out:
        keyval_free(&kv);
        return ret;
    }
    error_report("%s: property 'drive': no -drive with id=%s", ctx, id);
    return -ENOENT;
}

int virtio_blk_create(struct machine *m, struct keyval *opts)
{
    struct virtio_blk *b;
    const char *drive = keyval_get(opts, "drive");
    const char *serial = keyval_get(opts, "serial");
    uint64_t cap, features = (1ULL << BLK_F_SEG_MAX) | (1ULL << BLK_F_BLK_SIZE) |
                             (1ULL << BLK_F_FLUSH);
    uint32_t seg_max = BLK_SEG_MAX, blk_size = SECTOR;
    enum blk_aio_backend aio_backend = BLK_AIO_IO_URING;
    char why[160];
    int ret;

    if (!drive) {
        error_report("%s: property 'drive' is required", opts->context);
        return -EINVAL;
    }
    for (int i = 0; i < nr_drives_in_use; i++)
        if (!strcmp(drives_in_use[i]->drive_id, drive)) {
            error_report("%s: drive %s is already in use", opts->context, drive);
            return -EBUSY;
        }
    if (serial && strlen(serial) > BLK_ID_BYTES) {
        error_report("%s: property 'serial': at most %d characters", opts->context,
                     BLK_ID_BYTES);
        return -EINVAL;
    }
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->drive_id = strdup(drive);
    if (serial)
        snprintf(b->serial, sizeof(b->serial), "%s", serial);
    ret = open_drive(m, b, drive, opts->context, &aio_backend);
    if (ret < 0)
        return ret;   /* b is leaked on this fatal start-up path */
    if (b->readonly)
        features |= 1ULL << BLK_F_RO;
    ret = virtio_pci_create(m, &b->vdev, &blk_ops, b, features, 1, BLK_QUEUE_SIZE, 0x3c, opts);
    if (ret < 0)
        return ret;
    cap = block_getlength(b->bs) / SECTOR;
    memcpy(b->vdev.config + 0x00, &cap, 8);
    memcpy(b->vdev.config + 0x0c, &seg_max, 4);
    memcpy(b->vdev.config + 0x14, &blk_size, 4);
    b->aio = blk_aio_new(b->bs, aio_backend, why, sizeof(why));
    if (!b->aio || main_loop_add_fd(blk_aio_fd(b->aio), EPOLLIN, blk_done_ready, b) < 0) {
        error_report("%s: cannot start block I/O: %s", opts->context,
                     b->aio ? "cannot watch the completion eventfd" : why);
        return -EIO;
    }
    /* Asked for explicitly and not granted for a reason other than the
     * format (qcow2 always uses the pool, docs/block.md): say so. */
    if (aio_backend == BLK_AIO_IO_URING && blk_aio_backend(b->aio) != BLK_AIO_IO_URING &&
        b->aio_explicit && b->bs->drv == &block_driver_raw)
        warn_report("%s: %s", opts->context, why);
    machine_set_device_drain(m, &b->vdev, blk_drain);
    if (nr_drives_in_use < CONFIG_MAX_DRIVES)
        drives_in_use[nr_drives_in_use++] = b;
    return 0;
}

int virtio_blk_foreach(void (*fn)(void *opaque, const struct virtio_blk_info *info),
                       void *opaque)
{
    for (int i = 0; i < nr_drives_in_use; i++) {
        struct virtio_blk *b = drives_in_use[i];
        struct virtio_blk_info info = {
            .id = b->drive_id,
            .file = b->bs ? b->bs->filename : NULL,
            .format = b->bs && b->bs->drv ? b->bs->drv->name : NULL,
            .size = b->bs ? block_getlength(b->bs) : 0,
            .readonly = b->readonly,
        };

        fn(opaque, &info);
    }
    return nr_drives_in_use;
}

