/* File I/O for the drivers: whole-length pread/pwrite/pwritev that retry
 * short transfers, the crash-test write counter, and the O_DIRECT
 * (cache=none) bounce path.
 *
 * With O_DIRECT the kernel wants the file offset, the length and the
 * memory address aligned to the device's logical block size, and answers
 * EINVAL otherwise.  Most requests are aligned (guest sectors in guest RAM,
 * qcow2 clusters in page-aligned buffers) and go straight through; the
 * first EINVAL on an O_DIRECT descriptor switches that one request to an
 * aligned bounce buffer (read-modify-write for partial blocks).  4 KiB is
 * a multiple of every logical block size we meet, so it is always a valid
 * alignment.  Callers hold the image's mutex, so a read-modify-write cannot
 * race another request on the same image. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/block.h"

#define DIRECT_ALIGN 4096u
#define DIRECT_CHUNK (1u * MiB)

uint64_t block_crash_after_writes;
static uint64_t block_writes_issued;

static void crash_point(void)
{
    uint64_t n = __atomic_add_fetch(&block_writes_issued, 1, __ATOMIC_SEQ_CST);

    if (block_crash_after_writes && n >= block_crash_after_writes)
        _exit(99);
}

uint64_t block_writes_count(void)
{
    return __atomic_load_n(&block_writes_issued, __ATOMIC_SEQ_CST);
}

static bool fd_is_direct(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl >= 0 && (fl & O_DIRECT);
}

/* Read the aligned range [off, off+len) into an aligned buffer; bytes past
 * the end of the file read as zero. */
static int direct_read_aligned(int fd, uint64_t off, uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = pread(fd, buf, len, (off_t)off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0 || n % DIRECT_ALIGN) {
            /* End of file (a short tail is not block-aligned). */
            memset(buf + n, 0, len - (size_t)n);
            return 0;
        }
        buf += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int direct_write_aligned(int fd, uint64_t off, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int direct_pread_bounce(int fd, uint64_t off, uint8_t *p, size_t len)
{
    uint8_t *bounce;
    int r = 0;

    if (posix_memalign((void **)&bounce, DIRECT_ALIGN, DIRECT_CHUNK))
        return -ENOMEM;
    while (len && r == 0) {
        uint64_t start = off & ~(uint64_t)(DIRECT_ALIGN - 1);
        size_t head = (size_t)(off - start);
        size_t n = MIN(len, DIRECT_CHUNK - head);
        size_t span = (head + n + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1);

        r = direct_read_aligned(fd, start, bounce, span);
        if (r == 0)
            memcpy(p, bounce + head, n);
        p += n;
        off += n;
        len -= n;
    }
    free(bounce);
    return r;
}

/* Partial blocks at either end are read first; a write that had to round
 * up past the end of the file trims the file back to what was asked. */
static int direct_pwrite_bounce(int fd, uint64_t off, const uint8_t *p, size_t len)
{
    struct stat st;
    uint64_t want_end = off + len;
    uint8_t *bounce;
    int r = 0;

    if (fstat(fd, &st) < 0)
        return -errno;
    want_end = MAX(want_end, (uint64_t)st.st_size);
    if (posix_memalign((void **)&bounce, DIRECT_ALIGN, DIRECT_CHUNK))
        return -ENOMEM;
    while (len && r == 0) {
        uint64_t start = off & ~(uint64_t)(DIRECT_ALIGN - 1);
        size_t head = (size_t)(off - start);
        size_t n = MIN(len, DIRECT_CHUNK - head);
        size_t span = (head + n + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1);

        if (head)
            r = direct_read_aligned(fd, start, bounce, DIRECT_ALIGN);
        if (r == 0 && (head + n) % DIRECT_ALIGN && (span > DIRECT_ALIGN || !head))
            r = direct_read_aligned(fd, start + span - DIRECT_ALIGN,
                                    bounce + span - DIRECT_ALIGN, DIRECT_ALIGN);
        if (r == 0) {
            memcpy(bounce + head, p, n);
            r = direct_write_aligned(fd, start, bounce, span);
        }
        p += n;
        off += n;
        len -= n;
    }
    free(bounce);
    if (r == 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size > want_end &&
        ftruncate(fd, (off_t)want_end) < 0)
        r = -errno;
    return r;
}

int block_file_pread(int fd, uint64_t off, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EINVAL && fd_is_direct(fd))
                return direct_pread_bounce(fd, off, p, len);
            return -errno;
        }
        if (n == 0) {
            /* Past end of file reads as zero, like a sparse file. */
            memset(p, 0, len);
            return 0;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int pwrite_all(int fd, uint64_t off, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EINVAL && fd_is_direct(fd))
                return direct_pwrite_bounce(fd, off, p, len);
            return -errno;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int block_file_pwrite(int fd, uint64_t off, const void *buf, size_t len)
{
    crash_point();
    return pwrite_all(fd, off, buf, len);
}

int block_file_pwritev(int fd, uint64_t off, struct iovec *iov, int niov)
{
    int first = 0;

    crash_point();
    while (first < niov) {
        ssize_t w = pwritev(fd, iov + first, niov - first, (off_t)off);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EINVAL || !fd_is_direct(fd))
                return -errno;
            /* Unaligned pieces: one element at a time through the bounce. */
            for (; first < niov; first++) {
                int r = pwrite_all(fd, off, iov[first].iov_base, iov[first].iov_len);

                if (r < 0)
                    return r;
                off += iov[first].iov_len;
            }
            return 0;
        }
        off += (uint64_t)w;
        while (first < niov && (size_t)w >= iov[first].iov_len) {
            w -= (ssize_t)iov[first].iov_len;
            first++;
        }
        if (first < niov && w) {
            iov[first].iov_base = (uint8_t *)iov[first].iov_base + w;
            iov[first].iov_len -= (size_t)w;
        }
    }
    return 0;
}
