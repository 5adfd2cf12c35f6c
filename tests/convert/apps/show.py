"""The convert tests' app: one "key=value" line per thing a converted deployment must give the
app as the original did (the mount split, the environ set by the server's config, the process
environment, python-path, the working directory, the group and interpreter), and the pid last,
which the test leaves out of the comparison."""
import hashlib
import os


def helper():
    try:
        import helper as h     # in lib/, on python-path only
        return h.VALUE
    except ImportError:
        return "missing"


def make(name):
    def application(environ, start_response):
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n) if n else b""
        group = environ.get("mod_wsgi.process_group", environ.get("wsgid.process_group"))
        ag = environ.get("mod_wsgi.application_group", environ.get("wsgid.application_group"))
        lines = [
            "app=%s" % name,
            "group=%s" % group,
            "main_interpreter=%s" % (ag == ""),
            "method=%s" % environ["REQUEST_METHOD"],
            "script_name=%s" % environ.get("SCRIPT_NAME", ""),
            "path_info=%s" % environ["PATH_INFO"],
            "query=%s" % environ.get("QUERY_STRING", ""),
            "site_env=%s" % environ.get("SITE_ENV"),
            "site_region=%s" % environ.get("SITE_REGION"),
            "area=%s" % environ.get("AREA"),
            "authorization=%s" % environ.get("HTTP_AUTHORIZATION"),
            "lang=%s" % os.environ.get("LANG"),
            "greeting=%s" % os.environ.get("GREETING"),
            "helper=%s" % helper(),
            "cwd=%s" % os.getcwd(),
            "multithread=%s" % environ["wsgi.multithread"],
            "body=%d:%s" % (len(body), hashlib.md5(body).hexdigest()),
            "pid=%d" % os.getpid(),
        ]
        out = ("\n".join(lines) + "\n").encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(out)))])
        return [out]
    return application
