/* Dirty page tracking (see dirty_log.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "machine/dirty_log.h"

struct dirty_bitmap *dirty_bitmap_new(uint64_t npages)
{
    struct dirty_bitmap *b = calloc(1, sizeof(*b));

    if (!b)
        return NULL;
    b->npages = npages;
    b->words = calloc(dirty_bitmap_words(npages) ? dirty_bitmap_words(npages) : 1,
                      sizeof(*b->words));
    if (!b->words) {
        free(b);
        return NULL;
    }
    return b;
}

void dirty_bitmap_free(struct dirty_bitmap *b)
{
    if (!b)
        return;
    free((void *)b->words);
    free(b);
}

static void set_bits(_Atomic uint64_t *w, uint64_t mask)
{
    /* Read first: most marks hit a page that is already dirty. */
    if ((atomic_load_explicit(w, memory_order_relaxed) & mask) != mask)
        atomic_fetch_or_explicit(w, mask, memory_order_relaxed);
}

void dirty_bitmap_mark(struct dirty_bitmap *b, uint64_t first, uint64_t n)
{
    uint64_t end;

    if (first >= b->npages || !n)
        return;
    end = n > b->npages - first ? b->npages : first + n;
    while (first < end) {
        unsigned bit = (unsigned)(first % 64);
        uint64_t span = MIN(end - first, (uint64_t)(64 - bit));
        uint64_t mask = span == 64 ? ~0ULL : ((1ULL << span) - 1) << bit;

        set_bits(&b->words[first / 64], mask);
        first += span;
    }
}

void dirty_bitmap_or(struct dirty_bitmap *b, uint64_t first, const uint64_t *src, uint64_t n)
{
    for (uint64_t i = 0; i < n; i += 64) {
        uint64_t w = src[i / 64];

        if (n - i < 64)
            w &= (1ULL << (n - i)) - 1;
        while (w) {
            unsigned k = (unsigned)__builtin_ctzll(w);

            dirty_bitmap_mark(b, first + i + k, 1);
            w &= w - 1;
        }
    }
}

uint64_t dirty_bitmap_take(struct dirty_bitmap *b, uint64_t *out)
{
    uint64_t added = 0;

    for (size_t i = 0; i < dirty_bitmap_words(b->npages); i++) {
        uint64_t w;

        if (!atomic_load_explicit(&b->words[i], memory_order_relaxed))
            continue;
        w = atomic_exchange_explicit(&b->words[i], 0, memory_order_acq_rel);
        added += (uint64_t)__builtin_popcountll(w & ~out[i]);
        out[i] |= w;
    }
    return added;
}

void dirty_bitmap_clear(struct dirty_bitmap *b)
{
    for (size_t i = 0; i < dirty_bitmap_words(b->npages); i++)
        atomic_store_explicit(&b->words[i], 0, memory_order_relaxed);
}

int dirty_log_start(struct machine *m)
{
    int ret;

    if (!m->dirty) {
        m->dirty = dirty_bitmap_new(m->ram_size >> DIRTY_PAGE_SHIFT);
        if (!m->dirty)
            return -ENOMEM;
    }
    dirty_bitmap_clear(m->dirty);
    atomic_store(&m->dirty->active, true);
    if (m->accel && m->accel->dirty_log_start) {
        ret = m->accel->dirty_log_start(m);
        if (ret < 0) {
            atomic_store(&m->dirty->active, false);
            return ret;
        }
    }
    return 0;
}

void dirty_log_stop(struct machine *m)
{
    if (!dirty_log_active(m))
        return;
    if (m->accel && m->accel->dirty_log_stop)
        m->accel->dirty_log_stop(m);
    atomic_store(&m->dirty->active, false);
}

int64_t dirty_log_sync(struct machine *m, uint64_t *out)
{
    if (!dirty_log_active(m))
        return -EINVAL;
    if (m->accel && m->accel->dirty_log_sync) {
        int ret = m->accel->dirty_log_sync(m);

        if (ret < 0)
            return ret;
    }
    return (int64_t)dirty_bitmap_take(m->dirty, out);
}

void dirty_log_free(struct machine *m)
{
    dirty_bitmap_free(m->dirty);
    m->dirty = NULL;
}

static bool ram_offset_of(struct machine *m, gpa_t gpa, uint64_t *off)
{
    const uint8_t *h = machine_gpa_to_hva(m, gpa, 1);

    if (!h)
        return false;
    *off = (uint64_t)(h - m->ram);
    return true;
}

bool dirty_log_mark_gpa(struct machine *m, gpa_t gpa, uint64_t len)
{
    uint64_t off;

    if (!dirty_log_active(m))
        return false;
    /* Ranges that cross the RAM blocks' edges are marked page by page. */
    for (gpa_t p = gpa & ~0xfffULL; p < gpa + len && p >= (gpa & ~0xfffULL); p += 0x1000)
        if (ram_offset_of(m, p, &off))
            dirty_bitmap_mark(m->dirty, off >> DIRTY_PAGE_SHIFT, 1);
    return true;
}

void dirty_log_mark_hva(struct machine *m, const void *p, uint64_t len)
{
    const uint8_t *h = p;

    if (!dirty_log_active(m) || h < m->ram || h >= m->ram + m->ram_size || !len)
        return;
    {
        uint64_t off = (uint64_t)(h - m->ram);
        uint64_t last = MIN(off + len - 1, m->ram_size - 1);

        dirty_bitmap_mark(m->dirty, off >> DIRTY_PAGE_SHIFT,
                          (last >> DIRTY_PAGE_SHIFT) - (off >> DIRTY_PAGE_SHIFT) + 1);
    }
}

/* Declared in machine/machine.h. */
void machine_notify_ram_write(struct machine *m, gpa_t gpa, uint64_t len)
{
    if (!m || !len)
        return;
    dirty_log_mark_gpa(m, gpa, len);
    if (m->accel && m->accel->ram_written)
        m->accel->ram_written(m, gpa, len);
}
