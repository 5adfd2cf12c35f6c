/* The working directory of a thread an app starts, in a group where a mount has a chdir of its
 * own. The pool threads there each have a working directory of their own (unshare(CLONE_FS),
 * pool.c) and move to the mount's of each request they serve (respond.c). A thread the app
 * starts is made with CLONE_FS: it shared the fs struct, so the working directory, of the thread
 * that started it, which then moved on: with threads: 1, /a's thread saw /c's chdir while the pool
 * thread served /c, and wrote its relative paths there; a thread started at import shared the
 * main thread's, which moves to each mount's chdir as it is imported (helper-63).
 *
 * Every Python thread of CPython 3.11 starts through _thread.start_new_thread (threading.Thread
 * and concurrent.futures through threading._start_new_thread, the same function), looked up in
 * the interpreter's own _thread module (multi-phase init: one per interpreter). It is replaced,
 * in each interpreter, by one that opens the caller's working directory (the mount's, during
 * its requests or its import; an app's own thread's, for the threads that one starts) and hands
 * the new thread a callable that unshares its fs struct and moves there before it runs the
 * function. Two mounts in one interpreter with different chdirs each get theirs: the directory is
 * the caller's at that moment, not the interpreter's. A thread started in C by an extension
 * (PyThread_start_new_thread) does not pass here and shares its starter's, as before. Only a
 * group with a mount's chdir pays: an open and a close in the starter, an unshare and an fchdir
 * in the new thread, microseconds beside the thread's own start. */
#include "glue_int.h"
#include "../daemon/common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

/* What the new thread runs: fn(*args, **kwargs) once its working directory is dir_fd's. */
typedef struct {
    PyObject_HEAD
    PyObject *fn; /* strong */
    int dir_fd;   /* O_PATH, owned; -1 once taken (or when the caller's could not be opened) */
} boot_t;

static void boot_dealloc(PyObject *self)
{
    boot_t *b = (boot_t *)self;

    if (b->dir_fd >= 0) /* the thread did not start */
        close(b->dir_fd);
    Py_XDECREF(b->fn);
    PyObject_Free(self);
}

/* Called once, in the new thread, GIL held: two system calls, no wait. Without unshare (refused,
 * as it would be for the pool threads, which then log it) the thread keeps sharing its starter's
 * directory: an fchdir then would move the starter too. An app may start threads without end:
 * the line is rate-limited. */
static PyObject *boot_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    boot_t *b = (boot_t *)self;

    if (b->dir_fd >= 0) {
        if (unshare(CLONE_FS) == 0 && fchdir(b->dir_fd) < 0)
            wd_log_peer(WD_LOG_WARN,
                        "group %s: a thread an app started cannot move to the directory it was "
                        "started in (fchdir: %s): it works where its starter works now",
                        wd__py.group->name, strerror(errno));
        close(b->dir_fd);
        b->dir_fd = -1;
    }
    return PyObject_Call(b->fn, args, kwargs);
}

/* "Exception ignored in thread started by: ..." names the app's function, not this. */
static PyObject *boot_repr(PyObject *self)
{
    return PyObject_Repr(((boot_t *)self)->fn);
}

static PyTypeObject boot_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wsgid._thread_boot",
    .tp_basicsize = sizeof(boot_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = boot_dealloc,
    .tp_call = boot_call,
    .tp_repr = boot_repr,
};

/* _thread.start_new_thread(function, args[, kwargs]) with function wrapped in a boot_t; self is
 * the interpreter's original (strong, held by this function object). Arguments that the original
 * refuses are passed on as they are, for its own error. Returns a new reference. */
static PyObject *start_new_thread(PyObject *self, PyObject *args)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *wrapped, *r; /* new */
    boot_t *b;

    if (n < 2 || !PyCallable_Check(PyTuple_GET_ITEM(args, 0)))
        return PyObject_Call(self, args, NULL);
    wrapped = PyTuple_New(n);
    b = wrapped != NULL ? PyObject_New(boot_t, &boot_type) : NULL;
    if (b == NULL) {
        Py_XDECREF(wrapped);
        return NULL;
    }
    b->fn = Py_NewRef(PyTuple_GET_ITEM(args, 0));
    b->dir_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    PyTuple_SET_ITEM(wrapped, 0, (PyObject *)b); /* steals b */
    for (Py_ssize_t i = 1; i < n; i++)
        PyTuple_SET_ITEM(wrapped, i, Py_NewRef(PyTuple_GET_ITEM(args, i)));
    r = PyObject_Call(self, wrapped, NULL);
    Py_DECREF(wrapped);
    return r;
}

static PyMethodDef start_def = {
    "start_new_thread", start_new_thread, METH_VARARGS,
    "start_new_thread(function, args[, kwargs]): _thread's, the new thread working in the "
    "directory of its starter at the start (wsgid: a mount has a chdir of its own)"};

int wd__py_thread_dir_install(void)
{
    PyObject *thread = NULL, *orig = NULL, *fn = NULL; /* new */
    PyObject *threading;                               /* borrowed */
    int rc = -1;

    if (PyType_Ready(&boot_type) < 0) /* once: the type is static, shared by the interpreters */
        return -1;
    thread = PyImport_ImportModule("_thread");
    orig = thread != NULL ? PyObject_GetAttrString(thread, "start_new_thread") : NULL;
    if (orig == NULL)
        goto out;
    if (PyCFunction_Check(orig) && PyCFunction_GET_FUNCTION(orig) == start_new_thread) {
        rc = 0; /* installed already: the interpreter was set up twice */
        goto out;
    }
    fn = PyCFunction_NewEx(&start_def, orig, NULL);
    if (fn == NULL || PyObject_SetAttrString(thread, "start_new_thread", fn) < 0 ||
        PyObject_SetAttrString(thread, "start_new", fn) < 0)
        goto out;
    /* threading took its own reference to the function when it was imported. */
    threading = PyDict_GetItemString(PyImport_GetModuleDict(), "threading");
    if (threading != NULL && PyObject_SetAttrString(threading, "_start_new_thread", fn) < 0)
        goto out;
    rc = 0;
out:
    Py_XDECREF(fn);
    Py_XDECREF(orig);
    Py_XDECREF(thread);
    return rc;
}
