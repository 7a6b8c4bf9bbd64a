/* SMBIOS as a guest finds it: the "_SM3_" entry point by scanning the BIOS
 * area on 16-byte boundaries, its checksum and table pointer, and a
 * structure table that walks cleanly (formatted lengths, string sets
 * ending in a double NUL, string numbers in range, unique handles, type 127
 * last); one processor structure per vCPU, memory sizes, the -uuid bytes in
 * SMBIOS's mixed-endian order, the tables back after the guest scribbled
 * over them, and -- when dmidecode is installed -- dmidecode decoding them
 * without complaint. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "hw/pc_devices.h"
#include "hw/smbios.h"
#include "machine/machine.h"

#define BIOS_AREA 0xf0000ULL
#define BIOS_AREA_SIZE 0x10000ULL

static struct vm_config cfg = {
    .ram_size = 96 * MiB, .smp = 3, .serial = SERIAL_STDIO, .has_uuid = true,
    .uuid = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
              0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 },
};

struct found {
    const uint8_t *ep;
    uint64_t table_addr;
    uint32_t table_max;
    const uint8_t *table;
};

static int setup(void **st)
{
    struct machine *m = calloc(1, sizeof(*m));

    assert_int_equal(machine_init(m, &cfg), 0);
    m->nr_vcpus = 3;   /* the tables only read the count */
    assert_int_equal(mptable_create(m), 0);
    assert_int_equal(smbios_create(m), 0);
    *st = m;
    return 0;
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

/* What Linux's dmi_scan does without EFI: every 16 bytes of the BIOS area. */
static struct found scan(struct machine *m)
{
    const uint8_t *area = machine_gpa_to_hva(m, BIOS_AREA, BIOS_AREA_SIZE);
    struct found f = { 0 };

    assert_non_null(area);
    for (uint64_t off = 0; off < BIOS_AREA_SIZE; off += 16) {
        if (memcmp(area + off, "_SM3_", 5))
            continue;
        assert_null(f.ep);     /* exactly one entry point */
        f.ep = area + off;
    }
    assert_non_null(f.ep);
    assert_int_equal(f.ep[6], SMBIOS_EP_SIZE);
    assert_int_equal(sum(f.ep, f.ep[6]), 0);
    assert_int_equal(f.ep[7], 3);
    assert_int_equal(f.ep[10], 1);
    f.table_max = (uint32_t)le(f.ep + 12, 4);
    f.table_addr = le(f.ep + 16, 8);
    f.table = machine_gpa_to_hva(m, f.table_addr, f.table_max);
    assert_non_null(f.table);
    /* The table stays in the reserved BIOS area, clear of the MP table. */
    assert_true(f.table_addr >= BIOS_AREA + 0x1000);
    assert_true(f.table_addr + f.table_max <= BIOS_AREA + BIOS_AREA_SIZE);
    return f;
}

struct walked {
    unsigned count[128];
    const uint8_t *first[128];
    unsigned total;
};

/* The string numbered n of the structure at s (formatted length s[1]). */
static const char *string_of(const uint8_t *s, unsigned n)
{
    const char *p = (const char *)s + s[1];

    if (!n)
        return "";
    while (--n)
        p += strlen(p) + 1;
    return p;
}

static struct walked walk(const struct found *f)
{
    struct walked w = { 0 };
    uint16_t handles[256];
    size_t off = 0;

    for (;;) {
        const uint8_t *s = f->table + off;

        assert_true(off + 4 <= f->table_max);
        assert_true(s[1] >= 4 && off + s[1] <= f->table_max);
        for (unsigned i = 0; i < w.total; i++)
            assert_int_not_equal(handles[i], le(s + 2, 2));
        assert_true(w.total < 256);
        handles[w.total++] = (uint16_t)le(s + 2, 2);
        /* The string set: strings, then an extra NUL (or two NULs). */
        size_t p = off + s[1];
        unsigned nr_strings = 0;

        if (f->table[p] == 0) {
            p += 2;
        } else {
            while (f->table[p]) {
                size_t n = strnlen((const char *)f->table + p, f->table_max - p);

                assert_true(p + n < f->table_max);
                p += n + 1;
                nr_strings++;
            }
            p++;
        }
        assert_true(p <= f->table_max);
        if (s[0] < 128) {
            if (!w.count[s[0]])
                w.first[s[0]] = s;
            w.count[s[0]]++;
        }
        /* Every string-number field we fill is in range. */
        if (s[0] == 1)
            for (unsigned k = 4; k <= 7; k++)
                assert_true(s[k] <= nr_strings);
        off = p;
        if (s[0] == 127)
            break;
    }
    assert_int_equal(off, f->table_max);   /* type 127 is last */
    return w;
}

static void test_entry_point_and_walk(void **st)
{
    struct found f = scan(*st);
    struct walked w = walk(&f);

    for (int t = 0; t < 128; t++) {
        unsigned want = (t == 0 || t == 1 || t == 3 || t == 16 || t == 17 || t == 19 ||
                         t == 32 || t == 127) ? 1 : t == 4 ? 3 : 0;

        assert_int_equal(w.count[t], want);
    }
    const uint8_t *bios = w.first[0], *sys = w.first[1], *cpu = w.first[4];

    assert_string_equal(string_of(bios, bios[4]), "vmon");
    assert_true(bios[0x13] & (1u << 4));       /* "this is a virtual machine" */
    assert_string_equal(string_of(sys, sys[4]), "vmon");
    assert_string_equal(string_of(sys, sys[5]), "Standard PC (vmon)");
    /* 12345678-9abc-def0-...: the first three fields little-endian. */
    static const uint8_t uuid[16] = { 0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde,
                                      0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };
    assert_memory_equal(sys + 8, uuid, 16);
    assert_string_equal(string_of(cpu, cpu[4]), "CPU 0");
    assert_int_equal(cpu[0x18], 0x41);
}

static void test_cpu_ids_from_cpuid(void **st)
{
    struct machine *m = *st;
    struct found f = scan(m);
    struct walked w = walk(&f);
    uint32_t leaf1[4];

    cpuid_query(&m->cpuid, 0, 1, 0, leaf1);
    assert_int_equal(le(w.first[4] + 8, 4), leaf1[0]);
    assert_int_equal(le(w.first[4] + 12, 4), leaf1[3]);
}

static void test_memory_sizes(void **st)
{
    struct machine *m = *st;
    struct found f = scan(m);
    struct walked w = walk(&f);

    assert_int_equal(le(w.first[16] + 7, 4), cfg.ram_size >> 10);
    assert_int_equal(le(w.first[17] + 12, 2), cfg.ram_size >> 20);
    assert_int_equal(le(w.first[19] + 4, 4), 0);
    assert_int_equal(le(w.first[19] + 8, 4), (m->lowmem_size - 1) >> 10);
}

static void test_large_memory_uses_extended_fields(void **st)
{
    /* No RAM behind it: only the table builder runs. */
    struct machine m = { .cfg = &cfg, .nr_vcpus = 64, .ram_size = 64 * GiB,
                         .lowmem_size = 3 * GiB, .highmem_size = 61 * GiB };
    uint8_t buf[SMBIOS_TABLE_MAX];
    unsigned nr;
    size_t max, len;

    cpuid_model_build(&m.cpuid, 64);
    len = smbios_build_tables(&m, buf, sizeof(buf), &nr, &max);
    assert_true(len > 0);
    assert_int_equal(nr, 8 + 64 + 1);            /* two mapped ranges */
    struct found f = { .table = buf, .table_max = (uint32_t)len };
    struct walked w = walk(&f);

    assert_int_equal(w.count[4], 64);
    assert_int_equal(w.count[19], 2);
    assert_int_equal(le(w.first[17] + 12, 2), 0x7fff);
    assert_int_equal(le(w.first[17] + 0x1c, 4), 64 * 1024);
    /* Too small a buffer is refused, not overrun. */
    assert_int_equal(smbios_build_tables(&m, buf, len - 1, &nr, &max), 0);
}

static void test_rebuilt_on_reset(void **st)
{
    struct machine *m = *st;
    struct found f = scan(m);
    uint8_t *ep = machine_gpa_to_hva(m, SMBIOS_EP_ADDR, SMBIOS_EP_SIZE);
    uint8_t *table = machine_gpa_to_hva(m, f.table_addr, f.table_max);
    uint8_t ep_before[SMBIOS_EP_SIZE], *table_before = malloc(f.table_max);

    memcpy(ep_before, ep, sizeof(ep_before));
    memcpy(table_before, table, f.table_max);
    memset(ep, 0xcc, sizeof(ep_before));
    memset(table, 0xcc, f.table_max);
    for (int i = 0; i < m->nr_devices; i++)
        if (m->devices[i].reset)
            m->devices[i].reset(m->devices[i].opaque);
    assert_memory_equal(ep, ep_before, sizeof(ep_before));
    assert_memory_equal(table, table_before, f.table_max);
    free(table_before);
}

/* dmidecode's own dump format: the entry point at offset 0 with its table
 * address rewritten to 32, the table at 32. */
static void test_dmidecode_reads_it(void **st)
{
    struct machine *m = *st;
    struct found f = scan(m);
    char path[] = "/tmp/vmon-smbios-XXXXXX", cmd[256], line[512];
    uint8_t ep[SMBIOS_EP_SIZE];
    int fd;
    FILE *p;
    bool saw_vendor = false, saw_uuid = false, saw_cpu = false;

    if (access("/usr/sbin/dmidecode", X_OK) != 0) {
        printf("dmidecode not installed (scripts/install-deps.sh adds it): skipped\n");
        return;
    }
    smbios_build_entry(ep, 32, f.table_max);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    uint8_t pad[32 - SMBIOS_EP_SIZE] = { 0 };
    assert_int_equal(write(fd, ep, sizeof(ep)), sizeof(ep));
    assert_int_equal(write(fd, pad, sizeof(pad)), sizeof(pad));
    assert_int_equal(write(fd, f.table, f.table_max), (ssize_t)f.table_max);
    close(fd);
    snprintf(cmd, sizeof(cmd), "/usr/sbin/dmidecode --from-dump %s 2>&1", path);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p)) {
        /* dmidecode flags malformed tables with these words. */
        assert_null(strstr(line, "Invalid"));
        assert_null(strstr(line, "<BAD INDEX>"));
        assert_null(strstr(line, "Wrong DMI structures"));
        assert_null(strstr(line, "Out of spec"));
        saw_vendor |= strstr(line, "Manufacturer: vmon") != NULL;
        saw_uuid |= strstr(line, "UUID: 12345678-9abc-def0-1122-334455667788") != NULL;
        saw_cpu |= strstr(line, "Socket Designation: CPU 2") != NULL;
    }
    assert_int_equal(pclose(p), 0);
    unlink(path);
    assert_true(saw_vendor);
    assert_true(saw_uuid);
    assert_true(saw_cpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_entry_point_and_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_ids_from_cpuid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_sizes, setup, teardown),
        cmocka_unit_test(test_large_memory_uses_extended_fields),
        cmocka_unit_test_setup_teardown(test_rebuilt_on_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dmidecode_reads_it, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
