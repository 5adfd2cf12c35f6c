"""trusted-proxies (issue #14, part 3): from a trusted peer, X-Forwarded-For / -Proto / -Host and
RFC 7239 Forwarded give REMOTE_ADDR, wsgi.url_scheme and the host (environ and access log); from
any other peer they are ignored, or stripped with strip-forwarded-headers."""
import json
import subprocess
import time

import requests

from helpers.clients import Conn, request
from helpers.config import app
from helpers.daemon import WSGID_BIN
from helpers.nginx import proxy_location
from helpers.procs import wait_for


def env_of(r):
    assert r.status == 200, r
    return json.loads(r.body)


def test_behind_nginx_proxy_pass(wsgid, nginx):
    """nginx on the unix socket (trusted: unix) passes the client, the scheme and the host; a
    client's own X-Forwarded-For is not believed past nginx's entry."""
    d = wsgid("environ", trusted_proxies=["unix"])
    ng = nginx(proxy_location(d.unix, """
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host shop.example;"""))
    r = requests.get(ng.url + "/x?y=1", headers={"X-Forwarded-For": "6.6.6.6"})
    e = r.json()
    assert e["REMOTE_ADDR"] == "127.0.0.1", "the address nginx saw, not the client's claim"
    assert "REMOTE_PORT" not in e
    assert e["wsgi.url_scheme"] == "https" and e["HTTPS"] == "on"
    assert e["HTTP_HOST"] == "shop.example" and e["SERVER_NAME"] == "shop.example"
    assert e["SERVER_PORT"] == "443"
    assert e["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 127.0.0.1"
    # The access log names the client too.
    line = d.wait_log(r'"GET /x\?y=1 HTTP/1.1"')
    assert line.startswith("127.0.0.1 - - ["), line


def test_trusted_tcp_peer_forwarded_and_xff(wsgid):
    d = wsgid("environ", trusted_proxies=["127.0.0.0/8", "::1"])
    # X-Forwarded-* is the family believed by default: a Forwarded header (which proxies pass on
    # from clients) is not.
    e = env_of(request(d.tcp, path="/", host="shop.example",
                       headers={"Forwarded": "for=192.0.2.99", "X-Forwarded-Proto": "https"}))
    assert e["REMOTE_ADDR"] == "127.0.0.1" and e["wsgi.url_scheme"] == "https"
    assert e["SERVER_PORT"] == "443", "https and a Host without a port"
    d2 = wsgid("environ", group="rfc", trusted_proxies=["127.0.0.0/8"],
               forwarded_headers="forwarded")
    e = env_of(request(d2.tcp, path="/", headers={
        "Forwarded": 'for=192.0.2.60;proto=https;host="shop.example:8443", for=127.0.0.1',
        "X-Forwarded-For": "6.6.6.6"}))
    assert e["REMOTE_ADDR"] == "192.0.2.60"
    assert e["wsgi.url_scheme"] == "https"
    assert e["HTTP_HOST"] == "shop.example:8443" and e["SERVER_PORT"] == "8443"
    e = env_of(request(d.tcp, path="/", headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.5",
                                                 "X-Forwarded-Proto": "http"}))
    assert e["REMOTE_ADDR"] == "203.0.113.7" and e["wsgi.url_scheme"] == "http"
    # Garbage in the chain: nothing is believed, the peer's address stays.
    e = env_of(request(d.tcp, path="/", headers={"X-Forwarded-For": "evil, 127.0.0.5"}))
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    d.wait_log(r"^203\.0\.113\.7 - - \[")


def test_untrusted_peer_ignored_or_stripped(wsgid):
    d = wsgid("environ", trusted_proxies=["10.0.0.0/8"])
    e = env_of(request(d.tcp, path="/", headers={"X-Forwarded-For": "6.6.6.6",
                                                 "X-Forwarded-Proto": "https",
                                                 "Forwarded": "for=6.6.6.6"}))
    assert e["REMOTE_ADDR"] == "127.0.0.1" and e["wsgi.url_scheme"] == "http"
    assert e["HTTP_X_FORWARDED_FOR"] == "6.6.6.6" and e["HTTP_FORWARDED"] == "for=6.6.6.6"
    d2 = wsgid("environ", group="site2", trusted_proxies=["10.0.0.0/8"],
               strip_forwarded_headers=True)
    e = env_of(request(d2.tcp, path="/", headers={"X-Forwarded-For": "6.6.6.6",
                                                  "X-Forwarded-Host": "evil.example",
                                                  "Forwarded": "for=6.6.6.6", "X-Other": "1"}))
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    assert not [k for k in e if "FORWARDED" in k], sorted(e)
    assert e["HTTP_X_OTHER"] == "1"


def test_trusted_proxies_config_errors(tmp):
    bad = tmp / "bad.yaml"
    bad.write_text("groups:\n  a:\n    app: %s\n    listen: 127.0.0.1:9\n"
                   "    trusted-proxies: [unix, 10.0.0.0/33]\n" % app("hello"))
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert ("bad.yaml:5:29: groups.a.trusted-proxies: '10.0.0.0/33' is not an address range"
            in r.stderr), r.stderr


def proxy_v2(src, dst, sport, dport):
    """A PROXY protocol v2 header for TCP over IPv4."""
    import ipaddress
    import struct
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
             + struct.pack(">HH", sport, dport))
    return sig + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs)) + addrs


def test_proxy_protocol(wsgid):
    """proxy-protocol: every connection starts with a PROXY header, believed from trusted peers
    only; its source is the client of every request on the connection (keep-alive too)."""
    from helpers.clients import Conn, http_request, uwsgi_request
    d = wsgid("environ", trusted_proxies=["127.0.0.1"], proxy_protocol=True)
    with Conn(d.tcp) as c:
        c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n" + http_request("GET", "/a"))
        e = json.loads(c.response().body)
        assert e["REMOTE_ADDR"] == "192.0.2.7" and e["REMOTE_PORT"] == "5555"
        c.send(http_request("GET", "/b"))
        e = json.loads(c.response().body)
        assert e["REMOTE_ADDR"] == "192.0.2.7", "the same client for the connection's life"
    with Conn(d.tcp) as c:
        c.send(proxy_v2("198.51.100.9", "127.0.0.1", 40000, 80) + http_request("GET", "/c"))
        e = json.loads(c.response().body)
        assert e["REMOTE_ADDR"] == "198.51.100.9" and e["REMOTE_PORT"] == "40000"
    # The header may come in pieces, and a uwsgi request may follow it.
    with Conn(d.tcp) as c:
        c.send(b"PROXY TCP4 192.0.2.8 ")
        time.sleep(0.05)
        c.send(b"127.0.0.1 1 2\r\n" + uwsgi_request("GET", "/u"))
        body = c.read_until_close()
        assert body.startswith(b"HTTP/1.1 200"), body[:200]  # (uwsgi states its own REMOTE_ADDR)
    # No header, or a malformed one: the connection is closed, nothing served.
    d.expect_log(r"malformed PROXY header")
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/nope"))
        assert c.closed()
    with Conn(d.tcp) as c:
        c.send(b"PROXY TCP4 999.0.2.8 127.0.0.1 1 2\r\n" + http_request("GET", "/nope"))
        assert c.closed()
    assert "/nope" not in d.log()


def test_proxy_protocol_on_a_unix_listener_gives_the_clients_port(wsgid):
    """A PROXY header that names a TCP client on a unix listener (HAProxy or nginx's stream
    module in front, over a unix socket): REMOTE_PORT is the client's, as on a TCP listener. It
    was left out, as for a unix peer, which has none (helper-108)."""
    from helpers.clients import Conn, http_request
    d = wsgid("environ", trusted_proxies=["unix"], proxy_protocol=True)
    with Conn(d.unix) as c:
        c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n" + http_request("GET", "/a"))
        e = json.loads(c.response().body)
        assert e["REMOTE_ADDR"] == "192.0.2.7" and e.get("REMOTE_PORT") == "5555", e
    with Conn(d.unix) as c:
        c.send(proxy_v2("198.51.100.9", "127.0.0.1", 40000, 80) + http_request("GET", "/b"))
        e = json.loads(c.response().body)
        assert e["REMOTE_ADDR"] == "198.51.100.9" and e.get("REMOTE_PORT") == "40000", e


def test_proxy_protocol_v2_at_its_longest(wsgid):
    """A v2 header may be 16 + 65,535 bytes (TLVs: here one NOOP filling it): served, however
    small header-buffer-size is; the limit on what is read before the protocol is known was
    header-buffer-size + 4 (65,540 by default), and a longer valid header got a 431."""
    import struct
    from helpers.clients import Conn, http_request
    d = wsgid("environ", trusted_proxies=["127.0.0.1"], proxy_protocol=True,
              header_buffer_size="8K")
    head = proxy_v2("198.51.100.9", "127.0.0.1", 40000, 80)
    noop = 65535 - (len(head) - 16) - 3
    head = head[:14] + struct.pack(">H", 65535) + head[16:] + bytes([0x04]) + \
        struct.pack(">H", noop) + b"\0" * noop
    assert len(head) == 16 + 65535
    with Conn(d.tcp) as c:
        c.send(head + http_request("GET", "/long"))
        r = c.response()
        assert r.status == 200, r
        e = json.loads(r.body)
        assert e["REMOTE_ADDR"] == "198.51.100.9" and e["REMOTE_PORT"] == "40000"
    # The room the header had is not the request head's: 10 KiB of head sent with it, in one
    # go, is over header-buffer-size (8K) all the same.
    d.expect_log(r"request head larger than header-buffer-size \(8192\): 431")
    with Conn(d.tcp) as c:
        c.send(head + http_request("GET", "/big", {"X-Pad": "x" * 10240}))
        assert c.response().status == 431


def test_proxy_protocol_from_untrusted_peer(wsgid):
    from helpers.clients import Conn, http_request
    d = wsgid("environ", trusted_proxies=["10.0.0.0/8"], proxy_protocol=True)
    d.expect_log(r"peer 127\.0\.0\.1 is not in trusted-proxies")
    with Conn(d.tcp) as c:
        c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n" + http_request("GET", "/x"))
        assert c.closed()
    d.wait_log(r"peer 127\.0\.0\.1 is not in trusted-proxies: its connection \(which must start "
               r"with a PROXY header\) is closed")


def test_proxy_protocol_needs_trusted_proxies(tmp):
    bad = tmp / "bad.yaml"
    bad.write_text("groups:\n  a:\n    app: %s\n    listen: 127.0.0.1:9\n"
                   "    proxy-protocol: true\n" % app("hello"))
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert "groups.a.proxy-protocol: a PROXY header is believed only from trusted peers" in \
        r.stderr, r.stderr


def vars_env(addr, proto, v):
    """The environ of one request whose variables are v, sent over uwsgi or FastCGI."""
    from helpers import fcgi
    from helpers.clients import Conn, parse_response, uwsgi_packet
    with Conn(addr) as c:
        if proto == "uwsgi":
            c.send(uwsgi_packet(v))
            r, _ = parse_response(c.read_until_close(), eof=True)
            return env_of(r)
        c.send(fcgi.request(v))
        out = fcgi.stdout_of(fcgi.read_records(c))
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 200") or b"Status:" not in head, head
    return json.loads(body)


FORGED = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/v", "PATH_INFO": "/v", "QUERY_STRING": "",
          "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.1.2.3", "REMOTE_PORT": "9",
          "HTTPS": "on", "REQUEST_SCHEME": "https", "UWSGI_SCHEME": "https",
          "HTTP_HOST": "bank.example", "SERVER_NAME": "bank.example", "SERVER_PORT": "443",
          "HTTP_X_FORWARDED_FOR": "6.6.6.6", "HTTP_X_FORWARDED_PROTO": "https",
          "HTTP_FORWARDED": "for=6.6.6.6", "HTTP_X_OTHER": "1", "REMOTE_USER": "admin",
          "AUTH_TYPE": "Basic", "REMOTE_HOST": "admin.example",
          "wsgi.url_scheme": "https", "wsgi.version": "9", "wsgi.file_wrapper": "notcallable",
          "wsgid.process_group": "admin"}


def test_uwsgi_and_fastcgi_from_an_untrusted_peer_name_nobody(wsgid):
    """uwsgi and FastCGI carry the client in their variables. With trusted-proxies set, a peer
    outside it (here a client of the protocol: auto listener) gets its own REMOTE_ADDR and
    REMOTE_PORT, http, and under strip-forwarded-headers no forwarding headers: it named itself
    10.1.2.3 over https past both (helper-71), and REMOTE_USER=admin (helper-79). A trusted peer's variables are taken as they are,
    and so are any peer's while the group lists no trusted-proxies (nginx's uwsgi_pass from
    another host). No peer sets the server's own wsgi.* and wsgid.* keys (PEP 3333)."""
    d = wsgid("environ", trusted_proxies=["10.0.0.0/8"], strip_forwarded_headers=True)
    d2 = wsgid("environ", group="open")
    d3 = wsgid("environ", group="trusting", trusted_proxies=["127.0.0.1"])
    for proto in ("uwsgi", "fastcgi"):
        e = vars_env(d.tcp, proto, FORGED)
        assert e["REMOTE_ADDR"] == "127.0.0.1" and e["REMOTE_PORT"] != "9", (proto, e)
        assert e["wsgi.url_scheme"] == "http", (proto, e)
        assert not {"HTTPS", "REQUEST_SCHEME", "UWSGI_SCHEME", "REMOTE_USER", "AUTH_TYPE",
                    "REMOTE_HOST"} & set(e), (proto, e)
        assert not [k for k in e if "FORWARDED" in k], (proto, e)
        assert e["HTTP_X_OTHER"] == "1" and e["HTTP_HOST"] == "bank.example", (proto, e)
        for x in (d, d2, d3):
            e = vars_env(x.tcp, proto, FORGED)
            assert e["wsgi.version"] == [1, 0] and e["_file_wrapper_callable"], (proto, e)
            assert e["wsgid.process_group"] == x.group, (proto, e)
            if x is not d:
                assert e["REMOTE_ADDR"] == "10.1.2.3" and e["REMOTE_PORT"] == "9", (proto, e)
                assert e["wsgi.url_scheme"] == "https" and e["HTTPS"] == "on", (proto, e)
                assert e["HTTP_X_FORWARDED_FOR"] == "6.6.6.6", (proto, e)
                assert e["REMOTE_USER"] == "admin", (proto, e)
    # the access log names the peer, not its claim (its lines come through the master)
    wait_for(lambda: len([ln for ln in d.log().splitlines() if '"GET /v HTTP/1.1"' in ln]) >= 4,
             timeout=3, what="4 access lines")
    lines = [ln for ln in d.log().splitlines() if '"GET /v HTTP/1.1"' in ln]
    assert len(lines) == 4 and all(ln.startswith("127.0.0.1 - - [") for ln in lines), lines


def test_a_proxy_header_naming_nobody_is_not_the_proxys_trust(wsgid):
    """A PROXY header of LOCAL (HAProxy sends one for a client of its unix socket, and adds no
    X-Forwarded-For for it), UNKNOWN or UNSPEC names no client: the peer stays the proxy, but the
    client's X-Forwarded-* are not believed as the proxy's (they were: helper-71). An AF_UNIX
    source is believed as a unix peer is: only with "unix" in trusted-proxies."""
    import struct
    from helpers.clients import Conn, http_request
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    unix_src = (b"/run/haproxy/client.sock".ljust(108, b"\0") + b"/run/x.sock".ljust(108, b"\0"))
    heads = {"v2 LOCAL": sig + bytes([0x20, 0x00]) + struct.pack(">H", 0),
             "v1 UNKNOWN": b"PROXY UNKNOWN\r\n",
             "v2 UNSPEC": sig + bytes([0x21, 0x00]) + struct.pack(">H", 0),
             "v2 AF_UNIX": sig + bytes([0x21, 0x31]) + struct.pack(">H", 216) + unix_src}
    forged = {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https"}
    d = wsgid("environ", trusted_proxies=["127.0.0.1"], proxy_protocol=True)
    du = wsgid("environ", group="withunix", trusted_proxies=["127.0.0.1", "unix"],
               proxy_protocol=True)
    for name, head in heads.items():
        with Conn(d.tcp) as c:
            c.send(head + http_request("GET", "/p", forged))
            e = env_of(c.response())
        assert e["wsgi.url_scheme"] == "http", (name, e)
        assert e["REMOTE_ADDR"] == ("" if name == "v2 AF_UNIX" else "127.0.0.1"), (name, e)
    with Conn(du.tcp) as c:
        c.send(heads["v2 AF_UNIX"] + http_request("GET", "/p", forged))
        e = env_of(c.response())
    assert e["REMOTE_ADDR"] == "10.9.9.9" and e["wsgi.url_scheme"] == "https", e


def test_server_name_and_port_are_never_empty_or_wrong(wsgid):
    """PEP 3333: SERVER_NAME is never empty. An empty Host (a target without an authority) gives
    the listener's; a Host or absolute-form target with a port and no name, or a port past
    65535, is 400 (RFC 9110 4.2.1), and such an X-Forwarded-Host is not believed. "name:" has
    the scheme's port: 443 under https, where it said 80 (helper-71)."""
    from helpers.clients import Conn
    d = wsgid("environ", trusted_proxies=["127.0.0.1"])

    def raw_env(head):
        with Conn(d.tcp) as c:
            c.send(head)
            return c.response()

    e = env_of(raw_env(b"GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n"))
    assert e["SERVER_NAME"] == "127.0.0.1" and e["SERVER_PORT"] == str(d.tcp[1]), e
    assert e["HTTP_HOST"] == "", e
    d.expect_log(r"400")
    for head in (b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", b"GET http://:80/ HTTP/1.1\r\nHost: h\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: h:65536\r\n\r\n"):
        assert raw_env(head).status == 400, head
    e = env_of(request(d.tcp, path="/", host="shop.example",
                       headers={"X-Forwarded-Host": ":443", "X-Forwarded-Proto": "https"}))
    assert e["SERVER_NAME"] == "shop.example" and e["SERVER_PORT"] == "443", e
    for host in ("shop.example:", "[::1]:"):
        e = env_of(request(d.tcp, path="/", headers={"X-Forwarded-Host": host,
                                                     "X-Forwarded-Proto": "https"}))
        assert e["SERVER_PORT"] == "443" and e["SERVER_NAME"] == host[:-1], (host, e)


# --- what a client writes before a trusted proxy's part decides nothing ---------------------------

CLIENT = "127.0.0.2"    # the client connects from here; the proxies listen on 127.0.0.1
HOST = "www.example.test"


def from_client(addr, headers):
    """One request from CLIENT to the proxy at addr, with Host: HOST and headers (a list of
    (name, value): a name may come twice); the environ."""
    head = "GET /x HTTP/1.1\r\nHost: %s\r\n" % HOST
    head += "".join("%s: %s\r\n" % h for h in headers) + "Connection: close\r\n\r\n"
    with Conn(addr, source=CLIENT) as c:
        c.send(head.encode("latin-1"))
        return env_of(c.response())


def said_otherwise(e, sent, scheme):
    """What of the environ e is not what the proxy said (the client, the scheme, the host)."""
    got = (e["REMOTE_ADDR"], e["wsgi.url_scheme"], e["HTTP_HOST"], e["SERVER_NAME"])
    return [] if got == (CLIENT, scheme, HOST, HOST) else [(sent[:40], got)]


# What clients wrote in front of the proxy's part that wsgid could not parse whole, and so did
# not believe the proxy either (REMOTE_ADDR was the proxy's, its proto= and host= lost): a chain
# longer than the 4096 bytes the lines were joined into, a quoted-pair (RFC 7230 allows one in
# any quoted-string), more than 64 elements, a quote left open.
CLIENT_XFF = ["198.51.100.7", "1" * 4100, "198.51.100.7, " * 300 + "198.51.100.7"]
CLIENT_FORWARDED = ["for=198.51.100.7;proto=http;host=evil.example", 'for="\\1.1.1.1"',
                    "," * 64, "for=198.51.100.7, " * 100 + "for=198.51.100.7",
                    'for="198.51.100.7;proto=http', 'for="\\"']


BACKEND = """backend wsgid
    mode http
    timeout connect 5s
    timeout server 90s
    server site %s:%d
"""


def test_haproxy_lines_after_a_clients(wsgid, haproxy):
    """HAProxy adds lines of its own after a client's (option forwardfor; add-header for
    X-Forwarded-Proto and -Host, and for Forwarded as RFC 7239 has a proxy append): the app gets
    the client HAProxy saw (127.0.0.2), and the scheme and host HAProxy said, whatever the
    client's lines before are. HAProxy here gives wsgid a Host of its own, as when it passes on
    the public name in X-Forwarded-Host or host=. (for= comes last in its element: the client's
    Host, unquoted in it, cannot add a for= after it, and one before it makes the element
    malformed.)"""
    d = wsgid("environ", trusted_proxies=["127.0.0.1"])
    hp = haproxy("""frontend www
    bind 127.0.0.1:{port}
    mode http
    timeout client 30s
    option forwardfor
    http-request add-header X-Forwarded-Proto https
    http-request add-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header Host wsgid.internal
    http-request del-header Forwarded
    default_backend wsgid

""" + BACKEND % d.tcp)
    wrong = []
    for xff in CLIENT_XFF:
        e = from_client(hp.addr, [("X-Forwarded-For", xff), ("X-Forwarded-Proto", "http"),
                                  ("X-Forwarded-Host", "evil.example")])
        wrong += said_otherwise(e, xff, "https")
    d2 = wsgid("environ", group="rfc", trusted_proxies=["127.0.0.1"],
               forwarded_headers="forwarded")
    hp2 = haproxy("""frontend www
    bind 127.0.0.1:{port}
    mode http
    timeout client 30s
    http-request add-header Forwarded host=%[req.hdr(host)];proto=https;for=%[src]
    http-request set-header Host wsgid.internal
    default_backend wsgid

""" + BACKEND % d2.tcp)
    for fwd in CLIENT_FORWARDED:
        e = from_client(hp2.addr, [("Forwarded", fwd)])
        assert e["HTTP_FORWARDED"].endswith("host=%s;proto=https;for=%s" % (HOST, CLIENT)), e
        wrong += said_otherwise(e, fwd, "https")
    assert not wrong, "\n".join(map(repr, wrong))


# nginx's RFC 7239 recipe ("Using the Forwarded header", nginx.com): a client's Forwarded that is
# valid RFC 7239 is kept and nginx's element appended to it, on the same line; anything else is
# replaced.
NGINX_FORWARDED_MAP = r"""map $remote_addr $proxy_forwarded_elem {
        ~^[0-9.]+$        "for=$remote_addr";
        ~^[0-9A-Fa-f:.]+$ "for=\"[$remote_addr]\"";
        default           "for=unknown";
    }
    map $http_forwarded $proxy_add_forwarded {
        "~^(,[ \\t]*)*([!#$%&'*+.^_`|~0-9A-Za-z-]+=([!#$%&'*+.^_`|~0-9A-Za-z-]+|\"([\\t \\x21\\x23-\\x5B\\x5D-\\x7E\\x80-\\xFF]|\\\\[\\t \\x21-\\x7E\\x80-\\xFF])*\"))?(;([!#$%&'*+.^_`|~0-9A-Za-z-]+=([!#$%&'*+.^_`|~0-9A-Za-z-]+|\"([\\t \\x21\\x23-\\x5B\\x5D-\\x7E\\x80-\\xFF]|\\\\[\\t \\x21-\\x7E\\x80-\\xFF])*\"))?)*([ \\t]*,([ \\t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+=([!#$%&'*+.^_`|~0-9A-Za-z-]+|\"([\\t \\x21\\x23-\\x5B\\x5D-\\x7E\\x80-\\xFF]|\\\\[\\t \\x21-\\x7E\\x80-\\xFF])*\"))?(;([!#$%&'*+.^_`|~0-9A-Za-z-]+=([!#$%&'*+.^_`|~0-9A-Za-z-]+|\"([\\t \\x21\\x23-\\x5B\\x5D-\\x7E\\x80-\\xFF]|\\\\[\\t \\x21-\\x7E\\x80-\\xFF])*\"))?)*)?)*$" "$http_forwarded, $proxy_forwarded_elem";
        default "$proxy_forwarded_elem";
    }"""


def test_nginx_forwarded_recipe_appends_to_a_clients(wsgid, nginx):
    """nginx with its RFC 7239 recipe (on the unix socket, trusted: unix), proto= in its
    element: a client's valid Forwarded before it on the same line, with quoted-pairs or 64 empty
    elements or a hundred of its own, does not make wsgid drop nginx's element: REMOTE_ADDR is
    the client nginx saw, and the scheme nginx's. (No host=$host: unquoted after for=, a client's
    Host "a,for=1.1.1.1" would be an element of its own, the right-most.)"""
    d = wsgid("environ", group="rfc", trusted_proxies=["unix"], forwarded_headers="forwarded")
    ng = nginx("""location / {
            proxy_pass http://unix:%s:;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header Forwarded "$proxy_add_forwarded;proto=https";
        }""" % d.unix, http_extra=NGINX_FORWARDED_MAP)
    kept, wrong = 0, []
    for fwd in CLIENT_FORWARDED + ['for="\\1.1.1.1";proto=http;host="evil\\.example"']:
        e = from_client(ng.addr, [("Forwarded", fwd)])
        kept += e["HTTP_FORWARDED"].startswith(fwd + ", for=")
        assert e["HTTP_FORWARDED"].endswith("for=%s;proto=https" % CLIENT), e
        wrong += said_otherwise(e, fwd, "https")
    assert kept == 5, "nginx kept the valid ones and appended to them"
    assert not wrong, "\n".join(map(repr, wrong))
