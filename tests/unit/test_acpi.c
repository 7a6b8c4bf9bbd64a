/* ACPI and MP tables as a guest finds them: RSDP by scanning the BIOS
 * area, checksums and lengths of every table, FADT fields, one MADT
 * processor entry per vCPU, a DSDT whose AML parses with every PkgLength
 * nesting exactly and that carries \_S5 and the PCI root bridge, and the
 * tables coming back after the guest scribbled over them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "hw/acpi.h"
#include "hw/pc_devices.h"
#include "hw/pci.h"
#include "hw/pm.h"
#include "machine/machine.h"

static struct vm_config cfg = { .ram_size = 64 * MiB, .smp = 3, .serial = SERIAL_STDIO };

static int setup_n(void **st, int nr_vcpus)
{
    struct machine *m = calloc(1, sizeof(*m));

    assert_int_equal(machine_init(m, &cfg), 0);
    m->nr_vcpus = nr_vcpus;   /* the tables only read the count */
    assert_int_equal(acpi_create(m), 0);
    assert_int_equal(mptable_create(m), 0);
    *st = m;
    return 0;
}

static int setup(void **st)
{
    return setup_n(st, 3);
}

static int setup_one(void **st)
{
    return setup_n(st, 1);
}

static int teardown(void **st)
{
    struct machine *m = *st;

    m->nr_vcpus = 0;
    machine_destroy(m);
    free(m);
    return 0;
}

static uint64_t le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;

    while (n--)
        s = (uint8_t)(s + *p++);
    return s;
}

/* A table at gpa with a valid header; returns its host pointer. */
static const uint8_t *table(struct machine *m, uint64_t gpa, const char *sig)
{
    const uint8_t *t = machine_gpa_to_hva(m, gpa, 36);
    uint32_t len;

    assert_non_null(t);
    assert_memory_equal(t, sig, 4);
    len = (uint32_t)le(t + 4, 4);
    assert_true(len >= 36);
    assert_true(gpa >= 0xe0000 && gpa + len <= 0x100000);
    assert_non_null(machine_gpa_to_hva(m, gpa, len));
    assert_int_equal(sum(t, len), 0);
    return t;
}

/* Linux's scan: 16-byte boundaries of 0xE0000-0xFFFFF. */
static const uint8_t *find_rsdp(struct machine *m)
{
    for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
        const uint8_t *p = machine_gpa_to_hva(m, a, 36);
        if (p && !memcmp(p, "RSD PTR ", 8) && sum(p, 20) == 0)
            return p;
    }
    return NULL;
}

static void sdt_tables(struct machine *m, const uint8_t **fadt, const uint8_t **madt)
{
    const uint8_t *rsdp = find_rsdp(m), *rsdt, *xsdt;

    assert_non_null(rsdp);
    assert_int_equal(rsdp[15], 2);
    assert_int_equal(le(rsdp + 20, 4), 36);
    assert_int_equal(sum(rsdp, 36), 0);
    rsdt = table(m, le(rsdp + 16, 4), "RSDT");
    xsdt = table(m, le(rsdp + 24, 8), "XSDT");
    assert_int_equal(le(rsdt + 4, 4), 36 + 2 * 4);
    assert_int_equal(le(xsdt + 4, 4), 36 + 2 * 8);
    for (int i = 0; i < 2; i++)
        assert_int_equal(le(rsdt + 36 + 4 * i, 4), le(xsdt + 36 + 8 * i, 8));
    *fadt = table(m, le(xsdt + 36, 8), "FACP");
    *madt = table(m, le(xsdt + 44, 8), "APIC");
}

static void test_rsdp_and_fadt(void **st)
{
    struct machine *m = *st;
    const uint8_t *fadt, *madt, *facs;

    sdt_tables(m, &fadt, &madt);
    assert_int_equal(le(fadt + 4, 4), 244);
    assert_int_equal(le(fadt + 46, 2), PM_SCI_IRQ);
    assert_int_equal(le(fadt + 48, 4), 0);                /* no SMI_CMD */
    assert_int_equal(le(fadt + 56, 4), PM1A_EVT_BLK);
    assert_int_equal(le(fadt + 64, 4), PM1A_CNT_BLK);
    assert_int_equal(le(fadt + 76, 4), PM_TMR_BLK);
    assert_int_equal(fadt[88], 4);
    assert_int_equal(fadt[89], 2);
    assert_int_equal(fadt[91], 4);
    assert_true(le(fadt + 109, 2) & 0x2);                 /* 8042 */
    assert_true(le(fadt + 112, 4) & (1u << 10));          /* RESET_REG_SUP */
    assert_false(le(fadt + 112, 4) & (1u << 20));         /* not HW-reduced */
    assert_int_equal(fadt[116], 1);                       /* system I/O */
    assert_int_equal(le(fadt + 120, 8), 0xcf9);
    assert_int_equal(fadt[128], 0x06);
    assert_int_equal(le(fadt + 40, 4), le(fadt + 140, 8)); /* DSDT == X_DSDT */
    assert_int_not_equal(le(fadt + 36, 4), 0);            /* FIRMWARE_CTRL ... */
    assert_int_equal(le(fadt + 132, 8), 0);               /* ... or X_, not both */
    assert_int_equal(le(fadt + 152, 8), PM1A_EVT_BLK);     /* X_PM1a_EVT_BLK */
    assert_int_equal(le(fadt + 212, 8), PM_TMR_BLK);
    facs = machine_gpa_to_hva(m, le(fadt + 36, 4), 64);
    assert_memory_equal(facs, "FACS", 4);
    assert_int_equal(le(fadt + 36, 4) % 64, 0);
    table(m, le(fadt + 40, 4), "DSDT");
}

static void check_madt(struct machine *m, int n)
{
    const uint8_t *fadt, *madt, *e, *end;
    int cpus = 0, ioapics = 0, isos = 0, nmis = 0;

    sdt_tables(m, &fadt, &madt);
    assert_int_equal(le(madt + 36, 4), 0xfee00000);
    assert_int_equal(le(madt + 40, 4), 1);
    end = madt + le(madt + 4, 4);
    for (e = madt + 44; e < end; e += e[1]) {
        assert_true(e[1] >= 2 && e + e[1] <= end);
        switch (e[0]) {
        case 0:
            assert_int_equal(e[1], 8);
            assert_int_equal(e[3], cpus);
            assert_int_equal(le(e + 4, 4) & 1, 1);
            cpus++;
            break;
        case 1:
            assert_int_equal(e[2], ACPI_IOAPIC_ID);
            assert_int_equal(le(e + 4, 4), 0xfec00000);
            assert_int_equal(le(e + 8, 4), 0);
            ioapics++;
            break;
        case 2:
            if (e[3] == 0)
                assert_int_equal(le(e + 4, 4), 2);
            else {
                assert_int_equal(e[3], 9);
                assert_int_equal(le(e + 4, 4), 9);
                assert_int_equal(le(e + 8, 2), 0x000d);   /* level, active high */
            }
            isos++;
            break;
        case 4:
            assert_int_equal(e[5], 1);                    /* LINT1 */
            nmis++;
            break;
        default:
            fail_msg("unexpected MADT entry type %d", e[0]);
        }
    }
    assert_ptr_equal(e, end);
    assert_int_equal(cpus, n);
    assert_int_equal(ioapics, 1);
    assert_int_equal(isos, 2);
    assert_int_equal(nmis, 1);
}

static void test_madt(void **st)
{
    check_madt(*st, 3);
}

static void test_madt_one_cpu(void **st)
{
    check_madt(*st, 1);
}

/* ---- a small AML reader for the constructs the DSDT uses ---- */

struct aml_seen {
    int s5_typ;
    bool pci0_hid, com1_hid, rtc_hid, kbd_hid;
    unsigned prt_entries;
    uint32_t mem_min, mem_max;
    bool io_window_c000;
};

static const uint8_t *pkg_length(const uint8_t *p, const uint8_t *end, const uint8_t **pkg_end)
{
    const uint8_t *start = p;
    unsigned extra;
    uint32_t len;

    assert_true(p < end);
    extra = p[0] >> 6;
    len = extra ? (p[0] & 0x0f) : (p[0] & 0x3f);
    assert_true(p + 1 + extra <= end);
    for (unsigned i = 0; i < extra; i++)
        len |= (uint32_t)p[1 + i] << (4 + 8 * i);
    *pkg_end = start + len;
    assert_true(*pkg_end <= end);
    return p + 1 + extra;
}

static const uint8_t *name_string(const uint8_t *p, const uint8_t *end, char *last)
{
    unsigned segs = 1;

    if (*p == '\\')
        p++;
    if (*p == 0x2e) {
        segs = 2;
        p++;
    } else if (*p == 0x2f) {
        segs = p[1];
        p += 2;
    }
    assert_true(p + 4 * segs <= end);
    memcpy(last, p + 4 * (segs - 1), 4);
    last[4] = 0;
    return p + 4 * segs;
}

static const uint8_t *integer(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    static const unsigned sizes[] = { [0x0a] = 1, [0x0b] = 2, [0x0c] = 4, [0x0e] = 8 };

    assert_true(p < end);
    if (*p == 0x00 || *p == 0x01) {
        *v = *p;
        return p + 1;
    }
    if (*p == 0xff) {
        *v = ~0ULL;
        return p + 1;
    }
    assert_true(*p <= 0x0e && sizes[*p]);
    assert_true(p + 1 + sizes[*p] <= end);
    *v = le(p + 1, sizes[*p]);
    return p + 1 + sizes[*p];
}

static void resources(const uint8_t *p, const uint8_t *end, struct aml_seen *s)
{
    while (p < end) {
        if (p[0] == 0x79)
            return;
        if (p[0] & 0x80) {
            unsigned len = (unsigned)le(p + 1, 2);
            assert_true(p + 3 + len <= end);
            if (p[0] == 0x87 && p[3] == 0) {
                s->mem_min = (uint32_t)le(p + 10, 4);
                s->mem_max = (uint32_t)le(p + 14, 4);
                assert_int_equal(le(p + 22, 4), s->mem_max - s->mem_min + 1);
            }
            if (p[0] == 0x88 && p[3] == 1 && le(p + 8, 2) == PCI_IO_WINDOW_BASE)
                s->io_window_c000 = true;
            p += 3 + len;
        } else {
            p += 1 + (p[0] & 7);
        }
    }
    fail_msg("resource template without an end tag");
}

static const uint8_t *data_object(const uint8_t *p, const uint8_t *end, const char *name,
                                  struct aml_seen *s, int depth);

static const uint8_t *package(const uint8_t *p, const uint8_t *end, const char *name,
                              struct aml_seen *s, int depth)
{
    const uint8_t *pend;
    unsigned count, seen = 0;

    p = pkg_length(p + 1, end, &pend);
    count = *p++;
    while (p < pend) {
        const uint8_t *el = p;
        p = data_object(p, pend, name, s, depth + 1);
        if (!strcmp(name, "_S5_") && depth == 0 && seen == 0) {
            uint64_t v;
            integer(el, pend, &v);
            s->s5_typ = (int)v;
        }
        seen++;
    }
    assert_ptr_equal(p, pend);
    assert_int_equal(seen, count);
    if (!strcmp(name, "_PRT") && depth == 1) {
        assert_int_equal(count, 4);
        s->prt_entries++;
    }
    return pend;
}

static const uint8_t *data_object(const uint8_t *p, const uint8_t *end, const char *name,
                                  struct aml_seen *s, int depth)
{
    const uint8_t *pend;
    uint64_t v;

    switch (*p) {
    case 0x12:
        return package(p, end, name, s, depth);
    case 0x11: {
        p = pkg_length(p + 1, end, &pend);
        p = integer(p, pend, &v);
        assert_int_equal(v, pend - p);
        if (!strcmp(name, "_CRS"))
            resources(p, pend, s);
        return pend;
    }
    case 0x0d:
        while (p < end && *p)
            p++;
        assert_true(p < end);
        return p + 1;
    default:
        p = integer(p, end, &v);
        if (!strcmp(name, "_HID") && v == 0x030ad041)
            s->pci0_hid = true;
        if (!strcmp(name, "_HID") && v == 0x0105d041)
            s->com1_hid = true;
        if (!strcmp(name, "_HID") && v == 0x000bd041)
            s->rtc_hid = true;
        if (!strcmp(name, "_HID") && v == 0x0303d041)
            s->kbd_hid = true;
        return p;
    }
}

static void term_list(const uint8_t *p, const uint8_t *end, struct aml_seen *s)
{
    char name[5];
    const uint8_t *pend;

    while (p < end) {
        switch (*p) {
        case 0x08:
            p = name_string(p + 1, end, name);
            p = data_object(p, end, name, s, 0);
            break;
        case 0x10:
            p = pkg_length(p + 1, end, &pend);
            p = name_string(p, pend, name);
            term_list(p, pend, s);
            p = pend;
            break;
        case 0x5b:
            assert_int_equal(p[1], 0x82);
            p = pkg_length(p + 2, end, &pend);
            p = name_string(p, pend, name);
            term_list(p, pend, s);
            p = pend;
            break;
        default:
            fail_msg("unexpected AML opcode 0x%02x", *p);
        }
    }
    assert_ptr_equal(p, end);
}

static void test_dsdt(void **st)
{
    struct machine *m = *st;
    const uint8_t *fadt, *madt, *dsdt;
    struct aml_seen s = { .s5_typ = -1 };

    sdt_tables(m, &fadt, &madt);
    dsdt = table(m, le(fadt + 40, 4), "DSDT");
    assert_int_equal(dsdt[8], 2);
    term_list(dsdt + 36, dsdt + le(dsdt + 4, 4), &s);
    assert_int_equal(s.s5_typ, PM_SLP_TYP_S5);
    assert_true(s.pci0_hid);
    assert_true(s.com1_hid);
    assert_true(s.rtc_hid);
    assert_true(s.kbd_hid);
    assert_int_equal(s.prt_entries, 31 * 4);
    assert_int_equal(s.mem_min, pci_mem_window_base(m));
    assert_int_equal(s.mem_min, 0x10000000);
    assert_int_equal(s.mem_max, 0xfebfffff);
    assert_true(s.io_window_c000);
}

static void test_rebuilt_on_reset(void **st)
{
    struct machine *m = *st;
    const uint8_t *fadt, *madt;

    memset(machine_gpa_to_hva(m, 0xe0000, 0x20000), 0xcc, 0x20000);
    assert_null(find_rsdp(m));
    for (int i = 0; i < m->nr_devices; i++)
        if (m->devices[i].reset)
            m->devices[i].reset(m->devices[i].opaque);
    sdt_tables(m, &fadt, &madt);
    assert_memory_equal(machine_gpa_to_hva(m, 0xf0000, 4), "_MP_", 4);
}

static void test_mptable(void **st)
{
    struct machine *m = *st;
    const uint8_t *fp = NULL, *ct, *e;
    unsigned procs = 0, ints = 0, n;

    for (uint64_t a = 0xf0000; a < 0x100000 && !fp; a += 16) {
        const uint8_t *p = machine_gpa_to_hva(m, a, 16);
        if (!memcmp(p, "_MP_", 4) && sum(p, 16) == 0)
            fp = p;
    }
    assert_non_null(fp);
    assert_int_equal(fp[9], 4);
    ct = machine_gpa_to_hva(m, le(fp + 4, 4), 44);
    assert_memory_equal(ct, "PCMP", 4);
    assert_int_equal(sum(ct, le(ct + 4, 2)), 0);
    n = (unsigned)le(ct + 34, 2);
    e = ct + 44;
    for (unsigned i = 0; i < n; i++) {
        if (e[0] == 0) {
            procs++;
            e += 20;
            continue;
        }
        if (e[0] == 3 && e[1] == 0) {
            ints++;
            if (e[5] == 0)
                assert_int_equal(e[7], 2);   /* IRQ0 -> pin 2 */
        }
        e += 8;
    }
    assert_ptr_equal(e, ct + le(ct + 4, 2));
    assert_int_equal(procs, 3);
    assert_int_equal(ints, 15);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rsdp_and_fadt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_madt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_madt_one_cpu, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_dsdt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuilt_on_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mptable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
