"""TechEmpower-style tests (the Framework Benchmarks' test types) on a real PostgreSQL.

    /json                  {"message": "Hello, World!"} serialised per request
    /plaintext             Hello, World! (text/plain)
    /db                    one random world row as JSON
    /queries?queries=N     N random rows (1..500, default 1) as a JSON list
    /fortunes              every fortune plus one added at request time, sorted by message,
                           rendered by a jinja2 template (HTML-escaped)
    /updates?queries=N     N random rows read one by one, given new random numbers and written
                           back with one batch UPDATE

One psycopg2 connection per Python thread (threading.local), autocommit, over the unix socket
whose place bench/run writes into tfb_db.json next to this file. Every answer has a
Content-Length. Served the same way by every server.
"""
import json
import os
import random
import threading
from urllib.parse import parse_qs

import jinja2
import psycopg2
import psycopg2.errors
import psycopg2.extras

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tfb_db.json")) as _f:
    DB = json.load(_f)

_local = threading.local()

SELECT_WORLD = "SELECT id, randomnumber FROM world WHERE id = %s"
SELECT_FORTUNES = "SELECT id, message FROM fortune"
UPDATE_WORLDS = ("UPDATE world AS w SET randomnumber = v.r FROM (VALUES %s) AS v (id, r) "
                 "WHERE w.id = v.id")
ADDED = "Additional fortune added at request time."

TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>"
    "{% endfor %}</table></body></html>")

JSON = "application/json"
TEXT = "text/plain"
HTML = "text/html; charset=utf-8"


def connection():
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg2.connect(**DB)
        conn.autocommit = True
        _local.conn = conn
    return conn


def rand():
    return random.randint(1, 10000)


def query_count(environ):
    try:
        n = int(parse_qs(environ.get("QUERY_STRING", "")).get("queries", ["1"])[0])
    except ValueError:
        n = 1
    return min(max(n, 1), 500)


def json_test(environ):
    return JSON, json.dumps({"message": "Hello, World!"}).encode()


def plaintext(environ):
    return TEXT, b"Hello, World!"


def db(environ):
    with connection().cursor() as cur:
        cur.execute(SELECT_WORLD, (rand(),))
        row = cur.fetchone()
    return JSON, json.dumps({"id": row[0], "randomNumber": row[1]}).encode()


def random_worlds(cur, n):
    """n random rows, one query each (the TechEmpower rule), as {"id", "randomNumber"}."""
    worlds = []
    for _ in range(n):
        cur.execute(SELECT_WORLD, (rand(),))
        row = cur.fetchone()
        worlds.append({"id": row[0], "randomNumber": row[1]})
    return worlds


def queries(environ):
    with connection().cursor() as cur:
        worlds = random_worlds(cur, query_count(environ))
    return JSON, json.dumps(worlds).encode()


def fortunes(environ):
    with connection().cursor() as cur:
        cur.execute(SELECT_FORTUNES)
        rows = cur.fetchall()
    rows.append((0, ADDED))
    rows.sort(key=lambda r: r[1])
    return HTML, TEMPLATE.render(fortunes=rows).encode("utf-8")


def updates(environ):
    with connection().cursor() as cur:
        worlds = random_worlds(cur, query_count(environ))
        for w in worlds:
            w["randomNumber"] = rand()
        # One statement for all the rows, in id order (the same lock order in every request);
        # a row drawn twice is written once, with its last number. A deadlock between two
        # concurrent batches is retried.
        new = sorted({w["id"]: w["randomNumber"] for w in worlds}.items())
        for attempt in range(3):
            try:
                psycopg2.extras.execute_values(cur, UPDATE_WORLDS, new, page_size=len(new))
                break
            except psycopg2.errors.DeadlockDetected:
                if attempt == 2:
                    raise
    last = dict(new)
    for w in worlds:
        w["randomNumber"] = last[w["id"]]
    return JSON, json.dumps(worlds).encode()


ROUTES = {"/json": json_test, "/plaintext": plaintext, "/db": db, "/queries": queries,
          "/fortunes": fortunes, "/updates": updates}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO") or "/")
    if handler is None:
        start_response("404 Not Found", [("Content-Type", TEXT), ("Content-Length", "10")])
        return [b"Not found\n"]
    ctype, body = handler(environ)
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
