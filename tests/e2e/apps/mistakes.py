"""Each WSGI mistake, selected by PATH_INFO. Before failing, the app writes its request id to
$WSGID_E2E_DIR/request-id so the test can find the error-log line that names it."""
import os
import sys
import threading
import time


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


def _whole_then_raise(n):
    for i in range(0, n, 65536):
        yield b"w" * min(65536, n - i)
    raise RuntimeError("e2e: failing after the whole body")


def _mark(name):
    d = os.environ.get("WSGID_E2E_DIR")
    if d:
        with open(os.path.join(d, name), "w") as f:
            f.write(name)


def _stale_mistake(start_response, ok):
    start_response("200 OK", ok)
    try:
        start_response("200 OK", ok)
    except RuntimeError:
        pass  # got over it: the response goes on with the first head

    def body():
        yield b"part\n"
        raise ZeroDivisionError("e2e: the real error, after a mistake the app caught")
    return body()


def _background_write(start_response, ok):
    """write() from a thread of the app's own, which goes on after the app returned."""
    write = start_response("200 OK", ok)

    def writer():
        try:
            for _ in range(200):
                write(b"y" * 1000000)
            _mark("bg-write-ended")
        except Exception as e:
            _mark("bg-write-" + type(e).__name__)
    threading.Thread(target=writer, daemon=True).start()
    time.sleep(1.0)
    return []


def _write_while_streaming(start_response, ok):
    """write() from a thread of the app's own while the serving thread streams 40 MB to a client
    that reads late. With a long switch interval the serving thread lets the GIL go only while a
    push waits for the client: the thread's write(), started meanwhile, waits for its turn until
    the response has ended."""
    write = start_response("200 OK", ok)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)

    def writer():
        time.sleep(0.3)  # the serving thread's push waits for the client by now
        try:
            write(b"y" * 1000)
            _mark("bg-stream-ended")
        except Exception as e:
            _mark("bg-stream-" + type(e).__name__)
        finally:
            sys.setswitchinterval(interval)
    threading.Thread(target=writer, daemon=True).start()
    return (b"z" * 10000 for _ in range(4000))


def _stale_mistake_generator(environ, start_response):
    """A generator app: its start_response calls run during the iteration."""
    ok = [("Content-Type", "text/plain")]
    start_response("200 OK", ok)
    try:
        start_response("200 OK", ok)
    except RuntimeError:
        pass
    yield b"part\n"
    raise ZeroDivisionError("e2e: the real error, after a mistake the app caught")


def _exc_info_after_head(start_response, ok, exc_info, catch):
    write = start_response("200 OK", ok)
    write(b"head out\n")
    try:
        start_response("500 Internal Server Error", ok, exc_info)
    except TypeError:
        if not catch:
            raise
        _mark("exc-info-refused")
    return [b"more\n"]


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
    if path in ("/forge-status", "/forge-header"):  # request text in the status or a name
        from urllib.parse import unquote
        forged = unquote(environ.get("QUERY_STRING", ""))
        if path == "/forge-status":
            start_response(forged, ok)
        else:
            start_response("200 OK", [(forged, "v")])
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
    if path == "/raise-after-whole":  # every byte of its Content-Length, then an exception
        n = int(environ.get("QUERY_STRING", "size=1").split("=")[1])
        start_response("200 OK", ok + [("Content-Length", str(n))])
        return _whole_then_raise(n)
    if path == "/close":
        start_response("200 OK", ok)
        return _Iterable(environ, [b"a", b"b"])
    if path == "/informational":
        start_response("100 Continue", ok)
        return [b"body"]
    if path == "/two-lengths":
        start_response("200 OK", ok + [("Content-Length", "100"), ("Content-Length", "3")])
        return [b"abc"]
    if path == "/same-length-twice":
        start_response("200 OK", ok + [("Content-Length", "3"), ("content-length", "3")])
        return [b"abc"]
    if path == "/exc-info-none":  # sys.exc_info() outside an except block
        return _exc_info_after_head(start_response, ok, sys.exc_info(), catch=False)
    if path == "/exc-info-ints-caught":
        return _exc_info_after_head(start_response, ok, (1, 2, 3), catch=True)
    if path == "/exc-info-real":
        write = start_response("200 OK", ok)
        write(b"head out\n")
        try:
            raise KeyError("e2e: the app's own error")
        except KeyError:
            start_response("500 Internal Server Error", ok, sys.exc_info())
        return [b"never\n"]
    if path == "/stale-mistake":
        return _stale_mistake(start_response, ok)
    if path == "/background-write":
        return _background_write(start_response, ok)
    if path == "/write-while-streaming":
        return _write_while_streaming(start_response, ok)
    if path == "/stale-mistake-generator":
        return _stale_mistake_generator(environ, start_response)
    start_response("404 Not Found", ok)
    return [b"no such mistake\n"]
