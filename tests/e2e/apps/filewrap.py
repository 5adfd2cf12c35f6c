"""wsgi.file_wrapper over a real file, from an offset: /?path=FILE&offset=N[&len=M|none] (none: no
Content-Length); /?path=FILE&wronly=1: over the file opened write-only."""
import os
from urllib.parse import parse_qs


class WriteOnly:
    """A file the app can only write: sendfile from it fails (EBADF)."""

    def __init__(self, path):
        self.f = os.fdopen(os.open(path, os.O_WRONLY), "wb")

    def fileno(self):
        return self.f.fileno()

    def tell(self):
        return 0

    def read(self, n):
        return b""

    def close(self):
        self.f.close()


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    path = qs["path"][0]
    if "wronly" in qs:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](WriteOnly(path))
    offset = int(qs.get("offset", ["0"])[0])
    f = open(path, "rb")
    f.seek(offset)
    headers = [("Content-Type", "application/octet-stream")]
    if qs.get("len") == ["none"]:
        pass
    elif "len" in qs:
        headers.append(("Content-Length", qs["len"][0]))
    else:
        headers.append(("Content-Length", str(os.fstat(f.fileno()).st_size - offset)))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 8192)
