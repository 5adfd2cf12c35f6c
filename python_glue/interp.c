/* The interpreter of a worker: configuration before Py_Initialize (python-home, python-path,
 * chdir, env) and loading the application. */
#include "glue.h"
#include "glue_int.h"
#include "../daemon/common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const wd_group_conf_t *wd__py_group;
PyObject *wd__py_app;
wd_py_mount_t *wd__py_mounts;
size_t wd__py_n_mounts;

static PyObject *format_exception; /* traceback.format_exception, imported on first use */

/* traceback pulls in re, enum, tokenize, textwrap and more: about 1 MiB a worker would carry
 * for nothing until an app fails. Import it the first time a traceback is logged (no exception
 * is pending then: the caller has fetched it). NULL if it cannot be had. */
static PyObject *get_format_exception(void)
{
    static int tried;
    PyObject *mod;

    if (format_exception != NULL || tried)
        return format_exception;
    tried = 1;
    mod = PyImport_ImportModule("traceback");
    if (mod != NULL) {
        format_exception = PyObject_GetAttrString(mod, "format_exception");
        Py_DECREF(mod);
    }
    if (format_exception == NULL)
        PyErr_Clear();
    return format_exception;
}

void wd__py_exc_summary(PyObject *exc, char *buf, size_t cap)
{
    PyObject *s = exc ? PyObject_Str(exc) : NULL;
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

void wd__py_log_exception(const char *prefix, char *summary, size_t cap)
{
    PyObject *type, *value, *tb, *lines = NULL, *sep = NULL, *text = NULL;
    const char *p;
    Py_ssize_t n;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    if (summary != NULL)
        wd__py_exc_summary(value, summary, cap);
    if (get_format_exception() != NULL)
        lines = PyObject_CallFunctionObjArgs(format_exception, type, value ? value : Py_None,
                                             tb ? tb : Py_None, NULL);
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

static int file_exists(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* python-home: a virtualenv root (pyvenv.cfg) is honoured by pointing the executable into it, so
 * that getpath sets sys.prefix to it and finds the stdlib through its "home" key; anything else
 * is taken as a Python installation prefix. */
static PyStatus set_home(PyConfig *config, const char *home)
{
    char path[4096];

    if (file_exists(home, "pyvenv.cfg")) {
        snprintf(path, sizeof path, "%s/bin/python3", home);
        if (access(path, F_OK) != 0)
            snprintf(path, sizeof path, "%s/bin/python", home);
        return PyConfig_SetBytesString(config, &config->executable, path);
    }
    return PyConfig_SetBytesString(config, &config->home, home);
}

static int path_insert(PyObject *path, Py_ssize_t *at, const char *dir)
{
    PyObject *s = PyUnicode_DecodeFSDefault(dir);
    int rc = s != NULL ? PyList_Insert(path, (*at)++, s) : -1;

    Py_XDECREF(s);
    return rc;
}

/* sys.path = [script dir] + python-path + [chdir for a module app] + the rest. */
static int set_sys_path(const wd_group_conf_t *g)
{
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    Py_ssize_t at = 0;
    char dir[4096];

    if (path == NULL || !PyList_Check(path))
        return -1;
    if (g->app_is_script) {
        const char *slash = strrchr(g->app, '/');

        if (slash == NULL)
            snprintf(dir, sizeof dir, ".");
        else if (slash == g->app)
            snprintf(dir, sizeof dir, "/");
        else
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - g->app), g->app);
        if (path_insert(path, &at, dir) < 0)
            return -1;
    }
    for (size_t i = 0; i < g->n_python_path; i++)
        if (path_insert(path, &at, g->python_path[i]) < 0)
            return -1;
    if (!g->app_is_script && g->chdir != NULL && path_insert(path, &at, g->chdir) < 0)
        return -1;
    return 0;
}

/* SIGUSR2 dumps every Python thread's stack to the error log (faulthandler: from the signal
 * handler, without the GIL, so it works while a thread holds it for ever). The master sends it
 * to a worker its watchdog is about to kill (deadlock-timeout). The log keeps its fd number
 * across reopens (log.c), so the fd given here stays right. */
static int stacks_on_signal(void)
{
    PyObject *fh, *r;

    if (wd_log_fd() < 0)
        return 0; /* log: off */
    fh = PyImport_ImportModule("faulthandler");
    if (fh == NULL)
        return -1;
    r = PyObject_CallMethod(fh, "register", "iiii", SIGUSR2, wd_log_fd(), 1, 0);
    Py_DECREF(fh);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

int wd_py_init(const wd_config_t *conf, const wd_group_conf_t *group, int slot)
{
    PyConfig config;
    PyStatus status;
    char *argv[] = {"wsgid", NULL};

    wd__py_group = group;
    for (size_t i = 0; i < group->n_env; i++)
        setenv(group->env[i].name, group->env[i].value, 1);
    if (group->chdir != NULL && chdir(group->chdir) < 0) {
        wd_log_error("group %s: cannot chdir to %s: %s", group->name, group->chdir,
                     strerror(errno));
        return -1;
    }
    /* Python installs no signal handlers: the loop owns signals. A client that went away must
     * give EPIPE, not kill the worker. */
    signal(SIGPIPE, SIG_IGN);

    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    status = PyConfig_SetBytesArgv(&config, 1, argv);
    if (!PyStatus_Exception(status) && group->python_home != NULL)
        status = set_home(&config, group->python_home);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        wd_log_error("group %s: cannot initialise Python%s%s: %s", group->name,
                     group->python_home ? " with python-home " : "",
                     group->python_home ? group->python_home : "",
                     status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }
    if (set_sys_path(group) < 0 || wd__py_input_ready() < 0 || wd__py_respond_init() < 0 ||
        wd__py_environ_init() < 0 || stacks_on_signal() < 0)
        goto fail;
    wd_log_debug("group %s: Python %s initialised (process %d)", group->name, Py_GetVersion(),
                 slot);
    return 0;
fail:
    wd__py_log_exception("", NULL, 0);
    wd_log_error("group %s: cannot set up the Python interpreter", group->name);
    return -1;
}

static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (fd < 0)
        return NULL;
    for (;;) {
        ssize_t r;

        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap ? cap * 2 : 65536);

            if (nb == NULL)
                abort();
            buf = nb;
            cap = cap ? cap * 2 : 65536;
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;

            free(buf);
            close(fd);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Removes a module that failed to run from sys.modules, keeping the pending exception. */
static void forget_module(PyObject *modules, const char *modname)
{
    PyObject *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);
    if (PyDict_DelItemString(modules, modname) < 0)
        PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* Executes the script as a fresh module (in sys.modules, with __file__). Returns the module (new
 * reference) or NULL with an exception set. */
static PyObject *load_script(const char *path, const char *modname)
{
    size_t len;
    char *src;
    PyObject *mod = NULL, *modules, *code = NULL, *d, *file, *rv;

    src = read_file(path, &len);
    if (src == NULL)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    code = Py_CompileStringExFlags(src, path, Py_file_input, NULL, -1);
    free(src);
    if (code == NULL)
        return NULL;
    mod = PyModule_New(modname);
    modules = PyImport_GetModuleDict(); /* borrowed */
    if (mod == NULL || PyDict_SetItemString(modules, modname, mod) < 0)
        goto fail;
    d = PyModule_GetDict(mod); /* borrowed */
    file = PyUnicode_DecodeFSDefault(path);
    if (file == NULL || PyDict_SetItemString(d, "__file__", file) < 0 ||
        PyDict_SetItemString(d, "__builtins__", PyEval_GetBuiltins()) < 0) {
        Py_XDECREF(file);
        goto fail_mod;
    }
    Py_DECREF(file);
    rv = PyEval_EvalCode(code, d, d);
    if (rv == NULL)
        goto fail_mod;
    Py_DECREF(rv);
    Py_DECREF(code);
    return mod;
fail_mod:
    forget_module(modules, modname);
fail:
    Py_XDECREF(mod);
    Py_XDECREF(code);
    return NULL;
}

/* Loads one application: a script run as module "_wsgid_app_GROUP[_N]" or an importable module,
 * then its (possibly dotted) callable. Returns a new reference, or NULL with the traceback logged
 * and a summary in err. */
static PyObject *load_one(const char *app, int is_script, const char *callable, int index,
                          char *err, size_t errlen)
{
    const wd_group_conf_t *g = wd__py_group;
    PyObject *mod = NULL, *obj = NULL;
    char summary[512], prefix[160], name[160];

    if (is_script) {
        if (index > 0)
            snprintf(name, sizeof name, "_wsgid_app_%s_%d", g->name, index);
        else
            snprintf(name, sizeof name, "_wsgid_app_%s", g->name);
        for (char *p = name; *p; p++)
            if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9'))
                *p = '_';
        mod = load_script(app, name);
    } else {
        const char *colon = strchr(app, ':');
        char *modname = strndup(app, colon ? (size_t)(colon - app) : strlen(app));

        if (modname == NULL)
            abort();
        mod = PyImport_ImportModule(modname);
        free(modname);
    }
    if (mod == NULL)
        goto fail;
    obj = mod;
    Py_INCREF(obj);
    for (const char *p = callable; p != NULL;) {
        const char *dot = strchr(p, '.');
        PyObject *attr = PyUnicode_FromStringAndSize(p, dot ? dot - p : (Py_ssize_t)strlen(p));

        Py_SETREF(obj, attr ? PyObject_GetAttr(obj, attr) : NULL);
        Py_XDECREF(attr);
        if (obj == NULL)
            goto fail;
        p = dot ? dot + 1 : NULL;
    }
    Py_DECREF(mod);
    if (!PyCallable_Check(obj)) {
        snprintf(err, errlen, "group %s: cannot load app %s: '%s' is not callable (it is a %s)",
                 g->name, app, callable, Py_TYPE(obj)->tp_name);
        wd_log_error("%s", err);
        Py_DECREF(obj);
        return NULL;
    }
    wd_log_info("group %s: loaded app %s (callable %s)", g->name, app, callable);
    return obj;
fail:
    snprintf(prefix, sizeof prefix, "group %s: ", g->name);
    summary[0] = '\0';
    wd__py_log_exception(prefix, summary, sizeof summary);
    snprintf(err, errlen, "group %s: cannot load app %s: %s", g->name, app, summary);
    wd_log_error("%s", err);
    Py_XDECREF(obj);
    Py_XDECREF(mod);
    return NULL;
}

static int mount_cmp(const void *a, const void *b)
{
    size_t la = ((const wd_py_mount_t *)a)->len, lb = ((const wd_py_mount_t *)b)->len;

    return la < lb ? 1 : la > lb ? -1 : 0;
}

int wd_py_load_app(char *err, size_t errlen)
{
    const wd_group_conf_t *g = wd__py_group;
    size_t n = 0;

    wd__py_app = load_one(g->app, g->app_is_script, g->callable, 0, err, errlen);
    if (wd__py_app == NULL)
        return -1;
    if (g->n_mounts == 0)
        return 0;
    wd__py_mounts = calloc(g->n_mounts, sizeof *wd__py_mounts);
    if (wd__py_mounts == NULL)
        abort();
    for (size_t i = 0; i < g->n_mounts; i++) {
        const wd_mount_conf_t *m = &g->mounts[i];
        wd_py_mount_t *pm = &wd__py_mounts[n];

        if (m->app_is_script) {
            /* Its directory is importable, as the main script's is. */
            const char *slash = strrchr(m->app, '/');
            PyObject *path = PySys_GetObject("path"), *dir;

            dir = slash ? PyUnicode_DecodeFSDefaultAndSize(m->app, slash - m->app) : NULL;
            if (dir != NULL && path != NULL && PySequence_Contains(path, dir) == 0)
                PyList_Insert(path, 1, dir);
            Py_XDECREF(dir);
            PyErr_Clear();
        }
        pm->app = load_one(m->app, m->app_is_script, m->callable, (int)i + 1, err, errlen);
        if (pm->app == NULL)
            return -1;
        pm->prefix = m->prefix;
        pm->len = strcmp(m->prefix, "/") == 0 ? 0 : strlen(m->prefix);
        wd__py_n_mounts = ++n;
    }
    qsort(wd__py_mounts, n, sizeof *wd__py_mounts, mount_cmp);
    return 0;
}
