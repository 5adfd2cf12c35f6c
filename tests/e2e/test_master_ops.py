"""The master's rolling operations at their edges: commands while wsgid starts, a reload that
removes a group in the middle of its restart, a worker that dies during a reload's roll, a reload
that fails half-way, a recycle whose replacement failed, and a reload that changes a unix
socket's mode. Each was a fault a review found (and proved) in daemon/master."""
import ctypes
import fcntl
import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import threading
import time

import pytest

from helpers.clients import Conn, http_request, request
from helpers.config import app, make_config
from helpers.daemon import WSGICTL, WSGID_BIN
from helpers.procs import cmdline, free_port, wait_for

# Answers "VERSION pid"; its import takes $SLOW_IMPORT seconds, and fails while $FAIL_IF exists
# (a file) or, with $FAIL_SECOND set, at the second import that finds $FAIL_SECOND.
VERSION_APP = '''import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT", "0")))
if os.environ.get("FAIL_IF") and os.path.exists(os.environ["FAIL_IF"]):
    raise RuntimeError("e2e: this import fails on purpose")
if os.environ.get("FAIL_SECOND"):
    if os.path.exists(os.environ["FAIL_SECOND"]):
        raise RuntimeError("e2e: the second import fails on purpose")
    open(os.environ["FAIL_SECOND"], "w").close()


def application(environ, start_response):
    body = ("%s %d\\n" % (os.environ.get("VERSION", "-"), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

# The import error lines a failing import leaves in the log (its traceback, the master's lines).
IMPORT_FAILS = ("fails on purpose", "Traceback", r"^\s", "RuntimeError", "failed", "cannot load",
                "exited with status 3", r"group \w+:\s", "version.py", "badimport",
                "No module named", "ModuleNotFoundError", "import wsgid_e2e")


def ctl(tmp, *args, timeout=60):
    r = subprocess.run([str(WSGICTL), "-s", str(tmp / "ctl.sock")] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def group(tmp, **kw):
    g = {"app": str(tmp / "version.py"), "threads": 2}
    g.update(kw)
    return g


def config(tmp, groups):
    (tmp / "version.py").write_text(VERSION_APP)
    return make_config(tmp, groups, control=str(tmp / "ctl.sock"))


def ask(sock):
    """(version, pid) from one request on a new connection to the unix socket sock."""
    with Conn(str(sock)) as c:
        c.send(http_request("GET", "/", {"Connection": "close"}))
        r = c.response()
    assert r.status == 200, r
    version, pid = r.body.split()
    return version.decode(), int(pid)


def answers_from(sock, pids, tries=20):
    """{pid: version} of the answers on sock until every pid in pids has answered (or tries).
    Each round holds 4 connections a worker open at once: an idle worker takes every connection
    that comes one at a time (the first of the group's workers in the kernel's queue of waiters
    wakes; accept.c: accept_cb), and one with connections open goes to the back of that queue,
    so the next connection wakes a sibling. One request at a time, the worker that had waited
    longest answered 200 times in a row (CI, stop 47)."""
    seen = {}
    for _ in range(tries):
        conns = [Conn(str(sock)) for _ in range(4 * len(pids))]
        try:
            for c in conns:
                c.send(http_request("GET", "/", {"Connection": "close"}))
            for c in conns:
                r = c.response()
                assert r.status == 200, r
                version, pid = r.body.split()
                seen[int(pid)] = version.decode()
        finally:
            for c in conns:
                c.sock.close()
        if set(pids) <= set(seen):
            break
    return seen


def test_commands_wait_for_the_start(wsgid, tmp):
    """A restart or a group's stop while wsgid starts is refused: the start counts every slot's
    first worker ready, and one replaced (or stopped) before it was ready never was, so wsgid
    stayed "starting" for good. A group added later whose app cannot load then stopped all of
    wsgid, as at the start, and reload-on-change never rolled."""
    text = config(tmp, {"a": group(tmp, listen=["unix:" + str(tmp / "a.sock")],
                                   env={"SLOW_IMPORT": "3", "VERSION": "a"}, processes=1),
                        "b": group(tmp, listen=["unix:" + str(tmp / "b.sock")], processes=1)})
    d = wsgid(config=text, wait=False)
    d.unix_paths += [str(tmp / "ctl.sock"), str(tmp / "a.sock"), str(tmp / "b.sock")]
    wait_for(lambda: (tmp / "ctl.sock").exists(), timeout=10, what="the control socket")
    for args in (("restart", "a"), ("stop", "a"), ("reload",)):
        rc, out, err = ctl(tmp, *args)
        assert rc != 0 and "still starting" in err, (args, rc, out, err)
    d.wait_ready(timeout=30)
    rc, out, err = ctl(tmp, "restart", "a")
    assert rc == 0, (out, err)
    d.seen_workers.update(d.workers())
    # A group added now whose app cannot load: the reload fails, wsgid goes on.
    d.expect_log("reload failed", *IMPORT_FAILS)
    d.conf_path.write_text(text + "  c:\n    app: %s\n    listen: ['unix:%s']\n%s" % (
        app("badimport"), tmp / "c.sock", "    user: root\n" if os.geteuid() == 0 else ""))
    rc, out, err = ctl(tmp, "reload")
    assert rc == 1, (out, err)
    time.sleep(1)
    assert d.running(), d.log()
    assert ask(tmp / "b.sock")[0] == "-"


def test_a_reload_waits_for_the_restart_of_a_group_it_would_remove(wsgid, tmp):
    """A reload that would remove a group in the middle of its rolling restart is refused. It
    removed it, the restart's replacement drained with it, and `wsgictl restart` never
    answered."""
    groups = {"a": group(tmp, listen=["unix:" + str(tmp / "a.sock")], processes=2,
                         env={"SLOW_IMPORT": "1.5"}),
              "b": group(tmp, listen=["unix:" + str(tmp / "b.sock")], processes=1)}
    d = wsgid(config=config(tmp, groups))
    d.unix_paths += [str(tmp / "ctl.sock"), str(tmp / "b.sock")]
    result = {}

    def restart():
        result["r"] = ctl(tmp, "restart", "a", timeout=60)
    t = threading.Thread(target=restart)
    t.start()
    time.sleep(0.6)  # the first replacement takes 1.5 s to import
    del groups["a"]
    d.conf_path.write_text(config(tmp, groups))
    d.expect_log("reload refused")
    rc, out, err = ctl(tmp, "reload")
    assert rc != 0 and "in progress" in err, (rc, out, err)
    t.join(60)
    assert not t.is_alive(), "wsgictl restart never answered"
    assert result["r"][0] == 0, result
    d.seen_workers.update(d.workers())
    rc, out, err = ctl(tmp, "reload")
    assert rc == 0 and "removed: a" in out, (out, err)


def test_a_worker_that_dies_during_a_reload_comes_back_with_the_new_config(wsgid, tmp):
    """A worker of the new config that dies while the reload rolls the next slots is replaced
    with the new config. It came back with the old one, which stayed after the reload said every
    worker was replaced."""
    sock = tmp / "v.sock"
    g = group(tmp, listen=["unix:" + str(sock)], processes=2, env={"VERSION": "1"})
    d = wsgid(config=config(tmp, {"v": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sock)]
    g["env"] = {"VERSION": "2", "SLOW_IMPORT": "2"}
    d.conf_path.write_text(config(tmp, {"v": g}))
    result = {}

    def reload():
        result["r"] = ctl(tmp, "reload", timeout=60)
    t = threading.Thread(target=reload)
    t.start()
    line = d.wait_log(r"group v worker 1: pid \d+ replaced by pid \d+", timeout=20)
    new = int(re.search(r"replaced by pid (\d+)", line).group(1))
    d.expect_log(r"group v worker 1 \(pid %d\) killed by signal 9" % new)
    os.kill(new, signal.SIGKILL)
    t.join(60)
    assert result["r"][0] == 0, result
    d.wait_log(r"group v worker 1 \(pid \d+\) ready", since=d.log().index(line) + len(line),
               timeout=20)
    wait_for(lambda: len(d.workers()) == 2, timeout=20, what="two workers")
    d.seen_workers.update(d.workers())
    seen = answers_from(sock, d.workers())
    assert set(seen.values()) == {"2"}, seen


def test_a_reload_that_fails_half_way_goes_back(wsgid, tmp):
    """A reload whose change fails at the second worker: the first, already on the new config
    (listening on the new socket, which the failure closes), goes back to the configuration in
    force, and both workers serve the old socket again. It stayed on the closed socket, unseen,
    while the reply said the old workers kept serving."""
    old_sock, new_sock = tmp / "f.sock", tmp / "f2.sock"
    g = group(tmp, listen=["unix:" + str(old_sock)], processes=2, env={"VERSION": "1"})
    d = wsgid(config=config(tmp, {"f": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(old_sock)]
    g["listen"] = ["unix:" + str(new_sock)]
    g["env"] = {"VERSION": "2", "FAIL_SECOND": str(tmp / "imported")}
    d.conf_path.write_text(config(tmp, {"f": g}))
    d.expect_log("reload failed", *IMPORT_FAILS)
    rc, out, err = ctl(tmp, "reload")
    assert rc == 1 and "go back to the configuration in force" in err, (rc, out, err)
    d.wait_log(r"group f worker 1 \(pid \d+\): back to the configuration in force", timeout=5)
    wait_for(lambda: len(d.workers()) == 2 and d.log().count("stopping (replaced)") >= 2,
             timeout=30, what="the first worker back on the old config")
    time.sleep(0.5)
    pids = d.workers()
    d.seen_workers.update(pids)
    seen = answers_from(old_sock, pids)
    assert set(seen) == set(pids) and set(seen.values()) == {"1"}, (seen, pids)
    assert not new_sock.exists()


def test_a_recycle_whose_replacement_failed_is_tried_again(wsgid, tmp):
    """maximum-requests: the worker asks once; its replacement fails (the app cannot be imported
    for a while), and 30 s later the master tries again for it. Nothing asked again, and the
    worker was never recycled."""
    broken = tmp / "broken"
    sock = tmp / "r.sock"
    g = group(tmp, listen=["unix:" + str(sock)], processes=1, maximum_requests=3,
              env={"FAIL_IF": str(broken)})
    d = wsgid(config=config(tmp, {"r": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sock)]
    (first,) = d.workers()
    broken.write_text("")
    d.expect_log("its replacement failed", *IMPORT_FAILS)
    for _ in range(3):
        assert ask(sock)[1] == first
    d.wait_log(r"\(pid %d\): its replacement failed" % first, timeout=20)
    broken.unlink()
    d.wait_log(r"\(pid %d\) recycled: maximum-requests" % first, timeout=45)
    wait_for(lambda: d.workers() and first not in d.workers(), timeout=20,
             what="the recycled worker gone")
    d.seen_workers.update(d.workers())
    assert ask(sock)[1] != first


def test_a_reload_applies_a_new_socket_mode(wsgid, tmp):
    """socket-mode changed by a reload on a unix socket kept across it: applied. It was applied
    only when the socket was bound, and the reply said the group restarted."""
    sock = tmp / "m.sock"
    g = group(tmp, listen=["unix:" + str(sock)], processes=1)
    d = wsgid(config=config(tmp, {"m": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sock)]
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    g["socket_mode"] = "0600"
    d.conf_path.write_text(config(tmp, {"m": g}))
    rc, out, err = ctl(tmp, "reload")
    assert rc == 0 and "restarted: m" in out, (out, err)
    d.seen_workers.update(d.workers())
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert ask(sock)[0] == "-"


def test_a_reload_renames_a_group_without_dropping_a_request(wsgid, tmp):
    """A group renamed on its own address ("a" becomes "site"): the group takes the new name and
    its workers roll onto the new config one at a time, on the listener it had, while clients
    keep asking; none of their requests fails. The reload was refused ("rename a group in two
    reloads"): the new group could not bind the address the old one held."""
    sock = tmp / "r.sock"
    g = group(tmp, listen=["unix:" + str(sock)], processes=2, env={"VERSION": "old"})
    d = wsgid(config=config(tmp, {"a": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sock)]
    old_pids = set(d.workers())
    stop, counts, errors = threading.Event(), {"old": 0, "new": 0}, []

    def load():
        while not stop.is_set():
            try:
                counts[ask(sock)[0]] += 1
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        d.conf_path.write_text(config(tmp, {"site": dict(g, env={"VERSION": "new"})}))
        rc, out, err = ctl(tmp, "reload")
        assert rc == 0 and "renamed: a -> site" in out and "restarted: site" in out, (out, err)
        assert "removed" not in out and "added" not in out, out
        wait_for(lambda: not (set(d.workers()) & old_pids), timeout=20, what="old workers gone")
        d.seen_workers.update(d.workers())
        new_seen = counts["new"]
        wait_for(lambda: counts["new"] > new_seen + 20, timeout=10, what="answers after the roll")
    finally:
        stop.set()
        for t in threads:
            t.join()
    print("answers: %(old)d from the old config, %(new)d from the new" % counts)
    assert not errors, errors[:5]
    assert counts["old"] > 0 and counts["new"] > 0, counts
    d.wait_log(r"reload: group a renamed site", timeout=5)
    rc, out, err = ctl(tmp, "status")
    assert rc == 0 and re.search(r"^group site:", out, re.M), out
    assert not re.search(r"^group a:", out, re.M), out
    names = {cmdline(p).split(b"\0")[0] for p in d.workers()}
    assert names == {b"(wsgi:site)"}, names
    assert ask(sock)[0] == "new"
    rc, out, err = ctl(tmp, "restart", "site")
    assert rc == 0, (out, err)
    d.seen_workers.update(d.workers())


def test_a_rename_whose_app_fails_goes_back(wsgid, tmp):
    """The renamed group's new config cannot load its app at the second worker: the reload fails,
    the first worker (replaced already, "(wsgi:site)") goes back to the configuration in force,
    the group to its old name, and the old workers serve throughout. With the app mended, the
    next reload renames it."""
    sock = tmp / "r.sock"
    g = group(tmp, listen=["unix:" + str(sock)], processes=2, env={"VERSION": "old"})
    d = wsgid(config=config(tmp, {"a": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sock)]
    site = dict(g, env={"VERSION": "new", "FAIL_SECOND": str(tmp / "imported")})
    d.conf_path.write_text(config(tmp, {"site": site}))
    d.expect_log("reload failed", "back to the name a", *IMPORT_FAILS)
    rc, out, err = ctl(tmp, "reload")
    assert rc == 1 and "go back to the configuration in force" in err, (rc, out, err)
    d.wait_log(r"group site: back to the name a, with the configuration in force", timeout=5)
    d.wait_log(r"group a worker 1 \(pid \d+\): back to the configuration in force", timeout=5)

    def back():
        pids = d.workers()
        return len(pids) == 2 and d.log().count("stopping (replaced)") >= 2 and \
            {cmdline(p).split(b"\0")[0] for p in pids} == {b"(wsgi:a)"}
    wait_for(back, timeout=30, what="both workers on the old config, as (wsgi:a)")
    d.seen_workers.update(d.workers())
    assert ask(sock)[0] == "old"
    rc, out, err = ctl(tmp, "status")
    assert rc == 0 and re.search(r"^group a:", out, re.M), out
    assert not re.search(r"^group site:", out, re.M), out
    (tmp / "imported").unlink()
    d.conf_path.write_text(config(tmp, {"site": dict(g, env={"VERSION": "new"})}))
    rc, out, err = ctl(tmp, "reload")
    assert rc == 0 and "renamed: a -> site" in out, (rc, out, err)
    wait_for(lambda: ask(sock)[0] == "new", timeout=20, what="the renamed group's answers")
    d.seen_workers.update(d.workers())


def test_a_group_split_in_two_is_refused_plainly(wsgid, tmp):
    """A removed group's two addresses in two new groups: not one group renamed. Refused with
    the reason; the old group keeps serving on both."""
    s1, s2 = tmp / "s1.sock", tmp / "s2.sock"
    g = group(tmp, listen=["unix:" + str(s1), "unix:" + str(s2)], processes=1)
    d = wsgid(config=config(tmp, {"a": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(s1), str(s2)]
    d.conf_path.write_text(config(tmp, {"x": dict(g, listen=["unix:" + str(s1)]),
                                        "y": dict(g, listen=["unix:" + str(s2)])}))
    d.expect_log("reload refused")
    rc, out, err = ctl(tmp, "reload")
    assert rc == 1 and ("groups x and y are on addresses of group a, which the file removes: a "
                        "group can be renamed once, not twice") in err, (rc, out, err)
    assert ask(s1)[0] == "-" and ask(s2)[0] == "-"


def test_a_rename_onto_a_wildcard_address_is_refused_plainly(wsgid, tmp):
    """The new name on 0.0.0.0 where the old one had 127.0.0.1 (one port): the wildcard cannot
    be bound while the old address is, nor can the old socket serve it. Refused with the reason
    and the way; it said "Address already in use" (and before 21d43bc it was not seen as a
    rename at all). A group that widens its own address so is refused alike."""
    port = free_port()
    g = group(tmp, listen=["127.0.0.1:%d" % port], processes=1)
    d = wsgid(config=config(tmp, {"a": g}))
    d.unix_paths.append(str(tmp / "ctl.sock"))
    d.expect_log("cannot be bound while group a listens on", "reload refused")
    for groups in ({"site": dict(g, listen=["0.0.0.0:%d" % port])},
                   {"a": dict(g, listen=["0.0.0.0:%d" % port])}):
        d.conf_path.write_text(config(tmp, groups))
        since = d.log_size()
        rc, out, err = ctl(tmp, "reload")
        # The reason and the way reach wsgictl, not the log only (helper-62).
        why = (r"reload refused: group %s: 0\.0\.0\.0:%d cannot be bound while group a listens on "
               r"127\.0\.0\.1:%d: move it in two reloads" % (list(groups)[0], port, port))
        assert rc == 1 and re.search(why, err), (rc, out, err)
        d.wait_log(why, since=since, timeout=5)
    assert "already in use" not in d.log()


def test_a_reload_onto_a_port_in_use_says_why(wsgid, tmp):
    """A new group on a port another process holds: wsgictl reload prints why, as the log has it
    (it printed "a listener could not be bound (see above)", above it nothing: helper-62)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    g = group(tmp, listen=["unix:" + str(tmp / "a.sock")], processes=1)
    d = wsgid(config=config(tmp, {"a": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(tmp / "a.sock")]
    d.conf_path.write_text(config(tmp, {"a": g, "b": dict(g, listen=["127.0.0.1:%d" % port])}))
    d.expect_log("reload refused", "cannot listen on")
    rc, out, err = ctl(tmp, "reload")
    taken.close()
    assert rc == 1 and re.search(r"reload refused: group b: cannot listen on 127\.0\.0\.1:%d: "
                                 r"Address already in use" % port, err), (rc, out, err)


def test_a_stopped_groups_address_goes_to_another_group(wsgid, tmp):
    """A stopped group's TCP listener refuses connections but holds its address; a reload that
    removes the group and gives the address to another binds it beside the paused listener, as
    it did before wsgid said plainly why an address held by a running group cannot move."""
    port = free_port()
    sa, sb = tmp / "a.sock", tmp / "b.sock"
    a = group(tmp, listen=["127.0.0.1:%d" % port, "unix:" + str(sa)], processes=1)
    b = group(tmp, listen=["unix:" + str(sb)], processes=1, env={"VERSION": "b"})
    d = wsgid(config=config(tmp, {"a": a, "b": b}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sb)]
    rc, out, err = ctl(tmp, "stop", "a")
    assert rc == 0, (out, err)
    d.wait_log(r"group a: stopped: its listeners refuse connections", timeout=20)
    b["listen"] = ["unix:" + str(sb), "127.0.0.1:%d" % port]
    d.conf_path.write_text(config(tmp, {"b": b}))
    rc, out, err = ctl(tmp, "reload")
    assert rc == 0 and "removed: a" in out and "restarted: b" in out, (rc, out, err)
    d.seen_workers.update(d.workers())

    def on_port():
        try:
            with Conn(("127.0.0.1", port)) as c:
                c.send(http_request("GET", "/", {"Connection": "close"}))
                return c.response().body.split()[0] == b"b"
        except (OSError, AssertionError):  # refused, or reset (Conn reads it as an early end)
            return False
    wait_for(on_port, timeout=20, what="group b on the port")


def test_a_stopped_group_changed_or_renamed_stays_stopped(wsgid, tmp):
    """A stopped group whose config changes (here: renamed, a new VERSION and a new TCP address)
    restarts nothing: the reply lists it apart ("changed, stopped"), where it said "restarted";
    it takes the new name at once, its new TCP listener refuses connections as its others do
    (it took them, and they waited for a worker that does not run), and it runs the new config
    when started."""
    sock, port = tmp / "s.sock", free_port()
    g = group(tmp, listen=["unix:" + str(sock)], processes=1, env={"VERSION": "old"})
    d = wsgid(config=config(tmp, {"a": g}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sock)]
    rc, out, err = ctl(tmp, "stop", "a")
    assert rc == 0, (out, err)
    wait_for(lambda: not d.workers(), timeout=20, what="group a stopped")
    g = dict(g, listen=g["listen"] + ["127.0.0.1:%d" % port])
    d.conf_path.write_text(config(tmp, {"site": dict(g, env={"VERSION": "new"})}))
    rc, out, err = ctl(tmp, "reload")
    assert rc == 0 and "renamed: a -> site" in out, (rc, out, err)
    assert "changed, stopped (the new config at its start): site" in out, out
    assert "restarted" not in out, out
    d.wait_log(r"reload: group site changed: stopped, it runs the new config when started")
    assert not d.workers()
    # its TCP listener, new with this reload, refuses connections as a stopped group's do
    with pytest.raises(ConnectionRefusedError):  # it timed out: taken, never answered
        with Conn(("127.0.0.1", port), timeout=3) as c:
            c.send(http_request("GET", "/", {"Connection": "close"}))
            c.response()
    rc, out, err = ctl(tmp, "start", "site")
    assert rc == 0, (out, err)
    wait_for(lambda: d.workers(), timeout=20, what="group site started")
    d.seen_workers.update(d.workers())
    wait_for(lambda: ask(sock)[0] == "new", timeout=10, what="the new config's answer")


def test_a_renamed_groups_metrics_go_on_under_its_new_name(wsgid, tmp):
    """/metrics after a rename: the group's series carry the new name only, and its request
    counter goes on from what the group had counted under the old one (the master keeps a
    group's counts across its workers' restarts; a rename is such a restart)."""
    sock, mport = tmp / "m.sock", free_port()
    g = group(tmp, listen=["unix:" + str(sock)], processes=2)
    top = {"metrics": "127.0.0.1:%d" % mport}
    (tmp / "version.py").write_text(VERSION_APP)
    d = wsgid(config=make_config(tmp, {"a": g}, control=str(tmp / "ctl.sock"), **top))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sock)]

    def total(name):
        r = request(("127.0.0.1", mport), path="/metrics")
        assert r.status == 200, r
        m = re.search(r'^wsgid_requests_total\{group="%s",code_class="2xx"\} (\d+)$' % name,
                      r.body.decode(), re.M)
        return int(m.group(1)) if m else None

    for _ in range(7):
        ask(sock)
    wait_for(lambda: total("a") == 7, timeout=5, what="7 requests counted for group a")
    old_pids = set(d.workers())
    d.conf_path.write_text(make_config(tmp, {"site": g}, control=str(tmp / "ctl.sock"), **top))
    rc, out, err = ctl(tmp, "reload")
    assert rc == 0 and "renamed: a -> site" in out, (rc, out, err)
    wait_for(lambda: not (set(d.workers()) & old_pids), timeout=20, what="old workers gone")
    d.seen_workers.update(d.workers())
    for _ in range(3):
        ask(sock)
    wait_for(lambda: total("site") == 10, timeout=5, what="10 requests counted for group site")
    r = request(("127.0.0.1", mport), path="/metrics")
    assert 'group="a"' not in r.body.decode(), r.body.decode()


def test_a_sighup_during_a_restart_reloads_once_it_is_done(wsgid, tmp):
    """A SIGHUP while a rolling restart runs (config management's, or one on top of a
    reload-on-change) reloads once the restart is done; it was refused and lost, the new
    config never applied (helper-62)."""
    sa, sb = tmp / "a.sock", tmp / "b.sock"
    a = group(tmp, listen=["unix:" + str(sa)], processes=1, env={"SLOW_IMPORT": "1.5"})
    d = wsgid(config=config(tmp, {"a": a}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sa), str(sb)]
    restart = threading.Thread(target=ctl, args=(tmp, "restart", "a"))
    restart.start()
    try:
        time.sleep(0.4)  # the replacement imports for 1.5 s
        d.conf_path.write_text(config(tmp, {"a": a, "b": group(tmp, listen=["unix:" + str(sb)],
                                                               processes=1)}))
        since = d.log_size()
        d.signal(signal.SIGHUP)
        d.wait_log(r"SIGHUP: group a: a restart is in progress; try again when it is done: "
                   r"reloading once it is done", since=since, timeout=5)
    finally:
        restart.join(30)
    d.wait_log(r"reloading for the SIGHUP that came during a rolling operation", since=since,
               timeout=10)
    wait_for(lambda: sb.exists() and ask(sb)[0] == "-", timeout=15, what="group b, added")
    d.seen_workers.update(d.workers())


def test_a_reload_back_to_the_config_in_force_clears_the_failed_one(wsgid, tmp):
    """A reload whose change of a group fails, then the file put back as it was and reloaded
    again: the group is unchanged, and status no longer says that a reload failed; it kept
    saying so until some restart succeeded (helper-62)."""
    sa = tmp / "a.sock"
    a = group(tmp, listen=["unix:" + str(sa)], processes=1)
    d = wsgid(config=config(tmp, {"a": a}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sa)]
    good = d.conf_path.read_text()
    d.conf_path.write_text(config(tmp, {"a": dict(a, env={"FAIL_IF": str(tmp / "version.py")})}))
    d.expect_log(*IMPORT_FAILS)
    rc, out, err = ctl(tmp, "reload")
    assert rc == 1 and "fails on purpose" in err, (rc, out, err)
    st = json.loads(ctl(tmp, "status", "--json")[1])["groups"][0]
    assert st["failed_op"] == "reload" and "fails on purpose" in st["reload_error"], st
    d.conf_path.write_text(good)
    rc, out, err = ctl(tmp, "reload")
    assert rc == 0 and "unchanged: a" in out, (rc, out, err)
    assert json.loads(ctl(tmp, "status", "--json")[1])["groups"][0]["reload_error"] is None


def test_a_worker_ready_just_after_its_startup_timeout_is_killed_still(wsgid, tmp):
    """A replacement whose import takes a little longer than startup-timeout: its stacks are
    dumped and it is killed a moment later, as the log says, even if it says ready in between.
    Before, that "ready" cancelled the kill, and the worker served on with no deadline left to
    kill it at its stop (helper-69)."""
    sa = tmp / "a.sock"
    a = group(tmp, listen=["unix:" + str(sa)], processes=1, startup_timeout=2)
    d = wsgid(config=config(tmp, {"a": a}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sa)]
    old = d.workers()
    d.conf_path.write_text(config(tmp, {"a": dict(a, env={"SLOW_IMPORT": "2.4"})}))
    d.expect_log("startup-timeout", "stacks follow", "stderr: ", "killed by signal",
                 "reload failed", r"^\s")
    rc, out, err = ctl(tmp, "reload")
    assert rc == 1 and "startup-timeout" in err, (rc, out, err)
    assert d.workers() == old and ask(sa)[1] == old[0]


def test_a_restart_counts_and_restart_all_names_the_stopped_groups(wsgid, tmp):
    """Each worker a rolling restart replaces counts in its slot's restarts (status, /metrics'
    wsgid_worker_restarts_total) with the operation as its last restart: they counted only
    crashes and recycles, so a group restarted by every deploy showed 0. `restart --all` names a
    stopped group it leaves stopped; it skipped it without a word (helper-62)."""
    sa, sb, mport = tmp / "a.sock", tmp / "b.sock", free_port()
    top = {"metrics": "127.0.0.1:%d" % mport}
    (tmp / "version.py").write_text(VERSION_APP)
    d = wsgid(config=make_config(tmp, {"a": group(tmp, listen=["unix:" + str(sa)], processes=2),
                                       "b": group(tmp, listen=["unix:" + str(sb)], processes=1)},
                                 control=str(tmp / "ctl.sock"), **top))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sa), str(sb)]
    rc, out, err = ctl(tmp, "stop", "b")
    assert rc == 0 and out == "stop: done\n", (out, err)  # (it said "stopped, not restarted")
    wait_for(lambda: len(d.workers()) == 2, timeout=20, what="group b stopped")
    rc, out, err = ctl(tmp, "restart", "--all")
    assert rc == 0, (out, err)
    assert "stopped, not restarted (wsgictl start GROUP starts one): b" in out, out
    assert "restart: 2 workers replaced" in out, out
    d.seen_workers.update(d.workers())
    st = json.loads(ctl(tmp, "status", "--json")[1])
    ga = next(g for g in st["groups"] if g["name"] == "a")
    assert ga["restarts"] == 2, ga
    # (an old worker still draining is listed apart, without a slot's counts: 1 in 12 runs)
    ws = [w for w in ga["workers"] if w["state"] != "draining"]
    assert len(ws) == 2, ga["workers"]
    for w in ws:
        assert w["restarts"] == 1, w
        assert re.fullmatch(r"pid \d+: replaced by a restart", w["last_restart"]), w
    r = request(("127.0.0.1", mport), path="/metrics")
    assert re.search(r'^wsgid_worker_restarts_total\{group="a"\} 2$', r.body.decode(), re.M), \
        r.body.decode()
    rc, out, err = ctl(tmp, "status")
    assert re.search(r"last restart: pid \d+: replaced by a restart", out), out


def test_a_stopped_groups_unix_socket_is_bound_anew_at_its_start(wsgid, tmp):
    """A stopped group's unix socket refuses connections and is bound anew at its start, also
    when its file was removed meanwhile; a file another took the path with is left to it, the
    start failing with what to do (the group stays stopped). Before, a stopped group's unix
    socket queued connections nobody took (nginx waited proxy_read_timeout, then 504)."""
    sa = tmp / "a.sock"
    d = wsgid(config=config(tmp, {"a": group(tmp, listen=["unix:" + str(sa)], processes=1)}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sa)]

    def refused():
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            try:
                s.connect(str(sa))
            except ConnectionRefusedError:
                return True
        return False

    def stop():
        rc, out, err = ctl(tmp, "stop", "a")
        assert rc == 0, (out, err)
        wait_for(lambda: not d.workers(), timeout=20, what="group a stopped")
        # shut down once the master has seen its last worker go (a moment after it is gone)
        wait_for(refused, timeout=5, what="connections to a.sock refused")

    stop()
    sa.unlink()
    rc, out, err = ctl(tmp, "start", "a")
    assert rc == 0, (out, err)
    assert ask(sa)[0] == "-"
    stop()
    sa.unlink()
    sa.write_text("someone else's\n")
    d.expect_log(r"cannot listen on unix:.*another socket or file took its path")
    rc, out, err = ctl(tmp, "start", "a")
    assert rc == 1 and re.search(r"group a: cannot listen on unix:\S+a\.sock: another socket or "
                                 r"file took its path while the group was stopped; remove it, or "
                                 r"give the group another path and reload; the group stays "
                                 r"stopped", err), (rc, out, err)
    assert not d.workers() and sa.read_text() == "someone else's\n"
    st = json.loads(ctl(tmp, "status", "--json")[1])["groups"][0]
    assert st["stopped"], st
    sa.unlink()
    rc, out, err = ctl(tmp, "start", "a")
    assert rc == 0, (out, err)
    assert ask(sa)[0] == "-"
    d.seen_workers.update(d.workers())


def test_one_socket_through_a_linked_directory(wsgid, tmp):
    """Two groups on one unix socket, one of them through a symbolic link to its directory
    (a: real/s.sock, b: link/s.sock), passed --check and a reload's reading; the start then failed
    with "group b: cannot listen on unix:.../link/s.sock: in use by another process", that process
    being wsgid's group a (helper-72). They are one address now, refused with file:line:col naming
    the other group, as the control socket through a link is; a group that spells its own socket's
    path through the link keeps it across a reload."""
    real, link = tmp / "real", tmp / "link"
    real.mkdir()
    link.symlink_to(real)
    (tmp / "version.py").write_text(VERSION_APP)
    bad = tmp / "bad.yaml"

    def refused(text, message):
        bad.write_text(text)
        r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(bad)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1 and message in r.stderr, r.stderr

    refused("groups:\n  a:\n    app: version.py\n    listen: unix:real/s.sock\n"
            "  b:\n    app: version.py\n    listen: [127.0.0.1:1, unix:link/s.sock]\n",
            "bad.yaml:7:27: groups.b.listen: 'unix:link/s.sock' is already used by group 'a' "
            "('unix:real/s.sock'): both name the socket %s/s.sock, through a symbolic link" % real)
    refused("control: link/s.sock\ngroups:\n  a:\n    app: version.py\n"
            "    listen: unix:real/s.sock\n",
            "bad.yaml:1:10: control: %s/s.sock is also a listen socket of group 'a' (through a "
            "symbolic link)" % link)

    a = group(tmp, listen=["unix:" + str(real / "s.sock")], processes=1)
    d = wsgid(config=config(tmp, {"a": a}))
    d.unix_paths += [str(tmp / "ctl.sock"), str(real / "s.sock")]
    ino = os.stat(real / "s.sock").st_ino
    b = group(tmp, listen=["unix:" + str(link / "s.sock")], processes=1)
    d.conf_path.write_text(config(tmp, {"a": a, "b": b}))
    d.expect_log("reload refused")
    rc, out, err = ctl(tmp, "reload")
    assert rc == 1 and re.search(
        r"reload refused: .*\.yaml:\d+:\d+: groups\.b\.listen: 'unix:%s/s\.sock' is already used "
        r"by group 'a' \('unix:%s/s\.sock'\): both name the socket" % (link, real), err), err
    assert "in use by another process" not in d.log()
    # Group a's own socket spelt through the link: the same file, kept (it was bound anew beside
    # itself, and the reload failed "in use by another process").
    d.conf_path.write_text(config(tmp, {"a": dict(a, listen=["unix:" + str(link / "s.sock")])}))
    rc, out, err = ctl(tmp, "reload")
    assert rc == 0, (out, err)
    assert os.stat(real / "s.sock").st_ino == ino
    assert ask(link / "s.sock")[0] == "-"
    d.seen_workers.update(d.workers())


def _small_board(wsgid, tmp, monkeypatch, records, app_path):
    """wsgid with one group "site" of 2 processes x 2 threads on tmp/s.sock, its board of records
    records (WSGID_SCORE_RECORDS), and a control socket: (the daemon, the socket)."""
    monkeypatch.setenv("WSGID_SCORE_RECORDS", str(records))
    sock = tmp / "s.sock"
    groups = {"site": {"app": app_path, "processes": 2, "threads": 2,
                       "listen": ["unix:" + str(sock)], "env": {"WSGID_E2E_DIR": str(tmp)}}}
    d = wsgid(config=make_config(tmp, groups, control=str(tmp / "ctl.sock")))
    d.unix_paths += [str(tmp / "ctl.sock"), str(sock)]
    return d, sock


def test_restarts_faster_than_the_old_workers_drain_wait_for_a_record(wsgid, tmp, monkeypatch):
    """Two restarts in a row while a slow request keeps an old worker draining, with a board of 3
    records for 2 processes (WSGID_SCORE_RECORDS: the same as 1,024 processes restarted twice
    with 2,048 records): a replacement finds every record taken. The restart failed half done
    ("no free record in its scoreboard", wsgictl exit 1: helper-79); now it says so and waits
    for the draining worker to exit, and both restarts succeed. The slow request is answered."""
    d, sock = _small_board(wsgid, tmp, monkeypatch, 3, app("slow"))
    slow = {}

    def ask_slow():
        with Conn(str(sock)) as c:
            c.send(http_request("GET", "/?t=3", {"Connection": "close"}))
            slow["r"] = c.response()
    t = threading.Thread(target=ask_slow)
    t.start()
    wait_for(lambda: (tmp / "slow-started").exists(), timeout=10, what="the slow request")
    first = ctl(tmp, "restart", "site")
    second = ctl(tmp, "restart", "site")
    t.join(30)
    assert first[0] == 0 and second[0] == 0, (first, second)
    assert re.search(r"\[warn\] master: group site worker \d: all 3 records of its scoreboard "
                     r"are taken .*: it starts once one of them has exited", d.log()), d.log()
    assert slow["r"].status == 200, slow
    wait_for(lambda: len(d.workers()) == 2, timeout=10, what="the old workers gone")
    d.seen_workers.update(d.workers())


def _master_end(master, worker):
    """A copy (pidfd_getfd) of the master's end of its socket to worker: the same socket."""
    inode = os.readlink("/proc/%d/fd/3" % worker)[len("socket:["):-1]
    out = subprocess.run(["ss", "-xan"], capture_output=True, text=True, check=True).stdout
    peer = re.search(r"\s%s\s+\*\s+(\d+)" % inode, out).group(1)
    for fd in os.listdir("/proc/%d/fd" % master):
        try:
            if os.readlink("/proc/%d/fd/%s" % (master, fd)) == "socket:[%s]" % peer:
                break
        except OSError:
            pass
    else:
        raise AssertionError("no fd of the master on socket %s" % peer)
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(master)
    try:
        dup = libc.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
    finally:
        os.close(pidfd)
    assert dup >= 0, os.strerror(ctypes.get_errno())
    return socket.socket(fileno=dup)


def test_lines_to_a_worker_that_does_not_read_wait_in_the_master(wsgid, tmp):
    """The master's lines to a worker that stopped reading (a loop stuck, or stopped) wait in
    the master, in order, once the socket between them is full, and go when it reads again
    (wd__m_proc_say, wd__m_proc_flush): a line the socket did not take was dropped once, a stop
    among them. The master's end of the socket is made as small as the kernel allows, the worker
    is held (ptrace), and the other workers are replaced one by one until their "siblings" lines
    have filled it, then once more; let go, the worker takes every line, the last naming the
    last replacement. This was the only test of the queue (the reopen-logs lines it used are no
    more); with the C changed to drop on EAGAIN it fails (the last line never comes)."""
    groups = {"site": group(tmp, listen=["unix:" + str(tmp / "site.sock")], processes=4,
                            threads=1)}
    (tmp / "version.py").write_text(VERSION_APP)
    d = wsgid(config=make_config(tmp, groups, control=str(tmp / "ctl.sock"),
                                 log={"level": "debug", "file": "-", "access": "-"}))
    d.unix_paths.append(str(tmp / "ctl.sock"))
    first = d.workers()
    a, others = first[0], first[1:]
    end = _master_end(d.pid, a)
    SIOCOUTQ = 0x5411

    def queued():
        return struct.unpack("i", fcntl.ioctl(end.fileno(), SIOCOUTQ, b"\0" * 4))[0]

    def replace_one():
        nonlocal others
        old = others.pop(0)
        os.kill(old, signal.SIGKILL)
        d.seen_workers.add(old)
        wait_for(lambda: len(set(d.workers()) - {a} - set(others) - {old}) >= 1, timeout=5,
                 what="a replacement of %d" % old)
        others = [p for p in d.workers() if p != a]
        for p in others:  # ready: its siblings line is sent
            d.wait_log(r"master: group site worker \d+ \(pid %d\) ready" % p, timeout=5)
    full = None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    # Its main thread, the loop's, held by ptrace (PTRACE_SEIZE, PTRACE_INTERRUPT): stopped as
    # SIGSTOP would, but "t" in /proc, which the master does not kill after 3 s as it does "T".
    assert libc.ptrace(0x4206, a, None, None) == 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.ptrace(0x4207, a, None, None) == 0, os.strerror(ctypes.get_errno())
        os.waitpid(a, 0x40000000)  # __WALL
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        size = end.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        # A line a replacement (768 bytes in the kernel's count): full after 6, then one more,
        # whose line waits in the master.
        for k in range(20):
            replace_one()
            if queued() >= size:
                full = k + 1
                replace_one()
                break
        n = queued()
    finally:
        libc.ptrace(17, a, None, None)  # PTRACE_DETACH: it goes on
        end.close()
    assert full, "the socket never filled (%d of %d bytes)" % (n, size)
    print("full after %d replacements (%d of %d bytes)" % (full, n, size))
    line = re.compile(r":%d: from the master: siblings (.*)$" % a, re.M)

    def last_siblings():
        got = line.findall(d.log())
        return got and {int(x.split(":")[1]) for x in got[-1].split()} == set(others) | {a}
    wait_for(last_siblings, timeout=5, what="worker %d to take the last siblings line" % a)
    assert "message from the master" not in d.log()
    assert a in d.workers()
    d.expect_log(r"killed by signal 9")


def test_a_restart_waiting_for_a_record_goes_on_when_that_slots_worker_dies(wsgid, tmp,
                                                                            monkeypatch):
    """A restart waits for a record at slot 2 (a board of 3 records for 2 processes, worker 1's
    old self draining a slow request), and slot 2's own worker dies then (SIGKILL). Its exit
    freed a record and set the slot's timer to step the restart, but the crash set the same
    timer to the respawn's backoff: the restart never went on, and wsgictl waited for ever
    (helper-85's finding 5). Now the exit marks the group and the end of its handling steps the
    restart, after the respawn: the restart finishes."""
    d, sock = _small_board(wsgid, tmp, monkeypatch, 3, app("slow"))
    pids = {int(s): int(p) for s, p in
            re.findall(r"group site worker (\d) \(pid (\d+)\) ready", d.log())}
    started = tmp / "slow-started"
    threads = []

    def ask_slow():
        with Conn(str(sock)) as c:
            c.send(http_request("GET", "/?t=6", {"Connection": "close"}))
            try:
                c.response()
            except (AssertionError, OSError):
                pass  # one that went to worker 2, killed below
    # The slow request must keep worker 1 draining: ask again until worker 1 has one.
    for _ in range(10):
        if started.exists():
            started.unlink()
        threads.append(threading.Thread(target=ask_slow, daemon=True))
        threads[-1].start()
        wait_for(lambda: started.exists() and started.read_text(), timeout=10,
                 what="the slow request")
        if int(started.read_text()) == pids[1]:
            break
    assert int(started.read_text()) == pids[1], (pids, started.read_text())
    since = d.log_size()
    result = {}
    restart = threading.Thread(target=lambda: result.update(r=ctl(tmp, "restart", "site",
                                                                  timeout=30)), daemon=True)
    restart.start()
    full = r"\[warn\] master: group site worker 2: all 3 records of its scoreboard are taken"
    d.wait_log(full, since=since, timeout=10)
    # The first quick death of a ready worker is respawned at once, the second in a row after a
    # backoff (on the slot's timer): kill worker 2, then its replacement.
    killed = [pids[2]]
    since = d.log_size()  # before the kill: the master says the next wait at once
    os.kill(pids[2], signal.SIGKILL)
    line = d.wait_log(r"group site worker 2 \(pid \d+\) ready", since=since, timeout=10)
    d.wait_log(full, since=since, timeout=10)
    killed.append(int(re.search(r"\(pid (\d+)\)", line).group(1)))
    os.kill(killed[-1], signal.SIGKILL)
    restart.join(25)
    assert "r" in result, "wsgictl restart still waits 25 s after worker 2 died"
    assert result["r"][0] == 0, result
    wait_for(lambda: len(d.workers()) == 2, timeout=10, what="two workers")
    d.seen_workers.update(d.workers())
    d.expect_log(*(r"group site worker 2 \(pid %d\)" % pid for pid in killed))


SLOW_LOAD_APP = '''import os, time
if os.path.exists(os.path.join(os.environ["WSGID_E2E_DIR"], "slow-load")):
    time.sleep(4)

def application(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


def test_a_respawn_waiting_for_a_record_says_so_once(wsgid, tmp, monkeypatch):
    """A respawn that finds every record of its group's board taken tries again after its
    backoff, and each try said "all N records of its scoreboard are taken", a line a second
    for as long as it waited (helper-85's finding 8). Now it is said once until a record is
    taken again. A board of 2 records for 2 processes; a restart waits for one, worker 2 is
    killed twice (its second, loading for 4 s, is respawned after a backoff), the restart's
    replacement of worker 1 takes the record and loads for 4 s: worker 2's respawn waits."""
    script = tmp / "slowload.py"
    script.write_text(SLOW_LOAD_APP)
    d, sock = _small_board(wsgid, tmp, monkeypatch, 2, str(script))
    pids = {int(s): int(p) for s, p in
            re.findall(r"group site worker (\d) \(pid (\d+)\) ready", d.log())}
    (tmp / "slow-load").write_text("")
    result = {}
    restart = threading.Thread(target=lambda: result.update(r=ctl(tmp, "restart", "site",
                                                                  timeout=40)), daemon=True)
    since = d.log_size()
    restart.start()
    d.wait_log(r"all 2 records of its scoreboard are taken", since=since, timeout=10)
    killed = [pids[2]]
    since = d.log_size()
    os.kill(pids[2], signal.SIGKILL)
    line = d.wait_log(r"group site worker 2 started \(pid \d+\)", since=since, timeout=10)
    killed.append(int(re.search(r"\(pid (\d+)\)", line).group(1)))
    since = d.log_size()
    os.kill(killed[-1], signal.SIGKILL)
    restart.join(35)
    assert "r" in result and result["r"][0] == 0, result
    said = re.findall(r"\[warn\] master: group site worker 2: all 2 records of its scoreboard "
                      r"are taken", d.log()[since:])
    retried = re.findall(r"group site worker 2: respawning in", d.log()[since:])
    assert len(retried) >= 2, d.log()[since:]
    assert len(said) == 1, d.log()[since:]
    wait_for(lambda: len(d.workers()) == 2, timeout=10, what="two workers")
    d.seen_workers.update(d.workers())
    d.expect_log(*(r"group site worker 2 \(pid %d\)" % pid for pid in killed))
