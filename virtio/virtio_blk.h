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


#endif
