"""wsgictl and the control socket: rolling restart under load, safe restart, reload, status,
stop/start (issue 3)."""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import fcgi
from helpers.clients import Conn, http_request
from helpers.config import make_config
from helpers.daemon import WSGICTL
from helpers.nginx import uwsgi_location
from helpers.procs import free_port, wait_for


PID_APP = '''import os

def application(environ, start_response):
    body = ("%d\\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def ctl(d, *args, timeout=60):
    r = subprocess.run([str(WSGICTL), "-s", str(d.tmp / "ctl.sock")] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def start(wsgid, tmp, processes=2, **extra):
    script = tmp / "pidapp.py"
    script.write_text(PID_APP)
    if os.geteuid() == 0:
        extra.setdefault("user", "root")
    d = wsgid(str(script), processes=processes, threads=4, top={"control": str(tmp / "ctl.sock")},
              **extra)
    d.unix_paths.append(str(tmp / "ctl.sock"))
    return d, script


def get_pid(addr):
    c = http.client.HTTPConnection(*addr, timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, (r.status, body)
    return int(body)


def test_rolling_restart_under_load_through_nginx(wsgid, nginx, tmp):
    d, _ = start(wsgid, tmp)
    ng = nginx(uwsgi_location(d.unix))
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    errors = []
    lock = threading.Lock()

    def load():
        while not stop.is_set():
            try:
                c = http.client.HTTPConnection(*ng.addr, timeout=10)
                c.request("GET", "/")
                r = c.getresponse()
                r.read()
                c.close()
                ok = r.status == 200
                if not ok:
                    errors.append(r.status)
            except Exception as e:  # noqa: BLE001 - any failure counts
                ok = False
                errors.append(repr(e))
            with lock:
                counts["ok" if ok else "failed"] += 1

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    times = []
    try:
        time.sleep(0.5)
        for _ in range(5):
            before = set(d.workers())
            t0 = time.monotonic()
            rc, out, err = ctl(d, "restart", "site")
            times.append(time.monotonic() - t0)
            assert rc == 0, (out, err)
            after = set(d.workers())
            d.seen_workers.update(after)
            wait_for(lambda: not (set(d.workers()) & before), timeout=20, what="old pids gone")
            assert len(after - before) >= 2, (before, after, out)
            assert out.count("\u2192") == 2, out
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print("rolling restarts of 2 workers: %s s; %d requests, %d failed"
          % (", ".join("%.3f" % t for t in times), counts["ok"], counts["failed"]))
    assert counts["failed"] == 0, errors[:5]
    assert counts["ok"] > 100


ECHO_PID_APP = '''import hashlib, os

def application(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n) if n else b""
    out = ("%d %s\\n" % (os.getpid(), hashlib.md5(body).hexdigest())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
'''

KEPT_UPSTREAM = """upstream site {
        server unix:%s;
        keepalive 32;
    }"""
KEPT_LOCATIONS = {
    "http": """location / {
            proxy_pass http://site;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }""",
    "fastcgi": """location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_keep_conn on;
            fastcgi_pass site;
        }""",
}


@pytest.mark.parametrize("replace", ["restart", "maximum-requests"])
@pytest.mark.parametrize("path", ["http", "fastcgi"])
def test_replacing_workers_loses_no_request_on_kept_connections(wsgid, nginx, tmp, path, replace):
    """nginx keeps its connections to wsgid (upstream keepalive: proxy_pass, fastcgi_keep_conn),
    and workers are replaced under a load of GETs and 20 KB POSTs (5 rolling restarts, or
    maximum-requests 1000): every request is answered whole, and nginx logs no error. A
    stopping worker closed its idle kept connections at once, and nginx,
    which had written a request on one, answered 502, which for a POST it does not retry
    (helper-57: 4-10 failed requests in 13,000 over 5 restarts; 57 in 8 s of maximum-requests
    1000). Now an HTTP answer says
    "Connection: close" once its worker stops, and a kept connection idle between requests goes
    to a running worker of the group instead of being closed (conn.c: wd__conn_hand_over): the
    closes after a while that came before it still lost up to 3 POSTs a run (helper-88)."""
    script = tmp / "echopid.py"
    script.write_text(ECHO_PID_APP)
    extra = {"maximum_requests": 1000} if replace == "maximum-requests" else {}
    if os.geteuid() == 0:
        extra["user"] = "root"
    d = wsgid(str(script), processes=2, threads=4, top={"control": str(tmp / "ctl.sock")},
              **extra)
    d.unix_paths.append(str(tmp / "ctl.sock"))
    # nginx logs no error either: once in some 50 runs it logged a request reset on a kept
    # FastCGI connection (a GET, which it sent again elsewhere), a stopping worker having closed
    # it 2 s after its stop, the workers it knew of replaced meanwhile (master_life.c:
    # tell_siblings, helper-100); a POST so reset was a failed request.
    ng = nginx(KEPT_LOCATIONS[path], http_extra=KEPT_UPSTREAM % d.unix)
    body = os.urandom(20000)
    want = hashlib.md5(body).hexdigest()
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0, "pids": set()}
    errors = []
    lock = threading.Lock()

    def load(post):
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection(*ng.addr, timeout=20)
                c.request("POST" if post else "GET", "/", body=body if post else None)
                r = c.getresponse()
                got = r.read().split()
                ok = r.status == 200 and len(got) == 2 and \
                    got[1].decode() == (want if post else hashlib.md5(b"").hexdigest())
                if not ok:
                    errors.append((post, r.status, got))
                pid = int(got[0]) if ok else 0
            except Exception as e:  # noqa: BLE001 - any failure counts
                ok, pid, c = False, 0, None
                errors.append((post, repr(e)))
            with lock:
                counts["ok" if ok else "failed"] += 1
                counts["pids"].add(pid)

    def served_by():
        with lock:
            return len(counts["pids"] - {0})

    threads = [threading.Thread(target=load, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        if replace == "restart":
            for _ in range(5):
                rc, out, err = ctl(d, "restart", "site")
                assert rc == 0, (out, err)
                d.seen_workers.update(d.workers())
                time.sleep(0.3)
            # A stopping worker serves its kept FastCGI connections on for 2 s
            # (WD_STOP_FCGI_S), and nginx reuses the same few: the load goes on past that, so
            # that the replacements serve it (all 3,147 requests came from one worker once).
            time.sleep(2.5 if path == "fastcgi" else 0)
        else:
            time.sleep(6)
        # The load goes on until the replacements have served too. maximum-requests 1000 of 2
        # workers: two replacements (4 workers) take some 2,000 requests, which 6 s held on a
        # quiet machine but not always under load or in the sanitizer build (1,435 requests in
        # 6 s, served by the 2 first workers alone). FastCGI restarts: nginx keeps sending on the
        # old workers' kept connections, served on for 2 s, and 2.5 s did not always see a
        # replacement serve under -n 8 (3 workers of 12).
        wait_for(lambda: served_by() >= 4, timeout=30, interval=0.2,
                 what="4 workers to have served (replacements among them)")
    finally:
        stop.set()
        for t in threads:
            t.join()
    pids = counts["pids"] - {0}
    print("%s, %s: %d requests, %d failed, served by %d workers"
          % (path, replace, counts["ok"], counts["failed"], len(pids)))
    # The code before lost 7 (restart) and 42 (maximum-requests) through HTTP, 7 and 21 through
    # FastCGI; then none through HTTP and up to 2 through FastCGI (the close after 2 s, or of an
    # idle connection, met a request nginx had written). A stopping worker now hands its idle kept
    # connections over to a running one (conn.c: wd__conn_hand_over): nothing is lost.
    assert counts["failed"] == 0, errors[:5]
    assert counts["ok"] > 100 and len(pids) >= 4, (counts["ok"], pids)


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("path", ["http", "fastcgi"])
def test_an_idle_kept_connection_outlives_its_replaced_worker(wsgid, tmp, path, processes):
    """A proxy's kept connection, idle between requests when its worker is replaced (`wsgictl
    restart`), goes to a running worker of the group: the proxy's next request on it, a POST sent
    after the old worker has exited, is answered there. Before, the old worker closed it once
    idle for WD_STOP_IDLE_S, and a request the proxy wrote as it closed was lost (nginx answers
    502 for a POST: test_replacing_workers_loses_no_request_on_kept_connections). HTTP comes on
    the TCP listener (the second: the listener's index goes along), FastCGI on the unix one. A
    group of one process hands it to the replacement."""
    script = tmp / "echopid.py"
    script.write_text(ECHO_PID_APP)
    d = wsgid(str(script), processes=processes, threads=2, keepalive_timeout=75,
              top={"control": str(tmp / "ctl.sock")})
    d.unix_paths.append(str(tmp / "ctl.sock"))
    body = os.urandom(20000)

    def ask(c, rid, post):
        data = body if post else b""
        if path == "http":
            head = {"Content-Length": str(len(data))} if post else {}
            c.send(http_request("POST" if post else "GET", "/", head, data))
            r = c.response()
            return r.status, r.body.split()
        params = {"REQUEST_METHOD": "POST" if post else "GET", "REQUEST_URI": "/",
                  "PATH_INFO": "/", "SCRIPT_NAME": "", "SERVER_PROTOCOL": "HTTP/1.1",
                  "SERVER_NAME": "localhost", "SERVER_PORT": "80"}
        if post:
            params["CONTENT_LENGTH"] = str(len(data))
        recs = fcgi.read_records(c.send(fcgi.request(params, data, rid=rid, keep=True)))
        assert fcgi.end_of(recs) == (0, fcgi.REQUEST_COMPLETE), recs
        out = fcgi.stdout_of(recs)
        return int(out.split()[1]), out.split(b"\r\n\r\n", 1)[1].split()

    c = Conn(d.tcp if path == "http" else d.unix)
    status, (pid, _) = ask(c, 1, False)
    assert status == 200
    old = int(pid)
    rc, out, err = ctl(d, "restart", "site")
    assert rc == 0, (out, err)
    # The old worker would have closed the connection 0.5 s after the stop (WD_STOP_IDLE_S);
    # wait until it has exited.
    wait_for(lambda: old not in d.workers(), timeout=15, interval=0.1,
             what="the old worker %d to exit" % old)
    status, got = ask(c, 2, True)
    assert status == 200 and got[1].decode() == hashlib.md5(body).hexdigest(), (status, got)
    assert int(got[0]) != old and int(got[0]) in d.workers(), (old, got, d.workers())
    d.wait_log(r"site:%d: stopped after .*; 1 idle connections handed over" % old)


def test_a_stopped_group_hands_no_connection_over(wsgid, tmp):
    """`wsgictl stop GROUP` stops every worker of the group: none hands its idle kept connections
    over (no worker would be left to take them: "stop last", conn.c: wd__conn_hand_over), each
    keeps them as before the hand-over (closed once idle 0.5 s). The other worker is held
    (SIGSTOP) so that its record still says ready when the first one stops."""
    script = tmp / "echopid.py"
    script.write_text(ECHO_PID_APP)
    d = wsgid(str(script), processes=2, threads=2, keepalive_timeout=75,
              top={"control": str(tmp / "ctl.sock")})
    d.unix_paths.append(str(tmp / "ctl.sock"))
    by_pid = {}
    for _ in range(50):
        c = Conn(d.unix)
        r = c.send(http_request("GET", "/", {})).response()
        assert r.status == 200
        by_pid.setdefault(int(r.body.split()[0]), []).append(c)
        if len(by_pid) == 2:
            break
    assert len(by_pid) == 2, by_pid
    a, b = sorted(by_pid)
    os.kill(b, signal.SIGSTOP)
    done = []
    t = threading.Thread(target=lambda: done.append(ctl(d, "stop", "site")))
    t.start()
    try:
        line = d.wait_log(r"site:%d: stopped after " % a, timeout=10)
    finally:
        os.kill(b, signal.SIGCONT)
        t.join()
    assert done and done[0][0] == 0, done
    assert "; 0 idle connections handed over" in line, line
    for c in by_pid[a]:
        assert c.closed(timeout=5)


@pytest.mark.parametrize("kind", ["kept", "fresh", "fastcgi-get-values"])
def test_a_replaced_worker_does_not_wait_for_idle_connections(wsgid, tmp, kind):
    """A worker being replaced holds one idle connection: a kept one (a request answered on it),
    a fresh one that has sent nothing yet, or a FastCGI one that only asked GET_VALUES. It
    exits in about WD_STOP_IDLE_S (0.5 s), not at graceful-timeout: before, the last two kept it
    until then, past keepalive-timeout and header-timeout's reach (helper-58)."""
    d = wsgid("hello", processes=1, threads=2, keepalive_timeout=75, graceful_timeout=4,
              shutdown_timeout=1, top={"control": str(tmp / "ctl.sock")})
    d.unix_paths.append(str(tmp / "ctl.sock"))
    old = d.workers()[0]
    c = Conn(d.unix)
    if kind == "kept":
        c.send(http_request("GET", "/", {}))
        assert c.response().status == 200
    elif kind == "fastcgi-get-values":
        c.send(fcgi.record(fcgi.GET_VALUES, 0, fcgi.pairs({"FCGI_MAX_REQS": ""})))
        fcgi.read_records(c)
    t0 = time.monotonic()
    rc, out, err = ctl(d, "restart", "site")
    assert rc == 0, (out, err)
    wait_for(lambda: old not in d.workers(), timeout=10, what="the old worker gone")
    took = time.monotonic() - t0
    d.seen_workers.update(d.workers())
    c.close()
    print("%s: the old worker gone %.2f s after the restart began" % (kind, took))
    assert "graceful-timeout" not in d.log(), d.log()


def test_safe_restart_keeps_old_workers(wsgid, tmp):
    d, script = start(wsgid, tmp)
    old = set(d.workers())
    script.write_text("import no_such_module_here\n" + PID_APP)
    d.expect_log("No module named 'no_such_module_here'", "failed", "Traceback", "restart failed",
                 r"^\s", "ModuleNotFoundError", "cannot load", "pidapp.py", "import no_such",
                 "exited with status 3", r"group site:\s")
    rc, out, err = ctl(d, "restart", "site")
    assert rc == 1, (out, err)
    assert "no_such_module_here" in err and "keep serving" in err
    assert set(d.workers()) == old
    assert get_pid(d.tcp) in old
    rc, out, err = ctl(d, "status")
    assert "no_such_module_here" in out
    # Shown for the group until a rolling restart succeeds (issue #13).
    assert [x for x in out.splitlines() if x.startswith("  restart failed (the old workers keep "
                                                          "serving)") and
            "no_such_module_here" in x], out
    script.write_text(PID_APP)
    rc, out, err = ctl(d, "restart", "site")
    assert rc == 0, (out, err)
    d.seen_workers.update(d.workers())
    rc, out, err = ctl(d, "status", "--json")
    assert json.loads(out)["groups"][0]["reload_error"] is None, out


SLOW_APP = '''import os, time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(3)
    body = ("%d\\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.mark.parametrize("how", ["stop", "sigterm"])
def test_a_stopping_group_refuses_new_connections_at_once(wsgid, tmp, how):
    """While a stopped group (or wsgid itself) finishes a long request, a new connection to its
    TCP listener is refused at once, or taken and answered: never queued and then reset after
    its client sent the request (a 502 behind nginx, not retried for a POST). Before, the
    listener took connections into its queue until the last worker exited, up to
    graceful-timeout + shutdown-timeout later, and then reset them (helper-62)."""
    script = tmp / "slow.py"
    script.write_text(SLOW_APP)
    extra = {"user": "root"} if os.geteuid() == 0 else {}
    d = wsgid(str(script), processes=1, threads=2, top={"control": str(tmp / "ctl.sock")},
              **extra)
    d.unix_paths.append(str(tmp / "ctl.sock"))
    slow = Conn(d.tcp, timeout=10)
    slow.send(http_request("POST", "/slow", {"Connection": "close", "Content-Length": "2"}) +
              b"ab")
    time.sleep(0.5)  # the long request runs
    if how == "stop":
        assert ctl(d, "stop", "site")[0] == 0
    else:
        d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    outcomes = []
    for _ in range(5):
        try:
            c = socket.create_connection(d.tcp, timeout=5)
        except ConnectionRefusedError:
            outcomes.append("refused")
            continue
        try:
            c.sendall(http_request("POST", "/", {"Connection": "close", "Content-Length": "2"}) +
                      b"ab")
            data = b""
            while True:
                k = c.recv(65536)
                if not k:
                    break
                data += k
            outcomes.append(data.split(b"\r\n", 1)[0].decode() if data else "closed unanswered")
        except ConnectionResetError:
            outcomes.append("reset")
        finally:
            c.close()
        time.sleep(0.1)
    assert set(outcomes) <= {"refused", "HTTP/1.1 200 OK", "HTTP/1.1 503 Service Unavailable"}, \
        outcomes
    assert slow.response().status == 200  # the long one finishes


def test_a_missing_chdir_is_named_where_the_operator_looks(wsgid, tmp):
    """A chdir that is no directory is refused by the reload's check with file:line:col, as a
    missing app script is; one removed under a running group makes its restart fail naming
    the directory in wsgictl and status, not "the Python interpreter could not be initialised
    ... (see the error log for the traceback)" with the cause in a worker's log line only
    (helper-62)."""
    (tmp / "cdir").mkdir()
    d, script = start(wsgid, tmp, chdir=str(tmp / "cdir"))
    good = d.conf_path.read_text()
    d.conf_path.write_text(good.replace(str(tmp / "cdir"), str(tmp / "nowhere")))
    d.expect_log("reload refused", "reload failed", "no such directory", "cannot chdir",
                 "restart failed", "exited with status 3")
    rc, out, err = ctl(d, "reload")
    assert rc == 1, (out, err)
    assert re.search(r"%s:\d+:\d+: groups\.site\.chdir: no such directory %s/nowhere: give an "
                     r"existing directory" % (re.escape(str(d.conf_path)), re.escape(str(tmp))),
                     err), err
    d.conf_path.write_text(good)
    old = set(d.workers())
    (tmp / "cdir").rmdir()
    rc, out, err = ctl(d, "restart", "site")
    assert rc == 1, (out, err)
    cause = "group site: cannot chdir to %s/cdir: No such file or directory" % tmp
    assert cause in err and "keep serving" in err, err
    assert "could not be initialised" not in err and "traceback" not in err, err
    assert set(d.workers()) == old
    st = json.loads(ctl(d, "status", "--json")[1])["groups"][0]
    assert cause in st["reload_error"], st
    (tmp / "cdir").mkdir()
    rc, out, err = ctl(d, "restart", "site")
    assert rc == 0, (out, err)
    d.seen_workers.update(d.workers())


def test_a_start_that_fails_leaves_the_group_stopped(wsgid, tmp):
    """wsgictl start of a stopped group whose app no longer imports says so and leaves the group
    stopped: no worker crash-looping, its TCP listener refusing connections at once, status
    saying why, and a second start (the app fixed) starting every worker. Before, the group was
    left half started: the failing slot crash-looped, the second never ran, the listener took
    connections that nobody answered, and `start` said it was running already (helper-62)."""
    d, script = start(wsgid, tmp)
    rc, out, err = ctl(d, "stop", "site")
    assert rc == 0, err
    wait_for(lambda: not d.workers(), timeout=20, what="workers stopped")
    script.write_text("raise RuntimeError('cannot import now')\n" + PID_APP)
    d.expect_log("cannot import now", "Traceback", "start failed", r"^\s", "RuntimeError",
                 "cannot load", "pidapp.py", "exited with status 3", r"group site:\s",
                 "could not start")
    rc, out, err = ctl(d, "start", "site")
    assert rc == 1, (out, err)
    assert re.search(r"worker 1 \(pid \d+\) could not start: .*cannot import now; the group stays "
                     r"stopped \(wsgictl start site once it is fixed\)", err), err
    wait_for(lambda: not d.workers(), timeout=20, what="the started workers gone")
    time.sleep(2.5)  # a crash loop would have respawned by now (1 s, then 2 s)
    assert not d.workers(), "a worker of the stopped group runs"
    assert "respawning" not in d.log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(d.tcp, timeout=5).close()
    st = json.loads(ctl(d, "status", "--json")[1])["groups"][0]
    assert st["stopped"] and st["failed_op"] == "start" and "cannot import now" in st["reload_error"]
    out = ctl(d, "status")[1]
    assert [x for x in out.splitlines() if x.startswith("  start failed (the group stays stopped)")
            and "cannot import now" in x], out
    script.write_text(PID_APP)
    rc, out, err = ctl(d, "start", "site")
    assert rc == 0, (out, err)
    new = d.workers()
    d.seen_workers.update(new)
    assert len(new) == 2 and get_pid(d.tcp) in new
    assert json.loads(ctl(d, "status", "--json")[1])["groups"][0]["reload_error"] is None


def test_reload_broken_then_new_group(wsgid, tmp):
    d, script = start(wsgid, tmp)
    good = d.conf_path.read_text()
    d.conf_path.write_text(good + "  broken: [\n")
    d.expect_log("reload refused", "reload failed")
    rc, out, err = ctl(d, "reload")
    assert rc == 1, (out, err)
    assert "%s:" % d.conf_path in err and "reload refused" in err
    old = set(d.workers())
    assert get_pid(d.tcp) in old

    port = free_port()
    extra = make_config(tmp, {"site2": {"app": str(script), "listen": ["127.0.0.1:%d" % port],
                                        **({"user": "root"} if os.geteuid() == 0 else {})}})
    new_group = extra[extra.index("groups:\n") + len("groups:\n"):]
    d.conf_path.write_text(good + new_group)
    rc, out, err = ctl(d, "reload")
    assert rc == 0, (out, err)
    assert "added: site2" in out and "unchanged: site" in out
    assert get_pid(("127.0.0.1", port)) not in old
    assert set(d.workers()) > old
    d.seen_workers.update(d.workers())


def test_a_group_a_reload_adds_that_cannot_start_stays_stopped(wsgid, tmp):
    """A reload that adds a group whose app fails: the reload says so (exit 1), the group is
    there but stopped, its port refuses connections, and `wsgictl start` runs it once fixed.
    Before, the group ran a crash-looping slot and never its second, its port took connections
    nobody answered, and the same reload again said "unchanged" (helper-62)."""
    d, script = start(wsgid, tmp)
    bad = tmp / "bad.py"
    bad.write_text("raise RuntimeError('cannot import now')\n" + PID_APP)
    port = free_port()
    extra = make_config(tmp, {"site2": {"app": str(bad), "processes": 2,
                                        "listen": ["127.0.0.1:%d" % port],
                                        **({"user": "root"} if os.geteuid() == 0 else {})}})
    d.conf_path.write_text(d.conf_path.read_text() +
                           extra[extra.index("groups:\n") + len("groups:\n"):])
    d.expect_log("cannot import now", "Traceback", "start failed", r"^\s", "RuntimeError",
                 "cannot load", "bad.py", "exited with status 3", r"group site2:\s",
                 "could not start")
    old = set(d.workers())
    rc, out, err = ctl(d, "reload")
    assert rc == 1, (out, err)
    assert "group site2: worker 1" in err and "the group stays stopped" in err, err
    wait_for(lambda: set(d.workers()) == old, timeout=20, what="site2's workers gone")
    time.sleep(2.5)
    assert set(d.workers()) == old and "respawning" not in d.log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    groups = {g["name"]: g for g in json.loads(ctl(d, "status", "--json")[1])["groups"]}
    assert groups["site2"]["stopped"] and groups["site2"]["failed_op"] == "start"
    bad.write_text(PID_APP)
    rc, out, err = ctl(d, "start", "site2")
    assert rc == 0, (out, err)
    d.seen_workers.update(d.workers())
    assert get_pid(("127.0.0.1", port)) not in old


def test_status_lists_every_worker(wsgid, tmp):
    d, _ = start(wsgid, tmp, processes=3)
    for _ in range(5):
        get_pid(d.tcp)
    pids = d.workers()
    rc, out, err = ctl(d, "status")
    assert rc == 0, err
    for p in pids:
        assert " %d " % p in out, out
    rc, out, err = ctl(d, "status", "--json")
    st = json.loads(out)
    (g,) = st["groups"]
    assert sorted(w["pid"] for w in g["workers"]) == pids
    assert g["requests"] >= 5
    assert all(w["state"] == "ready" for w in g["workers"])


def test_stop_start_group_and_usage(wsgid, tmp):
    d, _ = start(wsgid, tmp)
    old = d.workers()
    rc, out, err = ctl(d, "stop", "site")
    assert rc == 0, err
    wait_for(lambda: not d.workers(), timeout=20, what="workers stopped")
    rc, out, err = ctl(d, "start", "site")
    assert rc == 0, err
    new = d.workers()
    d.seen_workers.update(new)
    assert len(new) == 2 and not set(new) & set(old)
    assert get_pid(d.tcp) in new
    assert ctl(d, "restart")[0] == 2
    rc, out, _ = ctl(d, "restart", "--help")
    assert rc == 0 and "Rolling restart" in out
    r = subprocess.run([str(WSGICTL), "-s", str(d.tmp / "nope.sock"), "status"],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "is wsgid running?" in r.stderr


def test_a_group_whose_name_starts_with_a_dash(wsgid, tmp):
    """The config takes "-x" as a group name (letters, digits, '_', '.', '-'), but wsgictl took
    every argument that starts with '-' for an option: `wsgictl restart -x` and `status -x` were
    usage errors and there was no `--`, so no command could name the group (helper-81). After
    "--", the argument is the GROUP."""
    d, _ = start(wsgid, tmp, processes=1, group="-x")
    assert ctl(d, "restart", "-x")[0] == 2  # an unknown option, as before
    rc, out, err = ctl(d, "restart", "--", "-x")
    assert rc == 0 and re.search(r"^-x slot 1: pid \d+ → \d+$", out, re.M), (out, err)
    d.seen_workers.update(d.workers())
    rc, out, err = ctl(d, "status", "--json", "--", "-x")
    assert rc == 0, err
    assert [g["name"] for g in json.loads(out)["groups"]] == ["-x"]
    rc, out, err = ctl(d, "stop", "--", "-x")
    assert rc == 0, err
    wait_for(lambda: not d.workers(), timeout=20, what="workers stopped")
    rc, out, err = ctl(d, "start", "--", "-x")
    assert rc == 0, err
    d.seen_workers.update(d.workers())
    rc, out, err = ctl(d, "status", "--", "--help")  # a GROUP after "--", not the help
    assert rc == 1 and "no group --help" in err, (rc, out, err)
    assert ctl(d, "restart", "--", "-x", "y")[0] == 2
    assert ctl(d, "reload", "--", "-x")[0] == 2
    rc, out, _ = ctl(d, "--help")
    assert "wsgictl restart -- -x" in out


def test_reload_sees_every_setting(wsgid, tmp):
    """A reload that changes only one setting restarts the group with it (issue #11, point 6:
    header-timeout, body-timeout, keepalive-timeout, send-timeout, busy-poll and access-log were
    compared by nobody, so such a reload said "unchanged" and kept the old values)."""
    d, _ = start(wsgid, tmp, processes=1)
    good = d.conf_path.read_text()
    assert "    threads: 4\n" in good, good
    for line in ["header-timeout: 1", "body-timeout: 2", "keepalive-timeout: 3",
                 "send-timeout: 4", "busy-poll: 20us", "access-log: 'off'",
                 "max-connections: 100"]:
        d.conf_path.write_text(good.replace("    threads: 4\n", "    threads: 4\n    %s\n" % line))
        rc, out, err = ctl(d, "reload")
        assert rc == 0, (line, out, err)
        assert "restarted: site" in out, (line, out)
        d.conf_path.write_text(good)
        rc, out, err = ctl(d, "reload")
        assert rc == 0 and "restarted: site" in out, (line, out, err)
        d.seen_workers.update(d.workers())
    # The new value is the one in force: a head that stops coming is cut after header-timeout.
    d.conf_path.write_text(good.replace("    threads: 4\n", "    threads: 4\n    header-timeout: 1\n"))
    rc, out, err = ctl(d, "reload")
    assert rc == 0, (out, err)
    d.seen_workers.update(d.workers())
    with socket.create_connection(d.tcp, timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        data = s.recv(4096)
        took = time.monotonic() - t0
    assert data == b"", data  # closed (design: an incomplete head gets no answer)
    assert took < 5, "the head was cut after %.1f s, not header-timeout 1" % took


def test_reload_compares_values_not_text(wsgid, tmp):
    """A reload whose file says the same in other words (a port written with a leading zero, env
    in another order) leaves the group alone: it was compared as written and rolled the workers.
    A changed env value still restarts it."""
    d, _ = start(wsgid, tmp, processes=1, env={"A": "1", "B": "2"})
    text = d.conf_path.read_text()
    port = d.tcp[1]
    assert ":%d\"" % port in text and 'A: "1", B: "2"}' in text, text
    same = text.replace(":%d\"" % port, ":0%d\"" % port).replace('A: "1", B: "2"}',
                                                                 'B: "2", A: "1"}')
    d.conf_path.write_text(same)
    rc, out, err = ctl(d, "reload")
    assert rc == 0 and "unchanged: site" in out, (out, err, same)
    d.conf_path.write_text(same.replace('B: "2"', 'B: "3"'))
    rc, out, err = ctl(d, "reload")
    assert rc == 0 and "restarted: site" in out, (out, err)
    d.seen_workers.update(d.workers())


def test_control_socket_refuses_bad_lines(wsgid, tmp):
    """Every line gets one JSON line back, in order: a parse error, a non-object, a request
    without a cmd string, an unknown command, then a good one (daemon/master/control_proto.c)."""
    d, _ = start(wsgid, tmp, processes=1)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(tmp / "ctl.sock"))
    s.sendall(b'not json\n\n[1, 2]\n{"cmd": 5}\n{"cmd": "frob"}\n{"cmd": "status"}\n')
    buf = b""
    while buf.count(b"\n") < 5:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    s.close()
    replies = [json.loads(x) for x in buf.split(b"\n")[:5]]
    assert [r["ok"] for r in replies] == [False, False, False, False, True], replies
    assert "error" in replies[0] and replies[0]["error"]
    assert replies[1]["error"] == "a request is a JSON object"
    assert replies[2]["error"] == 'no "cmd" in the request'
    assert replies[3]["error"] == 'unknown command "frob"'
    assert "status" in replies[4]


def test_reload_says_what_waits_for_the_next_start(wsgid, tmp):
    """A reload whose `metrics:` (or control, pidfile, agent-check) differs from what runs says
    that it waits for the next start, in the log and on wsgictl's stderr, at every reload until
    then, and says nothing once the file is back to what runs: it said nothing (the old port kept
    answering, the new one refused), then compared with the previous file, not with what ran."""
    d, _ = start(wsgid, tmp, processes=1)
    port = free_port()
    text = d.conf_path.read_text()
    d.conf_path.write_text("metrics: 127.0.0.1:%d\n" % port + text)
    d.expect_log(r"takes effect at the next start")
    for _ in range(2):
        rc, out, err = ctl(d, "reload")
        assert rc == 0 and "unchanged: site" in out, (out, err)
        assert "not applied until wsgid restarts: metrics" in err, err
    assert d.log().count("reload: `metrics:` 127.0.0.1:%d (running: none) takes effect at the "
                         "next start of wsgid" % port) == 2, d.log()
    d.conf_path.write_text(text)
    rc, out, err = ctl(d, "reload")
    assert rc == 0 and "not applied" not in err, (out, err)
