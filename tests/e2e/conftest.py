"""End-to-end fixtures: the real wsgid binary, behind a real nginx, spoken to with real sockets.

In the spirit of NGINX Unit's suite: every test gets its own temp dir (unix sockets live there,
so paths stay short), starts the daemon in the foreground with its stderr captured to a file,
waits for "all workers ready", and at teardown stops it with SIGTERM and checks that it exited 0,
left no worker behind, removed its unix sockets, logged no unexpected error or alert line and
leaked no file descriptor (helpers/daemon.py says how that is counted).

This file has the fixtures only; what they use, and what the tests import, is in helpers/, a
module per job: procs (processes, ports, waiting), config (writing wsgid configs), daemon (the
Wsgid class), nginx (nginx in a temp dir), apache, haproxy, caddy and lighttpd (the same for
those proxies, on a common base in proxy), clients (raw socket, HTTP and uwsgi clients).

Environment:
    WSGID_BIN       the binary under test (default: <repo>/build/wsgid)
    NGINX_BIN       the nginx binary (default: /usr/sbin/nginx)
    APACHE_BIN, HAPROXY_BIN, CADDY_BIN, LIGHTTPD_BIN
                    the other proxies (a test that needs a missing one is skipped, saying so:
                    ./dev deps installs them)
    WSGID_E2E_KEEP  keep the temp dirs (logs, configs) after the tests
"""
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers.apache import Apache
from helpers.caddy import Caddy
from helpers.config import app, group_addrs, make_config, to_yaml
from helpers.daemon import Wsgid
from helpers.haproxy import HAProxy
from helpers.lighttpd import Lighttpd
from helpers.nginx import Nginx
from helpers.proxy import require


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
            sock, tcp = group_addrs(tmp, group)
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
            # Reported here, with the log; the teardown has nothing more to say about it: the
            # test fails with this error, whose log holds the error lines (alert lines are still
            # reported). Not a test's expectation: a test that expects a failed start passes
            # wait=False and names its lines (test_privileges, test_process, test_timeouts).
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


@pytest.fixture
def nginx(tmp):
    """Factory: nginx(server_snippet) starts nginx on a free 127.0.0.1 port; use
    helpers.nginx.uwsgi_location(sock) / proxy_location(sock) for the snippet. Returns an Nginx
    (.url, .addr)."""
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


def _proxy_fixture(tmp, cls):
    """A factory fixture for a ProxyServer subclass: starts it with a config snippet, and at
    teardown stops it and fails the test on the unexpected error lines in its log. A missing
    binary skips the test at once, before it starts anything else."""
    require(cls.binary, cls.name)
    started = []

    def start(snippet, **kw):
        p = cls(tmp, snippet, **kw)
        started.append(p)
        return p

    yield start
    errors = []
    for p in started:
        p.stop()
        bad = p.unexpected_lines()
        if bad:
            errors.append("unexpected lines in %s's log:\n  " % p.name + "\n  ".join(bad))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def apache(tmp):
    """Factory: apache(snippet) starts Apache httpd with helpers.apache.uwsgi_unix(sock),
    http_tcp(addr), fcgi_unix(sock) (or any directives) in its server config. Returns an Apache (.url, .addr,
    .expect_log())."""
    yield from _proxy_fixture(tmp, Apache)


@pytest.fixture
def haproxy(tmp):
    """Factory: haproxy(snippet) starts HAProxy with the frontend and backend of
    helpers.haproxy.http_tcp(addr) (or fcgi_tcp, send_proxy_v2...). Returns a HAProxy (.url, .addr, .expect_log())."""
    yield from _proxy_fixture(tmp, HAProxy)


@pytest.fixture
def caddy(tmp):
    """Factory: caddy(snippet) starts Caddy with the site directives of
    helpers.caddy.reverse_proxy_unix(sock) (or fastcgi_unix). Returns a Caddy (.url, .addr, .expect_log())."""
    yield from _proxy_fixture(tmp, Caddy)


@pytest.fixture
def lighttpd(tmp):
    """Factory: lighttpd(snippet) starts lighttpd with the directives of
    helpers.lighttpd.uwsgi_unix(sock), http_unix(sock) or fastcgi_unix(sock). Returns a Lighttpd
    (.url, .addr, .expect_log())."""
    yield from _proxy_fixture(tmp, Lighttpd)


def pytest_terminal_summary(terminalreporter):
    """Says why each skipped test skipped (which proxies were missing, a machine without two CPUs,
    a run that could not see what a test looks for): pytest -q shows a skip only as an "s"."""
    reasons = set()
    for rep in terminalreporter.stats.get("skipped", []):
        if isinstance(rep.longrepr, tuple):
            reason = rep.longrepr[2]
            reasons.add(reason if "./dev deps" in reason else
                        "%s: %s" % (rep.nodeid.split("::")[-1], reason))
    for reason in sorted(reasons):
        terminalreporter.write_line(reason, yellow=True)
