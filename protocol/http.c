/* HTTP/1.1 request parsing on top of llhttp, kept strict (no lenient flags), so that the request
 * smuggling shapes (Content-Length with Transfer-Encoding, two Content-Lengths, bad chunk sizes,
 * bare CR or LF, control characters) are errors.
 *
 * llhttp hands out the url and the header pieces as pointers into the bytes of the current
 * llhttp_execute call; they are recorded as offsets from http->base, and a piece that continues
 * the previous one (the caller appends new bytes right after the old ones) extends its span. */
#include "http.h"
#include "url.h"

#include <limits.h>
#include <string.h>

static wd_http_t *from_parser(llhttp_t *p)
{
    return p->data;
}

/* Extends span s with the piece [at, at + n), which follows it in the caller's buffer. */
static void span_add(wd_http_t *http, wd_span_t *s, const char *at, size_t n)
{
    uint32_t off = (uint32_t)(at - http->base);

    if (s->len == 0)
        s->off = off;
    s->len = off + (uint32_t)n - s->off;
}

/* Makes llhttp stop with an error of ours. */
static int fail(wd_http_t *http, wd_http_error_t e, const char *reason)
{
    /* llhttp replaces the reason for errors from the non-data callbacks: keep ours here. */
    http->error = e;
    http->llhttp_reason = reason;
    llhttp_set_error_reason(&http->parser, reason);
    return HPE_USER;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    wd_http_t *http = from_parser(p);

    span_add(http, &http->url, at, n);
    return 0;
}

/* A trailer field is not kept, but it is read by a header field's rules (below), a piece at a
 * time: a proxy that reads a nameless field another way may end the section elsewhere. A fold,
 * which llhttp gives as two pieces of value without the CR LF between them, is found in the
 * bytes (trailers_took). */
static int trailer_name(wd_http_t *http, const char *at, size_t n)
{
    if (memchr(at, ' ', n) != NULL || memchr(at, '\t', n) != NULL)
        return fail(http, WD_HTTP_EINVALID, "Whitespace in trailer field name");
    http->trailer_named |= n > 0;
    return 0;
}

static int trailer_name_complete(wd_http_t *http)
{
    if (!http->trailer_named)
        return fail(http, WD_HTTP_EINVALID, "Empty trailer field name");
    http->trailer_named = 0;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    wd_http_t *http = from_parser(p);
    wd_http_header_t *h;

    if (http->state != WD_HTTP_HEAD)
        return trailer_name(http, at, n);

    /* A new field starts after a complete one; otherwise this piece continues the name. */
    if (http->n_headers == 0 || http->last_was_value) {
        if (http->n_headers == WD_HTTP_MAX_HEADERS)
            return fail(http, WD_HTTP_ETOO_MANY, "Too many header fields");
        h = &http->headers[http->n_headers++];
        memset(h, 0, sizeof(*h));
        http->last_was_value = 0;
    }
    h = &http->headers[http->n_headers - 1];
    span_add(http, &h->name, at, n);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    wd_http_t *http = from_parser(p);
    wd_http_header_t *h;

    if (http->state != WD_HTTP_HEAD)
        return trailer_name_complete(http);
    /* llhttp accepts an empty name (": v"), with no or an empty on_header_field before it. */
    if (http->n_headers == 0 || http->last_was_value ||
        http->headers[http->n_headers - 1].name.len == 0)
        return fail(http, WD_HTTP_EINVALID, "Empty header field name");

    /* llhttp lets some names end in whitespace ("Host : x"); RFC 9112 5.1 says reject, since
     * proxies disagree on what such a field means. */
    h = &http->headers[http->n_headers - 1];
    if (memchr(http->base + h->name.off, ' ', h->name.len) != NULL ||
        memchr(http->base + h->name.off, '\t', h->name.len) != NULL)
        return fail(http, WD_HTTP_EINVALID, "Whitespace in header field name");

    /* An empty value is an empty span right after the name, never garbage. */
    h->value.off = h->name.off + h->name.len;
    h->value.len = 0;
    http->last_was_value = 1;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    wd_http_t *http = from_parser(p);

    if (http->state != WD_HTTP_HEAD || http->n_headers == 0)
        return 0; /* a trailer: not kept */
    span_add(http, &http->headers[http->n_headers - 1].value, at, n);
    return 0;
}

static int ieq(const char *s, size_t n, const char *lower)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (lower[i] == '\0' || c != lower[i])
            return 0;
    }
    return lower[i] == '\0';
}

static int on_header_value_complete(llhttp_t *p)
{
    wd_http_t *http = from_parser(p);
    wd_http_header_t *h;
    const char *v;

    if (http->state != WD_HTTP_HEAD || http->n_headers == 0)
        return 0; /* a trailer: not kept */

    h = &http->headers[http->n_headers - 1];
    v = http->base + h->value.off;

    /* llhttp skips the whitespace before a value but keeps the whitespace after it. */
    while (h->value.len > 0 && (v[h->value.len - 1] == ' ' || v[h->value.len - 1] == '\t'))
        h->value.len--;

    /* llhttp accepts obsolete line folding and leaves the CR LF inside the value; RFC 9112 5.2
     * lets a server reject it, and a CR or LF must never reach the environ. */
    if (memchr(v, '\r', h->value.len) != NULL || memchr(v, '\n', h->value.len) != NULL)
        return fail(http, WD_HTTP_EINVALID, "Obsolete line folding in header value");

    if (ieq(http->base + h->name.off, h->name.len, "expect") &&
        ieq(v, h->value.len, "100-continue"))
        http->expect_continue = 1;
    return 0;
}

/* Fields a request may carry once (RFC 9110 5.3: not list-based): two of them mean two
 * different requests to whoever reads one or the other (two Hosts: RFC 9112 3.2 says 400). */
static const char *const singletons[] = {
    "host",  "content-type", "content-length",    "authorization",       "proxy-authorization",
    "range", "if-range",     "if-modified-since", "if-unmodified-since",
};

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 9112 3.2: origin-form, absolute-form (with a valid authority), or "*" (OPTIONS only);
 * authority-form is CONNECT's, refused before this. */
static const char *target_error(const char *t, size_t n, int options)
{
    wd_slice_t auth;

    if (n > 0 && t[0] == '/')
        return NULL;
    if (n == 1 && t[0] == '*')
        return options ? NULL : "Asterisk-form target with a method other than OPTIONS";
    if (!wd_url_authority(t, n, &auth) || auth.n == 0 || !wd_url_host_valid(auth.p, auth.n))
        return "Invalid request target";
    return NULL;
}

/* A Transfer-Encoding value: chunked once and last, or the body's length is unknown (RFC 9112
 * 6.3 and 6.1: -1, a 400); before it, codings we do not decode, which must not reach the app as
 * if they were the body (1, a 501); 0 for "chunked" alone. */
static int codings(const char *v, size_t n)
{
    int others = 0;

    for (size_t i = 0; i < n;) {
        size_t start, end;

        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        start = i;
        while (i < n && v[i] != ',')
            i++;
        end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end == start)
            continue;
        if (ieq(v + start, end - start, "chunked")) {
            for (; i < n; i++)
                if (v[i] != ' ' && v[i] != '\t' && v[i] != ',')
                    return -1; /* chunked, then more */
            return others;
        }
        others = 1;
    }
    return -1; /* no chunked */
}

/* Checks of the whole head that llhttp does not make (see http.h); 0 or fail()'s value. */
static int head_checks(wd_http_t *http, const llhttp_t *p)
{
    unsigned counts[sizeof singletons / sizeof singletons[0]] = {0};
    const char *why;

    for (unsigned i = 0; i < http->n_headers; i++) {
        const wd_http_header_t *h = &http->headers[i];
        const char *name = http->base + h->name.off;

        for (size_t k = 0; k < sizeof singletons / sizeof singletons[0]; k++) {
            if (ieq(name, h->name.len, singletons[k]) && ++counts[k] > 1)
                return fail(http, WD_HTTP_EINVALID,
                            k == 0 ? "Multiple Host header fields"
                                   : "A header field that must appear once appears twice");
        }
        if (ieq(name, h->name.len, "host") &&
            !wd_url_host_valid(http->base + h->value.off, h->value.len))
            return fail(http, WD_HTTP_EINVALID, "Invalid Host header field");
        if (ieq(name, h->name.len, "transfer-encoding")) {
            const char *v = http->base + h->value.off;

            if (p->http_minor == 0)
                return fail(http, WD_HTTP_EINVALID, "Transfer-Encoding in an HTTP/1.0 request");
            int r = codings(v, h->value.len);

            if (r < 0)
                return fail(http, WD_HTTP_EINVALID, "Transfer-Encoding without chunked once, last");
            if (r > 0)
                return fail(http, WD_HTTP_ECODING, "Transfer coding not implemented");
        }
    }
    if (p->http_minor >= 1 && counts[0] == 0)
        return fail(http, WD_HTTP_EINVALID, "Missing Host header field");
    why = target_error(http->base + http->url.off, http->url.len,
                       p->method == HTTP_OPTIONS && !http->ext_method);
    if (why != NULL)
        return fail(http, WD_HTTP_EINVALID, why);
    return 0;
}

/* The message has a body when it is chunked or has a non-zero Content-Length (a request
 * without either has none, RFC 9112 6.3). */
static int has_body(const llhttp_t *p)
{
    return (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
}

static int on_headers_complete(llhttp_t *p)
{
    wd_http_t *http = from_parser(p);

    if (p->upgrade || p->method == HTTP_CONNECT)
        return fail(http, WD_HTTP_EUPGRADE, "CONNECT and Upgrade are not supported");

    /* RFC 9110 6.2: a later major version is not ours (505); 0.9 has no head at all. */
    if (p->http_major > 1)
        return fail(http, WD_HTTP_EVERSION, "HTTP version not supported");
    if (p->http_major != 1)
        return fail(http, WD_HTTP_EINVALID, "Unsupported HTTP version");
    if (head_checks(http, p) != 0)
        return HPE_USER;

    http->method = http->ext_method ? NULL : llhttp_method_name((llhttp_method_t)p->method);
    http->http_major = p->http_major;
    http->http_minor = p->http_minor;
    /* A line parsed again (reparse_line) keeps the later minor version it was sent with. */
    if (http->request_minor < p->http_minor)
        http->request_minor = p->http_minor;
    http->has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
    http->content_length = http->has_content_length ? p->content_length : 0;
    http->chunked = (p->flags & F_CHUNKED) != 0;
    http->keep_alive = llhttp_should_keep_alive(p);
    http->is_head = p->method == HTTP_HEAD;

    /* Stop here when a body follows, so that the caller checks the limits and answers
     * Expect before reading it. Without a body, go on: on_message_complete stops instead. */
    if (has_body(p)) {
        http->state = WD_HTTP_BODY;
        http->size_line = http->chunked;
        return HPE_PAUSED;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    wd_http_t *http = from_parser(p);

    if (http->on_body != NULL && http->on_body(http->data, at, n) != 0)
        return fail(http, WD_HTTP_EBODY_CB, "Body callback failed");
    return 0;
}

/* Chunked bodies: a chunk-size line ends here (after its CR LF), and the next one starts after
 * the chunk's data, where llhttp pauses so that wd_http_feed drops BWS in that line. */
static int on_chunk_header(llhttp_t *p)
{
    wd_http_t *http = from_parser(p);

    http->size_line = 0;
    http->last_chunk = p->content_length == 0;
    return 0;
}

static int on_chunk_complete(llhttp_t *p)
{
    wd_http_t *http = from_parser(p);

    if (http->last_chunk)
        return 0; /* the trailers are read: on_message_complete follows */
    http->size_line = 1;
    http->held_ws = 0;
    http->size_len = 0;
    http->size_last = 0;
    http->ext_state = 0;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
    wd_http_t *http = from_parser(p);

    http->state = WD_HTTP_DONE;
    return HPE_PAUSED;
}

static void clear_request(wd_http_t *http)
{
    http->state = WD_HTTP_HEAD;
    http->error = WD_HTTP_OK;
    http->llhttp_reason = NULL;
    http->method = NULL;
    memset(&http->url, 0, sizeof(http->url));
    http->http_major = 0;
    http->http_minor = 0;
    http->n_headers = 0;
    http->has_content_length = 0;
    http->content_length = 0;
    http->chunked = 0;
    http->keep_alive = 0;
    http->expect_continue = 0;
    http->is_head = 0;
    http->last_was_value = 0;
    http->started = 0;
    http->head_off = 0;
    http->line_pending = 0;
    http->ext_method = 0;
    memset(&http->method_span, 0, sizeof(http->method_span));
    http->request_minor = 0;
    http->size_line = 0;
    http->last_chunk = 0;
    http->held_ws = 0;
    http->size_len = 0;
    http->size_last = 0;
    http->ext_state = 0;
    http->trailers_len = 0;
    http->trailers_end[0] = http->trailers_end[1] = 0;
    http->trailer_named = 0;
}

void wd_http_init(wd_http_t *http, wd_http_body_cb on_body_cb, void *data)
{
    memset(http, 0, sizeof(*http));
    llhttp_settings_init(&http->settings);
    http->settings.on_url = on_url;
    http->settings.on_header_field = on_header_field;
    http->settings.on_header_field_complete = on_header_field_complete;
    http->settings.on_header_value = on_header_value;
    http->settings.on_header_value_complete = on_header_value_complete;
    http->settings.on_headers_complete = on_headers_complete;
    http->settings.on_body = on_body;
    http->settings.on_chunk_header = on_chunk_header;
    http->settings.on_chunk_complete = on_chunk_complete;
    http->settings.on_message_complete = on_message_complete;
    llhttp_init(&http->parser, HTTP_REQUEST, &http->settings);
    http->parser.data = http;
    http->on_body = on_body_cb;
    http->data = data;
    clear_request(http);
}

void wd_http_reset(wd_http_t *http)
{
    /* llhttp_reset keeps the settings, the data pointer and the (absent) lenient flags, and
     * also leaves the "connection closed" state llhttp enters after a non-keep-alive message:
     * whether to read another request is the caller's decision. */
    llhttp_reset(&http->parser);
    clear_request(http);
}

/* The head is in the caller's buffer from http->base up to end. llhttp 8.1 takes a bare CR for
 * the CR LF of the blank line ("\r\n\r\r"); a head must end in CR LF CR LF, and since the
 * whole head stays in the buffer this is checked here, once, where it ends. */
static int head_ends_well(const wd_http_t *http, const char *end)
{
    return end - http->base >= 4 && memcmp(end - 4, "\r\n\r\n", 4) == 0;
}

wd_slice_t wd_http_method(const wd_http_t *http)
{
    wd_slice_t m;

    if (http->method != NULL) {
        m.p = http->method;
        m.n = strlen(http->method);
    } else {
        m = wd_http_slice(http, http->method_span);
    }
    return m;
}

/* A request line as RFC 9112 3 has it, where llhttp refused it: method token SP target SP
 * "HTTP/" DIGIT "." DIGIT CR LF, after the empty lines llhttp skips too. */
typedef struct line {
    wd_span_t method;
    size_t minor; /* offset of the minor version digit */
} line_t;

#define LINE_MAX_LEN 8192

/* 1 for a whole line in [base, end), 0 while it is the start of one, -1 otherwise; the offsets
 * in l are from base. */
static int request_line(const char *base, const char *end, line_t *l)
{
    static const char version[] = "HTTP/d.d\r\n";
    const char *p = base, *s;
    size_t v = 0;

    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    s = p;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p - base >= LINE_MAX_LEN)
        return -1;
    if (p == end)
        return 0;
    if (p == s || *p != ' ')
        return -1;
    l->method.off = (uint32_t)(s - base);
    l->method.len = (uint32_t)(p - s);
    s = ++p;
    while (p < end && (unsigned char)*p > ' ' && *p != 0x7f)
        p++;
    if (p - base >= LINE_MAX_LEN)
        return -1;
    if (p == end)
        return 0;
    if (p == s || *p++ != ' ')
        return -1;
    for (; p < end && v < sizeof version - 1; p++, v++) {
        if (version[v] == 'd' ? !(*p >= '0' && *p <= '9') : *p != version[v])
            return -1;
    }
    l->minor = (size_t)(p - base) - v + 7; /* "HTTP/d." is 7 bytes: the minor is the 8th */
    return v == sizeof version - 1 ? 1 : 0;
}

/* Runs llhttp over [from, from + n), which ends at the end of the bytes of this wd_http_feed
 * call, [at, at + len); returns what wd_http_feed returns. */
static int execute(wd_http_t *http, const char *from, size_t n, const char *at, size_t len)
{
    wd_http_state_t before = http->state;
    llhttp_errno_t err;
    ptrdiff_t used;

    if (llhttp_get_errno(&http->parser) == HPE_PAUSED)
        llhttp_resume(&http->parser);
    err = llhttp_execute(&http->parser, from, n);
    if (err == HPE_OK)
        return (int)len;
    if (err == HPE_PAUSED) {
        used = llhttp_get_error_pos(&http->parser) - at;
        if (before == WD_HTTP_HEAD && !head_ends_well(http, at + used)) {
            http->error = WD_HTTP_EINVALID;
            http->llhttp_reason = "Bare CR at the end of the head";
            return WD_PARSE_ERROR;
        }
        return (int)used;
    }
    if (err == HPE_PAUSED_UPGRADE || err == HPE_PAUSED_H2_UPGRADE)
        http->error = WD_HTTP_EUPGRADE;
    else if (http->error == WD_HTTP_OK)
        http->error = WD_HTTP_EINVALID;
    if (http->llhttp_reason == NULL)
        http->llhttp_reason = llhttp_get_error_reason(&http->parser);
    return WD_PARSE_ERROR;
}

/* llhttp refused the request line for its method or its version, which RFC 9110 lets be any
 * token (9.1) and any minor version of HTTP/1 (2.5). Once the line is whole, llhttp parses it
 * again from its start with a method it knows in place of an extension method and minor
 * version 1 in place of a later one; the target and the rest are the caller's bytes, so the
 * spans stay right. Returns what wd_http_feed returns. */
static int reparse_line(wd_http_t *http, const char *at, size_t n)
{
    const char *end = at + n, *b = http->base + http->head_off;
    llhttp_errno_t err = HPE_OK;
    line_t l;
    int r = request_line(b, end, &l);

    if (r == 0) {
        http->line_pending = 1;
        return (int)n;
    }
    if (r < 0) {
        http->error = WD_HTTP_EINVALID;
        http->llhttp_reason = "Invalid request line";
        return WD_PARSE_ERROR;
    }
    if (b[l.minor - 2] != '1') {
        http->error = b[l.minor - 2] > '1' ? WD_HTTP_EVERSION : WD_HTTP_EINVALID;
        http->llhttp_reason = "HTTP version not supported";
        return WD_PARSE_ERROR;
    }
    http->line_pending = 0;
    http->request_minor = (unsigned)(b[l.minor] - '0');
    http->method_span = l.method;
    http->method_span.off += http->head_off;
    memset(&http->url, 0, sizeof(http->url));
    llhttp_reset(&http->parser);
    if (http->ext_method)
        err = llhttp_execute(&http->parser, "GET", 3);
    else
        err = llhttp_execute(&http->parser, b, l.method.off + l.method.len);
    if (err == HPE_OK)
        err = llhttp_execute(&http->parser, b + l.method.off + l.method.len,
                             l.minor - l.method.off - l.method.len);
    if (err == HPE_OK)
        err = llhttp_execute(&http->parser, http->request_minor > 1 ? "1" : b + l.minor, 1);
    if (err != HPE_OK) {
        http->error = WD_HTTP_EINVALID;
        http->llhttp_reason = llhttp_get_error_reason(&http->parser);
        return WD_PARSE_ERROR;
    }
    /* The rest: the line's CR LF, the headers, and what follows, as a normal feed would. */
    return execute(http, b + l.minor + 1, (size_t)(end - (b + l.minor + 1)), at, n);
}

/* Where in a chunk-size line feed_size_line is, for what llhttp 8.1 gets wrong there. */
enum {
    EXT_NAME = 0, /* the size, or a name */
    EXT_EQ,       /* right after "=" */
    EXT_TOKEN,    /* in a token value */
    EXT_QUOTED,   /* in a quoted-string value */
    EXT_ESCAPE,   /* after a backslash in it */
};

/* Longest chunk-size line: a size and extensions, which nobody uses at length. */
#define SIZE_LINE_MAX 4096

/* Runs llhttp over [from, to), bytes of a chunk-size line; 0 or WD_PARSE_ERROR. */
static int size_run(wd_http_t *http, const char *from, const char *to)
{
    if (to == from)
        return 0;
    return execute(http, from, (size_t)(to - from), from, (size_t)(to - from)) < 0 ? WD_PARSE_ERROR
                                                                                   : 0;
}

/* Feeds the bytes of a chunk-size line from *pp on, up to its LF or end; 0 or WD_PARSE_ERROR.
 * llhttp 8.1 refuses three things RFC 9112 7.1.1 allows there: whitespace around ";" and "="
 * (BWS), which is dropped here (any other whitespace outside a quoted string is given to
 * llhttp, which refuses it); ";" right after a token value ("5;a=1;b"), where llhttp takes
 * the ";" as the end of the value and wants another: it is given one; and a quoted-pair in a
 * quoted value ("a\"b"), which llhttp refuses. */
static int feed_size_line(wd_http_t *http, const char **pp, const char *end)
{
    static const char spaces[] = "                ";
    const char *p = *pp, *run = p;

    while (p < end) {
        char c = *p;

        if (++http->size_len > SIZE_LINE_MAX) {
            http->error = WD_HTTP_EINVALID;
            http->llhttp_reason = "Chunk-size line too long";
            return WD_PARSE_ERROR;
        }
        if ((c == ' ' || c == '\t') && http->ext_state < EXT_QUOTED) {
            if (size_run(http, run, p) < 0)
                return WD_PARSE_ERROR;
            http->held_ws++;
            run = ++p;
            continue;
        }
        if (http->held_ws > 0) {
            if (c != ';' && c != '=' && http->size_last != ';' && http->size_last != '=') {
                while (http->held_ws > 0) {
                    unsigned k = http->held_ws < sizeof spaces - 1 ? http->held_ws
                                                                   : (unsigned)sizeof spaces - 1;

                    if (size_run(http, spaces, spaces + k) < 0)
                        return WD_PARSE_ERROR;
                    http->held_ws -= k;
                }
            }
            http->held_ws = 0;
        }
        if (http->ext_state == EXT_ESCAPE || (http->ext_state == EXT_QUOTED && c == '\\')) {
            /* llhttp 8.1 refuses quoted-pairs; the value is not kept, so "x" stands in for
             * the pair, unless the escaped byte is one no quoted-pair may hold. */
            int ok = http->ext_state == EXT_QUOTED || c == '\t' ||
                     ((unsigned char)c >= 0x20 && c != 0x7f);

            if (ok) {
                if (size_run(http, run, p) < 0 ||
                    (http->ext_state == EXT_ESCAPE && size_run(http, "x", "x" + 1) < 0))
                    return WD_PARSE_ERROR;
                http->ext_state = http->ext_state == EXT_QUOTED ? EXT_ESCAPE : EXT_QUOTED;
                http->size_last = c;
                run = ++p;
                continue;
            }
            http->ext_state = EXT_QUOTED; /* llhttp refuses c */
        }
        p++;
        http->size_last = c;
        switch (http->ext_state) {
        case EXT_NAME:
            if (c == '=')
                http->ext_state = EXT_EQ;
            break;
        case EXT_EQ:
            http->ext_state = c == '"' ? EXT_QUOTED : EXT_TOKEN;
            break;
        case EXT_TOKEN:
            if (c == ';') {
                if (size_run(http, run, p) < 0 || size_run(http, ";", ";" + 1) < 0)
                    return WD_PARSE_ERROR;
                run = p;
                http->ext_state = EXT_NAME;
            }
            break;
        default: /* EXT_QUOTED */
            if (c == '"')
                http->ext_state = EXT_NAME;
            break;
        }
        if (c == '\n')
            break; /* the line's end: on_chunk_header comes with it */
    }
    *pp = p;
    return size_run(http, run, p);
}

/* Longest trailer section (after the last chunk), like a head's (they are not kept). */
#define TRAILERS_MAX 8192

/* Keeps the last two bytes of the trailer section, which the caller's buffer may not hold.
 * Returns -1 at a line that starts with whitespace: obsolete line folding, which a head may not
 * have either (on_header_value_complete). */
static int trailers_took(wd_http_t *http, const char *p, size_t n)
{
    char prev = http->trailers_end[1];

    for (size_t i = 0; i < n; prev = p[i++])
        if (prev == '\n' && (p[i] == ' ' || p[i] == '\t'))
            return -1;
    if (n >= 2) {
        http->trailers_end[0] = p[n - 2];
    } else if (n == 1) {
        http->trailers_end[0] = http->trailers_end[1];
    } else {
        return 0;
    }
    http->trailers_end[1] = p[n - 1];
    http->trailers_len += n;
    return 0;
}

/* Feeds body bytes of a chunked message, the chunk-size lines through feed_size_line. Returns
 * what wd_http_feed returns. llhttp 8.1 ends the trailer section (the message) at a bare LF
 * ("0\r\n\n", "0\r\nX: y\r\n\n") or a bare CR, where a head must end in CR LF (RFC 9112 7.1);
 * a proxy in front that forwards the body as it is would read on, and take the bytes after it
 * as the body's (helper-59): the section must end in CR LF, checked once it has ended. */
static int feed_chunked(wd_http_t *http, const char *at, size_t n)
{
    const char *p = at, *end = at + n;

    while (p < end) {
        size_t len = (size_t)(end - p);
        int r;

        if (http->size_line) {
            if (feed_size_line(http, &p, end) < 0)
                return WD_PARSE_ERROR;
            continue;
        }
        if (http->last_chunk && len > TRAILERS_MAX + 1 - http->trailers_len)
            len = TRAILERS_MAX + 1 - http->trailers_len;
        r = execute(http, p, len, p, len);
        if (r < 0)
            return r;
        if (http->last_chunk && trailers_took(http, p, (size_t)r) < 0) {
            http->error = WD_HTTP_EINVALID;
            http->llhttp_reason = "Obsolete line folding in trailer field";
            return WD_PARSE_ERROR;
        }
        if (http->state == WD_HTTP_DONE) {
            if (http->trailers_end[0] != '\r' || http->trailers_end[1] != '\n') {
                http->error = WD_HTTP_EINVALID;
                http->llhttp_reason = "Trailer section not ended by CR LF";
                return WD_PARSE_ERROR;
            }
            return (int)(p + r - at);
        }
        if (http->last_chunk && http->trailers_len > TRAILERS_MAX) {
            http->error = WD_HTTP_EINVALID;
            http->llhttp_reason = "Trailer section too long";
            return WD_PARSE_ERROR;
        }
        p += r; /* all of it, or a chunk ended: a size line follows */
    }
    return (int)n;
}

int wd_http_feed(wd_http_t *http, const char *at, size_t n)
{
    int r;

    if (http->error != WD_HTTP_OK)
        return WD_PARSE_ERROR;
    if (http->state == WD_HTTP_DONE || n == 0)
        return 0;
    if (n > INT_MAX)
        n = INT_MAX;
    if (!http->started) {
        http->started = 1;
        http->head_off = (uint32_t)(at - http->base);
    }
    if (http->line_pending)
        return reparse_line(http, at, n);
    if (http->state == WD_HTTP_BODY && http->chunked)
        return feed_chunked(http, at, n);

    r = execute(http, at, n, at, n);
    if (r == WD_PARSE_ERROR && http->state == WD_HTTP_HEAD && http->error == WD_HTTP_EINVALID) {
        llhttp_errno_t err = llhttp_get_errno(&http->parser);
        line_t l;

        if ((err == HPE_INVALID_METHOD || err == HPE_INVALID_VERSION) &&
            request_line(http->base + http->head_off, at + n, &l) >= 0) {
            http->error = WD_HTTP_OK;
            http->llhttp_reason = NULL;
            http->ext_method = err == HPE_INVALID_METHOD;
            return reparse_line(http, at, n);
        }
    }
    return r;
}
