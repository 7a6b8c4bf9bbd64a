/* Real-mode setup sectors of the bzImage flavour, for loaders that enter
 * through the setup code (QEMU's -kernel does: CS = setup segment + 0x20,
 * IP = 0, DS = ES = SS = setup segment).  The boot protocol header fields
 * are filled in by mkbzimage.py; here are the jump at 0x200 and the code:
 * the BIOS e820 map goes into boot_params (the setup sectors are the start
 * of boot_params), then protected mode and a jump to code32_start with
 * ESI = boot_params and the boot protocol's __BOOT_CS/__BOOT_DS. */
#define SMAP 0x534d4150
#define E820_TABLE 0x2d0
#define E820_COUNT 0x1e8
#define E820_MAX 128
#define SETUP_SECTS 8

    .code16
    .section .text
    .globl _start
_start:
    .org 0x1f1
    .byte SETUP_SECTS               /* mkbzimage.py checks it */
    .org 0x200
    jmp 3f                          /* short jump, as the protocol asks */
    /* Labels are used only as differences from _start: this object is
     * converted to a flat binary without linking. */

    .org 0x270                      /* past the 2.15 header */
3:  jmp setup_start

    /* boot_params is 4 KiB and these sectors are its start: the e820 table
     * (0x2d0..0xcd0) would overwrite code placed before 0x1000. */
    .org 0x1000
setup_start:
    cli
    cld
    mov %ds, %ax
    mov %ax, %es
    xor %ebx, %ebx
    mov $E820_TABLE, %di
    xor %bp, %bp
1:  mov $0xe820, %eax
    mov $20, %ecx
    mov $SMAP, %edx
    int $0x15
    jc 2f
    cmp $SMAP, %eax
    jne 2f
    add $20, %di
    inc %bp
    cmp $E820_MAX, %bp
    jae 2f
    test %ebx, %ebx
    jnz 1b
2:  mov %bp, %ax
    movb %al, E820_COUNT
    cli
    xor %ebx, %ebx
    mov %ds, %bx
    shl $4, %ebx                    /* linear address of boot_params */
    mov %ebx, %eax
    add $(setup_gdt - _start), %eax     /* flat binary: offsets only */
    mov %eax, setup_gdtr - _start + 2
    lgdtl setup_gdtr - _start
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    mov $0x18, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ebx, %esi
    ljmpl $0x10, $0x100000          /* code32_start */

    .align 8
setup_gdt:
    .quad 0, 0
    .quad 0x00cf9a000000ffff        /* 0x10 __BOOT_CS */
    .quad 0x00cf92000000ffff        /* 0x18 __BOOT_DS */
setup_gdtr:
    .word 31
    .long 0

    .org (SETUP_SECTS + 1) * 512

    .section .note.GNU-stack, "", @progbits
