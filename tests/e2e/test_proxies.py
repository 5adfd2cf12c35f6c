"""Every common proxy in front of wsgid, end to end (issue #14, part 2): nginx (uwsgi_pass,
proxy_pass with kept connections, fastcgi_pass with kept connections), Apache httpd
(mod_proxy_uwsgi, mod_proxy_http, mod_proxy_fcgi), HAProxy (mode http, and FastCGI through a
fcgi-app), Caddy (reverse_proxy over HTTP and over FastCGI) and lighttpd (mod_scgi speaking uwsgi,
mod_proxy, mod_fastcgi). Each proxy's config is the
minimal one the README's "Proxies" section shows (helpers/<proxy>.py); each test runs against the
real proxy and the real daemon.

The group serves the test apps by mount: / the environ as JSON, /hello, /echo (the body back,
with its SHA-256), /big (bytes of a known length), /stream (a generator: no length) and /m (WSGI
mistakes: /m/raise-before is an exception before the head, a 500).

The client connects from 127.0.0.2, the proxies listen on 127.0.0.1: so REMOTE_ADDR tells the
client (127.0.0.2, what the uwsgi and FastCGI paths pass on in their variables) from the proxy
(127.0.0.1 over TCP, "" over a unix socket: what the HTTP paths give a group without
trusted-proxies). What each HTTP proxy adds is asserted as the HTTP_X_FORWARDED_* /
HTTP_FORWARDED it leaves in the environ (PATHS below), and what it does with an X-Forwarded-For
the client sent. TRUSTED below runs the HTTP paths again with the group's trusted-proxies set to
the proxy: REMOTE_ADDR is then the client, and what the client forged is not believed;
test_haproxy_send_proxy_v2 does the same with HAProxy's PROXY v2 header (proxy-protocol).
"""
import hashlib
import json
import re
import socket
import subprocess
import time
import warnings
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from requests.adapters import HTTPAdapter

from helpers import apache as apache_conf
from helpers import caddy as caddy_conf
from helpers import haproxy as haproxy_conf
from helpers import lighttpd as lighttpd_conf
from helpers import nginx as nginx_conf
from helpers.clients import HELLO, MiB, Conn, big_body, http_request
from helpers.config import app
from helpers.procs import free_port, wait_for

CLIENT = "127.0.0.2"
HOST = "www.example.test"
TEN_MIB = 10 * MiB

# nginx with its connections to wsgid kept (README, "nginx"): an upstream block with keepalive.
NGINX_UPSTREAM = """upstream site1 {
        server unix:%s;
        keepalive 32;
    }"""
NGINX_KEEPALIVE = """location / {
            proxy_pass http://site1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }"""
# The same for a group with trusted-proxies: unix. nginx passes a client's X-Forwarded-Proto,
# -Host and Forwarded on unless told otherwise, and wsgid would believe them from nginx: these
# lines set the first two and drop the third (an empty value is not sent).
NGINX_KEEPALIVE_TRUSTED = NGINX_KEEPALIVE.replace("""
        }""", """
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Forwarded "";
        }""")

# nginx's fastcgi_pass with its connections kept (as tests/e2e/test_fastcgi.py): fastcgi_keep_conn
# (FCGI_KEEP_CONN) and an upstream keepalive pool. fastcgi_params sends SCRIPT_NAME
# $fastcgi_script_name (the decoded path) and no PATH_INFO; the two lines after it send
# SCRIPT_NAME "" (after the first: wsgid keeps the last of a name) and PATH_INFO $uri, the decoded
# path. REQUEST_URI is the client's, as it sent it.
NGINX_FCGI_UPSTREAM = """upstream site1 {
        server unix:%s;
        keepalive 32;
    }"""
NGINX_FCGI = """location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_keep_conn on;
            fastcgi_pass site1;
        }"""


# Each starts a proxy (the factory of its fixture) in front of the wsgid d.

def nginx_uwsgi(nginx, d):
    return nginx(nginx_conf.uwsgi_location(d.unix))


def nginx_http(nginx, d):
    return nginx(NGINX_KEEPALIVE, http_extra=NGINX_UPSTREAM % d.unix)


def apache_uwsgi(apache, d):
    return apache(apache_conf.uwsgi_unix(d.unix))


def apache_http(apache, d):
    return apache(apache_conf.http_tcp(d.tcp))


def haproxy_http(haproxy, d):
    return haproxy(haproxy_conf.http_tcp(d.tcp))


def caddy_reverse_proxy(caddy, d):
    return caddy(caddy_conf.reverse_proxy_unix(d.unix))


def lighttpd_uwsgi(lighttpd, d):
    return lighttpd(lighttpd_conf.uwsgi_unix(d.unix))


def lighttpd_http(lighttpd, d):
    return lighttpd(lighttpd_conf.http_unix(d.unix))


def nginx_fastcgi(nginx, d):
    return nginx(NGINX_FCGI, http_extra=NGINX_FCGI_UPSTREAM % d.unix)


def apache_fcgi(apache, d):
    return apache(apache_conf.fcgi_unix(d.unix))


def haproxy_fcgi(haproxy, d):
    return haproxy(haproxy_conf.fcgi_tcp(d.tcp))


def caddy_fastcgi(caddy, d):
    return caddy(caddy_conf.fastcgi_unix(d.unix))


def lighttpd_fastcgi(lighttpd, d):
    return lighttpd(lighttpd_conf.fastcgi_unix(d.unix))


# fixture, start: the proxy's fixture and what starts it; protocol: what it speaks to wsgid;
# remote_addr: the REMOTE_ADDR wsgid gives the app; forwarded: the forwarding headers the proxy
# adds, as the app sees them (None: absent); kept: whether the proxy keeps its connections to
# wsgid open between requests; spoofed: the HTTP_X_FORWARDED_FOR the app sees when the client
# itself sent "X-Forwarded-For: 198.51.100.7"; length: whether the client gets the app's
# Content-Length (mod_proxy_fcgi drops it and sends the body chunked).
Path = namedtuple("Path", "id fixture start protocol remote_addr forwarded kept spoofed length",
                  defaults=(True,))
SPOOF = "198.51.100.7"
APPENDED = SPOOF + ", " + CLIENT

NONE = {"HTTP_X_FORWARDED_FOR": None, "HTTP_X_FORWARDED_PROTO": None,
        "HTTP_X_FORWARDED_HOST": None, "HTTP_X_FORWARDED_SERVER": None, "HTTP_FORWARDED": None,
        "HTTP_X_HOST": None}


def fwd(**kw):
    out = dict(NONE)
    out.update(("HTTP_" + k.upper(), v) for k, v in kw.items())
    return out


PATHS = [
    # uwsgi: the client's address goes in the vars (nginx: uwsgi_params' REMOTE_ADDR
    # $remote_addr; Apache: the connection's), and nothing else is added.
    Path("nginx-uwsgi_pass", "nginx", nginx_uwsgi, "uwsgi", CLIENT, NONE, False, SPOOF),
    Path("apache-mod_proxy_uwsgi", "apache", apache_uwsgi, "uwsgi", CLIENT, NONE, False, SPOOF),
    Path("lighttpd-mod_scgi-uwsgi", "lighttpd", lighttpd_uwsgi, "uwsgi", CLIENT, NONE, False,
         SPOOF),
    # nginx adds only what its config says: X-Forwarded-For ($proxy_add_x_forwarded_for: the
    # client's value, if any, then ", " and the client's address).
    Path("nginx-proxy_pass-keepalive", "nginx", nginx_http, "http", "",
         fwd(x_forwarded_for=CLIENT), True, APPENDED),
    # mod_proxy_http adds X-Forwarded-For, -Host (the client's Host) and -Server (Apache's
    # ServerName) by default (ProxyAddHeaders On), appending to the client's; no -Proto.
    Path("apache-mod_proxy_http", "apache", apache_http, "http", "127.0.0.1",
         fwd(x_forwarded_for=CLIENT, x_forwarded_host=HOST, x_forwarded_server="localhost"), True,
         APPENDED),
    # HAProxy adds nothing unless told: option forwardfor adds X-Forwarded-For (2.6 has no
    # option forwarded, nor an X-Forwarded-Proto of its own). It adds a header line of its own
    # after the client's, which wsgid joins with ", " (RFC 9110 5.3).
    Path("haproxy-http", "haproxy", haproxy_http, "http", "127.0.0.1",
         fwd(x_forwarded_for=CLIENT), True, APPENDED),
    # Caddy sets X-Forwarded-For, -Proto and -Host by default, replacing what a client it does not
    # trust (trusted_proxies, none by default) sent.
    Path("caddy-reverse_proxy", "caddy", caddy_reverse_proxy, "http", "",
         fwd(x_forwarded_for=CLIENT, x_forwarded_proto="http", x_forwarded_host=HOST), True,
         CLIENT),
    # lighttpd's mod_proxy appends to X-Forwarded-For and sets X-Forwarded-Proto and -Host (and
    # X-Host, its own) itself, replacing a client's; it opens a connection per request.
    Path("lighttpd-mod_proxy", "lighttpd", lighttpd_http, "http", "",
         fwd(x_forwarded_for=CLIENT, x_forwarded_proto="http", x_forwarded_host=HOST,
             x_host=HOST), False, APPENDED),
    # FastCGI: the client's address goes in the variables (REMOTE_ADDR, and REMOTE_PORT), as with
    # uwsgi; FASTCGI_SENDS below says what else each sends. The client's headers reach the app as
    # HTTP_* variables.
    Path("nginx-fastcgi_pass-keepalive", "nginx", nginx_fastcgi, "fastcgi", CLIENT, NONE, True,
         SPOOF),
    # mod_proxy_fcgi drops the Content-Length of the CGI head (a stand-in responder's too: it is
    # Apache's doing) and sends every body chunked, and HEAD's head without a length.
    Path("apache-mod_proxy_fcgi", "apache", apache_fcgi, "fastcgi", CLIENT, NONE, True, SPOOF,
         False),
    Path("haproxy-fcgi-app", "haproxy", haproxy_fcgi, "fastcgi", CLIENT, NONE, True, SPOOF),
    # Caddy sets its X-Forwarded-* before any transport: they reach the app as HTTP_*. Its
    # FastCGI transport opens a connection per request.
    Path("caddy-reverse_proxy-fastcgi", "caddy", caddy_fastcgi, "fastcgi", CLIENT,
         fwd(x_forwarded_for=CLIENT, x_forwarded_proto="http", x_forwarded_host=HOST), False,
         CLIENT),
    # lighttpd's mod_fastcgi opens a connection per request (no FCGI_KEEP_CONN).
    Path("lighttpd-mod_fastcgi", "lighttpd", lighttpd_fastcgi, "fastcgi", CLIENT, NONE, False,
         SPOOF),
]
FASTCGI = [p for p in PATHS if p.protocol == "fastcgi"]

# What each FastCGI proxy sends for GET /a%20b/%C3%A9/50%25?x=1 (test_fastcgi_variables): the CGI
# variables that tell the app where it is and who asked (None: not sent). All five also send
# REQUEST_METHOD, QUERY_STRING (HAProxy leaves it out when empty), SERVER_PROTOCOL,
# GATEWAY_INTERFACE CGI/1.1, SERVER_SOFTWARE, SERVER_NAME (the Host; "" for nginx without a
# server_name), CONTENT_LENGTH (nginx: "" without a body; Caddy: -1 for a body without a length),
# DOCUMENT_ROOT and SCRIPT_FILENAME (their own guesses, of no use to a WSGI app), and the request's
# headers as HTTP_* (HAProxy: not Authorization, unless pass-header). None sends HTTPS over plain
# HTTP (nginx: fastcgi_params' HTTPS $https if_not_empty; Caddy, HAProxy and Apache: "on" over
# TLS).
DECODED = "/a b/\u00c3\u00a9/50%"
RAW_URI = "/a%20b/%C3%A9/50%25?x=1"
FASTCGI_SENDS = {
    # fastcgi_params: SCRIPT_NAME $fastcgi_script_name (then "" from the location), DOCUMENT_URI
    # $document_uri, REQUEST_SCHEME $scheme, REMOTE_PORT, SERVER_ADDR, SERVER_PORT (nginx's),
    # REDIRECT_STATUS 200.
    "nginx-fastcgi_pass-keepalive": {
        "SCRIPT_NAME": "", "PATH_INFO": DECODED, "REQUEST_URI": RAW_URI,
        "DOCUMENT_URI": DECODED, "REQUEST_SCHEME": "http", "SERVER_ADDR": "127.0.0.1",
        "REDIRECT_STATUS": "200", "HTTPS": None},
    # ap_add_common_vars and ap_add_cgi_vars: also SERVER_ADDR, SERVER_PORT (80: Apache's
    # ServerName), REQUEST_SCHEME, CONTEXT_PREFIX, SERVER_SIGNATURE, SERVER_ADMIN, and
    # Apache's own PATH; SCRIPT_FILENAME is proxy:fcgi://localhost/<the raw path>.
    "apache-mod_proxy_fcgi": {
        "SCRIPT_NAME": "", "PATH_INFO": DECODED, "REQUEST_URI": RAW_URI,
        "DOCUMENT_URI": None, "REQUEST_SCHEME": "http", "SERVER_ADDR": "127.0.0.1",
        "SCRIPT_FILENAME": "proxy:fcgi://localhost/a%20b/%C3%A9/50%25", "HTTPS": None},
    # HAProxy 2.6's defaults (configuration.txt, 10.2): SCRIPT_NAME left out (path-info's first
    # group is empty), PATH_TRANSLATED docroot + PATH_INFO, SERVER_PORT HAProxy's, no
    # DOCUMENT_URI, REQUEST_SCHEME or SERVER_ADDR.
    "haproxy-fcgi-app": {
        "SCRIPT_NAME": "", "PATH_INFO": DECODED, "REQUEST_URI": RAW_URI,
        "DOCUMENT_URI": None, "REQUEST_SCHEME": None, "SERVER_ADDR": None,
        "PATH_TRANSLATED": "/" + DECODED, "HTTPS": None},
    # Caddy 2.6 (modules/caddyhttp/reverseproxy/fastcgi, buildEnv): DOCUMENT_URI "" (no
    # split_path), REQUEST_SCHEME, REMOTE_HOST (the address), REMOTE_PORT, SERVER_PORT (the
    # Host's port, else 80), AUTH_TYPE, REMOTE_IDENT and REMOTE_USER "", PATH_TRANSLATED
    # (root + PATH_INFO), no SERVER_ADDR.
    "caddy-reverse_proxy-fastcgi": {
        "SCRIPT_NAME": "", "PATH_INFO": DECODED, "REQUEST_URI": RAW_URI,
        "DOCUMENT_URI": "", "REQUEST_SCHEME": "http", "SERVER_ADDR": None,
        "REMOTE_HOST": CLIENT, "HTTPS": None},
    # lighttpd 1.4 (gw_backend's CGI environment): with fix-root-scriptname SCRIPT_NAME "" and
    # PATH_INFO the decoded path; PATH_TRANSLATED document-root + PATH_INFO, SCRIPT_FILENAME
    # document-root + "/", REQUEST_SCHEME, SERVER_ADDR, REMOTE_PORT, REDIRECT_STATUS 200, no
    # DOCUMENT_URI.
    "lighttpd-mod_fastcgi": {
        "SCRIPT_NAME": "", "PATH_INFO": DECODED, "REQUEST_URI": RAW_URI,
        "DOCUMENT_URI": None, "REQUEST_SCHEME": "http", "SERVER_ADDR": "127.0.0.1",
        "REDIRECT_STATUS": "200", "HTTPS": None},
}


def ids(p):
    return p.id


class FromClientAddr(HTTPAdapter):
    """requests from 127.0.0.2, so that the client's address differs from the proxy's."""

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (CLIENT, 0)
        super().init_poolmanager(*args, **kw)


class ClientConn(Conn):
    """A raw connection from 127.0.0.2 (helpers.clients.Conn otherwise)."""

    def __init__(self, addr, timeout=10.0):
        self.sock = socket.create_connection(addr, timeout, source_address=(CLIENT, 0))
        self.buf = b""
        self.eof = False


class Setup:
    def __init__(self, d, proxy, path):
        self.d, self.proxy, self.path = d, proxy, path
        self.url = proxy.url
        self.http = requests.Session()
        self.http.mount("http://", FromClientAddr())
        self.http.headers["Host"] = HOST
        self.verify = True

    def get(self, target, **kw):
        return self.http.get(self.url + target, timeout=30, verify=self.verify, **kw)

    def environ(self, target="/", **kw):
        r = self.get(target, **kw)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def site(request, wsgid):
    """wsgid (the group "site": the environ app at /, the other apps mounted) behind the proxy
    of the test's path."""
    path = request.param
    start_proxy = request.getfixturevalue(path.fixture)    # skips here if it is not installed
    mounts = {"/hello": app("hello"), "/echo": app("echo"), "/big": app("big"),
              "/stream": app("stream"), "/m": app("mistakes")}
    opts = apache_conf.SOCKET_OPTS if path.start in (apache_uwsgi, apache_fcgi) else {}
    metrics = ("127.0.0.1", free_port())
    d = wsgid("environ", threads=4, mounts=mounts, top={"metrics": "%s:%d" % metrics},
              queue_timeout="2s", **opts)
    d.metrics = metrics
    s = Setup(d, path.start(start_proxy, d), path)
    yield s
    s.http.close()


# A test so marked runs once per path, its site fixture the wsgid and the proxy of that path.
proxied = pytest.mark.parametrize("site", PATHS, ids=ids, indirect=True)


@proxied
def test_hello(site):
    for _ in range(3):
        r = site.get("/hello")
        assert r.status_code == 200
        assert r.content == HELLO
        assert r.headers["Content-Type"] == "text/plain"


@proxied
def test_upload_10mib_echoed(site):
    body = big_body(TEN_MIB)
    r = site.http.post(site.url + "/echo", data=body, timeout=60,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text[:500]
    digest = hashlib.sha256(body).hexdigest()
    assert r.headers["X-Body-Length"] == str(TEN_MIB)
    assert r.headers["X-Body-Sha256"] == digest             # what the app read
    assert hashlib.sha256(r.content).hexdigest() == digest  # what came back


@proxied
def test_download_10mib_with_length(site):
    r = site.get("/big?size=%d" % TEN_MIB)
    assert r.status_code == 200
    if site.path.length:
        assert r.headers.get("Content-Length") == str(TEN_MIB), r.headers
    else:
        assert r.headers.get("Transfer-Encoding") == "chunked", r.headers
    assert len(r.content) == TEN_MIB
    assert r.content == big_body(TEN_MIB)


@proxied
def test_streamed_response_arrives_whole(site):
    """A generator without Content-Length: the proxy passes it chunked (HTTP/1.1 client)."""
    r = site.get("/stream?n=5&pause=0.02")
    assert r.status_code == 200
    assert r.content == b"".join(b"part %d\n" % i for i in range(5))
    assert "Content-Length" not in r.headers, r.headers
    assert r.headers.get("Transfer-Encoding") == "chunked", r.headers


@proxied
def test_a_client_that_leaves_stops_the_app(site):
    """A client that goes away in the middle of a streamed answer: the proxy gives up its
    connection to wsgid (a close, or FastCGI's ABORT_REQUEST), and wsgid closes the app's
    iterable at its next part, not at its end (400 parts 50 ms apart: 20 s), then serves on."""
    tmp = site.d.log_path.parent
    port = int(site.url.rsplit(":", 1)[1])
    c = ClientConn(("127.0.0.1", port))
    c.send(b"GET /stream/closing?n=400&pause=0.05&name=gone HTTP/1.1\r\nHost: %s\r\n\r\n"
           % HOST.encode())
    time.sleep(1)  # running: some proxies buffer a stream's first bytes, so none is awaited
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.sock.close()
    left = time.monotonic()
    closed = tmp / "closed-gone"
    wait_for(closed.exists, timeout=15, what="the app's iterable closed")
    took = time.monotonic() - left
    given = int(closed.read_text())
    assert given < 300 and took < 10, (given, took)
    assert site.get("/hello").content == HELLO
    site.d.expect_log(r"went away|aborted|closed the FastCGI connection")
    # HAProxy logs a client's disconnection (CD) as an error, Caddy its broken pipe.
    site.proxy.expect_log(r"CD--|aborting with incomplete response")
    print("%s: closed after %d parts, %.1f s after the client left; wsgid saw: %s"
          % (site.path.id, given, took,
             "; ".join(sorted({m.group(0) for m in re.finditer(
                 r"aborted by the proxy[^\n]*|the proxy closed the FastCGI connection|"
                 r"client went away[^\n]*|the client went away", site.d.log())})) or "nothing"))


@proxied
def test_a_stream_goes_out_part_by_part(site):
    """A streamed answer whose app sends X-Accel-Buffering: no (README, "Streaming answers")
    reaches the client part by part: its first part long before its second is made (parts 1 s
    apart). nginx holds a uwsgi_pass or fastcgi_pass stream back otherwise (4.0 s and 1.0 s for
    the first part of such a stream, measured), Apache's mod_proxy_fcgi without flushpackets=on
    too."""
    port = int(site.url.rsplit(":", 1)[1])
    c = ClientConn(("127.0.0.1", port))
    t0 = time.monotonic()
    c.send(b"GET /stream/unbuffered?n=3&pause=1 HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
    c.read_until(b"part 0\n")
    first = time.monotonic() - t0
    c.read_until(b"part 1\n")
    second = time.monotonic() - t0
    c.sock.close()
    assert first < 0.5 and second > 0.9, (first, second)
    site.d.expect_log(r"went away")
    site.proxy.expect_log(r"CD--|aborting with incomplete response")


@proxied
def test_head(site):
    """HEAD gives the head of a GET and no body: a body would be read as the next response on the
    connection, whose GET follows."""
    with ClientConn(site.proxy.addr) as c:
        c.send(http_request("HEAD", "/hello", host=HOST) + http_request("GET", "/hello", host=HOST))
        r = c.response(head_only=True)
        assert r.status == 200, r
        assert r.header("Content-Type") == "text/plain", r
        if site.path.length:
            assert r.header("Content-Length") == str(len(HELLO)), r
        r2 = c.response()
        assert r2.status == 200 and r2.body == HELLO, r2


@proxied
def test_app_500_passed_on(site):
    site.d.expect_log(r"\[req \d+-\d+\] ")    # the traceback, on the lines of its request
    if isinstance(site.proxy, haproxy_conf.HAProxy):
        site.proxy.expect_log(r" 500 \d+ ")     # log-separate-errors: a 5xx is logged as err
    r = site.get("/m/raise-before")
    assert r.status_code == 500
    # The proxy passes wsgid's answer as it is, and the group goes on.
    assert site.get("/hello").content == HELLO


@proxied
def test_environ(site):
    e = site.environ("/a%20b/%C3%A9/50%25?x=1&y=%20&z=%C3%A9",
                     headers={"X-Custom": "yes"})
    assert e["REQUEST_METHOD"] == "GET"
    assert e["SCRIPT_NAME"] == ""
    assert e["PATH_INFO"] == "/a b/\u00c3\u00a9/50%"     # decoded; PEP 3333: bytes as latin-1
    assert e["QUERY_STRING"] == "x=1&y=%20&z=%C3%A9"      # as sent
    assert e["HTTP_HOST"] == HOST
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert e["HTTP_X_CUSTOM"] == "yes"
    assert e["REMOTE_ADDR"] == site.path.remote_addr
    assert e["wsgi.url_scheme"] == "http"
    assert {k: e.get(k) for k in NONE} == site.path.forwarded


@proxied
def test_post_environ(site):
    r = site.http.post(site.url + "/p?k=v", data=b"xyz",
                       headers={"Content-Type": "application/x-thing"}, timeout=30)
    assert r.status_code == 200
    e = r.json()
    assert e["REQUEST_METHOD"] == "POST"
    assert e["CONTENT_TYPE"] == "application/x-thing"
    assert e["CONTENT_LENGTH"] == "3"
    assert e["_body"] == "xyz"


@proxied
def test_client_sent_x_forwarded_for(site):
    """What a proxy does with an X-Forwarded-For the client sent, which wsgid's trusted-proxies
    must expect: nginx, Apache and HAProxy append the client's address to it (the client's claim
    stays first, the last entry is the one to believe); Caddy replaces it; over uwsgi it reaches
    the app as any header, and REMOTE_ADDR is the client's."""
    e = site.environ("/", headers={"X-Forwarded-For": SPOOF})
    assert e["HTTP_X_FORWARDED_FOR"] == site.path.spoofed
    assert e["REMOTE_ADDR"] == site.path.remote_addr


def connections(d):
    r = requests.get("http://%s:%d/metrics" % d.metrics, timeout=5)
    m = re.search(r'^wsgid_connections\{group="site"\} (\d+)', r.text, re.M)
    return int(m.group(1)) if m else 0


@proxied
def test_connections_to_wsgid(site):
    """The HTTP paths keep their connections to wsgid open between requests (nginx: the upstream's
    keepalive; Apache: enablereuse; HAProxy: http-reuse; Caddy by default), and so do the FastCGI
    ones but Caddy's (FCGI_KEEP_CONN: nginx's fastcgi_keep_conn, Apache's enablereuse, HAProxy's
    option keep-conn); nginx's and Apache's uwsgi modules, Caddy's FastCGI transport and all three
    of lighttpd's paths open one per request."""
    for _ in range(3):
        assert site.get("/hello").content == HELLO
    site.http.close()
    if site.path.kept:
        assert wait_for(lambda: connections(site.d) >= 1, 5, what="a kept connection")
    else:
        wait_for(lambda: connections(site.d) == 0, 5, what="no connection left open")


@proxied
def test_chunked_upload_echoed(site, request):
    """A request body without a length (Transfer-Encoding: chunked from the client): nginx reads it
    whole and sends a length (over FastCGI too), HAProxy and Caddy stream it on chunked,
    mod_proxy_http passes it too, lighttpd reads it whole and sends a length on all three of its
    paths; Apache's mod_proxy_uwsgi refuses it with 411 Length Required (it
    reads a body only with a length, which the uwsgi vars need as CONTENT_LENGTH). Over FastCGI,
    mod_proxy_fcgi sends no CONTENT_LENGTH and the body in STDIN records, HAProxy refuses it with
    a 400 of its own unless the body ends within its buffer (it sends only bodies of a known
    length), Caddy sends CONTENT_LENGTH -1 (unknown: wsgid reads STDIN to its end)."""
    body = big_body(MiB + 12345)
    parts = (body[i:i + 65536] for i in range(0, len(body), 65536))
    if site.path.id == "haproxy-fcgi-app":
        # HAProxy waits for the body's end within its buffer (16 KiB): a body that ends there
        # goes with its length; a longer one is refused (P) with the request's head (H), logged
        # as err. It answers and closes at once, so the client sends no more than 32 KiB (which
        # the kernel takes in one write).
        site.proxy.expect_log(r' 400 \d+ - - PH-- .*"POST /echo HTTP/1\.1"')
        head = http_request("POST", "/echo", host=HOST, headers={"Transfer-Encoding": "chunked"})
        with ClientConn(site.proxy.addr) as c:
            c.send(head + b"8000\r\n" + body[:0x8000] + b"\r\n")
            assert c.response().status == 400
        with ClientConn(site.proxy.addr) as c:
            c.send(head + b"5\r\nhello\r\n0\r\n\r\n")
            r = c.response()
            assert r.status == 200 and r.body == b"hello", r
        return
    r = site.http.post(site.url + "/echo", data=parts, timeout=60)
    if site.path.id == "apache-mod_proxy_uwsgi":
        assert r.status_code == 411
        return
    assert r.status_code == 200, r.text[:500]
    assert r.headers["X-Body-Length"] == str(len(body))
    assert r.content == body


fastcgi = pytest.mark.parametrize("site", FASTCGI, ids=ids, indirect=True)


@fastcgi
def test_fastcgi_variables(site):
    """What each FastCGI proxy sends (FASTCGI_SENDS): wsgid passes a proxy's variables to the app
    as they are (the last of a name), so the environ shows them. Besides: REMOTE_ADDR the client,
    REMOTE_PORT its port, SERVER_PROTOCOL, and QUERY_STRING as sent."""
    e = site.environ("/a%20b/%C3%A9/50%25?x=1")
    # (SCRIPT_NAME: HAProxy sends none, and wsgid's environ has SCRIPT_NAME "" then.)
    assert {k: e.get(k) for k in FASTCGI_SENDS[site.path.id]} == FASTCGI_SENDS[site.path.id]
    assert e["REMOTE_ADDR"] == CLIENT
    assert e["REMOTE_PORT"].isdigit() and e["REMOTE_PORT"] != "0"
    assert e["QUERY_STRING"] == "x=1"
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert e["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert e["wsgi.url_scheme"] == "http" and "HTTPS" not in e


@fastcgi
def test_fastcgi_queue_timeout(site):
    """queue-timeout on FastCGI ends the request with FCGI_OVERLOADED after a 504 in STDOUT
    (test_fastcgi.py reads the records): no proxy acts on END_REQUEST's protocol status, and each
    passes the 504 on to its client, then serves on."""
    site.proxy.expect_log(r' 504 \d+ .*"GET /hello HTTP/1\.1"')  # HAProxy logs a 5xx as an error
    with ThreadPoolExecutor(4) as pool:
        busy = [pool.submit(site.get, "/stream?n=40&pause=0.1") for _ in range(4)]
        time.sleep(1)
        r = site.get("/hello")
        assert r.status_code == 504, r.text[:200]
        assert all(f.result().status_code == 200 for f in busy)
    assert site.get("/hello").content == HELLO
    site.d.expect_log(r"over queue-timeout")


# --- trusted-proxies and proxy-protocol through the real proxies ---------------------------------

def nginx_http_trusted(nginx, d):
    return nginx(NGINX_KEEPALIVE_TRUSTED, http_extra=NGINX_UPSTREAM % d.unix)


def apache_http_trusted(apache, d):
    return apache(apache_conf.http_tcp_trusted(d.tcp))


def haproxy_http_trusted(haproxy, d):
    return haproxy(haproxy_conf.http_tcp_trusted(d.tcp))


def haproxy_https_trusted(haproxy, d):
    return haproxy(haproxy_conf.http_tcp_trusted(d.tcp, " ssl crt " + d.cert))


def caddy_reverse_proxy_trusted(caddy, d):
    return caddy(caddy_conf.reverse_proxy_unix_trusted(d.unix))


# trusted: the group's trusted-proxies (the proxy's address as wsgid sees it: "unix" for a unix
# socket); scheme: the client's, which the proxy's X-Forwarded-Proto tells wsgid (HAProxy with a
# TLS bind line: https).
Trusted = namedtuple("Trusted", "id fixture start trusted scheme", defaults=("http",))
TRUSTED = [
    Trusted("nginx-proxy_pass-keepalive", "nginx", nginx_http_trusted, ["unix"]),
    Trusted("apache-mod_proxy_http", "apache", apache_http_trusted, ["127.0.0.1"]),
    Trusted("haproxy-http-forwardfor", "haproxy", haproxy_http_trusted, ["127.0.0.1"]),
    Trusted("haproxy-https-forwardfor", "haproxy", haproxy_https_trusted, ["127.0.0.1"],
            "https"),
    Trusted("caddy-reverse_proxy", "caddy", caddy_reverse_proxy_trusted, ["unix"]),
    # lighttpd's mod_proxy replaces X-Forwarded-Proto and -Host itself: its snippet as it is.
    Trusted("lighttpd-mod_proxy", "lighttpd", lighttpd_http, ["unix"]),
]
# What a client may write to pass for someone else: the proxies' snippets replace or drop every
# X-Forwarded-* header (without those lines the forged X-Forwarded-Proto gets through nginx,
# Apache and HAProxy, which pass a client's on). A forged Forwarded, which none of the five
# drops, is not believed: wsgid takes the X-Forwarded family unless forwarded-headers says
# forwarded.
FORGED = {"X-Forwarded-For": SPOOF, "X-Forwarded-Proto": "https",
          "X-Forwarded-Host": "evil.example", "Forwarded": "for=%s;proto=https;host=evil.example"
          % SPOOF}


def self_signed(tmp):
    """A certificate and its key for www.example.test, in one PEM file (as HAProxy's crt takes)."""
    out = tmp / "tls"
    out.mkdir(exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=" + HOST, "-keyout", str(out / "key.pem"), "-out", str(out / "cert.pem")],
                   check=True, capture_output=True)
    both = out / "both.pem"
    both.write_bytes((out / "cert.pem").read_bytes() + (out / "key.pem").read_bytes())
    return str(both)


@pytest.fixture
def trusted_site(request, wsgid, tmp):
    """wsgid (the environ app, trusted-proxies: the proxy) behind the proxy of the test's path."""
    path = request.param
    start_proxy = request.getfixturevalue(path.fixture)
    d = wsgid("environ", threads=4, trusted_proxies=path.trusted)
    if path.scheme == "https":
        d.cert = self_signed(tmp)
    s = Setup(d, path.start(start_proxy, d), path)
    if path.scheme == "https":
        s.url = s.url.replace("http://", "https://")
        s.http.mount("https://", FromClientAddr())
        s.verify = False    # (a Session's verify would yield to REQUESTS_CA_BUNDLE)
    yield s
    s.http.close()


@pytest.mark.parametrize("trusted_site", TRUSTED, ids=ids, indirect=True)
def test_trusted_proxy_gives_the_client(trusted_site):
    """With trusted-proxies naming the proxy, REMOTE_ADDR is the client (127.0.0.2) on every
    HTTP path, HTTP_HOST and wsgi.url_scheme are what the proxy's X-Forwarded-Host and
    X-Forwarded-Proto say, and what a client forged in those headers or in Forwarded is not
    believed: the proxy appends to X-Forwarded-For (wsgid takes the right-most address that is
    not a trusted proxy), and sets or drops the others."""
    site = trusted_site
    https = site.path.scheme == "https"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # urllib3's InsecureRequestWarning (self-signed)
        for headers in ({}, FORGED):
            for _ in range(2):     # the second on a kept connection to wsgid
                e = site.environ("/x?y=1", headers=headers)
                assert e["REMOTE_ADDR"] == CLIENT, (headers, e)
                assert "REMOTE_PORT" not in e            # the proxies do not say it
                assert e["wsgi.url_scheme"] == site.path.scheme, e
                assert e.get("HTTPS") == ("on" if https else None), e
                assert e["HTTP_HOST"] == HOST and e["SERVER_NAME"] == HOST, e
                assert e["SERVER_PORT"] == ("443" if https else "80"), e
                assert e["PATH_INFO"] == "/x" and e["QUERY_STRING"] == "y=1"
    # The access log names the client too.
    line = site.d.wait_log(r'"GET /x\?y=1 HTTP/1.1"')
    assert line.startswith(CLIENT + " - - ["), line


def test_trusted_https_without_x_forwarded_host(wsgid, haproxy, tmp, request):
    """A TLS proxy that says X-Forwarded-Proto: https and passes the client's Host on, without an
    X-Forwarded-Host (a common nginx and HAProxy setup): the environ is https on port 443."""
    d = wsgid("environ", trusted_proxies=["127.0.0.1"])
    hp = haproxy(haproxy_conf.http_tcp_trusted(d.tcp, " ssl crt " + self_signed(tmp),
                                               forwarded_host=False))
    with warnings.catch_warnings(), requests.Session() as http:
        warnings.simplefilter("ignore")     # urllib3's InsecureRequestWarning (self-signed)
        http.mount("https://", FromClientAddr())
        r = http.get(hp.url.replace("http://", "https://") + "/", headers={"Host": HOST},
                     verify=False, timeout=30)
    e = r.json()
    assert (e["REMOTE_ADDR"], e["wsgi.url_scheme"], e["HTTPS"]) == (CLIENT, "https", "on"), e
    assert (e["HTTP_HOST"], e["SERVER_NAME"]) == (HOST, HOST), e
    assert e["SERVER_PORT"] == "443", e


@pytest.mark.parametrize("mode", ["http", "tcp"])
def test_haproxy_send_proxy_v2(wsgid, haproxy, mode):
    """HAProxy's send-proxy-v2 to a group with proxy-protocol: true and trusted-proxies:
    [127.0.0.1]: REMOTE_ADDR and REMOTE_PORT are the client's, for every request of the client's
    connection (the second goes over the same connection to wsgid: HAProxy keeps a connection that
    began with a PROXY header for its client alone, and mode tcp is the client's bytes as they
    are); another client's connection says its own port. Headers a client wrote are not believed
    (the PROXY header is what names the client)."""
    metrics = ("127.0.0.1", free_port())
    port = free_port()
    d = wsgid("environ", listen=["127.0.0.1:%d" % port], trusted_proxies=["127.0.0.1"],
              proxy_protocol=True, top={"metrics": "%s:%d" % metrics})
    d.metrics = metrics
    hp = haproxy(haproxy_conf.send_proxy_v2(d.tcp, mode))
    forged = {"X-Forwarded-For": SPOOF, "Forwarded": "for=" + SPOOF}

    def environ(c, target):
        c.send(http_request("GET", target, host=HOST, headers=forged))
        r = c.response()
        assert r.status == 200, r
        return json.loads(r.body)

    with ClientConn(hp.addr) as c1:
        port1 = c1.sock.getsockname()[1]
        for i in range(2):
            e = environ(c1, "/one/%d" % i)
            assert (e["REMOTE_ADDR"], e["REMOTE_PORT"]) == (CLIENT, str(port1)), e
            assert e["HTTP_X_FORWARDED_FOR"] == SPOOF      # left as it came, not believed
        # Both went over one connection to wsgid; another client gets one of its own. (The
        # gauge is the workers' last report: waited for.)
        assert wait_for(lambda: connections(d) == 1, 5, what="one connection to wsgid")
        with ClientConn(hp.addr) as c2:
            port2 = c2.sock.getsockname()[1]
            e = environ(c2, "/two")
            assert (e["REMOTE_ADDR"], e["REMOTE_PORT"]) == (CLIENT, str(port2)), e
            assert wait_for(lambda: connections(d) == 2, 5, what="two connections to wsgid")
            e = environ(c1, "/one/2")
            assert (e["REMOTE_ADDR"], e["REMOTE_PORT"]) == (CLIENT, str(port1)), e
    assert d.wait_log(r'"GET /one/1 HTTP/1.1"').startswith(CLIENT + " - - [")
