/* The exit-statistics table shared by `vmon stat` and HMP "info stats",
 * laid out as `perf kvm stat` does. */
#ifndef VMON_MONITOR_STAT_TABLE_H
#define VMON_MONITOR_STAT_TABLE_H

#include <stdio.h>
#include "util/types.h"

struct stat_row {
    char reason[32];
    uint64_t count;
    uint64_t total_ns;
    uint64_t min_ns, max_ns;   /* min_ns is 0 when count is 0 */
};

/* Sort rows by time, then samples, descending. */
void stat_rows_sort(struct stat_row *rows, int n);
/* Print the table (rows with no samples are left out) with a total line. */
void stat_table_print(FILE *f, const struct stat_row *rows, int n);

#endif
