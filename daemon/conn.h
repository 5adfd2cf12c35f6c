/* One client connection in a worker's loop: reading and parsing a request (uwsgi or HTTP/1.1),
 * buffering its body, handing it to a Python thread, and writing the response from its buffer. */
#ifndef WD_DAEMON_CONN_H
#define WD_DAEMON_CONN_H

#include "worker.h"

#include <sys/socket.h>

enum wd_conn_state {
    WD_CONN_HEAD = 0, /* reading a request head (or idle on keep-alive) */
    WD_CONN_BODY,     /* reading the body */
    WD_CONN_APP,      /* dispatched: the app runs, its response is being sent */
    WD_CONN_LINGER,   /* error answer sent, draining what the client still sends */
    WD_CONN_CLOSED,
};

struct wd_conn {
    wd_worker_t *w;
    wd_worker_listener_t *l;
    uv_poll_t poll;
    uv_timer_t timer;
    int fd;
    int events; /* what poll watches now */
    int open_handles;
    int state;
    wd_req_kind_t proto;    /* 0 until the first byte decides */
    wd_conn_t *prev, *next; /* w->conns */
    wd_handoff_node_t node; /* on the hand-off's ready list when a Python thread has news */
    int dispatched;         /* the current response comes from a Python thread */
    int abandoned;          /* request-timeout + grace passed: answered 504 for the app */
    uint64_t last_sent;     /* out.sent when send-timeout was last restarted */
    int app_done;
    uint64_t served;
    /* responses completed on this connection */ /* ... which has finished it (counted in
                                                    w->in_flight no more) */

    /* Input: the head stays at the start of buf while its request runs. */
    char *buf;
    size_t cap;
    size_t len;      /* bytes in buf */
    size_t parsed;   /* bytes the parser has consumed */
    size_t head_end; /* end of the current request's head */
    wd_http_t http;
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

    /* Last: a connection freed to the worker's pool keeps its buffers and this (initialised once),
     * and everything before it is zeroed for the next connection. */
    wd_out_t out;
};

/* Takes over an accepted, non-blocking socket. */
void wd_conn_new(wd_worker_t *w, wd_worker_listener_t *l, int fd, const struct sockaddr *peer,
                 socklen_t peer_len);
/* The hand-off's callbacks (handoff.h): the response buffer of node's connection has news, and a
 * connection whose free was deferred because it sat on the ready list can be freed. */
void wd_conn_ready(wd_handoff_node_t *node);
void wd_conn_free(wd_handoff_node_t *node);
/* Graceful stop: closes the connection now if it is idle, else after its response. */
void wd_conn_shutdown(wd_conn_t *c);
void wd_conn_close(wd_conn_t *c);
/* request-timeout: interrupts a request running too long; past the grace time answers 504 for
 * it and asks for this worker's replacement. */
void wd_conn_check_timeout(wd_conn_t *c, uint64_t now);

#endif
