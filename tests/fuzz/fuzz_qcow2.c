/* libFuzzer harness over the qcow2 image parser and mapping code.  The
 * input is the image file: open it read-only through the block layer, then
 * read, map and check it, and read the first internal snapshot's data.  Every path must fail cleanly, never crash, and
 * never allocate without bound (run with -rss_limit_mb).  check's findings
 * go to stderr; run.sh sends them to a log. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    static uint8_t buf[256 * 1024];
    char err[256];
    struct block_state *bs;
    struct block_map m;
    struct block_check res;
    int fd;

    if (!path[0])
        snprintf(path, sizeof(path), "/proc/self/fd/%d",
                 memfd_create("fuzz-image", MFD_CLOEXEC));
    fd = atoi(path + strlen("/proc/self/fd/"));
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        return 0;
    bs = block_open(path, "qcow2", BLOCK_O_NO_LOCK | BLOCK_O_NO_BACKING, BLOCK_CACHE_WRITEBACK,
                    err, sizeof(err));
    if (!bs)
        return 0;
    uint64_t len = block_getlength(bs);

    /* A few reads spread over the disk, one spanning clusters. */
    for (int i = 0; i < 8 && len; i++) {
        uint64_t off = (len / 8) * (uint64_t)i;
        size_t n = (size_t)MIN((uint64_t)sizeof(buf), len - off);

        block_pread(bs, off, buf, n);
    }
    for (uint64_t off = 0, steps = 0; off < len && steps < 64; steps++) {
        if (block_map(bs, off, len - off, &m) < 0 || !m.len)
            break;
        off += m.len;
    }
    block_check(bs, 0, &res);
    struct block_info info;

    if (block_get_info(bs, &info) == 0 && info.nb_snapshots &&
        block_snapshot_load(bs, info.snapshots[0].id, NULL) == 0) {
        len = block_getlength(bs);
        for (int i = 0; i < 4 && len; i++) {
            uint64_t off = (len / 4) * (uint64_t)i;

            block_pread(bs, off, buf, (size_t)MIN((uint64_t)sizeof(buf), len - off));
        }
    }
    block_info_free(&info);
    block_close(bs);
    return 0;
}
