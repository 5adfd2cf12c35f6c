"""Takes $SLOW_IMPORT seconds (default 3) to import: startup-timeout tests."""
import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT", "3")))


def application(environ, start_response):
    body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
