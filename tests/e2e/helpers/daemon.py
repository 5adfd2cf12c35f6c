"""The wsgid daemon under test: Wsgid starts a master from a config file in the test's temp dir,
in the foreground with its output captured to a file, and at its stop checks that it exited 0, left
no worker behind, and (with the fixture in conftest.py) logged no unexpected error or alert line.

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
"""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from helpers.config import REPO
from helpers.procs import (SeenPids, children, cmdline, open_fds, pgroup_members, proc_stat,
                           wait_for)

WSGID_BIN = Path(os.environ.get("WSGID_BIN", REPO / "build" / "wsgid")).resolve()
WSGICTL = WSGID_BIN.parent / "client" / "wsgictl"
READY = "all workers ready"

# "2026-11-24 21:00:00.123 [error] site1:1234: ..." (the access log lines do not match this).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[(\w+)\] ")


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
        self.seen_workers = SeenPids()
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

    def fd_leaks(self, settle=10.0):
        """[description] of the processes whose fd count grew since the baseline, once they have
        had settle seconds to let go of what the test left: the sanitizer build on 2 CPUs took
        over 2 s to close 200 abandoned 4 MiB answers (test_exhaustion's slow readers: 5 runs of
        6 over 2 s, none of 4 over 10 s). A count back at the baseline returns at once."""
        if not self.check_fds or not self.fd_base or not self.running():
            return []
        deadline = time.monotonic() + settle
        # a reload's new generation has its memfd, the old one's stays while its workers run
        reloaded = "master: reloading " in self.log()[self.fd_log_at:]
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
                if st and st[0] != "Z" and self.seen_workers.same(p):
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
        yet (between fork and exec it still shows the master's command line), or is in the middle
        of the exec (its command line reads empty: the sanitizer run once saw a new worker so), is
        not one."""
        if not self.running():
            return []
        mine = cmdline(self.proc.pid)
        return [p for p in children(self.proc.pid) if cmdline(p) not in (mine, b"", None)]

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
