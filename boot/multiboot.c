/* Multiboot v1 (Multiboot Specification 0.6.96): ELF kernels loaded by
 * their program headers (ELF32, and ELF64 below 4 GiB as GRUB allows) or
 * raw images described by the header's a.out-kludge address fields;
 * -initrd "a args,b" become modules.  Entry is in 32-bit protected mode
 * with paging off, EAX = 0x2BADB002 and EBX = the information structure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/loader.h"
#include "config/config.h"
#include "util/log.h"

#define MB_HEADER_MAGIC 0x1badb002
#define MB_BOOT_MAGIC 0x2badb002
#define MB_SEARCH_LEN 8192

/* Header flags.  Bits 0-15 are requirements: an unknown one must fail. */
#define MB_F_PAGE_ALIGN (1u << 0)
#define MB_F_MEMORY_INFO (1u << 1)
#define MB_F_VIDEO_MODE (1u << 2)   /* accepted: we simply offer no video info */
#define MB_F_AOUT_KLUDGE (1u << 16)
#define MB_F_REQUIRED_MASK 0xffffu
#define MB_F_SUPPORTED (MB_F_PAGE_ALIGN | MB_F_MEMORY_INFO | MB_F_VIDEO_MODE)

/* Header fields. */
#define MBH_FLAGS 4
#define MBH_CHECKSUM 8
#define MBH_HEADER_ADDR 12
#define MBH_LOAD_ADDR 16
#define MBH_LOAD_END_ADDR 20
#define MBH_BSS_END_ADDR 24
#define MBH_ENTRY_ADDR 28
#define MBH_LEN_BASIC 12
#define MBH_LEN_AOUT 32
#define MBH_LEN_VIDEO 48

/* Information structure. */
#define MBI_FLAGS 0
#define MBI_MEM_LOWER 4
#define MBI_MEM_UPPER 8
#define MBI_CMDLINE 16
#define MBI_MODS_COUNT 20
#define MBI_MODS_ADDR 24
#define MBI_MMAP_LENGTH 44
#define MBI_MMAP_ADDR 48
#define MBI_BOOT_LOADER_NAME 64
#define MBI_SIZE 0x80 /* 116 bytes used, rounded up */

#define MBI_F_MEM (1u << 0)
#define MBI_F_CMDLINE (1u << 2)
#define MBI_F_MODS (1u << 3)
#define MBI_F_MMAP (1u << 6)
#define MBI_F_LOADER_NAME (1u << 9)

#define MB_MMAP_ENTRY 24   /* size field + 20 bytes */
#define MB_MOD_ENTRY 16

#define MB_LOADER_NAME "vmon"

long multiboot_find_header(const struct boot_file *f, long *bad_off)
{
    uint64_t limit = MIN(f->size, (uint64_t)MB_SEARCH_LEN);

    *bad_off = -1;
    for (uint64_t off = 0; off + MBH_LEN_BASIC <= limit; off += 4) {
        const uint8_t *h = f->data + off;

        if (boot_get32(h) != MB_HEADER_MAGIC)
            continue;
        if ((uint32_t)(MB_HEADER_MAGIC + boot_get32(h + MBH_FLAGS) +
                       boot_get32(h + MBH_CHECKSUM)) == 0)
            return (long)off;
        if (*bad_off < 0)
            *bad_off = (long)off;
    }
    return -1;
}

/* End of the run of RAM starting at start (start itself if none). */
static uint64_t ram_run_end(struct machine *m, uint64_t start)
{
    uint64_t pos = start;
    bool grew = true;

    while (grew) {
        grew = false;
        for (int i = 0; i < m->nr_e820; i++) {
            const struct e820_entry *e = &m->e820[i];

            if (e->type == E820_RAM && e->addr <= pos && pos - e->addr < e->size) {
                pos = e->addr + e->size;
                grew = true;
            }
        }
    }
    return pos;
}

/* Split -initrd "file args,file2" into modules; the file name is the
 * string up to the first space, the module string is the whole entry. */
static int read_modules(struct boot_plan *p)
{
    const char *list = p->m->cfg->initrd;
    const char *s;
    int n = 1, ret;

    if (!list || !*list)
        return 0;
    for (s = list; *s; s++)
        n += *s == ',';
    p->initrds = calloc((size_t)n, sizeof(*p->initrds));
    p->initrd_strings = calloc((size_t)n, sizeof(*p->initrd_strings));
    if (!p->initrds || !p->initrd_strings)
        return -ENOMEM;
    s = list;
    for (int i = 0; i < n; i++) {
        size_t len = strcspn(s, ",");
        char *entry = strndup(s, len);
        char *path;

        if (!entry)
            return -ENOMEM;
        p->initrd_strings[i] = entry;
        p->nr_initrds = i + 1;
        path = strndup(entry, strcspn(entry, " "));
        if (!path)
            return -ENOMEM;
        if (!*path) {
            error_report("-initrd %s: module %d has no file name", list, i);
            free(path);
            return -EINVAL;
        }
        ret = boot_read_file(&p->initrds[i], "-initrd", path, p->m->ram_size);
        free(path);
        if (ret < 0)
            return ret;
        s += len + (s[len] == ',');
    }
    return 0;
}

/* Load per the header's address fields; the checks keep every address and
 * length inside the file and inside 32 bits. */
static int load_aout_kludge(struct boot_plan *p, size_t off, uint64_t *entry,
                            uint64_t *image_end)
{
    const struct boot_file *f = &p->kernel;
    const uint8_t *h = f->data + off;
    uint32_t header_addr = boot_get32(h + MBH_HEADER_ADDR);
    uint32_t load_addr = boot_get32(h + MBH_LOAD_ADDR);
    uint32_t load_end_addr = boot_get32(h + MBH_LOAD_END_ADDR);
    uint32_t bss_end_addr = boot_get32(h + MBH_BSS_END_ADDR);
    uint32_t entry_addr = boot_get32(h + MBH_ENTRY_ADDR);
    uint64_t file_off, load_len, mem_len;

    if (load_addr > header_addr || header_addr - load_addr > off) {
        error_report("-kernel %s: Multiboot load_addr 0x%x does not fit header_addr 0x%x "
                     "and the header's file offset 0x%zx", f->path, load_addr, header_addr,
                     off);
        return -ENOEXEC;
    }
    file_off = off - (header_addr - load_addr);
    if (load_end_addr == 0) {
        load_len = f->size - file_off;
    } else if (load_end_addr <= load_addr) {
        error_report("-kernel %s: Multiboot load_end_addr 0x%x is not above load_addr 0x%x",
                     f->path, load_end_addr, load_addr);
        return -ENOEXEC;
    } else {
        load_len = (uint64_t)load_end_addr - load_addr;
        if (load_len > f->size - file_off) {
            error_report("-kernel %s: Multiboot load_addr..load_end_addr (0x%llx bytes) runs "
                         "past the end of the file", f->path, (unsigned long long)load_len);
            return -ENOEXEC;
        }
    }
    mem_len = load_len;
    if (bss_end_addr) {
        if ((uint64_t)bss_end_addr < load_addr + load_len) {
            error_report("-kernel %s: Multiboot bss_end_addr 0x%x is below the end of the "
                         "loaded image 0x%llx", f->path, bss_end_addr,
                         (unsigned long long)(load_addr + load_len));
            return -ENOEXEC;
        }
        mem_len = (uint64_t)bss_end_addr - load_addr;
    }
    if (load_addr + mem_len > 4 * GiB) {
        error_report("-kernel %s: Multiboot image at 0x%x (0x%llx bytes) goes past 4 GiB",
                     f->path, load_addr, (unsigned long long)mem_len);
        return -ENOEXEC;
    }
    if (entry_addr < load_addr || entry_addr - load_addr >= mem_len) {
        error_report("-kernel %s: Multiboot entry_addr 0x%x is outside the image "
                     "0x%x-0x%llx", f->path, entry_addr, load_addr,
                     (unsigned long long)(load_addr + mem_len - 1));
        return -ENOEXEC;
    }
    *entry = entry_addr;
    *image_end = load_addr + mem_len;
    return boot_place(p, f, "kernel", load_addr, mem_len, f->data + file_off, load_len, true,
                      NULL);
}

static int place_modules(struct boot_plan *p, uint64_t image_end, uint8_t *mods)
{
    struct machine *m = p->m;
    gpa_t next = ALIGN_UP(image_end, 0x1000ULL);

    for (int i = 0; i < p->nr_initrds; i++) {
        const struct boot_file *f = &p->initrds[i];
        gpa_t addr = next;
        char name[32];
        int ret;

        if (f->size) {
            ret = boot_find_free(p, f->size, 0x1000, next, MIN(m->lowmem_size, 4 * GiB),
                                 false, &addr);
            if (ret < 0) {
                error_report("-initrd %s: module of %llu KiB does not fit in guest RAM below "
                             "4 GiB after the kernel (-m %llu)", f->path,
                             (unsigned long long)(f->size / KiB),
                             (unsigned long long)(m->ram_size / MiB));
                return -ENOSPC;
            }
            snprintf(name, sizeof(name), "module %d", i);
            ret = boot_place(p, f, name, addr, f->size, f->data, f->size, false, NULL);
            if (ret < 0)
                return ret;
        }
        boot_put32(mods + i * MB_MOD_ENTRY, (uint32_t)addr);
        boot_put32(mods + i * MB_MOD_ENTRY + 4, (uint32_t)(addr + f->size));
        next = ALIGN_UP(addr + f->size, 0x1000ULL);
    }
    return 0;
}

static char *build_cmdline(struct boot_plan *p)
{
    const char *append = p->m->cfg->append;
    char *s;

    if (asprintf(&s, "%s%s%s", p->kernel.path, append && *append ? " " : "",
                 append ? append : "") < 0)
        return NULL;
    return s;
}

int multiboot_load(struct boot_plan *p, size_t off)
{
    struct machine *m = p->m;
    const struct boot_file *f = &p->kernel;
    uint32_t flags = boot_get32(f->data + off + MBH_FLAGS);
    uint64_t hdr_len = MBH_LEN_BASIC, info_size, mmap_off, mods_off, str_off, entry, image_end;
    size_t cmdline_len;
    char *cmdline;
    uint8_t *info;
    int ret;

    if (flags & MB_F_REQUIRED_MASK & ~MB_F_SUPPORTED) {
        error_report("-kernel %s: Multiboot header requires features vmon lacks (flags "
                     "0x%08x)", f->path, flags);
        return -ENOEXEC;
    }
    if (flags & MB_F_AOUT_KLUDGE)
        hdr_len = MBH_LEN_AOUT;
    if (flags & MB_F_VIDEO_MODE)
        hdr_len = MBH_LEN_VIDEO;
    if (off + hdr_len > MIN(f->size, (uint64_t)MB_SEARCH_LEN)) {
        error_report("-kernel %s: the Multiboot header at 0x%zx is truncated (it must lie "
                     "within the first 8 KiB of the file)", f->path, off);
        return -ENOEXEC;
    }
    if (!(flags & MB_F_AOUT_KLUDGE) && !elf_is_elf(f)) {
        error_report("-kernel %s: Multiboot kernel is not ELF and has no load addresses "
                     "(flag bit 16)", f->path);
        return -ENOEXEC;
    }

    ret = read_modules(p);
    if (ret < 0)
        return ret;
    cmdline = build_cmdline(p);
    if (!cmdline)
        return -ENOMEM;
    cmdline_len = strlen(cmdline) + 1;

    /* Our structures go first, at fixed addresses, so that a kernel that
     * would overwrite them is refused with a message naming both. */
    ret = boot_setup_prot32(p);
    if (ret < 0)
        goto out;
    mmap_off = MBI_SIZE;
    mods_off = mmap_off + (uint64_t)m->nr_e820 * MB_MMAP_ENTRY;
    str_off = mods_off + (uint64_t)p->nr_initrds * MB_MOD_ENTRY;
    info_size = str_off + cmdline_len + sizeof(MB_LOADER_NAME);
    for (int i = 0; i < p->nr_initrds; i++)
        info_size += strlen(p->initrd_strings[i]) + 1;
    if (info_size > BOOT_LOW_END - BOOT_MB_INFO) {
        error_report("-kernel %s: Multiboot command line and module strings (%llu bytes) "
                     "are too long", f->path, (unsigned long long)info_size);
        ret = -E2BIG;
        goto out;
    }
    info = calloc(1, info_size);
    if (!info) {
        ret = -ENOMEM;
        goto out;
    }
    ret = boot_place(p, f, "Multiboot info", BOOT_MB_INFO, info_size, info, info_size, false,
                     info);
    if (ret < 0)
        goto out;

    if (flags & MB_F_AOUT_KLUDGE)
        ret = load_aout_kludge(p, off, &entry, &image_end);
    else
        ret = elf_load_segments(p, 4 * GiB, &entry, &image_end);
    if (ret < 0)
        goto out;
    if (entry >= 4 * GiB) {
        error_report("-kernel %s: Multiboot entry point 0x%llx is above 4 GiB", f->path,
                     (unsigned long long)entry);
        ret = -ENOEXEC;
        goto out;
    }
    ret = place_modules(p, image_end, info + mods_off);
    if (ret < 0)
        goto out;

    /* The information structure and what it points to. */
    {
        uint64_t sp = str_off;
        uint64_t mem_lower = MIN(ram_run_end(m, 0), 640 * KiB) / KiB;
        uint64_t mem_upper = (ram_run_end(m, 1 * MiB) - 1 * MiB) / KiB;

        boot_put32(info + MBI_FLAGS,
                   MBI_F_MEM | MBI_F_CMDLINE | MBI_F_MODS | MBI_F_MMAP | MBI_F_LOADER_NAME);
        boot_put32(info + MBI_MEM_LOWER, (uint32_t)mem_lower);
        boot_put32(info + MBI_MEM_UPPER, (uint32_t)MIN(mem_upper, (uint64_t)UINT32_MAX));
        for (int i = 0; i < m->nr_e820; i++) {
            uint8_t *e = info + mmap_off + (uint64_t)i * MB_MMAP_ENTRY;

            boot_put32(e, MB_MMAP_ENTRY - 4);
            boot_put64(e + 4, m->e820[i].addr);
            boot_put64(e + 12, m->e820[i].size);
            boot_put32(e + 20, m->e820[i].type);
        }
        boot_put32(info + MBI_MMAP_LENGTH, (uint32_t)(m->nr_e820 * MB_MMAP_ENTRY));
        boot_put32(info + MBI_MMAP_ADDR, (uint32_t)(BOOT_MB_INFO + mmap_off));
        boot_put32(info + MBI_MODS_COUNT, (uint32_t)p->nr_initrds);
        boot_put32(info + MBI_MODS_ADDR, (uint32_t)(BOOT_MB_INFO + mods_off));

        memcpy(info + sp, cmdline, cmdline_len);
        boot_put32(info + MBI_CMDLINE, (uint32_t)(BOOT_MB_INFO + sp));
        sp += cmdline_len;
        memcpy(info + sp, MB_LOADER_NAME, sizeof(MB_LOADER_NAME));
        boot_put32(info + MBI_BOOT_LOADER_NAME, (uint32_t)(BOOT_MB_INFO + sp));
        sp += sizeof(MB_LOADER_NAME);
        for (int i = 0; i < p->nr_initrds; i++) {
            size_t len = strlen(p->initrd_strings[i]) + 1;

            memcpy(info + sp, p->initrd_strings[i], len);
            boot_put32(info + mods_off + (uint64_t)i * MB_MOD_ENTRY + 8,
                       (uint32_t)(BOOT_MB_INFO + sp));
            sp += len;
        }
    }
    LOG(LOG_BOOT, "boot: Multiboot kernel, flags 0x%08x, %d module(s), cmdline \"%s\"\n",
        flags, p->nr_initrds, cmdline);
    p->rip = entry;
    p->gpr[R_EAX] = MB_BOOT_MAGIC;
    p->gpr[R_EBX] = BOOT_MB_INFO;
    ret = 0;
out:
    free(cmdline);
    return ret;
}
