/* virtio_blk: a virtio-blk-pci driver in miniature, with MSI-X.  Finds the
 * function, places its BARs, points MSI-X vector 1 at this CPU and gives
 * it to queue 0, then does real sector I/O: count= single-sector reads
 * checked against the pattern the host test wrote into the image, a
 * four-sector write of the guest's own pattern, a flush, the read-back, and
 * a read past the end (IOERR).  Every request waits for its used element
 * and its interrupt, so the interrupt count is exact.
 *
 * Under kvm the doorbell write is an ioeventfd and the interrupt an irqfd
 * (docs/virtio.md); the output is the same under emu, where both take the
 * direct paths.  The host side is tests/system/test_virtio_blk_kernel.py:
 * pattern byte i of sector s is (s * 37 + i * 7 + 1) & 0xff; the guest
 * writes (s * 11 + i * 3 + 0x80) & 0xff into sectors 8-11. */
#include "pci.h"

#define BAR_BASE 0xe0000000ULL
#define MSIX_BASE 0xe0100000ULL
#define QSZ 8
#define VEC 0x51
#define SECTOR 512
#define WRITE_SECTOR 8
#define WRITE_COUNT 4

#define ST_ACK 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8

#define D_NEXT 1
#define D_WRITE 2

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct blk_hdr { uint32_t type, reserved; uint64_t sector; };

static struct desc ring_desc[QSZ] __attribute__((aligned(4096)));
static volatile uint16_t ring_avail[3 + QSZ] __attribute__((aligned(4096)));
static volatile uint8_t ring_used[6 + 8 * QSZ] __attribute__((aligned(4096)));
static struct blk_hdr hdr __attribute__((aligned(16)));
static uint8_t data[WRITE_COUNT * SECTOR] __attribute__((aligned(4096)));
static volatile uint8_t status_byte;

static uint64_t common, notify, device;
static uint16_t used_seen;
static volatile unsigned irqs;
static unsigned requests;

static uint8_t host_pattern(uint64_t s, unsigned i) { return (uint8_t)(s * 37 + i * 7 + 1); }
static uint8_t guest_pattern(uint64_t s, unsigned i) { return (uint8_t)(s * 11 + i * 3 + 0x80); }

static void on_irq(void)
{
    irqs++;
    lapic_eoi();
}

static void device_init(void)
{
    wr8(common + 0x14, 0);
    wr8(common + 0x14, ST_ACK);
    wr8(common + 0x14, ST_ACK | ST_DRIVER);
    wr32(common + 0x00, 1);
    if (!(rd32(common + 0x04) & 1))
        test_fail("VERSION_1 not offered");
    wr32(common + 0x08, 0);
    wr32(common + 0x0c, 0);      /* no device features: no EVENT_IDX */
    wr32(common + 0x08, 1);
    wr32(common + 0x0c, 1);      /* VERSION_1 */
    wr8(common + 0x14, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    if (!(rd8(common + 0x14) & ST_FEATURES_OK))
        test_fail("FEATURES_OK refused");
    wr16(common + 0x10, 0xffff); /* no config interrupt */
    wr16(common + 0x16, 0);
    wr16(common + 0x18, QSZ);
    wr16(common + 0x1a, 1);      /* queue 0 -> MSI-X vector 1 */
    if (rd16(common + 0x1a) != 1)
        test_fail("queue vector not taken");
    wr64(common + 0x20, (uint64_t)(uintptr_t)ring_desc);
    wr64(common + 0x28, (uint64_t)(uintptr_t)ring_avail);
    wr64(common + 0x30, (uint64_t)(uintptr_t)ring_used);
    wr16(common + 0x1c, 1);
    wr8(common + 0x14, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
}

/* One request, one chain of header / data / status; waits up to 5 s for
 * the used element and the interrupt.  Returns the status byte. */
static uint8_t request(uint32_t type, uint64_t sector, uint32_t len)
{
    unsigned before = irqs;
    uint16_t idx = ring_avail[1];
    uint16_t used;
    int i;

    hdr = (struct blk_hdr){ type, 0, sector };
    status_byte = 0xee;
    ring_desc[0] = (struct desc){ (uint64_t)(uintptr_t)&hdr, sizeof(hdr), D_NEXT, 1 };
    if (len) {
        ring_desc[1] = (struct desc){ (uint64_t)(uintptr_t)data, len,
                                      (uint16_t)(D_NEXT | (type == T_IN ? D_WRITE : 0)), 2 };
    } else {
        ring_desc[0].next = 2;
    }
    ring_desc[2] = (struct desc){ (uint64_t)(uintptr_t)&status_byte, 1, D_WRITE, 0 };
    ring_avail[2 + (idx % QSZ)] = 0;
    __asm__ volatile("" ::: "memory");
    ring_avail[1] = (uint16_t)(idx + 1);
    wr16(notify, 0);             /* queue 0's doorbell */
    requests++;
    for (i = 0; i < 5000; i++) {
        used = *(volatile uint16_t *)(ring_used + 2);
        if (used != used_seen && irqs != before)
            break;
        pit_delay_us(1000);
    }
    used = *(volatile uint16_t *)(ring_used + 2);
    if (used == used_seen)
        test_fail("request %u (type %u, sector %u): no used element", requests, type,
                  (unsigned)sector);
    if (irqs == before)
        test_fail("request %u: completed without an interrupt", requests);
    used_seen++;
    return status_byte;
}

static void find_caps(unsigned slot, unsigned *msix_cap)
{
    for (uint8_t cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
        uint8_t id = pci_read8(slot, cap), type;

        if (id == 0x11)
            *msix_cap = cap;
        if (id != 0x09)
            continue;
        type = pci_read8(slot, cap + 3);
        if (pci_read8(slot, cap + 4) != 4)
            continue;
        if (type == 1)
            common = BAR_BASE + pci_read(slot, cap + 8);
        else if (type == 2) {
            notify = BAR_BASE + pci_read(slot, cap + 8);
        } else if (type == 4)
            device = BAR_BASE + pci_read(slot, cap + 8);
    }
}

void test_main(void)
{
    unsigned slot, msix_cap = 0;
    uint64_t count = 8, cap_sectors;
    unsigned bad = 0;

    for (slot = 1; slot < 32; slot++)
        if (pci_read(slot, 0) == 0x10421af4)
            break;
    if (slot == 32)
        test_fail("no virtio-blk-pci (1af4:1042) on bus 0");
    pci_write(slot, 0x10 + 4 * 4, (uint32_t)BAR_BASE);
    pci_write(slot, 0x10 + 4 * 1, (uint32_t)MSIX_BASE);
    pci_write(slot, 0x04, 0x0006);     /* memory + bus master */
    find_caps(slot, &msix_cap);
    if (!common || !notify || !device || !msix_cap)
        test_fail("missing virtio or MSI-X capabilities");

    /* Vector 1 -> this CPU, fixed, edge; unmasked.  Then MSI-X on. */
    wr32(MSIX_BASE + 16 + 0, 0xfee00000u | lapic_id() << 12);
    wr32(MSIX_BASE + 16 + 4, 0);
    wr32(MSIX_BASE + 16 + 8, VEC);
    wr32(MSIX_BASE + 16 + 12, 0);
    pci_write(slot, msix_cap, pci_read(slot, msix_cap) | 0x80000000u);
    idt_set_handler(VEC, on_irq);
    lapic_enable();
    irq_enable();

    device_init();
    cap_sectors = rd32(device) | (uint64_t)rd32(device + 4) << 32;
    kprintf("virtio-blk-pci: %u sectors, MSI-X vector 1 on queue 0\n", (unsigned)cap_sectors);
    if (cap_sectors < WRITE_SECTOR + WRITE_COUNT)
        test_fail("disk too small");

    cmdline_get_u64("count", &count);
    for (uint64_t r = 0; r < count; r++) {
        uint64_t s = r % WRITE_SECTOR;
        uint8_t st;

        memset(data, 0, SECTOR);
        st = request(T_IN, s, SECTOR);
        if (st != 0)
            test_fail("read of sector %u: status %u", (unsigned)s, st);
        for (unsigned i = 0; i < SECTOR; i++)
            bad += data[i] != host_pattern(s, i);
    }
    kprintf("reads: %s\n", bad ? "pattern MISMATCH" : "host pattern matches");
    if (bad)
        test_fail("%u bytes differ from the host's pattern", bad);

    for (unsigned k = 0; k < WRITE_COUNT; k++)
        for (unsigned i = 0; i < SECTOR; i++)
            data[k * SECTOR + i] = guest_pattern(WRITE_SECTOR + k, i);
    kprintf("write of sectors %u-%u: status %u\n", WRITE_SECTOR,
            WRITE_SECTOR + WRITE_COUNT - 1, request(T_OUT, WRITE_SECTOR, sizeof(data)));
    kprintf("flush: status %u\n", request(T_FLUSH, 0, 0));
    memset(data, 0, sizeof(data));
    kprintf("read back: status %u\n", request(T_IN, WRITE_SECTOR, sizeof(data)));
    for (unsigned k = 0; k < WRITE_COUNT; k++)
        for (unsigned i = 0; i < SECTOR; i++)
            bad += data[k * SECTOR + i] != guest_pattern(WRITE_SECTOR + k, i);
    kprintf("read back: %s\n", bad ? "MISMATCH" : "guest pattern matches");
    if (bad)
        test_fail("read back differs in %u bytes", bad);
    kprintf("read past the end: status %u\n", request(T_IN, cap_sectors, SECTOR));
    irq_disable();
    kprintf("interrupts: %u for %u requests\n", irqs, requests);
    if (irqs != requests)
        test_fail("interrupt count");
    test_pass();
}
