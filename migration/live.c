/* Live migration, source side: pre-copy over TCP on a migration thread.
 *
 * The thread connects, turns on dirty page tracking (vCPUs parked for the
 * instant it takes), sends every RAM chunk while the guest runs, then
 * iterates: take the pages written meanwhile (a "sync", MIGRATION_PASS)
 * and send them, until what is left can go within downtime-limit at the
 * bandwidth the last pass achieved, or MIG_MAX_PASSES syncs.  Then, under
 * the machine lock, it parks the vCPUs, sends the last pages, the vCPU,
 * irqchip and device state and "end", and waits for the destination's
 * acknowledgement: only then is the migration completed and the source
 * left paused (postmigrate).  Any failure before that, or migrate_cancel,
 * leaves the source running as it was.  Nothing but the final stage holds
 * the machine lock; the main loop only reads the published counters. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "machine/dirty_log.h"
#include "migration/stream.h"
#include "migration/tcp.h"
#include "monitor/qmp.h"
#include "util/log.h"
#include "util/main_loop.h"
#include "util/trace.h"

/* Syncs after which the last stage starts whatever is left (QEMU iterates
 * for ever; a bound keeps a guest that dirties faster than the link from
 * never finishing). */
#define MIG_MAX_PASSES 30
/* The pace of the rate limit is checked in windows of this length. */
#define PACE_WINDOW_NS 100000000ULL
/* The final stage holds the machine lock: a destination that stops
 * reading or acknowledging fails the migration after this long. */
#define FINAL_STAGE_TIMEOUT_S 30

struct mig_params mig_params = { .downtime_limit_ms = 300, .max_bandwidth = 128ULL << 20 };

enum live_status {
    LIVE_NONE, LIVE_SETUP, LIVE_ACTIVE, LIVE_COMPLETED, LIVE_FAILED, LIVE_CANCELLING,
    LIVE_CANCELLED,
};

static const char *const status_names[] = {
    [LIVE_NONE] = "none", [LIVE_SETUP] = "setup", [LIVE_ACTIVE] = "active",
    [LIVE_COMPLETED] = "completed", [LIVE_FAILED] = "failed",
    [LIVE_CANCELLING] = "cancelling", [LIVE_CANCELLED] = "cancelled",
};

static struct {
    struct machine *m;
    char uri[256];
    pthread_t thread;
    bool joinable;
    atomic_int fd;            /* -1 until connected; migrate_cancel shuts it down */
    atomic_int status;        /* enum live_status */
    atomic_bool cancel;
    struct mig_channel ch;    /* the thread's */
    uint64_t t0;              /* migrate issued */
    uint64_t win_start, win_bytes;
    /* Published by the thread for query-migrate. */
    _Atomic uint64_t transferred, remaining, dirty_sync_count, dirty_pages_rate, mbps_bits;
    _Atomic uint64_t total_ms, downtime_ms, setup_ms, expected_downtime_ms;
    char error[600];          /* written before status becomes failed */
} L = { .fd = -1 };

struct posted_event {
    const char *name;
    json_t *data;
};

static void send_posted_event(void *opaque)
{
    struct posted_event *e = opaque;

    qmp_event_send(e->name, e->data);
    free(e);
}

/* Events are the main loop's: post them, in order. */
static void post_event(const char *name, json_t *data)
{
    struct posted_event *e = malloc(sizeof(*e));

    if (!e) {
        json_decref(data);
        return;
    }
    e->name = name;
    e->data = data;
    main_loop_call(send_posted_event, e);
}

static void set_status(enum live_status st)
{
    atomic_store(&L.status, (int)st);
    TRACE(migration_stage, "stage=%s", status_names[st]);
    post_event("MIGRATION", json_pack("{s:s}", "status", status_names[st]));
}

static void publish(void)
{
    atomic_store(&L.transferred, L.ch.bytes);
    atomic_store(&L.total_ms, (clock_ns() - L.t0) / 1000000);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ULL),
                           .tv_nsec = (long)(ns % 1000000000ULL) };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* After every section of the live passes: publish progress, honour
 * migrate_cancel and max-bandwidth (sleep until the bytes sent in this
 * window were due at that rate). */
static int pace(void *opaque)
{
    uint64_t bw, sent, due, now;

    publish();
    for (;;) {
        if (atomic_load(&L.cancel))
            return -ECANCELED;
        bw = mig_params.max_bandwidth;
        now = clock_ns();
        sent = L.ch.bytes - L.win_bytes;
        due = L.win_start + (uint64_t)((double)sent * 1e9 / (double)(bw ? bw : 1));
        if (now >= due)
            break;
        sleep_ns(MIN(due - now, 10000000ULL));
    }
    if (now - L.win_start >= PACE_WINDOW_NS) {
        L.win_start = now;
        L.win_bytes = L.ch.bytes;
    }
    return 0;
}

static uint64_t sync_dirty(struct machine *m, uint64_t *dirty, int64_t *n)
{
    uint64_t count;

    *n = dirty_log_sync(m, dirty);
    count = atomic_fetch_add(&L.dirty_sync_count, 1) + 1;
    post_event("MIGRATION_PASS", json_pack("{s:I}", "pass", (json_int_t)count));
    return count;
}

static uint64_t count_bits(const uint64_t *w, size_t n)
{
    uint64_t c = 0;

    for (size_t i = 0; i < n; i++)
        c += (uint64_t)__builtin_popcountll(w[i]);
    return c;
}

static void set_timeouts(int fd)
{
    struct timeval tv = { .tv_sec = FINAL_STAGE_TIMEOUT_S };

    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Machine lock held, vCPUs parked: the rest of RAM, the state, "end", and
 * the destination's acknowledgement. */
static int final_stage(struct machine *m, uint64_t *dirty, char *err, size_t err_len)
{
    char ack[MIG_ACK_LEN];
    int64_t n;
    int ret;

    /* In-flight virtio-blk reads land in guest RAM: finish them before the
     * last look at the dirty log. */
    ret = mig_drain_parked(m);
    if (ret < 0) {
        snprintf(err, err_len, "%s", strerror(-ret));
        return ret;
    }
    /* The destination takes the disks over (same image files): flush and
     * let go of them before it can run. */
    ret = block_inactivate_all();
    if (ret < 0) {
        snprintf(err, err_len, "cannot flush the disks: %s", strerror(-ret));
        return ret;
    }
    sync_dirty(m, dirty, &n);
    if (n < 0) {
        snprintf(err, err_len, "cannot read the dirty page log: %s", strerror((int)-n));
        return (int)n;
    }
    set_timeouts(L.ch.fd);
    ret = mig_save_dirty(m, &L.ch, dirty, NULL, NULL);
    if (ret == 0)
        ret = mig_save_state(m, &L.ch);
    if (ret == 0)
        ret = mig_write_section(&L.ch, "end", 0, 1, "", 0);
    publish();
    if (ret < 0) {
        snprintf(err, err_len, "%s: %s", L.uri, strerror(-ret));
        return ret;
    }
    shutdown(L.ch.fd, SHUT_WR);
    ret = mig_read_all(&L.ch, ack, sizeof(ack));
    if (ret < 0 || memcmp(ack, MIG_ACK_MAGIC, MIG_ACK_LEN)) {
        snprintf(err, err_len, "%s: the destination did not confirm the migration "
                 "(it failed to load the state, or the connection broke)", L.uri);
        return ret < 0 ? ret : -EPROTO;
    }
    return 0;
}

static void *live_thread(void *arg)
{
    struct machine *m = arg;
    size_t words = dirty_bitmap_words(m->ram_size / MIG_PAGE) + MIG_RAM_CHUNK / MIG_PAGE / 64;
    uint64_t *dirty = calloc(words, sizeof(uint64_t));
    char err[600] = "";
    bool logging = false, was_running = false;
    int64_t n = 0;
    int fd, ret;

    if (!dirty) {
        snprintf(err, sizeof(err), "out of memory");
        goto failed;
    }
    fd = mig_tcp_connect(L.uri, err, sizeof(err));
    if (fd < 0)
        goto failed;
    atomic_store(&L.fd, fd);
    if (atomic_load(&L.cancel))
        goto cancelled;
    L.ch = (struct mig_channel){ .fd = fd, .what = L.uri, .version = MIG_FORMAT_VERSION_LIVE,
                                 .sock = true };
    {
        uint64_t t_conn = clock_ns(), t_lock, t_paused, t_log;

        machine_lock();
        t_lock = clock_ns();
        machine_pause_vcpus(m);
        t_paused = clock_ns();
        ret = dirty_log_start(m);
        t_log = clock_ns();
        machine_resume_vcpus(m);
        machine_unlock();
        LOG(LOG_ACCEL, "migration: setup: connect %.1f ms, lock %.1f ms, pause %.1f ms, "
            "dirty log start %.1f ms\n", (double)(t_conn - L.t0) / 1e6,
            (double)(t_lock - t_conn) / 1e6, (double)(t_paused - t_lock) / 1e6,
            (double)(t_log - t_paused) / 1e6);
    }
    if (ret < 0) {
        snprintf(err, sizeof(err), "cannot track dirty pages: %s", strerror(-ret));
        goto failed;
    }
    logging = true;
    atomic_store(&L.setup_ms, (clock_ns() - L.t0) / 1000000);
    set_status(LIVE_ACTIVE);

    /* Pass 1 is all of RAM: the log's start is its sync. */
    atomic_store(&L.dirty_sync_count, 1);
    post_event("MIGRATION_PASS", json_pack("{s:I}", "pass", (json_int_t)1));
    atomic_store(&L.remaining, m->ram_size);
    L.win_start = clock_ns();
    L.win_bytes = 0;
    ret = mig_save_header(m, &L.ch);
    uint64_t pass_start = clock_ns(), pass_bytes = L.ch.bytes;

    if (ret == 0)
        ret = mig_save_ram(m, &L.ch, pace, NULL);
    while (ret == 0) {
        uint64_t now = clock_ns(), elapsed = MAX(now - pass_start, 1000000ULL);
        double bw = (double)(L.ch.bytes - pass_bytes) * 1e9 / (double)elapsed;
        uint64_t count, left;

        bw = MIN(bw, (double)mig_params.max_bandwidth);
        count = sync_dirty(m, dirty, &n);
        if (n < 0) {
            ret = (int)n;
            break;
        }
        left = count_bits(dirty, words) * MIG_PAGE;
        atomic_store(&L.remaining, left);
        atomic_store(&L.dirty_pages_rate, (uint64_t)((double)n * 1e9 / (double)elapsed));
        atomic_store(&L.mbps_bits, (uint64_t)(bw * 8));
        atomic_store(&L.expected_downtime_ms,
                     bw > 0 ? (uint64_t)((double)left * 1000 / bw) : 0);
        LOG(LOG_ACCEL, "migration: sync %llu: %llu KiB dirty, %.1f MiB/s\n",
            (unsigned long long)count, (unsigned long long)(left >> 10), bw / (1 << 20));
        if ((double)left <= bw * (double)mig_params.downtime_limit_ms / 1000 ||
            count >= MIG_MAX_PASSES)
            break;
        pass_start = now;
        pass_bytes = L.ch.bytes;
        ret = mig_save_dirty(m, &L.ch, dirty, pace, NULL);
    }
    publish();
    if (ret < 0) {
        if (ret == -ECANCELED || atomic_load(&L.cancel))
            goto cancelled;
        if (n < 0)
            snprintf(err, sizeof(err), "cannot read the dirty page log: %s", strerror(-ret));
        else
            snprintf(err, sizeof(err), "%s: %s", L.uri, strerror(-ret));
        goto failed;
    }

    machine_lock();
    if (atomic_load(&L.cancel)) {
        machine_unlock();
        goto cancelled;
    }
    {
        uint64_t t_stop = clock_ns();

        was_running = qmp_run_state == QMP_RUN_RUNNING;
        machine_pause_vcpus(m);
        if (was_running)
            post_event("STOP", NULL);
        qmp_run_state = QMP_RUN_FINISH_MIGRATE;
        L.ch.vm_paused = !was_running;
        ret = final_stage(m, dirty, err, sizeof(err));
        if (ret < 0 && block_any_inactive()) {
            char berr[512];

            /* The guest goes on here: it needs its disks back. */
            if (block_activate_all(berr, sizeof(berr)) < 0) {
                error_report("migration: cannot take the disks back: %s", berr);
                was_running = false;
            }
        }
        dirty_log_stop(m);
        logging = false;
        if (ret == 0) {
            atomic_store(&L.downtime_ms, (clock_ns() - t_stop) / 1000000);
            atomic_store(&L.remaining, 0);
            m->paused = true;
            qmp_run_state = QMP_RUN_POSTMIGRATE;
        } else if (block_any_inactive()) {
            /* The destination took a disk: running on would corrupt it. */
            m->paused = true;
            qmp_run_state = QMP_RUN_POSTMIGRATE;
        } else if (was_running) {
            qmp_run_state = QMP_RUN_RUNNING;
            machine_resume_vcpus(m);
            post_event("RESUME", NULL);
        } else {
            qmp_run_state = QMP_RUN_PAUSED;
        }
    }
    machine_unlock();
    publish();
    if (ret < 0)
        goto failed;
    set_status(LIVE_COMPLETED);
    goto out;

cancelled:
    set_status(LIVE_CANCELLED);
    goto out;
failed:
    snprintf(L.error, sizeof(L.error), "%s", err);
    set_status(LIVE_FAILED);
out:
    if (logging)
        dirty_log_stop(m);
    fd = atomic_exchange(&L.fd, -1);
    if (fd >= 0)
        close(fd);
    publish();
    free(dirty);
    return NULL;
}

bool migration_live_active(void)
{
    int st = atomic_load(&L.status);

    return st == LIVE_SETUP || st == LIVE_ACTIVE || st == LIVE_CANCELLING;
}

int migration_live_start(struct machine *m, const char *uri, char *msg, size_t msg_len)
{
    char host[256], port[16];
    int ret;

    if (migration_live_active()) {
        snprintf(msg, msg_len, "There's a migration process in progress");
        return -EBUSY;
    }
    if (migration_parse_tcp(uri, host, sizeof(host), port, sizeof(port)) < 0 ||
        strlen(uri) >= sizeof(L.uri)) {
        snprintf(msg, msg_len, "Invalid migration URI '%s': expected tcp:HOST:PORT", uri);
        return -EINVAL;
    }
    if (mig_check_savable(m, uri) < 0) {
        snprintf(msg, msg_len, "%s: a device has no state description", uri);
        return -ENOTSUP;
    }
    if (L.joinable) {
        pthread_join(L.thread, NULL);
        L.joinable = false;
    }
    L.m = m;
    snprintf(L.uri, sizeof(L.uri), "%s", uri);
    L.t0 = clock_ns();
    L.error[0] = 0;
    atomic_store(&L.cancel, false);
    atomic_store(&L.fd, -1);
    atomic_store(&L.transferred, 0);
    atomic_store(&L.remaining, m->ram_size);
    atomic_store(&L.dirty_sync_count, 0);
    atomic_store(&L.dirty_pages_rate, 0);
    atomic_store(&L.mbps_bits, 0);
    atomic_store(&L.downtime_ms, 0);
    atomic_store(&L.setup_ms, 0);
    atomic_store(&L.expected_downtime_ms, 0);
    atomic_store(&L.total_ms, 0);
    /* setup is announced before migrate returns, as QEMU does. */
    atomic_store(&L.status, LIVE_SETUP);
    TRACE(migration_stage, "stage=%s", "setup");
    qmp_event_send("MIGRATION", json_pack("{s:s}", "status", "setup"));
    ret = pthread_create(&L.thread, NULL, live_thread, m);
    if (ret) {
        atomic_store(&L.status, LIVE_FAILED);
        snprintf(L.error, sizeof(L.error), "cannot start the migration thread: %s",
                 strerror(ret));
        qmp_event_send("MIGRATION", json_pack("{s:s}", "status", "failed"));
        snprintf(msg, msg_len, "%s", L.error);
        return -ret;
    }
    L.joinable = true;
    return 0;
}

int migration_live_cancel(void)
{
    int fd, st = atomic_load(&L.status);

    if (st != LIVE_SETUP && st != LIVE_ACTIVE)
        return -EINVAL;
    atomic_store(&L.cancel, true);
    atomic_store(&L.status, LIVE_CANCELLING);
    qmp_event_send("MIGRATION", json_pack("{s:s}", "status", "cancelling"));
    /* Unblocks a send the destination does not read. */
    fd = atomic_load(&L.fd);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    return 0;
}

json_t *migration_live_query(struct machine *m)
{
    int st = atomic_load(&L.status);
    json_t *r, *ram;
    uint64_t transferred = atomic_load(&L.transferred);

    if (st == LIVE_NONE)
        return NULL;
    r = json_pack("{s:s}", "status", status_names[st]);
    if (st == LIVE_SETUP)
        return r;
    json_object_set_new(r, "total-time", json_integer((json_int_t)(
        st == LIVE_ACTIVE || st == LIVE_CANCELLING ? (clock_ns() - L.t0) / 1000000
                                                   : atomic_load(&L.total_ms))));
    json_object_set_new(r, "setup-time", json_integer((json_int_t)atomic_load(&L.setup_ms)));
    if (st == LIVE_ACTIVE)
        json_object_set_new(r, "expected-downtime",
                            json_integer((json_int_t)atomic_load(&L.expected_downtime_ms)));
    if (st == LIVE_COMPLETED)
        json_object_set_new(r, "downtime",
                            json_integer((json_int_t)atomic_load(&L.downtime_ms)));
    ram = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:f}",
                    "transferred", (json_int_t)transferred,
                    "remaining", (json_int_t)atomic_load(&L.remaining),
                    "total", (json_int_t)m->ram_size,
                    "dirty-pages-rate", (json_int_t)atomic_load(&L.dirty_pages_rate),
                    "dirty-sync-count", (json_int_t)atomic_load(&L.dirty_sync_count),
                    "page-size", (json_int_t)MIG_PAGE,
                    "mbps", (double)atomic_load(&L.mbps_bits) / 1e6);
    json_object_set_new(r, "ram", ram);
    if (st == LIVE_FAILED)
        json_object_set_new(r, "error-desc", json_string(L.error));
    return r;
}

void migration_live_cleanup(void)
{
    int fd;

    if (!L.joinable)
        return;
    atomic_store(&L.cancel, true);
    fd = atomic_load(&L.fd);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    pthread_join(L.thread, NULL);
    L.joinable = false;
}
