"""A 16 MiB download, returned as a list of sixteen 1 MiB chunks (the same object, built once)."""

CHUNK = b"x" * (1 << 20)
COUNT = 16


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(CHUNK) * COUNT))])
    return [CHUNK] * COUNT
