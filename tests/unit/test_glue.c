/* Drives the Python glue without the worker loop: initialises Python on test_app.py, fabricates
 * requests (parsed with the real uwsgi and HTTP parsers), pushes them through the queue to the
 * pool, drains the real out buffer through a socketpair and checks the bytes, the keep-alive
 * verdict, the status and the error log.
 *
 * Usage: test_glue PATH/test_app.py */
#include "../../python_glue/glue.h"
#include "../../daemon/common/log.h"
#include "../../daemon/worker/out.h"
#include "../../daemon/worker/request.h"

#include <Python.h> /* for PY_MAJOR_VERSION only */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static wd_handoff_t handoff;
static uv_loop_t loop; /* never run: the hand-off's handles live on it */

static void node_noop(wd_handoff_node_t *node)
{
    (void)node;
}

static void push(wd_req_t *req)
{
    wd_handoff_dispatch(&handoff, req);
    wd_handoff_flush(&handoff);
}

static int start_pool(void)
{
    wd_handoff_init(&handoff, &loop, 0, node_noop, node_noop, NULL, NULL);
    return wd_py_start(&handoff, NULL);
}
static int failures, checks;
static char log_path[] = "/tmp/wsgid-test-glue-log-XXXXXX";
static const char *app_path;
static uint64_t seq;

typedef struct result {
    char *buf;
    size_t len;
    int keep_alive;
    int status;
    char *log; /* what the error log got during the request */
} result_t;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

static char *read_log_since(off_t *pos)
{
    int fd = open(log_path, O_RDONLY);
    struct stat st;
    char *buf;
    ssize_t n;

    fstat(fd, &st);
    buf = calloc(1, (size_t)(st.st_size - *pos) + 1);
    n = pread(fd, buf, (size_t)(st.st_size - *pos), *pos);
    if (n > 0)
        *pos += n;
    close(fd);
    return buf;
}

/* Pushes req to the pool and collects the whole response. */
static void run(wd_req_t *req, result_t *res)
{
    static off_t log_pos;
    wd_out_t out;
    int sv[2], want, rc = 0;
    size_t cap = 65536;
    int spins = 0;

    memset(res, 0, sizeof *res);
    free(read_log_since(&log_pos));
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    wd_out_init(&out, 1 << 20, 1 << 30, "/tmp", NULL, NULL);
    req->out = &out;
    req->seq = ++seq;
    snprintf(req->id, sizeof req->id, "%d-%llu", (int)getpid(), (unsigned long long)req->seq);
    req->status = -1;
    res->buf = malloc(cap);
    push(req);
    for (;;) {
        ssize_t k;

        rc = wd_out_send(&out, sv[0], &want);
        do {
            if (res->len + 65536 > cap)
                res->buf = realloc(res->buf, cap *= 2);
            k = read(sv[1], res->buf + res->len, cap - res->len);
            if (k > 0)
                res->len += (size_t)k;
        } while (k > 0);
        if (rc != 0)
            break;
        if (++spins > 20000) {
            fprintf(stderr, "FAIL: request %s timed out\n", req->id);
            failures++;
            break;
        }
        usleep(500);
    }
    CHECK(rc == 1, "wd_out_send returned %d", rc);
    res->buf[res->len] = '\0';
    res->keep_alive = out.keep_alive;
    res->status = req->status;
    wd_out_close(&out);
    close(sv[0]);
    close(sv[1]);
    res->log = read_log_since(&log_pos);
}

static void result_free(result_t *res)
{
    free(res->buf);
    free(res->log);
}

static int on_body(void *data, const char *at, size_t n)
{
    return 0;
}

/* An HTTP request from its raw bytes; the body (Content-Length) follows the head. */
static result_t http(const char *raw, int body_fd)
{
    static wd_http_t h;
    static char with_host[1 << 16];
    const char *eol = strstr(raw, "\r\n");
    wd_req_t req;
    result_t res;
    size_t len;
    int n;

    /* HTTP/1.1 requires Host (the parser answers 400 without it): the cases that do not care
     * get one after the request line. */
    if (eol != NULL && eol - raw > 9 && memcmp(eol - 9, " HTTP/1.1", 9) == 0 &&
        strcasestr(raw, "\r\nHost:") == NULL) {
        snprintf(with_host, sizeof with_host, "%.*s\r\nHost: x%s", (int)(eol - raw), raw, eol);
        raw = with_host;
    }
    len = strlen(raw);

    memset(&req, 0, sizeof req);
    wd_http_init(&h, on_body, NULL);
    h.base = raw;
    n = wd_http_feed(&h, raw, len);
    if (n <= 0 || h.state == WD_HTTP_HEAD) {
        fprintf(stderr, "FAIL: cannot parse the request %s (%d)\n", raw, n);
        exit(1);
    }
    req.kind = WD_REQ_HTTP;
    req.http = &h;
    snprintf(req.remote_addr, sizeof req.remote_addr, "127.0.0.1");
    req.remote_port = 5555;
    snprintf(req.server_addr, sizeof req.server_addr, "127.0.0.1");
    req.server_port = 8080;
    req.body_fd = body_fd;
    if (body_fd >= 0) {
        struct stat st;

        fstat(body_fd, &st);
        req.body_len = (uint64_t)st.st_size;
    } else {
        req.body_mem = raw + n;
        req.body_len = len - (size_t)n;
    }
    run(&req, &res);
    return res;
}

/* A uwsgi request from NULL-terminated key, value pairs. */
static result_t uwsgi(const char *first, ...)
{
    static char pkt[8192];
    static wd_uwsgi_req_t u;
    wd_req_t req;
    result_t res;
    size_t n = 4;
    va_list ap;
    int rc;

    va_start(ap, first);
    for (const char *k = first; k != NULL; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        size_t kl = strlen(k), vl = strlen(v);

        pkt[n] = (char)(kl & 0xff);
        pkt[n + 1] = (char)(kl >> 8);
        memcpy(pkt + n + 2, k, kl);
        n += 2 + kl;
        pkt[n] = (char)(vl & 0xff);
        pkt[n + 1] = (char)(vl >> 8);
        memcpy(pkt + n + 2, v, vl);
        n += 2 + vl;
    }
    va_end(ap);
    pkt[0] = 0;
    pkt[1] = (char)((n - 4) & 0xff);
    pkt[2] = (char)((n - 4) >> 8);
    pkt[3] = 0;
    rc = wd_uwsgi_parse(pkt, n, &u);
    if (rc != (int)n) {
        fprintf(stderr, "FAIL: uwsgi packet not parsed (%d)\n", rc);
        exit(1);
    }
    memset(&req, 0, sizeof req);
    req.kind = WD_REQ_UWSGI;
    req.uwsgi = &u;
    req.body_fd = -1;
    run(&req, &res);
    return res;
}

static const char *body_of(const result_t *r)
{
    const char *p = strstr(r->buf, "\r\n\r\n");

    return p ? p + 4 : "";
}

#define EXPECT_HAS(res, s)                                                                         \
    CHECK(strstr((res).buf, s) != NULL, "response lacks %s:\n%s", s, (res).buf)
#define EXPECT_NOT(res, s) CHECK(strstr((res).buf, s) == NULL, "response has %s:\n%s", s, (res).buf)
#define EXPECT_LOG(res, s) CHECK(strstr((res).log, s) != NULL, "log lacks %s:\n%s", s, (res).log)
#define EXPECT_BODY(res, s)                                                                        \
    CHECK(strcmp(body_of(&(res)), s) == 0, "body is not %s:\n%s", s, (res).buf)

static void test_basics(void)
{
    result_t r;

    r = http("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", -1);
    {
        /* The head, then the Date line of an origin server (RFC 9110 6.6.1), 37 bytes. */
        static const char pre[] =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nDate: ";
        size_t at = sizeof pre - 1 + 37 - 6;

        CHECK(strncmp(r.buf, pre, sizeof pre - 1) == 0 && strlen(r.buf) == at + 2 + 11 &&
                  strncmp(r.buf + at - 6, " GMT\r\n", 6) == 0 &&
                  strcmp(r.buf + at, "\r\nHello world") == 0,
              "hello: %s", r.buf);
    }
    CHECK(r.keep_alive == 1 && r.status == 200, "hello: keep %d status %d", r.keep_alive, r.status);
    result_free(&r);

    r = http("GET /hello HTTP/1.0\r\n\r\n", -1);
    CHECK(strncmp(r.buf, "HTTP/1.0 200 OK\r\n", 17) == 0, "1.0: %s", r.buf);
    EXPECT_HAS(r, "Content-Length: 11\r\n");
    EXPECT_NOT(r, "Connection");
    CHECK(r.keep_alive == 0, "1.0 keep-alive %d", r.keep_alive);
    result_free(&r);

    r = http("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", -1);
    EXPECT_HAS(r, "Connection: keep-alive\r\n");
    CHECK(r.keep_alive == 1, "1.0 keep-alive %d", r.keep_alive);
    result_free(&r);

    r = http("GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", -1);
    EXPECT_HAS(r, "Connection: close\r\n");
    CHECK(r.keep_alive == 0, "close: keep-alive %d", r.keep_alive);
    result_free(&r);

    r = http("GET /write HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "Transfer-Encoding: chunked\r\n");
    EXPECT_BODY(r, "1\r\na\r\n2\r\nbb\r\n3\r\nccc\r\n0\r\n\r\n");
    CHECK(r.keep_alive == 1, "write keep-alive");
    result_free(&r);

    r = http("GET /gen HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "X-Gen: 1\r\nTransfer-Encoding: chunked\r\nDate: ");
    EXPECT_BODY(r, "3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n");
    result_free(&r);

    r = http("GET /gen HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", -1);
    EXPECT_NOT(r, "chunked");
    EXPECT_NOT(r, "Connection: keep-alive");
    EXPECT_BODY(r, "onetwo");
    CHECK(r.keep_alive == 0, "1.0 generator must close");
    result_free(&r);

    r = http("GET /gen_lazy HTTP/1.1\r\n\r\n", -1);
    CHECK(strncmp(r.buf, "HTTP/1.1 201 Created\r\n", 22) == 0, "lazy: %s", r.buf);
    EXPECT_BODY(r, "4\r\nlate\r\n0\r\n\r\n");
    result_free(&r);

    r = http("GET /gen_empty HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "Content-Length: 0\r\n");
    EXPECT_BODY(r, "");
    CHECK(r.keep_alive == 1, "empty keep-alive");
    result_free(&r);

    r = http("HEAD /hello HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "Content-Length: 11\r\n");
    EXPECT_BODY(r, "");
    CHECK(r.keep_alive == 1, "head keep-alive");
    result_free(&r);

    r = http("HEAD /gen HTTP/1.1\r\n\r\n", -1);
    EXPECT_NOT(r, "chunked");
    EXPECT_BODY(r, "");
    CHECK(r.keep_alive == 1, "head gen keep-alive");
    result_free(&r);

    /* /204cl: the app's Content-Length on a 204 is not sent (RFC 9110 8.6: a client may take it
     * as the length of what follows); a 205 goes out with Content-Length: 0 and no content
     * (15.3.6). */
    for (int cl = 0; cl < 2; cl++) {
        r = http(cl ? "GET /204cl HTTP/1.1\r\n\r\n" : "GET /204 HTTP/1.1\r\n\r\n", -1);
        EXPECT_NOT(r, "Content-Length");
        EXPECT_NOT(r, "chunked");
        EXPECT_BODY(r, "");
        CHECK(r.keep_alive == 1 && r.status == 204, "204 (the app's Content-Length: %d)", cl);
        result_free(&r);
    }

    r = http("GET /205 HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "Content-Length: 0\r\n");
    EXPECT_NOT(r, "Content-Length: 5");
    EXPECT_BODY(r, "");
    CHECK(r.keep_alive == 1 && r.status == 205, "205");
    result_free(&r);

    /* The app's own Date goes out, and no other. */
    r = http("GET /dated HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "\r\nDate: Tue, 01 Jan 2030 00:00:00 GMT\r\n");
    CHECK(strstr(strstr(r.buf, "Date: ") + 1, "Date: ") == NULL, "two dates: %s", r.buf);
    result_free(&r);

    r = http("GET /cl_ok HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "Content-Length: 5\r\n");
    EXPECT_BODY(r, "12345");
    EXPECT_NOT(r, "chunked");
    CHECK(r.keep_alive == 1, "cl_ok keep-alive");
    result_free(&r);

    r = http("GET /cl_short HTTP/1.1\r\n\r\n", -1);
    EXPECT_BODY(r, "12345");
    CHECK(r.keep_alive == WD_OUT_RESET, "cl_short must reset");
    EXPECT_LOG(r, "the application sent 5 bytes of its Content-Length 10");
    result_free(&r);

    r = http("GET /cl_long HTTP/1.1\r\n\r\n", -1);
    EXPECT_BODY(r, "123");
    CHECK(r.keep_alive == 0, "cl_long must close");
    EXPECT_LOG(r, "more than its Content-Length 3");
    result_free(&r);

    /* The length reached by a piece and more after it, in the same call or a later one: said
     * and closed as well (helper-56: dropped without a word, the connection kept). */
    for (int gen = 0; gen < 2; gen++) {
        r = http(gen ? "GET /cl_long_later?gen HTTP/1.1\r\n\r\n"
                     : "GET /cl_long_later HTTP/1.1\r\n\r\n",
                 -1);
        EXPECT_BODY(r, "ok");
        CHECK(r.keep_alive == 0, "cl_long_later (gen %d) must close", gen);
        EXPECT_LOG(r, "more than its Content-Length 2");
        result_free(&r);
    }
}

static void test_files(void)
{
    result_t r;
    struct stat st;
    char *want, cl[64];
    FILE *f = fopen(app_path, "rb");

    stat(app_path, &st);
    want = calloc(1, (size_t)st.st_size + 1);
    if (fread(want, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        CHECK(0, "cannot read %s", app_path);
    fclose(f);

    r = http("GET /file?100 HTTP/1.1\r\n\r\n", -1);
    snprintf(cl, sizeof cl, "Content-Length: %lld\r\n", (long long)st.st_size - 100);
    EXPECT_HAS(r, cl);
    EXPECT_BODY(r, want + 100);
    CHECK(r.keep_alive == 1, "file keep-alive");
    result_free(&r);

    r = http("HEAD /file HTTP/1.1\r\n\r\n", -1);
    snprintf(cl, sizeof cl, "Content-Length: %lld\r\n", (long long)st.st_size);
    EXPECT_HAS(r, cl);
    EXPECT_BODY(r, "");
    result_free(&r);

    r = http("GET /file_bytesio HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "chunked");
    CHECK(strlen(body_of(&r)) == 3 * (5 + 3000 + 2) + (5 + 1000 + 2) + 5, "bytesio body %zu",
          strlen(body_of(&r)));
    result_free(&r);
    free(want);
}

static void expect_500(const char *path, const char *log)
{
    char raw[256];
    result_t r;

    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\n\r\n", path);
    r = http(raw, -1);
    CHECK(strncmp(r.buf, "HTTP/1.1 500 ", 13) == 0, "%s: not a 500:\n%s", path, r.buf);
    CHECK(r.status == 500, "%s: status %d", path, r.status);
    CHECK(r.keep_alive == 1, "%s: a 500 before the head keeps the connection", path);
    EXPECT_LOG(r, log);
    result_free(&r);
}

static void test_mistakes(void)
{
    result_t r;

    expect_500("/str_chunk", "GET /str_chunk: the application returned a str chunk; WSGI needs "
                             "bytes");
    expect_500("/str_gen", "the application returned a str chunk; WSGI needs bytes");
    expect_500("/bad_status", "status '20 OK' is not 'NNN reason'");
    expect_500("/crlf", "header 'X-A' has a CR or LF in its value");
    expect_500("/hop", "hop-by-hop header 'Connection' is not allowed from an application");
    expect_500("/twice", "start_response called twice without exc_info");
    expect_500("/nosr", "the application did not call start_response");
    expect_500("/raise", "GET /raise: the application raised ValueError: boom");
    expect_500("/raise", "Traceback (most recent call last):");

    r = http("GET /raise_after HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "200 OK");
    EXPECT_BODY(r, "7\r\npartial\r\n");
    CHECK(r.keep_alive == WD_OUT_RESET, "raise_after must reset");
    EXPECT_LOG(r, "raised ValueError: late boom after the response had started");
    result_free(&r);

    r = http("GET /excinfo HTTP/1.1\r\n\r\n", -1);
    CHECK(strncmp(r.buf, "HTTP/1.1 503 Busy\r\nX-Err: 1\r\n", 29) == 0, "excinfo: %s", r.buf);
    EXPECT_NOT(r, "X-Ok");
    EXPECT_HAS(r, "\r\n\r\nsorry");
    result_free(&r);

    r = http("GET /excinfo_late HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "7\r\nstarted\r\n");
    EXPECT_NOT(r, "never");
    CHECK(r.keep_alive == WD_OUT_RESET, "excinfo_late must reset");
    EXPECT_LOG(r, "raised KeyError: 'late'");
    result_free(&r);

    r = http("GET /close HTTP/1.1\r\n\r\n", -1);
    result_free(&r);
    r = http("GET /close_fail HTTP/1.1\r\n\r\n", -1);
    CHECK(r.keep_alive == WD_OUT_RESET, "close_fail must reset");
    result_free(&r);
    r = http("GET /closed HTTP/1.1\r\n\r\n", -1);
    EXPECT_BODY(r, "2");
    result_free(&r);
}

static void test_input(void)
{
    static const char body[] = "abcdef\nline2\nline3\nrest";
    char raw[512], path[] = "/tmp/wsgid-test-glue-body-XXXXXX";
    const char *want = "[b'abc', b'def\\n', b'li', b'ne2\\n', b'line3\\n', b'rest', b'']";
    result_t r;
    int fd;

    snprintf(raw, sizeof raw, "POST /input HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s",
             sizeof body - 1, body);
    r = http(raw, -1);
    EXPECT_HAS(r, want);
    result_free(&r);

    fd = mkstemp(path);
    unlink(path);
    if (write(fd, body, sizeof body - 1) < 0)
        CHECK(0, "write");
    r = http("POST /input HTTP/1.1\r\nContent-Length: 23\r\n\r\n", fd);
    EXPECT_HAS(r, want);
    result_free(&r);

    r = http("POST /input_iter HTTP/1.1\r\nContent-Length: 23\r\n\r\n", fd);
    EXPECT_HAS(r, "[b'abcdef\\n', b'line2\\n', b'line3\\n', b'rest']");
    result_free(&r);

    /* A big body in a file: read() in one go, with the GIL released. */
    {
        size_t n = 300000;
        char *big = malloc(n), expect[64];
        unsigned long sum = 0;

        for (size_t i = 0; i < n; i++)
            sum += (unsigned char)(big[i] = (char)(i * 7));
        ftruncate(fd, 0);
        pwrite(fd, big, n, 0);
        r = http("POST /input_all HTTP/1.1\r\nContent-Length: 300000\r\n\r\n", fd);
        snprintf(expect, sizeof expect, "300000 %lu", sum % 9973);
        EXPECT_HAS(r, expect);
        result_free(&r);
        free(big);
    }
    close(fd);

    r = http("GET /errors HTTP/1.1\r\n\r\n", -1);
    EXPECT_LOG(r, "] first line\n");
    EXPECT_LOG(r, "] second line\n");
    EXPECT_LOG(r, "] third\n");
    result_free(&r);
}

static void test_environ(void)
{
    result_t r;

    r = http("POST /env%20ir?a=1&b=2 HTTP/1.1\r\nHost: example.com:8000\r\nX-Foo: 1\r\n"
             "Content-Type: text/plain\r\nX-Foo: 2\r\nCookie: a=1\r\nCookie: b=2\r\n"
             "X_Foo: evil\r\nContent-Length: 4\r\n\r\nbody",
             -1);
    EXPECT_HAS(r, "\"REQUEST_METHOD\": \"POST\"");
    EXPECT_HAS(r, "\"PATH_INFO\": \"/env ir\"");
    EXPECT_HAS(r, "\"QUERY_STRING\": \"a=1&b=2\"");
    EXPECT_HAS(r, "\"REQUEST_URI\": \"/env%20ir?a=1&b=2\"");
    EXPECT_HAS(r, "\"SCRIPT_NAME\": \"\"");
    EXPECT_HAS(r, "\"SERVER_NAME\": \"example.com\"");
    EXPECT_HAS(r, "\"SERVER_PORT\": \"8000\"");
    EXPECT_HAS(r, "\"SERVER_PROTOCOL\": \"HTTP/1.1\"");
    EXPECT_HAS(r, "\"HTTP_X_FOO\": \"1, 2\"");
    EXPECT_HAS(r, "\"HTTP_COOKIE\": \"a=1; b=2\"");
    EXPECT_HAS(r, "\"HTTP_HOST\": \"example.com:8000\"");
    EXPECT_NOT(r, "evil");
    EXPECT_NOT(r, "HTTP_CONTENT");
    EXPECT_HAS(r, "\"CONTENT_TYPE\": \"text/plain\"");
    EXPECT_HAS(r, "\"CONTENT_LENGTH\": \"4\"");
    EXPECT_HAS(r, "\"REMOTE_ADDR\": \"127.0.0.1\"");
    EXPECT_HAS(r, "\"REMOTE_PORT\": \"5555\"");
    EXPECT_HAS(r, "\"wsgi.version\": [1, 0]");
    EXPECT_HAS(r, "\"wsgi.url_scheme\": \"http\"");
    EXPECT_HAS(r, "\"wsgi.multithread\": true");
    EXPECT_HAS(r, "\"wsgi.multiprocess\": false");
    EXPECT_HAS(r, "\"wsgi.run_once\": false");
    EXPECT_HAS(r, "\"wsgi.input_terminated\": true");
    EXPECT_HAS(r, "\"wsgid.process_group\": \"t\"");
    EXPECT_HAS(r, "\"wsgid.request_id\": \"");
    EXPECT_HAS(r, "\"input_type\": \"Input\"");
    EXPECT_HAS(r, "\"fw\": \"FileWrapper\"");
    result_free(&r);

    /* An absolute-form target names the host; the Host field is ignored (RFC 9112 3.2.2). */
    r = http("GET http://other.example:8080/environ?a=1 HTTP/1.1\r\nHost: x\r\n\r\n", -1);
    EXPECT_HAS(r, "\"HTTP_HOST\": \"other.example:8080\"");
    EXPECT_HAS(r, "\"SERVER_NAME\": \"other.example\"");
    EXPECT_HAS(r, "\"SERVER_PORT\": \"8080\"");
    EXPECT_HAS(r, "\"PATH_INFO\": \"/environ\"");
    EXPECT_HAS(r, "\"QUERY_STRING\": \"a=1\"");
    result_free(&r);

    /* No Host (HTTP/1.0: 1.1 requires one): SERVER_NAME is the listener's address. */
    r = http("GET /environ HTTP/1.0\r\n\r\n", -1);
    EXPECT_HAS(r, "\"SERVER_NAME\": \"127.0.0.1\"");
    EXPECT_HAS(r, "\"SERVER_PORT\": \"8080\"");
    EXPECT_NOT(r, "CONTENT_LENGTH");
    result_free(&r);

    r = uwsgi("REQUEST_METHOD", "GET", "REQUEST_URI", "/env%20ir?x=1", "QUERY_STRING", "x=1",
              "SERVER_PROTOCOL", "HTTP/1.0", "HTTP_CONTENT_TYPE", "text/a", "CONTENT_LENGTH", "",
              "HTTPS", "on", "HTTP_HOST", "h", "X_CUSTOM", "caf\xe9", NULL);
    CHECK(strncmp(r.buf, "HTTP/1.0 200 OK\r\n", 17) == 0, "uwsgi: %s", r.buf);
    EXPECT_HAS(r, "\"PATH_INFO\": \"/env ir\"");
    EXPECT_HAS(r, "\"CONTENT_TYPE\": \"text/a\"");
    EXPECT_HAS(r, "\"CONTENT_LENGTH\": \"\"");
    EXPECT_HAS(r, "\"wsgi.url_scheme\": \"https\"");
    EXPECT_HAS(r, "\"X_CUSTOM\": \"caf\\u00e9\"");
    EXPECT_HAS(r, "\"SCRIPT_NAME\": \"\"");
    EXPECT_NOT(r, "HTTP_CONTENT");
    CHECK(r.keep_alive == 0, "uwsgi keep-alive");
    result_free(&r);

    r = uwsgi("REQUEST_METHOD", "GET", "REQUEST_URI", "/gen", "PATH_INFO", "/gen",
              "SERVER_PROTOCOL", "HTTP/1.1", NULL);
    EXPECT_NOT(r, "chunked");
    EXPECT_NOT(r, "Content-Length");
    EXPECT_BODY(r, "onetwo");
    result_free(&r);

    r = uwsgi("REQUEST_METHOD", "GET", "REQUEST_URI", "/hello", "PATH_INFO", "/hello", NULL);
    CHECK(strcmp(r.buf, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
                        "Hello world") == 0,
          "uwsgi hello: %s", r.buf);
    result_free(&r);
}

/* The client goes away in the middle of an endless stream: the iterable is closed. */
static void test_disconnect(void)
{
    static const char raw[] = "GET /endless HTTP/1.1\r\nHost: x\r\n\r\n";
    static wd_http_t h;
    wd_req_t req;
    wd_out_t out;
    result_t r;
    int spins = 0;

    memset(&req, 0, sizeof req);
    wd_http_init(&h, on_body, NULL);
    h.base = raw;
    wd_http_feed(&h, raw, sizeof raw - 1);
    req.kind = WD_REQ_HTTP;
    req.http = &h;
    req.body_fd = -1;
    req.out = &out;
    snprintf(req.id, sizeof req.id, "disconnect");
    wd_out_init(&out, 1 << 20, 1 << 30, "/tmp", NULL, NULL);
    push(&req);
    while (out.pending < 1000 && ++spins < 10000)
        usleep(1000);
    wd_out_abort(&out);
    spins = 0;
    while (!wd_out_is_finished(&out) && ++spins < 10000)
        usleep(1000);
    CHECK(wd_out_is_finished(&out), "the stream did not stop");
    CHECK(out.keep_alive == 0, "keep-alive after a disconnect");
    wd_out_close(&out);

    r = http("GET /closed HTTP/1.1\r\n\r\n", -1);
    EXPECT_BODY(r, "3");
    result_free(&r);
}

static void test_mounts(void)
{
    result_t r;

    r = http("GET /sub/environ HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "\"SCRIPT_NAME\": \"/sub\"");
    EXPECT_HAS(r, "\"PATH_INFO\": \"/environ\"");
    result_free(&r);

    r = http("GET /subx/hello HTTP/1.1\r\n\r\n", -1);
    EXPECT_HAS(r, "404 Not Found");
    EXPECT_HAS(r, "no route /subx/hello");
    result_free(&r);

    r = uwsgi("REQUEST_METHOD", "GET", "REQUEST_URI", "/sub", "PATH_INFO", "/sub", "SCRIPT_NAME",
              "/app", NULL);
    EXPECT_HAS(r, "no route ");
    result_free(&r);
}

/* Loading failures, before the real app is loaded in the same interpreter. */
static void test_load_errors(wd_group_conf_t *group, const char *dir)
{
    static const struct {
        const char *app;
        int is_script;
        const char *callable;
        const char *err;
    } cases[] = {
        {"/nonexistent/x.py", 1, "application",
         "group t: cannot load app /nonexistent/x.py: FileNotFoundError: [Errno 2] No such file"},
        {"no_such_mod:app", 0, "app",
         "group t: cannot load app no_such_mod:app: ModuleNotFoundError: No module named "
         "'no_such_mod'"},
        {"test_app", 0, "nothing_here",
         "group t: cannot load app test_app: AttributeError: module 'test_app' has no attribute "
         "'nothing_here'"},
        {"test_app", 0, "closed",
         "group t: cannot load app test_app: 'closed' is not callable (it is a list)"},
        {"/tmp/wsgid-test-glue-syntax.py", 1, "application",
         "group t: cannot load app /tmp/wsgid-test-glue-syntax.py: "
         "/tmp/wsgid-test-glue-syntax.py:1: SyntaxError: "},
    };
    char err[1024];
    FILE *f = fopen("/tmp/wsgid-test-glue-syntax.py", "w");

    fputs("def application(:\n", f);
    fclose(f);
    (void)dir;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        group->app = (char *)cases[i].app;
        group->app_is_script = cases[i].is_script;
        group->callable = (char *)cases[i].callable;
        err[0] = '\0';
        CHECK(wd_py_load_app(err, sizeof err) < 0, "%s loaded", cases[i].app);
        CHECK(strncmp(err, cases[i].err, strlen(cases[i].err)) == 0, "load error:\n%s\nnot\n%s",
              err, cases[i].err);
    }
    unlink("/tmp/wsgid-test-glue-syntax.py");
}

/* python-home: a virtualenv made here, with a module only it has. */
static int test_venv(wd_config_t *conf, wd_group_conf_t *group)
{
    char dir[] = "/tmp/wsgid-test-venv-XXXXXX", cmd[512], err[1024], want[600];
    result_t r;
    FILE *f;

    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -m venv --without-pip %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "SKIP: cannot make a venv (python3-venv missing?)\n");
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        (void)!system(cmd);
        return 77;
    }
    snprintf(cmd, sizeof cmd, "%s/lib/python%d.%d/site-packages/wsgid_venv_probe.py", dir,
             PY_MAJOR_VERSION, PY_MINOR_VERSION);
    f = fopen(cmd, "w");
    if (f == NULL)
        return 1;
    fputs("VALUE = 'in-venv'\n", f);
    fclose(f);
    group->python_home = dir;
    if (wd_py_init(conf, group, 1, err, sizeof err) < 0 || wd_py_load_app(err, sizeof err) < 0)
        return 1;
    if (start_pool() < 0)
        return 1;
    r = http("GET /venv HTTP/1.1\r\n\r\n", -1);
    snprintf(want, sizeof want, "prefix=%s probe=in-venv exe=%s/bin/python", dir, dir);
    EXPECT_HAS(r, want);
    result_free(&r);
    wd_handoff_close(&handoff);
    wd_py_stop();
    wd_handoff_destroy(&handoff);
    uv_run(&loop, UV_RUN_NOWAIT);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    printf("venv: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    static wd_config_t conf;
    static wd_group_conf_t group;
    static wd_mount_conf_t mount;
    char err[1024], *abs, *dir;
    int fd;

    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/test_app.py [--venv]\n", argv[0]);
        return 2;
    }
    uv_loop_init(&loop);
    abs = realpath(argv[1], NULL);
    app_path = abs;
    dir = strdup(abs);
    *strrchr(dir, '/') = '\0';
    fd = mkstemp(log_path);
    close(fd);
    wd_log_init("test", WD_LOG_DEBUG);
    wd_log_open(log_path, "off");

    group.name = "t";
    group.app = abs;
    group.app_is_script = 1;
    group.callable = "application";
    group.threads = 2;
    group.processes = 1;
    group.python_path = &dir;
    group.n_python_path = 1;
    conf.groups = &group;
    conf.n_groups = 1;
    if (argc > 2 && strcmp(argv[2], "--venv") == 0) {
        int rc = test_venv(&conf, &group);

        if (rc != 1 && getenv("KEEP_LOG") == NULL)
            unlink(log_path); /* passed or skipped (77): nothing to look at */
        free(dir);
        free(abs);
        return rc;
    }

    if (wd_py_init(&conf, &group, 1, err, sizeof err) < 0) {
        fprintf(stderr, "cannot start Python (log in %s)\n", log_path);
        return 1;
    }
    test_load_errors(&group, dir);
    group.app = abs;
    group.app_is_script = 1;
    group.callable = "application";
    mount = (wd_mount_conf_t){
        .prefix = "/sub", .app = abs, .app_is_script = 1, .callable = "application"};
    group.mounts = &mount;
    group.n_mounts = 1;
    if (wd_py_load_app(err, sizeof err) < 0) {
        fprintf(stderr, "cannot load the app: %s (log in %s)\n", err, log_path);
        return 1;
    }
    if (start_pool() < 0)
        return 1;

    test_basics();
    test_files();
    test_mistakes();
    test_input();
    test_environ();
    test_mounts();
    test_disconnect();

    wd_handoff_close(&handoff);
    wd_py_stop();
    wd_handoff_destroy(&handoff);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    printf("%d checks, %d failures (log: %s)\n", checks, failures, log_path);
    if (failures == 0 && getenv("KEEP_LOG") == NULL)
        unlink(log_path);
    free(abs);
    free(dir);
    return failures ? 1 : 0;
}
