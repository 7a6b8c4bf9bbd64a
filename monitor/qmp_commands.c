/* The QMP commands vmon implements, as a table.  Schemas follow QEMU 7.2's
 * the qapi schema files; where vmon differs, docs/qmp.md says how. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "accel/accel.h"
#include "chardev/chardev.h"
#include "config/config.h"
#include "hw/pm.h"
#include "machine/machine.h"
#include "migration/migration.h"
#include "monitor/qmp.h"
#include "version.h"
#include "virtio/virtio_blk.h"

static json_t *cmd_capabilities(struct machine *m, json_t *args, struct qmp_error *err)
{
    return json_object();   /* handled by the dispatcher; listed here */
}

static json_t *cmd_query_version(struct machine *m, json_t *args, struct qmp_error *err)
{
    return json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "micro", 0, "minor", 2, "major", 7,
                     "package", "vmon-" VMON_VERSION);
}

static json_t *cmd_query_commands(struct machine *m, json_t *args, struct qmp_error *err)
{
    json_t *list = json_array();

    for (int i = 0; i < qmp_nr_commands(); i++)
        json_array_append_new(list, json_pack("{s:s}", "name", qmp_command_at(i)->name));
    return list;
}

static json_t *cmd_query_name(struct machine *m, json_t *args, struct qmp_error *err)
{
    if (m->cfg && m->cfg->name)
        return json_pack("{s:s}", "name", m->cfg->name);
    return json_object();
}

static const char *const run_state_names[] = {
    [QMP_RUN_PRELAUNCH] = "prelaunch",
    [QMP_RUN_RUNNING] = "running",
    [QMP_RUN_PAUSED] = "paused",
    [QMP_RUN_SHUTDOWN] = "shutdown",
    [QMP_RUN_GUEST_PANICKED] = "guest-panicked",
    [QMP_RUN_INMIGRATE] = "inmigrate",
    [QMP_RUN_FINISH_MIGRATE] = "finish-migrate",
    [QMP_RUN_POSTMIGRATE] = "postmigrate",
};

const char *qmp_run_state_name(void)
{
    return run_state_names[qmp_run_state];
}

static json_t *cmd_query_status(struct machine *m, json_t *args, struct qmp_error *err)
{
    return json_pack("{s:s,s:b,s:b,s:s}", "status", qmp_run_state_name(), "singlestep", 0,
                     "running", qmp_run_state == QMP_RUN_RUNNING, "accel",
                     m->accel ? m->accel->name : "none");
}

static json_t *cmd_query_cpus_fast(struct machine *m, json_t *args, struct qmp_error *err)
{
    json_t *list = json_array();

    for (int i = 0; i < m->nr_vcpus; i++) {
        const struct vcpu *v = m->vcpus[i];
        char path[64];

        snprintf(path, sizeof(path), "/machine/unattached/device[%d]", v->index);
        /* vmon presents flat CPUs; QEMU 7.2's default topology for -smp N
         * on a PC is one socket of N cores, so that is what we report. */
        json_array_append_new(list, json_pack(
            "{s:I,s:{s:i,s:i,s:i},s:s,s:i,s:s}",
            "thread-id", (json_int_t)(v->thread_id ? v->thread_id : getpid()),
            "props", "core-id", v->index, "thread-id", 0, "socket-id", 0,
            "qom-path", path, "cpu-index", v->index, "target", "x86_64"));
    }
    return list;
}

static json_t *cmd_query_kvm(struct machine *m, json_t *args, struct qmp_error *err)
{
    bool enabled = m->accel && !strcmp(m->accel->name, "kvm");

    return json_pack("{s:b,s:b}", "enabled", enabled,
                     "present", enabled || access("/dev/kvm", R_OK | W_OK) == 0);
}

/* One entry per virtio-blk drive, in QEMU's shape (the fields vmon knows). */
static void add_block_info(void *opaque, const struct virtio_blk_info *bi)
{
    json_t *list = opaque;

    json_array_append_new(list, json_pack(
        "{s:s,s:b,s:b,s:s,s:s,s:{s:s,s:s,s:b,s:b,s:{s:s,s:s,s:I}}}",
        "device", bi->id, "locked", 0, "removable", 0, "type", "unknown",
        "io-status", "ok", "inserted", "file", bi->file ? bi->file : "",
        "drv", bi->format ? bi->format : "raw", "ro", bi->readonly, "encrypted", 0,
        "image", "filename", bi->file ? bi->file : "", "format",
        bi->format ? bi->format : "raw", "virtual-size", (json_int_t)bi->size));
}

static json_t *cmd_query_block(struct machine *m, json_t *args, struct qmp_error *err)
{
    json_t *list = json_array();

    virtio_blk_foreach(add_block_info, list);
    return list;
}

static json_t *cmd_query_chardev(struct machine *m, json_t *args, struct qmp_error *err)
{
    json_t *list = json_array();
    const struct vm_config *cfg = m->cfg;

    if (cfg && cfg->serial != SERIAL_NONE) {
        char name[4096];

        if (cfg->serial == SERIAL_FILE)
            snprintf(name, sizeof(name), "file:%s", cfg->serial_path);
        else
            snprintf(name, sizeof(name), "stdio");
        json_array_append_new(list, json_pack("{s:b,s:s,s:s}", "frontend-open", 1,
                                              "filename", name, "label", "serial0"));
    }
    for (int i = 0; cfg && i < cfg->nr_chardevs; i++) {
        char label[256], name[4096];
        bool in_use;

        if (chardev_config_describe(cfg->chardevs[i], label, sizeof(label), name,
                                    sizeof(name), &in_use) == 0)
            json_array_append_new(list, json_pack("{s:b,s:s,s:s}", "frontend-open", in_use,
                                                  "filename", name, "label", label));
    }
    for (int i = 0; i < qmp_nr_endpoints(); i++) {
        char label[32];

        snprintf(label, sizeof(label), "compat_monitor%d", i);
        json_array_append_new(list, json_pack("{s:b,s:s,s:s}", "frontend-open", 1,
                                              "filename", qmp_endpoint_filename(i),
                                              "label", label));
    }
    return list;
}

static json_t *cmd_stop(struct machine *m, json_t *args, struct qmp_error *err)
{
    if (qmp_run_state != QMP_RUN_RUNNING)
        return json_object();   /* QEMU: stopping a stopped VM is a no-op */
    m->paused = true;
    machine_pause_vcpus(m);
    qmp_run_state = QMP_RUN_PAUSED;
    qmp_event_send("STOP", NULL);
    return json_object();
}

static json_t *cmd_cont(struct machine *m, json_t *args, struct qmp_error *err)
{
    if (qmp_run_state == QMP_RUN_SHUTDOWN || qmp_run_state == QMP_RUN_GUEST_PANICKED) {
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "Resetting the Virtual Machine is required");
        return NULL;
    }
    if (qmp_run_state == QMP_RUN_INMIGRATE) {
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "The incoming migration has not completed: the VM runs when it does");
        return NULL;
    }
    if (qmp_run_state == QMP_RUN_RUNNING)
        return json_object();
    if (block_any_inactive()) {
        char berr[512];

        /* After a migration (either side): the disks come back first. */
        if (block_activate_all(berr, sizeof(berr)) < 0) {
            qmp_error_set(err, QMP_ERR_GENERIC, "%s", berr);
            return NULL;
        }
    }
    m->paused = false;
    qmp_run_state = QMP_RUN_RUNNING;
    machine_resume_vcpus(m);
    qmp_event_send("RESUME", NULL);
    return json_object();
}

static json_t *cmd_system_reset(struct machine *m, json_t *args, struct qmp_error *err)
{
    if (qmp_run_state == QMP_RUN_SHUTDOWN || qmp_run_state == QMP_RUN_GUEST_PANICKED) {
        /* -no-shutdown: the vCPU threads have ended; only quit is left. */
        qmp_error_set(err, QMP_ERR_GENERIC,
                      "The guest has shut down; vmon cannot restart it (use quit)");
        return NULL;
    }
    qmp_reset_requested = true;
    machine_reset_now(m);
    return json_object();
}

static json_t *cmd_system_powerdown(struct machine *m, json_t *args, struct qmp_error *err)
{
    int ret = pm_power_button(m);

    if (ret < 0) {
        qmp_error_set(err, QMP_ERR_GENERIC, "This machine has no ACPI power button: %s",
                      strerror(-ret));
        return NULL;
    }
    qmp_event_send("POWERDOWN", NULL);
    return json_object();
}

/* SHUTDOWN goes out before the reply, as QEMU 7.2 orders them; the
 * machine's own notification then stays quiet (qmp_quit_requested). */
static json_t *cmd_quit(struct machine *m, json_t *args, struct qmp_error *err)
{
    bool first = !qmp_quit_requested;

    qmp_quit_requested = true;
    if (first)
        qmp_event_send("SHUTDOWN", json_pack("{s:b,s:s}", "guest", 0, "reason",
                                             "host-qmp-quit"));
    if (qmp_run_state != QMP_RUN_GUEST_PANICKED)
        qmp_run_state = QMP_RUN_SHUTDOWN;
    machine_request_shutdown(m, SHUTDOWN_HOST_QUIT, 0);
    return json_object();
}

static const struct qmp_arg args_capabilities[] = { { "enable", QMP_ARRAY, true }, { NULL } };
static const struct qmp_arg args_none[] = { { NULL } };
static const struct qmp_arg args_hmp[] = {
    { "command-line", QMP_STR, false }, { "cpu-index", QMP_INT, true }, { NULL },
};

static const struct qmp_command command_table[] = {
    { "qmp_capabilities", cmd_capabilities, args_capabilities },
    { "query-version", cmd_query_version, args_none },
    { "query-commands", cmd_query_commands, args_none },
    { "query-name", cmd_query_name, args_none },
    { "query-status", cmd_query_status, args_none },
    { "query-cpus-fast", cmd_query_cpus_fast, args_none },
    { "query-kvm", cmd_query_kvm, args_none },
    { "query-block", cmd_query_block, args_none },
    { "query-chardev", cmd_query_chardev, args_none },
    { "stop", cmd_stop, args_none },
    { "cont", cmd_cont, args_none },
    { "system_reset", cmd_system_reset, args_none },
    { "system_powerdown", cmd_system_powerdown, args_none },
    { "quit", cmd_quit, args_none },
    { "human-monitor-command", qmp_hmp_command, args_hmp },
};

void qmp_commands_register(void)
{
    for (size_t i = 0; i < sizeof(command_table) / sizeof(command_table[0]); i++)
        qmp_register_command(&command_table[i]);
    migration_qmp_register();
}
