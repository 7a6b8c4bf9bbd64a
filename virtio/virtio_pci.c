/* Modern virtio PCI transport (virtio 1.x section 4.1): capabilities,
 * common configuration, ISR, device configuration, notifications, MSI-X
 * with per-queue vectors and the INTx fallback. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "machine/eventfd_io.h"
#include "util/keyval.h"
#include "util/log.h"
#include "util/main_loop.h"
#include "virtio/virtio_pci.h"

#define VIRTIO_BAR 4
#define VIRTIO_MSIX_BAR 1
#define VIRTIO_BAR_SIZE 0x4000
#define COMMON_OFF 0x0000
#define COMMON_LEN 0x38
#define ISR_OFF 0x1000
#define DEVICE_OFF 0x2000
#define NOTIFY_OFF 0x3000
#define NOTIFY_MULT 4

#define PCI_CAP_ID_VNDR 0x09
enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4 };

bool virtio_has_feature(const struct virtio_dev *v, unsigned bit)
{
    return (v->guest_features >> bit) & 1;
}

bool virtio_driver_ok(const struct virtio_dev *v)
{
    return (v->status & VIRTIO_STATUS_DRIVER_OK) && !(v->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void raise_vector(struct virtio_dev *v, uint16_t vector, uint8_t isr_bit)
{
    if (pci_msix_enabled(&v->pci)) {
        if (vector != VIRTIO_NO_VECTOR)
            pci_msix_notify(&v->pci, vector);
        return;
    }
    v->isr |= isr_bit;
    pci_set_irq(&v->pci, 1);
}

void virtio_notify(struct virtio_dev *v, unsigned q)
{
    if (q >= v->nr_queues || !vq_should_notify(&v->vq[q]))
        return;
    raise_vector(v, v->vq_vector[q], 1);
}

void virtio_notify_config(struct virtio_dev *v)
{
    v->config_generation++;
    raise_vector(v, v->msix_config, 2);
}

void virtio_set_needs_reset(struct virtio_dev *v)
{
    if (v->status & VIRTIO_STATUS_NEEDS_RESET)
        return;
    error_report("%s: malformed virtqueue from the guest; device needs reset",
                 v->ops->name);
    v->status |= VIRTIO_STATUS_NEEDS_RESET;
    /* Only after DRIVER_OK does the driver listen for it (spec 2.1.2). */
    if (v->status & VIRTIO_STATUS_DRIVER_OK)
        virtio_notify_config(v);
}

int virtio_pop(struct virtio_dev *v, unsigned q, struct vq_elem *e)
{
    int ret;

    if (q >= v->nr_queues || !virtio_driver_ok(v))
        return 0;
    ret = vq_pop(&v->vq[q], e);
    if (ret < 0)
        virtio_set_needs_reset(v);
    return ret;
}

static void virtio_reset(struct virtio_dev *v)
{
    v->status = 0;
    v->guest_features = 0;
    v->dfselect = v->gfselect = 0;
    v->isr = 0;
    v->queue_sel = 0;
    v->msix_config = VIRTIO_NO_VECTOR;
    for (unsigned i = 0; i < v->nr_queues; i++) {
        vq_reset(&v->vq[i]);
        v->vq_vector[i] = VIRTIO_NO_VECTOR;
    }
    v->generation++;
    pci_set_irq(&v->pci, 0);
    if (v->ops->reset)
        v->ops->reset(v);
}

static void pci_reset(struct pci_device *d)
{
    virtio_reset((struct virtio_dev *)d);
}

static unsigned nr_vectors(const struct virtio_dev *v)
{
    return v->nr_queues + 1;
}

static struct virtqueue *cur_vq(struct virtio_dev *v)
{
    return v->queue_sel < v->nr_queues ? &v->vq[v->queue_sel] : NULL;
}

static uint64_t common_read(struct virtio_dev *v, unsigned off, unsigned size)
{
    uint8_t img[COMMON_LEN];
    struct virtqueue *vq = cur_vq(v);
    uint32_t u32;
    uint16_t u16;
    uint64_t val = 0;

#define PUT(o, x) do { __typeof__(x) t_ = (x); memcpy(img + (o), &t_, sizeof(t_)); } while (0)
    memset(img, 0, sizeof(img));
    PUT(0x00, v->dfselect);
    u32 = v->dfselect < 2 ? (uint32_t)(v->host_features >> (32 * v->dfselect)) : 0;
    PUT(0x04, u32);
    PUT(0x08, v->gfselect);
    u32 = v->gfselect < 2 ? (uint32_t)(v->guest_features >> (32 * v->gfselect)) : 0;
    PUT(0x0c, u32);
    PUT(0x10, v->msix_config);
    u16 = (uint16_t)v->nr_queues;
    PUT(0x12, u16);
    PUT(0x14, v->status);
    PUT(0x15, v->config_generation);
    PUT(0x16, v->queue_sel);
    if (vq) {
        u16 = vq->size;
        PUT(0x18, u16);
        PUT(0x1a, v->vq_vector[v->queue_sel]);
        u16 = vq->enabled;
        PUT(0x1c, u16);
        PUT(0x1e, v->queue_sel);
        PUT(0x20, vq->desc_gpa);
        PUT(0x28, vq->avail_gpa);
        PUT(0x30, vq->used_gpa);
    }
#undef PUT
    if (off + size > COMMON_LEN)
        return 0;
    memcpy(&val, img + off, size);
    return val;
}

static bool features_ok(struct virtio_dev *v)
{
    if (v->guest_features & ~v->host_features)
        return false;
    return virtio_has_feature(v, VIRTIO_F_VERSION_1);
}

static void status_write(struct virtio_dev *v, uint8_t val)
{
    uint8_t old = v->status;

    if (val == 0) {
        virtio_reset(v);
        return;
    }
    /* NEEDS_RESET is the device's to set; only a reset clears it. */
    val = (uint8_t)((val & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET));
    if ((val & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        if (!features_ok(v)) {
            val &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
        } else {
            for (unsigned i = 0; i < v->nr_queues; i++) {
                v->vq[i].event_idx = virtio_has_feature(v, VIRTIO_F_EVENT_IDX);
                v->vq[i].indirect = virtio_has_feature(v, VIRTIO_F_INDIRECT_DESC);
            }
        }
    }
    v->status = val;
    if (v->ops->status_changed)
        v->ops->status_changed(v, old);
    if ((val & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK))
        for (unsigned i = 0; i < v->nr_queues; i++)
            if (v->vq[i].enabled && v->ops->queue_notify)
                v->ops->queue_notify(v, i);
}

static void set_addr_part(uint64_t *addr, unsigned off, uint64_t val, unsigned size)
{
    if (size == 8 && off == 0) {
        *addr = val;
    } else if (size == 4) {
        unsigned shift = off ? 32 : 0;

        *addr = (*addr & ~(0xffffffffULL << shift)) | ((val & 0xffffffffULL) << shift);
    }
}

static void common_write(struct virtio_dev *v, unsigned off, uint64_t val, unsigned size)
{
    struct virtqueue *vq = cur_vq(v);

    switch (off) {
    case 0x00: v->dfselect = (uint32_t)val; return;
    case 0x08: v->gfselect = (uint32_t)val; return;
    case 0x0c:
        if (v->status & VIRTIO_STATUS_FEATURES_OK)
            return;   /* frozen once accepted */
        if (v->gfselect < 2) {
            unsigned sh = 32 * v->gfselect;

            v->guest_features = (v->guest_features & ~(0xffffffffULL << sh)) |
                                ((val & 0xffffffffULL) << sh);
        }
        return;
    case 0x10:
        v->msix_config = (uint16_t)val < nr_vectors(v) ? (uint16_t)val : VIRTIO_NO_VECTOR;
        return;
    case 0x14: status_write(v, (uint8_t)val); return;
    case 0x16: v->queue_sel = (uint16_t)val; return;
    }
    if (!vq) {
        LOG(LOG_GUEST_ERRORS, "%s: write 0x%x to queue %u that does not exist\n",
            v->ops->name, off, v->queue_sel);
        return;
    }
    switch (off) {
    case 0x18:
        if (!vq->enabled)
            vq->size = (uint16_t)val;
        return;
    case 0x1a:
        v->vq_vector[v->queue_sel] =
            (uint16_t)val < nr_vectors(v) ? (uint16_t)val : VIRTIO_NO_VECTOR;
        return;
    case 0x1c:
        if ((val & 1) && !vq->enabled && vq_enable(vq) < 0)
            virtio_set_needs_reset(v);
        return;
    }
    if (vq->enabled)
        return;   /* ring addresses are fixed while enabled */
    if (off >= 0x20 && off < 0x28)
        set_addr_part(&vq->desc_gpa, off - 0x20, val, size);
    else if (off >= 0x28 && off < 0x30)
        set_addr_part(&vq->avail_gpa, off - 0x28, val, size);
    else if (off >= 0x30 && off < 0x38)
        set_addr_part(&vq->used_gpa, off - 0x30, val, size);
}

static uint64_t bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_dev *v = opaque;
    uint64_t val = 0;

    if (offset < COMMON_OFF + COMMON_LEN)
        return common_read(v, (unsigned)offset, size);
    if (offset == ISR_OFF) {
        val = v->isr;
        v->isr = 0;
        pci_set_irq(&v->pci, 0);
        return val;
    }
    if (offset >= DEVICE_OFF && offset + size <= DEVICE_OFF + v->config_len) {
        memcpy(&val, v->config + (offset - DEVICE_OFF), size);
        return val;
    }
    return 0;
}

static void queue_kicked(struct virtio_dev *v, unsigned q)
{
    if (v->vq[q].enabled && virtio_driver_ok(v) && v->ops->queue_notify)
        v->ops->queue_notify(v, q);
}

/* Main loop, machine lock held: the accelerator saw the doorbell write. */
static void notifier_ready(void *opaque, uint32_t events)
{
    struct virtio_notifier *n = opaque;
    uint64_t cnt;

    /* EAGAIN: an earlier wake-up already took the count. */
    if (read(n->fd, &cnt, sizeof(cnt)) == sizeof(cnt))
        queue_kicked(n->v, n->q);
}

/* BAR 4 moved, appeared or went away: the doorbells follow it. */
static void doorbells_unregister(struct virtio_dev *v)
{
    if (!v->notify_registered)
        return;
    for (unsigned q = 0; q < v->nr_queues; q++)
        machine_ioeventfd_del(v->m, v->notify_gpa + NOTIFY_MULT * q, v->notifiers[q].fd);
    v->notify_registered = false;
}

static void virtio_bar_map(struct pci_device *d, int bar, uint64_t addr, bool mapped)
{
    struct virtio_dev *v = (struct virtio_dev *)d;

    if (bar != VIRTIO_BAR || !v->ioeventfd)
        return;
    doorbells_unregister(v);
    if (!mapped)
        return;
    v->notify_gpa = addr + NOTIFY_OFF;
    for (unsigned q = 0; q < v->nr_queues; q++) {
        if (machine_ioeventfd_add(v->m, v->notify_gpa + NOTIFY_MULT * q,
                                  v->notifiers[q].fd) < 0) {
            /* Out of memory: the MMIO handler still takes the kicks. */
            for (unsigned i = 0; i < q; i++)
                machine_ioeventfd_del(v->m, v->notify_gpa + NOTIFY_MULT * i,
                                      v->notifiers[i].fd);
            return;
        }
    }
    v->notify_registered = true;
}

static void notifiers_free(struct virtio_dev *v)
{
    doorbells_unregister(v);
    for (unsigned q = 0; q < v->nr_queues; q++) {
        if (v->notifiers[q].fd < 0)
            continue;
        main_loop_del_fd(v->notifiers[q].fd);
        close(v->notifiers[q].fd);
        v->notifiers[q].fd = -1;
    }
}

/* One eventfd per queue, watched by the main loop.  False (and none) when
 * that cannot be had: the device then takes every kick as an MMIO write. */
static bool notifiers_create(struct virtio_dev *v)
{
    for (unsigned q = 0; q < v->nr_queues; q++)
        v->notifiers[q] = (struct virtio_notifier){ .v = v, .q = q, .fd = -1 };
    for (unsigned q = 0; q < v->nr_queues; q++) {
        struct virtio_notifier *n = &v->notifiers[q];

        n->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (n->fd < 0 || main_loop_add_fd(n->fd, EPOLLIN, notifier_ready, n) < 0) {
            if (n->fd >= 0)
                close(n->fd);
            n->fd = -1;
            notifiers_free(v);
            return false;
        }
    }
    return true;
}

static void bar_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct virtio_dev *v = opaque;

    if (offset < COMMON_OFF + COMMON_LEN) {
        common_write(v, (unsigned)offset, value, size);
    } else if (offset >= DEVICE_OFF && offset + size <= DEVICE_OFF + v->config_len) {
        if (v->ops->config_write)
            v->ops->config_write(v, (unsigned)(offset - DEVICE_OFF), value, size);
    } else if (offset >= NOTIFY_OFF && offset < NOTIFY_OFF + NOTIFY_MULT * v->nr_queues) {
        /* Without ioeventfd (emu, ioeventfd=off, a write width the
         * accelerator did not match). */
        queue_kicked(v, (unsigned)(offset - NOTIFY_OFF) / NOTIFY_MULT);
    }
}

static const struct io_ops virtio_bar_ops = {
    .read = bar_read,
    .write = bar_write,
};

static int add_cap(struct virtio_dev *v, uint8_t type, uint32_t off, uint32_t len,
                   uint8_t cap_len)
{
    int c = pci_add_capability(&v->pci, PCI_CAP_ID_VNDR, cap_len);
    uint8_t *p;

    if (c < 0)
        return c;
    p = v->pci.config + c;
    p[2] = cap_len;
    p[3] = type;
    p[4] = VIRTIO_BAR;
    memcpy(p + 8, &off, 4);
    memcpy(p + 12, &len, 4);
    if (type == CAP_NOTIFY) {
        uint32_t mult = NOTIFY_MULT;

        memcpy(p + 16, &mult, 4);
    }
    return 0;
}

/* Machine teardown: the device's own cleanup, then the transport's.  Every
 * device embeds its virtio_dev first, so v is the allocation. */
static void virtio_pci_destroy(void *opaque)
{
    struct virtio_dev *v = opaque;

    if (v->ops->destroy)
        v->ops->destroy(v);
    if (v->ioeventfd)
        notifiers_free(v);
    pci_msix_free(&v->pci);
    free(v);
}

int virtio_pci_create(struct machine *m, struct virtio_dev *v,
                      const struct virtio_device_ops *ops, void *opaque,
                      uint64_t host_features, unsigned nr_queues, uint16_t queue_size,
                      unsigned config_len, struct keyval *opts)
{
    struct pci_bus *bus = pci_root_bus(m);
    int ret;

    if (!bus) {
        error_report("%s: no PCI bus", ops->name);
        return -ENODEV;
    }
    if (nr_queues > VIRTIO_MAX_QUEUES || config_len > VIRTIO_CONFIG_MAX)
        return -EINVAL;
    pci_device_init(&v->pci, ops->name, VIRTIO_PCI_VENDOR,
                    (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id), ops->class_code, 1);
    v->pci.opaque = v;
    v->pci.reset = pci_reset;
    v->pci.config[PCI_SUBSYSTEM_VENDOR_ID] = VIRTIO_PCI_VENDOR & 0xff;
    v->pci.config[PCI_SUBSYSTEM_VENDOR_ID + 1] = VIRTIO_PCI_VENDOR >> 8;
    v->pci.config[PCI_SUBSYSTEM_ID] = (uint8_t)(0x40 + ops->device_id);
    v->pci.config[PCI_SUBSYSTEM_ID + 1] = 0;
    v->m = m;
    v->ops = ops;
    v->opaque = opaque;
    v->host_features = host_features | (1ULL << VIRTIO_F_VERSION_1) |
                       (1ULL << VIRTIO_F_INDIRECT_DESC) | (1ULL << VIRTIO_F_EVENT_IDX);
    v->nr_queues = nr_queues;
    v->config_len = config_len;
    for (unsigned i = 0; i < nr_queues; i++) {
        vq_init(&v->vq[i], m, queue_size);
        v->vq[i].dev = ops->name;
        v->vq[i].index = (uint16_t)i;
    }
    if (opts && pci_keyval_addr(opts, &v->pci) < 0)
        return -EINVAL;
    v->ioeventfd = true;
    if (opts && keyval_get_bool(opts, "ioeventfd", true, &v->ioeventfd) < 0)
        return -EINVAL;
    if (v->ioeventfd && !notifiers_create(v)) {
        LOG(LOG_ACCEL, "%s: no doorbell eventfds; kicks stay MMIO writes\n", ops->name);
        v->ioeventfd = false;
    }
    v->pci.bar_map = virtio_bar_map;
    ret = pci_device_set_bar(&v->pci, VIRTIO_BAR, PCI_BAR_MEM32, VIRTIO_BAR_SIZE, false,
                             &virtio_bar_ops, v);
    if (ret == 0)
        ret = add_cap(v, CAP_COMMON, COMMON_OFF, COMMON_LEN, 16);
    if (ret == 0)
        ret = add_cap(v, CAP_ISR, ISR_OFF, 1, 16);
    if (ret == 0)
        ret = add_cap(v, CAP_DEVICE, DEVICE_OFF, config_len ? config_len : 4, 16);
    if (ret == 0)
        ret = add_cap(v, CAP_NOTIFY, NOTIFY_OFF, NOTIFY_MULT * nr_queues, 20);
    if (ret == 0)
        ret = pci_msix_init(&v->pci, nr_vectors(v), VIRTIO_MSIX_BAR);
    if (ret < 0) {
        error_report("%s: cannot set up the PCI function: %s", ops->name, strerror(-ret));
        return ret;
    }
    pci_device_set_intx_pin(&v->pci, 1);
    virtio_reset(v);
    ret = pci_register_device(bus, &v->pci);
    if (ret < 0) {
        error_report("%s: cannot plug into the PCI bus: %s", ops->name, strerror(-ret));
        pci_msix_free(&v->pci);
        return ret;
    }
    return machine_add_device(m, ops->name, v, NULL, virtio_pci_destroy);
}
