"""Requests a client sends before the answer to the one before (HTTP pipelining, a FastCGI peer
that writes the next request's records with this one's): the next one is read already when the
thread finishes the answer, and it must not wait for the loop to learn that finish late.

A keep-alive answer that went out whole is lazy news (handoff.h): the loop learns it at its next
turn, which the client's next request usually brings, or at the lazy timer (1 ms, up to 8). A
pipelined request brings no turn: its bytes were read with the one before, and each of them
waited for the timer (about 1.1 ms a request measured, busy-poll off), or, on a kept FastCGI
connection, whose answers start no lazy timer, for the worker's 250 ms tick.

Without timing for HTTP: the worker's last line counts the answers whose end the lazy timer took
(590 of 600 before, 0 after). busy-poll is off there: a loop that polls takes lazy news at its
next look, before the timer. The FastCGI batch's floor before is 19 ticks (4.75 s), a wait no CPU
share shortens; it is asserted under a tenth of that."""
import json
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

from helpers import fcgi
from helpers.clients import Conn, http_request
from helpers.daemon import WSGICTL
from helpers.procs import wait_for
from test_fastcgi import params

HTTP_BATCH = 200       # in one write, read at once (the read buffer starts at 8 KiB); at most
                       # a tenth may end at the timer (0 after, 563-594 of 600 before)
BATCHES = 3
FCGI_BATCH = 20        # 19 ticks of 250 ms or more before; asserted under 475 ms
ROUNDS = 8             # 7 ticks before; asserted under 437 ms
WRITING_ROUNDS = 30    # connections whose next request comes as the answer before is written:
                       # 2-3 of 12 ended at the lazy timer before, 0 after
MiB = 1024 * 1024


def taken_at_the_lazy_timer(d):
    d.stop()
    line = d.wait_log(r"stopped after \d+ requests answered \(.*; \d+ answers' ends taken at the "
                      r"lazy timer\)")
    return int(re.search(r"; (\d+) answers' ends taken at the lazy timer", line).group(1))


@pytest.mark.parametrize("threads", [1, 4])
def test_pipelined_http_requests_do_not_wait_for_the_lazy_timer(wsgid, threads):
    d = wsgid("hello", processes=1, threads=threads, busy_poll="0")
    with Conn(d.tcp, timeout=30) as c:
        for _ in range(BATCHES):
            c.send(http_request("GET", "/") * HTTP_BATCH)
            for i in range(HTTP_BATCH):
                r = c.response()
                assert r.status == 200, (i, r)
    late = taken_at_the_lazy_timer(d)
    assert late < HTTP_BATCH // 10, \
        "%d of %d pipelined answers' ends were taken at the lazy timer (about 1 ms each)" % (
            late, BATCHES * HTTP_BATCH)


@pytest.mark.parametrize("threads", [1, 4])
def test_fastcgi_requests_sent_together_on_a_kept_connection_are_answered_at_once(
        wsgid, threads):
    d = wsgid("hello", processes=1, threads=threads)
    req = fcgi.request(params("/"), rid=1, keep=True)
    with Conn(d.unix, timeout=30) as c:
        t0 = time.monotonic()
        c.send(req * FCGI_BATCH)
        for i in range(FCGI_BATCH):
            recs = fcgi.read_records(c)
            assert fcgi.stdout_of(recs).startswith(b"Status: 200 OK"), (i, recs)
            assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE), (i, recs)
        took = time.monotonic() - t0
        assert took < (FCGI_BATCH - 1) * 0.25 / 10, \
            "%d FastCGI requests in one write took %.0f ms: each waited for the worker's tick" % (
                FCGI_BATCH, took * 1e3)
        assert not c.closed(timeout=0.1)


def served(d):
    """The worker's count of requests answered: the loop counts one when it learns its end."""
    r = subprocess.run([str(WSGICTL), "-s", str(d.tmp / "ctl.sock"), "status", "--json"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    (g,) = json.loads(r.stdout)["groups"]
    return g["requests"]


def test_the_end_of_an_answer_on_a_kept_fastcgi_connection_is_not_left_to_the_tick(wsgid, tmp):
    """Not pipelined: the loop learns an answer's end (the request counted, its access line, the
    thread's slot free) when it comes, not at the worker's next 250 ms tick. Each round waits
    until the worker counts its request before the next: before, each took the rest of a tick
    (a round starts just after the tick that counted the one before), 7 of 8 rounds 1.75 s at
    least; asserted under a quarter of that (a round costs a wsgictl status or two after)."""
    d = wsgid("hello", processes=1, threads=1, top={"control": str(tmp / "ctl.sock")})
    d.unix_paths.append(str(tmp / "ctl.sock"))
    with Conn(d.unix, timeout=30) as c:
        t0 = time.monotonic()
        for k in range(ROUNDS):
            c.send(fcgi.request(params("/"), rid=1, keep=True))
            assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.REQUEST_COMPLETE)
            wait_for(lambda: served(d) == k + 1, 10, interval=0, what="request %d counted" % k)
        took = time.monotonic() - t0
    assert took < (ROUNDS - 1) * 0.25 / 4, \
        "%d answers on a kept FastCGI connection were counted in %.0f ms: each at the tick" % (
            ROUNDS, took * 1e3)


def records_of(data):
    """[(type, content)] of the FastCGI records in data, whole ones."""
    out, i = [], 0
    while i + 8 <= len(data):
        _, rtype, _, clen, plen, _ = struct.unpack(">BBHHBB", data[i:i + 8])
        out.append((rtype, bytes(data[i + 8:i + 8 + clen])))
        i += 8 + clen + plen
    return out


def test_a_fastcgi_request_sent_while_the_answer_before_is_written_does_not_wait_for_the_timer(
        wsgid):
    """A FastCGI peer that sends its next request while the loop writes the answer before (a big
    one, read as it comes): the loop reads those records while the app runs (an ABORT_REQUEST
    would be among them), and the answer's end must wake it, as it does for a pipelined request
    (conn_poll_cb: wd_out_finished_or_wait). Read with the socket writable in the same poll event
    (READABLE and WRITABLE), they were taken without it, and the end was lazy news: the next
    request waited for the lazy timer (1-8 ms), as many times as it happened. The app ends the
    request 0.1 s after its last byte (its iterable's __del__ sleeps), so that the loop has sent
    the whole answer by then (the lazy case: an end that finds bytes pending wakes the loop
    anyway). The next request does not keep the connection: its own end is not lazy news, and
    the worker's count of lazy ends is this one's alone (busy-poll off, as above)."""
    d = wsgid("big", processes=1, threads=2, busy_poll="0")
    first = fcgi.request(params("/freed?size=%d&free=0.1" % (8 * MiB)), rid=1, keep=True)
    second = fcgi.request(params("/?size=10"), rid=1)
    for k in range(WRITING_ROUNDS):
        got, started = bytearray(), threading.Event()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(d.unix)

            def read():
                while True:
                    chunk = s.recv(256 * 1024)
                    if not chunk:
                        return
                    got.extend(chunk)
                    if len(got) >= MiB:
                        started.set()

            s.sendall(first)
            reader = threading.Thread(target=read)
            reader.start()
            assert started.wait(30), "round %d: no answer" % k
            s.sendall(second)
            reader.join(30)
            assert not reader.is_alive(), "round %d: the connection did not close" % k
        recs = records_of(got)
        ends = [i for i, (t, _) in enumerate(recs) if t == fcgi.END_REQUEST]
        assert len(ends) == 2, (k, len(got), [t for t, _ in recs][-5:])
        one = b"".join(c for t, c in recs[:ends[0]] if t == fcgi.STDOUT)
        two = b"".join(c for t, c in recs[ends[0]:] if t == fcgi.STDOUT)
        for what, out, size in (("first", one, 8 * MiB), ("second", two, 10)):
            assert out.startswith(b"Status: 200 OK"), (k, what, out[:200])
            assert len(out.partition(b"\r\n\r\n")[2]) == size, (k, what, len(out))
    late = taken_at_the_lazy_timer(d)
    assert late == 0, \
        "%d of %d FastCGI answers whose next request came as they were written ended at the " \
        "lazy timer" % (late, WRITING_ROUNDS)
