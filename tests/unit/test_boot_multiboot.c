/* Multiboot v1 loading: ELF32 and a.out-kludge kernels, the information
 * structure (memory, mmap, command line, modules, loader name), the 32-bit
 * entry state, and refusal of malformed headers. */
#include <elf.h>

#include "test_boot_helpers.h"

#define MB_MAGIC 0x1badb002u
#define MB_PAGE_ALIGN (1u << 0)
#define MB_MEMINFO (1u << 1)
#define MB_AOUT (1u << 16)
#define KPHYS 0x100000u
#define TEXT_SIZE 0x2000
#define BSS_SIZE 0x3000

/* An ELF32 Multiboot kernel: the header starts the text segment. */
struct mb_elf {
    Elf32_Ehdr eh;
    Elf32_Phdr ph[2];
    uint8_t pad[0x1000 - sizeof(Elf32_Ehdr) - 2 * sizeof(Elf32_Phdr)];
    uint8_t text[TEXT_SIZE];
};

static void put_mb_header(uint8_t *h, uint32_t flags)
{
    put32(h, MB_MAGIC);
    put32(h + 4, flags);
    put32(h + 8, (uint32_t)-(MB_MAGIC + flags));
}

static struct mb_elf *make_mb_elf(void)
{
    struct mb_elf *e = calloc(1, sizeof(*e));

    assert_non_null(e);
    memcpy(e->eh.e_ident, ELFMAG, SELFMAG);
    e->eh.e_ident[EI_CLASS] = ELFCLASS32;
    e->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    e->eh.e_ident[EI_VERSION] = EV_CURRENT;
    e->eh.e_type = ET_EXEC;
    e->eh.e_machine = EM_386;
    e->eh.e_version = EV_CURRENT;
    e->eh.e_entry = KPHYS + 0x20;
    e->eh.e_phoff = offsetof(struct mb_elf, ph);
    e->eh.e_ehsize = sizeof(Elf32_Ehdr);
    e->eh.e_phentsize = sizeof(Elf32_Phdr);
    e->eh.e_phnum = 1;
    e->ph[0] = (Elf32_Phdr){
        .p_type = PT_LOAD, .p_offset = offsetof(struct mb_elf, text), .p_vaddr = KPHYS,
        .p_paddr = KPHYS, .p_filesz = TEXT_SIZE, .p_memsz = TEXT_SIZE + BSS_SIZE,
        .p_flags = PF_R | PF_W | PF_X, .p_align = 0x1000,
    };
    for (size_t i = 0; i < TEXT_SIZE; i++)
        e->text[i] = (uint8_t)(i * 5 + 2);
    put_mb_header(e->text, MB_PAGE_ALIGN | MB_MEMINFO);
    return e;
}

static void check_prot32(struct boot_fx *fx, uint32_t entry)
{
    const struct cpu_state *s = &fx->bsp.state;

    assert_int_equal(s->rip, entry);
    assert_int_equal(s->gpr[R_EAX], 0x2badb002);
    assert_int_equal(s->gpr[R_EBX], 0x9000);
    assert_int_equal(s->rflags, 2);
    assert_int_equal(s->cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE);
    assert_int_equal(s->efer, 0);
    assert_int_equal(s->cr4, 0);
    assert_int_equal(s->seg[S_CS].selector, 0x10);
    assert_int_equal(s->seg[S_CS].db, 1);
    assert_int_equal(s->seg[S_CS].l, 0);
    assert_int_equal(s->seg[S_CS].limit, 0xffffffff);
    assert_int_equal(s->seg[S_CS].base, 0);
    for (int i = 0; i < S_NR; i++) {
        if (i == S_CS)
            continue;
        assert_int_equal(s->seg[i].selector, 0x18);
        assert_int_equal(s->seg[i].limit, 0xffffffff);
        assert_int_equal(s->seg[i].db, 1);
    }
    /* A real GDT: the kernel can reload its segment registers from it. */
    assert_int_equal(fx_r64(fx, s->gdt.base + 0x10), 0x00cf9b000000ffffULL);
    assert_int_equal(fx_r64(fx, s->gdt.base + 0x18), 0x00cf93000000ffffULL);
    assert_true(s->gdt.limit >= 0x1f);
    assert_int_equal(s->mp_state, MP_RUNNABLE);
    fx_check_untouched(fx);
}

static void test_elf32_kernel_with_modules(void **st)
{
    struct boot_fx *fx = fx_new(32 * MiB);
    struct mb_elf *e = make_mb_elf();
    static uint8_t mod1[5000], mod2[3];
    const char *kpath, *m1, *m2;
    char expect[300];
    uint32_t info = 0x9000, mods, mmap, prev_end = 0;

    memset(mod1, 0x11, sizeof(mod1));
    memset(mod2, 0x22, sizeof(mod2));
    memset(fx_ram(fx, KPHYS, 0x10000), 0xaa, 0x10000);
    kpath = fx_file(fx, "kernel.elf", e, sizeof(*e));
    m1 = fx_file(fx, "mod1", mod1, sizeof(mod1));
    m2 = fx_file(fx, "mod2", mod2, sizeof(mod2));
    snprintf(fx->initrd_list, sizeof(fx->initrd_list), "%s arg1 arg2,%s", m1, m2);
    fx->cfg.kernel = kpath;
    fx->cfg.initrd = fx->initrd_list;
    fx->cfg.append = "hello world";
    assert_int_equal(boot_load(&fx->m), 0);
    check_prot32(fx, KPHYS + 0x20);

    assert_memory_equal(fx_ram(fx, KPHYS, TEXT_SIZE), e->text, TEXT_SIZE);
    for (uint32_t a = KPHYS + TEXT_SIZE; a < KPHYS + TEXT_SIZE + BSS_SIZE; a++)
        assert_int_equal(*fx_ram(fx, a, 1), 0);

    assert_int_equal(fx_r32(fx, info), (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9));
    assert_int_equal(fx_r32(fx, info + 4), 0x9fc00 / 1024);          /* mem_lower */
    assert_int_equal(fx_r32(fx, info + 8), (32 * MiB - MiB) / 1024); /* mem_upper */
    snprintf(expect, sizeof(expect), "%s hello world", kpath);
    assert_string_equal((char *)fx_ram(fx, fx_r32(fx, info + 16), 1), expect);
    assert_string_equal((char *)fx_ram(fx, fx_r32(fx, info + 64), 1), "vmon");

    /* Modules: page aligned, in order, after the kernel's bss, intact. */
    assert_int_equal(fx_r32(fx, info + 20), 2);
    mods = fx_r32(fx, info + 24);
    for (int i = 0; i < 2; i++) {
        uint32_t start = fx_r32(fx, mods + 16 * i), end = fx_r32(fx, mods + 16 * i + 4);
        const uint8_t *want = i ? mod2 : mod1;
        size_t len = i ? sizeof(mod2) : sizeof(mod1);

        assert_int_equal(start & 0xfff, 0);
        assert_true(start >= KPHYS + TEXT_SIZE + BSS_SIZE);
        assert_true(start >= prev_end);
        assert_int_equal(end - start, len);
        assert_memory_equal(fx_ram(fx, start, len), want, len);
        prev_end = end;
    }
    snprintf(expect, sizeof(expect), "%s arg1 arg2", m1);
    assert_string_equal((char *)fx_ram(fx, fx_r32(fx, mods + 8), 1), expect);
    assert_string_equal((char *)fx_ram(fx, fx_r32(fx, mods + 24), 1), m2);

    /* The memory map is the machine's e820, entry for entry. */
    assert_int_equal(fx_r32(fx, info + 44), 24 * fx->m.nr_e820);
    mmap = fx_r32(fx, info + 48);
    for (int i = 0; i < fx->m.nr_e820; i++) {
        uint32_t ent = mmap + 24 * i;

        assert_int_equal(fx_r32(fx, ent), 20);
        assert_int_equal(fx_r64(fx, ent + 4), fx->m.e820[i].addr);
        assert_int_equal(fx_r64(fx, ent + 12), fx->m.e820[i].size);
        assert_int_equal(fx_r32(fx, ent + 20), fx->m.e820[i].type);
    }

    /* Reset brings back the same boot state and contents. */
    memset(fx_ram(fx, 0, 16 * MiB), 0, 16 * MiB);
    cpu_state_reset(&fx->bsp.state, 0, true);
    memset(fx->bsp.state.lapic, 0x5a, sizeof(fx->bsp.state.lapic));
    assert_int_equal(boot_reset(&fx->m), 0);
    check_prot32(fx, KPHYS + 0x20);
    assert_memory_equal(fx_ram(fx, KPHYS, TEXT_SIZE), e->text, TEXT_SIZE);
    assert_int_equal(fx_r32(fx, info + 20), 2);
    assert_memory_equal(fx_ram(fx, fx_r32(fx, mods), sizeof(mod1)), mod1, sizeof(mod1));
    free(e);
    fx_free(fx);
}

/* A flat binary described by the a.out kludge fields. */
#define AOUT_LOAD 0x200000u
#define AOUT_HDR_OFF 0x40u
#define AOUT_SIZE 0x1000u

static uint8_t *make_aout(void)
{
    uint8_t *d = calloc(1, AOUT_SIZE);
    uint8_t *h = d + AOUT_HDR_OFF;

    assert_non_null(d);
    for (size_t i = 0; i < AOUT_SIZE; i++)
        d[i] = (uint8_t)(i + 9);
    put_mb_header(h, MB_AOUT | MB_MEMINFO);
    put32(h + 12, AOUT_LOAD + AOUT_HDR_OFF);   /* header_addr */
    put32(h + 16, AOUT_LOAD);                  /* load_addr */
    put32(h + 20, 0);                          /* load_end_addr: whole file */
    put32(h + 24, AOUT_LOAD + 0x3000);         /* bss_end_addr */
    put32(h + 28, AOUT_LOAD + 0x80);           /* entry_addr */
    return d;
}

static void fix_checksum(uint8_t *h)
{
    uint32_t flags;

    memcpy(&flags, h + 4, 4);
    put32(h + 8, (uint32_t)-(MB_MAGIC + flags));
}

static void test_aout_kludge_kernel(void **st)
{
    struct boot_fx *fx = fx_new(32 * MiB);
    uint8_t *d = make_aout();

    memset(fx_ram(fx, AOUT_LOAD, 0x4000), 0xaa, 0x4000);
    fx->cfg.kernel = fx_file(fx, "kernel.bin", d, AOUT_SIZE);
    assert_int_equal(boot_load(&fx->m), 0);
    check_prot32(fx, AOUT_LOAD + 0x80);
    assert_memory_equal(fx_ram(fx, AOUT_LOAD, AOUT_SIZE), d, AOUT_SIZE);
    for (uint32_t a = AOUT_LOAD + AOUT_SIZE; a < AOUT_LOAD + 0x3000; a++)
        assert_int_equal(*fx_ram(fx, a, 1), 0);
    assert_int_equal(*fx_ram(fx, AOUT_LOAD + 0x3000, 1), 0xaa);
    /* No -append: the command line is the kernel's name alone. */
    assert_string_equal((char *)fx_ram(fx, fx_r32(fx, 0x9000 + 16), 1), fx->cfg.kernel);
    assert_int_equal(fx_r32(fx, 0x9000 + 20), 0);
    free(d);
    fx_free(fx);
}

/* load_end_addr inside the file: only that much is loaded. */
static void test_aout_partial_load(void **st)
{
    struct boot_fx *fx = fx_new(32 * MiB);
    uint8_t *d = make_aout();

    put32(d + AOUT_HDR_OFF + 20, AOUT_LOAD + 0x800);
    put32(d + AOUT_HDR_OFF + 24, 0);   /* no bss */
    memset(fx_ram(fx, AOUT_LOAD, 0x1000), 0xaa, 0x1000);
    fx->cfg.kernel = fx_file(fx, "kernel.bin", d, AOUT_SIZE);
    assert_int_equal(boot_load(&fx->m), 0);
    assert_memory_equal(fx_ram(fx, AOUT_LOAD, 0x800), d, 0x800);
    assert_int_equal(*fx_ram(fx, AOUT_LOAD + 0x800, 1), 0xaa);
    free(d);
    fx_free(fx);
}

static void expect_refused_file(const void *data, size_t len, const char *initrd)
{
    struct boot_fx *fx = fx_new(32 * MiB);

    fx->cfg.kernel = fx_file(fx, "kernel", data, len);
    fx->cfg.initrd = initrd;
    assert_true(boot_load(&fx->m) < 0);
    fx_check_not_started(fx);
    fx_free(fx);
}

static void expect_aout_refused(uint32_t field_off, uint32_t value)
{
    uint8_t *d = make_aout();

    put32(d + AOUT_HDR_OFF + field_off, value);
    expect_refused_file(d, AOUT_SIZE, NULL);
    free(d);
}

static void test_malformed_multiboot_refused(void **st)
{
    uint8_t *d;
    struct mb_elf *e;

    /* Bad checksum. */
    d = make_aout();
    put32(d + AOUT_HDR_OFF + 8, 0x12345678);
    expect_refused_file(d, AOUT_SIZE, NULL);
    free(d);

    /* A valid header that starts past the first 8 KiB is not found. */
    d = calloc(1, 0x3000);
    put_mb_header(d + 0x2000, MB_MEMINFO);
    expect_refused_file(d, 0x3000, NULL);
    /* ... nor one whose a.out fields run past 8 KiB. */
    memset(d, 0, 0x3000);
    put_mb_header(d + 0x2000 - 12, MB_AOUT);
    expect_refused_file(d, 0x3000, NULL);
    /* ... nor a header cut off by the end of the file. */
    expect_refused_file(d, 0x2000 - 4, NULL);
    free(d);

    /* a.out kludge fields. */
    expect_aout_refused(20, AOUT_LOAD - 0x1000);       /* load_end < load_addr */
    expect_aout_refused(20, AOUT_LOAD);                /* load_end == load_addr */
    expect_aout_refused(20, AOUT_LOAD + AOUT_SIZE + 4); /* runs past EOF */
    expect_aout_refused(24, AOUT_LOAD + 0x10);         /* bss_end inside the image */
    expect_aout_refused(28, AOUT_LOAD + 0x5000);       /* entry outside */
    expect_aout_refused(16, AOUT_LOAD + 0x100);        /* load_addr > header_addr */
    expect_aout_refused(16, AOUT_LOAD - 0x1000);       /* header before file start */
    expect_aout_refused(24, 0xffffff00);               /* bss runs past RAM */
    {
        static const uint32_t bases[] = {
            0x9000,       /* lands on the Multiboot information */
            0x7800,       /* ... on the GDT at 0x8000 */
            0xfffff800,   /* image ends past 4 GiB */
        };

        for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
            uint8_t *h;

            d = make_aout();
            h = d + AOUT_HDR_OFF;
            put32(h + 12, bases[i] + AOUT_HDR_OFF);
            put32(h + 16, bases[i]);
            put32(h + 24, 0);
            put32(h + 28, bases[i] + 0x80);
            expect_refused_file(d, AOUT_SIZE, NULL);
            free(d);
        }
    }

    /* Required feature bits vmon does not know. */
    d = make_aout();
    put32(d + AOUT_HDR_OFF + 4, MB_AOUT | (1u << 3));
    fix_checksum(d + AOUT_HDR_OFF);
    expect_refused_file(d, AOUT_SIZE, NULL);
    free(d);

    /* Neither ELF nor a.out kludge. */
    d = make_aout();
    put32(d + AOUT_HDR_OFF + 4, MB_MEMINFO);
    fix_checksum(d + AOUT_HDR_OFF);
    expect_refused_file(d, AOUT_SIZE, NULL);
    free(d);

    /* ELF segments out of RAM / past EOF; modules that are missing or too big. */
    e = make_mb_elf();
    e->ph[0].p_paddr = 0x7ff00000;
    expect_refused_file(e, sizeof(*e), NULL);
    free(e);
    e = make_mb_elf();
    e->ph[0].p_filesz = e->ph[0].p_memsz = 0x10000;
    expect_refused_file(e, sizeof(*e), NULL);
    free(e);
    e = make_mb_elf();
    expect_refused_file(e, sizeof(*e), "/nonexistent/module");
    expect_refused_file(e, sizeof(*e), ",");
    free(e);
}

static void test_module_larger_than_ram(void **st)
{
    struct boot_fx *fx = fx_new(32 * MiB);
    struct mb_elf *e = make_mb_elf();

    fx->cfg.kernel = fx_file(fx, "kernel.elf", e, sizeof(*e));
    fx->cfg.initrd = fx_sparse_file(fx, "huge", 40 * MiB);
    assert_int_equal(boot_load(&fx->m), -EFBIG);
    fx->cfg.initrd = fx_sparse_file(fx, "big", 31 * MiB);
    assert_int_equal(boot_load(&fx->m), -ENOSPC);
    fx_check_not_started(fx);
    free(e);
    fx_free(fx);
}

/* ELF64 Multiboot kernels (as GRUB loads them) are entered in 32-bit mode. */
static void test_elf64_multiboot_kernel(void **st)
{
    struct boot_fx *fx = fx_new(32 * MiB);
    struct {
        Elf64_Ehdr eh;
        Elf64_Phdr ph;
        uint8_t pad[0x1000 - sizeof(Elf64_Ehdr) - sizeof(Elf64_Phdr)];
        uint8_t text[0x1000];
    } *k = calloc(1, sizeof(*k));

    memcpy(k->eh.e_ident, ELFMAG, SELFMAG);
    k->eh.e_ident[EI_CLASS] = ELFCLASS64;
    k->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    k->eh.e_machine = EM_X86_64;
    k->eh.e_entry = KPHYS + 0x10;
    k->eh.e_phoff = offsetof(__typeof__(*k), ph);
    k->eh.e_phentsize = sizeof(Elf64_Phdr);
    k->eh.e_phnum = 1;
    k->ph = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = 0x1000, .p_vaddr = KPHYS,
                          .p_paddr = KPHYS, .p_filesz = 0x1000, .p_memsz = 0x1000 };
    put_mb_header(k->text, MB_MEMINFO);
    fx->cfg.kernel = fx_file(fx, "kernel64.elf", k, sizeof(*k));
    assert_int_equal(boot_load(&fx->m), 0);
    check_prot32(fx, KPHYS + 0x10);
    free(k);
    fx_free(fx);
}

static void test_corrupted_headers(void **st)
{
    struct boot_fx *fx = fx_new(32 * MiB);
    struct mb_elf *e = make_mb_elf();
    uint8_t *d = make_aout();
    size_t hdrs = sizeof(Elf32_Ehdr) + sizeof(Elf32_Phdr);
    int ok;

    /* The a.out fields, checksum included (a few keep a valid one). */
    ok = fx_mutation_run(fx, d, AOUT_SIZE, AOUT_HDR_OFF + 4, AOUT_HDR_OFF + 32, 300,
                         0x853c49e6748fea9bULL);
    assert_true(ok > 0 && ok < 300);
    /* The ELF headers of a Multiboot ELF kernel. */
    ok = fx_mutation_run(fx, (uint8_t *)e, sizeof(*e), 0, hdrs, 300, 0xda3e39cb94b95bdbULL);
    assert_true(ok > 0 && ok < 300);
    free(d);
    free(e);
    fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elf32_kernel_with_modules),
        cmocka_unit_test(test_aout_kludge_kernel),
        cmocka_unit_test(test_aout_partial_load),
        cmocka_unit_test(test_malformed_multiboot_refused),
        cmocka_unit_test(test_module_larger_than_ram),
        cmocka_unit_test(test_elf64_multiboot_kernel),
        cmocka_unit_test(test_corrupted_headers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
