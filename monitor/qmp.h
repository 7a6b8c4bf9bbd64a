/* QMP internals shared by the monitor's files: the command table, argument
 * checking, errors and events.  Other subsystems add their commands from
 * their own monitor/qmp_<topic>.c with qmp_register_command(). */
#ifndef VMON_MONITOR_QMP_H
#define VMON_MONITOR_QMP_H

#include <jansson.h>
#include "util/types.h"

struct machine;

/* QEMU's error classes (qapi/error.json). */
enum qmp_error_class {
    QMP_ERR_GENERIC,
    QMP_ERR_COMMAND_NOT_FOUND,
    QMP_ERR_DEVICE_NOT_ACTIVE,
    QMP_ERR_DEVICE_NOT_FOUND,
    QMP_ERR_KVM_MISSING_CAP,
};

struct qmp_error {
    bool set;
    enum qmp_error_class cls;
    char desc[256];
};

void qmp_error_set(struct qmp_error *err, enum qmp_error_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *qmp_error_class_name(enum qmp_error_class cls);

/* Argument types, named in errors as QEMU names them. */
enum qmp_type {
    QMP_STR, QMP_INT, QMP_BOOL, QMP_NUMBER, QMP_OBJECT, QMP_ARRAY, QMP_ANY,
};

struct qmp_arg {
    const char *name;
    enum qmp_type type;
    bool optional;
};

/* A command returns a new reference to its result (an empty object when it
 * has nothing to say), or NULL after setting err. */
typedef json_t *(*qmp_handler_fn)(struct machine *m, json_t *args, struct qmp_error *err);

struct qmp_command {
    const char *name;
    qmp_handler_fn fn;
    const struct qmp_arg *args;   /* terminated by { NULL } */
};

/* Add a command, or replace one of the same name (how a subsystem takes
 * over a placeholder such as query-block). */
int qmp_register_command(const struct qmp_command *cmd);
const struct qmp_command *qmp_find_command(const char *name);
int qmp_nr_commands(void);
const struct qmp_command *qmp_command_at(int i);

/* Check args (an object or NULL) against a command's declaration, with
 * QEMU's messages: missing, wrong type, unexpected.  Returns false and sets
 * err on the first problem. */
bool qmp_check_args(const struct qmp_arg *decl, json_t *args, struct qmp_error *err);
const char *qmp_type_name(enum qmp_type t);

/* Run one QMP input text; returns the reply object (new reference) or
 * NULL when nothing should be sent.  *negotiated is the client's state,
 * updated by qmp_capabilities. */
json_t *qmp_dispatch_text(struct machine *m, const char *text, size_t len, bool *negotiated);

/* Send an event to every client that negotiated capabilities; data may be
 * NULL.  Takes a reference to data.  Main loop only. */
void qmp_event_send(const char *event, json_t *data);

/* The run state query-status reports. */
enum qmp_run_state {
    QMP_RUN_PRELAUNCH, QMP_RUN_RUNNING, QMP_RUN_PAUSED, QMP_RUN_SHUTDOWN,
    QMP_RUN_GUEST_PANICKED,
    QMP_RUN_INMIGRATE,       /* -incoming: waiting for the state */
    QMP_RUN_FINISH_MIGRATE,  /* stopped for the last stage of a migration */
    QMP_RUN_POSTMIGRATE,     /* migrated away: paused; cont resumes it here */
};
extern enum qmp_run_state qmp_run_state;
const char *qmp_run_state_name(void);
extern bool qmp_quit_requested;
extern bool qmp_reset_requested;

/* Command implementations register themselves here (qmp_commands.c,
 * stats.c, hmp.c). */
void qmp_commands_register(void);
void qmp_stats_register(struct machine *m);
json_t *qmp_hmp_command(struct machine *m, json_t *args, struct qmp_error *err);
/* Text of one HMP command line, or NULL + err. */
char *hmp_run(struct machine *m, const char *line, int cpu_index, struct qmp_error *err);

/* One table row per exit reason (STAT_NR rows) for vCPU vcpu, or the VM
 * total when vcpu is -1. */
struct stat_row;
void monitor_exit_rows(struct machine *m, int vcpu, struct stat_row *rows);

/* Description of the -qmp endpoints for query-chardev. */
int qmp_nr_endpoints(void);
const char *qmp_endpoint_filename(int i);

#endif
