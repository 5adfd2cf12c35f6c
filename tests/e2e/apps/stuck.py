"""/regex holds the GIL for hours: catastrophic backtracking inside the re module's C code, where
no Python bytecode runs, so neither the interpreter's thread switch nor an asynchronous exception
can get in. Anything else answers at once with the worker's pid."""
import os
import re


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/regex":
        re.match(r"(a+)+$", "a" * 40 + "b")
    body = b"%d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
