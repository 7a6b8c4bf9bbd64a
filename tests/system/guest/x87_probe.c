/* x87 probe for the Linux guest: a freestanding static x86-64 program
 * (no libc) that runs fixed x87 sequences and prints each FNSAVE image
 * (FCW, FSW, tag word, ST0-7; not FIP/FOP/FDP, which are addresses) and
 * the integers/BCD/RFLAGS they store, one "X87 ..." line each.  The system
 * test runs it on the host and in a guest under -accel emu and requires
 * identical output.  One sequence sleeps in the middle, so the guest
 * kernel's FPU context switching carries live x87 registers.
 * `x87_probe mf` leaves an unmasked exception pending and executes FWAIT:
 * the kernel's #MF handler must kill it with SIGFPE.
 * Build: gcc -O1 -static -nostdlib -fno-pie -no-pie -fno-stack-protector */
typedef unsigned long u64;

static long sys3(long n, long a, long b, long c)
{
    long r;

    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}

static void out(const char *s, unsigned long n)
{
    sys3(1, 1, (long)s, (long)n);
}

static unsigned long slen(const char *s)
{
    unsigned long n = 0;

    while (s[n])
        n++;
    return n;
}

/* "X87 <name> <label> <hex of n bytes, most significant first>\n" */
static void line(const char *name, const char *label, const unsigned char *p, unsigned n)
{
    static const char hexd[] = "0123456789abcdef";
    char buf[128];
    unsigned k = 0;

    out("X87 ", 4);
    out(name, slen(name));
    out(" ", 1);
    out(label, slen(label));
    out(" ", 1);
    for (unsigned i = 0; i < n && k + 2 < sizeof(buf); i++) {
        buf[k++] = hexd[p[n - 1 - i] >> 4];
        buf[k++] = hexd[p[n - 1 - i] & 15];
    }
    buf[k++] = '\n';
    out(buf, k);
}

static unsigned char img[108];

static void dump(const char *name)
{
    static const char *const st[8] = { "st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7" };

    line(name, "fcw", img, 2);
    line(name, "fsw", img + 4, 2);
    line(name, "ftw", img + 8, 2);
    for (unsigned k = 0; k < 8; k++)
        line(name, st[k], img + 28 + 10 * k, 10);
}

static long double x = 0.7853981633974483096L, y = -0.33L, a = 1e300L, b = 3.0L, c = 2.0L;
static long double denorm, huge = 1.2345678901234567e4000L;
static long long big = -987654321012345678LL, i64;
static unsigned char bcd[10];
static int i32;
static unsigned short cw, sw;
static u64 fl;

static void transcendental(void)
{
    __asm__ volatile("fninit\n\t"
                     "fldpi\n\tfsin\n\t"
                     "fldl2e\n\tfsqrt\n\t"
                     "fld1\n\tfld1\n\tfaddp\n\tfldpi\n\tfpatan\n\t"
                     "fldln2\n\tfldt %[x]\n\tfyl2x\n\t"
                     "fldt %[y]\n\tf2xm1\n\t"
                     "fldt %[x]\n\tfptan\n\t"
                     "fnsave %[img]"
                     : [img] "=m"(img) : [x] "m"(x), [y] "m"(y) : "memory");
    dump("trans");
}

static void rounding(void)
{
    static const char *const names[12] = {
        "rc0pc0", "rc0pc2", "rc0pc3", "rc1pc0", "rc1pc2", "rc1pc3",
        "rc2pc0", "rc2pc2", "rc2pc3", "rc3pc0", "rc3pc2", "rc3pc3",
    };
    static const unsigned short pcs[3] = { 0, 2, 3 };

    for (unsigned rc = 0; rc < 4; rc++) {
        for (unsigned p = 0; p < 3; p++) {
            cw = (unsigned short)(0x7f | rc << 10 | pcs[p] << 8);
            __asm__ volatile("fninit\n\tfldcw %[cw]\n\t"
                             "fldt %[a]\n\tfldt %[b]\n\tfdivrp\n\t"
                             "fld %%st(0)\n\tfrndint\n\t"
                             "fldt %[b]\n\tfldt %[c]\n\tfdivrp\n\tfistpll %[i64]\n\t"
                             "fldt %[c]\n\tfsqrt\n\t"
                             "fldt %[x]\n\tfsincos\n\t"
                             "fnsave %[img]"
                             : [img] "=m"(img), [i64] "=m"(i64)
                             : [cw] "m"(cw), [a] "m"(a), [b] "m"(b), [c] "m"(c), [x] "m"(x)
                             : "memory");
            dump(names[rc * 3 + p]);
            line(names[rc * 3 + p], "i64", (const unsigned char *)&i64, 8);
        }
    }
}

static void stack_and_compare(void)
{
    __asm__ volatile("fninit\n\t"
                     "fld1\n\tfldz\n\tfucomip %%st(1), %%st\n\t"
                     "pushfq\n\tpopq %[fl]\n\t"
                     "fld1\n\tfld1\n\tfld1\n\tfld1\n\tfld1\n\tfld1\n\tfld1\n\tfld1\n\t"
                     "fxam\n\tfnstsw %[sw]\n\t"
                     "fnsave %[img]"
                     : [img] "=m"(img), [fl] "=r"(fl), [sw] "=m"(sw) : : "memory", "cc");
    fl &= 0x8d5;
    dump("stack");
    line("stack", "rflags", (const unsigned char *)&fl, 8);
    line("stack", "fxamsw", (const unsigned char *)&sw, 2);
}

static void conversions(void)
{
    denorm = 0;
    ((unsigned char *)&denorm)[0] = 3;   /* smallest denormals */
    __asm__ volatile("fninit\n\t"
                     "fildll %[big]\n\tfbstp %[bcd]\n\t"
                     "fbld %[bcd]\n\tfisttpl %[i32]\n\t"
                     "fldt %[huge]\n\tfldt %[den]\n\tfxtract\n\tfscale\n\t"
                     "fldt %[huge]\n\tfldt %[b]\n\tfprem1\n\t"
                     "fstps %[i64]\n\t"
                     "fnsave %[img]"
                     : [img] "=m"(img), [bcd] "+m"(bcd), [i32] "=m"(i32), [i64] "=m"(i64)
                     : [big] "m"(big), [huge] "m"(huge), [den] "m"(denorm), [b] "m"(b)
                     : "memory");
    dump("conv");
    line("conv", "bcd", bcd, 10);
    line("conv", "i32", (const unsigned char *)&i32, 4);
    line("conv", "f32", (const unsigned char *)&i64, 4);
}

/* Live registers across a sleep: the kernel saves and restores them. */
static void across_sleep(void)
{
    static const long ts[2] = { 0, 20 * 1000 * 1000 };

    __asm__ volatile("fninit\n\tfldpi\n\tfld1\n\tfldl2t\n\tfldt %[y]" : : [y] "m"(y) : "memory");
    sys3(35, (long)ts, 0, 0);   /* nanosleep */
    __asm__ volatile("fmulp\n\tfnsave %[img]" : [img] "=m"(img) : : "memory");
    dump("sleep");
}

static void pending_mf(void)
{
    cw = 0x37b;   /* ZE unmasked */
    __asm__ volatile("fninit\n\tfldcw %[cw]\n\tfld1\n\tfldz\n\tfdivrp\n\tfwait"
                     : : [cw] "m"(cw) : "memory");
    out("x87 mf: survived\n", 17);
}

__attribute__((used)) static void probe_main(long *sp)
{
    char **argv = (char **)(sp + 1);

    if (sp[0] > 1 && argv[1][0] == 'm' && argv[1][1] == 'f') {
        pending_mf();
    } else {
        transcendental();
        rounding();
        stack_and_compare();
        conversions();
        across_sleep();
        out("X87-END\n", 8);
    }
    sys3(60, 0, 0, 0);
}

__asm__(".globl _start\n"
        "_start:\n\t"
        "mov %rsp, %rdi\n\t"
        "and $-16, %rsp\n\t"
        "call probe_main\n\t"
        "hlt\n");
