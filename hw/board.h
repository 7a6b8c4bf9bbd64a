/* The PC board: creates the devices a vmon machine has, from a table, and
 * builds the firmware tables (ACPI, MP, e820 reservations) that describe it. */
#ifndef VMON_HW_BOARD_H
#define VMON_HW_BOARD_H

#include "machine/machine.h"

int board_init(struct machine *m);
/* Reset every device in creation order. */
void board_reset(struct machine *m);
/* True when vmon must model the LAPIC/IOAPIC/PIC/PIT itself (the
 * accelerator has no in-kernel ones): the condition of their board rows. */
bool board_user_irqchip(const struct machine *m);

#endif
