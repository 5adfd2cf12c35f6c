/* Every Python thread's stack, written from a signal handler: for `wsgictl stacks` (to the
 * master's pipe, daemon/worker/stacks.h) and on SIGUSR2 (to the error log: the watchdog,
 * startup-timeout and request-timeout ask for it). From the handler and without the GIL, so that
 * a thread holding the GIL in C for ever does not stop it.
 *
 * faulthandler does this for one interpreter, the one its handler was registered from: a thread
 * serving an app of a sub-interpreter showed there without its frames. Walking every
 * interpreter with faulthandler's _Py_DumpTracebackThreads listed each thread of ours once per
 * interpreter (it has a state in each), with its frames in the one it runs: with 100
 * %{RESOURCE} mounts, one request-timeout wrote 1009 lines to the log, 500 of them
 * "<no Python frame>" and the main thread 247 times (helper-63). So each OS thread is listed
 * once here, with the state that has frames (the interpreter it runs in), else its first. Its
 * frames come from _Py_DumpTraceback (signal safe, exported by libpython but declared only in its
 * internal headers), written to a memfd and copied without the "Stack" header that function
 * writes, so that the format stays faulthandler's ("Thread 0x...", frames, a blank line), which
 * master_stacks.c reads. Then the handler installed before this one is chained to (stacks.c's
 * end line). */
#include "glue_int.h"
#include "../daemon/common/alloc.h"
#include "../daemon/worker/stacks.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void _Py_DumpTraceback(int fd, PyThreadState *tstate);
extern void _Py_DumpHexadecimal(int fd, uintptr_t value, Py_ssize_t width);

#define DUMP_SIGNALS 2
/* Threads listed at most, as faulthandler's 100 per interpreter: a bound on the log. */
#define DUMP_THREADS_MAX 200

static struct {
    int signo, fd;
    int tmp; /* memfd a thread's frames are written to first, -1 = none */
    atomic_int busy;
    unsigned long shown[DUMP_THREADS_MAX];
    struct sigaction old;
} sigs[DUMP_SIGNALS];
static int n_sigs;

/* What the handler walks: set on the main thread, which the handler may interrupt; the count is
 * 0 while the array changes. */
static PyInterpreterState **interps;
static size_t interps_cap;
static _Atomic size_t n_interps;

static void chain(const struct sigaction *old, int signo, siginfo_t *si, void *uc)
{
    if (old->sa_flags & SA_SIGINFO) {
        if (old->sa_sigaction != NULL)
            old->sa_sigaction(signo, si, uc);
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(signo);
    }
}

static void put(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nothing to do from a signal handler */
        s += n;
        len -= (size_t)n;
    }
}

#define PUTS(fd, s) put(fd, s, strlen(s))

static int has_frames(const PyThreadState *ts)
{
    return ts->cframe != NULL && ts->cframe->current_frame != NULL;
}

/* Of the states of thread ident in the first n interpreters, one with frames, else first. */
static PyThreadState *state_to_show(unsigned long ident, size_t n, PyThreadState *first)
{
    for (size_t i = 0; i < n; i++)
        for (PyThreadState *t = PyInterpreterState_ThreadHead(interps[i]); t != NULL;
             t = PyThreadState_Next(t))
            if (t->thread_id == ident && has_frames(t))
                return t;
    return first;
}

/* One thread as faulthandler writes it: its header line, then its frames (or "  <no Python
 * frame>"). */
static void dump_thread(int fd, int tmp, PyThreadState *ts, int current)
{
    char buf[4096];
    off_t off = 0;
    ssize_t n;
    int header = 1;

    PUTS(fd, current ? "Current thread 0x" : "Thread 0x");
    _Py_DumpHexadecimal(fd, ts->thread_id, sizeof(unsigned long) * 2);
    PUTS(fd, " (most recent call first):\n");
    /* Emptied and rewound: ftruncate keeps the offset, and each dump's write would go on past a
     * hole, every dump since the worker's start read again to reach it (helper-69). */
    if (tmp < 0 || ftruncate(tmp, 0) < 0 || lseek(tmp, 0, SEEK_SET) != 0) {
        _Py_DumpTraceback(fd, ts); /* with its "Stack (most recent call first):" line */
        return;
    }
    _Py_DumpTraceback(tmp, ts);
    while ((n = pread(tmp, buf, sizeof buf, off)) > 0) {
        const char *p = buf;

        off += n;
        if (header) { /* "Stack (most recent call first):\n", well inside the first read */
            const char *nl = memchr(buf, '\n', (size_t)n);

            if (nl == NULL)
                continue;
            header = 0;
            p = nl + 1;
        }
        put(fd, p, (size_t)(buf + n - p));
    }
}

static void dump_all(int k)
{
    size_t n = atomic_load(&n_interps), shown = 0;
    unsigned long self = (unsigned long)pthread_self();

    for (size_t i = 0; i < n; i++) {
        for (PyThreadState *t = PyInterpreterState_ThreadHead(interps[i]); t != NULL;
             t = PyThreadState_Next(t)) {
            size_t j = 0;

            while (j < shown && sigs[k].shown[j] != t->thread_id)
                j++;
            if (j < shown)
                continue; /* listed already, from this interpreter or another */
            if (shown > 0)
                PUTS(sigs[k].fd, "\n");
            if (shown == DUMP_THREADS_MAX) {
                PUTS(sigs[k].fd, "...\n");
                return;
            }
            sigs[k].shown[shown++] = t->thread_id;
            if (sigs[k].signo == WD_WORKER_SIG_STACKS)
                wd_stacks_progress(shown == 1); /* the loop's heartbeat, for /livez (stacks.h) */
            dump_thread(sigs[k].fd, sigs[k].tmp, state_to_show(t->thread_id, n, t),
                        t->thread_id == self);
        }
    }
}

static void dump_handler(int signo, siginfo_t *si, void *uc)
{
    int saved = errno;

    for (int k = 0; k < n_sigs; k++) {
        if (sigs[k].signo != signo)
            continue;
        /* The same signal in two threads at once (a request-timeout's raise as the master's
         * arrives) would interleave in the memfd: the second dumps nothing. */
        if (atomic_exchange(&sigs[k].busy, 1) == 0) {
            dump_all(k);
            atomic_store(&sigs[k].busy, 0);
        }
        chain(&sigs[k].old, signo, si, uc);
    }
    errno = saved;
}

int wd__py_dump_on(int signo, int fd)
{
    struct sigaction sa;

    for (int k = 0; k < n_sigs; k++) {
        if (sigs[k].signo == signo) { /* Python set up again (the unit tests do) */
            sigs[k].fd = fd;
            return 0;
        }
    }
    if (n_sigs == DUMP_SIGNALS) {
        PyErr_SetString(PyExc_RuntimeError, "wsgid: too many dump signals");
        return -1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = dump_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigs[n_sigs].signo = signo;
    sigs[n_sigs].fd = fd;
    sigs[n_sigs].tmp = memfd_create("wsgid-stacks", MFD_CLOEXEC); /* -1: frames written as is */
    if (sigaction(signo, &sa, &sigs[n_sigs].old) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    n_sigs++;
    return 0;
}

void wd__py_dump_interps(void)
{
    atomic_store(&n_interps, 0);
    if (interps_cap < wd__py.n_interps) {
        interps = xrealloc(interps, wd__py.n_interps * sizeof *interps);
        interps_cap = wd__py.n_interps;
    }
    for (size_t i = 0; i < wd__py.n_interps; i++)
        interps[i] = PyThreadState_GetInterpreter(wd__py.interps[i]->ts);
    atomic_store(&n_interps, wd__py.n_interps);
}

void wd__py_dump_off(void)
{
    atomic_store(&n_interps, 0);
}
