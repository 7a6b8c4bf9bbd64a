/* The Internet checksum (RFC 1071), for the checksum a NIC fills in when
 * the guest hands it a frame with the checksum left partial. */
#ifndef VMON_NET_CHECKSUM_H
#define VMON_NET_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* Finish a partial checksum the way virtio-net's NEEDS_CSUM asks: sum
 * frame[start..len) (which includes the pseudo-header sum the guest left in
 * the checksum field) and store its complement, big-endian, at
 * frame[start + offset].  -1 if the field or the range lies outside the
 * frame, else 0. */
int net_checksum_finish(uint8_t *frame, size_t len, size_t start, size_t offset);

#endif
