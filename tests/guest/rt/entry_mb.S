/* Multiboot v1 entry: the loader enters here in 32-bit protected mode with
 * paging off, EAX = 0x2BADB002 and EBX = the Multiboot information.  We load
 * our GDT, enable PAE paging with the static identity map and long mode,
 * then continue at start64. */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003     /* page-align modules, want memory info */

    .section .head, "ax"
    .code32
    .align 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .globl _start
_start:
    cli
    mov %eax, %edi
    mov %ebx, %esi
    lgdt gdtr
    ljmp $0x08, $1f
1:  mov $0x18, %eax
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
    ljmp $0x10, $mb_long
    .code64
mb_long:
    mov %edi, %edi                  /* upper halves are undefined here */
    mov %esi, %esi
    jmp start64

    .section .note.GNU-stack, "", @progbits
