/* Shared fixture for the virtio-pci tests (test_virtio_*.c): a machine from
 * machine_init() with the PCI host bridge, one virtio function in slot 1,
 * and a fake accelerator that records INTx levels and MSI messages.  The
 * helpers do what a guest driver does: configuration space through ports
 * 0xcf8/0xcfc, BAR 4 (common config, ISR, device config, notify) and BAR 1
 * (MSI-X) by MMIO, rings at fixed guest-physical addresses. */
#ifndef VMON_TEST_VIRTIO_HELPERS_H
#define VMON_TEST_VIRTIO_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "config/config.h"
#include "hw/pci.h"
#include "machine/machine.h"
#include "util/keyval.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtqueue.h"

#define VFX_SLOT 1
#define BAR4 0xe0000000ULL
#define BAR1 0xe0100000ULL
#define COMMON BAR4
#define ISR (BAR4 + 0x1000)
#define DEVCFG (BAR4 + 0x2000)
#define NOTIFY (BAR4 + 0x3000)
#define QSZ 8
/* Queue q's descriptor table, available and used rings, a page apart; four
 * queues fit below BUF. */
#define DESC_Q(q) (0x10000ULL + 0x4000ULL * (q))
#define AVAIL_Q(q) (DESC_Q(q) + 0x1000)
#define USED_Q(q) (DESC_Q(q) + 0x2000)
#define DESC DESC_Q(0)
#define AVAIL AVAIL_Q(0)
#define USED USED_Q(0)
#define BUF 0x20000ULL
#define PCI_CAP_ID_MSIX 0x11
#define MSI_DATA0 0x41          /* what MSI-X vector 0 sends */

static int irq_level[32];
static uint32_t msi_data[16];
static int nr_msi;

static inline void fake_set_irq(struct machine *m, unsigned gsi, int level)
{
    if (gsi < 32)
        irq_level[gsi] = level;
}

static inline void fake_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    if (nr_msi < 16)
        msi_data[nr_msi] = data;
    nr_msi++;
}

static const struct accel_ops fake_accel = {
    .name = "test", .set_irq = fake_set_irq, .send_msi = fake_send_msi,
};
/* A test may add -chardev options here before vfx_setup(). */
static struct vm_config vfx_cfg = { .ram_size = 16 * MiB, .smp = 1 };
static struct machine *M;

static inline uint32_t cfg_read(unsigned slot, unsigned reg, unsigned size)
{
    uint32_t addr = 0x80000000u | slot << 11 | (reg & 0xfc), v = 0;

    machine_pio(M, 0xcf8, &addr, 4, true);
    machine_pio(M, (uint16_t)(0xcfc + (reg & 3)), &v, size, false);
    return v;
}

static inline void cfg_write(unsigned slot, unsigned reg, uint32_t v, unsigned size)
{
    uint32_t addr = 0x80000000u | slot << 11 | (reg & 0xfc);

    machine_pio(M, 0xcf8, &addr, 4, true);
    machine_pio(M, (uint16_t)(0xcfc + (reg & 3)), &v, size, true);
}

static inline uint64_t rd(uint64_t gpa, unsigned size)
{
    uint64_t v = 0;

    assert_true(machine_mmio(M, gpa, &v, size, false));
    return v;
}

static inline void wr(uint64_t gpa, uint64_t v, unsigned size)
{
    assert_true(machine_mmio(M, gpa, &v, size, true));
}

static inline void *gpa(uint64_t addr, size_t len)
{
    void *p = machine_gpa_to_hva(M, addr, len);

    assert_non_null(p);
    return p;
}

/* The machine, the bus and the device create(M, opts) makes (opts parsed
 * from a -device string, or NULL); returns that device. */
static inline struct virtio_dev *vfx_setup(int (*create)(struct machine *, struct keyval *),
                                           const char *device)
{
    struct keyval kv, *opts = NULL;

    M = calloc(1, sizeof(*M));
    assert_non_null(M);
    memset(irq_level, 0, sizeof(irq_level));
    memset(msi_data, 0, sizeof(msi_data));
    nr_msi = 0;
    assert_int_equal(machine_init(M, &vfx_cfg), 0);
    M->accel = &fake_accel;
    assert_int_equal(pci_host_create(M), 0);
    if (device) {
        assert_int_equal(keyval_parse(&kv, device, true, "-device"), 0);
        opts = &kv;
    }
    assert_int_equal(create(M, opts), 0);
    if (opts)
        keyval_free(opts);
    return M->devices[M->nr_devices - 1].opaque;
}

static inline void vfx_teardown(void)
{
    /* The bus and its devices go with the machine (hw/pci.c). */
    M->accel = NULL;
    machine_destroy(M);
    free(M);
    M = NULL;
}

/* BAR 4 and BAR 1 placed, memory decoding and bus mastering on. */
static inline void vfx_map_bars(void)
{
    cfg_write(VFX_SLOT, 0x10 + 4 * 4, (uint32_t)BAR4, 4);
    cfg_write(VFX_SLOT, 0x10 + 4 * 1, (uint32_t)BAR1, 4);
    cfg_write(VFX_SLOT, 0x04, 0x0006, 2);
}

/* The capability with this ID in slot 1's list, or 0. */
static inline unsigned vfx_find_cap(unsigned id)
{
    unsigned cap;

    for (cap = cfg_read(VFX_SLOT, 0x34, 1); cap && cfg_read(VFX_SLOT, cap, 1) != id;
         cap = cfg_read(VFX_SLOT, cap + 1, 1))
        ;
    return cap;
}

/* MSI-X on, vector 0 unmasked and sending MSI_DATA0. */
static inline void vfx_msix_vector0(void)
{
    unsigned cap = vfx_find_cap(PCI_CAP_ID_MSIX);

    assert_true(cap);
    wr(BAR1 + 0, 0xfee00000, 4);
    wr(BAR1 + 8, MSI_DATA0, 4);
    wr(BAR1 + 12, 0, 4);
    cfg_write(VFX_SLOT, cap + 2, 0x8000, 2);
}

static inline uint8_t vfx_status(void)
{
    return (uint8_t)rd(COMMON + 0x14, 1);
}

/* Reset, ACKNOWLEDGE|DRIVER, the driver's features (VERSION_1 is the
 * caller's to include), FEATURES_OK accepted. */
static inline void vfx_negotiate(uint64_t features)
{
    wr(COMMON + 0x14, 0, 1);
    wr(COMMON + 0x14, 3, 1);
    wr(COMMON + 0x08, 0, 4);
    wr(COMMON + 0x0c, (uint32_t)features, 4);
    wr(COMMON + 0x08, 1, 4);
    wr(COMMON + 0x0c, (uint32_t)(features >> 32), 4);
    wr(COMMON + 0x14, 0xb, 1);
    assert_int_equal(vfx_status(), 0xb);
}

/* Queue q of size QSZ on fresh rings at DESC_Q(q), MSI-X vector (or
 * VIRTIO_NO_VECTOR), enabled.  The available ring's address goes in two
 * 32-bit halves and the others in one 64-bit access, as drivers do both. */
static inline void vfx_queue_setup(unsigned q, uint16_t vector)
{
    memset(gpa(DESC_Q(q), 0x3000), 0, 0x3000);
    wr(COMMON + 0x16, q, 2);
    wr(COMMON + 0x18, QSZ, 2);
    wr(COMMON + 0x1a, vector, 2);
    wr(COMMON + 0x20, DESC_Q(q), 8);
    wr(COMMON + 0x28, (uint32_t)AVAIL_Q(q), 4);
    wr(COMMON + 0x2c, (uint32_t)(AVAIL_Q(q) >> 32), 4);
    wr(COMMON + 0x30, USED_Q(q), 8);
    wr(COMMON + 0x1c, 1, 2);
}

static inline void vfx_driver_ok(void)
{
    wr(COMMON + 0x14, 0xf, 1);
    assert_int_equal(vfx_status(), 0xf);
}

static inline struct vring_desc *vfx_desc(unsigned q)
{
    return gpa(DESC_Q(q), sizeof(struct vring_desc) * QSZ);
}

/* Make chain head available on queue q without a kick. */
static inline void vfx_offer(unsigned q, uint16_t head)
{
    uint16_t *avail = gpa(AVAIL_Q(q), 6 + 2 * QSZ);

    avail[2 + avail[1] % QSZ] = head;
    avail[1]++;
}

/* Notify queue q (the notify multiplier is 4). */
static inline void vfx_kick(unsigned q)
{
    wr(NOTIFY + 4 * q, q, 2);
}

static inline void vfx_submit(unsigned q, uint16_t head)
{
    vfx_offer(q, head);
    vfx_kick(q);
}

static inline uint16_t vfx_used_idx(unsigned q)
{
    return *(uint16_t *)gpa(USED_Q(q) + 2, 2);
}

/* Used entry i (mod QSZ) of queue q: its head, and its length in *len. */
static inline uint32_t vfx_used_elem(unsigned q, uint16_t i, uint32_t *len)
{
    uint32_t *e = gpa(USED_Q(q) + 4 + 8 * (i % QSZ), 8);

    *len = e[1];
    return e[0];
}

#endif
