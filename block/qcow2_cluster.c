/* qcow2 guest-to-host mapping: L1/L2 lookup, reads, allocating writes with
 * copy-on-write of partial clusters, zero writes, and map. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "block/qcow2.h"

static enum qcow2_ctype entry_type(struct qcow2_state *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED)
        return QCOW2_COMPRESSED;
    if (s->ih.h.version >= 3 && (e & QCOW2_OFLAG_ZERO))
        return QCOW2_ZERO;
    if (!(e & QCOW2_OFFSET_MASK))
        return QCOW2_UNALLOC;
    return QCOW2_NORMAL;
}

static int l2_offset_of(struct block_state *bs, uint64_t l1i, uint64_t *l2off)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t off = s->l1[l1i] & QCOW2_OFFSET_MASK;

    if (off && (off % s->cluster_size || off >= s->file_size)) {
        block_set_error(bs, "L1 entry %llu points to invalid L2 offset 0x%llx",
                        (unsigned long long)l1i, (unsigned long long)off);
        return -EIO;
    }
    *l2off = off;
    return 0;
}

/* L2 entry for guest offset off, plus how many following clusters of the
 * same L2 table (up to max_clusters) continue the same kind of run. */
static int lookup_run(struct block_state *bs, uint64_t off, uint64_t max_clusters,
                      enum qcow2_ctype *type, uint64_t *entry, uint64_t *nclusters)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2i = (off >> s->cluster_bits) & ((1ULL << s->l2_bits) - 1);
    uint64_t l2off, n, e0;
    uint8_t *l2;
    int r;

    *type = QCOW2_UNALLOC;
    *entry = 0;
    max_clusters = MIN(max_clusters, (1ULL << s->l2_bits) - l2i);
    *nclusters = max_clusters;
    if (l1i >= s->l1_size)
        return 0;
    if ((r = l2_offset_of(bs, l1i, &l2off)) < 0)
        return r;
    if (!l2off)
        return 0;
    r = qcow2_cache_get(bs, &s->l2_cache, l2off, false, &l2);
    if (r < 0)
        return r;
    e0 = be64_load(l2 + l2i * 8);
    *entry = e0;
    *type = entry_type(s, e0);
    for (n = 1; n < max_clusters && *type != QCOW2_COMPRESSED; n++) {
        uint64_t e = be64_load(l2 + (l2i + n) * 8);

        if (entry_type(s, e) != *type)
            break;
        if (*type == QCOW2_NORMAL &&
            (e & QCOW2_OFFSET_MASK) != (e0 & QCOW2_OFFSET_MASK) + (n << s->cluster_bits))
            break;
    }
    qcow2_cache_put(&s->l2_cache, l2);
    *nclusters = n;
    return 0;
}

int qcow2_lookup(struct block_state *bs, uint64_t off, enum qcow2_ctype *type, uint64_t *entry)
{
    uint64_t n;

    return lookup_run(bs, off, 1, type, entry, &n);
}

static int read_backing(struct block_state *bs, uint64_t off, uint8_t *buf, size_t len)
{
    uint64_t blen;
    size_t n;

    if (!bs->backing) {
        memset(buf, 0, len);
        return 0;
    }
    blen = block_getlength(bs->backing);
    n = off >= blen ? 0 : (size_t)MIN((uint64_t)len, blen - off);
    if (n) {
        int r = block_pread(bs->backing, off, buf, n);

        if (r < 0)
            return r;
    }
    memset(buf + n, 0, len - n);
    return 0;
}

int qcow2_read(struct block_state *bs, uint64_t off, void *buf, size_t len)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint8_t *p = buf;

    while (len) {
        uint64_t in = off & (s->cluster_size - 1);
        uint64_t want = (in + len + s->cluster_size - 1) >> s->cluster_bits;
        uint64_t entry, n, host;
        enum qcow2_ctype type;
        size_t chunk;
        int r;

        r = lookup_run(bs, off, want, &type, &entry, &n);
        if (r < 0)
            return r;
        chunk = (size_t)MIN((uint64_t)len, (n << s->cluster_bits) - in);
        switch (type) {
        case QCOW2_UNALLOC:
            r = read_backing(bs, off, p, chunk);
            break;
        case QCOW2_ZERO:
            memset(p, 0, chunk);
            break;
        case QCOW2_NORMAL:
            host = entry & QCOW2_OFFSET_MASK;
            if (host % s->cluster_size) {
                block_set_error(bs, "L2 entry 0x%llx is not cluster aligned",
                                (unsigned long long)entry);
                return -EIO;
            }
            r = block_file_pread(bs->fd, host + in, p, chunk);
            break;
        case QCOW2_COMPRESSED:
            r = qcow2_read_compressed(bs, entry, s->bounce);
            if (r == 0)
                memcpy(p, s->bounce + in, chunk);
            break;
        }
        if (r < 0)
            return r;
        p += chunk;
        off += chunk;
        len -= chunk;
    }
    return 0;
}

int qcow2_write_l1_range(struct block_state *bs, uint32_t lo, uint32_t hi)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t *tmp;
    int r;

    if (lo >= hi)
        return 0;
    tmp = malloc((size_t)(hi - lo) * 8);
    if (!tmp)
        return -ENOMEM;
    for (uint32_t i = lo; i < hi; i++)
        tmp[i - lo] = __builtin_bswap64(s->l1[i]);
    r = block_file_pwrite(bs->fd, s->ih.h.l1_table_offset + (uint64_t)lo * 8, tmp,
                          (size_t)(hi - lo) * 8);
    free(tmp);
    return r;
}

static void l1_mark_dirty(struct qcow2_state *s, uint32_t i)
{
    s->l1_dirty_lo = MIN(s->l1_dirty_lo, i);
    s->l1_dirty_hi = MAX(s->l1_dirty_hi, i + 1);
}

static int free_entry_later(struct block_state *bs, uint64_t e)
{
    struct qcow2_state *s = qcow2_s(bs);

    if (e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t coff = e & s->coffset_mask;
        uint64_t nsec = ((e >> s->csize_shift) & s->csize_mask) + 1;

        return qcow2_free_later(bs, coff & ~511ULL, nsec * 512 - (coff & 511) + (coff & 511));
    }
    if (e & QCOW2_OFFSET_MASK)
        return qcow2_free_later(bs, e & QCOW2_OFFSET_MASK, s->cluster_size);
    return 0;
}

/* Pin a writable L2 table for l1 index l1i: allocate it, or copy a table
 * shared with a snapshot. */
static int l2_for_write(struct block_state *bs, uint64_t l1i, uint8_t **l2)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t old, l1e = s->l1[l1i];
    uint8_t *src = NULL;
    int64_t nt;
    int r;

    if ((r = l2_offset_of(bs, l1i, &old)) < 0)
        return r;
    if (old && (l1e & QCOW2_OFLAG_COPIED))
        return qcow2_cache_get(bs, &s->l2_cache, old, false, l2);
    nt = qcow2_alloc_clusters(bs, 1);
    if (nt < 0)
        return (int)nt;
    r = qcow2_cache_get(bs, &s->l2_cache, (uint64_t)nt, true, l2);
    if (r < 0)
        return r;
    if (old) {
        r = qcow2_cache_get(bs, &s->l2_cache, old, false, &src);
        if (r < 0)
            goto fail;
        /* Clusters under a shared table already count every table that
         * reaches them (snapshot creation raised them), so the copy only
         * drops COPIED. */
        for (uint64_t i = 0; i < (1ULL << s->l2_bits); i++)
            be64_store(*l2 + i * 8, be64_load(src + i * 8) & ~QCOW2_OFLAG_COPIED);
        qcow2_cache_put(&s->l2_cache, src);
        if (r < 0)
            goto fail;
        if ((r = qcow2_free_later(bs, old, s->cluster_size)) < 0)
            goto fail;
    }
    qcow2_cache_mark_dirty(&s->l2_cache, *l2);
    s->l1[l1i] = (uint64_t)nt | QCOW2_OFLAG_COPIED;
    l1_mark_dirty(s, (uint32_t)l1i);
    return 0;
fail:
    qcow2_cache_put(&s->l2_cache, *l2);
    return r;
}

static bool in_place(struct qcow2_state *s, uint64_t e)
{
    uint64_t host = e & QCOW2_OFFSET_MASK;

    return entry_type(s, e) == QCOW2_NORMAL && (e & QCOW2_OFLAG_COPIED) &&
           host % s->cluster_size == 0 && host < s->file_size;
}

/* Write [off, off+len) within one L2 table; returns bytes done or -errno. */
static int64_t write_in_l2(struct block_state *bs, uint64_t off, const uint8_t *buf,
                           uint64_t len)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t cs = s->cluster_size;
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2i = (off >> s->cluster_bits) & ((1ULL << s->l2_bits) - 1);
    uint64_t in = off & (cs - 1);
    uint64_t max_n = MIN((in + len + cs - 1) >> s->cluster_bits, (1ULL << s->l2_bits) - l2i);
    uint64_t e0, n, done;
    uint8_t *l2, *head = NULL, *tail = NULL;
    int64_t host;
    int r;

    if (l1i >= s->l1_size)
        return -EINVAL;
    if ((r = l2_for_write(bs, l1i, &l2)) < 0)
        return r;
    e0 = be64_load(l2 + l2i * 8);
    if (in_place(s, e0)) {
        for (n = 1; n < max_n; n++) {
            uint64_t e = be64_load(l2 + (l2i + n) * 8);

            if (!in_place(s, e) || (e & QCOW2_OFFSET_MASK) !=
                                       (e0 & QCOW2_OFFSET_MASK) + n * cs)
                break;
        }
        done = MIN(len, n * cs - in);
        r = block_file_pwrite(bs->fd, (e0 & QCOW2_OFFSET_MASK) + in, buf, done);
        qcow2_cache_put(&s->l2_cache, l2);
        return r < 0 ? r : (int64_t)done;
    }
    /* Allocate a run of clusters that all need it; bounded so the COW and
     * the refcount update stay small. */
    for (n = 1; n < max_n && n < MIN(1024, (1ULL << s->rb_bits) / 4); n++)
        if (in_place(s, be64_load(l2 + (l2i + n) * 8)))
            break;
    done = MIN(len, n * cs - in);
    host = qcow2_alloc_clusters(bs, n);
    if (host < 0) {
        r = (int)host;
        goto out;
    }
    {
        uint64_t tail_start = in + done, tail_len = n * cs - tail_start;
        struct iovec iov[3];
        int niov = 0;

        if (in) {
            head = malloc(in);
            if (!head || (r = qcow2_read(bs, off - in, head, in)) < 0) {
                r = head ? r : -ENOMEM;
                goto out;
            }
            iov[niov++] = (struct iovec){ head, in };
        }
        iov[niov++] = (struct iovec){ (void *)buf, done };
        if (tail_len) {
            tail = malloc(tail_len);
            if (!tail || (r = qcow2_read(bs, off + done, tail, tail_len)) < 0) {
                r = tail ? r : -ENOMEM;
                goto out;
            }
            iov[niov++] = (struct iovec){ tail, tail_len };
        }
        if ((r = block_file_pwritev(bs->fd, (uint64_t)host, iov, niov)) < 0)
            goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t old = be64_load(l2 + (l2i + i) * 8);

        be64_store(l2 + (l2i + i) * 8, ((uint64_t)host + i * cs) | QCOW2_OFLAG_COPIED);
        if ((r = free_entry_later(bs, old)) < 0)
            goto out;
    }
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    r = 0;
out:
    free(head);
    free(tail);
    qcow2_cache_put(&s->l2_cache, l2);
    return r < 0 ? r : (int64_t)done;
}

int qcow2_write(struct block_state *bs, uint64_t off, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        int64_t n = write_in_l2(bs, off, p, len);

        if (n < 0)
            return (int)n;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int qcow2_write_zeroes(struct block_state *bs, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t cs = s->cluster_size;
    uint8_t *zero = calloc(1, cs);
    int r = 0;

    if (!zero)
        return -ENOMEM;
    while (len && r == 0) {
        uint64_t in = off & (cs - 1), chunk = MIN(len, cs - in);
        enum qcow2_ctype type;
        uint64_t e;

        if ((r = qcow2_lookup(bs, off, &type, &e)) < 0)
            break;
        if (chunk == cs && (type == QCOW2_ZERO || (type == QCOW2_UNALLOC && !bs->backing))) {
            /* already reads as zero */
        } else if (chunk == cs && s->ih.h.version >= 3) {
            uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
            uint64_t l2i = (off >> s->cluster_bits) & ((1ULL << s->l2_bits) - 1);
            uint8_t *l2;

            if ((r = l2_for_write(bs, l1i, &l2)) < 0)
                break;
            e = be64_load(l2 + l2i * 8);
            be64_store(l2 + l2i * 8, QCOW2_OFLAG_ZERO);
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
            qcow2_cache_put(&s->l2_cache, l2);
            r = free_entry_later(bs, e);
        } else {
            r = qcow2_write(bs, off, zero, chunk);
        }
        off += chunk;
        len -= chunk;
    }
    free(zero);
    return r;
}

int qcow2_map_range(struct block_state *bs, uint64_t off, uint64_t len, struct block_map *m)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t in = off & (s->cluster_size - 1);
    uint64_t want = (in + len + s->cluster_size - 1) >> s->cluster_bits;
    uint64_t entry, n;
    enum qcow2_ctype type;
    int r;

    r = lookup_run(bs, off, want, &type, &entry, &n);
    if (r < 0)
        return r;
    m->len = MIN(len, (n << s->cluster_bits) - in);
    switch (type) {
    case QCOW2_UNALLOC:
        m->flags = BLOCK_MAP_ZERO;
        break;
    case QCOW2_ZERO:
        m->flags = BLOCK_MAP_ZERO | BLOCK_MAP_ALLOCATED;
        break;
    case QCOW2_NORMAL:
        m->flags = BLOCK_MAP_DATA | BLOCK_MAP_ALLOCATED | BLOCK_MAP_OFFSET;
        m->host_offset = (entry & QCOW2_OFFSET_MASK) + in;
        break;
    case QCOW2_COMPRESSED:
        m->flags = BLOCK_MAP_DATA | BLOCK_MAP_ALLOCATED;
        break;
    }
    return 0;
}

/* Replace the L1 table by a larger copy: new table durable, then the header
 * switch, then the old clusters freed. */
int qcow2_grow_l1(struct block_state *bs, uint64_t min_size)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t old_off = s->ih.h.l1_table_offset, old_bytes = (uint64_t)s->l1_size * 8;
    uint64_t bytes = ALIGN_UP(min_size * 8, s->cluster_size);
    uint64_t *nl1, *be;
    uint8_t hdr[12];
    int64_t off;
    int r;

    if (min_size <= s->l1_size)
        return 0;
    if (min_size * 8 > QCOW2_MAX_L1_BYTES)
        return -EFBIG;
    if ((r = qcow2_flush_metadata(bs)) < 0)
        return r;
    nl1 = calloc(1, bytes);
    be = calloc(1, bytes);
    if (!nl1 || !be) {
        free(nl1);
        free(be);
        return -ENOMEM;
    }
    memcpy(nl1, s->l1, old_bytes);
    for (uint64_t i = 0; i < min_size; i++)
        be[i] = __builtin_bswap64(nl1[i]);
    off = qcow2_alloc_clusters(bs, bytes / s->cluster_size);
    r = off < 0 ? (int)off : 0;
    if (r == 0)
        r = qcow2_cache_write_dirty(bs, &s->rb_cache);
    if (r == 0)
        r = block_file_pwrite(bs->fd, (uint64_t)off, be, bytes);
    if (r == 0)
        r = qcow2_sync(bs);
    if (r == 0) {
        be32_store(hdr, (uint32_t)min_size);
        be64_store(hdr + 4, (uint64_t)off);
        r = block_file_pwrite(bs->fd, 36, hdr, 12);
    }
    if (r == 0)
        r = qcow2_sync(bs);
    free(be);
    if (r < 0) {
        free(nl1);
        return r;
    }
    free(s->l1);
    s->l1 = nl1;
    s->l1_size = (uint32_t)min_size;
    s->ih.h.l1_size = (uint32_t)min_size;
    s->ih.h.l1_table_offset = (uint64_t)off;
    if (old_bytes)
        r = qcow2_update_refcount(bs, old_off, ALIGN_UP(old_bytes, s->cluster_size), -1);
    return r;
}

/* Drop every mapping of guest clusters at or after off (cluster-aligned):
 * the tail a shrink cuts off.  Whole L2 tables beyond it leave the L1
 * table; a partly covered table has its tail entries cleared.  Every
 * reference removed here is one L1 path less, so the data clusters and the
 * tables lose one count each, after the new tables are on disk (the frees
 * queue). */
int qcow2_discard_tail(struct block_state *bs, uint64_t off)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t n = 1ULL << s->l2_bits, per_l1 = s->cluster_size << s->l2_bits;
    int r = 0;

    for (uint64_t l1i = off / per_l1; l1i < s->l1_size && r == 0; l1i++) {
        uint64_t first = l1i == off / per_l1 ? (off % per_l1) >> s->cluster_bits : 0;
        uint64_t l2off;
        uint8_t *l2;

        if ((r = l2_offset_of(bs, l1i, &l2off)) < 0 || !l2off)
            continue;
        if (first == 0) {
            if ((r = qcow2_cache_get(bs, &s->l2_cache, l2off, false, &l2)) < 0)
                break;
            for (uint64_t i = 0; i < n && r == 0; i++)
                r = free_entry_later(bs, be64_load(l2 + i * 8));
            qcow2_cache_put(&s->l2_cache, l2);
            qcow2_cache_drop(&s->l2_cache, l2off);
            s->l1[l1i] = 0;
            l1_mark_dirty(s, (uint32_t)l1i);
            if (r == 0)
                r = qcow2_free_later(bs, l2off, s->cluster_size);
            continue;
        }
        if ((r = l2_for_write(bs, l1i, &l2)) < 0)
            break;
        for (uint64_t i = first; i < n && r == 0; i++) {
            r = free_entry_later(bs, be64_load(l2 + i * 8));
            be64_store(l2 + i * 8, 0);
        }
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_cache_put(&s->l2_cache, l2);
    }
    return r;
}

/* Compressed clusters are packed sector-aligned into host clusters that
 * hold nothing else; each blob adds one reference to its host cluster.
 * Blobs never straddle a host cluster boundary, which keeps the refcount
 * rule (one reference per blob per cluster touched) trivial. */
int qcow2_write_compressed(struct block_state *bs, uint64_t off, const void *buf, size_t len)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2i = (off >> s->cluster_bits) & ((1ULL << s->l2_bits) - 1);
    uint64_t nsec, old, host;
    ssize_t clen;
    uint8_t *l2;
    int r;

    if (off % s->cluster_size || len != s->cluster_size)
        return qcow2_write(bs, off, buf, len);
    clen = qcow2_compress_cluster(s, buf, s->cbuf, s->cluster_size - 512);
    if (clen <= 0)
        return qcow2_write(bs, off, buf, len);
    nsec = ((uint64_t)clen + 511) / 512;
    if ((r = l2_for_write(bs, l1i, &l2)) < 0)
        return r;
    if (s->comp_cur && s->comp_cur + nsec * 512 <= s->comp_end) {
        r = qcow2_update_refcount(bs, s->comp_cur, 1, 1);
    } else {
        int64_t c = qcow2_alloc_clusters(bs, 1);

        r = c < 0 ? (int)c : 0;
        if (r == 0) {
            s->comp_cur = (uint64_t)c;
            s->comp_end = (uint64_t)c + s->cluster_size;
        }
    }
    if (r < 0)
        goto out;
    host = s->comp_cur;
    if ((r = block_file_pwrite(bs->fd, host, s->cbuf, (size_t)clen)) < 0)
        goto out;
    s->comp_cur += nsec * 512;
    old = be64_load(l2 + l2i * 8);
    be64_store(l2 + l2i * 8, QCOW2_OFLAG_COMPRESSED | ((nsec - 1) << s->csize_shift) | host);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    r = free_entry_later(bs, old);
out:
    qcow2_cache_put(&s->l2_cache, l2);
    return r;
}
