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

/* The pieces migration_save is made of, for the live sender (snapshot.c).
 * A pace callback runs after every section; a negative return stops. */
typedef int (*mig_pace_fn)(void *opaque);
/* Refuse VMs with devices that have no state description. */
int mig_check_savable(struct machine *m, const char *what);
/* With the vCPUs parked: complete every device request in flight and, if
 * any did, read the vCPUs' state again (their interrupts).  0 or -errno. */
int mig_drain_parked(struct machine *m);
int mig_save_header(struct machine *m, struct mig_channel *ch);
/* Every RAM chunk ("ram"), zero pages and memfd holes left out. */
int mig_save_ram(struct machine *m, struct mig_channel *ch, mig_pace_fn pace, void *opaque);
/* The pages set in dirty (one bit per page) as "ram-dirty" sections; the
 * bits are cleared as the pages go. */
int mig_save_dirty(struct machine *m, struct mig_channel *ch, uint64_t *dirty, mig_pace_fn pace,
                   void *opaque);
/* vCPUs, interrupt controllers, devices (every vCPU parked). */
int mig_save_state(struct machine *m, struct mig_channel *ch);

#endif
