/* The scoreboard: one shared-memory record per worker process, written by the worker (its loop
 * thread and its Python threads, with relaxed atomics) and read by the master for `wsgictl status`
 * and the metrics listener.
 *
 * Each group has its own (the master makes it with the group: a memfd of WD_SCORE_MAX records,
 * mmap'd MAP_SHARED); the master picks a free record of it for every worker of the group it
 * spawns, zeroes it, and passes the group's memfd to the worker as fd WD_WORKER_FD_SCOREBOARD
 * and the record's index as the third word of WSGID_WORKER ("GROUP SLOT RECORD ..."). A worker
 * maps its group's board alone: its siblings' records are its to read (balance.h), another
 * group's are not (one board for all let a group's app read every request in flight, URIs and
 * their tokens included, and pin another group's heartbeat so that the watchdog killed its
 * workers: helper-72). A record belongs to one worker process for its whole life; the master
 * frees it when the process has exited (after adding its counters to the group's totals, so that
 * counters never go backwards across restarts). */
#ifndef WD_DAEMON_SCOREBOARD_H
#define WD_DAEMON_SCOREBOARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Records of a group's board: twice the most processes a group may have (WD_CONFIG_PROCESSES_MAX),
 * as every slot may have its worker and a replacement at once (each asked to be recycled), and
 * a few more drain meanwhile. 12,672 bytes each: 26 MB of address space a group, sparse (a
 * record's pages exist once a worker used it). Restarts that follow one another faster than
 * the old workers drain may still take every record: a rolling operation then waits for one of
 * them to exit before it starts the next replacement (helper-79), and a respawn retries.
 * WSGID_SCORE_RECORDS in the master's environment uses fewer (tests fill a board with it). */
#define WD_SCORE_MAX 2048

/* Upper bounds of the request-duration histogram, in microseconds; the last bucket is +Inf. */
#define WD_SCORE_BUCKETS 12
#define WD_SCORE_BUCKET_BOUNDS_US                                                                  \
    {                                                                                              \
        1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,        \
            10000000                                                                               \
    }

/* A Python thread's request in progress, for `wsgictl status --requests`, `top` and `stacks`.
 *
 * Written only by its Python thread (when it takes a request, and when it is done), read by the
 * master: a seqlock. The writer makes gen odd, writes the fields, makes gen even again; a reader
 * copies the slot and keeps the copy only if gen was even and the same before and after
 * (wd_score_running_read), so a torn copy is thrown away, never shown. A request costs its thread
 * a few plain stores and three short memcpy (no syscall, no lock, no atomic read-modify-write);
 * finishing is one store (start_ns = 0), which a reader may see before or after the rest, both of
 * which are consistent. */
#define WD_SCORE_RUNNING 64 /* threads of a worker that publish theirs (wsgid-py1..64) */
#define WD_SCORE_PATH 96    /* bytes of the URI kept, NUL included */

typedef struct wd_score_running {
    _Atomic uint64_t gen;          /* odd while the thread writes the slot */
    _Atomic uint64_t start_ns;     /* the request's start (CLOCK_MONOTONIC), 0 = idle */
    _Atomic uint64_t thread_ident; /* the thread's pthread_self(), set once at its start */
    char id[32];                   /* request id "PID-SEQ" */
    char method[16];
    char path[WD_SCORE_PATH]; /* the request URI (with the query), truncated */
    char pad[24];             /* three cache lines: threads do not share one */
} wd_score_running_t;

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
    _Atomic uint64_t response_disk;     /* response spill files' size (response-disk-limit) */
    _Atomic uint64_t body_memory;       /* request-body buffers held (body-memory-limit) */
    /* The master's watchdog (deadlock-timeout): the loop writes it at every tick (250 ms); a
     * heartbeat that stops means the loop is stuck, and the oldest of running[] (all of them
     * dispatched by the loop before it stopped) tells which request ran (wd_score_oldest_running).
     */
    _Atomic uint64_t heartbeat_ns;    /* CLOCK_MONOTONIC (the same in every process) */
    _Atomic uint64_t queued_since_ns; /* the oldest request waiting for a thread, 0 = none */
    _Atomic uint64_t main_ident; /* pthread_self() of its main thread, the loop (wsgictl stacks) */
    _Atomic uint64_t balance_closes; /* keep-alive connections closed for a lighter sibling */
    _Atomic uint64_t accepting;      /* 1 while it takes new connections (accept.c) */
    _Atomic uint64_t body_disk;      /* request bodies in temp files (body-disk-limit) */
    uint64_t spare[7]; /* the cache line body_disk opened; a new field takes one of these */
    wd_score_running_t running[WD_SCORE_RUNNING]; /* [i] is thread wsgid-py(i+1)'s */
} wd_score_t;

_Static_assert(sizeof(wd_score_running_t) == 192, "a slot is three cache lines");
_Static_assert(offsetof(wd_score_t, running) % 64 == 0 && sizeof(wd_score_t) % 64 == 0,
               "slots on cache line boundaries in the memfd");

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

/* The Python thread's side: it takes a request (start_ns != 0)... */
static inline void wd_score_running_begin(wd_score_running_t *r, uint64_t start_ns, const char *id,
                                          const char *method, size_t method_n, const char *path,
                                          size_t path_n)
{
    uint64_t gen = atomic_load_explicit(&r->gen, memory_order_relaxed);
    size_t n;

    atomic_store_explicit(&r->gen, gen + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    n = strnlen(id, sizeof r->id - 1);
    memcpy(r->id, id, n);
    r->id[n] = '\0';
    n = method_n < sizeof r->method - 1 ? method_n : sizeof r->method - 1;
    memcpy(r->method, method, n);
    r->method[n] = '\0';
    n = path_n < sizeof r->path - 1 ? path_n : sizeof r->path - 1;
    memcpy(r->path, path, n);
    r->path[n] = '\0';
    atomic_store_explicit(&r->start_ns, start_ns, memory_order_relaxed);
    atomic_store_explicit(&r->gen, gen + 2, memory_order_release);
}

/* ... and is done with it. */
static inline void wd_score_running_end(wd_score_running_t *r)
{
    atomic_store_explicit(&r->start_ns, 0, memory_order_release);
}

/* The master's side: a consistent copy of r in *out; 0 when it is idle or kept changing. */
static inline int wd_score_running_read(const wd_score_running_t *r, wd_score_running_t *out)
{
    _Atomic uint64_t *gen = (_Atomic uint64_t *)&r->gen;

    for (int tries = 0; tries < 4; tries++) {
        uint64_t g1 = atomic_load_explicit(gen, memory_order_acquire), g2;

        if (g1 & 1)
            continue;
        memcpy(out->id, r->id, sizeof out->id);
        memcpy(out->method, r->method, sizeof out->method);
        memcpy(out->path, r->path, sizeof out->path);
        out->start_ns = wd_score_get(&r->start_ns);
        out->thread_ident = wd_score_get(&r->thread_ident);
        atomic_thread_fence(memory_order_acquire);
        g2 = atomic_load_explicit(gen, memory_order_relaxed);
        if (g1 != g2)
            continue;
        out->id[sizeof out->id - 1] = out->method[sizeof out->method - 1] = '\0';
        out->path[sizeof out->path - 1] = '\0';
        return out->start_ns != 0;
    }
    return 0;
}

/* The oldest request of s's threads that started before before_ns, copied to *out: returns its
 * thread's number (wsgid-pyN), or 0 when none. */
static inline int wd_score_oldest_running(const wd_score_t *s, uint64_t before_ns,
                                          wd_score_running_t *out)
{
    wd_score_running_t r;
    int found = 0;

    for (int i = 0; i < WD_SCORE_RUNNING; i++) {
        if (wd_score_running_read(&s->running[i], &r) && r.start_ns <= before_ns &&
            (found == 0 || r.start_ns < out->start_ns)) {
            *out = r;
            found = i + 1;
        }
    }
    return found;
}

#endif
