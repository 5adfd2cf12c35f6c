/* A request as the loop hands it to a Python thread, and the queue between them.
 *
 * Everything here is plain data owned by the connection in the loop thread. From the moment the
 * loop pushes a request onto the queue until the Python thread calls wd_out_finish on req->out,
 * the request and everything it points to stay valid and unchanged, and only the Python thread
 * reads them. No libuv, no Python. */
#ifndef WD_DAEMON_REQUEST_H
#define WD_DAEMON_REQUEST_H

#include "out.h"
#include "../protocol/http.h"
#include "../protocol/uwsgi.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef enum wd_req_kind {
    WD_REQ_UWSGI = 1, /* environ comes from the uwsgi vars block */
    WD_REQ_HTTP,      /* environ is built from the HTTP request line and headers */
} wd_req_kind_t;

typedef struct wd_req wd_req_t;

struct wd_req {
    wd_req_t *next; /* queue link */
    wd_req_kind_t kind;
    uint64_t seq;         /* per-worker sequence number */
    char id[32];          /* request id for logs and environ: "PID-SEQ" */
    uint64_t t_start_ns;  /* CLOCK_MONOTONIC when the head was complete */
    uint64_t t_queued_ns; /* when pushed onto the queue */

    const wd_uwsgi_req_t *uwsgi; /* WD_REQ_UWSGI: the parsed packet */
    const wd_http_t *http;       /* WD_REQ_HTTP: the parsed head (spans into http->base) */

    /* The connection, for REMOTE_ADDR & co (HTTP; uwsgi carries its own). */
    char remote_addr[64]; /* "127.0.0.1", "::1", or "" on a unix socket */
    int remote_port;
    char server_addr[64]; /* local address, or the socket path for a unix listener */
    int server_port;      /* 0 for unix */
    int is_unix;

    /* The body, read in full before dispatch: in memory, or in an unlinked temp file. */
    uint64_t body_len;
    const char *body_mem; /* when body_fd < 0 */
    int body_fd;          /* >= 0: read it with pread from offset 0 */

    /* The response goes here (see out.h). */
    wd_out_t *out;

    /* Filled by the Python thread for the access log: the status code it sent (0 = none). */
    int status;
    uint64_t head_len; /* ... and the size of the response head it sent */

    /* request-timeout: the loop sets timed_out before it interrupts the thread, which then answers
     * 504 rather than 500. py_thread is the ident of the Python thread serving the request while
     * py_running is 1 (both written by that thread with the GIL held). */
    volatile int timed_out;
    volatile int py_running;
    unsigned long py_thread;
};

/* The queue of requests waiting for a Python thread. The loop pushes, the threads pop. */
typedef struct wd_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    wd_req_t *head;
    wd_req_t *tail;
    size_t len;
    int closed;
    int waiting;             /* threads blocked in wd_queue_pop */
    size_t nthreads;         /* threads serving the queue (set before they start) */
    uint64_t pops;           /* requests taken so far: the queue's progress */
    uint64_t kick_pops;      /* pops when the last kick (or the push that asked for it) looked */
    int spinner;             /* a thread polls for the next request before it sleeps */
    uint64_t spin_ns;        /* how long it polls (the group's busy-poll; 0 = never) */
    int kicking;             /* a push returned 1 and the last kick did not return 0 yet */
    _Atomic uint64_t *depth; /* optional gauges (the scoreboard's queued and busy_threads): */
    _Atomic uint64_t *busy;  /* push adds to depth; pop moves one from depth to busy */
} wd_queue_t;

void wd_queue_init(wd_queue_t *q);
void wd_queue_destroy(wd_queue_t *q);
/* Appends a chain of requests (linked by next, ending in NULL) at once: one lock.
 *
 * Wakes a sleeping thread only when no thread is busy. A busy thread takes the next request itself
 * when it is done (wd_queue_try_pop), with the GIL kept: under load one thread serves a run of
 * requests with no wake-up at all, where waking a thread per request would cost the loop more
 * than a hello costs the app, and the woken threads would only queue for the GIL. Returns 1 when
 * requests are left to the busy threads: the caller then calls wd_queue_kick every millisecond
 * while it returns 1. */
int wd_queue_push(wd_queue_t *q, wd_req_t *first, wd_req_t *last, size_t n);
/* The busy threads may be stuck in long calls (a slow query, a sleep) with the GIL released:
 * when no request was taken since the last look, wakes sleeping threads for the ones still
 * queued. Returns 1 while requests are queued (look again later), 0 when the queue is empty. */
int wd_queue_kick(wd_queue_t *q);
/* Blocks until a request is there (returns it) or the queue is closed and empty (returns NULL).
 * Call it with the GIL released. */
wd_req_t *wd_queue_pop(wd_queue_t *q);
/* The first request if there is one, without waiting (any thread, GIL held or not). */
wd_req_t *wd_queue_try_pop(wd_queue_t *q);
/* Takes req out of the queue if no thread has taken it yet; returns 1 if it did. */
int wd_queue_remove(wd_queue_t *q, wd_req_t *req);
/* Wakes every waiting thread; pop returns NULL once the queue is empty. */
void wd_queue_close(wd_queue_t *q);

uint64_t wd_now_ns(void);

#endif
