"""An app that can take its worker down. Every answer says which worker gave it (X-Pid).

    /, /hello        Hello, world!
    /slow?t=SECONDS  sleeps, then hello
    /exit            os._exit(1) in the middle of the request
    /exit0           os._exit(0) in the middle of the request
    /segv            crashes the interpreter (reads address 0 with ctypes)
    /gen?size=N      N bytes in 64 KiB chunks (a generator: spills when the client is slow)
"""
import ctypes
import os
import time
from urllib.parse import parse_qs

HELLO = b"Hello, world!\n"


def _gen(n):
    chunk = b"g" * 65536
    while n > 0:
        yield chunk[:n]
        n -= len(chunk)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    head = [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))]
    if path == "/exit":
        os._exit(1)
    if path == "/exit0":
        os._exit(0)
    if path == "/segv":
        ctypes.string_at(0)
    if path == "/gen":
        start_response("200 OK", head)
        return _gen(int(qs.get("size", ["1048576"])[0]))
    if path == "/slow":
        time.sleep(float(qs.get("t", ["1"])[0]))
    start_response("200 OK", head + [("Content-Length", str(len(HELLO)))])
    return [HELLO]
