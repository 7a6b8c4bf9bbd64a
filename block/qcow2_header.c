/* qcow2 header and header extensions: parse, validate, serialise.  The
 * header is the first thing a hostile image controls, so every field is
 * bounded here before any other code uses it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

#define FEATURE_ENTRY_LEN 48

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

const char *qcow2_feature_name(const struct qcow2_image_header *ih, int type, int bit,
                               char *out, size_t outlen)
{
    for (int i = 0; i < ih->nb_exts; i++) {
        const struct qcow2_ext *e = &ih->exts[i];

        if (e->type != QCOW2_EXT_FEATURE_TABLE)
            continue;
        for (uint32_t o = 0; o + FEATURE_ENTRY_LEN <= e->len; o += FEATURE_ENTRY_LEN) {
            if (e->data[o] == type && e->data[o + 1] == bit) {
                snprintf(out, outlen, "%.46s", (const char *)e->data + o + 2);
                return out;
            }
        }
    }
    return NULL;
}

static int parse_fixed(const uint8_t *b, size_t len, struct qcow2_header *h, char *err,
                       size_t errlen)
{
    memset(h, 0, sizeof(*h));
    if (len < QCOW2_V2_HEADER_LEN) {
        snprintf(err, errlen, "Image is not in qcow2 format (file too short)");
        return -EINVAL;
    }
    h->magic = be32_load(b);
    h->version = be32_load(b + 4);
    h->backing_file_offset = be64_load(b + 8);
    h->backing_file_size = be32_load(b + 16);
    h->cluster_bits = be32_load(b + 20);
    h->size = be64_load(b + 24);
    h->crypt_method = be32_load(b + 32);
    h->l1_size = be32_load(b + 36);
    h->l1_table_offset = be64_load(b + 40);
    h->refcount_table_offset = be64_load(b + 48);
    h->refcount_table_clusters = be32_load(b + 56);
    h->nb_snapshots = be32_load(b + 60);
    h->snapshots_offset = be64_load(b + 64);
    if (h->magic != QCOW2_MAGIC) {
        snprintf(err, errlen, "Image is not in qcow2 format");
        return -EINVAL;
    }
    if (h->version != 2 && h->version != 3) {
        snprintf(err, errlen, "Unsupported qcow2 version %u", h->version);
        return -ENOTSUP;
    }
    if (h->version == 2) {
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_LEN;
        return 0;
    }
    if (len < QCOW2_V3_HEADER_LEN) {
        snprintf(err, errlen, "qcow2 v3 header truncated");
        return -EINVAL;
    }
    h->incompatible_features = be64_load(b + 72);
    h->compatible_features = be64_load(b + 80);
    h->autoclear_features = be64_load(b + 88);
    h->refcount_order = be32_load(b + 96);
    h->header_length = be32_load(b + 100);
    if (h->header_length < QCOW2_V3_HEADER_LEN || h->header_length % 8) {
        snprintf(err, errlen, "qcow2 header length %u is invalid", h->header_length);
        return -EINVAL;
    }
    if (h->header_length > len) {
        snprintf(err, errlen, "qcow2 header length %u exceeds the cluster", h->header_length);
        return -EINVAL;
    }
    if (h->header_length > QCOW2_V3_HEADER_LEN)
        h->compression_type = b[104];
    return 0;
}

static int check_table(const char *what, uint64_t off, uint64_t bytes, uint64_t cs,
                       uint64_t file_size, char *err, size_t errlen)
{
    if (off % cs) {
        snprintf(err, errlen, "%s offset 0x%llx is not cluster aligned", what,
                 (unsigned long long)off);
        return -EINVAL;
    }
    if (bytes && (off == 0 || off > file_size || bytes > file_size - off)) {
        snprintf(err, errlen, "%s (0x%llx, %llu bytes) lies beyond the end of the file", what,
                 (unsigned long long)off, (unsigned long long)bytes);
        return -EINVAL;
    }
    return 0;
}

static int validate(const struct qcow2_image_header *ih, uint64_t file_size, char *err,
                    size_t errlen)
{
    const struct qcow2_header *h = &ih->h;
    uint64_t cs, l2_entries, need_l1, reft_bytes;
    uint64_t unknown;
    char name[64];

    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        snprintf(err, errlen, "Unsupported cluster size: 2^%u", h->cluster_bits);
        return -EINVAL;
    }
    cs = 1ULL << h->cluster_bits;
    if (h->crypt_method) {
        snprintf(err, errlen, "encrypted qcow2 images are not supported");
        return -ENOTSUP;
    }
    if (h->refcount_order > 6) {
        snprintf(err, errlen, "Reference count entry width too large; may not exceed 64 bits");
        return -EINVAL;
    }
    unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown) {
        int bit = __builtin_ctzll(unknown);

        if (qcow2_feature_name(ih, 0, bit, name, sizeof(name)))
            snprintf(err, errlen, "Unsupported qcow2 feature(s): %s", name);
        else
            snprintf(err, errlen, "Unsupported qcow2 feature(s): Unknown incompatible feature: %llx",
                     (unsigned long long)unknown);
        return -ENOTSUP;
    }
    if (h->compression_type > 1 ||
        (h->compression_type == 1) != !!(h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION)) {
        snprintf(err, errlen, "Invalid compression type %u (or compression bit mismatch)",
                 h->compression_type);
        return -EINVAL;
    }
    if (h->size > QCOW2_MAX_VIRTUAL_SIZE) {
        snprintf(err, errlen, "Image size 0x%llx is too large", (unsigned long long)h->size);
        return -EFBIG;
    }
    l2_entries = cs / 8;
    need_l1 = (h->size + cs * l2_entries - 1) / (cs * l2_entries);
    if ((uint64_t)h->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        snprintf(err, errlen, "Active L1 table too large");
        return -EFBIG;
    }
    if (h->l1_size < need_l1) {
        snprintf(err, errlen, "L1 table is too small for the image size");
        return -EINVAL;
    }
    if (check_table("L1 table", h->l1_table_offset, (uint64_t)h->l1_size * 8, cs, file_size,
                    err, errlen) < 0)
        return -EINVAL;
    reft_bytes = (uint64_t)h->refcount_table_clusters * cs;
    if (!h->refcount_table_clusters || reft_bytes > QCOW2_MAX_REFTABLE_BYTES) {
        snprintf(err, errlen, "Reference count table has an invalid size (%u clusters)",
                 h->refcount_table_clusters);
        return -EINVAL;
    }
    if (check_table("Reference count table", h->refcount_table_offset, reft_bytes, cs,
                    file_size, err, errlen) < 0)
        return -EINVAL;
    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        snprintf(err, errlen, "Too many snapshots (%u)", h->nb_snapshots);
        return -EINVAL;
    }
    if (h->nb_snapshots && check_table("Snapshot table", h->snapshots_offset, 1, cs, file_size,
                                       err, errlen) < 0)
        return -EINVAL;
    if (ranges_overlap(0, cs, h->l1_table_offset, (uint64_t)h->l1_size * 8) ||
        ranges_overlap(0, cs, h->refcount_table_offset, reft_bytes) ||
        ranges_overlap(h->l1_table_offset, (uint64_t)h->l1_size * 8, h->refcount_table_offset,
                       reft_bytes) ||
        (h->nb_snapshots &&
         (ranges_overlap(h->snapshots_offset, 1, h->l1_table_offset, (uint64_t)h->l1_size * 8) ||
          ranges_overlap(h->snapshots_offset, 1, h->refcount_table_offset, reft_bytes) ||
          h->snapshots_offset < cs))) {
        snprintf(err, errlen, "qcow2 metadata tables overlap");
        return -EINVAL;
    }
    return 0;
}

static int parse_extensions(const uint8_t *b, size_t len, struct qcow2_image_header *ih,
                            char *err, size_t errlen)
{
    const struct qcow2_header *h = &ih->h;
    uint64_t end = MIN((uint64_t)len, 1ULL << h->cluster_bits);
    uint64_t off = h->header_length;

    if (h->backing_file_offset && h->backing_file_offset < end)
        end = h->backing_file_offset;
    while (off + 8 <= end) {
        uint32_t type = be32_load(b + off), elen = be32_load(b + off + 4);
        struct qcow2_ext *n;

        off += 8;
        if (type == QCOW2_EXT_END)
            return 0;
        if (elen > end - off) {
            snprintf(err, errlen, "Invalid qcow2 header extension 0x%x length %u", type, elen);
            return -EINVAL;
        }
        if (type == QCOW2_EXT_BACKING_FORMAT) {
            if (elen >= sizeof(ih->backing_format)) {
                snprintf(err, errlen, "backing format extension too long (%u)", elen);
                return -EINVAL;
            }
            memcpy(ih->backing_format, b + off, elen);
            ih->backing_format[elen] = 0;
        } else {
            n = realloc(ih->exts, sizeof(*n) * (size_t)(ih->nb_exts + 1));
            if (!n)
                return -ENOMEM;
            ih->exts = n;
            n = &ih->exts[ih->nb_exts];
            n->type = type;
            n->len = elen;
            n->data = malloc(elen ? elen : 1);
            if (!n->data)
                return -ENOMEM;
            memcpy(n->data, b + off, elen);
            ih->nb_exts++;
        }
        off += ALIGN_UP((uint64_t)elen, 8);
    }
    /* Running out of room without an end marker is tolerated, as by QEMU. */
    return 0;
}

int qcow2_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                       struct qcow2_image_header *ih, char *err, size_t errlen)
{
    struct qcow2_header *h = &ih->h;
    uint64_t cs;
    int r;

    memset(ih, 0, sizeof(*ih));
    r = parse_fixed(buf, len, h, err, errlen);
    if (r < 0)
        return r;
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        snprintf(err, errlen, "Unsupported cluster size: 2^%u", h->cluster_bits);
        return -EINVAL;
    }
    cs = 1ULL << h->cluster_bits;
    if (h->header_length > cs) {
        snprintf(err, errlen, "qcow2 header exceeds cluster size");
        return -EINVAL;
    }
    r = parse_extensions(buf, len, ih, err, errlen);
    if (r < 0)
        goto fail;
    if (h->backing_file_offset) {
        if (h->backing_file_offset > cs || h->backing_file_size > QCOW2_MAX_BACKING_NAME ||
            h->backing_file_offset + h->backing_file_size > MIN(cs, (uint64_t)len)) {
            snprintf(err, errlen, "Invalid backing file offset or name length");
            r = -EINVAL;
            goto fail;
        }
        memcpy(ih->backing_file, buf + h->backing_file_offset, h->backing_file_size);
        ih->backing_file[h->backing_file_size] = 0;
        if (strlen(ih->backing_file) != h->backing_file_size) {
            snprintf(err, errlen, "Backing file name contains a NUL byte");
            r = -EINVAL;
            goto fail;
        }
    }
    r = validate(ih, file_size, err, errlen);
    if (r < 0)
        goto fail;
    return 0;

fail:
    qcow2_header_free(ih);
    return r;
}

void qcow2_header_free(struct qcow2_image_header *ih)
{
    for (int i = 0; i < ih->nb_exts; i++)
        free(ih->exts[i].data);
    free(ih->exts);
    ih->exts = NULL;
    ih->nb_exts = 0;
}

static int put_ext(uint8_t *buf, size_t len, size_t *off, uint32_t type, const void *data,
                   uint32_t elen)
{
    size_t need = 8 + ALIGN_UP((size_t)elen, 8);

    if (*off + need > len)
        return -ENOSPC;
    be32_store(buf + *off, type);
    be32_store(buf + *off + 4, elen);
    if (elen)
        memcpy(buf + *off + 8, data, elen);
    *off += need;
    return 0;
}

int qcow2_header_serialize(struct qcow2_image_header *ih, uint8_t *buf, size_t len)
{
    struct qcow2_header *h = &ih->h;
    size_t off, blen = strlen(ih->backing_file);
    int r;

    if (h->version == 3 && h->header_length < 112)
        h->header_length = 112;
    if (len < h->header_length)
        return -ENOSPC;
    memset(buf, 0, len);
    be32_store(buf, QCOW2_MAGIC);
    be32_store(buf + 4, h->version);
    be32_store(buf + 20, h->cluster_bits);
    be64_store(buf + 24, h->size);
    be32_store(buf + 32, h->crypt_method);
    be32_store(buf + 36, h->l1_size);
    be64_store(buf + 40, h->l1_table_offset);
    be64_store(buf + 48, h->refcount_table_offset);
    be32_store(buf + 56, h->refcount_table_clusters);
    be32_store(buf + 60, h->nb_snapshots);
    be64_store(buf + 64, h->snapshots_offset);
    off = QCOW2_V2_HEADER_LEN;
    if (h->version == 3) {
        be64_store(buf + 72, h->incompatible_features);
        be64_store(buf + 80, h->compatible_features);
        be64_store(buf + 88, h->autoclear_features);
        be32_store(buf + 96, h->refcount_order);
        be32_store(buf + 100, h->header_length);
        buf[104] = h->compression_type;
        off = h->header_length;
    }
    if (ih->backing_format[0]) {
        r = put_ext(buf, len, &off, QCOW2_EXT_BACKING_FORMAT, ih->backing_format,
                    (uint32_t)strlen(ih->backing_format));
        if (r < 0)
            return r;
    }
    for (int i = 0; i < ih->nb_exts; i++) {
        r = put_ext(buf, len, &off, ih->exts[i].type, ih->exts[i].data, ih->exts[i].len);
        if (r < 0)
            return r;
    }
    r = put_ext(buf, len, &off, QCOW2_EXT_END, NULL, 0);
    if (r < 0)
        return r;
    if (blen) {
        if (off + blen > len || blen > QCOW2_MAX_BACKING_NAME)
            return -ENOSPC;
        memcpy(buf + off, ih->backing_file, blen);
        h->backing_file_offset = off;
        h->backing_file_size = (uint32_t)blen;
    } else {
        h->backing_file_offset = 0;
        h->backing_file_size = 0;
    }
    be64_store(buf + 8, h->backing_file_offset);
    be32_store(buf + 16, h->backing_file_size);
    return 0;
}
