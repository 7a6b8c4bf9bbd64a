/* Address types shared by every subsystem.
 *
 * Guest-physical and guest-virtual addresses are plain integers with their
 * own names; host pointers are real C pointers.  The split keeps a host
 * pointer from ever being passed where a guest address is expected. */
#ifndef VMON_UTIL_TYPES_H
#define VMON_UTIL_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t gpa_t; /* guest-physical address */
typedef uint64_t gva_t; /* guest-virtual (linear) address */

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#endif
