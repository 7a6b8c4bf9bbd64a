/* QMP requests: the command table, argument checking against each
 * command's declaration, and turning one input text into one reply, with
 * QEMU's error classes and messages (qapi/qmp-dispatch.c's behaviour). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp.h"
#include "util/trace.h"

void qmp_error_set(struct qmp_error *err, enum qmp_error_class cls, const char *fmt, ...)
{
    va_list ap;

    if (err->set)
        return;   /* the first error is the one QEMU reports */
    err->set = true;
    err->cls = cls;
    va_start(ap, fmt);
    vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
    va_end(ap);
}

const char *qmp_error_class_name(enum qmp_error_class cls)
{
    switch (cls) {
    case QMP_ERR_COMMAND_NOT_FOUND: return "CommandNotFound";
    case QMP_ERR_DEVICE_NOT_ACTIVE: return "DeviceNotActive";
    case QMP_ERR_DEVICE_NOT_FOUND: return "DeviceNotFound";
    case QMP_ERR_KVM_MISSING_CAP: return "KVMMissingCap";
    case QMP_ERR_GENERIC: break;
    }
    return "GenericError";
}

static struct qmp_command *commands;
static int nr_commands;

int qmp_register_command(const struct qmp_command *cmd)
{
    struct qmp_command *c;

    for (int i = 0; i < nr_commands; i++) {
        if (!strcmp(commands[i].name, cmd->name)) {
            commands[i] = *cmd;
            return 0;
        }
    }
    c = realloc(commands, (nr_commands + 1) * sizeof(*c));
    if (!c)
        return -ENOMEM;
    commands = c;
    commands[nr_commands++] = *cmd;
    return 0;
}

const struct qmp_command *qmp_find_command(const char *name)
{
    for (int i = 0; i < nr_commands; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

int qmp_nr_commands(void)
{
    return nr_commands;
}

const struct qmp_command *qmp_command_at(int i)
{
    return i >= 0 && i < nr_commands ? &commands[i] : NULL;
}

const char *qmp_type_name(enum qmp_type t)
{
    switch (t) {
    case QMP_STR: return "string";
    case QMP_INT: return "integer";
    case QMP_BOOL: return "boolean";
    case QMP_NUMBER: return "number";
    case QMP_OBJECT: return "object";
    case QMP_ARRAY: return "array";
    case QMP_ANY: break;
    }
    return "any";
}

static bool type_matches(enum qmp_type t, const json_t *v)
{
    switch (t) {
    case QMP_STR: return json_is_string(v);
    case QMP_INT: return json_is_integer(v);
    case QMP_BOOL: return json_is_boolean(v);
    case QMP_NUMBER: return json_is_number(v);
    case QMP_OBJECT: return json_is_object(v);
    case QMP_ARRAY: return json_is_array(v);
    case QMP_ANY: return true;
    }
    return false;
}

bool qmp_check_args(const struct qmp_arg *decl, json_t *args, struct qmp_error *err)
{
    const char *key;
    json_t *v;

    for (const struct qmp_arg *a = decl; a && a->name; a++) {
        v = args ? json_object_get(args, a->name) : NULL;
        if (!v) {
            if (!a->optional) {
                qmp_error_set(err, QMP_ERR_GENERIC, "Parameter '%s' is missing", a->name);
                return false;
            }
            continue;
        }
        if (!type_matches(a->type, v)) {
            qmp_error_set(err, QMP_ERR_GENERIC, "Invalid parameter type for '%s', expected: %s",
                          a->name, qmp_type_name(a->type));
            return false;
        }
    }
    if (!args)
        return true;
    json_object_foreach(args, key, v) {
        bool known = false;

        for (const struct qmp_arg *a = decl; a && a->name && !known; a++)
            known = !strcmp(a->name, key);
        if (!known) {
            qmp_error_set(err, QMP_ERR_GENERIC, "Parameter '%s' is unexpected", key);
            return false;
        }
    }
    return true;
}

/* A description quoting the client's bytes (jansson's parse errors do) may
 * not be UTF-8, which a JSON string must be: such bytes become '?'. */
static json_t *error_desc(const char *desc)
{
    json_t *d = json_string(desc);
    char *ascii;

    if (d)
        return d;
    ascii = strdup(desc);
    if (!ascii)
        return NULL;
    for (char *p = ascii; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    d = json_string(ascii);
    free(ascii);
    return d;
}

static json_t *error_reply(const struct qmp_error *err, json_t *id)
{
    json_t *reply = json_pack("{s:{s:s,s:o*}}", "error",
                              "class", qmp_error_class_name(err->cls), "desc",
                              error_desc(err->desc));

    if (reply && id)
        json_object_set(reply, "id", id);
    return reply;
}

/* The request's envelope, checked as qmp_dispatch_check_obj() does. */
static bool check_envelope(json_t *req, const char **name, json_t **args,
                           struct qmp_error *err)
{
    const char *key;
    json_t *v;

    json_object_foreach(req, key, v) {
        if (!strcmp(key, "execute") || !strcmp(key, "exec-oob")) {
            if (!json_is_string(v)) {
                qmp_error_set(err, QMP_ERR_GENERIC, "QMP input member '%s' must be a string", key);
                return false;
            }
            if (*name) {
                qmp_error_set(err, QMP_ERR_GENERIC,
                              "QMP input member 'execute' and 'exec-oob' cannot be combined");
                return false;
            }
            *name = json_string_value(v);
        } else if (!strcmp(key, "arguments")) {
            if (!json_is_object(v)) {
                qmp_error_set(err, QMP_ERR_GENERIC, "QMP input member 'arguments' must be an object");
                return false;
            }
            *args = v;
        } else if (strcmp(key, "id")) {
            qmp_error_set(err, QMP_ERR_GENERIC, "QMP input member '%s' is unexpected", key);
            return false;
        }
    }
    if (!*name) {
        qmp_error_set(err, QMP_ERR_GENERIC, "QMP input lacks member 'execute'");
        return false;
    }
    if (json_object_get(req, "exec-oob")) {
        qmp_error_set(err, QMP_ERR_GENERIC, "The command %s does not support OOB", *name);
        return false;
    }
    return true;
}

static json_t *run_command(struct machine *m, json_t *req, bool *negotiated,
                           struct qmp_error *err)
{
    const struct qmp_command *cmd;
    const char *name = NULL;
    json_t *args = NULL;

    if (!check_envelope(req, &name, &args, err))
        return NULL;
    TRACE(qmp_command, "cmd=%s negotiated=%d", name, *negotiated);
    cmd = qmp_find_command(name);
    if (!*negotiated) {
        if (!cmd || strcmp(name, "qmp_capabilities")) {
            qmp_error_set(err, QMP_ERR_COMMAND_NOT_FOUND,
                          "Expecting capabilities negotiation with 'qmp_capabilities'");
            return NULL;
        }
    } else if (!cmd) {
        qmp_error_set(err, QMP_ERR_COMMAND_NOT_FOUND, "The command %s has not been found", name);
        return NULL;
    }
    if (!strcmp(name, "qmp_capabilities")) {
        if (*negotiated) {
            qmp_error_set(err, QMP_ERR_COMMAND_NOT_FOUND,
                          "Capabilities negotiation is already complete, command ignored");
            return NULL;
        }
    }
    if (!qmp_check_args(cmd->args, args, err))
        return NULL;
    if (!strcmp(name, "qmp_capabilities")) {
        json_t *enable = args ? json_object_get(args, "enable") : NULL;
        size_t i;
        json_t *cap;

        json_array_foreach(enable, i, cap) {
            if (!json_is_string(cap)) {
                qmp_error_set(err, QMP_ERR_GENERIC,
                              "Invalid parameter type for 'enable[%zu]', expected: string", i);
                return NULL;
            }
            if (!strcmp(json_string_value(cap), "oob"))
                qmp_error_set(err, QMP_ERR_GENERIC,
                              "Capability 'oob' not available");
            else
                qmp_error_set(err, QMP_ERR_GENERIC,
                              "Parameter 'enable[%zu]' does not accept value '%s'", i,
                              json_string_value(cap));
            return NULL;
        }
        *negotiated = true;
        return json_object();
    }
    return cmd->fn(m, args, err);
}

json_t *qmp_dispatch_text(struct machine *m, const char *text, size_t len, bool *negotiated)
{
    struct qmp_error err = { 0 };
    json_error_t jerr;
    json_t *req, *ret, *reply, *id;

    req = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!req) {
        qmp_error_set(&err, QMP_ERR_GENERIC, "JSON parse error, %s", jerr.text);
        return error_reply(&err, NULL);
    }
    if (!json_is_object(req)) {
        json_decref(req);
        qmp_error_set(&err, QMP_ERR_GENERIC, "QMP input must be a JSON object");
        return error_reply(&err, NULL);
    }
    id = json_object_get(req, "id");
    ret = run_command(m, req, negotiated, &err);
    if (!ret) {
        if (!err.set)
            qmp_error_set(&err, QMP_ERR_GENERIC, "command failed");
        reply = error_reply(&err, id);
    } else {
        reply = json_object();
        json_object_set_new(reply, "return", ret);
        if (id)
            json_object_set(reply, "id", id);
    }
    json_decref(req);
    return reply;
}
