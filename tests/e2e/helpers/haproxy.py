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


def http_tcp_trusted(addr, bind="", forwarded_host=True):
    """http_tcp for a wsgid group with trusted-proxies: 127.0.0.1. option forwardfor adds a line
    of its own after a client's X-Forwarded-For (wsgid believes the last entry); HAProxy adds no
    X-Forwarded-Proto or -Host and passes a client's on, and its Forwarded: the frontend sets the
    first two and drops the third, or wsgid would believe what the client wrote. bind: more of
    the bind line (" ssl crt /path/to/cert-and-key.pem"); forwarded_host=False: del-header
    X-Forwarded-Host rather than set it (the Host HAProxy passes on is the client's)."""
    host = ("set-header X-Forwarded-Host %[req.hdr(host)]" if forwarded_host
            else "del-header X-Forwarded-Host")
    return """frontend www
    bind 127.0.0.1:{port}%s
    mode http
    timeout client 30s
    option forwardfor
    http-request set-header X-Forwarded-Proto %%[ssl_fc,iif(https,http)]
    http-request %s
    http-request del-header Forwarded
    default_backend wsgid

backend wsgid
    mode http
    timeout connect 5s
    timeout server 90s
    http-reuse safe
    server site %s:%d
""" % ((bind, host) + tuple(addr))


def send_proxy_v2(addr, mode="http"):
    """HAProxy to a wsgid group with proxy-protocol: true and trusted-proxies: 127.0.0.1: each
    connection to wsgid starts with a PROXY v2 header naming the client's address and port.
    mode http: HAProxy keeps such a connection private to its client connection (it is reused
    for that client's next requests only); mode tcp: the client's bytes as they are, after the
    header."""
    return """frontend www
    bind 127.0.0.1:{port}
    mode %(mode)s
    option %(mode)slog
    timeout client 30s
    default_backend wsgid

backend wsgid
    mode %(mode)s
    timeout connect 5s
    timeout server 90s
    server site %(host)s:%(p)d send-proxy-v2
""" % {"mode": mode, "host": addr[0], "p": addr[1]}


def fcgi_tcp(addr):
    """FastCGI (HAProxy 2.1 and later) to wsgid's TCP listener: a fcgi-app, used by a backend
    whose server speaks `proto fcgi`. HAProxy sends REQUEST_URI as the client sent it and, by
    default, SCRIPT_NAME the whole decoded path with no PATH_INFO: path-info's regex splits the
    decoded path into SCRIPT_NAME (its first group, empty here: HAProxy then leaves SCRIPT_NAME
    out) and PATH_INFO (the second, the whole path). docroot is mandatory (it only makes
    SCRIPT_FILENAME and PATH_TRANSLATED). option keep-conn (FCGI_KEEP_CONN) keeps the
    connections, reused as with http-reuse safe; option get-values asks wsgid FCGI_MAX_REQS and
    FCGI_MPXS_CONNS (0: HAProxy sends one request at a time on a connection). HAProxy sends
    only bodies of a known length: a chunked one goes with its length if it ends within HAProxy's
    buffer (16 KiB), and a longer one gets a 400 of HAProxy's own."""
    return """frontend www
    bind 127.0.0.1:{port}
    mode http
    timeout client 30s
    default_backend wsgid

fcgi-app wsgid
    docroot /
    path-info ^()(/.*)$
    option keep-conn
    option get-values

backend wsgid
    mode http
    timeout connect 5s
    timeout server 90s
    http-reuse safe
    use-fcgi-app wsgid
    server site %s:%d proto fcgi
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
