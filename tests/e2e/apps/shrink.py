"""Each request makes an 8 MiB bytes and drops it (the worker keeps the block for reuse, its pages
written), then reads a 300 KiB file with os.pread(fd, 8 MiB, 0): CPython makes the bytes at the
size asked for (that kept block) and cuts it to what came, a realloc; the result is kept in this
process, as an app's cache would keep it. Answers the length read. The file is unlinked as soon as
it is made (its descriptor stays open), so that nothing is left in $TMPDIR."""
import os
import tempfile

_kept = []
ASK = (8 << 20) - 64

# Made at import, before the test counts the worker's descriptors.
_fd, _path = tempfile.mkstemp(prefix="wsgid-e2e-shrink-")
os.unlink(_path)
os.write(_fd, b"r" * (300 << 10))


def application(environ, start_response):
    big = b"a" * ASK
    del big
    data = os.pread(_fd, ASK, 0)
    _kept.append(data)
    body = b"%d\n" % len(data)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
