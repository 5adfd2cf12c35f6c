/* The PROXY protocol header, versions 1 and 2 (HAProxy's proxy-protocol.txt).
 *
 * The parser never allocates and never reads past buf + len. It starts over at every call (a
 * header is at most 107 bytes in v1; in v2 the work is one pass over the TLV headers), and reads
 * the bytes in order, so that the first byte that cannot belong to a header decides the error
 * whatever comes after it: a prefix that fails fails with the same error as the whole. */
#include "proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#define V1_PREFIX "PROXY "
#define V1_PREFIX_LEN 6
#define V2_SIG "\r\n\r\n\0\r\nQUIT\n"
#define V2_SIG_LEN 12
#define V2_TLV_HEAD 3 /* type, length (u16 BE) */

/* The longest address texts a v1 line may hold: dotted IPv4, and IPv6 in its longest form
 * ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"). */
#define V1_INET_MAX 15
#define V1_INET6_MAX (INET6_ADDRSTRLEN - 1)

_Static_assert(sizeof(((struct sockaddr_un *)0)->sun_path) >= WD_PROXY_UNIX_PATH_MAX,
               "a v2 UNIX address fits in sun_path");
_Static_assert(WD_PROXY_ADDR_MAX >= INET6_ADDRSTRLEN, "an IPv6 text fits in wd_proxy_addr_t");

static int fail(wd_proxy_header_t *h, wd_proxy_error_t e)
{
    h->error = e;
    return WD_PARSE_ERROR;
}

static unsigned get_u16be(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;

    return (unsigned)u[0] << 8 | u[1];
}

/* 1 when the len bytes at buf are a prefix of lit (n bytes) or hold all of it. */
static int starts_like(const char *buf, size_t len, const char *lit, size_t n)
{
    return memcmp(buf, lit, len < n ? len : n) == 0;
}

/* Fills the sockaddr and the text of an IP address from its n network-order bytes. */
static void addr_ip(wd_proxy_addr_t *a, int family, const void *bytes, unsigned port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;

    memset(&a->sa, 0, sizeof(a->sa));
    if (family == AF_INET) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        memcpy(&sin->sin_addr, bytes, 4);
        inet_ntop(AF_INET, &sin->sin_addr, a->text, sizeof(a->text));
    } else {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        memcpy(&sin6->sin6_addr, bytes, 16);
        inet_ntop(AF_INET6, &sin6->sin6_addr, a->text, sizeof(a->text));
    }
    a->port = (uint16_t)port;
}

/* ---- version 1 ------------------------------------------------------------------------------ */

typedef struct v1 {
    const char *buf;
    size_t len;
    size_t pos; /* the next byte to read */
    wd_proxy_header_t *h;
} v1_t;

/* 0 when the byte at pos is there; WD_PARSE_AGAIN; WD_PARSE_ERROR when the line would be longer
 * than the spec allows (the LF of CRLF is at most the 107th byte). */
static int v1_need(v1_t *v)
{
    if (v->pos >= WD_PROXY_V1_MAX)
        return fail(v->h, WD_PROXY_EV1_TOO_LONG);
    return v->pos < v->len ? 0 : WD_PARSE_AGAIN;
}

/* The protocol and the separator after it: "TCP4 ", "TCP6 " or "UNKNOWN" (which may end the
 * line). None is a prefix of another, so the first byte that matches none decides. */
static int v1_protocol(v1_t *v, int *family)
{
    static const struct {
        const char *name;
        size_t n;
        int family;
    } protos[] = {{"TCP4 ", 5, AF_INET}, {"TCP6 ", 5, AF_INET6}, {"UNKNOWN", 7, AF_UNSPEC}};
    size_t avail = v->len - v->pos, i;
    int partial = 0;

    for (i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
        if (!starts_like(v->buf + v->pos, avail, protos[i].name, protos[i].n))
            continue;
        if (avail < protos[i].n) {
            partial = 1;
            continue;
        }
        v->pos += protos[i].n;
        *family = protos[i].family;
        return 0;
    }
    return partial ? WD_PARSE_AGAIN : fail(v->h, WD_PROXY_EV1_PROTOCOL);
}

/* The LF after a CR that was just read. */
static int v1_lf(v1_t *v)
{
    int r = v1_need(v);

    if (r != 0)
        return r;
    if (v->buf[v->pos] != '\n')
        return fail(v->h, WD_PROXY_EV1_LINE_END);
    v->pos++;
    return 0;
}

/* After "UNKNOWN": CRLF, or a space and anything up to CRLF (the spec says to ignore it; a bare
 * CR or LF in it is refused, as everywhere in the line). */
static int v1_unknown_rest(v1_t *v)
{
    int r, first = 1;
    char c;

    for (;;) {
        if ((r = v1_need(v)) != 0)
            return r;
        c = v->buf[v->pos++];
        if (c == '\r')
            return v1_lf(v);
        if (c == '\n')
            return fail(v->h, WD_PROXY_EV1_LINE_END);
        if (first && c != ' ')
            return fail(v->h, WD_PROXY_EV1_PROTOCOL); /* "UNKNOWNX" */
        first = 0;
    }
}

static int is_addr_char(int family, char c)
{
    if ((c >= '0' && c <= '9') || c == '.')
        return 1;
    return family == AF_INET6 && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
}

/* An address and the space after it. A byte that no address text holds, or one too many, is
 * refused at once; the text as a whole is checked with inet_pton at the space. */
static int v1_address(v1_t *v, int family, wd_proxy_addr_t *a)
{
    size_t start = v->pos, n, max = family == AF_INET ? V1_INET_MAX : V1_INET6_MAX;
    unsigned char bytes[16];
    char text[V1_INET6_MAX + 1];
    int r;
    char c;

    for (;;) {
        if ((r = v1_need(v)) != 0)
            return r;
        c = v->buf[v->pos];
        n = v->pos - start;
        if (c == ' ')
            break;
        if (c == '\r' || c == '\n')
            return fail(v->h, WD_PROXY_EV1_LINE_END);
        if (n == max || !is_addr_char(family, c))
            return fail(v->h, WD_PROXY_EV1_ADDRESS);
        v->pos++;
    }
    memcpy(text, v->buf + start, n);
    text[n] = '\0';
    if (n == 0 || inet_pton(family, text, bytes) != 1)
        return fail(v->h, WD_PROXY_EV1_ADDRESS);
    addr_ip(a, family, bytes, 0);
    v->pos++;
    return 0;
}

/* A port and the byte after it (a space, or the CR of CRLF): decimal 0..65535, "0" the only
 * number that starts with 0. */
static int v1_port(v1_t *v, char end, wd_proxy_addr_t *a)
{
    size_t n;
    unsigned port = 0;
    int r;
    char c;

    for (n = 0;; n++) {
        if ((r = v1_need(v)) != 0)
            return r;
        c = v->buf[v->pos];
        if (c == end && n > 0)
            break;
        if ((c == '\r' || c == '\n') && c != end)
            return fail(v->h, WD_PROXY_EV1_LINE_END);
        if (c < '0' || c > '9' || (n == 1 && port == 0))
            return fail(v->h, WD_PROXY_EV1_PORT);
        port = port * 10 + (unsigned)(c - '0');
        if (port > 65535)
            return fail(v->h, WD_PROXY_EV1_PORT);
        v->pos++;
    }
    v->pos++;
    a->port = (uint16_t)port;
    if (a->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons((uint16_t)port);
    return 0;
}

/* The line after "PROXY ". */
static int parse_v1(const char *buf, size_t len, wd_proxy_header_t *h)
{
    v1_t v = {buf, len, V1_PREFIX_LEN, h};
    int family = AF_UNSPEC, r;

    h->version = 1;
    if ((r = v1_protocol(&v, &family)) != 0)
        return r;
    if (family == AF_UNSPEC) {
        if ((r = v1_unknown_rest(&v)) != 0)
            return r;
        h->command = WD_PROXY_CMD_UNKNOWN;
        return (int)v.pos;
    }
    if ((r = v1_address(&v, family, &h->src)) != 0 || (r = v1_address(&v, family, &h->dst)) != 0)
        return r;
    if ((r = v1_port(&v, ' ', &h->src)) != 0 || (r = v1_port(&v, '\r', &h->dst)) != 0)
        return r;
    if ((r = v1_lf(&v)) != 0)
        return r;
    h->command = WD_PROXY_CMD_PROXY;
    h->family = family;
    h->socktype = SOCK_STREAM;
    return (int)v.pos;
}

/* ---- version 2 ------------------------------------------------------------------------------ */

/* The family/transport byte: the seven values the spec defines; it says to refuse the others. */
static int v2_family(unsigned char b, wd_proxy_header_t *h, size_t *addr_len)
{
    static const struct {
        int family;
        size_t addr_len;
    } fams[] = {{AF_UNSPEC, 0}, {AF_INET, 12}, {AF_INET6, 36}, {AF_UNIX, 216}};
    static const int socktypes[] = {0, SOCK_STREAM, SOCK_DGRAM};
    unsigned fam = b >> 4, proto = b & 0xf;

    if (fam > 3 || proto > 2 || (fam == 0) != (proto == 0))
        return fail(h, WD_PROXY_EV2_FAMILY);
    h->family = fams[fam].family;
    h->socktype = socktypes[proto];
    *addr_len = fams[fam].addr_len;
    return 0;
}

/* Checks the framing of the TLVs in [p, end) that are already in the buffer (up to avail): each
 * one's head and value must fit before the end of the header. */
static int v2_tlvs_check(const char *p, const char *end, const char *avail, wd_proxy_header_t *h)
{
    size_t n;

    while (p < end && p < avail) {
        if (end - p < V2_TLV_HEAD)
            return fail(h, WD_PROXY_EV2_TLV);
        if (avail - p < V2_TLV_HEAD)
            return 0;
        n = get_u16be(p + 1);
        if ((size_t)(end - p - V2_TLV_HEAD) < n)
            return fail(h, WD_PROXY_EV2_TLV);
        p += V2_TLV_HEAD + n;
    }
    return 0;
}

static int all_nul(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != '\0')
            return 0;
    return 1;
}

/* A UNIX address: a sun_path of 108 bytes, NUL-padded. An abstract one starts with a NUL; its
 * text is "@" and its name up to the next NUL. */
static void addr_unix(wd_proxy_addr_t *a, const char *path)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&a->sa;
    const char *nul;
    size_t n, off = 0;

    memset(&a->sa, 0, sizeof(a->sa));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, WD_PROXY_UNIX_PATH_MAX);
    if (path[0] == '\0') {
        if (all_nul(path, WD_PROXY_UNIX_PATH_MAX))
            return; /* no address: "" */
        a->text[0] = '@';
        off = 1;
    }
    nul = memchr(path + off, '\0', WD_PROXY_UNIX_PATH_MAX - off);
    n = nul ? (size_t)(nul - (path + off)) : WD_PROXY_UNIX_PATH_MAX - off;
    memcpy(a->text + off, path + off, n);
    a->text[off + n] = '\0';
}

static void v2_addresses(const char *p, wd_proxy_header_t *h)
{
    switch (h->family) {
    case AF_INET:
        addr_ip(&h->src, AF_INET, p, get_u16be(p + 8));
        addr_ip(&h->dst, AF_INET, p + 4, get_u16be(p + 10));
        break;
    case AF_INET6:
        addr_ip(&h->src, AF_INET6, p, get_u16be(p + 32));
        addr_ip(&h->dst, AF_INET6, p + 16, get_u16be(p + 34));
        break;
    case AF_UNIX:
        addr_unix(&h->src, p);
        addr_unix(&h->dst, p + WD_PROXY_UNIX_PATH_MAX);
        break;
    }
}

/* The header after the signature. LOCAL is a connection of the proxy's own (a health check):
 * the spec says to accept it and discard its block, whatever the block holds, so only PROXY's
 * block is checked. */
static int parse_v2(const char *buf, size_t len, wd_proxy_header_t *h)
{
    const unsigned char *u = (const unsigned char *)buf;
    const char *tlvs;
    size_t addr_len = 0, total;
    int r;

    h->version = 2;
    if (len <= 12)
        return WD_PARSE_AGAIN;
    if (u[12] >> 4 != 2)
        return fail(h, WD_PROXY_EV2_VERSION);
    if ((u[12] & 0xf) > 1)
        return fail(h, WD_PROXY_EV2_COMMAND);
    if (len <= 13)
        return WD_PARSE_AGAIN;
    if ((r = v2_family(u[13], h, &addr_len)) != 0)
        return r;
    if (len < WD_PROXY_V2_HEAD_SIZE)
        return WD_PARSE_AGAIN;
    total = WD_PROXY_V2_HEAD_SIZE + get_u16be(buf + 14);
    if ((u[12] & 0xf) == 0) {
        if (len < total)
            return WD_PARSE_AGAIN;
        h->command = WD_PROXY_CMD_LOCAL;
        h->tlvs.p = buf + WD_PROXY_V2_HEAD_SIZE;
        return (int)total;
    }

    if (total - WD_PROXY_V2_HEAD_SIZE < addr_len)
        return fail(h, WD_PROXY_EV2_LENGTH);
    tlvs = buf + WD_PROXY_V2_HEAD_SIZE + addr_len;
    if ((r = v2_tlvs_check(tlvs, buf + total, buf + len, h)) != 0)
        return r;
    if (len < total)
        return WD_PARSE_AGAIN;
    if (h->family == AF_UNSPEC) {
        h->command = WD_PROXY_CMD_UNKNOWN;
    } else {
        h->command = WD_PROXY_CMD_PROXY;
        v2_addresses(buf + WD_PROXY_V2_HEAD_SIZE, h);
    }
    h->tlvs.p = tlvs;
    h->tlvs.n = (size_t)(buf + total - tlvs);
    return (int)total;
}

/* ---- both ----------------------------------------------------------------------------------- */

int wd_proxy_header_parse(const char *buf, size_t len, wd_proxy_header_t *h)
{
    memset(h, 0, sizeof(*h));

    if (len == 0)
        return WD_PARSE_AGAIN;
    if (buf[0] == 'P') {
        if (!starts_like(buf, len, V1_PREFIX, V1_PREFIX_LEN))
            return fail(h, WD_PROXY_ESIGNATURE);
        return len < V1_PREFIX_LEN ? WD_PARSE_AGAIN : parse_v1(buf, len, h);
    }
    if (!starts_like(buf, len, V2_SIG, V2_SIG_LEN))
        return fail(h, WD_PROXY_ESIGNATURE);
    return parse_v2(buf, len, h);
}

const char *wd_proxy_header_strerror(wd_proxy_error_t e)
{
    switch (e) {
    case WD_PROXY_OK:
        return "no error";
    case WD_PROXY_ESIGNATURE:
        return "no PROXY protocol header (neither \"PROXY \" nor the v2 signature)";
    case WD_PROXY_EV1_TOO_LONG:
        return "PROXY v1 header longer than 107 bytes";
    case WD_PROXY_EV1_PROTOCOL:
        return "PROXY v1 header: protocol is not TCP4, TCP6 or UNKNOWN";
    case WD_PROXY_EV1_ADDRESS:
        return "PROXY v1 header: invalid address";
    case WD_PROXY_EV1_PORT:
        return "PROXY v1 header: invalid port";
    case WD_PROXY_EV1_LINE_END:
        return "PROXY v1 header: malformed line (CR or LF out of place)";
    case WD_PROXY_EV2_VERSION:
        return "PROXY v2 header: version is not 2";
    case WD_PROXY_EV2_COMMAND:
        return "PROXY v2 header: command is neither LOCAL nor PROXY";
    case WD_PROXY_EV2_FAMILY:
        return "PROXY v2 header: unknown address family or transport";
    case WD_PROXY_EV2_LENGTH:
        return "PROXY v2 header: length too short for the addresses";
    case WD_PROXY_EV2_TLV:
        return "PROXY v2 header: a TLV runs past the end of the header";
    }
    return "unknown PROXY header error";
}

void wd_proxy_header_tlv_init(wd_proxy_tlv_iter_t *it, wd_slice_t block)
{
    it->p = block.p;
    it->end = block.p ? block.p + block.n : NULL;
}

int wd_proxy_header_tlv_next(wd_proxy_tlv_iter_t *it, wd_proxy_tlv_t *tlv)
{
    size_t n;

    /* The framing of a parsed header's block was checked; the checks stay for a sub-TLV block
     * (an SSL TLV's), which the parser does not look into. */
    if (it->p == NULL || it->end - it->p < V2_TLV_HEAD)
        return 0;
    n = get_u16be(it->p + 1);
    if ((size_t)(it->end - it->p - V2_TLV_HEAD) < n)
        return 0;
    tlv->type = (uint8_t)it->p[0];
    tlv->value.p = it->p + V2_TLV_HEAD;
    tlv->value.n = n;
    it->p += V2_TLV_HEAD + n;
    return 1;
}
