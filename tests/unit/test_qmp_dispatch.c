/* QMP requests as QEMU answers them: capabilities negotiation first, the
 * id echoed whatever its type, every malformed input answered with the
 * right error class and message, arguments checked against each command's
 * declaration; and query-stats over registered providers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "machine/machine.h"
#include "monitor/qmp.h"
#include "monitor/stat_table.h"
#include "util/stats.h"

static struct vm_config cfg = { .name = "guest1" };
static struct machine m;
static struct vcpu vcpus[2];

static int setup(void **state)
{
    m.cfg = &cfg;
    m.nr_vcpus = 2;
    for (int i = 0; i < 2; i++) {
        vcpus[i].index = i;
        vcpus[i].m = &m;
        for (int k = 0; k < STAT_NR; k++)
            vcpus[i].stats[k].min_ns = UINT64_MAX;
        m.vcpus[i] = &vcpus[i];
    }
    qmp_commands_register();
    qmp_stats_register(&m);
    return 0;
}

/* Dispatch one text; the reply as a new jansson object. */
static json_t *request(const char *text, bool *negotiated)
{
    json_t *r = qmp_dispatch_text(&m, text, strlen(text), negotiated);

    assert_non_null(r);
    return r;
}

static void assert_error(json_t *reply, const char *cls, const char *desc)
{
    json_t *e = json_object_get(reply, "error");

    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "class")), cls);
    assert_string_equal(json_string_value(json_object_get(e, "desc")), desc);
    json_decref(reply);
}

static void negotiation_comes_first(void **state)
{
    bool neg = false;
    json_t *r;

    assert_error(request("{\"execute\": \"query-status\"}", &neg), "CommandNotFound",
                 "Expecting capabilities negotiation with 'qmp_capabilities'");
    assert_error(request("{\"execute\": \"no-such\"}", &neg), "CommandNotFound",
                 "Expecting capabilities negotiation with 'qmp_capabilities'");
    assert_false(neg);
    r = request("{\"execute\": \"qmp_capabilities\"}", &neg);
    assert_true(neg);
    assert_true(json_is_object(json_object_get(r, "return")));
    assert_int_equal(json_object_size(json_object_get(r, "return")), 0);
    json_decref(r);
    assert_error(request("{\"execute\": \"qmp_capabilities\"}", &neg), "CommandNotFound",
                 "Capabilities negotiation is already complete, command ignored");
}

static void oob_capability_is_refused(void **state)
{
    bool neg = false;

    assert_error(request("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
                         &neg), "GenericError", "Capability 'oob' not available");
    assert_false(neg);
}

static void id_is_echoed_verbatim(void **state)
{
    static const char *const ids[] = { "7", "\"abc\"", "[1, {\"x\": null}]", "{\"a\": 1.5}" };
    bool neg = true;

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char text[128];
        json_t *r, *want;

        snprintf(text, sizeof(text), "{\"execute\": \"query-name\", \"id\": %s}", ids[i]);
        r = request(text, &neg);
        want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
        assert_true(json_equal(json_object_get(r, "id"), want));
        assert_string_equal(json_string_value(json_object_get(json_object_get(r, "return"), "name")),
                            "guest1");
        json_decref(want);
        json_decref(r);
        /* errors carry the id too */
        snprintf(text, sizeof(text), "{\"execute\": \"nope\", \"id\": %s}", ids[i]);
        r = request(text, &neg);
        want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
        assert_true(json_equal(json_object_get(r, "id"), want));
        json_decref(want);
        assert_error(r, "CommandNotFound", "The command nope has not been found");
    }
}

static void malformed_envelopes(void **state)
{
    bool neg = true;
    json_t *r;

    r = request("{\"execute\": ", &neg);
    assert_null(json_object_get(r, "id"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "error"), "class")),
                        "GenericError");
    assert_memory_equal(json_string_value(json_object_get(json_object_get(r, "error"), "desc")),
                        "JSON parse error, ", 18);
    json_decref(r);
    assert_error(request("[1, 2]", &neg), "GenericError", "QMP input must be a JSON object");
    assert_error(request("42", &neg), "GenericError", "QMP input must be a JSON object");
    assert_error(request("{\"id\": 1}", &neg), "GenericError", "QMP input lacks member 'execute'");
    assert_error(request("{\"execute\": 1}", &neg), "GenericError",
                 "QMP input member 'execute' must be a string");
    assert_error(request("{\"execute\": \"stop\", \"extra\": 1}", &neg), "GenericError",
                 "QMP input member 'extra' is unexpected");
    assert_error(request("{\"execute\": \"query-status\", \"arguments\": []}", &neg),
                 "GenericError", "QMP input member 'arguments' must be an object");
    assert_error(request("{\"execute\": \"query-status\", \"execute\": \"x\"}", &neg),
                 "GenericError", "JSON parse error, duplicate object key near '\"execute\"'");
    /* The parse error quotes bytes that are not UTF-8: still a reply (the
     * fuzzer found NULL here), with those bytes as '?'. */
    r = request("{\"execute\": \"x\xda\xd0\x9a\"", &neg);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "desc")),
                           "JSON parse error, "));
    json_decref(r);
}

static void arguments_are_checked(void **state)
{
    bool neg = true;

    assert_error(request("{\"execute\": \"query-status\", \"arguments\": {\"verbose\": true}}", &neg),
                 "GenericError", "Parameter 'verbose' is unexpected");
    assert_error(request("{\"execute\": \"human-monitor-command\", \"arguments\": {}}", &neg),
                 "GenericError", "Parameter 'command-line' is missing");
    assert_error(request("{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": 5}}",
                         &neg),
                 "GenericError", "Invalid parameter type for 'command-line', expected: string");
    assert_error(request("{\"execute\": \"human-monitor-command\", \"arguments\": "
                         "{\"command-line\": \"info status\", \"cpu-index\": \"0\"}}", &neg),
                 "GenericError", "Invalid parameter type for 'cpu-index', expected: integer");
    assert_error(request("{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"disk\"}}", &neg),
                 "GenericError", "Parameter 'target' does not accept value 'disk'");
    assert_error(request("{\"execute\": \"query-stats\", \"arguments\": "
                         "{\"target\": \"vm\", \"vcpus\": []}}", &neg),
                 "GenericError", "Parameter 'vcpus' is unexpected");
}

static void check_args_directly(void **state)
{
    static const struct qmp_arg decl[] = {
        { "a", QMP_INT, false }, { "b", QMP_BOOL, true }, { "c", QMP_ANY, true }, { NULL },
    };
    struct qmp_error err = { 0 };
    json_t *args = json_pack("{s:i,s:b,s:[]}", "a", 1, "b", 1, "c");

    assert_true(qmp_check_args(decl, args, &err));
    assert_false(err.set);
    json_object_set_new(args, "b", json_string("yes"));
    assert_false(qmp_check_args(decl, args, &err));
    assert_string_equal(err.desc, "Invalid parameter type for 'b', expected: boolean");
    json_decref(args);
    memset(&err, 0, sizeof(err));
    assert_false(qmp_check_args(decl, NULL, &err));
    assert_string_equal(err.desc, "Parameter 'a' is missing");
}

static void query_status_and_hmp(void **state)
{
    bool neg = true;
    json_t *r = request("{\"execute\": \"query-status\"}", &neg), *ret;

    ret = json_object_get(r, "return");
    assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
    assert_true(json_is_true(json_object_get(ret, "running")));
    assert_true(json_is_false(json_object_get(ret, "singlestep")));
    json_decref(r);
    r = request("{\"execute\": \"human-monitor-command\", \"arguments\": "
                "{\"command-line\": \"info status\"}}", &neg);
    assert_string_equal(json_string_value(json_object_get(r, "return")), "VM status: running\r\n");
    json_decref(r);
    r = request("{\"execute\": \"human-monitor-command\", \"arguments\": "
                "{\"command-line\": \"frobnicate\"}}", &neg);
    assert_string_equal(json_string_value(json_object_get(r, "return")),
                        "unknown command: 'frobnicate'\r\n");
    json_decref(r);
}

/* A second provider, as the emulator registers its counters. */
static const struct stats_desc emu_descs[] = {
    { "instructions", STATS_CUMULATIVE, STATS_UNIT_NONE, 0 },
    { "tlb_misses", STATS_CUMULATIVE, STATS_UNIT_NONE, 0 },
};

static void emu_read(struct machine *mm, int vcpu, uint64_t *values, void *opaque)
{
    values[0] = 1000 + (uint64_t)vcpu;
    values[1] = 7;
}

static const struct stats_provider emu_provider = {
    .name = "emu", .target = STATS_TARGET_VCPU, .descs = emu_descs, .nr_descs = 2,
    .read = emu_read,
};

static json_t *stat_value(json_t *result, const char *name)
{
    size_t i;
    json_t *s;

    json_array_foreach(json_object_get(result, "stats"), i, s)
        if (!strcmp(json_string_value(json_object_get(s, "name")), name))
            return json_object_get(s, "value");
    return NULL;
}

static void query_stats_follows_the_schema(void **state)
{
    bool neg = true;
    json_t *r, *list, *res;

    vcpu_stat_add(&vcpus[0], STAT_EXIT_IO, 100);
    vcpu_stat_add(&vcpus[0], STAT_EXIT_IO, 300);
    vcpu_stat_add(&vcpus[1], STAT_EXIT_IO, 50);
    vcpu_stat_add(&vcpus[1], STAT_EXIT_HLT, 1000);
    assert_int_equal(stats_register_provider(&emu_provider), 0);

    r = request("{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"vm\"}}", &neg);
    list = json_object_get(r, "return");
    assert_int_equal(json_array_size(list), 1);
    res = json_array_get(list, 0);
    assert_null(json_object_get(res, "qom-path"));
    assert_int_equal(json_integer_value(stat_value(res, "io_exits")), 3);
    assert_int_equal(json_integer_value(stat_value(res, "io_exit_time")), 450);
    assert_int_equal(json_integer_value(stat_value(res, "io_exit_time_min")), 50);
    assert_int_equal(json_integer_value(stat_value(res, "io_exit_time_max")), 300);
    assert_int_equal(json_integer_value(stat_value(res, "exits")), 4);
    json_decref(r);

    /* vCPU target: one result per provider per vCPU, filtered. */
    r = request("{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"vcpu\", "
                "\"vcpus\": [\"/machine/unattached/device[1]\"]}}", &neg);
    list = json_object_get(r, "return");
    assert_int_equal(json_array_size(list), 2);
    res = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(res, "qom-path")),
                        "/machine/unattached/device[1]");
    assert_int_equal(json_integer_value(stat_value(res, "hlt_exits")), 1);
    assert_int_equal(json_integer_value(stat_value(res, "io_exits")), 1);
    res = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(res, "provider")), "emu");
    assert_int_equal(json_integer_value(stat_value(res, "instructions")), 1001);
    json_decref(r);

    r = request("{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"vcpu\", "
                "\"providers\": [{\"provider\": \"emu\", \"names\": [\"tlb_misses\"]}]}}", &neg);
    list = json_object_get(r, "return");
    assert_int_equal(json_array_size(list), 2);           /* two vCPUs */
    res = json_array_get(list, 0);
    assert_int_equal(json_array_size(json_object_get(res, "stats")), 1);
    assert_int_equal(json_integer_value(stat_value(res, "tlb_misses")), 7);
    json_decref(r);

    assert_error(request("{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"vcpu\", "
                         "\"providers\": [{\"provider\": \"xen\"}]}}", &neg),
                 "GenericError", "Parameter 'provider' does not accept value 'xen'");

    r = request("{\"execute\": \"query-stats-schemas\", \"arguments\": {\"provider\": \"emu\"}}", &neg);
    list = json_object_get(r, "return");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "target")), "vcpu");
    json_decref(r);
}

static void stat_table_sorts_by_time(void **state)
{
    struct stat_row rows[3] = {
        { "IO", 10, 100, 5, 20 }, { "HLT", 1, 5000, 5000, 5000 }, { "MMIO", 0, 0, 0, 0 },
    };
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    stat_rows_sort(rows, 3);
    assert_string_equal(rows[0].reason, "HLT");
    assert_string_equal(rows[1].reason, "IO");
    stat_table_print(f, rows, 3);
    fclose(f);
    assert_non_null(strstr(buf, "Samples%"));
    assert_null(strstr(buf, "MMIO"));            /* no samples, no row */
    assert_non_null(strstr(buf, "Total Samples:11,"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(negotiation_comes_first),
        cmocka_unit_test(oob_capability_is_refused),
        cmocka_unit_test(id_is_echoed_verbatim),
        cmocka_unit_test(malformed_envelopes),
        cmocka_unit_test(arguments_are_checked),
        cmocka_unit_test(check_args_directly),
        cmocka_unit_test(query_status_and_hmp),
        cmocka_unit_test(query_stats_follows_the_schema),
        cmocka_unit_test(stat_table_sorts_by_time),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
