/* The kvm accelerator: conversion between KVM's per-vCPU state ioctls and
 * the canonical struct cpu_state.  Everything a vCPU is goes through here
 * on pause, snapshot and accelerator switch, so every field of cpu_state.h
 * has a place below. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "accel/kvm_internal.h"
#include "util/log.h"

#define MSR_IA32_TSC 0x10u

/* struct x86_msrs, field by field: the table both directions walk. */
#define MSR_FIELD(idx, field) { idx, offsetof(struct cpu_state, msr.field), #field }
static const struct msr_field {
    uint32_t index;
    size_t offset;
    const char *name;
} msr_fields[] = {
    MSR_FIELD(MSR_IA32_TSC, tsc),
    MSR_FIELD(0xc0000103, tsc_aux),
    MSR_FIELD(0x6e0, tsc_deadline),
    MSR_FIELD(0x174, sysenter_cs),
    MSR_FIELD(0x175, sysenter_esp),
    MSR_FIELD(0x176, sysenter_eip),
    MSR_FIELD(0xc0000081, star),
    MSR_FIELD(0xc0000082, lstar),
    MSR_FIELD(0xc0000083, cstar),
    MSR_FIELD(0xc0000084, sfmask),
    MSR_FIELD(0xc0000102, kernel_gs_base),
    MSR_FIELD(0x277, pat),
    MSR_FIELD(0x1a0, misc_enable),
    MSR_FIELD(0x2ff, mtrr_def_type),
    MSR_FIELD(0x250, mtrr_fixed[0]),
    MSR_FIELD(0x258, mtrr_fixed[1]),
    MSR_FIELD(0x259, mtrr_fixed[2]),
    MSR_FIELD(0x268, mtrr_fixed[3]),
    MSR_FIELD(0x269, mtrr_fixed[4]),
    MSR_FIELD(0x26a, mtrr_fixed[5]),
    MSR_FIELD(0x26b, mtrr_fixed[6]),
    MSR_FIELD(0x26c, mtrr_fixed[7]),
    MSR_FIELD(0x26d, mtrr_fixed[8]),
    MSR_FIELD(0x26e, mtrr_fixed[9]),
    MSR_FIELD(0x26f, mtrr_fixed[10]),
    MSR_FIELD(0x200, mtrr_var[0]),
    MSR_FIELD(0x201, mtrr_var[1]),
    MSR_FIELD(0x202, mtrr_var[2]),
    MSR_FIELD(0x203, mtrr_var[3]),
    MSR_FIELD(0x204, mtrr_var[4]),
    MSR_FIELD(0x205, mtrr_var[5]),
    MSR_FIELD(0x206, mtrr_var[6]),
    MSR_FIELD(0x207, mtrr_var[7]),
    MSR_FIELD(0x208, mtrr_var[8]),
    MSR_FIELD(0x209, mtrr_var[9]),
    MSR_FIELD(0x20a, mtrr_var[10]),
    MSR_FIELD(0x20b, mtrr_var[11]),
    MSR_FIELD(0x20c, mtrr_var[12]),
    MSR_FIELD(0x20d, mtrr_var[13]),
    MSR_FIELD(0x20e, mtrr_var[14]),
    MSR_FIELD(0x20f, mtrr_var[15]),
};
_Static_assert(ARRAY_SIZE(msr_fields) <= KVM_STATE_MAX_MSRS, "msr_ok[] too small");
_Static_assert(sizeof(struct x86_msrs) == (ARRAY_SIZE(msr_fields)) * sizeof(uint64_t),
               "every field of struct x86_msrs needs a row in msr_fields");

struct msr_buf {
    struct kvm_msrs hdr;
    struct kvm_msr_entry e[KVM_STATE_MAX_MSRS];
};

static uint64_t *msr_slot(struct cpu_state *s, const struct msr_field *f)
{
    return (uint64_t *)((uint8_t *)s + f->offset);
}

static uint64_t msr_value(const struct cpu_state *s, const struct msr_field *f)
{
    uint64_t v;

    memcpy(&v, (const uint8_t *)s + f->offset, sizeof(v));
    return v;
}

void kvm_probe_msrs(struct kvm_vm *vm, int vcpu_fd)
{
    for (size_t i = 0; i < ARRAY_SIZE(msr_fields); i++) {
        struct msr_buf b = { .hdr.nmsrs = 1, .e[0].index = msr_fields[i].index };

        vm->msr_ok[i] = kvm_ioctl(vcpu_fd, KVM_GET_MSRS, &b) == 1;
        if (!vm->msr_ok[i])
            LOG(LOG_ACCEL, "kvm: MSR 0x%x (%s) not supported by this KVM; kept in vmon's state only\n",
                msr_fields[i].index, msr_fields[i].name);
    }
    vm->msrs_probed = true;
}

static void seg_from_kvm(struct x86_segment *d, const struct kvm_segment *k)
{
    *d = (struct x86_segment){
        .base = k->base, .limit = k->limit, .selector = k->selector,
        .type = k->type, .present = k->present, .dpl = k->dpl, .db = k->db,
        .s = k->s, .l = k->l, .g = k->g, .avl = k->avl, .unusable = k->unusable,
    };
}

static void seg_to_kvm(struct kvm_segment *k, const struct x86_segment *d)
{
    *k = (struct kvm_segment){
        .base = d->base, .limit = d->limit, .selector = d->selector,
        .type = d->type, .present = d->present, .dpl = d->dpl, .db = d->db,
        .s = d->s, .l = d->l, .g = d->g, .avl = d->avl, .unusable = d->unusable,
    };
}

/* KVM orders the GPRs rax rbx rcx rdx rsi rdi rsp rbp; we use the encoding. */
#define GPR_MAP(X)                                                             \
    X(R_EAX, rax) X(R_EBX, rbx) X(R_ECX, rcx) X(R_EDX, rdx) X(R_ESI, rsi)      \
    X(R_EDI, rdi) X(R_ESP, rsp) X(R_EBP, rbp) X(R_R8, r8) X(R_R9, r9)          \
    X(R_R10, r10) X(R_R11, r11) X(R_R12, r12) X(R_R13, r13) X(R_R14, r14)      \
    X(R_R15, r15)

/* interrupt_shadow: ours is bit0 STI, bit1 MOV SS; KVM's is the reverse. */
static uint8_t shadow_from_kvm(uint8_t k)
{
    return (k & KVM_X86_SHADOW_INT_STI ? 1 : 0) | (k & KVM_X86_SHADOW_INT_MOV_SS ? 2 : 0);
}

static uint8_t shadow_to_kvm(uint8_t s)
{
    return (s & 1 ? KVM_X86_SHADOW_INT_STI : 0) | (s & 2 ? KVM_X86_SHADOW_INT_MOV_SS : 0);
}

static int fail(struct vcpu *v, const char *ioctl_name, int err)
{
    error_report("kvm: vCPU %d: %s: %s", v->index, ioctl_name, strerror(-err));
    return err;
}

/* XSAVE image: the legacy FXSAVE area first, XSTATE_BV at byte 512. */
#define XSAVE_HDR_BV 512
#define XFEATURE_FP_SSE 3ULL

static int get_fpu(struct vcpu *v, struct x86_fxsave *fx)
{
    struct kvm_vcpu_priv *p = v->accel_priv;
    struct kvm_vm *vm = kvm_vm_of(v->m);
    struct kvm_fpu fpu;
    int r;

    if (vm->xsave_size) {
        uint8_t *img = calloc(1, (size_t)vm->xsave_size);

        if (!img)
            return -ENOMEM;
        r = kvm_ioctl(p->fd, vm->xsave_size > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2
                                                                            : KVM_GET_XSAVE, img);
        if (r >= 0)
            memcpy(fx, img, sizeof(*fx)); /* KVM fills in init values */
        free(img);
        if (r < 0)
            return fail(v, "KVM_GET_XSAVE", r);
        memset(fx->reserved1, 0, sizeof(fx->reserved1));
        return 0;
    }
    r = kvm_ioctl(p->fd, KVM_GET_FPU, &fpu);
    if (r < 0)
        return fail(v, "KVM_GET_FPU", r);
    memset(fx, 0, sizeof(*fx));
    fx->fcw = fpu.fcw;
    fx->fsw = fpu.fsw;
    fx->ftw = fpu.ftwx;
    fx->fop = fpu.last_opcode;
    fx->fip = fpu.last_ip;
    fx->fdp = fpu.last_dp;
    fx->mxcsr = fpu.mxcsr;
    fx->mxcsr_mask = 0xffff; /* KVM_GET_FPU omits it; the model's value */
    memcpy(fx->st, fpu.fpr, sizeof(fx->st));
    memcpy(fx->xmm, fpu.xmm, sizeof(fx->xmm));
    return 0;
}

static int set_fpu(struct vcpu *v, const struct x86_fxsave *fx)
{
    struct kvm_vcpu_priv *p = v->accel_priv;
    struct kvm_vm *vm = kvm_vm_of(v->m);
    struct kvm_fpu fpu = { 0 };
    int r;

    if (vm->xsave_size) {
        uint8_t *img = calloc(1, (size_t)vm->xsave_size);
        uint64_t bv = XFEATURE_FP_SSE;

        if (!img)
            return -ENOMEM;
        /* x87 and SSE state are always explicit; every other component
         * (none in our model) goes back to its init state. */
        memcpy(img, fx, sizeof(*fx));
        memset(img + offsetof(struct x86_fxsave, reserved1), 0, sizeof(fx->reserved1));
        memcpy(img + XSAVE_HDR_BV, &bv, sizeof(bv));
        r = kvm_ioctl(p->fd, KVM_SET_XSAVE, img);
        free(img);
        return r < 0 ? fail(v, "KVM_SET_XSAVE", r) : 0;
    }
    fpu.fcw = fx->fcw;
    fpu.fsw = fx->fsw;
    fpu.ftwx = fx->ftw;
    fpu.last_opcode = fx->fop;
    fpu.last_ip = fx->fip;
    fpu.last_dp = fx->fdp;
    fpu.mxcsr = fx->mxcsr;
    memcpy(fpu.fpr, fx->st, sizeof(fpu.fpr));
    memcpy(fpu.xmm, fx->xmm, sizeof(fpu.xmm));
    r = kvm_ioctl(p->fd, KVM_SET_FPU, &fpu);
    return r < 0 ? fail(v, "KVM_SET_FPU", r) : 0;
}

/* With KVM_CAP_EXCEPTION_PAYLOAD a pending #PF/#DB has not yet written
 * CR2/DR6; x86_events has no payload, so apply it now, as delivery would. */
static void apply_payload(struct cpu_state *s, const struct kvm_vcpu_events *ev)
{
    if (!ev->exception.pending || !ev->exception_has_payload)
        return;
    if (ev->exception.nr == 14) {
        s->cr2 = ev->exception_payload;
    } else if (ev->exception.nr == 1) {
        /* DR6 bits 4-11, 16 and 32+ are "active low" (SDM 18.2.3). */
        uint64_t active_low = 0xffff0ff0ULL;

        s->dr[6] &= ~0xfULL;
        s->dr[6] |= active_low;
        s->dr[6] |= ev->exception_payload;
        s->dr[6] ^= ev->exception_payload & active_low;
    }
}

int kvm_get_state(struct vcpu *v, struct cpu_state *s)
{
    struct kvm_vcpu_priv *p = v->accel_priv;
    struct kvm_vm *vm = kvm_vm_of(v->m);
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_vcpu_events ev;
    struct kvm_mp_state mp;
    struct kvm_lapic_state lapic;
    struct msr_buf mb = { .hdr.nmsrs = 0 };
    int r, map[KVM_STATE_MAX_MSRS];

    if (!p || !vm)
        return -EINVAL;

    r = kvm_ioctl(p->fd, KVM_GET_REGS, &regs);
    if (r < 0)
        return fail(v, "KVM_GET_REGS", r);
#define X(i, f) s->gpr[i] = regs.f;
    GPR_MAP(X)
#undef X
    s->rip = regs.rip;
    s->rflags = regs.rflags;

    r = kvm_ioctl(p->fd, KVM_GET_SREGS, &sregs);
    if (r < 0)
        return fail(v, "KVM_GET_SREGS", r);
    seg_from_kvm(&s->seg[S_ES], &sregs.es);
    seg_from_kvm(&s->seg[S_CS], &sregs.cs);
    seg_from_kvm(&s->seg[S_SS], &sregs.ss);
    seg_from_kvm(&s->seg[S_DS], &sregs.ds);
    seg_from_kvm(&s->seg[S_FS], &sregs.fs);
    seg_from_kvm(&s->seg[S_GS], &sregs.gs);
    seg_from_kvm(&s->ldt, &sregs.ldt);
    seg_from_kvm(&s->tr, &sregs.tr);
    s->gdt = (struct x86_dtable){ .base = sregs.gdt.base, .limit = sregs.gdt.limit };
    s->idt = (struct x86_dtable){ .base = sregs.idt.base, .limit = sregs.idt.limit };
    s->cr0 = sregs.cr0;
    s->cr2 = sregs.cr2;
    s->cr3 = sregs.cr3;
    s->cr4 = sregs.cr4;
    s->cr8 = sregs.cr8;
    s->efer = sregs.efer;
    s->apic_base = sregs.apic_base;

    r = get_fpu(v, &s->fpu);
    if (r < 0)
        return r;

    s->xcr0 = 1; /* x87 only, unless the model offers XSAVE */
    if (vm->has_xcrs) {
        struct kvm_xcrs xcrs;

        r = kvm_ioctl(p->fd, KVM_GET_XCRS, &xcrs);
        if (r < 0)
            return fail(v, "KVM_GET_XCRS", r);
        for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++)
            if (xcrs.xcrs[i].xcr == 0)
                s->xcr0 = xcrs.xcrs[i].value;
    }

    if (vm->has_debugregs) {
        struct kvm_debugregs dbg;

        r = kvm_ioctl(p->fd, KVM_GET_DEBUGREGS, &dbg);
        if (r < 0)
            return fail(v, "KVM_GET_DEBUGREGS", r);
        memcpy(s->dr, dbg.db, sizeof(dbg.db));
        s->dr[4] = s->dr[5] = 0;
        s->dr[6] = dbg.dr6;
        s->dr[7] = dbg.dr7;
    }

    /* MSRs this KVM does not know keep the value vmon last gave them. */
    for (size_t i = 0; i < ARRAY_SIZE(msr_fields); i++)
        if (vm->msr_ok[i]) {
            map[mb.hdr.nmsrs] = (int)i;
            mb.e[mb.hdr.nmsrs++].index = msr_fields[i].index;
        }
    r = kvm_ioctl(p->fd, KVM_GET_MSRS, &mb);
    if (r < 0)
        return fail(v, "KVM_GET_MSRS", r);
    if ((uint32_t)r < mb.hdr.nmsrs) {
        error_report("kvm: vCPU %d: KVM_GET_MSRS failed at MSR 0x%x", v->index, mb.e[r].index);
        return -EIO;
    }
    for (uint32_t i = 0; i < mb.hdr.nmsrs; i++) {
        *msr_slot(s, &msr_fields[map[i]]) = mb.e[i].data;
        if (mb.e[i].index == MSR_IA32_TSC) {
            p->tsc = mb.e[i].data;
            p->tsc_valid = true;
        }
    }

    r = kvm_ioctl(p->fd, KVM_GET_VCPU_EVENTS, &ev);
    if (r < 0)
        return fail(v, "KVM_GET_VCPU_EVENTS", r);
    s->events = (struct x86_events){
        .exception_pending = ev.exception.pending,
        .exception_injected = ev.exception.injected,
        .exception_vector = ev.exception.nr,
        .exception_has_error = ev.exception.has_error_code,
        .exception_error = ev.exception.error_code,
        .interrupt_injected = ev.interrupt.injected,
        .interrupt_vector = ev.interrupt.nr,
        .interrupt_soft = ev.interrupt.soft,
        .interrupt_shadow = shadow_from_kvm(ev.interrupt.shadow),
        .nmi_pending = ev.nmi.pending,
        .nmi_injected = ev.nmi.injected,
        .nmi_masked = ev.nmi.masked,
        .sipi_vector = (uint8_t)ev.sipi_vector,
    };
    apply_payload(s, &ev);

    r = kvm_ioctl(p->fd, KVM_GET_MP_STATE, &mp);
    if (r < 0)
        return fail(v, "KVM_GET_MP_STATE", r);
    s->mp_state = mp.mp_state;

    r = kvm_ioctl(p->fd, KVM_GET_LAPIC, &lapic);
    if (r < 0)
        return fail(v, "KVM_GET_LAPIC", r);
    _Static_assert(sizeof(lapic.regs) == X86_LAPIC_REGS_SIZE, "LAPIC page size");
    memcpy(s->lapic, lapic.regs, sizeof(s->lapic));
    memcpy(p->lapic, lapic.regs, sizeof(p->lapic));
    p->lapic_valid = true;
    return 0;
}

static int set_msrs(struct vcpu *v, const struct cpu_state *s)
{
    struct kvm_vcpu_priv *p = v->accel_priv;
    struct kvm_vm *vm = kvm_vm_of(v->m);
    struct msr_buf mb = { .hdr.nmsrs = 0 };
    struct msr_buf one;
    int ret = 0;

    for (size_t i = 0; i < ARRAY_SIZE(msr_fields); i++) {
        uint64_t val = msr_value(s, &msr_fields[i]);

        if (!vm->msr_ok[i])
            continue;
        /* An unchanged TSC (plain pause/resume) keeps running undisturbed. */
        if (msr_fields[i].index == MSR_IA32_TSC && p->tsc_valid && val == p->tsc)
            continue;
        mb.e[mb.hdr.nmsrs++] = (struct kvm_msr_entry){ .index = msr_fields[i].index, .data = val };
    }
    /* KVM stops at the first MSR it refuses: name it, skip it, go on. */
    for (uint32_t done = 0; done < mb.hdr.nmsrs;) {
        uint32_t n = mb.hdr.nmsrs - done;
        int r;

        one.hdr.nmsrs = n;
        memcpy(one.e, &mb.e[done], n * sizeof(one.e[0]));
        r = kvm_ioctl(p->fd, KVM_SET_MSRS, &one);
        if (r < 0)
            return fail(v, "KVM_SET_MSRS", r);
        if ((uint32_t)r == n)
            break;
        error_report("kvm: vCPU %d: KVM_SET_MSRS refused MSR 0x%x = 0x%llx", v->index,
                     mb.e[done + (uint32_t)r].index,
                     (unsigned long long)mb.e[done + (uint32_t)r].data);
        ret = -EINVAL;
        done += (uint32_t)r + 1;
    }
    p->tsc_valid = false;
    return ret;
}

int kvm_set_state(struct vcpu *v, const struct cpu_state *s)
{
    struct kvm_vcpu_priv *p = v->accel_priv;
    struct kvm_vm *vm = kvm_vm_of(v->m);
    struct kvm_regs regs = { 0 };
    struct kvm_sregs sregs = { 0 };
    struct kvm_vcpu_events ev = { 0 };
    struct kvm_mp_state mp = { .mp_state = s->mp_state };
    struct kvm_lapic_state lapic;
    int r, ret = 0;

    if (!p || !vm)
        return -EINVAL;

    /* The order follows what KVM's checks expect: control registers before
     * MSRs that depend on them, the LAPIC after APIC_BASE, events last. */
#define X(i, f) regs.f = s->gpr[i];
    GPR_MAP(X)
#undef X
    regs.rip = s->rip;
    regs.rflags = s->rflags;
    r = kvm_ioctl(p->fd, KVM_SET_REGS, &regs);
    if (r < 0)
        return fail(v, "KVM_SET_REGS", r);

    r = set_fpu(v, &s->fpu);
    if (r < 0)
        return r;

    if (vm->has_xcrs) {
        struct kvm_xcrs xcrs = { .nr_xcrs = 1, .xcrs[0] = { .xcr = 0, .value = s->xcr0 } };

        r = kvm_ioctl(p->fd, KVM_SET_XCRS, &xcrs);
        if (r < 0)
            return fail(v, "KVM_SET_XCRS", r);
    }

    seg_to_kvm(&sregs.es, &s->seg[S_ES]);
    seg_to_kvm(&sregs.cs, &s->seg[S_CS]);
    seg_to_kvm(&sregs.ss, &s->seg[S_SS]);
    seg_to_kvm(&sregs.ds, &s->seg[S_DS]);
    seg_to_kvm(&sregs.fs, &s->seg[S_FS]);
    seg_to_kvm(&sregs.gs, &s->seg[S_GS]);
    seg_to_kvm(&sregs.ldt, &s->ldt);
    seg_to_kvm(&sregs.tr, &s->tr);
    sregs.gdt = (struct kvm_dtable){ .base = s->gdt.base, .limit = s->gdt.limit };
    sregs.idt = (struct kvm_dtable){ .base = s->idt.base, .limit = s->idt.limit };
    sregs.cr0 = s->cr0;
    sregs.cr2 = s->cr2;
    sregs.cr3 = s->cr3;
    sregs.cr4 = s->cr4;
    sregs.cr8 = s->cr8;
    sregs.efer = s->efer;
    sregs.apic_base = s->apic_base;
    /* interrupt_bitmap stays empty: an injected interrupt travels in the
     * vCPU events below. */
    r = kvm_ioctl(p->fd, KVM_SET_SREGS, &sregs);
    if (r < 0)
        return fail(v, "KVM_SET_SREGS", r);

    ret = set_msrs(v, s);

    r = kvm_ioctl(p->fd, KVM_SET_MP_STATE, &mp);
    if (r < 0)
        return fail(v, "KVM_SET_MP_STATE", r);

    /* The LAPIC get_state read, unchanged (a plain pause and resume): keep
     * the live one, which may hold interrupts that arrived meanwhile (an
     * irqfd completion while the vCPU was parked), rather than roll it
     * back and lose them. */
    if (!p->lapic_valid || memcmp(p->lapic, s->lapic, sizeof(p->lapic))) {
        memcpy(lapic.regs, s->lapic, sizeof(lapic.regs));
        r = kvm_ioctl(p->fd, KVM_SET_LAPIC, &lapic);
        if (r < 0)
            return fail(v, "KVM_SET_LAPIC", r);
    }
    p->lapic_valid = false;

    ev.exception.injected = s->events.exception_injected;
    ev.exception.nr = s->events.exception_vector;
    ev.exception.has_error_code = s->events.exception_has_error;
    ev.exception.error_code = s->events.exception_error;
    ev.interrupt.injected = s->events.interrupt_injected;
    ev.interrupt.nr = s->events.interrupt_vector;
    ev.interrupt.soft = s->events.interrupt_soft;
    ev.interrupt.shadow = shadow_to_kvm(s->events.interrupt_shadow);
    ev.nmi.injected = s->events.nmi_injected;
    ev.nmi.pending = s->events.nmi_pending;
    ev.nmi.masked = s->events.nmi_masked;
    ev.sipi_vector = s->events.sipi_vector;
    ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
               KVM_VCPUEVENT_VALID_SHADOW;
    if (vm->exception_payload) {
        ev.flags |= KVM_VCPUEVENT_VALID_PAYLOAD;
        ev.exception.pending = s->events.exception_pending;
    } else if (s->events.exception_pending) {
        /* Without payloads KVM only knows "injected": it re-delivers. */
        ev.exception.injected = 1;
    }
    r = kvm_ioctl(p->fd, KVM_SET_VCPU_EVENTS, &ev);
    if (r < 0)
        return fail(v, "KVM_SET_VCPU_EVENTS", r);

    if (vm->has_debugregs) {
        struct kvm_debugregs dbg = { .dr6 = s->dr[6], .dr7 = s->dr[7] };

        memcpy(dbg.db, s->dr, sizeof(dbg.db));
        r = kvm_ioctl(p->fd, KVM_SET_DEBUGREGS, &dbg);
        if (r < 0)
            return fail(v, "KVM_SET_DEBUGREGS", r);
    }

    p->dead = false;
    return ret;
}
