/* libFuzzer target: the uwsgi packet parser (protocol/uwsgi.c).
 *
 * The input is a packet as a peer would send it. It is parsed whole, then as a prefix cut at a
 * point derived from the data (as when the packet arrives in two reads); the two results must
 * agree, every slice must lie inside the vars block, and walking the vars must end exactly at
 * the end of the block. */
#include "fuzz.h"
#include "uwsgi.h"

#include <string.h>

static void check_slice(const wd_uwsgi_req_t *req, wd_slice_t s)
{
    WD_FUZZ_CHECK(s.p != NULL);
    WD_FUZZ_INSIDE(s.p, s.n, req->vars, req->vars + req->datasize);
}

/* Checks a successful parse of buf (len bytes); returns the number of vars. */
static size_t check_packet(const char *buf, size_t len, int r, const wd_uwsgi_req_t *req)
{
    wd_uwsgi_iter_t it;
    wd_slice_t key, val;
    size_t n = 0, cl_seen = 0;
    volatile unsigned char sink = 0;

    WD_FUZZ_CHECK(r == WD_UWSGI_HEADER_SIZE + req->datasize);
    WD_FUZZ_CHECK((size_t)r <= len);
    WD_FUZZ_CHECK(req->error == WD_UWSGI_OK);
    WD_FUZZ_CHECK(req->modifier1 == 0);
    WD_FUZZ_CHECK(req->vars == buf + WD_UWSGI_HEADER_SIZE);
    WD_FUZZ_CHECK(req->content_length <= UINT64_C(0x7fffffffffffffff));
    check_slice(req, req->method);
    check_slice(req, req->uri);
    check_slice(req, req->protocol);

    wd_uwsgi_iter_init(&it, req);
    while (wd_uwsgi_iter_next(&it, &key, &val)) {
        WD_FUZZ_CHECK(key.n > 0);
        check_slice(req, key);
        check_slice(req, val);
        WD_FUZZ_CHECK(key.p + key.n + 2 == val.p); /* vars are contiguous */
        if (key.n > 0)
            sink ^= (unsigned char)(key.p[0] ^ key.p[key.n - 1]);
        if (val.n > 0)
            sink ^= (unsigned char)(val.p[0] ^ val.p[val.n - 1]);
        if (key.n == 14 && memcmp(key.p, "CONTENT_LENGTH", 14) == 0)
            cl_seen++;
        n++;
        WD_FUZZ_CHECK(n <= req->datasize / 4 + 1);
    }
    WD_FUZZ_CHECK(it.p == req->vars + req->datasize); /* the walk covers the whole block */
    WD_FUZZ_CHECK(cl_seen <= 1);
    if (cl_seen == 0)
        WD_FUZZ_CHECK(req->content_length == 0);
    (void)sink;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wd_uwsgi_req_t whole, part;
    char *buf, *pre;
    size_t cut;
    int r, rp;

    if (size > WD_UWSGI_MAX_PACKET + 64)
        return 0;

    buf = wd_fuzz_dup(data, size);
    r = wd_uwsgi_parse(buf, size, &whole);
    WD_FUZZ_CHECK(r == WD_PARSE_AGAIN || r == WD_PARSE_ERROR || r > 0);
    if (r > 0)
        check_packet(buf, size, r, &whole);
    else if (r == WD_PARSE_ERROR)
        WD_FUZZ_CHECK(whole.error != WD_UWSGI_OK);
    else if (size >= WD_UWSGI_MAX_PACKET)
        WD_FUZZ_CHECK(0 && "a whole packet's worth of bytes is never incomplete");
    (void)wd_uwsgi_strerror(whole.error);

    /* The same bytes cut short, as when the packet comes in two reads. */
    cut = size ? (size * data[size - 1]) / 256 : 0;
    pre = wd_fuzz_dup(data, cut);
    rp = wd_uwsgi_parse(pre, cut, &part);
    if (r > 0) {
        /* A valid packet: any prefix is incomplete, unless it holds the whole packet. */
        if (cut < (size_t)r)
            WD_FUZZ_CHECK(rp == WD_PARSE_AGAIN);
        else
            WD_FUZZ_CHECK(rp == r && part.content_length == whole.content_length);
    } else if (rp == WD_PARSE_ERROR) {
        /* An error seen early must be the error of the whole. */
        WD_FUZZ_CHECK(r == WD_PARSE_ERROR && part.error == whole.error);
    } else if (rp > 0) {
        WD_FUZZ_CHECK(0 && "a prefix parses but the whole does not");
    }
    if (rp > 0)
        check_packet(pre, cut, rp, &part);

    free(pre);
    free(buf);
    return 0;
}
