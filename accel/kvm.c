/* The kvm accelerator, VM level: /dev/kvm checks, the VM with its in-kernel
 * interrupt controllers and PIT, guest RAM as memslots, interrupt lines, and
 * the CPUID model cut down to what this KVM can run. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "accel/kvm.h"
#include "accel/kvm_internal.h"
#include "config/config.h"
#include "util/log.h"

#define KVM_DEV "/dev/kvm"
/* Below the 4 GiB boundary, above the BIOS area and the LAPIC/IOAPIC: the
 * three pages VMX needs for real mode (TSS) and the identity map. */
#define KVM_TSS_ADDR 0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

static const struct {
    int cap;
    const char *name;
} required_caps[] = {
    { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
    { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
    { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
    { KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
    { KVM_CAP_PIT2, "KVM_CAP_PIT2" },
    { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    { KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
    { KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS" },
    { KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI" },
    { KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
};

int kvm_ioctl(int fd, unsigned long req, void *arg)
{
    int r;

    do
        r = ioctl(fd, req, arg);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static int check_ext(int fd, int cap)
{
    int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

    return r < 0 ? 0 : r;
}

/* Open /dev/kvm and check the API; returns the fd or -1 with why filled. */
static int kvm_open_checked(char *why, size_t why_len)
{
    int fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);
    int version;

    if (fd < 0) {
        snprintf(why, why_len, "%s: %s", KVM_DEV, strerror(errno));
        return -1;
    }
    version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        snprintf(why, why_len, "%s: KVM API version %d, need %d", KVM_DEV, version,
                 KVM_API_VERSION);
        goto fail;
    }
    for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++)
        if (!check_ext(fd, required_caps[i].cap)) {
            snprintf(why, why_len, "%s: this KVM lacks %s", KVM_DEV, required_caps[i].name);
            goto fail;
        }
    return fd;
fail:
    close(fd);
    return -1;
}

static bool kvm_available(char *why, size_t why_len)
{
    int fd = kvm_open_checked(why, why_len);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* The bits vmon's model can advertise, for naming what a host drops. */
struct model_bit {
    uint32_t function;
    int reg; /* 0 eax, 1 ebx, 2 ecx, 3 edx */
    int bit;
    const char *name;
};

static const struct model_bit model_bits[] = {
    { 1, 3, 0, "fpu" }, { 1, 3, 2, "de" }, { 1, 3, 3, "pse" }, { 1, 3, 4, "tsc" },
    { 1, 3, 5, "msr" }, { 1, 3, 6, "pae" }, { 1, 3, 7, "mce" }, { 1, 3, 8, "cx8" },
    { 1, 3, 9, "apic" }, { 1, 3, 11, "sep" }, { 1, 3, 12, "mtrr" }, { 1, 3, 13, "pge" },
    { 1, 3, 14, "mca" }, { 1, 3, 15, "cmov" }, { 1, 3, 16, "pat" }, { 1, 3, 17, "pse36" },
    { 1, 3, 19, "clflush" }, { 1, 3, 23, "mmx" }, { 1, 3, 24, "fxsr" }, { 1, 3, 25, "sse" },
    { 1, 3, 26, "sse2" }, { 1, 2, 0, "sse3" }, { 1, 2, 13, "cx16" }, { 1, 2, 23, "popcnt" },
    { 6, 0, 2, "arat" }, { 0x80000001, 2, 0, "lahf_lm" }, { 0x80000001, 3, 11, "syscall" },
    { 0x80000001, 3, 20, "nx" }, { 0x80000001, 3, 27, "rdtscp" }, { 0x80000001, 3, 29, "lm" },
};

static const char *model_bit_name(uint32_t function, int reg, int bit)
{
    for (size_t i = 0; i < ARRAY_SIZE(model_bits); i++)
        if (model_bits[i].function == function && model_bits[i].reg == reg &&
            model_bits[i].bit == bit)
            return model_bits[i].name;
    return "?";
}

static struct kvm_cpuid2 *get_supported_cpuid(int dev_fd)
{
    for (unsigned n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
        int r;

        if (!c)
            return NULL;
        c->nent = n;
        r = kvm_ioctl(dev_fd, KVM_GET_SUPPORTED_CPUID, c);
        if (r >= 0)
            return c;
        free(c);
        if (r != -E2BIG)
            return NULL;
    }
    return NULL;
}

/* Feature words of the model that KVM must be able to run.  Topology,
 * caches, the brand string and our hypervisor leaf are vmon's to define;
 * HTT and HYPERVISOR are synthesised by the VMM, not features of the host. */
static const struct {
    uint32_t function, index;
    int reg;
    uint32_t exempt;
} feature_words[] = {
    { 1, 0, 2, 1u << 31 }, { 1, 0, 3, 1u << 28 }, { 6, 0, 0, 0 },
    { 7, 0, 1, 0 }, { 7, 0, 2, 0 }, { 7, 0, 3, 0 },
    { 0x80000001, 0, 2, 0 }, { 0x80000001, 0, 3, 0 },
};

static const char *const reg_names[4] = { "EAX", "EBX", "ECX", "EDX" };

static uint32_t *entry_reg(struct cpuid_entry *e, int reg)
{
    uint32_t *regs[4] = { &e->eax, &e->ebx, &e->ecx, &e->edx };

    return regs[reg];
}

static const struct kvm_cpuid_entry2 *find_supported(const struct kvm_cpuid2 *c,
                                                     uint32_t function, uint32_t index)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == function &&
            (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
             c->entries[i].index == index))
            return &c->entries[i];
    return NULL;
}

static void drop_software_kvm_features(struct cpuid_model *model);

/* The model belongs to the machine: cutting it here (before any vCPU exists)
 * means a later switch to emu keeps presenting the same CPU. */
static int kvm_intersect_cpuid(struct kvm_vm *vm, struct cpuid_model *model)
{
    struct kvm_cpuid2 *sup = get_supported_cpuid(vm->dev_fd);

    if (!sup) {
        error_report("-accel kvm: KVM_GET_SUPPORTED_CPUID failed");
        return -EIO;
    }
    for (int i = 0; i < model->nr; i++) {
        struct cpuid_entry *e = &model->e[i];

        for (size_t w = 0; w < ARRAY_SIZE(feature_words); w++) {
            const struct kvm_cpuid_entry2 *k;
            uint32_t *val, have, lost;

            if (feature_words[w].function != e->function ||
                feature_words[w].index != e->index)
                continue;
            k = find_supported(sup, e->function, e->index);
            val = entry_reg(e, feature_words[w].reg);
            have = k ? (feature_words[w].reg == 0   ? k->eax
                        : feature_words[w].reg == 1 ? k->ebx
                        : feature_words[w].reg == 2 ? k->ecx
                                                    : k->edx)
                     : 0;
            lost = *val & ~have & ~feature_words[w].exempt;
            for (int b = 0; b < 32; b++)
                if (lost & (1u << b))
                    LOG(LOG_ACCEL,
                        "kvm: host KVM lacks CPUID.%xh:%s[%d] (%s): dropped from the model\n",
                        e->function, reg_names[feature_words[w].reg],
                        b, model_bit_name(e->function, feature_words[w].reg, b));
            *val &= ~lost;
        }
    }
    free(sup);
    drop_software_kvm_features(model);
    return 0;
}

/* A KVM without vmx/svm underneath (PVM) emulates guest supervisor code in
 * the host, and that emulator has no CMPXCHG16B: Linux would die on its
 * first `lock cmpxchg16b` (QEMU's guests do).  KVM_GET_SUPPORTED_CPUID still
 * reports the bit, because guest user mode runs natively, so drop it here. */
static void drop_software_kvm_features(struct cpuid_model *model)
{
    if (accel_host_has_hw_virt())
        return;
    for (int i = 0; i < model->nr; i++) {
        struct cpuid_entry *e = &model->e[i];

        if (e->function == 1 && (e->ecx & (1u << 13))) {
            e->ecx &= ~(1u << 13);
            LOG(LOG_ACCEL, "kvm: no vmx/svm under this KVM: CMPXCHG16B (CPUID.1:ECX[13]) "
                           "dropped, its supervisor-mode emulator cannot run it\n");
        }
    }
}

static int kvm_init(struct machine *m)
{
    struct kvm_vm *vm;
    char why[256];
    unsigned smp = m->cfg && m->cfg->smp ? m->cfg->smp : 1;
    int max_vcpus, ret;

    vm = calloc(1, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    vm->vm_fd = -1;
    vm->dev_fd = kvm_open_checked(why, sizeof(why));
    if (vm->dev_fd < 0) {
        error_report("-accel kvm: %s", why);
        ret = -ENODEV;
        goto err_free;
    }

    max_vcpus = check_ext(vm->dev_fd, KVM_CAP_MAX_VCPUS);
    if (!max_vcpus)
        max_vcpus = check_ext(vm->dev_fd, KVM_CAP_NR_VCPUS);
    if (max_vcpus && smp > (unsigned)max_vcpus) {
        error_report("-smp %u: this KVM runs at most %d vCPUs", smp, max_vcpus);
        ret = -EINVAL;
        goto err_close;
    }
    int recommended = check_ext(vm->dev_fd, KVM_CAP_NR_VCPUS);
    if (recommended > 0 && smp > (unsigned)recommended)
        warn_report("-smp %u: more vCPUs than this KVM recommends (%d)", smp, recommended);

    vm->run_size = ioctl(vm->dev_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->run_size < (int)sizeof(struct kvm_run)) {
        error_report("-accel kvm: KVM_GET_VCPU_MMAP_SIZE returned %d", vm->run_size);
        ret = -EIO;
        goto err_close;
    }

    ret = kvm_ioctl(vm->dev_fd, KVM_CREATE_VM, (void *)0);
    if (ret < 0) {
        error_report("-accel kvm: KVM_CREATE_VM: %s", strerror(-ret));
        goto err_close;
    }
    vm->vm_fd = ret;

    ret = kvm_ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)KVM_TSS_ADDR);
    if (ret < 0) {
        error_report("-accel kvm: KVM_SET_TSS_ADDR: %s", strerror(-ret));
        goto err_close;
    }
    if (check_ext(vm->vm_fd, KVM_CAP_SET_IDENTITY_MAP_ADDR)) {
        uint64_t addr = KVM_IDENTITY_MAP_ADDR;

        ret = kvm_ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &addr);
        if (ret < 0) {
            error_report("-accel kvm: KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(-ret));
            goto err_close;
        }
    }
    ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, NULL);
    if (ret < 0) {
        error_report("-accel kvm: KVM_CREATE_IRQCHIP: %s", strerror(-ret));
        goto err_close;
    }
    ret = kvm_irq_routing_commit(vm);
    if (ret < 0) {
        error_report("-accel kvm: KVM_SET_GSI_ROUTING: %s", strerror(-ret));
        goto err_close;
    }
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit);
    if (ret < 0) {
        error_report("-accel kvm: KVM_CREATE_PIT2: %s", strerror(-ret));
        goto err_close;
    }
    for (int i = 0; i < 3; i++) {
        vm->chip_reset[i].chip_id = (uint32_t)i;
        ret = kvm_ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &vm->chip_reset[i]);
        if (ret < 0) {
            error_report("-accel kvm: KVM_GET_IRQCHIP %d: %s", i, strerror(-ret));
            goto err_close;
        }
    }
    ret = kvm_ioctl(vm->vm_fd, KVM_GET_PIT2, &vm->pit_reset);
    if (ret < 0) {
        error_report("-accel kvm: KVM_GET_PIT2: %s", strerror(-ret));
        goto err_close;
    }
    /* Keep pending and injected exceptions apart in KVM_GET_VCPU_EVENTS, as
     * struct x86_events does. */
    if (check_ext(vm->vm_fd, KVM_CAP_EXCEPTION_PAYLOAD)) {
        struct kvm_enable_cap cap = { .cap = KVM_CAP_EXCEPTION_PAYLOAD, .args = { 1 } };

        vm->exception_payload = kvm_ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) == 0;
    }
    vm->has_debugregs = check_ext(vm->vm_fd, KVM_CAP_DEBUGREGS) > 0;
    if (check_ext(vm->vm_fd, KVM_CAP_XSAVE))
        vm->xsave_size = MAX(check_ext(vm->vm_fd, KVM_CAP_XSAVE2), (int)sizeof(struct kvm_xsave));

    for (int i = 0; i < m->nr_ram_blocks; i++) {
        const struct ram_block *b = &m->ram_blocks[i];
        struct kvm_userspace_memory_region r = {
            .slot = (uint32_t)i,
            .guest_phys_addr = b->gpa,
            .memory_size = b->size,
            .userspace_addr = (uintptr_t)b->host,
        };

        ret = kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
        if (ret < 0) {
            error_report("-accel kvm: KVM_SET_USER_MEMORY_REGION gpa 0x%llx size 0x%llx: %s",
                         (unsigned long long)b->gpa, (unsigned long long)b->size,
                         strerror(-ret));
            goto err_close;
        }
    }

    ret = kvm_intersect_cpuid(vm, &m->cpuid);
    if (ret < 0)
        goto err_close;
    {
        uint32_t leaf1[4];

        cpuid_query(&m->cpuid, 0, 1, 0, leaf1);
        vm->has_xcrs = check_ext(vm->vm_fd, KVM_CAP_XCRS) && (leaf1[2] & (1u << 26));
    }

    m->accel_priv = vm;
    ret = kvm_eventfd_init(m, vm);
    if (ret < 0) {
        m->accel_priv = NULL;
        goto err_close;
    }
    LOG(LOG_ACCEL,
        "kvm: VM created: %d RAM slot(s), in-kernel irqchip and PIT, %u vCPU(s), "
        "exception payload %s, xcrs %s\n",
        m->nr_ram_blocks, smp, vm->exception_payload ? "on" : "off",
        vm->has_xcrs ? "on" : "off");
    return 0;

err_close:
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    close(vm->dev_fd);
err_free:
    free(vm);
    return ret;
}

static void kvm_destroy(struct machine *m)
{
    struct kvm_vm *vm = kvm_vm_of(m);

    if (!vm)
        return;
    close(vm->vm_fd);
    close(vm->dev_fd);
    kvm_eventfd_destroy(vm);
    free(vm);
    m->accel_priv = NULL;
}

int kvm_devices_get(struct machine *m, struct kvm_irqchip chips[3], struct kvm_pit_state2 *pit)
{
    struct kvm_vm *vm = m->accel == &accel_kvm_ops ? kvm_vm_of(m) : NULL;
    int r;

    if (!vm)
        return -ENODEV;
    for (int i = 0; i < 3; i++) {
        chips[i].chip_id = (uint32_t)i;
        r = kvm_ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]);
        if (r < 0)
            return r;
    }
    r = kvm_ioctl(vm->vm_fd, KVM_GET_PIT2, pit);
    return r < 0 ? r : 0;
}

int kvm_devices_set(struct machine *m, const struct kvm_irqchip chips[3],
                    const struct kvm_pit_state2 *pit)
{
    struct kvm_vm *vm = m->accel == &accel_kvm_ops ? kvm_vm_of(m) : NULL;
    int r;

    if (!vm)
        return -ENODEV;
    for (int i = 0; i < 3; i++) {
        if (chips[i].chip_id != (uint32_t)i)
            return -EINVAL;
        r = kvm_ioctl(vm->vm_fd, KVM_SET_IRQCHIP, (void *)&chips[i]);
        if (r < 0)
            return r;
    }
    r = kvm_ioctl(vm->vm_fd, KVM_SET_PIT2, (void *)pit);
    return r < 0 ? r : 0;
}

/* KVM has no reset for its devices: load the state they were created in.
 * The LAPICs are per-vCPU state and come back with set_state. */
static void kvm_reset(struct machine *m)
{
    struct kvm_vm *vm = kvm_vm_of(m);
    int r;

    if (!vm)
        return;
    r = kvm_devices_set(m, vm->chip_reset, &vm->pit_reset);
    if (r < 0)
        error_report("kvm: reset of the in-kernel PIC/IOAPIC/PIT failed: %s", strerror(-r));
}

static void kvm_set_irq(struct machine *m, unsigned gsi, int level)
{
    struct kvm_vm *vm = kvm_vm_of(m);
    struct kvm_irq_level irq = { .irq = gsi, .level = level ? 1 : 0 };
    int r;

    if (!vm)
        return;
    r = kvm_ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
    if (r < 0)
        LOG(LOG_GUEST_ERRORS, "kvm: KVM_IRQ_LINE gsi %u level %d: %s\n", gsi, level,
            strerror(-r));
}

static void kvm_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    struct kvm_vm *vm = kvm_vm_of(m);
    struct kvm_msi msi = {
        .address_lo = (uint32_t)addr,
        .address_hi = (uint32_t)(addr >> 32),
        .data = data,
    };
    int r;

    if (!vm)
        return;
    r = kvm_ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi);
    if (r < 0)
        LOG(LOG_GUEST_ERRORS, "kvm: KVM_SIGNAL_MSI addr 0x%llx data 0x%x: %s\n",
            (unsigned long long)addr, data, strerror(-r));
}

const struct accel_ops accel_kvm_ops = {
    .name = "kvm",
    .single_thread = false,
    .available = kvm_available,
    .init = kvm_init,
    .destroy = kvm_destroy,
    .vcpu_init = kvm_vcpu_init,
    .vcpu_destroy = kvm_vcpu_destroy,
    .vcpu_run = kvm_vcpu_run,
    .vcpu_kick = kvm_vcpu_kick,
    .get_state = kvm_get_state,
    .set_state = kvm_set_state,
    .reset = kvm_reset,
    .dirty_log_start = kvm_dirty_log_start,
    .dirty_log_stop = kvm_dirty_log_stop,
    .dirty_log_sync = kvm_dirty_log_sync,
    .set_irq = kvm_set_irq,
    .send_msi = kvm_send_msi,
    .ioeventfd = kvm_ioeventfd,
    .msi_route = kvm_msi_route,
};
