"""Answers its worker's pid; /grow?mb=N keeps N more MiB alive in this process (memory-limit tests).
Writes $WSGID_E2E_DIR/grew-PID after growing. $GROW_AT_IMPORT MiB are kept from the import on."""
import os
from urllib.parse import parse_qs

_kept = [b"\x01" * (int(os.environ.get("GROW_AT_IMPORT", "0")) * 1024 * 1024)]


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/grow":
        mb = int(parse_qs(environ.get("QUERY_STRING", "")).get("mb", ["100"])[0])
        # bytes(n) is zero-filled by calloc, which may not touch the pages: repeating a non-zero byte
        # writes every page in one C loop.
        _kept.append(b"\x01" * (mb * 1024 * 1024))
    body = ("%d\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
