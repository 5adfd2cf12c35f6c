"""Streaming: a generator with pauses (/gen; /unbuffered is one that asks proxies not to hold it
back, with X-Accel-Buffering: no), the write() callable (/write; /write-slow?name=N, parts with pauses, writing
$WSGID_E2E_DIR/wrote-N with the number of parts written when a write() fails), and /closing?name=N:
parts with pauses from an iterable whose close() writes $WSGID_E2E_DIR/closed-N with the number of
parts it gave (so a test sees when and where a request was cut off)."""
import os
import time
from urllib.parse import parse_qs


def _gen(n, pause):
    for i in range(n):
        yield b"part %d\n" % i
        time.sleep(pause)


class _Closing:
    def __init__(self, n, pause, name):
        self.n, self.pause, self.name, self.given = n, pause, name, 0

    def __iter__(self):
        for i in range(self.n):
            self.given += 1
            yield b"part %d\n" % i
            time.sleep(self.pause)

    def close(self):
        path = os.path.join(os.environ.get("WSGID_E2E_DIR", "/tmp"), "closed-" + self.name)
        with open(path + ".tmp", "w") as f:
            f.write(str(self.given))
        os.rename(path + ".tmp", path)


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(qs.get("n", ["10"])[0])
    pause = float(qs.get("pause", ["0.1"])[0])
    path = environ.get("PATH_INFO")
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one ")
        write(b"two ")
        return [b"three"]
    if path == "/write-only":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(n):
            write(b"w%d;" % i)
        return []
    if path == "/write-slow":  # parts with pauses through write(); a failed write is counted
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        wrote = 0
        try:
            for i in range(n):
                write(b"part %d\n" % i)
                wrote += 1
                time.sleep(pause)
        except OSError:
            path = os.path.join(os.environ.get("WSGID_E2E_DIR", "/tmp"),
                                "wrote-" + qs.get("name", ["x"])[0])
            with open(path + ".tmp", "w") as f:
                f.write(str(wrote))
            os.rename(path + ".tmp", path)
        return []
    if path == "/unbuffered":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")])
        return _gen(n, pause)
    start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/closing":
        return _Closing(n, pause, qs.get("name", ["x"])[0])
    return _gen(n, pause)
