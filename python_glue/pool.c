/* The pool of Python threads: each takes requests from the hand-off (handoff.h) and serves
 * them; the main thread gives up the GIL for good once they are started. */
#include "glue.h"
#include "glue_int.h"
#include "../daemon/common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static wd_py_thread_t *threads;
static int n_threads;
static wd_handoff_t *handoff;
static PyThreadState *main_ts; /* the main thread's state while it runs without the GIL */

/* The interrupter: a thread that takes the GIL to raise request-timeout exceptions, so that the
 * loop thread never waits for the GIL. A Python thread stuck in C with the GIL held (a regex
 * backtracking for ever) blocks the interrupter, not the loop, which goes on answering 504 and
 * having the worker replaced. Its requests: a small ring, the oldest dropped if it ever fills
 * (the loop asks again at the next tick only for requests not yet asked; a dropped one is
 * answered 504 after the grace time all the same). */
#define INTR_MAX 64

static struct {
    pthread_t tid;
    int started, stop, busy;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct {
        unsigned long ident;
        uint64_t seq;
    } ring[INTR_MAX];
    unsigned head, len;
} intr = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void *interrupter_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "wsgid-intr");
    pthread_mutex_lock(&intr.lock);
    for (;;) {
        while (intr.len == 0 && !intr.stop)
            pthread_cond_wait(&intr.cond, &intr.lock);
        if (intr.stop)
            break;
        unsigned long ident = intr.ring[intr.head].ident;
        uint64_t seq = intr.ring[intr.head].seq;

        intr.head = (intr.head + 1) % INTR_MAX;
        intr.len--;
        intr.busy = 1;
        pthread_mutex_unlock(&intr.lock);
        PyGILState_STATE gs = PyGILState_Ensure();

        wd__py_raise_timeout(threads, n_threads, ident, seq);
        PyGILState_Release(gs);
        pthread_mutex_lock(&intr.lock);
        intr.busy = 0;
    }
    pthread_mutex_unlock(&intr.lock);
    return NULL;
}

void wd_py_interrupt(wd_req_t *req)
{
    pthread_mutex_lock(&intr.lock);
    if (intr.len == INTR_MAX) {
        intr.head = (intr.head + 1) % INTR_MAX;
        intr.len--;
    }
    intr.ring[(intr.head + intr.len) % INTR_MAX].ident = req->py_thread;
    intr.ring[(intr.head + intr.len) % INTR_MAX].seq = req->seq;
    intr.len++;
    pthread_cond_signal(&intr.cond);
    pthread_mutex_unlock(&intr.lock);
}

static void *thread_main(void *arg)
{
    wd_py_thread_t *thr = arg;
    PyGILState_STATE gs;
    wd_req_t *req, *done = NULL;
    int keep_alive = 0;
    char name[16];

    snprintf(name, sizeof name, "wsgid-py%d", thr->index);
    pthread_setname_np(pthread_self(), name);
    gs = PyGILState_Ensure();
    for (;;) {
        /* Finishing writes what the socket takes at once and wakes the loop; it never blocks, so
         * the GIL is kept. Under load the next request is already queued: take it without giving
         * up the GIL, which would only hand it to another thread of ours (a context switch per
         * request). The interpreter still switches threads every sys.getswitchinterval(). */
        if (done != NULL)
            wd_out_finish(done->out, keep_alive);
        done = NULL;
        req = wd_handoff_next(handoff, &thr->handoff);
        if (req == NULL) {
            PyThreadState *ts = PyEval_SaveThread();

            req = wd_handoff_wait(handoff, &thr->handoff);
            PyEval_RestoreThread(ts);
        }
        if (req == NULL)
            break;
        keep_alive = wd__py_serve(thr, req);
        done = req;
    }
    PyGILState_Release(gs);
    return NULL;
}

int wd_py_start(wd_handoff_t *h)
{
    const wd_group_conf_t *g = wd__py_group;
    int n = g->threads > 0 ? g->threads : 1;

    handoff = h;
    threads = calloc((size_t)n, sizeof *threads);
    if (threads == NULL)
        abort();
    for (n_threads = 0; n_threads < n; n_threads++) {
        wd_py_thread_t *thr = &threads[n_threads];
        int rc;

        thr->index = n_threads + 1;
        wd_handoff_thread_init(&thr->handoff);
        rc = pthread_create(&thr->tid, NULL, thread_main, thr);
        if (rc != 0) {
            wd_log_error("group %s: cannot start Python thread %d: %s", g->name, n_threads + 1,
                         strerror(rc));
            break;
        }
    }
    if (pthread_create(&intr.tid, NULL, interrupter_main, NULL) == 0)
        intr.started = 1;
    else
        wd_log_error("group %s: cannot start the interrupter thread: request-timeout will only "
                     "answer 504, not interrupt",
                     g->name);
    main_ts = PyEval_SaveThread();
    return n_threads == n ? 0 : -1;
}

void wd_py_stop(void)
{
    int busy;

    pthread_mutex_lock(&intr.lock);
    intr.stop = 1;
    busy = intr.busy;
    pthread_cond_signal(&intr.cond);
    pthread_mutex_unlock(&intr.lock);
    /* An interrupter still waiting for the GIL (a thread stuck with it) is left behind: the
     * process is on its way out. */
    if (intr.started && !busy)
        pthread_join(intr.tid, NULL);
    intr.started = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(threads[i].tid, NULL);
        wd_handoff_thread_destroy(&threads[i].handoff);
        free(threads[i].head);
    }
    free(threads);
    threads = NULL;
    n_threads = 0;
    if (main_ts != NULL) {
        PyEval_RestoreThread(main_ts);
        main_ts = NULL;
    }
    if (!Py_IsInitialized())
        return;
    Py_CLEAR(wd__py_app);
    for (size_t i = 0; i < wd__py_n_mounts; i++)
        Py_CLEAR(wd__py_mounts[i].app);
    free(wd__py_mounts);
    wd__py_mounts = NULL;
    wd__py_n_mounts = 0;
    if (Py_FinalizeEx() < 0)
        wd_log_error("group %s: errors while finalising Python",
                     wd__py_group ? wd__py_group->name : "?");
}

const wd_app_ops_t wd_py_app = {
    .init = wd_py_init,
    .load = wd_py_load_app,
    .start = wd_py_start,
    .interrupt = wd_py_interrupt,
    .stop = wd_py_stop,
};
