/* VM-exit statistics as a stats provider, and the QMP commands that expose
 * every provider: query-stats and query-stats-schemas (QEMU 7.2's
 * qapi/stats.json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "machine/machine.h"
#include "monitor/qmp.h"
#include "monitor/stat_table.h"
#include "util/stats.h"

/* Per exit reason: count, total time, min, max; then the overall count
 * and time.  Names follow KVM's binary stats where one exists
 * ("io_exits", "halt_exits" is "hlt_exits" here). */
#define EXIT_FIELDS 4
#define NR_EXIT_DESCS (STAT_NR * EXIT_FIELDS + 2)

static struct stats_desc exit_descs[NR_EXIT_DESCS];
static char exit_names[NR_EXIT_DESCS][40];
static struct stats_provider exit_vcpu_provider, exit_vm_provider;

static void exit_descs_init(void)
{
    static const char *const suffix[EXIT_FIELDS] = { "_exits", "_exit_time", "_exit_time_min",
                                                     "_exit_time_max" };
    static const enum stats_type type[EXIT_FIELDS] = { STATS_CUMULATIVE, STATS_CUMULATIVE,
                                                       STATS_INSTANT, STATS_PEAK };

    for (int k = 0; k < STAT_NR; k++) {
        for (int f = 0; f < EXIT_FIELDS; f++) {
            int i = k * EXIT_FIELDS + f;

            snprintf(exit_names[i], sizeof(exit_names[i]), "%s%s", vcpu_stat_name(k), suffix[f]);
            exit_descs[i] = (struct stats_desc){
                .name = exit_names[i], .type = type[f],
                .unit = f ? STATS_UNIT_SECONDS : STATS_UNIT_NONE, .exponent = f ? -9 : 0,
            };
        }
    }
    exit_descs[NR_EXIT_DESCS - 2] = (struct stats_desc){ "exits", STATS_CUMULATIVE,
                                                         STATS_UNIT_NONE, 0 };
    exit_descs[NR_EXIT_DESCS - 1] = (struct stats_desc){ "exit_time", STATS_CUMULATIVE,
                                                         STATS_UNIT_SECONDS, -9 };
}

/* The counters are written by the vCPU thread without a lock; 64-bit loads
 * are atomic on x86-64, and a value one exit stale is fine. */
static void exit_read_one(const struct vcpu *v, uint64_t *agg, bool first)
{
    for (int k = 0; k < STAT_NR; k++) {
        const struct vcpu_stat *s = &v->stats[k];
        uint64_t *o = &agg[k * EXIT_FIELDS];
        uint64_t count = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
        uint64_t min = count ? __atomic_load_n(&s->min_ns, __ATOMIC_RELAXED) : 0;
        uint64_t max = __atomic_load_n(&s->max_ns, __ATOMIC_RELAXED);

        o[0] += count;
        o[1] += __atomic_load_n(&s->total_ns, __ATOMIC_RELAXED);
        if (count && (first || !o[2] || min < o[2]))
            o[2] = min;
        if (max > o[3])
            o[3] = max;
    }
}

static void exit_read(struct machine *m, int vcpu, uint64_t *values, void *opaque)
{
    memset(values, 0, NR_EXIT_DESCS * sizeof(*values));
    if (vcpu >= 0 && vcpu < m->nr_vcpus) {
        exit_read_one(m->vcpus[vcpu], values, true);
    } else if (vcpu < 0) {
        for (int i = 0; i < m->nr_vcpus; i++)
            exit_read_one(m->vcpus[i], values, i == 0);
    }
    for (int k = 0; k < STAT_NR; k++) {
        values[NR_EXIT_DESCS - 2] += values[k * EXIT_FIELDS];
        values[NR_EXIT_DESCS - 1] += values[k * EXIT_FIELDS + 1];
    }
}

void monitor_exit_rows(struct machine *m, int vcpu, struct stat_row *rows)
{
    uint64_t values[NR_EXIT_DESCS];

    exit_read(m, vcpu, values, NULL);
    for (int k = 0; k < STAT_NR; k++) {
        struct stat_row *r = &rows[k];
        const char *name = vcpu_stat_name(k);

        memset(r, 0, sizeof(*r));
        for (size_t j = 0; name[j] && j < sizeof(r->reason) - 1; j++)
            r->reason[j] = (char)(name[j] >= 'a' && name[j] <= 'z' ? name[j] - 32 : name[j]);
        r->count = values[k * EXIT_FIELDS];
        r->total_ns = values[k * EXIT_FIELDS + 1];
        r->min_ns = values[k * EXIT_FIELDS + 2];
        r->max_ns = values[k * EXIT_FIELDS + 3];
    }
}

/* ---- query-stats ---- */

static const char *const target_names[] = { [STATS_TARGET_VM] = "vm",
                                            [STATS_TARGET_VCPU] = "vcpu" };

struct stats_request {
    const char *provider;   /* NULL: all */
    json_t *names;          /* NULL: all */
};

static bool name_wanted(json_t *names, const char *name)
{
    size_t i;
    json_t *n;

    if (!names)
        return true;
    json_array_foreach(names, i, n)
        if (!strcmp(json_string_value(n), name))
            return true;
    return false;
}

/* The stats one provider name contributes for one object, merged over
 * every registered provider of that name and target. */
static json_t *collect(struct machine *m, const char *provider, enum stats_target target,
                       int vcpu, json_t *names)
{
    json_t *stats = json_array();

    for (int i = 0; i < stats_nr_providers(); i++) {
        const struct stats_provider *p = stats_provider_at(i);
        uint64_t *values;

        if (p->target != target || strcmp(p->name, provider))
            continue;
        values = calloc(p->nr_descs ? p->nr_descs : 1, sizeof(*values));
        if (!values)
            continue;
        p->read(m, vcpu, values, p->opaque);
        for (unsigned d = 0; d < p->nr_descs; d++)
            if (name_wanted(names, p->descs[d].name))
                json_array_append_new(stats, json_pack("{s:s,s:I}", "name", p->descs[d].name,
                                                       "value", (json_int_t)values[d]));
        free(values);
    }
    return stats;
}

/* Distinct provider names for a target, in registration order. */
static int provider_names(enum stats_target target, const char **out, int max)
{
    int n = 0;

    for (int i = 0; i < stats_nr_providers(); i++) {
        const struct stats_provider *p = stats_provider_at(i);
        bool seen = false;

        if (p->target != target)
            continue;
        for (int j = 0; j < n; j++)
            seen |= !strcmp(out[j], p->name);
        if (!seen && n < max)
            out[n++] = p->name;
    }
    return n;
}

static bool provider_exists(const char *name)
{
    for (int i = 0; i < stats_nr_providers(); i++)
        if (!strcmp(stats_provider_at(i)->name, name))
            return true;
    return false;
}

static bool parse_requests(json_t *providers, struct stats_request *reqs, int *nr,
                           struct qmp_error *err)
{
    size_t i;
    json_t *r;

    *nr = 0;
    json_array_foreach(providers, i, r) {
        static const struct qmp_arg decl[] = {
            { "provider", QMP_STR, false }, { "names", QMP_ARRAY, true }, { NULL },
        };
        json_t *names, *n;
        size_t j;

        if (!json_is_object(r)) {
            qmp_error_set(err, QMP_ERR_GENERIC,
                          "Invalid parameter type for 'providers[%zu]', expected: object", i);
            return false;
        }
        if (!qmp_check_args(decl, r, err))
            return false;
        if (!provider_exists(json_string_value(json_object_get(r, "provider")))) {
            qmp_error_set(err, QMP_ERR_GENERIC,
                          "Parameter 'provider' does not accept value '%s'",
                          json_string_value(json_object_get(r, "provider")));
            return false;
        }
        names = json_object_get(r, "names");
        json_array_foreach(names, j, n) {
            if (!json_is_string(n)) {
                qmp_error_set(err, QMP_ERR_GENERIC,
                              "Invalid parameter type for 'providers[%zu].names[%zu]', "
                              "expected: string", i, j);
                return false;
            }
        }
        if (*nr < 16)
            reqs[(*nr)++] = (struct stats_request){
                json_string_value(json_object_get(r, "provider")), names };
    }
    return true;
}

static int vcpu_from_path(struct machine *m, const char *path)
{
    int idx;
    char tail, extra;

    /* Exactly ".../device[N]", nothing after. */
    if (sscanf(path, "/machine/unattached/device[%d%c%c", &idx, &tail, &extra) != 2 ||
        tail != ']')
        return -1;
    return idx >= 0 && idx < m->nr_vcpus ? idx : -1;
}

static void add_results(struct machine *m, json_t *list, enum stats_target target, int vcpu,
                        const struct stats_request *reqs, int nr_reqs)
{
    const char *names[16];
    int n = provider_names(target, names, 16);

    for (int i = 0; i < n; i++) {
        json_t *filter = NULL, *res;
        bool wanted = nr_reqs == 0;

        for (int r = 0; r < nr_reqs; r++) {
            if (!strcmp(reqs[r].provider, names[i])) {
                wanted = true;
                filter = reqs[r].names;
            }
        }
        if (!wanted)
            continue;
        res = json_pack("{s:s}", "provider", names[i]);
        if (target == STATS_TARGET_VCPU) {
            char path[64];

            snprintf(path, sizeof(path), "/machine/unattached/device[%d]", vcpu);
            json_object_set_new(res, "qom-path", json_string(path));
        }
        json_object_set_new(res, "stats", collect(m, names[i], target, vcpu, filter));
        json_array_append_new(list, res);
    }
}

static json_t *cmd_query_stats(struct machine *m, json_t *args, struct qmp_error *err)
{
    const char *target = json_string_value(json_object_get(args, "target"));
    json_t *vcpus = json_object_get(args, "vcpus"), *list, *p;
    struct stats_request reqs[16];
    int nr_reqs;
    size_t i;

    if (strcmp(target, "vm") && strcmp(target, "vcpu")) {
        qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'target' does not accept value '%s'",
                      target);
        return NULL;
    }
    if (vcpus && strcmp(target, "vcpu")) {
        qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'vcpus' is unexpected");
        return NULL;
    }
    if (!parse_requests(json_object_get(args, "providers"), reqs, &nr_reqs, err))
        return NULL;
    json_array_foreach(vcpus, i, p) {
        if (!json_is_string(p)) {
            qmp_error_set(err, QMP_ERR_GENERIC,
                          "Invalid parameter type for 'vcpus[%zu]', expected: string", i);
            return NULL;
        }
    }
    list = json_array();
    if (!strcmp(target, "vm")) {
        add_results(m, list, STATS_TARGET_VM, -1, reqs, nr_reqs);
        return list;
    }
    for (int v = 0; v < m->nr_vcpus; v++) {
        bool wanted = !vcpus;

        json_array_foreach(vcpus, i, p)
            wanted |= vcpu_from_path(m, json_string_value(p)) == v;
        if (wanted)
            add_results(m, list, STATS_TARGET_VCPU, v, reqs, nr_reqs);
    }
    return list;
}

static json_t *schema_value(const struct stats_desc *d)
{
    static const char *const types[] = { "cumulative", "instant", "peak" };
    static const char *const units[] = { NULL, "bytes", "seconds", "cycles", "boolean" };
    json_t *v = json_pack("{s:s,s:s}", "name", d->name, "type", types[d->type]);

    if (units[d->unit])
        json_object_set_new(v, "unit", json_string(units[d->unit]));
    if (d->exponent)
        json_object_set_new(v, "base", json_integer(10));
    json_object_set_new(v, "exponent", json_integer(d->exponent));
    return v;
}

static json_t *cmd_query_stats_schemas(struct machine *m, json_t *args, struct qmp_error *err)
{
    const char *want = json_string_value(json_object_get(args, "provider"));
    json_t *list = json_array();

    for (int t = STATS_TARGET_VM; t <= STATS_TARGET_VCPU; t++) {
        const char *names[16];
        int n = provider_names(t, names, 16);

        for (int i = 0; i < n; i++) {
            json_t *stats;

            if (want && strcmp(want, names[i]))
                continue;
            stats = json_array();
            for (int j = 0; j < stats_nr_providers(); j++) {
                const struct stats_provider *p = stats_provider_at(j);

                if ((int)p->target == t && !strcmp(p->name, names[i]))
                    for (unsigned d = 0; d < p->nr_descs; d++)
                        json_array_append_new(stats, schema_value(&p->descs[d]));
            }
            json_array_append_new(list, json_pack("{s:s,s:s,s:o}", "provider", names[i],
                                                  "target", target_names[t], "stats", stats));
        }
    }
    return list;
}

static const struct qmp_arg args_query_stats[] = {
    { "target", QMP_STR, false }, { "providers", QMP_ARRAY, true },
    { "vcpus", QMP_ARRAY, true }, { NULL },
};
static const struct qmp_arg args_query_stats_schemas[] = { { "provider", QMP_STR, true },
                                                           { NULL } };

static const struct qmp_command stats_commands[] = {
    { "query-stats", cmd_query_stats, args_query_stats },
    { "query-stats-schemas", cmd_query_stats_schemas, args_query_stats_schemas },
};

void qmp_stats_register(struct machine *m)
{
    const char *accel = m->accel ? m->accel->name : "vmon";

    exit_descs_init();
    exit_vcpu_provider = (struct stats_provider){
        .name = accel, .target = STATS_TARGET_VCPU, .descs = exit_descs,
        .nr_descs = NR_EXIT_DESCS, .read = exit_read,
    };
    exit_vm_provider = exit_vcpu_provider;
    exit_vm_provider.target = STATS_TARGET_VM;
    stats_register_provider(&exit_vcpu_provider);
    stats_register_provider(&exit_vm_provider);
    for (size_t i = 0; i < sizeof(stats_commands) / sizeof(stats_commands[0]); i++)
        qmp_register_command(&stats_commands[i]);
}
