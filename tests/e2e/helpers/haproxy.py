"""HAProxy in front of wsgid: `haproxy -f TMP/haproxy/haproxy.cfg -db` (foreground, no daemon),
on a free 127.0.0.1 port. HAProxy writes its own warnings and alerts to stderr; the fixture's
global section sends the traffic log there as well, at the `notice` level and up: with
`option log-separate-errors` a request that failed (an aborted or refused server connection, a
timeout, a 5xx) is logged at `err`, and fails the test unless expected (`option dontlognull`: a
connection that sent nothing, as the fixture's own wait for the port, is not logged).

Environment:
    HAPROXY_BIN     the haproxy binary (default: /usr/sbin/haproxy)
"""
import os
import re

from helpers.proxy import ProxyServer

HAPROXY_BIN = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")

# "[WARNING]  (1234) : config : ..." (HAProxy's own), "<131>Nov 24 21:00:00 haproxy[1234]: ..."
# (the traffic log in the short format: <facility * 8 + severity>).
OWN_LINE = re.compile(r"^\[(\w+)\]\s+\(\d+\) : ")
TRAFFIC_LINE = re.compile(r"^<(\d+)>")
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def http_tcp(addr):
    """mode http to wsgid's TCP listener, connections to wsgid kept open and shared
    (http-reuse safe: an idle one serves the next request of the same client connection, or
    of any client connection once it has made its first request); option forwardfor adds
    X-Forwarded-For. timeout server is above wsgid's request-timeout plus shutdown-timeout
    (65 s): wsgid ends a stuck request, with its 504, before HAProxy gives up on it."""
    return """frontend www
    bind 127.0.0.1:{port}
    mode http
    timeout client 30s
    option forwardfor
    default_backend wsgid

backend wsgid
    mode http
    timeout connect 5s
    timeout server 90s
    http-reuse safe
    server site %s:%d
""" % addr


class HAProxy(ProxyServer):
    name = "haproxy"
    binary = HAPROXY_BIN
    bad_levels = ("emerg", "alert", "crit", "err", "ALERT", "WARNING")

    def __init__(self, tmp, snippet):
        """snippet: the frontend and backend sections; {port} stands for HAProxy's port."""
        super().__init__(tmp, "haproxy")
        d = self.dir
        self.log_path = d / "stderr.log"
        self.conf = """global
    log stderr format short local0 notice
    pidfile %(d)s/haproxy.pid

defaults
    log global
    option httplog
    option log-separate-errors
    option dontlognull

%(snippet)s""" % {"d": d, "snippet": snippet.replace("{port}", str(self.port))}
        (d / "haproxy.cfg").write_text(self.conf)
        self.start([HAPROXY_BIN, "-f", str(d / "haproxy.cfg"), "-db"])

    def level(self, line):
        m = OWN_LINE.match(line)
        if m:
            return m.group(1)
        m = TRAFFIC_LINE.match(line)
        if m:
            return SEVERITIES[int(m.group(1)) % 8]
        return None
