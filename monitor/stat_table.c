/* Formatting of the exit-statistics table; see stat_table.h. */
#include <stdlib.h>
#include <string.h>

#include "monitor/stat_table.h"

static int row_cmp(const void *a, const void *b)
{
    const struct stat_row *x = a, *y = b;

    if (x->total_ns != y->total_ns)
        return x->total_ns < y->total_ns ? 1 : -1;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->reason, y->reason);
}

void stat_rows_sort(struct stat_row *rows, int n)
{
    qsort(rows, (size_t)n, sizeof(*rows), row_cmp);
}

/* perf prints times in microseconds with two decimals. */
static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

void stat_table_print(FILE *f, const struct stat_row *rows, int n)
{
    uint64_t count = 0, time = 0;

    for (int i = 0; i < n; i++) {
        count += rows[i].count;
        time += rows[i].total_ns;
    }
    fprintf(f, "%16s %10s %9s %9s %10s %10s %10s\n", "VM-EXIT", "Samples", "Samples%",
            "Time%", "Min Time", "Max Time", "Avg time");
    for (int i = 0; i < n; i++) {
        const struct stat_row *r = &rows[i];

        if (!r->count)
            continue;
        fprintf(f, "%16s %10llu %8.2f%% %8.2f%% %8.2fus %8.2fus %8.2fus\n", r->reason,
                (unsigned long long)r->count, count ? 100.0 * (double)r->count / (double)count : 0.0,
                time ? 100.0 * (double)r->total_ns / (double)time : 0.0, us(r->min_ns),
                us(r->max_ns), us(r->total_ns / r->count));
    }
    fprintf(f, "\nTotal Samples:%llu, Total events handled time:%.2fus.\n",
            (unsigned long long)count, us(time));
}
