/* struct cpu_state as a field table: one "cpu" section per vCPU carries the
 * whole canonical state (registers, FPU/SSE, MSRs, pending events, MP state
 * and the LAPIC register page). */
#include "migration/migration.h"

#define CS struct cpu_state
#define SEG(sg) \
    VMS_U64_FIELD(CS, sg.base), VMS_U32_FIELD(CS, sg.limit), VMS_U16_FIELD(CS, sg.selector), \
    VMS_U8_FIELD(CS, sg.type), VMS_U8_FIELD(CS, sg.present), VMS_U8_FIELD(CS, sg.dpl), \
    VMS_U8_FIELD(CS, sg.db), VMS_U8_FIELD(CS, sg.s), VMS_U8_FIELD(CS, sg.l), \
    VMS_U8_FIELD(CS, sg.g), VMS_U8_FIELD(CS, sg.avl), VMS_U8_FIELD(CS, sg.unusable)

static const struct vmstate_field cpu_fields[] = {
    VMS_U64_FIELD(CS, gpr),
    VMS_U64_FIELD(CS, rip),
    VMS_U64_FIELD(CS, rflags),
    SEG(seg[S_ES]), SEG(seg[S_CS]), SEG(seg[S_SS]), SEG(seg[S_DS]), SEG(seg[S_FS]),
    SEG(seg[S_GS]), SEG(ldt), SEG(tr),
    VMS_U64_FIELD(CS, gdt.base), VMS_U16_FIELD(CS, gdt.limit),
    VMS_U64_FIELD(CS, idt.base), VMS_U16_FIELD(CS, idt.limit),
    VMS_U64_FIELD(CS, cr0), VMS_U64_FIELD(CS, cr2), VMS_U64_FIELD(CS, cr3),
    VMS_U64_FIELD(CS, cr4), VMS_U64_FIELD(CS, cr8),
    VMS_U64_FIELD(CS, efer), VMS_U64_FIELD(CS, xcr0), VMS_U64_FIELD(CS, dr),
    VMS_U64_FIELD(CS, apic_base),
    VMS_U64_FIELD(CS, msr.tsc), VMS_U64_FIELD(CS, msr.tsc_aux),
    VMS_U64_FIELD(CS, msr.tsc_deadline), VMS_U64_FIELD(CS, msr.sysenter_cs),
    VMS_U64_FIELD(CS, msr.sysenter_esp), VMS_U64_FIELD(CS, msr.sysenter_eip),
    VMS_U64_FIELD(CS, msr.star), VMS_U64_FIELD(CS, msr.lstar), VMS_U64_FIELD(CS, msr.cstar),
    VMS_U64_FIELD(CS, msr.sfmask), VMS_U64_FIELD(CS, msr.kernel_gs_base),
    VMS_U64_FIELD(CS, msr.pat), VMS_U64_FIELD(CS, msr.misc_enable),
    VMS_U64_FIELD(CS, msr.mtrr_def_type), VMS_U64_FIELD(CS, msr.mtrr_fixed),
    VMS_U64_FIELD(CS, msr.mtrr_var),
    VMS_U16_FIELD(CS, fpu.fcw), VMS_U16_FIELD(CS, fpu.fsw), VMS_U8_FIELD(CS, fpu.ftw),
    VMS_U16_FIELD(CS, fpu.fop), VMS_U64_FIELD(CS, fpu.fip), VMS_U64_FIELD(CS, fpu.fdp),
    VMS_U32_FIELD(CS, fpu.mxcsr), VMS_U32_FIELD(CS, fpu.mxcsr_mask),
    VMS_U8_FIELD(CS, fpu.st), VMS_U8_FIELD(CS, fpu.xmm),
    VMS_U8_FIELD(CS, events.exception_pending), VMS_U8_FIELD(CS, events.exception_injected),
    VMS_U8_FIELD(CS, events.exception_vector), VMS_U8_FIELD(CS, events.exception_has_error),
    VMS_U32_FIELD(CS, events.exception_error), VMS_U8_FIELD(CS, events.interrupt_injected),
    VMS_U8_FIELD(CS, events.interrupt_vector), VMS_U8_FIELD(CS, events.interrupt_soft),
    VMS_U8_FIELD(CS, events.interrupt_shadow), VMS_U8_FIELD(CS, events.nmi_pending),
    VMS_U8_FIELD(CS, events.nmi_injected), VMS_U8_FIELD(CS, events.nmi_masked),
    VMS_U8_FIELD(CS, events.sipi_vector),
    VMS_U32_FIELD(CS, mp_state),
    VMS_U8_FIELD(CS, lapic),
    VMS_END,
};

const struct vmstate_desc cpu_vmstate = {
    .name = "cpu",
    .version = 1,
    .fields = cpu_fields,
};
