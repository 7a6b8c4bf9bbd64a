/* pio_mmio: port and MMIO dispatch basics.  The PCI host bridge answers on
 * 0xcf8/0xcfc, absent PCI functions, unassigned ports and unassigned MMIO
 * read as all-ones (writes to them vanish), and fw_cfg says "QEMU". */
#include "rt.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc
#define UNUSED_PORT 0x0920
#define UNUSED_MMIO 0xd0000000ULL   /* above vmon's 3 GiB low RAM, below BARs */
#define FW_CFG_SEL 0x510
#define FW_CFG_DATA 0x511

static uint32_t pci_read(unsigned dev, unsigned fn, unsigned reg)
{
    outl(PCI_ADDR, 0x80000000u | dev << 11 | fn << 8 | (reg & 0xfc));
    return inl(PCI_DATA);
}

void test_main(void)
{
    uint32_t id = pci_read(0, 0, 0);
    kprintf("pci 00:00.0: %04x:%04x\n", id & 0xffff, id >> 16);
    if (id != 0x12378086)
        test_fail("host bridge is not 8086:1237");
    if (pci_read(31, 7, 0) != 0xffffffff)
        test_fail("absent PCI function 00:1f.7 does not read all-ones");
    kprintf("pci 00:1f.7: absent\n");

    outb(UNUSED_PORT, 0x12);
    uint8_t b = inb(UNUSED_PORT);
    uint16_t w = inw(UNUSED_PORT);
    uint32_t l = inl(UNUSED_PORT);
    kprintf("unassigned port: %02x %04x %08x\n", b, w, l);
    if (b != 0xff || w != 0xffff || l != 0xffffffff)
        test_fail("unassigned port does not read all-ones");

    /* Real chipsets master-abort (all-ones); QEMU reads unassigned memory
     * as zero, so its reference run passes mmio_unassigned=0. */
    uint64_t want = 0xffffffff;
    cmdline_get_u64("mmio_unassigned", &want);
    mmio_write32(UNUSED_MMIO, 0x12345678);
    uint32_t m = mmio_read32(UNUSED_MMIO);
    kprintf("unassigned mmio: %08x\n", m);
    if (m != (uint32_t)want)
        test_fail("unassigned MMIO does not read %08x", (uint32_t)want);

    outw(FW_CFG_SEL, 0x0000);       /* FW_CFG_SIGNATURE */
    char sig[5];
    for (int i = 0; i < 4; i++)
        sig[i] = (char)inb(FW_CFG_DATA);
    sig[4] = '\0';
    kprintf("fw_cfg signature: %s\n", sig);
    if (memcmp(sig, "QEMU", 4))
        test_fail("fw_cfg signature is not QEMU");
}
