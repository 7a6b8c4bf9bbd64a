/* What the monitor may ask about the virtio-blk drives (query-block). */
#ifndef VMON_VIRTIO_VIRTIO_BLK_H
#define VMON_VIRTIO_VIRTIO_BLK_H

#include "util/types.h"

struct virtio_blk_info {
    const char *id;
    const char *file;
    const char *format;
    uint64_t size;
    bool readonly;
};

/* Call fn for every virtio-blk drive; returns how many there are. */
int virtio_blk_foreach(void (*fn)(void *opaque, const struct virtio_blk_info *info),
                       void *opaque);


/* Live migration hands the images over (QEMU's inactivation): the source
 * drops their locks in its last stage and takes them back if it runs on
 * (a failed migration, or cont after one); a destination opens them
 * unlocked and locks them when the state has arrived.  0 or -EAGAIN (held
 * elsewhere) after an error_report. */
int virtio_blk_lock_images(bool locked);
/* Some image is not locked by this vmon. */
bool virtio_blk_images_unlocked(void);

#endif
