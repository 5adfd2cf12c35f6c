/* Every Python thread's stack, written from a signal handler: for `wsgictl stacks` (to the
 * master's pipe, daemon/worker/stacks.h) and on SIGUSR2 (to the error log: the watchdog and
 * request-timeout ask for it). From the handler and without the GIL, so that a thread holding the
 * GIL in C for ever does not stop it.
 *
 * faulthandler does this for one interpreter, the one its handler was registered from: a thread
 * serving an app of a sub-interpreter showed there without its frames. This handler walks every
 * interpreter of the worker with the dump faulthandler itself calls (_Py_DumpTracebackThreads,
 * signal safe, exported by libpython but declared only in its internal headers), then chains to
 * the handler installed before it (stacks.c's end line). A thread of ours has a state in each
 * interpreter, so it is listed once per interpreter, with its frames in the one it runs: the
 * master keeps that block (master_stacks.c). */
#include "glue_int.h"
#include "../daemon/common/alloc.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

extern const char *_Py_DumpTracebackThreads(int fd, PyInterpreterState *interp,
                                            PyThreadState *current_tstate);

#define DUMP_SIGNALS 2

static struct {
    int signo, fd;
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

static void dump_handler(int signo, siginfo_t *si, void *uc)
{
    int saved = errno;

    for (int k = 0; k < n_sigs; k++) {
        size_t n = atomic_load(&n_interps);

        if (sigs[k].signo != signo)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && write(sigs[k].fd, "\n", 1) < 0) {
                /* Nothing to do from a signal handler. */
            }
            _Py_DumpTracebackThreads(sigs[k].fd, interps[i], NULL);
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
