/* Parking and the loop's run (see handoff.h): a thread that sent a keep-alive response whole keeps
 * its connection at light load and serves its next request itself; the loop lets go of its lock
 * when it blocks while a thread may park. The gates and the figures behind them are in handoff.c's
 * opening comment. */
#include "handoff_int.h"
#include "affinity.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

/* The thread itself: empties its eventfd, with a syscall only if a wake-up was written since it
 * last read it (one syscall less a request at light load, where a thread parks after every
 * response). Pushes and evictions write and count under the loop lock, which wd_handoff_park
 * holds, so a park sees every earlier write counted; close comes after the last park. In
 * wd__handoff_park_wait (no lock) a write may have landed uncounted: the read is then left to the
 * next park, and the park ends all the same (wd__handoff_park_end). */
static void efd_drain(wd_handoff_thread_t *t)
{
    uint32_t sent = atomic_load_explicit(&t->efd_sent, memory_order_acquire);
    uint64_t n;

    if (sent == t->efd_seen)
        return;
    t->efd_seen = sent;
    if (read(t->efd, &n, sizeof n) < 0) {
        /* EAGAIN: drained already */
    }
}

/* Whether a watch was (re)armed or changed since libuv last polled: it applies them only then
 * (epoll_ctl), so the loop must turn before it blocks outside libuv. The watcher queue is two
 * pointers in every libuv version, and empty when it points at itself. */
static int watches_pending(const uv_loop_t *loop)
{
    const void *q = &loop->watcher_queue;

    return *(void *const *)q != q;
}

/* Loop lock held by a thread, the loop asleep: whether what the thread did needs the loop to turn
 * before it would wake by itself: a watch to apply, a handle closing, or a timer due before the
 * loop's wake-up. */
static int loop_must_look(wd_handoff_t *h)
{
    int timeout;

    /* Access lines that the pipe did not take (the master behind): the loop polls it for room
     * from its next turn; else they waited for its tick, up to 250 ms after the master read. */
    if (watches_pending(h->loop) || wd_log_unpolled())
        return 1;
    /* The worker accepts again (the thread's close brought it under its capacity): quiet news
     * needs the quiet timer, which only the loop's turn starts. */
    if (h->shut_in_flight > 0 && atomic_load_explicit(&h->accepting, memory_order_relaxed) &&
        !uv_is_active((uv_handle_t *)&h->quiet_timer))
        return 1;
    timeout = uv_backend_timeout(h->loop);
    return timeout == 0 || (timeout > 0 && uv_now(h->loop) + (uint64_t)timeout < h->sleep_until);
}

/* A park that ended because a request for another connection needed the thread: it gives its
 * connection back (three epoll_ctl and a wake-up of the loop) and saved nothing. It costs the score
 * 4, where a park that served its own connection's request adds 2 (spin_paid). */
static void park_missed(wd_handoff_t *h)
{
    for (int i = 0; i < 4; i++)
        spin_paid(&h->park_pays, 0);
}

/* A parked thread may roam. With pin-threads a worker's Python threads share one CPU, which saves
 * a cross-CPU wake-up whenever the GIL or a request changes hands under load. A thread parked
 * alone on the one connection of a light load hands nothing to its siblings: what it waits for is
 * the proxy, on whatever CPU the proxy runs, and pinned it cannot follow it there.
 *
 * Measured at one keep-alive connection behind nginx (hello, 2 workers x 4 threads, old and new
 * binaries side by side, 4 s runs alternated, perf stat over each worker tree): a thread that left
 * its CPU whenever it parked cost 23.6-44.0 us of CPU a request against 30.9-46.3 pinned in the 9
 * pairs where both runs had under 5 % steal, and 0.64x pinned over all 51 pairs (under steal a
 * cross-CPU wake-up waits for the host). But at 4 connections (two threads parked a worker, the
 * GIL going between them across CPUs) it cost 19.7-22.4 us against 16.3-16.6, and at 64 (short
 * park runs, each a sched_setaffinity there and back) 17.2-18.2 against 15.2-17.3. So a thread
 * roams only while its worker has nothing else to do: it parks as the one parked thread, with no
 * request in flight, after ROAM_AFTER parks in a row that served its own connection. It takes
 * its CPU back when it parks otherwise, or before it takes other work (wd_handoff_wait, _next).
 * With that rule (same harness, quiet pairs): 4 connections 14.4-18.5 us a request pinned
 * against 14.5-19.8 (median of the pair ratios 1.06x, 8 pairs), 64 connections 0.96x (5 pairs),
 * one connection 0.93x (10 pairs, most under steal); in the whole-set run RESULTS-20261203-1915,
 * 25.9 and 25.3 us at one connection in the quiet rounds against uWSGI's 30.0 and 28.6. */
#define ROAM_AFTER 8

static void roam(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    if (h->home_cpu >= 0 && !t->roaming) {
        wd_affinity_unpin();
        t->roaming = 1;
    }
}

void wd__handoff_go_home(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    if (t->roaming) {
        (void)wd_affinity_pin(h->home_cpu);
        t->roaming = 0;
    }
}

/* Thread, no lock held: t's parked connection goes back to the loop, or (input) has a request. */
wd_req_t *wd__handoff_park_end(wd_handoff_t *h, wd_handoff_thread_t *t, int why)
{
    int input = why == PARK_END_INPUT;
    void *conn;
    wd_req_t *req;
    int wake = 0;

    pthread_mutex_lock(&h->loop_lock);
    wd_log_loop_held(1);
    uv_update_time(h->loop); /* the loop may have slept long: timers start from now */
    conn = t->park;
    t->park = NULL;
    t->park_fd = -1;
    h->parked--;
    req = h->park_cb(conn, t, input, &wake);
    if (req != NULL) {
        /* The park served its own connection's request. A probe that does (no push ended it
         * first, see push) finds light load back: parking resumes at once, not after up to
         * nine probes a WD_HANDOFF_PARK_PROBE_MS apart (from -16, 2 a park). */
        if (h->park_pays.score <= 0)
            h->park_pays.score = 1;
        else
            spin_paid(&h->park_pays, 1);
        t->park_run++;
    } else {
        t->park_run = 0;
        if (why == PARK_END_WORK)
            park_missed(h);
    }
    wake = wake || loop_must_look(h);
    wd_log_loop_held(0);
    pthread_mutex_unlock(&h->loop_lock);
    if (wake)
        uv_async_send(&h->async);
    return req;
}

/* t is parked: waits on its connection and on its eventfd (a push, close, or the loop wanting
 * the connection back). A request, or NULL once the connection is the loop's again. */
wd_req_t *wd__handoff_park_wait(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    struct pollfd p[2] = {{.fd = t->park_fd, .events = POLLIN | POLLRDHUP},
                          {.fd = t->efd, .events = POLLIN}};
    wd_req_t *req;
    int taken;

    pthread_mutex_lock(&h->lock);
    if (h->head != NULL || h->closed) {
        pthread_mutex_unlock(&h->lock);
        return wd__handoff_park_end(h, t, h->closed ? PARK_END_LOOP : PARK_END_WORK);
    }
    t->next = h->parked_idle;
    h->parked_idle = t;
    atomic_store(&t->wake, T_SLEEPING);
    pthread_mutex_unlock(&h->lock);
    if (t->may_roam)
        roam(h, t);
    else
        wd__handoff_go_home(h, t);
    while (poll(p, 2, -1) < 0 && errno == EINTR) {
    }
    if (p[1].revents)
        efd_drain(t);
    pthread_mutex_lock(&h->lock);
    taken = atomic_load(&t->wake) == T_WOKEN;
    if (!taken) {
        wd_handoff_thread_t **pp = &h->parked_idle;

        while (*pp != t)
            pp = &(*pp)->next;
        *pp = t->next;
    }
    atomic_store(&t->wake, T_AWAKE);
    req = t->req;
    t->req = NULL;
    pthread_mutex_unlock(&h->lock);
    if (taken) { /* by a push (req) or close: the connection goes back first */
        (void)wd__handoff_park_end(h, t, req != NULL ? PARK_END_WORK : PARK_END_LOOP);
        wd__handoff_go_home(h, t);
        return req;
    }
    return wd__handoff_park_end(h, t, p[0].revents != 0 ? PARK_END_INPUT : PARK_END_LOOP);
}

/* Whether a park is worth a try (loop lock held): while parking pays, and otherwise once in
 * WD_HANDOFF_PARK_PROBE_MS, so that a return to light load is noticed. The probe was one try in
 * SPIN_PROBE: under load (TechEmpower /db, -c32, 2 x 4 behind nginx keep-alive) a worker then had
 * a thread parked in 65 % of its loop turns, each park lasting the round trip of its connection,
 * and for all that time its loop blocked outside libuv (a poll and an epoll_wait more a wake-up:
 * 0.6 to 0.9 syscalls a request more than with no parking at all). */
static int park_worth(wd_handoff_t *h, int take)
{
    uint64_t now = uv_now(h->loop);

    if (h->park_pays.score > 0)
        return 1;
    if (now - h->park_probe_ms < WD_HANDOFF_PARK_PROBE_MS)
        return 0;
    if (take)
        h->park_probe_ms = now;
    return 1;
}

/* Whether a thread may park soon: the loop then lets go of the loop lock when it blocks (one
 * poll more a wake-up), and otherwise keeps it through its turn. Not for a request on a kept
 * FastCGI connection, which no thread parks on, though its end is lazy news as a keep-alive HTTP
 * one's (201328b): at one such connection the loop took the poll at every wake-up. */
static int loop_may_park(wd_handoff_t *h)
{
    return h->park_cb != NULL &&
           (h->parked > 0 || h->park_in_flight > 0 ||
            (h->park_may_in_flight > 0 && h->in_flight <= 1 && park_worth(h, 0)));
}

void wd_handoff_run(wd_handoff_t *h)
{
    struct pollfd p = {.fd = uv_backend_fd(h->loop), .events = POLLIN};

    pthread_mutex_lock(&h->loop_lock);
    while (!h->stop) {
        int alive, timeout;

        if (!loop_may_park(h)) {
            alive = uv_run(h->loop, UV_RUN_ONCE);
        } else {
            alive = uv_run(h->loop, UV_RUN_NOWAIT);
            /* What the prepare phase does before libuv blocks, done again before this blocks:
             * the I/O callbacks of the turn (which come after the prepare phase) may have
             * dispatched requests whose lazy or quiet end needs a timer. */
            if (alive && !h->stop)
                wd__handoff_prepare(h);
            timeout =
                alive && !h->stop && !watches_pending(h->loop) ? uv_backend_timeout(h->loop) : 0;
            h->sleep_until = timeout < 0 ? UINT64_MAX : uv_now(h->loop) + (uint64_t)timeout;
            h->asleep = timeout != 0;
            pthread_mutex_unlock(&h->loop_lock);
            if (timeout != 0)
                (void)poll(&p, 1, timeout); /* EINTR: the next turn polls again */
            pthread_mutex_lock(&h->loop_lock);
            h->asleep = 0;
            if (timeout != 0)
                wd__handoff_polled(h);
        }
        if (!alive)
            break;
    }
    h->stop = 0;
    h->polled = 0;
    atomic_store(&h->looking, 0); /* the loop may be run again by other means */
    pthread_mutex_unlock(&h->loop_lock);
}

void wd_handoff_stop(wd_handoff_t *h)
{
    h->stop = 1;
    uv_stop(h->loop);
    uv_async_send(&h->async); /* the loop may be asleep (the caller a parked thread) */
}

void wd_handoff_set_on_block(wd_handoff_t *h, wd_handoff_block_cb cb, void *data)
{
    h->on_block = cb;
    h->on_block_data = data;
}

void wd_handoff_set_park(wd_handoff_t *h, wd_handoff_park_cb cb)
{
    h->park_cb = cb;
    h->park_pays.score = 2; /* a worker starts at light load */
}

int wd_handoff_park_try_lock(wd_handoff_t *h)
{
    int ok;

    if (h->park_cb == NULL || pthread_mutex_trylock(&h->loop_lock) != 0)
        return 0;
    pthread_mutex_lock(&h->lock);
    /* Only while the loop sleeps: a loop that is awake anyway (under load it takes many
     * connections a turn) saves nothing when a thread keeps one, which then costs epoll_ctl. */
    ok = h->asleep && h->head == NULL && h->in_flight <= h->threads / 2 + 1 && !h->closed &&
         !h->stop && park_worth(h, 1);
    pthread_mutex_unlock(&h->lock);
    if (!ok) {
        pthread_mutex_unlock(&h->loop_lock);
        return 0;
    }
    wd_log_loop_held(1); /* its lines must not wait for the master: it holds up the loop */
    uv_update_time(h->loop);
    return 1;
}

void wd_handoff_loop_unlock(wd_handoff_t *h, int wake_loop)
{
    wake_loop = wake_loop || loop_must_look(h);
    wd_log_loop_held(0);
    pthread_mutex_unlock(&h->loop_lock);
    if (wake_loop)
        uv_async_send(&h->async);
}

void wd_handoff_park(wd_handoff_t *h, wd_handoff_thread_t *t, void *conn, int fd)
{
    /* A wake-up left from an earlier push (written after the thread had seen it taken) would end
     * this park at once; the loop cannot have asked for this connection yet (it would need the
     * lock). */
    efd_drain(t);
    t->park = conn;
    t->park_fd = fd;
    h->parked++;
    h->parks++;
    t->may_roam = h->parked == 1 && h->in_flight == 0 && t->park_run >= ROAM_AFTER;
}

int wd_handoff_claim(wd_handoff_t *h, wd_handoff_thread_t *t, wd_req_t *req)
{
    wd_req_t *prev = NULL;

    for (wd_req_t **pp = &h->batch_head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp != req)
            continue;
        *pp = req->next;
        if (h->batch_tail == req)
            h->batch_tail = prev;
        h->batch_n--;
        req->next = NULL;
        /* Its end is never lazy news: the thread finishes it under the loop lock or wakes the
         * loop (the connection is not watched meanwhile). */
        h->lazy_in_flight -= req->may_be_lazy != 0;
        h->shut_in_flight -= req->may_be_lazy == WD_REQ_LAZY_SHUT;
        h->park_may_in_flight -= req->may_be_lazy == WD_REQ_LAZY_KEEP && req->kind == WD_REQ_HTTP;
        req->may_be_lazy = 0;
        req->claimed = 1;
        h->park_in_flight++;
        pthread_mutex_lock(&h->lock);
        req->t_taken_ns = wd_now_ns();
        t->busy = 1;
        gauge_add(h->busy, 1);
        pthread_mutex_unlock(&h->lock);
        return 1;
    }
    return 0;
}

void wd_handoff_evict(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    (void)h;
    wd__handoff_efd_wake(t);
}
