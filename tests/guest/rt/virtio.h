/* The modern (1.x) virtio-pci transport from the driver's side, for the
 * test kernels that drive virtio devices (virtio, virtio_blk, switch):
 * find the function, place its BARs, map the structures its vendor
 * capabilities point at, negotiate VERSION_1 and nothing else, and set up
 * split virtqueues of VIRTQ_SIZE entries.  Failures end the test. */
#ifndef VMON_TESTS_RT_VIRTIO_H
#define VMON_TESTS_RT_VIRTIO_H

#include "pci.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_ID_BLK 0x1042
#define VIRTIO_ID_RNG 0x1044

/* Where the kernels place BAR 4 (the virtio structures) and BAR 1 (the
 * MSI-X table): free addresses in the PCI hole. */
#define VIRTIO_BAR_BASE 0xe0000000ULL
#define VIRTIO_MSIX_BASE 0xe0100000ULL

/* Device status bits. */
#define VIRTIO_ST_ACK 1
#define VIRTIO_ST_DRIVER 2
#define VIRTIO_ST_DRIVER_OK 4
#define VIRTIO_ST_FEATURES_OK 8
#define VIRTIO_ST_NEEDS_RESET 0x40
#define VIRTIO_ST_READY \
    (VIRTIO_ST_ACK | VIRTIO_ST_DRIVER | VIRTIO_ST_FEATURES_OK | VIRTIO_ST_DRIVER_OK)

/* Common configuration structure offsets. */
#define VIRTIO_COMMON_DFSELECT 0x00
#define VIRTIO_COMMON_DF 0x04
#define VIRTIO_COMMON_GFSELECT 0x08
#define VIRTIO_COMMON_GF 0x0c
#define VIRTIO_COMMON_MSIX_CONFIG 0x10
#define VIRTIO_COMMON_NUM_QUEUES 0x12
#define VIRTIO_COMMON_STATUS 0x14
#define VIRTIO_COMMON_CFG_GENERATION 0x15
#define VIRTIO_COMMON_Q_SELECT 0x16
#define VIRTIO_COMMON_Q_SIZE 0x18
#define VIRTIO_COMMON_Q_MSIX 0x1a
#define VIRTIO_COMMON_Q_ENABLE 0x1c
#define VIRTIO_COMMON_Q_NOTIFY_OFF 0x1e
#define VIRTIO_COMMON_Q_DESC 0x20
#define VIRTIO_COMMON_Q_DRIVER 0x28
#define VIRTIO_COMMON_Q_DEVICE 0x30

#define VIRTIO_NO_VECTOR 0xffff

/* Vendor capability types 1-4; 5 (PCI config access) is never used. */
#define VIRTIO_CAP_COMMON 1
#define VIRTIO_CAP_NOTIFY 2
#define VIRTIO_CAP_ISR 3
#define VIRTIO_CAP_DEVICE 4

#define VIRTIO_MAX_CAPS 8

struct virtio_cap {
    uint8_t type, bar;
    uint32_t offset, length;
};

struct virtio_dev {
    unsigned slot;
    /* Addresses of the structures in BAR 4; 0 if the device has none there. */
    uint64_t common, notify, isr, device;
    uint32_t notify_mult;
    uint8_t msix_cap;          /* config-space offset; 0: no MSI-X */
    /* The type 1-4 capabilities in list order, whatever their BAR. */
    struct virtio_cap caps[VIRTIO_MAX_CAPS];
    unsigned nr_caps;
};

#define VIRTQ_SIZE 8

#define VIRTQ_DESC_NEXT 1
#define VIRTQ_DESC_WRITE 2
#define VIRTQ_DESC_INDIRECT 4

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

/* A split virtqueue's three rings, each on its own page, and the driver's
 * bookkeeping.  The used ring is the device's: every read goes to RAM. */
struct virtq {
    struct virtq_desc desc[VIRTQ_SIZE] __attribute__((aligned(4096)));
    struct {
        uint16_t flags, idx, ring[VIRTQ_SIZE], used_event;
    } avail __attribute__((aligned(4096)));
    volatile struct {
        uint16_t flags, idx;
        struct { uint32_t id, len; } ring[VIRTQ_SIZE];
        uint16_t avail_event;
    } used __attribute__((aligned(4096)));
    uint64_t doorbell;         /* this queue's notify address */
    uint16_t index;
    uint16_t used_seen;        /* used elements consumed so far */
};

/* The slot of the first function on bus 0 with virtio device ID `id`, or 0
 * (slot 0 is the host bridge). */
unsigned virtio_pci_find(uint16_t id);

/* Places BAR 4 at VIRTIO_BAR_BASE and BAR 1 at VIRTIO_MSIX_BASE, turns on
 * memory decoding and bus mastering, and walks the capability list into
 * *d.  Which structures a kernel needs is its own check. */
void virtio_pci_map(struct virtio_dev *d, unsigned slot);

static inline uint8_t virtio_status(const struct virtio_dev *d)
{
    return rd8(d->common + VIRTIO_COMMON_STATUS);
}

/* Reset, ACKNOWLEDGE, DRIVER, then VERSION_1 as the only feature up to
 * FEATURES_OK. */
void virtio_negotiate(struct virtio_dev *d);

/* Queue `index` on q's rings (zeroed first, so this also serves after a
 * reset), interrupts on MSI-X entry `vector` (VIRTIO_NO_VECTOR: none, or
 * INTx while MSI-X is off), enabled. */
void virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t index, uint16_t vector);

static inline void virtio_driver_ok(struct virtio_dev *d)
{
    wr8(d->common + VIRTIO_COMMON_STATUS, VIRTIO_ST_READY);
}

/* Offers the chain at `head` (not checked: kernels submit bad heads on
 * purpose) and rings the queue's doorbell. */
void virtq_submit(struct virtq *q, uint16_t head);

/* Takes the next used element if the device has published one: its
 * length into *len (may be NULL). */
bool virtq_take_used(struct virtq *q, uint32_t *len);

#endif
