/* Linux bzImage loading: placement, the zero page, the 64-bit entry state,
 * reset, and refusal of malformed images and impossible requests. */
#include "test_boot_helpers.h"

#define SETUP_SECTS 4
#define SETUP_SIZE ((SETUP_SECTS + 1) * 512)
#define PM_SIZE (64 * 1024)

struct bz_opts {
    uint16_t version;
    uint16_t xloadflags;
    uint8_t relocatable;
    uint32_t alignment;
    uint64_t pref_address;
    uint32_t init_size;
    uint32_t cmdline_size;
    uint32_t initrd_addr_max;
};

static const struct bz_opts bz_default = {
    .version = 0x020f, .xloadflags = 0x3, .relocatable = 1, .alignment = 0x200000,
    .pref_address = 0x1000000, .init_size = 0x400000, .cmdline_size = 2047,
    .initrd_addr_max = 0x7fffffff,
};

/* A fake bzImage: a real-looking setup header and a patterned payload. */
static uint8_t *make_bzimage(const struct bz_opts *o, size_t *len)
{
    uint8_t *d = calloc(1, SETUP_SIZE + PM_SIZE);

    assert_non_null(d);
    d[0x1f1] = SETUP_SECTS;
    put32(d + 0x1f4, PM_SIZE / 16);
    put16(d + 0x1fe, 0xaa55);
    d[0x200] = 0xeb;
    d[0x201] = 0x6a;              /* header ends at 0x26c */
    memcpy(d + 0x202, "HdrS", 4);
    put16(d + 0x206, o->version);
    d[0x210] = 0;
    d[0x211] = 0x01;              /* LOADED_HIGH */
    put32(d + 0x22c, o->initrd_addr_max);
    put32(d + 0x230, o->alignment);
    d[0x234] = o->relocatable;
    put16(d + 0x236, o->xloadflags);
    put32(d + 0x238, o->cmdline_size);
    put64(d + 0x250, 0xdeadbeefcafeULL);   /* setup_data garbage: must not pass */
    put64(d + 0x258, o->pref_address);
    put32(d + 0x260, o->init_size);
    for (size_t i = 0; i < PM_SIZE; i++)
        d[SETUP_SIZE + i] = (uint8_t)(i * 7 + 3);
    *len = SETUP_SIZE + PM_SIZE;
    return d;
}

static const char *write_bzimage(struct boot_fx *fx, const struct bz_opts *o)
{
    size_t len;
    uint8_t *d = make_bzimage(o, &len);
    const char *path = fx_file(fx, "bzImage", d, len);

    free(d);
    return path;
}

static void test_bzimage_boots(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);
    size_t len, initrd_len = 300 * 1024 + 5;
    uint8_t *image = make_bzimage(&bz_default, &len);
    uint8_t *initrd = malloc(initrd_len);
    const uint64_t zp = 0x7000;
    uint8_t hdr[0x26c];
    uint32_t rd_addr;

    for (size_t i = 0; i < initrd_len; i++)
        initrd[i] = (uint8_t)(i ^ (i >> 8));
    fx->cfg.kernel = fx_file(fx, "bzImage", image, len);
    fx->cfg.initrd = fx_file(fx, "initrd", initrd, initrd_len);
    fx->cfg.append = "console=ttyS0 root=/dev/vda";
    assert_int_equal(boot_load(&fx->m), 0);

    /* Relocatable and room enough: loaded where it runs (pref_address). */
    assert_memory_equal(fx_ram(fx, 0x1000000, PM_SIZE), image + SETUP_SIZE, PM_SIZE);
    fx_check_long_mode(fx, 0x1000000 + 0x200, zp);
    fx_check_untouched(fx);

    /* The zero page: a copy of the setup header with the loader's fields
     * filled in, and nothing else changed. */
    rd_addr = fx_r32(fx, zp + 0x218);
    memcpy(hdr, image, sizeof(hdr));
    put16(hdr + 0x1fa, 0xffff);           /* vid_mode: normal */
    hdr[0x210] = 0xff;                    /* type_of_loader */
    hdr[0x211] |= 0x80;                   /* CAN_USE_HEAP */
    put32(hdr + 0x214, 0x1000000);        /* code32_start */
    put32(hdr + 0x218, rd_addr);
    put32(hdr + 0x21c, (uint32_t)initrd_len);
    put16(hdr + 0x224, 0xfe00 - 0x200);   /* heap_end_ptr */
    put32(hdr + 0x228, 0x20000);          /* cmd_line_ptr */
    put64(hdr + 0x250, 0);                /* setup_data */
    assert_memory_equal(fx_ram(fx, zp + 0x1f1, 0x26c - 0x1f1), hdr + 0x1f1, 0x26c - 0x1f1);
    assert_int_equal(fx_r32(fx, zp + 0x202), 0x53726448);
    assert_int_equal(*fx_ram(fx, zp + 0x26c, 1), 0);  /* copy stops at the header's end */
    assert_int_equal(fx_r64(fx, zp + 0x70), 0);      /* acpi_rsdp_addr */
    assert_int_equal(*fx_ram(fx, zp + 0x1ef, 1), 0);  /* sentinel */
    assert_int_equal(fx_r32(fx, zp + 0x228), 0x20000);
    assert_int_equal(fx_r32(fx, zp + 0xc8), 0);
    assert_string_equal((char *)fx_ram(fx, 0x20000, 28), "console=ttyS0 root=/dev/vda");

    /* The initrd: page aligned, as high as possible, above the kernel. */
    assert_int_equal(fx_r32(fx, zp + 0x21c), initrd_len);
    assert_int_equal(fx_r32(fx, zp + 0xc0), 0);
    assert_int_equal(fx_r32(fx, zp + 0xc4), 0);
    assert_int_equal(rd_addr & 0xfff, 0);
    assert_int_equal(rd_addr, (64 * MiB - initrd_len) & ~0xfffULL);
    assert_true(rd_addr >= 0x1000000 + 0x400000);
    assert_memory_equal(fx_ram(fx, rd_addr, initrd_len), initrd, initrd_len);

    /* The e820 map, entry for entry. */
    assert_int_equal(*fx_ram(fx, zp + 0x1e8, 1), fx->m.nr_e820);
    for (int i = 0; i < fx->m.nr_e820; i++) {
        uint64_t e = zp + 0x2d0 + 20 * i;

        assert_int_equal(fx_r64(fx, e), fx->m.e820[i].addr);
        assert_int_equal(fx_r64(fx, e + 8), fx->m.e820[i].size);
        assert_int_equal(fx_r32(fx, e + 16), fx->m.e820[i].type);
    }
    /* The identity map covers the kernel's whole init_size window. */
    assert_int_equal(fx_walk(fx, fx->bsp.state.cr3, 0x13fffffULL), 0x13fffffULL);
    free(image);
    free(initrd);
    fx_free(fx);
}

static void test_small_ram_relocatable_falls_back_to_1mib(void **st)
{
    struct boot_fx *fx = fx_new(24 * MiB);
    struct bz_opts o = bz_default;
    size_t len;
    uint8_t *image;

    /* pref_address is not a multiple of kernel_alignment, so it is no
     * place to load the kernel: 1 MiB is, and the window from there to
     * pref_address + init_size fits in 24 MiB. */
    o.pref_address = 0x1000000 + 0x200000;
    o.alignment = 0x400000;
    o.init_size = 0x200000;
    image = make_bzimage(&o, &len);
    fx->cfg.kernel = fx_file(fx, "bzImage", image, len);
    assert_int_equal(boot_load(&fx->m), 0);
    assert_memory_equal(fx_ram(fx, 0x100000, PM_SIZE), image + SETUP_SIZE, PM_SIZE);
    fx_check_long_mode(fx, 0x100200, 0x7000);
    assert_int_equal(fx_r32(fx, 0x7000 + 0x214), 0x100000);  /* code32_start */
    /* No -append: an empty command line is still a valid pointer. */
    assert_int_equal(fx_r32(fx, 0x7000 + 0x228), 0x20000);
    assert_int_equal(*fx_ram(fx, 0x20000, 1), 0);
    assert_int_equal(fx_r32(fx, 0x7000 + 0x218), 0);  /* no initrd */
    free(image);
    fx_free(fx);
}

static void test_non_relocatable_loads_at_1mib(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);
    struct bz_opts o = bz_default;

    o.relocatable = 0;
    fx->cfg.kernel = write_bzimage(fx, &o);
    assert_int_equal(boot_load(&fx->m), 0);
    fx_check_long_mode(fx, 0x100200, 0x7000);
    fx_free(fx);
}

static void test_reset_places_everything_again(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);
    size_t len;
    uint8_t *image = make_bzimage(&bz_default, &len);
    uint8_t zp_before[4096];
    struct cpu_state booted;

    fx->cfg.kernel = fx_file(fx, "bzImage", image, len);
    fx->cfg.initrd = fx_file(fx, "initrd", "ramdisk!", 8);
    fx->cfg.append = "quiet";
    assert_int_equal(boot_load(&fx->m), 0);
    booted = fx->bsp.state;
    memcpy(zp_before, fx_ram(fx, 0x7000, 4096), 4096);

    /* The guest ran and trashed its memory, then the files went away. */
    memset(fx_ram(fx, 0, 32 * MiB), 0xcc, 32 * MiB);
    memset(fx_ram(fx, 60 * MiB, 4 * MiB), 0xcc, 4 * MiB);
    for (int i = 0; i < fx->nr_files; i++)
        unlink(fx->files[i]);
    cpu_state_reset(&fx->bsp.state, 0, true);
    memset(fx->bsp.state.lapic, 0x5a, sizeof(fx->bsp.state.lapic));

    assert_int_equal(boot_reset(&fx->m), 0);
    assert_memory_equal(&fx->bsp.state, &booted, sizeof(booted));
    assert_memory_equal(fx_ram(fx, 0x7000, 4096), zp_before, 4096);
    assert_memory_equal(fx_ram(fx, 0x1000000, PM_SIZE), image + SETUP_SIZE, PM_SIZE);
    assert_memory_equal(fx_ram(fx, fx_r32(fx, 0x7218), 8), "ramdisk!", 8);
    assert_string_equal((char *)fx_ram(fx, 0x20000, 6), "quiet");
    fx_check_long_mode(fx, 0x1000200, 0x7000);
    free(image);
    fx_free(fx);
}

/* Each malformed image: an error, no crash, and the vCPU not started. */
static void expect_refused(const struct bz_opts *o, void (*mangle)(uint8_t *d, size_t *len))
{
    struct boot_fx *fx = fx_new(64 * MiB);
    size_t len;
    uint8_t *image = make_bzimage(o, &len);

    if (mangle)
        mangle(image, &len);
    fx->cfg.kernel = fx_file(fx, "bzImage", image, len);
    assert_true(boot_load(&fx->m) < 0);
    fx_check_not_started(fx);
    assert_int_equal(boot_reset(&fx->m), -EINVAL);
    free(image);
    fx_free(fx);
}

static void truncate_header(uint8_t *d, size_t *len)
{
    *len = 0x230;
}

static void short_jump(uint8_t *d, size_t *len)
{
    d[0x201] = 0x20;  /* header "ends" before the 2.12 fields */
}

static void huge_setup_sects(uint8_t *d, size_t *len)
{
    d[0x1f1] = 255;
    *len = 100 * 512;  /* 256 sectors of setup would need 128 KiB */
}

static void syssize_beyond_file(uint8_t *d, size_t *len)
{
    put32(d + 0x1f4, PM_SIZE / 16 + 2);
}

static void no_boot_flag(uint8_t *d, size_t *len)
{
    put16(d + 0x1fe, 0);
}

static void zimage(uint8_t *d, size_t *len)
{
    d[0x211] = 0;
}

static void test_malformed_images_refused(void **st)
{
    struct bz_opts o;

    expect_refused(&bz_default, truncate_header);
    expect_refused(&bz_default, short_jump);
    expect_refused(&bz_default, huge_setup_sects);
    expect_refused(&bz_default, syssize_beyond_file);
    expect_refused(&bz_default, no_boot_flag);
    expect_refused(&bz_default, zimage);

    o = bz_default;
    o.version = 0x0205;   /* too old */
    expect_refused(&o, NULL);
    o = bz_default;
    o.version = 0x020a;   /* no xloadflags yet */
    expect_refused(&o, NULL);
    o = bz_default;
    o.xloadflags = 0x2;   /* 32-bit only kernel */
    expect_refused(&o, NULL);
    o = bz_default;
    o.alignment = 0x300000;
    expect_refused(&o, NULL);
    o = bz_default;
    o.init_size = 0x40000000;  /* 1 GiB to decompress in a 64 MiB guest */
    expect_refused(&o, NULL);
    o = bz_default;
    o.relocatable = 0;
    o.pref_address = 0x80000;
    expect_refused(&o, NULL);
}

static void test_cmdline_longer_than_cmdline_size(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);
    struct bz_opts o = bz_default;
    char line[40];

    o.cmdline_size = 31;
    fx->cfg.kernel = write_bzimage(fx, &o);
    memset(line, 'x', 32);
    line[32] = 0;
    fx->cfg.append = line;
    assert_int_equal(boot_load(&fx->m), -E2BIG);
    fx_check_not_started(fx);
    line[31] = 0;  /* exactly cmdline_size fits */
    assert_int_equal(boot_load(&fx->m), 0);
    assert_string_equal((char *)fx_ram(fx, 0x20000, 32), line);
    fx_free(fx);
}

static void test_initrd_errors(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);

    fx->cfg.kernel = write_bzimage(fx, &bz_default);

    /* Larger than all of RAM: refused before reading it. */
    fx->cfg.initrd = fx_sparse_file(fx, "huge", 65 * MiB);
    assert_int_equal(boot_load(&fx->m), -EFBIG);
    fx_check_not_started(fx);

    /* Smaller than RAM but no hole big enough beside the kernel. */
    fx->cfg.initrd = fx_sparse_file(fx, "big", 45 * MiB);
    assert_int_equal(boot_load(&fx->m), -ENOSPC);
    fx_check_not_started(fx);

    /* Below initrd_addr_max only. */
    {
        struct bz_opts o = bz_default;
        uint32_t addr;

        o.initrd_addr_max = 0x1ffffff;  /* 32 MiB - 1 */
        fx->cfg.kernel = write_bzimage(fx, &o);
        fx->cfg.initrd = fx_file(fx, "small", "0123456789", 10);
        assert_int_equal(boot_load(&fx->m), 0);
        addr = fx_r32(fx, 0x7218);
        assert_int_equal(addr, 32 * MiB - 0x1000);
    }

    fx->cfg.initrd = "/nonexistent/initrd";
    assert_int_equal(boot_load(&fx->m), -ENOENT);
    fx_free(fx);
}

static void test_bad_files(void **st)
{
    struct boot_fx *fx = fx_new(16 * MiB);

    fx->cfg.kernel = "/nonexistent/bzImage";
    assert_int_equal(boot_load(&fx->m), -ENOENT);
    fx->cfg.kernel = fx->dir;  /* a directory */
    assert_true(boot_load(&fx->m) < 0);
    fx->cfg.kernel = fx_file(fx, "empty", NULL, 0);
    assert_int_equal(boot_load(&fx->m), -ENOEXEC);
    fx->cfg.kernel = fx_file(fx, "text", "hello, world\n", 13);
    assert_int_equal(boot_load(&fx->m), -ENOEXEC);
    fx->cfg.kernel = fx_file(fx, "hdrs", "\0\0\0\0HdrS", 9);
    assert_int_equal(boot_load(&fx->m), -ENOEXEC);
    fx_check_not_started(fx);
    fx_free(fx);
}

/* The real thing, when the guest kit has been built (`make guest-kit`):
 * Debian's cloud kernel and the busybox initramfs are accepted and placed
 * where the kernel asks.  Skipped otherwise. */
static void test_guest_kit_kernel_accepted(void **st)
{
    const char *kit = getenv("GUEST_KIT") ? getenv("GUEST_KIT") : "build/guest";
    char kernel[256], initrd[256];
    struct boot_fx *fx;
    uint64_t pref;
    uint32_t rd;

    snprintf(kernel, sizeof(kernel), "%s/vmlinuz", kit);
    snprintf(initrd, sizeof(initrd), "%s/initrd.cpio.gz", kit);
    if (access(kernel, R_OK) || access(initrd, R_OK))
        skip();
    fx = fx_new(512 * MiB);
    fx->cfg.kernel = kernel;
    fx->cfg.initrd = initrd;
    fx->cfg.append = "console=ttyS0";
    assert_int_equal(boot_load(&fx->m), 0);
    pref = fx_r64(fx, 0x7000 + 0x258);
    assert_true(fx_r16(fx, 0x7000 + 0x206) >= 0x20c);
    assert_true(fx_r16(fx, 0x7000 + 0x236) & 1);
    fx_check_long_mode(fx, pref + 0x200, 0x7000);
    rd = fx_r32(fx, 0x7000 + 0x218);
    assert_true(rd >= pref + fx_r32(fx, 0x7000 + 0x260));
    assert_true(fx_r32(fx, 0x7000 + 0x21c) > 0);
    assert_string_equal((char *)fx_ram(fx, 0x20000, 14), "console=ttyS0");
    fx_free(fx);
}

static void test_corrupted_headers(void **st)
{
    struct boot_fx *fx = fx_new(64 * MiB);
    size_t len;
    uint8_t *image = make_bzimage(&bz_default, &len);
    int ok;

    fx->cfg.append = "console=ttyS0";
    ok = fx_mutation_run(fx, image, len, 0x1f0, 0x270, 400, 0x9e3779b97f4a7c15ULL);
    /* Some corruptions hit fields nobody checks: both outcomes occur. */
    assert_true(ok > 0 && ok < 400);
    free(image);
    fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bzimage_boots),
        cmocka_unit_test(test_small_ram_relocatable_falls_back_to_1mib),
        cmocka_unit_test(test_non_relocatable_loads_at_1mib),
        cmocka_unit_test(test_reset_places_everything_again),
        cmocka_unit_test(test_malformed_images_refused),
        cmocka_unit_test(test_cmdline_longer_than_cmdline_size),
        cmocka_unit_test(test_initrd_errors),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_corrupted_headers),
        cmocka_unit_test(test_guest_kit_kernel_accepted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
