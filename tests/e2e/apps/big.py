"""A big answer with deterministic content (the same bytes as big_body in helpers/clients.py).

    /big?size=N         one bytes object (the length is known before the head is sent)
    /gen?size=N         a generator of 64 KiB chunks
    /same?count=N       one 256 KiB bytes object yielded N times (zero-filled padding), with its
                        Content-Length; /yielded says how many times it was yielded so far
    /freed?size=N&free=S  as /big, from an iterable whose last reference takes S seconds to go
                        (its __del__ sleeps): the thread ends its request (the response buffer's
                        finish) S seconds after it pushed the answer's last byte
"""
import random
import time
from urllib.parse import parse_qs

_SIZE = 16 * 1024 * 1024
_DATA = random.Random(20261124).randbytes(_SIZE)
_ZEROS = bytes(256 * 1024)


def _gen(data):
    for i in range(0, len(data), 65536):
        yield data[i:i + 65536]


_yielded = [0]


class _FreedSlowly:
    def __init__(self, data, secs):
        self.data, self.secs = data, secs

    def __iter__(self):
        return iter([self.data])

    def __del__(self):
        time.sleep(self.secs)


def _same(count):
    for _ in range(count):
        _yielded[0] += 1
        yield _ZEROS


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    size = int(qs.get("size", [_SIZE])[0])
    data = _DATA[:size] if size <= _SIZE else (_DATA * (size // _SIZE + 1))[:size]
    if environ.get("PATH_INFO") == "/same":
        count = int(qs.get("count", ["4096"])[0])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(count * len(_ZEROS)))])
        return _same(count)
    if environ.get("PATH_INFO") == "/yielded":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(_yielded[0]).encode()]
    if environ.get("PATH_INFO") == "/freed":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(data)))])
        return _FreedSlowly(data, float(qs.get("free", ["0.1"])[0]))
    if environ.get("PATH_INFO") == "/gen":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _gen(data)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(data)))])
    return [data]
