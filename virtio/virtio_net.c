/* virtio-net-pci: one rx/tx queue pair on a -netdev backend.  Offers MAC
 * and STATUS (link up) only: no checksum offload, no GSO, no mergeable
 * buffers, so every frame is one plain Ethernet frame behind the 12-byte
 * virtio 1.x net header.  A frame for the guest when it has posted no
 * receive buffer is dropped (TCP recovers), as on a real NIC. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "util/keyval.h"
#include "util/log.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_pci.h"

#define NET_F_MAC 5
#define NET_F_STATUS 16
#define NET_S_LINK_UP 1
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_HDR_LEN 12
#define NET_MAX_FRAME (65536 + 14)

struct virtio_net {
    struct virtio_dev vdev;
    struct net_backend *nb;
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

static void net_queue_notify(struct virtio_dev *v, unsigned q)
{
    struct virtio_net *n = v->opaque;
    struct vq_elem e = { 0 };
    bool pushed = false;

    if (q != NET_TXQ)
        return;   /* new rx buffers: used when the next frame arrives */
    while (virtio_pop(v, NET_TXQ, &e) > 0) {
        size_t len = 0;

        if (e.out_len > NET_HDR_LEN && e.out_len - NET_HDR_LEN <= sizeof(n->frame))
            len = iov_to_buf(e.out, e.n_out, NET_HDR_LEN, n->frame, sizeof(n->frame));
        else
            LOG(LOG_GUEST_ERRORS, "virtio-net: bad tx length %llu\n",
                (unsigned long long)e.out_len);
        if (len)
            n->nb->send(n->nb, n->frame, len);
        vq_push(&v->vq[NET_TXQ], e.head, 0);
        pushed = true;
    }
    vq_elem_free(&e);
    if (pushed)
        virtio_notify(v, NET_TXQ);
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
    ret = virtio_pci_create(m, &n->vdev, &net_ops, n,
                            (1ULL << NET_F_MAC) | (1ULL << NET_F_STATUS), 2, 256, 10, opts);
    if (ret < 0)
        return ret;
    memcpy(n->vdev.config, mac, 6);
    memcpy(n->vdev.config + 6, &status, 2);
    net_backend_attach(nb, &net_fe, n);
    nr_nics++;
    return 0;
}
