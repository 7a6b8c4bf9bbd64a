/* -netdev lookup: backends are created when a frontend first names them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "net/net.h"
#include "util/keyval.h"
#include "util/log.h"

static struct net_backend *backends[CONFIG_MAX_NETDEVS];
static int nr_backends;

struct net_backend *net_backend_get(struct machine *m, const char *id, const char *ctx)
{
    const struct vm_config *cfg = m->cfg;

    for (int i = 0; i < nr_backends; i++)
        if (!strcmp(backends[i]->id, id)) {
            if (backends[i]->in_use) {
                error_report("%s: netdev %s is already in use", ctx, id);
                return NULL;
            }
            return backends[i];
        }
    for (int i = 0; cfg && i < cfg->nr_netdevs; i++) {
        char nctx[512];
        struct keyval kv;
        struct net_backend *nb = NULL;
        const char *nid;

        snprintf(nctx, sizeof(nctx), "-netdev %s", cfg->netdevs[i]);
        if (keyval_parse(&kv, cfg->netdevs[i], true, nctx) < 0)
            return NULL;
        nid = keyval_get(&kv, "id");
        if (!nid || strcmp(nid, id)) {
            keyval_free(&kv);
            continue;
        }
        if (!strcmp(kv.driver, "user"))
            nb = net_slirp_new(m, &kv);
        else if (!strcmp(kv.driver, "tap"))
            nb = net_tap_new(m, &kv);
        else
            error_report("%s: unknown netdev type '%s' (user or tap)", nctx, kv.driver);
        if (nb && keyval_check_unused(&kv) < 0)
            nb = NULL;   /* the half-made backend stays; vmon exits anyway */
        keyval_free(&kv);
        if (!nb)
            return NULL;
        nb->id = strdup(id);
        if (nr_backends < CONFIG_MAX_NETDEVS)
            backends[nr_backends++] = nb;
        return nb;
    }
    error_report("%s: property 'netdev': no -netdev with id=%s", ctx, id);
    return NULL;
}

void net_backend_attach(struct net_backend *nb, const struct net_frontend *fe, void *opaque)
{
    nb->fe = fe;
    nb->fe_opaque = opaque;
    nb->in_use = true;
}

void net_backend_deliver(struct net_backend *nb, const uint8_t *buf, size_t len)
{
    if (nb->fe)
        nb->fe->receive(nb->fe_opaque, buf, len);
}
