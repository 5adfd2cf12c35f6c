"""Answers, as JSON, the CPUs its request's thread may run on ("thread"), those of a thread the
request starts ("started"), of a child it forks with os.fork ("forked") and of a program it runs
with subprocess ("program"), and its worker's pid."""
import json
import os
import subprocess
import threading


def cpus():
    return sorted(os.sched_getaffinity(0))  # 0: the calling thread


def cpu_list(text):
    out = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def forked():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps(cpus()).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def application(environ, start_response):
    started = []
    t = threading.Thread(target=lambda: started.append(cpus()))
    t.start()
    t.join()
    # grep reads its own /proc/self/status (sys.executable is not python3 in an embedded one)
    line = subprocess.run(["grep", "Cpus_allowed_list", "/proc/self/status"],
                          capture_output=True, text=True, check=True).stdout
    body = json.dumps({"pid": os.getpid(), "thread": cpus(), "started": started[0],
                       "forked": forked(), "program": cpu_list(line.split(":", 1)[1])}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
