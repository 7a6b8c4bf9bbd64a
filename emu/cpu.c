/* The run loop, the cache of decoded blocks and exception plumbing.
 *
 * A block is a run of decoded instructions starting at a guest-physical
 * address, ending at a branch, at the end of its 4 KiB page or after
 * BLOCK_MAX instructions; a 64-bit Jcc is a side exit (taken, it leaves
 * the block; not taken, the block goes on).  Blocks never span pages, so a write to a page
 * invalidates exactly the blocks of that page: the soft-TLB marks writable
 * mappings of code pages NOTDIRTY, which sends the first write to the slow
 * path, which drops the page's blocks.  Storage is two arenas allocated
 * once; when either fills, the whole cache is flushed. */
#include <errno.h>
#include <stdlib.h>
#include <capstone/capstone.h>

#include "emu/exec.h"

#define BLOCK_MAX 64
#define CACHE_BLOCKS 32768
#define CACHE_INSNS (CACHE_BLOCKS * 32)
#define HASH_BITS 15
#define NO_BLOCK 0xffffffffu

struct emu_block {
    gpa_t gpa;
    uint32_t insn0;        /* its instructions, one entry each */
    uint32_t fast0;        /* the fast sequence (emu_fast_sequence), or insn0 */
    uint32_t hash_next;
    uint32_t page_next;
    uint32_t next[2];      /* predicted successors (verified before use) */
    uint16_t n;            /* instructions */
    uint16_t nfast;        /* entries of the fast sequence */
    uint8_t mode;          /* BLOCK_DEAD once dropped */
    uint64_t entry_la;     /* linear address and TLB state (chain_lookup_la) */
    uint64_t entry_tlb;    /* of its last entry through a translation */
} __attribute__((aligned(64)));  /* a block transition touches one line */

/* Mode of a dropped block: matches no lookup, so a stale chain prediction
 * pointing at it is refused. */
#define BLOCK_DEAD 0xff

struct emu_cache {
    struct machine *m;
    struct emu_block *blocks;
    uint32_t nblocks;
    struct emu_insn *insns;
    uint32_t ninsns;
    uint32_t hash[1u << HASH_BITS];
    uint32_t *page_head;   /* per RAM page: first block on it */
    uint64_t npages_low, npages;
    struct emu_cpu *cpus[MACHINE_MAX_VCPUS];
    int ncpus;
    uint64_t flushes;
};

static int64_t cache_page_index(const struct emu_cache *cache, gpa_t gpa)
{
    uint64_t pfn = gpa >> 12;

    if (pfn < cache->npages_low)
        return (int64_t)pfn;
    if (gpa >= MACHINE_HIGHMEM_BASE) {
        uint64_t k = ((gpa - MACHINE_HIGHMEM_BASE) >> 12) + cache->npages_low;

        if (k < cache->npages)
            return (int64_t)k;
    }
    return -1;
}

struct emu_cache *emu_cache_new(struct machine *m)
{
    struct emu_cache *cache = calloc(1, sizeof(*cache));

    if (!cache)
        return NULL;
    cache->m = m;
    cache->npages_low = m->lowmem_size >> 12;
    cache->npages = cache->npages_low + (m->highmem_size >> 12);
    if (posix_memalign((void **)&cache->blocks, _Alignof(struct emu_block),
                       CACHE_BLOCKS * sizeof(*cache->blocks)))
        cache->blocks = NULL;
    else
        memset(cache->blocks, 0, CACHE_BLOCKS * sizeof(*cache->blocks));
    cache->insns = calloc(CACHE_INSNS, sizeof(*cache->insns));
    cache->page_head = malloc((cache->npages + 1) * sizeof(uint32_t));
    if (!cache->blocks || !cache->insns || !cache->page_head) {
        emu_cache_free(cache);
        return NULL;
    }
    emu_cache_flush(cache);
    return cache;
}

void emu_cache_free(struct emu_cache *cache)
{
    if (!cache)
        return;
    free(cache->blocks);
    free(cache->insns);
    free(cache->page_head);
    free(cache);
}

void emu_cache_flush(struct emu_cache *cache)
{
    cache->nblocks = 0;
    cache->ninsns = 0;
    memset(cache->hash, 0xff, sizeof(cache->hash));
    memset(cache->page_head, 0xff, (cache->npages + 1) * sizeof(uint32_t));
    cache->flushes++;
    /* NOTDIRTY marks in TLBs are now stale; they clear themselves on the
     * next write to each page. */
}

static inline uint32_t cache_hash(gpa_t gpa, unsigned mode)
{
    return (uint32_t)(((gpa ^ ((uint64_t)mode << 52)) * 0x9e3779b97f4a7c15ULL) >> (64 - HASH_BITS));
}

bool emu_cache_page_has_code(struct emu_cache *cache, gpa_t gpa)
{
    int64_t k = cache_page_index(cache, gpa);

    return k >= 0 && cache->page_head[k] != NO_BLOCK;
}

static void cache_drop_page(struct emu_cache *cache, int64_t k)
{
    uint32_t b = cache->page_head[k];

    while (b != NO_BLOCK) {
        struct emu_block *blk = &cache->blocks[b];
        uint32_t *pp = &cache->hash[cache_hash(blk->gpa, blk->mode)];

        while (*pp != NO_BLOCK && *pp != b)
            pp = &cache->blocks[*pp].hash_next;
        if (*pp == b)
            *pp = blk->hash_next;
        blk->mode = BLOCK_DEAD;
        b = blk->page_next;
    }
    cache->page_head[k] = NO_BLOCK;
}

void emu_cache_page_written(struct emu_cpu *c, gpa_t gpa)
{
    int64_t k = cache_page_index(c->cache, gpa);

    if (k < 0 || c->cache->page_head[k] == NO_BLOCK)
        return;
    LOG(LOG_IN_ASM, "emu: code page %#llx written, dropping its blocks\n",
        (unsigned long long)(gpa & ~0xfffULL));
    cache_drop_page(c->cache, k);
    /* The running block may be one of them: finish this instruction only. */
    emu_break_block(c);
}

void emu_cache_invalidate_range(struct emu_cache *cache, gpa_t gpa, uint64_t len)
{
    for (gpa_t p = gpa & ~0xfffULL; p < gpa + len; p += 0x1000) {
        int64_t k = cache_page_index(cache, p);

        if (k >= 0 && cache->page_head[k] != NO_BLOCK)
            cache_drop_page(cache, k);
    }
}

static void tlb_mark_notdirty(struct emu_cpu *c, struct emu_tlb_entry *e, gpa_t page)
{
    if (emu_tlb_page_of(c, e)->gpa == page && !(e->tag_write & EMU_TLB_INVALID))
        e->tag_write |= EMU_TLB_NOTDIRTY;
}

/* A page now holds code: writable TLB entries of every vCPU must take the
 * slow path on their next write. */
static void cache_mark_code_page(struct emu_cache *cache, gpa_t page)
{
    for (int n = 0; n < cache->ncpus; n++) {
        struct emu_cpu *c = cache->cpus[n];

        struct emu_tlb_entry *base = &c->tlb[0][0];

        /* Every valid entry is on one of the fill lists. */
        for (unsigned j = 0; j < c->tlb_nlocal; j++)
            tlb_mark_notdirty(c, &base[c->tlb_local[j]], page);
        for (unsigned j = 0; j < c->tlb_nglobal; j++)
            tlb_mark_notdirty(c, &base[c->tlb_global[j]], page);
    }
}

/* --- instruction fetch and block building --------------------------------- */

static bool insn_ends_block(const struct emu_insn *i)
{
    emu_exec_fn f = i->fn;

    return f == exec_jcc || f == exec_jmp_rel || f == exec_call_rel || f == exec_jmp_E ||
           f == exec_call_E || f == exec_ret || f == exec_loop || f == exec_jrcxz ||
           f == exec_int3 || f == exec_int || f == exec_into || f == exec_hlt ||
           f == emu_exec_ud || f == emu_exec_gp_len || f == exec_ud2 || f == exec_sti ||
           f == exec_popf || f == exec_mov_sreg_E || f == exec_pop_sreg ||
           f == exec_iret || f == exec_mov_cr || f == exec_jmp_far || f == exec_retf ||
           f == exec_far_E || f == exec_syscall || f == exec_sysret || f == exec_grp7 ||
           f == exec_wrmsr || f == exec_grp6;
}

/* Where the block goes on after i, a (specialised) instruction that ends
 * a block in general and ends at page offset pos: pos itself for a side
 * exit, the target of a 64-bit JMP rel on the same page (the block
 * follows it), or -1 where the block ends. */
static int block_continues_at(const struct emu_insn *i, unsigned pos)
{
    int64_t target;

    if (emu_side_exit(i))
        return (int)pos;
    if (!emu_direct_jump(i))
        return -1;
    target = (int64_t)pos + (int64_t)i->imm;
    return target >= 0 && target < 0x1000 ? (int)target : -1;
}

static struct emu_block *cache_build(struct emu_cpu *c, gpa_t gpa, const uint8_t *host)
{
    struct emu_cache *cache = c->cache;
    int64_t k = cache_page_index(cache, gpa);
    const uint8_t *page = host - (gpa & 0xfff);
    struct emu_block *b;
    int pos = (int)(gpa & 0xfff);
    unsigned n;

    c->stats.blocks_translated++;

    if (k < 0)
        return NULL;
    if (cache->nblocks >= CACHE_BLOCKS || cache->ninsns + 2 * BLOCK_MAX > CACHE_INSNS)
        emu_cache_flush(cache);
    b = &cache->blocks[cache->nblocks];
    b->gpa = gpa;
    b->mode = c->mode;
    b->insn0 = cache->ninsns;
    b->next[0] = b->next[1] = NO_BLOCK;
    b->entry_tlb = 0;  /* no TLB state is 0 */
    b->n = 0;
    while (b->n < BLOCK_MAX && pos >= 0 && pos < 0x1000) {
        struct emu_insn *i = &cache->insns[b->insn0 + b->n];
        int len = emu_decode(i, page + pos, 0x1000 - (unsigned)pos, c->mode);
        bool end;

        if (len == 0)
            break;  /* the instruction continues on the next page */
        i->nth = (uint8_t)b->n;
        i->adv = (int16_t)len;
        b->n++;
        pos += len;
        /* Whether it ends the block is read from the generic handler,
         * which emu_specialize replaces. */
        end = insn_ends_block(i);
        emu_specialize(i, c->mode);
        if (end)
            pos = block_continues_at(i, (unsigned)pos);
    }
    if (b->n == 0)
        return NULL;
    cache->ninsns += b->n;
    b->fast0 = b->insn0;
    b->nfast = b->n;
    n = emu_fast_sequence(&cache->insns[b->insn0], b->n, &cache->insns[cache->ninsns]);
    if (n) {
        b->fast0 = cache->ninsns;
        b->nfast = (uint16_t)n;
        cache->ninsns += n;
    }
    if (cache->page_head[k] == NO_BLOCK)
        cache_mark_code_page(cache, gpa & ~0xfffULL);
    b->page_next = cache->page_head[k];
    cache->page_head[k] = cache->nblocks;
    b->hash_next = cache->hash[cache_hash(gpa, b->mode)];
    cache->hash[cache_hash(gpa, b->mode)] = cache->nblocks;
    cache->nblocks++;
    return b;
}

/* -d in_asm: the block as capstone disassembles it. */
static void log_block(struct emu_cpu *c, const struct emu_block *b, const uint8_t *host)
{
    static const cs_mode modes[] = { CS_MODE_16, CS_MODE_16, CS_MODE_32, CS_MODE_64 };
    uint64_t rip = c->s->rip;
    uint64_t page_la = rip & ~0xfffULL;
    const uint8_t *page = host - (b->gpa & 0xfff);
    uint64_t pos = b->gpa & 0xfff;
    csh h;

    log_printf("IN: rip=%#llx gpa=%#llx (%u insns)\n", (unsigned long long)rip,
               (unsigned long long)b->gpa, b->n);
    if (cs_open(CS_ARCH_X86, modes[c->mode & 3], &h) != CS_ERR_OK)
        return;
    for (unsigned k = 0; k < b->n; k++) {
        const struct emu_insn *i = &c->cache->insns[b->insn0 + k];
        cs_insn *ci;
        size_t n = cs_disasm(h, page + pos, i->len, page_la + pos, 1, &ci);

        if (n) {
            log_printf("  %#llx: %-8s %s%s\n", (unsigned long long)(page_la + pos),
                       ci[0].mnemonic, ci[0].op_str, i->fn == emu_exec_ud ? "   [#UD]" : "");
            cs_free(ci, n);
        } else {
            log_printf("  %#llx: (%u bytes capstone does not know)\n",
                       (unsigned long long)(page_la + pos), i->len);
        }
        pos += i->len;
        if (emu_direct_jump(i))  /* the block followed it (cache_build) */
            pos = (pos + i->imm) & 0xfff;
    }
    cs_close(&h);
}

static void log_cpu_line(void *opaque, const char *line)
{
    log_printf("%s\n", line);
}

static struct emu_block *cache_lookup(struct emu_cache *cache, gpa_t gpa, unsigned mode)
{
    uint32_t n = cache->hash[cache_hash(gpa, mode)];

    while (n != NO_BLOCK) {
        struct emu_block *b = &cache->blocks[n];

        if (b->gpa == gpa && b->mode == mode)
            return b;
        n = b->hash_next;
    }
    return NULL;
}

/* Decode one instruction the slow way (crossing a page, or not in RAM),
 * fetching byte by byte so a fault names the first byte that is missing. */
static inline uint64_t fetch_la(const struct emu_cpu *c, uint64_t la, unsigned k)
{
    return c->mode == EMU_MODE_64 ? la + k : (uint32_t)(la + k);
}

/* The last instruction fetch_slow decoded, keyed by its bytes and mode
 * (decoding depends on nothing else), so an instruction that crosses a
 * page inside a loop is not decoded again on every execution. */
static __thread struct {
    struct emu_insn insn;
    uint8_t bytes[15];
    uint8_t mode;
    bool valid;
} slow_last;

/* Fetch and decode an instruction that is not in a cached block (it
 * crosses a page, or runs from outside RAM).  Bytes are read only as the
 * decoder asks for them, so a #PF names the first missing byte the
 * instruction needs and MMIO sees no read beyond the instruction; in RAM
 * the rest of the first page is read at once (same translation, so the
 * same fault on its first byte). */
static void fetch_slow(struct emu_cpu *c, uint64_t la, struct emu_insn *i, bool ram)
{
    uint8_t buf[16];
    unsigned have = 0, k;

    if (ram) {
        unsigned first = 0x1000 - (unsigned)(la & 0xfff);

        for (; have < first && have < 15; have++)
            buf[have] = (uint8_t)emu_read_slow(c, fetch_la(c, la, have), 1, ACC_EXEC);
    }
    if (slow_last.valid && slow_last.mode == c->mode) {
        bool same = true;

        /* Same bytes so far: the decoder would ask for exactly the bytes
         * the cached instruction has. */
        for (k = 0; same && k < slow_last.insn.len; k++) {
            if (k == have)
                buf[have++] = (uint8_t)emu_read_slow(c, fetch_la(c, la, k), 1, ACC_EXEC);
            same = buf[k] == slow_last.bytes[k];
        }
        if (same) {
            *i = slow_last.insn;
            return;
        }
    }
    for (k = have;; k++) {
        if (emu_decode(i, buf, k, c->mode) > 0)
            break;
        if (k == 15)
            return;  /* as before: 15 bytes always decode (#GP at worst) */
        if (k == have)
            buf[have++] = (uint8_t)emu_read_slow(c, fetch_la(c, la, k), 1, ACC_EXEC);
    }
    emu_specialize(i, c->mode);
    slow_last.insn = *i;
    memcpy(slow_last.bytes, buf, i->len);
    slow_last.mode = c->mode;
    slow_last.valid = true;
}

static inline void exec_one(struct emu_cpu *c, const struct emu_insn *i)
{
    struct cpu_state *s = c->s;

    c->insn_rip = s->rip;
    s->rip += i->len;
    if (unlikely(c->mode != EMU_MODE_64))
        s->rip &= c->mode == EMU_MODE_32 ? 0xffffffffULL : 0xffffULL;
    i->fn(c, i);
    c->budget--;
}

/* c->dbg_step was set (TF, RF or an instruction breakpoint may be in
 * force): decide whether the next block runs one instruction at a time,
 * note TF for the trap after it (c->step_tf), and check the instruction's
 * linear address against the breakpoints unless RF suppresses that for
 * this one instruction (RF is consumed here).  Nothing in force: clear
 * dbg_step, the fast path runs again. */
static __attribute__((noinline)) bool debug_before(struct emu_cpu *c, uint64_t la)
{
    uint64_t fl = c->s->rflags;

    c->step_tf = (fl & X86_RFLAGS_TF) != 0;
    if (!(fl & (X86_RFLAGS_TF | X86_RFLAGS_RF)) && !c->dbg_exec) {
        c->dbg_step = false;
        return false;
    }
    if (fl & X86_RFLAGS_RF)
        c->s->rflags &= ~X86_RFLAGS_RF;
    else if (c->dbg_exec)
        emu_debug_check_exec(c, la);
    return true;
}

/* A data or I/O breakpoint hit ended the block after an instruction:
 * give back the n instructions not run, then raise the #DB trap. */
static __attribute__((noinline, noreturn)) void break_debug_trap(struct emu_cpu *c, unsigned n)
{
    c->budget += n;
    emu_debug_trap(c, c->step_tf);
}

/* A handler set break_block: clear it (and raise a data breakpoint's #DB
 * trap, giving back the left instructions not run).  True if it was set. */
static inline bool took_break(struct emu_cpu *c, unsigned left)
{
    if (!c->break_block)
        return false;
    c->break_block = false;
    if (unlikely(c->dbg_pending))
        break_debug_trap(c, left);
    return true;
}

/* Whether the run loop must look before running another block: a kick,
 * a stop request, an NMI, a deliverable interrupt that may be pending
 * (the LAPIC's hint), single-stepping or per-block logging. */
static inline bool attention_needed(struct emu_cpu *c)
{
    const struct cpu_state *s = c->s;

    return __atomic_load_n(&c->kick, __ATOMIC_ACQUIRE) || c->stop_req ||
           s->events.nmi_pending || c->dbg_step || unlikely(log_mask & LOG_CPU) ||
           (c->irq_pending && (s->rflags & X86_RFLAGS_IF) &&
            (!c->irq_hint || atomic_load_explicit(c->irq_hint, memory_order_relaxed)));
}

/* A full run of a block: its fast sequence, n entries from i.  RIP lives
 * in a register: before each handler, s->rip is set past the entry (its
 * adv) and insn_rip to the entry's start; no handler moves RIP without
 * leaving the block (a taken branch, emu_leave_block, or break_block),
 * except the ones whose entries say so (a followed JMP's adv, a fused
 * pair's).  A side exit that branches back to the block's own entry (a
 * loop) runs the block again here while the budget allows and nothing
 * needs the run loop's attention: the block is still the one for that
 * address, since nothing that could change that (a code write, a TLB
 * flush, a mode change) let the block go on.  Returns how many of the
 * block's instructions (of ninsns) did not run because one left the block
 * early in its last run (a breakpoint hit that set break_block raises its
 * #DB trap).  Budget and icount are the caller's, per block: a fault
 * longjmps out with the rest of the block already counted, so a slice may
 * end up to a block early, never late.  The mode cannot change inside a
 * block (mode-changing instructions end theirs), so the RIP wrap is
 * chosen once per block. */
static inline __attribute__((always_inline)) unsigned
run_fast(struct emu_cpu *c, const struct emu_insn *first, unsigned n, unsigned ninsns, bool wrap,
         uint64_t mask)
{
    struct cpu_state *s = c->s;
    const struct emu_insn *end = first + n;
    const uint64_t entry = s->rip;
    unsigned left;

    for (;;) {
        const struct emu_insn *i = first;
        uint64_t rip = entry;

        c->stop = (uintptr_t)end;
        do {
            c->insn_rip = rip;
            rip += (uint64_t)(int64_t)i->adv;
            if (wrap)
                rip &= mask;
            s->rip = rip;
            i->fn(c, i);
            i++;
        } while ((uintptr_t)i < c->stop);
        if (i == end)
            left = 0;
        else
            left = ninsns - i->nth;
        if (unlikely(took_break(c, left)))
            return left;
        if (!left || s->rip != entry || c->budget + left < ninsns || attention_needed(c))
            return left;
        c->budget -= ninsns - left;
        c->stats.blocks_executed++;
    }
}

/* A run that stops inside a block (budget, single-step, breakpoints): the
 * first n of its own entries, each with all its flags.  Returns how many of the n did not run, as
 * run_fast. */
static unsigned run_exact(struct emu_cpu *c, const struct emu_insn *i, unsigned n)
{
    struct cpu_state *s = c->s;
    const struct emu_insn *end = i + n;
    uint64_t mask = c->mode == EMU_MODE_64 ? ~0ULL :
                    c->mode == EMU_MODE_32 ? 0xffffffffULL : 0xffffULL;
    unsigned left;

    c->stop = (uintptr_t)end;
    do {
        c->insn_rip = s->rip;
        s->rip = (s->rip + i->len) & mask;
        i->fn(c, i);
        i++;
    } while ((uintptr_t)i < c->stop);
    left = (unsigned)(end - i);
    took_break(c, left);
    return left;
}

/* The block that followed prev last time(s), if it is still the right one
 * for (gpa, mode): saves the hash walk, whose cache misses were most of
 * the dispatch cost.  Indices are checked against the arena and the block
 * against the key, so predictions need no invalidation. */
static inline struct emu_block *chain_lookup(struct emu_cache *cache, const struct emu_block *prev,
                                             gpa_t gpa, unsigned mode)
{
    for (int k = 0; k < 2; k++) {
        uint32_t n = prev->next[k];

        if (n < cache->nblocks && cache->blocks[n].gpa == gpa && cache->blocks[n].mode == mode)
            return &cache->blocks[n];
    }
    return NULL;
}

/* The same, without translating: the successor was last entered at
 * linear address la while this vCPU's TLB was in state tlb (emu_cpu's
 * tlb_gen, unique per vCPU and bumped by every fill and flush, | mmu_idx),
 * so la still translates to its gpa.  A dropped block's mode fails. */
static inline struct emu_block *chain_lookup_la(struct emu_cache *cache,
                                                const struct emu_block *prev, uint64_t la,
                                                uint64_t tlb, unsigned mode)
{
    for (int k = 0; k < 2; k++) {
        uint32_t n = prev->next[k];

        if (n < cache->nblocks && cache->blocks[n].entry_la == la &&
            cache->blocks[n].entry_tlb == tlb && cache->blocks[n].mode == mode)
            return &cache->blocks[n];
    }
    return NULL;
}

static inline void chain_remember(struct emu_block *prev, uint32_t n)
{
    prev->next[1] = prev->next[0];
    prev->next[0] = n;
}

/* --- exceptions ------------------------------------------------------------ */

void emu_raise_exception(struct emu_cpu *c, unsigned vector, bool has_error, uint32_t error)
{
    c->exc_vector = vector;
    c->exc_has_error = has_error;
    c->exc_error = error;
    c->exc_is_trap = false;
    LOG(LOG_INT, "emu: exception %u err=%#x rip=%#llx\n", vector, has_error ? error : 0,
        (unsigned long long)c->insn_rip);
    _longjmp(c->jb, 1);
}

void emu_raise_trap(struct emu_cpu *c, unsigned vector)
{
    c->exc_vector = vector;
    c->exc_has_error = false;
    c->exc_error = 0;
    c->exc_is_trap = true;
    c->exc_ext = false;
    LOG(LOG_INT, "emu: trap %u rip=%#llx\n", vector, (unsigned long long)c->s->rip);
    _longjmp(c->jb, 1);
}

void emu_exec_ud(struct emu_cpu *c, const struct emu_insn *i)
{
    LOG(LOG_UNIMP, "emu: #UD at rip=%#llx (opcode map %u byte %#x)\n",
        (unsigned long long)c->insn_rip, i->map, i->op);
    emu_fault(c, EXC_UD);
}

void emu_exec_gp_len(struct emu_cpu *c, const struct emu_insn *i)
{
    emu_fault_err(c, EXC_GP, 0);
}

/* --- state ------------------------------------------------------------------- */

void emu_update_mode(struct emu_cpu *c)
{
    struct cpu_state *s = c->s;
    const struct x86_segment *cs = &s->seg[S_CS];

    if (!(s->cr0 & X86_CR0_PE))
        c->mode = EMU_MODE_REAL;
    else if ((s->efer & X86_EFER_LMA) && cs->l)
        c->mode = EMU_MODE_64;
    else
        c->mode = cs->db ? EMU_MODE_32 : EMU_MODE_16;
    c->cpl = (s->cr0 & X86_CR0_PE) ? s->seg[S_SS].dpl : 0;
    if (s->rflags & X86_RFLAGS_VM)
        c->cpl = 3;
    c->mmu_idx = c->cpl == 3;
    emu_ac_update(c);
}

void emu_sync_state(struct emu_cpu *c)
{
    c->s->rflags = emu_get_rflags(c);
    emu_cc_set_flags(c, c->s->rflags);
}

void emu_invalidate(struct emu_cpu *c)
{
    emu_cc_set_flags(c, c->s->rflags);
    emu_update_mode(c);
    emu_tlb_flush(c, false);
    emu_debug_update(c);
    c->dbg_step = true;  /* TF or RF may be set: debug_before decides */
}

int emu_cpu_init(struct emu_cpu *c, struct cpu_state *s, struct machine *m,
                 struct emu_cache *cache)
{
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->m = m;
    c->cache = cache;
    c->phys_bits = 40;
    c->deliver_exceptions = true;
    emu_tlb_reset(c);
    emu_set_tsc(c, s->msr.tsc);
    if (cache) {
        if (cache->ncpus >= MACHINE_MAX_VCPUS)
            return -ENOSPC;
        cache->cpus[cache->ncpus++] = c;
    }
    emu_invalidate(c);
    return 0;
}

void emu_cpu_destroy(struct emu_cpu *c)
{
    struct emu_cache *cache = c->cache;

    if (!cache)
        return;
    for (int n = 0; n < cache->ncpus; n++) {
        if (cache->cpus[n] == c) {
            cache->cpus[n] = cache->cpus[--cache->ncpus];
            break;
        }
    }
}

void emu_kick(struct emu_cpu *c)
{
    __atomic_store_n(&c->kick, 1, __ATOMIC_RELEASE);
}

/* --- the run loop ---------------------------------------------------------- */

static bool take_interrupt(struct emu_cpu *c);

static void run_blocks(struct emu_cpu *c)
{
    struct cpu_state *s = c->s;
    struct emu_cache *cache = c->cache;
    struct emu_block *prev = NULL;

    while (c->budget && !c->stop_req) {
        struct emu_tlb_entry *e;
        struct emu_block *b;
        const struct emu_insn *i;
        uint64_t la;
        uint8_t *host;
        gpa_t gpa;
        unsigned n, left;
        bool one;

        if (unlikely(__atomic_load_n(&c->kick, __ATOMIC_ACQUIRE))) {
            c->kick = 0;
            c->stop_req = EMU_STOP_KICK + 1;
            break;
        }
        if (unlikely(s->events.nmi_pending) && emu_take_nmi(c))
            prev = NULL;
        if (c->irq_pending && (s->rflags & X86_RFLAGS_IF)) {
            /* No hint: irq_pending would say none, so do here what
             * take_interrupt does then, without the two calls. */
            if (c->irq_hint && !atomic_load_explicit(c->irq_hint, memory_order_relaxed))
                s->events.interrupt_shadow = 0;
            else if (take_interrupt(c))
                prev = NULL;
        }
        c->insn_rip = s->rip;
        la = emu_linear(c, S_CS, s->rip, 1, ACC_EXEC);
        one = unlikely(c->dbg_step) && debug_before(c, la);
        /* A predicted successor last entered at this address under this
         * very TLB state maps to the same physical block: no TLB lookup. */
        b = prev ? chain_lookup_la(cache, prev, la, c->tlb_gen | c->mmu_idx, c->mode) : NULL;
        if (b)
            goto run;
        e = emu_tlb_entry(c, la);
        if (likely(e->tag_code == (la & ~0xfffULL))) {
            host = (uint8_t *)(uintptr_t)(la + e->addend);
            gpa = emu_tlb_page_of(c, e)->gpa | (la & 0xfff);
        } else {
            gpa = emu_translate(c, la, ACC_EXEC, &host);
        }
        if (host) {
            if (prev)
                b = chain_lookup(cache, prev, gpa, c->mode);
            if (!b) {
                b = cache_lookup(cache, gpa, c->mode);
                if (!b) {
                    b = cache_build(c, gpa, host);
                    if (b && unlikely(log_mask & LOG_IN_ASM))
                        log_block(c, b, host);
                }
                /* After a flush in cache_build prev may be a reused slot:
                 * harmless, predictions are verified. */
                if (b && prev)
                    chain_remember(prev, (uint32_t)(b - cache->blocks));
            }
            if (b) {
                b->entry_la = la;
                b->entry_tlb = c->tlb_gen | c->mmu_idx;
            }
        }
run:
        if (unlikely(log_mask & LOG_CPU)) {
            emu_sync_state(c);
            cpu_state_dump(s, log_cpu_line, NULL);
        }
        if (!b) {
            struct emu_insn insn;

            prev = NULL;
            fetch_slow(c, la, &insn, host != NULL);
            exec_one(c, &insn);
            if (unlikely(c->step_tf || c->dbg_pending))
                emu_debug_trap(c, c->step_tf);
            continue;
        }
        n = b->n;
        if (n > c->budget)
            n = (unsigned)c->budget;
        if (unlikely(one))
            n = 1;  /* single-step or breakpoints: checks around each one */
        c->budget -= n;
        c->stats.blocks_executed++;
        prev = b;
        i = &cache->insns[b->fast0];
        if (unlikely(n < b->n))
            left = run_exact(c, &cache->insns[b->insn0], n);
        else if (likely(b->mode == EMU_MODE_64))
            left = run_fast(c, i, b->nfast, n, false, 0);
        else if (b->mode == EMU_MODE_32)
            left = run_fast(c, i, b->nfast, n, true, 0xffffffffULL);
        else
            left = run_fast(c, i, b->nfast, n, true, 0xffffULL);
        c->budget += left;
        if (unlikely(c->step_tf))
            emu_debug_trap(c, true);
    }
}

/* Exceptions that make a second one during delivery a double fault. */
static bool exc_contributory(unsigned v)
{
    return v == EXC_DE || (v >= EXC_TS && v <= EXC_GP);
}

/* An exception was raised (c->exc_*).  Returns a stop reason, or -1 to
 * continue running after delivering it through the IDT.  A fault while
 * delivering longjmps back to emu_run's handler and comes here again with
 * c->delivering set. */
static int handle_exception(struct emu_cpu *c)
{
    struct cpu_state *s = c->s;
    unsigned vec = c->exc_vector;
    bool soft = c->exc_is_trap && (vec != EXC_DB || c->exc_soft_int1);

    if (c->delivering < 0 && !c->exc_is_trap)
        s->rip = c->insn_rip;
    c->break_block = false;
    c->dbg_pending = 0;  /* a faulting instruction reports no data breakpoint */
    c->step_tf = false;
    c->exc_soft_int1 = false;
    if (!c->deliver_exceptions) {
        c->delivering = -1;
        c->dbg_insn_bp = false;
        return EMU_STOP_EXCEPTION;
    }
    /* Every fault but an instruction breakpoint pushes RF = 1, so that the
     * restarted instruction does not hit its breakpoint (SDM 17.3.1.1). */
    if (!c->exc_is_trap && !c->dbg_insn_bp) {
        s->rflags |= X86_RFLAGS_RF;
        c->dbg_step = true;
    }
    c->dbg_insn_bp = false;
    if (c->delivering >= 0) {
        unsigned prev = (unsigned)c->delivering;

        soft = false;
        if (prev == EXC_DF) {
            LOG(LOG_INT, "emu: triple fault (vector %u during #DF)\n", vec);
            c->delivering = -1;
            return EMU_STOP_SHUTDOWN;
        }
        if ((exc_contributory(prev) && exc_contributory(vec)) ||
            (prev == EXC_PF && (exc_contributory(vec) || vec == EXC_PF))) {
            vec = EXC_DF;
            c->exc_has_error = true;
            c->exc_error = 0;
        }
    }
    c->delivering = (int16_t)vec;
    c->stats.exceptions++;
    emu_deliver_event(c, vec, c->exc_has_error, c->exc_error, soft,
                      !soft && c->exc_ext);
    c->delivering = -1;
    c->exc_ext = false;
    return -1;
}

/* Take an external interrupt if one is pending and deliverable. */
static bool take_interrupt(struct emu_cpu *c)
{
    struct cpu_state *s = c->s;
    int v;

    if (!c->irq_pending || !(s->rflags & X86_RFLAGS_IF))
        return false;
    if (s->events.interrupt_shadow) {
        s->events.interrupt_shadow = 0;
        return false;
    }
    if (c->irq_pending(c->irq_opaque) < 0)
        return false;
    v = c->irq_ack(c->irq_opaque);
    if (v < 0)
        return false;
    s->mp_state = MP_RUNNABLE;
    c->insn_rip = s->rip;
    c->delivering = (int16_t)v;
    c->exc_ext = true;
    c->stats.interrupts++;
    emu_deliver_event(c, (unsigned)v, false, 0, false, true);
    c->delivering = -1;
    c->exc_ext = false;
    return true;
}

static enum emu_stop run_slice(struct emu_cpu *c, uint64_t budget)
{
    struct cpu_state *s = c->s;

    c->budget = budget;
    c->stop_req = 0;
    c->break_block = false;
    c->delivering = -1;
    if (_setjmp(c->jb)) {
        int r = handle_exception(c);

        if (r >= 0)
            return (enum emu_stop)r;
    }
    if (s->mp_state == MP_HALTED && !emu_take_nmi(c) && !take_interrupt(c))
        return EMU_STOP_HALT;
    run_blocks(c);
    if (c->stop_req)
        return (enum emu_stop)(c->stop_req - 1);
    return EMU_STOP_BUDGET;
}

enum emu_stop emu_run(struct emu_cpu *c, uint64_t budget)
{
    enum emu_stop r = run_slice(c, budget);

    /* The budget is charged per block and given back for what a block
     * did not run, so what it lost is what retired (plus the rest of a
     * block an exception left): counted once here, not per block. */
    __atomic_store_n(&c->icount, c->icount + (budget - c->budget), __ATOMIC_RELAXED);
    return r;
}
