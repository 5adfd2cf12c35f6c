"""An app that leaves threads running, as sentry-sdk or a metrics pusher does
(tests/e2e/test_app_groups.py): at import, unless the environment's THREADS is 0, a daemon thread
that sleeps for an hour and a module-level multiprocessing ThreadPool of 2 (whose worker and
handler threads are daemon threads too; multiprocessing's own atexit handler ends them, maybe not
before the interpreter is left). An atexit handler appends "atexit WHO" to
$WSGID_E2E_DIR/atexit.log, WHO being the mount's env, so that a test sees which interpreters ran
theirs. Any GET answers "WHO THREADS", THREADS being how many threads its interpreter runs."""
import atexit
import multiprocessing.pool
import os
import threading
import time

WHO = os.environ.get("WHO", "?")


def _said_at_exit():
    with open(os.path.join(os.environ["WSGID_E2E_DIR"], "atexit.log"), "a") as f:
        f.write("atexit %s %d\n" % (WHO, os.getpid()))


atexit.register(_said_at_exit)

if os.environ.get("THREADS", "1") != "0":
    threading.Thread(target=lambda: time.sleep(3600), daemon=True, name="sleeper").start()
    pool = multiprocessing.pool.ThreadPool(2)


def application(environ, start_response):
    body = ("%s %d" % (WHO, threading.active_count())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
