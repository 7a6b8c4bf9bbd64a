/* Saving and loading a whole machine over a channel.
 *
 * Loading reads the entire stream before it changes anything but guest RAM:
 * vCPU and irqchip sections go to staging copies, device sections are
 * checked and kept, and only a complete, valid stream ending in "end" is
 * committed.  A VM whose load failed must not run (the caller exits or
 * keeps it waiting for another incoming stream). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "accel/kvm.h"
#include "hw/irqchip.h"
#include "hw/kvm_irqchip_state.h"
#include "migration/stream.h"
#include "util/log.h"
#include "util/main_loop.h"

static bool on_kvm(const struct machine *m)
{
    return m->accel && !strcmp(m->accel->name, "kvm");
}

static void build_digest(struct machine *m, struct vmbuf *b)
{
    uint32_t n = 0;
    bool sl;

    vmbuf_init(b);
    vmbuf_put_u64(b, m->ram_size);
    vmbuf_put_u32(b, (uint32_t)m->nr_vcpus);
    for (int i = 0; i < m->nr_devices; i++)
        if (migration_device_desc(m->devices[i].name, &sl))
            n++;
    vmbuf_put_u32(b, n);
    for (int i = 0; i < m->nr_devices; i++)
        if (migration_device_desc(m->devices[i].name, &sl)) {
            size_t l = strlen(m->devices[i].name);

            vmbuf_put_u8(b, (uint8_t)l);
            vmbuf_put(b, m->devices[i].name, l);
        }
}

/* Say what differs between the stream's configuration and this VM's. */
static int check_digest(struct machine *m, const struct vmbuf *theirs, const char *what)
{
    struct vmreader r = { .p = theirs->data, .len = theirs->len };
    struct vmbuf ours;
    uint64_t ram;
    uint32_t smp, ndev;
    int ret = -EINVAL;

    build_digest(m, &ours);
    if (vmreader_u64(&r, &ram) < 0 || vmreader_u32(&r, &smp) < 0 ||
        vmreader_u32(&r, &ndev) < 0) {
        error_report("%s: malformed configuration digest", what);
        goto out;
    }
    if (ram != m->ram_size) {
        error_report("%s: the stream's VM has %llu MiB of RAM, this one %llu MiB (-m)", what,
                     (unsigned long long)(ram >> 20), (unsigned long long)(m->ram_size >> 20));
        goto out;
    }
    if (smp != (uint32_t)m->nr_vcpus) {
        error_report("%s: the stream's VM has %u vCPUs, this one %d (-smp)", what, smp,
                     m->nr_vcpus);
        goto out;
    }
    if (theirs->len != ours.len || memcmp(theirs->data, ours.data, ours.len)) {
        char list[512] = "";
        size_t off = 0;

        for (uint32_t i = 0; i < ndev && i < 64; i++) {
            uint8_t l;
            char name[256];

            if (vmreader_u8(&r, &l) < 0 || vmreader_get(&r, name, l) < 0)
                break;
            name[l] = 0;
            off += (size_t)snprintf(list + off, off < sizeof(list) ? sizeof(list) - off : 0,
                                    "%s%s", i ? "," : "", name);
            if (off >= sizeof(list))
                break;
        }
        error_report("%s: device list differs: the stream has [%s]; start vmon with the "
                     "same -device options", what, list);
        goto out;
    }
    ret = 0;
out:
    vmbuf_free(&ours);
    return ret;
}

/* Under kvm, the in-kernel PIC/IOAPIC/PIT as vmon's models (c is a
 * standalone chip); under emu, the live chip. */
static struct irqchip *irqchip_for_save(struct machine *m, bool *temp)
{
    struct irqchip *c;
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;

    *temp = false;
    if (!on_kvm(m)) {
        c = irqchip_of(m);
        if (c)
            irqchip_save(c);
        return c;
    }
    c = irqchip_new(NULL, NULL);
    if (!c)
        return NULL;
    memset(chips, 0, sizeof(chips));
    if (kvm_devices_get(m, chips, &pit) < 0 || kvm_irqchip_from_kvm(c, chips, &pit) < 0) {
        irqchip_free(c);
        return NULL;
    }
    *temp = true;
    return c;
}

static int put_desc(struct mig_channel *ch, const char *name, uint32_t inst,
                    const struct vmstate_desc *d, const void *opaque, uint64_t now)
{
    struct vmbuf b;
    int ret;

    vmbuf_init(&b);
    vmstate_save_device(&b, d, opaque, now);
    ret = b.failed ? -ENOMEM : mig_write_section(ch, name, inst, d->version, b.data, b.len);
    vmbuf_free(&b);
    return ret;
}

static bool page_is_zero(const uint8_t *p)
{
    static const uint8_t zero[MIG_PAGE];

    return !memcmp(p, zero, MIG_PAGE);
}

/* Holes of the RAM memfd: pages the guest never touched.  Reading them
 * through the mapping would allocate them (shmem has no shared zero page),
 * so ask the file instead.  Offsets only grow within one pass. */
struct hole_cursor {
    int fd;
    /* [from, data) is a hole, [data, hole) data, as last asked at from:
     * the file is asked again only outside [from, hole). */
    uint64_t from, data, hole;
};

#define HOLE_CURSOR(fd_) { .fd = (fd_), .from = UINT64_MAX, .data = 0, .hole = 0 }

static bool page_in_hole(struct hole_cursor *hc, uint64_t off)
{
    if (hc->fd < 0)
        return false;
    if (off < hc->from || off >= hc->hole) {
        off_t d = lseek(hc->fd, (off_t)off, SEEK_DATA);

        hc->from = off;
        if (d < 0) {
            if (errno != ENXIO) {
                hc->fd = -1;   /* no SEEK_DATA here: look at every page */
                return false;
            }
            hc->data = hc->hole = UINT64_MAX;   /* only holes from here */
            return true;
        }
        off_t h = lseek(hc->fd, d, SEEK_HOLE);

        hc->data = (uint64_t)d;
        hc->hole = h < 0 ? UINT64_MAX : (uint64_t)h;
    }
    return off < hc->data;
}

/* One section per 1 MiB of RAM: u64 offset, u32 pages, bitmap, pages. */
int mig_save_ram(struct machine *m, struct mig_channel *ch, mig_pace_fn pace, void *opaque)
{
    struct vmbuf b;
    struct hole_cursor hc = HOLE_CURSOR(m->ram_fd);
    int ret = 0;

    vmbuf_init(&b);
    for (uint64_t off = 0; off < m->ram_size && ret == 0; off += MIG_RAM_CHUNK) {
        uint64_t left = m->ram_size - off;
        uint32_t pages = (uint32_t)((left < MIG_RAM_CHUNK ? left : MIG_RAM_CHUNK) / MIG_PAGE);
        uint8_t bitmap[MIG_RAM_CHUNK / MIG_PAGE / 8] = { 0 };

        b.len = 0;
        vmbuf_put_u64(&b, off);
        vmbuf_put_u32(&b, pages);
        for (uint32_t i = 0; i < pages; i++) {
            uint64_t po = off + (uint64_t)i * MIG_PAGE;

            if (!page_in_hole(&hc, po) && !page_is_zero(m->ram + po))
                bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
        }
        vmbuf_put(&b, bitmap, (pages + 7) / 8);
        for (uint32_t i = 0; i < pages; i++)
            if (bitmap[i / 8] & (1u << (i % 8)))
                vmbuf_put(&b, m->ram + off + (uint64_t)i * MIG_PAGE, MIG_PAGE);
        ret = b.failed ? -ENOMEM
                       : mig_write_section(ch, "ram", (uint32_t)(off / MIG_RAM_CHUNK), 1,
                                           b.data, b.len);
        if (ret == 0 && pace)
            ret = pace(opaque);
    }
    vmbuf_free(&b);
    return ret;
}

/* "ram-dirty": u64 offset, u32 pages, bitmap of the pages sent, the pages
 * (written ones, zero or not: the destination holds an older copy). */
int mig_save_dirty(struct machine *m, struct mig_channel *ch, uint64_t *dirty, mig_pace_fn pace,
                   void *opaque)
{
    const uint64_t per_chunk = MIG_RAM_CHUNK / MIG_PAGE, words = per_chunk / 64;
    uint64_t npages = m->ram_size / MIG_PAGE;
    struct vmbuf b;
    int ret = 0;

    vmbuf_init(&b);
    for (uint64_t chunk = 0; chunk * per_chunk < npages && ret == 0; chunk++) {
        uint64_t *w = dirty + chunk * words, first = chunk * per_chunk;
        uint32_t pages = (uint32_t)MIN(per_chunk, npages - first);
        uint8_t bitmap[MIG_RAM_CHUNK / MIG_PAGE / 8] = { 0 };
        bool any = false;

        for (uint64_t k = 0; k < words && first + k * 64 < npages; k++)
            any |= w[k] != 0;
        if (!any)
            continue;
        b.len = 0;
        vmbuf_put_u64(&b, first * MIG_PAGE);
        vmbuf_put_u32(&b, pages);
        for (uint32_t i = 0; i < pages; i++)
            if ((w[i / 64] >> (i % 64)) & 1)
                bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
        vmbuf_put(&b, bitmap, (pages + 7) / 8);
        for (uint32_t i = 0; i < pages; i++)
            if (bitmap[i / 8] & (1u << (i % 8)))
                vmbuf_put(&b, m->ram + (first + i) * MIG_PAGE, MIG_PAGE);
        for (uint64_t k = 0; k < words && first + k * 64 < npages; k++)
            w[k] = 0;
        ret = b.failed ? -ENOMEM
                       : mig_write_section(ch, "ram-dirty", (uint32_t)chunk, 1, b.data, b.len);
        if (ret == 0 && pace)
            ret = pace(opaque);
    }
    vmbuf_free(&b);
    return ret;
}

int mig_check_savable(struct machine *m, const char *what)
{
    bool sl;

    for (int i = 0; i < m->nr_devices; i++)
        if (!migration_device_desc(m->devices[i].name, &sl) && !sl) {
            error_report("%s: device %s has no state description: cannot save the VM",
                         what, m->devices[i].name);
            return -ENOTSUP;
        }
    return 0;
}

int mig_save_header(struct machine *m, struct mig_channel *ch)
{
    struct vmbuf digest;
    int ret;

    build_digest(m, &digest);
    ret = digest.failed ? -ENOMEM : mig_write_header(ch, &digest);
    vmbuf_free(&digest);
    return ret;
}

/* Whether the VM ran when the migration began, as QEMU's "globalstate"
 * section carries it: a snapshot of a paused VM resumes paused.  Streams
 * without the section come from a running VM. */
struct mig_runstate {
    bool running;
};

static const struct vmstate_field runstate_fields[] = {
    VMS_BOOL_FIELD(struct mig_runstate, running),
    VMS_END,
};

static const struct vmstate_desc runstate_vmstate = {
    .name = "runstate", .version = 1, .fields = runstate_fields,
};

/* Devices of one kind (two virtio-blk-pci) are told apart by their order
 * of creation: the section instance. */
static uint32_t device_instance(const struct machine *m, int i)
{
    uint32_t n = 0;

    for (int k = 0; k < i; k++)
        n += !strcmp(m->devices[k].name, m->devices[i].name);
    return n;
}

int mig_save_state(struct machine *m, struct mig_channel *ch)
{
    struct irqchip *c;
    bool temp, sl;
    uint64_t now = clock_ns();
    int ret = 0;

    struct mig_runstate rs = { .running = !ch->vm_paused };

    ret = put_desc(ch, "runstate", 0, &runstate_vmstate, &rs, now);
    if (ret < 0)
        return ret;
    c = irqchip_for_save(m, &temp);
    if (!c) {
        error_report("%s: cannot read the interrupt controllers' state", ch->what);
        return -EIO;
    }
    for (int i = 0; i < m->nr_vcpus && ret == 0; i++)
        ret = put_desc(ch, "cpu", (uint32_t)i, &cpu_vmstate, &m->vcpus[i]->state, now);
    for (int i = 0; i < 2 && ret == 0; i++)
        ret = put_desc(ch, "pic", (uint32_t)i, &pic_chip_vmstate, &c->pic.chip[i], now);
    if (ret == 0)
        ret = put_desc(ch, "ioapic", 0, &ioapic_vmstate, &c->ioapic, now);
    if (ret == 0)
        ret = put_desc(ch, "pit", 0, &pit_vmstate, &c->pit, now);
    if (temp)
        irqchip_free(c);
    for (int i = 0; i < m->nr_devices && ret == 0; i++) {
        const struct vmstate_desc *d = migration_device_desc(m->devices[i].name, &sl);

        if (d)
            ret = put_desc(ch, m->devices[i].name, device_instance(m, i), d,
                           m->devices[i].opaque, now);
    }
    return ret;
}

int mig_drain_parked(struct machine *m)
{
    if (!machine_drain_devices(m))
        return 0;
    /* The completions interrupted the guest after the park read the vCPUs
     * (under kvm the interrupt is in the in-kernel LAPIC only): read them
     * again so the saved state has those interrupts. */
    for (int i = 0; i < m->nr_vcpus; i++) {
        int ret = m->accel->get_state(m->vcpus[i], &m->vcpus[i]->state);

        if (ret < 0) {
            error_report("vCPU %d: cannot read its state after the device drain: %s", i,
                         strerror(-ret));
            return ret;
        }
    }
    return 0;
}

int migration_save(struct machine *m, struct mig_channel *ch)
{
    int ret = mig_check_savable(m, ch->what);

    if (ret < 0)
        return ret;
    /* Requests in flight (virtio-blk) complete before the state is taken. */
    ret = mig_drain_parked(m);
    if (ret < 0)
        return ret;
    ret = mig_save_header(m, ch);
    if (ret == 0)
        ret = mig_save_state(m, ch);
    if (ret == 0)
        ret = mig_save_ram(m, ch, NULL, NULL);
    if (ret == 0)
        ret = mig_write_section(ch, "end", 0, 1, "", 0);
    if (ret < 0)
        error_report("%s: cannot write the stream: %s", ch->what, strerror(-ret));
    return ret;
}

/* ---- loading ---- */

struct load_state {
    struct machine *m;
    const char *what;
    uint64_t now;
    struct cpu_state *cpus;
    bool *cpu_seen;
    struct irqchip *chip;   /* staging */
    bool pic_seen[2], ioapic_seen, pit_seen;
    struct mig_section *dev;   /* per machine device, payload kept */
    void **staged;          /* per machine device: checked staging state */
    uint32_t ram_chunks_seen;
    uint8_t *chunk_seen;    /* one byte per RAM chunk */
    uint32_t version;       /* of the stream */
    struct hole_cursor hc;
    struct mig_runstate runstate;
    bool runstate_seen;
};

static int load_ram(struct load_state *ls, const struct mig_section *s)
{
    struct machine *m = ls->m;
    struct vmreader r = { .p = s->payload, .len = s->len };
    uint64_t off;
    uint32_t pages;
    const uint8_t *bitmap;

    if (vmreader_u64(&r, &off) < 0 || vmreader_u32(&r, &pages) < 0)
        goto bad;
    if (off % MIG_RAM_CHUNK || off >= m->ram_size || off / MIG_RAM_CHUNK != s->instance ||
        pages != (uint32_t)(MIN(m->ram_size - off, (uint64_t)MIG_RAM_CHUNK) / MIG_PAGE))
        goto bad;
    if (ls->chunk_seen[s->instance]) {
        error_report("%s: section ram %u: repeated RAM chunk", ls->what, s->instance);
        return -EINVAL;
    }
    bitmap = r.p + r.off;
    if (vmreader_get(&r, NULL, (pages + 7) / 8) < 0)
        goto bad;
    {
        uint32_t present = 0;

        for (uint32_t i = 0; i < pages; i++)
            present += (bitmap[i / 8] >> (i % 8)) & 1;
        if ((uint64_t)present * MIG_PAGE != r.len - r.off)
            goto bad;
    }
    for (uint32_t i = 0; i < pages; i++) {
        uint8_t *dst = m->ram + off + (uint64_t)i * MIG_PAGE;

        if ((bitmap[i / 8] >> (i % 8)) & 1) {
            memcpy(dst, r.p + r.off, MIG_PAGE);
            r.off += MIG_PAGE;
        } else if (!page_in_hole(&ls->hc, off + (uint64_t)i * MIG_PAGE) &&
                   !page_is_zero(dst)) {
            memset(dst, 0, MIG_PAGE);
        }
    }
    ls->chunk_seen[s->instance] = 1;
    ls->ram_chunks_seen++;
    return 0;
bad:
    error_report("%s: section ram %u: malformed RAM chunk", ls->what, s->instance);
    return -EINVAL;
}

/* A live stream's later pass: the pages written since the chunk went. */
static int load_ram_dirty(struct load_state *ls, const struct mig_section *s)
{
    struct machine *m = ls->m;
    struct vmreader r = { .p = s->payload, .len = s->len };
    uint64_t off, chunks = (m->ram_size + MIG_RAM_CHUNK - 1) / MIG_RAM_CHUNK;
    uint32_t pages, present = 0;
    const uint8_t *bitmap;

    if (ls->version < MIG_FORMAT_VERSION_LIVE) {
        error_report("%s: section ram-dirty %u in a version %u stream (only live "
                     "migration streams have them)", ls->what, s->instance, ls->version);
        return -EINVAL;
    }
    if (ls->ram_chunks_seen != chunks) {
        error_report("%s: section ram-dirty %u before the first pass over RAM ended",
                     ls->what, s->instance);
        return -EINVAL;
    }
    if (vmreader_u64(&r, &off) < 0 || vmreader_u32(&r, &pages) < 0)
        goto bad;
    if (off % MIG_RAM_CHUNK || off >= m->ram_size || off / MIG_RAM_CHUNK != s->instance ||
        pages != (uint32_t)(MIN(m->ram_size - off, (uint64_t)MIG_RAM_CHUNK) / MIG_PAGE))
        goto bad;
    bitmap = r.p + r.off;
    if (vmreader_get(&r, NULL, (pages + 7) / 8) < 0)
        goto bad;
    for (uint32_t i = 0; i < pages; i++)
        present += (bitmap[i / 8] >> (i % 8)) & 1;
    if (!present || (uint64_t)present * MIG_PAGE != r.len - r.off)
        goto bad;
    for (uint32_t i = 0; i < pages; i++)
        if ((bitmap[i / 8] >> (i % 8)) & 1) {
            memcpy(m->ram + off + (uint64_t)i * MIG_PAGE, r.p + r.off, MIG_PAGE);
            r.off += MIG_PAGE;
        }
    return 0;
bad:
    error_report("%s: section ram-dirty %u: malformed RAM pages", ls->what, s->instance);
    return -EINVAL;
}

static int stage(struct load_state *ls, struct mig_section *s)
{
    struct machine *m = ls->m;
    char what[320];
    int ret;

    snprintf(what, sizeof(what), "%s: %s %u", ls->what, s->name, s->instance);
    if (!strcmp(s->name, "ram"))
        return load_ram(ls, s);
    if (!strcmp(s->name, "ram-dirty"))
        return load_ram_dirty(ls, s);
    if (!strcmp(s->name, "runstate")) {
        if (s->instance != 0 || ls->runstate_seen)
            goto unexpected;
        ret = vmstate_load(s->payload, s->len, s->version, &runstate_vmstate, &ls->runstate,
                           ls->now, true, what);
        ls->runstate_seen = ret == 0;
        return ret;
    }
    if (!strcmp(s->name, "cpu")) {
        snprintf(what, sizeof(what), "%s: vCPU %u", ls->what, s->instance);
        if (s->instance >= (uint32_t)m->nr_vcpus || ls->cpu_seen[s->instance]) {
            error_report("%s: unexpected or repeated section", what);
            return -EINVAL;
        }
        ls->cpus[s->instance] = m->vcpus[s->instance]->state;
        ret = vmstate_load(s->payload, s->len, s->version, &cpu_vmstate,
                           &ls->cpus[s->instance], ls->now, false, what);
        if (ret == 0)
            ret = vmstate_load(s->payload, s->len, s->version, &cpu_vmstate,
                               &ls->cpus[s->instance], ls->now, true, what);
        ls->cpu_seen[s->instance] = ret == 0;
        return ret;
    }
    if (!strcmp(s->name, "pic") || !strcmp(s->name, "ioapic") || !strcmp(s->name, "pit")) {
        const struct vmstate_desc *d;
        void *dst;
        bool *seen;

        if (s->name[1] == 'i' && s->name[2] == 'c') {
            if (s->instance > 1)
                goto unexpected;
            d = &pic_chip_vmstate;
            dst = &ls->chip->pic.chip[s->instance];
            seen = &ls->pic_seen[s->instance];
        } else if (s->name[1] == 'o') {
            d = &ioapic_vmstate, dst = &ls->chip->ioapic, seen = &ls->ioapic_seen;
        } else {
            d = &pit_vmstate, dst = &ls->chip->pit, seen = &ls->pit_seen;
        }
        if (s->instance != 0 && d != &pic_chip_vmstate)
            goto unexpected;
        if (*seen)
            goto unexpected;
        snprintf(what, sizeof(what), "%s: device %s%u", ls->what, s->name, s->instance);
        ret = vmstate_load(s->payload, s->len, s->version, d, dst, ls->now, false, what);
        if (ret == 0)
            ret = vmstate_load(s->payload, s->len, s->version, d, dst, ls->now, true, what);
        *seen = ret == 0;
        return ret;
    }
    for (int i = 0; i < m->nr_devices; i++) {
        bool sl;
        const struct vmstate_desc *d = migration_device_desc(m->devices[i].name, &sl);

        if (!d || strcmp(m->devices[i].name, s->name) || s->instance != device_instance(m, i))
            continue;
        if (ls->dev[i].payload)
            goto unexpected;
        if (s->instance)
            snprintf(what, sizeof(what), "%s: device %s#%u", ls->what, s->name, s->instance);
        else
            snprintf(what, sizeof(what), "%s: device %s", ls->what, s->name);
        ret = vmstate_check_device(s->payload, s->len, s->version, d, m->devices[i].opaque,
                                   ls->now, what, &ls->staged[i]);
        if (ret < 0)
            return ret;
        ls->dev[i] = *s;
        s->payload = NULL;   /* kept until commit */
        return 0;
    }
unexpected:
    error_report("%s: unexpected section (not in this VM, or repeated)", what);
    return -EINVAL;
}

static int check_complete(struct load_state *ls)
{
    struct machine *m = ls->m;

    for (int i = 0; i < m->nr_vcpus; i++)
        if (!ls->cpu_seen[i]) {
            error_report("%s: no state for vCPU %d", ls->what, i);
            return -EINVAL;
        }
    if (!ls->pic_seen[0] || !ls->pic_seen[1] || !ls->ioapic_seen || !ls->pit_seen) {
        error_report("%s: interrupt controller state missing", ls->what);
        return -EINVAL;
    }
    for (int i = 0; i < m->nr_devices; i++) {
        bool sl;

        if (migration_device_desc(m->devices[i].name, &sl) && !ls->dev[i].payload) {
            error_report("%s: device %s: no state in the stream", ls->what,
                         m->devices[i].name);
            return -EINVAL;
        }
    }
    if ((uint64_t)ls->ram_chunks_seen != (m->ram_size + MIG_RAM_CHUNK - 1) / MIG_RAM_CHUNK) {
        error_report("%s: RAM incomplete (%u of %llu chunks)", ls->what, ls->ram_chunks_seen,
                     (unsigned long long)((m->ram_size + MIG_RAM_CHUNK - 1) / MIG_RAM_CHUNK));
        return -EINVAL;
    }
    return 0;
}

/* Copy the staged models' data into the live chip, keeping its wiring. */
static void commit_user_irqchip(struct irqchip *live, const struct irqchip *st)
{
    struct ioapic io = live->ioapic;
    struct pit pit = live->pit;

    live->pic = st->pic;
    live->ioapic = st->ioapic;
    live->ioapic.deliver = io.deliver;
    live->ioapic.opaque = io.opaque;
    live->pit = st->pit;
    live->pit.set_irq = pit.set_irq;
    live->pit.opaque = pit.opaque;
    irqchip_restore(live);
}

static int commit(struct load_state *ls)
{
    struct machine *m = ls->m;
    int ret;

    /* kvm: in-kernel devices to power-on state; emu: drop decoded blocks
     * of the RAM just replaced. */
    if (m->accel->reset)
        m->accel->reset(m);
    for (int i = 0; i < m->nr_devices; i++) {
        bool sl;
        const struct vmstate_desc *d = migration_device_desc(m->devices[i].name, &sl);
        char what[320];

        if (!d)
            continue;
        snprintf(what, sizeof(what), "%s: device %s", ls->what, m->devices[i].name);
        ret = vmstate_commit_device(ls->dev[i].payload, ls->dev[i].len, ls->dev[i].version, d,
                                    m->devices[i].opaque, ls->now, what, ls->staged[i]);
        if (ret < 0)
            return ret;
    }
    for (int i = 0; i < m->nr_vcpus; i++)
        m->vcpus[i]->state = ls->cpus[i];
    if (on_kvm(m)) {
        struct kvm_irqchip chips[3];
        struct kvm_pit_state2 pit;

        memset(chips, 0, sizeof(chips));
        memset(&pit, 0, sizeof(pit));
        kvm_irqchip_to_kvm(ls->chip, chips, &pit);
        ret = kvm_devices_set(m, chips, &pit);
        if (ret < 0) {
            error_report("%s: cannot load the in-kernel irqchip: %s", ls->what,
                         strerror(-ret));
            return ret;
        }
    } else {
        struct irqchip *live = irqchip_of(m);

        if (!live) {
            error_report("%s: this VM has no interrupt controller models", ls->what);
            return -ENODEV;
        }
        commit_user_irqchip(live, ls->chip);
    }
    for (int i = 0; i < m->nr_vcpus; i++) {
        ret = m->accel->set_state(m->vcpus[i], &m->vcpus[i]->state);
        if (ret < 0) {
            error_report("%s: vCPU %d: the %s accelerator refused the state: %s", ls->what,
                         i, m->accel->name, strerror(-ret));
            return ret;
        }
    }
    for (int i = 0; i < m->nr_devices; i++) {
        bool sl;
        const struct vmstate_desc *d = migration_device_desc(m->devices[i].name, &sl);

        if (d && d->post_commit) {
            ret = d->post_commit(m->devices[i].opaque);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

int migration_load(struct machine *m, struct mig_channel *ch)
{
    struct load_state ls = { .m = m, .what = ch->what, .now = clock_ns(),
                             .hc = HOLE_CURSOR(m->ram_fd), .runstate.running = true };
    struct vmbuf digest;
    struct mig_section s;
    int ret;

    ret = mig_read_header(ch, &digest);
    if (ret < 0)
        return ret;
    ls.version = ch->version;
    ret = check_digest(m, &digest, ch->what);
    vmbuf_free(&digest);
    if (ret < 0)
        return ret;
    ls.cpus = calloc((size_t)m->nr_vcpus, sizeof(*ls.cpus));
    ls.cpu_seen = calloc((size_t)m->nr_vcpus, sizeof(bool));
    ls.dev = calloc((size_t)m->nr_devices + 1, sizeof(*ls.dev));
    ls.staged = calloc((size_t)m->nr_devices + 1, sizeof(*ls.staged));
    ls.chip = irqchip_new(NULL, NULL);
    ls.chunk_seen = calloc((size_t)((m->ram_size + MIG_RAM_CHUNK - 1) / MIG_RAM_CHUNK), 1);
    if (!ls.cpus || !ls.cpu_seen || !ls.dev || !ls.staged || !ls.chip || !ls.chunk_seen) {
        ret = -ENOMEM;
        goto out;
    }
    for (;;) {
        ret = mig_read_section(ch, &s);
        if (ret < 0)
            goto out;
        if (!strcmp(s.name, "end")) {
            free(s.payload);
            break;
        }
        ret = stage(&ls, &s);
        free(s.payload);
        if (ret < 0)
            goto out;
    }
    {
        uint8_t extra;

        if (mig_read_all(ch, &extra, 1) != -ENODATA) {
            error_report("%s: data after the end section", ch->what);
            ret = -EINVAL;
            goto out;
        }
    }
    if (ch->lock_commit)
        machine_lock();
    ret = check_complete(&ls);
    if (ret == 0)
        ret = commit(&ls);
    if (ret == 0)
        ch->vm_paused = !ls.runstate.running;
    if (ch->lock_commit)
        machine_unlock();
out:
    free(ls.chunk_seen);
    if (ls.dev)
        for (int i = 0; i < m->nr_devices; i++)
            free(ls.dev[i].payload);
    if (ls.staged)
        for (int i = 0; i < m->nr_devices; i++)
            free(ls.staged[i]);
    free(ls.dev);
    free(ls.staged);
    free(ls.cpus);
    free(ls.cpu_seen);
    irqchip_free(ls.chip);
    return ret;
}

static int parse_file_uri(const char *uri, const char **path)
{
    if (strncmp(uri, "file:", 5) || !uri[5]) {
        error_report("migration URI '%s': only file:PATH is supported", uri);
        return -EINVAL;
    }
    *path = uri + 5;
    return 0;
}

int migration_save_uri(struct machine *m, const char *uri, bool vm_paused)
{
    const char *path;
    struct mig_channel ch = { .what = uri, .vm_paused = vm_paused };
    int ret = parse_file_uri(uri, &path);

    if (ret < 0)
        return ret;
    ch.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (ch.fd < 0) {
        ret = -errno;
        error_report("%s: %s", uri, strerror(errno));
        return ret;
    }
    ret = migration_save(m, &ch);
    if (close(ch.fd) < 0 && ret == 0) {
        ret = -errno;
        error_report("%s: %s", uri, strerror(errno));
    }
    if (ret < 0)
        unlink(path);
    return ret;
}

int migration_load_uri(struct machine *m, const char *uri, bool *vm_paused)
{
    const char *path;
    struct mig_channel ch = { .what = uri };
    int ret = parse_file_uri(uri, &path);

    if (ret < 0)
        return ret;
    ch.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ch.fd < 0) {
        ret = -errno;
        error_report("%s: %s", uri, strerror(errno));
        return ret;
    }
    ret = migration_load(m, &ch);
    close(ch.fd);
    *vm_paused = ch.vm_paused;
    return ret;
}
