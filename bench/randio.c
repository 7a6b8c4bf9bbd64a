/* randio: 4 KiB random reads or writes with O_DIRECT on a block device,
 * for the guest-side disk benchmark (bench/virtio_blk.py).  busybox dd
 * covers sequential I/O, but one dd process per random 4 KiB request
 * would measure process start-up instead of the disk.  Built static by
 * scripts/guest-kit.sh into the guest kit's /bin.
 *
 *   randio read|write DEVICE COUNT SEED
 *
 * Offsets are 4 KiB-aligned and uniform over the device (an LCG seeded by
 * SEED, so both VMMs see the same sequence).  Prints
 * "randio <op> <count> <seconds>" measured with CLOCK_MONOTONIC. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    uint64_t size, blocks, state, count;
    int write_mode, fd;
    void *buf;
    double t0, t1;

    if (argc != 5 || (strcmp(argv[1], "read") && strcmp(argv[1], "write"))) {
        fprintf(stderr, "usage: randio read|write DEVICE COUNT SEED\n");
        return 2;
    }
    write_mode = !strcmp(argv[1], "write");
    count = strtoull(argv[3], NULL, 0);
    state = strtoull(argv[4], NULL, 0);
    fd = open(argv[2], (write_mode ? O_RDWR : O_RDONLY) | O_DIRECT);
    if (fd >= 0 && ioctl(fd, BLKGETSIZE64, &size) < 0) {
        struct stat st; /* a plain file, when tried on the host */

        size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    if (fd < 0) {
        fprintf(stderr, "randio: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    blocks = size / BLOCK;
    if (!blocks || posix_memalign(&buf, BLOCK, BLOCK)) {
        fprintf(stderr, "randio: %s: device too small or out of memory\n", argv[2]);
        return 1;
    }
    memset(buf, 0x5a, BLOCK);
    t0 = now();
    for (uint64_t i = 0; i < count; i++) {
        off_t off;
        ssize_t n;

        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        off = (off_t)((state >> 17) % blocks) * BLOCK;
        n = write_mode ? pwrite(fd, buf, BLOCK, off) : pread(fd, buf, BLOCK, off);
        if (n != BLOCK) {
            fprintf(stderr, "randio: %s at %lld: %s\n", argv[1], (long long)off,
                    n < 0 ? strerror(errno) : "short transfer");
            return 1;
        }
    }
    if (write_mode && fdatasync(fd) < 0) {
        fprintf(stderr, "randio: fdatasync: %s\n", strerror(errno));
        return 1;
    }
    t1 = now();
    printf("randio %s %llu %.3f\n", argv[1], (unsigned long long)count, t1 - t0);
    return 0;
}
