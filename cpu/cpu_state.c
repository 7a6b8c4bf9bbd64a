/* Architectural reset state and the register dump, shared by both
 * accelerators (the state itself is cpu/cpu_state.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cpu/cpu_state.h"
#include "cpu/cpuid.h"

/* Local APIC register offsets used at reset (SDM vol. 3, table 11-1). */
#define APIC_ID 0x20
#define APIC_LVR 0x30
#define APIC_DFR 0xe0
#define APIC_SVR 0xf0
#define APIC_LVT_TIMER 0x320
#define APIC_LVT_ERROR 0x370
#define APIC_LVT_MASKED 0x10000u
/* Version 0x14 (integrated APIC), six LVT entries (max LVT index 5). */
#define APIC_VERSION 0x00050014u

static void lapic_set(struct cpu_state *s, unsigned off, uint32_t val)
{
    memcpy(&s->lapic[off], &val, sizeof(val));
}

static struct x86_segment real_seg(uint16_t sel, uint8_t type, bool code_or_data)
{
    return (struct x86_segment){
        .base = (uint64_t)sel << 4, .limit = 0xffff, .selector = sel,
        .type = type, .present = 1, .s = code_or_data,
    };
}

void cpu_state_reset(struct cpu_state *s, unsigned apic_id, bool bsp)
{
    memset(s, 0, sizeof(*s));

    /* SDM vol. 3, table 10-1 ("IA-32 and Intel 64 processor states
     * following power-up, reset, or INIT"). */
    s->rip = 0xfff0;
    s->rflags = X86_RFLAGS_FIXED;
    s->gpr[R_EDX] = CPUID_VMON_SIGNATURE;

    for (int i = 0; i < S_NR; i++)
        s->seg[i] = real_seg(0, 0x3 /* data, read/write, accessed */, true);
    s->seg[S_CS] = real_seg(0xf000, 0xb /* code, execute/read, accessed */, true);
    s->seg[S_CS].base = 0xffff0000;
    s->ldt = real_seg(0, 0x2 /* LDT */, false);
    s->tr = real_seg(0, 0xb /* busy 32-bit TSS */, false);
    s->gdt.limit = 0xffff;
    s->idt.limit = 0xffff;

    s->cr0 = X86_CR0_CD | X86_CR0_NW | X86_CR0_ET;
    s->xcr0 = 1; /* x87 is always enabled */
    s->dr[6] = 0xffff0ff0;
    s->dr[7] = 0x400;
    s->apic_base = X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE |
                   (bsp ? X86_APIC_BASE_BSP : 0);

    s->msr.pat = 0x0007040600070406ULL;
    /* IA32_MISC_ENABLE: fast strings; BTS and PEBS unavailable. */
    s->msr.misc_enable = 0x1801;

    /* FINIT state; MXCSR_MASK is what FXSAVE reports for SSE2 with DAZ. */
    s->fpu.fcw = 0x037f;
    s->fpu.mxcsr = 0x1f80;
    s->fpu.mxcsr_mask = 0xffff;

    s->mp_state = bsp ? MP_RUNNABLE : MP_UNINITIALIZED;

    lapic_set(s, APIC_ID, (apic_id & 0xffu) << 24);
    lapic_set(s, APIC_LVR, APIC_VERSION);
    lapic_set(s, APIC_DFR, 0xffffffffu);
    lapic_set(s, APIC_SVR, 0xff);
    for (unsigned off = APIC_LVT_TIMER; off <= APIC_LVT_ERROR; off += 0x10)
        lapic_set(s, off, APIC_LVT_MASKED);
}

/* The descriptor's attribute word (bits 8-23 of its high dword), the
 * "flags" column of QEMU's dump. */
static uint32_t seg_flags(const struct x86_segment *sg)
{
    return (uint32_t)(sg->type & 0xf) << 8 | (uint32_t)(sg->s & 1) << 12 |
           (uint32_t)(sg->dpl & 3) << 13 | (uint32_t)(sg->present & 1) << 15 |
           (uint32_t)(sg->avl & 1) << 20 | (uint32_t)(sg->l & 1) << 21 |
           (uint32_t)(sg->db & 1) << 22 | (uint32_t)(sg->g & 1) << 23;
}

static void seg_describe(const struct x86_segment *sg, bool long_mode, char *buf,
                         size_t len)
{
    if (sg->unusable || !sg->present) {
        snprintf(buf, len, sg->unusable ? " unusable" : " not present");
        return;
    }
    if (!sg->s) {
        static const char *const sys[16] = {
            [1] = "TSS16-avl", [2] = "LDT", [3] = "TSS16-busy", [9] = "TSS64-avl",
            [11] = "TSS64-busy", [12] = "CALL-GATE", [14] = "INT-GATE",
            [15] = "TRAP-GATE",
        };
        const char *name = sys[sg->type & 0xf];

        if (name && !long_mode && (sg->type == 9 || sg->type == 11))
            name = sg->type == 9 ? "TSS32-avl" : "TSS32-busy";
        snprintf(buf, len, " DPL=%u %s", sg->dpl, name ? name : "SYS?");
        return;
    }
    if (sg->type & 8)
        snprintf(buf, len, " DPL=%u %s [%c%c%c]", sg->dpl,
                 sg->l ? "CS64" : sg->db ? "CS32" : "CS16",
                 sg->type & 4 ? 'C' : '-', sg->type & 2 ? 'R' : '-',
                 sg->type & 1 ? 'A' : '-');
    else
        snprintf(buf, len, " DPL=%u %s [%c%c%c]", sg->dpl, sg->db ? "DS" : "DS16",
                 sg->type & 4 ? 'E' : '-', sg->type & 2 ? 'W' : '-',
                 sg->type & 1 ? 'A' : '-');
}

void cpu_state_dump(const struct cpu_state *s, void (*print)(void *opaque, const char *line),
                    void *opaque)
{
    static const char *const gpr_names[16] = {
        "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP",
        "R8 ", "R9 ", "R10", "R11", "R12", "R13", "R14", "R15",
    };
    static const int gpr_order[16] = {
        R_EAX, R_EBX, R_ECX, R_EDX, R_ESI, R_EDI, R_EBP, R_ESP,
        R_R8, R_R9, R_R10, R_R11, R_R12, R_R13, R_R14, R_R15,
    };
    static const char *const seg_names[S_NR] = { "ES ", "CS ", "SS ", "DS ", "FS ", "GS " };
    bool long_mode = s->efer & X86_EFER_LMA;
    char line[160], desc[48];
    uint64_t f = s->rflags;

    for (int i = 0; i < 16; i += 4) {
        snprintf(line, sizeof(line), "%s=%016" PRIx64 " %s=%016" PRIx64 " %s=%016" PRIx64
                 " %s=%016" PRIx64,
                 gpr_names[i], s->gpr[gpr_order[i]], gpr_names[i + 1],
                 s->gpr[gpr_order[i + 1]], gpr_names[i + 2], s->gpr[gpr_order[i + 2]],
                 gpr_names[i + 3], s->gpr[gpr_order[i + 3]]);
        print(opaque, line);
    }
    snprintf(line, sizeof(line),
             "RIP=%016" PRIx64 " RFL=%08" PRIx64 " [%c%c%c%c%c%c%c] CPL=%u II=%u HLT=%u MP=%u",
             s->rip, f, f & X86_RFLAGS_DF ? 'D' : '-', f & X86_RFLAGS_OF ? 'O' : '-',
             f & X86_RFLAGS_SF ? 'S' : '-', f & X86_RFLAGS_ZF ? 'Z' : '-',
             f & X86_RFLAGS_AF ? 'A' : '-', f & X86_RFLAGS_PF ? 'P' : '-',
             f & X86_RFLAGS_CF ? 'C' : '-', s->seg[S_SS].dpl & 3u,
             s->events.interrupt_shadow ? 1u : 0u, s->mp_state == MP_HALTED ? 1u : 0u,
             s->mp_state);
    print(opaque, line);

    for (int i = 0; i <= S_NR + 1; i++) {
        const struct x86_segment *sg = i < S_NR ? &s->seg[i] : i == S_NR ? &s->ldt : &s->tr;
        const char *name = i < S_NR ? seg_names[i] : i == S_NR ? "LDT" : "TR ";

        seg_describe(sg, long_mode, desc, sizeof(desc));
        snprintf(line, sizeof(line), "%s=%04x %016" PRIx64 " %08x %08x%s", name,
                 sg->selector, sg->base, sg->limit, seg_flags(sg), desc);
        print(opaque, line);
    }
    snprintf(line, sizeof(line), "GDT=     %016" PRIx64 " %08x", s->gdt.base, s->gdt.limit);
    print(opaque, line);
    snprintf(line, sizeof(line), "IDT=     %016" PRIx64 " %08x", s->idt.base, s->idt.limit);
    print(opaque, line);
    snprintf(line, sizeof(line),
             "CR0=%08" PRIx64 " CR2=%016" PRIx64 " CR3=%016" PRIx64 " CR4=%08" PRIx64
             " CR8=%" PRIx64,
             s->cr0, s->cr2, s->cr3, s->cr4, s->cr8);
    print(opaque, line);
    snprintf(line, sizeof(line),
             "DR0=%016" PRIx64 " DR1=%016" PRIx64 " DR2=%016" PRIx64 " DR3=%016" PRIx64,
             s->dr[0], s->dr[1], s->dr[2], s->dr[3]);
    print(opaque, line);
    snprintf(line, sizeof(line), "DR6=%016" PRIx64 " DR7=%016" PRIx64, s->dr[6], s->dr[7]);
    print(opaque, line);
    snprintf(line, sizeof(line), "EFER=%016" PRIx64 " APICBASE=%016" PRIx64 " XCR0=%" PRIx64,
             s->efer, s->apic_base, s->xcr0);
    print(opaque, line);
    if (s->events.exception_pending || s->events.exception_injected ||
        s->events.interrupt_injected || s->events.nmi_pending || s->events.nmi_injected) {
        snprintf(line, sizeof(line),
                 "EVENTS: exc %s%s vec=%u err=%s%x irq %s vec=%u nmi pending=%u injected=%u",
                 s->events.exception_pending ? "pending" : "",
                 s->events.exception_injected ? "injected" : "", s->events.exception_vector,
                 s->events.exception_has_error ? "" : "-", s->events.exception_error,
                 s->events.interrupt_injected ? "injected" : "-", s->events.interrupt_vector,
                 s->events.nmi_pending, s->events.nmi_injected);
        print(opaque, line);
    }
}
