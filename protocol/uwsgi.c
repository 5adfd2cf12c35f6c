/* The uwsgi binary protocol: header, vars block, and the few vars the loop needs itself.
 *
 * The parser never allocates and never reads past buf + len: every var's framing is checked
 * against the end of the vars block before a byte of it is looked at. */
#include "uwsgi.h"

#include <string.h>

/* The longest HTTP method token we wait for before deciding the bytes are not a request line;
 * the longest registered method names are about 17 characters. */
#define HTTP_TOKEN_MAX 24

static unsigned get_u16(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;

    return u[0] | (unsigned)u[1] << 8;
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/* A request line starts with an upper-case method token and a space. Modifier1 is never an
 * upper-case letter in a uwsgi request nginx sends, so the first byte decides whether to look.
 * Returns 1 (HTTP), 0 (not HTTP), or WD_PARSE_AGAIN (a prefix of a method token). */
static int looks_like_http(const char *buf, size_t len)
{
    size_t i;

    if (!is_upper(buf[0]))
        return 0;

    for (i = 1; i < len && i <= HTTP_TOKEN_MAX; i++) {
        if (buf[i] == ' ')
            return 1;
        if (!is_upper(buf[i]) && buf[i] != '-' && buf[i] != '_')
            return 0;
    }
    return i > HTTP_TOKEN_MAX ? 0 : WD_PARSE_AGAIN;
}

/* CONTENT_LENGTH: decimal digits below 2^63; empty means 0. */
static int key_is(wd_slice_t key, const char *name, size_t n)
{
    return key.n == n && memcmp(key.p, name, n) == 0;
}

/* Checks the framing of every var and picks out the ones the loop needs. */
static wd_uwsgi_error_t parse_vars(wd_uwsgi_req_t *req)
{
    const char *p = req->vars;
    const char *end = req->vars + req->datasize;
    int seen_cl = 0;
    wd_slice_t key, val;

    while (p < end) {
        if (end - p < 2)
            return WD_UWSGI_EFRAMING;
        key.n = get_u16(p);
        key.p = p + 2;
        p += 2;
        if ((size_t)(end - p) < key.n + 2)
            return WD_UWSGI_EFRAMING;
        p += key.n;
        val.n = get_u16(p);
        val.p = p + 2;
        p += 2;
        if ((size_t)(end - p) < val.n)
            return WD_UWSGI_EFRAMING;
        p += val.n;

        if (key.n == 0)
            return WD_UWSGI_EEMPTY_KEY;

        if (key_is(key, "CONTENT_LENGTH", 14)) {
            /* Two CONTENT_LENGTH vars are never legitimate: refuse rather than pick one. */
            if (seen_cl || wd_slice_u63(val.p, val.n, &req->content_length) != 0)
                return WD_UWSGI_ECONTENT_LENGTH;
            seen_cl = 1;
        } else if (req->method.p == NULL && key_is(key, "REQUEST_METHOD", 14)) {
            req->method = val;
        } else if (req->uri.p == NULL && key_is(key, "REQUEST_URI", 11)) {
            req->uri = val;
        } else if (req->protocol.p == NULL && key_is(key, "SERVER_PROTOCOL", 15)) {
            req->protocol = val;
        }
    }
    return WD_UWSGI_OK;
}

int wd_uwsgi_parse(const char *buf, size_t len, wd_uwsgi_req_t *req)
{
    int r;

    memset(req, 0, sizeof(*req));

    if (len == 0)
        return WD_PARSE_AGAIN;

    req->modifier1 = (uint8_t)buf[0]; /* for the message that refuses it */
    if (buf[0] != 0) {
        r = looks_like_http(buf, len);
        if (r == WD_PARSE_AGAIN)
            return WD_PARSE_AGAIN;
        req->error = r ? WD_UWSGI_EHTTP : WD_UWSGI_EMODIFIER;
        return WD_PARSE_ERROR;
    }

    if (len < WD_UWSGI_HEADER_SIZE)
        return WD_PARSE_AGAIN;

    req->datasize = (uint16_t)get_u16(buf + 1);
    req->modifier2 = (uint8_t)buf[3];

    if (len - WD_UWSGI_HEADER_SIZE < req->datasize)
        return WD_PARSE_AGAIN;

    req->vars = buf + WD_UWSGI_HEADER_SIZE;
    req->error = parse_vars(req);
    if (req->error != WD_UWSGI_OK)
        return WD_PARSE_ERROR;

    /* Absent vars are empty slices that still point inside the packet. */
    if (req->method.p == NULL)
        req->method.p = req->vars;
    if (req->uri.p == NULL)
        req->uri.p = req->vars;
    if (req->protocol.p == NULL)
        req->protocol.p = req->vars;

    return WD_UWSGI_HEADER_SIZE + req->datasize;
}

void wd_uwsgi_iter_init(wd_uwsgi_iter_t *it, const wd_uwsgi_req_t *req)
{
    it->p = req->vars;
    it->end = req->vars + req->datasize;
}

int wd_uwsgi_iter_next(wd_uwsgi_iter_t *it, wd_slice_t *key, wd_slice_t *val)
{
    /* The framing was checked by wd_uwsgi_parse; the bounds checks stay so that a caller who
     * iterates an unchecked block still cannot read past its end. */
    if (it->p == NULL || it->end - it->p < 4)
        return 0;

    key->n = get_u16(it->p);
    key->p = it->p + 2;
    if ((size_t)(it->end - key->p) < key->n + 2)
        return 0;
    val->n = get_u16(key->p + key->n);
    val->p = key->p + key->n + 2;
    if ((size_t)(it->end - val->p) < val->n)
        return 0;
    it->p = val->p + val->n;
    return 1;
}

const char *wd_uwsgi_strerror(wd_uwsgi_error_t e)
{
    switch (e) {
    case WD_UWSGI_OK:
        return "no error";
    case WD_UWSGI_EMODIFIER:
        return "not a WSGI request (uwsgi modifier1 is not 0)";
    case WD_UWSGI_EHTTP:
        return "plain HTTP request on a uwsgi socket (use protocol: http or auto)";
    case WD_UWSGI_EFRAMING:
        return "malformed uwsgi packet (a var runs past the end of the vars block)";
    case WD_UWSGI_EEMPTY_KEY:
        return "malformed uwsgi packet (a var with an empty name)";
    case WD_UWSGI_ECONTENT_LENGTH:
        return "invalid CONTENT_LENGTH in uwsgi vars";
    }
    return "unknown uwsgi error";
}
