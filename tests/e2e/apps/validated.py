"""An app wrapped in wsgiref.validate.validator: any PEP 3333 violation by the server raises an
AssertionError (a 500) or issues a WSGIWarning (which would reach the error log)."""
from wsgiref.validate import validator


def _app(environ, start_response):
    # PEP 3333 (and the validator) want read(size): the app must not read past CONTENT_LENGTH.
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    out = b"validated: got %d bytes\n" % len(body)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(out)))])
    return [out]


application = validator(_app)
