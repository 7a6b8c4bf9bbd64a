/* Internet checksum completion for checksum-offloading NICs. */
#include "net/checksum.h"

static uint32_t sum16(const uint8_t *p, size_t len)
{
    uint64_t sum = 0;

    for (; len > 1; p += 2, len -= 2)
        sum += (uint32_t)p[0] << 8 | p[1];
    if (len)
        sum += (uint32_t)p[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint32_t)sum;
}

int net_checksum_finish(uint8_t *frame, size_t len, size_t start, size_t offset)
{
    uint16_t csum;

    if (start >= len || offset > len - start || len - start - offset < 2)
        return -1;
    csum = (uint16_t)~sum16(frame + start, len - start);
    /* 0 and 0xffff are the same number in one's complement, but to UDP a
     * zero checksum means "none": write 0xffff, as Linux does. */
    if (!csum)
        csum = 0xffff;
    frame[start + offset] = (uint8_t)(csum >> 8);
    frame[start + offset + 1] = (uint8_t)csum;
    return 0;
}
