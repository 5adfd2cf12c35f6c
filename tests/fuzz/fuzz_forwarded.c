/* libFuzzer target: X-Forwarded-For and Forwarded (protocol/forwarded.c).
 *
 * The first byte chooses which addresses are trusted (a bit per candidate below); the rest is the
 * header value. Whatever is returned must lie inside the value, be an IP address, and (for
 * X-Forwarded-For) be either the left-most hop or one that is not trusted. */
#include "forwarded.h"
#include "fuzz.h"

#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char mask;
    const char *v;
    size_t n;
    wd_slice_t client;
    wd_fwd_t f;

    if (size < 1)
        return 0;
    mask = data[0];
    v = (const char *)data + 1;
    n = size - 1;
    if (wd_fwd_xff(v, n, trusted, &mask, &client)) {
        WD_FUZZ_INSIDE(client.p, client.n, v, v + n);
        WD_FUZZ_CHECK(wd_fwd_is_ip(client.p, client.n));
        WD_FUZZ_CHECK(client.p == v || !trusted(client.p, client.n, &mask) ||
                      memchr(v, ',', (size_t)(client.p - v)) == NULL);
    }
    if (wd_fwd_forwarded(v, n, trusted, &mask, &f)) {
        WD_FUZZ_INSIDE(f.addr.p, f.addr.n, v, v + n);
        WD_FUZZ_CHECK(wd_fwd_is_ip(f.addr.p, f.addr.n));
        if (f.proto.n > 0)
            WD_FUZZ_INSIDE(f.proto.p, f.proto.n, v, v + n);
        if (f.host.n > 0)
            WD_FUZZ_INSIDE(f.host.p, f.host.n, v, v + n);
    }
    return 0;
}
