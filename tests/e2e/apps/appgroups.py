"""One app mounted several times in different application groups (tests/e2e/test_app_groups.py).

GET ?set=X stores X in a module global (appgroups_state.value, one module per interpreter); any
GET answers JSON: that global, the environ's application group, SCRIPT_NAME/PATH_INFO, the WHO
environment variable (a mount's env) in os.environ and in the process's environment (C's getenv,
what libpq reads), the working directory, sys.path's first entries and the interpreter's identity
(the id of its sys module). ?numpy=1 imports numpy and sums 0..9.
"""
import ctypes
import json
import os
import sys
import threading
from urllib.parse import parse_qs

import appgroups_state


_libc_getenv = ctypes.CDLL(None).getenv
_libc_getenv.restype = ctypes.c_char_p


def _getenv(name):
    v = _libc_getenv(name)
    return v.decode() if v is not None else None


def application(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    if "set" in q:
        appgroups_state.value = q["set"][0]
    out = {
        "value": appgroups_state.value,
        "group": environ["wsgid.application_group"],
        "process_group": environ["wsgid.process_group"],
        "script_name": environ["SCRIPT_NAME"],
        "path_info": environ["PATH_INFO"],
        "who": os.environ.get("WHO"),
        "c_who": _getenv(b"WHO"),
        "cwd": os.getcwd(),
        "path": sys.path[:3],
        "interp": id(sys),
        "thread": threading.get_ident(),
        "multithread": environ["wsgi.multithread"],
    }
    if "numpy" in q:
        import numpy
        out["numpy"] = int(numpy.arange(10).sum())
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
