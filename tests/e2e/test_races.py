"""Races (issue #11, point 6): a client that half-closes after its request gets its whole answer
every time; a response sent from a list the app changes meanwhile is sent as it was returned."""
import socket
import time

import pytest

from helpers.clients import Conn, http_request, parse_response, uwsgi_request

ROUNDS = 50


def half_closed(addr, data):
    """Sends data, shuts the sending side down, and reads until the server closes."""
    with Conn(addr, timeout=10) as c:
        c.send(data)
        c.shut_wr()
        return c.read_until_close()


@pytest.mark.parametrize("t", ["0", "0.02"])
def test_half_closed_http_client_gets_the_answer(wsgid, t):
    """t=0: the FIN may come before or after the app answers; t=0.02: it comes while the app
    runs (before, the poll's EPOLLRDHUP dropped the response then)."""
    d = wsgid("slow", processes=1, threads=2)
    for i in range(ROUNDS):
        data = half_closed(d.tcp, http_request("GET", "/?t=" + t, {}))
        r, _ = parse_response(data, eof=True)
        assert r.status == 200 and r.body.startswith(b"slept"), (i, data[:300])


def test_half_closed_pipelined_requests_all_answered(wsgid):
    d = wsgid("slow", processes=1, threads=2)
    data = half_closed(d.tcp, http_request("GET", "/?t=0.02", {}) * 3)
    assert data.count(b"HTTP/1.1 200 OK") == 3, data


@pytest.mark.parametrize("t", ["0", "0.02"])
def test_half_closed_uwsgi_client_gets_the_answer(wsgid, t):
    d = wsgid("slow", processes=1, threads=2)
    for i in range(ROUNDS):
        data = half_closed(d.unix, uwsgi_request(path="/", query="t=" + t))
        r, _ = parse_response(data, eof=True)
        assert r.status == 200 and r.body.startswith(b"slept"), (i, data[:300])


def test_list_changed_while_sending(wsgid):
    """/big returns the app's module-level list of 16 x 1 MiB; a slow reader makes the Python
    thread wait for room (response-spill-limit 1M) with the GIL released; /clear then empties the
    list, which frees the bytes objects unless the server holds its own references."""
    d = wsgid("shared_list", processes=1, threads=2, response_buffer_size="256K",
              response_spill_limit="1M")
    slow = Conn(d.tcp, timeout=20, rcvbuf=65536)
    slow.send(http_request("GET", "/big", {"Connection": "close"}))
    time.sleep(0.5)  # the thread is now waiting for room
    c = Conn(d.tcp)
    c.send(http_request("GET", "/clear", {"Connection": "close"}))
    assert c.response().status == 200
    c.close()
    got = slow.read_until_close()
    r, _ = parse_response(got, eof=True)
    assert r.status == 200, got[:300]
    assert len(r.body) == 16 << 20, len(r.body)
    for i in range(16):
        part = r.body[i << 20:(i + 1) << 20]
        assert part == bytes([65 + i]) * (1 << 20), "MiB %d of the body is not what was returned" % i
    slow.close()
