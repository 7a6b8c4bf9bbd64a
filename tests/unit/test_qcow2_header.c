/* qcow2 header parsing and validation: a good v2 and v3 header, unknown
 * extensions kept verbatim through a rewrite, the feature name table, and
 * each hostile field refused with a reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

#define CS 65536
#define FILE_SIZE (16 * CS)

static uint8_t hdr[CS];

/* v3 header for a 1 GiB image: reftable at 1, refblock at 2, L1 at 3. */
static void make_v3(void)
{
    memset(hdr, 0, sizeof(hdr));
    be32_store(hdr, QCOW2_MAGIC);
    be32_store(hdr + 4, 3);
    be32_store(hdr + 20, 16);
    be64_store(hdr + 24, 1 * GiB);
    be32_store(hdr + 36, 2);
    be64_store(hdr + 40, 3 * CS);
    be64_store(hdr + 48, 1 * CS);
    be32_store(hdr + 56, 1);
    be32_store(hdr + 96, 4);
    be32_store(hdr + 100, 112);
}

static int parse(struct qcow2_image_header *ih, char *err)
{
    return qcow2_header_parse(hdr, sizeof(hdr), FILE_SIZE, ih, err, 256);
}

static void test_good_v3(void **st)
{
    struct qcow2_image_header ih;
    char err[256];

    make_v3();
    assert_int_equal(parse(&ih, err), 0);
    assert_int_equal(ih.h.version, 3);
    assert_int_equal(ih.h.cluster_bits, 16);
    assert_int_equal(ih.h.size, 1 * GiB);
    assert_int_equal(ih.h.refcount_order, 4);
    qcow2_header_free(&ih);
}

static void test_good_v2_defaults(void **st)
{
    struct qcow2_image_header ih;
    char err[256];

    make_v3();
    be32_store(hdr + 4, 2);
    memset(hdr + 72, 0xff, 40); /* v2 has no such fields: ignored */
    memset(hdr + 72, 0, 8);     /* ...but the extension area starts at 72 */
    assert_int_equal(parse(&ih, err), 0);
    assert_int_equal(ih.h.refcount_order, 4);
    assert_int_equal(ih.h.header_length, 72);
    assert_int_equal(ih.h.incompatible_features, 0);
    qcow2_header_free(&ih);
}

static void put_ext(size_t *off, uint32_t type, const void *data, uint32_t len)
{
    be32_store(hdr + *off, type);
    be32_store(hdr + *off + 4, len);
    memcpy(hdr + *off + 8, data, len);
    *off += 8 + ALIGN_UP((size_t)len, 8);
}

static void test_extensions_roundtrip(void **st)
{
    struct qcow2_image_header ih, ih2;
    static uint8_t out[CS];
    uint8_t feat[48] = { 0, 5 };
    char err[256], name[64];
    size_t off = 112;

    make_v3();
    memcpy(feat + 2, "future feature", 14);
    put_ext(&off, QCOW2_EXT_BACKING_FORMAT, "qcow2", 5);
    put_ext(&off, QCOW2_EXT_FEATURE_TABLE, feat, 48);
    put_ext(&off, 0xdeadbeef, "opaque!", 7);
    put_ext(&off, 0, "", 0);
    memcpy(hdr + off, "base.img", 8);
    be64_store(hdr + 8, off);
    be32_store(hdr + 16, 8);
    assert_int_equal(parse(&ih, err), 0);
    assert_string_equal(ih.backing_file, "base.img");
    assert_string_equal(ih.backing_format, "qcow2");
    assert_int_equal(ih.nb_exts, 2);
    assert_non_null(qcow2_feature_name(&ih, 0, 5, name, sizeof(name)));
    assert_string_equal(name, "future feature");
    assert_null(qcow2_feature_name(&ih, 0, 6, name, sizeof(name)));

    assert_int_equal(qcow2_header_serialize(&ih, out, sizeof(out)), 0);
    assert_int_equal(qcow2_header_parse(out, sizeof(out), FILE_SIZE, &ih2, err, sizeof(err)), 0);
    assert_string_equal(ih2.backing_file, "base.img");
    assert_string_equal(ih2.backing_format, "qcow2");
    assert_int_equal(ih2.nb_exts, 2);
    assert_int_equal(ih2.exts[1].type, 0xdeadbeef);
    assert_int_equal(ih2.exts[1].len, 7);
    assert_memory_equal(ih2.exts[1].data, "opaque!", 7);
    qcow2_header_free(&ih);
    qcow2_header_free(&ih2);
}

static void test_unknown_incompatible_named(void **st)
{
    struct qcow2_image_header ih;
    uint8_t feat[48] = { 0, 9 };
    char err[256];
    size_t off = 112;

    make_v3();
    memcpy(feat + 2, "time travel", 11);
    put_ext(&off, QCOW2_EXT_FEATURE_TABLE, feat, 48);
    be64_store(hdr + 72, 1ULL << 9);
    assert_int_equal(parse(&ih, err), -ENOTSUP);
    assert_non_null(strstr(err, "time travel"));
    be64_store(hdr + 72, 1ULL << 10);
    assert_int_equal(parse(&ih, err), -ENOTSUP);
    assert_non_null(strstr(err, "Unsupported qcow2 feature"));
}

struct bad {
    size_t off;
    int width;
    uint64_t val;
    const char *words;
};

static void test_hostile_fields(void **st)
{
    static const struct bad cases[] = {
        { 0, 4, 0x12345678, "not in qcow2 format" },
        { 4, 4, 4, "version" },
        { 20, 4, 8, "cluster size" },
        { 20, 4, 22, "cluster size" },
        { 24, 8, 1ULL << 60, "too large" },
        { 32, 4, 2, "encrypted" },
        { 36, 4, 1, "too small" },
        { 36, 4, 0x1000000, "L1 table too large" },
        { 40, 8, 3 * CS + 8, "not cluster aligned" },
        { 40, 8, 100 * CS, "beyond the end" },
        { 40, 8, 1 * CS, "overlap" },
        { 48, 8, 0, "beyond the end" },
        { 56, 4, 0, "invalid size" },
        { 56, 4, 1000, "invalid size" },
        { 60, 4, 1000000, "snapshots" },
        { 72, 8, QCOW2_INCOMPAT_EXTL2, "Unsupported" },
        { 72, 8, QCOW2_INCOMPAT_DATA_FILE, "Unsupported" },
        { 72, 8, QCOW2_INCOMPAT_COMPRESSION, "compression" },
        { 96, 4, 7, "64 bits" },
        { 100, 4, 100, "header length" },
        { 100, 4, 113, "header length" },
        { 100, 4, 0x100000, "header length" },
        { 16, 4, 5000, "backing file" },
    };
    char err[256];

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct qcow2_image_header ih;

        make_v3();
        if (cases[i].off == 16)
            be64_store(hdr + 8, 512);
        if (cases[i].width == 4)
            be32_store(hdr + cases[i].off, (uint32_t)cases[i].val);
        else
            be64_store(hdr + cases[i].off, cases[i].val);
        err[0] = 0;
        if (parse(&ih, err) == 0) {
            qcow2_header_free(&ih);
            fail_msg("case %zu (offset %zu) was accepted", i, cases[i].off);
        }
        if (!strstr(err, cases[i].words))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].words);
    }
}

static void test_extension_overrun(void **st)
{
    struct qcow2_image_header ih;
    char err[256];

    make_v3();
    be32_store(hdr + 112, 0x1234);
    be32_store(hdr + 116, CS);
    assert_int_equal(parse(&ih, err), -EINVAL);
    assert_non_null(strstr(err, "extension"));
}

static void test_truncated(void **st)
{
    struct qcow2_image_header ih;
    char err[256];

    make_v3();
    for (size_t len = 0; len < 104; len += 13)
        assert_true(qcow2_header_parse(hdr, len, FILE_SIZE, &ih, err, sizeof(err)) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_v3),
        cmocka_unit_test(test_good_v2_defaults),
        cmocka_unit_test(test_extensions_roundtrip),
        cmocka_unit_test(test_unknown_incompatible_named),
        cmocka_unit_test(test_hostile_fields),
        cmocka_unit_test(test_extension_overrun),
        cmocka_unit_test(test_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
