/* HAProxy's PROXY protocol header (version 1, text, and version 2, binary), which a proxy sends
 * before anything else on a connection to say whose connection it forwards.
 *
 * Version 1 is one line of at most 107 bytes:
 *     "PROXY TCP4 192.0.2.1 198.51.100.2 51234 80\r\n"
 *     "PROXY TCP6 2001:db8::1 2001:db8::2 51234 443\r\n"
 *     "PROXY UNKNOWN[ anything]\r\n"
 * fields separated by single spaces, ports decimal 0..65535 without leading zeros.
 *
 * Version 2 is a 16-byte head: the 12-byte signature "\r\n\r\n\0\r\nQUIT\n", the version and
 * command (0x21 PROXY, 0x20 LOCAL), the family and transport (0x00 UNSPEC, 0x11/0x12 INET
 * STREAM/DGRAM, 0x21/0x22 INET6, 0x31/0x32 UNIX), and the length (u16 big endian) of what
 * follows: the addresses (12, 36 or 216 bytes: source and destination address, then source and
 * destination port, network order; a UNIX address is a 108-byte path), then TLVs (type u8,
 * length u16 big endian, value) up to the end of the header.
 *
 * The header is what comes first on the connection: the request follows it at once, in the same
 * reads. The parser decides from the first bytes: input that is neither "PROXY " nor the v2
 * signature is refused at its first differing byte, so that a worker that requires the header
 * (proxy-protocol: true) can close a connection without waiting for more. */
#ifndef WD_PROTOCOL_PROXY_HEADER_H
#define WD_PROTOCOL_PROXY_HEADER_H

#include "slice.h"

#include <sys/socket.h>

#define WD_PROXY_V1_MAX 107          /* the longest v1 line, CRLF included */
#define WD_PROXY_V2_HEAD_SIZE 16     /* signature, version/command, family, length */
#define WD_PROXY_V2_MAX (16 + 65535) /* the longest v2 header */
#define WD_PROXY_UNIX_PATH_MAX 108   /* a v2 UNIX address (sun_path) */
#define WD_PROXY_ADDR_MAX 109        /* address text: a 108-byte UNIX path + NUL */

/* v2 TLV types (the spec's PP2_TYPE_*). The SSL TLV's value is client (u8), verify (u32 BE),
 * then sub-TLVs of the PP2_SUBTYPE_SSL_* types, which wd_proxy_header_tlv_init can walk. */
#define WD_PROXY_TLV_ALPN 0x01
#define WD_PROXY_TLV_AUTHORITY 0x02
#define WD_PROXY_TLV_CRC32C 0x03
#define WD_PROXY_TLV_NOOP 0x04
#define WD_PROXY_TLV_UNIQUE_ID 0x05
#define WD_PROXY_TLV_SSL 0x20
#define WD_PROXY_TLV_SSL_VERSION 0x21
#define WD_PROXY_TLV_SSL_CN 0x22
#define WD_PROXY_TLV_SSL_CIPHER 0x23
#define WD_PROXY_TLV_SSL_SIG_ALG 0x24
#define WD_PROXY_TLV_SSL_KEY_ALG 0x25
#define WD_PROXY_TLV_NETNS 0x30
#define WD_PROXY_SSL_HEAD_SIZE 5 /* client + verify, before the SSL TLV's sub-TLVs */

typedef enum wd_proxy_error {
    WD_PROXY_OK = 0,
    WD_PROXY_ESIGNATURE,   /* the bytes are neither "PROXY " nor the v2 signature */
    WD_PROXY_EV1_TOO_LONG, /* v1: no CRLF within 107 bytes */
    WD_PROXY_EV1_PROTOCOL, /* v1: the protocol is not "TCP4 ", "TCP6 " or "UNKNOWN" */
    WD_PROXY_EV1_ADDRESS,  /* v1: an address that is not IPv4 (TCP4) or IPv6 (TCP6) text */
    WD_PROXY_EV1_PORT,     /* v1: a port that is not 0..65535 in decimal without leading zeros */
    WD_PROXY_EV1_LINE_END, /* v1: CR or LF where the line cannot end, or CR without LF */
    WD_PROXY_EV2_VERSION,  /* v2: the version is not 2 */
    WD_PROXY_EV2_COMMAND,  /* v2: the command is neither LOCAL nor PROXY */
    WD_PROXY_EV2_FAMILY,   /* v2: a family/transport byte the spec does not define */
    WD_PROXY_EV2_LENGTH,   /* v2 PROXY: the length is below the size of the family's addresses */
    WD_PROXY_EV2_TLV       /* v2 PROXY: a TLV runs past the end of the header */
} wd_proxy_error_t;

typedef enum wd_proxy_command {
    WD_PROXY_CMD_PROXY = 1, /* src and dst are the proxied connection's: use them */
    WD_PROXY_CMD_LOCAL,     /* v2 LOCAL (the proxy's own health check): use the real peer */
    WD_PROXY_CMD_UNKNOWN    /* v1 UNKNOWN, v2 PROXY with UNSPEC: use the real peer */
} wd_proxy_command_t;

/* One end of the proxied connection. */
typedef struct wd_proxy_addr {
    struct sockaddr_storage sa; /* AF_INET, AF_INET6 or AF_UNIX; AF_UNSPEC when not given */
    /* "192.0.2.1", "2001:db8::1" (inet_ntop's form); a UNIX path as sent, up to its first NUL
     * (an abstract one as "@name"), which may hold any other byte; "" when not given. */
    char text[WD_PROXY_ADDR_MAX];
    uint16_t port; /* host order; 0 for UNIX */
} wd_proxy_addr_t;

typedef struct wd_proxy_header {
    int version;                /* 1 or 2 */
    wd_proxy_command_t command; /* src and dst are filled only for WD_PROXY_CMD_PROXY */
    int family;                 /* AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX, as the header says */
    int socktype;               /* SOCK_STREAM, SOCK_DGRAM, or 0 (UNSPEC) */
    wd_proxy_addr_t src;        /* the client (REMOTE_ADDR, REMOTE_PORT) */
    wd_proxy_addr_t dst;        /* the address it connected to (SERVER_ADDR, SERVER_PORT) */
    /* v2 PROXY: the TLV block, inside the caller's buffer and ending where the header ends
     * (may be empty). v2 LOCAL: empty (the spec says to discard its block; it is not read). */
    wd_slice_t tlvs;
    wd_proxy_error_t error; /* set when wd_proxy_header_parse returns WD_PARSE_ERROR */
} wd_proxy_header_t;

/* Parses a PROXY header at the start of buf. Returns its size when all of it is there and valid
 * (the bytes after it, the request, are not looked at), WD_PARSE_AGAIN when buf is a valid
 * prefix, WD_PARSE_ERROR with h->error set otherwise. An error is returned as soon as the first
 * byte that cannot belong to a valid header is there (a v1 address: at the space after it; a
 * v2 TLV: at the byte that shows it runs past the header); a v1 prefix of 107 bytes without
 * CRLF is an error. A v2 LOCAL header is checked up to its family byte; the rest of it is
 * skipped. */
int wd_proxy_header_parse(const char *buf, size_t len, wd_proxy_header_t *h);

const char *wd_proxy_header_strerror(wd_proxy_error_t e);

/* Walks TLVs: the block of a parsed header (h->tlvs) or the sub-TLVs of an SSL TLV (its value
 * past WD_PROXY_SSL_HEAD_SIZE). */
typedef struct wd_proxy_tlv_iter {
    const char *p;
    const char *end;
} wd_proxy_tlv_iter_t;

typedef struct wd_proxy_tlv {
    uint8_t type;
    wd_slice_t value;
} wd_proxy_tlv_t;

void wd_proxy_header_tlv_init(wd_proxy_tlv_iter_t *it, wd_slice_t block);
/* Returns 1 and fills tlv while there is one, 0 at the end of the block or at a TLV that runs
 * past it (never the case in a block that wd_proxy_header_parse accepted). */
int wd_proxy_header_tlv_next(wd_proxy_tlv_iter_t *it, wd_proxy_tlv_t *tlv);

#endif
