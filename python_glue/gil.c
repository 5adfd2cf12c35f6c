/* Taking the GIL back across interpreters.
 *
 * Python 3.11's sub-interpreters share one GIL, but a thread waiting for it asks the holder to
 * let go (after sys.getswitchinterval(), 5 ms) through the eval-breaker of the *waiter's*
 * interpreter: a holder running Python code in another interpreter never sees the request and
 * keeps the GIL until it blocks or finishes. Measured before this file: a request spinning in a
 * sub-interpreter for 2 s held every request of the other interpreters for 1.7 s, and the
 * interrupter could not raise request-timeout in it at all.
 *
 * So a thread of ours that takes the GIL back waits with its thread state in the interpreter that
 * holds the GIL (the one whose eval loop must see the request), then swaps to the state it wants.
 * The holder is read from the runtime's current thread state, which 3.11 keeps process-wide
 * (_PyThreadState_UncheckedGet), and mapped to an interpreter by pointer, among the thread states
 * this file was told about. A state it does not know is a thread the app started, which may end
 * (and its state be freed) at any time: its interpreter is read with process_vm_readv, which
 * fails rather than faults on memory gone, and counts only if it is one of the group's. Before,
 * such a holder was never looked into, and a background thread of one interpreter doing 2 s of
 * Python code held every other interpreter's requests for up to 2 s (helper-63). One
 * interpreter: plain PyEval_RestoreThread.
 *
 * The app's own waits (the GIL taken back after a read, a sleep, a database call) go through
 * CPython's PyEval_RestoreThread and ask their own interpreter only: for them the nudger, a
 * thread of this file, looks at the holder every switch interval while requests are in flight,
 * and when the same thread state of ours has held the GIL since its last look, waits for the GIL
 * with a state of the holder's interpreter: the holder is asked to let go, as it would be by a
 * waiter of its own interpreter, and the nudger gives the GIL up as soon as it has it. At most two
 * context switches per switch interval, only while one thread keeps the GIL that long, and only
 * with sub-interpreters. */
#include "glue_int.h"
#include "../daemon/common/alloc.h"
#include "../daemon/common/log.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

typedef struct known_ts {
    PyThreadState *ts;
    int interp;
} known_ts_t;

static known_ts_t *known; /* filled once per thread state, read without a lock */
static size_t known_cap, known_len;
static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;

/* CPython's default sys.getswitchinterval(): how long a waiter waits before it asks. */
#define SWITCH_INTERVAL_US 5000

/* The calling thread's states, one per interpreter (NULL: none of its own). */
static __thread PyThreadState **my_states;

void wd__py_gil_reserve(size_t n)
{
    known = xcalloc(n, sizeof *known);
    known_cap = n;
}

void wd__py_gil_note(PyThreadState *ts, int interp)
{
    pthread_mutex_lock(&known_lock);
    if (known_len < known_cap) {
        known[known_len].interp = interp;
        __atomic_store_n(&known[known_len].ts, ts, __ATOMIC_RELEASE);
        known_len++;
    }
    pthread_mutex_unlock(&known_lock);
}

void wd__py_gil_forget(void)
{
    free(known);
    known = NULL;
    known_cap = known_len = 0;
}

void wd__py_gil_thread(PyThreadState **states)
{
    my_states = states;
}

/* The thread state holding the GIL. Python 3.11 keeps one current thread state for the process,
 * the holder's; from 3.12 it is per thread (the caller's own, NULL here), and whether a waiter of
 * one interpreter can still be left waiting by a holder of another is not measured there: this
 * file then does nothing. */
static PyThreadState *current_holder(void)
{
#if PY_VERSION_HEX < 0x030C0000
    return _PyThreadState_UncheckedGet();
#else
    return NULL;
#endif
}

/* The interpreter of a thread state this file does not know (an app's thread), or -1: read
 * without a dereference (see the top), and looked up among the group's interpreters. */
static int unknown_interp(PyThreadState *h)
{
    PyInterpreterState *in = NULL;
    struct iovec local = {&in, sizeof in}, remote = {&h->interp, sizeof in};

    if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != (ssize_t)sizeof in || in == NULL)
        return -1;
    for (size_t i = 0; i < wd__py.n_interps; i++)
        if (wd__py.interps[i]->state == in)
            return (int)i;
    return -1;
}

/* The interpreter of the thread state holding the GIL now, or -1 (none, or one of no concern). */
static int holder_interp(void)
{
    PyThreadState *h = current_holder();

    if (h == NULL)
        return -1;
    for (size_t i = 0; i < known_cap; i++) {
        PyThreadState *ts = __atomic_load_n(&known[i].ts, __ATOMIC_ACQUIRE);

        if (ts == NULL)
            break;
        if (ts == h)
            return known[i].interp;
    }
    return unknown_interp(h);
}

void wd__py_gil_restore(PyThreadState *ts)
{
    int k;

    if (wd__py.n_interps < 2 || my_states == NULL || (k = holder_interp()) < 0 ||
        my_states[k] == NULL || my_states[k] == ts) {
        PyEval_RestoreThread(ts);
        return;
    }
    PyEval_RestoreThread(my_states[k]);
    PyThreadState_Swap(ts);
}

static struct {
    wd_py_helper_t h;
    int active; /* requests in flight (GIL held to change it) */
} nudge = {.h = WD_PY_HELPER_INIT};

static void *nudger_main(void *arg)
{
    wd_py_helper_t *self = &nudge.h;
    PyThreadState *last = NULL;

    (void)arg;
    pthread_setname_np(pthread_self(), "wsgid-gil");
    pthread_mutex_lock(&self->lock);
    while (!self->stop) {
        if (__atomic_load_n(&nudge.active, __ATOMIC_RELAXED) == 0) {
            last = NULL;
            pthread_cond_wait(&self->cond, &self->lock);
            continue;
        }
        pthread_mutex_unlock(&self->lock);
        usleep(SWITCH_INTERVAL_US);
        PyThreadState *h = current_holder();
        int k = h != NULL && h == last ? holder_interp() : -1;

        last = h;
        pthread_mutex_lock(&self->lock);
        if (k < 0 || self->stop)
            continue;
        self->in_gil = 1;
        pthread_mutex_unlock(&self->lock);
        PyEval_RestoreThread(self->ts[k]);
        PyEval_SaveThread();
        last = NULL;
        pthread_mutex_lock(&self->lock);
        self->in_gil = 0;
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

void wd__py_gil_busy(int delta)
{
    if (!nudge.h.started)
        return;
    if (__atomic_add_fetch(&nudge.active, delta, __ATOMIC_RELAXED) == 1 && delta > 0) {
        pthread_mutex_lock(&nudge.h.lock);
        pthread_cond_signal(&nudge.h.cond);
        pthread_mutex_unlock(&nudge.h.lock);
    }
}

void wd__py_gil_start(void)
{
    int rc;

    if (wd__py.n_interps < 2 || PY_VERSION_HEX >= 0x030C0000)
        return;
    wd__py_helper_states(&nudge.h);
    rc = wd__py_helper_start(&nudge.h, nudger_main);
    if (rc != 0)
        wd_log_error("group %s: cannot start the GIL nudger thread (%s): a request running "
                     "Python code in one application group may hold up the others",
                     wd__py.group->name, strerror(rc));
}

int wd__py_gil_stop(void)
{
    return nudge.h.ts != NULL ? wd__py_helper_stop(&nudge.h) : 0;
}

void wd__py_gil_states_delete(void)
{
    wd__py_helper_states_delete(&nudge.h);
}

void wd__py_states_delete(PyThreadState **ts, size_t from)
{
    PyThreadState *self = PyThreadState_Get();

    for (size_t i = from; ts != NULL && i < wd__py.n_interps; i++) {
        if (ts[i] == NULL || ts[i] == self)
            continue;
        PyThreadState_Swap(ts[i]);
        PyThreadState_Clear(ts[i]);
        PyThreadState_Swap(self);
        PyThreadState_Delete(ts[i]);
        ts[i] = NULL;
    }
}
