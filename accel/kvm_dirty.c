/* Dirty page logging under kvm: KVM_MEM_LOG_DIRTY_PAGES on every RAM
 * memslot, and KVM_GET_DIRTY_LOG (which returns and clears a slot's bitmap
 * and write-protects its pages again) folded into the machine's log at the
 * slot's offset in the RAM memfd. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/kvm_internal.h"
#include "machine/dirty_log.h"
#include "util/log.h"

static int set_slot_flags(struct machine *m, int i, uint32_t flags)
{
    const struct ram_block *b = &m->ram_blocks[i];
    struct kvm_userspace_memory_region r = {
        .slot = (uint32_t)i,
        .flags = flags,
        .guest_phys_addr = b->gpa,
        .memory_size = b->size,
        .userspace_addr = (uintptr_t)b->host,
    };
    int ret = kvm_ioctl(kvm_vm_of(m)->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);

    if (ret < 0)
        error_report("kvm: dirty logging %s on RAM slot %d: %s", flags ? "on" : "off", i,
                     strerror(-ret));
    return ret;
}

int kvm_dirty_log_start(struct machine *m)
{
    for (int i = 0; i < m->nr_ram_blocks; i++) {
        int ret = set_slot_flags(m, i, KVM_MEM_LOG_DIRTY_PAGES);

        if (ret < 0) {
            while (i-- > 0)
                set_slot_flags(m, i, 0);
            return ret;
        }
    }
    return 0;
}

void kvm_dirty_log_stop(struct machine *m)
{
    for (int i = 0; i < m->nr_ram_blocks; i++)
        set_slot_flags(m, i, 0);
}

int kvm_dirty_log_sync(struct machine *m)
{
    for (int i = 0; i < m->nr_ram_blocks; i++) {
        const struct ram_block *b = &m->ram_blocks[i];
        uint64_t pages = b->size >> DIRTY_PAGE_SHIFT;
        uint64_t *bits = calloc(dirty_bitmap_words(pages) ? dirty_bitmap_words(pages) : 1,
                                sizeof(uint64_t));
        struct kvm_dirty_log log = { .slot = (uint32_t)i, .dirty_bitmap = bits };
        int ret;

        if (!bits)
            return -ENOMEM;
        ret = kvm_ioctl(kvm_vm_of(m)->vm_fd, KVM_GET_DIRTY_LOG, &log);
        if (ret == 0)
            dirty_bitmap_or(m->dirty, b->fd_offset >> DIRTY_PAGE_SHIFT, bits, pages);
        free(bits);
        if (ret < 0) {
            error_report("kvm: KVM_GET_DIRTY_LOG on RAM slot %d: %s", i, strerror(-ret));
            return ret;
        }
    }
    return 0;
}
