/* The app's sys.stdout and sys.stderr: each line goes to the error log, said by the worker
 * ("GROUP:PID") like every other line, and with log.file to that file. Before, print(), warnings
 * and the logging module's default handler wrote to the daemon's own stderr: with log.file set
 * they never reached the log, and they named neither group nor process (helper-57). mod_wsgi
 * sends them to Apache's error log the same way.
 *
 * Each stream is a text stream over a line-buffered raw writer whose complete lines are logged:
 * stderr's at level warn, stdout's at info. (mod_wsgi logs both as errors; but stderr carries
 * every warning a library gives, NumPy's in a sub-interpreter for one, and an operator's alert on
 * "[error]" should not fire on those. wsgi.errors and the app's exceptions stay errors.)
 * fileno() is the worker's own 1 or 2, for what writes to a descriptor (faulthandler.enable(),
 * a subprocess given sys.stdout): pipes the master reads, whose lines it logs as the worker's
 * (daemon/master/master_output.c). */
#include "glue_int.h"
#include "../daemon/common/log.h"

#include <string.h>

/* _emit(stream, line): one line of the app's stdout or stderr (bytes, no newline). Written with
 * the GIL let go: a log that blocks (a pipe, journald behind) holds up the printing thread only
 * (helper-58: every thread of the worker waited on the GIL behind it). */
static PyObject *emit(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    const char *name, *line, *group;
    Py_ssize_t len;
    const wd_py_interp_t *in;
    wd_log_level_t level;

    (void)self;
    if (n != 2 || !PyUnicode_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_emit(stream: str, line: bytes)");
        return NULL;
    }
    name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL)
        return NULL;
    line = PyBytes_AS_STRING(args[1]); /* args[1] stays referenced by the caller */
    len = PyBytes_GET_SIZE(args[1]);
    if (len > 0 && line[len - 1] == '\r')
        len--;
    in = wd__py_current_interp();
    group = in != NULL ? in->name : ""; /* C storage, alive as long as the interpreter */
    level = strcmp(name, "stdout") == 0 ? WD_LOG_INFO : WD_LOG_WARN;
    Py_BEGIN_ALLOW_THREADS
        if (group[0] != '\0')
            wd_log(level, "%s of application group \"%s\": %.*s", name, group, (int)len, line);
        else
            wd_log(level, "%s: %.*s", name, (int)len, line);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef emit_def = {"_emit", (PyCFunction)(void (*)(void))emit, METH_FASTCALL, NULL};

/* Each write is scanned once for its newlines; a line goes out in pieces of LINE_MAX bytes, what
 * fits in a log line of 4 KiB with its prefix, and one that grows past it without a newline goes
 * out as it grows (before, a stream without newlines was copied and scanned whole at every
 * write, 2 s for 4 MB, and kept in memory for ever: helper-58). fileno() is the worker's own
 * descriptor of the stream. */
static const char setup[] =
    "import io, sys\n"
    "class _WsgidLog(io.RawIOBase):\n"
    "    LINE_MAX = 3800\n"
    "    def __init__(self, name, fd):\n"
    "        self._name, self._fd, self._rest = name, fd, bytearray()\n"
    "    def writable(self):\n"
    "        return True\n"
    "    def fileno(self):\n"
    "        return self._fd\n"
    "    def _out(self, line):\n"
    "        for at in range(0, max(len(line), 1), self.LINE_MAX):\n"
    "            _emit(self._name, bytes(line[at:at + self.LINE_MAX]))\n"
    "    def write(self, b):\n"
    "        b = bytes(b)\n"
    "        start = 0\n"
    "        while True:\n"
    "            end = b.find(b'\\n', start)\n"
    "            if end < 0:\n"
    "                break\n"
    "            self._rest += b[start:end]\n"
    "            self._out(self._rest)\n"
    "            self._rest.clear()\n"
    "            start = end + 1\n"
    "        self._rest += b[start:]\n"
    "        if len(self._rest) >= self.LINE_MAX:\n"
    "            cut = len(self._rest) - len(self._rest) % self.LINE_MAX\n"
    "            self._out(self._rest[:cut])\n"
    "            del self._rest[:cut]\n"
    "        return len(b)\n"
    "    def close(self):\n"
    "        if self._rest:\n"
    "            _emit(self._name, bytes(self._rest))\n"
    "            self._rest.clear()\n"
    "        super().close()\n"
    "for _name, _fd in (('stdout', 1), ('stderr', 2)):\n"
    "    setattr(sys, _name, io.TextIOWrapper(io.BufferedWriter(_WsgidLog(_name, _fd)),\n"
    "            encoding='utf-8', errors='backslashreplace', line_buffering=True))\n";

int wd__py_stdio_to_log(void)
{
    PyObject *globals = PyDict_New(), *fn = NULL, *r = NULL;

    if (globals == NULL)
        return -1;
    fn = PyCFunction_New(&emit_def, NULL);
    if (fn != NULL && PyDict_SetItemString(globals, "_emit", fn) == 0 &&
        PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) == 0)
        r = PyRun_String(setup, Py_file_input, globals, globals);
    Py_XDECREF(fn);
    Py_DECREF(globals);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}
