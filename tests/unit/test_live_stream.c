/* Live migration's stream additions (format version 2): "ram-dirty"
 * sections only after every "ram" chunk, only in version 2, well-formed,
 * and their pages replace the destination's; repeated chunks refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "migration/stream.h"

#define RAM (4 * MiB)
#define CHUNKS (RAM / MIG_RAM_CHUNK)

struct fixture {
    struct machine m;
    struct mig_channel w;
};

static int setup(void **state)
{
    static struct vm_config cfg = { .ram_size = RAM, .smp = 1 };
    struct fixture *f = calloc(1, sizeof(*f));

    assert_int_equal(machine_init(&f->m, &cfg), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    machine_destroy(&f->m);
    free(f);
    return 0;
}

/* A stream being written to a memfd; load() reads it back. */
static void begin(struct fixture *f, uint32_t version)
{
    f->w = (struct mig_channel){ .fd = memfd_create("s", 0), .what = "t",
                                 .version = version };
    assert_true(f->w.fd >= 0);
    assert_int_equal(mig_save_header(&f->m, &f->w), 0);
}

static void put_dirty(struct fixture *f, uint32_t chunk, uint32_t page, uint8_t fill)
{
    uint64_t dirty[CHUNKS * 4] = { 0 };
    uint64_t idx = (uint64_t)chunk * (MIG_RAM_CHUNK / MIG_PAGE) + page;
    uint8_t *p = f->m.ram + idx * MIG_PAGE;

    memset(p, fill, MIG_PAGE);
    dirty[idx / 64] |= 1ULL << (idx % 64);
    assert_int_equal(mig_save_dirty(&f->m, &f->w, dirty, NULL, NULL), 0);
    assert_int_equal(dirty[idx / 64], 0);     /* sent bits are cleared */
}

static int load(struct fixture *f)
{
    struct mig_channel r = { .fd = f->w.fd, .what = "t" };
    int ret;

    assert_int_equal(mig_write_section(&f->w, "end", 0, 1, "", 0), 0);
    lseek(f->w.fd, 0, SEEK_SET);
    ret = migration_load(&f->m, &r);
    close(f->w.fd);
    return ret;
}

static void dirty_before_first_pass_ends_is_refused(void **state)
{
    struct fixture *f = *state;

    begin(f, MIG_FORMAT_VERSION_LIVE);
    put_dirty(f, 0, 3, 0xaa);
    assert_int_equal(load(f), -EINVAL);
}

static void dirty_in_a_version_1_stream_is_refused(void **state)
{
    struct fixture *f = *state;

    begin(f, MIG_FORMAT_VERSION);
    assert_int_equal(mig_save_ram(&f->m, &f->w, NULL, NULL), 0);
    put_dirty(f, 1, 0, 0x55);
    assert_int_equal(load(f), -EINVAL);
}

static void repeated_ram_chunk_is_refused(void **state)
{
    struct fixture *f = *state;

    begin(f, MIG_FORMAT_VERSION_LIVE);
    assert_int_equal(mig_save_ram(&f->m, &f->w, NULL, NULL), 0);
    assert_int_equal(mig_save_ram(&f->m, &f->w, NULL, NULL), 0);
    assert_int_equal(load(f), -EINVAL);
}

/* Pass 1, then two later passes: the pages of the last pass are in RAM
 * (the stream then lacks vCPU state and is refused, after RAM was
 * written, as the loader documents). */
static void dirty_pages_land(void **state)
{
    struct fixture *f = *state;
    uint8_t *page = f->m.ram + (MIG_RAM_CHUNK + 7 * MIG_PAGE);

    begin(f, MIG_FORMAT_VERSION_LIVE);
    memset(page, 0x11, MIG_PAGE);
    assert_int_equal(mig_save_ram(&f->m, &f->w, NULL, NULL), 0);
    put_dirty(f, 1, 7, 0x22);
    put_dirty(f, 1, 7, 0x33);
    memset(page, 0, MIG_PAGE);
    assert_int_equal(load(f), -EINVAL);
    for (int i = 0; i < (int)MIG_PAGE; i++)
        assert_int_equal(page[i], 0x33);
}

static void malformed_dirty_sections_are_refused(void **state)
{
    struct fixture *f = *state;
    struct vmbuf b;
    uint8_t bitmap[32] = { 0 };

    /* An empty bitmap, then a bitmap that promises more than follows. */
    for (int k = 0; k < 2; k++) {
        begin(f, MIG_FORMAT_VERSION_LIVE);
        assert_int_equal(mig_save_ram(&f->m, &f->w, NULL, NULL), 0);
        vmbuf_init(&b);
        vmbuf_put_u64(&b, 0);
        vmbuf_put_u32(&b, MIG_RAM_CHUNK / MIG_PAGE);
        bitmap[0] = k ? 3 : 0;
        vmbuf_put(&b, bitmap, sizeof(bitmap));
        if (k)
            vmbuf_put(&b, f->m.ram, MIG_PAGE);
        assert_int_equal(mig_write_section(&f->w, "ram-dirty", 0, 1, b.data, b.len), 0);
        vmbuf_free(&b);
        assert_int_equal(load(f), -EINVAL);
    }
    /* Instance and offset disagree. */
    begin(f, MIG_FORMAT_VERSION_LIVE);
    assert_int_equal(mig_save_ram(&f->m, &f->w, NULL, NULL), 0);
    vmbuf_init(&b);
    vmbuf_put_u64(&b, MIG_RAM_CHUNK);
    vmbuf_put_u32(&b, MIG_RAM_CHUNK / MIG_PAGE);
    bitmap[0] = 1;
    vmbuf_put(&b, bitmap, sizeof(bitmap));
    vmbuf_put(&b, f->m.ram, MIG_PAGE);
    assert_int_equal(mig_write_section(&f->w, "ram-dirty", 0, 1, b.data, b.len), 0);
    vmbuf_free(&b);
    assert_int_equal(load(f), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(dirty_before_first_pass_ends_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(dirty_in_a_version_1_stream_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(repeated_ram_chunk_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(dirty_pages_land, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_dirty_sections_are_refused, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
