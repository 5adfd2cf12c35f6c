/* See forwarded.h. */
#include "forwarded.h"
#include "response.h"

#include <arpa/inet.h>
#include <string.h>

#define ADDR_MAX 64     /* longer than any address literal */
#define ELEMENTS_MAX 64 /* Forwarded elements looked at; a longer chain is not believed */

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

int wd_fwd_xff(const char *v, size_t n, wd_fwd_trust_fn trust, void *ctx, wd_slice_t *client)
{
    size_t end = n;

    for (;;) {
        size_t start = end;
        wd_slice_t addr;

        while (start > 0 && v[start - 1] != ',')
            start--;
        if (!hop_addr(trim(v + start, end - start), &addr))
            return 0;
        if (start == 0 || !trust(addr.p, addr.n, ctx)) {
            *client = addr;
            return 1;
        }
        end = start - 1;
    }
}

/* Scans a quoted string at p[0] == '"': its length with the quotes, or 0 if unterminated or
 * escaped (refused: see forwarded.h). */
static size_t quoted_len(const char *p, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (p[i] == '\\')
            return 0;
        if (p[i] == '"')
            return i + 1;
    }
    return 0;
}

/* One element "for=...;proto=...;host=..." into *out (for= as the raw value: checked by the
 * caller). 1, or 0 when malformed. */
static int element(const char *p, size_t n, wd_fwd_t *out, wd_slice_t *for_raw)
{
    size_t i = 0;

    memset(out, 0, sizeof *out);
    *for_raw = (wd_slice_t){NULL, 0};
    while (i < n) {
        size_t name_start, name_end, vs, vn;

        while (i < n && is_space(p[i]))
            i++;
        name_start = i;
        while (i < n && p[i] != '=' && p[i] != ';')
            i++;
        if (i >= n || p[i] != '=')
            return 0;
        name_end = i++;
        if (i < n && p[i] == '"') {
            size_t q = quoted_len(p + i, n - i);

            if (q == 0)
                return 0;
            vs = i + 1;
            vn = q - 2;
            i += q;
        } else {
            vs = i;
            while (i < n && p[i] != ';' && !is_space(p[i]))
                i++;
            vn = i - vs;
        }
        while (i < n && is_space(p[i]))
            i++;
        if (i < n && p[i] != ';')
            return 0;
        i++;
        wd_slice_t name = trim(p + name_start, name_end - name_start), val = {p + vs, vn};

        if (wd_slice_ieq(name.p, name.n, "for"))
            *for_raw = val;
        else if (wd_slice_ieq(name.p, name.n, "proto"))
            out->proto = val;
        else if (wd_slice_ieq(name.p, name.n, "host"))
            out->host = val;
    }
    return 1;
}

int wd_fwd_forwarded(const char *v, size_t n, wd_fwd_trust_fn trust, void *ctx, wd_fwd_t *out)
{
    size_t starts[ELEMENTS_MAX], ends[ELEMENTS_MAX], count = 0, i = 0, s = 0;

    /* Element boundaries: commas outside quoted strings. */
    while (i <= n) {
        if (i == n || v[i] == ',') {
            if (count == ELEMENTS_MAX)
                return 0;
            starts[count] = s;
            ends[count++] = i;
            s = ++i;
        } else if (v[i] == '"') {
            size_t q = quoted_len(v + i, n - i);

            if (q == 0)
                return 0;
            i += q;
        } else {
            i++;
        }
    }
    while (count-- > 0) {
        wd_slice_t raw, addr;

        if (!element(v + starts[count], ends[count] - starts[count], out, &raw) ||
            !hop_addr(raw, &addr))
            return 0;
        out->addr = addr;
        if (count == 0 || !trust(addr.p, addr.n, ctx))
            return 1;
    }
    return 0;
}
