#!/usr/bin/python3
"""Slow readers: N clients each GET a large answer and read it at about RATE bytes/s.

    slowread.py HOST PORT [--path /big] [--clients 16] [--rate 20000] [--duration 10]

Each client is a thread with a small receive buffer that reads a few KB at a time and sleeps, so
the server sees a client that drains ~20 KB/s. After --duration seconds (or on SIGTERM) every
client closes and one JSON line is printed: clients that got a status line, bytes read in total.
"""
import argparse
import json
import signal
import socket
import threading
import time

STEP = 0.1


def client(args, stop, stats, index):
    got = 0
    head = False
    sock = None
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(STEP)
        sock.connect((args.host, args.port))
        req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (args.path, args.host)
        sock.sendall(req.encode("ascii"))
        start = time.monotonic()
        while not stop.is_set():
            # Read what the rate allows since the start, so the average stays at --rate
            # whatever the kernel's window updates do to the size of each recv.
            # Wait until a step's worth is allowed: reading the few bytes allowed a moment after
            # the last read would spin this process, and the CPU it burnt would be taken from
            # the server under test (the more so the faster that server is).
            allowed = int(args.rate * (time.monotonic() - start)) - got
            if allowed < args.rate * STEP:
                stop.wait(STEP)
                continue
            try:
                data = sock.recv(min(allowed, 65536))
            except socket.timeout:
                continue
            if not data:
                break
            if not head and got == 0 and data.startswith(b"HTTP/"):
                head = True
            got += len(data)
    except OSError:
        pass
    finally:
        if sock is not None:
            sock.close()
        stats[index] = (head, got)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--path", default="/big")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--duration", type=float, default=10.0)
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stats = [(False, 0)] * args.clients
    threads = [threading.Thread(target=client, args=(args, stop, stats, i), daemon=True)
               for i in range(args.clients)]
    for t in threads:
        t.start()
    stop.wait(args.duration)
    stop.set()
    for t in threads:
        t.join(5)
    print(json.dumps({"clients": args.clients,
                      "answered": sum(1 for h, _ in stats if h),
                      "bytes": sum(g for _, g in stats)}), flush=True)


if __name__ == "__main__":
    main()
