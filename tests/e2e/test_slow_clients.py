"""THE KEY TEST: slow clients hold no Python thread.

A group with 4 threads in 1 process; 16 clients ask for a 16 MiB answer and read it very slowly
(small receive buffer, 16 KiB every 50 ms). While all of them are still reading, a fast hello
must be answered within 2 s: the threads handed their answers to the loop and went back to
work. Then the slow clients speed up and every download must arrive intact."""
import hashlib
import socket
import threading
import time

import pytest

from helpers.clients import HELLO, MiB, big_body, http_request, parse_response, request
from helpers.nginx import uwsgi_location

N_CLIENTS = 16
SIZE = 16 * MiB


class SlowClient(threading.Thread):
    def __init__(self, addr, path, host="localhost"):
        super().__init__(daemon=True)
        self.addr = addr
        self.path = path
        self.host = host
        self.fast = threading.Event()
        self.stop = threading.Event()
        self.got_head = threading.Event()
        self.received = 0
        self.data = bytearray()
        self.error = None
        self.done = False

    def run(self):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(60)
            s.connect(self.addr)
            s.sendall(http_request("GET", self.path, {"Connection": "close"}, host=self.host))
            while not self.stop.is_set():
                chunk = s.recv(16384 if not self.fast.is_set() else 1 << 20)
                if not chunk:
                    self.done = True
                    break
                self.data += chunk
                self.received += len(chunk)
                if b"\r\n\r\n" in self.data[:4096]:
                    self.got_head.set()
                if not self.fast.is_set():
                    time.sleep(0.05)
            s.close()
        except Exception as e:  # reported by the test
            self.error = e


def _slow_load_then_hello(slow_addr, fast_addr, slow_path, host="localhost"):
    clients = [SlowClient(slow_addr, slow_path, host) for _ in range(N_CLIENTS)]
    try:
        for c in clients:
            c.start()
        # Every client gets its head: 16 requests went through 4 threads, so no thread is
        # held by a slow reader.
        deadline = time.monotonic() + 15
        for c in clients:
            assert c.got_head.wait(max(0.1, deadline - time.monotonic())), \
                "a slow client never got its head (%d/%d did): slow readers hold threads or " \
                "accept capacity" % (
                    sum(x.got_head.is_set() for x in clients), N_CLIENTS)
        time.sleep(0.5)
        assert all(not c.done for c in clients), "the slow clients finished too fast to test"
        assert all(c.error is None for c in clients), [c.error for c in clients]
        t0 = time.monotonic()
        try:
            r = request(fast_addr, timeout=5, host=host)
        except (socket.timeout, TimeoutError, AssertionError) as e:
            raise AssertionError(
                "a hello got no answer within 5s while %d clients read slowly: slow readers "
                "hold threads, or count against the worker's accept capacity (%r)"
                % (N_CLIENTS, e))
        elapsed = time.monotonic() - t0
        assert r.status == 200 and r.body == HELLO
        assert elapsed < 2.0, "hello took %.2fs while slow clients were reading" % elapsed
        assert all(not c.done for c in clients), "slow clients must still be reading"
        # Now let them read at full speed: every download must complete intact.
        for c in clients:
            c.fast.set()
        want = hashlib.sha256(big_body(SIZE)).hexdigest()
        for c in clients:
            c.join(60)
            assert not c.is_alive(), "a download did not finish"
            assert c.error is None, c.error
            assert c.done
            resp, _ = parse_response(bytes(c.data), eof=True)
            assert resp.status == 200
            assert len(resp.body) == SIZE
            assert hashlib.sha256(resp.body).hexdigest() == want
    finally:
        for c in clients:
            c.stop.set()
            c.fast.set()


@pytest.mark.parametrize("path", ["/big", "/gen"])
def test_slow_clients_direct(wsgid, path):
    # Two groups would test something else; one group serves both the slow and the fast
    # requests, so the hello competes for the same 4 threads.
    d = wsgid("slowclients", threads=4, processes=1)
    _slow_load_then_hello(d.tcp, d.tcp, path + "?size=%d" % SIZE)


def test_slow_clients_through_nginx(wsgid, nginx, path="/big"):
    d = wsgid("slowclients", threads=4, processes=1)
    ng = nginx(uwsgi_location(d.unix, "uwsgi_buffering off;"))
    ng.expect_log(r"client closed|prematurely")
    _slow_load_then_hello(ng.addr, ng.addr, path + "?size=%d" % SIZE)

