/* -chardev BACKEND,id=ID[,...] in QEMU's spelling: socket (path=,
 * server=on|off, wait=on|off), stdio, file (path=), null.  The option is
 * checked when it is parsed (a bad one ends start-up naming it); the
 * backend opens when a frontend (virtconsole, virtio-serial-pci chardev=)
 * names its id, and serves that one frontend. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chardev/chardev.h"
#include "util/keyval.h"
#include "util/log.h"

#define MAX_OPEN 16

static struct {
    const char *id;
    struct chardev *chr;
} opened[MAX_OPEN];
static int nr_opened;

/* Parse spec into kv (the caller frees it); with out NULL only check it,
 * else open the backend into *out.  0, or -EINVAL after an error_report. */
static int parse(const char *spec, struct chardev **out, const char **id_out,
                 struct keyval *kv, const char *ctx)
{
    const char *id, *path;
    bool server = false, wait = true;
    struct chardev *c = NULL;

    if (keyval_parse(kv, spec, true, ctx) < 0)
        return -EINVAL;
    id = keyval_get(kv, "id");
    if (!id || !*id) {
        error_report("%s: property 'id' is required", ctx);
        return -EINVAL;
    }
    *id_out = id;
    path = keyval_get(kv, "path");
    if (!strcmp(kv->driver, "socket")) {
        if (keyval_get_bool(kv, "server", false, &server) < 0 ||
            keyval_get_bool(kv, "wait", true, &wait) < 0)
            return -EINVAL;
        if (!path || !*path) {
            error_report("%s: property 'path' is required (unix sockets only)", ctx);
            return -EINVAL;
        }
        if (keyval_check_unused(kv) < 0)
            return -EINVAL;
        if (out)
            c = chardev_socket_new(path, server, server && wait, ctx);
    } else if (!strcmp(kv->driver, "file")) {
        if (!path || !*path) {
            error_report("%s: property 'path' is required", ctx);
            return -EINVAL;
        }
        if (keyval_check_unused(kv) < 0)
            return -EINVAL;
        if (out)
            c = chardev_file_new(path);
    } else if (!strcmp(kv->driver, "stdio") || !strcmp(kv->driver, "null")) {
        if (keyval_check_unused(kv) < 0)
            return -EINVAL;
        if (out)
            c = kv->driver[0] == 's' ? chardev_stdio_new() : chardev_null_new();
    } else {
        error_report("%s: backend '%s' is not supported (socket, stdio, file, null)", ctx,
                     kv->driver);
        return -EINVAL;
    }
    if (!out)
        return 0;
    if (!c) {
        error_report("%s: cannot open the backend", ctx);
        return -EIO;
    }
    *out = c;
    return 0;
}

int chardev_config_check(const char *spec, const char *const *earlier, int nr_earlier)
{
    char ctx[512];
    struct keyval kv;
    const char *id = NULL;
    int ret = -EINVAL;

    snprintf(ctx, sizeof(ctx), "-chardev %s", spec);
    if (parse(spec, NULL, &id, &kv, ctx) == 0) {
        ret = 0;
        for (int i = 0; i < nr_earlier && ret == 0; i++) {
            struct keyval other;
            const char *oid;

            if (keyval_parse(&other, earlier[i], true, ctx) < 0)
                continue;
            oid = keyval_get(&other, "id");
            if (oid && !strcmp(oid, id)) {
                error_report("%s: duplicate chardev id '%s'", ctx, id);
                ret = -EINVAL;
            }
            keyval_free(&other);
        }
    }
    keyval_free(&kv);
    return ret;
}

bool chardev_config_has(const char *const *specs, int n, const char *id)
{
    for (int i = 0; i < n; i++) {
        struct keyval kv;
        const char *cid;
        bool match;

        if (keyval_parse(&kv, specs[i], true, "-chardev") < 0)
            continue;
        cid = keyval_get(&kv, "id");
        match = cid && !strcmp(cid, id);
        keyval_free(&kv);
        if (match)
            return true;
    }
    return false;
}

struct chardev *chardev_config_open(const char *const *specs, int n, const char *id,
                                    const char *user)
{
    for (int i = 0; i < nr_opened; i++)
        if (opened[i].id && !strcmp(opened[i].id, id)) {
            error_report("%s: chardev '%s' is already in use", user, id);
            return NULL;
        }
    for (int i = 0; i < n; i++) {
        char ctx[512];
        struct keyval kv;
        const char *cid = NULL;
        struct chardev *c = NULL;

        if (keyval_parse(&kv, specs[i], true, "-chardev") < 0)
            continue;
        cid = keyval_get(&kv, "id");
        if (!cid || strcmp(cid, id)) {
            keyval_free(&kv);
            continue;
        }
        keyval_free(&kv);
        snprintf(ctx, sizeof(ctx), "-chardev %s", specs[i]);
        if (parse(specs[i], &c, &cid, &kv, ctx) < 0)
            c = NULL;
        keyval_free(&kv);
        if (c && nr_opened < MAX_OPEN) {
            opened[nr_opened].id = strdup(id);
            opened[nr_opened++].chr = c;
        }
        return c;
    }
    error_report("%s: no -chardev with id=%s", user, id);
    return NULL;
}

int chardev_config_describe(const char *spec, char *label, size_t label_len, char *filename,
                            size_t filename_len, bool *in_use)
{
    struct keyval kv;
    const char *id, *path;
    bool server = false;

    if (keyval_parse(&kv, spec, true, "-chardev") < 0)
        return -EINVAL;
    id = keyval_get(&kv, "id");
    path = keyval_get(&kv, "path");
    if (!id) {
        keyval_free(&kv);
        return -EINVAL;
    }
    snprintf(label, label_len, "%s", id);
    *in_use = false;
    for (int i = 0; i < nr_opened; i++)
        if (opened[i].id && !strcmp(opened[i].id, id))
            *in_use = true;
    /* QEMU's spelling of each backend's filename. */
    if (!strcmp(kv.driver, "socket")) {
        if (keyval_get_bool(&kv, "server", false, &server) < 0)
            server = false;
        snprintf(filename, filename_len, "unix:%s%s", path ? path : "",
                 server ? ",server=on" : "");
    } else {
        snprintf(filename, filename_len, "%s", kv.driver);
    }
    keyval_free(&kv);
    return 0;
}
