"""End-to-end fixtures: the real wsgid binary, behind a real nginx, spoken to with real sockets.

In the spirit of NGINX Unit's suite: every test gets its own temp dir (unix sockets live there,
so paths stay short), starts the daemon in the foreground with its stderr captured to a file,
waits for "all workers ready", and at teardown stops it with SIGTERM and checks that it exited 0,
left no worker behind, removed its unix sockets, and logged no unexpected error or alert line.

Leak check (as NGINX Unit's suite does): the open fds of the master and of each worker are counted
when the daemon is first ready, and again at teardown before the stop; the test fails if the
master's count or that of a worker alive at both times grew (after a settle of up to 2 s for
connections being closed). No warm-up request is made before the first count: it would shift the
request counters that the recycle and metrics tests check, and a first request opens no lasting fd
(measured: hello, echo and big apps, HTTP and uwsgi). A test that changes the set of listeners on
purpose calls d.fd_rebase(); d.check_fds = False turns the check off. After a reload that added,
changed or removed a group (a "reload: group" log line), the master's listeners and config memfds
legitimately differ: only the workers are checked then.

Environment:
    WSGID_BIN       the binary under test (default: <repo>/build/wsgid)
    WSGID_E2E_KEEP  keep the temp dirs (logs, configs) after the tests
"""
import functools
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
APPS = HERE / "apps"
WSGID_BIN = Path(os.environ.get("WSGID_BIN", REPO / "build" / "wsgid")).resolve()
NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
READY = "all workers ready"
HELLO = b"Hello, world!\n"
MiB = 1024 * 1024

# "2026-11-24 21:00:00.123 [error] site1:1234: ..." (the access log lines do not match this).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[(\w+)\] ")
NGINX_LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] ")


def app(name):
    """Absolute path of a test app script."""
    return str(APPS / (name + ".py"))


@functools.lru_cache(maxsize=None)
def big_body(size=16 * MiB):
    """The bytes apps/big.py sends for ?size=SIZE (up to 16 MiB)."""
    data = random.Random(20261124).randbytes(16 * MiB)
    return data[:size]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# --- /proc --------------------------------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, pgrp) of a process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2])


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children(ppid):
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[1] == ppid and st[0] != "Z":
            out.append(pid)
    return sorted(out)


def pgroup_members(pgrp):
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[2] == pgrp and st[0] != "Z":
            out.append(pid)
    return sorted(out)


def open_fds(pid):
    """{fd: readlink target} of a process, or None if it is gone."""
    out = {}
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return None
    for n in names:
        try:
            out[n] = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            pass
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return None


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().rstrip(b"\n")
    except OSError:
        return None


# --- YAML ---------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join("%s: %s" % (_yaml_key(k), _yaml_scalar(x)) for k, x in v.items()) + "}"
    return json.dumps(str(v))


def _yaml_key(k):
    return k if _PLAIN_KEY.match(k) else json.dumps(k)


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts; lists and leaf dicts (env, mounts) in flow style."""
    lines = []
    pad = "  " * indent
    for k, v in obj.items():
        nested = isinstance(v, dict) and v and any(isinstance(x, dict) for x in v.values())
        if isinstance(v, dict) and v and (nested or indent <= 1):
            lines.append("%s%s:" % (pad, _yaml_key(k)))
            lines.append(to_yaml(v, indent + 1))
        else:
            lines.append("%s%s: %s" % (pad, _yaml_key(k), _yaml_scalar(v)))
    return "\n".join(lines)


# --- the daemon ---------------------------------------------------------------------------------

class Wsgid:
    """One wsgid master started from a config file in the test's temp dir."""

    def __init__(self, tmp, config_text, name="wsgid"):
        self.tmp = Path(tmp)
        self.conf_path = self.tmp / (name + ".yaml")
        self.log_path = self.tmp / (name + ".log")
        self.conf_path.write_text(config_text)
        self.config_text = config_text
        self.proc = None
        self.rc = None
        self.expected = []          # regexes of error lines the test expects
        self.unix_paths = []        # unix sockets that must be gone after the stop
        self.seen_workers = set()
        self.tcp = None             # ("127.0.0.1", port) of the default group
        self.unix = None            # its unix socket path
        self.group = None
        self.check_fds = True
        self.fd_base = None         # {pid: {fd: target}} when first ready

    # Starting and stopping.

    def start(self, wait=True, timeout=15.0):
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(WSGID_BIN), "-c", str(self.conf_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, cwd=str(self.tmp),
                                     start_new_session=True)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15.0, since=0):
        deadline = time.monotonic() + timeout
        while READY not in self.log()[since:]:
            if self.proc.poll() is not None:
                raise AssertionError("wsgid exited with status %d before it was ready; log:\n%s"
                                     % (self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                raise AssertionError("wsgid not ready after %.0fs; log:\n%s"
                                     % (timeout, self.log()))
            time.sleep(0.05)
        self.seen_workers.update(self.workers())
        if self.fd_base is None:
            self.fd_rebase()

    # The leak check.

    def fd_rebase(self):
        """Takes the fd counts of the master and its current workers as the baseline."""
        self.fd_base = {}
        self.fd_log_at = self.log_size()
        for p in [self.pid] + self.workers():
            fds = open_fds(p)
            if fds is not None:
                self.fd_base[p] = fds

    def fd_leaks(self, settle=2.0):
        """[description] of the processes whose fd count grew since the baseline."""
        if not self.check_fds or not self.fd_base or not self.running():
            return []
        deadline = time.monotonic() + settle
        reloaded = "reload: group" in self.log()[self.fd_log_at:]
        while True:
            out = []
            live = set(self.workers()) | {self.pid}
            for p, base in self.fd_base.items():
                if p == self.pid and reloaded:
                    continue
                now = open_fds(p) if p in live else None
                if now is None or len(now) <= len(base):
                    continue
                new = sorted(set(now.items()) - set(base.items()), key=lambda x: int(x[0]))
                out.append("%s %d: %d fds at the start, %d now; new: %s" % (
                    "master" if p == self.pid else "worker", p, len(base), len(now),
                    ", ".join("%s -> %s" % x for x in new)))
            if not out or time.monotonic() > deadline:
                return out
            time.sleep(0.1)

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout=20.0):
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("wsgid did not exit within %.0fs; log:\n%s"
                                 % (timeout, self.log()))
        return self.rc

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=20.0):
        """SIGTERM, then checks: exit 0, no process left, unix sockets removed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.seen_workers.update(self.workers())
            self.signal(signal.SIGTERM)
            try:
                self.rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_all()
                raise AssertionError("wsgid did not stop within %.0fs of SIGTERM; log:\n%s"
                                     % (timeout, self.log()))
        self.rc = self.proc.returncode
        self._logf.close()
        left = self._leftovers()
        if left:
            desc = ["%d %r" % (p, cmdline(p)) for p in left]
            self._kill_all()
            raise AssertionError("processes left after wsgid exited: %s" % desc)
        return self.rc

    def _leftovers(self):
        def alive():
            pids = set(pgroup_members(self.proc.pid))
            for p in self.seen_workers:
                st = proc_stat(p)
                if st and st[0] != "Z":
                    pids.add(p)
            return sorted(pids)
        deadline = time.monotonic() + 3
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return alive()

    def _kill_all(self):
        for p in set(pgroup_members(self.proc.pid)) | {self.proc.pid}:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    # Looking at it.

    def workers(self):
        """Live worker pids (children of the master). A child that has not executed the worker
        yet (between fork and exec it still shows the master's command line) is not one."""
        if not self.running():
            return []
        mine = cmdline(self.proc.pid)
        return [p for p in children(self.proc.pid) if cmdline(p) != mine]

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        return len(self.log())

    def lines(self, since=0, level=None):
        out = []
        for line in self.log()[since:].splitlines():
            m = LOG_LINE.match(line)
            if level is None or (m and m.group(1) == level):
                out.append(line)
        return out

    def wait_log(self, pattern, since=0, timeout=5.0):
        rx = re.compile(pattern)

        def find():
            for line in self.log()[since:].splitlines():
                if rx.search(line):
                    return line
            return None
        try:
            return wait_for(find, timeout, what="log line /%s/" % pattern)
        except AssertionError:
            raise AssertionError("no log line matching /%s/ within %.1fs; log:\n%s"
                                 % (pattern, timeout, self.log()[since:]))

    def expect_log(self, *patterns):
        """Declares error-log lines this test expects (regexes, searched in the line)."""
        self.expected.extend(re.compile(p) for p in patterns)

    def unexpected_lines(self):
        bad = []
        for line in self.log().splitlines():
            m = LOG_LINE.match(line)
            if not m:
                continue
            level = m.group(1)
            if level in ("alert", "crit", "emerg", "fatal"):
                bad.append(line)
            elif level == "error" and not any(rx.search(line) for rx in self.expected):
                bad.append(line)
        return bad


def _group_addrs(tmp, name):
    return str(Path(tmp) / (name + ".sock")), ("127.0.0.1", free_port())


def make_config(tmp, groups, **top):
    """A whole config: top-level keys (log, control...) and groups {name: {key: value}}.
    Keys may be written with underscores (limit_request_body); they become dashes."""
    conf = {"log": {"level": "info", "file": "-", "access": "-"}}
    for k, v in top.items():
        conf[k.replace("_", "-")] = v
    conf["groups"] = {}
    for name, g in groups.items():
        conf["groups"][name] = {k.replace("_", "-") if k != "env" else k: v for k, v in g.items()}
        # Run as root, wsgid runs apps as nobody unless a group says otherwise; the tests' apps
        # read and write files in a 0700 temp dir, so they stay root.
        if os.geteuid() == 0:
            conf["groups"][name].setdefault("user", "root")
    return to_yaml(conf) + "\n"


@pytest.fixture
def tmp(request):
    d = tempfile.mkdtemp(prefix="wd-", dir="/tmp")
    yield Path(d)
    if os.environ.get("WSGID_E2E_KEEP"):
        print("kept", d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def wsgid(tmp):
    """Factory: wsgid("hello", threads=4, ...) starts a one-group daemon ("site") listening on
    unix:TMP/site.sock and 127.0.0.1:PORT; wsgid(config="yaml text") starts any config.
    Returns a Wsgid with .tcp, .unix, .log(), .workers(), .expect_log(), .stop()."""
    started = []

    def start(app_name=None, *, config=None, group="site", wait=True, top=None, listen=None,
              **opts):
        d = None
        if config is not None:
            text = config if isinstance(config, str) else to_yaml(config) + "\n"
            d = Wsgid(tmp, text, name="wsgid%d" % len(started))
        else:
            sock, tcp = _group_addrs(tmp, group)
            g = {"app": app(app_name) if "/" not in app_name else app_name}
            g["listen"] = listen if listen is not None else ["unix:" + sock, "%s:%d" % tcp]
            env = {"WSGID_E2E_DIR": str(tmp)}
            env.update(opts.pop("env", {}))
            g.update(opts)
            g["env"] = env
            text = make_config(tmp, {group: g}, **(top or {}))
            d = Wsgid(tmp, text, name="wsgid%d" % len(started))
            d.group = group
            if listen is None:
                d.unix, d.tcp = sock, tcp
            else:
                for spec in listen:
                    if spec.startswith("unix:"):
                        d.unix = d.unix or spec[5:]
                    else:
                        host, _, port = spec.rpartition(":")
                        d.tcp = d.tcp or (host, int(port))
        for spec in re.findall(r"unix:([^\s\",\]]+)", d.config_text):
            d.unix_paths.append(spec if spec.startswith("/") else str(tmp / spec))
        started.append(d)
        try:
            d.start(wait=wait)
        except AssertionError:
            # Reported here, with the log; the teardown has nothing more to say about it.
            d.expect_failure = True
            d.expect_log(".")
            if d.proc is not None and d.proc.poll() is None:
                d._kill_all()
            raise
        return d

    yield start

    errors = []
    for d in started:
        try:
            leaks = d.fd_leaks()
            if leaks:
                errors.append("fd leak (open fds grew during the test):\n  " + "\n  ".join(leaks))
            rc = d.stop()
            if rc not in (0, None) and not getattr(d, "expect_failure", False):
                errors.append("wsgid exited with status %s; log:\n%s" % (rc, d.log()))
            if not getattr(d, "expect_failure", False):
                left = [p for p in d.unix_paths if os.path.exists(p)]
                if left:
                    errors.append("unix sockets not removed at exit: %s" % left)
            bad = d.unexpected_lines()
            if bad:
                errors.append("unexpected error/alert lines in the wsgid log:\n  "
                              + "\n  ".join(bad))
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


# --- nginx --------------------------------------------------------------------------------------

def uwsgi_location(sock, extra=""):
    return """location / {
            uwsgi_pass unix:%s;
            include /etc/nginx/uwsgi_params;
            %s
        }""" % (sock, extra)


def proxy_location(sock, extra=""):
    return """location / {
            proxy_pass http://unix:%s:;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            %s
        }""" % (sock, extra)


class Nginx:
    def __init__(self, tmp, server_snippet, http_extra=""):
        self.dir = Path(tmp) / "nginx"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.addr = ("127.0.0.1", self.port)
        self.error_log = self.dir / "error.log"
        self.expected = []
        user = "user root;" if os.geteuid() == 0 else ""
        d = self.dir
        self.conf = """%(user)s
daemon off;
master_process on;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log info;
events { worker_connections 1024; }
http {
    access_log %(d)s/access.log;
    client_body_temp_path %(d)s/client_body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    client_max_body_size 64m;
    %(http_extra)s
    server {
        listen 127.0.0.1:%(port)d;
        %(snippet)s
    }
}
""" % {"user": user, "d": d, "port": self.port, "snippet": server_snippet,
       "http_extra": http_extra}
        (d / "nginx.conf").write_text(self.conf)
        self.proc = subprocess.Popen(
            [NGINX_BIN, "-p", str(d) + "/", "-c", str(d / "nginx.conf"), "-e",
             str(self.error_log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(d / "stderr.log", "wb"), start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited (%d): %s\n%s" % (
                    self.proc.returncode, (d / "stderr.log").read_text(), self.log()))
            try:
                with socket.create_connection(self.addr, timeout=1):
                    return True
            except OSError:
                return False
        wait_for(up, 10, what="nginx to listen")

    def log(self):
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def expect_log(self, *patterns):
        self.expected.extend(re.compile(p) for p in patterns)

    def unexpected_lines(self):
        bad = []
        for line in self.log().splitlines():
            m = NGINX_LOG_LINE.match(line)
            if not m:
                continue
            if m.group(1) in ("alert", "crit", "emerg") or (
                    m.group(1) == "error" and not any(rx.search(line) for rx in self.expected)):
                bad.append(line)
        return bad

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(5)
        for p in pgroup_members(self.proc.pid):
            os.kill(p, signal.SIGKILL)


@pytest.fixture
def nginx(tmp):
    """Factory: nginx(server_snippet) starts nginx on a free 127.0.0.1 port; use
    uwsgi_location(sock) / proxy_location(sock) for the snippet. Returns an Nginx (.url, .addr)."""
    started = []

    def start(snippet, http_extra=""):
        n = Nginx(tmp, snippet, http_extra)
        started.append(n)
        return n

    yield start
    errors = []
    for n in started:
        n.stop()
        bad = n.unexpected_lines()
        if bad:
            errors.append("unexpected lines in nginx's error log:\n  " + "\n  ".join(bad))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


# --- talking to it ------------------------------------------------------------------------------

def http_request(method="GET", path="/", headers=None, body=b"", host="localhost",
                 version="HTTP/1.1", content_length=True):
    """Bytes of one HTTP/1.x request; Content-Length is added for a body unless given."""
    lines = ["%s %s %s" % (method, path, version), "Host: %s" % host]
    names = set()
    for k, v in (headers or {}).items() if isinstance(headers, dict) else (headers or []):
        lines.append("%s: %s" % (k, v))
        names.add(k.lower())
    if body and content_length and "content-length" not in names \
            and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def uwsgi_packet(variables, body=b"", modifier1=0, modifier2=0):
    """A uwsgi request: 4-byte header, then the vars block, then the body."""
    data = b""
    for k, v in variables.items():
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        data += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return struct.pack("<BHB", modifier1, len(data), modifier2) + data + body


def uwsgi_request(method="GET", path="/", query="", headers=None, body=b"", **extra):
    """The vars nginx's uwsgi_params would send for such a request."""
    v = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": (headers or {}).get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "REQUEST_URI": path + ("?" + query if query else ""),
        "PATH_INFO": path,
        "DOCUMENT_ROOT": "/srv",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "SERVER_PORT": "80",
        "SERVER_NAME": "localhost",
        "HTTP_HOST": "localhost",
    }
    for k, val in (headers or {}).items():
        if k.lower() not in ("content-type", "content-length"):
            v["HTTP_" + k.upper().replace("-", "_")] = val
    v.update(extra)
    return uwsgi_packet(v, body)


class Response:
    def __init__(self, version, status, reason, headers, body, head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # [(name, value)] as received
        self.body = body
        self.head = head            # the raw head, up to and including the blank line

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def __repr__(self):
        return "<Response %d %r, %d body bytes>" % (self.status, self.head[:300], len(self.body))


class Incomplete(Exception):
    pass


def parse_response(buf, head_only=False, eof=False):
    """Parses one response at the start of buf. Returns (Response, bytes consumed); raises
    Incomplete when more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise Incomplete()
    head = buf[:end + 4]
    lines = head[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    status = int(code)
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    r = Response(version, status, reason, headers, b"", head)
    pos = end + 4
    te = (r.header("Transfer-Encoding") or "").lower()
    cl = r.header("Content-Length")
    if head_only or status < 200 or status in (204, 304):
        return r, pos
    if "chunked" in te:
        body = b""
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                raise Incomplete()
            size = int(buf[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                # Trailers (none expected) end with an empty line.
                tend = buf.find(b"\r\n", pos)
                while tend >= 0 and tend != pos:
                    pos = tend + 2
                    tend = buf.find(b"\r\n", pos)
                if tend < 0:
                    raise Incomplete()
                pos += 2
                break
            if len(buf) < pos + size + 2:
                raise Incomplete()
            body += buf[pos:pos + size]
            pos += size + 2
        r.body = body
        return r, pos
    if cl is not None:
        n = int(cl)
        if len(buf) < pos + n:
            raise Incomplete()
        r.body = buf[pos:pos + n]
        return r, pos + n
    if not eof:
        raise Incomplete()
    r.body = buf[pos:]
    return r, len(buf)


class Conn:
    """A client connection (TCP ("host", port) or unix path) with a read buffer."""

    def __init__(self, addr, timeout=10.0, rcvbuf=None):
        if isinstance(addr, (str, Path)):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            addr = str(addr)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)
        return self

    def shut_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, n=65536):
        try:
            data = self.sock.recv(n)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.buf += data
        return data

    def response(self, head_only=False):
        """Reads exactly one response (keeps what follows it in the buffer)."""
        while True:
            try:
                r, used = parse_response(self.buf, head_only, self.eof)
                self.buf = self.buf[used:]
                return r
            except Incomplete:
                if self.eof:
                    raise AssertionError("connection closed in the middle of a response: %r"
                                         % self.buf[:500])
                self._fill()

    def read_until(self, marker):
        while marker not in self.buf:
            if self.eof or not self._fill():
                raise AssertionError("closed before %r; got %r" % (marker, self.buf[:500]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_until_close(self):
        while not self.eof:
            self._fill()
        out, self.buf = self.buf, b""
        return out

    def closed(self, timeout=5.0):
        """True if the peer closes (after whatever is buffered) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while not self.eof:
                self._fill()
            return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def request(addr, method="GET", path="/", headers=None, body=b"", timeout=10.0, **kw):
    """One HTTP/1.1 request with Connection: close over a new connection; returns Response."""
    h = {"Connection": "close"}
    h.update(headers or {})
    with Conn(addr, timeout) as c:
        c.send(http_request(method, path, h, body, **kw))
        return c.response(head_only=(method == "HEAD"))


def uwsgi_call(addr, timeout=10.0, **kw):
    """One uwsgi request; the answer is raw HTTP ending with the close."""
    with Conn(addr, timeout) as c:
        c.send(uwsgi_request(**kw))
        data = c.read_until_close()
    r, _ = parse_response(data, eof=True)
    return r


def raw(addr, data, timeout=10.0, shut_wr=False):
    """Sends bytes, returns everything received until the peer closes (AssertionError if it does
    not close within timeout)."""
    with Conn(addr, timeout) as c:
        c.send(data)
        if shut_wr:
            c.shut_wr()
        try:
            return c.read_until_close()
        except (socket.timeout, TimeoutError):
            raise AssertionError("no close within %.1fs; received %r" % (timeout, c.buf[:500]))


def assert_hello(addr, timeout=10.0):
    r = request(addr, timeout=timeout)
    assert r.status == 200, r
    assert r.body == HELLO, r
    return r
