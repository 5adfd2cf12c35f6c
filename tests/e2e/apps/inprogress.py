"""For wsgictl top, status --requests and stacks: /db?t=SECONDS waits in waiting_for_db()
(time.sleep, the GIL released), or, with &until=PATH, until the file PATH exists (SECONDS at
most: a test that must see it in progress says when it may end, whatever the machine's load),
/regex?n=N holds the GIL in the re module's C code in stuck_in_regex() (catastrophic
backtracking: about 2^N steps, no bytecode runs meanwhile); anything else answers at once with
the worker's pid."""
import os
import re
import time
from urllib.parse import parse_qs


def waiting_for_db(t, until=None):
    if until is None:
        time.sleep(t)
        return
    end = time.monotonic() + t
    while not os.path.exists(until) and time.monotonic() < end:
        time.sleep(0.02)


def stuck_in_regex(n):
    re.match(r"(a+)+$", "a" * n + "b")


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    path = environ.get("PATH_INFO")
    if path == "/db":
        waiting_for_db(float(qs.get("t", ["5"])[0]), qs.get("until", [None])[0])
    elif path == "/regex":
        stuck_in_regex(int(qs.get("n", ["25"])[0]))
    body = b"%d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
