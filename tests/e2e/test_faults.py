"""Faults (issue #5, item 4): workers killed or stopped under load, apps that take their worker
down, a full temp directory during a spill, the loss of every worker at once. The master must
survive all of it, replace what died, and lose nothing but the dead worker's own requests."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers.clients import (HELLO, Conn, Incomplete, assert_hello, http_request, parse_response,
                             request)
from helpers.nginx import uwsgi_location
from helpers.procs import wait_for

DEATH = r"(?i)killed by signal|exited with status|stopped \(SIGSTOP\?\)"


class Load:
    """Client threads sending requests in a loop (keep-alive off); records (t, status, pid)."""

    def __init__(self, addr, path="/slow?t=0.02", n=6):
        self.addr = addr
        self.path = path
        self.stop = threading.Event()
        self.results = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]

    def run(self):
        while not self.stop.is_set():
            try:
                r = request(self.addr, path=self.path, timeout=10)
                item = (time.monotonic(), r.status, r.header("X-Pid"))
            except (AssertionError, OSError) as e:
                item = (time.monotonic(), None, repr(e))
            with self.lock:
                self.results.append(item)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def failures(self):
        return [r for r in self.results if r[1] != 200]


def test_kill9_under_load_through_nginx(wsgid, nginx):
    threads = 4
    d = wsgid("faulty", processes=2, threads=threads)
    d.expect_log(DEATH)
    ng = nginx(uwsgi_location(d.unix))
    ng.expect_log("upstream prematurely closed", "reset by peer", "Broken pipe",
                  r"connect\(\) to unix")
    old = d.workers()
    with Load(ng.addr) as load:
        time.sleep(1.0)
        victim = old[0]
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        def replaced():
            # One look per poll: three calls could each see a different set of workers.
            w = d.workers()
            return w if len(w) == 2 and victim not in w else None
        new = wait_for(replaced, 5, interval=0.01, what="a replacement")
        d.seen_workers.update(new)
        (new_pid,) = set(new) - set(old)

        def served():
            with load.lock:
                return [t for t, s, pid in load.results if s == 200 and pid == str(new_pid)]
        first = wait_for(served, 5, interval=0.02, what="the replacement to serve")[0]
        time.sleep(1.0)
    lost = load.failures()
    # At most the victim's in-flight requests: its threads, plus what its loop had accepted.
    assert len(lost) <= 2 * threads, lost
    assert all(t >= t_kill - 0.05 for t, _, _ in lost), lost
    assert first - t_kill <= 1.0, "the replacement served %.2f s after the kill" % (
        first - t_kill)
    ok_after = [r for r in load.results if r[0] > first and r[1] == 200]
    assert len(ok_after) > 10
    assert_hello(d.tcp)


def test_sigstop_worker_is_detected_and_replaced(wsgid):
    d = wsgid("faulty", processes=2, threads=2)
    d.expect_log(DEATH)
    before = d.log_size()
    old = d.workers()
    victim = old[0]
    t0 = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    try:
        # Meanwhile the sibling serves.
        with Load(d.tcp, path="/", n=2) as load:
            line = d.wait_log(r"\(pid %d\) has been stopped" % victim, since=before, timeout=8)
        assert time.monotonic() - t0 < 6, "detected after %.1f s" % (time.monotonic() - t0)
        assert "killing it" in line
        new = wait_for(lambda: (len(d.workers()) == 2 and victim not in d.workers()
                                and d.workers()), 5, what="a replacement")
        d.seen_workers.update(new)
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass
    # Connections the stopped worker had accepted are lost; the sibling served the rest.
    assert sum(1 for r in load.results if r[1] == 200) > 10
    for _ in range(10):
        assert_hello(d.tcp)
    assert d.running()


@pytest.mark.parametrize("how", ["exit", "exit0", "segv"])
def test_app_kills_its_worker(wsgid, how):
    threads = 4
    d = wsgid("faulty", processes=2, threads=threads)
    d.expect_log(DEATH, r"(?i)segmentation|fatal python error")
    old = d.workers()
    with Load(d.tcp, path="/", n=3) as load:
        time.sleep(0.5)
        t0 = time.monotonic()
        with Conn(d.tcp) as c:
            c.send(http_request("GET", "/" + how, {"Connection": "close"}))
            data = c.read_until_close()
        # Its own request: closed without an answer (nothing sane can be sent).
        assert data == b"", data[:200]
        new = wait_for(lambda: (len(d.workers()) == 2 and set(d.workers()) != set(old)
                                and d.workers()), 5, what="a replacement")
        d.seen_workers.update(new)
        time.sleep(1.0)
    # Others were served: at most the dead worker's in-flight requests failed.
    lost = load.failures()
    assert len(lost) <= threads, lost
    assert sum(1 for r in load.results if r[1] == 200 and r[0] > t0) > 10
    for _ in range(10):
        assert_hello(d.tcp)
    # With the death, the master names the request that was running (and any other). Under the
    # sanitizer build, whose handler takes the SIGSEGV, the worker exits with status 1. An exit
    # with status 0 the master did not ask for is a death too (helper-63: said without its
    # request).
    death = {"exit": r"exited with status 1", "exit0": r"exited with status 0",
             "segv": r"(killed by signal 11 \(SIGSEGV\)|exited with status 1)"}[how]
    d.wait_log(r"group site worker \d+ \(pid \d+\) %s; running (.*, )?\[req \d+-\d+\] GET /%s "
               r"on wsgid-py\d+ for \d+\.\d{3} s" % (death, how))


@pytest.fixture
def tiny_tmpdir(tmp):
    path = tmp / "tiny"
    path.mkdir()
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)],
                        capture_output=True)
    mounted = rc.returncode == 0
    if not mounted:
        # Not root (or no mount): a directory on which creating files fails.
        os.chmod(path, 0o500)
    yield path
    if mounted:
        subprocess.run(["umount", "-l", str(path)])


def test_full_tmpdir_during_spill(wsgid, tiny_tmpdir, monkeypatch):
    """An 8 MiB answer to a client that reads slowly, with TMPDIR a 2 MiB tmpfs: its spill file
    fills, and the rest waits in memory for the client instead (64 KiB at a time): the answer
    arrives whole, and a warning says why the thread waited and what to do. Before, the answer
    was cut at the full disk."""
    monkeypatch.setenv("TMPDIR", str(tiny_tmpdir))
    d = wsgid("faulty", threads=2, response_buffer_size="64K")
    d.expect_log(r"cannot spill the response")
    before = d.log_size()
    size = 8 * 1024 * 1024
    with Conn(d.tcp, timeout=30, rcvbuf=4096) as c:
        c.send(http_request("GET", "/gen?size=%d" % size, {"Connection": "close"}))
        # Do not read yet: the response has to go to the spill file, which cannot hold it.
        line = d.wait_log(r"\[warn\].*cannot spill the response", since=before, timeout=15)
        data = c.read_until_close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    try:
        r, _ = parse_response(data)
    except Incomplete:
        raise AssertionError("%d bytes: the answer was cut" % len(data))
    assert r.body == b"g" * size
    assert re.search(r"\[req \S+\] GET /gen\S* .*in %s \((No space left on device|Permission "
                     r"denied)\).*free space there" % re.escape(str(tiny_tmpdir)), line), line
    # The next ones work, spills included when they fit.
    for _ in range(5):
        assert_hello(d.tcp)
    r = request(d.tcp, path="/gen?size=%d" % (512 * 1024))
    assert r.status == 200 and len(r.body) == 512 * 1024


def test_master_survives_losing_every_worker(wsgid):
    d = wsgid("faulty", processes=3, threads=2)
    d.expect_log(DEATH)
    for round in range(4):
        old = d.workers()
        assert len(old) == 3
        for p in old:
            os.kill(p, signal.SIGKILL)
        # Respawn backs off after repeated quick deaths (0, 1, 2, 4 s): allow for it.
        new = wait_for(lambda: (len(d.workers()) == 3 and not set(d.workers()) & set(old)
                                and d.workers()), 15, what="3 new workers (round %d)" % round)
        d.seen_workers.update(new)

        def hello():
            try:
                return request(d.tcp, timeout=2).body == HELLO
            except (AssertionError, OSError):
                return False
        wait_for(hello, 10, interval=0.1, what="a hello after round %d" % round)
        assert d.running()
    for _ in range(10):
        assert_hello(d.tcp)
