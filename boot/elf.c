/* ELF kernels: the program-header walk shared by the ELF64 (vmlinux) path
 * and Multiboot ELF kernels, and the ELF64 loader itself, which enters the
 * kernel in 64-bit mode with a Linux zero page just like a bzImage. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "boot/loader.h"
#include "util/log.h"

#define ELF_MAX_PHDRS 256

/* One PT_LOAD segment, whatever the ELF class. */
struct elf_seg {
    uint64_t offset, vaddr, paddr, filesz, memsz;
};

struct elf_info {
    bool is64;
    uint16_t machine;
    uint64_t entry;
    struct elf_seg *segs;
    int nr_segs;
};

bool elf_is_elf(const struct boot_file *f)
{
    return f->size >= SELFMAG && !memcmp(f->data, ELFMAG, SELFMAG);
}

static bool elf_is64(const struct boot_file *f)
{
    return f->size > EI_CLASS && f->data[EI_CLASS] == ELFCLASS64;
}

/* Read one program header into class-neutral form. */
static void elf_read_phdr(const uint8_t *ph, bool is64, uint32_t *type, struct elf_seg *s)
{
    if (is64) {
        *type = boot_get32(ph + offsetof(Elf64_Phdr, p_type));
        s->offset = boot_get64(ph + offsetof(Elf64_Phdr, p_offset));
        s->vaddr = boot_get64(ph + offsetof(Elf64_Phdr, p_vaddr));
        s->paddr = boot_get64(ph + offsetof(Elf64_Phdr, p_paddr));
        s->filesz = boot_get64(ph + offsetof(Elf64_Phdr, p_filesz));
        s->memsz = boot_get64(ph + offsetof(Elf64_Phdr, p_memsz));
    } else {
        *type = boot_get32(ph + offsetof(Elf32_Phdr, p_type));
        s->offset = boot_get32(ph + offsetof(Elf32_Phdr, p_offset));
        s->vaddr = boot_get32(ph + offsetof(Elf32_Phdr, p_vaddr));
        s->paddr = boot_get32(ph + offsetof(Elf32_Phdr, p_paddr));
        s->filesz = boot_get32(ph + offsetof(Elf32_Phdr, p_filesz));
        s->memsz = boot_get32(ph + offsetof(Elf32_Phdr, p_memsz));
    }
}

static int elf_parse(const struct boot_file *f, struct elf_info *info)
{
    const uint8_t *d = f->data;
    uint64_t phoff, ehsize;
    unsigned phentsize, phnum, want_phent;

    memset(info, 0, sizeof(*info));
    if (f->size < EI_NIDENT || (d[EI_CLASS] != ELFCLASS32 && d[EI_CLASS] != ELFCLASS64)) {
        error_report("-kernel %s: unknown ELF class", f->path);
        return -ENOEXEC;
    }
    info->is64 = d[EI_CLASS] == ELFCLASS64;
    if (d[EI_DATA] != ELFDATA2LSB) {
        error_report("-kernel %s: not a little-endian ELF file", f->path);
        return -ENOEXEC;
    }
    ehsize = info->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
    if (f->size < ehsize) {
        error_report("-kernel %s: the ELF header is truncated", f->path);
        return -ENOEXEC;
    }
    if (info->is64) {
        info->machine = boot_get16(d + offsetof(Elf64_Ehdr, e_machine));
        info->entry = boot_get64(d + offsetof(Elf64_Ehdr, e_entry));
        phoff = boot_get64(d + offsetof(Elf64_Ehdr, e_phoff));
        phentsize = boot_get16(d + offsetof(Elf64_Ehdr, e_phentsize));
        phnum = boot_get16(d + offsetof(Elf64_Ehdr, e_phnum));
        want_phent = sizeof(Elf64_Phdr);
    } else {
        info->machine = boot_get16(d + offsetof(Elf32_Ehdr, e_machine));
        info->entry = boot_get32(d + offsetof(Elf32_Ehdr, e_entry));
        phoff = boot_get32(d + offsetof(Elf32_Ehdr, e_phoff));
        phentsize = boot_get16(d + offsetof(Elf32_Ehdr, e_phentsize));
        phnum = boot_get16(d + offsetof(Elf32_Ehdr, e_phnum));
        want_phent = sizeof(Elf32_Phdr);
    }
    if (info->machine != (info->is64 ? EM_X86_64 : EM_386)) {
        error_report("-kernel %s: ELF%d file for machine %u, not %s", f->path,
                     info->is64 ? 64 : 32, info->machine, info->is64 ? "x86-64" : "i386");
        return -ENOEXEC;
    }
    if (phnum == 0 || phnum > ELF_MAX_PHDRS || phentsize != want_phent) {
        error_report("-kernel %s: bad ELF program header table (%u entries of %u bytes)",
                     f->path, phnum, phentsize);
        return -ENOEXEC;
    }
    if (phoff > f->size || (uint64_t)phnum * phentsize > f->size - phoff) {
        error_report("-kernel %s: ELF program headers at 0x%llx lie past the end of the file",
                     f->path, (unsigned long long)phoff);
        return -ENOEXEC;
    }
    info->segs = calloc(phnum, sizeof(*info->segs));
    if (!info->segs)
        return -ENOMEM;
    for (unsigned i = 0; i < phnum; i++) {
        struct elf_seg s;
        uint32_t type;

        elf_read_phdr(d + phoff + (uint64_t)i * phentsize, info->is64, &type, &s);
        if (type != PT_LOAD || s.memsz == 0)
            continue;
        if (s.filesz > s.memsz) {
            error_report("-kernel %s: ELF segment %u has p_filesz 0x%llx > p_memsz 0x%llx",
                         f->path, i, (unsigned long long)s.filesz,
                         (unsigned long long)s.memsz);
            goto bad;
        }
        if (s.offset > f->size || s.filesz > f->size - s.offset) {
            error_report("-kernel %s: ELF segment %u data (offset 0x%llx, 0x%llx bytes) lies "
                         "past the end of the file", f->path, i,
                         (unsigned long long)s.offset, (unsigned long long)s.filesz);
            goto bad;
        }
        if (s.paddr + s.memsz < s.paddr || s.vaddr + s.memsz < s.vaddr) {
            error_report("-kernel %s: ELF segment %u wraps around the address space",
                         f->path, i);
            goto bad;
        }
        info->segs[info->nr_segs++] = s;
    }
    if (!info->nr_segs) {
        error_report("-kernel %s: the ELF file has no loadable segments", f->path);
        goto bad;
    }
    return 0;
bad:
    free(info->segs);
    info->segs = NULL;
    return -ENOEXEC;
}

/* Kernels linked to run high (Linux: 0xffffffff81000000) name a virtual
 * entry point; the segment that contains it says where that is in RAM. */
static int elf_entry_phys(const struct boot_file *f, const struct elf_info *info,
                          uint64_t *entry)
{
    for (int i = 0; i < info->nr_segs; i++) {
        const struct elf_seg *s = &info->segs[i];

        if (info->entry >= s->vaddr && info->entry - s->vaddr < s->memsz) {
            *entry = s->paddr + (info->entry - s->vaddr);
            return 0;
        }
    }
    for (int i = 0; i < info->nr_segs; i++) {
        const struct elf_seg *s = &info->segs[i];

        if (info->entry >= s->paddr && info->entry - s->paddr < s->memsz) {
            *entry = info->entry;
            return 0;
        }
    }
    error_report("-kernel %s: ELF entry point 0x%llx is in no loadable segment", f->path,
                 (unsigned long long)info->entry);
    return -ENOEXEC;
}

int elf_load_segments(struct boot_plan *p, uint64_t max_end, uint64_t *entry,
                      uint64_t *image_end)
{
    const struct boot_file *f = &p->kernel;
    struct elf_info info;
    int ret;

    ret = elf_parse(f, &info);
    if (ret < 0)
        return ret;
    *image_end = 0;
    for (int i = 0; i < info.nr_segs; i++) {
        const struct elf_seg *s = &info.segs[i];
        char name[32];

        snprintf(name, sizeof(name), "ELF segment %d", i);
        if (s->paddr + s->memsz > max_end) {
            error_report("-kernel %s: %s at 0x%llx-0x%llx must lie below 0x%llx", f->path,
                         name, (unsigned long long)s->paddr,
                         (unsigned long long)(s->paddr + s->memsz - 1),
                         (unsigned long long)max_end);
            ret = -ENOEXEC;
            goto out;
        }
        ret = boot_place(p, f, name, s->paddr, s->memsz, f->data + s->offset, s->filesz, true,
                         NULL);
        if (ret < 0)
            goto out;
        *image_end = MAX(*image_end, s->paddr + s->memsz);
    }
    ret = elf_entry_phys(f, &info, entry);
out:
    free(info.segs);
    return ret;
}

int elf64_load(struct boot_plan *p)
{
    const struct boot_file *f = &p->kernel;
    uint64_t entry, image_end;
    uint8_t *zp;
    int ret;

    if (!elf_is64(f)) {
        error_report("-kernel %s: not a bzImage, ELF64 vmlinux or Multiboot kernel "
                     "(an ELF32 kernel needs a Multiboot header)", f->path);
        return -ENOEXEC;
    }
    zp = linux_synthetic_zeropage();
    if (!zp)
        return -ENOMEM;
    ret = boot_place(p, f, "zero page", BOOT_ZEROPAGE, 0x1000, zp, 0x1000, false, zp);
    if (ret < 0)
        return ret;
    ret = boot_setup_long_mode(p);
    if (ret < 0)
        return ret;
    ret = elf_load_segments(p, UINT64_MAX, &entry, &image_end);
    if (ret < 0)
        return ret;
    ret = linux_finish_zeropage(p, zp, BOOT_CMDLINE_MAX - 1, 4 * GiB);
    if (ret < 0)
        return ret;
    LOG(LOG_BOOT, "boot: ELF64 kernel, image ends at 0x%llx\n", (unsigned long long)image_end);
    p->rip = entry;
    p->gpr[R_ESI] = BOOT_ZEROPAGE;
    return 0;
}
