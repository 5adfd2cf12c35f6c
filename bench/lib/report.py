"""Medians, wsgid against the best peer, targets with verdicts, the markdown, JSON and chart."""
import json
import os
import shutil
import statistics

from .scenarios import SCEN, SCENARIOS
from .servers import PATH_LABEL
from .util import log, sh

PEERS = ("uwsgi", "uwsgi-pinned", "gunicorn", "mod_wsgi")
# uWSGI as the targets that name it count it: the better of its two configurations.
UWSGI = ("uwsgi", "uwsgi-pinned")

# The figures that are not per-scenario rows: key, label, unit, higher-is-better, digits.
OTHER_FIGURES = [
    ("slow_fraction", "hello direct with 16 slow readers", "% of idle", True, 1),
    ("slow_rss", "worker RSS (sum) with 16 slow readers", "MiB", False, 1),
    ("rss_worker", "worker RSS 1 s after the keep-alive session (median/worker)", "MiB", False, 1),
    ("rss_workers_sum", "worker RSS 1 s after the keep-alive session (sum)", "MiB", False, 1),
    ("rss_total", "all server processes RSS", "MiB", False, 1),
    ("pss_worker", "worker PSS (median/worker)", "MiB", False, 1),
    ("uss_worker", "worker USS (private pages, median/worker)", "MiB", False, 1),
    ("pss_total", "all server processes PSS (the memory it takes)", "MiB", False, 1),
    ("instr_per_req", "instructions per request (callgrind, hello, keep-alive)", "instr/req",
     False, 0),
]


def fmt(v, digits):
    if v is None:
        return "n/a"
    return ("{:,.%df}" % digits).format(v)


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


# ---------------------------------------------------------------------------------------------
# wsgid against the best peer

def rows_of(run, key):
    """{(server, path): [records]} of one scenario."""
    out = {}
    for name, recs in run.results.items():
        k, server, path = name.split("/")
        if k == key:
            out[(server, path)] = recs
    return out


def row_median(recs, field):
    return med([r.get(field) for r in recs])


def failure_rate(recs):
    """Share of the requests that failed: non-2xx answers (nginx's 502 when it cannot reach the
    server) and wrk timeouts. Read errors are not counted: a server that closes the connection
    after each answer (uWSGI --http-socket) shows as read errors in wrk."""
    total = sum(r.get("requests", 0) for r in recs)
    bad = sum(r.get("errors", 0) + (r.get("socket_errors") or {}).get("timeout", 0)
              + (r.get("socket_errors") or {}).get("connect", 0) for r in recs)
    return bad / total if total else 0.0


MAX_FAILURES = 0.01     # a row failing more requests than this cannot be anyone's best
# A row that had a round with fewer answers than this cannot be anyone's best either: the
# requests that never came back are not failures to wrk (its timeout is the run's length), and
# the p99 of a handful of answers says nothing (RESULTS-20261203-1127: uWSGI over keep-alive
# proxy_pass answered 1 hello request in 5 s while 16 connections held all its threads, and its
# p99 of 0.24 ms came out as the mixed test's best).
MIN_ANSWERED = 10


def eligible(recs):
    return (failure_rate(recs) <= MAX_FAILURES
            and all(r.get("requests", 0) >= MIN_ANSWERED for r in recs))


def pick(rows, servers, field, higher):
    """The (server, path) of servers with the best median of field, and that median. Rows that
    failed more than 1 % of their requests are left out."""
    best = None
    for (server, path), recs in rows.items():
        if server not in servers or not eligible(recs):
            continue
        v = row_median(recs, field)
        if v is None:
            continue
        if best is None or (v > best[1] if higher else v < best[1]):
            best = ((server, path), v)
    return best


def per_round(rows, servers, field, higher):
    """round -> the best value among servers' rows in that round."""
    out = {}
    for (server, _), recs in rows.items():
        if server not in servers or not eligible(recs):
            continue
        for r in recs:
            v = r.get(field)
            if v is None or (field == "rps" and not v):
                continue
            rd = r["round"]
            if rd not in out or (v > out[rd] if higher else v < out[rd]):
                out[rd] = v
    return out


def round_ratios(rows, mine, theirs, field, higher):
    a = per_round(rows, mine, field, higher)
    b = per_round(rows, theirs, field, higher)
    return [a[r] / b[r] for r in sorted(a) if r in b and b[r]]


def compare(run, key):
    """wsgid's best row against the best peer's, on the scenario's primary figure and on CPU."""
    sc = SCEN[key]
    rows = rows_of(run, key)
    higher = sc.primary == "rps"
    out = {"key": key, "primary": sc.primary, "rows": rows}
    w = pick(rows, ("wsgid",), sc.primary, higher)
    p = pick(rows, PEERS, sc.primary, higher)
    out["wsgid"], out["peer"] = w, p
    if w and p and p[1]:
        out["ratio"] = w[1] / p[1]
        rr = round_ratios(rows, ("wsgid",), PEERS, sc.primary, higher)
        out["ratio_range"] = (min(rr), max(rr)) if rr else None
    wc = pick(rows, ("wsgid",), "cpu_us", False)
    pc = pick(rows, PEERS, "cpu_us", False)
    out["wsgid_cpu"], out["peer_cpu"] = wc, pc
    if wc and pc and pc[1]:
        out["cpu_ratio"] = wc[1] / pc[1]
        rr = round_ratios(rows, ("wsgid",), PEERS, "cpu_us", False)
        out["cpu_ratio_range"] = (min(rr), max(rr)) if rr else None
    return out


def against(run, key, peer, field, higher):
    """wsgid's best row against the best row of the servers in peer (a tuple) on field: (ratio,
    wsgid row, peer row)."""
    rows = rows_of(run, key)
    w = pick(rows, ("wsgid",), field, higher)
    p = pick(rows, peer, field, higher)
    if not (w and p and p[1]):
        return None, w, p
    return w[1] / p[1], w, p


def where(row):
    """'server, path' of a pick() result."""
    return "%s, %s" % (row[0][0], PATH_LABEL[row[0][1]]) if row else "n/a"


def floor_of(run, key):
    """The app's own CPU per request in scenario key with no server (lib/floor.py), or None."""
    f = (getattr(run, "floor", None) or {}).get(key)
    return f["cpu_us"] if f else None


def floor_rps_of(run, key):
    """For an app that mostly waits (with no server, its process used under half a CPU: the I/O
    tests), the most req/s its threads allow: its req/s with no server in one process of the
    run's threads (lib/floor.py), times the run's processes. No server can serve more, whatever
    its CPU. None for an app that keeps its CPU busy (the CPUs, shared with nginx and the client
    in the rounds, bound it first) or without a floor."""
    f = (getattr(run, "floor", None) or {}).get(key)
    procs = getattr(getattr(run, "args", None), "processes", None)
    if not f or not f.get("rps") or not procs or f.get("busy", f["cpu_us"] * f["rps"] / 1e6) >= 0.5:
        return None
    return f["rps"] * procs


def places_text(run):
    """How the report's floors were measured: where their threads ran."""
    counts = {len(f.get("runs", {})) for f in (getattr(run, "floor", None) or {}).values()}
    if counts == {2}:
        return (", the threads once on any CPU and once all on one; the lower CPU and the "
                "higher req/s of the two count")
    return ", the threads on any CPU" if counts == {1} else ""


def floor_bounds(fl, *rows):
    """Whether the app alone (fl) bounds the CPU of these pick() rows: it costs no more than any.
    An app that waits on many round trips (/queries, /updates) wakes an idle CPU at each of them
    on the quiet machine, and can cost more alone than under a loaded server: no bound then."""
    return all(r is None or r[1] is None or fl <= r[1] for r in rows)


def floor_rows(run, comps):
    """Per scenario with a floor: (label, floor, wsgid CPU, peer CPU, wsgid over the app, peer
    over the app, the lowest CPU ratio a server adding nothing would show)."""
    out = []
    for c in comps:
        fl = floor_of(run, c["key"])
        if fl is None:
            continue
        w = c["wsgid_cpu"][1] if c.get("wsgid_cpu") else None
        p = c["peer_cpu"][1] if c.get("peer_cpu") else None
        out.append((SCEN[c["key"]].label, fl, w, p, None if w is None else w - fl,
                    None if p is None else p - fl,
                    fl / p if p and floor_bounds(fl, c.get("wsgid_cpu"), c.get("peer_cpu"))
                    else None))
    return out


def uwsgi_pass_basis(run, field, higher):
    """The rounds' range of wsgid against uWSGI behind uwsgi_pass, and the bound: the no-app
    ceiling backend against uWSGI (req/s: more than it no server can show, nginx making a
    connection per request being the limit), or the ceiling's CPU plus the app's own over uWSGI's
    (CPU: a server adding nothing to a connection's kernel cost and the app)."""
    rows = rows_of(run, "hello_uwsgi")
    rr = round_ratios(rows, ("wsgid",), UWSGI, field, higher)
    parts = ["rounds %.2fx-%.2fx" % (min(rr), max(rr))] if rr else []
    ceil = pick(rows, ("ceiling",), field, higher)
    peer = pick(rows, UWSGI, field, higher)
    if ceil and peer and peer[1]:
        if field == "rps":
            parts.append("the no-app ceiling: %.2fx" % (ceil[1] / peer[1]))
        elif floor_of(run, "hello_uwsgi") is not None:
            parts.append("the no-app ceiling plus the app alone: %.2fx"
                         % ((ceil[1] + floor_of(run, "hello_uwsgi")) / peer[1]))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# targets (issue #10; the "nothing regresses" ones of issue #4)

def targets(run):
    meds = {s: {k: med(v) for k, v in figs.items()} for s, figs in run.data.items()}
    w, u = meds.get("wsgid", {}), meds.get("uwsgi", {})
    out = []

    def add(label, val, ok, shown, basis):
        out.append((label, "n/a" if val is None else shown % val,
                    "n/a" if val is None else ("met" if ok(val) else "NOT met"), basis))

    def basis(c, cpu=False):
        a, b = (c.get("wsgid_cpu"), c.get("peer_cpu")) if cpu else (c.get("wsgid"), c.get("peer"))
        if not a or not b:
            return ""
        rng = c.get("cpu_ratio_range" if cpu else "ratio_range")
        text = "%s vs %s%s" % (where(a), where(b), "; rounds %.2fx-%.2fx" % rng if rng else "")
        fl = floor_of(run, c["key"])
        if cpu and fl and b[1]:
            text += "; the app alone: %.2fx%s" % (fl / b[1], "" if floor_bounds(fl, a, b) else
                                                 " (more than a server's whole figure: no bound)")
        bound = None if cpu else floor_rps_of(run, c["key"])
        if bound and b[1]:
            text += "; the app alone allows %s req/s (%.2fx)" % (fmt(bound, 0), bound / b[1])
        return text

    c = compare(run, "io_0.5ms")
    add("0.5 ms I/O: req/s >= 1.2x the best peer", c.get("ratio"), lambda r: r >= 1.2, "%.2fx",
        basis(c))
    add("0.5 ms I/O: CPU/request <= the lowest peer's", c.get("cpu_ratio"), lambda r: r <= 1.0,
        "%.2fx", basis(c, True))
    for key in ["io_5ms"] + [s.key for s in SCENARIOS if s.key.startswith("tfb_")]:
        c = compare(run, key)
        name = "5 ms I/O" if key == "io_5ms" else "TechEmpower %s" % SCEN[key].url
        add("%s: req/s >= the best peer" % name, c.get("ratio"), lambda r: r >= 1.0, "%.2fx",
            basis(c))
        add("%s: CPU/request <= 0.8x the lowest peer's" % name, c.get("cpu_ratio"),
            lambda r: r <= 0.8, "%.2fx", basis(c, True))
    r, a, b = against(run, "c1", UWSGI, "cpu_us", False)
    add("one connection: CPU/request <= uWSGI's", r, lambda x: x <= 1.0, "%.2fx",
        "%s vs %s" % (where(a), where(b)) if r else "")
    r, a, b = against(run, "c1", UWSGI, "p99_ms", False)
    add("one connection: p99 <= 1.5x uWSGI's", r, lambda x: x <= 1.5, "%.2fx",
        "%s vs %s" % (where(a), where(b)) if r else "")
    r, a, b = against(run, "hello_uwsgi", UWSGI, "rps", True)
    add("hello through uwsgi_pass: req/s >= 1.3x uWSGI (one socket)", r, lambda x: x >= 1.3,
        "%.2fx", uwsgi_pass_basis(run, "rps", True))
    r, a, b = against(run, "hello_uwsgi", UWSGI, "cpu_us", False)
    add("hello through uwsgi_pass: CPU/request <= 0.75x uWSGI's", r, lambda x: x <= 0.75,
        "%.2fx", uwsgi_pass_basis(run, "cpu_us", False))
    add("no regression: 16 slow readers, wsgid keeps >= 90% of idle req/s",
        w.get("slow_fraction"), lambda x: x >= 90.0, "%.1f%%", "")
    add("no regression: worker RSS <= uWSGI's",
        w["rss_worker"] / u["rss_worker"] if w.get("rss_worker") and u.get("rss_worker")
        else None, lambda x: x <= 1.0, "%.2fx",
        "%.1f vs %.1f MiB" % (w["rss_worker"], u["rss_worker"])
        if w.get("rss_worker") and u.get("rss_worker") else "")
    r, a, b = against(run, "hello_direct", UWSGI, "rps", True)
    add("no regression: direct hello >= 2x uWSGI", r, lambda x: x >= 2.0, "%.2fx",
        "uWSGI %s" % ("--http11-socket" if run.args.uwsgi_http11 else "--http-socket"))
    return out


# ---------------------------------------------------------------------------------------------
# the markdown

def steal_line(run, meta):
    """How many timed runs the host's steal made the bench measure again (bench/run: measured)."""
    cap = meta["steal_max"]
    recs = [x for rows in run.results.values() for x in rows]
    again = getattr(run, "steal_log", [])
    over = [(k, x) for k, rows in run.results.items() for x in rows
            if (x.get("cpu_steal_pct") or 0) > cap]
    text = ("a timed run during which the host stole more than %g %% of the CPU was measured "
            "again, up to %d times, and the run with the least steal counts: %d of %d runs were "
            "measured again (within %g minutes in all)"
            % (cap, meta["steal_retries"], len(again), len(recs), meta.get("steal_budget", 0)))
    if meta.get("steal_settle"):
        text += ("; before that, a warm-up during which it stole more was repeated, up to %d "
                 "times (%d warm-ups repeated)" % (meta["steal_settle"], meta.get("settle_extra", 0)))
    if over:
        worst = sorted(over, key=lambda kx: -(kx[1].get("cpu_steal_pct") or 0))[:6]
        text += "; %d stayed over %g %% (%s%s)" % (
            len(over), cap, ", ".join("%s round %s: %.1f %%" % (k, x.get("round"),
                                                             x.get("cpu_steal_pct") or 0)
                                      for k, x in worst),
            ", ..." if len(over) > len(worst) else "")
    else:
        text += "; none stayed over %g %%" % cap
    return text


def write_results(run, meta, outdir):
    names = [s for s in ("wsgid", "uwsgi", "uwsgi-pinned", "gunicorn", "mod_wsgi", "ceiling")
             if s in meta["servers_run"]]
    stamp = meta["stamp"] + ("-quick" if meta["quick"] else "")
    os.makedirs(outdir, exist_ok=True)
    base = os.path.join(outdir, "RESULTS-%s" % stamp)
    comps = [compare(run, s.key) for s in SCENARIOS if rows_of(run, s.key)]
    summary = []
    for c in comps:
        summary.append({k: v for k, v in c.items() if k != "rows"})
    raw = {"meta": meta, "results": run.results, "values": run.data, "notes": run.notes,
           "checks": run.checks, "runs": run.detail, "steal": getattr(run, "steal_log", []),
           "summary": summary,
           "targets": targets(run), "floor": getattr(run, "floor", {})}
    with open(base + ".json", "w") as f:
        json.dump(raw, f, indent=1, default=str)  # in order: a rewritten report reads the same

    L = []
    L.append("# wsgid side-by-side benchmark — %s" % meta["date"])
    L.append("")
    m = meta["machine"]
    L.append("- machine: %s CPUs, %s, %s RAM, %s, Linux %s%s"
             % (m["nproc"], m["cpu"], m["memory"], m["os"], m["kernel"],
                "" if m.get("wmem_max") is None else
                ", net.core.wmem_max %d (the most a unix socket's send buffer can be raised to "
                "is twice that)" % m["wmem_max"]))
    L.append("- every server: %d processes x %d threads, the same apps (bench/apps), started once "
             "per path with only that path's listener; %s; one nginx (%d worker%s)"
             % (meta["processes"], meta["threads"],
                "every (server, path) of an app started at once (direct apart) and each "
                "scenario timed on one after the other, so that a round's ratio compares runs "
                "seconds apart" if meta.get("interleaved") == "app" else
                "all servers of a path started at once and each scenario timed on one after the "
                "other" if meta.get("interleaved") else "one server at a time",
                meta["nginx_workers"], "s" if meta["nginx_workers"] > 1 else ""))
    L.append("- uWSGI: %s, --listen %s; direct path %s"
             % ("--thunder-lock" if meta["uwsgi_thunder_lock"] else "no --thunder-lock",
                meta.get("uwsgi_listen", 100), meta["uwsgi_direct"]))
    L.append("- scheduling: %s" % (
        "each server and nginx in a session of its own (--own-sessions)"
        if meta.get("own_sessions") else
        "servers, nginx and the clients in one session (one autogroup); see bench/README.md"))
    L.append("- %d round%s, servers alternating; wrk %d s per run (after %s s of the same load, not "
             "counted); hello -c%d, I/O -c%d, "
             "TechEmpower -c%d, mixed -c%d with %d on the 50 ms endpoint, POST -c%d, 16 MiB -c%d; "
             "medians over rounds; the run took %s minutes%s"
             % (meta["rounds"], "s" if meta["rounds"] > 1 else "", meta["duration"],
                meta.get("settle", 0), meta["connections"], meta["io_connections"], meta["tfb_connections"],
                meta["mixed_connections"], meta["mixed_slow_connections"],
                meta["post_connections"], meta["big_connections"], meta.get("minutes", "?"),
                "; QUICK validation run, not a measurement" if meta["quick"] else ""))
    if "steal_max" in meta:
        L.append("- steal: " + steal_line(run, meta))
    L.append("- command: `%s`" % meta["command"])
    if meta.get("stopped_early"):
        L.append("- **stopped early** (%s): the scenarios and rounds after it were not measured"
                 % meta["stopped_early"])
    L.append("")
    L.append("Versions:")
    L.append("")
    for k, v in meta["versions"].items():
        L.append("- %s: %s" % (k, v))

    # Summary: wsgid against the best peer, scenario by scenario.
    L.append("")
    L.append("## wsgid against the best peer")
    L.append("")
    L.append("Best peer: the highest req/s among uWSGI (as it starts, and with --cpu-affinity 1: "
             "uwsgi-pinned), gunicorn and mod_wsgi over the paths each ran (for the mixed test: "
             "the lowest hello p99); for CPU the lowest peer. wsgid's best path counts for wsgid. "
             "A row that failed more than 1 % of its requests "
             "(non-2xx, wrk timeouts or connect errors), or that had a round with fewer than "
             + str(MIN_ANSWERED) + " answers, is nobody's best. Ratio: wsgid / best "
             "peer, median of the medians, and in brackets the range of the per-round ratios.")
    L.append("")
    L.append("| scenario | wsgid | best peer | ratio | wsgid CPU us/req | lowest peer CPU us/req "
             "| CPU ratio | p50 / p99 ms wsgid | p50 / p99 ms best peer |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for c in comps:
        sc = SCEN[c["key"]]
        unit = "req/s" if sc.primary == "rps" else "ms p99"
        digits = 0 if sc.primary == "rps" else 2

        def cell(row, side):
            if not row:
                ran = [recs for (srv, _), recs in c["rows"].items() if srv in side]
                if ran and all(r.get("requests", 0) == 0 for recs in ran for r in recs):
                    return "no answer within a run"
                if ran:
                    return "none within 1 % failures"
                return "n/a"
            return "%s %s (%s)" % (fmt(row[1], digits), unit, PATH_LABEL[row[0][1]]
                                   if row[0][0] == "wsgid" else where(row))

        def lat(row):
            if not row:
                return "n/a"
            recs = c["rows"][row[0]]
            return "%s / %s" % (fmt(row_median(recs, "p50_ms"), 2),
                                fmt(row_median(recs, "p99_ms"), 2))

        rng = c.get("ratio_range")
        crng = c.get("cpu_ratio_range")
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            sc.label, cell(c["wsgid"], ("wsgid",)), cell(c["peer"], PEERS),
            "%.2fx%s" % (c["ratio"], " [%.2f-%.2f]" % rng if rng else "")
            if c.get("ratio") else "n/a",
            "%s (%s)" % (fmt(c["wsgid_cpu"][1], 1), PATH_LABEL[c["wsgid_cpu"][0][1]])
            if c["wsgid_cpu"] else "n/a",
            "%s (%s)" % (fmt(c["peer_cpu"][1], 1), where(c["peer_cpu"]))
            if c["peer_cpu"] else "n/a",
            "%.2fx%s" % (c["cpu_ratio"], " [%.2f-%.2f]" % crng if crng else "")
            if c.get("cpu_ratio") else "n/a",
            lat(c["wsgid"]), lat(c["peer"])))

    L.append("")
    L.append("## Targets (issue #10)")
    L.append("")
    L.append("| target | wsgid | verdict | basis |")
    L.append("|---|---|---|---|")
    for label, val, verdict, why in raw["targets"]:
        L.append("| %s | %s | %s | %s |" % (label, val, verdict, why))

    fr = floor_rows(run, comps)
    if fr:
        L.append("")
        L.append("## What the app itself costs")
        L.append("")
        L.append("The app alone: its own CPU per request with no server at all (bench/lib/floor.py:"
                 " `application` called in %d threads of one process, on the quiet machine "
                 "before the rounds%s). For an app that keeps its CPU busy, no server can cost "
                 "less. One that waits on many round trips (/queries and /updates: 20 or 21 to "
                 "PostgreSQL a request) is another matter: alone on the quiet machine, each wait "
                 "leaves a CPU idle and each answer wakes it (on a virtual machine a costly exit "
                 "and interrupt), while under the rounds' load a CPU is rarely idle; there the app "
                 "alone can cost more than a server's whole figure (over the app at or below "
                 "zero), and it bounds nothing. Over the app: a server's CPU per "
                 "request minus that, the most a change of server could save (under the rounds' "
                 "load a busy app itself costs more, so this over-states the server's part). A "
                 "server adding nothing: the app alone over the lowest peer's CPU, the lowest CPU "
                 "ratio any server could show (n/a where the app alone bounds nothing); a CPU "
                 "target below it is out of a server's reach. "
                 "For an app that mostly waits (the I/O tests), the same child's req/s times %d "
                 "processes is the most its threads allow (a target's basis: \"the app alone "
                 "allows\"): a req/s target above that bound is out of every server's reach."
                 % (meta["threads"], places_text(run), meta["processes"]))
        L.append("")
        L.append("| scenario | the app alone us/req | wsgid CPU us/req | over the app | lowest "
                 "peer CPU us/req | over the app | wsgid's part / the peer's | a server adding "
                 "nothing |")
        L.append("|---|---|---|---|---|---|---|---|")
        for label, fl, w, p, wo, po, lowest in fr:
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                label, fmt(fl, 1), fmt(w, 1), fmt(wo, 1), fmt(p, 1), fmt(po, 1),
                # a part at or under nothing (the app costing less under the server than alone)
                # makes no ratio
                "%.2fx" % (wo / po) if wo is not None and wo > 0 and po and po > 1.0 else "n/a",
                "%.2fx" % lowest if lowest else "n/a"))

    # Every row.
    L.append("")
    L.append("## Every server on every path")
    L.append("")
    L.append("Medians over rounds. CPU: the time the threads of the server's whole process tree "
             "ran (/proc schedstat, ns; clock ticks for a process a thread of which ended "
             "meanwhile) per answered request; nginx's and PostgreSQL's separately (for "
             "the mixed test: per request of both endpoints). Switches: the context switches of "
             "every thread of the server's tree per answered request (/proc, voluntary and "
             "involuntary: a thread that waits and is woken, or is preempted), the wake-ups a "
             "request costs. vs wsgid: req/s (for the mixed test p99) over wsgid's best row of "
             "the scenario.")
    L.append("")
    L.append("| scenario | server | path | req/s | vs wsgid | CPU us/req | switches/req | "
             "nginx CPU us/req | PostgreSQL CPU us/req | p50 ms | p99 ms | non-2xx | "
             "socket errors |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in comps:
        sc = SCEN[c["key"]]
        ref = c["wsgid"][1] if c["wsgid"] else None
        order = sorted(c["rows"].items(),
                       key=lambda kv: (names.index(kv[0][0]) if kv[0][0] in names else 9,
                                       ("uwsgi", "ka", "fcgi", "direct").index(kv[0][1])))
        for (server, path), recs in order:
            v = row_median(recs, sc.primary)
            sock = {}
            for r in recs:
                for k2, n in (r.get("socket_errors") or {}).items():
                    if n:
                        sock[k2] = sock.get(k2, 0) + n
            L.append("| %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %d | %s |" % (
                sc.key, server, PATH_LABEL[path], fmt(row_median(recs, "rps"), 0),
                "" if eligible(recs) else
                " (%.0f %% failed)" % (100 * failure_rate(recs))
                if failure_rate(recs) > MAX_FAILURES else
                " (a round with %d answers)" % min(r.get("requests", 0) for r in recs),
                "%.2fx" % (v / ref) if ref and v is not None and server != "wsgid" else "",
                fmt(row_median(recs, "cpu_us"), 1), fmt(row_median(recs, "switches"), 2),
                fmt(row_median(recs, "nginx_cpu_us"), 1),
                fmt(row_median(recs, "db_cpu_us"), 1) if sc.app == "tfb" else "",
                fmt(row_median(recs, "p50_ms"), 2), fmt(row_median(recs, "p99_ms"), 2),
                sum(r.get("errors", 0) for r in recs),
                ", ".join("%s %d" % kv for kv in sorted(sock.items())) or "0"))

    # The mixed test's 50 ms load against what the threads allow: a shortfall is threads left
    # idle while requests waited (wsgid behind nginx keep-alive, see bench/README.md).
    for c in comps:
        if c["key"] != "mixed":
            continue
        most = meta["processes"] * meta["threads"] * 1000 / 50
        L.append("")
        L.append("The mixed test's 50 ms load, per round (req/s; %d threads in all allow %.0f). "
                 "Below that, the threads were not all serving it: idle while requests waited "
                 "in another worker's queue (as wsgid's behind nginx keep-alive did before its "
                 "keep-alive balance, see bench/README.md), or "
                 "held up by the server itself." % (meta["processes"] * meta["threads"], most))
        L.append("")
        L.append("| server | path | 50 ms load req/s, rounds | the lowest as a share of %.0f |"
                 % most)
        L.append("|---|---|---|---|")
        for (server, path), recs in sorted(c["rows"].items()):
            got = [r["slow_rps"] for r in recs if "slow_rps" in r]
            if got:
                L.append("| %s | %s | %s | %.0f %% |" % (
                    server, PATH_LABEL[path], ", ".join("%.0f" % v for v in got),
                    100 * min(got) / most))

    # The other figures, as before: per server, ratio to wsgid.
    meds = {s: {k: med(v) for k, v in figs.items()} for s, figs in run.data.items()}
    others = [f for f in OTHER_FIGURES if any(f[0] in meds.get(n, {}) for n in names)]
    if others:
        srv = [n for n in names if n != "ceiling"]
        L.append("")
        L.append("## Memory and slow readers")
        L.append("")
        L.append("| figure | unit | " + " | ".join(srv) + " |")
        L.append("|" + "---|" * (2 + len(srv)))
        for key, label, unit, higher, digits in others:
            ref = meds.get("wsgid", {}).get(key)
            cells = []
            for n in srv:
                v = meds.get(n, {}).get(key)
                if v is None and key == "instr_per_req" \
                        and any("callgrind" in t for t in run.notes.get(n, [])):
                    cells.append("impractical (see notes)")
                elif v is None:
                    cells.append("n/a")
                elif n == "wsgid" or not ref:
                    cells.append(fmt(v, digits))
                else:
                    cells.append("%s (%.2fx)" % (fmt(v, digits), v / ref))
            L.append("| %s | %s %s | %s |" % (label, unit, "↑" if higher else "↓",
                                              " | ".join(cells)))
        L.append("")
        L.append("In brackets: that server's figure over wsgid's (↑ higher is better, ↓ lower).")

    ceil = rows_of(run, "hello_uwsgi").get(("ceiling", "uwsgi"))
    ceil_ka = rows_of(run, "hello_ka").get(("ceiling", "ka"))
    if ceil or ceil_ka:
        L.append("")
        L.append("The ceiling: `bench/ceiling.c` answers every request with the same bytes and runs "
                 "no app — what nginx and wrk leave on this machine for a backend that costs "
                 "nothing: %s req/s through uwsgi_pass (nginx opens a connection per request "
                 "there), %s req/s through keep-alive proxy_pass."
                 % (fmt(row_median(ceil, "rps"), 0) if ceil else "n/a",
                    fmt(row_median(ceil_ka, "rps"), 0) if ceil_ka else "n/a"))

    if run.checks:
        L.append("")
        L.append("## Response checks (one request per URL and session, before timing)")
        L.append("")
        for server, sessions in run.checks.items():
            for sess, urls in sessions.items():
                bad = {u: why for u, why in urls.items() if why != "ok"}
                L.append("- %s, %s: %s" % (server, sess, "all %d URLs right (%s)"
                                           % (len(urls), " ".join(sorted(urls)))
                                           if not bad else "; ".join("%s: %s" % kv
                                                                     for kv in bad.items())))
    if run.notes:
        L.append("")
        L.append("Notes:")
        L.append("")
        for n, lines in run.notes.items():
            for line in lines:
                L.append("- %s: %s" % (n, line))
    L.append("")
    L.append("Raw numbers: `%s`; chart: `latest.png`." % os.path.basename(base + ".json"))
    text = "\n".join(L) + "\n"
    with open(base + ".md", "w") as f:
        f.write(text)
    shutil.copyfile(base + ".md", os.path.join(outdir, "latest.md"))
    shutil.copyfile(base + ".json", os.path.join(outdir, "latest.json"))
    png = chart(comps, outdir, base)
    log("results: %s.md%s" % (base, (", " + png) if png else ""))
    return base + ".md"


# ---------------------------------------------------------------------------------------------
# the chart: wsgid's advantage over the best peer per scenario (> 1: wsgid ahead)

SHORT = {"hello_uwsgi": "hello uwsgi_pass", "hello_ka": "hello keep-alive",
         "hello_direct": "hello direct", "c1": "1 connection", "io_0.5ms": "I/O 0.5 ms",
         "io_5ms": "I/O 5 ms", "mixed": "mixed (p99)", "post": "POST 1 MiB", "big": "GET 16 MiB",
         "tfb_json": "TFB json", "tfb_db": "TFB db", "tfb_queries": "TFB queries",
         "tfb_fortunes": "TFB fortunes", "tfb_updates": "TFB updates",
         "tfb_plaintext": "TFB plaintext", "flask": "Flask",
         "django": "Django"}


def chart(comps, outdir, base):
    if not shutil.which("gnuplot"):
        return None
    lines, seen = [], []
    for c in comps:
        if not c.get("ratio") and not c.get("cpu_ratio"):
            continue
        # Both bars read "higher is better for wsgid": throughput wsgid / best peer (for the
        # mixed test best-peer p99 / wsgid p99), CPU lowest peer / wsgid.
        inv = c["primary"] != "rps"
        r = c.get("ratio")
        rr = c.get("ratio_range") or (r, r)
        if r and inv:
            r, rr = 1 / r, (1 / rr[1], 1 / rr[0])
        cr = c.get("cpu_ratio")
        crr = c.get("cpu_ratio_range") or (cr, cr)
        if cr:
            cr, crr = 1 / cr, (1 / crr[1], 1 / crr[0])
        vals = []
        for v, lo_hi in ((r, rr), (cr, crr)):
            vals += ["%.4f %.4f %.4f" % (v, lo_hi[0], lo_hi[1]) if v else "NaN NaN NaN"]
            if v:
                seen.extend(lo_hi)
        lines.append('"%s" %s' % (SHORT.get(c["key"], c["key"]), " ".join(vals)))
    if not lines:
        return None
    # A log scale: 2x ahead and 2x behind are as far from 1.
    lo, hi = min(seen + [0.5]) / 1.3, max(seen + [2.0]) * 1.3
    dat = base + ".dat"
    with open(dat, "w") as f:
        f.write("\n".join(lines) + "\n")
    png = base + ".png"
    g = ['set terminal pngcairo noenhanced size %d,560 font "sans,10"'
         % max(900, 70 * len(lines) + 200),
         'set output "%s"' % png,
         'set title "wsgid against the best peer (uWSGI with and without --cpu-affinity, '
         'gunicorn, mod_wsgi), scenario by scenario\\n> 1: wsgid ahead; bars: median, whiskers: range of the per-round ratios"',
         "set style data histograms", "set style histogram errorbars gap 1 lw 1",
         "set style fill solid 0.85 border -1", "set key below", "set grid ytics",
         "set logscale y 2", "set yrange [%g:%g]" % (lo, hi),
         "set xtics nomirror rotate by -30",
         'set ylabel "ratio (log scale)"',
         'plot "%s" using 2:3:4:xtic(1) title "req/s: wsgid / best peer (mixed: p99 best peer / '
         'wsgid)", "" using 5:6:7 title "CPU per request: lowest peer / wsgid", '
         "1 with lines lc rgb 'black' notitle" % dat]
    r = sh(["gnuplot"], input="\n".join(g) + "\n")
    os.unlink(dat)
    if r.returncode != 0 or not os.path.exists(png):
        log("gnuplot failed: " + r.stdout[-500:])
        return None
    shutil.copyfile(png, os.path.join(outdir, "latest.png"))
    return png
