/* AML encoders (ACPI 6.x, chapter 20 "ACPI Machine Language"). */
#include <stdlib.h>
#include <string.h>

#include "hw/acpi_aml.h"

#define AML_ZERO 0x00
#define AML_ONE 0x01
#define AML_ONES 0xff
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_NAME_OP 0x08
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_EXT_OP 0x5b
#define AML_DEVICE_OP 0x82
#define AML_ROOT_CHAR 0x5c
#define AML_DUAL_NAME 0x2e
#define AML_MULTI_NAME 0x2f

void aml_init(struct aml *a)
{
    memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
    free(a->buf);
    aml_init(a);
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
    if (a->error)
        return;
    if (a->len + n > a->cap) {
        size_t cap = MAX(a->cap * 2, a->len + n + 64);
        uint8_t *nb = realloc(a->buf, cap);
        if (!nb) {
            a->error = true;
            return;
        }
        a->buf = nb;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

void aml_append(struct aml *a, const struct aml *b)
{
    if (b->error)
        a->error = true;
    aml_bytes(a, b->buf, b->len);
}

static void put_le(struct aml *a, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        aml_byte(a, (uint8_t)(v >> (8 * i)));
}

/* PkgLength counts itself: 1 byte up to 63, else a lead byte holding the
 * low nibble and the number of following bytes. */
static void aml_pkg_length(struct aml *a, size_t body)
{
    size_t total;

    if (body + 1 <= 63) {
        aml_byte(a, (uint8_t)(body + 1));
        return;
    }
    for (unsigned extra = 1; extra <= 3; extra++) {
        total = body + 1 + extra;
        if (total < (1ULL << (4 + 8 * extra))) {
            aml_byte(a, (uint8_t)((extra << 6) | (total & 0x0f)));
            for (unsigned i = 0; i < extra; i++)
                aml_byte(a, (uint8_t)(total >> (4 + 8 * i)));
            return;
        }
    }
    a->error = true;   /* > 256 MiB: cannot happen for our tables */
}

void aml_name_string(struct aml *a, const char *path)
{
    const char *p = path;
    unsigned segs = 0;

    if (*p == '\\') {
        aml_byte(a, AML_ROOT_CHAR);
        p++;
    }
    for (const char *q = p; *q; q++)
        if (*q == '.')
            segs++;
    segs = *p ? segs + 1 : 0;
    if (segs == 2)
        aml_byte(a, AML_DUAL_NAME);
    else if (segs > 2) {
        aml_byte(a, AML_MULTI_NAME);
        aml_byte(a, (uint8_t)segs);
    }
    while (*p) {
        char seg[4] = { '_', '_', '_', '_' };
        for (int i = 0; i < 4 && *p && *p != '.'; i++)
            seg[i] = *p++;
        while (*p && *p != '.')
            p++;   /* longer than 4: cut, callers pass 4-char segments */
        aml_bytes(a, seg, 4);
        if (*p == '.')
            p++;
    }
    if (!segs)
        aml_byte(a, 0);   /* NullName */
}

void aml_integer(struct aml *a, uint64_t v)
{
    if (v == 0) {
        aml_byte(a, AML_ZERO);
    } else if (v == 1) {
        aml_byte(a, AML_ONE);
    } else if (v <= 0xff) {
        aml_byte(a, AML_BYTE_PREFIX);
        put_le(a, v, 1);
    } else if (v <= 0xffff) {
        aml_byte(a, AML_WORD_PREFIX);
        put_le(a, v, 2);
    } else if (v <= 0xffffffffULL) {
        aml_byte(a, AML_DWORD_PREFIX);
        put_le(a, v, 4);
    } else {
        aml_byte(a, AML_QWORD_PREFIX);
        put_le(a, v, 8);
    }
}

void aml_string(struct aml *a, const char *s)
{
    aml_byte(a, AML_STRING_PREFIX);
    aml_bytes(a, s, strlen(s) + 1);
}

void aml_eisaid(struct aml *a, const char *id)
{
    uint32_t v = 0;

    if (strlen(id) != 7) {
        a->error = true;
        return;
    }
    /* Three 5-bit letters ('A' = 1) then four hex digits, stored
     * big-endian in a DWord. */
    uint16_t vendor = (uint16_t)(((id[0] - '@') & 0x1f) << 10 |
                                 ((id[1] - '@') & 0x1f) << 5 | ((id[2] - '@') & 0x1f));
    uint16_t product = (uint16_t)strtoul(id + 3, NULL, 16);
    v = (uint32_t)(vendor >> 8) | (uint32_t)(vendor & 0xff) << 8 |
        (uint32_t)(product >> 8) << 16 | (uint32_t)(product & 0xff) << 24;
    aml_byte(a, AML_DWORD_PREFIX);
    put_le(a, v, 4);
}

void aml_name_decl(struct aml *a, const char *name, const struct aml *value)
{
    aml_byte(a, AML_NAME_OP);
    aml_name_string(a, name);
    aml_append(a, value);
}

void aml_package(struct aml *a, uint8_t nr_elements, const struct aml *elements)
{
    aml_byte(a, AML_PACKAGE_OP);
    aml_pkg_length(a, 1 + elements->len);
    aml_byte(a, nr_elements);
    aml_append(a, elements);
}

void aml_buffer(struct aml *a, const struct aml *data)
{
    struct aml size;

    aml_init(&size);
    aml_integer(&size, data->len);
    aml_byte(a, AML_BUFFER_OP);
    aml_pkg_length(a, size.len + data->len);
    aml_append(a, &size);
    aml_append(a, data);
    aml_free(&size);
}

static void aml_named_block(struct aml *a, const char *name, const struct aml *body)
{
    struct aml inner;

    aml_init(&inner);
    aml_name_string(&inner, name);
    aml_append(&inner, body);
    aml_pkg_length(a, inner.len);
    aml_append(a, &inner);
    aml_free(&inner);
}

void aml_scope(struct aml *a, const char *name, const struct aml *body)
{
    aml_byte(a, AML_SCOPE_OP);
    aml_named_block(a, name, body);
}

void aml_device(struct aml *a, const char *name, const struct aml *body)
{
    aml_byte(a, AML_EXT_OP);
    aml_byte(a, AML_DEVICE_OP);
    aml_named_block(a, name, body);
}

/* ---- resource descriptors (ACPI 6.x section 6.4) ---- */

void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
    aml_byte(a, 0x47);      /* small item: I/O port, 7 bytes */
    aml_byte(a, 0x01);      /* 16-bit decode */
    put_le(a, min, 2);
    put_le(a, max, 2);
    aml_byte(a, align);
    aml_byte(a, len);
}

void aml_res_irq_noflags(struct aml *a, uint16_t irq_mask)
{
    aml_byte(a, 0x22);      /* small item: IRQ, 2 bytes */
    put_le(a, irq_mask, 2);
}

/* Word address space descriptor: producer, fixed min and max. */
static void res_word(struct aml *a, uint8_t type, uint8_t type_flags, uint16_t min,
                     uint16_t max)
{
    aml_byte(a, 0x88);
    put_le(a, 13, 2);
    aml_byte(a, type);
    aml_byte(a, 0x0c);      /* MinFixed | MaxFixed, PosDecode, producer */
    aml_byte(a, type_flags);
    put_le(a, 0, 2);        /* granularity */
    put_le(a, min, 2);
    put_le(a, max, 2);
    put_le(a, 0, 2);        /* translation */
    put_le(a, (uint32_t)max - min + 1, 2);
}

void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max)
{
    res_word(a, 2, 0, min, max);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
    res_word(a, 1, 0x03, min, max);   /* EntireRange */
}

void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, bool cacheable)
{
    aml_byte(a, 0x87);
    put_le(a, 23, 2);
    aml_byte(a, 0);         /* memory range */
    aml_byte(a, 0x0c);      /* MinFixed | MaxFixed, PosDecode, producer */
    aml_byte(a, (uint8_t)(0x01 | (cacheable ? 0x02 : 0)));   /* ReadWrite */
    put_le(a, 0, 4);        /* granularity */
    put_le(a, min, 4);
    put_le(a, max, 4);
    put_le(a, 0, 4);        /* translation */
    put_le(a, (uint64_t)max - min + 1, 4);
}

void aml_resource_template(struct aml *a, const struct aml *descriptors)
{
    struct aml data;

    aml_init(&data);
    aml_append(&data, descriptors);
    aml_byte(&data, 0x79);  /* end tag */
    aml_byte(&data, 0x00);  /* checksum 0: "treat as summing to zero" */
    aml_buffer(a, &data);
    aml_free(&data);
}
