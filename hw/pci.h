/* PCI: an i440FX-like host bridge (00:00.0) with configuration mechanism #1
 * at 0xcf8/0xcfc, and the API devices (virtio-pci) use to appear on bus 0.
 *
 * A device fills a struct pci_device (pci_device_init, BARs, capabilities)
 * and registers it; from then on the bus owns its configuration space: BAR
 * sizing, mapping memory BARs into the machine's MMIO space and I/O BARs
 * into the PCI I/O window when the guest programs them and enables decoding,
 * the capability list and INTx routing.  All of it runs under the machine
 * lock, like every other device callback. */
#ifndef VMON_HW_PCI_H
#define VMON_HW_PCI_H

#include "machine/machine.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_CONFIG_SPACE_SIZE 256
#define PCI_NUM_BARS 6
#define PCI_MAX_SLOTS 32

/* Where the bus places I/O BARs (the I/O window in the DSDT's _CRS). */
#define PCI_IO_WINDOW_BASE 0xc000
#define PCI_IO_WINDOW_SIZE 0x4000
/* The 32-bit memory window ends where the IOAPIC begins; it starts at
 * m->lowmem_size (rounded up to 256 MiB, see pci_mem_window_base). */
#define PCI_MEM_WINDOW_END 0xfec00000ULL
/* INTx: pin INTA..INTD of slot s is wired to GSI 16 + ((s + pin) & 3),
 * level-triggered; the DSDT's _PRT says the same. */
#define PCI_INTX_GSI_BASE 16

/* Configuration space offsets. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS 0x06
#define PCI_STATUS_INTERRUPT 0x0008
#define PCI_STATUS_CAP_LIST 0x0010
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BASE_ADDRESS_0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CAP_START 0x40

enum pci_bar_type { PCI_BAR_NONE, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };

struct pci_bus;
struct pci_device;
struct pci_msix;

struct pci_bar {
    enum pci_bar_type type;
    uint64_t size;                 /* power of two; >= 16 (mem) / 4 (io) */
    bool prefetchable;
    const struct io_ops *ops;      /* offsets are relative to the BAR */
    void *opaque;
    /* Managed by the bus: */
    bool mapped;
    uint64_t addr;
};

struct pci_device {
    const char *name;
    void *opaque;                  /* the device's own state */
    uint8_t config[PCI_CONFIG_SPACE_SIZE];
    uint8_t wmask[PCI_CONFIG_SPACE_SIZE];    /* bits the guest can write */
    uint8_t w1cmask[PCI_CONFIG_SPACE_SIZE];  /* write-one-to-clear bits */
    struct pci_bar bars[PCI_NUM_BARS];

    /* Optional hooks.  config_write runs after the bus applied the write
     * (MSI-X enable, virtio notifications of config changes). */
    void (*config_write)(struct pci_device *d, unsigned offset, uint32_t value,
                         unsigned size);
    /* A BAR was mapped at addr, or unmapped (mapped false). */
    void (*bar_map)(struct pci_device *d, int bar, uint64_t addr, bool mapped);
    /* Machine reset; the bus has already restored the power-on config. */
    void (*reset)(struct pci_device *d);

    /* Managed by the bus: */
    struct pci_bus *bus;
    int devfn;                      /* -1 before registration: pick a slot */
    uint8_t next_cap;
    int irq_level;
    bool intx_asserted;             /* counted in the bus's line state */
    struct pci_msix *msix;          /* pci_msix_init(), freed with the device */
    uint8_t config_init[PCI_CONFIG_SPACE_SIZE];
};

/* Zero *d and fill in the header of a type-0 function; set opaque and the
 * hooks afterwards. */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor,
                     uint16_t device, uint32_t class_code, uint8_t revision);
/* Declare BAR n (a 64-bit BAR takes n and n+1).  -EINVAL on bad size/slot. */
int pci_device_set_bar(struct pci_device *d, int n, enum pci_bar_type type,
                       uint64_t size, bool prefetchable, const struct io_ops *ops,
                       void *opaque);
/* Append a capability of len bytes; returns its offset or -ENOSPC.  The
 * caller fills the body (and its wmask bits) after the 2-byte header. */
int pci_add_capability(struct pci_device *d, uint8_t cap_id, uint8_t len);
/* Use interrupt pin 1..4 (INTA..INTD); 0 for none (the default). */
void pci_device_set_intx_pin(struct pci_device *d, uint8_t pin);
/* Drive the device's INTx line (respecting COMMAND.INTX_DISABLE). */
void pci_set_irq(struct pci_device *d, int level);

/* MSI-X (PCI 3.0 section 6.8.2) in a BAR of its own: the table at offset 0,
 * the pending-bit array after it.  Call before pci_register_device();
 * nr_vectors 1..2048.  Returns 0, -EINVAL or -ENOMEM.  The bus keeps the
 * table across guest accesses and resets; pci_msix_free() releases it (the
 * device's teardown calls it). */
int pci_msix_init(struct pci_device *d, unsigned nr_vectors, int bar);
void pci_msix_free(struct pci_device *d);
/* MSI-X Enable set in the capability. */
bool pci_msix_enabled(const struct pci_device *d);
/* Signal vector v: send its message, or set its pending bit while it (or
 * the function) is masked or MSI-X is off; a pending vector is sent when
 * unmasked.  Out-of-range vectors are ignored. */
void pci_msix_notify(struct pci_device *d, unsigned v);

/* Snapshot support (the device's state table calls these).  The whole
 * configuration space is state; what the guest cannot write must match
 * this build's function.  pci_config_check: 0, or -EINVAL with *bad_off
 * the first read-only byte that differs.  pci_config_restore: put a
 * checked space in place, decode the BARs it programs and drive INTx at
 * irq_level. */
int pci_config_check(const struct pci_device *d, const uint8_t *config, unsigned *bad_off);
void pci_config_restore(struct pci_device *d, const uint8_t *config, bool irq_level);
/* MSI-X table and pending bits in a caller's buffers of nr vectors (16
 * bytes each; (nr + 63) / 64 words).  Entries or bits beyond the
 * function's vector count are zero on get and must be zero on check
 * (-EINVAL with *bad_vector set, as must vector-control bits other than
 * the mask).  Restore sends nothing: pending vectors stay pending. */
unsigned pci_msix_nr_vectors(const struct pci_device *d);
void pci_msix_get(const struct pci_device *d, uint8_t *table, uint64_t *pba, unsigned nr);
int pci_msix_check(const struct pci_device *d, const uint8_t *table, const uint64_t *pba,
                   unsigned nr, unsigned *bad_vector);
void pci_msix_restore(struct pci_device *d, const uint8_t *table, const uint64_t *pba,
                      unsigned nr);

/* The machine's root bus (created by the board), NULL if none. */
struct pci_bus *pci_root_bus(struct machine *m);
/* Put d on bus 0: in d->devfn's slot if that is >= 0 (-EBUSY if taken or
 * not function 0), else in the first free slot (-ENOSPC when full). */
int pci_register_device(struct pci_bus *bus, struct pci_device *d);
struct keyval;
/* A -device driver's "addr=SLOT[.0]" (hex, as QEMU) into d->devfn; absent
 * leaves it alone.  -EINVAL after naming the property. */
int pci_keyval_addr(struct keyval *kv, struct pci_device *d);
/* The GSI of a slot's pin (1..4), as the _PRT announces it. */
unsigned pci_intx_gsi(unsigned slot, unsigned pin);
/* Lowest address of the 32-bit PCI memory window for this machine. */
uint64_t pci_mem_window_base(const struct machine *m);

#endif
