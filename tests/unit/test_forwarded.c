/* X-Forwarded-For and Forwarded (protocol/forwarded.c): a table of header values and trusted
 * proxies, and the client each gives; every prefix of every value is parsed too (it must not read
 * past its end, and whatever it returns lies inside it). A value's '\n' separates the header's
 * lines (each a line of its own, as a proxy that adds one sends them).
 *
 * Then what a client may write before a trusted proxy's part, on the proxy's line (nginx's
 * RFC 7239 recipe appends to the client's Forwarded) or on a line before it (HAProxy's option
 * forwardfor and add-header): whatever it is, the proxy's part decides, and it does with every
 * byte of the client's part cut from the left too. */
#include "forwarded.h"
#include "testutil.h"

/* ctx: a space-separated list of trusted addresses. */
static int trusted(const char *addr, size_t n, void *ctx)
{
    const char *list = ctx;

    for (const char *p = list; *p;) {
        size_t k = strcspn(p, " ");

        if (k == n && memcmp(p, addr, n) == 0)
            return 1;
        p += k;
        while (*p == ' ')
            p++;
    }
    return 0;
}

typedef struct xcase {
    const char *value;
    const char *trusted;
    const char *client; /* NULL: 0 returned */
} xcase_t;

static const xcase_t xff_cases[] = {
    {"203.0.113.7", "", "203.0.113.7"},
    {"203.0.113.7, 10.0.0.2", "10.0.0.2", "203.0.113.7"},
    {"198.51.100.1, 203.0.113.7, 10.0.0.2", "10.0.0.2", "203.0.113.7"},
    {"1.1.1.1,2.2.2.2,3.3.3.3", "3.3.3.3 2.2.2.2", "1.1.1.1"},
    {"1.1.1.1,2.2.2.2,3.3.3.3", "3.3.3.3 2.2.2.2 1.1.1.1", "1.1.1.1"},
    {"  203.0.113.7 ,\t10.0.0.2  ", "10.0.0.2", "203.0.113.7"},
    {"203.0.113.7:4711", "", "203.0.113.7"},
    {"2001:db8::1", "", "2001:db8::1"},
    {"[2001:db8::1]:443, 10.0.0.2", "10.0.0.2", "2001:db8::1"},
    {"[2001:db8::1]", "", "2001:db8::1"},
    {"evil, 10.0.0.2", "10.0.0.2", NULL},
    {"evil, 203.0.113.7", "", "203.0.113.7"},
    {"", "", NULL},
    {"203.0.113.7,,10.0.0.2", "10.0.0.2", NULL},
    {"unknown", "", NULL},
    {"1.2.3", "", NULL},
    {"1.2.3.4:99999999", "", NULL},
    {"[2001:db8::1", "", NULL},
    {"[1.2.3.4]", "", NULL},
    {"2001:db8::1:80x", "", NULL},
    /* Several lines: walked from the last, hop by hop across them. */
    {"1.1.1.1\n203.0.113.9", "", "203.0.113.9"},
    {"1.1.1.1\n203.0.113.9, 10.0.0.2", "10.0.0.2", "203.0.113.9"},
    {"1.1.1.1, 203.0.113.9\n10.0.0.2", "10.0.0.2", "203.0.113.9"},
    {"1.1.1.1, 10.0.0.3\n\n10.0.0.2", "10.0.0.2 10.0.0.3", NULL},
    {"1.1.1.1, 10.0.0.3\n10.0.0.2", "10.0.0.2 10.0.0.3", "1.1.1.1"},
    {"10.0.0.3\n10.0.0.2", "10.0.0.2 10.0.0.3", "10.0.0.3"},
    {"evil\n10.0.0.2", "10.0.0.2", NULL},
    {"evil\n203.0.113.9", "10.0.0.2", "203.0.113.9"},
    {"\n203.0.113.9", "", "203.0.113.9"},
    {"203.0.113.9\n", "", NULL},
    {NULL, NULL, NULL},
};

typedef struct fcase {
    const char *value;
    const char *trusted;
    const char *client, *proto, *host;
} fcase_t;

static const fcase_t fwd_cases[] = {
    {"for=192.0.2.60;proto=http;by=203.0.113.43", "", "192.0.2.60", "http", ""},
    {"For=\"[2001:db8:cafe::17]:4711\"", "", "2001:db8:cafe::17", "", ""},
    {"for=192.0.2.43, for=198.51.100.17;proto=https;host=example.com", "198.51.100.17",
     "192.0.2.43", "", ""},
    {"for=192.0.2.43;proto=https;host=\"example.com:8443\", for=10.0.0.2", "10.0.0.2", "192.0.2.43",
     "https", "example.com:8443"},
    {"for=192.0.2.43, for=\"_hidden\"", "", NULL, NULL, NULL},
    {"for=unknown, for=10.0.0.2", "10.0.0.2", NULL, NULL, NULL},
    {"for=192.0.2.43;proto=https, for=\"[::1]\";proto=http", "::1", "192.0.2.43", "https", ""},
    {"proto=https", "", NULL, NULL, NULL},
    {"for=\"192.0.2.1", "", NULL, NULL, NULL},
    {"for=\"a\\\"b\"", "", NULL, NULL, NULL},
    {"for", "", NULL, NULL, NULL},
    {"for=1.2.3.4 x", "", NULL, NULL, NULL},
    {"", "", NULL, NULL, NULL},
    /* RFC 7239's pairs may be empty ([ forwarded-pair ]); a name twice is refused (a client's
     * Host in an unquoted host= before for= must not add a for= of its own). */
    {"for=1.2.3.4;;", "", "1.2.3.4", "", ""},
    {";for=1.2.3.4;;proto=https", "", "1.2.3.4", "https", ""},
    {"for=192.0.2.1;for=192.0.2.2", "", NULL, NULL, NULL},
    {"for=203.0.113.9;proto=https;host=a;for=1.1.1.1", "", NULL, NULL, NULL},
    {"host=a;for=1.1.1.1;proto=https;for=203.0.113.9", "", NULL, NULL, NULL},
    {"for=1.2.3.4;proto=http;PROTO=https", "", NULL, NULL, NULL},
    {"host=a;host=b, for=203.0.113.9", "", "203.0.113.9", "", ""},
    {"host=a, for=1.1.1.1;proto=https;for=203.0.113.9", "", NULL, NULL, NULL},
    {"host=a, for=1.1.1.1;by=x;by=y;proto=https", "", "1.1.1.1", "https", ""},
    {"for=1.2.3.4, ", "", NULL, NULL, NULL},
    {",for=1.2.3.4", "", "1.2.3.4", "", ""},
    /* HAProxy's "add-header Forwarded for=%[src]" does not quote an IPv6 client. */
    {"for=2001:db8::1;proto=https", "", "2001:db8::1", "https", ""},
    /* Quoted-strings with quoted-pairs (RFC 7230): parsed, and left as they are in the slice. */
    {"for=\"\\1.1.1.1\", for=203.0.113.9;proto=https", "", "203.0.113.9", "https", ""},
    {"for=\"\\1.1.1.1\"", "", NULL, NULL, NULL},
    {"for=203.0.113.9;host=\"a\\\\\"", "", "203.0.113.9", "", "a\\\\"},
    {"for=203.0.113.9;host=\"a\\\"", "", NULL, NULL, NULL},
    {"for=203.0.113.9;host=\"a\\\"\"", "", "203.0.113.9", "", "a\\\""},
    {"for=\"\\\"\", for=203.0.113.9", "", "203.0.113.9", "", ""},
    {"for=\"1.2.3.4\"x", "", NULL, NULL, NULL},
    {"x\"for=1.2.3.4", "", NULL, NULL, NULL},
    {"for=\"1.2.3.4\";proto=\"\"", "", "1.2.3.4", "", ""},
    {"for=\"1.2.3.4\";=https", "", NULL, NULL, NULL},
    /* Several lines: each on its own (a quote does not run into the next), from the last. */
    {"for=192.0.2.1;proto=http\nfor=203.0.113.9;proto=https;host=shop.example", "", "203.0.113.9",
     "https", "shop.example"},
    {"for=\"192.0.2.1\nfor=203.0.113.9", "", "203.0.113.9", "", ""},
    {"for=192.0.2.43;proto=https\nfor=10.0.0.2", "10.0.0.2", "192.0.2.43", "https", ""},
    {"for=192.0.2.43\nfor=10.0.0.3, for=10.0.0.2", "10.0.0.2 10.0.0.3", "192.0.2.43", "", ""},
    {"for=10.0.0.3\nfor=10.0.0.2", "10.0.0.2 10.0.0.3", "10.0.0.3", "", ""},
    {"for=\"\nfor=10.0.0.2", "10.0.0.2", NULL, NULL, NULL},
    {"for=203.0.113.9\n", "", NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

#define LINES_MAX 16

/* v[0, n) split at each '\n' into lines. */
static size_t split(const char *v, size_t n, wd_slice_t *lines)
{
    size_t count = 0, s = 0;

    for (size_t i = 0; i <= n; i++)
        if (i == n || v[i] == '\n') {
            T_CHECK(count < LINES_MAX, "too many lines");
            if (count == LINES_MAX)
                break;
            lines[count++] = (wd_slice_t){v + s, i - s};
            s = i + 1;
        }
    return count;
}

static int xff(const char *v, size_t n, const char *trust, wd_slice_t *client)
{
    wd_slice_t lines[LINES_MAX];

    return wd_fwd_xff(lines, split(v, n, lines), trusted, (void *)trust, client);
}

static int fwd(const char *v, size_t n, const char *trust, wd_fwd_t *out)
{
    wd_slice_t lines[LINES_MAX];

    return wd_fwd_forwarded(lines, split(v, n, lines), trusted, (void *)trust, out);
}

static int slice_is(wd_slice_t s, const char *want)
{
    return s.n == strlen(want) && (s.n == 0 || memcmp(s.p, want, s.n) == 0);
}

static void inside(const char *buf, size_t n, wd_slice_t s, const char *what)
{
    T_CHECK(s.n == 0 || (s.p >= buf && s.p + s.n <= buf + n), "%s: slice outside the value", what);
}

/* What a client may write before the proxy's part (built in client_part: a long one is made). */
static const char *const client_parts[] = {
    "",
    "1.1.1.1",
    "for=1.1.1.1;proto=https;host=evil.example",
    "#4100 1",            /* 4100 x '1': past any buffer of a header's lines joined */
    "#4095  ",            /* 4095 spaces, then the next */
    "#200 ,",             /* more elements than any table of them */
    "#150 for=1.1.1.1, ", /* ... each a whole one */
    "for=\"\\1.1.1.1\"",  /* a quoted-pair (RFC 7230) */
    "for=\"\\\"\"",
    "for=\"",
    "for=\"1.1.1.1\\\"", /* its closing quote escaped: unterminated */
    "\"",
    "\\",
    "for=\"1.1.1.1, for=\"x\"",
    "unknown",
    "for=_hidden;;=;\"",
    "1.1.1.1\n1.1.1.1\nfor=\"\n\"\n,,,\n1.1.1.1", /* lines of its own */
    NULL,
};

/* The trusted proxies' part: what it appends, the trusted set, and what it says of the client. */
typedef struct proxy_part {
    const char *xff, *fwd, *trusted, *client, *proto, *host;
} proxy_part_t;

static const proxy_part_t proxy_parts[] = {
    {"203.0.113.9", "for=203.0.113.9;proto=https;host=shop.example", "", "203.0.113.9", "https",
     "shop.example"},
    {"203.0.113.9, 10.0.0.2", "for=203.0.113.9;proto=https, for=10.0.0.2;proto=http", "10.0.0.2",
     "203.0.113.9", "https", ""},
    {"[2001:db8::9]:4711\n10.0.0.2", "for=\"[2001:db8::9]:4711\";host=\"shop:8443\"\nfor=10.0.0.2",
     "10.0.0.2", "2001:db8::9", "", "shop:8443"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

static size_t client_part(const char *spec, char *out, size_t cap)
{
    size_t n = 0;

    if (spec[0] == '#') {
        char *rest;
        unsigned long times = strtoul(spec + 1, &rest, 10);
        size_t k = strlen(rest + 1);

        for (unsigned long i = 0; i < times && n + k < cap; i++, n += k)
            memcpy(out + n, rest + 1, k);
        if (rest[1] == ' ' && k == 1) /* spaces, then an address */
            n += (size_t)snprintf(out + n, cap - n, "1.1.1.1");
        return n;
    }
    n = strlen(spec);
    memcpy(out, spec, n);
    return n;
}

/* The proxy's part after the client's, on its line (sep ", ") or on the next (sep "\n"): the
 * proxy's word, also with the client's part cut at every byte from the left. */
static void test_client_part_decides_nothing(t_guard_t *g)
{
    static const char *const seps[] = {", ", "\n"};
    static char v[16384];

    for (const char *const *cp = client_parts; *cp != NULL; cp++)
        for (const proxy_part_t *pp = proxy_parts; pp->xff != NULL; pp++)
            for (int fam = 0; fam < 2; fam++)
                for (size_t si = 0; si < 2; si++) {
                    size_t c = client_part(*cp, v, sizeof v / 2), n;
                    const char *tail = fam == 0 ? pp->xff : pp->fwd;

                    if (c > 0) {
                        memcpy(v + c, seps[si], strlen(seps[si]));
                        c += strlen(seps[si]);
                    }
                    n = c + (size_t)snprintf(v + c, sizeof v - c, "%s", tail);
                    for (size_t k = 0; k <= c; k++) {
                        const char *buf = t_guard_place(g, v + k, n - k);
                        wd_slice_t client = {NULL, 0};
                        wd_fwd_t f;
                        int ok;

                        if (fam == 0) {
                            ok = xff(buf, n - k, pp->trusted, &client) &&
                                 slice_is(client, pp->client);
                        } else {
                            ok = fwd(buf, n - k, pp->trusted, &f) && slice_is(f.addr, pp->client) &&
                                 slice_is(f.proto, pp->proto) && slice_is(f.host, pp->host);
                            client = f.addr;
                        }
                        T_CHECK(ok,
                                "%s: client part \"%.40s\"%s (%zu bytes, %zu cut) then \"%s\": "
                                "%.*s",
                                fam == 0 ? "xff" : "forwarded", v, si ? " and a line" : "", c, k,
                                tail, (int)client.n, client.p ? client.p : "");
                        if (!ok)
                            break;
                    }
                }
}

int main(void)
{
    t_guard_t g;

    t_guard_init(&g, 16384);
    for (const xcase_t *c = xff_cases; c->value != NULL; c++) {
        size_t n = strlen(c->value);
        wd_slice_t client = {NULL, 0};
        int rc = xff(c->value, n, c->trusted, &client);

        T_CHECK(rc == (c->client != NULL), "xff \"%s\": rc %d", c->value, rc);
        if (rc && c->client != NULL)
            T_CHECK(slice_is(client, c->client), "xff \"%s\": client %.*s", c->value, (int)client.n,
                    client.p);
        for (size_t k = 0; k <= n; k++) {
            char *buf = t_guard_place(&g, c->value, k);

            client = (wd_slice_t){NULL, 0};
            if (xff(buf, k, c->trusted, &client))
                inside(buf, k, client, c->value);
        }
    }
    for (const fcase_t *c = fwd_cases; c->value != NULL; c++) {
        size_t n = strlen(c->value);
        wd_fwd_t out;
        int rc = fwd(c->value, n, c->trusted, &out);

        T_CHECK(rc == (c->client != NULL), "forwarded \"%s\": rc %d", c->value, rc);
        if (rc && c->client != NULL)
            T_CHECK(slice_is(out.addr, c->client) && slice_is(out.proto, c->proto) &&
                        slice_is(out.host, c->host),
                    "forwarded \"%s\": %.*s %.*s %.*s", c->value, (int)out.addr.n, out.addr.p,
                    (int)out.proto.n, out.proto.p, (int)out.host.n, out.host.p);
        for (size_t k = 0; k <= n; k++) {
            char *buf = t_guard_place(&g, c->value, k);

            if (fwd(buf, k, c->trusted, &out)) {
                inside(buf, k, out.addr, c->value);
                inside(buf, k, out.proto, c->value);
                inside(buf, k, out.host, c->value);
            }
        }
    }
    T_CHECK(wd_fwd_is_ip("127.0.0.1", 9) && wd_fwd_is_ip("::1", 3) && !wd_fwd_is_ip("1.2.3", 5) &&
                !wd_fwd_is_ip("", 0),
            "is_ip");
    test_client_part_decides_nothing(&g);
    t_guard_free(&g);
    return t_summary("forwarded");
}
