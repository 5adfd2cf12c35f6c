/* libFuzzer target: the response-side checks and the URL helpers (protocol/response.c, url.c).
 *
 * The input is used whole as a status line, a header name and value, and a request target;
 * each function is checked against a plain reference of its contract (response.h, url.h), and
 * wd_response_canned against what an HTTP client would parse from it. */
#include "fuzz.h"
#include "response.h"
#include "url.h"

#include <ctype.h>
#include <string.h>

static int ref_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int ref_ieq(const char *s, size_t n, const char *l)
{
    size_t i;

    if (strlen(l) != n)
        return 0;
    for (i = 0; i < n; i++)
        if (lower(s[i]) != l[i])
            return 0;
    return 1;
}

static int ref_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void check_status(const char *s, size_t n)
{
    int code = wd_response_parse_status(s, n);
    size_t i;

    if (code < 0) {
        WD_FUZZ_CHECK(code == -1);
        return;
    }
    WD_FUZZ_CHECK(code >= 100 && code <= 999);
    WD_FUZZ_CHECK(n >= 4 && s[3] == ' ');
    WD_FUZZ_CHECK(code == (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0'));
    for (i = 4; i < n; i++) /* a status line never carries a control character */
        WD_FUZZ_CHECK(((unsigned char)s[i] >= 0x20 && s[i] != 0x7f) || s[i] == '\t');
    WD_FUZZ_CHECK(wd_response_reason(code) != NULL);
}

static void check_header(const char *s, size_t n)
{
    static const char *const hop[] = {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te",         "trailer",    "trailers",           "transfer-encoding",
        "upgrade"};
    size_t i, colon;
    int ok = n > 0, is_hop = 0;

    for (i = 0; i < n; i++)
        ok = ok && ref_tchar((unsigned char)s[i]);
    WD_FUZZ_CHECK(!!wd_response_header_name_valid(s, n) == ok);

    for (i = 0; i < sizeof hop / sizeof hop[0]; i++) {
        is_hop |= ref_ieq(s, n, hop[i]);
        WD_FUZZ_CHECK(!!wd_slice_ieq(s, n, hop[i]) == ref_ieq(s, n, hop[i]));
    }
    WD_FUZZ_CHECK(!!wd_response_header_is_hop_by_hop(s, n) == is_hop);

    /* The value check is what keeps CR LF out of a response head. */
    if (wd_response_header_value_valid(s, n)) {
        for (i = 0; i < n; i++)
            WD_FUZZ_CHECK((unsigned char)s[i] >= 0x20 || s[i] == '\t');
    } else {
        for (ok = 1, i = 0; i < n; i++)
            ok = ok && ((unsigned char)s[i] >= 0x20 || s[i] == '\t') && s[i] != 0x7f;
        WD_FUZZ_CHECK(!ok); /* refused only with a control character in it */
    }
    /* "Name: value" split at the first colon, as an app's header pair. */
    colon = (const char *)memchr(s, ':', n) ? (size_t)((const char *)memchr(s, ':', n) - s) : n;
    (void)wd_response_header_name_valid(s, colon);
    if (colon < n)
        (void)wd_response_header_value_valid(s + colon + 1, n - colon - 1);
}

/* Apache's two steps (url.h): an escape is decoded when its byte is unreserved (the first), or
 * when it is anything but '/' (the second); every other byte is copied, and in place gives the
 * same bytes as into another buffer. dst and scratch have room for n bytes. */
static void check_partial_decode(const char *uri, size_t n, char *dst, char *scratch)
{
    int step;

    for (step = 0; step < 2; step++) {
        size_t m, i, o;

        memcpy(scratch, uri, n);
        m = step == 0 ? wd_url_decode_unreserved(dst, uri, n)
                      : wd_url_decode_but_slash(dst, uri, n);
        WD_FUZZ_CHECK(m <= n);
        WD_FUZZ_CHECK((step == 0 ? wd_url_decode_unreserved(scratch, scratch, n)
                                 : wd_url_decode_but_slash(scratch, scratch, n)) == m &&
                      memcmp(scratch, dst, m) == 0);
        for (i = 0, o = 0; i < n; o++) {
            int c =
                uri[i] == '%' && i + 2 < n && ref_hex(uri[i + 1]) >= 0 && ref_hex(uri[i + 2]) >= 0
                    ? ref_hex(uri[i + 1]) << 4 | ref_hex(uri[i + 2])
                    : -1;
            int take = c >= 0 &&
                       (step == 0 ? (isalnum(c) || strchr("-._~", c) != NULL) && c != 0 : c != '/');

            WD_FUZZ_CHECK(o < m && (unsigned char)dst[o] == (take ? c : (unsigned char)uri[i]));
            i += take ? 3 : 1;
        }
        WD_FUZZ_CHECK(o == m);
    }
}

static void check_url(const char *uri, size_t n)
{
    wd_slice_t path, query;
    char *dst, *inplace;
    size_t m, m2, i, o;

    wd_url_split(uri, n, &path, &query);
    if (!(path.n == 1 && path.p[0] == '/' && (path.p < uri || path.p >= uri + n)))
        WD_FUZZ_INSIDE(path.p, path.n, uri, uri + n); /* or the static "/" */
    WD_FUZZ_INSIDE(query.p, query.n, uri, uri + n);
    WD_FUZZ_CHECK(memchr(path.p, '?', path.n) == NULL && memchr(path.p, '#', path.n) == NULL);
    WD_FUZZ_CHECK(memchr(query.p, '#', query.n) == NULL);
    if (query.n > 0)
        WD_FUZZ_CHECK(query.p > uri && query.p[-1] == '?');

    /* Decoding into a separate buffer and in place give the same bytes. */
    dst = malloc(n ? n : 1);
    inplace = wd_fuzz_dup((const uint8_t *)uri, n);
    if (dst == NULL)
        abort();
    m = wd_url_decode(dst, uri, n);
    m2 = wd_url_decode(inplace, inplace, n);
    WD_FUZZ_CHECK(m <= n && m == m2 && memcmp(dst, inplace, m) == 0);
    /* Reference: %XX with two hex digits is one byte, anything else is copied. */
    for (i = 0, o = 0; i < n; o++) {
        if (uri[i] == '%' && i + 2 < n && ref_hex(uri[i + 1]) >= 0 && ref_hex(uri[i + 2]) >= 0) {
            WD_FUZZ_CHECK(o < m && (unsigned char)dst[o] ==
                                       (ref_hex(uri[i + 1]) << 4 | ref_hex(uri[i + 2])));
            i += 3;
        } else {
            WD_FUZZ_CHECK(o < m && dst[o] == uri[i]);
            i++;
        }
    }
    WD_FUZZ_CHECK(o == m);

    /* Normalising the decoded path: never longer, idempotent, and a path from '/' comes out
     * with no "//", "/./" or "/../" in it, nor a final "/." or "/..". */
    m2 = wd_url_normalize(dst, m);
    WD_FUZZ_CHECK(m2 <= m);
    if (m > 0 && dst[0] == '/') {
        WD_FUZZ_CHECK(m2 >= 1 && dst[0] == '/');
        WD_FUZZ_CHECK(wd_url_normalize(dst, m2) == m2);
        for (i = 0; i + 1 < m2; i++) {
            WD_FUZZ_CHECK(!(dst[i] == '/' && dst[i + 1] == '/'));
            if (dst[i] == '/' && dst[i + 1] == '.') {
                size_t e = i + 2 < m2 && dst[i + 2] == '.' ? i + 3 : i + 2;
                WD_FUZZ_CHECK(e < m2 && dst[e] != '/');
            }
        }
    } else {
        WD_FUZZ_CHECK(m2 == m);
    }
    check_partial_decode(uri, n, dst, inplace); /* last: it writes over dst */
    free(inplace);
    free(dst);
}

static void check_canned(const uint8_t *data, size_t size)
{
    int code = size >= 2 ? (data[0] | data[1] << 8) % 1100 : 400;
    int minor = size >= 3 ? data[2] & 1 : 1;
    int keep = size >= 3 ? (data[2] >> 1) & 1 : 0;
    size_t cap = size >= 4 ? data[3] : 256;
    int dated = size >= 3 ? (data[2] >> 2) & 1 : 0;
    long long t = size >= 8 ? (long long)(data[4] | data[5] << 8 | data[6] << 16) * 977 : 0;
    char *out = malloc(cap ? cap : 1), date[WD_DATE_LINE_MAX];
    const char *blank, *cl;
    size_t len;

    if (out == NULL)
        abort();
    WD_FUZZ_CHECK(wd_response_reason(code) != NULL);
    WD_FUZZ_CHECK(wd_response_date_line(date, t) == 37);
    len = dated ? wd_response_canned_dated(out, cap, code, minor, keep, date)
                : wd_response_canned(out, cap, code, minor, keep);
    WD_FUZZ_CHECK(len <= cap);
    if (cap >= (dated ? 300 : 256) && code >= 100 && code <= 999)
        WD_FUZZ_CHECK(len > 0); /* 256 bytes (300 with a Date) are always enough */
    if (len > 0 && dated)
        WD_FUZZ_CHECK(memmem(out, len, date, 37) != NULL);
    if (len > 0) {
        WD_FUZZ_CHECK(len >= 17 && memcmp(out, "HTTP/1.1 ", 9) == 0);
        blank = memmem(out, len, "\r\n\r\n", 4);
        WD_FUZZ_CHECK(blank != NULL);
        cl = memmem(out, (size_t)(blank - out), "\r\nContent-Length: ", 18);
        if (cl != NULL)
            WD_FUZZ_CHECK(strtoul(cl + 18, NULL, 10) == len - (size_t)(blank + 4 - out));
        WD_FUZZ_CHECK((memmem(out, (size_t)(blank - out), "Connection: close", 17) != NULL) ==
                      !keep);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = wd_fuzz_dup(data, size);

    check_status(s, size);
    check_header(s, size);
    check_url(s, size);
    check_canned(data, size);
    free(s);
    return 0;
}
