/* The rate of lines a peer can trigger (daemon/common/log.c, wd_log_rate_pass): a table of
 * (second, expected verdict, expected count of lines left out before it). Then what a worker's
 * loop thread holds of its access lines beside a small pipe to the master (wd_log_access). */
#include "log.h"
#include "testutil.h"

#include <fcntl.h>

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

/* Reads what the pipe fd has into buf (at len), as the master would: the new length. */
static size_t drain(int fd, char *buf, size_t len, size_t cap)
{
    ssize_t n;

    while (len < cap && (n = read(fd, buf + len, cap - len)) > 0)
        len += (size_t)n;
    return len;
}

/* An 8 KiB pipe (F_SETPIPE_SZ refused the 1 MiB asked) and a master that reads nothing a while:
 * the loop thread holds what the pipe lacks of WD_LOG_PIPE_SIZE, plus WD_LOG_PENDING_MAX, and
 * drops the rest, counted; what it held comes whole, in order, once the master reads. It held
 * 64 KiB (helper-95: a master the machine left unscheduled 10-20 ms cost lines). */
static void held_beside_a_small_pipe(void)
{
    enum { LINE = 1000, LINES = 1300 };
    size_t bound = WD_LOG_PIPE_SIZE + WD_LOG_PENDING_MAX, cap = LINES * LINE, len = 0;
    char line[LINE + 16], *got = malloc(cap), errs[4096];
    int acc[2], err[2], kept = 0, ok = 1;
    unsigned long e = 99, a = 99;
    ssize_t n;

    if (pipe2(acc, O_NONBLOCK | O_CLOEXEC) < 0 || pipe2(err, O_NONBLOCK | O_CLOEXEC) < 0 ||
        fcntl(acc[1], F_SETPIPE_SZ, 8192) != 8192) {
        T_CHECK(0, "pipes: %s", strerror(errno));
        return;
    }
    wd_log_use(err[1], acc[1]);
    wd_log_no_wait();
    for (int i = 0; i < LINES; i++) {
        snprintf(line, sizeof line, "%06d %0*d\n", i, LINE - 8, 0);
        wd_log_access(line, LINE);
    }
    T_CHECK(wd_log_flush(0) == -1, "lines wait for the pipe");
    for (int turns = 0; turns < 10000 && wd_log_flush(0) < 0; turns++)
        len = drain(acc[0], got, len, cap);
    len = drain(acc[0], got, len, cap);
    for (size_t at = 0; at + LINE <= len; at += LINE, kept++) {
        snprintf(line, sizeof line, "%06d %0*d\n", kept, LINE - 8, 0);
        ok = ok && memcmp(got + at, line, LINE) == 0;
    }
    T_CHECK(ok && len == (size_t)kept * LINE, "whole and in order: %d lines, %zu bytes", kept, len);
    T_CHECK(len <= bound && len + LINE > bound - 8192, "%zu bytes in flight, bound %zu", len,
            bound);
    n = read(err[0], errs, sizeof errs - 1);
    errs[n > 0 ? n : 0] = '\0';
    T_CHECK(strstr(errs, "[warn]") != NULL &&
                sscanf(strstr(errs, "[warn]"), "[warn] %*s %lu error log lines and %lu", &e, &a) ==
                    2 &&
                e == 0 && a == (unsigned long)(LINES - kept) && strstr(errs, "(8 KiB waited"),
            "the count of the lines dropped: %s", errs);
    free(got);
}

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
    held_beside_a_small_pipe();
    return t_summary("log");
}
