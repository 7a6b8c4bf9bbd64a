/* The block layer: image format drivers behind one interface.
 *
 * A block_state is one open image (raw file or qcow2 with its backing
 * chain).  Drivers are synchronous; every entry point below takes the
 * image's mutex, so requests may come from any thread (the virtio-blk io
 * workers) while the main loop never blocks on disk.  See docs/block.md. */
#ifndef VMON_BLOCK_BLOCK_H
#define VMON_BLOCK_BLOCK_H

#include <pthread.h>
#include <sys/types.h>
#include "util/types.h"

#define BLOCK_MAX_BACKING_DEPTH 16
#define BLOCK_ERRMSG_LEN 256

/* QEMU's cache= modes: whether the host page cache is bypassed (O_DIRECT)
 * and whether every write is followed by a flush (the guest sees a
 * write-through disk). */
enum block_cache_mode {
    BLOCK_CACHE_WRITEBACK = 0, /* page cache; flush = fdatasync */
    BLOCK_CACHE_NONE,          /* O_DIRECT; flush = fdatasync */
    BLOCK_CACHE_UNSAFE,        /* page cache; flush does not fdatasync (scratch images) */
    BLOCK_CACHE_WRITETHROUGH,  /* page cache; every write flushed */
    BLOCK_CACHE_DIRECTSYNC,    /* O_DIRECT; every write flushed */
};

/* "writeback", "none", "unsafe", "writethrough", "directsync": 0, or
 * -EINVAL for anything else. */
int block_cache_mode_parse(const char *name, enum block_cache_mode *mode);

enum {
    BLOCK_O_RDWR = 1u << 0,
    BLOCK_O_NO_BACKING = 1u << 1, /* open without the backing chain */
    BLOCK_O_NO_LOCK = 1u << 2,    /* skip the OFD image lock (-U) */
    BLOCK_O_NO_REPAIR = 1u << 3,  /* dirty image: do not rebuild refcounts */
    BLOCK_O_PROBE_WARN = 1u << 4, /* format probed: print QEMU's raw warning */
    BLOCK_O_DEVICE = 1u << 5,     /* a guest's disk: in the migration hand-over list */
};

/* Allocation status of a range, for `map` and for convert's hole skip. */
enum {
    BLOCK_MAP_DATA = 1u << 0,      /* data is stored (here or in a backing) */
    BLOCK_MAP_ZERO = 1u << 1,      /* reads as zero */
    BLOCK_MAP_OFFSET = 1u << 2,    /* host_offset is valid (uncompressed) */
    BLOCK_MAP_ALLOCATED = 1u << 3, /* decided by this layer, not a backing */
};

struct block_map {
    uint64_t len;         /* bytes from the asked offset with this status */
    unsigned flags;       /* BLOCK_MAP_* */
    uint64_t host_offset; /* with BLOCK_MAP_OFFSET */
    int depth;            /* 0 = this image, 1 = its backing, ... */
    const char *file;     /* file the data lives in (owned by the image) */
};

struct block_check {
    int64_t corruptions;
    int64_t leaks;
    int64_t check_errors;
    int64_t corruptions_fixed;
    int64_t leaks_fixed;
    int64_t image_end_offset;
    int64_t total_clusters;
    int64_t allocated_clusters;
    int64_t fragmented_clusters;
    int64_t compressed_clusters;
    bool has_cluster_stats;
};

enum { BLOCK_FIX_LEAKS = 1, BLOCK_FIX_ERRORS = 2 };

struct block_snapshot_info {
    char id[64];
    char name[256];
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount; /* UINT64_MAX when absent */
};

struct block_info {
    uint64_t virtual_size;
    uint64_t cluster_size; /* 0 = none */
    char backing_file[1024];
    char backing_format[32];
    bool dirty;
    /* qcow2 specifics */
    bool is_qcow2;
    int version;
    bool lazy_refcounts;
    int refcount_bits;
    bool corrupt;
    bool zstd;
    bool extended_l2;
    int nb_snapshots;
    struct block_snapshot_info *snapshots; /* malloc'd; block_info_free */
};

struct block_state;

struct block_driver {
    const char *name;
    /* Score 0..100 for how surely buf (the file's first bytes) is ours. */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);
    /* bs->fd is open; set bs->total_size; message into bs->errmsg. */
    int (*open)(struct block_state *bs, unsigned flags);
    void (*close)(struct block_state *bs);
    int (*pread)(struct block_state *bs, uint64_t off, void *buf, size_t len);
    int (*pwrite)(struct block_state *bs, uint64_t off, const void *buf, size_t len);
    /* Write one whole cluster compressed (cluster-aligned); optional. */
    int (*pwrite_compressed)(struct block_state *bs, uint64_t off, const void *buf, size_t len);
    /* Zero a range (reads back zero afterwards); optional. */
    int (*pwrite_zeroes)(struct block_state *bs, uint64_t off, uint64_t len);
    /* Metadata to disk in crash-safe order, then fdatasync. */
    int (*flush)(struct block_state *bs);
    int (*truncate)(struct block_state *bs, uint64_t size);
    int (*get_info)(struct block_state *bs, struct block_info *info);
    int (*check)(struct block_state *bs, unsigned fix, struct block_check *res);
    int (*map)(struct block_state *bs, uint64_t off, uint64_t len, struct block_map *m);
    /* Internal snapshots; optional (-ENOTSUP without).  -ENOENT: no such
     * snapshot. */
    int (*snapshot_create)(struct block_state *bs, const char *name);
    int (*snapshot_apply)(struct block_state *bs, const char *id_or_name);
    int (*snapshot_delete)(struct block_state *bs, const char *name);
    int (*snapshot_load)(struct block_state *bs, const char *id, const char *name);
    /* Largest efficient write unit (cluster size); optional. */
    uint64_t (*write_granularity)(struct block_state *bs);
};

struct block_state {
    const struct block_driver *drv;
    void *opaque;           /* driver state */
    char *filename;
    int fd;
    unsigned flags;         /* BLOCK_O_* */
    enum block_cache_mode cache;
    uint64_t total_size;    /* virtual size in bytes */
    struct block_state *backing;
    int depth;              /* 0 for the top image */
    bool probed_raw;        /* format guessed: block 0 writes are restricted */
    const char *format;     /* driver name asked for; NULL when probed */
    bool inactive;          /* handed to another process: no I/O, no lock */
    struct block_state *next_device; /* BLOCK_O_DEVICE images */
    pthread_mutex_t lock;   /* serialises every request on this image */
    char errmsg[BLOCK_ERRMSG_LEN];
};

/* Open filename with format ("raw", "qcow2", or NULL to probe; probing
 * prints QEMU's warning when it guesses raw).  On failure returns NULL and
 * puts a one-line reason into err (without the filename). */
struct block_state *block_open(const char *filename, const char *format, unsigned flags,
                               enum block_cache_mode cache, char *err, size_t errlen);
void block_close(struct block_state *bs);

/* Migration on one host hands the guest's disks (BLOCK_O_DEVICE images)
 * from process to process, as QEMU's image inactivation does: the source
 * flushes and closes them (dropping the lock) before its last state goes
 * out, and takes them back if the migration fails or on cont; the
 * destination opens them read-only and unlocked while it waits, and
 * re-opens them from disk -- fresh qcow2 metadata, the write lock -- before
 * the guest runs.  I/O on an inactive image fails with -EIO. */
void block_devices_start_inactive(void);
int block_inactivate_all(void);
int block_activate_all(char *err, size_t errlen);
int block_activate(struct block_state *bs, char *err, size_t errlen);
bool block_any_inactive(void);

/* Byte-granular I/O of any alignment.  0 or -errno. */
int block_pread(struct block_state *bs, uint64_t off, void *buf, size_t len);
int block_pwrite(struct block_state *bs, uint64_t off, const void *buf, size_t len);
int block_pwrite_zeroes(struct block_state *bs, uint64_t off, uint64_t len);
/* One aligned cluster, stored compressed where the format can (else a plain
 * write). */
int block_pwrite_compressed(struct block_state *bs, uint64_t off, const void *buf, size_t len);
int block_flush(struct block_state *bs);
int block_truncate(struct block_state *bs, uint64_t size);
uint64_t block_getlength(struct block_state *bs);
int block_get_info(struct block_state *bs, struct block_info *info);
void block_info_free(struct block_info *info);
int block_check(struct block_state *bs, unsigned fix, struct block_check *res);
/* Status of [off, off+len): fills m for the first run (m->len <= len). */
int block_map(struct block_state *bs, uint64_t off, uint64_t len, struct block_map *m);

/* Internal snapshots, with qemu-img snapshot's lookup rules: create under
 * a new numeric ID (names need not be unique), apply by ID then by name,
 * delete the first snapshot with that name.  load makes a read-only image
 * show a snapshot's data instead of the active state (id and/or name; NULL
 * matches any).  0, -ENOTSUP (format without snapshots), -ENOENT or
 * another -errno (reason in bs->errmsg). */
int block_snapshot_create(struct block_state *bs, const char *name);
int block_snapshot_apply(struct block_state *bs, const char *id_or_name);
int block_snapshot_delete(struct block_state *bs, const char *name);
int block_snapshot_load(struct block_state *bs, const char *id, const char *name);

const struct block_driver *block_find_driver(const char *name);
/* Guess the format of the first bytes of a file; never NULL (raw). */
const struct block_driver *block_probe(const uint8_t *buf, size_t len, const char *filename);

/* Image lock, QEMU-compatible OFD byte locks: 0, or -EAGAIN when another
 * process holds a conflicting lock. */
int block_lock_image(int fd, bool write);

/* Create images. */
struct qcow2_create_opts {
    uint64_t size;
    unsigned cluster_bits;  /* 9..21 */
    int version;            /* 2 or 3 */
    unsigned refcount_order;/* 0..6 */
    bool lazy_refcounts;
    bool zstd;
    const char *backing_file;
    const char *backing_format;
};
int raw_create(const char *filename, uint64_t size, char *err, size_t errlen);
int qcow2_create(const char *filename, const struct qcow2_create_opts *o, char *err,
                 size_t errlen);

extern const struct block_driver block_driver_raw;
extern const struct block_driver block_driver_qcow2;

/* Helpers shared by drivers. */
int block_file_pread(int fd, uint64_t off, void *buf, size_t len);
int block_file_pwrite(int fd, uint64_t off, const void *buf, size_t len);
struct iovec;
int block_file_pwritev(int fd, uint64_t off, struct iovec *iov, int niov);
/* Crash-test hook: when nonzero, the process _exit()s instead of issuing
 * its Nth image write, so a test can stop it at every write boundary (the
 * places a SIGKILL can land).  Only vmon-img's hidden write-pattern sets it. */
extern uint64_t block_crash_after_writes;
uint64_t block_writes_count(void);
void block_set_error(struct block_state *bs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
