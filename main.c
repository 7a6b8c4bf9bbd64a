/* vmon: parse the command line, assemble the machine, run it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "block/block.h"
#include "accel/accel.h"
#include "boot/boot.h"
#include "chardev/chardev.h"
#include "config/config.h"
#include "hw/board.h"
#include "machine/machine.h"
#include "migration/migration.h"
#include "monitor/monitor.h"
#include "util/log.h"
#include "util/main_loop.h"

static struct machine machine;
static int signal_fd = -1;

static void quit_from_console(void *opaque)
{
    machine_request_shutdown(opaque, SHUTDOWN_HOST_QUIT, 0);
}

static void signal_ready(void *opaque, uint32_t events)
{
    struct signalfd_siginfo si;

    if (read(signal_fd, &si, sizeof(si)) != sizeof(si))
        return;
    error_report("terminating on signal %u", si.ssi_signo);
    machine_request_shutdown(opaque, SHUTDOWN_HOST_QUIT, 0);
}

/* Termination signals arrive through the main loop, so that the terminal
 * is restored and the vCPUs are stopped in order. */
static int watch_signals(struct machine *m)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    /* Blocked before any thread starts, so every thread inherits it. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0)
        return -errno;
    return main_loop_add_fd(signal_fd, EPOLLIN, signal_ready, m);
}

static int load_vcpu_states(struct machine *m)
{
    for (int i = 0; i < m->nr_vcpus; i++) {
        int ret = m->accel->set_state(m->vcpus[i], &m->vcpus[i]->state);
        if (ret < 0) {
            error_report("vCPU %d: cannot load its boot state: %s", i, strerror(-ret));
            return ret;
        }
    }
    return 0;
}

/* A guest reset: devices to power-on state, CPUs to INIT state, kernel
 * re-placed, as QEMU's direct kernel boot does on reboot. */
static int reset_machine(struct machine *m)
{
    int ret;

    if (m->accel->reset)
        m->accel->reset(m);
    board_reset(m);
    for (int i = 0; i < m->nr_vcpus; i++)
        cpu_state_reset(&m->vcpus[i]->state, (unsigned)i, i == 0);
    ret = boot_reset(m);
    if (ret < 0)
        return ret;
    /* The vCPU threads load v->state when they leave the park. */
    return 0;
}

int main(int argc, char **argv)
{
    struct vm_config cfg;
    const struct accel_ops *accel;
    int ret, status;

    if (argc > 1 && !strcmp(argv[1], "stat"))
        return monitor_stat_main(argc - 1, argv + 1);
    ret = config_parse_cli(&cfg, argc, argv);
    if (ret)
        return ret < 0 ? 1 : 0;

    accel = accel_select(cfg.accel);
    if (!accel)
        return 1;
    if (main_loop_init() < 0)
        fatal("cannot create the main loop: %s", strerror(errno));
    /* An incoming VM opens its disks unlocked until the state is in. */
    if (cfg.incoming)
        block_devices_start_inactive();
    if (machine_init(&machine, &cfg) < 0)
        return 1;
    machine.accel = accel;
    ret = accel->init(&machine);
    if (ret < 0) {
        error_report("-accel %s: cannot create the VM: %s", accel->name, strerror(-ret));
        machine.accel = NULL;
        goto fail;
    }
    if (machine_create_vcpus(&machine) < 0)
        goto fail;
    if (board_init(&machine) < 0)
        goto fail;
    if (boot_load(&machine) < 0)
        goto fail;
    if (load_vcpu_states(&machine) < 0)
        goto fail;
    if (cfg.incoming && migration_incoming_startup(&machine, cfg.incoming) < 0)
        goto fail;
    machine.reset_hook = reset_machine;
    chardev_set_quit_handler(quit_from_console, &machine);
    if (watch_signals(&machine) < 0)
        fatal("cannot watch termination signals: %s", strerror(errno));

    if (monitor_init(&machine) < 0)
        goto fail;

    ret = machine_start_vcpus(&machine);
    if (ret < 0) {
        error_report("cannot start vCPU threads: %s", strerror(-ret));
        machine_request_shutdown(&machine, SHUTDOWN_HOST_QUIT, 1);
    }
    main_loop_run();
    migration_cleanup(&machine);
    monitor_cleanup();
    machine_stop_vcpus(&machine);
    status = machine.exit_status;
    machine_destroy(&machine);
    main_loop_cleanup();
    chardev_restore_terminal();
    return status;

fail:
    machine_destroy(&machine);
    chardev_restore_terminal();
    return 1;
}
