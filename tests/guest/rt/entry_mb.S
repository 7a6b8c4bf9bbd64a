/* Multiboot v1 entry: the loader enters here in 32-bit protected mode with
 * paging off, EAX = 0x2BADB002 and EBX = the Multiboot information. */
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
    jmp start32

    .section .note.GNU-stack, "", @progbits
