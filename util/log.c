/* Error reporting and the -d/-D debug log. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

unsigned log_mask;
static FILE *log_file;
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

static const struct {
    const char *name;
    unsigned bit;
    const char *help;
} log_items[] = {
    { "accel", LOG_ACCEL, "accelerator choice and set-up" },
    { "in_asm", LOG_IN_ASM, "guest code as the emulator decodes it" },
    { "int", LOG_INT, "interrupts and exceptions" },
    { "cpu", LOG_CPU, "CPU state before each translated block" },
    { "unimp", LOG_UNIMP, "unimplemented instructions, MSRs and ports" },
    { "guest_errors", LOG_GUEST_ERRORS, "guest misuse of devices or the CPU" },
    { "ioport", LOG_IOPORT, "every port access" },
    { "mmio", LOG_MMIO, "every MMIO access" },
    { "exit", LOG_EXIT, "every vCPU exit" },
    { "boot", LOG_BOOT, "kernel loading and boot state" },
    { "mmu", LOG_MMU, "page walks and TLB flushes" },
};

int log_parse_items(const char *spec)
{
    unsigned mask = 0;
    const char *p = spec;

    if (!strcmp(spec, "help")) {
        printf("Log items (comma separated):\n");
        for (size_t i = 0; i < ARRAY_SIZE(log_items); i++)
            printf("%-14s %s\n", log_items[i].name, log_items[i].help);
        return 1;
    }
    while (*p) {
        size_t len = strcspn(p, ",");
        bool found = false;

        if (len == 3 && !strncmp(p, "all", 3)) {
            mask = ~0u;
            found = true;
        }
        for (size_t i = 0; !found && i < ARRAY_SIZE(log_items); i++) {
            if (strlen(log_items[i].name) == len && !strncmp(p, log_items[i].name, len)) {
                mask |= log_items[i].bit;
                found = true;
            }
        }
        if (!found) {
            error_report("-d: unknown log item '%.*s' (try -d help)", (int)len, p);
            return -1;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    log_mask |= mask;
    return 0;
}

int log_set_file(const char *path)
{
    FILE *f = fopen(path, "w");

    if (!f)
        return -errno;
    setvbuf(f, NULL, _IOLBF, 0);
    if (log_file)
        fclose(log_file);
    log_file = f;
    return 0;
}

void log_vprintf(const char *fmt, va_list ap)
{
    pthread_mutex_lock(&log_mutex);
    vfprintf(log_file ? log_file : stderr, fmt, ap);
    pthread_mutex_unlock(&log_mutex);
}

void log_printf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vprintf(fmt, ap);
    va_end(ap);
}

/* The stdio chardev keeps output post-processing on in raw mode, so a plain
 * \n still starts a new line on the terminal. */
static void report(const char *prefix, const char *fmt, va_list ap)
{
    char buf[1024];

    vsnprintf(buf, sizeof(buf), fmt, ap);
    pthread_mutex_lock(&log_mutex);
    fprintf(stderr, "vmon: %s%s\n", prefix, buf);
    fflush(stderr);
    pthread_mutex_unlock(&log_mutex);
}

void error_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report("", fmt, ap);
    va_end(ap);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report("warning: ", fmt, ap);
    va_end(ap);
}

void fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report("", fmt, ap);
    va_end(ap);
    exit(1);
}
