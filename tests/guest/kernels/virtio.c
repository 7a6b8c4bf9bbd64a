/* virtio: the modern virtio-pci transport from the driver's side, on a
 * virtio-rng-pci (-device virtio-rng-pci).  Finds the function by PCI scan,
 * places its BAR, walks the vendor capabilities, does the 1.x init dance
 * (ACKNOWLEDGE, DRIVER, VERSION_1, FEATURES_OK, queue setup, DRIVER_OK),
 * reads random bytes, then submits malformed chains -- a descriptor loop, a
 * buffer outside guest RAM, an indirect table with a bad length, a head
 * index out of range -- and checks that each sets DEVICE_NEEDS_RESET
 * while vmon keeps running, and that a reset brings the device back. */
#include "virtio.h"

static struct virtio_dev dev;
static struct virtq vq;
static uint8_t buf[64] __attribute__((aligned(64)));
static struct virtq_desc table[2] __attribute__((aligned(16)));

static void device_init(void)
{
    virtio_negotiate(&dev);
    virtq_setup(&dev, &vq, 0, VIRTIO_NO_VECTOR);
    virtio_driver_ok(&dev);
}

/* vmon answers inside the notify write; QEMU's rng backend later, so
 * wait up to a second. */
static uint32_t used_len(void)
{
    uint32_t len;

    for (int i = 0; i < 1000; i++) {
        if (virtq_take_used(&vq, &len))
            return len;
        pit_delay_us(1000);
    }
    return virtq_take_used(&vq, &len) ? len : 0xffffffff;
}

static void good_read(const char *what)
{
    int nonzero = 0;

    memset(buf, 0, sizeof(buf));
    vq.desc[0] = (struct virtq_desc){ (uint64_t)(uintptr_t)buf, 32, VIRTQ_DESC_WRITE, 0 };
    virtq_submit(&vq, 0);
    uint32_t len = used_len();
    for (int i = 0; i < 32; i++)
        nonzero |= buf[i];
    kprintf("%s: used len %u, %s\n", what, len, nonzero ? "random bytes" : "zeros");
    if (len != 32 || !nonzero || (virtio_status(&dev) & VIRTIO_ST_NEEDS_RESET))
        test_fail("%s: no random bytes", what);
}

static void expect_needs_reset(const char *what)
{
    uint8_t s = virtio_status(&dev);
    uint8_t cg;

    for (int i = 0; i < 1000 && !(s & VIRTIO_ST_NEEDS_RESET); i++) {
        pit_delay_us(1000);
        s = virtio_status(&dev);
    }
    cg = rd8(dev.common + VIRTIO_COMMON_CFG_GENERATION);

    kprintf("%s: status %02x, needs reset %s, config generation moved %s, used %s\n", what,
            s, (s & VIRTIO_ST_NEEDS_RESET) ? "yes" : "no", cg ? "yes" : "no",
            vq.used.idx == vq.used_seen ? "untouched" : "CHANGED");
    if (!(s & VIRTIO_ST_NEEDS_RESET))
        test_fail("%s: device did not report NEEDS_RESET", what);
    /* Further kicks are ignored, and the device keeps answering. */
    virtq_submit(&vq, 0);
    if (!(virtio_status(&dev) & VIRTIO_ST_NEEDS_RESET))
        test_fail("%s: NEEDS_RESET cleared without a reset", what);
    device_init();
    if (virtio_status(&dev) & VIRTIO_ST_NEEDS_RESET)
        test_fail("%s: reset did not clear NEEDS_RESET", what);
}

void test_main(void)
{
    unsigned slot = virtio_pci_find(VIRTIO_ID_RNG);

    if (!slot)
        test_fail("no virtio-rng-pci (1af4:1044) on bus 0");
    kprintf("virtio-rng-pci found, revision %u, subsystem %04x\n",
            pci_read8(slot, 0x08), pci_read(slot, 0x2c) >> 16);
    virtio_pci_map(&dev, slot);
    for (unsigned i = 0; i < dev.nr_caps; i++) {
        const struct virtio_cap *c = &dev.caps[i];

        kprintf("cap type %u: bar %u offset 0x%x length 0x%x\n", c->type, c->bar, c->offset,
                c->length);
        if (c->bar != 4)
            test_fail("capability in unexpected BAR %u", c->bar);
    }
    if (!dev.common || !dev.notify || !dev.isr)
        test_fail("missing virtio capabilities");

    device_init();
    kprintf("features ok, %u queue(s), notify multiplier %u\n",
            rd16(dev.common + VIRTIO_COMMON_NUM_QUEUES), dev.notify_mult);
    good_read("good chain");

    /* A two-descriptor loop. */
    vq.desc[0] = (struct virtq_desc){ (uint64_t)(uintptr_t)buf, 8, VIRTQ_DESC_WRITE | VIRTQ_DESC_NEXT, 1 };
    vq.desc[1] = (struct virtq_desc){ (uint64_t)(uintptr_t)buf, 8, VIRTQ_DESC_WRITE | VIRTQ_DESC_NEXT, 0 };
    virtq_submit(&vq, 0);
    expect_needs_reset("loop");

    /* Every descriptor chained to the next, the last back to the first:
     * longer than the queue. */
    for (int i = 0; i < VIRTQ_SIZE; i++)
        vq.desc[i] = (struct virtq_desc){ (uint64_t)(uintptr_t)buf, 1, VIRTQ_DESC_WRITE | VIRTQ_DESC_NEXT,
                                      (uint16_t)((i + 1) % VIRTQ_SIZE) };
    virtq_submit(&vq, 3);
    expect_needs_reset("overlong chain");

    /* QEMU maps such buffers lazily and does not flag them: its reference
     * run passes strict_ram=0 and skips these two. */
    uint64_t strict = 1;
    cmdline_get_u64("strict_ram", &strict);
    if (strict) {
        /* A buffer far outside guest RAM. */
        vq.desc[0] = (struct virtq_desc){ 0x7ff000000000ULL, 16, VIRTQ_DESC_WRITE, 0 };
        virtq_submit(&vq, 0);
        expect_needs_reset("out-of-RAM buffer");

        /* A buffer whose end wraps the address space. */
        vq.desc[0] = (struct virtq_desc){ 0xfffffffffffff000ULL, 0x2000, VIRTQ_DESC_WRITE, 0 };
        virtq_submit(&vq, 0);
        expect_needs_reset("wrapping length");
    } else {
        kprintf("out-of-RAM buffer: skipped\nwrapping length: skipped\n");
    }

    /* INDIRECT without the feature, with a bad table length. */
    table[0] = (struct virtq_desc){ (uint64_t)(uintptr_t)buf, 8, VIRTQ_DESC_WRITE, 0 };
    vq.desc[0] = (struct virtq_desc){ (uint64_t)(uintptr_t)table, 17, VIRTQ_DESC_INDIRECT, 0 };
    virtq_submit(&vq, 0);
    expect_needs_reset("bad indirect");

    /* Head index out of range. */
    virtq_submit(&vq, VIRTQ_SIZE + 5);
    expect_needs_reset("bad head");

    good_read("after reset");
    test_pass();
}
