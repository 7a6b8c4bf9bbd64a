/* The qcow2 driver: open/close, the driver entry points, resize, info. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"

#define HEADER_READ_MAX (2 * MiB)

static int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
    /* Like QEMU: a newer version is still qcow2, refused later with a reason. */
    if (len >= 8 && be32_load(buf) == QCOW2_MAGIC && be32_load(buf + 4) >= 2)
        return 100;
    return 0;
}

static int cache_entries(uint64_t cs)
{
    uint64_t n = 8 * MiB / cs;

    return (int)MAX(16, MIN(n, 64));
}

static void qcow2_free_state(struct qcow2_state *s)
{
    qcow2_cache_destroy(&s->l2_cache);
    qcow2_cache_destroy(&s->rb_cache);
    qcow2_header_free(&s->ih);
    qcow2_free_snapshots(s);
    free(s->l1);
    free(s->reftable);
    free(s->frees);
    free(s->bounce);
    free(s->cbuf);
    free(s);
}

int qcow2_set_incompat(struct block_state *bs, uint64_t bits)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint8_t be[8];
    int r;

    be64_store(be, bits);
    r = block_file_pwrite(bs->fd, 72, be, 8);
    if (r == 0)
        r = qcow2_sync(bs);
    if (r == 0)
        s->ih.h.incompatible_features = bits;
    return r;
}

static int qcow2_open(struct block_state *bs, unsigned flags)
{
    struct qcow2_state *s = calloc(1, sizeof(*s));
    struct qcow2_header *h;
    uint8_t *buf = NULL;
    off_t end;
    size_t hlen;
    int r;

    if (!s)
        return -ENOMEM;
    bs->opaque = s;
    end = lseek(bs->fd, 0, SEEK_END);
    if (end < 0) {
        r = -errno;
        goto fail;
    }
    s->file_size = (uint64_t)end;
    hlen = (size_t)MIN(s->file_size, HEADER_READ_MAX);
    buf = malloc(hlen ? hlen : 1);
    if (!buf) {
        r = -ENOMEM;
        goto fail;
    }
    if ((r = block_file_pread(bs->fd, 0, buf, hlen)) < 0)
        goto fail;
    r = qcow2_header_parse(buf, hlen, s->file_size, &s->ih, bs->errmsg, sizeof(bs->errmsg));
    if (r < 0)
        goto fail;
    h = &s->ih.h;
    s->rw = flags & BLOCK_O_RDWR;
    s->unsafe = bs->cache == BLOCK_CACHE_UNSAFE;
    /* check -r may open a corrupt image read-write to repair it, as qemu-img does. */
    if ((h->incompatible_features & QCOW2_INCOMPAT_CORRUPT) && s->rw &&
        !(flags & BLOCK_O_NO_REPAIR)) {
        block_set_error(bs, "qcow2: Image is corrupt; cannot be opened read/write");
        r = -EACCES;
        goto fail;
    }
    s->cluster_bits = h->cluster_bits;
    s->cluster_size = 1ULL << h->cluster_bits;
    s->l2_bits = h->cluster_bits - 3;
    s->refcount_order = h->refcount_order;
    s->rb_bits = h->cluster_bits + 3 - h->refcount_order;
    s->refcount_max = h->refcount_order == 6 ? UINT64_MAX
                                             : (1ULL << (1u << h->refcount_order)) - 1;
    s->csize_shift = 62 - (h->cluster_bits - 8);
    s->csize_mask = (1ULL << (h->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ULL << s->csize_shift) - 1;
    s->l1_size = h->l1_size;
    s->l1_dirty_lo = UINT32_MAX;
    s->free_hint = 1;
    s->l1 = calloc(MAX(h->l1_size, 1u), 8);
    if (posix_memalign((void **)&s->bounce, 4096, s->cluster_size))
        s->bounce = NULL;
    s->cbuf_len = 2 * s->cluster_size + 512;
    s->cbuf = malloc(s->cbuf_len);
    if (!s->l1 || !s->bounce || !s->cbuf) {
        r = -ENOMEM;
        goto fail;
    }
    if ((r = block_file_pread(bs->fd, h->l1_table_offset, s->l1, (size_t)h->l1_size * 8)) < 0)
        goto fail;
    for (uint32_t i = 0; i < h->l1_size; i++)
        s->l1[i] = __builtin_bswap64(s->l1[i]);
    if ((r = qcow2_cache_init(&s->l2_cache, cache_entries(s->cluster_size), s->cluster_size,
                              true)) < 0 ||
        (r = qcow2_cache_init(&s->rb_cache, cache_entries(s->cluster_size), s->cluster_size,
                              false)) < 0)
        goto fail;
    if ((r = qcow2_load_reftable(bs)) < 0)
        goto fail;
    if ((r = qcow2_read_snapshots(bs, bs->errmsg, sizeof(bs->errmsg))) < 0)
        goto fail;
    bs->total_size = h->size;
    if (s->rw) {
        /* Autoclear bits we do not understand must go when we write. */
        if (h->version >= 3 && h->autoclear_features) {
            uint8_t zero[8] = { 0 };

            if ((r = block_file_pwrite(bs->fd, 88, zero, 8)) < 0 || (r = qcow2_sync(bs)) < 0)
                goto fail;
            h->autoclear_features = 0;
        }
        if ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) && !(flags & BLOCK_O_NO_REPAIR)) {
            if ((r = qcow2_repair(bs, true)) < 0) {
                if (!bs->errmsg[0])
                    block_set_error(bs, "could not repair the dirty image: %s", strerror(-r));
                goto fail;
            }
            if ((r = qcow2_set_incompat(bs, h->incompatible_features & ~QCOW2_INCOMPAT_DIRTY)) < 0)
                goto fail;
        }
    }
    free(buf);
    return 0;

fail:
    free(buf);
    qcow2_free_state(s);
    bs->opaque = NULL;
    return r;
}

static int qcow2_flush(struct block_state *bs)
{
    int r = qcow2_flush_metadata(bs);

    return r < 0 ? r : qcow2_sync(bs);
}

static void qcow2_close(struct block_state *bs)
{
    struct qcow2_state *s = qcow2_s(bs);

    if (!s)
        return;
    if (s->rw && qcow2_flush(bs) == 0 && s->dirty_marked)
        qcow2_set_incompat(bs, s->ih.h.incompatible_features & ~QCOW2_INCOMPAT_DIRTY);
    qcow2_free_state(s);
    bs->opaque = NULL;
}

static int qcow2_pread(struct block_state *bs, uint64_t off, void *buf, size_t len)
{
    return qcow2_read(bs, off, buf, len);
}

/* With lazy refcounts, the dirty bit goes on before the first write. */
static int mark_dirty(struct block_state *bs)
{
    struct qcow2_state *s = qcow2_s(bs);
    int r;

    if (s->dirty_marked || !(s->ih.h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) ||
        s->ih.h.version < 3)
        return 0;
    r = qcow2_set_incompat(bs, s->ih.h.incompatible_features | QCOW2_INCOMPAT_DIRTY);
    if (r == 0)
        s->dirty_marked = true;
    return r;
}

static int qcow2_pwrite(struct block_state *bs, uint64_t off, const void *buf, size_t len)
{
    int r = mark_dirty(bs);

    return r < 0 ? r : qcow2_write(bs, off, buf, len);
}

static int qcow2_pwrite_zeroes(struct block_state *bs, uint64_t off, uint64_t len)
{
    int r = mark_dirty(bs);

    return r < 0 ? r : qcow2_write_zeroes(bs, off, len);
}

static int qcow2_pwrite_compressed(struct block_state *bs, uint64_t off, const void *buf,
                                   size_t len)
{
    int r = mark_dirty(bs);

    return r < 0 ? r : qcow2_write_compressed(bs, off, buf, len);
}

/* The file's end after a shrink: just past the last cluster still in use. */
static int trim_file(struct block_state *bs)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t c = s->file_size >> s->cluster_bits, rc = 0;
    int r;

    while (c > 1) {
        if ((r = qcow2_get_refcount(bs, c - 1, &rc)) < 0)
            return r;
        if (rc)
            break;
        c--;
    }
    if (c << s->cluster_bits >= s->file_size)
        return 0;
    if (ftruncate(bs->fd, (off_t)(c << s->cluster_bits)) < 0)
        return -errno;
    s->file_size = c << s->cluster_bits;
    return 0;
}

/* QEMU's shrink: the guest clusters past the new end are dropped (data in
 * a partly kept last cluster stays), the header's size changes, and the
 * file loses its unused tail.  The L1 table keeps its size. */
static int shrink(struct block_state *bs, uint64_t size)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint8_t be[8];
    int r;

    if ((r = qcow2_discard_tail(bs, ALIGN_UP(size, s->cluster_size))) < 0 ||
        (r = qcow2_flush(bs)) < 0)
        return r;
    be64_store(be, size);
    if ((r = block_file_pwrite(bs->fd, 24, be, 8)) < 0 || (r = qcow2_sync(bs)) < 0)
        return r;
    s->ih.h.size = size;
    bs->total_size = size;
    s->comp_cur = s->comp_end = 0;
    return trim_file(bs);
}

static int qcow2_truncate(struct block_state *bs, uint64_t size)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t per_l1 = s->cluster_size << s->l2_bits;
    uint8_t be[8];
    int r;

    if (size % 512) {
        block_set_error(bs, "The new size must be a multiple of 512");
        return -EINVAL;
    }
    if (size > QCOW2_MAX_VIRTUAL_SIZE) {
        block_set_error(bs, "invalid image size %llu", (unsigned long long)size);
        return -EINVAL;
    }
    if (size < s->ih.h.size)
        return shrink(bs, size);
    if ((r = qcow2_grow_l1(bs, (size + per_l1 - 1) / per_l1)) < 0)
        return r;
    if ((r = qcow2_flush(bs)) < 0)
        return r;
    be64_store(be, size);
    if ((r = block_file_pwrite(bs->fd, 24, be, 8)) < 0 || (r = qcow2_sync(bs)) < 0)
        return r;
    s->ih.h.size = size;
    bs->total_size = size;
    return 0;
}

static int qcow2_get_info(struct block_state *bs, struct block_info *info)
{
    struct qcow2_state *s = qcow2_s(bs);
    const struct qcow2_header *h = &s->ih.h;

    info->virtual_size = h->size;
    info->cluster_size = s->cluster_size;
    snprintf(info->backing_file, sizeof(info->backing_file), "%s", s->ih.backing_file);
    snprintf(info->backing_format, sizeof(info->backing_format), "%s", s->ih.backing_format);
    info->dirty = h->incompatible_features & QCOW2_INCOMPAT_DIRTY;
    info->is_qcow2 = true;
    info->version = (int)h->version;
    info->lazy_refcounts = h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS;
    info->refcount_bits = 1 << h->refcount_order;
    info->corrupt = h->incompatible_features & QCOW2_INCOMPAT_CORRUPT;
    info->zstd = h->compression_type == 1;
    info->extended_l2 = h->incompatible_features & QCOW2_INCOMPAT_EXTL2;
    info->nb_snapshots = s->nb_snapshots;
    if (s->nb_snapshots) {
        info->snapshots = calloc((size_t)s->nb_snapshots, sizeof(*info->snapshots));
        if (!info->snapshots)
            return -ENOMEM;
        for (int i = 0; i < s->nb_snapshots; i++)
            info->snapshots[i] = s->snapshots[i].info;
    }
    return 0;
}

static uint64_t qcow2_granularity(struct block_state *bs)
{
    return qcow2_s(bs)->cluster_size;
}

const struct block_driver block_driver_qcow2 = {
    .name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .pwrite_compressed = qcow2_pwrite_compressed,
    .pwrite_zeroes = qcow2_pwrite_zeroes,
    .flush = qcow2_flush,
    .truncate = qcow2_truncate,
    .get_info = qcow2_get_info,
    .check = qcow2_check,
    .map = qcow2_map_range,
    .write_granularity = qcow2_granularity,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
    .snapshot_load = qcow2_snapshot_load,
};
