"""What is measured: each scenario's app, URL, load, and the (server, path) rows it runs on; the
checks a response must pass before a scenario is timed."""
import json

# Which paths each peer runs a scenario on.
#   BOTH_NGINX: both nginx paths where the server has both (wsgid and uWSGI), keep-alive
#               proxy_pass for the others.
#   BEST:       each peer's best nginx path: keep-alive proxy_pass for wsgid (its fastest, see
#               README.md), both paths for uWSGI (uwsgi_pass is its documented nginx path,
#               --http11-socket behind keep-alive proxy_pass is faster for hello: the better of
#               the two counts), keep-alive proxy_pass for gunicorn and Apache. --both-paths
#               runs wsgid on both as well.
BOTH_NGINX = {"wsgid": ("uwsgi", "ka"), "uwsgi": ("uwsgi", "ka"), "gunicorn": ("ka",),
              "mod_wsgi": ("ka",)}
BEST = {"wsgid": ("ka",), "uwsgi": ("uwsgi", "ka"), "gunicorn": ("ka",), "mod_wsgi": ("ka",)}


class Scenario:
    """key: figure name; group: the --tests name that selects it (its key selects it too);
    app: main | tfb | flaskapp | djangoapp; url; conns: wrk -c (or a callable of args); kind: wrk
    | mixed | slow; primary: the figure the ratio is taken on (rps: higher is better, p99_ms:
    lower)."""

    def __init__(self, key, group, label, app, url, conns, rows, kind="wrk", threads=None,
                 script=None, primary="rps", ceiling=(), best_rows=False):
        self.key, self.group, self.label, self.app, self.url = key, group, label, app, url
        self.conns, self.rows, self.kind, self.threads = conns, rows, kind, threads
        self.script, self.primary, self.ceiling = script, primary, ceiling
        self.best_rows = best_rows     # rows follow BEST (and --both-paths)

    def paths(self, server, args):
        if server == "ceiling":
            return self.ceiling
        if server == "uwsgi-pinned":
            server = "uwsgi"  # the same rows: only its CPU affinity differs
        rows = self.rows
        if self.best_rows and args.both_paths:
            rows = BOTH_NGINX
        return rows.get(server, ())

    def connections(self, args):
        return self.conns(args) if callable(self.conns) else self.conns

    def wrk_threads(self, args):
        return self.threads or args.wrk_threads


TFB_ROUTES = [("json", "/json"), ("db", "/db"), ("queries", "/queries?queries=20"),
              ("fortunes", "/fortunes"), ("updates", "/updates?queries=20"),
              ("plaintext", "/plaintext")]

SCENARIOS = [
    Scenario("hello_uwsgi", "hello", "hello, nginx uwsgi_pass", "main", "/",
             lambda a: a.connections, {"wsgid": ("uwsgi",), "uwsgi": ("uwsgi",)},
             ceiling=("uwsgi",)),
    Scenario("hello_ka", "hello", "hello, nginx keep-alive proxy_pass", "main", "/",
             lambda a: a.connections, {s: ("ka",) for s in BOTH_NGINX}, ceiling=("ka",)),
    Scenario("hello_fcgi", "hello", "hello, nginx fastcgi_pass keep-alive (wsgid's three nginx "
             "paths side by side)", "main", "/", lambda a: a.connections,
             {"wsgid": ("fcgi", "uwsgi", "ka")}),
    Scenario("hello_direct", "hello", "hello, direct HTTP", "main", "/",
             lambda a: a.connections, {s: ("direct",) for s in BOTH_NGINX}),
    Scenario("c1", "c1", "hello, 1 keep-alive connection (light load)", "main", "/", 1,
             BOTH_NGINX, threads=1, ceiling=("uwsgi", "ka")),
    Scenario("io_0.5ms", "io", "I/O-bound: sleep 0.5 ms (GIL released), -c32", "main",
             "/io/0.5ms", lambda a: a.io_connections, BOTH_NGINX),
    Scenario("io_5ms", "io", "I/O-bound: sleep 5 ms (GIL released), -c32", "main", "/io/5ms",
             lambda a: a.io_connections, BOTH_NGINX),
    Scenario("mixed", "mixed", "mixed: hello -c4 while 16 connections keep a 50 ms endpoint "
             "busy (p99 of hello)", "main", "/", lambda a: a.mixed_connections, BEST,
             kind="mixed", primary="p99_ms", best_rows=True),
    Scenario("post", "post", "1 MiB POST echo, -c16", "main", "/echo",
             lambda a: a.post_connections, BEST, script="post.lua", best_rows=True),
    Scenario("big", "big", "16 MiB download, -c8", "main", "/big",
             lambda a: a.big_connections, BEST, best_rows=True),
    Scenario("slow", "slow", "hello direct with 16 slow readers", "main", "/",
             lambda a: a.connections, {s: ("direct",) for s in BOTH_NGINX}, kind="slow"),
] + [
    Scenario("tfb_" + name, "tfb", "TechEmpower-style %s, -c32" % url, "tfb", url,
             lambda a: a.tfb_connections, BEST, best_rows=True)
    for name, url in TFB_ROUTES
] + [
    Scenario("flask", "flask", "Flask hello JSON", "flaskapp", "/", lambda a: a.connections,
             BEST, best_rows=True),
    Scenario("django", "django", "Django fortunes (ORM, template, startproject's middleware), "
             "-c32", "djangoapp", "/fortunes/", lambda a: a.tfb_connections, BEST,
             best_rows=True),
]
SCEN = {s.key: s for s in SCENARIOS}
GROUPS = []
for _s in SCENARIOS:
    if _s.group not in GROUPS:
        GROUPS.append(_s.group)
# The old --tests names (before the per-path rework) still select their scenario.
ALIASES = {"nginx": "hello_uwsgi", "nginx_ka": "hello_ka", "nginx_ka_c1": "c1",
           "direct": "hello_direct"}
# Sessions: one server start per (app, path), in this order within a round.
SESSIONS = [("main", "uwsgi"), ("main", "ka"), ("main", "fcgi"), ("main", "direct"), ("tfb", "ka"),
            ("tfb", "uwsgi"), ("flaskapp", "ka"), ("flaskapp", "uwsgi"),
            ("djangoapp", "ka"), ("djangoapp", "uwsgi")]
READY_PATH = {"main": "/", "tfb": "/plaintext", "flaskapp": "/", "djangoapp": "/fortunes/"}
# The apps that read PostgreSQL (bench/lib/pg.py)
DB_APPS = ("tfb", "djangoapp")


def select(names):
    """--tests NAMES -> scenario keys, in run order. Raises ValueError on an unknown name."""
    want = set()
    for n in names:
        n = ALIASES.get(n, n)
        if n in SCEN:
            want.add(n)
        elif n == "memory":
            want.add("memory")
        elif n in GROUPS:
            want.update(s.key for s in SCENARIOS if s.group == n)
        elif ("tfb_" + n) in SCEN:
            want.add("tfb_" + n)
        else:
            raise ValueError(n)
    return [s.key for s in SCENARIOS if s.key in want] + (["memory"] if "memory" in want else [])


# ---------------------------------------------------------------------------------------------
# response checks (once per server and session, before anything is timed)

def check_main(url, status, ctype, body):
    if status != 200:
        return "status %d" % status
    if url in ("/",) or url.startswith("/io/"):
        if body != b"Hello, World!":
            return "body %r" % body[:60]
    return None


def check_flask(url, status, ctype, body):
    if status != 200:
        return "status %d" % status
    if not ctype.startswith("application/json"):
        return "content type %r" % ctype
    return None


def check_tfb(route, status, ctype, body, world=None):
    """None if the answer to /ROUTE is right, else what is wrong. world(ids) -> {id: number}
    reads the database (to check that /updates wrote what it answered)."""
    if status != 200:
        return "status %d: %r" % (status, body[:200])
    if route == "plaintext":
        if not ctype.startswith("text/plain"):
            return "content type %r" % ctype
        return None if body == b"Hello, World!" else "body %r" % body[:60]
    if route == "fortunes":
        if not ctype.startswith("text/html"):
            return "content type %r" % ctype
        text = body.decode("utf-8", "replace")
        for must in ("Additional fortune added at request time.",
                     "&lt;script&gt;alert(", "\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af"):
            if must not in text:
                return "no %r in the page" % must
        if "<script>" in text:
            return "the script tag is not escaped"
        if text.count("<tr>") != 14:
            return "%d table rows, not 1 + 13" % text.count("<tr>")
        return None
    if not ctype.startswith("application/json"):
        return "content type %r" % ctype
    try:
        data = json.loads(body)
    except ValueError:
        return "not JSON: %r" % body[:80]
    if route == "json":
        return None if data == {"message": "Hello, World!"} else "body %r" % data
    rows = [data] if route == "db" else data
    if not isinstance(rows, list) or len(rows) != (1 if route == "db" else 20):
        return "expected %s rows: %r" % (1 if route == "db" else 20, body[:80])
    for r in rows:
        if not (isinstance(r, dict) and set(r) == {"id", "randomNumber"}
                and 1 <= r["id"] <= 10000 and isinstance(r["randomNumber"], int)):
            return "bad row %r" % (r,)
    if route == "updates" and world is not None:
        stored = world([r["id"] for r in rows])
        wrong = [r for r in rows if stored.get(r["id"]) != r["randomNumber"]]
        if wrong:
            return "rows not written: %r" % wrong[:3]
    return None
