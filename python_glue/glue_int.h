/* Names shared between the files of python_glue/ only (the daemon sees glue.h). Everything here
 * is called with the GIL held unless said otherwise. */
#ifndef WD_PYTHON_GLUE_INT_H
#define WD_PYTHON_GLUE_INT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../daemon/common/config.h"
#include "../daemon/common/scoreboard.h"
#include "../daemon/worker/handoff.h"

#include <pthread.h>
#include <stddef.h>

/* An interpreter of the worker: the main one (%{GLOBAL}) or a sub-interpreter of an application
 * group (interp.c). Python 3.11's sub-interpreters share the GIL, so one pool thread can serve
 * any of them: it keeps a thread state in each and swaps to the request's (PyThreadState_Swap,
 * GIL held). Objects that are immutable and made once (interned key strings, the static types,
 * wsgid.RequestTimeout) are shared; what Python code could mutate or run is per interpreter. */
typedef struct wd_py_interp {
    int index;                  /* in wd__py.interps: 0 is the main interpreter */
    char *name;                 /* wsgid.application_group: "" for %{GLOBAL} */
    PyThreadState *ts;          /* the main thread's state in it (kept to end it) */
    PyInterpreterState *state;  /* ts's interpreter (gil.c looks an app thread's up by it) */
    PyObject *environ;          /* the environ template (strong) */
    PyObject *format_exception; /* traceback.format_exception, imported on first use */
    int format_tried;
    int n_apps; /* the apps it runs */
} wd_py_interp_t;

/* An app: a mount, or the group's own app (prefix "/", len 0, which matches every path). */
typedef struct wd_py_mount {
    const char *prefix; /* "/blog", or "/" */
    size_t len;         /* 0 for "/" */
    PyObject *app;      /* strong, created in interp */
    wd_py_interp_t *interp;
    const wd_mount_conf_t *conf; /* NULL for the group's own app */
    int dir_fd; /* its working directory (O_PATH): the mount's chdir, else wd__py.cwd_fd */
} wd_py_mount_t;

/* What each pool thread owns: its place in the hand-off, a thread state per interpreter, a
 * growable buffer for response heads. */
typedef struct wd_py_thread {
    pthread_t tid;
    wd_handoff_thread_t handoff;
    int index;
    unsigned long ident; /* PyThread_get_thread_ident() */
    uint64_t serving;    /* seq of the request it runs, 0 between requests (GIL held for both) */
    wd_score_running_t *running; /* its slot in the scoreboard, or NULL (scoreboard.h) */
    PyThreadState **ts;          /* [interp index]: [0] is PyGILState's; the others its own */
    int cur;                     /* the interpreter whose thread state is current (GIL held) */
    int dir_fd;                  /* its working directory, when it has one of its own (own_cwd) */
    int own_cwd;                 /* unshare(CLONE_FS) done: fchdir moves this thread only */
    char *head;
    size_t head_cap;
} wd_py_thread_t;

/* The Python side of the worker process, one instance (interp.c, pool.c). */
typedef struct wd_py {
    const wd_group_conf_t *group;
    wd_py_interp_t **interps; /* [0] is the main interpreter */
    size_t n_interps;
    wd_py_mount_t *apps; /* longest prefix first; the group's own app (len 0) last */
    size_t n_apps;
    wd_py_thread_t *threads;
    int n_threads;
    wd_handoff_t *handoff;
    PyThreadState *main_ts; /* the main thread's state while it runs the loop without the GIL */
    char *cwd;              /* the group's working directory */
    int cwd_fd;             /* the same, O_PATH */
    int mount_dirs;         /* a mount has a chdir of its own: each thread gets its own cwd */
    int stacks_to_log;      /* SIGUSR2 dumps every thread to the error log (dump.c) */
} wd_py_t;

extern wd_py_t wd__py;

/* Makes interp's thread state of thr current (GIL held). */
static inline void wd__py_enter(wd_py_thread_t *thr, const wd_py_interp_t *interp)
{
    if (thr->cur != interp->index) {
        PyThreadState_Swap(thr->ts[interp->index]);
        thr->cur = interp->index;
    }
}

/* gil.c: taking the GIL back with the thread state of the interpreter that holds it, so that
 * its eval loop sees the request to let go (Python 3.11 asks only the waiter's interpreter). */
void wd__py_bigmem_install(void); /* bigmem.c: after Py_PreInitialize, before Py_Initialize */

void wd__py_gil_reserve(size_t n);                   /* room for n thread states */
void wd__py_gil_note(PyThreadState *ts, int interp); /* a state of ours, in interp */
void wd__py_gil_thread(PyThreadState **states);      /* the calling thread's, per interp */
void wd__py_gil_restore(PyThreadState *ts);          /* PyEval_RestoreThread(ts), fairly */
void wd__py_gil_forget(void);
/* The nudger (with sub-interpreters only): started once the pool runs; told of each request's
 * start (+1) and end (-1), GIL held; stopped before the interpreters end (returns 1 when it was
 * left waiting for the GIL: then its states cannot be deleted), its states deleted by the main
 * thread. */
void wd__py_gil_start(void);
void wd__py_gil_busy(int delta);
int wd__py_gil_stop(void);
void wd__py_gil_states_delete(void);
/* Deletes ts[from..n_interps) (the calling thread's, or another's that is gone), each cleared in
 * its interpreter (its objects belong there); the calling thread's current state stays. */
void wd__py_states_delete(PyThreadState **ts, size_t from);

/* helper.c: a thread of ours that takes the GIL now and then (the interrupter, the nudger), with
 * a state in each interpreter that the main thread makes (GIL held) and tells gil.c of. It waits
 * on cond under lock until told to stop; in_gil says it holds or waits for the GIL meanwhile. */
typedef struct wd_py_helper {
    pthread_t tid;
    int started, stop, in_gil;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    PyThreadState **ts; /* one per interpreter */
} wd_py_helper_t;
#define WD_PY_HELPER_INIT                                                                          \
    {                                                                                              \
        .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER                        \
    }

void wd__py_helper_states(wd_py_helper_t *h);
int wd__py_helper_start(wd_py_helper_t *h, void *(*fn)(void *)); /* 0, or pthread_create's error */
/* Tells it to stop and joins it, unless it is left waiting for the GIL (a thread stuck with it;
 * the process is on its way out): returns 1 then, and its states cannot be deleted. */
int wd__py_helper_stop(wd_py_helper_t *h);
void wd__py_helper_states_delete(wd_py_helper_t *h); /* main thread, GIL held, once it is gone */

/* lent.c: the bytes objects lent to response buffers come back (see there). _release is the
 * wd_out_lend_t callback (any thread, no GIL; ctx: the interpreter's index); _take drops what came
 * back, GIL held, between requests; _states, _start (main thread, GIL held) and _stop as a
 * helper's; _end (main thread, GIL held, the pool stopped) drops the rest and the states. */
void wd__py_lent_release(void *obj, void *ctx);
void wd__py_lent_take(wd_py_thread_t *thr);
void wd__py_lent_states(void);
int wd__py_lent_start(void);
int wd__py_lent_stop(void);
void wd__py_lent_end(int helper_busy);

/* dump.c: every interpreter's thread stacks from a signal handler (see there). */
int wd__py_dump_on(int signo, int fd); /* signo dumps to fd, then chains; -1 with an exception */
void wd__py_dump_interps(void);        /* the handler walks wd__py.interps from now on */
void wd__py_dump_off(void);            /* ... or none (they are about to end) */

/* interp.c: the apps of the group and their interpreters, made (wd_py_load_app, main thread,
 * GIL held), before any app is imported. */
int wd__py_apps_setup(void);
/* interp.c: with the main thread's state current and the GIL held, ends the sub-interpreters
 * (when threads_gone: no other thread has a state in them any more) and clears what every
 * interpreter holds, before Py_FinalizeEx. Returns how many sub-interpreters could not be ended
 * (threads still run in them): then Py_FinalizeEx would abort ("remaining subinterpreters"),
 * and what it runs first (the atexit handlers...) has run. */
int wd__py_interps_end(int threads_gone);

/* Takes the pending Python exception (clearing it) and writes its traceback to the error log,
 * each line prefixed with prefix. When summary is not NULL it receives "Type: message". */
void wd__py_log_exception(const char *prefix, char *summary, size_t cap);
/* The module a pending exception concerns: an ImportError's name, else the module of the
 * innermost frame ("" if unknown). The exception stays pending. */
void wd__py_exc_module(char *buf, size_t cap);
/* The interpreter whose thread state is current (for its format_exception). */
wd_py_interp_t *wd__py_current_interp(void);
/* "Type: message" of an exception value (new C string in buf). */
void wd__py_exc_summary(PyObject *exc, char *buf, size_t cap);

/* input.c: wsgi.input and wsgi.errors. */
extern PyTypeObject wd__py_input_type;
extern PyTypeObject wd__py_errors_type;
int wd__py_input_ready(void);
PyObject *wd__py_input_new(const wd_req_t *req);     /* new reference */
void wd__py_input_detach(PyObject *input);           /* the request is over: reads give b"" */
PyObject *wd__py_errors_new(const char *request_id); /* new reference */
/* The current interpreter's sys.stdout and sys.stderr write their lines to the error log
 * (stdio.c). 0, or -1 with a Python exception set. */
int wd__py_stdio_to_log(void);
/* thread_dir.c: in the current interpreter, a thread the app starts (threading, _thread,
 * concurrent.futures) works for its whole life in the directory its starter worked in when it
 * started it, with a working directory of its own. 0, or -1 with a Python exception set. */
int wd__py_thread_dir_install(void);

/* environ.c */
int wd__py_environ_keys_init(void);
/* The constant part of an environ in the current interpreter (new reference). */
PyObject *wd__py_environ_template(const wd_py_interp_t *interp);
/* The app that serves req: the longest mount point that prefixes its path (whole segments), or
 * the group's own app; NULL when none does (the answer is 404). *ambiguous when the path read
 * another way (as sent, or normalised) names another app (the answer is 400). Pure C, no GIL
 * needed. */
const wd_py_mount_t *wd__py_route(const wd_req_t *req, int *ambiguous);
/* The environ of req for app (new reference; built in app's interpreter, which must be current),
 * or NULL with an exception set. SCRIPT_NAME and PATH_INFO are split at the mount point. *input
 * receives a new reference to its wsgi.input, so that the caller can detach it when the request
 * is over. */
PyObject *wd__py_environ_new(const wd_req_t *req, const wd_py_mount_t *app, PyObject **input);
/* The method and URI of a request (slices into it; p may be NULL when n is 0). */
void wd__py_request_target(const wd_req_t *req, wd_slice_t *method, wd_slice_t *uri);
/* "METHOD URI" of a request for log lines, truncated to fit. */
void wd__py_request_line(const wd_req_t *req, char *buf, size_t cap);

/* respond.c */
extern PyTypeObject wd__py_file_wrapper_type;
int wd__py_respond_init(void);

/* Serves one request, everything but the final wd_out_finish, which the caller (pool.c) makes
 * once the request's Python objects are gone, still holding the GIL: it never blocks. Returns the
 * response's keep_alive verdict. */
int wd__py_serve(wd_py_thread_t *thr, wd_req_t *req);
/* Raises wsgid.RequestTimeout in the thread that runs request seq, if one still does. GIL held;
 * ts[i] is the caller's thread state in interpreter i, made current for the call (the exception
 * is set through the interpreter the thread runs the request in). */
void wd__py_raise_timeout(PyThreadState **ts, uint64_t seq);

#endif
