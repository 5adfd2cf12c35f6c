/* Keep-alive balance between the workers of a group.
 *
 * A proxy that keeps its upstream connections alive chooses the worker of a request: the one that
 * accepted the connection it picked. nginx keeps its idle upstream connections on a stack (the
 * connection freed last is reused first), so its next request goes to the worker that has just
 * answered one, whether or not that worker has requests waiting for a thread; and more of the
 * connections in use may belong to one worker than its threads can serve while the threads of
 * another worker of the group have less to do. Nothing moves a request: the worker that owns its
 * connection serves it.
 *
 * So when a Python thread frames the head of a keep-alive response, and its request waited
 * WD_BALANCE_WAIT_NS or more for a thread (from its dispatch to its taking, t_queued_ns to
 * t_taken_ns), and the proxy's next request would wait for a thread here but less at a sibling
 * (by the scoreboard's gauges, requests running and queued against threads: balance.c,
 * sibling_lighter), the response says "Connection: close": the proxy's next request then comes on
 * a new connection, which another worker may accept, instead of on this one, where it would wait
 * behind the queue. It looks at most once per WD_BALANCE_GAP_NS a worker.
 *
 * Why at the head, not when the request is queued (the first version, bdb0865): the head is
 * framed when the app answers (for most apps, with the whole body; a streamed response's at its
 * first chunk), shortly before the proxy may reuse the connection, with the worker's load as it
 * is then; at the queueing, a close takes effect only after the queued request was served, which
 * with one thread a worker and 50 ms requests is 50 to 100 ms later. A canned answer asks the
 * same: a 504 for a request past queue-timeout (whether a thread or the loop's tick answers it),
 * a 500, a 404 without a mount. Such a response is then finished as any that ends its connection:
 * the loop is woken to close it (out.c).
 * bench/run's mixed test (a 50 ms endpoint kept busy by 16 connections while wrk measures a fast
 * one at -c4, behind nginx keep-alive; the fast endpoint's p99; 3 alternated single runs of each):
 * with 8 processes x 1 thread, 111.1, 129.2 and 101.4 ms closing at the queueing, 100.5, 100.5 and
 * 100.5 at the head; 4 x 2 and 2 x 4 were at 100.4-101.3 ms either way (bench/README.md). Without
 * the wait condition a saturated group, whose workers' loads differ by two for a moment all the
 * time, closed 5 % of its connections in hello keep-alive and 8 % in the TechEmpower /db test (a
 * reconnection each, measured at the queueing); with it, at the head, 124 in 345,000 requests of
 * hello keep-alive, one connection, the 0.5 ms app and the mixed test, and 2,560 in 147,000 of the
 * TechEmpower database tests (/db, /fortunes, and the 20-query tests, whose requests wait 20-30 ms
 * for a thread at -c32), closing whenever a sibling had two requests fewer. Where every request
 * waits, the workers' loads differ by two most of the time and the next request would have waited
 * little less at the sibling; a sibling whose threads are all taken is now lighter only by more
 * than our threads, and a worker whose next request would find a thread closes nothing. In 3
 * alternated runs of the 5 ms app, /fortunes, /updates, the 20-query test and the mixed test that
 * took the closes from 3,268, 3,326 and 3,601 (in 100,000-118,000 requests: 3.0 %) to 922, 1,104
 * and 655 (in 96,000-129,000: 0.8 %), the 5 ms app's alone from 1.8 % to 0.2 %; with one thread a
 * worker the rule is the same as before. The worker's "stopped" log line gives its count.
 *
 * The siblings come from the master ("siblings RECORD:PID ...", spawn.h) whenever a worker of the
 * group becomes ready; a record is read only while it still holds that pid and says it is ready
 * (a stopping worker clears that, and the master when it reaps one that died), so a list the
 * master has not replaced yet is harmless. ready stays 1 while a worker pauses accepting for a
 * moment (out of file descriptors, max-connections): a close then reaches the other workers, or
 * waits in the listen queue as any new connection would.
 *
 * wd_balance_set runs on the loop thread; wd_balance_should_close on the Python threads (any
 * number at once) and, for the loop's 504, the loop thread: the list and the gap are atomics. */
#ifndef WD_WORKER_BALANCE_H
#define WD_WORKER_BALANCE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"
#include "scoreboard.h"
#include "spawn.h"

#define WD_BALANCE_GAP_NS 1000000ull   /* a look at the siblings at most once a millisecond */
#define WD_BALANCE_WAIT_NS 10000000ull /* ... for a request that waited 10 ms for a thread */

typedef struct wd_balance {
    const wd_score_t *board; /* the scoreboard's records, or NULL (no siblings to read) */
    size_t n_board;
    int self;                              /* our record */
    _Atomic uint64_t sib[WD_SIBLINGS_MAX]; /* a sibling: its record << 32 | its pid */
    _Atomic size_t n_sib;
    _Atomic uint64_t next_ns; /* no look before then */
    _Atomic uint64_t *count;  /* the closes are counted here, or NULL */
} wd_balance_t;

void wd_balance_init(wd_balance_t *b, const wd_score_t *board, size_t n_board, int self,
                     _Atomic uint64_t *count);
/* The master's list: "RECORD:PID RECORD:PID ...", our own record among them or not. Returns how
 * many siblings it holds, or -EINVAL when the list is malformed (the old one is kept). */
int wd_balance_set(wd_balance_t *b, const char *list);
/* Whether the worker has siblings to balance with (a request then carries b: request.h). */
int wd_balance_active(const wd_balance_t *b);
/* Whether a sibling still serves (its record holds its pid and says ready): one that can take
 * over a stopping worker's idle connections (conn.h: wd_conns_ops_t.hand_over). */
int wd_balance_any_ready(const wd_balance_t *b);
/* The head of a keep-alive response is being framed; its request waited waited_ns for a thread.
 * 1 = answer it with "Connection: close" (counted), 0 = keep the connection. Loads are compared
 * by the scoreboard's gauges (busy_threads + queued), ours with this request: gone = 1 when it has
 * left them already (the loop's 504), 0 when it is still counted. */
int wd_balance_should_close(wd_balance_t *b, uint64_t now_ns, uint64_t waited_ns, unsigned gone);
/* The same for req (its balance set: an HTTP keep-alive request), which waited from its queueing
 * until until_ns (a thread took it, or the loop answers it 504); now_ns 0: the clock is asked only
 * when req waited long enough. */
static inline int wd_balance_close_req(const wd_req_t *req, uint64_t until_ns, uint64_t now_ns,
                                       unsigned gone)
{
    return req->balance != NULL && until_ns >= req->t_queued_ns + WD_BALANCE_WAIT_NS &&
           wd_balance_should_close(req->balance, now_ns ? now_ns : wd_now_ns(),
                                   until_ns - req->t_queued_ns, gone);
}
/* A Python thread frames req's head (or a canned answer): req counts among its worker's busy
 * threads. */
static inline int wd_balance_close_at_head(const wd_req_t *req)
{
    return wd_balance_close_req(req, req->t_taken_ns, 0, 0);
}

#endif
