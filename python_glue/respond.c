/* Serving one request: choosing the app, calling it, iterating its result (file_wrapper through
 * sendfile), and turning application mistakes into a 500 and one log line (design §7, §8).
 *
 * Bytes are handed to the out buffer with the GIL released; the bytes objects stay referenced
 * meanwhile, so their storage cannot go away. */
#include "glue_int.h"
#include "respond.h"
#include "balance.h"
#include "../daemon/common/httpdate.h"
#include "../daemon/common/log.h"
#include "../protocol/response.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static PyObject *s_close; /* interned "close" (strong, for the process's life) */
/* Raised into a thread whose request ran past request-timeout. A BaseException, so that an app's
 * `except Exception:` does not swallow it. */
static PyObject *exc_request_timeout; /* strong, for the process's life */

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
    /* Iterated instead (read(blksize), as PEP 3333 has it): what is not a regular file, and a
     * file whose size says nothing of its bytes. procfs files have st_size 0 (an empty 200 for
     * /proc/self/status, helper-56) and sysfs ones 4096 whatever they hold; neither has blocks.
     * A file of holes only is iterated too, rightly if slower. */
    if (fd < 0 || fstat((int)fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_blocks == 0) {
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
    wd__py_resp_frame_head(r, (int64_t)len);
    if (wd__py_resp_send_body(r, NULL, NULL, 0) < 0 || r->no_body || len == 0) {
        close(dupfd);
        return 1;
    }
    r->body_sent += len;
    PyThreadState *ts = PyEval_SaveThread();
    rc = wd_out_file(r->req->out, dupfd, (uint64_t)off, len);
    wd__py_gil_restore(ts);
    wd__py_resp_out_result(r, rc, "cannot queue the file");
    return 1;
}

static int not_bytes(wd_resp_t *r, PyObject *item)
{
    return wd__py_resp_mistake(r, PyExc_TypeError,
                               "the application returned a %s chunk; WSGI needs bytes",
                               Py_TYPE(item)->tp_name);
}

/* A list or tuple: every length is known before anything is sent. */
/* seq is a tuple (borrowed): its items stay alive while the GIL is let go in send_body. */
static int send_sequence(wd_resp_t *r, PyObject *seq)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    wd_slice_t pieces[MAX_PIECES];
    PyObject *objs[MAX_PIECES];
    uint64_t total = 0;

    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i]))
            return not_bytes(r, items[i]);
        total += (uint64_t)PyBytes_GET_SIZE(items[i]);
    }
    if (r->status == 0) {
        if (r->mistake[0] == '\0')
            wd__py_resp_mistake(r, PyExc_RuntimeError,
                                "the application did not call start_response");
        return -1;
    }
    if (!r->head_sent)
        wd__py_resp_frame_head(r, (int64_t)total);
    for (Py_ssize_t i = 0; i < n;) {
        int k = 0;

        while (i < n && k < MAX_PIECES) {
            objs[k] = items[i];
            pieces[k].p = PyBytes_AS_STRING(items[i]);
            pieces[k++].n = (size_t)PyBytes_GET_SIZE(items[i++]);
        }
        if (wd__py_resp_send_body(r, pieces, objs, k) < 0 || (r->no_body && r->head_sent))
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
                    wd__py_resp_mistake(r, PyExc_RuntimeError,
                                        "the application did not call start_response");
                rc = -1;
            } else {
                piece.p = PyBytes_AS_STRING(item);
                piece.n = (size_t)PyBytes_GET_SIZE(item);
                wd__py_resp_send_body(r, &piece, &item, 1);
                /* A stream goes out as it comes (with one non-blocking write of ours when
                 * nothing is pending, else the loop's). */
                if (!r->client_gone && !r->failed)
                    wd__py_resp_out_result(r, wd_out_flush(r->req->out),
                                           "cannot send the response");
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
            wd__py_resp_mistake(r, PyExc_RuntimeError,
                                "the application did not call start_response");
        rc = -1;
    }
    return rc;
}

static int send_result(wd_resp_t *r, PyObject *result)
{
    /* sendfile, unless the bytes must go in FastCGI records: then the wrapper is iterated. */
    if (Py_IS_TYPE(result, &wd__py_file_wrapper_type) && r->status != 0 && !r->head_sent &&
        r->req->kind != WD_REQ_FCGI && ((wd_file_wrapper_t *)result)->filelike != NULL) {
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

/* Whether the pending exception is the one the recorded mistake raised (its text; none pending:
 * the mistake is what went wrong). An app may catch a mistake's exception and go on (a second
 * start_response, say, in a generator), and fail later: that error and its traceback count. */
static int mistake_pending(wd_resp_t *r)
{
    PyObject *type, *value, *tb, *text;
    int same = 1;

    if (!PyErr_Occurred())
        return 1;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    text = value != NULL ? PyObject_Str(value) : NULL;
    if (text != NULL) {
        const char *t = PyUnicode_AsUTF8(text);

        same = t != NULL && strcmp(t, r->mistake) == 0;
    }
    PyErr_Clear(); /* from PyObject_Str or the conversion, if any */
    Py_XDECREF(text);
    PyErr_Restore(type, value, tb);
    return same;
}

/* Logs what went wrong (the pending exception or the recorded mistake) once. */
static void log_failure(wd_resp_t *r)
{
    char line[256], prefix[48], summary[512];

    wd__py_resp_line(r, line, sizeof line);
    if (r->client_gone) {
        PyErr_Clear();
        wd_log_peer(WD_LOG_INFO, "[req %s] %s: the client went away", r->req->id, line);
        return;
    }
    if (r->mistake[0] != '\0' && !mistake_pending(r))
        r->mistake[0] = '\0'; /* one the app caught and got over: the pending error is another */
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
    if (wd__py_get_optional_attr(result, s_close, &close) < 0) {
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

/* The response's spill file failed (wd_out_spill_failed_cb), in the thread that writes it, with
 * or without the GIL. Rate-limited: a full disk fails every large answer of the worker. */
static void spill_failed(wd_out_t *out, void *data, int err)
{
    wd_resp_t *r = data;
    char line[256];

    wd_log_peer(WD_LOG_WARN,
                "[req %s] %s: cannot spill the response to a temp file in %s (%s): the rest waits "
                "in memory for the client, and its thread with it; free space there",
                r->req->id, wd__py_resp_line(r, line, sizeof line), out->tmpdir, strerror(err));
}

/* A canned error answer (FastCGI: ending with protocol_status); returns the keep-alive verdict. */
static int send_canned(wd_resp_t *r, int code, int protocol_status)
{
    char buf[512];
    int keep_alive = 0, minor = 1;
    size_t n;
    struct iovec iov;

    if (wd__py_resp_is_http(r)) {
        minor = (int)r->req->http->http_minor;
        keep_alive = r->req->http->keep_alive && !r->req->http->is_head &&
                     !wd_req_stopping(r->req) &&
                     !wd_balance_close_at_head(r->req); /* a 504 queue-timeout above all */
    }
    if (r->req->kind == WD_REQ_FCGI) {
        keep_alive = r->req->fcgi_keep;
        /* records, and the end */
        n = wd_fcgi_canned(buf, sizeof buf, r->req->fcgi_id, code, protocol_status);
    } else {
        char date[WD_DATE_LINE_MAX];

        n = wd_response_canned_dated(buf, sizeof buf, code, minor, keep_alive,
                                     wd__py_resp_is_http(r) && wd_http_date_now(date) ? date
                                                                                      : NULL);
    }
    r->req->status = code;
    iov = (struct iovec){buf, n};
    if (wd__py_resp_push_raw(r, &iov, 1, NULL) < 0)
        keep_alive = 0;
    return keep_alive;
}

/* Whether the answer went out whole, whatever the app did next: no body to send (HEAD, 1xx, 204,
 * 304), or every byte of its Content-Length. One that fails after is closed, not reset: a reset
 * (SO_LINGER 0) throws away what the kernel still holds for the client (a 4 MiB answer to a slow
 * reader came 2 MiB short). */
static int body_whole(const wd_resp_t *r)
{
    return r->no_body || (r->has_cl && r->body_sent >= r->cl);
}

/* The end of a response that went well: the last chunk; returns the keep-alive verdict. */
static int finish(wd_resp_t *r)
{
    int keep_alive;

    if (!r->head_sent && !r->client_gone && !r->failed) {
        /* Nothing but empty chunks: the head alone, with Content-Length: 0. */
        if (r->head_total == 0)
            wd__py_resp_frame_head(r, 0);
        wd__py_resp_send_body(r, NULL, NULL, 0);
    }
    if (r->chunked && !r->client_gone && !r->failed) {
        struct iovec iov = {(void *)"0\r\n\r\n", 5};

        wd__py_resp_push(r, &iov, 1, NULL);
    }
    if (r->has_cl && !r->no_body && r->body_sent < r->cl && !r->client_gone && !r->failed) {
        char line[256];

        wd_log_error("[req %s] %s: the application sent %llu bytes of its Content-Length %llu; "
                     "closing the connection",
                     r->req->id, wd__py_resp_line(r, line, sizeof line),
                     (unsigned long long)r->body_sent, (unsigned long long)r->cl);
        r->failed = 1;
    }
    /* FastCGI: the end of STDOUT and END_REQUEST; a response cut short gets neither (the
     * connection closes: the proxy sees it was cut). */
    if (r->req->kind == WD_REQ_FCGI) {
        char end[WD_FCGI_END_SIZE];
        struct iovec iov = {end, 0};

        if (r->failed || r->client_gone)
            return 0;
        iov.iov_len = wd_fcgi_end(end, r->req->fcgi_id, WD_FCGI_REQUEST_COMPLETE);
        if (wd__py_resp_push_raw(r, &iov, 1, NULL) < 0)
            return 0;
        return r->keep_alive;
    }
    /* Cut short (not merely cut at its Content-Length): reset, do not close. */
    if (r->failed && r->head_sent && !r->client_gone && !body_whole(r))
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

    /* The hand-off stamped when this thread took it (handoff.c): no second clock read. */
    if (!wd_req_queue_expired(req, limit, req->t_taken_ns, &waited))
        return 0;
    wd__py_request_line(req, line, sizeof line);
    /* A flood of requests at a slow app makes as many: rate-limited (the access log has each). */
    wd_log_peer(WD_LOG_WARN,
                "[req %s] %s: waited %.1f s for a Python thread, over queue-timeout (%.1f s): 504",
                req->id, line, waited, limit);
    return 1;
}

/* A path whose readings name two apps (wd__py_route): a client can send as many as it likes. */
static void log_ambiguous(const wd_req_t *req)
{
    static wd_log_rate_t rate;
    char line[256];

    wd__py_request_line(req, line, sizeof line);
    wd_log_rated(&rate, WD_LOG_WARN,
                 "[req %s] %s: its path names another mount as sent or once normalised (dot "
                 "segments, //, escaped letters or slashes), as a proxy in front may have read "
                 "it: 400",
                 req->id, line);
}

int wd__py_serve(wd_py_thread_t *thr, wd_req_t *req)
{
    /* The app first: every object of the request is made in its interpreter. */
    int ambiguous;
    const wd_py_mount_t *app = wd__py_route(req, &ambiguous);
    wd_py_interp_t *interp = app != NULL ? app->interp : wd__py.interps[0];
    wd_resp_t *r;
    /* env, input (from the environ's builder) and result: new, released at the end. */
    PyObject *env = NULL, *input = NULL, *result = NULL;
    int error = 0, keep_alive;

    wd__py_enter(thr, interp);
    if (thr->own_cwd && app != NULL && app->dir_fd != thr->dir_fd && fchdir(app->dir_fd) == 0)
        thr->dir_fd = app->dir_fd;
    r = PyObject_New(wd_resp_t, &wd__py_resp_type); /* new: start_response itself */
    if (r == NULL) {
        PyErr_Clear();
        wd_log_error("[req %s] out of memory", req->id);
        return 0;
    }
    memset((char *)r + sizeof(PyObject), 0, sizeof *r - sizeof(PyObject));
    r->req = req;
    r->thr = thr;
    req->status = 0;
    if (ambiguous)
        log_ambiguous(req);
    if (app == NULL || ambiguous || queue_timed_out(req)) {
        /* No mount takes the path, and the group has no app of its own; the path names two; or
         * queue-timeout. */
        keep_alive = ambiguous     ? send_canned(r, 400, WD_FCGI_REQUEST_COMPLETE)
                     : app == NULL ? send_canned(r, 404, WD_FCGI_REQUEST_COMPLETE)
                                   : send_canned(r, 504, WD_FCGI_OVERLOADED);
        r->req = NULL;
        Py_DECREF(r);
        return keep_alive;
    }
    /* Released: the loop reads py_thread once it sees py_running set (pool.c: log_stuck_stack).
     * A plain store on x86 and arm64's stlr: nothing a request pays for. thr->ident is the
     * thread's own, written once before its first request (pool.c), and read by the loop there
     * too: not written again. */
    req->py_thread = thr->ident;
    atomic_store_explicit(&req->py_running, 1, memory_order_release);
    thr->serving = req->seq;
    if (thr->running != NULL) {
        wd_slice_t m, u;

        wd__py_request_target(req, &m, &u);
        wd_score_running_begin(thr->running, req->t_start_ns, req->id, m.p ? m.p : "", m.n,
                               u.p ? u.p : "", u.n);
    }
    wd__py_gil_busy(1);
    req->out->spill_failed = spill_failed;
    req->out->spill_failed_data = r;
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
    /* Before close(), which may block: see wd_req_t.whole (FastCGI's END_REQUEST comes after). */
    atomic_store_explicit(&req->whole,
                          !error && r->head_sent && !r->failed && !r->client_gone &&
                              body_whole(r) && req->kind != WD_REQ_FCGI,
                          memory_order_release);
    if (result != NULL)
        close_result(r, result, &error);
    wd__py_resp_end_writes(r);
    req->out->spill_failed = NULL;
    if (error && !r->head_sent && !r->client_gone)
        keep_alive =
            send_canned(r, atomic_load_explicit(&req->timed_out, memory_order_relaxed) ? 504 : 500,
                        WD_FCGI_REQUEST_COMPLETE);
    else if (error)
        keep_alive = r->head_sent && !r->client_gone && !body_whole(r) ? WD_OUT_RESET : 0;
    else
        keep_alive = finish(r);
    /* Cut short, not merely cut at its Content-Length (the access log says so): the app failed,
     * or the client went before the answer's end (a Content-Length not all sent, or no length:
     * the end, a chunked body's last chunk or the close, never reached it). */
    req->cut = r->head_sent && (error || r->failed || r->client_gone) && !body_whole(r);

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
    atomic_store_explicit(&req->py_running, 0, memory_order_relaxed);
    thr->serving = 0;
    if (thr->running != NULL)
        wd_score_running_end(thr->running);
    wd__py_gil_busy(-1);
    if (atomic_load_explicit(&req->timed_out, memory_order_relaxed))
        PyThreadState_SetAsyncExc(req->py_thread, NULL);
    return keep_alive;
}

void wd__py_raise_timeout(PyThreadState **ts, uint64_t seq)
{
    /* With the GIL held, serving cannot change under us: if it is seq, the thread is still
     * inside this request (seq is the worker's, one a request). Not by the ident the loop read
     * of the request: a thread that took it but waits for the GIL has not written it yet
     * (wd_py_interrupt). The exception is raised when the thread next runs Python code; a
     * thread blocked in C (a sleep, a socket) notices it only once that call returns.
     * PyThreadState_SetAsyncExc looks for the thread in the current interpreter: the caller's
     * state in the interpreter the thread serves becomes current for the call. */
    for (int i = 0; i < wd__py.n_threads; i++) {
        const wd_py_thread_t *thr = &wd__py.threads[i];

        if (thr->serving == seq) {
            PyThreadState *prev = PyThreadState_Swap(ts[thr->cur]);

            PyThreadState_SetAsyncExc(thr->ident, exc_request_timeout);
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
    if (s_close == NULL || wd__py_file_wrapper_init() < 0 || PyType_Ready(&wd__py_resp_type) < 0)
        return -1;
    return 0;
}
