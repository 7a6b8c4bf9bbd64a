/* Snapshots, incoming migration and live accelerator switching.
 *
 * The stream (docs/migration.md): a header with the machine configuration
 * digest, then checksummed sections named and versioned one by one: "cpu"
 * per vCPU (struct cpu_state), "pic"/"ioapic"/"pit" (vmon's irqchip model
 * format under either accelerator), one per stateful device, "ram" chunks
 * without their zero pages, and "end". */
#ifndef VMON_MIGRATION_MIGRATION_H
#define VMON_MIGRATION_MIGRATION_H

#include "machine/machine.h"
#include "migration/vmstate.h"
#include <jansson.h>

#define MIG_MAGIC "VMONSNAP"
/* Version 1: file snapshots.  Version 2 (live migration) adds "ram-dirty"
 * sections after the first full pass of "ram" chunks.  Readers take both. */
#define MIG_FORMAT_VERSION 1u
#define MIG_FORMAT_VERSION_LIVE 2u
#define MIG_SECTION_MAGIC 0x54434553u   /* "SECT" */
/* No section is larger (a RAM chunk is 1 MiB of pages plus a bitmap). */
#define MIG_MAX_SECTION (4u << 20)
#define MIG_RAM_CHUNK (1u << 20)
#define MIG_PAGE 4096u

/* State tables (the device ones live in their device's file). */
extern const struct vmstate_desc cpu_vmstate;
extern const struct vmstate_desc pic_chip_vmstate;
extern const struct vmstate_desc ioapic_vmstate;
extern const struct vmstate_desc pit_vmstate;
extern const struct vmstate_desc serial_vmstate;
extern const struct vmstate_desc rtc_vmstate;
extern const struct vmstate_desc pm_vmstate;
extern const struct vmstate_desc i8042_vmstate;
extern const struct vmstate_desc fw_cfg_vmstate;
extern const struct vmstate_desc port92_vmstate;
extern const struct vmstate_desc pci_host_vmstate;
extern const struct vmstate_desc virtio_blk_vmstate;
extern const struct vmstate_desc virtio_net_vmstate;
extern const struct vmstate_desc virtio_rng_vmstate;
extern const struct vmstate_desc virtio_console_vmstate;

/* The state table of a machine device by its machine_add_device() name;
 * *stateless is set for devices that have nothing to save.  NULL and not
 * stateless: the device cannot be snapshotted. */
const struct vmstate_desc *migration_device_desc(const char *name, bool *stateless);

/* A byte sink/source: a file or a TCP socket. */
struct mig_channel {
    int fd;
    const char *what;       /* "file:PATH", "tcp:HOST:PORT", for errors */
    uint64_t bytes;         /* transferred so far */
    uint32_t version;       /* format version written (0: 1) or read */
    bool sock;              /* a socket: writes never raise SIGPIPE */
    bool lock_commit;       /* loading off the main loop: take the machine
                             * lock to commit the state */
    bool vm_paused;         /* save: the VM was paused when the migration
                             * began; load: the stream says so (QEMU's global
                             * run state: the destination stays paused) */
};

/* Write the whole machine state.  Every vCPU must be parked (or not yet
 * started): v->state is authoritative.  0 or -errno after error_report. */
int migration_save(struct machine *m, struct mig_channel *ch);
/* Read a stream and, only if all of it is present and valid, load it into
 * the machine (vCPUs parked or not started; their accelerator state is set
 * from the loaded v->state).  Guest RAM is written as it arrives. */
int migration_load(struct machine *m, struct mig_channel *ch);

/* URIs: "file:PATH" (tcp: URIs go through migration_live_start and
 * migration_incoming_start).  Same contract as above. */
int migration_save_uri(struct machine *m, const char *uri, bool vm_paused);
/* The incoming state is in (main loop): resume, or stay paused when the
 * stream came from a paused VM or vmon was started with -S. */
void migration_incoming_resume(struct machine *m, bool stream_paused);
int migration_load_uri(struct machine *m, const char *uri, bool *vm_paused);

/* Live accelerator switch: pause, move vCPU and irqchip state to `to`,
 * resume unless the VM was paused.  Machine lock held (main loop).  0 or
 * -errno after error_report; on failure the old accelerator runs again. */
int accel_switch(struct machine *m, const struct accel_ops *to);

/* -incoming at startup (main.c, after the machine is built, before the
 * vCPU threads start): "file:PATH" loads now, "defer" waits for QMP
 * migrate-incoming.  0 or -1. */
int migration_incoming_startup(struct machine *m, const char *uri);
/* Live migration over TCP (migration/live.c, migration/incoming.c). */
struct mig_params {
    uint64_t downtime_limit_ms;   /* QEMU's downtime-limit, default 300 */
    uint64_t max_bandwidth;       /* bytes/s, QEMU's default 128 MiB/s */
};
extern struct mig_params mig_params;
/* Start sending to "tcp:HOST:PORT" on a migration thread; events and
 * status as QEMU reports them.  Main loop, machine lock held.  0 or -errno
 * with msg set. */
int migration_live_start(struct machine *m, const char *uri, char *msg, size_t msg_len);
/* migrate_cancel: 0, or -EINVAL when nothing is being sent. */
int migration_live_cancel(void);
/* True from migrate until the migration ends. */
bool migration_live_active(void);
/* query-migrate's object (new reference), or NULL if no live migration
 * ran. */
json_t *migration_live_query(struct machine *m);
/* Listen on "tcp:HOST:PORT" and load the first stream that connects on an
 * incoming thread; the VM resumes when it is complete, and vmon ends with
 * status 1 if it is not.  0 or -errno after error_report. */
int migration_incoming_start(struct machine *m, const char *uri);
/* An incoming tcp: migration listens or loads. */
bool migration_incoming_pending(void);
/* Stop and join the migration threads (end of main). */
void migration_cleanup(struct machine *m);
void migration_live_cleanup(void);
/* Split "tcp:HOST:PORT"; 0 or -EINVAL. */
int migration_parse_tcp(const char *uri, char *host, size_t host_len, char *port,
                        size_t port_len);

/* QMP commands (migrate, query-migrate, migrate-incoming, x-accel-switch,
 * query-accel); called by the monitor's table registration. */
void migration_qmp_register(void);

#endif
