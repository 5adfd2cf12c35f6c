/* Address ranges for trusted-proxies: "10.0.0.0/8", "192.0.2.5" (/32), "::1" (/128),
 * "fd00::/8", and the word "unix" for peers on a UNIX socket.
 *
 * An IPv4 range also holds the IPv4-mapped IPv6 addresses of its addresses (::ffff:a.b.c.d, the
 * form an IPv4 client has on a dual-stack "[::]" listener), and a range written in that mapped
 * form ("::ffff:10.0.0.0/104") is the IPv4 range it maps. */
#ifndef WD_PROTOCOL_CIDR_H
#define WD_PROTOCOL_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct wd_cidr {
    int family;             /* AF_INET, AF_INET6, or AF_UNIX for "unix" */
    unsigned prefix;        /* leading bits that must match: 0..32 or 0..128; 0 for AF_UNIX */
    unsigned char addr[16]; /* network order (4 bytes used for AF_INET), host bits cleared */
} wd_cidr_t;

/* Parses s (NUL-terminated). Returns 0, or -EINVAL for anything else than an IPv4 or IPv6
 * address with an optional "/bits" (decimal, at most 32 or 128) or the word "unix". Host bits
 * set below the prefix ("10.1.2.3/8") are cleared, as nginx's set_real_ip_from does. */
int wd_cidr_parse(const char *s, wd_cidr_t *out);

/* 1 when sa (AF_INET, AF_INET6 or AF_UNIX) is in the range, 0 otherwise (or sa NULL). */
int wd_cidr_match(const wd_cidr_t *c, const struct sockaddr *sa);

/* 1 when sa is in one of the n ranges. */
int wd_cidr_match_any(const wd_cidr_t *list, size_t n, const struct sockaddr *sa);

#endif
