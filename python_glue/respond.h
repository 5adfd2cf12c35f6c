/* Between the files that make a response: start_response.c (start_response, write, framing),
 * file_wrapper.c and respond.c (iterating the result, serving). GIL held throughout. */
#ifndef WD_PYTHON_GLUE_RESPOND_H
#define WD_PYTHON_GLUE_RESPOND_H

#include "glue_int.h"

#include <sys/uio.h>

#define MAX_PIECES 32 /* body pieces handed over in one writev */

/* Ownership: every PyObject * below is borrowed unless its comment says "new" (a reference the
 * function owns and releases) or "strong" (held by a struct or a global until it is freed). */

typedef struct wd_file_wrapper {
    PyObject_HEAD
    PyObject *filelike; /* strong */
    Py_ssize_t blksize;
} wd_file_wrapper_t;

typedef struct wd_resp {
    PyObject_HEAD
    wd_req_t *req;       /* NULL once the request is over */
    wd_py_thread_t *thr; /* thr->head holds the head being built */
    int status;          /* 0 until start_response succeeded */
    size_t head_len;     /* status line + the app's headers in thr->head */
    size_t head_total;   /* with our headers and the blank line, once framed */
    int head_sent;
    int has_cl;   /* Content-Length known (the app's, or ours) */
    int has_date; /* the app sent a Date header */
    uint64_t cl;
    uint64_t body_sent; /* body bytes handed over (before chunk framing) */
    int no_body;        /* HEAD, 1xx, 204, 304 */
    int chunked;
    int keep_alive; /* the verdict once the head is framed */
    int failed;     /* the response cannot be completed: close the connection */
    int client_gone;
    /* An app may call write() from a thread of its own (PEP 3333 does not forbid it). A push
     * that waits for the loop lets the GIL go halfway through, so pushes take turns (pushing,
     * guarded by the GIL), and once the serving thread ends the response (finishing) write()
     * and start_response refuse: a push still on its way would have used the request after it,
     * and one ending later would have cut into the last chunk. */
    int pushing;          /* turns taken by `pusher` (nested: write() then its push) */
    unsigned long pusher; /* the thread holding the turn */
    int turn_waiters;     /* threads waiting for the turn (guarded by the GIL) */
    unsigned turn_gen;    /* turns given back while some waited (guarded by turn_lock too) */
    int finishing;
    char mistake[256]; /* what the application did wrong, for the log line */
} wd_resp_t;

/* start_response itself: one per request, callable; its write() is the legacy write. */
extern PyTypeObject wd__py_resp_type;

int wd__py_file_wrapper_init(void);

int wd__py_resp_is_http(const wd_resp_t *r);
/* "METHOD URI" of the request, for log lines (buf). */
const char *wd__py_resp_line(const wd_resp_t *r, char *buf, size_t cap);
/* Records an application mistake and raises exc with the same text. Returns -1. */
int wd__py_resp_mistake(wd_resp_t *r, PyObject *exc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* What an out-buffer call's result means for the response: -EPIPE, the client is gone; another
 * error, the response cannot be completed (logged once, here). */
void wd__py_resp_out_result(wd_resp_t *r, int rc, const char *what);
/* Hands iov to the out buffer: into memory with the GIL kept when it fits, otherwise (a spill
 * to the temp file, or waiting for the loop to drain) with the GIL released. lend: NULL, or
 * beside iov, the pieces the buffer may keep by reference (wd_out_writev; each obj with a
 * reference of the caller's, which the buffer takes over for the pieces it keeps; FastCGI's
 * records cut them up, and each part is lent with a reference of its own: the caller's all stay
 * the caller's). */
int wd__py_resp_push(wd_resp_t *r, struct iovec *iov, int n, wd_out_lend_t *lend);
/* The same bytes as they are: no FastCGI records around them (the end of a FastCGI response). */
int wd__py_resp_push_raw(wd_resp_t *r, struct iovec *iov, int n, wd_out_lend_t *lend);
/* The serving thread ends the response: write() and start_response refuse from now on, and a
 * push another thread has on its way is waited for. */
void wd__py_resp_end_writes(wd_resp_t *r);
/* Completes the head in thr->head: our framing headers and the blank line. known is the body
 * length when it is known before anything is sent, -1 otherwise. */
void wd__py_resp_frame_head(wd_resp_t *r, int64_t known);
/* Sends the head if it is not sent yet, then the pieces as body bytes (cut at Content-Length,
 * framed as one chunk when chunked). The pieces may be empty. objs: NULL, or beside pieces the
 * bytes objects they are the storage of (borrowed): a large one is lent, not copied (lent.c). */
int wd__py_resp_send_body(wd_resp_t *r, const wd_slice_t *pieces, PyObject *const *objs, int n);

/* Looks up an attribute that may be missing without raising: 1 found (*out: new), 0 missing
 * (*out NULL), -1 error. */
static inline int wd__py_get_optional_attr(PyObject *o, PyObject *name, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(o, name, out);
#else
    return _PyObject_LookupAttr(o, name, out);
#endif
}

#endif
