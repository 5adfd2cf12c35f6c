"""The clients: wrk (timed runs, and a background load for the mixed test), and a small
keep-alive Python client for the callgrind counts."""
import http.client
import re
import subprocess
import threading

from .util import proc_stat, sh


def wrk_argv(port, path, duration, conns, threads, script=None):
    argv = ["wrk", "-t%d" % min(threads, conns), "-c%d" % conns, "-d%ds" % duration,
            "--timeout", "5s", "--latency"]
    if script:
        argv += ["-s", script]
    argv.append("http://127.0.0.1:%d%s" % (port, path))
    return argv


def parse_wrk(out):
    res = {"rps": 0.0, "requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["errors"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        (int(x) for x in m.groups())))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, out, re.M)
        if m:
            res[key] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    if res["requests"] == 0:
        res["raw"] = out[-500:]
        res["p50_ms"] = res["p99_ms"] = None     # wrk prints 0.00us when nothing came back
    # Non-2xx answers are not throughput: count only the good ones. Socket errors are kept
    # apart (a server that closes after each answer shows as "read" errors in wrk).
    if res["requests"]:
        res["rps"] *= max(0, res["requests"] - res["errors"]) / res["requests"]
    return res


def wrk(port, path, duration, conns, threads, script=None):
    argv = wrk_argv(port, path, duration, conns, threads, script)
    st0 = proc_stat()
    out = sh(argv, timeout=duration + 60).stdout
    st1 = proc_stat()
    res = parse_wrk(out)
    # What the whole machine did meanwhile: on a shared VM "steal" is time the host gave to
    # someone else, and "idle" is CPU nobody here wanted. Both explain a figure that moves.
    tot = sum(st1) - sum(st0)
    if tot > 0:
        for i, name in ((3, "cpu_idle_pct"), (7, "cpu_steal_pct")):
            res[name] = round(100.0 * (st1[i] - st0[i]) / tot, 1)
    return res


class BackgroundWrk:
    """A wrk run in the background (the mixed test's slow-endpoint load)."""

    def __init__(self, port, path, duration, conns, threads):
        self.proc = subprocess.Popen(wrk_argv(port, path, duration, conns, threads),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self, timeout):
        try:
            out = self.proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out = self.proc.communicate()[0]
        return parse_wrk(out)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def hammer(port, count, conc, path="/"):
    """count GET requests over conc keep-alive connections; returns how many failed."""
    lock = threading.Lock()
    state = {"left": count, "bad": 0}

    def worker():
        c = None
        while True:
            with lock:
                if state["left"] <= 0:
                    break
                state["left"] -= 1
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    raise OSError(r.status)
            except (OSError, http.client.HTTPException):
                with lock:
                    state["bad"] += 1
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    ths = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return state["bad"]
