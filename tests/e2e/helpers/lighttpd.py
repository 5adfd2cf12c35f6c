"""lighttpd 1.4 in front of wsgid: `lighttpd -D -f TMP/lighttpd/lighttpd.conf` (foreground), on a
free 127.0.0.1 port, its error log, pid file and upload spool in TMP/lighttpd. lighttpd's error
log has no levels: a line other than its own start and stop lines (a backend it could not reach,
a response it could not parse) fails the test unless expected.

The three ways lighttpd speaks to a backend, each with the settings the README's "lighttpd"
section shows:
- mod_scgi with scgi.protocol "uwsgi" (uwsgi_unix);
- mod_proxy, HTTP/1.1 with Connection: close (http_unix);
- mod_fastcgi (fastcgi_unix).
Each maps "/" to wsgid. For "/", lighttpd's SCGI and FastCGI modules put the path's first
segment in SCRIPT_NAME ("/a" and PATH_INFO "/b" for /a/b) unless fix-root-scriptname is on; on,
SCRIPT_NAME is "" and PATH_INFO the whole decoded path, as a WSGI app mounted at the root wants.
check-local off: lighttpd would look for the path under its document-root first.

server.stream-response-body 1: lighttpd passes a response on as it comes (chunked when it has no
length), spooling to its temp files what a slow client has not taken. Its default (0) holds the
whole response and then sends it with a Content-Length: a streamed answer would arrive at its
end. Request bodies are read whole before lighttpd opens the connection to wsgid (its default,
stream-request-body 0), a body without a length too: wsgid gets it with CONTENT_LENGTH.

Environment:
    LIGHTTPD_BIN    the lighttpd binary (default: /usr/sbin/lighttpd)
"""
import os
import re
import signal

from helpers.proxy import ProxyServer

LIGHTTPD_BIN = os.environ.get("LIGHTTPD_BIN", "/usr/sbin/lighttpd")

# "2026-12-06 15:07:04: (server.c.1704) server started (lighttpd/1.4.69)"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: \((\S+)\) (.*)$")
OWN = re.compile(r"^server (started|stopped|shutdown)|^\[note\] graceful shutdown")


def uwsgi_unix(sock):
    """mod_scgi speaking uwsgi to wsgid's unix socket, a connection per request."""
    return """server.modules += ("mod_scgi")
scgi.protocol = "uwsgi"
scgi.server = ("/" => (("socket" => "%s",
                        "check-local" => "disable",
                        "fix-root-scriptname" => "enable")))
""" % sock


def http_unix(sock):
    """mod_proxy to wsgid's unix socket: HTTP/1.1 with Connection: close, a connection per request.
    lighttpd appends the client's address to X-Forwarded-For and sets X-Forwarded-Proto,
    X-Forwarded-Host and X-Host itself, replacing what a client sent; a client's Forwarded goes on
    (wsgid believes the X-Forwarded family unless forwarded-headers says otherwise)."""
    return """server.modules += ("mod_proxy")
proxy.server = ("" => (("host" => "%s")))
""" % sock


def fastcgi_unix(sock):
    """mod_fastcgi to wsgid's unix socket, a connection per request (no FCGI_KEEP_CONN)."""
    return """server.modules += ("mod_fastcgi")
fastcgi.server = ("/" => (("socket" => "%s",
                           "check-local" => "disable",
                           "fix-root-scriptname" => "enable")))
""" % sock


class Lighttpd(ProxyServer):
    name = "lighttpd"
    binary = LIGHTTPD_BIN
    stop_signal = signal.SIGTERM
    bad_levels = ("error",)

    def __init__(self, tmp, snippet):
        super().__init__(tmp, "lighttpd")
        d = self.dir
        (d / "spool").mkdir(exist_ok=True)
        (d / "root").mkdir(exist_ok=True)
        self.conf = """server.document-root = "%(d)s/root"
server.bind = "127.0.0.1"
server.port = %(port)d
server.errorlog = "%(d)s/error.log"
server.pid-file = "%(d)s/lighttpd.pid"
server.upload-dirs = ("%(d)s/spool")
server.stream-response-body = 1
%(snippet)s""" % {"d": d, "port": self.port, "snippet": snippet}
        (d / "lighttpd.conf").write_text(self.conf)
        self.start([LIGHTTPD_BIN, "-D", "-f", str(d / "lighttpd.conf")])

    def level(self, line):
        m = LOG_LINE.match(line)
        if not m:
            return None
        return "info" if OWN.search(m.group(2)) else "error"
