/* Pieces of an HTTP response head that both the Python glue and the worker loop need: validation
 * of what an application hands to start_response, reason phrases, and the head writer. */
#ifndef WD_PROTOCOL_RESPONSE_H
#define WD_PROTOCOL_RESPONSE_H

#include "slice.h"

/* Standard reason phrase for a status code, or "Unknown". */
const char *wd_response_reason(int code);

/* A WSGI status line "200 OK": three digits 100-999, a space, then a reason of printable latin-1
 * characters (no control characters). Returns the code, or -1 when invalid. */
int wd_response_parse_status(const char *s, size_t n);

/* A header name is an RFC 9110 token. */
int wd_response_header_name_valid(const char *s, size_t n);
/* A header value has no control characters other than horizontal tab (so no CR, LF or NUL). */
int wd_response_header_value_valid(const char *s, size_t n);
/* Connection, Keep-Alive, Proxy-Authenticate, Proxy-Authorization, TE, Trailer(s),
 * Transfer-Encoding, Upgrade, compared case-insensitively: an application may not send these. */
int wd_response_header_is_hop_by_hop(const char *s, size_t n);

/* Case-insensitive equality of a slice with a NUL-terminated lower-case string. */
int wd_slice_ieq(const char *s, size_t n, const char *lower);

/* A whole canned response with a small text body, for errors the loop answers itself (400, 413,
 * 431, 500, 504...). Writes at most cap bytes into out; returns the length. For example
 * "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n
 * Connection: close\r\n\r\n413 Payload Too Large\n". Connection: close when !keep_alive;
 * Connection: keep-alive when keep_alive and http_minor == 0 (HTTP/1.0 client); nothing for
 * HTTP/1.1 keep-alive. Returns 0 (nothing usable in out) when cap is too small; 256 bytes is
 * always enough. */
size_t wd_response_canned(char *out, size_t cap, int code, int http_minor, int keep_alive);
/* The same with a Date line after the status line (wd_response_date_line; NULL: none): an
 * origin server's answer carries one (RFC 9110 6.6.1). 300 bytes are always enough. */
size_t wd_response_canned_dated(char *out, size_t cap, int code, int http_minor, int keep_alive,
                                const char *date_line);

/* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" (RFC 9110 5.6.7, IMF-fixdate) for t, seconds since
 * the epoch, into out (WD_DATE_LINE_MAX bytes), NUL-terminated; returns its length (37). */
#define WD_DATE_LINE_MAX 40
size_t wd_response_date_line(char *out, long long t);

/* How an application's response is framed (design §4), decided once, before the head goes out. */
typedef struct wd_framing_in {
    int status;       /* the app's status code */
    int head_request; /* the request was a HEAD */
    int has_cl;       /* the app set Content-Length */
    long long known;  /* the body's length when known before anything is sent (a one-item list),
                         else -1 */
    int http;         /* HTTP/1.x to the client (else uwsgi: raw HTTP, closed when done) */
    int http_minor;   /* the version the request is processed as (0 or 1) */
    int keep_alive;   /* the client asked to keep the connection */
    int failed;       /* the app failed before its head: the answer is a 500 that closes */
} wd_framing_in_t;

typedef struct wd_framing {
    int no_body;            /* 1xx, 204, 304 or HEAD: no body bytes go out */
    int add_cl;             /* write "Content-Length: known" (205: 0) */
    int chunked;            /* write Transfer-Encoding: chunked and frame the body */
    int keep_alive;         /* the connection stays open after the response */
    const char *connection; /* a Connection header line to add, or NULL */
} wd_framing_t;

/* Content-Length when known, chunked for an HTTP/1.1 body of unknown length, else the close ends
 * it (HTTP/1.0, uwsgi); keep-alive only when the client asked and the end is delimited. */
void wd_response_framing(const wd_framing_in_t *in, wd_framing_t *out);

#endif
