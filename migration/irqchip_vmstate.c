/* vmon's interrupt controller models as field tables: the "pic", "ioapic"
 * and "pit" sections.  Under kvm the in-kernel state is converted to these
 * models first (hw/kvm_irqchip_state.h), so a stream has one format. */
#include "hw/irqchip.h"
#include "migration/migration.h"

#define PC struct pic_chip
static const struct vmstate_field pic_chip_fields[] = {
    VMS_U8_FIELD(PC, last_irr), VMS_U8_FIELD(PC, irr), VMS_U8_FIELD(PC, imr),
    VMS_U8_FIELD(PC, isr), VMS_U8_FIELD(PC, priority_add), VMS_U8_FIELD(PC, irq_base),
    VMS_U8_FIELD(PC, read_reg_select), VMS_U8_FIELD(PC, poll),
    VMS_U8_FIELD(PC, special_mask), VMS_U8_FIELD(PC, init_state),
    VMS_U8_FIELD(PC, auto_eoi), VMS_U8_FIELD(PC, rotate_on_auto_eoi),
    VMS_U8_FIELD(PC, special_fully_nested_mode), VMS_U8_FIELD(PC, init4),
    VMS_U8_FIELD(PC, elcr), VMS_U8_FIELD(PC, elcr_mask), VMS_U8_FIELD(PC, single),
    VMS_END,
};

const struct vmstate_desc pic_chip_vmstate = {
    .name = "pic", .version = 1, .fields = pic_chip_fields,
};

#define IO struct ioapic
static const struct vmstate_field ioapic_fields[] = {
    VMS_U64_FIELD(IO, base), VMS_U32_FIELD(IO, ioregsel), VMS_U32_FIELD(IO, id),
    VMS_U32_FIELD(IO, irr), VMS_U32_FIELD(IO, line), VMS_U64_FIELD(IO, redir),
    VMS_END,
};

const struct vmstate_desc ioapic_vmstate = {
    .name = "ioapic", .version = 1, .fields = ioapic_fields,
};

#define PT struct pit
#define PIT_CH(c) \
    VMS_U32_FIELD(PT, c.count), VMS_U16_FIELD(PT, c.latched_count), \
    VMS_U8_FIELD(PT, c.count_latched), VMS_U8_FIELD(PT, c.status_latched), \
    VMS_U8_FIELD(PT, c.status), VMS_U8_FIELD(PT, c.read_state), \
    VMS_U8_FIELD(PT, c.write_state), VMS_U8_FIELD(PT, c.write_latch), \
    VMS_U8_FIELD(PT, c.rw_mode), VMS_U8_FIELD(PT, c.mode), VMS_U8_FIELD(PT, c.bcd), \
    VMS_U8_FIELD(PT, c.gate), VMS_CLOCK_FIELD(PT, c.count_load_time)

static const struct vmstate_field pit_fields[] = {
    PIT_CH(ch[0]), PIT_CH(ch[1]), PIT_CH(ch[2]),
    VMS_U8_FIELD(PT, port61), VMS_U32_FIELD(PT, irq_missed),
    VMS_END,
};

const struct vmstate_desc pit_vmstate = {
    .name = "pit", .version = 1, .fields = pit_fields,
};
