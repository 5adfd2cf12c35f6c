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

/* How long the dispatched request ran: to its finish, which the loop may learn later (a lazy
 * one, see wd_out_finish). */
uint64_t wd__conn_ran_ns(const wd_conn_t *c)
{
    uint64_t end = c->out.finished_ns ? c->out.finished_ns : wd_now_ns();

    return end > c->req.t_start_ns ? end - c->req.t_start_ns : 0;
}

/* A JSON line, built with its bounds checked: out of room, the line is cut short of the value
 * that did not fit and still closed (never invalid JSON). */
typedef struct jbuf {
    char *p;
    size_t cap, len;
    int full;
} jbuf_t;

static void jraw(jbuf_t *b, const char *s, size_t n)
{
    if (b->full || b->len + n + 2 >= b->cap) { /* room kept for "}\n" */
        b->full = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* A JSON string of the bytes p[0, n): quotes, backslashes and control characters escaped, bytes
 * above 0x7e as \u00XX (the request's bytes are not known to be UTF-8: read as latin-1). */
static void jstr(jbuf_t *b, const char *p, size_t n)
{
    char esc[8];

    jraw(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];

        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            jraw(b, esc, 2);
        } else if (ch < 0x20 || ch > 0x7e) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            jraw(b, esc, 6);
        } else {
            jraw(b, (const char *)&ch, 1);
        }
    }
    jraw(b, "\"", 1);
}

static void jfield(jbuf_t *b, const char *name, wd_slice_t v)
{
    jraw(b, b->len > 1 ? ", \"" : "\"", b->len > 1 ? 3 : 1);
    jraw(b, name, strlen(name));
    jraw(b, "\": ", 3);
    jstr(b, v.p ? v.p : "", v.p ? v.n : 0);
}

static void jbool(jbuf_t *b, const char *name, int v)
{
    jraw(b, ", \"", 3);
    jraw(b, name, strlen(name));
    jraw(b, "\": ", 3);
    jraw(b, v ? "true" : "false", v ? 4 : 5);
}

static void jnum(jbuf_t *b, const char *name, unsigned long long v)
{
    char num[32];
    int k = snprintf(num, sizeof num, "%llu", v);

    jraw(b, ", \"", 3);
    jraw(b, name, strlen(name));
    jraw(b, "\": ", 3);
    jraw(b, num, (size_t)k);
}

static wd_slice_t cstr(const char *s)
{
    return (wd_slice_t){s, strlen(s)};
}

/* access-log-format: json, one object per line for log shippers. */
static void json_line(wd_conn_t *c, int status, uint64_t bytes, int cut, wd_slice_t remote,
                      wd_slice_t method, wd_slice_t uri, wd_slice_t ref, wd_slice_t ua)
{
    char line[8192], when[64];
    size_t wl;
    jbuf_t b = {line, sizeof line, 0, 0};
    struct timespec ts;
    struct tm tm;
    const char *q = uri.p ? memchr(uri.p, '?', uri.n) : NULL;
    wd_slice_t path = {uri.p, q ? (size_t)(q - uri.p) : uri.n};
    wd_slice_t query = {q ? q + 1 : "", q ? uri.n - (size_t)(q + 1 - uri.p) : 0};
    uint64_t ran = c->dispatched ? wd__conn_ran_ns(c) : 0, queued = 0;

    if (c->dispatched && c->req.t_taken_ns > c->req.t_queued_ns)
        queued = c->req.t_taken_ns - c->req.t_queued_ns;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    wl = strftime(when, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wl, sizeof when - wl, ".%06ldZ", (long)(ts.tv_nsec / 1000) % 1000000);
    jraw(&b, "{", 1);
    jfield(&b, "time", cstr(when));
    jfield(&b, "request_id", cstr(c->dispatched ? c->req.id : ""));
    jfield(&b, "group", cstr(c->cs->group->name));
    jnum(&b, "pid", (unsigned long long)c->cs->pid);
    jfield(&b, "client", remote);
    jfield(&b, "method", method);
    jfield(&b, "path", path);
    jfield(&b, "query", query);
    jnum(&b, "status", (unsigned long long)status);
    jnum(&b, "bytes", (unsigned long long)bytes);
    jbool(&b, "completed", !cut);
    jnum(&b, "duration_us", (unsigned long long)(ran / 1000));
    jnum(&b, "queue_us", (unsigned long long)(queued / 1000));
    jfield(&b, "user_agent", ua);
    jfield(&b, "referer", ref);
    memcpy(line + b.len, "}\n", 2);
    wd_log_access(line, b.len + 2);
}

void wd__conn_access_log(wd_conn_t *c, int status, uint64_t bytes)
{
    char line[4096], when[64];
    wd_slice_t method = {"-", 1}, uri = {"-", 1}, proto = {"-", 1}, ref = {"", 0}, ua = {"", 0};
    wd_slice_t remote = {c->remote, strlen(c->remote)};
    const wd_http_t *h = wd__conn_http(c);
    time_t now = time(NULL);
    struct tm tm;
    double secs = 0;
    /* The answer went out incomplete: its client went away or stalled past send-timeout, the
     * proxy aborted it, or the app failed after the head. The status is the app's all the same
     * (what its client was told), as nginx's log does; a trailing "cut" says so (Apache's %X).
     * Not the 504 the loop answered for a thread stuck before it sent a byte (conn_timeout.c). */
    int cut, n;

    if (!wd_log_access_enabled())
        return;
    cut =
        ((c->out.aborted && (c->out.lost || !c->out.finished)) || (c->dispatched && c->req.cut)) &&
        !(c->abandoned && c->out.sent == 0);
    if (c->proto == WD_REQ_UWSGI && c->dispatched) {
        method = c->uwsgi.method;
        uri = c->uwsgi.uri;
        proto = c->uwsgi.protocol;
        remote = uwsgi_var(&c->uwsgi, "REMOTE_ADDR");
        ref = uwsgi_var(&c->uwsgi, "HTTP_REFERER");
        ua = uwsgi_var(&c->uwsgi, "HTTP_USER_AGENT");
    } else if (c->proto == WD_REQ_FCGI && c->dispatched) {
        method = c->fcgi.req.method;
        uri = c->fcgi.req.uri;
        proto = c->fcgi.req.protocol;
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
    if (c->dispatched) {
        secs = (double)wd__conn_ran_ns(c) / 1e9;
        /* Combined log format counts the body only. */
        bytes = bytes > c->req.head_len ? bytes - c->req.head_len : 0;
    }
    if (c->cs->group->access_log_json) {
        json_line(c, status, bytes, cut, remote, method, uri, ref, ua);
        return;
    }
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
    n = snprintf(line, sizeof line,
                 "%.*s - - [%s] \"%.*s %.*s %.*s\" %d %llu \"%.*s\" \"%.*s\" %.6f %s%s\n",
                 (int)(remote.n ? remote.n : 1), remote.n ? remote.p : "-", when, (int)method.n,
                 method.p, (int)(uri.n > 2048 ? 2048 : uri.n), uri.p, (int)proto.n, proto.p, status,
                 (unsigned long long)bytes, (int)(ref.n ? ref.n : 1), ref.n ? ref.p : "-",
                 (int)(ua.n ? (ua.n > 512 ? 512 : ua.n) : 1), ua.n ? ua.p : "-", secs,
                 c->dispatched ? c->req.id : "-", cut ? " cut" : "");
    if (n > 0)
        wd_log_access(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
