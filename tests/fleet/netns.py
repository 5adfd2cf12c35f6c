"""Network namespaces for the fleet test: one per host, one for the load balancers (which holds the
bridge) and one for the client, all named after the test's pid (wdf<PID>-h1...), so that a run
never collides with another one, and a crashed run's leftovers (their pid is dead) are removed by
the next.

    lb   10.77.0.10  br0, the bridge: a veth to each of the others; HAProxy and nginx
    h1   10.77.0.1   eth0            wsgid
    h2   10.77.0.2   eth0            wsgid
    h3   10.77.0.3   eth0            wsgid
    cli  10.77.0.20  eth0            the load generator

Nothing is added to the root namespace: the addresses exist only inside, so parallel runs may
use the same ones. A process is started in a namespace by starting it from a thread that has
entered the namespace (setns(2) applies to the calling thread, and a child inherits the
namespaces of the thread that forked it): in_netns(name, fn) runs fn there, so the e2e helpers
(Wsgid, HAProxy, Nginx), their free_port() and their waits for a port work unchanged.
"""
import ctypes
import os
import re
import signal
import subprocess
import threading

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
CLONE_NEWNET = 0x40000000
SUBNET = "10.77.0"
ADDRS = {"lb": SUBNET + ".10", "h1": SUBNET + ".1", "h2": SUBNET + ".2", "h3": SUBNET + ".3",
         "cli": SUBNET + ".20"}
_NAME = re.compile(r"^wdf(\d+)-(\w+)$")

_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args, check=True):
    r = subprocess.run([IP] + list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), (r.stderr or r.stdout).strip()))
    return r


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _remove(ns):
    """Kills what still runs in a namespace of ours, then deletes it (and its veths)."""
    r = ip("netns", "pids", ns, check=False)
    for p in r.stdout.split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    ip("netns", "del", ns, check=False)


def remove_stale():
    """Namespaces left by an earlier run whose process is gone."""
    r = ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _remove(name)


def unavailable():
    """Why the fleet cannot be built here, or None: no iproute2, no right to add a namespace, no
    veth or bridge support."""
    if subprocess.run(["sh", "-c", "command -v %s" % IP], capture_output=True).returncode != 0:
        return "iproute2 (ip) not installed: ./dev deps"
    probe = "wdf%d-probe" % os.getpid()
    r = ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return "ip netns add is not permitted here: %s" % (r.stderr or r.stdout).strip()
    try:
        for args in (("link", "add", "br0", "type", "bridge"),
                     ("link", "add", "va", "type", "veth", "peer", "name", "vb")):
            r = ip("-n", probe, *args, check=False)
            if r.returncode != 0:
                return "no %s support: ip %s: %s" % (args[-1] if args[-1] == "bridge" else "veth",
                                                    " ".join(args), r.stderr.strip())
    finally:
        ip("netns", "del", probe, check=False)
    return None


class Fleet:
    """The namespaces, created by up() and removed by down() (also after a failure)."""

    def __init__(self, hosts=("h1", "h2", "h3")):
        self.prefix = "wdf%d-" % os.getpid()
        self.hosts = list(hosts)
        self.names = ["lb"] + self.hosts + ["cli"]
        self.created = []

    def ns(self, name):
        return self.prefix + name

    def up(self):
        remove_stale()
        for n in self.names:
            ip("netns", "add", self.ns(n))
            self.created.append(self.ns(n))
            ip("-n", self.ns(n), "link", "set", "lo", "up")
        lb = self.ns("lb")
        ip("-n", lb, "link", "add", "br0", "type", "bridge")
        ip("-n", lb, "addr", "add", ADDRS["lb"] + "/24", "dev", "br0")
        ip("-n", lb, "link", "set", "br0", "up")
        for n in self.hosts + ["cli"]:
            ip("link", "add", "name", "v" + n, "netns", lb, "type", "veth",
               "peer", "name", "eth0", "netns", self.ns(n))
            ip("-n", lb, "link", "set", "v" + n, "master", "br0", "up")
            ip("-n", self.ns(n), "addr", "add", ADDRS[n] + "/24", "dev", "eth0")
            ip("-n", self.ns(n), "link", "set", "eth0", "up")
        return self

    def down(self):
        for ns in reversed(self.created):
            _remove(ns)
        self.created = []

    def exec_argv(self, name, argv):
        """argv run in a namespace by ip netns exec (for a process started outside in_netns)."""
        return [IP, "netns", "exec", self.ns(name)] + list(argv)

    def run(self, name, fn, *args, **kw):
        return in_netns(self.ns(name), fn, *args, **kw)


def in_netns(ns, fn, *args, **kw):
    """fn(*args, **kw) on a thread that has entered network namespace ns; its result, or its
    exception raised here."""
    out = {}

    def body():
        try:
            fd = os.open("/var/run/netns/" + ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns %s: %s" % (ns, os.strerror(e)))
            finally:
                os.close(fd)
            out["value"] = fn(*args, **kw)
        except BaseException as e:   # handed to the caller
            out["error"] = e
    t = threading.Thread(target=body, name="netns " + ns, daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")
