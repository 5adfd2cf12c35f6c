/* libFuzzer target: X-Forwarded-For and Forwarded (protocol/forwarded.c).
 *
 * The first byte chooses which addresses are trusted (a bit per candidate below); the rest is the
 * header, a line per '\n'. Whatever is returned must lie inside the value, be an IP address, and
 * (for X-Forwarded-For) be either the left-most hop or one that is not trusted. And whatever the
 * input, it is only a client's part: a proxy's hop (untrusted 203.0.113.9) appended to its last
 * line or on a line of its own is what both walkers answer, with the proxy's proto=. */
#include "forwarded.h"
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#define LINES_MAX 100 /* WD_HTTP_MAX_HEADERS */

static const char *const candidates[] = {"10.0.0.2",   "127.0.0.1",   "::1",     "2001:db8::1",
                                         "192.0.2.60", "203.0.113.7", "1.1.1.1", "0.0.0.0"};

static int trusted(const char *addr, size_t n, void *ctx)
{
    unsigned mask = *(const unsigned char *)ctx;

    for (unsigned i = 0; i < 8; i++)
        if ((mask >> i & 1) && strlen(candidates[i]) == n && memcmp(candidates[i], addr, n) == 0)
            return 1;
    return 0;
}

static size_t split(const char *v, size_t n, wd_slice_t *lines)
{
    size_t count = 0, s = 0;

    for (size_t i = 0; i <= n; i++)
        if (i == n || (v[i] == '\n' && count < LINES_MAX - 1)) {
            lines[count++] = (wd_slice_t){v + s, i - s};
            s = i + 1;
        }
    return count;
}

/* v then a proxy's tail: the proxy's word, whatever v is. */
static void appended(const char *v, size_t n, unsigned char *mask)
{
    static const char *const tails[] = {", 203.0.113.9", "\n203.0.113.9",
                                        ", for=203.0.113.9;proto=https",
                                        "\nfor=203.0.113.9;proto=https"};
    wd_slice_t lines[LINES_MAX], client;
    wd_fwd_t f;

    for (size_t t = 0; t < 4; t++) {
        size_t k = strlen(tails[t]), count;
        char *buf = malloc(n + k);

        memcpy(buf, v, n);
        memcpy(buf + n, tails[t], k);
        count = split(buf, n + k, lines);
        if (count == LINES_MAX && tails[t][0] == '\n') {
            free(buf); /* (the tail would be part of the 100th line) */
            continue;
        }
        if (t < 2)
            WD_FUZZ_CHECK(wd_fwd_xff(lines, count, trusted, mask, &client) == 1 && client.n == 11 &&
                          memcmp(client.p, "203.0.113.9", 11) == 0);
        else
            WD_FUZZ_CHECK(wd_fwd_forwarded(lines, count, trusted, mask, &f) == 1 &&
                          f.addr.n == 11 && memcmp(f.addr.p, "203.0.113.9", 11) == 0 &&
                          f.proto.n == 5 && memcmp(f.proto.p, "https", 5) == 0);
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char mask;
    const char *v;
    size_t n, count;
    wd_slice_t lines[LINES_MAX], client;
    wd_fwd_t f;

    if (size < 1)
        return 0;
    mask = data[0];
    v = (const char *)data + 1;
    n = size - 1;
    count = split(v, n, lines);
    if (wd_fwd_xff(lines, count, trusted, &mask, &client)) {
        WD_FUZZ_INSIDE(client.p, client.n, v, v + n);
        WD_FUZZ_CHECK(wd_fwd_is_ip(client.p, client.n));
        WD_FUZZ_CHECK(
            !trusted(client.p, client.n, &mask) ||
            (client.p < lines[0].p + lines[0].n && memchr(v, ',', (size_t)(client.p - v)) == NULL));
    }
    if (wd_fwd_forwarded(lines, count, trusted, &mask, &f)) {
        WD_FUZZ_INSIDE(f.addr.p, f.addr.n, v, v + n);
        WD_FUZZ_CHECK(wd_fwd_is_ip(f.addr.p, f.addr.n));
        if (f.proto.n > 0)
            WD_FUZZ_INSIDE(f.proto.p, f.proto.n, v, v + n);
        if (f.host.n > 0)
            WD_FUZZ_INSIDE(f.host.p, f.host.n, v, v + n);
    }
    appended(v, n, &mask);
    return 0;
}
