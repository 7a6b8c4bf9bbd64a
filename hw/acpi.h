/* ACPI tables vmon writes into the BIOS area of guest RAM (hw/acpi.c).
 * Layout, all in 0xE0000-0xEFFFF (reserved in the e820 map):
 *   RSDP (rev 2) at ACPI_RSDP_ADDR, 16-byte aligned, found by scanning;
 *   then RSDT, XSDT, FADT (rev 3), FACS (64-byte aligned), DSDT, MADT. */
#ifndef VMON_HW_ACPI_H
#define VMON_HW_ACPI_H

#include "machine/machine.h"

#define ACPI_TABLES_BASE 0xe0000ULL
#define ACPI_TABLES_SIZE 0x10000ULL
#define ACPI_RSDP_ADDR ACPI_TABLES_BASE
#define ACPI_IOAPIC_ADDR 0xfec00000U
#define ACPI_LAPIC_ADDR 0xfee00000U
/* The I/O APIC's ID as the models (hw/irqchip.h) and KVM reset it: 0,
 * as QEMU's tables say too.  LAPIC and IOAPIC IDs are separate spaces on
 * xAPIC systems; Linux only renumbers IOAPICs that clash with each other. */
#define ACPI_IOAPIC_ID 0

/* Build and write every table; also what the board's reset runs. */
int acpi_build(struct machine *m);

#endif
