/* Accepting a group's connections in a worker: see accept.h. Only the loop thread runs it. */
#include "accept.h"
#include "alloc.h"

#include "log.h"
#include "spawn.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#define ACCEPT_LATE_MS 10 /* see accept_late_cb */
/* Requests in flight (running and queued) per Python thread before the worker stops accepting: a
 * queue keeps the threads busy between the loop's wake-ups, a short one leaves new connections to
 * an idle sibling (EPOLLEXCLUSIVE wakes one worker per connection). Behind uwsgi_pass (a
 * connection a request) the queue is all the loop has read: at 2 a thread, and accepting again
 * only once a thread was free, the queue was never deep enough for the loop to rest
 * (handoff.c: rest), and the loop woke for nearly every request (0.72 loop sleeps a request at
 * 5 ms of I/O, -c32, 2 x 4; perf sched_switch). At 4, accepting again at half of it, and with the
 * answers' ends quiet (out.c: shut_whole), 2 A/B pairs of bench/run --tests io_0.5ms,io_5ms
 * --paths uwsgi: 5 ms, 65 and 73 us of CPU a request against 81 and 113, p99 26.8 ms against
 * 25.4 and 26.6; 0.5 ms, 47 and 45 us against 52 and 62, 11.6k and 11.5k req/s against 11.2k
 * and 9.9k. Accepting again only once a thread was free (at 4) had the p99 at 5 ms at 30 ms:
 * new connections then waited for the late watch. */
#define CAPACITY_PER_THREAD 4
#define ACCEPT_LATE_BATCH 4
#define FD_PAUSE_MIN_MS 10 /* see fd_exhausted */
#define FD_PAUSE_MAX_MS 1000
#define FD_LOG_EVERY_NS 10000000000ull

static void accept_cb(uv_poll_t *p, int status, int events);
static int accept_on(wd_accept_t *a, wd_listener_t *l, int max, int late);

static void accept_late_cb(uv_timer_t *t);
static void late_poll_cb(uv_poll_t *p, int status, int events);

/* Puts the listeners in the loop's epoll, or takes them out (exclusive mode, see
 * listeners_exclusive). An entry added goes to the back of each listener's queue of exclusive
 * waiters. */
static void exclusive_watch(wd_accept_t *a, int on)
{
    int ep = uv_backend_fd(a->loop);

    for (size_t i = 0; i < a->n_listeners; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = a->accept_ep};

        if (epoll_ctl(ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, a->listeners[i].fd, &ev) < 0 && on)
            wd_log_error("group %s pid %d: listener %s: cannot watch it: %s", a->group->name,
                         a->pid, a->listeners[i].spec, strerror(errno));
    }
}

void wd_accept_update(wd_accept_t *a)
{
    /* Stop at capacity; start again at half of it, so that a worker hovering at its capacity does
     * not switch the listeners on and off for every request. The other reasons to stop (see the
     * fields) end with an event of their own, which calls this again. */
    size_t in_flight = wd_handoff_in_flight(a->handoff);
    int may = !a->stopping && !a->fd_paused && !a->stuck && !a->full;
    int want = may && (a->accepting ? in_flight < a->capacity : in_flight < a->capacity / 2);
    int late = may && !want; /* at capacity only: see accept_late_cb */

    if (late != a->late) {
        a->late = late; /* on: the watch starts at the end of the turn (wd_accept_before_block) */
        if (!late) {
            if (uv_is_active((uv_handle_t *)&a->late_poll))
                uv_poll_stop(&a->late_poll);
            uv_timer_stop(&a->accept_late);
        }
    }
    if (want == a->accepting)
        return;
    a->accepting = want;
    wd_score_set(&a->score->accepting, (uint64_t)want); /* /readyz: health.c, queue_jammed */
    wd_handoff_set_accepting(a->handoff, want);
    if (a->exclusive)
        exclusive_watch(a, want);
    else if (want)
        uv_poll_start(&a->accept_poll, UV_READABLE, accept_cb);
    else
        uv_poll_stop(&a->accept_poll);
}

/* A worker at capacity leaves new connections to its siblings; but behind a keep-alive proxy every
 * worker can stay at capacity for long, serving the connections it has, while a new one waits in
 * the listen queue (0.5 ms app behind nginx keep-alive: p99 0.6-1.2 s). So a worker that stopped
 * accepting still takes what waits: when a connection comes (late_poll), it gives the siblings
 * ACCEPT_LATE_MS to take it, then takes what still waits, ACCEPT_LATE_BATCH at most, and watches
 * again. No connection waits longer than that, and a worker at capacity that gets no new
 * connection (keep-alive) is not woken at all: a timer that looked every ACCEPT_LATE_MS woke
 * each such worker 100 times a second for nothing (strace -c of a loop thread, 5 ms app behind
 * nginx keep-alive: 285 accept4 in 3 s, every one EAGAIN). */
static void late_poll_cb(uv_poll_t *p, int status, int events)
{
    wd_accept_t *a = p->data;

    (void)status;
    (void)events;
    uv_poll_stop(p);
    if (a->late)
        uv_timer_start(&a->accept_late, accept_late_cb, ACCEPT_LATE_MS, 0);
}

static void accept_late_cb(uv_timer_t *t)
{
    wd_accept_t *a = t->data;

    a->fd_short = 0;
    for (size_t i = 0; i < a->n_listeners && a->late && !a->accepting && !a->fd_short; i++)
        accept_on(a, &a->listeners[i], ACCEPT_LATE_BATCH, 1);
    /* Still late: watching again at the end of the turn */
}

/* A worker reaches its capacity and falls below it again within one loop turn many times a second
 * under load (its threads finish what it dispatched before the turn ends). Started at once, the
 * late watch cost two epoll_ctl for nothing each time (uv_poll_start and _stop each remove the fd
 * from epoll, there not yet added): 0.17 a request behind uwsgi_pass at -c64 (perf record of the
 * workers' syscalls). It starts here, when the loop may block, if the worker is still late. */
void wd_accept_before_block(wd_accept_t *a)
{
    if (a->late && !uv_is_active((uv_handle_t *)&a->late_poll) &&
        !uv_is_active((uv_handle_t *)&a->accept_late))
        uv_poll_start(&a->late_poll, UV_READABLE, late_poll_cb);
}

static void fd_pause_cb(uv_timer_t *t)
{
    wd_accept_t *a = t->data;

    a->fd_paused = 0;
    wd_accept_update(a);
}

/* accept4 failed for want of file descriptors (EMFILE, ENFILE) or kernel memory. The listener
 * stays readable, so trying again at once would spin the loop and, with a line per failure,
 * flood the log (1.2 million lines in 3 s measured before this existed).
 *
 * Out of its own descriptors (EMFILE), the oldest idle keep-alive connection gives way, as at
 * max-connections. If the loop holds it, its descriptor is closed at the end of this loop turn
 * (conn_closed_cb) and the listener, level-triggered, is ready again at the next: no pause; no
 * other listener is tried this turn (fd_short: accept4 says EMFILE on an empty one too), and no
 * other connection closed until an accept4 has taken the room (fd_room_made). Otherwise (a
 * Python thread keeps it, asked to close it, which that thread does when it gets to it; none;
 * or ENFILE: the system's table is full, and another process may take what is freed): stop
 * accepting for a pause that doubles from FD_PAUSE_MIN_MS to FD_PAUSE_MAX_MS while the failures
 * go on (siblings, or the kernel's backlog, hold the new connections meanwhile). Either way, say
 * so at most once every FD_LOG_EVERY_NS, with counts. The connections the worker keeps are served
 * throughout. (Before idle connections gave way here, a worker that reached its fd limit below
 * max-connections left a new client waiting until keepalive-timeout closed one: 75 s.) */
static void fd_exhausted(wd_accept_t *a, const wd_listener_t *l, int err)
{
    uint64_t now = wd_now_ns();
    size_t asked = 0;
    int made_room =
        err == EMFILE && !a->fd_room_made && wd_conns_close_idle(a->conns, 1, &asked) == 1;
    char pause[48] = "";

    a->fd_fails++;
    a->fd_short = 1;
    if (made_room || asked > 0)
        a->fd_closed_idle++;
    if (made_room) {
        a->fd_room_made = 1;
    } else {
        a->fd_pause_ms = a->fd_pause_ms ? a->fd_pause_ms * 2 : FD_PAUSE_MIN_MS;
        if (a->fd_pause_ms > FD_PAUSE_MAX_MS)
            a->fd_pause_ms = FD_PAUSE_MAX_MS;
        snprintf(pause, sizeof pause, ": not accepting for %llu ms",
                 (unsigned long long)a->fd_pause_ms);
    }
    if (a->fd_logged_ns == 0 || now - a->fd_logged_ns >= FD_LOG_EVERY_NS) {
        struct rlimit rl = {0};

        getrlimit(RLIMIT_NOFILE, &rl);
        wd_log_error("listener %s: cannot accept: %s (%llu times since the last message, %llu "
                     "idle keep-alive connections closed to make room; %zu connections open, "
                     "open-file limit %llu)%s; raise the limit (LimitNOFILE= in the systemd "
                     "unit, ulimit -n) or lower max-connections",
                     l->spec, strerror(err), (unsigned long long)a->fd_fails,
                     (unsigned long long)a->fd_closed_idle, a->conns->n,
                     (unsigned long long)rl.rlim_cur, pause);
        a->fd_fails = 0;
        a->fd_closed_idle = 0;
        a->fd_logged_ns = now;
    }
    if (made_room)
        return;
    a->fd_paused = 1;
    uv_timer_start(&a->fd_pause, fd_pause_cb, a->fd_pause_ms, 0);
    wd_accept_update(a);
}

/* Takes up to max connections from l; returns how many. */
static int accept_on(wd_accept_t *a, wd_listener_t *l, int max, int late)
{
    int taken = 0;

    for (int i = 0; i < max && (a->accepting || late) && !a->fd_paused && !a->fd_short; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd;

        /* At max-connections an idle keep-alive connection makes room (the oldest first, once
         * the new one is taken); without one, this worker takes no more until one closes. */
        if (a->conns->n >= a->max_conns && (a->taking || !wd_conns_any_idle(a->conns))) {
            a->full = 1;
            wd_accept_update(a);
            return taken;
        }
        fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                fd_exhausted(a, l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                wd_log_error("listener %s: accept: %s", l->spec, strerror(errno));
            return taken;
        }
        taken++;
        a->fd_pause_ms = 0;
        a->fd_room_made = 0;
        if (a->conns->n >= a->max_conns && !a->taking)
            wd_conns_close_idle(a->conns, 1, NULL);
        if (!l->is_unix) {
            int one = 1;

            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        wd_conn_new(a->conns, l, fd, (struct sockaddr *)&ss, sl, 0, 0, NULL);
    }
    return taken;
}

/* Whether fd is a stream connection accepted on l: its local address is l's (the same socket
 * path, or the same family and port). A worker runs the app, and the file an "adopt" line brings
 * came from one: a socketpair, a UDP socket or its own end of the master's socket were served as
 * connections, a socketpair on a TCP listener with trusted-proxies: [unix] as from a trusted
 * proxy (helper-96). */
static int accepted_on(int fd, const wd_listener_t *l)
{
    struct sockaddr_storage mine, its;
    socklen_t ml = sizeof mine, il = sizeof its, tl;
    int type = 0;

    tl = sizeof type;
    memset(&mine, 0, sizeof mine);
    memset(&its, 0, sizeof its);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
        getsockname(fd, (struct sockaddr *)&mine, &ml) < 0 ||
        getsockname(l->fd, (struct sockaddr *)&its, &il) < 0 || mine.ss_family != its.ss_family)
        return 0;
    switch (mine.ss_family) {
    case AF_UNIX:
        return ml == il && ml > offsetof(struct sockaddr_un, sun_path) + 1 &&
               memcmp(&mine, &its, ml) == 0;
    case AF_INET:
        return ((struct sockaddr_in *)&mine)->sin_port == ((struct sockaddr_in *)&its)->sin_port;
    case AF_INET6:
        return ((struct sockaddr_in6 *)&mine)->sin6_port ==
               ((struct sockaddr_in6 *)&its)->sin6_port;
    default:
        return 0;
    }
}

int wd_accept_adopt(wd_accept_t *a, size_t index, int fd, int how, uint64_t idle_ms,
                    const wd_conn_origin_t *origin)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;

    memset(&ss, 0, sizeof ss);
    if (index >= a->n_listeners || !accepted_on(fd, &a->listeners[index]) ||
        getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
        wd_log_peer(WD_LOG_WARN,
                    "a connection handed over on listener %zu is no connection "
                    "accepted on it: closed",
                    index);
        close(fd);
        return -1;
    }
    /* max-connections, as for one accepted: an idle one makes room, or this one is not taken */
    if (a->conns->n >= a->max_conns && wd_conns_close_idle(a->conns, 1, NULL) == 0) {
        close(fd);
        return -1;
    }
    wd_conn_new(a->conns, &a->listeners[index], fd, (struct sockaddr *)&ss, sl, how,
                how == WD_CONN_BACK ? 0 : idle_ms, origin);
    return 0;
}

/* A listener has a connection waiting. In exclusive mode the kernel woke this worker alone (the
 * first of the group's workers waiting in epoll_wait): take what waits on each listener (an empty
 * one costs one accept4 that says EAGAIN). A worker that already had connections or requests
 * then goes to the back of the queue of waiters, so that the next connection wakes a sibling:
 * under load connections spread over the group's processes (and their GILs), while at light
 * load one warm worker takes them all and its siblings sleep. Without exclusive mode accept_ep
 * holds the listeners: ask it which ones are ready.
 *
 * An idle worker (no connection, no request) takes one connection and goes on: at light load
 * behind uwsgi_pass (a connection a request) the accept4 that would find the queue empty was one
 * syscall in twelve a request. Listeners are level-triggered, so if more connections wait the
 * next turn (or a sibling) takes them, this worker then busy and taking one a thread: when a
 * keep-alive proxy opens many connections at once, they then split evenly over the workers,
 * and stay so. Taking up to 64, a worker could take up to its whole capacity (4 requests a
 * thread): behind nginx keep-alive, 16 connections on a 50 ms endpoint then split unevenly
 * for good, and the mixed test's p99 on the fast endpoint was 150 ms in 2 rounds of 3 (whole
 * set at 47a4df9; 100 ms at 2 a thread, which capped the split). */
static void accept_cb(uv_poll_t *p, int status, int events)
{
    wd_accept_t *a = p->data;
    struct epoll_event ev[16];
    int busy, max, n, taken = 0;

    /* Answers whose connection ends with them may be over: their threads told the loop quietly,
     * counting on this wake-up (wd_handoff_set_accepting). */
    wd_handoff_take_news(a->handoff);
    a->fd_short = 0;
    busy = a->conns->n > 0 || wd_handoff_in_flight(a->handoff) > 0;
    max = busy ? (int)a->group->threads : 1;

    (void)events;
    if (status < 0) {
        wd_log_error("group %s pid %d: listeners: %s", a->group->name, a->pid, uv_strerror(status));
        return;
    }
    if (a->exclusive) {
        if (!a->accepting)
            return; /* returned by the same epoll_wait as what made us stop */
        for (size_t i = 0; i < a->n_listeners && taken < max && !a->fd_short; i++)
            taken += accept_on(a, &a->listeners[i], max, 0);
        if (busy && a->accepting && a->group->processes > 1) {
            exclusive_watch(a, 0);
            exclusive_watch(a, 1);
        }
    } else if (a->n_listeners == 1) {
        taken = accept_on(a, &a->listeners[0], max, 0);
    } else {
        do
            n = epoll_wait(a->accept_ep, ev, (int)(sizeof ev / sizeof ev[0]), 0);
        while (n < 0 && errno == EINTR);
        for (int i = 0; i < n && taken < max && !a->fd_short; i++)
            taken += accept_on(a, &a->listeners[ev[i].data.u32], max, 0);
    }
    if (taken == 0 && !a->fd_short)
        wd_score_add(&a->score->accept_empty, 1);
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
static int listeners_exclusive(wd_accept_t *a)
{
    int ep = uv_backend_fd(a->loop);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = a->accept_ep};

    if (ep < 0 || a->n_listeners == 0)
        return 0;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, a->listeners[0].fd, &ev) < 0)
        return 0;
    epoll_ctl(ep, EPOLL_CTL_DEL, a->listeners[0].fd, &ev);
    return 1;
}

/* Puts listener l (index i) in the epoll instance ep, level-triggered. */
static int ep_add(int ep, const wd_listener_t *l, uint32_t i)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};

    if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &ev) == 0)
        return 0;
    wd_log_error("listener %s: cannot watch it: %s", l->spec, strerror(errno));
    return -1;
}

/* The file descriptors this process has open, or 0 if /proc cannot say. */
static uint64_t fds_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    uint64_t n = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not the directory's own */
}

void wd_accept_size(wd_accept_t *a)
{
    struct rlimit rl;
    uint64_t n = a->group->max_connections, held = fds_open(), room;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) {
        a->max_conns = n ? (size_t)n : 1000000;
        return;
    }
    room = rl.rlim_cur > held ? rl.rlim_cur - held : 0;
    if (room < 32)
        wd_log_warn("group %s: the open-file limit %llu leaves %llu file descriptors for "
                    "connections beside the %llu this worker holds (its %d threads, listeners, "
                    "the app's own): raise the limit (LimitNOFILE= in the systemd unit, ulimit "
                    "-n) or lower threads",
                    a->group->name, (unsigned long long)rl.rlim_cur, (unsigned long long)room,
                    (unsigned long long)held, a->group->threads);
    else if (n > room)
        wd_log_warn("group %s: max-connections %llu is above the %llu file descriptors the "
                    "open-file limit %llu leaves beside the %llu this worker holds: it runs out "
                    "of descriptors first (idle keep-alive connections then give way, else it "
                    "pauses accepting); raise the limit (LimitNOFILE= in the systemd unit, ulimit "
                    "-n) or lower max-connections",
                    a->group->name, (unsigned long long)n, (unsigned long long)room,
                    (unsigned long long)rl.rlim_cur, (unsigned long long)held);
    if (n == 0) {
        n = room / 4 * 3;
        if (n < 16)
            n = 16;
        if (n > 1000000)
            n = 1000000;
    }
    wd_log_debug("max-connections %llu (open-file limit %llu, %llu held)", (unsigned long long)n,
                 (unsigned long long)rl.rlim_cur, (unsigned long long)held);
    a->max_conns = (size_t)n;
}

int wd_accept_init(wd_accept_t *a)
{
    const wd_group_conf_t *g = a->group;

    a->capacity = (size_t)g->threads * CAPACITY_PER_THREAD;
    a->accept_ep = epoll_create1(EPOLL_CLOEXEC);
    if (a->accept_ep < 0) {
        wd_log_error("group %s: epoll_create1: %s", g->name, strerror(errno));
        return -1;
    }
    a->n_listeners = g->n_listen;
    a->listeners = xcalloc(g->n_listen, sizeof *a->listeners);
    for (size_t i = 0; i < g->n_listen; i++) {
        wd_listener_t *l = &a->listeners[i];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;

        l->fd = WD_WORKER_FD_LISTEN + (int)i;
        l->protocol = g->protocol;
        l->spec = g->listen[i].spec;
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
    a->exclusive = getenv("WSGID_ACCEPT_HERD") ? 0 : listeners_exclusive(a);
    for (size_t i = 0; i < g->n_listen && !a->exclusive; i++)
        if (ep_add(a->accept_ep, &a->listeners[i], (uint32_t)i) < 0)
            return -1;
    uv_poll_init(a->loop, &a->accept_poll, a->accept_ep);
    a->accept_poll.data = a;
    if (a->exclusive)
        uv_poll_start(&a->accept_poll, UV_READABLE, accept_cb);
    a->late_ep = epoll_create1(EPOLL_CLOEXEC);
    if (a->late_ep < 0) {
        wd_log_error("group %s: epoll_create1: %s", g->name, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < g->n_listen; i++)
        if (ep_add(a->late_ep, &a->listeners[i], (uint32_t)i) < 0)
            return -1;
    uv_poll_init(a->loop, &a->late_poll, a->late_ep);
    a->late_poll.data = a;
    uv_unref((uv_handle_t *)&a->late_poll);
    uv_timer_init(a->loop, &a->accept_late);
    a->accept_late.data = a;
    uv_unref((uv_handle_t *)&a->accept_late);
    uv_timer_init(a->loop, &a->fd_pause);
    a->fd_pause.data = a;
    uv_unref((uv_handle_t *)&a->fd_pause);
    return 0;
}

void wd_accept_take_waiting(wd_accept_t *a)
{
    a->taking = 1; /* up to max-connections, no idle keep-alive connection closed for room */
    for (size_t i = 0; i < a->n_listeners; i++)
        accept_on(a, &a->listeners[i], INT_MAX, 1);
    a->taking = 0;
}

void wd_accept_stop(wd_accept_t *a)
{
    a->stopping = 1;
    uv_timer_stop(&a->accept_late);
    wd_accept_update(a);
}
