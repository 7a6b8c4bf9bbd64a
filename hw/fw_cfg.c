/* fw_cfg: a few QEMU items plus "etc/e820" as a file, so firmware-style
 * guest code written against QEMU finds the machine's size and memory map.
 * Items are rebuilt on every select, so they always describe the machine
 * as it is (the e820 map grows during board_init). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/fw_cfg.h"
#include "hw/pc_devices.h"
#include "util/log.h"

#define FW_CFG_MAX_DATA 1024

struct fw_cfg {
    struct machine *m;
    uint16_t key;
    uint32_t offset;
    uint32_t len;
    uint8_t data[FW_CFG_MAX_DATA];   /* the selected item */
};

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* QEMU's etc/e820 layout: { u64 address, u64 length, u32 type } LE. */
static uint32_t build_e820(const struct machine *m, uint8_t *out)
{
    uint32_t n = 0;

    for (int i = 0; i < m->nr_e820 && n + 20 <= FW_CFG_MAX_DATA; i++) {
        put_le(out + n, m->e820[i].addr, 8);
        put_le(out + n + 8, m->e820[i].size, 8);
        put_le(out + n + 16, m->e820[i].type, 4);
        n += 20;
    }
    return n;
}

/* The file directory: big-endian count, then { BE32 size, BE16 select,
 * BE16 reserved, name[56] } per file. */
static uint32_t build_dir(const struct machine *m, uint8_t *out)
{
    uint8_t scratch[FW_CFG_MAX_DATA];
    uint8_t *e = out + 4;

    put_be(out, 1, 4);
    memset(e, 0, 64);
    put_be(e, build_e820(m, scratch), 4);
    put_be(e + 4, FW_CFG_FILE_FIRST, 2);
    strncpy((char *)e + 8, "etc/e820", FW_CFG_MAX_FILE_NAME - 1);
    return 4 + 64;
}

static void fw_cfg_select(struct fw_cfg *f, uint16_t key)
{
    struct machine *m = f->m;

    f->key = key;
    f->offset = 0;
    f->len = 0;
    memset(f->data, 0, sizeof(f->data));
    switch (key) {
    case FW_CFG_SIGNATURE:
        memcpy(f->data, "QEMU", 4);
        f->len = 4;
        break;
    case FW_CFG_ID:
        put_le(f->data, 1, 4);   /* traditional interface only */
        f->len = 4;
        break;
    case FW_CFG_UUID:
        f->len = 16;
        break;
    case FW_CFG_RAM_SIZE:
        put_le(f->data, m->ram_size, 8);
        f->len = 8;
        break;
    case FW_CFG_NB_CPUS:
    case FW_CFG_MAX_CPUS:
        put_le(f->data, (uint64_t)(m->nr_vcpus > 0 ? m->nr_vcpus : 1), 2);
        f->len = 2;
        break;
    case FW_CFG_FILE_DIR:
        f->len = build_dir(m, f->data);
        break;
    case FW_CFG_FILE_FIRST:
        f->len = build_e820(m, f->data);
        break;
    default:
        LOG(LOG_GUEST_ERRORS, "fw_cfg: unknown key 0x%04x selected\n", key);
        break;   /* reads as zeros */
    }
}

static uint64_t fw_cfg_read(void *opaque, uint64_t offset, unsigned size)
{
    struct fw_cfg *f = opaque;
    uint64_t v = 0;

    if (offset != 1)
        return 0;   /* the selector is write-only */
    /* Wider reads of the data port return consecutive bytes, as QEMU. */
    for (unsigned i = 0; i < size; i++) {
        uint8_t b = 0;
        if (f->offset < f->len)
            b = f->data[f->offset++];
        v |= (uint64_t)b << (8 * i);
    }
    return v;
}

static void fw_cfg_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct fw_cfg *f = opaque;

    if (offset == 0 && size >= 2)
        fw_cfg_select(f, (uint16_t)value);
    /* Data port writes: the interface is read-only for guests. */
}

static const struct io_ops fw_cfg_ops = {
    .read = fw_cfg_read,
    .write = fw_cfg_write,
};

static void fw_cfg_reset(void *opaque)
{
    fw_cfg_select(opaque, FW_CFG_SIGNATURE);
}

int fw_cfg_create(struct machine *m)
{
    struct fw_cfg *f = calloc(1, sizeof(*f));
    int ret;

    if (!f)
        return -ENOMEM;
    f->m = m;
    fw_cfg_reset(f);
    ret = machine_register_pio(m, FW_CFG_PORT_SEL, 2, &fw_cfg_ops, f, "fw_cfg");
    if (ret < 0) {
        free(f);
        return ret;
    }
    return machine_add_device(m, "fw_cfg", f, fw_cfg_reset, free);
}

/* ---- snapshot state (migration/vmstate.h) ---- */

#include "migration/migration.h"

static void fw_cfg_post_load(void *opaque)
{
    struct fw_cfg *f = opaque;

    if (f->len > FW_CFG_MAX_DATA)
        f->len = FW_CFG_MAX_DATA;
    if (f->offset > f->len)
        f->offset = f->len;
}

static const struct vmstate_field fw_cfg_fields[] = {
    VMS_U16_FIELD(struct fw_cfg, key), VMS_U32_FIELD(struct fw_cfg, offset),
    VMS_U32_FIELD(struct fw_cfg, len), VMS_U8_FIELD(struct fw_cfg, data),
    VMS_END,
};

const struct vmstate_desc fw_cfg_vmstate = {
    .name = "fw_cfg", .version = 1, .fields = fw_cfg_fields, .post_load = fw_cfg_post_load,
};
