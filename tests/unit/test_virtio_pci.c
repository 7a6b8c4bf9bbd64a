/* The virtio-pci transport driven like a guest driver would, through
 * configuration space and BAR accesses on a virtio-rng-pci: capabilities,
 * feature negotiation (VERSION_1 required, FEATURES_OK refusal), queue
 * setup, a request with the INTx/ISR path, reset, and a malformed chain
 * that sets NEEDS_RESET and raises the config interrupt over MSI-X. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "config/config.h"
#include "hw/pc_devices.h"
#include "hw/pci.h"
#include "machine/machine.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtqueue.h"

#define BAR4 0xe0000000ULL
#define BAR1 0xe0100000ULL
#define COMMON BAR4
#define ISR (BAR4 + 0x1000)
#define NOTIFY (BAR4 + 0x3000)
#define DESC 0x10000
#define AVAIL 0x11000
#define USED 0x12000
#define BUF 0x20000
#define QSZ 8

static int irq_level[32];
static uint32_t msi_data[16];
static int nr_msi;

static void fake_set_irq(struct machine *m, unsigned gsi, int level)
{
    if (gsi < 32)
        irq_level[gsi] = level;
}

static void fake_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    if (nr_msi < 16)
        msi_data[nr_msi] = data;
    nr_msi++;
}

static const struct accel_ops fake_accel = {
    .name = "test", .set_irq = fake_set_irq, .send_msi = fake_send_msi,
};
static struct vm_config cfg = { .ram_size = 16 * MiB, .smp = 1 };

static struct machine *M;

static uint32_t cfg_read(unsigned slot, unsigned reg, unsigned size)
{
    uint32_t addr = 0x80000000u | slot << 11 | (reg & 0xfc), v = 0;

    machine_pio(M, 0xcf8, &addr, 4, true);
    machine_pio(M, (uint16_t)(0xcfc + (reg & 3)), &v, size, false);
    return v;
}

static void cfg_write(unsigned slot, unsigned reg, uint32_t v, unsigned size)
{
    uint32_t addr = 0x80000000u | slot << 11 | (reg & 0xfc);

    machine_pio(M, 0xcf8, &addr, 4, true);
    machine_pio(M, (uint16_t)(0xcfc + (reg & 3)), &v, size, true);
}

static uint64_t rd(uint64_t gpa, unsigned size)
{
    uint64_t v = 0;

    assert_true(machine_mmio(M, gpa, &v, size, false));
    return v;
}

static void wr(uint64_t gpa, uint64_t v, unsigned size)
{
    assert_true(machine_mmio(M, gpa, &v, size, true));
}

static int setup(void **st)
{
    M = calloc(1, sizeof(*M));
    memset(irq_level, 0, sizeof(irq_level));
    nr_msi = 0;
    assert_int_equal(machine_init(M, &cfg), 0);
    M->accel = &fake_accel;
    assert_int_equal(pci_host_create(M), 0);
    assert_int_equal(virtio_rng_create(M, NULL), 0);
    assert_int_equal(cfg_read(1, 0, 4), 0x10441af4);
    cfg_write(1, 0x10 + 4 * 4, (uint32_t)BAR4, 4);
    cfg_write(1, 0x10 + 4 * 1, (uint32_t)BAR1, 4);
    cfg_write(1, 0x04, 0x0006, 2);
    *st = M;
    return 0;
}

static int teardown(void **st)
{
    /* The PCI bus and its devices live as long as the process (see
     * hw/pci.c); only the machine goes. */
    M->accel = NULL;
    machine_destroy(M);
    free(M);
    return 0;
}

static uint8_t status(void)
{
    return (uint8_t)rd(COMMON + 0x14, 1);
}

/* ACK, DRIVER, VERSION_1, FEATURES_OK, queue 0 of QSZ, DRIVER_OK. */
static void driver_init(void)
{
    /* Fresh rings, as a driver allocates them after a reset. */
    memset(machine_gpa_to_hva(M, DESC, 0x3000), 0, 0x3000);
    wr(COMMON + 0x14, 0, 1);
    wr(COMMON + 0x14, 3, 1);
    wr(COMMON + 0x08, 1, 4);
    wr(COMMON + 0x0c, 1, 4);
    wr(COMMON + 0x14, 0xb, 1);
    assert_int_equal(status(), 0xb);
    wr(COMMON + 0x16, 0, 2);
    wr(COMMON + 0x18, QSZ, 2);
    wr(COMMON + 0x20, DESC, 8);
    wr(COMMON + 0x28, AVAIL, 4);
    wr(COMMON + 0x2c, 0, 4);
    wr(COMMON + 0x30, USED, 4);
    wr(COMMON + 0x34, 0, 4);
    wr(COMMON + 0x1c, 1, 2);
    wr(COMMON + 0x14, 0xf, 1);
}

static void submit(uint16_t head)
{
    uint16_t *avail = machine_gpa_to_hva(M, AVAIL, 4 + 2 * QSZ);

    avail[2 + avail[1] % QSZ] = head;
    avail[1]++;
    wr(NOTIFY, 0, 2);
}

static void test_capabilities(void **st)
{
    unsigned types = 0;

    assert_int_equal(cfg_read(1, 0x08, 1), 1);               /* revision 1: modern */
    assert_int_equal(cfg_read(1, 0x2e, 2), 0x0044);
    for (unsigned c = cfg_read(1, 0x34, 1); c; c = cfg_read(1, c + 1, 1)) {
        if (cfg_read(1, c, 1) != 0x09)
            continue;
        types |= 1u << cfg_read(1, c + 3, 1);
        assert_int_equal(cfg_read(1, c + 4, 1), 4);
        if (cfg_read(1, c + 3, 1) == 2)
            assert_int_equal(cfg_read(1, c + 16, 4), 4);   /* notify multiplier */
    }
    assert_int_equal(types, 0x1e);   /* common, notify, ISR, device */
}

static void test_negotiation_and_reset(void **st)
{
    wr(COMMON + 0x14, 0, 1);
    wr(COMMON + 0x00, 1, 4);
    assert_int_equal(rd(COMMON + 0x04, 4) & 1, 1);            /* VERSION_1 offered */
    wr(COMMON + 0x14, 3, 1);
    wr(COMMON + 0x14, 0xb, 1);                                /* without VERSION_1 */
    assert_int_equal(status() & 8, 0);
    wr(COMMON + 0x08, 0, 4);
    wr(COMMON + 0x0c, 1, 4);                                  /* bit 0: not offered */
    wr(COMMON + 0x08, 1, 4);
    wr(COMMON + 0x0c, 1, 4);
    wr(COMMON + 0x14, 0xb, 1);
    assert_int_equal(status() & 8, 0);
    wr(COMMON + 0x08, 0, 4);
    wr(COMMON + 0x0c, 0, 4);
    wr(COMMON + 0x14, 0xb, 1);
    assert_int_equal(status(), 0xb);
    /* Vectors beyond the table read back as NO_VECTOR. */
    wr(COMMON + 0x10, 7, 2);
    assert_int_equal(rd(COMMON + 0x10, 2), 0xffff);
    wr(COMMON + 0x10, 1, 2);
    assert_int_equal(rd(COMMON + 0x10, 2), 1);
    /* Queue selector beyond the queues: size 0, writes ignored. */
    wr(COMMON + 0x16, 5, 2);
    assert_int_equal(rd(COMMON + 0x18, 2), 0);
    wr(COMMON + 0x1c, 1, 2);
    wr(COMMON + 0x16, 0, 2);
    wr(COMMON + 0x18, 4, 2);
    assert_int_equal(rd(COMMON + 0x18, 2), 4);
    /* Reset. */
    wr(COMMON + 0x14, 0, 1);
    assert_int_equal(status(), 0);
    assert_int_equal(rd(COMMON + 0x18, 2), 256);
    assert_int_equal(rd(COMMON + 0x10, 2), 0xffff);
    wr(COMMON + 0x08, 1, 4);
    assert_int_equal(rd(COMMON + 0x0c, 4), 0);
}

static void test_request_intx(void **st)
{
    struct vring_desc *d = machine_gpa_to_hva(M, DESC, 16 * QSZ);
    uint8_t *used = machine_gpa_to_hva(M, USED, 6 + 8 * QSZ);
    uint8_t *buf = machine_gpa_to_hva(M, BUF, 64);
    unsigned gsi = pci_intx_gsi(1, 1);
    uint32_t len;
    int nonzero = 0;

    driver_init();
    d[0] = (struct vring_desc){ BUF, 32, VRING_DESC_F_WRITE, 0 };
    submit(0);
    assert_int_equal(*(uint16_t *)(used + 2), 1);
    memcpy(&len, used + 8, 4);
    assert_int_equal(len, 32);
    for (int i = 0; i < 32; i++)
        nonzero |= buf[i];
    assert_true(nonzero);
    assert_int_equal(irq_level[gsi], 1);
    assert_int_equal(rd(ISR, 1), 1);
    assert_int_equal(irq_level[gsi], 0);
    assert_int_equal(rd(ISR, 1), 0);
}

static void test_malformed_msix(void **st)
{
    struct vring_desc *d = machine_gpa_to_hva(M, DESC, 16 * QSZ);
    unsigned cap;

    for (cap = cfg_read(1, 0x34, 1); cap && cfg_read(1, cap, 1) != 0x11;
         cap = cfg_read(1, cap + 1, 1))
        ;
    assert_true(cap);
    /* Vector 0: address/data, unmasked; MSI-X on. */
    wr(BAR1 + 0, 0xfee00000, 4);
    wr(BAR1 + 8, 0x41, 4);
    wr(BAR1 + 12, 0, 4);
    cfg_write(1, cap + 2, 0x8000, 2);
    driver_init();
    wr(COMMON + 0x10, 0, 2);         /* config changes on vector 0 */
    d[0] = (struct vring_desc){ BUF, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1 };
    d[1] = (struct vring_desc){ BUF, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0 };
    submit(0);
    assert_int_equal(status() & 0x40, 0x40);
    assert_int_equal(nr_msi, 1);
    assert_int_equal(msi_data[0], 0x41);
    /* The guest cannot clear it by writing status; more kicks do nothing. */
    wr(COMMON + 0x14, 0xf, 1);
    assert_int_equal(status() & 0x40, 0x40);
    submit(0);
    assert_int_equal(nr_msi, 1);
    /* A reset brings the device back. */
    driver_init();
    assert_int_equal(status(), 0xf);
    d[0] = (struct vring_desc){ BUF, 16, VRING_DESC_F_WRITE, 0 };
    submit(0);
    assert_int_equal(status(), 0xf);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_capabilities),
        T(test_negotiation_and_reset),
        T(test_request_intx),
        T(test_malformed_msix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
