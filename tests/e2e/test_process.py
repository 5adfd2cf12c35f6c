"""Processes: display names in ps, crash respawn, start-up failure, graceful stop, --check."""
import os
import signal
import subprocess
import threading
import time

import pytest

from helpers.clients import HELLO, Conn, assert_hello, http_request, request
from helpers.config import app, make_config
from helpers.daemon import WSGICTL, WSGID_BIN
from helpers.procs import cmdline, comm, wait_for


def _ps(fmt):
    out = subprocess.run(["ps", "-e", "-o", fmt], capture_output=True, text=True,
                         check=True).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        pid, _, rest = line.strip().partition(" ")
        rows[int(pid)] = rest.strip()
    return rows


def test_display_name_default(wsgid):
    d = wsgid("hello", processes=2, threads=2)
    workers = d.workers()
    assert len(workers) == 2
    args = _ps("pid,args")
    comms = _ps("pid,comm")
    for pid in workers:
        assert args[pid] == "(wsgi:site)"
        assert comms[pid] == "(wsgi:site)"
        assert cmdline(pid) == b"(wsgi:site)\0"
        assert comm(pid) == b"(wsgi:site)"
    assert args[d.pid].split()[0].endswith("wsgid")
    # `ps -e` (no -o) shows the short name too.
    plain = subprocess.run(["ps", "-e"], capture_output=True, text=True, check=True).stdout
    assert any(line.split()[0] == str(workers[0]) and line.endswith("(wsgi:site)")
               for line in plain.splitlines()[1:])
    # pgrep -f finds the workers by their whole name.
    found = subprocess.run(["pgrep", "-f", "^\\(wsgi:site\\)$"], capture_output=True,
                           text=True).stdout.split()
    assert set(workers) <= {int(p) for p in found}


def test_display_name_custom_long(wsgid):
    name = "wsgi %{GROUP} process %{PROCESS} with a rather long display name"
    d = wsgid("hello", processes=2, display_name=name)
    args = _ps("pid,args")
    seen = set()
    for pid in d.workers():
        a = args[pid]
        assert a.startswith("wsgi site process ") and a.endswith(" with a rather long display name")
        seen.add(a)
        assert comm(pid) == a.encode()[:15]
    assert seen == {"wsgi site process 1 with a rather long display name",
                    "wsgi site process 2 with a rather long display name"}


def test_display_name_two_groups(wsgid, tmp):
    text = make_config(tmp, {
        "alpha": {"app": app("hello"), "listen": ["unix:%s/a.sock" % tmp], "threads": 2},
        "beta": {"app": app("environ"), "listen": ["unix:%s/b.sock" % tmp], "threads": 2,
                 "processes": 2},
    })
    d = wsgid(config=text)
    args = _ps("pid,args")
    names = sorted(args[p] for p in d.workers())
    assert names == ["(wsgi:alpha)", "(wsgi:beta)", "(wsgi:beta)"]
    assert_hello("%s/a.sock" % tmp)
    r = request("%s/b.sock" % tmp)
    assert b'"wsgid.process_group": "beta"' in r.body


def test_worker_killed_is_respawned(wsgid):
    d = wsgid("hello", processes=2, threads=2)
    d.expect_log(r"(?i)signal|kill|exit|died|respawn|crash")
    old = d.workers()
    assert len(old) == 2
    victim = old[0]
    os.kill(victim, signal.SIGKILL)

    def replaced():
        now = d.workers()
        return len(now) == 2 and victim not in now and now
    new = wait_for(replaced, 5, what="a new worker")
    d.seen_workers.update(new)
    new_pid = (set(new) - set(old)).pop()
    assert cmdline(new_pid) == b"(wsgi:site)\0"
    # Wait until it accepts: some requests land on it (two processes share the listener).
    for _ in range(20):
        assert_hello(d.tcp)
    assert d.running()


def test_only_worker_killed_is_respawned_and_serves(wsgid):
    d = wsgid("environ", threads=2)
    d.expect_log(r"(?i)signal|kill|exit|died|respawn|crash")
    (victim,) = d.workers()
    os.kill(victim, signal.SIGKILL)

    def served_by_new():
        try:
            r = request(d.tcp, timeout=2)
        except OSError:
            return False
        return r.status == 200 and d.workers() and victim not in d.workers()
    wait_for(served_by_new, 5, interval=0.1, what="the new worker to serve")
    d.seen_workers.update(d.workers())


def test_app_import_failure_exits_non_zero(wsgid):
    d = wsgid("badimport", wait=False)
    d.expect_failure = True
    d.expect_log(r"site:\d+: group site: ",  # the traceback, from the worker
                 r"master: group site worker 1 \(pid \d+\): group site: cannot load app",
                 r"master: group site: the application could not be loaded")
    rc = d.wait_exit(30)
    assert rc != 0
    out = d.log()
    assert "wsgid_e2e_no_such_module" in out
    assert "ModuleNotFoundError" in out or "No module named" in out
    assert "all workers ready" not in out


def test_sigterm_lets_in_flight_request_finish(wsgid, tmp):
    d = wsgid("slow", threads=2)
    result = {}

    def client():
        try:
            result["r"] = request(d.tcp, path="/?t=2", timeout=15)
        except Exception as e:   # reported below
            result["e"] = e
    t = threading.Thread(target=client)
    t.start()
    wait_for(lambda: (tmp / "slow-started").exists(), 5, what="the slow request to start")
    d.signal(signal.SIGTERM)
    t.join(20)
    assert "e" not in result, result
    r = result["r"]
    assert r.status == 200 and r.body == b"slept 2.0\n"
    assert d.wait_exit(20) == 0


def test_sigterm_stops_accepting_and_exits(wsgid):
    d = wsgid("hello")
    assert_hello(d.tcp)
    # An idle keep-alive connection must not hold the stop.
    c = Conn(d.tcp)
    c.send(http_request())
    assert c.response().body == HELLO
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait_exit(20) == 0
    assert time.monotonic() - t0 < 10
    c.close()
    assert not os.path.exists(d.unix)


def test_pidfile(wsgid, tmp):
    d = wsgid("hello", top={"pidfile": str(tmp / "w.pid")})
    assert (tmp / "w.pid").read_text().strip() == str(d.pid)


def test_control_socket(wsgid, tmp):
    d = wsgid("hello", top={"control": str(tmp / "w.ctl")})
    assert os.path.exists(tmp / "w.ctl")
    d.unix_paths.append(str(tmp / "w.ctl"))


def test_check_config(tmp):
    good = tmp / "good.yaml"
    good.write_text(make_config(tmp, {"g": {"app": app("hello"), "listen": ["127.0.0.1:1"]}}))
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(good)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp / "bad.yaml"
    bad.write_text("groups:\n  g:\n    app: %s\n    listen: [127.0.0.1:1]\n"
                   "    no-such-key: 1\n" % app("hello"))
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(bad)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    msg = r.stdout + r.stderr
    assert "no-such-key" in msg and "bad.yaml" in msg and ":5:" in msg, msg


def test_config_given_twice_is_refused(tmp):
    """wsgid -c A -c B ran B alone, A's groups left out without a word (helper-81)."""
    a, b = tmp / "a.yaml", tmp / "b.yaml"
    for f in (a, b):
        f.write_text(make_config(tmp, {"g": {"app": app("hello"), "listen": ["127.0.0.1:1"]}}))
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(a), "-c", str(b)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert ('wsgid: -c given twice ("%s", then "%s"): one file holds every group; put the groups '
            "of both in one file, or run one wsgid a file" % (a, b)) in r.stderr, r.stderr


def test_check_refuses_a_control_path_too_long(tmp):
    """control: is a unix socket's path: one past sun_path's 107 bytes passed --check, and the
    start failed with "control: the path ... is too long for a unix socket", naming neither the
    file nor the line (helper-72). Refused when the file is read, as a listen path is."""
    path = "ctl/" + "c" * 110 + ".sock"
    bad = tmp / "bad.yaml"
    bad.write_text("control: %s\ngroups:\n  g:\n    app: %s\n    listen: 127.0.0.1:1\n"
                   % (path, app("hello")))
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(bad)], capture_output=True,
                       text=True, timeout=30)
    full = str(tmp / path)
    assert r.returncode == 1
    assert ("bad.yaml:1:10: control: unix socket path too long (%d bytes, at most 107): %s; give "
            "a shorter one (relative paths are relative to the file's directory)"
            % (len(full), full)) in r.stderr, r.stderr


def test_example_configs_check():
    from helpers.config import REPO
    for conf in ("config.example.yaml", "examples/flask/wsgid.yaml"):
        r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(REPO / conf)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (conf, r.stdout + r.stderr)


def test_no_fd_leak_in_worker(wsgid, tmp):
    """Like NGINX Unit's suite: a worker's fd count comes back to where it was."""
    from helpers.clients import raw, uwsgi_call
    d = wsgid("slowclients", threads=4)
    (worker,) = d.workers()

    def nfds():
        return len(os.listdir("/proc/%d/fd" % worker))

    def traffic():
        assert_hello(d.tcp)
        assert_hello(d.unix)
        assert uwsgi_call(d.unix, path="/").status == 200
        assert request(d.tcp, path="/big?size=3000000").status == 200
        assert request(d.tcp, path="/gen?size=3000000").status == 200
        raw(d.tcp, b"GARBAGE\r\n\r\n")
        with Conn(d.tcp) as c:       # a client that leaves mid-answer
            c.send(http_request("GET", "/big?size=5000000"))
            c._fill()
        with Conn(d.tcp) as c:       # and one that leaves mid-request
            c.send(http_request("POST", "/", {"Content-Length": "100000"}) + b"x" * 1000)
    traffic()
    time.sleep(0.5)
    before = nfds()
    for _ in range(5):
        traffic()
    time.sleep(1.0)
    deadline = time.monotonic() + 5
    while nfds() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert nfds() <= before, (before, nfds(), os.listdir("/proc/%d/fd" % worker))


def test_an_upgraded_binary_does_not_start_the_workers(wsgid, tmp, monkeypatch):
    """A package upgrade renames a new binary over the running one (dpkg): the master keeps its
    own, and so do the workers it starts until it is restarted (README, "The Debian package").
    It executed the file at its path again (helper-72): a restart ran the new binary's workers
    under the old master, here a script that says it ran and fails."""
    bindir = tmp / "bin"
    bindir.mkdir()
    exe = bindir / "wsgid"
    exe.write_bytes(WSGID_BIN.read_bytes())
    exe.chmod(0o755)
    monkeypatch.setattr("helpers.daemon.WSGID_BIN", exe)
    ctl = tmp / "ctl.sock"
    d = wsgid("hello", top={"control": str(ctl)})
    d.unix_paths.append(str(ctl))
    (old,) = d.workers()
    assert os.readlink("/proc/%d/exe" % old) == str(exe)

    marker = tmp / "new-binary-ran"
    new = bindir / "wsgid.dpkg-new"
    new.write_text("#!/bin/sh\necho \"$0\" >> %s\nexit 1\n" % marker)
    new.chmod(0o755)
    os.rename(new, exe)
    r = subprocess.run([str(WSGICTL), "-s", str(ctl), "restart", "site"], capture_output=True,
                       text=True, timeout=60)
    assert not marker.exists(), "the new binary started a worker: %r" % marker.read_text()
    assert r.returncode == 0, (r.stdout, r.stderr, d.log())
    wait_for(lambda: old not in d.workers(), timeout=20, what="the old worker stopped")
    (w,) = d.workers()
    assert os.readlink("/proc/%d/exe" % w) == "%s (deleted)" % exe
    assert cmdline(w) == b"(wsgi:site)\0"
    assert comm(w) == b"(wsgi:site)"
    assert_hello(d.tcp)
