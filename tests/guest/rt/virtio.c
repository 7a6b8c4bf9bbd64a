/* The modern virtio-pci transport from the driver's side (virtio.h). */
#include "virtio.h"

#define PCI_CAP_VENDOR 0x09
#define PCI_CAP_MSIX 0x11
/* A capability list longer than config space can hold is a loop. */
#define PCI_MAX_CAPS 48

unsigned virtio_pci_find(uint16_t id)
{
    for (unsigned slot = 1; slot < 32; slot++)
        if (pci_read(slot, 0) == ((uint32_t)id << 16 | VIRTIO_VENDOR))
            return slot;
    return 0;
}

static void map_cap(struct virtio_dev *d, unsigned slot, uint8_t cap)
{
    struct virtio_cap c = {
        .type = pci_read8(slot, cap + 3),
        .bar = pci_read8(slot, cap + 4),
        .offset = pci_read(slot, cap + 8),
        .length = pci_read(slot, cap + 12),
    };
    uint64_t at = VIRTIO_BAR_BASE + c.offset;

    if (c.type < VIRTIO_CAP_COMMON || c.type > VIRTIO_CAP_DEVICE)
        return;
    if (d->nr_caps < VIRTIO_MAX_CAPS)
        d->caps[d->nr_caps++] = c;
    if (c.bar != 4)
        return;             /* only BAR 4 is placed */
    if (c.type == VIRTIO_CAP_COMMON) {
        d->common = at;
    } else if (c.type == VIRTIO_CAP_NOTIFY) {
        d->notify = at;
        d->notify_mult = pci_read(slot, cap + 16);
    } else if (c.type == VIRTIO_CAP_ISR) {
        d->isr = at;
    } else {
        d->device = at;
    }
}

void virtio_pci_map(struct virtio_dev *d, unsigned slot)
{
    unsigned n = 0;

    *d = (struct virtio_dev){ .slot = slot };
    pci_write(slot, 0x10 + 4 * 4, (uint32_t)VIRTIO_BAR_BASE);
    pci_write(slot, 0x10 + 4 * 1, (uint32_t)VIRTIO_MSIX_BASE);
    pci_write(slot, 0x04, 0x0006);     /* memory + bus master */
    for (uint8_t cap = pci_read8(slot, 0x34); cap && n < PCI_MAX_CAPS;
         cap = pci_read8(slot, cap + 1), n++) {
        uint8_t id = pci_read8(slot, cap);

        if (id == PCI_CAP_MSIX)
            d->msix_cap = cap;
        else if (id == PCI_CAP_VENDOR)
            map_cap(d, slot, cap);
    }
}

void virtio_negotiate(struct virtio_dev *d)
{
    uint64_t c = d->common;

    wr8(c + VIRTIO_COMMON_STATUS, 0);
    if (virtio_status(d) != 0)
        test_fail("virtio: status not 0 after reset");
    wr8(c + VIRTIO_COMMON_STATUS, VIRTIO_ST_ACK);
    wr8(c + VIRTIO_COMMON_STATUS, VIRTIO_ST_ACK | VIRTIO_ST_DRIVER);
    wr32(c + VIRTIO_COMMON_DFSELECT, 1);
    if (!(rd32(c + VIRTIO_COMMON_DF) & 1))
        test_fail("virtio: VERSION_1 not offered");
    /* Feature bits 0-31 (no INDIRECT_DESC, no EVENT_IDX) off; bit 32,
     * VERSION_1, on. */
    wr32(c + VIRTIO_COMMON_GFSELECT, 0);
    wr32(c + VIRTIO_COMMON_GF, 0);
    wr32(c + VIRTIO_COMMON_GFSELECT, 1);
    wr32(c + VIRTIO_COMMON_GF, 1);
    wr8(c + VIRTIO_COMMON_STATUS, VIRTIO_ST_ACK | VIRTIO_ST_DRIVER | VIRTIO_ST_FEATURES_OK);
    if (!(virtio_status(d) & VIRTIO_ST_FEATURES_OK))
        test_fail("virtio: FEATURES_OK refused");
}

void virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t index, uint16_t vector)
{
    uint64_t c = d->common;

    wr16(c + VIRTIO_COMMON_Q_SELECT, index);
    if (rd16(c + VIRTIO_COMMON_Q_SIZE) < VIRTQ_SIZE)
        test_fail("virtio: queue %u too small", index);
    wr16(c + VIRTIO_COMMON_Q_SIZE, VIRTQ_SIZE);
    wr16(c + VIRTIO_COMMON_Q_MSIX, vector);
    if (rd16(c + VIRTIO_COMMON_Q_MSIX) != vector)
        test_fail("virtio: queue %u vector %u not taken", index, vector);
    memset(q->desc, 0, sizeof(q->desc));
    memset(&q->avail, 0, sizeof(q->avail));
    memset((void *)&q->used, 0, sizeof(q->used));
    q->index = index;
    q->used_seen = 0;
    q->doorbell = d->notify + (uint64_t)rd16(c + VIRTIO_COMMON_Q_NOTIFY_OFF) * d->notify_mult;
    wr64(c + VIRTIO_COMMON_Q_DESC, (uint64_t)(uintptr_t)q->desc);
    wr64(c + VIRTIO_COMMON_Q_DRIVER, (uint64_t)(uintptr_t)&q->avail);
    wr64(c + VIRTIO_COMMON_Q_DEVICE, (uint64_t)(uintptr_t)&q->used);
    wr16(c + VIRTIO_COMMON_Q_ENABLE, 1);
}

void virtq_submit(struct virtq *q, uint16_t head)
{
    uint16_t idx = q->avail.idx;

    q->avail.ring[idx % VIRTQ_SIZE] = head;
    /* The descriptors and the ring entry are in RAM before the index
     * that publishes them, and the index before the doorbell. */
    __asm__ volatile("" ::: "memory");
    q->avail.idx = (uint16_t)(idx + 1);
    __asm__ volatile("" ::: "memory");
    wr16(q->doorbell, q->index);
}

bool virtq_take_used(struct virtq *q, uint32_t *len)
{
    if (q->used.idx == q->used_seen)
        return false;
    if (len)
        *len = q->used.ring[q->used_seen % VIRTQ_SIZE].len;
    q->used_seen++;
    return true;
}
