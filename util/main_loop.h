/* The main loop: one thread, epoll over file descriptors, timers on the
 * monotonic clock, and calls posted from other threads.  Callbacks run with
 * the machine lock held and must never block. */
#ifndef VMON_UTIL_MAIN_LOOP_H
#define VMON_UTIL_MAIN_LOOP_H

#include "util/types.h"

typedef void (*fd_handler_fn)(void *opaque, uint32_t epoll_events);
typedef void (*callback_fn)(void *opaque);

int main_loop_init(void);
void main_loop_cleanup(void);
/* Watch fd for epoll events (EPOLLIN etc.). */
int main_loop_add_fd(int fd, uint32_t events, fd_handler_fn fn, void *opaque);
int main_loop_mod_fd(int fd, uint32_t events);
void main_loop_del_fd(int fd);

struct timer;
struct timer *timer_new(callback_fn fn, void *opaque);
/* Fire once at the CLOCK_MONOTONIC time deadline_ns (replaces any earlier). */
void timer_mod(struct timer *t, uint64_t deadline_ns);
void timer_del(struct timer *t);
void timer_free(struct timer *t);
bool timer_pending(const struct timer *t);

/* Run fn(opaque) on the main loop thread soon.  Any thread; never blocks. */
void main_loop_call(callback_fn fn, void *opaque);
/* Run until main_loop_quit(); it can be run again after that. */
void main_loop_run(void);
void main_loop_quit(void);

uint64_t clock_ns(void);  /* CLOCK_MONOTONIC in ns */

#endif
