/* SMBIOS tables vmon writes into the BIOS area of guest RAM (hw/smbios.c).
 * Layout, in 0xF0000-0xFFFFF (reserved in the e820 map) after the MP table
 * (0xF0000, under 4 KiB): the 24-byte SMBIOS 3.0 entry point at
 * SMBIOS_EP_ADDR, 16-byte aligned for the guest's scan, then the structure
 * table. */
#ifndef VMON_HW_SMBIOS_H
#define VMON_HW_SMBIOS_H

#include "machine/machine.h"

#define SMBIOS_EP_ADDR 0xf1000ULL
#define SMBIOS_EP_SIZE 0x18
#define SMBIOS_TABLE_ADDR 0xf1020ULL
/* 64 vCPUs' processor structures fit with room to spare. */
#define SMBIOS_TABLE_MAX 0x2000u

/* The structure table for m into buf: its length, or 0 if it does not fit
 * in cap.  Also counts structures and the largest one (for tests). */
size_t smbios_build_tables(const struct machine *m, uint8_t *buf, size_t cap,
                           unsigned *nr_structs, size_t *max_struct);
/* The 64-bit ("_SM3_") entry point for a table at table_addr. */
void smbios_build_entry(uint8_t ep[SMBIOS_EP_SIZE], uint64_t table_addr, size_t table_len);
/* Write both into guest RAM and again at every reset. */
int smbios_create(struct machine *m);

#endif
