/* Modern (virtio 1.x) PCI transport, shared by every virtio device.
 *
 * Layout (docs/virtio.md): BAR 1 holds the MSI-X table and PBA; BAR 4
 * (32-bit memory, 16 KiB) holds the common configuration at 0x0000, the ISR
 * at 0x1000, the device configuration at 0x2000 and the notify area at
 * 0x3000 (one 4-byte doorbell per queue).  A device model fills a
 * virtio_device_ops, calls virtio_pci_create() and gets its callbacks
 * under the machine lock. */
#ifndef VMON_VIRTIO_VIRTIO_PCI_H
#define VMON_VIRTIO_VIRTIO_PCI_H

#include "hw/pci.h"
#include "virtio/virtqueue.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_MAX_QUEUES 64
#define VIRTIO_CONFIG_MAX 256
#define VIRTIO_NO_VECTOR 0xffff

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* Transport feature bits. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Device types (virtio 1.x section 5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4

struct virtio_dev;

struct virtio_device_ops {
    const char *name;              /* "virtio-rng-pci" */
    uint16_t device_id;            /* VIRTIO_ID_* */
    uint32_t class_code;
    /* Called when the driver kicks queue q (and after DRIVER_OK for
     * queues that already hold buffers). */
    void (*queue_notify)(struct virtio_dev *v, unsigned q);
    /* Device reset (status 0 or machine reset): drop in-flight work. */
    void (*reset)(struct virtio_dev *v);
    /* Optional: the driver wrote the device configuration. */
    void (*config_write)(struct virtio_dev *v, unsigned offset, uint64_t value,
                         unsigned size);
    /* Optional: status changed (e.g. DRIVER_OK). */
    void (*status_changed)(struct virtio_dev *v, uint8_t old);
    /* Machine teardown, before the transport frees the device (whose
     * struct must begin with its virtio_dev). */
    void (*destroy)(struct virtio_dev *v);
};

/* A queue's doorbell as an eventfd (ioeventfd=on): the accelerator
 * signals it instead of exiting on the notify write (machine/eventfd_io.h),
 * the main loop calls queue_notify. */
struct virtio_notifier {
    struct virtio_dev *v;
    unsigned q;
    int fd;
};

struct virtio_dev {
    struct pci_device pci;         /* first: pci_device_init zeroes it */
    struct machine *m;
    const struct virtio_device_ops *ops;
    void *opaque;
    uint64_t host_features;
    uint64_t guest_features;
    uint32_t dfselect, gfselect;
    uint8_t status;
    uint8_t isr;
    uint8_t config_generation;
    uint16_t msix_config;
    uint16_t queue_sel;
    unsigned nr_queues;
    struct virtqueue vq[VIRTIO_MAX_QUEUES];
    uint16_t vq_vector[VIRTIO_MAX_QUEUES];
    uint8_t config[VIRTIO_CONFIG_MAX];
    unsigned config_len;
    uint64_t generation;           /* bumped at every reset */
    bool ioeventfd;                /* -device ...,ioeventfd=on (default) */
    bool notify_registered;        /* doorbells in the machine's registry */
    uint64_t notify_gpa;           /* where they are */
    struct virtio_notifier notifiers[VIRTIO_MAX_QUEUES];
};

/* Create and register the PCI function.  host_features are the device's
 * own bits; the transport adds VERSION_1, INDIRECT_DESC and EVENT_IDX.
 * opts supplies addr= and ioeventfd=on|off (may be NULL).  On success the machine owns v: it is
 * freed at machine teardown after ops->destroy. */
int virtio_pci_create(struct machine *m, struct virtio_dev *v,
                      const struct virtio_device_ops *ops, void *opaque,
                      uint64_t host_features, unsigned nr_queues, uint16_t queue_size,
                      unsigned config_len, struct keyval *opts);
bool virtio_has_feature(const struct virtio_dev *v, unsigned bit);
bool virtio_driver_ok(const struct virtio_dev *v);
/* Interrupt for queue q if vq_should_notify() says so. */
void virtio_notify(struct virtio_dev *v, unsigned q);
/* Configuration changed (also used for NEEDS_RESET). */
void virtio_notify_config(struct virtio_dev *v);
/* The device found a malformed ring: NEEDS_RESET and a config interrupt. */
void virtio_set_needs_reset(struct virtio_dev *v);
/* vq_pop() that turns -EIO into NEEDS_RESET: 1, 0, or -EIO. */
int virtio_pop(struct virtio_dev *v, unsigned q, struct vq_elem *e);

#endif
