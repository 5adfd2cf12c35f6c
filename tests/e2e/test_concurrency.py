"""Many requests at once: threads run in parallel, and answers never get mixed up."""
import hashlib
import os
import random
import threading
import time

import requests

from helpers.clients import Conn, http_request, request
from helpers.nginx import uwsgi_location


def _run_threads(n, target):
    errors = []

    def wrap(i):
        try:
            target(i)
        except Exception as e:  # collected and reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "client threads hung"
    assert not errors, errors[:5]


def test_threads_run_in_parallel(wsgid):
    d = wsgid("slow", threads=4)
    t0 = time.monotonic()
    _run_threads(4, lambda i: request(d.tcp, path="/?t=1", timeout=10))
    elapsed = time.monotonic() - t0
    assert elapsed < 1.9, "4 requests of 1 s on 4 threads took %.2fs" % elapsed


def test_more_requests_than_threads_queue_up(wsgid):
    d = wsgid("slow", threads=2)
    results = []
    _run_threads(6, lambda i: results.append(request(d.tcp, path="/?t=0.3", timeout=20).status))
    assert results == [200] * 6


def _echo_client(addr, seed, n):
    """n POSTs on one keep-alive connection, a new one after a "Connection: close" (which a
    worker says to move its next requests to a less busy sibling: daemon/worker/balance.h)."""
    rnd = random.Random(seed)
    c = Conn(addr, timeout=30)
    try:
        for j in range(n):
            body = rnd.randbytes(rnd.choice([0, 1, 100, 5000, 70000, 300000]))
            c.send(http_request("POST", "/c%d/%d" % (seed, j), body=body))
            r = c.response()
            assert r.status == 200
            assert r.body == body, "client %d request %d: body mixed up" % (seed, j)
            if r.header("Connection") == "close":
                assert c.closed(), "client %d request %d: Connection: close, still open" % (
                    seed, j)
                c.close()
                c = Conn(addr, timeout=30)
    finally:
        c.close()


def test_many_keepalive_clients_direct(wsgid):
    d = wsgid("echo", threads=4, processes=2)
    _run_threads(16, lambda i: _echo_client(d.tcp if i % 2 else d.unix, i, 15))


def test_many_clients_through_nginx(wsgid, nginx):
    d = wsgid("echo", threads=4)
    ng = nginx(uwsgi_location(d.unix))

    def client(i):
        rnd = random.Random(1000 + i)
        with requests.Session() as s:
            for j in range(10):
                body = os.urandom(rnd.choice([0, 10, 100000, 1000000]))
                r = s.post(ng.url + "/n%d/%d" % (i, j), data=body)
                assert r.status_code == 200
                assert hashlib.sha256(r.content).digest() == hashlib.sha256(body).digest()
    _run_threads(12, client)


def test_request_ids_are_unique(wsgid):
    d = wsgid("environ", threads=4, processes=2)
    import json
    ids = []
    _run_threads(8, lambda i: ids.extend(
        json.loads(request(d.tcp, path="/%d/%d" % (i, k)).body)["wsgid.request_id"]
        for k in range(5)))
    assert len(ids) == 40 and len(set(ids)) == 40, ids


def test_http10_generator_is_close_delimited(wsgid):
    d = wsgid("stream")
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/?n=4&pause=0", version="HTTP/1.0"))
        data = c.read_until_close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert b"chunked" not in head.lower()
    assert body == b"part 0\npart 1\npart 2\npart 3\n"


def test_many_small_keepalive_requests(wsgid):
    """Thousands of tiny requests on 16 keep-alive connections: none may get lost (a response
    that never comes shows as a timeout here)."""
    d = wsgid("echo", threads=4, processes=1)

    def client(i):
        with Conn(d.tcp, timeout=5) as c:
            for j in range(200):
                c.send(http_request("GET", "/k%d/%d" % (i, j)))
                r = c.response()
                assert r.status == 200 and r.body == b"", (i, j)
    _run_threads(16, client)


def test_many_small_uwsgi_requests(wsgid):
    """The same with one uwsgi request per connection, as nginx sends them."""
    from helpers.clients import uwsgi_call
    d = wsgid("echo", threads=4, processes=1)

    def client(i):
        for j in range(100):
            r = uwsgi_call(d.unix, timeout=5, path="/u%d/%d" % (i, j))
            assert r.status == 200, (i, j)
    _run_threads(16, client)
