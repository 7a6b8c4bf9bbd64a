/* Protected-mode payload head of the bzImage flavour (Linux boot protocol,
 * loaded at 0x100000).  +0 is the 32-bit entry (ESI = boot_params, flat
 * segments, paging off: what rt/bzsetup.S or a loader's own 32-bit path
 * provides); +0x200 is the 64-bit entry (long mode, identity-mapped,
 * RSI = boot_params).  Both continue like the Multiboot entry, with the
 * "HdrS" magic telling rt_start which boot information it was given. */
#define LINUX_MAGIC 0x53726448      /* "HdrS" */

    .section .head, "ax"
    .code32
    .globl _start
_start:
    cli
    mov $LINUX_MAGIC, %edi
    jmp start32

    .org 0x200
    .code64
startup_64:
    cli
    mov $LINUX_MAGIC, %edi
    jmp start64

    .section .note.GNU-stack, "", @progbits
