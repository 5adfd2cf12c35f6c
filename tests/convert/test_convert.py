"""`wsgid convert`: each realistic configuration in configs/ is served by its original server
(Apache httpd + mod_wsgi, Debian's libapache2-mod-wsgi-py3, or uWSGI with its python3 plugin),
converted, checked (`wsgid --check`, `nginx -t` on the server block in a minimal http {}), then
served by the converted wsgid behind nginx with the generated server block, and the same requests
must get the same status and the same body from both (apps/show.py prints what the app saw; the
pid is left out, and used to check which processes served).
"""
import grp
import http.client
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.apache import MODULES
from helpers.daemon import WSGID_BIN
from helpers.nginx import NGINX_BIN, uwsgi_location
from helpers.procs import cmdline, free_port, pgroup_members, wait_for

HERE = Path(__file__).resolve().parent
UWSGI_BIN = os.environ.get("UWSGI_BIN", "/usr/bin/uwsgi")
APACHE_MODULES = ("wsgi", "alias", "env", "mime")
AUTH = {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}


def layout(tmp):
    """The apps, lib/ and static/ under TMP/srv, readable by Apache's www-data, wsgid's nobody."""
    os.chmod(tmp, 0o711)
    for d in ("apps", "lib", "static"):
        shutil.copytree(HERE / d, tmp / "srv" / d)
    (tmp / "orig").mkdir()
    (tmp / "orig" / "conf.d").mkdir()


def render(tmp, name, port=0):
    """configs/NAME with the test's paths: @ROOT@ (where srv/ is), @RUN@ (uWSGI's socket
    directory) and @PORT@ (Apache's virtual host)."""
    text = (HERE / "configs" / name).read_text()
    path = tmp / "orig" / name
    path.write_text(text.replace("@ROOT@", str(tmp)).replace("@RUN@", str(tmp / "orig"))
                    .replace("@PORT@", str(port)))
    return path


def convert(tmp, src, *args):
    """Runs wsgid convert, then wsgid --check and nginx -t on its output; returns the notes (its
    stderr), wsgid.yaml and nginx.conf."""
    r = subprocess.run([str(WSGID_BIN), "convert", *args, str(src), "-o", str(tmp),
                        "--run-dir", str(tmp)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    yaml = (tmp / "wsgid.yaml").read_text()
    conf = (tmp / "nginx.conf").read_text()
    c = subprocess.run([str(WSGID_BIN), "--check", "-c", str(tmp / "wsgid.yaml")],
                       capture_output=True, text=True, timeout=10)
    assert c.returncode == 0, c.stderr + yaml
    t = tmp / "nginx-t"
    t.mkdir()
    (t / "nginx.conf").write_text("pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\n"
                                  "http {\n    access_log off;\n    include %s/nginx.conf;\n}\n"
                                  % (t, t, tmp))
    n = subprocess.run([NGINX_BIN, "-t", "-p", str(t) + "/", "-c", str(t / "nginx.conf"),
                        "-e", str(t / "error.log")], capture_output=True, text=True, timeout=10)
    assert n.returncode == 0, n.stderr + conf
    return r.stderr, yaml, conf


def serve_converted(wsgid, nginx, yaml, conf):
    """The converted deployment: wsgid on wsgid.yaml, nginx with the server block (its listen
    line moved to a free port)."""
    d = wsgid(config=yaml)
    port = free_port()
    lines = [("    listen 127.0.0.1:%d;" % port if line.startswith("    listen ") else line)
             for line in conf.splitlines()]
    n = nginx("location / { return 404; }", http_extra="\n".join(lines))
    wait_for(lambda: _listening(port), 10, what="the converted server block to listen")
    return n, ("127.0.0.1", port)


def _listening(port):
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
        return True
    except OSError:
        return False


def fetch(addr, method, path, body=None, headers=None):
    c = http.client.HTTPConnection(*addr, timeout=10)
    try:
        c.request(method, path, body=body, headers=dict(headers or {}))
        r = c.getresponse()
        return r.status, r.read()
    except (ConnectionError, http.client.HTTPException) as e:
        return None, repr(e).encode()     # a server that closes on a refused upload
    finally:
        c.close()


def parse(body):
    return dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)


def compare(reqs, orig, conv, skip=()):
    """Same status everywhere; the same body for 2xx answers (the app's lines without pid and the
    keys in skip), byte for byte for static files."""
    for req, (s1, b1), (s2, b2) in zip(reqs, orig, conv):
        what = "%s %s" % (req[0], req[1])
        assert s1 == s2, "%s: status %s (original) != %s (converted)\n%s\n%s" % (
            what, s1, s2, b1[:300], b2[:300])
        if s1 != 200:
            continue
        if req[1].startswith("/static/"):
            assert b1 == b2, what
            continue
        d1, d2 = parse(b1), parse(b2)
        if d1.get("cwd", "").endswith("/apache"):
            # A daemon group without home= keeps Apache's working directory (the test's
            # ServerRoot; "/" under systemd), and a wsgid group without chdir wsgid's.
            skip = tuple(skip) + ("cwd",)
        for k in ("pid",) + tuple(skip):
            d1.pop(k, None)
            d2.pop(k, None)
        assert d1 == d2, "%s:\noriginal:  %s\nconverted: %s" % (what, d1, d2)


def start_apache(apache, tmp, conf, port):
    if not os.path.exists(os.path.join(MODULES, "mod_wsgi.so")):
        pytest.skip("mod_wsgi not installed (libapache2-mod-wsgi-py3): ./dev deps")
    a = apache("Listen 127.0.0.1:%d\nTypesConfig /etc/mime.types\nWSGISocketPrefix %s/apache/wsgi\n"
               "Include %s\n"
               % (port, tmp, conf), modules=APACHE_MODULES)
    wait_for(lambda: _listening(port), 10, what="Apache's virtual host")
    return a


# --- a Debian default-style vhost: two daemon groups, two script aliases ----------------------

VHOST_REQUESTS = [
    ("GET", "/", None, {}),
    ("GET", "/hello/world?x=1&y=%20z", None, AUTH),      # site: Authorization not passed
    ("GET", "/api", None, {}),
    ("GET", "/api/items/42?q=1", None, AUTH),          # api: WSGIPassAuthorization On
    ("GET", "/apix", None, {}),                        # not under /api: the site
    ("POST", "/api/items", b"x" * 10000, {"Content-Type": "application/octet-stream"}),
    ("POST", "/form", b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("POST", "/api/upload", b"y" * (1048576 + 1), {}),  # LimitRequestBody 1048576: 413
    ("GET", "/static/style.css", None, {}),
    ("GET", "/static/img/logo.txt", None, {}),
    ("GET", "/static/missing.txt", None, {}),
]


def test_debian_vhost(tmp, apache, wsgid, nginx, monkeypatch):
    monkeypatch.setenv("LANG", "C")       # Apache's (helpers/apache.py), for the groups without lang=
    layout(tmp)
    (tmp / "orig" / "conf.d" / "region.conf").write_text(
        (HERE / "configs" / "conf.d" / "region.conf").read_text())
    port = free_port()
    src = render(tmp, "debian-vhost.conf", port)
    a = start_apache(apache, tmp, src, port)
    orig = [fetch(("127.0.0.1", port), *r) for r in VHOST_REQUESTS]
    assert [s for s, _ in orig] == [200] * 7 + [413, 200, 200, 404], orig
    assert parse(orig[3][1])["authorization"] == AUTH["Authorization"]

    notes, yaml, conf = convert(tmp, src)
    assert "debian-vhost.conf:8: WSGIDaemonProcess site stack-size=524288: not converted" in notes
    assert "ServerAdmin" in notes and "ErrorLog" in notes and "CustomLog" in notes
    n, addr = serve_converted(wsgid, nginx, yaml, conf)
    n.expect_log(r"client intended to send too large body", r'open\(\) ".*/missing.txt" failed')
    conv = [fetch(addr, *r) for r in VHOST_REQUESTS]
    compare(VHOST_REQUESTS, orig, conv)
    a.stop()


# --- a <Location>-scoped process group -------------------------------------------------------

LOCATION_REQUESTS = [
    ("GET", "/", None, AUTH),
    ("GET", "/public/page", None, AUTH),
    ("GET", "/admin", None, {}),
    ("GET", "/admin/users?id=3", None, AUTH),
    ("POST", "/admin/save", b"name=x" * 100, {"Content-Type": "text/plain"}),
    ("GET", "/administrator", None, {}),
]


def test_location_group(tmp, apache, wsgid, nginx, monkeypatch):
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    port = free_port()
    src = render(tmp, "location-group.conf", port)
    a = start_apache(apache, tmp, src, port)
    orig = [fetch(("127.0.0.1", port), *r) for r in LOCATION_REQUESTS]
    assert [s for s, _ in orig] == [200] * 6, orig
    admin = parse(orig[3][1])
    assert admin["group"] == "admin" and admin["area"] == "admin", admin
    assert cmdline(int(admin["pid"])).startswith(b"wsgi-admin"), cmdline(int(admin["pid"]))

    notes, yaml, conf = convert(tmp, src)
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in LOCATION_REQUESTS]
    compare(LOCATION_REQUESTS, orig, conv)
    # The same placement, seen from the processes: /admin in the display name of group admin.
    pid = int(parse(conv[3][1])["pid"])
    assert cmdline(pid).startswith(b"wsgi-admin"), cmdline(pid)
    assert cmdline(int(parse(conv[0][1])["pid"])).startswith(b"(wsgi:main)")
    a.stop()


# --- a uWSGI emperor vassal ------------------------------------------------------------------

VASSAL_REQUESTS = [
    ("GET", "/", None, {}),
    ("GET", "/a/b?c=d", None, AUTH),
    ("GET", "/legacy", None, {}),
    ("GET", "/legacy/x/y", None, {}),
    ("POST", "/upload", b"z" * 30000, {"Content-Type": "application/octet-stream"}),
]


def serve_uwsgi(tmp, nginx, src, sock, reqs):
    """Serves the requests with uWSGI on the ini SRC behind nginx (uwsgi_pass to SOCK), then
    stops it and removes the sockets it left (the converted group binds the same paths)."""
    if not os.access(UWSGI_BIN, os.X_OK):
        pytest.skip("uwsgi not installed (%s): ./dev deps" % UWSGI_BIN)
    log = open(tmp / "uwsgi.log", "wb")
    u = subprocess.Popen([UWSGI_BIN, "--ini", str(src)], stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(src.parent),
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"})
    try:
        wait_for(lambda: sock.exists() or u.poll() is not None, 15, what="uwsgi's socket")
        assert u.poll() is None, (tmp / "uwsgi.log").read_text()
        n1 = nginx(uwsgi_location(sock))
        # The socket is bound before the app is loaded: 502 until then.
        wait_for(lambda: fetch(n1.addr, "GET", "/")[0] != 502, 15, what="uwsgi's app")
        orig = [fetch(n1.addr, *r) for r in reqs]
        n1.stop()       # the converted one's nginx uses the same directory (and pid file)
    finally:
        u.send_signal(signal.SIGTERM)     # die-on-term
        try:
            u.wait(5)
        except subprocess.TimeoutExpired:
            # uWSGI 2.0.21 can hang at exit with sub-interpreters ("Fatal Python error:
            # PyInterpreterState_Delete: remaining subinterpreters" in its log).
            os.killpg(u.pid, signal.SIGKILL)
            u.wait(5)
        for p in pgroup_members(u.pid):
            os.kill(p, signal.SIGKILL)
        for p in src.parent.glob("*.sock"):
            p.unlink()
    assert [s for s, _ in orig] == [200] * len(reqs), (orig, (tmp / "uwsgi.log").read_text())
    return orig


def test_uwsgi_vassal(tmp, wsgid, nginx, monkeypatch):
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    src = render(tmp, "blog.ini")
    orig = serve_uwsgi(tmp, nginx, src, tmp / "orig" / "blog.sock", VASSAL_REQUESTS)
    assert parse(orig[2][1])["script_name"] == "/legacy"

    notes, yaml, conf = convert(tmp, src)
    assert "stats = " in notes
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in VASSAL_REQUESTS]
    # uWSGI names no process group or interpreter in the environ.
    compare(VASSAL_REQUESTS, orig, conv, skip=("group", "main_interpreter"))


MOUNT_REQUESTS = [
    ("GET", "/", None, {}),
    ("GET", "/api/items?x=1", None, {}),
    ("GET", "/apix", None, {}),
]


@pytest.mark.parametrize("manage", ["", "manage-script-name = true\n"])
def test_uwsgi_relative_scripts_and_mounts(tmp, wsgid, nginx, monkeypatch, manage):
    """helper-70's 2 and 3. A wsgi-file relative to chdir became the module "site.wsgi" (wsgid
    could not load it), a relative mount stayed relative to wsgid.yaml's directory (--check
    refused it); and without manage-script-name, where uWSGI picks a mount by the SCRIPT_NAME
    nginx does not send and serves /api/items with the wsgi-file's app (SCRIPT_NAME empty), the
    converted group routed /api to the mount. Both against uWSGI itself."""
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    src = tmp / "orig" / "rel.ini"
    src.write_text("[uwsgi]\nplugins = python3\nchdir = %s/srv/apps\nwsgi-file = site.wsgi\n"
                   "mount = /api=api/api.wsgi\n%ssocket = %s/orig/app.sock\nmaster\n"
                   % (tmp, manage, tmp))
    orig = serve_uwsgi(tmp, nginx, src, tmp / "orig" / "app.sock", MOUNT_REQUESTS)
    api = parse(orig[1][1])
    assert (api["app"], api["script_name"]) == (("api", "/api") if manage else ("site", "")), api

    notes, yaml, conf = convert(tmp, src)
    assert 'app: "%s/srv/apps/site.wsgi"' % tmp in yaml, yaml
    if manage:
        assert '"/api": {app: "%s/srv/apps/api/api.wsgi"' % tmp in yaml, yaml
    else:
        assert "rel.ini:5: mount = /api=api/api.wsgi: not converted: without " \
            "manage-script-name" in notes, notes
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in MOUNT_REQUESTS]
    compare(MOUNT_REQUESTS, orig, conv, skip=("group", "main_interpreter"))


# --- mod_wsgi's quoted option values, and a note of a long path --------------------------------

def test_quoted_option_values(tmp):
    """mod_wsgi reads an option's value with ap_getword_conf, so `name='value'` and
    `name="value"` are quoted values (mod_wsgi-express writes its options that way). The
    converter took the quotes into the values: a python-home of "/opt/venv" with its quotes, a
    home cut at its space, and an application group "'%{GLOBAL}'" (a sub-interpreter instead of
    the main one), without a note."""
    layout(tmp)
    root = tmp / "srv"
    (tmp / "my app").mkdir()
    src = tmp / "orig" / "quoted.conf"
    src.write_text(
        "WSGIDaemonProcess site display-name='my site' home='%s/my app' processes=2 threads=5 \\\n"
        "    python-path='%s/lib:%s/apps' lang=\"en_US.UTF-8\"\n"
        "WSGIScriptAlias / %s/apps/site.wsgi process-group='site' application-group='%%{GLOBAL}'\n"
        % (tmp, root, root, root))
    notes, yaml, _ = convert(tmp, src)
    assert "\"'" not in yaml and "'\"" not in yaml and '\\"' not in yaml, yaml
    assert 'display-name: "my site"' in yaml, yaml
    assert 'chdir: "%s/my app"' % tmp in yaml, yaml
    assert 'python-path: ["%s/my app", "%s/lib", "%s/apps"]' % (tmp, root, root) in yaml, yaml
    assert '"en_US.UTF-8"' in yaml, yaml
    assert 'application-group: "%{GLOBAL}"' in yaml, yaml
    assert "processes: 2" in yaml and "threads: 5" in yaml, yaml


def test_a_note_with_a_long_path(tmp):
    """A note's "FILE:LINE: " prefix that fills the note's buffer (a 1 KiB path): the note is cut,
    not written past the buffer (a stack overflow that ASan showed)."""
    deep = tmp
    for i in range(12):
        deep = deep / ("d" * 90)
    deep.mkdir(parents=True)
    src = deep / "long.conf"
    src.write_text("WSGIDaemonProcess site processes=2 no-such-option=1\n"
                   "WSGIScriptAlias / %s/site.wsgi process-group=site\n" % tmp)
    (tmp / "site.wsgi").write_text("def application(e, s):\n    return []\n")
    (tmp / "out").mkdir()
    r = subprocess.run([str(WSGID_BIN), "convert", str(src), "-o", str(tmp / "out"),
                        "--run-dir", str(tmp)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert str(src)[:900] in r.stderr, r.stderr[:300]


def test_home_is_on_the_path_and_an_alias_to_a_directory_not_here(tmp):
    """mod_wsgi's home= is the working directory and sys.path[0]: a converted (script) app's
    chdir is not on wsgid's path, so home goes first in python-path (an `import helper` from
    home failed after conversion). An Alias whose directory is not on the converting machine but
    ends with '/' is a directory (it became `location = /static`, its files sent to the app)."""
    layout(tmp)
    root = tmp / "srv"
    src = tmp / "orig" / "home.conf"
    src.write_text(
        "WSGIDaemonProcess site python-path=%s/lib home=%s/apps\n"
        "WSGIScriptAlias / %s/apps/site.wsgi process-group=site\n"
        "Alias /static /srv/not-here/static/\n"
        "Alias /robots.txt /srv/not-here/robots.txt\n" % (root, root, root))
    notes, yaml, conf = convert(tmp, src)
    assert 'python-path: ["%s/apps", "%s/lib"]' % (root, root) in yaml, yaml
    assert "location /static/ {" in conf and "alias \"/srv/not-here/static/\";" in conf, conf
    assert "location = /static" not in conf, conf
    assert "/srv/not-here/robots.txt is not on this machine: taken as a file" in notes, notes


def test_a_setenv_value_with_a_dollar_is_noted(tmp):
    """SetEnv goes to nginx's uwsgi_param, where '$' starts a variable and has no escape: a
    Django secret key "k7$host!x" reached the app as "k7127.0.0.1!x", with no note (an unknown
    name after '$' made nginx -t fail instead). Such a value is left out, with a note."""
    layout(tmp)
    root = tmp / "srv"
    src = tmp / "orig" / "dollar.conf"
    src.write_text(
        "WSGIDaemonProcess site\n"
        "WSGIScriptAlias / %s/apps/site.wsgi process-group=site\n"
        "SetEnv SECRET \"k7$host!x\"\n"
        "SetEnv PLAIN plain\n" % root)
    notes, yaml, conf = convert(tmp, src)
    assert "SetEnv SECRET: not converted: its value has a '$'" in notes, notes
    assert "k7" not in conf and "PLAIN" in conf, conf


# --- what Apache reads, in the order it reads it ---------------------------------------------

ORDER_CONF = """# mod_wsgi takes the first WSGIScriptAlias that matches, <IfModule> and <IfDefine> leave
# out what does not hold, Include reads a whole directory, and a second virtual host's
# settings stay its own.
Define STAGE
<VirtualHost *:@PORT@>
    ServerName www.example.com
    WSGIDaemonProcess site threads=2 python-path=@ROOT@/srv/lib
    WSGIDaemonProcess api threads=2
    WSGIProcessGroup site
    WSGIScriptAlias / @ROOT@/srv/apps/site.wsgi
    WSGIScriptAlias /api @ROOT@/srv/apps/api/api.wsgi process-group=api
    <IfModule !mod_wsgi.c>
        SetEnv AREA without-mod_wsgi
    </IfModule>
    <IfDefine !STAGE>
        SetEnv SITE_ENV production
    </IfDefine>
    <IfDefine STAGE>
        SetEnv SITE_ENV staging
    </IfDefine>
    Include @ROOT@/orig/site.d
    <Directory @ROOT@/srv/apps>
        Require all granted
    </Directory>
</VirtualHost>
<VirtualHost *:@PORT@>
    ServerName other.example.com
    WSGIProcessGroup nosuch
    SetEnv AREA other-host
</VirtualHost>
"""

ORDER_REQUESTS = [
    ("GET", "/", None, {}),
    ("GET", "/api", None, {}),
    ("GET", "/api/items?x=1", None, {}),
    ("GET", "/apix", None, {}),
]


def test_apache_reads_in_order(tmp, apache, wsgid, nginx, monkeypatch):
    """Four faults, each silent, against Apache itself: (1) "WSGIScriptAlias /" written before
    "WSGIScriptAlias /api" takes /api too (mod_wsgi's first match), where nginx's longest prefix
    sent it to the api app; (2) <IfModule !mod_wsgi.c> and <IfDefine> contents were converted
    whatever they said; (3) an Include of a directory was dropped; (4) the second virtual
    host's WSGIProcessGroup and SetEnv reached the first's aliases."""
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    (tmp / "orig" / "site.d").mkdir()
    (tmp / "orig" / "site.d" / "region.conf").write_text('SetEnv SITE_REGION "from a directory"\n')
    port = free_port()
    src = tmp / "orig" / "order.conf"
    src.write_text(ORDER_CONF.replace("@ROOT@", str(tmp)).replace("@PORT@", str(port)))
    a = start_apache(apache, tmp, src, port)
    orig = [fetch(("127.0.0.1", port), *r) for r in ORDER_REQUESTS]
    assert [s for s, _ in orig] == [200] * 4, orig
    seen = parse(orig[2][1])
    assert (seen["app"], seen["site_env"], seen["site_region"], seen["area"]) == \
        ("site", "staging", "from a directory", "None"), seen

    notes, yaml, conf = convert(tmp, src)
    assert "WSGIScriptAlias /api: not converted: WSGIScriptAlias / (%s:10) comes first" % src \
        in notes, notes
    assert "<IfModule !mod_wsgi.c>: not converted" in notes, notes
    assert "<IfDefine !STAGE>: not converted" in notes, notes
    assert "WSGIDaemonProcess api: not converted: no WSGIScriptAlias runs in it" in notes, notes
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in ORDER_REQUESTS]
    compare(ORDER_REQUESTS, orig, conv)
    a.stop()


VHOSTS_CONF = """# Two name-based virtual hosts on one address, each with its group; the server's alias serves
# in both, with each host's group.
WSGIDaemonProcess shop threads=2
WSGIDaemonProcess blog threads=2
ServerName main.example.com
WSGIScriptAlias /common @ROOT@/srv/apps/api/api.wsgi
<VirtualHost *:@PORT@>
    ServerName http://shop.example.com:@PORT@
    ServerAlias www.shop.example.com *.shop.example.org
    WSGIProcessGroup shop
    WSGIScriptAlias / @ROOT@/srv/apps/site.wsgi
</VirtualHost>
<VirtualHost *:@PORT@>
    ServerName blog.example.com
    WSGIProcessGroup blog
    WSGIScriptAlias / @ROOT@/srv/apps/site.wsgi
    SetEnv AREA blog
</VirtualHost>
<Directory @ROOT@/srv/apps>
    Require all granted
</Directory>
"""

VHOSTS_REQUESTS = [
    ("GET", "/", None, {"Host": "shop.example.com"}),
    ("GET", "/x/y", None, {"Host": "www.shop.example.com"}),
    ("GET", "/z", None, {"Host": "a.shop.example.org"}),
    ("GET", "/common/c", None, {"Host": "shop.example.com"}),
    ("GET", "/", None, {"Host": "blog.example.com"}),
    ("GET", "/common/c", None, {"Host": "blog.example.com"}),
    ("GET", "/", None, {"Host": "unknown.example.com"}),      # the first virtual host's
]


def test_two_virtual_hosts(tmp, apache, wsgid, nginx, monkeypatch):
    """helper-70's 4 and 7. Two <VirtualHost>s with a WSGIScriptAlias / each, to groups shop and
    blog: the one server block written sent shop.example.com's requests to blog's group. A
    ServerName with a scheme and port became `server_name http://shop.example.com:PORT;` and the
    ServerAlias names were dropped. Now a server block per virtual host, checked against Apache."""
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    port = free_port()
    src = tmp / "orig" / "vhosts.conf"
    src.write_text(VHOSTS_CONF.replace("@ROOT@", str(tmp)).replace("@PORT@", str(port)))
    a = start_apache(apache, tmp, src, port)
    orig = [fetch(("127.0.0.1", port), *r) for r in VHOSTS_REQUESTS]
    assert [s for s, _ in orig] == [200] * len(VHOSTS_REQUESTS), orig
    assert [parse(b)["group"] for _, b in orig] == \
        ["shop", "shop", "shop", "shop", "blog", "blog", "shop"], orig
    notes, yaml, conf = convert(tmp, src)
    assert conf.count("server {") == 2, conf
    assert "server_name shop.example.com www.shop.example.com *.shop.example.org;" in conf, conf
    assert "server_name blog.example.com;" in conf, conf
    assert "virtual host" not in notes, notes
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in VHOSTS_REQUESTS]
    compare(VHOSTS_REQUESTS, orig, conv)
    a.stop()


def test_a_relative_include_in_an_included_file(tmp):
    """helper-70's 13. Debian's layout: apache2.conf has no ServerRoot (apache2's -d is its
    directory), sites-enabled/site.conf says `Include conf-available/wsgi.conf`, relative to
    ServerRoot. The converter looked for it beside site.conf and failed ("no such file")."""
    layout(tmp)
    etc = tmp / "orig" / "apache2"
    (etc / "sites-enabled").mkdir(parents=True)
    (etc / "conf-available").mkdir()
    (etc / "apache2.conf").write_text("IncludeOptional sites-enabled/*.conf\n")
    (etc / "sites-enabled" / "site.conf").write_text(
        "<VirtualHost *:80>\n    Include conf-available/wsgi.conf\n</VirtualHost>\n")
    (etc / "conf-available" / "wsgi.conf").write_text(
        "WSGIDaemonProcess site\nWSGIScriptAlias / %s/srv/apps/site.wsgi process-group=site\n"
        % tmp)
    notes, yaml, conf = convert(tmp, etc / "apache2.conf")
    assert '"site":\n    app: "%s/srv/apps/site.wsgi"' % tmp in yaml, yaml


SLASH_GLOBAL_CONF = """WSGIDaemonProcess site threads=2
WSGIProcessGroup %{GLOBAL}
WSGIScriptAlias /app/ @ROOT@/srv/apps/site.wsgi/ process-group=site
WSGIScriptAlias /emb @ROOT@/srv/apps/api/api.wsgi
<Directory @ROOT@/srv/apps>
    Require all granted
</Directory>
"""

SLASH_GLOBAL_REQUESTS = [
    ("GET", "/app/x/y?q=1", None, {}),
    ("GET", "/app/", None, {}),
    ("GET", "/emb", None, {}),
    ("GET", "/emb/z", None, {}),
]


def test_a_script_path_with_a_slash_and_the_global_process_group(tmp, apache, wsgid, nginx,
                                                                 monkeypatch):
    """helper-70's 8 and 9. WSGIProcessGroup %{GLOBAL} (embedded mode, said explicitly) dropped
    the alias ("process group %{GLOBAL} has no WSGIDaemonProcess"; no group, and --check
    refused the output); WSGIScriptAlias /app/ .../site.wsgi/ was refused as "a directory of
    scripts", where mod_wsgi serves /app/x/y with SCRIPT_NAME /app, PATH_INFO /x/y."""
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    port = free_port()
    src = tmp / "orig" / "slash.conf"
    src.write_text(SLASH_GLOBAL_CONF.replace("@ROOT@", str(tmp)))
    a = start_apache(apache, tmp, src, port)
    # Apache's child with the embedded interpreter outlives its stop's grace period
    a.expect_log(r"AH00046: child process \d+ still did not exit, sending a SIGKILL")
    orig = [fetch(("127.0.0.1", port), *r) for r in SLASH_GLOBAL_REQUESTS]
    assert [s for s, _ in orig] == [200] * 4, orig
    assert (parse(orig[0][1])["script_name"], parse(orig[0][1])["path_info"]) == ("/app", "/x/y")
    notes, yaml, conf = convert(tmp, src)
    assert "WSGIScriptAlias /emb: WSGIProcessGroup %{GLOBAL}: Apache ran it in its own " \
        "processes (embedded mode)" in notes, notes
    assert "directory of scripts" not in notes, notes
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in SLASH_GLOBAL_REQUESTS]
    # mod_wsgi's embedded mode names the process group "" (wsgid's is "embedded")
    compare(SLASH_GLOBAL_REQUESTS, orig, conv, skip=("group",))
    assert parse(conv[3][1])["group"] == "embedded", conv[3]
    a.stop()


FILES_CONF = """WSGIDaemonProcess main threads=2 python-path=@ROOT@/srv/lib
WSGIDaemonProcess admin threads=2
WSGIDaemonProcess wild threads=2
WSGIProcessGroup main
WSGIScriptAlias /admin @ROOT@/srv/apps/other.wsgi
WSGIScriptAlias /w @ROOT@/srv/wild1/w.wsgi
WSGIScriptAlias / @ROOT@/srv/apps/site.wsgi
<Directory @ROOT@/srv/apps>
    Require all granted
    <Files other.wsgi>
        WSGIProcessGroup admin
    </Files>
</Directory>
<Directory @ROOT@/srv/wil*>
    Require all granted
    WSGIProcessGroup wild
</Directory>
"""

FILES_REQUESTS = [
    ("GET", "/", None, {}),
    ("GET", "/admin/x", None, {}),
    ("GET", "/w/q", None, {}),
]

SCRIPT = ("import os, sys\nsys.path.insert(0, %r)\nimport show\n"
          "application = show.make(%r)\n")


def test_files_sections_and_directory_wildcards(tmp, apache, wsgid, nginx, monkeypatch):
    """helper-70's 5 and 6. A <Files other.wsgi> inside a <Directory> applied to the whole
    directory: its WSGIProcessGroup admin took / (site.wsgi) from the server's main. A
    <Directory /srv/wil*> was compared as a string and applied to nothing (its script ran in the
    server's group). Both against Apache."""
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    apps = tmp / "srv" / "apps"
    (apps / "other.wsgi").write_text(SCRIPT % (str(apps), "other"))
    (tmp / "srv" / "wild1").mkdir()
    (tmp / "srv" / "wild1" / "w.wsgi").write_text(SCRIPT % (str(apps), "w"))
    port = free_port()
    src = tmp / "orig" / "files.conf"
    src.write_text(FILES_CONF.replace("@ROOT@", str(tmp)))
    a = start_apache(apache, tmp, src, port)
    orig = [fetch(("127.0.0.1", port), *r) for r in FILES_REQUESTS]
    assert [s for s, _ in orig] == [200] * 3, orig
    assert [(parse(b)["app"], parse(b)["group"]) for _, b in orig] == \
        [("site", "main"), ("other", "admin"), ("w", "wild")], orig
    notes, yaml, conf = convert(tmp, src)
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in FILES_REQUESTS]
    compare(FILES_REQUESTS, orig, conv)
    a.stop()


SPACE_CONF = """WSGIDaemonProcess site threads=2 python-path=@ROOT@/srv/lib
WSGIScriptAlias "/my app" @ROOT@/srv/apps/site.wsgi process-group=site
Alias "/my files/" @ROOT@/srv/static/
SetEnv AREA
<Directory @ROOT@/srv>
    Require all granted
</Directory>
"""

SPACE_REQUESTS = [
    ("GET", "/my%20app", None, {}),
    ("GET", "/my%20app/x%20y", None, {}),
    ("GET", "/my%20files/style.css", None, {}),
]


def test_a_url_with_a_space_and_an_empty_setenv(tmp, apache, wsgid, nginx, monkeypatch):
    """helper-70's 16 and 17. WSGIScriptAlias "/my app" and Alias "/my files/" gave
    `location = /my app {`, which nginx -t refuses; SetEnv AREA with no value, which Apache gives
    the app as AREA='', became `uwsgi_param AREA "" if_not_empty;` (the form that hides
    Authorization), so the app saw no AREA. Both against Apache."""
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    port = free_port()
    src = tmp / "orig" / "space.conf"
    src.write_text(SPACE_CONF.replace("@ROOT@", str(tmp)))
    a = start_apache(apache, tmp, src, port)
    orig = [fetch(("127.0.0.1", port), *r) for r in SPACE_REQUESTS]
    assert [s for s, _ in orig] == [200] * 3, orig
    assert parse(orig[1][1])["area"] == "", orig[1]
    notes, yaml, conf = convert(tmp, src)
    assert 'location = "/my app" {' in conf and 'location "/my files/" {' in conf, conf
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in SPACE_REQUESTS]
    compare(SPACE_REQUESTS, orig, conv)
    assert orig[2][1] == conv[2][1] == (HERE / "static" / "style.css").read_bytes()
    a.stop()


def test_addresses_names_and_ids(tmp):
    """A loopback-only Apache (Listen 127.0.0.1:8000, <VirtualHost *:8000>) became nginx's
    `listen 8000` (every interface); mod_wsgi-express's group name "localhost:8000", a
    user=#0 and a path not in UTF-8 gave a wsgid.yaml that wsgid refuses; a WSGICallableObject in
    a <Location> of the alias's own group was dropped, and a trailing-slash <Location> gave
    nginx a duplicate location."""
    layout(tmp)
    root = tmp / "srv"
    src = tmp / "orig" / "express.conf"
    src.write_bytes((
        "Listen 127.0.0.1:8000\n"
        "<VirtualHost *:8000>\n"
        "WSGIDaemonProcess localhost:8000 user=#0 group=#0 threads=2\n"
        "WSGIProcessGroup localhost:8000\n"
        "WSGIScriptAlias /app %s/apps/site.wsgi\n"
        "<Location /app/>\n"
        "    SetEnv AREA app\n"
        "</Location>\n"
        "<Location /app/special>\n"
        "    WSGICallableObject special\n"
        "</Location>\n"
        "</VirtualHost>\n" % root).encode() + b"Alias /caf\xe9 /srv/caf\xe9/\n")
    notes, yaml, conf = convert(tmp, src)
    assert "    listen 127.0.0.1:8000;\n" in conf, conf
    assert '"localhost_8000":' in yaml and "group localhost:8000: named localhost_8000" in notes
    assert 'user: "root"' in yaml and 'group: "root"' in yaml, yaml
    assert "Alias /caf\\xe9: not converted: not UTF-8" in notes, notes
    assert "WSGICallableObject special under /app/special: not converted" in notes, notes
    assert conf.count("location /app/ {") == 1, conf


def test_uwsgi_sockets_and_defaults(tmp):
    """uWSGI: every socket is kept (only the last was), processes = 1 leaves wsgi.multiprocess
    False (the key made it True), no harakiri and no limit-post mean no request timeout and no
    body limit (wsgid's 60 s and 10M applied), and $(VAR) is the environment's (it stayed
    literal), with a note."""
    layout(tmp)
    src = tmp / "orig" / "multi.ini"
    src.write_text("[uwsgi]\n"
                   "socket = %s/orig/multi.sock\n"
                   "http-socket = 127.0.0.1:9090\n"
                   "processes = 1\n"
                   "wsgi-file = $(WSGID_TEST_APPS)/site.wsgi\n" % tmp)
    r = subprocess.run([str(WSGID_BIN), "convert", str(src), "-o", str(tmp), "--run-dir",
                        str(tmp)], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, WSGID_TEST_APPS=str(tmp / "srv" / "apps")))
    assert r.returncode == 0, r.stderr
    yaml = (tmp / "wsgid.yaml").read_text()
    assert 'listen: ["unix:%s/orig/multi.sock", "127.0.0.1:9090"]' % tmp in yaml, yaml
    assert "processes" not in yaml, yaml
    assert "request-timeout: 0\n" in yaml and "limit-request-body: 0\n" in yaml, yaml
    assert 'app: "%s/srv/apps/site.wsgi"' % tmp in yaml, yaml
    assert "$(WSGID_TEST_APPS): expanded from wsgid convert's environment" in r.stderr, r.stderr
    c = subprocess.run([str(WSGID_BIN), "--check", "-c", str(tmp / "wsgid.yaml")],
                       capture_output=True, text=True, timeout=10)
    assert c.returncode == 0, c.stderr
    nginx = (tmp / "nginx.conf").read_text()
    assert "uwsgi_pass unix:%s/orig/multi.sock;" % tmp in nginx, nginx


def _connect_as(uid, gid, path):
    """Connects to the unix socket PATH as UID:GID (nginx's workers): 'ok' or the error."""
    code = ("import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(%r)\n"
            "    print('ok')\nexcept OSError as e:\n    print(e)\n" % str(path))

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return subprocess.run([sys.executable, "-c", code], preexec_fn=drop, capture_output=True,
                          text=True, timeout=10).stdout.strip()


@pytest.mark.parametrize("ids", ["www-data", "33"])
def test_uwsgi_uid_owns_the_socket(tmp, wsgid, ids):
    """helper-70's 1 and 15. uWSGI drops its privileges before it binds: with uid = www-data,
    gid = www-data and chmod-socket = 660 its socket is www-data's, which nginx's workers
    (www-data) reach; the converted group's was root:root 0660 (every request 502). And uid = 33
    was copied as the name "33", which wsgid refuses."""
    if os.geteuid() != 0:
        pytest.skip("binds a socket for another user: run as root")
    www = pwd.getpwnam("www-data")
    layout(tmp)
    src = tmp / "orig" / "owner.ini"
    src.write_text("[uwsgi]\nwsgi-file = %s/srv/apps/site.wsgi\nsocket = %s/orig/app.sock\n"
                   "chmod-socket = 660\nuid = %s\ngid = %s\n"
                   % (tmp, tmp, ids if ids != "33" else www.pw_uid,
                      ids if ids != "33" else www.pw_gid))
    notes, yaml, conf = convert(tmp, src)
    assert 'user: "www-data"' in yaml and 'socket-user: "www-data"' in yaml, yaml
    assert 'socket-group: "%s"' % grp.getgrgid(www.pw_gid).gr_name in yaml, yaml
    wsgid(config=yaml)
    st = os.stat(tmp / "orig" / "app.sock")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (www.pw_uid, www.pw_gid, 0o660)
    assert _connect_as(www.pw_uid, www.pw_gid, tmp / "orig" / "app.sock") == "ok"


@pytest.mark.parametrize("value,sub", [("false", True), ("off", True), ("0", True),
                                       ("true", False), ("yes", False)])
def test_uwsgi_single_interpreter_false(tmp, value, sub):
    """helper-70's 12: single-interpreter = false was read as true (the option's presence), and
    the mounts lost the sub-interpreter each has in uWSGI; false, off, no and 0 are uWSGI's off."""
    layout(tmp)
    src = tmp / "orig" / "bools.ini"
    src.write_text("[uwsgi]\nwsgi-file = %s/srv/apps/site.wsgi\n"
                   "mount = /api=%s/srv/apps/api/api.wsgi\nmanage-script-name = on\n"
                   "single-interpreter = %s\n" % (tmp, tmp, value))
    _, yaml, _ = convert(tmp, src)
    assert ('application-group: "%{RESOURCE}"' in yaml) == sub, yaml


def test_uwsgi_inline_comments(tmp):
    """helper-70's 14: `processes = 4   ; four workers` (uWSGI's ini has no inline comments; its
    atoi reads 4) gave one process and `harakiri = 30 ; seconds` no request timeout, both noted
    as "not a number"."""
    layout(tmp)
    src = tmp / "orig" / "comments.ini"
    src.write_text("[uwsgi]\nwsgi-file = %s/srv/apps/site.wsgi\nprocesses = 4   ; four workers\n"
                   "harakiri = 30 ; seconds\nthreads = 2 # two\n" % tmp)
    notes, yaml, _ = convert(tmp, src)
    assert "processes: 4\n" in yaml and 'request-timeout: "30s"\n' in yaml, yaml
    assert "threads: 2\n" in yaml, yaml
    assert "not a number" not in notes, notes


def test_renamed_groups_and_locations_of_one_path(tmp):
    """A group renamed for wsgid ("a:b" -> "a_b") took over the lookups of a real group "a_b":
    both aliases went to one group, the other noted as declared twice. A virtual host's
    <Location /admin> was left out when the server had one of the same path (only the first of
    one length was merged), and the server's was noted as served by no alias."""
    layout(tmp)
    root = tmp / "srv"
    src = tmp / "orig" / "names.conf"
    src.write_text(
        "WSGIDaemonProcess a:b processes=2\n"
        "WSGIDaemonProcess a_b processes=5\n"
        "WSGIScriptAlias /one %s/apps/site.wsgi process-group=a:b\n"
        "WSGIScriptAlias /two %s/apps/site.wsgi process-group=a_b\n"
        "<Location /admin>\n"
        "    WSGIApplicationGroup %%{GLOBAL}\n"
        "</Location>\n"
        "<VirtualHost *:80>\n"
        "    WSGIDaemonProcess main\n"
        "    WSGIDaemonProcess admin\n"
        "    WSGIScriptAlias / %s/apps/site.wsgi\n"
        "    WSGIProcessGroup main\n"
        "    <Location /admin>\n"
        "        WSGIProcessGroup admin\n"
        "    </Location>\n"
        "</VirtualHost>\n" % (root, root, root))
    notes, yaml, conf = convert(tmp, src)
    assert '"a_b":\n    processes: 2' in yaml and '"a_b-2":\n    processes: 5' in yaml, yaml
    assert "declared twice" not in notes and "no WSGIScriptAlias serves it" not in notes, notes
    assert '"admin":\n    app: "%s/apps/site.wsgi"\n    application-group: "%%{GLOBAL}"' % root \
        in yaml, yaml
    assert "a_b-2.sock" in conf.split("location = /two")[1].split("}")[0], conf


LOCATION_ORDER_CONF = """# <Location> sections merge in the order written (a later <Location /> overrides an earlier
# <Location /admin>), not by length.
WSGIDaemonProcess site threads=2 python-path=@ROOT@/srv/lib
WSGIProcessGroup site
WSGIScriptAlias / @ROOT@/srv/apps/site.wsgi
<Location /admin>
    SetEnv AREA admin
    SetEnv SITE_ENV admin-only
</Location>
<Location />
    SetEnv AREA root
</Location>
<Directory @ROOT@/srv/apps>
    Require all granted
</Directory>
"""

LOCATION_ORDER_REQUESTS = [
    ("GET", "/admin/x", None, {}),
    ("GET", "/admin", None, {}),
    ("GET", "/other", None, {}),
]


def test_locations_merge_in_the_order_written(tmp, apache, wsgid, nginx, monkeypatch):
    """Apache merges <Location> sections in the order written, the server's before a virtual
    host's; the converter merged the shortest first, so an earlier <Location /admin> won over a
    later <Location /> (checked against Apache itself)."""
    monkeypatch.setenv("LANG", "C")
    layout(tmp)
    port = free_port()
    src = tmp / "orig" / "order.conf"
    src.write_text(LOCATION_ORDER_CONF.replace("@ROOT@", str(tmp)))
    a = start_apache(apache, tmp, src, port)
    orig = [fetch(("127.0.0.1", port), *r) for r in LOCATION_ORDER_REQUESTS]
    assert [s for s, _ in orig] == [200] * 3, orig
    notes, yaml, conf = convert(tmp, src)
    _, addr = serve_converted(wsgid, nginx, yaml, conf)
    conv = [fetch(addr, *r) for r in LOCATION_ORDER_REQUESTS]
    compare(LOCATION_ORDER_REQUESTS, orig, conv)
    assert parse(conv[0][1])["area"] == parse(orig[0][1])["area"], (orig[0], conv[0])
    a.stop()


def test_a_server_alias_in_the_one_virtual_host(tmp):
    """A server's WSGIScriptAlias serves the requests of the one virtual host there is, with that
    host's WSGIProcessGroup: it went to an "embedded" group (the host's settings were left out)."""
    layout(tmp)
    root = tmp / "srv"
    src = tmp / "orig" / "vhost-pg.conf"
    src.write_text(
        "WSGIDaemonProcess site threads=2\n"
        "WSGIScriptAlias / %s/apps/site.wsgi\n"
        "<VirtualHost *:80>\n"
        "    WSGIProcessGroup site\n"
        "</VirtualHost>\n" % root)
    notes, yaml, conf = convert(tmp, src)
    assert '"site":\n    app: "%s/apps/site.wsgi"' % root in yaml, yaml
    assert "embedded" not in yaml and "embedded" not in notes, (yaml, notes)


def test_the_output_directory_is_made(tmp):
    """`-o DIR` that does not exist yet is made (its parent must exist): the command failed with
    "No such file or directory" and no word of what to do (helper-72)."""
    src = tmp / "site.conf"
    src.write_text("WSGIDaemonProcess site processes=2\n"
                   "WSGIScriptAlias / %s/site.wsgi process-group=site\n" % tmp)
    (tmp / "site.wsgi").write_text("def application(e, s):\n    return []\n")
    out = tmp / "out"
    r = subprocess.run([str(WSGID_BIN), "convert", str(src), "-o", str(out), "--run-dir",
                        str(tmp)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert (out / "wsgid.yaml").exists() and (out / "nginx.conf").exists()
    deep = tmp / "no-such" / "out"
    r = subprocess.run([str(WSGID_BIN), "convert", str(src), "-o", str(deep)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r
    assert ("wsgid convert: cannot create the output directory %s: No such file or directory "
            "(create it, or give -o a directory that exists)" % deep) in r.stderr, r.stderr
