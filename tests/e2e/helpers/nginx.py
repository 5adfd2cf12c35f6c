"""nginx in front of wsgid, started in the test's temp dir on a free port, with the locations that
pass to wsgid (uwsgi_pass, proxy_pass over a unix socket).

Environment:
    NGINX_BIN       the nginx binary (default: /usr/sbin/nginx)
"""
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

from helpers.procs import free_port, pgroup_members, wait_for

NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
NGINX_LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] ")


def uwsgi_location(sock, extra=""):
    return """location / {
            uwsgi_pass unix:%s;
            include /etc/nginx/uwsgi_params;
            %s
        }""" % (sock, extra)


def proxy_location(sock, extra=""):
    return """location / {
            proxy_pass http://unix:%s:;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            %s
        }""" % (sock, extra)


class Nginx:
    def __init__(self, tmp, server_snippet, http_extra=""):
        self.dir = Path(tmp) / "nginx"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.addr = ("127.0.0.1", self.port)
        self.error_log = self.dir / "error.log"
        self.expected = []
        user = "user root;" if os.geteuid() == 0 else ""
        d = self.dir
        self.conf = """%(user)s
daemon off;
master_process on;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log info;
events { worker_connections 1024; }
http {
    access_log %(d)s/access.log;
    client_body_temp_path %(d)s/client_body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    client_max_body_size 64m;
    %(http_extra)s
    server {
        listen 127.0.0.1:%(port)d;
        %(snippet)s
    }
}
""" % {"user": user, "d": d, "port": self.port, "snippet": server_snippet,
       "http_extra": http_extra}
        (d / "nginx.conf").write_text(self.conf)
        self.proc = subprocess.Popen(
            [NGINX_BIN, "-p", str(d) + "/", "-c", str(d / "nginx.conf"), "-e",
             str(self.error_log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(d / "stderr.log", "wb"), start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited (%d): %s\n%s" % (
                    self.proc.returncode, (d / "stderr.log").read_text(), self.log()))
            try:
                with socket.create_connection(self.addr, timeout=1):
                    return True
            except OSError:
                return False
        wait_for(up, 10, what="nginx to listen")

    def log(self):
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def expect_log(self, *patterns):
        self.expected.extend(re.compile(p) for p in patterns)

    def unexpected_lines(self):
        bad = []
        for line in self.log().splitlines():
            m = NGINX_LOG_LINE.match(line)
            if not m:
                continue
            if m.group(1) in ("alert", "crit", "emerg") or (
                    m.group(1) == "error" and not any(rx.search(line) for rx in self.expected)):
                bad.append(line)
        return bad

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(5)
        for p in pgroup_members(self.proc.pid):
            os.kill(p, signal.SIGKILL)
