/* KVM in-kernel irqchip state <-> vmon's models. */
#include <errno.h>
#include <string.h>
#include "hw/kvm_irqchip_state.h"

_Static_assert(sizeof(((struct kvm_lapic_state *)0)->regs) == X86_LAPIC_REGS_SIZE,
               "LAPIC page size");
_Static_assert(KVM_IOAPIC_NUM_PINS == IOAPIC_NUM_PINS, "IOAPIC pins");

void kvm_irqchip_pic_to_kvm(const struct pic_chip *c, struct kvm_pic_state *k)
{
    memset(k, 0, sizeof(*k));
    k->last_irr = c->last_irr;
    k->irr = c->irr;
    k->imr = c->imr;
    k->isr = c->isr;
    k->priority_add = c->priority_add;
    k->irq_base = c->irq_base;
    k->read_reg_select = c->read_reg_select;
    k->poll = c->poll;
    k->special_mask = c->special_mask;
    k->init_state = c->init_state;
    k->auto_eoi = c->auto_eoi;
    k->rotate_on_auto_eoi = c->rotate_on_auto_eoi;
    k->special_fully_nested_mode = c->special_fully_nested_mode;
    k->init4 = c->init4;
    k->elcr = c->elcr;
    k->elcr_mask = c->elcr_mask;
}

void kvm_irqchip_pic_from_kvm(const struct kvm_pic_state *k, struct pic_chip *c)
{
    memset(c, 0, sizeof(*c));
    c->last_irr = k->last_irr;
    c->irr = k->irr;
    c->imr = k->imr;
    c->isr = k->isr;
    c->priority_add = k->priority_add & 7;
    c->irq_base = k->irq_base & 0xf8;
    c->read_reg_select = k->read_reg_select & 1;
    c->poll = k->poll & 1;
    c->special_mask = k->special_mask & 1;
    c->init_state = k->init_state <= 3 ? k->init_state : 0;
    c->auto_eoi = k->auto_eoi & 1;
    c->rotate_on_auto_eoi = k->rotate_on_auto_eoi & 1;
    c->special_fully_nested_mode = k->special_fully_nested_mode & 1;
    c->init4 = k->init4 & 1;
    c->elcr_mask = k->elcr_mask;
    c->elcr = k->elcr & k->elcr_mask;
}

void kvm_irqchip_ioapic_to_kvm(const struct ioapic *io, struct kvm_ioapic_state *k)
{
    memset(k, 0, sizeof(*k));
    k->base_address = io->base;
    k->ioregsel = io->ioregsel;
    k->id = io->id;
    k->irr = io->irr;
    for (int i = 0; i < IOAPIC_NUM_PINS; i++)
        k->redirtbl[i].bits = io->redir[i];
}

void kvm_irqchip_ioapic_from_kvm(const struct kvm_ioapic_state *k, struct ioapic *io)
{
    io->base = k->base_address;
    io->ioregsel = k->ioregsel & 0xff;
    io->id = k->id & 0xf;
    io->irr = k->irr & ((1u << IOAPIC_NUM_PINS) - 1);
    for (int i = 0; i < IOAPIC_NUM_PINS; i++)
        io->redir[i] = k->redirtbl[i].bits;
    /* KVM keeps no input levels: a set irr bit means the line is high; an
     * edge line that is high with its edge already sent reads as low. */
    io->line = io->irr;
}

void kvm_irqchip_pit_to_kvm(const struct pit *p, struct kvm_pit_state2 *k)
{
    memset(k, 0, sizeof(*k));
    for (int i = 0; i < 3; i++) {
        const struct pit_channel *c = &p->ch[i];
        struct kvm_pit_channel_state *kc = &k->channels[i];
        kc->count = c->count;
        kc->latched_count = c->latched_count;
        kc->count_latched = c->count_latched;
        kc->status_latched = c->status_latched;
        kc->status = c->status;
        kc->read_state = c->read_state;
        kc->write_state = c->write_state;
        kc->write_latch = c->write_latch;
        kc->rw_mode = c->rw_mode;
        kc->mode = c->mode;
        kc->bcd = c->bcd;
        kc->gate = c->gate;
        kc->count_load_time = c->count_load_time;
    }
    if (p->port61 & 2)
        k->flags |= KVM_PIT_FLAGS_SPEAKER_DATA_ON;
}

static uint8_t rw_state(uint8_t v)
{
    return v <= PIT_RW_WORD1 ? v : 0;
}

void kvm_irqchip_pit_from_kvm(const struct kvm_pit_state2 *k, struct pit *p, uint64_t now)
{
    for (int i = 0; i < 3; i++) {
        struct pit_channel *c = &p->ch[i];
        const struct kvm_pit_channel_state *kc = &k->channels[i];
        c->count = kc->count <= 0x10000 ? kc->count : 0x10000;
        c->latched_count = kc->latched_count;
        c->count_latched = rw_state(kc->count_latched);
        c->status_latched = kc->status_latched & 1;
        c->status = kc->status;
        c->read_state = rw_state(kc->read_state);
        c->write_state = rw_state(kc->write_state);
        c->write_latch = kc->write_latch;
        c->rw_mode = kc->rw_mode & 3;
        c->mode = kc->mode <= 5 ? kc->mode : kc->mode <= 7 ? kc->mode - 4 : 0xff;
        c->bcd = kc->bcd & 1;
        c->gate = kc->gate & 1;
        c->count_load_time = kc->count_load_time;
    }
    /* KVM runs channel 0 on an hrtimer and never updates its load time
     * (it reads back whatever user space last set, or 0): its phase is not
     * reported, so the counter restarts now. */
    p->ch[0].count_load_time = (int64_t)now;
    /* Port 0x61 bit 0 is channel 2's gate; bits 2-3 have no KVM home. */
    p->port61 = (uint8_t)((p->ch[2].gate ? 1 : 0) |
                          ((k->flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON) ? 2 : 0));
    pit_restore(p, now);
}

void kvm_irqchip_lapic_to_kvm(const uint8_t *regs, struct kvm_lapic_state *k)
{
    memcpy(k->regs, regs, X86_LAPIC_REGS_SIZE);
}

void kvm_irqchip_lapic_from_kvm(const struct kvm_lapic_state *k, uint8_t *regs)
{
    memcpy(regs, k->regs, X86_LAPIC_REGS_SIZE);
}

void kvm_irqchip_to_kvm(struct irqchip *c, struct kvm_irqchip chips[3],
                        struct kvm_pit_state2 *pit)
{
    irqchip_save(c);
    for (int i = 0; i < 3; i++) {
        memset(&chips[i], 0, sizeof(chips[i]));
        chips[i].chip_id = (uint32_t)i;
    }
    kvm_irqchip_pic_to_kvm(&c->pic.chip[0], &chips[KVM_IRQCHIP_PIC_MASTER].chip.pic);
    kvm_irqchip_pic_to_kvm(&c->pic.chip[1], &chips[KVM_IRQCHIP_PIC_SLAVE].chip.pic);
    kvm_irqchip_ioapic_to_kvm(&c->ioapic, &chips[KVM_IRQCHIP_IOAPIC].chip.ioapic);
    kvm_irqchip_pit_to_kvm(&c->pit, pit);
}

int kvm_irqchip_from_kvm(struct irqchip *c, const struct kvm_irqchip chips[3],
                         const struct kvm_pit_state2 *pit)
{
    if (chips[0].chip_id != KVM_IRQCHIP_PIC_MASTER || chips[1].chip_id != KVM_IRQCHIP_PIC_SLAVE ||
        chips[2].chip_id != KVM_IRQCHIP_IOAPIC)
        return -EINVAL;
    kvm_irqchip_pic_from_kvm(&chips[0].chip.pic, &c->pic.chip[0]);
    kvm_irqchip_pic_from_kvm(&chips[1].chip.pic, &c->pic.chip[1]);
    kvm_irqchip_ioapic_from_kvm(&chips[2].chip.ioapic, &c->ioapic);
    kvm_irqchip_pit_from_kvm(pit, &c->pit, c->clock());
    irqchip_restore(c);
    return 0;
}
