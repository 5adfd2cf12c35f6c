"""Parking (handoff.h): a Python thread that sent a keep-alive response whole, with nothing
queued, keeps its connection and waits on it itself, instead of the loop. These tests take a
group of one process and one thread, so that the one thread is parked on one connection when a
request comes on another (a thread parks while parking paid lately: after a park that a request
for another connection ended, only a few requests on its own connection later), and check that
nothing waits for it:

  - a request on another connection is answered (the parked thread is woken, gives its
    connection back to the loop, and serves it); the parked connection goes on serving;
  - what the parked thread reads but cannot serve alone goes to the loop: a head in two pieces,
    two pipelined requests, a body;
  - keepalive-timeout closes a parked connection, and a graceful stop does not wait for one;
  - parking happens at all: the worker's last log line counts the parks (a build that never
    parks would pass the other tests)."""
import re
import time

from helpers.clients import Conn, http_request, request


def one_thread(wsgid, app="ops", **opts):
    return wsgid(app, processes=1, threads=1, **opts)


def settle(c):
    """Requests on c, until parking pays again if a request on another connection (the daemon's
    own start-up probe) ended a park."""
    time.sleep(0.3)
    for _ in range(40):
        get(c)


def get(c, path="/", headers=None):
    c.send(http_request("GET", path, headers))
    r = c.response()
    assert r.status == 200, r
    return r


def parks(d):
    d.stop()
    line = d.wait_log(r"stopped after \d+ requests answered \(\d+ of them on a connection its "
                      r"thread kept, ")
    return int(re.search(r"\((\d+) of them", line).group(1))


def test_parked_thread_serves_other_connections(wsgid):
    d = one_thread(wsgid)
    with Conn(d.tcp) as a:
        pid = get(a).body
        for i in range(10):
            settle(a)
            # a's thread is parked on it: b's request must wake it.
            with Conn(d.tcp, timeout=5) as b:
                assert get(b).body == pid
            assert get(a).body == pid, "the parked connection serves again (round %d)" % i
            # And a request from a fresh connection while a is idle but open.
            assert request(d.tcp, timeout=5).body == pid
    n = parks(d)
    assert n >= 100, "the thread parked %d times for 400 requests on a kept connection" % n


def test_parked_connection_split_head_pipelined_and_body(wsgid):
    d = one_thread(wsgid, "echo")
    with Conn(d.tcp) as a:
        settle(a)
        # A head in two pieces: the thread reads the first and leaves the rest to the loop.
        head = http_request("POST", "/", {"Content-Length": "5"}, b"hello")
        a.send(head[:10])
        time.sleep(0.2)
        a.send(head[10:])
        r = a.response()
        assert r.status == 200 and r.body == b"hello", r
        # Two requests in one write: both answered, in order.
        a.send(http_request("POST", "/", body=b"one") + http_request("POST", "/", body=b"two"))
        assert a.response().body == b"one"
        assert a.response().body == b"two"
        # A body that comes after its head.
        a.send(http_request("POST", "/", {"Content-Length": "6"}))
        time.sleep(0.2)
        a.send(b"body!!")
        assert a.response().body == b"body!!"
        # And a plain one again.
        get(a)
    assert parks(d) >= 2


def test_keepalive_timeout_closes_parked_connection(wsgid):
    d = one_thread(wsgid, keepalive_timeout=1)
    with Conn(d.tcp) as a:
        settle(a)
        t0 = time.monotonic()
        assert a.closed(timeout=5), "the parked connection was not closed by keepalive-timeout"
        took = time.monotonic() - t0
        assert 0.5 < took < 3, took
    assert request(d.tcp, timeout=5).status == 200
    assert parks(d) >= 1


def test_graceful_stop_with_parked_connections(wsgid):
    # As many threads as connections: each connection has a thread parked on it.
    d = wsgid("ops", processes=1, threads=3, graceful_timeout=30)
    conns = [Conn(d.tcp) for _ in range(3)]
    try:
        time.sleep(0.3)
        for c in conns:
            get(c)
        t0 = time.monotonic()
        d.stop()
        took = time.monotonic() - t0
        assert took < 10, "the stop waited %.1f s for idle kept connections" % took
        for c in conns:
            assert c.closed(timeout=5)
    finally:
        for c in conns:
            c.close()
    assert parks(d) >= 1
