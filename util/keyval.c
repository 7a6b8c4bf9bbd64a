/* QEMU-style "driver,key=val" option strings. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/keyval.h"
#include "util/log.h"

/* Copy one element of s (up to an unescaped ',' or the end) with ",,"
 * collapsed; *sp advances past the element and its separator. */
static char *next_element(const char **sp)
{
    const char *s = *sp;
    size_t n = 0;
    char *out = malloc(strlen(s) + 1);

    if (!out)
        return NULL;
    while (*s) {
        if (*s == ',') {
            if (s[1] != ',') {
                s++;
                break;
            }
            s++;   /* ",," -> "," */
        }
        out[n++] = *s++;
    }
    out[n] = '\0';
    *sp = s;
    return out;
}

static const char *ctx(const struct keyval *kv)
{
    return kv->context ? kv->context : "options";
}

void keyval_free(struct keyval *kv)
{
    for (int i = 0; i < kv->nr_items; i++) {
        free(kv->items[i].key);
        free(kv->items[i].val);
    }
    free(kv->items);
    free(kv->driver);
    kv->items = NULL;
    kv->driver = NULL;
    kv->nr_items = 0;
}

static struct keyval_item *find(const struct keyval *kv, const char *key)
{
    for (int i = 0; i < kv->nr_items; i++)
        if (!strcmp(kv->items[i].key, key))
            return &kv->items[i];
    return NULL;
}

int keyval_parse(struct keyval *kv, const char *s, bool want_driver, const char *context)
{
    const char *p = s;
    bool first = true;

    memset(kv, 0, sizeof(*kv));
    kv->context = context;
    if (!s)
        return 0;
    while (*p || first) {
        char *el = next_element(&p);
        char *eq;
        struct keyval_item *items;

        if (!el)
            goto nomem;
        if (first && want_driver) {
            first = false;
            if (!*el || strchr(el, '=')) {
                error_report("%s: expected a driver name first", ctx(kv));
                free(el);
                goto err;
            }
            kv->driver = el;
            continue;
        }
        first = false;
        eq = strchr(el, '=');
        if (!eq || eq == el) {
            error_report("%s: '%s' is not of the form key=value", ctx(kv), el);
            free(el);
            goto err;
        }
        *eq = '\0';
        if (find(kv, el)) {
            error_report("%s: property '%s' given twice", ctx(kv), el);
            free(el);
            goto err;
        }
        items = realloc(kv->items, (kv->nr_items + 1) * sizeof(*items));
        if (!items) {
            free(el);
            goto nomem;
        }
        kv->items = items;
        items[kv->nr_items].key = el;
        items[kv->nr_items].val = strdup(eq + 1);
        items[kv->nr_items].used = false;
        if (!items[kv->nr_items].val) {
            free(el);
            goto nomem;
        }
        kv->nr_items++;
    }
    return 0;
nomem:
    error_report("%s: out of memory", ctx(kv));
err:
    keyval_free(kv);
    return -EINVAL;
}

const char *keyval_get(struct keyval *kv, const char *key)
{
    struct keyval_item *it = find(kv, key);

    if (!it)
        return NULL;
    it->used = true;
    return it->val;
}

int keyval_get_u64(struct keyval *kv, const char *key, uint64_t def, uint64_t max,
                   uint64_t *out)
{
    const char *v = keyval_get(kv, key);
    unsigned long long n;
    char *end;

    if (!v) {
        *out = def;
        return 0;
    }
    errno = 0;
    n = strtoull(v, &end, 0);
    if (!*v || *end || errno || *v == '-' || n > max) {
        error_report("%s: property '%s': '%s' is not a number in [0, 0x%llx]", ctx(kv),
                     key, v, (unsigned long long)max);
        return -EINVAL;
    }
    *out = n;
    return 0;
}

int keyval_get_bool(struct keyval *kv, const char *key, bool def, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "1" };
    static const char *const no[] = { "off", "no", "false", "0" };
    const char *v = keyval_get(kv, key);

    *out = def;
    if (!v)
        return 0;
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    error_report("%s: property '%s': '%s' is not on/off", ctx(kv), key, v);
    return -EINVAL;
}

int keyval_check_unused(const struct keyval *kv)
{
    for (int i = 0; i < kv->nr_items; i++) {
        if (!kv->items[i].used) {
            error_report("%s: unknown property '%s'", ctx(kv), kv->items[i].key);
            return -EINVAL;
        }
    }
    return 0;
}
