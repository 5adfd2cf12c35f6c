/* Weak stand-ins for protocol/response.c and protocol/url.c, for test_glue only, while those
 * files are being written (a weak definition keeps the archive member out: drop this file once
 * they exist). */
#include "../protocol/response.h"
#include "../protocol/url.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WEAK __attribute__((weak))

WEAK const char *wd_response_reason(int code)
{
    return code == 500 ? "Internal Server Error" : code == 200 ? "OK" : "Unknown";
}

WEAK int wd_response_parse_status(const char *s, size_t n)
{
    if (n < 4 || s[3] != ' ')
        return -1;
    for (int i = 0; i < 3; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    for (size_t i = 4; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -1;
    return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

WEAK int wd_response_header_name_valid(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || strchr("()<>@,;:\\\"/[]?={}\x7f", s[i]) ||
            (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

WEAK int wd_response_header_value_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return 0;
    return 1;
}

WEAK int wd_slice_ieq(const char *s, size_t n, const char *lower)
{
    return strlen(lower) == n && strncasecmp(s, lower, n) == 0;
}

WEAK int wd_response_header_is_hop_by_hop(const char *s, size_t n)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-authenticate",
        "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade"};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (wd_slice_ieq(s, n, names[i]))
            return 1;
    return 0;
}

WEAK size_t wd_response_canned(char *out, size_t cap, int code, int http_minor, int keep_alive)
{
    const char *reason = wd_response_reason(code);
    int n = snprintf(out, cap,
                     "HTTP/1.%d %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n"
                     "%d %s\n",
                     http_minor, code, reason, strlen(reason) + 5,
                     keep_alive ? "" : "Connection: close\r\n", code, reason);

    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

WEAK void wd_url_split(const char *uri, size_t n, wd_slice_t *path, wd_slice_t *query)
{
    const char *q = memchr(uri, '?', n);

    path->p = uri;
    path->n = q ? (size_t)(q - uri) : n;
    query->p = q ? q + 1 : uri + n;
    query->n = q ? n - path->n - 1 : 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

WEAK size_t wd_url_decode(char *dst, const char *src, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (src[i] == '%' && i + 2 < n && hexval(src[i + 1]) >= 0 && hexval(src[i + 2]) >= 0) {
            dst[o++] = (char)(hexval(src[i + 1]) * 16 + hexval(src[i + 2]));
            i += 2;
        } else {
            dst[o++] = src[i];
        }
    }
    return o;
}
