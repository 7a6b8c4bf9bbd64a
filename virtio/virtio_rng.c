/* virtio-rng-pci: one request queue, each writable buffer filled from the
 * host's getrandom(), without rate limit.  getrandom on a booted host does
 * not block, so this runs inline under the machine lock. */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "hw/pc_devices.h"
#include "util/keyval.h"
#include "util/log.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_pci.h"

struct virtio_rng {
    struct virtio_dev vdev;
};

static size_t fill_random(struct iovec *iov)
{
    size_t done = 0;

    while (done < iov->iov_len) {
        ssize_t n = getrandom((uint8_t *)iov->iov_base + done, iov->iov_len - done,
                              GRND_NONBLOCK);

        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
        done += (size_t)n;
    }
    return done;
}

static void rng_queue_notify(struct virtio_dev *v, unsigned q)
{
    struct vq_elem e = { 0 };
    bool pushed = false;

    while (virtio_pop(v, q, &e) > 0) {
        size_t len = 0;

        for (unsigned i = 0; i < e.n_in; i++)
            len += fill_random(&e.in[i]);
        vq_push(&v->vq[q], e.head, (uint32_t)len);
        pushed = true;
    }
    vq_elem_free(&e);
    if (pushed)
        virtio_notify(v, q);
}

static const struct virtio_device_ops rng_ops = {
    .name = "virtio-rng-pci",
    .device_id = VIRTIO_ID_RNG,
    .class_code = 0xff0000,
    .queue_notify = rng_queue_notify,
};

/* Nothing beyond the transport: requests are answered as they come. */
const struct vmstate_desc virtio_rng_vmstate = {
    .name = "virtio-rng-pci", .version = 1, .fields = virtio_plain_fields,
    .state_size = sizeof(struct virtio_plain_state),
    .get = virtio_plain_get, .check = virtio_plain_check, .set = virtio_plain_set,
    .post_commit = virtio_pci_kick_pending,
};

int virtio_rng_create(struct machine *m, struct keyval *opts)
{
    struct virtio_rng *r = calloc(1, sizeof(*r));

    if (!r)
        return -ENOMEM;
    /* Lives as long as the machine: the PCI bus and MMIO keep pointers. */
    return virtio_pci_create(m, &r->vdev, &rng_ops, r, 0, 1, 256, 0, opts);
}
