/* Turning a connection's bytes into a request, for the uwsgi protocol and HTTP/1.x (FastCGI:
 * conn_fcgi.c): the parsers (protocol/) read the head, the body goes to the body store
 * (conn_body.c), and what the parser refuses is logged and answered here. Loop thread, or a
 * parked Python thread holding the loop lock (conn_park.c). */
#include "conn_int.h"
#include "alloc.h"
#include "log.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* The most of a body buffer allocated from Content-Length before the body arrives. */
#define BODY_PREALLOC 65536

/* --- uwsgi ---------------------------------------------------------------------------------- */

static void uwsgi_error(wd_conn_t *c)
{
    switch (c->uwsgi.error) {
    case WD_UWSGI_EHTTP:
        wd_log_peer(WD_LOG_WARN,
                    "peer %s: plain HTTP request on uwsgi socket %s; point the proxy at it with "
                    "uwsgi_pass (nginx), or set `protocol: http` or `auto` for this listener",
                    wd__conn_peer(c), c->l->spec);
        wd__conn_fail_text(c, 400,
                           "This socket speaks the uwsgi protocol, not HTTP: use "
                           "uwsgi_pass in nginx, or configure the listener with "
                           "protocol: http.\n");
        return;
    case WD_UWSGI_EMODIFIER:
        wd_log_peer(WD_LOG_WARN,
                    "peer %s: uwsgi packet with modifier1 %u on %s refused: only 0 (WSGI) is "
                    "served",
                    wd__conn_peer(c), c->uwsgi.modifier1, c->l->spec);
        wd_conn_close(c);
        return;
    default:
        wd_log_peer(WD_LOG_WARN, "peer %s: malformed uwsgi packet on %s: %s", wd__conn_peer(c),
                    c->l->spec, wd_uwsgi_strerror(c->uwsgi.error));
        wd__conn_fail(c, 400);
        return;
    }
}

/* Returns 1 when the request is complete, 0 when more bytes are needed, -1 when answered. */
int wd__conn_uwsgi_process(wd_conn_t *c)
{
    const wd_group_conf_t *g = c->cs->group;
    size_t take;

    if (c->state == WD_CONN_HEAD) {
        int r = wd_uwsgi_parse(c->buf, c->len, &c->uwsgi);

        if (r == WD_PARSE_ERROR) {
            uwsgi_error(c);
            return -1;
        }
        if (r == WD_PARSE_AGAIN) {
            if (c->len >= WD_UWSGI_HEADER_SIZE &&
                (uint64_t)(uint8_t)c->buf[1] + ((uint64_t)(uint8_t)c->buf[2] << 8) >
                    g->header_buffer_size) {
                wd_log_peer(WD_LOG_WARN,
                            "peer %s: uwsgi vars block larger than header-buffer-size (%llu)",
                            wd__conn_peer(c), (unsigned long long)g->header_buffer_size);
                wd__conn_fail(c, 431);
                return -1;
            }
            return 0;
        }
        c->head_end = c->parsed = (size_t)r;
        c->body_expect = c->uwsgi.content_length;
        if (wd__conn_body_refused(c, c->body_expect))
            return -1;
        c->state = WD_CONN_BODY;
        wd__conn_timer(c, g->body_timeout);
    }
    take = c->len - c->parsed;
    if (take > c->body_expect - c->body_len)
        take = (size_t)(c->body_expect - c->body_len);
    if (take > 0 && wd__conn_body_append(c, c->buf + c->parsed, take) < 0) {
        wd__conn_fail(c, c->body_error);
        return -1;
    }
    /* Body bytes are consumed: the next read reuses the space behind the head. */
    c->len = c->parsed = c->head_end;
    return c->body_len == c->body_expect ? 1 : 0;
}

static int http_body_cb(void *data, const char *at, size_t n)
{
    return wd__conn_body_append(data, at, n);
}

/* --- HTTP ----------------------------------------------------------------------------------- */

static int http_error_status(const wd_conn_t *c)
{
    switch (c->http->error) {
    case WD_HTTP_ETOO_MANY:
        return 431;
    case WD_HTTP_EUPGRADE:
    case WD_HTTP_ECODING:
        return 501;
    case WD_HTTP_EVERSION:
        return 505;
    case WD_HTTP_EBODY_CB:
        return c->body_error ? c->body_error : 400;
    default:
        return 400;
    }
}

/* A head over header-buffer-size: -1, answered 414 when its request line alone is (no line end in
 * the bytes the limit allows, as nginx answers a long request line), 431 otherwise. */
static int head_too_large(wd_conn_t *c)
{
    size_t limit = (size_t)c->cs->group->header_buffer_size, off = c->http->head_off, n;
    int line;

    while (off < c->len && (c->buf[off] == '\r' || c->buf[off] == '\n'))
        off++; /* empty lines before the request line (RFC 9112 2.2) */
    n = c->len > off ? c->len - off : 0;
    line = memchr(c->buf + off, '\n', n < limit ? n : limit) == NULL;

    wd_log_peer(WD_LOG_INFO, "peer %s: request %s larger than header-buffer-size (%llu): %d",
                wd__conn_peer(c), line ? "line" : "head", (unsigned long long)limit,
                line ? 414 : 431);
    wd__conn_fail(c, line ? 414 : 431);
    return -1;
}

static int http_head_complete(wd_conn_t *c)
{
    const wd_group_conf_t *g = c->cs->group;
    wd_http_t *h = c->http;

    c->head_end = c->parsed;
    if (c->head_end > g->header_buffer_size)
        /* A whole head read in one go past the limit: a read after a long PROXY v2 header may
         * (the buffer may hold WD_PROXY_V2_MAX then: read_limit). */
        return head_too_large(c);
    if (h->has_content_length && wd__conn_body_refused(c, h->content_length))
        return -1;
    /* Room for a small body at once; a bigger one grows as it arrives (body_append), so that a
     * head announcing a body it never sends costs no more than BODY_PREALLOC. */
    if (h->has_content_length && h->content_length <= g->body_buffer_size &&
        h->content_length > c->body_cap && h->content_length <= BODY_PREALLOC) {
        c->body_mem = xrealloc(c->body_mem, (size_t)h->content_length);
        c->body_cap = (size_t)h->content_length;
    }
    if (h->expect_continue && h->http_minor >= 1 && c->parsed == c->len &&
        (h->chunked || (h->has_content_length && h->content_length > 0))) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        if (write(c->fd, cont, sizeof cont - 1) < 0) {
            /* The socket is fresh and empty; a failure means the client is gone. */
            wd_conn_close(c);
            return -1;
        }
    }
    c->state = WD_CONN_BODY;
    wd__conn_timer(c, g->body_timeout);
    return 0;
}

/* The parser refused the request: logged and answered. */
void wd__conn_http_failed(wd_conn_t *c)
{
    const wd_http_t *h = c->http;
    int status = http_error_status(c);

    if (status == 400)
        wd_log_peer(WD_LOG_INFO, "peer %s: bad HTTP request: %s", wd__conn_peer(c),
                    h->llhttp_reason ? h->llhttp_reason : "malformed");
    else if (status == 431)
        wd_log_peer(WD_LOG_INFO, "peer %s: more than %d header fields: 431", wd__conn_peer(c),
                    WD_HTTP_MAX_HEADERS);
    else if (status == 413)
        wd_log_peer(WD_LOG_INFO, "peer %s: request body over limit-request-body (%llu): 413",
                    wd__conn_peer(c), (unsigned long long)c->cs->group->limit_request_body);
    wd__conn_fail(c, status);
}

int wd__conn_http_process(wd_conn_t *c)
{
    wd_http_t *h = c->http;

    h->base = c->buf;
    h->on_body = http_body_cb;
    h->data = c;
    for (;;) {
        wd_http_state_t before = h->state;
        int r = wd_http_feed(h, c->buf + c->parsed, c->len - c->parsed);

        if (r < 0) {
            wd__conn_http_failed(c);
            return -1;
        }
        c->parsed += (size_t)r;
        if (before == WD_HTTP_HEAD && h->state != WD_HTTP_HEAD && http_head_complete(c) < 0)
            return -1;
        if (h->state == WD_HTTP_DONE)
            return 1;
        if (r == 0 && (h->state == before || c->parsed == c->len))
            break;
    }
    if (h->state == WD_HTTP_HEAD) {
        if (c->len >= c->cs->group->header_buffer_size)
            return head_too_large(c);
    } else if (c->parsed == c->len) {
        /* Body bytes are in the body store now: reuse their space. */
        c->len = c->parsed = c->head_end;
    }
    return 0;
}
