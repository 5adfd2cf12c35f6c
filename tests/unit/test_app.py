"""The WSGI app that python_glue/test_glue.c drives: one route per behaviour under test."""
import io
import json
import sys

closed = []


class Closing:
    """An iterable with close(), recording that the server called it."""

    def __init__(self, chunks, fail=False):
        self.chunks = chunks
        self.fail = fail

    def __iter__(self):
        for c in self.chunks:
            if c is None:
                raise RuntimeError("iteration failed")
            yield c

    def close(self):
        closed.append(1)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    route = ROUTES.get(path)
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no route " + path.encode("latin-1")]
    return route(environ, start_response)


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello", b" world"]


def environ_dump(environ, start_response):
    out = {}
    for k, v in environ.items():
        if isinstance(v, (str, bool, int, tuple)):
            out[k] = v
    out["input_type"] = type(environ["wsgi.input"]).__name__
    out["fw"] = environ["wsgi.file_wrapper"].__name__
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(out, sort_keys=True).encode()]


def write_route(environ, start_response):
    w = start_response("200 OK", [])
    w(b"a")
    w(b"bb")
    return [b"ccc"]


def gen(environ, start_response):
    start_response("200 OK", [("X-Gen", "1")])
    yield b"one"
    yield b""
    yield b"two"


def gen_lazy(environ, start_response):
    yield b""
    start_response("201 Created", [])
    yield b"late"


def gen_empty(environ, start_response):
    start_response("200 OK", [])
    return iter([])


def file_route(environ, start_response):
    f = open(__file__, "rb")
    off = int(environ.get("QUERY_STRING") or 0)
    f.seek(off)
    start_response("200 OK", [("Content-Type", "text/x-python")])
    return environ["wsgi.file_wrapper"](f, 4096)


def file_bytesio(environ, start_response):
    start_response("200 OK", [])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 10000), 3000)


def cl_ok(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    return iter([b"12", b"345"])


def cl_short(environ, start_response):
    start_response("200 OK", [("Content-Length", "10")])
    return iter([b"12345"])


def cl_long(environ, start_response):
    start_response("200 OK", [("Content-Length", "3")])
    return iter([b"12345", b"678"])


def cl_long_later(environ, start_response):
    """The length reached exactly by one piece, then more: in a list (one call) and a generator."""
    start_response("200 OK", [("Content-Length", "2")])
    if environ.get("QUERY_STRING") == "gen":
        return (p for p in [b"ok", b"EXTRA"])
    return [b"ok", b"EXTRA"]


def str_chunk(environ, start_response):
    start_response("200 OK", [])
    return ["text"]


def str_gen(environ, start_response):
    start_response("200 OK", [])
    yield "text"


def bad_status(environ, start_response):
    start_response("20 OK", [])
    return [b"x"]


def crlf(environ, start_response):
    start_response("200 OK", [("X-A", "a\r\nb")])
    return [b"x"]


def hop(environ, start_response):
    start_response("200 OK", [("Connection", "close")])
    return [b"x"]


def twice(environ, start_response):
    start_response("200 OK", [])
    start_response("200 OK", [])
    return [b"x"]


def nosr(environ, start_response):
    return [b"x"]


def raise_route(environ, start_response):
    raise ValueError("boom")


def raise_after(environ, start_response):
    start_response("200 OK", [])
    yield b"partial"
    raise ValueError("late boom")


def excinfo(environ, start_response):
    try:
        start_response("200 OK", [("X-Ok", "1")])
        raise KeyError("k")
    except KeyError:
        start_response("503 Busy", [("X-Err", "1")], sys.exc_info())
    return [b"sorry"]


def excinfo_late(environ, start_response):
    w = start_response("200 OK", [])
    w(b"started")
    try:
        raise KeyError("late")
    except KeyError:
        start_response("500 Oops", [], sys.exc_info())
    return [b"never"]


def close_route(environ, start_response):
    start_response("200 OK", [])
    return Closing([b"a", b"b"])


def endless(environ, start_response):
    import time

    def gen():
        while True:
            time.sleep(0.001)
            yield b"x" * 100

    start_response("200 OK", [])
    return Closing(gen())


def close_fail(environ, start_response):
    start_response("200 OK", [])
    return Closing([b"a", None])


def closed_count(environ, start_response):
    start_response("200 OK", [])
    return [str(len(closed)).encode()]


def input_route(environ, start_response):
    inp = environ["wsgi.input"]
    parts = [inp.read(3), inp.readline(), inp.readline(2)]
    parts += inp.readlines()
    parts.append(inp.read())
    start_response("200 OK", [])
    return [repr(parts).encode()]


def input_iter(environ, start_response):
    lines = list(environ["wsgi.input"])
    start_response("200 OK", [])
    return [repr(lines).encode()]


def input_all(environ, start_response):
    data = environ["wsgi.input"].read()
    start_response("200 OK", [])
    return [str(len(data)).encode(), b" ", str(sum(data) % 9973).encode()]


def errors_route(environ, start_response):
    e = environ["wsgi.errors"]
    e.write("first line\nsecond ")
    e.writelines(["line\n", "third"])
    e.flush()
    start_response("200 OK", [])
    return [b"logged"]


def no_content(environ, start_response):
    start_response("204 No Content", [])
    return [b"ignored"]


def no_content_with_length(environ, start_response):
    start_response("204 No Content", [("Content-Length", "5")])
    return [b"hello"]


def reset_content(environ, start_response):
    start_response("205 Reset Content", [("Content-Length", "5")])
    return [b"hello"]


def dated(environ, start_response):
    start_response("200 OK", [("Date", "Tue, 01 Jan 2030 00:00:00 GMT")])
    return [b"d"]


def venv_route(environ, start_response):
    import wsgid_venv_probe

    start_response("200 OK", [])
    return [("prefix=%s probe=%s exe=%s" % (sys.prefix, wsgid_venv_probe.VALUE,
                                            sys.executable)).encode()]


ROUTES = {
    "/venv": venv_route,
    "/hello": hello,
    "/environ": environ_dump,
    "/env ir": environ_dump,
    "/write": write_route,
    "/gen": gen,
    "/gen_lazy": gen_lazy,
    "/gen_empty": gen_empty,
    "/file": file_route,
    "/file_bytesio": file_bytesio,
    "/cl_ok": cl_ok,
    "/cl_short": cl_short,
    "/cl_long": cl_long,
    "/cl_long_later": cl_long_later,
    "/str_chunk": str_chunk,
    "/str_gen": str_gen,
    "/bad_status": bad_status,
    "/crlf": crlf,
    "/hop": hop,
    "/twice": twice,
    "/nosr": nosr,
    "/raise": raise_route,
    "/raise_after": raise_after,
    "/excinfo": excinfo,
    "/excinfo_late": excinfo_late,
    "/close": close_route,
    "/close_fail": close_fail,
    "/endless": endless,
    "/closed": closed_count,
    "/input": input_route,
    "/input_iter": input_iter,
    "/input_all": input_all,
    "/errors": errors_route,
    "/204": no_content,
    "/204cl": no_content_with_length,
    "/205": reset_content,
    "/dated": dated,
}
