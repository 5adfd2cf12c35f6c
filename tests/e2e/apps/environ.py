"""Returns the WSGI environ as JSON. Values that are not str are described so the tests can
check their types: booleans and tuples as JSON, objects as {"type": ..., "attrs": [...]}."""
import json

_FLAGS = ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated")


def _describe(value):
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, tuple):
        return list(value)
    return {"type": type(value).__name__,
            "attrs": sorted(a for a in ("read", "readline", "readlines", "write", "writelines",
                                        "flush", "__iter__") if hasattr(value, a))}


def application(environ, start_response):
    out = {key: _describe(value) for key, value in environ.items()}
    out["_types"] = {key: type(environ[key]).__name__ for key in _FLAGS if key in environ}
    out["_file_wrapper_callable"] = callable(environ.get("wsgi.file_wrapper"))
    out["_body"] = environ["wsgi.input"].read().decode("latin-1")
    if environ.get("QUERY_STRING") == "errors":
        environ["wsgi.errors"].write("e2e-wsgi-errors-marker\n")
        environ["wsgi.errors"].flush()
    body = json.dumps(out, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
