"""Threads an app starts, and the working directory each sees (tests/e2e/test_app_groups.py).

At import a daemon thread starts; GET ?start=1 starts more inside the request: a threading.Thread,
one with _thread.start_new_thread and a concurrent.futures.ThreadPoolExecutor's. Each notes
os.getcwd() every 10 ms for its whole life (the executor's when the threading.Thread asks it), in
a set per kind of thread. ?sleep=S holds the request S seconds first, so that the other apps'
threads run while the pool thread serves this one. Any GET answers JSON: the request's working
directory and, per kind, the directories its threads have seen."""
import _thread
import concurrent.futures
import json
import os
import threading
import time
from urllib.parse import parse_qs

seen = {}
executor = None


def note(kind):
    seen.setdefault(kind, set()).add(os.getcwd())


def sample(kind, also=None):
    while True:
        note(kind)
        if also is not None:
            try:
                also()
            except RuntimeError:  # the executor is shut down: the interpreter is ending
                also = None
        time.sleep(0.01)


threading.Thread(target=sample, args=("import",), daemon=True).start()


def start():
    global executor
    _thread.start_new_thread(sample, ("_thread",))
    executor = concurrent.futures.ThreadPoolExecutor(1)
    executor.submit(note, "executor").result()  # its thread starts here, in the request
    threading.Thread(target=sample, daemon=True,
                     args=("thread", lambda: executor.submit(note, "executor").result())).start()


def application(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    if "start" in q:
        start()
    if "sleep" in q:
        time.sleep(float(q["sleep"][0]))
    body = json.dumps({"cwd": os.getcwd(),
                       "seen": {k: sorted(v) for k, v in seen.items()}}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
