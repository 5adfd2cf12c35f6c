"""The app every server runs for the core figures: / hello, /echo POST echo, /big 16 MiB,
/io/0.5ms, /io/5ms and /io/50ms (sleep with the GIL released, then hello).

Dispatch costs one dict lookup, the same for every server. Flask and the TechEmpower-style app
(psycopg2, jinja2) are kept out of this process (they are served on their own: flaskapp.py, tfb.py)
so that worker RSS measures the server, not those libraries.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import big  # noqa: E402
import echo  # noqa: E402
import hello  # noqa: E402
import sleep  # noqa: E402

ROUTES = {"/": hello.application, "/echo": echo.application, "/big": big.application,
          **sleep.ROUTES}


def application(environ, start_response):
    app = ROUTES.get(environ.get("PATH_INFO") or "/")
    if app is None:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"Not found\n"]
    return app(environ, start_response)
