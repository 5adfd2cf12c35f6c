"""Processes, ports and waiting: free ports, polling for a condition, and what /proc says of a
process (state, parent, process group, open fds, command line)."""
import os
import random
import socket
import time


_handed_out = set()

# Under pytest-xdist (./dev test runs the end-to-end tests in several processes) each process
# takes its ports from a block of its own, below the kernel's ephemeral range (32768 and up by
# default, where the clients' own ends of their connections come from): two processes cannot hand
# out the same port between a test's choosing it and its server's binding it. A process starts at
# a place in its block that differs from run to run (two runs on one machine rarely meet; bench/run
# uses 18400 and up: not while the tests run) and wraps around. Worker gwK takes block K modulo
# 20 (xdist numbers a worker that replaces a crashed one past the others). Alone, a process takes
# what the kernel gives.
_BLOCK_BASE, _BLOCK_SIZE, _BLOCKS = 10000, 1000, 20
_next_in_block = None


def _block():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    return _BLOCK_BASE + (int(worker[2:]) % _BLOCKS) * _BLOCK_SIZE


def _may_bind(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """A port nothing listens on now, and that this process has not handed out before: the kernel
    may give the same free port to two binds in a row while neither is in use yet (CI once saw a
    test's metrics port come back as its listen port, and wsgid rightly refused the config)."""
    global _next_in_block
    base = _block()
    if base is not None:
        if _next_in_block is None:
            _next_in_block = random.randrange(_BLOCK_SIZE)
        for _ in range(_BLOCK_SIZE):
            port = base + _next_in_block
            _next_in_block = (_next_in_block + 1) % _BLOCK_SIZE
            if port not in _handed_out and _may_bind(port):
                _handed_out.add(port)
                return port
        raise AssertionError("no fresh free port left in %d-%d (%d handed out)" %
                             (base, base + _BLOCK_SIZE - 1, len(_handed_out)))
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise AssertionError("no fresh free port after 100 tries (%d handed out)" % len(_handed_out))


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# --- /proc --------------------------------------------------------------------------------------

def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (the state first), or None if the
    process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def proc_stat(pid):
    """(state, ppid, pgrp) of a process, or None if it is gone."""
    rest = _stat_fields(pid)
    return None if rest is None else (rest[0], int(rest[1]), int(rest[2]))


def start_time(pid):
    """When the process started (clock ticks since boot), or None if it is gone: with a pid, it
    names one process even after the pid is used again."""
    rest = _stat_fields(pid)
    return None if rest is None else int(rest[19])


class SeenPids:
    """Pids seen alive, each with its start time: a pid that a process of another test (another
    pytest-xdist process) took over after the one seen ended is not taken for it."""

    def __init__(self):
        self._start = {}

    def update(self, pids):
        for p in pids:
            if p not in self._start:
                t = start_time(p)
                if t is not None:
                    self._start[p] = t

    def add(self, pid):
        self.update([pid])

    def __iter__(self):
        return iter(list(self._start))

    def same(self, pid):
        """Whether pid still names the process seen."""
        return start_time(pid) == self._start.get(pid)


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children(ppid):
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[1] == ppid and st[0] != "Z":
            out.append(pid)
    return sorted(out)


def zombies(ppid):
    """Children of ppid that exited and that it has not reaped yet."""
    return sorted(pid for pid in all_pids()
                  if (st := proc_stat(pid)) and st[1] == ppid and st[0] == "Z")


def pgroup_members(pgrp):
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[2] == pgrp and st[0] != "Z":
            out.append(pid)
    return sorted(out)


def open_fds(pid):
    """{fd: readlink target} of a process, or None if it is gone."""
    out = {}
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return None
    for n in names:
        try:
            out[n] = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            pass
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return None


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().rstrip(b"\n")
    except OSError:
        return None


class frozen_loop:
    """Stops a worker's loop thread alone (its main thread, tid = pid) for the with block, as a
    loop stuck in C would be: ptrace's PTRACE_SEIZE + PTRACE_INTERRUPT stop that thread while
    the Python threads run on. Not SIGSTOP, which stops them all (and which the master treats
    apart). The worker's log lines go to the master through non-blocking pipes, so a log that
    nobody reads no longer stops the loop (helper-79)."""

    PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207

    def __init__(self, pid):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.restype = ctypes.c_long
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self.pid = pid

    def __enter__(self):
        import ctypes
        for req in (self.PTRACE_SEIZE, self.PTRACE_INTERRUPT):
            if self.libc.ptrace(req, self.pid, None, None) != 0:
                raise OSError(ctypes.get_errno(), "ptrace %#x of %d" % (req, self.pid))
        return self

    def __exit__(self, *exc):
        if self.libc.ptrace(self.PTRACE_DETACH, self.pid, None, None) != 0:
            # Killed meanwhile: its parent (the master) hears of its death only once the tracer
            # has collected it.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(self.pid, os.WNOHANG | 0x40000000)[0] == self.pid:  # __WALL
                        break
                except ChildProcessError:
                    break
                time.sleep(0.05)
        return False
