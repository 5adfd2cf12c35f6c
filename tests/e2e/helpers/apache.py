"""Apache httpd 2.4 in front of wsgid: started in the foreground (-DFOREGROUND) from a
self-contained httpd.conf in TMP/apache (its own ServerRoot, port, PidFile, ErrorLog, mpm_event),
loading only the modules it needs from /usr/lib/apache2/modules (the proxy modules, and
authn_core and authz_core, without which every request is a 500 "couldn't check user").
Debian's apache2 binary reads /etc/apache2/apache2.conf and the APACHE_* variables of envvars
unless given a config of its own: with -f and this file it needs neither.

Run as root, Apache serves requests from children running as www-data: they reach a wsgid unix
socket only through directories they may traverse and a socket whose group is theirs, so the test's
temp dir is made 0711 and the group gets SOCKET_OPTS (socket-group: www-data), as an operator
would give wsgid's socket to Apache's user.

Environment:
    APACHE_BIN          the httpd binary (default: /usr/sbin/apache2)
    APACHE_MODULES      the modules' directory (default: /usr/lib/apache2/modules)
"""
import os
import re
import signal

from helpers.proxy import ProxyServer

APACHE_BIN = os.environ.get("APACHE_BIN", "/usr/sbin/apache2")
MODULES = os.environ.get("APACHE_MODULES", "/usr/lib/apache2/modules")
USER = "www-data"
# Options of the wsgid group whose unix socket Apache's children connect to.
SOCKET_OPTS = {"socket-group": USER} if os.geteuid() == 0 else {}

# The modules every snippet here needs (with mpm_event, authn_core and authz_core).
PROXY_MODULES = ("proxy", "proxy_uwsgi", "proxy_http", "proxy_fcgi", "headers")

# [Tue Nov 24 21:00:00.123456 2026] [proxy:error] [pid 12:tid 34] (111)Connection refused: ...
LOG_LINE = re.compile(r"^\[[^\]]+\] \[(?:[\w.]+:)?(\w+)\] ")
# mpm_event's own races when it stops; neither is a failure when logged after the fixture's
# SIGTERM (a line like it before the stop still fails the test):
# - AH03093: a worker done with a kept-alive client connection hands it back to the listener's
#   pollset, which the stopping listener has closed (EBADF). Seen once under load.
# - AH00468: a stopping child closes the sockets its workers hold (close_worker_sockets), and the
#   worker that then ends its lingering close on the same socket gets EBADF. Seen once, in CI's
#   sanitizer pass (test_client_sent_x_forwarded_for[apache-mod_proxy_fcgi], 2026-12-01).
# - AH03092: the same race as AH03093 for a connection in its lingering close
#   (process_lingering_close). Seen once, in ./dev test's sanitizer pass
#   (test_chunked_upload_echoed[apache-mod_proxy_uwsgi], 2026-12-04).
SHUTDOWN_NOISE = re.compile(r"\(9\)Bad file descriptor: (?:AH03093: process_socket: "
                            r"apr_pollset_add failure for keep alive|AH03092: "
                            r"process_lingering_close: apr_pollset_add failure|"
                            r"AH00468: error closing socket)")


def uwsgi_unix(sock):
    """mod_proxy_uwsgi to wsgid's unix socket: one connection per request (as nginx's
    uwsgi_pass); REMOTE_ADDR, the request line and the headers go in the uwsgi vars."""
    return """ProxyPass "/" "unix:%s|uwsgi://site/"
""" % sock


def http_tcp(addr):
    """mod_proxy_http to wsgid's TCP listener over HTTP/1.1. It keeps its connections to a backend
    (each child a pool) by default; ttl=60 drops an idle one before wsgid's keepalive-timeout
    (75 s) would, so Apache never sends on a connection wsgid is closing. ProxyPreserveHost passes
    the client's Host rather than 127.0.0.1:PORT."""
    return """ProxyPass "/" "http://%s:%d/" ttl=60
ProxyPreserveHost On
""" % addr


def fcgi_unix(sock):
    """mod_proxy_fcgi to wsgid's unix socket, connections kept (enablereuse=on, a pool per child;
    ttl=60 as for mod_proxy_http; flushpackets=on, as README says, or a streamed answer's small
    parts are held back and a client that left goes unnoticed). Apache sends REQUEST_URI as the client sent it, SCRIPT_NAME
    the whole decoded path and no PATH_INFO (the CGI view: the path names a script): the two
    ProxyFCGISetEnvIf lines make SCRIPT_NAME empty and PATH_INFO the decoded path (in an
    ap_expr, %{REQUEST_URI} is Apache's decoded path, without the query)."""
    return """ProxyPass "/" "unix:%s|fcgi://localhost/" enablereuse=on ttl=60 flushpackets=on
ProxyFCGISetEnvIf "true" SCRIPT_NAME ""
ProxyFCGISetEnvIf "true" PATH_INFO "%%{REQUEST_URI}"
""" % sock


def http_tcp_trusted(addr):
    """mod_proxy_http for a wsgid group with trusted-proxies: 127.0.0.1. mod_proxy_http appends
    the client's address to X-Forwarded-For and its Host to X-Forwarded-Host (after what the
    client sent: wsgid believes the last entry), so the Host Apache sends (127.0.0.1:PORT, without
    ProxyPreserveHost) does not matter; it sends no X-Forwarded-Proto and passes a client's
    Forwarded on, so mod_headers sets the one and drops the other: from a trusted proxy wsgid
    would believe a client's own."""
    return """ProxyPass "/" "http://%s:%d/" ttl=60
RequestHeader set X-Forwarded-Proto expr=%%{REQUEST_SCHEME}
RequestHeader unset Forwarded
""" % addr


class Apache(ProxyServer):
    name = "apache2"
    binary = APACHE_BIN
    bad_levels = ("emerg", "alert", "crit", "error")

    def __init__(self, tmp, snippet, modules=PROXY_MODULES):
        super().__init__(tmp, "apache")
        d = self.dir
        user = ""
        if os.geteuid() == 0:
            user = "User %s\nGroup %s\n" % (USER, USER)
            for p in (tmp, d):
                os.chmod(p, 0o711)
        loads = "".join("LoadModule %s_module %s/mod_%s.so\n" % (m, MODULES, m)
                        for m in ("mpm_event", "authn_core", "authz_core") + tuple(modules))
        self.conf = """ServerRoot "%(d)s"
ServerName localhost
Listen 127.0.0.1:%(port)d
PidFile "%(d)s/httpd.pid"
DefaultRuntimeDir "%(d)s"
ErrorLog "%(d)s/error.log"
LogLevel warn
%(user)s
%(loads)s
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 32
LimitRequestBody 0

%(snippet)s
""" % {"d": d, "port": self.port, "user": user, "loads": loads, "snippet": snippet}
        (d / "httpd.conf").write_text(self.conf)
        self.stop_signal = signal.SIGTERM
        self.start([APACHE_BIN, "-f", str(d / "httpd.conf"), "-DFOREGROUND"],
                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"})

    def level(self, line):
        m = LOG_LINE.match(line)
        return m.group(1) if m else None

    def stop(self):
        self.stopped_at = len(self.log())
        super().stop()

    def unexpected_lines(self):
        at = getattr(self, "stopped_at", None)
        after = self.log()[at:] if at is not None else ""
        return [line for line in super().unexpected_lines()
                if not (SHUTDOWN_NOISE.search(line) and line in after)]
