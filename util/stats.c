/* The statistics provider registry; see util/stats.h. */
#include <errno.h>
#include <stdlib.h>

#include "util/stats.h"

static const struct stats_provider **providers;
static int nr_providers;

int stats_register_provider(const struct stats_provider *p)
{
    const struct stats_provider **n;

    for (int i = 0; i < nr_providers; i++)
        if (providers[i] == p)
            return -EEXIST;
    n = realloc(providers, (nr_providers + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    providers = n;
    providers[nr_providers++] = p;
    return 0;
}

int stats_nr_providers(void)
{
    return nr_providers;
}

const struct stats_provider *stats_provider_at(int i)
{
    return i >= 0 && i < nr_providers ? providers[i] : NULL;
}
