"""An app for the hand-off tests (tests/e2e/test_handoff.py): requests that can only complete when
N of them run at once, next to requests that answer at once.

    /fast               "ok\\n" at once
    /policy             the scheduling policy (os.SCHED_*) of the thread that runs the request
    /barrier?n=N&timeout=S&hold=H
                        waits (GIL released) on a threading.Barrier(N) shared by the process, at
                        most S seconds (default 20); once it is passed, holds until the file
                        $WSGID_E2E_DIR/release exists (at most H seconds, default 10), then answers
                        200 with a JSON line {"entered", "passed", "released", "waited"}
                        (time.monotonic() values of this process). A barrier that times out
                        answers 500 with the same JSON plus "error" and "entered_total" (how many
                        /barrier requests had reached the app when it broke); no exception, so
                        nothing goes to the error log.
Every /barrier request creates $WSGID_E2E_DIR/barrier-entered-<k> when it enters the app and
$WSGID_E2E_DIR/barrier-passed-<k> once past the barrier (k counts from 1).
"""
import json
import os
import threading
import time
from urllib.parse import parse_qs

_DIR = os.environ.get("WSGID_E2E_DIR", "/tmp")
_lock = threading.Lock()
_barriers = {}
_entered = [0]
_passed = [0]


def _barrier(n):
    with _lock:
        b = _barriers.get(n)
        if b is None:
            b = _barriers[n] = threading.Barrier(n)
        return b


def _answer(start_response, status, body):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/fast":
        return _answer(start_response, "200 OK", b"ok\n")
    if path == "/policy":
        return _answer(start_response, "200 OK", b"%d" % os.sched_getscheduler(0))
    if path != "/barrier":
        return _answer(start_response, "404 Not Found", b"no such path\n")
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(qs.get("n", ["8"])[0])
    timeout = float(qs.get("timeout", ["20"])[0])
    hold = float(qs.get("hold", ["10"])[0])
    info = {"entered": time.monotonic()}
    with _lock:
        _entered[0] += 1
        k = _entered[0]
    with open(os.path.join(_DIR, "barrier-entered-%d" % k), "w") as f:
        f.write(str(info["entered"]))
    b = _barrier(n)
    found_broken = b.broken
    try:
        if found_broken:
            raise threading.BrokenBarrierError
        b.wait(timeout)
    except threading.BrokenBarrierError:
        waited = time.monotonic() - info["entered"]
        info.update(error="found the barrier broken (an earlier one timed out)" if found_broken
                    else "barrier broken after %.1f s in the app" % waited,
                    waited=waited, entered_total=_entered[0])
        return _answer(start_response, "500 Barrier Timeout", json.dumps(info).encode() + b"\n")
    info["passed"] = time.monotonic()
    with _lock:
        _passed[0] += 1
        k = _passed[0]
    with open(os.path.join(_DIR, "barrier-passed-%d" % k), "w") as f:
        f.write(str(info["passed"]))
    release = os.path.join(_DIR, "release")
    end = info["passed"] + hold
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.01)
    info["released"] = time.monotonic()
    info["waited"] = info["passed"] - info["entered"]
    return _answer(start_response, "200 OK", json.dumps(info).encode() + b"\n")
