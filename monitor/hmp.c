/* human-monitor-command: the HMP subset vmon speaks (info status,
 * registers, cpus, block, stats; help).  Output is what QEMU's HMP prints,
 * lines ending in "\r\n". */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine/machine.h"
#include "monitor/qmp.h"
#include "monitor/stat_table.h"

struct hmp_out {
    char *buf;
    size_t len;
    FILE *f;
};

static void out_line(void *opaque, const char *line)
{
    struct hmp_out *o = opaque;

    fputs(line, o->f);
    if (!*line || line[strlen(line) - 1] != '\n')
        fputs("\r\n", o->f);
}

static void info_status(struct machine *m, struct hmp_out *o)
{
    fprintf(o->f, "VM status: %s\r\n", qmp_run_state_name());
}

static void info_cpus(struct machine *m, struct hmp_out *o, int current)
{
    for (int i = 0; i < m->nr_vcpus; i++)
        fprintf(o->f, "%c CPU #%d: thread_id=%d\r\n", i == current ? '*' : ' ', i,
                m->vcpus[i]->thread_id ? m->vcpus[i]->thread_id : (int)getpid());
}

/* The registers live in the accelerator while a vCPU runs: park them all
 * to read a consistent v->state, then let them go (unless paused). */
static void info_registers(struct machine *m, struct hmp_out *o, int cpu, bool all)
{
    machine_pause_vcpus(m);
    for (int i = 0; i < m->nr_vcpus; i++) {
        if (!all && i != cpu)
            continue;
        if (all)
            fprintf(o->f, "\r\nCPU#%d\r\n", i);
        cpu_state_dump(&m->vcpus[i]->state, out_line, o);
    }
    machine_resume_vcpus(m);
}

static void info_stats(struct machine *m, struct hmp_out *o, int vcpu)
{
    struct stat_row rows[STAT_NR];

    monitor_exit_rows(m, vcpu, rows);
    stat_rows_sort(rows, STAT_NR);
    stat_table_print(o->f, rows, STAT_NR);
}

static const char hmp_help[] =
    "cont|c -- resume emulation\r\n"
    "help|? [cmd] -- show the help\r\n"
    "info block -- show the block devices\r\n"
    "info cpus -- show infos for each CPU\r\n"
    "info registers [-a] -- show the cpu registers (-a: all CPUs)\r\n"
    "info stats [vcpu N] -- show VM-exit statistics\r\n"
    "info status -- show the current VM status (running|paused)\r\n"
    "q|quit -- quit the emulator\r\n"
    "stop|s -- stop emulation\r\n"
    "system_powerdown -- send system power down event\r\n"
    "system_reset -- reset the system\r\n";

/* Run a QMP command on behalf of HMP and print its error, if any. */
static void via_qmp(struct machine *m, struct hmp_out *o, const char *name)
{
    const struct qmp_command *cmd = qmp_find_command(name);
    struct qmp_error err = { 0 };
    json_t *ret = cmd ? cmd->fn(m, NULL, &err) : NULL;

    if (!ret && err.set)
        fprintf(o->f, "Error: %s\r\n", err.desc);
    json_decref(ret);
}

char *hmp_run(struct machine *m, const char *line, int cpu_index, struct qmp_error *err)
{
    char *words[4] = { 0 }, *copy = strdup(line), *save = NULL;
    struct hmp_out o = { 0 };
    int n = 0;

    if (!copy)
        return NULL;
    o.f = open_memstream(&o.buf, &o.len);
    if (!o.f) {
        free(copy);
        return NULL;
    }
    for (char *w = strtok_r(copy, " \t", &save); w && n < 4; w = strtok_r(NULL, " \t", &save))
        words[n++] = w;

    if (n == 0) {
        /* nothing: QEMU prints nothing either */
    } else if (!strcmp(words[0], "info") && n >= 2) {
        const char *what = words[1];

        if (!strcmp(what, "status"))
            info_status(m, &o);
        else if (!strcmp(what, "cpus"))
            info_cpus(m, &o, cpu_index);
        else if (!strcmp(what, "registers"))
            info_registers(m, &o, cpu_index, n >= 3 && !strcmp(words[2], "-a"));
        else if (!strcmp(what, "block"))
            ;   /* no block devices yet: QEMU prints nothing for none */
        else if (!strcmp(what, "stats"))
            info_stats(m, &o, n >= 4 && !strcmp(words[2], "vcpu") ? atoi(words[3]) : -1);
        else
            fprintf(o.f, "info: unknown or unsupported subcommand '%s'\r\n", what);
    } else if (!strcmp(words[0], "info")) {
        fputs("info block|cpus|registers|stats|status\r\n", o.f);
    } else if (!strcmp(words[0], "help") || !strcmp(words[0], "?")) {
        fputs(hmp_help, o.f);
    } else if (!strcmp(words[0], "stop") || !strcmp(words[0], "s")) {
        via_qmp(m, &o, "stop");
    } else if (!strcmp(words[0], "cont") || !strcmp(words[0], "c")) {
        via_qmp(m, &o, "cont");
    } else if (!strcmp(words[0], "system_reset")) {
        via_qmp(m, &o, "system_reset");
    } else if (!strcmp(words[0], "system_powerdown")) {
        via_qmp(m, &o, "system_powerdown");
    } else if (!strcmp(words[0], "quit") || !strcmp(words[0], "q")) {
        via_qmp(m, &o, "quit");
    } else {
        fprintf(o.f, "unknown command: '%s'\r\n", words[0]);
    }
    fclose(o.f);
    free(copy);
    return o.buf;
}

json_t *qmp_hmp_command(struct machine *m, json_t *args, struct qmp_error *err)
{
    const char *line = json_string_value(json_object_get(args, "command-line"));
    json_t *cpu = json_object_get(args, "cpu-index");
    int cpu_index = 0;
    char *text;
    json_t *ret;

    if (cpu) {
        json_int_t i = json_integer_value(cpu);

        if (i < 0 || i >= m->nr_vcpus) {
            qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'cpu-index' expects a CPU number");
            return NULL;
        }
        cpu_index = (int)i;
    }
    text = hmp_run(m, line, cpu_index, err);
    if (!text) {
        qmp_error_set(err, QMP_ERR_GENERIC, "out of memory");
        return NULL;
    }
    ret = json_string(text);
    free(text);
    return ret;
}
