"""The send buffer of a unix socket that a large response fills (daemon/worker/out.h:
WD_OUT_SNDBUF): raised while more than the raised buffer holds is still to send, so that the proxy
reads it in fewer turns, and back at the socket's own size before the response ends, for the next
one on the connection. Seen from outside with `ss -xm` (tb: the socket's send buffer)."""
import os
import subprocess
import time

import pytest

from helpers.clients import Conn, big_body, http_request
from helpers.procs import wait_for

MiB = 1024 * 1024


def sysctl(name):
    with open("/proc/sys/net/core/" + name) as f:
        return int(f.read())


def server_sndbuf(client):
    """The send buffer of the server's end of the unix connection `client` (the end whose peer
    is the client's socket)."""
    ino = str(os.fstat(client.sock.fileno()).st_ino)
    out = subprocess.run(["ss", "-x", "-m", "-n", "-H"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 9 and f[6] == "*" and f[7] == ino and "tb" in line:
            return int(line.split(",tb", 1)[1].split(",", 1)[0])
    return None


def test_a_large_response_raises_the_unix_socket_buffer_and_puts_it_back(wsgid):
    most = 2 * min(MiB, sysctl("wmem_max"))
    own = sysctl("wmem_default")
    if most <= own:
        pytest.skip("net.core.wmem_max (%d) leaves no room to raise a socket's buffer (%d)"
                    % (sysctl("wmem_max"), own))
    d = wsgid("big", processes=1, threads=2)
    size = 8 * MiB
    with Conn(d.unix) as c:
        c.send(http_request(path="/big?size=%d" % size))
        # The client reads nothing yet: the socket fills, with far more to come.
        wait_for(lambda: server_sndbuf(c) == most, timeout=10,
                 what="the server's buffer raised to %d (ss: %s)" % (most, server_sndbuf(c)))
        r = c.response()
        assert r.status == 200 and r.body == big_body(size)
        # Put back before the end of the response (the rest fitted in its own size).
        assert server_sndbuf(c) == own
        # A small answer on the same connection leaves it as it is.
        c.send(http_request(path="/big?size=100000"))
        r = c.response()
        assert r.status == 200 and r.body == big_body(100000)
        assert server_sndbuf(c) == own


def test_no_room_in_response_memory_limit_no_raise(wsgid):
    """The growth comes out of response-memory-limit: a worker with 1M of it (taken by the
    response's own bytes) does not raise the buffer, and the answer still arrives whole."""
    own = sysctl("wmem_default")
    d = wsgid("big", processes=1, threads=2, response_memory_limit="1M")
    size = 8 * MiB
    with Conn(d.unix) as c:
        c.send(http_request(path="/big?size=%d" % size))
        time.sleep(1)  # the socket is full and the loop waits for the client to read
        seen = server_sndbuf(c)
        r = c.response()
        assert r.status == 200 and r.body == big_body(size)
        assert seen == own
