/* Runtime core: the C entry, boot information, library subset, serial
 * console, printf and the exit paths. */
#include "rt.h"

#define MULTIBOOT_LOADER_MAGIC 0x2badb002u
#define LINUX_MAGIC 0x53726448u

#define COM1 0x3f8
#define SERIAL_POLL_LIMIT 100000

struct boot_info boot_info;
static char cmdline_buf[512];

void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (uint8_t)*a - (uint8_t)*b;
        if (!*a)
            break;
    }
    return 0;
}

void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0xc7);   /* FIFO on, cleared */
    outb(COM1 + 4, 0x03);   /* DTR, RTS */
}

static void serial_raw(char c)
{
    /* Bounded: a missing UART must not hang the kernel. */
    for (int i = 0; i < SERIAL_POLL_LIMIT; i++)
        if (inb(COM1 + 5) & 0x20)
            break;
    outb(COM1, (uint8_t)c);
}

void serial_putc(char c)
{
    if (c == '\n')
        serial_raw('\r');
    serial_raw(c);
}

static void put_num(uint64_t v, unsigned base, bool neg, int width, char pad)
{
    char buf[24];
    int n = 0;
    do {
        unsigned d = v % base;
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (neg)
        buf[n++] = '-';
    for (int i = n; i < width; i++)
        serial_putc(pad);
    while (n)
        serial_putc(buf[--n]);
}

void kvprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            serial_putc(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            while (*s)
                serial_putc(*s++);
            break;
        }
        case 'c':
            serial_putc((char)va_arg(ap, int));
            break;
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_num(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
            break;
        }
        case 'u':
            put_num(lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, false, width, pad);
            break;
        case 'x':
            put_num(lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, false, width, pad);
            break;
        case 'p':
            serial_putc('0');
            serial_putc('x');
            put_num((uint64_t)va_arg(ap, void *), 16, false, width, pad);
            break;
        case '%':
            serial_putc('%');
            break;
        case '\0':
            return;
        default:
            serial_putc('%');
            serial_putc(*fmt);
        }
    }
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}

NORETURN void debug_exit(uint32_t v)
{
    outl(DEBUG_EXIT_PORT, v);
    /* No debug-exit device: an empty IDT turns the next exception into a
     * triple fault, which ends the VM under -no-reboot.  (ud2, not int3:
     * PVM hosts cannot emulate int3 in supervisor code.) */
    static const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) none = { 0, 0 };
    __asm__ volatile("lidt %0; ud2" :: "m"(none));
    for (;;)
        __asm__ volatile("cli; hlt");
}

NORETURN void test_pass(void)
{
    kprintf("PASS\n");
    debug_exit(0);
}

NORETURN void test_fail(const char *fmt, ...)
{
    va_list ap;
    kprintf("FAIL: ");
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    kprintf("\n");
    debug_exit(1);
}

static void set_cmdline(const char *s, bool strip_path)
{
    if (!s)
        s = "";
    if (strip_path) {
        /* Multiboot loaders (GRUB, QEMU) put the kernel's path first. */
        const char *end = s;
        bool path = false;
        while (*end && *end != ' ') {
            if (*end == '/')
                path = true;
            end++;
        }
        if (end - s >= 4 && !memcmp(end - 4, ".elf", 4))
            path = true;
        if (path) {
            s = end;
            while (*s == ' ')
                s++;
        }
    }
    size_t n = strlen(s);
    if (n >= sizeof(cmdline_buf))
        n = sizeof(cmdline_buf) - 1;
    memcpy(cmdline_buf, s, n);
    cmdline_buf[n] = '\0';
    boot_info.cmdline = cmdline_buf;
}

static void add_region(uint64_t addr, uint64_t len, uint32_t type)
{
    boot_info.nr_map_entries++;
    if (type != 1)
        return;
    boot_info.usable_bytes += len;
    if (addr <= 0x100000 && addr + len > 0x100000)
        boot_info.ram_at_1m = true;
}

struct mb_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
    uint32_t mods_count, mods_addr, syms[4], mmap_length, mmap_addr;
} __attribute__((packed));

static void parse_multiboot(const struct mb_info *mbi)
{
    boot_info.protocol = "multiboot";
    set_cmdline((mbi->flags & (1u << 2)) ? (const char *)(uint64_t)mbi->cmdline : "", true);
    if (!(mbi->flags & (1u << 6)))
        return;
    uint64_t p = mbi->mmap_addr, end = p + mbi->mmap_length;
    while (p + 24 <= end) {
        uint32_t size = *(const uint32_t *)p;
        uint64_t addr = *(const uint64_t *)(p + 4);
        uint64_t len = *(const uint64_t *)(p + 12);
        uint32_t type = *(const uint32_t *)(p + 20);
        add_region(addr, len, type);
        if (size < 20)
            break;
        p += size + 4;
    }
}

static void parse_linux(const uint8_t *bp)
{
    boot_info.protocol = "linux";
    uint64_t cmd = *(const uint32_t *)(bp + 0x228) |
                   ((uint64_t)*(const uint32_t *)(bp + 0x0c8) << 32);
    set_cmdline(cmd ? (const char *)cmd : "", false);
    unsigned n = bp[0x1e8];
    if (n > 128)
        n = 128;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *e = bp + 0x2d0 + 20 * i;
        add_region(*(const uint64_t *)e, *(const uint64_t *)(e + 8), *(const uint32_t *)(e + 16));
    }
}

bool cmdline_get_u64(const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    const char *s = boot_info.cmdline;
    while (*s) {
        while (*s == ' ')
            s++;
        if (!strncmp(s, key, kl) && s[kl] == '=') {
            uint64_t v = 0;
            const char *d = s + kl + 1;
            if (*d < '0' || *d > '9')
                return false;
            while (*d >= '0' && *d <= '9')
                v = v * 10 + (uint64_t)(*d++ - '0');
            *out = v;
            return true;
        }
        while (*s && *s != ' ')
            s++;
    }
    return false;
}

void rt_start(uint64_t magic, uint64_t info);

void rt_start(uint64_t magic, uint64_t info)
{
    serial_init();
    /* Firmware may have left the 8259s routing the BIOS tick to vector 8;
     * kernels that want legacy interrupts use the I/O APIC instead. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    idt_init();
    if (magic == MULTIBOOT_LOADER_MAGIC)
        parse_multiboot((const struct mb_info *)info);
    else if (magic == LINUX_MAGIC)
        parse_linux((const uint8_t *)info);
    else
        test_fail("unknown boot protocol (magic %lx)", magic);
    test_main();
    test_pass();
}

/* Kernels that start APs provide their own. */
void ap_main(unsigned index);
__attribute__((weak)) void ap_main(unsigned index)
{
    (void)index;
    for (;;)
        __asm__ volatile("cli; hlt");
}
