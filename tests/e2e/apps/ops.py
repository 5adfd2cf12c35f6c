"""An app for the timeout and log tests.

    /                   the worker's pid
    /sleep?t=S          time.sleep(S) (blocked outside Python: an async exception waits for it)
    /spin?t=S           a pure-Python busy loop for S seconds (interruptible); writes
                        $WSGID_E2E_DIR/spin-interrupted when an exception stops it
    /mark?name=N        creates $WSGID_E2E_DIR/mark-N (a side effect a test can look for)
    /big?size=N         N bytes (default 16 MiB) with a Content-Length
    /error              logs a line to wsgi.errors and raises (a 500 and an error line)
    /write-sleep?t=S    sends 3 of its 10 bytes with write(), then time.sleep(S)
    /gen-cl?size=N      N bytes with a Content-Length, from a generator of 200 KiB chunks
    /close-sleep?t=S    "hello" with its Content-Length, from an iterable whose close() sleeps S
    /fd2?text=T         writes T and a newline to the worker's fd 2 (the master logs its lines, in
                        order: a mark behind what was written there before)
Every path writes $WSGID_E2E_DIR/started-<path> first, so a test knows the app was reached.
"""
import os
import time
from urllib.parse import parse_qs

_DIR = os.environ.get("WSGID_E2E_DIR", "/tmp")


def _touch(name):
    with open(os.path.join(_DIR, name), "w") as f:
        f.write(str(os.getpid()))


def _answer(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class _SlowClose:
    def __init__(self, t):
        self.t = t

    def __iter__(self):
        return iter([b"hello"])

    def close(self):
        time.sleep(self.t)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    _touch("started-" + (path.strip("/") or "root"))
    if path == "/sleep":
        t = float(qs.get("t", ["5"])[0])
        time.sleep(t)
        return _answer(start_response, b"slept %.1f\n" % t)
    if path == "/spin":
        t = float(qs.get("t", ["5"])[0])
        end = time.monotonic() + t
        n = 0
        try:
            while time.monotonic() < end:
                n += 1
        except BaseException:
            _touch("spin-interrupted")
            raise
        return _answer(start_response, b"spun %d\n" % n)
    if path == "/mark":
        _touch("mark-" + qs.get("name", ["x"])[0])
        return _answer(start_response, b"marked\n")
    if path == "/big":
        size = int(qs.get("size", [str(16 * 1024 * 1024)])[0])
        return _answer(start_response, b"x" * size)
    if path == "/write-sleep":
        write = start_response("200 OK", [("Content-Type", "text/plain"),
                                          ("Content-Length", "10")])
        write(b"abc")
        time.sleep(float(qs.get("t", ["5"])[0]))
        return [b"defghij"]
    if path == "/gen-cl":
        n = int(qs.get("size", ["4096000"])[0])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))])
        return (b"g" * min(204800, n - i) for i in range(0, n, 204800))
    if path == "/close-sleep":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return _SlowClose(float(qs.get("t", ["5"])[0]))
    if path == "/fd2":
        os.write(2, qs.get("text", ["mark"])[0].encode() + b"\n")
        return _answer(start_response, b"written\n")
    if path == "/error":
        environ["wsgi.errors"].write("ops app: about to fail\n")
        raise RuntimeError("ops app failure on purpose")
    return _answer(start_response, b"%d\n" % os.getpid())
