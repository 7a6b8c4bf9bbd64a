/* Dirty page tracking for live migration.
 *
 * One bit per 4 KiB page of guest RAM, indexed by the page's offset in the
 * RAM memfd (the order the migration stream uses), set by whoever writes
 * guest RAM while migration tracks it: the accelerator for guest writes
 * (kvm: KVM_GET_DIRTY_LOG folded in at sync; emu: its soft-MMU slow path),
 * devices through machine_notify_ram_write().  The migration thread takes
 * the set with dirty_log_sync(), which clears it: a page written after
 * that is marked again. */
#ifndef VMON_MACHINE_DIRTY_LOG_H
#define VMON_MACHINE_DIRTY_LOG_H

#include <stdatomic.h>
#include "machine/machine.h"

#define DIRTY_PAGE_SHIFT 12

/* The bitmap alone (unit-tested); words are set and taken atomically, so
 * markers on any thread race safely with the taker. */
struct dirty_bitmap {
    _Atomic uint64_t *words;
    uint64_t npages;
    atomic_bool active;
};

struct dirty_bitmap *dirty_bitmap_new(uint64_t npages);
void dirty_bitmap_free(struct dirty_bitmap *b);
/* Mark pages [first, first + n), clipped to the bitmap. */
void dirty_bitmap_mark(struct dirty_bitmap *b, uint64_t first, uint64_t n);
/* OR n bits of src (bit 0 = page first) into the bitmap. */
void dirty_bitmap_or(struct dirty_bitmap *b, uint64_t first, const uint64_t *src, uint64_t n);
/* Move every set bit into out (npages bits, OR-ed in) and clear it; returns
 * how many pages were newly set in out. */
uint64_t dirty_bitmap_take(struct dirty_bitmap *b, uint64_t *out);
void dirty_bitmap_clear(struct dirty_bitmap *b);
/* Words needed for npages bits. */
static inline size_t dirty_bitmap_words(uint64_t npages)
{
    return (size_t)((npages + 63) / 64);
}

/* The machine's log.  start/stop with every vCPU parked (the emu TLBs are
 * flushed when the vCPUs leave the park, so no stale writable entry
 * survives); 0 or -errno. */
int dirty_log_start(struct machine *m);
void dirty_log_stop(struct machine *m);
/* Pages written since the last sync (or the start) OR-ed into out, which
 * holds one bit per page of RAM; returns the number of new bits or -errno. */
int64_t dirty_log_sync(struct machine *m, uint64_t *out);
/* Free the bitmap at machine teardown. */
void dirty_log_free(struct machine *m);

static inline bool dirty_log_active(const struct machine *m)
{
    return m->dirty && atomic_load_explicit(&m->dirty->active, memory_order_relaxed);
}

/* Mark [gpa, gpa + len) (the part that is RAM).  Returns whether the log is
 * active (callers that can skip further marking cache that). */
bool dirty_log_mark_gpa(struct machine *m, gpa_t gpa, uint64_t len);
/* Mark the RAM under host pointer p (e.g. a page-table entry the emulator
 * updated through its mapping). */
void dirty_log_mark_hva(struct machine *m, const void *p, uint64_t len);

#endif
