/* Live migration, destination side: -incoming tcp:HOST:PORT (or
 * migrate-incoming after -incoming defer).  The socket listens from the
 * start; an incoming thread accepts one connection and loads the stream
 * (RAM as it arrives, the rest staged and committed under the machine
 * lock only when all of it is valid), acknowledges it to the source, and
 * the VM resumes on the main loop.  A stream that is truncated, corrupted
 * or does not fit this VM ends vmon with one error line and status 1: the
 * VM never runs with partial state (the source keeps its VM). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/stream.h"
#include "migration/tcp.h"
#include "monitor/qmp.h"
#include "util/log.h"
#include "util/main_loop.h"
#include "util/trace.h"

static struct {
    struct machine *m;
    char uri[256];
    int listen_fd;
    int stop_fd;              /* eventfd: migration_cleanup wakes accept */
    atomic_int fd;            /* the accepted connection */
    atomic_bool stopping;
    atomic_bool pending;      /* listening or loading */
    bool stream_paused;       /* the loaded stream's run state */
    pthread_t thread;
    bool joinable;
} in = { .listen_fd = -1, .stop_fd = -1, .fd = -1 };

static void incoming_event(void *opaque)
{
    const char *status = opaque;

    TRACE(migration_stage, "stage=%s", status);
    qmp_event_send("MIGRATION", json_pack("{s:s}", "status", status));
}

/* Main loop: the state is in; run. */
static void incoming_done(void *opaque)
{
    struct machine *m = opaque;

    atomic_store(&in.pending, false);
    incoming_event("completed");
    migration_incoming_resume(m, in.stream_paused);
}

static int accept_one(void)
{
    struct pollfd p[2] = { { .fd = in.listen_fd, .events = POLLIN },
                           { .fd = in.stop_fd, .events = POLLIN } };

    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p[1].revents || atomic_load(&in.stopping))
            return -ECANCELED;
        if (p[0].revents) {
            int fd = accept4(in.listen_fd, NULL, NULL, SOCK_CLOEXEC);

            if (fd >= 0 || (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED))
                return fd >= 0 ? fd : -errno;
        }
    }
}

static void *incoming_thread(void *arg)
{
    struct machine *m = arg;
    struct mig_channel ch = { .what = in.uri, .sock = true, .lock_commit = true };
    uint64_t t0;
    int fd, ret;

    fd = accept_one();
    close(in.listen_fd);
    in.listen_fd = -1;
    if (fd == -ECANCELED)
        return NULL;
    if (fd < 0) {
        error_report("-incoming %s: accept: %s", in.uri, strerror(-fd));
        goto fail;
    }
    atomic_store(&in.fd, fd);
    main_loop_call(incoming_event, "active");
    ch.fd = fd;
    t0 = clock_ns();
    ret = migration_load(m, &ch);
    if (ret == 0 && mig_write_all(&ch, MIG_ACK_MAGIC, MIG_ACK_LEN) < 0) {
        error_report("-incoming %s: the source went away before the handover", in.uri);
        ret = -EPIPE;
    }
    atomic_store(&in.fd, -1);
    close(fd);
    if (atomic_load(&in.stopping))
        return NULL;
    if (ret < 0)
        goto fail;
    in.stream_paused = ch.vm_paused;
    LOG(LOG_ACCEL, "incoming: %s: %llu bytes loaded in %llu ms\n", in.uri,
        (unsigned long long)ch.bytes, (unsigned long long)((clock_ns() - t0) / 1000000));
    main_loop_call(incoming_done, m);
    return NULL;
fail:
    error_report("-incoming %s: the VM was not started", in.uri);
    main_loop_call(incoming_event, "failed");
    machine_request_shutdown(m, SHUTDOWN_HOST_QUIT, 1);
    return NULL;
}

int migration_incoming_start(struct machine *m, const char *uri)
{
    int ret;

    if (strlen(uri) >= sizeof(in.uri)) {
        error_report("migration URI '%s' is too long", uri);
        return -EINVAL;
    }
    if (in.joinable) {
        error_report("%s: an incoming migration was already started", uri);
        return -EBUSY;
    }
    in.listen_fd = mig_tcp_listen(uri);
    if (in.listen_fd < 0)
        return in.listen_fd;
    in.stop_fd = eventfd(0, EFD_CLOEXEC);
    if (in.stop_fd < 0) {
        ret = -errno;
        close(in.listen_fd);
        in.listen_fd = -1;
        return ret;
    }
    in.m = m;
    snprintf(in.uri, sizeof(in.uri), "%s", uri);
    atomic_store(&in.pending, true);
    ret = pthread_create(&in.thread, NULL, incoming_thread, m);
    if (ret) {
        error_report("%s: cannot start the incoming migration thread: %s", uri,
                     strerror(ret));
        close(in.listen_fd);
        in.listen_fd = -1;
        atomic_store(&in.pending, false);
        return -ret;
    }
    in.joinable = true;
    return 0;
}

bool migration_incoming_pending(void)
{
    return atomic_load(&in.pending);
}

void migration_cleanup(struct machine *m)
{
    migration_live_cleanup();
    if (in.joinable) {
        uint64_t one = 1;
        int fd;

        atomic_store(&in.stopping, true);
        if (write(in.stop_fd, &one, sizeof(one)) < 0) {
            /* the eventfd cannot be full */
        }
        fd = atomic_load(&in.fd);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        pthread_join(in.thread, NULL);
        in.joinable = false;
    }
    if (in.stop_fd >= 0)
        close(in.stop_fd);
    in.stop_fd = -1;
}
