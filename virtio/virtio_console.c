/* virtio-serial-pci without MULTIPORT: one console port (the guest's hvc0)
 * bound to a chardev.  Guest output (transmitq) goes to the chardev as it
 * arrives; host input is buffered here and copied into the buffers the
 * guest posts on receiveq.  All under the machine lock (vCPU or main loop).
 *
 * Spelling: -device virtio-serial-pci[,chardev=stdio|null|file:PATH]
 * (also accepted as virtio-console-pci).  The default is stdio unless the
 * COM1 serial port already uses it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chardev/chardev.h"
#include "config/config.h"
#include "util/keyval.h"
#include "util/log.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_pci.h"

#define CON_RXQ 0
#define CON_TXQ 1
#define CON_INBUF 4096

struct virtio_console {
    struct virtio_dev vdev;
    struct chardev *chr;
    uint8_t in[CON_INBUF];
    size_t in_len;
};

/* Move buffered host input into the guest's receive buffers. */
static void con_flush_input(struct virtio_console *c)
{
    struct virtio_dev *v = &c->vdev;
    struct vq_elem e = { 0 };
    bool pushed = false;

    while (c->in_len && virtio_pop(v, CON_RXQ, &e) > 0) {
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
     * kick) are what ask for more. */
}

static size_t con_can_receive(void *opaque)
{
    struct virtio_console *c = opaque;

    return virtio_driver_ok(&c->vdev) ? CON_INBUF - c->in_len : 0;
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

static void con_queue_notify(struct virtio_dev *v, unsigned q)
{
    struct virtio_console *c = v->opaque;
    struct vq_elem e = { 0 };
    bool pushed = false;

    if (q == CON_RXQ) {
        con_flush_input(c);
        if (c->chr)
            chardev_accept_input(c->chr);
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
};

static const struct vmstate_field con_fields[] = {
    VIRTIO_PCI_STATE_FIELDS(struct virtio_console_state),
    VMS_U32_FIELD(struct virtio_console_state, in_len),
    VMS_U8_FIELD(struct virtio_console_state, in),
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
}

static int con_state_check(const void *dev, const void *state, const char *what)
{
    const struct virtio_console_state *s = state;

    if (s->in_len > CON_INBUF) {
        error_report("%s: field in_len: %u bytes of buffered input, at most %d", what,
                     s->in_len, CON_INBUF);
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
}

const struct vmstate_desc virtio_console_vmstate = {
    .name = "virtio-serial-pci", .version = 1, .fields = con_fields,
    .state_size = sizeof(struct virtio_console_state),
    .get = con_state_get, .check = con_state_check, .set = con_state_set,
};

int virtio_console_create(struct machine *m, struct keyval *opts)
{
    struct virtio_console *c;
    const char *backend = keyval_get(opts, "chardev");
    bool serial_on_stdio = m->cfg && m->cfg->serial != SERIAL_NONE &&
                           m->cfg->serial != SERIAL_FILE;
    int ret;

    if (!backend)
        backend = serial_on_stdio ? "null" : "stdio";
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    if (!strcmp(backend, "stdio")) {
        if (serial_on_stdio) {
            error_report("%s: chardev=stdio: stdio is already the serial port's "
                         "(use -serial none or file:PATH)", opts->context);
            free(c);
            return -EBUSY;
        }
        c->chr = chardev_stdio_new();
    } else if (!strcmp(backend, "null")) {
        c->chr = chardev_null_new();
    } else if (!strncmp(backend, "file:", 5)) {
        c->chr = chardev_file_new(backend + 5);
    } else {
        error_report("%s: property 'chardev': expected stdio, null or file:PATH", opts->context);
        free(c);
        return -EINVAL;
    }
    if (!c->chr) {
        error_report("%s: cannot open chardev %s", opts->context, backend);
        free(c);
        return -EIO;
    }
    ret = virtio_pci_create(m, &c->vdev, &con_ops, c, 0, 2, 128, 12, opts);
    if (ret < 0)
        return ret;   /* the bus may hold c: keep it */
    chardev_set_frontend(c->chr, &con_frontend, c);
    return 0;
}
