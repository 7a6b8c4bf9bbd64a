/* ELF64 vmlinux loading: segments at their physical addresses, the entry
 * point translated from its virtual address, a synthetic zero page, and
 * refusal of malformed files. */
#include <elf.h>

#include "test_boot_helpers.h"

#define KVIRT 0xffffffff81000000ULL
#define KPHYS 0x1000000ULL
#define TEXT_SIZE 0x3000
#define DATA_FILESZ 0x100
#define DATA_MEMSZ 0x2000
#define MAX_PH 4

/* An ELF64 vmlinux look-alike: text, data+bss and a note, linked high. */
struct elf_img {
    Elf64_Ehdr eh;
    Elf64_Phdr ph[MAX_PH];
    uint8_t pad[0x1000 - sizeof(Elf64_Ehdr) - MAX_PH * sizeof(Elf64_Phdr)];
    uint8_t text[TEXT_SIZE];
    uint8_t data[DATA_FILESZ];
};

static struct elf_img *make_elf(void)
{
    struct elf_img *e = calloc(1, sizeof(*e));

    assert_non_null(e);
    memcpy(e->eh.e_ident, ELFMAG, SELFMAG);
    e->eh.e_ident[EI_CLASS] = ELFCLASS64;
    e->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    e->eh.e_ident[EI_VERSION] = EV_CURRENT;
    e->eh.e_type = ET_EXEC;
    e->eh.e_machine = EM_X86_64;
    e->eh.e_version = EV_CURRENT;
    e->eh.e_entry = KVIRT + 0x100;
    e->eh.e_phoff = offsetof(struct elf_img, ph);
    e->eh.e_ehsize = sizeof(Elf64_Ehdr);
    e->eh.e_phentsize = sizeof(Elf64_Phdr);
    e->eh.e_phnum = 3;
    e->ph[0] = (Elf64_Phdr){
        .p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = offsetof(struct elf_img, text),
        .p_vaddr = KVIRT, .p_paddr = KPHYS, .p_filesz = TEXT_SIZE, .p_memsz = TEXT_SIZE,
        .p_align = 0x1000,
    };
    e->ph[1] = (Elf64_Phdr){
        .p_type = PT_LOAD, .p_flags = PF_R | PF_W, .p_offset = offsetof(struct elf_img, data),
        .p_vaddr = KVIRT + 0x4000, .p_paddr = KPHYS + 0x4000, .p_filesz = DATA_FILESZ,
        .p_memsz = DATA_MEMSZ, .p_align = 0x1000,
    };
    e->ph[2] = (Elf64_Phdr){
        .p_type = PT_NOTE, .p_offset = 0x7fffffff, .p_filesz = 0x10, .p_memsz = 0,
    };
    for (size_t i = 0; i < TEXT_SIZE; i++)
        e->text[i] = (uint8_t)(i * 13 + 1);
    memset(e->data, 0x77, DATA_FILESZ);
    return e;
}

static void test_vmlinux_boots(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);
    struct elf_img *e = make_elf();
    uint32_t rd;

    /* Stale bytes where the bss goes: the loader must clear them. */
    memset(fx_ram(fx, KPHYS, 0x8000), 0xaa, 0x8000);
    fx->cfg.kernel = fx_file(fx, "vmlinux", e, sizeof(*e));
    fx->cfg.initrd = fx_file(fx, "initrd", "INITRD", 6);
    fx->cfg.append = "console=ttyS0";
    assert_int_equal(boot_load(&fx->m), 0);

    fx_check_long_mode(fx, KPHYS + 0x100, 0x7000);
    fx_check_untouched(fx);
    assert_memory_equal(fx_ram(fx, KPHYS, TEXT_SIZE), e->text, TEXT_SIZE);
    assert_memory_equal(fx_ram(fx, KPHYS + 0x4000, DATA_FILESZ), e->data, DATA_FILESZ);
    for (uint64_t a = KPHYS + 0x4000 + DATA_FILESZ; a < KPHYS + 0x4000 + DATA_MEMSZ; a++)
        assert_int_equal(*fx_ram(fx, a, 1), 0);
    /* Between the segments nothing was written. */
    assert_int_equal(*fx_ram(fx, KPHYS + 0x3000, 1), 0xaa);
    assert_int_equal(*fx_ram(fx, KPHYS + 0x6000, 1), 0xaa);

    /* A zero page Linux accepts without a setup header in the image. */
    assert_int_equal(fx_r16(fx, 0x7000 + 0x1fe), 0xaa55);
    assert_int_equal(fx_r32(fx, 0x7000 + 0x202), 0x53726448);
    assert_int_equal(fx_r16(fx, 0x7000 + 0x206), 0x020f);
    assert_int_equal(*fx_ram(fx, 0x7000 + 0x210, 1), 0xff);
    assert_int_equal(fx_r32(fx, 0x7000 + 0x228), 0x20000);
    assert_string_equal((char *)fx_ram(fx, 0x20000, 14), "console=ttyS0");
    rd = fx_r32(fx, 0x7000 + 0x218);
    assert_int_equal(rd, 64 * MiB - 0x1000);
    assert_int_equal(fx_r32(fx, 0x7000 + 0x21c), 6);
    assert_memory_equal(fx_ram(fx, rd, 6), "INITRD", 6);
    assert_int_equal(*fx_ram(fx, 0x7000 + 0x1e8, 1), fx->m.nr_e820);
    assert_int_equal(fx_r64(fx, 0x7000 + 0x2d0 + 8), fx->m.e820[0].size);
    free(e);
    fx_free(fx);
}

/* With RAM above 4 GiB, the identity map reaches all of it. */
static void test_identity_map_covers_high_ram(void **st)
{
    struct boot_fx *fx = fx_new(6 * GiB);
    struct elf_img *e = make_elf();
    uint64_t cr3;

    fx->cfg.kernel = fx_file(fx, "vmlinux", e, sizeof(*e));
    assert_int_equal(boot_load(&fx->m), 0);
    cr3 = fx->bsp.state.cr3;
    assert_int_equal(fx_walk(fx, cr3, 0), 0);
    assert_int_equal(fx_walk(fx, cr3, 3 * GiB - 1), 3 * GiB - 1);
    assert_int_equal(fx_walk(fx, cr3, 4 * GiB + 12345), 4 * GiB + 12345);
    assert_int_equal(fx_walk(fx, cr3, 7 * GiB - 1), 7 * GiB - 1);
    free(e);
    fx_free(fx);
}

static void expect_refused(struct elf_img *e, size_t len)
{
    struct boot_fx *fx = fx_new(64 * MiB);

    fx->cfg.kernel = fx_file(fx, "vmlinux", e, len);
    assert_true(boot_load(&fx->m) < 0);
    fx_check_not_started(fx);
    free(e);
    fx_free(fx);
}

static void test_malformed_elf_refused(void **st)
{
    struct elf_img *e;

    e = make_elf();
    expect_refused(e, 40);                       /* truncated ELF header */
    e = make_elf();
    e->eh.e_phoff = sizeof(*e) - 10;             /* program headers past EOF */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->eh.e_phoff = UINT64_MAX - 8;              /* ... and offset overflow */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->eh.e_phnum = 0;
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->eh.e_phentsize = 20;
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[1].p_offset = sizeof(*e) - 0x10;       /* segment data past EOF */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[1].p_offset = UINT64_MAX - 0x10;
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[1].p_filesz = DATA_MEMSZ + 1;          /* filesz > memsz */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[1].p_paddr = KPHYS + 0x2000;           /* overlaps the text segment */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[1].p_paddr = 1 * GiB;                  /* beyond 64 MiB of RAM */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[1].p_paddr = 0xa0000;                  /* the legacy hole is not RAM */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[1].p_paddr = UINT64_MAX - 0x100;       /* wraps */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[0].p_paddr = 0x8000;                   /* on top of the GDT */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->eh.e_entry = 0x12345678;                  /* in no segment */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->eh.e_machine = EM_AARCH64;
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->eh.e_ident[EI_DATA] = ELFDATA2MSB;
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->eh.e_ident[EI_CLASS] = ELFCLASS32;        /* ELF32 without Multiboot header */
    expect_refused(e, sizeof(*e));
    e = make_elf();
    e->ph[0].p_type = PT_NOTE;                   /* nothing to load but data */
    e->ph[1].p_type = PT_NOTE;
    expect_refused(e, sizeof(*e));
}

static void test_cmdline_too_long_for_area(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);
    struct elf_img *e = make_elf();
    char *line = malloc(70000);

    memset(line, 'a', 69999);
    line[69999] = 0;
    fx->cfg.kernel = fx_file(fx, "vmlinux", e, sizeof(*e));
    fx->cfg.append = line;
    assert_int_equal(boot_load(&fx->m), -E2BIG);
    fx_check_not_started(fx);
    free(line);
    free(e);
    fx_free(fx);
}

static void test_corrupted_headers(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);
    struct elf_img *e = make_elf();
    size_t hdrs = sizeof(Elf64_Ehdr) + 3 * sizeof(Elf64_Phdr);
    int ok;

    ok = fx_mutation_run(fx, (uint8_t *)e, sizeof(*e), 0, hdrs, 400, 0x2545f4914f6cdd1dULL);
    assert_true(ok > 0 && ok < 400);
    free(e);
    fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmlinux_boots),
        cmocka_unit_test(test_identity_map_covers_high_ram),
        cmocka_unit_test(test_malformed_elf_refused),
        cmocka_unit_test(test_cmdline_too_long_for_area),
        cmocka_unit_test(test_corrupted_headers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
