/* vmon's CPUID model: what it advertises, what it must never advertise, the
 * topology it reports, and Intel's out-of-range rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cpu/cpuid.h"

enum { EAX, EBX, ECX, EDX };

static void query(const struct cpuid_model *m, unsigned apic, uint32_t fn, uint32_t idx,
                  uint32_t out[4])
{
    memset(out, 0xcc, 4 * sizeof(out[0]));
    cpuid_query(m, apic, fn, idx, out);
}

static void test_vendor_and_brand(void **st)
{
    struct cpuid_model m;
    uint32_t r[4];
    char vendor[13] = { 0 }, brand[49] = { 0 };

    cpuid_model_build(&m, 1);
    query(&m, 0, 0, 0, r);
    memcpy(vendor, &r[EBX], 4);
    memcpy(vendor + 4, &r[EDX], 4);
    memcpy(vendor + 8, &r[ECX], 4);
    assert_string_equal(vendor, "GenuineIntel");
    assert_int_equal(r[EAX], 0xb);

    for (uint32_t i = 0; i < 3; i++) {
        query(&m, 0, 0x80000002 + i, 0, r);
        memcpy(brand + 16 * i, r, 16);
    }
    assert_string_equal(brand, "vmon virtual CPU");

    query(&m, 0, 0x80000000, 0, r);
    assert_int_equal(r[EAX], 0x80000008);
    query(&m, 0, 0x80000008, 0, r);
    assert_int_equal(r[EAX] & 0xff, 40);        /* physical address bits */
    assert_int_equal((r[EAX] >> 8) & 0xff, 48); /* linear address bits */

    query(&m, 0, 1, 0, r);
    assert_int_equal(r[EAX], CPUID_VMON_SIGNATURE);
    assert_int_equal((r[EBX] >> 8) & 0xff, 8);  /* CLFLUSH: 64-byte lines */
}

static void test_feature_bits(void **st)
{
    struct cpuid_model m;
    uint32_t r[4];
    const uint32_t edx_want = 1u << 0 | 1u << 2 | 1u << 3 | 1u << 4 | 1u << 5 | 1u << 6 |
                              1u << 7 | 1u << 8 | 1u << 9 | 1u << 11 | 1u << 12 | 1u << 13 |
                              1u << 14 | 1u << 15 | 1u << 16 | 1u << 17 | 1u << 19 |
                              1u << 23 | 1u << 24 | 1u << 25 | 1u << 26;
    const uint32_t ecx_want = 1u << 0 | 1u << 13 | 1u << 23 | 1u << 31;

    cpuid_model_build(&m, 1);
    query(&m, 0, 1, 0, r);
    assert_int_equal(r[EDX], edx_want);          /* also: no VME, no HTT on 1 CPU */
    assert_int_equal(r[ECX], ecx_want);
    assert_false(r[ECX] & 1u << 22);             /* MOVBE */
    assert_false(r[ECX] & 1u << 26);             /* XSAVE */
    assert_false(r[ECX] & 1u << 27);             /* OSXSAVE */
    assert_false(r[ECX] & 1u << 28);             /* AVX */
    assert_false(r[ECX] & 1u << 21);             /* x2APIC */
    assert_false(r[ECX] & 1u << 24);             /* TSC deadline */
    assert_false(r[ECX] & 1u << 5);              /* VMX */

    /* Leaf 7 (FSGSBASE, INVPCID, AVX2, SMEP...) is entirely empty. */
    for (uint32_t idx = 0; idx < 3; idx++) {
        query(&m, 0, 7, idx, r);
        assert_int_equal(r[EAX] | r[EBX] | r[ECX] | r[EDX], 0);
    }

    query(&m, 0, 0x80000001, 0, r);
    assert_int_equal(r[ECX], 1u << 0);                               /* LAHF_LM */
    assert_int_equal(r[EDX], 1u << 11 | 1u << 20 | 1u << 27 | 1u << 29);
    assert_false(r[EDX] & 1u << 26);                                  /* 1 GiB pages */

    /* Our own hypervisor leaf, not KVM's paravirtual one. */
    query(&m, 0, 0x40000000, 0, r);
    assert_int_equal(r[EAX], 0x40000000);
    assert_memory_equal(&r[EBX], "vmon", 4);
    assert_memory_not_equal(&r[EBX], "KVMK", 4);
}

static void test_topology(void **st)
{
    struct cpuid_model m;
    uint32_t r[4];

    cpuid_model_build(&m, 1);
    query(&m, 0, 1, 0, r);
    assert_false(r[EDX] & 1u << 28);             /* HTT only with several CPUs */

    cpuid_model_build(&m, 3);
    for (unsigned apic = 0; apic < 3; apic++) {
        query(&m, apic, 1, 0, r);
        assert_true(r[EDX] & 1u << 28);
        assert_int_equal(r[EBX] >> 24, apic);
        assert_int_equal((r[EBX] >> 16) & 0xff, 4); /* IDs 0-3 addressable */

        query(&m, apic, 0xb, 0, r);                 /* SMT level */
        assert_int_equal(r[EAX] & 0x1f, 0);
        assert_int_equal(r[EBX] & 0xffff, 1);
        assert_int_equal(r[ECX], 1u << 8 | 0);
        assert_int_equal(r[EDX], apic);
        query(&m, apic, 0xb, 1, r);                 /* core level */
        assert_int_equal(r[EAX] & 0x1f, 2);
        assert_int_equal(r[EBX] & 0xffff, 3);
        assert_int_equal(r[ECX], 2u << 8 | 1);
        assert_int_equal(r[EDX], apic);
        query(&m, apic, 0xb, 5, r);                 /* invalid level echoes ECX */
        assert_int_equal(r[EAX], 0);
        assert_int_equal(r[EBX], 0);
        assert_int_equal(r[ECX], 5);
        assert_int_equal(r[EDX], apic);
    }

    /* Leaf 4: cores per package agree with leaf 0xb; caches end in a null. */
    query(&m, 0, 4, 0, r);
    assert_int_equal(r[EAX] & 0x1f, 1);              /* data cache */
    assert_int_equal((r[EAX] >> 26) + 1, 4);
    query(&m, 0, 4, 3, r);
    assert_int_equal((r[EAX] >> 5) & 7, 3);          /* L3 */
    assert_int_equal(((r[EAX] >> 14) & 0xfff) + 1, 4); /* shared by the package */
    query(&m, 0, 4, 4, r);
    assert_int_equal(r[EAX] & 0x1f, 0);
    query(&m, 0, 4, 9, r);
    assert_int_equal(r[EAX] & 0x1f, 0);
}

static void test_out_of_range(void **st)
{
    struct cpuid_model m;
    uint32_t r[4], top[4];

    cpuid_model_build(&m, 2);
    query(&m, 1, 0xb, 1, top);
    /* Above the basic maximum, above the extended maximum, in no range at
     * all and past our hypervisor range: all give the highest basic leaf. */
    static const uint32_t fns[] = { 0xc, 0x1f, 0x12345, 0x80000009, 0x8000ffff,
                                    0xc0000000, 0x40000001, 0xffffffff };
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        query(&m, 1, fns[i], 1, r);
        assert_memory_equal(r, top, sizeof(r));
    }
    /* In range but with nothing to say: zeros, not the fallback. */
    query(&m, 1, 0x80000007, 0, r);
    assert_int_equal(r[EAX] | r[EBX] | r[ECX] | r[EDX], 0);
}

static void test_model_fits(void **st)
{
    struct cpuid_model m;

    cpuid_model_build(&m, 255);
    assert_true(m.nr > 20);
    assert_true(m.nr < CPUID_MAX_ENTRIES); /* no entry silently dropped */
    for (int i = 0; i < m.nr; i++)
        for (int j = i + 1; j < m.nr; j++)
            assert_false(m.e[i].function == m.e[j].function && m.e[i].index == m.e[j].index);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vendor_and_brand),
        cmocka_unit_test(test_feature_bits),
        cmocka_unit_test(test_topology),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_model_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
