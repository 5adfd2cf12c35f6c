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

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    wd_http_t *http = from_parser(p);
    wd_http_header_t *h;

    if (http->state != WD_HTTP_HEAD)
        return 0; /* a trailer: not kept */

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
        return 0; /* a trailer: not kept */
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
    why = target_error(http->base + http->url.off, http->url.len, p->method == HTTP_OPTIONS);
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

    http->method = llhttp_method_name((llhttp_method_t)p->method);
    http->http_major = p->http_major;
    http->http_minor = p->http_minor;
    http->has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
    http->content_length = http->has_content_length ? p->content_length : 0;
    http->chunked = (p->flags & F_CHUNKED) != 0;
    http->keep_alive = llhttp_should_keep_alive(p);
    http->is_head = p->method == HTTP_HEAD;

    /* Stop here when a body follows, so that the caller checks the limits and answers
     * Expect before reading it. Without a body, go on: on_message_complete stops instead. */
    if (has_body(p)) {
        http->state = WD_HTTP_BODY;
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
    http->method_pending = 0;
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

/* llhttp knows a fixed list of methods; RFC 9110 9.1 lets any token be one. A well-formed
 * request line whose method llhttp does not know names a method that exists but is not
 * implemented here (501), not a malformed request (400). Returns 1 for such a line (token SP
 * target SP HTTP/d.d CR LF), 0 while [base, end) is the start of one, -1 otherwise. */
#define METHOD_LINE_MAX 8192

static int method_line(const char *s, const char *end)
{
    static const char version[] = "HTTP/d.d\r\n";
    const char *p = s;
    size_t v = 0;

    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p == end)
        return end - s < METHOD_LINE_MAX ? 0 : -1;
    if (p == s || *p++ != ' ')
        return -1;
    s = p;
    while (p < end && (unsigned char)*p > ' ' && *p != 0x7f)
        p++;
    if (p == end)
        return 0;
    if (p == s || *p++ != ' ')
        return -1;
    for (; p < end && v < sizeof version - 1; p++, v++) {
        if (version[v] == 'd' ? !(*p >= '0' && *p <= '9') : *p != version[v])
            return -1;
    }
    return v == sizeof version - 1 ? 1 : 0;
}

/* llhttp refused the method: until the request line is complete (method_pending), whether it
 * is a method we do not implement (501) or a malformed line (400) is not known yet. */
static int unknown_method(wd_http_t *http, const char *end, size_t n)
{
    int r = method_line(http->base, end);

    if (r == 0) {
        http->method_pending = 1;
        return (int)n;
    }
    http->method_pending = 0;
    http->error = r > 0 ? WD_HTTP_EMETHOD : WD_HTTP_EINVALID;
    http->llhttp_reason = r > 0 ? "Method not implemented" : "Invalid method";
    return WD_PARSE_ERROR;
}

int wd_http_feed(wd_http_t *http, const char *at, size_t n)
{
    llhttp_errno_t err;
    wd_http_state_t before;
    ptrdiff_t used;

    if (http->error != WD_HTTP_OK)
        return WD_PARSE_ERROR;
    if (http->state == WD_HTTP_DONE || n == 0)
        return 0;
    if (http->method_pending)
        return unknown_method(http, at + n, n);
    if (n > INT_MAX)
        n = INT_MAX;

    if (llhttp_get_errno(&http->parser) == HPE_PAUSED)
        llhttp_resume(&http->parser);

    before = http->state;
    err = llhttp_execute(&http->parser, at, n);
    if (err == HPE_OK)
        return (int)n;
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
    else if (err == HPE_INVALID_METHOD && method_line(http->base, at + n) >= 0)
        return unknown_method(http, at + n, n);
    else if (http->error == WD_HTTP_OK)
        http->error = WD_HTTP_EINVALID;
    if (http->llhttp_reason == NULL)
        http->llhttp_reason = llhttp_get_error_reason(&http->parser);
    return WD_PARSE_ERROR;
}
