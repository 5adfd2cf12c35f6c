/* Quantiles from histogram buckets (client/percentile.c), as `wsgictl top` computes p50/p99
 * from the difference of two snapshots. */
#include "percentile.h"
#include "testutil.h"

#include <math.h>

static const double bounds[4] = {0.001, 0.005, 0.010, 0.025}; /* then +Inf */

static const struct {
    uint64_t counts[5];
    double q;
    double want; /* -1: no data */
    int over;
} cases[] = {
    {{0, 0, 0, 0, 0}, 0.5, -1, 0},           /* nothing happened */
    {{10, 0, 0, 0, 0}, 0.5, 0.0005, 0},      /* half way into the first bucket, from 0 */
    {{10, 0, 0, 0, 0}, 0.99, 0.00099, 0},    /* 9.9 of 10 */
    {{0, 4, 0, 0, 0}, 0.5, 0.003, 0},        /* 1..5 ms, half way */
    {{5, 5, 0, 0, 0}, 0.5, 0.001, 0},        /* rank 5 ends the first bucket */
    {{5, 5, 0, 0, 0}, 0.6, 0.0018, 0},       /* 1 of 5 into the second: 1 + 4 * 0.2 ms */
    {{0, 0, 0, 10, 0}, 0.99, 0.02485, 0},    /* 10 + 15 * 0.99 ms */
    {{98, 0, 0, 0, 2}, 0.5, 0.000510204, 0}, /* 50 of 98 into the first */
    {{98, 0, 0, 0, 2}, 0.99, 0.025, 1},      /* in +Inf: "more than 25 ms" */
    {{0, 0, 0, 0, 3}, 0.5, 0.025, 1},        /* all slower than the last bound */
    {{0, 0, 1, 0, 0}, 0.0, 0.005, 0},        /* q = 0: the bottom of the first filled one */
    {{0, 0, 1, 0, 0}, 1.0, 0.010, 0},        /* q = 1: the top of the last filled one */
};

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int over = -1;
        double v = wd_percentile_from_buckets(cases[i].counts, bounds, 4, cases[i].q, &over);

        T_CHECK(fabs(v - cases[i].want) < 1e-9, "case %zu: q %.2f = %.9f, want %.9f", i, cases[i].q,
                v, cases[i].want);
        T_CHECK(over == cases[i].over, "case %zu: over %d, want %d", i, over, cases[i].over);
    }
    return t_summary("percentile");
}
