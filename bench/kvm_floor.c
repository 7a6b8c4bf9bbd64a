/* kvm_floor: the cheapest user-space exit round trip /dev/kvm allows here.
 * One VM, one vCPU, set straight into 64-bit ring 3 (no firmware, no
 * loader), running "OUT to port 0x900" in a loop; every exit returns to this
 * loop, which does nothing but count.  vmon's and QEMU's ns/exit for the
 * same guest loop are compared against this floor.
 *
 *   kvm_floor [N [user|kernel]]     (default 20000 user)
 *
 * "user" runs the loop in ring 3 with an all-ports TSS I/O bitmap (PVM
 * honours only the bitmap for user I/O, not IOPL); "kernel" runs it in
 * ring 0.  On PVM hosts ring-0 code is emulated instruction by instruction,
 * so the two differ there; the exits kernel has the same two modes
 * (user-pio, pio). */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (2u << 20)
#define PML4 0x1000
#define PDPT 0x2000
#define PD 0x3000
#define TSS 0x5000
#define TSS_LIMIT (104 + 8192)
#define CODE 0x10000
#define LOOP_PORT 0x900
#define DONE_PORT 0x901

static const uint8_t guest_code[] = {
    0x66, 0xba, 0x00, 0x09,     /* mov $0x900, %dx */
    0xee,                       /* 1: out %al, (%dx) */
    0xff, 0xc9,                 /* dec %ecx */
    0x75, 0xfb,                 /* jnz 1b */
    0x66, 0xba, 0x01, 0x09,     /* mov $0x901, %dx */
    0xee,                       /* out %al, (%dx) */
    0xeb, 0xfe,                 /* jmp . */
};

static int die(const char *what)
{
    fprintf(stderr, "kvm_floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static struct kvm_segment seg(uint16_t sel, uint8_t type, int code, int dpl)
{
    struct kvm_segment s = {
        .base = 0, .limit = 0xffffffff, .selector = sel | dpl, .type = type,
        .present = 1, .dpl = dpl, .db = !code, .s = 1, .l = code, .g = 1,
    };
    return s;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 0) : 20000;
    const char *mode = argc > 2 ? argv[2] : "user";
    if (n < 1 || n > 0x7fffffff) {
        fprintf(stderr, "kvm_floor: N must be 1..2^31-1\n");
        return 1;
    }
    if (strcmp(mode, "user") && strcmp(mode, "kernel")) {
        fprintf(stderr, "kvm_floor: mode must be user or kernel\n");
        return 1;
    }
    int dpl = strcmp(mode, "user") ? 0 : 3;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
        .userspace_addr = (uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");

    /* One user-accessible 2 MiB page at 0. */
    *(uint64_t *)(mem + PML4) = PDPT | 7;
    *(uint64_t *)(mem + PDPT) = PD | 7;
    *(uint64_t *)(mem + PD) = 0x87;
    /* TSS: I/O bitmap right after the 104-byte header, all ports allowed. */
    *(uint16_t *)(mem + TSS + 102) = 104;
    mem[TSS + 104 + 8192] = 0xff;
    memcpy(mem + CODE, guest_code, sizeof(guest_code));

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < 0)
        die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        die("KVM_GET_SREGS");
    sregs.cs = dpl ? seg(0x28, 0xb, 1, 3) : seg(0x10, 0xb, 1, 0);
    sregs.ds = sregs.es = sregs.ss = sregs.fs = sregs.gs =
        dpl ? seg(0x20, 0x3, 0, 3) : seg(0x18, 0x3, 0, 0);
    sregs.tr = (struct kvm_segment){ .base = TSS, .limit = TSS_LIMIT, .selector = 0x30,
                                     .type = 0xb, .present = 1 };
    sregs.gdt.base = 0x4000;
    sregs.gdt.limit = 0x3f;
    sregs.cr0 = 0x80050033;     /* PG WP NE ET MP PE */
    sregs.cr3 = PML4;
    sregs.cr4 = 0x20;           /* PAE */
    sregs.efer = 0x500;         /* LME LMA */
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        die("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = CODE, .rcx = (uint64_t)n, .rflags = 0x3002 };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");

    long exits = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("KVM_RUN");
        }
        if (run->exit_reason != KVM_EXIT_IO) {
            fprintf(stderr, "kvm_floor: unexpected exit reason %u after %ld exits\n",
                    run->exit_reason, exits);
            return 1;
        }
        if (run->io.port == DONE_PORT)
            break;
        exits++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    if (exits != n) {
        fprintf(stderr, "kvm_floor: %ld exits, expected %ld\n", exits, n);
        return 1;
    }
    printf("kvm_floor: %ld exits (%s), %.0f ns/exit\n", exits, mode, ns / exits);
    return 0;
}
