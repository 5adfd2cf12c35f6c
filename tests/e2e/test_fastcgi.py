"""FastCGI (issue #14, part 1): wsgid as a FastCGI responder behind nginx's fastcgi_pass with
fastcgi_keep_conn and an upstream keepalive pool, and the protocol's corners spoken directly:
GET_VALUES, UNKNOWN_TYPE, CANT_MPX_CONN, UNKNOWN_ROLE, ABORT_REQUEST, oversized PARAMS,
malformed records."""
import hashlib
import json
import os
import random
import signal
import time

import requests

from helpers import fcgi
from helpers.clients import Conn
from helpers.config import app, make_config
from helpers.procs import wait_for

MiB = 1024 * 1024


def fastcgi_location(sock):
    return """location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_keep_conn on;
            fastcgi_pass wsgid_fcgi;
        }""", "upstream wsgid_fcgi { server unix:%s; keepalive 8; }" % sock


def start(wsgid, tmp, **group):
    g = {"listen": ["unix:" + str(tmp / "site.sock")], "threads": 4,
         "env": {"WSGID_E2E_DIR": str(tmp)},
         "mounts": {"/echo": app("echo"), "/big": app("big"), "/stream": app("stream"),
                    "/environ": app("environ"), "/ops": app("ops")}}
    g.update(group)
    d = wsgid(config=make_config(tmp, {"site": g}))
    return d, str(tmp / "site.sock")


def test_behind_nginx_fastcgi_pass(wsgid, nginx, tmp):
    d, sock = start(wsgid, tmp)
    loc, upstream = fastcgi_location(sock)
    ng = nginx(loc, http_extra=upstream)
    s = requests.Session()
    r = s.get(ng.url + "/environ/a%20b?x=1&y=2", headers={"X-Test": "t"})
    assert r.status_code == 200
    e = r.json()
    assert e["REQUEST_METHOD"] == "GET" and e["SCRIPT_NAME"] == "/environ"
    assert e["PATH_INFO"] == "/a b" and e["QUERY_STRING"] == "x=1&y=2"
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1" and e["REMOTE_ADDR"] == "127.0.0.1"
    assert e["HTTP_X_TEST"] == "t" and e["wsgi.url_scheme"] == "http"
    # 10 MiB up and back, 10 MiB down with a length, a stream without one.
    body = os.urandom(10 * MiB)
    r = s.post(ng.url + "/echo/", data=body)
    assert r.status_code == 200 and r.headers["X-Body-Length"] == str(len(body))
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(body).digest()
    r = s.get(ng.url + "/big/?size=%d" % (10 * MiB))
    assert r.status_code == 200 and len(r.content) == 10 * MiB
    assert r.headers["Content-Length"] == str(10 * MiB)
    r = s.get(ng.url + "/big/gen?size=300000")  # a generator: no Content-Length
    assert r.status_code == 200 and len(r.content) == 300000
    r = s.get(ng.url + "/stream/gen")
    assert r.status_code == 200 and r.content == b"".join(b"part %d\n" % i for i in range(10))
    r = s.head(ng.url + "/big/?size=1000")
    assert r.status_code == 200 and r.content == b""
    d.expect_log(r"\[req \d+-\d+\] ", r"e2e-ops-error")
    r = s.get(ng.url + "/ops/error")
    assert r.status_code == 500
    # nginx's keepalive pool reuses the connections (FCGI_KEEP_CONN; one connection serving
    # several requests is checked directly in test_management_records).
    for _ in range(30):
        assert s.get(ng.url + "/environ/").status_code == 200


def test_management_records(wsgid, tmp):
    d, sock = start(wsgid, tmp, threads=3)
    with Conn(sock) as c:
        c.send(fcgi.record(fcgi.GET_VALUES, 0, fcgi.pairs(
            {"FCGI_MAX_CONNS": "", "FCGI_MAX_REQS": "", "FCGI_MPXS_CONNS": "", "NOPE": ""})))
        (rtype, rid, content), = fcgi.read_records(c)
        assert rtype == fcgi.GET_VALUES_RESULT and rid == 0
        v = fcgi.parse_pairs(content)
        assert v["FCGI_MAX_REQS"] == "3" and v["FCGI_MPXS_CONNS"] == "0" and "NOPE" not in v
        assert int(v["FCGI_MAX_CONNS"]) > 0
        c.send(fcgi.record(42, 0, b"\0" * 8))
        (rtype, rid, content), = fcgi.read_records(c)
        assert rtype == fcgi.UNKNOWN_TYPE and content[0] == 42
        # Still usable: a request on the same connection, kept (KEEP_CONN), then another.
        for i in (1, 2):
            c.send(fcgi.request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/environ/",
                                 "PATH_INFO": "/environ/", "SERVER_PROTOCOL": "HTTP/1.1"},
                                rid=i, keep=True))
            recs = fcgi.read_records(c)
            assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
            out = fcgi.stdout_of(recs)
            assert out.startswith(b"Status: 200 OK\r\n"), out[:100]
            assert all(rid == i for _, rid, _ in recs)


def test_refusals(wsgid, tmp):
    d, sock = start(wsgid, tmp, header_buffer_size="1K")
    with Conn(sock) as c:
        c.send(fcgi.begin(7, role=fcgi.AUTHORIZER, keep=True))
        recs = fcgi.read_records(c)
        assert recs[-1][1] == 7 and fcgi.end_of(recs) == (0, fcgi.UNKNOWN_ROLE)
        # One request at a time: a second BEGIN_REQUEST meanwhile is refused, the first goes on.
        c.send(fcgi.begin(1, keep=True) + fcgi.begin(2, keep=True))
        recs = fcgi.read_records(c)
        assert recs[-1][1] == 2 and fcgi.end_of(recs) == (0, fcgi.CANT_MPX_CONN)
        c.send(fcgi.record(fcgi.PARAMS, 1, fcgi.pairs({"REQUEST_URI": "/environ/",
                                                       "PATH_INFO": "/environ/",
                                                       "REQUEST_METHOD": "GET"}))
               + fcgi.record(fcgi.PARAMS, 1) + fcgi.record(fcgi.STDIN, 1))
        recs = fcgi.read_records(c)
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
        assert json.loads(fcgi.stdout_of(recs).split(b"\r\n\r\n", 1)[1])["PATH_INFO"] == "/"
        # ABORT_REQUEST before the request is complete: it ends there.
        c.send(fcgi.begin(3, keep=True) + fcgi.record(fcgi.PARAMS, 3, fcgi.pairs({"A": "b"}))
               + fcgi.record(fcgi.ABORT_REQUEST, 3))
        recs = fcgi.read_records(c)
        assert recs[-1][1] == 3 and fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
        assert fcgi.stdout_of(recs) == b""
    # PARAMS over header-buffer-size: 431, as a CGI response in STDOUT, then the end.
    d.expect_log(r"FastCGI PARAMS larger than header-buffer-size")
    with Conn(sock) as c:
        c.send(fcgi.begin(1) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs({"X": "y" * 2000})))
        recs = fcgi.read_records(c)
        assert fcgi.stdout_of(recs).startswith(b"Status: 431 ")
        assert fcgi.end_of(recs)[1] == fcgi.REQUEST_COMPLETE
    # A record that is not FastCGI's: the connection is closed.
    d.expect_log(r"malformed FastCGI record")
    with Conn(sock) as c:
        c.send(b"\x01\x06\x00\x01\x00\x00\x00\x00")  # STDOUT sent to a server
        assert c.closed()


def test_the_records_of_one_request_stay_its_own(wsgid, tmp):
    """What a later record does to the request being read or run (helper-53's findings):
    - an ABORT_REQUEST after the next request's BEGIN_REQUEST of the same id (nginx numbers
      every request 1) is the next one's: the running request is answered, then the aborted one
      ends; it aborted the running one (no answer, the connection closed), or, in the same write,
      kept the first from running;
    - a second BEGIN_REQUEST of the request being read closes the connection; it was refused with
      CANT_MPX_CONN, and the request then answered with a second END_REQUEST for the same id;
    - STDIN before the end of PARAMS is answered 400; it was dropped, and the body cut short;
    - a kept connection after an ABORT_REQUEST waits for keepalive-timeout; the aborted
      request's header-timeout closed it."""
    d, sock = start(wsgid, tmp, threads=2, header_timeout=1, keepalive_timeout=10)
    nxt = (fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(params("/ops/x")))
           + fcgi.record(fcgi.ABORT_REQUEST, 1))
    for together in (False, True):
        with Conn(sock) as c:
            first = fcgi.request(params("/ops/sleep?t=0.5"), rid=1, keep=True)
            if together:
                c.send(first + nxt)
            else:
                c.send(first)
                time.sleep(0.2)
                c.send(nxt)
            recs = fcgi.read_records(c)
            assert fcgi.stdout_of(recs).startswith(b"Status: 200 OK"), recs
            assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
            assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.REQUEST_COMPLETE)
            assert not c.closed(timeout=0.2)
    d.expect_log(r"FastCGI request 1 aborted by the proxy before it ran")

    d.expect_log(r"FastCGI BEGIN_REQUEST 1 again before its end")
    with Conn(sock) as c:
        c.send(fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(params("/echo/")))
               + fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1)
               + fcgi.record(fcgi.STDIN, 1, b"hello") + fcgi.record(fcgi.STDIN, 1))
        assert c.closed()
        assert c.buf == b"", c.buf

    d.expect_log(r"FastCGI STDIN before the end of PARAMS")
    with Conn(sock) as c:
        p = dict(params("/echo/"), REQUEST_METHOD="POST")
        c.send(fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(p))
               + fcgi.record(fcgi.STDIN, 1, b"01234") + fcgi.record(fcgi.PARAMS, 1)
               + fcgi.record(fcgi.STDIN, 1, b"56789") + fcgi.record(fcgi.STDIN, 1))
        recs = fcgi.read_records(c)
        assert fcgi.stdout_of(recs).startswith(b"Status: 400 "), recs

    with Conn(sock) as c:
        c.send(fcgi.begin(4, keep=True) + fcgi.record(fcgi.PARAMS, 4, fcgi.pairs({"A": "b"}))
               + fcgi.record(fcgi.ABORT_REQUEST, 4))
        assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.REQUEST_COMPLETE)
        assert not c.closed(timeout=2.5), "closed at header-timeout after the abort"
        c.send(fcgi.request(params("/environ/"), rid=1, keep=True))
        assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.REQUEST_COMPLETE)


def test_answers_after_a_large_answer_wait_for_the_socket(wsgid, tmp):
    """A GET_VALUES, a BEGIN_REQUEST of a role wsgid does not play, and an ABORT_REQUEST of a
    request not yet complete, each right behind a request for a 3 MB answer on a kept
    connection: the loop answers them itself once the answer is in the socket, which may still be
    full then. Each gets its answer, after the 3 MB one, and the connection serves on. Before,
    the loop closed the connection when its one send() did not go through (helper-53: 4-6 runs
    in 6 lost the answer)."""
    d, sock = start(wsgid, tmp, threads=2)
    big = fcgi.request(params("/big/?size=3000000"), rid=1, keep=True)
    nexts = {
        "GET_VALUES": (fcgi.record(fcgi.GET_VALUES, 0, fcgi.pairs({"FCGI_MAX_CONNS": ""})),
                       lambda r: r[0] == fcgi.GET_VALUES_RESULT and b"FCGI_MAX_CONNS" in r[2]),
        "UNKNOWN_ROLE": (fcgi.begin(2, role=fcgi.AUTHORIZER, keep=True),
                         lambda r: r[:2] == (fcgi.END_REQUEST, 2)),
        "ABORT_REQUEST": (fcgi.begin(2, keep=True)
                          + fcgi.record(fcgi.PARAMS, 2, fcgi.pairs({"A": "b"}))
                          + fcgi.record(fcgi.ABORT_REQUEST, 2),
                          lambda r: r[:2] == (fcgi.END_REQUEST, 2)),
    }
    d.expect_log(r"aborted by the proxy before it ran")
    for name, (nxt, answered) in nexts.items():
        for _ in range(3):
            with Conn(sock, timeout=10, rcvbuf=16384) as c:
                c.send(big + nxt)
                time.sleep(0.2)  # the socket fills with the answer's end
                recs = fcgi.read_records(c)
                assert len(fcgi.stdout_of(recs)) > 3000000, name
                assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE), name
                more = fcgi.read_records(c, count=1)
                assert more and answered(more[0]), (name, more)
                c.send(fcgi.request(params("/environ/"), rid=3, keep=True))
                assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.REQUEST_COMPLETE), name


def test_answers_waiting_for_a_peer_that_shut_its_side_cost_no_cpu(wsgid, tmp):
    """Management answers a peer does not read fill its socket and wait (send_now); the peer
    then shuts its sending side down and still reads nothing. The worker waits for POLLOUT only:
    watching for the peer's FIN too, level-triggered, woke its loop at every turn (helper-55: a
    whole CPU, 258 ticks in 3 s, until keepalive-timeout). Then the peer reads: every answer
    arrives, and the connection closes."""
    import fcntl
    import struct
    import termios

    d, sock = start(wsgid, tmp, threads=2)
    [pid] = d.workers()
    gv = fcgi.record(fcgi.GET_VALUES, 0, fcgi.pairs({"FCGI_MAX_CONNS": ""}))
    with Conn(sock, timeout=10, rcvbuf=4096) as c:
        last, sent = -1, 0
        for _ in range(2000):
            c.send(gv)
            sent += 1
            time.sleep(0.003)
            queued = struct.unpack("i", fcntl.ioctl(c.sock.fileno(), termios.FIONREAD,
                                                    b"\0\0\0\0"))[0]
            if queued == last:
                break
            last = queued
        c.shut_wr()
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        cpu0 = int(fields[11]) + int(fields[12])
        time.sleep(2)
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12]) - cpu0
        assert ticks < 0.1 * 2 * os.sysconf("SC_CLK_TCK"), "%d ticks in 2 s" % ticks
        recs = fcgi.read_records(c, until_end=False)
        assert len(recs) == sent and all(r[0] == fcgi.GET_VALUES_RESULT for r in recs), \
            (len(recs), sent)
        assert c.closed(timeout=2)


def stdin_records(body, sizes, paddings, rid=1):
    """body in STDIN records of the sizes given (in turn), each with the padding given (in turn),
    then the empty STDIN record."""
    out, off, i = b"", 0, 0
    while off < len(body):
        n = min(sizes[i % len(sizes)], len(body) - off)
        out += fcgi.record(fcgi.STDIN, rid, body[off:off + n], paddings[i % len(paddings)])
        off += n
        i += 1
    return out + fcgi.record(fcgi.STDIN, rid)


def post(conn, body, records, content_length=True, rid=1, pieces=None):
    """POSTs body to /echo/ on conn in the STDIN records given, the whole request in pieces of
    `pieces` bytes (each sent on its own, 1 ms apart) or at once; returns the records of the
    answer."""
    p = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/echo/", "PATH_INFO": "/echo/",
         "SERVER_PROTOCOL": "HTTP/1.1"}
    if content_length:
        p["CONTENT_LENGTH"] = str(len(body))
    data = (fcgi.begin(rid, keep=True) + fcgi.record(fcgi.PARAMS, rid, fcgi.pairs(p))
            + fcgi.record(fcgi.PARAMS, rid) + records)
    if pieces is None:
        conn.send(data)
    else:
        for i in range(0, len(data), pieces):
            conn.send(data[i:i + pieces])
            time.sleep(0.001)
    return fcgi.read_records(conn)


def test_stdin_records_are_taken_as_they_come(wsgid, tmp):
    """A STDIN record is read as its bytes come (straight into the body's buffer while the body
    stays in memory), not once it is whole: records of every size with every padding, the whole
    request at once or in pieces that cut records anywhere, with and without CONTENT_LENGTH, one
    after the other on one kept connection; each body comes back whole. A record that runs past
    CONTENT_LENGTH is answered 400 as soon as its header shows it, before its content came."""
    d, sock = start(wsgid, tmp)
    body = os.urandom(700 * 1024)
    cases = [  # (name, record sizes, paddings, pieces, CONTENT_LENGTH given)
        ("nginx's 32 KiB records", [32768], [0], None, True),
        ("65535-byte records, odd paddings", [65535], [7, 0, 255, 3], None, True),
        ("mixed sizes, in pieces of 4099 bytes", [1, 7, 40000, 3, 65535], [5], 4099, True),
        ("32 KiB records in pieces of 50000 bytes", [32768], [0], 50000, True),
        ("no CONTENT_LENGTH", [32768], [1], 30011, False),
    ]
    with Conn(sock) as c:
        for rid, (name, sizes, pads, pieces, cl) in enumerate(cases, 1):
            recs = post(c, body, stdin_records(body, sizes, pads, rid), cl, rid, pieces)
            assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE), name
            head, _, echoed = fcgi.stdout_of(recs).partition(b"\r\n\r\n")
            assert head.startswith(b"Status: 200 OK\r\n"), (name, head)
            assert b"X-Body-Length: %d\r\n" % len(body) in head, (name, head)
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest(), name
    d.expect_log(r"FastCGI STDIN longer than its CONTENT_LENGTH")
    with Conn(sock) as c:
        p = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/echo/", "PATH_INFO": "/echo/",
             "CONTENT_LENGTH": "1000"}
        record = fcgi.record(fcgi.STDIN, 1, b"x" * 40000)
        c.send(fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(p))
               + fcgi.record(fcgi.PARAMS, 1) + record[:5000])
        recs = fcgi.read_records(c)  # 35,000 bytes of the record never come
        assert fcgi.stdout_of(recs).startswith(b"Status: 400 "), recs[:1]


def shaped_records(rng, body, rid):
    """body in STDIN records of request rid in one of the shapes a reader that guesses each
    record to be like the one before must get right or fall back from: nginx's 32 KiB records,
    a size or a padding that changes in the middle, records of another request or of another
    type (DATA) between them, an ABORT_REQUEST of no request of ours."""
    shape = rng.choice(["nginx", "size", "padding", "foreign", "data", "mixed"])
    out, off, i = [], 0, 0
    while off < len(body):
        size, pad = 32768, 0
        if shape == "size" and i % 5 == 3:
            size = rng.choice([1, 4096, 32767, 32769, 65535])
        elif shape == "padding" and i % 4 == 2:
            pad = rng.choice([1, 7, 255])
        elif shape == "mixed":
            size, pad = rng.choice([8192, 32768, 65535]), rng.choice([0, 0, 3])
        n = min(size, len(body) - off)
        out.append(fcgi.record(fcgi.STDIN, rid, body[off:off + n], pad))
        if shape == "foreign" and i % 3 == 1:
            out.append(fcgi.record(fcgi.STDIN, rid + 1000, os.urandom(rng.choice([0, 9, 32768]))))
            out.append(fcgi.record(fcgi.ABORT_REQUEST, rid + 2000))
        elif shape == "data" and i % 3 == 1:
            out.append(fcgi.record(fcgi.DATA, rid, b"filter data, ignored", 4))
        off += n
        i += 1
    return shape, b"".join(out) + fcgi.record(fcgi.STDIN, rid)


def test_stdin_records_of_every_shape_at_random(wsgid, tmp):
    """A FastCGI body read many records a read, each record after the one being taken guessed
    to be like it (conn.c: fcgi_guess), comes back whole whatever the records look like: 40
    requests on one kept connection, bodies of random length up to 600 KiB in records of the
    shapes of shaped_records, sent at once or in random pieces (seeded: the seed is printed)."""
    seed = int.from_bytes(os.urandom(4), "big")
    print("seed %d" % seed)
    rng = random.Random(seed)
    d, sock = start(wsgid, tmp)
    with Conn(sock) as c:
        for rid in range(1, 41):
            body = os.urandom(rng.randrange(1, 600 * 1024))
            shape, recs = shaped_records(rng, body, rid)
            pieces = rng.choice([None, None, rng.randrange(1000, 100000)])
            answer = post(c, body, recs, rng.random() < 0.9, rid, pieces)
            what = "request %d (seed %d): %d bytes, %s records, pieces %s" % (
                rid, seed, len(body), shape, pieces)
            assert fcgi.end_of(answer) == (0, fcgi.REQUEST_COMPLETE), what
            head, _, echoed = fcgi.stdout_of(answer).partition(b"\r\n\r\n")
            assert head.startswith(b"Status: 200 OK\r\n"), (what, head)
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest(), what


def test_stdin_guesses_at_their_edges(wsgid, tmp):
    """The corners of the guessed records (conn.c: fcgi_guess), each sent whole in one write so
    that one read meets them behind records of nginx's shape: a record that would run past
    CONTENT_LENGTH is answered 400, not guessed into the body; an ABORT_REQUEST of the request
    itself between its STDIN records ends it (nothing runs, the records after it are ignored) and
    the connection serves the next request; the next request's records right behind the end of
    a body are served after it."""
    d, sock = start(wsgid, tmp)
    d.expect_log(r"FastCGI STDIN longer than its CONTENT_LENGTH")
    d.expect_log(r"FastCGI request 2 aborted by the proxy before it ran")
    body = os.urandom(4 * 32768)
    with Conn(sock) as c:
        # Four 32 KiB records where CONTENT_LENGTH says three and a bit.
        p = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/echo/", "PATH_INFO": "/echo/",
             "CONTENT_LENGTH": str(3 * 32768 + 100)}
        c.send(fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(p))
               + fcgi.record(fcgi.PARAMS, 1) + stdin_records(body, [32768], [0], 1))
        assert fcgi.stdout_of(fcgi.read_records(c)).startswith(b"Status: 400 ")
    with Conn(sock) as c:
        # ABORT_REQUEST of the request itself after three of its eight records.
        recs = stdin_records(body * 2, [32768], [0], 2)
        cut = 3 * (32768 + 8)
        answer = post(c, body * 2, recs[:cut] + fcgi.record(fcgi.ABORT_REQUEST, 2) + recs[cut:],
                      rid=2)
        assert fcgi.end_of(answer) == (0, fcgi.REQUEST_COMPLETE) and answer[-1][1] == 2
        assert fcgi.stdout_of(answer) == b"", answer[:1]
        # Still good for the next request, which is whole.
        answer = post(c, body, stdin_records(body, [32768], [0], 3), rid=3)
        assert hashlib.sha256(fcgi.stdout_of(answer).partition(b"\r\n\r\n")[2]).digest() == \
            hashlib.sha256(body).digest()
    with Conn(sock) as c:
        # Two requests in one write: the second's records right behind the first's end.
        two = b""
        for rid in (4, 5):
            p = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/echo/", "PATH_INFO": "/echo/",
                 "CONTENT_LENGTH": str(len(body))}
            two += (fcgi.begin(rid, keep=True) + fcgi.record(fcgi.PARAMS, rid, fcgi.pairs(p))
                    + fcgi.record(fcgi.PARAMS, rid) + stdin_records(body, [32768], [0], rid))
        c.send(two)
        for rid in (4, 5):
            answer = fcgi.read_records(c)
            assert fcgi.end_of(answer) == (0, fcgi.REQUEST_COMPLETE) and answer[-1][1] == rid
            echoed = fcgi.stdout_of(answer).partition(b"\r\n\r\n")[2]
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest(), rid


def test_a_body_taken_as_it_comes_stops_at_limit_request_body(wsgid, tmp):
    """Without CONTENT_LENGTH the limit shows only as the body comes: 413 once the STDIN taken
    passes limit-request-body, in the middle of a record."""
    d, sock = start(wsgid, tmp, limit_request_body="100K")
    d.expect_log(r"413")
    body = os.urandom(300 * 1024)
    with Conn(sock) as c:
        recs = post(c, body, stdin_records(body, [65535], [0]), content_length=False,
                    pieces=20000)
        assert fcgi.stdout_of(recs).startswith(b"Status: 413 "), recs[:1]


def params(uri):
    path, _, query = uri.partition("?")
    return {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, "PATH_INFO": path,
            "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1"}


def closed_after(tmp, name):
    """How many parts /stream/closing gave before its close() (the app's iterable closed)."""
    path = tmp / ("closed-" + name)
    wait_for(path.exists, timeout=10, what="the app's iterable closed (%s)" % path)
    return int(path.read_text())


def test_abort_while_the_app_runs(wsgid, tmp):
    """ABORT_REQUEST while the app streams, and the proxy closing the connection: the response is
    dropped, the connection closed, and the app's iterable closed at its next part, not at its
    end (100 parts, 5 s)."""
    d, sock = start(wsgid, tmp, threads=2)
    uri = "/stream/closing?n=100&pause=0.05&name=%s"
    with Conn(sock) as c:
        c.send(fcgi.request(params(uri % "abort"), rid=5, keep=True))
        first = fcgi.read_records(c, until_end=False, count=1)
        assert first[0][:2] == (fcgi.STDOUT, 5)
        t0 = time.monotonic()
        c.send(fcgi.record(fcgi.ABORT_REQUEST, 5))
        assert c.closed(timeout=3) and time.monotonic() - t0 < 2
    assert closed_after(tmp, "abort") < 30
    d.expect_log(r"FastCGI request 5 aborted by the proxy while it ran")
    with Conn(sock) as c:
        c.send(fcgi.request(params(uri % "gone"), rid=1, keep=True))
        fcgi.read_records(c, until_end=False, count=1)
    assert closed_after(tmp, "gone") < 30
    d.expect_log(r"the proxy closed the FastCGI connection: request aborted")
    # An ABORT_REQUEST of another id, or the next request's records, abort nothing.
    with Conn(sock) as c:
        c.send(fcgi.request(params("/stream/closing?n=5&pause=0.1&name=other"), rid=2, keep=True)
               + fcgi.record(fcgi.ABORT_REQUEST, 3))
        recs = fcgi.read_records(c)
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
        assert fcgi.stdout_of(recs).endswith(b"part 4\n")
    assert closed_after(tmp, "other") == 5


def test_a_client_that_shuts_its_side_down_reads_the_answer(wsgid, tmp):
    """A FastCGI client that sends its request and then shutdown(SHUT_WR), as some clients end
    one, has not aborted it: on a unix socket its FIN comes without the hang-up of a close, and
    the answer and END_REQUEST reach it, then the connection closes (kept or not). Before, the FIN
    was taken for the proxy's close: the request was aborted and nothing came back."""
    d, sock = start(wsgid, tmp, threads=2)
    for rid, keep in ((1, False), (2, True)):
        with Conn(sock) as c:
            c.send(fcgi.request(params("/stream/closing?n=3&pause=0.2&name=shut%d" % rid),
                                rid=rid, keep=keep))
            c.shut_wr()
            recs = fcgi.read_records(c)
            assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
            assert fcgi.stdout_of(recs).endswith(b"part 2\n")
            assert c.closed(timeout=2), "the connection stays open after the answer"
        assert closed_after(tmp, "shut%d" % rid) == 3
    assert "aborted" not in d.log()


def assert_never_ran(sock, tmp, name):
    """The request that marked `name` was aborted before it ran: a request after it runs (its
    mark is made), the aborted one's mark is not."""
    with Conn(sock) as c:
        c.send(fcgi.request(params("/ops/mark?name=after"), rid=1, keep=True))
        assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.REQUEST_COMPLETE)
    assert (tmp / "mark-after").exists()
    assert not (tmp / ("mark-" + name)).exists(), "the aborted request ran"


def test_abort_while_queued_never_runs(wsgid, tmp):
    """ABORT_REQUEST for a request that waits for a thread: it never runs (the loop takes it back
    from the queue), its connection closes at once, and the thread, once free, serves the next."""
    d, sock = start(wsgid, tmp, threads=1)
    with Conn(sock) as busy, Conn(sock) as c:
        busy.send(fcgi.request(params("/ops/sleep?t=3"), rid=1))
        wait_for((tmp / "started-sleep").exists, what="the app to start sleeping")
        c.send(fcgi.request(params("/ops/mark?name=queued"), rid=7, keep=True))
        time.sleep(0.5)  # the loop queues it at once; it stays queued while the sleep lasts
        c.send(fcgi.record(fcgi.ABORT_REQUEST, 7))
        assert c.closed(timeout=1.5), "the aborted request's connection stays open"
        recs = fcgi.read_records(busy)
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
    d.expect_log(r"FastCGI request 7 aborted by the proxy before a thread took it")
    assert_never_ran(sock, tmp, "queued")


def test_queue_timeout_overloaded(wsgid, tmp):
    """queue-timeout: the 504 in STDOUT (what proxies show), then END_REQUEST with FCGI_OVERLOADED;
    the kept connection serves on. (Through each proxy: test_proxies.py.)"""
    d, sock = start(wsgid, tmp, threads=1, queue_timeout="1s")
    with Conn(sock) as busy, Conn(sock) as c:
        busy.send(fcgi.request(params("/ops/sleep?t=3"), rid=1))
        wait_for((tmp / "started-sleep").exists, what="the app to start sleeping")
        c.send(fcgi.request(params("/environ/"), rid=4, keep=True))
        recs = fcgi.read_records(c)
        assert fcgi.stdout_of(recs).startswith(b"Status: 504 Gateway Timeout\r\n")
        assert fcgi.end_of(recs) == (0, fcgi.OVERLOADED) and all(r == 4 for _, r, _ in recs)
        assert fcgi.end_of(fcgi.read_records(busy)) == (0, fcgi.REQUEST_COMPLETE)
        c.send(fcgi.request(params("/environ/"), rid=5, keep=True))
        recs = fcgi.read_records(c)
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
        assert fcgi.stdout_of(recs).startswith(b"Status: 200 OK\r\n")
    d.expect_log(r"over queue-timeout")


def test_a_request_on_its_way_is_not_an_idle_connection(wsgid, tmp):
    """A kept connection whose next request has begun is not an idle one, though its records,
    taken out of the read buffer as they come, leave the buffer empty as on an idle connection:
    max-connections does not close it for a new connection (the new one waits), and a graceful
    stop serves it. Both closed it, and the request was lost."""
    d, sock = start(wsgid, tmp, processes=1, max_connections=1)
    second = fcgi.begin(2, keep=True) + fcgi.record(
        fcgi.PARAMS, 2, fcgi.pairs(params("/ops/mark?name=second")))
    with Conn(sock) as c:
        c.send(fcgi.request(params("/environ/"), rid=1, keep=True))
        assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.REQUEST_COMPLETE)
        c.send(second)
        time.sleep(0.3)
        other = Conn(sock, timeout=10)
        other.send(fcgi.request(params("/ops/mark?name=other"), rid=1))
        time.sleep(0.5)
        # Checked while the request is on its way: once its answer ends, the connection is idle
        # and closed for the one waiting (below), which the loop learns at once.
        assert not (tmp / "mark-other").exists(), "served past max-connections 1"
        c.send(fcgi.record(fcgi.PARAMS, 2) + fcgi.record(fcgi.STDIN, 2))
        recs = fcgi.read_records(c)
        assert recs and fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE), recs
        assert (tmp / "mark-second").exists()
    # The first connection closed: the one waiting is served.
    assert fcgi.end_of(fcgi.read_records(other)) == (0, fcgi.REQUEST_COMPLETE)
    other.close()
    with Conn(sock) as c:
        c.send(fcgi.request(params("/environ/"), rid=1, keep=True))
        assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.REQUEST_COMPLETE)
        c.send(fcgi.begin(3, keep=True) + fcgi.record(
            fcgi.PARAMS, 3, fcgi.pairs(params("/ops/mark?name=stopping"))))
        time.sleep(0.3)
        d.signal(signal.SIGTERM)
        time.sleep(0.5)
        c.send(fcgi.record(fcgi.PARAMS, 3) + fcgi.record(fcgi.STDIN, 3))
        recs = fcgi.read_records(c)
        assert recs and fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE), recs
        assert fcgi.stdout_of(recs).startswith(b"Status: 200 OK\r\n")
    assert d.wait_exit(20) == 0


def test_header_timeout_runs_from_the_first_record(wsgid, tmp):
    """header-timeout counts from a request's first record: PARAMS records that keep coming, each
    taken out of the buffer at once, do not start it again (every read into the empty buffer
    did, and a record every 0.4 s held the connection for ever)."""
    d, sock = start(wsgid, tmp, header_timeout=1)
    with Conn(sock) as c:
        t0 = time.monotonic()
        c.send(fcgi.begin(1, keep=True))
        for i in range(12):
            if c.closed(timeout=0.4):
                break
            try:
                c.send(fcgi.record(fcgi.PARAMS, 1, fcgi.pairs({"X_%d" % i: "y"})))
            except OSError:
                break
        took = time.monotonic() - t0
        assert c.closed(timeout=1) and took < 2.5, "still open after %.1f s" % took
    d.wait_log(r"request head not complete after 1 s \(header-timeout\)")


def test_body_timeout_runs_from_the_last_body_bytes(wsgid, tmp):
    """body-timeout counts from the last read that brought body bytes: a DATA record every 0.4 s
    after one byte of a 100-byte body does not start it again (every read did: helper-54 held a
    connection open 12 s with body-timeout 5 s). STDIN that keeps coming does."""
    d, sock = start(wsgid, tmp, body_timeout=1)
    d.expect_log(r"body-timeout|request body")
    p = dict(params("/echo/"), REQUEST_METHOD="POST", CONTENT_LENGTH="100")
    head = fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(p)) \
        + fcgi.record(fcgi.PARAMS, 1)
    for rtype, closes in ((fcgi.DATA, True), (fcgi.STDIN, False)):
        with Conn(sock) as c:
            t0 = time.monotonic()
            c.send(head + fcgi.record(fcgi.STDIN, 1, b"x"))
            closed = False
            for i in range(8):
                if c.closed(timeout=0.4):
                    closed = True
                    break
                c.send(fcgi.record(rtype, 1, b"x"))
            took = time.monotonic() - t0
            assert closed == closes and (not closes or took < 2.5), (rtype, closed, took)


def test_a_request_stuck_past_request_timeout_gets_a_fastcgi_504(wsgid, tmp):
    """Past request-timeout + grace the loop answers for a thread blocked outside Python: on a
    FastCGI connection as FastCGI (the 504 in STDOUT, then END_REQUEST), not as raw HTTP."""
    d, sock = start(wsgid, tmp, threads=2, request_timeout=1, shutdown_timeout=1)
    d.expect_log(r"\[req \d+-1\] ")
    with Conn(sock, timeout=15) as c:
        c.send(fcgi.request(params("/ops/sleep?t=4"), rid=3, keep=True))
        recs = fcgi.read_records(c)
        assert fcgi.stdout_of(recs).startswith(b"Status: 504 Gateway Timeout\r\n"), recs
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE) and all(r == 3 for _, r, _ in recs)
    d.wait_log(r"still running .* answering 504 and replacing this worker")


def test_an_abort_read_with_its_request_never_runs(wsgid, tmp):
    """ABORT_REQUEST in the same read as the request's last STDIN record: the request never runs
    and its connection closes, as for an abort while it waits in the queue. It was dispatched,
    and the ABORT, left in the buffer, was not seen (no poll event came for it)."""
    d, sock = start(wsgid, tmp, threads=1)
    with Conn(sock) as c:
        c.send(fcgi.request(params("/ops/mark?name=aborted"), rid=7, keep=True)
               + fcgi.record(fcgi.ABORT_REQUEST, 7))
        assert c.closed(timeout=2), "the aborted request's connection stays open"
    d.wait_log(r"FastCGI request 7 aborted by the proxy before it ran")
    assert_never_ran(sock, tmp, "aborted")


def test_stdin_shorter_than_its_content_length_is_refused(wsgid, tmp):
    """A STDIN stream that ends before the request's CONTENT_LENGTH: 400, not a body cut short
    handed to the app as if whole (the app saw CONTENT_LENGTH 100 and read 10 bytes)."""
    d, sock = start(wsgid, tmp)
    with Conn(sock) as c:
        recs = post(c, b"x" * 100, stdin_records(b"x" * 10, [10], [0]))
        assert fcgi.stdout_of(recs).startswith(b"Status: 400 "), recs
        assert fcgi.end_of(recs)[1] == fcgi.REQUEST_COMPLETE
    d.wait_log(r"FastCGI STDIN ended at 10 bytes of its CONTENT_LENGTH \(100\)")
    with Conn(sock) as c:  # the whole body still goes through
        recs = post(c, b"y" * 100, stdin_records(b"y" * 100, [30], [3]))
        assert fcgi.stdout_of(recs).endswith(b"y" * 100)


def test_stdin_of_a_length_left_unsaid_is_told_to_the_app(wsgid, tmp):
    """CONTENT_LENGTH "0" is a length: 100 bytes of STDIN after it are refused (400), as after
    "5". Empty or absent, the body is STDIN up to its end, as with "-1": the app sees
    CONTENT_LENGTH 100 and reads 100 bytes, whatever Content-Length header came with it. Before
    (helper-53), all three ran, the app seeing CONTENT_LENGTH "0", "" or the header's 999."""
    d, sock = start(wsgid, tmp)
    d.expect_log(r"FastCGI STDIN longer than its CONTENT_LENGTH")
    body = b"z" * 100
    for cl, header in (("0", None), ("", None), (None, None), (None, "999")):
        p = dict(params("/environ/"), REQUEST_METHOD="POST")
        if cl is not None:
            p["CONTENT_LENGTH"] = cl
        if header is not None:
            p["HTTP_CONTENT_LENGTH"] = header
        with Conn(sock) as c:
            c.send(fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(p))
                   + fcgi.record(fcgi.PARAMS, 1) + stdin_records(body, [40], [0]))
            out = fcgi.stdout_of(fcgi.read_records(c))
        if cl == "0":
            assert out.startswith(b"Status: 400 "), out[:200]
            continue
        env = json.loads(out.split(b"\r\n\r\n", 1)[1])
        assert env["CONTENT_LENGTH"] == "100", (cl, header, env.get("CONTENT_LENGTH"))
        assert env["_body"] == body.decode(), (cl, header, len(env["_body"]))


def test_an_abort_before_the_request_ends_closes_a_connection_not_kept(wsgid, tmp):
    """Without FCGI_KEEP_CONN the application closes the connection after its answer (the
    spec): also after the END_REQUEST that ends an aborted request, or one of a role it does not
    play. The connection stayed open until header-timeout."""
    d, sock = start(wsgid, tmp, header_timeout=30)
    with Conn(sock) as c:
        c.send(fcgi.begin(4) + fcgi.record(fcgi.PARAMS, 4, fcgi.pairs({"A": "b"}))
               + fcgi.record(fcgi.ABORT_REQUEST, 4))
        recs = fcgi.read_records(c)
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
        assert c.closed(timeout=2)
    with Conn(sock) as c:
        c.send(fcgi.begin(5, role=fcgi.AUTHORIZER))
        assert fcgi.end_of(fcgi.read_records(c)) == (0, fcgi.UNKNOWN_ROLE)
        assert c.closed(timeout=2)


def test_a_connection_idle_after_management_records_waits_for_keepalive_timeout(wsgid, tmp):
    """A GET_VALUES answered, no request on its way: the connection waits as a kept one does,
    for keepalive-timeout; header-timeout, started by the record's first byte, kept running and
    closed it."""
    d, sock = start(wsgid, tmp, header_timeout=1, keepalive_timeout=10)
    with Conn(sock) as c:
        c.send(fcgi.record(fcgi.GET_VALUES, 0, fcgi.pairs({"FCGI_MAX_REQS": ""})))
        (rtype, _, _), = fcgi.read_records(c)
        assert rtype == fcgi.GET_VALUES_RESULT
        assert not c.closed(timeout=2.5), "closed at header-timeout"
        c.send(fcgi.request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/environ/",
                             "PATH_INFO": "/environ/", "SERVER_PROTOCOL": "HTTP/1.1"},
                            rid=1, keep=True))
        recs = fcgi.read_records(c)
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
        assert fcgi.stdout_of(recs).startswith(b"Status: 200 OK\r\n")
