/* Quantiles of a duration histogram: see percentile.h. */
#include "percentile.h"

double wd_percentile_from_buckets(const uint64_t *counts, const double *bounds, size_t n, double q,
                                  int *over)
{
    uint64_t total = 0, cum = 0;
    double rank, lower;
    size_t k;

    *over = 0;
    for (k = 0; k <= n; k++)
        total += counts[k];
    if (total == 0)
        return -1;
    q = q < 0 ? 0 : q > 1 ? 1 : q;
    rank = q * (double)total;
    for (k = 0; k <= n; k++) {
        if (counts[k] > 0 && (double)(cum + counts[k]) >= rank)
            break;
        cum += counts[k];
    }
    if (k >= n) {
        /* The +Inf bucket has no upper bound to interpolate to. */
        *over = 1;
        return n > 0 ? bounds[n - 1] : 0;
    }
    lower = k == 0 ? 0 : bounds[k - 1];
    return lower + (bounds[k] - lower) * (rank - (double)cum) / (double)counts[k];
}
