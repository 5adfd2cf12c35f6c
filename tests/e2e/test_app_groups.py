"""Several apps in one group, each in the interpreter its `application-group` names (issue 13):
two Django projects in sub-interpreters of their own behind nginx (uwsgi_pass and proxy_pass),
module globals shared within a named group and isolated between groups, numpy in the main
interpreter and in a sub-interpreter, the seed-style example config as written, and no thread
state leak across 10,000 requests spread over three interpreters."""
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from helpers.clients import Conn, http_request, request
from helpers.config import REPO, app, make_config
from helpers.daemon import WSGID_BIN
from helpers import haproxy as haproxy_conf
from helpers.nginx import proxy_location
from helpers.procs import cmdline, free_port

PY = "/usr/bin/python3"
EXAMPLE = REPO / "examples" / "projects"


def have(module):
    return subprocess.run([PY, "-c", "import " + module], capture_output=True).returncode == 0


needs_django = pytest.mark.skipif(not have("django"),
                                  reason="python3-django is not installed (./dev deps)")
needs_numpy = pytest.mark.skipif(not have("numpy"),
                                 reason="python3-numpy is not installed (./dev deps)")


def get_json(addr, path):
    r = request(addr, "GET", path)
    assert r.status == 200, (path, r.status, r.body)
    return json.loads(r.body)


def copy_example(tmp):
    """examples/projects in the test's dir: the config's relative paths resolve there."""
    for item in EXAMPLE.iterdir():
        if item.name == "wsgid.yaml":
            continue
        if item.is_dir():
            shutil.copytree(item, tmp / item.name, ignore=shutil.ignore_patterns("__pycache__",
                                                                                "*.sqlite3"))
    return (EXAMPLE / "wsgid.yaml").read_text()


def django_projects_config(tmp, application_group):
    mounts = {
        "/project%d" % n: {"app": "project%d/project%d/wsgi.py" % (n, n),
                           "application-group": application_group,
                           "python-path": ["project%d" % n]}
        for n in (1, 2)}
    return make_config(tmp, {"default": {"listen": "unix:" + str(tmp / "default.sock"),
                                         "threads": 4, "mounts": mounts}})


def manage(tmp, n, *args):
    r = subprocess.run([PY, "manage.py", *args], cwd=tmp / ("project%d" % n),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def admin_login(base, n, user, password):
    """Logs in to project n's admin with a session of its own; returns (session, final page)."""
    s = requests.Session()
    login = "%s/project%d/admin/login/?next=/project%d/admin/" % (base, n, n)
    r = s.get(login)
    assert r.status_code == 200, r.text
    assert "project%d_csrftoken" % n in s.cookies
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    r = s.post(login, data={"csrfmiddlewaretoken": token, "username": user, "password": password,
                            "next": "/project%d/admin/" % n}, allow_redirects=False)
    return s, r


@needs_django
def test_two_django_projects_in_their_own_interpreters(tmp, wsgid, nginx):
    copy_example(tmp)
    for n in (1, 2):
        manage(tmp, n, "migrate", "--noinput", "-v", "0")
        manage(tmp, n, "shell", "-c",
               "from django.contrib.auth.models import User; "
               "User.objects.create_superuser('admin%d', 'a@example.org', 'pw%d')" % (n, n))
    d = wsgid(config=django_projects_config(tmp, "%{RESOURCE}"))
    sock = tmp / "default.sock"
    proxy_port = free_port()
    # uwsgi_pass on the main server, proxy_pass (HTTP/1.1 keep-alive) on a second one.
    ng = nginx("""location / {
            uwsgi_pass unix:%s;
            include /etc/nginx/uwsgi_params;
        }""" % sock, http_extra="""server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://unix:%s:;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }""" % (proxy_port, sock))
    for base in (ng.url, "http://127.0.0.1:%d" % proxy_port):
        for n in (1, 2):
            r = requests.get("%s/project%d/" % (base, n))
            assert r.status_code == 200
            assert r.text.startswith("Project %d: settings project%d.settings, script name "
                                     "/project%d, path /project%d/, application group "
                                     "'/project%d'" % (n, n, n, n, n)), r.text
            s, r = admin_login(base, n, "admin%d" % n, "pw%d" % n)
            assert r.status_code == 302, r.text
            assert r.headers["Location"] == "/project%d/admin/" % n
            assert "project%d_sessionid" % n in s.cookies
            r = s.get("%s/project%d/admin/" % (base, n))
            assert r.status_code == 200
            assert "Project %d administration" % n in r.text
            assert "admin%d" % n in r.text
            # The other project's account does not exist here: separate settings, databases.
            other = 3 - n
            _, r = admin_login(base, n, "admin%d" % other, "pw%d" % other)
            assert r.status_code == 200 and "Please enter the correct username" in r.text
            # CSRF is enforced: a POST without the token is refused.
            r = requests.post("%s/project%d/admin/login/" % (base, n),
                              data={"username": "x", "password": "y"})
            assert r.status_code == 403


@needs_django
def test_two_django_projects_refused_in_one_interpreter(tmp, wsgid):
    """%{GLOBAL}: Django configures itself once per interpreter, so project2 would silently run
    with project1's settings and URLs. wsgid refuses to start, and says what to do."""
    copy_example(tmp)
    with pytest.raises(AssertionError):
        wsgid(config=django_projects_config(tmp, "%{GLOBAL}"))
    log = (tmp / "wsgid0.log").read_text()
    assert re.search(r"app /\S+/project2/project2/wsgi.py \(mount /project2\) sets "
                     r"DJANGO_SETTINGS_MODULE=project2.settings, but the interpreter it shares "
                     r"\(application group \"%\{GLOBAL\}\"\) already runs Django with "
                     r"project1.settings: one interpreter has one Django settings module. Give "
                     r"the mounts application-group: \"%\{RESOURCE\}\"", log), log


def test_module_globals_follow_application_groups(tmp, wsgid):
    script = app("appgroups")
    mounts = {
        "/a": {"app": script, "application-group": "shared"},
        "/b": {"app": script, "application-group": "shared"},
        "/c": {"app": script, "application-group": "other", "env": {"WHO": "c"},
               "python-path": [str(tmp)], "chdir": str(tmp / "cdir")},
        "/r": {"app": script, "application-group": "%{RESOURCE}"},
        "/g": {"app": script},  # the group's application-group: %{GLOBAL}
    }
    (tmp / "cdir").mkdir()
    d = wsgid(config=make_config(tmp, {"site": {"listen": "unix:" + str(tmp / "site.sock"),
                                                "threads": 4, "mounts": mounts}}))
    sock = str(tmp / "site.sock")
    # A mount's chdir is its requests' working directory, whichever thread runs them; the
    # others run in the group's (here the directory wsgid started in).
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        cwds = list(ex.map(lambda p: (p, get_json(sock, p)["cwd"]), ["/c", "/a", "/g"] * 30))
    assert {c for p, c in cwds if p == "/c"} == {str(tmp / "cdir")}
    assert {c for p, c in cwds if p != "/c"} == {str(tmp)}
    a = get_json(sock, "/a/x?set=from-a")
    assert a["value"] == "from-a" and a["group"] == "shared"
    assert a["script_name"] == "/a" and a["path_info"] == "/x"
    b = get_json(sock, "/b/")
    assert b["value"] == "from-a", "a module global is shared within an application group"
    assert b["interp"] == a["interp"]
    c = get_json(sock, "/c")
    assert c["value"] is None and c["group"] == "other"
    assert c["who"] == "c", "a mount's env"
    assert c["path"][:2] == [str(Path(script).parent), str(tmp)], "script dir, then python-path"
    assert str(tmp) not in a["path"], "a mount's python-path is its interpreter's only"
    r = get_json(sock, "/r/deep/er")
    assert r["value"] is None and r["group"] == "/r" and r["path_info"] == "/deep/er"
    g = get_json(sock, "/g")
    assert g["value"] is None and g["group"] == ""
    assert len({a["interp"], c["interp"], r["interp"], g["interp"]}) == 4
    for x in (a, b, r, g):
        assert x["who"] is None, "env of /c leaked into another interpreter"
    # ... nor into the process's one environment, where every interpreter's C libraries read
    # (libpq's PGHOST): the group's env is there, a mount's in its os.environ only (helper-63).
    for x in (a, b, c, r, g):
        assert x["c_who"] is None, "env of /c in the process environment"
    # A module global set in one group is invisible in the others, in every thread.
    get_json(sock, "/g?set=from-g")
    seen = {get_json(sock, p)["value"] for p in ("/c", "/r") for _ in range(8)}
    assert seen == {None}
    assert get_json(sock, "/b")["value"] == "from-a"
    # No mount matches and the group has no app of its own: 404, from wsgid.
    resp = request(sock, "GET", "/nowhere")
    assert resp.status == 404
    resp = request(sock, "GET", "/ab")  # not under /a: whole path segments only
    assert resp.status == 404


def test_threads_an_app_starts_keep_its_working_directory(tmp, wsgid):
    """A thread an app starts (threading.Thread, _thread.start_new_thread, a concurrent.futures
    pool's, one started at import) works in its app's directory for its whole life, whatever the
    pool thread that started it serves next. Before, it shared the working directory of the thread
    that started it (clone with CLONE_FS): with threads: 1, /a's thread saw cdir while the pool
    thread served /c, and /c's the group's directory while it served /a; a thread started at
    import shared the main thread's, which goes back to the group's (helper-63). /a and /d share
    the main interpreter, each with its directory."""
    script = app("threadcwd")
    dirs = {"/a": tmp, "/c": tmp / "cdir", "/d": tmp / "ddir"}
    (tmp / "cdir").mkdir()
    (tmp / "ddir").mkdir()
    mounts = {"/a": {"app": script},
              "/d": {"app": script, "chdir": str(dirs["/d"])},
              "/c": {"app": script, "application-group": "other", "chdir": str(dirs["/c"])}}
    sock = str(tmp / "site.sock")
    wsgid(config=make_config(tmp, {"site": {"listen": "unix:" + sock, "threads": 1,
                                            "mounts": mounts}}))
    for p in mounts:
        get_json(sock, p + "?start=1")
    for _ in range(2):  # each app's threads run while the one pool thread serves the others
        for p in mounts:
            get_json(sock, p + "?sleep=0.3")
    kinds = ("import", "_thread", "thread", "executor")
    got = {p: get_json(sock, p) for p in mounts}
    assert got == {p: {"cwd": str(d), "seen": {k: [str(d)] for k in kinds}} for p, d in dirs.items()}


def test_a_path_read_two_ways_reaches_no_mount(tmp, wsgid, nginx, haproxy):
    """Proxies read a path before they pick a location or apply an ACL, some as sent (HAProxy's
    path_beg), some decoded and normalised (nginx, Apache), and pass the target on as sent. wsgid
    routes the decoded path as PATH_INFO reads; a path whose readings name different mounts is
    answered 400, so that no reading a proxy made lets it reach an app the proxy kept it from.
    Before, GET /admin/../public/x passed nginx's "location /admin { return 403; }" (nginx read
    /public/x) and ran in /admin's app with PATH_INFO /../public/x; and /%61dmin/x passed
    HAProxy's "deny if { path_beg /admin }" and ran in /admin's app (helper-59)."""
    script = app("appgroups")
    mounts = {"/admin": {"app": script, "application-group": "admin"},
              "/public": {"app": script, "application-group": "public"},
              "/café": {"app": script, "application-group": "cafe"},
              "/x y": {"app": script, "application-group": "xy"}}
    tcp = ("127.0.0.1", free_port())
    d = wsgid(config=make_config(tmp, {"site": {"listen": ["unix:" + str(tmp / "site.sock"),
                                                           "%s:%d" % tcp],
                                                "threads": 2, "mounts": mounts}}))
    n = nginx("location /admin { return 403; }\n" + proxy_location(str(tmp / "site.sock")))
    h = haproxy(haproxy_conf.http_tcp(tcp).replace(
        "    default_backend wsgid", "    http-request deny if { path_beg /admin }\n"
        "    default_backend wsgid"))
    h.expect_log(r"www/<NOSRV> .* 403 .* PR-- ")  # its deny, logged as an error

    def get(addr, target):
        with Conn(addr) as c:
            c.send(http_request(path=target))
            return c.response()
    for front in (n.addr, h.addr, str(tmp / "site.sock")):
        for target in ("/admin/../public/x", "/admin//../public/x", "/admin/%2e%2e/public/y",
                       "/public/../admin/x", "/x/../admin/x", "//admin/x", "/./admin/x",
                       "/%61dmin/x", "/admin%2fx", "/public/a/../../admin/x"):
            r = get(front, target)
            assert r.status in (400, 403), (front, target, r.status, r.body)
            assert b"\"group\"" not in r.body, (front, target, r.body)
        # A path that reads the same every way is served, dot segments and all in PATH_INFO.
        for target, path_info in (("/public/x", "/x"), ("/public/./y", "/./y"),
                                  ("/public//z", "//z"), ("/public/a/../b", "/a/../b"),
                                  ("/public/%7Ez", "/~z")):
            r = get(front, target)
            assert r.status == 200, (front, target, r.status, r.body)
            out = json.loads(r.body)
            if front == n.addr and target != "/public/%7Ez":
                continue  # nginx passes the target on as sent, but only after its own checks
            assert (out["group"], out["script_name"], out["path_info"]) == \
                ("public", "/public", path_info), (front, target, out)
    d.expect_log(r"its path names another mount as sent or once normalised")
    d.wait_log(r"\[req \d+-\d+\] GET /admin/\.\./public/x: its path names another "
               r"mount as sent or once normalised .*: 400")
    out = get_json(str(tmp / "site.sock"), "/admin/q")
    assert (out["group"], out["path_info"]) == ("admin", "/q"), out
    # A mount point a client must escape is reached as clients send it (helper-61: 400 before),
    # written decoded as the path is routed (helper-63: "/x y" was refused).
    # SCRIPT_NAME is the bytes read as latin-1 (PEP 3333).
    cafe = "/café".encode().decode("latin-1")
    for front in (n.addr, h.addr, str(tmp / "site.sock")):
        for target, group, script_name in (("/caf%C3%A9/x", "cafe", cafe),
                                           ("/x%20y/x", "xy", "/x y")):
            r = get(front, target)
            assert r.status == 200, (front, target, r.status, r.body)
            out = json.loads(r.body)
            assert (out["group"], out["script_name"], out["path_info"]) == \
                (group, script_name, "/x"), (front, target, out)


def two_mounts(tmp, wsgid, **group):
    """A group serving appgroups.py at /admin and /public (unix:TMP/site.sock and a TCP port)."""
    script = app("appgroups")
    tcp = ("127.0.0.1", free_port())
    g = {"listen": ["unix:" + str(tmp / "site.sock"), "%s:%d" % tcp], "threads": 2,
         "mounts": {"/admin": {"app": script, "application-group": "admin"},
                    "/public": {"app": script, "application-group": "public"}}}
    g.update(group)
    return wsgid(config=make_config(tmp, {"site": g})), tcp


def served(front, target):
    """(status, (application group, SCRIPT_NAME, PATH_INFO) or None)."""
    with Conn(front) as c:
        c.send(http_request(path=target))
        r = c.response()
    if r.status != 200:
        return r.status, None
    out = json.loads(r.body)
    return r.status, (out["group"], out["script_name"], out["path_info"])


@pytest.mark.parametrize("site", ["", "/site"])
def test_a_path_haproxy_reads_as_sent_over_fastcgi_reaches_no_mount(tmp, wsgid, haproxy, site):
    """HAProxy's fcgi-app (README's snippet: path-info ^()(/.*)$) sends its decoded path as
    PATH_INFO, and its path_beg reads the target as sent. wsgid routed the PATH_INFO alone: GET
    /%61dmin/x passed "deny if { path_beg /admin }" and ran in /admin's app, and so did
    /site/%61dmin/x behind path-info ^(/site)(/.*)$ (SCRIPT_NAME /site) and path_beg /site/admin
    (helper-83). The target (REQUEST_URI) is now read every way the HTTP path is, after the
    proxy's SCRIPT_NAME, when that and PATH_INFO are its path."""
    d, tcp = two_mounts(tmp, wsgid)
    h = haproxy(haproxy_conf.fcgi_tcp(tcp).replace("^()(/.*)$", "^(%s)(/.*)$" % site).replace(
        "    default_backend wsgid", "    http-request deny if { path_beg %s/admin }\n"
        "    default_backend wsgid" % site))
    h.expect_log(r"www/<NOSRV> .* 403 .* PR-- ")  # its deny, logged as an error
    for target in ("/%61dmin/x", "/%61dmin", "/public/../admin/x", "/x/../admin/x",
                   "//admin/x"):
        status, got = served(h.addr, site + target)
        assert status in (400, 403) and got is None, (site + target, status, got)
    assert served(h.addr, site + "/admin/x")[0] == 403
    for target, want in (("/public/x", ("public", "/public", "/x")),
                         ("/public/%7Ez", ("public", "/public", "/~z")),
                         ("/public", ("public", "/public", ""))):
        want = (want[0], site + want[1], want[2])
        assert served(h.addr, site + target) == (200, want), target
    d.expect_log(r"its path names another mount as sent or once normalised")
    d.wait_log(r"\[req \d+-\d+\] GET %s/%%61dmin/x: its path names another mount" % site)


@pytest.mark.parametrize("slashes", ["Off", "NoDecode", "On"])
def test_a_path_apache_reads_with_its_escaped_slashes_reaches_no_mount(tmp, wsgid, apache,
                                                                      slashes):
    """Apache removes dot segments before it decodes %2F (an escaped slash is no segment
    boundary to it), and ProxyPass ... nocanon passes the target on as sent. Behind
    "<Location /admin> Require all denied", GET /admin/a%2Fb/../../public/x was /public/x to
    Apache and ran in /admin's app (wsgid decoded first: /admin/a/b/../../public/x), and so did
    /admin/../admin%2Fx under AllowEncodedSlashes NoDecode, which Apache reads /admin%2Fx, under
    no <Location /admin>, and /admin/a%2Fb%2Fc/../..%2F..%2Fpublic/x under On, which decodes
    the slashes and normalises again: /public/x (helper-83). Apache's readings are now among
    those that must agree."""
    d, tcp = two_mounts(tmp, wsgid)
    a = apache("AllowEncodedSlashes %s\n<Location \"/admin\">\n    Require all denied\n"
               "</Location>\nProxyPass \"/\" \"http://%s:%d/\" nocanon\n" % ((slashes,) + tcp))
    a.expect_log(r"AH01630: client denied by server configuration")
    for target in ("/admin/a%2Fb/../../public/x", "/admin/a%2fb/%2e%2e/%2e%2e/public/x") + (
            ("/admin/../admin%2Fx", "/admin/x/../../admin%2Fy") if slashes == "NoDecode"
            else ("/admin/a%2Fb%2Fc/../..%2F..%2Fpublic/x",) if slashes == "On" else ()):
        status, got = served(a.addr, target)
        assert status in (400, 403, 404) and got is None, (target, status, got)
    assert served(a.addr, "/admin/x")[0] == 403
    assert served(a.addr, "/public/x") == (200, ("public", "/public", "/x"))
    d.expect_log(r"its path names another mount as sent or once normalised")


def test_a_path_info_after_uwsgi_params_is_the_one_routed(tmp, wsgid, nginx):
    """nginx serving a group under a prefix: include uwsgi_params (PATH_INFO $document_uri),
    then uwsgi_param SCRIPT_NAME and PATH_INFO of its own. nginx sends both PATH_INFO lines; the
    app's environ had the last and the router the first, so every request got 404 (no mount at
    /site/...), or ran in the app its whole path named with a PATH_INFO not under it
    (helper-83). The last is routed, as uWSGI takes the last one."""
    d, tcp = two_mounts(tmp, wsgid)
    n = nginx("""location ~ ^/site(/.*)$ {
            include /etc/nginx/uwsgi_params;
            uwsgi_param SCRIPT_NAME /site;
            uwsgi_param PATH_INFO $1;
            uwsgi_pass unix:%s;
        }
""" % (tmp / "site.sock"))
    assert served(n.addr, "/site/public/x") == (200, ("public", "/site/public", "/x"))
    assert served(n.addr, "/site/admin/y") == (200, ("admin", "/site/admin", "/y"))
    assert served(n.addr, "/site/other")[0] == 404


def check(path):
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(path)], capture_output=True,
                       text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def test_check_refuses_an_app_with_no_place_or_interpreter_of_its_own(tmp):
    """wsgid --check refuses, naming file:line:col: a named application group that is a
    %{RESOURCE} interpreter's name (it joined /a's own interpreter, and /a saw /b's X=2), and a
    mount at / beside the group's own app (every path went to the mount; the group's app, which
    the log said was served, was never reached, and both interpreters were labelled "/")
    (helper-63)."""
    script = app("appgroups")
    cases = [
        ({"/a": {"app": script, "application-group": "%{RESOURCE}", "env": {"X": "1"}},
          "/b": {"app": script, "application-group": "/a", "env": {"X": "2"}}}, {},
         r":\d+:\d+: groups\.site\.mounts\./b\.application-group: \"/a\" is the name of mount "
         r"/a's own interpreter \(application-group: \"%\{RESOURCE\}\"\), which no other app "
         r"joins"),
        ({"/": {"app": script, "application-group": "%{RESOURCE}"},
          "/x": {"app": script}}, {"app": script, "application-group": "%{RESOURCE}"},
         r":\d+:\d+: groups\.site\.mounts\./: the group's app \(line \d+\) is the app at / "
         r"already \(it serves what no mount matches\): a mount at / would take every request "
         r"from it"),
    ]
    for mounts, group, expect in cases:
        cfg = tmp / "c.yaml"
        cfg.write_text(make_config(tmp, {"site": {"listen": "unix:" + str(tmp / "site.sock"),
                                                  "mounts": mounts, **group}}))
        rc, out = check(cfg)
        assert rc == 1 and re.search(re.escape(str(cfg)) + expect, out), out
    # Given one name of their own, /a and /b share an interpreter (and must agree on X).
    cfg.write_text(make_config(tmp, {"site": {"listen": "unix:" + str(tmp / "site.sock"),
                                              "mounts": {
        "/a": {"app": script, "application-group": "ab", "env": {"X": "1"}},
        "/b": {"app": script, "application-group": "ab", "env": {"X": "1"}}}}}))
    assert check(cfg)[0] == 0


@needs_numpy
def test_numpy_in_the_main_interpreter(tmp, wsgid):
    script = app("appgroups")
    d = wsgid(config=make_config(tmp, {"site": {
        "listen": "unix:" + str(tmp / "site.sock"), "threads": 2,
        "mounts": {"/np": {"app": script}, "/plain": {"app": script,
                                                      "application-group": "%{RESOURCE}"}}}}))
    sock = str(tmp / "site.sock")
    assert get_json(sock, "/np/?numpy=1")["numpy"] == 45
    assert get_json(sock, "/plain/")["group"] == "/plain"


@needs_numpy
@pytest.mark.parametrize("order", ["main first", "sub first"])
def test_numpy_in_sub_interpreters(tmp, wsgid, order):
    """numpy's Cython modules load in one interpreter per process: in a sub-interpreter after the
    main one has it, the import fails; wsgid names the mount, the module and the fix, and exits
    (no crash, no hang). The main interpreter's apps load first, whatever the file's order:
    before, with the sub-interpreter's mount listed first, the main interpreter's failed, with
    no hint (helper-63). Alone in one sub-interpreter it works."""
    script = tmp / "np_app.py"
    script.write_text("import numpy\n" + Path(app("appgroups")).read_text())
    shutil.copy(app("appgroups_state"), tmp / "appgroups_state.py")
    mounts = [("/g", {"app": str(script)}),
              ("/r", {"app": str(script), "application-group": "%{RESOURCE}"})]
    if order == "sub first":
        mounts.reverse()
    cfg = make_config(tmp, {"site": {"listen": "unix:" + str(tmp / "site.sock"), "threads": 2,
                                     "mounts": dict(mounts)}})
    t0 = time.monotonic()
    with pytest.raises(AssertionError):
        wsgid(config=cfg)
    assert time.monotonic() - t0 < 15
    log = (tmp / "wsgid0.log").read_text()
    assert re.search(r"cannot load app \S+np_app.py \(mount /r\): \S+\.py:\d+: ImportError: .*; "
                     r"it runs in the sub-interpreter of application group \"/r\": if module "
                     r"numpy\S* is \(or imports\) a C extension that does not support "
                     r"sub-interpreters, give the mount application-group: \"%\{GLOBAL\}\"",
                     log), log
    assert "Fatal Python error" not in log and "Segmentation" not in log

    cfg = make_config(tmp, {"site2": {"listen": "unix:" + str(tmp / "site2.sock"), "threads": 2,
                                      "mounts": {"/r": {"app": str(script),
                                                        "application-group": "%{RESOURCE}"}}}})
    wsgid(config=cfg)
    assert get_json(str(tmp / "site2.sock"), "/r?numpy=1")["numpy"] == 45


def test_seed_config_as_written(tmp, wsgid, nginx):
    """examples/projects/wsgid.yaml, unchanged: no listen (GROUP.sock beside the file), no user
    (nobody), a group of mounts only, display-name, a second group."""
    text = copy_example(tmp)
    os.chmod(tmp, 0o755)  # its workers run as nobody
    subprocess.run(["chmod", "-R", "a+rX", str(tmp)], check=True)
    d = wsgid(config=text)
    d.expect_log(r"no `user:` set; running its workers as nobody")
    ng = nginx("""location /project1 {
            uwsgi_pass unix:%(d)s/default.sock;
            include /etc/nginx/uwsgi_params;
        }
        location /project2 {
            proxy_pass http://unix:%(d)s/default.sock:;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location / {
            uwsgi_pass unix:%(d)s/site2.sock;
            include /etc/nginx/uwsgi_params;
        }""" % {"d": tmp})
    if have("django"):
        for n in (1, 2):
            r = requests.get("%s/project%d/" % (ng.url, n))
            assert r.status_code == 200
            assert ("settings project%d.settings, script name /project%d" % (n, n)) in r.text
    for _ in range(4):
        r = requests.get(ng.url + "/hello")
        assert r.status_code == 200 and r.text == "site2: /hello in process group site2\n"
    names = sorted(cmdline(p).split(b"\0")[0].decode() for p in d.workers())
    assert names == ["(wsgi:default)", "(wsgi:site2)", "(wsgi:site2)"], names


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_thread_states_do_not_leak(tmp, wsgid):
    """threads: 8, three application groups: every thread serves every interpreter. RSS stays
    flat over 10,000 requests (a thread state or an environ leaked per request would show)."""
    script = app("appgroups")
    d = wsgid(config=make_config(tmp, {"site": {
        "listen": "unix:" + str(tmp / "site.sock"), "threads": 8,
        "mounts": {"/g": {"app": script}, "/n": {"app": script, "application-group": "named"},
                   "/r": {"app": script, "application-group": "%{RESOURCE}"}}}}))
    sock = str(tmp / "site.sock")
    paths = ["/g/", "/n/", "/r/"]

    def client(k, n):
        interps, threads = set(), set()
        with Conn(sock) as c:
            for i in range(n):
                c.send(http_request("GET", paths[(i + k) % 3]))
                r = c.response()
                assert r.status == 200
                j = json.loads(r.body)
                interps.add(j["interp"])
                threads.add(j["thread"])
        return interps, threads

    def run(total):
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            return list(ex.map(lambda k: client(k, total // 8), range(8)))

    run(1600)  # every thread has met every interpreter
    (worker,) = d.workers()
    before = rss_kib(worker)
    results = run(8400)
    after = rss_kib(worker)
    interps = set().union(*(r[0] for r in results))
    threads = set().union(*(r[1] for r in results))
    assert len(interps) == 3
    assert len(threads) > 1
    # 8,400 requests: a leak of even 1 KiB each would be 8 MiB. Under AddressSanitizer freed
    # memory sits in its quarantine (RSS grows regardless): LeakSanitizer checks there instead.
    if "ASAN_OPTIONS" in os.environ:
        print("sanitizer build: RSS not compared (%d -> %d KiB); LeakSanitizer checks at exit"
              % (before, after))
    else:
        print("thread states: worker RSS %d KiB after 1,600 requests, %d KiB after 10,000"
              % (before, after))
        assert after - before < 3 * 1024, "worker RSS grew from %d to %d KiB" % (before, after)


def test_request_timeout_interrupts_a_sub_interpreter(tmp, wsgid):
    """The interrupter raises RequestTimeout through the interpreter the thread serves: a spinning
    request in a sub-interpreter is stopped at request-timeout, answered 504, and the worker
    goes on (the exception set from the main interpreter would find no such thread)."""
    ops = app("ops")
    d = wsgid(config=make_config(tmp, {"site": {
        "listen": "unix:" + str(tmp / "site.sock"), "threads": 2, "request-timeout": 1,
        "shutdown-timeout": 1, "env": {"WSGID_E2E_DIR": str(tmp)},
        "mounts": {"/r": {"app": ops, "application-group": "%{RESOURCE}"},
                   "/n": {"app": ops, "application-group": "named"}}}}))
    d.expect_log(r"\[req \d+-[12]\] ")
    sock = str(tmp / "site.sock")
    (first,) = d.workers()
    for prefix in ("/r", "/n"):
        (tmp / "spin-interrupted").unlink(missing_ok=True)
        t0 = time.monotonic()
        r = request(sock, "GET", prefix + "/spin?t=5", timeout=15)
        took = time.monotonic() - t0
        assert r.status == 504, (prefix, r)
        assert 0.9 < took < 3.0, (prefix, took)
        assert (tmp / "spin-interrupted").exists(), prefix
    assert not re.search(r"still running .* after its interruption", d.log())
    assert d.workers() == [first]
    assert request(sock, "GET", "/n/").status == 200


def test_busy_interpreter_does_not_hold_up_the_others(tmp, wsgid):
    """Python 3.11 asks a GIL holder to let go through the waiter's interpreter only: without
    gil.c, a request spinning in one application group held every request of the others until it
    ended (1.7 s of a 2 s spin, measured). Now the others answer while it spins, including an app
    that gives the GIL up and takes it back itself (file I/O)."""
    ops = app("ops")
    d = wsgid(config=make_config(tmp, {"site": {
        "listen": "unix:" + str(tmp / "site.sock"), "threads": 4, "request-timeout": 0,
        "env": {"WSGID_E2E_DIR": str(tmp)},
        "mounts": {"/g": {"app": ops}, "/r": {"app": ops, "application-group": "%{RESOURCE}"},
                   "/n": {"app": ops, "application-group": "named"}}}}))
    sock = str(tmp / "site.sock")
    for spin, others in (("/r", ("/g", "/n")), ("/g", ("/r", "/n"))):
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            spinning = ex.submit(request, sock, "GET", spin + "/spin?t=4", timeout=20)
            time.sleep(0.3)
            for other in others:
                t0 = time.monotonic()
                r = request(sock, "GET", other + "/mark?name=x", timeout=20)
                took = time.monotonic() - t0
                assert r.status == 200
                assert took < 1.5, "%s waited %.2f s for %s's spin" % (other, took, spin)
            assert not spinning.done(), "the spin ended before the others were measured"
            assert spinning.result().status == 200


BURSTS = '''import threading, time

def work():  # a cache warmer, a metrics aggregator: Python code in bursts, in a thread of its own
    while True:
        t = time.monotonic()
        while time.monotonic() - t < 3.0:
            pass
        time.sleep(0.2)

threading.Thread(target=work, daemon=True, name="bursts").start()

def application(environ, start_response):
    start_response("200 OK", [("Content-Length", "3")])
    return [b"ok\\n"]
'''


@pytest.mark.parametrize("where", ["%{RESOURCE}", "%{GLOBAL}"])
def test_an_app_thread_busy_in_one_interpreter_does_not_hold_up_the_others(tmp, wsgid, where):
    """A thread the app started (not one of wsgid's) runs Python code in 3 s bursts in one
    interpreter: the other interpreters' requests are still answered within a few switch
    intervals. Before, gil.c never looked into a GIL holder it did not know, and each of them
    waited for the end of the burst (helper-63: up to 1,994 ms, and 504s with request-timeout)."""
    bursts = tmp / "bursts.py"
    bursts.write_text(BURSTS)
    ops = app("ops")
    d = wsgid(config=make_config(tmp, {"site": {
        "listen": "unix:" + str(tmp / "site.sock"), "threads": 2,
        "env": {"WSGID_E2E_DIR": str(tmp)},
        "mounts": {"/bg": {"app": str(bursts), "application-group": where},
                   "/r": {"app": ops, "application-group": "%{RESOURCE}"},
                   "/n": {"app": ops, "application-group": "named"}}}}))
    sock = str(tmp / "site.sock")
    assert request(sock, "GET", "/bg/").status == 200  # the thread runs
    worst = 0.0
    for i in range(16):
        t0 = time.monotonic()
        r = request(sock, "GET", ("/r", "/n")[i % 2] + "/mark?name=x", timeout=20)
        took = time.monotonic() - t0
        assert r.status == 200
        worst = max(worst, took)
        time.sleep(0.2)
    print("the slowest of 16 answers over 3.2 s: %.3f s" % worst)
    assert worst < 0.5, "an answer waited %.2f s for the app's thread" % worst


def test_stacks_show_the_frames_of_every_interpreter(tmp, wsgid):
    """wsgictl stacks dumps the threads of every interpreter: a request of a sub-interpreter shows
    its frames (faulthandler, which dumped the main interpreter's threads only, showed it
    without any), and each thread is listed once although it has a state in each interpreter."""
    from test_top import ctl, stacks_sections

    inprogress = app("inprogress")
    sock = str(tmp / "site.sock")
    d = wsgid(config=make_config(tmp, {"site": {
        "listen": "unix:" + sock, "threads": 3,
        "mounts": {"/g": {"app": inprogress}, "/r": {"app": inprogress,
                                                     "application-group": "%{RESOURCE}"},
                   "/n": {"app": inprogress, "application-group": "named"}}}},
        control=str(tmp / "ctl.sock")))
    d.unix_paths.append(str(tmp / "ctl.sock"))
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        waits = [ex.submit(request, sock, "GET", p + "/db?t=3", timeout=20)
                 for p in ("/g", "/r", "/n")]
        time.sleep(0.5)
        rc, out, err = ctl(d, "stacks", "site")
        print(out)
        assert rc == 0, (out, err)
        [(pid, text)] = stacks_sections(out).items()
        for p in ("/g", "/r", "/n"):
            m = re.search(r"^Thread 0x[0-9a-f]+ wsgid-py\d \[req \d+-\d+ GET %s/db\?t=3, running "
                          r"[\d.]+ s\] \(most recent call first\):\n(  File .*\n)+" % p, text, re.M)
            assert m and "in waiting_for_db" in m.group(0), (p, text)
        idents = re.findall(r"^(?:Current )?[Tt]hread (0x[0-9a-f]+)", text, re.M)
        assert len(idents) == len(set(idents)) == 4, idents  # 3 Python threads, the loop
        assert all(w.result().status == 200 for w in waits)


@pytest.mark.parametrize("end", ["stop", "recycle"])
def test_threads_left_running_in_a_sub_interpreter(tmp, wsgid, end):
    """An app that leaves daemon threads running (a sleeping thread and a ThreadPool at import,
    as sentry-sdk or a metrics pusher does) in a sub-interpreter of its own, beside one without
    threads and one in the main interpreter with threads: the worker's stop and its recycle
    (maximum-requests) end with status 0, and every interpreter's atexit handlers run, those of
    the interpreter with threads too. Before (helper-63), Py_FinalizeEx aborted on the
    sub-interpreter left with its threads ("Fatal Python error: PyInterpreterState_Delete:
    remaining subinterpreters", killed by signal 6), whose atexit handlers had not run."""
    script = app("daemonthreads")
    group = {"listen": "unix:" + str(tmp / "site.sock"), "threads": 2,
             "env": {"WSGID_E2E_DIR": str(tmp)},
             "mounts": {"/a": {"app": script, "application-group": "%{RESOURCE}",
                               "env": {"WHO": "a"}},
                        "/b": {"app": script, "application-group": "%{RESOURCE}",
                               "env": {"WHO": "b", "THREADS": "0"}},
                        "/g": {"app": script, "env": {"WHO": "g"}}}}
    if end == "recycle":
        group["maximum-requests"] = 3
    d = wsgid(config=make_config(tmp, {"site": group}))
    sock = str(tmp / "site.sock")
    (first,) = d.workers()
    for who, threads in (("a", 4), ("b", 1), ("g", 4)):
        r = request(sock, "GET", "/" + who)
        assert r.status == 200
        name, n = r.body.decode().split()
        assert name == who and int(n) >= threads, r.body
    if end == "recycle":
        for _ in range(3):
            request(sock, "GET", "/b")
        d.wait_log(r"group site worker 1 \(pid %d\) (exited|killed)" % first, timeout=20)
    else:
        assert d.stop() == 0
    log = d.log()
    assert "Fatal Python error" not in log, log
    assert re.search(r"group site worker 1 \(pid %d\) exited with status 0" % first, log), log
    assert re.search(r"application group \"/a\" still runs \d+ threads? of its app \(sleeper\b", log), log
    ran = (tmp / "atexit.log").read_text().splitlines()
    assert sorted(ran) == ["atexit %s %d" % (who, first) for who in "abg"], ran


# --- a mount that hangs or dies while it is imported (helper-63) -----------------------------

HANGS = {
    # Waits without the GIL, as `from gi.repository import GLib` deadlocked.
    "wait": "import threading\nthreading.Event().wait()\n",
    # Holds the GIL in C: only a dump from the signal handler can show it.
    "gil": "import ctypes\nlibc = ctypes.PyDLL(None)\nwhile True:\n    libc.sleep(1000)\n",
}


def hanging_mounts_config(tmp, body, **group):
    bad = tmp / "reports" / "app.py"
    bad.parent.mkdir(exist_ok=True)
    bad.write_text(body + "\ndef application(environ, start_response):\n    pass\n")
    g = {"listen": "unix:" + str(tmp / "site.sock"), "threads": 2,
         "mounts": {"/a": {"app": app("hello"), "application-group": "%{RESOURCE}"},
                    "/reports": {"app": str(bad), "application-group": "%{RESOURCE}"},
                    "/z": {"app": app("hello"), "application-group": "%{RESOURCE}"}}}
    g.update(group)
    return make_config(tmp, {"site": g}), bad


@pytest.mark.parametrize("how", sorted(HANGS))
def test_an_import_that_hangs_is_named_with_its_stack(tmp, wsgid, how):
    """At startup-timeout the master names the app the worker was loading and has it dump its
    Python stacks to the log before it is killed: the lines said only 'not ready after 8 s
    (startup-timeout)', with neither mount nor file:line. The import waits without the GIL, or
    holds it in C."""
    config, bad = hanging_mounts_config(tmp, HANGS[how], **{"startup-timeout": 2})
    d = wsgid(config=config, wait=False)
    d.expect_failure = True
    loading = r"while loading app %s \(mount /reports\)" % re.escape(str(bad))
    d.expect_log(r"not ready after 2 s \(startup-timeout\) %s; its Python stacks follow, then it "
                 r"is killed$" % loading,
                 r"killed by signal 9 \(SIGKILL\) %s$" % loading,
                 r"group site: the application could not be loaded in time %s; stopping$"
                 % loading)
    assert d.wait_exit(20) != 0
    log = d.log()
    print(log)
    line = d.wait_log(r"startup-timeout.*its Python stacks follow")
    dump = "\n".join(x.split(" stderr: ", 1)[1] for x in log[log.index(line):].splitlines()
                     if " stderr: " in x) + "\n"
    assert re.search(r'^  File "%s", line \d+ in <module>$' % re.escape(str(bad)), dump,
                     re.M), dump
    assert re.search(r"killed by signal 9 \(SIGKILL\) %s$" % loading, log, re.M), log


CRASHES = {
    "exit": ("import os\nos._exit(7)\n", r"exited with status 7"),
    "segv": ("import ctypes\nctypes.string_at(0)\n",
             # ASan catches the SIGSEGV itself and exits
             r"(killed by signal 11 \(SIGSEGV\)|exited with status 1)"),
    "term": ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nimport time\n"
             "time.sleep(10)\n", r"killed by signal 15 \(SIGTERM\)"),
}


@pytest.mark.parametrize("how", sorted(CRASHES))
def test_a_worker_that_dies_in_an_import_names_the_app(tmp, wsgid, how):
    """A worker that exits or is killed while it imports a mount's app: the lines about it name
    that app and mount (they said 'killed by signal 11 (SIGSEGV)' and 'a worker exited before it
    was ready' only)."""
    body, died = CRASHES[how]
    config, bad = hanging_mounts_config(tmp, body)
    d = wsgid(config=config, wait=False)
    d.expect_failure = True
    loading = r"while loading app %s \(mount /reports\)" % re.escape(str(bad))
    d.expect_log(r"worker 1 \(pid \d+\) %s %s$" % (died, loading),
                 r"group site: a worker exited before it was ready %s; stopping$" % loading,
                 r"stderr: ")  # ASan's report of the SIGSEGV made on purpose
    assert d.wait_exit(20) != 0
    log = d.log()
    assert re.search(r"worker 1 \(pid \d+\) %s %s$" % (died, loading), log, re.M), log
    assert re.search(r"a worker exited before it was ready %s; stopping$" % loading, log,
                     re.M), log


def test_request_timeout_dump_lists_each_thread_once(tmp, wsgid):
    """The stacks request-timeout writes to the log list each OS thread once, with its frames
    from the interpreter it runs in, whatever the number of interpreters: with 100 %{RESOURCE}
    mounts one timed-out request wrote 1009 lines, the main thread 247 times (helper-63)."""
    ops = app("ops")
    mounts = {"/m%d" % i: {"app": ops, "application-group": "%{RESOURCE}"} for i in range(30)}
    d = wsgid(config=make_config(tmp, {"site": {
        "listen": "unix:" + str(tmp / "site.sock"), "threads": 2, "request-timeout": 1,
        "shutdown-timeout": 1, "env": {"WSGID_E2E_DIR": str(tmp)}, "mounts": mounts}}))
    d.expect_log(r"\[req \d+-[12]\] ")
    (pid,) = d.workers()
    since = d.log_size()
    r = request(str(tmp / "site.sock"), "GET", "/m17/spin?t=5", timeout=15)
    assert r.status == 504, r
    line = d.wait_log(r"the Python stacks of the worker's threads follow; the one running it is "
                      r"Thread (0x[0-9a-f]{16})", since=since, timeout=10)
    ident = re.search(r"Thread (0x[0-9a-f]{16})", line).group(1)
    # The dump's lines reach the log through the master, which reads the worker's fd 2 in
    # order: a mark written there after the dump (written from the signal handler, before the
    # 504) comes after its last line. A fixed 1 s wait missed the end of the dump with the
    # master held up. They are taken from where the request began, not from the line above,
    # which comes through another pipe (the worker's log lines), maybe after them.
    assert request(str(tmp / "site.sock"), "GET", "/m17/fd2?text=end-of-dump",
                   timeout=15).status == 200
    d.wait_log(r"\(pid %d\) stderr: end-of-dump$" % pid, since=since, timeout=15)
    dump = [x.split(" stderr: ", 1)[1] for x in d.log()[since:].splitlines()
            if "(pid %d) stderr: " % pid in x]
    dump = dump[:dump.index("end-of-dump")]
    text = "\n".join(dump) + "\n"
    print(len(dump), "lines:\n" + text)
    idents = re.findall(r"^(?:Current )?[Tt]hread (0x[0-9a-f]+)", text, re.M)
    assert len(idents) == len(set(idents)), idents
    assert 3 <= len(idents) <= 6, idents  # 2 Python threads, the loop, helpers of their own
    m = re.search(r"^Thread %s \(most recent call first\):\n(  File .*\n)+" % ident, text, re.M)
    assert m and "ops.py" in m.group(0), text
    assert len(dump) < 60, len(dump)
