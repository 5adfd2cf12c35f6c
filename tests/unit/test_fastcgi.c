/* FastCGI records and name-value pairs: every record case runs whole, with growing prefixes
 * (len = 1, 2, 3...), and with the input ending right before an unreadable page, through
 * wd_fcgi_record and wd_fcgi_stdin_header; every PARAMS
 * block whole, cut at every byte, and guarded; the writers' bytes are compared exactly. */
#include "testutil.h"
#include "fastcgi.h"

#include <inttypes.h>

typedef struct bytes {
    char buf[2 * WD_FCGI_MAX_RECORD + 4096];
    size_t n;
} bytes_t;

static void put(bytes_t *b, const void *data, size_t n)
{
    memcpy(b->buf + b->n, data, n);
    b->n += n;
}

static void put_byte(bytes_t *b, unsigned v)
{
    char c = (char)(v & 0xff);

    put(b, &c, 1);
}

/* A record header written by hand (not with wd_fcgi_header, which is tested on its own). */
static void put_header(bytes_t *b, unsigned version, unsigned type, unsigned id, size_t cl,
                       unsigned pad)
{
    put_byte(b, version);
    put_byte(b, type);
    put_byte(b, id >> 8);
    put_byte(b, id);
    put_byte(b, (unsigned)(cl >> 8));
    put_byte(b, (unsigned)cl);
    put_byte(b, pad);
    put_byte(b, 0);
}

/* A whole record: header, content, and pad bytes of padding (not zeros: their value is free). */
static size_t put_record(bytes_t *b, unsigned type, unsigned id, const void *content, size_t cl,
                         unsigned pad)
{
    size_t i;

    put_header(b, 1, type, id, cl, pad);
    put(b, content, cl);
    for (i = 0; i < pad; i++)
        put_byte(b, 0xa5);
    return WD_FCGI_HEADER_SIZE + cl + pad;
}

/* A name or value length: one byte when below 128 and !four, else four bytes BE, high bit set. */
static void put_nv_length(bytes_t *b, size_t n, int four)
{
    if (n < 128 && !four) {
        put_byte(b, (unsigned)n);
        return;
    }
    put_byte(b, (unsigned)(n >> 24) | 0x80);
    put_byte(b, (unsigned)(n >> 16));
    put_byte(b, (unsigned)(n >> 8));
    put_byte(b, (unsigned)n);
}

static void put_nv(bytes_t *b, const char *name, const char *val, int four_name, int four_val)
{
    put_nv_length(b, strlen(name), four_name);
    put_nv_length(b, strlen(val), four_val);
    put(b, name, strlen(name));
    put(b, val, strlen(val));
}

static int slice_is(wd_slice_t s, const char *want)
{
    return s.n == strlen(want) && (s.n == 0 || memcmp(s.p, want, s.n) == 0);
}

static t_guard_t guard;

/* Records */

typedef struct rexpect {
    int ret; /* record size, WD_PARSE_ERROR or WD_PARSE_AGAIN */
    wd_fcgi_error_t err;
    size_t decide_at; /* shortest prefix that gives ret; 0 = never (always AGAIN) */
    int type;
    unsigned id;
    size_t content_n;
    unsigned pad;
    int role, keep_conn, flags, unknown; /* role -1: not a BEGIN_REQUEST */
} rexpect_t;

/* wd_fcgi_stdin_header on the same bytes: the header's error where the record's shows within
 * 8 bytes, AGAIN below 8, else the header of a STDIN record (its content and padding, there or
 * not) or 0 for another type. */
static void check_stdin_header(const char *name, const char *how, size_t l, const char *buf,
                               const rexpect_t *ex)
{
    wd_fcgi_record_t rec;
    int r = wd_fcgi_stdin_header(buf, l, &rec);
    int header_error = ex->ret == WD_PARSE_ERROR && ex->decide_at <= WD_FCGI_HEADER_SIZE;
    int want = header_error && l >= ex->decide_at       ? WD_PARSE_ERROR
               : l < WD_FCGI_HEADER_SIZE                ? WD_PARSE_AGAIN
               : (unsigned char)buf[1] == WD_FCGI_STDIN ? WD_FCGI_HEADER_SIZE
                                                        : 0;

    T_CHECK(r == want, "%s (%s, len %zu): stdin_header returned %d, want %d", name, how, l, r,
            want);
    if (r == WD_PARSE_ERROR && want == r)
        T_CHECK(rec.error == ex->err, "%s (%s, len %zu): stdin_header error %d, want %d", name, how,
                l, rec.error, ex->err);
    if (r == WD_FCGI_HEADER_SIZE && want == r)
        T_CHECK(rec.type == WD_FCGI_STDIN && rec.request_id == ex->id && rec.padding == ex->pad &&
                    rec.content.p == buf + 8 && rec.content.n == ex->content_n &&
                    rec.error == WD_FCGI_OK,
                "%s (%s, len %zu): stdin_header id %u padding %u content %zu", name, how, l,
                rec.request_id, rec.padding, rec.content.n);
}

static void check_record(const char *name, const char *how, size_t l, const char *buf,
                         const rexpect_t *ex)
{
    wd_fcgi_record_t rec;
    int r = wd_fcgi_record(buf, l, &rec);
    int want = (ex->decide_at != 0 && l >= ex->decide_at) ? ex->ret : WD_PARSE_AGAIN;

    check_stdin_header(name, how, l, buf, ex);

    T_CHECK(r == want, "%s (%s, len %zu): returned %d, want %d", name, how, l, r, want);
    if (r != want)
        return;
    if (r == WD_PARSE_ERROR)
        T_CHECK(rec.error == ex->err, "%s (%s, len %zu): error %d (%s), want %d", name, how, l,
                rec.error, wd_fcgi_strerror(rec.error), ex->err);
    if (r <= 0)
        return;
    T_CHECK(rec.error == WD_FCGI_OK, "%s (%s): error %d on success", name, how, rec.error);
    T_CHECK(rec.type == ex->type && rec.request_id == ex->id && rec.padding == ex->pad,
            "%s (%s): type %u id %u padding %u", name, how, rec.type, rec.request_id, rec.padding);
    T_CHECK(rec.content.p == buf + 8 && rec.content.n == ex->content_n,
            "%s (%s): content %zu bytes at +%td", name, how, rec.content.n, rec.content.p - buf);
    T_CHECK(rec.unknown == ex->unknown, "%s (%s): unknown %u", name, how, rec.unknown);
    if (ex->role >= 0)
        T_CHECK(rec.role == ex->role && rec.keep_conn == ex->keep_conn && rec.flags == ex->flags,
                "%s (%s): role %u keep_conn %u flags %u", name, how, rec.role, rec.keep_conn,
                rec.flags);
    else
        T_CHECK(rec.role == 0 && rec.keep_conn == 0 && rec.flags == 0, "%s (%s): role set", name,
                how);
}

typedef struct run_ctx {
    const char *name;
    rexpect_t ex;
} run_ctx_t;

static void check_fed(const char *how, size_t len, const char *data, const void *ctx)
{
    const run_ctx_t *r = ctx;

    check_record(r->name, how, len, data, &r->ex);
}

/* Whole, and every prefix from the empty one (testutil.h, t_feed). */
static void run_record(const char *name, const char *data, size_t len, rexpect_t ex)
{
    run_ctx_t r = {name, ex};

    t_feed(&guard, data, len, 0, check_fed, &r);
}

static bytes_t rb;

/* A valid record, table-driven: version 1, the content given, expectations derived. */
typedef struct rcase {
    const char *name;
    int type;
    unsigned id;
    const char *content;
    size_t cl;
    unsigned pad;
    int role, keep_conn, flags, unknown;
} rcase_t;

static const rcase_t valid_records[] = {
    {"BEGIN responder keep-conn", WD_FCGI_BEGIN_REQUEST, 1, "\0\1\1\0\0\0\0\0", 8, 0, 1, 1, 1, 0},
    {"BEGIN responder", WD_FCGI_BEGIN_REQUEST, 1, "\0\1\0\0\0\0\0\0", 8, 0, 1, 0, 0, 0},
    {"BEGIN authorizer", WD_FCGI_BEGIN_REQUEST, 2, "\0\2\0\0\0\0\0\0", 8, 0, 2, 0, 0, 0},
    {"BEGIN filter", WD_FCGI_BEGIN_REQUEST, 3, "\0\3\1\0\0\0\0\0", 8, 0, 3, 1, 1, 0},
    {"BEGIN role 0x1234 flags 0xfe", WD_FCGI_BEGIN_REQUEST, 9, "\x12\x34\xfe\1\2\3\4\5", 8, 0,
     0x1234, 0, 0xfe, 0},
    {"BEGIN id 65535 padded", WD_FCGI_BEGIN_REQUEST, 65535, "\0\1\3\0\0\0\0\0", 8, 8, 1, 1, 3, 0},
    {"ABORT", WD_FCGI_ABORT_REQUEST, 1, "", 0, 0, -1, 0, 0, 0},
    {"ABORT padded", WD_FCGI_ABORT_REQUEST, 7, "", 0, 8, -1, 0, 0, 0},
    {"PARAMS empty (end)", WD_FCGI_PARAMS, 1, "", 0, 0, -1, 0, 0, 0},
    {"PARAMS id 256", WD_FCGI_PARAMS, 256, "\3\1FOOx", 6, 2, -1, 0, 0, 0},
    {"STDIN empty (end)", WD_FCGI_STDIN, 1, "", 0, 0, -1, 0, 0, 0},
    {"STDIN body", WD_FCGI_STDIN, 1, "hello", 5, 3, -1, 0, 0, 0},
    {"STDIN binary", WD_FCGI_STDIN, 1, "\0\1\x80\xff", 4, 0, -1, 0, 0, 0},
    {"DATA", WD_FCGI_DATA, 1, "data", 4, 4, -1, 0, 0, 0},
    {"GET_VALUES empty", WD_FCGI_GET_VALUES, 0, "", 0, 0, -1, 0, 0, 0},
    {"GET_VALUES three", WD_FCGI_GET_VALUES, 0,
     "\x0e\0FCGI_MAX_CONNS\x0d\0FCGI_MAX_REQS\x0f\0FCGI_MPXS_CONNS", 48, 0, -1, 0, 0, 0},
    {"GET_VALUES four-byte lengths", WD_FCGI_GET_VALUES, 0, "\x80\0\0\x0d\x80\0\0\0FCGI_MAX_REQS",
     21, 3, -1, 0, 0, 0},
    {"management type 0", 0, 0, "", 0, 0, -1, 0, 0, 1},
    {"management type 12", 12, 0, "\0\0\0\0\0\0\0\0", 8, 0, -1, 0, 0, 1},
    {"management type 255 padded", 255, 0, "abc", 3, 5, -1, 0, 0, 1},
};

static void test_valid_records(void)
{
    size_t i, size;
    unsigned pad;
    static char big[WD_FCGI_MAX_CONTENT];

    for (i = 0; i < sizeof(valid_records) / sizeof(valid_records[0]); i++) {
        const rcase_t *c = &valid_records[i];
        rb.n = 0;
        size = put_record(&rb, (unsigned)c->type, c->id, c->content, c->cl, c->pad);
        run_record(c->name, rb.buf, rb.n,
                   (rexpect_t){(int)size, 0, size, c->type, c->id, c->cl, c->pad, c->role,
                               c->keep_conn, c->flags, c->unknown});
    }

    /* The reserved byte is ignored, and bytes after the record are not looked at. */
    rb.n = 0;
    size = put_record(&rb, WD_FCGI_STDIN, 1, "abc", 3, 5);
    rb.buf[7] = 'R';
    put(&rb, "\x02\x06 trailing", 10);
    run_record("reserved set, bytes after", rb.buf, rb.n,
               (rexpect_t){(int)size, 0, size, WD_FCGI_STDIN, 1, 3, 5, -1, 0, 0, 0});

    /* Every padding length, 0 to 255. */
    for (pad = 0; pad <= WD_FCGI_MAX_PADDING; pad++) {
        char name[32];
        snprintf(name, sizeof(name), "padding %u", pad);
        rb.n = 0;
        size = put_record(&rb, WD_FCGI_STDIN, 3, "body!", 5, pad);
        run_record(name, rb.buf, rb.n,
                   (rexpect_t){(int)size, 0, size, WD_FCGI_STDIN, 3, 5, pad, -1, 0, 0, 0});
    }

    /* The largest record: 65535 bytes of content and 255 of padding. */
    memset(big, 'x', sizeof(big));
    rb.n = 0;
    size = put_record(&rb, WD_FCGI_STDIN, 1, big, sizeof(big), WD_FCGI_MAX_PADDING);
    T_CHECK(size == WD_FCGI_MAX_RECORD, "max record %zu", size);
    run_record("max record", rb.buf, rb.n,
               (rexpect_t){(int)size, 0, size, WD_FCGI_STDIN, 1, WD_FCGI_MAX_CONTENT,
                           WD_FCGI_MAX_PADDING, -1, 0, 0, 0});

    /* A GET_VALUES of 65535 bytes of pairs (long names nobody knows). */
    rb.n = 0;
    put_header(&rb, 1, WD_FCGI_GET_VALUES, 0, WD_FCGI_MAX_CONTENT, 0);
    put_nv_length(&rb, WD_FCGI_MAX_CONTENT - 8, 1);
    put_nv_length(&rb, 0, 1);
    put(&rb, big, WD_FCGI_MAX_CONTENT - 8);
    run_record("max GET_VALUES", rb.buf, rb.n,
               (rexpect_t){(int)rb.n, 0, rb.n, WD_FCGI_GET_VALUES, 0, WD_FCGI_MAX_CONTENT, 0, -1, 0,
                           0, 0});
}

/* An invalid record: a raw header, then content bytes (which may be fewer than it claims). */
typedef struct rerr {
    const char *name;
    const char *bytes;
    size_t n;
    wd_fcgi_error_t err;
    size_t decide_at;
} rerr_t;

static const rerr_t bad_records[] = {
    {"version 0", "\0\1\0\1\0\x08\0\0", 8, WD_FCGI_EVERSION, 1},
    {"version 2", "\2\1\0\1\0\x08\0\0\0\1\0\0\0\0\0\0", 16, WD_FCGI_EVERSION, 1},
    {"plain HTTP", "GET / HTTP/1.1\r\n", 16, WD_FCGI_EVERSION, 1},
    {"TLS hello", "\x16\x03\x01\x02\0\1\0\0", 8, WD_FCGI_EVERSION, 1},
    {"END_REQUEST", "\1\3\0\1\0\x08\0\0\0\0\0\0\0\0\0\0", 16, WD_FCGI_EDIRECTION, 2},
    {"STDOUT", "\1\6\0\1\0\2\0\0hi", 10, WD_FCGI_EDIRECTION, 2},
    {"STDERR", "\1\7\0\1\0\0\0\0", 8, WD_FCGI_EDIRECTION, 2},
    {"GET_VALUES_RESULT", "\1\x0a\0\0\0\0\0\0", 8, WD_FCGI_EDIRECTION, 2},
    {"UNKNOWN_TYPE", "\1\x0b\0\0\0\x08\0\0\x0c\0\0\0\0\0\0\0", 16, WD_FCGI_EDIRECTION, 2},
    {"BEGIN id 0", "\1\1\0\0\0\x08\0\0\0\1\1\0\0\0\0\0", 16, WD_FCGI_EREQUEST_ID, 4},
    {"ABORT id 0", "\1\2\0\0\0\0\0\0", 8, WD_FCGI_EREQUEST_ID, 4},
    {"PARAMS id 0", "\1\4\0\0\0\0\0\0", 8, WD_FCGI_EREQUEST_ID, 4},
    {"STDIN id 0", "\1\5\0\0\0\1\0\0x", 9, WD_FCGI_EREQUEST_ID, 4},
    {"DATA id 0", "\1\x08\0\0\0\0\0\0", 8, WD_FCGI_EREQUEST_ID, 4},
    {"GET_VALUES id 1", "\1\x09\0\1\0\0\0\0", 8, WD_FCGI_EREQUEST_ID, 4},
    {"GET_VALUES id 256", "\1\x09\1\0\0\0\0\0", 8, WD_FCGI_EREQUEST_ID, 4},
    {"type 12 id 1", "\1\x0c\0\1\0\0\0\0", 8, WD_FCGI_ETYPE, 4},
    {"type 0 id 5", "\1\0\0\5\0\0\0\0", 8, WD_FCGI_ETYPE, 4},
    {"type 255 id 256", "\1\xff\1\0\0\0\0\0", 8, WD_FCGI_ETYPE, 4},
    {"BEGIN content 0", "\1\1\0\1\0\0\0\0", 8, WD_FCGI_ELENGTH, 6},
    {"BEGIN content 7", "\1\1\0\1\0\x07\1\0\0\1\1\0\0\0\0\0", 16, WD_FCGI_ELENGTH, 6},
    {"BEGIN content 9", "\1\1\0\1\0\x09\0\0\0\1\1\0\0\0\0\0\0", 17, WD_FCGI_ELENGTH, 6},
    {"BEGIN content 264", "\1\1\0\1\1\x08\0\0\0\1\1\0\0\0\0\0", 16, WD_FCGI_ELENGTH, 6},
    {"ABORT content 1", "\1\2\0\1\0\1\0\0x", 9, WD_FCGI_ELENGTH, 6},
    /* GET_VALUES framing is decided once its content is there, before its padding. */
    {"GET_VALUES stray byte", "\1\x09\0\0\0\1\3\0\x0e\0\0\0", 12, WD_FCGI_EFRAMING, 9},
    {"GET_VALUES name past end", "\1\x09\0\0\0\4\4\0\x05\0AB\0\0\0\0", 16, WD_FCGI_EFRAMING, 12},
    {"GET_VALUES value past end", "\1\x09\0\0\0\4\0\0\1\2AB", 12, WD_FCGI_EFRAMING, 12},
    {"GET_VALUES four-byte length cut", "\1\x09\0\0\0\3\0\0\x80\0\0", 11, WD_FCGI_EFRAMING, 11},
    {"GET_VALUES 2^31-1 name", "\1\x09\0\0\0\x08\0\0\xff\xff\xff\xff\0ABC", 16, WD_FCGI_EFRAMING,
     16},
};

static void test_bad_records(void)
{
    static char big_content[65535];
    size_t i;

    for (i = 0; i < sizeof(bad_records) / sizeof(bad_records[0]); i++) {
        const rerr_t *c = &bad_records[i];
        run_record(c->name, c->bytes, c->n,
                   (rexpect_t){WD_PARSE_ERROR, c->err, c->decide_at, 0, 0, 0, 0, -1, 0, 0, 0});
    }

    /* Cut records stay AGAIN whatever the prefix (their STDIN header is there from 8 bytes). */
    rb.n = 0;
    put_record(&rb, WD_FCGI_STDIN, 1, "hello", 5, 3);
    run_record("STDIN cut in padding", rb.buf, rb.n - 1,
               (rexpect_t){0, 0, 0, WD_FCGI_STDIN, 1, 5, 3, -1, 0, 0, 0});
    run_record("STDIN cut in content", rb.buf, 10,
               (rexpect_t){0, 0, 0, WD_FCGI_STDIN, 1, 5, 3, -1, 0, 0, 0});
    run_record("header only", rb.buf, 8, (rexpect_t){0, 0, 0, WD_FCGI_STDIN, 1, 5, 3, -1, 0, 0, 0});
    rb.n = 0;
    put_record(&rb, WD_FCGI_STDIN, 513, big_content, 65535, 255); /* the largest; header only */
    run_record("STDIN 65535 + 255, header only", rb.buf, 8,
               (rexpect_t){0, 0, 0, WD_FCGI_STDIN, 513, 65535, 255, -1, 0, 0, 0});

    for (i = 0; i <= WD_FCGI_ECONTENT_LENGTH; i++)
        T_CHECK(wd_fcgi_strerror((wd_fcgi_error_t)i) != NULL, "strerror %zu", i);
}

/* Name-value pairs and PARAMS */

typedef struct nv {
    const char *name, *val;
    int four_name, four_val;
} nv_t;

typedef struct pexpect {
    wd_fcgi_error_t err;
    uint64_t cl;
    const char *method, *uri, *protocol; /* NULL: not checked */
    int known;                           /* length_known: 1 yes, -1 no, 0 not checked */
} pexpect_t;

static bytes_t pb;
static size_t boundary[1024]; /* offsets of pair ends in pb */
static size_t nboundary;

static void build_params(const nv_t *pairs, size_t n)
{
    size_t i;

    pb.n = 0;
    nboundary = 0;
    boundary[nboundary++] = 0;
    for (i = 0; i < n; i++) {
        put_nv(&pb, pairs[i].name, pairs[i].val, pairs[i].four_name, pairs[i].four_val);
        boundary[nboundary++] = pb.n;
    }
}

static void check_params(const char *name, const char *how, const char *p, size_t n,
                         const pexpect_t *ex)
{
    wd_fcgi_req_t req;
    wd_fcgi_error_t e = wd_fcgi_params_parse(p, n, &req);

    T_CHECK(e == ex->err && req.error == e, "%s (%s): error %d (%s), want %d", name, how, e,
            wd_fcgi_strerror(e), ex->err);
    T_CHECK(wd_fcgi_params_check(p, n) == (int)e, "%s (%s): check disagrees", name, how);
    if (e != WD_FCGI_OK)
        return;
    T_CHECK(req.params == p && req.params_len == n, "%s (%s): block", name, how);
    T_CHECK(req.content_length == ex->cl, "%s (%s): content_length %" PRIu64 ", want %" PRIu64,
            name, how, req.content_length, ex->cl);
    if (ex->known)
        T_CHECK(req.length_known == (ex->known > 0), "%s (%s): length_known %d", name, how,
                req.length_known);
    if (ex->method)
        T_CHECK(slice_is(req.method, ex->method), "%s (%s): method '%.*s'", name, how,
                (int)req.method.n, req.method.p);
    if (ex->uri)
        T_CHECK(slice_is(req.uri, ex->uri), "%s (%s): uri '%.*s'", name, how, (int)req.uri.n,
                req.uri.p);
    if (ex->protocol)
        T_CHECK(slice_is(req.protocol, ex->protocol), "%s (%s): protocol '%.*s'", name, how,
                (int)req.protocol.n, req.protocol.p);
    T_CHECK(req.method.p >= p && req.method.p + req.method.n <= p + n && req.uri.p >= p &&
                req.uri.p + req.uri.n <= p + n && req.protocol.p >= p &&
                req.protocol.p + req.protocol.n <= p + n,
            "%s (%s): slices outside the block", name, how);
}

/* The iterator gives back exactly the pairs the block was built from. */
static void check_iter(const char *name, const char *p, size_t n, const nv_t *pairs, size_t np)
{
    wd_fcgi_nv_iter_t it;
    wd_slice_t k, v;
    size_t i = 0;
    int ok = 1;

    wd_fcgi_nv_iter_init(&it, p, n);
    while (wd_fcgi_nv_iter_next(&it, &k, &v)) {
        ok &= i < np && slice_is(k, pairs[i].name) && slice_is(v, pairs[i].val);
        i++;
    }
    T_CHECK(ok && i == np && it.error == WD_FCGI_OK && it.p == p + n,
            "%s: iter %zu pairs of %zu, ok %d, error %d", name, i, np, ok, it.error);
    T_CHECK(!wd_fcgi_nv_iter_next(&it, &k, &v), "%s: iter after the end", name);
}

/* A valid block: whole, guarded, then every prefix (guarded): a prefix that ends between pairs is
 * a valid block, any other is EFRAMING. */
static void run_params(const char *name, const nv_t *pairs, size_t np, pexpect_t ex)
{
    size_t l, b = 0;
    char *g;

    build_params(pairs, np);
    check_params(name, "whole", pb.buf, pb.n, &ex);
    check_params(name, "guarded", t_guard_place(&guard, pb.buf, pb.n), pb.n, &ex);
    if (ex.err != WD_FCGI_OK)
        return;
    check_iter(name, t_guard_place(&guard, pb.buf, pb.n), pb.n, pairs, np);
    for (l = 0; l < pb.n; l++) {
        wd_fcgi_nv_iter_t it;
        wd_slice_t k, v;
        size_t pairs_seen = 0;
        int at_boundary;

        while (boundary[b] < l)
            b++;
        at_boundary = boundary[b] == l;
        /* Long blocks: the pair ends and the first and last few hundred bytes. */
        if (pb.n > 4096 && l > 256 && l + 256 < pb.n && !at_boundary)
            continue;
        g = t_guard_place(&guard, pb.buf, l);
        wd_fcgi_nv_iter_init(&it, g, l);
        while (wd_fcgi_nv_iter_next(&it, &k, &v))
            pairs_seen++;
        T_CHECK(at_boundary ? (it.error == WD_FCGI_OK && pairs_seen == b)
                            : (it.error == WD_FCGI_EFRAMING && pairs_seen == b - 1),
                "%s (prefix %zu): iter error %d after %zu pairs", name, l, it.error, pairs_seen);
        if (!at_boundary)
            T_CHECK(wd_fcgi_params_check(g, l) == WD_FCGI_EFRAMING, "%s (prefix %zu): check %d",
                    name, l, wd_fcgi_params_check(g, l));
    }
}

static char name200[201], val127[128], val128[129], val70000[70001], cookie[301];

static const nv_t nginx_pairs[] = {
    {"SCRIPT_FILENAME", "/srv/app/index.py", 0, 0},
    {"QUERY_STRING", "a=1&b=2", 0, 0},
    {"REQUEST_METHOD", "POST", 0, 0},
    {"CONTENT_TYPE", "application/x-www-form-urlencoded", 0, 0},
    {"CONTENT_LENGTH", "14", 0, 0},
    {"SCRIPT_NAME", "/hello/w rld", 0, 0},
    {"REQUEST_URI", "/hello/w%20rld?a=1&b=2", 0, 0},
    {"DOCUMENT_URI", "/hello/w rld", 0, 0},
    {"DOCUMENT_ROOT", "/usr/share/nginx/html", 0, 0},
    {"SERVER_PROTOCOL", "HTTP/1.1", 0, 0},
    {"REQUEST_SCHEME", "http", 0, 0},
    {"GATEWAY_INTERFACE", "CGI/1.1", 0, 0},
    {"SERVER_SOFTWARE", "nginx/1.22.1", 0, 0},
    {"REMOTE_ADDR", "127.0.0.1", 0, 0},
    {"REMOTE_PORT", "51234", 0, 0},
    {"SERVER_ADDR", "127.0.0.1", 0, 0},
    {"SERVER_PORT", "80", 0, 0},
    {"SERVER_NAME", "localhost", 0, 0},
    {"REDIRECT_STATUS", "200", 0, 0},
    {"HTTP_HOST", "localhost", 0, 0},
    {"HTTP_USER_AGENT", "curl/7.88.1", 0, 0},
    {"HTTP_ACCEPT", "*/*", 0, 0},
    {"HTTP_COOKIE", cookie, 0, 0}, /* 300 bytes: a four-byte value length */
    {"HTTPS", "", 0, 0},
};
#define NGINX_PAIRS (sizeof(nginx_pairs) / sizeof(nginx_pairs[0]))

static void test_params(void)
{
    static const char *bad_cl[] = {
        "12a", "-2",   "-10", "12345678901234567890", "9223372036854775808", " 5", "5 ",
        "+5",  "0x10", "1e3"};
    size_t i;

    run_params("nginx", nginx_pairs, NGINX_PAIRS,
               (pexpect_t){0, 14, "POST", "/hello/w%20rld?a=1&b=2", "HTTP/1.1", 1});
    run_params("empty block", NULL, 0, (pexpect_t){0, 0, "", "", "", -1});
    {
        /* "0" is a length: STDIN must be empty (conn_fcgi.c: stdin_too_long). */
        const nv_t p[] = {{"CONTENT_LENGTH", "0", 0, 0}, {"REQUEST_METHOD", "POST", 0, 0}};
        run_params("CONTENT_LENGTH 0", p, 2, (pexpect_t){0, 0, "POST", "", "", 1});
    }
    {
        /* Caddy's fastcgi transport for a chunked body: the length is unknown, STDIN says. */
        const nv_t p[] = {{"CONTENT_LENGTH", "-1", 0, 0}, {"REQUEST_METHOD", "POST", 0, 0}};
        run_params("CONTENT_LENGTH -1", p, 2, (pexpect_t){0, 0, "POST", "", "", -1});
    }
    {
        const nv_t p[] = {{"REQUEST_METHOD", "GET", 1, 1}, {"REQUEST_URI", "/", 0, 1}};
        run_params("four-byte lengths for short strings", p, 2,
                   (pexpect_t){0, 0, "GET", "/", "", 0});
    }
    {
        const nv_t p[] = {{name200, "v", 0, 0}, {"REQUEST_METHOD", "GET", 0, 0}};
        run_params("200-byte name", p, 2, (pexpect_t){0, 0, "GET", "", "", 0});
    }
    {
        const nv_t p[] = {{"A", val127, 0, 0}, {"B", val128, 0, 0}, {name200, val128, 1, 1}};
        run_params("127 and 128 bytes", p, 3, (pexpect_t){0, 0, "", "", "", 0});
    }
    {
        /* Longer than one record can carry: PARAMS spread over several records. */
        const nv_t p[] = {{"HTTP_X_BIG", val70000, 0, 0}, {"CONTENT_LENGTH", "", 0, 0}};
        run_params("70000-byte value", p, 2, (pexpect_t){0, 0, "", "", "", -1});
    }
    {
        const nv_t p[] = {{"REQUEST_METHOD", "GET", 0, 0},
                          {"REQUEST_METHOD", "POST", 0, 0},
                          {"SERVER_PROTOCOL", "HTTP/1.0", 0, 0},
                          {"X", "", 0, 0}};
        run_params("first of repeated, empty last value", p, 4,
                   (pexpect_t){0, 0, "GET", "", "HTTP/1.0", 0});
    }
    {
        const nv_t p[] = {{"CONTENT_LENGTH", "9223372036854775807", 0, 0}};
        run_params("largest CONTENT_LENGTH", p, 1,
                   (pexpect_t){0, UINT64_C(9223372036854775807), "", "", "", 1});
    }
    {
        const nv_t p[] = {{"REQUEST_METHOD", "GET", 0, 0}, {"", "x", 0, 0}};
        run_params("empty name", p, 2, (pexpect_t){WD_FCGI_EEMPTY_NAME, 0, NULL, NULL, NULL, 0});
    }
    {
        const nv_t p[] = {{"CONTENT_LENGTH", "5", 0, 0}, {"CONTENT_LENGTH", "5", 0, 0}};
        run_params("two CONTENT_LENGTH", p, 2,
                   (pexpect_t){WD_FCGI_ECONTENT_LENGTH, 0, NULL, NULL, NULL, 0});
    }
    for (i = 0; i < sizeof(bad_cl) / sizeof(bad_cl[0]); i++) {
        char name[64];
        const nv_t p[] = {{"REQUEST_METHOD", "POST", 0, 0}, {"CONTENT_LENGTH", bad_cl[i], 0, 0}};
        snprintf(name, sizeof(name), "CONTENT_LENGTH '%s'", bad_cl[i]);
        run_params(name, p, 2, (pexpect_t){WD_FCGI_ECONTENT_LENGTH, 0, NULL, NULL, NULL, 0});
    }

    /* Framing errors written byte by byte. */
    {
        static const struct {
            const char *name, *bytes;
            size_t n;
        } bad[] = {
            {"stray length byte", "\1\1AB\5", 5},
            {"name past end", "\5\1AB", 4},
            {"value past end", "\1\5AB", 4},
            {"four-byte length cut", "\x80\x00\x00", 3},
            {"four-byte value length cut", "\x01\x80\x00", 3},
            {"2^31-1 name", "\377\377\377\377\0ABC", 8},
            {"value 2^31-1 after a name", "\1\377\377\377\377A", 6},
            {"2^31 - 2^24 value", "\1\377\0\0\0A", 6},
        };
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char *g = t_guard_place(&guard, bad[i].bytes, bad[i].n);
            wd_fcgi_nv_iter_t it;
            wd_slice_t k, v;
            T_CHECK(wd_fcgi_params_check(g, bad[i].n) == WD_FCGI_EFRAMING, "%s: check %d",
                    bad[i].name, wd_fcgi_params_check(g, bad[i].n));
            wd_fcgi_nv_iter_init(&it, g, bad[i].n);
            while (wd_fcgi_nv_iter_next(&it, &k, &v))
                ;
            T_CHECK(it.error == WD_FCGI_EFRAMING && !wd_fcgi_nv_iter_next(&it, &k, &v),
                    "%s: iter error %d", bad[i].name, it.error);
        }
    }
}

/* Writers */

static void check_bytes(const char *name, const char *got, size_t n, const char *want, size_t wn)
{
    size_t i;

    T_CHECK(n == wn && memcmp(got, want, n) == 0, "%s: %zu bytes, want %zu", name, n, wn);
    if (n == wn && memcmp(got, want, n) != 0)
        for (i = 0; i < n; i++)
            if (got[i] != want[i])
                printf("    byte %zu: %02x, want %02x\n", i, (unsigned char)got[i],
                       (unsigned char)want[i]);
}

static void test_writers(void)
{
    char out[WD_FCGI_GET_VALUES_RESULT_MAX + 16];
    wd_fcgi_values_t vals = {10, 50};
    wd_fcgi_values_t maxed = {UINT32_MAX, UINT32_MAX};
    size_t n;
    int st;

    n = wd_fcgi_header(out, WD_FCGI_STDOUT, 0xabcd, 0x1234, 4);
    check_bytes("header", out, n, "\x01\x06\xab\xcd\x12\x34\x04\x00", 8);
    n = wd_fcgi_header(out, WD_FCGI_STDOUT, 1, 0, 0);
    check_bytes("empty STDOUT header", out, n, "\x01\x06\x00\x01\x00\x00\x00\x00", 8);
    T_CHECK(wd_fcgi_padding(0) == 0 && wd_fcgi_padding(1) == 7 && wd_fcgi_padding(8) == 0 &&
                wd_fcgi_padding(13) == 3 && wd_fcgi_padding(WD_FCGI_MAX_CONTENT) == 1,
            "padding");

    for (st = WD_FCGI_REQUEST_COMPLETE; st <= WD_FCGI_UNKNOWN_ROLE; st++) {
        char want[16] = "\x01\x03\x01\x02\x00\x08\x00\x00\x01\x02\x03\x04";
        char name[32];
        want[12] = (char)st;
        snprintf(name, sizeof(name), "END_REQUEST status %d", st);
        n = wd_fcgi_end_request(out, 0x0102, 0x01020304, st);
        check_bytes(name, out, n, want, 16);
    }
    n = wd_fcgi_end_request(out, 1, 0, WD_FCGI_REQUEST_COMPLETE);
    check_bytes("END_REQUEST complete", out, n,
                "\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    n = wd_fcgi_end_request(out, 65535, UINT32_MAX, WD_FCGI_OVERLOADED);
    check_bytes("END_REQUEST overloaded", out, n,
                "\x01\x03\xff\xff\x00\x08\x00\x00\xff\xff\xff\xff\x02\x00\x00\x00", 16);

    n = wd_fcgi_unknown_type(out, 12);
    check_bytes("UNKNOWN_TYPE 12", out, n,
                "\x01\x0b\x00\x00\x00\x08\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00", 16);
    n = wd_fcgi_unknown_type(out, 255);
    check_bytes("UNKNOWN_TYPE 255", out, n,
                "\x01\x0b\x00\x00\x00\x08\x00\x00\xff\x00\x00\x00\x00\x00\x00\x00", 16);

    /* GET_VALUES as the spec's example asks, with an unknown name and a repeated one. */
    build_params((const nv_t[]){{"FCGI_MAX_CONNS", "", 0, 0},
                                {"FCGI_FOO", "", 0, 0},
                                {"FCGI_MAX_REQS", "", 0, 0},
                                {"FCGI_MPXS_CONNS", "", 0, 0},
                                {"FCGI_MAX_CONNS", "", 0, 0}},
                 5);
    n = wd_fcgi_get_values_result(out, pb.buf, pb.n, &vals);
    check_bytes("GET_VALUES_RESULT", out, n,
                "\x01\x0a\x00\x00\x00\x35\x03\x00"
                "\x0e\x02"
                "FCGI_MAX_CONNS10"
                "\x0d\x02"
                "FCGI_MAX_REQS50"
                "\x0f\x01"
                "FCGI_MPXS_CONNS0"
                "\x00\x00\x00",
                64);

    /* In the order asked, values as long as they get: the largest record. */
    build_params((const nv_t[]){{"FCGI_MPXS_CONNS", "", 1, 0},
                                {"FCGI_MAX_REQS", "ignored", 0, 1},
                                {"FCGI_MAX_CONNS", "", 0, 0}},
                 3);
    n = wd_fcgi_get_values_result(out, pb.buf, pb.n, &maxed);
    check_bytes("GET_VALUES_RESULT max", out, n,
                "\x01\x0a\x00\x00\x00\x45\x03\x00"
                "\x0f\x01"
                "FCGI_MPXS_CONNS0"
                "\x0d\x0a"
                "FCGI_MAX_REQS4294967295"
                "\x0e\x0a"
                "FCGI_MAX_CONNS4294967295"
                "\x00\x00\x00",
                80);
    T_CHECK(n == WD_FCGI_GET_VALUES_RESULT_MAX, "GET_VALUES_RESULT max size %zu", n);

    /* Nothing known: an empty GET_VALUES_RESULT; names differing in case or length are unknown. */
    build_params((const nv_t[]){{"FCGI_BAR", "", 0, 0},
                                {"fcgi_max_conns", "", 0, 0},
                                {"FCGI_MAX_CONN", "", 0, 0},
                                {"FCGI_MAX_CONNSX", "", 0, 0}},
                 4);
    n = wd_fcgi_get_values_result(out, pb.buf, pb.n, &vals);
    check_bytes("GET_VALUES_RESULT none", out, n, "\x01\x0a\x00\x00\x00\x00\x00\x00", 8);
    n = wd_fcgi_get_values_result(out, NULL, 0, &vals);
    check_bytes("GET_VALUES_RESULT empty query", out, n, "\x01\x0a\x00\x00\x00\x00\x00\x00", 8);

    /* The loop's own answers: one STDOUT record with a CGI head, then the end with the protocol
     * status asked (queue-timeout's 504 ends FCGI_OVERLOADED). */
    {
        static const char head504[] = "Status: 504 Gateway Timeout\r\nContent-Type: text/plain\r\n"
                                      "Content-Length: 20\r\n\r\n504 Gateway Timeout\n";
        char big[256], want[256];
        size_t hl = sizeof head504 - 1, k;

        n = wd_fcgi_canned(big, sizeof big, 9, 504, WD_FCGI_OVERLOADED);
        k = wd_fcgi_header(want, WD_FCGI_STDOUT, 9, (uint16_t)hl, 0);
        memcpy(want + k, head504, hl);
        k += hl;
        k += wd_fcgi_header(want + k, WD_FCGI_STDOUT, 9, 0, 0);
        k += wd_fcgi_end_request(want + k, 9, 0, WD_FCGI_OVERLOADED);
        check_bytes("canned 504 overloaded", big, n, want, k);
        n = wd_fcgi_canned(big, sizeof big, 9, 504, WD_FCGI_REQUEST_COMPLETE);
        want[k - 4] = WD_FCGI_REQUEST_COMPLETE;
        check_bytes("canned 504 complete", big, n, want, k);
        T_CHECK(wd_fcgi_canned(big, k - 1, 9, 504, 0) == 0 &&
                    wd_fcgi_canned(big, k, 9, 504, 0) == k,
                "canned: 0 when cap is short by a byte");
    }
}

/* A request as nginx's fastcgi_pass sends it with fastcgi_keep_conn on */

static bytes_t stream;

typedef struct srec {
    int type;
    size_t off, size, cl;
} srec_t;

static srec_t srecs[16];
static size_t nsrecs;

static void stream_add(int type, unsigned id, const char *content, size_t cl, unsigned pad)
{
    srecs[nsrecs] = (srec_t){type, stream.n, 0, cl};
    srecs[nsrecs].size = put_record(&stream, (unsigned)type, id, content, cl, pad);
    nsrecs++;
}

/* Reads the stream in pieces of `step` bytes, as the worker would, parsing every record that is
 * whole; checks that the records come out as they went in, and rebuilds PARAMS and STDIN. */
static void replay_stream(size_t step)
{
    static char params[8192], body[256];
    size_t avail = 0, off = 0, k = 0, np = 0, nb = 0;
    wd_fcgi_record_t rec;
    wd_fcgi_req_t req;
    int r, ok = 1;

    while (off < stream.n) {
        avail = avail + step > stream.n ? stream.n : avail + step;
        while ((r = wd_fcgi_record(stream.buf + off, avail - off, &rec)) > 0) {
            ok &= k < nsrecs && srecs[k].off == off && srecs[k].size == (size_t)r &&
                  srecs[k].type == rec.type && rec.request_id == 1 && rec.content.n == srecs[k].cl;
            if (rec.type == WD_FCGI_BEGIN_REQUEST)
                ok &= rec.role == WD_FCGI_RESPONDER && rec.keep_conn;
            if (rec.type == WD_FCGI_PARAMS) {
                memcpy(params + np, rec.content.p, rec.content.n);
                np += rec.content.n;
            }
            if (rec.type == WD_FCGI_STDIN) {
                memcpy(body + nb, rec.content.p, rec.content.n);
                nb += rec.content.n;
            }
            off += (size_t)r;
            k++;
        }
        ok &= r == WD_PARSE_AGAIN;
        if (!ok)
            break;
    }
    T_CHECK(ok && k == nsrecs, "nginx stream, reads of %zu: %zu records of %zu", step, k, nsrecs);
    T_CHECK(wd_fcgi_params_parse(params, np, &req) == WD_FCGI_OK && req.content_length == 14 &&
                slice_is(req.method, "POST") && slice_is(req.uri, "/hello/w%20rld?a=1&b=2") &&
                slice_is(req.protocol, "HTTP/1.1"),
            "nginx stream, reads of %zu: params (%s)", step, wd_fcgi_strerror(req.error));
    T_CHECK(nb == 14 && memcmp(body, "name=value&x=1", 14) == 0, "nginx stream: body");
    if (step == 1)
        check_iter("nginx stream params", params, np, nginx_pairs, NGINX_PAIRS);
}

/* The same stream taken as the worker takes a body (daemon/worker/conn_fcgi.c): a STDIN record
 * with content is taken from its header on (wd_fcgi_stdin_header), its content as it comes and
 * its padding skipped; every other record whole. */
static void replay_stdin_streaming(size_t step)
{
    static char body[256];
    size_t avail = 0, off = 0, k = 0, nb = 0, left = 0, skip = 0, t;
    wd_fcgi_record_t rec;
    int r, ok = 1, ended = 0;

    while (off < stream.n && ok) {
        avail = avail + step > stream.n ? stream.n : avail + step;
        for (;;) {
            if (left > 0 || skip > 0) {
                t = avail - off;
                if (t == 0)
                    break;
                if (left > 0) {
                    t = t < left ? t : left;
                    memcpy(body + nb, stream.buf + off, t);
                    nb += t;
                    left -= t;
                } else {
                    t = t < skip ? t : skip;
                    skip -= t;
                }
                off += t;
                continue;
            }
            r = wd_fcgi_stdin_header(stream.buf + off, avail - off, &rec);
            if (r == WD_FCGI_HEADER_SIZE && rec.content.n > 0) {
                ok &= k < nsrecs && srecs[k].off == off && srecs[k].type == WD_FCGI_STDIN &&
                      srecs[k].cl == rec.content.n;
                off += WD_FCGI_HEADER_SIZE;
                left = rec.content.n;
                skip = rec.padding;
                k++;
                continue;
            }
            if (r == WD_PARSE_ERROR)
                ok = 0;
            if (r < 0)
                break;
            r = wd_fcgi_record(stream.buf + off, avail - off, &rec);
            if (r <= 0) {
                ok &= r == WD_PARSE_AGAIN;
                break;
            }
            ok &= k < nsrecs && srecs[k].off == off && srecs[k].size == (size_t)r;
            ended |= rec.type == WD_FCGI_STDIN && rec.content.n == 0;
            off += (size_t)r;
            k++;
        }
    }
    T_CHECK(ok && k == nsrecs && ended && off == stream.n,
            "nginx stream, STDIN as it comes, reads of %zu: %zu records of %zu", step, k, nsrecs);
    T_CHECK(nb == 14 && memcmp(body, "name=value&x=1", 14) == 0,
            "nginx stream, STDIN as it comes, reads of %zu: body", step);
}

static void test_nginx_request(void)
{
    size_t cut, i, step;

    stream.n = 0;
    nsrecs = 0;
    build_params(nginx_pairs, NGINX_PAIRS);
    /* Cut the PARAMS between two records inside HTTP_COOKIE's four-byte value length. */
    cut = boundary[NGINX_PAIRS - 2] + 1 + 2;
    T_CHECK((unsigned char)pb.buf[cut - 3] == 11 && (unsigned char)pb.buf[cut - 2] == 0x80,
            "the cut is inside the four-byte length");

    stream_add(WD_FCGI_BEGIN_REQUEST, 1, "\0\1\1\0\0\0\0\0", 8, 0);
    stream_add(WD_FCGI_PARAMS, 1, pb.buf, cut, wd_fcgi_padding(cut));
    stream_add(WD_FCGI_PARAMS, 1, pb.buf + cut, pb.n - cut, wd_fcgi_padding(pb.n - cut));
    stream_add(WD_FCGI_PARAMS, 1, "", 0, 0);
    stream_add(WD_FCGI_STDIN, 1, "name=value&x=1", 14, 2);
    stream_add(WD_FCGI_STDIN, 1, "", 0, 0);

    /* Each record on its own, whole and byte by byte. */
    for (i = 0; i < nsrecs; i++) {
        char name[48];
        snprintf(name, sizeof(name), "nginx record %zu", i);
        run_record(name, stream.buf + srecs[i].off, srecs[i].size,
                   (rexpect_t){(int)srecs[i].size, 0, srecs[i].size, srecs[i].type, 1, srecs[i].cl,
                               (unsigned)(unsigned char)stream.buf[srecs[i].off + 6],
                               i == 0 ? WD_FCGI_RESPONDER : -1, i == 0, i == 0, 0});
    }
    /* The first PARAMS record alone does not frame: the pair is cut. */
    T_CHECK(wd_fcgi_params_check(stream.buf + srecs[1].off + 8, cut) == WD_FCGI_EFRAMING,
            "first PARAMS record alone");

    /* The whole stream read in pieces of every size. */
    for (step = 1; step <= stream.n; step++) {
        replay_stream(step);
        replay_stdin_streaming(step);
    }
}

int main(void)
{
    memset(name200, 'N', 200);
    memset(val127, 'v', 127);
    memset(val128, 'w', 128);
    memset(val70000, 'z', 70000);
    memset(cookie, 'c', 300);
    memcpy(cookie, "session=", 8);

    t_guard_init(&guard, sizeof(((bytes_t *)0)->buf));
    test_valid_records();
    test_bad_records();
    test_params();
    test_writers();
    test_nginx_request();
    t_guard_free(&guard);
    return t_summary("fastcgi");
}
