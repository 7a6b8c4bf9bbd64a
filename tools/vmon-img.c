/* vmon-img: create, inspect, check, convert, resize and map disk images,
 * with qemu-img's command line, output layouts and exit codes. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"

#define ERRLEN 512

static void die(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(const char *file, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "vmon-img: ");
    if (file)
        fprintf(stderr, "%s: ", file);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* "1G", "512M", "100k", "4096" ... binary suffixes as qemu-img. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    double v;
    uint64_t mul = 1;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -EINVAL;
    switch (*end) {
    case 'b': case 'B': case '\0': mul = 1; break;
    case 'k': case 'K': mul = KiB; break;
    case 'm': case 'M': mul = MiB; break;
    case 'g': case 'G': mul = GiB; break;
    case 't': case 'T': mul = 1024 * GiB; break;
    case 'p': case 'P': mul = 1024 * 1024 * GiB; break;
    case 'e': case 'E': mul = 1024ULL * 1024 * 1024 * GiB; break;
    default: return -EINVAL;
    }
    if (*end && end[1])
        return -EINVAL;
    if (v * (double)mul >= 18446744073709551616.0)
        return -ERANGE;
    *out = (uint64_t)(v * (double)mul);
    return 0;
}

static char *size_to_str(uint64_t val)
{
    static const char *suffixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    static char buf[64];
    int i;

    /* QEMU's rule: switch unit once the number would reach 1000. */
    double lim = 1000.0;

    for (i = 0; i < 6 && (double)val >= lim; i++)
        lim *= 1024.0;
    snprintf(buf, sizeof(buf), "%0.3g %sB", (double)val / (double)(1ULL << (i * 10)),
             suffixes[i]);
    return buf;
}

static struct block_state *open_image_cache(const char *file, const char *fmt, unsigned flags,
                                           enum block_cache_mode cache)
{
    char err[ERRLEN];
    struct block_state *bs = block_open(file, fmt, flags, cache, err, sizeof(err));

    if (!bs)
        die(file, "%s", err);
    return bs;
}

static struct block_state *open_image(const char *file, const char *fmt, unsigned flags)
{
    char err[ERRLEN];
    struct block_state *bs = block_open(file, fmt, flags, BLOCK_CACHE_WRITEBACK, err, sizeof(err));

    if (!bs)
        die(file, "%s", err);
    return bs;
}

static bool want_json(const char *output, const char *file)
{
    if (!output || !strcmp(output, "human"))
        return false;
    if (!strcmp(output, "json"))
        return true;
    die(file, "--output must be used with human or json as argument.");
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(4) | JSON_PRESERVE_ORDER);

    printf("%s\n", s);
    free(s);
    json_decref(j);
}

/* ---- create ---- */

struct create_opts {
    const char *fmt;
    struct qcow2_create_opts q;
    const char *backing, *backing_fmt;
};

static void parse_o(const char *file, char *opts, struct create_opts *c)
{
    for (char *save = NULL, *kv = strtok_r(opts, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *v = strchr(kv, '=');
        uint64_t n;

        if (!v)
            die(file, "Invalid option list: %s", kv);
        *v++ = 0;
        if (!strcmp(kv, "cluster_size")) {
            if (parse_size(v, &n) < 0 || n < 512 || n > 2 * MiB || (n & (n - 1)))
                die(file, "Cluster size must be a power of two between 512 and 2048k");
            c->q.cluster_bits = (unsigned)__builtin_ctzll(n);
        } else if (!strcmp(kv, "compat")) {
            if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
                c->q.version = 2;
            else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
                c->q.version = 3;
            else
                die(file, "Invalid compatibility level: '%s'", v);
        } else if (!strcmp(kv, "lazy_refcounts")) {
            c->q.lazy_refcounts = !strcmp(v, "on");
        } else if (!strcmp(kv, "refcount_bits")) {
            n = strtoull(v, NULL, 10);
            if (!n || n > 64 || (n & (n - 1)))
                die(file, "Refcount width must be a power of two and may not exceed 64 bits");
            c->q.refcount_order = (unsigned)__builtin_ctzll(n);
        } else if (!strcmp(kv, "compression_type")) {
            if (strcmp(v, "zlib") && strcmp(v, "zstd"))
                die(file, "Invalid parameter '%s'", v);
            c->q.zstd = !strcmp(v, "zstd");
        } else if (!strcmp(kv, "backing_file")) {
            c->backing = v;
        } else if (!strcmp(kv, "backing_fmt")) {
            c->backing_fmt = v;
        } else if (!strcmp(kv, "preallocation") || !strcmp(kv, "extended_l2")) {
            if (strcmp(v, "off"))
                die(file, "%s=%s is not supported", kv, v);
        } else {
            die(file, "Invalid parameter '%s'", kv);
        }
    }
}

static void do_create_image(const char *file, struct create_opts *c, uint64_t size, bool quiet)
{
    char err[ERRLEN];
    int r;

    if (!strcmp(c->fmt, "raw")) {
        if (c->backing)
            die(file, "Backing file not supported for file format 'raw'");
        if (!quiet)
            printf("Formatting '%s', fmt=raw size=%" PRIu64 "\n", file, size);
        r = raw_create(file, size, err, sizeof(err));
    } else if (!strcmp(c->fmt, "qcow2")) {
        c->q.size = ALIGN_UP(size, 512);
        c->q.backing_file = c->backing;
        c->q.backing_format = c->backing_fmt;
        if (!quiet) {
            printf("Formatting '%s', fmt=qcow2 cluster_size=%llu extended_l2=off "
                   "compression_type=%s size=%" PRIu64,
                   file, 1ULL << c->q.cluster_bits, c->q.zstd ? "zstd" : "zlib", c->q.size);
            if (c->backing)
                printf(" backing_file=%s", c->backing);
            if (c->backing_fmt)
                printf(" backing_fmt=%s", c->backing_fmt);
            printf(" lazy_refcounts=%s refcount_bits=%u\n", c->q.lazy_refcounts ? "on" : "off",
                   1u << c->q.refcount_order);
        }
        r = qcow2_create(file, &c->q, err, sizeof(err));
    } else {
        die(file, "Unknown file format '%s'", c->fmt);
    }
    if (r < 0)
        die(file, "%s", err);
}

static void create_defaults(struct create_opts *c)
{
    memset(c, 0, sizeof(*c));
    c->fmt = "raw";
    c->q.cluster_bits = 16;
    c->q.version = 3;
    c->q.refcount_order = 4;
}

static int cmd_create(int argc, char **argv)
{
    struct create_opts c;
    bool quiet = false;
    uint64_t size = 0;
    int opt;

    create_defaults(&c);
    while ((opt = getopt(argc, argv, "+f:o:b:F:qu")) != -1) {
        switch (opt) {
        case 'f': c.fmt = optarg; break;
        case 'o': parse_o(NULL, optarg, &c); break;
        case 'b': c.backing = optarg; break;
        case 'F': c.backing_fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'u': break;
        default: return 1;
        }
    }
    if (optind >= argc)
        die(NULL, "Expecting image file name");
    const char *file = argv[optind];

    if (optind + 1 < argc) {
        if (parse_size(argv[optind + 1], &size) < 0)
            die(file, "Invalid image size specified. You may use k, M, G, T, P or E suffixes "
                      "for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    } else if (c.backing) {
        /* Size from the backing file, resolved relative to the new image. */
        char path[4096];
        const char *slash = strrchr(file, '/');
        struct block_state *b;

        if (c.backing[0] != '/' && slash)
            snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - file), file, c.backing);
        else
            snprintf(path, sizeof(path), "%s", c.backing);
        b = open_image(path, c.backing_fmt, BLOCK_O_NO_LOCK);
        size = block_getlength(b);
        if (!c.backing_fmt)
            c.backing_fmt = b->drv->name;
        block_close(b);
    } else {
        die(file, "Image creation needs a size parameter");
    }
    if (c.backing && !c.backing_fmt) {
        char path[4096];
        const char *slash = strrchr(file, '/');
        struct block_state *b;

        if (c.backing[0] != '/' && slash)
            snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - file), file, c.backing);
        else
            snprintf(path, sizeof(path), "%s", c.backing);
        b = open_image(path, NULL, BLOCK_O_NO_LOCK | BLOCK_O_NO_BACKING);
        c.backing_fmt = b->drv->name;
        block_close(b);
    }
    do_create_image(file, &c, size, quiet);
    return 0;
}

/* ---- info ---- */

/* The backing file as the overlay resolves it (relative to its directory). */
static void full_backing(const char *file, const char *backing, char *out, size_t len)
{
    const char *slash = strrchr(file, '/');

    if (backing[0] != '/' && slash)
        snprintf(out, len, "%.*s/%s", (int)(slash - file), file, backing);
    else
        snprintf(out, len, "%s", backing);
}

static void format_clock(char *buf, size_t len, uint64_t ns)
{
    uint64_t secs = ns / 1000000000ULL;

    snprintf(buf, len, "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64, secs / 3600,
             (secs / 60) % 60, secs % 60, (ns / 1000000) % 1000);
}

/* qemu-img's "Snapshot list:" table (info and snapshot -l). */
static void print_snapshot_table(const struct block_info *info)
{
    if (!info->nb_snapshots)
        return;
    printf("Snapshot list:\n");
    printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (int i = 0; i < info->nb_snapshots; i++) {
        const struct block_snapshot_info *sn = &info->snapshots[i];
        char date[32], clk[32], ic[32] = "";
        time_t t = sn->date_sec;
        struct tm tm;

        localtime_r(&t, &tm);
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        format_clock(clk, sizeof(clk), sn->vm_clock_nsec);
        if (sn->icount != UINT64_MAX)
            snprintf(ic, sizeof(ic), "%" PRIu64, sn->icount);
        printf("%-9s %-16s %8s%20s%13s%11s\n", sn->id, sn->name, size_to_str(sn->vm_state_size),
               date, clk, ic);
    }
}

static int cmd_info(int argc, char **argv)
{
    static const struct option lopts[] = { { "output", required_argument, NULL, 'O' },
                                           { "force-share", no_argument, NULL, 'U' },
                                           { NULL, 0, NULL, 0 } };
    const char *fmt = NULL, *output = NULL;
    unsigned flags = BLOCK_O_NO_BACKING | BLOCK_O_NO_REPAIR;
    struct block_info info;
    struct block_state *bs;
    struct stat st;
    uint64_t actual = 0;
    int opt;

    while ((opt = getopt_long(argc, argv, "+f:U", lopts, NULL)) != -1) {
        switch (opt) {
        case 'f': fmt = optarg; break;
        case 'O': output = optarg; break;
        case 'U': flags |= BLOCK_O_NO_LOCK; break;
        default: return 1;
        }
    }
    if (optind >= argc)
        die(NULL, "Expecting one image file name");
    const char *file = argv[optind];
    bool json = want_json(output, file);

    bs = open_image(file, fmt, flags);
    if (block_get_info(bs, &info) < 0)
        die(file, "cannot read image information");
    if (fstat(bs->fd, &st) == 0)
        actual = (uint64_t)st.st_blocks * 512;
    if (json) {
        json_t *j = json_object();

        if (info.backing_format[0])
            json_object_set_new(j, "backing-filename-format", json_string(info.backing_format));
        json_object_set_new(j, "virtual-size", json_integer((json_int_t)info.virtual_size));
        json_object_set_new(j, "filename", json_string(file));
        if (info.cluster_size)
            json_object_set_new(j, "cluster-size", json_integer((json_int_t)info.cluster_size));
        json_object_set_new(j, "format", json_string(bs->drv->name));
        json_object_set_new(j, "actual-size", json_integer((json_int_t)actual));
        if (info.nb_snapshots) {
            json_t *a = json_array();

            for (int i = 0; i < info.nb_snapshots; i++) {
                struct block_snapshot_info *sn = &info.snapshots[i];
                json_t *o = json_object();

                if (sn->icount != UINT64_MAX)
                    json_object_set_new(o, "icount", json_integer((json_int_t)sn->icount));
                json_object_set_new(o, "vm-clock-nsec",
                                    json_integer((json_int_t)(sn->vm_clock_nsec % 1000000000)));
                json_object_set_new(o, "name", json_string(sn->name));
                json_object_set_new(o, "date-sec", json_integer(sn->date_sec));
                json_object_set_new(o, "date-nsec", json_integer(sn->date_nsec));
                json_object_set_new(o, "vm-clock-sec",
                                    json_integer((json_int_t)(sn->vm_clock_nsec / 1000000000)));
                json_object_set_new(o, "id", json_string(sn->id));
                json_object_set_new(o, "vm-state-size", json_integer((json_int_t)sn->vm_state_size));
                json_array_append_new(a, o);
            }
            json_object_set_new(j, "snapshots", a);
        }
        if (info.is_qcow2) {
            json_t *fs = json_object(), *d = json_object();

            json_object_set_new(d, "compat", json_string(info.version >= 3 ? "1.1" : "0.10"));
            json_object_set_new(d, "compression-type", json_string(info.zstd ? "zstd" : "zlib"));
            if (info.version >= 3)
                json_object_set_new(d, "lazy-refcounts", json_boolean(info.lazy_refcounts));
            json_object_set_new(d, "refcount-bits", json_integer(info.refcount_bits));
            if (info.version >= 3) {
                json_object_set_new(d, "corrupt", json_boolean(info.corrupt));
                json_object_set_new(d, "extended-l2", json_boolean(info.extended_l2));
            }
            json_object_set_new(fs, "type", json_string("qcow2"));
            json_object_set_new(fs, "data", d);
            json_object_set_new(j, "format-specific", fs);
        }
        if (info.backing_file[0]) {
            char full[4096];

            full_backing(file, info.backing_file, full, sizeof(full));
            json_object_set_new(j, "full-backing-filename", json_string(full));
            json_object_set_new(j, "backing-filename", json_string(info.backing_file));
        }
        json_object_set_new(j, "dirty-flag", json_boolean(info.dirty));
        print_json(j);
    } else {
        printf("image: %s\n", file);
        printf("file format: %s\n", bs->drv->name);
        printf("virtual size: %s (%" PRIu64 " bytes)\n", size_to_str(info.virtual_size),
               info.virtual_size);
        printf("disk size: %s\n", size_to_str(actual));
        if (info.cluster_size)
            printf("cluster_size: %" PRIu64 "\n", info.cluster_size);
        if (info.backing_file[0]) {
            char full[4096];

            full_backing(file, info.backing_file, full, sizeof(full));
            if (strcmp(full, info.backing_file))
                printf("backing file: %s (actual path: %s)\n", info.backing_file, full);
            else
                printf("backing file: %s\n", info.backing_file);
            if (info.backing_format[0])
                printf("backing file format: %s\n", info.backing_format);
        }
        if (info.dirty)
            printf("cleanly shut down: no\n");
        print_snapshot_table(&info);
        if (info.is_qcow2) {
            printf("Format specific information:\n");
            printf("    compat: %s\n", info.version >= 3 ? "1.1" : "0.10");
            printf("    compression type: %s\n", info.zstd ? "zstd" : "zlib");
            if (info.version >= 3)
                printf("    lazy refcounts: %s\n", info.lazy_refcounts ? "true" : "false");
            printf("    refcount bits: %d\n", info.refcount_bits);
            if (info.version >= 3) {
                printf("    corrupt: %s\n", info.corrupt ? "true" : "false");
                printf("    extended l2: %s\n", info.extended_l2 ? "true" : "false");
            }
        }
    }
    block_info_free(&info);
    block_close(bs);
    return 0;
}

/* ---- check ---- */

static int cmd_check(int argc, char **argv)
{
    static const struct option lopts[] = { { "output", required_argument, NULL, 'O' },
                                           { "force-share", no_argument, NULL, 'U' },
                                           { NULL, 0, NULL, 0 } };
    const char *fmt = NULL, *output = NULL;
    unsigned fix = 0, flags = BLOCK_O_NO_BACKING | BLOCK_O_NO_REPAIR;
    struct block_check res;
    struct block_state *bs;
    bool quiet = false;
    int opt, r;

    while ((opt = getopt_long(argc, argv, "+f:r:qU", lopts, NULL)) != -1) {
        switch (opt) {
        case 'f': fmt = optarg; break;
        case 'O': output = optarg; break;
        case 'q': quiet = true; break;
        case 'U': flags |= BLOCK_O_NO_LOCK; break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                fix = BLOCK_FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS;
            else
                die(NULL, "Unknown option for -r (expecting 'leaks' or 'all'): %s", optarg);
            break;
        default: return 1;
        }
    }
    if (optind >= argc)
        die(NULL, "Expecting one image file name");
    const char *file = argv[optind];
    bool json = want_json(output, file);

    if (fix)
        flags |= BLOCK_O_RDWR;
    bs = open_image(file, fmt, flags);
    r = block_check(bs, fix, &res);
    if (r == -ENOTSUP) {
        fprintf(stderr, "vmon-img: %s: This image format does not support checks\n", file);
        block_close(bs);
        return 63;
    }
    if (r < 0) {
        fprintf(stderr, "vmon-img: %s: Check failed: %s\n", file,
                bs->errmsg[0] ? bs->errmsg : strerror(-r));
        block_close(bs);
        return 1;
    }
    if (json) {
        json_t *j = json_object();

        json_object_set_new(j, "image-end-offset", json_integer(res.image_end_offset));
        json_object_set_new(j, "total-clusters", json_integer(res.total_clusters));
        json_object_set_new(j, "check-errors", json_integer(res.check_errors));
        if (res.leaks)
            json_object_set_new(j, "leaks", json_integer(res.leaks));
        if (res.corruptions)
            json_object_set_new(j, "corruptions", json_integer(res.corruptions));
        if (res.leaks_fixed)
            json_object_set_new(j, "leaks-fixed", json_integer(res.leaks_fixed));
        if (res.corruptions_fixed)
            json_object_set_new(j, "corruptions-fixed", json_integer(res.corruptions_fixed));
        if (res.allocated_clusters)
            json_object_set_new(j, "allocated-clusters", json_integer(res.allocated_clusters));
        if (res.fragmented_clusters)
            json_object_set_new(j, "fragmented-clusters", json_integer(res.fragmented_clusters));
        if (res.compressed_clusters)
            json_object_set_new(j, "compressed-clusters", json_integer(res.compressed_clusters));
        json_object_set_new(j, "filename", json_string(file));
        json_object_set_new(j, "format", json_string(bs->drv->name));
        print_json(j);
    } else if (!quiet) {
        if (res.leaks_fixed || res.corruptions_fixed)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRId64 " leaked clusters\n    %" PRId64 " corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   res.leaks_fixed, res.corruptions_fixed);
        if (!res.corruptions && !res.leaks && !res.check_errors)
            printf("No errors were found on the image.\n");
        if (res.corruptions)
            printf("\n%" PRId64 " errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   res.corruptions);
        if (res.leaks)
            printf("\n%" PRId64 " leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n",
                   res.leaks);
        if (res.check_errors)
            printf("\n%" PRId64 " internal errors have occurred during the check.\n",
                   res.check_errors);
        if (res.total_clusters && res.has_cluster_stats) {
            double alloc = res.allocated_clusters ? (double)res.allocated_clusters : 1;

            printf("%" PRId64 "/%" PRId64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
                   "compressed clusters\n",
                   res.allocated_clusters, res.total_clusters,
                   res.allocated_clusters * 100.0 / (double)res.total_clusters,
                   res.fragmented_clusters * 100.0 / alloc,
                   res.compressed_clusters * 100.0 / alloc);
        }
        if (res.image_end_offset)
            printf("Image end offset: %" PRId64 "\n", res.image_end_offset);
    }
    block_close(bs);
    if (res.check_errors)
        return 1;
    if (res.corruptions)
        return 2;
    if (res.leaks)
        return 3;
    return 0;
}

/* ---- convert ---- */

static bool all_zero(const uint8_t *p, size_t len)
{
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        uint64_t v;

        memcpy(&v, p + i, 8);
        if (v)
            return false;
    }
    for (; i < len; i++)
        if (p[i])
            return false;
    return true;
}

static void progress(bool on, uint64_t done, uint64_t total)
{
    if (!on)
        return;
    printf("    (%3.2f/100%%)\r", total ? done * 100.0 / (double)total : 100.0);
    fflush(stdout);
}

#define CONVERT_CHUNK (2 * MiB)

/* Static so an error exit leaks nothing. */
static uint8_t convert_buf[CONVERT_CHUNK];

/* convert -l: "snapshot.id=ID,snapshot.name=NAME" (either or both), or a
 * bare ID or name (ID first), as qemu-img takes it. */
static void load_snapshot(struct block_state *bs, const char *file, const char *param)
{
    char *copy = strdup(param), *id = NULL, *name = NULL, *save = NULL;
    int r;

    if (!copy)
        die(file, "out of memory");
    if (!strncmp(param, "snapshot.", 9)) {
        for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            if (!strncmp(kv, "snapshot.id=", 12))
                id = kv + 12;
            else if (!strncmp(kv, "snapshot.name=", 14))
                name = kv + 14;
            else
                die(NULL, "Invalid parameter '%s' for -l", kv);
        }
        r = block_snapshot_load(bs, id, name);
    } else {
        r = block_snapshot_load(bs, param, NULL);
        if (r == -ENOENT)
            r = block_snapshot_load(bs, NULL, param);
    }
    free(copy);
    if (r < 0)
        die(NULL, "Failed to load snapshot: %s",
            r == -ENOENT ? "Can't find snapshot" : bs->errmsg[0] ? bs->errmsg : strerror(-r));
}

static int cmd_convert(int argc, char **argv)
{
    struct create_opts c;
    const char *in_fmt = NULL, *snap_param = NULL;
    bool compress = false, prog = false, quiet = false;
    struct block_state *in, *out;
    uint64_t size, gran, done = 0, last_pct = 0;
    uint8_t *buf;
    int opt, r;

    /* qemu-img convert writes its output with cache=unsafe unless -t says
     * otherwise: a failed convert is redone, not recovered. */
    enum block_cache_mode cache = BLOCK_CACHE_UNSAFE;

    create_defaults(&c);
    c.fmt = NULL;
    while ((opt = getopt(argc, argv, "+f:O:o:cpqUt:l:s:")) != -1) {
        switch (opt) {
        case 'l':
        case 's': snap_param = optarg; break;
        case 't':
            if (block_cache_mode_parse(optarg, &cache) < 0)
                die(NULL, "Invalid cache option: %s", optarg);
            break;
        case 'f': in_fmt = optarg; break;
        case 'O': c.fmt = optarg; break;
        case 'o': parse_o(NULL, optarg, &c); break;
        case 'c': compress = true; break;
        case 'p': prog = true; break;
        case 'q': quiet = true; break;
        case 'U': break;
        default: return 1;
        }
    }
    if (optind + 2 != argc)
        die(NULL, "Expecting one input and one output file name");
    const char *src = argv[optind], *dst = argv[optind + 1];

    if (!c.fmt)
        c.fmt = "raw";
    if (compress && strcmp(c.fmt, "qcow2"))
        die(dst, "Compression not supported for this file format");
    in = open_image(src, in_fmt, 0);
    if (snap_param)
        load_snapshot(in, src, snap_param);
    size = block_getlength(in);
    do_create_image(dst, &c, size, true);
    out = open_image_cache(dst, c.fmt, BLOCK_O_RDWR, cache);
    gran = out->drv->write_granularity ? out->drv->write_granularity(out) : 4096;
    if (compress)
        gran = out->drv->write_granularity(out);
    buf = convert_buf;
    if (quiet)
        prog = false;
    progress(prog, 0, size);
    while (done < size) {
        struct block_map m;
        uint64_t n;

        r = block_map(in, done, MIN(size - done, 64 * CONVERT_CHUNK), &m);
        if (r < 0)
            die(src, "error while reading block status: %s", strerror(-r));
        n = m.len;
        if (!(m.flags & BLOCK_MAP_DATA)) {
            done += n; /* the new image reads as zero already */
        } else {
            /* Work in granularity-aligned pieces so zero detection and
             * compression see whole clusters. */
            uint64_t end = done + n;

            while (done < end) {
                uint64_t chunk_end = MIN(end, ALIGN_DOWN(done, gran) + CONVERT_CHUNK);
                size_t len = (size_t)(chunk_end - done);

                r = block_pread(in, done, buf, len);
                if (r < 0)
                    die(src, "error while reading at byte %" PRIu64 ": %s", done,
                        in->errmsg[0] ? in->errmsg : strerror(-r));
                /* Non-zero pieces are gathered into runs so each run is one
                 * write (one allocation) in the output. */
                size_t run_start = 0, run_len = 0;

                for (size_t o = 0; o <= len;) {
                    size_t piece = o < len ? (size_t)MIN((uint64_t)len - o,
                                                         gran - ((done + o) % gran)) : 0;
                    bool data = o < len && !all_zero(buf + o, piece);

                    if (compress && data && piece == gran) {
                        r = block_pwrite_compressed(out, done + o, buf + o, piece);
                        if (r < 0)
                            die(dst, "error while writing at byte %" PRIu64 ": %s", done + o,
                                out->errmsg[0] ? out->errmsg : strerror(-r));
                        data = false;
                    } else if (data) {
                        if (!run_len)
                            run_start = o;
                        run_len += piece;
                    }
                    if (!data && run_len) {
                        r = block_pwrite(out, done + run_start, buf + run_start, run_len);
                        if (r < 0)
                            die(dst, "error while writing at byte %" PRIu64 ": %s",
                                done + run_start, out->errmsg[0] ? out->errmsg : strerror(-r));
                        run_len = 0;
                    }
                    if (o == len)
                        break;
                    o += piece;
                }
                done = chunk_end;
                if (prog && done * 100 / size != last_pct) {
                    last_pct = done * 100 / size;
                    progress(prog, done, size);
                }
            }
        }
    }
    progress(prog, size, size);
    if (prog)
        printf("\n");
    r = block_flush(out);
    if (r < 0)
        die(dst, "error while flushing: %s", strerror(-r));
    block_close(out);
    block_close(in);
    return 0;
}

/* ---- resize ---- */

static int cmd_resize(int argc, char **argv)
{
    static const struct option lopts[] = { { "shrink", no_argument, NULL, 'S' },
                                           { NULL, 0, NULL, 0 } };
    const char *fmt = NULL;
    bool shrink = false, quiet = false;
    struct block_state *bs;
    uint64_t cur, delta, size;
    int opt, r;

    /* "-1G" must not be taken for an option: stop at the file name. */
    while ((opt = getopt_long(argc, argv, "+f:q", lopts, NULL)) != -1) {
        switch (opt) {
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'S': shrink = true; break;
        default: return 1;
        }
    }
    if (optind + 2 != argc)
        die(NULL, "Expecting image file name and size");
    const char *file = argv[optind], *s = argv[optind + 1];

    bs = open_image(file, fmt, BLOCK_O_RDWR);
    cur = block_getlength(bs);
    if (parse_size(s[0] == '+' || s[0] == '-' ? s + 1 : s, &delta) < 0)
        die(file, "Invalid image size specified");
    size = s[0] == '+' ? cur + delta : s[0] == '-' ? cur - delta : delta;
    if (s[0] == '-' && delta > cur)
        die(file, "New image size must be positive");
    if (size < cur && !shrink) {
        fprintf(stderr, "vmon-img: %s: Use the --shrink option to perform a shrink operation.\n"
                        "vmon-img: warning: Shrinking an image will delete all data beyond the "
                        "shrunken image's end. Before performing such an operation, make sure "
                        "there is no important data there.\n", file);
        exit(1);
    }
    r = block_truncate(bs, size);
    if (r < 0)
        die(file, "%s", bs->errmsg[0] ? bs->errmsg : strerror(-r));
    block_close(bs);
    if (!quiet)
        printf("Image resized.\n");
    return 0;
}

/* ---- map ---- */

struct map_ent {
    uint64_t start, len, offset;
    unsigned flags;
    int depth;
    const char *file;
    bool valid;
};

static bool map_mergeable(const struct map_ent *a, const struct block_map *m)
{
    if (!a->valid || a->flags != m->flags || a->depth != m->depth || a->file != m->file)
        return false;
    return !(m->flags & BLOCK_MAP_OFFSET) || a->offset + a->len == m->host_offset;
}

static void map_emit(const struct map_ent *e, bool json, bool *first)
{
    if (!e->valid)
        return;
    if (json) {
        printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d, "
               "\"present\": %s, \"zero\": %s, \"data\": %s",
               *first ? "[" : ",\n", e->start, e->len, e->depth,
               (e->flags & BLOCK_MAP_ALLOCATED) ? "true" : "false",
               (e->flags & BLOCK_MAP_ZERO) ? "true" : "false",
               (e->flags & BLOCK_MAP_DATA) ? "true" : "false");
        if (e->flags & BLOCK_MAP_OFFSET)
            printf(", \"offset\": %" PRIu64, e->offset);
        printf("}");
    } else if ((e->flags & BLOCK_MAP_DATA) && (e->flags & BLOCK_MAP_OFFSET)) {
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->len, e->offset,
               e->file);
    }
    *first = false;
}

static int cmd_map(int argc, char **argv)
{
    static const struct option lopts[] = { { "output", required_argument, NULL, 'O' },
                                           { NULL, 0, NULL, 0 } };
    const char *fmt = NULL, *output = NULL;
    struct map_ent cur = { 0 };
    struct block_state *bs;
    bool first = true;
    uint64_t off = 0, size;
    int opt, r;

    while ((opt = getopt_long(argc, argv, "+f:U", lopts, NULL)) != -1) {
        switch (opt) {
        case 'f': fmt = optarg; break;
        case 'O': output = optarg; break;
        case 'U': break;
        default: return 1;
        }
    }
    if (optind >= argc)
        die(NULL, "Expecting one image file name");
    const char *file = argv[optind];
    bool json = want_json(output, file);

    bs = open_image(file, fmt, 0);
    size = block_getlength(bs);
    if (!json)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    while (off < size) {
        struct block_map m;

        r = block_map(bs, off, size - off, &m);
        if (r < 0 || !m.len)
            die(file, "error while mapping at byte %" PRIu64, off);
        if (map_mergeable(&cur, &m)) {
            cur.len += m.len;
        } else {
            map_emit(&cur, json, &first);
            cur = (struct map_ent){ off, m.len, m.host_offset, m.flags, m.depth, m.file, true };
        }
        off += m.len;
    }
    map_emit(&cur, json, &first);
    if (json)
        printf("%s]\n", first ? "[" : "");
    block_close(bs);
    return 0;
}

/* ---- write-pattern (hidden; the crash test's writer) ---- */

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Write i: offset and length from the generator, every byte (i % 251) + 1.
 * After every flush the count of writes it covers is appended to LOG and
 * fsync'd, so a test knows which writes must have survived a SIGKILL. */
static int cmd_write_pattern(int argc, char **argv)
{
    struct block_state *bs;
    uint64_t seed, size, count, flush_every, st;
    uint8_t *buf;
    FILE *log;

    if (argc != 6)
        die(NULL, "usage: write-pattern FILE SEED COUNT FLUSH_EVERY LOG");
    seed = strtoull(argv[2], NULL, 0);
    count = strtoull(argv[3], NULL, 0);
    flush_every = strtoull(argv[4], NULL, 0);
    st = seed ? seed : 1;
    if (getenv("VMON_IMG_CRASH_AFTER_WRITES"))
        block_crash_after_writes = strtoull(getenv("VMON_IMG_CRASH_AFTER_WRITES"), NULL, 0);
    bs = open_image(argv[1], NULL, BLOCK_O_RDWR);
    size = block_getlength(bs);
    log = fopen(argv[5], "a");
    buf = malloc(256 * KiB);
    if (!log || !buf || size < 512 * KiB)
        die(argv[1], "write-pattern: cannot start");
    for (uint64_t i = 1; i <= count; i++) {
        uint64_t len = 1 + xorshift(&st) % (256 * KiB);
        uint64_t off = xorshift(&st) % (size - len);
        int r;

        memset(buf, (int)(i % 251) + 1, len);
        r = block_pwrite(bs, off, buf, len);
        if (r < 0)
            die(argv[1], "write %" PRIu64 " failed: %s", i, strerror(-r));
        if (flush_every && i % flush_every == 0) {
            if ((r = block_flush(bs)) < 0)
                die(argv[1], "flush failed: %s", strerror(-r));
            fprintf(log, "%" PRIu64 "\n", i);
            fflush(log);
            fsync(fileno(log));
        }
    }
    block_close(bs);
    if (getenv("VMON_IMG_CRASH_AFTER_WRITES"))
        fprintf(stderr, "image writes: %" PRIu64 "\n", block_writes_count());
    fclose(log);
    free(buf);
    return 0;
}

/* ---- snapshot ---- */

static int cmd_snapshot(int argc, char **argv)
{
    static const struct option lopts[] = { { "force-share", no_argument, NULL, 'U' },
                                           { NULL, 0, NULL, 0 } };
    const char *fmt = NULL, *name = NULL;
    unsigned flags = BLOCK_O_RDWR;
    char action = 0;
    bool quiet = false;
    struct block_state *bs;
    int opt, r = 0;

    while ((opt = getopt_long(argc, argv, "+f:la:c:d:qU", lopts, NULL)) != -1) {
        switch (opt) {
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'U': flags |= BLOCK_O_NO_LOCK; break;
        case 'l': case 'a': case 'c': case 'd':
            if (action)
                die(NULL, "Cannot mix '-l', '-a', '-c', '-d'");
            action = (char)opt;
            name = optarg;
            break;
        default: return 1;
        }
    }
    if (optind + 1 != argc)
        die(NULL, "Expecting one image file name");
    const char *file = argv[optind];

    if (!action)
        action = 'l';
    if (action == 'l')
        flags &= ~BLOCK_O_RDWR;
    else
        flags &= ~BLOCK_O_NO_LOCK;
    bs = open_image(file, fmt, flags | BLOCK_O_NO_BACKING);
    (void)quiet; /* like qemu-img, the actions print nothing but errors */
    switch (action) {
    case 'l': {
        struct block_info info;

        if (block_get_info(bs, &info) == 0)
            print_snapshot_table(&info);
        block_info_free(&info);
        break;
    }
    case 'c':
        r = block_snapshot_create(bs, name);
        if (r < 0)
            fprintf(stderr, "vmon-img: Could not create snapshot '%s': %d (%s)\n", name, r,
                    strerror(-r));
        break;
    case 'a':
        r = block_snapshot_apply(bs, name);
        if (r < 0)
            fprintf(stderr, "vmon-img: Could not apply snapshot '%s': %s\n", name,
                    r == -ENOENT ? "Failed to load snapshot: No such file or directory"
                                 : bs->errmsg[0] ? bs->errmsg : strerror(-r));
        break;
    case 'd':
        r = block_snapshot_delete(bs, name);
        if (r < 0)
            fprintf(stderr, "vmon-img: Could not delete snapshot '%s': %s\n", name,
                    r == -ENOENT ? "snapshot not found"
                                 : bs->errmsg[0] ? bs->errmsg : strerror(-r));
        break;
    }
    block_close(bs);
    return r < 0;
}

static void usage(void)
{
    printf("usage: vmon-img COMMAND [options]\n"
           "  create -f raw|qcow2 [-o opts] [-b BACKING [-F FMT]] FILE [SIZE]\n"
           "  info [-f FMT] [--output=human|json] FILE\n"
           "  check [-f FMT] [-r leaks|all] [--output=human|json] FILE\n"
           "  convert [-f FMT] -O FMT [-o opts] [-t CACHE] [-c] [-p] [-l SNAPSHOT_PARAM] IN OUT\n"
           "  resize [-f FMT] [--shrink] FILE [+|-]SIZE\n"
           "  map [-f FMT] [--output=human|json] FILE\n"
           "  snapshot [-f FMT] [-l | -a SNAPSHOT | -c SNAPSHOT | -d SNAPSHOT] FILE\n"
           "qcow2 -o options: cluster_size, compat=0.10|1.1, lazy_refcounts=on|off,\n"
           "  refcount_bits=1..64, compression_type=zlib|zstd, backing_file, backing_fmt\n");
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        { "create", cmd_create }, { "info", cmd_info },     { "check", cmd_check },
        { "convert", cmd_convert }, { "resize", cmd_resize }, { "map", cmd_map },
        { "snapshot", cmd_snapshot }, { "write-pattern", cmd_write_pattern },
    };

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage();
        return argc < 2;
    }
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
        if (!strcmp(argv[1], cmds[i].name)) {
            optind = 1;
            return cmds[i].fn(argc - 1, argv + 1);
        }
    }
    die(NULL, "Command not found: %s", argv[1]);
}
