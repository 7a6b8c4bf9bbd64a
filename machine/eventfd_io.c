/* Doorbell and MSI eventfds (machine/eventfd_io.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "accel/accel.h"
#include "machine/eventfd_io.h"
#include "util/log.h"
#include "util/trace.h"

int machine_ioeventfd_add(struct machine *m, uint64_t addr, int fd)
{
    struct machine_ioeventfd *n = realloc(m->ioeventfds,
                                          (m->nr_ioeventfds + 1) * sizeof(*n));

    if (!n)
        return -ENOMEM;
    m->ioeventfds = n;
    n[m->nr_ioeventfds++] = (struct machine_ioeventfd){ .addr = addr, .fd = fd };
    if (m->accel && m->accel->ioeventfd) {
        int r = m->accel->ioeventfd(m, addr, fd, true);

        /* The MMIO handler still sees the write: slower, not wrong. */
        if (r < 0)
            LOG(LOG_ACCEL, "%s: no ioeventfd at 0x%llx: %s\n", m->accel->name,
                (unsigned long long)addr, strerror(-r));
    }
    return 0;
}

void machine_ioeventfd_del(struct machine *m, uint64_t addr, int fd)
{
    for (int i = 0; i < m->nr_ioeventfds; i++) {
        if (m->ioeventfds[i].addr != addr || m->ioeventfds[i].fd != fd)
            continue;
        m->ioeventfds[i] = m->ioeventfds[--m->nr_ioeventfds];
        if (m->accel && m->accel->ioeventfd)
            m->accel->ioeventfd(m, addr, fd, false);
        return;
    }
}

void msi_route_init(struct msi_route *r)
{
    r->fd = -1;
    r->id = -1;
}

/* Make the eventfd and the number on first use.  False if the accelerator
 * has no routes or the eventfd cannot be made. */
static bool route_ready(struct machine *m, struct msi_route *r)
{
    if (!m->accel || !m->accel->msi_route)
        return false;
    if (r->fd < 0) {
        r->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (r->fd < 0)
            return false;
    }
    if (r->id < 0)
        r->id = (int)m->nr_msi_routes++;
    return true;
}

void msi_route_send(struct machine *m, struct msi_route *r, uint64_t addr, uint32_t data)
{
    uint64_t one = 1;

    if (!route_ready(m, r) || m->accel->msi_route(m, (unsigned)r->id, addr, data, r->fd) < 0 ||
        write(r->fd, &one, sizeof(one)) != sizeof(one)) {
        machine_send_msi(m, addr, data);
        return;
    }
    TRACE(msi_send, "addr=0x%llx data=0x%x route=%d", (unsigned long long)addr, data, r->id);
}

void msi_route_update(struct machine *m, struct msi_route *r, uint64_t addr, uint32_t data)
{
    if (r->id >= 0 && r->fd >= 0 && m->accel && m->accel->msi_route)
        m->accel->msi_route(m, (unsigned)r->id, addr, data, r->fd);
}

void msi_route_release(struct machine *m, struct msi_route *r)
{
    if (r->id >= 0 && m->accel && m->accel->msi_route)
        m->accel->msi_route(m, (unsigned)r->id, 0, 0, -1);
    if (r->fd >= 0)
        close(r->fd);
    msi_route_init(r);
}
