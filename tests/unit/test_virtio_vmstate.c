/* Snapshot state of a virtio-pci function (virtio/virtio_vmstate.c) on a
 * virtio-rng-pci driven like a guest driver: a saved section loads back
 * into a reset device and leaves it exactly as it was (PCI configuration
 * with its BARs decoding, MSI-X table, negotiated features, queue layout
 * and indexes) and working; and a section with any one hostile field (a
 * read-only configuration byte, a vector the function does not have, an
 * unoffered feature, a queue size or ring outside guest RAM, more chains in
 * flight than the ring holds, a queue the device does not have) is refused
 * by the check without changing the device. */
#include <errno.h>

#include "hw/pc_devices.h"
#include "migration/migration.h"
#include "virtio/virtio_devices.h"
#include "test_virtio_helpers.h"

static struct virtio_dev *V;

static int setup(void **st)
{
    V = vfx_setup(virtio_rng_create, NULL);
    assert_string_equal(M->devices[M->nr_devices - 1].name, "virtio-rng-pci");
    return 0;
}

static int teardown(void **st)
{
    vfx_teardown();
    return 0;
}

/* BARs, MSI-X on with vector 0 unmasked, features, queue 0 of QSZ with
 * EVENT_IDX, DRIVER_OK, and two requests answered. */
static void drive_device(void)
{
    struct vring_desc *d = vfx_desc(0);

    vfx_map_bars();
    vfx_msix_vector0();
    vfx_negotiate(1ULL << VIRTIO_F_EVENT_IDX | 1ULL << VIRTIO_F_VERSION_1);
    vfx_queue_setup(0, 0);
    vfx_driver_ok();
    for (int i = 0; i < 2; i++) {
        d[i] = (struct vring_desc){ BUF + 64 * i, 16, VRING_DESC_F_WRITE, 0 };
        vfx_submit(0, (uint16_t)i);
    }
    assert_int_equal(V->vq[0].used_idx, 2);
}

static void save(struct vmbuf *b)
{
    vmbuf_init(b);
    vmstate_save_device(b, &virtio_rng_vmstate, V, 0);
    assert_false(b->failed);
}

/* Check (and on success commit) a payload; returns the check's result. */
static int load(const struct vmbuf *b)
{
    void *staged;
    int ret = vmstate_check_device(b->data, b->len, 1, &virtio_rng_vmstate, V, 0, "t",
                                   &staged);

    if (ret == 0) {
        assert_int_equal(vmstate_commit_device(b->data, b->len, 1, &virtio_rng_vmstate, V, 0,
                                               "t", staged), 0);
        free(staged);
    }
    return ret;
}

static void test_round_trip(void **st)
{
    struct virtio_plain_state before, after;
    struct vmbuf b;
    struct vring_desc *d = vfx_desc(0);
    uint16_t *avail = gpa(AVAIL, 6 + 2 * QSZ);
    int msi;

    drive_device();
    virtio_rng_vmstate.get(V, &before);
    save(&b);
    /* The bus's reset, as at a machine reset: config space, BARs, MSI-X and
     * the transport. */
    for (int i = 0; i < M->nr_devices; i++)
        if (!strcmp(M->devices[i].name, "pci-host"))
            M->devices[i].reset(M->devices[i].opaque);
    assert_int_equal(V->status, 0);
    assert_false(V->pci.bars[4].mapped);
    assert_int_equal(load(&b), 0);
    virtio_rng_vmstate.get(V, &after);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_true(V->pci.bars[4].mapped);
    assert_int_equal(V->pci.bars[4].addr, BAR4);
    assert_true(V->vq[0].event_idx);
    assert_true(pci_msix_enabled(&V->pci));
    /* It works on: the next request is answered over MSI-X vector 0. */
    assert_int_equal(rd(COMMON + 0x14, 1), 0xf);
    msi = nr_msi;
    d[2] = (struct vring_desc){ BUF + 128, 16, VRING_DESC_F_WRITE, 0 };
    vfx_offer(0, 2);
    /* The driver asks for an interrupt at the next used entry. */
    avail[2 + QSZ] = 2;
    vfx_kick(0);
    assert_int_equal(V->vq[0].used_idx, 3);
    assert_int_equal(nr_msi, msi + 1);
    vmbuf_free(&b);
}

/* Encode st and expect the check to refuse it, the device untouched. */
static void expect_refused(struct virtio_plain_state *s)
{
    struct virtio_plain_state now, again;
    struct vmbuf b;

    virtio_rng_vmstate.get(V, &now);
    vmbuf_init(&b);
    vmstate_save(&b, &virtio_rng_vmstate, s, 0);
    assert_int_equal(load(&b), -EINVAL);
    virtio_rng_vmstate.get(V, &again);
    assert_memory_equal(&now, &again, sizeof(now));
    vmbuf_free(&b);
}

static void test_hostile_fields_refused(void **st)
{
    struct virtio_plain_state good, s;
    struct vmbuf b;

    drive_device();
    virtio_rng_vmstate.get(V, &good);
    save(&b);
    assert_int_equal(load(&b), 0);     /* the unmodified section passes */

#define REFUSE(stmt) do { s = good; stmt; expect_refused(&s); } while (0)
    REFUSE(s.t.pci_config[0] ^= 1);                        /* vendor ID */
    REFUSE(s.t.pci_config[0x10 + 4 * 4] |= 1);             /* BAR type bits */
    REFUSE(s.t.pci_config[0x34] = 0x80);                   /* capability pointer */
    REFUSE(s.t.msix_table[0 * 16 + 12] = 0x3);             /* vector control */
    REFUSE(s.t.msix_table[5 * 16] = 1);                    /* rng has 2 vectors */
    REFUSE(s.t.msix_pba[0] = 1u << 7);
    REFUSE(s.t.nr_queues = 2);
    REFUSE(s.t.host_features ^= 1);
    REFUSE(s.t.guest_features |= 1);                       /* not offered */
    REFUSE(s.t.guest_features &= ~(1ULL << 32); s.t.status |= 8);
    REFUSE(s.t.isr = 4);
    REFUSE(s.t.msix_config = 2);
    REFUSE(s.t.config[0] = 1);                             /* rng has no config */
    REFUSE(s.t.q_vector[0] = 9);
    REFUSE(s.t.q_size[0] = 6);                             /* not a power of two */
    REFUSE(s.t.q_size[0] = 512);                           /* above the maximum */
    REFUSE(s.t.q_desc[0] = DESC + 8);                      /* misaligned */
    REFUSE(s.t.q_used[0] = 16 * MiB - 8);                  /* past guest RAM */
    REFUSE(s.t.q_avail[0] = 0xfee00000);                   /* not RAM */
    REFUSE(s.t.q_last_avail[0] = (uint16_t)(s.t.q_used_idx[0] + QSZ + 1));
    REFUSE(s.t.q_size[1] = 8);                             /* a queue rng lacks */
    REFUSE(s.t.q_enabled[3] = true);
#undef REFUSE
    /* A disabled queue's size and addresses are registers: anything goes. */
    s = good;
    s.t.q_enabled[0] = false;
    s.t.q_size[0] = 6;
    s.t.q_desc[0] = 0xfffffffffff0ULL;
    vmbuf_free(&b);
    vmbuf_init(&b);
    vmstate_save(&b, &virtio_rng_vmstate, &s, 0);
    assert_int_equal(load(&b), 0);
    assert_false(V->vq[0].enabled);
    vmbuf_free(&b);
}

/* Through the machine's table: every virtio device has a state table. */
static void test_tables_listed(void **st)
{
    const char *names[] = { "virtio-blk-pci", "virtio-net-pci", "virtio-rng-pci",
                            "virtio-serial-pci" };
    bool sl;

    for (unsigned i = 0; i < 4; i++) {
        const struct vmstate_desc *d = migration_device_desc(names[i], &sl);

        assert_non_null(d);
        assert_int_equal(vmstate_check_desc(d), 0);
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_round_trip),
        T(test_hostile_fields_refused),
        T(test_tables_listed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
