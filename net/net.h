/* Network backends (-netdev): user-mode networking through libslirp and
 * Linux tap devices.  A frontend (virtio-net) attaches to one backend; both
 * directions are whole Ethernet frames, without virtio headers.  Everything
 * runs under the machine lock (vCPU threads and the main loop). */
#ifndef VMON_NET_NET_H
#define VMON_NET_NET_H

#include "machine/machine.h"

struct net_backend;

struct net_frontend {
    /* A frame for the guest; the frontend drops it if it has no room. */
    void (*receive)(void *opaque, const uint8_t *buf, size_t len);
};

struct net_backend {
    char *id;
    const char *type;             /* "user", "tap" */
    /* A frame from the guest. */
    void (*send)(struct net_backend *nb, const uint8_t *buf, size_t len);
    /* send() takes an IPv4 TCP segment of up to 64 KiB in one frame, above
     * the MTU, so a NIC may offer TCP segmentation offload over it. */
    bool takes_tso;
    const struct net_frontend *fe;
    void *fe_opaque;
    bool in_use;
};

/* The backend -netdev ...,id=ID describes, created on first use.  NULL
 * after an error_report() naming ctx. */
struct net_backend *net_backend_get(struct machine *m, const char *id, const char *ctx);
void net_backend_attach(struct net_backend *nb, const struct net_frontend *fe, void *opaque);
/* Deliver a frame to the attached frontend (backends call this). */
void net_backend_deliver(struct net_backend *nb, const uint8_t *buf, size_t len);

struct keyval;
/* Constructors; opts is the -netdev argument with the type as driver. */
struct net_backend *net_slirp_new(struct machine *m, struct keyval *opts);
struct net_backend *net_tap_new(struct machine *m, struct keyval *opts);

#endif
