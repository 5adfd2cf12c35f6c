/* FastCGI 1.0 responder: records, name-value pairs, and the records a responder writes.
 *
 * The parser never allocates and never reads past buf + len: a header field is looked at only
 * once its bytes are there, and every name-value length is checked against the end of its block
 * before a byte it covers is read. */
#include "fastcgi.h"
#include "response.h"

#include <stdio.h>
#include <string.h>

#define NAME_MAX_CONNS "FCGI_MAX_CONNS"
#define NAME_MAX_REQS "FCGI_MAX_REQS"
#define NAME_MPXS_CONNS "FCGI_MPXS_CONNS"

static unsigned get_u16(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;

    return (unsigned)u[0] << 8 | u[1];
}

static void put_u16(char *p, unsigned v)
{
    p[0] = (char)(v >> 8 & 0xff);
    p[1] = (char)(v & 0xff);
}

/* The types only an application sends: a web server sending one is talking to the wrong peer. */
static int is_app_type(unsigned type)
{
    return type == WD_FCGI_END_REQUEST || type == WD_FCGI_STDOUT || type == WD_FCGI_STDERR ||
           type == WD_FCGI_GET_VALUES_RESULT || type == WD_FCGI_UNKNOWN_TYPE;
}

/* The types that belong to a request (and so carry its non-zero id). */
static int is_request_type(unsigned type)
{
    return type == WD_FCGI_BEGIN_REQUEST || type == WD_FCGI_ABORT_REQUEST ||
           type == WD_FCGI_PARAMS || type == WD_FCGI_STDIN || type == WD_FCGI_DATA;
}

/* Does the request id fit the type? Sets rec->unknown for a management record of a type this
 * parser does not know (answered with UNKNOWN_TYPE). The application-only types are refused
 * before this is called. */
static wd_fcgi_error_t check_id(wd_fcgi_record_t *rec)
{
    unsigned id = rec->request_id;

    if (is_request_type(rec->type))
        return id == WD_FCGI_NULL_REQUEST_ID ? WD_FCGI_EREQUEST_ID : WD_FCGI_OK;
    if (rec->type == WD_FCGI_GET_VALUES)
        return id != WD_FCGI_NULL_REQUEST_ID ? WD_FCGI_EREQUEST_ID : WD_FCGI_OK;
    if (id != WD_FCGI_NULL_REQUEST_ID)
        return WD_FCGI_ETYPE;
    rec->unknown = 1;
    return WD_FCGI_OK;
}

static wd_fcgi_error_t check_length(unsigned type, size_t content_len)
{
    if (type == WD_FCGI_BEGIN_REQUEST && content_len != WD_FCGI_BEGIN_BODY_SIZE)
        return WD_FCGI_ELENGTH;
    if (type == WD_FCGI_ABORT_REQUEST && content_len != 0)
        return WD_FCGI_ELENGTH;
    return WD_FCGI_OK;
}

static int fail(wd_fcgi_record_t *rec, wd_fcgi_error_t e)
{
    rec->error = e;
    return WD_PARSE_ERROR;
}

int wd_fcgi_record(const char *buf, size_t len, wd_fcgi_record_t *rec)
{
    const unsigned char *u = (const unsigned char *)buf;
    wd_fcgi_nv_iter_t it;
    wd_slice_t name, val;
    size_t cl;

    memset(rec, 0, sizeof(*rec));

    if (len < 1)
        return WD_PARSE_AGAIN;
    if (u[0] != WD_FCGI_VERSION_1)
        return fail(rec, WD_FCGI_EVERSION);
    if (len < 2)
        return WD_PARSE_AGAIN;
    rec->type = u[1];
    if (is_app_type(rec->type))
        return fail(rec, WD_FCGI_EDIRECTION);
    if (len < 4)
        return WD_PARSE_AGAIN;
    rec->request_id = (uint16_t)get_u16(buf + 2);
    if ((rec->error = check_id(rec)) != WD_FCGI_OK)
        return WD_PARSE_ERROR;
    if (len < 6)
        return WD_PARSE_AGAIN;
    cl = get_u16(buf + 4);
    if ((rec->error = check_length(rec->type, cl)) != WD_FCGI_OK)
        return WD_PARSE_ERROR;
    if (len < WD_FCGI_HEADER_SIZE || len - WD_FCGI_HEADER_SIZE < cl)
        return WD_PARSE_AGAIN;
    rec->padding = u[6];
    rec->content.p = buf + WD_FCGI_HEADER_SIZE;
    rec->content.n = cl;

    /* GET_VALUES comes whole in one record: its framing is checked here, once. */
    if (rec->type == WD_FCGI_GET_VALUES) {
        wd_fcgi_nv_iter_init(&it, rec->content.p, cl);
        while (wd_fcgi_nv_iter_next(&it, &name, &val))
            ;
        if (it.error != WD_FCGI_OK)
            return fail(rec, it.error);
    }
    if (len - WD_FCGI_HEADER_SIZE - cl < rec->padding)
        return WD_PARSE_AGAIN;

    if (rec->type == WD_FCGI_BEGIN_REQUEST) {
        rec->role = (uint16_t)get_u16(rec->content.p);
        rec->flags = u[WD_FCGI_HEADER_SIZE + 2];
        rec->keep_conn = (rec->flags & WD_FCGI_KEEP_CONN) != 0;
    }
    return (int)(WD_FCGI_HEADER_SIZE + cl + rec->padding);
}

int wd_fcgi_stdin_header(const char *buf, size_t len, wd_fcgi_record_t *rec)
{
    const unsigned char *u = (const unsigned char *)buf;
    int r = wd_fcgi_record(buf, len < WD_FCGI_HEADER_SIZE ? len : WD_FCGI_HEADER_SIZE, rec);

    if (r == WD_PARSE_ERROR)
        return WD_PARSE_ERROR;
    if (len < WD_FCGI_HEADER_SIZE)
        return WD_PARSE_AGAIN;
    /* The header's checks are done: only content and padding can be missing. */
    if (rec->type != WD_FCGI_STDIN)
        return 0;
    rec->padding = u[6];
    rec->content.p = buf + WD_FCGI_HEADER_SIZE;
    rec->content.n = get_u16(buf + 4);
    return WD_FCGI_HEADER_SIZE;
}

/* Name-value pairs */

/* Reads one length (one byte below 128, or four bytes BE with the high bit set) at *pp, before
 * end. Returns 0, or -1 when it runs past end. */
static int get_nv_length(const char **pp, const char *end, size_t *out)
{
    const unsigned char *u = (const unsigned char *)*pp;

    if (*pp >= end)
        return -1;
    if (u[0] < 0x80) {
        *out = u[0];
        *pp += 1;
        return 0;
    }
    if (end - *pp < 4)
        return -1;
    *out = (size_t)(u[0] & 0x7f) << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | u[3];
    *pp += 4;
    return 0;
}

void wd_fcgi_nv_iter_init(wd_fcgi_nv_iter_t *it, const char *p, size_t n)
{
    it->p = p;
    it->end = p + n;
    it->error = WD_FCGI_OK;
}

int wd_fcgi_nv_iter_next(wd_fcgi_nv_iter_t *it, wd_slice_t *name, wd_slice_t *val)
{
    const char *p = it->p;
    size_t nl, vl;

    if (it->error != WD_FCGI_OK || p == NULL || p >= it->end)
        return 0;
    if (get_nv_length(&p, it->end, &nl) != 0 || get_nv_length(&p, it->end, &vl) != 0)
        goto framing;
    if ((size_t)(it->end - p) < nl)
        goto framing;
    name->p = p;
    name->n = nl;
    p += nl;
    if ((size_t)(it->end - p) < vl)
        goto framing;
    val->p = p;
    val->n = vl;
    it->p = p + vl;
    return 1;

framing:
    it->error = WD_FCGI_EFRAMING;
    return 0;
}

/* CONTENT_LENGTH: decimal digits below 2^63; empty means 0 (as in uwsgi.c), and so does -1,
 * which Caddy's FastCGI transport sends for a chunked request body (its length unknown: the
 * body is STDIN up to its empty record). */
static int parse_content_length(const char *p, size_t n, uint64_t *out)
{
    if (n == 2 && p[0] == '-' && p[1] == '1') {
        *out = 0;
        return 0;
    }
    return wd_slice_u63(p, n, out);
}

static int name_is(wd_slice_t name, const char *want, size_t n)
{
    return name.n == n && memcmp(name.p, want, n) == 0;
}

/* One pair of a PARAMS block: refuses what the loop must not guess about, keeps what it needs. */
static wd_fcgi_error_t take_param(wd_fcgi_req_t *req, wd_slice_t name, wd_slice_t val, int *cl)
{
    if (name.n == 0)
        return WD_FCGI_EEMPTY_NAME;
    if (name_is(name, "CONTENT_LENGTH", 14)) {
        /* Two CONTENT_LENGTH params are never legitimate: refuse rather than pick one. */
        if (*cl || parse_content_length(val.p, val.n, &req->content_length) != 0)
            return WD_FCGI_ECONTENT_LENGTH;
        *cl = 1;
        req->length_known = val.n > 0 && val.p[0] != '-';
    } else if (req->method.p == NULL && name_is(name, "REQUEST_METHOD", 14)) {
        req->method = val;
    } else if (req->uri.p == NULL && name_is(name, "REQUEST_URI", 11)) {
        req->uri = val;
    } else if (req->protocol.p == NULL && name_is(name, "SERVER_PROTOCOL", 15)) {
        req->protocol = val;
    }
    return WD_FCGI_OK;
}

wd_fcgi_error_t wd_fcgi_params_parse(const char *p, size_t n, wd_fcgi_req_t *req)
{
    wd_fcgi_nv_iter_t it;
    wd_slice_t name, val;
    int cl = 0;

    memset(req, 0, sizeof(*req));
    req->params = p;
    req->params_len = n;

    wd_fcgi_nv_iter_init(&it, p, n);
    while (wd_fcgi_nv_iter_next(&it, &name, &val)) {
        if ((req->error = take_param(req, name, val, &cl)) != WD_FCGI_OK)
            return req->error;
    }
    if ((req->error = it.error) != WD_FCGI_OK)
        return req->error;

    /* Absent params are empty slices that still point inside the block. */
    if (req->method.p == NULL)
        req->method.p = p;
    if (req->uri.p == NULL)
        req->uri.p = p;
    if (req->protocol.p == NULL)
        req->protocol.p = p;
    return WD_FCGI_OK;
}

int wd_fcgi_params_check(const char *p, size_t n)
{
    wd_fcgi_req_t req;

    return (int)wd_fcgi_params_parse(p, n, &req);
}

/* Writers */

size_t wd_fcgi_header(char out[WD_FCGI_HEADER_SIZE], int type, uint16_t id, uint16_t content_len,
                      uint8_t padding)
{
    out[0] = WD_FCGI_VERSION_1;
    out[1] = (char)(type & 0xff);
    put_u16(out + 2, id);
    put_u16(out + 4, content_len);
    out[6] = (char)padding;
    out[7] = 0;
    return WD_FCGI_HEADER_SIZE;
}

uint8_t wd_fcgi_padding(size_t content_len)
{
    return (uint8_t)((8 - content_len % 8) % 8);
}

size_t wd_fcgi_end_request(char out[16], uint16_t id, uint32_t app_status, int protocol_status)
{
    char *b = out + WD_FCGI_HEADER_SIZE;

    wd_fcgi_header(out, WD_FCGI_END_REQUEST, id, WD_FCGI_BEGIN_BODY_SIZE, 0);
    b[0] = (char)(app_status >> 24 & 0xff);
    b[1] = (char)(app_status >> 16 & 0xff);
    b[2] = (char)(app_status >> 8 & 0xff);
    b[3] = (char)(app_status & 0xff);
    b[4] = (char)(protocol_status & 0xff);
    memset(b + 5, 0, 3);
    return WD_FCGI_HEADER_SIZE + WD_FCGI_BEGIN_BODY_SIZE;
}

size_t wd_fcgi_unknown_type(char out[16], int type)
{
    char *b = out + WD_FCGI_HEADER_SIZE;

    wd_fcgi_header(out, WD_FCGI_UNKNOWN_TYPE, WD_FCGI_NULL_REQUEST_ID, WD_FCGI_BEGIN_BODY_SIZE, 0);
    b[0] = (char)(type & 0xff);
    memset(b + 1, 0, 7);
    return WD_FCGI_HEADER_SIZE + WD_FCGI_BEGIN_BODY_SIZE;
}

/* Writes one pair whose name and value are both shorter than 128 bytes (one-byte lengths). */
static size_t put_short_pair(char *out, const char *name, size_t nl, const char *val, size_t vl)
{
    out[0] = (char)nl;
    out[1] = (char)vl;
    memcpy(out + 2, name, nl);
    memcpy(out + 2 + nl, val, vl);
    return 2 + nl + vl;
}

/* v in decimal into out (at least 10 bytes); returns the number of digits. */
static size_t put_u32_decimal(char *out, uint32_t v)
{
    char tmp[10];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t wd_fcgi_get_values_result(char out[WD_FCGI_GET_VALUES_RESULT_MAX], const char *query,
                                 size_t query_len, const wd_fcgi_values_t *values)
{
    static const char *const names[] = {NAME_MAX_CONNS, NAME_MAX_REQS, NAME_MPXS_CONNS};
    char *c = out + WD_FCGI_HEADER_SIZE;
    wd_fcgi_nv_iter_t it;
    wd_slice_t name, val;
    unsigned seen = 0, i;
    size_t n = 0, vl;
    char digits[10];
    uint8_t pad;

    wd_fcgi_nv_iter_init(&it, query, query_len);
    while (wd_fcgi_nv_iter_next(&it, &name, &val)) {
        for (i = 0; i < 3 && !name_is(name, names[i], strlen(names[i])); i++)
            ;
        if (i == 3 || (seen & 1u << i))
            continue;
        seen |= 1u << i;
        if (i == 0)
            vl = put_u32_decimal(digits, values->max_conns);
        else if (i == 1)
            vl = put_u32_decimal(digits, values->max_reqs);
        else
            vl = put_u32_decimal(digits, 0); /* FCGI_MPXS_CONNS: no multiplexing */
        n += put_short_pair(c + n, names[i], strlen(names[i]), digits, vl);
    }
    pad = wd_fcgi_padding(n);
    memset(c + n, 0, pad);
    wd_fcgi_header(out, WD_FCGI_GET_VALUES_RESULT, WD_FCGI_NULL_REQUEST_ID, (uint16_t)n, pad);
    return WD_FCGI_HEADER_SIZE + n + pad;
}

const char *wd_fcgi_strerror(wd_fcgi_error_t e)
{
    switch (e) {
    case WD_FCGI_OK:
        return "no error";
    case WD_FCGI_EVERSION:
        return "not a FastCGI 1.0 record (version is not 1)";
    case WD_FCGI_EDIRECTION:
        return "a FastCGI record only an application sends (END_REQUEST, STDOUT, STDERR, "
               "GET_VALUES_RESULT, UNKNOWN_TYPE)";
    case WD_FCGI_EREQUEST_ID:
        return "FastCGI record type and request id disagree (a request's record with id 0, or "
               "GET_VALUES with an id)";
    case WD_FCGI_ETYPE:
        return "unknown FastCGI record type for a request";
    case WD_FCGI_ELENGTH:
        return "malformed FastCGI record (BEGIN_REQUEST content not 8 bytes, or ABORT_REQUEST "
               "with content)";
    case WD_FCGI_EFRAMING:
        return "malformed FastCGI name-value pairs (a length runs past the end)";
    case WD_FCGI_EEMPTY_NAME:
        return "malformed FastCGI params (a pair with an empty name)";
    case WD_FCGI_ECONTENT_LENGTH:
        return "invalid CONTENT_LENGTH in FastCGI params";
    }
    return "unknown FastCGI error";
}

size_t wd_fcgi_end(char out[WD_FCGI_END_SIZE], uint16_t id, int protocol_status)
{
    wd_fcgi_header(out, WD_FCGI_STDOUT, id, 0, 0);
    return WD_FCGI_HEADER_SIZE +
           wd_fcgi_end_request(out + WD_FCGI_HEADER_SIZE, id, 0, protocol_status);
}

size_t wd_fcgi_canned(char *out, size_t cap, uint16_t id, int status, int protocol_status)
{
    const char *reason = wd_response_reason(status);
    int body = snprintf(NULL, 0, "%d %s\n", status, reason);
    int n;

    if (cap <= WD_FCGI_HEADER_SIZE)
        return 0;
    n = snprintf(out + WD_FCGI_HEADER_SIZE, cap - WD_FCGI_HEADER_SIZE,
                 "Status: %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%d %s\n",
                 status, reason, body, status, reason);
    if (n < 0 || (size_t)n >= cap - WD_FCGI_HEADER_SIZE ||
        WD_FCGI_HEADER_SIZE + (size_t)n + WD_FCGI_END_SIZE > cap)
        return 0;
    wd_fcgi_header(out, WD_FCGI_STDOUT, id, (uint16_t)n, 0);
    return WD_FCGI_HEADER_SIZE + (size_t)n +
           wd_fcgi_end(out + WD_FCGI_HEADER_SIZE + (size_t)n, id, protocol_status);
}
