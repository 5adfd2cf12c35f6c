"""A private PostgreSQL for the TechEmpower-style tests.

initdb into TMP/pg/data (owned by the postgres user when the bench is root: the server refuses to
run as root), unix socket only (listen_addresses = '') in TMP/pg/run, which every server's user
can reach (www-data for Apache included), its own port number (only the socket's name uses it).
fsync, synchronous_commit and full_page_writes are off: a benchmark database that is thrown away
at the end, where a commit need not wait for the disk (the /updates test then measures the
servers and PostgreSQL's CPU, not this VM's disk). Trust authentication: nothing but this
machine's processes can reach the socket.

The TechEmpower schema: world(id, randomnumber) with 10,000 rows, fortune(id, message) with the
12 standard fortunes.
"""
import glob
import json
import os
import pwd
import shutil
import subprocess

from .util import descendants, log, sh

DBNAME = "hello_world"
DBUSER = "postgres"

FORTUNES = [
    "fortune: No such file or directory",
    "A computer scientist is someone who fixes things that aren't broken.",
    "After enough decimal places, nobody gives a damn.",
    "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    "A computer program does what you tell it to do, not what you want it to do.",
    "Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom Christaensen",
    "Any program that runs right is obsolete.",
    "A list is only as strong as its weakest link. \u2014 Donald Knuth",
    "Feature: A bug with seniority.",
    "Computers make very fast, very accurate mistakes.",
    "<script>alert(\"This should not be displayed in a browser alert box.\");</script>",
    "\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af\u306e\u30d9\u30f3\u30c1\u30de\u30fc\u30af",
]


def pg_bindir():
    """The newest /usr/lib/postgresql/N/bin, or None."""
    dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(d + "/initdb")]
    if not dirs:
        return None
    return max(dirs, key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)


class Postgres:
    def __init__(self, tmp, port, max_connections):
        self.bin = pg_bindir()
        self.root = os.path.join(tmp, "pg")
        self.data = os.path.join(self.root, "data")
        self.run = os.path.join(self.root, "run")
        self.logfile = os.path.join(self.root, "postgres.log")
        self.port = port
        self.max_connections = max_connections
        self.started = False
        self.as_root = os.geteuid() == 0

    def _cmd(self, argv):
        # PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
        return (["runuser", "-u", "postgres", "--"] + argv) if self.as_root else argv

    def dsn(self):
        return {"host": self.run, "port": self.port, "dbname": DBNAME, "user": DBUSER}

    def start(self):
        if not self.bin:
            raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb (package postgresql)")
        os.makedirs(self.data)
        os.makedirs(self.run)
        # The socket directory must be reachable by every server's user (Apache's is www-data):
        # the temp dir is 0755, the socket dir 0755 and the socket itself 0777 (PostgreSQL's
        # default unix_socket_permissions).
        os.chmod(self.root, 0o755)
        os.chmod(self.run, 0o755)
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            for d in (self.root, self.data, self.run):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data, 0o700)
        r = sh(self._cmd([self.bin + "/initdb", "-D", self.data, "-U", DBUSER, "--auth=trust",
                          "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]))
        if r.returncode != 0:
            raise RuntimeError("initdb failed:\n" + r.stdout[-2000:])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("""
# bench/run: a private, throw-away benchmark database
listen_addresses = ''
unix_socket_directories = '{run}'
port = {port}
max_connections = {maxc}
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 128MB
""".format(run=self.run, port=self.port, maxc=self.max_connections))
        # pg_ctl puts the postmaster in a session of its own: a ^C on the bench does not reach
        # it, and stop() below shuts it down in every case.
        self.started = True     # from here on, stop() is owed whatever happens
        r = sh(self._cmd([self.bin + "/pg_ctl", "-D", self.data, "-l", self.logfile, "-w",
                          "-t", "60", "start"]), stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl start failed:\n%s\n%s" % (r.stdout[-1500:], self.tail()))
        self.load()
        log("PostgreSQL %s on %s/.s.PGSQL.%d, max_connections %d"
            % (os.path.basename(os.path.dirname(self.bin)), self.run, self.port,
               self.max_connections))

    def all_pids(self):
        """The postmaster and its backends (for PostgreSQL's CPU per request)."""
        if not self.started:
            return []
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return []
        return [pid] + descendants(pid)

    def tail(self, n=2000):
        try:
            with open(self.logfile, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def psql(self, sql, db="postgres"):
        r = sh([self.bin + "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.run,
                "-p", str(self.port), "-U", DBUSER, "-d", db, "-c", sql],
               env=dict(os.environ, PGCLIENTENCODING="UTF8"))
        if r.returncode != 0:
            raise RuntimeError("psql: %s\n%s" % (sql[:80], r.stdout[-1500:]))
        return r.stdout

    def load(self):
        """The TechEmpower schema and rows."""
        self.psql("CREATE DATABASE %s" % DBNAME)
        self.psql("CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL "
                  "DEFAULT 0);"
                  "INSERT INTO world (id, randomnumber) SELECT g, floor(random() * 10000)::int + 1"
                  " FROM generate_series(1, 10000) AS g;"
                  "CREATE TABLE fortune (id integer PRIMARY KEY, message text NOT NULL);",
                  db=DBNAME)
        values = ",".join("(%d, %s)" % (i + 1, quote(m)) for i, m in enumerate(FORTUNES))
        self.psql("INSERT INTO fortune (id, message) VALUES %s" % values, db=DBNAME)
        self.psql("VACUUM ANALYZE", db=DBNAME)

    def write_app_config(self, path):
        """The app (bench/apps/tfb.py) reads where to connect from tfb_db.json next to it: the
        same for every server, whatever its way of passing environment variables."""
        with open(path, "w") as f:
            json.dump(self.dsn(), f)
        os.chmod(path, 0o644)

    def stop(self):
        if not self.started:
            return
        self.started = False
        r = sh(self._cmd([self.bin + "/pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30",
                          "stop"]), stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            log("pg_ctl stop: " + r.stdout.strip()[-500:])
            # Last resort: the postmaster's pid is the first line of postmaster.pid.
            try:
                with open(os.path.join(self.data, "postmaster.pid")) as f:
                    pid = int(f.readline())
                os.kill(pid, 9)
            except (OSError, ValueError):
                pass
        else:
            log("PostgreSQL stopped")

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


def quote(s):
    """A SQL string literal (standard_conforming_strings is on: only quotes are doubled)."""
    return "'" + s.replace("'", "''") + "'"
