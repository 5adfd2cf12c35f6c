"""Each WSGI mistake, selected by PATH_INFO. Before failing, the app writes its request id to
$WSGID_E2E_DIR/request-id so the test can find the error-log line that names it."""
import os


def _note(environ):
    d = os.environ.get("WSGID_E2E_DIR")
    if d:
        with open(os.path.join(d, "request-id"), "w") as f:
            f.write(str(environ.get("wsgid.request_id", "")))


class _Iterable:
    """A result with close(), to check that close() is called on every path."""

    def __init__(self, environ, chunks, fail_after=None):
        self.chunks = chunks
        self.fail_after = fail_after
        self.d = os.environ.get("WSGID_E2E_DIR")

    def __iter__(self):
        for i, c in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("e2e: failing after the head")
            yield c

    def close(self):
        if self.d:
            with open(os.path.join(self.d, "closed"), "w") as f:
                f.write("closed")


def application(environ, start_response):
    _note(environ)
    path = environ.get("PATH_INFO", "/")
    ok = [("Content-Type", "text/plain")]
    if path == "/ok":
        start_response("200 OK", ok)
        return [b"ok\n"]
    if path == "/non-bytes":
        start_response("200 OK", ok)
        return ["a str, not bytes"]
    if path == "/bad-status":
        start_response("two hundred", ok)
        return [b"x"]
    if path == "/header-crlf":
        start_response("200 OK", [("X-Evil", "a\r\nInjected: yes")])
        return [b"x"]
    if path == "/header-latin1":
        start_response("200 OK", [("X-Money", "\u20ac")])
        return [b"x"]
    if path == "/hop-by-hop":
        start_response("200 OK", ok + [("Connection", "close")])
        return [b"x"]
    if path == "/start-twice":
        start_response("200 OK", ok)
        start_response("200 OK", ok)
        return [b"x"]
    if path == "/raise-before":
        raise RuntimeError("e2e: failing before the head")
    if path == "/no-start-response":
        return [b"x"]
    if path == "/raise-after":
        start_response("200 OK", ok)
        return _Iterable(environ, [b"first chunk\n", b"never sent\n"], fail_after=1)
    if path == "/close":
        start_response("200 OK", ok)
        return _Iterable(environ, [b"a", b"b"])
    start_response("404 Not Found", ok)
    return [b"no such mistake\n"]
