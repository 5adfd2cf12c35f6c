"""Request and response bodies: big uploads and downloads, chunked uploads, streaming, write(),
wsgi.file_wrapper."""
import hashlib
import io
import json
import os
import random
import time

import pytest
import requests

from helpers.clients import (Conn, MiB, big_body, http_request, parse_response, request,
                             uwsgi_request)
from helpers.procs import free_port, wait_for
from test_metrics import metrics, samples
from helpers.nginx import proxy_location, uwsgi_location


def _sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def ten_mib():
    return os.urandom(10 * MiB)


@pytest.mark.parametrize("via", ["uwsgi_pass", "proxy_pass", "direct"])
def test_post_10mib_echoed(wsgid, nginx, ten_mib, via):
    d = wsgid("echo", threads=2, limit_request_body="16M")
    if via == "direct":
        url = "http://%s:%d/" % d.tcp
    else:
        loc = uwsgi_location if via == "uwsgi_pass" else proxy_location
        url = nginx(loc(d.unix)).url + "/"
    r = requests.post(url, data=ten_mib, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert r.headers["X-Body-Length"] == str(len(ten_mib))
    assert r.headers["X-Body-Sha256"] == _sha(ten_mib)
    assert len(r.content) == len(ten_mib)
    assert _sha(r.content) == _sha(ten_mib)


def _in_pieces(c, data, piece=7919):
    """Sends data in pieces of odd sizes, a moment apart, so that the worker reads it as it comes."""
    for i in range(0, len(data), piece):
        c.send(data[i:i + piece])
        time.sleep(0.001)


@pytest.mark.parametrize("size", [1, 70000, 300000])
def test_body_after_its_head_then_the_next_request(wsgid, size):
    """A body of known length that comes after its head is read straight into the body's buffer
    (no copy through the read buffer), and never past its end: the next request, sent with the
    body's last bytes, is answered after it. The body comes in pieces of odd sizes."""
    d = wsgid("echo")
    body = os.urandom(size)
    with Conn(d.tcp, timeout=30) as c:
        c.send(http_request("POST", "/", headers={"Content-Length": str(size)}))
        time.sleep(0.05)
        _in_pieces(c, body[:-1])
        c.send(body[-1:] + http_request("POST", "/", body=b"next"))
        r1, r2 = c.response(), c.response()
    assert r1.status == 200 and r1.header("X-Body-Sha256") == _sha(body) and r1.body == body
    assert (r2.status, r2.body) == (200, b"next")


def test_uwsgi_body_after_its_vars(wsgid):
    """The same over the uwsgi protocol (nginx's uwsgi_pass sends a big body as it reads it)."""
    d = wsgid("echo")
    body = os.urandom(300000)
    pkt = uwsgi_request("POST", "/", body=body)
    with Conn(d.unix, timeout=30) as c:
        c.send(pkt[:-len(body)])
        time.sleep(0.05)
        _in_pieces(c, body)
        r, _ = parse_response(c.read_until_close(), eof=True)
    assert r.status == 200 and r.header("X-Body-Sha256") == _sha(body) and r.body == body


def test_body_after_its_head_then_the_next_request_and_a_shutdown(wsgid):
    """The next request waits in the socket while the body is answered (the body is read up to
    its end, no further); a client that then shuts its side down still gets both answers."""
    d = wsgid("echo")
    body = os.urandom(300000)
    with Conn(d.tcp, timeout=30) as c:
        c.send(http_request("POST", "/", headers={"Content-Length": str(len(body))}))
        time.sleep(0.05)
        c.send(body + http_request("POST", "/", body=b"next"))
        c.shut_wr()
        r1, r2 = c.response(), c.response()
    assert r1.status == 200 and r1.body == body
    assert (r2.status, r2.body) == (200, b"next")


def test_body_sent_slowly_holds_no_budget_until_64k_came(wsgid):
    """A client that announces a large body and sends a few bytes of it holds a buffer of 64 KiB
    at most, outside body-memory-limit; once 64 KiB came, the buffer grows to the announced length
    at once (and is charged to the limit)."""
    maddr = ("127.0.0.1", free_port())
    d = wsgid("echo", processes=1, threads=2, top={"metrics": "%s:%d" % maddr})
    key = 'wsgid_body_memory_bytes{group="site"}'
    body = os.urandom(900000)
    with Conn(d.tcp, timeout=30) as c:
        # A small body first: its buffer (of its own length, 40000) is kept for the next one.
        c.send(http_request("POST", "/", body=b"s" * 40000))
        assert c.response().status == 200
        c.send(http_request("POST", "/", headers={"Content-Length": str(len(body))}))
        for i in range(3):  # three reads of a few bytes each
            time.sleep(0.2)
            c.send(body[i * 10:(i + 1) * 10])
        time.sleep(0.3)
        assert samples(metrics(maddr))[key] == 0, "30 bytes of a body charged to the budget"
        c.send(body[30:70000])
        wait_for(lambda: samples(metrics(maddr))[key] == len(body), timeout=5,
                 what="the buffer grown to the announced length once 64 KiB came")
        c.send(body[70000:])
        r = c.response()
    assert r.status == 200 and r.body == body
    wait_for(lambda: samples(metrics(maddr))[key] == 0, timeout=5, what="the buffer given back")


@pytest.mark.parametrize("how", ["lines", "iter", "small"])
def test_input_reading_styles(wsgid, how):
    d = wsgid("echo")
    body = b"".join(b"line %d of the body\n" % i for i in range(20000)) + b"no newline at end"
    r = requests.post("http://%s:%d/?%s" % (d.tcp + (how,)), data=body)
    assert r.status_code == 200
    assert r.content == body


@pytest.mark.parametrize("path", ["/big", "/gen"])
@pytest.mark.parametrize("via", ["uwsgi_pass", "proxy_pass", "direct"])
def test_download_16mib(wsgid, nginx, via, path):
    d = wsgid("big", threads=2)
    if via == "direct":
        url = "http://%s:%d" % d.tcp
    else:
        loc = uwsgi_location if via == "uwsgi_pass" else proxy_location
        url = nginx(loc(d.unix)).url
    r = requests.get(url + path)
    assert r.status_code == 200
    assert len(r.content) == 16 * MiB
    assert _sha(r.content) == _sha(big_body())
    if via == "direct":
        if path == "/big":
            assert r.headers["Content-Length"] == str(16 * MiB)
        else:
            assert r.headers["Transfer-Encoding"] == "chunked"


def test_chunked_upload_direct(wsgid):
    d = wsgid("echo")
    body = os.urandom(300000)
    chunks = [body[:1], body[1:70000], body[70000:70001], body[70001:]]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    with Conn(d.tcp) as c:
        head = http_request("POST", "/", {"Transfer-Encoding": "chunked"})
        c.send(head)
        # In pieces, so the server sees chunk boundaries split across reads.
        for i in range(0, len(wire), 65521):
            c.send(wire[i:i + 65521])
            time.sleep(0.01)
        r = c.response()
    assert r.status == 200
    assert r.header("X-Body-Length") == str(len(body))
    assert r.body == body


def test_chunked_upload_with_extensions_and_trailer(wsgid):
    d = wsgid("echo")
    wire = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    with Conn(d.tcp) as c:
        c.send(http_request("POST", "/", {"Transfer-Encoding": "chunked"}) + wire)
        r = c.response()
    assert r.status == 200 and r.body == b"hello world"


def test_streaming_generator_in_order(wsgid):
    d = wsgid("stream")
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/?n=10&pause=0.15", {"Connection": "close"}))
        arrivals = []
        start = time.monotonic()
        while True:
            data = c._fill()
            if not data:
                break
            arrivals.append((time.monotonic() - start, data))
    whole = b"".join(d for _, d in arrivals)
    head, _, body = whole.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    from helpers.clients import parse_response
    r, _ = parse_response(whole, eof=True)
    assert r.body == b"".join(b"part %d\n" % i for i in range(10))
    # Streamed, not buffered: the first part arrives well before the last.
    first = next(t for t, data in arrivals if b"part 0" in data)
    last = next(t for t, data in arrivals if b"part 9" in data)
    assert last - first > 0.8, arrivals


def test_write_callable_streams(wsgid, tmp):
    """Each write() goes out as it comes (PEP 3333: a server must not delay a block), and a
    client that leaves is noticed at the next write(), which raises. Before, nothing (not even
    the head) went out until the app returned, and an app writing to a client that had left
    wrote on until it stopped by itself (helper-60)."""
    d = wsgid("stream")
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/write-slow?n=8&pause=0.15", {"Connection": "close"}))
        start = time.monotonic()
        arrivals = []
        while True:
            data = c._fill()
            if not data:
                break
            arrivals.append((time.monotonic() - start, data))
    first = next(t for t, data in arrivals if b"part 0" in data)
    last = next(t for t, data in arrivals if b"part 7" in data)
    assert first < 0.5 and last - first > 0.8, arrivals
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/write-slow?n=200&pause=0.05&name=gone",
                            {"Connection": "close"}))
        assert b"part 1" in c.read_until(b"part 1")
    wrote = wait_for(lambda: (tmp / "wrote-gone").exists() and int((tmp / "wrote-gone")
                                                                    .read_text()), 5,
                     what="the app's write() to raise")
    assert wrote < 60, wrote


def test_streaming_generator_via_nginx(wsgid, nginx):
    d = wsgid("stream")
    ng = nginx(uwsgi_location(d.unix, "uwsgi_buffering off;"))
    r = requests.get(ng.url + "/?n=5&pause=0.05")
    assert r.content == b"".join(b"part %d\n" % i for i in range(5))


def test_write_callable(wsgid, nginx):
    d = wsgid("stream")
    r = request(d.tcp, path="/write")
    assert r.status == 200 and r.body == b"one two three"
    r = request(d.tcp, path="/write-only?n=100")
    assert r.body == b"".join(b"w%d;" % i for i in range(100))
    ng = nginx(uwsgi_location(d.unix))
    assert requests.get(ng.url + "/write").content == b"one two three"


@pytest.mark.parametrize("offset", [0, 1, 4097, 999999])
def test_file_wrapper_from_offset(wsgid, nginx, tmp, offset):
    data = os.urandom(1000000)
    path = tmp / "file.bin"
    path.write_bytes(data)
    d = wsgid("filewrap")
    r = request(d.tcp, path="/?path=%s&offset=%d" % (path, offset))
    assert r.status == 200
    assert r.body == data[offset:]
    ng = nginx(uwsgi_location(d.unix))
    r2 = requests.get(ng.url + "/?path=%s&offset=%d" % (path, offset))
    assert r2.content == data[offset:]


def test_file_wrapper_with_shorter_content_length(wsgid, tmp):
    data = os.urandom(100000)
    path = tmp / "file.bin"
    path.write_bytes(data)
    d = wsgid("filewrap")
    # The app promises 1000 bytes from offset 10: exactly those must come, and the connection
    # stays usable.
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/?path=%s&offset=10&len=1000" % path))
        r = c.response()
        assert r.status == 200 and r.body == data[10:1010]
        c.send(http_request("GET", "/?path=%s&offset=0" % path))
        assert c.response().body == data


def test_file_wrapper_over_files_whose_size_says_nothing(wsgid, tmp):
    """procfs files have st_size 0 and sysfs ones 4096 whatever they hold: such a file is
    iterated (read(blksize), as PEP 3333 has it), not sent by its size. Before, /proc/version
    gave an empty 200 (helper-56)."""
    d = wsgid("filewrap")
    files = ["/proc/version", "/sys/devices/system/cpu/online"]
    for path in files:
        if not os.path.exists(path):
            print("%s: not on this machine, not tried" % path)
            continue
        with open(path, "rb") as f:
            want = f.read()
        with Conn(d.tcp) as c:
            c.send(http_request("GET", "/?path=%s&len=none" % path))
            r = c.response()
            assert r.status == 200 and r.body == want, (path, r.head, r.body[:100])
            c.send(http_request("GET", "/?path=%s&len=%d" % (path, len(want))))
            assert c.response().body == want, path
    empty = tmp / "empty"
    empty.write_bytes(b"")
    r = request(d.tcp, path="/?path=%s" % empty)
    assert r.status == 200 and r.body == b""


def test_file_wrapper_over_a_file_that_cannot_be_read_says_so(wsgid, tmp):
    """The file behind wsgi.file_wrapper cannot be read (here: opened write-only, so sendfile
    fails with EBADF): the answer is cut, and one error line names the request and the cause.
    Before, only the access line's "cut" told (the failure was taken for the client's, at debug
    level; helper-56)."""
    path = tmp / "f.bin"
    path.write_bytes(b"0123456789")
    d = wsgid("filewrap")
    d.expect_log(r"cannot read the file given to wsgi.file_wrapper")
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/?path=%s&wronly=1" % path, {"Connection": "close"}))
        data = c.read_until_close()
    assert b"Content-Length: 10\r\n" in data and data.endswith(b"\r\n\r\n"), data
    line = d.wait_log(r"cannot read the file given to wsgi.file_wrapper")
    assert "[req " in line and "Bad file descriptor" in line, line
    assert request(d.tcp, path="/?path=%s" % path).body == b"0123456789"


def _deleted_fds(pid):
    """The worker's open unlinked files: its body temp files (and spill files, none here)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).endswith("(deleted)")
        except FileNotFoundError:
            pass
    return n


def _deleted_links(pid):
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except FileNotFoundError:
            pass
    return [x for x in out if x.endswith("(deleted)")]


def test_bodies_in_memory_within_body_memory_limit(wsgid):
    """A body up to body-buffer-size (1M unless told) stays in memory while the worker's
    body-memory-limit has room, so it never touches a temp file; a second big body in flight
    past the limit goes to one. Every body arrives whole. The metrics show the buffers held."""
    maddr = ("127.0.0.1", free_port())
    d = wsgid("echo", processes=1, threads=2, body_memory_limit="1M",
              top={"metrics": "%s:%d" % maddr})
    key = 'wsgid_body_memory_bytes{group="site"}'
    [pid] = d.workers()
    before = _deleted_fds(pid)
    body = os.urandom(900000)
    r = requests.post("http://%s:%d/" % d.tcp, data=body, timeout=30)
    assert r.status_code == 200 and r.content == body
    # A file made for it would still be open: the worker keeps emptied ones for half a second.
    assert _deleted_fds(pid) == before, "a 900 KB body went to a temp file"
    # Its buffer goes back to the budget when the loop learns that the response is done: for a
    # keep-alive response that went out whole, within 8 ms (WD_HANDOFF_LAZY_MAX_MS), or later on
    # a machine this busy. Until then the next two bodies would find it taken.
    wait_for(lambda: samples(metrics(maddr))[key] == 0, timeout=5,
             what="the first body's buffer given back")

    head = http_request("POST", "/", {"Content-Length": str(len(body))})
    conns = [Conn(d.tcp, timeout=30), Conn(d.tcp, timeout=30)]
    try:
        for c in conns:  # both bodies in flight, 800 KB of each read
            c.send(head + body[:800000])
        deadline = time.monotonic() + 5
        while _deleted_fds(pid) < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _deleted_fds(pid) == before + 1, (
            "two 800 KB bodies in flight with body-memory-limit 1M: %d temp files, not 1 (%s)"
            % (_deleted_fds(pid) - before, _deleted_links(pid)))
        # The one in memory holds a buffer of its announced length; the other, its file.
        assert samples(metrics(maddr))[key] == len(body)
        for c in conns:
            c.send(body[800000:])
        for c in conns:
            r = c.response()
            assert r.status == 200 and r.body == body
        wait_for(lambda: samples(metrics(maddr))[key] == 0, timeout=5,
                 what="the body buffer given back")
    finally:
        for c in conns:
            c.close()


def _input_ops(ops, body):
    """What io.BytesIO gives for the calls of apps/inputops.py."""
    f, out = io.BytesIO(body), []
    for op in ops.split(","):
        name, _, arg = op.partition(":")
        args = () if arg == "" else (None,) if arg == "none" else (int(arg),)
        if name == "iter":
            out.append([[len(x), _sha(x)] for x in f])
        elif name == "readlines":
            out.append([[len(x), _sha(x)] for x in f.readlines(*args)])
        else:
            x = getattr(f, name)(*args)
            out.append([len(x), _sha(x)])
    return out


@pytest.mark.parametrize("where", ["memory", "file"])
def test_wsgi_input_calls_as_bytesio_gives_them(wsgid, where):
    """read, readline and readlines with every kind of size, and iteration, against io.BytesIO on
    the same bodies, in memory and in the body's temp file (body-buffer-size 64K): short lines,
    lines across the file's read windows, and a 3 MiB line without a newline (readline() grew
    its answer by each window's bytes: 7,300 reallocations under the GIL for 60 MB)."""
    d = wsgid("inputops", threads=2, body_buffer_size="64K" if where == "file" else "16M",
              limit_request_body="32M")
    rnd = random.Random(7)
    lines = b"".join(b"x" * rnd.choice([0, 1, 7, 100, 8191, 8192, 8193, 70000]) + b"\n"
                     for _ in range(60))
    bodies = [b"", b"no newline at all", lines, b"z" * (3 * MiB), lines + b"z" * (3 * MiB) + b"\n"
              + lines]
    sizes = ["", "none", "-1", "0", "1", "5", "8191", "8192", "8193", "70000"]
    for body in bodies:
        for round_ in range(3):
            ops = ",".join(rnd.choice(["readline:", "read:", "readline:", "readlines:"])
                           + rnd.choice(sizes) for _ in range(12)) + ",iter,read:"
            r = request(d.tcp, "POST", "/?" + ops, body=body)
            assert r.status == 200, r
            assert json.loads(r.body) == _input_ops(ops, body), (len(body), ops)
