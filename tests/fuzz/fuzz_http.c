/* libFuzzer target: the HTTP/1.1 front (protocol/http.c on top of llhttp), driven the way the
 * worker's loop drives it (daemon/worker/conn_parse.c: wd__conn_http_process; conn.c:
 * response_complete).
 *
 * The whole input is the byte stream a client sends on one connection. A hash of it picks how
 * the stream is cut into reads (all at once, single bytes, small or larger pieces) and whether
 * the body callback refuses a body over a small limit (the 413 path). Every read lands in a
 * buffer that is reallocated (so it moves) and that has exactly the bytes received, so that a
 * pointer kept into an old buffer, or a read past the received bytes, is an ASan report.
 *
 * Checked: the return value and state transitions of wd_http_feed against its contract
 * (protocol/http.h), every span inside the head, no CR / LF in a header, the head ends in
 * CR LF CR LF, body pieces lie in the buffer after the head, a Content-Length body has exactly
 * that many bytes, and pipelined requests parse one at a time after wd_http_reset. */
#include "fuzz.h"
#include "http.h"

#include <string.h>

#define HEAD_LIMIT 65536 /* the largest header-buffer-size we emulate */
#define MAX_MESSAGES 4096

typedef struct conn {
    wd_http_t http;
    char *buf;           /* exactly len bytes */
    size_t len;          /* bytes received and kept */
    size_t parsed;       /* bytes consumed by the parser */
    size_t head_end;     /* end of the head of the current message */
    uint64_t body_total; /* body bytes of the current message */
    uint64_t body_limit; /* on_body refuses beyond it */
    int refused;
    int messages; /* requests parsed on this connection */
} conn_t;

static int on_body(void *data, const char *at, size_t n)
{
    conn_t *c = data;

    WD_FUZZ_CHECK(c->http.state == WD_HTTP_BODY);
    WD_FUZZ_CHECK(n > 0);
    WD_FUZZ_INSIDE(at, n, c->buf + c->head_end, c->buf + c->len);
    /* Touch the bytes: ASan checks them. */
    {
        volatile char x = at[0] ^ at[n - 1];
        (void)x;
    }
    c->body_total += n;
    if (c->http.has_content_length && !c->http.chunked)
        WD_FUZZ_CHECK(c->body_total <= c->http.content_length);
    if (c->body_total > c->body_limit) {
        c->refused = 1;
        return -1;
    }
    return 0;
}

/* Moves the buffer: a new block of exactly len + add bytes, holding the old bytes. */
static void grow(conn_t *c, const uint8_t *add, size_t n)
{
    char *p = malloc(c->len + n ? c->len + n : 1);

    if (p == NULL)
        abort();
    if (c->len)
        memcpy(p, c->buf, c->len);
    if (n)
        memcpy(p + c->len, add, n);
    free(c->buf);
    c->buf = p;
    c->len += n;
}

static void check_span(const conn_t *c, wd_span_t s)
{
    WD_FUZZ_CHECK((size_t)s.off + s.len <= c->head_end);
}

static void check_head(conn_t *c)
{
    wd_http_t *h = &c->http;
    volatile char x = 0;
    unsigned i;

    WD_FUZZ_CHECK(c->head_end >= 4 && memcmp(c->buf + c->head_end - 4, "\r\n\r\n", 4) == 0);
    WD_FUZZ_CHECK(wd_http_method(h).n > 0);
    if (h->method == NULL)
        check_span(c, h->method_span);
    for (i = 0; i < wd_http_method(h).n; i++)
        x ^= wd_http_method(h).p[i];
    WD_FUZZ_CHECK(h->http_major == 1 && h->http_minor <= 1);
    WD_FUZZ_CHECK(h->request_minor >= h->http_minor && h->request_minor <= 9);
    WD_FUZZ_CHECK(h->n_headers <= WD_HTTP_MAX_HEADERS);
    check_span(c, h->url);
    WD_FUZZ_CHECK(h->url.len > 0);
    for (i = 0; i < h->url.len; i++)
        x ^= c->buf[h->url.off + i];
    for (i = 0; i < h->n_headers; i++) {
        wd_slice_t name = wd_http_slice(h, h->headers[i].name);
        wd_slice_t value = wd_http_slice(h, h->headers[i].value);

        check_span(c, h->headers[i].name);
        check_span(c, h->headers[i].value);
        /* RFC 9110 5.1: a field name is a token, never empty (llhttp 8.1 lets ": v" through;
         * tag http-empty-name). */
        if (!wd_fuzz_known("http-empty-name"))
            WD_FUZZ_CHECK(name.n > 0);
        WD_FUZZ_CHECK(memchr(name.p, ' ', name.n) == NULL);
        WD_FUZZ_CHECK(memchr(name.p, '\t', name.n) == NULL);
        WD_FUZZ_CHECK(memchr(name.p, ':', name.n) == NULL);
        WD_FUZZ_CHECK(memchr(name.p, '\r', name.n) == NULL);
        WD_FUZZ_CHECK(memchr(name.p, '\n', name.n) == NULL);
        WD_FUZZ_CHECK(memchr(value.p, '\r', value.n) == NULL);
        WD_FUZZ_CHECK(memchr(value.p, '\n', value.n) == NULL);
        WD_FUZZ_CHECK(memchr(value.p, '\0', value.n) == NULL);
        if (value.n > 0) {
            WD_FUZZ_CHECK(value.p[value.n - 1] != ' ' && value.p[value.n - 1] != '\t');
            WD_FUZZ_CHECK(value.p[0] != ' ' && value.p[0] != '\t');
        }
    }
    /* Smuggling shapes are refused: never both framings. */
    WD_FUZZ_CHECK(!(h->chunked && h->has_content_length));
    WD_FUZZ_CHECK(h->is_head == (h->method != NULL && strcmp(h->method, "HEAD") == 0));
    (void)x;
}

/* Returns 0 to go on reading, 1 when the connection is over (error, close, limits). */
static int process(conn_t *c)
{
    wd_http_t *h = &c->http;

    h->base = c->buf;
    for (;;) {
        wd_http_state_t before = h->state;
        size_t n = c->len - c->parsed;
        int r = wd_http_feed(h, c->buf + c->parsed, n);

        WD_FUZZ_CHECK(h->base == c->buf);
        if (r < 0) {
            WD_FUZZ_CHECK(r == WD_PARSE_ERROR);
            WD_FUZZ_CHECK(h->error != WD_HTTP_OK);
            WD_FUZZ_CHECK(h->llhttp_reason != NULL);
            WD_FUZZ_CHECK((h->error == WD_HTTP_EBODY_CB) == c->refused);
            /* Errors stick. */
            WD_FUZZ_CHECK(wd_http_feed(h, c->buf + c->parsed, n) == WD_PARSE_ERROR);
            return 1;
        }
        WD_FUZZ_CHECK((size_t)r <= n);
        WD_FUZZ_CHECK(!c->refused);
        if (n == 0 || before == WD_HTTP_DONE)
            WD_FUZZ_CHECK(r == 0);
        else
            WD_FUZZ_CHECK(r > 0);
        /* Legal transitions: HEAD -> HEAD | BODY | DONE, BODY -> BODY | DONE, DONE -> DONE. */
        WD_FUZZ_CHECK(h->state >= before);
        if (h->state == before && before != WD_HTTP_DONE)
            WD_FUZZ_CHECK((size_t)r == n); /* nothing completed: all bytes are taken */
        c->parsed += (size_t)r;

        if (before == WD_HTTP_HEAD && h->state != WD_HTTP_HEAD) {
            c->head_end = c->parsed;
            check_head(c);
            WD_FUZZ_CHECK((h->state == WD_HTTP_BODY) ==
                          (h->chunked || (h->has_content_length && h->content_length > 0)));
            WD_FUZZ_CHECK(c->body_total == 0);
        }
        if (h->state == WD_HTTP_DONE) {
            size_t left = c->len - c->parsed;
            char *p;

            if (h->has_content_length && !h->chunked)
                WD_FUZZ_CHECK(c->body_total == h->content_length);
            /* Nothing more is taken until wd_http_reset. */
            WD_FUZZ_CHECK(wd_http_feed(h, c->buf + c->parsed, left) == 0);
            if (!h->keep_alive || ++c->messages > MAX_MESSAGES)
                return 1;
            /* The next request: its bytes move to the start of a new buffer. */
            p = malloc(left ? left : 1);
            if (p == NULL)
                abort();
            memcpy(p, c->buf + c->parsed, left);
            free(c->buf);
            c->buf = p;
            c->len = left;
            c->parsed = c->head_end = 0;
            c->body_total = 0;
            wd_http_reset(h);
            WD_FUZZ_CHECK(h->state == WD_HTTP_HEAD && h->n_headers == 0);
            h->base = c->buf;
            if (left == 0)
                return 0;
            continue;
        }
        if (c->parsed == c->len)
            break;
    }
    if (h->state == WD_HTTP_HEAD) {
        if (c->len >= HEAD_LIMIT)
            return 1; /* 431 */
    } else {
        /* Body bytes are consumed: their space is reused (only the head must stay). */
        WD_FUZZ_CHECK(c->parsed == c->len);
        c->len = c->parsed = c->head_end;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static conn_t c; /* wd_http_t must not move after init */
    wd_fuzz_rng_t rng;
    uint32_t hash = 2166136261u;
    size_t off = 0, piece, max_piece;
    unsigned mode;

    for (size_t i = 0; i < size; i++)
        hash = (hash ^ data[i]) * 16777619u;
    rng.s = hash;
    mode = hash & 3;
    max_piece = mode == 0 ? (size ? size : 1) : mode == 1 ? 1 : mode == 2 ? 16 : 256;

    memset(&c, 0, sizeof c);
    c.body_limit = ((hash >> 2) & 7) == 0 ? (hash >> 5) % 512 : UINT64_MAX;
    wd_http_init(&c.http, on_body, &c);
    WD_FUZZ_CHECK(c.http.state == WD_HTTP_HEAD);

    while (off < size) {
        piece = 1 + wd_fuzz_next(&rng) % max_piece;
        if (piece > size - off)
            piece = size - off;
        grow(&c, data + off, piece);
        off += piece;
        if (process(&c))
            break;
    }
    free(c.buf);
    return 0;
}
