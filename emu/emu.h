/* vmon's x86-64 system emulator ("emu", the analogue of QEMU's TCG).
 *
 * The emulator executes directly on struct cpu_state: there is no private
 * copy of architectural state.  What it keeps besides (lazy condition flags,
 * the soft-TLB, the decoded-block cache, the cached execution mode) is
 * derived and can be flushed or recomputed at any time:
 *   - emu_sync_state() writes the lazy flags back into s->rflags, after
 *     which the cpu_state is complete and may be read or saved;
 *   - emu_invalidate() drops every cache after someone else wrote the
 *     cpu_state (accelerator switch, snapshot load, debugger).
 * See docs/emu.md for the architecture. */
#ifndef VMON_EMU_EMU_H
#define VMON_EMU_EMU_H

#include <setjmp.h>
#include <stdatomic.h>
#include "machine/machine.h"

struct lapic;

struct emu_cache;

/* Exception vectors. */
enum {
    EXC_DE = 0, EXC_DB = 1, EXC_NMI = 2, EXC_BP = 3, EXC_OF = 4, EXC_BR = 5,
    EXC_UD = 6, EXC_NM = 7, EXC_DF = 8, EXC_TS = 10, EXC_NP = 11, EXC_SS = 12,
    EXC_GP = 13, EXC_PF = 14, EXC_MF = 16, EXC_AC = 17, EXC_MC = 18, EXC_XM = 19,
};


/* Why emu_run() returned. */
enum emu_stop {
    EMU_STOP_BUDGET = 0, /* executed the requested number of instructions */
    EMU_STOP_HALT,       /* HLT with no interrupt to take; mp_state HALTED */
    EMU_STOP_EXCEPTION,  /* an exception was raised and deliver_exceptions
                            is off: see emu_cpu.exc_*; RIP at the insn */
    EMU_STOP_KICK,       /* emu_kick() was called */
    EMU_STOP_SHUTDOWN,   /* triple fault */
    EMU_STOP_IRQ_WINDOW, /* interrupts became deliverable (IF set) */
};

/* Lazy condition codes: the last flag-setting operation, its operands and
 * result; RFLAGS' arithmetic bits are materialised on demand.  CC_EFLAGS
 * means the arithmetic bits are in src1 (already materialised). */
enum emu_cc_op {
    CC_EFLAGS = 0,
    CC_ADD,  /* src1 + src2 = res */
    CC_ADC,  /* src1 + src2 + cin = res */
    CC_SUB,  /* src1 - src2 = res (also CMP, NEG with src1 = 0) */
    CC_SBB,
    CC_LOGIC, /* res; CF = OF = 0 */
    CC_INC,  /* src1 + 1 = res; src2 holds the preserved CF */
    CC_DEC,
    CC_MUL,  /* res = low half; src1 != 0 means CF = OF = 1 */
    CC_NR,
};

struct emu_lazy {
    uint64_t src1, src2, res;
    uint8_t op;   /* enum emu_cc_op */
    uint8_t size; /* operand size in bytes */
};

/* Soft-TLB: guest-linear page -> host pointer, one table per privilege
 * (index 0 supervisor, 1 user).  A tag is the page-aligned linear address
 * that may be accessed that way; low bits set make it miss the fast path
 * (invalid, MMIO, or a write to a page holding decoded code). */
#define EMU_TLB_BITS 12
#define EMU_TLB_SIZE (1u << EMU_TLB_BITS)
#define EMU_TLB_INVALID 1ULL
#define EMU_TLB_MMIO 2ULL      /* not RAM: dispatch through machine_mmio */
#define EMU_TLB_NOTDIRTY 4ULL  /* write tag only: page holds decoded code */
#define EMU_TLB_WATCH 8ULL     /* accesses need checks on the slow path: a data
                                  breakpoint (DR7) on the page, or #AC */

#define EMU_TLB_LISTED_LOCAL 1   /* on tlb_local */
#define EMU_TLB_LISTED_GLOBAL 2  /* on tlb_global */

/* What every access reads, 32 bytes so an entry never straddles two
 * cache lines (at 48 bytes half of them did, and the tag compare of a
 * memory operand missed L1 more often). */
struct emu_tlb_entry {
    uint64_t tag_read, tag_write, tag_code;
    uintptr_t addend;  /* host = linear + addend (RAM pages) */
} __attribute__((aligned(32)));

/* The rest of an entry, for fills, flushes and the slow paths
 * (emu_tlb_page_of). */
struct emu_tlb_page {
    gpa_t gpa;         /* physical page */
    uint8_t global;
    uint8_t used;      /* EMU_TLB_LISTED_*: on emu_cpu's fill lists */
};

enum emu_mode {
    EMU_MODE_REAL = 0, /* not implemented yet: decodes as 16-bit */
    EMU_MODE_16,       /* 16-bit protected mode */
    EMU_MODE_32,       /* 32-bit protected / compatibility mode */
    EMU_MODE_64,       /* 64-bit long mode */
};

struct emu_cpu {
    struct cpu_state *s;
    struct machine *m;
    struct emu_cache *cache;
    struct vcpu *vcpu;   /* for exit statistics; NULL outside a machine */

    struct emu_lazy cc;

    /* Derived from s (emu_invalidate() recomputes). */
    uint8_t mode;        /* enum emu_mode of CS */
    uint8_t cpl;
    uint8_t mmu_idx;     /* 1 if CPL 3 */
    uint8_t phys_bits;   /* MAXPHYADDR for reserved-bit checks */

    struct emu_tlb_entry tlb[2][EMU_TLB_SIZE];
    struct emu_tlb_page tlb_page[2][EMU_TLB_SIZE];
    /* Entries filled since the flush that drops them, as non-global and
     * global translations, so a flush touches only those: a CR3 write
     * (every kernel entry and exit under PTI) walks only tlb_local.  Every
     * valid entry is on at least one list. */
    uint16_t tlb_local[2 * EMU_TLB_SIZE];
    uint16_t tlb_global[2 * EMU_TLB_SIZE];
    unsigned tlb_nlocal, tlb_nglobal;
    /* Changes with every TLB fill and flush, to a value no other vCPU ever
     * has (even, so mmu_idx can be or'ed in): the run loop's chained
     * blocks skip the code translation while it stays the same. */
    uint64_t tlb_gen;

    /* Options. */
    bool deliver_exceptions; /* through the IDT; false: stop with EMU_STOP_EXCEPTION */

    /* Current instruction and exception state (valid after a stop). */
    uint64_t insn_rip;       /* start of the executing instruction */
    uint8_t exc_vector;
    bool exc_has_error;
    uint32_t exc_error;
    bool exc_is_trap;        /* RIP already points past the instruction */
    bool exc_ext;            /* raised while delivering an external event */
    uint8_t exc_nesting;     /* for double/triple fault escalation */

    int16_t delivering;      /* vector being delivered, -1 if none */
    struct x86_segment scratch_seg;

    /* External interrupts (accel/emu.c wires these to the irqchip):
     * irq_pending returns a vector that waits for RFLAGS.IF, or -1;
     * irq_ack takes it and returns the vector to deliver (-1: gone).
     * NULL: no interrupt controller. */
    int (*irq_pending)(void *opaque);
    int (*irq_ack)(void *opaque);
    /* Called after every port or MMIO write (an EOI or a mask change may
     * have made an interrupt deliverable). */
    void (*io_written)(void *opaque);
    void *irq_opaque;
    /* NULL, or a flag the irq hooks' owner keeps nonzero whenever an
     * interrupt may be pending: while it is zero the run loop's per-block
     * poll skips the irq_pending call. */
    atomic_int *irq_hint;
    /* This vCPU's local APIC (accel/emu.c sets it; NULL in unit tests):
     * CR8 and IA32_APIC_BASE go through it, under the machine lock. */
    struct lapic *lapic;

    /* Debug registers (debug.c): bit n = DRn enabled by DR7 as an
     * instruction, data or I/O breakpoint; data/I/O hits waiting for the
     * end of the instruction; the #DB being raised is an instruction
     * breakpoint (its pushed RFLAGS.RF stays clear). */
    uint8_t dbg_exec, dbg_data, dbg_io, dbg_pending;
    bool dbg_insn_bp;
    /* RFLAGS.TF or RF may be set or an instruction breakpoint is enabled:
     * the run loop takes its one-instruction path, which clears this when
     * none is (so it is set by every write that may set TF or RF:
     * emu_set_rflags, emu_invalidate, faults); TF was set as the current
     * one-instruction block began. */
    bool dbg_step, step_tf;
    /* Alignment checking is on (CR0.AM, RFLAGS.AC, CPL 3): user TLB
     * entries send every access down the slow path, which checks. */
    bool ac_check;
    /* The software interrupt being raised is INT 1 (CD 01): unlike ICEBP
     * and the #DB traps it is subject to the gate's DPL. */
    bool exc_soft_int1;

    bool break_block;        /* leave the block after this instruction */
    /* The run loop executes a block's entries while their address is
     * below stop; a branch taken out of the middle of a block
     * (emu_leave_block) and break_block set it to 0. */
    uintptr_t stop;
    uint8_t stop_req;        /* enum emu_stop an instruction asked for, +1 */
    volatile int kick;       /* emu_kick(): stop soon */
    uint64_t budget;         /* instructions left in this emu_run */
    struct {                 /* statistics (QMP query-stats, provider emu) */
        uint64_t blocks_translated, blocks_executed, tlb_misses;
        uint64_t exceptions, interrupts;
    } stats;
    uint64_t icount;         /* instructions retired, plus the rest of a
                              * block an exception left (statistics) */
    int64_t tsc_offset;      /* guest TSC = host TSC + tsc_offset */

    jmp_buf jb;
};

/* A cache of decoded blocks for one machine, shared by its vCPUs. */
struct emu_cache *emu_cache_new(struct machine *m);
void emu_cache_free(struct emu_cache *cache);
/* Forget every decoded block (e.g. after a DMA into code pages). */
void emu_cache_flush(struct emu_cache *cache);
/* Tell the cache that [gpa, gpa+len) was written by someone other than the
 * emulated CPUs (device DMA, the loader). */
void emu_cache_invalidate_range(struct emu_cache *cache, gpa_t gpa, uint64_t len);

int emu_cpu_init(struct emu_cpu *c, struct cpu_state *s, struct machine *m,
                 struct emu_cache *cache);
void emu_cpu_destroy(struct emu_cpu *c);

/* Run at most budget instructions (interrupts and kicks are checked
 * between blocks).  Never more: without exceptions exactly budget; an
 * exception counts the rest of its block as spent, so a slice can end up
 * to one block early. */
enum emu_stop emu_run(struct emu_cpu *c, uint64_t budget);
static inline enum emu_stop emu_step(struct emu_cpu *c)
{
    return emu_run(c, 1);
}
void emu_kick(struct emu_cpu *c);

/* Write derived state (lazy flags) into the cpu_state. */
void emu_sync_state(struct emu_cpu *c);
/* The cpu_state was changed behind the emulator's back: recompute the
 * cached mode and CPL, flush the TLB, take RFLAGS as authoritative. */
void emu_invalidate(struct emu_cpu *c);
/* Flush the soft-TLB (all entries, or keep global ones). */
void emu_tlb_flush(struct emu_cpu *c, bool keep_global);
void emu_tlb_flush_page(struct emu_cpu *c, gva_t la);

/* Raise an exception from inside an instruction: never returns; the
 * instruction has no architectural effect (faults) and RIP points at it. */
__attribute__((noreturn)) void emu_raise_exception(struct emu_cpu *c, unsigned vector,
                                                   bool has_error, uint32_t error);

/* The guest's time-stamp counter now, and setting it. */
uint64_t emu_rdtsc(struct emu_cpu *c);
void emu_set_tsc(struct emu_cpu *c, uint64_t tsc);

/* RFLAGS with the lazy arithmetic bits materialised. */
uint64_t emu_get_rflags(struct emu_cpu *c);

/* Decode one instruction for tests and the in_asm log: returns its length,
 * or -1 if the bytes do not form an instruction the decoder knows (it
 * would raise #UD or #GP), or -2 if more than avail bytes would be needed. */
int emu_insn_length(const uint8_t *code, unsigned avail, enum emu_mode mode);
/* Same, but also says whether the executor implements the instruction. */
int emu_insn_length_impl(const uint8_t *code, unsigned avail, enum emu_mode mode,
                         bool *implemented);

#endif
