"""What the app writes to sys.stdout and sys.stderr goes to the error log (python_glue/stdio.c):
written without the GIL, a line at most 3,800 bytes, and said by the process that wrote it.
Each case was found by a review (helper-58) and failed before its mend."""
import os
import re
import threading
import time

from helpers.clients import Conn, http_request
from helpers.config import make_config
from helpers.daemon import WSGID_BIN
from helpers.procs import wait_for

APP = r'''
import os, sys
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/spam":
        for i in range(300):
            sys.stderr.write("SPAM %d %s\n" % (i, "y" * 1000))
    elif path == "/long":  # 4 MB without a newline, 8,000 characters at a time
        for _ in range(500):
            sys.stdout.write("x" * 8000)
        sys.stdout.write("\n")
    elif path == "/fork":
        pid = os.fork()
        if pid == 0:
            print("CHILD-SAYS my pid is %d" % os.getpid())
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        body = b"%d\n" % pid
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    elif path == "/fds":  # what a C library or a subprocess writes to the descriptors
        os.write(1, b"FD1-SAYS hello\n")
        os.write(2, b"FD2-SAYS a\nFD2-SAYS b\r\n")
        import ctypes  # C's stdio: a pipe would have its stdout flushed only at exit
        ctypes.CDLL(None).printf(b"C-PRINTF-SAYS %d\n", 42)
        import subprocess
        subprocess.run(["/bin/sh", "-c", "echo SUBPROCESS-SAYS hi >&2"], check=True)
    elif path == "/crash":
        import faulthandler, ctypes
        faulthandler.enable()  # its dump goes to fd 2, as the process dies
        ctypes.string_at(0)
    start_response("200 OK", [("Content-Length", "3")])
    return [b"ok\n"]
'''


def start(wsgid, tmp, log_file, level="info", wait=True):
    script = tmp / "output.py"
    script.write_text(APP)
    # PYTHONUNBUFFERED (set where the tests run, seldom under systemd) would unbuffer C's stdout.
    d = wsgid(config=make_config(tmp, {"site": {"app": str(script), "threads": 2,
                                                "env": {"PYTHONUNBUFFERED": ""},
                                                "listen": ["unix:" + str(tmp / "site.sock")]}},
                                 log={"level": level, "file": str(log_file), "access": "off"}),
              wait=False)
    d.unix_paths.append(str(tmp / "site.sock"))
    if wait:
        wait_for(lambda: log_file.exists() and "all workers ready" in log_file.read_text(),
                 timeout=15, what="ready in the error log")
        d.seen_workers.update(d.workers())
    return d


def get(d, path, timeout=10):
    with Conn(str(d.tmp / "site.sock"), timeout=timeout) as c:
        c.send(http_request("GET", path, {"Connection": "close"}))
        return c.response()


def test_a_log_that_blocks_holds_up_only_the_thread_that_prints(wsgid, tmp):
    """The error log is a pipe whose reader stops reading while one thread prints 300 KB to
    stderr: a request to the other thread is still served. Before, the line was written with the
    GIL held, and every thread of the worker waited behind the full pipe."""
    fifo = tmp / "err.fifo"
    os.mkfifo(fifo)
    reading, done = threading.Event(), threading.Event()
    reading.set()

    def reader():
        fd = os.open(fifo, os.O_RDONLY)
        while not done.is_set():
            if not reading.is_set():
                time.sleep(0.05)
                continue
            if not os.read(fd, 65536):
                break
        os.close(fd)
    threading.Thread(target=reader, daemon=True).start()
    d = start(wsgid, tmp, fifo, level="warn", wait=False)
    def serves():
        try:
            return get(d, "/").status == 200
        except OSError:
            return False
    wait_for(serves, timeout=15, what="the group to serve")
    d.seen_workers.update(d.workers())
    reading.clear()
    time.sleep(0.2)
    spam = Conn(str(tmp / "site.sock"), timeout=30)
    spam.send(http_request("GET", "/spam", {"Connection": "close"}))
    time.sleep(0.5)  # its thread now waits on the full pipe
    try:
        status = get(d, "/fast", timeout=5).status
    except OSError as e:
        status = repr(e)
    reading.set()
    assert spam.response().status == 200
    spam.close()
    done.set()
    assert status == 200, "the other thread was held up: %s" % status


def test_a_stream_without_newlines_goes_out_in_lines_of_3800_bytes(wsgid, tmp):
    """4 MB written to sys.stdout without a newline is logged as it grows, 3,800 bytes a line
    (what fits in a log line with its prefix). Before, it was kept whole until a newline came
    (and copied and scanned whole at every write: 2 s for 4 MB)."""
    errlog = tmp / "error.log"
    d = start(wsgid, tmp, errlog)
    assert get(d, "/long", timeout=60).status == 200
    wait_for(lambda: sum(line.count("x") for line in errlog.read_text().splitlines()
                         if "stdout: x" in line) == 4000000, timeout=10,
             what="4 MB of x in the error log")
    lines = [line for line in errlog.read_text().splitlines() if "stdout: x" in line]
    assert max(line.count("x") for line in lines) == 3800, max(len(x) for x in lines)
    assert len(lines) == 4000000 // 3800 + 1, len(lines)


def test_a_child_the_app_forks_logs_under_its_own_pid(wsgid, tmp):
    """A line the app's fork()ed child prints says the child's pid, not the worker's."""
    errlog = tmp / "error.log"
    d = start(wsgid, tmp, errlog)
    child = int(get(d, "/fork").body)
    line = wait_for(lambda: [x for x in errlog.read_text().splitlines() if "CHILD-SAYS" in x],
                    timeout=5, what="the child's line")[0]
    assert "] site:%d: stdout: CHILD-SAYS my pid is %d" % (child, child) in line, line


def test_what_the_worker_writes_to_its_descriptors_is_logged_as_its(wsgid, tmp):
    """Bytes written to fds 1 and 2 themselves (a C library, a subprocess, a fatal error's dump)
    become lines of the error log that name the worker, in log.file. Before, they went to the
    master's stderr as they were: no group, no pid, never in log.file."""
    errlog = tmp / "error.log"
    d = start(wsgid, tmp, errlog)
    d.expect_log(r"killed by signal 11|exited with status 1", r"Fatal Python error", r"stderr: ")
    pid = d.workers()[0]
    assert get(d, "/fds").status == 200
    who = r"\[(warn|info)\] master: group site worker 1 \(pid %d\) " % pid

    def lines(pattern):
        return [x for x in errlog.read_text().splitlines() if re.search(pattern, x)]
    wait_for(lambda: lines("SUBPROCESS-SAYS"), timeout=5, what="the subprocess's line")
    assert re.search(r"\[info\] master: group site worker 1 \(pid %d\) stdout: FD1-SAYS hello$"
                     % pid, "\n".join(lines("FD1-SAYS")), re.M), lines("FD1-SAYS")
    assert [re.sub(who, "", x.split(" ", 2)[2]) for x in lines("FD2-SAYS [ab]")] == \
        ["stderr: FD2-SAYS a", "stderr: FD2-SAYS b"], lines("FD2-SAYS")
    assert re.search(who + r"stderr: SUBPROCESS-SAYS hi$", lines("SUBPROCESS-SAYS")[0])
    # A C library's printf: stdio buffers a pipe's stdout until exit, unless told otherwise.
    wait_for(lambda: lines("C-PRINTF-SAYS"), timeout=5, what="the line printf wrote")
    assert re.search(who + r"stdout: C-PRINTF-SAYS 42$", lines("C-PRINTF-SAYS")[0])
    # The crash: its dump, then the death that names the request.
    with Conn(str(tmp / "site.sock")) as c:
        c.send(http_request("GET", "/crash", {"Connection": "close"}))
        c.read_until_close()
    if "asan" in str(WSGID_BIN):
        wait_for(lambda: lines(r"pid %d\) exited with status 1; running \[req \d+-\d+\] GET "
                               r"/crash" % pid), timeout=10, what="the death")
        print("the crash's dump not checked: the sanitizer build's handler takes the SIGSEGV")
        return
    wait_for(lambda: lines(r"pid %d\) killed by signal 11" % pid), timeout=10, what="the death")
    text = errlog.read_text()
    dump = text.index("(pid %d) stderr: Fatal Python error: Segmentation fault" % pid)
    assert text.index("(pid %d) killed by signal 11" % pid) > dump
    assert re.search(r"\(pid %d\) stderr:   File \S+output\.py\", line \d+ in application"
                     % pid, text), text[dump:dump + 2000]


def test_at_log_level_error_a_crash_still_shows_what_the_worker_wrote(wsgid, tmp):
    """At log level error, the warn and info lines of a worker's fds 2 and 1 are left out while
    it lives; when it dies by a signal their last ones come out at error, before the line of its
    death, so a fatal error's dump is not lost. Before, it was, and only "killed by signal 11"
    told of the crash."""
    errlog = tmp / "error.log"
    d = start(wsgid, tmp, errlog, level="error", wait=False)
    d.expect_log(r"killed by signal 11|exited with status 1", r"Fatal Python error", r"stderr: ",
                 r"stdout: ", r"left out at this log level")
    wait_for(lambda: len(d.workers()) == 1, timeout=15, what="the worker")
    wait_for(lambda: os.path.exists(tmp / "site.sock"), timeout=15, what="the socket")
    pid = d.workers()[0]

    def answered():
        try:
            return get(d, "/fds", timeout=5).status == 200
        except OSError:
            return False
    wait_for(answered, timeout=15, what="the worker ready")
    time.sleep(0.5)  # the subprocess's line comes through the master's loop
    assert "FD2-SAYS" not in errlog.read_text()
    with Conn(str(tmp / "site.sock")) as c:
        c.send(http_request("GET", "/crash", {"Connection": "close"}))
        c.read_until_close()
    death = r"pid %d\) (killed by signal 11|exited with status 1)" % pid
    wait_for(lambda: re.search(death, errlog.read_text()), timeout=10, what="the death")
    text = errlog.read_text()
    who = r"\[error\] master: group site worker 1 \(pid %d\) " % pid
    said = re.search(who + r"stderr: the (\d+) lines it wrote, left out at this log level until "
                     r"its death:$", text, re.M)
    assert said, text
    held = [x for x in text[said.end():].splitlines()[1:] if "stderr:" in x]
    assert all(re.match(r"\S+ \S+ " + who + "stderr: ", x) for x in held), held
    assert [x.split("stderr: ", 1)[1] for x in held[:3]] == \
        ["FD2-SAYS a", "FD2-SAYS b", "SUBPROCESS-SAYS hi"], held[:5]
    assert re.search(who + r"stdout: FD1-SAYS hello$", text, re.M), text
    if "asan" not in str(WSGID_BIN):
        assert any("Fatal Python error: Segmentation fault" in x for x in held), held
    assert re.search(death, text).start() > said.start()
