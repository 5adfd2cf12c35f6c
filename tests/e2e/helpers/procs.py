"""Processes, ports and waiting: free ports, polling for a condition, and what /proc says of a
process (state, parent, process group, open fds, command line)."""
import os
import socket
import time


_handed_out = set()


def free_port():
    """A port nothing listens on now, and that this process has not handed out before: the kernel
    may give the same free port to two binds in a row while neither is in use yet (CI once saw a
    test's metrics port come back as its listen port, and wsgid rightly refused the config)."""
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

def proc_stat(pid):
    """(state, ppid, pgrp) of a process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2])


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children(ppid):
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[1] == ppid and st[0] != "Z":
            out.append(pid)
    return sorted(out)


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
