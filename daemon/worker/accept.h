/* Accepting a group's connections in a worker. The listeners the master passed are watched so
 * that one worker wakes per new connection (EPOLLEXCLUSIVE in the loop's own epoll set: see
 * listeners_exclusive in accept.c), and a worker takes new connections only while nothing says
 * otherwise: its capacity (requests in flight per Python thread), max-connections, a shortage of
 * file descriptors, a request stuck past request-timeout, or its stop. A connection taken goes to
 * the worker's connections (wd_conn_new).
 *
 * The worker owns a wd_accept_t: it fills in the first fields, calls wd_accept_init, then
 * wd_accept_size once its Python threads run, and calls wd_accept_update after anything that may
 * allow or forbid accepting (a request dispatched or done, a connection closed, a change of stuck
 * or full). Loop thread only. */
#ifndef WD_DAEMON_ACCEPT_H
#define WD_DAEMON_ACCEPT_H

#include "config.h"
#include "conn.h"
#include "handoff.h"
#include "scoreboard.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct wd_accept {
    /* Set by the worker before wd_accept_init. */
    uv_loop_t *loop;
    const wd_group_conf_t *group;
    int pid;
    wd_score_t *score;     /* accept_empty is counted in it, accepting kept there */
    wd_handoff_t *handoff; /* how many requests are in flight */
    wd_conns_t *conns;     /* where the connections taken go */

    /* Set by the worker, which then calls wd_accept_update. */
    int stuck; /* a request is past request-timeout (its thread may be stuck for good) */
    int full;  /* at max_conns with no idle keep-alive connection to close: set here, cleared by
                  the worker when a connection closes or may have gone idle */

    /* accept.c's own. */
    int stopping;    /* wd_accept_stop was called */
    int taking;      /* in wd_accept_take_waiting */
    size_t capacity; /* accept while fewer requests than this are in flight */
    wd_listener_t *listeners;
    size_t n_listeners;
    int accept_ep;          /* see listeners_exclusive */
    int exclusive;          /* listeners sit in the loop's own epoll with EPOLLEXCLUSIVE */
    uv_poll_t accept_poll;  /* watches accept_ep while accepting */
    int late;               /* at capacity: see accept_late_cb in accept.c */
    int late_ep;            /* every listener (not exclusive), watched by late_poll */
    uv_poll_t late_poll;    /* at capacity: wakes when a connection waits */
    uv_timer_t accept_late; /* ... then takes it, unless a sibling did meanwhile */
    int accepting;
    size_t max_conns;    /* max-connections, or what the open-file limit allows (wd_accept_size) */
    uv_timer_t fd_pause; /* out of file descriptors: not accepting until it fires */
    int fd_paused;
    uint64_t fd_pause_ms;    /* the current pause; doubles while accept4 keeps failing */
    uint64_t fd_fails;       /* accept4 failures for want of fds since the last message */
    uint64_t fd_closed_idle; /* idle keep-alive connections closed for want of fds, the same */
    int fd_room_made;        /* one was closed so, and no accept4 has succeeded since */
    int fd_short;            /* accept4 said so this loop turn: no other listener tried */
    uint64_t fd_logged_ns;   /* when that message was written */
} wd_accept_t;

/* Takes over the group's listeners (fds from WD_WORKER_FD_LISTEN on: spawn.h) and sets the
 * capacity; accepting starts at the first wd_accept_update, after wd_accept_size. 0 or -1
 * (logged). */
int wd_accept_init(wd_accept_t *a);
/* Takes over a connection another worker of the group accepted on listener index and handed
 * over idle (conn.h: wd_conns_ops_t.hand_over), within max-connections: 0, or -1 = closed.
 * how (conn.h: WD_CONN_*): WD_CONN_KEPT, idle_ms since its last answer; WD_CONN_FRESH, one that
 * had sent nothing, idle_ms old; WD_CONN_BACK, one this worker handed over that none could take
 * (the master gave it back): it is not handed over again. origin: the client its PROXY header
 * named (conn.h: wd_conn_new), or NULL. */
int wd_accept_adopt(wd_accept_t *a, size_t index, int fd, int how, uint64_t idle_ms,
                    const wd_conn_origin_t *origin);
/* Sets max_conns: max-connections, or by default three quarters of the file descriptors the
 * open-file limit leaves beside those the worker holds now (its threads' eventfds, listeners,
 * the app's files and sockets: 21 with 4 threads, 32 with 15); the quarter left is for what
 * the app opens later and the body temp files. Warns when the limit leaves fewer than 32, or fewer
 * than an explicit max-connections. Call it once the Python threads run. */
void wd_accept_size(wd_accept_t *a);
/* Starts or stops accepting, as the reasons above say now. */
void wd_accept_update(wd_accept_t *a);
/* Loop: the end of the loop's turn, before it may block (wd_handoff_set_on_block). */
void wd_accept_before_block(wd_accept_t *a);
/* The worker's group (or wsgid) stops: takes every connection waiting on its listeners, up to
 * max-connections, its capacity aside (they are served, or answered 503 at graceful-timeout);
 * no idle keep-alive connection is closed to make room (a proxy may be writing on it: conn.c). A
 * stopped group's listener refuses connections once every worker has stopped accepting (the
 * master's wd__m_listeners_refuse_if_stopped), and that shutdown resets what is still queued, whose
 * client may have sent its request: through nginx a 502, not retried for a POST. Left queued until
 * the last worker exited, they waited up to graceful-timeout + shutdown-timeout for that
 * (helper-62: 11 POSTs answered 502 in 5 stops under load, with a healthy second group behind
 * nginx). */
void wd_accept_take_waiting(wd_accept_t *a);
/* The worker is stopping: it accepts no more. */
void wd_accept_stop(wd_accept_t *a);

#endif
