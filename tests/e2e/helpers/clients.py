"""Talking to wsgid (or nginx) with raw sockets: HTTP/1.x and uwsgi requests as bytes, a response
parser, a client connection with a read buffer, and one-shot helpers."""
import functools
import random
import socket
import struct
from pathlib import Path

HELLO = b"Hello, world!\n"
MiB = 1024 * 1024


@functools.lru_cache(maxsize=None)
def big_body(size=16 * MiB):
    """The bytes apps/big.py sends for ?size=SIZE (up to 16 MiB)."""
    data = random.Random(20261124).randbytes(16 * MiB)
    return data[:size]


def http_request(method="GET", path="/", headers=None, body=b"", host="localhost",
                 version="HTTP/1.1", content_length=True):
    """Bytes of one HTTP/1.x request; Content-Length is added for a body unless given."""
    lines = ["%s %s %s" % (method, path, version), "Host: %s" % host]
    names = set()
    for k, v in (headers or {}).items() if isinstance(headers, dict) else (headers or []):
        lines.append("%s: %s" % (k, v))
        names.add(k.lower())
    if body and content_length and "content-length" not in names \
            and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def uwsgi_packet(variables, body=b"", modifier1=0, modifier2=0):
    """A uwsgi request: 4-byte header, then the vars block, then the body."""
    data = b""
    for k, v in variables.items():
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        data += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return struct.pack("<BHB", modifier1, len(data), modifier2) + data + body


def uwsgi_request(method="GET", path="/", query="", headers=None, body=b"", **extra):
    """The vars nginx's uwsgi_params would send for such a request."""
    v = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": (headers or {}).get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "REQUEST_URI": path + ("?" + query if query else ""),
        "PATH_INFO": path,
        "DOCUMENT_ROOT": "/srv",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "SERVER_PORT": "80",
        "SERVER_NAME": "localhost",
        "HTTP_HOST": "localhost",
    }
    for k, val in (headers or {}).items():
        if k.lower() not in ("content-type", "content-length"):
            v["HTTP_" + k.upper().replace("-", "_")] = val
    v.update(extra)
    return uwsgi_packet(v, body)


class Response:
    def __init__(self, version, status, reason, headers, body, head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # [(name, value)] as received
        self.body = body
        self.head = head            # the raw head, up to and including the blank line

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def __repr__(self):
        return "<Response %d %r, %d body bytes>" % (self.status, self.head[:300], len(self.body))


class Incomplete(Exception):
    pass


def parse_response(buf, head_only=False, eof=False):
    """Parses one response at the start of buf. Returns (Response, bytes consumed); raises
    Incomplete when more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise Incomplete()
    head = buf[:end + 4]
    lines = head[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    status = int(code)
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    r = Response(version, status, reason, headers, b"", head)
    pos = end + 4
    te = (r.header("Transfer-Encoding") or "").lower()
    cl = r.header("Content-Length")
    if head_only or status < 200 or status in (204, 304):
        return r, pos
    if "chunked" in te:
        body = b""
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                raise Incomplete()
            size = int(buf[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                # Trailers (none expected) end with an empty line.
                tend = buf.find(b"\r\n", pos)
                while tend >= 0 and tend != pos:
                    pos = tend + 2
                    tend = buf.find(b"\r\n", pos)
                if tend < 0:
                    raise Incomplete()
                pos += 2
                break
            if len(buf) < pos + size + 2:
                raise Incomplete()
            body += buf[pos:pos + size]
            pos += size + 2
        r.body = body
        return r, pos
    if cl is not None:
        n = int(cl)
        if len(buf) < pos + n:
            raise Incomplete()
        r.body = buf[pos:pos + n]
        return r, pos + n
    if not eof:
        raise Incomplete()
    r.body = buf[pos:]
    return r, len(buf)


class Conn:
    """A client connection (TCP ("host", port) or unix path) with a read buffer."""

    def __init__(self, addr, timeout=10.0, rcvbuf=None, source=None):
        """source: the local address a TCP connection is made from ("127.0.0.2")."""
        if isinstance(addr, (str, Path)):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            addr = str(addr)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if source:
                self.sock.bind((source, 0))
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)
        return self

    def shut_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, n=65536):
        try:
            data = self.sock.recv(n)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.buf += data
        return data

    def response(self, head_only=False):
        """Reads exactly one response (keeps what follows it in the buffer)."""
        while True:
            try:
                r, used = parse_response(self.buf, head_only, self.eof)
                self.buf = self.buf[used:]
                return r
            except Incomplete:
                if self.eof:
                    raise AssertionError("connection closed in the middle of a response: %r"
                                         % self.buf[:500])
                self._fill()

    def read_until(self, marker):
        while marker not in self.buf:
            if self.eof or not self._fill():
                raise AssertionError("closed before %r; got %r" % (marker, self.buf[:500]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_until_close(self):
        """Everything up to the peer's close. The chunks are joined once at the end: appending
        each to the buffer copied all of it again (quadratic), and a client with a 4 KiB receive
        buffer took 10-30 s of CPU for an 8 MiB answer on a loaded machine, long enough for the
        connections it had not read yet to reach the worker's send-timeout (60 s) and be cut
        (test_exhaustion: "an answer of 2987936 bytes, not the 8388608 sent")."""
        chunks = [self.buf]
        self.buf = b""
        while not self.eof:
            chunks.append(self._fill())
            self.buf = b""
        return b"".join(chunks)

    def closed(self, timeout=5.0):
        """True if the peer closes (after whatever is buffered) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while not self.eof:
                self._fill()
            return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def request(addr, method="GET", path="/", headers=None, body=b"", timeout=10.0, **kw):
    """One HTTP/1.1 request with Connection: close over a new connection; returns Response."""
    h = {"Connection": "close"}
    h.update(headers or {})
    with Conn(addr, timeout) as c:
        c.send(http_request(method, path, h, body, **kw))
        return c.response(head_only=(method == "HEAD"))


def uwsgi_call(addr, timeout=10.0, **kw):
    """One uwsgi request; the answer is raw HTTP ending with the close."""
    with Conn(addr, timeout) as c:
        c.send(uwsgi_request(**kw))
        data = c.read_until_close()
    r, _ = parse_response(data, eof=True)
    return r


def raw(addr, data, timeout=10.0, shut_wr=False):
    """Sends bytes, returns everything received until the peer closes (AssertionError if it does
    not close within timeout)."""
    with Conn(addr, timeout) as c:
        c.send(data)
        if shut_wr:
            c.shut_wr()
        try:
            return c.read_until_close()
        except (socket.timeout, TimeoutError):
            raise AssertionError("no close within %.1fs; received %r" % (timeout, c.buf[:500]))


def recv_all(sock):
    """Everything a plain socket receives until the peer closes."""
    got = b""
    while True:
        b = sock.recv(65536)
        if not b:
            return got
        got += b


def assert_hello(addr, timeout=10.0):
    r = request(addr, timeout=timeout)
    assert r.status == 200, r
    assert r.body == HELLO, r
    return r
