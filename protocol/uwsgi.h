/* The uwsgi binary protocol, as nginx's uwsgi_pass and Apache's mod_proxy_uwsgi send it.
 *
 * A packet is a 4-byte header, modifier1 (u8) | datasize (u16 LE) | modifier2 (u8), then datasize
 * bytes of vars, each a u16 LE key length, the key, a u16 LE value length, the value. The body
 * (CONTENT_LENGTH bytes) follows the vars block. */
#ifndef WD_PROTOCOL_UWSGI_H
#define WD_PROTOCOL_UWSGI_H

#include "slice.h"

#define WD_UWSGI_HEADER_SIZE 4
#define WD_UWSGI_MAX_PACKET (WD_UWSGI_HEADER_SIZE + 65535)

typedef enum wd_uwsgi_error {
    WD_UWSGI_OK = 0,
    WD_UWSGI_EMODIFIER,      /* modifier1 is not 0 (only 0 is a WSGI request) */
    WD_UWSGI_EHTTP,          /* the bytes look like a plain HTTP request line ("GET / ...") */
    WD_UWSGI_EFRAMING,       /* a key or value length runs past the end of the vars block */
    WD_UWSGI_EEMPTY_KEY,     /* a var with an empty key */
    WD_UWSGI_ECONTENT_LENGTH /* CONTENT_LENGTH is not a decimal number below 2^63 */
} wd_uwsgi_error_t;

typedef struct wd_uwsgi_req {
    uint8_t modifier1;
    uint8_t modifier2;
    uint16_t datasize;
    const char *vars;        /* the vars block: datasize bytes inside the caller's buffer */
    uint64_t content_length; /* CONTENT_LENGTH; absent or empty means 0 */
    wd_slice_t method;       /* REQUEST_METHOD, empty if absent */
    wd_slice_t uri;          /* REQUEST_URI, empty if absent */
    wd_slice_t protocol;     /* SERVER_PROTOCOL, empty if absent */
    wd_uwsgi_error_t error;  /* set when wd_uwsgi_parse returns WD_PARSE_ERROR */
} wd_uwsgi_req_t;

/* Parses the header and the whole vars block at buf. Returns the packet size (4 + datasize) when
 * all of it is there and valid, WD_PARSE_AGAIN when more bytes are needed, WD_PARSE_ERROR with
 * req->error set otherwise. Errors that the first bytes already show (EMODIFIER, EHTTP) are
 * returned as soon as those bytes are there. */
int wd_uwsgi_parse(const char *buf, size_t len, wd_uwsgi_req_t *req);

/* Walks the vars of a parsed packet. */
typedef struct wd_uwsgi_iter {
    const char *p;
    const char *end;
} wd_uwsgi_iter_t;

void wd_uwsgi_iter_init(wd_uwsgi_iter_t *it, const wd_uwsgi_req_t *req);
/* Returns 1 and fills key and val while there is a var, 0 at the end. */
int wd_uwsgi_iter_next(wd_uwsgi_iter_t *it, wd_slice_t *key, wd_slice_t *val);

const char *wd_uwsgi_strerror(wd_uwsgi_error_t e);

#endif
