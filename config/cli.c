/* The command line, in QEMU's spelling so that scripts carry over.  Options
 * are a table; each entry parses its argument into struct vm_config. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "chardev/chardev.h"
#include "config/config.h"
#include "machine/machine.h"
#include "util/log.h"
#include "util/trace.h"
#include "version.h"

struct cli_option {
    const char *name;       /* without the leading dash(es) */
    const char *arg;        /* argument placeholder, NULL for a flag */
    const char *help;
    int (*parse)(struct vm_config *cfg, const char *opt, const char *arg);
};

int parse_size(const char *s, uint64_t default_unit, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t unit = default_unit;

    if (!*s || *s == '-')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case '\0': break;
    case 'b': case 'B': unit = 1; end++; break;
    case 'k': case 'K': unit = KiB; end++; break;
    case 'm': case 'M': unit = MiB; end++; break;
    case 'g': case 'G': unit = GiB; end++; break;
    case 't': case 'T': unit = 1024 * GiB; end++; break;
    default: return -1;
    }
    if ((*end == 'i' || *end == 'I') && (end[1] == 'b' || end[1] == 'B'))
        end += 2;
    else if (unit != 1 && (*end == 'b' || *end == 'B'))
        end++;
    if (*end)
        return -1;
    if (v > UINT64_MAX / unit)
        return -1;
    *out = v * unit;
    return 0;
}

static int opt_kernel(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->kernel = arg;
    return 0;
}

static int opt_initrd(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->initrd = arg;
    return 0;
}

static int opt_append(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->append = arg;
    return 0;
}

static int opt_m(struct vm_config *cfg, const char *opt, const char *arg)
{
    uint64_t size;

    if (!strncmp(arg, "size=", 5))
        arg += 5;
    if (parse_size(arg, MiB, &size) < 0) {
        error_report("-m %s: invalid RAM size (examples: 256, 512M, 2G)", arg);
        return -1;
    }
    if (size < 2 * MiB || size > 1024 * GiB) {
        error_report("-m %s: RAM size must be between 2M and 1T", arg);
        return -1;
    }
    if (size % (4 * KiB)) {
        error_report("-m %s: RAM size must be a multiple of 4K", arg);
        return -1;
    }
    cfg->ram_size = size;
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (!*s || *s == '-')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 0);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* -smp N or -smp cpus=N[,sockets=S,cores=C,threads=T,maxcpus=M]; the
 * topology only has to multiply out, vmon presents flat CPUs. */
static int opt_smp(struct vm_config *cfg, const char *opt, const char *arg)
{
    char buf[256], *save = NULL, *tok;
    unsigned long cpus = 0, topo = 1, v;
    bool have_topo = false;

    if (strlen(arg) >= sizeof(buf))
        goto bad;
    strcpy(buf, arg);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *key = eq ? tok : "cpus";
        const char *val = eq ? eq + 1 : tok;

        if (eq)
            *eq = '\0';
        if (parse_uint(val, MACHINE_MAX_VCPUS * 64, &v) < 0 || v == 0)
            goto bad;
        if (!strcmp(key, "cpus")) {
            cpus = v;
        } else if (!strcmp(key, "sockets") || !strcmp(key, "cores") ||
                   !strcmp(key, "threads") || !strcmp(key, "dies")) {
            topo *= v;
            have_topo = true;
        } else if (strcmp(key, "maxcpus")) {
            error_report("-smp %s: unknown property '%s'", arg, key);
            return -1;
        }
    }
    if (!cpus)
        cpus = topo;
    if (have_topo && topo != cpus)
        goto bad;
    if (cpus < 1 || cpus > MACHINE_MAX_VCPUS) {
        error_report("-smp %s: vmon supports 1 to %d CPUs", arg, MACHINE_MAX_VCPUS);
        return -1;
    }
    cfg->smp = (unsigned)cpus;
    return 0;
bad:
    error_report("-smp %s: invalid CPU count", arg);
    return -1;
}

static int opt_accel(struct vm_config *cfg, const char *opt, const char *arg)
{
    static const char *const names[] = { "kvm", "emu", "tcg", "auto" };

    if (!strncmp(arg, "accel=", 6))
        arg += 6;
    if (!strcmp(arg, "help")) {
        accel_print_available();
        return 1;
    }
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (!strcmp(arg, names[i])) {
            cfg->accel = names[i];
            return 0;
        }
    }
    error_report("-accel %s: unknown accelerator (kvm, emu, tcg or auto)", arg);
    return -1;
}

static int opt_enable_kvm(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->accel = "kvm";
    return 0;
}

static int opt_nographic(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->nographic = true;
    return 0;
}

static int opt_display(struct vm_config *cfg, const char *opt, const char *arg)
{
    if (strcmp(arg, "none")) {
        error_report("-display %s: vmon has no graphical display; use -display none or -nographic", arg);
        return -1;
    }
    cfg->display_none = true;
    return 0;
}

static int opt_nodefaults(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->nodefaults = true;
    return 0;
}

static int opt_serial(struct vm_config *cfg, const char *opt, const char *arg)
{
    if (!strcmp(arg, "stdio") || !strcmp(arg, "mon:stdio")) {
        cfg->serial = SERIAL_STDIO;
    } else if (!strcmp(arg, "none") || !strcmp(arg, "null")) {
        cfg->serial = SERIAL_NONE;
    } else if (!strncmp(arg, "file:", 5) && arg[5]) {
        cfg->serial = SERIAL_FILE;
        cfg->serial_path = arg + 5;
    } else {
        error_report("-serial %s: unsupported backend (stdio, mon:stdio, file:PATH, none)", arg);
        return -1;
    }
    return 0;
}

static int opt_no_reboot(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->no_reboot = true;
    return 0;
}

static int opt_name(struct vm_config *cfg, const char *opt, const char *arg)
{
    if (!strncmp(arg, "guest=", 6))
        arg += 6;
    cfg->name = arg;
    return 0;
}

/* QEMU's spelling: 8-4-4-4-12 hex digits. */
static int opt_uuid(struct vm_config *cfg, const char *opt, const char *arg)
{
    static const int dash_at[] = { 8, 13, 18, 23 };
    unsigned n = 0;

    for (size_t i = 0; arg[i]; i++) {
        bool dash = false;

        for (size_t k = 0; k < ARRAY_SIZE(dash_at); k++)
            dash |= (int)i == dash_at[k];
        if (dash) {
            if (arg[i] != '-')
                goto bad;
            continue;
        }
        if (!isxdigit((unsigned char)arg[i]) || n >= 32)
            goto bad;
        unsigned v = (unsigned)(isdigit((unsigned char)arg[i]) ? arg[i] - '0'
                                                               : (tolower(arg[i]) - 'a' + 10));
        cfg->uuid[n / 2] = (uint8_t)(n % 2 ? cfg->uuid[n / 2] | v : v << 4);
        n++;
    }
    if (n == 32 && strlen(arg) == 36) {
        cfg->has_uuid = true;
        return 0;
    }
bad:
    error_report("-uuid %s: not a UUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", arg);
    return -1;
}

static int opt_d(struct vm_config *cfg, const char *opt, const char *arg)
{
    int r = log_parse_items(arg);

    return r < 0 ? -1 : r;
}

static int opt_D(struct vm_config *cfg, const char *opt, const char *arg)
{
    int r = log_set_file(arg);

    if (r < 0) {
        error_report("-D %s: %s", arg, strerror(-r));
        return -1;
    }
    return 0;
}

static int opt_device(struct vm_config *cfg, const char *opt, const char *arg)
{
    if (cfg->nr_devices >= CONFIG_MAX_DEVICES) {
        error_report("-device %s: too many devices (at most %d)", arg, CONFIG_MAX_DEVICES);
        return -1;
    }
    cfg->devices[cfg->nr_devices++] = arg;
    return 0;
}

static int opt_chardev(struct vm_config *cfg, const char *opt, const char *arg)
{
    if (cfg->nr_chardevs >= CONFIG_MAX_CHARDEVS) {
        error_report("-chardev %s: too many character devices (at most %d)", arg,
                     CONFIG_MAX_CHARDEVS);
        return -1;
    }
    if (chardev_config_check(arg, cfg->chardevs, cfg->nr_chardevs) < 0)
        return -1;
    cfg->chardevs[cfg->nr_chardevs++] = arg;
    return 0;
}

static int opt_qmp(struct vm_config *cfg, const char *opt, const char *arg)
{
    if (cfg->nr_qmp >= CONFIG_MAX_QMP) {
        error_report("-qmp %s: too many QMP endpoints (at most %d)", arg, CONFIG_MAX_QMP);
        return -1;
    }
    cfg->qmp[cfg->nr_qmp++] = arg;
    return 0;
}

static int opt_S(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->start_paused = true;
    return 0;
}

static int opt_incoming(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->incoming = arg;
    return 0;
}

static int opt_no_shutdown(struct vm_config *cfg, const char *opt, const char *arg)
{
    cfg->no_shutdown = true;
    return 0;
}

static int opt_trace(struct vm_config *cfg, const char *opt, const char *arg)
{
    return trace_parse_option(arg);
}

static int opt_help(struct vm_config *cfg, const char *opt, const char *arg);

static int opt_version(struct vm_config *cfg, const char *opt, const char *arg)
{
    printf("vmon version %s\n", VMON_VERSION);
    return 1;
}

static const struct cli_option options[] = {
    { "kernel", "FILE", "boot a Linux bzImage, ELF64 vmlinux or Multiboot kernel", opt_kernel },
    { "initrd", "FILE", "initial ram disk (Multiboot: modules, comma separated)", opt_initrd },
    { "append", "STR", "kernel command line", opt_append },
    { "m", "SIZE", "guest RAM (default 128M; bare numbers are MiB)", opt_m },
    { "smp", "N", "number of CPUs (or cpus=N,sockets=S,cores=C,threads=T)", opt_smp },
    { "accel", "NAME", "accelerator: kvm, emu (alias tcg) or auto", opt_accel },
    { "enable-kvm", NULL, "same as -accel kvm", opt_enable_kvm },
    { "nographic", NULL, "no display; serial port on stdio", opt_nographic },
    { "display", "none", "no display", opt_display },
    { "nodefaults", NULL, "create no default devices (no default serial port)", opt_nodefaults },
    { "serial", "DEV", "COM1 backend: stdio, mon:stdio, file:PATH, none", opt_serial },
    { "no-reboot", NULL, "exit instead of rebooting", opt_no_reboot },
    { "name", "NAME", "name of the guest", opt_name },
    { "uuid", "UUID", "the system UUID the guest sees (SMBIOS)", opt_uuid },
    { "d", "ITEMS", "enable debug log items (-d help lists them)", opt_d },
    { "D", "FILE", "write the debug log to FILE", opt_D },
    { "chardev", "socket|stdio|file|null,id=ID[,path=P][,server=on|off][,wait=on|off]", "character backend for virtconsole (socket: a unix socket)", opt_chardev },
    { "device", "DRIVER[,PROP=VAL...]", "add a device (e.g. isa-debug-exit,iobase=0xf4,iosize=0x04)", opt_device },
    { "drive", "file=F[,format=raw|qcow2][,if=virtio|none][,id=ID][,readonly=on][,cache=M]", "add a disk (if=virtio: a virtio-blk-pci)", config_opt_drive },
    { "netdev", "user|tap,id=ID[,...]", "network backend (user: hostfwd=, net=; tap: ifname=)", config_opt_netdev },
    { "nic", "user|tap[,mac=M][,...]", "network backend plus a virtio-net-pci", config_opt_nic },
    { "qmp", "DEV", "QMP server: unix:PATH,server=on,wait=off or tcp:HOST:PORT,server=on,wait=off", opt_qmp },
    { "S", NULL, "do not start the CPUs until QMP 'cont'", opt_S },
    { "incoming", "file:PATH|tcp:HOST:PORT|defer", "resume a snapshot, or a live migration sent to HOST:PORT (defer: wait for QMP migrate-incoming)", opt_incoming },
    { "no-shutdown", NULL, "on guest shutdown stop the CPUs but keep QMP up until 'quit'", opt_no_shutdown },
    { "trace", "[enable=]PATTERN", "trace events matching PATTERN (also events=FILE, file=PATH)", opt_trace },
    { "h", NULL, "print this help", opt_help },
    { "help", NULL, "print this help", opt_help },
    { "version", NULL, "print the version", opt_version },
};

static int opt_help(struct vm_config *cfg, const char *opt, const char *arg)
{
    printf("usage: vmon [options]\n"
           "vmon %s, a virtual machine monitor for x86-64 guests (QEMU-style options)\n\n",
           VMON_VERSION);
    for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
        char left[64];

        snprintf(left, sizeof(left), "-%s%s%s", options[i].name,
                 options[i].arg ? " " : "", options[i].arg ? options[i].arg : "");
        printf("  %-30s %s\n", left, options[i].help);
    }
    printf("\nDuring emulation on stdio: C-a x exits, C-a h prints help.\n");
    return 1;
}

static const struct cli_option *find_option(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(options); i++)
        if (!strcmp(options[i].name, name))
            return &options[i];
    return NULL;
}

int config_parse_cli(struct vm_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->ram_size = 128 * MiB;
    cfg->smp = 1;
    cfg->accel = "auto";

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct cli_option *o;
        const char *arg = NULL;
        int r;

        if (a[0] != '-' || !a[1]) {
            error_report("%s: unexpected argument (vmon takes only options; see -h)", a);
            return -1;
        }
        a += (a[1] == '-') ? 2 : 1;   /* QEMU accepts -opt and --opt */
        o = find_option(a);
        if (!o) {
            error_report("-%s: invalid option (see -h)", a);
            return -1;
        }
        if (o->arg) {
            if (i + 1 >= argc) {
                error_report("-%s: requires an argument (%s)", a, o->arg);
                return -1;
            }
            arg = argv[++i];
        }
        r = o->parse(cfg, a, arg);
        if (r)
            return r;
    }

    if (cfg->serial == SERIAL_DEFAULT)
        cfg->serial = (cfg->nodefaults || cfg->display_none) ? SERIAL_NONE : SERIAL_STDIO;
    if (!cfg->kernel) {
        error_report("no kernel given: use -kernel FILE (vmon has no firmware to boot from disk yet)");
        return -1;
    }
    if (access(cfg->kernel, R_OK) < 0) {
        error_report("-kernel %s: %s", cfg->kernel, strerror(errno));
        return -1;
    }
    return 0;
}
