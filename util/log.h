/* Error reporting and the -d/-D debug log.
 *
 * error_report() is for the user: one line on stderr, prefixed "vmon: ".
 * LOG(item, ...) is the -d log: compiled in always, one branch when off. */
#ifndef VMON_UTIL_LOG_H
#define VMON_UTIL_LOG_H

#include <stdarg.h>
#include "util/types.h"

enum log_item {
    LOG_ACCEL = 1u << 0,        /* accelerator choice and set-up */
    LOG_IN_ASM = 1u << 1,       /* guest code as the emulator decodes it */
    LOG_INT = 1u << 2,          /* interrupts and exceptions */
    LOG_CPU = 1u << 3,          /* CPU state before each block */
    LOG_UNIMP = 1u << 4,        /* unimplemented instructions, MSRs, ports */
    LOG_GUEST_ERRORS = 1u << 5, /* guest misused a device or the CPU */
    LOG_IOPORT = 1u << 6,       /* every port access */
    LOG_MMIO = 1u << 7,         /* every MMIO access */
    LOG_EXIT = 1u << 8,         /* every vCPU exit */
    LOG_BOOT = 1u << 9,         /* kernel loading and boot state */
    LOG_MMU = 1u << 10,         /* page walks and TLB flushes */
};

extern unsigned log_mask;

/* Parse a -d argument ("accel,int" or "help"); returns 0, or -1 after
 * printing an error.  "help" prints the items and returns 1. */
int log_parse_items(const char *spec);
/* Redirect the debug log to a file (-D).  Returns 0 or -errno. */
int log_set_file(const char *path);
void log_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_vprintf(const char *fmt, va_list ap);

#define LOG(item, ...)                                                         \
    do {                                                                       \
        if (unlikely(log_mask & (item)))                                       \
            log_printf(__VA_ARGS__);                                           \
    } while (0)

void error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* error_report() then exit(1). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
