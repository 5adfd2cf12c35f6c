/* X-Forwarded-For and Forwarded (protocol/forwarded.c): a table of header values and trusted
 * proxies, and the client each gives; every prefix of every value is parsed too (it must not read
 * past its end, and whatever it returns lies inside it). */
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

static const xcase_t xff[] = {
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
    {NULL, NULL, NULL},
};

typedef struct fcase {
    const char *value;
    const char *trusted;
    const char *client, *proto, *host;
} fcase_t;

static const fcase_t fwd[] = {
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
    {"for=1.2.3.4;;", "", NULL, NULL, NULL},
    {"", "", NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static int slice_is(wd_slice_t s, const char *want)
{
    return s.n == strlen(want) && (s.n == 0 || memcmp(s.p, want, s.n) == 0);
}

static void inside(const char *buf, size_t n, wd_slice_t s, const char *what)
{
    T_CHECK(s.n == 0 || (s.p >= buf && s.p + s.n <= buf + n), "%s: slice outside the value", what);
}

int main(void)
{
    t_guard_t g;

    t_guard_init(&g, 4096);
    for (const xcase_t *c = xff; c->value != NULL; c++) {
        size_t n = strlen(c->value);
        wd_slice_t client = {NULL, 0};
        int rc = wd_fwd_xff(c->value, n, trusted, (void *)c->trusted, &client);

        T_CHECK(rc == (c->client != NULL), "xff \"%s\": rc %d", c->value, rc);
        if (rc && c->client != NULL)
            T_CHECK(slice_is(client, c->client), "xff \"%s\": client %.*s", c->value, (int)client.n,
                    client.p);
        for (size_t k = 0; k <= n; k++) {
            char *buf = t_guard_place(&g, c->value, k);

            client = (wd_slice_t){NULL, 0};
            if (wd_fwd_xff(buf, k, trusted, (void *)c->trusted, &client))
                inside(buf, k, client, c->value);
        }
    }
    for (const fcase_t *c = fwd; c->value != NULL; c++) {
        size_t n = strlen(c->value);
        wd_fwd_t out;
        int rc = wd_fwd_forwarded(c->value, n, trusted, (void *)c->trusted, &out);

        T_CHECK(rc == (c->client != NULL), "forwarded \"%s\": rc %d", c->value, rc);
        if (rc && c->client != NULL)
            T_CHECK(slice_is(out.addr, c->client) && slice_is(out.proto, c->proto) &&
                        slice_is(out.host, c->host),
                    "forwarded \"%s\": %.*s %.*s %.*s", c->value, (int)out.addr.n, out.addr.p,
                    (int)out.proto.n, out.proto.p, (int)out.host.n, out.host.p);
        for (size_t k = 0; k <= n; k++) {
            char *buf = t_guard_place(&g, c->value, k);

            if (wd_fwd_forwarded(buf, k, trusted, (void *)c->trusted, &out)) {
                inside(buf, k, out.addr, c->value);
                inside(buf, k, out.proto, c->value);
                inside(buf, k, out.host, c->value);
            }
        }
    }
    T_CHECK(wd_fwd_is_ip("127.0.0.1", 9) && wd_fwd_is_ip("::1", 3) && !wd_fwd_is_ip("1.2.3", 5) &&
                !wd_fwd_is_ip("", 0),
            "is_ip");
    t_guard_free(&g);
    return t_summary("forwarded");
}
