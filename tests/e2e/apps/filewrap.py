"""wsgi.file_wrapper over a real file, from an offset: /?path=FILE&offset=N[&len=M|none] (none: no
Content-Length)."""
import os
from urllib.parse import parse_qs


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    path = qs["path"][0]
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
