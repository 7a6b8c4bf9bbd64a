/* The stream's framing: header and checksummed sections over a channel.
 *
 *   header:  "VMONSNAP" u32 format-version u32 digest-len digest u32 crc32
 *   section: u32 "SECT" u8 name-len name u32 instance u32 version
 *            u64 payload-len u32 crc32 payload
 * The CRC (zlib crc32) covers everything of the header or section before it
 * plus the payload, so a flipped bit anywhere is caught. */
#ifndef VMON_MIGRATION_STREAM_H
#define VMON_MIGRATION_STREAM_H

#include "migration/migration.h"

struct mig_section {
    char name[256];
    uint32_t instance;
    uint32_t version;
    uint8_t *payload;   /* malloc'ed, len bytes */
    size_t len;
};

int mig_write_all(struct mig_channel *ch, const void *p, size_t n);
/* -ENODATA if the stream ends first, -EIO on a read error. */
int mig_read_all(struct mig_channel *ch, void *p, size_t n);

int mig_write_header(struct mig_channel *ch, const struct vmbuf *digest);
/* Fills digest (vmbuf_free it).  -EINVAL after error_report. */
int mig_read_header(struct mig_channel *ch, struct vmbuf *digest);
int mig_write_section(struct mig_channel *ch, const char *name, uint32_t instance,
                      uint32_t version, const void *payload, size_t len);
/* Reads one section; free s->payload.  -EINVAL after error_report (the
 * error names the section and the channel). */
int mig_read_section(struct mig_channel *ch, struct mig_section *s);

#endif
