/* 16550A UART.  The board creates COM1 (0x3f8, IRQ 4) from -serial; tests
 * and other boards may create more. */
#ifndef VMON_HW_SERIAL_H
#define VMON_HW_SERIAL_H

#include "machine/machine.h"

struct chardev;
struct serial;

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ 4

/* Register 8 ports at base, raise irq, talk to chr (owned by the UART from
 * now on and freed with it; NULL: output dropped, no input). */
struct serial *serial_new(struct machine *m, uint16_t base, unsigned irq,
                          struct chardev *chr);
void serial_reset(void *opaque);
void serial_free(void *opaque);
/* Feed input as the chardev would (tests); returns bytes taken. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

#endif
