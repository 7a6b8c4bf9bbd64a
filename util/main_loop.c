/* The main loop: epoll over fds, a sorted list of timers, and an eventfd that
 * other threads use to post calls.  Everything it runs, it runs under the
 * machine lock. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "machine/machine.h"
#include "util/log.h"
#include "util/main_loop.h"

struct fd_watch {
    int fd;
    fd_handler_fn fn;
    void *opaque;
    struct fd_watch *next;
};

struct timer {
    callback_fn fn;
    void *opaque;
    uint64_t deadline;
    bool armed;
    struct timer *next;   /* in the armed list, sorted by deadline */
};

struct posted_call {
    callback_fn fn;
    void *opaque;
    struct posted_call *next;
};

static int epfd = -1;
static int wake_fd = -1;
static struct fd_watch *watches;
static struct timer *armed_timers;
static bool quit_requested;

static pthread_mutex_t post_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct posted_call *posted_head, **posted_tail = &posted_head;

uint64_t clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void wake_handler(void *opaque, uint32_t events)
{
    uint64_t v;
    struct posted_call *list;

    if (read(wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        error_report("main loop: eventfd read: %s", strerror(errno));

    pthread_mutex_lock(&post_mutex);
    list = posted_head;
    posted_head = NULL;
    posted_tail = &posted_head;
    pthread_mutex_unlock(&post_mutex);

    while (list) {
        struct posted_call *c = list;
        list = c->next;
        c->fn(c->opaque);
        free(c);
    }
}

int main_loop_init(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -errno;
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0)
        return -errno;
    quit_requested = false;
    return main_loop_add_fd(wake_fd, EPOLLIN, wake_handler, NULL);
}

void main_loop_cleanup(void)
{
    while (watches) {
        struct fd_watch *w = watches;
        watches = w->next;
        free(w);
    }
    if (wake_fd >= 0)
        close(wake_fd);
    if (epfd >= 0)
        close(epfd);
    wake_fd = epfd = -1;
    armed_timers = NULL;
}

int main_loop_add_fd(int fd, uint32_t events, fd_handler_fn fn, void *opaque)
{
    struct fd_watch *w = calloc(1, sizeof(*w));
    struct epoll_event ev = { .events = events };

    if (!w)
        return -ENOMEM;
    w->fd = fd;
    w->fn = fn;
    w->opaque = opaque;
    ev.data.ptr = w;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        free(w);
        return err;
    }
    w->next = watches;
    watches = w;
    return 0;
}

static struct fd_watch *find_watch(int fd, struct fd_watch ***link)
{
    for (struct fd_watch **p = &watches; *p; p = &(*p)->next) {
        if ((*p)->fd == fd) {
            if (link)
                *link = p;
            return *p;
        }
    }
    return NULL;
}

int main_loop_mod_fd(int fd, uint32_t events)
{
    struct fd_watch *w = find_watch(fd, NULL);
    struct epoll_event ev = { .events = events };

    if (!w)
        return -ENOENT;
    ev.data.ptr = w;
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

/* Deleting a watch from inside its own handler is allowed: the handler's
 * epoll_event still points at it, so the free is deferred to the end of the
 * current dispatch round. */
static struct fd_watch *dead_watches;

void main_loop_del_fd(int fd)
{
    struct fd_watch **link;
    struct fd_watch *w = find_watch(fd, &link);

    if (!w)
        return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    *link = w->next;
    w->fn = NULL;
    w->next = dead_watches;
    dead_watches = w;
}

struct timer *timer_new(callback_fn fn, void *opaque)
{
    struct timer *t = calloc(1, sizeof(*t));

    if (!t)
        fatal("out of memory allocating a timer");
    t->fn = fn;
    t->opaque = opaque;
    return t;
}

void timer_del(struct timer *t)
{
    if (!t->armed)
        return;
    for (struct timer **p = &armed_timers; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    t->armed = false;
}

void timer_mod(struct timer *t, uint64_t deadline_ns)
{
    struct timer **p;

    timer_del(t);
    t->deadline = deadline_ns;
    for (p = &armed_timers; *p && (*p)->deadline <= deadline_ns; p = &(*p)->next)
        ;
    t->next = *p;
    *p = t;
    t->armed = true;
}

void timer_free(struct timer *t)
{
    if (!t)
        return;
    timer_del(t);
    free(t);
}

bool timer_pending(const struct timer *t)
{
    return t->armed;
}

void main_loop_call(callback_fn fn, void *opaque)
{
    struct posted_call *c = malloc(sizeof(*c));
    uint64_t one = 1;

    if (!c)
        fatal("out of memory posting to the main loop");
    c->fn = fn;
    c->opaque = opaque;
    c->next = NULL;
    pthread_mutex_lock(&post_mutex);
    *posted_tail = c;
    posted_tail = &c->next;
    pthread_mutex_unlock(&post_mutex);
    if (write(wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        error_report("main loop: eventfd write: %s", strerror(errno));
}

void main_loop_quit(void)
{
    quit_requested = true;
}

static void run_expired_timers(void)
{
    uint64_t now = clock_ns();

    while (armed_timers && armed_timers->deadline <= now) {
        struct timer *t = armed_timers;
        armed_timers = t->next;
        t->armed = false;
        t->fn(t->opaque);
    }
}

static int next_timeout_ms(void)
{
    uint64_t now, delta;

    if (!armed_timers)
        return -1;
    now = clock_ns();
    if (armed_timers->deadline <= now)
        return 0;
    delta = armed_timers->deadline - now;
    /* Round up so a timer never fires early and spins the loop. */
    delta = (delta + 999999) / 1000000;
    return delta > 60000 ? 60000 : (int)delta;
}

void main_loop_run(void)
{
    struct epoll_event events[32];

    machine_lock();
    while (!quit_requested) {
        int timeout = next_timeout_ms();
        int n;

        machine_unlock();
        n = epoll_wait(epfd, events, ARRAY_SIZE(events), timeout);
        machine_lock();
        if (n < 0 && errno != EINTR) {
            error_report("main loop: epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            struct fd_watch *w = events[i].data.ptr;
            if (w->fn)
                w->fn(w->opaque, events[i].events);
        }
        while (dead_watches) {
            struct fd_watch *w = dead_watches;
            dead_watches = w->next;
            free(w);
        }
        run_expired_timers();
    }
    /* The quit is used up: a later main_loop_run() runs again (tests step
     * the loop between checks). */
    quit_requested = false;
    machine_unlock();
}
