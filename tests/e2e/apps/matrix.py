"""The bad-input matrix's app. Every call appends "METHOD PATH_INFO" to $WSGID_E2E_DIR/calls (so a
test can tell that a request never reached the app), then:

    /hello, /           Hello, world!
    /echo               the request body, its length in X-Body-Length
    /big                100 KB (a HEAD of it must carry no body)
    /env                REQUEST_METHOD, PATH_INFO, QUERY_STRING, HTTP_HOST, one per line
    /m/NAME             the WSGI mistake NAME (design §8), see MISTAKES below
"""
import os

HELLO = b"Hello, world!\n"
TEXT = [("Content-Type", "text/plain")]


def _log(environ):
    d = os.environ.get("WSGID_E2E_DIR")
    if d:
        line = "%s %s\n" % (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
        fd = os.open(os.path.join(d, "calls"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)


def _gen_raise(start_response):
    start_response("200 OK", TEXT)
    yield b"first chunk\n"
    raise RuntimeError("e2e matrix: a generator raising midway")


def _mistake(name, start_response):
    if name == "non-bytes":
        start_response("200 OK", TEXT)
        return ["a str, not bytes"]
    if name == "non-bytes-int":
        start_response("200 OK", TEXT)
        return [42]
    if name == "bad-status":
        start_response("two hundred", TEXT)
        return [b"x"]
    if name == "status-crlf":
        start_response("200 OK\r\nInjected: yes", TEXT)
        return [b"x"]
    if name == "header-crlf":
        start_response("200 OK", [("X-Evil", "a\r\nInjected: yes")])
        return [b"x"]
    if name == "header-lf":
        start_response("200 OK", [("X-Evil", "a\nInjected: yes")])
        return [b"x"]
    if name == "header-cr":
        start_response("200 OK", [("X-Evil", "a\rInjected: yes")])
        return [b"x"]
    if name == "header-name-crlf":
        start_response("200 OK", [("X-Evil\r\nInjected", "yes")])
        return [b"x"]
    if name == "header-name-space":
        start_response("200 OK", [("X Evil", "yes")])
        return [b"x"]
    if name == "header-latin1":
        start_response("200 OK", [("X-Money", "\u20ac")])
        return [b"x"]
    if name == "header-not-str":
        start_response("200 OK", [("X-Num", 42)])
        return [b"x"]
    if name == "hop-connection":
        start_response("200 OK", TEXT + [("Connection", "close")])
        return [b"x"]
    if name == "hop-te":
        start_response("200 OK", TEXT + [("Transfer-Encoding", "chunked")])
        return [b"x"]
    if name == "hop-keep-alive":
        start_response("200 OK", TEXT + [("Keep-Alive", "timeout=5")])
        return [b"x"]
    if name == "start-twice":
        start_response("200 OK", TEXT)
        start_response("200 OK", TEXT)
        return [b"x"]
    if name == "raise-before":
        raise RuntimeError("e2e matrix: failing before the head")
    if name == "no-start-response":
        return [b"x"]
    if name == "return-none":
        start_response("200 OK", TEXT)
        return None
    if name == "gen-raise":
        return _gen_raise(start_response)
    if name == "cl-too-short":
        # Content-Length says 5, the app sends more: never more than 5 bytes go out.
        start_response("200 OK", TEXT + [("Content-Length", "5")])
        return [b"0123456789"]
    start_response("404 Not Found", TEXT)
    return [b"no such mistake\n"]


def application(environ, start_response):
    _log(environ)
    path = environ.get("PATH_INFO", "/")
    if path in ("/", "/hello"):
        start_response("200 OK", TEXT + [("Content-Length", str(len(HELLO)))])
        return [HELLO]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("X-Body-Length", str(len(body)))])
        return [body]
    if path == "/big":
        start_response("200 OK", TEXT)
        return [b"b" * 100000]
    if path == "/env":
        start_response("200 OK", TEXT)
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "HTTP_HOST")
        return [("\n".join("%s=%s" % (k, environ.get(k, "")) for k in keys) + "\n")
                .encode("latin-1", "replace")]
    if path.startswith("/m/"):
        return _mistake(path[3:], start_response)
    start_response("404 Not Found", TEXT)
    return [b"not found\n"]
