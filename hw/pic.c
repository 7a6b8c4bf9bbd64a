/* The 8259A pair. */
#include <string.h>
#include "hw/pic.h"
#include "util/log.h"

/* IRQ 0, 1, 2 (timer, keyboard, cascade) and 8, 13 (RTC, FPU) are always
 * edge-triggered on the PIIX. */
#define ELCR_MASK_MASTER 0xf8
#define ELCR_MASK_SLAVE 0xde

/* Priority level (0 highest) of the best request in mask, 8 if none. */
static int priority_of(const struct pic_chip *c, uint8_t mask)
{
    if (!mask)
        return 8;
    int p = 0;
    while (!(mask & (1u << ((p + c->priority_add) & 7))))
        p++;
    return p;
}

/* The IRQ this chip would raise INTR for, or -1. */
static int chip_irq(const struct pic_chip *c, bool master)
{
    int p = priority_of(c, c->irr & ~c->imr);
    if (p == 8)
        return -1;
    uint8_t in_service = c->isr;
    if (c->special_mask)
        in_service &= ~c->imr;
    /* Fully nested: the slave may interrupt its own in-service cascade. */
    if (master && c->special_fully_nested_mode)
        in_service &= ~(1u << 2);
    if (p < priority_of(c, in_service))
        return (p + c->priority_add) & 7;
    return -1;
}

static void chip_set_line(struct pic_chip *c, unsigned irq, int level)
{
    uint8_t mask = 1u << irq;
    if (c->elcr & mask) {
        if (level) {
            c->irr |= mask;
            c->last_irr |= mask;
        } else {
            c->irr &= ~mask;
            c->last_irr &= ~mask;
        }
    } else if (level) {
        if (!(c->last_irr & mask))
            c->irr |= mask;
        c->last_irr |= mask;
    } else {
        c->last_irr &= ~mask;
    }
}

/* The slave's INTR is the master's IRQ2 line. */
static void update(struct pic *p)
{
    chip_set_line(&p->chip[0], 2, chip_irq(&p->chip[1], false) >= 0);
}

static void chip_reset(struct pic_chip *c, uint8_t elcr_mask)
{
    memset(c, 0, sizeof(*c));
    c->elcr_mask = elcr_mask;
}

void pic_reset(struct pic *p)
{
    chip_reset(&p->chip[0], ELCR_MASK_MASTER);
    chip_reset(&p->chip[1], ELCR_MASK_SLAVE);
}

void pic_init(struct pic *p)
{
    pic_reset(p);
}

void pic_restore(struct pic *p)
{
    struct pic_chip *m = &p->chip[0];
    if (chip_irq(&p->chip[1], false) >= 0)
        m->last_irr |= 1u << 2;
    else
        m->last_irr &= ~(1u << 2);
}

void pic_set_irq(struct pic *p, unsigned irq, int level)
{
    if (irq >= 16)
        return;
    chip_set_line(&p->chip[irq >> 3], irq & 7, level);
    update(p);
}

bool pic_get_output(const struct pic *p)
{
    return chip_irq(&p->chip[0], true) >= 0;
}

static void chip_intack(struct pic_chip *c, int irq)
{
    uint8_t mask = 1u << irq;
    if (c->auto_eoi) {
        if (c->rotate_on_auto_eoi)
            c->priority_add = (irq + 1) & 7;
    } else {
        c->isr |= mask;
    }
    /* A level-triggered request stays in IRR while its line is high. */
    if (!(c->elcr & mask))
        c->irr &= ~mask;
}

int pic_ack(struct pic *p)
{
    struct pic_chip *m = &p->chip[0], *s = &p->chip[1];
    int vector;
    int irq = chip_irq(m, true);
    if (irq < 0) {
        vector = m->irq_base + 7;  /* spurious IRQ7 */
    } else {
        chip_intack(m, irq);
        if (irq == 2) {
            int irq2 = chip_irq(s, false);
            if (irq2 >= 0)
                chip_intack(s, irq2);
            else
                irq2 = 7;  /* spurious IRQ15 */
            vector = s->irq_base + irq2;
        } else {
            vector = m->irq_base + irq;
        }
    }
    update(p);
    LOG(LOG_INT, "pic: ack vector %#x\n", vector);
    return vector;
}

static uint8_t poll_read(struct pic *p, struct pic_chip *c, bool master)
{
    c->poll = 0;
    int irq = chip_irq(c, master);
    if (irq < 0)
        return 0;
    chip_intack(c, irq);
    update(p);
    return 0x80 | irq;
}

static void write_cmd(struct pic_chip *c, uint8_t val)
{
    if (val & 0x10) { /* ICW1 */
        uint8_t elcr = c->elcr, mask = c->elcr_mask, last = c->last_irr;
        uint8_t level_irr = c->irr & c->elcr;
        chip_reset(c, mask);
        c->elcr = elcr;
        /* The edge detectors are reset: a line already high must go low
         * and high again before it interrupts. */
        c->last_irr = last;
        c->irr = level_irr;
        c->init_state = 1;
        c->init4 = val & 1;
        c->single = (val >> 1) & 1;
        if (val & 0x08)
            LOG(LOG_UNIMP, "pic: ICW1 level-triggered mode ignored (use ELCR)\n");
        return;
    }
    if (val & 0x08) { /* OCW3 */
        if (val & 0x04)
            c->poll = 1;
        if (val & 0x02)
            c->read_reg_select = val & 1;
        if (val & 0x40)
            c->special_mask = (val >> 5) & 1;
        return;
    }
    /* OCW2 */
    unsigned cmd = val >> 5;
    switch (cmd) {
    case 0: /* clear rotate in auto-EOI mode */
    case 4: /* set rotate in auto-EOI mode */
        c->rotate_on_auto_eoi = cmd >> 2;
        break;
    case 1: /* non-specific EOI */
    case 5: { /* rotate on non-specific EOI */
        int prio = priority_of(c, c->isr);
        if (prio != 8) {
            int irq = (prio + c->priority_add) & 7;
            c->isr &= ~(1u << irq);
            if (cmd == 5)
                c->priority_add = (irq + 1) & 7;
        }
        break;
    }
    case 3: /* specific EOI */
    case 7: { /* rotate on specific EOI */
        int irq = val & 7;
        c->isr &= ~(1u << irq);
        if (cmd == 7)
            c->priority_add = (irq + 1) & 7;
        break;
    }
    case 6: /* set priority: val&7 becomes the lowest */
        c->priority_add = (val + 1) & 7;
        break;
    default: /* 2: no operation */
        break;
    }
}

static void write_data(struct pic_chip *c, uint8_t val)
{
    switch (c->init_state) {
    case 0: /* OCW1 */
        c->imr = val;
        break;
    case 1: /* ICW2 */
        c->irq_base = val & 0xf8;
        c->init_state = c->single ? (c->init4 ? 3 : 0) : 2;
        break;
    case 2: /* ICW3: the cascade is wired to IRQ2 whatever it says */
        c->init_state = c->init4 ? 3 : 0;
        break;
    default: /* ICW4 */
        if (!(val & 1))
            LOG(LOG_UNIMP, "pic: 8080/8085 mode not supported\n");
        c->special_fully_nested_mode = (val >> 4) & 1;
        c->auto_eoi = (val >> 1) & 1;
        c->init_state = 0;
        break;
    }
}

void pic_write(struct pic *p, bool slave, unsigned addr, uint8_t val)
{
    struct pic_chip *c = &p->chip[slave];
    if (addr & 1)
        write_data(c, val);
    else
        write_cmd(c, val);
    update(p);
}

uint8_t pic_read(struct pic *p, bool slave, unsigned addr)
{
    struct pic_chip *c = &p->chip[slave];
    if (c->poll)
        return poll_read(p, c, !slave);
    if (addr & 1)
        return c->imr;
    return c->read_reg_select ? c->isr : c->irr;
}

uint8_t pic_elcr_read(const struct pic *p, unsigned idx)
{
    return p->chip[idx & 1].elcr;
}

void pic_elcr_write(struct pic *p, unsigned idx, uint8_t val)
{
    struct pic_chip *c = &p->chip[idx & 1];
    c->elcr = val & c->elcr_mask;
    /* Pins now level-triggered request while their line is high. */
    c->irr |= c->elcr & c->last_irr;
    update(p);
}
