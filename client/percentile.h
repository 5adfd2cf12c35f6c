/* Quantiles of a request-duration histogram (the scoreboard's buckets, scoreboard.h), as
 * Prometheus' histogram_quantile computes them: find the bucket the rank falls in, then
 * interpolate linearly between its bounds. Pure: no I/O. */
#ifndef WD_CLIENT_PERCENTILE_H
#define WD_CLIENT_PERCENTILE_H

#include <stddef.h>
#include <stdint.h>

/* q (0..1) of the n+1 non-cumulative counts in counts[0..n], whose upper bounds are bounds[0..n)
 * (the last bucket is +Inf; the first starts at 0). Returns the value in the bounds' unit, or -1
 * when the counts are all 0. A rank in the +Inf bucket gives its lower bound, bounds[n-1], and
 * *over is set to 1 (the value is "more than that"); otherwise *over is 0. */
double wd_percentile_from_buckets(const uint64_t *counts, const double *bounds, size_t n, double q,
                                  int *over);

#endif
