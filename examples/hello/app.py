"""The smallest wsgid example: hello world plus a few paths to poke at.

    /           hello world
    /environ    the WSGI environ as plain text
    /stream     a generator that sends five lines, one every 0.2 s (chunked over HTTP/1.1)
    /echo       POST a body, get it back
"""
import time


def _environ(environ):
    lines = []
    for key in sorted(environ):
        lines.append("%s = %r\n" % (key, environ[key]))
    return "".join(lines).encode("utf-8")


def _stream():
    for i in range(5):
        yield b"line %d\n" % i
        time.sleep(0.2)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        body = b"Hello, world!\n"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/environ":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [_environ(environ)]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Not found\n"]
