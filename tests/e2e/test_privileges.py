"""Privileges (issue 3): started as root, each group's workers run as its `user` (nobody when a
group says nothing, with a warning; root only when it says `user: root`); an unknown user stops the
start naming the group; the control socket (0600) refuses a peer of another uid (SO_PEERCRED)."""
import os
import pwd
import re
import signal
import stat
import subprocess

import pytest

from helpers.clients import assert_hello
from helpers.config import app, to_yaml
from helpers.daemon import WSGICTL
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
    d = wsgid(config=config(tmp, "no-such-user-e2e")[0], wait=False)
    d.expect_failure = True
    d.expect_log(r"master: group site: unknown user no-such-user-e2e")
    rc = d.wait_exit(10)
    assert rc != 0
    text = d.log()
    assert re.search(r"\[error\] .*group site: unknown user no-such-user-e2e", text), text
    assert not d.workers()


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
    """The logs directory is root's (like /var/log/wsgid): a worker running as nobody can neither
    create the file nor create it again after logrotate moved it, unless the master gives it."""
    os.chmod(tmp, 0o755)
    logs = tmp / "logs"
    logs.mkdir(mode=0o755)
    access = logs / "access.log"
    d = start(wsgid, tmp, "nobody", log={"level": "info", "file": "-", "access": str(access)})
    assert_hello(d.tcp)
    wait_for(lambda: access.exists() and "GET / " in access.read_text(), timeout=3,
             what="the access line")
    assert os.stat(access).st_uid == NOBODY.pw_uid
    os.rename(access, logs / "access.log.1")
    since = d.log_size()
    d.signal(signal.SIGUSR1)
    d.wait_log(r"log files reopened", since=since)

    def new_line():
        assert_hello(d.tcp)
        return access.exists() and "GET / " in access.read_text()
    wait_for(new_line, timeout=3, what="a line in the new access log")
    assert os.stat(access).st_uid == NOBODY.pw_uid
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
