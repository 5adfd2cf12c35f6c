/* The scoreboard: one shared-memory record per worker process, written by the worker (its loop
 * thread and its Python threads, with relaxed atomics) and read by the master for `wsgictl status`
 * and the metrics listener.
 *
 * The master creates it once (a memfd of WD_SCORE_MAX records, mmap'd MAP_SHARED), picks a free
 * record for every worker it spawns, zeroes it, and passes the memfd to the worker as fd
 * WD_WORKER_FD_SCOREBOARD and the record's index as the third word of WSGID_WORKER
 * ("GROUP SLOT RECORD"). A record belongs to one worker process for its whole life; the master
 * frees it when the process has exited (after adding its counters to the group's totals, so that
 * counters never go backwards across restarts). */
#ifndef WD_DAEMON_SCOREBOARD_H
#define WD_DAEMON_SCOREBOARD_H

#include <stdatomic.h>
#include <stdint.h>

#define WD_SCORE_MAX 1024

/* Upper bounds of the request-duration histogram, in microseconds; the last bucket is +Inf. */
#define WD_SCORE_BUCKETS 12
#define WD_SCORE_BUCKET_BOUNDS_US                                                                  \
    {                                                                                              \
        1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,        \
            10000000                                                                               \
    }

typedef struct wd_score {
    _Atomic uint64_t pid;
    _Atomic uint64_t started_unix; /* when the worker started (seconds since the epoch) */
    _Atomic uint64_t ready;        /* 1 once the app is loaded and it accepts */
    _Atomic uint64_t threads;      /* Python threads */
    _Atomic uint64_t busy_threads; /* threads inside the app now */
    _Atomic uint64_t queued;       /* requests waiting for a thread */
    _Atomic uint64_t connections;  /* open client connections */
    _Atomic uint64_t requests;     /* responses completed */
    _Atomic uint64_t status[6];    /* by class: [1]..[5] = 1xx..5xx, [0] = other / none */
    _Atomic uint64_t duration_bucket[WD_SCORE_BUCKETS + 1]; /* non-cumulative counts */
    _Atomic uint64_t duration_sum_us;
    _Atomic uint64_t bytes_sent;
    _Atomic uint64_t last_request_unix; /* when the last request completed */
    _Atomic uint64_t timeouts;          /* requests answered 504 (request- or queue-timeout) */
    _Atomic uint64_t accept_empty;      /* woke to accept and found nothing (a sibling took it) */
    _Atomic uint64_t response_memory;   /* response bytes held in memory (response-memory-limit) */
    /* The master's watchdog (deadlock-timeout): the loop writes these at every tick (250 ms); a
     * heartbeat that stops means the loop is stuck, and oldest tells which request ran then. */
    _Atomic uint64_t heartbeat_ns;    /* CLOCK_MONOTONIC (the same in every process) */
    _Atomic uint64_t oldest_start_ns; /* the oldest running request's start, 0 = none */
    char oldest[160];                 /* "ID METHOD URI" of it (read racily: for a log line) */
    _Atomic uint64_t queued_since_ns; /* the oldest request waiting for a thread, 0 = none */
    uint64_t reserved[6];
} wd_score_t;

static inline void wd_score_add(_Atomic uint64_t *v, uint64_t n)
{
    atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

static inline void wd_score_sub(_Atomic uint64_t *v, uint64_t n)
{
    atomic_fetch_sub_explicit(v, n, memory_order_relaxed);
}

static inline void wd_score_set(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, n, memory_order_relaxed);
}

static inline uint64_t wd_score_get(const _Atomic uint64_t *v)
{
    return atomic_load_explicit((_Atomic uint64_t *)v, memory_order_relaxed);
}

#endif
