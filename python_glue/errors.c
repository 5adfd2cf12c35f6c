/* Python exceptions as log lines: the traceback, a one-line summary, and where it was raised. */
#include "glue_int.h"
#include "../daemon/common/log.h"

#include <stdio.h>
#include <string.h>

wd_py_interp_t *wd__py_current_interp(void)
{
    PyInterpreterState *is = PyInterpreterState_Get();

    for (size_t i = 0; i < wd__py.n_interps; i++) {
        if (PyThreadState_GetInterpreter(wd__py.interps[i]->ts) == is)
            return wd__py.interps[i];
    }
    return NULL;
}

/* traceback pulls in re, enum, tokenize, textwrap and more: about 1 MiB an interpreter would
 * carry for nothing until an app fails. Import it the first time a traceback is logged (no
 * exception is pending then: the caller has fetched it), in the current interpreter: a function
 * of another one would import into the wrong sys.modules. NULL if it cannot be had. */
static PyObject *get_format_exception(void)
{
    wd_py_interp_t *in = wd__py_current_interp();
    PyObject *mod;

    if (in == NULL || in->format_exception != NULL || in->format_tried)
        return in != NULL ? in->format_exception : NULL;
    in->format_tried = 1;
    mod = PyImport_ImportModule("traceback");
    if (mod != NULL) {
        in->format_exception = PyObject_GetAttrString(mod, "format_exception");
        Py_DECREF(mod);
    }
    if (in->format_exception == NULL)
        PyErr_Clear();
    return in->format_exception;
}

void wd__py_exc_summary(PyObject *exc, char *buf, size_t cap)
{
    /* A SyntaxError's str() repeats the file and line in parentheses: its msg alone. */
    int syntax = exc != NULL && PyErr_GivenExceptionMatches(exc, PyExc_SyntaxError);
    PyObject *s = syntax ? PyObject_GetAttrString(exc, "msg") : NULL;

    if (syntax && (s == NULL || !PyUnicode_Check(s))) {
        PyErr_Clear();
        Py_CLEAR(s);
    }
    if (s == NULL && exc != NULL)
        s = PyObject_Str(exc);
    const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
    const char *name = exc ? _PyType_Name(Py_TYPE(exc)) : "Exception";

    if (msg == NULL)
        PyErr_Clear();
    if (msg != NULL && msg[0] != '\0')
        snprintf(buf, cap, "%s: %s", name, msg);
    else
        snprintf(buf, cap, "%s", name);
    Py_XDECREF(s);
}

/* "FILE:LINE: " of an exception: a SyntaxError's own, else the innermost frame's. Empty when
 * neither is known. */
static void exc_location(PyObject *value, PyObject *tb, char *buf, size_t cap)
{
    PyObject *file = NULL, *line = NULL;

    buf[0] = '\0';
    if (value != NULL && PyErr_GivenExceptionMatches(value, PyExc_SyntaxError)) {
        file = PyObject_GetAttrString(value, "filename");
        line = PyObject_GetAttrString(value, "lineno");
    } else if (tb != NULL && PyTraceBack_Check(tb)) {
        PyTracebackObject *t = (PyTracebackObject *)tb;

        while (t->tb_next != NULL)
            t = t->tb_next;
        PyCodeObject *code = PyFrame_GetCode(t->tb_frame); /* new */

        file = code->co_filename;
        Py_INCREF(file);
        Py_DECREF(code);
        line = PyObject_GetAttrString((PyObject *)t, "tb_lineno"); /* computed on demand */
    }
    if (file != NULL && PyUnicode_Check(file) && line != NULL && PyLong_Check(line)) {
        const char *f = PyUnicode_AsUTF8(file);

        if (f != NULL)
            snprintf(buf, cap, "%s:%ld: ", f, PyLong_AsLong(line));
    }
    PyErr_Clear();
    Py_XDECREF(file);
    Py_XDECREF(line);
}

void wd__py_log_exception(const char *prefix, char *summary, size_t cap)
{
    PyObject *type, *value, *tb, *lines = NULL, *sep = NULL, *text = NULL, *fmt;
    const char *p;
    Py_ssize_t n;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    if (summary != NULL) {
        char where[1024], what[1024];

        exc_location(value, tb, where, sizeof where);
        wd__py_exc_summary(value, what, sizeof what);
        snprintf(summary, cap, "%s%s", where, what);
    }
    fmt = get_format_exception();
    if (fmt != NULL)
        lines = PyObject_CallFunctionObjArgs(fmt, type, value ? value : Py_None, tb ? tb : Py_None,
                                             NULL);
    sep = PyUnicode_FromString("");
    if (lines != NULL && sep != NULL)
        text = PyUnicode_Join(sep, lines);
    p = text ? PyUnicode_AsUTF8AndSize(text, &n) : NULL;
    if (p != NULL) {
        wd_log_text(WD_LOG_ERROR, prefix, p, (size_t)n);
    } else {
        char buf[512];

        PyErr_Clear();
        wd__py_exc_summary(value, buf, sizeof buf);
        wd_log_error("%s%s", prefix, buf);
    }
    Py_XDECREF(lines);
    Py_XDECREF(sep);
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

void wd__py_exc_module(char *buf, size_t cap)
{
    PyObject *type, *value, *tb, *name = NULL;

    buf[0] = '\0';
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && PyErr_GivenExceptionMatches(value, PyExc_ImportError)) {
        name = PyObject_GetAttrString(value, "name");
        if (name == NULL || !PyUnicode_Check(name))
            Py_CLEAR(name);
        PyErr_Clear();
    }
    if (name == NULL && tb != NULL && PyTraceBack_Check(tb)) {
        PyTracebackObject *t = (PyTracebackObject *)tb;

        while (t->tb_next != NULL)
            t = t->tb_next;
        PyObject *globals = PyObject_GetAttrString((PyObject *)t->tb_frame, "f_globals");

        name = globals != NULL && PyDict_Check(globals) ? PyDict_GetItemString(globals, "__name__")
                                                        : NULL; /* borrowed */
        Py_XINCREF(name);
        Py_XDECREF(globals);
        PyErr_Clear();
    }
    if (name != NULL && PyUnicode_Check(name)) {
        const char *s = PyUnicode_AsUTF8(name);

        if (s != NULL)
            snprintf(buf, cap, "%s", s);
        PyErr_Clear();
    }
    Py_XDECREF(name);
    PyErr_Restore(type, value, tb);
}
