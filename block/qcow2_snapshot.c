/* Internal snapshot table: parsed for listing (`info`) and for check,
 * which must count the clusters snapshots hold. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

#define SNAP_FIXED_LEN 40
#define SNAP_MAX_EXTRA 1024
#define SNAP_MAX_TABLE (64 * MiB)

void qcow2_free_snapshots(struct qcow2_state *s)
{
    free(s->snapshots);
    s->snapshots = NULL;
    s->nb_snapshots = 0;
}

int qcow2_read_snapshots(struct block_state *bs, char *err, size_t errlen)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t off = s->ih.h.snapshots_offset, start = off;
    uint32_t nb = s->ih.h.nb_snapshots;
    uint8_t fixed[SNAP_FIXED_LEN], extra[SNAP_MAX_EXTRA];
    int r;

    if (!nb)
        return 0;
    s->snapshots = calloc(nb, sizeof(*s->snapshots));
    if (!s->snapshots)
        return -ENOMEM;
    for (uint32_t i = 0; i < nb; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint16_t id_len, name_len;
        uint32_t extra_len;
        char id[65536], *name = id;

        if (off - start > SNAP_MAX_TABLE || off + SNAP_FIXED_LEN > s->file_size) {
            snprintf(err, errlen, "snapshot table is truncated or too large");
            goto fail;
        }
        if ((r = block_file_pread(bs->fd, off, fixed, sizeof(fixed))) < 0)
            goto fail_r;
        sn->l1_offset = be64_load(fixed);
        sn->l1_size = be32_load(fixed + 8);
        id_len = be16_load(fixed + 12);
        name_len = be16_load(fixed + 14);
        sn->info.date_sec = be32_load(fixed + 16);
        sn->info.date_nsec = be32_load(fixed + 20);
        sn->info.vm_clock_nsec = be64_load(fixed + 24);
        sn->info.vm_state_size = be32_load(fixed + 32);
        extra_len = be32_load(fixed + 36);
        sn->info.icount = UINT64_MAX;
        off += SNAP_FIXED_LEN;
        if (extra_len > SNAP_MAX_EXTRA) {
            snprintf(err, errlen, "snapshot %u: extra data too large", i);
            goto fail;
        }
        if ((r = block_file_pread(bs->fd, off, extra, extra_len)) < 0)
            goto fail_r;
        if (extra_len >= 8)
            sn->info.vm_state_size = be64_load(extra);
        if (extra_len >= 16)
            sn->disk_size = be64_load(extra + 8);
        if (extra_len >= 24)
            sn->info.icount = be64_load(extra + 16);
        off += extra_len;
        if ((r = block_file_pread(bs->fd, off, id, id_len)) < 0)
            goto fail_r;
        snprintf(sn->info.id, sizeof(sn->info.id), "%.*s", (int)MIN(id_len, 63), id);
        off += id_len;
        name = malloc(name_len + 1u);
        if (!name)
            goto fail;
        if ((r = block_file_pread(bs->fd, off, name, name_len)) < 0) {
            free(name);
            goto fail_r;
        }
        snprintf(sn->info.name, sizeof(sn->info.name), "%.*s", (int)MIN(name_len, 255), name);
        free(name);
        off += name_len;
        off = start + ALIGN_UP(off - start, 8);
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES || sn->l1_offset % s->cluster_size ||
            (sn->l1_size && (sn->l1_offset >= s->file_size ||
                             (uint64_t)sn->l1_size * 8 > s->file_size - sn->l1_offset))) {
            snprintf(err, errlen, "snapshot %u has an invalid L1 table", i);
            goto fail;
        }
        s->nb_snapshots = (int)i + 1;
    }
    s->snapshots_size = off - start;
    return 0;
fail_r:
    snprintf(err, errlen, "cannot read the snapshot table: %s", strerror(-r));
fail:
    qcow2_free_snapshots(s);
    return -EINVAL;
}
