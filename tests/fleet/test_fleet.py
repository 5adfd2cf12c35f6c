"""A fleet of three hosts behind two load balancers (issue #14, part 5).

Each host is a network namespace with its own address on a bridge and its own wsgid (the real
binary) serving tests/fleet/app.py, which answers "HOST VERSION". HAProxy (active checks on
/readyz, on wsgid's metrics listener) and nginx (passive checks: max_fails, proxy_next_upstream)
run in a namespace of their own, in front of the three; a load generator in a fourth namespace
sends requests through both at once for the whole test (half of its threads each), and records
each one. The test then:

    drain   drains host 1 (wsgictl drain: /readyz fails at once, wsgid serves for drain-delay,
            then exits), starts it again with new code: no request may fail
    rolling each host in turn: wsgictl drain site (the group stops after drain-delay, wsgid
            stays), new code, wsgictl start site: no request may fail or wait long, each host
            ends on the new code
    kill    kill -9 of every wsgid process of host 2: the requests in flight there are sent again
            to another host, none fails; the balancers stop sending to it (HAProxy within its
            check interval x fall), it is started again and rejoins
    hang    host 3's app hangs (every request waits): its requests queue, /readyz fails after
            readiness-queue-wait, HAProxy takes it out before the clients' timeout; the hung
            requests end at request-timeout (504), which the balancers send on to another host:
            none fails

and prints a summary table (requests, failures per phase and balancer, times to eject and rejoin).
Skipped, saying why, where network namespaces cannot be made (not root, no iproute2, no bridge or
veth support). The whole test is bounded in time: the load generator stops after LOAD_SECONDS
whatever happens, every wait has a timeout.

The HAProxy and nginx configs below are the README's "Many hosts" snippets.
"""
import http.client
import os
import signal
import subprocess
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import conftest
import netns
from helpers.config import make_config
from helpers.daemon import WSGID_BIN, Wsgid
from helpers.haproxy import HAPROXY_BIN, HAProxy
from helpers.nginx import NGINX_BIN, Nginx
from helpers.procs import pgroup_members, wait_for

HERE = Path(__file__).resolve().parent
WSGICTL = WSGID_BIN.parent / "client" / "wsgictl"
HOSTS = ("h1", "h2", "h3")
HTTP_PORT, METRICS_PORT = 8000, 9191
LB = netns.ADDRS["lb"]
HAPROXY_PORT, NGINX_PORT = 8080, 8081

THREADS_PER_BALANCER = 5    # client threads through each balancer
CLIENT_TIMEOUT = 10.0       # the load generator's timeout for a request
LOAD_SECONDS = 140          # the load generator stops then, whatever happens
PAUSE = 0.02                # between two requests of a client thread

# Each host's wsgid. threads x processes (4) is below the client threads (10): when the app
# hangs, requests queue, and /readyz fails after readiness-queue-wait.
GROUP = {
    "processes": 2,
    "threads": 2,
    "drain-delay": "2s",
    "readiness-queue-wait": "1s",
    "request-timeout": "4s",
    "shutdown-timeout": "1s",
    "graceful-timeout": "5s",
}

# The README's snippets (addresses 10.77.0.1-3 for the hosts, 10.77.0.10 for the balancer).
HAPROXY_BACKEND = """backend wsgid
    mode http
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check port 9191 inter 250ms fall 2 rise 2
    retries 2
    option redispatch
    retry-on conn-failure empty-response junk-response 504
    http-request disable-l7-retry unless METH_GET
    timeout connect 1s
    timeout server 90s
    http-reuse safe
    server h1 10.77.0.1:8000
    server h2 10.77.0.2:8000
    server h3 10.77.0.3:8000
"""
HAPROXY_FRONTEND = """frontend www
    bind 10.77.0.10:8080
    mode http
    timeout client 30s
    option forwardfor
    default_backend wsgid
"""
# Only for the test: HAProxy's own view of its servers (the helper waits for this port).
HAPROXY_STATS = """listen stats
    bind 127.0.0.1:{port}
    mode http
    timeout client 5s
    timeout connect 1s
    timeout server 5s
    stats enable
    stats uri /stats
"""
NGINX_UPSTREAM = """upstream wsgid {
    server 10.77.0.1:8000 max_fails=1 fail_timeout=2s;
    server 10.77.0.2:8000 max_fails=1 fail_timeout=2s;
    server 10.77.0.3:8000 max_fails=1 fail_timeout=2s;
    keepalive 16;
}"""
NGINX_LOCATION = """location / {
    proxy_pass http://wsgid;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_connect_timeout 1s;
    proxy_next_upstream error timeout http_502 http_503 http_504;
    proxy_next_upstream_tries 3;
}"""
NGINX_LOG_FORMAT = "log_format fleet '$msec $status \"$upstream_addr\" \"$upstream_status\"';"

# What the balancers log on purpose here: a host stopping, killed or hung.
NGINX_EXPECTED = (r"connect\(\) failed \(111: Connection refused\)",
                  r"upstream prematurely closed connection",
                  r"recv\(\) failed \(104: Connection reset by peer\)",
                  r"upstream server temporarily disabled",
                  r"writev\(\) failed \(32: Broken pipe\)")
HAPROXY_EXPECTED = (r"Server wsgid/h\d is (DOWN|UP)", r"wsgid/h\d ", r"backend wsgid has no server")
WSGID_EXPECTED = (r"request-timeout", r"timed out", r"RequestTimeout")


# --- the load and what it recorded -----------------------------------------------------------

class Load:
    """The load generator's process (in the client namespace) and its records."""

    def __init__(self, fleet, tmp):
        self.out = tmp / "requests.log"
        self.stop_file = tmp / "loadgen.stop"
        argv = [sys.executable, str(HERE / "loadgen.py"), "--out", str(self.out),
                "--stop", str(self.stop_file), "--seconds", str(LOAD_SECONDS),
                "--timeout", str(CLIENT_TIMEOUT), "--pause", str(PAUSE),
                "--target", "haproxy=%s:%d:%d" % (LB, HAPROXY_PORT, THREADS_PER_BALANCER),
                "--target", "nginx=%s:%d:%d" % (LB, NGINX_PORT, THREADS_PER_BALANCER)]
        self.proc = subprocess.Popen(fleet.exec_argv("cli", argv), stdin=subprocess.DEVNULL,
                                     stderr=open(tmp / "loadgen.stderr", "wb"))
        self.records = []
        self._pos = 0
        self._partial = ""

    def poll(self):
        """Reads what was written since the last call; returns the new records."""
        if not self.out.exists():
            return []
        with open(self.out) as f:
            f.seek(self._pos)
            data = f.read()
            self._pos = f.tell()
        data = self._partial + data
        lines = data.split("\n")
        self._partial = lines.pop()
        new = []
        for line in lines:
            t0, t1, lb, ok, status, host, version, err = line.split()
            new.append((float(t0), float(t1), lb, ok == "1", int(status), host, version, err))
        self.records.extend(new)
        return new

    def stop(self):
        self.stop_file.touch()
        try:
            self.proc.wait(CLIENT_TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if os.path.exists(self.out):
            self.poll()

    def wait_answer(self, lb, host, version=None, since=0.0, timeout=15.0):
        """The time of the first answer from host (with version) through lb that started after
        since."""
        def found():
            self.poll()
            for r in self.records:
                if r[0] >= since and r[2] == lb and r[3] and r[5] == host and \
                        (version is None or r[6] == version):
                    return r[1]
            if self.proc.poll() is not None:
                raise AssertionError("the load generator exited early")
            return None
        return wait_for(found, timeout, interval=0.05,
                        what="%s %s answering through %s" % (host, version or "", lb))

    def between(self, t0, t1, lb=None):
        return [r for r in self.records if t0 <= r[0] < t1 and (lb is None or r[2] == lb)]


class HAProxyWatch:
    """Polls HAProxy's stats (CSV) every 50 ms from the balancers' namespace and keeps each
    server's status changes: {name: [(time, "UP" | "DOWN" | ...)]}."""

    def __init__(self, fleet, port):
        self.changes = {h: [] for h in HOSTS}
        self.port = port
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=fleet.run, args=("lb", self._loop), daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/stats;csv")
                text = c.getresponse().read().decode()
                c.close()
            except OSError:
                text = ""
            now = time.monotonic()
            for line in text.splitlines():
                f = line.split(",")
                if len(f) > 17 and f[0] == "wsgid" and f[1] in self.changes:
                    status = f[17].split()[0]
                    seen = self.changes[f[1]]
                    if not seen or seen[-1][1] != status:
                        seen.append((now, status))
            self.stopping.wait(0.05)

    def status(self, host):
        seen = self.changes[host]
        return seen[-1][1] if seen else None

    def first(self, host, status, since):
        for t, s in self.changes[host]:
            if t >= since and s.startswith(status):
                return t
        return None

    def wait(self, host, status, since, timeout):
        return wait_for(lambda: self.first(host, status, since), timeout, interval=0.02,
                        what="HAProxy to see %s %s" % (host, status))

    def stop(self):
        self.stopping.set()
        self.thread.join(5)


# --- the hosts ---------------------------------------------------------------------------------

class Host:
    def __init__(self, fleet, tmp, name):
        self.fleet = fleet
        self.name = name
        self.dir = tmp / name
        self.dir.mkdir()
        self.addr = netns.ADDRS[name]
        self.d = None
        self.runs = 0
        self.all = []

    def set_version(self, v):
        (self.dir / "version").write_text(v + "\n")

    def start(self):
        group = dict(GROUP)
        group.update({"app": str(HERE / "app.py"), "listen": ["%s:%d" % (self.addr, HTTP_PORT)],
                      "env": {"FLEET_DIR": str(self.dir), "FLEET_HOST": self.name}})
        text = make_config(self.dir, {"site": group},
                           metrics="%s:%d" % (self.addr, METRICS_PORT), control="ctl.sock",
                           log={"level": "info", "file": "-", "access": "access.log"})
        self.runs += 1
        self.d = Wsgid(self.dir, text, name="wsgid%d" % self.runs)
        self.d.expect_log(*WSGID_EXPECTED)
        self.all.append(self.d)
        self.fleet.run(self.name, self.d.start)
        return time.monotonic()

    def ctl(self, *args):
        r = subprocess.run([str(WSGICTL), "-s", str(self.dir / "ctl.sock")] + list(args),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, "wsgictl %s on %s: %s" % (" ".join(args), self.name,
                                                          r.stdout + r.stderr)

    def status(self):
        """wsgictl status (each worker's threads, queue and oldest wait), for a failure's message."""
        r = subprocess.run([str(WSGICTL), "-s", str(self.dir / "ctl.sock"), "status"],
                           capture_output=True, text=True, timeout=30)
        return r.stdout + r.stderr

    def kill9(self):
        """SIGKILL to every wsgid process of the host (the master and its workers)."""
        pids = set(pgroup_members(self.d.pid)) | {self.d.pid} | set(self.d.workers())
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.d.proc.wait(5)
        self.d._logf.close()
        self.d.killed = True
        return len(pids)


# --- the test ----------------------------------------------------------------------------------

@pytest.fixture
def fleet():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    why = netns.unavailable()
    if why:
        pytest.skip(why)
    for binary, name in ((HAPROXY_BIN, "haproxy"), (NGINX_BIN, "nginx")):
        if not os.access(binary, os.X_OK):
            pytest.skip("%s not installed (%s): ./dev deps" % (name, binary))
    f = netns.Fleet(HOSTS)
    # timeout(1) and CI runners end a run with SIGTERM: the namespaces go all the same.
    old = signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit("fleet test: SIGTERM"))
    try:
        yield f.up()
    finally:
        f.down()
        signal.signal(signal.SIGTERM, old)


def test_fleet(fleet):
    started = time.monotonic()
    clock = time.time() - time.monotonic()      # nginx logs wall-clock times
    tmp = Path(tempfile.mkdtemp(prefix="wd-fleet-", dir="/tmp"))
    hosts = {h: Host(fleet, tmp, h) for h in HOSTS}
    haproxy = nginx = load = watch = None
    rows = []
    try:
        for h in hosts.values():
            h.set_version("v1")
            h.start()
        haproxy = fleet.run("lb", HAProxy, tmp, HAPROXY_STATS + "\n" + HAPROXY_FRONTEND + "\n"
                            + HAPROXY_BACKEND)
        haproxy.expect_log(*HAPROXY_EXPECTED)
        nginx = fleet.run("lb", Nginx, tmp, "listen %s:%d;\n" % (LB, NGINX_PORT)
                          + NGINX_LOCATION.replace(
                              "location / {", "location / {\n    access_log %s fleet;"
                              % (tmp / "nginx" / "fleet.log")),
                          http_extra=NGINX_LOG_FORMAT + "\n" + NGINX_UPSTREAM)
        nginx.expect_log(*NGINX_EXPECTED)
        watch = HAProxyWatch(fleet, haproxy.port)
        for h in HOSTS:
            watch.wait(h, "UP", 0, 10)
        load = Load(fleet, tmp)
        for lb in ("haproxy", "nginx"):
            for h in HOSTS:
                load.wait_answer(lb, h, "v1", timeout=10)
        t = time.monotonic()
        time.sleep(2)
        rows.append(("steady", t, time.monotonic(), "", ""))

        # Drain host 1 (every group: wsgid exits after drain-delay), start a new wsgid with new
        # code. (No undrain: a drain that ran to its end stopped the group; a group started
        # again is ready. undrain cancels a drain before that.)
        t = time.monotonic()
        out, back = deploy(hosts["h1"], "v2", load, "wsgid")
        settle()
        rows.append(("drain h1 -> v2", t, time.monotonic(), out, back))

        # Rolling deploy of v3, host by host, each drained as a group in a wsgid that keeps
        # running, then started again.
        t_roll = time.monotonic()
        for h in HOSTS:
            t = time.monotonic()
            out, back = deploy(hosts[h], "v3", load, "group")
            settle()
            rows.append(("rolling -> v3: %s" % h, t, time.monotonic(), out, back))
        t_end = time.monotonic()
        rows.append(("rolling -> v3 (all)", t_roll, t_end, "", ""))
        time.sleep(1)
        seen = {(r[2], r[5], r[6]) for r in load.poll() + load.between(t_end, time.monotonic())
                if r[3]}
        for lb in ("haproxy", "nginx"):
            for h in HOSTS:
                assert (lb, h, "v3") in seen, "%s not answering with v3 through %s" % (h, lb)
        old = [r for r in load.between(t_end, time.monotonic()) if r[3] and r[6] != "v3"]
        assert not old, "answers with old code after the rolling deploy: %s" % old[:5]

        # kill -9 of host 2.
        h2 = hosts["h2"]
        t = time.monotonic()
        killed = h2.kill9()
        down = watch.wait("h2", "DOWN", t, 5)
        kill_eject = down - t
        time.sleep(1.5)
        t_restart = h2.start()
        up_h = load.wait_answer("haproxy", "h2", since=t_restart, timeout=10)
        up_n = load.wait_answer("nginx", "h2", since=t_restart, timeout=10)
        tries = nginx_tries(tmp, "h2", t, t_restart, clock)
        settle()
        rows.append(("kill -9 h2 (%d procs)" % killed, t, time.monotonic(),
                     "haproxy %.2f s; nginx %d tries" % (down - t, tries),
                     "haproxy %.2f, nginx %.2f s" % (up_h - t_restart, up_n - t_restart)))

        # Host 3 hangs.
        h3 = hosts["h3"]
        t = time.monotonic()
        time.sleep(0.2)     # a request that starts now and goes to h3 hangs: counted here
        h3.d.expect_log(r"\[req \d+-\d+\] ")    # the hung requests' RequestTimeout
        t_hang = time.monotonic()
        (h3.dir / "hang").touch()
        try:
            down = watch.wait("h3", "DOWN", t_hang, CLIENT_TIMEOUT)
        except AssertionError as e:
            raise AssertionError("%s; h3's wsgictl status:\n%s" % (e, h3.status())) from None
        eject = down - t_hang
        time.sleep(max(0, t_hang + 6 - time.monotonic()))
        t_unhang = time.monotonic()
        (h3.dir / "hang").unlink()
        up_h = load.wait_answer("haproxy", "h3", since=t_unhang, timeout=10)
        up_n = load.wait_answer("nginx", "h3", since=t_unhang, timeout=10)
        tries = nginx_tries(tmp, "h3", t_hang, t_unhang, clock)
        settle()
        rows.append(("hang h3", t, time.monotonic(),
                     "haproxy %.2f s; nginx %d tries" % (eject, tries),
                     "haproxy %.2f, nginx %.2f s" % (up_h - t_unhang, up_n - t_unhang)))
        t = time.monotonic()
        time.sleep(2)
        rows.append(("steady", t, time.monotonic(), "", ""))
        load.stop()
        load_end = time.monotonic()
    finally:
        if watch:
            watch.stop()
        if load:
            load.stop()
        problems = []
        # The balancers first: stopped after the hosts, HAProxy's checks found every server gone
        # in between and said so ([ALERT] no server available).
        for p in (haproxy, nginx):
            if p is not None:
                p.stop()
                bad = p.unexpected_lines()
                if bad:
                    problems.append("unexpected lines in the log of %s:\n  %s"
                                    % (type(p).__name__, "\n  ".join(bad[:10])))
        for h in hosts.values():
            for d in h.all:
                if getattr(d, "killed", False) or d.proc is None:
                    continue
                try:
                    d.stop()
                except AssertionError as e:
                    problems.append("%s: %s" % (h.name, e))
                bad = d.unexpected_lines()
                if bad:
                    problems.append("%s: unexpected lines in the wsgid log:\n  %s"
                                    % (h.name, "\n  ".join(bad[:10])))
        if load and rows:
            summary(load, rows, time.monotonic() - started, tmp)
        if os.environ.get("WSGID_E2E_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    fails = {name: failures(load, t0, t1) for name, t0, t1, _, _ in rows}
    assert fails["drain h1 -> v2"] == (0, 0), "requests failed during the drain: %s" % (
        fails["drain h1 -> v2"],)
    assert fails["rolling -> v3 (all)"] == (0, 0), "requests failed during the rolling deploy"
    # Nor did they wait for a stopped group (before its TCP listener refused connections, nginx's
    # requests waited in its backlog until wsgictl start: 2 s here). Requests take 5-200 ms.
    for name, t0, t1, _, _ in rows:
        if name.startswith(("drain", "rolling")):
            slow = max(r[1] - r[0] for r in load.between(t0, t1))
            assert slow < 1.5, "a request took %.2f s during %s" % (slow, name)
    kill = [v for k, v in fails.items() if k.startswith("kill")][0]
    # HAProxy: 2 failed checks 250 ms apart (a refused connection fails one at once).
    assert kill_eject < 1.5, "HAProxy took %.2f s to mark the killed host DOWN" % kill_eject
    # Each client thread has one request in flight; what was on host 2 is sent again elsewhere:
    # by HAProxy (retry-on empty-response, the connection closed without an answer; a refused
    # connection by option redispatch), by nginx (proxy_next_upstream error). Without retry-on,
    # HAProxy lost 0 to 2 of them in nine runs.
    assert kill == (0, 0), "requests failed when host 2 was killed: %s" % (kill,)
    # The requests sent to the hung host end with wsgid's 504 at request-timeout, which both
    # balancers send on to another host (HAProxy: retry-on 504; without it 5 failed each run).
    hang = [v for k, v in fails.items() if k.startswith("hang")][0]
    assert hang == (0, 0), "requests failed while host 3 hung: %s" % (hang,)
    assert eject < CLIENT_TIMEOUT and eject < 4.0, eject
    assert not problems, "\n".join(problems)
    assert load_end - started < 150


def deploy(h, version, load, how):
    """Drains h and starts it again with version; returns how long until no request went to it
    (per balancer) and until it answered again with version through both.

    how "wsgid": wsgictl drain (every group): wsgid exits 0 after drain-delay; a new wsgid is
    started. "group": wsgictl drain site: the group stops after drain-delay (the master stays;
    the group's TCP listener refuses connections); 2 s later (the new code being copied)
    wsgictl start site. WSGID_FLEET_STOP=term makes every deploy a plain SIGTERM and a new wsgid
    instead, without a drain: to see the test fail."""
    how = "term" if os.environ.get("WSGID_FLEET_STOP") == "term" else how
    t = time.monotonic()
    if how == "group":
        h.ctl("drain", "site")
        wait_for(lambda: not h.d.workers(), 15, what="the drained group to stop")
        t_gone = time.monotonic()
        time.sleep(2)
        h.set_version(version)
        h.ctl("start", "site")
        t_start = time.monotonic()
    else:
        if how == "term":
            h.d.signal(signal.SIGTERM)
        else:
            h.ctl("drain")
        assert h.d.wait_exit(15) == 0
        t_gone = time.monotonic()
        h.set_version(version)
        t_start = h.start()
    back = []
    for lb in ("haproxy", "nginx"):
        back.append(load.wait_answer(lb, h.name, version, since=t_start, timeout=10) - t_start)
    last = {}
    for r in load.between(t, t_gone):
        if r[3] and r[5] == h.name:
            last[r[2]] = r[1]
    return (", ".join("%s %.2f s" % (lb, last[lb] - t) for lb in sorted(last)),
            "haproxy %.2f, nginx %.2f s" % tuple(back))


def nginx_tries(tmp, host, t0, t1, clock):
    """How many requests nginx tried on host between t0 and t1 (monotonic), from its log."""
    n = 0
    addr = "%s:%d" % (netns.ADDRS[host], HTTP_PORT)
    for line in (tmp / "nginx" / "fleet.log").read_text().splitlines():
        f = line.split(" ", 2)
        if t0 <= float(f[0]) - clock < t1:
            n += f[2].split('"')[1].count(addr)
    return n


def settle():
    """Ends a phase: what it started has ended (at the normal pace) before the next begins."""
    time.sleep(1)


def failures(load, t0, t1):
    return tuple(sum(1 for r in load.between(t0, t1, lb) if not r[3])
                 for lb in ("haproxy", "nginx"))


ROW = "%-20s %7s %6s %7s %6s %7s %7s  %-30s %s"


def summary(load, rows, took, tmp):
    head = ROW % ("phase", "haproxy", "failed", "nginx", "failed", "slowest", "(nginx)",
                  "out of rotation after", "answering again after")
    lines = [head, "-" * len(head)]
    for name, t0, t1, out, back in rows:
        n = [len(load.between(t0, t1, lb)) for lb in ("haproxy", "nginx")]
        f = failures(load, t0, t1)
        slow = ["%.2f s" % max([r[1] - r[0] for r in load.between(t0, t1, lb)] or [0])
                for lb in ("haproxy", "nginx")]
        lines.append(ROW % (name, n[0], f[0], n[1], f[1], slow[0], slow[1], out, back))
    allr = load.records
    lines.append("%-20s %7d %6d %7d %6d" % (
        "whole test (%.0f s)" % took,
        sum(1 for r in allr if r[2] == "haproxy"),
        sum(1 for r in allr if r[2] == "haproxy" and not r[3]),
        sum(1 for r in allr if r[2] == "nginx"),
        sum(1 for r in allr if r[2] == "nginx" and not r[3])))
    bad = [r for r in allr if not r[3]]
    kinds = {}
    for r in bad:
        k = "%s %s %s" % (r[2], r[4] or "", r[7] if r[7] != "-" else "")
        kinds[k] = kinds.get(k, 0) + 1
    if kinds:
        lines.append("failures: " + ", ".join("%s x%d" % (k.strip(), v)
                                              for k, v in sorted(kinds.items())))
    text = "\n".join(lines)
    print("\n" + text)
    conftest.SUMMARIES.extend(lines)
    dest = os.environ.get("WSGID_FLEET_SUMMARY")
    if dest:
        Path(dest).write_text(text + "\n")
