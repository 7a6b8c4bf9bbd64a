/* virtio-serial-pci with one console port (the guest's hvc0) bound to a
 * chardev.  MULTIPORT is offered with max_nr_ports 1, for its control
 * handshake: host input waits until the guest says it opened the port
 * (Linux discards data reaching a port it has not opened yet, which lost
 * input sent before the guest was up).  A driver without MULTIPORT gets
 * the plain single-port device.  Guest output (transmitq) goes to the
 * chardev as it arrives; host input is buffered here (4 KiB; the chardev
 * is pushed back beyond) and copied into the buffers the guest posts on
 * receiveq.  All under the machine lock (vCPU or main loop).
 *
 * Spelling, as QEMU: -device virtio-serial-pci + -device
 * virtconsole,chardev=ID with a -chardev ...,id=ID (the one port; a second
 * virtconsole on the same virtio-serial-pci is refused).  The shorthand
 * -device virtio-serial-pci,chardev=ID|stdio|null|file:PATH binds it
 * directly (alias virtio-console-pci).  Without either the port is on
 * stdio unless the COM1 serial port already uses it (then null). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chardev/chardev.h"
#include "config/config.h"
#include "util/keyval.h"
#include "util/log.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_pci.h"

/* Port 0's receive and transmit queues, then (MULTIPORT) the control
 * queues; vmon has the one port. */
#define CON_RXQ 0
#define CON_TXQ 1
#define CON_CTRL_RXQ 2
#define CON_CTRL_TXQ 3
#define CON_NR_QUEUES 4
#define CON_F_MULTIPORT 1
#define CON_INBUF 4096
#define CON_CTRL_LEN 8            /* le32 id, le16 event, le16 value */
#define CON_CTRL_MAX 8            /* control messages waiting for buffers */

/* Control events (virtio 1.x section 5.3.6.2). */
enum {
    CTRL_DEVICE_READY = 0,
    CTRL_DEVICE_ADD = 1,
    CTRL_PORT_READY = 3,
    CTRL_CONSOLE_PORT = 4,
    CTRL_PORT_OPEN = 6,
};

struct virtio_console {
    struct virtio_dev vdev;
    struct chardev *chr;
    uint8_t in[CON_INBUF];
    size_t in_len;
    /* The guest opened port 0 (MULTIPORT's PORT_OPEN).  Host input waits
     * for it: Linux drops data that reaches a port it has not opened yet. */
    bool port_open;
    uint8_t ctrl_out[CON_CTRL_MAX][CON_CTRL_LEN];
    unsigned ctrl_len;
};

static bool multiport(const struct virtio_console *c)
{
    return virtio_has_feature(&c->vdev, CON_F_MULTIPORT);
}

/* Without MULTIPORT the one port is open as soon as the driver is. */
static bool input_wanted(const struct virtio_console *c)
{
    return virtio_driver_ok(&c->vdev) && (c->port_open || !multiport(c));
}

/* Move buffered host input into the guest's receive buffers. */
static void con_flush_input(struct virtio_console *c)
{
    struct virtio_dev *v = &c->vdev;
    struct vq_elem e = { 0 };
    bool pushed = false;

    while (c->in_len && input_wanted(c) && virtio_pop(v, CON_RXQ, &e) > 0) {
        size_t n = iov_from_buf(e.in, e.n_in, 0, c->in, c->in_len);

        memmove(c->in, c->in + n, c->in_len - n);
        c->in_len -= n;
        vq_push(&v->vq[CON_RXQ], e.head, (uint32_t)n);
        pushed = true;
    }
    vq_elem_free(&e);
    if (pushed)
        virtio_notify(v, CON_RXQ);
    /* No chardev_accept_input() here: this runs inside the chardev's own
     * delivery (con_receive), and asking it for more input re-entered it
     * and delivered the same bytes again.  New guest buffers (the RXQ
     * kick) and the port opening are what ask for more. */
}

static size_t con_can_receive(void *opaque)
{
    struct virtio_console *c = opaque;

    return input_wanted(c) ? CON_INBUF - c->in_len : 0;
}

static void con_receive(void *opaque, const uint8_t *buf, size_t len)
{
    struct virtio_console *c = opaque;

    len = MIN(len, CON_INBUF - c->in_len);
    memcpy(c->in + c->in_len, buf, len);
    c->in_len += len;
    con_flush_input(c);
}

static const struct chardev_frontend con_frontend = {
    .can_receive = con_can_receive,
    .receive = con_receive,
};

/* Control messages to the guest go out as it posts control buffers. */
static void ctrl_flush(struct virtio_console *c)
{
    struct virtio_dev *v = &c->vdev;
    struct vq_elem e = { 0 };
    bool pushed = false;

    while (c->ctrl_len && virtio_pop(v, CON_CTRL_RXQ, &e) > 0) {
        size_t n = iov_from_buf(e.in, e.n_in, 0, c->ctrl_out[0], CON_CTRL_LEN);

        memmove(c->ctrl_out[0], c->ctrl_out[1], (c->ctrl_len - 1) * CON_CTRL_LEN);
        c->ctrl_len--;
        vq_push(&v->vq[CON_CTRL_RXQ], e.head, (uint32_t)n);
        pushed = true;
    }
    vq_elem_free(&e);
    if (pushed)
        virtio_notify(v, CON_CTRL_RXQ);
}

static void ctrl_send(struct virtio_console *c, uint16_t event, uint16_t value)
{
    uint8_t *m;

    if (c->ctrl_len == CON_CTRL_MAX) {
        LOG(LOG_GUEST_ERRORS, "virtio-serial: control queue full, event %u dropped\n", event);
        return;
    }
    m = c->ctrl_out[c->ctrl_len++];
    memset(m, 0, 4);                      /* port 0 */
    m[4] = (uint8_t)event;
    m[5] = (uint8_t)(event >> 8);
    m[6] = (uint8_t)value;
    m[7] = (uint8_t)(value >> 8);
    ctrl_flush(c);
}

/* The guest's side of the handshake: ready -> add port 0 -> port ready ->
 * it is a console, the host end is open -> the guest opens it. */
static void ctrl_receive(struct virtio_console *c, const uint8_t m[CON_CTRL_LEN])
{
    uint32_t id = (uint32_t)m[0] | (uint32_t)m[1] << 8 | (uint32_t)m[2] << 16 |
                  (uint32_t)m[3] << 24;
    uint16_t event = (uint16_t)(m[4] | m[5] << 8), value = (uint16_t)(m[6] | m[7] << 8);

    switch (event) {
    case CTRL_DEVICE_READY:
        if (value)
            ctrl_send(c, CTRL_DEVICE_ADD, 1);
        return;
    case CTRL_PORT_READY:
        if (id != 0 || !value)
            break;
        ctrl_send(c, CTRL_CONSOLE_PORT, 1);
        ctrl_send(c, CTRL_PORT_OPEN, 1);
        return;
    case CTRL_PORT_OPEN:
        if (id != 0)
            break;
        c->port_open = value != 0;
        if (c->port_open) {
            con_flush_input(c);
            if (c->chr)
                chardev_accept_input(c->chr);
        }
        return;
    }
    LOG(LOG_GUEST_ERRORS, "virtio-serial: control event %u for port %u value %u ignored\n",
        event, id, value);
}

static void con_queue_notify(struct virtio_dev *v, unsigned q)
{
    struct virtio_console *c = v->opaque;
    struct vq_elem e = { 0 };
    bool pushed = false;

    /* The control queues exist only with MULTIPORT (virtio 1.x 5.3.2): a
     * driver without it gets no control messages and sends none. */
    if ((q == CON_CTRL_RXQ || q == CON_CTRL_TXQ) && !multiport(c)) {
        LOG(LOG_GUEST_ERRORS, "virtio-serial: control queue %u used without MULTIPORT\n", q);
        return;
    }
    if (q == CON_RXQ) {
        con_flush_input(c);
        if (c->chr)
            chardev_accept_input(c->chr);
        return;
    }
    if (q == CON_CTRL_RXQ) {
        ctrl_flush(c);
        return;
    }
    if (q == CON_CTRL_TXQ) {
        while (virtio_pop(v, CON_CTRL_TXQ, &e) > 0) {
            uint8_t m[CON_CTRL_LEN];

            if (iov_to_buf(e.out, e.n_out, 0, m, sizeof(m)) == sizeof(m))
                ctrl_receive(c, m);
            else
                LOG(LOG_GUEST_ERRORS, "virtio-serial: short control message\n");
            vq_push(&v->vq[CON_CTRL_TXQ], e.head, 0);
            pushed = true;
        }
        vq_elem_free(&e);
        if (pushed)
            virtio_notify(v, CON_CTRL_TXQ);
        return;
    }
    while (virtio_pop(v, CON_TXQ, &e) > 0) {
        for (unsigned i = 0; i < e.n_out; i++)
            if (c->chr)
                chardev_write(c->chr, e.out[i].iov_base, e.out[i].iov_len);
        vq_push(&v->vq[CON_TXQ], e.head, 0);
        pushed = true;
    }
    vq_elem_free(&e);
    if (pushed)
        virtio_notify(v, CON_TXQ);
}

static void con_reset(struct virtio_dev *v)
{
    struct virtio_console *c = v->opaque;

    c->in_len = 0;
    c->port_open = false;
    c->ctrl_len = 0;
}

static void con_destroy(struct virtio_dev *v)
{
    struct virtio_console *c = v->opaque;

    chardev_free(c->chr);
    c->chr = NULL;
}

static const struct virtio_device_ops con_ops = {
    .name = "virtio-serial-pci",
    .device_id = VIRTIO_ID_CONSOLE,
    .class_code = 0x078000,
    .queue_notify = con_queue_notify,
    .reset = con_reset,
    .destroy = con_destroy,
};

/* ---- snapshot state ---- */

/* Host input not yet taken by the guest travels with the VM. */
struct virtio_console_state {
    struct virtio_pci_state t;
    uint32_t in_len;
    uint8_t in[CON_INBUF];
    bool port_open;
    uint32_t ctrl_len;
    uint8_t ctrl_out[CON_CTRL_MAX][CON_CTRL_LEN];
};

static const struct vmstate_field con_fields[] = {
    VIRTIO_PCI_STATE_FIELDS(struct virtio_console_state),
    VMS_U32_FIELD(struct virtio_console_state, in_len),
    VMS_U8_FIELD(struct virtio_console_state, in),
    VMS_BOOL_FIELD(struct virtio_console_state, port_open),
    VMS_U32_FIELD(struct virtio_console_state, ctrl_len),
    VMS_U8_FIELD(struct virtio_console_state, ctrl_out),
    VMS_END,
};

static void con_state_get(const void *dev, void *state)
{
    const struct virtio_dev *v = dev;
    const struct virtio_console *c = v->opaque;
    struct virtio_console_state *s = state;

    virtio_pci_state_get(v, &s->t);
    s->in_len = (uint32_t)c->in_len;
    memcpy(s->in, c->in, c->in_len);
    s->port_open = c->port_open;
    s->ctrl_len = c->ctrl_len;
    memcpy(s->ctrl_out, c->ctrl_out, sizeof(s->ctrl_out));
}

static int con_state_check(const void *dev, const void *state, const char *what)
{
    const struct virtio_console_state *s = state;

    if (s->in_len > CON_INBUF) {
        error_report("%s: field in_len: %u bytes of buffered input, at most %d", what,
                     s->in_len, CON_INBUF);
        return -EINVAL;
    }
    if (s->ctrl_len > CON_CTRL_MAX) {
        error_report("%s: field ctrl_len: %u control messages queued, at most %d", what,
                     s->ctrl_len, CON_CTRL_MAX);
        return -EINVAL;
    }
    return virtio_pci_state_check(dev, &s->t, what);
}

static void con_state_set(void *dev, const void *state)
{
    struct virtio_dev *v = dev;
    struct virtio_console *c = v->opaque;
    const struct virtio_console_state *s = state;

    virtio_pci_state_set(v, &s->t);
    c->in_len = s->in_len;
    memcpy(c->in, s->in, s->in_len);
    c->port_open = s->port_open;
    c->ctrl_len = s->ctrl_len;
    memcpy(c->ctrl_out, s->ctrl_out, sizeof(c->ctrl_out));
}

const struct vmstate_desc virtio_console_vmstate = {
    .name = "virtio-serial-pci", .version = 1, .fields = con_fields,
    .state_size = sizeof(struct virtio_console_state),
    .get = con_state_get, .check = con_state_check, .set = con_state_set,
    .post_commit = virtio_pci_kick_pending,
};

/* Is a virtconsole going to bind a port (it comes later on the command
 * line, or anywhere: either way this device must not take stdio)? */
static bool virtconsole_configured(const struct machine *m)
{
    for (int i = 0; m->cfg && i < m->cfg->nr_devices; i++) {
        const char *d = m->cfg->devices[i];

        if (!strncmp(d, "virtconsole", 11) && (d[11] == ',' || d[11] == 0))
            return true;
    }
    return false;
}

/* chardev=: a -chardev id, or the shorthands stdio, null, file:PATH. */
static struct chardev *open_backend(struct machine *m, const char *backend, bool serial_on_stdio,
                                    const char *ctx)
{
    const struct vm_config *cfg = m->cfg;
    struct chardev *chr;

    if (cfg && chardev_config_has(cfg->chardevs, cfg->nr_chardevs, backend))
        return chardev_config_open(cfg->chardevs, cfg->nr_chardevs, backend, ctx);
    if (!strcmp(backend, "stdio")) {
        if (serial_on_stdio) {
            error_report("%s: chardev=stdio: stdio is already the serial port's "
                         "(use -serial none or file:PATH)", ctx);
            return NULL;
        }
        chr = chardev_stdio_new();
    } else if (!strcmp(backend, "null")) {
        chr = chardev_null_new();
    } else if (!strncmp(backend, "file:", 5)) {
        chr = chardev_file_new(backend + 5);
    } else {
        error_report("%s: property 'chardev': no -chardev with id=%s (or stdio, null, "
                     "file:PATH)", ctx, backend);
        return NULL;
    }
    if (!chr)
        error_report("%s: cannot open chardev %s", ctx, backend);
    return chr;
}

static void con_bind(struct virtio_console *c, struct chardev *chr)
{
    c->chr = chr;
    chardev_set_frontend(chr, &con_frontend, c);
}

int virtio_console_create(struct machine *m, struct keyval *opts)
{
    struct virtio_console *c;
    const char *backend = keyval_get(opts, "chardev");
    bool serial_on_stdio = m->cfg && m->cfg->serial != SERIAL_NONE &&
                           m->cfg->serial != SERIAL_FILE;
    bool port_later = !backend && virtconsole_configured(m);
    struct chardev *chr = NULL;
    int ret;

    if (!backend && !port_later)
        backend = serial_on_stdio ? "null" : "stdio";
    if (backend) {
        chr = open_backend(m, backend, serial_on_stdio, opts->context);
        if (!chr)
            return -EINVAL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        chardev_free(chr);
        return -ENOMEM;
    }
    ret = virtio_pci_create(m, &c->vdev, &con_ops, c, 1ULL << CON_F_MULTIPORT, CON_NR_QUEUES,
                            128, 12, opts);
    if (ret < 0)
        return ret;   /* the bus may hold c: keep it */
    c->vdev.config[4] = 1;   /* max_nr_ports */
    if (chr)
        con_bind(c, chr);
    return 0;
}

/* -device virtconsole,chardev=ID: the port of the last virtio-serial-pci. */
int virtconsole_create(struct machine *m, struct keyval *opts)
{
    const char *id = keyval_get(opts, "chardev");
    struct virtio_console *c = NULL;
    struct chardev *chr;

    if (!id || !*id) {
        error_report("%s: property 'chardev' is required", opts->context);
        return -EINVAL;
    }
    for (int i = m->nr_devices - 1; i >= 0 && !c; i--)
        if (!strcmp(m->devices[i].name, con_ops.name))
            c = ((struct virtio_dev *)m->devices[i].opaque)->opaque;
    if (!c) {
        error_report("%s: no virtio-serial-pci before it (add -device virtio-serial-pci)",
                     opts->context);
        return -ENODEV;
    }
    if (c->chr) {
        error_report("%s: the virtio-serial-pci's one port is taken (one virtconsole per "
                     "virtio-serial-pci, none with its chardev=)", opts->context);
        return -EBUSY;
    }
    if (!m->cfg || !chardev_config_has(m->cfg->chardevs, m->cfg->nr_chardevs, id)) {
        error_report("%s: property 'chardev': no -chardev with id=%s", opts->context, id);
        return -ENOENT;
    }
    chr = chardev_config_open(m->cfg->chardevs, m->cfg->nr_chardevs, id, opts->context);
    if (!chr)
        return -EIO;
    con_bind(c, chr);
    return 0;
}
