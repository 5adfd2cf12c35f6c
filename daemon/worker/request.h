/* A request as the loop hands it to a Python thread (through handoff.h).
 *
 * Everything here is plain data owned by the connection in the loop thread. From the moment the
 * loop dispatches a request until the Python thread calls wd_out_finish on req->out,
 * the request and everything it points to stay valid and unchanged, and only the Python thread
 * reads them. No libuv, no Python. */
#ifndef WD_DAEMON_REQUEST_H
#define WD_DAEMON_REQUEST_H

#include "out.h"
#include "../../protocol/fastcgi.h"
#include "../../protocol/http.h"
#include "../../protocol/uwsgi.h"

#include <stdatomic.h>
#include <stdint.h>

typedef enum wd_req_kind {
    WD_REQ_UWSGI = 1, /* environ comes from the uwsgi vars block */
    WD_REQ_HTTP,      /* environ is built from the HTTP request line and headers */
    WD_REQ_FCGI,      /* environ comes from the FastCGI PARAMS; the response goes in records */
} wd_req_kind_t;

typedef struct wd_req wd_req_t;

/* wd_req_t.may_be_lazy: a keep-alive request (HTTP, or on a kept FastCGI connection), whose answer
 * sent whole leaves the connection ready for the next (unless its head closes it after all,
 * balance.h: it then wakes the loop as any other end does); or one that ends its connection, which
 * the thread that sent the answer whole shuts (wd_out_t.may_shut), so that only the close is left,
 * and that can wait. */
#define WD_REQ_LAZY_KEEP 1
#define WD_REQ_LAZY_SHUT 2

struct wd_req {
    wd_req_t *next; /* queue link */
    wd_req_kind_t kind;
    uint64_t seq;               /* per-worker sequence number */
    char id[32];                /* request id for logs and environ: "PID-SEQ" */
    uint64_t t_start_ns;        /* CLOCK_MONOTONIC when the head was complete */
    uint64_t t_queued_ns;       /* when pushed onto the queue */
    uint64_t t_taken_ns;        /* when a Python thread took it (handoff.c, under its lock) */
    int may_be_lazy;            /* its end may be news the loop learns late (see handoff.h): */
    int claimed;                /* taken by the thread parked on its connection (handoff.h) */
    struct wd_balance *balance; /* HTTP keep-alive with siblings to balance with: asked when
                                   the head is framed whether to keep the connection (balance.h) */
    /* HTTP keep-alive: the worker is stopping (conn.h), and the head says "Connection: close". */
    const _Atomic int *stopping;

    const wd_uwsgi_req_t *uwsgi; /* WD_REQ_UWSGI: the parsed packet */
    const wd_http_t *http;       /* WD_REQ_HTTP: the parsed head (spans into http->base) */
    const wd_fcgi_req_t *fcgi;   /* WD_REQ_FCGI: the PARAMS (in the connection's buffer) */
    uint16_t fcgi_id;            /* its request id: every record of the response carries it */
    int fcgi_keep;               /* FCGI_KEEP_CONN: the proxy keeps the connection */

    /* The connection, for REMOTE_ADDR & co (HTTP; uwsgi carries its own). */
    char remote_addr[64]; /* "127.0.0.1", "::1", or "" on a unix socket */
    int remote_port;
    char server_addr[64]; /* local address, or the socket path for a unix listener */
    int server_port;      /* 0 for unix */
    int is_unix;
    /* trusted-proxies (forward.h): remote_addr is the client a trusted proxy named (its port
     * unknown); fwd_https 1/0 what it said of the scheme, -1 nothing; fwd_host its host, inside
     * the head (empty: none). strip_forwarded: an untrusted peer's X-Forwarded-* and Forwarded
     * are left out of the environ (strip-forwarded-headers). */
    int forwarded;
    int fwd_https;
    wd_slice_t fwd_host;
    int strip_forwarded;
    /* uwsgi and FastCGI carry the client in their variables: the peer says who it is. With
     * trusted-proxies set, a peer outside them (or a PROXY header's source outside them) is not
     * believed: its REMOTE_ADDR, REMOTE_PORT, HTTPS, REQUEST_SCHEME and UWSGI_SCHEME are left
     * out, remote_addr/remote_port are its own, and strip_forwarded applies to its HTTP_X_
     * FORWARDED_* and HTTP_FORWARDED (helper-71: any client of a protocol: auto listener named
     * itself 10.1.2.3 over https that way, past trusted-proxies and strip-forwarded-headers). */
    int vars_untrusted;

    /* The body, read in full before dispatch: in memory, or in an unlinked temp file. */
    uint64_t body_len;
    const char *body_mem; /* when body_fd < 0 */
    int body_fd;          /* >= 0: read it with pread from offset 0 */

    /* The response goes here (see out.h). */
    wd_out_t *out;

    /* Filled by the Python thread for the access log: the status code it sent (0 = none). */
    int status;
    uint64_t head_len; /* ... and the size of the response head it sent */
    int cut;           /* ... and 1 when the body went out incomplete (the app failed after its
                          head; a client gone the loop knows itself) */
    _Atomic int whole; /* ... and 1, before it calls the result's close(), when every byte of
                          the answer is pushed and needs no more framing: should close() never
                          return, the loop knows the answer is whole (conn_timeout.c) */

    /* request-timeout: the loop sets timed_out before it interrupts the thread, which then answers
     * 504 rather than 500. py_thread is the ident of the Python thread serving the request while
     * py_running is 1 (both written by that thread with the GIL held). Atomics (relaxed): the
     * loop reads py_running and the thread timed_out as they change, and a request's worth of
     * either alone (wd_handoff_remove decides whether a queued request is taken back); but
     * py_running is set with release, and the loop reads py_thread only after an acquire load
     * that sees it set (python_glue/pool.c). */
    _Atomic int timed_out;
    _Atomic int py_running;
    unsigned long py_thread;
};

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t wd_now_ns(void);

/* queue-timeout (seconds, 0 = none): whether req has waited longer than that for a Python thread
 * at now; *waited is how long it waited. Checked by the loop (which takes such a request back
 * and answers 504 for it, conn.c) and by the thread that takes it (python_glue/respond.c), so
 * that neither the loop's tick nor a late thread lets one through. */
int wd_req_queue_expired(const wd_req_t *req, double limit, uint64_t now, double *waited);

/* Whether req's answer must close its connection because its worker stops: the proxy then
 * opens its next connection to another worker instead of reusing this one (conn.c: stopping). */
static inline int wd_req_stopping(const wd_req_t *req)
{
    return req->stopping != NULL && atomic_load_explicit(req->stopping, memory_order_relaxed);
}

#endif
