/* vmon's CPUID model: one conservative x86-64 CPU that both accelerators can
 * run.  Every bit advertised here is an instruction or behaviour vmon's own
 * emulator implements and KVM (intersected at VM creation) passes through;
 * anything else (AVX, XSAVE, MOVBE, x2APIC, leaf 7) stays off so a guest
 * moved between accelerators never sees its CPU change. */
#include <string.h>

#include "cpu/cpuid.h"

#define BIT(n) (1u << (n))

/* CPUID.1:EDX */
#define F1_EDX                                                                 \
    (BIT(0) /* FPU */ | BIT(2) /* DE */ | BIT(3) /* PSE */ | BIT(4) /* TSC */ | \
     BIT(5) /* MSR */ | BIT(6) /* PAE */ | BIT(7) /* MCE */ | BIT(8) /* CX8 */ | \
     BIT(9) /* APIC */ | BIT(11) /* SEP */ | BIT(12) /* MTRR */ |               \
     BIT(13) /* PGE */ | BIT(14) /* MCA */ | BIT(15) /* CMOV */ |               \
     BIT(16) /* PAT */ | BIT(17) /* PSE36 */ | BIT(19) /* CLFSH */ |           \
     BIT(23) /* MMX */ | BIT(24) /* FXSR */ | BIT(25) /* SSE */ |              \
     BIT(26) /* SSE2 */)
#define F1_EDX_HTT BIT(28)
/* CPUID.1:ECX */
#define F1_ECX                                                                 \
    (BIT(0) /* SSE3 */ | BIT(13) /* CX16 */ | BIT(23) /* POPCNT */ |           \
     BIT(31) /* HYPERVISOR */)
/* CPUID.80000001h */
#define F81_ECX (BIT(0) /* LAHF_LM */)
#define F81_EDX                                                                \
    (BIT(11) /* SYSCALL */ | BIT(20) /* NX */ | BIT(27) /* RDTSCP */ |         \
     BIT(29) /* LM */)

#define MAX_BASIC_LEAF 0xbu
#define MAX_EXT_LEAF 0x80000008u
#define HV_LEAF 0x40000000u

static const char brand[48] = "vmon virtual CPU";

static void add(struct cpuid_model *model, uint32_t function, uint32_t index,
                uint32_t flags, uint32_t eax, uint32_t ebx, uint32_t ecx,
                uint32_t edx)
{
    if (model->nr >= CPUID_MAX_ENTRIES)
        return; /* cannot happen with the fixed table below; test_cpuid checks */
    model->e[model->nr++] = (struct cpuid_entry){
        .function = function, .index = index, .flags = flags,
        .eax = eax, .ebx = ebx, .ecx = ecx, .edx = edx,
    };
}

static uint32_t str4(const char *s)
{
    return (uint32_t)(uint8_t)s[0] | (uint32_t)(uint8_t)s[1] << 8 |
           (uint32_t)(uint8_t)s[2] << 16 | (uint32_t)(uint8_t)s[3] << 24;
}

/* Deterministic cache parameters (leaf 4): type 1 data, 2 instruction,
 * 3 unified; sharing is the number of APIC IDs sharing it, minus one. */
static void add_cache(struct cpuid_model *model, unsigned index, unsigned type,
                      unsigned level, unsigned ways, unsigned sets,
                      unsigned sharing, unsigned core_ids)
{
    uint32_t eax = type | level << 5 | BIT(8) /* self-initialising */ |
                   sharing << 14 | (core_ids - 1) << 26;
    uint32_t ebx = (ways - 1) << 22 | 0 << 12 /* one partition */ | (64 - 1);

    add(model, 4, index, CPUID_FLAG_INDEXED, eax, ebx, sets - 1,
        level == 3 ? BIT(1) /* inclusive */ : 0);
}

void cpuid_model_build(struct cpuid_model *model, unsigned nr_vcpus)
{
    unsigned core_bits = 0;

    if (nr_vcpus == 0)
        nr_vcpus = 1;
    if (nr_vcpus > 255)
        nr_vcpus = 255; /* xAPIC IDs are 8 bits */
    while ((1u << core_bits) < nr_vcpus)
        core_bits++;
    /* One package, one thread per core, nr_vcpus cores: APIC ID = core ID. */
    unsigned core_ids = 1u << core_bits;

    memset(model, 0, sizeof(*model));

    add(model, 0, 0, 0, MAX_BASIC_LEAF, str4("Genu"), str4("ntel"), str4("ineI"));
    add(model, 1, 0, 0, CPUID_VMON_SIGNATURE,
        8u << 8 /* CLFLUSH line 64 bytes */ | (nr_vcpus > 1 ? core_ids : 1) << 16,
        F1_ECX, F1_EDX | (nr_vcpus > 1 ? F1_EDX_HTT : 0));
    /* One iteration, descriptor 0xff: "see leaf 4". */
    add(model, 2, 0, 0, 0x0000ff01, 0, 0, 0);
    add(model, 3, 0, 0, 0, 0, 0, 0);
    add_cache(model, 0, 1, 1, 8, 64, 0, core_ids);     /* L1d 32 KiB */
    add_cache(model, 1, 2, 1, 8, 64, 0, core_ids);     /* L1i 32 KiB */
    add_cache(model, 2, 3, 2, 16, 1024, 0, core_ids);  /* L2 1 MiB per core */
    add_cache(model, 3, 3, 3, 16, 16384, core_ids - 1, core_ids); /* L3 16 MiB */
    add(model, 4, 4, CPUID_FLAG_INDEXED, 0, 0, 0, 0);  /* no more caches */
    add(model, 5, 0, 0, 0, 0, 0, 0);                   /* no MONITOR/MWAIT */
    /* ARAT: the APIC timer keeps running in idle (we model no C-states), so
     * Linux need not fall back to a broadcast timer. */
    add(model, 6, 0, 0, BIT(2), 0, 0, 0);
    /* Leaf 7 stays empty until both accelerators run some of it. */
    add(model, 7, 0, CPUID_FLAG_INDEXED, 0, 0, 0, 0);
    add(model, 8, 0, 0, 0, 0, 0, 0);
    add(model, 9, 0, 0, 0, 0, 0, 0);
    add(model, 0xa, 0, 0, 0, 0, 0, 0);                 /* no architectural PMU */
    /* Extended topology: SMT level (1 thread), then core level. */
    add(model, 0xb, 0, CPUID_FLAG_INDEXED, 0, 1, 1u << 8 | 0, 0);
    add(model, 0xb, 1, CPUID_FLAG_INDEXED, core_bits, nr_vcpus, 2u << 8 | 1, 0);

    /* A hypervisor leaf of our own: not KVM's signature, since we offer no
     * paravirtual clock or other KVM interfaces. */
    add(model, HV_LEAF, 0, 0, HV_LEAF, str4("vmon"), str4("vmon"), str4("vmon"));

    add(model, 0x80000000, 0, 0, MAX_EXT_LEAF, 0, 0, 0);
    add(model, 0x80000001, 0, 0, 0, 0, F81_ECX, F81_EDX);
    for (unsigned i = 0; i < 3; i++)
        add(model, 0x80000002 + i, 0, 0, str4(brand + 16 * i), str4(brand + 16 * i + 4),
            str4(brand + 16 * i + 8), str4(brand + 16 * i + 12));
    add(model, 0x80000005, 0, 0, 0, 0, 0, 0);
    /* L2: 1 MiB, 16-way (encoding 8), 64-byte lines. */
    add(model, 0x80000006, 0, 0, 0, 0, 1024u << 16 | 8u << 12 | 64, 0);
    add(model, 0x80000007, 0, 0, 0, 0, 0, 0);
    add(model, 0x80000008, 0, 0, 48u << 8 | 40, 0, 0, 0);
}

static const struct cpuid_entry *find(const struct cpuid_model *model,
                                      uint32_t function, uint32_t index)
{
    for (int i = 0; i < model->nr; i++) {
        const struct cpuid_entry *e = &model->e[i];

        if (e->function != function)
            continue;
        if (!(e->flags & CPUID_FLAG_INDEXED) || e->index == index)
            return e;
    }
    return NULL;
}

static bool in_range(const struct cpuid_model *model, uint32_t function)
{
    const struct cpuid_entry *e;
    uint32_t base = function & 0xffff0000u;

    if (base != 0 && base != 0x80000000u && base != HV_LEAF)
        return false;
    e = find(model, base, 0);
    return e && function <= e->eax;
}

void cpuid_query(const struct cpuid_model *model, unsigned apic_id,
                 uint32_t function, uint32_t index, uint32_t out[4])
{
    const struct cpuid_entry *e;

    /* Intel: a leaf above the maximum of its range returns the highest basic
     * leaf (SDM vol. 2A, CPUID, "INPUT EAX = 0"). */
    if (!in_range(model, function)) {
        const struct cpuid_entry *max = find(model, 0, 0);

        function = max ? max->eax : 0;
    }
    e = find(model, function, index);
    if (e) {
        out[0] = e->eax;
        out[1] = e->ebx;
        out[2] = e->ecx;
        out[3] = e->edx;
    } else {
        out[0] = out[1] = out[2] = out[3] = 0;
        /* Leaf 0xb: an undefined level still echoes ECX[7:0] (type 0 =
         * invalid) and reports the x2APIC ID. */
        if (function == 0xb && find(model, 0xb, 0))
            out[2] = index & 0xff;
    }
    if (function == 1)
        out[1] = (out[1] & 0x00ffffffu) | (apic_id & 0xffu) << 24;
    if (function == 0xb && (e || find(model, 0xb, 0)))
        out[3] = apic_id;
}
