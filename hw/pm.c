/* ACPI PM1 event/control registers and the PM timer: what lets Linux power
 * the machine off through \_S5 and calibrate its clocks.  SMI_CMD is 0 in
 * the FADT, so the block is in ACPI mode from power-on (SCI_EN set). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/pc_devices.h"
#include "hw/pm.h"
#include "util/log.h"
#include "util/main_loop.h"

#define PM1_TMR_STS 0x0001
#define PM1_BM_STS 0x0010
#define PM1_GBL_STS 0x0020
#define PM1_PWRBTN_STS 0x0100
#define PM1_SLPBTN_STS 0x0200
#define PM1_RTC_STS 0x0400
#define PM1_WAK_STS 0x8000
#define PM1_STS_MASK (PM1_TMR_STS | PM1_BM_STS | PM1_GBL_STS | PM1_PWRBTN_STS | \
                      PM1_SLPBTN_STS | PM1_RTC_STS | PM1_WAK_STS)
#define PM1_EN_MASK (PM1_TMR_STS | PM1_GBL_STS | PM1_PWRBTN_STS | PM1_SLPBTN_STS | \
                     PM1_RTC_STS)

#define PM1_CNT_SCI_EN 0x0001
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_EN 0x2000

struct pm {
    struct machine *m;
    uint16_t sts, en, cnt;
    int sci_level;
    uint64_t tmr_base_ns;
};

static void pm_update_sci(struct pm *p)
{
    int level = (p->sts & p->en) != 0;

    if (level != p->sci_level) {
        p->sci_level = level;
        machine_set_irq(p->m, PM_SCI_IRQ, level);
    }
}

static uint32_t pm_timer_now(const struct pm *p)
{
    unsigned __int128 ticks = (unsigned __int128)(clock_ns() - p->tmr_base_ns) * PM_TIMER_HZ;

    return (uint32_t)(ticks / 1000000000ULL) & 0xffffff;
}

static uint16_t pm_read16(struct pm *p, unsigned reg)
{
    switch (reg) {
    case 0:
        return p->sts;
    case 2:
        return p->en;
    case 4:
        return p->cnt & ~PM1_CNT_SLP_EN;  /* SLP_EN is write-only */
    default:
        return 0;
    }
}

static void pm_write_cnt(struct pm *p, uint16_t v)
{
    unsigned slp_typ = (v >> PM1_CNT_SLP_TYP_SHIFT) & 7;

    /* SCI_EN stays set: there is no legacy (SMM) mode to go back to. */
    p->cnt = (uint16_t)((v & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN);
    if (!(v & PM1_CNT_SLP_EN))
        return;
    if (slp_typ == PM_SLP_TYP_S5) {
        LOG(LOG_EXIT, "pm: guest entered S5\n");
        machine_request_shutdown(p->m, SHUTDOWN_GUEST_POWEROFF, 0);
    } else {
        LOG(LOG_UNIMP, "pm: sleep type %u not supported, ignored\n", slp_typ);
    }
}

static uint64_t pm_io_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pm *p = opaque;
    uint64_t v = 0;

    if (offset >= PM_TMR_BLK - PM_IO_BASE) {
        uint64_t shift = 8 * (offset - (PM_TMR_BLK - PM_IO_BASE));
        return shift < 32 ? pm_timer_now(p) >> shift : 0;
    }
    /* Byte-granular view of the 16-bit registers. */
    for (unsigned i = 0; i < size; i++) {
        uint64_t o = offset + i;
        uint8_t b = 0;
        if (o < PM_TMR_BLK - PM_IO_BASE)
            b = (uint8_t)(pm_read16(p, (unsigned)(o & ~1ULL)) >> (8 * (o & 1)));
        else if (o < PM_IO_LEN)
            b = (uint8_t)(pm_timer_now(p) >> (8 * (o - (PM_TMR_BLK - PM_IO_BASE))));
        v |= (uint64_t)b << (8 * i);
    }
    return v;
}

static void pm_write16(struct pm *p, unsigned reg, uint16_t v, uint16_t mask)
{
    switch (reg) {
    case 0:
        /* Write one to clear. */
        p->sts &= ~(v & mask & PM1_STS_MASK);
        break;
    case 2:
        p->en = (uint16_t)((p->en & ~mask) | (v & mask & PM1_EN_MASK));
        break;
    case 4:
        pm_write_cnt(p, (uint16_t)((p->cnt & ~mask) | (v & mask)));
        break;
    }
    pm_update_sci(p);
}

static void pm_io_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct pm *p = opaque;

    /* Split into 16-bit register writes with byte masks. */
    for (unsigned i = 0; i < size; i++) {
        uint64_t o = offset + i;
        if (o >= PM_TMR_BLK - PM_IO_BASE)
            break;   /* the timer is read-only */
        unsigned reg = (unsigned)(o & ~1ULL);
        unsigned sh = 8 * (unsigned)(o & 1);
        uint16_t mask = (uint16_t)(0xff << sh);
        uint16_t v = (uint16_t)(((value >> (8 * i)) & 0xff) << sh);
        /* Merge both bytes of one register into one write when possible,
         * so that SLP_TYP and SLP_EN land together. */
        if (!(o & 1) && i + 1 < size) {
            mask = 0xffff;
            v = (uint16_t)(value >> (8 * i));
            i++;
        }
        pm_write16(p, reg, v, mask);
    }
}

static const struct io_ops pm_io_ops = {
    .read = pm_io_read,
    .write = pm_io_write,
};

static void pm_reset(void *opaque)
{
    struct pm *p = opaque;

    p->sts = 0;
    p->en = 0;
    p->cnt = PM1_CNT_SCI_EN;
    p->tmr_base_ns = clock_ns();
    pm_update_sci(p);
}

int pm_power_button(struct machine *m)
{
    for (int i = 0; i < m->nr_devices; i++) {
        if (!strcmp(m->devices[i].name, "acpi-pm")) {
            struct pm *p = m->devices[i].opaque;
            p->sts |= PM1_PWRBTN_STS;
            pm_update_sci(p);
            return 0;
        }
    }
    return -ENODEV;
}

int pm_create(struct machine *m)
{
    struct pm *p = calloc(1, sizeof(*p));
    int ret;

    if (!p)
        return -ENOMEM;
    p->m = m;
    pm_reset(p);
    ret = machine_register_pio(m, PM_IO_BASE, PM_IO_LEN, &pm_io_ops, p, "acpi-pm");
    if (ret < 0) {
        free(p);
        return ret;
    }
    return machine_add_device(m, "acpi-pm", p, pm_reset, free);
}

/* ---- snapshot state (migration/vmstate.h) ---- */

#include "migration/migration.h"

static void pm_post_load(void *opaque)
{
    struct pm *p = opaque;

    p->sci_level = p->sci_level ? 1 : 0;
}

static const struct vmstate_field pm_fields[] = {
    VMS_U16_FIELD(struct pm, sts), VMS_U16_FIELD(struct pm, en), VMS_U16_FIELD(struct pm, cnt),
    VMS_INT_FIELD(struct pm, sci_level), VMS_CLOCK_FIELD(struct pm, tmr_base_ns),
    VMS_END,
};

const struct vmstate_desc pm_vmstate = {
    .name = "acpi-pm", .version = 1, .fields = pm_fields, .post_load = pm_post_load,
};
