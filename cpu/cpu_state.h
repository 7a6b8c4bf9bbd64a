/* The canonical state of one x86-64 vCPU.
 *
 * Everything a vCPU is lives here, in one accelerator-neutral form.  The emu
 * accelerator executes on this struct directly; the kvm accelerator converts
 * to and from KVM_{GET,SET}_{REGS,SREGS,FPU,MSRS,VCPU_EVENTS,LAPIC,XCRS}.
 * Snapshots, migration and live accelerator switching only ever go through
 * this struct, never through accelerator-private state. */
#ifndef VMON_CPU_STATE_H
#define VMON_CPU_STATE_H

#include "util/types.h"

enum x86_gpr {
    R_EAX, R_ECX, R_EDX, R_EBX, R_ESP, R_EBP, R_ESI, R_EDI,
    R_R8, R_R9, R_R10, R_R11, R_R12, R_R13, R_R14, R_R15,
};

/* Segment register order is the x86 encoding order (ModRM.reg of mov sreg). */
enum x86_seg { S_ES, S_CS, S_SS, S_DS, S_FS, S_GS, S_NR };

/* A segment register with its hidden (descriptor cache) part, field for field
 * what KVM's struct kvm_segment carries. */
struct x86_segment {
    uint64_t base;
    uint32_t limit;     /* byte-granular, already expanded by G */
    uint16_t selector;
    uint8_t type;       /* descriptor type, 4 bits */
    uint8_t present, dpl, db, s, l, g, avl;
    uint8_t unusable;   /* null selector loaded (VMX "unusable") */
};

struct x86_dtable {
    uint64_t base;
    uint16_t limit;
};

/* The FXSAVE image (Intel SDM vol. 1, 10.5.1): the x87 and SSE state in the
 * layout FXSAVE/FXRSTOR and KVM_GET_FPU both speak. */
struct x86_fxsave {
    uint16_t fcw;
    uint16_t fsw;
    uint8_t ftw;        /* abridged tag word: one bit per register, 1 = valid */
    uint8_t reserved0;
    uint16_t fop;
    uint64_t fip;
    uint64_t fdp;
    uint32_t mxcsr;
    uint32_t mxcsr_mask;
    uint8_t st[8][16];  /* 80-bit registers, ST(i) relative to TOP */
    uint8_t xmm[16][16];
    uint8_t reserved1[96];
} __attribute__((aligned(16)));
_Static_assert(sizeof(struct x86_fxsave) == 512, "FXSAVE image is 512 bytes");

/* vCPU run state, the values of KVM_MP_STATE_*. */
enum x86_mp_state {
    MP_RUNNABLE = 0,
    MP_UNINITIALIZED = 1, /* AP waiting for INIT */
    MP_INIT_RECEIVED = 2, /* AP waiting for SIPI */
    MP_HALTED = 3,
    MP_SIPI_RECEIVED = 4,
};

/* Events that are in flight between instructions. */
struct x86_events {
    uint8_t exception_pending;  /* not yet delivered */
    uint8_t exception_injected; /* delivery in progress (re-inject on entry) */
    uint8_t exception_vector;
    uint8_t exception_has_error;
    uint32_t exception_error;
    uint8_t interrupt_injected;
    uint8_t interrupt_vector;
    uint8_t interrupt_soft;
    uint8_t interrupt_shadow;   /* after STI / MOV SS: bit0 STI, bit1 MOV SS */
    uint8_t nmi_pending;
    uint8_t nmi_injected;
    uint8_t nmi_masked;
    uint8_t sipi_vector;
};

/* Model-specific registers that vCPU state includes.  Anything a guest can
 * write and later read back must live here, or switching would lose it. */
struct x86_msrs {
    uint64_t tsc;             /* IA32_TIME_STAMP_COUNTER at save time */
    uint64_t tsc_aux;
    uint64_t tsc_deadline;
    uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
    uint64_t star, lstar, cstar, sfmask;
    uint64_t kernel_gs_base;
    uint64_t pat;
    uint64_t misc_enable;
    uint64_t mtrr_def_type;
    uint64_t mtrr_fixed[11];  /* 0x250, 0x258, 0x259, 0x268..0x26f */
    uint64_t mtrr_var[16];    /* base/mask pairs 0x200..0x20f */
};

#define X86_LAPIC_REGS_SIZE 1024

struct cpu_state {
    uint64_t gpr[16];
    uint64_t rip;
    uint64_t rflags;

    struct x86_segment seg[S_NR];
    struct x86_segment ldt, tr;
    struct x86_dtable gdt, idt;

    uint64_t cr0, cr2, cr3, cr4, cr8;
    uint64_t efer;
    uint64_t xcr0;
    uint64_t dr[8];           /* dr0-3, dr6 at [6], dr7 at [7]; 4,5 unused */
    uint64_t apic_base;       /* IA32_APIC_BASE */

    struct x86_msrs msr;
    struct x86_fxsave fpu;
    struct x86_events events;
    uint32_t mp_state;        /* enum x86_mp_state */

    /* The local APIC's 4 KiB page, first 1 KiB, in the layout of the
     * architectural register page (KVM_GET_LAPIC uses the same). */
    uint8_t lapic[X86_LAPIC_REGS_SIZE] __attribute__((aligned(16)));
};

/* Control register and flag bits used throughout. */
#define X86_CR0_PE (1ULL << 0)
#define X86_CR0_MP (1ULL << 1)
#define X86_CR0_EM (1ULL << 2)
#define X86_CR0_TS (1ULL << 3)
#define X86_CR0_ET (1ULL << 4)
#define X86_CR0_NE (1ULL << 5)
#define X86_CR0_WP (1ULL << 16)
#define X86_CR0_AM (1ULL << 18)
#define X86_CR0_NW (1ULL << 29)
#define X86_CR0_CD (1ULL << 30)
#define X86_CR0_PG (1ULL << 31)

#define X86_CR4_VME (1ULL << 0)
#define X86_CR4_PVI (1ULL << 1)
#define X86_CR4_TSD (1ULL << 2)
#define X86_CR4_DE (1ULL << 3)
#define X86_CR4_PSE (1ULL << 4)
#define X86_CR4_PAE (1ULL << 5)
#define X86_CR4_MCE (1ULL << 6)
#define X86_CR4_PGE (1ULL << 7)
#define X86_CR4_PCE (1ULL << 8)
#define X86_CR4_OSFXSR (1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)
#define X86_CR4_UMIP (1ULL << 11)
#define X86_CR4_FSGSBASE (1ULL << 16)
#define X86_CR4_PCIDE (1ULL << 17)
#define X86_CR4_OSXSAVE (1ULL << 18)
#define X86_CR4_SMEP (1ULL << 20)
#define X86_CR4_SMAP (1ULL << 21)

#define X86_EFER_SCE (1ULL << 0)
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)
#define X86_EFER_NXE (1ULL << 11)

#define X86_RFLAGS_CF (1ULL << 0)
#define X86_RFLAGS_FIXED (1ULL << 1)
#define X86_RFLAGS_PF (1ULL << 2)
#define X86_RFLAGS_AF (1ULL << 4)
#define X86_RFLAGS_ZF (1ULL << 6)
#define X86_RFLAGS_SF (1ULL << 7)
#define X86_RFLAGS_TF (1ULL << 8)
#define X86_RFLAGS_IF (1ULL << 9)
#define X86_RFLAGS_DF (1ULL << 10)
#define X86_RFLAGS_OF (1ULL << 11)
#define X86_RFLAGS_IOPL (3ULL << 12)
#define X86_RFLAGS_NT (1ULL << 14)
#define X86_RFLAGS_RF (1ULL << 16)
#define X86_RFLAGS_VM (1ULL << 17)
#define X86_RFLAGS_AC (1ULL << 18)
#define X86_RFLAGS_VIF (1ULL << 19)
#define X86_RFLAGS_VIP (1ULL << 20)
#define X86_RFLAGS_ID (1ULL << 21)

#define X86_APIC_BASE_BSP (1ULL << 8)
#define X86_APIC_BASE_EXTD (1ULL << 10)
#define X86_APIC_BASE_ENABLE (1ULL << 11)
#define X86_APIC_DEFAULT_BASE 0xfee00000ULL

/* Architectural reset state (INIT / power-on), SDM vol. 3 table 10-1. */
void cpu_state_reset(struct cpu_state *s, unsigned apic_id, bool bsp);

/* Print a QEMU-style register dump ("info registers"). */
struct log_sink;
void cpu_state_dump(const struct cpu_state *s, void (*print)(void *opaque, const char *line), void *opaque);

#endif
