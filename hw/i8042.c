/* i8042 keyboard controller with a keyboard that answers commands but
 * never types: enough for Linux to find the controller, a PS/2 keyboard
 * and no mouse, without waiting on timeouts, and for 0xFE (pulse reset) to
 * reboot the machine.  There is no aux (mouse) port: its tests fail. */
#include <errno.h>
#include <stdlib.h>

#include "hw/pc_devices.h"
#include "util/log.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define I8042_IRQ_KBD 1

#define STR_OBF 0x01
#define STR_IBF 0x02
#define STR_SYS 0x04
#define STR_CMD 0x08
#define STR_UNLOCKED 0x10
#define STR_AUXDATA 0x20

#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE 0x40

#define QUEUE_SIZE 16

struct i8042 {
    struct machine *m;
    uint8_t status, ctr, outport;
    uint8_t pending_cmd;      /* controller command waiting for a data byte */
    uint8_t kbd_pending;      /* keyboard command waiting for its parameter */
    bool kbd_enabled;
    uint8_t queue[QUEUE_SIZE];
    unsigned q_head, q_count;
    int irq_level;
};

static void i8042_update_irq(struct i8042 *k)
{
    int level = k->q_count && (k->ctr & CTR_KBDINT);

    k->status = (uint8_t)((k->status & ~STR_OBF) | (k->q_count ? STR_OBF : 0));
    if (level != k->irq_level) {
        k->irq_level = level;
        machine_set_irq(k->m, I8042_IRQ_KBD, level);
    }
}

static void i8042_queue(struct i8042 *k, uint8_t b)
{
    if (k->q_count < QUEUE_SIZE) {
        k->queue[(k->q_head + k->q_count) % QUEUE_SIZE] = b;
        k->q_count++;
    }
    i8042_update_irq(k);
}

static uint8_t i8042_read_data(struct i8042 *k)
{
    uint8_t b;

    if (!k->q_count)
        return 0;   /* stale data, as the latch would show */
    b = k->queue[k->q_head];
    k->q_head = (k->q_head + 1) % QUEUE_SIZE;
    k->q_count--;
    i8042_update_irq(k);
    return b;
}

static void kbd_reset_state(struct i8042 *k)
{
    k->kbd_pending = 0;
    k->kbd_enabled = true;
}

/* A byte sent to the keyboard (data port write with no controller command
 * pending). */
static void kbd_write(struct i8042 *k, uint8_t b)
{
    if (k->kbd_pending) {
        uint8_t cmd = k->kbd_pending;
        k->kbd_pending = 0;
        i8042_queue(k, 0xfa);
        if (cmd == 0xf0 && b == 0)
            i8042_queue(k, (k->ctr & CTR_XLATE) ? 0x41 : 0x02);   /* set 2 */
        return;
    }
    switch (b) {
    case 0xed:   /* set LEDs */
    case 0xf3:   /* typematic rate */
    case 0xf0:   /* scancode set */
        k->kbd_pending = b;
        i8042_queue(k, 0xfa);
        break;
    case 0xee:   /* echo */
        i8042_queue(k, 0xee);
        break;
    case 0xf2:   /* identify: MF2 keyboard */
        i8042_queue(k, 0xfa);
        i8042_queue(k, 0xab);
        i8042_queue(k, (k->ctr & CTR_XLATE) ? 0x41 : 0x83);
        break;
    case 0xf4:
        k->kbd_enabled = true;
        i8042_queue(k, 0xfa);
        break;
    case 0xf5:
        k->kbd_enabled = false;
        i8042_queue(k, 0xfa);
        break;
    case 0xff:   /* reset and self test */
        kbd_reset_state(k);
        i8042_queue(k, 0xfa);
        i8042_queue(k, 0xaa);
        break;
    default:
        i8042_queue(k, 0xfa);
        break;
    }
}

static void i8042_output_port(struct i8042 *k, uint8_t v)
{
    k->outport = v;
    /* Bit 0 is the CPU reset line, active low. */
    if (!(v & 0x01))
        machine_request_reset(k->m);
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
    if (cmd >= 0xf0) {
        /* Pulse output port bits whose mask bit is 0; bit 0 is reset. */
        if (!(cmd & 0x01))
            machine_request_reset(k->m);
        return;
    }
    if (cmd >= 0x20 && cmd < 0x40) {
        /* Read controller RAM; only byte 0 (the command byte) is kept. */
        i8042_queue(k, cmd == 0x20 ? k->ctr : 0);
        return;
    }
    if (cmd >= 0x60 && cmd < 0x80) {
        k->pending_cmd = cmd;
        return;
    }
    switch (cmd) {
    case 0xa7:
        k->ctr |= CTR_AUXDIS;
        break;
    case 0xa8:
        k->ctr &= ~CTR_AUXDIS;
        break;
    case 0xa9:   /* aux interface test: clock line stuck low = no port */
        i8042_queue(k, 0x01);
        break;
    case 0xaa:   /* controller self test */
        k->status |= STR_SYS;
        i8042_queue(k, 0x55);
        break;
    case 0xab:   /* keyboard interface test */
        i8042_queue(k, 0x00);
        break;
    case 0xad:
        k->ctr |= CTR_KBDDIS;
        break;
    case 0xae:
        k->ctr &= ~CTR_KBDDIS;
        break;
    case 0xc0:   /* input port */
        i8042_queue(k, 0x00);
        break;
    case 0xd0:
        i8042_queue(k, k->outport);
        break;
    case 0xd1:   /* write output port */
    case 0xd2:   /* write keyboard output buffer */
    case 0xd3:   /* write aux output buffer */
    case 0xd4:   /* write to aux device */
        k->pending_cmd = cmd;
        break;
    case 0xe0:   /* test inputs */
        i8042_queue(k, 0x00);
        break;
    default:
        LOG(LOG_UNIMP, "i8042: command 0x%02x ignored\n", cmd);
        break;
    }
}

static void i8042_data(struct i8042 *k, uint8_t v)
{
    uint8_t cmd = k->pending_cmd;

    k->pending_cmd = 0;
    switch (cmd) {
    case 0:
        kbd_write(k, v);
        break;
    case 0x60:
        k->ctr = v;
        k->status = (uint8_t)((k->status & ~STR_SYS) | (v & CTR_SYS));
        i8042_update_irq(k);
        break;
    case 0xd1:
        i8042_output_port(k, v);
        break;
    case 0xd2:
        i8042_queue(k, v);
        break;
    case 0xd3:
        /* No aux port: the loop-back comes back as keyboard data, which
         * Linux reads as "no AUX" at once instead of timing out. */
        i8042_queue(k, v);
        break;
    default:
        /* 0xd4 (aux device) and other RAM writes: nobody listens. */
        break;
    }
}

static uint64_t i8042_data_read(void *opaque, uint64_t offset, unsigned size)
{
    return i8042_read_data(opaque);
}

static void i8042_data_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct i8042 *k = opaque;

    k->status &= ~STR_CMD;
    i8042_data(k, (uint8_t)value);
}

static uint64_t i8042_status_read(void *opaque, uint64_t offset, unsigned size)
{
    struct i8042 *k = opaque;

    return k->status;
}

static void i8042_cmd_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct i8042 *k = opaque;

    k->status |= STR_CMD;
    i8042_command(k, (uint8_t)value);
}

static const struct io_ops i8042_data_ops = {
    .read = i8042_data_read,
    .write = i8042_data_write,
};

static const struct io_ops i8042_cmd_ops = {
    .read = i8042_status_read,
    .write = i8042_cmd_write,
};

static void i8042_reset(void *opaque)
{
    struct i8042 *k = opaque;

    k->status = STR_SYS | STR_UNLOCKED;
    k->ctr = CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE;
    k->outport = 0x03;   /* reset line high, A20 on */
    k->pending_cmd = 0;
    k->q_head = k->q_count = 0;
    kbd_reset_state(k);
    i8042_update_irq(k);
}

int i8042_create(struct machine *m)
{
    struct i8042 *k = calloc(1, sizeof(*k));
    int ret;

    if (!k)
        return -ENOMEM;
    k->m = m;
    i8042_reset(k);
    ret = machine_register_pio(m, I8042_DATA, 1, &i8042_data_ops, k, "i8042");
    if (ret < 0) {
        free(k);
        return ret;
    }
    /* From here on a port region points at k: it lives with the machine. */
    ret = machine_register_pio(m, I8042_CMD, 1, &i8042_cmd_ops, k, "i8042");
    if (ret < 0)
        return ret;
    return machine_add_device(m, "i8042", k, i8042_reset, free);
}

/* ---- snapshot state (migration/vmstate.h) ---- */

#include "migration/migration.h"

static void i8042_post_load(void *opaque)
{
    struct i8042 *k = opaque;

    k->q_head %= QUEUE_SIZE;
    if (k->q_count > QUEUE_SIZE)
        k->q_count = QUEUE_SIZE;
    k->irq_level = k->irq_level ? 1 : 0;
}

static const struct vmstate_field i8042_fields[] = {
    VMS_U8_FIELD(struct i8042, status), VMS_U8_FIELD(struct i8042, ctr),
    VMS_U8_FIELD(struct i8042, outport), VMS_U8_FIELD(struct i8042, pending_cmd),
    VMS_U8_FIELD(struct i8042, kbd_pending), VMS_BOOL_FIELD(struct i8042, kbd_enabled),
    VMS_U8_FIELD(struct i8042, queue), VMS_U32_FIELD(struct i8042, q_head),
    VMS_U32_FIELD(struct i8042, q_count), VMS_INT_FIELD(struct i8042, irq_level),
    VMS_END,
};

const struct vmstate_desc i8042_vmstate = {
    .name = "i8042", .version = 1, .fields = i8042_fields, .post_load = i8042_post_load,
};
