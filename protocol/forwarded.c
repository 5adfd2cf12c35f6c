/* See forwarded.h. */
#include "forwarded.h"
#include "response.h"

#include <arpa/inet.h>
#include <string.h>

#define ADDR_MAX 64 /* longer than any address literal */

/* What the walk of one line found: the hop that decides, nothing believable, or only trusted
 * hops (the walk goes on with the line before, or the left-most is the client). */
enum { WALK_NONE, WALK_CLIENT, WALK_ON };

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static wd_slice_t trim(const char *p, size_t n)
{
    while (n > 0 && is_space(*p)) {
        p++;
        n--;
    }
    while (n > 0 && is_space(p[n - 1]))
        n--;
    return (wd_slice_t){p, n};
}

int wd_fwd_is_ip(const char *p, size_t n)
{
    char buf[ADDR_MAX];
    unsigned char out[16];

    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return inet_pton(memchr(p, ':', n) ? AF_INET6 : AF_INET, buf, out) == 1;
}

static int all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return n > 0 && n <= 5;
}

/* A hop as proxies write it: "1.2.3.4", "1.2.3.4:80", "2001:db8::1", "[2001:db8::1]",
 * "[2001:db8::1]:80". 1 with the bare address in *addr, or 0. */
static int hop_addr(wd_slice_t h, wd_slice_t *addr)
{
    const char *colon;

    if (h.n == 0)
        return 0; /* absent (an element without for=), or empty */
    if (h.p[0] == '[') {
        const char *close = memchr(h.p, ']', h.n);
        size_t rest;

        if (close == NULL)
            return 0;
        *addr = (wd_slice_t){h.p + 1, (size_t)(close - h.p - 1)};
        rest = h.n - (size_t)(close + 1 - h.p);
        if (rest > 0 && (close[1] != ':' || !all_digits(close + 2, rest - 1)))
            return 0;
        return memchr(addr->p, ':', addr->n) != NULL && wd_fwd_is_ip(addr->p, addr->n);
    }
    colon = memchr(h.p, ':', h.n);
    if (colon != NULL && memchr(colon + 1, ':', h.n - (size_t)(colon + 1 - h.p)) == NULL) {
        /* One colon: IPv4 and a port. */
        if (!all_digits(colon + 1, h.n - (size_t)(colon + 1 - h.p)))
            return 0;
        *addr = (wd_slice_t){h.p, (size_t)(colon - h.p)};
        return memchr(addr->p, ':', addr->n) == NULL && wd_fwd_is_ip(addr->p, addr->n);
    }
    *addr = h;
    return wd_fwd_is_ip(h.p, h.n);
}

/* X-Forwarded-For's line v[0, n), from the right: the hop in *addr. */
static int xff_line(const char *v, size_t n, wd_fwd_trust_fn trust, void *ctx, wd_slice_t *addr)
{
    size_t end = n;

    for (;;) {
        size_t start = end;

        while (start > 0 && v[start - 1] != ',')
            start--;
        if (!hop_addr(trim(v + start, end - start), addr))
            return WALK_NONE;
        if (!trust(addr->p, addr->n, ctx))
            return WALK_CLIENT;
        if (start == 0)
            return WALK_ON;
        end = start - 1;
    }
}

int wd_fwd_xff(const wd_slice_t *lines, size_t n_lines, wd_fwd_trust_fn trust, void *ctx,
               wd_slice_t *client)
{
    for (size_t i = n_lines; i-- > 0;) {
        int r = xff_line(lines[i].p, lines[i].n, trust, ctx, client);

        if (r == WALK_NONE)
            return 0;
        if (r == WALK_CLIENT || i == 0)
            return 1;
    }
    return 0;
}

/* Forwarded is read from the right too, so that nothing left of the element that decides is
 * ever parsed: a left-to-right scan must get through a client's part to find where the proxy's
 * element begins, and an unterminated quote or a stray backslash there would decide where it
 * does. Read backwards, RFC 7230's quoted-string is still unambiguous: a '"' is escaped when an
 * odd number of backslashes precede it (a run of them starts on a quoted-pair's boundary, as
 * only a quoted-pair's first character is a backslash), and the opening quote of a
 * quoted-string ending at a '"' is the first unescaped '"' to its left. */

static int is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Whether v[i] is preceded by an odd number of backslashes. */
static int escaped(const char *v, size_t i)
{
    size_t k = 0;

    while (k < i && v[i - k - 1] == '\\')
        k++;
    return k % 2 == 1;
}

/* A character of an unquoted value: a token's, and the ':' and brackets of an address a proxy
 * did not quote (HAProxy's "for=%[src]" with an IPv6 client), as the parser always took them. */
static int is_vchar(char c)
{
    return is_tchar(c) || c == ':' || c == '[' || c == ']';
}

static size_t skip_ows_left(const char *v, size_t i)
{
    while (i > 0 && is_space(v[i - 1]))
        i--;
    return i;
}

/* The pair name=value ending at v[*end - 1] (spaces skipped), read backwards; *end becomes its
 * start. An empty pair (RFC 7239: [ forwarded-pair ]) leaves *end. 1, or 0 when malformed. */
static int pair_r(const char *v, size_t *end, wd_slice_t *name, wd_slice_t *val)
{
    size_t e = skip_ows_left(v, *end), i;

    *name = *val = (wd_slice_t){NULL, 0};
    if (e == 0 || v[e - 1] == ';' || v[e - 1] == ',')
        return 1;
    if (v[e - 1] == '"') {
        if (escaped(v, e - 1))
            return 0; /* a quoted-pair, not the string's end */
        i = e - 1;
        do {
            if (i == 0)
                return 0;
            i--;
        } while (v[i] != '"' || escaped(v, i));
        *val = (wd_slice_t){v + i + 1, e - i - 2};
    } else {
        i = e;
        while (i > 0 && is_vchar(v[i - 1]))
            i--;
        *val = (wd_slice_t){v + i, e - i};
    }
    if (i == 0 || v[i - 1] != '=')
        return 0;
    e = --i;
    while (i > 0 && is_tchar(v[i - 1]))
        i--;
    if (i == e)
        return 0;
    *name = (wd_slice_t){v + i, e - i};
    *end = i;
    return 1;
}

/* A value into its slot: 0 when the name came already. RFC 7239 allows each once per element,
 * and a proxy that writes a client's value unquoted into its element (host=$host) must not give
 * the client a second for= that wins. */
static int keep(wd_slice_t *slot, wd_slice_t val)
{
    if (slot->p != NULL)
        return 0;
    *slot = val;
    return 1;
}

/* The element ending at v[*end - 1] ("for=...;proto=...;host=..."), read backwards into *out
 * (for= as the raw value: checked by the caller); *end becomes its start: 0, or just after the
 * ',' before it. 1, or 0 when malformed. */
static int element_r(const char *v, size_t *end, wd_fwd_t *out, wd_slice_t *for_raw)
{
    size_t i = *end;

    memset(out, 0, sizeof *out);
    *for_raw = (wd_slice_t){NULL, 0};
    for (;;) {
        wd_slice_t name, val, *slot;

        if (!pair_r(v, &i, &name, &val))
            return 0;
        slot = wd_slice_ieq(name.p, name.n, "for")     ? for_raw
               : wd_slice_ieq(name.p, name.n, "proto") ? &out->proto
               : wd_slice_ieq(name.p, name.n, "host")  ? &out->host
                                                       : NULL;
        if (slot != NULL && !keep(slot, val))
            return 0;
        i = skip_ows_left(v, i);
        if (i == 0 || v[i - 1] == ',') {
            *end = i;
            return 1;
        }
        if (v[i - 1] != ';')
            return 0;
        i--;
    }
}

/* Forwarded's line v[0, n), from the right: the element in *out. */
static int forwarded_line(const char *v, size_t n, wd_fwd_trust_fn trust, void *ctx, wd_fwd_t *out)
{
    size_t end = n;

    for (;;) {
        wd_slice_t raw, addr;

        if (!element_r(v, &end, out, &raw) || !hop_addr(raw, &addr))
            return WALK_NONE;
        out->addr = addr;
        if (!trust(addr.p, addr.n, ctx))
            return WALK_CLIENT;
        if (end == 0)
            return WALK_ON;
        end--; /* the ',' */
    }
}

int wd_fwd_forwarded(const wd_slice_t *lines, size_t n_lines, wd_fwd_trust_fn trust, void *ctx,
                     wd_fwd_t *out)
{
    for (size_t i = n_lines; i-- > 0;) {
        int r = forwarded_line(lines[i].p, lines[i].n, trust, ctx, out);

        if (r == WALK_NONE)
            return 0;
        if (r == WALK_CLIENT || i == 0)
            return 1;
    }
    return 0;
}
