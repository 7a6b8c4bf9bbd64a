/* QEMU-style option strings: "driver,key=val,key2=val2".
 *
 * ",," inside a value stands for one comma.  Getters mark a key as used, so
 * after the consumer has read what it knows, keyval_check_unused() rejects
 * anything left over ("unknown property").  Errors are reported with
 * error_report(), prefixed by the context the caller gives (e.g. the
 * "-device ..." argument), and return -EINVAL. */
#ifndef VMON_UTIL_KEYVAL_H
#define VMON_UTIL_KEYVAL_H

#include "util/types.h"

struct keyval_item {
    char *key;
    char *val;
    bool used;
};

struct keyval {
    const char *context;   /* prefix for error messages, not owned */
    char *driver;          /* the first, key-less element; NULL if absent */
    struct keyval_item *items;
    int nr_items;
};

/* Parse s.  With want_driver, the first element is a bare name (the driver)
 * rather than key=val.  Duplicate keys are an error.  On success the caller
 * owns kv and frees it with keyval_free(). */
int keyval_parse(struct keyval *kv, const char *s, bool want_driver, const char *context);
void keyval_free(struct keyval *kv);

/* NULL if absent. */
const char *keyval_get(struct keyval *kv, const char *key);
/* Numbers in C syntax (0x.., 0.., decimal); absent -> def.  Values outside
 * [0, max] are rejected naming the property. */
int keyval_get_u64(struct keyval *kv, const char *key, uint64_t def, uint64_t max,
                   uint64_t *out);
/* on/off, yes/no, true/false; absent -> def. */
int keyval_get_bool(struct keyval *kv, const char *key, bool def, bool *out);
/* -EINVAL (after naming the first one) if any key was never read. */
int keyval_check_unused(const struct keyval *kv);

#endif
