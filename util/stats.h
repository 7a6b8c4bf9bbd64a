/* Runtime statistics providers: anything that counts (exit handling, the
 * emulator's instruction and TLB counters, block devices) registers a
 * provider here, and the monitor exposes all of them through QMP
 * query-stats / query-stats-schemas without knowing who they are.
 *
 * A provider describes its counters once (name, type, unit) and fills an
 * array of values on demand, for one vCPU or for the whole VM. */
#ifndef VMON_UTIL_STATS_H
#define VMON_UTIL_STATS_H

#include "util/types.h"

struct machine;

enum stats_target { STATS_TARGET_VM, STATS_TARGET_VCPU };
/* QEMU's StatsType and StatsUnit. */
enum stats_type { STATS_CUMULATIVE, STATS_INSTANT, STATS_PEAK };
enum stats_unit { STATS_UNIT_NONE, STATS_UNIT_BYTES, STATS_UNIT_SECONDS, STATS_UNIT_CYCLES,
                  STATS_UNIT_BOOLEAN };

struct stats_desc {
    const char *name;
    enum stats_type type;
    enum stats_unit unit;
    int exponent;          /* power of ten: -9 for nanoseconds */
};

struct stats_provider {
    const char *name;      /* QMP provider name: "kvm", "emu" */
    enum stats_target target;
    const struct stats_desc *descs;
    unsigned nr_descs;
    /* Fill values[nr_descs] for vCPU vcpu (target VCPU) or the VM (vcpu is
     * -1).  Runs on the main loop with the machine lock held; the counters
     * may be moving, each value only has to be read atomically. */
    void (*read)(struct machine *m, int vcpu, uint64_t *values, void *opaque);
    void *opaque;
};

/* The provider must stay valid for the life of the process.  Returns 0 or
 * -ENOMEM; -EEXIST if the same provider is registered twice. */
int stats_register_provider(const struct stats_provider *p);
int stats_nr_providers(void);
const struct stats_provider *stats_provider_at(int i);

#endif
