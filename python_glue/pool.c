/* The pool of Python threads: each takes requests from the hand-off (handoff.h) and serves
 * them; the main thread gives up the GIL for good once they are started. */
#include "glue.h"
#include "glue_int.h"
#include "../daemon/common/alloc.h"
#include "../daemon/common/log.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The interrupter: a thread that takes the GIL to raise request-timeout exceptions, so that the
 * loop thread never waits for the GIL. A Python thread stuck in C with the GIL held (a regex
 * backtracking for ever) blocks the interrupter, not the loop, which goes on answering 504 and
 * having the worker replaced. Its requests: a small ring, the oldest dropped if it ever fills
 * (the loop asks again at the next tick only for requests not yet asked; a dropped one is
 * answered 504 after the grace time all the same). */
#define INTR_MAX 64

static struct {
    wd_py_helper_t h; /* its states take the GIL back with the interpreter holding it (gil.c) */
    uint64_t ring[INTR_MAX]; /* the requests' seq */
    unsigned head, len;
} intr = {.h = WD_PY_HELPER_INIT};

static void *interrupter_main(void *arg)
{
    wd_py_helper_t *h = &intr.h;

    (void)arg;
    pthread_setname_np(pthread_self(), "wsgid-intr");
    wd__py_gil_thread(h->ts);
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (intr.len == 0 && !h->stop)
            pthread_cond_wait(&h->cond, &h->lock);
        if (h->stop)
            break;
        uint64_t seq = intr.ring[intr.head];

        intr.head = (intr.head + 1) % INTR_MAX;
        intr.len--;
        h->in_gil = 1;
        pthread_mutex_unlock(&h->lock);
        wd__py_gil_restore(h->ts[0]);
        wd__py_raise_timeout(h->ts, seq);
        PyEval_SaveThread();
        pthread_mutex_lock(&h->lock);
        h->in_gil = 0;
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* request-timeout: the stuck thread's stack goes to the error log. The traceback of the
 * RequestTimeout is logged when it propagates (respond.c), but a thread blocked in C gets it only
 * once that call returns, if ever, and one that holds the GIL there keeps the interrupter waiting
 * for good. The SIGUSR2 handler (dump.c) dumps every thread of every interpreter without the
 * GIL, here on the loop thread; the line before it names the stuck thread as the dump
 * does ("Thread 0x..."). At most one dump every STUCK_DUMP_EVERY_NS: the requests of a stuck
 * worker time out together, and one dump shows them all. */
#define STUCK_DUMP_EVERY_NS (5 * 1000000000ull)

static void log_stuck_stack(const wd_req_t *req)
{
    static uint64_t last_ns;
    uint64_t now = wd_now_ns();
    unsigned long ident;
    int index = 0;

    /* py_thread only once py_running is seen set, acquired: the thread wrote it just before
     * (respond.c), with no lock the loop takes; read before, or without the pairing, it raced
     * with that write (ThreadSanitizer), and could name the thread of the request before. */
    if (!wd__py.stacks_to_log || !atomic_load_explicit(&req->py_running, memory_order_acquire))
        return;
    ident = req->py_thread;
    for (int i = 0; i < wd__py.n_threads; i++)
        if (wd__py.threads[i].ident == ident)
            index = wd__py.threads[i].index;
    if (last_ns != 0 && now - last_ns < STUCK_DUMP_EVERY_NS) {
        wd_log_warn("[req %s] its thread is Thread 0x%016lx (wsgid-py%d): see the stacks dumped "
                    "%.1f s ago",
                    req->id, ident, index, (double)(now - last_ns) / 1e9);
        return;
    }
    last_ns = now;
    wd_log_warn("[req %s] the Python stacks of the worker's threads follow; the one running it is "
                "Thread 0x%016lx (wsgid-py%d)",
                req->id, ident, index);
    raise(SIGUSR2);
}

void wd_py_interrupt(wd_req_t *req)
{
    log_stuck_stack(req);
    pthread_mutex_lock(&intr.h.lock);
    if (intr.len == INTR_MAX) {
        intr.head = (intr.head + 1) % INTR_MAX;
        intr.len--;
    }
    intr.ring[(intr.head + intr.len) % INTR_MAX] = req->seq;
    intr.len++;
    pthread_cond_signal(&intr.h.cond);
    pthread_mutex_unlock(&intr.h.lock);
}

/* A mount with a chdir of its own: the working directory is a thread's, not the process's
 * (unshare(CLONE_FS)), and each request runs in its mount's (respond.c). Without it (the call
 * refused), a mount's chdir holds only while it is imported. */
static void own_cwd(wd_py_thread_t *thr)
{
    thr->dir_fd = wd__py.cwd_fd;
    if (!wd__py.mount_dirs)
        return;
    if (unshare(CLONE_FS) == 0) {
        thr->own_cwd = 1;
    } else if (thr->index == 1) {
        wd_log_warn("group %s: cannot give the Python threads working directories of their own "
                    "(unshare: %s): a mount's chdir holds only while it is imported",
                    wd__py.group->name, strerror(errno));
    }
}

static void *thread_main(void *arg)
{
    wd_py_thread_t *thr = arg;
    PyGILState_STATE gs;
    wd_req_t *req, *done = NULL;
    int keep_alive = 0;
    char name[16];

    /* The policy first: a thread that shows its name has it (test_handoff reads both). */
    wd_handoff_thread_enter();
    snprintf(name, sizeof name, "wsgid-py%d", thr->index);
    pthread_setname_np(pthread_self(), name);
    gs = PyGILState_Ensure();
    /* A state in each sub-interpreter, made here: PyThreadState_SetAsyncExc finds a thread by
     * the ident its state was made in. */
    thr->ts = xcalloc(wd__py.n_interps, sizeof *thr->ts);
    thr->ts[0] = PyThreadState_Get();
    for (size_t i = 1; i < wd__py.n_interps; i++)
        thr->ts[i] = PyThreadState_New(PyThreadState_GetInterpreter(wd__py.interps[i]->ts));
    for (size_t i = 0; i < wd__py.n_interps; i++)
        wd__py_gil_note(thr->ts[i], (int)i);
    wd__py_gil_thread(thr->ts);
    thr->cur = 0;
    thr->ident = PyThread_get_thread_ident();
    if (thr->running != NULL)
        wd_score_set(&thr->running->thread_ident, thr->ident);
    own_cwd(thr);
    for (;;) {
        /* Finishing writes what the socket takes at once and wakes the loop; it never blocks, so
         * the GIL is kept. A thread without its eventfd (eventfd() failed) never parks: nothing
         * could wake it. Under load the next request is already queued: take it without giving
         * up the GIL, which would only hand it to another thread of ours (a context switch per
         * request). The interpreter still switches threads every sys.getswitchinterval(). */
        if (done != NULL)
            (void)wd_out_finish_park(done->out, keep_alive,
                                     thr->handoff.efd >= 0 ? &thr->handoff : NULL);
        done = NULL;
        wd__py_lent_take(thr);
        req = wd_handoff_next(wd__py.handoff, &thr->handoff);
        if (req == NULL) {
            PyThreadState *ts = PyEval_SaveThread();

            req = wd_handoff_wait(wd__py.handoff, &thr->handoff);
            wd__py_gil_restore(ts);
        }
        if (req == NULL)
            break;
        keep_alive = wd__py_serve(thr, req);
        done = req;
    }
    wd__py_enter(thr, wd__py.interps[0]);
    wd__py_states_delete(thr->ts, 1); /* [0] is PyGILState's, released below */
    free(thr->ts);
    thr->ts = NULL;
    PyGILState_Release(gs);
    return NULL;
}

int wd_py_start(wd_handoff_t *h, wd_score_t *score)
{
    const wd_group_conf_t *g = wd__py.group;
    int n = g->threads > 0 ? g->threads : 1;

    wd__py.handoff = h;
    wd__py_gil_reserve(((size_t)n + 3) * wd__py.n_interps);
    wd__py_helper_states(&intr.h);
    wd__py_lent_states();
    wd__py.threads = xcalloc((size_t)n, sizeof *wd__py.threads);
    for (wd__py.n_threads = 0; wd__py.n_threads < n; wd__py.n_threads++) {
        wd_py_thread_t *thr = &wd__py.threads[wd__py.n_threads];
        int rc;

        thr->index = wd__py.n_threads + 1;
        if (score != NULL && wd__py.n_threads < WD_SCORE_RUNNING)
            thr->running = &score->running[wd__py.n_threads];
        wd_handoff_thread_init(&thr->handoff);
        rc = pthread_create(&thr->tid, NULL, thread_main, thr);
        if (rc != 0) {
            wd_log_error("group %s: cannot start Python thread %d: %s", g->name,
                         wd__py.n_threads + 1, strerror(rc));
            break;
        }
    }
    wd__py_gil_start();
    if (wd__py_helper_start(&intr.h, interrupter_main) != 0)
        wd_log_error("group %s: cannot start the interrupter thread: request-timeout will only "
                     "answer 504, not interrupt",
                     g->name);
    if (wd__py_lent_start() != 0)
        wd_log_error("group %s: cannot start the thread that lets go of sent response bytes: "
                     "they are let go of between requests only",
                     g->name);
    wd__py.main_ts = PyEval_SaveThread();
    return wd__py.n_threads == n ? 0 : -1;
}

void wd_py_stop(void)
{
    int busy = wd__py_helper_stop(&intr.h), nudger_busy = wd__py_gil_stop();
    int lent_busy = wd__py_lent_stop();

    for (int i = 0; i < wd__py.n_threads; i++) {
        pthread_join(wd__py.threads[i].tid, NULL);
        wd_handoff_thread_destroy(&wd__py.threads[i].handoff);
        free(wd__py.threads[i].head);
    }
    free(wd__py.threads);
    wd__py.threads = NULL;
    wd__py.n_threads = 0;
    if (wd__py.main_ts != NULL) {
        PyEval_RestoreThread(wd__py.main_ts);
        wd__py.main_ts = NULL;
    }
    if (!Py_IsInitialized())
        return;
    wd__py_lent_end(lent_busy);
    if (!busy)
        wd__py_helper_states_delete(&intr.h);
    if (!nudger_busy)
        wd__py_gil_states_delete();
    wd__py_gil_forget();
    if (wd__py_interps_end(!busy && !nudger_busy && !lent_busy) > 0) {
        /* A sub-interpreter left with threads: CPython 3.11's Py_FinalizeEx would abort the
         * worker on it (PyInterpreterState_Delete: "remaining subinterpreters", SIGABRT, a core
         * dump: helper-63), after running only what wd__py_interps_end ran (joining the
         * non-daemon threads, the atexit handlers, the flush of stdout and stderr). The worker
         * exits without it, as Python allows: an object's __del__ is not promised at exit. The
         * GIL stays with this thread, so the threads left never run Python again before the
         * exit; those blocked outside Python end with the process, as a daemon thread does in
         * a Python that finalizes. */
        wd_log_debug("group %s: Python not finalized: sub-interpreters still run threads",
                     wd__py.group ? wd__py.group->name : "?");
        return;
    }
    if (Py_FinalizeEx() < 0)
        wd_log_error("group %s: errors while finalising Python",
                     wd__py.group ? wd__py.group->name : "?");
}

const wd_app_ops_t wd_py_app = {
    .init = wd_py_init,
    .load = wd_py_load,
    .start = wd_py_start,
    .interrupt = wd_py_interrupt,
    .stop = wd_py_stop,
};
