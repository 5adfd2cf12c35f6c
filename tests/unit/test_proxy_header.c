/* PROXY protocol header parser: every case runs whole (ending right before an unreadable page),
 * with growing prefixes (len = 1, 2, 3...) in place and ending at the unreadable page, and
 * followed by the request that comes after the header on the connection, which must not be
 * consumed. A valid header is AGAIN at every shorter prefix; an invalid one is AGAIN up to its
 * first bad byte and its error from there on. */
#include "proxy_header.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#define S(lit) lit, sizeof(lit) - 1
#define NONE (-1) /* a number not checked */
#define REQUEST "GET / HTTP/1.1\r\nHost: h\r\n\r\n"

typedef struct expect {
    int ret; /* header size, or WD_PARSE_ERROR; ignored when decide_at is 0 */
    wd_proxy_error_t err;
    size_t decide_at; /* shortest prefix that gives ret; 0 = never (always AGAIN) */
    int version, command, family, socktype;
    const char *src, *dst; /* address texts; NULL: not checked */
    int sport, dport;      /* NONE: not checked */
    int ntlvs;             /* NONE: not checked */
} expect_t;

static t_guard_t guard;

/* The success fields of h, as the case wants them. */
static void check_header(const char *name, const char *how, const char *buf, int r,
                         const wd_proxy_header_t *h, const expect_t *ex)
{
    wd_proxy_tlv_iter_t it;
    wd_proxy_tlv_t tlv;
    int n = 0;

    T_CHECK(h->version == ex->version && (int)h->command == ex->command &&
                h->family == ex->family && h->socktype == ex->socktype,
            "%s (%s): version %d command %d family %d socktype %d, want %d %d %d %d", name, how,
            h->version, h->command, h->family, h->socktype, ex->version, ex->command, ex->family,
            ex->socktype);
    if (ex->src)
        T_CHECK(strcmp(h->src.text, ex->src) == 0, "%s (%s): src '%s', want '%s'", name, how,
                h->src.text, ex->src);
    if (ex->dst)
        T_CHECK(strcmp(h->dst.text, ex->dst) == 0, "%s (%s): dst '%s', want '%s'", name, how,
                h->dst.text, ex->dst);
    if (ex->sport != NONE)
        T_CHECK(h->src.port == ex->sport && h->dst.port == ex->dport,
                "%s (%s): ports %u %u, want %d %d", name, how, h->src.port, h->dst.port, ex->sport,
                ex->dport);

    /* The sockaddrs say the same as the texts; nothing is filled but for PROXY. */
    if (h->command == WD_PROXY_CMD_PROXY) {
        T_CHECK(h->src.sa.ss_family == h->family && h->dst.sa.ss_family == h->family,
                "%s (%s): sockaddr families %d %d", name, how, h->src.sa.ss_family,
                h->dst.sa.ss_family);
        if (h->family == AF_INET)
            T_CHECK(ntohs(((const struct sockaddr_in *)&h->src.sa)->sin_port) == h->src.port &&
                        ntohs(((const struct sockaddr_in *)&h->dst.sa)->sin_port) == h->dst.port,
                    "%s (%s): sin_port", name, how);
        if (h->family == AF_INET6)
            T_CHECK(ntohs(((const struct sockaddr_in6 *)&h->src.sa)->sin6_port) == h->src.port &&
                        ntohs(((const struct sockaddr_in6 *)&h->dst.sa)->sin6_port) == h->dst.port,
                    "%s (%s): sin6_port", name, how);
    } else {
        T_CHECK(h->src.sa.ss_family == AF_UNSPEC && h->src.text[0] == '\0' && h->src.port == 0 &&
                    h->dst.sa.ss_family == AF_UNSPEC && h->dst.text[0] == '\0',
                "%s (%s): addresses filled for command %d", name, how, h->command);
    }

    if (h->tlvs.n > 0)
        T_CHECK(h->tlvs.p >= buf && h->tlvs.p + h->tlvs.n == buf + r,
                "%s (%s): TLV block not at the end of the header", name, how);
    wd_proxy_header_tlv_init(&it, h->tlvs);
    while (wd_proxy_header_tlv_next(&it, &tlv))
        n++;
    T_CHECK(h->tlvs.n == 0 || it.p == h->tlvs.p + h->tlvs.n, "%s (%s): TLV walk stops short", name,
            how);
    if (ex->ntlvs != NONE)
        T_CHECK(n == ex->ntlvs, "%s (%s): %d TLVs, want %d", name, how, n, ex->ntlvs);
}

static void check_one(const char *name, const char *how, size_t l, const char *buf,
                      const expect_t *ex)
{
    wd_proxy_header_t h;
    int r = wd_proxy_header_parse(buf, l, &h);
    int want = (ex->decide_at != 0 && l >= ex->decide_at) ? ex->ret : WD_PARSE_AGAIN;

    T_CHECK(r == want, "%s (%s, len %zu): returned %d (%s), want %d", name, how, l, r,
            wd_proxy_header_strerror(h.error), want);
    if (r != want)
        return;
    if (r == WD_PARSE_ERROR)
        T_CHECK(h.error == ex->err, "%s (%s, len %zu): error %d (%s), want %d (%s)", name, how, l,
                h.error, wd_proxy_header_strerror(h.error), ex->err,
                wd_proxy_header_strerror(ex->err));
    else
        T_CHECK(h.error == WD_PROXY_OK, "%s (%s, len %zu): error %d set", name, how, l, h.error);
    if (r > 0)
        check_header(name, how, buf, r, &h, ex);
}

typedef struct run_ctx {
    const char *name;
    expect_t ex;
} run_ctx_t;

static void check_fed(const char *how, size_t len, const char *data, const void *ctx)
{
    const run_ctx_t *r = ctx;

    check_one(r->name, how, len, data, &r->ex);
}

static void run(const char *name, const char *data, size_t len, expect_t ex)
{
    static char with_request[WD_PROXY_V2_MAX + 256];
    run_ctx_t r = {name, ex};

    /* (a)-(c): whole, and every prefix (testutil.h, t_feed). */
    t_feed(&guard, data, len, 1, check_fed, &r);

    /* (d) the request after it on the connection: the same header size, or the same error. */
    if (ex.decide_at != 0 && len + sizeof(REQUEST) <= sizeof(with_request)) {
        memcpy(with_request, data, len);
        memcpy(with_request + len, REQUEST, sizeof(REQUEST) - 1);
        check_one(name, "with request", len + sizeof(REQUEST) - 1,
                  t_guard_place(&guard, with_request, len + sizeof(REQUEST) - 1), &ex);
    }
}

/* ---- version 1 ------------------------------------------------------------------------------ */

#define FFFF6 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

typedef struct v1_case {
    const char *name;
    const char *in;
    size_t len;
    expect_t ex;
} v1_case_t;

#define V1_OK(in, cmd, fam, src, dst, sp, dp)                                                      \
    S(in),                                                                                         \
    {                                                                                              \
        (int)sizeof(in) - 1, WD_PROXY_OK, sizeof(in) - 1, 1, cmd, fam,                             \
            (cmd) == WD_PROXY_CMD_PROXY ? SOCK_STREAM : 0, src, dst, sp, dp, 0                     \
    }

static const v1_case_t v1_valid[] = {
    {"TCP4 (the spec's example)",
     V1_OK("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", WD_PROXY_CMD_PROXY, AF_INET,
           "192.168.0.1", "192.168.0.11", 56324, 443)},
    {"TCP4 largest values",
     V1_OK("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", WD_PROXY_CMD_PROXY,
           AF_INET, "255.255.255.255", "255.255.255.255", 65535, 65535)},
    {"TCP4 zeros", V1_OK("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", WD_PROXY_CMD_PROXY, AF_INET,
                         "0.0.0.0", "0.0.0.0", 0, 0)},
    {"TCP4 one-digit ports", V1_OK("PROXY TCP4 1.2.3.4 5.6.7.8 1 9\r\n", WD_PROXY_CMD_PROXY,
                                   AF_INET, "1.2.3.4", "5.6.7.8", 1, 9)},
    {"TCP6", V1_OK("PROXY TCP6 2001:db8::1 2001:DB8:0:0::2 51234 8080\r\n", WD_PROXY_CMD_PROXY,
                   AF_INET6, "2001:db8::1", "2001:db8::2", 51234, 8080)},
    {"TCP6 loopback and mapped",
     V1_OK("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n", WD_PROXY_CMD_PROXY, AF_INET6,
           "::ffff:192.0.2.1", "::1", 1, 2)},
    {"TCP6 longest (104 bytes)", V1_OK("PROXY TCP6 " FFFF6 " " FFFF6 " 65535 65535\r\n",
                                       WD_PROXY_CMD_PROXY, AF_INET6, FFFF6, FFFF6, 65535, 65535)},
    {"TCP6 45-character address",
     V1_OK("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 :: 80 0\r\n",
           WD_PROXY_CMD_PROXY, AF_INET6, FFFF6, "::", 80, 0)},
    {"UNKNOWN", V1_OK("PROXY UNKNOWN\r\n", WD_PROXY_CMD_UNKNOWN, AF_UNSPEC, "", "", 0, 0)},
    {"UNKNOWN with addresses (107 bytes, the spec's worst case)",
     V1_OK("PROXY UNKNOWN " FFFF6 " " FFFF6 " 65535 65535\r\n", WD_PROXY_CMD_UNKNOWN, AF_UNSPEC, "",
           "", 0, 0)},
    {"UNKNOWN with anything", V1_OK("PROXY UNKNOWN  \t\x01\xff garbage \0 here\r\n",
                                    WD_PROXY_CMD_UNKNOWN, AF_UNSPEC, "", "", 0, 0)},
};

#define V1_ERR(in, upto, e)                                                                        \
    S(in),                                                                                         \
    {                                                                                              \
        WD_PARSE_ERROR, e, sizeof(upto) - 1, 0, 0, 0, 0, NULL, NULL, NONE, NONE, NONE              \
    }
#define V1_AGAIN(in)                                                                               \
    S(in),                                                                                         \
    {                                                                                              \
        0, WD_PROXY_OK, 0, 0, 0, 0, 0, NULL, NULL, NONE, NONE, NONE                                \
    }

#define P4 "PROXY TCP4 "
#define P4A P4 "1.2.3.4 5.6.7.8 "

static const v1_case_t v1_invalid[] = {
    /* Not a PROXY header at all: refused at the first byte that differs. */
    {"HTTP request", V1_ERR("GET / HTTP/1.1\r\n", "G", WD_PROXY_ESIGNATURE)},
    {"uwsgi packet", V1_ERR("\0\x10\0\0", "\0", WD_PROXY_ESIGNATURE)},
    {"TLS hello", V1_ERR("\x16\x03\x01\x02", "\x16", WD_PROXY_ESIGNATURE)},
    {"PROXZ", V1_ERR("PROXZ TCP4", "PROXZ", WD_PROXY_ESIGNATURE)},
    {"PROXY without space", V1_ERR("PROXY\r\n", "PROXY\r", WD_PROXY_ESIGNATURE)},
    {"lower-case proxy", V1_ERR("proxy TCP4", "p", WD_PROXY_ESIGNATURE)},

    {"TCP5", V1_ERR("PROXY TCP5 1.2.3.4", "PROXY TCP5", WD_PROXY_EV1_PROTOCOL)},
    {"tcp4", V1_ERR("PROXY tcp4 1.2.3.4", "PROXY t", WD_PROXY_EV1_PROTOCOL)},
    {"UDP4", V1_ERR("PROXY UDP4 1.2.3.4", "PROXY UD", WD_PROXY_EV1_PROTOCOL)},
    {"two spaces before the protocol", V1_ERR("PROXY  TCP4", "PROXY  ", WD_PROXY_EV1_PROTOCOL)},
    {"TCP4 then CRLF", V1_ERR("PROXY TCP4\r\n", "PROXY TCP4\r", WD_PROXY_EV1_PROTOCOL)},
    {"TCP4 then tab", V1_ERR("PROXY TCP4\t1.2.3.4", "PROXY TCP4\t", WD_PROXY_EV1_PROTOCOL)},
    {"no protocol", V1_ERR("PROXY \r\n", "PROXY \r", WD_PROXY_EV1_PROTOCOL)},
    {"UNKNOWNX", V1_ERR("PROXY UNKNOWNX\r\n", "PROXY UNKNOWNX", WD_PROXY_EV1_PROTOCOL)},

    {"two spaces before an address",
     V1_ERR(P4 " 1.2.3.4 5.6.7.8 1 2\r\n", P4 " ", WD_PROXY_EV1_ADDRESS)},
    {"two spaces between addresses",
     V1_ERR(P4 "1.2.3.4  5.6.7.8 1 2\r\n", P4 "1.2.3.4  ", WD_PROXY_EV1_ADDRESS)},
    {"three-part IPv4", V1_ERR(P4 "1.2.3 5.6.7.8 1 2\r\n", P4 "1.2.3 ", WD_PROXY_EV1_ADDRESS)},
    {"five-part IPv4",
     V1_ERR(P4 "1.2.3.4.5 5.6.7.8 1 2\r\n", P4 "1.2.3.4.5 ", WD_PROXY_EV1_ADDRESS)},
    {"IPv4 octet 256",
     V1_ERR(P4 "1.2.3.4 5.6.7.256 1 2\r\n", P4 "1.2.3.4 5.6.7.256 ", WD_PROXY_EV1_ADDRESS)},
    {"IPv4 leading zero",
     V1_ERR(P4 "01.2.3.4 5.6.7.8 1 2\r\n", P4 "01.2.3.4 ", WD_PROXY_EV1_ADDRESS)},
    {"IPv4 letter", V1_ERR(P4 "1.2.3.4x 5.6.7.8 1 2\r\n", P4 "1.2.3.4x", WD_PROXY_EV1_ADDRESS)},
    {"IPv4 16 characters",
     V1_ERR(P4 "111.222.111.2221 5.6.7.8 1 2\r\n", P4 "111.222.111.2221", WD_PROXY_EV1_ADDRESS)},
    {"IPv6 in TCP4", V1_ERR(P4 "::1 ::1 1 2\r\n", P4 ":", WD_PROXY_EV1_ADDRESS)},
    {"IPv4 in TCP6",
     V1_ERR("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "PROXY TCP6 1.2.3.4 ", WD_PROXY_EV1_ADDRESS)},
    {"IPv6 bad digit",
     V1_ERR("PROXY TCP6 ::g ::1 1 2\r\n", "PROXY TCP6 ::g", WD_PROXY_EV1_ADDRESS)},
    {"IPv6 zone",
     V1_ERR("PROXY TCP6 fe80::1%lo ::1 1 2\r\n", "PROXY TCP6 fe80::1%", WD_PROXY_EV1_ADDRESS)},
    {"IPv6 two ::",
     V1_ERR("PROXY TCP6 1::2::3 ::1 1 2\r\n", "PROXY TCP6 1::2::3 ", WD_PROXY_EV1_ADDRESS)},
    {"IPv6 46 characters",
     V1_ERR("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555 ::1 1 2\r\n",
            "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555", WD_PROXY_EV1_ADDRESS)},
    {"IPv6 brackets", V1_ERR("PROXY TCP6 [::1] ::1 1 2\r\n", "PROXY TCP6 [", WD_PROXY_EV1_ADDRESS)},

    {"port 65536", V1_ERR(P4A "65536 80\r\n", P4A "65536", WD_PROXY_EV1_PORT)},
    {"port 99999", V1_ERR(P4A "80 99999\r\n", P4A "80 99999", WD_PROXY_EV1_PORT)},
    {"port six digits", V1_ERR(P4A "123456 80\r\n", P4A "123456", WD_PROXY_EV1_PORT)},
    {"port leading zero", V1_ERR(P4A "01 80\r\n", P4A "01", WD_PROXY_EV1_PORT)},
    {"port 00", V1_ERR(P4A "80 00\r\n", P4A "80 00", WD_PROXY_EV1_PORT)},
    {"port sign", V1_ERR(P4A "+80 80\r\n", P4A "+", WD_PROXY_EV1_PORT)},
    {"port negative", V1_ERR(P4A "-1 80\r\n", P4A "-", WD_PROXY_EV1_PORT)},
    {"port hex", V1_ERR(P4A "0x50 80\r\n", P4A "0x", WD_PROXY_EV1_PORT)},
    {"port empty", V1_ERR(P4A " 80\r\n", P4A " ", WD_PROXY_EV1_PORT)},
    {"last port empty", V1_ERR(P4A "80 \r\n", P4A "80 \r", WD_PROXY_EV1_PORT)},
    {"space after the last port", V1_ERR(P4A "80 80 \r\n", P4A "80 80 ", WD_PROXY_EV1_PORT)},
    {"tab between ports", V1_ERR(P4A "80\t80\r\n", P4A "80\t", WD_PROXY_EV1_PORT)},

    {"bare LF", V1_ERR(P4A "80 80\n", P4A "80 80\n", WD_PROXY_EV1_LINE_END)},
    {"CR without LF", V1_ERR(P4A "80 80\rGET", P4A "80 80\rG", WD_PROXY_EV1_LINE_END)},
    {"CR CR LF", V1_ERR(P4A "80 80\r\r\n", P4A "80 80\r\r", WD_PROXY_EV1_LINE_END)},
    {"one port", V1_ERR(P4A "80\r\n", P4A "80\r", WD_PROXY_EV1_LINE_END)},
    {"one address", V1_ERR(P4 "1.2.3.4\r\n", P4 "1.2.3.4\r", WD_PROXY_EV1_LINE_END)},
    {"UNKNOWN LF", V1_ERR("PROXY UNKNOWN\n", "PROXY UNKNOWN\n", WD_PROXY_EV1_LINE_END)},
    {"UNKNOWN CR without LF",
     V1_ERR("PROXY UNKNOWN\rx", "PROXY UNKNOWN\rx", WD_PROXY_EV1_LINE_END)},
    {"UNKNOWN with LF inside",
     V1_ERR("PROXY UNKNOWN a\nb\r\n", "PROXY UNKNOWN a\n", WD_PROXY_EV1_LINE_END)},

    /* Cut short: AGAIN whatever the prefix. */
    {"cut before LF", V1_AGAIN(P4A "80 80\r")},
    {"cut in a port", V1_AGAIN(P4A "655")},
    {"cut in UNKNOWN's rest", V1_AGAIN("PROXY UNKNOWN 1.2.3.4")},
    {"PROXY alone", V1_AGAIN("PROXY ")},
};

static void test_v1(void)
{
    char line[512];
    size_t i;

    for (i = 0; i < sizeof(v1_valid) / sizeof(v1_valid[0]); i++)
        run(v1_valid[i].name, v1_valid[i].in, v1_valid[i].len, v1_valid[i].ex);
    for (i = 0; i < sizeof(v1_invalid) / sizeof(v1_invalid[0]); i++) {
        const v1_case_t *c = &v1_invalid[i];
        T_CHECK(c->ex.decide_at <= c->len, "%s: bad case (decide_at past the input)", c->name);
        run(c->name, c->in, c->len, c->ex);
    }

    /* The 107-byte limit: a line that ends at byte 107 is whole; one byte more is an error at
     * the 107th byte, whether that byte is the CR or anything else. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 105, "\r\n", 2);
    run("UNKNOWN padded to 107 bytes", line, 107,
        (expect_t){107, WD_PROXY_OK, 107, 1, WD_PROXY_CMD_UNKNOWN, AF_UNSPEC, 0, "", "", 0, 0, 0});
    memcpy(line + 105, "x\r\n", 3);
    run("UNKNOWN padded to 108 bytes", line, 108,
        (expect_t){WD_PARSE_ERROR, WD_PROXY_EV1_TOO_LONG, 107, 0, 0, 0, 0, NULL, NULL, NONE, NONE,
                   NONE});
    memset(line + 14, 'x', sizeof(line) - 14);
    run("UNKNOWN without CRLF", line, sizeof(line),
        (expect_t){WD_PARSE_ERROR, WD_PROXY_EV1_TOO_LONG, 107, 0, 0, 0, 0, NULL, NULL, NONE, NONE,
                   NONE});

    /* The line ends at its CRLF even when the request after it starts like another header. */
    run("two headers", S("PROXY UNKNOWN\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        (expect_t){15, WD_PROXY_OK, 15, 1, WD_PROXY_CMD_UNKNOWN, AF_UNSPEC, 0, "", "", 0, 0, 0});
}

/* ---- version 2 ------------------------------------------------------------------------------ */

typedef struct pkt {
    char buf[WD_PROXY_V2_MAX + 256];
    size_t n;
} pkt_t;

static pkt_t pk;

static void pkt_raw(pkt_t *p, const void *data, size_t n)
{
    memcpy(p->buf + p->n, data, n);
    p->n += n;
}

static void pkt_u16(pkt_t *p, unsigned v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};

    pkt_raw(p, b, 2);
}

static void v2_begin(pkt_t *p, unsigned ver_cmd, unsigned fam)
{
    unsigned char b[2] = {(unsigned char)ver_cmd, (unsigned char)fam};

    p->n = 0;
    pkt_raw(p, "\r\n\r\n\0\r\nQUIT\n", 12);
    pkt_raw(p, b, 2);
    pkt_u16(p, 0);
}

static void v2_ip(pkt_t *p, int family, const char *src, const char *dst, unsigned sport,
                  unsigned dport)
{
    unsigned char a[16];
    size_t n = family == AF_INET ? 4 : 16;

    inet_pton(family, src, a);
    pkt_raw(p, a, n);
    inet_pton(family, dst, a);
    pkt_raw(p, a, n);
    pkt_u16(p, sport);
    pkt_u16(p, dport);
}

static void v2_unix(pkt_t *p, const char *src, size_t src_n, const char *dst, size_t dst_n)
{
    char path[108] = {0};

    memcpy(path, src, src_n);
    pkt_raw(p, path, sizeof(path));
    memset(path, 0, sizeof(path));
    memcpy(path, dst, dst_n);
    pkt_raw(p, path, sizeof(path));
}

static void v2_tlv(pkt_t *p, unsigned type, const void *value, size_t n)
{
    unsigned char t = (unsigned char)type;

    pkt_raw(p, &t, 1);
    pkt_u16(p, (unsigned)n);
    if (n)
        pkt_raw(p, value, n);
}

/* Sets the length to everything after the 16-byte head so far (or to `len` when not -1);
 * returns the header size it announces. */
static size_t v2_end(pkt_t *p, long len)
{
    size_t l = len < 0 ? p->n - 16 : (size_t)len;

    p->buf[14] = (char)(l >> 8);
    p->buf[15] = (char)l;
    return 16 + l;
}

static expect_t v2_ok(size_t size, int command, int family, int socktype, const char *src,
                      const char *dst, int sport, int dport, int ntlvs)
{
    return (expect_t){(int)size, WD_PROXY_OK, size, 2,     command, family,
                      socktype,  src,         dst,  sport, dport,   ntlvs};
}

static expect_t v2_err(wd_proxy_error_t e, size_t at)
{
    return (expect_t){WD_PARSE_ERROR, e, at, 0, 0, 0, 0, NULL, NULL, NONE, NONE, NONE};
}

static void test_v2_valid(void)
{
    static char big[65536];
    size_t size;

    v2_begin(&pk, 0x21, 0x11);
    v2_ip(&pk, AF_INET, "192.0.2.1", "198.51.100.2", 51234, 443);
    size = v2_end(&pk, -1);
    run("v2 PROXY TCP4", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_INET, SOCK_STREAM, "192.0.2.1", "198.51.100.2", 51234,
              443, 0));

    v2_begin(&pk, 0x21, 0x12);
    v2_ip(&pk, AF_INET, "0.0.0.0", "255.255.255.255", 0, 65535);
    size = v2_end(&pk, -1);
    run("v2 PROXY UDP4", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_INET, SOCK_DGRAM, "0.0.0.0", "255.255.255.255", 0, 65535,
              0));

    v2_begin(&pk, 0x21, 0x21);
    v2_ip(&pk, AF_INET6, "2001:db8::1", "::ffff:192.0.2.7", 1, 8443);
    size = v2_end(&pk, -1);
    run("v2 PROXY TCP6", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_INET6, SOCK_STREAM, "2001:db8::1", "::ffff:192.0.2.7", 1,
              8443, 0));

    v2_begin(&pk, 0x21, 0x22);
    v2_ip(&pk, AF_INET6, FFFF6, "::", 65535, 0);
    size = v2_end(&pk, -1);
    run("v2 PROXY UDP6", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_INET6, SOCK_DGRAM, FFFF6, "::", 65535, 0, 0));

    v2_begin(&pk, 0x21, 0x31);
    v2_unix(&pk, S("/run/haproxy/client.sock"), S("/run/wsgid/site.sock"));
    size = v2_end(&pk, -1);
    run("v2 PROXY UNIX STREAM", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_UNIX, SOCK_STREAM, "/run/haproxy/client.sock",
              "/run/wsgid/site.sock", 0, 0, 0));
    {
        wd_proxy_header_t h;
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&h.src.sa;
        wd_proxy_header_parse(pk.buf, pk.n, &h);
        T_CHECK(sun->sun_family == AF_UNIX &&
                    strcmp(sun->sun_path, "/run/haproxy/client.sock") == 0,
                "v2 UNIX: sockaddr_un");
    }

    /* An abstract address (leading NUL) as "@name"; an empty one as ""; a path of the full 108
     * bytes without a NUL. */
    memset(big, 'p', 108);
    big[0] = '/';
    v2_begin(&pk, 0x21, 0x32);
    v2_unix(&pk, S("\0wsgid-abstract"), big, 108);
    size = v2_end(&pk, -1);
    big[108] = '\0';
    run("v2 PROXY UNIX DGRAM abstract, 108 bytes", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_UNIX, SOCK_DGRAM, "@wsgid-abstract", big, 0, 0, 0));
    v2_begin(&pk, 0x21, 0x31);
    v2_unix(&pk, "", 0, S("\0"));
    size = v2_end(&pk, -1);
    run("v2 PROXY UNIX empty", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_UNIX, SOCK_STREAM, "", "", 0, 0, 0));
    memset(big, 0, 108);
    big[107] = 'z';
    v2_begin(&pk, 0x21, 0x31);
    v2_unix(&pk, big, 108, big + 1, 107);
    size = v2_end(&pk, -1);
    run("v2 PROXY UNIX abstract, last byte", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_UNIX, SOCK_STREAM, "@", "@", 0, 0, 0));

    /* UNSPEC: use the real connection's addresses. */
    v2_begin(&pk, 0x21, 0x00);
    size = v2_end(&pk, -1);
    run("v2 PROXY UNSPEC", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_UNKNOWN, AF_UNSPEC, 0, "", "", 0, 0, 0));
    v2_begin(&pk, 0x21, 0x00);
    v2_tlv(&pk, WD_PROXY_TLV_UNIQUE_ID, S("abc"));
    size = v2_end(&pk, -1);
    run("v2 PROXY UNSPEC with a TLV", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_UNKNOWN, AF_UNSPEC, 0, "", "", 0, 0, 1));

    /* LOCAL (a health check): its block is skipped unread, whatever the family says. */
    v2_begin(&pk, 0x20, 0x00);
    size = v2_end(&pk, -1);
    run("v2 LOCAL UNSPEC", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_LOCAL, AF_UNSPEC, 0, "", "", 0, 0, 0));
    v2_begin(&pk, 0x20, 0x11);
    v2_ip(&pk, AF_INET, "10.0.0.1", "10.0.0.2", 1, 2);
    v2_tlv(&pk, WD_PROXY_TLV_NOOP, "", 0);
    size = v2_end(&pk, -1);
    run("v2 LOCAL INET", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_LOCAL, AF_INET, SOCK_STREAM, "", "", 0, 0, 0));
    v2_begin(&pk, 0x20, 0x21);
    size = v2_end(&pk, -1);
    run("v2 LOCAL INET6 without addresses", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_LOCAL, AF_INET6, SOCK_STREAM, "", "", 0, 0, 0));
    v2_begin(&pk, 0x20, 0x31);
    v2_unix(&pk, S("/a"), S("/b"));
    pkt_raw(&pk, "\x01\xff\xff", 3); /* a TLV that would run past the header: not read */
    size = v2_end(&pk, -1);
    run("v2 LOCAL UNIX with a broken block", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_LOCAL, AF_UNIX, SOCK_STREAM, "", "", 0, 0, 0));

    /* TLVs: several, an empty one last, and the largest header there is. */
    v2_begin(&pk, 0x21, 0x11);
    v2_ip(&pk, AF_INET, "192.0.2.1", "192.0.2.2", 1000, 80);
    v2_tlv(&pk, WD_PROXY_TLV_ALPN, S("h2"));
    v2_tlv(&pk, WD_PROXY_TLV_AUTHORITY, S("example.com"));
    v2_tlv(&pk, WD_PROXY_TLV_CRC32C, S("\x12\x34\x56\x78"));
    v2_tlv(&pk, 0xE0, S("custom")); /* PP2_TYPE_MIN_CUSTOM */
    v2_tlv(&pk, WD_PROXY_TLV_NOOP, "", 0);
    size = v2_end(&pk, -1);
    run("v2 TCP4 with TLVs", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_INET, SOCK_STREAM, "192.0.2.1", "192.0.2.2", 1000, 80,
              5));

    memset(big, 'n', sizeof(big));
    v2_begin(&pk, 0x21, 0x11);
    v2_ip(&pk, AF_INET, "192.0.2.1", "192.0.2.2", 1000, 80);
    v2_tlv(&pk, WD_PROXY_TLV_NOOP, big, 65535 - 12 - 3);
    size = v2_end(&pk, -1);
    T_CHECK(size == WD_PROXY_V2_MAX, "largest v2 header: %zu bytes", size);
    run("v2 largest header", pk.buf, pk.n,
        v2_ok(size, WD_PROXY_CMD_PROXY, AF_INET, SOCK_STREAM, "192.0.2.1", "192.0.2.2", 1000, 80,
              1));
}

/* The TLVs come back in order with their values, and an SSL TLV's sub-TLVs can be walked. */
static void test_v2_tlv_walk(void)
{
    wd_proxy_header_t h;
    wd_proxy_tlv_iter_t it, sub;
    wd_proxy_tlv_t t;
    char ssl[64];
    size_t ssl_n = 0;
    int r, n = 0, ok = 1;

    /* client = SSL | CERT_CONN, verify = 0, then VERSION and CN. */
    memcpy(ssl, "\x05\0\0\0\0", 5);
    ssl_n = 5;
    memcpy(ssl + ssl_n, "\x21\x00\x07TLSv1.3", 10);
    ssl_n += 10;
    memcpy(ssl + ssl_n,
           "\x22\x00\x0b"
           "example.org",
           14);
    ssl_n += 14;

    v2_begin(&pk, 0x21, 0x21);
    v2_ip(&pk, AF_INET6, "2001:db8::10", "2001:db8::20", 40000, 443);
    v2_tlv(&pk, WD_PROXY_TLV_ALPN, S("http/1.1"));
    v2_tlv(&pk, WD_PROXY_TLV_SSL, ssl, ssl_n);
    v2_tlv(&pk, WD_PROXY_TLV_UNIQUE_ID, "", 0);
    v2_end(&pk, -1);
    r = wd_proxy_header_parse(pk.buf, pk.n, &h);
    T_CHECK(r == (int)pk.n, "tlv walk: parse %d", r);

    wd_proxy_header_tlv_init(&it, h.tlvs);
    while (wd_proxy_header_tlv_next(&it, &t)) {
        if (n == 0)
            ok &=
                t.type == WD_PROXY_TLV_ALPN && t.value.n == 8 && !memcmp(t.value.p, "http/1.1", 8);
        if (n == 1) {
            ok &= t.type == WD_PROXY_TLV_SSL && t.value.n == ssl_n && t.value.p[0] == 5;
            wd_proxy_header_tlv_init(&sub, (wd_slice_t){t.value.p + WD_PROXY_SSL_HEAD_SIZE,
                                                        t.value.n - WD_PROXY_SSL_HEAD_SIZE});
            ok &= wd_proxy_header_tlv_next(&sub, &t) && t.type == WD_PROXY_TLV_SSL_VERSION &&
                  t.value.n == 7 && !memcmp(t.value.p, "TLSv1.3", 7);
            ok &= wd_proxy_header_tlv_next(&sub, &t) && t.type == WD_PROXY_TLV_SSL_CN &&
                  t.value.n == 11 && !memcmp(t.value.p, "example.org", 11);
            ok &= !wd_proxy_header_tlv_next(&sub, &t);
        }
        if (n == 2)
            ok &= t.type == WD_PROXY_TLV_UNIQUE_ID && t.value.n == 0;
        n++;
    }
    T_CHECK(n == 3 && ok, "tlv walk: %d TLVs, values ok %d", n, ok);

    /* The iterator stops at a TLV that runs past its block, and on an empty or NULL block. */
    wd_proxy_header_tlv_init(&it, (wd_slice_t){"\x01\x00\x05"
                                               "abc",
                                               6});
    T_CHECK(!wd_proxy_header_tlv_next(&it, &t), "tlv walk: overrun refused");
    wd_proxy_header_tlv_init(&it, (wd_slice_t){"\x01\x00", 2});
    T_CHECK(!wd_proxy_header_tlv_next(&it, &t), "tlv walk: cut head refused");
    wd_proxy_header_tlv_init(&it, (wd_slice_t){NULL, 0});
    T_CHECK(!wd_proxy_header_tlv_next(&it, &t), "tlv walk: NULL block");
}

static void test_v2_invalid(void)
{
    static const unsigned char bad_fams[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x23,
                                             0x30, 0x3f, 0x41, 0x42, 0xff};
    static const unsigned char bad_versions[] = {0x11, 0x10, 0x01, 0x00, 0x31, 0xf1};
    static const unsigned char bad_commands[] = {0x22, 0x23, 0x2f};
    char name[64];
    size_t i, size;

    /* The signature, wrong at each of its bytes. */
    for (i = 0; i < 12; i++) {
        v2_begin(&pk, 0x21, 0x11);
        v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
        v2_end(&pk, -1);
        pk.buf[i] ^= 0x40;
        snprintf(name, sizeof(name), "v2 signature byte %zu", i);
        run(name, pk.buf, pk.n, v2_err(WD_PROXY_ESIGNATURE, i + 1));
    }

    for (i = 0; i < sizeof(bad_versions); i++) {
        v2_begin(&pk, bad_versions[i], 0x11);
        v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
        v2_end(&pk, -1);
        snprintf(name, sizeof(name), "v2 version/command 0x%02x", bad_versions[i]);
        run(name, pk.buf, pk.n, v2_err(WD_PROXY_EV2_VERSION, 13));
    }
    for (i = 0; i < sizeof(bad_commands); i++) {
        v2_begin(&pk, bad_commands[i], 0x11);
        v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
        v2_end(&pk, -1);
        snprintf(name, sizeof(name), "v2 command 0x%02x", bad_commands[i]);
        run(name, pk.buf, pk.n, v2_err(WD_PROXY_EV2_COMMAND, 13));
    }
    for (i = 0; i < sizeof(bad_fams); i++) {
        v2_begin(&pk, 0x21, bad_fams[i]);
        v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
        v2_end(&pk, -1);
        snprintf(name, sizeof(name), "v2 PROXY family 0x%02x", bad_fams[i]);
        run(name, pk.buf, pk.n, v2_err(WD_PROXY_EV2_FAMILY, 14));
        pk.buf[12] = 0x20;
        snprintf(name, sizeof(name), "v2 LOCAL family 0x%02x", bad_fams[i]);
        run(name, pk.buf, pk.n, v2_err(WD_PROXY_EV2_FAMILY, 14));
    }

    /* A length below the family's addresses. */
    v2_begin(&pk, 0x21, 0x11);
    v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_end(&pk, 11);
    run("v2 TCP4 length 11", pk.buf, pk.n, v2_err(WD_PROXY_EV2_LENGTH, 16));
    v2_begin(&pk, 0x21, 0x11);
    v2_end(&pk, 0);
    run("v2 TCP4 length 0", pk.buf, pk.n, v2_err(WD_PROXY_EV2_LENGTH, 16));
    v2_begin(&pk, 0x21, 0x21);
    v2_ip(&pk, AF_INET6, "::1", "::2", 1, 2);
    v2_end(&pk, 35);
    run("v2 TCP6 length 35", pk.buf, pk.n, v2_err(WD_PROXY_EV2_LENGTH, 16));
    v2_begin(&pk, 0x21, 0x21);
    v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_end(&pk, -1);
    run("v2 TCP6 with IPv4 addresses", pk.buf, pk.n, v2_err(WD_PROXY_EV2_LENGTH, 16));
    v2_begin(&pk, 0x21, 0x31);
    v2_unix(&pk, S("/a"), S("/b"));
    v2_end(&pk, 215);
    run("v2 UNIX length 215", pk.buf, pk.n, v2_err(WD_PROXY_EV2_LENGTH, 16));

    /* TLVs that run past the header: the value, the length itself, a second TLV. */
    v2_begin(&pk, 0x21, 0x11);
    v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&pk, WD_PROXY_TLV_AUTHORITY, S("example.com"));
    size = v2_end(&pk, -1);
    pk.buf[16 + 12 + 2] = 12;
    run("v2 TLV value past the header", pk.buf, pk.n, v2_err(WD_PROXY_EV2_TLV, 16 + 12 + 3));
    pk.buf[16 + 12 + 1] = 0x01;
    pk.buf[16 + 12 + 2] = 0;
    run("v2 TLV length 256", pk.buf, pk.n, v2_err(WD_PROXY_EV2_TLV, 16 + 12 + 3));
    pk.buf[16 + 12 + 1] = (char)0xff;
    pk.buf[16 + 12 + 2] = (char)0xff;
    run("v2 TLV length 65535", pk.buf, pk.n, v2_err(WD_PROXY_EV2_TLV, 16 + 12 + 3));
    (void)size;

    v2_begin(&pk, 0x21, 0x11);
    v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
    pkt_raw(&pk, "\x04\x00", 2);
    v2_end(&pk, -1);
    run("v2 TLV cut after 2 bytes", pk.buf, pk.n, v2_err(WD_PROXY_EV2_TLV, 16 + 12 + 1));

    v2_begin(&pk, 0x21, 0x11);
    v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
    pkt_raw(&pk, "\x04", 1);
    v2_end(&pk, -1);
    run("v2 TLV cut after 1 byte", pk.buf, pk.n, v2_err(WD_PROXY_EV2_TLV, 16 + 12 + 1));

    v2_begin(&pk, 0x21, 0x00);
    v2_tlv(&pk, WD_PROXY_TLV_ALPN, S("h2"));
    v2_tlv(&pk, WD_PROXY_TLV_NOOP, S("1234"));
    v2_end(&pk, -1);
    pk.buf[16 + 5 + 2] = 5;
    run("v2 UNSPEC second TLV past the header", pk.buf, pk.n, v2_err(WD_PROXY_EV2_TLV, 16 + 5 + 3));

    /* A TLV that fits the bytes after the header (the request) but not the header. */
    v2_begin(&pk, 0x21, 0x11);
    v2_ip(&pk, AF_INET, "1.2.3.4", "5.6.7.8", 1, 2);
    v2_tlv(&pk, WD_PROXY_TLV_NOOP, S("12345"));
    v2_end(&pk, 12 + 3 + 2);
    run("v2 TLV into the request", pk.buf, pk.n, v2_err(WD_PROXY_EV2_TLV, 16 + 12 + 3));

    /* Cut short: AGAIN whatever the prefix. */
    v2_begin(&pk, 0x21, 0x21);
    v2_ip(&pk, AF_INET6, "::1", "::2", 1, 2);
    v2_tlv(&pk, WD_PROXY_TLV_AUTHORITY, S("example.com"));
    size = v2_end(&pk, -1);
    run("v2 cut in the addresses", pk.buf, 30, (expect_t){0});
    run("v2 cut in a TLV", pk.buf, size - 1, (expect_t){0});
    run("v2 cut in the TLV head", pk.buf, 16 + 36 + 2, (expect_t){0});
    v2_begin(&pk, 0x20, 0x00);
    v2_end(&pk, 100);
    run("v2 LOCAL cut", pk.buf, pk.n, (expect_t){0});
}

static void test_strerror(void)
{
    int i;

    for (i = 0; i <= WD_PROXY_EV2_TLV; i++)
        T_CHECK(strcmp(wd_proxy_header_strerror((wd_proxy_error_t)i),
                       "unknown PROXY header error") != 0,
                "strerror %d", i);
    T_CHECK(strcmp(wd_proxy_header_strerror((wd_proxy_error_t)99), "unknown PROXY header error") ==
                0,
            "strerror out of range");
}

int main(void)
{
    t_guard_init(&guard, WD_PROXY_V2_MAX + 256);
    test_v1();
    test_v2_valid();
    test_v2_tlv_walk();
    test_v2_invalid();
    test_strerror();
    t_guard_free(&guard);
    return t_summary("proxy_header");
}
