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
#include "migration/vmstate.h"
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

/* Snapshot state of the PCI function and the transport (the device's
 * staging struct begins with it; virtio/virtio_vmstate.c).  Arrays are
 * sized for VIRTIO_MAX_QUEUES; entries past the device's queues are zero. */
#define VIRTIO_MSIX_MAX_VECTORS (VIRTIO_MAX_QUEUES + 1)
struct virtio_pci_state {
    uint8_t pci_config[PCI_CONFIG_SPACE_SIZE];
    bool intx_level;
    uint8_t msix_table[VIRTIO_MSIX_MAX_VECTORS * 16];
    uint64_t msix_pba[(VIRTIO_MSIX_MAX_VECTORS + 63) / 64];
    uint32_t nr_queues;
    uint64_t host_features, guest_features;
    uint32_t dfselect, gfselect;
    uint8_t status, isr, config_generation;
    uint16_t msix_config, queue_sel;
    uint8_t config[VIRTIO_CONFIG_MAX];
    uint16_t q_size[VIRTIO_MAX_QUEUES];
    bool q_enabled[VIRTIO_MAX_QUEUES];
    uint64_t q_desc[VIRTIO_MAX_QUEUES], q_avail[VIRTIO_MAX_QUEUES], q_used[VIRTIO_MAX_QUEUES];
    uint16_t q_vector[VIRTIO_MAX_QUEUES];
    uint16_t q_last_avail[VIRTIO_MAX_QUEUES], q_used_idx[VIRTIO_MAX_QUEUES];
    uint16_t q_signalled_used[VIRTIO_MAX_QUEUES];
    bool q_signalled_valid[VIRTIO_MAX_QUEUES];
    bool q_broken[VIRTIO_MAX_QUEUES];
};

/* The transport's fields of a staging struct st whose member t is a
 * struct virtio_pci_state. */
#define VIRTIO_PCI_STATE_FIELDS(st) \
    VMS_U8_FIELD(st, t.pci_config), VMS_BOOL_FIELD(st, t.intx_level), \
    VMS_U8_FIELD(st, t.msix_table), VMS_U64_FIELD(st, t.msix_pba), \
    VMS_U32_FIELD(st, t.nr_queues), VMS_U64_FIELD(st, t.host_features), \
    VMS_U64_FIELD(st, t.guest_features), VMS_U32_FIELD(st, t.dfselect), \
    VMS_U32_FIELD(st, t.gfselect), VMS_U8_FIELD(st, t.status), VMS_U8_FIELD(st, t.isr), \
    VMS_U8_FIELD(st, t.config_generation), VMS_U16_FIELD(st, t.msix_config), \
    VMS_U16_FIELD(st, t.queue_sel), VMS_U8_FIELD(st, t.config), \
    VMS_U16_FIELD(st, t.q_size), VMS_BOOL_FIELD(st, t.q_enabled), \
    VMS_U64_FIELD(st, t.q_desc), VMS_U64_FIELD(st, t.q_avail), VMS_U64_FIELD(st, t.q_used), \
    VMS_U16_FIELD(st, t.q_vector), VMS_U16_FIELD(st, t.q_last_avail), \
    VMS_U16_FIELD(st, t.q_used_idx), VMS_U16_FIELD(st, t.q_signalled_used), \
    VMS_BOOL_FIELD(st, t.q_signalled_valid), VMS_BOOL_FIELD(st, t.q_broken)

void virtio_pci_state_get(const struct virtio_dev *v, struct virtio_pci_state *s);
/* Everything a hostile stream could get wrong, against this device: 0, or
 * -EINVAL after an error_report naming what and the field. */
int virtio_pci_state_check(const struct virtio_dev *v, const struct virtio_pci_state *s,
                           const char *what);
void virtio_pci_state_set(struct virtio_dev *v, const struct virtio_pci_state *s);
/* After a load: handle every enabled queue that holds buffers, as if kicked
 * (a doorbell the source's ioeventfd had not passed on yet is not lost). */
int virtio_pci_kick_pending(void *dev);
/* The table and hooks of a device with no state beyond the transport. */
struct virtio_plain_state {
    struct virtio_pci_state t;
};
extern const struct vmstate_field virtio_plain_fields[];
void virtio_plain_get(const void *dev, void *state);
int virtio_plain_check(const void *dev, const void *state, const char *what);
void virtio_plain_set(void *dev, const void *state);

#endif
