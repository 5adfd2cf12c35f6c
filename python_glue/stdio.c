/* The app's sys.stdout and sys.stderr: each line goes to the error log, said by the worker
 * ("GROUP:PID") like every other line, and with log.file to that file. Before, print(), warnings
 * and the logging module's default handler wrote to the daemon's own stderr: with log.file set
 * they never reached the log, and they named neither group nor process (helper-57). mod_wsgi
 * sends them to Apache's error log the same way.
 *
 * Each stream is a text stream over a line-buffered raw writer whose complete lines are logged:
 * stderr's at level warn, stdout's at info. (mod_wsgi logs both as errors; but stderr carries
 * every warning a library gives, NumPy's in a sub-interpreter for one, and an operator's alert on
 * "[error]" should not fire on those. wsgi.errors and the app's exceptions stay errors.) fileno()
 * is 2, the worker's real stderr, for what writes to a descriptor (faulthandler.enable() asks for
 * it). */
#include "glue_int.h"
#include "../daemon/common/log.h"

#include <string.h>

/* _emit(stream, line): one line of the app's stdout or stderr (bytes, no newline). */
static PyObject *emit(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    const char *name, *line;
    Py_ssize_t len;
    const wd_py_interp_t *in;

    (void)self;
    if (n != 2 || !PyUnicode_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_emit(stream: str, line: bytes)");
        return NULL;
    }
    name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL)
        return NULL;
    line = PyBytes_AS_STRING(args[1]);
    len = PyBytes_GET_SIZE(args[1]);
    if (len > 0 && line[len - 1] == '\r')
        len--;
    in = wd__py_current_interp();
    if (in != NULL && in->name[0] != '\0')
        wd_log(strcmp(name, "stdout") == 0 ? WD_LOG_INFO : WD_LOG_WARN,
               "%s of application group "
               "\"%s\": %.*s",
               name, in->name, (int)len, line);
    else
        wd_log(strcmp(name, "stdout") == 0 ? WD_LOG_INFO : WD_LOG_WARN, "%s: %.*s", name, (int)len,
               line);
    Py_RETURN_NONE;
}

static PyMethodDef emit_def = {"_emit", (PyCFunction)(void (*)(void))emit, METH_FASTCALL, NULL};

static const char setup[] =
    "import io, sys\n"
    "class _WsgidLog(io.RawIOBase):\n"
    "    def __init__(self, name):\n"
    "        self._name, self._rest = name, b''\n"
    "    def writable(self):\n"
    "        return True\n"
    "    def fileno(self):\n"
    "        return 2\n"
    "    def write(self, b):\n"
    "        *lines, self._rest = (self._rest + bytes(b)).split(b'\\n')\n"
    "        for line in lines:\n"
    "            _emit(self._name, line)\n"
    "        return len(b)\n"
    "    def close(self):\n"
    "        if self._rest:\n"
    "            _emit(self._name, self._rest)\n"
    "            self._rest = b''\n"
    "        super().close()\n"
    "for _name in ('stdout', 'stderr'):\n"
    "    setattr(sys, _name, io.TextIOWrapper(io.BufferedWriter(_WsgidLog(_name)),\n"
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
