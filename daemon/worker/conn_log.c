/* The access log line of a finished request (combined log format, plus the duration and the
 * request id). Part of the connection module (conn.h); only the loop thread runs it. */
#include "conn.h"
#include "conn_int.h"
#include "log.h"
#include "../../protocol/response.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static wd_slice_t uwsgi_var(const wd_uwsgi_req_t *u, const char *name)
{
    wd_uwsgi_iter_t it;
    wd_slice_t k, v, none = {"", 0};
    size_t n = strlen(name);

    wd_uwsgi_iter_init(&it, u);
    while (wd_uwsgi_iter_next(&it, &k, &v))
        if (k.n == n && memcmp(k.p, name, n) == 0)
            return v;
    return none;
}

static wd_slice_t fcgi_var(const wd_fcgi_req_t *f, const char *name)
{
    wd_fcgi_nv_iter_t it;
    wd_slice_t k, v, none = {"", 0};
    size_t n = strlen(name);

    wd_fcgi_nv_iter_init(&it, f->params, f->params_len);
    while (wd_fcgi_nv_iter_next(&it, &k, &v))
        if (k.n == n && memcmp(k.p, name, n) == 0)
            return v;
    return none;
}

static wd_slice_t http_header(const wd_http_t *h, const char *lower)
{
    wd_slice_t none = {"", 0};

    for (unsigned i = 0; i < h->n_headers; i++) {
        wd_slice_t name = wd_http_slice(h, h->headers[i].name);

        if (wd_slice_ieq(name.p, name.n, lower))
            return wd_http_slice(h, h->headers[i].value);
    }
    return none;
}

/* How long the dispatched request ran to end (its finish, or now: 0). */
static uint64_t ran_to(const wd_conn_t *c, uint64_t end)
{
    if (end == 0)
        end = wd_now_ns();
    return end > c->req.t_start_ns ? end - c->req.t_start_ns : 0;
}

/* How long the dispatched request ran: to its finish, which the loop may learn later (a lazy
 * one, see wd_out_finish). */
uint64_t wd__conn_ran_ns(const wd_conn_t *c)
{
    return ran_to(c, c->out.finished_ns);
}

/* A line, built with its bounds checked. Each field goes in whole or not at all (a field that
 * does not fit is taken back: never a JSON string without its end), and each value is capped
 * (FIELD_CAP) so that every field fits in the line's buffer. */
typedef struct lbuf {
    char *p;
    size_t cap, len;
    int full;
} lbuf_t;

/* The most bytes a value takes in a line, escapes included: a client's URI, Referer or
 * User-Agent of any length makes a line of at most about 5 KiB. */
enum { CAP_URI = 2048, CAP_REFERER = 1024, CAP_AGENT = 512, CAP_SHORT = 64 };

static void lraw(lbuf_t *b, const char *s, size_t n)
{
    if (b->full || b->len + n + 2 >= b->cap) { /* room kept for the end ("}\n" or "\n") */
        b->full = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Starts a field: where to take it back to. */
static size_t lmark(const lbuf_t *b)
{
    return b->len;
}

/* Ends a field: one that did not fit whole is taken back. */
static void lcommit(lbuf_t *b, size_t mark)
{
    if (b->full) {
        b->len = mark;
        b->full = 0;
    }
}

/* The bytes p[0, n), at most cap bytes of them once escaped. json: a JSON string's inside
 * (quotes, backslashes and control characters escaped, bytes above 0x7e as \u00XX: the
 * request's bytes are not known to be UTF-8, read as latin-1). Else the combined format's, as
 * nginx writes it: '"', '\\' and bytes outside printable ASCII as \xHH, so that a client's
 * header can neither end a field early nor start a line. */
static void lesc(lbuf_t *b, const char *p, size_t n, size_t cap, int json)
{
    size_t used = 0;
    char esc[8];

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        size_t k;

        if (json && (ch == '"' || ch == '\\')) {
            esc[0] = '\\';
            esc[1] = (char)ch;
            k = 2;
        } else if (json && (ch < 0x20 || ch > 0x7e)) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            k = 6;
        } else if (!json && (ch == '"' || ch == '\\' || ch < 0x20 || ch > 0x7e)) {
            snprintf(esc, sizeof esc, "\\x%02X", ch);
            k = 4;
        } else {
            esc[0] = (char)ch;
            k = 1;
        }
        if (used + k > cap)
            return;
        lraw(b, esc, k);
        used += k;
    }
}

static void jfield(lbuf_t *b, const char *name, wd_slice_t v, size_t cap)
{
    size_t mark = lmark(b);

    lraw(b, b->len > 1 ? ", \"" : "\"", b->len > 1 ? 3 : 1);
    lraw(b, name, strlen(name));
    lraw(b, "\": \"", 4);
    lesc(b, v.p ? v.p : "", v.p ? v.n : 0, cap, 1);
    lraw(b, "\"", 1);
    lcommit(b, mark);
}

static void jbool(lbuf_t *b, const char *name, int v)
{
    size_t mark = lmark(b);

    lraw(b, ", \"", 3);
    lraw(b, name, strlen(name));
    lraw(b, "\": ", 3);
    lraw(b, v ? "true" : "false", v ? 4 : 5);
    lcommit(b, mark);
}

static void jnum(lbuf_t *b, const char *name, unsigned long long v)
{
    char num[32];
    int k = snprintf(num, sizeof num, "%llu", v);
    size_t mark = lmark(b);

    lraw(b, ", \"", 3);
    lraw(b, name, strlen(name));
    lraw(b, "\": ", 3);
    lraw(b, num, (size_t)k);
    lcommit(b, mark);
}

static wd_slice_t cstr(const char *s)
{
    return (wd_slice_t){s, strlen(s)};
}

/* access-log-format: json, one object per line for log shippers. */
static void json_line(wd_conn_t *c, int status, uint64_t bytes, int cut, uint64_t ran,
                      wd_slice_t remote, wd_slice_t method, wd_slice_t uri, wd_slice_t ref,
                      wd_slice_t ua)
{
    char line[8192], when[64];
    size_t wl;
    lbuf_t b = {line, sizeof line, 0, 0};
    struct timespec ts;
    struct tm tm;
    const char *q = uri.p ? memchr(uri.p, '?', uri.n) : NULL;
    wd_slice_t path = {uri.p, q ? (size_t)(q - uri.p) : uri.n};
    wd_slice_t query = {q ? q + 1 : "", q ? uri.n - (size_t)(q + 1 - uri.p) : 0};
    uint64_t queued = 0;

    if (c->dispatched && c->req.t_taken_ns > c->req.t_queued_ns)
        queued = c->req.t_taken_ns - c->req.t_queued_ns;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    wl = strftime(when, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wl, sizeof when - wl, ".%06ldZ", (long)(ts.tv_nsec / 1000) % 1000000);
    lraw(&b, "{", 1);
    jfield(&b, "time", cstr(when), CAP_SHORT);
    jfield(&b, "request_id", cstr(c->dispatched ? c->req.id : ""), CAP_SHORT);
    jfield(&b, "group", cstr(c->cs->group->name), CAP_URI);
    jnum(&b, "pid", (unsigned long long)c->cs->pid);
    jfield(&b, "client", remote, CAP_SHORT);
    jfield(&b, "method", method, CAP_SHORT);
    jfield(&b, "path", path, CAP_URI);
    jfield(&b, "query", query, CAP_URI);
    jnum(&b, "status", (unsigned long long)status);
    jnum(&b, "bytes", (unsigned long long)bytes);
    jbool(&b, "completed", !cut);
    jnum(&b, "duration_us", (unsigned long long)(ran / 1000));
    jnum(&b, "queue_us", (unsigned long long)(queued / 1000));
    jfield(&b, "user_agent", ua, CAP_AGENT);
    jfield(&b, "referer", ref, CAP_REFERER);
    memcpy(line + b.len, "}\n", 2);
    wd_log_access(line, b.len + 2);
}

/* A field of the combined format, escaped and capped ("-" when empty), then what follows it. */
static void lfield(lbuf_t *b, wd_slice_t v, size_t cap, const char *after)
{
    if (v.n == 0)
        lraw(b, "-", 1);
    else
        lesc(b, v.p, v.n, cap, 0);
    lraw(b, after, strlen(after));
}

/* The line. bytes: the body's (the combined format counts the body only); ran: how long the
 * dispatched request ran; cut: its answer went out incomplete. Reads nothing the request's
 * thread writes: the caller has read that, as it may (see its callers). */
static void access_line(wd_conn_t *c, int status, uint64_t bytes, int cut, uint64_t ran)
{
    char line[8192], when[64], tail[96];
    lbuf_t b = {line, sizeof line, 0, 0};
    wd_slice_t method = {"-", 1}, uri = {"-", 1}, proto = {"-", 1}, ref = {"", 0}, ua = {"", 0};
    wd_slice_t remote = {c->remote, strlen(c->remote)};
    const wd_http_t *h = wd__conn_http(c);
    time_t now = time(NULL);
    struct tm tm;
    int n;

    if (c->proto == WD_REQ_UWSGI && c->dispatched) {
        method = c->uwsgi.method;
        uri = c->uwsgi.uri;
        proto = c->uwsgi.protocol;
        if (!c->req.vars_untrusted) /* else the peer's own (request.h) */
            remote = uwsgi_var(&c->uwsgi, "REMOTE_ADDR");
        ref = uwsgi_var(&c->uwsgi, "HTTP_REFERER");
        ua = uwsgi_var(&c->uwsgi, "HTTP_USER_AGENT");
    } else if (c->proto == WD_REQ_FCGI && c->dispatched) {
        method = c->fcgi.req.method;
        uri = c->fcgi.req.uri;
        proto = c->fcgi.req.protocol;
        if (!c->req.vars_untrusted)
            remote = fcgi_var(&c->fcgi.req, "REMOTE_ADDR");
        ref = fcgi_var(&c->fcgi.req, "HTTP_REFERER");
        ua = fcgi_var(&c->fcgi.req, "HTTP_USER_AGENT");
    } else if (h != NULL && h->state != WD_HTTP_HEAD) {
        if (c->dispatched && c->req.forwarded) /* a trusted proxy's client (forward.h) */
            remote = (wd_slice_t){c->req.remote_addr, strlen(c->req.remote_addr)};
        static const char *const protos[] = {"HTTP/1.0", "HTTP/1.1", "HTTP/1.2", "HTTP/1.3",
                                             "HTTP/1.4", "HTTP/1.5", "HTTP/1.6", "HTTP/1.7",
                                             "HTTP/1.8", "HTTP/1.9"};

        method = wd_http_method(h);
        uri = wd_http_slice(h, h->url);
        proto.p = protos[h->request_minor % 10];
        proto.n = 8;
        ref = http_header(h, "referer");
        ua = http_header(h, "user-agent");
    }
    if (c->cs->group->access_log_json) {
        json_line(c, status, bytes, cut, ran, remote, method, uri, ref, ua);
        return;
    }
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
    lfield(&b, remote, CAP_SHORT, " - - [");
    lraw(&b, when, strlen(when));
    lraw(&b, "] \"", 3);
    lfield(&b, method, CAP_SHORT, " ");
    lfield(&b, uri, CAP_URI, " ");
    lfield(&b, proto, CAP_SHORT, "\" ");
    n = snprintf(tail, sizeof tail, "%d %llu \"", status, (unsigned long long)bytes);
    lraw(&b, tail, (size_t)n);
    lfield(&b, ref, CAP_REFERER, "\" \"");
    lfield(&b, ua, CAP_AGENT, "\" ");
    n = snprintf(tail, sizeof tail, "%.6f %s%s", (double)ran / 1e9, c->dispatched ? c->req.id : "-",
                 cut ? " cut" : "");
    lraw(&b, tail, (size_t)n);
    b.p[b.len++] = '\n';
    wd_log_access(line, b.len);
}

/* Of the bytes its client got, the body's. */
static uint64_t body_bytes(uint64_t bytes, uint64_t head_len)
{
    return bytes > head_len ? bytes - head_len : 0;
}

void wd__conn_access_log(wd_conn_t *c, int status, uint64_t bytes)
{
    /* The answer went out incomplete: its client went away or stalled past send-timeout, the
     * proxy aborted it, or the app failed after the head. The status is the app's all the same
     * (what its client was told), as nginx's log does; a trailing "cut" says so (Apache's %X).
     * The thread is done with the request (or never had it): what it wrote of it is the
     * loop's to read, with no lock, since the loop learnt its finish (wd_out_is_finished). */
    int cut;

    if (!wd_log_access_enabled())
        return;
    cut = (c->out.aborted && (c->out.lost || !c->out.finished)) || (c->dispatched && c->req.cut);
    if (c->dispatched)
        access_line(c, status, body_bytes(bytes, c->req.head_len), cut, wd__conn_ran_ns(c));
    else
        access_line(c, status, bytes, cut, 0);
}

void wd__conn_access_log_abandoned(wd_conn_t *c, const wd_out_seen_t *seen, uint64_t bytes)
{
    /* seen->sent > 0: the head went out, pushed by the thread after it wrote the status and the
     * head's length, and before the lock under which seen was read. 0: the loop answered 504
     * itself (conn_timeout.c), and the thread may be framing its own head right now. Cut unless
     * the answer had gone out whole (its close() is what never returned). */
    int sent = seen->sent > 0;

    if (!wd_log_access_enabled())
        return;
    access_line(c, sent ? c->req.status : 504, body_bytes(bytes, sent ? c->req.head_len : 0),
                sent && !c->abandoned_whole, ran_to(c, seen->finished_ns));
}
