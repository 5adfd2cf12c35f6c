"""Runs the wsgi.input calls the query string names on the request body and answers what each
returned, as JSON: "readline:-1,read:5,readlines:100,iter,read:0" (a size of "none" passes None).
Each result is [its length, its SHA-256] (readlines and iter: a list of those), so a test can
compare them with io.BytesIO's on the same body."""
import hashlib
import json


def _digest(b):
    return [len(b), hashlib.sha256(b).hexdigest()]


def application(environ, start_response):
    inp = environ["wsgi.input"]
    out = []
    for op in environ.get("QUERY_STRING", "").split(","):
        name, _, arg = op.partition(":")
        args = () if arg == "" else (None,) if arg == "none" else (int(arg),)
        if name == "iter":
            out.append([_digest(line) for line in inp])
        elif name == "readlines":
            out.append([_digest(line) for line in inp.readlines(*args)])
        else:
            out.append(_digest(getattr(inp, name)(*args)))
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
