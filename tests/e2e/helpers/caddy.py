"""Caddy 2 in front of wsgid: `caddy run --config TMP/caddy/Caddyfile --adapter caddyfile`, with
the admin endpoint off, automatic HTTPS off and its storage in TMP/caddy (HOME and the XDG
directories point there too, so nothing is written outside the test's temp dir). Caddy logs JSON
lines to stderr ({"level":"error",...}); error and worse fail the test unless expected.

Environment:
    CADDY_BIN       the caddy binary (default: /usr/bin/caddy)
"""
import json
import os
import signal

from helpers.proxy import ProxyServer

CADDY_BIN = os.environ.get("CADDY_BIN", "/usr/bin/caddy")


def reverse_proxy_unix(sock):
    """reverse_proxy to wsgid's unix socket over HTTP/1.1, connections kept (Caddy's default).
    Caddy keeps an idle one 2 minutes by default: keepalive 60s drops it before wsgid's
    keepalive-timeout (75 s) would, so Caddy never sends on a connection wsgid is closing. Caddy
    sets X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host itself."""
    return """reverse_proxy unix/%s {
	transport http {
		keepalive 60s
	}
}
""" % sock


def fastcgi_unix(sock):
    """reverse_proxy to wsgid's unix socket over FastCGI (transport fastcgi). Without split_path
    Caddy 2.6 sends SCRIPT_NAME "" and the whole decoded path as PATH_INFO (split_path ".php"
    would cut it there, as php_fastcgi does), REQUEST_URI as the client sent it, and opens a
    connection per request (no FCGI_KEEP_CONN). A body without a length (chunked) goes as
    CONTENT_LENGTH -1 and its bytes in STDIN. Caddy 2.6 does not flush a FastCGI response without
    Content-Length as it comes: flush_interval -1 passes a streamed answer on at once (chunked);
    without it Caddy holds a small one to its end (a generator's five parts 0.3 s apart arrived
    at once after 1.5 s, with a Content-Length). It passes the CGI head's Status line on to the
    client as a header (Status: 200 OK) besides using it as the status."""
    return """reverse_proxy unix/%s {
	flush_interval -1
	transport fastcgi
}
""" % sock


def reverse_proxy_unix_trusted(sock):
    """reverse_proxy_unix for a wsgid group with trusted-proxies: unix. Caddy replaces a client's
    X-Forwarded-For, -Proto and -Host with its own (it trusts no client: its own trusted_proxies,
    for proxies in front of Caddy, is left unset) but passes a client's Forwarded on, which
    wsgid would believe: header_up drops it."""
    return """reverse_proxy unix/%s {
	header_up -Forwarded
	transport http {
		keepalive 60s
	}
}
""" % sock


class Caddy(ProxyServer):
    name = "caddy"
    binary = CADDY_BIN
    stop_signal = signal.SIGTERM
    bad_levels = ("error", "panic", "fatal")

    def __init__(self, tmp, snippet):
        super().__init__(tmp, "caddy")
        d = self.dir
        self.log_path = d / "stderr.log"
        site = "".join("\t" + line + "\n" for line in snippet.strip("\n").split("\n"))
        self.conf = """{
\tadmin off
\tauto_https off
\tstorage file_system %(d)s/storage
}

:%(port)d {
\tbind 127.0.0.1
%(site)s}
""" % {"d": d, "port": self.port, "site": site}
        (d / "Caddyfile").write_text(self.conf)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(d),
               "XDG_DATA_HOME": str(d / "data"), "XDG_CONFIG_HOME": str(d / "config")}
        self.start([CADDY_BIN, "run", "--config", str(d / "Caddyfile"), "--adapter", "caddyfile"],
                   env=env)

    def level(self, line):
        if not line.startswith("{"):
            return None
        try:
            return json.loads(line).get("level")
        except ValueError:
            return None
