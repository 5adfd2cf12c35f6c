"""Exhaustion (issue #11, points 1 and 3): a worker out of file descriptors backs off instead of
spinning and flooding the log; max-connections bounds a worker's connections, idle keep-alive
ones giving way first; a request head cannot make a worker reserve memory for a body it has not
sent."""
import os
import re
import resource
import signal
import socket
import time

import pytest

from helpers import fcgi
from helpers.clients import HELLO, Conn, assert_hello, http_request, request
from helpers.daemon import WSGID_BIN
from helpers.procs import free_port, wait_for
from test_metrics import metrics, samples


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_kib(pid, what):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(what + ":"):
            return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (what, pid))


def keepalive_hello(c):
    c.send(http_request("GET", "/", {}))
    r = c.response()
    assert r.status == 200, r
    return r


def flood(addr, n):
    """n TCP connections that send nothing; those the backlog cannot take are skipped."""
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(addr)
            out.append(s)
        except OSError:
            s.close()
    return out


def test_out_of_fds_backs_off(wsgid):
    """ulimit -n 64 on the worker, 200 connections that send nothing: before, the worker spun at
    100 % CPU and wrote a line per loop turn (1.2 million in 3 s). The one idle keep-alive
    connection gives way to them first (test_out_of_fds_an_idle_keepalive_connection_gives_way);
    then the worker pauses accepting."""
    d = wsgid("hello", processes=1, threads=2)
    d.expect_log(r"cannot accept: Too many open files")
    [pid] = d.workers()
    ka = Conn(d.tcp)
    keepalive_hello(ka)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (64, 64))
    lines0 = len(d.log().splitlines())
    idle = flood(d.tcp, 200)
    assert len(idle) >= 100, "only %d connections got through" % len(idle)
    time.sleep(0.5)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(3)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    assert ka.closed(timeout=1), "the idle keep-alive connection did not make room"
    lines = d.log().splitlines()[lines0:]
    print("worker CPU %.1f %% over 3 s, %d log lines:\n%s" % (cpu * 100, len(lines),
                                                              "\n".join(lines[:5])))
    assert any("cannot accept: Too many open files" in ln for ln in lines), lines[:20]
    assert cpu < 0.10, "the worker used %.0f %% CPU while out of fds" % (cpu * 100)
    assert len(lines) < 20, "%d log lines while out of fds:\n%s" % (len(lines),
                                                                   "\n".join(lines[:30]))
    for s in idle:
        s.close()
    # Once the flood is gone, new connections are served again (the pause is at most 1 s).
    wait_for(lambda: request(d.tcp, timeout=2).status == 200, 10, what="a new connection served")
    ka.close()


def test_out_of_fds_an_idle_keepalive_connection_gives_way(wsgid):
    """ulimit -n 64 on the worker, whose max-connections (from the limit it started with) is far
    above: 80 keep-alive connections opened one after the other, each asking once and then
    idle. Out of descriptors, the oldest idle one is closed to take the new one, as at
    max-connections; before, the 50th or so waited until keepalive-timeout (75 s) freed one."""
    d = wsgid("hello", processes=1, threads=2)
    d.expect_log(r"cannot accept: Too many open files")
    [pid] = d.workers()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (64, 64))
    kept = []
    for i in range(80):
        c = Conn(d.tcp, timeout=3)
        try:
            keepalive_hello(c)
        except (socket.timeout, TimeoutError):
            raise AssertionError("keep-alive connection %d got no answer in 3 s (%d open "
                                 "before it)" % (i + 1, len(kept)))
        kept.append(c)
    assert kept[0].closed(timeout=2), "the oldest idle keep-alive connection is still open"
    keepalive_hello(kept[-1])   # the newest is served on
    line = d.wait_log(r"cannot accept: Too many open files")
    assert "listener %s:%d: " % d.tcp in line, line   # named as the config writes it
    m = re.search(r"(\d+) idle keep-alive connections closed to make room", line)
    assert m and int(m.group(1)) >= 1, line
    for c in kept:
        c.close()


def test_temp_files_failing_say_so_a_few_times_a_second(wsgid, tmp, monkeypatch):
    """The worker's TMPDIR gone after its start: 60 POSTs with bodies past body-buffer-size in
    1.5 s are each answered 500, and the worker says why a few times a second, not once a
    request (helper-54, out of descriptors or disk: 112 such lines in 3 s, 38 a second)."""
    gone = tmp / "gone"
    gone.mkdir()
    monkeypatch.setenv("TMPDIR", str(gone))
    d = wsgid("echo", processes=1, threads=2, body_buffer_size="1K")
    d.expect_log(r"cannot create a temp file|suppressed|more like")
    gone.rmdir()
    statuses = []
    t0 = time.monotonic()
    for i in range(60):
        r = request(d.tcp, method="POST", path="/", body=b"b" * 4096, timeout=5)
        statuses.append(r.status)
        time.sleep(max(0, t0 + 0.025 * (i + 1) - time.monotonic()))
    took = time.monotonic() - t0
    lines = [ln for ln in d.log().splitlines() if "cannot create a temp file" in ln]
    # 5 a second of the clock: a run of `took` seconds touches int(took) + 2 of them at most.
    most = 5 * (int(took) + 2)
    print("%s, %d log lines in %.1f s (at most %d)" % (sorted(set(statuses)), len(lines), took,
                                                        most))
    assert statuses.count(500) >= 55, statuses
    assert 1 <= len(lines) <= most < 60, "\n".join(lines)


def test_a_worker_says_when_its_fd_limit_leaves_no_room(wsgid):
    """A worker whose threads and listeners take most of its open-file limit (here 30 threads,
    each with an eventfd: 47 descriptors held, measured at debug level, under ulimit -n 64,
    which the master passes on to the worker it respawns) says so when it starts, naming the
    limit and what to do; before, it started without a word (with 200 threads under 128 it
    accepted nothing, and said "ready")."""
    d = wsgid("hello", processes=1, threads=30)
    d.expect_log(r"(?i)signal|kill|exit|died|respawn|crash", r"open-file limit")
    [old] = d.workers()
    assert "open-file limit" not in d.log()
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (64, 64))
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: [p for p in d.workers() if p != old], 10, what="a new worker")
    d.seen_workers.update(new)
    line = d.wait_log(r"the open-file limit 64 leaves \d+ file descriptors for connections")
    assert "raise the limit" in line and "lower threads" in line, line
    assert_hello(d.tcp, timeout=5)   # a few descriptors are left: it serves


def test_max_connections_idle_keepalive_first(wsgid):
    d = wsgid("hello", processes=1, threads=2, max_connections=4)
    kept = [Conn(d.tcp) for _ in range(4)]
    for c in kept:
        keepalive_hello(c)
    # At the limit with four idle keep-alive connections: a new one closes the oldest.
    assert_hello(d.tcp, timeout=5)
    assert kept[0].closed(timeout=2), "the oldest idle keep-alive connection was not closed"
    for c in kept[1:]:
        keepalive_hello(c)  # the others are still open
    for c in kept:
        c.close()
    # Four connections that are not idle keep-alive ones (a request head on its way): a fifth
    # waits in the backlog until one of them closes.
    busy = flood(d.tcp, 4)
    time.sleep(0.3)
    waiting = Conn(d.tcp, timeout=1.0)
    waiting.send(http_request("GET", "/", {"Connection": "close"}))
    try:
        r = waiting.response()
        raise AssertionError("a fifth connection was served past max-connections 4: %r" % r)
    except (socket.timeout, TimeoutError):
        pass
    busy[0].close()
    waiting.sock.settimeout(5)
    r = waiting.response()
    assert r.status == 200, r
    waiting.close()
    for s in busy[1:]:
        s.close()


def test_content_length_reserves_no_memory(wsgid):
    """body-buffer-size at its maximum (64M): 30 request heads announcing 60 MB bodies, no body.
    Before, each head made the worker allocate the whole body buffer at once (30 x 60 MB)."""
    d = wsgid("echo", processes=1, threads=2, body_buffer_size="64M", limit_request_body="100M")
    [pid] = d.workers()
    before = vm_kib(pid, "VmSize")
    conns = []
    for _ in range(30):
        c = Conn(d.tcp)
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n" + b"x" * 1000)
        conns.append(c)
    time.sleep(0.5)
    grew = (vm_kib(pid, "VmSize") - before) / 1024
    for c in conns:
        c.close()
    print("VmSize grew by %.0f MiB" % grew)
    assert grew < 200, "30 heads made the worker reserve %.0f MiB" % grew
    assert_hello_echo = request(d.tcp, "POST", "/", body=b"abc")
    assert assert_hello_echo.status == 200 and assert_hello_echo.body == b"abc", assert_hello_echo


def spill_blocks(pid):
    """Bytes allocated to the worker's spill files (unlinked temp files named wsgid-spill-*, or
    O_TMPFILE ones: any deleted regular file the worker holds)."""
    total = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if "(deleted)" not in target:
                continue
            st = os.stat("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        total += st.st_blocks * 512
    return total


def test_spill_file_follows_pending_bytes(wsgid):
    """response-spill-limit 8M, 100 MiB streamed in 64 KiB chunks to a steady reader: before,
    the spill file grew with the whole response (152 MiB for 200 MiB)."""
    limit = 8 << 20
    size = 100 << 20
    d = wsgid("big", processes=1, threads=2, response_buffer_size="1M",
              response_spill_limit="8M")
    [pid] = d.workers()
    c = Conn(d.tcp, timeout=30, rcvbuf=262144)
    c.send(http_request("GET", "/gen?size=%d" % size, {"Connection": "close"}))
    most = 0
    got = 0
    t0 = time.monotonic()
    while True:
        data = c.sock.recv(1 << 20)
        if not data:
            break
        got += len(data)
        most = max(most, spill_blocks(pid))
        time.sleep(0.005)
    c.close()
    took = time.monotonic() - t0
    print("%.0f MiB in %.1f s, spill file at most %.1f MiB" % (got / 2**20, took, most / 2**20))
    assert got > size, got
    assert most < 2 * limit, "the spill file took %.0f MiB of disk with a limit of %d MiB" % (
        most / 2**20, limit >> 20)


@pytest.mark.parametrize("path", ["/gen", "/big"])
def test_spill_files_share_a_disk_budget(wsgid, path):
    """response-disk-limit bounds what a worker's responses hold in temp files together: 6
    clients that read nothing of their 8 MiB answers, streamed in 64 KiB chunks (/gen) or one
    bytes object (/big), past a 1 MiB memory budget. Without it (before), their spill files took
    30 MiB in 3 s, and grew; with 4M, the gauge and the blocks the worker's deleted files hold
    stay under the limit and 64 KiB a response, the two threads the slow readers leave still
    serve, and every client gets its whole answer once it reads. The one-object answers went over
    whole until the budget took them 64 KiB at a time (WD_OUT_DISK_PIECE): 48.00 MiB."""
    maddr = ("127.0.0.1", free_port())
    limit, size, n = 4 << 20, 8 << 20, 6
    d = wsgid("big", processes=1, threads=8, response_buffer_size="64K",
              response_memory_limit="1M", response_disk_limit="4M",
              top={"metrics": "%s:%d" % maddr})
    [pid] = d.workers()
    whole = request(d.tcp, path="/big?size=%d" % size, timeout=30)
    assert whole.status == 200 and len(whole.body) == size, whole.status
    key = 'wsgid_response_disk_bytes{group="site"}'
    conns = []
    for _ in range(n):
        c = Conn(d.tcp, timeout=30, rcvbuf=4096)
        c.send(http_request("GET", "%s?size=%d" % (path, size), version="HTTP/1.0"))
        conns.append(c)
    gauge = blocks = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.1)
        gauge = max(gauge, samples(metrics(maddr))[key])
        blocks = max(blocks, spill_blocks(pid))
    t0 = time.monotonic()
    r = request(d.tcp, path="/big?size=10")
    served_in = time.monotonic() - t0
    bound = limit + n * 65536
    print("spill files at most %.2f MiB by the gauge, %.2f MiB of blocks (bound %.2f MiB); "
          "a request beside them served in %.3f s" % (gauge / 2**20, blocks / 2**20,
                                                     bound / 2**20, served_in))
    assert r.status == 200 and r.body == whole.body[:10], r
    for c in conns:
        got = c.read_until_close()
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200"), head[:200]
        assert body == whole.body, "an answer of %d bytes, not the %d sent" % (len(body), size)
        c.close()
    assert limit / 2 < gauge <= bound, "the spill files held %.2f MiB" % (gauge / 2**20)
    assert blocks <= bound + n * 4096, "the spill files took %.2f MiB of disk" % (blocks / 2**20)
    wait_for(lambda: samples(metrics(maddr))[key] == 0, timeout=5,
             what="the disk gauge back to 0 once the answers were read")


def test_request_bodies_share_a_disk_budget(wsgid):
    """body-disk-limit bounds what a worker's request bodies hold in temp files together: 12
    clients that each send 200 KB of a 300 KB body (past body-buffer-size: a file each) and hold,
    with body-disk-limit 1M. The first five fit; the others are answered 503 at once, their files
    never made; the gauge stays under the limit; a small body is served meanwhile; and once the
    holders leave, a big body goes through. Before, every held body took its file (helper-54: 200
    such took 200 MiB of TMPDIR), and a TMPDIR filled cut others' answers."""
    maddr = ("127.0.0.1", free_port())
    d = wsgid("echo", processes=1, threads=2, body_buffer_size="64K", body_disk_limit="1M",
              top={"metrics": "%s:%d" % maddr})
    d.expect_log(r"body-disk-limit")
    key = 'wsgid_body_disk_bytes{group="site"}'
    held, refused = [], 0
    for _ in range(12):
        c = Conn(d.tcp, timeout=10)
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n" + b"b" * 200000)
        if c.closed(timeout=0.3):
            refused += 1
            assert c.buf.startswith(b"HTTP/1.1 503 "), c.buf[:100]
            c.close()
        else:
            held.append(c)
    gauge = samples(metrics(maddr))[key]
    print("%d held, %d refused, %.2f MiB of bodies in temp files" % (len(held), refused,
                                                                     gauge / 2**20))
    assert len(held) == 5 and refused == 7, (len(held), refused)
    assert 5 * 200000 <= gauge <= 1 << 20, gauge
    r = request(d.tcp, "POST", "/", body=b"small")
    assert r.status == 200 and r.body == b"small"
    for c in held:
        c.close()
    wait_for(lambda: samples(metrics(maddr))[key] == 0, timeout=5,
             what="the body gauge back to 0 once the holders left")
    body = os.urandom(900000)
    r = request(d.tcp, "POST", "/", body=body, timeout=30)
    assert r.status == 200 and r.body == body, r.status


def test_waiting_for_a_slow_client_is_not_request_timeout(wsgid):
    """A thread that waits for its client to take the response (here, the worker's disk budget
    spent) is the client's time, not the app's: with request-timeout 2 s, 3 clients that read
    nothing of 8 MiB streamed answers for 5 s still get them whole, from the same worker. Before,
    the threads counted as stuck: interrupted (which they cannot be in that wait), then their
    connections shut at request-timeout + shutdown-timeout (2.99 MB each) and the worker
    replaced."""
    size, n = 8 << 20, 3
    d = wsgid("big", processes=1, threads=8, response_buffer_size="64K",
              response_memory_limit="1M", response_disk_limit="4M", request_timeout=2,
              shutdown_timeout=1)
    [pid] = d.workers()
    conns = []
    for _ in range(n):
        c = Conn(d.tcp, timeout=30, rcvbuf=4096)
        c.send(http_request("GET", "/gen?size=%d" % size, version="HTTP/1.0"))
        conns.append(c)
    time.sleep(5)
    got = []
    for c in conns:
        head, _, body = c.read_until_close().partition(b"\r\n\r\n")
        got.append(len(body))
        c.close()
    assert got == [size] * n, got
    assert d.workers() == [pid], "the worker was replaced: %r" % d.workers()


def test_send_timeout_frees_a_thread_waiting_for_its_client(wsgid):
    """What bounds that wait is send-timeout: both threads wait at the disk budget for clients
    that read nothing; at send-timeout (2 s) those clients are dropped, their threads go back to
    work and serve the request queued behind them, and nothing interrupts them at request-timeout
    (1 s). Their access lines say the answers were cut."""
    size = 8 << 20
    d = wsgid("big", processes=1, threads=2, response_buffer_size="64K",
              response_memory_limit="1M", response_disk_limit="1M", send_timeout=2,
              request_timeout=1, top={"log": {"level": "info", "file": "-", "access": "-"}})
    [pid] = d.workers()
    slow = []
    # Timed from the slow requests, not from the queued one: the worker's wait for their clients
    # starts after they are sent, so that they are dropped 2 s after this at the earliest. The
    # test held up on a loaded machine sent the queued request later than 0.5 s after them and
    # found it answered sooner than 1 s (CI; 1.17 s with 6 CPU hogs).
    sent = time.monotonic()
    for _ in range(2):
        c = Conn(d.tcp, timeout=30, rcvbuf=4096)
        c.send(http_request("GET", "/gen?size=%d" % size, version="HTTP/1.0"))
        slow.append(c)
    time.sleep(0.5)  # their threads take them and wait at the budget
    queued = time.monotonic() - sent
    r = request(d.tcp, path="/big?size=10", timeout=20)
    took = time.monotonic() - sent
    print("served %.2f s after the slow requests, behind two threads waiting for their clients"
          % took)
    assert r.status == 200, r
    assert queued < 1.9, "sent %.2f s after the slow requests: not behind them" % queued
    assert 1.95 < took < 6.5, "the request queued behind them was served %.2f s after them" % took
    cut = r'"GET /gen\?size=%d HTTP/1.0" 200 \d+ .* cut$' % size
    wait_for(lambda: len(re.findall(cut, d.log(), re.M)) == 2, timeout=15,
             what="both slow answers logged as cut")
    assert len(re.findall(r"read nothing for 2 s \(send-timeout\)", d.log())) == 2
    assert "over request-timeout" not in d.log()
    assert d.workers() == [pid]
    for c in slow:
        c.close()


def rss_mib(pid):
    return vm_kib(pid, "VmRSS") / 1024


def rss_checked():
    """Whether a test's RSS bound holds for the binary under test: not under the sanitizer build,
    whose allocator keeps freed memory in quarantine (printed, so that the skip is seen)."""
    if "asan" in str(WSGID_BIN):
        print("RSS not checked: sanitizer build (%s), whose allocator keeps freed memory"
              % WSGID_BIN)
        return False
    return True


def test_slow_readers_share_a_memory_budget(wsgid):
    """200 clients that read nothing of their 4 MiB answers, streamed in 64 KiB chunks (issue #11,
    point 5): before, each finished response kept up to response-buffer-size (1 MiB) and a chunk
    in memory, 200 MiB in all. With response-memory-limit (64M by default) the worker's gauge stays
    under the limit + 64 KiB per response, and its RSS under the README's bound: its RSS at start
    + 64 MiB + 64 KiB per response + 40 MiB (not under the sanitizer build, whose allocator keeps
    freed memory in quarantine)."""
    maddr = ("127.0.0.1", free_port())
    d = wsgid("big", processes=1, threads=4, top={"metrics": "%s:%d" % maddr})
    [pid] = d.workers()
    assert request(d.tcp, path="/big?size=4194304").status == 200  # warm: the app's data loaded
    base = rss_mib(pid)
    conns = []
    for _ in range(200):
        c = Conn(d.tcp, timeout=30, rcvbuf=4096)
        c.send(http_request("GET", "/gen?size=4194304", {"Connection": "close"}))
        conns.append(c)
    most = gauge = 0
    key = 'wsgid_response_memory_bytes{group="site"}'
    # 2 s at least, and until the responses filled more than half the budget (a sanitizer build
    # under parallel tests may take longer to get there), 15 s at most.
    deadline = time.monotonic() + 15
    start = time.monotonic()
    while time.monotonic() < deadline and (time.monotonic() - start < 2 or gauge <= 32):
        time.sleep(0.1)
        most = max(most, rss_mib(pid))
        gauge = max(gauge, samples(metrics(maddr))[key] / 2**20)
    bound = base + 64 + 200 * 64 / 1024 + 40
    print("RSS at start %.0f MiB, at most %.0f MiB with 200 slow readers (bound %.0f); "
          "response memory at most %.1f MiB" % (base, most, bound, gauge))
    for c in conns[:3]:
        got = c.read_until_close()
        assert len(got) > 4194304, len(got)
    for c in conns:
        c.close()
    assert 32 < gauge <= 64 + 200 * 64 / 1024, "response memory gauge %.1f MiB" % gauge
    if rss_checked():
        assert most < bound, "RSS reached %.0f MiB (bound %.0f)" % (most, bound)


def test_one_object_yielded_again_waits_for_a_slow_client(wsgid):
    """An app that yields one 256 KiB bytes object again and again (1 TiB in all, with its
    Content-Length) to a client that reads nothing: the thread waits at response-spill-limit
    (4M here), as for any other answer, having yielded 16 pieces and those the sockets took.
    Before, the pieces were lent and charged nothing: the thread never waited, yielded 8.7
    million pieces in 2 s (2 TiB), and the worker grew by 0.45 GiB a second at a whole CPU
    (helper-60)."""
    d = wsgid("big", processes=1, threads=2, response_spill_limit="4M",
              response_memory_limit="16M")
    [pid] = d.workers()
    base, cpu = rss_mib(pid), cpu_seconds(pid)
    c = Conn(d.tcp, timeout=30, rcvbuf=4096)
    c.send(http_request("GET", "/same?count=4194304"))
    time.sleep(2)
    yielded = int(request(d.tcp, path="/yielded").body)
    grew, spent = rss_mib(pid) - base, cpu_seconds(pid) - cpu
    print("in 2 s with a client that reads nothing: %d pieces yielded, RSS %+.0f MiB, %.2f s of "
          "CPU" % (yielded, grew, spent))
    # 16 pending, and what the sockets' buffers took (TCP's grow to a few MiB on loopback).
    assert yielded <= 16 + 24, "%d pieces of 256 KiB yielded" % yielded
    assert spent < 0.5, "the worker spent %.2f s of CPU in 2 s" % spent
    if rss_checked():
        assert grew < 40, "the worker grew by %.0f MiB" % grew
    c.close()


def test_worker_gives_back_large_blocks_when_idle(wsgid):
    """Large blocks (the bytes a 2 MiB body is read into, the copy of the answer) are kept for
    reuse between requests (daemon/worker/bigblock.h), and must go back to the kernel once the
    worker is idle, or its RSS would stay at its busiest. 4 threads echo 2 MiB bodies four at a
    time, 24 in all; within 5 s of the last the worker's RSS is back within 2 MiB of where it was.
    With the idle trim taken out it stayed 6.4 and 4.4 MiB up (two runs); with it, 0.4."""
    import concurrent.futures

    d = wsgid("echo", processes=1, threads=4)
    [pid] = d.workers()
    body = os.urandom(2 << 20)
    assert request(d.tcp, "POST", "/", body=b"warm").status == 200
    time.sleep(0.6)
    base = rss_mib(pid)

    def echo(_):
        r = request(d.tcp, "POST", "/", body=body, timeout=30)
        assert r.status == 200 and r.body == body, r.status
        return 1

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        assert sum(ex.map(echo, range(24))) == 24
    after = now = rss_mib(pid)
    deadline = time.monotonic() + 5
    while now >= base + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = rss_mib(pid)
    print("RSS %.1f MiB before, %.1f right after 24 x 2 MiB echoes, %.1f once idle" % (
        base, after, now))
    if rss_checked():
        assert now < base + 2, "RSS %.1f MiB 5 s after the bodies (%.1f before)" % (now, base)


def test_connections_that_close_together_give_their_memory_back(wsgid):
    """1,000 connections that each hold 60,000 bytes of a body (under body-buffer-size, in
    memory), then close together: within 6 s of the close the worker's RSS is back within 12 MiB
    of where it was. Only the buffers of connections idle between requests counted toward the
    worker's malloc_trim; these stayed in malloc's heaps (helper-54, 2,000 such: 89.1 MiB for
    good, against 15.6 before; 19.5 with them counted). Here: 51.5 MiB up, for good, before."""
    d = wsgid("echo", processes=1, threads=2)
    [pid] = d.workers()
    assert request(d.tcp, "POST", "/", body=b"warm").status == 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1300), hard))
    time.sleep(0.6)
    base = rss_mib(pid)
    held = []
    for _ in range(1000):
        c = Conn(d.tcp, timeout=10)
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 61000\r\n\r\n" + b"b" * 60000)
        held.append(c)
    time.sleep(1)
    most = rss_mib(pid)
    for c in held:
        c.close()
    now = rss_mib(pid)
    deadline = time.monotonic() + 6
    while now >= base + 12 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = rss_mib(pid)
    print("RSS %.1f MiB before, %.1f with 1,000 bodies held, %.1f after they closed"
          % (base, most, now))
    assert most > base + 30, "the bodies were not held in memory (%.1f MiB)" % most
    if rss_checked():
        assert now < base + 12, "RSS %.1f MiB 6 s after the close (%.1f before)" % (now, base)


def test_a_big_block_cut_down_and_kept_gives_its_pages_back(wsgid):
    """A block of Python's raw allocator that the worker made (daemon/worker/bigblock.h) and that
    the app's data cuts down by realloc (os.pread at a size larger than what comes, here an 8 MiB
    block cut to 300 KiB) moves to a block its size once it would fit the old one more than twice
    over, as wd_big_alloc's reuse does; kept in place, the app keeping the result kept all 8 MiB.
    Three requests; within 5 s their worker's RSS is back within 2 MiB of where it was (each keeps
    300 KiB). With the block kept in place it stayed 24 MiB up."""
    d = wsgid("shrink", processes=1, threads=1)
    [pid] = d.workers()
    r = request(d.tcp, path="/")
    assert r.status == 200 and r.body == b"307200\n", r
    time.sleep(0.6)
    base = rss_mib(pid)
    for _ in range(3):
        r = request(d.tcp, path="/")
        assert r.status == 200 and r.body == b"307200\n", r
    now = rss_mib(pid)
    deadline = time.monotonic() + 5
    while now >= base + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = rss_mib(pid)
    print("RSS %.1f MiB before, %.1f after three 8 MiB blocks cut to 300 KiB and kept" % (base, now))
    if rss_checked():
        assert now < base + 2, "RSS %.1f MiB 5 s after (%.1f before)" % (now, base)


def chunked(body, size=4000):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def test_idle_connections_keep_small_buffers(wsgid):
    """A keep-alive connection idle between requests gives back what a request made its buffers
    grow to (daemon/worker/conn.c: conn_trim). Three kinds of connection, 150 of each, opened one
    kind after the other; each sends one body and stays open: a 60 KB body with Content-Length
    (read into a 64 KiB body buffer), the same chunked (parsed through the read buffer into the
    body buffer), and a FastCGI request of 200 KB in 32 KiB STDIN records whose padding changes
    from record to record, with PARAMS past 4 KiB (the records guessed after each one are not like
    it: they go through the read buffer, which grows, fcgi_spill). Kept, the buffers held 86.4,
    90.1 and 61.0 KiB of RSS a connection; given back, 28.2, 27.7 and 20.3 (the FastCGI ones 52.7
    with the read buffer alone kept), against 12 for a connection that sent a 3-byte body (the
    rest: the response buffer's 16 KiB segment kept for the next answer). Bound: 48 KiB a
    connection, each kind on its own (not under the sanitizer build, whose allocator keeps freed
    memory in quarantine), measured within a second of its connections' last answers, before the
    tick trims idle connections whole (test_idle_connections_give_back_their_buffers; with that
    trim of the kind before, 2.25 s earlier, the three came to 28.2, 19.4 and 20.7). Then one
    connection of each kind is served again: its buffers grow back from nothing."""
    d = wsgid("echo", processes=1, threads=2)
    [pid] = d.workers()
    body = os.urandom(60000)
    big = os.urandom(200000)
    fcgi_params = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/", "PATH_INFO": "/",
                   "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(big)),
                   "HTTP_X_PADDING": "p" * 5000}
    fcgi_stdin = b"".join(fcgi.record(fcgi.STDIN, 1, big[i:i + 32768], i // 32768 % 3 * 4)
                          for i in range(0, len(big), 32768)) + fcgi.record(fcgi.STDIN, 1)
    fcgi_post = (fcgi.begin(1, keep=True) + fcgi.record(fcgi.PARAMS, 1, fcgi.pairs(fcgi_params))
                 + fcgi.record(fcgi.PARAMS, 1) + fcgi_stdin)

    def http_post(c, kind):
        if kind == "Content-Length":
            c.send(http_request("POST", "/", {"Content-Length": str(len(body))}, body))
        else:
            c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + chunked(body))
        r = c.response()
        assert r.status == 200 and r.body == body, (kind, r.status)

    def fcgi_post_on(c):
        recs = fcgi.read_records(c.send(fcgi_post))
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE), recs[-1:]
        assert b"X-Body-Length: %d\r\n" % len(big) in fcgi.stdout_of(recs)[:500]

    with Conn(d.tcp) as c:  # warm: the app imported, its first answer made
        http_post(c, "Content-Length")
    time.sleep(0.6)
    conns, each = [], {}
    took = {}
    for kind in ("Content-Length", "chunked", "FastCGI"):
        if conns:
            # The kind before trimmed by the tick (idle 1 s), so that what it gives back is not
            # counted against this one (whether malloc_trim has handed its pages to the kernel
            # by then, once 4 MiB were freed and at most every 5 s, varies: 150 connections free
            # about 4 MiB).
            time.sleep(2.25)
        before = rss_mib(pid)
        t0 = time.monotonic()
        for _ in range(150):
            c = Conn(d.tcp)
            if kind == "FastCGI":
                fcgi_post_on(c)
            else:
                http_post(c, kind)
            conns.append(c)
        took[kind] = time.monotonic() - t0
        time.sleep(0.3)
        each[kind] = (rss_mib(pid) - before) * 1024 / 150
    print("RSS a connection idle after a body: " + ", ".join(
        "%s %.1f KiB (150 in %.2f s)" % (k, v, took[k]) for k, v in each.items()))
    for i, kind in enumerate(("Content-Length", "chunked", "FastCGI")):  # served again
        c = conns[i * 150]
        if kind == "FastCGI":
            fcgi_post_on(c)
        else:
            http_post(c, kind)
    for c in conns:
        c.close()
    if rss_checked():
        for kind, kib in each.items():
            assert kib < 48, "a connection idle after a %s body holds %.1f KiB" % (kind, kib)


def test_idle_connections_give_back_their_buffers(wsgid):
    """A keep-alive connection idle for a second gives back the buffers it keeps for its next
    request, the read buffer and the response's spare segment (daemon/worker/conn_timeout.c:
    wd_conns_tick), and the worker hands their pages to the kernel (worker.c: heap_trim). 800
    connections, a hello each, then idle: measured, 11.7 KiB of RSS a connection at first, 5.5
    KiB 1.3 s later (without the trim, 11.7 after 8 s; with the HTTP parser kept, as before it was
    given back too, 7.5 after 1.3 s and still 7.5 after 8 s). Bound: at most 0.6 of what they held
    at first, and 6.5 KiB a connection, within 8 s (not under the sanitizer build, whose allocator
    keeps freed memory). Then every connection is served again, its buffers made anew."""
    n = 800
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 200), hard))
    d = wsgid("hello", processes=1, threads=2)
    [pid] = d.workers()
    assert_hello(d.tcp)  # warm: the app imported, its first answer made
    time.sleep(1.5)  # that connection's buffers trimmed, the heap as it will stay
    before = rss_mib(pid)
    conns = []
    try:
        for _ in range(n):
            conns.append(Conn(d.tcp).send(http_request("GET", "/")))
        for c in conns:
            assert c.response().status == 200
        held = (rss_mib(pid) - before) * 1024 / n
        # Idle from now: trimmed at the 4th tick in a row that finds a connection idle (0.75-1 s);
        # the heap once 4 MiB were freed, and again 5 s later for those freed after that.
        deadline = time.monotonic() + 8
        kept = held
        while time.monotonic() < deadline:
            time.sleep(0.25)
            kept = (rss_mib(pid) - before) * 1024 / n
            if kept <= 0.6 * held and kept <= 6.5:
                break
        print("RSS a connection idle after a hello: %.1f KiB at first, %.1f KiB after %.1f s"
              % (held, kept, 8 - (deadline - time.monotonic())))
        for c in conns:  # served again: the buffers are made anew
            c.send(http_request("GET", "/"))
        for c in conns:
            r = c.response()
            assert r.status == 200 and r.body == HELLO, r
    finally:
        for c in conns:
            c.close()
    if rss_checked():
        assert kept <= 0.6 * held and kept <= 6.5, (
            "idle connections held %.1f KiB each at first and %.1f KiB 8 s later" % (held, kept))


def test_idle_connections_trimmed_again_after_a_read_with_no_response(wsgid):
    """A connection trimmed idle that then reads something which brings no response (here a
    FastCGI request the proxy aborts before it is complete: a read buffer and a PARAMS buffer
    made again, the connection idle again with no response served) gives those back too, at the
    next tick (conn_timeout.c: idle_long). 300 FastCGI keep-conn connections, a request each,
    trimmed (the worker's debug line "connections: N KiB of buffers given back"); then each
    sends BEGIN_REQUEST, 5,000 bytes of PARAMS and ABORT_REQUEST, and the next line must give
    back at least 16 KiB a connection (8 KiB read buffer, 8 KiB PARAMS). Before, they were kept
    until the connection's next response or close: no second line came."""
    n = 300
    d = wsgid("hello", processes=1, threads=2,
              top={"log": {"level": "debug", "file": "-", "access": "-"}})
    line = re.compile(r"connections: (\d+) KiB of buffers given back")
    params = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/",
              "SERVER_PROTOCOL": "HTTP/1.1"}
    conns = []
    try:
        for _ in range(n):
            c = Conn(d.unix)
            conns.append(c)
            recs = fcgi.read_records(c.send(fcgi.request(params, keep=True)))
            assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE), recs[-1:]
        wait_for(lambda: line.search(d.log()), timeout=5, what="the first trim of idle buffers")
        mark = len(d.log())
        for c in conns:
            c.send(fcgi.begin(2, keep=True)
                   + fcgi.record(fcgi.PARAMS, 2, fcgi.pairs({"HTTP_X_PAD": "p" * 5000}))
                   + fcgi.record(fcgi.ABORT_REQUEST, 2))
            recs = fcgi.read_records(c)
            assert recs[-1][1] == 2 and fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
        # The heap trim comes at most every 5 s after the first.
        wait_for(lambda: line.search(d.log()[mark:]), timeout=8,
                 what="idle buffers given back after the aborted requests")
        kib = int(line.search(d.log()[mark:]).group(1))
        print("after %d aborted requests: %d KiB given back" % (n, kib))
        assert kib >= 16 * n, kib
        for c in conns:  # served again
            recs = fcgi.read_records(c.send(fcgi.request(params, rid=3, keep=True)))
            assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE)
            assert b"Hello" in fcgi.stdout_of(recs)
    finally:
        for c in conns:
            c.close()
