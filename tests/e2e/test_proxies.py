"""Every common proxy in front of wsgid, end to end (issue #14, part 2): nginx (uwsgi_pass, and
proxy_pass with kept connections), Apache httpd (mod_proxy_uwsgi, mod_proxy_http), HAProxy (mode
http) and Caddy (reverse_proxy). Each proxy's config is the minimal one the README's "Proxies"
section shows (helpers/<proxy>.py); each test runs against the real proxy and the real daemon.

The group serves the test apps by mount: / the environ as JSON, /hello, /echo (the body back,
with its SHA-256), /big (bytes of a known length), /stream (a generator: no length) and /m (WSGI
mistakes: /m/raise-before is an exception before the head, a 500).

The client connects from 127.0.0.2, the proxies listen on 127.0.0.1: so REMOTE_ADDR tells the
client (127.0.0.2, what the uwsgi paths pass on) from the proxy (127.0.0.1 over TCP, "" over a
unix socket: what the HTTP paths give today, until wsgid reads X-Forwarded-For from trusted
proxies). What each HTTP proxy adds is asserted as the HTTP_X_FORWARDED_* / HTTP_FORWARDED it
leaves in the environ (PATHS below), and what it does with an X-Forwarded-For the client sent:
what wsgid's trusted-proxies will have to read.
"""
import hashlib
import re
import socket
from collections import namedtuple

import pytest
import requests
from requests.adapters import HTTPAdapter

from helpers import apache as apache_conf
from helpers import caddy as caddy_conf
from helpers import haproxy as haproxy_conf
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


# fixture, start: the proxy's fixture and what starts it; protocol: what it speaks to wsgid;
# remote_addr: the REMOTE_ADDR wsgid gives the app; forwarded: the forwarding headers the proxy
# adds, as the app sees them (None: absent); kept: whether the proxy keeps its connections to
# wsgid open between requests; spoofed: the HTTP_X_FORWARDED_FOR the app sees when the client
# itself sent "X-Forwarded-For: 198.51.100.7".
Path = namedtuple("Path", "id fixture start protocol remote_addr forwarded kept spoofed")
SPOOF = "198.51.100.7"
APPENDED = SPOOF + ", " + CLIENT

NONE = {"HTTP_X_FORWARDED_FOR": None, "HTTP_X_FORWARDED_PROTO": None,
        "HTTP_X_FORWARDED_HOST": None, "HTTP_X_FORWARDED_SERVER": None, "HTTP_FORWARDED": None}


def fwd(**kw):
    out = dict(NONE)
    out.update(("HTTP_" + k.upper(), v) for k, v in kw.items())
    return out


PATHS = [
    # uwsgi: the client's address goes in the vars (nginx: uwsgi_params' REMOTE_ADDR
    # $remote_addr; Apache: the connection's), and nothing else is added.
    Path("nginx-uwsgi_pass", "nginx", nginx_uwsgi, "uwsgi", CLIENT, NONE, False, SPOOF),
    Path("apache-mod_proxy_uwsgi", "apache", apache_uwsgi, "uwsgi", CLIENT, NONE, False, SPOOF),
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
]


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

    def get(self, target, **kw):
        return self.http.get(self.url + target, timeout=30, **kw)

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
    opts = apache_conf.SOCKET_OPTS if path.start is apache_uwsgi else {}
    metrics = ("127.0.0.1", free_port())
    d = wsgid("environ", threads=4, mounts=mounts, top={"metrics": "%s:%d" % metrics}, **opts)
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
    assert r.headers.get("Content-Length") == str(TEN_MIB), r.headers
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
def test_head(site):
    """HEAD gives the head of a GET and no body: a body would be read as the next response on the
    connection, whose GET follows."""
    with ClientConn(site.proxy.addr) as c:
        c.send(http_request("HEAD", "/hello", host=HOST) + http_request("GET", "/hello", host=HOST))
        r = c.response(head_only=True)
        assert r.status == 200, r
        assert r.header("Content-Type") == "text/plain", r
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
    keepalive; Apache: enablereuse; HAProxy: http-reuse; Caddy by default); nginx's and Apache's
    uwsgi modules open one per request."""
    for _ in range(3):
        assert site.get("/hello").content == HELLO
    site.http.close()
    if site.path.kept:
        assert wait_for(lambda: connections(site.d) >= 1, 5, what="a kept connection")
    else:
        wait_for(lambda: connections(site.d) == 0, 5, what="no connection left open")


@proxied
def test_chunked_upload_echoed(site):
    """A request body without a length (Transfer-Encoding: chunked from the client): nginx reads it
    whole and sends a length, HAProxy and Caddy stream it on chunked, mod_proxy_http passes it
    too; Apache's mod_proxy_uwsgi refuses it with 411 Length Required (it reads a body only with a
    length, which the uwsgi vars need as CONTENT_LENGTH)."""
    body = big_body(MiB + 12345)
    parts = (body[i:i + 65536] for i in range(0, len(body), 65536))
    r = site.http.post(site.url + "/echo", data=parts, timeout=60)
    if site.path.id == "apache-mod_proxy_uwsgi":
        assert r.status_code == 411
        return
    assert r.status_code == 200, r.text[:500]
    assert r.headers["X-Body-Length"] == str(len(body))
    assert r.content == body
