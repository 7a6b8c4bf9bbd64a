/* PCI configuration mechanism #1 and MMIO accessors for the test kernels
 * that drive PCI devices (the virtio ones).  Bus 0, function 0. */
#ifndef VMON_TESTS_RT_PCI_H
#define VMON_TESTS_RT_PCI_H

#include "rt.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc

static inline uint32_t pci_read(unsigned slot, unsigned reg)
{
    outl(PCI_ADDR, 0x80000000u | slot << 11 | (reg & 0xfc));
    return inl(PCI_DATA);
}

static inline void pci_write(unsigned slot, unsigned reg, uint32_t v)
{
    outl(PCI_ADDR, 0x80000000u | slot << 11 | (reg & 0xfc));
    outl(PCI_DATA, v);
}

static inline uint8_t pci_read8(unsigned slot, unsigned reg)
{
    return (uint8_t)(pci_read(slot, reg) >> (8 * (reg & 3)));
}

static inline uint8_t rd8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t rd16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t rd32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void wr8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void wr16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void wr32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void wr64(uint64_t a, uint64_t v)
{
    wr32(a, (uint32_t)v);
    wr32(a + 4, (uint32_t)(v >> 32));
}

#endif
