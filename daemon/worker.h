/* A worker process: one libuv loop thread in front, a pool of Python threads behind it.
 *
 * How the master starts a worker (the contract between master.c and worker.c):
 *   - it executes the wsgid binary again with argv = { display name } only, so that ps shows the
 *     display name whole and nothing else;
 *   - the environment holds WSGID_WORKER="GROUP SLOT RECORD" (slot 1-based, RECORD the index of
 *     its scoreboard record) and WSGID_CONFIG=path of the config file (for messages);
 *   - fd 3 (WD_WORKER_FD_MASTER) is a SOCK_STREAM socketpair end to the master,
 *     fd 4 (WD_WORKER_FD_CONFIG) is a memfd holding the exact config text the master loaded,
 *     fd 5 (WD_WORKER_FD_SCOREBOARD) is the scoreboard memfd (scoreboard.h),
 *     fds 6.. (WD_WORKER_FD_LISTEN) are the group's listening sockets in the order of `listen`.
 *   - messages on the master socket are lines. Worker to master: "ready\n" once its app is loaded
 *     and it accepts; "failed MESSAGE\n" before it exits when the app cannot be loaded (the Python
 *     traceback has gone to the error log); "recycle REASON\n" when it wants to be replaced
 *     (maximum-requests reached, inactivity-timeout, a request stuck past request-timeout): the
 *     master then starts a replacement and, once that is ready, stops this one, as in a rolling
 *     restart. Master to worker: "stop\n" = stop accepting, finish in-flight and buffered
 *     responses, exit 0 (SIGTERM does the same); "reopen-logs\n" = reopen the log files.
 *   - a worker whose app cannot be loaded exits with WD_WORKER_EXIT_APP. */
#ifndef WD_DAEMON_WORKER_H
#define WD_DAEMON_WORKER_H

#define WD_WORKER_FD_MASTER 3
#define WD_WORKER_FD_CONFIG 4
#define WD_WORKER_FD_SCOREBOARD 5 /* see scoreboard.h */
#define WD_WORKER_FD_LISTEN 6

#define WD_WORKER_EXIT_APP 3    /* the app could not be loaded */
#define WD_WORKER_EXIT_CONFIG 4 /* the config could not be read (should not happen) */

/* Entered from main() when WSGID_WORKER is set. Returns the process exit status. */
int wd_worker_main(int argc, char **argv);

/* What the connections of a worker share (the rest of this header is for conn.c). */
#include "config.h"
#include "handoff.h"
#include "request.h"
#include "scoreboard.h"

#include <uv.h>

typedef struct wd_conn wd_conn_t;
typedef struct wd_worker wd_worker_t;

typedef struct wd_worker_listener {
    wd_worker_t *w;
    int fd;
    int is_unix;
    wd_protocol_t protocol;
    char addr[108]; /* local address, or the socket path */
    int port;
} wd_worker_listener_t;

/* Spare request-body temp files (see worker.c): how many, how much of each is kept, and after
 * how long unused they are closed. */
#define WD_SPARE_BODY_FILES 8
#define WD_SPARE_BODY_KEEP (1u << 20)
#define WD_SPARE_BODY_IDLE_MS 500

struct wd_worker {
    uv_loop_t *loop;
    wd_config_t conf;
    const wd_group_conf_t *group;
    int slot;
    int pid;
    const char *tmpdir;
    int spare_body_fd[WD_SPARE_BODY_FILES]; /* emptied request-body temp files, for reuse */
    int n_spare_body;
    uint64_t spare_gets, spare_gets_seen;
    uv_timer_t spare_timer; /* closes the spare files once they go unused */
    wd_score_t *score;      /* our record in the master's scoreboard */

    wd_worker_listener_t *listeners;
    size_t n_listeners;
    int accept_ep;          /* epoll fd holding every listener (EPOLLEXCLUSIVE) */
    uv_poll_t accept_poll;  /* watches accept_ep while accepting */
    uv_timer_t accept_late; /* while not accepting: takes what waits now and then */
    int accepting;

    wd_handoff_t handoff; /* requests to the Python threads, news back from them */
    size_t capacity;      /* accept while fewer requests than this are in flight */
    uint64_t seq;
    uint64_t served;
    wd_conn_t *conns; /* every open connection */
    size_t n_conns;
    wd_conn_t *conn_pool; /* freed connections kept for reuse (linked by next) */
    size_t n_pool;

    uint64_t max_requests;     /* maximum-requests plus this worker's jitter; 0 = none */
    int recycle_asked;         /* "recycle" sent to the master already */
    uint64_t last_activity_ns; /* for inactivity-timeout */
    uv_timer_t tick;           /* request-timeout and inactivity-timeout checks */
    char master_buf[256];      /* a partial line from the master */
    size_t master_len;

    int stopping;
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_poll_t master_poll;
    uv_timer_t stop_timer;
};

/* conn.c calls these. */
void wd_worker_dispatch(wd_worker_t *w, wd_req_t *req);
/* A spare request-body temp file, rewound (-1: none; the caller creates one), and the end of a
 * body's use of one: kept as a spare when there is room, else closed. Loop thread only. */
int wd_worker_body_file(wd_worker_t *w);
void wd_worker_body_file_done(wd_worker_t *w, int fd, uint64_t len);
void wd_worker_request_done(wd_worker_t *w);
void wd_worker_conn_gone(wd_worker_t *w);
/* Asks the master for a graceful replacement of this worker (once). */
void wd_worker_recycle(wd_worker_t *w, const char *why);
/* Counts a completed response in the scoreboard. */
void wd_worker_count(wd_worker_t *w, int status, uint64_t bytes, uint64_t duration_ns);

#endif
