"""The peers, each started for one path at a time with only that path's listener, and nginx.

Paths:
  uwsgi   nginx `uwsgi_pass unix:SOCK` (one connection per request: nginx's uwsgi module has no
          upstream keep-alive)
  ka      nginx `proxy_pass` HTTP/1.1 with an upstream `keepalive 32` block, over a unix socket
          where the server has one (Apache only listens on TCP: 127.0.0.1:PORT)
  direct  wrk straight to the server's HTTP port on 127.0.0.1
  fcgi    nginx `fastcgi_pass` with `fastcgi_keep_conn on` and an upstream `keepalive 32` block,
          over a unix socket (wsgid only)
"""
import os
import signal
import subprocess
import time

from .util import PY, children, cmdline, descendants, http_get, log, sh, spawn_group

PATH_LABEL = {"uwsgi": "uwsgi_pass", "ka": "proxy_pass keep-alive", "direct": "direct HTTP",
              "fcgi": "fastcgi_pass keep-alive"}


class Server:
    """One peer: writes its config for (app, path) into the temp dir, starts, finds its workers,
    stops."""

    PATHS = ("uwsgi", "ka", "direct")

    def __init__(self, name, ctx, index, path=None):
        """path: the one path this instance serves (its own directory: its pidfile, configs and
        logs), when the same server runs on another path at the same time; None: any."""
        self.name = name
        self.ctx = ctx
        self.index = index
        self.dir = os.path.join(ctx.tmp, name + ("-" + path if path else ""))
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(ctx.tmp, name + ".sock")            # uwsgi protocol
        self.sock_http = os.path.join(ctx.tmp, name + "-http.sock")  # HTTP on a unix socket
        self.port = ctx.base_port + 20 + index          # direct HTTP
        self.nginx_port = ctx.base_port + 10 + index    # nginx uwsgi_pass
        self.ka_port = ctx.base_port + 30 + index       # nginx proxy_pass, keep-alive upstream
        self.fcgi_port = ctx.base_port + 40 + index     # nginx fastcgi_pass, keep-alive
        self.sock_fcgi = os.path.join(ctx.tmp, name + "-fcgi.sock")
        self.proc = None
        self.logf = None
        self.log_path = None
        self.app = None
        self.path = None

    def port_for(self, path):
        """The port a client uses for this path: nginx's for uwsgi and ka, the server's for
        direct."""
        return {"uwsgi": self.nginx_port, "ka": self.ka_port, "direct": self.port,
                "fcgi": self.fcgi_port}[path]

    # subclasses: argv(app, path) -> list
    def argv(self, app, path):
        raise NotImplementedError

    def worker_pids(self):
        return children(self.proc.pid) if self.proc else []

    def all_pids(self):
        return [self.proc.pid] + descendants(self.proc.pid) if self.proc else []

    def start(self, app, path, valgrind=None, env=None):
        """app: 'main' (hello, sleeps, echo, big), 'tfb', 'flaskapp' or 'djangoapp'; path: see
        PATHS."""
        for s in self.sockets(path):
            if os.path.exists(s):
                os.unlink(s)
        self.app, self.path = app, path
        argv = self.argv(app, path)
        if valgrind:
            argv = valgrind + argv
        self.log_path = os.path.join(self.dir, "%s-%s-%s.log"
                                     % (app, path, "cg" if valgrind else "run"))
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     **spawn_group(self.ctx.args.own_sessions))

    def sockets(self, path):
        """The unix sockets the server makes on path (another instance may serve the others)."""
        return {"uwsgi": [self.sock], "ka": [self.sock_http], "fcgi": [self.sock_fcgi]}.get(path, [])

    def wait_ready(self, timeout, ready_path="/"):
        """Ready when a GET through the path under test answers 200 and every worker is up."""
        deadline = time.monotonic() + timeout
        port = self.port_for(self.path)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log %s:\n%s"
                                   % (self.name, self.proc.returncode, self.log_path, self.tail()))
            try:
                if (http_get(port, ready_path, timeout=max(2.0, timeout / 10)) == 200
                        and len(self.worker_pids()) >= self.ctx.processes):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("%s not ready after %ds on %s; log %s:\n%s"
                           % (self.name, timeout, self.path, self.log_path, self.tail()))

    def tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout=20):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s did not stop on SIGTERM; killing its process group" % self.name)
        # Leftovers (workers still finishing, apache children) in the process group we created.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None


class Wsgid(Server):
    PATHS = ("uwsgi", "ka", "direct", "fcgi")

    def argv(self, app, path):
        ctx = self.ctx
        conf = os.path.join(self.dir, "%s-%s.yaml" % (app, path))
        # One listener, speaking only the protocol of the path (protocol: auto would serve both
        # on one socket; the peers' sockets each speak one).
        listen, protocol = {"uwsgi": ("unix:" + self.sock, "uwsgi"),
                            "ka": ("unix:" + self.sock_http, "http"),
                            "direct": ("127.0.0.1:%d" % self.port, "http"),
                            "fcgi": ("unix:" + self.sock_fcgi, "fastcgi")}[path]
        extra = "    startup-timeout: 600\n" if ctx.under_valgrind else ""
        # As root wsgid runs workers as nobody unless told; uWSGI and gunicorn keep root here,
        # so say root too (same privileges, and vgdb can reach the workers under callgrind).
        if os.geteuid() == 0:
            extra += "    user: root\n"
        with open(conf, "w") as f:
            f.write("""pidfile: {d}/wsgid.pid
control: {d}/wsgid.ctl
log:
  level: info
  file: "-"
  access: "off"
groups:
  bench:
    app: {apps}/{app}.py
    callable: application
    processes: {p}
    threads: {t}
    listen: [{listen}]
    protocol: {protocol}
    python-path: [{apps}]
    chdir: {apps}
{extra}""".format(d=self.dir, apps=ctx.apps, app=app, p=ctx.processes, t=ctx.threads,
                  listen=listen, protocol=protocol, extra=extra))
        return [ctx.wsgid_bin, "-c", conf]


class Uwsgi(Server):
    def argv(self, app, path):
        ctx = self.ctx
        if path == "uwsgi":
            sock = ["--uwsgi-socket", self.sock, "--chmod-socket=666"]
        elif path == "ka":
            # --http11-socket: uWSGI's HTTP socket that keeps connections (when the answer has
            # a Content-Length, as every bench answer has).
            sock = ["--http11-socket", self.sock_http, "--chmod-socket=666"]
        else:
            sock = ["--http11-socket" if ctx.args.uwsgi_http11 else "--http-socket",
                    "127.0.0.1:%d" % self.port]
        # --thunder-lock: serialise accept() across the processes; uWSGI's docs ("Serializing
        # accept(), AKA Thundering Herd") recommend it for multi-process + multi-thread set-ups
        # on Linux and only leave it off by default for old platforms' sake.
        lock = [] if ctx.args.uwsgi_no_thunder_lock else ["--thunder-lock"]
        # --listen: uWSGI's backlog is 100 unless told (its docs: raise it when the queue
        # fills); wsgid's is 1024, gunicorn's 2048, Apache's 511.
        return (["uwsgi", "--plugin", "python3", "--master", "--processes", str(ctx.processes),
                 "--threads", str(ctx.threads), "--listen", str(ctx.args.uwsgi_listen)]
                + lock + sock
                + ["--chdir", ctx.apps, "--wsgi-file", os.path.join(ctx.apps, app + ".py"),
                   "--disable-logging", "--die-on-term",
                   "--pidfile", os.path.join(self.dir, "uwsgi.pid")])


class UwsgiPinned(Uwsgi):
    """uWSGI with --cpu-affinity 1: each worker (its threads with it) on one CPU of its own, round
    robin, as wsgid's pin-threads keeps its Python threads (bench/README.md: it helps uWSGI on
    some figures and costs it on others, so both run and the better counts)."""

    def argv(self, app, path):
        return super().argv(app, path) + ["--cpu-affinity", "1"]


class Gunicorn(Server):
    PATHS = ("ka", "direct")

    def argv(self, app, path):
        ctx = self.ctx
        timeout = "600" if ctx.under_valgrind else "30"
        bind = "unix:" + self.sock_http if path == "ka" else "127.0.0.1:%d" % self.port
        return [PY, "/usr/bin/gunicorn", "-w", str(ctx.processes), "--threads", str(ctx.threads),
                "-k", "gthread", "-b", bind,
                "--chdir", ctx.apps, "--timeout", timeout, "--error-logfile", "-",
                "--pid", os.path.join(self.dir, "gunicorn.pid"), app + ":application"]


class ModWsgi(Server):
    """Apache mpm_event + mod_wsgi daemon mode. Apache cannot listen on a unix socket: nginx's
    keep-alive upstream is its TCP port, the same port the direct path uses."""

    PATHS = ("ka", "direct")

    def worker_pids(self):
        # The mod_wsgi daemon processes (display-name "(wsgi:bench)"), not Apache's own children.
        # Under valgrind the display name does not show in /proc, so every child counts there
        # (only the readiness check uses it then).
        if not self.proc:
            return []
        if self.ctx.under_valgrind:
            return children(self.proc.pid)
        return [p for p in descendants(self.proc.pid) if cmdline(p).startswith("(wsgi:")]

    def argv(self, app, path):
        ctx = self.ctx
        d = self.dir
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        conf = os.path.join(d, "%s-%s.conf" % (app, path))
        mods = "/usr/lib/apache2/modules"
        with open(conf, "w") as f:
            f.write("""ServerRoot "{d}"
DefaultRuntimeDir "{d}"
PidFile "{d}/httpd.pid"
ErrorLog "{d}/error.log"
LogLevel warn
Mutex file:{d}
ServerName localhost
Listen 127.0.0.1:{port}
{user}
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule wsgi_module {mods}/mod_wsgi.so
StartServers 2
ServerLimit 16
ThreadsPerChild 25
MaxRequestWorkers 400
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
Timeout 60
WSGISocketPrefix {d}/wsgi
WSGIRestrictEmbedded On
WSGIDaemonProcess bench processes={p} threads={t} display-name=%{{GROUP}} python-path={apps}
WSGIProcessGroup bench
WSGIApplicationGroup %{{GLOBAL}}
WSGIScriptAlias / {apps}/{app}.py
<Directory {apps}>
    Require all granted
</Directory>
""".format(d=d, port=self.port, user=user, mods=mods, p=ctx.processes, t=ctx.threads,
           apps=ctx.apps, app=app))
        return ["apache2", "-f", conf, "-DFOREGROUND"]


class Ceiling(Server):
    """bench/ceiling.c: no app, the same hello for every request; what nginx and wrk reach here.
    It serves its uwsgi and its HTTP socket at once (one thread, one epoll: an idle listener
    costs it nothing)."""

    PATHS = ("uwsgi", "ka")

    def argv(self, app, path):
        return [self.ctx.ceiling_bin, self.sock, self.sock_http]

    def sockets(self, path):
        return [self.sock, self.sock_http]

    def worker_pids(self):
        return [self.proc.pid] if self.proc else []

    def wait_ready(self, timeout, ready_path="/"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ceiling exited: " + self.tail())
            if os.path.exists(self.sock) and os.path.exists(self.sock_http):
                return
            time.sleep(0.1)
        raise RuntimeError("ceiling not ready")


SERVERS = ["wsgid", "uwsgi", "uwsgi-pinned", "gunicorn", "mod_wsgi"]
ALL = SERVERS + ["ceiling"]
CLASSES = {"wsgid": Wsgid, "uwsgi": Uwsgi, "uwsgi-pinned": UwsgiPinned, "gunicorn": Gunicorn, "mod_wsgi": ModWsgi,
           "ceiling": Ceiling}


# ---------------------------------------------------------------------------------------------
# nginx in front: one for the whole run, a port per (server, path); a server not running there
# at the moment simply answers 502.

NGINX_CONF = """{user}worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    uwsgi_temp_path {d}/uwsgi;
    fastcgi_temp_path {d}/fastcgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 2m;
    keepalive_requests 1000000;
{servers}
}}
"""

UWSGI_SERVER = """    server {{
        listen 127.0.0.1:{port};
        location / {{ include /etc/nginx/uwsgi_params; uwsgi_pass unix:{sock}; }}
    }}
"""

PROXY_SERVER = """    upstream {name} {{ server {target}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
"""


FASTCGI_SERVER = """    upstream {name} {{ server unix:{sock}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_keep_conn on;
            fastcgi_pass {name};
        }}
    }}
"""


class Nginx:
    def __init__(self, ctx, servers):
        self.dir = os.path.join(ctx.tmp, "nginx")
        self.ctx = ctx
        os.makedirs(self.dir, exist_ok=True)
        parts = []
        for s in servers:
            if "uwsgi" in s.PATHS:
                parts.append(UWSGI_SERVER.format(port=s.nginx_port, sock=s.sock))
            # Keep-alive upstream: HTTP/1.1 over a unix socket where the server has one (wsgid's
            # HTTP listener, uWSGI --http11-socket, gunicorn), Apache's TCP port otherwise.
            target = "127.0.0.1:%d" % s.port if s.name == "mod_wsgi" else "unix:" + s.sock_http
            parts.append(PROXY_SERVER.format(name=s.name + "_ka", target=target, port=s.ka_port))
            if "fcgi" in s.PATHS:
                parts.append(FASTCGI_SERVER.format(name=s.name + "_fcgi", sock=s.sock_fcgi,
                                                   port=s.fcgi_port))
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(user="user root;\n" if os.geteuid() == 0 else "",
                                      workers=ctx.nginx_workers, d=self.dir,
                                      servers="".join(parts)))
        self.proc = None

    def start(self):
        r = sh(["nginx", "-t", "-c", self.conf, "-p", self.dir])
        if r.returncode != 0:
            raise RuntimeError("nginx config: " + r.stdout)
        self.proc = subprocess.Popen(["nginx", "-c", self.conf, "-p", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     **spawn_group(self.ctx.args.own_sessions))
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError("nginx exited: see %s/error.log" % self.dir)

    def all_pids(self):
        return [self.proc.pid] + descendants(self.proc.pid) if self.proc else []

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
