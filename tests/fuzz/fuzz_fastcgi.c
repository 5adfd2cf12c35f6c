/* libFuzzer target: FastCGI records and name-value pairs (protocol/fastcgi.c).
 *
 * The input is read two ways. First as the bytes a web server sends on one connection: records
 * are parsed one after another; each record's size must be within what was given, its content
 * inside it, and a cut of it (as when it arrives in two reads) must be incomplete, or show the
 * same error; the PARAMS contents of a request are put together, as the worker does, and checked
 * at the empty PARAMS record; a GET_VALUES is answered; a STDIN header read alone
 * (wd_fcgi_stdin_header) agrees with the whole record. Then the whole input as a PARAMS block:
 * the iterator and wd_fcgi_params_parse must agree, and every slice lie inside the block. Every
 * piece is parsed from a heap block of exactly its size, so ASan catches any read outside. */
#include "fuzz.h"
#include "fastcgi.h"

#include <string.h>

#define MAX_INPUT (2 * WD_FCGI_MAX_RECORD)

static int is_app_type(unsigned t)
{
    return t == WD_FCGI_END_REQUEST || t == WD_FCGI_STDOUT || t == WD_FCGI_STDERR ||
           t == WD_FCGI_GET_VALUES_RESULT || t == WD_FCGI_UNKNOWN_TYPE;
}

/* Walks a name-value block; checks that the walk stays inside it and agrees with params_parse. */
static void check_nv_block(const char *p, size_t n)
{
    wd_fcgi_nv_iter_t it;
    wd_fcgi_req_t req;
    wd_slice_t name, val;
    wd_fcgi_error_t e;
    size_t pairs = 0, empty_name = 0, cl_names = 0;
    volatile unsigned char sink = 0;

    wd_fcgi_nv_iter_init(&it, p, n);
    while (wd_fcgi_nv_iter_next(&it, &name, &val)) {
        WD_FUZZ_INSIDE(name.p, name.n, p, p + n);
        WD_FUZZ_INSIDE(val.p, val.n, p, p + n);
        WD_FUZZ_CHECK(val.p == name.p + name.n); /* the value follows its name */
        WD_FUZZ_CHECK(it.p == val.p + val.n);
        if (name.n > 0)
            sink ^= (unsigned char)(name.p[0] ^ name.p[name.n - 1]);
        if (val.n > 0)
            sink ^= (unsigned char)(val.p[0] ^ val.p[val.n - 1]);
        empty_name += name.n == 0;
        cl_names += name.n == 14 && memcmp(name.p, "CONTENT_LENGTH", 14) == 0;
        pairs++;
        WD_FUZZ_CHECK(pairs <= n / 2); /* a pair takes two bytes at least */
    }
    WD_FUZZ_CHECK(!wd_fcgi_nv_iter_next(&it, &name, &val)); /* the end stays the end */
    WD_FUZZ_CHECK(it.error == WD_FCGI_OK || it.error == WD_FCGI_EFRAMING);
    if (it.error == WD_FCGI_OK)
        WD_FUZZ_CHECK(it.p == p + n); /* a clean walk covers the whole block */
    (void)sink;

    e = wd_fcgi_params_parse(p, n, &req);
    WD_FUZZ_CHECK(req.error == e && wd_fcgi_params_check(p, n) == (int)e);
    (void)wd_fcgi_strerror(e);
    /* params_parse stops at the first bad pair: an empty name or a CONTENT_LENGTH before the
     * pair that runs past the end is what it reports. */
    if (e == WD_FCGI_EFRAMING)
        WD_FUZZ_CHECK(it.error == WD_FCGI_EFRAMING);
    else if (e == WD_FCGI_EEMPTY_NAME)
        WD_FUZZ_CHECK(empty_name > 0);
    else if (e == WD_FCGI_ECONTENT_LENGTH)
        WD_FUZZ_CHECK(cl_names > 0);
    else
        WD_FUZZ_CHECK(e == WD_FCGI_OK && it.error == WD_FCGI_OK && empty_name == 0);
    if (it.error != WD_FCGI_OK && empty_name == 0 && cl_names == 0)
        WD_FUZZ_CHECK(e == WD_FCGI_EFRAMING);
    if (e != WD_FCGI_OK)
        return;
    WD_FUZZ_CHECK(req.params == p && req.params_len == n);
    WD_FUZZ_CHECK(req.content_length <= UINT64_C(0x7fffffffffffffff));
    WD_FUZZ_CHECK(req.method.p != NULL || n == 0);
    WD_FUZZ_INSIDE(req.method.p, req.method.n, p, p + n);
    WD_FUZZ_INSIDE(req.uri.p, req.uri.n, p, p + n);
    WD_FUZZ_INSIDE(req.protocol.p, req.protocol.n, p, p + n);
}

/* Answers a GET_VALUES and reads the answer back. */
static void check_get_values(const wd_fcgi_record_t *rec, uint32_t v)
{
    char out[WD_FCGI_GET_VALUES_RESULT_MAX];
    wd_fcgi_values_t values = {v, v >> 3};
    wd_fcgi_nv_iter_t it;
    wd_slice_t name, val;
    size_t n, cl, pairs = 0;

    n = wd_fcgi_get_values_result(out, rec->content.p, rec->content.n, &values);
    WD_FUZZ_CHECK(n >= WD_FCGI_HEADER_SIZE && n <= WD_FCGI_GET_VALUES_RESULT_MAX && n % 8 == 0);
    WD_FUZZ_CHECK(out[0] == 1 && out[1] == WD_FCGI_GET_VALUES_RESULT && out[2] == 0 && out[3] == 0);
    cl = (size_t)(unsigned char)out[4] << 8 | (unsigned char)out[5];
    WD_FUZZ_CHECK(WD_FCGI_HEADER_SIZE + cl + (unsigned char)out[6] == n);
    wd_fcgi_nv_iter_init(&it, out + WD_FCGI_HEADER_SIZE, cl);
    while (wd_fcgi_nv_iter_next(&it, &name, &val)) {
        WD_FUZZ_CHECK(name.n >= 13 && name.n <= 15 && memcmp(name.p, "FCGI_M", 6) == 0);
        WD_FUZZ_CHECK(val.n >= 1 && val.n <= 10);
        pairs++;
    }
    WD_FUZZ_CHECK(it.error == WD_FCGI_OK && pairs <= 3);
}

/* Checks a record wd_fcgi_record accepted at buf (len bytes given). */
static void check_record(const char *buf, size_t len, int r, const wd_fcgi_record_t *rec)
{
    WD_FUZZ_CHECK(r >= WD_FCGI_HEADER_SIZE && (size_t)r <= len && r <= WD_FCGI_MAX_RECORD);
    WD_FUZZ_CHECK(rec->error == WD_FCGI_OK);
    WD_FUZZ_CHECK((size_t)r == WD_FCGI_HEADER_SIZE + rec->content.n + rec->padding);
    WD_FUZZ_CHECK(rec->content.p == buf + WD_FCGI_HEADER_SIZE);
    WD_FUZZ_INSIDE(rec->content.p, rec->content.n, buf, buf + r);
    WD_FUZZ_CHECK(!is_app_type(rec->type));
    WD_FUZZ_CHECK(rec->unknown == (rec->type == 0 || rec->type > WD_FCGI_UNKNOWN_TYPE));
    if (rec->unknown || rec->type == WD_FCGI_GET_VALUES)
        WD_FUZZ_CHECK(rec->request_id == 0);
    else
        WD_FUZZ_CHECK(rec->request_id != 0);
    if (rec->type == WD_FCGI_BEGIN_REQUEST)
        WD_FUZZ_CHECK(rec->content.n == 8 && rec->keep_conn == (rec->flags & 1));
    else
        WD_FUZZ_CHECK(rec->role == 0 && rec->flags == 0 && rec->keep_conn == 0);
    if (rec->type == WD_FCGI_ABORT_REQUEST)
        WD_FUZZ_CHECK(rec->content.n == 0);
}

/* The record at the start of rest, cut at `cut` bytes in a block of its own. */
static void check_cut(const char *rest, size_t cut, int r, const wd_fcgi_record_t *whole)
{
    wd_fcgi_record_t part;
    char *pre = wd_fuzz_dup((const uint8_t *)rest, cut);
    int rp = wd_fcgi_record(pre, cut, &part);

    if (r > 0) {
        /* A valid record: any shorter prefix is incomplete. */
        WD_FUZZ_CHECK(cut >= (size_t)r ? rp == r : rp == WD_PARSE_AGAIN);
    } else if (rp == WD_PARSE_ERROR) {
        /* An error seen early must be the error of the whole. */
        WD_FUZZ_CHECK(r == WD_PARSE_ERROR && part.error == whole->error);
    } else if (rp > 0) {
        WD_FUZZ_CHECK(0 && "a prefix parses but the whole does not");
    }
    if (rp > 0)
        check_record(pre, cut, rp, &part);
    free(pre);
}

/* wd_fcgi_stdin_header at the record at `at` (len bytes given, the record's parse r and rec):
 * the header's answer agrees with the whole record's. */
static void check_stdin_header(const char *at, size_t len, int r, const wd_fcgi_record_t *rec)
{
    wd_fcgi_record_t h;
    int rh = wd_fcgi_stdin_header(at, len, &h);

    WD_FUZZ_CHECK(rh == WD_PARSE_AGAIN || rh == WD_PARSE_ERROR || rh == 0 ||
                  rh == WD_FCGI_HEADER_SIZE);
    if (rh == WD_PARSE_ERROR) /* an error within the header is the record's error */
        WD_FUZZ_CHECK(r == WD_PARSE_ERROR && h.error == rec->error);
    if (rh == WD_PARSE_AGAIN)
        WD_FUZZ_CHECK(len < WD_FCGI_HEADER_SIZE && r == WD_PARSE_AGAIN);
    if (rh == 0 || rh == WD_FCGI_HEADER_SIZE)
        WD_FUZZ_CHECK(len >= WD_FCGI_HEADER_SIZE &&
                      ((unsigned char)at[1] == WD_FCGI_STDIN) == (rh == WD_FCGI_HEADER_SIZE));
    if (rh == WD_FCGI_HEADER_SIZE) {
        WD_FUZZ_CHECK(h.error == WD_FCGI_OK && h.request_id != 0 && h.content.p == at + 8);
        if (r > 0) /* the whole record is there: the same fields */
            WD_FUZZ_CHECK(rec->type == WD_FCGI_STDIN && h.request_id == rec->request_id &&
                          h.content.n == rec->content.n && h.padding == rec->padding);
        else /* STDIN has no check past its header: only bytes can be missing */
            WD_FUZZ_CHECK(r == WD_PARSE_AGAIN);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wd_fcgi_record_t rec;
    wd_fuzz_rng_t rng = {(uint32_t)size};
    char *buf, *params, *block;
    size_t off = 0, np = 0, cut, span;
    int r;

    if (size > MAX_INPUT)
        return 0;
    for (cut = 0; cut < size && cut < 16; cut++)
        rng.s = rng.s * 31 + data[cut];

    buf = wd_fuzz_dup(data, size);
    params = malloc(size + 1);
    if (params == NULL)
        abort();
    for (;;) {
        r = wd_fcgi_record(buf + off, size - off, &rec);
        WD_FUZZ_CHECK(r == WD_PARSE_AGAIN || r == WD_PARSE_ERROR || r > 0);
        /* A record's cut lies within it or up to a header past it (the next record's start):
         * a cut anywhere in the rest copied and parsed the rest for every record, quadratic
         * (128 KiB of empty records: 12 s under ASan, a libFuzzer timeout), where the bytes
         * past the record only repeat what the whole rest's parse above checks. */
        span = size - off;
        if (r > 0 && span > (size_t)r + WD_FCGI_HEADER_SIZE)
            span = (size_t)r + WD_FCGI_HEADER_SIZE;
        cut = wd_fuzz_next(&rng) % (span + 1);
        check_cut(buf + off, cut, r, &rec);
        check_stdin_header(buf + off, size - off, r, &rec);
        if (r == WD_PARSE_AGAIN)
            WD_FUZZ_CHECK(size - off < WD_FCGI_MAX_RECORD);
        if (r == WD_PARSE_ERROR)
            WD_FUZZ_CHECK(rec.error != WD_FCGI_OK && rec.error <= WD_FCGI_EFRAMING);
        (void)wd_fcgi_strerror(rec.error);
        if (r <= 0)
            break;
        check_record(buf + off, size - off, r, &rec);
        if (rec.type == WD_FCGI_BEGIN_REQUEST)
            np = 0;
        if (rec.type == WD_FCGI_GET_VALUES)
            check_get_values(&rec, wd_fuzz_next(&rng));
        if (rec.type == WD_FCGI_PARAMS && rec.content.n > 0) {
            memcpy(params + np, rec.content.p, rec.content.n);
            np += rec.content.n;
        } else if (rec.type == WD_FCGI_PARAMS) {
            /* The end of the PARAMS stream: the block as the worker puts it together. */
            block = wd_fuzz_dup((const uint8_t *)params, np);
            check_nv_block(block, np);
            free(block);
            np = 0;
        }
        off += (size_t)r;
    }
    free(params);

    /* The whole input as a PARAMS block. */
    check_nv_block(buf, size);
    free(buf);
    return 0;
}
