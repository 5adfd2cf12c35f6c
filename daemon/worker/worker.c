/* A worker process: see worker.h.
 *
 * The main thread loads the app, starts the Python threads, then runs the libuv loop: it accepts
 * connections only while it has capacity (accept.c: so that a busy worker leaves new connections to
 * an idle sibling), parses requests in conn.c and conn_parse.c, and hands them to the Python
 * threads (handoff.c). */
#include "worker.h"
#include "bigblock.h"
#include "alloc.h"

#include "accept.h"
#include "affinity.h"
#include "balance.h"
#include "config.h"
#include "conn.h"
#include "handoff.h"
#include "log.h"
#include "scm.h"
#include "scoreboard.h"
#include "stacks.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* Spare request-body temp files (see worker.c): how many, how much of each is kept, and after
 * how long unused they are closed. */
#define WD_SPARE_BODY_FILES 8
#define WD_SPARE_BODY_KEEP (1u << 20)
#define WD_SPARE_BODY_IDLE_MS 500
/* A request queued this long has its connection watched (conn.h: wd_conns_watch_waiting). */
#define WD_WATCH_QUEUED_NS (100 * 1000000ull)
/* Files from the master not yet taken by the "logs" line they came with (spawn.h): two a line. */
#define WD_MASTER_FDS 8

typedef struct wd_worker {
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
    wd_balance_t balance;   /* keep-alive balance with the group's other workers */

    wd_accept_t accept; /* the listeners, and whether to take new connections (accept.c) */

    wd_handoff_t handoff; /* requests to the Python threads, news back from them */
    wd_conns_t conns;     /* the connections (conn.c) */
    uint64_t served;
    uint64_t tick_served;    /* `served` at the last tick */
    uint64_t trimmed_served; /* `served` at the last trim of the big blocks */
    size_t idle_freed;       /* bytes idle connections gave back since the last heap trim */
    uint64_t heap_trimmed_ns;

    uint64_t max_requests;     /* maximum-requests plus this worker's jitter; 0 = none */
    int recycle_asked;         /* "recycle" sent to the master already */
    uint64_t last_activity_ns; /* for inactivity-timeout */
    uv_timer_t tick;           /* request-timeout and inactivity-timeout checks */
    char master_buf[1024];     /* a partial line from the master */
    size_t master_len;
    int master_fds[WD_MASTER_FDS]; /* files that came with its lines, for its "logs" line */
    size_t n_master_fds;

    int stopping;
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_poll_t master_poll;
    int master_room; /* master_poll watches for room too: hand-overs wait for it (master_watch) */
    int master_gone; /* ... and no more: the master's end is closed */
    uv_poll_t log_poll; /* the access log's pipe, polled while lines wait for it (log_flush) */
    int log_pollable;   /* log_poll was made */
    int log_polling;    /* and is started */
    uv_timer_t stop_timer;
    int unlistened; /* it took what waited and told the master (worker_stop) */
    int last;       /* its group or wsgid stops ("stop last"): no worker to hand over to */
    size_t handing; /* connections handed over whose fate the master has not told yet */
} wd_worker_t;

static void worker_stop(wd_worker_t *w, const char *why, int last);
static void master_watch(wd_worker_t *w);
static void master_cb(uv_poll_t *p, int status, int events);

static void say_master(const char *line)
{
    size_t n = strlen(line);

    if (write(WD_WORKER_FD_MASTER, line, n) != (ssize_t)n) {
        /* The master is gone; the EOF on its socket stops us. */
    }
}

/* What the app runtime loads now (app.h), for the master's lines if the worker hangs or dies
 * there. One line: a newline in a path would end it. */
static void say_loading(const char *what)
{
    char line[1100];

    snprintf(line, sizeof line, "loading %s\n", what);
    for (char *p = line; p[1]; p++)
        if (*p == '\n')
            *p = ' ';
    say_master(line);
}

/* --- hand-off to the Python threads --------------------------------------------------------- */

/* --- spare request-body temp files ---------------------------------------------------------- */

/* Creating and deleting a temp file per body costs the filesystem more than writing the body
 * (inode, block reservation, fresh page cache: 1 MiB POST echo behind nginx +21-29 % in two A/B
 * runs). A body's file is kept for the next one, which writes over its page cache; its old bytes
 * past the next body's length are never read (the request's length bounds wsgi.input), and no more
 * than WD_SPARE_BODY_KEEP of them are kept. The spares are closed once a tick goes by unused. */
static void spare_close_all(wd_worker_t *w)
{
    while (w->n_spare_body > 0)
        close(w->spare_body_fd[--w->n_spare_body]);
}

static void spare_timer_cb(uv_timer_t *t)
{
    wd_worker_t *w = t->data;

    if (w->spare_gets == w->spare_gets_seen)
        spare_close_all(w);
    w->spare_gets_seen = w->spare_gets;
    if (w->n_spare_body > 0)
        uv_timer_start(t, spare_timer_cb, WD_SPARE_BODY_IDLE_MS, 0);
}

static int body_file(void *owner)
{
    wd_worker_t *w = owner;

    while (w->n_spare_body > 0) {
        int fd = w->spare_body_fd[--w->n_spare_body];

        w->spare_gets++;
        if (lseek(fd, 0, SEEK_SET) == 0)
            return fd;
        close(fd);
    }
    return -1;
}

static void body_file_done(void *owner, int fd, uint64_t len)
{
    wd_worker_t *w = owner;

    if (w->stopping || w->n_spare_body >= WD_SPARE_BODY_FILES ||
        (len > WD_SPARE_BODY_KEEP && ftruncate(fd, WD_SPARE_BODY_KEEP) < 0)) {
        close(fd);
        return;
    }
    w->spare_body_fd[w->n_spare_body++] = fd;
    if (!uv_is_active((uv_handle_t *)&w->spare_timer))
        uv_timer_start(&w->spare_timer, spare_timer_cb, WD_SPARE_BODY_IDLE_MS, 0);
}

/* --- what the connections ask of the worker (conn.h) ------------------------------------- */

static void recycle(void *owner, const char *why);

static void dispatched(void *owner)
{
    wd_worker_t *w = owner;

    wd_accept_update(&w->accept);
}

static void request_done(void *owner)
{
    wd_worker_t *w = owner;

    w->served++;
    w->last_activity_ns = wd_now_ns();
    if (w->max_requests && w->served >= w->max_requests) {
        char why[64];

        snprintf(why, sizeof why, "maximum-requests (%llu) reached",
                 (unsigned long long)w->max_requests);
        recycle(w, why);
    }
    w->accept.full = 0; /* a keep-alive connection may now be idle: one that can make room */
    wd_accept_update(&w->accept);
}

/* A stopping worker ends once its last connection has closed and the master has told the fate of
 * each it handed over ("handed", or "adopt INDEX back": spawn.h): one given back is kept as
 * before the hand-over. It ended as it handed its last one over, and one the master gave back
 * then died unread in its socket at the exit, closed at once with what the proxy had written on
 * it (helper-100). */
static void stop_if_done(wd_worker_t *w)
{
    if (w->stopping && w->conns.n == 0 && w->handing == 0)
        wd_handoff_stop(&w->handoff);
}

static void closed(void *owner)
{
    wd_worker_t *w = owner;

    if (w->stopping && w->conns.n == 0) {
        stop_if_done(w);
    } else if (w->accept.full) {
        w->accept.full = 0; /* below max-connections again */
        wd_accept_update(&w->accept);
    }
}

/* --- the access log's pipe ------------------------------------------------------------------- */

static void log_writable_cb(uv_poll_t *p, int status, int events);

/* Writes the access log lines that wait (log.h). Those the pipe does not take (the master is
 * behind, or was not scheduled a while) are written as soon as it takes more: the pipe is polled
 * for room until nothing waits, not only at the next turn or tick, which drained a full 8 KiB
 * pipe 8 KiB a quarter second once the worker had gone idle (helper-88). Polled only while lines
 * wait, so that an idle worker is woken no more often, nor a busy one's turns cost more; a master
 * that reads nothing (SIGSTOP) leaves the pipe full and the poll quiet. */
static void log_flush(wd_worker_t *w)
{
    int waiting = wd_log_flush(0) < 0;

    if (waiting != w->log_polling && w->log_pollable) {
        w->log_polling = waiting;
        if (waiting)
            uv_poll_start(&w->log_poll, UV_WRITABLE, log_writable_cb);
        else
            uv_poll_stop(&w->log_poll);
    }
    /* A pipe that cannot be polled is written at the ticks: no turn of the loop helps it. */
    wd_log_set_polled(w->log_polling || !w->log_pollable);
}

static void log_writable_cb(uv_poll_t *p, int status, int events)
{
    wd_worker_t *w = p->data;

    (void)events;
    if (status < 0) { /* libuv stopped it; the ticks write what waits from now on */
        w->log_pollable = w->log_polling = 0;
        return;
    }
    log_flush(w);
}

/* After logs_first: the access log's pipe, when there is one, to be polled by log_flush; the
 * poll keeps the loop alive no more than the lines it waits to write. */
static void log_poll_init(wd_worker_t *w)
{
    int fd = wd_log_access_fd();

    if (fd < 0 || uv_poll_init(w->loop, &w->log_poll, fd) < 0)
        return;
    w->log_poll.data = w;
    uv_unref((uv_handle_t *)&w->log_poll);
    w->log_pollable = 1;
}

/* The loop's turn is over (wd_handoff_set_on_block). */
static void turn_end(void *data)
{
    wd_worker_t *w = data;

    wd_accept_before_block(&w->accept);
    log_flush(w); /* the access log lines of the turn, before the loop blocks (log.h) */
    master_watch(w);
}

/* A stopping worker's idle kept connection goes to the master with an "adopt INDEX" line (spawn.h),
 * which passes it on to a running worker of the group: only while one is ready by the
 * scoreboard, and not when the whole group stops ("stop last"). */
static int hand_over(void *owner, const wd_listener_t *l, int fd, uint64_t idle_ms, int fresh,
                     const wd_conn_origin_t *origin)
{
    wd_worker_t *w = owner;
    char line[192];
    size_t len;
    int n;

    if (w->last || !wd_balance_any_ready(&w->balance))
        return -1;
    if (fd < 0)
        return 0;
    len = (size_t)snprintf(line, sizeof line, "adopt %zu %llu%s", (size_t)(l - w->accept.listeners),
                           (unsigned long long)idle_ms, fresh ? " new" : "");
    if (origin != NULL) /* " peer ADDR PORT TRUSTED" (spawn.h) */
        len += (size_t)snprintf(line + len, sizeof line - len, " peer %s %d %d",
                                origin->remote[0] ? origin->remote : "-", origin->port,
                                origin->trusted ? 1 : 0);
    len += (size_t)snprintf(line + len, sizeof line - len, "\n");
    n = wd_scm_send(WD_WORKER_FD_MASTER, line, len, &fd, 1, 0);
    if (n == -EAGAIN || n == -EWOULDBLOCK)
        return -EAGAIN; /* full: the connection waits for room (master_watch) */
    if (n <= 0)
        return -1; /* the master's end is gone: the connection stays */
    if ((size_t)n < len)
        say_master(line + n); /* the file went with the first byte */
    w->handing++;             /* till the master says "handed", or gives it back */
    return 0;
}

static const wd_conns_ops_t conns_ops = {
    .hand_over = hand_over,
    .dispatched = dispatched,
    .request_done = request_done,
    .closed = closed,
    .recycle = recycle,
    .body_file = body_file,
    .body_file_done = body_file_done,
};

/* --- stopping ------------------------------------------------------------------------------- */

/* graceful-timeout + shutdown-timeout after the stop. Requests no thread took (every thread
 * stuck, say in C with the GIL held) are answered 503 first: before, they saw their connections
 * closed without an answer or a log line, which nginx turned into 502s (helper-57). */
static void stop_timer_cb(uv_timer_t *t)
{
    wd_worker_t *w = t->data;
    size_t open = w->conns.n, running = wd_handoff_in_flight(&w->handoff);
    size_t queued = wd_conns_answer_queued(&w->conns, 503);

    wd_log_warn("graceful-timeout: %zu connections still open, %zu requests running or waiting "
                "for a thread; %zu of them that no thread had taken answered 503; closing the "
                "rest",
                open, running, queued);
    if (w->conns.hand_waiting > 0)
        wd_log_warn("graceful-timeout: %zu idle connections closed that were still waiting to be "
                    "handed over to a running worker (the master took no more of them)",
                    w->conns.hand_waiting);
    wd_handoff_stop(&w->handoff);
}

/* last: the master stops the worker's group (or wsgid), whose listeners are about to refuse
 * connections once every worker has said "unlistened": what waits in the listen queue is taken
 * first, or the master's shutdown of the listener would reset it (wd_accept_take_waiting). Only
 * then: a worker replaced or recycled leaves the queue to its siblings, which go on accepting
 * (helper-69). A SIGTERM may come before the master's message: the queue is taken then if the
 * worker's threads still run (they stop with its last connection). */
static void worker_stop(wd_worker_t *w, const char *why, int last)
{
    double grace = w->group->graceful_timeout + w->group->shutdown_timeout;

    if (last)
        w->last = 1;
    if (last && !w->unlistened) {
        w->unlistened = 1;
        if (!w->stopping || w->conns.n > 0)
            wd_accept_take_waiting(&w->accept);
        say_master("unlistened\n");
    }
    if (w->stopping)
        return;
    w->stopping = 1;
    wd_score_set(&w->score->ready, 0); /* not a worker to balance with (balance.h) */
    spare_close_all(w);
    wd_log_info("stopping (%s): finishing %zu requests", why, wd_handoff_in_flight(&w->handoff));
    wd_accept_stop(&w->accept);
    wd_conns_shutdown(&w->conns);
    if (grace > 0)
        uv_timer_start(&w->stop_timer, stop_timer_cb, (uint64_t)(grace * 1000), 0);
    stop_if_done(w);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    worker_stop(s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT", 0);
}

/* recv from the master, keeping the files that come with the bytes for the "logs" line they
 * belong to: the bytes read, or -1 with errno. */
static ssize_t master_recv(wd_worker_t *w, char *buf, size_t cap, int flags)
{
    return wd_scm_recv(WD_WORKER_FD_MASTER, buf, cap, flags, w->master_fds, &w->n_master_fds,
                       WD_MASTER_FDS);
}

/* "ERROR ACCESS" of a "logs" line: each "fd" (the next file that came: a pipe to the master) or
 * "off", all that wd__m_logs_give writes; a master starts its own image as its workers
 * (master_spawn.c), so no other master speaks to a worker. */
static int logs_take(wd_worker_t *w, const char *args)
{
    char what[2][8];
    int fd[2] = {WD_LOG_OFF, WD_LOG_OFF}, i = 0;

    if (sscanf(args, "%7s %7s", what[0], what[1]) != 2)
        goto bad;
    for (i = 0; i < 2; i++) {
        if (strcmp(what[i], "fd") == 0) {
            if (w->n_master_fds == 0)
                goto bad;
            fd[i] = w->master_fds[0];
            memmove(w->master_fds, w->master_fds + 1, --w->n_master_fds * sizeof(int));
        } else if (strcmp(what[i], "off") == 0) {
            fd[i] = WD_LOG_OFF;
        } else {
            goto bad;
        }
    }
    wd_log_use(fd[0], fd[1]);
    return 0;

bad:
    if (fd[0] >= 0)
        close(fd[0]);
    wd_log_warn("malformed message from the master: 'logs %s'", args);
    return -1;
}

/* The log files the master gave before the worker started: its first line, which is there
 * already (the master wrote it before it started the worker), read a byte at a time so that no
 * line after it is taken here. A master of an older wsgid (an upgrade that restarted nothing)
 * sends none: the logs go to stderr then. */
static void logs_first(wd_worker_t *w)
{
    char line[64];
    size_t n = 0;

    while (n < sizeof line - 1 && master_recv(w, line + n, 1, MSG_DONTWAIT) == 1)
        if (line[n++] == '\n')
            break;
    line[n] = '\0';
    if (n == 0 || line[n - 1] != '\n' || strncmp(line, "logs ", 5) != 0) {
        wd_log_warn("the master gave no log files (it may run an older wsgid: restart wsgid); "
                    "logging to stderr");
        return;
    }
    line[n - 1] = '\0';
    /* Pipes to the master (or off): it keeps no fd on the master's stderr, which may be a file
     * the master writes, and which its app could then truncate (helper-79). */
    if (logs_take(w, line + 5) == 0) {
        wd_log_use_stderr(-1);
        close(WD_WORKER_FD_STDERR);
    }
}

/* "ADDR PORT TRUSTED" of an "adopt" line (spawn.h), ADDR "-" for none: 0, or -1 (malformed). */
static int parse_origin(const char *s, wd_conn_origin_t *o)
{
    const char *sp = strchr(s, ' ');
    size_t n = sp != NULL ? (size_t)(sp - s) : 0;
    char *end;
    unsigned long port;

    if (n == 0 || n >= sizeof o->remote)
        return -1;
    if (n == 1 && *s == '-')
        n = 0;
    memcpy(o->remote, s, n);
    o->remote[n] = '\0';
    port = strtoul(sp + 1, &end, 10);
    if (end == sp + 1 || port > 65535 || *end != ' ' || (end[1] != '0' && end[1] != '1') ||
        end[2] != '\0')
        return -1;
    o->port = (int)port;
    o->trusted = end[1] == '1';
    return 0;
}

static void master_line(wd_worker_t *w, const char *line)
{
    wd_log_debug("from the master: %s", line);
    if (strcmp(line, "stop") == 0 || strcmp(line, "stop last") == 0) {
        worker_stop(w, "asked by the master", line[4] != '\0');
    } else if (strncmp(line, "adopt ", 6) == 0) {
        /* an idle connection a stopping sibling handed over (spawn.h): its file came with it */
        char *end;
        unsigned long index = strtoul(line + 6, &end, 10);
        int fd = -1;

        if (w->n_master_fds > 0) {
            fd = w->master_fds[0];
            memmove(w->master_fds, w->master_fds + 1, --w->n_master_fds * sizeof(int));
        }
        int back = strncmp(end, " back", 5) == 0, how = back ? WD_CONN_BACK : WD_CONN_KEPT;
        uint64_t idle_ms = 0; /* "adopt INDEX IDLE_MS[ new][ peer ADDR PORT TRUSTED]" */
        wd_conn_origin_t origin = {.port = 0};
        const wd_conn_origin_t *from = NULL;

        if (back)
            end += 5;
        else
            idle_ms = strtoull(end, &end, 10);
        if (strncmp(end, " new", 4) == 0) { /* one that has sent nothing yet */
            how = back ? how : WD_CONN_FRESH;
            end += 4;
        }
        if (strncmp(end, " peer ", 6) == 0 && parse_origin(end + 6, &origin) == 0)
            from = &origin; /* the client its PROXY header named */
        if (back && w->handing > 0)
            w->handing--;
        if (fd < 0)
            wd_log_warn("malformed message from the master: '%s' without its connection", line);
        else if (wd_accept_adopt(&w->accept, index, fd, how, idle_ms, from) < 0)
            wd_log_debug("a connection handed over was not taken (max-connections, or not "
                         "one of that listener)");
        stop_if_done(w);
    } else if (strcmp(line, "handed") == 0) {
        /* one this worker handed over went to a running worker (or none could take it) */
        if (w->handing > 0)
            w->handing--;
        stop_if_done(w);
    } else if (strncmp(line, "siblings", 8) == 0 && (line[8] == ' ' || line[8] == '\0')) {
        if (wd_balance_set(&w->balance, line + 8) < 0)
            wd_log_warn("malformed message from the master: '%s'", line);
    } else {
        wd_log_warn("unknown message from the master: '%s'", line);
    }
}

/* The master's socket is watched for room too while hand-overs wait for it (hand_over: the
 * socket full), so that each goes as soon as the master has read what came before: they waited
 * for their STOP_IDLE, and the socket was full again then. Called at the end of each turn of the
 * loop, and on the room seen. */
static void master_watch(wd_worker_t *w)
{
    int room = w->conns.hand_waiting > 0;

    if (room == w->master_room || w->master_gone)
        return;
    w->master_room = room;
    uv_poll_start(&w->master_poll, UV_READABLE | UV_DISCONNECT | (room ? UV_WRITABLE : 0),
                  master_cb);
}

static void master_cb(uv_poll_t *p, int status, int events)
{
    wd_worker_t *w = p->data;
    ssize_t n;
    char *nl;

    if (status == 0 && (events & UV_WRITABLE)) {
        wd_conns_hand_over_waiting(&w->conns);
        master_watch(w);
        if (!(events & (UV_READABLE | UV_DISCONNECT)))
            return;
    }
    n = master_recv(w, w->master_buf + w->master_len, sizeof w->master_buf - 1 - w->master_len, 0);
    if (status < 0 || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        uv_poll_stop(p);
        w->master_gone = 1;
        w->handing = 0; /* nobody will tell their fate */
        worker_stop(w, "the master is gone", 0);
        stop_if_done(w);
        return;
    }
    if (n < 0)
        return;
    w->master_len += (size_t)n;
    w->master_buf[w->master_len] = '\0';
    while ((nl = strchr(w->master_buf, '\n')) != NULL) {
        size_t k = (size_t)(nl - w->master_buf) + 1;

        *nl = '\0';
        master_line(w, w->master_buf);
        memmove(w->master_buf, w->master_buf + k, w->master_len - k + 1);
        w->master_len -= k;
    }
    if (w->master_len == sizeof w->master_buf - 1)
        w->master_len = 0; /* a line that long is no message of ours */
    /* Files come with the "logs" line (logs_first) and "adopt" lines alone, each with its line's
     * first byte: any left once every whole line is read belong to none. */
    while (w->master_len == 0 && w->n_master_fds > 0)
        close(w->master_fds[--w->n_master_fds]);
}

static void recycle(void *owner, const char *why)
{
    wd_worker_t *w = owner;

    char line[300];

    if (w->recycle_asked || w->stopping)
        return;
    w->recycle_asked = 1;
    wd_log_info("asking the master for a replacement: %s", why);
    snprintf(line, sizeof line, "recycle %s\n", why);
    say_master(line);
}

/* The big blocks kept for reuse (bigblock.h) go back to the kernel at the first tick after one
 * that saw no request completed: a burst of big bodies leaves the worker's RSS where it was within
 * half a second. Not sooner: "no request in flight" at a tick was measured too eager, the threads
 * being done with a 16 MiB download long before the loop has sent it (-c8: blocks trimmed at most
 * ticks, and their page faults back at 9.5 % of the worker's time). */
static void big_trim(wd_worker_t *w)
{
    int idle = w->served == w->tick_served;
    size_t n;

    w->tick_served = w->served;
    if (!idle || w->served == w->trimmed_served)
        return;
    w->trimmed_served = w->served;
    n = wd_big_trim();
    if (n > 0)
        wd_log_debug("idle: %zu KiB of big blocks given back", n >> 10);
}

/* The buffers idle and closed connections gave back (wd_conns_tick) stay in malloc's heaps, amid
 * what is in use, until malloc_trim hands their pages to the kernel: once 4 MiB or more were freed
 * (about 170 connections), at most once every 5 s, since it stops the loop while it walks the
 * heaps. 5,000 keep-alive connections idle after a hello each (1 process x 2 threads, direct HTTP):
 * the worker's RSS went from 10.3 to 68.3 MiB, to 57.8 a second later and 37.7 within 5 s (with the
 * buffers freed and no malloc_trim: 57.3; without either: 68.1); a malloc_trim took 2.1-8.5 ms of
 * the loop, and 2.0-12.4 ms with an app holding 1.1 GB of malloc's heap, half of it freed
 * piecemeal. */
#define HEAP_TRIM_MIN ((size_t)4 << 20)
#define HEAP_TRIM_EVERY_NS 5000000000ull

static void heap_trim(wd_worker_t *w, size_t freed, uint64_t now)
{
    w->idle_freed += freed;
    if (w->idle_freed < HEAP_TRIM_MIN || now - w->heap_trimmed_ns < HEAP_TRIM_EVERY_NS)
        return;
    malloc_trim(0);
    wd_log_debug("connections: %zu KiB of buffers given back (malloc_trim: %.1f ms)",
                 w->idle_freed >> 10, (double)(wd_now_ns() - now) / 1e6);
    w->idle_freed = 0;
    w->heap_trimmed_ns = now;
}

/* Every quarter second: requests past request-timeout, inactivity-timeout, the big blocks, the
 * buffers of idle connections. */
static void tick_cb(uv_timer_t *t)
{
    wd_worker_t *w = t->data;
    const wd_group_conf_t *g = w->group;
    uint64_t now = wd_now_ns(), queued_since;
    int timeouts = g->request_timeout > 0 || g->queue_timeout > 0;

    heap_trim(w, wd_conns_tick(&w->conns, now, timeouts), now);
    if (timeouts) {
        /* A worker with a request past request-timeout may have a thread stuck for good (in C,
         * with the GIL held, nothing else of it runs): it takes no new connections until that
         * request is over, so that its siblings get them. */
        w->accept.stuck = g->request_timeout > 0 && wd_conns_stuck(&w->conns);
        wd_accept_update(&w->accept);
    }
    queued_since = wd_handoff_oldest_queued(&w->handoff);
    wd_score_set(&w->score->queued_since_ns, queued_since);
    if (queued_since != 0 && now - queued_since > WD_WATCH_QUEUED_NS)
        wd_conns_watch_waiting(&w->conns);
    wd_score_set(&w->score->heartbeat_ns, now);
    if (g->inactivity_timeout > 0 && wd_handoff_in_flight(&w->handoff) == 0 &&
        now - w->last_activity_ns > (uint64_t)(g->inactivity_timeout * 1e9))
        recycle(w, "inactivity-timeout");
    big_trim(w);
    log_flush(w); /* access log lines its pipe did not take at once */
}

/* --- start ---------------------------------------------------------------------------------- */

/* Our record in the master's scoreboard, or a private one when there is none (a master that does
 * not pass it), so that the counters can always be written. *board: the whole scoreboard, or NULL
 * with a private record. */
static wd_score_t *scoreboard_map(int record, const wd_score_t **board)
{
    struct stat st;
    void *p;
    size_t size = WD_SCORE_MAX * sizeof(wd_score_t);

    if (record >= 0 && record < WD_SCORE_MAX && fstat(WD_WORKER_FD_SCOREBOARD, &st) == 0 &&
        (size_t)st.st_size >= size) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, WD_WORKER_FD_SCOREBOARD, 0);
        close(WD_WORKER_FD_SCOREBOARD);
        if (p != MAP_FAILED) {
            *board = p;
            return (wd_score_t *)p + record;
        }
    }
    *board = NULL;
    p = xcalloc(1, sizeof(wd_score_t));
    return p;
}

static int read_config(wd_worker_t *w, const char *group_name)
{
    struct stat st;
    char *text = NULL;
    char err[1024];
    const char *path = getenv("WSGID_CONFIG");
    size_t done = 0;
    int rc = -1;

    if (fstat(WD_WORKER_FD_CONFIG, &st) < 0) {
        fprintf(stderr, "wsgid worker: no config on fd %d: %s\n", WD_WORKER_FD_CONFIG,
                strerror(errno));
        return -1;
    }
    text = malloc((size_t)st.st_size + 1);
    if (text == NULL)
        abort();
    while (done < (size_t)st.st_size) {
        ssize_t k = pread(WD_WORKER_FD_CONFIG, text + done, (size_t)st.st_size - done, (off_t)done);

        if (k <= 0)
            goto out;
        done += (size_t)k;
    }
    text[done] = '\0';
    /* Its group's part of the file, as the master wrote it (wd_config_split): the lines of a
     * message are that text's. The master loaded the file, so this should not fail. */
    if (wd_config_load_string_flags(&w->conf, text, done, path ? path : "wsgid.yaml",
                                    WD_CONFIG_NO_FILE_CHECKS, err, sizeof err) < 0) {
        fprintf(stderr,
                "wsgid worker: group %s: the master's copy of its part of the configuration is "
                "refused (lines of the copy, not of the file): %s\n",
                group_name, err);
        goto out;
    }
    w->group = wd_config_group(&w->conf, group_name);
    if (w->group == NULL) {
        fprintf(stderr, "wsgid worker: no group '%s' in the configuration the master gave\n",
                group_name);
        goto out;
    }
    rc = 0;
out:
    free(text);
    close(WD_WORKER_FD_CONFIG);
    return rc;
}

static void set_process_name(void)
{
    char comm[16];
    const char *name = program_invocation_name;

    /* argv[0] is the display name already (the master set it); the short name is the first 15
     * bytes of it, so `ps -e` and `top` show it too. */
    snprintf(comm, sizeof comm, "%s", name);
    prctl(PR_SET_NAME, comm, 0, 0, 0);
}

/* A master started as root starts its workers as root (spawn.h): the worker becomes its group's
 * user first, with that user's supplementary groups, which uv_spawn's own switch dropped
 * (setgroups(0): a worker of a user in a group that may read the app's files could not), as
 * mod_wsgi, uWSGI and gunicorn do. Nothing but this runs as root: no config, no Python.
 * Returns 0 or -1 with a message in err. */
static int drop_privileges(const char *group, char *err, size_t errlen)
{
    const char *spec = getenv(WD_WORKER_ENV_USER);
    unsigned uid, gid;
    char user[256];
    const char *step = NULL;

    if (spec == NULL)
        return 0; /* the master is not root: nobody to become */
    if (sscanf(spec, "%u %u %255s", &uid, &gid, user) != 3) {
        snprintf(err, errlen, "group %s: %s is malformed; workers are started by the master", group,
                 WD_WORKER_ENV_USER);
        return -1;
    }
    if (initgroups(user, (gid_t)gid) < 0)
        step = "initgroups";
    else if (setgid((gid_t)gid) < 0)
        step = "setgid";
    else if (setuid((uid_t)uid) < 0)
        step = "setuid";
    else if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid ||
             (uid != 0 && setuid(0) == 0))
        step = "the switch did not hold"; /* never seen; checked as privilege drops should be */
    if (step != NULL) {
        snprintf(err, errlen,
                 "group %s: cannot run as user %s (uid %u, gid %u): %s: %s; check that the user "
                 "and its groups exist (id %s)",
                 group, user, uid, gid, step, strerror(errno), user);
        return -1;
    }
    unsetenv(WD_WORKER_ENV_USER);
    /* Switching users made the process undumpable, as an exec by that user does not: its /proc
     * files root's, no core dump, no py-spy or gdb by the user. Nothing of root's is in it. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    return 0;
}

int wd_worker_main(int argc, char **argv, const wd_app_ops_t *app)
{
    static wd_worker_t worker;
    wd_worker_t *w = &worker;
    char group_name[256], err[2048], line[2200], why[64];
    const char *spec = getenv("WSGID_WORKER");
    const char *tmp = getenv("TMPDIR");
    int record = -1, cpu, started, place = -1, workers = 0;
    size_t running;
    uint64_t lost;
    const wd_score_t *board;

    (void)argc;
    (void)argv;
    if (spec == NULL ||
        sscanf(spec, "%255s %d %d %d %d", group_name, &w->slot, &record, &place, &workers) < 2) {
        fprintf(stderr, "wsgid: WSGID_WORKER is malformed; workers are started by the master\n");
        return WD_WORKER_EXIT_CONFIG;
    }
    unsetenv("WSGID_WORKER");
    /* Its own log lines go to the master's stderr; its fds 1 and 2 are the master's pipes. */
    if (fcntl(WD_WORKER_FD_STDERR, F_SETFD, FD_CLOEXEC) == 0)
        wd_log_use_stderr(WD_WORKER_FD_STDERR);
    if (drop_privileges(group_name, err, sizeof err) < 0) {
        wd_log_error("%s", err);
        snprintf(line, sizeof line, "failed %s\n", err);
        say_master(line);
        return WD_WORKER_EXIT_CONFIG;
    }
    /* A pipe's stdout is buffered whole by stdio: what a C library printf()s would reach the log
     * at exit, or never on a crash. A line at a time, as on a terminal (PYTHONUNBUFFERED still
     * makes Python unbuffer it). */
    setvbuf(stdout, NULL, _IOLBF, 0);
    w->pid = (int)getpid();
    set_process_name();
    /* Large blocks (an app's 1 MiB bytes, a big response chunk) always get pages of their own,
     * returned when freed: with glibc's sliding threshold they would come from the Python threads'
     * arenas, which keep their high-water mark and grow the worker's RSS over time. Those of the
     * request path are kept for reuse a while all the same: bigblock.h. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    w->score = scoreboard_map(record, &board);
    wd_balance_init(&w->balance, board, board != NULL ? WD_SCORE_MAX : 0, record,
                    &w->score->balance_closes);
    wd_stacks_init(); /* before Python, which chains its dump to it (stacks.h) */
    signal(SIGPIPE, SIG_IGN);
    /* SIGUSR2 asks for the Python stacks (python_glue/dump.c installs the handler with Python):
     * before that, at startup-timeout, its default action killed the worker with "killed by
     * signal 12" where the master said its stacks followed (helper-69). Ignored, the master's
     * kill a moment later says what happened. */
    signal(SIGUSR2, SIG_IGN);
    if (read_config(w, group_name) < 0) {
        say_master("failed cannot read the config\n");
        return WD_WORKER_EXIT_CONFIG;
    }
    wd_log_init_worker(group_name, w->conf.log_level);
    logs_first(w);
    w->tmpdir = tmp && *tmp ? tmp : "/tmp";

    if (app->init(&w->conf, w->group, w->slot, err, sizeof err) < 0) {
        snprintf(line, sizeof line, "failed %s\n", err);
        say_master(line);
        return WD_WORKER_EXIT_APP;
    }
    if (app->load(say_loading, err, sizeof err) < 0) {
        snprintf(line, sizeof line, "failed %s\n", err);
        for (char *p = line; p[1]; p++)
            if (*p == '\n')
                *p = ' ';
        say_master(line);
        return WD_WORKER_EXIT_APP;
    }
    say_master("loaded\n"); /* what dies from now on dies in no import */

    w->loop = uv_default_loop();
    wd_handoff_init(&w->handoff, w->loop, w->group->busy_poll, wd_conn_ready, wd_conn_free,
                    &w->score->queued, &w->score->busy_threads);
    wd_handoff_set_threads(&w->handoff, (unsigned)w->group->threads);
    wd_handoff_set_park(&w->handoff, wd_conn_park_cb);
    w->conns = (wd_conns_t){.loop = w->loop,
                            .group = w->group,
                            .score = w->score,
                            .handoff = &w->handoff,
                            .balance = &w->balance,
                            .tmpdir = w->tmpdir,
                            .pid = w->pid,
                            .ops = &conns_ops,
                            .app = app,
                            .owner = w,
                            .budget = {.used = &w->score->response_memory,
                                       .limit = w->group->response_memory_limit,
                                       .disk_used = &w->score->response_disk,
                                       .disk_limit = w->group->response_disk_limit}};
    wd_score_set(&w->score->pid, (uint64_t)w->pid);
    wd_score_set(&w->score->main_ident, (uint64_t)pthread_self());
    wd_score_set(&w->score->started_unix, (uint64_t)time(NULL));
    wd_score_set(&w->score->threads, (uint64_t)w->group->threads);
    w->max_requests = w->group->maximum_requests;
    if (w->max_requests && w->group->maximum_requests_jitter) {
        srand((unsigned)(w->pid ^ time(NULL)));
        w->max_requests += (uint64_t)rand() % (w->group->maximum_requests_jitter + 1);
    }
    w->last_activity_ns = wd_now_ns();
    uv_timer_init(w->loop, &w->tick);
    w->tick.data = w;
    /* Always: the heartbeat the master's watchdog reads comes from it. */
    uv_timer_start(&w->tick, tick_cb, 250, 250);
    uv_unref((uv_handle_t *)&w->tick);
    wd_score_set(&w->score->heartbeat_ns, wd_now_ns());
    wd_stacks_heartbeat(&w->score->heartbeat_ns);
    uv_timer_init(w->loop, &w->spare_timer);
    uv_unref((uv_handle_t *)&w->spare_timer);
    w->spare_timer.data = w;
    uv_signal_init(w->loop, &w->sig_term);
    uv_signal_init(w->loop, &w->sig_int);
    w->sig_term.data = w->sig_int.data = w;
    uv_signal_start(&w->sig_term, signal_cb, SIGTERM);
    uv_signal_start(&w->sig_int, signal_cb, SIGINT);
    uv_timer_init(w->loop, &w->stop_timer);
    w->stop_timer.data = w;
    uv_poll_init(w->loop, &w->master_poll, WD_WORKER_FD_MASTER);
    w->master_poll.data = w;
    uv_poll_start(&w->master_poll, UV_READABLE | UV_DISCONNECT, master_cb);
    log_poll_init(w);
    w->accept = (wd_accept_t){.loop = w->loop,
                              .group = w->group,
                              .pid = w->pid,
                              .score = w->score,
                              .handoff = &w->handoff,
                              .conns = &w->conns};
    if (wd_accept_init(&w->accept) < 0)
        return WD_WORKER_EXIT_CONFIG;
    wd_handoff_set_on_block(&w->handoff, turn_end, w);
    /* The Python threads (and the helpers app->start starts) inherit this thread's mask. */
    if (place < 0) /* a master that did not say: the workers of the groups the config holds */
        place = wd_config_worker_index(&w->conf, w->group, w->slot, &workers);
    cpu = wd_affinity_home(w->group->pin_threads, place, workers, why, sizeof why);
    if (cpu >= 0 && wd_affinity_pin(cpu) < 0) {
        wd_log_warn("cannot keep the Python threads on CPU %d (%s): they run on any CPU; set "
                    "pin-threads: false to say so",
                    cpu, strerror(errno));
        cpu = -1;
    }
    wd_handoff_set_home(&w->handoff, cpu);
    started = app->start(&w->handoff, w->score);
    if (cpu >= 0)
        wd_affinity_unpin();
    if (started < 0) {
        say_master("failed the Python threads could not be started\n");
        return WD_WORKER_EXIT_APP;
    }
    wd_accept_size(&w->accept);
    wd_accept_update(&w->accept);
    line[0] = '\0';
    if (cpu >= 0)
        snprintf(line, sizeof line, " on CPU %d", cpu);
    else if (why[0] != '\0')
        snprintf(line, sizeof line, " on any CPU (pin-threads: auto: %s)", why);
    wd_log_info("serving %s with %d threads%s",
                w->group->app != NULL ? w->group->app : "its mounts", w->group->threads, line);
    wd_score_set(&w->score->ready, 1);
    say_master("ready\n");

    /* From here this thread is the loop's: its log lines never wait for the master (log.h). */
    wd_log_no_wait();
    wd_handoff_run(&w->handoff);

    /* requests answered; those a thread still runs (cut at graceful-timeout) are said apart: a
     * worker cut with every request unfinished said "stopped after 0 requests" (helper-62) */
    running = wd_handoff_in_flight(&w->handoff);
    line[0] = '\0';
    if (running > 0)
        snprintf(line, sizeof line, "; %zu more cut unanswered at graceful-timeout", running);
    lost = w->conns.stop_closed + w->conns.hand_waiting; /* none could take them, or in time */
    if (lost > 0)
        snprintf(line + strlen(line), sizeof line - strlen(line),
                 "; %llu idle connections closed, not handed over", (unsigned long long)lost);
    wd_log_info("stopped after %llu requests answered (%llu of them on a connection its thread "
                "kept, %llu answered with Connection: close for the keep-alive balance; %llu idle "
                "connections handed over to a running worker; %llu answers' ends taken at the lazy "
                "timer)%s",
                (unsigned long long)w->served, (unsigned long long)w->handoff.parks,
                (unsigned long long)wd_score_get(&w->score->balance_closes),
                (unsigned long long)w->conns.handed_over, (unsigned long long)w->handoff.lazy_late,
                line);
    wd_log_flush(1);
    if (running > 0) {
        /* Threads are still inside the app: do not wait for them. */
        fflush(NULL);
        _exit(0);
    }
    wd_handoff_close(&w->handoff);
    app->stop();
    wd_handoff_destroy(&w->handoff);
    return 0;
}
