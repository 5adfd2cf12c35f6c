"""Large bytes objects lent to the response buffer (tests/e2e/test_lend.py).

    /big      [DATA] * 4: one 4 MiB object (built once per interpreter) four times
    /gen      the same from a generator, without a Content-Length (HTTP/1.1: chunked)
    /refs     sys.getrefcount(DATA), and the interpreter's identity
"""
import json
import sys

DATA = bytes(range(256)) * (4 * 4096)  # 4 MiB


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    if path.endswith("/big"):
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(4 * len(DATA)))])
        return [DATA] * 4
    if path.endswith("/gen"):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (DATA for _ in range(4))
    if path.endswith("/refs"):
        body = json.dumps({"refs": sys.getrefcount(DATA), "interp": id(sys)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"no"]
