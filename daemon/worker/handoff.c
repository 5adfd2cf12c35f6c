/* The hand-off between the loop thread and the Python threads: see handoff.h.
 *
 * The wake policy, and the figures behind it (2 workers x 4 threads behind nginx, 2 CPUs):
 *
 * - A pushed request goes to an idle thread whenever one sleeps. The first version woke a thread
 *   only when every thread slept and left the rest to the busy ones; an app that waits 0.5 ms on
 *   I/O with the GIL released then ran on one or two threads while the others slept (3.8k req/s
 *   against uWSGI's 10-12k: issue #10). Handing each request to one sleeping thread, the one that
 *   went idle last, keeps every thread at work on such apps and wakes no thread for nothing.
 * - Requests that find every thread busy wait in the queue; a thread that is done takes the next
 *   one without giving up the GIL (wd_handoff_next), so under load a run of requests costs no
 *   wake-up at all.
 * - busy-poll is adaptive: a thread spins before sleeping, and the loop polls for completions
 *   instead of sleeping in epoll_wait, only while such spins found work lately (spin_worth). One
 *   keep-alive connection sends a request per round trip (about 90 us here): spinning then only
 *   burns CPU, and the first version, which always spun, spent 51 us of CPU per request there
 *   against 11 us under load. Under load the spins pay: behind nginx keep-alive at -c32 the
 *   threads sleeping before every request cost 36k req/s and 19 us/req, spinning by score gave
 *   45k req/s and 13 us/req (/tmp A/B, 5 s runs).
 * - Parking (handoff.h). One keep-alive connection cost the loop a wake-up of its own per
 *   request on top of the thread's: 2.6 context switches and 45-50 us of CPU per request, the
 *   loop's share 25 us, against uWSGI's 1.1 and 43 us (its thread reads, runs and writes alone).
 *   With the thread parked on the connection: 1.0 context switch and 32-38 us a request, the
 *   loop's share under 1 us; at 4 connections 30-32 us against 39-46, p99 unchanged (nginx
 *   keep-alive, hello, 5 s A/B runs). Only at light load: parking whenever the queue was empty
 *   took hello at -c64 from 19.2k to 15.8k req/s, the threads' CPU doubling (most parks ended in
 *   a push for another connection: the connection went back, three epoll_ctl and a wake-up of the
 *   loop each time), and so did a loop that let go of its lock whenever a request or none was in
 *   flight (-c64, nobody parking: 45-48 us a request against 29-40). So a thread parks only while
 *   the loop sleeps (awake, it takes many connections a turn and saves nothing), with at most
 *   half the threads and one requests in flight, and while parking paid lately (park_pays: a park
 *   that served its own connection adds 2, one a push ended takes 4). The loop lets go of its lock
 *   when it blocks only with one request or none in flight, or while a thread parks or serves
 *   its connection; otherwise it sleeps in libuv holding it (no poll() more a wake-up). Measured
 *   then (5 s A/B, main vs parking): -c64 17.6k/36.2 us vs 20.4k/37.9 and 17.0k/37.4 vs
 *   17.1k/42.2; one connection after a -c64 burst (32 idle connections left open by nginx)
 *   46.1 vs 34.6 us, p99 0.21 vs 0.17 ms; -c4 38.1 vs 34.4 us; 0.5 ms and 5 ms I/O and uwsgi_pass
 *   unchanged within the noise (nobody parks there).
 * - While parking does not pay, a park is still tried, once in WD_HANDOFF_PARK_PROBE_MS (20 ms;
 *   it was one try in SPIN_PROBE), so that a return to light load is noticed; a push then goes
 *   to a parked thread before a plain sleeper (push), so that the probe ends at once instead of
 *   keeping the loop blocked outside libuv until its connection's next request; and a probe that
 *   served its own connection sets the score to 1, so that parking resumes at once. Measured
 *   (2026-12-07, release builds, main against this, 3 runs each alternated, medians, counts a
 *   request over a worker's threads): TechEmpower /db at -c32, the loop's poll() 0.51 -> 0.12,
 *   CPU unresolved on the loaded machine (77-125 us against 87-113), and in a quiet A/B 10,495
 *   -> 12,071 req/s and 68.5 -> 59.6 us (every pair better); hello at -c64, the loop's poll()
 *   1.11 -> 0.04, parks 0.077 -> 0.010; 0.5 ms I/O and -c4, the same counts. One connection: the
 *   same counts (0.999 of the requests served by a parked thread, 0.98 and 0.96 voluntary
 *   context switches, 0.003 poll() of the loop), CPU 36.8 against 36.0 us (8 pairs, ratios
 *   0.58-1.61 under the other jobs' load, median 0.96); one connection right after a -c64 burst,
 *   the loop's poll() 0.012 -> 0.004 and futex() 0.02 -> 0.00 (parking resumes within 20 ms, not
 *   after up to 144 requests). */
#include "handoff_int.h"
#include "log.h"

#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

static void async_cb(uv_async_t *a);
static void batch_check_cb(uv_check_t *c);
static void prepare_cb(uv_prepare_t *p);

void wd_handoff_init(wd_handoff_t *h, uv_loop_t *loop, double spin_secs,
                     wd_handoff_node_cb on_ready, wd_handoff_node_cb on_free,
                     _Atomic uint64_t *depth, _Atomic uint64_t *busy)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->ready_lock, NULL);
    pthread_mutex_init(&h->loop_lock, NULL);
    h->spin_ns = (uint64_t)(spin_secs * 1e9);
    h->depth = depth;
    h->busy = busy;
    h->on_ready = on_ready;
    h->on_free = on_free;
    h->loop = loop;
    uv_async_init(loop, &h->async, async_cb);
    h->async.data = h;
    uv_prepare_init(loop, &h->prepare);
    h->prepare.data = h;
    uv_prepare_start(&h->prepare, prepare_cb);
    uv_unref((uv_handle_t *)&h->prepare);
    uv_timer_init(loop, &h->lazy_timer);
    h->lazy_timer.data = h;
    h->lazy_ms = WD_HANDOFF_LAZY_MS;
    uv_unref((uv_handle_t *)&h->lazy_timer);
    uv_timer_init(loop, &h->quiet_timer);
    h->quiet_timer.data = h;
    h->quiet_ms = WD_HANDOFF_QUIET_MS;
    uv_unref((uv_handle_t *)&h->quiet_timer);
    uv_check_init(loop, &h->batch_check);
    h->batch_check.data = h;
    uv_check_start(&h->batch_check, batch_check_cb);
    uv_unref((uv_handle_t *)&h->batch_check);
    uv_idle_init(loop, &h->spin);
    h->spin.data = h;
    uv_unref((uv_handle_t *)&h->spin);
    h->rest_fd = -1;
    h->rest_max_ms = WD_HANDOFF_REST_MAX_MS;
    h->home_cpu = -1;
}

void wd_handoff_set_home(wd_handoff_t *h, int cpu)
{
    h->home_cpu = cpu;
}

void wd_handoff_set_threads(wd_handoff_t *h, unsigned threads)
{
    if (h->rest_fd < 0)
        h->rest_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_lock(&h->lock);
    h->rest_high = h->rest_fd >= 0 ? 2 * (size_t)threads : 0;
    h->rest_low = threads;
    h->threads = threads;
    pthread_mutex_unlock(&h->lock);
}

void wd_handoff_destroy(wd_handoff_t *h)
{
    uv_close((uv_handle_t *)&h->async, NULL);
    uv_close((uv_handle_t *)&h->prepare, NULL);
    uv_close((uv_handle_t *)&h->lazy_timer, NULL);
    uv_close((uv_handle_t *)&h->quiet_timer, NULL);
    uv_close((uv_handle_t *)&h->batch_check, NULL);
    uv_close((uv_handle_t *)&h->spin, NULL);
    pthread_mutex_destroy(&h->ready_lock);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->loop_lock);
    if (h->rest_fd >= 0)
        close(h->rest_fd);
    h->rest_fd = -1;
}

/* Ends the loop's rest, if it rests: the first caller writes the eventfd and returns 1. Any
 * thread. */
static int rest_end(wd_handoff_t *h)
{
    uint64_t one = 1;
    ssize_t k;

    if (!atomic_exchange(&h->resting, 0))
        return 0;
    do
        k = write(h->rest_fd, &one, sizeof one);
    while (k < 0 && errno == EINTR);
    return 1; /* (an eventfd takes 2^64 - 2 writes before one would fail) */
}

/* Lock held: the oldest queued request, now t's. */
static wd_req_t *take_locked(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    wd_req_t *req = h->head;

    if (req == NULL)
        return NULL;
    h->head = req->next;
    if (h->head == NULL)
        h->tail = NULL;
    h->len--;
    if (h->len <= h->rest_low && atomic_load_explicit(&h->resting, memory_order_relaxed))
        (void)rest_end(h);
    req->next = NULL;
    req->t_taken_ns = wd_now_ns();
    t->busy = 1;
    gauge_sub(h->depth, 1);
    gauge_add(h->busy, 1);
    return req;
}

/* --- loop -> threads ------------------------------------------------------------------------- */

/* A sleeping thread waits on a futex word of its own rather than on a condition variable: the
 * wait of one takes the mutex back marked contended, so every request handed to a sleeping thread
 * cost it one more futex call, a wake that woke nobody, when it let go of the lock (strace of one
 * keep-alive connection: 3 futex calls a request, 2 of them the thread's). */
static long futex(_Atomic uint32_t *word, int op, uint32_t val)
{
    return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

/* Lock not held: until a push or close wakes t (EINTR and early returns wait again). */
static void thread_sleep(wd_handoff_thread_t *t)
{
    while (atomic_load(&t->wake) == T_SLEEPING)
        futex(&t->wake, FUTEX_WAIT_PRIVATE, T_SLEEPING);
}

/* t was taken off the idle stack: wakes it, with a syscall only if it may sleep in the kernel. */
static void thread_wake(wd_handoff_thread_t *t)
{
    if (atomic_exchange(&t->wake, T_WOKEN) == T_SLEEPING)
        futex(&t->wake, FUTEX_WAKE_PRIVATE, 1);
}

/* Wakes a parked thread (it polls its connection and its eventfd). The write is counted after
 * it lands, so that the thread reads its eventfd only when something may be in it (efd_drain). */
void wd__handoff_efd_wake(wd_handoff_thread_t *t)
{
    uint64_t one = 1;
    ssize_t k;

    do
        k = write(t->efd, &one, sizeof one);
    while (k < 0 && errno == EINTR);
    atomic_fetch_add_explicit(&t->efd_sent, 1, memory_order_release);
}

static void spin_cb(uv_idle_t *i);

/* After a push or a completion: the loop polls for the next one instead of sleeping while that
 * has paid lately (and requests are in flight). */
static void loop_event(wd_handoff_t *h, uint64_t now)
{
    /* Not while a thread is parked or serves its connection: spinning keeps the loop lock, which
     * that thread needs (a mutex let go and taken back at once is rarely handed over). */
    if (h->spin_ns == 0 || h->in_flight == 0 || h->parked > 0 || h->park_in_flight > 0)
        return;
    if (uv_is_active((uv_handle_t *)&h->spin)) {
        h->spin_hit = 1;
        h->spin_until_ns = now + h->spin_ns;
        return;
    }
    if (!spin_worth(&h->loop_spin))
        return;
    h->spin_hit = 0;
    h->spin_until_ns = now + h->spin_ns;
    uv_idle_start(&h->spin, spin_cb);
}

/* Under lock: queued requests to parked threads, one each, onto the woken list; each gives its
 * connection back to the loop first. */
static wd_handoff_thread_t *hand_parked(wd_handoff_t *h, wd_handoff_thread_t *woken)
{
    wd_handoff_thread_t *t;

    while (h->parked_idle != NULL && h->len > (size_t)h->spinner) {
        t = h->parked_idle;
        h->parked_idle = t->next;
        t->req = take_locked(h, t);
        atomic_store(&t->wake, T_WOKEN);
        t->next = woken;
        woken = t;
    }
    return woken;
}

/* Appends first..last (n requests) and hands them to sleeping threads, one each, the last to go
 * idle first. A spinning thread takes one itself. */
static void push(wd_handoff_t *h, wd_req_t *first, wd_req_t *last, size_t n)
{
    wd_handoff_thread_t *woken = NULL, *parked_woken = NULL, *t;

    last->next = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->tail)
        h->tail->next = first;
    else
        h->head = first;
    h->tail = last;
    h->len += n;
    gauge_add(h->depth, n);
    /* While parking does not pay, a parked thread first: its park (a probe,
     * WD_HANDOFF_PARK_PROBE_MS) would otherwise last until its connection's next request, which may
     * be long in coming (a proxy reuses the connection it freed last), and meanwhile the loop
     * blocks outside libuv. */
    if (h->park_pays.score <= 0)
        parked_woken = hand_parked(h, parked_woken);
    while (h->idle != NULL && h->len > (size_t)h->spinner) {
        t = h->idle;
        h->idle = t->next;
        t->req = take_locked(h, t);
        t->next = woken;
        woken = t;
    }
    /* Otherwise a parked thread last: its connection may have the next request. */
    parked_woken = hand_parked(h, parked_woken);
    pthread_mutex_unlock(&h->lock);
    /* Woken after the unlock, so that the thread does not wake into a held lock. Only this push
     * can wake it now (it is off the stack): its next field is read first all the same. */
    for (t = woken; t; t = woken) {
        woken = t->next;
        thread_wake(t);
    }
    for (t = parked_woken; t; t = parked_woken) {
        parked_woken = t->next;
        wd__handoff_efd_wake(t);
    }
}

/* Whether req's thread may park on its connection once it answered (conn_park.c: a keep-alive
 * HTTP one alone), for loop_may_park (handoff_park.c). */
static int park_may(const wd_req_t *req)
{
    return req->may_be_lazy == WD_REQ_LAZY_KEEP && req->kind == WD_REQ_HTTP;
}

void wd_handoff_dispatch(wd_handoff_t *h, wd_req_t *req)
{
    req->next = NULL;
    req->claimed = 0;
    req->t_taken_ns = 0; /* no thread has it yet (wd_handoff_taken_ns) */
    if (h->batch_tail)
        h->batch_tail->next = req;
    else
        h->batch_head = req;
    h->batch_tail = req;
    h->batch_n++;
    h->in_flight++;
    h->lazy_in_flight += req->may_be_lazy != 0;
    h->shut_in_flight += req->may_be_lazy == WD_REQ_LAZY_SHUT;
    h->park_may_in_flight += park_may(req);
}

void wd_handoff_flush(wd_handoff_t *h)
{
    if (h->batch_head == NULL)
        return;
    push(h, h->batch_head, h->batch_tail, h->batch_n);
    h->batch_head = h->batch_tail = NULL;
    h->batch_n = 0;
    loop_event(h, wd_now_ns());
}

/* Once per loop iteration, after the I/O callbacks: one push for every request parsed. */
static void batch_check_cb(uv_check_t *c)
{
    wd_handoff_flush(c->data);
}

void wd_handoff_done(wd_handoff_t *h, const wd_req_t *req)
{
    h->in_flight--;
    h->lazy_in_flight -= req->may_be_lazy != 0;
    h->shut_in_flight -= req->may_be_lazy == WD_REQ_LAZY_SHUT;
    h->park_may_in_flight -= park_may(req);
    h->park_in_flight -= req->claimed != 0;
}

int wd_handoff_remove(wd_handoff_t *h, wd_req_t *req)
{
    wd_req_t **pp, *prev = NULL;
    int found = 0;

    pthread_mutex_lock(&h->lock);
    for (pp = &h->head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == req) {
            *pp = req->next;
            if (h->tail == req)
                h->tail = prev;
            req->next = NULL;
            h->len--;
            gauge_sub(h->depth, 1);
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return found;
}

void wd_handoff_close(wd_handoff_t *h)
{
    pthread_mutex_lock(&h->lock);
    h->closed = 1;
    for (wd_handoff_thread_t *t = h->idle, *next; t; t = next) {
        next = t->next; /* under the lock: the thread cannot return (and go) before the unlock */
        thread_wake(t);
    }
    h->idle = NULL;
    for (wd_handoff_thread_t *t = h->parked_idle, *next; t; t = next) {
        next = t->next;
        atomic_store(&t->wake, T_WOKEN);
        wd__handoff_efd_wake(t);
    }
    h->parked_idle = NULL;
    pthread_mutex_unlock(&h->lock);
    (void)rest_end(h);
}

/* --- the Python threads' side ---------------------------------------------------------------- */

void wd_handoff_thread_init(wd_handoff_thread_t *t)
{
    memset(t, 0, sizeof *t);
    atomic_init(&t->wake, T_AWAKE);
    t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    t->park_fd = -1;
}

/* A woken thread does not preempt its waker. Under SCHED_BATCH (the normal policy, the same share
 * of the CPU, only without wake-up preemption) a Python thread that a push, the GIL or its app's
 * I/O wakes waits for the CPU's current thread to block or finish its slice: the loop ends its
 * turn (the other accepts and reads, the next pushes) and sleeps before the thread it woke runs,
 * instead of being switched out in the middle of it and back. Measured (bench/run hello_uwsgi,
 * hello_ka, c1, io_0.5ms, mixed; 2 runs x 2 rounds each way, alternated; 2 x 4 behind nginx):
 * uwsgi_pass -c64 38.3 and 41.6 us/request -> 29.2 and 27.6 (16.7k and 16.2k req/s -> 19.7k and
 * 20.4k), keep-alive proxy_pass -c64 23.2 and 23.4 -> 19.6 and 19.8, 0.5 ms sleeps unchanged
 * (11.9k and 12.1k req/s -> 11.9k and 12.2k). One connection is the doubtful case: 28.8 and 28.4
 * -> 32.5 and 31.8 us there, medians 32.7 -> 35.3 us over 8 alternated 5 s pairs (spread +-5-10
 * us), and 1.05x uWSGI's CPU in one whole-set run; keeping a parked thread SCHED_OTHER measured
 * no better (32.9 us). A process the app starts inherits the policy (SCHED_RESET_ON_FORK resets
 * only real-time ones). */
void wd_handoff_thread_enter(void)
{
    struct sched_param sp = {0};

    if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0)
        wd_log_debug("a Python thread keeps the normal scheduling policy: %s", strerror(errno));
}

void wd_handoff_thread_destroy(wd_handoff_thread_t *t)
{
    if (t->efd >= 0)
        close(t->efd);
    t->efd = -1;
}

/* Lock held: t's previous request is over. */
static void end_previous(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    if (t->busy) {
        t->busy = 0;
        gauge_sub(h->busy, 1);
    }
}

wd_req_t *wd_handoff_next(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    wd_req_t *req;

    pthread_mutex_lock(&h->lock);
    end_previous(h, t);
    if (t->park != NULL && (h->head != NULL || h->closed)) {
        /* Work is queued: the parked connection goes back to the loop first. */
        pthread_mutex_unlock(&h->lock);
        (void)wd__handoff_park_end(h, t, h->closed ? PARK_END_LOOP : PARK_END_WORK);
        pthread_mutex_lock(&h->lock);
    }
    req = take_locked(h, t);
    pthread_mutex_unlock(&h->lock);
    if (req != NULL)
        wd__handoff_go_home(h, t);
    return req;
}

/* busy-poll, when requests came faster than busy-poll lately: one thread at a time polls the
 * queue, yielding the CPU in between, before it sleeps. A push counts it as a taker and wakes
 * nobody for the request it leaves it. NULL when nothing came. */
static wd_req_t *spin_take(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    wd_req_t *req = NULL;
    uint64_t until;
    int done;

    if (h->spin_ns == 0)
        return NULL;
    pthread_mutex_lock(&h->lock);
    if (h->spinner || h->head != NULL || h->closed || !spin_worth(&h->thread_spin)) {
        pthread_mutex_unlock(&h->lock);
        return NULL;
    }
    h->spinner = 1;
    pthread_mutex_unlock(&h->lock);
    until = wd_now_ns() + h->spin_ns;
    do {
        sched_yield();
        pthread_mutex_lock(&h->lock);
        req = take_locked(h, t);
        done = req != NULL || h->closed || wd_now_ns() >= until;
        if (done) {
            h->spinner = 0;
            spin_paid(&h->thread_spin, req != NULL);
        }
        pthread_mutex_unlock(&h->lock);
    } while (!done);
    return req;
}

wd_req_t *wd_handoff_wait(wd_handoff_t *h, wd_handoff_thread_t *t)
{
    wd_req_t *req;

    while (t->park != NULL) {
        req = wd__handoff_park_wait(h, t);
        if (req != NULL)
            return req;
    }
    wd__handoff_go_home(h, t);
    req = spin_take(h, t);

    if (req != NULL)
        return req;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        if (t->req != NULL) { /* handed over by a push, which took us off the stack */
            req = t->req;
            t->req = NULL;
            break;
        }
        if (h->head != NULL || h->closed) {
            req = take_locked(h, t);
            break;
        }
        /* Only a push (which hands us a request) or close (which sets closed) wakes us, and each
         * takes us off the stack first. */
        t->next = h->idle;
        h->idle = t;
        atomic_store(&t->wake, T_SLEEPING);
        pthread_mutex_unlock(&h->lock);
        thread_sleep(t);
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return req;
}

/* --- threads -> loop ------------------------------------------------------------------------- */

static int take_ready_counted(wd_handoff_t *h, uint64_t *lazy);
#define take_ready(h) take_ready_counted(h, NULL)
static int ready_any(wd_handoff_t *h);

void wd_handoff_notify(wd_handoff_t *h, wd_handoff_node_t *node, int how)
{
    int first;

    pthread_mutex_lock(&h->ready_lock);
    first = !node->queued;
    if (first) {
        node->queued = 1;
        node->next = h->ready;
        h->ready = node;
    }
    node->lazy = (first || node->lazy) && how == WD_HANDOFF_LAZY;
    pthread_mutex_unlock(&h->ready_lock);
    /* A resting loop takes the list when its rest ends, a spinning one before it can block: no
     * async then. The fence pairs with the loop's store in look_end: either it sees the node on
     * the list, or this sees `looking` cleared. Quiet news leaves a rest alone: if this sees
     * `resting` set, the loop's exchange that ends the rest comes later, and so does its look at
     * the list (see rest). */
    if (how == WD_HANDOFF_LAZY)
        return;
    if (how == WD_HANDOFF_QUIET ? atomic_load(&h->resting) : rest_end(h))
        return;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&h->looking, memory_order_relaxed))
        return;
    if (how == WD_HANDOFF_QUIET && atomic_load_explicit(&h->accepting, memory_order_relaxed))
        return;
    uv_async_send(&h->async);
}

/* The fence pairs with the one in wd_handoff_notify: a thread that saw `accepting` set put its
 * node on the list before this store, and the loop looks at the list after it (prepare_cb, which
 * looks again at its end while the worker does not accept). */
void wd_handoff_set_accepting(wd_handoff_t *h, int on)
{
    atomic_store(&h->accepting, on != 0);
    atomic_thread_fence(memory_order_seq_cst);
    if (!on)
        h->accept_stopped = 1;
}

void wd_handoff_take_news(wd_handoff_t *h)
{
    if (ready_any(h))
        take_ready(h);
}

/* Takes the nodes one at a time, under the lock: a thread may put one of them back on the list
 * while the loop works on it. Counts those with lazy news alone in *lazy (NULL: not counted). */
static int take_ready_counted(wd_handoff_t *h, uint64_t *lazy)
{
    wd_handoff_node_t *node;
    int n = 0;

    pthread_mutex_lock(&h->ready_lock);
    while ((node = h->ready) != NULL) {
        int gone = node->free_pending;

        if (lazy != NULL && node->lazy)
            (*lazy)++;
        h->ready = node->next;
        node->next = NULL;
        node->queued = 0;
        pthread_mutex_unlock(&h->ready_lock);
        if (gone)
            h->on_free(node);
        else
            h->on_ready(node);
        n++;
        pthread_mutex_lock(&h->ready_lock);
    }
    pthread_mutex_unlock(&h->ready_lock);
    return n;
}

static void async_cb(uv_async_t *a)
{
    wd_handoff_t *h = a->data;

    if (take_ready(h) > 0)
        loop_event(h, wd_now_ns());
}

/* A bound on news that nothing wakes the loop for: back to its shortest when its timer found some
 * (the loop had nothing else to wake it), twice as long, up to max_ms, when it found none (the loop
 * took the news at other turns, or the requests in flight run long). */
static void bound_found(unsigned *ms, int found, unsigned min_ms, unsigned max_ms)
{
    if (found)
        *ms = min_ms;
    else if (*ms < max_ms)
        *ms = *ms * 2 < max_ms ? *ms * 2 : max_ms;
}

/* The lazy bound. Its news may have been taken already: libuv 1.45 and later run a turn's due
 * timers after its poll, and so after its prepare phase, and wd_handoff_run's park path, woken by
 * this timer in a poll of its own, then runs a UV_RUN_NOWAIT turn whose prepare phase takes the
 * news first. Counted as found all the same (lazy_found, wd__handoff_polled): otherwise the bound
 * doubles at every such turn, up to WD_HANDOFF_LAZY_MAX_MS, while this timer is what brings the
 * news (tests/unit/test_handoff.c: test_lazy_bound_park, which failed built against libuv 1.50.0).
 * With libuv 1.44 the timers run first in that turn too, and lazy_found stays 0. */
static void lazy_cb(uv_timer_t *t)
{
    wd_handoff_t *h = t->data;
    int found = take_ready_counted(h, &h->lazy_late) > 0 || h->lazy_found;

    h->lazy_found = 0;
    bound_found(&h->lazy_ms, found, WD_HANDOFF_LAZY_MS, WD_HANDOFF_LAZY_MAX_MS);
}

void wd__handoff_polled(wd_handoff_t *h)
{
    h->polled = 1;
    uv_update_time(h->loop); /* libuv 1.45+: a NOWAIT turn's prepare phase comes before its own */
}

static void quiet_cb(uv_timer_t *t)
{
    wd_handoff_t *h = t->data;

    bound_found(&h->quiet_ms, take_ready(h) > 0, WD_HANDOFF_QUIET_MS, WD_HANDOFF_QUIET_MAX_MS);
}

/* Before the loop blocks: the news no thread woke it for, and what that dispatched (the check
 * phase that pushes comes only after the poll). While requests that may end lazily are in flight,
 * the lazy timer bounds how long their news can wait for a loop that has nothing else to wake it
 * (and the quiet timer, below, the news of connections their threads shut).
 *
 * The bound adapts. A fixed 1 ms woke the loop 1,000 times a second for nothing while long
 * requests ran: with 50 ms requests in flight (the mixed test), wsgid spent 279 us of CPU per
 * request against uWSGI's 143; and behind keep-alive proxy_pass at 5 ms of I/O the loop woke 1.5
 * times per request (strace -c of the loop threads: 3,462 epoll_wait for 2,250 requests). With the
 * adaptive bound, in the mixed test's shape (2 x 4 behind nginx keep-alive, 3 A/B pairs), context
 * switches per request fell from 9.1-9.2 to 3.6-3.9 and CPU per request from 375-407 to 220-343
 * us. A fixed 10 ms bound was once measured to raise the one-connection p99 from 0.2 to 4 ms; the
 * adaptive one did not raise it (3 pairs: 0.85, 1.33, 1.71 ms before, 0.26, 1.15, 1.24 after).
 * A fixed 8 ms bound, tried again later, cut the loop's epoll_wait per request at 5 ms of I/O from
 * 1.29 to 1.13 (strace -c), but moved neither CPU nor p99 beyond the noise of 3 A/B pairs at
 * 0.5 ms, 5 ms, one connection and the mixed test: not kept. */
static int ready_any(wd_handoff_t *h)
{
    int any;

    pthread_mutex_lock(&h->ready_lock);
    any = h->ready != NULL;
    pthread_mutex_unlock(&h->ready_lock);
    return any;
}

/* Before the loop blocks: rests while the queue is deep (see below); 1 if it rested. Not inlined:
 * GCC 12 with -fsanitize=address then warns of a 0-byte region at its atomic store. */
static int rest(wd_handoff_t *h) __attribute__((noinline));

/* The end of the loop's turn. While the loop spins (an idle handle is active) it cannot block
 * before its next turn, whose prepare phase takes the ready list: `looking` tells the threads that
 * their news needs no async. Measured (hello through uwsgi_pass, -c64, 2 x 4, perf record of the
 * workers' syscalls): every answer's end woke the loop with an async, 0.33 eventfd writes by the
 * threads and 0.33 reads by the loop a request, most of them while it spun. Once the spin is over,
 * `looking` is cleared before the last look at the list (see wd_handoff_notify). */
static void look_end(wd_handoff_t *h)
{
    if (uv_is_active((uv_handle_t *)&h->spin)) {
        atomic_store_explicit(&h->looking, 1, memory_order_relaxed);
        return;
    }
    if (!atomic_load_explicit(&h->looking, memory_order_relaxed))
        return;
    atomic_store(&h->looking, 0);
    atomic_thread_fence(memory_order_seq_cst);
    if (ready_any(h)) {
        take_ready(h);
        wd_handoff_flush(h);
    }
}

static void prepare_cb(uv_prepare_t *p)
{
    wd_handoff_t *h = p->data;
    int polled = h->polled;

    h->polled = 0;
    if (ready_any(h) && take_ready(h) > 0 && polled &&
        uv_is_active((uv_handle_t *)&h->lazy_timer) && uv_timer_get_due_in(&h->lazy_timer) == 0)
        h->lazy_found = 1; /* see lazy_cb */
    wd_handoff_flush(h);
    if (rest(h) && ready_any(h))
        take_ready(h);
    look_end(h);
    /* A worker that stopped accepting since the last look (in this prepare's own callbacks too):
     * quiet news that came meanwhile sent no async (wd_handoff_set_accepting). Only then: the
     * list's lock is not taken again every turn at capacity. */
    if (h->accept_stopped) {
        h->accept_stopped = 0;
        if (ready_any(h)) {
            take_ready(h);
            wd_handoff_flush(h);
        }
    }
    if (h->lazy_in_flight > h->shut_in_flight && !uv_is_active((uv_handle_t *)&h->lazy_timer)) {
        h->lazy_found = 0; /* a timer stopped (a rest) leaves none for the next one */
        uv_timer_start(&h->lazy_timer, lazy_cb, h->lazy_ms, 0);
    }
    /* Quiet news while the worker accepts waits for the next connection; should none come, this
     * bounds how long the connection its thread shut stays open, and its access line and metrics
     * wait (before it, only the worker's 250 ms tick did). Started again at every turn, it fires
     * only once the loop has blocked quiet_ms: under load the next connection comes first (one
     * connection through uwsgi_pass brings one every 0.1 ms), so it costs no wake-up there. */
    if (h->shut_in_flight > 0 && atomic_load_explicit(&h->accepting, memory_order_relaxed))
        uv_timer_start(&h->quiet_timer, quiet_cb, h->quiet_ms, 0);
    else
        uv_timer_stop(&h->quiet_timer);
    if (h->shut_in_flight == 0)
        h->quiet_ms = WD_HANDOFF_QUIET_MS; /* long requests, if it grew, are over */
    if (h->on_block)
        h->on_block(h->on_block_data); /* the worker's: its access log lines of the turn too */
}

void wd__handoff_prepare(wd_handoff_t *h)
{
    prepare_cb(&h->prepare);
}

static void rest_drain(wd_handoff_t *h)
{
    uint64_t n;

    if (read(h->rest_fd, &n, sizeof n) < 0) {
        /* EAGAIN: the write is still to come (see rest) */
    }
}

/* Resting. Under load every request used to cost the loop a wake-up of its own: the proxy sends
 * the next request on a connection when the last answer reaches it, one at a time, so the loop
 * woke, read one request and queued it behind the others, and slept again (1.06 wake-ups of the
 * loop a request at 5 ms of I/O, -c32; its CPU was a third of wsgid's). None of that is urgent
 * while every thread has a run of queued requests before it: the loop then waits for the threads
 * alone, until the queue is down to one request a thread (rest_low) or a thread has news it must
 * act on, and reads everything that came meanwhile in one turn.
 *
 * It rests only where waking costs: not while its spinning pays (requests then come faster than
 * a wake-up; resting there cost hello at -c64 req/s). And only when nothing else needs it soon:
 * no connection waits for it to send (a slow client, a large answer, a producer held back by
 * response-spill-limit); every request in flight may end lazily (under uwsgi_pass or FastCGI every
 * answer needs the loop at its end, which would end each rest at once); no timer is due sooner;
 * and WD_HANDOFF_REST_MAX_MS at most (signals and the master's commands wait that long at worst).
 * New connections meanwhile stay in the backlog, where a worker that does not rest takes them (an
 * EPOLLEXCLUSIVE wake-up skips an epoll nobody waits on). The threads never wait for it: rest_low
 * requests are still queued when it ends.
 *
 * Measured (2 x 4 behind nginx keep-alive, 2 CPUs, 5 s runs, 2 A/B pairs): at 5 ms of I/O, -c32,
 * the loop threads' CPU fell from 30 to 19-21 us a request and wsgid's from 95 and 90 to 76 and 71,
 * req/s and p99 unchanged; hello at -c64 rests about twice a second (the spinning pays there). */
static int rest(wd_handoff_t *h)
{
    struct pollfd p = {.fd = h->rest_fd, .events = POLLIN};
    int timeout, deep, woken = 0;

    /* The queue holds at most what is in flight: below rest_high, no lock is taken (the thread
     * ending a request takes it too; at one connection that cost the p99). rest_high and
     * rest_low change only on this thread, before the threads start. */
    if (h->rest_fd < 0 || h->in_flight < h->rest_high || h->rest_high == 0 || h->writers > 0 ||
        h->in_flight != h->lazy_in_flight || h->loop_spin.score > 0 || h->parked > 0 ||
        h->park_in_flight > 0)
        return 0;
    pthread_mutex_lock(&h->lock);
    deep = h->rest_high > 0 && h->len >= h->rest_high && !h->closed;
    if (deep)
        atomic_store(&h->resting, 1);
    pthread_mutex_unlock(&h->lock);
    if (!deep)
        return 0;
    /* News put on the list before `resting` was set woke nobody: it is for this turn. */
    if (ready_any(h)) {
        if (!atomic_exchange(&h->resting, 0))
            rest_drain(h); /* a thread ended it meanwhile */
        return 0;
    }
    if (uv_is_active((uv_handle_t *)&h->spin))
        uv_idle_stop(&h->spin);
    uv_timer_stop(&h->lazy_timer); /* the rest takes the lazy news at its end */
    timeout = uv_backend_timeout(h->loop);
    if (timeout < 0 || timeout > (int)h->rest_max_ms)
        timeout = (int)h->rest_max_ms;
    if (timeout > 0 && atomic_load(&h->resting)) {
        h->rests++;
        woken = poll(&p, 1, timeout) > 0;
    }
    /* Whoever cleared `resting` wrote the eventfd, or is about to. A write that comes after this
     * read ends the next rest at once, and that rest reads it: drained only when a thread
     * cleared `resting`, it stayed, and every rest after it ended as it began (the loop then
     * woke for every request again: 1.06 epoll_wait and 1.8 poll a request at 5 ms of I/O). */
    if (!atomic_exchange(&h->resting, 0) || woken)
        rest_drain(h);
    uv_update_time(h->loop);
    return 1;
}

static void spin_cb(uv_idle_t *i)
{
    wd_handoff_t *h = i->data;

    if (h->in_flight == 0 || wd_now_ns() > h->spin_until_ns || h->parked > 0 ||
        h->park_in_flight > 0) {
        spin_paid(&h->loop_spin, h->spin_hit);
        uv_idle_stop(i);
        return;
    }
    sched_yield();
}

int wd_handoff_release(wd_handoff_t *h, wd_handoff_node_t *node)
{
    int deferred;

    pthread_mutex_lock(&h->ready_lock);
    deferred = node->queued;
    if (deferred)
        node->free_pending = 1;
    pthread_mutex_unlock(&h->ready_lock);
    return deferred;
}

uint64_t wd_handoff_taken_ns(wd_handoff_t *h, const wd_req_t *req)
{
    uint64_t t;

    pthread_mutex_lock(&h->lock);
    t = req->t_taken_ns;
    pthread_mutex_unlock(&h->lock);
    return t;
}

uint64_t wd_handoff_oldest_queued(wd_handoff_t *h)
{
    uint64_t t;

    pthread_mutex_lock(&h->lock);
    t = h->head != NULL ? h->head->t_queued_ns : 0;
    pthread_mutex_unlock(&h->lock);
    return t;
}
