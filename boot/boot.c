/* Kernel loading: read the image, recognise its format, let the format's
 * loader build a boot plan, then write the plan into guest RAM and set the
 * boot vCPU.  The plan (with the file contents) is kept so that a machine
 * reset places exactly the same bytes again without touching the disk. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot/loader.h"
#include "config/config.h"
#include "util/log.h"

/* vmon runs one machine per process; its plan lives until the next
 * boot_load() so that boot_reset() can replay it. */
static struct boot_plan *boot_current;

static const char *const kernel_format_names[] = {
    [KERNEL_BZIMAGE] = "Linux bzImage",
    [KERNEL_ELF64] = "ELF64",
    [KERNEL_MULTIBOOT] = "Multiboot",
};

static void boot_file_free(struct boot_file *f)
{
    free(f->path);
    free(f->data);
    f->path = NULL;
    f->data = NULL;
    f->size = 0;
}

static void boot_plan_free(struct boot_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nr_blobs; i++)
        free(p->blobs[i].owned);
    free(p->blobs);
    for (int i = 0; i < p->nr_initrds; i++) {
        boot_file_free(&p->initrds[i]);
        if (p->initrd_strings)
            free(p->initrd_strings[i]);
    }
    free(p->initrds);
    free(p->initrd_strings);
    boot_file_free(&p->kernel);
    free(p);
}

int boot_read_file(struct boot_file *f, const char *flag, const char *path, uint64_t max_size)
{
    struct stat st;
    uint64_t done = 0;
    int fd, err;

    memset(f, 0, sizeof(*f));
    f->flag = flag;
    f->path = strdup(path);
    if (!f->path)
        return -ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        error_report("%s %s: %s", flag, path, strerror(err));
        return -err;
    }
    if (fstat(fd, &st) < 0) {
        err = errno;
        error_report("%s %s: %s", flag, path, strerror(err));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err = EINVAL;
        error_report("%s %s: not a regular file", flag, path);
        goto fail;
    }
    if ((uint64_t)st.st_size > max_size) {
        err = EFBIG;
        error_report("%s %s: the file (%llu MiB) is larger than guest RAM (%llu MiB)", flag,
                     path, (unsigned long long)st.st_size / MiB,
                     (unsigned long long)max_size / MiB);
        goto fail;
    }
    f->data = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!f->data) {
        err = ENOMEM;
        error_report("%s %s: %s", flag, path, strerror(err));
        goto fail;
    }
    while (done < (uint64_t)st.st_size) {
        ssize_t n = read(fd, f->data + done, (uint64_t)st.st_size - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : EIO;
            error_report("%s %s: %s", flag, path,
                         n < 0 ? strerror(err) : "file shrank while being read");
            goto fail;
        }
        done += (uint64_t)n;
    }
    f->size = done;
    close(fd);
    return 0;
fail:
    close(fd);
    free(f->data);
    f->data = NULL;
    return -err;
}

/* Is [a, a+alen) overlapping [b, b+blen)?  Lengths are nonzero and the
 * ranges do not wrap (checked where they are created). */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static uint64_t e820_end(const struct e820_entry *e)
{
    return e->addr + e->size < e->addr ? UINT64_MAX : e->addr + e->size;
}

bool boot_ram_usable(struct machine *m, gpa_t gpa, uint64_t size)
{
    uint64_t end, pos;

    if (size == 0 || gpa + size < gpa)
        return false;
    end = gpa + size;
    for (int i = 0; i < m->nr_e820; i++) {
        const struct e820_entry *e = &m->e820[i];

        if (e->type != E820_RAM && e->size && gpa < e820_end(e) && e->addr < end)
            return false;
    }
    /* RAM may be reported as several adjacent entries: walk the chain. */
    pos = gpa;
    while (pos < end) {
        uint64_t next = pos;

        for (int i = 0; i < m->nr_e820; i++) {
            const struct e820_entry *e = &m->e820[i];

            if (e->type == E820_RAM && e->addr <= pos && pos < e820_end(e))
                next = MAX(next, e820_end(e));
        }
        if (next == pos)
            return false;
        pos = next;
    }
    return machine_gpa_to_hva(m, gpa, size) != NULL;
}

static const struct boot_blob *blob_overlapping(const struct boot_plan *p, gpa_t gpa,
                                                uint64_t size)
{
    for (int i = 0; i < p->nr_blobs; i++)
        if (ranges_overlap(gpa, size, p->blobs[i].gpa, p->blobs[i].size))
            return &p->blobs[i];
    return NULL;
}

int boot_place(struct boot_plan *p, const struct boot_file *who, const char *name,
               gpa_t gpa, uint64_t size, const void *data, uint64_t data_len,
               bool zero_fill, uint8_t *owned)
{
    const struct boot_blob *other;
    struct boot_blob *b;

    if (size == 0 || data_len > size || gpa + size < gpa) {
        error_report("%s %s: %s at 0x%llx has an invalid size (0x%llx, 0x%llx bytes of data)",
                     who->flag, who->path, name, (unsigned long long)gpa,
                     (unsigned long long)size, (unsigned long long)data_len);
        free(owned);
        return -EINVAL;
    }
    if (!boot_ram_usable(p->m, gpa, size)) {
        error_report("%s %s: %s at 0x%llx-0x%llx is not in usable guest RAM (-m %llu)", who->flag,
                     who->path, name, (unsigned long long)gpa,
                     (unsigned long long)(gpa + size - 1),
                     (unsigned long long)(p->m->ram_size / MiB));
        free(owned);
        return -ERANGE;
    }
    other = blob_overlapping(p, gpa, size);
    if (other) {
        error_report("%s %s: %s at 0x%llx-0x%llx overlaps the %s at 0x%llx-0x%llx", who->flag,
                     who->path, name, (unsigned long long)gpa,
                     (unsigned long long)(gpa + size - 1), other->name,
                     (unsigned long long)other->gpa,
                     (unsigned long long)(other->gpa + other->size - 1));
        free(owned);
        return -EEXIST;
    }
    if (p->nr_blobs == p->cap_blobs) {
        int cap = p->cap_blobs ? 2 * p->cap_blobs : 16;
        struct boot_blob *nb = realloc(p->blobs, (size_t)cap * sizeof(*nb));

        if (!nb) {
            free(owned);
            return -ENOMEM;
        }
        p->blobs = nb;
        p->cap_blobs = cap;
    }
    b = &p->blobs[p->nr_blobs++];
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->gpa = gpa;
    b->size = size;
    b->data = data;
    b->data_len = data_len;
    b->zero_fill = zero_fill;
    b->owned = owned;
    LOG(LOG_BOOT, "boot: %-16s 0x%09llx-0x%09llx (%llu bytes from %s)\n", name,
        (unsigned long long)gpa, (unsigned long long)(gpa + size - 1),
        (unsigned long long)data_len, owned ? "vmon" : who->path);
    return 0;
}

static bool range_free(struct boot_plan *p, gpa_t gpa, uint64_t size)
{
    return boot_ram_usable(p->m, gpa, size) && !blob_overlapping(p, gpa, size);
}

/* The best placement touches a boundary: the search window's edge, the edge
 * of RAM or of a reserved range, or a blob already placed.  Trying every
 * boundary (aligned) therefore finds the highest / lowest fit. */
static void try_candidate(struct boot_plan *p, uint64_t bound, uint64_t size, uint64_t align,
                          gpa_t lo, gpa_t hi, bool top_down, bool *found, gpa_t *best)
{
    gpa_t g;

    if (top_down) {
        bound = MIN(bound, hi);
        if (bound < size || bound - size < lo)
            return;
        g = ALIGN_DOWN(bound - size, align);
        if (g < lo)
            return;
    } else {
        bound = MAX(bound, lo);
        if (bound > UINT64_MAX - align)
            return;
        g = ALIGN_UP(bound, align);
        if (g > hi || hi - g < size)
            return;
    }
    if (*found && (top_down ? g <= *best : g >= *best))
        return;
    if (range_free(p, g, size)) {
        *found = true;
        *best = g;
    }
}

int boot_find_free(struct boot_plan *p, uint64_t size, uint64_t align, gpa_t lo, gpa_t hi,
                   bool top_down, gpa_t *out)
{
    struct machine *m = p->m;
    bool found = false;
    gpa_t best = 0;

    if (size == 0 || hi <= lo || size > hi - lo || !align || (align & (align - 1)))
        return -ENOSPC;
#define TRY(bound) try_candidate(p, (bound), size, align, lo, hi, top_down, &found, &best)
    TRY(top_down ? hi : lo);
    TRY(top_down ? m->lowmem_size : 0);
    TRY(top_down ? MACHINE_HIGHMEM_BASE + m->highmem_size : MACHINE_HIGHMEM_BASE);
    for (int i = 0; i < m->nr_e820; i++) {
        const struct e820_entry *e = &m->e820[i];
        bool ram = e->type == E820_RAM;

        /* Going down, a fit ends at the end of RAM or the start of a hole;
         * going up, it starts at the start of RAM or the end of a hole. */
        TRY(top_down == ram ? e820_end(e) : e->addr);
    }
    for (int i = 0; i < p->nr_blobs; i++)
        TRY(top_down ? p->blobs[i].gpa : p->blobs[i].gpa + p->blobs[i].size);
#undef TRY
    if (!found)
        return -ENOSPC;
    *out = best;
    return 0;
}

static int boot_plan_write(struct boot_plan *p)
{
    for (int i = 0; i < p->nr_blobs; i++) {
        const struct boot_blob *b = &p->blobs[i];
        uint8_t *hva = machine_gpa_to_hva(p->m, b->gpa, b->size);

        if (!hva)
            return -EFAULT;  /* checked by boot_place(); RAM cannot shrink */
        if (b->data_len)
            memcpy(hva, b->data, b->data_len);
        if (b->zero_fill)
            memset(hva + b->data_len, 0, b->size - b->data_len);
    }
    return 0;
}

static int boot_plan_start(struct boot_plan *p)
{
    struct cpu_state *s = &p->m->vcpus[0]->state;
    int ret = boot_plan_write(p);

    if (ret < 0) {
        error_report("-kernel %s: boot images no longer fit in guest RAM", p->kernel.path);
        return ret;
    }
    boot_apply_entry_state(p, s);
    LOG(LOG_BOOT,
        "boot: %s entry at 0x%llx in %s mode, rax=0x%llx rbx=0x%llx rsi=0x%llx cr3=0x%llx\n",
        kernel_format_names[p->format], (unsigned long long)p->rip,
        p->mode == BOOT_ENTRY_LONG64 ? "64-bit" : "32-bit protected",
        (unsigned long long)p->gpr[R_EAX], (unsigned long long)p->gpr[R_EBX],
        (unsigned long long)p->gpr[R_ESI], (unsigned long long)p->cr3);
    return 0;
}

static int boot_detect_and_load(struct boot_plan *p)
{
    long mb_off, mb_bad;

    if (linux_is_bzimage(&p->kernel)) {
        p->format = KERNEL_BZIMAGE;
        return linux_load_bzimage(p);
    }
    mb_off = multiboot_find_header(&p->kernel, &mb_bad);
    if (mb_off >= 0) {
        p->format = KERNEL_MULTIBOOT;
        return multiboot_load(p, (size_t)mb_off);
    }
    if (elf_is_elf(&p->kernel)) {
        p->format = KERNEL_ELF64;
        return elf64_load(p);
    }
    if (mb_bad >= 0)
        error_report("-kernel %s: Multiboot header at offset 0x%lx has a bad checksum",
                     p->kernel.path, mb_bad);
    else
        error_report("-kernel %s: not a bzImage, ELF64 vmlinux or Multiboot kernel",
                     p->kernel.path);
    return -ENOEXEC;
}

int boot_load(struct machine *m)
{
    const struct vm_config *cfg = m->cfg;
    struct boot_plan *p;
    int ret;

    boot_plan_free(boot_current);
    boot_current = NULL;
    if (!cfg || !cfg->kernel) {
        error_report("no kernel to boot: give one with -kernel");
        return -EINVAL;
    }
    if (m->nr_vcpus < 1 || !m->vcpus[0]) {
        error_report("-kernel %s: the machine has no boot vCPU", cfg->kernel);
        return -EINVAL;
    }
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->m = m;
    ret = boot_read_file(&p->kernel, "-kernel", cfg->kernel, m->ram_size);
    if (ret < 0)
        goto fail;
    ret = boot_detect_and_load(p);
    if (ret < 0)
        goto fail;
    ret = boot_plan_start(p);
    if (ret < 0)
        goto fail;
    boot_current = p;
    return 0;
fail:
    boot_plan_free(p);
    return ret;
}

int boot_reset(struct machine *m)
{
    if (!boot_current || boot_current->m != m) {
        error_report("machine reset: no kernel was loaded to restart");
        return -EINVAL;
    }
    LOG(LOG_BOOT, "boot: placing %s again after reset\n", boot_current->kernel.path);
    return boot_plan_start(boot_current);
}
