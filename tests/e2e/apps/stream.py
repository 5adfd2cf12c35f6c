"""Streaming: a generator with pauses (/gen) and the write() callable (/write)."""
import time
from urllib.parse import parse_qs


def _gen(n, pause):
    for i in range(n):
        yield b"part %d\n" % i
        time.sleep(pause)


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
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _gen(n, pause)
