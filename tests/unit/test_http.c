/* HTTP/1.1 request parser (llhttp): every case is a connection's worth of bytes, turned into a
 * transcript of what the parser reported. The transcript must be the same whether the bytes come
 * whole (ending right before an unreadable page), one at a time into one growing buffer, one at a
 * time into a buffer that moves to a new address at every byte, or one at a time with the bytes
 * so far always ending at the unreadable page. */
#include "http.h"
#include "testutil.h"

#include <inttypes.h>

#define S(lit) lit, sizeof(lit) - 1

typedef struct hcase {
    const char *name;
    const char *in;
    size_t len;
    const char *want;
    size_t body_limit; /* on_body fails once the body grows past this (0: never) */
} hcase_t;

/* Transcript lines:
 *   METHOD URL HTTP/x.y ka=K cl=N|- te=C exp=E head=H   when a head completes, then one line
 *   Name: value                                          per header, then
 *   body=BYTES                                           when the message completes;
 *   ERROR CODE                                           on a parse error (then nothing more);
 *   INCOMPLETE                                           when the bytes end inside a message. */
#define X64 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define X1K X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64
#define LONG_EXT X1K X1K X1K X1K

static const hcase_t cases[] = {
    {"simple GET", S("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: example.com\nbody=\n", 0},

    {"GET with query and headers",
     S("GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nAccept: */*\r\n"
       "X-Empty:\r\nX-Spaces:   padded value  \r\n\r\n"),
     "GET /a/b%20c?x=1&y=2 HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nUser-Agent: curl/8\n"
     "Accept: */*\nX-Empty: \nX-Spaces: padded value\nbody=\n",
     0},

    {"absolute-form target",
     S("GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
     "GET http://example.com/p?q=1 HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: "
     "example.com\nbody=\n",
     0},

    {"OPTIONS *", S("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
     "OPTIONS * HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},

    {"HTTP/1.0", S("GET /old HTTP/1.0\r\n\r\n"),
     "GET /old HTTP/1.0 ka=0 cl=- te=0 exp=0 head=0\nbody=\n", 0},

    {"HTTP/1.0 keep-alive", S("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
     "GET / HTTP/1.0 ka=1 cl=- te=0 exp=0 head=0\nConnection: Keep-Alive\nbody=\n", 0},

    {"HTTP/1.1 close", S("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
     "GET / HTTP/1.1 ka=0 cl=- te=0 exp=0 head=0\nHost: h\nConnection: close\nbody=\n", 0},

    {"POST with Content-Length",
     S("POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
       "hello world"),
     "POST /form HTTP/1.1 ka=1 cl=11 te=0 exp=0 head=0\nHost: h\nContent-Type: text/plain\n"
     "Content-Length: 11\nbody=hello world\n",
     0},

    {"POST Content-Length 0", S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=0 te=0 exp=0 head=0\nHost: h\nContent-Length: 0\nbody=\n", 0},

    {"chunked with extensions and trailer",
     S("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5;name=value\r\nhello\r\n6;a;b=\"q\"\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: "
       "t\r\n\r\n"),
     "POST /up HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body=hello world0123456789\n",
     0},

    {"Expect: 100-continue",
     S("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc"),
     "PUT /f HTTP/1.1 ka=1 cl=3 te=0 exp=1 head=0\nHost: h\nExpect: 100-Continue\nContent-Length: "
     "3\n"
     "body=abc\n",
     0},

    {"Expect: other",
     S("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx"),
     "PUT /f HTTP/1.1 ka=1 cl=1 te=0 exp=0 head=0\nHost: h\nExpect: 200-ok\nContent-Length: "
     "1\nbody=x\n",
     0},

    {"HEAD", S("HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n"),
     "HEAD /h HTTP/1.1 ka=1 cl=- te=0 exp=0 head=1\nHost: h\nbody=\n", 0},

    {"pipelined GET, POST, GET",
     S("GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: "
       "4\r\n\r\nbodyGET /3 "
       "HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
     "GET /1 HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n"
     "POST /2 HTTP/1.1 ka=1 cl=4 te=0 exp=0 head=0\nHost: h\nContent-Length: 4\nbody=body\n"
     "GET /3 HTTP/1.1 ka=0 cl=- te=0 exp=0 head=0\nHost: h\nConnection: close\nbody=\n",
     0},

    {"pipelined chunked then GET",
     S("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
       "GET /n HTTP/1.1\r\nHost: h\r\n\r\n"),
     "POST /c HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\nbody=abc\n"
     "GET /n HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n",
     0},

    {"truncated head", S("GET / HTTP/1.1\r\nHost: h\r\n"), "INCOMPLETE\n", 0},

    {"truncated body", S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"),
     "POST / HTTP/1.1 ka=1 cl=10 te=0 exp=0 head=0\nHost: h\nContent-Length: 10\nINCOMPLETE\n", 0},

    {"body callback fails", S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"),
     "POST / HTTP/1.1 ka=1 cl=10 te=0 exp=0 head=0\nHost: h\nContent-Length: 10\nERROR EBODY_CB\n",
     5},

    /* Request smuggling shapes and other malformed requests. */
    {"CL and TE",
     S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"TE and CL",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
       "0\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"two different CLs",
     S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
       "hello!"),
     "ERROR EINVALID\n", 0},
    {"two equal CLs",
     S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
     "ERROR EINVALID\n", 0},
    {"CL list", S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello"),
     "ERROR EINVALID\n", 0},
    {"CL negative", S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"CL overflow",
     S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"TE not chunked", S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
     "ERROR EINVALID\n", 0},
    {"TE chunked not last",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
       "0\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"bad chunk size",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\nERROR "
     "EINVALID\n",
     0},
    {"chunk size overflow",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
       "chunked\r\n\r\n10000000000000000\r\nab\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\nERROR "
     "EINVALID\n",
     0},
    {"chunk data too long",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\nERROR "
     "EINVALID\n",
     0},
    {"garbage request line", S("HELLO WORLD\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"request line without version", S("HELLO / \r\n\r\n"), "ERROR EINVALID\n", 0},
    {"binary garbage", S("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), "ERROR EINVALID\n", 0},
    {"lower-case method (a token: another method)", S("get / HTTP/1.1\r\nHost: h\r\n\r\n"),
     "get / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"HTTP/0.9 line", S("GET /\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"bad version", S("GET / HTTP/1.x\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"NUL in header value", S("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"), "ERROR EINVALID\n",
     0},
    {"NUL in header name", S("GET / HTTP/1.1\r\nHost: h\r\nX\0Y: a\r\n\r\n"), "ERROR EINVALID\n",
     0},
    {"CR in header value", S("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"), "ERROR EINVALID\n",
     0},
    {"space before colon", S("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"empty header name", S("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"empty first header name", S("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"), "ERROR EINVALID\n",
     0},
    {"space in URL", S("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"obs-fold", S("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"obs-fold tab", S("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"bare LF", S("GET / HTTP/1.1\nHost: h\n\n"), "ERROR EINVALID\n", 0},
    {"bare CR ends head", S("GET / HTTP/1.1\r\nHost: h\r\n\rX"), "ERROR EINVALID\n", 0},
    {"CR CR LF ends head", S("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n"), "ERROR EINVALID\n", 0},
    {"space after CL name", S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello"),
     "ERROR EINVALID\n", 0},
    {"space after TE name",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"HTTP/2.0 request line", S("GET / HTTP/2.0\r\n\r\n"), "ERROR EVERSION\n", 0},
    /* llhttp 8.1 refuses minors above 1 (RFC 9110 2.5 would serve them as 1.1). */
    {"TE twice",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
       "\r\n0\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"HTTP/2 preface", S("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "ERROR EUPGRADE\n", 0},
    {"chunk size space",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n"
       "0\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\nERROR "
     "EINVALID\n",
     0},
    /* RFC 9112 2.2: an empty line before the request line may be ignored. */
    {"leading CRLF", S("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"CONNECT", S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
     "ERROR EUPGRADE\n", 0},
    {"Upgrade websocket",
     S("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
     "ERROR EUPGRADE\n", 0},

    /* RFC 9110 / 9112 MUSTs beyond llhttp's (issue #11, point 7). */
    {"no Host in HTTP/1.1", S("GET / HTTP/1.1\r\nX: y\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"no Host in HTTP/1.0 is fine", S("GET / HTTP/1.0\r\n\r\n"),
     "GET / HTTP/1.0 ka=0 cl=- te=0 exp=0 head=0\nbody=\n", 0},
    {"two Hosts", S("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"two Hosts, other case", S("GET / HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n"), "ERROR EINVALID\n",
     0},
    {"two Content-Types",
     S("POST / HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n"
       "Content-Length: 0\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"two Authorizations",
     S("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"two Accepts (a list) are fine",
     S("GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nAccept: a\nAccept: b\nbody=\n", 0},
    {"chunked in HTTP/1.0",
     S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"gzip, chunked",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
     "ERROR ECODING\n", 0},
    {"GET *", S("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), "ERROR EINVALID\n", 0},
    /* RFC 9112 2.2: whitespace between the start-line and the first field: reject. */
    {"whitespace before the first field", S("GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"Content-Length with leading zeros",
     S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 003\r\n\r\nabc"),
     "POST / HTTP/1.1 ka=1 cl=3 te=0 exp=0 head=0\nHost: h\nContent-Length: 003\nbody=abc\n", 0},
    {"Host with a port and IPv6", S("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: [::1]:8080\nbody=\n", 0},
    {"empty Host", S("GET / HTTP/1.1\r\nHost:\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: \nbody=\n", 0},
    {"Host with %XX and sub-delims", S("GET / HTTP/1.1\r\nHost: ex%41mple!$.com:80\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: ex%41mple!$.com:80\nbody=\n", 0},
    {"Host with a space", S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"Host with userinfo", S("GET / HTTP/1.1\r\nHost: u@h\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"Host with a bad port", S("GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"Host with a slash", S("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n"), "ERROR EINVALID\n", 0},
    /* RFC 9110 4.2.1: an http URI's host is never empty (helper-71: SERVER_NAME was ''). */
    {"Host with a port and no name", S("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), "ERROR EINVALID\n",
     0},
    {"absolute-form with a port and no name", S("GET http://:80/ HTTP/1.1\r\nHost: h\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"Host with a port past 65535", S("GET / HTTP/1.1\r\nHost: h:65536\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"Host with a long port", S("GET / HTTP/1.1\r\nHost: h:99999999999999999999\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"Host with port 65535 and leading zeros", S("GET / HTTP/1.1\r\nHost: h:0065535\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h:0065535\nbody=\n", 0},
    {"Host with an empty port", S("GET / HTTP/1.1\r\nHost: h:\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h:\nbody=\n", 0},
    {"Host, IPv6 with an empty port", S("GET / HTTP/1.1\r\nHost: [::1]:\r\n\r\n"),
     "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: [::1]:\nbody=\n", 0},
    {"Host with a bad escape", S("GET / HTTP/1.1\r\nHost: h%zz\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"absolute-form with userinfo", S("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"absolute-form with a port", S("GET https://h:8443/p?q HTTP/1.1\r\nHost: h\r\n\r\n"),
     "GET https://h:8443/p?q HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"target without a slash", S("GET index.html HTTP/1.1\r\nHost: h\r\n\r\n"), "ERROR EINVALID\n",
     0},
    {"absolute-form without authority", S("GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"absolute-form without //", S("GET http:p HTTP/1.1\r\nHost: h\r\n\r\n"), "ERROR EINVALID\n",
     0},
    /* RFC 9110 9.1: any token is a method; llhttp 8.1 knows a list, the rest is parsed again. */
    {"extension method", S("QUERY / HTTP/1.1\r\nHost: h\r\n\r\n"),
     "QUERY / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"extension method with a dash", S("-BLARGH / HTTP/1.1\r\nHost: h\r\n\r\n"),
     "-BLARGH / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"extension method that starts like a known one", S("GETX /a?b HTTP/1.1\r\nHost: h\r\n\r\n"),
     "GETX /a?b HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"extension method with a body",
     S("QUERY /q HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nselec"),
     "QUERY /q HTTP/1.1 ka=1 cl=5 te=0 exp=0 head=0\nHost: h\nContent-Length: 5\nbody=selec\n", 0},
    {"extension method with a chunked body",
     S("FOO /q HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
     "FOO /q HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body=abc\n",
     0},
    {"extension methods pipelined",
     S("FOO /1 HTTP/1.1\r\nHost: h\r\n\r\nBAR /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\n"
       "Host: h\r\n\r\n"),
     "FOO /1 HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n"
     "BAR /2 HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n"
     "GET /3 HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n",
     0},
    {"extension method after empty lines", S("\r\n\r\nFOO / HTTP/1.1\r\nHost: h\r\n\r\n"),
     "FOO / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"extension method still needs Host", S("FOO / HTTP/1.1\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"extension method with asterisk-form", S("FOO * HTTP/1.1\r\nHost: h\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"extension method with a bad target", S("FOO /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"extension method with a bad header", S("FOO / HTTP/1.1\r\nHost: h\r\nA b: c\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"extension method with a bad version", S("FOO / HTTP/1.x\r\nHost: h\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"extension method with two spaces", S("FOO  / HTTP/1.1\r\nHost: h\r\n\r\n"),
     "ERROR EINVALID\n", 0},
    {"extension method, bare LF", S("FOO / HTTP/1.1\nHost: h\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"extension CONNECT-like method is not CONNECT", S("CONNECTX / HTTP/1.1\r\nHost: h\r\n\r\n"),
     "CONNECTX / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    /* RFC 9110 2.5: a later minor version of HTTP/1 is processed as 1.1. */
    {"HTTP/1.2", S("GET /v HTTP/1.2\r\nHost: h\r\n\r\n"),
     "GET /v HTTP/1.1 (sent as a later minor) ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"HTTP/1.9 with an extension method", S("FOO /v HTTP/1.9\r\nHost: h\r\n\r\n"),
     "FOO /v HTTP/1.1 (sent as a later minor) ka=1 cl=- te=0 exp=0 head=0\nHost: h\nbody=\n", 0},
    {"HTTP/1.2 needs Host", S("GET /v HTTP/1.2\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"HTTP/1.2 close", S("GET /v HTTP/1.2\r\nHost: h\r\nConnection: close\r\n\r\n"),
     "GET /v HTTP/1.1 (sent as a later minor) ka=0 cl=- te=0 exp=0 head=0\nHost: h\n"
     "Connection: close\nbody=\n",
     0},
    {"HTTP/3.0", S("GET / HTTP/3.0\r\nHost: h\r\n\r\n"), "ERROR EVERSION\n", 0},
    {"HTTP/0.8", S("GET / HTTP/0.8\r\nHost: h\r\n\r\n"), "ERROR EINVALID\n", 0},
    {"HTTP/1.10", S("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), "ERROR EINVALID\n", 0},
    /* RFC 9112 7.1.1: BWS around ";" and "=" in chunk extensions. */
    {"chunk extension with BWS",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5 ; a = 1 ;\tb\t=\t\"x y\"\r\nhello\r\n6  ;  c\r\n world\r\n0 ; end\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body=hello world\n",
     0},
    {"chunk data with spaces is not touched",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
       "7;a=b\r\n ; = \t \r\n0\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body= ; = \t \n",
     0},
    {"chunk extensions with token values, one after the other",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5;a=1;b=2;c\r\nhello\r\n0;d=4;e=\"5;6\\\" ;\"; f = g\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body=hello\n",
     0},
    {"chunk extension with an empty token value",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=;b\r\nhello\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"chunk extension with a control byte in a quoted-pair",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
       "chunked\r\n\r\n5;a=\"\\\x01\"\r\nhello\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"chunk-size line over 4096 bytes",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=" LONG_EXT
       "\r\nhello\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    /* llhttp outside its strict mode takes any byte for these LFs. */
    {"chunk-size line: CR, then not LF",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\rXhello\r\n0\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"chunk data: CR, then not LF",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX0\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"last chunk: CR, then not LF",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\rX\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"request line: CR, then not LF", S("GET / HTTP/1.1\rXHost: h\r\n\r\n"), "ERROR EINVALID\n", 0},
    /* llhttp 8.1 ends the trailer section at a bare LF or CR: the bytes after it would be
     * another request here, and more body to a proxy that forwards it as it is. */
    {"last chunk: a bare LF ends the message",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"trailer section: a bare LF ends it",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X: y\r\n\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"trailer section: a bare CR ends it",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X: y\r\n\r\r"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"trailer section of two fields, CR LF",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X: y\r\nZ: w\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body=hello\n",
     0},
    /* A trailer field is read by the rules of a header field (RFC 9112 7.1.2), though not kept:
     * a proxy that reads a fold or a spaced name another way ends the section elsewhere. */
    {"trailer field folded",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X: a\r\n b\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"trailer field folded with a tab",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X: a\r\n\tb\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"trailer field name ends in a space",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X : y\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"trailer field with an empty name",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       ": y\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"trailer field with an empty value",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X:\r\nY: \r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body=hello\n",
     0},
    {"trailer section over 8192 bytes",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X-T1: " X1K X1K X1K X1K "\r\nX-T2: " X1K X1K X1K X1K "\r\nX-T3: " X64 "\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"trailer section under 8192 bytes",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
       "X-T1: " X1K X1K X1K X1K "\r\nX-T2: " X1K X1K X1K "\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body=hello\n",
     0},
    {"chunk size then whitespace without an extension",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"whitespace inside a chunk size",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1 0\r\nhello\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"whitespace before a chunk size",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"chunk extension name with a space inside",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"chunk extension, then whitespace at the end of the line",
     S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b \r\nhello\r\n"),
     "POST / HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "ERROR EINVALID\n",
     0},
    {"chunked then pipelined with BWS in both",
     S("POST /1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2 ;x\r\nab\r\n0\r\n\r\n"
       "POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1; y=z\r\nc\r\n0\r\n"
       "Trailer-Field: v\r\n\r\n"),
     "POST /1 HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: chunked\n"
     "body=ab\nPOST /2 HTTP/1.1 ka=1 cl=- te=1 exp=0 head=0\nHost: h\nTransfer-Encoding: "
     "chunked\nbody=c\n",
     0},
    {"method that is not a token", S("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n"), "ERROR EINVALID\n", 0},
    {NULL, NULL, 0, NULL, 0},
};

static const char *err_name(wd_http_error_t e)
{
    switch (e) {
    case WD_HTTP_OK:
        return "OK";
    case WD_HTTP_EINVALID:
        return "EINVALID";
    case WD_HTTP_ETOO_MANY:
        return "ETOO_MANY";
    case WD_HTTP_EBODY_CB:
        return "EBODY_CB";
    case WD_HTTP_EUPGRADE:
        return "EUPGRADE";
    case WD_HTTP_ECODING:
        return "ECODING";
    case WD_HTTP_EVERSION:
        return "EVERSION";
    }
    return "?";
}

/* One simulated connection. */
typedef struct conn {
    wd_http_t http;
    const char *in;   /* the whole input, to check where heads end */
    char *buf;        /* the bytes so far (pos.. not yet consumed) */
    size_t avail;     /* bytes in buf */
    size_t pos;       /* bytes consumed */
    size_t msg_start; /* where the current message started */
    int failed;
    size_t body_limit;
    t_str_t body;
    t_str_t out;
    const char *name, *mode;
} conn_t;

static int body_cb(void *data, const char *at, size_t n)
{
    conn_t *c = data;

    t_str_addn(&c->body, at, n);
    return c->body_limit && c->body.n > c->body_limit ? -1 : 0;
}

static void record_head(conn_t *c)
{
    const wd_http_t *h = &c->http;
    wd_slice_t url = wd_http_slice(h, h->url);
    unsigned i;
    char cl[32] = "-";

    if (h->has_content_length)
        snprintf(cl, sizeof(cl), "%" PRIu64, h->content_length);
    wd_slice_t m = wd_http_method(h);

    t_str_addf(&c->out, "%.*s %.*s HTTP/%u.%u%s ka=%d cl=%s te=%d exp=%d head=%d\n", (int)m.n, m.p,
               (int)url.n, url.p, h->http_major, h->http_minor,
               h->request_minor != h->http_minor ? " (sent as a later minor)" : "", h->keep_alive,
               cl, h->chunked, h->expect_continue, h->is_head);
    for (i = 0; i < h->n_headers; i++) {
        wd_slice_t n = wd_http_slice(h, h->headers[i].name);
        wd_slice_t v = wd_http_slice(h, h->headers[i].value);
        t_str_addf(&c->out, "%.*s: %.*s\n", (int)n.n, n.p, (int)v.n, v.p);
    }
    /* The head is reported right after its blank line, never earlier or later. */
    T_CHECK(c->pos >= c->msg_start + 4 && memcmp(c->in + c->pos - 4, "\r\n\r\n", 4) == 0,
            "%s (%s): head ended at %zu, not after a blank line", c->name, c->mode, c->pos);
}

/* Feeds what is there, as the worker loop would. */
static void process(conn_t *c)
{
    for (;;) {
        wd_http_state_t before = c->http.state;
        int r;

        if (c->failed)
            return;
        c->http.base = c->buf;
        r = wd_http_feed(&c->http, c->buf + c->pos, c->avail - c->pos);
        if (r < 0) {
            T_CHECK(r == WD_PARSE_ERROR, "%s (%s): returned %d", c->name, c->mode, r);
            T_CHECK(c->http.error != WD_HTTP_OK, "%s (%s): error not set", c->name, c->mode);
            if (c->http.error == WD_HTTP_EINVALID)
                T_CHECK(c->http.llhttp_reason != NULL, "%s (%s): no reason", c->name, c->mode);
            t_str_addf(&c->out, "ERROR %s\n", err_name(c->http.error));
            c->failed = 1;
            /* The error sticks. */
            T_CHECK(wd_http_feed(&c->http, c->buf + c->pos, c->avail - c->pos) == WD_PARSE_ERROR,
                    "%s (%s): error not sticky", c->name, c->mode);
            return;
        }
        T_CHECK((size_t)r <= c->avail - c->pos, "%s (%s): consumed %d of %zu", c->name, c->mode, r,
                c->avail - c->pos);
        c->pos += (size_t)r;
        if (before == WD_HTTP_HEAD && c->http.state != WD_HTTP_HEAD)
            record_head(c);
        if (c->http.state == WD_HTTP_DONE) {
            t_str_addf(&c->out, "body=%s\n", t_str_get(&c->body));
            t_str_clear(&c->body);
            wd_http_reset(&c->http);
            c->msg_start = c->pos;
            continue;
        }
        if (r == 0 || c->pos == c->avail)
            return;
    }
}

static void conn_init(conn_t *c, const hcase_t *tc, const char *mode)
{
    memset(c, 0, sizeof(*c));
    wd_http_init(&c->http, body_cb, c);
    c->in = tc->in;
    c->body_limit = tc->body_limit;
    c->name = tc->name;
    c->mode = mode;
}

static void conn_finish(conn_t *c, const hcase_t *tc)
{
    if (!c->failed && (c->pos > c->msg_start || c->http.state != WD_HTTP_HEAD))
        t_str_addf(&c->out, "INCOMPLETE\n");
    T_CHECK(strcmp(t_str_get(&c->out), tc->want) == 0, "%s (%s): got\n%s--- want\n%s---", tc->name,
            c->mode, t_str_get(&c->out), tc->want);
    free(c->out.p);
    free(c->body.p);
}

static t_guard_t guard;

static void run_case(const hcase_t *tc)
{
    conn_t c;
    size_t i;
    char *fixed;

    /* (a) whole, ending right before an unreadable page. */
    conn_init(&c, tc, "whole");
    c.buf = t_guard_place(&guard, tc->in, tc->len);
    c.avail = tc->len;
    process(&c);
    conn_finish(&c, tc);

    /* (b) one byte at a time into one growing buffer. */
    conn_init(&c, tc, "bytewise");
    fixed = malloc(tc->len + 1);
    c.buf = fixed;
    for (i = 0; i < tc->len; i++) {
        fixed[i] = tc->in[i];
        c.avail = i + 1;
        process(&c);
    }
    conn_finish(&c, tc);
    free(fixed);

    /* (c) one byte at a time, the buffer moving to a new address at every byte. */
    conn_init(&c, tc, "bytewise moving");
    for (i = 0; i < tc->len; i++) {
        char *nb = malloc(i + 1);
        if (c.buf != NULL) {
            memcpy(nb, c.buf, i);
            memset(c.buf, 'Z', i);
            free(c.buf);
        }
        nb[i] = tc->in[i];
        c.buf = nb;
        c.avail = i + 1;
        process(&c);
    }
    conn_finish(&c, tc);
    free(c.buf);

    /* (d) one byte at a time, the bytes so far always ending at the unreadable page. */
    conn_init(&c, tc, "bytewise guarded");
    for (i = 0; i < tc->len; i++) {
        c.buf = t_guard_place(&guard, tc->in, i + 1);
        c.avail = i + 1;
        process(&c);
    }
    conn_finish(&c, tc);
}

/* Headers at and over the limit: built here rather than written out. */
static void test_many_headers(void)
{
    static char in[8192];
    static char want[8192];
    hcase_t tc;
    int n, i, len, wl;

    for (n = WD_HTTP_MAX_HEADERS; n <= WD_HTTP_MAX_HEADERS + 1; n++) {
        len = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: h\r\n");
        wl = snprintf(want, sizeof(want), "GET / HTTP/1.1 ka=1 cl=- te=0 exp=0 head=0\nHost: h\n");
        for (i = 0; i < n - 1; i++) { /* and Host */
            len += snprintf(in + len, sizeof(in) - (size_t)len, "X-H%d: v%d\r\n", i, i);
            wl += snprintf(want + wl, sizeof(want) - (size_t)wl, "X-H%d: v%d\n", i, i);
        }
        len += snprintf(in + len, sizeof(in) - (size_t)len, "\r\n");
        snprintf(want + wl, sizeof(want) - (size_t)wl, "body=\n");
        tc.name = n > WD_HTTP_MAX_HEADERS ? "101 headers" : "100 headers";
        tc.in = in;
        tc.len = (size_t)len;
        tc.want = n > WD_HTTP_MAX_HEADERS ? "ERROR ETOO_MANY\n" : want;
        tc.body_limit = 0;
        run_case(&tc);
    }
}

/* What wd_http_feed returns at each pause, as documented in http.h. */
static void test_pauses(void)
{
    static const char post[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET";
    static const char get[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    wd_http_t h;
    int r;

    /* A body follows: stop after the blank line in WD_HTTP_BODY; then the body, then DONE. */
    wd_http_init(&h, NULL, NULL);
    h.base = post;
    r = wd_http_feed(&h, post, sizeof(post) - 1);
    T_CHECK(r == 47 && h.state == WD_HTTP_BODY, "POST head: r=%d state=%d", r, h.state);
    r = wd_http_feed(&h, post + 47, 0);
    T_CHECK(r == 0 && h.state == WD_HTTP_BODY, "POST n=0: r=%d state=%d", r, h.state);
    r = wd_http_feed(&h, post + 47, 2);
    T_CHECK(r == 2 && h.state == WD_HTTP_BODY, "POST part: r=%d state=%d", r, h.state);
    r = wd_http_feed(&h, post + 49, sizeof(post) - 1 - 49);
    T_CHECK(r == 3 && h.state == WD_HTTP_DONE, "POST rest: r=%d state=%d", r, h.state);
    r = wd_http_feed(&h, post + 52, sizeof(post) - 1 - 52);
    T_CHECK(r == 0 && h.state == WD_HTTP_DONE, "DONE until reset: r=%d state=%d", r, h.state);
    wd_http_reset(&h);
    T_CHECK(h.state == WD_HTTP_HEAD && h.n_headers == 0, "reset");
    r = wd_http_feed(&h, post + 52, sizeof(post) - 1 - 52);
    T_CHECK(r == 3 && h.state == WD_HTTP_HEAD, "next head: r=%d state=%d", r, h.state);

    /* The body of a Content-Length message may be fed from another buffer (the worker reads it
     * straight into the body's own): on_body gets exactly those bytes, where they are. */
    {
        static const char head[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\n";
        static const char body[] = "bodyEND";
        conn_t c;

        memset(&c, 0, sizeof(c));
        wd_http_init(&h, body_cb, &c);
        h.base = head;
        r = wd_http_feed(&h, head, sizeof(head) - 1);
        T_CHECK(r == (int)sizeof(head) - 1 && h.state == WD_HTTP_BODY, "elsewhere head: r=%d", r);
        r = wd_http_feed(&h, body, 4);
        T_CHECK(r == 4 && h.state == WD_HTTP_BODY, "elsewhere part: r=%d state=%d", r, h.state);
        r = wd_http_feed(&h, body + 4, 3);
        T_CHECK(r == 3 && h.state == WD_HTTP_DONE, "elsewhere rest: r=%d state=%d", r, h.state);
        T_CHECK(strcmp(t_str_get(&c.body), "bodyEND") == 0, "elsewhere body: %s",
                t_str_get(&c.body));
        free(c.body.p);
    }

    /* No body: straight to DONE, having consumed exactly the head. */
    wd_http_init(&h, NULL, NULL);
    h.base = get;
    r = wd_http_feed(&h, get, sizeof(get) - 1);
    T_CHECK(r == 27 && h.state == WD_HTTP_DONE, "GET: r=%d state=%d", r, h.state);
    wd_http_reset(&h);
    r = wd_http_feed(&h, get + 27, sizeof(get) - 1 - 27);
    T_CHECK(r == 28 && h.state == WD_HTTP_DONE && h.url.off == 31 && h.url.len == 2,
            "second GET: r=%d state=%d url %u+%u", r, h.state, h.url.off, h.url.len);

    /* A connection that asked to close may still be reset and parse on (the caller decides). */
    {
        static const char c[] = "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        wd_http_init(&h, NULL, NULL);
        h.base = c;
        r = wd_http_feed(&h, c, sizeof(c) - 1);
        T_CHECK(r == 18 && h.state == WD_HTTP_DONE && !h.keep_alive, "1.0: r=%d", r);
        wd_http_reset(&h);
        r = wd_http_feed(&h, c + 18, sizeof(c) - 1 - 18);
        T_CHECK(r == 27 && h.state == WD_HTTP_DONE && h.keep_alive, "after 1.0: r=%d", r);
    }
}

int main(void)
{
    const hcase_t *tc;

    t_guard_init(&guard, 16384);
    for (tc = cases; tc->name != NULL; tc++)
        run_case(tc);
    test_many_headers();
    test_pauses();
    t_guard_free(&guard);
    return t_summary("http");
}
