/* qcow2 driver internals (QEMU docs/interop/qcow2.txt).  Not for devices:
 * they go through block/block.h. */
#ifndef VMON_BLOCK_QCOW2_H
#define VMON_BLOCK_QCOW2_H

#include <string.h>

#include "block/block.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32 * MiB)      /* QEMU's limit too */
#define QCOW2_MAX_REFTABLE_BYTES (8 * MiB) /* QEMU's limit too */
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_VIRTUAL_SIZE (1ULL << 55) /* L2 offsets are 56 bits */

/* Feature bits */
#define QCOW2_INCOMPAT_DIRTY (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                              QCOW2_INCOMPAT_COMPRESSION)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)

/* Header extension types */
#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

/* L1/L2 entries */
#define QCOW2_OFLAG_COPIED (1ULL << 63)
#define QCOW2_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW2_OFLAG_ZERO (1ULL << 0)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ULL
#define QCOW2_L1E_RESERVED 0x7f000000000001ffULL
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ULL

struct qcow2_header {
    uint32_t magic;
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
};

struct qcow2_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
};

/* Everything cluster 0 says, parsed and validated. */
struct qcow2_image_header {
    struct qcow2_header h;
    struct qcow2_ext *exts; /* every extension except backing format, verbatim */
    int nb_exts;
    char backing_file[QCOW2_MAX_BACKING_NAME + 1];
    char backing_format[32];
};

/* Parse and validate the header in buf (the file's first cluster, or less).
 * file_size bounds every offset.  0, or -errno with a reason in err. */
int qcow2_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                       struct qcow2_image_header *ih, char *err, size_t errlen);
void qcow2_header_free(struct qcow2_image_header *ih);
/* Serialise header + extensions + backing name into buf (cluster_size
 * bytes, zero-filled first).  -ENOSPC if it does not fit in one cluster. */
int qcow2_header_serialize(struct qcow2_image_header *ih, uint8_t *buf, size_t len);
/* Name of an incompatible feature bit from the feature table, or NULL. */
const char *qcow2_feature_name(const struct qcow2_image_header *ih, int type, int bit,
                               char *out, size_t outlen);

/* Refcount arithmetic on a refcount block of any order. */
uint64_t qcow2_refcount_get(const uint8_t *block, uint64_t index, unsigned order);
void qcow2_refcount_set(uint8_t *block, uint64_t index, unsigned order, uint64_t value);

/* A tiny write-back cache of metadata clusters (L2 tables, refblocks). */
struct qcow2_cache_entry {
    uint64_t offset; /* 0 = empty slot */
    uint8_t *data;
    bool dirty;
    int pins;
    uint64_t lru;
};

struct qcow2_cache {
    struct qcow2_cache_entry *e;
    uint8_t *slab; /* the entries' clusters, one page-aligned block */
    int n;
    uint64_t tick;
    bool is_l2;
};

struct qcow2_free {
    uint64_t offset, len;
};

struct qcow2_snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    struct block_snapshot_info info; /* for listing (id/name shortened) */
    uint64_t disk_size;              /* 0 when the entry does not say */
    char *id, *name;                 /* whole strings, for lookups */
    uint8_t *raw;                    /* the table entry verbatim, unpadded */
    size_t raw_len;
};

struct qcow2_state {
    struct qcow2_image_header ih;
    uint64_t file_size;      /* bytes, at open; grows with allocation */
    unsigned cluster_bits;
    uint64_t cluster_size;
    unsigned l2_bits;        /* entries per L2 table = 1 << l2_bits */
    unsigned refcount_order;
    unsigned rb_bits;        /* refcount entries per block = 1 << rb_bits */
    uint64_t refcount_max;
    unsigned csize_shift;    /* compressed descriptor layout */
    uint64_t csize_mask, coffset_mask;

    uint64_t *l1;            /* host-endian */
    uint32_t l1_size;
    uint32_t l1_dirty_lo, l1_dirty_hi; /* [lo, hi) */
    uint64_t *reftable;      /* host-endian */
    uint64_t reftable_size;  /* entries */

    struct qcow2_cache l2_cache, rb_cache;
    uint64_t free_hint;      /* first cluster index that may be free */

    struct qcow2_free *frees; /* decrements waiting for their L2 to land */
    size_t nb_frees, cap_frees;

    struct qcow2_snapshot *snapshots;
    int nb_snapshots;
    uint64_t snapshots_size; /* bytes of the snapshot table */

    bool rw;
    bool dirty_marked;       /* we set the dirty bit (lazy refcounts) */
    bool unsafe;             /* cache=unsafe: skip fdatasync */
    uint8_t *bounce;         /* one cluster, for compressed reads */
    uint64_t comp_cur, comp_end; /* packing cursor for compressed writes */
    uint8_t *cbuf;           /* compressed input */
    size_t cbuf_len;
};

static inline struct qcow2_state *qcow2_s(struct block_state *bs)
{
    return bs->opaque;
}

/* Big-endian helpers (any alignment) */
static inline uint64_t be64_load(const void *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}
static inline uint32_t be32_load(const void *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
static inline uint16_t be16_load(const void *p)
{
    uint16_t v;

    memcpy(&v, p, 2);
    return __builtin_bswap16(v);
}
static inline void be64_store(void *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}
static inline void be32_store(void *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, 4);
}
static inline void be16_store(void *p, uint16_t v)
{
    v = __builtin_bswap16(v);
    memcpy(p, &v, 2);
}

/* qcow2.c */
/* Write the header's incompatible feature bits and sync. */
int qcow2_set_incompat(struct block_state *bs, uint64_t bits);

/* qcow2_cache.c */
int qcow2_cache_init(struct qcow2_cache *c, int n, size_t cluster_size, bool is_l2);
void qcow2_cache_destroy(struct qcow2_cache *c);
/* Pin the cluster at offset into the cache; read it unless fresh (then
 * zero-filled).  *data stays valid until qcow2_cache_put. */
int qcow2_cache_get(struct block_state *bs, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **data);
void qcow2_cache_put(struct qcow2_cache *c, uint8_t *data);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint8_t *data);
int qcow2_cache_write_dirty(struct block_state *bs, struct qcow2_cache *c);
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset);
void qcow2_cache_drop_all(struct qcow2_cache *c);

/* qcow2_refcount.c */
int qcow2_load_reftable(struct block_state *bs);
int qcow2_get_refcount(struct block_state *bs, uint64_t cluster, uint64_t *rc);
/* Add delta to every cluster of [offset, offset+len).  Creates refblocks
 * (and grows the table) as needed. */
int qcow2_update_refcount(struct block_state *bs, uint64_t offset, uint64_t len, int delta);
/* n contiguous clusters with refcount set to 1; returns the host offset. */
int64_t qcow2_alloc_clusters(struct block_state *bs, uint64_t n);
/* Queue a decrement until the metadata no longer points there. */
int qcow2_free_later(struct block_state *bs, uint64_t offset, uint64_t len);
int qcow2_sync(struct block_state *bs);
/* Write all dirty metadata in crash-safe order (refcounts, L2, L1, frees). */
int qcow2_flush_metadata(struct block_state *bs);

/* qcow2_cluster.c */
enum qcow2_ctype { QCOW2_UNALLOC, QCOW2_ZERO, QCOW2_NORMAL, QCOW2_COMPRESSED };
/* Type and L2 entry of the cluster holding guest offset off. */
int qcow2_lookup(struct block_state *bs, uint64_t off, enum qcow2_ctype *type, uint64_t *entry);
int qcow2_read(struct block_state *bs, uint64_t off, void *buf, size_t len);
int qcow2_write(struct block_state *bs, uint64_t off, const void *buf, size_t len);
int qcow2_write_zeroes(struct block_state *bs, uint64_t off, uint64_t len);
int qcow2_map_range(struct block_state *bs, uint64_t off, uint64_t len, struct block_map *m);
int qcow2_write_l1_range(struct block_state *bs, uint32_t lo, uint32_t hi);
int qcow2_grow_l1(struct block_state *bs, uint64_t min_size);
int qcow2_discard_tail(struct block_state *bs, uint64_t off);

/* qcow2_compress.c */
int qcow2_read_compressed(struct block_state *bs, uint64_t entry, uint8_t *out);
/* Compress one cluster into out (out_len bytes); length, or -1 when it
 * does not fit (store it uncompressed). */
ssize_t qcow2_compress_cluster(struct qcow2_state *s, const uint8_t *in, uint8_t *out,
                               size_t out_len);
int qcow2_write_compressed(struct block_state *bs, uint64_t off, const void *buf, size_t len);

/* qcow2_snapshot.c */
int qcow2_read_snapshots(struct block_state *bs, char *err, size_t errlen);
void qcow2_free_snapshots(struct qcow2_state *s);
int qcow2_snapshot_create(struct block_state *bs, const char *name);
int qcow2_snapshot_apply(struct block_state *bs, const char *id_or_name);
int qcow2_snapshot_delete(struct block_state *bs, const char *name);
int qcow2_snapshot_load(struct block_state *bs, const char *id, const char *name);

/* qcow2_check.c */
int qcow2_check(struct block_state *bs, unsigned fix, struct block_check *res);
/* Rebuild the refcount structure from the L1/L2 tables (dirty images). */
int qcow2_repair(struct block_state *bs, bool quiet);

#endif
