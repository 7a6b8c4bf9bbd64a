/* libFuzzer harness over QMP input: the byte stream goes through the JSON
 * splitter in fragments the input chooses, and every complete value through
 * the dispatcher (argument checking, error classes), before and after
 * capabilities negotiation.  Commands that would act on the process (quit,
 * stop, reset, migrate...) are renamed to an unknown command so the harness
 * exercises their argument parsing path's error handling without exiting;
 * the query commands run for real on a small machine. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "machine/machine.h"
#include "monitor/json_stream.h"
#include "monitor/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vm_config cfg = { .name = "fuzz" };
static struct machine m;
static struct vcpu vcpus[2];

static bool safe_command(const char *name)
{
    static const char *const safe[] = {
        "qmp_capabilities", "query-version", "query-commands", "query-name",
        "query-status", "query-cpus-fast", "query-kvm", "query-stats",
        "query-stats-schemas", "query-chardev",
    };

    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (!strcmp(name, safe[i]))
            return true;
    return false;
}

static int on_value(void *opaque, const char *text, size_t len, int err)
{
    bool *negotiated = opaque;
    json_t *reply, *req;

    if (err)
        return 0;
    req = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    if (json_is_object(req)) {
        json_t *cmd = json_object_get(req, "execute");

        if (json_is_string(cmd) && !safe_command(json_string_value(cmd)))
            return json_decref(req), 0;
    }
    json_decref(req);
    reply = qmp_dispatch_text(&m, text, len, negotiated);
    if (!reply)
        abort();
    free(json_dumps(reply, JSON_COMPACT));
    json_decref(reply);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool registered;
    struct json_stream s;
    bool negotiated = false;

    if (!registered) {
        m.cfg = &cfg;
        m.nr_vcpus = 2;
        for (int i = 0; i < 2; i++) {
            vcpus[i].index = i;
            vcpus[i].m = &m;
            m.vcpus[i] = &vcpus[i];
        }
        qmp_commands_register();
        qmp_stats_register(&m);
        registered = true;
    }
    /* A 4 KiB cap so the "too large" path is reachable by small inputs. */
    json_stream_init(&s, 4096);
    /* Feed in fragments whose sizes come from the data itself. */
    for (size_t off = 0; off < size;) {
        size_t n = 1 + data[off] % 64;

        if (n > size - off)
            n = size - off;
        json_stream_feed(&s, (const char *)data + off, n, on_value, &negotiated);
        off += n;
    }
    json_stream_destroy(&s);
    return 0;
}
