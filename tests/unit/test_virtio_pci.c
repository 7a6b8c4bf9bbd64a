/* The virtio-pci transport driven like a guest driver would, through
 * configuration space and BAR accesses on a virtio-rng-pci: capabilities,
 * feature negotiation (VERSION_1 required, FEATURES_OK refusal), queue
 * setup, a request with the INTx/ISR path, reset, and a malformed chain
 * that sets NEEDS_RESET and raises the config interrupt over MSI-X. */
#include "hw/pc_devices.h"
#include "virtio/virtio_devices.h"
#include "test_virtio_helpers.h"

static int setup(void **st)
{
    vfx_setup(virtio_rng_create, NULL);
    assert_int_equal(cfg_read(1, 0, 4), 0x10441af4);
    vfx_map_bars();
    *st = M;
    return 0;
}

static int teardown(void **st)
{
    vfx_teardown();
    return 0;
}

/* ACK, DRIVER, VERSION_1, FEATURES_OK, queue 0 of QSZ, DRIVER_OK. */
static void driver_init(void)
{
    vfx_negotiate(1ULL << VIRTIO_F_VERSION_1);
    vfx_queue_setup(0, VIRTIO_NO_VECTOR);
    vfx_driver_ok();
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
    assert_int_equal(vfx_status() & 8, 0);
    wr(COMMON + 0x08, 0, 4);
    wr(COMMON + 0x0c, 1, 4);                                  /* bit 0: not offered */
    wr(COMMON + 0x08, 1, 4);
    wr(COMMON + 0x0c, 1, 4);
    wr(COMMON + 0x14, 0xb, 1);
    assert_int_equal(vfx_status() & 8, 0);
    wr(COMMON + 0x08, 0, 4);
    wr(COMMON + 0x0c, 0, 4);
    wr(COMMON + 0x14, 0xb, 1);
    assert_int_equal(vfx_status(), 0xb);
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
    assert_int_equal(vfx_status(), 0);
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
    vfx_submit(0, 0);
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
    struct vring_desc *d = vfx_desc(0);

    vfx_msix_vector0();
    driver_init();
    wr(COMMON + 0x10, 0, 2);         /* config changes on vector 0 */
    d[0] = (struct vring_desc){ BUF, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1 };
    d[1] = (struct vring_desc){ BUF, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0 };
    vfx_submit(0, 0);
    assert_int_equal(vfx_status() & 0x40, 0x40);
    assert_int_equal(nr_msi, 1);
    assert_int_equal(msi_data[0], MSI_DATA0);
    /* The guest cannot clear it by writing status; more kicks do nothing. */
    wr(COMMON + 0x14, 0xf, 1);
    assert_int_equal(vfx_status() & 0x40, 0x40);
    vfx_submit(0, 0);
    assert_int_equal(nr_msi, 1);
    /* A reset brings the device back. */
    driver_init();
    assert_int_equal(vfx_status(), 0xf);
    d[0] = (struct vring_desc){ BUF, 16, VRING_DESC_F_WRITE, 0 };
    vfx_submit(0, 0);
    assert_int_equal(vfx_status(), 0xf);
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
