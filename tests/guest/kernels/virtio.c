/* virtio: the modern virtio-pci transport from the driver's side, on a
 * virtio-rng-pci (-device virtio-rng-pci).  Finds the function by PCI scan,
 * places its BAR, walks the vendor capabilities, does the 1.x init dance
 * (ACKNOWLEDGE, DRIVER, VERSION_1, FEATURES_OK, queue setup, DRIVER_OK),
 * reads random bytes, then submits malformed chains -- a descriptor loop, a
 * buffer outside guest RAM, an indirect table with a bad length, a head
 * index out of range -- and checks that each sets DEVICE_NEEDS_RESET
 * while vmon keeps running, and that a reset brings the device back. */
#include "pci.h"

#define BAR_BASE 0xe0000000ULL
#define MSIX_BASE 0xe0100000ULL
#define QSZ 8

#define ST_ACK 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8
#define ST_NEEDS_RESET 0x40

#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };

static struct desc ring_desc[QSZ] __attribute__((aligned(4096)));
static volatile uint16_t ring_avail[3 + QSZ] __attribute__((aligned(4096)));
static volatile uint8_t ring_used[6 + 8 * QSZ] __attribute__((aligned(4096)));
static uint8_t buf[64] __attribute__((aligned(64)));
static struct desc table[2] __attribute__((aligned(16)));

static uint64_t common, isr, notify, device;
static uint32_t notify_mult;
static uint16_t used_seen;

static uint8_t status(void) { return rd8(common + 0x14); }

static void device_init(void)
{
    uint32_t hi;

    wr8(common + 0x14, 0);
    if (status() != 0)
        test_fail("status not 0 after reset");
    wr8(common + 0x14, ST_ACK);
    wr8(common + 0x14, ST_ACK | ST_DRIVER);
    wr32(common + 0x00, 1);
    hi = rd32(common + 0x04);
    if (!(hi & 1))
        test_fail("VERSION_1 not offered");
    wr32(common + 0x08, 0);
    wr32(common + 0x0c, 0);
    wr32(common + 0x08, 1);
    wr32(common + 0x0c, 1);      /* VERSION_1 only: no INDIRECT */
    wr8(common + 0x14, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    if (!(status() & ST_FEATURES_OK))
        test_fail("FEATURES_OK refused");
    wr16(common + 0x16, 0);
    if (rd16(common + 0x18) < QSZ)
        test_fail("queue 0 too small");
    wr16(common + 0x18, QSZ);
    memset(ring_desc, 0, sizeof(ring_desc));
    memset((void *)ring_avail, 0, sizeof(ring_avail));
    memset((void *)ring_used, 0, sizeof(ring_used));
    used_seen = 0;
    wr64(common + 0x20, (uint64_t)(uintptr_t)ring_desc);
    wr64(common + 0x28, (uint64_t)(uintptr_t)ring_avail);
    wr64(common + 0x30, (uint64_t)(uintptr_t)ring_used);
    wr16(common + 0x1c, 1);
    wr8(common + 0x14, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
}

/* Offer head and kick; the device works synchronously inside the write. */
static void submit(uint16_t head)
{
    uint16_t idx = ring_avail[1];

    ring_avail[2 + (idx % QSZ)] = head;
    __asm__ volatile("" ::: "memory");
    ring_avail[1] = (uint16_t)(idx + 1);
    wr16(notify + rd16(common + 0x1e) * notify_mult, 0);
}

/* vmon answers inside the notify write; QEMU's rng backend later, so
 * wait up to a second. */
static uint32_t used_len(void)
{
    uint16_t idx = *(volatile uint16_t *)(ring_used + 2);
    uint32_t len;

    for (int i = 0; i < 1000 && idx == used_seen; i++) {
        pit_delay_us(1000);
        idx = *(volatile uint16_t *)(ring_used + 2);
    }
    if (idx == used_seen)
        return 0xffffffff;
    memcpy(&len, (const void *)(ring_used + 4 + 8 * (used_seen % QSZ) + 4), 4);
    used_seen++;
    return len;
}

static void good_read(const char *what)
{
    int nonzero = 0;

    memset(buf, 0, sizeof(buf));
    ring_desc[0] = (struct desc){ (uint64_t)(uintptr_t)buf, 32, D_WRITE, 0 };
    submit(0);
    uint32_t len = used_len();
    for (int i = 0; i < 32; i++)
        nonzero |= buf[i];
    kprintf("%s: used len %u, %s\n", what, len, nonzero ? "random bytes" : "zeros");
    if (len != 32 || !nonzero || (status() & ST_NEEDS_RESET))
        test_fail("%s: no random bytes", what);
}

static void expect_needs_reset(const char *what)
{
    uint8_t s = status();
    uint8_t cg;

    for (int i = 0; i < 1000 && !(s & ST_NEEDS_RESET); i++) {
        pit_delay_us(1000);
        s = status();
    }
    cg = rd8(common + 0x15);

    kprintf("%s: status %02x, needs reset %s, config generation moved %s, used %s\n", what,
            s, (s & ST_NEEDS_RESET) ? "yes" : "no", cg ? "yes" : "no",
            *(volatile uint16_t *)(ring_used + 2) == used_seen ? "untouched" : "CHANGED");
    if (!(s & ST_NEEDS_RESET))
        test_fail("%s: device did not report NEEDS_RESET", what);
    /* Further kicks are ignored, and the device keeps answering. */
    submit(0);
    if (!(status() & ST_NEEDS_RESET))
        test_fail("%s: NEEDS_RESET cleared without a reset", what);
    device_init();
    if (status() & ST_NEEDS_RESET)
        test_fail("%s: reset did not clear NEEDS_RESET", what);
}

void test_main(void)
{
    unsigned slot = 0;
    uint8_t cap;

    for (slot = 1; slot < 32; slot++)
        if (pci_read(slot, 0) == 0x10441af4)
            break;
    if (slot == 32)
        test_fail("no virtio-rng-pci (1af4:1044) on bus 0");
    kprintf("virtio-rng-pci found, revision %u, subsystem %04x\n",
            pci_read8(slot, 0x08), pci_read(slot, 0x2c) >> 16);
    pci_write(slot, 0x10 + 4 * 4, (uint32_t)BAR_BASE);
    pci_write(slot, 0x10 + 4 * 1, (uint32_t)MSIX_BASE);
    pci_write(slot, 0x04, 0x0006);     /* memory + bus master */

    for (cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
        uint8_t type, bar;
        uint32_t off, len;

        if (pci_read8(slot, cap) != 0x09)
            continue;
        type = pci_read8(slot, cap + 3);
        if (type < 1 || type > 4)
            continue;    /* PCI_CFG access (5) and vendor extras: unused */
        bar = pci_read8(slot, cap + 4);
        off = pci_read(slot, cap + 8);
        len = pci_read(slot, cap + 12);
        kprintf("cap type %u: bar %u offset 0x%x length 0x%x\n", type, bar, off, len);
        if (bar != 4)
            test_fail("capability in unexpected BAR %u", bar);
        if (type == 1)
            common = BAR_BASE + off;
        else if (type == 2) {
            notify = BAR_BASE + off;
            notify_mult = pci_read(slot, cap + 16);
        } else if (type == 3)
            isr = BAR_BASE + off;
        else if (type == 4)
            device = BAR_BASE + off;
    }
    if (!common || !notify || !isr)
        test_fail("missing virtio capabilities");
    (void)device;

    device_init();
    kprintf("features ok, %u queue(s), notify multiplier %u\n", rd16(common + 0x12),
            notify_mult);
    good_read("good chain");

    /* A two-descriptor loop. */
    ring_desc[0] = (struct desc){ (uint64_t)(uintptr_t)buf, 8, D_WRITE | D_NEXT, 1 };
    ring_desc[1] = (struct desc){ (uint64_t)(uintptr_t)buf, 8, D_WRITE | D_NEXT, 0 };
    submit(0);
    expect_needs_reset("loop");

    /* Every descriptor chained to the next, the last back to the first:
     * longer than the queue. */
    for (int i = 0; i < QSZ; i++)
        ring_desc[i] = (struct desc){ (uint64_t)(uintptr_t)buf, 1, D_WRITE | D_NEXT,
                                      (uint16_t)((i + 1) % QSZ) };
    submit(3);
    expect_needs_reset("overlong chain");

    /* QEMU maps such buffers lazily and does not flag them: its reference
     * run passes strict_ram=0 and skips these two. */
    uint64_t strict = 1;
    cmdline_get_u64("strict_ram", &strict);
    if (strict) {
        /* A buffer far outside guest RAM. */
        ring_desc[0] = (struct desc){ 0x7ff000000000ULL, 16, D_WRITE, 0 };
        submit(0);
        expect_needs_reset("out-of-RAM buffer");

        /* A buffer whose end wraps the address space. */
        ring_desc[0] = (struct desc){ 0xfffffffffffff000ULL, 0x2000, D_WRITE, 0 };
        submit(0);
        expect_needs_reset("wrapping length");
    } else {
        kprintf("out-of-RAM buffer: skipped\nwrapping length: skipped\n");
    }

    /* INDIRECT without the feature, with a bad table length. */
    table[0] = (struct desc){ (uint64_t)(uintptr_t)buf, 8, D_WRITE, 0 };
    ring_desc[0] = (struct desc){ (uint64_t)(uintptr_t)table, 17, D_INDIRECT, 0 };
    submit(0);
    expect_needs_reset("bad indirect");

    /* Head index out of range. */
    submit(QSZ + 5);
    expect_needs_reset("bad head");

    good_read("after reset");
    test_pass();
}
