/* Creating qcow2 images: header, refcount table, refcount blocks, L1. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"

static const struct {
    uint8_t type, bit;
    const char *name;
} feature_names[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

static int add_feature_table(struct qcow2_image_header *ih)
{
    uint32_t len = (uint32_t)(ARRAY_SIZE(feature_names) * 48);
    uint8_t *d = calloc(1, len);

    ih->exts = calloc(1, sizeof(*ih->exts));
    if (!d || !ih->exts) {
        free(d);
        return -ENOMEM;
    }
    for (size_t i = 0; i < ARRAY_SIZE(feature_names); i++) {
        d[i * 48] = feature_names[i].type;
        d[i * 48 + 1] = feature_names[i].bit;
        strncpy((char *)d + i * 48 + 2, feature_names[i].name, 46);
    }
    ih->exts[0] = (struct qcow2_ext){ QCOW2_EXT_FEATURE_TABLE, len, d };
    ih->nb_exts = 1;
    return 0;
}

int qcow2_create(const char *filename, const struct qcow2_create_opts *o, char *err,
                 size_t errlen)
{
    struct qcow2_image_header ih;
    struct qcow2_header *h = &ih.h;
    uint64_t cs, rbe, l1_entries, l1c, rt = 1, rb = 1, total;
    uint8_t *buf = NULL;
    int fd = -1, r;

    memset(&ih, 0, sizeof(ih));
    if (o->cluster_bits < QCOW2_MIN_CLUSTER_BITS || o->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        snprintf(err, errlen, "Cluster size must be a power of two between 512 and 2048k");
        return -EINVAL;
    }
    if (o->refcount_order > 6) {
        snprintf(err, errlen, "Refcount width must be a power of two and may not exceed 64 bits");
        return -EINVAL;
    }
    if (o->version == 2 && (o->refcount_order != 4 || o->lazy_refcounts || o->zstd)) {
        snprintf(err, errlen, "%s requires compat=1.1",
                 o->lazy_refcounts ? "Lazy refcounts"
                 : o->zstd        ? "Compression type zstd"
                                  : "Different refcount widths than 16 bits");
        return -EINVAL;
    }
    if (o->size > QCOW2_MAX_VIRTUAL_SIZE) {
        snprintf(err, errlen, "Image size is too large");
        return -EFBIG;
    }
    if (o->backing_file && strlen(o->backing_file) > QCOW2_MAX_BACKING_NAME) {
        snprintf(err, errlen, "Backing file name too long");
        return -EINVAL;
    }
    cs = 1ULL << o->cluster_bits;
    rbe = cs * 8 >> o->refcount_order;
    l1_entries = (o->size + (cs << (o->cluster_bits - 3)) - 1) >> (o->cluster_bits * 2 - 3);
    if (l1_entries * 8 > QCOW2_MAX_L1_BYTES) {
        snprintf(err, errlen, "Image size too large for this cluster size");
        return -EFBIG;
    }
    l1c = (l1_entries * 8 + cs - 1) / cs;
    /* header + refcount table + refcount blocks + L1, counted by the blocks */
    for (;;) {
        total = 1 + rt + rb + l1c;
        uint64_t nrb = (total + rbe - 1) / rbe, nrt = (nrb * 8 + cs - 1) / cs;

        if (nrb <= rb && nrt <= rt)
            break;
        rb = MAX(rb, nrb);
        rt = MAX(rt, nrt);
    }
    if (rt * cs > QCOW2_MAX_REFTABLE_BYTES) {
        snprintf(err, errlen, "Image size too large for this cluster size");
        return -EFBIG;
    }
    h->version = (uint32_t)o->version;
    h->cluster_bits = o->cluster_bits;
    h->size = o->size;
    h->l1_size = (uint32_t)l1_entries;
    h->refcount_table_offset = cs;
    h->refcount_table_clusters = (uint32_t)rt;
    h->l1_table_offset = (1 + rt + rb) * cs;
    h->refcount_order = o->refcount_order;
    if (o->version == 3) {
        h->compatible_features = o->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0;
        h->incompatible_features = o->zstd ? QCOW2_INCOMPAT_COMPRESSION : 0;
        h->compression_type = o->zstd ? 1 : 0;
        h->header_length = 112;
        if ((r = add_feature_table(&ih)) < 0)
            goto out;
    }
    if (o->backing_file)
        snprintf(ih.backing_file, sizeof(ih.backing_file), "%s", o->backing_file);
    if (o->backing_format)
        snprintf(ih.backing_format, sizeof(ih.backing_format), "%s", o->backing_format);

    buf = calloc(1, total * cs);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    r = qcow2_header_serialize(&ih, buf, cs);
    if (r == -ENOSPC && ih.nb_exts) {
        /* The feature name table is optional: small clusters drop it, as
         * QEMU does. */
        qcow2_header_free(&ih);
        r = qcow2_header_serialize(&ih, buf, cs);
    }
    if (r < 0) {
        snprintf(err, errlen, "header and backing file name do not fit in one cluster");
        goto out;
    }
    for (uint64_t i = 0; i < rb; i++)
        be64_store(buf + cs + i * 8, (1 + rt + i) * cs);
    for (uint64_t c = 0; c < total; c++)
        qcow2_refcount_set(buf + (1 + rt + c / rbe) * cs, c % rbe, o->refcount_order, 1);

    fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "Could not create '%s': %s", filename, strerror(errno));
        goto out;
    }
    r = block_file_pwrite(fd, 0, buf, total * cs);
    if (r == 0 && fdatasync(fd) < 0)
        r = -errno;
    if (r < 0)
        snprintf(err, errlen, "Could not write the image: %s", strerror(-r));
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    qcow2_header_free(&ih);
    return r;
}
