/* Address ranges and the trusted-peer check. Pure: inet_pton is the only libc help. */
#include "cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

static const unsigned char v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Clears the bits of addr past the first `prefix`. */
static void mask(unsigned char *addr, size_t n, unsigned prefix)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (prefix >= 8) {
            prefix -= 8;
        } else {
            addr[i] &= (unsigned char)(0xff00u >> prefix);
            prefix = 0;
        }
    }
}

/* 1 when the first `prefix` bits of a and b are equal. */
static int prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
    size_t whole = prefix / 8;
    unsigned rest = prefix % 8;

    if (memcmp(a, b, whole) != 0)
        return 0;
    return rest == 0 || ((a[whole] ^ b[whole]) & (0xff00u >> rest)) == 0;
}

/* "/bits": 1 to 3 decimal digits, at most max. */
static int parse_prefix(const char *s, unsigned max, unsigned *out)
{
    unsigned v = 0;
    size_t n;

    for (n = 0; s[n] != '\0'; n++) {
        if (n == 3 || s[n] < '0' || s[n] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[n] - '0');
    }
    if (n == 0 || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int wd_cidr_parse(const char *s, wd_cidr_t *out)
{
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    char text[INET6_ADDRSTRLEN];
    unsigned max;

    memset(out, 0, sizeof(*out));
    if (strcmp(s, "unix") == 0) {
        out->family = AF_UNIX;
        return 0;
    }
    if (n == 0 || n >= sizeof(text))
        return -EINVAL;
    memcpy(text, s, n);
    text[n] = '\0';
    if (inet_pton(AF_INET, text, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, text, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -EINVAL;
    max = out->family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash && parse_prefix(slash + 1, max, &out->prefix) != 0)
        return -EINVAL;

    /* ::ffff:a.b.c.d/96+n is a.b.c.d/n: then one compare covers both forms of a peer. */
    if (out->family == AF_INET6 && out->prefix >= 96 &&
        memcmp(out->addr, v4_mapped_prefix, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->prefix -= 96;
    }
    mask(out->addr, out->family == AF_INET ? 4 : 16, out->prefix);
    return 0;
}

int wd_cidr_match(const wd_cidr_t *c, const struct sockaddr *sa)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
    const unsigned char *a6;

    if (sa == NULL)
        return 0;
    switch (sa->sa_family) {
    case AF_UNIX:
        return c->family == AF_UNIX;
    case AF_INET:
        return c->family == AF_INET &&
               prefix_equal((const unsigned char *)&sin->sin_addr, c->addr, c->prefix);
    case AF_INET6:
        a6 = sin6->sin6_addr.s6_addr;
        if (c->family == AF_INET6)
            return prefix_equal(a6, c->addr, c->prefix);
        return c->family == AF_INET && memcmp(a6, v4_mapped_prefix, 12) == 0 &&
               prefix_equal(a6 + 12, c->addr, c->prefix);
    }
    return 0;
}

int wd_cidr_match_any(const wd_cidr_t *list, size_t n, const struct sockaddr *sa)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (wd_cidr_match(&list[i], sa))
            return 1;
    return 0;
}
