/* The raw driver: the file is the disk. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdio.h>

#include "block/block.h"

static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return 1; /* anything is a raw image, as a last resort */
}

static int raw_open(struct block_state *bs, unsigned flags)
{
    off_t end = lseek(bs->fd, 0, SEEK_END);

    if (end < 0) {
        block_set_error(bs, "cannot get the size: %s", strerror(errno));
        return -errno;
    }
    bs->total_size = (uint64_t)end;
    return 0;
}

static void raw_close(struct block_state *bs)
{
}

static int raw_pread(struct block_state *bs, uint64_t off, void *buf, size_t len)
{
    return block_file_pread(bs->fd, off, buf, len);
}

static int raw_pwrite(struct block_state *bs, uint64_t off, const void *buf, size_t len)
{
    return block_file_pwrite(bs->fd, off, buf, len);
}

static int raw_pwrite_zeroes(struct block_state *bs, uint64_t off, uint64_t len)
{
    if (fallocate(bs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)len) == 0)
        return 0;
    if (fallocate(bs->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
        return 0;
    for (uint64_t done = 0; done < len;) {
        static const uint8_t zero[65536];
        size_t n = (size_t)MIN(len - done, sizeof(zero));
        int r = block_file_pwrite(bs->fd, off + done, zero, n);

        if (r < 0)
            return r;
        done += n;
    }
    return 0;
}

static int raw_flush(struct block_state *bs)
{
    if (bs->cache == BLOCK_CACHE_UNSAFE)
        return 0;
    return fdatasync(bs->fd) < 0 ? -errno : 0;
}

static int raw_truncate(struct block_state *bs, uint64_t size)
{
    if (ftruncate(bs->fd, (off_t)size) < 0)
        return -errno;
    bs->total_size = size;
    return 0;
}

static int raw_get_info(struct block_state *bs, struct block_info *info)
{
    info->virtual_size = bs->total_size;
    return 0;
}

/* Holes read as zero; data is mapped to the same offset in the file. */
static int raw_map(struct block_state *bs, uint64_t off, uint64_t len, struct block_map *m)
{
    off_t data = lseek(bs->fd, (off_t)off, SEEK_DATA);

    m->flags = BLOCK_MAP_ALLOCATED;
    if (data < 0 && errno == ENXIO) {
        m->len = len;
        m->flags |= BLOCK_MAP_ZERO | BLOCK_MAP_OFFSET;
        m->host_offset = off;
        return 0;
    }
    if (data < 0) {
        m->len = len;
        m->flags |= BLOCK_MAP_DATA | BLOCK_MAP_OFFSET;
        m->host_offset = off;
        return 0;
    }
    m->host_offset = off;
    m->flags |= BLOCK_MAP_OFFSET;
    if ((uint64_t)data > off) {
        m->len = MIN(len, (uint64_t)data - off);
        m->flags |= BLOCK_MAP_ZERO;
        return 0;
    }
    off_t hole = lseek(bs->fd, (off_t)off, SEEK_HOLE);

    m->len = hole < 0 ? len : MIN(len, (uint64_t)hole - off);
    if (!m->len)
        m->len = len;
    m->flags |= BLOCK_MAP_DATA;
    return 0;
}

int raw_create(const char *filename, uint64_t size, char *err, size_t errlen)
{
    int fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        snprintf(err, errlen, "Could not create '%s': %s", filename, strerror(errno));
        return -errno;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;

        snprintf(err, errlen, "Could not resize file: %s", strerror(e));
        close(fd);
        return -e;
    }
    close(fd);
    return 0;
}

const struct block_driver block_driver_raw = {
    .name = "raw",
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .flush = raw_flush,
    .truncate = raw_truncate,
    .get_info = raw_get_info,
    .map = raw_map,
};
