/* qcow2 refcounts: arithmetic on refcount blocks of any width, the
 * refcount table, cluster allocation, and the ordered metadata flush.
 *
 * Crash-safety invariant: a cluster's refcount is on disk before any
 * L2/L1 entry that points at it, and a refcount is only lowered after the
 * entries that pointed at it are gone on disk.  A crash can then leak
 * clusters but never leave a reference to a cluster counted as free. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"

uint64_t qcow2_refcount_get(const uint8_t *block, uint64_t index, unsigned order)
{
    switch (order) {
    case 0:
    case 1:
    case 2: {
        unsigned bits = 1u << order, per_byte = 8 >> order;
        unsigned shift = (unsigned)(index % per_byte) * bits;

        return (block[index / per_byte] >> shift) & ((1u << bits) - 1);
    }
    case 3:
        return block[index];
    case 4:
        return be16_load(block + index * 2);
    case 5:
        return be32_load(block + index * 4);
    default:
        return be64_load(block + index * 8);
    }
}

void qcow2_refcount_set(uint8_t *block, uint64_t index, unsigned order, uint64_t value)
{
    switch (order) {
    case 0:
    case 1:
    case 2: {
        unsigned bits = 1u << order, per_byte = 8 >> order;
        unsigned shift = (unsigned)(index % per_byte) * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        uint8_t *b = &block[index / per_byte];

        *b = (uint8_t)((*b & ~mask) | ((value << shift) & mask));
        break;
    }
    case 3:
        block[index] = (uint8_t)value;
        break;
    case 4:
        be16_store(block + index * 2, (uint16_t)value);
        break;
    case 5:
        be32_store(block + index * 4, (uint32_t)value);
        break;
    default:
        be64_store(block + index * 8, value);
        break;
    }
}

int qcow2_sync(struct block_state *bs)
{
    if (qcow2_s(bs)->unsafe)
        return 0;
    return fdatasync(bs->fd) < 0 ? -errno : 0;
}

int qcow2_load_reftable(struct block_state *bs)
{
    struct qcow2_state *s = qcow2_s(bs);
    const struct qcow2_header *h = &s->ih.h;
    uint64_t bytes = (uint64_t)h->refcount_table_clusters * s->cluster_size;
    uint64_t *t;
    int r;

    t = malloc(bytes);
    if (!t)
        return -ENOMEM;
    r = block_file_pread(bs->fd, h->refcount_table_offset, t, bytes);
    if (r < 0) {
        free(t);
        return r;
    }
    for (uint64_t i = 0; i < bytes / 8; i++) {
        uint64_t off = __builtin_bswap64(t[i]) & QCOW2_REFT_OFFSET_MASK;

        if (off && (off % s->cluster_size || off > s->file_size ||
                    s->file_size - off < s->cluster_size)) {
            block_set_error(bs, "refcount block %llu at 0x%llx is invalid (unaligned or "
                            "beyond the end of the file)",
                            (unsigned long long)i, (unsigned long long)off);
            free(t);
            return -EINVAL;
        }
        if (off == 0 && i == 0) {
            block_set_error(bs, "refcount table has no block for the header cluster");
            free(t);
            return -EINVAL;
        }
        t[i] = off;
    }
    free(s->reftable);
    s->reftable = t;
    s->reftable_size = bytes / 8;
    return 0;
}

int qcow2_get_refcount(struct block_state *bs, uint64_t cluster, uint64_t *rc)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t rti = cluster >> s->rb_bits;
    uint8_t *rb;
    int r;

    *rc = 0;
    if (rti >= s->reftable_size || !s->reftable[rti])
        return 0;
    r = qcow2_cache_get(bs, &s->rb_cache, s->reftable[rti], false, &rb);
    if (r < 0)
        return r;
    *rc = qcow2_refcount_get(rb, cluster & ((1ULL << s->rb_bits) - 1), s->refcount_order);
    qcow2_cache_put(&s->rb_cache, rb);
    return 0;
}

static int write_header_field(struct block_state *bs, uint64_t off, const void *p, size_t len)
{
    return block_file_pwrite(bs->fd, off, p, len);
}

/* A refcount block for range rti goes into the range's first cluster, which
 * is free because nothing in a range without a block may be in use; the
 * allocator never hands those clusters out.  Block first, then the table
 * entry, with a sync between so the table never points at garbage. */
static int new_refblock(struct block_state *bs, uint64_t rti)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t off = (rti << s->rb_bits) << s->cluster_bits;
    uint8_t *rb, be[8];
    int r;

    r = qcow2_cache_get(bs, &s->rb_cache, off, true, &rb);
    if (r < 0)
        return r;
    qcow2_refcount_set(rb, 0, s->refcount_order, 1);
    r = block_file_pwrite(bs->fd, off, rb, s->cluster_size);
    qcow2_cache_put(&s->rb_cache, rb);
    if (r < 0)
        return r;
    if ((r = qcow2_sync(bs)) < 0)
        return r;
    s->reftable[rti] = off;
    be64_store(be, off);
    r = write_header_field(bs, s->ih.h.refcount_table_offset + rti * 8, be, 8);
    if (r < 0)
        return r;
    s->file_size = MAX(s->file_size, off + s->cluster_size);
    return 0;
}

/* Move the table to fresh ranges past everything allocated: k new refblocks
 * then the t table clusters, all counted by those blocks. */
static int grow_reftable(struct block_state *bs, uint64_t min_rti)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t cs = s->cluster_size, rbe = 1ULL << s->rb_bits;
    uint64_t end_cl = (s->file_size + cs - 1) / cs;
    uint64_t q = MAX(min_rti, (end_cl + rbe - 1) / rbe);
    uint64_t n = MAX(s->reftable_size * 2, q + 1), t = 0, k = 1;
    uint64_t area, old_off = s->ih.h.refcount_table_offset;
    uint64_t old_clusters = s->ih.h.refcount_table_clusters;
    uint64_t *nt = NULL;
    uint8_t *blk = NULL, hdr[12];
    int r;

    for (;;) {
        n = MAX(n, q + k);
        t = (n * 8 + cs - 1) / cs;
        uint64_t k2 = (k + t + rbe - 1) / rbe;

        if (k2 <= k && n >= q + k)
            break;
        k = k2;
    }
    n = t * cs / 8;
    if (t * cs > QCOW2_MAX_REFTABLE_BYTES) {
        block_set_error(bs, "image too large: refcount table would exceed %llu bytes",
                        (unsigned long long)QCOW2_MAX_REFTABLE_BYTES);
        return -EFBIG;
    }
    area = q * rbe; /* first cluster of the new area */
    nt = calloc(n, 8);
    blk = malloc(cs);
    if (!nt || !blk) {
        r = -ENOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < s->reftable_size; i++)
        nt[i] = __builtin_bswap64(s->reftable[i]);
    for (uint64_t j = 0; j < k; j++) {
        uint64_t boff = (area + j) * cs;

        nt[q + j] = __builtin_bswap64(boff);
        memset(blk, 0, cs);
        for (uint64_t c = 0; c < k + t; c++) {
            uint64_t cl = area + c;

            if (cl >> s->rb_bits == q + j)
                qcow2_refcount_set(blk, cl & (rbe - 1), s->refcount_order, 1);
        }
        qcow2_cache_drop(&s->rb_cache, boff);
        if ((r = block_file_pwrite(bs->fd, boff, blk, cs)) < 0)
            goto out;
    }
    if ((r = block_file_pwrite(bs->fd, (area + k) * cs, nt, t * cs)) < 0)
        goto out;
    if ((r = qcow2_sync(bs)) < 0)
        goto out;
    be64_store(hdr, (area + k) * cs);
    be32_store(hdr + 8, (uint32_t)t);
    if ((r = write_header_field(bs, 48, hdr, 12)) < 0)
        goto out;
    if ((r = qcow2_sync(bs)) < 0)
        goto out;
    s->ih.h.refcount_table_offset = (area + k) * cs;
    s->ih.h.refcount_table_clusters = (uint32_t)t;
    for (uint64_t i = 0; i < n; i++)
        nt[i] = __builtin_bswap64(nt[i]);
    free(s->reftable);
    s->reftable = nt;
    s->reftable_size = n;
    nt = NULL;
    s->file_size = MAX(s->file_size, (area + k + t) * cs);
    /* Nothing points at the old table now that the header is durable. */
    r = qcow2_update_refcount(bs, old_off, old_clusters * cs, -1);
out:
    free(nt);
    free(blk);
    return r;
}

int qcow2_update_refcount(struct block_state *bs, uint64_t offset, uint64_t len, int delta)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    int r;

    if (!len)
        return 0;
    for (uint64_t c = first; c <= last;) {
        uint64_t rti = c >> s->rb_bits;
        uint64_t range_end = (rti + 1) << s->rb_bits;
        uint8_t *rb;

        if (rti >= s->reftable_size || !s->reftable[rti]) {
            if (delta < 0) {
                block_set_error(bs, "refcount underflow at cluster %llu",
                                (unsigned long long)c);
                return -EIO;
            }
            if (rti >= s->reftable_size && (r = grow_reftable(bs, rti)) < 0)
                return r;
            if (!s->reftable[rti] && (r = new_refblock(bs, rti)) < 0)
                return r;
        }
        r = qcow2_cache_get(bs, &s->rb_cache, s->reftable[rti], false, &rb);
        if (r < 0)
            return r;
        for (; c <= last && c < range_end; c++) {
            uint64_t idx = c & ((1ULL << s->rb_bits) - 1);
            uint64_t v = qcow2_refcount_get(rb, idx, s->refcount_order);

            if ((delta < 0 && v < (uint64_t)-delta) ||
                (delta > 0 && s->refcount_max - v < (uint64_t)delta)) {
                qcow2_cache_put(&s->rb_cache, rb);
                block_set_error(bs, "refcount %s at cluster %llu",
                                delta < 0 ? "underflow" : "overflow", (unsigned long long)c);
                return delta < 0 ? -EIO : -ERANGE;
            }
            v += (uint64_t)(int64_t)delta;
            qcow2_refcount_set(rb, idx, s->refcount_order, v);
            if (v == 0 && c < s->free_hint)
                s->free_hint = c;
        }
        qcow2_cache_mark_dirty(&s->rb_cache, rb);
        qcow2_cache_put(&s->rb_cache, rb);
    }
    return 0;
}

/* Clusters in a range that has no refcount block yet are free, except the
 * range's first one, which is where its block will go. */
static int cluster_free(struct block_state *bs, uint64_t c, bool *is_free)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t rti = c >> s->rb_bits, rc;
    int r;

    if (rti >= s->reftable_size || !s->reftable[rti]) {
        *is_free = (c & ((1ULL << s->rb_bits) - 1)) != 0;
        return 0;
    }
    r = qcow2_get_refcount(bs, c, &rc);
    *is_free = rc == 0;
    return r;
}

/* Runs too long for the scan (a free run never crosses the reserved first
 * cluster of a block-less range): fresh ranges past the end, k refblocks
 * first, then the run, all counted by those blocks. */
static int64_t alloc_large(struct block_state *bs, uint64_t n)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t cs = s->cluster_size, rbe = 1ULL << s->rb_bits;
    uint64_t k = (n + rbe - 2) / (rbe - 1), q, area;
    uint8_t *blk, be[8];
    int r;

    q = ((s->file_size + cs - 1) / cs + rbe - 1) / rbe;
    if (q + k > s->reftable_size) {
        if ((r = grow_reftable(bs, q + k)) < 0)
            return r;
        q = ((s->file_size + cs - 1) / cs + rbe - 1) / rbe;
        if (q + k > s->reftable_size)
            return -EFBIG;
    }
    area = q * rbe;
    blk = malloc(cs);
    if (!blk)
        return -ENOMEM;
    for (uint64_t j = 0; j < k; j++) {
        memset(blk, 0, cs);
        for (uint64_t c = area; c < area + k + n; c++)
            if (c >> s->rb_bits == q + j)
                qcow2_refcount_set(blk, c & (rbe - 1), s->refcount_order, 1);
        qcow2_cache_drop(&s->rb_cache, (area + j) * cs);
        if ((r = block_file_pwrite(bs->fd, (area + j) * cs, blk, cs)) < 0)
            goto out;
    }
    if ((r = qcow2_sync(bs)) < 0)
        goto out;
    for (uint64_t j = 0; j < k; j++) {
        s->reftable[q + j] = (area + j) * cs;
        be64_store(be, (area + j) * cs);
        r = block_file_pwrite(bs->fd, s->ih.h.refcount_table_offset + (q + j) * 8, be, 8);
        if (r < 0)
            goto out;
    }
    s->file_size = MAX(s->file_size, (area + k + n) * cs);
out:
    free(blk);
    return r < 0 ? r : (int64_t)((area + k) * cs);
}

int64_t qcow2_alloc_clusters(struct block_state *bs, uint64_t n)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t start = s->free_hint, run = 0, c = s->free_hint;
    bool first_seen = false;
    int r;

    if (n > (1ULL << s->rb_bits) / 4)
        return alloc_large(bs, n);
    if (c == 0)
        c = start = 1;
    for (;; c++) {
        bool is_free;

        if (c > (QCOW2_MAX_VIRTUAL_SIZE >> s->cluster_bits))
            return -ENOSPC;
        r = cluster_free(bs, c, &is_free);
        if (r < 0)
            return r;
        if (!is_free) {
            run = 0;
            continue;
        }
        if (!first_seen) {
            s->free_hint = c;
            first_seen = true;
        }
        if (run++ == 0)
            start = c;
        if (run == n)
            break;
    }
    s->file_size = MAX(s->file_size, (start + n) << s->cluster_bits);
    r = qcow2_update_refcount(bs, start << s->cluster_bits, n << s->cluster_bits, 1);
    if (r < 0)
        return r;
    if (s->free_hint == start)
        s->free_hint = start + n;
    return (int64_t)(start << s->cluster_bits);
}

int qcow2_free_later(struct block_state *bs, uint64_t offset, uint64_t len)
{
    struct qcow2_state *s = qcow2_s(bs);

    if (s->nb_frees == s->cap_frees) {
        size_t cap = s->cap_frees ? s->cap_frees * 2 : 64;
        struct qcow2_free *f = realloc(s->frees, cap * sizeof(*f));

        if (!f)
            return -ENOMEM; /* the cluster leaks; harmless */
        s->frees = f;
        s->cap_frees = cap;
    }
    s->frees[s->nb_frees].offset = offset;
    s->frees[s->nb_frees].len = len;
    s->nb_frees++;
    return 0;
}

static bool l2_cache_dirty(struct qcow2_state *s)
{
    for (int i = 0; i < s->l2_cache.n; i++)
        if (s->l2_cache.e[i].offset && s->l2_cache.e[i].dirty)
            return true;
    return false;
}

int qcow2_flush_metadata(struct block_state *bs)
{
    struct qcow2_state *s = qcow2_s(bs);
    bool l1_dirty = s->l1_dirty_lo < s->l1_dirty_hi;
    int r;

    if ((r = qcow2_cache_write_dirty(bs, &s->rb_cache)) < 0)
        return r;
    if (l2_cache_dirty(s)) {
        if ((r = qcow2_sync(bs)) < 0 || (r = qcow2_cache_write_dirty(bs, &s->l2_cache)) < 0)
            return r;
    }
    if (l1_dirty) {
        if ((r = qcow2_sync(bs)) < 0 ||
            (r = qcow2_write_l1_range(bs, s->l1_dirty_lo, s->l1_dirty_hi)) < 0)
            return r;
        s->l1_dirty_lo = UINT32_MAX;
        s->l1_dirty_hi = 0;
    }
    if (s->nb_frees) {
        if ((r = qcow2_sync(bs)) < 0)
            return r;
        /* Take the list first: a decrement may evict and re-enter. */
        struct qcow2_free *f = s->frees;
        size_t nf = s->nb_frees;

        s->frees = NULL;
        s->nb_frees = s->cap_frees = 0;
        /* A freed cluster may be the compressed packing target. */
        s->comp_cur = s->comp_end = 0;
        for (size_t i = 0; i < nf && r == 0; i++)
            r = qcow2_update_refcount(bs, f[i].offset, f[i].len, -1);
        free(f);
        if (r < 0)
            return r;
        if ((r = qcow2_cache_write_dirty(bs, &s->rb_cache)) < 0)
            return r;
    }
    return 0;
}
