/* A connection's timeouts: its one timer, whose meaning follows from the state when it fires
 * (header-timeout, body-timeout, send-timeout, the end of a linger), and the worker's tick, which
 * checks the dispatched requests against queue-timeout and request-timeout and has connections
 * idle a while give back their buffers. Part of the connection module (conn.h); only the loop
 * thread runs it. */
#include "conn.h"
#include "conn_int.h"

#include "balance.h"
#include "log.h"
#include "../../protocol/response.h"

#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

void wd__conn_timer_cb(uv_timer_t *t)
{
    wd_conn_t *c = t->data;
    const wd_group_conf_t *g = c->cs->group;

    switch (c->state) {
    case WD_CONN_HEAD:
        if (c->cs->stopping && c->len == 0 && wd__conn_bytes_waiting(c)) {
            /* A request came as the idle connection of a stopping worker was to close: it is
             * served (conn.c: wd_conns_shutdown); the poll reads it, or its parked thread. */
            wd__conn_timer(c, WD_STOP_IDLE_S);
            return;
        }
        if (c->cs->stopping && wd__conn_hand_over(c))
            return;
        if (c->hand_wait) {
            /* The way to the master is still full: it waits for room, not closed (conn.c:
             * hand_wait). */
            wd__conn_timer(c, WD_STOP_IDLE_S);
            return;
        }
        if (c->len == 0 && !c->fcgi.active) {
            if (c->cs->stopping)
                c->cs->stop_closed++;
            wd_log_debug("peer %s: idle connection closed", wd__conn_peer(c));
        } else {
            wd_log_peer(WD_LOG_INFO,
                        "peer %s: request head not complete after %.0f s (header-timeout); "
                        "closing",
                        wd__conn_peer(c), g->header_timeout);
        }
        wd_conn_close(c);
        return;
    case WD_CONN_BODY:
        wd_log_peer(WD_LOG_INFO, "peer %s: no request body bytes for %.0f s (body-timeout): 408",
                    wd__conn_peer(c), g->body_timeout);
        wd__conn_fail(c, 408);
        return;
    case WD_CONN_APP:
        wd_log_peer(WD_LOG_INFO,
                    "peer %s: the client read nothing for %.0f s (send-timeout); closing%s%s",
                    wd__conn_peer(c), g->send_timeout, c->dispatched ? " request " : "",
                    c->dispatched ? c->req.id : "");
        wd__conn_abandon(c);
        return;
    default:
        wd_conn_close(c);
        return;
    }
}

/* The thread did not come back from its interruption, over seconds past it (it is blocked
 * outside Python): answer for it, and have this worker replaced, since the thread may never be
 * free again. The connection stays until the thread lets go of the request. Its answer may have
 * gone out whole already, the thread stuck in the result's close() (helper-60: the log said 504
 * and "cut"). The thread may come back at any time and write to the response buffer, or the
 * request's status and length (python_glue): the buffer is aborted first, which keeps it off the
 * socket, and what the line says of the answer is read under the buffer's lock then
 * (wd_out_abort_seen), never from the buffer's fields (ThreadSanitizer: a data race with the
 * thread's finish, out.c, and its status, respond.c). A lock here costs nothing: a request gets
 * here once, past request-timeout and its grace, and the normal request path does not come here
 * at all (its line is response_complete's, after the thread's finish). */
static void abandon(wd_conn_t *c, double over)
{
    const wd_http_t *h = wd__conn_http(c);
    wd_out_seen_t seen;
    char buf[512];
    size_t n;
    uint64_t sent;

    wd_out_abort_seen(&c->out, &seen);
    sent = seen.sent;
    c->abandoned = 1;
    c->abandoned_whole =
        sent > 0 && atomic_load_explicit(&c->req.whole, memory_order_acquire) && seen.drained;
    if (c->abandoned_whole) {
        wd_log_error("[req %s] peer %s: its answer went out whole, but the app's close() "
                     "is still running %.1f s after its interruption; closing the "
                     "connection and replacing this worker",
                     c->req.id, wd__conn_peer(c), over);
    } else if (sent > 0) {
        wd_log_error("[req %s] peer %s: still running %.1f s after its interruption; "
                     "cutting its answer after %llu bytes and replacing this worker",
                     c->req.id, wd__conn_peer(c), over, (unsigned long long)sent);
    } else {
        wd_log_error("[req %s] peer %s: still running %.1f s after its interruption; "
                     "answering 504 and replacing this worker",
                     c->req.id, wd__conn_peer(c), over);
        n = c->proto == WD_REQ_FCGI
                ? wd_fcgi_canned(buf, sizeof buf, c->fcgi.id, 504, WD_FCGI_REQUEST_COMPLETE)
                : wd_response_canned(buf, sizeof buf, 504, h != NULL ? (int)h->http_minor : 1, 0);
        if (write(c->fd, buf, n) == (ssize_t)n)
            sent = n; /* the access log counts what the client got (it said 0) */
    }
    shutdown(c->fd, SHUT_RDWR);
    /* Its line now: the thread may never come back to end the request, and the worker
     * stops soon (helper-57: no line for an abandoned request). */
    wd__conn_access_log_abandoned(c, &seen, sent);
    c->logged = 1;
    wd__conn_set_events(c, 0);
    c->cs->ops->recycle(c->cs->owner, "a request is stuck past request-timeout");
}

static void check_timeout(wd_conn_t *c, uint64_t now)
{
    const wd_group_conf_t *g = c->cs->group;
    double grace = g->shutdown_timeout > 0 ? g->shutdown_timeout : 5;
    double ran, waited;
    uint64_t taken;

    if (c->state != WD_CONN_APP || !c->dispatched || c->app_done || c->abandoned)
        return;
    if (!atomic_load_explicit(&c->req.py_running, memory_order_relaxed) &&
        wd_req_queue_expired(&c->req, g->queue_timeout, now, &waited) &&
        wd_handoff_remove(c->cs->handoff, &c->req)) {
        /* No thread took it in time: answer for it without running the app. A flood of
         * requests at a slow app makes as many: rate-limited (the access log has each). */
        wd_log_peer(WD_LOG_WARN,
                    "[req %s] peer %s: waited %.1f s for a Python thread, over queue-timeout "
                    "(%.1f s): 504",
                    c->req.id, wd__conn_peer(c), waited, g->queue_timeout);
        c->req.status = 504;
        /* The proxy's next request on this connection would wait here too (balance.h; this
         * request has left the gauges already). */
        if (wd_balance_close_req(&c->req, now, now, 1) && c->proto == WD_REQ_HTTP)
            c->http->keep_alive = 0;
        wd__conn_answer(c, 504);
        return;
    }
    /* request-timeout counts from when a thread took the request: one still queued is
     * queue-timeout's (it was answered 504 and had its worker replaced before it ever ran). One
     * taken by a thread that waits for the GIL counts: that is how a request stuck with the GIL
     * held keeps others of its worker. The time its thread waited for the client to take the
     * response (past response-spill-limit or response-disk-limit) does not: that is the client's,
     * which send-timeout bounds (a thread in that wait cannot be interrupted either). */
    if (g->request_timeout <= 0)
        return;
    taken = wd_handoff_taken_ns(c->cs->handoff, &c->req);
    if (taken == 0)
        return;
    taken += wd_out_waited_ns(&c->out, now);
    ran = now > taken ? (double)(now - taken) / 1e9 : 0;
    if (ran > g->request_timeout &&
        !atomic_load_explicit(&c->req.timed_out, memory_order_relaxed)) {
        atomic_store_explicit(&c->req.timed_out, 1, memory_order_relaxed);
        /* Clients that keep asking a slow endpoint make as many: rate-limited. */
        wd_log_peer(WD_LOG_WARN,
                    "[req %s] peer %s: running for %.1f s, over request-timeout (%.1f s): "
                    "interrupting its Python thread",
                    c->req.id, wd__conn_peer(c), ran, g->request_timeout);
        c->cs->app->interrupt(&c->req);
    }
    if (ran > g->request_timeout + grace)
        abandon(c, ran - g->request_timeout);
}

size_t wd_conns_answer_queued(wd_conns_t *cs, int status)
{
    size_t n = 0;

    cs->stop_final = 1; /* a kept FastCGI connection closes behind its 503 (conn.c) */
    for (wd_conn_t *c = cs->list, *next; c != NULL; c = next) {
        next = c->next; /* the answer may close c */
        if (c->state == WD_CONN_APP && c->dispatched && !c->app_done && !c->abandoned &&
            !atomic_load_explicit(&c->req.py_running, memory_order_relaxed) &&
            wd_handoff_remove(cs->handoff, &c->req)) {
            c->req.status = status;
            wd__conn_answer(c, status);
            n++;
        }
    }
    return n;
}

int wd_conns_stuck(const wd_conns_t *cs)
{
    for (const wd_conn_t *c = cs->list; c; c = c->next)
        if (c->state == WD_CONN_APP && c->dispatched && !c->app_done &&
            atomic_load_explicit(&c->req.timed_out, memory_order_relaxed))
            return 1;
    return 0;
}

void wd_conns_watch_waiting(wd_conns_t *cs)
{
    for (wd_conn_t *c = cs->list; c; c = c->next) {
        if (c->state == WD_CONN_APP && c->dispatched && !c->app_done && c->events == 0 &&
            !c->peer_shut && !c->abandoned && !c->given_up)
            wd__conn_set_events(c, UV_READABLE | UV_DISCONNECT);
    }
}

/* Whether c has been idle between requests (nothing in flight, nothing of the next request read,
 * not parked on a Python thread) for WD_CONN_IDLE_TRIM_TICKS ticks in a row: the first time, and
 * after that whenever a read that brought no response made buffers again (a PROXY header, a
 * FastCGI request the proxy aborted, a GET_VALUES). */
static int idle_long(wd_conn_t *c)
{
    int idle = c->state == WD_CONN_HEAD && c->len == 0 && !c->fcgi.active &&
               c->served == c->tick_served && c->park_owner == NULL;

    c->tick_served = c->served;
    if (!idle) {
        c->idle_ticks = 0;
        return 0;
    }
    if (c->idle_ticks >= WD_CONN_IDLE_TRIM_TICKS) /* trimmed already */
        return c->buf != NULL || c->body_mem != NULL || c->fcgi.params != NULL || c->http != NULL;
    return ++c->idle_ticks == WD_CONN_IDLE_TRIM_TICKS;
}

size_t wd_conns_tick(wd_conns_t *cs, uint64_t now, int timeouts)
{
    /* What closed connections gave back counts too: a burst of them that closes together leaves
     * its buffers in malloc's heaps as idle ones do (helper-54: 2,000 connections that each held
     * 64,000 bytes of a body, then closed, left a worker at 89.1 MiB of RSS for good, 19.6 after
     * a malloc_trim). */
    size_t freed = cs->freed;

    cs->freed = 0;
    for (wd_conn_t *c = cs->list, *next; c; c = next) {
        next = c->next;
        if (idle_long(c))
            freed += wd__conn_trim_idle(c);
        else if (timeouts)
            check_timeout(c, now);
    }
    return freed;
}
