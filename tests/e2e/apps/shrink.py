"""Each request makes an 8 MiB bytes and drops it (the worker keeps the block for reuse, its pages
written), then reads a 300 KiB file with os.read(fd, 8 MiB): CPython makes the bytes at the size
asked for (that kept block) and cuts it to what came, a realloc; the result is kept in this process,
as an app's cache would keep it. Answers the length read."""
import os
import tempfile

_kept = []
_path = []
ASK = (8 << 20) - 64


def application(environ, start_response):
    if not _path:
        fd, path = tempfile.mkstemp(prefix="wsgid-e2e-shrink-")
        os.write(fd, b"r" * (300 << 10))
        os.close(fd)
        _path.append(path)
    big = b"a" * ASK
    del big
    fd = os.open(_path[0], os.O_RDONLY)
    try:
        data = os.read(fd, ASK)
    finally:
        os.close(fd)
    _kept.append(data)
    body = b"%d\n" % len(data)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
