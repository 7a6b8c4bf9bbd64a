/* The 8259A programmable interrupt controller pair: master at 0x20/0x21,
 * slave at 0xa0/0xa1 cascaded on master IRQ2, with the PIIX edge/level
 * control registers (ELCR) at 0x4d0/0x4d1.
 *
 * Modelled: ICW1-4, OCW1-3, IRR/ISR reads, specific and non-specific EOI
 * with optional rotation, set priority, auto-EOI, special fully nested mode,
 * special mask mode, poll mode, spurious IRQ7/IRQ15.  Not modelled: 8080
 * mode, the LTIM bit (use ELCR), buffered mode.
 *
 * The fields of struct pic_chip are the fields of KVM's struct
 * kvm_pic_state (KVM_GET_IRQCHIP), plus `single` (ICW1 single mode, only
 * meaningful mid-initialisation).  Callers hold the machine lock. */
#ifndef VMON_HW_PIC_H
#define VMON_HW_PIC_H

#include "util/types.h"

struct pic_chip {
    uint8_t last_irr;   /* input line levels (edge detection) */
    uint8_t irr;
    uint8_t imr;
    uint8_t isr;
    uint8_t priority_add;  /* the IRQ with the highest priority */
    uint8_t irq_base;
    uint8_t read_reg_select;  /* 0: IRR, 1: ISR */
    uint8_t poll;
    uint8_t special_mask;
    uint8_t init_state;  /* 0 ready, 1 want ICW2, 2 want ICW3, 3 want ICW4 */
    uint8_t auto_eoi;
    uint8_t rotate_on_auto_eoi;
    uint8_t special_fully_nested_mode;
    uint8_t init4;
    uint8_t elcr;       /* 1 = level-triggered */
    uint8_t elcr_mask;
    uint8_t single;
};

struct pic {
    struct pic_chip chip[2];  /* [0] master, [1] slave */
};

#define PIC_MASTER_PORT 0x20
#define PIC_SLAVE_PORT 0xa0
#define PIC_ELCR_PORT 0x4d0

void pic_init(struct pic *p);
/* Power-on reset: everything cleared, edge-triggered, unmasked. */
void pic_reset(struct pic *p);
/* After loading chip state from elsewhere (KVM, a snapshot): recompute the
 * master's cascade input from the slave.  KVM pulses that line, so its
 * last_irr bit 2 is always clear. */
void pic_restore(struct pic *p);
/* ISA IRQ 0-15 changes level (1 asserted); others are ignored. */
void pic_set_irq(struct pic *p, unsigned irq, int level);
/* The INTR output of the master. */
bool pic_get_output(const struct pic *p);
/* Interrupt acknowledge cycle: the vector the CPU gets (spurious IRQ7 or
 * IRQ15 if the request went away). */
int pic_ack(struct pic *p);
/* Port access: slave selects the chip, addr is 0 or 1 (port & 1). */
uint8_t pic_read(struct pic *p, bool slave, unsigned addr);
void pic_write(struct pic *p, bool slave, unsigned addr, uint8_t val);
/* ELCR: idx 0 for IRQ 0-7 (0x4d0), 1 for IRQ 8-15 (0x4d1). */
uint8_t pic_elcr_read(const struct pic *p, unsigned idx);
void pic_elcr_write(struct pic *p, unsigned idx, uint8_t val);

#endif
