/* A worker process: see worker.h.
 *
 * The main thread loads the app, starts the Python threads, then runs the libuv loop: it accepts
 * connections only while it has capacity (so that a busy worker leaves new connections to an idle
 * sibling), parses requests in conn.c, and hands them to the Python threads (handoff.c). */
#include "worker.h"
#include "alloc.h"

#include "config.h"
#include "conn.h"
#include "handoff.h"
#include "log.h"
#include "scoreboard.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <uv.h>

/* Spare request-body temp files (see worker.c): how many, how much of each is kept, and after
 * how long unused they are closed. */
#define WD_SPARE_BODY_FILES 8
#define WD_SPARE_BODY_KEEP (1u << 20)
#define WD_SPARE_BODY_IDLE_MS 500

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

    wd_listener_t *listeners;
    size_t n_listeners;
    int accept_ep;          /* see listeners_init */
    int exclusive;          /* listeners sit in the loop's own epoll with EPOLLEXCLUSIVE */
    uv_poll_t accept_poll;  /* watches accept_ep while accepting */
    uv_timer_t accept_late; /* while not accepting: takes what waits now and then */
    int accepting;
    size_t max_conns;    /* max-connections, or what the open-file limit allows */
    int full;            /* at max_conns with no idle keep-alive connection to close */
    uv_timer_t fd_pause; /* out of file descriptors: not accepting until it fires */
    int fd_paused;
    uint64_t fd_pause_ms;  /* the current pause; doubles while accept4 keeps failing */
    uint64_t fd_fails;     /* accept4 failures for want of fds since the last message */
    uint64_t fd_logged_ns; /* when that message was written */

    wd_handoff_t handoff; /* requests to the Python threads, news back from them */
    size_t capacity;      /* accept while fewer requests than this are in flight */
    wd_conns_t conns;     /* the connections (conn.c) */
    uint64_t served;

    uint64_t max_requests;     /* maximum-requests plus this worker's jitter; 0 = none */
    int recycle_asked;         /* "recycle" sent to the master already */
    uint64_t last_activity_ns; /* for inactivity-timeout */
    uv_timer_t tick;           /* request-timeout and inactivity-timeout checks */
    char master_buf[256];      /* a partial line from the master */
    size_t master_len;

    int stopping;
    int stuck; /* a request is past request-timeout (see tick_cb) */
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_poll_t master_poll;
    uv_timer_t stop_timer;
} wd_worker_t;

#define ACCEPT_BATCH 64
#define ACCEPT_LATE_MS 10 /* see accept_late_cb */
/* Requests in flight (running and queued) per Python thread before the worker stops accepting: a
 * little queue keeps the threads busy between wake-ups, a short one leaves new connections to an
 * idle sibling (EPOLLEXCLUSIVE wakes one worker per connection). */
#define CAPACITY_PER_THREAD 2
#define ACCEPT_LATE_BATCH 4
#define FD_PAUSE_MIN_MS 10 /* see fd_exhausted */
#define FD_PAUSE_MAX_MS 1000
#define FD_LOG_EVERY_NS 10000000000ull

static void worker_stop(wd_worker_t *w, const char *why);

static void say_master(const char *line)
{
    size_t n = strlen(line);

    if (write(WD_WORKER_FD_MASTER, line, n) != (ssize_t)n) {
        /* The master is gone; the EOF on its socket stops us. */
    }
}

/* --- accepting ------------------------------------------------------------------------------ */

static void accept_cb(uv_poll_t *p, int status, int events);
static int accept_on(wd_worker_t *w, wd_listener_t *l, int max, int late);

static void accept_late_cb(uv_timer_t *t);

/* Puts the listeners in the loop's epoll, or takes them out (exclusive mode, see listeners_init).
 * An entry added goes to the back of each listener's queue of exclusive waiters. */
static void exclusive_watch(wd_worker_t *w, int on)
{
    int ep = uv_backend_fd(w->loop);

    for (size_t i = 0; i < w->n_listeners; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = w->accept_ep};

        if (epoll_ctl(ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, w->listeners[i].fd, &ev) < 0 && on)
            wd_log_error("group %s pid %d: listener %s: cannot watch it: %s", w->group->name,
                         w->pid, w->listeners[i].addr, strerror(errno));
    }
}

static void accept_update(wd_worker_t *w)
{
    /* Stop at capacity; start again only once a thread is free, so that a worker hovering at its
     * capacity does not switch the listeners on and off for every request. The other reasons to
     * stop (see the fields) end with an event of their own, which calls this again. */
    size_t in_flight = wd_handoff_in_flight(&w->handoff);
    int may = !w->stopping && !w->fd_paused && !w->stuck && !w->full;
    int want =
        may && (w->accepting ? in_flight < w->capacity : in_flight < (size_t)w->group->threads);
    int late = may && !want; /* at capacity only: see accept_late_cb */

    if (late != uv_is_active((uv_handle_t *)&w->accept_late)) {
        if (late)
            uv_timer_start(&w->accept_late, accept_late_cb, ACCEPT_LATE_MS, ACCEPT_LATE_MS);
        else
            uv_timer_stop(&w->accept_late);
    }
    if (want == w->accepting)
        return;
    w->accepting = want;
    if (w->exclusive)
        exclusive_watch(w, want);
    else if (want)
        uv_poll_start(&w->accept_poll, UV_READABLE, accept_cb);
    else
        uv_poll_stop(&w->accept_poll);
}

/* A worker at capacity leaves new connections to its siblings; but behind a keep-alive proxy every
 * worker can stay at capacity for long, serving the connections it has, while a new one waits in
 * the listen queue (0.5 ms app behind nginx keep-alive: p99 0.6-1.2 s). So a worker that stopped
 * accepting still takes what waits every ACCEPT_LATE_MS: no connection waits longer. */
static void accept_late_cb(uv_timer_t *t)
{
    wd_worker_t *w = t->data;

    for (size_t i = 0; i < w->n_listeners && !w->accepting && !w->stopping && !w->fd_paused &&
                       !w->stuck && !w->full;
         i++)
        accept_on(w, &w->listeners[i], ACCEPT_LATE_BATCH, 1);
}

static void fd_pause_cb(uv_timer_t *t)
{
    wd_worker_t *w = t->data;

    w->fd_paused = 0;
    accept_update(w);
}

/* accept4 failed for want of file descriptors (EMFILE, ENFILE) or kernel memory. The listener
 * stays readable, so trying again at once would spin the loop and, with a line per failure,
 * flood the log (1.2 million lines in 3 s measured before this existed). Instead: stop accepting
 * for a pause that doubles from FD_PAUSE_MIN_MS to FD_PAUSE_MAX_MS while the failures go on
 * (siblings, or the kernel's backlog, hold the new connections meanwhile), and say so at most
 * once every FD_LOG_EVERY_NS, with a count. The connections the worker has, keep-alive ones
 * included, are served throughout (max-connections, below the fd limit by default, is where idle
 * keep-alive connections give way to new ones). */
static void fd_exhausted(wd_worker_t *w, const wd_listener_t *l, int err)
{
    uint64_t now = wd_now_ns();

    w->fd_fails++;
    w->fd_pause_ms = w->fd_pause_ms ? w->fd_pause_ms * 2 : FD_PAUSE_MIN_MS;
    if (w->fd_pause_ms > FD_PAUSE_MAX_MS)
        w->fd_pause_ms = FD_PAUSE_MAX_MS;
    if (w->fd_logged_ns == 0 || now - w->fd_logged_ns >= FD_LOG_EVERY_NS) {
        struct rlimit rl = {0};

        getrlimit(RLIMIT_NOFILE, &rl);
        wd_log_error("listener %s: cannot accept: %s (%llu times since the last message; %zu "
                     "connections open, open-file limit %llu): not accepting for %llu ms; raise "
                     "the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower "
                     "max-connections",
                     l->addr, strerror(err), (unsigned long long)w->fd_fails, w->conns.n,
                     (unsigned long long)rl.rlim_cur, (unsigned long long)w->fd_pause_ms);
        w->fd_fails = 0;
        w->fd_logged_ns = now;
    }
    w->fd_paused = 1;
    uv_timer_start(&w->fd_pause, fd_pause_cb, w->fd_pause_ms, 0);
    accept_update(w);
}

/* Takes up to max connections from l; returns how many. */
static int accept_on(wd_worker_t *w, wd_listener_t *l, int max, int late)
{
    int taken = 0;

    for (int i = 0; i < max && (w->accepting || late) && !w->fd_paused; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd;

        /* At max-connections an idle keep-alive connection makes room (the oldest first, once
         * the new one is taken); without one, this worker takes no more until one closes. */
        if (w->conns.n >= w->max_conns && !wd_conns_any_idle(&w->conns)) {
            w->full = 1;
            accept_update(w);
            return taken;
        }
        fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                fd_exhausted(w, l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                wd_log_error("listener %s: accept: %s", l->addr, strerror(errno));
            return taken;
        }
        taken++;
        w->fd_pause_ms = 0;
        if (w->conns.n >= w->max_conns)
            wd_conns_close_idle(&w->conns, 1);
        if (!l->is_unix) {
            int one = 1;

            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        wd_conn_new(&w->conns, l, fd, (struct sockaddr *)&ss, sl);
    }
    return taken;
}

/* A listener has a connection waiting. In exclusive mode the kernel woke this worker alone (the
 * first of the group's workers waiting in epoll_wait): take what waits on each listener (an empty
 * one costs one accept4 that says EAGAIN). A worker that already had connections or requests
 * then goes to the back of the queue of waiters, so that the next connection wakes a sibling:
 * under load connections spread over the group's processes (and their GILs), while at light
 * load one warm worker takes them all and its siblings sleep. Without exclusive mode accept_ep
 * holds the listeners: ask it which ones are ready. */
static void accept_cb(uv_poll_t *p, int status, int events)
{
    wd_worker_t *w = p->data;
    struct epoll_event ev[16];
    int n, taken = 0;

    (void)events;
    if (status < 0) {
        wd_log_error("group %s pid %d: listeners: %s", w->group->name, w->pid, uv_strerror(status));
        return;
    }
    if (w->exclusive) {
        int busy = w->conns.n > 0 || wd_handoff_in_flight(&w->handoff) > 0;

        if (!w->accepting)
            return; /* returned by the same epoll_wait as what made us stop */
        for (size_t i = 0; i < w->n_listeners; i++)
            taken += accept_on(w, &w->listeners[i], ACCEPT_BATCH, 0);
        if (busy && w->accepting && w->group->processes > 1) {
            exclusive_watch(w, 0);
            exclusive_watch(w, 1);
        }
    } else if (w->n_listeners == 1) {
        taken = accept_on(w, &w->listeners[0], ACCEPT_BATCH, 0);
    } else {
        do
            n = epoll_wait(w->accept_ep, ev, (int)(sizeof ev / sizeof ev[0]), 0);
        while (n < 0 && errno == EINTR);
        for (int i = 0; i < n; i++)
            taken += accept_on(w, &w->listeners[ev[i].data.u32], ACCEPT_BATCH, 0);
    }
    if (taken == 0)
        wd_score_add(&w->score->accept_empty, 1);
}

/* All workers of a group watch the same listening sockets, and each new connection should wake
 * one worker, not all of them (a woken loop that loses the race to accept4 costs a wake-up for
 * nothing: 2 workers, one connection at a time through uwsgi_pass, 82 us of CPU per request
 * against 52 us with 1 worker). EPOLLEXCLUSIVE does that, but only for an epoll instance that a
 * thread waits on in epoll_wait: through a nested epoll fd the kernel wakes every waiter. So the
 * listeners go straight into the loop's own epoll instance (uv_backend_fd) with EPOLLEXCLUSIVE,
 * tagged with the fd of accept_ep, an epoll instance that stays empty and that accept_poll
 * watches: libuv looks a ready fd up among its watchers, finds accept_poll and calls accept_cb.
 * libuv never sees the listeners, so they are taken out before accept_poll stops (uv_poll_stop
 * also drops the events already returned for accept_ep). Where the kernel refuses EPOLLEXCLUSIVE,
 * accept_ep holds the listeners and every accepting worker wakes. */
static int listeners_exclusive(wd_worker_t *w)
{
    int ep = uv_backend_fd(w->loop);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = w->accept_ep};

    if (ep < 0 || w->n_listeners == 0)
        return 0;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, w->listeners[0].fd, &ev) < 0)
        return 0;
    epoll_ctl(ep, EPOLL_CTL_DEL, w->listeners[0].fd, &ev);
    return 1;
}

static int accept_ep_add(wd_worker_t *w, uint32_t i)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};

    if (epoll_ctl(w->accept_ep, EPOLL_CTL_ADD, w->listeners[i].fd, &ev) == 0)
        return 0;
    wd_log_error("listener %s: cannot watch it: %s", w->listeners[i].addr, strerror(errno));
    return -1;
}

/* max-connections, or by default three quarters of the open-file limit (the master raised the
 * soft limit to the hard one): the rest is for the app's own files and sockets, the body temp
 * files and the worker's own. */
static size_t max_connections(const wd_worker_t *w)
{
    struct rlimit rl;
    uint64_t n = w->group->max_connections;

    if (n == 0) {
        n = 1000000;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur / 4 * 3 < n)
            n = rl.rlim_cur / 4 * 3;
        if (n < 16)
            n = 16;
    }
    wd_log_debug("max-connections %llu", (unsigned long long)n);
    return (size_t)n;
}

static int listeners_init(wd_worker_t *w)
{
    const wd_group_conf_t *g = w->group;

    w->accept_ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->accept_ep < 0) {
        wd_log_error("group %s: epoll_create1: %s", g->name, strerror(errno));
        return -1;
    }
    w->n_listeners = g->n_listen;
    w->listeners = xcalloc(g->n_listen, sizeof *w->listeners);
    for (size_t i = 0; i < g->n_listen; i++) {
        wd_listener_t *l = &w->listeners[i];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;

        l->fd = WD_WORKER_FD_LISTEN + (int)i;
        l->protocol = g->protocol;
        if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) < 0) {
            wd_log_error("listener %s: fd %d is not a socket (%s); the master should have passed "
                         "it",
                         g->listen[i].spec, l->fd, strerror(errno));
            return -1;
        }
        fcntl(l->fd, F_SETFL, fcntl(l->fd, F_GETFL) | O_NONBLOCK);
        fcntl(l->fd, F_SETFD, FD_CLOEXEC);
        if (ss.ss_family == AF_UNIX) {
            l->is_unix = 1;
            snprintf(l->addr, sizeof l->addr, "%s", g->listen[i].path ? g->listen[i].path : "unix");
        } else if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;

            inet_ntop(AF_INET, &in->sin_addr, l->addr, sizeof l->addr);
            l->port = ntohs(in->sin_port);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

            inet_ntop(AF_INET6, &in6->sin6_addr, l->addr, sizeof l->addr);
            l->port = ntohs(in6->sin6_port);
        }
    }
    w->exclusive = getenv("WSGID_ACCEPT_HERD") ? 0 : listeners_exclusive(w);
    for (size_t i = 0; i < g->n_listen && !w->exclusive; i++)
        if (accept_ep_add(w, (uint32_t)i) < 0)
            return -1;
    uv_poll_init(w->loop, &w->accept_poll, w->accept_ep);
    w->accept_poll.data = w;
    if (w->exclusive)
        uv_poll_start(&w->accept_poll, UV_READABLE, accept_cb);
    uv_timer_init(w->loop, &w->accept_late);
    w->accept_late.data = w;
    uv_unref((uv_handle_t *)&w->accept_late);
    uv_timer_init(w->loop, &w->fd_pause);
    w->fd_pause.data = w;
    uv_unref((uv_handle_t *)&w->fd_pause);
    w->max_conns = max_connections(w);
    return 0;
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
    accept_update(owner);
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
    w->full = 0; /* a keep-alive connection may now be idle: one that can make room */
    accept_update(w);
}

static void closed(void *owner)
{
    wd_worker_t *w = owner;

    if (w->stopping && w->conns.n == 0) {
        uv_stop(w->loop);
    } else if (w->full) {
        w->full = 0; /* below max-connections again */
        accept_update(w);
    }
}

static const wd_conns_ops_t conns_ops = {
    .dispatched = dispatched,
    .request_done = request_done,
    .closed = closed,
    .recycle = recycle,
    .body_file = body_file,
    .body_file_done = body_file_done,
};

/* --- stopping ------------------------------------------------------------------------------- */

static void stop_timer_cb(uv_timer_t *t)
{
    wd_worker_t *w = t->data;

    wd_log_warn("graceful-timeout: %zu connections still open, %zu requests running; closing them",
                w->conns.n, wd_handoff_in_flight(&w->handoff));
    uv_stop(w->loop);
}

static void worker_stop(wd_worker_t *w, const char *why)
{
    double grace = w->group->graceful_timeout + w->group->shutdown_timeout;

    if (w->stopping)
        return;
    w->stopping = 1;
    uv_timer_stop(&w->accept_late);
    spare_close_all(w);
    wd_log_info("stopping (%s): finishing %zu requests", why, wd_handoff_in_flight(&w->handoff));
    accept_update(w);
    wd_conns_shutdown(&w->conns);
    if (grace > 0)
        uv_timer_start(&w->stop_timer, stop_timer_cb, (uint64_t)(grace * 1000), 0);
    if (w->conns.n == 0)
        uv_stop(w->loop);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    worker_stop(s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void master_line(wd_worker_t *w, const char *line)
{
    if (strcmp(line, "stop") == 0) {
        worker_stop(w, "asked by the master");
    } else if (strcmp(line, "reopen-logs") == 0) {
        const char *access = w->group->access_log ? w->group->access_log : w->conf.access_log;

        if (wd_log_open(w->conf.log_file, access) == 0)
            wd_log_info("logs reopened");
    } else {
        wd_log_warn("unknown message from the master: '%s'", line);
    }
}

static void master_cb(uv_poll_t *p, int status, int events)
{
    wd_worker_t *w = p->data;
    ssize_t n;
    char *nl;

    (void)events;
    n = read(WD_WORKER_FD_MASTER, w->master_buf + w->master_len,
             sizeof w->master_buf - 1 - w->master_len);
    if (status < 0 || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        uv_poll_stop(p);
        worker_stop(w, "the master is gone");
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

/* Every quarter second: requests past request-timeout, and inactivity-timeout. */
static void tick_cb(uv_timer_t *t)
{
    wd_worker_t *w = t->data;
    const wd_group_conf_t *g = w->group;
    uint64_t now = wd_now_ns();

    char oldest[sizeof w->score->oldest];
    uint64_t since;

    if (g->request_timeout > 0 || g->queue_timeout > 0) {
        wd_conns_check_timeouts(&w->conns, now);
        /* A worker with a request past request-timeout may have a thread stuck for good (in C,
         * with the GIL held, nothing else of it runs): it takes no new connections until that
         * request is over, so that its siblings get them. */
        w->stuck = g->request_timeout > 0 && wd_conns_stuck(&w->conns);
        accept_update(w);
    }
    since = wd_conns_oldest(&w->conns, oldest, sizeof oldest);
    if (since != wd_score_get(&w->score->oldest_start_ns)) {
        wd_score_set(&w->score->oldest_start_ns, 0);
        memcpy(w->score->oldest, oldest, sizeof oldest);
        wd_score_set(&w->score->oldest_start_ns, since);
    }
    wd_score_set(&w->score->heartbeat_ns, now);
    if (g->inactivity_timeout > 0 && wd_handoff_in_flight(&w->handoff) == 0 &&
        now - w->last_activity_ns > (uint64_t)(g->inactivity_timeout * 1e9))
        recycle(w, "inactivity-timeout");
}

/* --- start ---------------------------------------------------------------------------------- */

/* Our record in the master's scoreboard, or a private one when there is none (a master that does
 * not pass it), so that the counters can always be written. */
static wd_score_t *scoreboard_map(int record)
{
    struct stat st;
    void *p;
    size_t size = WD_SCORE_MAX * sizeof(wd_score_t);

    if (record >= 0 && record < WD_SCORE_MAX && fstat(WD_WORKER_FD_SCOREBOARD, &st) == 0 &&
        (size_t)st.st_size >= size) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, WD_WORKER_FD_SCOREBOARD, 0);
        close(WD_WORKER_FD_SCOREBOARD);
        if (p != MAP_FAILED)
            return (wd_score_t *)p + record;
    }
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
    if (wd_config_load_string(&w->conf, text, done, path ? path : "wsgid.yaml", err, sizeof err) <
        0) {
        fprintf(stderr, "wsgid worker: %s\n", err);
        goto out;
    }
    w->group = wd_config_group(&w->conf, group_name);
    if (w->group == NULL) {
        fprintf(stderr, "wsgid worker: no group '%s' in the config\n", group_name);
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

int wd_worker_main(int argc, char **argv, const wd_app_ops_t *app)
{
    static wd_worker_t worker;
    wd_worker_t *w = &worker;
    char group_name[256], who[300], err[2048], line[2200];
    const char *spec = getenv("WSGID_WORKER");
    const char *tmp = getenv("TMPDIR");
    int record = -1;

    (void)argc;
    (void)argv;
    if (spec == NULL || sscanf(spec, "%255s %d %d", group_name, &w->slot, &record) < 2) {
        fprintf(stderr, "wsgid: WSGID_WORKER is malformed; workers are started by the master\n");
        return WD_WORKER_EXIT_CONFIG;
    }
    unsetenv("WSGID_WORKER");
    w->pid = (int)getpid();
    set_process_name();
    /* Large blocks (an app's 1 MiB bytes, a big response chunk) always get pages of their own,
     * returned when freed: with glibc's sliding threshold they would come from the Python threads'
     * arenas, which keep their high-water mark and grow the worker's RSS over time. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    w->score = scoreboard_map(record);
    signal(SIGPIPE, SIG_IGN);
    if (read_config(w, group_name) < 0) {
        say_master("failed cannot read the config\n");
        return WD_WORKER_EXIT_CONFIG;
    }
    snprintf(who, sizeof who, "%s:%d", group_name, w->pid);
    wd_log_init(who, w->conf.log_level);
    wd_log_open(w->conf.log_file, w->group->access_log ? w->group->access_log : w->conf.access_log);
    w->tmpdir = tmp && *tmp ? tmp : "/tmp";

    if (app->init(&w->conf, w->group, w->slot) < 0) {
        say_master("failed the Python interpreter could not be initialised\n");
        return WD_WORKER_EXIT_APP;
    }
    if (app->load(err, sizeof err) < 0) {
        snprintf(line, sizeof line, "failed %s\n", err);
        for (char *p = line; p[1]; p++)
            if (*p == '\n')
                *p = ' ';
        say_master(line);
        return WD_WORKER_EXIT_APP;
    }

    w->loop = uv_default_loop();
    w->capacity = (size_t)w->group->threads * CAPACITY_PER_THREAD;
    wd_handoff_init(&w->handoff, w->loop, w->group->busy_poll, wd_conn_ready, wd_conn_free,
                    &w->score->queued, &w->score->busy_threads);
    w->conns = (wd_conns_t){
        .loop = w->loop,
        .group = w->group,
        .score = w->score,
        .handoff = &w->handoff,
        .tmpdir = w->tmpdir,
        .pid = w->pid,
        .ops = &conns_ops,
        .app = app,
        .owner = w,
        .budget = {.used = &w->score->response_memory, .limit = w->group->response_memory_limit}};
    wd_score_set(&w->score->pid, (uint64_t)w->pid);
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
    if (listeners_init(w) < 0)
        return WD_WORKER_EXIT_CONFIG;
    if (app->start(&w->handoff) < 0) {
        say_master("failed the Python threads could not be started\n");
        return WD_WORKER_EXIT_APP;
    }
    accept_update(w);
    wd_log_info("serving %s with %d threads", w->group->app != NULL ? w->group->app : "its mounts",
                w->group->threads);
    wd_score_set(&w->score->ready, 1);
    say_master("ready\n");

    uv_run(w->loop, UV_RUN_DEFAULT);

    wd_log_info("stopped after %llu requests", (unsigned long long)w->served);
    if (wd_handoff_in_flight(&w->handoff) > 0) {
        /* Threads are still inside the app: do not wait for them. */
        fflush(NULL);
        _exit(0);
    }
    wd_handoff_close(&w->handoff);
    app->stop();
    wd_handoff_destroy(&w->handoff);
    return 0;
}
