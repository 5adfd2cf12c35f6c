"""What Apache, HAProxy and Caddy have in common as fixtures: a server process started in the
foreground from a config in its own directory under the test's temp dir, on a free 127.0.0.1
port; waited for until it listens; stopped at teardown; and its log searched for unexpected error
lines, as the nginx fixture does with its error.log. A subclass writes the config, gives the
command line, the stop signal and how to read a line's level (helpers/apache.py, haproxy.py,
caddy.py).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from helpers.procs import free_port, pgroup_members, wait_for


def require(binary, name):
    """Skips the test, saying why, when a proxy is not installed."""
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)) and not shutil.which(binary):
        pytest.skip("%s not installed (%s): ./dev deps" % (name, binary))


class ProxyServer:
    name = "proxy"
    binary = None               # the executable, for require()
    stop_signal = signal.SIGTERM
    bad_levels = ()             # levels that fail the test unless expected

    def __init__(self, tmp, subdir):
        require(self.binary, self.name)
        self.dir = Path(tmp) / subdir
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.addr = ("127.0.0.1", self.port)
        self.log_path = self.dir / "error.log"
        self.expected = []
        self.proc = None

    def start(self, argv, env=None):
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=str(self.dir), env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "stdout.log", "wb"),
                                     stderr=open(self.dir / "stderr.log", "wb"),
                                     start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited (%d): %s\nstderr:\n%s\nlog:\n%s" % (
                    self.name, self.proc.returncode, " ".join(argv),
                    (self.dir / "stderr.log").read_text(errors="replace"), self.log()))
            try:
                with socket.create_connection(self.addr, timeout=1):
                    return True
            except OSError:
                return False
        wait_for(up, 10, what="%s to listen" % self.name)
        return self

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def level(self, line):
        """The level of a log line, or None for a line that is not a log entry."""
        raise NotImplementedError

    def expect_log(self, *patterns):
        """Declares error lines this test expects (regexes, searched in the line)."""
        self.expected.extend(re.compile(p) for p in patterns)

    def unexpected_lines(self):
        bad = []
        for line in self.log().splitlines():
            if self.level(line) in self.bad_levels and \
                    not any(rx.search(line) for rx in self.expected):
                bad.append(line)
        return bad

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(5)
        for p in pgroup_members(self.proc.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
