"""Hello world by every road, the environ, and HTTP/1.1 connection handling."""
import json
import time

import pytest
import requests

from helpers.clients import (HELLO, Conn, assert_hello, http_request, recv_all, request,
                             uwsgi_call, uwsgi_request)
from helpers.nginx import proxy_location, uwsgi_location


def test_hello_nginx_uwsgi_pass(wsgid, nginx):
    d = wsgid("hello")
    ng = nginx(uwsgi_location(d.unix))
    for _ in range(3):
        r = requests.get(ng.url + "/")
        assert r.status_code == 200
        assert r.content == HELLO
        assert r.headers["Content-Type"] == "text/plain"


def test_hello_nginx_proxy_pass(wsgid, nginx):
    d = wsgid("hello")
    ng = nginx(proxy_location(d.unix))
    with requests.Session() as s:
        for _ in range(3):
            r = s.get(ng.url + "/")
            assert r.status_code == 200
            assert r.content == HELLO


def test_hello_direct_http(wsgid):
    d = wsgid("hello")
    r = requests.get("http://%s:%d/" % d.tcp)
    assert r.status_code == 200
    assert r.content == HELLO
    assert r.headers["Content-Length"] == str(len(HELLO))
    # The same listener, the same group: plain HTTP over the unix socket too (protocol auto).
    assert_hello(d.unix)


def test_hello_direct_uwsgi(wsgid):
    d = wsgid("hello")
    r = uwsgi_call(d.unix)
    assert r.status == 200
    assert r.body == HELLO
    r = uwsgi_call(d.tcp)
    assert r.status == 200 and r.body == HELLO


def test_uwsgi_status_line_takes_the_proxys_http_version_only(wsgid):
    """Over uwsgi the status line says the SERVER_PROTOCOL the proxy sent when it is HTTP/1.0 or
    HTTP/1.1, else HTTP/1.1: a proxy's "HTTP/1.\\r" came out as the status line's first bytes."""
    d = wsgid("hello")
    for sent, version in [("HTTP/1.0", "HTTP/1.0"), ("HTTP/1.1", "HTTP/1.1"),
                          ("HTTP/1.\r", "HTTP/1.1"), ("HTTP/1.9", "HTTP/1.1"),
                          ("HTTP/2.0", "HTTP/1.1")]:
        with Conn(d.tcp) as c:
            c.send(uwsgi_request(SERVER_PROTOCOL=sent))
            data = c.read_until_close()
        assert data.startswith(version.encode() + b" 200 OK\r\n"), (sent, data[:40])


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_fixed_protocol(wsgid, protocol):
    d = wsgid("hello", protocol=protocol)
    if protocol == "http":
        assert_hello(d.tcp)
    else:
        r = uwsgi_call(d.tcp)
        assert r.status == 200 and r.body == HELLO


# --- environ ------------------------------------------------------------------------------------

def _environ_direct(d, **kw):
    r = request(d.tcp, "POST", "/a%20b/c?x=1&y=%20", {"X-Custom": "yes", "Content-Type":
                                                         "text/plain"}, b"body!", **kw)
    assert r.status == 200, r
    return json.loads(r.body)


def test_environ_direct(wsgid):
    d = wsgid("environ", threads=4)
    e = _environ_direct(d, host="127.0.0.1:%d" % d.tcp[1])
    assert e["REQUEST_METHOD"] == "POST"
    assert e["SCRIPT_NAME"] == ""
    assert e["PATH_INFO"] == "/a b/c"
    assert e["QUERY_STRING"] == "x=1&y=%20"
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert e["SERVER_NAME"]
    assert e["SERVER_PORT"] == str(d.tcp[1])
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    assert e["CONTENT_TYPE"] == "text/plain"
    assert e["CONTENT_LENGTH"] == "5"
    assert e["HTTP_X_CUSTOM"] == "yes"
    assert e["HTTP_HOST"] == "127.0.0.1:%d" % d.tcp[1]
    assert "HTTP_CONTENT_TYPE" not in e
    assert "HTTP_CONTENT_LENGTH" not in e
    assert e["_body"] == "body!"
    assert e["wsgi.version"] == [1, 0]
    assert e["wsgi.url_scheme"] == "http"
    assert e["wsgi.run_once"] is False
    assert e["wsgi.input_terminated"] is True
    assert e["_types"]["wsgi.multithread"] == "bool"
    assert e["_file_wrapper_callable"] is True
    assert {"read", "readline", "readlines", "__iter__"} <= set(e["wsgi.input"]["attrs"])
    assert {"write", "writelines", "flush"} <= set(e["wsgi.errors"]["attrs"])
    assert e["wsgid.process_group"] == "site"
    assert e["wsgid.request_id"]
    for k, v in e.items():
        if not k.startswith(("wsgi.", "wsgid.", "_")):
            assert isinstance(v, str), (k, v)


def test_environ_uwsgi_via_nginx(wsgid, nginx):
    d = wsgid("environ", threads=4)
    ng = nginx(uwsgi_location(d.unix))
    r = requests.post(ng.url + "/p%C3%A9/q?k=v", data=b"xyz",
                      headers={"X-Custom": "1", "Content-Type": "application/x-thing"})
    assert r.status_code == 200
    e = r.json()
    assert e["REQUEST_METHOD"] == "POST"
    assert e["PATH_INFO"] == "/p\u00c3\u00a9/q"     # PEP 3333: bytes decoded as latin-1
    assert e["QUERY_STRING"] == "k=v"
    assert e["CONTENT_TYPE"] == "application/x-thing"
    assert e["CONTENT_LENGTH"] == "3"
    assert e["HTTP_X_CUSTOM"] == "1"
    assert "HTTP_CONTENT_TYPE" not in e and "HTTP_CONTENT_LENGTH" not in e
    assert e["_body"] == "xyz"
    assert e["wsgid.process_group"] == "site"
    assert e["SERVER_PORT"] == str(ng.port)


@pytest.mark.parametrize("opts,multithread,multiprocess", [
    ({"threads": 1}, False, False),
    ({"threads": 4}, True, False),
    ({"threads": 4, "processes": 1}, True, True),
    ({"threads": 1, "processes": 2}, False, True),
])
def test_multithread_multiprocess(wsgid, opts, multithread, multiprocess):
    d = wsgid("environ", **opts)
    assert len(d.workers()) == opts.get("processes", 1)
    e = _environ_direct(d)
    assert e["wsgi.multithread"] is multithread
    assert e["wsgi.multiprocess"] is multiprocess


def test_wsgi_errors_goes_to_the_log(wsgid):
    d = wsgid("environ")
    d.expect_log("e2e-wsgi-errors-marker")
    r = request(d.tcp, path="/?errors")
    assert r.status == 200
    d.wait_log("e2e-wsgi-errors-marker")


def test_access_log(wsgid):
    d = wsgid("hello")
    request(d.tcp, path="/access-log-check?q=1", headers={"User-Agent": "e2e-agent"})
    line = d.wait_log(r'"GET /access-log-check\?q=1 HTTP/1.1" 200 ')
    assert "e2e-agent" in line


def test_wsgiref_validator(wsgid, nginx):
    d = wsgid("validated", threads=2)
    ng = nginx(uwsgi_location(d.unix))
    for r in (requests.get(ng.url + "/"), requests.post(ng.url + "/x", data=b"12345"),
              requests.get("http://%s:%d/v?q=1" % d.tcp),
              requests.post("http://%s:%d/v" % d.tcp, data=b"abc")):
        assert r.status_code == 200, r.text
        assert r.content.startswith(b"validated: got ")
    time.sleep(0.2)
    log = d.log()
    assert "Warning" not in log and "AssertionError" not in log, log


# --- HTTP/1.1 connection handling ----------------------------------------------------------------

def test_keep_alive(wsgid):
    d = wsgid("hello")
    with Conn(d.tcp) as c:
        for _ in range(5):
            c.send(http_request())
            r = c.response()
            assert r.status == 200 and r.body == HELLO
            assert (r.header("Connection") or "").lower() != "close"
    # HTTP/1.0 with keep-alive asked for.
    with Conn(d.tcp) as c:
        for _ in range(2):
            c.send(http_request(version="HTTP/1.0", headers={"Connection": "keep-alive"}))
            r = c.response()
            assert r.status == 200 and r.body == HELLO


def test_connection_close_and_http10(wsgid):
    d = wsgid("hello")
    with Conn(d.tcp) as c:
        c.send(http_request(headers={"Connection": "close"}))
        r = c.response()
        assert r.status == 200 and r.body == HELLO
        assert c.closed(5)
    with Conn(d.tcp) as c:
        c.send(http_request(version="HTTP/1.0"))
        r = c.response()
        assert r.status == 200 and r.body == HELLO
        assert c.closed(5)


def test_pipelining(wsgid):
    d = wsgid("echo")
    with Conn(d.tcp) as c:
        c.send(http_request("POST", "/1", body=b"first")
               + http_request("GET", "/2")
               + http_request("POST", "/3", body=b"third", headers={"Connection": "close"}))
        r1, r2, r3 = c.response(), c.response(), c.response()
        assert (r1.status, r1.body) == (200, b"first")
        assert (r2.status, r2.body) == (200, b"")
        assert (r3.status, r3.body) == (200, b"third")
        assert c.closed(5)


def test_head_has_no_body(wsgid):
    d = wsgid("hello")
    with Conn(d.tcp) as c:
        c.send(http_request("HEAD", "/") + http_request("GET", "/"))
        r = c.response(head_only=True)
        assert r.status == 200
        assert r.header("Content-Length") in (None, str(len(HELLO)))
        r2 = c.response()
        # Had the HEAD answer carried a body, it would be read here as the next status line.
        assert r2.status == 200 and r2.body == HELLO


def test_head_generator_has_no_body(wsgid):
    d = wsgid("stream")
    with Conn(d.tcp) as c:
        c.send(http_request("HEAD", "/?n=3&pause=0") + http_request("GET", "/?n=2&pause=0"))
        r = c.response(head_only=True)
        assert r.status == 200
        r2 = c.response()
        assert r2.status == 200 and r2.body == b"part 0\npart 1\n"


def test_expect_100_continue(wsgid):
    d = wsgid("echo")
    with Conn(d.tcp) as c:
        c.send(http_request("POST", "/", {"Expect": "100-continue", "Content-Length": "11"}))
        interim = c.read_until(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        c.send(b"hello there")
        r = c.response()
        assert r.status == 200 and r.body == b"hello there"


def test_404_and_query_from_example_app(wsgid):
    from helpers.config import REPO
    d = wsgid(str(REPO / "examples" / "hello" / "app.py"))
    assert request(d.tcp).body == b"Hello, world!\n"
    assert request(d.tcp, path="/nope").status == 404
    assert request(d.tcp, "POST", "/echo", body=b"abc").body == b"abc"


def test_body_temp_files_reused_never_show_old_bytes(wsgid):
    """Bodies over body-buffer-size go to a temp file, which the worker keeps for the next body:
    a shorter body after a longer one must read as itself (no old bytes past its end), through
    every way of reading wsgi.input, and the spare files go once unused (the fd check)."""
    d = wsgid("echo", processes=1, threads=2, **{"body-buffer-size": "16K"})
    sizes = [3 << 20, 300000, 20000, 2 << 20, 70000, 17000, 1 << 20, 5]
    for i, n in enumerate(sizes * 2):
        body = bytes([65 + i % 26]) * (n - 1) + b"$"
        how = ("", "lines", "iter", "small")[i % 4]
        r = requests.post("http://%s:%d/echo?%s" % (d.tcp + (how,)), data=body, timeout=30)
        assert r.status_code == 200, (n, how)
        assert int(r.headers["X-Body-Length"]) == n, (n, how)
        assert r.content == body, (n, how)
    # Spare files are closed half a second or so after their last use: the teardown's fd check
    # (which waits up to 2 s) would see any that stayed.


def test_extension_method_and_later_minor_version_reach_the_app(wsgid):
    """RFC 9110 9.1 and 2.5: QUERY (a method llhttp does not know) with a body and HTTP/1.2 get
    to the app as sent; the answer is HTTP/1.1 and the connection stays open."""
    d = wsgid("environ")
    with Conn(d.tcp) as c:
        c.send(http_request("QUERY", "/q?x=1", {"Content-Type": "text/plain"}, b"select",
                            version="HTTP/1.2"))
        r = c.response()
        assert r.status == 200, r
        assert r.version == "HTTP/1.1", r
        e = json.loads(r.body)
        assert e["REQUEST_METHOD"] == "QUERY"
        assert e["SERVER_PROTOCOL"] == "HTTP/1.2"
        assert e["PATH_INFO"] == "/q" and e["QUERY_STRING"] == "x=1"
        assert e["_body"] == "select"
        c.send(http_request("GET", "/"))
        assert c.response().status == 200


def test_ipv4_and_ipv6_wildcards_on_one_port(wsgid, tmp):
    """A group's IPv6 sockets are IPv6-only, so "[::]:P" with "0.0.0.0:P" is how a group listens
    on both families: the pair was refused as "listed twice", while "[::]:P" alone answered on
    IPv6 only. The metrics listener, one address, stays dual-stack on [::]."""
    import socket
    from helpers.config import app, make_config
    from helpers.procs import free_port

    try:
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s6.bind(("::1", 0))
        s6.close()
    except OSError as e:
        pytest.skip("no IPv6 on the loopback (%s)" % e)
    port, mport = free_port(), free_port()
    d = wsgid(config=make_config(tmp, {"site": {"app": app("hello"), "threads": 2,
                                                "listen": ["0.0.0.0:%d" % port,
                                                           "[::]:%d" % port]}},
                                 metrics="[::]:%d" % mport))
    assert_hello(("127.0.0.1", port))
    for p, path in ((port, "/"), (mport, "/livez")):
        c = socket.create_connection(("::1", p), timeout=10)
        c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        got = recv_all(c)
        c.close()
        assert got.startswith(b"HTTP/1.1 200"), (p, got[:200])
    c = socket.create_connection(("127.0.0.1", mport), timeout=10)  # dual-stack
    c.close()
