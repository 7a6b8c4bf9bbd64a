/* Little-endian field stores and byte checksums shared by the firmware
 * tables (ACPI, MP). */
#ifndef VMON_HW_FW_BYTES_H
#define VMON_HW_FW_BYTES_H

#include "util/types.h"

static inline void fw_put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The byte that makes the n bytes at p sum to zero (ACPI and MP tables). */
static inline uint8_t fw_checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;

    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)-sum;
}

#endif
