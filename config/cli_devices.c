/* -drive, -netdev and -nic: stored for the device models, which open the
 * backends when the board creates them.  -drive if=virtio and -nic also
 * add the matching -device, as QEMU does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/keyval.h"
#include "util/log.h"

static int add_device(struct vm_config *cfg, const char *opt, const char *arg, char *dev)
{
    if (!dev || cfg->nr_devices >= CONFIG_MAX_DEVICES) {
        error_report("-%s %s: too many devices (at most %d)", opt, arg, CONFIG_MAX_DEVICES);
        free(dev);
        return -1;
    }
    cfg->devices[cfg->nr_devices++] = dev;
    return 0;
}

int config_opt_drive(struct vm_config *cfg, const char *opt, const char *arg)
{
    char ctx[512], *stored = NULL, *dev = NULL;
    const char *ifname, *id;
    struct keyval kv;
    int ret = -1;

    snprintf(ctx, sizeof(ctx), "-drive %s", arg);
    if (cfg->nr_drives >= CONFIG_MAX_DRIVES) {
        error_report("%s: too many drives (at most %d)", ctx, CONFIG_MAX_DRIVES);
        return -1;
    }
    if (keyval_parse(&kv, arg, false, ctx) < 0)
        return -1;
    ifname = keyval_get(&kv, "if");
    id = keyval_get(&kv, "id");
    /* QEMU's PC default is IDE; vmon has only virtio, so that is the default. */
    if (ifname && strcmp(ifname, "virtio") && strcmp(ifname, "none")) {
        error_report("%s: if=%s is not supported (virtio or none)", ctx, ifname);
        goto out;
    }
    if (!id) {
        if (ifname && !strcmp(ifname, "none")) {
            error_report("%s: if=none needs an id=", ctx);
            goto out;
        }
        if (asprintf(&stored, "%s,id=virtio%d", arg, cfg->nr_drives) < 0)
            goto out;
        id = stored + strlen(arg) + 4;
    }
    if (!ifname || !strcmp(ifname, "virtio")) {
        if (asprintf(&dev, "virtio-blk-pci,drive=%s", id) < 0)
            goto out;
        if (add_device(cfg, opt, arg, dev) < 0)
            goto out;
    }
    cfg->drives[cfg->nr_drives++] = stored ? stored : arg;
    stored = NULL;
    ret = 0;
out:
    free(stored);
    keyval_free(&kv);
    return ret;
}

int config_opt_netdev(struct vm_config *cfg, const char *opt, const char *arg)
{
    if (cfg->nr_netdevs >= CONFIG_MAX_NETDEVS) {
        error_report("-netdev %s: too many network backends (at most %d)", arg,
                     CONFIG_MAX_NETDEVS);
        return -1;
    }
    cfg->netdevs[cfg->nr_netdevs++] = arg;
    return 0;
}

/* -nic TYPE[,mac=M][,model=virtio][,opts]: a -netdev TYPE,id=nicN,opts plus
 * -device virtio-net-pci,netdev=nicN[,mac=M]. */
int config_opt_nic(struct vm_config *cfg, const char *opt, const char *arg)
{
    char ctx[512], *nd = NULL, *dev = NULL;
    struct keyval kv;
    const char *mac, *model;
    int n = cfg->nr_netdevs, ret = -1;
    size_t len;

    snprintf(ctx, sizeof(ctx), "-nic %s", arg);
    if (keyval_parse(&kv, arg, true, ctx) < 0)
        return -1;
    mac = keyval_get(&kv, "mac");
    model = keyval_get(&kv, "model");
    if (model && strcmp(model, "virtio") && strcmp(model, "virtio-net-pci")) {
        error_report("%s: model=%s is not supported (virtio)", ctx, model);
        goto out;
    }
    /* The backend gets every option but mac/model, in order. */
    len = strlen(arg) + 32;
    nd = malloc(len);
    if (!nd)
        goto out;
    snprintf(nd, len, "%s,id=nic%d", kv.driver, n);
    for (int i = 0; i < kv.nr_items; i++) {
        const struct keyval_item *it = &kv.items[i];

        if (!strcmp(it->key, "mac") || !strcmp(it->key, "model"))
            continue;
        /* Values keep their commas doubled. */
        strncat(nd, ",", len - strlen(nd) - 1);
        strncat(nd, it->key, len - strlen(nd) - 1);
        strncat(nd, "=", len - strlen(nd) - 1);
        for (const char *c = it->val; *c; c++) {
            strncat(nd, c[0] == ',' ? ",," : (char[]){ c[0], 0 }, len - strlen(nd) - 1);
        }
    }
    if (asprintf(&dev, "virtio-net-pci,netdev=nic%d%s%s", n, mac ? ",mac=" : "",
                 mac ? mac : "") < 0) {
        dev = NULL;
        goto out;
    }
    if (config_opt_netdev(cfg, "netdev", nd) < 0)
        goto out;
    nd = NULL;
    ret = add_device(cfg, opt, arg, dev);
    dev = NULL;
out:
    free(nd);
    free(dev);
    keyval_free(&kv);
    return ret;
}
