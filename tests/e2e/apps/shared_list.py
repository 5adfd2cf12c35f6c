"""Returns one module-level list of fresh 1 MiB bytes objects (/big), and /clear empties that
list while /big's response waits for a slow client: the server must hold its own references to
what it still has to send (issue #11, point 6)."""
import threading

CHUNK = 1 << 20
N = 16
SHARED = []
sent = threading.Event()


def fill():
    SHARED[:] = [bytes([65 + i]) * CHUNK for i in range(N)]


fill()


def application(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/clear":
        SHARED[:] = []
        body = b"cleared\n"
    elif path == "/fill":
        fill()
        body = b"filled\n"
    else:
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(N * CHUNK))])
        return SHARED
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
