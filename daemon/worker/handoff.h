/* The hand-off between a worker's loop thread and its Python threads, in both directions.
 *
 * Loop -> threads: the loop dispatches parsed requests; they are pushed once per loop iteration
 * (one lock for all of them). A request goes straight to an idle thread when there is one (the one
 * that went idle last, whose stack and caches are warm), so that no request ever waits while a
 * thread sleeps; only when every thread is busy does it wait in the queue, taken by the first
 * thread that is done.
 *
 * Threads -> loop: a thread reports news on a connection (response bytes the loop must send, a
 * finished response) by putting the connection's node on the ready list and waking the loop; the
 * loop takes the whole list in one callback. News that can wait (a keep-alive response that went
 * out whole) wakes nobody: the loop takes it at its next turn, which the client's next request
 * usually brings, or within a bound (WD_HANDOFF_LAZY_MS, growing to _MAX_MS while the timer finds
 * nothing, see handoff.c). One keep-alive connection then costs one loop wake-up per request
 * instead of two. The timer runs only while requests that may end so are in flight (keep-alive
 * HTTP, a kept FastCGI connection's): under uwsgi_pass (a connection per request, never lazy) it
 * does not run. There the thread shuts the connection and its news is quiet (wd_handoff_notify); a
 * timer of its own bounds it only once the loop has blocked WD_HANDOFF_QUIET_MS (see prepare_cb). A
 * thread's finish is never lazy when the loop already waits for it (the next request came first:
 * wd_out_finished_or_wait), nor when the connection holds the next request's bytes already (a
 * pipelining client, read with the last request: conn_dispatch).
 *
 * Resting: while every thread has a run of queued requests before it, the loop need not read the
 * next ones yet. Before it sleeps it then waits on the threads alone (not on the sockets) until
 * the queue is down to one request a thread, so that the requests that came meanwhile cost one
 * wake-up together instead of one each; see handoff.c for when, and the figures.
 *
 * Parking: at light load (the loop asleep, nothing queued, few requests in flight, and while
 * parking paid lately) a thread that sent a keep-alive response whole keeps its connection and
 * waits on it itself (poll), instead of on its futex while the loop waits on the socket: the next
 * request then costs one wake-up (the thread's) instead of two. The thread reads and dispatches it
 * with the loop's own code, under the loop lock, which the loop holds except while it blocks; the
 * loop does not watch a parked connection. A request pushed to a parked thread (it is on the idle
 * stack, behind the threads that sleep plainly) wakes it through its eventfd, and it gives the
 * connection back to the loop; so does a loop that wants to close the connection
 * (keepalive-timeout, a graceful stop). While parking does not pay, a thread parks only as a
 * probe, once in WD_HANDOFF_PARK_PROBE_MS, and a request goes to it before the plain sleepers. See
 * handoff.c for the gates and the figures.
 *
 * Spinning: a wake-up costs both sides a sleep and a context switch. A thread about to sleep may
 * first poll the queue for busy-poll seconds, and the loop may poll for completions instead of
 * sleeping in epoll_wait; each side does so only while its recent spins found work, so at light
 * load (where nothing comes within busy-poll) neither spins.
 *
 * Scheduling: the Python threads run under SCHED_BATCH, so that one the loop wakes does not
 * switch the loop out in the middle of its turn (see wd_handoff_thread_enter).
 *
 * Thread rules: wd_handoff_dispatch, _done, _release, _remove, _set_threads, _writers, _stop,
 * _evict and the callbacks run on the loop thread, or on a Python thread that holds the loop lock
 * (parking); wd_handoff_next, _wait, _notify and the parking calls on the Python threads (any GIL
 * state; _wait with it released). */
#ifndef WD_DAEMON_HANDOFF_H
#define WD_DAEMON_HANDOFF_H

#include "request.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

typedef struct wd_handoff wd_handoff_t;

/* Adaptive spinning: a spin that found work raises the score, one that timed out lowers it; a
 * side spins while the score is positive, and otherwise tries again once in a while, so that a
 * change of load is noticed. */
typedef struct wd_handoff_spin {
    int score;
    unsigned skipped; /* spins left out since the last one */
} wd_handoff_spin_t;

/* Embedded in what the threads report news on (a connection). Loop thread, and under the
 * hand-off's ready lock. */
typedef struct wd_handoff_node {
    struct wd_handoff_node *next;
    int queued;       /* on the ready list */
    int free_pending; /* released while on the list: on_free runs when the loop takes it off */
    int lazy;         /* its news on the list is all lazy (WD_HANDOFF_LAZY) */
} wd_handoff_node_t;

typedef void (*wd_handoff_node_cb)(wd_handoff_node_t *node);

/* Loop: the turn is over and the loop may block next (wd_handoff_set_on_block). */
typedef void (*wd_handoff_block_cb)(void *data);

typedef struct wd_handoff_thread wd_handoff_thread_t;
/* The loop lock held: thread t, parked on conn, woke. input: the connection is readable (or hung
 * up); otherwise the thread gives it back. Returns the request the thread is to serve (claimed
 * with wd_handoff_claim), or NULL when the connection is the loop's again; sets *wake_loop when
 * the loop must look (a watch, a handle or the stop changed while it slept). */
typedef wd_req_t *(*wd_handoff_park_cb)(void *conn, wd_handoff_thread_t *t, int input,
                                        int *wake_loop);

/* One per Python thread; the caller owns the storage (see wd_handoff_thread_init). */
struct wd_handoff_thread {
    _Atomic uint32_t wake;          /* futex word: asleep, or woken by a push or close */
    struct wd_handoff_thread *next; /* on the idle stack */
    wd_req_t *req;                  /* the request handed to it while it slept */
    int busy;                       /* it holds a request (for the busy gauge) */
    int efd;                        /* eventfd: wakes it while parked (-1: it never parks) */
    _Atomic uint32_t efd_sent;      /* writes to efd so far (each counted once it is written) */
    uint32_t efd_seen;              /* efd_sent when the thread last read efd (its own) */
    void *park;                     /* the connection it is parked on (loop lock) */
    int park_fd;                    /* ... and its socket */
    int roaming;       /* its own: off its home CPU while parked (see handoff_park.c) */
    int may_roam;      /* loop lock: it parks alone, after a run of its own */
    unsigned park_run; /* loop lock: its parks in a row that served their connection */
};

struct wd_handoff {
    /* Shared, under lock. */
    pthread_mutex_t lock;
    wd_req_t *head; /* requests no thread has taken yet, oldest first */
    wd_req_t *tail;
    size_t len;
    wd_handoff_thread_t *idle;        /* sleeping threads, the last to go idle on top */
    wd_handoff_thread_t *parked_idle; /* threads waiting on their parked connection */
    int spinner;                      /* a thread polls the queue before it sleeps */
    int closed;
    uint64_t spin_ns;              /* busy-poll; 0 = never spin */
    wd_handoff_spin_t thread_spin; /* how the threads' spinning paid lately */
    _Atomic uint64_t *depth;       /* gauges (the scoreboard's queued and busy_threads), or NULL */
    _Atomic uint64_t *busy;

    /* Threads -> loop. */
    pthread_mutex_t ready_lock;
    wd_handoff_node_t *ready;
    wd_handoff_node_cb on_ready; /* the node has news */
    wd_handoff_node_cb on_free;  /* a node released while on the list can be freed now */

    /* Loop side. */
    uv_loop_t *loop;
    uv_async_t async;
    uv_prepare_t prepare;   /* takes the ready list before the loop sleeps */
    uv_timer_t lazy_timer;  /* ... and within lazy_ms while lazy_in_flight > 0 */
    unsigned lazy_ms;       /* WD_HANDOFF_LAZY_MS, doubled up to _MAX_MS while it finds nothing */
    uint64_t lazy_late;     /* lazy news that only the timer took (the worker's last line says) */
    int lazy_found;         /* its news, taken by the prepare phase first (wd__handoff_polled) */
    int polled;             /* wd_handoff_run's own poll has just returned */
    uv_timer_t quiet_timer; /* ... quiet news, within quiet_ms of the loop blocking */
    unsigned quiet_ms;      /* WD_HANDOFF_QUIET_MS, doubled up to _MAX_MS while it finds nothing */
    uv_check_t batch_check;
    uv_idle_t spin;
    wd_req_t *batch_head; /* dispatched in this loop iteration, pushed at its end */
    wd_req_t *batch_tail;
    size_t batch_n;
    size_t in_flight;            /* dispatched and not yet done (wd_handoff_done) */
    size_t lazy_in_flight;       /* ... of which may end lazily (req->may_be_lazy) */
    size_t shut_in_flight;       /* ... of which end their connection (WD_REQ_LAZY_SHUT) */
    size_t park_may_in_flight;   /* ... of which keep a keep-alive HTTP connection, which the
                                    thread may park on (a kept FastCGI one it never does) */
    wd_handoff_spin_t loop_spin; /* how the loop's spinning paid lately */
    uint64_t spin_until_ns;      /* the loop spins until then, unless nothing is in flight */
    int spin_hit;                /* an event came while the loop spun */
    _Atomic int looking;   /* the loop spins: it takes the ready list before it can block, so news
                              need no async (wd_handoff_notify) */
    _Atomic int accepting; /* the worker accepts: a new connection wakes the loop, so quiet news
                              needs no async (wd_handoff_set_accepting) */
    int accept_stopped;    /* ... it stopped since prepare_cb last looked at the list */
    wd_handoff_block_cb on_block; /* the end of the loop's turn, before it may block, or NULL */
    void *on_block_data;

    /* Resting (see handoff.c). rest_high and rest_low are set on the loop thread before the
     * threads start; the threads read rest_low under lock. */
    int rest_fd;          /* eventfd a thread wakes the resting loop with; -1: never rests */
    _Atomic int resting;  /* the loop rests: the first thread to clear it writes rest_fd */
    size_t rest_high;     /* the loop rests from this many queued requests (0: never) ... */
    size_t rest_low;      /* ... until a thread leaves this many */
    size_t writers;       /* loop: connections waiting for it to send (it does not rest) */
    unsigned rest_max_ms; /* a rest's longest (WD_HANDOFF_REST_MAX_MS) */
    uint64_t rests;       /* loop: rests so far */

    /* Parking (see handoff.c). The loop lock is held by the loop thread except while it blocks,
     * and by a parked thread while it runs the loop's code for its connection. */
    pthread_mutex_t loop_lock;
    wd_handoff_park_cb park_cb; /* NULL: no thread parks */
    unsigned threads;
    wd_handoff_spin_t park_pays; /* loop lock: how parking paid lately (see handoff.c) */
    size_t parked;               /* loop lock: threads parked on a connection */
    size_t park_in_flight;       /* loop lock: requests claimed by such a thread, not yet done */
    int stop;                    /* loop lock: wd_handoff_run returns */
    uint64_t sleep_until;        /* loop lock: when the loop, asleep, wakes by itself (uv_now ms) */
    int asleep;                  /* loop lock: the loop blocks in wd_handoff_run, lock let go */
    uint64_t parks;              /* loop lock: parks so far */
    uint64_t park_probe_ms;      /* loop lock: when a park was last tried while it did not pay */
    int home_cpu;                /* the CPU the threads are pinned to (pin-threads), or -1 */
};

/* Sets h up on loop (the async, check and idle handles are made here; the check and idle ones do
 * not keep the loop alive). spin_secs is the group's busy-poll. The gauges may be NULL. */
void wd_handoff_init(wd_handoff_t *h, uv_loop_t *loop, double spin_secs,
                     wd_handoff_node_cb on_ready, wd_handoff_node_cb on_free,
                     _Atomic uint64_t *depth, _Atomic uint64_t *busy);
/* After wd_handoff_close and once every thread has returned: closes the handles (the loop must run
 * once more to finish closing them) and frees the locks. */
void wd_handoff_destroy(wd_handoff_t *h);

/* Loop: how many Python threads take the requests; the loop rests only once this is set. */
void wd_handoff_set_threads(wd_handoff_t *h, unsigned threads);
/* Loop thread, instead of uv_run: runs the loop until it has nothing left or wd_handoff_stop. */
void wd_handoff_run(wd_handoff_t *h);
/* Loop lock held: wd_handoff_run returns after this turn. */
void wd_handoff_stop(wd_handoff_t *h);
/* Before the threads start: the CPU they are pinned to (wd_affinity_home), or -1. A parked thread
 * leaves it while it waits on its connection, and takes it back before other work. */
void wd_handoff_set_home(wd_handoff_t *h, int cpu);
/* Before the threads start: how a parked thread's connection is served (NULL: nobody parks). */
void wd_handoff_set_park(wd_handoff_t *h, wd_handoff_park_cb cb);
/* Loop: cb runs at the end of every turn, after the news of the turn was taken and before the
 * loop may block: a watch it starts there is applied in that block's epoll_wait. A watch started
 * earlier in the turn and stopped before its end costs epoll_ctl calls for nothing. */
void wd_handoff_set_on_block(wd_handoff_t *h, wd_handoff_block_cb cb, void *data);

/* Python thread, parking. _try_lock takes the loop lock if it is free and the loop asleep, and
 * only where a thread may park now: nothing queued, at most threads/2 + 1 requests in flight, and
 * parking paid lately (or it is time to try again). _unlock lets it go, and wakes the loop when
 * wake_loop says it must look. _park (loop lock held) puts the connection in t's keeping;
 * wd_handoff_wait then waits on it. _claim (loop lock held, from the park callback): req, just
 * dispatched, is t's at once instead of going through the queue. */
int wd_handoff_park_try_lock(wd_handoff_t *h);
void wd_handoff_loop_unlock(wd_handoff_t *h, int wake_loop);
void wd_handoff_park(wd_handoff_t *h, wd_handoff_thread_t *t, void *conn, int fd);
int wd_handoff_claim(wd_handoff_t *h, wd_handoff_thread_t *t, wd_req_t *req);
/* Loop lock held: the loop wants the connection t is parked on back (to close it): wakes t, which
 * calls the park callback with input 0. */
void wd_handoff_evict(wd_handoff_t *h, wd_handoff_thread_t *t);

/* Loop: a connection starts (+1) or stops (-1) waiting for the loop to send it bytes; the loop
 * does not rest while one does. */
static inline void wd_handoff_writers(wd_handoff_t *h, int delta)
{
    h->writers += (size_t)(ssize_t)delta;
}
/* Loop: req goes to a thread at the end of this loop iteration. Set req->may_be_lazy when its
 * end may be lazy news (wd_handoff_notify): only then does the loop look for news on a timer. */
void wd_handoff_dispatch(wd_handoff_t *h, wd_req_t *req);
/* Loop: pushes what was dispatched now instead of at the end of the iteration. */
void wd_handoff_flush(wd_handoff_t *h);
/* Loop: a dispatched request is over for the threads (its response is finished). */
void wd_handoff_done(wd_handoff_t *h, const wd_req_t *req);
static inline size_t wd_handoff_in_flight(const wd_handoff_t *h)
{
    return h->in_flight;
}
/* Loop: takes req back if no thread has it yet (queue-timeout); returns 1 if it did. */
int wd_handoff_remove(wd_handoff_t *h, wd_req_t *req);
/* Loop: the node's owner is being freed. Returns 0 when it may be freed now, 1 when it is on the
 * ready list: on_free then runs once the loop takes it off. */
int wd_handoff_release(wd_handoff_t *h, wd_handoff_node_t *node);
/* Every thread returns NULL from wd_handoff_wait once the queue is empty. */
void wd_handoff_close(wd_handoff_t *h);
/* When a thread took req (from the queue, or claimed it parked on its connection), 0 while it
 * still waits for one. Loop thread, for a request dispatched and not yet done. */
uint64_t wd_handoff_taken_ns(wd_handoff_t *h, const wd_req_t *req);
/* When the oldest request still waiting for a thread was queued (t_queued_ns), 0 if none. */
uint64_t wd_handoff_oldest_queued(wd_handoff_t *h);

/* Python thread. */
void wd_handoff_thread_init(wd_handoff_thread_t *t);
/* On the thread itself, before anything else: the scheduling policy of the wake-ups (handoff.c). */
void wd_handoff_thread_enter(void);
void wd_handoff_thread_destroy(wd_handoff_thread_t *t);
/* The thread's previous request is over (if it had one); returns the next queued request, or
 * NULL when none is waiting. Never blocks: call it with the GIL held, so that under load a thread
 * serves a run of requests without giving the GIL up. */
wd_req_t *wd_handoff_next(wd_handoff_t *h, wd_handoff_thread_t *t);
/* Waits for a request (spinning first when requests come fast), or returns NULL once the hand-off
 * is closed and empty. Call it with the GIL released, after wd_handoff_next returned NULL. */
wd_req_t *wd_handoff_wait(wd_handoff_t *h, wd_handoff_thread_t *t);
/* The node has news for the loop: puts it on the ready list and wakes the loop (how: `how`).
 * WD_HANDOFF_NOW wakes it, ending its rest. WD_HANDOFF_LAZY does not wake it: the loop takes the
 * list at its next turn, and within WD_HANDOFF_LAZY_MS while the timer that bounds it finds news,
 * WD_HANDOFF_LAZY_MAX_MS at most when it has found none lately (see prepare_cb). Nothing waits for
 * lazy news: it is a keep-alive response the client has whole, and the client's next request
 * wakes the loop (the loop then learns the news before it reads). WD_HANDOFF_QUIET wakes a loop
 * that sleeps while the worker does not accept, but does not end its rest: a response the peer
 * has whole, on a connection that ends with it (its thread shut it), which only the loop's close
 * is left of. */
void wd_handoff_notify(wd_handoff_t *h, wd_handoff_node_t *node, int how);
/* Loop: whether the worker accepts new connections. While it does, quiet news sends no async: the
 * next connection wakes the loop, which then takes it, or the quiet timer if none comes within
 * WD_HANDOFF_QUIET_MS of the loop blocking (see prepare_cb); once it does not (at capacity), quiet
 * news wakes the loop, whose closes bring the worker below its capacity. */
void wd_handoff_set_accepting(wd_handoff_t *h, int on);
/* Loop: takes the news on the ready list now (accept_cb, before it counts the worker busy: the
 * connections that quiet news ends are still open). */
void wd_handoff_take_news(wd_handoff_t *h);
#define WD_HANDOFF_NOW 0
#define WD_HANDOFF_LAZY 1
#define WD_HANDOFF_QUIET 2
#define WD_HANDOFF_REST_MAX_MS 10
/* While parking does not pay, a park is tried once in this long (handoff.c). */
#define WD_HANDOFF_PARK_PROBE_MS 20
#define WD_HANDOFF_LAZY_MS 1
#define WD_HANDOFF_LAZY_MAX_MS 8
#define WD_HANDOFF_QUIET_MS 20
#define WD_HANDOFF_QUIET_MAX_MS 160

#endif
