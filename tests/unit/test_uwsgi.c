/* uwsgi packet parser: every case runs whole, with growing prefixes (len = 1, 2, 3...), and with
 * the input ending right before an unreadable page. */
#include "testutil.h"
#include "uwsgi.h"

#include <inttypes.h>

typedef struct pkt {
    char buf[WD_UWSGI_MAX_PACKET + 256];
    size_t n;
} pkt_t;

static void pkt_begin(pkt_t *p, uint8_t mod1, uint8_t mod2)
{
    p->buf[0] = (char)mod1;
    p->buf[1] = p->buf[2] = 0;
    p->buf[3] = (char)mod2;
    p->n = 4;
}

static void pkt_raw(pkt_t *p, const void *data, size_t n)
{
    memcpy(p->buf + p->n, data, n);
    p->n += n;
}

static void pkt_u16(pkt_t *p, size_t v)
{
    unsigned char b[2] = {(unsigned char)(v & 0xff), (unsigned char)(v >> 8)};

    pkt_raw(p, b, 2);
}

static void pkt_var(pkt_t *p, const char *k, const char *v)
{
    pkt_u16(p, strlen(k));
    pkt_raw(p, k, strlen(k));
    pkt_u16(p, strlen(v));
    pkt_raw(p, v, strlen(v));
}

/* Sets datasize to everything after the header so far (or to `size` when not (size_t) -1). */
static size_t pkt_end(pkt_t *p, size_t size)
{
    size_t ds = size == (size_t)-1 ? p->n - 4 : size;

    p->buf[1] = (char)(ds & 0xff);
    p->buf[2] = (char)(ds >> 8);
    return 4 + ds;
}

typedef struct expect {
    int ret; /* packet size, WD_PARSE_ERROR or WD_PARSE_AGAIN */
    wd_uwsgi_error_t err;
    size_t decide_at; /* shortest prefix that gives ret; 0 = never (always AGAIN) */
    uint64_t cl;
    const char *method, *uri, *protocol; /* NULL: not checked */
} expect_t;

static int slice_is(wd_slice_t s, const char *want)
{
    return s.n == strlen(want) && (s.n == 0 || memcmp(s.p, want, s.n) == 0);
}

static t_guard_t guard;

static void check_one(const char *name, const char *how, size_t l, const char *buf,
                      const expect_t *ex)
{
    wd_uwsgi_req_t req;
    int r = wd_uwsgi_parse(buf, l, &req);
    int want = (ex->decide_at != 0 && l >= ex->decide_at) ? ex->ret : WD_PARSE_AGAIN;

    T_CHECK(r == want, "%s (%s, len %zu): returned %d, want %d", name, how, l, r, want);
    if (r != want)
        return;
    if (r == WD_PARSE_ERROR)
        T_CHECK(req.error == ex->err, "%s (%s, len %zu): error %d (%s), want %d", name, how, l,
                req.error, wd_uwsgi_strerror(req.error), ex->err);
    if (r > 0) {
        T_CHECK(req.content_length == ex->cl, "%s (%s): content_length %" PRIu64 ", want %" PRIu64,
                name, how, req.content_length, ex->cl);
        T_CHECK(req.datasize == (size_t)r - 4, "%s (%s): datasize %u", name, how, req.datasize);
        T_CHECK(req.vars == buf + 4, "%s (%s): vars pointer", name, how);
        if (ex->method)
            T_CHECK(slice_is(req.method, ex->method), "%s (%s): method '%.*s'", name, how,
                    (int)req.method.n, req.method.p);
        if (ex->uri)
            T_CHECK(slice_is(req.uri, ex->uri), "%s (%s): uri '%.*s'", name, how, (int)req.uri.n,
                    req.uri.p);
        if (ex->protocol)
            T_CHECK(slice_is(req.protocol, ex->protocol), "%s (%s): protocol '%.*s'", name, how,
                    (int)req.protocol.n, req.protocol.p);
    }
}

typedef struct run_ctx {
    const char *name;
    expect_t ex;
} run_ctx_t;

static void check_fed(const char *how, size_t len, const char *data, const void *ctx)
{
    const run_ctx_t *r = ctx;

    check_one(r->name, how, len, data, &r->ex);
}

/* Whole, and every prefix (testutil.h, t_feed). */
static void run(const char *name, const char *data, size_t len, expect_t ex)
{
    run_ctx_t r = {name, ex};

    t_feed(&guard, data, len, 1, check_fed, &r);
}

static pkt_t pk;

static void nginx_vars(pkt_t *p, const char *method, const char *cl)
{
    pkt_var(p, "QUERY_STRING", "a=1&b=2");
    pkt_var(p, "REQUEST_METHOD", method);
    pkt_var(p, "CONTENT_TYPE", "application/x-www-form-urlencoded");
    pkt_var(p, "CONTENT_LENGTH", cl);
    pkt_var(p, "REQUEST_URI", "/hello/w%20rld?a=1&b=2");
    pkt_var(p, "PATH_INFO", "/hello/w rld");
    pkt_var(p, "DOCUMENT_ROOT", "/usr/share/nginx/html");
    pkt_var(p, "SERVER_PROTOCOL", "HTTP/1.1");
    pkt_var(p, "REQUEST_SCHEME", "http");
    pkt_var(p, "HTTPS", "");
    pkt_var(p, "REMOTE_ADDR", "127.0.0.1");
    pkt_var(p, "REMOTE_PORT", "51234");
    pkt_var(p, "SERVER_PORT", "80");
    pkt_var(p, "SERVER_NAME", "localhost");
    pkt_var(p, "HTTP_HOST", "localhost");
    pkt_var(p, "HTTP_USER_AGENT", "curl/7.88.1");
    pkt_var(p, "HTTP_ACCEPT", "*/*");
}

static void test_valid(void)
{
    size_t size;
    char big[65536];

    /* An nginx-like POST, with the body bytes following the vars block. */
    pkt_begin(&pk, 0, 0);
    nginx_vars(&pk, "POST", "5");
    size = pkt_end(&pk, (size_t)-1);
    pkt_raw(&pk, "hello", 5);
    run("nginx POST", pk.buf, pk.n,
        (expect_t){(int)size, 0, size, 5, "POST", "/hello/w%20rld?a=1&b=2", "HTTP/1.1"});

    /* The iterator gives back every var in order. */
    {
        wd_uwsgi_req_t req;
        wd_uwsgi_iter_t it;
        wd_slice_t k, v;
        int n = 0, ok = 1;
        T_CHECK(wd_uwsgi_parse(pk.buf, pk.n, &req) == (int)size, "iter: parse");
        wd_uwsgi_iter_init(&it, &req);
        while (wd_uwsgi_iter_next(&it, &k, &v)) {
            if (n == 0)
                ok &= slice_is(k, "QUERY_STRING") && slice_is(v, "a=1&b=2");
            if (n == 9)
                ok &= slice_is(k, "HTTPS") && v.n == 0;
            if (n == 16)
                ok &= slice_is(k, "HTTP_ACCEPT") && slice_is(v, "*/*");
            n++;
        }
        T_CHECK(n == 17 && ok, "iter: %d vars, order ok %d", n, ok);
    }

    /* A GET without CONTENT_LENGTH. */
    pkt_begin(&pk, 0, 0);
    pkt_var(&pk, "REQUEST_METHOD", "GET");
    pkt_var(&pk, "REQUEST_URI", "/");
    size = pkt_end(&pk, (size_t)-1);
    run("GET no CONTENT_LENGTH", pk.buf, pk.n, (expect_t){(int)size, 0, size, 0, "GET", "/", ""});

    /* An empty vars block is a valid (if useless) packet; modifier2 is kept. */
    pkt_begin(&pk, 0, 7);
    size = pkt_end(&pk, (size_t)-1);
    run("empty vars", pk.buf, pk.n, (expect_t){4, 0, 4, 0, "", "", ""});
    {
        wd_uwsgi_req_t req;
        wd_uwsgi_iter_t it;
        wd_slice_t k, v;
        wd_uwsgi_parse(pk.buf, pk.n, &req);
        wd_uwsgi_iter_init(&it, &req);
        T_CHECK(req.modifier2 == 7 && !wd_uwsgi_iter_next(&it, &k, &v), "empty vars: iter");
    }

    /* Empty CONTENT_LENGTH means 0. */
    pkt_begin(&pk, 0, 0);
    nginx_vars(&pk, "GET", "");
    size = pkt_end(&pk, (size_t)-1);
    run("empty CONTENT_LENGTH", pk.buf, pk.n, (expect_t){(int)size, 0, size, 0, "GET", NULL, NULL});

    /* The largest CONTENT_LENGTH, 2^63 - 1. */
    pkt_begin(&pk, 0, 0);
    nginx_vars(&pk, "PUT", "9223372036854775807");
    size = pkt_end(&pk, (size_t)-1);
    run("large CONTENT_LENGTH", pk.buf, pk.n,
        (expect_t){(int)size, 0, size, UINT64_C(9223372036854775807), "PUT", NULL, NULL});

    /* A vars block of the full 65535 bytes. */
    pkt_begin(&pk, 0, 0);
    pkt_var(&pk, "REQUEST_METHOD", "GET");
    pkt_var(&pk, "CONTENT_LENGTH", "0");
    memset(big, 'x', sizeof(big));
    big[65535 - (pk.n - 4) - 2 - 11 - 2] = '\0';
    pkt_var(&pk, "HTTP_COOKIE", big);
    size = pkt_end(&pk, (size_t)-1);
    T_CHECK(size == WD_UWSGI_MAX_PACKET, "max packet size %zu", size);
    run("65535 vars", pk.buf, pk.n, (expect_t){(int)size, 0, size, 0, "GET", "", ""});

    /* A var with an empty value at the very end of the block. */
    pkt_begin(&pk, 0, 0);
    pkt_var(&pk, "REQUEST_METHOD", "GET");
    pkt_var(&pk, "X", "");
    size = pkt_end(&pk, (size_t)-1);
    run("empty last value", pk.buf, pk.n, (expect_t){(int)size, 0, size, 0, "GET", NULL, NULL});
}

static void test_errors(void)
{
    size_t size;
    static const char *http_lines[] = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /x HTTP/1.1\r\n",
        "HEAD / HTTP/1.0\r\n",
        "PUT /a HTTP/1.1\r\n",
        "DELETE /a HTTP/1.1\r\n",
        "OPTIONS * HTTP/1.1\r\n",
        "PATCH /p HTTP/1.1\r\n",
        "M-SEARCH * HTTP/1.1\r\n",
    };
    size_t i;

    for (i = 0; i < sizeof(http_lines) / sizeof(http_lines[0]); i++) {
        const char *s = http_lines[i];
        size_t at = (size_t)(strchr(s, ' ') - s) + 1;
        run(s, s, strlen(s), (expect_t){WD_PARSE_ERROR, WD_UWSGI_EHTTP, at, 0, NULL, NULL, NULL});
    }

    /* Upper-case bytes that are not a method token and a space: another modifier1. */
    run("GET/ not http", "GET/ HTTP/1.1", 13,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EMODIFIER, 4, 0, NULL, NULL, NULL});
    run("lower-case get", "get / HTTP/1.1", 14,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EMODIFIER, 1, 0, NULL, NULL, NULL});

    /* modifier1 != 0 is refused from the first byte. */
    pkt_begin(&pk, 1, 0);
    pkt_var(&pk, "REQUEST_METHOD", "GET");
    size = pkt_end(&pk, (size_t)-1);
    run("modifier1 1", pk.buf, pk.n,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EMODIFIER, 1, 0, NULL, NULL, NULL});
    pkt_begin(&pk, 30, 0);
    pkt_end(&pk, (size_t)-1);
    run("modifier1 30", pk.buf, pk.n,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EMODIFIER, 1, 0, NULL, NULL, NULL});
    {
        /* The refusal names the modifier1 it refused (it said 0, from the memset). */
        wd_uwsgi_req_t req;

        T_CHECK(wd_uwsgi_parse(pk.buf, 1, &req) == WD_PARSE_ERROR && req.modifier1 == 30,
                "modifier1 30: refused with modifier1 %u", req.modifier1);
    }

    /* Truncated packets stay AGAIN whatever the prefix. */
    pkt_begin(&pk, 0, 0);
    nginx_vars(&pk, "GET", "");
    size = pkt_end(&pk, (size_t)-1);
    run("truncated vars", pk.buf, size - 1, (expect_t){0, 0, 0, 0, NULL, NULL, NULL});
    run("header only", pk.buf, 3, (expect_t){0, 0, 0, 0, NULL, NULL, NULL});

    /* A key length running past the block. */
    pkt_begin(&pk, 0, 0);
    pkt_var(&pk, "REQUEST_METHOD", "GET");
    pkt_u16(&pk, 200);
    pkt_raw(&pk, "ABCDEF", 6);
    size = pkt_end(&pk, (size_t)-1);
    run("key overrun", pk.buf, pk.n,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EFRAMING, size, 0, NULL, NULL, NULL});

    /* A value length running past the block, though not past the bytes that follow it. */
    pkt_begin(&pk, 0, 0);
    pkt_u16(&pk, 3);
    pkt_raw(&pk, "KEY", 3);
    pkt_u16(&pk, 10);
    pkt_raw(&pk, "12345", 5);
    size = pkt_end(&pk, (size_t)-1);
    pkt_raw(&pk, "67890", 5);
    run("value overrun", pk.buf, pk.n,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EFRAMING, size, 0, NULL, NULL, NULL});

    /* The value length itself cut by the end of the block. */
    pkt_begin(&pk, 0, 0);
    pkt_u16(&pk, 3);
    pkt_raw(&pk, "KEY", 3);
    pkt_raw(&pk, "\x01", 1);
    size = pkt_end(&pk, (size_t)-1);
    run("value length cut", pk.buf, pk.n,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EFRAMING, size, 0, NULL, NULL, NULL});

    /* One stray byte after the last var. */
    pkt_begin(&pk, 0, 0);
    pkt_var(&pk, "REQUEST_METHOD", "GET");
    pkt_raw(&pk, "\x05", 1);
    size = pkt_end(&pk, (size_t)-1);
    run("stray byte", pk.buf, pk.n,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EFRAMING, size, 0, NULL, NULL, NULL});

    /* An empty key. */
    pkt_begin(&pk, 0, 0);
    pkt_var(&pk, "", "value");
    size = pkt_end(&pk, (size_t)-1);
    run("empty key", pk.buf, pk.n,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_EEMPTY_KEY, size, 0, NULL, NULL, NULL});

    /* Bad CONTENT_LENGTH values. */
    {
        static const char *bad[] = {
            "12a",  "-1", "12345678901234567890", "9223372036854775808", " 5", "5 ", "+5",
            "0x10", "1e3"};
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char name[64];
            pkt_begin(&pk, 0, 0);
            nginx_vars(&pk, "POST", bad[i]);
            size = pkt_end(&pk, (size_t)-1);
            snprintf(name, sizeof(name), "CONTENT_LENGTH '%s'", bad[i]);
            run(name, pk.buf, pk.n,
                (expect_t){WD_PARSE_ERROR, WD_UWSGI_ECONTENT_LENGTH, size, 0, NULL, NULL, NULL});
        }
    }

    /* Two CONTENT_LENGTH vars. */
    pkt_begin(&pk, 0, 0);
    pkt_var(&pk, "CONTENT_LENGTH", "5");
    pkt_var(&pk, "CONTENT_LENGTH", "5");
    size = pkt_end(&pk, (size_t)-1);
    run("two CONTENT_LENGTH", pk.buf, pk.n,
        (expect_t){WD_PARSE_ERROR, WD_UWSGI_ECONTENT_LENGTH, size, 0, NULL, NULL, NULL});

    for (i = 0; i <= WD_UWSGI_ECONTENT_LENGTH; i++)
        T_CHECK(wd_uwsgi_strerror((wd_uwsgi_error_t)i) != NULL, "strerror %zu", i);
}

int main(void)
{
    t_guard_init(&guard, WD_UWSGI_MAX_PACKET + 256);
    test_valid();
    test_errors();
    t_guard_free(&guard);
    return t_summary("uwsgi");
}
