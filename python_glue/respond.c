/* Serving one request: calling the app, start_response / write, wsgi.file_wrapper, framing the
 * response into the connection's out buffer, and turning application mistakes into a 500 and one
 * log line (design §7, §8).
 *
 * Bytes are handed to the out buffer with the GIL released; the bytes objects stay referenced
 * meanwhile, so their storage cannot go away. */
#include "glue_int.h"
#include "../daemon/common/log.h"
#include "../protocol/response.h"

#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PIECES 32 /* body pieces handed over in one writev */

/* Ownership: every PyObject * below is borrowed unless its comment says "new" (a reference the
 * function owns and releases) or "strong" (held by a struct or a global until it is freed). */

static PyObject *s_close; /* interned "close" (strong, for the process's life) */
/* Raised into a thread whose request ran past request-timeout. A BaseException, so that an app's
 * `except Exception:` does not swallow it. */
static PyObject *exc_request_timeout; /* strong, for the process's life */

/* Looks up an attribute that may be missing without raising: 1 found (*out: new), 0 missing
 * (*out NULL), -1 error. */
static int get_optional_attr(PyObject *o, PyObject *name, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(o, name, out);
#else
    return _PyObject_LookupAttr(o, name, out);
#endif
}

/* ---- wsgi.file_wrapper ---------------------------------------------------------------------- */

typedef struct wd_file_wrapper {
    PyObject_HEAD
    PyObject *filelike; /* strong */
    Py_ssize_t blksize;
} wd_file_wrapper_t;

static int fw_init(wd_file_wrapper_t *fw, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"filelike", "blksize", NULL};
    PyObject *filelike;
    Py_ssize_t blksize = 8192;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n:file_wrapper", kwlist, &filelike, &blksize))
        return -1;
    if (blksize <= 0)
        blksize = 8192;
    Py_INCREF(filelike);
    Py_XSETREF(fw->filelike, filelike);
    fw->blksize = blksize;
    return 0;
}

/* Returns a new reference (the next block), or NULL at the end or on an error. */
static PyObject *fw_iternext(wd_file_wrapper_t *fw)
{
    PyObject *data; /* new */

    if (fw->filelike == NULL)
        return NULL;
    data = PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);
    if (data == NULL)
        return NULL;
    if (PyObject_Length(data) == 0) {
        PyErr_Clear();
        Py_DECREF(data);
        return NULL; /* StopIteration */
    }
    return data;
}

static PyObject *fw_close(wd_file_wrapper_t *fw, PyObject *unused)
{
    PyObject *close; /* new: the method, then what it returned (the return value) */

    if (fw->filelike == NULL)
        Py_RETURN_NONE;
    if (get_optional_attr(fw->filelike, s_close, &close) < 0)
        return NULL;
    if (close == NULL)
        Py_RETURN_NONE;
    Py_SETREF(close, PyObject_CallNoArgs(close));
    return close;
}

static int fw_traverse(wd_file_wrapper_t *fw, visitproc visit, void *arg)
{
    Py_VISIT(fw->filelike);
    return 0;
}

static int fw_clear(wd_file_wrapper_t *fw)
{
    Py_CLEAR(fw->filelike);
    return 0;
}

static void fw_dealloc(wd_file_wrapper_t *fw)
{
    PyObject_GC_UnTrack(fw);
    Py_CLEAR(fw->filelike);
    Py_TYPE(fw)->tp_free((PyObject *)fw);
}

static PyMethodDef fw_methods[] = {
    {"close", (PyCFunction)fw_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef fw_members[] = {
    {"filelike", T_OBJECT, offsetof(wd_file_wrapper_t, filelike), READONLY, NULL},
    {"blksize", T_PYSSIZET, offsetof(wd_file_wrapper_t, blksize), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject wd__py_file_wrapper_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wsgid.FileWrapper",
    .tp_basicsize = sizeof(wd_file_wrapper_t),
    .tp_dealloc = (destructor)fw_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "wsgi.file_wrapper(filelike, blksize=8192)",
    .tp_traverse = (traverseproc)fw_traverse,
    .tp_clear = (inquiry)fw_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)fw_iternext,
    .tp_methods = fw_methods,
    .tp_members = fw_members,
    .tp_init = (initproc)fw_init,
    .tp_new = PyType_GenericNew,
};

/* ---- the response: start_response and write() ----------------------------------------------- */

typedef struct wd_resp {
    PyObject_HEAD
    wd_req_t *req;       /* NULL once the request is over */
    wd_py_thread_t *thr; /* thr->head holds the head being built */
    int status;          /* 0 until start_response succeeded */
    size_t head_len;     /* status line + the app's headers in thr->head */
    size_t head_total;   /* with our headers and the blank line, once framed */
    int head_sent;
    int has_cl; /* Content-Length known (the app's, or ours) */
    uint64_t cl;
    uint64_t body_sent; /* body bytes handed over (before chunk framing) */
    int no_body;        /* HEAD, 1xx, 204, 304 */
    int chunked;
    int keep_alive; /* the verdict once the head is framed */
    int failed;     /* the response cannot be completed: close the connection */
    int client_gone;
    char mistake[256]; /* what the application did wrong, for the log line */
} wd_resp_t;

static PyTypeObject resp_type;

static void head_reserve(wd_py_thread_t *thr, size_t need)
{
    if (need <= thr->head_cap)
        return;
    thr->head_cap = need < 2048 ? 2048 : need * 2;
    thr->head = realloc(thr->head, thr->head_cap);
    if (thr->head == NULL)
        abort();
}

static void head_append(wd_resp_t *r, size_t *len, const char *p, size_t n)
{
    head_reserve(r->thr, *len + n);
    memcpy(r->thr->head + *len, p, n);
    *len += n;
}

static int is_http(const wd_resp_t *r)
{
    return r->req->kind == WD_REQ_HTTP;
}

static const char *req_line(const wd_resp_t *r, char *buf, size_t cap)
{
    wd__py_request_line(r->req, buf, cap);
    return buf;
}

/* Records an application mistake and raises exc with the same text. Returns -1. */
static int mistake(wd_resp_t *r, PyObject *exc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int mistake(wd_resp_t *r, PyObject *exc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->mistake, sizeof r->mistake, fmt, ap);
    va_end(ap);
    PyErr_SetString(exc, r->mistake);
    return -1;
}

/* The latin-1 bytes of a str, or NULL when it has characters above U+00FF. */
static const char *latin1(PyObject *s, size_t *n)
{
    if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND)
        return NULL;
    *n = (size_t)PyUnicode_GET_LENGTH(s);
    return (const char *)PyUnicode_1BYTE_DATA(s);
}

/* A str for a log line (never NULL). */
static const char *utf8(PyObject *s)
{
    const char *p = PyUnicode_AsUTF8(s);

    if (p == NULL)
        PyErr_Clear();
    return p ? p : "?";
}

static int parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

/* item (borrowed): one (name, value) of the app's headers; name and value are borrowed from it. */
static int add_header(wd_resp_t *r, PyObject *item, size_t *len)
{
    PyObject *name, *value;
    const char *np, *vp;
    size_t nn, vn;

    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2)
        return mistake(r, PyExc_TypeError, "a header is a %s, not a (name, value) tuple",
                       Py_TYPE(item)->tp_name);
    name = PyTuple_GET_ITEM(item, 0);
    value = PyTuple_GET_ITEM(item, 1);
    if (!PyUnicode_Check(name))
        return mistake(r, PyExc_TypeError, "a header name is a %s; WSGI needs str",
                       Py_TYPE(name)->tp_name);
    np = latin1(name, &nn);
    if (np == NULL || !wd_response_header_name_valid(np, nn))
        return mistake(r, PyExc_ValueError, "header name '%.100s' is not a valid token",
                       utf8(name));
    if (!PyUnicode_Check(value))
        return mistake(r, PyExc_TypeError, "header '%.*s' has a %s value; WSGI needs str", (int)nn,
                       np, Py_TYPE(value)->tp_name);
    vp = latin1(value, &vn);
    if (vp == NULL)
        return mistake(r, PyExc_ValueError, "header '%.*s' has a value that is not latin-1",
                       (int)nn, np);
    if (!wd_response_header_value_valid(vp, vn))
        return mistake(r, PyExc_ValueError, "header '%.*s' has a %s in its value", (int)nn, np,
                       memchr(vp, '\r', vn) || memchr(vp, '\n', vn) ? "CR or LF"
                                                                    : "control character");
    if (wd_response_header_is_hop_by_hop(np, nn))
        return mistake(r, PyExc_ValueError,
                       "hop-by-hop header '%.*s' is not allowed from an application", (int)nn, np);
    if (wd_slice_ieq(np, nn, "content-length")) {
        if (parse_u64(vp, vn, &r->cl) < 0)
            return mistake(r, PyExc_ValueError,
                           "header 'Content-Length' value '%.*s' is not a "
                           "number",
                           (int)(vn > 40 ? 40 : vn), vp);
        r->has_cl = 1;
    }
    head_reserve(r->thr, *len + nn + vn + 4);
    memcpy(r->thr->head + *len, np, nn);
    memcpy(r->thr->head + *len + nn, ": ", 2);
    memcpy(r->thr->head + *len + nn + 2, vp, vn);
    memcpy(r->thr->head + *len + nn + 2 + vn, "\r\n", 2);
    *len += nn + vn + 4;
    return 0;
}

/* Validates status and headers (borrowed) and formats them into thr->head. */
static int set_head(wd_resp_t *r, PyObject *status, PyObject *headers)
{
    const char *sp;
    size_t sn, len = 0;
    int code;
    char proto[16] = "HTTP/1.1";

    if (!PyUnicode_Check(status))
        return mistake(r, PyExc_TypeError, "the status is a %s; WSGI needs str",
                       Py_TYPE(status)->tp_name);
    sp = latin1(status, &sn);
    code = sp ? wd_response_parse_status(sp, sn) : -1;
    if (code < 0)
        return mistake(r, PyExc_ValueError, "status '%.100s' is not 'NNN reason'", utf8(status));
    if (!PyList_Check(headers) && !PyTuple_Check(headers))
        return mistake(r, PyExc_TypeError, "the headers are a %s; WSGI needs a list",
                       Py_TYPE(headers)->tp_name);
    if (is_http(r)) {
        snprintf(proto, sizeof proto, "HTTP/1.%u", r->req->http->http_minor ? 1 : 0);
    } else {
        wd_slice_t p = r->req->uwsgi->protocol;

        if (p.n == 8 && memcmp(p.p, "HTTP/1.", 7) == 0)
            memcpy(proto, p.p, 8);
    }
    r->has_cl = 0;
    head_append(r, &len, proto, 8);
    head_append(r, &len, " ", 1);
    head_append(r, &len, sp, sn);
    head_append(r, &len, "\r\n", 2);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(headers); i++)
        if (add_header(r, PySequence_Fast_ITEMS(headers)[i], &len) < 0)
            return -1;
    r->head_len = len;
    r->status = code;
    return 0;
}

static PyObject *resp_write_py(PyObject *self, PyObject *data);
static PyMethodDef write_def = {"write", resp_write_py, METH_O, "write(data): the legacy write"};

/* start_response(status, headers, exc_info=None) */
static PyObject *resp_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"status", "headers", "exc_info", NULL};
    wd_resp_t *r = (wd_resp_t *)self;
    PyObject *status, *headers, *exc_info = Py_None; /* borrowed from args */

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:start_response", kwlist, &status, &headers,
                                     &exc_info))
        return NULL;
    if (r->req == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "start_response called after the request ended");
        return NULL;
    }
    if (exc_info != Py_None) {
        if (r->head_sent) {
            /* Too late to replace the head: re-raise the app's own error (PEP 3333). */
            if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
                PyErr_SetString(PyExc_TypeError, "exc_info must be a 3-tuple");
                return NULL;
            }
            for (int i = 0; i < 3; i++)
                Py_INCREF(PyTuple_GET_ITEM(exc_info, i));
            PyErr_Restore(PyTuple_GET_ITEM(exc_info, 0), PyTuple_GET_ITEM(exc_info, 1),
                          PyTuple_GET_ITEM(exc_info, 2));
            return NULL;
        }
        r->status = 0;
    } else if (r->status != 0) {
        mistake(r, PyExc_RuntimeError, "start_response called twice without exc_info");
        return NULL;
    }
    if (set_head(r, status, headers) < 0) {
        r->status = 0;
        return NULL;
    }
    r->mistake[0] = '\0';
    return PyCFunction_New(&write_def, self);
}

/* ---- framing -------------------------------------------------------------------------------- */

/* What an out-buffer call's result means for the response: -EPIPE, the client is gone; another
 * error, the response cannot be completed (logged once, here). */
static void out_result(wd_resp_t *r, int rc, const char *what)
{
    char line[256];

    if (rc == -EPIPE) {
        r->client_gone = 1;
    } else if (rc < 0) {
        wd_log_error("[req %s] %s: %s: %s", r->req->id, req_line(r, line, sizeof line), what,
                     strerror(-rc));
        r->failed = 1;
    }
}

/* Hands iov to the out buffer: into memory with the GIL kept when it fits, otherwise (a spill
 * to the temp file, or waiting for the loop to drain) with the GIL released. */
static int push(wd_resp_t *r, struct iovec *iov, int n)
{
    int rc = wd_out_try_writev(r->req->out, iov, n);

    if (rc != -EAGAIN) {
        out_result(r, rc, "cannot buffer the response");
        return rc;
    }
    Py_BEGIN_ALLOW_THREADS
        rc = n == 1 ? wd_out_write(r->req->out, iov[0].iov_base, iov[0].iov_len)
                    : wd_out_writev(r->req->out, iov, n);
    Py_END_ALLOW_THREADS
    out_result(r, rc, "cannot buffer the response");
    return rc;
}

/* Completes the head in thr->head: our framing headers and the blank line. known is the body
 * length when it is known before anything is sent, -1 otherwise. */
static void frame_head(wd_resp_t *r, int64_t known)
{
    int code = r->status;
    size_t len = r->head_len;
    char buf[64];
    wd_framing_t f;
    wd_framing_in_t in = {
        .status = code,
        .head_request =
            is_http(r) ? r->req->http->is_head
                       : wd_slice_ieq(r->req->uwsgi->method.p, r->req->uwsgi->method.n, "head"),
        .has_cl = r->has_cl,
        .known = known,
        .http = is_http(r),
        .http_minor = is_http(r) ? (int)r->req->http->http_minor : 1,
        .keep_alive = is_http(r) && r->req->http->keep_alive,
        .failed = r->failed,
    };

    wd_response_framing(&in, &f);
    r->no_body = f.no_body;
    if (f.add_cl) {
        r->has_cl = 1;
        r->cl = (uint64_t)known;
        head_append(
            r, &len, buf,
            (size_t)snprintf(buf, sizeof buf, "Content-Length: %lld\r\n", (long long)known));
    }
    if (f.chunked) {
        r->chunked = 1;
        head_append(r, &len, "Transfer-Encoding: chunked\r\n", 28);
    }
    r->keep_alive = f.keep_alive;
    if (f.connection != NULL)
        head_append(r, &len, f.connection, strlen(f.connection));
    head_append(r, &len, "\r\n", 2);
    r->head_total = len;
    r->req->status = code;
    r->req->head_len = len;
}

/* Sends the head if it is not sent yet, then the pieces as body bytes (cut at Content-Length,
 * framed as one chunk when chunked). The pieces may be empty. */
static int send_body(wd_resp_t *r, const wd_slice_t *pieces, int n)
{
    struct iovec iov[MAX_PIECES + 3];
    char size_line[24];
    uint64_t total = 0;
    int i = 0, rc, sz = -1;

    if (r->client_gone || r->failed)
        return -EPIPE;
    if (!r->head_sent) {
        if (r->head_total == 0)
            frame_head(r, -1);
        iov[i++] = (struct iovec){r->thr->head, r->head_total};
    }
    if (!r->no_body) {
        uint64_t room = r->has_cl ? r->cl - r->body_sent : UINT64_MAX;

        if (r->chunked)
            sz = i++;
        for (int k = 0; k < n && room > 0; k++) {
            size_t take = pieces[k].n < room ? pieces[k].n : (size_t)room;

            if (take < pieces[k].n && !r->failed) {
                char line[256];

                wd_log_error("[req %s] %s: the application sent more than its Content-Length "
                             "%llu; the response was cut there",
                             r->req->id, req_line(r, line, sizeof line), (unsigned long long)r->cl);
                r->failed = 1;
            }
            if (take == 0)
                continue;
            iov[i++] = (struct iovec){(void *)pieces[k].p, take};
            total += take;
            room -= take;
        }
        if (sz >= 0 && total == 0) {
            i--; /* an empty chunk would end the body */
        } else if (sz >= 0) {
            iov[sz] =
                (struct iovec){size_line, (size_t)snprintf(size_line, sizeof size_line, "%llx\r\n",
                                                           (unsigned long long)total)};
            iov[i++] = (struct iovec){(void *)"\r\n", 2};
        }
    }
    if (i == 0)
        return 0;
    r->head_sent = 1;
    r->body_sent += total;
    rc = push(r, iov, i);
    return rc;
}

static PyObject *resp_write_py(PyObject *self, PyObject *data)
{
    wd_resp_t *r = (wd_resp_t *)self;
    wd_slice_t piece;

    if (r->req == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "write() called after the request ended");
        return NULL;
    }
    if (r->status == 0) {
        mistake(r, PyExc_RuntimeError, "write() called before start_response");
        return NULL;
    }
    if (!PyBytes_Check(data)) {
        mistake(r, PyExc_TypeError, "write() got a %s; WSGI needs bytes", Py_TYPE(data)->tp_name);
        return NULL;
    }
    piece.p = PyBytes_AS_STRING(data);
    piece.n = (size_t)PyBytes_GET_SIZE(data);
    if (piece.n == 0 && r->head_sent)
        Py_RETURN_NONE;
    if (send_body(r, &piece, 1) < 0) {
        PyErr_SetString(PyExc_OSError,
                        r->client_gone ? "client connection closed" : "cannot send the response");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyTypeObject resp_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wsgid.StartResponse",
    .tp_basicsize = sizeof(wd_resp_t),
    .tp_dealloc = (destructor)PyObject_Free,
    .tp_call = resp_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "start_response(status, headers, exc_info=None)",
};

/* ---- iterating the result ------------------------------------------------------------------- */

/* Gives the file of a file_wrapper to the loop (sendfile). Returns 1 when done, 0 when the
 * wrapper is not over a regular file (iterate it instead), -1 with an exception set. */
static int send_file(wd_resp_t *r, wd_file_wrapper_t *fw)
{
    PyObject *o; /* new: what fileno() and tell() return, one at a time */
    struct stat st;
    long fd;
    int64_t off;
    uint64_t len;
    int dupfd, rc;

    o = PyObject_CallMethod(fw->filelike, "fileno", NULL);
    fd = o ? PyLong_AsLong(o) : -1;
    Py_XDECREF(o);
    if (fd < 0 || fstat((int)fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        PyErr_Clear();
        return 0;
    }
    o = PyObject_CallMethod(fw->filelike, "tell", NULL);
    off = o ? PyLong_AsLongLong(o) : -1;
    Py_XDECREF(o);
    if (off < 0) {
        PyErr_Clear();
        off = lseek((int)fd, 0, SEEK_CUR);
        if (off < 0)
            off = 0;
    }
    len = (uint64_t)off < (uint64_t)st.st_size ? (uint64_t)(st.st_size - off) : 0;
    if (r->has_cl && r->cl < len)
        len = r->cl;
    dupfd = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    frame_head(r, (int64_t)len);
    if (send_body(r, NULL, 0) < 0 || r->no_body || len == 0) {
        close(dupfd);
        return 1;
    }
    r->body_sent += len;
    Py_BEGIN_ALLOW_THREADS
        rc = wd_out_file(r->req->out, dupfd, (uint64_t)off, len);
    Py_END_ALLOW_THREADS
    out_result(r, rc, "cannot queue the file");
    return 1;
}

static int not_bytes(wd_resp_t *r, PyObject *item)
{
    return mistake(r, PyExc_TypeError, "the application returned a %s chunk; WSGI needs bytes",
                   Py_TYPE(item)->tp_name);
}

/* A list or tuple: every length is known before anything is sent. */
/* seq is a tuple (borrowed): its items stay alive while the GIL is let go in send_body. */
static int send_sequence(wd_resp_t *r, PyObject *seq)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    wd_slice_t pieces[MAX_PIECES];
    uint64_t total = 0;

    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i]))
            return not_bytes(r, items[i]);
        total += (uint64_t)PyBytes_GET_SIZE(items[i]);
    }
    if (r->status == 0) {
        if (r->mistake[0] == '\0')
            mistake(r, PyExc_RuntimeError, "the application did not call start_response");
        return -1;
    }
    if (!r->head_sent)
        frame_head(r, (int64_t)total);
    for (Py_ssize_t i = 0; i < n;) {
        int k = 0;

        while (i < n && k < MAX_PIECES) {
            pieces[k].p = PyBytes_AS_STRING(items[i]);
            pieces[k++].n = (size_t)PyBytes_GET_SIZE(items[i++]);
        }
        if (send_body(r, pieces, k) < 0 || (r->no_body && r->head_sent))
            break;
    }
    return 0;
}

static int send_iterable(wd_resp_t *r, PyObject *result)
{
    PyObject *it = PyObject_GetIter(result), *item; /* both new, released here */
    int rc = 0;

    if (it == NULL)
        return -1;
    while ((item = PyIter_Next(it)) != NULL) {
        wd_slice_t piece;

        if (!PyBytes_Check(item)) {
            rc = not_bytes(r, item);
        } else if (PyBytes_GET_SIZE(item) > 0) {
            if (r->status == 0) {
                if (r->mistake[0] == '\0')
                    mistake(r, PyExc_RuntimeError, "the application did not call start_response");
                rc = -1;
            } else {
                piece.p = PyBytes_AS_STRING(item);
                piece.n = (size_t)PyBytes_GET_SIZE(item);
                send_body(r, &piece, 1);
                /* A stream goes out as it comes (with one non-blocking write of ours when
                 * nothing is pending, else the loop's). */
                if (!r->client_gone && !r->failed)
                    out_result(r, wd_out_flush(r->req->out), "cannot send the response");
            }
        }
        Py_DECREF(item);
        /* Stop at an error, a vanished client, or (HEAD, 304...) once the head is out. */
        if (rc < 0 || r->client_gone || r->failed || (r->head_sent && r->no_body))
            break;
    }
    Py_DECREF(it);
    if (rc == 0 && PyErr_Occurred())
        rc = -1;
    if (rc == 0 && r->status == 0) {
        if (r->mistake[0] == '\0')
            mistake(r, PyExc_RuntimeError, "the application did not call start_response");
        rc = -1;
    }
    return rc;
}

static int send_result(wd_resp_t *r, PyObject *result)
{
    if (Py_IS_TYPE(result, &wd__py_file_wrapper_type) && r->status != 0 && !r->head_sent &&
        ((wd_file_wrapper_t *)result)->filelike != NULL) {
        int rc = send_file(r, (wd_file_wrapper_t *)result);

        if (rc != 0)
            return rc < 0 ? -1 : 0;
    }
    if (PyTuple_CheckExact(result))
        return send_sequence(r, result);
    if (PyList_CheckExact(result)) {
        /* send_sequence lets the GIL go while the response waits for room (backpressure): a
         * list another thread may change meanwhile is copied to a tuple first, which holds its
         * items (new reference). */
        PyObject *t = PyList_AsTuple(result);
        int rc;

        if (t == NULL)
            return -1;
        rc = send_sequence(r, t);
        Py_DECREF(t);
        return rc;
    }
    return send_iterable(r, result);
}

/* ---- errors and the end of the response ----------------------------------------------------- */

/* Logs what went wrong (the pending exception or the recorded mistake) once. */
static void log_failure(wd_resp_t *r)
{
    char line[256], prefix[48], summary[512];

    req_line(r, line, sizeof line);
    if (r->client_gone) {
        PyErr_Clear();
        wd_log_info("[req %s] %s: the client went away", r->req->id, line);
        return;
    }
    if (r->mistake[0] != '\0') {
        PyErr_Clear();
        wd_log_error("[req %s] %s: %s%s", r->req->id, line, r->mistake,
                     r->head_sent ? "; closing the connection" : "");
        return;
    }
    snprintf(prefix, sizeof prefix, "[req %s] ", r->req->id);
    if (!PyErr_Occurred()) {
        wd_log_error("[req %s] %s: the response failed", r->req->id, line);
        return;
    }
    {
        PyObject *type, *value, *tb; /* new, handed back by PyErr_Restore */

        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        wd__py_exc_summary(value, summary, sizeof summary);
        wd_log_error("[req %s] %s: the application raised %s%s", r->req->id, line, summary,
                     r->head_sent ? " after the response had started; closing the connection" : "");
        PyErr_Restore(type, value, tb);
        wd__py_log_exception(prefix, NULL, 0);
    }
}

/* Calls result.close() if it has one; a failure there is logged. */
static void close_result(wd_resp_t *r, PyObject *result, int *error)
{
    PyObject *close, *rv; /* both new, released here */

    if (PyList_CheckExact(result) || PyTuple_CheckExact(result))
        return;
    if (get_optional_attr(result, s_close, &close) < 0) {
        PyErr_Clear();
        return;
    }
    if (close == NULL)
        return;
    rv = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (rv != NULL) {
        Py_DECREF(rv);
        return;
    }
    if (*error) {
        char prefix[48];

        snprintf(prefix, sizeof prefix, "[req %s] close(): ", r->req->id);
        wd__py_log_exception(prefix, NULL, 0);
    } else {
        *error = 1;
        log_failure(r);
    }
}

/* A canned error answer; returns the keep-alive verdict. */
static int send_canned(wd_resp_t *r, int code)
{
    char buf[512];
    int keep_alive = 0, minor = 1;
    size_t n;
    struct iovec iov;

    if (is_http(r)) {
        minor = (int)r->req->http->http_minor;
        keep_alive = r->req->http->keep_alive && !r->req->http->is_head;
    }
    n = wd_response_canned(buf, sizeof buf, code, minor, keep_alive);
    r->req->status = code;
    iov = (struct iovec){buf, n};
    if (push(r, &iov, 1) < 0)
        keep_alive = 0;
    return keep_alive;
}

/* The end of a response that went well: the last chunk; returns the keep-alive verdict. */
static int finish(wd_resp_t *r)
{
    int keep_alive;

    if (!r->head_sent && !r->client_gone && !r->failed) {
        /* Nothing but empty chunks: the head alone, with Content-Length: 0. */
        if (r->head_total == 0)
            frame_head(r, 0);
        send_body(r, NULL, 0);
    }
    if (r->chunked && !r->client_gone && !r->failed) {
        struct iovec iov = {(void *)"0\r\n\r\n", 5};

        push(r, &iov, 1);
    }
    if (r->has_cl && !r->no_body && r->body_sent < r->cl && !r->client_gone && !r->failed) {
        char line[256];

        wd_log_error("[req %s] %s: the application sent %llu bytes of its Content-Length %llu; "
                     "closing the connection",
                     r->req->id, req_line(r, line, sizeof line), (unsigned long long)r->body_sent,
                     (unsigned long long)r->cl);
        r->failed = 1;
    }
    /* Cut short (not merely cut at its Content-Length): reset, do not close. */
    if (r->failed && r->head_sent && !r->client_gone && !(r->has_cl && r->body_sent >= r->cl))
        return WD_OUT_RESET;
    keep_alive = r->keep_alive && !r->failed && !r->client_gone;
    return keep_alive;
}

/* queue-timeout: a request that waited too long for a thread is answered 504 without running the
 * app (its client, or the proxy, has most likely given up already). */
static int queue_timed_out(wd_req_t *req)
{
    double limit = wd__py.group->queue_timeout;
    double waited;
    char line[256];

    if (!wd_req_queue_expired(req, limit, wd_now_ns(), &waited))
        return 0;
    wd__py_request_line(req, line, sizeof line);
    wd_log_warn("[req %s] %s: waited %.1f s for a Python thread, over queue-timeout (%.1f s): 504",
                req->id, line, waited, limit);
    return 1;
}

int wd__py_serve(wd_py_thread_t *thr, wd_req_t *req)
{
    /* The app first: every object of the request is made in its interpreter. */
    const wd_py_mount_t *app = wd__py_route(req);
    wd_py_interp_t *interp = app != NULL ? app->interp : wd__py.interps[0];
    wd_resp_t *r;
    /* env, input (from the environ's builder) and result: new, released at the end. */
    PyObject *env = NULL, *input = NULL, *result = NULL;
    int error = 0, keep_alive;

    wd__py_enter(thr, interp);
    r = PyObject_New(wd_resp_t, &resp_type); /* new: start_response itself */
    if (r == NULL) {
        PyErr_Clear();
        wd_log_error("[req %s] out of memory", req->id);
        return 0;
    }
    memset((char *)r + sizeof(PyObject), 0, sizeof *r - sizeof(PyObject));
    r->req = req;
    r->thr = thr;
    req->status = 0;
    if (app == NULL || queue_timed_out(req)) {
        /* No mount takes the path, and the group has no app of its own. */
        keep_alive = send_canned(r, app == NULL ? 404 : 504);
        r->req = NULL;
        Py_DECREF(r);
        return keep_alive;
    }
    req->py_thread = PyThread_get_thread_ident();
    req->py_running = 1;
    thr->ident = req->py_thread;
    thr->serving = req->seq;
    env = wd__py_environ_new(req, app, &input);
    if (env == NULL) {
        snprintf(r->mistake, sizeof r->mistake, "cannot build the environ");
        error = 1;
        wd__py_log_exception("", NULL, 0);
    } else {
        PyObject *args[2] = {env, (PyObject *)r};

        result = PyObject_Vectorcall(app->app, args, 2, NULL);
        error = result == NULL || send_result(r, result) < 0;
    }
    if (error || r->client_gone)
        log_failure(r);
    if (result != NULL)
        close_result(r, result, &error);
    if (error && !r->head_sent && !r->client_gone)
        keep_alive = send_canned(r, req->timed_out ? 504 : 500);
    else if (error)
        keep_alive = r->head_sent && !r->client_gone ? WD_OUT_RESET : 0;
    else
        keep_alive = finish(r);

    /* The app may keep the environ or start_response: they must not reach the request now. */
    if (input != NULL) {
        wd__py_input_detach(input);
        Py_DECREF(input);
    }
    r->req = NULL;
    Py_XDECREF(result);
    Py_XDECREF(env);
    Py_DECREF(r);
    /* A request-timeout interrupt that came too late must not hit the next request. */
    req->py_running = 0;
    thr->serving = 0;
    if (req->timed_out)
        PyThreadState_SetAsyncExc(req->py_thread, NULL);
    return keep_alive;
}

void wd__py_raise_timeout(PyThreadState **ts, unsigned long ident, uint64_t seq)
{
    /* With the GIL held, serving cannot change under us: if it is seq, the thread is still
     * inside this request. The exception is raised when the thread next runs Python code; a
     * thread blocked in C (a sleep, a socket) notices it only once that call returns.
     * PyThreadState_SetAsyncExc looks for the thread in the current interpreter: the caller's
     * state in the interpreter the thread serves becomes current for the call. */
    for (int i = 0; i < wd__py.n_threads; i++) {
        const wd_py_thread_t *thr = &wd__py.threads[i];

        if (thr->ident == ident && thr->serving == seq) {
            PyThreadState *prev = PyThreadState_Swap(ts[thr->cur]);

            PyThreadState_SetAsyncExc(ident, exc_request_timeout);
            PyThreadState_Swap(prev);
            return;
        }
    }
}

int wd__py_respond_init(void)
{
    exc_request_timeout = PyErr_NewExceptionWithDoc(
        "wsgid.RequestTimeout", "The request ran past the group's request-timeout.",
        PyExc_BaseException, NULL);
    if (exc_request_timeout == NULL)
        return -1;
    s_close = PyUnicode_InternFromString("close");
    if (s_close == NULL || PyType_Ready(&wd__py_file_wrapper_type) < 0 ||
        PyType_Ready(&resp_type) < 0)
        return -1;
    return 0;
}
