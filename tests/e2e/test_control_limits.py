"""The control socket against clients that misbehave (one that never reads its replies, many
idle ones, one that shuts its side after its request), and wsgictl against a master that does
(stopped, or stopping during a restart); what wsgictl prints (status GROUP --json, escaped
control characters, --help anywhere, stop that returns once wsgid has stopped, top's columns).
Each was a fault a review proved against a live wsgid."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from helpers.clients import recv_all
from helpers.config import make_config
from helpers.daemon import WSGICTL
from helpers.procs import free_port, wait_for

SLOW_APP = '''import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT", "0")))
if os.environ.get("FAIL_WITH"):
    raise RuntimeError(os.environ["FAIL_WITH"])


def application(environ, start_response):
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    body = b"%d\\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def start(wsgid, tmp, groups=("site",), **extra):
    (tmp / "slow.py").write_text(SLOW_APP)
    gs = {}
    for name in groups:
        g = {"app": str(tmp / "slow.py"), "threads": 2, "processes": 1,
             "listen": ["127.0.0.1:%d" % free_port()]}
        g.update(extra)
        gs[name] = g
    d = wsgid(config=make_config(tmp, gs, control=str(tmp / "ctl.sock")))
    d.unix_paths.append(str(tmp / "ctl.sock"))
    return d


def ctl(d, *args, timeout=60):
    r = subprocess.run([str(WSGICTL), "-s", str(d.tmp / "ctl.sock")] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def connect(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.tmp / "ctl.sock"))
    return s


def test_a_client_that_never_reads(wsgid, tmp):
    """Requests sent without reading a reply: the master takes no more once 256 KiB of replies
    wait, so its memory stops growing (it grew by 600 MB in 40 s), and it answers others
    meanwhile. Measured as the growth between the 2nd and the 6th second of sending, which the
    sanitizer build's quarantine does not blur."""
    d = start(wsgid, tmp)
    s = connect(d)
    s.setblocking(False)
    line = b'{"cmd":"status"}\n' * 64
    sent, rss = 0, []
    try:
        for seconds in (2, 4):
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                try:
                    sent += s.send(line)
                except BlockingIOError:
                    time.sleep(0.01)
            rss.append(rss_kib(d.pid))
        t0 = time.monotonic()
        rc, out, err = ctl(d, "status", timeout=10)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert rc == 0 and "group site" in out, (out, err)
    print("sent %d bytes of requests, no reply read: master RSS %d KiB at 2 s, %+d KiB from 2 to "
          "6 s; wsgictl status meanwhile %.3f s" % (sent, rss[0], rss[1] - rss[0], took))
    assert rss[1] - rss[0] < 8 * 1024, rss


def test_idle_connections_are_bounded(wsgid, tmp):
    """64 connections at most (20,000 idle ones took the master's fds: no worker could be
    spawned): a 65th is refused while they are fresh; once one has been idle 5 s, a new one
    closes the idlest and is served (64 left idle kept every wsgictl out until the sweep, 30 s);
    each is closed after 30 s without a request. wsgictl refused so exits 3, as when it cannot
    reach wsgid, for a script to try again (helper-62)."""
    d = start(wsgid, tmp)
    held = [connect(d) for _ in range(64)]
    extra = connect(d)
    extra.settimeout(5)
    reply = json.loads(extra.recv(4096).decode().splitlines()[0])
    assert reply["ok"] is False and "too many control connections" in reply["error"], reply
    rc, out, err = ctl(d, "status")  # exits 3, "cannot be reached", where it said 1: "failed"
    assert rc == 3 and "too many control connections open (64)" in err, (rc, out, err)
    d.expect_log(r"control: a connection refused: 64 open", r"control: closed \d+ connections? "
                 r"idle", r"control: 64 connections open: closed one idle")
    # a worker killed meanwhile is started again
    (w,) = d.workers()
    d.expect_log(r"killed by signal 9")
    os.kill(w, signal.SIGKILL)
    wait_for(lambda: d.workers() and d.workers() != [w], timeout=20, what="a new worker")
    d.seen_workers.update(d.workers())
    time.sleep(3)
    held[0].send(b'{"cmd": ')  # a line on its way: not idle for 5 s from now
    time.sleep(2.5)
    rc, out, err = ctl(d, "status")
    assert rc == 0, err
    held[1].settimeout(1)
    assert held[1].recv(1) == b""  # the idlest gave way
    held[0].settimeout(0.5)
    try:
        held[0].recv(1)
        raise AssertionError("a client with a line on its way was closed")
    except socket.timeout:
        pass  # still open: it had sent a byte
    d.wait_log(r"control: 64 connections open: closed one idle for \d+ s for a new one")
    held[2].settimeout(45)
    assert held[2].recv(1) == b""  # closed by the master after 30 s idle
    for s in held + [extra]:
        s.close()


def test_a_client_that_shuts_its_side_gets_its_reply(wsgid, tmp):
    """socat and nc -N send the request and shut their side: the reply to a request that is not
    answered at once (a restart) was never sent."""
    d = start(wsgid, tmp)
    s = connect(d)
    s.sendall(b'{"cmd":"restart","group":"site"}\n')
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30)
    got = recv_all(s)
    assert json.loads(got.decode().splitlines()[0])["ok"] is True, got[:200]
    d.seen_workers.update(d.workers())


def test_a_stopped_master_and_wsgictl(wsgid, tmp):
    """A master that does not answer (SIGSTOP): wsgictl waited for ever; a query gives up after
    its timeout, exit 3, saying so."""
    d = start(wsgid, tmp)
    os.kill(d.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        rc, out, err = ctl(d, "-t", "1", "status", timeout=20)
        took = time.monotonic() - t0
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert rc == 3 and "did not answer within 1 s" in err, (rc, out, err)
    assert took < 5, took


def test_stop_during_a_restart_and_stop_waits(wsgid, tmp):
    """wsgid stopping while a restart waits for its new worker: the restart's wsgictl got no
    reply (exit 3, "lost"), and the operation leaked; now it fails, naming the stop. `wsgictl
    stop` returned before wsgid had stopped (a request still ran), so a new wsgid found the
    address in use; now it returns once the master has exited."""
    d = start(wsgid, tmp)
    port = int(re.search(r"127\.0\.0\.1:(\d+)", d.config_text).group(1))
    result = {}

    def slow_get():
        c = socket.create_connection(("127.0.0.1", port), timeout=20)
        c.sendall(b"GET /?2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        result["answer"] = c.recv(4096)
        c.close()

    # the replacement's import takes 5 s: the restart waits for it
    (tmp / "slow.py").write_text("import time\ntime.sleep(5)\n" + SLOW_APP)

    def restart():
        result["restart"] = ctl(d, "restart", "site", timeout=60)

    t = threading.Thread(target=restart)
    t.start()
    d.wait_log(r"group site worker 1 started \(pid \d+\)", timeout=10)
    g = threading.Thread(target=slow_get)
    g.start()
    time.sleep(0.3)
    d.expect_log(r"restart failed: group site: wsgid is stopping", "stopping")
    t0 = time.monotonic()
    rc, out, err = ctl(d, "stop", timeout=60)
    took = time.monotonic() - t0
    assert rc == 0 and "wsgid stopped in" in out, (out, err)
    assert "answer" in result or g.join(0.5) or "answer" in result, "stop returned first"
    wait_for(lambda: d.proc.poll() is not None, timeout=2, what="the master's exit")
    t.join(30)
    g.join(30)
    rc, out, err = result["restart"]
    assert rc == 1 and "wsgid is stopping: abandoned after 0 of 1 workers" in err, (rc, out, err)
    assert result["answer"].startswith(b"HTTP/1.1 200"), result
    assert took > 1, took  # the 2 s request was still running


def test_what_wsgictl_prints(wsgid, tmp):
    """status GROUP --json has GROUP alone (it had every group); an unknown group's long name is
    cut on a character (cut inside one, the error could not be sent); an app's error is printed with
    its control characters escaped (an ESC [2J in an import error cleared the terminal); --help
    wins wherever it is; `top --count` without a value says so; top's p50/p99 are "-" where no
    request ran (it said "<1.0ms") and long group names are shown whole (cut at 16)."""
    long1, long2 = "a-very-long-group-name-number-one", "a-very-long-group-name-number-two"
    d = start(wsgid, tmp, groups=(long1, long2))
    rc, out, err = ctl(d, "status", long1, "--json")
    assert rc == 0 and [g["name"] for g in json.loads(out)["groups"]] == [long1], out
    for name in ("\u00e9" * 3000, "x" + "\u00e9" * 3000):  # cut inside a character: not UTF-8
        rc, out, err = ctl(d, "status", name)
        assert rc == 1 and "wsgictl status: no group " + name[:20] in err, (rc, err[:100])
    rc, out, err = ctl(d, "status", "--bogus", "--help")
    assert rc == 0 and "Usage: wsgictl" in out, (rc, out, err)
    rc, out, err = ctl(d, "top", "--count")
    assert rc == 2 and "--count wants a value" in err, (rc, out, err)
    rc, out, err = ctl(d, "top", "--count", "2", "--interval", "0.2")
    assert rc == 0, err
    rows = [x for x in out.splitlines() if x.startswith(long1) or x.startswith(long2)]
    assert len(rows) == 4 and all(x.split()[5:7] == ["-", "-"] for x in rows[2:]), out
    text = d.conf_path.read_text()
    d.conf_path.write_text(text.replace("    threads: 2\n", "    threads: 2\n    env: {FAIL_WITH: "
                                        "\"\\e[2J\\e[31mred\"}\n", 1))
    d.expect_log("reload failed", "Traceback", r"^\s", "RuntimeError", "red", "cannot load",
                 "exited with status 3", r"group [\w-]+:\s", "slow.py", "failed")
    rc, out, err = ctl(d, "reload")
    assert rc == 1 and "\x1b" not in err and "\\x1b[2J\\x1b[31mred" in err, (rc, out, err)


def test_a_failed_restart_whose_error_is_cut_inside_a_character(wsgid, tmp):
    """The worker's error, cut to its 512-byte field inside a UTF-8 character, was not a JSON
    string: the error was lost and the failed restart replied as done (exit 0, "0 workers
    replaced"). Both parities of the cut are tried."""
    d = start(wsgid, tmp)
    d.expect_log("restart failed", "Traceback", r"^\s", "RuntimeError", "cannot load", "failed",
                 "exited with status 3", r"group site:\s", "slow.py", "\u0436")
    for prefix in ("x", "xx"):
        (tmp / "slow.py").write_text('raise RuntimeError("%s" + "\\u0436" * 600)\n' % prefix)
        rc, out, err = ctl(d, "restart", "site")
        assert rc == 1 and "restart" in err and "\u0436\u0436" in err, (prefix, rc, out, err[:300])


def test_replies_to_many_requests_then_a_half_close(wsgid, tmp):
    """200 requests, then the client shuts its side: every reply comes (94 came: the second end
    of the connection cancelled the queued replies), and a last request without its newline is
    answered too (it was dropped)."""
    d = start(wsgid, tmp)
    s = connect(d)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b'{"cmd":"status"}\n' * 199 + b'{"cmd":"status"}')
    s.shutdown(socket.SHUT_WR)
    time.sleep(1)
    s.settimeout(20)
    got = recv_all(s)
    s.close()
    lines = got.split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == 200, (len(lines), lines[-1][:80])
    assert all(json.loads(x)["ok"] for x in lines[:-1])


def test_a_second_stop_waits_too(wsgid, tmp):
    """wsgictl stop while wsgid is stopping already (another stop, or SIGTERM) returns once it
    has stopped, as the first does (it got "wsgid is stopping" at once)."""
    d = start(wsgid, tmp)
    port = int(re.search(r"127\.0\.0\.1:(\d+)", d.config_text).group(1))
    c = socket.create_connection(("127.0.0.1", port), timeout=20)
    c.sendall(b"GET /?2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.3)
    d.expect_log("stopping")
    first = {}
    t = threading.Thread(target=lambda: first.update(r=ctl(d, "stop")))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    rc, out, err = ctl(d, "stop")
    took = time.monotonic() - t0
    t.join(30)
    assert rc == 0 and "wsgid stopped in" in out, (rc, out, err)
    assert first["r"][0] == 0, first
    assert took > 1, took
    assert c.recv(4096).startswith(b"HTTP/1.1 200")
    c.close()


def test_a_signal_while_wsgid_exits_is_ignored(wsgid, tmp):
    """Once every worker has stopped, the master closes its signal handles, which gives the
    signals their default action back: a SIGTERM between then and the exit (systemd's, or a test's
    teardown right after `wsgictl stop` returned) killed it, status -15 instead of 0. A stream of
    SIGUSR1 (harmless while wsgid runs: it reopens the logs) covers that moment."""
    for _ in range(3):
        d = start(wsgid, tmp)
        done = threading.Event()

        def spray():  # one every 100 us: a steady stream would keep libuv reading its signals
            while not done.is_set():
                try:
                    os.kill(d.pid, signal.SIGUSR1)
                except ProcessLookupError:
                    return
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < 0.0001:
                    pass
        t = threading.Thread(target=spray)
        t.start()
        try:
            rc, out, err = ctl(d, "stop")
            assert rc == 0, (out, err)
            rc = d.wait_exit()
            assert rc == 0, (rc, d.log()[-1500:])
        finally:
            done.set()
            t.join()
        d.stop()


def test_a_raw_restart_of_a_group_and_all_is_refused(wsgid, tmp):
    """{"cmd":"restart","group":"a","all":true} on the control socket restarted every group;
    wsgictl refuses the pair, and so does wsgid now (helper-62)."""
    d = start(wsgid, tmp, groups=("a", "b"))
    old = set(d.workers())
    s = connect(d)
    s.sendall(b'{"cmd":"restart","group":"a","all":true}\n')
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30)
    reply = json.loads(recv_all(s).decode().splitlines()[0])
    assert reply["ok"] is False and reply["error"] == "restart: a group or all, not both", reply
    assert set(d.workers()) == old


def test_a_raw_request_about_a_group_never_stops_wsgid(wsgid, tmp):
    """A raw request (a script's, not wsgictl's) with a "group" that is not a string counted as
    one without a group, and a stop that named a group with "all": true was a stop of wsgid: each
    stopped every group and wsgid itself (helper-81). Both are refused now; wsgictl's own
    requests ("group": null for none) are as they were."""
    d = start(wsgid, tmp, groups=("site", "other"))
    for req in ({"cmd": "stop", "group": "site", "all": True}, {"cmd": "stop", "group": 5},
                {"cmd": "stop", "group": ["site"]}, {"cmd": "restart", "group": {"a": 1}}):
        with connect(d) as s:
            s.settimeout(20)
            s.sendall((json.dumps(req) + "\n").encode())
            reply = json.loads(s.makefile().readline())
        assert reply["ok"] is False, (req, reply)
        assert "not both" in reply["error"] or "is not a string" in reply["error"], reply
        assert d.running(), (req, reply)
    rc, out, err = ctl(d, "status")
    assert rc == 0 and "group site" in out and "group other" in out and "stopped" not in out, out
    rc, out, err = ctl(d, "stop", "site")
    assert rc == 0, err
    assert d.running()
