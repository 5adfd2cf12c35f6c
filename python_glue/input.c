/* wsgi.input (the request body, already buffered by the loop in memory or in a temp file) and
 * wsgi.errors (lines to the error log). */
#include "glue_int.h"
#include "../daemon/common/log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define INPUT_CACHE 8192
/* Bodies read from the temp file in pieces at least this big are read with the GIL released. */
#define INPUT_NOGIL_MIN 65536

typedef struct wd_input {
    PyObject_HEAD
    const char *mem; /* body in memory, or NULL */
    int fd;          /* body in a temp file (not ours: never closed here), or -1 */
    uint64_t len;
    uint64_t pos;
    /* A read-ahead window over the file for readline(): cache holds cache_len bytes of the file
     * from cache_off. */
    char *cache;
    uint64_t cache_off;
    size_t cache_len;
} wd_input_t;

PyObject *wd__py_input_new(const wd_req_t *req)
{
    wd_input_t *in = PyObject_New(wd_input_t, &wd__py_input_type);

    if (in == NULL)
        return NULL;
    in->mem = req->body_fd < 0 ? req->body_mem : NULL;
    in->fd = req->body_fd;
    in->len = req->body_len;
    if (in->mem == NULL && in->fd < 0)
        in->len = 0;
    in->pos = 0;
    in->cache = NULL;
    in->cache_off = 0;
    in->cache_len = 0;
    return (PyObject *)in;
}

void wd__py_input_detach(PyObject *obj)
{
    wd_input_t *in = (wd_input_t *)obj;

    /* The app may keep the stream after the request: from now on it is empty. */
    in->mem = NULL;
    in->fd = -1;
    in->len = 0;
    in->pos = 0;
    in->cache_len = 0;
}

static void input_dealloc(wd_input_t *in)
{
    PyMem_Free(in->cache);
    PyObject_Free(in);
}

/* pread exactly n bytes at off into dst. Returns 0 or sets an OSError and returns -1. */
static int input_pread(int fd, char *dst, size_t n, uint64_t off)
{
    int err = 0;
    int nogil = n >= INPUT_NOGIL_MIN;
    PyThreadState *ts = nogil ? PyEval_SaveThread() : NULL;

    while (n > 0) {
        ssize_t r = pread(fd, dst, n, (off_t)off);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? errno : EIO;
            break;
        }
        dst += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    if (nogil)
        wd__py_gil_restore(ts);
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* Points *p at the contiguous bytes available at the current position (at most want) and returns
 * how many there are; 0 at EOF, -1 on error. */
static Py_ssize_t input_peek(wd_input_t *in, const char **p)
{
    uint64_t left = in->len - in->pos;

    if (left == 0)
        return 0;
    if (in->mem != NULL) {
        *p = in->mem + in->pos;
        return (Py_ssize_t)left;
    }
    if (in->pos < in->cache_off || in->pos >= in->cache_off + in->cache_len) {
        size_t n = left < INPUT_CACHE ? (size_t)left : INPUT_CACHE;

        if (in->cache == NULL) {
            in->cache = PyMem_Malloc(INPUT_CACHE);
            if (in->cache == NULL) {
                PyErr_NoMemory();
                return -1;
            }
        }
        in->cache_len = 0;
        if (input_pread(in->fd, in->cache, n, in->pos) < 0)
            return -1;
        in->cache_off = in->pos;
        in->cache_len = n;
    }
    *p = in->cache + (in->pos - in->cache_off);
    return (Py_ssize_t)(in->cache_off + in->cache_len - in->pos);
}

static int size_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *size)
{
    *size = -1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "expected at most one argument");
        return -1;
    }
    if (nargs == 1 && args[0] != Py_None) {
        *size = PyLong_AsSsize_t(args[0]);
        if (*size == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

static PyObject *input_read(wd_input_t *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size, got = 0;
    uint64_t left;
    size_t n;
    PyObject *b;
    char *dst;

    if (size_arg(args, nargs, &size) < 0)
        return NULL;
    left = in->len - in->pos;
    n = size < 0 || (uint64_t)size > left ? (size_t)left : (size_t)size;
    if (in->mem != NULL) {
        b = PyBytes_FromStringAndSize(in->mem + in->pos, (Py_ssize_t)n);
        if (b != NULL)
            in->pos += n;
        return b;
    }
    b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (b == NULL || n == 0)
        return b;
    dst = PyBytes_AS_STRING(b);
    /* What the readline cache already holds, then the rest straight from the file. */
    if (in->pos >= in->cache_off && in->pos < in->cache_off + in->cache_len) {
        got = (Py_ssize_t)(in->cache_off + in->cache_len - in->pos);
        if ((size_t)got > n)
            got = (Py_ssize_t)n;
        memcpy(dst, in->cache + (in->pos - in->cache_off), (size_t)got);
    }
    if ((size_t)got < n && input_pread(in->fd, dst + got, n - (size_t)got, in->pos + got) < 0) {
        Py_DECREF(b);
        return NULL;
    }
    in->pos += n;
    return b;
}

/* One line, up to and including '\n', at most size bytes (size < 0: no limit). A line longer
 * than the window grows its bytes object to twice its size each time it is full, and is cut to
 * its length at the end: grown by each window's bytes, a 60 MB line in the body's file cost 7,300
 * reallocations under the GIL (1.8-9 s, against 0.3 s for read()). */
static PyObject *input_line(wd_input_t *in, Py_ssize_t size)
{
    const char *p = NULL;
    Py_ssize_t avail = input_peek(in, &p), used = 0, cap = 0;
    PyObject *acc = NULL;

    if (avail < 0)
        return NULL;
    for (;;) {
        Py_ssize_t lim = size >= 0 && avail > size ? size : avail;
        const char *nl = memchr(p, '\n', (size_t)lim);
        Py_ssize_t take = nl ? nl - p + 1 : lim;
        int done = nl != NULL || take == size || in->pos + (uint64_t)take == in->len;

        if (acc == NULL && done) {
            acc = PyBytes_FromStringAndSize(p, take);
            if (acc == NULL)
                return NULL;
            used = cap = take;
        } else {
            if (used + take > cap) {
                Py_ssize_t want = used + take;

                cap = cap > 0 && cap <= PY_SSIZE_T_MAX / 2 ? 2 * cap : want;
                if (cap < want)
                    cap = want;
                if (acc == NULL)
                    acc = PyBytes_FromStringAndSize(NULL, cap);
                else if (_PyBytes_Resize(&acc, cap) < 0)
                    return NULL;
                if (acc == NULL)
                    return NULL;
            }
            memcpy(PyBytes_AS_STRING(acc) + used, p, (size_t)take);
            used += take;
        }
        in->pos += (uint64_t)take;
        if (size >= 0)
            size -= take;
        if (!done) {
            avail = input_peek(in, &p);
            if (avail < 0) {
                Py_CLEAR(acc);
                return NULL;
            }
            done = avail == 0;
        }
        if (done) {
            if (used < cap && _PyBytes_Resize(&acc, used) < 0)
                return NULL;
            return acc;
        }
    }
}

static PyObject *input_readline(wd_input_t *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;

    if (size_arg(args, nargs, &size) < 0)
        return NULL;
    if (in->pos >= in->len || size == 0)
        return PyBytes_FromStringAndSize(NULL, 0);
    return input_line(in, size);
}

static PyObject *input_readlines(wd_input_t *in, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t hint, total = 0;
    PyObject *list, *line;

    if (size_arg(args, nargs, &hint) < 0)
        return NULL;
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    while (in->pos < in->len && (hint <= 0 || total < hint)) {
        line = input_line(in, -1);
        if (line == NULL || PyList_Append(list, line) < 0) {
            Py_XDECREF(line);
            Py_DECREF(list);
            return NULL;
        }
        total += PyBytes_GET_SIZE(line);
        Py_DECREF(line);
    }
    return list;
}

static PyObject *input_iternext(wd_input_t *in)
{
    if (in->pos >= in->len)
        return NULL; /* StopIteration */
    return input_line(in, -1);
}

static PyObject *input_close(wd_input_t *in, PyObject *unused)
{
    Py_RETURN_NONE;
}

static PyMethodDef input_methods[] = {
    {"read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL, NULL},
    {"readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL, NULL},
    {"readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL, NULL},
    {"close", (PyCFunction)input_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

PyTypeObject wd__py_input_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wsgid.Input",
    .tp_basicsize = sizeof(wd_input_t),
    .tp_dealloc = (destructor)input_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.input: the request body",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)input_iternext,
    .tp_methods = input_methods,
};

/* wsgi.errors: text is cut into lines, each logged as an error with the request id. */
typedef struct wd_errors {
    PyObject_HEAD
    char id[32];
    char *pending; /* a line not yet ended by '\n' */
    size_t len;
    size_t cap;
} wd_errors_t;

PyObject *wd__py_errors_new(const char *request_id)
{
    wd_errors_t *e = PyObject_New(wd_errors_t, &wd__py_errors_type);
    size_t n;

    if (e == NULL)
        return NULL;
    n = strnlen(request_id, sizeof e->id - 1); /* one per request: no printf */
    memcpy(e->id, request_id, n);
    e->id[n] = '\0';
    e->pending = NULL;
    e->len = 0;
    e->cap = 0;
    return (PyObject *)e;
}

static void errors_emit(wd_errors_t *e, const char *p, size_t n)
{
    if (e->len > 0) {
        wd_log_error("[req %s] %.*s%.*s", e->id, (int)e->len, e->pending, (int)n, p);
        e->len = 0;
    } else {
        wd_log_error("[req %s] %.*s", e->id, (int)n, p);
    }
}

static int errors_write_text(wd_errors_t *e, const char *p, size_t n)
{
    const char *nl;

    while ((nl = memchr(p, '\n', n)) != NULL) {
        errors_emit(e, p, (size_t)(nl - p));
        n -= (size_t)(nl - p) + 1;
        p = nl + 1;
    }
    if (n > 0) {
        if (e->len + n > e->cap) {
            size_t cap = (e->len + n) * 2;
            char *np = PyMem_Realloc(e->pending, cap);

            if (np == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            e->pending = np;
            e->cap = cap;
        }
        memcpy(e->pending + e->len, p, n);
        e->len += n;
    }
    return 0;
}

static int errors_write_obj(wd_errors_t *e, PyObject *s)
{
    const char *p;
    Py_ssize_t n;

    if (PyUnicode_Check(s)) {
        p = PyUnicode_AsUTF8AndSize(s, &n);
        if (p == NULL)
            return -1;
    } else if (PyBytes_Check(s)) {
        p = PyBytes_AS_STRING(s);
        n = PyBytes_GET_SIZE(s);
    } else {
        PyErr_Format(PyExc_TypeError, "write() argument must be str, not %.100s",
                     Py_TYPE(s)->tp_name);
        return -1;
    }
    return errors_write_text(e, p, (size_t)n);
}

static PyObject *errors_write(wd_errors_t *e, PyObject *s)
{
    if (errors_write_obj(e, s) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *errors_writelines(wd_errors_t *e, PyObject *seq)
{
    PyObject *it = PyObject_GetIter(seq), *item;

    if (it == NULL)
        return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = errors_write_obj(e, item);

        Py_DECREF(item);
        if (rc < 0)
            break;
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *errors_flush(wd_errors_t *e, PyObject *unused)
{
    if (e->len > 0)
        errors_emit(e, "", 0);
    Py_RETURN_NONE;
}

static void errors_dealloc(wd_errors_t *e)
{
    if (e->len > 0)
        errors_emit(e, "", 0);
    PyMem_Free(e->pending);
    PyObject_Free(e);
}

static PyMethodDef errors_methods[] = {
    {"write", (PyCFunction)errors_write, METH_O, NULL},
    {"writelines", (PyCFunction)errors_writelines, METH_O, NULL},
    {"flush", (PyCFunction)errors_flush, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

PyTypeObject wd__py_errors_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wsgid.Errors",
    .tp_basicsize = sizeof(wd_errors_t),
    .tp_dealloc = (destructor)errors_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.errors: lines go to the error log",
    .tp_methods = errors_methods,
};

int wd__py_input_ready(void)
{
    if (PyType_Ready(&wd__py_input_type) < 0 || PyType_Ready(&wd__py_errors_type) < 0)
        return -1;
    return 0;
}
