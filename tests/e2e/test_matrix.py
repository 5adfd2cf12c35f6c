"""The bad-input matrix (issue #5, item 3): ONE table of cases. Each case says how to reach the
daemon (raw HTTP over TCP, raw uwsgi or raw FastCGI on its unix socket, or HTTP through nginx's
uwsgi_pass), the bytes to send (whole, in 1-byte writes, or in pieces with delays) and the expected
answer:

    S(400)          a 400 response, then the connection is closed
    S(200, 200)     those responses in order (pipelining), then closed
    KEEP(200)       a 200 and the connection stays open: a hello on it still works
    CLOSED          closed without a single byte of answer
    CUT(200)        a 200 head and part of the body, then closed before the end
    ANY(a, b...)    one of those outcomes (where the RFCs allow either)

and for FastCGI, whose answers are records:

    FEND(200)       "Status: 200" in STDOUT, then END_REQUEST (REQUEST_COMPLETE, or ps=...), and the
                    connection (FCGI_KEEP_CONN) serves a hello after it; FEND(413, keep=False): then
                    closed
    FREFUSED(ps)    END_REQUEST with protocol status ps and no STDOUT; the connection serves on
    FMGMT(types)    management answers (GET_VALUES_RESULT, UNKNOWN_TYPE); the connection serves on
                    (keep=False: closed after them)
    FCUT            STDOUT begun, then closed without END_REQUEST (the proxy sees the cut)

plus, for some, a check of a side effect (the app was never called; no injected header). After
each case the daemon must still answer a hello over the same transport, and the fixtures check that
nothing crashed, no fd leaked and nothing was logged at the alert level.
"""
import random
import socket
import struct
import time

import pytest

from helpers import fcgi
from helpers.clients import (HELLO, Conn, Incomplete, http_request, parse_response, uwsgi_call,
                             uwsgi_packet, uwsgi_request)
from helpers.nginx import uwsgi_location

LIMIT = 1024 * 1024  # limit-request-body of the matrix daemon


# --- expectations -------------------------------------------------------------------------------

class S:
    def __init__(self, *statuses):
        self.statuses = list(statuses)

    def __repr__(self):
        return "S%r" % (tuple(self.statuses),)


class KEEP:
    def __init__(self, status=200, n=1):
        self.status = status
        self.n = n      # pipelined: that many responses

    def __repr__(self):
        return "KEEP(%d)" % self.status


class CUT:
    def __init__(self, status=200):
        self.status = status

    def __repr__(self):
        return "CUT(%d)" % self.status


class _Closed:
    def __repr__(self):
        return "CLOSED"


CLOSED = _Closed()


class ANY:
    def __init__(self, *options):
        self.options = [S(o) if isinstance(o, int) else o for o in options]

    def __repr__(self):
        return "ANY%r" % (tuple(self.options),)


class FEND:
    def __init__(self, status=200, ps=fcgi.REQUEST_COMPLETE, keep=True):
        self.status, self.ps, self.keep = status, ps, keep

    def __repr__(self):
        return "FEND(%d, ps=%d%s)" % (self.status, self.ps, "" if self.keep else ", closed")


class FREFUSED:
    def __init__(self, ps):
        self.ps = ps

    def __repr__(self):
        return "FREFUSED(%d)" % self.ps


class FMGMT:
    def __init__(self, *rtypes, keep=True):
        self.rtypes, self.keep = list(rtypes), keep

    def __repr__(self):
        return "FMGMT%r" % (tuple(self.rtypes),)


class _FCut:
    def __repr__(self):
        return "FCUT"


FCUT = _FCut()


# --- how to send --------------------------------------------------------------------------------

class Case:
    def __init__(self, id, transport, data, expect, how="whole", shut=False, head=False,
                 not_called=None, absent=None, called=None, pieces=None, delay=0.0,
                 xfail=None):
        self.id = id
        self.transport = transport  # "tcp" | "unix" (raw uwsgi) | "nginx"
        self.data = data            # bytes, or a callable(conn) doing the sending
        self.expect = expect
        self.how = how              # "whole" | "bytes" (1-byte writes) | "pieces"
        self.shut = shut            # half-close after sending
        self.head = head            # responses to HEAD (no body)
        self.not_called = not_called  # "METHOD /path" the app must never see
        self.called = called        # "METHOD /path" the app must have seen exactly so
        self.absent = absent        # bytes that must not appear anywhere in the answer
        self.pieces = pieces        # for how="pieces": sizes of the writes
        self.delay = delay
        self.xfail = xfail          # a known bug (the diagnosis): the test must fail until fixed

    def param(self):
        marks = [pytest.mark.xfail(strict=True, reason=self.xfail)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


def H(method="GET", path="/hello", headers=None, body=b"", version="HTTP/1.1", **kw):
    return http_request(method, path, headers, body, version=version, **kw)


def raw_head(*lines):
    """A request head from exact lines (no Host added, nothing normalised)."""
    return b"\r\n".join(x if isinstance(x, bytes) else x.encode("latin-1") for x in lines) \
        + b"\r\n\r\n"


def chunked(*parts, last=b"0\r\n\r\n"):
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + last


def POST_TE(te, wire, extra=()):
    return raw_head("POST /echo HTTP/1.1", "Host: x", "Transfer-Encoding: " + te, *extra) + wire


def UW(variables, body=b"", **kw):
    return uwsgi_packet(variables, body, **kw)


def UVARS(**over):
    v = {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello", "REQUEST_URI": "/hello",
         "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
         "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost",
         "CONTENT_LENGTH": ""}
    v.update(over)
    return v


def vars_block_of(size):
    """uwsgi vars whose encoded block is exactly size bytes (a padding header fills it)."""
    base = UVARS()
    used = sum(4 + len(k) + len(v) for k, v in base.items())
    pad_key = "HTTP_X_PAD"
    pad = size - used - 4 - len(pad_key)
    assert pad >= 0
    base[pad_key] = "p" * pad
    pkt = uwsgi_packet(base)
    assert struct.unpack("<H", pkt[1:3])[0] == size
    return pkt


def truncated_block(key_len=None, val_len=None):
    """A vars block whose last key (or value) length runs past the end of the block."""
    good = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                    for k, v in [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/hello")])
    if key_len is not None:
        block = good + struct.pack("<H", key_len) + b"HTTP_X"
    else:
        block = good + struct.pack("<H", 6) + b"HTTP_X" + struct.pack("<H", val_len) + b"v"
    return struct.pack("<BHB", 0, len(block), 0) + block


def seeded_random(seed, n=512):
    return random.Random(seed).randbytes(n)


def expect_100_then_body(conn):
    conn.send(raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 5",
                       "Expect: 100-continue"))
    interim = conn.read_until(b"\r\n\r\n")
    assert interim.startswith(b"HTTP/1.1 100"), interim
    conn.send(b"hello")


def tls_client_hello():
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + b"\x00\x00"
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def fastcgi_begin():
    # FCGI_BEGIN_REQUEST, request id 1, role RESPONDER, flags 0; then an empty FCGI_PARAMS.
    return (b"\x01\x01\x00\x01\x00\x08\x00\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00"
            + b"\x01\x04\x00\x01\x00\x00\x00\x00")


FVARS = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/hello", "PATH_INFO": "/hello",
         "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
         "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}


def FC(body=b"", rid=1, keep=True, **over):
    """A FastCGI request as nginx's fastcgi_pass sends it (FVARS, changed by over; None drops)."""
    v = dict(FVARS, **over)
    return fcgi.request({k: x for k, x in v.items() if x is not None}, body, rid=rid, keep=keep)


def FPOST(body, **over):
    return FC(body, REQUEST_METHOD="POST", PATH_INFO="/echo", REQUEST_URI="/echo", **over)


def fc_records(*recs):
    return b"".join(fcgi.record(*r) for r in recs)


def fc_padded(rid=1):
    """Every record padded to a multiple of 8 the way the spec suggests (and 255 once)."""
    params = fcgi.pairs(FVARS)
    return (fcgi.begin(rid, keep=True)[:6] + b"\x07\x00" + fcgi.begin(rid, keep=True)[8:]
            + b"\0" * 7 + fcgi.record(fcgi.PARAMS, rid, params, padding=(-len(params)) % 8)
            + fcgi.record(fcgi.PARAMS, rid, b"", padding=255) + fcgi.record(fcgi.STDIN, rid))


def fc_params_split(rid=1):
    """PARAMS in records of 3 bytes each (pairs cut anywhere), one value with a 4-byte length."""
    params = fcgi.pairs(dict(FVARS, HTTP_X_LONG="l" * 300))
    out = fcgi.begin(rid, keep=True)
    for i in range(0, len(params), 3):
        out += fcgi.record(fcgi.PARAMS, rid, params[i:i + 3])
    return out + fcgi.record(fcgi.PARAMS, rid) + fcgi.record(fcgi.STDIN, rid)


def fc_bad_pairs(tail):
    """PARAMS whose last pair's lengths run past the stream."""
    return (fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(FVARS) + tail)
            + fcgi.record(fcgi.PARAMS, 1) + fcgi.record(fcgi.STDIN, 1))


# --- the table ----------------------------------------------------------------------------------

T, U, N, NT, F = "tcp", "unix", "nginx", "nginx-tcp", "fastcgi"
BIG = b"a" * 70000
MANY = [("X-H%d" % i, "v") for i in range(150)]

CASES = [
    # Malformed request lines.
    Case("line-http09", T, b"GET /hello\r\n\r\n", S(400)),
    Case("line-version-9.9", T, raw_head("GET /hello HTTP/9.9", "Host: x"), ANY(400, 505)),
    Case("line-version-garbage", T, raw_head("GET /hello HTTP/1.x", "Host: x"), S(400)),
    # RFC 9110 9.1: a method is any token, and the app decides what it means (llhttp 8.1 knows a
    # fixed list: the rest is parsed again with a stand-in, see protocol/http.c).
    Case("line-unknown-method", T, raw_head("FROB /hello HTTP/1.1", "Host: x"), KEEP(200),
         called="FROB /hello"),
    Case("line-extension-method-query", T, raw_head("QUERY /hello HTTP/1.1", "Host: x"),
         KEEP(200), called="QUERY /hello"),
    Case("line-extension-method-dash", T, raw_head("-BLARGH /hello HTTP/1.1", "Host: x"),
         KEEP(200), called="-BLARGH /hello"),
    Case("line-extension-method-bytewise", T, raw_head("FOO /hello HTTP/1.1", "Host: x"),
         KEEP(200), how="bytes", called="FOO /hello"),
    Case("line-extension-method-prefix", T, raw_head("GETX /hello HTTP/1.1", "Host: x"),
         KEEP(200), called="GETX /hello"),
    Case("line-extension-method-body", T,
         raw_head("QUERY /echo HTTP/1.1", "Host: x", "Content-Length: 5") + b"hello", KEEP(200),
         called="QUERY /echo"),
    Case("line-extension-method-no-host", T, raw_head("FOO /hello HTTP/1.1"), S(400),
         not_called="FOO /hello"),
    Case("line-lowercase-method", T, raw_head("get /hello HTTP/1.1", "Host: x"), KEEP(200),
         called="get /hello"),
    Case("line-extension-method-nginx", N, raw_head("QUERY /hello HTTP/1.1", "Host: x"),
         KEEP(200), called="QUERY /hello"),
    # RFC 9110 2.5: a later minor version of HTTP/1 is processed as HTTP/1.1.
    Case("line-version-1.2", T, raw_head("GET /hello HTTP/1.2", "Host: x"), KEEP(200),
         called="GET /hello"),
    Case("line-version-1.2-bytewise", T, raw_head("GET /hello HTTP/1.2", "Host: x"), KEEP(200),
         how="bytes", called="GET /hello"),
    Case("line-version-1.2-no-host", T, raw_head("GET /hello HTTP/1.2"), S(400),
         not_called="GET /hello"),
    Case("line-method-not-a-token", T, raw_head("GE(T /hello HTTP/1.1", "Host: x"), S(400)),
    # RFC 9112 3.2: origin-form, absolute-form, or * for OPTIONS only.
    Case("target-asterisk-get", T, raw_head("GET * HTTP/1.1", "Host: x"), S(400)),
    Case("target-no-slash", T, raw_head("GET hello HTTP/1.1", "Host: x"), S(400)),
    Case("target-absolute-no-authority", T, raw_head("GET http:///hello HTTP/1.1", "Host: x"),
         S(400)),
    Case("target-absolute", T, raw_head("GET http://x/hello HTTP/1.1", "Host: x"), KEEP(200)),
    Case("target-asterisk-options", T, raw_head("OPTIONS * HTTP/1.1", "Host: x"), KEEP(404),
         called="OPTIONS *"),
    # RFC 9112 3.2: Host, once, in every HTTP/1.1 request.
    Case("host-missing", T, raw_head("GET /hello HTTP/1.1", "X: y"), S(400)),
    Case("host-missing-http10", T, raw_head("GET /hello HTTP/1.0"), S(200)),
    Case("host-twice", T, raw_head("GET /hello HTTP/1.1", "Host: a", "Host: b"), S(400),
         not_called="GET /hello"),
    Case("host-twice-same", T, raw_head("GET /hello HTTP/1.1", "Host: a", "host: a"), S(400)),
    Case("host-invalid-space", T, raw_head("GET /hello HTTP/1.1", "Host: a b"), S(400),
         not_called="GET /hello"),
    Case("host-userinfo", T, raw_head("GET /hello HTTP/1.1", "Host: user@a"), S(400)),
    Case("host-bad-port", T, raw_head("GET /hello HTTP/1.1", "Host: a:8o"), S(400)),
    Case("host-ipv6-port", T, raw_head("GET /hello HTTP/1.1", "Host: [::1]:80"), KEEP(200)),
    # RFC 9110 6.2: a later major version gets a 505.
    Case("line-version-2.0", T, raw_head("GET /hello HTTP/2.0", "Host: x"), S(505)),
    # RFC 9110 5.3: a field that is not a list, given twice.
    Case("content-type-twice", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Type: a/b",
                                           "Content-Type: c/d", "Content-Length: 0"), S(400),
         not_called="POST /echo"),
    Case("authorization-twice", T, raw_head("GET /hello HTTP/1.1", "Host: x", "Authorization: a",
                                            "Authorization: b"), S(400)),
    # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; codings other than chunked.
    Case("te-chunked-http10", T, raw_head("POST /echo HTTP/1.0", "Transfer-Encoding: chunked")
         + chunked(b"hello"), S(400), not_called="POST /echo"),
    Case("te-gzip-chunked", T, POST_TE("gzip, chunked", chunked(b"hello")), S(501),
         not_called="POST /echo"),
    # RFC 9112 3: a recipient MAY split the request line on whitespace runs.
    Case("line-two-spaces", T, raw_head("GET  /hello HTTP/1.1", "Host: x"),
         ANY(400, KEEP(200))),
    Case("line-tab", T, raw_head("GET\t/hello HTTP/1.1", "Host: x"), S(400)),
    Case("line-no-target", T, raw_head("GET HTTP/1.1", "Host: x"), S(400)),
    Case("line-space-in-uri", T, raw_head("GET /a b HTTP/1.1", "Host: x"), S(400),
         not_called="GET /a"),
    Case("line-nul-in-uri", T, raw_head(b"GET /a\x00b HTTP/1.1", "Host: x"), S(400)),
    Case("line-del-in-uri", T, raw_head(b"GET /a\x7fb HTTP/1.1", "Host: x"), S(400)),
    Case("line-cr-in-uri", T, raw_head(b"GET /a\rb HTTP/1.1", "Host: x"), S(400)),
    Case("line-only-crlf-then-eof", T, b"\r\n\r\n", ANY(CLOSED, 400), shut=True),
    Case("uri-70k", T, raw_head("GET /" + "u" * 70000 + " HTTP/1.1", "Host: x"), S(414)),
    # Headers.
    Case("header-70k", T, H(headers={"X-Big": BIG.decode()}), S(431)),
    Case("header-many-small", T, H(headers=MANY), S(431)),
    Case("header-name-space", T, raw_head("GET /hello HTTP/1.1", "Host: x", "X Bad: 1"), S(400)),
    Case("header-space-before-colon", T, raw_head("GET /hello HTTP/1.1", "Host : x"), S(400)),
    Case("header-no-colon", T, raw_head("GET /hello HTTP/1.1", "Host: x", "JustText"), S(400)),
    Case("header-empty-name", T, raw_head("GET /hello HTTP/1.1", "Host: x", ": v"), S(400)),
    Case("header-nul-in-value", T, raw_head(b"GET /hello HTTP/1.1", b"Host: x", b"X: a\x00b"),
         S(400)),
    Case("header-cr-in-value", T, raw_head(b"GET /hello HTTP/1.1", b"Host: x", b"X: a\rb"),
         S(400)),
    Case("header-lf-in-name", T, raw_head(b"GET /hello HTTP/1.1", b"Host: x", b"X\nY: a"),
         S(400)),
    Case("header-del-in-value", T, raw_head(b"GET /hello HTTP/1.1", b"Host: x", b"X: a\x7fb"),
         ANY(400, KEEP(200))),
    Case("header-obs-fold", T, raw_head("GET /hello HTTP/1.1", "Host: x", "X: a", " folded"),
         S(400)),
    Case("header-latin1-value", T, raw_head(b"GET /hello HTTP/1.1", b"Host: x", b"X: caf\xe9"),
         KEEP(200)),
    Case("header-bare-lf-lines", T, b"GET /hello HTTP/1.1\nHost: x\n\n", ANY(400, KEEP(200))),
    # Smuggling shapes.
    Case("cl-and-te", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 5",
                                  "Transfer-Encoding: chunked") + chunked(b"hello"), S(400),
         not_called="POST /echo"),
    Case("te-and-cl", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Transfer-Encoding: chunked",
                                  "Content-Length: 5") + chunked(b"hello"), S(400),
         not_called="POST /echo"),
    Case("cl-two-different", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 5",
                                         "Content-Length: 6") + b"hello!", S(400),
         not_called="POST /echo"),
    Case("cl-two-same", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 5",
                                    "Content-Length: 5") + b"hello", ANY(400, KEEP(200))),
    Case("cl-list", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 5, 5")
         + b"hello", ANY(400, KEEP(200))),
    Case("cl-plus", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: +5")
         + b"hello", S(400), not_called="POST /echo"),
    Case("cl-minus", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: -5")
         + b"hello", S(400), not_called="POST /echo"),
    Case("cl-hex", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 0x5")
         + b"hello", S(400), not_called="POST /echo"),
    Case("cl-inner-space", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 1 0")
         + b"0123456789", S(400), not_called="POST /echo"),
    Case("cl-ows-around", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length:  5  ")
         + b"hello", KEEP(200), called="POST /echo"),
    Case("cl-overflow", T, raw_head("POST /echo HTTP/1.1", "Host: x",
                                    "Content-Length: 184467440737095516160") + b"x",
         ANY(400, 413), not_called="POST /echo"),
    Case("te-chunked-identity", T, POST_TE("chunked, identity", chunked(b"hello")),
         ANY(400, 501), not_called="POST /echo"),
    Case("te-identity-chunked", T, POST_TE("identity, chunked", chunked(b"hello")),
         ANY(400, 501, KEEP(200))),
    Case("te-chunked-twice", T, POST_TE("chunked, chunked", chunked(b"hello")), S(400),
         not_called="POST /echo"),
    Case("te-two-headers", T, POST_TE("chunked", chunked(b"hello"),
                                      extra=["Transfer-Encoding: chunked"]),
         ANY(400, KEEP(200))),
    Case("te-obfuscated-space", T, raw_head("POST /echo HTTP/1.1", "Host: x",
                                            "Transfer-Encoding : chunked") + chunked(b"hello"),
         S(400), not_called="POST /echo"),
    Case("te-xchunked", T, POST_TE("xchunked", chunked(b"hello")), ANY(400, 501),
         not_called="POST /echo"),
    Case("te-gzip", T, POST_TE("gzip", b"hello"), ANY(400, 501), not_called="POST /echo"),
    Case("te-tab-ows", T, POST_TE("\tchunked", chunked(b"hello")), KEEP(200),
         called="POST /echo"),
    Case("te-in-http10", T, raw_head("POST /echo HTTP/1.0", "Host: x",
                                     "Transfer-Encoding: chunked") + chunked(b"hello"),
         ANY(400, S(200))),
    # Chunk framing.
    Case("chunk-size-not-hex", T, POST_TE("chunked", b"zz\r\nhello\r\n0\r\n\r\n"), S(400),
         not_called="POST /echo"),
    Case("chunk-size-overflow", T, POST_TE("chunked", b"1" + b"0" * 20 + b"\r\nhello\r\n"),
         ANY(400, 413), not_called="POST /echo"),
    Case("chunk-size-negative", T, POST_TE("chunked", b"-5\r\nhello\r\n0\r\n\r\n"), S(400),
         not_called="POST /echo"),
    Case("chunk-size-0x", T, POST_TE("chunked", b"0x5\r\nhello\r\n0\r\n\r\n"), S(400),
         not_called="POST /echo"),
    Case("chunk-data-longer", T, POST_TE("chunked", b"5\r\nhelloXX\r\n0\r\n\r\n"), S(400),
         not_called="POST /echo"),
    Case("chunk-extension", T, POST_TE("chunked", b"5;name=value\r\nhello\r\n0\r\n\r\n"),
         KEEP(200), called="POST /echo"),
    # RFC 9112 7.1.1: BWS around ";" and "=", several extensions, quoted values with pairs.
    Case("chunk-extension-bws", T,
         POST_TE("chunked", b"5 ; a = 1 ;\tb\t=\t\"x y\"\r\nhello\r\n0 ; end\r\n\r\n"),
         KEEP(200), called="POST /echo"),
    Case("chunk-extension-bws-bytewise", T,
         POST_TE("chunked", b"5 ; a = 1\r\nhello\r\n0\r\n\r\n"), KEEP(200), how="bytes",
         called="POST /echo"),
    Case("chunk-extensions-token-values", T,
         POST_TE("chunked", b"5;a=1;b=2;c\r\nhello\r\n0;d=\"q\\\"p;\"\r\n\r\n"), KEEP(200),
         called="POST /echo"),
    # A CR must be followed by LF in the framing (llhttp took any byte outside its strict mode).
    Case("chunk-size-cr-not-lf", T, POST_TE("chunked", b"5\rXhello\r\n0\r\n\r\n"), S(400),
         not_called="POST /echo"),
    Case("chunk-data-cr-not-lf", T, POST_TE("chunked", b"5\r\nhello\rX0\r\n\r\n"), S(400),
         not_called="POST /echo"),
    Case("chunk-last-cr-not-lf", T, POST_TE("chunked", b"5\r\nhello\r\n0\rX\r\n"), S(400),
         not_called="POST /echo"),
    Case("chunk-size-trailing-space", T, POST_TE("chunked", b"5 \r\nhello\r\n0\r\n\r\n"),
         S(400), not_called="POST /echo"),
    Case("chunk-size-line-too-long", T,
         POST_TE("chunked", b"5;a=" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), S(400),
         not_called="POST /echo"),
    Case("chunk-trailer", T, POST_TE("chunked", b"5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n"),
         KEEP(200), called="POST /echo"),
    Case("chunk-missing-final-crlf", T, POST_TE("chunked", b"5\r\nhello\r\n0\r\n"), CLOSED,
         shut=True, not_called="POST /echo"),
    Case("chunk-cut-in-data", T, POST_TE("chunked", b"10\r\nhello"), CLOSED, shut=True,
         not_called="POST /echo"),
    Case("chunk-over-limit", T, POST_TE("chunked", chunked(b"c" * 700000, b"c" * 700000)),
         S(413), not_called="POST /echo"),
    # Bodies.
    Case("body-over-limit-announced", T, raw_head("POST /echo HTTP/1.1", "Host: x",
                                                  "Content-Length: %d" % (LIMIT + 1)),
         S(413), not_called="POST /echo"),
    Case("body-at-limit", T, H("POST", "/echo", body=b"l" * LIMIT), KEEP(200),
         called="POST /echo"),
    Case("body-cut-short", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 100")
         + b"0123456789", CLOSED, shut=True, not_called="POST /echo"),
    Case("body-get-with-body", T, H("GET", "/echo", body=b"ignored?"), KEEP(200)),
    # Other protocols' prefaces.
    Case("preface-http2", T, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ANY(400, 501, 505, CLOSED)),
    Case("preface-tls", T, tls_client_hello(), ANY(CLOSED, 400), shut=True),
    Case("preface-ssh", T, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", ANY(400, CLOSED), shut=True),
    Case("preface-fastcgi", T, fastcgi_begin(), ANY(CLOSED, 400), shut=True),
    Case("preface-proxy-v1", T, b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n" + H(), S(400),
         not_called="GET /hello"),
    Case("preface-proxy-v2", T, b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes(12),
         ANY(CLOSED, 400), shut=True),
    # Pipelining.
    Case("pipe-three", T, H() + H("GET", "/env") + H(), KEEP(200, n=3)),
    Case("pipe-close-in-middle", T, H() + H(headers={"Connection": "close"})
         + H("GET", "/third"), S(200, 200), not_called="GET /third"),
    Case("pipe-then-garbage", T, H() + b"GARBAGE\r\n\r\n", S(200, 400)),
    Case("pipe-posts", T, H("POST", "/echo", body=b"one") + H("POST", "/echo", body=b"two")
         + H(headers={"Connection": "close"}), S(200, 200, 200)),
    # Tiny writes and delays.
    Case("split-head-1byte", T, H("GET", "/env"), KEEP(200), how="bytes"),
    Case("split-body-1byte", T, H("POST", "/echo", body=b"0123456789" * 5), KEEP(200),
         how="bytes"),
    Case("split-chunked-1byte", T, POST_TE("chunked", chunked(b"hello", b"world")), KEEP(200),
         how="bytes"),
    Case("split-head-delays", T, H("GET", "/env"), KEEP(200), how="pieces",
         pieces=[3, 10, 1, 5], delay=0.2),
    Case("split-crlf-between-writes", T, H("GET", "/env"), KEEP(200), how="pieces",
         pieces=[len(H("GET", "/env")) - 3, 1, 1], delay=0.1),
    # HEAD, Expect, forms of target, methods the daemon does not serve.
    Case("head-hello", T, H("HEAD", "/hello"), KEEP(200), head=True),
    Case("head-big", T, H("HEAD", "/big"), KEEP(200), head=True),
    Case("expect-100", T, expect_100_then_body, KEEP(200), called="POST /echo"),
    Case("expect-100-over-limit", T, raw_head("POST /echo HTTP/1.1", "Host: x",
                                              "Content-Length: %d" % (LIMIT * 2),
                                              "Expect: 100-continue"), S(413),
         not_called="POST /echo", absent=b" 100 "),
    Case("expect-100-http10", T, raw_head("POST /echo HTTP/1.0", "Host: x", "Content-Length: 5",
                                          "Expect: 100-continue") + b"hello", S(200),
         absent=b" 100 "),
    Case("expect-unknown", T, raw_head("POST /echo HTTP/1.1", "Host: x", "Content-Length: 5",
                                       "Expect: teapot") + b"hello", ANY(417, KEEP(200))),
    Case("absolute-form", T, raw_head("GET http://example.com/env?q=1 HTTP/1.1",
                                      "Host: example.com"), KEEP(200), called="GET /env"),
    Case("options-star", T, raw_head("OPTIONS * HTTP/1.1", "Host: x"),
         ANY(KEEP(200), KEEP(404), KEEP(204), 400, 501)),
    Case("connect", T, raw_head("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"),
         S(501)),
    Case("upgrade-websocket", T, raw_head("GET /hello HTTP/1.1", "Host: x",
                                          "Connection: Upgrade", "Upgrade: websocket",
                                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                          "Sec-WebSocket-Version: 13"), S(501)),
    Case("http10-close", T, raw_head("GET /hello HTTP/1.0", "Host: x"), S(200)),
    Case("http10-keepalive", T, raw_head("GET /hello HTTP/1.0", "Host: x",
                                         "Connection: keep-alive"), KEEP(200)),
    # Raw uwsgi.
    Case("uwsgi-truncated-header", U, b"\x00\x10", CLOSED, shut=True),
    Case("uwsgi-truncated-vars", U, UW(UVARS())[:30], CLOSED, shut=True),
    Case("uwsgi-truncated-body", U, UW(UVARS(REQUEST_METHOD="POST", PATH_INFO="/echo",
                                             CONTENT_LENGTH="10"), b"01234"), CLOSED,
         shut=True, not_called="POST /echo"),
    Case("uwsgi-key-past-block", U, truncated_block(key_len=500), ANY(400, CLOSED)),
    Case("uwsgi-value-past-block", U, truncated_block(val_len=500), ANY(400, CLOSED)),
    Case("uwsgi-stray-byte", U, (lambda p: struct.pack("<BHB", 0, len(p) + 1, 0) + p + b"\x07")(
        UW(UVARS())[4:]), ANY(400, CLOSED)),
    # No REQUEST_METHOD nor PATH_INFO: served as "/" today (doubtful; nginx always sends them).
    Case("uwsgi-empty-vars", U, b"\x00\x00\x00\x00", ANY(400, CLOSED, S(404))),
    Case("uwsgi-no-method", U, UW({"PATH_INFO": "/hello"}), ANY(400, S(200))),
    Case("uwsgi-modifier1-1", U, UW(UVARS(), modifier1=1), CLOSED, not_called="GET /hello"),
    Case("uwsgi-modifier1-5", U, UW(UVARS(), modifier1=5), CLOSED, not_called="GET /hello"),
    Case("uwsgi-modifier1-255", U, UW(UVARS(), modifier1=255), CLOSED,
         not_called="GET /hello"),
    Case("uwsgi-cl-empty", U, UW(UVARS(REQUEST_METHOD="POST", PATH_INFO="/echo",
                                       CONTENT_LENGTH="")), S(200), called="POST /echo"),
    Case("uwsgi-cl-0", U, UW(UVARS(REQUEST_METHOD="POST", PATH_INFO="/echo",
                                   CONTENT_LENGTH="0")), S(200), called="POST /echo"),
    Case("uwsgi-cl-abc", U, UW(UVARS(REQUEST_METHOD="POST", PATH_INFO="/echo",
                                     CONTENT_LENGTH="abc")), S(400), not_called="POST /echo"),
    Case("uwsgi-cl-minus1", U, UW(UVARS(REQUEST_METHOD="POST", PATH_INFO="/echo",
                                        CONTENT_LENGTH="-1")), S(400), not_called="POST /echo"),
    Case("uwsgi-cl-huge", U, UW(UVARS(REQUEST_METHOD="POST", PATH_INFO="/echo",
                                      CONTENT_LENGTH="99999999999999999999999")),
         ANY(400, 413), not_called="POST /echo"),
    Case("uwsgi-cl-over-limit", U, UW(UVARS(REQUEST_METHOD="POST", PATH_INFO="/echo",
                                            CONTENT_LENGTH=str(LIMIT + 1))), S(413),
         not_called="POST /echo"),
    Case("uwsgi-vars-65535", U, vars_block_of(65535), S(200), called="GET /hello"),
    Case("uwsgi-vars-65535-1byte", U, vars_block_of(65535), S(200), how="pieces",
         pieces=[1, 1, 1, 1, 1000, 1], delay=0.05),
    Case("uwsgi-split-1byte", U, UW(UVARS(REQUEST_METHOD="POST", PATH_INFO="/echo",
                                          CONTENT_LENGTH="5"), b"hello"), S(200), how="bytes"),
    Case("uwsgi-http-smuggled-in-body", U, UW(UVARS(CONTENT_LENGTH="0")) + H("GET", "/inner"),
         S(200), not_called="GET /inner"),
] + [
    Case("random-%d-%s" % (seed, t), t, seeded_random(seed), ANY(CLOSED, 400), shut=True)
    for seed in range(1, 5) for t in (T, U)
] + [
    # App mistakes (design §8), over raw HTTP, raw uwsgi and nginx.
    Case("app-%s-%s" % (name, t), t,
         H("GET", "/m/" + name) if t != U else UW(UVARS(PATH_INFO="/m/" + name)),
         (KEEP(500) if t == T else S(500)) if exp == 500 else exp,
         absent=b"Injected" if "crlf" in name or name in ("header-lf", "header-cr") else None)
    for name, exp in [("non-bytes", 500), ("non-bytes-int", 500), ("bad-status", 500),
                      ("status-crlf", 500), ("header-crlf", 500), ("header-lf", 500),
                      ("header-cr", 500), ("header-name-crlf", 500),
                      ("header-name-space", 500), ("header-latin1", 500),
                      ("header-not-str", 500), ("hop-connection", 500), ("hop-te", 500),
                      ("hop-keep-alive", 500), ("start-twice", 500), ("raise-before", 500),
                      ("no-start-response", 500), ("return-none", 500),
                      ("gen-raise", CUT(200))]
    for t in (T, U)
] + [
    Case("app-cl-too-short-tcp", T, H("GET", "/m/cl-too-short"), ANY(S(200), 500),
         absent=b"56789"),
    # Through nginx (uwsgi_pass): what a real deployment sees.
    Case("nginx-hello-big-header", N, H(headers={"X-Big": "n" * 50000,
                                                 "Connection": "close"}), S(200)),
    Case("nginx-chunked-body", N, POST_TE("chunked", chunked(b"hello", b"world"),
                                          extra=["Connection: close"]), S(200),
         called="POST /echo"),
    Case("nginx-body-over-limit", N, H("POST", "/echo", {"Connection": "close"},
                                       body=b"o" * (LIMIT + 10)), S(413),
         not_called="POST /echo"),
    Case("nginx-body-cut-short", N, raw_head("POST /echo HTTP/1.1", "Host: x",
                                             "Content-Length: 100") + b"0123456789",
         ANY(CLOSED, 400), shut=True, not_called="POST /echo"),
    Case("nginx-header-crlf", N, H("GET", "/m/header-crlf", {"Connection": "close"}),
         ANY(500, 502), absent=b"Injected"),
    Case("nginx-non-bytes", N, H("GET", "/m/non-bytes", {"Connection": "close"}), S(500)),
    # A body cut after the head: over TCP the worker resets the connection and nginx cuts the
    # client's answer too. Over a unix socket no reset exists (close is an EOF): nginx cannot
    # tell a close-delimited uwsgi body cut short from a whole one; the client gets the part.
    Case("nginx-tcp-gen-raise", NT, H("GET", "/m/gen-raise", {"Connection": "close"}),
         CUT(200)),
    Case("nginx-unix-gen-raise", N, H("GET", "/m/gen-raise", {"Connection": "close"}),
         S(200)),
    Case("nginx-pipe-close-in-middle", N, H() + H(headers={"Connection": "close"})
         + H("GET", "/third"), S(200, 200), not_called="GET /third"),
] + [
    # FastCGI on the unix socket (protocol: auto), as a proxy's fastcgi_pass would send it.
    Case("fcgi-hello", F, FC(), FEND(200), called="GET /hello"),
    Case("fcgi-hello-1byte", F, FC(), FEND(200), how="bytes"),
    Case("fcgi-hello-pieces", F, FC(), FEND(200), how="pieces", pieces=[1, 7, 9, 100],
         delay=0.05),
    Case("fcgi-padding", F, fc_padded(), FEND(200)),
    Case("fcgi-params-split", F, fc_params_split(), FEND(200)),
    Case("fcgi-other-ids-ignored", F, (lambda r: r[:16] + fc_records(
        (fcgi.PARAMS, 9, b"\x01\x01ab"), (fcgi.STDIN, 9, b"x"), (fcgi.ABORT_REQUEST, 9)) + r[16:])(
            FC()), FEND(200), called="GET /hello"),
    Case("fcgi-post-echo", F, FPOST(b"hello", CONTENT_LENGTH="5"), FEND(200),
         called="POST /echo"),
    Case("fcgi-post-no-length", F, FPOST(b"hello"), FEND(200), called="POST /echo"),
    Case("fcgi-cl-minus1", F, FPOST(b"hello", CONTENT_LENGTH="-1"), FEND(200),
         called="POST /echo"),
    Case("fcgi-cl-abc", F, FPOST(b"hello", CONTENT_LENGTH="abc"), FEND(400, keep=False),
         not_called="POST /echo"),
    Case("fcgi-cl-huge", F, FPOST(b"", CONTENT_LENGTH="99999999999999999999999"),
         ANY(FEND(400, keep=False), FEND(413, keep=False)), not_called="POST /echo"),
    Case("fcgi-cl-over-limit", F, FPOST(b"", CONTENT_LENGTH=str(LIMIT + 1)),
         FEND(413, keep=False), not_called="POST /echo"),
    Case("fcgi-stdin-past-cl", F, FPOST(b"hello, world", CONTENT_LENGTH="5"),
         FEND(400, keep=False), not_called="POST /echo"),
    Case("fcgi-params-over-buffer", F, FC(HTTP_X_BIG="b" * 70000), FEND(431, keep=False),
         not_called="GET /hello"),
    Case("fcgi-pair-name-past-end", F, fc_bad_pairs(b"\x7f\x01ab"), FEND(400, keep=False)),
    Case("fcgi-pair-4byte-length-past-end", F, fc_bad_pairs(b"\x80\x00\x10\x00\x01abc"),
         FEND(400, keep=False)),
    Case("fcgi-unknown-role", F, fcgi.begin(1, role=fcgi.AUTHORIZER, keep=True),
         FREFUSED(fcgi.UNKNOWN_ROLE)),
    Case("fcgi-filter-role", F, fcgi.begin(1, role=3, keep=True), FREFUSED(fcgi.UNKNOWN_ROLE)),
    Case("fcgi-abort-before-run", F, fcgi.begin(1, keep=True) + fc_records(
        (fcgi.PARAMS, 1, fcgi.pairs(dict(FVARS, PATH_INFO="/never"))), (fcgi.ABORT_REQUEST, 1)),
         FREFUSED(fcgi.REQUEST_COMPLETE), not_called="GET /never"),
    Case("fcgi-get-values", F, fc_records((fcgi.GET_VALUES, 0, fcgi.pairs(
        {"FCGI_MAX_CONNS": "", "FCGI_MPXS_CONNS": ""}))), FMGMT(fcgi.GET_VALUES_RESULT),
         how="bytes"),
    Case("fcgi-unknown-management", F, fc_records((fcgi.GET_VALUES, 0, b""), (200, 0, b"\0" * 8)),
         FMGMT(fcgi.GET_VALUES_RESULT, fcgi.UNKNOWN_TYPE)),
    # An application record on the management id: not FastCGI's; closed.
    Case("fcgi-stdin-on-id-0", F, fc_records((fcgi.GET_VALUES, 0, b""), (fcgi.STDIN, 0, b"x")),
         FMGMT(fcgi.GET_VALUES_RESULT, keep=False)),
    Case("fcgi-version-2", F, fcgi.begin(1, keep=True) + b"\x02" + fcgi.record(
        fcgi.PARAMS, 1)[1:], CLOSED, shut=True, not_called="GET /hello"),
    Case("fcgi-stdout-from-proxy", F, fcgi.begin(1, keep=True) + fcgi.record(
        fcgi.STDOUT, 1, b"x"), CLOSED, not_called="GET /hello"),
    Case("fcgi-record-cut", F, fcgi.begin(1, keep=True) + b"\x01\x04\x00\x01\xff\xff\x00\x00"
         + b"p" * 10, CLOSED, shut=True, not_called="GET /hello"),
    Case("fcgi-header-cut", F, fcgi.begin(1, keep=True)[:5], CLOSED, shut=True),
    Case("fcgi-random-after-begin", F, fcgi.begin(1, keep=True) + seeded_random(7),
         ANY(CLOSED, FEND(400, keep=False)), shut=True, not_called="GET /hello"),
    Case("fcgi-app-raise-before", F, FC(PATH_INFO="/m/raise-before"), FEND(500)),
    Case("fcgi-app-header-crlf", F, FC(PATH_INFO="/m/header-crlf"), FEND(500),
         absent=b"Injected"),
    Case("fcgi-app-gen-raise", F, FC(PATH_INFO="/m/gen-raise"), FCUT),
]


# --- running a case -----------------------------------------------------------------------------

def _send(conn, case):
    if callable(case.data):
        case.data(conn)
    elif case.how == "whole":
        conn.send(case.data)
    elif case.how == "bytes":
        if conn.sock.family == socket.AF_INET:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(case.data)):
            conn.send(case.data[i:i + 1])
            if i % 16 == 15:
                time.sleep(0.001)
    else:
        pos = 0
        for n in case.pieces:
            conn.send(case.data[pos:pos + n])
            pos += n
            time.sleep(case.delay)
        conn.send(case.data[pos:])
    if case.shut:
        conn.shut_wr()


def _responses(data, head):
    """Every complete response in data; then whether bytes were left (a cut response)."""
    out = []
    while data:
        try:
            r, used = parse_response(data, head_only=head)
        except Incomplete:
            try:
                r, used = parse_response(data, head_only=head, eof=True)
            except Incomplete:
                return out, data
            if r.header("Content-Length") is None and "chunked" not in (
                    r.header("Transfer-Encoding") or "").lower():
                out.append(r)   # close-delimited (uwsgi answers)
                return out, b""
            return out, data
        except ValueError:
            return out, data
        out.append(r)
        data = data[used:]
    return out, b""


def _outcome(conn, case, expect):
    """Returns None if the answer matches expect, else a description of what came."""
    head = case.head
    if isinstance(expect, KEEP):
        try:
            r = conn.response(head_only=head)
        except (AssertionError, OSError) as e:
            return "no response kept open: %s" % e
        if r.status != expect.status:
            return "status %d, expected %d: %r" % (r.status, expect.status, r)
        if r.header("Connection", "").lower() == "close":
            return "Connection: close, expected the connection kept: %r" % r
        conn.sock.settimeout(5)
        for _ in range(expect.n - 1):
            r = conn.response()
            if r.status != 200:
                return "pipelined answer %r" % r
        conn.send(H("GET", "/hello"))
        try:
            r2 = conn.response()
        except (AssertionError, OSError) as e:
            return "the kept connection does not answer a hello: %s" % e
        if r2.status != 200 or r2.body != HELLO:
            return "hello on the kept connection: %r" % r2
        return None
    try:
        data = conn.read_until_close()
    except (socket.timeout, TimeoutError):
        return "not closed within the timeout; got %r" % conn.buf[:300]
    conn.data = data
    if expect is CLOSED:
        return None if data == b"" else "expected a close without answer, got %r" % data[:300]
    rs, rest = _responses(data, head)
    rs = [r for r in rs if r.status != 100]
    if isinstance(expect, CUT):
        if not rs and rest.startswith(b"HTTP/1.1 %d" % expect.status):
            return None
        # A close-delimited answer (uwsgi: raw HTTP ending with the close) cannot show that it
        # was cut: the body must then hold only what came before the failure.
        if len(rs) == 1 and not rest and rs[0].status == expect.status \
                and rs[0].header("Content-Length") is None \
                and rs[0].header("Transfer-Encoding") is None:
            return None if rs[0].body == b"first chunk\n" else "body %r" % rs[0].body[:200]
        return "expected a %d cut short, got %r + %r" % (expect.status, rs, rest[:200])
    if isinstance(expect, S):
        got = [r.status for r in rs]
        if got != expect.statuses or rest:
            return "expected %r then close, got %r + %r" % (expect.statuses, got, rest[:200])
        return None
    raise AssertionError("bad expectation %r" % expect)


def _fcgi_hello(conn, rid=1):
    conn.send(FC(rid=rid))
    recs = fcgi.read_records(conn)
    out = fcgi.stdout_of(recs)
    if not out.startswith(b"Status: 200") or not out.endswith(HELLO):
        return "the kept connection does not answer a hello: %r" % recs
    return None


def _fcgi_outcome(conn, expect):
    """Returns None if the FastCGI answer matches expect, else what came."""
    if expect is CLOSED:
        try:
            data = conn.read_until_close()
        except (socket.timeout, TimeoutError):
            return "not closed within the timeout; got %r" % conn.buf[:300]
        return None if data == b"" else "expected a close without answer, got %r" % data[:300]
    try:
        recs = fcgi.read_records(conn, until_end=not isinstance(expect, FMGMT),
                                 count=len(expect.rtypes) if isinstance(expect, FMGMT) else None)
    except (socket.timeout, TimeoutError):
        return "no answer within the timeout; got %r" % conn.buf[:300]
    conn.data = b"".join(c for _, _, c in recs)
    ends = [c for t, _, c in recs if t == fcgi.END_REQUEST]
    out = fcgi.stdout_of(recs)
    if isinstance(expect, FMGMT):
        if [t for t, _, _ in recs] != expect.rtypes:
            return "expected records of types %r, got %r" % (expect.rtypes, recs)
        if not expect.keep:
            return None if conn.closed() else "not closed after the answer"
        return _fcgi_hello(conn)
    if expect is FCUT:
        if ends or not out.startswith(b"Status: 200"):
            return "expected STDOUT cut short, got %r" % recs
        return None if conn.closed() else "not closed after the cut"
    if not ends:
        return "no END_REQUEST: %r" % recs
    if isinstance(expect, FREFUSED):
        if out or fcgi.end_of(recs) != (0, expect.ps):
            return "expected END_REQUEST %d alone, got %r" % (expect.ps, recs)
        return _fcgi_hello(conn)
    if not out.startswith(b"Status: %d " % expect.status) or fcgi.end_of(recs)[1] != expect.ps:
        return "expected Status %d then END_REQUEST %d, got %r" % (expect.status, expect.ps, recs)
    if not expect.keep:
        return None if conn.closed() else "not closed after the answer"
    return _fcgi_hello(conn)


def _matches(opt, status):
    if isinstance(opt, S):
        return opt.statuses[:1] == [status]
    return isinstance(opt, (KEEP, CUT)) and opt.status == status


def _fcgi_check(conn, exp):
    """ANY over FastCGI: the first byte tells a close from records; a status picks the FEND."""
    if not isinstance(exp, ANY):
        return _fcgi_outcome(conn, exp)
    conn.sock.settimeout(10)
    while not conn.buf and not conn.eof:
        conn._fill()
    if not conn.buf:
        return None if CLOSED in exp.options else "closed, expected %r" % (exp,)
    recs = fcgi.read_records(conn)
    out = fcgi.stdout_of(recs)
    for o in exp.options:
        if isinstance(o, FEND) and out.startswith(b"Status: %d " % o.status):
            conn.buf = b"".join(fcgi.record(t, i, c) for t, i, c in recs) + conn.buf
            return _fcgi_outcome(conn, o)
    return "expected %r, got %r" % (exp, recs)


def _check(conn, case):
    exp = case.expect
    if case.transport == F:
        return _fcgi_check(conn, exp)
    if not isinstance(exp, ANY):
        return _outcome(conn, case, exp)
    # Peek at the first answer (a head, or a close), then hold it to the options that fit.
    conn.sock.settimeout(10)
    while True:
        try:
            r, _ = parse_response(conn.buf, head_only=True)
            break
        except Incomplete:
            if conn.eof:
                r = None
                break
            try:
                conn._fill()
            except (socket.timeout, TimeoutError):
                return "no answer and no close within the timeout (expected %r)" % (exp,)
        except ValueError:
            r = None
            break
    if r is None:
        if conn.buf == b"" and CLOSED in exp.options:
            return None
        return "expected %r, got %r" % (exp, conn.buf[:300])
    fits = [o for o in exp.options if _matches(o, r.status)]
    if not fits:
        return "expected %r, got %r" % (exp, r)
    return _outcome(conn, case, fits[0])


@pytest.fixture
def matrix(wsgid):
    d = wsgid("matrix", threads=4, limit_request_body=LIMIT)
    # Bad input is logged at the info level; the app's mistakes at the error level, on their
    # request's lines. Anything else at the error level fails the test.
    d.expect_log(r"\[req \d+-\d+\] ")
    return d


def _calls(tmp):
    try:
        return (tmp / "calls").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_matrix(case, matrix, nginx, tmp):
    d = matrix
    if case.transport in (N, NT):
        up = d.unix if case.transport == N else "%s:%d" % d.tcp
        ng = nginx(uwsgi_location(up).replace("unix:%s:%d" % d.tcp, "%s:%d" % d.tcp),
                   http_extra="large_client_header_buffers 4 64k;")
        ng.expect_log("upstream prematurely closed", "client prematurely closed",
                      "upstream sent", "client sent", "client intended", "invalid",
                      "reset by peer", "Broken pipe", "while sending to upstream")
        addr = ng.addr
    else:
        addr = d.tcp if case.transport == T else d.unix
    with Conn(addr, timeout=10) as conn:
        if case.transport == F and conn.sock.family == socket.AF_INET:
            raise AssertionError("FastCGI goes to the unix socket")
        if case.transport == U and conn.sock.family == socket.AF_INET:
            raise AssertionError("uwsgi goes to the unix socket")
        try:
            _send(conn, case)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before everything was sent
        err = _check(conn, case)
        everything = conn.buf + getattr(conn, "data", b"")
    assert err is None, "%s: %s" % (case.id, err)
    if case.absent is not None:
        assert case.absent not in everything, everything[:500]
    time.sleep(0.05)
    calls = _calls(tmp)
    if case.not_called:
        assert case.not_called not in calls, calls
    if case.called:
        assert case.called in calls, calls
    # The daemon still answers a hello, over the same transport.
    if case.transport == F:
        with Conn(addr) as c:
            assert _fcgi_hello(c) is None
        assert d.running()
        return
    if case.transport == U:
        r = uwsgi_call(d.unix, path="/hello")
    else:
        with Conn(addr) as c:
            c.send(H(headers={"Connection": "close"}))
            r = c.response()
    assert r.status == 200 and r.body == HELLO, r
    assert d.running()


def test_matrix_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
