/* The kernel loaders' shared machinery (boot/ only).
 *
 * A loader does not write guest RAM directly: it fills a boot plan, a list
 * of blobs (bytes to place at a guest-physical address) and the entry
 * register values.  boot_load() writes the plan into RAM and sets the boot
 * vCPU; boot_reset() replays the same plan after a machine reset.  Every
 * placement goes through boot_place(), which is where RAM bounds and
 * overlaps are checked, so no loader can write outside guest RAM. */
#ifndef VMON_BOOT_LOADER_H
#define VMON_BOOT_LOADER_H

#include <endian.h>
#include <string.h>

#include "boot/boot.h"

/* Fixed low-memory layout, documented in docs/boot.md.  Everything here is
 * below the EBDA (0x9fc00), in the conventional RAM the e820 map reports. */
#define BOOT_STACK_TOP 0x7000ULL     /* initial RSP/ESP, grows down */
#define BOOT_ZEROPAGE 0x7000ULL      /* Linux struct boot_params */
#define BOOT_GDT 0x8000ULL
#define BOOT_PML4 0x9000ULL
#define BOOT_PDPT 0xa000ULL
#define BOOT_PD_LOW 0xb000ULL        /* 4 page directories: the first 4 GiB */
#define BOOT_PD_LOW_COUNT 4
#define BOOT_CMDLINE 0x20000ULL      /* Linux command line */
#define BOOT_CMDLINE_MAX 0x10000ULL  /* bytes, including the NUL */
#define BOOT_PD_HIGH 0x30000ULL      /* page directories for RAM above 4 GiB */
#define BOOT_LOW_END 0x9f000ULL      /* our structures stay below this */
#define BOOT_MB_INFO 0x9000ULL       /* Multiboot information and its tables */
#define BOOT_KERNEL_ADDR 0x100000ULL /* default protected-mode kernel address */

/* The selectors the Linux boot protocol names (__BOOT_CS, __BOOT_DS); the
 * Multiboot GDT uses the same ones. */
#define BOOT_SEL_CODE 0x10
#define BOOT_SEL_DATA 0x18

/* A host file read whole into memory, kept for boot_reset(). */
struct boot_file {
    const char *flag;   /* "-kernel" or "-initrd", for error messages */
    char *path;
    uint8_t *data;
    uint64_t size;
};

struct boot_blob {
    char name[48];
    gpa_t gpa;
    uint64_t size;        /* bytes reserved in guest RAM */
    const uint8_t *data;  /* the first data_len bytes come from here */
    uint64_t data_len;
    bool zero_fill;       /* clear [data_len, size) when placing */
    uint8_t *owned;       /* buffer built by vmon, freed with the plan */
};

enum boot_entry_mode { BOOT_ENTRY_LONG64, BOOT_ENTRY_PROT32 };

struct boot_plan {
    struct machine *m;
    enum kernel_format format;
    struct boot_file kernel;
    struct boot_file *initrds;  /* Linux: at most one; Multiboot: modules */
    char **initrd_strings;      /* Multiboot module strings */
    int nr_initrds;
    struct boot_blob *blobs;
    int nr_blobs, cap_blobs;

    /* Entry state for the boot vCPU. */
    enum boot_entry_mode mode;
    uint64_t rip;
    uint64_t gpr[16];
    gpa_t cr3;
};

/* Little-endian field access into file images and boot structures. */
static inline uint16_t boot_get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}
static inline uint32_t boot_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}
static inline uint64_t boot_get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}
static inline void boot_put16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}
static inline void boot_put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}
static inline void boot_put64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

/* boot.c: files and placement. */
int boot_read_file(struct boot_file *f, const char *flag, const char *path, uint64_t max_size);
/* True if [gpa, gpa+size) is RAM in the e820 map (touching no reserved
 * entry) and addressable through machine_gpa_to_hva(). */
bool boot_ram_usable(struct machine *m, gpa_t gpa, uint64_t size);
/* Reserve [gpa, gpa+size) for `name` and remember what to write there.
 * `owned` (may be NULL) is a malloc'd buffer the plan frees; data may point
 * into it.  On error reports "<flag> <path>: ..." for `who` and returns
 * -ERANGE (outside RAM) or -EEXIST (overlap). */
int boot_place(struct boot_plan *p, const struct boot_file *who, const char *name,
               gpa_t gpa, uint64_t size, const void *data, uint64_t data_len,
               bool zero_fill, uint8_t *owned);
/* Find room for size bytes, aligned, inside [lo, hi), usable and not
 * overlapping anything placed: the highest such address if top_down, else
 * the lowest.  Returns 0 or -ENOSPC (nothing reported). */
int boot_find_free(struct boot_plan *p, uint64_t size, uint64_t align, gpa_t lo, gpa_t hi,
                   bool top_down, gpa_t *out);

/* entry.c: GDT, identity page tables and the entry register state.  The
 * setup functions place their tables and choose the CPU mode; the loader
 * then sets p->rip and the argument registers in p->gpr. */
int boot_setup_long_mode(struct boot_plan *p);
int boot_setup_prot32(struct boot_plan *p);
void boot_apply_entry_state(const struct boot_plan *p, struct cpu_state *s);

/* linux.c: bzImage, and the zero page shared with the ELF64 path. */
bool linux_is_bzimage(const struct boot_file *f);
int linux_load_bzimage(struct boot_plan *p);
/* Zero-page construction shared by bzImage and ELF64: command line,
 * initrd (placed below initrd_end) and e820 fields.  zp is 4 KiB. */
int linux_finish_zeropage(struct boot_plan *p, uint8_t *zp, uint64_t cmdline_max,
                          gpa_t initrd_end);

/* A zero page for an ELF vmlinux, which carries no setup header: only the
 * fields Linux reads on the 64-bit path (4 KiB, malloc'd). */
uint8_t *linux_synthetic_zeropage(void);

/* elf.c */
bool elf_is_elf(const struct boot_file *f);
int elf64_load(struct boot_plan *p);
/* Place the PT_LOAD segments of an ELF32 or ELF64 file wholly below
 * max_end; returns the physical entry point and the end of the image. */
int elf_load_segments(struct boot_plan *p, uint64_t max_end, uint64_t *entry,
                      uint64_t *image_end);

/* multiboot.c */
/* Offset of the first Multiboot header (magic and valid checksum, 4-byte
 * aligned, within the first 8 KiB), or -1.  *bad_off gets the offset of a
 * magic with a wrong checksum, or -1, for the error message. */
long multiboot_find_header(const struct boot_file *f, long *bad_off);
int multiboot_load(struct boot_plan *p, size_t header_off);

#endif
