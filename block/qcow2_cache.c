/* Metadata cluster cache.  Dirty L2 tables may only reach the disk after the
 * refcounts they rely on, so evicting a dirty L2 entry runs the ordered
 * metadata flush; a dirty refcount block can be written at any time (an
 * early increment is at worst a leak, and decrements are only made once
 * nothing points at the cluster any more). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

int qcow2_cache_init(struct qcow2_cache *c, int n, size_t cluster_size, bool is_l2)
{
    memset(c, 0, sizeof(*c));
    c->e = calloc((size_t)n, sizeof(*c->e));
    if (!c->e)
        return -ENOMEM;
    c->n = n;
    c->is_l2 = is_l2;
    /* One page-aligned slab, so cache=none (O_DIRECT) needs no bounce
     * buffer: clusters are multiples of 512 and O_DIRECT wants that.  One
     * allocation rather than one per entry also keeps a 512-byte-cluster
     * cache from spending a page per entry on alignment. */
    if (posix_memalign((void **)&c->slab, 4096, (size_t)n * cluster_size)) {
        c->slab = NULL;
        qcow2_cache_destroy(c);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++)
        c->e[i].data = c->slab + (size_t)i * cluster_size;
    return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    free(c->slab);
    c->slab = NULL;
    free(c->e);
    c->e = NULL;
    c->n = 0;
}

static struct qcow2_cache_entry *find_data(struct qcow2_cache *c, uint8_t *data)
{
    for (int i = 0; i < c->n; i++)
        if (c->e[i].data == data)
            return &c->e[i];
    return NULL;
}

static int write_entry(struct block_state *bs, struct qcow2_cache_entry *e)
{
    struct qcow2_state *s = qcow2_s(bs);
    int r;

    if (!e->dirty)
        return 0;
    r = block_file_pwrite(bs->fd, e->offset, e->data, s->cluster_size);
    if (r < 0)
        return r;
    e->dirty = false;
    return 0;
}

int qcow2_cache_get(struct block_state *bs, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **data)
{
    struct qcow2_state *s = qcow2_s(bs);
    struct qcow2_cache_entry *victim = NULL;
    int r;

    for (int i = 0; i < c->n; i++) {
        struct qcow2_cache_entry *e = &c->e[i];

        if (e->offset == offset) {
            if (fresh)
                memset(e->data, 0, s->cluster_size);
            e->pins++;
            e->lru = ++c->tick;
            *data = e->data;
            return 0;
        }
        if (!e->pins && (!victim || e->lru < victim->lru))
            victim = e;
    }
    if (!victim)
        return -EBUSY; /* every slot pinned: a driver bug, never guest-reachable */
    if (victim->dirty) {
        if (c->is_l2)
            r = qcow2_flush_metadata(bs);
        else
            r = write_entry(bs, victim);
        if (r < 0)
            return r;
    }
    victim->offset = 0;
    if (fresh) {
        memset(victim->data, 0, s->cluster_size);
    } else {
        r = block_file_pread(bs->fd, offset, victim->data, s->cluster_size);
        if (r < 0)
            return r;
    }
    victim->offset = offset;
    victim->dirty = false;
    victim->pins = 1;
    victim->lru = ++c->tick;
    *data = victim->data;
    return 0;
}

void qcow2_cache_put(struct qcow2_cache *c, uint8_t *data)
{
    struct qcow2_cache_entry *e = find_data(c, data);

    if (e && e->pins > 0)
        e->pins--;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint8_t *data)
{
    struct qcow2_cache_entry *e = find_data(c, data);

    if (e)
        e->dirty = true;
}

int qcow2_cache_write_dirty(struct block_state *bs, struct qcow2_cache *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->e[i].offset && c->e[i].dirty) {
            int r = write_entry(bs, &c->e[i]);

            if (r < 0)
                return r;
        }
    }
    return 0;
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset)
{
    for (int i = 0; i < c->n; i++) {
        if (c->e[i].offset == offset && !c->e[i].pins) {
            c->e[i].offset = 0;
            c->e[i].dirty = false;
        }
    }
}

void qcow2_cache_drop_all(struct qcow2_cache *c)
{
    for (int i = 0; i < c->n; i++) {
        c->e[i].offset = 0;
        c->e[i].dirty = false;
        c->e[i].pins = 0;
    }
}
