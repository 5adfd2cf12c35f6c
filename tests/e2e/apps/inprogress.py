"""For wsgictl top, status --requests and stacks: /db?t=SECONDS waits in waiting_for_db()
(time.sleep, the GIL released), /regex?n=N holds the GIL in the re module's C code in
stuck_in_regex() (catastrophic backtracking: about 2^N steps, no bytecode runs meanwhile);
anything else answers at once with the worker's pid."""
import os
import re
import time
from urllib.parse import parse_qs


def waiting_for_db(t):
    time.sleep(t)


def stuck_in_regex(n):
    re.match(r"(a+)+$", "a" * n + "b")


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    path = environ.get("PATH_INFO")
    if path == "/db":
        waiting_for_db(float(qs.get("t", ["5"])[0]))
    elif path == "/regex":
        stuck_in_regex(int(qs.get("n", ["25"])[0]))
    body = b"%d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
