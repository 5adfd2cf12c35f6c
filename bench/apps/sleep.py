"""I/O-bound endpoints: sleep with the GIL released (time.sleep), then a hello.

/io/0.5ms and /io/5ms stand for a request that waits on a database or a service; /io/50ms is the
slow endpoint of the mixed-load test.
"""
import time

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def make(seconds):
    def application(environ, start_response):
        time.sleep(seconds)
        start_response("200 OK", list(HEADERS))
        return [BODY]
    return application


ROUTES = {"/io/0.5ms": make(0.0005), "/io/5ms": make(0.005), "/io/50ms": make(0.05)}
