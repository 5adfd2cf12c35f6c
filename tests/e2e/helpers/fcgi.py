"""A FastCGI client for the tests, from the FastCGI 1.0 specification: records, name-value
pairs, and reading a response's STDOUT until END_REQUEST."""
import struct

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, DATA = range(1, 9)
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, AUTHORIZER = 1, 2
KEEP_CONN = 1
REQUEST_COMPLETE, CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE = range(4)


def record(rtype, rid, content=b"", padding=0):
    return (struct.pack(">BBHHBB", 1, rtype, rid, len(content), padding, 0) + content
            + b"\0" * padding)


def nv_length(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def pairs(params):
    out = b""
    for k, v in params.items():
        k, v = k.encode("latin-1"), v.encode("latin-1")
        out += nv_length(len(k)) + nv_length(len(v)) + k + v
    return out


def begin(rid=1, role=RESPONDER, keep=False):
    return record(BEGIN_REQUEST, rid, struct.pack(">HB5x", role, KEEP_CONN if keep else 0))


def request(params, body=b"", rid=1, keep=False):
    """The records of one request, as nginx's fastcgi_pass sends them."""
    p = pairs(params)
    out = begin(rid, keep=keep)
    for i in range(0, len(p), 65535):
        out += record(PARAMS, rid, p[i:i + 65535])
    out += record(PARAMS, rid)
    for i in range(0, len(body), 65535):
        out += record(STDIN, rid, body[i:i + 65535])
    return out + record(STDIN, rid)


def read_records(conn, until_end=True, count=None):
    """Records from a helpers.clients.Conn: [(type, id, content)] up to END_REQUEST (or EOF), or
    the first count records."""
    out = []
    while count is None or len(out) < count:
        while len(conn.buf) < 8:
            if not conn._fill():
                return out
        _, rtype, rid, clen, plen, _ = struct.unpack(">BBHHBB", conn.buf[:8])
        while len(conn.buf) < 8 + clen + plen:
            if not conn._fill():
                return out
        out.append((rtype, rid, bytes(conn.buf[8:8 + clen])))
        conn.buf = conn.buf[8 + clen + plen:]
        if rtype == END_REQUEST and until_end:
            return out
        if rtype in (GET_VALUES_RESULT, UNKNOWN_TYPE) and until_end:
            return out
    return out


def stdout_of(records):
    return b"".join(c for t, _, c in records if t == STDOUT)


def end_of(records):
    ends = [c for t, _, c in records if t == END_REQUEST]
    assert ends, records
    app_status, proto = struct.unpack(">IB3x", ends[-1])
    return app_status, proto


def parse_pairs(data):
    out, i = {}, 0
    while i < len(data):
        lens = []
        for _ in range(2):
            if data[i] < 128:
                lens.append(data[i])
                i += 1
            else:
                lens.append(struct.unpack(">I", data[i:i + 4])[0] & 0x7fffffff)
                i += 4
        k = data[i:i + lens[0]]
        v = data[i + lens[0]:i + lens[0] + lens[1]]
        out[k.decode()] = v.decode()
        i += lens[0] + lens[1]
    return out
