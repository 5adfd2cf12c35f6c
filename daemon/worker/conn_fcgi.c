/* The FastCGI responder role (protocol/fastcgi.h) on a connection: records in, one request at a
 * time, its PARAMS put together and its STDIN taken as the body, management records answered by
 * the loop. The response (STDOUT records, END_REQUEST) is framed by the Python thread
 * (python_glue/start_response.c) or, for the loop's own answers, by conn_answer.c. Part of the
 * connection module (conn.h); loop thread only. */
#include "conn.h"
#include "conn_int.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Writes a management answer (GET_VALUES_RESULT, UNKNOWN_TYPE, an END_REQUEST that refuses a
 * request) at once: a few bytes, between requests. The socket may not take them: the end of a
 * large answer can still fill it when the next records are taken (helper-53: a GET_VALUES after
 * a 3 MB answer got nothing, the connection closed, 4-6 times in 6). What it does not take waits
 * for POLLOUT, and the records after it wait for it (wd__conn_fcgi_process), so that answers go
 * out in order. 0, or -1 when the connection is closed (an error, or a peer that sends more
 * management records than UNSENT_MAX bytes of answers while it reads none). */
#define UNSENT_MAX 256

static int send_now(wd_conn_t *c, const char *p, size_t n)
{
    ssize_t w = 0;

    if (c->fcgi.unsent_len == 0) {
        do
            w = send(c->fd, p, n, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w == (ssize_t)n)
            return 0;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            wd_conn_close(c);
            return -1;
        }
        if (w < 0)
            w = 0;
    }
    if (c->fcgi.unsent_len + (n - (size_t)w) > UNSENT_MAX) {
        wd_log_peer(WD_LOG_WARN,
                    "peer %s: FastCGI management records keep coming and their answers are not "
                    "read: connection closed",
                    wd__conn_peer(c));
        wd_conn_close(c);
        return -1;
    }
    if (c->fcgi.unsent == NULL)
        c->fcgi.unsent = xmalloc(UNSENT_MAX);
    memcpy(c->fcgi.unsent + c->fcgi.unsent_len, p + w, n - (size_t)w);
    c->fcgi.unsent_len += (uint16_t)(n - (size_t)w);
    /* POLLOUT only: a FIN meanwhile (POLLRDHUP, level-triggered) would wake the loop at every
     * turn, for nothing to do until the peer reads (helper-55: one CPU until keepalive-timeout).
     * A hang-up or error is reported with POLLOUT's watch all the same. */
    wd__conn_set_events(c, UV_WRITABLE);
    return 0;
}

int wd__conn_fcgi_unsent(const wd_conn_t *c)
{
    return c->proto == WD_REQ_FCGI && c->fcgi.unsent_len > 0;
}

int wd__conn_fcgi_send_unsent(wd_conn_t *c)
{
    ssize_t w;

    do
        w = send(c->fd, c->fcgi.unsent, c->fcgi.unsent_len, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 1;
    if (w < 0) {
        wd_conn_close(c);
        return -1;
    }
    if ((size_t)w < c->fcgi.unsent_len) {
        memmove(c->fcgi.unsent, c->fcgi.unsent + w, c->fcgi.unsent_len - (size_t)w);
        c->fcgi.unsent_len -= (uint16_t)w;
        return 1;
    }
    c->fcgi.unsent_len = 0;
    if (c->fcgi.unsent_close) {
        wd_conn_close(c);
        return -1;
    }
    wd__conn_set_events(c, UV_READABLE | UV_DISCONNECT);
    return 0;
}

void wd__conn_fcgi_free(wd_conn_t *c)
{
    free(c->fcgi.unsent);
    c->fcgi.unsent = NULL;
    c->fcgi.unsent_len = 0;
    c->fcgi.unsent_close = 0;
}

static int refuse(wd_conn_t *c, uint16_t id, int protocol_status)
{
    char end[16];

    return send_now(c, end, wd_fcgi_end_request(end, id, 0, protocol_status));
}

/* Ends request id with END_REQUEST, then closes the connection unless its BEGIN_REQUEST asked
 * to keep it (the spec: without FCGI_KEEP_CONN the application closes the connection after its
 * answer). 0, or -1 when the connection is closed. */
static int refuse_then(wd_conn_t *c, uint16_t id, int protocol_status, int keep_conn)
{
    if (refuse(c, id, protocol_status) < 0)
        return -1;
    if (keep_conn)
        return 0;
    if (c->fcgi.unsent_len > 0) {
        c->fcgi.unsent_close = 1; /* once it is sent */
        return -1;
    }
    wd_conn_close(c);
    return -1;
}

static int management(wd_conn_t *c, const wd_fcgi_record_t *rec)
{
    char out[WD_FCGI_GET_VALUES_RESULT_MAX];
    /* What the proxy may send this worker at once: connections (one request on each), and the
     * requests its threads run (more wait in the queue). */
    const wd_group_conf_t *g = c->cs->group;
    wd_fcgi_values_t v = {.max_conns = g->max_connections ? (uint32_t)g->max_connections : 1024,
                          .max_reqs = (uint32_t)g->threads};

    if (rec->type == WD_FCGI_GET_VALUES)
        return send_now(c, out, wd_fcgi_get_values_result(out, rec->content.p, rec->content.n, &v));
    return send_now(c, out, wd_fcgi_unknown_type(out, rec->type));
}

static int params_add(wd_conn_t *c, wd_slice_t content)
{
    const wd_group_conf_t *g = c->cs->group;

    if (c->fcgi.params_len + content.n > g->header_buffer_size) {
        wd_log_peer(WD_LOG_WARN, "peer %s: FastCGI PARAMS larger than header-buffer-size (%llu)",
                    wd__conn_peer(c), (unsigned long long)g->header_buffer_size);
        wd__conn_fail(c, 431);
        return -1;
    }
    if (c->fcgi.params_len + content.n > c->fcgi.params_cap) {
        size_t cap = c->fcgi.params_cap ? c->fcgi.params_cap : 4096;

        while (cap < c->fcgi.params_len + content.n)
            cap *= 2;
        c->fcgi.params = xrealloc(c->fcgi.params, cap);
        c->fcgi.params_cap = cap;
    }
    memcpy(c->fcgi.params + c->fcgi.params_len, content.p, content.n);
    c->fcgi.params_len += content.n;
    return 0;
}

/* The PARAMS stream ended: the request's variables, and the body it announces. */
static int params_end(wd_conn_t *c)
{
    wd_fcgi_error_t e = wd_fcgi_params_parse(c->fcgi.params, c->fcgi.params_len, &c->fcgi.req);

    if (e != WD_FCGI_OK) {
        wd_log_peer(WD_LOG_WARN, "peer %s: malformed FastCGI PARAMS on %s: %s", wd__conn_peer(c),
                    c->l->spec, wd_fcgi_strerror(e));
        wd__conn_fail(c, 400);
        return -1;
    }
    c->fcgi.params_done = 1;
    c->body_expect = c->fcgi.req.content_length;
    if (wd__conn_body_refused(c, c->body_expect))
        return -1;
    c->state = WD_CONN_BODY;
    /* The head is whole: body-timeout from here, re-armed by each read that brings body bytes
     * (conn.c: read_once). */
    wd__conn_timer(c, c->cs->group->body_timeout);
    return 0;
}

/* n more bytes of STDIN would run past the CONTENT_LENGTH the request announced: answered 400,
 * 1. */
static int stdin_too_long(wd_conn_t *c, size_t n)
{
    if (!c->fcgi.req.length_known || c->body_len + n <= c->body_expect)
        return 0;
    wd_log_peer(WD_LOG_WARN, "peer %s: FastCGI STDIN longer than its CONTENT_LENGTH (%llu)",
                wd__conn_peer(c), (unsigned long long)c->body_expect);
    wd__conn_fail(c, 400);
    return 1;
}

/* The STDIN stream ended before the CONTENT_LENGTH the request announced: answered 400, 1. A
 * body cut short is not handed to the app as if whole. */
static int stdin_too_short(wd_conn_t *c)
{
    if (!c->fcgi.req.length_known || c->body_len == c->body_expect)
        return 0;
    wd_log_peer(
        WD_LOG_WARN, "peer %s: FastCGI STDIN ended at %llu bytes of its CONTENT_LENGTH (%llu)",
        wd__conn_peer(c), (unsigned long long)c->body_len, (unsigned long long)c->body_expect);
    wd__conn_fail(c, 400);
    return 1;
}

/* One record of the current request: 1 when the request is complete, 0 to go on, -1 answered. */
static int request_record(wd_conn_t *c, const wd_fcgi_record_t *rec)
{
    switch (rec->type) {
    case WD_FCGI_PARAMS:
        if (c->fcgi.params_done)
            return 0; /* nothing after the stream's end */
        if (rec->content.n > 0)
            return params_add(c, rec->content);
        return params_end(c);
    case WD_FCGI_STDIN:
        if (!c->fcgi.params_done) {
            /* The body's bytes before the variables' end: dropped, they would cut the body short
             * without a word. */
            wd_log_peer(WD_LOG_WARN, "peer %s: FastCGI STDIN before the end of PARAMS on %s",
                        wd__conn_peer(c), c->l->spec);
            wd__conn_fail(c, 400);
            return -1;
        }
        if (rec->content.n == 0)
            return stdin_too_short(c) ? -1 : 1;
        if (stdin_too_long(c, rec->content.n))
            return -1;
        if (wd__conn_body_append(c, rec->content.p, rec->content.n) < 0) {
            wd__conn_fail(c, c->body_error);
            return -1;
        }
        return 0;
    case WD_FCGI_ABORT_REQUEST:
        /* Not dispatched yet: nothing ran; the request ends here, and so does the connection if
         * the proxy did not ask to keep it. */
        wd_log_peer(WD_LOG_INFO, "peer %s: FastCGI request %u aborted by the proxy before it ran",
                    wd__conn_peer(c), rec->request_id);
        wd__conn_body_clear(c);
        wd__conn_fcgi_reset(c);
        c->state = WD_CONN_HEAD;
        if (refuse_then(c, rec->request_id, WD_FCGI_REQUEST_COMPLETE, c->fcgi.keep_conn) < 0)
            return -1;
        /* Kept: the next request's records get header-timeout from here, and with none buffered
         * the connection waits for keepalive-timeout (wd__conn_fcgi_process). The request's
         * header- or body-timeout ran on and closed it. */
        wd__conn_timer(c, c->cs->group->header_timeout);
        c->head_timed = 1;
        return 0;
    default:
        return 0; /* DATA (the filter role's) */
    }
}

/* What one record asks: 1 the request is complete, 0 go on, -1 the connection was answered or
 * closed. */
static int record(wd_conn_t *c, const wd_fcgi_record_t *rec)
{
    if (rec->request_id == WD_FCGI_NULL_REQUEST_ID)
        return management(c, rec);
    if (rec->type == WD_FCGI_BEGIN_REQUEST) {
        if (c->fcgi.active && rec->request_id == c->fcgi.id) {
            /* A second BEGIN_REQUEST of the request being read: its records could be either's,
             * and an END_REQUEST would end both. */
            wd_log_peer(WD_LOG_WARN, "peer %s: FastCGI BEGIN_REQUEST %u again before its end on %s",
                        wd__conn_peer(c), rec->request_id, c->l->spec);
            wd_conn_close(c);
            return -1;
        }
        if (c->fcgi.active)
            return refuse(c, rec->request_id, WD_FCGI_CANT_MPX_CONN);
        if (rec->role != WD_FCGI_RESPONDER)
            return refuse_then(c, rec->request_id, WD_FCGI_UNKNOWN_ROLE, rec->keep_conn);
        c->fcgi.active = 1;
        c->fcgi.id = rec->request_id;
        c->fcgi.keep_conn = rec->keep_conn;
        c->fcgi.params_done = 0;
        c->fcgi.params_len = 0;
        c->body_expect = 0;
        return 0;
    }
    if (!c->fcgi.active || rec->request_id != c->fcgi.id)
        return 0; /* a record of no request of ours: ignored, as the spec says */
    return request_record(c, rec);
}

/* A STDIN record of the request whose body is being read, not whole in the buffer, is taken as
 * it comes: its header now, its content as it is read (here, or straight into the body's buffer:
 * wd__conn_body_direct), its padding skipped. Waiting for whole records kept up to two of them in
 * the read buffer, copied each record's content out and moved the rest of the buffer down after
 * every read. Both ways a worker reads about one record a read syscall (nginx writes them one by
 * one: 32 reads a 1 MiB body, strace -c of a worker); taken as it comes, a record's content is
 * read straight into the body's buffer, with its padding and the next header after it, and the
 * records after it, guessed to be like it (readv, conn.c: fcgi_guess). With python_glue's lending
 * of FastCGI answers (start_response.c: fcgi_push), a 1 MiB POST echoed through nginx's
 * fastcgi_pass (bench/run --tests post, 3 alternated pairs) went from 1,746, 2,114 and 1,552 us of
 * CPU a request to 1,299, 1,222 and 1,121 (proxy_pass: 820-1,116). 1: the record's header was
 * taken, 0: parse the record whole (another record, a whole one, or not enough bytes for a header),
 * -1: answered. */
static int stdin_start(wd_conn_t *c)
{
    size_t avail = c->len - c->parsed;
    wd_fcgi_record_t rec;

    if (!c->fcgi.active || !c->fcgi.params_done || c->state != WD_CONN_BODY ||
        wd_fcgi_stdin_header(c->buf + c->parsed, avail, &rec) != WD_FCGI_HEADER_SIZE ||
        rec.request_id != c->fcgi.id || rec.content.n == 0 ||
        avail >= WD_FCGI_HEADER_SIZE + rec.content.n + rec.padding)
        return 0;
    if (stdin_too_long(c, rec.content.n))
        return -1;
    c->parsed += WD_FCGI_HEADER_SIZE;
    c->fcgi.stdin_left = rec.content.n;
    c->fcgi.stdin_skip = rec.padding;
    c->fcgi.stdin_len = rec.content.n;
    return 1;
}

/* The bytes of the STDIN record being taken that are in the buffer: 1 some were taken, 0 none
 * were there, -1 answered (the body refused: 413, or its file failed: 500). */
static int stdin_more(wd_conn_t *c)
{
    size_t avail = c->len - c->parsed, n;

    if (avail == 0)
        return 0;
    if (c->fcgi.stdin_left > 0) {
        n = avail < c->fcgi.stdin_left ? avail : c->fcgi.stdin_left;
        if (wd__conn_body_append(c, c->buf + c->parsed, n) < 0) {
            wd__conn_fail(c, c->body_error);
            return -1;
        }
        c->fcgi.stdin_left -= (uint32_t)n;
    } else {
        n = avail < c->fcgi.stdin_skip ? avail : c->fcgi.stdin_skip;
        c->fcgi.stdin_skip -= (uint32_t)n;
    }
    c->parsed += n;
    return 1;
}

void wd__conn_fcgi_stdin_read(wd_conn_t *c, size_t n)
{
    c->fcgi.stdin_left -= (uint32_t)n;
}

int wd__conn_fcgi_stdin_guessed(wd_conn_t *c, const char *p, size_t n)
{
    uint32_t pad = c->fcgi.stdin_skip, len = c->fcgi.stdin_len;
    wd_fcgi_record_t rec;

    if (c->state != WD_CONN_BODY || c->fcgi.stdin_left != 0 || n != pad + WD_FCGI_HEADER_SIZE ||
        wd_fcgi_stdin_header(p + pad, WD_FCGI_HEADER_SIZE, &rec) != WD_FCGI_HEADER_SIZE ||
        rec.request_id != c->fcgi.id || rec.content.n != len || rec.padding != pad ||
        (c->fcgi.req.length_known && c->body_len + len > c->body_expect))
        return 0;
    c->fcgi.stdin_left = len; /* its padding, stdin_skip, is the same */
    return 1;
}

int wd__conn_fcgi_process(wd_conn_t *c)
{
    for (;;) {
        wd_fcgi_record_t rec;
        int r, done;

        if (c->fcgi.unsent_len > 0)
            break; /* the records after an answer still unsent wait for it (send_now) */

        if (c->fcgi.stdin_left > 0 || c->fcgi.stdin_skip > 0) {
            r = stdin_more(c);
            if (r == 0)
                break;
            if (r < 0)
                return -1;
            continue;
        }
        r = stdin_start(c);
        if (r < 0)
            return -1;
        if (r > 0)
            continue;
        r = wd_fcgi_record(c->buf + c->parsed, c->len - c->parsed, &rec);

        if (r == WD_PARSE_AGAIN)
            break;
        if (r == WD_PARSE_ERROR) {
            wd_log_peer(WD_LOG_WARN, "peer %s: malformed FastCGI record on %s: %s",
                        wd__conn_peer(c), c->l->spec, wd_fcgi_strerror(rec.error));
            wd_conn_close(c);
            return -1;
        }
        done = record(c, &rec);
        c->parsed += (size_t)r;
        if (done != 0) {
            if (done > 0)
                c->head_end = c->parsed;
            return done;
        }
    }
    /* Records taken are copied out: the next read reuses their space. */
    memmove(c->buf, c->buf + c->parsed, c->len - c->parsed);
    c->len -= c->parsed;
    c->parsed = 0;
    if (c->len == 0 && !c->fcgi.active && c->head_timed && c->state == WD_CONN_HEAD) {
        /* management records alone (GET_VALUES) and no request on its way: the connection
         * waits for one as any kept connection does (it was closed at header-timeout) */
        c->head_timed = 0;
        wd__conn_timer(c, wd__conn_idle_timeout(c->cs));
    }
    return 0;
}

/* Whether the whole records read past the request (from c->parsed) end it: an ABORT_REQUEST of
 * its id, or a malformed record; logged. req_id: the request's, or "-" before it has one. */
static int ended_in_buffer(wd_conn_t *c, const char *req_id, const char *when)
{
    size_t at = c->parsed;

    for (;;) {
        wd_fcgi_record_t rec;
        int r = wd_fcgi_record(c->buf + at, c->len - at, &rec);

        if (r == WD_PARSE_AGAIN)
            return 0;
        if (r == WD_PARSE_ERROR) {
            wd_log_peer(WD_LOG_WARN, "[req %s] peer %s: malformed FastCGI record on %s: %s", req_id,
                        wd__conn_peer(c), c->l->spec, wd_fcgi_strerror(rec.error));
            return 1;
        }
        /* Records after a BEGIN_REQUEST are the next request's, even of the same id (nginx
         * numbers every request 1): its ABORT_REQUEST is not this one's. */
        if (rec.type == WD_FCGI_BEGIN_REQUEST)
            return 0;
        if (rec.type == WD_FCGI_ABORT_REQUEST && rec.request_id == c->fcgi.id) {
            wd_log_peer(WD_LOG_INFO, "[req %s] peer %s: FastCGI request %u aborted by the proxy %s",
                        req_id, wd__conn_peer(c), rec.request_id, when);
            return 1;
        }
        at += (size_t)r;
    }
}

int wd__conn_fcgi_aborted_early(wd_conn_t *c)
{
    return c->parsed < c->len && ended_in_buffer(c, "-", "before it ran");
}

int wd__conn_fcgi_watch(wd_conn_t *c)
{
    ssize_t n = 0;

    if (c->len < c->cap) {
        do
            n = read(c->fd, c->buf + c->len, c->cap - c->len);
        while (n < 0 && errno == EINTR);
    }
    if (n == 0 && c->l->is_unix && !wd__conn_peer_gone(c)) {
        /* A FIN and no hang-up: the client shut its sending side down after its request
         * (shutdown(SHUT_WR)) and reads the answer; a proxy that aborts closes the socket, and a
         * unix socket tells the two apart. Over TCP they look the same until a write is answered
         * with a reset, and a FIN is the abort the FastCGI spec describes (the Web server closes
         * the transport connection): there it aborts. */
        c->peer_shut = 1;
        return 0;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        wd_log_peer(WD_LOG_INFO,
                    "[req %s] peer %s: the proxy closed the FastCGI connection: request aborted",
                    c->req.id, wd__conn_peer(c));
        return 1;
    }
    if (n > 0)
        c->len += (size_t)n;
    return ended_in_buffer(c, c->req.id,
                           atomic_load_explicit(&c->req.py_running, memory_order_relaxed)
                               ? "while it ran"
                               : "before a thread took it");
}

/* Between requests (conn.c: conn_trim): PARAMS that grew past the usual request's go back. */
#define PARAMS_IDLE_KEEP 4096

size_t wd__conn_fcgi_idle(wd_conn_t *c, int whole)
{
    size_t n = c->fcgi.params_cap;

    if (n == 0 || (!whole && n <= PARAMS_IDLE_KEEP) || c->fcgi.params_len != 0)
        return 0;
    free(c->fcgi.params);
    c->fcgi.params = NULL;
    c->fcgi.params_cap = 0;
    return n;
}

void wd__conn_fcgi_reset(wd_conn_t *c)
{
    c->fcgi.active = 0;
    c->fcgi.params_done = 0;
    c->fcgi.params_len = 0;
    c->fcgi.stdin_left = 0;
    c->fcgi.stdin_skip = 0;
    c->fcgi.stdin_len = 0;
}
