/* The VM's configuration, filled from the command line (config/cli.c) and
 * read by everything else.  Nothing here is guest-controlled. */
#ifndef VMON_CONFIG_CONFIG_H
#define VMON_CONFIG_CONFIG_H

#include "util/types.h"

#define CONFIG_MAX_DEVICES 32
#define CONFIG_MAX_QMP 8
#define CONFIG_MAX_DRIVES 16
#define CONFIG_MAX_NETDEVS 8
#define CONFIG_MAX_CHARDEVS 8

enum serial_backend { SERIAL_DEFAULT, SERIAL_STDIO, SERIAL_FILE, SERIAL_NONE };

struct vm_config {
    const char *kernel;
    const char *initrd;    /* comma-separated list for Multiboot modules */
    const char *append;
    uint64_t ram_size;
    unsigned smp;
    const char *accel;     /* "kvm", "emu", "tcg", "auto" */
    const char *name;
    uint8_t uuid[16];      /* -uuid, in its text order; SMBIOS type 1 */
    bool has_uuid;
    bool nographic;
    bool display_none;
    bool nodefaults;
    bool no_reboot;
    enum serial_backend serial;
    const char *serial_path;
    /* -device arguments, verbatim ("isa-debug-exit,iobase=0xf4"); the board
     * resolves the drivers. */
    const char *devices[CONFIG_MAX_DEVICES];
    int nr_devices;
    /* -qmp endpoints, verbatim ("unix:PATH,server=on,wait=off"). */
    const char *qmp[CONFIG_MAX_QMP];
    int nr_qmp;
    /* -drive arguments, each given an id= (virtio0, virtio1, ... when the
     * user gave none); if=virtio ones also add a virtio-blk-pci device. */
    const char *drives[CONFIG_MAX_DRIVES];
    int nr_drives;
    /* -netdev arguments, verbatim ("user,id=n0,hostfwd=..."); -nic adds one
     * plus a virtio-net-pci device. */
    const char *netdevs[CONFIG_MAX_NETDEVS];
    int nr_netdevs;
    /* -chardev arguments, verbatim ("socket,id=c0,path=P,server=on"),
     * checked when parsed, opened by the frontend that names the id. */
    const char *chardevs[CONFIG_MAX_CHARDEVS];
    int nr_chardevs;
    bool start_paused;     /* -S: vCPUs wait for QMP "cont" */
    bool no_shutdown;      /* -no-shutdown: a guest shutdown leaves QMP up */
    const char *incoming;  /* -incoming: "file:PATH" or "defer", NULL if none */
};

/* Parse argv into cfg.  Returns 0 to run, 1 if the process should exit 0
 * (after --help/--version), -1 after printing a one-line error. */
int config_parse_cli(struct vm_config *cfg, int argc, char **argv);
/* Parse a size with an optional K/M/G/T suffix; a bare number is MiB when
 * default_unit is MiB, as QEMU's -m. Returns 0 or -1. */
/* -drive / -netdev / -nic handlers (config/cli_devices.c): 0 or -1 after an
 * error_report(). */
int config_opt_drive(struct vm_config *cfg, const char *opt, const char *arg);
int config_opt_netdev(struct vm_config *cfg, const char *opt, const char *arg);
int config_opt_nic(struct vm_config *cfg, const char *opt, const char *arg);
int parse_size(const char *s, uint64_t default_unit, uint64_t *out);

#endif
