/* Names shared between the files of python_glue/ only (the daemon sees glue.h). Everything here
 * is called with the GIL held unless said otherwise. */
#ifndef WD_PYTHON_GLUE_INT_H
#define WD_PYTHON_GLUE_INT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../daemon/common/config.h"
#include "../daemon/worker/handoff.h"

#include <stddef.h>

/* interp.c: the process-wide state, set by wd_py_init / wd_py_load_app. */
extern const wd_group_conf_t *wd__py_group;
extern PyObject *wd__py_app; /* the WSGI callable (strong reference, held until finalize) */

/* `mounts`: more apps chosen by the longest URL prefix (sorted longest first). */
typedef struct wd_py_mount {
    const char *prefix; /* "/blog", or "/" */
    size_t len;         /* 0 for "/" */
    PyObject *app;      /* strong */
} wd_py_mount_t;
extern wd_py_mount_t *wd__py_mounts;
extern size_t wd__py_n_mounts;

/* Takes the pending Python exception (clearing it) and writes its traceback to the error log,
 * each line prefixed with prefix. When summary is not NULL it receives "Type: message". */
void wd__py_log_exception(const char *prefix, char *summary, size_t cap);
/* "Type: message" of an exception value (new C string in buf). */
void wd__py_exc_summary(PyObject *exc, char *buf, size_t cap);

/* input.c: wsgi.input and wsgi.errors. */
extern PyTypeObject wd__py_input_type;
extern PyTypeObject wd__py_errors_type;
int wd__py_input_ready(void);
PyObject *wd__py_input_new(const wd_req_t *req);     /* new reference */
void wd__py_input_detach(PyObject *input);           /* the request is over: reads give b"" */
PyObject *wd__py_errors_new(const char *request_id); /* new reference */

/* environ.c */
int wd__py_environ_init(void);
/* The environ of req (new reference), or NULL with an exception set. *input receives a new
 * reference to its wsgi.input, so that the caller can detach it when the request is over; *app
 * the application that serves it (borrowed: the group's, or a mount's, with SCRIPT_NAME and
 * PATH_INFO split at the mount point). */
PyObject *wd__py_environ_new(const wd_req_t *req, PyObject **input, PyObject **app);
/* "METHOD URI" of a request for log lines, truncated to fit. */
void wd__py_request_line(const wd_req_t *req, char *buf, size_t cap);

/* respond.c */
extern PyTypeObject wd__py_file_wrapper_type;
int wd__py_respond_init(void);

/* What each pool thread owns: its place in the hand-off, a growable buffer for response heads. */
typedef struct wd_py_thread {
    pthread_t tid;
    wd_handoff_thread_t handoff;
    int index;
    unsigned long ident; /* PyThread_get_thread_ident() */
    uint64_t serving;    /* seq of the request it runs, 0 between requests (GIL held for both) */
    char *head;
    size_t head_cap;
} wd_py_thread_t;

/* Serves one request, everything but the final wd_out_finish, which the caller (pool.c) makes
 * once the request's Python objects are gone, still holding the GIL: it never blocks. Returns the
 * response's keep_alive verdict. */
int wd__py_serve(wd_py_thread_t *thr, wd_req_t *req);
/* Raises wsgid.RequestTimeout in the thread whose ident is given if it still runs request seq.
 * GIL held. */
void wd__py_raise_timeout(const wd_py_thread_t *threads, int n, unsigned long ident, uint64_t seq);

#endif
