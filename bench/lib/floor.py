"""The app's own CPU per request, with no server at all: the floor under every server's figure.

A child process (this file run as a script, Debian's python3) imports a scenario's app from the
run's apps directory and calls its `application` directly, in THREADS Python threads of one process
(as many as a server process has), each in a loop for SECONDS: a minimal PEP 3333 environ for the
scenario's URL, start_response that keeps nothing, the body iterated and closed. CPU is the child's
utime + stime (getrusage, not /proc ticks) over the requests made, measured after one warm-up
pass, so the imports and each thread's first database connection are not counted.

Each scenario is measured twice: with the threads free to run on any CPU, and with all of them on
one CPU (as wsgid's pin-threads and uWSGI's --cpu-affinity place them: the GIL hands over between
threads of one CPU without a cross-CPU wake-up, which costs a virtual machine dearly). The floor is
the lower CPU per request of the two, and the bound on req/s the higher rate: what the app costs
where it is cheapest.

For an app that keeps its CPU busy, no server can cost less CPU per request than this: a
server's CPU per request minus the floor is what the server itself adds (its protocol work, its
hand-offs, and the contention its threads add), the part a server change can save. The
TechEmpower-style apps spend most of theirs here (psycopg2, libpq's socket I/O, json, jinja2),
and the floor shows which CPU targets are in a server's reach at all. The floor is measured on a
quiet machine, so under the bench's load (wrk, nginx and PostgreSQL on the same CPUs) such an app
costs somewhat more than this: a lower bound.

Not for an app that mostly waits on round trips (/queries and /updates make 20 or 21 to
PostgreSQL a request): alone on the quiet machine each wait leaves a CPU idle and each answer
wakes it again, which on a virtual machine costs an exit and an interrupt, while under the
rounds' load a CPU is rarely idle. In RESULTS-20261204-0319 the app alone cost 601 and 863 us a
request there, and wsgid's whole tree 522 and 783 under load: the report then says the floor
bounds nothing (report.floor_bounds).

Scenarios measured: those whose request is a plain GET (not the POST, the mixed test or the slow
readers)."""
import io
import json
import os
import subprocess
import sys
import threading
import time

PY = "/usr/bin/python3"
KINDS = ("wrk",)


def measurable(sc):
    return sc.kind in KINDS and sc.script is None


def measure(apps, scenarios, threads, seconds, log=print, places=None):
    """{scenario key: {"cpu_us": floor, "requests": n, "rps": n/s, "busy": CPUs, "runs": {place:
    figures}}} for
    the measurable scenarios (a scenario whose child failed is left out, with its reason logged);
    places: where the threads run, PLACES unless told."""
    out, seen = {}, {}
    for sc in scenarios:
        if not measurable(sc):
            continue
        if (sc.app, sc.url) in seen:    # the same request as another scenario's
            out[sc.key] = seen[(sc.app, sc.url)]
            continue
        runs = {}
        for where in places or PLACES:
            spec = json.dumps({"app": sc.app, "url": sc.url, "threads": threads,
                               "seconds": seconds, "one_cpu": where == "one CPU"})
            r = subprocess.run([PY, os.path.abspath(__file__), apps, spec], capture_output=True,
                               text=True, timeout=seconds * 4 + 120, cwd=apps)
            try:
                runs[where] = json.loads(r.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                log("app floor of %s (%s): the child failed (status %d): %s"
                    % (sc.key, where, r.returncode, (r.stderr or r.stdout).strip()[-400:]))
        if not runs:
            continue
        cheapest = min(runs.values(), key=lambda x: x["cpu_us"])
        # busy: the most CPUs the app kept busy in either run (under 0.5: it mostly waits)
        res = {"cpu_us": cheapest["cpu_us"], "requests": cheapest["requests"],
               "rps": max(x["rps"] for x in runs.values()),
               "busy": max(x["cpu_us"] * x["rps"] / 1e6 for x in runs.values()), "runs": runs}
        out[sc.key] = seen[(sc.app, sc.url)] = res
        log("app floor of %s (%s %s, %d threads, no server): %s us CPU/request"
            % (sc.key, sc.app, sc.url, threads,
               ", ".join("%.1f on %s" % (x["cpu_us"], w) for w, x in runs.items())))
    return out


def places():
    """Where the child's threads run: any CPU, and (with two CPUs or more allowed) one CPU."""
    return ("any CPU", "one CPU") if len(os.sched_getaffinity(0)) > 1 else ("any CPU",)


PLACES = places()


# ---------------------------------------------------------------------------------------------
# the child

def environ_for(url):
    path, _, qs = url.partition("?")
    return {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": qs,
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False}


def call(app, base):
    env = dict(base)
    env["wsgi.input"] = io.BytesIO(b"")
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)
        return lambda data: None

    body = app(env, start_response)
    try:
        n = sum(len(part) for part in body)
    finally:
        if hasattr(body, "close"):
            body.close()
    if not status or not status[0].startswith("200"):
        raise RuntimeError("%s answered %r" % (base["PATH_INFO"], status[:1]))
    return n


def child(apps, spec):
    import resource
    if spec.get("one_cpu"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the threads inherit it
    sys.path.insert(0, apps)
    mod = __import__(spec["app"])
    app = mod.application
    base = environ_for(spec["url"])
    threads, seconds = spec["threads"], spec["seconds"]
    errors = []
    counts = [0] * threads
    warmed = threading.Barrier(threads + 1)
    go = threading.Barrier(threads + 1)
    deadline = [time.monotonic() + min(1.0, seconds), None]

    def run(i):
        # The same threads warm up and are measured: each keeps its thread-local connection.
        try:
            while time.monotonic() < deadline[0]:
                call(app, base)
            warmed.wait()
            go.wait()
            n = 0
            while time.monotonic() < deadline[1]:
                call(app, base)
                n += 1
            counts[i] = n
        except Exception as e:  # reported by the parent
            errors.append(repr(e))
            warmed.abort()
            go.abort()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    try:
        warmed.wait()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        deadline[1] = t0 + seconds
        go.wait()
    except threading.BrokenBarrierError:
        pass
    for t in ts:
        t.join()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - t0 if not errors else 0
    n = sum(counts)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) if not errors else 0
    if errors or n == 0:
        raise SystemExit("no request made: %s" % (errors[:1] or "none in time"))
    print(json.dumps({"cpu_us": cpu / n * 1e6, "requests": n, "rps": n / wall}))


if __name__ == "__main__":
    child(sys.argv[1], json.loads(sys.argv[2]))
