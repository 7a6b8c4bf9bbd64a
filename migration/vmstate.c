/* Field tables: saving a struct as named, typed records and loading them
 * back with a check of every record against the table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/vmstate.h"
#include "util/log.h"

void vmbuf_init(struct vmbuf *b)
{
    memset(b, 0, sizeof(*b));
}

void vmbuf_free(struct vmbuf *b)
{
    free(b->data);
    vmbuf_init(b);
}

void vmbuf_put(struct vmbuf *b, const void *p, size_t n)
{
    if (b->failed || !n)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        uint8_t *d;

        while (cap < b->len + n)
            cap *= 2;
        d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void vmbuf_put_u8(struct vmbuf *b, uint8_t v)
{
    vmbuf_put(b, &v, 1);
}

void vmbuf_put_u32(struct vmbuf *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

    vmbuf_put(b, x, 4);
}

void vmbuf_put_u64(struct vmbuf *b, uint64_t v)
{
    vmbuf_put_u32(b, (uint32_t)v);
    vmbuf_put_u32(b, (uint32_t)(v >> 32));
}

int vmreader_get(struct vmreader *r, void *dst, size_t n)
{
    if (n > r->len - r->off)
        return -EINVAL;
    if (dst)
        memcpy(dst, r->p + r->off, n);
    r->off += n;
    return 0;
}

int vmreader_u8(struct vmreader *r, uint8_t *v)
{
    return vmreader_get(r, v, 1);
}

int vmreader_u32(struct vmreader *r, uint32_t *v)
{
    uint8_t x[4];

    if (vmreader_get(r, x, 4) < 0)
        return -EINVAL;
    *v = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
    return 0;
}

int vmreader_u64(struct vmreader *r, uint64_t *v)
{
    uint32_t lo, hi;

    if (vmreader_u32(r, &lo) < 0 || vmreader_u32(r, &hi) < 0)
        return -EINVAL;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

size_t vmstate_type_size(uint8_t type)
{
    switch (type) {
    case VMS_U8:
    case VMS_BOOL:
        return 1;
    case VMS_U16:
        return 2;
    case VMS_U32:
        return 4;
    case VMS_U64:
    case VMS_CLOCK_NS:
        return 8;
    default:
        return 0;
    }
}

const char *vmstate_type_name(uint8_t type)
{
    static const char *const names[] = {
        [VMS_U8] = "u8", [VMS_U16] = "u16", [VMS_U32] = "u32", [VMS_U64] = "u64",
        [VMS_BOOL] = "bool", [VMS_CLOCK_NS] = "clock",
    };

    return type < ARRAY_SIZE(names) && names[type] ? names[type] : "unknown-type";
}

int vmstate_check_desc(const struct vmstate_desc *d)
{
    if (d->state_size && (!d->get || !d->check || !d->set)) {
        error_report("vmstate %s: a staged table needs get, check and set", d->name);
        return -EINVAL;
    }
    for (const struct vmstate_field *f = d->fields; f->name; f++) {
        if (!vmstate_type_size(f->type) || !f->count || strlen(f->name) > 255 ||
            f->version_added > d->version ||
            (d->state_size && (f->offset > d->state_size ||
                               (size_t)f->count * vmstate_type_size(f->type) >
                                   d->state_size - f->offset))) {
            error_report("vmstate %s: field %s: bad table entry", d->name, f->name);
            return -EINVAL;
        }
        for (const struct vmstate_field *g = d->fields; g != f; g++)
            if (!strcmp(g->name, f->name)) {
                error_report("vmstate %s: field %s: listed twice", d->name, f->name);
                return -EINVAL;
            }
    }
    return 0;
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Host memory is little-endian (x86-64 only), so a field's bytes are its
 * encoding; clocks and bools are the exceptions. */
static void save_field(struct vmbuf *b, const struct vmstate_field *f, const uint8_t *base,
                       uint64_t now)
{
    size_t w = vmstate_type_size(f->type);
    const uint8_t *p = base + f->offset;
    size_t n = strlen(f->name);

    vmbuf_put_u8(b, (uint8_t)n);
    vmbuf_put(b, f->name, n);
    vmbuf_put_u8(b, f->type);
    vmbuf_put_u32(b, f->count);
    for (uint32_t i = 0; i < f->count; i++, p += w) {
        if (f->type == VMS_CLOCK_NS) {
            uint64_t t;

            memcpy(&t, p, 8);
            int64_t rel = (int64_t)(t - now);

            /* INT64_MIN marks "unset" (0). */
            vmbuf_put_u64(b, t ? (uint64_t)(rel == INT64_MIN ? rel + 1 : rel)
                               : (uint64_t)INT64_MIN);
        } else if (f->type == VMS_BOOL) {
            vmbuf_put_u8(b, *(const bool *)p ? 1 : 0);
        } else {
            vmbuf_put(b, p, w);
        }
    }
}

void vmstate_save(struct vmbuf *b, const struct vmstate_desc *d, const void *opaque,
                  uint64_t now)
{
    uint32_t n = 0;

    for (const struct vmstate_field *f = d->fields; f->name; f++)
        n++;
    vmbuf_put_u32(b, n);
    for (const struct vmstate_field *f = d->fields; f->name; f++)
        save_field(b, f, opaque, now);
}

static const struct vmstate_field *find_field(const struct vmstate_desc *d, const char *name)
{
    for (const struct vmstate_field *f = d->fields; f->name; f++)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

static void apply_field(const struct vmstate_field *f, uint8_t *base, const uint8_t *src,
                        uint64_t now)
{
    size_t w = vmstate_type_size(f->type);
    uint8_t *p = base + f->offset;

    for (uint32_t i = 0; i < f->count; i++, p += w, src += w) {
        if (f->type == VMS_CLOCK_NS) {
            uint64_t rel = load_le(src, 8);
            uint64_t t = rel == (uint64_t)INT64_MIN ? 0 : now + rel;

            if (rel != (uint64_t)INT64_MIN && !t)
                t = 1;
            memcpy(p, &t, 8);
        } else if (f->type == VMS_BOOL) {
            *(bool *)p = src[0] != 0;
        } else {
            memcpy(p, src, w);
        }
    }
}

int vmstate_load(const uint8_t *payload, size_t len, uint32_t stream_version,
                 const struct vmstate_desc *d, void *opaque, uint64_t now, bool apply,
                 const char *what)
{
    struct vmreader r = { .p = payload, .len = len };
    uint32_t nrec;
    uint8_t *seen;
    int nfields = 0, ret = -EINVAL;

    for (const struct vmstate_field *f = d->fields; f->name; f++)
        nfields++;
    if (stream_version > d->version) {
        error_report("%s: section version %u is newer than this vmon's %u", what,
                     stream_version, d->version);
        return -EINVAL;
    }
    seen = calloc((size_t)nfields + 1, 1);
    if (!seen)
        return -ENOMEM;
    if (vmreader_u32(&r, &nrec) < 0)
        goto truncated;
    for (uint32_t i = 0; i < nrec; i++) {
        char name[256];
        uint8_t nlen, type;
        uint32_t count;
        const struct vmstate_field *f;
        size_t w, bytes;

        if (vmreader_u8(&r, &nlen) < 0 || vmreader_get(&r, name, nlen) < 0)
            goto truncated;
        name[nlen] = 0;
        if (memchr(name, 0, nlen)) {
            error_report("%s: record %u: malformed field name", what, i);
            goto out;
        }
        if (vmreader_u8(&r, &type) < 0 || vmreader_u32(&r, &count) < 0)
            goto truncated;
        f = find_field(d, name);
        if (!f) {
            error_report("%s: field %s: not known to this vmon", what, name);
            goto out;
        }
        if (f->version_added > stream_version) {
            error_report("%s: field %s: present in a version %u section but added in %u",
                         what, name, stream_version, f->version_added);
            goto out;
        }
        if (type != f->type || count != f->count) {
            error_report("%s: field %s: %s[%u] in the stream, %s[%u] expected", what, name,
                         vmstate_type_name(type), count, vmstate_type_name(f->type), f->count);
            goto out;
        }
        if (seen[f - d->fields]) {
            error_report("%s: field %s: appears twice", what, name);
            goto out;
        }
        seen[f - d->fields] = 1;
        w = vmstate_type_size(type);
        bytes = (size_t)count * w;
        if (bytes > r.len - r.off)
            goto truncated;
        if (type == VMS_BOOL)
            for (uint32_t k = 0; k < count; k++)
                if (r.p[r.off + k] > 1) {
                    error_report("%s: field %s: bool value %u", what, name, r.p[r.off + k]);
                    goto out;
                }
        if (apply)
            apply_field(f, opaque, r.p + r.off, now);
        r.off += bytes;
    }
    if (r.off != r.len) {
        error_report("%s: %zu bytes after the last field", what, r.len - r.off);
        goto out;
    }
    for (const struct vmstate_field *f = d->fields; f->name; f++)
        if (f->version_added <= stream_version && !seen[f - d->fields]) {
            error_report("%s: field %s: missing from the stream", what, f->name);
            goto out;
        }
    if (apply && d->post_load)
        d->post_load(opaque);
    ret = 0;
    goto out;
truncated:
    error_report("%s: section payload ends inside a field", what);
out:
    free(seen);
    return ret;
}

void vmstate_save_device(struct vmbuf *b, const struct vmstate_desc *d, const void *dev,
                         uint64_t now)
{
    void *st;

    if (!d->state_size) {
        vmstate_save(b, d, dev, now);
        return;
    }
    st = calloc(1, d->state_size);
    if (!st) {
        b->failed = true;
        return;
    }
    d->get(dev, st);
    vmstate_save(b, d, st, now);
    free(st);
}

int vmstate_check_device(const uint8_t *payload, size_t len, uint32_t stream_version,
                         const struct vmstate_desc *d, const void *dev, uint64_t now,
                         const char *what, void **staged)
{
    void *st;
    int ret;

    *staged = NULL;
    if (!d->state_size)
        return vmstate_load(payload, len, stream_version, d, (void *)dev, now, false, what);
    ret = vmstate_load(payload, len, stream_version, d, NULL, now, false, what);
    if (ret < 0)
        return ret;
    st = calloc(1, d->state_size);
    if (!st)
        return -ENOMEM;
    d->get(dev, st);
    ret = vmstate_load(payload, len, stream_version, d, st, now, true, what);
    if (ret == 0)
        ret = d->check(dev, st, what);
    if (ret < 0) {
        free(st);
        return ret;
    }
    *staged = st;
    return 0;
}

int vmstate_commit_device(const uint8_t *payload, size_t len, uint32_t stream_version,
                          const struct vmstate_desc *d, void *dev, uint64_t now,
                          const char *what, const void *staged)
{
    if (d->state_size) {
        d->set(dev, staged);
        return 0;
    }
    return vmstate_load(payload, len, stream_version, d, dev, now, true, what);
}
