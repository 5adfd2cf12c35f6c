/* Bytes objects lent to the response buffers (out.h: wd_out_lend_t), coming back.
 *
 * A large bytes object of a response is queued by reference instead of copied, with a reference
 * of its own. The loop sends it and frees the segment without the GIL (it never waits for it), so
 * the release only puts the object on the list here; the reference is dropped, with the GIL and
 * in the object's interpreter, by whoever takes the list first:
 *   - a Python thread between two requests (it holds the GIL then anyway): under load the list is
 *     taken within a request's time, at no cost beyond the decrefs;
 *   - else the releaser, a helper thread woken when the list stops being empty, which lets
 *     LINGER_MS go by for a Python thread to take it and then takes the GIL itself: an idle
 *     worker holds no lent object longer than that.
 * Once the pool has stopped, what comes back is dropped without a decref (the interpreters are
 * gone or going, and the process with them). */
#include "glue_int.h"
#include "../daemon/common/alloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define LINGER_MS 20

typedef struct lent {
    PyObject *obj;
    int interp;
} lent_t;

static struct {
    wd_py_helper_t h; /* the releaser; lock guards the list */
    lent_t *v;
    size_t n, cap;
    _Atomic size_t waiting; /* n, read without the lock by the Python threads */
    int closed;             /* the pool stopped: drop, never decref */
} back = {.h = WD_PY_HELPER_INIT};

void wd__py_lent_release(void *obj, void *ctx)
{
    pthread_mutex_lock(&back.h.lock);
    if (back.closed) {
        pthread_mutex_unlock(&back.h.lock);
        return;
    }
    if (back.n == back.cap) {
        back.cap = back.cap ? back.cap * 2 : 64;
        back.v = xrealloc(back.v, back.cap * sizeof *back.v);
    }
    back.v[back.n++] = (lent_t){obj, (int)(intptr_t)ctx};
    atomic_store_explicit(&back.waiting, back.n, memory_order_relaxed);
    if (back.n == 1)
        pthread_cond_signal(&back.h.cond);
    pthread_mutex_unlock(&back.h.lock);
}

/* Lock held: takes the list (the caller frees it). */
static lent_t *take(size_t *n)
{
    lent_t *v = back.v;

    *n = back.n;
    back.v = NULL;
    back.n = back.cap = 0;
    atomic_store_explicit(&back.waiting, 0, memory_order_relaxed);
    return v;
}

/* GIL held, with states[cur] current: drops the references, each in its interpreter; states[cur]
 * is current again at the end. */
static void drop(lent_t *v, size_t n, PyThreadState **states, int cur)
{
    int at = cur;

    for (size_t i = 0; i < n; i++) {
        if (v[i].interp != at) {
            PyThreadState_Swap(states[v[i].interp]);
            at = v[i].interp;
        }
        Py_DECREF(v[i].obj);
    }
    if (at != cur)
        PyThreadState_Swap(states[cur]);
    free(v);
}

void wd__py_lent_take(wd_py_thread_t *thr)
{
    lent_t *v;
    size_t n;

    if (atomic_load_explicit(&back.waiting, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&back.h.lock);
    v = take(&n);
    pthread_mutex_unlock(&back.h.lock);
    drop(v, n, thr->ts, thr->cur);
}

static void *releaser_main(void *arg)
{
    wd_py_helper_t *h = &back.h;

    (void)arg;
    pthread_setname_np(pthread_self(), "wsgid-lent");
    wd__py_gil_thread(h->ts);
    pthread_mutex_lock(&h->lock);
    for (;;) {
        struct timespec until;
        lent_t *v;
        size_t n;

        while (back.n == 0 && !h->stop)
            pthread_cond_wait(&h->cond, &h->lock);
        if (h->stop)
            break;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += LINGER_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (back.n > 0 && !h->stop &&
               pthread_cond_timedwait(&h->cond, &h->lock, &until) != ETIMEDOUT)
            ;
        if (h->stop)
            break;
        if (back.n == 0)
            continue; /* a Python thread took them */
        v = take(&n);
        h->in_gil = 1;
        pthread_mutex_unlock(&h->lock);
        wd__py_gil_restore(h->ts[0]);
        drop(v, n, h->ts, 0);
        PyEval_SaveThread();
        pthread_mutex_lock(&h->lock);
        h->in_gil = 0;
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

void wd__py_lent_states(void)
{
    wd__py_helper_states(&back.h);
}

int wd__py_lent_start(void)
{
    return wd__py_helper_start(&back.h, releaser_main);
}

int wd__py_lent_stop(void)
{
    return wd__py_helper_stop(&back.h);
}

void wd__py_lent_end(int helper_busy)
{
    lent_t *v;
    size_t n;

    pthread_mutex_lock(&back.h.lock);
    back.closed = 1;
    v = take(&n);
    pthread_mutex_unlock(&back.h.lock);
    if (helper_busy || back.h.ts == NULL) {
        free(v); /* its states are in use: the references are left, as the process ends */
        return;
    }
    /* The main thread holds the GIL in the main interpreter; the releaser's states (made by this
     * thread) serve for the others. */
    PyThreadState **states = xcalloc(wd__py.n_interps, sizeof *states);

    states[0] = PyThreadState_Get();
    for (size_t i = 1; i < wd__py.n_interps; i++)
        states[i] = back.h.ts[i];
    drop(v, n, states, 0);
    free(states);
    wd__py_helper_states_delete(&back.h);
}
