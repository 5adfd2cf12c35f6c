/* The rate of lines a peer can trigger (daemon/common/log.c, wd_log_rate_pass): a table of
 * (second, expected verdict, expected count of lines left out before it). */
#include "log.h"
#include "testutil.h"

typedef struct step {
    uint64_t second;
    int pass;
    unsigned long long left_out; /* when it passes */
} step_t;

static const step_t steps[] = {
    /* A burst within one second: WD_LOG_BURST lines, then counted. */
    {10, 1, 0},
    {10, 1, 0},
    {10, 1, 0},
    {10, 1, 0},
    {10, 1, 0},
    {10, 0, 0},
    {10, 0, 0},
    /* The next second: the first line says how many were left out. */
    {11, 1, 2},
    {11, 1, 0},
    /* A quiet while, then more: nothing to say. */
    {50, 1, 0},
    {50, 1, 0},
    {50, 1, 0},
    {50, 1, 0},
    {50, 1, 0},
    {50, 0, 0},
    /* Seconds later (not the next one): still counted. */
    {53, 1, 1},
};

int main(void)
{
    wd_log_rate_t r = {0};

    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        unsigned long long left_out = 99;
        int pass = wd_log_rate_pass(&r, steps[i].second, &left_out);

        T_CHECK(pass == steps[i].pass, "step %zu (second %llu): pass %d, want %d", i,
                (unsigned long long)steps[i].second, pass, steps[i].pass);
        if (pass)
            T_CHECK(left_out == steps[i].left_out, "step %zu: left out %llu, want %llu", i,
                    left_out, steps[i].left_out);
    }
    /* Call sites count apart: another rate is not held back by this one. */
    {
        wd_log_rate_t other = {0};
        unsigned long long left_out;

        T_CHECK(wd_log_rate_pass(&other, 53, &left_out) == 1 && left_out == 0, "another site");
    }
    return t_summary("log");
}
