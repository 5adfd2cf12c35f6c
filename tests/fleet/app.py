"""The fleet's app: every host serves it, each from its own directory ($FLEET_DIR).

    any path    "HOST VERSION\n": the host's name ($FLEET_HOST) and the code version, read from
                $FLEET_DIR/version when the app is imported (a new version = a restart that
                imports it again), after a 5 ms pause (some requests are always in flight)
    while $FLEET_DIR/hang exists, every request waits for its removal (a hung host: the
                group's request-timeout ends such a request with a 504)
"""
import os
import time

_DIR = os.environ["FLEET_DIR"]
_HOST = os.environ["FLEET_HOST"]
with open(os.path.join(_DIR, "version")) as f:
    _VERSION = f.read().strip()
_BODY = ("%s %s\n" % (_HOST, _VERSION)).encode()
_HANG = os.path.join(_DIR, "hang")


def application(environ, start_response):
    time.sleep(0.005)
    while os.path.exists(_HANG):
        time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(_BODY)))])
    return [_BODY]
