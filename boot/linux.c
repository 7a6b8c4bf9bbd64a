/* The Linux x86 boot protocol (Documentation/arch/x86/boot.rst): a bzImage
 * is entered directly at its 64-bit entry point (startup_64, load address +
 * 0x200) with a zero page (struct boot_params) built here.  The real-mode
 * setup code is never run, so no BIOS is needed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "boot/loader.h"
#include "config/config.h"
#include "util/log.h"

/* struct boot_params outside the setup header. */
#define BP_SIZE 0x1000
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define BP_E820_ENTRY_SIZE 20

/* The setup header, at the same offsets in the file and in boot_params. */
#define HDR_START 0x1f1
#define HDR_SETUP_SECTS 0x1f1
#define HDR_SYSSIZE 0x1f4
#define HDR_VID_MODE 0x1fa
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_HARDWARE_SUBARCH 0x23c
#define HDR_HARDWARE_SUBARCH_DATA 0x240
#define HDR_SETUP_DATA 0x250
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define HDR_END_2_12 0x268 /* the header reaches at least this far in 2.12 */
#define HDR_COPY_END 0x290 /* boot_params reserves the header up to here */

#define HDR_MAGIC_VALUE 0x53726448 /* "HdrS" */
#define BOOT_FLAG_VALUE 0xaa55
#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x0001
#define LOADER_TYPE_UNDEFINED 0xff
#define VID_MODE_NORMAL 0xffff
#define STARTUP_64_OFFSET 0x200
/* The limit before protocol 2.03 made it a field; used when the field is 0. */
#define INITRD_ADDR_MAX_DEFAULT 0x37ffffff

static unsigned proto_major(uint16_t v)
{
    return v >> 8;
}

static unsigned proto_minor(uint16_t v)
{
    return v & 0xff;
}

bool linux_is_bzimage(const struct boot_file *f)
{
    return f->size >= HDR_MAGIC + 4 && boot_get32(f->data + HDR_MAGIC) == HDR_MAGIC_VALUE;
}

static int place_initrd(struct boot_plan *p, uint8_t *zp, gpa_t initrd_end)
{
    struct machine *m = p->m;
    const char *path = m->cfg->initrd;
    struct boot_file *f;
    gpa_t hi = MIN(MIN(initrd_end, m->lowmem_size), 4 * GiB);
    gpa_t addr;
    int ret;

    if (!path || !*path)
        return 0;
    p->initrds = calloc(1, sizeof(*p->initrds));
    if (!p->initrds)
        return -ENOMEM;
    p->nr_initrds = 1;
    f = &p->initrds[0];
    ret = boot_read_file(f, "-initrd", path, m->ram_size);
    if (ret < 0)
        return ret;
    if (f->size == 0) {
        LOG(LOG_BOOT, "boot: -initrd %s is empty, no ramdisk passed\n", path);
        return 0;
    }
    /* As high as allowed, like other boot loaders: it keeps the ramdisk out
     * of the way of the kernel's decompression and early allocations. */
    ret = boot_find_free(p, f->size, 0x1000, BOOT_KERNEL_ADDR, hi, true, &addr);
    if (ret < 0) {
        error_report("-initrd %s: the ramdisk (%llu KiB) does not fit in guest RAM below "
                     "0x%llx next to the kernel (-m %llu)",
                     path, (unsigned long long)(f->size / KiB), (unsigned long long)hi,
                     (unsigned long long)(m->ram_size / MiB));
        return -ENOSPC;
    }
    ret = boot_place(p, f, "initrd", addr, f->size, f->data, f->size, false, NULL);
    if (ret < 0)
        return ret;
    boot_put32(zp + HDR_RAMDISK_IMAGE, (uint32_t)addr);
    boot_put32(zp + HDR_RAMDISK_SIZE, (uint32_t)f->size);
    boot_put32(zp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(addr >> 32));
    boot_put32(zp + BP_EXT_RAMDISK_SIZE, (uint32_t)(f->size >> 32));
    return 0;
}

int linux_finish_zeropage(struct boot_plan *p, uint8_t *zp, uint64_t cmdline_max,
                          gpa_t initrd_end)
{
    struct machine *m = p->m;
    const char *append = m->cfg->append ? m->cfg->append : "";
    size_t len = strlen(append);
    char *cmdline;
    int n, ret;

    cmdline_max = MIN(cmdline_max, BOOT_CMDLINE_MAX - 1);
    if (len > cmdline_max) {
        error_report("-append: the command line is %zu bytes; this kernel takes at most %llu",
                     len, (unsigned long long)cmdline_max);
        return -E2BIG;
    }
    cmdline = strdup(append);
    if (!cmdline)
        return -ENOMEM;
    ret = boot_place(p, &p->kernel, "command line", BOOT_CMDLINE, len + 1, cmdline, len + 1,
                     false, (uint8_t *)cmdline);
    if (ret < 0)
        return ret;
    boot_put32(zp + HDR_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE);
    boot_put32(zp + BP_EXT_CMD_LINE_PTR, 0);

    ret = place_initrd(p, zp, initrd_end);
    if (ret < 0)
        return ret;

    n = MIN(m->nr_e820, BP_E820_MAX);
    zp[BP_E820_ENTRIES] = (uint8_t)n;
    for (int i = 0; i < n; i++) {
        uint8_t *e = zp + BP_E820_TABLE + i * BP_E820_ENTRY_SIZE;

        boot_put64(e, m->e820[i].addr);
        boot_put64(e + 8, m->e820[i].size);
        boot_put32(e + 16, m->e820[i].type);
    }
    /* acpi_rsdp_addr stays 0: Linux finds the RSDP by scanning the BIOS
     * area, where the board puts it. */
    return 0;
}

/* Everything about the image that can be checked before placing it. */
struct bzimage {
    uint16_t version;
    uint64_t setup_size;
    const uint8_t *pm;      /* protected-mode kernel */
    uint64_t pm_len;
    uint32_t init_size;
    uint64_t pref_address;
    uint32_t alignment;
    bool relocatable;
    unsigned hdr_end;
};

static int bzimage_check(const struct boot_file *f, struct bzimage *bz)
{
    const uint8_t *d = f->data;
    unsigned setup_sects;
    uint64_t syssize;
    uint16_t xlf;

    if (f->size < HDR_END_2_12 || HDR_MAGIC + d[HDR_JUMP + 1] < HDR_END_2_12) {
        error_report("-kernel %s: the bzImage setup header is truncated", f->path);
        return -ENOEXEC;
    }
    bz->hdr_end = MIN(HDR_MAGIC + d[HDR_JUMP + 1], HDR_COPY_END);
    if (boot_get16(d + HDR_BOOT_FLAG) != BOOT_FLAG_VALUE) {
        error_report("-kernel %s: bzImage boot flag is 0x%04x, not 0xaa55", f->path,
                     boot_get16(d + HDR_BOOT_FLAG));
        return -ENOEXEC;
    }
    bz->version = boot_get16(d + HDR_VERSION);
    if (bz->version < 0x206) {
        error_report("-kernel %s: Linux boot protocol %u.%02u is too old; vmon needs 2.12 "
                     "or later", f->path, proto_major(bz->version), proto_minor(bz->version));
        return -ENOEXEC;
    }
    xlf = boot_get16(d + HDR_XLOADFLAGS);
    if (bz->version < 0x20c || !(xlf & XLF_KERNEL_64)) {
        error_report("-kernel %s: kernel has no 64-bit entry point (boot protocol %u.%02u, "
                     "xloadflags 0x%x); vmon needs 2.12+ with XLF_KERNEL_64", f->path,
                     proto_major(bz->version), proto_minor(bz->version), xlf);
        return -ENOEXEC;
    }
    if (!(d[HDR_LOADFLAGS] & LOADED_HIGH)) {
        error_report("-kernel %s: a zImage (loaded low) cannot be booted; use a bzImage",
                     f->path);
        return -ENOEXEC;
    }
    setup_sects = d[HDR_SETUP_SECTS] ? d[HDR_SETUP_SECTS] : 4;
    bz->setup_size = (setup_sects + 1ULL) * 512;
    if (bz->setup_size >= f->size) {
        error_report("-kernel %s: setup_sects %u puts the kernel at 0x%llx, past the end of "
                     "the file (%llu bytes)", f->path, setup_sects,
                     (unsigned long long)bz->setup_size, (unsigned long long)f->size);
        return -ENOEXEC;
    }
    bz->pm = d + bz->setup_size;
    bz->pm_len = f->size - bz->setup_size;
    syssize = boot_get32(d + HDR_SYSSIZE) * 16ULL;
    if (syssize == 0 || syssize > ALIGN_UP(bz->pm_len, 16)) {
        error_report("-kernel %s: syssize says the kernel is %llu bytes, the file holds %llu",
                     f->path, (unsigned long long)syssize, (unsigned long long)bz->pm_len);
        return -ENOEXEC;
    }
    bz->init_size = boot_get32(d + HDR_INIT_SIZE);
    bz->pref_address = boot_get64(d + HDR_PREF_ADDRESS);
    bz->alignment = boot_get32(d + HDR_KERNEL_ALIGNMENT);
    bz->relocatable = d[HDR_RELOCATABLE] != 0;
    if (bz->relocatable && (bz->alignment == 0 || (bz->alignment & (bz->alignment - 1)))) {
        error_report("-kernel %s: kernel_alignment 0x%x is not a power of two", f->path,
                     bz->alignment);
        return -ENOEXEC;
    }
    if (bz->pref_address >= 4 * GiB) {
        error_report("-kernel %s: pref_address 0x%llx is above 4 GiB", f->path,
                     (unsigned long long)bz->pref_address);
        return -ENOEXEC;
    }
    return 0;
}

/* The kernel decompresses itself at its runtime address (pref_address, or
 * the load address rounded up to kernel_alignment if relocatable and
 * higher) and needs init_size bytes there: reserve load..runtime+init_size.
 * The runtime address is never below the load address (linux_load_bzimage
 * refuses a fixed one below 1 MiB). */
static uint64_t bzimage_span(const struct bzimage *bz, gpa_t load)
{
    gpa_t run;

    if (bz->relocatable)
        run = MAX(ALIGN_UP(load, (uint64_t)bz->alignment), bz->pref_address);
    else
        run = bz->pref_address ? bz->pref_address : load;
    return MAX(load + bz->pm_len, run + bz->init_size) - load;
}

int linux_load_bzimage(struct boot_plan *p)
{
    const struct boot_file *f = &p->kernel;
    struct bzimage bz;
    gpa_t load = BOOT_KERNEL_ADDR;
    uint32_t initrd_max;
    uint8_t *zp;
    int ret;

    ret = bzimage_check(f, &bz);
    if (ret < 0)
        return ret;
    LOG(LOG_BOOT, "boot: bzImage, protocol %u.%02u, %llu bytes setup, %llu bytes kernel, "
        "init_size 0x%x, pref_address 0x%llx%s\n", proto_major(bz.version),
        proto_minor(bz.version), (unsigned long long)bz.setup_size,
        (unsigned long long)bz.pm_len, bz.init_size, (unsigned long long)bz.pref_address,
        bz.relocatable ? ", relocatable" : "");

    zp = calloc(1, BP_SIZE);
    if (!zp)
        return -ENOMEM;
    ret = boot_place(p, f, "zero page", BOOT_ZEROPAGE, BP_SIZE, zp, BP_SIZE, false, zp);
    if (ret < 0)
        return ret;
    ret = boot_setup_long_mode(p);
    if (ret < 0)
        return ret;

    /* Loading a relocatable kernel where it will run spares it a copy. */
    if (bz.relocatable && bz.pref_address > BOOT_KERNEL_ADDR &&
        !(bz.pref_address & (bz.alignment - 1ULL)) &&
        boot_ram_usable(p->m, bz.pref_address, bzimage_span(&bz, bz.pref_address)))
        load = bz.pref_address;
    if (!bz.relocatable && bz.pref_address && bz.pref_address < BOOT_KERNEL_ADDR) {
        error_report("-kernel %s: kernel wants to run at 0x%llx, below 1 MiB", f->path,
                     (unsigned long long)bz.pref_address);
        return -ENOEXEC;
    }
    if (!boot_ram_usable(p->m, load, bzimage_span(&bz, load))) {
        error_report("-kernel %s: the kernel needs RAM at 0x%llx-0x%llx to start (init_size "
                     "0x%x); guest RAM is too small (-m %llu)", f->path,
                     (unsigned long long)load,
                     (unsigned long long)(load + bzimage_span(&bz, load) - 1), bz.init_size,
                     (unsigned long long)(p->m->ram_size / MiB));
        return -ERANGE;
    }
    ret = boot_place(p, f, "kernel", load, bzimage_span(&bz, load), bz.pm, bz.pm_len, false,
                     NULL);
    if (ret < 0)
        return ret;

    memcpy(zp + HDR_START, f->data + HDR_START, bz.hdr_end - HDR_START);
    boot_put16(zp + HDR_VID_MODE, VID_MODE_NORMAL);
    zp[HDR_TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
    zp[HDR_LOADFLAGS] |= CAN_USE_HEAP;
    boot_put16(zp + HDR_HEAP_END_PTR, 0xfe00 - 0x200);
    boot_put32(zp + HDR_CODE32_START, (uint32_t)load);
    boot_put32(zp + HDR_HARDWARE_SUBARCH, 0);
    boot_put64(zp + HDR_HARDWARE_SUBARCH_DATA, 0);
    /* A pointer in the image would be followed by the kernel: clear it. */
    boot_put64(zp + HDR_SETUP_DATA, 0);
    initrd_max = boot_get32(f->data + HDR_INITRD_ADDR_MAX);
    ret = linux_finish_zeropage(p, zp, boot_get32(f->data + HDR_CMDLINE_SIZE),
                                (initrd_max ? initrd_max : INITRD_ADDR_MAX_DEFAULT) + 1ULL);
    if (ret < 0)
        return ret;

    p->rip = load + STARTUP_64_OFFSET;
    p->gpr[R_ESI] = BOOT_ZEROPAGE;
    return 0;
}

uint8_t *linux_synthetic_zeropage(void)
{
    uint8_t *zp = calloc(1, BP_SIZE);

    if (!zp)
        return NULL;
    boot_put16(zp + HDR_BOOT_FLAG, BOOT_FLAG_VALUE);
    boot_put32(zp + HDR_MAGIC, HDR_MAGIC_VALUE);
    boot_put16(zp + HDR_VERSION, 0x20f);
    boot_put16(zp + HDR_VID_MODE, VID_MODE_NORMAL);
    zp[HDR_TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
    zp[HDR_LOADFLAGS] = LOADED_HIGH | CAN_USE_HEAP;
    boot_put32(zp + HDR_INITRD_ADDR_MAX, 0xffffffff);
    boot_put32(zp + HDR_CMDLINE_SIZE, (uint32_t)(BOOT_CMDLINE_MAX - 1));
    boot_put16(zp + HDR_XLOADFLAGS, XLF_KERNEL_64);
    return zp;
}
