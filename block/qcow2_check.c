/* qcow2 consistency check and repair, compatible with `qemu-img check`:
 * recount every reference from the header, L1/L2 tables, refcount
 * structures and snapshots, then compare with the stored refcounts. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

#define MAX_MESSAGES 50

struct ck {
    struct block_state *bs;
    struct qcow2_state *s;
    uint32_t *ref;      /* computed refcount per host cluster */
    uint64_t nb;        /* clusters in the file */
    struct block_check *res;
    bool quiet;
    int messages;
    bool count_refcount_structs;
};

static void ck_msg(struct ck *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ck_msg(struct ck *k, const char *fmt, ...)
{
    va_list ap;

    if (k->quiet || k->messages++ >= MAX_MESSAGES)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static void inc_range(struct ck *k, uint64_t off, uint64_t len)
{
    uint64_t first, last;

    if (!len)
        return;
    first = off >> k->s->cluster_bits;
    last = (off + len - 1) >> k->s->cluster_bits;
    if (last >= k->nb) {
        ck_msg(k, "ERROR: counting reference for region exceeding the end of the file by one "
                  "cluster or more: offset 0x%llx size 0x%llx\n",
               (unsigned long long)off, (unsigned long long)len);
        k->res->corruptions++;
        last = k->nb ? k->nb - 1 : 0;
        if (first >= k->nb)
            return;
    }
    for (uint64_t c = first; c <= last; c++)
        if (k->ref[c] < UINT32_MAX)
            k->ref[c]++;
}

static int walk_l2(struct ck *k, uint64_t l2off, bool active, uint64_t *prev_end)
{
    struct qcow2_state *s = k->s;
    uint64_t n = 1ULL << s->l2_bits;
    uint8_t *l2 = malloc(s->cluster_size);
    int r;

    if (!l2)
        return -ENOMEM;
    if ((r = block_file_pread(k->bs->fd, l2off, l2, s->cluster_size)) < 0) {
        free(l2);
        return r;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t e = be64_load(l2 + i * 8);

        if (e & QCOW2_OFLAG_COMPRESSED) {
            uint64_t coff = e & s->coffset_mask;
            uint64_t nsec = ((e >> s->csize_shift) & s->csize_mask) + 1;

            if (e & QCOW2_OFLAG_COPIED) {
                ck_msg(k, "ERROR: coffset=0x%llx: copied flag must never be set for compressed "
                          "clusters\n", (unsigned long long)coff);
                k->res->corruptions++;
            }
            inc_range(k, coff & ~511ULL, nsec * 512);
            if (active) {
                k->res->allocated_clusters++;
                k->res->compressed_clusters++;
                k->res->fragmented_clusters++;
            }
            continue;
        }
        uint64_t off = e & QCOW2_OFFSET_MASK;

        if (!off)
            continue;
        if (off % s->cluster_size) {
            ck_msg(k, "ERROR offset=%llx: Cluster is not properly aligned; L2 entry corrupted.\n",
                   (unsigned long long)off);
            k->res->corruptions++;
            continue;
        }
        if (active && !(s->ih.h.version >= 3 && (e & QCOW2_OFLAG_ZERO))) {
            k->res->allocated_clusters++;
            if (*prev_end && off != *prev_end)
                k->res->fragmented_clusters++;
            *prev_end = off + s->cluster_size;
        }
        inc_range(k, off, s->cluster_size);
    }
    free(l2);
    return 0;
}

static int walk_l1(struct ck *k, uint64_t l1off, uint32_t l1_size, bool active)
{
    struct qcow2_state *s = k->s;
    uint64_t *l1, prev_end = 0;
    int r = 0;

    if (!l1_size)
        return 0;
    inc_range(k, l1off, (uint64_t)l1_size * 8);
    l1 = malloc((size_t)l1_size * 8);
    if (!l1)
        return -ENOMEM;
    if ((r = block_file_pread(k->bs->fd, l1off, l1, (size_t)l1_size * 8)) < 0)
        goto out;
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t off = __builtin_bswap64(l1[i]) & QCOW2_OFFSET_MASK;

        if (!off)
            continue;
        if (off % s->cluster_size) {
            ck_msg(k, "ERROR l2_offset=%llx: Table is not cluster aligned; L1 entry corrupted\n",
                   (unsigned long long)off);
            k->res->corruptions++;
            continue;
        }
        inc_range(k, off, s->cluster_size);
        if (off >= s->file_size)
            continue;
        if ((r = walk_l2(k, off, active, &prev_end)) < 0)
            goto out;
    }
out:
    free(l1);
    return r;
}

/* Count every reference except (optionally) the refcount structures. */
static int count_all(struct ck *k)
{
    struct qcow2_state *s = k->s;
    const struct qcow2_header *h = &s->ih.h;
    int r;

    inc_range(k, 0, s->cluster_size);
    if ((r = walk_l1(k, h->l1_table_offset, h->l1_size, true)) < 0)
        return r;
    for (int i = 0; i < s->nb_snapshots; i++)
        if ((r = walk_l1(k, s->snapshots[i].l1_offset, s->snapshots[i].l1_size, false)) < 0)
            return r;
    if (h->nb_snapshots)
        inc_range(k, h->snapshots_offset, s->snapshots_size);
    if (!k->count_refcount_structs)
        return 0;
    inc_range(k, h->refcount_table_offset,
              (uint64_t)h->refcount_table_clusters * s->cluster_size);
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t off = s->reftable[i];

        if (off)
            inc_range(k, off, s->cluster_size);
    }
    return 0;
}

static int ck_init(struct ck *k, struct block_state *bs, struct block_check *res, bool quiet)
{
    struct qcow2_state *s = qcow2_s(bs);

    memset(k, 0, sizeof(*k));
    k->bs = bs;
    k->s = s;
    k->res = res;
    k->quiet = quiet;
    k->nb = (s->file_size + s->cluster_size - 1) >> s->cluster_bits;
    k->ref = calloc(k->nb ? k->nb : 1, sizeof(*k->ref));
    return k->ref ? 0 : -ENOMEM;
}

/* The active L1/L2 tables must carry COPIED exactly where refcount is 1. */
static int check_copied(struct ck *k, bool fix)
{
    struct qcow2_state *s = k->s;
    uint8_t *l2 = malloc(s->cluster_size);
    bool l1_changed = false;
    int r = 0;

    if (!l2)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t e = s->l1[i], off = e & QCOW2_OFFSET_MASK, rc;
        bool changed = false;

        if (!off || off % s->cluster_size || off >= s->file_size)
            continue;
        if ((r = qcow2_get_refcount(k->bs, off >> s->cluster_bits, &rc)) < 0)
            break;
        if ((rc == 1) != !!(e & QCOW2_OFLAG_COPIED)) {
            ck_msg(k, "%s OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%llx refcount=%llu\n",
                   fix ? "Repairing" : "ERROR", i, (unsigned long long)e,
                   (unsigned long long)rc);
            if (fix) {
                s->l1[i] = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
                l1_changed = true;
                k->res->corruptions_fixed++;
            } else {
                k->res->corruptions++;
            }
        }
        if ((r = block_file_pread(k->bs->fd, off, l2, s->cluster_size)) < 0)
            break;
        for (uint64_t j = 0; j < (1ULL << s->l2_bits); j++) {
            uint64_t le = be64_load(l2 + j * 8), loff = le & QCOW2_OFFSET_MASK;

            if ((le & QCOW2_OFLAG_COMPRESSED) || !loff || loff % s->cluster_size)
                continue;
            if ((r = qcow2_get_refcount(k->bs, loff >> s->cluster_bits, &rc)) < 0)
                break;
            if ((rc == 1) != !!(le & QCOW2_OFLAG_COPIED)) {
                ck_msg(k, "%s OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu\n",
                       fix ? "Repairing" : "ERROR", (unsigned long long)le,
                       (unsigned long long)rc);
                if (fix) {
                    be64_store(l2 + j * 8,
                               rc == 1 ? le | QCOW2_OFLAG_COPIED : le & ~QCOW2_OFLAG_COPIED);
                    changed = true;
                    k->res->corruptions_fixed++;
                } else {
                    k->res->corruptions++;
                }
            }
        }
        if (changed) {
            qcow2_cache_drop(&s->l2_cache, off);
            r = block_file_pwrite(k->bs->fd, off, l2, s->cluster_size);
        }
    }
    if (r == 0 && l1_changed)
        r = qcow2_write_l1_range(k->bs, 0, s->l1_size);
    if (r == 0 && (l1_changed || fix))
        r = qcow2_sync(k->bs);
    free(l2);
    return r;
}

/* Write a fresh refcount structure at the end of the file from k->ref (the
 * refcount structures themselves not counted).  The old blocks become free
 * space once the header points at the new table. */
static int rebuild(struct ck *k)
{
    struct qcow2_state *s = k->s;
    uint64_t cs = s->cluster_size, rbe = 1ULL << s->rb_bits;
    uint64_t end = 0, nblocks = 0, t = 1, ranges;
    uint64_t *table = NULL, *blockof = NULL;
    uint8_t *blk = NULL, hdr[12];
    int r;

    for (uint64_t c = 0; c < k->nb; c++)
        if (k->ref[c])
            end = c + 1;
    /* Fixed point: blocks for every range holding a reference, including
     * the new area [end, end + nblocks + t). */
    for (int iter = 0;; iter++) {
        uint64_t area_end = end + nblocks + t, nb2 = 0;

        ranges = (area_end + rbe - 1) / rbe;
        for (uint64_t q = 0; q < ranges; q++) {
            bool used = q * rbe < area_end && (q + 1) * rbe > end;

            for (uint64_t c = q * rbe; !used && c < MIN((q + 1) * rbe, k->nb); c++)
                used = k->ref[c] != 0;
            nb2 += used;
        }
        uint64_t t2 = (ranges * 8 + cs - 1) / cs;

        if (nb2 == nblocks && t2 == t)
            break;
        nblocks = MAX(nblocks, nb2);
        t = MAX(t, t2);
        if (iter > 64)
            return -EIO;
    }
    if (t * cs > QCOW2_MAX_REFTABLE_BYTES)
        return -EFBIG;
    table = calloc(t * cs / 8, 8);
    blockof = calloc(ranges, 8);
    blk = malloc(cs);
    if (!table || !blockof || !blk) {
        r = -ENOMEM;
        goto out;
    }
    uint64_t next = end, area_end = end + nblocks + t;

    for (uint64_t q = 0; q < ranges; q++) {
        bool used = q * rbe < area_end && (q + 1) * rbe > end;

        for (uint64_t c = q * rbe; !used && c < MIN((q + 1) * rbe, k->nb); c++)
            used = k->ref[c] != 0;
        if (used)
            blockof[q] = next++;
    }
    for (uint64_t q = 0; q < ranges; q++) {
        if (!blockof[q])
            continue;
        memset(blk, 0, cs);
        for (uint64_t i = 0; i < rbe; i++) {
            uint64_t c = q * rbe + i, v = 0;

            if (c >= end && c < area_end)
                v = 1;
            else if (c < k->nb)
                v = MIN((uint64_t)k->ref[c], s->refcount_max);
            if (v)
                qcow2_refcount_set(blk, i, s->refcount_order, v);
        }
        if ((r = block_file_pwrite(k->bs->fd, blockof[q] * cs, blk, cs)) < 0)
            goto out;
        table[q] = __builtin_bswap64(blockof[q] * cs);
    }
    if ((r = block_file_pwrite(k->bs->fd, (end + nblocks) * cs, table, t * cs)) < 0 ||
        (r = qcow2_sync(k->bs)) < 0)
        goto out;
    be64_store(hdr, (end + nblocks) * cs);
    be32_store(hdr + 8, (uint32_t)t);
    if ((r = block_file_pwrite(k->bs->fd, 48, hdr, 12)) < 0 || (r = qcow2_sync(k->bs)) < 0)
        goto out;
    s->ih.h.refcount_table_offset = (end + nblocks) * cs;
    s->ih.h.refcount_table_clusters = (uint32_t)t;
    s->file_size = MAX(s->file_size, area_end * cs);
    qcow2_cache_drop_all(&s->rb_cache);
    s->free_hint = 1;
    r = qcow2_load_reftable(k->bs);
out:
    free(table);
    free(blockof);
    free(blk);
    return r;
}

static int compare(struct ck *k, bool fix_leaks, uint64_t *highest)
{
    struct qcow2_state *s = k->s;
    int r;

    *highest = 0;
    for (uint64_t c = 0; c < k->nb; c++) {
        uint64_t stored, want = k->ref[c];

        if ((r = qcow2_get_refcount(k->bs, c, &stored)) < 0) {
            k->res->check_errors++;
            continue;
        }
        if (stored || want)
            *highest = c + 1;
        if (want > s->refcount_max) {
            ck_msg(k, "ERROR: cluster %llu refcount overflow (%llu references)\n",
                   (unsigned long long)c, (unsigned long long)want);
            k->res->corruptions++;
            continue;
        }
        if (stored == want)
            continue;
        if (stored > want && fix_leaks) {
            ck_msg(k, "Repairing cluster %llu refcount=%llu reference=%llu\n",
                   (unsigned long long)c, (unsigned long long)stored, (unsigned long long)want);
            r = qcow2_update_refcount(k->bs, c << s->cluster_bits, s->cluster_size,
                                      -(int)(stored - want));
            if (r < 0)
                k->res->check_errors++;
            else
                k->res->leaks_fixed++;
            continue;
        }
        ck_msg(k, "%s cluster %llu refcount=%llu reference=%llu\n",
               stored < want ? "ERROR" : "Leaked", (unsigned long long)c,
               (unsigned long long)stored, (unsigned long long)want);
        if (stored < want)
            k->res->corruptions++;
        else
            k->res->leaks++;
    }
    return 0;
}

static int check_once(struct block_state *bs, bool fix_leaks, bool fix_copied,
                      struct block_check *res, bool quiet)
{
    struct qcow2_state *s = qcow2_s(bs);
    struct ck k;
    uint64_t highest = 0;
    int r;

    if ((r = ck_init(&k, bs, res, quiet)) < 0)
        return r;
    k.count_refcount_structs = true;
    r = count_all(&k);
    if (r == 0)
        r = compare(&k, fix_leaks, &highest);
    if (r == 0)
        r = check_copied(&k, fix_copied);
    if (r == 0 && fix_leaks) {
        r = qcow2_cache_write_dirty(bs, &s->rb_cache);
        if (r == 0)
            r = qcow2_sync(bs);
    }
    res->image_end_offset = (int64_t)(highest << s->cluster_bits);
    res->total_clusters = (int64_t)((s->ih.h.size + s->cluster_size - 1) >> s->cluster_bits);
    res->has_cluster_stats = true;
    free(k.ref);
    return r;
}

int qcow2_repair(struct block_state *bs, bool quiet)
{
    struct qcow2_state *s = qcow2_s(bs);
    struct block_check res;
    struct ck k;
    int r;

    memset(&res, 0, sizeof(res));
    if ((r = qcow2_flush_metadata(bs)) < 0)
        return r;
    if ((r = ck_init(&k, bs, &res, quiet)) < 0)
        return r;
    r = count_all(&k);
    if (r == 0)
        r = rebuild(&k);
    free(k.ref);
    if (r == 0) {
        memset(&res, 0, sizeof(res));
        r = check_once(bs, false, true, &res, true);
    }
    (void)s;
    return r;
}

static int check_and_fix(struct block_state *bs, unsigned fix, struct block_check *res)
{
    struct block_check first;
    int r;

    if (qcow2_s(bs)->rw && (r = qcow2_flush_metadata(bs)) < 0)
        return r;
    memset(&first, 0, sizeof(first));
    r = check_once(bs, false, false, &first, false);
    if (r < 0 || !fix || (!first.corruptions && !first.leaks)) {
        *res = first;
        return r;
    }
    if (first.corruptions && (fix & BLOCK_FIX_ERRORS)) {
        r = qcow2_repair(bs, false);
        if (r < 0)
            return r;
    } else if (first.leaks && (fix & BLOCK_FIX_LEAKS)) {
        struct block_check tmp;

        memset(&tmp, 0, sizeof(tmp));
        r = check_once(bs, true, false, &tmp, true);
        if (r < 0)
            return r;
    }
    memset(res, 0, sizeof(*res));
    r = check_once(bs, false, false, res, true);
    if (first.corruptions > res->corruptions)
        res->corruptions_fixed = first.corruptions - res->corruptions;
    if (first.leaks > res->leaks)
        res->leaks_fixed = first.leaks - res->leaks;
    return r;
}

/* After a repair that left no corruption, the image is clean and consistent
 * again: like qemu-img, flush and clear the dirty and corrupt bits. */
static int mark_clean(struct block_state *bs, const struct block_check *res)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t bits = s->ih.h.incompatible_features;
    int r;

    if (res->check_errors || res->corruptions ||
        !(bits & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)))
        return 0;
    if ((r = qcow2_flush_metadata(bs)) < 0 || (r = qcow2_sync(bs)) < 0)
        return r;
    s->dirty_marked = false;
    return qcow2_set_incompat(bs, bits & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT));
}

int qcow2_check(struct block_state *bs, unsigned fix, struct block_check *res)
{
    int r = check_and_fix(bs, fix, res);

    if (r == 0 && fix && qcow2_s(bs)->rw)
        r = mark_clean(bs, res);
    return r;
}
