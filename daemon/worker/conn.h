/* One client connection in a worker's loop: reading and parsing a request (uwsgi or HTTP/1.1),
 * buffering its body, handing it to a Python thread, and writing the response from its buffer.
 *
 * The module is conn.c (lifecycle, reading, dispatch, writing), conn_parse.c (uwsgi and HTTP
 * requests), conn_fcgi.c (FastCGI records), conn_answer.c (the answers the loop makes itself),
 * conn_timeout.c (the timeouts), conn_body.c (request bodies), conn_log.c (the access log) and
 * conn_park.c (a connection its Python thread keeps), which share conn_int.h.
 *
 * A worker's connections share a wd_conns_t: the worker fills it in and answers the few things the
 * connections ask of it through wd_conns_ops_t; conn.c knows nothing else of the worker. */
#ifndef WD_DAEMON_CONN_H
#define WD_DAEMON_CONN_H

#include "app.h"
#include "config.h"
#include "handoff.h"
#include "request.h"
#include "scoreboard.h"

#include <sys/socket.h>
#include <uv.h>

/* A listening socket as its connections see it (the worker owns it). */
typedef struct wd_listener {
    int fd;
    int is_unix;
    wd_protocol_t protocol;
    char addr[108]; /* local address (SERVER_ADDR), or the socket path */
    int port;
    const char *spec; /* as the config writes it ("127.0.0.1:8001"): what log lines name */
} wd_listener_t;

typedef struct wd_conn wd_conn_t;

/* The client a connection's PROXY header named (proxy-protocol), which comes once a connection:
 * what a worker that takes the connection over serves its requests as from (wd_conn_new). */
typedef struct wd_conn_origin {
    char remote[64]; /* "": a client of a unix socket */
    int port;
    int trusted; /* in trusted-proxies (forward.h) */
} wd_conn_origin_t;

/* What the connections ask of their worker; owner is wd_conns_t.owner. */
typedef struct wd_conns_ops {
    /* A request went to the Python threads. */
    void (*dispatched)(void *owner);
    /* The threads are done with one (its response is finished). */
    void (*request_done)(void *owner);
    /* A connection closed. */
    void (*closed)(void *owner);
    /* Have this worker replaced. */
    void (*recycle)(void *owner, const char *why);
    /* A spare request-body temp file, rewound (-1: none; the connection makes one), and the end
     * of a body's use of one. */
    int (*body_file)(void *owner);
    void (*body_file_done)(void *owner, int fd, uint64_t len);
    /* A stopping worker's idle kept connection (fd, accepted on l) goes to a running worker of
     * the group, through the master, instead of being closed (conn.c: hand_over): 0 = sent (the
     * connection closes its own descriptor only), -1 = no worker to take it, -EAGAIN = the way
     * to the master is full now (the connection waits: wd_conns_hand_over_waiting, once the
     * owner sees room, and wd_conns_t.hand_waiting meanwhile). fd -1 asks only
     * whether one could. idle_ms: how long it has waited for its next request, which the taker
     * counts against keepalive-timeout; fresh: it has sent nothing yet (no request answered on
     * it), and idle_ms is its age, which the taker counts against header-timeout; origin: the
     * client its PROXY header named (proxy-protocol), NULL when none came yet. NULL: never. */
    int (*hand_over)(void *owner, const wd_listener_t *l, int fd, uint64_t idle_ms, int fresh,
                     const wd_conn_origin_t *origin);
} wd_conns_ops_t;

/* A worker's connections and what they share. */
typedef struct wd_conns {
    uv_loop_t *loop;
    const wd_group_conf_t *group;
    wd_score_t *score;
    wd_handoff_t *handoff;
    struct wd_balance *balance; /* keep-alive balance (balance.h), or NULL */
    const char *tmpdir;
    int pid;
    const wd_conns_ops_t *ops;
    void *owner;
    const wd_app_ops_t *app; /* the runtime, for request-timeout's interrupt */

    wd_out_budget_t budget; /* response memory of all the connections (set by the owner) */
    uint64_t body_memory;   /* request-body buffers over 64K held now (body-memory-limit) */
    uint64_t body_disk;     /* request-body bytes in temp files now (body-disk-limit) */

    /* conn.c's own. */
    _Atomic int stopping; /* wd_conns_shutdown was called (read by Python threads: request.h) */
    uint64_t stop_ns;     /* ... then */
    int stop_final;       /* the graceful time is over (wd_conns_answer_queued) */
    uint64_t handed_over; /* idle connections handed over to a running worker (conn.c) */
    size_t hand_waiting;  /* connections whose hand-over waits for room (wd_conn_t.hand_wait) */
    uint64_t stop_closed; /* idle connections closed by the stop, not handed over */
    uint64_t seq;         /* requests numbered so far */
    wd_conn_t *list;      /* every open connection, the newest first */
    wd_conn_t *tail;      /* the oldest */
    size_t n;
    wd_conn_t *pool; /* freed connections kept for reuse (linked by next) */
    size_t n_pool;
    size_t freed; /* bytes closed connections gave back since the last tick (wd_conns_tick) */
} wd_conns_t;

enum wd_conn_state {
    WD_CONN_HEAD = 0, /* reading a request head (or idle on keep-alive) */
    WD_CONN_BODY,     /* reading the body */
    WD_CONN_APP,      /* dispatched: the app runs, its response is being sent */
    WD_CONN_LINGER,   /* error answer sent, draining what the client still sends */
    WD_CONN_CLOSED,
};

struct wd_conn {
    wd_conns_t *cs;
    const wd_listener_t *l;
    uv_poll_t poll;
    uv_timer_t timer;
    int fd;
    int events; /* what poll watches now */
    int writer; /* counted in the hand-off's writers (events has UV_WRITABLE) */
    int open_handles;
    int state;
    wd_req_kind_t proto;    /* 0 until the first byte decides */
    wd_conn_t *prev, *next; /* cs->list */
    wd_handoff_node_t node; /* on the hand-off's ready list when a Python thread has news */
    int dispatched;         /* the current response comes from a Python thread */
    int abandoned;          /* request-timeout + grace passed: answered 504 for the app */
    int abandoned_whole;    /* ... or its answer had gone out whole (its close() never returned) */
    int given_up;           /* the client is gone (abandon, failed write): watch no more */
    uint64_t last_sent;     /* out.sent when send-timeout was last restarted */
    int app_done;
    int logged;    /* the request's access-log line is written (an abandoned one's, at its 504) */
    int peer_shut; /* the client shut its sending side down (FIN) while a request ran */
    /* Parking (handoff.h): the thread waiting on this connection between requests (the loop
     * neither reads nor watches it meanwhile); the loop asked that thread to close it; the
     * response is being completed by the thread that parks. */
    wd_handoff_thread_t *park_owner;
    int park_close;
    int park_hand; /* ... or to hand it over (wd__conn_hand_over) */
    int hand_wait; /* its hand-over waits for room on the way to the master (hand_over: -EAGAIN) */
    int parking;
    uint64_t served; /* responses completed on this connection */
    int adopted; /* handed over idle by a stopping worker (wd_conn_new): a kept one; 2: given back
                  */
    uint64_t idle_ns; /* since when it waits for its next request: its last answer's finish
                       * (wd_out_t.finished_ns), or before its adoption; 0: not known */
    uint64_t made_ms; /* the loop's time (uv_now) when its header-timeout started: its accept,
                       * its first byte (a PROXY header's), or before its adoption as a fresh
                       * one (WD_CONN_FRESH); what a fresh one's hand-over counts its age from */
    /* The worker's tick (wd_conns_tick): served as it last saw it, and the ticks in a row it found
     * the connection idle since. */
    uint64_t tick_served;
    unsigned idle_ticks;

    /* Input: the head stays at the start of buf while its request runs. */
    char *buf;
    size_t cap;
    size_t len;      /* bytes in buf */
    size_t parsed;   /* bytes the parser has consumed */
    size_t head_end; /* end of the current request's head */
    /* header-timeout runs from the first byte of the request on its way (conn.c: read_once), and
     * a read into the empty buffer must not start it again: one after a PROXY header, or after
     * FastCGI records taken out of the buffer as they came. Cleared after a response. */
    int head_timed;
    wd_uwsgi_req_t uwsgi;

    /* The body: memory up to body-buffer-size, then an unlinked temp file. */
    char *body_mem;
    size_t body_cap;
    int body_fd;
    uint64_t body_len;
    uint64_t body_expect; /* uwsgi: CONTENT_LENGTH */
    int body_error;       /* status code to answer when the body cannot be taken */

    wd_req_t req;
    int status;      /* status of a response the loop made itself */
    int poll_inited; /* the poll handle exists (made on first need) */

    char remote[64];
    int remote_port;
    int trusted;       /* the peer is one of the group's trusted-proxies (forward.h) */
    int proxy_pending; /* proxy-protocol: its PROXY header has not been read yet */

    /* A connection freed to the worker's pool keeps its buffers, this (initialised once) and what
     * follows; everything before this is zeroed for the next connection. */
    wd_out_t out;

    /* HTTP's parser (2 KiB with its header table): made when the connection's first bytes say
     * HTTP (conn.c: conn_process), kept across its requests and in the pool, and given back by
     * an idle connection (wd__conn_trim_idle), or by a pooled one that the next connection's
     * first bytes say is uwsgi or FastCGI. NULL otherwise: those never need it. */
    wd_http_t *http;

    /* FastCGI (conn_fcgi.c): the request the proxy is sending on this connection (one at a
     * time: a second BEGIN_REQUEST gets CANT_MPX_CONN). Reset with the connection; params keeps
     * its allocation across requests and pooled connections up to 4 KiB (wd__conn_fcgi_idle). */
    struct {
        int active; /* BEGIN_REQUEST taken, END_REQUEST not yet sent */
        uint16_t id;
        int keep_conn;
        int params_done;
        uint32_t stdin_left; /* a STDIN record taken as it comes: content still to come, */
        uint32_t stdin_skip; /* then padding (conn_fcgi.c) */
        uint32_t stdin_len;  /* ... and its content length */
        char *params;        /* the PARAMS stream, put together */
        size_t params_len, params_cap;
        wd_fcgi_req_t req;
        /* Management answers and refusals the socket did not take (a large answer before them
         * fills it): sent at POLLOUT, the records after them waiting meanwhile (conn_fcgi.c:
         * send_now). NULL until needed. */
        char *unsent;
        uint16_t unsent_len;
        uint8_t unsent_close; /* then close: END_REQUEST of a request that did not keep it */
    } fcgi;
};

/* How a connection came to its worker (wd_conn_new's adopted; wd_conn_t.adopted keeps the first
 * three). */
enum {
    WD_CONN_ACCEPTED = 0, /* accepted here */
    WD_CONN_KEPT = 1,     /* an idle kept one another worker of the group handed over */
    WD_CONN_BACK = 2,     /* one of its own that none could take, given back */
    WD_CONN_FRESH = 3,    /* one that had sent nothing yet, handed over (adopted stays 0) */
};

/* Takes over an accepted, non-blocking socket; adopted (WD_CONN_*): WD_CONN_KEPT, an idle kept
 * connection another worker of the group handed over (wd_conns_ops_t.hand_over), waiting for its
 * next request as one kept here would (keepalive-timeout less idle_ms, the time it has waited
 * already, not header-timeout); WD_CONN_FRESH, one that had sent nothing, waiting for its first
 * byte header-timeout less idle_ms, its age, as if accepted here; WD_CONN_BACK, one of its own
 * given back (none could take it), never handed over again. origin: what its PROXY header said,
 * when one came before the hand-over (proxy-protocol; ignored without it, and from a peer not in
 * trusted-proxies, which could not have sent one): no other is read. */
void wd_conn_new(wd_conns_t *cs, const wd_listener_t *l, int fd, const struct sockaddr *peer,
                 socklen_t peer_len, int adopted, uint64_t idle_ms, const wd_conn_origin_t *origin);
/* The hand-off's callbacks (handoff.h): the response buffer of node's connection has news, and a
 * connection whose free was deferred because it sat on the ready list can be freed. */
void wd_conn_ready(wd_handoff_node_t *node);
void wd_conn_free(wd_handoff_node_t *node);
/* The hand-off's park callback (wd_handoff_park_cb): conn is a wd_conn_t. */
wd_req_t *wd_conn_park_cb(void *conn, wd_handoff_thread_t *t, int input, int *wake_loop);
void wd_conn_close(wd_conn_t *c);

/* Graceful stop: answers say "Connection: close" and their connections close behind them; idle
 * keep-alive connections go to a running worker of the group (wd_conns_ops_t.hand_over), or, when
 * none runs, close once idle for WD_STOP_IDLE_S (a request that comes before is served); nothing
 * is kept for reuse from now on. See conn.c. */
#define WD_STOP_IDLE_S 0.5
#define WD_STOP_FCGI_S 2.0 /* kept FastCGI connections are served on this long (conn.c) */
void wd_conns_shutdown(wd_conns_t *cs);
/* A stopping worker's way to the master has room again: the connections whose hand-over waited
 * for it are handed over, the oldest first, till it is full again. Returns how many still wait. */
size_t wd_conns_hand_over_waiting(wd_conns_t *cs);
/* The end of a graceful stop: answers status (a canned answer, logged in the access log) to every
 * request still waiting for a Python thread, which would otherwise see its connection closed
 * without a word. Returns how many. */
size_t wd_conns_answer_queued(wd_conns_t *cs, int status);
/* Closes up to want keep-alive connections idle between requests, the oldest first (their
 * clients reconnect). Returns how many the loop closed itself, their descriptors free at the end
 * of this loop turn; *asked (if not NULL): how many a Python thread keeps (parked), which that
 * thread was asked to close and closes when it gets to it. */
size_t wd_conns_close_idle(wd_conns_t *cs, size_t want, size_t *asked);
/* Whether a keep-alive connection is idle between requests (and not already asked to close). */
int wd_conns_any_idle(const wd_conns_t *cs);
/* Whether a request has run past request-timeout and is still running (its thread may be stuck
 * for good). */
int wd_conns_stuck(const wd_conns_t *cs);
/* While requests wait for a thread: the connections of requests not yet answered that nothing
 * watches (the first request of a connection is read at accept, and its socket is not polled
 * until there is something to send) are watched from now on, so that one whose client closed is
 * taken back from the queue and never runs (conn.c: peer_gone). Not at dispatch: an epoll_ctl per
 * request cost hello through uwsgi_pass -c64 5-7 us of CPU a request (24.1 -> 29.1, 26.7 -> 34). */
void wd_conns_watch_waiting(wd_conns_t *cs);
/* The worker's tick. request-timeout and queue-timeout (when timeouts is set): interrupts
 * requests running too long, answers 504 for those past the grace time (asking for this worker's
 * replacement) or queued too long. And a keep-alive connection idle for WD_CONN_IDLE_TRIM_TICKS
 * ticks in a row gives back its buffers (conn.c: wd__conn_trim_idle). Returns the bytes given
 * back. */
#define WD_CONN_IDLE_TRIM_TICKS 4
size_t wd_conns_tick(wd_conns_t *cs, uint64_t now, int timeouts);

#endif
