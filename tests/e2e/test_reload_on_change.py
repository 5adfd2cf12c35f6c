"""reload-on-change (issue #13): the master watches a group's app script and its `watch:` patterns
(inotify, daemon/master/master_autoreload.c) and rolls the group as `wsgictl restart` does when
they change: under load through nginx with no failed request, the old code serving on when the
new code does not load (the error shown by `wsgictl status` until a roll succeeds)."""
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from helpers.daemon import WSGICTL, WSGID_BIN
from helpers.nginx import uwsgi_location
from helpers.procs import free_port, wait_for


# Answers "TEXT PID".
APP = '''import os

TEXT = "%s"


def application(environ, start_response):
    body = ("%%s %%d\\n" %% (TEXT, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

# A SyntaxError on line 3 (the ':' is missing).
BROKEN = '''import os

def application(environ, start_response)
    return []
'''

# The file name and the line of the SyntaxError, as Python says it ("... (app.py, line 3)") or as
# a worker that reports "PATH:LINE: SyntaxError: ..." does.
SYNTAX_AT_LINE_3 = re.compile(r"app\.py(, line |:)3\b")

# What a failed load writes to the error log: the worker's traceback and its one-line summary,
# the master's line about the replacement that exited, and the failed roll.
LOAD_FAILURE_LINES = (r"group site: ", r"cannot load app", r"SyntaxError", r"exited with status 3",
                      r"reload on change of group site failed")


def ctl(d, *args):
    r = subprocess.run([str(WSGICTL), "-s", str(d.tmp / "ctl.sock")] + list(args),
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def reload_error(d):
    rc, out, err = ctl(d, "status", "--json")
    assert rc == 0, (out, err)
    (g,) = json.loads(out)["groups"]
    return g["reload_error"]


def rolls_done(d):
    return d.log().count("reload on change of group site done")


def start(wsgid, tmp, text, processes=2, threads=4, **extra):
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    script = site / "app.py"
    script.write_text(APP % text)
    d = wsgid(str(script), processes=processes, threads=threads,
              top={"control": str(tmp / "ctl.sock")}, **extra)
    d.unix_paths.append(str(tmp / "ctl.sock"))
    return d, script


def get(addr):
    c = http.client.HTTPConnection(*addr, timeout=10)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    assert r.status == 200, (r.status, body)
    return body.decode().split()


class Load:
    """Clients sending GET / through nginx in a loop; each answer is kept as (time the request
    was sent, text), each failure as an error."""

    def __init__(self, addr, clients=2):
        self.addr = addr
        self.answers = []
        self.errors = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.done.is_set():
            t = time.monotonic()
            try:
                text, _ = get(self.addr)
                with self.lock:
                    self.answers.append((t, text))
            except Exception as e:  # noqa: BLE001 - any failure counts
                with self.lock:
                    self.errors.append(repr(e))

    def since(self, t0):
        with self.lock:
            return [text for t, text in self.answers if t >= t0]

    def settle(self, text, t0, rolled):
        """Once the roll is over (rolled() is true) and the requests it let through have been
        answered: the seconds from t0 to the last request sent that did not get text. Answered
        means that requests sent after the roll came back, as many as there are clients: a fixed
        wait was not always enough for a fresh worker's first answers under the sanitizer build
        (the last old answer was sent after the last new one that had come back)."""
        wait_for(rolled, timeout=15, what="the roll to be done")
        t_done = time.monotonic()

        def after_done():
            with self.lock:
                return sum(1 for t, _ in self.answers if t > t_done) >= len(self.threads)

        wait_for(after_done, timeout=15, what="answers to requests sent after the roll")
        with self.lock:
            old = [t for t, x in self.answers if t >= t0 and x != text]
            new = [t for t, x in self.answers if t >= t0 and x == text]
        assert new and (not old or max(new) > max(old)), (text, len(old), len(new))
        return max(old) - t0 if old else 0.0

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "load clients stuck"


def test_edit_under_load_through_nginx(wsgid, nginx, tmp):
    """An edit in place, then an editor's save (a new file renamed over the script): within 3 s
    every answer is the new text, and no request fails."""
    d, script = start(wsgid, tmp, "v1", reload_on_change=True)
    d.wait_log(r"group site: reload-on-change: watching 1 directory for 1 path")
    ng = nginx(uwsgi_location(d.unix))
    load = Load(ng.addr)
    try:
        wait_for(lambda: len(load.since(0)) > 20, what="answers")
        assert set(load.since(0)) == {"v1"}
        old = set(d.workers())

        t0 = time.monotonic()
        script.write_text(APP % "v2")
        took = load.settle("v2", t0, lambda: rolls_done(d) == 1)
        assert took < 3, "old answers for %.2f s after the edit" % took
        d.wait_log(r"group site: %s changed: restarting the workers" % re.escape(str(script)))
        d.wait_log(r"reload on change of group site done: 2 workers replaced")
        d.seen_workers.update(d.workers())
        wait_for(lambda: not set(d.workers()) & old, timeout=20, what="the old workers gone")

        # As editors save: a new file (named like Vim's swap file), renamed over the script.
        tmpfile = script.with_name(".app.py.swp")
        tmpfile.write_text(APP % "v3")
        t0 = time.monotonic()
        os.replace(tmpfile, script)
        took3 = load.settle("v3", t0, lambda: rolls_done(d) == 2)
        assert took3 < 3, "old answers for %.2f s after the save" % took3
        d.seen_workers.update(d.workers())
    finally:
        load.stop()
    print("new text everywhere %.2f s after an edit, %.2f s after a rename; %d requests"
          % (took, took3, len(load.answers)))
    assert not load.errors, load.errors[:5]
    assert len(re.findall(r"changed: restarting the workers", d.log())) == 2, d.log()


def test_syntax_error_keeps_the_old_code_until_fixed(wsgid, nginx, tmp):
    d, script = start(wsgid, tmp, "v1", reload_on_change=True)
    d.expect_log(*LOAD_FAILURE_LINES)
    ng = nginx(uwsgi_location(d.unix))
    load = Load(ng.addr)
    try:
        wait_for(lambda: len(load.since(0)) > 20, what="answers")
        old = set(d.workers())
        t0 = time.monotonic()
        script.write_text(BROKEN)
        err = wait_for(lambda: reload_error(d), timeout=10, what="reload_error in the status")
        assert SYNTAX_AT_LINE_3.search(err), err
        rc, out, _ = ctl(d, "status")
        assert rc == 0
        line = [x for x in out.splitlines() if "reload on change failed (the old workers keep "
                                                "serving)" in x]
        assert len(line) == 1 and SYNTAX_AT_LINE_3.search(line[0]), out
        d.wait_log(r"\[error\] master: reload on change of group site failed: .*app\.py")
        time.sleep(0.3)
        assert set(load.since(t0)) == {"v1"}
        assert set(d.workers()) == old

        t0 = time.monotonic()
        script.write_text(APP % "v2")
        took = load.settle("v2", t0, lambda: rolls_done(d) == 1)
        assert took < 3, "old answers for %.2f s after the fix" % took
        wait_for(lambda: reload_error(d) is None, timeout=5, what="reload_error cleared")
        rc, out, _ = ctl(d, "status")
        assert "failed" not in out, out
        d.seen_workers.update(d.workers())
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]


def package_site(tmp):
    """site/app.py, which imports TEXT ("h1") from its package site/lib, served with
    watch: ["**/*.py"]."""
    site = tmp / "site"
    (site / "lib").mkdir(parents=True)
    (site / "lib" / "__init__.py").write_text("")
    (site / "lib" / "helper.py").write_text('TEXT = "h1"\n')
    script = site / "app.py"
    script.write_text((APP % "x").replace('TEXT = "x"', "from lib.helper import TEXT"))
    return site, script


def test_watch_pattern(wsgid, tmp):
    """watch: ["**/*.py"] (which alone turns reload-on-change on): a helper module in a
    subdirectory rolls the group, in a directory created after the start too; other files, and
    the byte code the new workers write, do not."""
    site, script = package_site(tmp)
    d = wsgid(str(script), processes=2, threads=2, watch=["**/*.py"])
    d.wait_log(r"group site: reload-on-change: watching \d+ directories for 2 paths and patterns")
    assert get(d.tcp)[0] == "h1"
    pids = set(d.workers())
    assert len(pids) == 2

    def rolls():
        return len(re.findall(r"changed: restarting the workers", d.log()))

    (site / "notes.txt").write_text("not code\n")
    (site / "lib" / "notes.txt").write_text("not code\n")
    (site / "lib" / "helper.pyc").write_text("")
    time.sleep(1.5)  # three quiet periods
    assert set(d.workers()) == pids and rolls() == 0, d.log()

    (site / "lib" / "helper.py").write_text('TEXT = "h2"\n')
    wait_for(lambda: get(d.tcp)[0] == "h2", timeout=5, what="the helper's new text")
    d.wait_log(r"group site: %s changed" % re.escape(str(site / "lib" / "helper.py")))
    wait_for(lambda: not set(d.workers()) & pids, timeout=10, what="the old workers gone")
    wait_for(lambda: rolls_done(d) == 1, timeout=10, what="the roll done")
    assert rolls() == 1
    # The new workers wrote lib/__pycache__/helper.cpython-*.pyc: no roll for that.
    time.sleep(1.0)
    assert rolls() == 1, d.log()
    d.seen_workers.update(d.workers())

    # A package that did not exist at the start: its directory gets a watch when it appears.
    (site / "pkg").mkdir()
    (site / "pkg" / "mod.py").write_text("X = 1\n")
    wait_for(lambda: rolls() == 2, timeout=5, what="a roll for pkg/mod.py")
    wait_for(lambda: rolls_done(d) == 2, timeout=10, what="the second roll done")
    (site / "pkg" / "mod.py").write_text("X = 2\n")
    wait_for(lambda: rolls() == 3, timeout=5, what="a roll for the edit of pkg/mod.py")
    wait_for(lambda: rolls_done(d) == 3, timeout=10, what="the third roll done")
    d.seen_workers.update(d.workers())

    # Moved: one roll for both names; the watch follows the new name, not the old one.
    (site / "pkg").rename(site / "pkg2")
    wait_for(lambda: rolls() == 4, timeout=5, what="a roll for the move of pkg")
    wait_for(lambda: rolls_done(d) == 4, timeout=10, what="the fourth roll done")
    (site / "pkg2" / "mod.py").write_text("X = 3\n")
    wait_for(lambda: rolls() == 5, timeout=5, what="a roll for the edit of pkg2/mod.py")
    wait_for(lambda: rolls_done(d) == 5, timeout=10, what="the fifth roll done")
    d.seen_workers.update(d.workers())


def test_change_during_a_restart_waits_for_it(wsgid, tmp):
    """A change seen while `wsgictl restart` runs rolls the group again once it is done: the
    workers that restart started may have loaded the file before it changed."""
    site = tmp / "site"
    site.mkdir()
    script = site / "app.py"
    slow = "import time\ntime.sleep(0.8)\n"  # each worker takes 0.8 s to load its app
    script.write_text(slow + APP % "v1")
    d = wsgid(str(script), processes=1, threads=2, reload_on_change=True,
              top={"control": str(tmp / "ctl.sock")})
    d.unix_paths.append(str(tmp / "ctl.sock"))
    restart = threading.Thread(target=ctl, args=(d, "restart", "site"))
    restart.start()
    d.wait_log(r"group site: rolling restart of 1 workers")
    script.write_text(slow + APP % "v2")
    d.wait_log(r"group site: .*app\.py changed: the workers restart once the restart in "
               r"progress is done")
    restart.join(30)
    wait_for(lambda: rolls_done(d) == 1, timeout=15, what="the roll after the restart")
    log = d.log()
    assert log.index("restart done: 1 workers replaced") < log.index(
        "changed: restarting the workers"), log
    assert get(d.tcp)[0] == "v2"
    d.seen_workers.update(d.workers())


def test_reload_rebuilds_the_watches(wsgid, tmp):
    """SIGHUP / wsgictl reload builds the watches again from the new config: turned on, a change
    rolls the group; turned off, it no longer does (and the group itself is not restarted by
    the reload: the workers do not read these keys)."""
    d, script = start(wsgid, tmp, "v1", processes=1, threads=2)
    good = d.conf_path.read_text()
    assert "    threads: 2\n" in good, good
    d.conf_path.write_text(good.replace("    threads: 2\n",
                                        "    threads: 2\n    reload-on-change: true\n"))
    rc, out, err = ctl(d, "reload")
    assert rc == 0 and "unchanged: site" in out, (out, err)
    d.wait_log(r"group site: reload-on-change: watching 1 directory")
    # libuv keeps one inotify descriptor for the loop once a directory has been watched.
    d.fd_rebase()
    script.write_text(APP % "v2")
    wait_for(lambda: get(d.tcp)[0] == "v2", timeout=5, what="the new text")
    wait_for(lambda: rolls_done(d) == 1, timeout=10, what="the roll done")
    d.seen_workers.update(d.workers())

    d.conf_path.write_text(good)
    rc, out, err = ctl(d, "reload")
    assert rc == 0 and "unchanged: site" in out, (out, err)
    wait_for(lambda: len(d.workers()) == 1, timeout=20, what="the replaced worker gone")
    pids = set(d.workers())
    script.write_text(APP % "v3")
    time.sleep(1.2)
    assert set(d.workers()) == pids and get(d.tcp)[0] == "v2"
    assert d.log().count("changed: restarting the workers") == 1


def roll_to(d, text, n):
    """The n-th roll is done and the group answers text."""
    wait_for(lambda: rolls_done(d) >= n, timeout=10, what="roll %d done" % n)
    wait_for(lambda: get(d.tcp)[0] == text, timeout=5, what="the text %s" % text)
    assert rolls_done(d) == n, d.log()
    d.seen_workers.update(d.workers())


def save_as_editors_do(script, text):
    tmpfile = script.with_name(".app.py.swp")
    tmpfile.write_text(APP % text)
    os.replace(tmpfile, script)


def test_directory_replaced_by_mv_and_mkdir(wsgid, tmp):
    """helper-62's finding: the app's directory moved away and made again (a deploy that keeps
    the old tree) rolls the group, and the new directory is watched: a later edit, and a later
    editor's save, roll it too. Before, the watch stayed on the old directory."""
    d, script = start(wsgid, tmp, "v1", processes=1, threads=2, reload_on_change=True)
    d.wait_log(r"group site: reload-on-change: watching 1 directory")
    site = script.parent
    site.rename(tmp / "site.old")
    site.mkdir()
    script.write_text(APP % "v2")
    roll_to(d, "v2", 1)
    script.write_text(APP % "v3")
    roll_to(d, "v3", 2)
    save_as_editors_do(script, "v4")
    roll_to(d, "v4", 3)
    (tmp / "site.old" / "app.py").write_text(APP % "old")  # no longer watched
    time.sleep(1.0)
    assert rolls_done(d) == 3 and get(d.tcp)[0] == "v4", d.log()


def test_directory_removed_and_made_again(wsgid, tmp):
    """rm -rf of the app's directory, then the same tree written again: one roll, and the new
    directory is watched for the next edit. Before, it never was."""
    d, script = start(wsgid, tmp, "v1", processes=1, threads=2, reload_on_change=True)
    d.wait_log(r"group site: reload-on-change: watching 1 directory")
    shutil.rmtree(script.parent)
    script.parent.mkdir()
    script.write_text(APP % "v2")
    roll_to(d, "v2", 1)
    save_as_editors_do(script, "v3")
    roll_to(d, "v3", 2)


def test_subdirectory_replaced_by_mv_and_mkdir(wsgid, tmp):
    """watch: ["**/*.py"]: a package directory moved away and made again at once is watched
    anew. Before, when both were done before the master read the first event, the new lib was
    taken for the old one, still watched: the edit after it was never seen."""
    site, script = package_site(tmp)
    d = wsgid(str(script), processes=1, threads=2, watch=["**/*.py"])
    d.wait_log(r"group site: reload-on-change: watching \d+ directories")
    assert get(d.tcp)[0] == "h1"
    (site / "lib").rename(tmp / "lib.old")
    (site / "lib").mkdir()
    (site / "lib" / "helper.py").write_text('TEXT = "h2"\n')
    roll_to(d, "h2", 1)
    (site / "lib" / "helper.py").write_text('TEXT = "h3"\n')
    roll_to(d, "h3", 2)


@pytest.mark.parametrize("sub,watch", [("", None), ("", ["current/**/*.py"]), ("src/", None)])
def test_symlink_swap(wsgid, tmp, sub, watch):
    """app: current/app.py (or current/src/app.py: the link above the app's directory), current a
    symbolic link switched from releases/1 to releases/2 as deploys do it (atomically: a new link
    renamed over the old one): one roll, then an edit of the file current now names rolls the
    group too. Before, the watch stayed on releases/1."""
    for n in (1, 2):
        (tmp / "releases" / str(n) / sub).mkdir(parents=True)
        (tmp / "releases" / str(n) / sub / "app.py").write_text(APP % ("r%d" % n))
    os.symlink("releases/1", tmp / "current")
    extra = {"watch": [str(tmp / w) for w in watch]} if watch else {"reload_on_change": True}
    d = wsgid(str(tmp / "current" / sub / "app.py"), processes=1, threads=2, **extra)
    d.wait_log(r"group site: reload-on-change: watching 1 directory")
    assert get(d.tcp)[0] == "r1"
    os.symlink("releases/2", tmp / "current.new")
    os.replace(tmp / "current.new", tmp / "current")
    roll_to(d, "r2", 1)
    (tmp / "releases" / "2" / sub / "app.py").write_text(APP % "r2-edited")
    roll_to(d, "r2-edited", 2)
    (tmp / "releases" / "1" / sub / "app.py").write_text(APP % "r1-edited")  # no longer in use
    time.sleep(1.0)
    assert rolls_done(d) == 2, d.log()


def test_app_script_that_is_a_symbolic_link(wsgid, tmp):
    """app: site/app.py, a symbolic link to ../code/app.py (a script shared by sites, or kept
    out of the web root): an editor's save of code/app.py rolls the group, as mod_wsgi and uWSGI
    see it (they stat the script, which follows the link); before, only site/ was watched and
    the edit was never seen. The link switched to another file rolls the group, and from then on
    that file is the one watched (helper-81)."""
    for name in ("site", "code", "code2"):
        (tmp / name).mkdir()
    (tmp / "code" / "app.py").write_text(APP % "c1")
    (tmp / "code2" / "app.py").write_text(APP % "d1")
    os.symlink("../code/app.py", tmp / "site" / "app.py")
    d = wsgid(str(tmp / "site" / "app.py"), processes=1, threads=2, reload_on_change=True)
    d.wait_log(r"group site: reload-on-change: watching \d+ director")
    assert get(d.tcp)[0] == "c1"
    save_as_editors_do(tmp / "code" / "app.py", "c2")
    roll_to(d, "c2", 1)
    os.symlink("../code2/app.py", tmp / "site" / "app.py.new")
    os.replace(tmp / "site" / "app.py.new", tmp / "site" / "app.py")
    roll_to(d, "d1", 2)
    save_as_editors_do(tmp / "code2" / "app.py", "d2")
    roll_to(d, "d2", 3)
    (tmp / "code" / "app.py").write_text(APP % "c3")  # no longer the app
    time.sleep(1.0)
    assert rolls_done(d) == 3, d.log()


def test_an_app_link_whose_file_is_removed_then_written_again(wsgid, tmp):
    """app: site/app.py, a symbolic link to ../code/app.py, its file removed by a deploy (the
    roll for that fails, the old workers serve on) and written again: the new file rolls the
    group, as a plain app script's does. The failed roll built the watches again with the link
    dangling, which was then watched through its own directory alone: the new code/app.py was
    never seen and the group served the old code for good (helper-89)."""
    for name in ("site", "code"):
        (tmp / name).mkdir()
    (tmp / "code" / "app.py").write_text(APP % "c1")
    os.symlink("../code/app.py", tmp / "site" / "app.py")
    d = wsgid(str(tmp / "site" / "app.py"), processes=1, threads=2, reload_on_change=True)
    d.expect_log(*LOAD_FAILURE_LINES, r"FileNotFoundError")
    d.wait_log(r"group site: reload-on-change: watching \d+ director")
    assert get(d.tcp)[0] == "c1"
    os.unlink(tmp / "code" / "app.py")
    d.wait_log(r"reload on change of group site failed")
    assert get(d.tcp)[0] == "c1"
    (tmp / "code" / "app.py").write_text(APP % "c2")
    roll_to(d, "c2", 1)


def site_with_its_sockets(wsgid, tmp):
    """A group that watches site/, which holds its app, its unix socket and the control socket."""
    site = tmp / "site"
    site.mkdir()
    script = site / "app.py"
    script.write_text(APP % "v1")
    d = wsgid(str(script), processes=1, threads=2, watch=[str(site)],
              listen=["unix:" + str(site / "site.sock"), "127.0.0.1:%d" % free_port()],
              top={"control": str(site / "ctl.sock")})
    d.unix_paths.append(str(site / "ctl.sock"))
    d.wait_log(r"group site: reload-on-change: watching 1 directory")
    return d, site, script


def test_own_sockets_are_not_changes(wsgid, tmp):
    """watch: a directory that holds wsgid's own unix sockets (the group's, bound anew when the
    group starts again; the control socket): `wsgictl stop site` then `start site` rolled the
    group at once, for its socket file; the log files and the pidfile were left out already, not
    the sockets (helper-81)."""
    d, site, script = site_with_its_sockets(wsgid, tmp)
    rc, out, err = ctl_at(site / "ctl.sock", "stop", "site")
    assert rc == 0, err
    wait_for(lambda: not d.workers(), timeout=20, what="the workers stopped")
    rc, out, err = ctl_at(site / "ctl.sock", "start", "site")
    assert rc == 0, err
    d.seen_workers.update(d.workers())
    time.sleep(1.5)  # three quiet periods
    assert "changed: restarting the workers" not in d.log(), d.log()
    assert get(d.tcp)[0] == "v1"
    script.write_text(APP % "v2")  # the app itself still rolls it
    roll_to(d, "v2", 1)


def test_a_socket_a_reload_let_go_is_not_a_change(wsgid, tmp):
    """watch: a directory that holds a group's unix socket, and a reload that moves the socket
    (site.sock to site2.sock): the reload restarted the group, then reload-on-change restarted it
    again for the old socket's removal, which the new config no longer names (the same for the
    socket of a group a reload removes, in the directory other groups watch). A socket wsgid
    removes is left out as the ones it binds (helper-89)."""
    d, site, script = site_with_its_sockets(wsgid, tmp)
    d.unix_paths.append(str(site / "site2.sock"))
    d.conf_path.write_text(d.conf_path.read_text().replace("site.sock", "site2.sock"))
    rc, out, err = ctl_at(site / "ctl.sock", "reload")
    assert rc == 0 and "restarted: site" in out, (rc, out, err)
    d.seen_workers.update(d.workers())
    assert not (site / "site.sock").exists() and (site / "site2.sock").exists()
    time.sleep(1.5)  # three quiet periods
    assert "changed: restarting the workers" not in d.log(), d.log()
    assert get(d.tcp)[0] == "v1"
    script.write_text(APP % "v2")  # the app itself still rolls it
    roll_to(d, "v2", 1)


@pytest.mark.parametrize("n_socks", [1, 40])
def test_the_sockets_of_a_group_a_reload_removes_are_not_changes(wsgid, tmp, n_socks):
    """watch: a directory that holds the unix sockets of another group, which a reload removes:
    their removal is wsgid's own, not a change of the watching group's files, and the reload
    leaves that group as it was; its app still rolls it. 25fcc35 covered this path with a test of
    a moved socket alone; with 40 sockets, wsgid kept the last 32 it removed, so the removal of
    the first 8 rolled the watching group (helper-98)."""
    from helpers.config import make_config
    site = tmp / "site"
    site.mkdir()
    script = site / "app.py"
    script.write_text(APP % "v1")
    port = free_port()
    others = [site / ("other%d.sock" % i) for i in range(n_socks)]
    groups = {"site": {"app": str(script), "processes": 1, "threads": 2, "watch": [str(site)],
                       "listen": ["unix:" + str(site / "site.sock"), "127.0.0.1:%d" % port]},
              "other": {"app": str(script), "processes": 1, "threads": 1,
                        "listen": ["unix:" + str(o) for o in others]}}
    top = {"control": str(tmp / "ctl.sock")}
    d = wsgid(config=make_config(tmp, groups, **top))
    d.tcp = ("127.0.0.1", port)
    d.unix_paths.append(str(tmp / "ctl.sock"))
    d.wait_log(r"group site: reload-on-change: watching 1 directory")
    del groups["other"]
    d.conf_path.write_text(make_config(tmp, groups, **top))
    rc, out, err = ctl(d, "reload")
    assert rc == 0 and "removed: other" in out and "unchanged: site" in out, (rc, out, err)
    assert not [o for o in others if o.exists()]
    time.sleep(1.5)  # three quiet periods
    assert "changed: restarting the workers" not in d.log(), d.log()
    assert get(d.tcp)[0] == "v1"
    script.write_text(APP % "v2")  # the app itself still rolls it
    roll_to(d, "v2", 1)


INOTIFY_HOLDER = """import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
n = 0
while libc.inotify_init1(0) >= 0:
    n += 1
print(n, flush=True)
time.sleep(30)
"""


def test_inotify_instances_taken_are_named(tmp):
    """Every inotify instance of the user taken by other programs (fs.inotify.max_user_instances,
    128 by default; editors and file watchers take them in development): each directory could not
    be watched with "too many open files", which sends the operator to the open-file limit. The
    warning names the sysctl (helper-81). The master runs as a throwaway user, whose instances
    alone a holder takes."""
    user = "wdino%d" % os.getpid()
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", user], check=True,
                   capture_output=True, timeout=30)
    holder = master = None
    try:
        os.chmod(tmp, 0o755)
        tmp = tmp / "own"  # the user's, where the master writes its log and sockets
        tmp.mkdir()
        shutil.chown(tmp, user)
        (tmp / "app.py").write_text(APP % "v1")
        (tmp / "holder.py").write_text(INOTIFY_HOLDER)
        (tmp / "w.yaml").write_text(
            "control: %s\nlog: {level: info, file: %s}\ngroups:\n  site: {app: app.py, "
            "listen: 127.0.0.1:%d, reload-on-change: true}\n"
            % (tmp / "ctl.sock", tmp / "err.log", free_port()))
        for f in tmp.iterdir():
            shutil.chown(f, user)
        holder = subprocess.Popen(["python3", str(tmp / "holder.py")], user=user,
                                  stdout=subprocess.PIPE, text=True)
        assert int(holder.stdout.readline()) > 0
        master = subprocess.Popen([str(WSGID_BIN), "-c", str(tmp / "w.yaml")], user=user,
                                  cwd=str(tmp), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        log = tmp / "err.log"
        wait_for(lambda: log.exists() and "all workers ready" in log.read_text(), timeout=15,
                 what="wsgid ready")
        line = next(x for x in log.read_text().splitlines() if "cannot watch" in x)
        assert "fs.inotify.max_user_instances" in line, line
    finally:
        for p in (master, holder):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(20)
        subprocess.run(["userdel", user], capture_output=True, timeout=30)


def ctl_at(sock, *args):
    r = subprocess.run([str(WSGICTL), "-s", str(sock)] + list(args), capture_output=True,
                       text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def test_config_errors_name_the_line(tmp):
    site = tmp / "site"
    site.mkdir()
    (site / "app.py").write_text(APP % "x")
    cases = [
        ("    app: pkg.mod:app\n    reload-on-change: true\n",
         r":6:23: groups\.site\.reload-on-change: the app 'pkg\.mod' is a module.*list them in "
         r"`watch:`"),
        ("    app: site/app.py\n    reload-on-change: sometimes\n",
         r":6:23: groups\.site\.reload-on-change: expected true or false, got 'sometimes'"),
        ("    app: site/app.py\n    watch: [site/*.py, nope/**/*.py]\n",
         r":6:24: groups\.site\.watch: .*/nope/\*\*/\*\.py: the directory .*/nope, where the "
         r"pattern starts, does not exist"),
        ("    app: site/app.py\n    watch: []\n",
         r":6:12: groups\.site\.watch: at least one path or pattern is required"),
    ]
    for i, (lines, want) in enumerate(cases):
        conf = tmp / ("bad%d.yaml" % i)
        conf.write_text("groups:\n  site:\n    listen: 127.0.0.1:1\n    threads: 1\n" + lines)
        r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(conf)], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 1, (lines, r.stdout, r.stderr)
        assert re.search("^" + re.escape(str(conf)) + want, r.stderr), (want, r.stderr)
    conf = tmp / "good.yaml"
    conf.write_text("groups:\n  site:\n    listen: 127.0.0.1:1\n    app: pkg.mod:app\n"
                    "    watch: ['**/*.py', site/]\n")
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(conf)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
