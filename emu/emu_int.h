/* Emulator internals shared by the decoder, executor, MMU and run loop. */
#ifndef VMON_EMU_EMU_INT_H
#define VMON_EMU_EMU_INT_H

#include <string.h>
#include "emu/emu.h"
#include "util/log.h"

/* The memory-access fast paths: forced inline, because in a file of many
 * small handlers (exec_fast.c) gcc's unit-growth limit otherwise leaves
 * them out of line, a call per guest memory access. */
#define EMU_INLINE static inline __attribute__((always_inline))

struct emu_insn;
typedef void (*emu_exec_fn)(struct emu_cpu *c, const struct emu_insn *i);

/* One decoded instruction, as stored in a block.  Register numbers are
 * 0-15; byte registers AH, CH, DH, BH (no REX) are 16-19. */
struct emu_insn {
    emu_exec_fn fn;
    int64_t disp;
    uint64_t imm;      /* sign- or zero-extended as the opcode defines */
    uint16_t imm2;     /* ENTER's second immediate, far pointer selector */
    int16_t adv;       /* in a block's fast sequence: RIP advance (len, or
                        * past a fused pair, or to a followed JMP's target) */
    uint8_t len;
    uint8_t opsize;    /* 1, 2, 4, 8 */
    uint8_t addrsize;  /* 2, 4, 8 */
    uint8_t seg;       /* segment of the memory operand (after overrides) */
    uint8_t rep;       /* 0, 0xf2, 0xf3 */
    uint8_t lock;
    uint8_t mem;       /* ModRM names memory */
    uint8_t reg;       /* ModRM.reg with REX.R (byte regs mapped 16-19) */
    uint8_t rm;        /* ModRM.rm with REX.B, or the register in the opcode */
    uint8_t base;      /* EMU_NOREG, EMU_RIPREL or 0-15 */
    uint8_t index;     /* EMU_NOREG or 0-15 */
    uint8_t scale;     /* shift 0-3 */
    uint8_t op;        /* opcode byte (last byte of the opcode) */
    uint8_t sub;       /* ModRM.reg without REX (group selector) or ALU op */
    uint8_t modrm;
    uint8_t pfx66;     /* operand-size prefix seen (SSE mandatory prefix) */
    uint8_t rex;
    uint8_t map;       /* 0 one-byte, 1 0F, 2 0F38, 3 0F3A */
    uint8_t nth;       /* in a block: guest instructions before this entry */
};

#define EMU_NOREG 0xff
#define EMU_RIPREL 0xfe

/* Opcode table entry. */
#define D_MODRM   0x0001
#define D_BYTE    0x0002  /* operand size 1 */
#define D_IMM8    0x0004
#define D_IMMZ    0x0008  /* imm16 or imm32 (sign-extended to 64) */
#define D_IMMV    0x0010  /* imm16/32/64 (mov r, imm) */
#define D_IMM16   0x0020
#define D_DEF64   0x0040  /* 64-bit default operand size in long mode */
#define D_F64     0x0080  /* operand size forced to 64 in long mode */
#define D_INV64   0x0100  /* invalid in 64-bit mode */
#define D_GROUP   0x0200  /* entry selects a group table by ModRM.reg */
#define D_MOFFS   0x0400  /* address-size immediate offset */
#define D_IMM8_16 0x0800  /* ENTER: iw, ib */
#define D_FARPTR  0x1000  /* ptr16:16/32 */
#define D_REL     0x2000  /* immediate is a relative branch target */
#define D_ZIMM    0x4000  /* immediate is zero-extended (not sign) */
#define D_PREFIX  0x8000  /* a prefix byte (decoder handles) */
#define D_KNOWN   0x10000 /* format known, not executed (raises #UD) */
#define D_NOREP   0x20000 /* F3 selects a different (unsupported) insn */
#define D_REGONLY 0x40000 /* ModRM.mod is ignored: always registers (MOV CR/DR) */

struct emu_opdesc {
    emu_exec_fn fn;
    uint32_t flags;
    const struct emu_opdesc *group;  /* 8 entries when D_GROUP */
};

extern const struct emu_opdesc emu_optab1[256];
extern const struct emu_opdesc emu_optab2[256];
void emu_exec_ud(struct emu_cpu *c, const struct emu_insn *i);
void emu_exec_gp_len(struct emu_cpu *c, const struct emu_insn *i);

/* Decode one instruction from p (avail bytes).  Returns the length, 0 if
 * more bytes are needed.  Undecodable instructions get fn = emu_exec_ud
 * (or emu_exec_gp_len for length > 15) and a best-effort length. */
int emu_decode(struct emu_insn *i, const uint8_t *p, unsigned avail, enum emu_mode mode);
/* Replace the generic handler of a decoded instruction by one specialised
 * for its operation, operand size and register/memory form, where there
 * is one (exec_fast.c).  Block building only: a specialised handler is
 * not one of those insn_ends_block() recognises. */
void emu_specialize(struct emu_insn *i, enum emu_mode mode);
/* A specialised instruction that may leave its block in the middle (a
 * 64-bit Jcc: taken, it ends the block; not taken, the block goes on). */
bool emu_side_exit(const struct emu_insn *i);
/* A specialised 64-bit JMP rel: a block that reaches one goes on at its
 * target when that is on the same page (the entries then follow the
 * jump, not the addresses). */
bool emu_direct_jump(const struct emu_insn *i);
/* The block's fast sequence into out (room for n): instructions whose
 * flags the next flag writer overwrites before anything can see them get
 * handlers that do not compute them; each register CMP, TEST or SUB
 * followed by a 64-bit Jcc becomes one entry that runs both, and a
 * followed JMP an entry that only moves RIP (its adv).  Returns the number
 * of entries, or 0 if the sequence would be the block's own.  A full run
 * of the block uses it; a run that stops inside the block uses the
 * block's own entries, whose every instruction shows its flags. */
unsigned emu_fast_sequence(const struct emu_insn *ins, unsigned n, struct emu_insn *out);

/* --- registers --------------------------------------------------------- */

/* Leave the running block after this instruction (a code-page write, a
 * mode change, a data breakpoint, ...). */
static inline void emu_break_block(struct emu_cpu *c)
{
    c->break_block = true;
    c->stop = 0;
}

/* A branch taken out of the middle of a block: the rest of the block is
 * not run; RIP already holds the target. */
static inline void emu_leave_block(struct emu_cpu *c)
{
    c->stop = 0;
}

static inline uint64_t emu_mask(unsigned size)
{
    return size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

static inline uint64_t emu_sext(uint64_t v, unsigned size)
{
    switch (size) {
    case 1: return (uint64_t)(int64_t)(int8_t)v;
    case 2: return (uint64_t)(int64_t)(int16_t)v;
    case 4: return (uint64_t)(int64_t)(int32_t)v;
    default: return v;
    }
}

static inline uint64_t emu_reg(struct emu_cpu *c, unsigned r, unsigned size)
{
    if (size == 1 && r >= 16)
        return (c->s->gpr[r - 16] >> 8) & 0xff;
    return c->s->gpr[r] & emu_mask(size);
}

static inline void emu_set_reg(struct emu_cpu *c, unsigned r, unsigned size, uint64_t v)
{
    uint64_t *g;

    switch (size) {
    case 1:
        if (r >= 16) {
            g = &c->s->gpr[r - 16];
            *g = (*g & ~0xff00ULL) | ((v & 0xff) << 8);
        } else {
            g = &c->s->gpr[r];
            *g = (*g & ~0xffULL) | (v & 0xff);
        }
        break;
    case 2:
        g = &c->s->gpr[r];
        *g = (*g & ~0xffffULL) | (v & 0xffff);
        break;
    case 4:
        c->s->gpr[r] = (uint32_t)v;
        break;
    default:
        c->s->gpr[r] = v;
        break;
    }
}

/* --- exceptions --------------------------------------------------------- */

__attribute__((noreturn)) static inline void emu_fault(struct emu_cpu *c, unsigned vec)
{
    emu_raise_exception(c, vec, false, 0);
}
__attribute__((noreturn)) static inline void emu_fault_err(struct emu_cpu *c, unsigned vec,
                                                           uint32_t err)
{
    emu_raise_exception(c, vec, true, err);
}
/* Deliver an event through the IDT now (may raise a nested exception). */
void emu_deliver_event(struct emu_cpu *c, unsigned vec, bool has_err, uint32_t err, bool soft,
                       bool ext);
/* Hardware task switch to the 32-bit TSS sel (task.c); an exception's
 * error code is pushed on the new task's stack. */
enum emu_task_reason { TASK_JMP, TASK_CALL, TASK_INT, TASK_IRET };
void emu_task_switch(struct emu_cpu *c, uint16_t sel, enum emu_task_reason why, bool has_err,
                     uint32_t err);

/* --- debug registers (debug.c) ---------------------------------------------- */

#define EMU_DEBUG_WATCH_READ 1
#define EMU_DEBUG_WATCH_WRITE 2

/* DR0-DR3, DR7 or CR4.DE changed (or the state was loaded): recompute
 * the breakpoint masks. */
void emu_debug_update(struct emu_cpu *c);
/* EMU_DEBUG_WATCH_* for the TLB fill of a page (data breakpoints). */
unsigned emu_debug_page_watch(const struct emu_cpu *c, uint64_t page);
/* Before executing at linear address la: #DB fault on a breakpoint. */
void emu_debug_check_exec(struct emu_cpu *c, uint64_t la);
/* A data access or port access that completed: note breakpoint hits. */
void emu_debug_data(struct emu_cpu *c, uint64_t la, unsigned size, bool write);
void emu_debug_io(struct emu_cpu *c, uint16_t port, unsigned size);
/* MOV to/from a debug register: #DB (DR6.BD) while DR7.GD is set. */
void emu_debug_mov_dr(struct emu_cpu *c);
/* The instruction just completed: raise the #DB trap for its data/I/O
 * hits and, if it began with RFLAGS.TF, single-step (DR6.BS). */
__attribute__((noreturn)) void emu_debug_trap(struct emu_cpu *c, bool single_step);
/* Take a pending, unblocked NMI (intr.c); true if one was delivered. */
bool emu_take_nmi(struct emu_cpu *c);
/* Software interrupts and INTO/INT3: RIP already past the instruction. */
__attribute__((noreturn)) void emu_raise_trap(struct emu_cpu *c, unsigned vector);

/* --- lazy flags ---------------------------------------------------------- */

#define EMU_CC_MASK (X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF | \
                     X86_RFLAGS_SF | X86_RFLAGS_OF)

uint64_t emu_cc_compute(const struct emu_lazy *cc);
bool emu_cc_cf(const struct emu_lazy *cc);
/* Evaluate condition code cond (0-15, the Jcc/SETcc/CMOVcc encoding). */
bool emu_cc_test(struct emu_cpu *c, unsigned cond);

static inline void emu_cc_set(struct emu_cpu *c, unsigned op, unsigned size, uint64_t s1,
                              uint64_t s2, uint64_t res)
{
    c->cc.op = op;
    c->cc.size = size;
    c->cc.src1 = s1;
    c->cc.src2 = s2;
    c->cc.res = res;
}

/* Replace the arithmetic flags by explicit values (CC_MASK bits). */
static inline void emu_cc_set_flags(struct emu_cpu *c, uint64_t flags)
{
    c->cc.op = CC_EFLAGS;
    c->cc.src1 = flags & EMU_CC_MASK;
}

static inline uint64_t emu_cc_flags(struct emu_cpu *c)
{
    if (c->cc.op == CC_EFLAGS)
        return c->cc.src1;
    return emu_cc_compute(&c->cc);
}

/* Write RFLAGS as POPF/IRET/SAHF would (caller applies privilege rules). */
void emu_set_rflags(struct emu_cpu *c, uint64_t v);

/* --- memory -------------------------------------------------------------- */

enum emu_access { ACC_READ = 0, ACC_WRITE = 1, ACC_EXEC = 2 };

uint64_t emu_linear_slow(struct emu_cpu *c, unsigned seg, uint64_t off, unsigned size,
                         enum emu_access acc);

/* Segment offset to linear address, with the limit checks of the mode. */
EMU_INLINE uint64_t emu_linear(struct emu_cpu *c, unsigned seg, uint64_t off, unsigned size,
                                  enum emu_access acc)
{
    if (likely(c->mode == EMU_MODE_64))
        return seg >= S_FS && seg < S_NR ? off + c->s->seg[seg].base : off;
    return emu_linear_slow(c, seg, off, size, acc);
}

uint64_t emu_read_slow(struct emu_cpu *c, uint64_t la, unsigned size, enum emu_access acc);
void emu_write_slow(struct emu_cpu *c, uint64_t la, unsigned size, uint64_t v);
/* Host pointer for a read-modify-write of [la, la+size) in one RAM page, or
 * NULL (split/MMIO: use read then write).  Checks write permission. */
void *emu_rmw_ptr_slow(struct emu_cpu *c, uint64_t la, unsigned size);
/* Translate for access; raises #PF.  Returns the physical address; sets
 * *host to the host pointer of the byte if it is RAM. */
gpa_t emu_translate(struct emu_cpu *c, uint64_t la, enum emu_access acc, uint8_t **host);

EMU_INLINE uint64_t emu_load_host(const void *p, unsigned size)
{
    switch (size) {
    case 1: return *(const uint8_t *)p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

EMU_INLINE void emu_store_host(void *p, unsigned size, uint64_t v)
{
    switch (size) {
    case 1: *(uint8_t *)p = (uint8_t)v; break;
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    default: memcpy(p, &v, 8); break;
    }
}

EMU_INLINE struct emu_tlb_entry *emu_tlb_entry(struct emu_cpu *c, uint64_t la)
{
    return &c->tlb[c->mmu_idx][(la >> 12) & (EMU_TLB_SIZE - 1)];
}

static inline struct emu_tlb_page *emu_tlb_page_of(struct emu_cpu *c,
                                                   const struct emu_tlb_entry *e)
{
    return &c->tlb_page[0][0] + (e - &c->tlb[0][0]);
}

EMU_INLINE bool emu_in_page(uint64_t la, unsigned size)
{
    return (la & 0xfff) + size <= 0x1000;
}

EMU_INLINE uint64_t emu_read_la(struct emu_cpu *c, uint64_t la, unsigned size)
{
    struct emu_tlb_entry *e = emu_tlb_entry(c, la);

    if (likely(e->tag_read == (la & ~0xfffULL) && emu_in_page(la, size)))
        return emu_load_host((void *)(uintptr_t)(la + e->addend), size);
    return emu_read_slow(c, la, size, ACC_READ);
}

EMU_INLINE void emu_write_la(struct emu_cpu *c, uint64_t la, unsigned size, uint64_t v)
{
    struct emu_tlb_entry *e = emu_tlb_entry(c, la);

    if (likely(e->tag_write == (la & ~0xfffULL) && emu_in_page(la, size)))
        emu_store_host((void *)(uintptr_t)(la + e->addend), size, v);
    else
        emu_write_slow(c, la, size, v);
}

EMU_INLINE void *emu_rmw_ptr(struct emu_cpu *c, uint64_t la, unsigned size)
{
    struct emu_tlb_entry *e = emu_tlb_entry(c, la);

    if (likely(e->tag_write == (la & ~0xfffULL) && emu_in_page(la, size)))
        return (void *)(uintptr_t)(la + e->addend);
    return emu_rmw_ptr_slow(c, la, size);
}

EMU_INLINE uint64_t emu_read(struct emu_cpu *c, unsigned seg, uint64_t off, unsigned size)
{
    return emu_read_la(c, emu_linear(c, seg, off, size, ACC_READ), size);
}

EMU_INLINE void emu_write(struct emu_cpu *c, unsigned seg, uint64_t off, unsigned size,
                             uint64_t v)
{
    emu_write_la(c, emu_linear(c, seg, off, size, ACC_WRITE), size, v);
}

/* Check that a write of size bytes at seg:off would succeed, without
 * writing (used to order faults before side effects). */
void emu_probe_write(struct emu_cpu *c, uint64_t la, unsigned size);

/* Effective address of the ModRM memory operand (offset, not linear). */
EMU_INLINE uint64_t emu_ea(struct emu_cpu *c, const struct emu_insn *i)
{
    uint64_t a = (uint64_t)i->disp;

    if (i->base < 16)
        a += c->s->gpr[i->base];
    else if (i->base == EMU_RIPREL)
        a += c->s->rip;
    if (i->index != EMU_NOREG)
        a += c->s->gpr[i->index] << i->scale;
    return a & emu_mask(i->addrsize);
}

/* --- stack ---------------------------------------------------------------- */

unsigned emu_stack_size(struct emu_cpu *c);  /* address size of SS: 2, 4, 8 */
void emu_push(struct emu_cpu *c, unsigned size, uint64_t v);
uint64_t emu_pop(struct emu_cpu *c, unsigned size);

/* --- code cache ------------------------------------------------------------- */

/* The page at host pointer hva (RAM) was written: drop its blocks. */
void emu_cache_page_written(struct emu_cpu *c, gpa_t gpa);
bool emu_cache_page_has_code(struct emu_cache *cache, gpa_t gpa);
/* Invalidate every TLB entry (initialisation). */
void emu_tlb_reset(struct emu_cpu *c);
/* Recompute mode/CPL after CS, CR0 or EFER changed. */
void emu_update_mode(struct emu_cpu *c);
/* CR0.AM, RFLAGS.AC or CPL changed: alignment checking on or off (seg.c). */
void emu_ac_update(struct emu_cpu *c);
/* A user data access of size bytes at la in the slow path: #AC(0) if
 * alignment checking is on and la is not a multiple of size. */
static inline void emu_ac_check(struct emu_cpu *c, uint64_t la, unsigned size)
{
    if (unlikely(c->ac_check) && c->mmu_idx == 1 && (la & (size - 1)))
        emu_fault_err(c, EXC_AC, 0);
}

/* Port I/O through the machine (takes the machine lock). */
uint64_t emu_pio_in(struct emu_cpu *c, uint16_t port, unsigned size);
void emu_pio_out(struct emu_cpu *c, uint16_t port, unsigned size, uint64_t v);

#endif
