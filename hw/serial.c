/* 16550A UART as Linux's 8250 driver sees it on a PC.
 *
 * Transmission is instantaneous: a byte written to THR goes straight to the
 * chardev (or, in loopback, into the receive FIFO), so THR and the shift
 * register are always empty again by the time the guest looks.  The receive
 * side has a real 16-byte FIFO and pushes back on the chardev when full. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chardev/chardev.h"
#include "config/config.h"
#include "hw/pc_devices.h"
#include "hw/serial.h"
#include "util/log.h"

enum {
    UART_RBR = 0, UART_THR = 0, UART_DLL = 0,
    UART_IER = 1, UART_DLM = 1,
    UART_IIR = 2, UART_FCR = 2,
    UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI 0x08

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_TIMEOUT 0x0c
#define IIR_FIFO_ON 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_PE 0x04
#define LSR_FE 0x08
#define LSR_BI 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_FIFOE 0x80
#define LSR_ERRORS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80
#define MSR_DELTAS 0x0f

#define FIFO_SIZE 16

struct serial {
    struct machine *m;
    struct chardev *chr;
    uint16_t base;
    unsigned irq;
    int irq_level;

    uint8_t ier, lcr, mcr, lsr, msr, scr, fcr;
    uint16_t divisor;
    bool thr_ipending;     /* THRE interrupt latched until IIR read / THR write */

    uint8_t rx[FIFO_SIZE];
    unsigned rx_head, rx_count;
};

static const unsigned rx_trigger[4] = { 1, 4, 8, 14 };

static bool fifo_on(const struct serial *s)
{
    return s->fcr & FCR_ENABLE;
}

static unsigned rx_capacity(const struct serial *s)
{
    return fifo_on(s) ? FIFO_SIZE : 1;
}

/* The highest-priority pending interrupt, as IIR bits 3:0. */
static uint8_t serial_pending(const struct serial *s)
{
    if ((s->ier & IER_RLSI) && (s->lsr & LSR_ERRORS))
        return IIR_RLSI;
    if ((s->ier & IER_RDI) && s->rx_count) {
        /* Below the trigger level the FIFO reports a character timeout;
         * the timeout itself is not modelled (it fires at once). */
        if (fifo_on(s) && s->rx_count < rx_trigger[s->fcr >> 6])
            return IIR_TIMEOUT;
        return IIR_RDI;
    }
    if ((s->ier & IER_THRI) && s->thr_ipending)
        return IIR_THRI;
    if ((s->ier & IER_MSI) && (s->msr & MSR_DELTAS))
        return IIR_MSI;
    return IIR_NO_INT;
}

/* On a PC, OUT2 gates the UART's interrupt output onto the ISA line; in
 * loopback the modem outputs are forced inactive, so nothing gets out. */
static void serial_update_irq(struct serial *s)
{
    int level = serial_pending(s) != IIR_NO_INT && (s->mcr & MCR_OUT2) &&
                !(s->mcr & MCR_LOOP);

    if (level != s->irq_level) {
        s->irq_level = level;
        if (s->m)
            machine_set_irq(s->m, s->irq, level);
    }
}

static void rx_clear(struct serial *s)
{
    bool was_full = s->rx_count >= rx_capacity(s);

    s->rx_head = s->rx_count = 0;
    s->lsr &= ~(LSR_DR | LSR_FIFOE);
    if (was_full && s->chr)
        chardev_accept_input(s->chr);
}

static void rx_push(struct serial *s, uint8_t b)
{
    if (s->rx_count >= rx_capacity(s)) {
        /* Overrun: the byte is lost, as on the real part. */
        s->lsr |= LSR_OE;
        return;
    }
    s->rx[(s->rx_head + s->rx_count) % FIFO_SIZE] = b;
    s->rx_count++;
    s->lsr |= LSR_DR;
}

static uint8_t rx_pop(struct serial *s)
{
    uint8_t b;
    bool was_full;

    if (!s->rx_count)
        return 0;
    was_full = s->rx_count >= rx_capacity(s);
    b = s->rx[s->rx_head];
    s->rx_head = (s->rx_head + 1) % FIFO_SIZE;
    s->rx_count--;
    if (!s->rx_count)
        s->lsr &= ~LSR_DR;
    if (was_full && s->chr && !(s->mcr & MCR_LOOP))
        chardev_accept_input(s->chr);
    return b;
}

/* MSR bits 7:4 from the modem outputs in loopback, else a modem that is
 * always there (DCD, DSR, CTS), as QEMU presents it. */
static void serial_update_msr(struct serial *s)
{
    uint8_t lines;

    if (s->mcr & MCR_LOOP) {
        lines = 0;
        if (s->mcr & MCR_RTS)
            lines |= MSR_CTS;
        if (s->mcr & MCR_DTR)
            lines |= MSR_DSR;
        if (s->mcr & MCR_OUT1)
            lines |= MSR_RI;
        if (s->mcr & MCR_OUT2)
            lines |= MSR_DCD;
    } else {
        lines = MSR_DCD | MSR_DSR | MSR_CTS;
    }
    uint8_t old = s->msr;
    uint8_t delta = 0;
    if ((old ^ lines) & MSR_CTS)
        delta |= MSR_DCTS;
    if ((old ^ lines) & MSR_DSR)
        delta |= MSR_DDSR;
    if ((old ^ lines) & MSR_DCD)
        delta |= MSR_DDCD;
    if ((old & MSR_RI) && !(lines & MSR_RI))
        delta |= MSR_TERI;
    s->msr = (uint8_t)(lines | (old & MSR_DELTAS) | delta);
}

static void serial_transmit(struct serial *s, uint8_t b)
{
    if (s->mcr & MCR_LOOP)
        rx_push(s, b);
    else if (s->chr)
        chardev_write(s->chr, &b, 1);
    s->lsr |= LSR_THRE | LSR_TEMT;
    s->thr_ipending = true;
}

static uint8_t serial_read_reg(struct serial *s, unsigned reg)
{
    uint8_t v;

    switch (reg) {
    case UART_RBR:
        if (s->lcr & LCR_DLAB)
            return s->divisor & 0xff;
        v = rx_pop(s);
        serial_update_irq(s);
        return v;
    case UART_IER:
        if (s->lcr & LCR_DLAB)
            return s->divisor >> 8;
        return s->ier;
    case UART_IIR:
        v = serial_pending(s);
        /* Reading IIR is what acknowledges a THRE interrupt. */
        if (v == IIR_THRI) {
            s->thr_ipending = false;
            serial_update_irq(s);
        }
        return v | (fifo_on(s) ? IIR_FIFO_ON : 0);
    case UART_LCR:
        return s->lcr;
    case UART_MCR:
        return s->mcr;
    case UART_LSR:
        v = s->lsr;
        s->lsr &= ~(LSR_ERRORS | LSR_FIFOE);
        serial_update_irq(s);
        return v;
    case UART_MSR:
        v = s->msr;
        s->msr &= ~MSR_DELTAS;
        serial_update_irq(s);
        return v;
    default:
        return s->scr;
    }
}

static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v)
{
    uint8_t old;

    switch (reg) {
    case UART_THR:
        if (s->lcr & LCR_DLAB) {
            s->divisor = (uint16_t)((s->divisor & 0xff00) | v);
            return;
        }
        s->thr_ipending = false;
        serial_transmit(s, v);
        break;
    case UART_IER:
        if (s->lcr & LCR_DLAB) {
            s->divisor = (uint16_t)((s->divisor & 0x00ff) | (v << 8));
            return;
        }
        old = s->ier;
        s->ier = v & 0x0f;
        /* Enabling THRI while the holding register is empty raises the
         * interrupt again: Linux's 8250 driver starts transmission (and
         * tests the UART at startup) this way. */
        if ((s->ier & IER_THRI) && !(old & IER_THRI) && (s->lsr & LSR_THRE))
            s->thr_ipending = true;
        break;
    case UART_FCR:
        if ((v ^ s->fcr) & FCR_ENABLE)
            v |= FCR_CLEAR_RX | FCR_CLEAR_TX;
        if (v & FCR_CLEAR_RX)
            rx_clear(s);
        /* TX FIFO is always empty: nothing to clear. */
        old = s->fcr;
        s->fcr = v & 0xc1;
        if ((old ^ s->fcr) & FCR_ENABLE && s->chr)
            chardev_accept_input(s->chr);
        break;
    case UART_LCR:
        s->lcr = v;
        break;
    case UART_MCR:
        old = s->mcr;
        s->mcr = v & 0x1f;
        serial_update_msr(s);
        if ((old & MCR_LOOP) && !(s->mcr & MCR_LOOP) && s->chr)
            chardev_accept_input(s->chr);
        break;
    case UART_LSR:
    case UART_MSR:
        /* Read-only on the 16550A (factory test writes ignored). */
        return;
    default:
        s->scr = v;
        return;
    }
    serial_update_irq(s);
}

static uint64_t serial_io_read(void *opaque, uint64_t offset, unsigned size)
{
    struct serial *s = opaque;
    uint64_t v = 0;

    /* Wider accesses read consecutive registers, as the bus would split
     * them; bytes past the last register float high. */
    for (unsigned i = 0; i < size; i++) {
        uint64_t reg = offset + i;
        uint8_t b = reg < 8 ? serial_read_reg(s, (unsigned)reg) : 0xff;
        v |= (uint64_t)b << (8 * i);
    }
    return v;
}

static void serial_io_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct serial *s = opaque;

    for (unsigned i = 0; i < size; i++)
        if (offset + i < 8)
            serial_write_reg(s, (unsigned)(offset + i), (uint8_t)(value >> (8 * i)));
}

static const struct io_ops serial_io_ops = {
    .read = serial_io_read,
    .write = serial_io_write,
};

static size_t serial_can_receive(void *opaque)
{
    struct serial *s = opaque;

    if (s->mcr & MCR_LOOP)
        return 0;
    return rx_capacity(s) - MIN(s->rx_count, rx_capacity(s));
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
    size_t taken = 0;

    for (size_t i = 0; i < len; i++) {
        if (s->rx_count < rx_capacity(s))
            taken++;
        rx_push(s, buf[i]);
    }
    serial_update_irq(s);
    return taken;
}

static void serial_chr_receive(void *opaque, const uint8_t *buf, size_t len)
{
    struct serial *s = opaque;

    if (s->mcr & MCR_LOOP)
        return;
    serial_receive(s, buf, len);
}

static const struct chardev_frontend serial_frontend = {
    .can_receive = serial_can_receive,
    .receive = serial_chr_receive,
};

void serial_reset(void *opaque)
{
    struct serial *s = opaque;

    s->ier = 0;
    s->lcr = 0;
    s->mcr = 0;
    s->fcr = 0;
    s->scr = 0;
    s->divisor = 12;   /* 9600 baud */
    s->lsr = LSR_THRE | LSR_TEMT;
    s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
    s->thr_ipending = false;
    s->rx_head = s->rx_count = 0;
    serial_update_irq(s);
    if (s->chr)
        chardev_accept_input(s->chr);
}

struct serial *serial_new(struct machine *m, uint16_t base, unsigned irq,
                          struct chardev *chr)
{
    struct serial *s = calloc(1, sizeof(*s));

    if (!s) {
        chardev_free(chr);
        return NULL;
    }
    s->m = m;
    s->base = base;
    s->irq = irq;
    s->chr = chr;
    serial_reset(s);
    if (machine_register_pio(m, base, 8, &serial_io_ops, s, "serial") < 0) {
        chardev_free(chr);
        free(s);
        return NULL;
    }
    if (chr)
        chardev_set_frontend(chr, &serial_frontend, s);
    return s;
}

void serial_free(void *opaque)
{
    struct serial *s = opaque;

    if (!s)
        return;
    if (s->chr) {
        chardev_set_frontend(s->chr, NULL, NULL);
        chardev_free(s->chr);
    }
    free(s);
}

/* COM1 as -serial asked for it. */
int serial_com1_create(struct machine *m)
{
    struct chardev *chr;
    struct serial *s;

    switch (m->cfg->serial) {
    case SERIAL_NONE:
        return 0;
    case SERIAL_FILE:
        chr = chardev_file_new(m->cfg->serial_path);
        if (!chr)
            return -EINVAL;   /* the chardev named the file */
        break;
    default:   /* SERIAL_DEFAULT is resolved by the CLI; treat as stdio */
        chr = chardev_stdio_new();
        if (!chr) {
            error_report("-serial: cannot use stdio for COM1");
            return -EIO;
        }
        break;
    }
    s = serial_new(m, SERIAL_COM1_BASE, SERIAL_COM1_IRQ, chr);
    if (!s) {
        error_report("serial: cannot create COM1 at 0x%x", SERIAL_COM1_BASE);
        return -ENOMEM;
    }
    return machine_add_device(m, "serial", s, serial_reset, serial_free);
}

/* ---- snapshot state (migration/vmstate.h) ---- */

#include "migration/migration.h"

static void serial_post_load(void *opaque)
{
    struct serial *s = opaque;

    /* The stream is input: keep the FIFO indexes inside the FIFO. */
    s->rx_head %= FIFO_SIZE;
    if (s->rx_count > FIFO_SIZE)
        s->rx_count = FIFO_SIZE;
    s->irq_level = s->irq_level ? 1 : 0;
}

static const struct vmstate_field serial_fields[] = {
    VMS_U8_FIELD(struct serial, ier), VMS_U8_FIELD(struct serial, lcr),
    VMS_U8_FIELD(struct serial, mcr), VMS_U8_FIELD(struct serial, lsr),
    VMS_U8_FIELD(struct serial, msr), VMS_U8_FIELD(struct serial, scr),
    VMS_U8_FIELD(struct serial, fcr), VMS_U16_FIELD(struct serial, divisor),
    VMS_BOOL_FIELD(struct serial, thr_ipending), VMS_U8_FIELD(struct serial, rx),
    VMS_U32_FIELD(struct serial, rx_head), VMS_U32_FIELD(struct serial, rx_count),
    VMS_INT_FIELD(struct serial, irq_level),
    VMS_END,
};

const struct vmstate_desc serial_vmstate = {
    .name = "serial", .version = 1, .fields = serial_fields, .post_load = serial_post_load,
};
