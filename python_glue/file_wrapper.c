/* wsgi.file_wrapper (PEP 3333): an iterable over a file-like object's blocks, which respond.c
 * recognises to hand a regular file to the loop (sendfile) instead of iterating it. */
#include "glue_int.h"
#include "respond.h"

#include <structmember.h>

static PyObject *s_close; /* interned "close" (strong, for the process's life) */

static int fw_init(wd_file_wrapper_t *fw, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"filelike", "blksize", NULL};
    PyObject *filelike;
    Py_ssize_t blksize = 8192;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n:file_wrapper", kwlist, &filelike, &blksize))
        return -1;
    if (blksize <= 0)
        blksize = 8192;
    Py_INCREF(filelike);
    Py_XSETREF(fw->filelike, filelike);
    fw->blksize = blksize;
    return 0;
}

/* Returns a new reference (the next block), or NULL at the end or on an error. */
static PyObject *fw_iternext(wd_file_wrapper_t *fw)
{
    PyObject *data; /* new */

    if (fw->filelike == NULL)
        return NULL;
    data = PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);
    if (data == NULL)
        return NULL;
    if (PyObject_Length(data) == 0) {
        PyErr_Clear();
        Py_DECREF(data);
        return NULL; /* StopIteration */
    }
    return data;
}

static PyObject *fw_close(wd_file_wrapper_t *fw, PyObject *unused)
{
    PyObject *close; /* new: the method, then what it returned (the return value) */

    if (fw->filelike == NULL)
        Py_RETURN_NONE;
    if (wd__py_get_optional_attr(fw->filelike, s_close, &close) < 0)
        return NULL;
    if (close == NULL)
        Py_RETURN_NONE;
    Py_SETREF(close, PyObject_CallNoArgs(close));
    return close;
}

static int fw_traverse(wd_file_wrapper_t *fw, visitproc visit, void *arg)
{
    Py_VISIT(fw->filelike);
    return 0;
}

static int fw_clear(wd_file_wrapper_t *fw)
{
    Py_CLEAR(fw->filelike);
    return 0;
}

static void fw_dealloc(wd_file_wrapper_t *fw)
{
    PyObject_GC_UnTrack(fw);
    Py_CLEAR(fw->filelike);
    Py_TYPE(fw)->tp_free((PyObject *)fw);
}

static PyMethodDef fw_methods[] = {
    {"close", (PyCFunction)fw_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef fw_members[] = {
    {"filelike", T_OBJECT, offsetof(wd_file_wrapper_t, filelike), READONLY, NULL},
    {"blksize", T_PYSSIZET, offsetof(wd_file_wrapper_t, blksize), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject wd__py_file_wrapper_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wsgid.FileWrapper",
    .tp_basicsize = sizeof(wd_file_wrapper_t),
    .tp_dealloc = (destructor)fw_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "wsgi.file_wrapper(filelike, blksize=8192)",
    .tp_traverse = (traverseproc)fw_traverse,
    .tp_clear = (inquiry)fw_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)fw_iternext,
    .tp_methods = fw_methods,
    .tp_members = fw_members,
    .tp_init = (initproc)fw_init,
    .tp_new = PyType_GenericNew,
};

int wd__py_file_wrapper_init(void)
{
    s_close = PyUnicode_InternFromString("close");
    if (s_close == NULL || PyType_Ready(&wd__py_file_wrapper_type) < 0)
        return -1;
    return 0;
}
