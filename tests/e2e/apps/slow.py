"""Sleeps ?t seconds (default 2), then answers. Writes $WSGID_E2E_DIR/slow-started first, so a
test knows the request has reached the app."""
import os
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    t = float(qs.get("t", ["2"])[0])
    d = os.environ.get("WSGID_E2E_DIR")
    if d:
        with open(os.path.join(d, "slow-started"), "w") as f:
            f.write(str(os.getpid()))
    time.sleep(t)
    body = b"slept %.1f\n" % t
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
