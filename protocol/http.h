/* HTTP/1.1 request parsing on top of llhttp.
 *
 * The caller keeps the bytes of the current request head in one buffer, which may grow (move)
 * between calls; the parser records the request line and headers as spans (offsets) from
 * http->base, which the caller sets before every call. Body bytes are handed to on_body as they
 * are decoded (Content-Length or chunked framing), and are not kept.
 *
 * wd_http_feed stops after the head is complete (so that the caller can check limits and answer
 * Expect: 100-continue before any body byte is read) and after the message is complete (so that
 * pipelined requests are parsed one at a time). */
#ifndef WD_PROTOCOL_HTTP_H
#define WD_PROTOCOL_HTTP_H

#include "slice.h"
#include <llhttp.h>

#define WD_HTTP_MAX_HEADERS 100

typedef enum wd_http_error {
    WD_HTTP_OK = 0,
    WD_HTTP_EINVALID,  /* malformed request: 400 */
    WD_HTTP_ETOO_MANY, /* more than WD_HTTP_MAX_HEADERS header fields: 431 */
    WD_HTTP_EBODY_CB,  /* on_body returned non-zero: the caller's own error */
    WD_HTTP_EUPGRADE,  /* CONNECT or Upgrade request: not supported, 501 */
    WD_HTTP_ECODING,   /* a transfer coding other than chunked: 501 */
    WD_HTTP_EVERSION,  /* an HTTP major version other than 1: 505 */
} wd_http_error_t;

typedef struct wd_http_header {
    wd_span_t name;
    wd_span_t value;
} wd_http_header_t;

typedef int (*wd_http_body_cb)(void *data, const char *at, size_t n);

typedef enum wd_http_state {
    WD_HTTP_HEAD = 0, /* reading the head */
    WD_HTTP_BODY,     /* head complete, reading the body */
    WD_HTTP_DONE,     /* message complete; wd_http_reset before the next one */
} wd_http_state_t;

typedef struct wd_http {
    llhttp_t parser;
    llhttp_settings_t settings;
    const char *base; /* set by the caller before each wd_http_feed */
    wd_http_state_t state;
    wd_http_error_t error;
    const char *llhttp_reason; /* llhttp's reason for WD_HTTP_EINVALID */

    /* The head, valid from WD_HTTP_BODY on (the method: wd_http_method). */
    const char *method;    /* "GET", ...: a static string, or NULL for an extension method */
    wd_span_t method_span; /* an extension method (one llhttp does not know) */
    wd_span_t url;
    unsigned http_major, http_minor; /* the version the request is processed as (1.0 or 1.1) */
    unsigned request_minor;          /* the minor version it was sent with (1.2 is 1.1's peer) */
    wd_http_header_t headers[WD_HTTP_MAX_HEADERS];
    unsigned n_headers;
    int has_content_length;
    uint64_t content_length; /* when has_content_length */
    int chunked;             /* Transfer-Encoding: chunked */
    int keep_alive;          /* per llhttp_should_keep_alive() */
    int expect_continue;     /* Expect: 100-continue */
    int is_head;             /* HEAD request */

    wd_http_body_cb on_body;
    void *data;

    /* Internal: which part of a header the last callback filled. */
    int last_was_value;
    int started;          /* the first bytes of this message were fed */
    uint32_t head_off;    /* where this message starts in the buffer, from base */
    int line_pending;     /* llhttp refused the request line; it is not complete yet */
    int ext_method;       /* the method is one llhttp does not know: it parsed a stand-in */
    int size_line;        /* chunked: reading a chunk-size line, where BWS is dropped */
    int last_chunk;       /* chunked: the size line of the last chunk (0) was read */
    unsigned held_ws;     /* chunked: whitespace of the size line not yet given to llhttp */
    unsigned size_len;    /* chunked: bytes of the size line so far */
    char size_last;       /* chunked: the last byte of the size line, whitespace aside */
    char ext_state;       /* chunked: where in a chunk extension the size line is */
    size_t trailers_len;  /* chunked: bytes after the last chunk's size line */
    char trailers_end[2]; /* chunked: the last two of them */
    int trailer_named;    /* chunked: the trailer field being read has a name so far */
} wd_http_t;

void wd_http_init(wd_http_t *http, wd_http_body_cb on_body, void *data);

/* Prepares for the next request on the same connection (after WD_HTTP_DONE). */
void wd_http_reset(wd_http_t *http);

/* Feeds n bytes at `at`, which lies inside the buffer starting at http->base while the head or a
 * chunked body is read; the body of a Content-Length message (state WD_HTTP_BODY, not chunked) may
 * come from anywhere, its bytes going to on_body as they are. Returns the number of bytes
 * consumed, which is less than n when the head or the message completed (see http->state), or
 * WD_PARSE_ERROR with http->error set. */
int wd_http_feed(wd_http_t *http, const char *at, size_t n);

/* What wd_http_feed returns, exactly (tests/unit/test_http.c checks each of these):
 *
 * - state WD_HTTP_HEAD (head not complete): all n bytes are consumed, returns n. The caller keeps
 *   them in its buffer (the spans point at them) and feeds the next bytes, appended right after.
 * - The head completes and a body follows (Transfer-Encoding: chunked, or Content-Length > 0):
 *   returns the number of bytes up to and including the blank line (CR LF CR LF), with state ==
 *   WD_HTTP_BODY. No body byte has been read: check limits, answer Expect: 100-continue, then
 *   feed the remaining bytes again.
 * - The head completes and there is no body (no Content-Length nor Transfer-Encoding, or
 *   Content-Length: 0): returns the number of bytes up to and including the blank line, with state
 *   == WD_HTTP_DONE directly (there is no WD_HTTP_BODY step). So "the head is complete" is
 *   "state left WD_HTTP_HEAD during this call", whether it is now BODY or DONE.
 * - state WD_HTTP_BODY: body bytes go to on_body as they are decoded; returns n, or, when the
 *   message completes, the number of bytes up to its end with state == WD_HTTP_DONE. Once the
 *   head is complete, the caller may drop or overwrite consumed body bytes (only the head must
 *   stay at base); chunked trailers are checked but not kept.
 * - state WD_HTTP_DONE: returns 0 and consumes nothing until wd_http_reset. Bytes after the
 *   message (a pipelined request) are the caller's: after wd_http_reset, feed them again.
 * - n == 0 returns 0 in every state. An error sticks: later calls return WD_PARSE_ERROR.
 *
 * http->llhttp_reason is set for every error (llhttp's reason, or ours). Beyond what llhttp 8.1
 * rejects in strict mode, these are errors (WD_HTTP_EINVALID, RFC 9110 and 9112): a version
 * other than HTTP/1.0 or 1.1 (WD_HTTP_EVERSION, 505, for a later major version), whitespace in
 * a header name, obsolete line folding, a head that
 * does not end in CR LF CR LF, an HTTP/1.1 request without Host, a Host value that is not a
 * host[:port], a field that must appear once (Host, Content-Type, Authorization...) given twice,
 * Transfer-Encoding in an HTTP/1.0 request, and a target that is neither origin-form ("/..."),
 * absolute-form ("scheme://authority...") nor "*" for OPTIONS. A transfer coding other than
 * chunked (gzip, chunked) is WD_HTTP_ECODING (501).
 *
 * Beyond what llhttp 8.1 accepts, these are requests (RFC 9110 and 9112 say a recipient must or
 * should accept them): a method that is any token (9110 9.1: QUERY, FOO, -BLARGH; llhttp knows a
 * fixed list), a later minor version of HTTP/1 (9110 2.5: HTTP/1.2 is processed as 1.1, and
 * request_minor keeps the 2), and whitespace around ";" and "=" in chunk extensions (9112 7.1.1:
 * BWS). The wd_http_t must not move after wd_http_init (llhttp keeps a pointer to
 * http->settings). */

/* The request method, e.g. "GET" or an extension method "QUERY" (valid from WD_HTTP_BODY on). */
wd_slice_t wd_http_method(const wd_http_t *http);

/* Convenience: the span as a slice of http->base. */
static inline wd_slice_t wd_http_slice(const wd_http_t *http, wd_span_t s)
{
    wd_slice_t r = {http->base + s.off, s.len};
    return r;
}

#endif
