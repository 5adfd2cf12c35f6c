/* Request targets (RFC 9112 3.2) cut into the pieces of the CGI/WSGI environ. */
#include "url.h"

#include <string.h>

static int is_scheme_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '-' || c == '.';
}

/* Length of "scheme://authority" at the start of an absolute-form target, or 0. */
static size_t authority_end(const char *uri, size_t n)
{
    size_t i = 0;

    if (n == 0 || !((uri[0] >= 'a' && uri[0] <= 'z') || (uri[0] >= 'A' && uri[0] <= 'Z')))
        return 0;
    while (i < n && is_scheme_char(uri[i]))
        i++;
    if (n - i < 3 || uri[i] != ':' || uri[i + 1] != '/' || uri[i + 2] != '/')
        return 0;
    for (i += 3; i < n; i++)
        if (uri[i] == '/' || uri[i] == '?' || uri[i] == '#')
            break;
    return i;
}

int wd_url_authority(const char *uri, size_t n, wd_slice_t *auth)
{
    size_t end = authority_end(uri, n), start;

    if (end == 0)
        return 0;
    for (start = 0; uri[start] != ':'; start++)
        ;
    start += 3;
    auth->p = uri + start;
    auth->n = end - start;
    return 1;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int wd_url_host_valid(const char *p, size_t n)
{
    size_t i = 0;

    if (n > 0 && p[0] == '[') {
        for (i = 1; i < n && p[i] != ']'; i++)
            if (!(is_hex(p[i]) || p[i] == ':' || p[i] == '.'))
                return 0;
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        for (; i < n && p[i] != ':'; i++) {
            char c = p[i];

            if (c == '%') {
                if (i + 2 >= n || !is_hex(p[i + 1]) || !is_hex(p[i + 2]))
                    return 0;
                i += 2;
            } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || strchr("-._~!$&'()*+,;=", c) != NULL)) {
                return 0;
            }
        }
    }
    if (i == n)
        return 1;
    if (p[i] != ':' || i == 0)
        return 0;
    for (i++; i < n && p[i] == '0'; i++) /* leading zeros: "8080" is "08080" */
        ;
    for (unsigned port = 0; i < n; i++) {
        if (!(p[i] >= '0' && p[i] <= '9') || (port = port * 10 + (unsigned)(p[i] - '0')) > 65535)
            return 0;
    }
    return 1;
}

void wd_url_split(const char *uri, size_t n, wd_slice_t *path, wd_slice_t *query)
{
    static const char root[] = "/";
    size_t start = authority_end(uri, n);
    size_t i, q;

    for (i = start; i < n && uri[i] != '?' && uri[i] != '#'; i++)
        ;
    path->p = uri + start;
    path->n = i - start;

    /* "http://host" and "http://host?q" mean the root. */
    if (start > 0 && path->n == 0) {
        path->p = root;
        path->n = 1;
    }

    query->p = uri + i;
    query->n = 0;
    if (i < n && uri[i] == '?') {
        for (q = i + 1; q < n && uri[q] != '#'; q++)
            ;
        query->p = uri + i + 1;
        query->n = q - i - 1;
    }
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* An unreserved character (RFC 3986 2.3), which a client never needs to escape. */
static int unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Which escapes decode() decodes. */
enum { ALL, NEEDED, UNRESERVED, BUT_SLASH };

static int decodes(int which, int c)
{
    switch (which) {
    case NEEDED:
        return !(unreserved(c) || c == '/');
    case UNRESERVED:
        return unreserved(c);
    case BUT_SLASH:
        return c != '/';
    default:
        return 1;
    }
}

static size_t decode(char *dst, const char *src, size_t n, int which)
{
    size_t i, o = 0;

    /* o never passes i, so dst == src is safe. */
    for (i = 0; i < n; i++) {
        int hi, lo;

        if (src[i] == '%' && n - i > 2 && (hi = hex(src[i + 1])) >= 0 &&
            (lo = hex(src[i + 2])) >= 0 && decodes(which, hi << 4 | lo)) {
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            dst[o++] = src[i];
        }
    }
    return o;
}

size_t wd_url_decode(char *dst, const char *src, size_t n)
{
    return decode(dst, src, n, ALL);
}

size_t wd_url_decode_needed(char *dst, const char *src, size_t n)
{
    return decode(dst, src, n, NEEDED);
}

size_t wd_url_decode_unreserved(char *dst, const char *src, size_t n)
{
    return decode(dst, src, n, UNRESERVED);
}

size_t wd_url_decode_but_slash(char *dst, const char *src, size_t n)
{
    return decode(dst, src, n, BUT_SLASH);
}

size_t wd_url_normalize(char *p, size_t n)
{
    size_t r = 0, w = 0;

    if (n == 0 || p[0] != '/')
        return n;
    /* w never passes r: the path is rewritten in place, one segment at a time. */
    while (r < n) {
        size_t start, len;

        while (r < n && p[r] == '/')
            r++;
        start = r;
        while (r < n && p[r] != '/')
            r++;
        len = r - start;
        if (len == 1 && p[start] == '.') {
            len = 0;
        } else if (len == 2 && p[start] == '.' && p[start + 1] == '.') {
            while (w > 0 && p[w - 1] != '/')
                w--;
            if (w > 0)
                w--; /* the '/' before the segment taken away */
            len = 0;
        }
        if (len > 0) {
            p[w++] = '/';
            memmove(p + w, p + start, len);
            w += len;
        } else if (r == n || start == n) {
            p[w++] = '/'; /* the path ended in "/", "/." or "/..": it names a directory */
        }
    }
    return w;
}
