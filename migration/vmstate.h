/* Self-describing device state: a table of fields per struct (name, type,
 * offset, element count, version added), saved as named, typed records so
 * that a load can check every field against this vmon's table and say
 * precisely what does not match ("device serial: field ier: ...").
 *
 * Record encoding (all integers little-endian):
 *   u8 name_len, name, u8 type, u32 count, count * vmstate_type_size(type)
 * A section payload is u32 nr_records followed by the records.  Records
 * may come in any order; a field the table added after the stream's
 * section version may be absent (it keeps its current value). */
#ifndef VMON_MIGRATION_VMSTATE_H
#define VMON_MIGRATION_VMSTATE_H

#include <stddef.h>
#include "util/types.h"

enum vmstate_type {
    VMS_U8 = 1,
    VMS_U16,
    VMS_U32,
    VMS_U64,
    VMS_BOOL,       /* one byte, 0 or 1 */
    /* An absolute host CLOCK_MONOTONIC time (int64/uint64 ns): travels as
     * the distance to the saving side's "now", so timers keep their phase
     * in another process or after a host reboot.  0 stays 0 (unset). */
    VMS_CLOCK_NS,
};

struct vmstate_field {
    const char *name;
    uint8_t type;
    size_t offset;
    uint32_t count;          /* array elements (1 for a scalar) */
    uint32_t version_added;  /* section version that introduced the field */
};

struct vmstate_desc {
    const char *name;        /* section name ("serial", "cpu") */
    uint32_t version;        /* current section version */
    const struct vmstate_field *fields;  /* terminated by a NULL name */
    /* Optional: rebuild derived state after a successful load. */
    void (*post_load)(void *opaque);
    /* Optional, for a device whose state is not one flat struct (pointers,
     * state that must be validated against the device or re-applied
     * through it): the fields then describe a staging struct of state_size
     * bytes.  get() fills one from the device (to save, and as the defaults
     * a load starts from), check() validates a loaded one against this
     * device (-EINVAL after an error_report naming what and the field), and
     * set() applies a checked one.  Machine lock held, vCPUs parked. */
    size_t state_size;
    void (*get)(const void *dev, void *state);
    int (*check)(const void *dev, const void *state, const char *what);
    void (*set)(void *dev, const void *state);
    /* Optional: after the whole machine's state is in place (interrupt
     * controllers and vCPUs too), so it may interrupt the guest.  A
     * negative errno (after an error_report) fails the load. */
    int (*post_commit)(void *dev);
};

#define VMS_ELEMS(st, f, elem) (uint32_t)(sizeof(((st *)0)->f) / (elem))
#define VMS_FIELD_V(st, f, t, elem, ver) \
    { #f, t, offsetof(st, f), VMS_ELEMS(st, f, elem), ver }
#define VMS_U8_FIELD(st, f) VMS_FIELD_V(st, f, VMS_U8, 1, 0)
#define VMS_U16_FIELD(st, f) VMS_FIELD_V(st, f, VMS_U16, 2, 0)
#define VMS_U32_FIELD(st, f) VMS_FIELD_V(st, f, VMS_U32, 4, 0)
#define VMS_U64_FIELD(st, f) VMS_FIELD_V(st, f, VMS_U64, 8, 0)
#define VMS_BOOL_FIELD(st, f) VMS_FIELD_V(st, f, VMS_BOOL, 1, 0)
#define VMS_CLOCK_FIELD(st, f) VMS_FIELD_V(st, f, VMS_CLOCK_NS, 8, 0)
/* An int field (4 bytes) carried as u32. */
#define VMS_INT_FIELD(st, f) VMS_FIELD_V(st, f, VMS_U32, 4, 0)
#define VMS_END { NULL, 0, 0, 0, 0 }

/* A growable byte buffer for building sections. */
struct vmbuf {
    uint8_t *data;
    size_t len, cap;
    bool failed;   /* an allocation failed: the content is incomplete */
};

void vmbuf_init(struct vmbuf *b);
void vmbuf_free(struct vmbuf *b);
void vmbuf_put(struct vmbuf *b, const void *p, size_t n);
void vmbuf_put_u8(struct vmbuf *b, uint8_t v);
void vmbuf_put_u32(struct vmbuf *b, uint32_t v);
void vmbuf_put_u64(struct vmbuf *b, uint64_t v);

/* Bounds-checked reading of a received buffer. */
struct vmreader {
    const uint8_t *p;
    size_t len, off;
};

int vmreader_get(struct vmreader *r, void *dst, size_t n);
int vmreader_u8(struct vmreader *r, uint8_t *v);
int vmreader_u32(struct vmreader *r, uint32_t *v);
int vmreader_u64(struct vmreader *r, uint64_t *v);

size_t vmstate_type_size(uint8_t type);
const char *vmstate_type_name(uint8_t type);
/* Check a table (names unique, counts nonzero, known types); -EINVAL with
 * an error_report naming the field. */
int vmstate_check_desc(const struct vmstate_desc *d);

/* Append every field of the struct at opaque; now is the clock for
 * VMS_CLOCK_NS fields. */
void vmstate_save(struct vmbuf *b, const struct vmstate_desc *d, const void *opaque,
                  uint64_t now);
/* Parse payload against d.  With apply false, only checks (nothing is
 * written); with apply true, writes the fields into opaque (call after a
 * successful check).  what names the section in errors ("device serial0").
 * Errors: -EINVAL (mismatch, malformed) after an error_report. */
int vmstate_load(const uint8_t *payload, size_t len, uint32_t stream_version,
                 const struct vmstate_desc *d, void *opaque, uint64_t now, bool apply,
                 const char *what);

/* A device's section: vmstate_save() of the device itself, or of a staging
 * copy filled by d->get(). */
void vmstate_save_device(struct vmbuf *b, const struct vmstate_desc *d, const void *dev,
                         uint64_t now);
/* Check a device's section without changing the device.  A flat table
 * checks the records only (*staged = NULL); a staged one also loads the
 * staging copy and runs d->check(), and returns it in *staged (free() it)
 * for vmstate_commit_device().  0 or -EINVAL after an error_report. */
int vmstate_check_device(const uint8_t *payload, size_t len, uint32_t stream_version,
                         const struct vmstate_desc *d, const void *dev, uint64_t now,
                         const char *what, void **staged);
/* Apply a section checked by vmstate_check_device(): staged through
 * d->set(), else the records into dev (and post_load). */
int vmstate_commit_device(const uint8_t *payload, size_t len, uint32_t stream_version,
                          const struct vmstate_desc *d, void *dev, uint64_t now,
                          const char *what, const void *staged);

#endif
