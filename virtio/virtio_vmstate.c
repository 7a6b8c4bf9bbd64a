/* Snapshot state of a virtio-pci function: PCI configuration space, MSI-X
 * table and pending bits, the transport's registers and every queue's
 * layout and indexes.  The ring contents are guest RAM and travel with it.
 *
 * A stream is hostile input: the check refuses anything this device could
 * not have reached (read-only configuration bytes, vectors it does not
 * have, features it does not offer, a queue that is enabled but whose
 * rings are not a valid layout in this VM's RAM, more chains in flight
 * than the queue holds), naming the field, before anything is applied. */
#include <errno.h>
#include <string.h>

#include "util/log.h"
#include "virtio/virtio_pci.h"

void virtio_pci_state_get(const struct virtio_dev *v, struct virtio_pci_state *s)
{
    memset(s, 0, sizeof(*s));
    memcpy(s->pci_config, v->pci.config, sizeof(s->pci_config));
    s->intx_level = v->pci.irq_level != 0;
    pci_msix_get(&v->pci, s->msix_table, s->msix_pba, VIRTIO_MSIX_MAX_VECTORS);
    s->nr_queues = v->nr_queues;
    s->host_features = v->host_features;
    s->guest_features = v->guest_features;
    s->dfselect = v->dfselect;
    s->gfselect = v->gfselect;
    s->status = v->status;
    s->isr = v->isr;
    s->config_generation = v->config_generation;
    s->msix_config = v->msix_config;
    s->queue_sel = v->queue_sel;
    memcpy(s->config, v->config, sizeof(s->config));
    for (unsigned i = 0; i < v->nr_queues; i++) {
        const struct virtqueue *q = &v->vq[i];

        s->q_size[i] = q->size;
        s->q_enabled[i] = q->enabled;
        s->q_desc[i] = q->desc_gpa;
        s->q_avail[i] = q->avail_gpa;
        s->q_used[i] = q->used_gpa;
        s->q_vector[i] = v->vq_vector[i];
        s->q_last_avail[i] = q->last_avail;
        s->q_used_idx[i] = q->used_idx;
        s->q_signalled_used[i] = q->signalled_used;
        s->q_signalled_valid[i] = q->signalled_valid;
        s->q_broken[i] = q->broken;
    }
}

static bool vector_ok(const struct virtio_dev *v, uint16_t vec)
{
    return vec == VIRTIO_NO_VECTOR || vec < v->nr_queues + 1;
}

/* Queues past the device's: every field zero. */
static bool queue_unused(const struct virtio_pci_state *s, unsigned i)
{
    return !s->q_size[i] && !s->q_enabled[i] && !s->q_desc[i] && !s->q_avail[i] &&
           !s->q_used[i] && !s->q_vector[i] && !s->q_last_avail[i] && !s->q_used_idx[i] &&
           !s->q_signalled_used[i] && !s->q_signalled_valid[i] && !s->q_broken[i];
}

static int check_queue(const struct virtio_dev *v, const struct virtio_pci_state *s,
                       unsigned i, const char *what)
{
    const char *dev = v->ops->name;
    const char *why;

    if (!vector_ok(v, s->q_vector[i])) {
        error_report("%s: field t.q_vector: queue %u uses MSI-X vector %u, %s has %u", what,
                     i, s->q_vector[i], dev, v->nr_queues + 1);
        return -EINVAL;
    }
    if (!s->q_enabled[i])
        return 0;   /* size and addresses are mere registers until enabled */
    if (vq_check_layout(v->m, s->q_size[i], v->vq[i].max_size, s->q_desc[i], s->q_avail[i],
                        s->q_used[i], &why) < 0) {
        error_report("%s: queue %u (size %u, rings 0x%llx/0x%llx/0x%llx): %s", what, i,
                     s->q_size[i], (unsigned long long)s->q_desc[i],
                     (unsigned long long)s->q_avail[i], (unsigned long long)s->q_used[i], why);
        return -EINVAL;
    }
    /* Chains taken but not given back cannot outnumber the ring. */
    if ((uint16_t)(s->q_last_avail[i] - s->q_used_idx[i]) > s->q_size[i]) {
        error_report("%s: field t.q_last_avail: queue %u has taken %u chains and given "
                     "back %u: more in flight than its size %u", what, i, s->q_last_avail[i],
                     s->q_used_idx[i], s->q_size[i]);
        return -EINVAL;
    }
    return 0;
}

int virtio_pci_state_check(const struct virtio_dev *v, const struct virtio_pci_state *s,
                           const char *what)
{
    unsigned off, vec;

    if (pci_config_check(&v->pci, s->pci_config, &off) < 0) {
        error_report("%s: field t.pci_config: byte 0x%02x is read-only (0x%02x in the "
                     "stream, 0x%02x here)", what, off, s->pci_config[off],
                     v->pci.config_init[off]);
        return -EINVAL;
    }
    if (pci_msix_check(&v->pci, s->msix_table, s->msix_pba, VIRTIO_MSIX_MAX_VECTORS,
                       &vec) < 0) {
        error_report("%s: field t.msix_table: vector %u is malformed or beyond the "
                     "function's %u", what, vec, pci_msix_nr_vectors(&v->pci));
        return -EINVAL;
    }
    if (s->nr_queues != v->nr_queues) {
        error_report("%s: field t.nr_queues: %u in the stream, %u here", what, s->nr_queues,
                     v->nr_queues);
        return -EINVAL;
    }
    if (s->host_features != v->host_features) {
        error_report("%s: field t.host_features: 0x%llx in the stream, 0x%llx here (start "
                     "vmon with the same -device and -drive options)", what,
                     (unsigned long long)s->host_features,
                     (unsigned long long)v->host_features);
        return -EINVAL;
    }
    if (s->guest_features & ~v->host_features) {
        error_report("%s: field t.guest_features: 0x%llx has bits the device does not "
                     "offer (0x%llx)", what, (unsigned long long)s->guest_features,
                     (unsigned long long)v->host_features);
        return -EINVAL;
    }
    if ((s->status & VIRTIO_STATUS_FEATURES_OK) &&
        !((s->guest_features >> VIRTIO_F_VERSION_1) & 1)) {
        error_report("%s: field t.status: FEATURES_OK without VERSION_1", what);
        return -EINVAL;
    }
    if (s->isr & ~3u) {
        error_report("%s: field t.isr: 0x%x has undefined bits", what, s->isr);
        return -EINVAL;
    }
    if (!vector_ok(v, s->msix_config)) {
        error_report("%s: field t.msix_config: MSI-X vector %u, the function has %u", what,
                     s->msix_config, v->nr_queues + 1);
        return -EINVAL;
    }
    for (unsigned i = 0; i < sizeof(s->config); i++)
        if (s->config[i] != (i < v->config_len ? v->config[i] : 0)) {
            error_report("%s: field t.config: byte %u is 0x%02x in the stream, 0x%02x here "
                         "(the device's configuration differs: start vmon with the same "
                         "-device and -drive options)", what, i, s->config[i],
                         i < v->config_len ? v->config[i] : 0);
            return -EINVAL;
        }
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        if (i >= v->nr_queues) {
            if (!queue_unused(s, i)) {
                error_report("%s: queue %u: %s has only %u queues", what, i, v->ops->name,
                             v->nr_queues);
                return -EINVAL;
            }
            continue;
        }
        if (check_queue(v, s, i, what) < 0)
            return -EINVAL;
    }
    return 0;
}

void virtio_pci_state_set(struct virtio_dev *v, const struct virtio_pci_state *s)
{
    bool features_ok = s->status & VIRTIO_STATUS_FEATURES_OK;

    pci_msix_restore(&v->pci, s->msix_table, s->msix_pba, VIRTIO_MSIX_MAX_VECTORS);
    pci_config_restore(&v->pci, s->pci_config, s->intx_level);
    v->guest_features = s->guest_features;
    v->dfselect = s->dfselect;
    v->gfselect = s->gfselect;
    v->status = s->status;
    v->isr = s->isr;
    v->config_generation = s->config_generation;
    v->msix_config = s->msix_config;
    v->queue_sel = s->queue_sel;
    for (unsigned i = 0; i < v->nr_queues; i++) {
        struct virtqueue *q = &v->vq[i];

        vq_reset(q);
        q->size = s->q_size[i];
        q->desc_gpa = s->q_desc[i];
        q->avail_gpa = s->q_avail[i];
        q->used_gpa = s->q_used[i];
        /* Ring format features follow the negotiation, as at FEATURES_OK. */
        q->event_idx = features_ok && virtio_has_feature(v, VIRTIO_F_EVENT_IDX);
        q->indirect = features_ok && virtio_has_feature(v, VIRTIO_F_INDIRECT_DESC);
        /* Checked: cannot fail. */
        if (s->q_enabled[i])
            vq_enable(q);
        q->last_avail = s->q_last_avail[i];
        q->used_idx = s->q_used_idx[i];
        q->signalled_used = s->q_signalled_used[i];
        q->signalled_valid = s->q_signalled_valid[i];
        q->broken = s->q_broken[i];
        if (q->broken)
            q->why = "broken before the snapshot";
        v->vq_vector[i] = s->q_vector[i];
    }
}

int virtio_pci_kick_pending(void *dev)
{
    struct virtio_dev *v = dev;

    if (!virtio_driver_ok(v) || !v->ops->queue_notify)
        return 0;
    for (unsigned q = 0; q < v->nr_queues; q++)
        if (vq_has_avail(&v->vq[q]))
            v->ops->queue_notify(v, q);
    return 0;
}

/* Devices whose whole state is the transport's (rng, net: the MAC and
 * link status are device configuration, checked equal above). */
const struct vmstate_field virtio_plain_fields[] = {
    VIRTIO_PCI_STATE_FIELDS(struct virtio_plain_state),
    VMS_END,
};

void virtio_plain_get(const void *dev, void *state)
{
    virtio_pci_state_get(dev, &((struct virtio_plain_state *)state)->t);
}

int virtio_plain_check(const void *dev, const void *state, const char *what)
{
    return virtio_pci_state_check(dev, &((const struct virtio_plain_state *)state)->t, what);
}

void virtio_plain_set(void *dev, const void *state)
{
    virtio_pci_state_set(dev, &((const struct virtio_plain_state *)state)->t);
}
