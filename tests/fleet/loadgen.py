"""The fleet test's load: client threads, each with one keep-alive connection to a load balancer,
sending GET / one after the other (with a pause between two), until the stop file appears,
--seconds have passed or --requests were made. One line per request to --out, written as it
ends (line-buffered, so the test follows it):

    START END BALANCER OK STATUS HOST VERSION ERROR

START and END are time.monotonic() (CLOCK_MONOTONIC, the same clock as the test's), OK is 1 for
a 200, HOST and VERSION what the app answered ("-" if none), ERROR the exception's class ("-").
A request that fails closes the connection; the next one opens a new one.

    loadgen.py --out FILE --stop FILE --target NAME=HOST:PORT:THREADS [--target ...]
               [--seconds 150] [--requests 100000] [--timeout 10] [--pause 0.02]
"""
import argparse
import ctypes
import http.client
import os
import signal
import threading
import time


def client(name, host, port, args, out, lock, stop, counter):
    conn = None
    while not stop.is_set():
        with lock:
            if counter[0] >= args.requests:
                stop.set()
                break
            counter[0] += 1
        t0 = time.monotonic()
        status, who, version, err = 0, "-", "-", "-"
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
            conn.request("GET", "/", headers={"Host": "fleet"})
            r = conn.getresponse()
            body = r.read().decode(errors="replace").split()
            status = r.status
            if len(body) == 2:
                who, version = body
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:
            err = type(e).__name__
            if conn is not None:
                conn.close()
            conn = None
        t1 = time.monotonic()
        line = "%.4f %.4f %s %d %d %s %s %s\n" % (t0, t1, name, status == 200, status, who,
                                                   version, err)
        with lock:
            out.write(line)
        stop.wait(args.pause)
    if conn is not None:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--pause", type=float, default=0.02)
    args = ap.parse_args()
    # Ends with the test that started it, whatever happens to the test.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    lock = threading.Lock()
    counter = [0]
    threads = []
    with open(args.out, "w", buffering=1) as out:
        for spec in args.target:
            name, _, rest = spec.partition("=")
            host, port, n = rest.split(":")
            for _ in range(int(n)):
                threads.append(threading.Thread(
                    target=client, args=(name, host, int(port), args, out, lock, stop, counter)))
        for t in threads:
            t.start()
        deadline = time.monotonic() + args.seconds
        while not stop.is_set() and time.monotonic() < deadline:
            if os.path.exists(args.stop):
                break
            stop.wait(0.1)
        stop.set()
        for t in threads:
            t.join()


if __name__ == "__main__":
    main()
