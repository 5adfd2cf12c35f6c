"""What bad input gets (design §8): a status and a log line, never a crash or a hang; the daemon
answers a hello afterwards. And each WSGI mistake an app can make: 500 and an error-log line that
names the request id."""
import os
import socket
import struct
import time

import pytest

from helpers.clients import (HELLO, Conn, assert_hello, http_request, parse_response, raw,
                             uwsgi_packet, uwsgi_request)
from helpers.procs import wait_for


def _alive(addr):
    """The daemon still answers (the echo app: an empty GET gives an empty 200)."""
    with Conn(addr) as c:
        c.send(http_request("GET", "/", {"Connection": "close"}))
        r = c.response()
    assert r.status == 200 and r.header("X-Body-Length") == "0", r


def _status(data):
    assert data.startswith(b"HTTP/1."), data[:200]
    return int(data.split(b" ", 2)[1])


@pytest.fixture
def site(wsgid):
    # Bad input is logged at the info level: an error line fails the test.
    return wsgid("echo", header_buffer_size="4K", limit_request_body="1K")


def test_garbage_request_line(site):
    # protocol auto: an upper-case first byte means HTTP.
    data = raw(site.tcp, b"GARBAGE IN, GARBAGE OUT\r\n\r\n")
    assert _status(data) == 400
    _alive(site.tcp)


def test_an_empty_line_before_the_first_request_is_skipped(site):
    # RFC 9112 2.2: a server SHOULD ignore an empty line before the request line. On an auto
    # listener the CR took the connection for uwsgi, closed it unanswered, and logged "modifier1
    # 0 refused" (the modifier1 was never read; helper-59).
    for lead in (b"\r\n", b"\n", b"\r\n\r\n"):
        data = raw(site.tcp, lead + http_request("GET", "/", {"Connection": "close"}))
        assert _status(data) == 200, (lead, data[:200])
    assert "modifier1 0" not in site.log()


def test_a_bare_lf_does_not_end_a_chunked_body(site):
    # The trailer section ends with CR LF (RFC 9112 7.1); llhttp ended it at a bare LF, and the
    # bytes after it were served as a second request (helper-59): a proxy in front that forwards
    # the body as it is reads them as the body's.
    for end in (b"0\r\n\n", b"0\r\nX: y\r\n\n", b"0\r\nX: y\r\n\r\r"):
        req = (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
               + end + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        data = raw(site.tcp, req)
        assert _status(data) == 400, (end, data[:300])
        assert data.count(b"HTTP/1.1 ") == 1, (end, data[:600])
    assert "/smuggled" not in site.log()
    _alive(site.tcp)


def test_garbage_on_http_socket(wsgid):
    d = wsgid("hello", protocol="http")
    data = raw(d.tcp, b"this is not http\r\n\r\n")
    assert _status(data) == 400
    assert_hello(d.tcp)


def test_garbage_first_byte_auto(site):
    # Neither HTTP nor a WSGI uwsgi packet: closed (with or without a 400), daemon unharmed.
    data = raw(site.tcp, b"this is not http\r\n\r\n")
    assert data == b"" or _status(data) == 400
    _alive(site.tcp)


def test_garbage_request_line_unix(site):
    data = raw(site.unix, b"GET / HTTP/1.1 extra\x01stuff\r\n\r\n")
    assert _status(data) == 400
    _alive(site.unix)


def test_headers_too_large(site):
    data = raw(site.tcp, http_request(headers={"X-Big": "a" * 8000}))
    assert _status(data) == 431
    _alive(site.tcp)


def test_request_line_too_long(site):
    # A request line past header-buffer-size (4K here) is a URI too long, as nginx says it; a
    # long line within the limit followed by long headers is a head too large.
    data = raw(site.tcp, b"GET /" + b"u" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status(data) == 414
    data = raw(site.tcp, http_request(path="/" + "u" * 3000, headers={"X-Big": "a" * 3000}))
    assert _status(data) == 431
    _alive(site.tcp)


def test_many_headers_too_large(site):
    hdrs = [("X-H%d" % i, "v" * 50) for i in range(200)]
    data = raw(site.tcp, http_request(headers=hdrs))
    assert _status(data) == 431
    _alive(site.tcp)


def test_body_too_large(site):
    data = raw(site.tcp, http_request("POST", "/", body=b"x" * 2000))
    assert _status(data) == 413
    _alive(site.tcp)


def test_body_too_large_announced_only(site):
    # The 413 must come from the Content-Length alone, without waiting for the body.
    with Conn(site.tcp, timeout=5) as c:
        c.send(http_request("POST", "/", {"Content-Length": "5000000"}))
        r = c.response()
        assert r.status == 413
    _alive(site.tcp)


def test_chunked_body_too_large(site):
    wire = b"".join(b"100\r\n" + b"y" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    data = raw(site.tcp, http_request("POST", "/", {"Transfer-Encoding": "chunked"}) + wire)
    assert _status(data) == 413
    _alive(site.tcp)


def test_body_at_the_limit_is_fine(site):
    with Conn(site.tcp) as c:
        c.send(http_request("POST", "/", body=b"z" * 1024))
        r = c.response()
        assert r.status == 200 and r.body == b"z" * 1024


def test_content_length_and_transfer_encoding(site):
    req = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    data = raw(site.tcp, req)
    assert _status(data) == 400
    _alive(site.tcp)


def test_bad_chunk_size(site):
    req = http_request("POST", "/", {"Transfer-Encoding": "chunked"}) + b"zz\r\nhello\r\n0\r\n\r\n"
    data = raw(site.tcp, req)
    assert _status(data) == 400
    _alive(site.tcp)


def test_bad_content_length(site):
    data = raw(site.tcp, http_request("POST", "/", {"Content-Length": "12abc"}) + b"12abc")
    assert _status(data) == 400
    _alive(site.tcp)


def test_truncated_uwsgi_packet(site):
    pkt = uwsgi_request(path="/")
    data = raw(site.unix, pkt[:len(pkt) // 2], shut_wr=True)
    assert data == b""
    data = raw(site.unix, pkt[:3], shut_wr=True)
    assert data == b""
    _alive(site.unix)


def test_truncated_uwsgi_body(site):
    pkt = uwsgi_request("POST", "/", body=b"0123456789")
    data = raw(site.unix, pkt[:-4], shut_wr=True)
    # Nothing to answer: the body never came. Closed, and above all: the daemon still serves.
    assert data == b"" or _status(data) >= 400
    _alive(site.unix)


def test_uwsgi_modifier1_not_zero(site):
    before = site.log_size()
    pkt = uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, modifier1=5)
    data = raw(site.unix, pkt)
    assert b"200 OK" not in data
    site.wait_log(r"(?i)modifier", since=before)
    _alive(site.unix)


def test_uwsgi_vars_block_inconsistent(site):
    # A key length that runs past the end of the vars block.
    block = struct.pack("<H", 200) + b"REQUEST_METHOD"
    pkt = struct.pack("<BHB", 0, len(block), 0) + block
    data = raw(site.unix, pkt)
    assert data == b"" or _status(data) == 400
    _alive(site.unix)


def test_uwsgi_big_vars_block(wsgid):
    # Close to the 65535-byte maximum of a vars block: accepted (uWSGI's 4096 is a known pain).
    d = wsgid("environ")
    pkt = uwsgi_request(path="/", **{"HTTP_X_LARGE": "b" * 60000})
    data = raw(d.unix, pkt)
    r, _ = parse_response(data, eof=True)
    assert r.status == 200
    assert b"b" * 60000 in r.body


def test_http_on_uwsgi_socket(wsgid):
    d = wsgid("hello", protocol="uwsgi")
    before = d.log_size()
    data = raw(d.tcp, http_request(headers={"Connection": "close"}))
    assert _status(data) == 400
    body = data.partition(b"\r\n\r\n")[2]
    assert b"uwsgi" in body.lower()
    d.wait_log(r"(?i)uwsgi", since=before)
    r = raw(d.tcp, uwsgi_request(path="/"))
    assert r.endswith(HELLO)


def test_client_gone_before_answer(wsgid):
    d = wsgid("slow", threads=2)
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/?t=0.5"))
    time.sleep(1.0)
    assert_hello_like = raw(d.tcp, http_request("GET", "/?t=0", {"Connection": "close"}))
    assert _status(assert_hello_like) == 200


def test_many_bad_connections_then_hello(site):
    for i in range(30):
        with Conn(site.tcp) as c:
            c.send(os.urandom(64) if i % 2 else b"GET /\x00 HTTP/1.1\r\n\r\n")
    _alive(site.tcp)


# --- app mistakes -------------------------------------------------------------------------------

MISTAKES = ["/non-bytes", "/bad-status", "/header-crlf", "/header-latin1", "/hop-by-hop",
            "/start-twice", "/raise-before", "/no-start-response", "/informational",
            "/two-lengths"]


@pytest.fixture
def mistakes(wsgid):
    d = wsgid("mistakes", threads=2)
    d.expect_log(r"\[req \d+-\d+\] ")  # the app's mistakes, each on its request's lines
    return d


@pytest.mark.parametrize("path", MISTAKES)
def test_app_mistake_gives_500(mistakes, tmp, path):
    d = mistakes
    before = d.log_size()
    with Conn(d.tcp) as c:
        c.send(http_request("GET", path, {"Connection": "close"}))
        r = c.response()
    assert r.status == 500, r
    if path == "/header-crlf":
        assert b"Injected" not in r.head
    rid = (tmp / "request-id").read_text()
    assert rid
    line = d.wait_log(r"\[error\].*" + rid.replace(".", r"\."), since=before)
    if path == "/non-bytes":
        assert "str" in "".join(d.lines(since=before)), d.log()[before:]
    # The daemon goes on.
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/ok", {"Connection": "close"}))
        assert c.response().body == b"ok\n"
    assert line


@pytest.mark.parametrize("path", ["/forge-status", "/forge-header"])
def test_app_mistake_quoting_the_request_forges_no_log_line(mistakes, path):
    """An app that puts request text in its status or a header name (a refused one: 500): the
    error-log line that quotes it writes a CR or LF as \\x0D, \\x0A. Before, the client's text
    started lines of its own ("2026-12-07 00:00:00.000 [alert] master: FORGED"; helper-60)."""
    d = mistakes
    forged = "%0D%0A2026-12-07 00:00:00.000 [alert] master: FORGED LINE".replace(" ", "%20")
    with Conn(d.tcp) as c:
        c.send(http_request("GET", path + "?" + forged, {"Connection": "close"}))
        assert c.response().status == 500
    line = d.wait_log(r"\\x0D\\x0A2026-12-07 00:00:00\.000 \[alert\] master: FORGED LINE")
    assert "[error]" in line, line
    assert not [x for x in d.log().splitlines() if x.startswith("2026-12-07 00:00:00.000")]


@pytest.mark.parametrize("path", MISTAKES)
def test_app_mistake_via_uwsgi(mistakes, path):
    data = raw(mistakes.unix, uwsgi_request(path=path))
    r, _ = parse_response(data, eof=True)
    assert r.status == 500


def test_exception_after_head_cuts_the_response(mistakes, tmp):
    d = mistakes
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/raise-after"))
        data = c.read_until_close()
    assert data.startswith(b"HTTP/1.1 200"), data
    assert b"first chunk" in data
    assert b"never sent" not in data
    # Cut short: chunked without its last chunk (or fewer bytes than a Content-Length).
    assert not data.endswith(b"0\r\n\r\n")
    wait = time.monotonic() + 5
    while not (tmp / "closed").exists() and time.monotonic() < wait:
        time.sleep(0.05)
    assert (tmp / "closed").exists(), "close() of the app iterable was not called"
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/ok", {"Connection": "close"}))
        assert c.response().body == b"ok\n"


def test_exception_after_a_whole_body_loses_nothing(mistakes):
    """An app that raises once every byte of its Content-Length is out (in its iterable's last
    step, or in close()) has sent a whole answer: the connection is closed, not reset, so that
    what the kernel still holds for a slow client reaches it. Before, the reset (SO_LINGER 0)
    threw that away: a 4 MiB answer read after half a second came short."""
    size = 4 << 20
    c = Conn(mistakes.tcp, timeout=30, rcvbuf=4096)
    c.send(http_request("GET", "/raise-after-whole?size=%d" % size, {}))
    time.sleep(0.5)
    try:
        data = c.read_until_close()
    except ConnectionResetError:
        data = c.buf
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    assert len(body) == size, "%d bytes of %d" % (len(body), size)
    c.close()
    # ... and its access line (on stderr here) does not say cut.
    line = mistakes.wait_log(r'"GET /raise-after-whole\?size=%d HTTP/1.1" 200 ' % size)
    assert not line.endswith(" cut"), line


def test_close_is_called(mistakes, tmp):
    with Conn(mistakes.tcp) as c:
        c.send(http_request("GET", "/close", {"Connection": "close"}))
        assert c.response().body == b"ab"
    wait = time.monotonic() + 5
    while not (tmp / "closed").exists() and time.monotonic() < wait:
        time.sleep(0.05)
    assert (tmp / "closed").exists()


def test_the_same_content_length_twice_goes_out_once(mistakes):
    """Two Content-Length headers that differ are a mistake (in MISTAKES: a 500); the same one
    twice goes out once, and the connection serves on."""
    with Conn(mistakes.tcp) as c:
        c.send(http_request("GET", "/same-length-twice"))
        r = c.response()
        assert r.status == 200 and r.body == b"abc", r
        assert r.head.lower().count(b"content-length:") == 1, r.head
        c.send(http_request("GET", "/ok", {"Connection": "close"}))
        assert c.response().body == b"ok\n"


@pytest.mark.parametrize("path", ["/exc-info-none", "/exc-info-ints-caught", "/exc-info-real"])
def test_exc_info_after_the_head(mistakes, tmp, path):
    """start_response with exc_info once the head is out re-raises the app's error (PEP 3333).
    An exc_info that is not what sys.exc_info() gives in an except block is a TypeError the app
    may catch; restored as the pending exception, (None, None, None) or (1, 2, 3) killed the
    worker (SIGSEGV), with every request it had."""
    d = mistakes
    workers = set(d.workers())
    before = d.log_size()
    with Conn(d.tcp) as c:
        c.send(http_request("GET", path, {"Connection": "close"}))
        data = c.read_until_close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"head out" in data, data
    if path == "/exc-info-ints-caught":
        assert (tmp / "exc-info-refused").exists()
        assert b"more" in data and data.endswith(b"0\r\n\r\n"), data  # it went on
    else:
        assert not data.endswith(b"0\r\n\r\n"), data  # cut short
        d.wait_log(r"KeyError" if path == "/exc-info-real"
                   else r"exc_info is not what sys.exc_info\(\) gives", since=before)
    assert set(d.workers()) == workers, "a worker died"
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/ok", {"Connection": "close"}))
        assert c.response().body == b"ok\n"


@pytest.mark.parametrize("path", ["/stale-mistake", "/stale-mistake-generator"])
def test_a_mistake_the_app_got_over_does_not_hide_a_later_error(mistakes, path):
    """The app catches its start_response-twice error and answers; its iterable then raises: the
    log names that exception, not the mistake the app got over (also from a generator app, whose
    start_response calls run during the iteration)."""
    d = mistakes
    before = d.log_size()
    with Conn(d.tcp) as c:
        c.send(http_request("GET", path, {"Connection": "close"}))
        data = c.read_until_close()
    assert b"part" in data and not data.endswith(b"0\r\n\r\n"), data
    d.wait_log(r"ZeroDivisionError", since=before)
    assert "twice without exc_info" not in d.log()[before:]


def test_write_from_an_app_thread_after_the_app_returned(wsgid, tmp):
    """write() from a thread of the app's own while the response ends, its pushes waiting for a
    client that reads late: the response stays whole (every chunk as long as its size line, then
    the last chunk) and the thread's next write() raises. The end of the response was written
    into the middle of the thread's chunk: a size line for 1,000,000 bytes, then the last
    chunk."""
    d = wsgid("mistakes", threads=2, response_buffer_size="64K", response_spill_limit="256K")
    with Conn(d.tcp, rcvbuf=16384) as c:
        c.send(http_request("GET", "/background-write", {"Connection": "close"}))
        time.sleep(2.5)
        data = c.read_until_close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Transfer-Encoding: chunked" in head, head
    pos = total = 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol], 16)
        if size == 0:
            assert body[eol + 2:] == b"\r\n", body[eol:eol + 40]
            break
        chunk = body[eol + 2:eol + 2 + size]
        assert len(chunk) == size and chunk.count(b"y") == size, (size, len(chunk))
        assert body[eol + 2 + size:eol + 4 + size] == b"\r\n"
        pos = eol + 4 + size
        total += size
    wait_for(lambda: (tmp / "bg-write-RuntimeError").exists(), timeout=10,
             what="the app thread's write() after the end to raise")
    print("background write: %d bytes in whole chunks before the end" % total)


def _read_to_close(s):
    """Everything s receives until the peer closes."""
    parts = []
    while True:
        part = s.recv(1 << 20)
        if not part:
            return b"".join(parts)
        parts.append(part)


def test_write_from_an_app_thread_waiting_for_its_turn_as_the_response_ends(wsgid, tmp):
    """The app's thread calls write() while the serving thread's push waits for a client that
    reads late, and waits for its turn until the serving thread has ended the response (a long
    switch interval keeps the GIL with the serving thread otherwise). The thread's write() raises,
    the response ends whole, and the worker lives: the thread took the turn after the request was
    cleared, and read it (SIGSEGV)."""
    d = wsgid("mistakes", threads=2, response_buffer_size="64K", response_spill_limit="256K")
    workers = set(d.workers())
    with socket.create_connection(d.tcp, timeout=30) as s:
        s.sendall(http_request("GET", "/write-while-streaming", {"Connection": "close"}))
        time.sleep(1.0)
        data = _read_to_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    assert body.endswith(b"0\r\n\r\n"), body[-60:]
    assert body.count(b"z") == 40000000, body.count(b"z")
    wait_for(lambda: list(tmp.glob("bg-stream-*")), timeout=10, what="the app thread's end")
    assert [p.name for p in tmp.glob("bg-stream-*")] == ["bg-stream-RuntimeError"]
    assert set(d.workers()) == workers, "a worker died"


def _switches(pid):
    """Context switches of all of a process's threads so far."""
    n = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, task)) as f:
                for line in f:
                    if "ctxt_switches:" in line:
                        n += int(line.split()[-1])
        except OSError:
            pass
    return n


def test_an_app_thread_waiting_for_its_turn_sleeps(wsgid, tmp):
    """While the serving thread's push waits for a client that does not read, the app's own
    thread that called write() sleeps until its turn comes: before, it polled every 200 us,
    taking the GIL back each time (helper-56: 6 % of a CPU, 3,300 wake-ups a second for as long
    as the client stalled). Counted in context switches, not time: the worker's threads switch
    fewer than 300 times in 2 s (7,225 before, 16 after, in one run each). The response then
    ends whole."""
    d = wsgid("mistakes", threads=2, response_buffer_size="64K", response_spill_limit="256K")
    with socket.create_connection(d.tcp, timeout=30) as s:
        s.sendall(http_request("GET", "/write-while-streaming", {"Connection": "close"}))
        time.sleep(1.0)  # the push waits for the client, the app's thread for its turn
        before = {p: _switches(p) for p in d.workers()}
        time.sleep(2.0)
        switched = {p: _switches(p) - n for p, n in before.items()}
        print("context switches in 2 s while the client stalls:", switched)
        body = _read_to_close(s).partition(b"\r\n\r\n")[2]
    assert body.count(b"z") == 40000000 and body.endswith(b"0\r\n\r\n"), body[-60:]
    assert max(switched.values()) < 300, switched


def test_headers_just_under_the_limit(site):
    # header-buffer-size is 4K here: a 3000-byte header still fits.
    with Conn(site.tcp) as c:
        c.send(http_request("GET", "/", {"X-Big": "c" * 3000, "Connection": "close"}))
        assert c.response().status == 200


def test_big_headers_with_the_default_limit(wsgid):
    d = wsgid("environ")
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/", {"X-Big": "d" * 60000, "Connection": "close"}))
        r = c.response()
    assert r.status == 200
    assert b"d" * 60000 in r.body


# --- client-side timeouts -----------------------------------------------------------------------

def test_body_timeout_gives_408(wsgid):
    d = wsgid("echo", body_timeout=1)
    with Conn(d.tcp, timeout=10) as c:
        c.send(http_request("POST", "/", {"Content-Length": "100"}) + b"only ten b")
        t0 = time.monotonic()
        r = c.response()
        assert r.status == 408
        assert 0.5 < time.monotonic() - t0 < 5
    _alive(d.tcp)


def test_header_timeout_closes(wsgid):
    d = wsgid("echo", header_timeout=1)
    with Conn(d.tcp, timeout=10) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        data = c.read_until_close()
        assert 0.5 < time.monotonic() - t0 < 5
        assert data == b"" or _status(data) in (400, 408)
    _alive(d.tcp)


def test_keepalive_timeout_closes_idle_connection(wsgid):
    d = wsgid("echo", keepalive_timeout=1)
    with Conn(d.tcp, timeout=10) as c:
        c.send(http_request("GET", "/"))
        assert c.response().status == 200
        t0 = time.monotonic()
        assert c.closed(5)
        assert 0.5 < time.monotonic() - t0 < 5
