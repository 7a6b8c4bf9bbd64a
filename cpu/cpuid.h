/* The CPUID model.  It belongs to the machine, not to an accelerator: both
 * accelerators present the same one, limited to what both can run, so a
 * guest moved between them never sees its CPU change. */
#ifndef VMON_CPU_CPUID_H
#define VMON_CPU_CPUID_H

#include "util/types.h"

#define CPUID_MAX_ENTRIES 64
#define CPUID_FLAG_INDEXED 1   /* the leaf depends on ECX (subleaf) */

struct cpuid_entry {
    uint32_t function, index, flags;
    uint32_t eax, ebx, ecx, edx;
};

struct cpuid_model {
    int nr;
    struct cpuid_entry e[CPUID_MAX_ENTRIES];
};

/* Family 6, model 0x0f, stepping 11: CPUID.1:EAX, and EDX after reset/INIT.
 * A model Linux has no PMU or errata special case for. */
#define CPUID_VMON_SIGNATURE 0x000006fbu

/* Build vmon's model for a machine of nr_vcpus CPUs. */
void cpuid_model_build(struct cpuid_model *model, unsigned nr_vcpus);
/* Look up a leaf; entries for unknown leaves follow Intel's rule (the
 * highest basic leaf is returned for out-of-range basic leaves). */
void cpuid_query(const struct cpuid_model *model, unsigned apic_id,
                 uint32_t function, uint32_t index, uint32_t out[4]);

#endif
