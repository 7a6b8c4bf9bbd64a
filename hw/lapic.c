/* The local APIC model.  See hw/lapic.h for the state split and docs/irq.md
 * for what is and is not modelled. */
#include <errno.h>
#include <string.h>
#include "hw/lapic.h"
#include "util/log.h"

#define LVT_TIMER_MASK 0x000300ffu   /* vector, mask, periodic (no TSC-deadline) */
#define LVT_THERM_MASK 0x000107ffu   /* vector, delivery mode, mask */
#define LVT_LINT_MASK 0x0001a7ffu    /* + polarity, trigger; remote IRR is RO */
#define LVT_ERR_MASK 0x000100ffu
#define ICR_LOW_MASK 0x000ccfffu     /* delivery status (bit 12) reads 0 */

static uint8_t *regs_of(const struct lapic *l)
{
    return l->cpu->lapic;
}

static uint32_t rd(const struct lapic *l, unsigned off)
{
    return lapic_reg(regs_of(l), off);
}

static void wr(struct lapic *l, unsigned off, uint32_t v)
{
    lapic_set_reg(regs_of(l), off, v);
}

/* The 256-bit ISR/TMR/IRR arrays: vector v is bit v%32 of the dword at
 * base + (v/32)*16. */
static bool vec_test(const struct lapic *l, unsigned base, unsigned v)
{
    return (rd(l, base + (v >> 5) * 16) >> (v & 31)) & 1;
}

static void vec_set(struct lapic *l, unsigned base, unsigned v)
{
    unsigned off = base + (v >> 5) * 16;
    wr(l, off, rd(l, off) | (1u << (v & 31)));
}

static void vec_clear(struct lapic *l, unsigned base, unsigned v)
{
    unsigned off = base + (v >> 5) * 16;
    wr(l, off, rd(l, off) & ~(1u << (v & 31)));
}

static int vec_highest(const struct lapic *l, unsigned base)
{
    for (int i = 7; i >= 0; i--) {
        uint32_t w = rd(l, base + (unsigned)i * 16);
        if (w)
            return i * 32 + 31 - __builtin_clz(w);
    }
    return -1;
}

static uint32_t compute_ppr(const struct lapic *l)
{
    uint32_t tpr = rd(l, APIC_TPR) & 0xff;
    int isrv = vec_highest(l, APIC_ISR);
    uint32_t isr_class = isrv < 0 ? 0 : ((unsigned)isrv & 0xf0);
    return (tpr & 0xf0) >= isr_class ? tpr : isr_class;
}

static void update_ppr(struct lapic *l)
{
    wr(l, APIC_PPR, compute_ppr(l));
}

static uint32_t compute_apr(const struct lapic *l)
{
    uint32_t tpr = rd(l, APIC_TPR) & 0xff;
    int irrv = vec_highest(l, APIC_IRR), isrv = vec_highest(l, APIC_ISR);
    uint32_t cls = (uint32_t)MAX(MAX(irrv, isrv), 0) & 0xf0;
    return (tpr & 0xf0) >= cls ? tpr : cls;
}

bool lapic_hw_enabled(const struct lapic *l)
{
    return (l->cpu->apic_base & X86_APIC_BASE_ENABLE) != 0;
}

bool lapic_sw_enabled(const struct lapic *l)
{
    return (rd(l, APIC_SVR) & APIC_SVR_ENABLE) != 0;
}

uint8_t lapic_id(const struct lapic *l)
{
    return rd(l, APIC_ID) >> 24;
}

static void kick(struct lapic *l)
{
    if (l->ops && l->ops->kick)
        l->ops->kick(l->vcpu);
}

/* Something this vCPU may now take (PPR dropped, LINT0 opened, state
 * loaded): kick it, so a CPU loop can poll only after kicks. */
static void kick_if_deliverable(struct lapic *l)
{
    if (lapic_pending_interrupt(l) >= 0 || l->extint_pending || lapic_accepts_pic(l))
        kick(l);
}

/* ---- timer ---- */

static uint64_t timer_divide(const struct lapic *l)
{
    uint32_t d = rd(l, APIC_TDCR);
    unsigned v = (d & 3) | ((d & 8) >> 1);
    return 1ull << ((v + 1) & 7);
}

static bool timer_periodic(const struct lapic *l)
{
    return (rd(l, APIC_LVTT) & APIC_LVT_TIMER_PERIODIC) != 0;
}

/* Bus ticks since the counter was loaded, in modular arithmetic so a start
 * time "before zero" (restore early in a test clock) still works. */
static uint64_t timer_ticks(const struct lapic *l, uint64_t now)
{
    uint64_t elapsed = now - l->timer_start_ns;
    if ((int64_t)elapsed < 0)
        return 0;
    return elapsed / timer_divide(l);
}

uint32_t lapic_timer_current(const struct lapic *l, uint64_t now)
{
    uint64_t icr = rd(l, APIC_TMICT);
    if (icr == 0)
        return 0;
    uint64_t t = timer_ticks(l, now);
    if (timer_periodic(l))
        return (uint32_t)(icr - t % icr);
    return t >= icr ? 0 : (uint32_t)(icr - t);
}

/* The first expiry strictly after `now` (0 if a one-shot already expired). */
static void timer_schedule(struct lapic *l, uint64_t now)
{
    uint64_t icr = rd(l, APIC_TMICT);
    if (icr == 0) {
        l->timer_deadline_ns = 0;
        return;
    }
    uint64_t period = icr * timer_divide(l);
    uint64_t elapsed = now - l->timer_start_ns;
    if ((int64_t)elapsed < 0)
        elapsed = 0;
    uint64_t d;
    if (!timer_periodic(l)) {
        if (elapsed >= period) {
            l->timer_deadline_ns = 0;
            return;
        }
        d = l->timer_start_ns + period;
    } else {
        d = l->timer_start_ns + (elapsed / period + 1) * period;
        if (d - now < LAPIC_MIN_PERIOD_NS && period < LAPIC_MIN_PERIOD_NS)
            d = now + LAPIC_MIN_PERIOD_NS;
    }
    l->timer_deadline_ns = d ? d : 1;
}

uint64_t lapic_next_deadline_ns(const struct lapic *l)
{
    if (rd(l, APIC_LVTT) & APIC_LVT_MASKED)
        return 0;
    return l->timer_deadline_ns;
}

void lapic_timer_check(struct lapic *l, uint64_t now)
{
    if (l->timer_deadline_ns == 0 || now < l->timer_deadline_ns)
        return;
    uint32_t lvtt = rd(l, APIC_LVTT);
    if (!(lvtt & APIC_LVT_MASKED) && lapic_hw_enabled(l))
        lapic_accept_irq(l, lvtt & 0xff, false);
    timer_schedule(l, now);
}

/* Reload the counter so that it reads `count` at `now` with the current
 * divider. */
static void timer_rebase(struct lapic *l, uint64_t now, uint32_t count)
{
    uint64_t icr = rd(l, APIC_TMICT);
    if (count > icr)
        count = (uint32_t)icr;
    l->timer_start_ns = now - (icr - count) * timer_divide(l);
}

void lapic_save(struct lapic *l, uint64_t now)
{
    /* An expiry not yet looked at goes into the IRR first: the page keeps
     * no deadline, so a one-shot that expired just before the save would
     * otherwise never interrupt (a Linux guest's tick then stops for good
     * after a snapshot or switch). */
    lapic_timer_check(l, now);
    wr(l, APIC_TMCCT, lapic_timer_current(l, now));
}

void lapic_restore(struct lapic *l, uint64_t now)
{
    uint32_t count = rd(l, APIC_TMCCT);
    if (count == 0 && timer_periodic(l))
        count = rd(l, APIC_TMICT);
    timer_rebase(l, now, count);
    timer_schedule(l, now);
    l->extint_pending = false;
    l->esr_pending = 0;
    update_ppr(l);
    kick_if_deliverable(l);
}

/* ---- reset ---- */

void lapic_regs_reset(uint8_t *regs, unsigned apic_id)
{
    memset(regs, 0, X86_LAPIC_REGS_SIZE);
    lapic_set_reg(regs, APIC_ID, (apic_id & 0xff) << 24);
    lapic_set_reg(regs, APIC_LVR, APIC_VERSION_VALUE);
    lapic_set_reg(regs, APIC_DFR, 0xffffffffu);
    lapic_set_reg(regs, APIC_SVR, 0xff);
    for (unsigned off = APIC_LVTT; off <= APIC_LVTERR; off += 0x10)
        lapic_set_reg(regs, off, APIC_LVT_MASKED);
}

static void reset_derived(struct lapic *l)
{
    l->timer_start_ns = 0;
    l->timer_deadline_ns = 0;
    l->extint_pending = false;
    l->esr_pending = 0;
}

void lapic_init(struct lapic *l, struct cpu_state *cpu, int index,
                const struct lapic_host_ops *ops, void *vcpu, struct lapic_bus *bus)
{
    memset(l, 0, sizeof(*l));
    l->cpu = cpu;
    l->index = index;
    l->ops = ops;
    l->vcpu = vcpu;
    l->bus = bus;
}

void lapic_reset(struct lapic *l)
{
    lapic_regs_reset(regs_of(l), (unsigned)l->index);
    reset_derived(l);
}

/* INIT keeps the APIC ID (SDM vol. 3, 10.4.7.3). */
static void lapic_init_reset(struct lapic *l)
{
    uint32_t id = rd(l, APIC_ID);
    lapic_regs_reset(regs_of(l), 0);
    wr(l, APIC_ID, id);
    reset_derived(l);
}

int lapic_bus_add(struct lapic_bus *bus, struct lapic *l)
{
    if (bus->nr >= LAPIC_BUS_MAX)
        return -ENOSPC;
    bus->lapics[bus->nr++] = l;
    l->bus = bus;
    return 0;
}

/* ---- interrupt acceptance and delivery to the CPU ---- */

bool lapic_accept(struct lapic *l, const struct apic_msg *msg)
{
    if (!lapic_hw_enabled(l))
        return false;
    switch (msg->delivery) {
    case APIC_DM_FIXED:
    case APIC_DM_LOWEST:
        if (msg->vector < 16) {
            l->esr_pending |= APIC_ESR_RECV_ILLEGAL_VECTOR;
            LOG(LOG_GUEST_ERRORS, "lapic%d: illegal vector %u received\n", l->index, msg->vector);
            return false;
        }
        /* A software-disabled APIC holds what it has but takes nothing
         * new (KVM behaves the same). */
        if (!lapic_sw_enabled(l))
            return false;
        vec_set(l, APIC_IRR, msg->vector);
        if (msg->level_trig)
            vec_set(l, APIC_TMR, msg->vector);
        else
            vec_clear(l, APIC_TMR, msg->vector);
        kick(l);
        break;
    case APIC_DM_NMI:
        if (l->ops && l->ops->nmi)
            l->ops->nmi(l->vcpu);
        kick(l);
        break;
    case APIC_DM_INIT:
        /* INIT level de-assert only synchronised arbitration IDs on old
         * CPUs; since the Pentium 4 it does nothing. */
        if (msg->level_trig && !msg->assert)
            return false;
        lapic_init_reset(l);
        if (l->ops && l->ops->init)
            l->ops->init(l->vcpu);
        kick(l);
        break;
    case APIC_DM_SIPI:
        if (l->ops && l->ops->sipi)
            l->ops->sipi(l->vcpu, msg->vector);
        kick(l);
        break;
    case APIC_DM_EXTINT:
        l->extint_pending = true;
        kick(l);
        break;
    default: /* SMI and reserved modes */
        LOG(LOG_UNIMP, "lapic%d: delivery mode %u ignored\n", l->index, msg->delivery);
        return false;
    }
    return true;
}

void lapic_accept_irq(struct lapic *l, uint8_t vector, bool level_trig)
{
    struct apic_msg m = { .vector = vector, .delivery = APIC_DM_FIXED,
                          .level_trig = level_trig, .assert = true };
    lapic_accept(l, &m);
}

int lapic_pending_interrupt(const struct lapic *l)
{
    if (!lapic_hw_enabled(l))
        return -1;
    int v = vec_highest(l, APIC_IRR);
    if (v < 0)
        return -1;
    if (((unsigned)v & 0xf0) <= (compute_ppr(l) & 0xf0))
        return -1;
    return v;
}

int lapic_ack(struct lapic *l, int vector)
{
    if (vector < 16 || vector > 255 || !vec_test(l, APIC_IRR, (unsigned)vector) ||
        ((unsigned)vector & 0xf0) <= (compute_ppr(l) & 0xf0))
        return rd(l, APIC_SVR) & 0xff;
    vec_clear(l, APIC_IRR, (unsigned)vector);
    vec_set(l, APIC_ISR, (unsigned)vector);
    update_ppr(l);
    return vector;
}

bool lapic_accepts_pic(const struct lapic *l)
{
    if (!lapic_hw_enabled(l))
        return true;
    uint32_t lvt0 = rd(l, APIC_LVT0);
    return !(lvt0 & APIC_LVT_MASKED) && ((lvt0 >> 8) & 7) == APIC_DM_EXTINT;
}

static void lapic_eoi(struct lapic *l)
{
    int v = vec_highest(l, APIC_ISR);
    if (v < 0)
        return;
    vec_clear(l, APIC_ISR, (unsigned)v);
    update_ppr(l);
    if (vec_test(l, APIC_TMR, (unsigned)v) && l->bus && l->bus->eoi)
        l->bus->eoi(l->bus->eoi_opaque, (uint8_t)v);
    kick_if_deliverable(l);
}

void lapic_set_cr8(struct lapic *l, uint64_t cr8)
{
    wr(l, APIC_TPR, (uint32_t)(cr8 & 0xf) << 4);
    update_ppr(l);
    kick_if_deliverable(l);
}

uint64_t lapic_get_cr8(const struct lapic *l)
{
    return (rd(l, APIC_TPR) >> 4) & 0xf;
}

int lapic_set_base(struct lapic *l, uint64_t value)
{
    const uint64_t valid = X86_APIC_BASE_BSP | X86_APIC_BASE_ENABLE | 0x000ffffffffff000ull;
    if (value & ~valid)
        return -EINVAL;  /* reserved bits, or EXTD: x2APIC is not offered */
    uint64_t old = l->cpu->apic_base;
    if ((value & ~0xfffull) != X86_APIC_DEFAULT_BASE && (value & X86_APIC_BASE_ENABLE))
        LOG(LOG_UNIMP, "lapic%d: relocation to %#llx not supported\n", l->index,
            (unsigned long long)(value & ~0xfffull));
    l->cpu->apic_base = value;
    if ((old & X86_APIC_BASE_ENABLE) && !(value & X86_APIC_BASE_ENABLE))
        lapic_init_reset(l);
    kick_if_deliverable(l);  /* a disabled APIC passes the 8259's INTR */
    return 0;
}

/* ---- destinations and IPIs ---- */

bool lapic_match_dest(const struct lapic *l, uint8_t dest, bool logical)
{
    if (dest == 0xff)
        return true;  /* broadcast, both modes */
    if (!logical)
        return dest == lapic_id(l);
    uint8_t ldr = rd(l, APIC_LDR) >> 24;
    switch (rd(l, APIC_DFR) >> 28) {
    case 0xf: /* flat */
        return (ldr & dest) != 0;
    case 0x0: /* cluster */
        return (ldr >> 4) == (dest >> 4) && (ldr & dest & 0xf) != 0;
    default:
        return false;
    }
}

static bool targets(const struct lapic *t, const struct lapic *src, const struct apic_msg *msg)
{
    switch (msg->shorthand) {
    case APIC_SH_SELF:
        return t == src;
    case APIC_SH_ALL:
        return true;
    case APIC_SH_ALL_BUT_SELF:
        return t != src;
    default:
        return lapic_match_dest(t, msg->dest, msg->logical);
    }
}

int lapic_bus_deliver(struct lapic_bus *bus, struct lapic *src, const struct apic_msg *msg)
{
    if (!bus)
        return src && targets(src, src, msg) && lapic_accept(src, msg);
    if (msg->delivery == APIC_DM_LOWEST) {
        /* Lowest priority: the enabled target with the lowest TPR, ties to
         * the lowest vCPU index (bus order). */
        struct lapic *best = NULL;
        for (int i = 0; i < bus->nr; i++) {
            struct lapic *t = bus->lapics[i];
            if (!targets(t, src, msg) || !lapic_hw_enabled(t) || !lapic_sw_enabled(t))
                continue;
            if (!best || (rd(t, APIC_TPR) & 0xf0) < (rd(best, APIC_TPR) & 0xf0))
                best = t;
        }
        return best && lapic_accept(best, msg);
    }
    int n = 0;
    for (int i = 0; i < bus->nr; i++)
        if (targets(bus->lapics[i], src, msg))
            n += lapic_accept(bus->lapics[i], msg);
    return n;
}

static void send_ipi(struct lapic *l)
{
    uint32_t icr = rd(l, APIC_ICR);
    struct apic_msg m = {
        .vector = icr & 0xff,
        .delivery = (icr >> 8) & 7,
        .dest = rd(l, APIC_ICR2) >> 24,
        .logical = (icr & APIC_ICR_DEST_LOGICAL) != 0,
        .level_trig = (icr & APIC_ICR_TRIGGER_LEVEL) != 0,
        .assert = (icr & APIC_ICR_LEVEL_ASSERT) != 0,
        .shorthand = (icr >> 18) & 3,
    };
    switch (m.delivery) {
    case APIC_DM_FIXED:
    case APIC_DM_LOWEST:
        if (m.vector < 16) {
            l->esr_pending |= APIC_ESR_SEND_ILLEGAL_VECTOR;
            LOG(LOG_GUEST_ERRORS, "lapic%d: IPI with illegal vector %u\n", l->index, m.vector);
            return;
        }
        break;
    case APIC_DM_NMI:
    case APIC_DM_INIT:
    case APIC_DM_SIPI:
    case APIC_DM_SMI:
        break;
    default: /* ExtINT and reserved modes cannot be sent by ICR */
        LOG(LOG_GUEST_ERRORS, "lapic%d: IPI with delivery mode %u\n", l->index, m.delivery);
        return;
    }
    LOG(LOG_INT, "lapic%d: IPI icr=%#x dest=%#x\n", l->index, icr, m.dest);
    lapic_bus_deliver(l->bus, l, &m);
}

/* ---- register access ---- */

/* Registers that exist; anything else in 0..0x3f0 is reserved. */
static bool reg_valid(unsigned reg)
{
    switch (reg) {
    case APIC_ID: case APIC_LVR: case APIC_TPR: case APIC_APR: case APIC_PPR:
    case APIC_EOI: case APIC_RRR: case APIC_LDR: case APIC_DFR: case APIC_SVR:
    case APIC_ESR: case APIC_ICR: case APIC_ICR2:
    case APIC_LVTT: case APIC_LVTTHMR: case APIC_LVTPC: case APIC_LVT0:
    case APIC_LVT1: case APIC_LVTERR: case APIC_TMICT: case APIC_TMCCT:
    case APIC_TDCR:
        return true;
    default:
        return reg >= APIC_ISR && reg < APIC_ESR; /* ISR, TMR, IRR */
    }
}

static uint32_t reg_read(struct lapic *l, unsigned reg, uint64_t now)
{
    switch (reg) {
    case APIC_APR:
        return compute_apr(l);
    case APIC_PPR:
        return compute_ppr(l);
    case APIC_EOI:
    case APIC_RRR:
        return 0;
    case APIC_TMCCT:
        return lapic_timer_current(l, now);
    default:
        return rd(l, reg);
    }
}

uint64_t lapic_read(struct lapic *l, uint64_t offset, unsigned size, uint64_t now)
{
    if (!lapic_hw_enabled(l))
        return ~0ull;  /* the page is not decoded: open bus */
    unsigned align = offset & 0xf;
    unsigned reg = (unsigned)(offset & ~0xfull);
    if (offset >= 0x400 || !reg_valid(reg)) {
        l->esr_pending |= APIC_ESR_ILLEGAL_REGISTER;
        LOG(LOG_GUEST_ERRORS, "lapic%d: read of reserved offset %#llx\n", l->index,
            (unsigned long long)offset);
        return 0;
    }
    /* Registers are 32 bits in a 16-byte slot; narrower reads of the dword
     * work on real CPUs, anything beyond it reads as zero. */
    if (align + size > 4)
        return 0;
    uint64_t v = reg_read(l, reg, now) >> (align * 8);
    return size == 4 ? (uint32_t)v : v & ((1ull << (size * 8)) - 1);
}

static void write_lvt(struct lapic *l, unsigned reg, uint32_t val, uint32_t mask, uint64_t now)
{
    if (reg == APIC_LVTT)
        lapic_timer_check(l, now);  /* an expiry already due goes out first */
    uint32_t keep = rd(l, reg) & APIC_LVT_REMOTE_IRR & ~mask;
    val &= mask;
    if (!lapic_sw_enabled(l))
        val |= APIC_LVT_MASKED;
    if (reg == APIC_LVT0 || reg == APIC_LVT1)
        val |= keep;
    wr(l, reg, val);
    if (reg == APIC_LVTT)
        timer_schedule(l, now);
}

void lapic_write(struct lapic *l, uint64_t offset, uint64_t value, unsigned size, uint64_t now)
{
    if (!lapic_hw_enabled(l))
        return;
    unsigned reg = (unsigned)offset;
    if (offset >= 0x400 || !reg_valid(reg & ~0xfu)) {
        l->esr_pending |= APIC_ESR_ILLEGAL_REGISTER;
        LOG(LOG_GUEST_ERRORS, "lapic%d: write to reserved offset %#llx\n", l->index,
            (unsigned long long)offset);
        return;
    }
    if ((offset & 0xf) || size != 4) {
        LOG(LOG_GUEST_ERRORS, "lapic%d: %u-byte write at %#llx ignored\n", l->index, size,
            (unsigned long long)offset);
        return;
    }
    uint32_t val = (uint32_t)value;
    switch (reg) {
    case APIC_ID:
        wr(l, APIC_ID, val & 0xff000000u);
        break;
    case APIC_TPR:
        wr(l, APIC_TPR, val & 0xff);
        update_ppr(l);
        kick_if_deliverable(l);
        break;
    case APIC_EOI:
        lapic_eoi(l);
        break;
    case APIC_LDR:
        wr(l, APIC_LDR, val & 0xff000000u);
        break;
    case APIC_DFR:
        wr(l, APIC_DFR, (val & 0xf0000000u) | 0x0fffffffu);
        break;
    case APIC_SVR:
        lapic_timer_check(l, now);
        wr(l, APIC_SVR, val & 0x3ff);
        if (!(val & APIC_SVR_ENABLE)) {
            for (unsigned off = APIC_LVTT; off <= APIC_LVTERR; off += 0x10)
                wr(l, off, rd(l, off) | APIC_LVT_MASKED);
            timer_schedule(l, now);
        }
        break;
    case APIC_ESR:
        /* Writing ESR latches the errors seen since the last write. */
        wr(l, APIC_ESR, l->esr_pending);
        l->esr_pending = 0;
        break;
    case APIC_ICR:
        wr(l, APIC_ICR, val & ICR_LOW_MASK);
        send_ipi(l);
        break;
    case APIC_ICR2:
        wr(l, APIC_ICR2, val & 0xff000000u);
        break;
    case APIC_LVTT:
        write_lvt(l, reg, val, LVT_TIMER_MASK, now);
        break;
    case APIC_LVTTHMR:
    case APIC_LVTPC:
        write_lvt(l, reg, val, LVT_THERM_MASK, now);
        break;
    case APIC_LVT0:
    case APIC_LVT1:
        write_lvt(l, reg, val, LVT_LINT_MASK, now);
        kick_if_deliverable(l);
        break;
    case APIC_LVTERR:
        write_lvt(l, reg, val, LVT_ERR_MASK, now);
        break;
    case APIC_TMICT:
        lapic_timer_check(l, now);
        wr(l, APIC_TMICT, val);
        l->timer_start_ns = now;
        timer_schedule(l, now);
        break;
    case APIC_TDCR: {
        lapic_timer_check(l, now);
        uint32_t count = lapic_timer_current(l, now);
        wr(l, APIC_TDCR, val & 0xb);
        timer_rebase(l, now, count);
        timer_schedule(l, now);
        break;
    }
    default: /* read-only: version, APR, PPR, RRR, ISR, TMR, IRR, TMCCT */
        LOG(LOG_GUEST_ERRORS, "lapic%d: write to read-only register %#x\n", l->index, reg);
        break;
    }
}
