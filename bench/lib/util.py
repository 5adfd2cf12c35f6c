"""Helpers: logging, subprocesses, packages and builds, versions, /proc readings."""
import http.client
import os
import platform
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
PY = "/usr/bin/python3"
PACKAGES = ["uwsgi", "uwsgi-plugin-python3", "gunicorn", "apache2", "libapache2-mod-wsgi-py3",
            "nginx", "wrk", "valgrind", "gnuplot-nox", "python3-flask", "python3-django",
            "postgresql", "python3-psycopg2", "python3-jinja2"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def sh(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def spawn_group(own_sessions):
    """Popen arguments for a server or nginx: its own process group (so that stop() can kill
    what it leaves), and by default the bench's session.

    The session decides the scheduling group: with the kernel's autogroup on (Debian's default,
    /proc/sys/kernel/sched_autogroup_enabled), each session is one group and the CPUs are shared
    out group by group, not thread by thread. A server in a session of its own then gets about
    half of the 2 CPUs against wrk's session whatever it asks for, and its figures swing with
    how the scheduler splits them (wsgid direct: 62k-138k req/s between runs of one binary, see
    bench/README.md). In one session every thread competes as an equal, as on a machine where
    the clients are elsewhere; --own-sessions measures the other way."""
    if own_sessions:
        return {"start_new_session": True}
    return {"process_group": 0}


# ---------------------------------------------------------------------------------------------
# packages, builds, versions, machine

def ensure_packages():
    missing = [p for p in PACKAGES
               if subprocess.run(["dpkg", "-s", p], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL).returncode != 0]
    if not missing:
        return
    log("installing %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    pre = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(pre + ["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(pre + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
                   env=env, check=True)


def build_wsgid(binary):
    if binary:
        return os.path.abspath(binary)
    build = os.path.join(ROOT, "build-bench")
    if not os.path.exists(os.path.join(build, "build.ninja")):
        r = sh(["meson", "setup", build, ROOT, "--buildtype=release"])
        if r.returncode != 0:
            log("meson setup failed:\n" + r.stdout[-3000:])
            return None
    r = sh(["ninja", "-C", build, "wsgid"])
    if r.returncode != 0:
        log("wsgid does not build; it is left out:\n" + r.stdout[-2000:])
        return None
    return os.path.join(build, "wsgid")


def build_ceiling():
    out = os.path.join(ROOT, "build-bench", "ceiling")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    r = sh(["cc", "-O2", "-Wall", "-o", out, os.path.join(BENCH, "ceiling.c")])
    if r.returncode != 0:
        log("bench/ceiling.c does not build; the ceiling is left out:\n" + r.stdout[-1500:])
        return None
    return out


def first_line(argv):
    try:
        r = sh(argv)
        return (r.stdout.strip().splitlines() or ["?"])[0]
    except OSError:
        return "?"


def dpkg_version(pkg):
    return first_line(["dpkg-query", "-W", "-f=${Version}", pkg])


def versions(wsgid_bin, pg_bin, given=False):
    v = {
        "wsgid": first_line([wsgid_bin, "--version"]) if wsgid_bin else "not built",
        "uwsgi": "uWSGI " + first_line(["uwsgi", "--version"]),
        "gunicorn": first_line([PY, "/usr/bin/gunicorn", "--version"]),
        "mod_wsgi": "mod_wsgi %s, %s" % (
            dpkg_version("libapache2-mod-wsgi-py3"),
            first_line(["apache2", "-v"]).replace("Server version: ", "")),
        "nginx": first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        "python": first_line([PY, "--version"]),
        "flask": "Flask " + dpkg_version("python3-flask"),
        "django": "Django " + dpkg_version("python3-django"),
        "postgresql": first_line([os.path.join(pg_bin, "postgres"), "--version"])
        if pg_bin else "not found",
        "psycopg2": "psycopg2 " + dpkg_version("python3-psycopg2"),
        "jinja2": "Jinja2 " + dpkg_version("python3-jinja2"),
        "wrk": first_line(["wrk", "-v"]),
        "valgrind": first_line(["valgrind", "--version"]),
    }
    if wsgid_bin and given:
        v["wsgid"] += " (%s)" % wsgid_bin
    elif wsgid_bin:
        rev = sh(["git", "-C", ROOT, "describe", "--always", "--dirty"]).stdout.strip()
        v["wsgid"] += " (git %s, build-bench)" % rev
    return v


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
    try:  # caps the send buffer wsgid raises for a large response on a unix socket
        with open("/proc/sys/net/core/wmem_max") as f:
            wmem_max = int(f.read())
    except (OSError, ValueError):
        wmem_max = None
    return {"nproc": os.cpu_count(), "cpu": model, "memory": mem, "wmem_max": wmem_max,
            "kernel": platform.release(), "os": first_line(["sh", "-c", ". /etc/os-release; "
                                                           "echo $PRETTY_NAME"])}


# ---------------------------------------------------------------------------------------------
# processes

def proc_table():
    """pid -> ppid for every process."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            table[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            pass
    return table


def descendants(pid):
    table = proc_table()
    kids = {}
    for p, pp in table.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def children(pid):
    return [p for p, pp in proc_table().items() if pp == pid]


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def smaps_kb(pid):
    """PSS and USS (private clean + private dirty) from /proc/PID/smaps_rollup, in KiB.

    RSS counts every page a process has mapped, shared ones too: a worker that initialised
    Python itself (wsgid, mod_wsgi) counts the library pages it touched then, while a worker
    forked from a master that did it (uWSGI, gunicorn) does not count them until it touches them
    again, though both share the same page cache. USS is what the worker alone costs (freed when
    it exits); PSS shares the shared pages out among the processes using them."""
    out = {"pss": 0, "uss": 0}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == "Pss":
                    out["pss"] = int(v.split()[0])
                elif k in ("Private_Clean", "Private_Dirty"):
                    out["uss"] += int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def cpu_snapshot(pids):
    """What cpu_used() compares: per pid still there, its (utime, stime) in clock ticks and the
    time each of its threads has run, in ns (/proc/PID/task/TID/schedstat, the scheduler's own
    count)."""
    snap = {}
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            ticks = (int(fields[11]), int(fields[12]))
        except (OSError, ValueError, IndexError):
            continue  # gone
        threads = {}
        try:
            for t in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    threads[t] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            threads = None
        snap[pid] = (ticks, threads)
    return snap


def cpu_used(before, after, ticks=False):
    """(user, system) seconds the processes of `before` ran until `after` (ticks: as
    /proc/PID/stat's clock ticks alone count them, for comparison).

    /proc/PID/stat counts in clock ticks (10 ms), each of utime and stime truncated: at 5 ms a
    request a 5 s run of wsgid costs about 34 ticks, and the ticks' figure was 3.4 % under to 5.1 %
    over this one there (bench/README.md). The threads' schedstat counts the same time in ns,
    split here between user and system in the ticks' proportion. A thread that ended before
    `after` took its count with it, so where the ticks count more than the truncation explains
    (3 ticks), they are used. A process gone by `after` counts nothing, and one started after
    `before` is not in it: both lose what they ran meanwhile (the lists of pids are taken before
    the run)."""
    user = system = 0.0
    for pid, (t0, th0) in before.items():
        t1, th1 = after.get(pid, (t0, None))
        du, ds = (t1[0] - t0[0]) / CLK_TCK, (t1[1] - t0[1]) / CLK_TCK
        if not ticks and th0 is not None and th1 is not None:
            ns = sum(th1[t] - th0.get(t, 0) for t in th1) / 1e9
            if ns >= du + ds - 3.0 / CLK_TCK:
                share = du / (du + ds) if du + ds > 0 else 0.5
                du, ds = ns * share, ns * (1 - share)
        user += du
        system += ds
    return user, system


def ctx_switches(pids):
    """Context switches (voluntary + involuntary) summed over every thread of pids: a thread
    that waits (for a request, the GIL, its database, the client) and is woken again counts one
    voluntary switch, one the scheduler takes the CPU from counts one involuntary."""
    n = 0
    for pid in pids:
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches:",
                                            "nonvoluntary_ctxt_switches:")):
                            n += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return n


def proc_stat():
    """The machine's CPU counters (user nice system idle iowait irq softirq steal), in ticks."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def http_fetch(port, path="/", timeout=2.0):
    """(status, content type, body bytes) of one GET to 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, r.getheader("Content-Type") or "", body
    finally:
        c.close()


def http_get(port, path="/", timeout=2.0):
    return http_fetch(port, path, timeout)[0]
