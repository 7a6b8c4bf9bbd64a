/* SMBIOS 3.0 tables (DMTF DSP0134): what Linux prints as "DMI: ..." and
 * exports in /sys/class/dmi/id, and what dmidecode and systemd-detect-virt
 * read.  Without firmware vmon writes them itself, like the ACPI and MP
 * tables: a 64-bit entry point ("_SM3_") in the BIOS area, which guests find
 * by scanning 0xF0000-0xFFFFF on 16-byte boundaries, and the structure table
 * after it.  Rewritten at reset. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "hw/fw_bytes.h"
#include "hw/pc_devices.h"
#include "hw/smbios.h"
#include "version.h"
#include "util/log.h"

#define SMBIOS_BIOS_START_SEGMENT 0xe800  /* a 96 KiB "BIOS" below 1 MiB */
#define SMBIOS_CPU_MHZ 2000
#define SMBIOS_HANDLE_MEM_ARRAY 0x1000
#define SMBIOS_HANDLE_MEM_DEVICE 0x1100
#define SMBIOS_HANDLE_MEM_MAPPED 0x1300
#define SMBIOS_HANDLE_CPU 0x0400

struct smbios_writer {
    uint8_t *buf;
    size_t len, cap;
    bool overflow;
    unsigned nr_structs;
    size_t max_struct;
    /* The structure being built: its start and its next string number. */
    size_t cur;
    uint8_t nr_strings;
};

static uint8_t *sw_reserve(struct smbios_writer *w, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return NULL;
    }
    uint8_t *p = w->buf + w->len;

    memset(p, 0, n);
    w->len += n;
    return p;
}

/* Start a structure with a formatted area of `len` bytes (header included);
 * returns that area for the caller to fill, or NULL once the table is full. */
static uint8_t *sw_begin(struct smbios_writer *w, uint8_t type, uint8_t len, uint16_t handle)
{
    size_t start = w->len;
    uint8_t *p = sw_reserve(w, len);

    if (!p)
        return NULL;
    p[0] = type;
    p[1] = len;
    fw_put_le(p + 2, handle, 2);
    w->cur = start;
    w->nr_strings = 0;
    return p;
}

/* Append a string to the current structure's string set and store its
 * number at formatted offset `field`; an empty string stays "none" (0). */
static void sw_string(struct smbios_writer *w, size_t field, const char *s)
{
    size_t n = strlen(s);
    uint8_t *p;

    if (!n || w->overflow)
        return;
    p = sw_reserve(w, n + 1);
    if (!p)
        return;
    memcpy(p, s, n);
    w->buf[w->cur + field] = ++w->nr_strings;
}

/* Close the structure: its string set ends with an extra NUL (two when it
 * has no strings at all). */
static void sw_end(struct smbios_writer *w)
{
    sw_reserve(w, w->nr_strings ? 1 : 2);
    if (w->overflow)
        return;
    w->nr_structs++;
    if (w->len - w->cur > w->max_struct)
        w->max_struct = w->len - w->cur;
}

static void type0_bios(struct smbios_writer *w)
{
    uint8_t *p = sw_begin(w, 0, 0x1a, 0x0000);

    if (!p)
        return;
    sw_string(w, 4, "vmon");
    sw_string(w, 5, VMON_VERSION);
    fw_put_le(p + 6, SMBIOS_BIOS_START_SEGMENT, 2);
    sw_string(w, 8, "01/01/2026");
    p[9] = 0;                          /* ROM size: 64 KiB */
    fw_put_le(p + 10, 1ULL << 3, 8);   /* "characteristics not supported" */
    p[0x13] = 1u << 4;                 /* ext. byte 2: a virtual machine */
    p[0x14] = 0;                       /* system BIOS major.minor release */
    p[0x15] = 0;
    p[0x16] = 0xff;                    /* no embedded controller */
    p[0x17] = 0xff;
    fw_put_le(p + 0x18, 0, 2);         /* extended ROM size */
    sw_end(w);
}

static void type1_system(struct smbios_writer *w, const struct vm_config *cfg)
{
    uint8_t *p = sw_begin(w, 1, 0x1b, 0x0100);

    if (!p)
        return;
    sw_string(w, 4, "vmon");
    sw_string(w, 5, "Standard PC (vmon)");
    sw_string(w, 6, VMON_VERSION);
    /* The UUID's first three fields are little-endian in SMBIOS 2.6+, so
     * a guest's dmidecode prints the text the user gave with -uuid. */
    if (cfg && cfg->has_uuid) {
        const uint8_t *u = cfg->uuid;
        uint8_t *d = p + 8;

        d[0] = u[3], d[1] = u[2], d[2] = u[1], d[3] = u[0];
        d[4] = u[5], d[5] = u[4];
        d[6] = u[7], d[7] = u[6];
        memcpy(d + 8, u + 8, 8);
    }
    p[0x18] = 6;                       /* wake-up type: power switch */
    sw_string(w, 0x1a, "vmon");        /* family */
    sw_end(w);
}

static void type3_chassis(struct smbios_writer *w)
{
    uint8_t *p = sw_begin(w, 3, 0x16, 0x0300);

    if (!p)
        return;
    sw_string(w, 4, "vmon");
    p[5] = 1;                          /* type: other */
    p[9] = 3, p[10] = 3, p[11] = 3;    /* boot-up, power, thermal: safe */
    p[12] = 2;                         /* security status: unknown */
    sw_end(w);
}

static void type4_cpu(struct smbios_writer *w, const struct machine *m, unsigned i)
{
    uint8_t *p = sw_begin(w, 4, 0x30, (uint16_t)(SMBIOS_HANDLE_CPU + i));
    uint32_t leaf1[4];
    char socket[16];

    if (!p)
        return;
    snprintf(socket, sizeof(socket), "CPU %u", i);
    sw_string(w, 4, socket);
    p[5] = 3;                          /* central processor */
    p[6] = 0xfe;                       /* family: see family 2 */
    sw_string(w, 7, "vmon");
    cpuid_query(&m->cpuid, i, 1, 0, leaf1);
    fw_put_le(p + 8, leaf1[0], 4);     /* processor ID: CPUID.1 EAX, EDX */
    fw_put_le(p + 12, leaf1[3], 4);
    fw_put_le(p + 0x14, SMBIOS_CPU_MHZ, 2);    /* max speed */
    fw_put_le(p + 0x16, SMBIOS_CPU_MHZ, 2);    /* current speed */
    p[0x18] = 0x41;                    /* socket populated, CPU enabled */
    p[0x19] = 1;                       /* upgrade: other */
    fw_put_le(p + 0x1a, 0xffff, 2);    /* no cache information */
    fw_put_le(p + 0x1c, 0xffff, 2);
    fw_put_le(p + 0x1e, 0xffff, 2);
    p[0x23] = 1, p[0x24] = 1, p[0x25] = 1;      /* cores, enabled, threads */
    fw_put_le(p + 0x26, 1u << 1, 2);   /* characteristics: unknown */
    fw_put_le(p + 0x28, 0x01, 2);      /* family 2: other */
    fw_put_le(p + 0x2a, 1, 2);         /* core/enabled/thread counts 2 */
    fw_put_le(p + 0x2c, 1, 2);
    fw_put_le(p + 0x2e, 1, 2);
    sw_end(w);
}

static void type16_memory_array(struct smbios_writer *w, uint64_t ram)
{
    uint8_t *p = sw_begin(w, 16, 0x17, SMBIOS_HANDLE_MEM_ARRAY);
    uint64_t kib = ram >> 10;

    if (!p)
        return;
    p[4] = 1;                          /* location: other */
    p[5] = 3;                          /* use: system memory */
    p[6] = 6;                          /* error correction: multi-bit ECC */
    if (kib < 0x80000000ULL) {
        fw_put_le(p + 7, kib, 4);
    } else {
        fw_put_le(p + 7, 0x80000000U, 4);
        fw_put_le(p + 0x0f, ram, 8);   /* extended capacity, bytes */
    }
    fw_put_le(p + 0x0b, 0xfffe, 2);    /* no error information */
    fw_put_le(p + 0x0d, 1, 2);         /* one device */
    sw_end(w);
}

static void type17_memory_device(struct smbios_writer *w, uint64_t ram)
{
    uint8_t *p = sw_begin(w, 17, 0x28, SMBIOS_HANDLE_MEM_DEVICE);
    uint64_t mib = ram >> 20;

    if (!p)
        return;
    fw_put_le(p + 4, SMBIOS_HANDLE_MEM_ARRAY, 2);
    fw_put_le(p + 6, 0xfffe, 2);       /* no error information */
    fw_put_le(p + 8, 0xffff, 2);       /* total and data width unknown */
    fw_put_le(p + 10, 0xffff, 2);
    if (mib < 0x7fff) {
        fw_put_le(p + 12, mib, 2);
    } else {
        fw_put_le(p + 12, 0x7fff, 2);  /* see extended size */
        fw_put_le(p + 0x1c, mib, 4);
    }
    p[14] = 9;                         /* form factor: DIMM */
    sw_string(w, 16, "DIMM 0");
    p[18] = 7;                         /* type: RAM */
    fw_put_le(p + 19, 1u << 1, 2);     /* type detail: other */
    sw_string(w, 0x17, "vmon");
    sw_end(w);
}

/* One mapped-address structure per RAM range (below 4 GiB, above it). */
static void type19_mapped(struct smbios_writer *w, unsigned n, uint64_t start, uint64_t size)
{
    uint8_t *p = sw_begin(w, 19, 0x1f, (uint16_t)(SMBIOS_HANDLE_MEM_MAPPED + n));
    uint64_t end = start + size - 1;

    if (!p)
        return;
    if (end >> 10 < 0xffffffffULL) {
        fw_put_le(p + 4, start >> 10, 4);
        fw_put_le(p + 8, end >> 10, 4);
    } else {
        fw_put_le(p + 4, 0xffffffffU, 4);
        fw_put_le(p + 8, 0xffffffffU, 4);
        fw_put_le(p + 0x0f, start, 8);
        fw_put_le(p + 0x17, end, 8);
    }
    fw_put_le(p + 12, SMBIOS_HANDLE_MEM_ARRAY, 2);
    p[14] = 1;                         /* partition width */
    sw_end(w);
}

static void type32_boot(struct smbios_writer *w)
{
    if (!sw_begin(w, 32, 0x0b, 0x2000))
        return;
    sw_end(w);                         /* status 0: no errors detected */
}

size_t smbios_build_tables(const struct machine *m, uint8_t *buf, size_t cap,
                           unsigned *nr_structs, size_t *max_struct)
{
    struct smbios_writer w = { .buf = buf, .cap = cap };
    unsigned nr_cpus = m->nr_vcpus > 0 ? (unsigned)m->nr_vcpus : 1;

    type0_bios(&w);
    type1_system(&w, m->cfg);
    type3_chassis(&w);
    for (unsigned i = 0; i < nr_cpus; i++)
        type4_cpu(&w, m, i);
    type16_memory_array(&w, m->ram_size);
    type17_memory_device(&w, m->ram_size);
    type19_mapped(&w, 0, 0, m->lowmem_size);
    if (m->highmem_size)
        type19_mapped(&w, 1, MACHINE_HIGHMEM_BASE, m->highmem_size);
    type32_boot(&w);
    if (sw_begin(&w, 127, 4, 0x7f00))
        sw_end(&w);
    if (w.overflow)
        return 0;
    *nr_structs = w.nr_structs;
    *max_struct = w.max_struct;
    return w.len;
}

void smbios_build_entry(uint8_t ep[SMBIOS_EP_SIZE], uint64_t table_addr, size_t table_len)
{
    memset(ep, 0, SMBIOS_EP_SIZE);
    memcpy(ep, "_SM3_", 5);
    ep[6] = SMBIOS_EP_SIZE;
    ep[7] = 3;                         /* SMBIOS 3.0.0 */
    ep[8] = 0;
    ep[9] = 0;
    ep[10] = 1;                        /* entry point revision: 3.0 */
    fw_put_le(ep + 12, table_len, 4);  /* maximum structure table size */
    fw_put_le(ep + 16, table_addr, 8);
    ep[5] = fw_checksum(ep, SMBIOS_EP_SIZE);
}

static int smbios_build(struct machine *m)
{
    uint8_t tables[SMBIOS_TABLE_MAX], ep[SMBIOS_EP_SIZE];
    unsigned nr;
    size_t max, len = smbios_build_tables(m, tables, sizeof(tables), &nr, &max);

    if (!len) {
        error_report("smbios: tables for %d vCPUs do not fit in %u bytes", m->nr_vcpus,
                     SMBIOS_TABLE_MAX);
        return -E2BIG;
    }
    smbios_build_entry(ep, SMBIOS_TABLE_ADDR, len);
    if (machine_write_gpa(m, SMBIOS_EP_ADDR, ep, sizeof(ep)) < 0 ||
        machine_write_gpa(m, SMBIOS_TABLE_ADDR, tables, len) < 0) {
        error_report("smbios: cannot write at 0x%llx", (unsigned long long)SMBIOS_EP_ADDR);
        return -EFAULT;
    }
    return 0;
}

static void smbios_reset(void *opaque)
{
    smbios_build(opaque);
}

int smbios_create(struct machine *m)
{
    int ret = smbios_build(m);

    if (ret < 0)
        return ret;
    return machine_add_device(m, "smbios", m, smbios_reset, NULL);
}
