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

void wd__conn_access_log(wd_conn_t *c, int status, uint64_t bytes)
{
    char line[4096], when[64];
    wd_slice_t method = {"-", 1}, uri = {"-", 1}, proto = {"-", 1}, ref = {"", 0}, ua = {"", 0};
    wd_slice_t remote = {c->remote, strlen(c->remote)};
    time_t now = time(NULL);
    struct tm tm;
    double secs = 0;
    int n;

    if (!wd_log_access_enabled())
        return;
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
    } else if (c->proto == WD_REQ_HTTP && c->http.state != WD_HTTP_HEAD) {
        if (c->dispatched && c->req.forwarded) /* a trusted proxy's client (forward.h) */
            remote = (wd_slice_t){c->req.remote_addr, strlen(c->req.remote_addr)};
        static const char *const protos[] = {"HTTP/1.0", "HTTP/1.1", "HTTP/1.2", "HTTP/1.3",
                                             "HTTP/1.4", "HTTP/1.5", "HTTP/1.6", "HTTP/1.7",
                                             "HTTP/1.8", "HTTP/1.9"};

        method = wd_http_method(&c->http);
        uri = wd_http_slice(&c->http, c->http.url);
        proto.p = protos[c->http.request_minor % 10];
        proto.n = 8;
        ref = http_header(&c->http, "referer");
        ua = http_header(&c->http, "user-agent");
    }
    if (c->dispatched) {
        secs = (double)wd__conn_ran_ns(c) / 1e9;
        /* Combined log format counts the body only. */
        bytes = bytes > c->req.head_len ? bytes - c->req.head_len : 0;
    }
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
    n = snprintf(line, sizeof line,
                 "%.*s - - [%s] \"%.*s %.*s %.*s\" %d %llu \"%.*s\" \"%.*s\" %.6f %s\n",
                 (int)(remote.n ? remote.n : 1), remote.n ? remote.p : "-", when, (int)method.n,
                 method.p, (int)(uri.n > 2048 ? 2048 : uri.n), uri.p, (int)proto.n, proto.p, status,
                 (unsigned long long)bytes, (int)(ref.n ? ref.n : 1), ref.n ? ref.p : "-",
                 (int)(ua.n ? (ua.n > 512 ? 512 : ua.n) : 1), ua.n ? ua.p : "-", secs,
                 c->dispatched ? c->req.id : "-");
    if (n > 0)
        wd_log_access(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
