/* The test kernels' shared runtime: a freestanding 64-bit environment with
 * serial output, exceptions, interrupts, the local and I/O APIC, the PIT,
 * CMOS, ACPI tables and the debug-exit port.
 *
 * Every kernel runs identity-mapped (first 4 GiB, 2 MiB pages, user-
 * accessible so the ring-3 benchmark loop can share code) on one GDT/IDT.
 * Guest supervisor code is slow under some hosts (PVM emulates CPL0), so
 * the runtime avoids loops at CPL0 wherever it can. */
#ifndef TESTS_GUEST_RT_H
#define TESTS_GUEST_RT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NORETURN __attribute__((noreturn))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Port I/O and MMIO. */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t mmio_read32(uint64_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write32(uint64_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }

/* Library subset. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/* Serial (COM1, polled) and printf: %s %c %d %u %x %lx %lu %ld %p, width and
 * '0' flag for numbers.  "\n" goes out as "\r\n". */
void serial_init(void);
void serial_putc(char c);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);

/* Exit through isa-debug-exit (port 0xf4): vmon/QEMU exit with (v<<1)|1.
 * If the device is missing, triple-fault so -no-reboot ends the VM. */
#define DEBUG_EXIT_PORT 0xf4
NORETURN void debug_exit(uint32_t v);
/* Print "PASS" and exit with v=0 (status 1), or "FAIL: ..." and v=1. */
NORETURN void test_pass(void);
NORETURN void test_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* What the loader told us, whichever boot protocol it used. */
struct boot_info {
    const char *protocol;   /* "multiboot" or "linux" */
    const char *cmdline;    /* never NULL; the kernel path is stripped */
    uint64_t usable_bytes;  /* sum of usable RAM in the memory map */
    unsigned nr_map_entries;
    bool ram_at_1m;         /* a usable range starts at or covers 1 MiB */
};
extern struct boot_info boot_info;
/* Value of "key=" in the command line, parsed as a decimal number. */
bool cmdline_get_u64(const char *key, uint64_t *out);

/* Each kernel provides this; returning means PASS. */
void test_main(void);

/* Interrupts and exceptions.  Exceptions print the vector and fail. */
void idt_init(void);
typedef void (*irq_handler_t)(void);
/* Install a handler for vector >= 32; it runs with interrupts off and must
 * send its own EOI. */
void idt_set_handler(unsigned vector, irq_handler_t h);

/* Local APIC (xAPIC MMIO). */
#define LAPIC_BASE 0xfee00000ULL
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
static inline uint32_t lapic_read(unsigned reg) { return mmio_read32(LAPIC_BASE + reg); }
static inline void lapic_write(unsigned reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
static inline void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }
void lapic_enable(void);
unsigned lapic_id(void);
/* Send an IPI; returns false if the delivery-status bit never cleared. */
bool lapic_send_ipi(unsigned dest, uint32_t icr_lo);

/* I/O APIC. */
void ioapic_route(uint64_t base, unsigned pin, unsigned vector, unsigned dest,
                  bool level, bool active_low);
void ioapic_mask(uint64_t base, unsigned pin);

/* PIT: channel 2 one-shot polling gives delays without interrupts. */
void pit_delay_us(unsigned us);
/* Channel 0 periodic, rate generator with the given divisor. */
void pit_start_periodic(uint16_t divisor);
void pit_stop(void);

/* CMOS RTC. */
uint8_t cmos_read(uint8_t reg);

/* ACPI. */
struct acpi_sdt_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    uint32_t creator_id;
    uint32_t creator_revision;
} __attribute__((packed));
/* Find a table by signature through the RSDP/RSDT/XSDT; NULL if missing or
 * its checksum is wrong. */
const struct acpi_sdt_header *acpi_find_table(const char *sig);
struct madt_info {
    unsigned nr_cpus;
    uint8_t apic_ids[64];
    uint64_t ioapic_base;
    unsigned ioapic_gsi_base;
    unsigned irq0_gsi;      /* after interrupt source overrides */
    uint16_t irq0_flags;    /* MPS INTI flags of that override */
    bool found;
};
void acpi_parse_madt(struct madt_info *mi);

/* SYSCALL from ring 3 runs h at CPL0 on the boot stack; h must not
 * return.  (Some hosts, PVM among them, refuse INT n from user mode.) */
void syscall_init(irq_handler_t h);

/* Ring 3: run fn(arg) in user mode with IOPL=3 and an all-ports-allowed TSS
 * I/O bitmap (PVM honours only the bitmap), on its own stack.  fn must
 * not return (it ends the test through debug_exit). */
NORETURN void enter_user(void (*fn)(uint64_t), uint64_t arg);

#endif
