/* Response head helpers and URL splitting/decoding: table-driven, every input placed right
 * before an unreadable page. */
#include "response.h"
#include "slice.h"
#include "testutil.h"
#include "url.h"

#include <time.h>

#define S(lit) lit, sizeof(lit) - 1

static t_guard_t guard;

/* The input copied to end at the unreadable page. */
static const char *g(const char *s, size_t n)
{
    return t_guard_place(&guard, s, n);
}

#define IEQ(lit, lower) wd_slice_ieq(g(S(lit)), sizeof(lit) - 1, lower)

static int slice_is(wd_slice_t s, const char *want)
{
    return s.n == strlen(want) && (s.n == 0 || memcmp(s.p, want, s.n) == 0);
}

static void test_status(void)
{
    static const struct {
        const char *s;
        size_t n;
        int want;
    } cases[] = {
        {S("200 OK"), 200},
        {S("404 Not Found"), 404},
        {S("599 Custom Thing"), 599},
        {S("999 X"), 999},
        {S("100 Continue"), 100},
        {S("200 "), 200},         /* an empty reason is allowed by RFC 9112 */
        {S("200 \tTabbed"), 200}, /* HTAB is allowed in a reason */
        {S("200 Caf\xe9"), 200},  /* latin-1 */
        {S("200"), -1},
        {S("200OK"), -1},
        {S("099 Low"), -1},
        {S("20 OK"), -1},
        {S("2000 OK"), -1},
        {S("abc OK"), -1},
        {S(" 200 OK"), -1},
        {S("200 OK\r\nX-Injected: 1"), -1},
        {S("200 OK\n"), -1},
        {S("200 O\0K"), -1},
        {S("200 O\x7fK"), -1},
        {S("200 O\x01K"), -1},
        {S(""), -1},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = wd_response_parse_status(g(cases[i].s, cases[i].n), cases[i].n);
        T_CHECK(r == cases[i].want, "parse_status '%.*s': %d, want %d", (int)cases[i].n, cases[i].s,
                r, cases[i].want);
    }
}

static void test_headers(void)
{
    static const struct {
        const char *s;
        size_t n;
        int name_ok, value_ok, hop;
    } cases[] = {
        {S("Content-Type"), 1, 1, 0},
        {S("X-Custom_Header.1~!#$%&'*+^`|"), 1, 1, 0},
        {S("Set-Cookie"), 1, 1, 0},
        {S("Connection"), 1, 1, 1},
        {S("connection"), 1, 1, 1},
        {S("KEEP-ALIVE"), 1, 1, 1},
        {S("Proxy-Authenticate"), 1, 1, 1},
        {S("Proxy-Authorization"), 1, 1, 1},
        {S("TE"), 1, 1, 1},
        {S("Trailer"), 1, 1, 1},
        {S("Trailers"), 1, 1, 1},
        {S("Transfer-Encoding"), 1, 1, 1},
        {S("Upgrade"), 1, 1, 1},
        {S("Connections"), 1, 1, 0},
        {S("T"), 1, 1, 0},
        {S(""), 0, 1, 0},
        {S("Bad Name"), 0, 1, 0},
        {S("Bad:Name"), 0, 1, 0},
        {S("Bad\tName"), 0, 1, 0},
        {S("(comment)"), 0, 1, 0},
        {S("\"quoted\""), 0, 1, 0},
        {S("text/html; charset=utf-8"), 0, 1, 0},
        {S("a\tb"), 0, 1, 0},
        {S("caf\xe9"), 0, 1, 0},
        {S("a\r\nSet-Cookie: x"), 0, 0, 0},
        {S("a\nb"), 0, 0, 0},
        {S("a\rb"), 0, 0, 0},
        {S("a\0b"), 0, 0, 0},
        {S("a\x7f"), 0, 0, 0},
        {S("\x1b[31m"), 0, 0, 0},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s = g(cases[i].s, cases[i].n);
        size_t n = cases[i].n;
        T_CHECK(wd_response_header_name_valid(s, n) == cases[i].name_ok, "name_valid '%.*s'",
                (int)n, cases[i].s);
        T_CHECK(wd_response_header_value_valid(s, n) == cases[i].value_ok, "value_valid '%.*s'",
                (int)n, cases[i].s);
        T_CHECK(wd_response_header_is_hop_by_hop(s, n) == cases[i].hop, "hop_by_hop '%.*s'", (int)n,
                cases[i].s);
    }

    T_CHECK(IEQ("Content-LENGTH", "content-length"), "ieq equal");
    T_CHECK(!IEQ("Content-Length", "content-lengthx"), "ieq shorter");
    T_CHECK(!IEQ("Content-Lengthx", "content-length"), "ieq longer");
    T_CHECK(IEQ("", ""), "ieq empty");
    T_CHECK(!IEQ("a", ""), "ieq vs empty");
}

static void test_reasons(void)
{
    static const struct {
        int code;
        const char *want;
    } cases[] = {
        {100, "Continue"},
        {200, "OK"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {413, "Payload Too Large"},
        {414, "URI Too Long"},
        {418, "I'm a teapot"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {511, "Network Authentication Required"},
        {299, "Unknown"},
        {0, "Unknown"},
        {-1, "Unknown"},
        {1000, "Unknown"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        T_CHECK(strcmp(wd_response_reason(cases[i].code), cases[i].want) == 0, "reason %d: '%s'",
                cases[i].code, wd_response_reason(cases[i].code));
}

static void test_canned(void)
{
    static const struct {
        int code, minor, keep_alive;
        const char *want;
    } cases[] = {
        {413, 1, 0,
         "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n"
         "Connection: close\r\n\r\n413 Payload Too Large\n"},
        {400, 0, 0,
         "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
         "Connection: close\r\n\r\n400 Bad Request\n"},
        {504, 1, 1,
         "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
         "\r\n504 Gateway Timeout\n"},
        {500, 0, 1,
         "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 26\r\n"
         "Connection: keep-alive\r\n\r\n500 Internal Server Error\n"},
        {431, 1, 0,
         "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
         "Content-Length: 36\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large\n"},
    };
    char out[512];
    size_t i, n, want;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 'Z', sizeof(out));
        n = wd_response_canned(out, sizeof(out), cases[i].code, cases[i].minor,
                               cases[i].keep_alive);
        want = strlen(cases[i].want);
        T_CHECK(n == want && memcmp(out, cases[i].want, n) == 0, "canned %d: got %zu '%.*s'",
                cases[i].code, n, (int)n, out);
        /* Too small a buffer gives nothing, never half a response or an overflow. */
        T_CHECK(wd_response_canned(out, want, cases[i].code, cases[i].minor, cases[i].keep_alive) ==
                    0,
                "canned %d short", cases[i].code);
        T_CHECK(wd_response_canned(out, 0, cases[i].code, 1, 0) == 0, "canned %d cap 0",
                cases[i].code);
    }
    /* The longest reason fits in 256 bytes, as the header promises. */
    T_CHECK(wd_response_canned(out, 256, 511, 0, 1) > 0, "canned 511 in 256 bytes");
}

/* The Date line: known instants, then a sweep checked against gmtime_r and strftime in the C
 * locale; and a canned answer with it. */
static void test_date_line(void)
{
    static const struct {
        long long t;
        const char *want;
    } cases[] = {
        {0, "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"},
        {784111777, "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"}, /* RFC 9110's example */
        {951782400, "Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n"},
        {4102444799LL, "Date: Thu, 31 Dec 2099 23:59:59 GMT\r\n"},
        {-1, "Date: Wed, 31 Dec 1969 23:59:59 GMT\r\n"},
    };
    char out[WD_DATE_LINE_MAX], want[64], buf[512];
    size_t n;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = wd_response_date_line(out, cases[i].t);
        T_CHECK(n == 37 && strcmp(out, cases[i].want) == 0, "date %lld: '%s'", cases[i].t, out);
    }
    for (long long t = 0; t < (1LL << 34); t += 9876543) {
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(want, sizeof want, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        n = wd_response_date_line(out, t);
        T_CHECK(n == strlen(want) && strcmp(out, want) == 0, "date %lld: '%s' not '%s'", t, out,
                want);
    }
    wd_response_date_line(out, 784111777);
    n = wd_response_canned_dated(buf, sizeof buf, 400, 1, 0, out);
    {
        static const char head[] = "HTTP/1.1 400 Bad Request\r\n"
                                   "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                                   "Content-Type: text/plain\r\n";

        T_CHECK(n > sizeof head && memcmp(buf, head, sizeof head - 1) == 0,
                "canned with a date: '%.*s'", (int)n, buf);
    }
    T_CHECK(wd_response_canned_dated(buf, 300, 511, 0, 1, out) > 0,
            "dated canned 511 in 300 bytes");
}

static void test_url_split(void)
{
    static const struct {
        const char *uri, *path, *query;
    } cases[] = {
        {"/p?q", "/p", "q"},
        {"/a/b%20c?x=1&y=2", "/a/b%20c", "x=1&y=2"},
        {"/", "/", ""},
        {"/p", "/p", ""},
        {"/p?", "/p", ""},
        {"?q", "", "q"},
        {"", "", ""},
        {"/p?q?r", "/p", "q?r"},
        {"/p#frag", "/p", ""},
        {"/p?q#frag", "/p", "q"},
        {"http://h/p?q", "/p", "q"},
        {"https://example.com:8443/a/b?c=d", "/a/b", "c=d"},
        {"http://h", "/", ""},
        {"http://h?q", "/", "q"},
        {"HTTP://h/P", "/P", ""},
        {"*", "*", ""},
        {"//double/slash", "//double/slash", ""},
        {"/http://not/absolute", "/http://not/absolute", ""},
        {"h:/p", "h:/p", ""},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].uri);
        wd_slice_t path, query;
        wd_url_split(g(cases[i].uri, n), n, &path, &query);
        T_CHECK(slice_is(path, cases[i].path) && slice_is(query, cases[i].query),
                "url_split '%s': path '%.*s' query '%.*s'", cases[i].uri, (int)path.n, path.p,
                (int)query.n, query.p);
    }
}

/* {target, wd_url_decode, wd_url_decode_needed (the escapes a client must use only),
 * wd_url_decode_unreserved (those of unreserved characters only), wd_url_decode_but_slash (all but
 * %2F): the last two are Apache's steps around its removal of dot segments (helper-83)}. */
static void test_url_decode(void)
{
    static const struct {
        const char *in, *out, *needed, *unreserved, *but_slash;
    } cases[] = {
        {"/a%20b", "/a b", "/a b", "/a%20b", "/a b"},
        {"%41%42%43", "ABC", "%41%42%43", "ABC", "ABC"},
        {"%e9t%C3%A9", "\xe9t\xc3\xa9", "\xe9t\xc3\xa9", "%e9t%C3%A9", "\xe9t\xc3\xa9"},
        {"/plus+stays", "/plus+stays", "/plus+stays", "/plus+stays", "/plus+stays"},
        {"%2F%2f", "//", "%2F%2f", "%2F%2f", "%2F%2f"},
        {"100%", "100%", "100%", "100%", "100%"},
        {"%4", "%4", "%4", "%4", "%4"},
        {"%zz%4g", "%zz%4g", "%zz%4g", "%zz%4g", "%zz%4g"},
        {"%%41", "%A", "%%41", "%A", "%A"},
        {"", "", "", "", ""},
        {"/no/escapes", "/no/escapes", "/no/escapes", "/no/escapes", "/no/escapes"},
        {"/caf%C3%A9/x", "/caf\xc3\xa9/x", "/caf\xc3\xa9/x", "/caf%C3%A9/x", "/caf\xc3\xa9/x"},
        {"/%61dmin/x", "/admin/x", "/%61dmin/x", "/admin/x", "/admin/x"},
        {"/admin%2Fx%2f", "/admin/x/", "/admin%2Fx%2f", "/admin%2Fx%2f", "/admin%2Fx%2f"},
        {"/%2e%2E/%7E%5F%2D", "/../~_-", "/%2e%2E/%7E%5F%2D", "/../~_-", "/../~_-"},
        {"/a%20b%3F%25", "/a b?%", "/a b?%", "/a%20b%3F%25", "/a b?%"},
        {"/%30%39%41%5A", "/09AZ", "/%30%39%41%5A", "/09AZ", "/09AZ"},
        {"/a%2Fb/%2e%2e/x%00", "/a/b/../x\0", "/a%2Fb/%2e%2e/x\0", "/a%2Fb/../x%00",
         "/a%2Fb/../x\0"},
        {"%2541%252F", "%41%2F", "%41%2F", "%2541%252F", "%41%2F"}, /* decoded once */
    };
    static const struct {
        const char *name;
        size_t (*decode)(char *, const char *, size_t);
    } fns[] = {{"", wd_url_decode},
               {"_needed", wd_url_decode_needed},
               {"_unreserved", wd_url_decode_unreserved},
               {"_but_slash", wd_url_decode_but_slash}};
    char dst[64];
    size_t i, n, r, wn;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t f = 0; f < sizeof fns / sizeof fns[0]; f++) {
            const char *want = f == 0   ? cases[i].out
                               : f == 1 ? cases[i].needed
                               : f == 2 ? cases[i].unreserved
                                        : cases[i].but_slash;

            /* "x\0" in a want: the decoded NUL ends the C string, the length counts it */
            n = strlen(cases[i].in);
            wn = strlen(want) + (strstr(cases[i].in, "%00") != NULL && f != 2);
            r = fns[f].decode(dst, g(cases[i].in, n), n);
            T_CHECK(r == wn && memcmp(dst, want, r) == 0, "url_decode%s '%s': '%.*s'", fns[f].name,
                    cases[i].in, (int)r, dst);

            /* In place. */
            memcpy(dst, cases[i].in, n);
            r = fns[f].decode(dst, dst, n);
            T_CHECK(r == wn && memcmp(dst, want, r) == 0, "url_decode%s in place '%s': '%.*s'",
                    fns[f].name, cases[i].in, (int)r, dst);
        }
    }
    /* NUL from %00 is decoded (the caller decides what to do with it). */
    r = wd_url_decode(dst, "a%00b", 5);
    T_CHECK(r == 3 && memcmp(dst, "a\0b", 3) == 0, "url_decode %%00");
}

static void test_url_normalize(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"/", "/"},
        {"", ""},
        {"*", "*"},
        {"a/../b", "a/../b"},
        {"/a/b", "/a/b"},
        {"/a/b/", "/a/b/"},
        {"//a///b", "/a/b"},
        {"/a/./b", "/a/b"},
        {"/a/.", "/a/"},
        {"/a/..", "/"},
        {"/a/b/..", "/a/"},
        {"/a/b/../c", "/a/c"},
        {"/a/b/../../c", "/c"},
        {"/..", "/"},
        {"/../../x", "/x"},
        {"/admin/../public/x", "/public/x"},
        {"/admin//../public/x", "/public/x"}, /* as nginx, which merges the slashes first */
        {"/.a/..b/...", "/.a/..b/..."},
        {"/a/.b./c", "/a/.b./c"},
        {"/./", "/"},
        {"/.//", "/"},
        {"//", "/"},
    };
    char buf[64];
    size_t i, n, r;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = strlen(cases[i].in);
        memcpy(buf, cases[i].in, n);
        r = wd_url_normalize(buf, n);
        T_CHECK(r == strlen(cases[i].out) && memcmp(buf, cases[i].out, r) == 0,
                "url_normalize '%s': '%.*s'", cases[i].in, (int)r, buf);
    }
}

/* Framing: {status, HEAD, has_cl, known, http, minor, client keep-alive, failed} ->
 * {no_body, add_cl, chunked, keep_alive, Connection line}. */
static void test_framing(void)
{
    static const struct {
        const char *name;
        wd_framing_in_t in;
        wd_framing_t want;
    } cases[] = {
        {"1.1 list of one: Content-Length, keep-alive",
         {200, 0, 0, 5, 1, 1, 1, 0},
         {0, 1, 0, 1, NULL}},
        {"1.1 app's Content-Length", {200, 0, 1, -1, 1, 1, 1, 0}, {0, 0, 0, 1, NULL}},
        {"1.1 unknown length: chunked", {200, 0, 0, -1, 1, 1, 1, 0}, {0, 0, 1, 1, NULL}},
        {"1.1 client closes", {200, 0, 0, -1, 1, 1, 0, 0}, {0, 0, 1, 0, "Connection: close\r\n"}},
        {"1.0 unknown length: close ends it", {200, 0, 0, -1, 1, 0, 1, 0}, {0, 0, 0, 0, NULL}},
        {"1.0 known length, keep-alive asked",
         {200, 0, 0, 3, 1, 0, 1, 0},
         {0, 1, 0, 1, "Connection: keep-alive\r\n"}},
        {"1.0 no keep-alive asked", {200, 0, 1, -1, 1, 0, 0, 0}, {0, 0, 0, 0, NULL}},
        {"204: no body, no Content-Length added", {204, 0, 0, 0, 1, 1, 1, 0}, {1, 0, 0, 1, NULL}},
        {"205: no body, Content-Length (0) added", {205, 0, 0, 5, 1, 1, 1, 0}, {1, 1, 0, 1, NULL}},
        {"205 of an app's Content-Length: 0 added",
         {205, 0, 1, -1, 1, 1, 1, 0},
         {1, 1, 0, 1, NULL}},
        {"304 unknown length: delimited", {304, 0, 0, -1, 1, 1, 1, 0}, {1, 0, 0, 1, NULL}},
        {"101", {101, 0, 0, -1, 1, 1, 1, 0}, {1, 0, 0, 1, NULL}},
        {"HEAD, unknown length: not chunked", {200, 1, 0, -1, 1, 1, 1, 0}, {1, 0, 0, 1, NULL}},
        {"HEAD of a list: Content-Length of the body",
         {200, 1, 0, 7, 1, 1, 1, 0},
         {1, 1, 0, 1, NULL}},
        {"failed: closes", {500, 0, 0, 12, 1, 1, 1, 1}, {0, 1, 0, 0, "Connection: close\r\n"}},
        {"uwsgi: Content-Length, nothing else", {200, 0, 0, 5, 0, 1, 0, 0}, {0, 1, 0, 0, NULL}},
        {"uwsgi unknown length: the close ends it",
         {200, 0, 0, -1, 0, 1, 0, 0},
         {0, 0, 0, 0, NULL}},
        {"uwsgi HEAD", {200, 1, 0, -1, 0, 1, 0, 0}, {1, 0, 0, 0, NULL}},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wd_framing_t f;
        const wd_framing_t *w = &cases[i].want;

        memset(&f, 0x55, sizeof f);
        wd_response_framing(&cases[i].in, &f);
        T_CHECK(f.no_body == w->no_body && f.add_cl == w->add_cl && f.chunked == w->chunked &&
                    f.keep_alive == w->keep_alive,
                "framing %s: no_body %d add_cl %d chunked %d keep_alive %d", cases[i].name,
                f.no_body, f.add_cl, f.chunked, f.keep_alive);
        T_CHECK((f.connection == NULL) == (w->connection == NULL) &&
                    (f.connection == NULL || strcmp(f.connection, w->connection) == 0),
                "framing %s: Connection %s", cases[i].name, f.connection ? f.connection : "none");
    }
}

/* wd_fmt_u64 / wd_fmt_x64 (slice.h) write what snprintf's %llu / %llx would: the edges of every
 * digit count, and a spread of values in between. */
static void test_fmt(void)
{
    uint64_t v = 0x9e3779b97f4a7c15ull;

    for (int i = 0; i < 20000; i++) {
        /* powers of two (and one less), then a spread of magnitudes */
        uint64_t x = i < 64 ? (1ull << i) - (i & 1) : i < 84 ? 0 : v >> (unsigned)(i % 61);
        char want[32], got[32];
        int wn;
        size_t gn;

        if (i >= 64 && i < 84) { /* 10^k - 1 and 10^k */
            x = 1;
            for (int k = 0; k < (i - 64) / 2 + 1; k++)
                x *= 10;
            x -= (i & 1);
        }
        if (i == 84)
            x = UINT64_MAX;
        wn = snprintf(want, sizeof want, "%llu", (unsigned long long)x);
        gn = wd_fmt_u64(got, x);
        T_CHECK(gn == (size_t)wn && memcmp(got, want, gn) == 0, "u64 %llu: got %.*s",
                (unsigned long long)x, (int)gn, got);
        wn = snprintf(want, sizeof want, "%llx", (unsigned long long)x);
        gn = wd_fmt_x64(got, x);
        T_CHECK(gn == (size_t)wn && memcmp(got, want, gn) == 0, "x64 %llx: got %.*s",
                (unsigned long long)x, (int)gn, got);
        v ^= v << 13, v ^= v >> 7, v ^= v << 17; /* xorshift64 */
    }
}

int main(void)
{
    t_guard_init(&guard, 4096);
    test_fmt();
    test_framing();
    test_status();
    test_headers();
    test_reasons();
    test_canned();
    test_date_line();
    test_url_split();
    test_url_decode();
    test_url_normalize();
    t_guard_free(&guard);
    return t_summary("response");
}
