/* Debug registers: DR0-DR3 instruction, data and I/O breakpoints enabled
 * by DR7, the DR6 status bits, general detect (DR7.GD) and the #DB traps
 * that collect them with single-step.  SDM vol. 3, chapter 17.
 *
 * Nothing here runs while no breakpoint is enabled: DR7 writes (and
 * emu_invalidate) recompute three masks in emu_cpu.  With an instruction
 * breakpoint enabled the run loop executes one instruction per block and
 * checks its linear address first (so the decoded-block cache never runs
 * past one); with a data breakpoint enabled the soft-TLB sends every access
 * to a page holding one down the slow path, which reports hits here. */
#include "emu/emu_int.h"

#define DR7_GD (1ULL << 13)
#define DR6_BD (1ULL << 13)
#define DR6_BS (1ULL << 14)

/* DR7 R/W field values. */
enum { DR_EXEC = 0, DR_WRITE = 1, DR_IO = 2, DR_RW = 3 };

static unsigned dr_rw(uint64_t dr7, unsigned n)
{
    return (dr7 >> (16 + 4 * n)) & 3;
}

/* LEN 00, 01, 11, 10 -> 1, 2, 4, 8 bytes. */
static unsigned dr_len(uint64_t dr7, unsigned n)
{
    static const uint8_t len[4] = { 1, 2, 8, 4 };

    return len[(dr7 >> (18 + 4 * n)) & 3];
}

static bool dr_enabled(uint64_t dr7, unsigned n)
{
    return (dr7 >> (2 * n)) & 3;
}

/* The range a data/I/O breakpoint watches: DRn with its low bits ignored
 * (the SDM requires alignment to the length). */
static bool dr_overlaps(const struct emu_cpu *c, unsigned n, uint64_t a, unsigned size)
{
    unsigned len = dr_len(c->s->dr[7], n);
    uint64_t start = c->s->dr[n] & ~(uint64_t)(len - 1);

    return a < start + len && start < a + size;
}

void emu_debug_update(struct emu_cpu *c)
{
    const struct cpu_state *s = c->s;
    uint64_t dr7 = s->dr[7];
    uint8_t exec = 0, data = 0, io = 0;

    for (unsigned n = 0; n < 4; n++) {
        if (!dr_enabled(dr7, n))
            continue;
        switch (dr_rw(dr7, n)) {
        case DR_EXEC: exec |= 1u << n; break;
        case DR_IO:
            if (s->cr4 & X86_CR4_DE)
                io |= 1u << n;
            break;
        default: data |= 1u << n; break;
        }
    }
    /* TLB entries carry the watch marks of the breakpoints at fill time. */
    if (data || c->dbg_data)
        emu_tlb_flush(c, false);
    c->dbg_exec = exec;
    if (exec)
        c->dbg_step = true;
    c->dbg_data = data;
    c->dbg_io = io;
}

unsigned emu_debug_page_watch(const struct emu_cpu *c, uint64_t page)
{
    unsigned w = 0;

    for (unsigned n = 0; n < 4; n++) {
        if (!(c->dbg_data & (1u << n)) || !dr_overlaps(c, n, page, 0x1000))
            continue;
        w |= EMU_DEBUG_WATCH_WRITE;
        if (dr_rw(c->s->dr[7], n) == DR_RW)
            w |= EMU_DEBUG_WATCH_READ;
    }
    return w;
}

void emu_debug_check_exec(struct emu_cpu *c, uint64_t la)
{
    unsigned hit = 0;

    for (unsigned n = 0; n < 4; n++)
        if ((c->dbg_exec & (1u << n)) && c->s->dr[n] == la)
            hit |= 1u << n;
    if (!hit)
        return;
    c->s->dr[6] |= hit;
    /* The one fault whose pushed RFLAGS.RF stays clear (handle_exception). */
    c->dbg_insn_bp = true;
    emu_raise_exception(c, EXC_DB, false, 0);
}

void emu_debug_data(struct emu_cpu *c, uint64_t la, unsigned size, bool write)
{
    for (unsigned n = 0; n < 4; n++) {
        if (!(c->dbg_data & (1u << n)) || !dr_overlaps(c, n, la, size))
            continue;
        if (write || dr_rw(c->s->dr[7], n) == DR_RW) {
            c->dbg_pending |= 1u << n;
            emu_break_block(c);  /* the trap follows this instruction */
        }
    }
}

void emu_debug_io(struct emu_cpu *c, uint16_t port, unsigned size)
{
    for (unsigned n = 0; n < 4; n++) {
        if ((c->dbg_io & (1u << n)) && dr_overlaps(c, n, port, size)) {
            c->dbg_pending |= 1u << n;
            emu_break_block(c);
        }
    }
}

void emu_debug_mov_dr(struct emu_cpu *c)
{
    if (!(c->s->dr[7] & DR7_GD))
        return;
    c->s->dr[6] |= DR6_BD;
    emu_raise_exception(c, EXC_DB, false, 0);
}

void emu_debug_trap(struct emu_cpu *c, bool single_step)
{
    c->s->dr[6] |= c->dbg_pending | (single_step ? DR6_BS : 0);
    c->dbg_pending = 0;
    c->step_tf = false;
    emu_raise_trap(c, EXC_DB);  /* vector 1 from a trap: no DPL check */
}
