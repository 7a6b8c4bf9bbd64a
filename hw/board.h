/* The PC board: creates the devices a vmon machine has, from a table, and
 * builds the firmware tables (ACPI, MP, e820 reservations) that describe it. */
#ifndef VMON_HW_BOARD_H
#define VMON_HW_BOARD_H

#include "machine/machine.h"

int board_init(struct machine *m);
/* Reset every device in creation order. */
void board_reset(struct machine *m);

#endif
