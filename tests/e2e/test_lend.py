"""Large bytes objects of a response are lent to the response buffer, not copied (out.h,
python_glue/lent.c): the buffer holds a reference to each while the client has not read it, and
lets go of every one once sent, in the interpreter it belongs to, also when the worker then has
nothing else to do (the releaser thread)."""
import json
import os
import socket
import time

import pytest

from helpers.clients import http_request, parse_response, request
from helpers.config import app, make_config
from helpers.procs import wait_for

DATA = bytes(range(256)) * (4 * 4096)  # as apps/lend.py
BODY = DATA * 4


def refs(addr, prefix):
    r = request(addr, path=prefix + "/refs")
    assert r.status == 200, r
    return json.loads(r.body)


def switches(pid, tid):
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc/%d/task/%d/status" % (pid, tid))


def releaser(pid):
    """The wsgid-lent thread's id, once it has named itself (a thread the kernel has not yet run
    still has the loop thread's name)."""
    def find():
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() == "wsgid-lent":
                    return int(tid)
        return None
    return wait_for(find, 10, what="worker %d's wsgid-lent thread" % pid)


@pytest.mark.parametrize("group", ["%{GLOBAL}", "%{RESOURCE}"])
def test_lent_bytes_are_held_while_pending_and_let_go_of_once_sent(tmp, wsgid, group):
    d = wsgid(config=make_config(tmp, {"site": {
        "listen": "unix:" + str(tmp / "site.sock"), "processes": 1, "threads": 2,
        "mounts": {"/m": {"app": app("lend"), "application-group": group}}}}))
    addr = str(tmp / "site.sock")
    base = refs(addr, "/m")
    [pid] = d.workers()
    tid = releaser(pid)

    # A client that reads nothing yet: the response waits in the buffer.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(addr)
    s.sendall(http_request("GET", "/m/big", {"Connection": "close"}))
    time.sleep(0.5)
    held = refs(addr, "/m")
    assert held["interp"] == base["interp"]
    assert held["refs"] > base["refs"], (
        "no reference to the 4 MiB object while its response waits for the client (%d, %d "
        "before): it was copied, not lent" % (held["refs"], base["refs"]))
    assert held["refs"] <= base["refs"] + 4

    # Now the client reads it all; then nothing comes for a while, so only the releaser can let
    # go of what the loop sent last.
    before = switches(pid, tid)
    data = bytearray()
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    s.close()
    resp, _ = parse_response(bytes(data), eof=True)
    assert resp.status == 200 and len(resp.body) == len(BODY)
    assert resp.body == BODY
    time.sleep(0.5)
    assert switches(pid, tid) > before, "the releaser never woke after the response was sent"
    after = refs(addr, "/m")
    assert after["refs"] == base["refs"], (
        "%d references to the object after its response went out, %d before: a lent piece "
        "was not let go of" % (after["refs"], base["refs"]))


def test_lent_pieces_in_chunks_arrive_whole(wsgid):
    """A stream without a length goes out chunked: each lent piece between its size line and
    its CRLF, which are copied."""
    d = wsgid("lend", processes=1, threads=2)
    base = refs(d.tcp, "")
    for _ in range(3):
        r = request(d.tcp, path="/gen", timeout=30)
        assert r.status == 200 and r.body == BODY
        assert r.header("Transfer-Encoding") == "chunked", r
    time.sleep(0.3)
    assert refs(d.tcp, "")["refs"] == base["refs"]
