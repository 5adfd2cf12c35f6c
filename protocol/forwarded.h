/* What a trusted proxy says about the client: X-Forwarded-For / -Proto / -Host and RFC 7239's
 * Forwarded. Pure: slices into the caller's header value, no allocation.
 *
 * Each proxy appends the address it received the request from, so the list reads client, proxy1,
 * proxy2... and only its right end can be believed: it is walked from the right, every hop the
 * caller trusts (its trusted-proxies) is a proxy, and the first one it does not trust is the
 * client. When every hop is trusted, the left-most is. A hop that is not an IP address (an
 * obfuscated Forwarded identifier, "unknown", garbage) ends the walk there: nothing to its left
 * can be believed, and the answer is "none" (the caller keeps the peer's address). */
#ifndef WD_PROTOCOL_FORWARDED_H
#define WD_PROTOCOL_FORWARDED_H

#include "slice.h"

#include <stddef.h>

/* Whether the proxy at addr (an IPv4 or IPv6 literal without brackets or port, n bytes, not
 * NUL-terminated) is trusted. */
typedef int (*wd_fwd_trust_fn)(const char *addr, size_t n, void *ctx);

/* The client of an X-Forwarded-For value (comma-separated, optional spaces, each hop an IP
 * address, IPv6 possibly in brackets, a port after an IPv4 or a bracketed IPv6 ignored). Returns
 * 1 with *client set, or 0 when the value does not say (empty, or an invalid hop on the walk). */
int wd_fwd_xff(const char *v, size_t n, wd_fwd_trust_fn trust, void *ctx, wd_slice_t *client);

/* One element of Forwarded, as chosen: its for= address (brackets and port removed), proto= and
 * host= (quotes removed; empty when absent). */
typedef struct wd_fwd {
    wd_slice_t addr;
    wd_slice_t proto;
    wd_slice_t host;
} wd_fwd_t;

/* The element of a Forwarded value (elements separated by ',', pairs by ';', token=token or
 * token="quoted", names case-insensitive) that describes the client: walked from the right by its
 * for= as X-Forwarded-For is. Returns 1 with *out set, or 0 (malformed, or no believable for=). A
 * quoted string with a backslash escape is refused (no proxy sends one for these parameters). */
int wd_fwd_forwarded(const char *v, size_t n, wd_fwd_trust_fn trust, void *ctx, wd_fwd_t *out);

/* Whether p is an IPv4 or IPv6 address literal (no brackets, no port). */
int wd_fwd_is_ip(const char *p, size_t n);

#endif
