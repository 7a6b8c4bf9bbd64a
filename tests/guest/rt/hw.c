/* Local APIC, I/O APIC, PIT and CMOS access. */
#include "rt.h"

#define PIT_HZ 1193182u
#define PIT_POLL_LIMIT 10000000

void lapic_enable(void)
{
    lapic_write(LAPIC_SVR, 0x100 | 0xff);   /* enabled, spurious vector 0xff */
}

unsigned lapic_id(void)
{
    return lapic_read(LAPIC_ID) >> 24;
}

bool lapic_send_ipi(unsigned dest, uint32_t icr_lo)
{
    lapic_write(LAPIC_ICR_HI, dest << 24);
    lapic_write(LAPIC_ICR_LO, icr_lo);
    for (int i = 0; i < 100000; i++)
        if (!(lapic_read(LAPIC_ICR_LO) & (1u << 12)))
            return true;
    return false;
}

static void ioapic_write(uint64_t base, unsigned reg, uint32_t v)
{
    mmio_write32(base, reg);
    mmio_write32(base + 0x10, v);
}

void ioapic_route(uint64_t base, unsigned pin, unsigned vector, unsigned dest,
                  bool level, bool active_low)
{
    uint32_t lo = vector | (active_low ? 1u << 13 : 0) | (level ? 1u << 15 : 0);
    ioapic_write(base, 0x10 + 2 * pin + 1, dest << 24);
    ioapic_write(base, 0x10 + 2 * pin, lo);
}

void ioapic_mask(uint64_t base, unsigned pin)
{
    ioapic_write(base, 0x10 + 2 * pin, 1u << 16);
}

static void pit_ch2_wait(uint16_t count)
{
    uint8_t p61 = inb(0x61);
    outb(0x61, p61 & ~0x03);                /* gate low, speaker off */
    outb(0x43, 0xb0);                       /* ch2, lo/hi, mode 0 */
    outb(0x42, (uint8_t)count);
    outb(0x42, (uint8_t)(count >> 8));
    outb(0x61, (p61 & ~0x02) | 0x01);       /* gate high: count */
    for (int i = 0; i < PIT_POLL_LIMIT; i++)
        if (inb(0x61) & 0x20)               /* OUT2 high at terminal count */
            break;
}

void pit_delay_us(unsigned us)
{
    while (us) {
        unsigned chunk = us > 50000 ? 50000 : us;
        uint32_t count = (uint32_t)((uint64_t)chunk * PIT_HZ / 1000000);
        if (count < 2)
            count = 2;
        pit_ch2_wait((uint16_t)count);
        us -= chunk;
    }
}

void pit_start_periodic(uint16_t divisor)
{
    outb(0x43, 0x34);                       /* ch0, lo/hi, mode 2 */
    outb(0x40, (uint8_t)divisor);
    outb(0x40, (uint8_t)(divisor >> 8));
}

void pit_stop(void)
{
    outb(0x43, 0x30);                       /* ch0 mode 0, no count: stops */
}

uint8_t cmos_read(uint8_t reg)
{
    outb(0x70, reg);        /* NMI enable bit left clear */
    return inb(0x71);
}
