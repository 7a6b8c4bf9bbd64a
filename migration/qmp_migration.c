/* QMP: migrate (file: snapshots, tcp: live migration), query-migrate,
 * migrate_cancel, migrate-set-parameters, query-migrate-parameters,
 * migrate-incoming, x-accel-switch, query-accel; and -incoming at
 * startup. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "accel/accel.h"
#include "config/config.h"
#include "machine/machine.h"
#include "migration/migration.h"
#include "monitor/qmp.h"
#include "util/log.h"
#include "util/trace.h"
#include "util/main_loop.h"

/* The last outgoing migration, as query-migrate reports it. */
static struct {
    const char *status;     /* NULL: none yet */
    uint64_t total_ms;
    uint64_t downtime_ms;
    uint64_t bytes;
    char error[256];
} last;
static bool last_was_live;       /* query-migrate reports migration/live.c's */

static bool incoming_deferred;   /* -incoming defer, not yet loaded */

static void migration_event(const char *status)
{
    TRACE(migration_stage, "stage=%s", status);
    qmp_event_send("MIGRATION", json_pack("{s:s}", "status", status));
}

static json_t *cmd_migrate(struct machine *m, json_t *args, struct qmp_error *err)
{
    const char *uri = json_string_value(json_object_get(args, "uri"));
    uint64_t t0 = clock_ns();
    bool was_running = qmp_run_state == QMP_RUN_RUNNING;
    int ret;

    if (qmp_run_state == QMP_RUN_SHUTDOWN || qmp_run_state == QMP_RUN_GUEST_PANICKED ||
        incoming_deferred || migration_incoming_pending()) {
        qmp_error_set(err, QMP_ERR_GENERIC, "The VM is not in a state that can be migrated");
        return NULL;
    }
    if (migration_live_active()) {
        qmp_error_set(err, QMP_ERR_GENERIC, "There's a migration process in progress");
        return NULL;
    }
    if (!strncmp(uri, "tcp:", 4)) {
        char msg[700];

        if (migration_live_start(m, uri, msg, sizeof(msg)) < 0) {
            qmp_error_set(err, QMP_ERR_GENERIC, "%s", msg);
            return NULL;
        }
        last_was_live = true;
        return json_object();
    }
    if (strncmp(uri, "file:", 5)) {
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "Invalid migration URI '%s': only file:PATH and tcp:HOST:PORT are "
                      "supported", uri);
        return NULL;
    }
    last_was_live = false;
    last.status = "setup";
    last.error[0] = 0;
    migration_event("setup");
    machine_pause_vcpus(m);
    last.status = "active";
    migration_event("active");
    ret = migration_save_uri(m, uri, !was_running);
    if (was_running)
        machine_resume_vcpus(m);
    last.total_ms = (clock_ns() - t0) / 1000000;
    last.downtime_ms = last.total_ms;
    last.bytes = m->ram_size;
    if (ret < 0) {
        last.status = "failed";
        snprintf(last.error, sizeof(last.error), "%s: %s", uri, strerror(-ret));
        migration_event("failed");
        qmp_error_set(err, QMP_ERR_GENERIC, "migration to %s failed: %s", uri,
                      strerror(-ret));
        return NULL;
    }
    last.status = "completed";
    migration_event("completed");
    return json_object();
}

static json_t *cmd_query_migrate(struct machine *m, json_t *args, struct qmp_error *err)
{
    json_t *r;

    if (last_was_live) {
        r = migration_live_query(m);
        return r ? r : json_object();
    }
    if (!last.status)
        return json_object();
    r = json_pack("{s:s}", "status", last.status);
    if (!strcmp(last.status, "completed")) {
        json_object_set_new(r, "total-time", json_integer((json_int_t)last.total_ms));
        json_object_set_new(r, "downtime", json_integer((json_int_t)last.downtime_ms));
        json_object_set_new(r, "ram", json_pack("{s:I,s:I,s:I}", "total",
                                                (json_int_t)m->ram_size, "remaining",
                                                (json_int_t)0, "transferred",
                                                (json_int_t)last.bytes));
    }
    if (!strcmp(last.status, "failed"))
        json_object_set_new(r, "error-desc", json_string(last.error));
    return r;
}

/* Main loop, the state loaded: run, unless the source was paused (the
 * stream's run state) or -S asked to wait for cont -- QEMU's autostart. */
void migration_incoming_resume(struct machine *m, bool stream_paused)
{
    if (stream_paused || m->cfg->start_paused) {
        m->paused = true;
        qmp_run_state = QMP_RUN_PAUSED;
        return;
    }
    m->paused = false;
    qmp_run_state = QMP_RUN_RUNNING;
    machine_resume_vcpus(m);
    qmp_event_send("RESUME", NULL);
}

static json_t *cmd_migrate_incoming(struct machine *m, json_t *args, struct qmp_error *err)
{
    const char *uri = json_string_value(json_object_get(args, "uri"));
    bool paused;
    int ret;

    if (!incoming_deferred) {
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "The incoming migration has not been requested: start vmon with "
                      "-incoming defer");
        return NULL;
    }
    if (!strncmp(uri, "tcp:", 4)) {
        /* Listen now; the state arrives on the incoming thread. */
        if (migration_incoming_start(m, uri) < 0) {
            qmp_error_set(err, QMP_ERR_GENERIC, "cannot listen on %s", uri);
            return NULL;
        }
        incoming_deferred = false;
        qmp_run_state = QMP_RUN_INMIGRATE;
        migration_event("setup");
        return json_object();
    }
    migration_event("setup");
    migration_event("active");
    machine_pause_vcpus(m);
    ret = migration_load_uri(m, uri, &paused);
    if (ret < 0) {
        migration_event("failed");
        qmp_error_set(err, QMP_ERR_GENERIC, "incoming migration from %s failed: %s", uri,
                      strerror(-ret));
        /* A VM with partial state must not run: end it, as QEMU does. */
        machine_request_shutdown(m, SHUTDOWN_HOST_QUIT, 1);
        return NULL;
    }
    incoming_deferred = false;
    migration_event("completed");
    migration_incoming_resume(m, paused);
    return json_object();
}

static json_t *cmd_x_accel_switch(struct machine *m, json_t *args, struct qmp_error *err)
{
    const char *name = json_string_value(json_object_get(args, "accel"));
    const struct accel_ops *to;
    uint64_t t0 = clock_ns();
    int ret;

    if (!strcmp(name, "kvm"))
        to = &accel_kvm_ops;
    else if (!strcmp(name, "emu") || !strcmp(name, "tcg"))
        to = &accel_emu_ops;
    else {
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "Parameter 'accel' does not accept value '%s' (kvm, emu)", name);
        return NULL;
    }
    if (qmp_run_state == QMP_RUN_SHUTDOWN || qmp_run_state == QMP_RUN_GUEST_PANICKED) {
        qmp_error_set(err, QMP_ERR_GENERIC, "The guest has shut down");
        return NULL;
    }
    if (migration_live_active()) {
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "cannot switch accelerators while a migration is in progress");
        return NULL;
    }
    ret = accel_switch(m, to);
    if (ret < 0) {
        qmp_error_set(err, QMP_ERR_GENERIC, "cannot switch to %s: %s (still on %s)", name,
                      strerror(-ret), m->accel->name);
        return NULL;
    }
    return json_pack("{s:s,s:I}", "accel", m->accel->name, "switch-time-us",
                     (json_int_t)((clock_ns() - t0) / 1000));
}

static json_t *cmd_query_accel(struct machine *m, json_t *args, struct qmp_error *err)
{
    return json_pack("{s:s}", "accel", m->accel ? m->accel->name : "none");
}

static json_t *cmd_migrate_cancel(struct machine *m, json_t *args, struct qmp_error *err)
{
    /* QEMU: cancelling when nothing runs is not an error. */
    migration_live_cancel();
    return json_object();
}

/* QEMU's limits: downtime-limit up to 2000 s in ms; max-bandwidth any
 * size_t in bytes/s. */
#define MAX_DOWNTIME_LIMIT_MS 2000000ULL

static json_t *cmd_migrate_set_parameters(struct machine *m, json_t *args,
                                          struct qmp_error *err)
{
    json_t *dl = json_object_get(args, "downtime-limit");
    json_t *bw = json_object_get(args, "max-bandwidth");

    if (dl && (json_integer_value(dl) < 0 ||
               (uint64_t)json_integer_value(dl) > MAX_DOWNTIME_LIMIT_MS)) {
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "Parameter 'downtime_limit' expects an integer in the range of 0 to "
                      "2000 seconds");
        return NULL;
    }
    if (bw && json_integer_value(bw) < 0) {
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "Parameter 'max_bandwidth' expects an integer in the range of 0 to "
                      "%llu bytes/second", (unsigned long long)SIZE_MAX);
        return NULL;
    }
    if (dl)
        mig_params.downtime_limit_ms = (uint64_t)json_integer_value(dl);
    if (bw)
        mig_params.max_bandwidth = (uint64_t)json_integer_value(bw);
    return json_object();
}

static json_t *cmd_query_migrate_parameters(struct machine *m, json_t *args,
                                            struct qmp_error *err)
{
    return json_pack("{s:I,s:I}", "downtime-limit", (json_int_t)mig_params.downtime_limit_ms,
                     "max-bandwidth", (json_int_t)mig_params.max_bandwidth);
}

static const struct qmp_arg args_migrate[] = {
    { "uri", QMP_STR, false }, { "blk", QMP_BOOL, true }, { "inc", QMP_BOOL, true },
    { "detach", QMP_BOOL, true }, { "resume", QMP_BOOL, true }, { NULL },
};
static const struct qmp_arg args_uri[] = { { "uri", QMP_STR, false }, { NULL } };
static const struct qmp_arg args_params[] = {
    { "downtime-limit", QMP_INT, true }, { "max-bandwidth", QMP_INT, true }, { NULL },
};
static const struct qmp_arg args_accel[] = { { "accel", QMP_STR, false }, { NULL } };
static const struct qmp_arg args_none[] = { { NULL } };

static const struct qmp_command migration_commands[] = {
    { "migrate", cmd_migrate, args_migrate },
    { "query-migrate", cmd_query_migrate, args_none },
    { "migrate-incoming", cmd_migrate_incoming, args_uri },
    { "migrate_cancel", cmd_migrate_cancel, args_none },
    { "migrate-set-parameters", cmd_migrate_set_parameters, args_params },
    { "query-migrate-parameters", cmd_query_migrate_parameters, args_none },
    { "x-accel-switch", cmd_x_accel_switch, args_accel },
    { "query-accel", cmd_query_accel, args_none },
};

void migration_qmp_register(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(migration_commands); i++)
        qmp_register_command(&migration_commands[i]);
}

int migration_incoming_startup(struct machine *m, const char *uri)
{
    uint64_t t0 = clock_ns();
    bool paused;

    if (!strcmp(uri, "defer")) {
        /* The vCPU threads park before their first instruction. */
        incoming_deferred = true;
        m->paused = true;
        atomic_store(&m->vcpus_should_stop, 1);
        qmp_run_state = QMP_RUN_PRELAUNCH;
        return 0;
    }
    if (!strncmp(uri, "tcp:", 4)) {
        /* As defer, but already listening: the VM runs once the state is in. */
        if (migration_incoming_start(m, uri) < 0) {
            error_report("-incoming %s: the VM was not started", uri);
            return -1;
        }
        m->paused = true;
        atomic_store(&m->vcpus_should_stop, 1);
        qmp_run_state = QMP_RUN_INMIGRATE;
        return 0;
    }
    if (migration_load_uri(m, uri, &paused) < 0) {
        error_report("-incoming %s: the VM was not started", uri);
        return -1;
    }

    if (paused) {
        /* A snapshot of a paused VM: the vCPU threads park at once. */
        m->paused = true;
        atomic_store(&m->vcpus_should_stop, 1);
        qmp_run_state = QMP_RUN_PAUSED;
    }
    LOG(LOG_ACCEL, "incoming: %s loaded in %llu ms\n", uri,
        (unsigned long long)((clock_ns() - t0) / 1000000));
    return 0;
}
