/* The monitor as the rest of vmon sees it: start the QMP servers, flush
 * them before exit, and the `vmon stat` front end. */
#ifndef VMON_MONITOR_MONITOR_H
#define VMON_MONITOR_MONITOR_H

struct machine;

/* Before the vCPUs start: open every -qmp endpoint, honour -S, and watch
 * the machine's run-state events.  Returns 0 or -1 after error_report(). */
int monitor_init(struct machine *m);
/* After the main loop: deliver what is queued (SHUTDOWN) and close. */
void monitor_cleanup(void);
/* `vmon stat ...`: the live exit-statistics table; returns the exit status. */
int monitor_stat_main(int argc, char **argv);

#endif
