/* A snapshot of the daemon's state, filled by the master, and its two renderings: the JSON of
 * `wsgictl status --json` and `GET /status`, and the Prometheus text of `GET /metrics`. */
#ifndef WD_DAEMON_STATUS_H
#define WD_DAEMON_STATUS_H

#include "scoreboard.h"

#include <stddef.h>
#include <stdint.h>

typedef struct wd_status_worker {
    const char *group;
    int slot; /* 1-based */
    int pid;  /* 0 when no process (backing off) */
    const char *display_name;
    const char *state;        /* "starting" | "ready" | "draining" | "backoff" | "crashed" */
    double uptime;            /* seconds since the process started */
    uint64_t restarts;        /* of this slot */
    uint64_t rss_bytes;       /* from /proc/PID/statm */
    const char *last_error;   /* NULL or the last failure of this slot */
    const char *last_restart; /* NULL or why its worker was last replaced while serving */
    const wd_score_t *score;  /* NULL when no process */
} wd_status_worker_t;

typedef struct wd_status_group {
    const char *name;
    int processes;
    int threads;
    uint64_t restarts; /* sum over its slots, past_restarts included */
    /* NULL, or why the group's last rolling restart (wsgictl restart, reload, reload-on-change)
     * failed, as its worker said: the old workers are serving the old code. Cleared by the next
     * one that succeeds. */
    const char *reload_error;
    const char *failed_op; /* which reload_error is of: start, restart, reload, reload on change */
    int stopped;           /* wsgictl stop GROUP (or a drain that ended) */
    int draining;          /* wsgictl drain: readiness fails, still serving */
    double drain_left;     /* seconds until the drained group stops */
    double ready_queue_wait; /* readiness-queue-wait: seconds, 0 = off (health.c) */
    /* Counters of the group's workers that have exited, so that totals never go backwards. */
    uint64_t past_requests;
    uint64_t past_status[6];
    uint64_t past_duration_bucket[WD_SCORE_BUCKETS + 1];
    uint64_t past_duration_sum_us;
    uint64_t past_bytes_sent;
    uint64_t past_timeouts;
    uint64_t past_accept_empty;
    uint64_t past_balance_closes;
    /* The restarts of its slots that a reload took away (fewer processes, a roll back): the
     * group's restarts went back by as many (wsgid_worker_restarts_total 6 -> 3 at a reload from
     * 3 processes to 1, which rate() reads as a counter reset, 3 restarts that never were). */
    uint64_t past_restarts;
} wd_status_group_t;

typedef struct wd_status {
    const char *version;
    int master_pid;
    double uptime;
    const wd_status_group_t *groups;
    size_t n_groups;
    const wd_status_worker_t *workers; /* grouped by group, in slot order */
    size_t n_workers;
    uint64_t now_ns; /* CLOCK_MONOTONIC at the snapshot: the age of requests and queue waits */
    /* Whether the JSON lists the requests in progress (their URIs, query strings included):
     * for the control socket (mode 0600), not for GET /status on the metrics listener, which
     * may be reachable by more people than the site's own logs are. */
    int with_requests;
} wd_status_t;

/* Both return a malloc'd NUL-terminated string (the caller frees it). */
char *wd_status_json(const wd_status_t *st);
char *wd_status_prometheus(const wd_status_t *st);

#endif
