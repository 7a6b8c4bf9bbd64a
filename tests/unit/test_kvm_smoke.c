/* The kvm accelerator on the real /dev/kvm: a few real-mode instructions
 * reach registered port and MMIO handlers with the right values, and every
 * field of struct cpu_state survives set_state -> get_state.  Guest
 * supervisor code is kept tiny: PVM emulates it one instruction at a time. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <x86intrin.h>
#include <cmocka.h>

#include "accel/accel.h"
#include "accel/kvm.h"
#include "config/config.h"
#include "machine/machine.h"
#include "util/main_loop.h"

struct fixture {
    struct vm_config cfg;
    struct machine m;
};

static int setup(void **st)
{
    static struct fixture f;
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

    *st = NULL;
    if (fd < 0)
        return 0; /* no usable KVM here: every test skips */
    close(fd);
    memset(&f, 0, sizeof(f));
    f.cfg.ram_size = 16 * MiB;
    f.cfg.smp = 1;
    f.cfg.no_reboot = true; /* a triple fault becomes a shutdown request */
    assert_int_equal(main_loop_init(), 0);
    assert_int_equal(machine_init(&f.m, &f.cfg), 0);
    f.m.accel = &accel_kvm_ops;
    assert_int_equal(accel_kvm_ops.init(&f.m), 0);
    assert_int_equal(machine_create_vcpus(&f.m), 0);
    assert_int_equal(f.m.nr_vcpus, 1);
    *st = &f;
    return 0;
}

/* cmocka fails a test whose setup skips, so the test body does it. */
static struct fixture *fixture_or_skip(void **st)
{
    if (!*st)
        skip();
    return *st;
}

static int teardown(void **st)
{
    struct fixture *f = *st;

    if (f) {
        machine_destroy(&f->m);
        main_loop_cleanup();
    }
    return 0;
}

/* ---- devices the guest talks to ---- */

struct probe {
    struct machine *m;
    uint64_t writes[16], offsets[16];
    unsigned sizes[16];
    int nr_writes, nr_reads;
};

static uint64_t probe_read(void *opaque, uint64_t offset, unsigned size)
{
    struct probe *p = opaque;

    p->nr_reads++;
    return 0x1357;
}

static void probe_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct probe *p = opaque;

    if (p->nr_writes < 16) {
        p->writes[p->nr_writes] = value;
        p->offsets[p->nr_writes] = offset;
        p->sizes[p->nr_writes] = size;
    }
    p->nr_writes++;
}

static const struct io_ops probe_ops = { .read = probe_read, .write = probe_write };

/* Port 0xe9: the guest's "done" signal; stop the vCPU. */
static void done_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct probe *p = opaque;

    probe_write(p, offset, value, size);
    atomic_store(&p->m->vcpus_should_stop, 1);
}

static const struct io_ops done_ops = { .read = probe_read, .write = done_write };

#define CODE_GPA 0x1000
#define DATA_GPA 0x1100
#define MMIO_BASE 0xd0000000ULL

static const uint8_t guest_code[] = {
    0xba, 0x34, 0x12,       /* mov dx, 0x1234 */
    0xed,                   /* in ax, dx          -> 0x1357 */
    0x05, 0x01, 0x00,       /* add ax, 1 */
    0xef,                   /* out dx, ax         <- 0x1358 */
    0xbe, 0x00, 0x11,       /* mov si, DATA_GPA */
    0xb9, 0x04, 0x00,       /* mov cx, 4 */
    0xf3, 0x6e,             /* rep outsb          <- 'v' 'm' 'o' 'n' */
    0xb0, 0xa5,             /* mov al, 0xa5 */
    0x26, 0xa2, 0x10, 0x00, /* mov es:[0x10], al  <- MMIO at ES.base + 0x10 */
    0xb0, 0x5a,             /* mov al, 0x5a */
    0xe6, 0xe9,             /* out 0xe9, al       <- done */
    0xeb, 0xfe,             /* jmp $ */
};

static void test_pio_and_mmio(void **st)
{
    struct fixture *f = fixture_or_skip(st);
    struct machine *m = &f->m;
    struct vcpu *v = m->vcpus[0];
    struct probe port = { .m = m }, done = { .m = m }, mmio = { .m = m };
    struct cpu_state s;

    assert_int_equal(machine_register_pio(m, 0x1234, 1, &probe_ops, &port, "probe"), 0);
    assert_int_equal(machine_register_pio(m, 0xe9, 1, &done_ops, &done, "done"), 0);
    assert_int_equal(machine_register_mmio(m, MMIO_BASE, 0x1000, &probe_ops, &mmio, "mmio"), 0);
    assert_int_equal(machine_write_gpa(m, CODE_GPA, guest_code, sizeof(guest_code)), 0);
    assert_int_equal(machine_write_gpa(m, DATA_GPA, "vmon", 4), 0);

    cpu_state_reset(&s, 0, true);
    s.seg[S_CS].selector = 0;
    s.seg[S_CS].base = 0;
    s.rip = CODE_GPA;
    /* Real mode with a 32-bit base in ES's hidden part ("unreal" mode), to
     * reach an address outside RAM. */
    s.seg[S_ES].base = MMIO_BASE;
    assert_int_equal(accel_kvm_ops.set_state(v, &s), 0);

    assert_int_equal(accel_kvm_ops.vcpu_run(v), VCPU_EXIT_STOP);

    assert_int_equal(port.nr_reads, 1);
    assert_int_equal(port.nr_writes, 5);
    assert_int_equal(port.sizes[0], 2);
    assert_int_equal(port.writes[0], 0x1358);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(port.sizes[1 + i], 1);
        assert_int_equal(port.writes[1 + i], (uint8_t)"vmon"[i]);
    }
    assert_int_equal(mmio.nr_writes, 1);
    assert_int_equal(mmio.offsets[0], 0x10);
    assert_int_equal(mmio.sizes[0], 1);
    assert_int_equal(mmio.writes[0], 0xa5);
    assert_int_equal(done.nr_writes, 1);
    assert_int_equal(done.writes[0], 0x5a);
    assert_true(v->stats[STAT_EXIT_IO].count >= 3);
    assert_true(v->stats[STAT_EXIT_MMIO].count == 1);

    /* The vCPU stopped right after the OUT that asked for it. */
    assert_int_equal(accel_kvm_ops.get_state(v, &s), 0);
    assert_int_equal(s.rip, CODE_GPA + sizeof(guest_code) - 2);
    assert_int_equal(s.gpr[R_EAX] & 0xffff, 0x135a);
    assert_int_equal(s.gpr[R_ECX] & 0xffff, 0);
    assert_int_equal(s.gpr[R_ESI] & 0xffff, DATA_GPA + 4);

    /* A stop request seen before entering the guest returns at once. */
    assert_int_equal(accel_kvm_ops.vcpu_run(v), VCPU_EXIT_STOP);
    atomic_store(&m->vcpus_should_stop, 0);
}

/* ---- state round trip ---- */

static void seg(struct x86_segment *sg, uint64_t base, uint32_t limit, uint16_t sel,
                uint8_t type, uint8_t s, uint8_t dpl, uint8_t db, uint8_t l, uint8_t g)
{
    *sg = (struct x86_segment){ .base = base, .limit = limit, .selector = sel, .type = type,
                                .present = 1, .dpl = dpl, .db = db, .s = s, .l = l, .g = g };
}

static void lapic_put(struct cpu_state *s, unsigned off, uint32_t val)
{
    memcpy(&s->lapic[off], &val, 4);
}

static uint32_t lapic_get(const struct cpu_state *s, unsigned off)
{
    uint32_t val;

    memcpy(&val, &s->lapic[off], 4);
    return val;
}

/* A 64-bit kernel-mode state in which every field differs from reset. */
static void distinctive_state(struct cpu_state *s)
{
    cpu_state_reset(s, 0, true);
    for (int i = 0; i < 16; i++)
        s->gpr[i] = 0x0101010101010101ULL * (uint64_t)(i + 1) + 0x1000 * (uint64_t)i;
    s->rip = 0xffffffff81000123ULL;
    s->rflags = X86_RFLAGS_FIXED | X86_RFLAGS_CF | X86_RFLAGS_ZF | X86_RFLAGS_IF |
                X86_RFLAGS_AC;

    seg(&s->seg[S_CS], 0, 0xffffffff, 0x10, 0xb, 1, 0, 0, 1, 1);
    seg(&s->seg[S_SS], 0, 0xffffffff, 0x18, 0x3, 1, 0, 1, 0, 1);
    seg(&s->seg[S_DS], 0, 0xffffffff, 0x18, 0x3, 1, 0, 1, 0, 1);
    seg(&s->seg[S_ES], 0x1000, 0xfffff, 0x2b, 0x3, 1, 3, 1, 0, 0);
    seg(&s->seg[S_FS], 0x7fff12340000ULL, 0xffffffff, 0x33, 0x3, 1, 3, 1, 0, 1);
    seg(&s->seg[S_GS], 0xffff888000001000ULL, 0xffffffff, 0, 0x3, 1, 0, 1, 0, 1);
    seg(&s->ldt, 0x123000, 0xff, 0x28, 0x2, 0, 0, 0, 0, 0);
    seg(&s->tr, 0x456000, 0x67, 0x40, 0xb, 0, 0, 0, 0, 0);
    s->gdt = (struct x86_dtable){ .base = 0xffffffff82009000ULL, .limit = 0x7f };
    s->idt = (struct x86_dtable){ .base = 0xffffffff8200a000ULL, .limit = 0xfff };

    s->cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP | X86_CR0_AM |
             X86_CR0_PG;
    s->cr2 = 0xdeadbeef000ULL;
    s->cr3 = 0x5000;
    s->cr4 = X86_CR4_PAE | X86_CR4_PGE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT | X86_CR4_DE;
    s->cr8 = 5;
    s->efer = X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE;
    s->xcr0 = 1; /* the model has no XSAVE: x87 only is the one legal value */
    s->dr[0] = 0x1000;
    s->dr[1] = 0x2008;
    s->dr[2] = 0x3010;
    s->dr[3] = 0x4018;
    s->dr[6] = 0xffff4ff1;
    s->dr[7] = 0x455;
    s->apic_base = X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE | X86_APIC_BASE_BSP;

    s->msr.tsc = 1000000000000ULL;
    s->msr.tsc_aux = 7;
    s->msr.tsc_deadline = 0; /* readable only in TSC-deadline timer mode */
    s->msr.sysenter_cs = 0x10;
    s->msr.sysenter_esp = 0xfffffe0000003000ULL;
    s->msr.sysenter_eip = 0xffffffff81a00000ULL;
    s->msr.star = 0x0023001000000000ULL;
    s->msr.lstar = 0xffffffff81a00080ULL;
    s->msr.cstar = 0xffffffff81a00100ULL;
    s->msr.sfmask = 0x47700;
    s->msr.kernel_gs_base = 0xffff888012340000ULL;
    s->msr.pat = 0x0007010600070106ULL;
    s->msr.misc_enable = 0x1801;
    s->msr.mtrr_def_type = 0xc06;
    for (int i = 0; i < 11; i++)
        s->msr.mtrr_fixed[i] = 0x0606060606060606ULL ^ (i & 1 ? 0x0606000000000000ULL : 0);
    s->msr.mtrr_var[0] = 0x80000006;
    s->msr.mtrr_var[1] = 0xff80000800ULL;
    s->msr.mtrr_var[2] = 0x00100000;          /* UC at 1 MiB */
    s->msr.mtrr_var[3] = 0xfffff00800ULL;

    s->fpu.fcw = 0x027f;
    s->fpu.fsw = 0x3800;
    s->fpu.ftw = 0x80;
    s->fpu.fop = 0x123;
    s->fpu.fip = 0xffffffff81001000ULL;
    s->fpu.fdp = 0xffff888000602000ULL;
    s->fpu.mxcsr = 0x1fa0;
    for (int i = 0; i < 8; i++)
        for (int b = 0; b < 10; b++) /* bytes 10-15 are reserved */
            s->fpu.st[i][b] = (uint8_t)(0x11 * i + b);
    for (int i = 0; i < 16; i++)
        for (int b = 0; b < 16; b++)
            s->fpu.xmm[i][b] = (uint8_t)(0x10 * i + b + 1);

    s->events.interrupt_shadow = 1;      /* STI */
    s->events.nmi_masked = 1;
    s->events.exception_pending = 1;
    s->events.exception_vector = 13;
    s->events.exception_has_error = 1;
    s->events.exception_error = 0x18;
    s->mp_state = MP_RUNNABLE;

    lapic_put(s, 0x80, 0x50);            /* TPR = CR8 << 4 */
    lapic_put(s, 0xd0, 0x01000000);      /* LDR */
    lapic_put(s, 0xe0, 0x0fffffff);      /* DFR: cluster model */
    lapic_put(s, 0xf0, 0x1ff);           /* SVR: enabled, vector 0xff */
    lapic_put(s, 0x320, 0x100ef);        /* LVT timer, masked */
    lapic_put(s, 0x340, 0x10400);        /* LVT perf: NMI, masked */
    lapic_put(s, 0x350, 0x700);          /* LINT0: ExtINT */
    lapic_put(s, 0x360, 0x400);          /* LINT1: NMI */
    lapic_put(s, 0x370, 0x100fe);        /* LVT error */
}

/* later is at most ~40 s (at a few GHz) after earlier */
static bool tsc_near(uint64_t later, uint64_t earlier)
{
    return later >= earlier && later - earlier < 100000000000ULL;
}

static void assert_seg_equal(const struct x86_segment *a, const struct x86_segment *b)
{
    assert_int_equal(a->base, b->base);
    assert_int_equal(a->limit, b->limit);
    assert_int_equal(a->selector, b->selector);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->present, b->present);
    assert_int_equal(a->dpl, b->dpl);
    assert_int_equal(a->db, b->db);
    assert_int_equal(a->s, b->s);
    assert_int_equal(a->l, b->l);
    assert_int_equal(a->g, b->g);
    assert_int_equal(a->avl, b->avl);
    assert_int_equal(a->unusable, b->unusable);
}

static void test_state_round_trip(void **st)
{
    struct fixture *f = fixture_or_skip(st);
    struct vcpu *v = f->m.vcpus[0];
    static struct cpu_state want, got;

    distinctive_state(&want);
    assert_int_equal(accel_kvm_ops.set_state(v, &want), 0);
    memset(&got, 0xa5, sizeof(got)); /* nothing may be left unwritten */
    assert_int_equal(accel_kvm_ops.get_state(v, &got), 0);

    for (int i = 0; i < 16; i++)
        assert_int_equal(got.gpr[i], want.gpr[i]);
    assert_int_equal(got.rip, want.rip);
    assert_int_equal(got.rflags, want.rflags);
    for (int i = 0; i < S_NR; i++)
        assert_seg_equal(&got.seg[i], &want.seg[i]);
    assert_seg_equal(&got.ldt, &want.ldt);
    assert_seg_equal(&got.tr, &want.tr);
    assert_int_equal(got.gdt.base, want.gdt.base);
    assert_int_equal(got.gdt.limit, want.gdt.limit);
    assert_int_equal(got.idt.base, want.idt.base);
    assert_int_equal(got.idt.limit, want.idt.limit);
    assert_int_equal(got.cr0, want.cr0);
    assert_int_equal(got.cr2, want.cr2);
    assert_int_equal(got.cr3, want.cr3);
    assert_int_equal(got.cr4, want.cr4);
    assert_int_equal(got.cr8, want.cr8);
    assert_int_equal(got.efer, want.efer);
    assert_int_equal(got.xcr0, want.xcr0);
    for (int i = 0; i < 8; i++)
        if (i != 4 && i != 5)
            assert_int_equal(got.dr[i], want.dr[i]);
    assert_int_equal(got.apic_base, want.apic_base);

    /* The TSC runs on between the two calls.  A software KVM such as PVM
     * runs guest user code natively and so cannot offset the TSC: it ignores
     * the write and the guest sees the host's TSC. */
    uint64_t host_tsc = __rdtsc();
    if (accel_host_has_hw_virt())
        assert_true(tsc_near(got.msr.tsc, want.msr.tsc));
    else
        assert_true(tsc_near(got.msr.tsc, want.msr.tsc) || tsc_near(host_tsc, got.msr.tsc));
    got.msr.tsc = want.msr.tsc;
    assert_memory_equal(&got.msr, &want.msr, sizeof(got.msr));

    assert_memory_equal(&got.fpu, &want.fpu, offsetof(struct x86_fxsave, reserved1));
    assert_int_equal(got.events.exception_pending, want.events.exception_pending);
    assert_int_equal(got.events.exception_injected, want.events.exception_injected);
    assert_int_equal(got.events.exception_vector, want.events.exception_vector);
    assert_int_equal(got.events.exception_has_error, want.events.exception_has_error);
    assert_int_equal(got.events.exception_error, want.events.exception_error);
    assert_int_equal(got.events.interrupt_injected, want.events.interrupt_injected);
    assert_int_equal(got.events.interrupt_vector, want.events.interrupt_vector);
    assert_int_equal(got.events.interrupt_soft, want.events.interrupt_soft);
    assert_int_equal(got.events.interrupt_shadow, want.events.interrupt_shadow);
    assert_int_equal(got.events.nmi_pending, want.events.nmi_pending);
    assert_int_equal(got.events.nmi_injected, want.events.nmi_injected);
    assert_int_equal(got.events.nmi_masked, want.events.nmi_masked);
    assert_int_equal(got.events.sipi_vector, want.events.sipi_vector);
    assert_int_equal(got.mp_state, want.mp_state);

    static const unsigned regs[] = { 0x20, 0x30, 0x80, 0xd0, 0xe0, 0xf0,
                                     0x320, 0x330, 0x340, 0x350, 0x360, 0x370 };
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
        if (lapic_get(&got, regs[i]) != lapic_get(&want, regs[i]))
            fail_msg("LAPIC register 0x%x: got 0x%x, want 0x%x", regs[i],
                     lapic_get(&got, regs[i]), lapic_get(&want, regs[i]));
    }

    /* And back again: a second set/get of what we read is a fixed point. */
    static struct cpu_state again;
    assert_int_equal(accel_kvm_ops.set_state(v, &got), 0);
    memset(&again, 0x5a, sizeof(again));
    assert_int_equal(accel_kvm_ops.get_state(v, &again), 0);
    again.msr.tsc = got.msr.tsc;
    assert_memory_equal(&again.fpu, &got.fpu, sizeof(got.fpu));
    assert_memory_equal(&again.msr, &got.msr, sizeof(got.msr));
    assert_memory_equal(again.gpr, got.gpr, sizeof(got.gpr));
}

static void test_reset_state_loads(void **st)
{
    struct fixture *f = fixture_or_skip(st);
    struct vcpu *v = f->m.vcpus[0];
    static struct cpu_state want, got;

    /* The architectural reset state is something KVM accepts verbatim. */
    cpu_state_reset(&want, 0, true);
    assert_int_equal(accel_kvm_ops.set_state(v, &want), 0);
    assert_int_equal(accel_kvm_ops.get_state(v, &got), 0);
    assert_int_equal(got.rip, 0xfff0);
    assert_int_equal(got.seg[S_CS].selector, 0xf000);
    assert_int_equal(got.seg[S_CS].base, 0xffff0000);
    assert_int_equal(got.cr0, 0x60000010);
    assert_int_equal(got.gpr[R_EDX], CPUID_VMON_SIGNATURE);
    assert_int_equal(got.dr[6], 0xffff0ff0);
    assert_int_equal(got.dr[7], 0x400);
    assert_int_equal(got.msr.pat, 0x0007040600070406ULL);
    assert_int_equal(got.fpu.mxcsr, 0x1f80);
    assert_int_equal(got.fpu.fcw, 0x37f);
    assert_int_equal(got.apic_base, 0xfee00900);
    assert_int_equal(lapic_get(&got, 0x30) & 0xff, 0x14);
    assert_int_equal(lapic_get(&got, 0xf0), 0xff);
    assert_int_equal(got.mp_state, MP_RUNNABLE);
}

/* ---- leaving the guest when the machine asks ---- */

static void *run_thread(void *arg)
{
    return (void *)(intptr_t)accel_kvm_ops.vcpu_run(arg);
}

static void test_kick_stops_spinning_guest(void **st)
{
    struct fixture *f = fixture_or_skip(st);
    struct machine *m = &f->m;
    struct vcpu *v = m->vcpus[0];
    static const uint8_t spin[] = { 0xeb, 0xfe }; /* jmp $ */
    struct cpu_state s;
    struct timespec deadline;
    void *ret;

    assert_int_equal(machine_write_gpa(m, CODE_GPA, spin, sizeof(spin)), 0);
    cpu_state_reset(&s, 0, true);
    s.seg[S_CS].selector = 0;
    s.seg[S_CS].base = 0;
    s.rip = CODE_GPA;
    assert_int_equal(accel_kvm_ops.set_state(v, &s), 0);

    assert_int_equal(pthread_create(&v->thread, NULL, run_thread, v), 0);
    v->thread_started = true;
    usleep(100 * 1000); /* well inside KVM_RUN by now */
    atomic_store(&m->vcpus_should_stop, 1);
    accel_kvm_ops.vcpu_kick(v);

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    assert_int_equal(pthread_timedjoin_np(v->thread, &ret, &deadline), 0);
    v->thread_started = false;
    assert_int_equal((intptr_t)ret, VCPU_EXIT_STOP);
    assert_true(v->stats[STAT_EXIT_INTR].count >= 1);
    assert_int_equal(accel_kvm_ops.get_state(v, &s), 0);
    assert_int_equal(s.rip, CODE_GPA);
    atomic_store(&m->vcpus_should_stop, 0);
}

static void test_triple_fault(void **st)
{
    struct fixture *f = fixture_or_skip(st);
    struct machine *m = &f->m;
    struct vcpu *v = m->vcpus[0];
    static const uint8_t code[] = { 0x0f, 0x0b }; /* ud2 */
    struct cpu_state s;

    /* 64-bit mode, identity-mapped 2 MiB page, empty IDT: #UD cannot be
     * delivered, nor the #GP that follows, nor the #DF: shutdown. */
    static const uint64_t pml4 = 0x3000 | 3, pdpt = 0x4000 | 3, pd = 0x0 | 0x83;
    assert_int_equal(machine_write_gpa(m, 0x2000, &pml4, 8), 0);
    assert_int_equal(machine_write_gpa(m, 0x3000, &pdpt, 8), 0);
    assert_int_equal(machine_write_gpa(m, 0x4000, &pd, 8), 0);
    assert_int_equal(machine_write_gpa(m, CODE_GPA, code, sizeof(code)), 0);
    cpu_state_reset(&s, 0, true);
    seg(&s.seg[S_CS], 0, 0xffffffff, 0x8, 0xb, 1, 0, 0, 1, 1);
    for (int i = 0; i < S_NR; i++)
        if (i != S_CS)
            seg(&s.seg[i], 0, 0xffffffff, 0x10, 0x3, 1, 0, 1, 0, 1);
    seg(&s.tr, 0, 0x67, 0x18, 0xb, 0, 0, 0, 0, 0);
    s.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
    s.cr3 = 0x2000;
    s.cr4 = X86_CR4_PAE;
    s.efer = X86_EFER_LME | X86_EFER_LMA;
    s.rip = CODE_GPA;
    s.idt.limit = 0;
    assert_int_equal(accel_kvm_ops.set_state(v, &s), 0);

    assert_int_equal(accel_kvm_ops.vcpu_run(v), VCPU_EXIT_STOP);
    assert_int_equal(v->stats[STAT_EXIT_SHUTDOWN].count, 1);
    /* -no-reboot (set by the fixture) turns the reset into a shutdown. */
    assert_int_equal(atomic_load(&m->shutdown_requested), 1);
    assert_int_equal(m->shutdown_cause, SHUTDOWN_GUEST_RESET);
    /* It stays stopped; loading a new state revives it. */
    assert_int_equal(accel_kvm_ops.vcpu_run(v), VCPU_EXIT_STOP);
}

/* ---- machine reset of the in-kernel devices ---- */

static uint8_t pic_master_imr(struct machine *m)
{
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;

    assert_int_equal(kvm_devices_get(m, chips, &pit), 0);
    return chips[KVM_IRQCHIP_PIC_MASTER].chip.pic.imr;
}

static void test_devices_round_trip(void **st)
{
    struct fixture *f = fixture_or_skip(st);
    static struct kvm_irqchip chips[3], back[3];
    static struct kvm_pit_state2 pit, pit_back;
    struct machine other = { 0 };

    assert_int_equal(kvm_devices_get(&f->m, chips, &pit), 0);
    chips[KVM_IRQCHIP_PIC_MASTER].chip.pic.imr = 0x5a;
    chips[KVM_IRQCHIP_PIC_SLAVE].chip.pic.irq_base = 0x70;
    chips[KVM_IRQCHIP_IOAPIC].chip.ioapic.redirtbl[5].bits = 0x10000 | 0x35;
    pit.channels[2].gate = 1;
    assert_int_equal(kvm_devices_set(&f->m, chips, &pit), 0);
    assert_int_equal(kvm_devices_get(&f->m, back, &pit_back), 0);
    assert_int_equal(back[KVM_IRQCHIP_PIC_MASTER].chip.pic.imr, 0x5a);
    assert_int_equal(back[KVM_IRQCHIP_PIC_SLAVE].chip.pic.irq_base, 0x70);
    assert_int_equal(back[KVM_IRQCHIP_IOAPIC].chip.ioapic.redirtbl[5].bits, 0x10035);
    assert_int_equal(pit_back.channels[2].gate, 1);

    /* Chips out of order, or a machine that does not run on kvm. */
    back[0].chip_id = KVM_IRQCHIP_IOAPIC;
    assert_int_equal(kvm_devices_set(&f->m, back, &pit_back), -EINVAL);
    assert_int_equal(kvm_devices_get(&other, back, &pit_back), -ENODEV);
}

static void test_reset_restores_irqchip(void **st)
{
    struct fixture *f = fixture_or_skip(st);
    struct machine *m = &f->m;
    struct vcpu *v = m->vcpus[0];
    struct probe done = { .m = m };
    static const uint8_t code[] = {
        0xb0, 0xa5,             /* mov al, 0xa5 */
        0xe6, 0x21,             /* out 0x21, al: PIC master IMR */
        0xe6, 0xe9,             /* out 0xe9, al: done */
        0xeb, 0xfe,             /* jmp $ */
    };
    struct cpu_state s;
    uint8_t imr0 = pic_master_imr(m);

    assert_int_not_equal(imr0, 0xa5);
    assert_int_equal(machine_register_pio(m, 0xe9, 1, &done_ops, &done, "done"), 0);
    assert_int_equal(machine_write_gpa(m, CODE_GPA, code, sizeof(code)), 0);
    cpu_state_reset(&s, 0, true);
    s.seg[S_CS].selector = 0;
    s.seg[S_CS].base = 0;
    s.rip = CODE_GPA;
    assert_int_equal(accel_kvm_ops.set_state(v, &s), 0);
    assert_int_equal(accel_kvm_ops.vcpu_run(v), VCPU_EXIT_STOP);
    assert_int_equal(done.nr_writes, 1);
    assert_int_equal(pic_master_imr(m), 0xa5); /* the in-kernel PIC took it */

    accel_kvm_ops.reset(m);
    assert_int_equal(pic_master_imr(m), imr0);
    atomic_store(&m->vcpus_should_stop, 0);
}

/* ---- a guest the host cannot run: dump and give up ---- */

static void test_fatal_exit_dumps_state(void **st)
{
    struct fixture *f = fixture_or_skip(st);
    struct machine *m = &f->m;
    struct vcpu *v = m->vcpus[0];
    static const uint8_t code[] = { 0xdc, 0x03, 0xf4 }; /* fadd qword [bp+di]; hlt */
    struct cpu_state s;
    char out[8192] = "";
    FILE *tmp;
    int saved;

    /* Relies on PVM's instruction emulator, which cannot run this x87
     * instruction in supervisor code; hardware KVM just runs it. */
    if (accel_host_has_hw_virt()) {
        skip();
        return;
    }
    tmp = tmpfile();
    saved = dup(2);
    assert_non_null(tmp);
    assert_true(saved >= 0);
    assert_int_equal(machine_write_gpa(m, CODE_GPA, code, sizeof(code)), 0);
    cpu_state_reset(&s, 0, true);
    s.seg[S_CS].selector = 0;
    s.seg[S_CS].base = 0;
    s.rip = CODE_GPA;
    assert_int_equal(accel_kvm_ops.set_state(v, &s), 0);

    fflush(stderr);
    dup2(fileno(tmp), 2);
    enum vcpu_exit e = accel_kvm_ops.vcpu_run(v);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    out[fread(out, 1, sizeof(out) - 1, tmp)] = 0;
    fclose(tmp);

    assert_int_equal(e, VCPU_EXIT_FATAL);
    assert_non_null(strstr(out, "KVM_EXIT_INTERNAL_ERROR"));
    assert_non_null(strstr(out, "RIP=0000000000001000"));
    assert_non_null(strstr(out, "CS =0000 0000000000000000 0000ffff"));
    assert_non_null(strstr(out, "Code=<dc> 03 f4"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pio_and_mmio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_state_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kick_stops_spinning_guest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_triple_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_restores_irqchip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_exit_dumps_state, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
