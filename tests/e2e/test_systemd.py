"""systemd integration: Type=notify readiness through a fake $NOTIFY_SOCKET, and socket activation
through systemd-socket-activate (Debian package systemd)."""
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest

from helpers.clients import assert_hello
from helpers.config import app, make_config
from helpers.daemon import READY, WSGID_BIN, Wsgid
from helpers.procs import free_port, wait_for

ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


# --- Type=notify ----------------------------------------------------------------------------

class FakeSystemd:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, tmp, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "wsgid-test-%s" % uuid.uuid4().hex
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp / "notify.sock")
            self.sock.bind(path)
            self.env = path
        self.messages = []  # [(monotonic time, {key: value})]

    def receive(self, timeout):
        """The next datagram as a dict, or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except (socket.timeout, TimeoutError):
            return None
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait(self, key, value="1", timeout=20.0, on_message=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.receive(max(0.05, deadline - time.monotonic()))
            if m is None:
                continue
            if on_message is not None:
                on_message(m)
            if m.get(key) == value:
                return m
        raise AssertionError("no %s=%s from wsgid within %.0fs; got %r"
                             % (key, value, timeout, [m for _, m in self.messages]))

    def close(self):
        self.sock.close()


def worker_environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return [e.decode(errors="replace") for e in f.read().split(b"\0") if e]


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_and_stopping(wsgid, tmp, monkeypatch, abstract):
    fake = FakeSystemd(tmp, abstract)
    monkeypatch.setenv("NOTIFY_SOCKET", fake.env)
    try:
        d = wsgid("hello", processes=2, threads=2, wait=False)
        seen_before_ready = []

        def check(m):
            # READY=1 only once every worker has loaded its app.
            if m.get("READY") == "1":
                seen_before_ready.append(READY in d.log())
        ready = fake.wait("READY", on_message=check)
        assert seen_before_ready == [True], d.log()
        if "MAINPID" in ready:
            assert int(ready["MAINPID"]) == d.pid
        d.wait_ready()
        assert_hello(d.tcp)
        # Workers must not notify systemd themselves (NotifyAccess=main would refuse them).
        for pid in d.workers():
            assert not any(e.startswith("NOTIFY_SOCKET=") for e in worker_environ(pid))
        # A STATUS= line says what it serves, at the latest with READY=1.
        assert any("STATUS" in m for _, m in fake.messages), fake.messages
        d.signal(signal.SIGTERM)
        fake.wait("STOPPING", timeout=10)
        assert d.wait_exit() == 0
    finally:
        fake.close()


def test_notify_reload(wsgid, tmp, monkeypatch):
    fake = FakeSystemd(tmp)
    monkeypatch.setenv("NOTIFY_SOCKET", fake.env)
    try:
        d = wsgid("hello", wait=False)
        fake.wait("READY")
        d.wait_ready()
        d.signal(signal.SIGHUP)
        fake.wait("RELOADING", timeout=10)
        fake.wait("READY", timeout=30)
        assert_hello(d.tcp)
        # What a reload keeps open (the new configuration) is not this test's business.
        time.sleep(0.5)
        d.fd_rebase()
    finally:
        fake.close()


def test_no_notify_socket_is_quiet(wsgid, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    d = wsgid("hello")
    assert_hello(d.tcp)
    assert "notify" not in d.log().lower()


# --- socket activation ----------------------------------------------------------------------

class ActivatedWsgid(Wsgid):
    """wsgid started by systemd-socket-activate, which binds the -l addresses, waits for the
    first connection, then execs wsgid (same pid) with LISTEN_FDS / LISTEN_PID set."""

    def __init__(self, tmp, config_text, activate_args):
        super().__init__(tmp, config_text, name="activated")
        self.activate_args = activate_args

    def start(self, wait=False, timeout=15.0):
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [ACTIVATE] + self.activate_args + [str(WSGID_BIN), "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
            cwd=str(self.tmp), start_new_session=True)
        wait_for(lambda: self.log().count("Listening on") >= len(self.activate_args) // 2,
                 10, what="systemd-socket-activate to listen")
        return self


def run_activated(tmp, listen, activate, check, **top):
    """Starts wsgid under systemd-socket-activate, lets the first request trigger the exec,
    runs check(d), stops it and checks the usual things (exit 0, nothing left, no errors).
    top: more top-level config keys (control="ctl.sock")."""
    if not os.access(ACTIVATE, os.X_OK):
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd)")
    text = make_config(tmp, {"site": {"app": app("hello"), "listen": listen, "processes": 2,
                                      "env": {"WSGID_E2E_DIR": str(tmp)}}}, **top)
    args = []
    for a in activate:
        args += ["-l", a]
    d = ActivatedWsgid(tmp, text, args)
    try:
        d.start()
        # The first connection makes systemd-socket-activate exec wsgid; it waits in the
        # backlog of the passed socket until a worker accepts it.
        tcp = next(s for s in listen if not s.startswith("unix:"))
        host, _, port = tcp.rpartition(":")
        assert_hello((host, int(port)), timeout=30)
        d.wait_ready()
        assert (b"wsgid" in (open("/proc/%d/cmdline" % d.pid, "rb").read())), \
            "systemd-socket-activate did not exec wsgid in place"
        for pid in d.workers():
            env = worker_environ(pid)
            assert not any(e.startswith(("LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES="))
                           for e in env), env
        check(d)
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0, d.log()
        d.seen_workers.update(d.workers())
        left = d._leftovers()
        assert not left, left
        assert not d.unexpected_lines(), d.unexpected_lines()
        return d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d._kill_all()


def test_socket_activation(tmp):
    port = free_port()
    sock = str(tmp / "site.sock")
    listen = ["unix:" + sock, "127.0.0.1:%d" % port]

    def check(d):
        lines = [l for l in d.log().splitlines() if "using the socket passed by systemd" in l]
        assert len(lines) == 2, d.log()
        assert any(sock in l for l in lines) and any(str(port) in l for l in lines), lines
        for _ in range(5):
            assert_hello(("127.0.0.1", port))
            assert_hello(sock)
    run_activated(tmp, listen, [sock, "127.0.0.1:%d" % port], check)
    # systemd created the unix socket and owns it: wsgid must leave it in place.
    assert os.path.exists(sock)


def test_socket_activation_partial(tmp):
    port, extra = free_port(), free_port()
    sock = str(tmp / "site.sock")
    listen = ["127.0.0.1:%d" % port, "unix:" + sock]

    def check(d):
        log = d.log()
        lines = [l for l in log.splitlines() if "using the socket passed by systemd" in l]
        assert len(lines) == 1 and str(port) in lines[0], log
        # The passed socket no listen entry asks for: a warning, and it is closed.
        assert any("[warn]" in l and str(extra) in l for l in log.splitlines()), log
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", extra), timeout=2).close()
        # The unix entry had no passed socket: wsgid bound it itself.
        assert_hello(sock)
    run_activated(tmp, listen, ["127.0.0.1:%d" % port, "127.0.0.1:%d" % extra], check)
    # ... and removed it at exit, as always.
    assert not os.path.exists(sock)


def test_socket_activation_stopped_group_keeps_listening(tmp):
    """A stopped group's TCP listeners refuse connections (test_health), but not a socket that
    systemd passed: it outlives wsgid, and connections to it wait for the next start."""
    port = free_port()
    wsgictl = str(WSGID_BIN.parent / "client" / "wsgictl")

    def ctl(*args):
        r = subprocess.run([wsgictl, "-s", str(tmp / "ctl.sock")] + list(args),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr

    def check(d):
        ctl("stop", "site")
        wait_for(lambda: d.workers() == [], 10, what="the group stopped")
        time.sleep(0.3)
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert "listeners refuse connections" not in d.log()
        ctl("start", "site")
        assert_hello(("127.0.0.1", port))
        d.seen_workers.update(d.workers())
    run_activated(tmp, ["127.0.0.1:%d" % port], ["127.0.0.1:%d" % port], check,
                  control="ctl.sock")


SLOW_APP = '''import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT", "0")))
if os.environ.get("FAIL"):
    raise RuntimeError("e2e: this import fails on purpose")


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]
'''


def test_notify_ready_after_a_reload_says_how_it_went(wsgid, tmp, monkeypatch):
    """READY=1 ends systemd's "reloading" once the reload is done, its new workers ready, and its
    STATUS says what serves; a reload that failed says so, and one refused (an invalid file)
    says so in STATUS. READY=1 came at once, a reload refused or failed changed nothing
    (helper-72)."""
    fake = FakeSystemd(tmp)
    monkeypatch.setenv("NOTIFY_SOCKET", fake.env)
    (tmp / "slow.py").write_text(SLOW_APP)

    def conf(**env):
        g = {"app": str(tmp / "slow.py"), "listen": ["unix:" + str(tmp / "s.sock")],
             "processes": 2, "threads": 2, "env": dict({"SLOW_IMPORT": "1"}, **env)}
        return make_config(tmp, {"site": g})

    try:
        d = wsgid(config=conf(), wait=False)
        d.unix_paths.append(str(tmp / "s.sock"))
        fake.wait("READY")
        d.wait_ready()
        d.conf_path.write_text(conf(V="2"))
        since = d.log_size()
        d.signal(signal.SIGHUP)
        fake.wait("RELOADING", timeout=10)
        m = fake.wait("READY", timeout=30)
        assert d.wait_log(r"reload done: 2 workers replaced", since=since, timeout=1), d.log()
        assert m["STATUS"] == "serving 1 groups, 2 workers", m
        d.expect_log("fails on purpose", "Traceback", r"^\s", "RuntimeError", "cannot load",
                     "slow.py", "exited with status 3", r"group site:\s", "reload failed")
        d.conf_path.write_text(conf(FAIL="1"))
        d.signal(signal.SIGHUP)
        fake.wait("RELOADING", timeout=10)
        m = fake.wait("READY", timeout=30)
        assert m["STATUS"].startswith("serving 1 groups, 2 workers; the last reload failed (the "
                                      "old workers keep serving): "), m
        assert "fails on purpose" in m["STATUS"], m
        d.expect_log("reload refused")
        d.conf_path.write_text(conf(V="3") + "bogus: 1\n")
        d.signal(signal.SIGHUP)
        m = None
        deadline = time.monotonic() + 10
        while m is None or "refused" not in m.get("STATUS", ""):
            assert time.monotonic() < deadline, fake.messages
            m = fake.receive(1)
        assert m["STATUS"].startswith("serving; the last reload was refused: "), m
        assert "READY" not in m and "RELOADING" not in m, m
        d.seen_workers.update(d.workers())
        time.sleep(0.5)
        d.fd_rebase()
    finally:
        fake.close()


# --- contrib/logrotate.d/wsgid --------------------------------------------------------------

def test_logrotate_signals_only_a_wsgid_master(wsgid, tmp):
    """The logrotate snippet's postrotate sends SIGUSR1 to the pid in each master's pidfile under
    /run/wsgid: to a wsgid, which reopens its logs, and not to another process that took the pid
    of a master that died (SIGUSR1 ends most processes: helper-72)."""
    import re
    text = (WSGID_BIN.parents[1] / "contrib" / "logrotate.d" / "wsgid").read_text()
    script = re.search(r"^\s*postrotate\n(.*?)^\s*endscript", text, re.S | re.M).group(1)
    run_dir = "/run/wsgid/e2e-%s" % uuid.uuid4().hex[:12]
    try:
        os.makedirs(run_dir)
    except PermissionError:
        pytest.skip("cannot create %s (not root): the snippet reads the pidfiles there" % run_dir)
    other = subprocess.Popen(["sleep", "60"])
    try:
        d = wsgid("hello")
        for pid in (other.pid, d.pid):
            with open(run_dir + "/wsgid.pid", "w") as f:
                f.write("%d\n" % pid)
            since = d.log_size()
            r = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            if pid == other.pid:
                time.sleep(0.3)
                assert other.poll() is None, "the snippet signalled a process that is not wsgid"
            else:
                d.wait_log(r"log files reopened", since=since, timeout=5)
    finally:
        other.kill()
        other.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
