"""An app for tests/e2e/test_balance.py: which worker answers, and a request that holds its thread.

    /pid    the worker's pid (after ?ms=N: N ms later)
    /hold   creates $WSGID_E2E_DIR/held-<pid>, then waits (GIL released) until
            $WSGID_E2E_DIR/release exists (at most 30 s); answers the pid
    /hold?k=NAME  the same with held-<pid>-NAME, and $WSGID_E2E_DIR/release-NAME releases it too
While $WSGID_E2E_DIR/slow-start exists (at most 30 s) the app's import waits: a worker started
meanwhile is not ready.
"""
import os
import time

_DIR = os.environ.get("WSGID_E2E_DIR", "/tmp")
_end = time.monotonic() + 30
while os.path.exists(os.path.join(_DIR, "slow-start")) and time.monotonic() < _end:
    time.sleep(0.05)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    pid = b"%d" % os.getpid()
    if path == "/hold":
        qs = environ.get("QUERY_STRING", "")
        name = qs[2:] if qs.startswith("k=") else None
        held = "held-%d" % os.getpid() + ("-" + name if name else "")
        with open(os.path.join(_DIR, held), "w"):
            pass
        mine = os.path.join(_DIR, "release-" + name) if name else None
        end = time.monotonic() + 30
        while (not os.path.exists(os.path.join(_DIR, "release"))
               and not (mine and os.path.exists(mine)) and time.monotonic() < end):
            time.sleep(0.01)
    elif path == "/pid" and environ.get("QUERY_STRING", "").startswith("ms="):
        time.sleep(int(environ["QUERY_STRING"][3:]) / 1000)
    elif path != "/pid":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such path\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(pid)))])
    return [pid]
