/* The response of a request as the app makes it: start_response (status and header checks),
 * write(), and framing the head and body into the connection's out buffer (the decisions are
 * protocol/response.c's wd_response_framing). */
#include "glue_int.h"
#include "../daemon/common/utf8.h"
#include "respond.h"
#include "balance.h"
#include "../daemon/common/httpdate.h"
#include "../daemon/common/log.h"
#include "../protocol/response.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int wd__py_resp_is_http(const wd_resp_t *r)
{
    return r->req->kind == WD_REQ_HTTP;
}

const char *wd__py_resp_line(const wd_resp_t *r, char *buf, size_t cap)
{
    wd__py_request_line(r->req, buf, cap);
    return buf;
}

int wd__py_resp_mistake(wd_resp_t *r, PyObject *exc, const char *fmt, ...)
{
    char raw[sizeof r->mistake], esc[sizeof r->mistake];
    size_t o = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* The message quotes the app's status or header text, which may come from the request: a
     * CR or LF in it started a line of the error log that the client wrote ("2026-... [alert]
     * master: ..."; helper-60). Control characters are written \xHH, as in the access log. */
    for (const char *p = raw; *p != '\0' && o + 5 < sizeof esc; p++) {
        unsigned char c = (unsigned char)*p;

        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(esc + o, 5, "\\x%02X", c);
        else
            esc[o++] = (char)c;
    }
    esc[o] = '\0';
    /* Cut where a character starts (the message is a str: helper-61). */
    wd_utf8_copy(r->mistake, sizeof r->mistake, esc);
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
static int add_header(wd_resp_t *r, int code, PyObject *item, size_t *len)
{
    PyObject *name, *value;
    const char *np, *vp;
    size_t nn, vn;

    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2)
        return wd__py_resp_mistake(r, PyExc_TypeError,
                                   "a header is a %s, not a (name, value) tuple",
                                   Py_TYPE(item)->tp_name);
    name = PyTuple_GET_ITEM(item, 0);
    value = PyTuple_GET_ITEM(item, 1);
    if (!PyUnicode_Check(name))
        return wd__py_resp_mistake(r, PyExc_TypeError, "a header name is a %s; WSGI needs str",
                                   Py_TYPE(name)->tp_name);
    np = latin1(name, &nn);
    if (np == NULL || !wd_response_header_name_valid(np, nn))
        return wd__py_resp_mistake(r, PyExc_ValueError, "header name '%.100s' is not a valid token",
                                   utf8(name));
    if (!PyUnicode_Check(value))
        return wd__py_resp_mistake(r, PyExc_TypeError,
                                   "header '%.*s' has a %s value; WSGI needs str", (int)nn, np,
                                   Py_TYPE(value)->tp_name);
    vp = latin1(value, &vn);
    if (vp == NULL)
        return wd__py_resp_mistake(r, PyExc_ValueError,
                                   "header '%.*s' has a value that is not latin-1", (int)nn, np);
    if (!wd_response_header_value_valid(vp, vn))
        return wd__py_resp_mistake(
            r, PyExc_ValueError, "header '%.*s' has a %s in its value", (int)nn, np,
            memchr(vp, '\r', vn) || memchr(vp, '\n', vn) ? "CR or LF" : "control character");
    if (wd_response_header_is_hop_by_hop(np, nn))
        return wd__py_resp_mistake(r, PyExc_ValueError,
                                   "hop-by-hop header '%.*s' is not allowed from an application",
                                   (int)nn, np);
    if (wd_slice_ieq(np, nn, "date"))
        r->has_date = 1;
    if (wd_slice_ieq(np, nn, "content-length")) {
        uint64_t cl;

        if (parse_u64(vp, vn, &cl) < 0)
            return wd__py_resp_mistake(r, PyExc_ValueError,
                                       "header 'Content-Length' value '%.*s' is not a "
                                       "number",
                                       (int)(vn > 40 ? 40 : vn), vp);
        /* Two lengths would frame the body two ways (a proxy answers 502, a client reading the
         * first swallows the next response); the same one twice goes out once. */
        if (r->has_cl && cl != r->cl)
            return wd__py_resp_mistake(r, PyExc_ValueError,
                                       "two Content-Length headers (%llu and %llu)",
                                       (unsigned long long)r->cl, (unsigned long long)cl);
        /* A 204 or 205 has no content, and a Content-Length on it is a length a client may
         * read the next response's bytes as (RFC 9110 8.6; a 205 gets "0": frame_head). */
        if (r->has_cl || code == 204 || code == 205)
            return 0;
        r->cl = cl;
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
        return wd__py_resp_mistake(r, PyExc_TypeError, "the status is a %s; WSGI needs str",
                                   Py_TYPE(status)->tp_name);
    sp = latin1(status, &sn);
    code = sp ? wd_response_parse_status(sp, sn) : -1;
    if (code < 0)
        return wd__py_resp_mistake(r, PyExc_ValueError, "status '%.100s' is not 'NNN reason'",
                                   utf8(status));
    if (code < 200) /* a client reads it as an interim answer and waits for the real one */
        return wd__py_resp_mistake(r, PyExc_ValueError,
                                   "status '%.100s' is informational (1xx); a WSGI response needs "
                                   "a final status",
                                   utf8(status));
    if (!PyList_Check(headers) && !PyTuple_Check(headers))
        return wd__py_resp_mistake(r, PyExc_TypeError, "the headers are a %s; WSGI needs a list",
                                   Py_TYPE(headers)->tp_name);
    if (wd__py_resp_is_http(r)) {
        proto[7] = r->req->http->http_minor ? '1' : '0'; /* "HTTP/1.1" or "HTTP/1.0" */
    } else if (r->req->kind == WD_REQ_UWSGI) {
        wd_slice_t p = r->req->uwsgi->protocol;

        if (p.n == 8 && memcmp(p.p, "HTTP/1.", 7) == 0 && (p.p[7] == '0' || p.p[7] == '1'))
            memcpy(proto, p.p, 8); /* else HTTP/1.1: the proxy's byte is not copied out */
    }
    r->has_cl = 0;
    r->has_date = 0;
    if (r->req->kind == WD_REQ_FCGI) { /* a CGI response: the status as a header */
        head_append(r, &len, "Status: ", 8);
    } else {
        head_append(r, &len, proto, 8);
        head_append(r, &len, " ", 1);
    }
    head_append(r, &len, sp, sn);
    head_append(r, &len, "\r\n", 2);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(headers); i++)
        if (add_header(r, code, PySequence_Fast_ITEMS(headers)[i], &len) < 0)
            return -1;
    r->head_len = len;
    r->status = code;
    return 0;
}

static PyObject *resp_write_py(PyObject *self, PyObject *data);
static PyMethodDef write_def = {"write", resp_write_py, METH_O, "write(data): the legacy write"};

/* Too late to replace the head: re-raises the app's own error (PEP 3333), which must be what
 * sys.exc_info() gives in an except block. Anything else (its (None, None, None) outside one, a
 * tuple of ints) restored as the pending exception crashed the worker: CPython then writes a
 * traceback into an object that is no exception. */
static PyObject *reraise(wd_resp_t *r, PyObject *exc_info)
{
    PyObject *type, *value, *tb;

    if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
        wd__py_resp_mistake(r, PyExc_TypeError, "exc_info is a %s; WSGI needs a 3-tuple",
                            Py_TYPE(exc_info)->tp_name);
        return NULL;
    }
    type = PyTuple_GET_ITEM(exc_info, 0);
    value = PyTuple_GET_ITEM(exc_info, 1);
    tb = PyTuple_GET_ITEM(exc_info, 2);
    if (!PyExceptionClass_Check(type) || !PyExceptionInstance_Check(value) ||
        !PyObject_TypeCheck(value, (PyTypeObject *)type) ||
        (tb != Py_None && !PyTraceBack_Check(tb))) {
        wd__py_resp_mistake(r, PyExc_TypeError,
                            "exc_info is not what sys.exc_info() gives in an except block");
        return NULL;
    }
    Py_INCREF(type);
    Py_INCREF(value);
    if (tb == Py_None)
        tb = NULL;
    Py_XINCREF(tb);
    PyErr_Restore(type, value, tb);
    return NULL;
}

/* start_response(status, headers, exc_info=None) */
static PyObject *resp_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"status", "headers", "exc_info", NULL};
    wd_resp_t *r = (wd_resp_t *)self;
    PyObject *status, *headers, *exc_info = Py_None; /* borrowed from args */

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:start_response", kwlist, &status, &headers,
                                     &exc_info))
        return NULL;
    if (r->req == NULL || r->finishing) {
        PyErr_SetString(PyExc_RuntimeError, "start_response called after the request ended");
        return NULL;
    }
    if (exc_info != Py_None) {
        if (r->head_sent)
            return reraise(r, exc_info);
        r->status = 0;
    } else if (r->status != 0) {
        wd__py_resp_mistake(r, PyExc_RuntimeError, "start_response called twice without exc_info");
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
void wd__py_resp_out_result(wd_resp_t *r, int rc, const char *what)
{
    char line[256];

    if (rc == -EPIPE) {
        r->client_gone = 1;
    } else if (rc < 0) {
        /* Rate-limited: a worker out of file descriptors or disk says so for every response a
         * flood of clients makes it buffer (helper-54: 64 lines in 2 s). */
        wd_log_peer(WD_LOG_ERROR, "[req %s] %s: %s: %s", r->req->id,
                    wd__py_resp_line(r, line, sizeof line), what, strerror(-rc));
        r->failed = 1;
    }
}

/* A thread waiting for the turn sleeps here, without the GIL, until the turn is given back: one
 * lock and condition for all responses (only an app that writes from threads of its own ever
 * waits), each waiter looking at its own response's turn_gen. Before, a waiter polled every
 * 200 us, taking the GIL back each time: 6 % of a CPU and 3,300 wake-ups a second for as long as
 * the serving thread waited on a slow client's backpressure (helper-56). */
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_given = PTHREAD_COND_INITIALIZER;

static void turn_wait(wd_resp_t *r)
{
    unsigned seen = r->turn_gen; /* read with the GIL: a give that comes later changes it */
    PyThreadState *ts;

    r->turn_waiters++;
    ts = PyEval_SaveThread();
    pthread_mutex_lock(&turn_lock);
    while (r->turn_gen == seen)
        pthread_cond_wait(&turn_given, &turn_lock);
    pthread_mutex_unlock(&turn_lock);
    wd__py_gil_restore(ts);
    r->turn_waiters--;
}

/* Takes the turn to push (respond.h: pushing): at once when this thread holds it already,
 * otherwise once the thread that holds it gives it back. After a wait the response may have
 * ended meanwhile, or be ending on the serving thread: then only the serving thread may push,
 * and -1 says the caller may not (a thread that had passed write()'s check read the request
 * after it was cleared). */
static int turn_take(wd_resp_t *r)
{
    unsigned long me = PyThread_get_thread_ident();

    if (r->pushing > 0 && r->pusher == me) {
        r->pushing++;
        return 0;
    }
    while (r->pushing > 0)
        turn_wait(r);
    if (r->req == NULL || (r->finishing && me != r->req->py_thread))
        return -1;
    r->pushing = 1;
    r->pusher = me;
    return 0;
}

static void turn_give(wd_resp_t *r)
{
    if (--r->pushing > 0 || r->turn_waiters == 0)
        return;
    pthread_mutex_lock(&turn_lock);
    r->turn_gen++;
    pthread_cond_broadcast(&turn_given);
    pthread_mutex_unlock(&turn_lock);
}

void wd__py_resp_end_writes(wd_resp_t *r)
{
    r->finishing = 1;
    if (turn_take(r) == 0) /* the push another thread has on its way is over */
        turn_give(r);
}

/* Hands iov to the out buffer: into memory with the GIL kept when it fits, otherwise (a spill
 * to the temp file, or waiting for the loop to drain) with the GIL released. */
/* The bytes of iov as they are (HTTP, uwsgi; FastCGI: records already framed). */
static int push_raw(wd_resp_t *r, struct iovec *iov, int n, wd_out_lend_t *lend)
{
    int rc = wd_out_try_writev(r->req->out, iov, n, lend);

    if (rc != -EAGAIN) {
        wd__py_resp_out_result(r, rc, "cannot buffer the response");
        return rc;
    }
    PyThreadState *ts = PyEval_SaveThread();
    rc = wd_out_writev(r->req->out, iov, n, lend);
    wd__py_gil_restore(ts);
    wd__py_resp_out_result(r, rc, "cannot buffer the response");
    return rc;
}

/* FastCGI: the bytes of iov in STDOUT records of the request (at most 65535 bytes each), as few
 * writes as the iovec room allows. A lent piece (lend[i].obj) is cut up by the records: each of
 * its parts is lent with a reference of its own (the caller keeps its own), as a part of an
 * object of WD_OUT_LEND_MIN or more (obj_len). Copied instead, a 1 MiB echo's answer went to the
 * response's file past the worker's budget: an open, two pwrite and a sendfile a request (strace
 * -c of a worker behind nginx's fastcgi_pass, -c16), gone since; the CPU: conn_fcgi.c. */
#define FCGI_RECORDS_PER_WRITE 16

static int fcgi_push(wd_resp_t *r, struct iovec *iov, int n, const wd_out_lend_t *lend)
{
    char heads[FCGI_RECORDS_PER_WRITE][WD_FCGI_HEADER_SIZE];
    struct iovec out[FCGI_RECORDS_PER_WRITE * 2 + MAX_PIECES + 4];
    wd_out_lend_t out_lend[sizeof out / sizeof out[0]];
    size_t left = 0, off = 0;
    int i = 0, rc = 0;

    for (int k = 0; k < n; k++)
        left += iov[k].iov_len;
    while (left > 0 && rc >= 0) {
        int k = 0, h = 0, lent = 0;

        while (left > 0 && h < FCGI_RECORDS_PER_WRITE &&
               k + 1 + (n - i) <= (int)(sizeof out / sizeof out[0])) {
            size_t rec = left < WD_FCGI_MAX_CONTENT ? left : WD_FCGI_MAX_CONTENT, need = rec;

            wd_fcgi_header(heads[h], WD_FCGI_STDOUT, r->req->fcgi_id, (uint16_t)rec, 0);
            out_lend[k] = (wd_out_lend_t){NULL, NULL, NULL, 0};
            out[k++] = (struct iovec){heads[h++], WD_FCGI_HEADER_SIZE};
            while (need > 0) {
                size_t take = iov[i].iov_len - off < need ? iov[i].iov_len - off : need;

                out_lend[k] = (wd_out_lend_t){NULL, NULL, NULL, 0};
                if (lend != NULL && lend[i].obj != NULL) {
                    Py_INCREF((PyObject *)lend[i].obj);
                    out_lend[k] = lend[i];
                    lent = 1;
                }
                out[k++] = (struct iovec){(char *)iov[i].iov_base + off, take};
                off += take;
                need -= take;
                if (off == iov[i].iov_len) {
                    i++;
                    off = 0;
                }
            }
            left -= rec;
        }
        rc = push_raw(r, out, k, lent ? out_lend : NULL);
        for (int j = 0; lent && j < k; j++)
            Py_XDECREF((PyObject *)out_lend[j].obj); /* the parts the buffer did not keep */
    }
    return rc;
}

int wd__py_resp_push(wd_resp_t *r, struct iovec *iov, int n, wd_out_lend_t *lend)
{
    int rc;

    if (turn_take(r) < 0)
        return -EPIPE;
    rc = r->req->kind == WD_REQ_FCGI ? fcgi_push(r, iov, n, lend) : push_raw(r, iov, n, lend);
    turn_give(r);
    return rc;
}

int wd__py_resp_push_raw(wd_resp_t *r, struct iovec *iov, int n, wd_out_lend_t *lend)
{
    int rc;

    if (turn_take(r) < 0)
        return -EPIPE;
    rc = push_raw(r, iov, n, lend);
    turn_give(r);
    return rc;
}

/* Completes the head in thr->head: our framing headers and the blank line. known is the body
 * length when it is known before anything is sent, -1 otherwise. */
void wd__py_resp_frame_head(wd_resp_t *r, int64_t known)
{
    int code = r->status;
    size_t len = r->head_len;
    char buf[64];
    wd_framing_t f;
    wd_slice_t method = r->req->kind == WD_REQ_FCGI    ? r->req->fcgi->method
                        : r->req->kind == WD_REQ_UWSGI ? r->req->uwsgi->method
                                                       : (wd_slice_t){NULL, 0};
    wd_framing_in_t in = {
        .status = code,
        .head_request = wd__py_resp_is_http(r) ? r->req->http->is_head
                                               : wd_slice_ieq(method.p, method.n, "head"),
        .has_cl = r->has_cl,
        .known = code == 205 ? 0 : known, /* no content, and Content-Length: 0 says so */
        .http = wd__py_resp_is_http(r),
        .http_minor = wd__py_resp_is_http(r) ? (int)r->req->http->http_minor : 1,
        .keep_alive = wd__py_resp_is_http(r) && r->req->http->keep_alive,
        .failed = r->failed,
    };

    wd_response_framing(&in, &f);
    /* A stopping worker's answer closes its connection (request.h), and so may the balance's. */
    if (f.keep_alive && (wd_req_stopping(r->req) || wd_balance_close_at_head(r->req))) {
        in.keep_alive = 0;
        wd_response_framing(&in, &f);
    }
    r->no_body = f.no_body;
    if (f.add_cl) {
        r->has_cl = 1;
        r->cl = (uint64_t)in.known;
        size_t n = sizeof "Content-Length: " - 1;

        memcpy(buf, "Content-Length: ", n);
        n += wd_fmt_u64(buf + n, (uint64_t)in.known);
        memcpy(buf + n, "\r\n", 2);
        head_append(r, &len, buf, n + 2);
    }
    if (f.chunked) {
        r->chunked = 1;
        head_append(r, &len, "Transfer-Encoding: chunked\r\n", 28);
    }
    r->keep_alive = f.keep_alive;
    if (r->req->kind == WD_REQ_FCGI) /* the proxy said: FCGI_KEEP_CONN */
        r->keep_alive = r->req->fcgi_keep && !r->failed;
    if (f.connection != NULL)
        head_append(r, &len, f.connection, strlen(f.connection));
    /* Spoken to the client itself (HTTP), wsgid is the origin server, which sends a Date (RFC
     * 9110 6.6.1); a proxy that speaks uwsgi or FastCGI to it adds its own. */
    if (wd__py_resp_is_http(r) && !r->has_date) {
        char date[WD_DATE_LINE_MAX];

        head_append(r, &len, date, wd_http_date_now(date));
    }
    head_append(r, &len, "\r\n", 2);
    r->head_total = len;
    r->req->status = code;
    r->req->head_len = len;
}

/* Sends the head if it is not sent yet, then the pieces as body bytes (cut at Content-Length,
 * framed as one chunk when chunked). The pieces may be empty. */
int wd__py_resp_send_body(wd_resp_t *r, const wd_slice_t *pieces, PyObject *const *objs, int n)
{
    struct iovec iov[MAX_PIECES + 3];
    wd_out_lend_t lend[MAX_PIECES + 3];
    char size_line[24];
    uint64_t total = 0;
    int i = 0, rc, sz = -1, lending = 0;

    if (r->client_gone || r->failed)
        return -EPIPE;
    if (!r->head_sent) {
        if (r->head_total == 0)
            wd__py_resp_frame_head(r, -1);
        iov[i++] = (struct iovec){r->thr->head, r->head_total};
    }
    if (!r->no_body) {
        uint64_t room = r->has_cl ? r->cl - r->body_sent : UINT64_MAX;

        if (r->chunked)
            sz = i++;
        /* Every piece is looked at: one past the length, in this call or a later one, is the
         * app's mistake too (helper-56: [b"ok", b"EXTRA"] with Content-Length 2 went unsaid). */
        for (int k = 0; k < n; k++) {
            size_t take = pieces[k].n < room ? pieces[k].n : (size_t)room;

            if (take < pieces[k].n && !r->failed) {
                char line[256];

                wd_log_error("[req %s] %s: the application sent more than its Content-Length "
                             "%llu; the response was cut there",
                             r->req->id, wd__py_resp_line(r, line, sizeof line),
                             (unsigned long long)r->cl);
                r->failed = 1;
            }
            if (take == 0)
                continue;
            /* A large bytes object is lent with a reference of its own (FastCGI: fcgi_push). */
            if (objs != NULL && take >= WD_OUT_LEND_MIN && PyBytes_CheckExact(objs[k])) {
                if (!lending) /* the head and the chunk framing are never lent */
                    memset(lend, 0, sizeof lend);
                Py_INCREF(objs[k]);
                lend[i] = (wd_out_lend_t){objs[k], (void *)(intptr_t)r->thr->cur,
                                          wd__py_lent_release, pieces[k].n};
                lending = 1;
            }
            iov[i++] = (struct iovec){(void *)pieces[k].p, take};
            total += take;
            room -= take;
        }
        if (sz >= 0 && total == 0) {
            i--; /* an empty chunk would end the body */
        } else if (sz >= 0) {
            size_t n = wd_fmt_x64(size_line, total);

            memcpy(size_line + n, "\r\n", 2);
            iov[sz] = (struct iovec){size_line, n + 2};
            iov[i++] = (struct iovec){(void *)"\r\n", 2};
        }
    }
    if (i == 0)
        return 0;
    r->head_sent = 1;
    r->body_sent += total;
    rc = wd__py_resp_push(r, iov, i, lending ? lend : NULL);
    if (lending)
        for (int k = 0; k < i; k++)
            Py_XDECREF(lend[k].obj); /* the pieces the buffer did not keep */
    if (rc < 0)
        r->body_sent -= total; /* not sent (a client gone, a full disk): not a whole body */
    return rc;
}

static PyObject *resp_write_py(PyObject *self, PyObject *data)
{
    wd_resp_t *r = (wd_resp_t *)self;
    wd_slice_t piece;
    int rc;

    if (r->req == NULL || r->finishing) {
        PyErr_SetString(PyExc_RuntimeError, "write() called after the request ended");
        return NULL;
    }
    if (r->status == 0) {
        wd__py_resp_mistake(r, PyExc_RuntimeError, "write() called before start_response");
        return NULL;
    }
    if (!PyBytes_Check(data)) {
        wd__py_resp_mistake(r, PyExc_TypeError, "write() got a %s; WSGI needs bytes",
                            Py_TYPE(data)->tp_name);
        return NULL;
    }
    piece.p = PyBytes_AS_STRING(data);
    piece.n = (size_t)PyBytes_GET_SIZE(data);
    if (piece.n == 0 && r->head_sent)
        Py_RETURN_NONE;
    /* The turn from before the framing: what it counts (head sent, body bytes) is pushed. */
    if (turn_take(r) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "write() called after the request ended");
        return NULL;
    }
    rc = wd__py_resp_send_body(r, &piece, &data, 1);
    /* Each write() goes out as it comes, as each piece of an iterable does (send_iterable): the
     * client got nothing, not even the head, until the app returned; and the loop, never woken,
     * saw neither a client that left nor a send-timeout (helper-60). */
    if (rc == 0 && !r->client_gone && !r->failed)
        wd__py_resp_out_result(r, wd_out_flush(r->req->out), "cannot send the response");
    turn_give(r);
    if (rc < 0) {
        PyErr_SetString(PyExc_OSError,
                        r->client_gone ? "client connection closed" : "cannot send the response");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyTypeObject wd__py_resp_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wsgid.StartResponse",
    .tp_basicsize = sizeof(wd_resp_t),
    .tp_dealloc = (destructor)PyObject_Free,
    .tp_call = resp_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "start_response(status, headers, exc_info=None)",
};
