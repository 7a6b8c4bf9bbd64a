/* Constructors of the PC board's devices, called from the tables in
 * hw/pc.c.  Each registers its ports/MMIO and itself (machine_add_device)
 * and returns 0 or a negative errno after an error_report(). */
#ifndef VMON_HW_PC_DEVICES_H
#define VMON_HW_PC_DEVICES_H

#include "machine/machine.h"

struct keyval;

int pm_create(struct machine *m);          /* ACPI PM1 block, PM timer, 0xcf9 */
int port92_create(struct machine *m);      /* port 0x92 (A20/fast reset), 0x80 */
int fw_cfg_create(struct machine *m);
int rtc_create(struct machine *m);
int i8042_create(struct machine *m);
int serial_com1_create(struct machine *m);
int pci_host_create(struct machine *m);
int acpi_create(struct machine *m);        /* tables in guest RAM */
int mptable_create(struct machine *m);
int smbios_create(struct machine *m);      /* SMBIOS 3.0 (hw/smbios.h) */

/* -device drivers: the options after the driver name, unknown keys left
 * for the caller to reject. */
int debug_exit_create(struct machine *m, struct keyval *opts);

#endif
