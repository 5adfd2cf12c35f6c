"""Privileges (issue 3): started as root, each group's workers run as its `user` (nobody when a
group says nothing, with a warning; root only when it says `user: root`); an unknown user stops the
start naming the group; the control socket (0600) refuses a peer of another uid (SO_PEERCRED)."""
import grp
import json
import os
import pwd
import re
import signal
import stat
import subprocess
import time

import pytest

from helpers.clients import Conn, assert_hello, http_request
from helpers.config import app, to_yaml
from helpers.daemon import WSGICTL, WSGID_BIN
from helpers.procs import free_port, wait_for


pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="privileges need a root test run (wsgid only switches "
                                       "users when started as root)")

NOBODY = pwd.getpwnam("nobody")


def config(tmp, user=None, **top):
    """A one-group config; `user` None leaves the key out (make_config would add user: root)."""
    port = free_port()
    g = {"app": app("hello"), "listen": ["127.0.0.1:%d" % port], "threads": 2}
    if user is not None:
        g["user"] = user
    conf = {"log": {"level": "info", "file": "-", "access": "-"}}
    conf.update(top)
    conf["groups"] = {"site": g}
    return to_yaml(conf) + "\n", ("127.0.0.1", port)


def ids(pid):
    """(real, effective, saved, fs) uids and gids of a process, from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
    return out


def start(wsgid, tmp, user=None, **top):
    text, addr = config(tmp, user, **top)
    d = wsgid(config=text)
    d.tcp = addr
    return d


def test_user_nobody(wsgid, tmp):
    d = start(wsgid, tmp, "nobody")
    (w,) = d.workers()
    st = ids(w)
    assert st["Uid"] == [NOBODY.pw_uid] * 4, st
    assert st["Gid"] == [NOBODY.pw_gid] * 4, st
    assert 0 not in st["Groups"], st
    # The master stays root (it keeps the sockets and respawns workers).
    assert ids(d.pid)["Uid"][1] == 0
    assert "no `user:` set" not in d.log()
    assert_hello(d.tcp)


def test_no_user_runs_as_nobody_with_a_warning(wsgid, tmp):
    d = start(wsgid, tmp, None)
    (w,) = d.workers()
    assert ids(w)["Uid"] == [NOBODY.pw_uid] * 4
    assert re.search(r"\[warn\] .*group site: no `user:` set; running its workers as nobody",
                     d.log()), d.log()
    assert_hello(d.tcp)


def test_user_root(wsgid, tmp):
    d = start(wsgid, tmp, "root")
    (w,) = d.workers()
    assert ids(w)["Uid"] == [0] * 4
    assert "no `user:` set" not in d.log()
    assert_hello(d.tcp)


def test_unknown_user_stops_the_start(wsgid, tmp):
    """An unknown user, group, socket-user or socket-group is refused when the file is read, with
    its file and line, by --check too (found only by the master at the start, it had neither, and
    --check passed the file)."""
    d = wsgid(config=config(tmp, "no-such-user-e2e")[0], wait=False)
    d.expect_failure = True
    d.expect_log(r'groups\.site\.user: no user named "no-such-user-e2e"')
    rc = d.wait_exit(10)
    assert rc != 0
    text = d.log()
    assert re.search(r'\.yaml:\d+:\d+: groups\.site\.user: no user named "no-such-user-e2e" on this '
                     r"machine", text), text
    assert not d.workers()
    for key, what in (("user", "user"), ("group", "group"), ("socket-user", "user"),
                      ("socket-group", "group")):
        g = {"app": app("hello"), "listen": ["unix:" + str(tmp / "c.sock")], key: "no-such-e2e"}
        path = tmp / ("check-%s.yaml" % key)
        path.write_text(to_yaml({"groups": {"site": g}}) + "\n")
        r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(path)], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 1 and ('groups.site.%s: no %s named "no-such-e2e"' % (key, what)
                                      in r.stderr), (key, r.stderr)


def test_control_socket_refuses_another_uid(wsgid, tmp):
    ctl = tmp / "ctl.sock"
    d = start(wsgid, tmp, "root", control=str(ctl))
    d.unix_paths.append(str(ctl))
    # nobody may reach the socket's directory (the test dir is 0700).
    os.chmod(tmp, 0o711)
    assert stat.S_IMODE(os.stat(ctl).st_mode) == 0o600
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                 str(WSGICTL), "-s", str(ctl), "status"]

    # 1. The file mode: nobody cannot even connect.
    r = subprocess.run(as_nobody, capture_output=True, text=True, timeout=10)
    assert r.returncode != 0, r
    assert "Permission denied" in r.stderr or "permission" in r.stderr.lower(), r.stderr
    assert "refused uid" not in d.log()

    # 2. SO_PEERCRED: with the mode opened up, nobody connects and gets the refusal.
    # The master answers and closes at once, maybe before wsgictl has written its request:
    # several tries show that wsgictl still reads the refusal (no SIGPIPE, no "lost").
    os.chmod(ctl, 0o666)
    for _ in range(5):
        r = subprocess.run(as_nobody, capture_output=True, text=True, timeout=10)
        assert r.returncode > 0, r
        assert "only answers root and the user wsgid runs as" in r.stderr, r
        assert str(d.workers()[0]) not in r.stdout
    d.wait_log(r"\[warn\] .*control: refused uid %d \(pid \d+\)" % NOBODY.pw_uid)

    # root still gets the answer.
    r = subprocess.run([str(WSGICTL), "-s", str(ctl), "status"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and str(d.workers()[0]) in r.stdout, r


def test_worker_of_another_user_writes_and_reopens_the_access_log(wsgid, tmp):
    """The logs directory is root's (like /var/log/wsgid): a worker running as nobody could
    neither create the file nor create it again after logrotate moved it. The master opens it and
    gives the worker the open file; the file stays root's (helper-72)."""
    os.chmod(tmp, 0o755)
    logs = tmp / "logs"
    logs.mkdir(mode=0o755)
    access = logs / "access.log"
    d = start(wsgid, tmp, "nobody", log={"level": "info", "file": "-", "access": str(access)})
    assert_hello(d.tcp)
    wait_for(lambda: access.exists() and "GET / " in access.read_text(), timeout=3,
             what="the access line")
    assert os.stat(access).st_uid == 0
    os.rename(access, logs / "access.log.1")
    since = d.log_size()
    d.signal(signal.SIGUSR1)
    d.wait_log(r"log files reopened", since=since)

    def new_line():
        assert_hello(d.tcp)
        return access.exists() and "GET / " in access.read_text()
    wait_for(new_line, timeout=3, what="a line in the new access log")
    assert os.stat(access).st_uid == 0
    assert "cannot open the access log" not in d.log()


def test_socket_owner_and_mode(wsgid, tmp):
    sock = tmp / "site.sock"
    text, addr = config(tmp, "nobody")
    text = text.replace('listen: ["127.0.0.1:%d"]' % addr[1],
                        'listen: ["unix:%s", "127.0.0.1:%d"]\n    socket-user: "nobody"\n'
                        '    socket-group: "nogroup"\n    socket-mode: "0660"' % (sock, addr[1]))
    assert "socket-mode" in text, text
    d = wsgid(config=text)
    st = os.stat(sock)
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert_hello(str(sock))


def test_groups_of_other_users_with_private_directories(wsgid, tmp):
    """Each worker read the whole file again as its group's user, checking every group's script:
    a group running as nobody could not read another's 0700 directory, so wsgid could not start
    (the mod_wsgi layout: one user and one private directory a site), and once started, a
    restart of one group failed while another group's script was away. Only the master checks
    the file; wsgictl -c, which needs the control socket alone, checks nothing either."""
    priv = tmp / "priv"
    priv.mkdir(mode=0o700)
    script = priv / "site.py"
    script.write_text(open(app("hello")).read())
    ports = free_port(), free_port()
    conf = {"log": {"level": "info", "file": "-", "access": "-"},
            "control": str(tmp / "ctl.sock"),
            "groups": {"pub": {"app": app("hello"), "user": "nobody", "threads": 2,
                               "listen": ["127.0.0.1:%d" % ports[0]]},
                       "priv": {"app": str(script), "user": "root", "threads": 2,
                                "listen": ["127.0.0.1:%d" % ports[1]]}}}
    d = wsgid(config=to_yaml(conf) + "\n")
    d.unix_paths.append(str(tmp / "ctl.sock"))
    for port in ports:
        assert_hello(("127.0.0.1", port))
    script.rename(priv / "away.py")
    r = subprocess.run([str(WSGICTL), "-c", str(d.conf_path), "restart", "pub"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert re.search(r"group pub worker 1: pid \d+ replaced by pid \d+", d.log()), d.log()
    assert_hello(("127.0.0.1", ports[0]))
    assert "cannot read the config" not in d.log() and "no such file" not in d.log(), d.log()


SLOW_APP = '''import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT", "0")))


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\\n"]
'''


def test_a_renamed_groups_old_worker_reopens_the_access_log(wsgid, tmp):
    """A group renamed by a reload ("a" becomes "site", its access-log a.log becomes site.log)
    whose new worker takes 5 s to import: the old worker, still serving under the old config, gets
    a.log from the master at reopen-logs as before (nobody cannot create it in root's directory).
    The master looked the worker's group up by the group's new name in the worker's old config,
    found none, and gave it nothing: "cannot open the access log"."""
    os.chmod(tmp, 0o755)
    logs = tmp / "logs"
    logs.mkdir(mode=0o755)
    access = logs / "a.log"
    script = tmp / "slow.py"
    script.write_text(SLOW_APP)
    port = free_port()
    g = {"app": str(script), "listen": ["127.0.0.1:%d" % port], "threads": 2, "processes": 1,
         "user": "nobody", "access-log": str(access)}
    conf = {"log": {"level": "info", "file": "-", "access": "-"}}
    d = wsgid(config=to_yaml(dict(conf, groups={"a": g})) + "\n")
    d.tcp = ("127.0.0.1", port)
    (old,) = d.workers()
    g = dict(g, env={"SLOW_IMPORT": "5"}, **{"access-log": str(logs / "site.log")})
    d.conf_path.write_text(to_yaml(dict(conf, groups={"site": g})) + "\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload: group a renamed site")
    os.rename(access, logs / "a.log.1")
    since = d.log_size()
    d.signal(signal.SIGUSR1)
    d.wait_log(r"master: log files reopened", since=since)  # the master writes a.log for it
    with Conn(d.tcp) as c:
        c.send(http_request("GET", "/", {"Connection": "close"}))
        r = c.response()
    assert r.status == 200 and r.body == b"ok\n", r
    wait_for(lambda: access.exists() and "GET / " in access.read_text(), timeout=3,
             what="a line in the new access log")
    assert old in d.workers(), "the old worker answered: its replacement is still importing"
    assert os.stat(access).st_uid == 0
    assert "cannot open the access log" not in d.log()
    wait_for(lambda: old not in d.workers(), timeout=20, what="the old worker replaced")
    d.seen_workers.update(d.workers())



def test_a_reload_does_not_follow_a_link_put_at_the_socket_path(wsgid, tmp):
    """The group's socket is in a directory its user owns (a run/ directory), so its app may put
    a symbolic link there in place of the socket. A reload that kept the socket applied
    socket-mode and socket-group by path, through the link: any root file (/etc/shadow) became
    root:SOCKET-GROUP 0660 (helper-72). It now changes the socket it bound, and nothing when the
    path no longer names that socket, saying what to do."""
    os.chmod(tmp, 0o711)
    run = tmp / "run"
    run.mkdir(mode=0o755)
    os.chown(run, NOBODY.pw_uid, NOBODY.pw_gid)
    sock = run / "site.sock"
    victim = tmp / "victim"
    victim.write_text("root's\n")
    os.chmod(victim, 0o600)
    port = free_port()
    g = {"app": app("hello"), "user": "nobody", "threads": 2, "socket-group": "nogroup",
         "listen": ["unix:%s" % sock, "127.0.0.1:%d" % port]}
    ctl = tmp / "ctl.sock"
    conf = {"log": {"level": "info", "file": "-", "access": "-"}, "control": str(ctl)}
    d = wsgid(config=to_yaml(dict(conf, groups={"site": g})) + "\n")
    d.unix_paths.append(str(ctl))
    st = os.stat(sock)
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_gid, 0o660), st
    # What the app could do, as nobody: the socket moved away, a link to a root file instead.
    moved = run / "moved.sock"
    subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c",
                    'mv "$1" "$2" && ln -s "$3" "$1"', "-", str(sock), str(moved), str(victim)],
                   check=True, timeout=10)
    d.conf_path.write_text(to_yaml(dict(conf, groups={"site": dict(g, threads=3)})) + "\n")
    d.expect_log(r"group site: unix:%s: socket-mode, socket-user and socket-group not applied: "
                 r"the path names a symbolic link, not the socket the group bound; nothing was "
                 r"changed: remove what is there, then `wsgictl stop site` and `wsgictl start "
                 r"site` bind the socket anew" % re.escape(str(sock)))
    since = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload done: 1 workers replaced", since=since, timeout=20)
    st = os.stat(victim)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600), st
    assert os.path.islink(sock)
    d.wait_log(r"not applied: the path names a symbolic link", since=since)
    assert_hello(("127.0.0.1", port))
    assert_hello(str(moved))
    # What the line says to do: the link removed, a stop and a start bind the socket anew.
    os.unlink(sock)
    for verb in ("stop", "start"):
        r = subprocess.run([str(WSGICTL), "-s", str(ctl), verb, "site"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, (verb, r.stdout, r.stderr)
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and (st.st_gid, stat.S_IMODE(st.st_mode)) == (
        NOBODY.pw_gid, 0o660), st
    assert_hello(str(sock))
    os.unlink(moved)  # the socket bound first, which wsgid no longer finds at its path
    d.seen_workers.update(d.workers())


WHOAMI_APP = '''import getpass
import json
import os


def application(environ, start_response):
    body = json.dumps({"groups": sorted(os.getgroups()), "gid": os.getgid(),
                       "HOME": os.environ.get("HOME"), "USER": os.environ.get("USER"),
                       "LOGNAME": os.environ.get("LOGNAME"), "getuser": getpass.getuser(),
                       "creds": [k for k in os.environ if k.startswith("WSGID_")]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


# Group a's app looks for what group b's workers hold: in its own memory (every readable mapping,
# through /proc/self/mem) and in every fd it has open. What it searches for is shifted by one
# (each byte + 1) and so is what it reads, so that its own needle, which it holds, is never what
# matches. ?scoreboard lists the scoreboard memfds it has mapped; ?records=PID counts the records
# of PID there; ?stall=PID pins their heartbeat to 1 ns, which makes the master's deadlock
# watchdog kill that worker.
SPY_APP = r'''import os
import struct

SHIFT = bytes((b + 1) % 256 for b in range(256))
HEARTBEAT = 280  # offsetof(wd_score_t, heartbeat_ns)


def readable(biggest):
    with open("/proc/self/maps") as f:
        for line in f:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if f[1][0] == "r" and f[-1] not in ("[vvar]", "[vsyscall]", "[vvar_vclock]") and \
                    hi - lo <= biggest:
                yield lo, hi, line.strip()


def in_memory(needles, biggest):
    found = set()
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        for lo, hi, name in readable(biggest):
            for at in range(lo, hi, 1 << 20):
                try:
                    mem.seek(at)
                    chunk = mem.read(min(1 << 20, hi - at) + 64).translate(SHIFT)
                except OSError:
                    break
                found.update(n for n in needles if n in chunk)
    return found


def in_fds(needles):
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            chunk = os.pread(int(fd), 1 << 24, 0).translate(SHIFT)
        except OSError:
            continue
        found.update(n for n in needles if n in chunk)
    return found


def boards():
    with open("/proc/self/maps") as f:
        return [l.split() for l in f if "wsgid-scoreboard" in l]


def stall(pid, write):
    hit = 0
    for f in boards():
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            for at in range(lo, hi, 64):
                mem.seek(at)
                if struct.unpack("<Q", mem.read(8))[0] == pid:
                    if write:
                        mem.seek(at + HEARTBEAT)
                        mem.write(struct.pack("<Q", 1))
                    hit += 1
    return hit


def application(environ, start_response):
    q = environ.get("QUERY_STRING", "")
    what, _, arg = q.partition("=")
    if what == "find":
        # never the bytes themselves: they would be in memory, freed or not
        arg, _, biggest = arg.partition(";")
        names = {bytes((int(h[i:i + 2], 16) + 1) % 256 for i in range(0, len(h), 2)): h
                 for h in arg.split(",")}
        biggest = int(biggest) if biggest else 1 << 62
        out = "memory: %s\nfds: %s\n" % (sorted(names[n] for n in in_memory(list(names),
                                                                              biggest)),
                                           sorted(names[n] for n in in_fds(list(names))))
    elif what == "scoreboard":
        out = "".join("%s %s\n" % (f[0], " ".join(f[5:])) for f in boards())
    elif what in ("stall", "records"):
        out = "records: %d\n" % stall(int(arg), what == "stall")
    else:
        out = "%d\n" % os.getpid()
    body = out.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

PID_APP = '''import os


def application(environ, start_response):
    body = b"%d\\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def _run_retrying(args):
    """useradd and friends refuse while another holds /etc/passwd's lock (exit 10 or 1)."""
    for _ in range(50):
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return
        if "lock" not in r.stderr:
            break
        time.sleep(0.1)
    raise AssertionError("%s: %s" % (" ".join(args), r.stderr))


@pytest.fixture
def member():
    """A throwaway user (no home directory made) in a throwaway supplementary group. Name it
    before wsgid among a test's fixtures: it is removed once the workers are gone."""
    tag = "wde2e%d" % os.getpid()
    user, sup = tag + "u", tag + "g"
    home = "/nonexistent/" + user
    _run_retrying(["groupadd", sup])
    try:
        _run_retrying(["useradd", "-M", "-d", home, "-s", "/usr/sbin/nologin", "-U", "-G", sup,
                       user])
        try:
            yield pwd.getpwnam(user), grp.getgrnam(sup)
        finally:
            _run_retrying(["userdel", user])
    finally:
        _run_retrying(["groupdel", sup])


def test_a_user_gets_its_groups_home_and_name(member, wsgid, tmp, monkeypatch):
    """A group's `user:` runs its workers with that user's supplementary groups (initgroups, as
    mod_wsgi, uWSGI and gunicorn do) and its HOME, USER and LOGNAME; the group's `env:` still
    sets those. Started from a root shell, the workers had no supplementary group at all
    (uv_spawn's setgroups(0)) and root's HOME=/root, USER=root (helper-72)."""
    pw, sup = member
    os.chmod(tmp, 0o755)
    script = tmp / "whoami.py"
    script.write_text(WHOAMI_APP)
    for k, v in (("HOME", "/root"), ("USER", "root"), ("LOGNAME", "root")):
        monkeypatch.setenv(k, v)
    ports = free_port(), free_port()
    conf = {"log": {"level": "info", "file": "-", "access": "-"},
            "groups": {"a": {"app": str(script), "user": pw.pw_name, "threads": 2,
                             "listen": ["127.0.0.1:%d" % ports[0]]},
                       "b": {"app": str(script), "user": pw.pw_name, "threads": 2,
                             "env": {"HOME": "/srv/b", "LOGNAME": "b"},
                             "listen": ["127.0.0.1:%d" % ports[1]]}}}
    d = wsgid(config=to_yaml(conf) + "\n")

    def ask(port):
        with Conn(("127.0.0.1", port)) as c:
            c.send(http_request("GET", "/", {"Connection": "close"}))
            r = c.response()
        assert r.status == 200, r
        return json.loads(r.body)

    a = ask(ports[0])
    assert a["groups"] == sorted({pw.pw_gid, sup.gr_gid}), a
    assert a["gid"] == pw.pw_gid, a
    assert (a["HOME"], a["USER"], a["LOGNAME"]) == (pw.pw_dir, pw.pw_name, pw.pw_name), a
    assert a["getuser"] == pw.pw_name, a
    assert "WSGID_WORKER_USER" not in a["creds"], a
    b = ask(ports[1])
    assert (b["HOME"], b["USER"], b["LOGNAME"]) == ("/srv/b", pw.pw_name, "b"), b
    for w in d.workers():
        st = ids(w)
        assert st["Uid"] == [pw.pw_uid] * 4 and st["Gid"] == [pw.pw_gid] * 4, st
        assert sorted(st["Groups"]) == sorted({pw.pw_gid, sup.gr_gid}), st
        # Dumpable again, as after an exec by the user: its /proc files are its own.
        assert os.stat("/proc/%d/environ" % w).st_uid == pw.pw_uid
    # The master's own environment is unchanged.
    with open("/proc/%d/environ" % d.pid, "rb") as f:
        assert b"HOME=/root\0" in f.read()


def get(port, target):
    with Conn(("127.0.0.1", port)) as c:
        c.send(http_request("GET", target, {"Connection": "close"}))
        r = c.response()
    assert r.status == 200, r
    return r.body.decode()


def two_users(wsgid, tmp, **b_opts):
    """Group a (nobody) runs the spy; group b (root) keeps an env: secret and its app in a
    directory whose name is its own. Returns (daemon, a's port, b's port, b's secrets)."""
    os.chmod(tmp, 0o755)
    token = os.urandom(6).hex()
    secret, b_dir = "b-secret-pw-" + token, tmp / ("b-private-" + token)
    b_dir.mkdir(mode=0o700)
    (b_dir / "app.py").write_text(PID_APP)
    # a's app alone in its directory: Python lists that of its script (sys.path[0])
    (tmp / "a").mkdir(mode=0o755)
    (tmp / "a" / "spy.py").write_text(SPY_APP)
    ports = free_port(), free_port()
    conf = {"log": {"level": "info", "file": "-", "access": "-"},
            "groups": {"a": {"app": str(tmp / "a" / "spy.py"), "user": "nobody", "threads": 2,
                             "listen": ["127.0.0.1:%d" % ports[0]]},
                       "b": dict({"app": str(b_dir / "app.py"), "user": "root", "threads": 2,
                                  "listen": ["127.0.0.1:%d" % ports[1]],
                                  "env": {"DATABASE_PASSWORD": secret}}, **b_opts)}}
    d = wsgid(config=to_yaml(conf) + "\n")
    return d, ports[0], ports[1], (secret, b_dir.name)


def test_a_worker_holds_no_other_groups_config(wsgid, tmp):
    """Each worker got the whole config text on its config fd and parsed it: group a's app, as
    nobody, found group b's env: DATABASE_PASSWORD in its own memory (helper-72). Now a worker
    gets the top-level keys and its own group alone: neither b's secret nor the directory of b's
    app is in a's memory or behind any fd of a's, and a and b still serve. A reload that changes
    b (a new secret) leaves a's new workers without it too."""
    d, a, b, secrets = two_users(wsgid, tmp)
    needles = ",".join(s.encode().hex() for s in secrets)
    assert get(b, "/").strip().isdigit()
    # The sanitizer build maps terabytes of shadow and allocator space: reading them took the
    # worker past the test's timeout. There, only mappings up to 256 MiB are searched (Python's
    # arenas and stacks, not the C heap): the normal build's run searches everything.
    biggest = ""
    with open("/proc/%d/maps" % d.workers()[0]) as f:
        if "libasan" in f.read():
            biggest = ";%d" % (256 << 20)
            print("sanitizer build: mappings over 256 MiB (its shadow, its heap) not searched")
    found = get(a, "/?find=" + needles + biggest)
    assert found == "memory: []\nfds: []\n", found
    # a control: the spy finds what a holds (its own app's path)
    own = str(tmp / "a" / "spy.py").encode().hex()
    assert get(a, "/?find=" + own + biggest).startswith("memory: ['%s']\n" % own)

    # A reload that changes both groups: a's new workers get the new text, without b's.
    text = d.conf_path.read_text()
    secret2 = "b-secret-pw-" + os.urandom(6).hex()
    d.conf_path.write_text(text.replace(secrets[0], secret2).replace("threads: 2", "threads: 3"))
    old = set(d.workers())
    since = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload done: 2 workers replaced", since=since, timeout=30)
    wait_for(lambda: not old & set(d.workers()), timeout=30, what="the old workers gone")
    found = get(a, "/?find=" + ",".join(s.encode().hex() for s in (secret2,) + secrets) + biggest)
    assert found == "memory: []\nfds: []\n", found


def test_a_worker_maps_its_own_groups_scoreboard_alone(wsgid, tmp):
    """One scoreboard memfd for every group, mapped read-write by every worker: group a's app,
    as nobody, read b's requests in flight (their URIs) and pinned the heartbeat of b's worker,
    which the master then killed for deadlock-timeout (helper-72). Now each group has its own:
    a maps one board, its group's (WD_SCORE_MAX records of 12,672 bytes), where its own record
    is and b's is not; b's worker lives on past its deadlock-timeout."""
    d, a, b, _ = two_users(wsgid, tmp, **{"deadlock-timeout": 1})
    a_pid, b_pid = int(get(a, "/")), int(get(b, "/"))
    boards = get(a, "/?scoreboard").splitlines()
    assert len(boards) == 1 and boards[0].endswith("/memfd:wsgid-scoreboard (deleted)"), boards
    lo, hi = (int(x, 16) for x in boards[0].split()[0].split("-"))
    assert hi - lo == 2048 * 12672, boards
    assert get(a, "/?records=%d" % a_pid) == "records: 1\n"  # the spy finds its own
    stalled = get(a, "/?stall=%d" % b_pid)
    time.sleep(2.5)  # the watchdog looks every second
    assert "deadlock-timeout" not in d.log(), d.log()
    assert get(b, "/").strip() == str(b_pid)
    assert stalled == "records: 0\n"
# --- the log files and the pidfile in directories a group's user can write (helper-72) ---------

DAEMON = pwd.getpwnam("daemon")
SECRET = "root's own file\n"


def victim(tmp, name):
    """A root-owned 0600 file that no group's user may have or write."""
    path = tmp / name
    path.write_text(SECRET)
    os.chmod(path, 0o600)
    return path


def assert_untouched(path):
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600), (path, st)
    assert path.read_text() == SECRET, path.read_text()


def as_user(user, *argv):
    """Runs argv as user (the group's app would, with its own uid)."""
    r = subprocess.run(["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid,
                        "--clear-groups"] + [str(a) for a in argv],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r


def wait_in(path, pattern, timeout=15):
    rx = re.compile(pattern)
    return wait_for(lambda: path.exists() and rx.search(path.read_text()), timeout=timeout,
                    what="/%s/ in %s" % (pattern, path))


def ctl(d, *args):
    return subprocess.run([str(WSGICTL), "-s", str(d.tmp / "ctl.sock")] + list(args),
                          capture_output=True, text=True, timeout=20)


def test_a_link_at_a_log_path_gives_the_app_no_file(wsgid, tmp):
    """The logs directory belongs to the group's user, who replaces error.log with a symbolic
    link to a root-owned file and access.log with a hard link to another (making one needs
    fs.protected_hardlinks=0: root makes it here). Neither the worker's respawn nor reopen-logs
    (logrotate's SIGUSR1) gives those files to the user, or writes root's lines into them: the
    master chowned any root-owned file at a log path to the group's user at every spawn and
    reopen, and wrote its own lines through the link. The master opens the logs itself now,
    through no link, and the worker gets the open files."""
    os.chmod(tmp, 0o755)
    logs = tmp / "logs"
    logs.mkdir(mode=0o755)
    os.chown(logs, NOBODY.pw_uid, NOBODY.pw_gid)
    errlog, access = logs / "error.log", logs / "access.log"
    v_err, v_access = victim(tmp, "victim-error"), victim(tmp, "victim-access")
    text, addr = config(tmp, "nobody", control=str(tmp / "ctl.sock"),
                        log={"level": "info", "file": str(errlog), "access": str(access)})
    d = wsgid(config=text, wait=False)
    d.tcp = addr
    d.unix_paths.append(str(tmp / "ctl.sock"))
    wait_in(errlog, r"all workers ready")
    d.seen_workers.update(d.workers())
    assert_hello(d.tcp)
    wait_in(access, r"GET / ")
    assert os.stat(errlog).st_uid == 0 and os.stat(access).st_uid == 0
    as_user(NOBODY, "ln", "-sfn", v_err, errlog)
    os.unlink(access)
    os.link(v_access, access)

    (w,) = d.workers()
    os.kill(w, signal.SIGKILL)
    wait_for(lambda: d.workers() and d.workers() != [w], timeout=10, what="the respawn")
    d.seen_workers.update(d.workers())
    wait_for(lambda: _answers(d.tcp), timeout=10, what="the new worker answering")
    assert_untouched(v_err)
    assert_untouched(v_access)

    r = ctl(d, "reopen-logs")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"cannot open the error log %s: it is a symbolic link, which wsgid started "
                     r"as root does not follow .*: name the file itself" % re.escape(str(errlog)),
                     r.stderr), r.stderr
    assert re.search(r"cannot open the access log %s \(group site\): it has other hard links, .*: "
                     r"name a file of "
                     r"its own" % re.escape(str(access)), r.stderr), r.stderr
    d.signal(signal.SIGUSR1)
    assert_hello(d.tcp)
    time.sleep(0.5)
    assert_untouched(v_err)
    assert_untouched(v_access)

    # A FIFO the user reads would give it every line, and hold wsgid up once it stops reading.
    os.unlink(access)
    as_user(NOBODY, "mkfifo", access)
    reader = os.open(access, os.O_RDONLY | os.O_NONBLOCK)
    try:
        r = ctl(d, "reopen-logs")
    finally:
        os.close(reader)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"cannot open the access log %s \(group site\): it is a FIFO in a directory "
                     r"that others "
                     r"than root may write .*: name a file, or put the FIFO in a directory of "
                     r"root's" % re.escape(str(access)), r.stderr), r.stderr
    d.expect_log(r"cannot open the (error|access) log")


def _answers(addr):
    try:
        assert_hello(addr)
        return True
    except (AssertionError, OSError):
        return False


def test_groups_of_two_users_share_roots_log_files(wsgid, tmp):
    """Two groups of two users write one error log and one access log in a directory of root's
    (/var/log/wsgid): both groups' lines reach both files, which stay root's (0640), and after
    logrotate moved them, reopen-logs makes them again, root's, and every worker writes the new
    ones. The master gave both files to the first group's user: the second group's workers could
    not open them (their lines went to stderr), and the first group's app could rewrite the
    master's error log."""
    os.chmod(tmp, 0o755)
    logs = tmp / "logs"
    logs.mkdir(mode=0o755)
    errlog, access = logs / "error.log", logs / "access.log"
    ports = free_port(), free_port()
    conf = {"log": {"level": "info", "file": str(errlog), "access": str(access)},
            "control": str(tmp / "ctl.sock"),
            "groups": {"a": {"app": app("hello"), "user": "nobody", "threads": 2,
                             "processes": 2, "listen": ["127.0.0.1:%d" % ports[0]]},
                       "b": {"app": app("hello"), "user": "daemon", "threads": 2,
                             "listen": ["127.0.0.1:%d" % ports[1]]}}}
    d = wsgid(config=to_yaml(conf) + "\n", wait=False)
    d.unix_paths.append(str(tmp / "ctl.sock"))
    wait_in(errlog, r"all workers ready")
    d.seen_workers.update(d.workers())
    users = {w: ids(w)["Uid"][0] for w in d.workers()}
    assert sorted(users.values()) == sorted([NOBODY.pw_uid] * 2 + [DAEMON.pw_uid]), users

    def both_groups_write(mark):
        for group, port in zip("ab", ports):
            with Conn(("127.0.0.1", port)) as c:
                c.send(http_request("GET", "/%s-%s" % (mark, group), {"Connection": "close"}))
                assert c.response().status == 200
        for group in "ab":
            wait_in(access, r"GET /%s-%s " % (mark, group), timeout=3)
        for f in (errlog, access):
            st = os.stat(f)
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o640), (f, st)

    both_groups_write("first")
    for w, uid in users.items():  # each worker's own lines: "GROUP:PID: ..."
        wait_in(errlog, r"\] [ab]:%d: " % w, timeout=3)
    assert "cannot open" not in errlog.read_text() + d.log()

    os.rename(errlog, logs / "error.log.1")
    os.rename(access, logs / "access.log.1")
    r = ctl(d, "reopen-logs")
    assert r.returncode == 0, (r.stdout, r.stderr)
    both_groups_write("second")
    assert "/second-" not in (logs / "access.log.1").read_text()
    assert "cannot open" not in errlog.read_text() + d.log()


TRUNCATE_APP = r"""
import fcntl, os

def application(environ, start_response):
    # What an app of group a could do to every log file it holds: take O_APPEND off, truncate,
    # and write over what was there.
    done = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if not target.endswith(".log"):
            continue
        fd = int(fd)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_APPEND)
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"forged by a\n", 0)
            done.append(target)
        except OSError as e:
            done.append("%s: %s" % (target, e))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("\n".join(done) + "\n").encode()]
"""


def written_files(pid):
    """The regular files (not memfds, not /dev/null) process pid holds open."""
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/memfd:", "/proc/")) \
                and os.path.isfile(target):
            out.add(target)
    return out


def test_an_app_cannot_truncate_the_logs_other_groups_and_the_master_write(wsgid, tmp):
    """Group a's app (nobody) takes O_APPEND off every log file it holds, truncates it and writes
    over it: the lines of group b (daemon) and of the master stay. Every worker held the error
    log and the access log that all groups and the master write, and, with the master's stderr
    a file, that file too (helper-79). Now a worker's log lines go to the master through pipes,
    and no worker holds a file the master writes."""
    os.chmod(tmp, 0o755)
    logs = tmp / "logs"
    logs.mkdir(mode=0o755)
    errlog, access = logs / "error.log", logs / "access.log"
    (tmp / "a").mkdir(mode=0o755)
    (tmp / "a" / "trunc.py").write_text(TRUNCATE_APP)
    ports = free_port(), free_port()
    conf = {"log": {"level": "info", "file": str(errlog), "access": str(access)},
            "groups": {"a": {"app": str(tmp / "a" / "trunc.py"), "user": "nobody", "threads": 2,
                             "listen": ["127.0.0.1:%d" % ports[0]]},
                       "b": {"app": app("hello"), "user": "daemon", "threads": 2,
                             "listen": ["127.0.0.1:%d" % ports[1]]}}}
    d = wsgid(config=to_yaml(conf) + "\n", wait=False)
    wait_in(errlog, r"all workers ready")
    d.seen_workers.update(d.workers())
    get(ports[1], "/mark-b")
    wait_in(access, r"GET /mark-b ", timeout=3)
    done = get(ports[0], "/truncate")
    get(ports[0], "/after-a")
    wait_in(access, r"GET /after-a ", timeout=3)
    assert "GET /mark-b " in access.read_text(), (done, access.read_text())
    assert "all workers ready" in errlog.read_text(), (done, errlog.read_text())
    assert "forged by a" not in access.read_text() + errlog.read_text()
    assert done.strip() == "", done
    master = written_files(d.pid)
    for w in d.workers():
        assert not (written_files(w) & master), (w, written_files(w), master)


def test_a_link_swapped_for_a_directory_of_a_log_path_is_not_followed(wsgid, tmp):
    """The access log is in a directory of the group's user (srv/app1/logs/access.log, srv/app1
    nobody's): the user renames logs away and leaves a symbolic link to a directory of root's in
    its place. At the next reopen-logs root created the log there, and wrote to it: only the
    last component of a log's path refused a link (helper-79). Now a link on the way is
    followed only if root owns it or its directory: reopen-logs says which link, and the group,
    and nothing is created. The error log's path goes through a link of root's in a directory of
    root's (as /var/log may be), which still works."""
    os.chmod(tmp, 0o755)
    real = tmp / "real-logs"
    real.mkdir(mode=0o755)
    os.symlink(real, tmp / "varlog")  # root's link, in root's directory
    app1 = tmp / "srv" / "app1"
    (app1 / "logs").mkdir(parents=True)
    for p in (app1, app1 / "logs"):
        os.chown(p, NOBODY.pw_uid, NOBODY.pw_gid)
    access = app1 / "logs" / "access.log"
    roots = tmp / "roots"
    roots.mkdir(mode=0o700)
    text, addr = config(tmp, "nobody", control=str(tmp / "ctl.sock"),
                        log={"level": "info", "file": str(tmp / "varlog" / "error.log"),
                             "access": str(access)})
    d = wsgid(config=text, wait=False)
    d.tcp = addr
    d.unix_paths.append(str(tmp / "ctl.sock"))
    wait_in(real / "error.log", r"all workers ready")
    d.seen_workers.update(d.workers())
    assert_hello(d.tcp)
    wait_in(access, r"GET / ")
    as_user(NOBODY, "mv", app1 / "logs", app1 / "logs.1")
    as_user(NOBODY, "ln", "-s", roots, app1 / "logs")
    r = ctl(d, "reopen-logs")
    assert os.listdir(roots) == [], (os.listdir(roots), r.stdout, r.stderr)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"cannot open the access log %s \(group site\): a directory on its path, "
                     r"%s, is a symbolic link in a directory that uid %d may write, and not "
                     r"root's .*: name the path the link points to, or have root own the link"
                     % (re.escape(str(access)), re.escape(str(app1 / "logs")), NOBODY.pw_uid),
                     r.stderr), r.stderr
    assert_hello(d.tcp)
    # A link of root's there is root's choice: followed.
    os.unlink(app1 / "logs")
    os.symlink(roots, app1 / "logs")
    r = ctl(d, "reopen-logs")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert os.listdir(roots) == ["access.log"]
    d.expect_log(r"cannot open the access log")


def test_a_link_at_the_pidfile_path_is_refused(wsgid, tmp):
    """The pidfile's directory belongs to a group's user (README's run/wsgid.pid beside the
    config), who leaves a symbolic link there to a root-owned file: the next start refuses the
    pidfile, naming it, and leaves the file alone (root truncated it and wrote its pid there).
    A pidfile that is no longer the one wsgid wrote is left at the stop (it was removed)."""
    os.chmod(tmp, 0o755)
    run = tmp / "run"
    run.mkdir(mode=0o755)
    os.chown(run, NOBODY.pw_uid, NOBODY.pw_gid)
    pidfile = run / "wsgid.pid"
    target = victim(tmp, "victim-pid")
    as_user(NOBODY, "ln", "-s", target, pidfile)
    text, _ = config(tmp, "nobody", pidfile=str(pidfile))
    d = wsgid(config=text, wait=False)
    d.expect_failure = True
    d.expect_log(r"cannot write the pidfile")
    assert d.wait_exit(10) != 0
    assert_untouched(target)
    assert re.search(r"\[error\] .*cannot write the pidfile %s: it is a symbolic link, which "
                     r"wsgid does not write through .*: remove it, or name the file itself"
                     % re.escape(str(pidfile)), d.log()), d.log()
    assert not d.workers()

    os.unlink(pidfile)
    d = start(wsgid, tmp, "nobody", pidfile=str(pidfile))
    assert pidfile.read_text() == "%d\n" % d.pid
    as_user(NOBODY, "sh", "-c", 'echo 1 > "$0.new" && mv "$0.new" "$0"', pidfile)
    d.stop()
    assert pidfile.read_text() == "1\n"
    assert re.search(r"\[warn\] .*the pidfile %s is no longer the file wsgid wrote: leaving it"
                     % re.escape(str(pidfile)), d.log()), d.log()


# Exchanges two entries of a directory (renameat2 RENAME_EXCHANGE) until killed.
SWAPPER = '''import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
print("swapping", flush=True)
while True:
    libc.renameat2(-100, a, -100, b, 2)
'''


def test_a_link_exchanged_while_it_is_checked_is_not_followed(wsgid, tmp):
    """The admin made /srv/app1/logs a link of root's to a directory of root's, in a directory
    the group's user may write: the rule lets it through. The user exchanges it (renameat2
    RENAME_EXCHANGE) with a link of its own to a directory of root's, again and again, while
    the logs are reopened: the link was checked by its name, then read by its name again, and
    what was read could be the user's (root created roots/access.log at the 8th reopen of
    helper-85's repro). Now the link is opened once and what was checked is what is read. A
    reopen may fail (the user's link was there), but nothing is ever created in roots."""
    os.chmod(tmp, 0o755)
    real = tmp / "real-logs"
    real.mkdir(mode=0o755)
    roots = tmp / "roots"
    roots.mkdir(mode=0o700)
    app1 = tmp / "srv" / "app1"
    app1.mkdir(parents=True)
    os.chown(app1, NOBODY.pw_uid, NOBODY.pw_gid)
    os.symlink(real, app1 / "logs")  # root's link, in the user's directory
    (tmp / "swap.py").write_text(SWAPPER)
    as_user(NOBODY, "ln", "-s", roots, app1 / "evil")
    text, addr = config(tmp, "nobody", control=str(tmp / "ctl.sock"),
                        log={"level": "info", "file": str(tmp / "error.log"),
                             "access": str(app1 / "logs" / "access.log")})
    d = wsgid(config=text, wait=False)
    d.tcp = addr
    d.unix_paths.append(str(tmp / "ctl.sock"))
    wait_in(tmp / "error.log", r"all workers ready")
    d.seen_workers.update(d.workers())
    swapper = subprocess.Popen(["setpriv", "--reuid=%d" % NOBODY.pw_uid,
                                "--regid=%d" % NOBODY.pw_gid, "--clear-groups",
                                "/usr/bin/python3", str(tmp / "swap.py"), app1 / "logs",
                                app1 / "evil"], stdout=subprocess.PIPE, text=True)
    try:
        assert swapper.stdout.readline() == "swapping\n"
        refused = n = 0
        end = time.monotonic() + 4
        while time.monotonic() < end and not os.listdir(roots):
            r = ctl(d, "reopen-logs")
            n += 1
            refused += r.returncode != 0
            assert os.listdir(roots) == [], "root created %s at reopen %d: %s" % (
                os.listdir(roots), n, r.stderr)
    finally:
        swapper.kill()
        swapper.wait()
    print("%d reopens, %d refused the user's link" % (n, refused))
    assert refused > 0, "the swap never caught a reopen: the test proved nothing"
    d.expect_log(r"cannot open the access log")
    assert_hello(d.tcp)
