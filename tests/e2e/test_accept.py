"""Accepting without a thundering herd (issue #10): every worker of a group watches the same
listening socket, and a new connection must wake one of them, not all.

Two idle workers get one connection at a time. Each worker's loop thread (its main thread)
counts its voluntary context switches, i.e. how often it went to sleep; one worker takes the
connections, and the other must sleep through them: it may wake for its own timers, not for
the connections. The second test starts the workers the old way (WSGID_ACCEPT_HERD=1: the
listeners in an epoll instance of their own, nested in the loop's, where EPOLLEXCLUSIVE holds
nothing back) and shows that the same traffic then wakes both, so the first test can fail.
wsgid_accept_empty_total counts the wake-ups that found the listener empty (some of a herd's:
a loop woken late sees no event at all).

The third test: a worker at capacity still takes a connection that waits (after a grace left to
its siblings), and sleeps while none comes."""
import threading
import time

from helpers.clients import assert_hello, request
from helpers.procs import free_port, wait_for
from test_metrics import metrics, samples, start

N = 60
KEY = 'wsgid_accept_empty_total{group="site"}'


def sleeps(pid):
    """How often the worker's loop thread has gone to sleep."""
    with open("/proc/%d/task/%d/status" % (pid, pid)) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc/%d/task/%d/status" % (pid, pid))


def wakeups(d, maddr):
    """Sends N requests, each on a new connection once both workers sleep; returns the rise of
    each worker's loop-thread sleeps and of wsgid_accept_empty_total."""
    pids = d.workers()
    assert len(pids) == 2, pids
    before = samples(metrics(maddr))[KEY]
    base = {p: sleeps(p) for p in pids}
    for _ in range(N):
        assert_hello(d.tcp)
        time.sleep(0.01)
    woke = sorted(sleeps(p) - base[p] for p in pids)
    time.sleep(0.2)
    return woke, samples(metrics(maddr))[KEY] - before


def test_one_worker_wakes_per_connection(wsgid):
    d, maddr = start(wsgid, processes=2, threads=1)
    woke, empty = wakeups(d, maddr)
    print("%d connections: loop threads slept %s times, %d empty wake-ups" % (N, woke, empty))
    assert woke[1] >= N, "the busy worker's loop slept %d times for %d connections" % (woke[1], N)
    assert woke[0] <= N // 6, ("the idle worker's loop woke %d times for %d connections: "
                               "the herd is back" % (woke[0], N))
    assert empty <= N // 10, "%d of %d connections woke a worker for nothing" % (empty, N)


def test_a_herd_shows(wsgid, monkeypatch):
    monkeypatch.setenv("WSGID_ACCEPT_HERD", "1")
    d, maddr = start(wsgid, processes=2, threads=1)
    woke, empty = wakeups(d, maddr)
    print("herd: %d connections: loop threads slept %s times, %d empty wake-ups"
          % (N, woke, empty))
    assert woke[0] >= N // 2, ("with the listeners nested (WSGID_ACCEPT_HERD=1) the idle worker "
                               "woke only %d times for %d connections: the test cannot see a "
                               "herd" % (woke[0], N))


def test_at_capacity_takes_a_new_connection_without_polling(wsgid, tmp):
    """A worker at capacity (4 requests in flight per thread) leaves new connections to its
    siblings, but still takes one that waits, after a short grace: here its only sibling is
    itself, and the fifth request must reach the queue (wsgid_queue_depth shows it) instead of
    waiting in the listen queue until the worker is down to half its capacity (here, until two
    of the four have run: 4 s). Meanwhile, with no new connection coming, its loop must sleep: it
    once looked at the listener every 10 ms (100 wake-ups a second for nothing, behind a
    keep-alive proxy where workers stay at capacity)."""
    maddr = ("127.0.0.1", free_port())
    d = wsgid("ops", threads=1, processes=1, queue_timeout=60,
              top={"metrics": "%s:%d" % maddr})
    wait_for(lambda: d.log().find("metrics") >= 0, 5, what="the metrics listener")
    (pid,) = d.workers()

    def depth():
        return sum(v for k, v in samples(metrics(maddr)).items()
                   if k.startswith("wsgid_queue_depth"))

    def slow():
        try:
            request(d.tcp, path="/sleep?t=2", timeout=30)
        except OSError:
            pass  # the daemon stops before the queue is through

    for _ in range(4):
        threading.Thread(target=slow, daemon=True).start()
    # Four in flight (one runs, three queued: at capacity).
    wait_for(lambda: depth() == 3, 5, what="three requests queued")
    base = sleeps(pid)
    time.sleep(1.0)
    idle_wakes = sleeps(pid) - base
    t0 = time.monotonic()
    threading.Thread(target=slow, daemon=True).start()
    wait_for(lambda: depth() == 4, 1.5, what="the fifth request queued by the worker at capacity")
    took = time.monotonic() - t0
    print("at capacity: the loop slept %d times in 1 s; a new connection was queued after %.2f s"
          % (idle_wakes, took))
    assert idle_wakes <= 20, ("the loop of a worker at capacity woke %d times in 1 s with no new "
                              "connection" % idle_wakes)
