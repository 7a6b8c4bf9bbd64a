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
#include "virtio.h"

#define VEC 0x51
#define MSIX_ENTRY 1
#define SECTOR 512
#define WRITE_SECTOR 8
#define WRITE_COUNT 4

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4

struct blk_hdr { uint32_t type, reserved; uint64_t sector; };

static struct virtio_dev dev;
static struct virtq vq;
static struct blk_hdr hdr __attribute__((aligned(16)));
static uint8_t data[WRITE_COUNT * SECTOR] __attribute__((aligned(4096)));
static volatile uint8_t status_byte;

static volatile unsigned irqs;
static unsigned requests;

static uint8_t host_pattern(uint64_t s, unsigned i) { return (uint8_t)(s * 37 + i * 7 + 1); }
static uint8_t guest_pattern(uint64_t s, unsigned i) { return (uint8_t)(s * 11 + i * 3 + 0x80); }

static void on_irq(void)
{
    irqs++;
    lapic_eoi();
}

/* One request, one chain of header / data / status; waits up to 5 s for
 * the used element and the interrupt.  Returns the status byte. */
static uint8_t request(uint32_t type, uint64_t sector, uint32_t len)
{
    unsigned before = irqs;
    bool used = false;
    int i;

    hdr = (struct blk_hdr){ type, 0, sector };
    status_byte = 0xee;
    vq.desc[0] = (struct virtq_desc){ (uint64_t)(uintptr_t)&hdr, sizeof(hdr), VIRTQ_DESC_NEXT, 1 };
    if (len) {
        vq.desc[1] = (struct virtq_desc){
            (uint64_t)(uintptr_t)data, len,
            (uint16_t)(VIRTQ_DESC_NEXT | (type == T_IN ? VIRTQ_DESC_WRITE : 0)), 2 };
    } else {
        vq.desc[0].next = 2;
    }
    vq.desc[2] = (struct virtq_desc){ (uint64_t)(uintptr_t)&status_byte, 1, VIRTQ_DESC_WRITE, 0 };
    virtq_submit(&vq, 0);
    requests++;
    for (i = 0; i < 5000; i++) {
        used = used || virtq_take_used(&vq, NULL);
        if (used && irqs != before)
            break;
        pit_delay_us(1000);
    }
    used = used || virtq_take_used(&vq, NULL);
    if (!used)
        test_fail("request %u (type %u, sector %u): no used element", requests, type,
                  (unsigned)sector);
    if (irqs == before)
        test_fail("request %u: completed without an interrupt", requests);
    return status_byte;
}

void test_main(void)
{
    unsigned slot;
    uint64_t count = 8, cap_sectors;
    unsigned bad = 0;

    slot = virtio_pci_find(VIRTIO_ID_BLK);
    if (!slot)
        test_fail("no virtio-blk-pci (1af4:1042) on bus 0");
    virtio_pci_map(&dev, slot);
    if (!dev.common || !dev.notify || !dev.device || !dev.msix_cap)
        test_fail("missing virtio or MSI-X capabilities");

    /* Entry 1 -> this CPU, fixed, edge; unmasked.  Then MSI-X on. */
    wr32(VIRTIO_MSIX_BASE + 16 * MSIX_ENTRY + 0, 0xfee00000u | lapic_id() << 12);
    wr32(VIRTIO_MSIX_BASE + 16 * MSIX_ENTRY + 4, 0);
    wr32(VIRTIO_MSIX_BASE + 16 * MSIX_ENTRY + 8, VEC);
    wr32(VIRTIO_MSIX_BASE + 16 * MSIX_ENTRY + 12, 0);
    pci_write(slot, dev.msix_cap, pci_read(slot, dev.msix_cap) | 0x80000000u);
    idt_set_handler(VEC, on_irq);
    lapic_enable();
    irq_enable();

    virtio_negotiate(&dev);
    wr16(dev.common + VIRTIO_COMMON_MSIX_CONFIG, VIRTIO_NO_VECTOR);
    virtq_setup(&dev, &vq, 0, MSIX_ENTRY);
    virtio_driver_ok(&dev);
    cap_sectors = rd32(dev.device) | (uint64_t)rd32(dev.device + 4) << 32;
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
