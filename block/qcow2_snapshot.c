/* Internal snapshots: the snapshot table (read, rewritten), and create,
 * apply, delete and a read-only view of a snapshot's data.
 *
 * Refcounts follow QEMU's model: a cluster counts one reference for every
 * L1 table (active or snapshot) through which it is reached, so an L2 table
 * shared by two L1 tables has refcount 2 and so do its data clusters.  The
 * COPIED flag (refcount exactly one: writable in place) is only kept exact
 * in the active tables; the write path copies anything without it.
 *
 * Crash ordering: references are added before anything points at them and
 * dropped only after the pointer is gone from the file, so a crash in the
 * middle leaks clusters and never frees a used one:
 *   create: +1 on the active tree, COPIED cleared, flushed; then the new
 *           table and the header switch.
 *   delete: table and header switch first; then -1 on the snapshot's tree
 *           and its L1, COPIED set where a refcount came back to one (the
 *           refcount blocks reach the disk before those L2 tables).
 *   apply:  +1 on the snapshot's tree, flushed; the active L1 overwritten
 *           in place; then -1 on the old active tree. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/qcow2.h"

#define SNAP_FIXED_LEN 40
#define SNAP_MAX_EXTRA 1024
#define SNAP_MAX_TABLE (64 * MiB)
#define SNAP_EXTRA_LEN 24 /* vm_state_size_large, disk_size, icount */

static void free_entry(struct qcow2_snapshot *sn)
{
    free(sn->id);
    free(sn->name);
    free(sn->raw);
}

void qcow2_free_snapshots(struct qcow2_state *s)
{
    for (int i = 0; i < s->nb_snapshots; i++)
        free_entry(&s->snapshots[i]);
    free(s->snapshots);
    s->snapshots = NULL;
    s->nb_snapshots = 0;
}

/* Fill sn from one unpadded table entry (raw, len bytes, already bounded). */
static int parse_entry(struct qcow2_snapshot *sn, const uint8_t *raw, size_t len)
{
    uint16_t id_len = be16_load(raw + 12), name_len = be16_load(raw + 14);
    uint32_t extra_len = be32_load(raw + 36);
    const uint8_t *extra = raw + SNAP_FIXED_LEN;

    sn->l1_offset = be64_load(raw);
    sn->l1_size = be32_load(raw + 8);
    sn->info.date_sec = be32_load(raw + 16);
    sn->info.date_nsec = be32_load(raw + 20);
    sn->info.vm_clock_nsec = be64_load(raw + 24);
    sn->info.vm_state_size = be32_load(raw + 32);
    sn->info.icount = UINT64_MAX;
    if (extra_len >= 8)
        sn->info.vm_state_size = be64_load(extra);
    if (extra_len >= 16)
        sn->disk_size = be64_load(extra + 8);
    if (extra_len >= 24)
        sn->info.icount = be64_load(extra + 16);
    sn->id = strndup((const char *)extra + extra_len, id_len);
    sn->name = strndup((const char *)extra + extra_len + id_len, name_len);
    sn->raw = malloc(len);
    if (!sn->id || !sn->name || !sn->raw)
        return -ENOMEM;
    memcpy(sn->raw, raw, len);
    sn->raw_len = len;
    snprintf(sn->info.id, sizeof(sn->info.id), "%s", sn->id);
    snprintf(sn->info.name, sizeof(sn->info.name), "%s", sn->name);
    return 0;
}

int qcow2_read_snapshots(struct block_state *bs, char *err, size_t errlen)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t off = s->ih.h.snapshots_offset, start = off;
    uint32_t nb = s->ih.h.nb_snapshots;
    uint8_t *entry = NULL;
    int r;

    if (!nb)
        return 0;
    s->snapshots = calloc(nb, sizeof(*s->snapshots));
    /* Largest possible entry: fixed part, extra data, two 64 KiB strings. */
    entry = malloc(SNAP_FIXED_LEN + SNAP_MAX_EXTRA + 2 * 65536);
    if (!s->snapshots || !entry) {
        free(entry);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < nb; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint32_t extra_len;
        size_t len;

        if (off - start > SNAP_MAX_TABLE || off + SNAP_FIXED_LEN > s->file_size) {
            snprintf(err, errlen, "snapshot table is truncated or too large");
            goto fail;
        }
        if ((r = block_file_pread(bs->fd, off, entry, SNAP_FIXED_LEN)) < 0)
            goto fail_r;
        extra_len = be32_load(entry + 36);
        if (extra_len > SNAP_MAX_EXTRA) {
            snprintf(err, errlen, "snapshot %u: extra data too large", i);
            goto fail;
        }
        len = SNAP_FIXED_LEN + extra_len + be16_load(entry + 12) + be16_load(entry + 14);
        if ((r = block_file_pread(bs->fd, off + SNAP_FIXED_LEN, entry + SNAP_FIXED_LEN,
                                  len - SNAP_FIXED_LEN)) < 0)
            goto fail_r;
        s->nb_snapshots = (int)i + 1;
        if (parse_entry(sn, entry, len) < 0) {
            snprintf(err, errlen, "out of memory reading the snapshot table");
            goto fail;
        }
        off = start + ALIGN_UP(off + len - start, 8);
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES || sn->l1_offset % s->cluster_size ||
            (sn->l1_size && (sn->l1_offset >= s->file_size ||
                             (uint64_t)sn->l1_size * 8 > s->file_size - sn->l1_offset))) {
            snprintf(err, errlen, "snapshot %u has an invalid L1 table", i);
            goto fail;
        }
    }
    s->snapshots_size = off - start;
    free(entry);
    return 0;
fail_r:
    snprintf(err, errlen, "cannot read the snapshot table: %s", strerror(-r));
fail:
    free(entry);
    qcow2_free_snapshots(s);
    return -EINVAL;
}

/* Write snaps[0..nb) as a new table in fresh clusters, switch the header to
 * it with one write, then free the old table.  On success the state owns
 * snaps. */
static int write_table(struct block_state *bs, struct qcow2_snapshot *snaps, int nb)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t old_off = s->ih.h.snapshots_offset, old_size = s->snapshots_size;
    uint64_t size = 0, pos = 0;
    uint8_t *buf = NULL, hdr[12];
    int64_t off = 0;
    int r;

    for (int i = 0; i < nb; i++)
        size += ALIGN_UP(snaps[i].raw_len, 8);
    if (size > SNAP_MAX_TABLE) {
        block_set_error(bs, "snapshot table would be too large");
        return -EFBIG;
    }
    if (nb) {
        buf = calloc(1, ALIGN_UP(size, s->cluster_size));
        if (!buf)
            return -ENOMEM;
        for (int i = 0; i < nb; i++) {
            memcpy(buf + pos, snaps[i].raw, snaps[i].raw_len);
            pos += ALIGN_UP(snaps[i].raw_len, 8);
        }
        off = qcow2_alloc_clusters(bs, ALIGN_UP(size, s->cluster_size) >> s->cluster_bits);
        r = off < 0 ? (int)off : 0;
        /* The new table's refcount, then the table, are durable before the
         * header points at it. */
        if (r == 0)
            r = qcow2_flush_metadata(bs);
        if (r == 0)
            r = block_file_pwrite(bs->fd, (uint64_t)off, buf, ALIGN_UP(size, s->cluster_size));
        free(buf);
        if (r == 0)
            r = qcow2_sync(bs);
        if (r < 0)
            return r;
    }
    be32_store(hdr, (uint32_t)nb);
    be64_store(hdr + 4, (uint64_t)off);
    if ((r = block_file_pwrite(bs->fd, 60, hdr, sizeof(hdr))) < 0 || (r = qcow2_sync(bs)) < 0)
        return r;
    s->ih.h.nb_snapshots = (uint32_t)nb;
    s->ih.h.snapshots_offset = (uint64_t)off;
    s->snapshots_size = size;
    if (s->snapshots != snaps) {
        free(s->snapshots);
        s->snapshots = snaps;
    }
    s->nb_snapshots = nb;
    if (old_size && old_off)
        return qcow2_update_refcount(bs, old_off, ALIGN_UP(old_size, s->cluster_size), -1);
    return 0;
}

/* The host clusters an L2 entry holds: [*off, *off + *len), len 0 for none. */
static void entry_range(struct qcow2_state *s, uint64_t e, uint64_t *off, uint64_t *len)
{
    *off = *len = 0;
    if (e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t coff = e & s->coffset_mask;
        uint64_t nsec = ((e >> s->csize_shift) & s->csize_mask) + 1;

        *off = coff & ~511ULL;
        *len = nsec * 512;
    } else if (e & QCOW2_OFFSET_MASK) {
        *off = e & QCOW2_OFFSET_MASK;
        *len = s->cluster_size;
    }
}

static int check_host_range(struct block_state *bs, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_s(bs);

    if (off >= s->file_size || len > s->file_size - off) {
        block_set_error(bs, "cluster at 0x%llx is beyond the end of the file",
                        (unsigned long long)off);
        return -EIO;
    }
    return 0;
}

/* delta on every cluster of [off, off+len), all or nothing. */
static int update_range(struct block_state *bs, uint64_t off, uint64_t len, int delta)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    int r;

    for (uint64_t c = first; c <= last; c++) {
        if ((r = qcow2_update_refcount(bs, c << s->cluster_bits, 1, delta)) < 0) {
            while (c-- > first)
                qcow2_update_refcount(bs, c << s->cluster_bits, 1, -delta);
            return r;
        }
    }
    return 0;
}

/* Steps of a tree walk, in order: for each L1 index i, its L2 entries
 * j = 0..n-1, then the L2 table itself as j = n. */
static bool before(uint32_t i, uint64_t j, uint32_t stop_i, uint64_t stop_j)
{
    return i < stop_i || (i == stop_i && j < stop_j);
}

/* Add delta to the refcount of every L2 table in l1 and every cluster they
 * reference, up to (not including) step (stop_i, stop_j).  On error,
 * (*fail_i, *fail_j) is the step that failed; it changed nothing. */
static int walk_tree(struct block_state *bs, const uint64_t *l1, uint32_t l1_size, int delta,
                     uint32_t stop_i, uint64_t stop_j, uint32_t *fail_i, uint64_t *fail_j)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t n = 1ULL << s->l2_bits;
    int r = 0;

    for (uint32_t i = 0; i < l1_size && before(i, 0, stop_i, stop_j); i++) {
        uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK, off, len;
        uint8_t *l2;

        *fail_i = i;
        *fail_j = 0;
        if (!l2off)
            continue;
        if (l2off % s->cluster_size || (r = check_host_range(bs, l2off, s->cluster_size)) < 0)
            return r < 0 ? r : -EIO;
        if ((r = qcow2_cache_get(bs, &s->l2_cache, l2off, false, &l2)) < 0)
            return r;
        for (uint64_t j = 0; j < n && before(i, j, stop_i, stop_j); j++) {
            *fail_j = j;
            entry_range(s, be64_load(l2 + j * 8), &off, &len);
            if (len && ((r = check_host_range(bs, off, len)) < 0 ||
                        (r = update_range(bs, off, len, delta)) < 0))
                break;
        }
        qcow2_cache_put(&s->l2_cache, l2);
        if (r < 0 || !before(i, n, stop_i, stop_j))
            return r;
        *fail_j = n;
        if ((r = qcow2_update_refcount(bs, l2off, s->cluster_size, delta)) < 0)
            return r;
    }
    return 0;
}

/* walk_tree over the whole table; when it fails half-way (a refcount
 * would overflow), the part already done is undone so the image is left
 * as it was. */
static int tree_refcount(struct block_state *bs, const uint64_t *l1, uint32_t l1_size, int delta)
{
    uint32_t fi, ui;
    uint64_t fj, uj;
    int r = walk_tree(bs, l1, l1_size, delta, UINT32_MAX, UINT64_MAX, &fi, &fj);

    if (r < 0 && walk_tree(bs, l1, l1_size, -delta, fi, fj, &ui, &uj) < 0)
        block_set_error(bs, "could not undo a partial refcount update");
    return r;
}

/* Make COPIED in the active L1 and L2 tables say "refcount is one". */
static int fix_active_copied(struct block_state *bs)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t n = 1ULL << s->l2_bits, rc;
    int r = 0;

    for (uint32_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t l2off = s->l1[i] & QCOW2_OFFSET_MASK, want;
        uint8_t *l2;
        bool dirty = false;

        if (!l2off)
            continue;
        if ((r = qcow2_cache_get(bs, &s->l2_cache, l2off, false, &l2)) < 0)
            return r;
        for (uint64_t j = 0; j < n && r == 0; j++) {
            uint64_t e = be64_load(l2 + j * 8), ne = e & ~QCOW2_OFLAG_COPIED;

            /* Compressed clusters are never written in place. */
            if ((e & QCOW2_OFLAG_COMPRESSED) || !(e & QCOW2_OFFSET_MASK)) {
                if (ne != e && !(e & QCOW2_OFLAG_COMPRESSED)) {
                    be64_store(l2 + j * 8, ne);
                    dirty = true;
                }
                continue;
            }
            if ((r = qcow2_get_refcount(bs, (e & QCOW2_OFFSET_MASK) >> s->cluster_bits, &rc)) < 0)
                break;
            if (rc == 1)
                ne |= QCOW2_OFLAG_COPIED;
            if (ne != e) {
                be64_store(l2 + j * 8, ne);
                dirty = true;
            }
        }
        if (dirty)
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_cache_put(&s->l2_cache, l2);
        if (r == 0 && (r = qcow2_get_refcount(bs, l2off >> s->cluster_bits, &rc)) == 0) {
            want = l2off | (rc == 1 ? QCOW2_OFLAG_COPIED : 0);
            if (want != s->l1[i]) {
                s->l1[i] = want;
                s->l1_dirty_lo = MIN(s->l1_dirty_lo, i);
                s->l1_dirty_hi = MAX(s->l1_dirty_hi, i + 1);
            }
        }
    }
    return r;
}

/* Snapshot tables can be anywhere the header said; read one into host order. */
static int read_l1(struct block_state *bs, const struct qcow2_snapshot *sn, uint64_t **out)
{
    uint64_t *l1 = calloc(MAX(sn->l1_size, 1u), 8);
    int r;

    if (!l1)
        return -ENOMEM;
    if ((r = block_file_pread(bs->fd, sn->l1_offset, l1, (size_t)sn->l1_size * 8)) < 0) {
        free(l1);
        return r;
    }
    for (uint32_t i = 0; i < sn->l1_size; i++)
        l1[i] = __builtin_bswap64(l1[i]);
    *out = l1;
    return 0;
}

static int find(struct qcow2_state *s, const char *id, const char *name)
{
    for (int i = 0; i < s->nb_snapshots; i++)
        if ((!id || !strcmp(s->snapshots[i].id, id)) &&
            (!name || !strcmp(s->snapshots[i].name, name)))
            return i;
    return -1;
}

/* QEMU's rule for -a and snapshot.name-less lookups: by ID, then by name. */
static int find_id_or_name(struct qcow2_state *s, const char *id_or_name)
{
    int i = find(s, id_or_name, NULL);

    return i >= 0 ? i : find(s, NULL, id_or_name);
}

/* Metadata and caches settled before the snapshot operations walk tables
 * on disk; stale clean L2 entries of freed tables must not survive them. */
static int settle(struct block_state *bs)
{
    struct qcow2_state *s = qcow2_s(bs);
    int r = qcow2_flush_metadata(bs);

    if (r == 0)
        r = qcow2_sync(bs);
    if (r == 0) {
        qcow2_cache_drop_all(&s->l2_cache);
        s->comp_cur = s->comp_end = 0;
    }
    return r;
}

static int writable(struct block_state *bs)
{
    struct qcow2_state *s = qcow2_s(bs);

    if (!s->rw) {
        block_set_error(bs, "image is read-only");
        return -EROFS;
    }
    return 0;
}

static int build_entry(struct qcow2_state *s, struct qcow2_snapshot *sn, uint64_t l1_offset,
                       const char *id, const char *name)
{
    size_t id_len = strlen(id), name_len = strlen(name);
    size_t len = SNAP_FIXED_LEN + SNAP_EXTRA_LEN + id_len + name_len;
    struct timespec now;
    uint8_t *raw;
    int r;

    if (name_len > 65535)
        return -ENAMETOOLONG;
    raw = calloc(1, len);
    if (!raw)
        return -ENOMEM;
    clock_gettime(CLOCK_REALTIME, &now);
    be64_store(raw, l1_offset);
    be32_store(raw + 8, s->l1_size);
    be16_store(raw + 12, (uint16_t)id_len);
    be16_store(raw + 14, (uint16_t)name_len);
    be32_store(raw + 16, (uint32_t)now.tv_sec);
    be32_store(raw + 20, (uint32_t)now.tv_nsec);
    /* vm_clock, vm_state_size: no VM state, as with qemu-img snapshot -c. */
    be32_store(raw + 36, SNAP_EXTRA_LEN);
    be64_store(raw + SNAP_FIXED_LEN + 8, s->ih.h.size);
    memcpy(raw + SNAP_FIXED_LEN + SNAP_EXTRA_LEN, id, id_len);
    memcpy(raw + SNAP_FIXED_LEN + SNAP_EXTRA_LEN + id_len, name, name_len);
    memset(sn, 0, sizeof(*sn));
    r = parse_entry(sn, raw, len);
    free(raw);
    return r;
}

int qcow2_snapshot_create(struct block_state *bs, const char *name)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t l1_bytes = ALIGN_UP((uint64_t)s->l1_size * 8, s->cluster_size), max_id = 0;
    struct qcow2_snapshot *snaps, sn;
    uint64_t *be = NULL;
    int64_t l1_off = 0;
    char id[32];
    int r;

    if ((r = writable(bs)) < 0)
        return r;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
        block_set_error(bs, "too many snapshots");
        return -EFBIG;
    }
    /* IDs are QEMU's: one more than the largest numeric ID. */
    for (int i = 0; i < s->nb_snapshots; i++)
        max_id = MAX(max_id, strtoull(s->snapshots[i].id, NULL, 10));
    snprintf(id, sizeof(id), "%llu", (unsigned long long)max_id + 1);
    if ((r = settle(bs)) < 0)
        return r;
    if (l1_bytes) {
        be = calloc(1, l1_bytes);
        if (!be)
            return -ENOMEM;
        for (uint32_t i = 0; i < s->l1_size; i++)
            be[i] = __builtin_bswap64(s->l1[i] & ~QCOW2_OFLAG_COPIED);
        l1_off = qcow2_alloc_clusters(bs, l1_bytes >> s->cluster_bits);
        r = l1_off < 0 ? (int)l1_off : 0;
        if (r == 0)
            r = block_file_pwrite(bs->fd, (uint64_t)l1_off, be, l1_bytes);
        free(be);
        if (r < 0)
            return r;
    }
    if ((r = tree_refcount(bs, s->l1, s->l1_size, 1)) < 0) {
        /* Undone already; the L1 copy goes back too. */
        if (l1_bytes)
            qcow2_update_refcount(bs, (uint64_t)l1_off, l1_bytes, -1);
        settle(bs);
        return r;
    }
    if ((r = fix_active_copied(bs)) < 0 || (r = settle(bs)) < 0)
        return r;
    if ((r = build_entry(s, &sn, (uint64_t)l1_off, id, name)) < 0)
        return r;
    snaps = realloc(s->snapshots, ((size_t)s->nb_snapshots + 1) * sizeof(*snaps));
    if (!snaps) {
        free_entry(&sn);
        return -ENOMEM;
    }
    s->snapshots = snaps;
    snaps[s->nb_snapshots] = sn;
    r = write_table(bs, snaps, s->nb_snapshots + 1);
    if (r < 0) {
        free_entry(&snaps[s->nb_snapshots]);
        return r;
    }
    return settle(bs);
}

int qcow2_snapshot_delete(struct block_state *bs, const char *name)
{
    struct qcow2_state *s = qcow2_s(bs);
    struct qcow2_snapshot gone;
    uint64_t *l1;
    int i, r;

    if ((r = writable(bs)) < 0)
        return r;
    /* qemu-img snapshot -d looks names up, not IDs. */
    if ((i = find(s, NULL, name)) < 0)
        return -ENOENT;
    if ((r = settle(bs)) < 0 || (r = read_l1(bs, &s->snapshots[i], &l1)) < 0)
        return r;
    gone = s->snapshots[i];
    memmove(&s->snapshots[i], &s->snapshots[i + 1],
            (size_t)(s->nb_snapshots - i - 1) * sizeof(*s->snapshots));
    s->nb_snapshots--;
    r = write_table(bs, s->snapshots, s->nb_snapshots);
    if (r < 0) {
        /* The header still names the old table: put the entry back. */
        memmove(&s->snapshots[i + 1], &s->snapshots[i],
                (size_t)(s->nb_snapshots - i) * sizeof(*s->snapshots));
        s->snapshots[i] = gone;
        s->nb_snapshots++;
        free(l1);
        return r;
    }
    r = tree_refcount(bs, l1, gone.l1_size, -1);
    if (r == 0 && gone.l1_size)
        r = qcow2_update_refcount(bs, gone.l1_offset,
                                  ALIGN_UP((uint64_t)gone.l1_size * 8, s->cluster_size), -1);
    free(l1);
    free_entry(&gone);
    if (r == 0)
        r = fix_active_copied(bs);
    return r < 0 ? r : settle(bs);
}

int qcow2_snapshot_apply(struct block_state *bs, const char *id_or_name)
{
    struct qcow2_state *s = qcow2_s(bs);
    struct qcow2_snapshot *sn;
    uint64_t *snap_l1, *old_l1;
    uint8_t be[8];
    int i, r;

    if ((r = writable(bs)) < 0)
        return r;
    if ((i = find_id_or_name(s, id_or_name)) < 0)
        return -ENOENT;
    sn = &s->snapshots[i];
    if (sn->disk_size > QCOW2_MAX_VIRTUAL_SIZE || sn->disk_size % 512) {
        block_set_error(bs, "snapshot has an invalid disk size");
        return -EINVAL;
    }
    if ((r = settle(bs)) < 0 || (r = qcow2_grow_l1(bs, sn->l1_size)) < 0 ||
        (r = read_l1(bs, sn, &snap_l1)) < 0)
        return r;
    old_l1 = malloc(MAX(s->l1_size, 1u) * 8ULL);
    if (!old_l1) {
        free(snap_l1);
        return -ENOMEM;
    }
    memcpy(old_l1, s->l1, (size_t)s->l1_size * 8);
    r = tree_refcount(bs, snap_l1, sn->l1_size, 1);
    if (r == 0)
        r = settle(bs);
    if (r == 0) {
        memset(s->l1, 0, (size_t)s->l1_size * 8);
        for (uint32_t j = 0; j < sn->l1_size; j++)
            s->l1[j] = snap_l1[j] & ~QCOW2_OFLAG_COPIED;
        r = qcow2_write_l1_range(bs, 0, s->l1_size);
        if (r == 0)
            r = qcow2_sync(bs);
        if (r < 0)
            memcpy(s->l1, old_l1, (size_t)s->l1_size * 8);
    }
    /* The virtual size goes back to the snapshot's (when it recorded one);
     * the tables beyond it are empty now. */
    if (r == 0 && sn->disk_size && sn->disk_size != s->ih.h.size) {
        be64_store(be, sn->disk_size);
        if ((r = block_file_pwrite(bs->fd, 24, be, 8)) == 0 && (r = qcow2_sync(bs)) == 0) {
            s->ih.h.size = sn->disk_size;
            bs->total_size = sn->disk_size;
        }
    }
    if (r == 0)
        r = tree_refcount(bs, old_l1, s->l1_size, -1);
    if (r == 0)
        r = fix_active_copied(bs);
    free(snap_l1);
    free(old_l1);
    return r < 0 ? r : settle(bs);
}

/* A read-only view of the snapshot: its L1 replaces the active one in
 * memory only (QEMU's snapshot load_tmp, used by convert -l).  id and/or
 * name select it; a NULL one matches anything. */
int qcow2_snapshot_load(struct block_state *bs, const char *id, const char *name)
{
    struct qcow2_state *s = qcow2_s(bs);
    struct qcow2_snapshot *sn;
    uint64_t *l1;
    int i, r;

    if (s->rw) {
        block_set_error(bs, "a snapshot can only be loaded on a read-only image");
        return -EINVAL;
    }
    if ((!id && !name) || (i = find(s, id, name)) < 0)
        return -ENOENT;
    sn = &s->snapshots[i];
    if (sn->disk_size > QCOW2_MAX_VIRTUAL_SIZE) {
        block_set_error(bs, "snapshot has an invalid disk size");
        return -EINVAL;
    }
    if ((r = read_l1(bs, sn, &l1)) < 0)
        return r;
    qcow2_cache_drop_all(&s->l2_cache);
    free(s->l1);
    s->l1 = l1;
    s->l1_size = sn->l1_size;
    if (sn->disk_size) {
        s->ih.h.size = sn->disk_size;
        bs->total_size = sn->disk_size;
    }
    return 0;
}
