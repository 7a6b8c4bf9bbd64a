/* Split virtqueues (virtio 1.x section 2.7), device side.
 *
 * The rings live in guest RAM and the guest writes them concurrently from
 * its vCPUs, so every value read from them is hostile: vq_pop() validates
 * the whole descriptor chain (indexes, loops, chain length, indirect
 * tables, address ranges, readable-before-writable order, total length)
 * before handing it out.  A bad chain marks the queue broken and returns
 * -EIO; the transport then sets DEVICE_NEEDS_RESET.  All calls happen under
 * the machine lock; the iovecs of a popped element point into guest RAM,
 * which never moves, so a worker thread may fill them without the lock. */
#ifndef VMON_VIRTIO_VIRTQUEUE_H
#define VMON_VIRTIO_VIRTQUEUE_H

#include <sys/uio.h>
#include "machine/machine.h"

#define VQ_MAX_SIZE 32768
/* Upper bound on the entries of one indirect table and on one chain's
 * bytes: far above what any driver builds, low enough to bound our work. */
#define VQ_MAX_INDIRECT 4096
#define VQ_MAX_CHAIN_BYTES (1ULL << 32)

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtqueue {
    struct machine *m;
    const char *dev;        /* owning device and queue number, for traces */
    uint16_t index;
    /* Programmed by the driver through the transport. */
    uint16_t size;          /* power of two, <= max_size */
    uint16_t max_size;
    bool enabled;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    /* Negotiated features that change the ring format. */
    bool event_idx;
    bool indirect;
    /* Resolved at enable time. */
    struct vring_desc *desc;
    uint16_t *avail;        /* flags, idx, ring[size], used_event */
    uint8_t *used;          /* flags, idx, ring[size] {id, len}, avail_event */
    uint16_t last_avail;
    uint16_t used_idx;
    uint16_t signalled_used;
    bool signalled_valid;
    bool broken;            /* a bad chain was seen: nothing more until reset */
    const char *why;        /* what was wrong (for -d guest_errors) */
};

/* One popped chain: readable ("out") segments first, then writable ("in"). */
struct vq_elem {
    uint16_t head;
    unsigned n_out, n_in;
    struct iovec *out, *in;  /* malloc'd; vq_elem_free() */
    unsigned cap_out, cap_in;
    uint64_t out_len, in_len;
};

void vq_init(struct virtqueue *vq, struct machine *m, uint16_t max_size);
/* Back to the reset state (size = max_size, disabled, not broken). */
void vq_reset(struct virtqueue *vq);
/* Is this a ring the device could use: size a power of two <= max_size,
 * aligned rings wholly in guest RAM?  0, or -EINVAL with *why. */
int vq_check_layout(struct machine *m, uint16_t size, uint16_t max_size, uint64_t desc_gpa,
                    uint64_t avail_gpa, uint64_t used_gpa, const char **why);
/* Driver set queue_enable: resolve and check the ring addresses.  0, or
 * -EINVAL (queue marked broken) if the size or a ring is bad. */
int vq_enable(struct virtqueue *vq);
/* Take the next available chain.  1 with *e filled, 0 if none, -EIO if the
 * ring or the chain is malformed (the queue is then broken). */
int vq_pop(struct virtqueue *vq, struct vq_elem *e);
/* Give a chain back as used, len bytes written into its writable part. */
void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len);
/* After pushes: does the driver want an interrupt now (EVENT_IDX or
 * NO_INTERRUPT)?  Records the signalled index when it does. */
bool vq_should_notify(struct virtqueue *vq);
/* Turn driver notifications (kicks) on or off while the device polls. */
void vq_set_notification(struct virtqueue *vq, bool enable);
bool vq_has_avail(struct virtqueue *vq);
void vq_elem_free(struct vq_elem *e);
/* Copy between an iovec array and a flat buffer; return bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf,
                    size_t len);

/* vring_need_event() of the spec: new_idx has passed event since old. */
static inline bool vq_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

#endif
