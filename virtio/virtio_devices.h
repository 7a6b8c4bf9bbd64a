/* -device constructors of the virtio-pci devices (rows in hw/pc.c's
 * pluggable_devices[]).  Each reads its options from opts and leaves
 * unknown keys for the caller to reject; 0 or negative errno after an
 * error_report(). */
#ifndef VMON_VIRTIO_VIRTIO_DEVICES_H
#define VMON_VIRTIO_VIRTIO_DEVICES_H

#include "machine/machine.h"

struct keyval;

int virtio_rng_create(struct machine *m, struct keyval *opts);
int virtio_blk_create(struct machine *m, struct keyval *opts);
int virtio_console_create(struct machine *m, struct keyval *opts);
/* The port of the last virtio-serial-pci, bound to -chardev chardev=ID. */
int virtconsole_create(struct machine *m, struct keyval *opts);
int virtio_net_create(struct machine *m, struct keyval *opts);

#endif
