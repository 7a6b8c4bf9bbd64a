/* Split virtqueue, device side: chain validation, used ring, EVENT_IDX. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "machine/dirty_log.h"
#include "util/log.h"
#include "util/trace.h"
#include "virtio/virtqueue.h"

#define AVAIL_FLAGS 0
#define AVAIL_IDX 1
#define AVAIL_RING 2

void vq_init(struct virtqueue *vq, struct machine *m, uint16_t max_size)
{
    memset(vq, 0, sizeof(*vq));
    vq->m = m;
    vq->max_size = max_size;
    vq_reset(vq);
}

void vq_reset(struct virtqueue *vq)
{
    struct machine *m = vq->m;
    const char *dev = vq->dev;
    uint16_t max = vq->max_size, index = vq->index;

    memset(vq, 0, sizeof(*vq));
    vq->m = m;
    vq->dev = dev;
    vq->index = index;
    vq->max_size = max;
    vq->size = max;
}

static int vq_break(struct virtqueue *vq, const char *why)
{
    vq->broken = true;
    vq->why = why;
    LOG(LOG_GUEST_ERRORS, "virtio: queue broken: %s\n", why);
    return -EIO;
}

int vq_check_layout(struct machine *m, uint16_t size, uint16_t max_size, uint64_t desc_gpa,
                    uint64_t avail_gpa, uint64_t used_gpa, const char **why)
{
    uint64_t n = size;

    if (n == 0 || n > max_size || (n & (n - 1))) {
        *why = "queue size not a power of two within the maximum";
        return -EINVAL;
    }
    /* Alignment per spec 2.7: 16 / 2 / 4; keeps our loads naturally aligned. */
    if ((desc_gpa & 15) || (avail_gpa & 1) || (used_gpa & 3)) {
        *why = "misaligned ring";
        return -EINVAL;
    }
    if (!machine_gpa_to_hva(m, desc_gpa, 16 * n) || !machine_gpa_to_hva(m, avail_gpa, 6 + 2 * n) ||
        !machine_gpa_to_hva(m, used_gpa, 6 + 8 * n)) {
        *why = "ring outside guest RAM";
        return -EINVAL;
    }
    return 0;
}

int vq_enable(struct virtqueue *vq)
{
    uint64_t n = vq->size;
    const char *why;

    if (vq_check_layout(vq->m, vq->size, vq->max_size, vq->desc_gpa, vq->avail_gpa,
                        vq->used_gpa, &why) < 0)
        return vq_break(vq, why), -EINVAL;
    vq->desc = machine_gpa_to_hva(vq->m, vq->desc_gpa, 16 * n);
    vq->avail = machine_gpa_to_hva(vq->m, vq->avail_gpa, 6 + 2 * n);
    vq->used = machine_gpa_to_hva(vq->m, vq->used_gpa, 6 + 8 * n);
    vq->enabled = true;
    return 0;
}

static uint16_t avail_idx(struct virtqueue *vq)
{
    return __atomic_load_n(&vq->avail[AVAIL_IDX], __ATOMIC_ACQUIRE);
}

bool vq_has_avail(struct virtqueue *vq)
{
    return vq->enabled && !vq->broken && avail_idx(vq) != vq->last_avail;
}

static uint16_t *used_idx_ptr(struct virtqueue *vq)
{
    return (uint16_t *)(vq->used + 2);
}

static uint16_t *avail_event_ptr(struct virtqueue *vq)
{
    return (uint16_t *)(vq->used + 4 + 8 * (size_t)vq->size);
}

void vq_set_notification(struct virtqueue *vq, bool enable)
{
    if (!vq->enabled)
        return;
    if (vq->event_idx) {
        if (enable) {
            __atomic_store_n(avail_event_ptr(vq), avail_idx(vq), __ATOMIC_RELAXED);
            dirty_log_mark_hva(vq->m, avail_event_ptr(vq), 2);
        }
    } else {
        uint16_t *flags = (uint16_t *)vq->used;
        uint16_t f = __atomic_load_n(flags, __ATOMIC_RELAXED);

        f = enable ? (uint16_t)(f & ~VRING_USED_F_NO_NOTIFY) : (uint16_t)(f | VRING_USED_F_NO_NOTIFY);
        __atomic_store_n(flags, f, __ATOMIC_RELAXED);
        dirty_log_mark_hva(vq->m, flags, 2);
    }
    /* The driver must see our wish before we look at the ring again. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static int elem_add(struct vq_elem *e, bool write, void *p, uint32_t len)
{
    struct iovec **iov = write ? &e->in : &e->out;
    unsigned *n = write ? &e->n_in : &e->n_out;
    unsigned *cap = write ? &e->cap_in : &e->cap_out;

    if (*n == *cap) {
        unsigned nc = *cap ? *cap * 2 : 8;
        struct iovec *ni = realloc(*iov, nc * sizeof(**iov));

        if (!ni)
            return -ENOMEM;
        *iov = ni;
        *cap = nc;
    }
    (*iov)[*n].iov_base = p;
    (*iov)[(*n)++].iov_len = len;
    return 0;
}

/* One descriptor's buffer into e; checks range and readable/writable order. */
static int add_desc(struct virtqueue *vq, struct vq_elem *e, const struct vring_desc *d)
{
    bool write = d->flags & VRING_DESC_F_WRITE;
    void *p;

    if (!write && e->n_in)
        return vq_break(vq, "readable descriptor after a writable one");
    if (d->len == 0)
        return 0;
    p = machine_gpa_to_hva(vq->m, d->addr, d->len);
    if (!p)
        return vq_break(vq, "buffer outside guest RAM");
    if (write)
        machine_notify_ram_write(vq->m, d->addr, d->len);
    if (write)
        e->in_len += d->len;
    else
        e->out_len += d->len;
    if (e->in_len + e->out_len > VQ_MAX_CHAIN_BYTES)
        return vq_break(vq, "chain longer than 4 GiB");
    if (elem_add(e, write, p, d->len) < 0)
        return vq_break(vq, "out of memory");
    return 0;
}

static int walk_indirect(struct virtqueue *vq, struct vq_elem *e, const struct vring_desc *id)
{
    const struct vring_desc *table;
    uint32_t n, i = 0, steps = 0;

    if (!vq->indirect)
        return vq_break(vq, "INDIRECT without the negotiated feature");
    if (id->flags & VRING_DESC_F_NEXT)
        return vq_break(vq, "INDIRECT and NEXT together");
    if (id->len == 0 || id->len % 16)
        return vq_break(vq, "indirect table length not a multiple of 16");
    n = id->len / 16;
    if (n > VQ_MAX_INDIRECT)
        return vq_break(vq, "indirect table too long");
    table = machine_gpa_to_hva(vq->m, id->addr, id->len);
    if (!table)
        return vq_break(vq, "indirect table outside guest RAM");
    for (;;) {
        struct vring_desc d;
        int ret;

        memcpy(&d, &table[i], sizeof(d));
        if (d.flags & VRING_DESC_F_INDIRECT)
            return vq_break(vq, "nested indirect table");
        ret = add_desc(vq, e, &d);
        if (ret < 0)
            return ret;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        if (d.next >= n)
            return vq_break(vq, "indirect next index out of range");
        if (++steps >= n)
            return vq_break(vq, "loop in indirect table");
        i = d.next;
    }
}

int vq_pop(struct virtqueue *vq, struct vq_elem *e)
{
    uint16_t avail, head, i;
    unsigned steps = 0;

    e->n_out = e->n_in = 0;
    e->out_len = e->in_len = 0;
    if (!vq->enabled || vq->broken)
        return vq->broken ? -EIO : 0;
    avail = avail_idx(vq);
    if (avail == vq->last_avail)
        return 0;
    if ((uint16_t)(avail - vq->last_avail) > vq->size)
        return vq_break(vq, "avail index moved by more than the queue size");
    head = __atomic_load_n(&vq->avail[AVAIL_RING + (vq->last_avail & (vq->size - 1))],
                           __ATOMIC_RELAXED);
    if (head >= vq->size)
        return vq_break(vq, "head index out of range");
    e->head = head;
    i = head;
    for (;;) {
        struct vring_desc d;
        int ret;

        memcpy(&d, &vq->desc[i], sizeof(d));
        if (d.flags & VRING_DESC_F_INDIRECT) {
            /* An indirect descriptor must be the only one in its chain. */
            if (steps)
                return vq_break(vq, "indirect descriptor inside a chain");
            ret = walk_indirect(vq, e, &d);
            if (ret < 0)
                return ret;
            break;
        }
        ret = add_desc(vq, e, &d);
        if (ret < 0)
            return ret;
        if (!(d.flags & VRING_DESC_F_NEXT))
            break;
        if (d.next >= vq->size)
            return vq_break(vq, "next index out of range");
        if (++steps >= vq->size)
            return vq_break(vq, "chain loops or is longer than the queue");
        i = d.next;
    }
    vq->last_avail++;
    if (vq->event_idx) {
        __atomic_store_n(avail_event_ptr(vq), vq->last_avail, __ATOMIC_RELAXED);
        dirty_log_mark_hva(vq->m, avail_event_ptr(vq), 2);
    }
    TRACE(virtqueue_pop, "dev=%s vq=%u head=%u out=%llu in=%llu", vq->dev ? vq->dev : "?",
          vq->index, e->head, (unsigned long long)e->out_len, (unsigned long long)e->in_len);
    return 1;
}

void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
    uint8_t *slot;
    uint32_t id = head;

    if (!vq->enabled)
        return;
    slot = vq->used + 4 + 8 * (size_t)(vq->used_idx & (vq->size - 1));
    memcpy(slot, &id, 4);
    memcpy(slot + 4, &len, 4);
    vq->used_idx++;
    /* The used ring is written through our own mapping: tell a live
     * migration (the element and the index may sit on two pages). */
    dirty_log_mark_hva(vq->m, slot, 8);
    dirty_log_mark_hva(vq->m, used_idx_ptr(vq), 2);
    __atomic_store_n(used_idx_ptr(vq), vq->used_idx, __ATOMIC_RELEASE);
    TRACE(virtqueue_push, "dev=%s vq=%u head=%u len=%u", vq->dev ? vq->dev : "?", vq->index,
          head, len);
}

bool vq_should_notify(struct virtqueue *vq)
{
    uint16_t old, event;
    bool valid;

    if (!vq->enabled)
        return false;
    /* Our used index must be visible before we read the driver's wish. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!vq->event_idx) {
        uint16_t flags = __atomic_load_n(&vq->avail[AVAIL_FLAGS], __ATOMIC_RELAXED);

        return !(flags & VRING_AVAIL_F_NO_INTERRUPT);
    }
    old = vq->signalled_used;
    valid = vq->signalled_valid;
    vq->signalled_used = vq->used_idx;
    vq->signalled_valid = true;
    if (!valid)
        return true;
    event = __atomic_load_n(&vq->avail[AVAIL_RING + vq->size], __ATOMIC_RELAXED);
    return vq_need_event(event, vq->used_idx, old);
}

void vq_elem_free(struct vq_elem *e)
{
    free(e->out);
    free(e->in);
    memset(e, 0, sizeof(*e));
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < n && done < len; i++) {
        size_t l;

        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        l = MIN(iov[i].iov_len - off, len - done);
        memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + off, l);
        done += l;
        off = 0;
    }
    return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf,
                    size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < n && done < len; i++) {
        size_t l;

        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        l = MIN(iov[i].iov_len - off, len - done);
        memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)buf + done, l);
        done += l;
        off = 0;
    }
    return done;
}
