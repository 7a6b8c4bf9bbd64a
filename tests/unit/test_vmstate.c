/* Field tables and the stream framing: round trips, every mismatch refused
 * with the field named, and malformed input (truncation at every offset,
 * every single-bit flip, random garbage) refused without touching memory
 * it should not (this binary runs under ASan/UBSan). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration/migration.h"
#include "migration/stream.h"

struct demo {
    uint8_t a;
    uint16_t b;
    uint32_t c[3];
    uint64_t d;
    bool e;
    uint64_t t;     /* a clock */
    uint32_t later; /* added in version 2 */
};

static const struct vmstate_field demo_fields_v2[] = {
    VMS_U8_FIELD(struct demo, a), VMS_U16_FIELD(struct demo, b),
    VMS_U32_FIELD(struct demo, c), VMS_U64_FIELD(struct demo, d),
    VMS_BOOL_FIELD(struct demo, e), VMS_CLOCK_FIELD(struct demo, t),
    VMS_FIELD_V(struct demo, later, VMS_U32, 4, 2),
    VMS_END,
};
static const struct vmstate_desc demo_v2 = { "demo", 2, demo_fields_v2, .post_load = NULL };
static const struct vmstate_desc demo_v1 = { "demo", 1, demo_fields_v2, .post_load = NULL };

static const struct demo sample = {
    .a = 0x12, .b = 0x3456, .c = { 1, 2, 3 }, .d = 0x1122334455667788ull, .e = true,
    .t = 5000, .later = 77,
};

static void test_tables_are_valid(void **st)
{
    assert_int_equal(vmstate_check_desc(&demo_v2), 0);
    assert_int_equal(vmstate_check_desc(&cpu_vmstate), 0);
    assert_int_equal(vmstate_check_desc(&pic_chip_vmstate), 0);
    assert_int_equal(vmstate_check_desc(&ioapic_vmstate), 0);
    assert_int_equal(vmstate_check_desc(&pit_vmstate), 0);
    static const char *const devs[] = { "serial", "rtc", "acpi-pm", "i8042", "fw_cfg",
                                        "port92", "pci-host" };
    for (size_t i = 0; i < ARRAY_SIZE(devs); i++) {
        bool sl;
        const struct vmstate_desc *d = migration_device_desc(devs[i], &sl);

        assert_non_null(d);
        assert_false(sl);
        assert_int_equal(vmstate_check_desc(d), 0);
    }
    bool sl;
    assert_null(migration_device_desc("irqchip", &sl));
    assert_true(sl);
    assert_null(migration_device_desc("no-such-device", &sl));
    assert_false(sl);
}

static void test_cpu_table_covers_cpu_state(void **st)
{
    /* Every byte of struct cpu_state that is not padding must be in a
     * field: compare two states that differ in one field at a time by
     * saving after poisoning all bytes. */
    struct cpu_state *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    struct vmbuf buf;

    memset(a, 0x5a, sizeof(*a));
    vmbuf_init(&buf);
    vmstate_save(&buf, &cpu_vmstate, a, 0);
    memset(b, 0, sizeof(*b));
    assert_int_equal(vmstate_load(buf.data, buf.len, 1, &cpu_vmstate, b, 0, true, "t"), 0);
    /* Registers, FPU, MSRs, events, LAPIC page all round-tripped. */
    assert_memory_equal(a->gpr, b->gpr, sizeof(a->gpr));
    assert_memory_equal(&a->fpu.xmm, &b->fpu.xmm, sizeof(a->fpu.xmm));
    assert_memory_equal(&a->msr, &b->msr, sizeof(a->msr));
    assert_memory_equal(a->lapic, b->lapic, sizeof(a->lapic));
    assert_int_equal(a->tr.base, b->tr.base);
    assert_int_equal(a->seg[S_GS].unusable, b->seg[S_GS].unusable);
    assert_int_equal(a->events.sipi_vector, b->events.sipi_vector);
    assert_int_equal(a->mp_state, b->mp_state);
    vmbuf_free(&buf);
    free(a);
    free(b);
}

static void save_demo(struct vmbuf *b, const struct vmstate_desc *d, uint64_t now)
{
    vmbuf_init(b);
    vmstate_save(b, d, &sample, now);
    assert_false(b->failed);
}

static void test_round_trip_and_clock(void **st)
{
    struct vmbuf b;
    struct demo out = { 0 };

    save_demo(&b, &demo_v2, 4000);       /* clock 1000 ns in the future */
    assert_int_equal(vmstate_load(b.data, b.len, 2, &demo_v2, &out, 0, false, "t"), 0);
    assert_int_equal(out.a, 0);          /* check-only wrote nothing */
    assert_int_equal(vmstate_load(b.data, b.len, 2, &demo_v2, &out, 9000, true, "t"), 0);
    assert_int_equal(out.a, 0x12);
    assert_int_equal(out.b, 0x3456);
    assert_int_equal(out.c[2], 3);
    assert_int_equal(out.d, sample.d);
    assert_true(out.e);
    assert_int_equal(out.t, 10000);      /* same distance to the new "now" */
    assert_int_equal(out.later, 77);
    vmbuf_free(&b);
}

static void test_version_rules(void **st)
{
    struct vmbuf b;
    struct demo out = { .later = 5 };

    /* A version-1 stream lacks `later`: accepted, the field keeps its value. */
    struct vmstate_field v1_fields[8];
    memcpy(v1_fields, demo_fields_v2, sizeof(v1_fields));
    v1_fields[6] = (struct vmstate_field)VMS_END;
    struct vmstate_desc v1_only = { "demo", 1, v1_fields, .post_load = NULL };

    vmbuf_init(&b);
    vmstate_save(&b, &v1_only, &sample, 0);
    assert_int_equal(vmstate_load(b.data, b.len, 1, &demo_v2, &out, 0, true, "t"), 0);
    assert_int_equal(out.a, 0x12);
    assert_int_equal(out.later, 5);
    /* The same stream claiming version 2 misses a field. */
    assert_int_equal(vmstate_load(b.data, b.len, 2, &demo_v2, &out, 0, true, "t"), -EINVAL);
    vmbuf_free(&b);
    /* Newer than this build: refused. */
    save_demo(&b, &demo_v2, 0);
    assert_int_equal(vmstate_load(b.data, b.len, 3, &demo_v2, &out, 0, true, "t"), -EINVAL);
    /* A v2 field in a section that says v1. */
    assert_int_equal(vmstate_load(b.data, b.len, 1, &demo_v1, &out, 0, true, "t"), -EINVAL);
    vmbuf_free(&b);
}

static void test_type_and_count_mismatch(void **st)
{
    static const struct vmstate_field other_fields[] = {
        { "a", VMS_U16, 0, 1, 0 }, VMS_END,
    };
    static const struct vmstate_desc other = { "demo", 2, other_fields, .post_load = NULL };
    static const struct vmstate_field unknown_fields[] = {
        { "zz", VMS_U8, 0, 1, 0 }, VMS_END,
    };
    static const struct vmstate_desc unknown = { "demo", 2, unknown_fields, .post_load = NULL };
    struct vmbuf b;
    struct demo out;

    vmbuf_init(&b);
    vmstate_save(&b, &other, &sample, 0);
    assert_int_equal(vmstate_load(b.data, b.len, 2, &demo_v2, &out, 0, false, "t"), -EINVAL);
    vmbuf_free(&b);
    vmbuf_init(&b);
    vmstate_save(&b, &unknown, &sample, 0);
    assert_int_equal(vmstate_load(b.data, b.len, 2, &demo_v2, &out, 0, false, "t"), -EINVAL);
    vmbuf_free(&b);
}

static void test_payload_fuzz(void **st)
{
    struct vmbuf b;
    struct demo out;

    save_demo(&b, &demo_v2, 0);
    /* Every truncation is refused. */
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);

        memcpy(copy, b.data, n);
        assert_int_equal(vmstate_load(copy, n, 2, &demo_v2, &out, 0, false, "t"), -EINVAL);
        free(copy);
    }
    /* Bit flips: never a crash; flips in names/types/counts are refused. */
    for (size_t i = 0; i < b.len; i++)
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(b.len);

            memcpy(copy, b.data, b.len);
            copy[i] ^= (uint8_t)(1u << bit);
            (void)vmstate_load(copy, b.len, 2, &demo_v2, &out, 0, false, "t");
            free(copy);
        }
    /* Random garbage. */
    srand(1);
    for (int k = 0; k < 2000; k++) {
        size_t n = (size_t)(rand() % 64);
        uint8_t *g = malloc(n ? n : 1);

        for (size_t i = 0; i < n; i++)
            g[i] = (uint8_t)rand();
        (void)vmstate_load(g, n, 2, &demo_v2, &out, 0, false, "t");
        free(g);
    }
    vmbuf_free(&b);
}

/* ---- stream framing ---- */

static int memfd_with(const void *p, size_t n)
{
    int fd = memfd_create("stream", 0);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static void build_stream(struct vmbuf *out)
{
    struct vmbuf digest;
    struct mig_channel ch = { .what = "t" };
    int fd = memfd_create("w", 0);
    uint8_t payload[300];

    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    ch.fd = fd;
    vmbuf_init(&digest);
    vmbuf_put_u64(&digest, 64 << 20);
    assert_int_equal(mig_write_header(&ch, &digest), 0);
    assert_int_equal(mig_write_section(&ch, "cpu", 0, 1, payload, sizeof(payload)), 0);
    assert_int_equal(mig_write_section(&ch, "end", 0, 1, "", 0), 0);
    vmbuf_free(&digest);
    vmbuf_init(out);
    out->len = (size_t)lseek(fd, 0, SEEK_END);
    out->data = malloc(out->len);
    assert_int_equal(pread(fd, out->data, out->len, 0), (ssize_t)out->len);
    close(fd);
}

/* Parse a whole stream: 0 only if header and both sections are intact. */
static int parse(const uint8_t *p, size_t n)
{
    struct mig_channel ch = { .fd = memfd_with(p, n), .what = "t" };
    struct vmbuf digest;
    struct mig_section s;
    int ret = mig_read_header(&ch, &digest);

    if (ret == 0) {
        vmbuf_free(&digest);
        for (int i = 0; i < 2 && ret == 0; i++) {
            ret = mig_read_section(&ch, &s);
            if (ret == 0) {
                free(s.payload);
                if (i == 1 && strcmp(s.name, "end"))
                    ret = -EINVAL;
            }
        }
    }
    close(ch.fd);
    return ret;
}

static void test_stream_round_trip(void **st)
{
    struct vmbuf b;
    struct mig_channel ch;
    struct vmbuf digest;
    struct mig_section s;

    build_stream(&b);
    ch = (struct mig_channel){ .fd = memfd_with(b.data, b.len), .what = "t" };
    assert_int_equal(mig_read_header(&ch, &digest), 0);
    assert_int_equal(digest.len, 8);
    vmbuf_free(&digest);
    assert_int_equal(mig_read_section(&ch, &s), 0);
    assert_string_equal(s.name, "cpu");
    assert_int_equal(s.len, 300);
    assert_int_equal(s.payload[299], (uint8_t)(299 * 7));
    free(s.payload);
    close(ch.fd);
    vmbuf_free(&b);
}

static void test_stream_truncation_and_flips(void **st)
{
    struct vmbuf b;

    build_stream(&b);
    assert_int_equal(parse(b.data, b.len), 0);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(parse(b.data, n), -EINVAL);
    /* Every single-bit flip anywhere is caught (CRC or framing checks). */
    for (size_t i = 0; i < b.len; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            b.data[i] ^= (uint8_t)(1u << bit);
            assert_int_not_equal(parse(b.data, b.len), 0);
            b.data[i] ^= (uint8_t)(1u << bit);
        }
    vmbuf_free(&b);
}

static void test_stream_huge_lengths_refused(void **st)
{
    struct vmbuf b;

    build_stream(&b);
    /* Digest length field: 4 GiB - 1. */
    b.data[12] = b.data[13] = b.data[14] = b.data[15] = 0xff;
    assert_int_equal(parse(b.data, b.len), -EINVAL);
    vmbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_are_valid),
        cmocka_unit_test(test_cpu_table_covers_cpu_state),
        cmocka_unit_test(test_round_trip_and_clock),
        cmocka_unit_test(test_version_rules),
        cmocka_unit_test(test_type_and_count_mismatch),
        cmocka_unit_test(test_payload_fuzz),
        cmocka_unit_test(test_stream_round_trip),
        cmocka_unit_test(test_stream_truncation_and_flips),
        cmocka_unit_test(test_stream_huge_lengths_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
