/* Shared low-level runtime: GDT, identity page tables, the common 64-bit
 * entry, exception and interrupt stubs, the AP trampoline and the drop to
 * ring 3.  Everything is static data or straight-line code: guest CPL0 code
 * can be emulated one instruction at a time, so no set-up loops here. */

#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA   0x18
#define SEL_UDATA  0x23
#define SEL_UCODE  0x2b
#define AP_TRAMP_ADDR 0x8000
#define AP_STACK_SIZE 4096
#define AP_MAX 16

    .section .data
    .align 16
    .globl gdt, gdt_end, gdtr, tss_desc
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x08 flat 32-bit code */
    .quad 0x00af9a000000ffff        /* 0x10 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x18 flat data */
    .quad 0x00cff2000000ffff        /* 0x20 user data, DPL 3 */
    .quad 0x00affa000000ffff        /* 0x28 user 64-bit code, DPL 3 */
tss_desc:
    .quad 0, 0                      /* 0x30 TSS, filled in by tss_load() */
    .globl gdt_spare
gdt_spare:
    .quad 0, 0                      /* 0x40 free for a kernel's system descriptor */
gdt_end:
    .align 8
gdtr:
    .word gdt_end - gdt - 1
    .quad gdt

/* Identity map of the first 4 GiB with 2 MiB pages, built by the assembler
 * so nothing loops at CPL0.  U/S is set everywhere so the ring-3 benchmark
 * loop can run kernel-linked code. */
    .section .data.pagetables, "aw"
    .align 4096
    .globl pml4
pml4:
    .quad pdpt + 0x7
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x0000 + 0x7
    .quad pd + 0x1000 + 0x7
    .quad pd + 0x2000 + 0x7
    .quad pd + 0x3000 + 0x7
    .fill 508, 8, 0
pd:
    .set page, 0
    .rept 2048
    .quad page + 0x87               /* present, writable, user, 2 MiB */
    .set page, page + 0x200000
    .endr

    .section .bss
    .align 4096
    .globl boot_stack_top, ap_stacks
boot_stack:
    .skip 16384
boot_stack_top:
ap_stacks:
    .skip AP_STACK_SIZE * AP_MAX
    .globl ap_next_index
ap_next_index:
    .skip 4

    .section .text
/* 32-bit protected mode, paging off, EDI = boot magic, ESI = boot
 * information: load our GDT, enable PAE paging with the static identity map
 * and long mode, then continue at start64. */
    .code32
    .globl start32
start32:
    cli
    lgdt gdtr
    ljmp $SEL_CODE32, $1f
1:  mov $SEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx           /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax            /* PG | PE */
    mov %eax, %cr0
    ljmp $SEL_CODE64, $2f
    .code64
2:  mov %edi, %edi                  /* upper halves are undefined here */
    mov %esi, %esi
    jmp start64

/* rdi: boot magic, rsi: boot information pointer (both preserved). */
    .globl start64
start64:
    cli
    lgdt gdtr(%rip)
    mov $pml4, %eax
    mov %rax, %cr3
    mov $SEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    lea boot_stack_top(%rip), %rsp
    pushq $SEL_CODE64
    lea 1f(%rip), %rax
    push %rax
    lretq
1:  call rt_start
2:  cli
    hlt
    jmp 2b

/* Exception stubs: push a dummy error code where the CPU pushes none, then
 * the vector, so the C handler sees one frame layout. */
    .macro exc_stub vec, has_err
    .align 16
    .if \has_err == 0
    pushq $0
    .endif
    pushq $\vec
    jmp exc_common
    .endm

    .align 16
    .globl exc_stubs
exc_stubs:
    exc_stub 0, 0
    exc_stub 1, 0
    exc_stub 2, 0
    exc_stub 3, 0
    exc_stub 4, 0
    exc_stub 5, 0
    exc_stub 6, 0
    exc_stub 7, 0
    exc_stub 8, 1
    exc_stub 9, 0
    exc_stub 10, 1
    exc_stub 11, 1
    exc_stub 12, 1
    exc_stub 13, 1
    exc_stub 14, 1
    exc_stub 15, 0
    exc_stub 16, 0
    exc_stub 17, 1
    exc_stub 18, 0
    exc_stub 19, 0
    exc_stub 20, 0
    exc_stub 21, 1
    exc_stub 22, 0
    exc_stub 23, 0
    exc_stub 24, 0
    exc_stub 25, 0
    exc_stub 26, 0
    exc_stub 27, 0
    exc_stub 28, 0
    exc_stub 29, 1
    exc_stub 30, 1
    exc_stub 31, 0

exc_common:
    mov %rsp, %rdi                  /* struct exc_frame * */
    and $-16, %rsp
    call exception_handler          /* does not return */
3:  cli
    hlt
    jmp 3b

/* Interrupt stubs for vectors 32..255, each 16 bytes apart. */
    .align 16
    .globl irq_stubs
irq_stubs:
    .set vec, 32
    .rept 224
    .align 16
    pushq $vec
    jmp irq_common
    .set vec, vec + 1
    .endr

irq_common:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbx
    mov 80(%rsp), %rdi              /* the vector pushed by the stub */
    mov %rsp, %rbx
    and $-16, %rsp
    call irq_dispatch
    mov %rbx, %rsp
    pop %rbx
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $8, %rsp
    iretq

/* enter_user_asm(fn, arg, user_rsp): iretq to ring 3 with IOPL=3, IF=0. */
    .globl enter_user_asm
enter_user_asm:
    pushq $SEL_UDATA
    push %rdx
    pushq $0x3002
    pushq $SEL_UCODE
    push %rdi
    mov %rsi, %rdi
    mov $SEL_UDATA, %eax
    mov %eax, %ds
    mov %eax, %es
    iretq

/* SYSCALL lands here at CPL0 still on the user stack.  Ring 3 only ever
 * calls in to finish, so this switches to the boot stack for good. */
    .globl syscall_entry
syscall_entry:
    lea boot_stack_top(%rip), %rsp
    call *syscall_handler(%rip)
4:  cli
    hlt
    jmp 4b

/* AP entry in long mode: take a stack slot, then C. */
ap_start64:
    mov $SEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov $1, %eax
    lock xadd %eax, ap_next_index(%rip)
    cmp $AP_MAX, %eax
    jae 5f
    mov %eax, %edi
    inc %eax
    imul $AP_STACK_SIZE, %eax
    lea ap_stacks(%rip), %rsp
    add %rax, %rsp
    call ap_main
5:  cli
    hlt
    jmp 5b

/* The AP trampoline, copied to AP_TRAMP_ADDR (SIPI vector 0x08): real mode
 * -> protected mode -> long mode on the kernel's GDT and page tables. */
    .globl ap_tramp_start, ap_tramp_end
    .code16
ap_tramp_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl tramp_gdtr - ap_tramp_start
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $(AP_TRAMP_ADDR + tramp32 - ap_tramp_start)
    .code32
tramp32:
    mov $SEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx           /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $SEL_CODE64, $ap_start64
    .align 4
tramp_gdtr:
    .word gdt_end - gdt - 1
    .long gdt
ap_tramp_end:
    .code64

    .section .note.GNU-stack, "", @progbits
