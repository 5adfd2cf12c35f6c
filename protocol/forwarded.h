/* What a trusted proxy says about the client: X-Forwarded-For / -Proto / -Host and RFC 7239's
 * Forwarded. Pure: slices into the caller's header lines, no allocation.
 *
 * Each proxy appends the address it received the request from, so the list reads client, proxy1,
 * proxy2... and only its right end can be believed: it is walked from the right, every hop the
 * caller trusts (its trusted-proxies) is a proxy, and the first one it does not trust is the
 * client. When every hop is trusted, the left-most is. A hop that is not an IP address (an
 * obfuscated Forwarded identifier, "unknown", garbage) ends the walk there: nothing to its left
 * can be believed, and the answer is "none" (the caller keeps the peer's address).
 *
 * A proxy appends either to the last line of the header or a line of its own (HAProxy's option
 * forwardfor, add-header): the walkers take the header's lines as they came and walk them from
 * the last, each on its own (a quoted string never runs from one line into the next). Nothing
 * left of the hop that decides is read: whatever a client wrote there (any length, any number of
 * elements or lines, quoting right or wrong) cannot change the answer. */
#ifndef WD_PROTOCOL_FORWARDED_H
#define WD_PROTOCOL_FORWARDED_H

#include "slice.h"

#include <stddef.h>

/* Whether the proxy at addr (an IPv4 or IPv6 literal without brackets or port, n bytes, not
 * NUL-terminated) is trusted. */
typedef int (*wd_fwd_trust_fn)(const char *addr, size_t n, void *ctx);

/* The client of X-Forwarded-For's lines[0, n_lines) (each comma-separated, optional spaces, each
 * hop an IP address, IPv6 possibly in brackets, a port after an IPv4 or a bracketed IPv6
 * ignored). Returns 1 with *client set, or 0 when they do not say (no line, or an empty or
 * invalid hop on the walk). */
int wd_fwd_xff(const wd_slice_t *lines, size_t n_lines, wd_fwd_trust_fn trust, void *ctx,
               wd_slice_t *client);

/* One element of Forwarded, as chosen: its for= address (brackets and port removed), proto= and
 * host= (quotes removed; empty when absent). */
typedef struct wd_fwd {
    wd_slice_t addr;
    wd_slice_t proto;
    wd_slice_t host;
} wd_fwd_t;

/* The element of Forwarded's lines[0, n_lines) (elements separated by ',', pairs by ';',
 * token=token or token="quoted-string" as RFC 7230 has it, quoted-pairs included, names
 * case-insensitive) that describes the client: walked from the right by its for= as X-Forwarded-For
 * is. Returns 1 with *out set, or 0 (an element on the walk malformed, with for=, proto= or host=
 * twice, or without a believable for=). Each element is read from its right end too: a proxy
 * that writes a client's value into its element unquoted (host=$host) should write for= last. A
 * value's quoted-pairs are left in its slice as they came (an address with one is no address: no
 * proxy escapes what it sends in for=, proto= or host=). */
int wd_fwd_forwarded(const wd_slice_t *lines, size_t n_lines, wd_fwd_trust_fn trust, void *ctx,
                     wd_fwd_t *out);

/* Whether p is an IPv4 or IPv6 address literal (no brackets, no port). */
int wd_fwd_is_ip(const char *p, size_t n);

#endif
