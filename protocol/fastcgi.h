/* FastCGI 1.0, the responder role, as nginx's fastcgi_pass, Apache's mod_proxy_fcgi, HAProxy's
 * fcgi-app and Caddy send it: the record parser, the name-value pairs of PARAMS and GET_VALUES,
 * and the few records a responder writes besides its STDOUT.
 *
 * A record is an 8-byte header, version (1) | type | requestId (u16 BE) | contentLength (u16 BE)
 * | paddingLength | reserved, then contentLength bytes of content and paddingLength bytes of
 * padding. A request is BEGIN_REQUEST (role u16 BE | flags | 5 reserved), PARAMS records whose
 * contents, concatenated, are name-value pairs (each length one byte below 128, or four bytes BE
 * with the high bit set), an empty PARAMS record, STDIN records with the body, an empty STDIN
 * record. The responder answers with STDOUT records (raw CGI response: headers, blank line,
 * body), an empty STDOUT, and END_REQUEST (appStatus u32 BE | protocolStatus | 3 reserved).
 * Management records (requestId 0) are GET_VALUES, answered with GET_VALUES_RESULT, and any type
 * this parser does not know, answered with UNKNOWN_TYPE.
 *
 * What the parser refuses (WD_PARSE_ERROR: close the connection, answer nothing) and what it
 * accepts:
 *   - version other than 1                                              EVERSION
 *   - a type only an application sends: END_REQUEST, STDOUT, STDERR,
 *     GET_VALUES_RESULT, UNKNOWN_TYPE (whatever its request id)         EDIRECTION
 *   - BEGIN_REQUEST, ABORT_REQUEST, PARAMS, STDIN or DATA with request
 *     id 0, or GET_VALUES with a request id other than 0                EREQUEST_ID
 *   - a type FastCGI 1.0 does not define (0, 12-255) with a request id
 *     other than 0: the spec has no answer for an unknown request
 *     record, and skipping it could drop data the peer thinks sent      ETYPE
 *   - BEGIN_REQUEST whose content is not 8 bytes, ABORT_REQUEST with
 *     content                                                           ELENGTH
 *   - GET_VALUES whose content is not well-framed name-value pairs      EFRAMING
 *   - a type FastCGI 1.0 does not define with request id 0 is a valid
 *     record with rec->unknown set: answer it with wd_fcgi_unknown_type (spec §4.2)
 *   - any role is accepted here: the caller answers a role other than RESPONDER with
 *     END_REQUEST(UNKNOWN_ROLE), and a second BEGIN_REQUEST while one is in progress with
 *     END_REQUEST(CANT_MPX_CONN); which record may follow which is the caller's state
 *   - any padding 0-255 (the spec recommends, never requires, 8-byte alignment); the reserved
 *     bytes are ignored.
 * Each error is returned as soon as the bytes that show it are there (version at 1 byte, type at
 * 2, request id at 4, content length at 6, GET_VALUES framing when its content is complete).
 *
 * PARAMS content may be cut between records at any byte, even inside a length: the caller
 * concatenates the contents of a request's PARAMS records into one block and checks it whole
 * with wd_fcgi_params_parse once the empty PARAMS record came. */
#ifndef WD_PROTOCOL_FASTCGI_H
#define WD_PROTOCOL_FASTCGI_H

#include "slice.h"

#define WD_FCGI_VERSION_1 1
#define WD_FCGI_HEADER_SIZE 8
#define WD_FCGI_MAX_CONTENT 65535 /* contentLength is a u16 */
#define WD_FCGI_MAX_PADDING 255   /* paddingLength is a u8 */
#define WD_FCGI_MAX_RECORD (WD_FCGI_HEADER_SIZE + WD_FCGI_MAX_CONTENT + WD_FCGI_MAX_PADDING)
#define WD_FCGI_BEGIN_BODY_SIZE 8 /* BEGIN_REQUEST and END_REQUEST bodies, UNKNOWN_TYPE's too */
#define WD_FCGI_NULL_REQUEST_ID 0 /* management records */
/* A name or value length in four bytes: high bit set, so at most 2^31 - 1. */
#define WD_FCGI_MAX_NV_LENGTH 0x7fffffffu
/* The largest GET_VALUES_RESULT record wd_fcgi_get_values_result writes: the three names with
 * ten-digit values, padded to a multiple of 8. */
#define WD_FCGI_GET_VALUES_RESULT_MAX 80

/* Record types. */
enum {
    WD_FCGI_BEGIN_REQUEST = 1,
    WD_FCGI_ABORT_REQUEST = 2,
    WD_FCGI_END_REQUEST = 3,
    WD_FCGI_PARAMS = 4,
    WD_FCGI_STDIN = 5,
    WD_FCGI_STDOUT = 6,
    WD_FCGI_STDERR = 7,
    WD_FCGI_DATA = 8,
    WD_FCGI_GET_VALUES = 9,
    WD_FCGI_GET_VALUES_RESULT = 10,
    WD_FCGI_UNKNOWN_TYPE = 11
};

/* BEGIN_REQUEST roles and flags. */
enum { WD_FCGI_RESPONDER = 1, WD_FCGI_AUTHORIZER = 2, WD_FCGI_FILTER = 3 };
#define WD_FCGI_KEEP_CONN 1

/* END_REQUEST protocolStatus. */
enum {
    WD_FCGI_REQUEST_COMPLETE = 0,
    WD_FCGI_CANT_MPX_CONN = 1,
    WD_FCGI_OVERLOADED = 2,
    WD_FCGI_UNKNOWN_ROLE = 3
};

typedef enum wd_fcgi_error {
    WD_FCGI_OK = 0,
    WD_FCGI_EVERSION,       /* the version byte is not 1 */
    WD_FCGI_EDIRECTION,     /* a record type only an application sends */
    WD_FCGI_EREQUEST_ID,    /* a request's record with id 0, or GET_VALUES with an id */
    WD_FCGI_ETYPE,          /* a record type FastCGI 1.0 does not define, with a request id */
    WD_FCGI_ELENGTH,        /* BEGIN_REQUEST content not 8 bytes, or ABORT_REQUEST content */
    WD_FCGI_EFRAMING,       /* a name or value length runs past the end of its block */
    WD_FCGI_EEMPTY_NAME,    /* a PARAMS pair with an empty name */
    WD_FCGI_ECONTENT_LENGTH /* CONTENT_LENGTH is not a decimal number below 2^63 */
} wd_fcgi_error_t;

typedef struct wd_fcgi_record {
    uint8_t type;          /* WD_FCGI_BEGIN_REQUEST... (or an unknown type when unknown is set) */
    uint16_t request_id;   /* 0 for management records */
    uint8_t padding;       /* paddingLength */
    wd_slice_t content;    /* contentLength bytes inside the caller's buffer (n may be 0) */
    uint16_t role;         /* BEGIN_REQUEST: the role (any value; see above), else 0 */
    uint8_t flags;         /* BEGIN_REQUEST: the flags byte, else 0 */
    uint8_t keep_conn;     /* BEGIN_REQUEST: flags & WD_FCGI_KEEP_CONN */
    uint8_t unknown;       /* a management record of an unknown type: answer wd_fcgi_unknown_type */
    wd_fcgi_error_t error; /* set when wd_fcgi_record returns WD_PARSE_ERROR */
} wd_fcgi_record_t;

/* Parses one record at buf. Returns its size (8 + contentLength + paddingLength, at most
 * WD_FCGI_MAX_RECORD) when the whole record is there and valid, WD_PARSE_AGAIN when more bytes
 * are needed, WD_PARSE_ERROR with rec->error set otherwise (as soon as the bytes that show the
 * error are there). An empty PARAMS or STDIN record (content.n == 0) ends that stream. */
int wd_fcgi_record(const char *buf, size_t len, wd_fcgi_record_t *rec);

/* The header of a STDIN record, for a caller that takes a body's bytes as they come instead of
 * waiting for whole records (a 32 KiB record in the socket is read straight into the body). When
 * buf starts with a STDIN header that wd_fcgi_record would accept, fills rec's type, request_id,
 * padding and content (content.p = buf + 8, content.n = contentLength: the content may run past
 * len) and returns WD_FCGI_HEADER_SIZE. WD_PARSE_AGAIN while fewer than 8 bytes are there (and
 * they show no error), 0 for a valid header of another type (parse that record whole with
 * wd_fcgi_record), WD_PARSE_ERROR with rec->error set as wd_fcgi_record would. */
int wd_fcgi_stdin_header(const char *buf, size_t len, wd_fcgi_record_t *rec);

/* Walks name-value pairs: a GET_VALUES record's content, or a request's PARAMS contents put
 * together. Never reads outside [p, p + n). */
typedef struct wd_fcgi_nv_iter {
    const char *p;
    const char *end;
    wd_fcgi_error_t error; /* WD_FCGI_EFRAMING once a length ran past the end */
} wd_fcgi_nv_iter_t;

void wd_fcgi_nv_iter_init(wd_fcgi_nv_iter_t *it, const char *p, size_t n);
/* Returns 1 and fills name and val while there is a pair; 0 at the end of the block, or at a
 * pair whose lengths run past it (then it->error is WD_FCGI_EFRAMING, and it stays 0). */
int wd_fcgi_nv_iter_next(wd_fcgi_nv_iter_t *it, wd_slice_t *name, wd_slice_t *val);

/* A request's PARAMS, checked, with the few the loop needs itself (as wd_uwsgi_req_t). */
typedef struct wd_fcgi_req {
    const char *params; /* the PARAMS block: params_len bytes in the caller's buffer */
    size_t params_len;
    uint64_t content_length; /* CONTENT_LENGTH; absent, empty or -1 (unknown) means 0 */
    int length_known;        /* CONTENT_LENGTH gave a length ("0" included): STDIN must match */
    wd_slice_t method;       /* REQUEST_METHOD, empty if absent */
    wd_slice_t uri;          /* REQUEST_URI, empty if absent */
    wd_slice_t protocol;     /* SERVER_PROTOCOL, empty if absent */
    wd_fcgi_error_t error;   /* the result of wd_fcgi_params_parse */
} wd_fcgi_req_t;

/* Checks a whole PARAMS block (the contents of a request's PARAMS records, concatenated) and
 * fills req. Returns WD_FCGI_OK, or EFRAMING, EEMPTY_NAME, ECONTENT_LENGTH (also in req->error).
 * Absent params are empty slices that still point inside [p, p + n] (p itself when n is 0). Of a
 * repeated REQUEST_METHOD, REQUEST_URI or SERVER_PROTOCOL the first counts; a repeated
 * CONTENT_LENGTH is an error. */
wd_fcgi_error_t wd_fcgi_params_parse(const char *p, size_t n, wd_fcgi_req_t *req);
/* The same check without the extraction: 0 (WD_FCGI_OK) or the error code. */
int wd_fcgi_params_check(const char *p, size_t n);

/* Writers, into the caller's buffer: each returns the number of bytes it wrote. */

/* A record header. */
size_t wd_fcgi_header(char out[WD_FCGI_HEADER_SIZE], int type, uint16_t id, uint16_t content_len,
                      uint8_t padding);
/* The padding that brings content_len to a multiple of 8 (the spec's recommendation). */
uint8_t wd_fcgi_padding(size_t content_len);
/* END_REQUEST for request id: 16 bytes. */
size_t wd_fcgi_end_request(char out[16], uint16_t id, uint32_t app_status, int protocol_status);
/* UNKNOWN_TYPE answering a management record of the given type: 16 bytes. */
size_t wd_fcgi_unknown_type(char out[16], int type);

/* What a responder says about itself to GET_VALUES; FCGI_MPXS_CONNS is always 0 (one request at
 * a time on a connection). */
typedef struct wd_fcgi_values {
    uint32_t max_conns; /* FCGI_MAX_CONNS */
    uint32_t max_reqs;  /* FCGI_MAX_REQS */
} wd_fcgi_values_t;

/* GET_VALUES_RESULT answering the names in query (a GET_VALUES record's content, as
 * wd_fcgi_record accepted it): FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS, each at most
 * once, in the order asked; other names are left out (spec §4.1). The content is padded to a
 * multiple of 8. Returns the record's size, at most WD_FCGI_GET_VALUES_RESULT_MAX. */
size_t wd_fcgi_get_values_result(char out[WD_FCGI_GET_VALUES_RESULT_MAX], const char *query,
                                 size_t query_len, const wd_fcgi_values_t *values);

/* The end of a response on request id: an empty STDOUT record (the stream's end) and
 * END_REQUEST with app_status 0 and protocol_status (24 bytes). */
#define WD_FCGI_END_SIZE (WD_FCGI_HEADER_SIZE + WD_FCGI_HEADER_SIZE + WD_FCGI_BEGIN_BODY_SIZE)
size_t wd_fcgi_end(char out[WD_FCGI_END_SIZE], uint16_t id, int protocol_status);

/* A whole response the server makes itself (an error page): one STDOUT record with a CGI head
 * ("Status: 413 Payload Too Large", text/plain, Content-Length) and the text "413 Payload Too
 * Large\n", then the end (wd_fcgi_end) with protocol_status. Returns its size, or 0 if cap is
 * too small. */
size_t wd_fcgi_canned(char *out, size_t cap, uint16_t id, int status, int protocol_status);

const char *wd_fcgi_strerror(wd_fcgi_error_t e);

#endif
