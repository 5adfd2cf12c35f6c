/* Keep-alive balance between the workers of a group.
 *
 * A proxy that keeps its upstream connections alive chooses the worker of a request: the one that
 * accepted the connection it picked. nginx keeps its idle upstream connections on a stack (the
 * connection freed last is reused first), so under a steady load it keeps using the same
 * connections, and more of them may belong to one worker than its threads can serve while the
 * threads of another worker of the group sleep or have less to do. Nothing moves a request: the
 * worker that owns its connection serves it.
 *
 * So when a keep-alive request must wait for a thread (every one of its worker's threads is
 * taken), the worker's oldest queued request has waited WD_BALANCE_WAIT_NS, and a sibling has at
 * least two requests fewer (running and queued), the worker still serves the request but answers
 * it with "Connection: close": the proxy's next request then comes on a new connection, which the
 * lighter sibling may accept. It looks at most once per WD_BALANCE_GAP_NS.
 *
 * Why these conditions (bench/run's mixed test: 2 processes x 4 threads behind nginx keep-alive,
 * a 50 ms endpoint kept busy by 16 connections while wrk measures a fast one at -c4; alternated
 * single runs of 5 s at bdb0865, bench/README.md): without the balance the fast endpoint's p99 was
 * 130-201 ms and the 50 ms load got 79-158 of the 160 req/s its threads allow; with it, 100.5-102.9
 * ms and 155-159 req/s in 6 of 6 runs. Without the wait condition it fixed the mixed test as well,
 * but a saturated group, whose workers' loads differ by two for a moment all the time, closed 5 %
 * of its connections in hello keep-alive and 8 % in the TechEmpower /db test (a reconnection each);
 * with it, 23 of 284,000 and 175 of 88,000.
 *
 * The siblings come from the master ("siblings RECORD:PID ...", spawn.h) whenever a worker of the
 * group becomes ready; a record is read only while it still holds that pid and says it is ready
 * (a stopping worker clears that, and the master when it reaps one that died), so a list the
 * master has not replaced yet is harmless. ready stays 1 while a worker pauses accepting for a
 * moment (out of file descriptors, max-connections): a close then reaches the other workers, or
 * waits in the listen queue as any new connection would.
 *
 * Under the loop lock: the loop thread, or a parked Python thread running the loop's code for its
 * connection (conn_park.c). */
#ifndef WD_WORKER_BALANCE_H
#define WD_WORKER_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "scoreboard.h"
#include "spawn.h"

#define WD_BALANCE_GAP_NS 1000000ull   /* a look at the siblings at most once a millisecond */
#define WD_BALANCE_WAIT_NS 10000000ull /* ... when our oldest queued request has waited 10 ms */

typedef struct wd_balance {
    const wd_score_t *board; /* the scoreboard's records, or NULL (no siblings to read) */
    size_t n_board;
    int self; /* our record */
    struct {
        int record;
        uint64_t pid;
    } sib[WD_SIBLINGS_MAX];
    size_t n_sib;
    uint64_t next_ns;        /* no look before then */
    _Atomic uint64_t *count; /* the closes are counted here, or NULL */
} wd_balance_t;

void wd_balance_init(wd_balance_t *b, const wd_score_t *board, size_t n_board, int self,
                     _Atomic uint64_t *count);
/* The master's list: "RECORD:PID RECORD:PID ...", our own record among them or not. Returns how
 * many siblings it holds, or -EINVAL when the list is malformed (the old one is kept). */
int wd_balance_set(wd_balance_t *b, const char *list);
/* A keep-alive request must wait for a thread: 1 when it is time to look at the siblings (then not
 * again for WD_BALANCE_GAP_NS), 0 to keep the connection without looking. */
int wd_balance_due(wd_balance_t *b, uint64_t now_ns);
/* ... and after a 1 from wd_balance_due. queued_since_ns: when our oldest queued request came
 * (0 = none). Loads are compared by the scoreboard's gauges (busy_threads + queued, ours plus the
 * request being queued). 1 = answer this request with "Connection: close" (counted), 0 = keep
 * the connection. */
int wd_balance_should_close(wd_balance_t *b, uint64_t now_ns, uint64_t queued_since_ns);

#endif
