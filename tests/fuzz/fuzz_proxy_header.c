/* libFuzzer target: the PROXY protocol header parser (protocol/proxy_header.c), and the
 * trusted-proxies ranges (protocol/cidr.c) on short inputs.
 *
 * The input is what a peer sends first on a connection: a header, then the request. It is parsed
 * whole, then cut at a point derived from the data (as when the header arrives in two reads),
 * and, when short, at every length: a valid header is AGAIN at every shorter prefix and the same
 * size at every longer one; an error seen at some length is the error of every longer one. A
 * parsed header lies inside the buffer, says what its bytes say, and its address texts are
 * NUL-terminated and read back to its sockaddrs. */
#include "cidr.h"
#include "fuzz.h"
#include "proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

static void check_text(const wd_proxy_addr_t *a)
{
    WD_FUZZ_CHECK(memchr(a->text, '\0', sizeof(a->text)) != NULL);
}

/* An IP address's text reads back to its sockaddr's address, and the port agrees. */
static void check_ip(const wd_proxy_addr_t *a, int family)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;
    unsigned char bytes[16];

    WD_FUZZ_CHECK(a->sa.ss_family == family);
    WD_FUZZ_CHECK(inet_pton(family, a->text, bytes) == 1);
    if (family == AF_INET) {
        WD_FUZZ_CHECK(memcmp(bytes, &sin->sin_addr, 4) == 0);
        WD_FUZZ_CHECK(ntohs(sin->sin_port) == a->port);
    } else {
        WD_FUZZ_CHECK(memcmp(bytes, &sin6->sin6_addr, 16) == 0);
        WD_FUZZ_CHECK(ntohs(sin6->sin6_port) == a->port);
    }
}

static void check_unix(const wd_proxy_addr_t *a)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->sa;
    size_t n = strlen(a->text);

    WD_FUZZ_CHECK(sun->sun_family == AF_UNIX && a->port == 0);
    WD_FUZZ_CHECK(n < WD_PROXY_ADDR_MAX);
    if (sun->sun_path[0] == '\0') /* abstract: "@name", or "" when all NUL */
        WD_FUZZ_CHECK(n == 0 ||
                      (a->text[0] == '@' && memcmp(sun->sun_path + 1, a->text + 1, n - 1) == 0));
    else
        WD_FUZZ_CHECK(memcmp(sun->sun_path, a->text, n) == 0 &&
                      (n == WD_PROXY_UNIX_PATH_MAX || sun->sun_path[n] == '\0'));
}

/* Checks a successful parse of buf (len bytes) that returned r. */
static void check_header(const char *buf, size_t len, int r, const wd_proxy_header_t *h)
{
    wd_proxy_tlv_iter_t it;
    wd_proxy_tlv_t tlv;
    size_t n = 0;

    WD_FUZZ_CHECK(r > 0 && (size_t)r <= len);
    WD_FUZZ_CHECK(h->error == WD_PROXY_OK);
    check_text(&h->src);
    check_text(&h->dst);
    if (h->version == 1) {
        WD_FUZZ_CHECK(r <= WD_PROXY_V1_MAX && memcmp(buf, "PROXY ", 6) == 0);
        WD_FUZZ_CHECK(buf[r - 2] == '\r' && buf[r - 1] == '\n');
        WD_FUZZ_CHECK(memchr(buf, '\n', (size_t)r - 1) == NULL); /* the first line, whole */
        WD_FUZZ_CHECK(h->tlvs.p == NULL && h->tlvs.n == 0);
        WD_FUZZ_CHECK(h->command == WD_PROXY_CMD_PROXY || h->command == WD_PROXY_CMD_UNKNOWN);
    } else {
        WD_FUZZ_CHECK(h->version == 2 && r >= WD_PROXY_V2_HEAD_SIZE);
        WD_FUZZ_CHECK(memcmp(buf, "\r\n\r\n\0\r\nQUIT\n", 12) == 0);
        WD_FUZZ_CHECK((unsigned)r ==
                      WD_PROXY_V2_HEAD_SIZE +
                          ((unsigned)(unsigned char)buf[14] << 8 | (unsigned char)buf[15]));
        WD_FUZZ_CHECK(h->command == ((buf[12] & 0xf) == 0     ? WD_PROXY_CMD_LOCAL
                                     : h->family == AF_UNSPEC ? WD_PROXY_CMD_UNKNOWN
                                                              : WD_PROXY_CMD_PROXY));
        WD_FUZZ_CHECK(h->tlvs.p != NULL);
        WD_FUZZ_INSIDE(h->tlvs.p, h->tlvs.n, buf + WD_PROXY_V2_HEAD_SIZE, buf + r);
        if (h->tlvs.n > 0)
            WD_FUZZ_CHECK(h->tlvs.p + h->tlvs.n == buf + r);
    }

    if (h->command == WD_PROXY_CMD_PROXY) {
        if (h->family == AF_UNIX) {
            check_unix(&h->src);
            check_unix(&h->dst);
        } else {
            WD_FUZZ_CHECK(h->family == AF_INET || h->family == AF_INET6);
            check_ip(&h->src, h->family);
            check_ip(&h->dst, h->family);
        }
    } else {
        WD_FUZZ_CHECK(h->src.sa.ss_family == AF_UNSPEC && h->dst.sa.ss_family == AF_UNSPEC);
        WD_FUZZ_CHECK(h->src.text[0] == '\0' && h->dst.text[0] == '\0');
    }

    /* The TLV walk covers the block exactly, every value inside it. */
    wd_proxy_header_tlv_init(&it, h->tlvs);
    while (wd_proxy_header_tlv_next(&it, &tlv)) {
        WD_FUZZ_INSIDE(tlv.value.p, tlv.value.n, h->tlvs.p, h->tlvs.p + h->tlvs.n);
        n++;
        WD_FUZZ_CHECK(n <= h->tlvs.n / 3);
    }
    WD_FUZZ_CHECK(h->tlvs.n == 0 || it.p == h->tlvs.p + h->tlvs.n);
}

/* The same bytes cut to `cut`: consistent with the whole's result r (error e). */
static void check_prefix(const uint8_t *data, size_t cut, int r, wd_proxy_error_t e)
{
    wd_proxy_header_t part;
    char *pre = wd_fuzz_dup(data, cut);
    int rp = wd_proxy_header_parse(pre, cut, &part);

    if (r > 0) {
        /* A valid header: incomplete until it is all there, then the same size. */
        WD_FUZZ_CHECK(cut < (size_t)r ? rp == WD_PARSE_AGAIN : rp == r);
    } else if (rp == WD_PARSE_ERROR) {
        /* An error seen early is the error of the whole. */
        WD_FUZZ_CHECK(r == WD_PARSE_ERROR && part.error == e);
    } else {
        WD_FUZZ_CHECK(rp == WD_PARSE_AGAIN);
    }
    if (rp > 0)
        check_header(pre, cut, rp, &part);
    free(pre);
}

/* Ranges: what parses is well formed, and a mapped peer matches an IPv4 range as the IPv4 peer
 * does. The peer is the input's first bytes. */
static void check_cidr(const uint8_t *data, size_t size)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    char s[64];
    wd_cidr_t c;
    size_t i;

    memcpy(s, data, size);
    s[size] = '\0';
    if (wd_cidr_parse(s, &c) != 0)
        return;
    WD_FUZZ_CHECK(c.family == AF_INET || c.family == AF_INET6 || c.family == AF_UNIX);
    WD_FUZZ_CHECK(c.prefix <= (c.family == AF_INET ? 32u : c.family == AF_INET6 ? 128u : 0u));
    for (i = c.prefix; i < 128; i++) /* host bits are clear */
        WD_FUZZ_CHECK((c.addr[i / 8] & (0x80 >> (i % 8))) == 0);

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    sin.sin_family = AF_INET;
    sin6.sin6_family = AF_INET6;
    memcpy(&sin.sin_addr, size >= 4 ? data : (const uint8_t *)"\0\0\0\0", 4);
    memcpy(sin6.sin6_addr.s6_addr + 10, "\xff\xff", 2);
    memcpy(sin6.sin6_addr.s6_addr + 12, &sin.sin_addr, 4);
    WD_FUZZ_CHECK(wd_cidr_match(&c, (struct sockaddr *)&sin) ==
                      wd_cidr_match(&c, (struct sockaddr *)&sin6) ||
                  c.family == AF_INET6);
    if (c.family == AF_INET && c.prefix == 0)
        WD_FUZZ_CHECK(wd_cidr_match(&c, (struct sockaddr *)&sin) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wd_proxy_header_t whole;
    char *buf;
    size_t cut;
    int r;

    if (size > WD_PROXY_V2_MAX + 64)
        return 0;

    buf = wd_fuzz_dup(data, size);
    r = wd_proxy_header_parse(buf, size, &whole);
    WD_FUZZ_CHECK(r == WD_PARSE_AGAIN || r == WD_PARSE_ERROR || r > 0);
    check_text(&whole.src);
    check_text(&whole.dst);
    if (r > 0) {
        check_header(buf, size, r, &whole);
    } else if (r == WD_PARSE_ERROR) {
        WD_FUZZ_CHECK(whole.error != WD_PROXY_OK);
    } else {
        /* Never waiting for more than the longest header. */
        WD_FUZZ_CHECK(size < WD_PROXY_V2_MAX);
        WD_FUZZ_CHECK(size == 0 || data[0] != 'P' || size < WD_PROXY_V1_MAX);
    }
    WD_FUZZ_CHECK(wd_proxy_header_strerror(whole.error) != NULL);

    /* The bytes cut short, as when they come in two reads; short inputs at every length. */
    cut = size ? (size * data[size - 1]) / 256 : 0;
    check_prefix(data, cut, r, whole.error);
    if (size <= 2 * WD_PROXY_V1_MAX)
        for (cut = 0; cut < size; cut++)
            check_prefix(data, cut, r, whole.error);

    if (size < 64)
        check_cidr(data, size);
    free(buf);
    return 0;
}
