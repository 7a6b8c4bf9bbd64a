/* Generic block layer: driver lookup, probing, open/close, locking, and the
 * per-image mutex around every driver call. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/block.h"

static const struct block_driver *const block_drivers[] = {
    &block_driver_qcow2,
    &block_driver_raw,
};

void block_set_error(struct block_state *bs, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(bs->errmsg, sizeof(bs->errmsg), fmt, ap);
    va_end(ap);
}

int block_cache_mode_parse(const char *name, enum block_cache_mode *mode)
{
    static const struct {
        const char *name;
        enum block_cache_mode mode;
    } modes[] = {
        { "writeback", BLOCK_CACHE_WRITEBACK },       { "none", BLOCK_CACHE_NONE },
        { "unsafe", BLOCK_CACHE_UNSAFE },             { "writethrough", BLOCK_CACHE_WRITETHROUGH },
        { "directsync", BLOCK_CACHE_DIRECTSYNC },
    };

    for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
        if (!strcmp(name, modes[i].name)) {
            *mode = modes[i].mode;
            return 0;
        }
    }
    return -EINVAL;
}

static bool write_through(const struct block_state *bs)
{
    return bs->cache == BLOCK_CACHE_WRITETHROUGH || bs->cache == BLOCK_CACHE_DIRECTSYNC;
}

const struct block_driver *block_find_driver(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(block_drivers); i++)
        if (!strcmp(block_drivers[i]->name, name))
            return block_drivers[i];
    return NULL;
}

const struct block_driver *block_probe(const uint8_t *buf, size_t len, const char *filename)
{
    const struct block_driver *best = &block_driver_raw;
    int best_score = 0;

    for (size_t i = 0; i < ARRAY_SIZE(block_drivers); i++) {
        int s = block_drivers[i]->probe(buf, len, filename);

        if (s > best_score) {
            best_score = s;
            best = block_drivers[i];
        }
    }
    return best;
}

/* QEMU's lock protocol (raw-posix): byte 100+perm is read-locked by every
 * holder of a permission, byte 200+perm by every opener that refuses to share
 * it.  perm 0 = consistent read, 1 = write.  A conflict is another process's
 * lock on a byte we test with F_OFD_GETLK. */
#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
#define PERM_READ 0
#define PERM_WRITE 1

static int lock_byte(int fd, off_t byte)
{
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

static int byte_locked_by_other(int fd, off_t byte)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type != F_UNLCK;
}

int block_lock_image(int fd, bool write)
{
    int r;

    /* Both readers and writers refuse to share write, as qemu-img does. */
    if ((r = lock_byte(fd, LOCK_PERM_BASE + PERM_READ)) < 0 ||
        (r = lock_byte(fd, LOCK_SHARED_BASE + PERM_WRITE)) < 0)
        return r == -EAGAIN || r == -EACCES ? -EAGAIN : r;
    if (write && (r = lock_byte(fd, LOCK_PERM_BASE + PERM_WRITE)) < 0)
        return r == -EAGAIN || r == -EACCES ? -EAGAIN : r;
    r = byte_locked_by_other(fd, LOCK_PERM_BASE + PERM_WRITE);
    if (r == 0 && write)
        r = byte_locked_by_other(fd, LOCK_SHARED_BASE + PERM_WRITE);
    if (r < 0)
        return r == -EINVAL ? 0 : r; /* file system without OFD locks */
    return r ? -EAGAIN : 0;
}

static struct block_state *block_open_depth(const char *filename, const char *format,
                                            unsigned flags, enum block_cache_mode cache,
                                            int depth, char *err, size_t errlen,
                                            bool inactive);

/* Backing file names are relative to the directory of the overlay. */
static char *backing_path(const char *overlay, const char *backing)
{
    const char *slash = strrchr(overlay, '/');
    char *p;

    if (backing[0] == '/' || !slash)
        return strdup(backing);
    if (asprintf(&p, "%.*s/%s", (int)(slash - overlay), overlay, backing) < 0)
        return NULL;
    return p;
}

static int open_backing(struct block_state *bs, char *err, size_t errlen)
{
    struct block_info info;
    struct block_state *b;
    struct stat st_top, st_b;
    char *path;
    int r;

    memset(&info, 0, sizeof(info));
    r = bs->drv->get_info(bs, &info);
    block_info_free(&info);
    if (r < 0 || !info.backing_file[0])
        return r < 0 ? r : 0;
    if (bs->depth + 1 >= BLOCK_MAX_BACKING_DEPTH) {
        snprintf(err, errlen, "backing chain deeper than %d images (loop?)",
                 BLOCK_MAX_BACKING_DEPTH);
        return -ELOOP;
    }
    path = backing_path(bs->filename, info.backing_file);
    if (!path)
        return -ENOMEM;
    if (stat(path, &st_b) == 0 && fstat(bs->fd, &st_top) == 0 &&
        st_b.st_dev == st_top.st_dev && st_b.st_ino == st_top.st_ino) {
        snprintf(err, errlen, "backing file '%s' refers to the image itself", path);
        free(path);
        return -ELOOP;
    }
    /* A backing file is opened read-only and, like QEMU, lets the overlay's
     * user share it. */
    b = block_open_depth(path, info.backing_format[0] ? info.backing_format : NULL,
                         (bs->flags & BLOCK_O_NO_LOCK) | BLOCK_O_NO_REPAIR, bs->cache,
                         bs->depth + 1, err, errlen, false);
    if (!b) {
        char tmp[BLOCK_ERRMSG_LEN];

        snprintf(tmp, sizeof(tmp), "could not open backing file '%s': %s", path, err);
        snprintf(err, errlen, "%s", tmp);
        free(path);
        return -ENOENT;
    }
    free(path);
    /* Loops through longer chains: compare every image below with the top. */
    for (struct block_state *p = b; p; p = p->backing) {
        if (fstat(p->fd, &st_b) == 0 && fstat(bs->fd, &st_top) == 0 &&
            st_b.st_dev == st_top.st_dev && st_b.st_ino == st_top.st_ino) {
            snprintf(err, errlen, "backing chain loops back to the image");
            block_close(b);
            return -ELOOP;
        }
    }
    bs->backing = b;
    return 0;
}

static struct block_state *block_open_depth(const char *filename, const char *format,
                                            unsigned flags, enum block_cache_mode cache,
                                            int depth, char *err, size_t errlen,
                                            bool inactive)
{
    struct block_state *bs = calloc(1, sizeof(*bs));
    /* Aligned and a whole 4 KiB so the probe read also works under O_DIRECT
     * (cache=none), whatever the device's logical block size. */
    uint8_t head[4096] __attribute__((aligned(4096)));
    /* Inactive: read-only, unlocked, no backing chain -- enough to know the
     * disk's size while another process still owns the image. */
    unsigned oflags_of = inactive ? (flags & ~BLOCK_O_RDWR) | BLOCK_O_NO_LOCK | BLOCK_O_NO_BACKING
                                  : flags;
    int oflags = (oflags_of & BLOCK_O_RDWR) ? O_RDWR : O_RDONLY;
    int r;

    if (!bs) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    bs->fd = -1;
    bs->flags = flags;
    bs->cache = cache;
    bs->depth = depth;
    bs->inactive = inactive;
    pthread_mutex_init(&bs->lock, NULL);
    bs->filename = strdup(filename);
    if (!bs->filename)
        goto fail;
    if (format && !block_find_driver(format)) {
        snprintf(err, errlen, "Unknown driver '%s'", format);
        goto fail;
    }
    if (cache == BLOCK_CACHE_NONE || cache == BLOCK_CACHE_DIRECTSYNC)
        oflags |= O_DIRECT;
    bs->fd = open(filename, oflags | O_CLOEXEC);
    if (bs->fd < 0 && errno == EINVAL && (oflags & O_DIRECT)) {
        /* QEMU refuses too rather than silently using the page cache. */
        snprintf(err, errlen, "Could not open '%s': filesystem does not support O_DIRECT",
                 filename);
        goto fail;
    }
    if (bs->fd < 0) {
        snprintf(err, errlen, "Could not open '%s': %s", filename, strerror(errno));
        goto fail;
    }
    if (!(oflags_of & BLOCK_O_NO_LOCK)) {
        r = block_lock_image(bs->fd, flags & BLOCK_O_RDWR);
        if (r == -EAGAIN) {
            snprintf(err, errlen, "Failed to get \"%s\" lock: is another process using the image?",
                     (flags & BLOCK_O_RDWR) ? "write" : "shared write");
            goto fail;
        }
        if (r < 0) {
            snprintf(err, errlen, "Failed to lock the image: %s", strerror(-r));
            goto fail;
        }
    }
    if (format) {
        bs->drv = block_find_driver(format);
        bs->format = bs->drv->name;
    } else {
        memset(head, 0, sizeof(head));
        ssize_t n = pread(bs->fd, head, sizeof(head), 0);

        /* A failed read must not look like an empty file: that probes raw. */
        if (n < 0) {
            snprintf(err, errlen, "Could not read '%s': %s", filename, strerror(errno));
            goto fail;
        }
        bs->drv = block_probe(head, (size_t)n, filename);
        bs->probed_raw = bs->drv == &block_driver_raw;
        if (bs->drv == &block_driver_raw && depth == 0 && (flags & BLOCK_O_PROBE_WARN))
            fprintf(stderr,
                    "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
                    "         Automatically detecting the format is dangerous for raw images, "
                    "write operations on block 0 will be restricted.\n"
                    "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                    filename);
    }
    r = bs->drv->open(bs, oflags_of);
    if (r < 0) {
        snprintf(err, errlen, "%s", bs->errmsg[0] ? bs->errmsg : strerror(-r));
        bs->drv = NULL;
        goto fail;
    }
    if (!(oflags_of & BLOCK_O_NO_BACKING) && open_backing(bs, err, errlen) < 0)
        goto fail;
    return bs;

fail:
    if (bs->drv)
        bs->drv->close(bs);
    if (bs->fd >= 0)
        close(bs->fd);
    free(bs->filename);
    pthread_mutex_destroy(&bs->lock);
    free(bs);
    return NULL;
}

static pthread_mutex_t devices_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block_state *devices;   /* BLOCK_O_DEVICE images */
static bool devices_inactive_at_open;

struct block_state *block_open(const char *filename, const char *format, unsigned flags,
                               enum block_cache_mode cache, char *err, size_t errlen)
{
    bool device = flags & BLOCK_O_DEVICE;
    struct block_state *bs = block_open_depth(filename, format, flags, cache, 0, err, errlen,
                                              device && devices_inactive_at_open);

    if (bs && device) {
        pthread_mutex_lock(&devices_lock);
        bs->next_device = devices;
        devices = bs;
        pthread_mutex_unlock(&devices_lock);
    }
    return bs;
}

void block_close(struct block_state *bs)
{
    if (!bs)
        return;
    if (bs->flags & BLOCK_O_DEVICE) {
        pthread_mutex_lock(&devices_lock);
        for (struct block_state **p = &devices; *p; p = &(*p)->next_device)
            if (*p == bs) {
                *p = bs->next_device;
                break;
            }
        pthread_mutex_unlock(&devices_lock);
    }
    pthread_mutex_lock(&bs->lock);
    if (bs->drv)
        bs->drv->close(bs);
    pthread_mutex_unlock(&bs->lock);
    if (bs->backing)
        block_close(bs->backing);
    if (bs->fd >= 0)
        close(bs->fd);
    free(bs->filename);
    pthread_mutex_destroy(&bs->lock);
    free(bs);
}

/* ---- hand-over between processes (migration) ---- */

void block_devices_start_inactive(void)
{
    devices_inactive_at_open = true;
}

/* Image lock held.  Flush, close the driver and the file (the OFD locks go
 * with it). */
static int inactivate(struct block_state *bs)
{
    int r = 0;

    if (bs->inactive)
        return 0;
    if (bs->flags & BLOCK_O_RDWR)
        r = bs->drv->flush(bs);
    bs->drv->close(bs);
    bs->drv = NULL;
    bs->opaque = NULL;
    if (bs->backing)
        block_close(bs->backing);
    bs->backing = NULL;
    close(bs->fd);
    bs->fd = -1;
    bs->inactive = true;
    return r;
}

/* Open the image again from disk and move the new state into bs, which
 * devices and the aio layer keep pointers to. */
int block_activate(struct block_state *bs, char *err, size_t errlen)
{
    struct block_state *n;

    if (!bs->inactive)
        return 0;
    n = block_open_depth(bs->filename, bs->format, bs->flags & ~BLOCK_O_PROBE_WARN, bs->cache, 0,
                         err, errlen, false);
    if (!n)
        return -EIO;
    pthread_mutex_lock(&bs->lock);
    if (bs->drv)
        bs->drv->close(bs);
    if (bs->backing)
        block_close(bs->backing);
    if (bs->fd >= 0)
        close(bs->fd);
    bs->drv = n->drv;
    bs->opaque = n->opaque;
    bs->fd = n->fd;
    bs->total_size = n->total_size;
    bs->backing = n->backing;
    bs->probed_raw = n->probed_raw;
    bs->inactive = false;
    pthread_mutex_unlock(&bs->lock);
    free(n->filename);
    pthread_mutex_destroy(&n->lock);
    free(n);
    return 0;
}

int block_inactivate_all(void)
{
    int ret = 0;

    pthread_mutex_lock(&devices_lock);
    for (struct block_state *bs = devices; bs; bs = bs->next_device) {
        int r;

        pthread_mutex_lock(&bs->lock);
        r = inactivate(bs);
        pthread_mutex_unlock(&bs->lock);
        if (r < 0 && ret == 0)
            ret = r;
    }
    pthread_mutex_unlock(&devices_lock);
    return ret;
}

int block_activate_all(char *err, size_t errlen)
{
    int ret = 0;

    pthread_mutex_lock(&devices_lock);
    for (struct block_state *bs = devices; bs && ret == 0; bs = bs->next_device) {
        char e[BLOCK_ERRMSG_LEN + 64];

        if (block_activate(bs, e, sizeof(e)) < 0) {
            snprintf(err, errlen, "%s: %s", bs->filename, e);
            ret = -EIO;
        }
    }
    pthread_mutex_unlock(&devices_lock);
    return ret;
}

bool block_any_inactive(void)
{
    bool any = false;

    pthread_mutex_lock(&devices_lock);
    for (struct block_state *bs = devices; bs; bs = bs->next_device)
        any |= bs->inactive;
    pthread_mutex_unlock(&devices_lock);
    return any;
}

static bool range_ok(struct block_state *bs, uint64_t off, uint64_t len)
{
    return off <= bs->total_size && len <= bs->total_size - off;
}

int block_pread(struct block_state *bs, uint64_t off, void *buf, size_t len)
{
    int r;

    if (!range_ok(bs, off, len))
        return -EINVAL;
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    r = bs->drv->pread(bs, off, buf, len);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

/* As in QEMU: on an image whose format was guessed as raw, a write may not
 * turn block 0 into something that would probe as another format on the
 * next open (a guest writing a qcow2 header that names a host file as its
 * backing file).  Called with bs->lock held. */
static bool block0_write_allowed(struct block_state *bs, uint64_t off, const void *buf,
                                 size_t len)
{
    uint8_t sector[512] = { 0 };
    size_t have = (size_t)MIN(bs->total_size, sizeof(sector));

    if (!bs->probed_raw || off >= sizeof(sector) || len == 0)
        return true;
    if (bs->drv->pread(bs, 0, sector, have) < 0)
        return false;
    memcpy(sector + off, buf, MIN(len, sizeof(sector) - off));
    return block_probe(sector, have, bs->filename) == &block_driver_raw;
}

int block_pwrite(struct block_state *bs, uint64_t off, const void *buf, size_t len)
{
    int r;

    if (!(bs->flags & BLOCK_O_RDWR))
        return -EROFS;
    if (!range_ok(bs, off, len))
        return -EINVAL;
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    if (!block0_write_allowed(bs, off, buf, len)) {
        pthread_mutex_unlock(&bs->lock);
        return -EPERM;
    }
    r = bs->drv->pwrite(bs, off, buf, len);
    if (r == 0 && write_through(bs))
        r = bs->drv->flush(bs);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

int block_pwrite_compressed(struct block_state *bs, uint64_t off, const void *buf, size_t len)
{
    int r;

    if (!(bs->flags & BLOCK_O_RDWR))
        return -EROFS;
    if (!range_ok(bs, off, len))
        return -EINVAL;
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    if (bs->drv->pwrite_compressed)
        r = bs->drv->pwrite_compressed(bs, off, buf, len);
    else
        r = bs->drv->pwrite(bs, off, buf, len);
    if (r == 0 && write_through(bs))
        r = bs->drv->flush(bs);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

int block_pwrite_zeroes(struct block_state *bs, uint64_t off, uint64_t len)
{
    static const uint8_t zero[65536];
    int r = 0;

    if (!(bs->flags & BLOCK_O_RDWR))
        return -EROFS;
    if (!range_ok(bs, off, len))
        return -EINVAL;
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    if (bs->drv->pwrite_zeroes) {
        r = bs->drv->pwrite_zeroes(bs, off, len);
    } else {
        while (len && r == 0) {
            size_t n = MIN(len, sizeof(zero));

            r = bs->drv->pwrite(bs, off, zero, n);
            off += n;
            len -= n;
        }
    }
    if (r == 0 && write_through(bs))
        r = bs->drv->flush(bs);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

int block_flush(struct block_state *bs)
{
    int r;

    if (!(bs->flags & BLOCK_O_RDWR))
        return 0;
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    r = bs->drv->flush(bs);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

int block_truncate(struct block_state *bs, uint64_t size)
{
    int r;

    if (!(bs->flags & BLOCK_O_RDWR))
        return -EROFS;
    if (!bs->drv || !bs->drv->truncate)
        return -ENOTSUP;
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    r = bs->drv->truncate(bs, size);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

uint64_t block_getlength(struct block_state *bs)
{
    uint64_t s;

    pthread_mutex_lock(&bs->lock);
    s = bs->total_size;
    pthread_mutex_unlock(&bs->lock);
    return s;
}

int block_get_info(struct block_state *bs, struct block_info *info)
{
    int r;

    memset(info, 0, sizeof(*info));
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    r = bs->drv->get_info(bs, info);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

void block_info_free(struct block_info *info)
{
    free(info->snapshots);
    info->snapshots = NULL;
}

int block_check(struct block_state *bs, unsigned fix, struct block_check *res)
{
    int r;

    memset(res, 0, sizeof(*res));
    if (!bs->drv || !bs->drv->check)
        return -ENOTSUP;
    if (fix && !(bs->flags & BLOCK_O_RDWR))
        return -EROFS;
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    r = bs->drv->check(bs, fix, res);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

int block_map(struct block_state *bs, uint64_t off, uint64_t len, struct block_map *m)
{
    int r;

    memset(m, 0, sizeof(*m));
    if (!range_ok(bs, off, len) || !len)
        return -EINVAL;
    pthread_mutex_lock(&bs->lock);
    if (bs->inactive) {
        pthread_mutex_unlock(&bs->lock);
        return -EIO;
    }
    r = bs->drv->map(bs, off, len, m);
    pthread_mutex_unlock(&bs->lock);
    if (r == 0 && !(m->flags & BLOCK_MAP_ALLOCATED) && bs->backing) {
        /* Unallocated here: the backing image decides (zero beyond its end). */
        uint64_t blen = block_getlength(bs->backing);

        if (off < blen) {
            struct block_map bm;
            uint64_t n = MIN(m->len, blen - off);

            r = block_map(bs->backing, off, n, &bm);
            if (r == 0) {
                *m = bm;
                m->depth++;
            }
        } else {
            m->flags = BLOCK_MAP_ZERO;
        }
    }
    if (r == 0 && !m->file)
        m->file = bs->filename;
    return r;
}

/* One wrapper for the snapshot entry points: a missing hook is -ENOTSUP. */
#define SNAPSHOT_CALL(bs, hook, ...)                                                       \
    ({                                                                                     \
        int r_ = -ENOTSUP;                                                                 \
        pthread_mutex_lock(&(bs)->lock);                                                   \
        if ((bs)->drv->hook)                                                               \
            r_ = (bs)->drv->hook((bs), __VA_ARGS__);                                       \
        pthread_mutex_unlock(&(bs)->lock);                                                 \
        r_;                                                                                \
    })

int block_snapshot_create(struct block_state *bs, const char *name)
{
    return SNAPSHOT_CALL(bs, snapshot_create, name);
}

int block_snapshot_apply(struct block_state *bs, const char *id_or_name)
{
    return SNAPSHOT_CALL(bs, snapshot_apply, id_or_name);
}

int block_snapshot_delete(struct block_state *bs, const char *name)
{
    return SNAPSHOT_CALL(bs, snapshot_delete, name);
}

int block_snapshot_load(struct block_state *bs, const char *id, const char *name)
{
    return SNAPSHOT_CALL(bs, snapshot_load, id, name);
}
