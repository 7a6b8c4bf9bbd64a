/* The emulator's system-level additions, run end to end: NMI delivery and
 * NMI blocking until IRET, CR8 and IA32_APIC_BASE through the LAPIC model,
 * INS/OUTS (REP, DF, segment override) and IN/OUT rights from the TSS I/O
 * permission bitmap, and the 32-bit forms PUSHA/POPA and LES/LSS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "hw/lapic.h"
#include "machine/ioport.h"
#include "emu/seg.h"
#include "tests/emu/emu_test.h"

#define CODE 0x100000ULL
#define GDT 0x90000ULL
#define IDT 0x91000ULL
#define TSS 0x92000ULL
#define BUF 0x200000ULL
#define STACK_TOP 0x8f000ULL
#define PORT 0x100

/* CPL-0 (or 3) long-mode guest, identity-mapped low 4 MiB, flat GDT, IDT. */
static void guest_init(struct emu_tm *t, unsigned cpl)
{
    uint64_t *gdt;

    assert_int_equal(emu_tm_init(t, 4 * MiB, cpl), 0);
    emu_tm_map(t, 0, 0, 4 * MiB, EMU_TM_W | (cpl ? EMU_TM_U : 0));
    gdt = (uint64_t *)(t->m.ram + GDT);
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffULL;  /* 0x08: 64-bit code, DPL 0 */
    gdt[2] = 0x00cf93000000ffffULL;  /* 0x10: data */
    t->s.gdt.base = GDT;
    t->s.gdt.limit = 0x17;
    t->s.idt.base = IDT;
    t->s.idt.limit = 0xfff;
    if (!cpl) {
        t->s.seg[S_CS].selector = 0x08;
        t->s.seg[S_SS].selector = 0x10;
    }
    t->s.gpr[R_ESP] = STACK_TOP;
    t->s.rip = CODE;
    emu_invalidate(&t->c);
}

static void set_gate(struct emu_tm *t, unsigned vec, uint64_t off)
{
    uint64_t *g = (uint64_t *)(t->m.ram + IDT + vec * 16);

    g[0] = (off & 0xffff) | (0x08ULL << 16) | (0xeULL << 40) | (1ULL << 47) |
           (((off >> 16) & 0xffff) << 48);
    g[1] = off >> 32;
}

static void put(struct emu_tm *t, gpa_t at, const void *bytes, size_t len)
{
    memcpy(t->m.ram + at, bytes, len);
    emu_cache_invalidate_range(t->cache, at, len);
}

/* --- NMI ------------------------------------------------------------------ */

static void test_nmi_blocked_until_iret(void **state)
{
    /* IF=0 throughout; NMIs are blocked at the start (as in an NMI handler)
     * and the IRETQ to `target` unblocks them. */
    static const uint8_t code[] = {
        0xfa,                               /* cli */
        0x48, 0x89, 0xe0,                   /* mov rax, rsp */
        0x6a, 0x10,                         /* push 0x10 (ss) */
        0x50,                               /* push rax (rsp) */
        0x9c,                               /* pushfq */
        0x6a, 0x08,                         /* push 0x08 (cs) */
        0x48, 0x8d, 0x0d, 0x03, 0, 0, 0,    /* lea rcx, [rip+3] */
        0x51,                               /* push rcx */
        0x48, 0xcf,                         /* iretq */
        0xf4,                               /* target: hlt */
        0xf4,                               /* hlt */
    };
    static const uint8_t handler[] = {
        0x48, 0xff, 0xc3,                   /* inc rbx */
        0x48, 0x8b, 0x34, 0x24,             /* mov rsi, [rsp] (return RIP) */
        0x48, 0xcf,                         /* iretq */
    };
    const uint64_t target = CODE + sizeof(code) - 2;
    struct emu_tm t;

    guest_init(&t, 0);
    t.c.deliver_exceptions = true;
    put(&t, CODE, code, sizeof(code));
    put(&t, CODE + 0x1000, handler, sizeof(handler));
    set_gate(&t, 2, CODE + 0x1000);
    t.s.events.nmi_pending = 1;
    t.s.events.nmi_masked = 1;
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    /* Taken once, right after the unblocking IRETQ, despite IF=0. */
    assert_int_equal(t.s.gpr[R_EBX], 1);
    assert_int_equal(t.s.gpr[R_ESI], target);
    assert_int_equal(t.s.events.nmi_pending, 0);
    assert_int_equal(t.s.events.nmi_masked, 0);  /* the handler's IRETQ */
    assert_int_equal(t.s.rip, target + 1);
    assert_int_equal(t.s.gpr[R_ESP], STACK_TOP);

    /* An NMI wakes a halted CPU and returns after the HLT. */
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EBX], 1);
    t.s.events.nmi_pending = 1;
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EBX], 2);
    assert_int_equal(t.s.gpr[R_ESI], target + 1);
    assert_int_equal(t.s.rip, target + 2);
    emu_tm_destroy(&t);
}

/* --- debug: TF single-step and ICEBP ---------------------------------------- */

static void test_single_step_and_icebp(void **state)
{
    static const uint8_t code[] = {
        0x9c,                                       /* pushfq */
        0x48, 0x81, 0x0c, 0x24, 0x00, 0x01, 0, 0,   /* or qword [rsp], TF */
        0x9d,                                       /* popfq: sets TF, no trap after it */
        0x90,                                       /* nop: #DB */
        0x90,                                       /* nop: #DB */
        0x9c,                                       /* pushfq: #DB */
        0x48, 0x81, 0x24, 0x24, 0xff, 0xfe, 0xff, 0xff, /* and qword [rsp], ~TF: #DB */
        0x9d,                                       /* popfq: clears TF, still #DB */
        0xf4,                                       /* hlt */
        0xf1,                                       /* icebp: #DB, no DR6.BS */
        0xf4,                                       /* hlt */
    };
    static const uint8_t handler[] = {
        0x48, 0xff, 0xc3,                   /* inc rbx */
        0x48, 0x8b, 0x34, 0x24,             /* mov rsi, [rsp] (return RIP) */
        0x48, 0xcf,                         /* iretq */
    };
    const uint64_t hlt1 = CODE + sizeof(code) - 3;
    struct emu_tm t;

    guest_init(&t, 0);
    t.c.deliver_exceptions = true;
    put(&t, CODE, code, sizeof(code));
    put(&t, CODE + 0x1000, handler, sizeof(handler));
    set_gate(&t, 1, CODE + 0x1000);
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EBX], 5);
    assert_int_equal(t.s.gpr[R_ESI], hlt1);  /* the trap after the last POPFQ */
    assert_true(t.s.dr[6] & (1u << 14));
    assert_false(t.s.rflags & X86_RFLAGS_TF);
    assert_int_equal(t.s.rip, hlt1 + 1);
    assert_int_equal(t.s.gpr[R_ESP], STACK_TOP);

    /* ICEBP: a #DB trap, return address after it, DR6 untouched. */
    t.s.dr[6] = 0;
    t.s.mp_state = MP_RUNNABLE;
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EBX], 6);
    assert_int_equal(t.s.gpr[R_ESI], hlt1 + 2);
    assert_int_equal(t.s.dr[6], 0);
    assert_int_equal(t.s.rip, hlt1 + 3);
    emu_tm_destroy(&t);
}

/* --- CR8 and IA32_APIC_BASE ------------------------------------------------- */

static void nop_vcpu(void *vcpu)
{
}

static void nop_sipi(void *vcpu, uint8_t vector)
{
}

static const struct lapic_host_ops test_lapic_ops = {
    .init = nop_vcpu, .sipi = nop_sipi, .nmi = nop_vcpu, .kick = nop_vcpu,
};

static void test_cr8_and_apic_base_through_lapic(void **state)
{
    static const uint8_t code[] = {
        0x44, 0x0f, 0x22, 0xc0,             /* mov cr8, rax */
        0x44, 0x0f, 0x20, 0xc2,             /* mov rdx, cr8 */
        0x0f, 0x30,                         /* wrmsr (APIC_BASE) */
        0xf4,
    };
    struct lapic_bus bus = { 0 };
    struct lapic l;
    struct emu_tm t;
    uint32_t tpr;

    guest_init(&t, 0);
    t.s.apic_base = 0xfee00900ULL;  /* BSP, enabled */
    lapic_regs_reset(t.s.lapic, 0);
    lapic_init(&l, &t.s, 0, &test_lapic_ops, NULL, &bus);
    t.c.lapic = &l;
    put(&t, CODE, code, sizeof(code));
    t.s.gpr[R_EAX] = 5;
    t.s.gpr[R_ECX] = 0x1b;
    /* Run the two MOVs: TPR[7:4] is CR8. */
    assert_int_equal(emu_run(&t.c, 2), EMU_STOP_BUDGET);
    memcpy(&tpr, t.s.lapic + 0x80, 4);
    assert_int_equal(tpr, 0x50);
    assert_int_equal(t.s.gpr[R_EDX], 5);
    assert_int_equal(lapic_get_cr8(&l), 5);

    /* A reserved-bit APIC_BASE value is the model's -EINVAL: #GP(0). */
    t.s.gpr[R_EDX] = 0x80000000;
    t.s.gpr[R_EAX] = 0xfee00900;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(t.s.apic_base, 0xfee00900ULL);
    /* A legal one (disable the APIC) goes through. */
    t.s.gpr[R_EDX] = 0;
    t.s.gpr[R_EAX] = 0xfee00100;
    t.s.rip = CODE + 8;
    assert_int_equal(emu_run(&t.c, 10), EMU_STOP_HALT);
    assert_int_equal(t.s.apic_base, 0xfee00100ULL);
    emu_tm_destroy(&t);
}

/* --- port I/O ----------------------------------------------------------------- */

struct test_port {
    uint8_t next_in;        /* each read of PORT returns the next byte value */
    uint64_t out[16];
    unsigned out_size[16];
    unsigned nout;
};

static uint64_t port_read(void *opaque, uint64_t offset, unsigned size)
{
    struct test_port *p = opaque;
    uint64_t v = 0;

    for (unsigned k = 0; k < size; k++)
        v |= (uint64_t)(++p->next_in) << (8 * k);
    return v;
}

static void port_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct test_port *p = opaque;

    if (p->nout < 16) {
        p->out[p->nout] = value;
        p->out_size[p->nout++] = size;
    }
}

static const struct io_ops port_ops = { .read = port_read, .write = port_write };

static void io_init(struct emu_tm *t, unsigned cpl, struct test_port *p)
{
    guest_init(t, cpl);
    memset(p, 0, sizeof(*p));
    t->m.pio_map = calloc(65536, sizeof(*t->m.pio_map));
    assert_non_null(t->m.pio_map);
    assert_int_equal(machine_register_pio(&t->m, PORT, 0x100, &port_ops, p, "test"), 0);
    t->s.gpr[R_EDX] = PORT;
}

static void io_destroy(struct emu_tm *t)
{
    free(t->m.pio_map);
    free(t->m.pio_regions);
    emu_tm_destroy(t);
}

static void test_ins_outs(void **state)
{
    static const uint8_t code[] = {
        0xf3, 0x6c,                 /* rep insb */
        0xfd,                       /* std */
        0xf3, 0x66, 0x6f,           /* rep outsw (backwards) */
        0xfc,                       /* cld */
        0x64, 0x6f,                 /* outsd fs:[rsi] */
        0xf4,
    };
    struct test_port p;
    struct emu_tm t;

    io_init(&t, 0, &p);
    put(&t, CODE, code, sizeof(code));
    t.s.gpr[R_ECX] = 4;
    t.s.gpr[R_EDI] = BUF;
    /* rep insb: 4 bytes 1,2,3,4 to ES:RDI. */
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    assert_memory_equal(t.m.ram + BUF, "\1\2\3\4", 4);
    assert_int_equal(t.s.gpr[R_EDI], BUF + 4);
    assert_int_equal(t.s.gpr[R_ECX], 0);

    /* std; rep outsw: words at BUF+2, then BUF, RSI ends at BUF-2. */
    t.s.gpr[R_ECX] = 2;
    t.s.gpr[R_ESI] = BUF + 2;
    assert_int_equal(emu_run(&t.c, 2), EMU_STOP_BUDGET);
    assert_int_equal(p.nout, 2);
    assert_int_equal(p.out[0], 0x0403);
    assert_int_equal(p.out[1], 0x0201);
    assert_int_equal(p.out_size[0], 2);
    assert_int_equal(t.s.gpr[R_ESI], BUF - 2);
    assert_int_equal(t.s.gpr[R_ECX], 0);

    /* cld; fs outsd: the source segment is overridable. */
    t.s.seg[S_FS].base = 0x1000;
    t.s.gpr[R_ESI] = BUF - 0x1000;
    assert_int_equal(emu_run(&t.c, 10), EMU_STOP_HALT);
    assert_int_equal(p.nout, 3);
    assert_int_equal(p.out[2], 0x04030201);
    assert_int_equal(p.out_size[2], 4);
    assert_int_equal(t.s.gpr[R_ESI], BUF - 0x1000 + 4);
    io_destroy(&t);
}

/* 64-bit TSS at TSS with its I/O bitmap at offset 0x68 covering ports
 * 0..0x1ff (limit 0x68 + 64 - 1 + the required trailing byte). */
static void tss_init(struct emu_tm *t)
{
    uint8_t *tss = t->m.ram + TSS;

    memset(tss, 0, 0x68 + 65);
    tss[0x66] = 0x68;
    tss[0x68 + (PORT + 1) / 8] |= 1 << ((PORT + 1) & 7);  /* PORT+1 denied */
    t->s.tr.base = TSS;
    t->s.tr.limit = 0x68 + 64;
    t->s.tr.type = 0xb;
    t->s.tr.present = 1;
}

static enum emu_stop run_in(struct emu_tm *t, uint16_t port)
{
    static const uint8_t in_al_dx[] = { 0xec, 0xf4 };  /* in al, dx; (hlt) */

    put(t, CODE, in_al_dx, sizeof(in_al_dx));
    t->s.rip = CODE;
    t->s.gpr[R_EDX] = port;
    return emu_run(&t->c, 1);
}

static void test_io_permission_bitmap(void **state)
{
    static const uint8_t ins_dx[] = { 0x66, 0x6d };  /* insw */
    struct test_port p;
    struct emu_tm t;

    io_init(&t, 3, &p);
    tss_init(&t);
    /* CPL 3 > IOPL 0: the bitmap decides. */
    assert_int_equal(run_in(&t, PORT), EMU_STOP_BUDGET);
    assert_int_equal(t.s.gpr[R_EAX] & 0xff, 1);
    assert_int_equal(run_in(&t, PORT + 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(t.c.exc_error, 0);
    assert_int_equal(t.s.rip, CODE);
    /* Beyond the bitmap's end (the TSS limit): #GP. */
    assert_int_equal(run_in(&t, 0x200), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    /* A word access at PORT touches PORT+1: denied, string form too, and
     * the port is not read. */
    put(&t, CODE, ins_dx, sizeof(ins_dx));
    t.s.rip = CODE;
    t.s.gpr[R_EDX] = PORT;
    t.s.gpr[R_EDI] = BUF;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(p.next_in, 1);
    /* REP with a zero count does nothing, not even the rights check. */
    {
        static const uint8_t rep_insw[] = { 0xf3, 0x66, 0x6d };

        put(&t, CODE, rep_insw, sizeof(rep_insw));
        t.s.rip = CODE;
        t.s.gpr[R_ECX] = 0;
        assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
        assert_int_equal(t.s.rip, CODE + sizeof(rep_insw));
    }
    /* No TSS at all: #GP.  IOPL 3: allowed without the bitmap. */
    t.s.tr.present = 0;
    assert_int_equal(run_in(&t, PORT), EMU_STOP_EXCEPTION);
    t.s.rflags |= X86_RFLAGS_IOPL;
    assert_int_equal(run_in(&t, PORT + 1), EMU_STOP_BUDGET);
    assert_int_equal(t.s.gpr[R_EAX] & 0xff, 2);
    io_destroy(&t);
}

/* --- 32-bit forms ------------------------------------------------------------- */

static void prot32_init(struct emu_tm *t)
{
    uint64_t *gdt;

    assert_int_equal(emu_tm_init(t, 4 * MiB, 0), 0);
    t->s.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE;
    t->s.cr4 = 0;
    t->s.efer = 0;
    gdt = (uint64_t *)(t->m.ram + GDT);
    gdt[1] = 0x00cf9b000000ffffULL;  /* 0x08: 32-bit code */
    gdt[2] = 0x00cf93000000ffffULL;  /* 0x10: data */
    t->s.gdt.base = GDT;
    t->s.gdt.limit = 0x17;
    t->s.seg[S_CS].selector = 0x08;
    t->s.seg[S_CS].l = 0;
    t->s.seg[S_CS].db = 1;
    for (int k = 0; k < S_NR; k++)
        if (k != S_CS)
            t->s.seg[k].selector = 0x10;
    t->s.gpr[R_ESP] = STACK_TOP;
    t->s.rip = CODE;
    emu_invalidate(&t->c);
}

static void test_pusha_popa_lxs_32bit(void **state)
{
    static const uint8_t code[] = {
        0x60,                               /* pushad */
        0x31, 0xc0, 0x31, 0xdb, 0x31, 0xff, /* xor eax,eax; xor ebx,ebx; xor edi,edi */
        0x61,                               /* popad */
        0xc4, 0x35, 0x00, 0x50, 0x00, 0x00, /* les esi, [0x5000] */
        0x0f, 0xb2, 0x0d, 0x08, 0x50, 0x00, 0x00, /* lss ecx, [0x5008] */
        0xc5, 0x2d, 0x10, 0x50, 0x00, 0x00, /* lds ebp, [0x5010]: bad selector */
        0xf4,
    };
    static const uint8_t ptrs[] = {
        0xef, 0xbe, 0xad, 0xde, 0x10, 0x00, 0, 0,
        0x00, 0x70, 0x00, 0x00, 0x10, 0x00, 0, 0,
        0x44, 0x33, 0x22, 0x11, 0x50, 0x00, 0, 0,   /* selector 0x50: beyond the GDT */
    };
    static const unsigned regs[8] = { R_EAX, R_ECX, R_EDX, R_EBX, R_ESP, R_EBP, R_ESI, R_EDI };
    struct emu_tm t;
    uint32_t *stack;

    prot32_init(&t);
    put(&t, CODE, code, sizeof(code));
    put(&t, 0x5000, ptrs, sizeof(ptrs));
    for (unsigned k = 0; k < 8; k++)
        if (regs[k] != R_ESP)
            t.s.gpr[regs[k]] = 0x1000 + k;
    t.s.seg[S_ES].selector = 0;
    assert_int_equal(emu_run(&t.c, 5), EMU_STOP_BUDGET);
    /* PUSHAD stored EAX first (highest) ... EDI last, with the old ESP. */
    stack = (uint32_t *)(t.m.ram + STACK_TOP - 32);
    for (unsigned k = 0; k < 8; k++)
        assert_int_equal(stack[7 - k], regs[k] == R_ESP ? STACK_TOP : 0x1000 + k);
    for (unsigned k = 0; k < 8; k++)
        assert_int_equal(t.s.gpr[regs[k]], regs[k] == R_ESP ? STACK_TOP : 0x1000 + k);

    assert_int_equal(emu_run(&t.c, 2), EMU_STOP_BUDGET);
    assert_int_equal(t.s.gpr[R_ESI], 0xdeadbeef);
    assert_int_equal(t.s.seg[S_ES].selector, 0x10);
    assert_int_equal(t.s.gpr[R_ECX], 0x7000);
    assert_int_equal(t.s.seg[S_SS].selector, 0x10);

    /* LDS with a selector beyond the GDT limit: #GP(sel), EBP unchanged. */
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(t.c.exc_error, 0x50);
    assert_int_equal(t.s.gpr[R_EBP], 0x1005);
    assert_int_equal(t.s.seg[S_DS].selector, 0x10);
    emu_tm_destroy(&t);
}

static void test_pusha_is_ud_in_64bit(void **state)
{
    static const uint8_t code[] = { 0x60 };
    struct emu_tm t;

    guest_init(&t, 0);
    put(&t, CODE, code, sizeof(code));
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_UD);
    emu_tm_destroy(&t);
}

/* --- real mode: the IVT ------------------------------------------------------ */

/* Real mode, CS = 0x1000 (code at 0x10000), SS:SP = 0x2000:0x1000, IVT at 0. */
static void real_init(struct emu_tm *t)
{
    assert_int_equal(emu_tm_init(t, 4 * MiB, 0), 0);
    t->s.cr0 = X86_CR0_ET;
    t->s.cr4 = 0;
    t->s.efer = 0;
    for (int k = 0; k < S_NR; k++) {
        struct x86_segment *sg = &t->s.seg[k];
        uint16_t sel = k == S_CS ? 0x1000 : k == S_SS ? 0x2000 : 0;

        sg->selector = sel;
        sg->base = (uint64_t)sel << 4;
        sg->limit = 0xffff;
        sg->db = sg->l = sg->g = 0;
        sg->dpl = 0;
    }
    t->s.idt.base = 0;
    t->s.idt.limit = 0x3ff;
    t->s.gpr[R_ESP] = 0x1000;
    t->s.rip = 0;
    t->s.rflags = X86_RFLAGS_FIXED;
    emu_invalidate(&t->c);
}

static void set_ivt(struct emu_tm *t, unsigned vec, uint16_t cs, uint16_t ip)
{
    uint16_t *e = (uint16_t *)(t->m.ram + vec * 4);

    e[0] = ip;
    e[1] = cs;
}

static int ext_vector = -1;

static int test_irq_pending(void *opaque)
{
    return ext_vector;
}

static int test_irq_ack(void *opaque)
{
    int v = ext_vector;

    ext_vector = -1;
    return v;
}

static void test_real_mode_ivt(void **state)
{
    /* int 0x21; xor dx,dx; mov ax,1; xor cx,cx; div cx (#DE); sti; nop; nop;
     * hlt; hlt.  h21 (0x10): DI <- pushed CS, AX <- FLAGS inside, BX += 1,
     * iret.  h0 (0x19): SI <- pushed IP, skip the 2-byte DIV, BX += 0x10,
     * iret.  hext (0x26): BX += 0x100, BP <- pushed FLAGS, iret. */
    static const uint8_t code[] = {
        0xcd, 0x21, 0x31, 0xd2, 0xb8, 0x01, 0x00, 0x31, 0xc9, 0xf7, 0xf1, 0xfb,
        0x90, 0x90, 0xf4, 0xf4, 0x89, 0xe5, 0x8b, 0x7e, 0x02, 0x9c, 0x58, 0x43, 0xcf,
        0x89, 0xe5, 0x8b, 0x76, 0x00, 0x83, 0x46, 0x00, 0x02, 0x83, 0xc3, 0x10,
        0xcf, 0x81, 0xc3, 0x00, 0x01, 0x89, 0xe5, 0x8b, 0x6e, 0x04, 0xcf,
    };
    struct emu_tm t;

    real_init(&t);
    t.c.deliver_exceptions = true;
    t.c.irq_pending = test_irq_pending;
    t.c.irq_ack = test_irq_ack;
    put(&t, 0x10000, code, sizeof(code));
    set_ivt(&t, 0x21, 0x1000, 0x10);
    set_ivt(&t, EXC_DE, 0x1000, 0x19);
    set_ivt(&t, 0x30, 0x1000, 0x26);
    /* IF is clear: the external interrupt waits for the STI. */
    ext_vector = 0x30;
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EBX] & 0xffff, 0x11);
    /* The interrupt is taken once STI's shadow is over (at the latest it
     * wakes the HLT) and returns to the next HLT. */
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(ext_vector, -1);
    assert_int_equal(t.s.gpr[R_EBX] & 0xffff, 0x111);
    assert_int_equal(t.s.gpr[R_EDI] & 0xffff, 0x1000);      /* CS pushed */
    assert_false(t.s.gpr[R_EAX] & X86_RFLAGS_IF);            /* handler: IF clear */
    assert_int_equal(t.s.gpr[R_ESI] & 0xffff, 9);            /* #DE: IP of the DIV */
    assert_true(t.s.gpr[R_EBP] & X86_RFLAGS_IF);             /* after STI */
    assert_int_equal(t.s.gpr[R_ESP], 0x1000);
    assert_int_equal(t.s.rip, 0x10);                         /* after the HLT */
    assert_true(t.s.rflags & X86_RFLAGS_IF);                 /* IRET restored it */
    /* A vector beyond the IVT limit: #GP, which is beyond it too: #DF,
     * beyond it as well: shutdown. */
    t.s.idt.limit = 0x1f;
    t.s.rip = 0;
    t.s.mp_state = MP_RUNNABLE;
    assert_int_equal(emu_run(&t.c, 10), EMU_STOP_SHUTDOWN);
    emu_tm_destroy(&t);
}

/* --- virtual-8086 mode --------------------------------------------------------- */

#define V86_CODE 0x10000ULL
#define V86_LOG 0x5000ULL

static void set_gate32(struct emu_tm *t, unsigned vec, uint64_t off, unsigned dpl)
{
    uint64_t *g = (uint64_t *)(t->m.ram + IDT + vec * 8);

    *g = (off & 0xffff) | (0x08ULL << 16) | (0xeULL << 40) | ((uint64_t)dpl << 45) |
         (1ULL << 47) | (((off >> 16) & 0xffff) << 48);
}

/* The monitor (32-bit, CPL 0, at CODE) IRETs into vm86 code at 1000:0000
 * (SS:SP 2000:0800, DS = ES = 3000) with EFLAGS = EBP.  Its #GP handler
 * (CODE+0x21) logs EIP and the error code at V86_LOG + EBX * 8 (through
 * SS: DS is null in the handler), halts on a HLT, otherwise skips the
 * instruction (INT n: 2 bytes) and IRETs back; #BP (CODE+0x64) counts in
 * EDI, INT 0x21 (CODE+0x66) in ESI.  The vm86 code: mov byte [0], 0x55;
 * cli; int 0x21; int3; pushf; pop ax; push ax; push cs; push 0x11; iret;
 * hlt. */
static void v86_run(struct emu_tm *t, unsigned iopl)
{
    static const uint8_t mon[] = {
        0x6a, 0x00, 0x6a, 0x00, 0x68, 0x00, 0x30, 0x00, 0x00, 0x68, 0x00, 0x30,
        0x00, 0x00, 0x68, 0x00, 0x20, 0x00, 0x00, 0x68, 0x00, 0x08, 0x00, 0x00,
        0x55, 0x68, 0x00, 0x10, 0x00, 0x00, 0x6a, 0x00, 0xcf, 0x8b, 0x04, 0x24,
        0x8b, 0x4c, 0x24, 0x04, 0x36, 0x89, 0x0c, 0xdd, 0x00, 0x50, 0x00, 0x00,
        0x36, 0x89, 0x04, 0xdd, 0x04, 0x50, 0x00, 0x00, 0x43, 0x0f, 0xb7, 0x44,
        0x24, 0x08, 0xc1, 0xe0, 0x04, 0x01, 0xc8, 0x36, 0x0f, 0xb6, 0x10, 0x81,
        0xfa, 0xf4, 0x00, 0x00, 0x00, 0x74, 0x14, 0xff, 0x44, 0x24, 0x04, 0x81,
        0xfa, 0xcd, 0x00, 0x00, 0x00, 0x75, 0x04, 0xff, 0x44, 0x24, 0x04, 0x83,
        0xc4, 0x04, 0xcf, 0xf4, 0x47, 0xcf, 0x46, 0xcf,
    };
    static const uint8_t v86[] = {
        0xc6, 0x06, 0x00, 0x00, 0x55, 0xfa, 0xcd, 0x21, 0xcc, 0x9c, 0x58, 0x50,
        0x0e, 0x68, 0x11, 0x00, 0xcf, 0xf4,
    };
    uint8_t *tss;

    prot32_init(t);
    t->c.deliver_exceptions = true;
    put(t, CODE, mon, sizeof(mon));
    put(t, V86_CODE, v86, sizeof(v86));
    t->s.idt.base = IDT;
    t->s.idt.limit = 0x7ff;
    set_gate32(t, EXC_GP, CODE + 0x21, 0);
    set_gate32(t, EXC_BP, CODE + 0x64, 3);
    set_gate32(t, 0x21, CODE + 0x66, 3);
    tss = t->m.ram + TSS;
    memset(tss, 0, 0x68);
    tss[4] = STACK_TOP & 0xff;                   /* ESP0 */
    tss[5] = (STACK_TOP >> 8) & 0xff;
    tss[6] = (STACK_TOP >> 16) & 0xff;
    tss[8] = 0x10;                               /* SS0 */
    t->s.tr.base = TSS;
    t->s.tr.limit = 0x67;
    t->s.tr.type = 0xb;
    t->s.tr.present = 1;
    t->s.gpr[R_EBP] = X86_RFLAGS_VM | X86_RFLAGS_FIXED | ((uint64_t)iopl << 12);
    assert_int_equal(emu_run(&t->c, 1000), EMU_STOP_HALT);
    /* Halted in the monitor at CPL 0, out of vm86 mode, data segments null. */
    assert_false(t->s.rflags & X86_RFLAGS_VM);
    assert_int_equal(t->c.cpl, 0);
    assert_int_equal(t->s.seg[S_CS].selector, 0x08);
    assert_int_equal(t->s.seg[S_DS].selector, 0);
    assert_int_equal(t->s.seg[S_ES].selector, 0);
    assert_int_equal(t->m.ram[0x30000], 0x55);   /* DS base = 0x3000 << 4 */
}

static uint32_t ram32(struct emu_tm *t, gpa_t a)
{
    uint32_t v;

    memcpy(&v, t->m.ram + a, 4);
    return v;
}

static void test_vm86_sensitive_instructions(void **state)
{
    static const uint32_t gp_eip[5] = { 0x05, 0x06, 0x09, 0x10, 0x11 };
    struct emu_tm t;
    uint64_t frame = STACK_TOP - 40;   /* error code .. GS, all dwords */

    /* IOPL 0: CLI, INT n, PUSHF, IRET and HLT are #GP(0) to the monitor;
     * INT3 goes to its DPL-3 gate and IRETs back into vm86 mode. */
    v86_run(&t, 0);
    assert_int_equal(t.s.gpr[R_EBX], 5);
    for (unsigned k = 0; k < 5; k++) {
        assert_int_equal(ram32(&t, V86_LOG + k * 8), gp_eip[k]);
        assert_int_equal(ram32(&t, V86_LOG + k * 8 + 4), 0);
    }
    assert_int_equal(t.s.gpr[R_EDI], 1);
    assert_int_equal(t.s.gpr[R_ESI], 0);
    /* The frame of the last #GP: EIP, CS, EFLAGS (VM), ESP, SS, ES, DS, FS, GS;
     * SP is 0x7fc after the skipped PUSHF's POP and the three pushes. */
    assert_int_equal(ram32(&t, frame + 4), 0x11);
    assert_int_equal(ram32(&t, frame + 8), 0x1000);
    assert_true(ram32(&t, frame + 12) & X86_RFLAGS_VM);
    assert_int_equal(ram32(&t, frame + 16), 0x7fc);
    assert_int_equal(ram32(&t, frame + 20), 0x2000);
    assert_int_equal(ram32(&t, frame + 24), 0x3000);
    assert_int_equal(ram32(&t, frame + 28), 0x3000);
    assert_int_equal(ram32(&t, frame + 32), 0);
    assert_int_equal(ram32(&t, frame + 36), 0);
    emu_tm_destroy(&t);

    /* IOPL 3: all of them run in vm86 mode (INT 0x21 through its gate, the
     * IRET real-mode style keeping IOPL); only HLT reaches the monitor. */
    v86_run(&t, 3);
    assert_int_equal(t.s.gpr[R_EBX], 1);
    assert_int_equal(ram32(&t, V86_LOG), 0x11);
    assert_int_equal(t.s.gpr[R_ESI], 1);
    assert_int_equal(t.s.gpr[R_EDI], 1);
    /* PUSHF's image (pushed again for the IRET): IOPL 3, IF 0 after CLI. */
    assert_int_equal(ram32(&t, 0x207fc) >> 16 & 0x3200, 0x3000);
    assert_int_equal(ram32(&t, frame + 16), 0x800);
    assert_int_equal(ram32(&t, frame + 12) & 0x3200, 0x3000);
    emu_tm_destroy(&t);
}

/* --- call gates and far returns to an outer level ------------------------------ */

static uint64_t call_gate(uint16_t sel, uint64_t off, unsigned type, unsigned dpl,
                          unsigned params, bool present)
{
    return (off & 0xffff) | ((uint64_t)sel << 16) | ((uint64_t)params << 32) |
           ((uint64_t)type << 40) | ((uint64_t)dpl << 45) | ((uint64_t)present << 47) |
           (((off >> 16) & 0xffff) << 48);
}

/* Load segment register sr from GDT entry sel (its hidden part as a load
 * would set it). */
static void seg_load(struct emu_tm *t, unsigned sr, uint16_t sel)
{
    uint64_t d;

    memcpy(&d, t->m.ram + GDT + (sel & ~7u), 8);
    emu_seg_from_desc(&t->s.seg[sr], sel, d);
}

static void tss_set32(struct emu_tm *t, uint32_t esp0, uint16_t ss0)
{
    uint8_t *tss = t->m.ram + TSS;

    memset(tss, 0, 0x68);
    memcpy(tss + 4, &esp0, 4);
    memcpy(tss + 8, &ss0, 2);
    t->s.tr.base = TSS;
    t->s.tr.limit = 0x67;
    t->s.tr.type = 0xb;
    t->s.tr.present = 1;
}

static void test_call_gate_32bit(void **state)
{
    /* CPL 3: push 0x1111; push 0x2222; call 0x2b:0 (gate, 2 params); hlt;
     * call 0x33:0 (DPL-0 gate); jmp 0x2b:0 (JMP to a more privileged
     * non-conforming segment); call 0x3b:0 (gate not present).  The CPL-0
     * target (+0x40): ebx <- esp; esi <- [esp+8]; ds <- 0x10; retf 8. */
    static const uint8_t code[] = {
        0x68, 0x11, 0x11, 0x00, 0x00, 0x68, 0x22, 0x22, 0x00, 0x00, 0x9a, 0x00,
        0x00, 0x00, 0x00, 0x2b, 0x00, 0xf4, 0x9a, 0x00, 0x00, 0x00, 0x00, 0x33,
        0x00, 0xea, 0x00, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x9a, 0x00, 0x00, 0x00,
        0x00, 0x3b, 0x00,
    };
    static const uint8_t target[] = {
        0x89, 0xe3, 0x8b, 0x74, 0x24, 0x08, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8,
        0xca, 0x08, 0x00,
    };
    const uint32_t user_sp = 0x7f000;
    struct emu_tm t;
    uint64_t *gdt;
    uint64_t f;

    prot32_init(&t);
    gdt = (uint64_t *)(t.m.ram + GDT);
    gdt[3] = 0x00cffb000000ffffULL;  /* 0x1b: 32-bit code, DPL 3 */
    gdt[4] = 0x00cff3000000ffffULL;  /* 0x23: data, DPL 3 */
    gdt[5] = call_gate(0x08, CODE + 0x40, 0xc, 3, 2, true);
    gdt[6] = call_gate(0x08, CODE + 0x40, 0xc, 0, 2, true);
    gdt[7] = call_gate(0x08, CODE + 0x40, 0xc, 3, 2, false);
    t.s.gdt.limit = 0x3f;
    put(&t, CODE, code, sizeof(code));
    put(&t, CODE + 0x40, target, sizeof(target));
    tss_set32(&t, STACK_TOP, 0x10);
    seg_load(&t, S_CS, 0x1b);
    for (unsigned k = 0; k < S_NR; k++)
        if (k != S_CS)
            seg_load(&t, k, 0x23);
    t.s.gpr[R_ESP] = user_sp;
    emu_invalidate(&t.c);
    assert_int_equal(t.c.cpl, 3);

    /* Through the gate to CPL 0 and back with RETF 8: stops at the HLT. */
    assert_int_equal(emu_run(&t.c, 100), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(t.s.rip, CODE + 0x11);
    /* The inner stack (SS0:ESP0 from the TSS): SS, ESP, the two
     * parameters in their order, CS, EIP. */
    f = t.s.gpr[R_EBX];
    assert_int_equal(f, STACK_TOP - 24);
    assert_int_equal(ram32(&t, f), CODE + 0x11);
    assert_int_equal(ram32(&t, f + 4), 0x1b);
    assert_int_equal(ram32(&t, f + 8), 0x2222);
    assert_int_equal(ram32(&t, f + 12), 0x1111);
    assert_int_equal(ram32(&t, f + 16), user_sp - 8);
    assert_int_equal(ram32(&t, f + 20), 0x23);
    assert_int_equal(t.s.gpr[R_ESI], 0x2222);
    /* Back at CPL 3: RETF 8 released the parameters on the outer stack too;
     * DS (loaded with a DPL-0 selector inside) became null. */
    assert_int_equal(t.c.cpl, 3);
    assert_int_equal(t.s.seg[S_CS].selector, 0x1b);
    assert_int_equal(t.s.seg[S_SS].selector, 0x23);
    assert_int_equal(t.s.gpr[R_ESP], user_sp);
    assert_int_equal(t.s.seg[S_DS].selector, 0);
    assert_true(t.s.seg[S_DS].unusable);

    /* A gate more privileged than CPL; a JMP through a gate to a more
     * privileged segment; a gate that is not present. */
    t.s.rip = CODE + 0x12;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(t.c.exc_error, 0x30);
    t.s.rip = CODE + 0x19;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(t.c.exc_error, 0x08);
    t.s.rip = CODE + 0x20;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_NP);
    assert_int_equal(t.c.exc_error, 0x38);
    assert_int_equal(t.s.gpr[R_ESP], user_sp);
    assert_int_equal(t.c.cpl, 3);
    emu_tm_destroy(&t);
}

static void test_call_gate_64bit(void **state)
{
    /* CPL 3: mov rcx, 0x1234; call far [rax] (m16:32 -> selector 0x33, a
     * 64-bit gate); hlt.  The CPL-0 target (+0x40): rbx <- rsp; edx <- ss;
     * retfq. */
    static const uint8_t code[] = {
        0x48, 0xc7, 0xc1, 0x34, 0x12, 0x00, 0x00, 0xff, 0x18, 0xf4,
    };
    static const uint8_t target[] = { 0x48, 0x89, 0xe3, 0x8c, 0xd2, 0x48, 0xcb };
    const uint64_t user_sp = 0x7f000;
    struct emu_tm t;
    uint64_t *gdt, f, rsp0 = STACK_TOP;

    guest_init(&t, 3);
    gdt = (uint64_t *)(t.m.ram + GDT);
    gdt[3] = 0x00affb000000ffffULL;  /* 0x1b: 64-bit code, DPL 3 */
    gdt[4] = 0x00cff3000000ffffULL;  /* 0x23: data, DPL 3 */
    gdt[6] = call_gate(0x08, CODE + 0x40, 0xc, 3, 0, true);
    gdt[7] = (CODE + 0x40) >> 32;
    gdt[8] = call_gate(0x08, CODE + 0x40, 0x4, 3, 0, true);  /* 16-bit gate */
    t.s.gdt.limit = 0x4f;
    put(&t, CODE, code, sizeof(code));
    put(&t, CODE + 0x40, target, sizeof(target));
    memset(t.m.ram + TSS, 0, 0x68);
    memcpy(t.m.ram + TSS + 4, &rsp0, 8);
    t.s.tr.base = TSS;
    t.s.tr.limit = 0x67;
    t.s.tr.type = 0xb;
    t.s.tr.present = 1;
    seg_load(&t, S_CS, 0x1b);
    for (unsigned k = 0; k < S_NR; k++)
        if (k != S_CS)
            seg_load(&t, k, 0x23);
    t.s.gpr[R_ESP] = user_sp;
    t.s.gpr[R_EAX] = BUF;
    t.m.ram[BUF + 4] = 0x33;
    t.m.ram[BUF + 5] = 0;
    emu_invalidate(&t.c);

    assert_int_equal(emu_run(&t.c, 100), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(t.s.rip, CODE + 9);
    /* RSP0 from the TSS, 8-byte pushes of SS, RSP, CS, RIP; SS inside is
     * the null selector with RPL 0. */
    f = t.s.gpr[R_EBX];
    assert_int_equal(f, STACK_TOP - 32);
    assert_int_equal(*(uint64_t *)(t.m.ram + f), CODE + 9);
    assert_int_equal(*(uint64_t *)(t.m.ram + f + 8), 0x1b);
    assert_int_equal(*(uint64_t *)(t.m.ram + f + 16), user_sp);
    assert_int_equal(*(uint64_t *)(t.m.ram + f + 24), 0x23);
    assert_int_equal(t.s.gpr[R_EDX] & 0xffff, 0);
    assert_int_equal(t.c.cpl, 3);
    assert_int_equal(t.s.seg[S_SS].selector, 0x23);
    assert_int_equal(t.s.gpr[R_ESP], user_sp);

    /* A 16-bit call gate does not exist in long mode. */
    t.m.ram[BUF + 4] = 0x43;
    t.s.rip = CODE + 7;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_GP);
    assert_int_equal(t.c.exc_error, 0x40);
    emu_tm_destroy(&t);
}

/* --- hardware task switches ------------------------------------------------------ */

static uint64_t tss_desc(uint64_t base, unsigned type)
{
    return 0x67 | ((base & 0xffffff) << 16) | ((uint64_t)type << 40) | (1ULL << 47) |
           ((base >> 24) << 56);
}

static void test_task_switch_32bit(void **state)
{
    /* Task A (TSS 0x28): mov eax, 0x11; mov ebx, 0x22; call 0x30:0 (TSS B);
     * int 0x30 (task gate to TSS B); jmp 0x28:0 (itself: busy).  Task B
     * (+0x40): inc ecx; mov edx, eax; pushfd; pop esi; str edi; iretd (NT:
     * back to A); jmp +0x40. */
    static const uint8_t a[] = {
        0xb8, 0x11, 0x00, 0x00, 0x00, 0xbb, 0x22, 0x00, 0x00, 0x00, 0x9a, 0x00,
        0x00, 0x00, 0x00, 0x30, 0x00, 0xcd, 0x30, 0xea, 0x00, 0x00, 0x00, 0x00,
        0x28, 0x00,
    };
    static const uint8_t b[] = { 0x41, 0x89, 0xc2, 0x9c, 0x5e, 0x0f, 0x00, 0xcf, 0xcf, 0xeb, 0xf5 };
    const gpa_t tss_a = TSS, tss_b = TSS + 0x100;
    struct emu_tm t;
    uint64_t *gdt, *idt;
    uint32_t *tb = NULL;

    prot32_init(&t);
    gdt = (uint64_t *)(t.m.ram + GDT);
    gdt[5] = tss_desc(tss_a, 0xb);                 /* 0x28: A, busy (running) */
    gdt[6] = tss_desc(tss_b, 0x9);                 /* 0x30: B, available */
    t.s.gdt.limit = 0x37;
    idt = (uint64_t *)(t.m.ram + IDT);
    idt[0x30] = (0x30ULL << 16) | (5ULL << 40) | (1ULL << 47);   /* task gate */
    t.s.idt.base = IDT;
    t.s.idt.limit = 0x7ff;
    memset(t.m.ram + tss_a, 0, 0x200);
    tb = (uint32_t *)(t.m.ram + tss_b);
    tb[0x20 / 4] = CODE + 0x40;                    /* EIP */
    tb[0x24 / 4] = 0x2;                            /* EFLAGS */
    tb[0x28 / 4] = 0xb0;                           /* EAX */
    tb[0x38 / 4] = 0x7f000;                        /* ESP */
    tb[0x48 / 4] = 0x10;                           /* ES */
    tb[0x4c / 4] = 0x08;                           /* CS */
    tb[0x50 / 4] = 0x10;                           /* SS */
    tb[0x54 / 4] = 0x10;                           /* DS */
    tb[0x58 / 4] = 0x10;
    tb[0x5c / 4] = 0x10;
    t.s.tr.selector = 0x28;
    t.s.tr.base = tss_a;
    t.s.tr.limit = 0x67;
    t.s.tr.type = 0xb;
    t.s.tr.present = 1;
    put(&t, CODE, a, sizeof(a));
    put(&t, CODE + 0x40, b, sizeof(b));
    t.m.ram[CODE + 0x80] = 0xf4;                    /* #GP handler: hlt */
    set_gate32(&t, EXC_GP, CODE + 0x80, 0);
    t.c.deliver_exceptions = true;
    emu_invalidate(&t.c);

    /* CALL to B, B's IRET back; INT through the task gate to B, IRET back;
     * the JMP to the running (busy) TSS is #GP(0x28) in A. */
    assert_int_equal(emu_run(&t.c, 100), EMU_STOP_HALT);
    assert_int_equal(ram32(&t, STACK_TOP - 16), 0x28);         /* error code */
    assert_int_equal(ram32(&t, STACK_TOP - 12), CODE + 0x13);  /* at the JMP */
    assert_int_equal(t.s.tr.selector, 0x28);
    assert_int_equal(t.s.gpr[R_EAX], 0x11);         /* A's registers are back */
    assert_int_equal(t.s.gpr[R_EBX], 0x22);
    assert_int_equal(t.s.gpr[R_ESP], STACK_TOP - 16);
    assert_false(t.s.rflags & X86_RFLAGS_NT);
    assert_true(t.s.cr0 & X86_CR0_TS);
    /* B's saved state: entered twice, NT was set inside, its TR was 0x30,
     * it resumes after its IRET; its back link names A; it is available
     * again and A is busy. */
    assert_int_equal(tb[0x2c / 4], 2);                /* ECX */
    assert_int_equal(tb[0x30 / 4], 0xb0);             /* EDX */
    assert_true(tb[0x40 / 4] & X86_RFLAGS_NT);        /* ESI */
    assert_int_equal(tb[0x44 / 4], 0x30);             /* EDI */
    assert_int_equal(tb[0x20 / 4], CODE + 0x49);      /* EIP */
    assert_false(tb[0x24 / 4] & X86_RFLAGS_NT);       /* EFLAGS saved by IRET */
    assert_int_equal(tb[0] & 0xffff, 0x28);
    assert_int_equal((gdt[6] >> 40) & 15, 0x9);
    assert_int_equal((gdt[5] >> 40) & 15, 0xb);
    /* A's TSS holds what A had at the INT: EIP after it. */
    assert_int_equal(*(uint32_t *)(t.m.ram + tss_a + 0x20), CODE + 0x13);
    assert_int_equal(*(uint32_t *)(t.m.ram + tss_a + 0x28), 0x11);
    emu_tm_destroy(&t);
}

/* --- debug registers -------------------------------------------------------------- */

#define DBG_LOG 0x300000ULL
#define RF (1ULL << 16)

/* Entry points into dbg_prog (offsets from CODE):
 *   0x00: call target; DR0 <- target+1; DR7 <- 1 (L0, execute); call
 *         target; hlt.  target (0x1d): nop; inc ebx; ret.
 *   0x40: mov eax, [0x200008]; mov dword [0x20000a], 5;
 *         mov ecx, [0x200024]; mov byte [0x200030], 1; hlt.
 *   0x80: mov rax, dr7; hlt.
 *   0xc0: mov eax, [0x7000000] (unmapped); hlt.
 * #DB handler (0x100): logs DR6, the pushed RIP, RFLAGS and DR7 at
 * DBG_LOG + {0, 0x100, 0x200, 0x300} + R8 * 8, R8++, clears DR6, sets RF
 * in the pushed image, skips a 3-byte MOV DR after a general-detect #DB,
 * IRETQ.  #PF handler (0x180): logs the pushed RFLAGS at DBG_LOG + 0x400,
 * skips the 7-byte faulting MOV, IRETQ. */
static const uint8_t dbg_prog[0x199] = {
    [0x00] = 0xe8, 0x18, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x05, 0x12, 0x00, 0x00, 0x00, 0x0f,
    0x23, 0xc0, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x23, 0xf8, 0xe8, 0x01, 0x00, 0x00,
    0x00, 0xf4, 0x90, 0xff, 0xc3, 0xc3,
    [0x40] = 0x8b, 0x04, 0x25, 0x08, 0x00, 0x20, 0x00, 0xc7, 0x04, 0x25, 0x0a, 0x00, 0x20,
    0x00, 0x05, 0x00, 0x00, 0x00, 0x8b, 0x0c, 0x25, 0x24, 0x00, 0x20, 0x00, 0xc6, 0x04,
    0x25, 0x30, 0x00, 0x20, 0x00, 0x01, 0xf4,
    [0x80] = 0x0f, 0x21, 0xf8, 0xf4,
    [0xc0] = 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x07, 0xf4,
    [0x100] = 0x0f, 0x21, 0xf0, 0x4a, 0x89, 0x04, 0xc5, 0x00, 0x00, 0x30, 0x00, 0x48, 0x8b,
    0x04, 0x24, 0x4a, 0x89, 0x04, 0xc5, 0x00, 0x01, 0x30, 0x00, 0x48, 0x8b, 0x44, 0x24,
    0x10, 0x4a, 0x89, 0x04, 0xc5, 0x00, 0x02, 0x30, 0x00, 0x0f, 0x21, 0xf8, 0x4a, 0x89,
    0x04, 0xc5, 0x00, 0x03, 0x30, 0x00, 0x49, 0xff, 0xc0, 0x31, 0xc0, 0x0f, 0x23, 0xf0,
    0x48, 0x81, 0x4c, 0x24, 0x10, 0x00, 0x00, 0x01, 0x00, 0x4a, 0xf7, 0x04, 0xc5, 0xf8,
    0xff, 0x2f, 0x00, 0x00, 0x20, 0x00, 0x00, 0x74, 0x05, 0x48, 0x83, 0x04, 0x24, 0x03,
    0x48, 0xcf,
    [0x180] = 0x48, 0x8b, 0x44, 0x24, 0x18, 0x48, 0x89, 0x04, 0x25, 0x00, 0x04, 0x30, 0x00,
    0x48, 0x83, 0x44, 0x24, 0x08, 0x07, 0x48, 0x83, 0xc4, 0x08, 0x48, 0xcf,
};

static void dbg_init(struct emu_tm *t, uint64_t entry)
{
    guest_init(t, 0);
    t->c.deliver_exceptions = true;
    put(t, CODE, dbg_prog, sizeof(dbg_prog));
    set_gate(t, EXC_DB, CODE + 0x100);
    set_gate(t, EXC_PF, CODE + 0x180);
    t->s.rip = CODE + entry;
    t->s.dr[7] = 0x400;
}

static uint64_t dbg_log(struct emu_tm *t, unsigned what, unsigned k)
{
    uint64_t v;

    memcpy(&v, t->m.ram + DBG_LOG + what * 0x100 + k * 8, 8);
    return v;
}

static void test_debug_instruction_breakpoint(void **state)
{
    struct emu_tm t;

    /* target's block is decoded and cached by the first call; the
     * breakpoint set afterwards on its second instruction still hits,
     * once: the handler's RF in the image lets the INC run. */
    dbg_init(&t, 0);
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_EBX], 2);
    assert_int_equal(t.s.gpr[R_R8], 1);
    assert_int_equal(dbg_log(&t, 0, 0) & 0xf, 1);            /* DR6.B0 */
    assert_int_equal(dbg_log(&t, 1, 0), CODE + 0x1e);        /* a fault: at the INC */
    assert_false(dbg_log(&t, 2, 0) & RF);                    /* pushed RF clear */
    assert_int_equal(t.s.rip, CODE + 0x1d);
    assert_false(t.s.rflags & RF);                           /* consumed */
    emu_tm_destroy(&t);

    /* A breakpoint on an instruction that page-faults: #DB first (RF 0),
     * then, with RF from the handler, the #PF, whose frame has RF = 1. */
    dbg_init(&t, 0xc0);
    t.s.dr[0] = CODE + 0xc0;
    t.s.dr[7] = 0x401;
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_R8], 1);
    assert_int_equal(dbg_log(&t, 1, 0), CODE + 0xc0);
    assert_false(dbg_log(&t, 2, 0) & RF);
    assert_true(dbg_log(&t, 4, 0) & RF);
    assert_int_equal(t.s.rip, CODE + 0xc8);
    emu_tm_destroy(&t);
}

static void test_debug_data_breakpoints(void **state)
{
    struct emu_tm t;
    uint32_t v;

    /* DR1: 4-byte write breakpoint at 0x200008; DR2: 8-byte read/write
     * breakpoint at 0x200020.  The read of DR1's range does not trap; the
     * write overlapping it and the read inside DR2's do, after the
     * instruction; the byte outside does not. */
    dbg_init(&t, 0x40);
    t.s.dr[1] = 0x200008;
    t.s.dr[2] = 0x200020;
    t.s.dr[7] = 0x400 | (1u << 2) | (1u << 4) | (1u << 20) | (3u << 22) | (3u << 24) |
                (2u << 26);
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_R8], 2);
    assert_int_equal(dbg_log(&t, 0, 0) & 0xf, 2);            /* B1 */
    assert_int_equal(dbg_log(&t, 1, 0), CODE + 0x52);        /* a trap: after it */
    assert_int_equal(dbg_log(&t, 0, 1) & 0xf, 4);            /* B2 */
    assert_int_equal(dbg_log(&t, 1, 1), CODE + 0x59);
    memcpy(&v, t.m.ram + 0x20000a, 4);
    assert_int_equal(v, 5);
    assert_int_equal(t.m.ram[0x200030], 1);
    assert_int_equal(t.s.rip, CODE + 0x62);
    emu_tm_destroy(&t);

    /* Single-step and a data breakpoint on the same instruction: one #DB
     * with BS and B1. */
    dbg_init(&t, 0x47);
    t.s.dr[1] = 0x200008;
    t.s.dr[7] = 0x400 | (1u << 2) | (1u << 20) | (3u << 22);
    t.s.rflags |= X86_RFLAGS_TF;
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    assert_int_equal(t.s.rip, CODE + 0x100);                 /* delivered */
    assert_int_equal(t.s.dr[6] & 0x400f, 0x4002);
    assert_int_equal(*(uint64_t *)(t.m.ram + STACK_TOP - 40), CODE + 0x52);
    emu_tm_destroy(&t);
}

static void test_debug_general_detect(void **state)
{
    struct emu_tm t;

    /* DR7.GD: MOV from DR7 is a #DB fault with DR6.BD; GD is clear inside
     * the handler (whose own MOV DRs then work); the handler skips it. */
    dbg_init(&t, 0x80);
    t.s.dr[7] = 0x2400;
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 1000), EMU_STOP_HALT);
    assert_int_equal(t.s.gpr[R_R8], 1);
    assert_true(dbg_log(&t, 0, 0) & 0x2000);                 /* BD */
    assert_int_equal(dbg_log(&t, 1, 0), CODE + 0x80);
    assert_true(dbg_log(&t, 2, 0) & RF);                     /* a fault: RF = 1 */
    assert_int_equal(dbg_log(&t, 3, 0), 0x400);              /* GD cleared */
    assert_int_equal(t.s.rip, CODE + 0x84);
    emu_tm_destroy(&t);
}

/* --- alignment check -------------------------------------------------------------- */

static void test_alignment_check(void **state)
{
    /* mov eax, [rsi+1]; pushfq; or dword [rsp], AC; popfq; mov eax, [rsi];
     * mov al, [rsi+3]; mov eax, [rsi+1]; hlt */
    static const uint8_t code[] = {
        0x8b, 0x46, 0x01, 0x9c, 0x81, 0x0c, 0x24, 0x00, 0x00, 0x04, 0x00, 0x9d,
        0x8b, 0x06, 0x8a, 0x46, 0x03, 0x8b, 0x46, 0x01, 0xf4,
    };
    static const uint8_t push_odd[] = { 0x50 };    /* push rax */
    struct emu_tm t;

    /* CPL 3 with CR0.AM: misaligned is fine until POPFQ sets AC; then
     * aligned and byte accesses pass and the misaligned load is #AC(0),
     * RIP at it, EAX unchanged. */
    guest_init(&t, 3);
    t.s.cr0 |= X86_CR0_AM;
    t.s.gpr[R_ESI] = BUF;
    memcpy(t.m.ram + BUF, "\x11\x22\x33\x44\x55", 5);
    put(&t, CODE, code, sizeof(code));
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 100), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_AC);
    assert_true(t.c.exc_has_error);
    assert_int_equal(t.c.exc_error, 0);
    assert_int_equal(t.s.rip, CODE + 0x11);
    assert_int_equal(t.s.gpr[R_EAX] & 0xffffff00, 0x44332200);
    /* A misaligned stack is checked too. */
    put(&t, CODE + 0x100, push_odd, sizeof(push_odd));
    t.s.rip = CODE + 0x100;
    t.s.gpr[R_ESP] = STACK_TOP - 4;
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_EXCEPTION);
    assert_int_equal(t.c.exc_vector, EXC_AC);
    assert_int_equal(t.s.gpr[R_ESP], STACK_TOP - 4);
    /* Clearing CR0.AM turns it off. */
    t.s.cr0 &= ~X86_CR0_AM;
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    emu_tm_destroy(&t);

    /* CPL 0 never checks, AC or not. */
    guest_init(&t, 0);
    t.s.cr0 |= X86_CR0_AM;
    t.s.gpr[R_ESI] = BUF;
    put(&t, CODE, code, sizeof(code));
    emu_invalidate(&t.c);
    assert_int_equal(emu_run(&t.c, 100), EMU_STOP_HALT);
    assert_true(t.s.rflags & X86_RFLAGS_AC);
    emu_tm_destroy(&t);
}

/* INT 1 (CD 01) is a software interrupt, checked against the gate's DPL;
 * ICEBP (F1) is not. */
static void test_int1_is_software(void **state)
{
    static const uint8_t int1[] = { 0xcd, 0x01 };
    static const uint8_t icebp[] = { 0xf1 };
    struct emu_tm t;

    guest_init(&t, 3);
    t.c.deliver_exceptions = true;
    set_gate(&t, EXC_DB, CODE + 0x1000);   /* DPL 0 */
    set_gate(&t, EXC_GP, CODE + 0x2000);
    tss_set32(&t, STACK_TOP, 0);   /* RSP0 = STACK_TOP (bytes 4-11) */
    put(&t, CODE, int1, sizeof(int1));
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    assert_int_equal(t.s.rip, CODE + 0x2000);
    assert_int_equal(*(uint64_t *)(t.m.ram + STACK_TOP - 48), 1 * 8 + 2);  /* IDT | vector */
    emu_tm_destroy(&t);

    guest_init(&t, 3);
    t.c.deliver_exceptions = true;
    set_gate(&t, EXC_DB, CODE + 0x1000);
    tss_set32(&t, STACK_TOP, 0);   /* RSP0 = STACK_TOP (bytes 4-11) */
    put(&t, CODE, icebp, sizeof(icebp));
    assert_int_equal(emu_run(&t.c, 1), EMU_STOP_BUDGET);
    assert_int_equal(t.s.rip, CODE + 0x1000);
    emu_tm_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nmi_blocked_until_iret),
        cmocka_unit_test(test_single_step_and_icebp),
        cmocka_unit_test(test_cr8_and_apic_base_through_lapic),
        cmocka_unit_test(test_ins_outs),
        cmocka_unit_test(test_io_permission_bitmap),
        cmocka_unit_test(test_pusha_popa_lxs_32bit),
        cmocka_unit_test(test_pusha_is_ud_in_64bit),
        cmocka_unit_test(test_real_mode_ivt),
        cmocka_unit_test(test_vm86_sensitive_instructions),
        cmocka_unit_test(test_call_gate_32bit),
        cmocka_unit_test(test_call_gate_64bit),
        cmocka_unit_test(test_debug_instruction_breakpoint),
        cmocka_unit_test(test_debug_data_breakpoints),
        cmocka_unit_test(test_debug_general_detect),
        cmocka_unit_test(test_alignment_check),
        cmocka_unit_test(test_int1_is_software),
        cmocka_unit_test(test_task_switch_32bit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
