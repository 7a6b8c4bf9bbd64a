/* libFuzzer harness over the kernel loaders (bzImage, ELF64, Multiboot).
 * The input is a kernel image, optionally followed by an initrd: the first
 * byte's low bit says whether the next two bytes (little-endian) give an
 * initrd length.  Whatever the bytes, boot_load() must refuse them with an
 * error or place them inside guest RAM; ASan catches any access outside the
 * buffers it reads and the RAM mapping it writes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "boot/boot.h"
#include "config/config.h"
#include "machine/machine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vm_config cfg;
static struct machine m;
static struct vcpu bsp;
static int kernel_fd = -1, initrd_fd = -1;
static char kernel_path[64], initrd_path[64];

static int memfd_path(const char *name, char *path, size_t len)
{
    int fd = memfd_create(name, MFD_CLOEXEC);

    if (fd < 0)
        abort();
    snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

static void fill(int fd, const uint8_t *p, size_t n)
{
    if (ftruncate(fd, 0) < 0 || (n && pwrite(fd, p, n, 0) != (ssize_t)n))
        abort();
}

static void setup_once(void)
{
    kernel_fd = memfd_path("fuzz-kernel", kernel_path, sizeof(kernel_path));
    initrd_fd = memfd_path("fuzz-initrd", initrd_path, sizeof(initrd_path));
    /* Small RAM keeps each run fast and makes "does not fit" paths common. */
    cfg.ram_size = 16ULL << 20;
    cfg.smp = 1;
    cfg.kernel = kernel_path;
    cfg.append = "console=ttyS0";
    if (machine_init(&m, &cfg) < 0)
        abort();
    bsp.m = &m;
    m.vcpus[0] = &bsp;
    m.nr_vcpus = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t initrd_len = 0;

    if (kernel_fd < 0)
        setup_once();
    if (size < 1)
        return 0;
    if ((data[0] & 1) && size >= 3) {
        initrd_len = (size_t)data[1] | (size_t)data[2] << 8;
        data += 3;
        size -= 3;
        if (initrd_len > size)
            initrd_len = size;
    } else {
        data++;
        size--;
    }
    fill(initrd_fd, data + size - initrd_len, initrd_len);
    fill(kernel_fd, data, size - initrd_len);
    cfg.initrd = initrd_len ? initrd_path : NULL;
    cpu_state_reset(&bsp.state, 0, true);
    if (boot_load(&m) == 0)
        boot_reset(&m);
    return 0;
}
