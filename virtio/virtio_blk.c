/* virtio-blk-pci on top of the block layer.
 *
 * Requests are parsed and validated under the machine lock (vCPU thread),
 * then handed to this device's small worker pool, which does the
 * (synchronous) block_pread/pwrite/flush straight into the guest buffers.
 * Finished requests go onto a done list and an eventfd wakes the main loop,
 * which writes the status byte, updates the used ring and interrupts, under
 * the machine lock.  So neither a vCPU nor the main loop ever waits for the
 * disk.  A reset bumps the transport's generation; completions of an older
 * generation are dropped. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/block.h"
#include "config/config.h"
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
#define BLK_WORKERS 2
#define BLK_ID_BYTES 20
#define SECTOR 512

struct blk_req {
    struct blk_req *next;
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
    bool readonly;
    char serial[BLK_ID_BYTES + 1];
    char *drive_id;
    int efd;
    pthread_mutex_t lock;     /* the two lists and quit */
    pthread_cond_t cond;
    struct blk_req *todo, **todo_tail;
    struct blk_req *done;
    bool quit;
    pthread_t workers[BLK_WORKERS];
    int nr_workers;
    unsigned inflight;
};

static struct virtio_blk *drives_in_use[CONFIG_MAX_DRIVES];
static int nr_drives_in_use;

static void req_free(struct blk_req *r)
{
    vq_elem_free(&r->e);
    free(r->data);
    free(r);
}

static int rw_iov(struct block_state *bs, bool write, uint64_t off, struct iovec *iov,
                  unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int ret = write ? block_pwrite(bs, off, iov[i].iov_base, iov[i].iov_len)
                        : block_pread(bs, off, iov[i].iov_base, iov[i].iov_len);

        if (ret < 0)
            return ret;
        off += iov[i].iov_len;
    }
    return 0;
}

/* Worker thread: no machine lock; touches only the request and guest RAM. */
static void req_execute(struct virtio_blk *b, struct blk_req *r)
{
    int ret;
    static const char *const op_names[] = { [BLK_T_IN] = "read", [BLK_T_OUT] = "write",
                                            [BLK_T_FLUSH] = "flush" };
    const char *op = r->type < ARRAY_SIZE(op_names) && op_names[r->type] ? op_names[r->type]
                                                                        : "other";
    uint64_t bytes = 0;

    for (unsigned i = 0; i < r->n_data; i++)
        bytes += r->data[i].iov_len;
    TRACE(blk_req, "dev=%s op=%s offset=%llu bytes=%llu", b->drive_id, op,
          (unsigned long long)r->offset, (unsigned long long)bytes);
    switch (r->type) {
    case BLK_T_IN:
        ret = rw_iov(b->bs, false, r->offset, r->data, r->n_data);
        break;
    case BLK_T_OUT:
        ret = rw_iov(b->bs, true, r->offset, r->data, r->n_data);
        break;
    case BLK_T_FLUSH:
        ret = block_flush(b->bs);
        break;
    default:
        ret = -EINVAL;
        break;
    }
    if (ret < 0) {
        LOG(LOG_GUEST_ERRORS, "virtio-blk %s: request type %u at %llu: %s\n", b->drive_id,
            r->type, (unsigned long long)r->offset, strerror(-ret));
        r->result = BLK_S_IOERR;
    }
}

static void *blk_worker(void *opaque)
{
    struct virtio_blk *b = opaque;

    pthread_mutex_lock(&b->lock);
    for (;;) {
        struct blk_req *r;
        uint64_t one = 1;

        while (!b->todo && !b->quit)
            pthread_cond_wait(&b->cond, &b->lock);
        if (b->quit)
            break;
        r = b->todo;
        b->todo = r->next;
        if (!b->todo)
            b->todo_tail = &b->todo;
        pthread_mutex_unlock(&b->lock);
        req_execute(b, r);
        pthread_mutex_lock(&b->lock);
        r->next = b->done;
        b->done = r;
        /* Cannot fail short of counter overflow. */
        (void)!write(b->efd, &one, sizeof(one));
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static void req_complete(struct virtio_blk *b, struct blk_req *r)
{
    struct virtio_dev *v = &b->vdev;

    if (r->generation != v->generation || !v->vq[0].enabled)
        return;   /* the device was reset meanwhile */
    *r->status = r->result;
    vq_push(&v->vq[0], r->e.head, r->written);
}

/* Main loop, machine lock held. */
static void blk_done_ready(void *opaque, uint32_t events)
{
    struct virtio_blk *b = opaque;
    struct blk_req *list, *rev = NULL;
    uint64_t cnt;
    bool any = false;

    /* EAGAIN just means an earlier wake-up drained it. */
    (void)!read(b->efd, &cnt, sizeof(cnt));
    pthread_mutex_lock(&b->lock);
    list = b->done;
    b->done = NULL;
    pthread_mutex_unlock(&b->lock);
    /* The list is LIFO; complete in submission order. */
    while (list) {
        struct blk_req *n = list->next;

        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        struct blk_req *n = rev->next;

        req_complete(b, rev);
        b->inflight--;
        any = true;
        req_free(rev);
        rev = n;
    }
    if (any)
        virtio_notify(&b->vdev, 0);
}

static void submit(struct virtio_blk *b, struct blk_req *r)
{
    pthread_mutex_lock(&b->lock);
    r->next = NULL;
    *b->todo_tail = r;
    b->todo_tail = &r->next;
    b->inflight++;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* Parse one chain.  Returns true if it went to a worker, false if it was
 * answered here (r freed or completed inline). */
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
        submit(b, r);
        return;
    }
    case BLK_T_FLUSH:
        submit(b, r);
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
    virtio_notify(&b->vdev, 0);
}

static void blk_queue_notify(struct virtio_dev *v, unsigned q)
{
    struct virtio_blk *b = v->opaque;

    for (;;) {
        struct blk_req *r = calloc(1, sizeof(*r));
        int ret;

        if (!r)
            return;
        ret = virtio_pop(v, q, &r->e);
        if (ret <= 0) {
            req_free(r);
            return;
        }
        handle_chain(b, r);
    }
}

static void blk_reset(struct virtio_dev *v)
{
    /* In-flight requests finish in their workers and are dropped by
     * generation when they complete. */
}

static void blk_destroy(struct virtio_dev *v)
{
    struct virtio_blk *b = v->opaque;

    pthread_mutex_lock(&b->lock);
    b->quit = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    for (int i = 0; i < b->nr_workers; i++)
        pthread_join(b->workers[i], NULL);
    b->nr_workers = 0;
    if (b->bs) {
        block_flush(b->bs);
        block_close(b->bs);
        b->bs = NULL;
    }
    while (b->done) {
        struct blk_req *r = b->done;

        b->done = r->next;
        req_free(r);
    }
    if (b->efd >= 0) {
        main_loop_del_fd(b->efd);
        close(b->efd);
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

/* Find -drive ...,id=ID in the configuration and open it. */
static int open_drive(struct machine *m, struct virtio_blk *b, const char *id,
                      const char *ctx)
{
    const struct vm_config *cfg = m->cfg;

    for (int i = 0; cfg && i < cfg->nr_drives; i++) {
        char dctx[512], err[BLOCK_ERRMSG_LEN];
        struct keyval kv;
        const char *did, *file, *fmt, *cache, *ifname;
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
        if (!file || !*file) {
            error_report("%s: no file= given", dctx);
            goto out;
        }
        if (keyval_check_unused(&kv) < 0)
            goto out;
        /* No format=: probe, and say so the way QEMU does when it guessed raw. */
        b->bs = block_open(file, fmt, (ro ? 0 : BLOCK_O_RDWR) | (fmt ? 0 : BLOCK_O_PROBE_WARN),
                           mode, err, sizeof(err));
        if (!b->bs) {
            error_report("%s: %s: %s", dctx, file, err);
            ret = -EIO;
            goto out;
        }
        b->readonly = ro;
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
    b->efd = -1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->todo_tail = &b->todo;
    if (serial)
        snprintf(b->serial, sizeof(b->serial), "%s", serial);
    ret = open_drive(m, b, drive, opts->context);
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
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->efd < 0 || main_loop_add_fd(b->efd, EPOLLIN, blk_done_ready, b) < 0) {
        error_report("%s: cannot create the completion eventfd", opts->context);
        return -EIO;
    }
    for (int i = 0; i < BLK_WORKERS; i++) {
        if (pthread_create(&b->workers[i], NULL, blk_worker, b))
            break;
        b->nr_workers++;
    }
    if (!b->nr_workers) {
        error_report("%s: cannot start I/O threads", opts->context);
        return -EAGAIN;
    }
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
