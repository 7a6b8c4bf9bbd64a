/* Protected-mode payload head of the bzImage flavour (Linux boot protocol,
 * loaded at 0x100000).  +0 is the 32-bit entry, which this kernel does not
 * support (it just halts); +0x200 is the 64-bit entry: the loader enters in
 * long mode, identity-mapped, with RSI = boot_params. */
#define LINUX_MAGIC 0x53726448      /* "HdrS" */

    .section .head, "ax"
    .code32
    .globl _start
_start:
    cli
1:  hlt
    jmp 1b

    .org 0x200
    .code64
startup_64:
    cli
    mov $LINUX_MAGIC, %edi
    jmp start64

    .section .note.GNU-stack, "", @progbits
