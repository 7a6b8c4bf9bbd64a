/* virtio-net-pci: one rx/tx queue pair on a -netdev backend.  Offers MAC,
 * STATUS (link up) and transmit offloads: CSUM (the device finishes a
 * partial checksum) always, HOST_TSO4 (one TCP/IPv4 segment of up to 64 KiB
 * per frame) when the backend takes frames above the MTU (slirp, whose TCP
 * consumes them whole).  Every guest TCP packet costs the guest its stack
 * and an interrupt; under emulation that, not the host, bounds throughput,
 * so fewer, bigger packets are the win.  No receive offloads and no
 * mergeable buffers: every frame for the guest is one plain Ethernet frame
 * behind the 12-byte virtio 1.x net header.  A frame for the guest when it
 * has posted no receive buffer is dropped (TCP recovers), as on a real NIC. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/checksum.h"
#include "net/net.h"
#include "util/keyval.h"
#include "util/log.h"
#include "util/main_loop.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_pci.h"

#define NET_F_CSUM 0
#define NET_F_MAC 5
#define NET_F_HOST_TSO4 11
#define NET_F_STATUS 16
#define NET_S_LINK_UP 1
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_HDR_LEN 12
#define NET_HDR_F_NEEDS_CSUM 1
#define NET_HDR_GSO_NONE 0
#define NET_HDR_GSO_TCPV4 1
#define NET_MAX_FRAME (65536 + 14)

struct virtio_net {
    struct virtio_dev vdev;
    struct net_backend *nb;
    bool tx_posted;   /* tx_flush() is queued on the main loop */
    uint8_t frame[NET_MAX_FRAME];
};

static void net_receive(void *opaque, const uint8_t *buf, size_t len)
{
    struct virtio_net *n = opaque;
    struct virtio_dev *v = &n->vdev;
    uint8_t hdr[NET_HDR_LEN] = { 0 };
    struct vq_elem e = { 0 };

    if (!virtio_driver_ok(v) || virtio_pop(v, NET_RXQ, &e) <= 0) {
        vq_elem_free(&e);
        return;   /* no buffer: drop */
    }
    hdr[10] = 1;   /* num_buffers */
    if (e.in_len < NET_HDR_LEN + len) {
        LOG(LOG_GUEST_ERRORS, "virtio-net: %zu-byte frame does not fit a %llu-byte buffer\n",
            len, (unsigned long long)e.in_len);
        vq_push(&v->vq[NET_RXQ], e.head, 0);
    } else {
        iov_from_buf(e.in, e.n_in, 0, hdr, sizeof(hdr));
        iov_from_buf(e.in, e.n_in, NET_HDR_LEN, buf, len);
        vq_push(&v->vq[NET_RXQ], e.head, (uint32_t)(NET_HDR_LEN + len));
    }
    vq_elem_free(&e);
    virtio_notify(v, NET_RXQ);
}

static const struct net_frontend net_fe = {
    .receive = net_receive,
};

/* The Ethernet frame of one tx chain into n->frame, its offloads done:
 * its length, or 0 to drop it (logged).  The header is the guest's. */
static size_t tx_frame(struct virtio_net *n, const struct vq_elem *e)
{
    struct virtio_dev *v = &n->vdev;
    uint8_t hdr[NET_HDR_LEN];
    size_t len;

    if (e->out_len <= NET_HDR_LEN || e->out_len - NET_HDR_LEN > sizeof(n->frame)) {
        LOG(LOG_GUEST_ERRORS, "virtio-net: bad tx length %llu\n",
            (unsigned long long)e->out_len);
        return 0;
    }
    iov_to_buf(e->out, e->n_out, 0, hdr, sizeof(hdr));
    len = iov_to_buf(e->out, e->n_out, NET_HDR_LEN, n->frame, sizeof(n->frame));
    /* A TSO frame needs no cutting: only a backend that takes it whole is
     * offered HOST_TSO4, and the guest's headers already describe it. */
    if (hdr[1] != NET_HDR_GSO_NONE &&
        !(hdr[1] == NET_HDR_GSO_TCPV4 && virtio_has_feature(v, NET_F_HOST_TSO4))) {
        LOG(LOG_GUEST_ERRORS, "virtio-net: tx gso_type %u not negotiated\n", hdr[1]);
        return 0;
    }
    if (hdr[0] & NET_HDR_F_NEEDS_CSUM) {
        size_t start = (size_t)hdr[6] | (size_t)hdr[7] << 8;
        size_t offset = (size_t)hdr[8] | (size_t)hdr[9] << 8;

        if (!virtio_has_feature(v, NET_F_CSUM) ||
            net_checksum_finish(n->frame, len, start, offset) < 0) {
            LOG(LOG_GUEST_ERRORS, "virtio-net: bad tx checksum request (start %zu, "
                "offset %zu, frame %zu bytes)\n", start, offset, len);
            return 0;
        }
    }
    return len;
}

/* Main loop, machine lock held: send every frame the ring holds. */
static void tx_flush(void *opaque)
{
    struct virtio_net *n = opaque;
    struct virtio_dev *v = &n->vdev;
    struct vq_elem e = { 0 };
    bool pushed = false;

    n->tx_posted = false;
    if (!virtio_driver_ok(v) || !v->vq[NET_TXQ].enabled)
        return;   /* reset since the kick */
    while (virtio_pop(v, NET_TXQ, &e) > 0) {
        size_t len = tx_frame(n, &e);

        if (len)
            n->nb->send(n->nb, n->frame, len);
        vq_push(&v->vq[NET_TXQ], e.head, 0);
        pushed = true;
    }
    vq_elem_free(&e);
    if (pushed)
        virtio_notify(v, NET_TXQ);
}

/* A tx kick is answered on the main loop, not inside the vCPU's doorbell
 * write (emu), as QEMU's tx bottom half does.  Sent inline, slirp's ACK was
 * in the guest's rx ring before the guest ran again, so Nagle never held
 * data back and every write() of the guest's application left as its own
 * small packet (busybox nc: 1 KiB each).  Answered later, the guest keeps
 * running, queues more, and sends it in fewer, bigger (TSO) frames; with
 * EVENT_IDX the kicks in between are suppressed by the ring itself. */
static void net_queue_notify(struct virtio_dev *v, unsigned q)
{
    struct virtio_net *n = v->opaque;

    if (q != NET_TXQ || n->tx_posted)
        return;   /* new rx buffers: used when the next frame arrives */
    n->tx_posted = true;
    main_loop_call(tx_flush, n);
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned b[6];
    char tail;

    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
               &tail) != 6)
        return -1;
    for (int i = 0; i < 6; i++) {
        if (b[i] > 0xff)
            return -1;
        mac[i] = (uint8_t)b[i];
    }
    return (mac[0] & 1) ? -1 : 0;   /* no multicast addresses */
}

static const struct virtio_device_ops net_ops = {
    .name = "virtio-net-pci",
    .device_id = VIRTIO_ID_NET,
    .class_code = 0x020000,
    .queue_notify = net_queue_notify,
};

/* The MAC and link status are device configuration (checked equal to this
 * VM's by the transport); frames are answered as they come. */
const struct vmstate_desc virtio_net_vmstate = {
    .name = "virtio-net-pci", .version = 1, .fields = virtio_plain_fields,
    .state_size = sizeof(struct virtio_plain_state),
    .get = virtio_plain_get, .check = virtio_plain_check, .set = virtio_plain_set,
    .post_commit = virtio_pci_kick_pending,
};

int virtio_net_create(struct machine *m, struct keyval *opts)
{
    static unsigned nr_nics;
    const char *netdev = keyval_get(opts, "netdev");
    const char *macs = keyval_get(opts, "mac");
    uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, (uint8_t)(0x56 + nr_nics) };
    uint16_t status = NET_S_LINK_UP;
    struct virtio_net *n;
    struct net_backend *nb;
    uint64_t features;
    int ret;

    if (!netdev) {
        error_report("%s: property 'netdev' is required", opts->context);
        return -EINVAL;
    }
    if (macs && parse_mac(macs, mac) < 0) {
        error_report("%s: property 'mac': expected a unicast XX:XX:XX:XX:XX:XX", opts->context);
        return -EINVAL;
    }
    nb = net_backend_get(m, netdev, opts->context);
    if (!nb)
        return -EINVAL;
    n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->nb = nb;
    features = (1ULL << NET_F_CSUM) | (1ULL << NET_F_MAC) | (1ULL << NET_F_STATUS);
    if (nb->takes_tso)
        features |= 1ULL << NET_F_HOST_TSO4;
    ret = virtio_pci_create(m, &n->vdev, &net_ops, n, features, 2, 256, 10, opts);
    if (ret < 0)
        return ret;
    memcpy(n->vdev.config, mac, 6);
    memcpy(n->vdev.config + 6, &status, 2);
    net_backend_attach(nb, &net_fe, n);
    nr_nics++;
    return 0;
}
