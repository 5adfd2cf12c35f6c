"""The `metrics:` listener of the master: GET /metrics (Prometheus text 0.0.4) and GET /status
(the JSON of `wsgictl status --json`), fed by the workers' scoreboard."""
import json
import re

from helpers.clients import assert_hello, raw, recv_all, request
from helpers.procs import free_port, wait_for

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def metrics(addr):
    r = request(addr, path="/metrics")
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4"), r
    return r.body.decode()


def samples(text):
    """{'name{labels}': value} of every sample line; fails on a malformed line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "malformed metrics line: %r" % line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def status(addr):
    r = request(addr, path="/status")
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json", r
    return json.loads(r.body)


def start(wsgid, top=None, **opts):
    maddr = ("127.0.0.1", free_port())
    d = wsgid("hello", top=dict(top or {}, metrics="%s:%d" % maddr), **opts)
    wait_for(lambda: d.log().find("metrics") >= 0, 5, what="the metrics listener")
    return d, maddr


def test_metrics_counter_moves_with_traffic(wsgid):
    d, maddr = start(wsgid, processes=2, threads=2)
    key = 'wsgid_requests_total{group="site",code_class="2xx"}'
    before = samples(metrics(maddr))
    assert key in before, before
    for _ in range(10):
        assert_hello(d.tcp)
    # The worker publishes its counters when the response is complete; a scrape may race the
    # last one by a moment.
    after = wait_for(lambda: (lambda s: s if s[key] >= before[key] + 10 else None)(
        samples(metrics(maddr))), 5, what="2xx counter +10")
    assert after[key] == before[key] + 10
    count = 'wsgid_request_duration_seconds_count{group="site"}'
    inf = 'wsgid_request_duration_seconds_bucket{group="site",le="+Inf"}'
    assert after[count] == after[inf] >= 10
    assert after['wsgid_threads{group="site"}'] == 4
    assert after['wsgid_workers{group="site",state="ready"}'] == 2
    assert after['wsgid_response_bytes_total{group="site"}'] > 0
    for pid in d.workers():
        assert any(k.startswith("wsgid_worker_rss_bytes{") and 'pid="%d"' % pid in k and v > 0
                   for k, v in after.items()), (pid, after)
    text = metrics(maddr)
    for name, kind in [("wsgid_requests_total", "counter"), ("wsgid_threads", "gauge"),
                       ("wsgid_busy_threads", "gauge"), ("wsgid_queue_depth", "gauge"),
                       ("wsgid_request_duration_seconds", "histogram"),
                       ("wsgid_worker_restarts_total", "counter"),
                       ("wsgid_worker_rss_bytes", "gauge"), ("wsgid_workers", "gauge")]:
        assert "# TYPE %s %s\n" % (name, kind) in text
        assert "# HELP %s " % name in text


def test_status_json_lists_every_worker(wsgid):
    d, maddr = start(wsgid, processes=3, threads=2)
    for _ in range(6):
        assert_hello(d.tcp)
    st = status(maddr)
    assert st["master_pid"] == d.pid
    assert isinstance(st["version"], str) and st["uptime"] >= 0
    (g,) = st["groups"]
    assert g["name"] == "site" and g["processes"] == 3 and g["threads"] == 2
    pids = sorted(w["pid"] for w in g["workers"])
    assert pids == sorted(d.workers())
    assert sorted(w["slot"] for w in g["workers"]) == [1, 2, 3]
    for w in g["workers"]:
        assert w["state"] == "ready"
        assert w["display_name"] == "(wsgi:site)"
        assert w["threads"] == 2 and w["rss_bytes"] > 0
        for k in ("uptime", "restarts", "requests", "busy_threads", "queued", "connections",
                  "last_error"):
            assert k in w, k
    st = wait_for(lambda: (lambda s: s if s["groups"][0]["requests"] >= 6 else None)(
        status(maddr)), 5, what="6 requests in /status")
    assert sum(w["requests"] for w in st["groups"][0]["workers"]) == st["groups"][0]["requests"]


def test_metrics_errors(wsgid):
    d, maddr = start(wsgid)
    assert request(maddr, path="/nope").status == 404
    assert request(maddr, method="POST", path="/metrics").status == 405
    r = request(maddr, method="HEAD", path="/status")
    assert r.status == 200 and int(r.header("Content-Length")) > 0
    out = raw(maddr, b"this is not http\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    out = raw(maddr, b"GET /" + b"x" * 20000 + b" HTTP/1.1\r\n\r\n")
    assert out.split(b" ")[1] in (b"400", b"431"), out[:100]
    # The daemon serves on.
    assert_hello(d.tcp)
    assert request(maddr, path="/metrics?x=1").status == 200


def test_restarts_total_does_not_go_back_at_a_reload_with_fewer_processes(wsgid, tmp):
    """wsgid_worker_restarts_total (and the group's restarts in /status) is a counter: a reload
    from 3 processes to 1 took away the restarts of slots 2 and 3 with the slots, and it went from
    6 to 3, which Prometheus' rate() reads as a reset followed by 3 restarts (helper-81)."""
    import subprocess
    from helpers.daemon import WSGICTL

    d, maddr = start(wsgid, processes=3, threads=1, top={"control": str(tmp / "ctl.sock")})
    d.unix_paths.append(str(tmp / "ctl.sock"))

    def ctl(*args):
        r = subprocess.run([str(WSGICTL), "-s", str(tmp / "ctl.sock")] + list(args),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (args, r.stdout, r.stderr)

    key = 'wsgid_worker_restarts_total{group="site"}'
    ctl("restart", "site")
    ctl("restart", "site")
    before = samples(metrics(maddr))[key]
    assert before == 6, before
    d.conf_path.write_text(d.conf_path.read_text().replace("processes: 3", "processes: 1"))
    ctl("reload")
    after = samples(metrics(maddr))[key]
    assert after >= before, "restarts went back from %d to %d at the reload" % (before, after)
    assert after == 7, after  # slot 1 replaced by the reload's roll
    assert status(maddr)["groups"][0]["restarts"] == 7


def test_idle_connections_do_not_keep_readyz_out(wsgid):
    """64 connections that send nothing (a slowloris, renewed before its 10 s timeout) made the
    listener close every new one unanswered: the load balancer's GET /readyz failed and it took
    the host out. At the cap, the oldest connection without a whole request gives way to the new
    one (helper-81)."""
    import socket

    d, maddr = start(wsgid)
    idle = [socket.create_connection(maddr) for _ in range(300)]
    try:
        for _ in range(5):
            r = request(maddr, path="/readyz")
            assert r.status == 200, r
        assert request(maddr, path="/metrics").status == 200
        d.wait_log(r"metrics 127\.0\.0\.1:\d+: 64 connections open: closed the oldest one of "
                   r"127\.0\.0\.1 \(\d+ of them, \d+ of its /24\) without a whole request "
                   r"\(open [\d.]+ s\) for a new "
                   r"one")
    finally:
        for s in idle:
            s.close()
    assert_hello(d.tcp)


# 8 threads open connections to HOST:PORT that send nothing, 70 held by each, until killed; from
# 127.0.0.1 (one), or each from the next of 1,000 addresses (127.0.1.1 to 127.0.4.250) in turn
# (many).
FLOOD = """
import collections, socket, sys, threading
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def flood(i):
    held = collections.deque()
    while True:
        s = socket.socket()
        s.settimeout(2)
        try:
            if mode == "many":
                s.bind(("127.0.%d.%d" % (1 + i // 250 % 4, 1 + i % 250), 0))
            s.connect((host, port))
            held.append(s)
        except OSError:
            s.close()
        i += 8
        while len(held) > 70:
            held.popleft().close()

for t in range(8):
    threading.Thread(target=flood, args=(t,)).start()
"""


def flood_and_check(d, maddr, mode):
    """60 GET /readyz from 127.0.0.2 (a load balancer) under FLOOD, which runs in a process of
    its own: the check's request follows its connect at once, as a load balancer's does (in the
    flood's process, it waited for the GIL, milliseconds). The answers of the checks."""
    import socket
    import subprocess
    import sys
    import time

    def check():
        s = socket.socket()
        s.settimeout(5)
        try:
            s.bind(("127.0.0.2", 0))  # the load balancer, another address than the flood's
            s.connect(maddr)
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return recv_all(s)
        except OSError as e:
            return repr(e).encode()
        finally:
            s.close()

    flood = subprocess.Popen([sys.executable, "-c", FLOOD, maddr[0], str(maddr[1]), mode])
    answers = []
    try:
        d.wait_log(r"64 connections open: closed the oldest one")
        for _ in range(60):
            answers.append(check())
            time.sleep(0.05)
    finally:
        flood.kill()
        flood.wait()
    return answers


def test_a_connection_flood_does_not_close_another_clients_health_check(wsgid):
    """At the cap, the oldest connection without a whole request gave way to a new one, whoever
    opened it: a client opening connections faster than a load balancer's request arrives closed
    the check's connection before it was read (1 to 9 of 60 GET /readyz failed under 8 threads
    of connects). A connection of the address that holds the most gives way now (helper-89)."""
    d, maddr = start(wsgid)
    answers = flood_and_check(d, maddr, "one")
    failed = [a for a in answers if not a.startswith(b"HTTP/1.1 200")]
    assert not failed, "%d of 60 checks failed: %r" % (len(failed), failed[:3])
    assert "closed the oldest one of 127.0.0.2" not in d.log()
    assert_hello(d.tcp)


def test_a_flood_from_many_addresses_does_not_close_another_clients_health_check(wsgid):
    """The same flood from 1,000 addresses (127.0.1.1 to 127.0.4.250, each holding about one
    connection, as a client may take any address of its IPv6 /64): no address held the most, the
    oldest waiting connection of all gave way, and the check's was that one: 1 to 4 of 60 checks
    reset in 6 of 6 runs. The network that holds the most (an IPv4 /24, an IPv6 /64) gives way
    first now, and in it the address that holds the most (helper-98)."""
    d, maddr = start(wsgid)
    answers = flood_and_check(d, maddr, "many")
    failed = [a for a in answers if not a.startswith(b"HTTP/1.1 200")]
    assert not failed, "%d of 60 checks failed: %r" % (len(failed), failed[:3])
    d.wait_log(r"64 connections open: closed the oldest one of 127\.0\.[1-4]\.\d+ \(\d+ of them, "
               r"\d+ of its /24\)")
    assert "closed the oldest one of 127.0.0.2" not in d.log()
    assert_hello(d.tcp)


def test_no_slot_said_to_back_off_while_wsgid_stops(wsgid, tmp):
    """While wsgid stops (SIGTERM) and a worker finishes its request, /metrics, /status and
    wsgictl status showed a second worker of its slot, pid 0, in "backoff": nothing backs off,
    the slot's worker is draining (helper-81)."""
    import signal
    import threading

    maddr = ("127.0.0.1", free_port())
    d = wsgid("slow", processes=1, threads=2, top={"metrics": "%s:%d" % maddr})
    t = threading.Thread(target=lambda: request(d.tcp, path="/?t=2"))
    t.start()
    wait_for(lambda: (tmp / "slow-started").exists(), 5, what="the request in the app")
    d.signal(signal.SIGTERM)
    d.wait_log(r"stopping")
    s = samples(metrics(maddr))
    assert s['wsgid_workers{group="site",state="draining"}'] == 1, s
    assert s['wsgid_workers{group="site",state="backoff"}'] == 0, s
    (g,) = status(maddr)["groups"]
    assert [w["state"] for w in g["workers"]] == ["draining"], g["workers"]
    t.join(10)
    assert d.wait_exit() == 0
