/* wsgictl top (a live view of the groups, their workers and the requests in progress) and
 * wsgictl status --requests (the list of requests in progress, once). Both read the master's
 * `status` reply (daemon/common/status.c): rates and latency quantiles come from the difference
 * between two successive snapshots, computed here. */
#ifndef WD_CLIENT_TOP_H
#define WD_CLIENT_TOP_H

#include <jansson.h>
#include <stdio.h>

typedef struct wd_top_opts {
    const char *path;  /* the control socket */
    const char *group; /* NULL: every group */
    int count;         /* snapshots to print, 0 = until q or a signal */
    double interval;   /* seconds between snapshots */
    int timeout_ms;    /* for each answer (0: no limit) */
} wd_top_opts_t;

/* Runs `wsgictl top`: the live view in raw mode when stdin and stdout are terminals (q quits;
 * the terminal is restored on exit, SIGINT and SIGTERM), else plain snapshots one per interval.
 * Returns the exit status (0; 1 for an unknown group; 3 when the daemon cannot be reached). */
int wd_top_run(const wd_top_opts_t *o);

/* Prints the requests in progress of status (the "status" object of the reply), slowest first:
 * age, group, pid, thread, request id, method, path. At most max lines (0 = all). */
void wd_top_print_requests(FILE *f, json_t *status, const char *group, size_t max);

#endif
