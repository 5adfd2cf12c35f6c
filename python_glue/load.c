/* Loading the apps of a group, each in its interpreter: a script run as a module, or an
 * importable module, then its callable. A mount's env and chdir apply while it is imported. */
#include "glue.h"
#include "glue_int.h"
#include "../daemon/common/alloc.h"
#include "../daemon/common/log.h"
#include "../daemon/worker/request.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DJANGO_SETTINGS "DJANGO_SETTINGS_MODULE"

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
            cap = cap ? cap * 2 : 65536;
            buf = xrealloc(buf, cap);
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

/* The module of app: a script run as "_wsgid_app_GROUP[_N]", or an imported module (new
 * reference, or NULL with an exception set). */
static PyObject *import_app(const char *app, int is_script, int index)
{
    const wd_group_conf_t *g = wd__py.group;
    PyObject *mod;
    char name[160];

    if (is_script) {
        if (index > 0)
            snprintf(name, sizeof name, "_wsgid_app_%s_%d", g->name, index);
        else
            snprintf(name, sizeof name, "_wsgid_app_%s", g->name);
        for (char *p = name; *p; p++)
            if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9'))
                *p = '_';
        return load_script(app, name);
    }
    const char *colon = strchr(app, ':');
    char *modname = xstrndup(app, colon ? (size_t)(colon - app) : strlen(app));

    mod = PyImport_ImportModule(modname);
    free(modname);
    return mod;
}

/* obj.a.b.c for a dotted name (new reference, or NULL with an exception set). */
static PyObject *get_dotted(PyObject *obj, const char *name)
{
    Py_INCREF(obj);
    for (const char *p = name; p != NULL;) {
        const char *dot = strchr(p, '.');
        PyObject *attr = PyUnicode_FromStringAndSize(p, dot ? dot - p : (Py_ssize_t)strlen(p));

        Py_SETREF(obj, attr ? PyObject_GetAttr(obj, attr) : NULL);
        Py_XDECREF(attr);
        if (obj == NULL)
            return NULL;
        p = dot ? dot + 1 : NULL;
    }
    return obj;
}

/* " (mount /blog)", or "" for the group's own app, for messages. */
static const char *app_label(const wd_py_mount_t *a, char *buf, size_t cap)
{
    if (a->conf == NULL)
        return "";
    snprintf(buf, cap, " (mount %s)", a->prefix);
    return buf;
}

/* An ImportError in a sub-interpreter is most often an extension that refuses or breaks in one
 * (Cython's "Interpreter change detected", PyO3's modules, single-phase C extensions): say so,
 * with the module and the fix. */
static void subinterp_hint(const wd_py_mount_t *a, const char *summary, const char *module,
                           char *hint, size_t cap)
{
    hint[0] = '\0';
    if (a->interp->index == 0 || strstr(summary, "ImportError") == NULL)
        return;
    snprintf(hint, cap,
             "; it runs in the sub-interpreter of application group \"%s\": if %s%s is (or "
             "imports) a C extension that does not support sub-interpreters, give the %s "
             "application-group: \"%s\"",
             a->interp->name, module[0] ? "module " : "the module", module,
             a->conf ? "mount" : "group", WD_APP_GROUP_GLOBAL);
}

/* Loads app a in the current interpreter. Returns a new reference, or NULL with the traceback
 * logged and a summary in err. */
static PyObject *load_one(const wd_py_mount_t *a, int index, char *err, size_t errlen)
{
    const wd_group_conf_t *g = wd__py.group;
    const char *app = a->conf ? a->conf->app : g->app;
    const char *callable = a->conf ? a->conf->callable : g->callable;
    int is_script = a->conf ? a->conf->app_is_script : g->app_is_script;
    PyObject *mod, *obj = NULL;
    char summary[1024], prefix[160], label[160], hint[512];

    mod = import_app(app, is_script, index);
    if (mod != NULL)
        obj = get_dotted(mod, callable);
    Py_XDECREF(mod);
    if (obj == NULL) {
        char module[256];

        snprintf(prefix, sizeof prefix, "group %s: ", g->name);
        summary[0] = '\0';
        wd__py_exc_module(module, sizeof module);
        wd__py_log_exception(prefix, summary, sizeof summary);
        subinterp_hint(a, summary, module, hint, sizeof hint);
        snprintf(err, errlen, "group %s: cannot load app %s%s: %s%s", g->name, app,
                 app_label(a, label, sizeof label), summary, hint);
        wd_log_error("%s", err);
        return NULL;
    }
    if (!PyCallable_Check(obj)) {
        snprintf(err, errlen, "group %s: cannot load app %s%s: '%s' is not callable (it is a %s)",
                 g->name, app, app_label(a, label, sizeof label), callable, Py_TYPE(obj)->tp_name);
        wd_log_error("%s", err);
        Py_DECREF(obj);
        return NULL;
    }
    wd_log_info("group %s: loaded app %s%s (callable %s%s%s%s)", g->name, app,
                app_label(a, label, sizeof label), callable,
                a->interp->index ? ", application group \"" : "", a->interp->name,
                a->interp->index ? "\"" : "");
    return obj;
}

/* os.environ of the current interpreter (new reference). */
static PyObject *os_environ(void)
{
    PyObject *os = PyImport_ImportModule("os"), *env;

    if (os == NULL)
        return NULL;
    env = PyObject_GetAttrString(os, "environ");
    Py_DECREF(os);
    return env;
}

/* The value of name in environ as a new C string, or NULL. */
static char *env_get(PyObject *environ, const char *name)
{
    PyObject *v = PyMapping_GetItemString(environ, name);
    const char *s = v != NULL && PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
    char *out = s != NULL ? xstrdup(s) : NULL;

    PyErr_Clear();
    Py_XDECREF(v);
    return out;
}

/* Two Django projects in one interpreter: Django configures itself once per interpreter, from
 * the first DJANGO_SETTINGS_MODULE, and the second project's wsgi.py
 * (os.environ.setdefault(...)) would silently serve the first one's settings and URLs. Before a
 * second app of an interpreter loads, the variable is taken out so that its wsgi.py sets its own;
 * a different value is refused with the fix. *first keeps the value the interpreter runs with. */
static int django_guard(PyObject *environ, const wd_py_mount_t *a, char **first, int before,
                        char *err, size_t errlen)
{
    char *now, label[160];
    int explicit_ = 0;

    for (size_t i = 0; a->conf != NULL && i < a->conf->n_env; i++)
        explicit_ |= strcmp(a->conf->env[i].name, DJANGO_SETTINGS) == 0;
    if (before) {
        if (*first != NULL && !explicit_ && PyMapping_DelItemString(environ, DJANGO_SETTINGS) < 0)
            PyErr_Clear();
        return 0;
    }
    now = env_get(environ, DJANGO_SETTINGS);
    if (*first == NULL) {
        *first = now;
        return 0;
    }
    if (now != NULL && strcmp(now, *first) != 0) {
        snprintf(err, errlen,
                 "group %s: app %s%s sets %s=%s, but the interpreter it shares (application group "
                 "\"%s\") already runs Django with %s: one interpreter has one Django settings "
                 "module. Give the mounts application-group: \"%s\" (or two names)",
                 wd__py.group->name, a->conf ? a->conf->app : wd__py.group->app,
                 app_label(a, label, sizeof label), DJANGO_SETTINGS, now,
                 a->interp->index ? a->interp->name : WD_APP_GROUP_GLOBAL, *first,
                 WD_APP_GROUP_RESOURCE);
        wd_log_error("%s", err);
        free(now);
        return -1;
    }
    if (now == NULL) {
        PyObject *v = PyUnicode_FromString(*first);

        if (v == NULL || PyMapping_SetItemString(environ, DJANGO_SETTINGS, v) < 0)
            PyErr_Clear();
        Py_XDECREF(v);
    }
    free(now);
    return 0;
}

/* Puts name=value in os.environ's own mapping (environ._data, the encoded key and value), which
 * each interpreter has a copy of, without os.environ.__setitem__'s putenv(): that would set it in
 * the one environment of the process, where every interpreter's C libraries (libpq's PGHOST, the
 * C library's TZ) and child processes read it, and the mount loaded last won for all (helper-63:
 * one mount's psycopg2 connected to the database another mount was given). */
static int environ_put(PyObject *environ, const char *name, PyObject *value)
{
    PyObject *data = PyObject_GetAttrString(environ, "_data");
    PyObject *k = data != NULL ? PyObject_CallMethod(environ, "encodekey", "s", name) : NULL;
    PyObject *v = k != NULL ? PyObject_CallMethod(environ, "encodevalue", "O", value) : NULL;
    int rc = v != NULL ? PyObject_SetItem(data, k, v) : -1;

    Py_XDECREF(v);
    Py_XDECREF(k);
    Py_XDECREF(data);
    return rc;
}

/* A mount's env, in its interpreter's os.environ only (environ_put). */
static int apply_env(PyObject *environ, const wd_mount_conf_t *m)
{
    for (size_t i = 0; m != NULL && i < m->n_env; i++) {
        PyObject *v = PyUnicode_DecodeFSDefault(m->env[i].value);
        int rc = v != NULL ? environ_put(environ, m->env[i].name, v) : -1;

        Py_XDECREF(v);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Loads app number i (file order) in its interpreter, whose thread state the caller made
 * current. A mount's chdir holds while it is imported (then the group's comes back), and while
 * its requests run: each pool thread then has a working directory of its own (pool.c). */
static int load_in_interp(wd_py_mount_t *a, int i, char **django, char *err, size_t errlen)
{
    const wd_group_conf_t *g = wd__py.group;
    const char *cd = a->conf != NULL ? a->conf->chdir : NULL;
    PyObject *environ = os_environ();
    int rc = -1;

    if (environ == NULL || apply_env(environ, a->conf) < 0) {
        wd__py_log_exception("", NULL, 0);
        snprintf(err, errlen, "group %s: cannot set the environment of %s", g->name, a->prefix);
        goto out;
    }
    if (cd != NULL &&
        (chdir(cd) < 0 || (a->dir_fd = open(cd, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)) {
        a->dir_fd = wd__py.cwd_fd;
        snprintf(err, errlen, "group %s: mount %s: cannot chdir to %s: %s", g->name, a->prefix, cd,
                 strerror(errno));
        wd_log_error("%s", err);
        goto out;
    }
    if (cd != NULL)
        wd__py.mount_dirs = 1;
    if (a->interp->n_apps > 1)
        django_guard(environ, a, django, 1, err, errlen);
    a->app = load_one(a, i, err, errlen);
    if (cd != NULL && chdir(g->chdir != NULL ? g->chdir : wd__py.cwd) < 0)
        wd_log_error("group %s: cannot chdir back to %s: %s", g->name,
                     g->chdir != NULL ? g->chdir : wd__py.cwd, strerror(errno));
    if (a->app == NULL)
        goto out;
    if (a->interp->n_apps > 1 && django_guard(environ, a, django, 0, err, errlen) < 0)
        goto out;
    rc = 0;
out:
    Py_XDECREF(environ);
    return rc;
}

static int app_cmp(const void *x, const void *y)
{
    const wd_py_mount_t *a = x, *b = y;

    if (a->len != b->len)
        return a->len < b->len ? 1 : -1;
    return (a->conf == NULL) - (b->conf == NULL); /* a "/" mount before the group's own app */
}

int wd_py_load_app(char *err, size_t errlen)
{
    return wd_py_load(NULL, err, errlen);
}

int wd_py_load(void (*loading)(const char *what), char *err, size_t errlen)
{
    PyThreadState *main_ts = wd__py.interps[0]->ts;
    char **django;
    int rc = 0;

    if (wd__py_apps_setup() < 0) {
        snprintf(err, errlen, "group %s: cannot set up the interpreters of its apps",
                 wd__py.group->name);
        return -1;
    }
    django = xcalloc(wd__py.n_interps, sizeof *django);

    /* The main interpreter's apps first, then the others in file order: a C extension that loads
     * into one interpreter per process (numpy, a Cython module) belongs to the main one, where
     * the docs send such an app; imported first by a sub-interpreter's mount listed before, it
     * refused the main interpreter ("Interpreter change detected", helper-63). */
    for (size_t k = 0; k < 2 * wd__py.n_apps && rc == 0; k++) {
        wd_py_mount_t *a = &wd__py.apps[k % wd__py.n_apps];
        uint64_t t0 = wd_now_ns();

        if ((a->interp->index == 0) != (k < wd__py.n_apps))
            continue;
        if (loading != NULL) {
            char what[1024], label[160];

            snprintf(what, sizeof what, "app %s%s", a->conf ? a->conf->app : wd__py.group->app,
                     app_label(a, label, sizeof label));
            loading(what);
        }
        PyThreadState_Swap(a->interp->ts);
        rc = load_in_interp(a, a->conf ? (int)(a->conf - wd__py.group->mounts) + 1 : 0,
                            &django[a->interp->index], err, errlen);
        PyThreadState_Swap(main_ts);
        if (rc == 0)
            wd_log_debug("group %s: %s loaded in %.1f ms", wd__py.group->name, a->prefix,
                         (double)(wd_now_ns() - t0) / 1e6);
    }
    for (size_t i = 0; i < wd__py.n_interps; i++)
        free(django[i]);
    free(django);
    if (rc == 0)
        qsort(wd__py.apps, wd__py.n_apps, sizeof *wd__py.apps, app_cmp);
    return rc;
}
