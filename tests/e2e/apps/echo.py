"""Echoes the request body. The SHA-256 and length of what the app read go in headers, so a test
can tell a damaged upload from a damaged download."""
import hashlib


def application(environ, start_response):
    inp = environ["wsgi.input"]
    how = environ.get("QUERY_STRING", "")
    if how == "lines":
        body = b"".join(inp.readlines())
    elif how == "iter":
        body = b"".join(iter(inp))
    elif how == "small":
        parts = []
        while True:
            part = inp.read(7919)
            if not part:
                break
            parts.append(part)
        body = b"".join(parts)
    else:
        body = inp.read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Body-Length", str(len(body))),
                              ("X-Body-Sha256", hashlib.sha256(body).hexdigest())])
    return [body]
