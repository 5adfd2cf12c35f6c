/* What a trusted proxy's headers make of a request (daemon/worker/forward.c, wd_fwd_apply): a
 * table of request heads, each parsed by the HTTP parser whole (ending at an unreadable page) and
 * fed one byte at a time, and the client, scheme and host each gives. The proxy is 127.0.0.1
 * (and 10.0.0.2 behind it); what a client wrote comes first, on the proxy's line or a line before
 * it, and must not change what the proxy's part says. */
#include "forward.h"
#include "testutil.h"

#include <stdio.h>

#define PEER "127.0.0.1"

typedef struct fcase {
    int rfc7239;         /* forwarded-headers: forwarded */
    const char *headers; /* the head's header lines ("Name: value\r\n"...); "#N s|": see head() */
    const char *client;  /* REMOTE_ADDR (PEER: not forwarded) */
    int https;           /* fwd_https */
    const char *host;    /* fwd_host ("" none) */
} fcase_t;

static const fcase_t cases[] = {
    {0, "X-Forwarded-For: 203.0.113.9\r\n", "203.0.113.9", -1, ""},
    {0, "X-Forwarded-For: 1.1.1.1, 203.0.113.9, 10.0.0.2\r\nX-Forwarded-Proto: https\r\n",
     "203.0.113.9", 1, ""},
    {0, "X-Forwarded-Proto: http, https\r\nX-Forwarded-Host: a.example, shop.example\r\n", PEER, 1,
     "shop.example"},
    /* HAProxy's option forwardfor: a line of its own after a client's, however long that is. */
    {0, "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 203.0.113.9\r\n", "203.0.113.9", -1, ""},
    {0, "X-Forwarded-For: #4100 1|\r\nX-Forwarded-For: 203.0.113.9\r\n", "203.0.113.9", -1, ""},
    {0, "X-Forwarded-For: #4095  |1.1.1.1\r\nX-Forwarded-For: 203.0.113.9\r\n", "203.0.113.9", -1,
     ""},
    {0, "X-Forwarded-For: #60 1.1.1.1, |\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.2\r\n",
     "203.0.113.9", -1, ""},
    /* A client's X-Forwarded-Host and -Proto lines before the proxy's: the proxy's, the last. */
    {0,
     "X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: "
     "shop.example\r\nX-Forwarded-Proto: https\r\n",
     PEER, 1, "shop.example"},
    {0, "X-Forwarded-Host: evil.example\r\nX-Forwarded-Host: \r\n", PEER, -1, ""},
    {0, "X-Forwarded-Host: shop.example\r\nX-Forwarded-Host: bad host\r\n", PEER, -1, ""},
    /* Forwarded: nginx's RFC 7239 recipe appends to a client's valid value, HAProxy's add-header
     * a line of its own. */
    {1, "Forwarded: for=203.0.113.9;proto=https;host=shop.example\r\n", "203.0.113.9", 1,
     "shop.example"},
    {1, "Forwarded: for=\"\\1.1.1.1\", for=203.0.113.9;proto=https\r\n", "203.0.113.9", 1, ""},
    {1, "Forwarded: #64 ,|for=203.0.113.9;proto=https\r\n", "203.0.113.9", 1, ""},
    {1, "Forwarded: #200 for=1.1.1.1, |for=203.0.113.9;proto=https\r\n", "203.0.113.9", 1, ""},
    {1,
     "Forwarded: for=\"\\1.1.1.1\"\r\nForwarded: for=203.0.113.9;proto=https;host=shop.example\r\n",
     "203.0.113.9", 1, "shop.example"},
    {1, "Forwarded: for=\"1.1.1.1\r\nForwarded: for=203.0.113.9;proto=https;host=shop.example\r\n",
     "203.0.113.9", 1, "shop.example"},
    {1, "Forwarded: #64 ,|\r\nForwarded: for=203.0.113.9;proto=http\r\n", "203.0.113.9", 0, ""},
    {1,
     "Forwarded: for=1.1.1.1;host=evil.example\r\nForwarded: "
     "for=203.0.113.9;proto=https;host=shop.example\r\n",
     "203.0.113.9", 1, "shop.example"},
    {1, "Forwarded: for=203.0.113.9;host=\"evil\\\"\", for=10.0.0.2\r\n", "203.0.113.9", -1, ""},
    {1, "Forwarded: for=\"[2001:db8::9]:4711\";host=shop.example\r\nForwarded: for=10.0.0.2\r\n",
     "2001:db8::9", -1, "shop.example"},
    /* The proxy's own part malformed: not believed. */
    {1, "Forwarded: for=203.0.113.9;proto=https, for=\"_hidden\"\r\n", PEER, -1, ""},
    {0, "X-Forwarded-For: 203.0.113.9, evil\r\n", PEER, -1, ""},
    {0, NULL, NULL, 0, NULL},
};

/* "GET / HTTP/1.1\r\nHost: h\r\n" + headers ("#N s|" is s N times: "#4100 1|" 4100 '1's) +
 * "\r\n". */
static size_t head(const char *headers, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "GET / HTTP/1.1\r\nHost: h\r\n");

    for (const char *p = headers; *p;) {
        if (*p == '#') {
            char *rest;
            unsigned long times = strtoul(p + 1, &rest, 10);
            const char *s = rest + 1, *e = strchr(s, '|');

            for (unsigned long i = 0; i < times; i++, n += (size_t)(e - s))
                memcpy(out + n, s, (size_t)(e - s));
            p = e + 1;
            continue;
        }
        out[n++] = *p++;
    }
    n += (size_t)snprintf(out + n, cap - n, "\r\n");
    return n;
}

static void check(const fcase_t *c, const wd_group_conf_t *g, const wd_http_t *h, const char *how)
{
    wd_req_t req;

    memset(&req, 0, sizeof req);
    snprintf(req.remote_addr, sizeof req.remote_addr, PEER);
    req.fwd_https = -1;
    wd_fwd_apply(&req, h, g);
    T_CHECK(strcmp(req.remote_addr, c->client) == 0, "%s \"%.60s\": REMOTE_ADDR %s", how,
            c->headers, req.remote_addr);
    T_CHECK(req.fwd_https == c->https, "%s \"%.60s\": https %d", how, c->headers, req.fwd_https);
    T_CHECK(req.fwd_host.n == strlen(c->host) &&
                memcmp(req.fwd_host.p, c->host, req.fwd_host.n) == 0,
            "%s \"%.60s\": host %.*s", how, c->headers, (int)req.fwd_host.n,
            req.fwd_host.n ? req.fwd_host.p : "");
}

int main(void)
{
    static char buf[32768];
    wd_cidr_t trusted[2];
    wd_group_conf_t g;
    t_guard_t guard;
    wd_http_t h;

    memset(&g, 0, sizeof g);
    T_CHECK(wd_cidr_parse(PEER, &trusted[0]) == 0 && wd_cidr_parse("10.0.0.2", &trusted[1]) == 0,
            "cidr");
    g.name = "site1";
    g.trusted_proxies = trusted;
    g.n_trusted_proxies = 2;
    t_guard_init(&guard, sizeof buf);
    for (const fcase_t *c = cases; c->headers != NULL; c++) {
        size_t n = head(c->headers, buf, sizeof buf);
        char *at = t_guard_place(&guard, buf, n);
        int r;

        g.forwarded_rfc7239 = c->rfc7239;
        wd_http_init(&h, NULL, NULL);
        h.base = at;
        r = wd_http_feed(&h, at, n);
        T_CHECK(r == (int)n && h.state == WD_HTTP_DONE, "\"%.60s\": parsed %d", c->headers, r);
        check(c, &g, &h, "whole");
        wd_http_init(&h, NULL, NULL);
        h.base = at;
        for (size_t i = 0; i < n; i++)
            wd_http_feed(&h, at + i, 1);
        T_CHECK(h.state == WD_HTTP_DONE, "\"%.60s\": byte by byte", c->headers);
        check(c, &g, &h, "byte by byte");
    }
    t_guard_free(&guard);
    return t_summary("forward");
}
