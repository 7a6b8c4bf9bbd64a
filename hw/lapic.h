/* The local APIC (xAPIC, memory-mapped at 0xfee00000).
 *
 * The architectural state is the vCPU's register page, cpu_state.lapic, in
 * the layout KVM_GET_LAPIC uses, so the in-kernel APIC and this model share
 * one format.  The few non-architectural fields in struct lapic (timer start
 * and deadline) are derived: lapic_restore() rebuilds them from the page,
 * whose current-count register holds the timer's remaining count at save
 * time (lapic_save() puts it there).
 *
 * The timer runs at a 1 GHz bus clock (1 ns per tick before the divider), as
 * KVM's does, so counts mean the same under both accelerators.  Nothing here
 * reads a clock: every function that depends on time takes `now` (host
 * CLOCK_MONOTONIC ns), so tests are deterministic.
 *
 * Callers hold the machine lock. */
#ifndef VMON_HW_LAPIC_H
#define VMON_HW_LAPIC_H

#include "util/types.h"
#include "cpu/cpu_state.h"

/* Register offsets in the page. */
#define APIC_ID 0x20
#define APIC_LVR 0x30
#define APIC_TPR 0x80
#define APIC_APR 0x90
#define APIC_PPR 0xa0
#define APIC_EOI 0xb0
#define APIC_RRR 0xc0
#define APIC_LDR 0xd0
#define APIC_DFR 0xe0
#define APIC_SVR 0xf0
#define APIC_ISR 0x100
#define APIC_TMR 0x180
#define APIC_IRR 0x200
#define APIC_ESR 0x280
#define APIC_LVT_CMCI 0x2f0
#define APIC_ICR 0x300
#define APIC_ICR2 0x310
#define APIC_LVTT 0x320
#define APIC_LVTTHMR 0x330
#define APIC_LVTPC 0x340
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_LVTERR 0x370
#define APIC_TMICT 0x380
#define APIC_TMCCT 0x390
#define APIC_TDCR 0x3e0

/* Version register: version 0x14 (integrated APIC), 6 LVT entries, no
 * EOI-broadcast suppression. */
#define APIC_VERSION_VALUE 0x00050014u

#define APIC_SVR_ENABLE (1u << 8)
#define APIC_LVT_MASKED (1u << 16)
#define APIC_LVT_TIMER_PERIODIC (1u << 17)
#define APIC_LVT_LEVEL (1u << 15)
#define APIC_LVT_REMOTE_IRR (1u << 14)
#define APIC_ICR_LEVEL_ASSERT (1u << 14)
#define APIC_ICR_TRIGGER_LEVEL (1u << 15)
#define APIC_ICR_DEST_LOGICAL (1u << 11)

/* ESR bits (SDM vol. 3, 10.5.3). */
#define APIC_ESR_SEND_ILLEGAL_VECTOR (1u << 5)
#define APIC_ESR_RECV_ILLEGAL_VECTOR (1u << 6)
#define APIC_ESR_ILLEGAL_REGISTER (1u << 7)

/* Delivery modes (ICR, LVT, IOAPIC redirection entries, MSI data). */
enum apic_delivery {
    APIC_DM_FIXED = 0,
    APIC_DM_LOWEST = 1,
    APIC_DM_SMI = 2,
    APIC_DM_NMI = 4,
    APIC_DM_INIT = 5,
    APIC_DM_SIPI = 6,
    APIC_DM_EXTINT = 7,
};

enum apic_shorthand {
    APIC_SH_NONE = 0,
    APIC_SH_SELF = 1,
    APIC_SH_ALL = 2,
    APIC_SH_ALL_BUT_SELF = 3,
};

/* One interrupt message on the APIC bus: from an ICR write, an IOAPIC
 * redirection entry or an MSI. */
struct apic_msg {
    uint8_t vector;
    uint8_t delivery;   /* enum apic_delivery */
    uint8_t dest;       /* xAPIC destination (8 bits) */
    bool logical;       /* destination mode */
    bool level_trig;    /* trigger mode: true = level */
    bool assert;        /* level: assert (false only for INIT de-assert) */
    uint8_t shorthand;  /* enum apic_shorthand; ICR only */
};

/* What a LAPIC needs from the machine.  The emu accelerator implements these
 * by changing cpu_state.mp_state / events; every callback runs under the
 * machine lock and must not block. */
struct lapic_host_ops {
    /* INIT received (the LAPIC has already reset itself): the vCPU enters
     * wait-for-SIPI (MP_INIT_RECEIVED). */
    void (*init)(void *vcpu);
    /* Start-up IPI with its vector.  Sent on every SIPI; the callback must
     * ignore it unless the vCPU is waiting for SIPI. */
    void (*sipi)(void *vcpu, uint8_t vector);
    /* NMI delivered (set events.nmi_pending). */
    void (*nmi)(void *vcpu);
    /* An interrupt may have become deliverable: wake the vCPU if it is
     * halted.  Called on every acceptance and whenever PPR drops (EOI,
     * TPR/CR8) or LINT0 opens with something pending, so a CPU loop may
     * poll for interrupts only after a kick (and after its own IF 0->1). */
    void (*kick)(void *vcpu);
};

struct lapic;

/* The APIC bus: every LAPIC of the machine, plus where level-triggered EOIs
 * are broadcast (the IOAPIC). */
#define LAPIC_BUS_MAX 64
struct lapic_bus {
    struct lapic *lapics[LAPIC_BUS_MAX];
    int nr;
    void (*eoi)(void *opaque, uint8_t vector);
    void *eoi_opaque;
};

struct lapic {
    struct cpu_state *cpu;   /* regs = cpu->lapic; apic_base for enable */
    int index;               /* vCPU index (for lowest-priority order) */
    const struct lapic_host_ops *ops;
    void *vcpu;              /* passed to ops */
    struct lapic_bus *bus;

    /* Derived state; lapic_restore() recomputes it from the page. */
    uint64_t timer_start_ns;    /* when the counter was last loaded */
    uint64_t timer_deadline_ns; /* next interrupt, 0 = none */
    bool extint_pending;        /* an ExtINT message awaits a PIC ack */
    uint32_t esr_pending;       /* errors since the last ESR write */
};

/* Minimum period of a periodic timer interrupt, so a guest cannot make the
 * host spin (KVM clamps the same way).  The count itself is not clamped. */
#define LAPIC_MIN_PERIOD_NS 100000ull

/* Write the architectural reset values into a register page (SDM vol. 3
 * 10.4.7.1), the same values cpu_state_reset() writes: every LVT masked,
 * including the BSP's LINT0 (a guest that wants the 8259 through the LAPIC
 * programs virtual wire mode itself, as Linux does). */
void lapic_regs_reset(uint8_t *regs, unsigned apic_id);

/* Bind a model to a vCPU's state; does not touch the registers. */
void lapic_init(struct lapic *l, struct cpu_state *cpu, int index,
                const struct lapic_host_ops *ops, void *vcpu, struct lapic_bus *bus);
/* Power-on reset of the page (APIC ID = vCPU index) and the timer; keeps
 * IA32_APIC_BASE. */
void lapic_reset(struct lapic *l);
/* Add a LAPIC to a bus; -ENOSPC when full. */
int lapic_bus_add(struct lapic_bus *bus, struct lapic *l);

/* MMIO access at offset (0..4095) of the APIC page; size 1/2/4/8. */
uint64_t lapic_read(struct lapic *l, uint64_t offset, unsigned size, uint64_t now);
void lapic_write(struct lapic *l, uint64_t offset, uint64_t value, unsigned size, uint64_t now);

/* Interrupt acceptance (a message for this LAPIC); false if refused
 * (APIC disabled, illegal vector, INIT de-assert, SMI). */
bool lapic_accept(struct lapic *l, const struct apic_msg *msg);
/* Shorthand for a fixed interrupt. */
void lapic_accept_irq(struct lapic *l, uint8_t vector, bool level_trig);
/* Highest-priority vector in IRR that PPR lets through, or -1. */
int lapic_pending_interrupt(const struct lapic *l);
/* The CPU takes the interrupt: IRR -> ISR.  Returns the vector to deliver,
 * which is the spurious vector if `vector` is no longer deliverable. */
int lapic_ack(struct lapic *l, int vector);
/* LINT0 passes the 8259's INTR to this CPU (ExtINT, virtual wire), or the
 * APIC is hardware-disabled so INTR reaches the CPU directly. */
bool lapic_accepts_pic(const struct lapic *l);
bool lapic_hw_enabled(const struct lapic *l);
bool lapic_sw_enabled(const struct lapic *l);
uint8_t lapic_id(const struct lapic *l);

/* CR8 is TPR[7:4]. */
void lapic_set_cr8(struct lapic *l, uint64_t cr8);
uint64_t lapic_get_cr8(const struct lapic *l);
/* WRMSR IA32_APIC_BASE.  -EINVAL for values the guest may not set (x2APIC
 * is not advertised; reserved bits): the caller raises #GP. */
int lapic_set_base(struct lapic *l, uint64_t value);

/* Timer: next deadline (0 = none) and firing. */
uint64_t lapic_next_deadline_ns(const struct lapic *l);
void lapic_timer_check(struct lapic *l, uint64_t now);
/* Current count as the guest would read it at `now`. */
uint32_t lapic_timer_current(const struct lapic *l, uint64_t now);

/* Save: put the current count into TMCCT so the page alone describes the
 * LAPIC.  Restore: rebuild the derived state from the page. */
void lapic_save(struct lapic *l, uint64_t now);
void lapic_restore(struct lapic *l, uint64_t now);

/* Deliver a message to every LAPIC on the bus it addresses; src is the
 * sender for shorthands (NULL for IOAPIC/MSI).  Returns how many took it. */
int lapic_bus_deliver(struct lapic_bus *bus, struct lapic *src, const struct apic_msg *msg);
/* Does the message's destination (not shorthand) select this LAPIC? */
bool lapic_match_dest(const struct lapic *l, uint8_t dest, bool logical);

/* Raw register access on a page (little-endian dwords). */
static inline uint32_t lapic_reg(const uint8_t *regs, unsigned off)
{
    uint32_t v;
    __builtin_memcpy(&v, regs + off, 4);
    return v;
}

static inline void lapic_set_reg(uint8_t *regs, unsigned off, uint32_t v)
{
    __builtin_memcpy(regs + off, &v, 4);
}

#endif
