/* The interpreters of a worker: the main one, configured before Py_Initialize (python-home,
 * python-path, chdir, env), and one sub-interpreter per application group an app asks for
 * (`application-group`, mod_wsgi's WSGIApplicationGroup), each with its own sys.path. */
#include "glue.h"
#include "glue_int.h"
#include "../daemon/common/alloc.h"
#include "../daemon/common/log.h"
#include "../daemon/worker/request.h"
#include "../daemon/worker/stacks.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

wd_py_t wd__py;

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

/* Inserts dir at *at in the list path, unless it is there already. */
static int path_insert(PyObject *path, Py_ssize_t *at, const char *dir)
{
    PyObject *s = PyUnicode_DecodeFSDefault(dir);
    int rc = s != NULL ? PySequence_Contains(path, s) : -1;

    if (rc == 0)
        rc = PyList_Insert(path, (*at)++, s);
    Py_XDECREF(s);
    return rc < 0 ? -1 : 0;
}

static void script_dir(const char *script, char *dir, size_t cap)
{
    const char *slash = strrchr(script, '/');

    if (slash == NULL)
        snprintf(dir, cap, ".");
    else if (slash == script)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - script), script);
}

/* sys.path of the current interpreter, in: for each of its apps, the script's directory and the
 * mount's python-path (and chdir, for a module app); then the group's python-path (and chdir);
 * all before the rest. */
static int set_sys_path(const wd_py_interp_t *in)
{
    const wd_group_conf_t *g = wd__py.group;
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    Py_ssize_t at = 0;
    char dir[4096];

    if (path == NULL || !PyList_Check(path))
        return -1;
    for (size_t i = 0; i < wd__py.n_apps; i++) {
        const wd_py_mount_t *a = &wd__py.apps[i];
        const wd_mount_conf_t *m = a->conf;
        const char *app = m ? m->app : g->app;
        const char *chdir_ = m ? m->chdir : NULL;

        if (a->interp != in)
            continue;
        if (m ? m->app_is_script : g->app_is_script) {
            script_dir(app, dir, sizeof dir);
            if (path_insert(path, &at, dir) < 0)
                return -1;
        }
        for (size_t k = 0; m != NULL && k < m->n_python_path; k++)
            if (path_insert(path, &at, m->python_path[k]) < 0)
                return -1;
        if (chdir_ != NULL && !m->app_is_script && path_insert(path, &at, chdir_) < 0)
            return -1;
    }
    for (size_t i = 0; i < g->n_python_path; i++)
        if (path_insert(path, &at, g->python_path[i]) < 0)
            return -1;
    if (g->chdir != NULL && (g->app == NULL || !g->app_is_script) &&
        path_insert(path, &at, g->chdir) < 0)
        return -1;
    return 0;
}

/* SIGUSR2 dumps every Python thread's stack to the error log (dump.c: from the signal handler,
 * without the GIL, so it works while a thread holds it for ever). The master sends it to a worker
 * its watchdog is about to kill (deadlock-timeout). The dump goes to fd 2, the pipe the master
 * reads (master_output.c), which logs each line as this worker's; written to the log itself, its
 * lines named neither group nor pid (helper-60). wsgictl stacks: the same to the master's stacks
 * pipe, then the handler that writes the end line (daemon/worker/stacks.h). */
static int stacks_on_signal(void)
{
    if (wd_log_fd() >= 0) {
        /* At log level error the master would leave out its warn lines: the log itself then,
         * as before (helper-61). */
        if (wd__py_dump_on(SIGUSR2, wd_log_level_enabled(WD_LOG_WARN) ? 2 : wd_log_fd()) < 0)
            return -1;
        wd__py.stacks_to_log = 1;
    }
    if (wd_stacks_fd() >= 0 && wd__py_dump_on(WD_WORKER_SIG_STACKS, wd_stacks_fd()) < 0)
        return -1;
    wd__py_dump_interps();
    return 0;
}

static wd_py_interp_t *interp_add(const char *name)
{
    wd_py_interp_t *in = xcalloc(1, sizeof *in);

    wd__py.interps = xrealloc(wd__py.interps, (wd__py.n_interps + 1) * sizeof *wd__py.interps);
    in->index = (int)wd__py.n_interps;
    in->name = xstrdup(name);
    wd__py.interps[wd__py.n_interps++] = in;
    return in;
}

/* The interpreter app a (mount m, or the group's own app when m is NULL) runs in: the main one,
 * a new one (%{RESOURCE}), or the one of its name. */
static wd_py_interp_t *interp_for(const wd_mount_conf_t *m)
{
    const char *ag = wd_app_group_of(wd__py.group, m);

    if (strcmp(ag, WD_APP_GROUP_GLOBAL) == 0)
        return wd__py.interps[0];
    if (strcmp(ag, WD_APP_GROUP_RESOURCE) == 0)
        return interp_add(m != NULL ? m->prefix : "/");
    for (size_t i = 1; i < wd__py.n_interps; i++) {
        if (strcmp(wd__py.interps[i]->name, ag) == 0)
            return wd__py.interps[i];
    }
    return interp_add(ag);
}

/* The apps of the group in file order (the group's own first), each with its interpreter. */
static void plan_apps(void)
{
    const wd_group_conf_t *g = wd__py.group;
    size_t n = 0;

    wd__py.apps = xcalloc(g->n_mounts + 1, sizeof *wd__py.apps);
    for (size_t i = 0; i < g->n_mounts + 1; i++)
        wd__py.apps[i].dir_fd = wd__py.cwd_fd;
    if (g->app != NULL) {
        wd__py.apps[n].prefix = "/";
        wd__py.apps[n].interp = interp_for(NULL);
        wd__py.apps[n++].interp->n_apps++;
    }
    for (size_t i = 0; i < g->n_mounts; i++) {
        wd_py_mount_t *a = &wd__py.apps[n++];

        a->conf = &g->mounts[i];
        a->prefix = a->conf->prefix;
        a->len = strcmp(a->prefix, "/") == 0 ? 0 : strlen(a->prefix);
        a->interp = interp_for(a->conf);
        a->interp->n_apps++;
    }
    wd__py.n_apps = n;
}

/* Whether a mount of the group has a chdir of its own: then a thread has a working directory of
 * its own, which moves (pool.c, respond.c). */
static int mount_has_chdir(void)
{
    for (size_t i = 0; i < wd__py.group->n_mounts; i++)
        if (wd__py.group->mounts[i].chdir != NULL)
            return 1;
    return 0;
}

/* What every interpreter needs before its apps load: sys.path, the environ template, its
 * stdout and stderr to the error log; with a mount's chdir, threads its apps start that keep
 * their directory (thread_dir.c). Every interpreter gets those, one without a chdir too: a pool
 * thread that moves to /c's directory moved the threads /a started with it. */
static int interp_ready(wd_py_interp_t *in)
{
    if (set_sys_path(in) < 0 || wd__py_stdio_to_log() < 0 ||
        (mount_has_chdir() && wd__py_thread_dir_install() < 0))
        return -1;
    in->environ = wd__py_environ_template(in);
    return in->environ != NULL ? 0 : -1;
}

/* Every sub-interpreter is made before any app is imported: a sub-interpreter's os.environ is a
 * copy of the process environment when it is made, and an app that sets a variable
 * (os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...)) sets it in the process too, where an
 * interpreter made later would find it. */
static int subinterps_make(void)
{
    PyThreadState *main_ts = wd__py.interps[0]->ts;

    for (size_t i = 1; i < wd__py.n_interps; i++) {
        wd_py_interp_t *in = wd__py.interps[i];
        uint64_t t0 = wd_now_ns();

        in->ts = Py_NewInterpreter();
        in->state = in->ts != NULL ? PyThreadState_GetInterpreter(in->ts) : NULL;
        if (in->ts == NULL) {
            PyThreadState_Swap(main_ts);
            wd_log_error("group %s: cannot create the sub-interpreter of application group "
                         "\"%s\"",
                         wd__py.group->name, in->name);
            return -1;
        }
        if (interp_ready(in) < 0) {
            wd__py_log_exception("", NULL, 0);
            PyThreadState_Swap(main_ts);
            wd_log_error("group %s: cannot set up the sub-interpreter of application group "
                         "\"%s\"",
                         wd__py.group->name, in->name);
            return -1;
        }
        PyThreadState_Swap(main_ts);
        wd_log_debug("group %s: sub-interpreter \"%s\" made in %.1f ms", wd__py.group->name,
                     in->name, (double)(wd_now_ns() - t0) / 1e6);
    }
    return 0;
}

int wd_py_init(const wd_config_t *conf, const wd_group_conf_t *group, int slot, char *err,
               size_t errlen)
{
    PyConfig config;
    PyStatus status;
    char *argv[] = {"wsgid", NULL};

    (void)conf;
    wd__py.group = group;
    for (size_t i = 0; i < group->n_env; i++)
        setenv(group->env[i].name, group->env[i].value, 1);
    /* The master says err where the operator looks (wsgictl, status): the cause, not only
     * that the interpreter could not be initialised (helper-62). */
    if (group->chdir != NULL && chdir(group->chdir) < 0) {
        snprintf(err, errlen, "group %s: cannot chdir to %s: %s", group->name, group->chdir,
                 strerror(errno));
        wd_log_error("%s", err);
        return -1;
    }
    wd__py.cwd = getcwd(NULL, 0);
    if (wd__py.cwd == NULL)
        wd__py.cwd = xstrdup("/");
    wd__py.cwd_fd = open(wd__py.cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
    /* Python installs no signal handlers: the loop owns signals. A client that went away must
     * give EPIPE, not kill the worker. */
    signal(SIGPIPE, SIG_IGN);

    /* Pre-initialised first, so that the big-block hook goes on top of the allocator it chose
     * (PYTHONMALLOC), before the runtime allocates. */
    {
        PyPreConfig pre;

        PyPreConfig_InitPythonConfig(&pre);
        status = Py_PreInitialize(&pre);
        if (PyStatus_Exception(status)) {
            snprintf(err, errlen, "group %s: cannot pre-initialise Python: %s", group->name,
                     status.err_msg ? status.err_msg : "unknown error");
            wd_log_error("%s", err);
            return -1;
        }
        wd__py_bigmem_install();
    }
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
        snprintf(err, errlen, "group %s: cannot initialise Python%s%s: %s", group->name,
                 group->python_home ? " with python-home " : "",
                 group->python_home ? group->python_home : "",
                 status.err_msg ? status.err_msg : "unknown error");
        wd_log_error("%s", err);
        return -1;
    }
    interp_add("")->ts = PyThreadState_Get(); /* the main interpreter */
    wd__py.interps[0]->state = PyThreadState_GetInterpreter(wd__py.interps[0]->ts);
    if (wd__py_input_ready() < 0 || wd__py_respond_init() < 0 || wd__py_environ_keys_init() < 0 ||
        interp_ready(wd__py.interps[0]) < 0 || stacks_on_signal() < 0)
        goto fail;
    wd_log_debug("group %s: Python %s initialised (process %d)", group->name, Py_GetVersion(),
                 slot);
    return 0;
fail:
    wd__py_log_exception("", NULL, 0);
    snprintf(err, errlen, "group %s: cannot set up the Python interpreter", group->name);
    wd_log_error("%s", err);
    return -1;
}

static void interp_clear(wd_py_interp_t *in)
{
    for (size_t i = 0; i < wd__py.n_apps; i++) {
        if (wd__py.apps[i].interp == in)
            Py_CLEAR(wd__py.apps[i].app);
    }
    Py_CLEAR(in->environ);
    Py_CLEAR(in->format_exception);
}

/* Calls module.name() in the current interpreter; an error is cleared, as Py_EndInterpreter and
 * Py_FinalizeEx clear (or log) theirs there. */
static void call_in(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module); /* new reference */
    PyObject *r = mod != NULL ? PyObject_CallMethod(mod, name, NULL) : NULL;

    if (r == NULL)
        PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(mod);
}

/* Whether ts is the last thread state of its interpreter once the app's non-daemon threads are
 * joined (threading._shutdown, which Py_EndInterpreter would call). A daemon thread the app
 * started would make Py_EndInterpreter abort the process ("not the last thread"). */
static int last_thread(PyThreadState *ts)
{
    call_in("threading", "_shutdown");
    return PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(ts)) == ts &&
           PyThreadState_Next(ts) == NULL;
}

/* What Py_EndInterpreter and Py_FinalizeEx run of an interpreter once its non-daemon threads
 * are joined, and before they check for threads left (CPython 3.11, Python/pylifecycle.c): its
 * atexit handlers (atexit._run_exitfuncs runs each once: they are forgotten as they run). And
 * its stdout and stderr flushed, so that the app's last line is not lost. */
static void exit_funcs(void)
{
    call_in("atexit", "_run_exitfuncs");
    for (int i = 0; i < 2; i++) {
        PyObject *f = PySys_GetObject(i == 0 ? "stdout" : "stderr"); /* borrowed */
        PyObject *r = f != NULL && f != Py_None ? PyObject_CallMethod(f, "flush", NULL) : NULL;

        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
}

/* The threads other than ts that still have a state in ts's interpreter: how many, and in buf
 * the names the threading module gives those it knows ("sleeper, Thread-1 (worker)"). Matched
 * by thread id: threading.enumerate() also lists the dummy thread of a request thread that has
 * gone (its state deleted with it), and a thread of _thread.start_new_thread has no name. */
static int leftover_threads(PyThreadState *ts, char *buf, size_t cap)
{
    PyObject *ids = PySet_New(NULL), *all = NULL, *threading = NULL; /* new references */
    size_t used = 0;
    int n = 0;

    buf[0] = '\0';
    for (PyThreadState *t = PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(ts));
         t != NULL; t = PyThreadState_Next(t)) {
        PyObject *id;

        if (t == ts)
            continue;
        n++;
        id = ids != NULL ? PyLong_FromUnsignedLong(t->thread_id) : NULL;
        if (id != NULL && PySet_Add(ids, id) < 0)
            PyErr_Clear();
        Py_XDECREF(id);
    }
    threading = PyImport_ImportModule("threading");
    all = threading != NULL ? PyObject_CallMethod(threading, "enumerate", NULL) : NULL;
    for (Py_ssize_t i = 0;
         ids != NULL && all != NULL && PyList_Check(all) && i < PyList_GET_SIZE(all) && used < cap;
         i++) {
        PyObject *t = PyList_GET_ITEM(all, i); /* borrowed, all holds it */
        PyObject *ident = PyObject_GetAttrString(t, "ident"), *name = NULL;
        const char *s = NULL;

        if (ident != NULL && PySet_Contains(ids, ident) == 1)
            name = PyObject_GetAttrString(t, "name");
        if (name != NULL && PyUnicode_Check(name))
            s = PyUnicode_AsUTF8(name);
        if (s != NULL) {
            int w = snprintf(buf + used, cap - used, "%s%.60s", used ? ", " : "", s);

            used += w > 0 ? (size_t)w : 0;
        }
        PyErr_Clear(); /* a failed lookup: the next one must not run with it pending */
        Py_XDECREF(ident);
        Py_XDECREF(name);
    }
    PyErr_Clear();
    Py_XDECREF(all);
    Py_XDECREF(threading);
    Py_XDECREF(ids);
    return n;
}

/* A sub-interpreter whose app left threads running (a daemon thread, a ThreadPool: sentry-sdk
 * and metrics pushers start them at import). CPython 3.11 cannot end it: Py_EndInterpreter aborts
 * on any thread state but its own ("not the last thread"); and deleting the other states first
 * would be a use after free, since a thread whose sleep ends takes the GIL back with its state
 * (take_gil makes a thread exit instead only once the whole runtime finalizes, in Py_FinalizeEx;
 * an interpreter of its own that finalizes came in 3.13). So it is left as it is to the
 * process's exit, once its atexit handlers ran, as they do for an app without threads
 * (helper-63: they never ran). Py_FinalizeEx is then not called (wd_py_stop). */
static void interp_leave(wd_py_interp_t *in)
{
    char names[512];
    int n;

    exit_funcs(); /* its non-daemon threads were joined (last_thread) */
    n = leftover_threads(in->ts, names, sizeof names);
    wd_log_info("group %s: application group \"%s\" still runs %d thread%s of its app%s%s%s: "
                "its atexit handlers ran, it ends with the process",
                wd__py.group->name, in->name, n, n == 1 ? "" : "s", names[0] ? " (" : "", names,
                names[0] ? ")" : "");
}

/* Ends the sub-interpreters and forgets the apps (main thread, GIL held, main state current).
 * Returns how many were left to the process's exit. */
static int apps_end(int threads_gone)
{
    PyThreadState *main_ts = wd__py.interps[0]->ts;
    int left = 0;

    wd__py_dump_off(); /* the sub-interpreters go */

    for (size_t i = 1; i < wd__py.n_interps; i++) {
        wd_py_interp_t *in = wd__py.interps[i];

        /* Py_EndInterpreter wants its last thread state: with a thread of ours left behind
         * (stuck in C with the GIL), or one the app started, the sub-interpreter is left to
         * the process's exit. */
        if (threads_gone && in->ts != NULL) {
            PyThreadState_Swap(in->ts);
            interp_clear(in);
            if (last_thread(in->ts)) {
                Py_EndInterpreter(in->ts);
            } else {
                interp_leave(in);
                left++;
            }
            PyThreadState_Swap(main_ts);
        } else if (in->ts != NULL) {
            left++;
        }
        free(in->name);
        free(in);
    }
    wd__py.n_interps = 1;
    wd__py_dump_interps();
    for (size_t i = 0; i < wd__py.n_apps; i++) {
        Py_CLEAR(wd__py.apps[i].app);
        if (wd__py.apps[i].dir_fd != wd__py.cwd_fd && wd__py.apps[i].dir_fd >= 0)
            close(wd__py.apps[i].dir_fd);
    }
    wd__py.mount_dirs = 0;
    free(wd__py.apps);
    wd__py.apps = NULL;
    wd__py.n_apps = 0;
    wd__py.interps[0]->n_apps = 0;
    return left;
}

int wd__py_apps_setup(void)
{
    if (wd__py.n_apps > 0 || wd__py.n_interps > 1)
        apps_end(1); /* loaded again (the unit tests do) */
    plan_apps();
    if (set_sys_path(wd__py.interps[0]) < 0) {
        wd__py_log_exception("", NULL, 0);
        return -1;
    }
    if (subinterps_make() < 0)
        return -1;
    wd__py_dump_interps();
    return 0;
}

int wd__py_interps_end(int threads_gone)
{
    int left;

    if (wd__py.n_interps == 0)
        return 0;
    left = apps_end(threads_gone);
    wd__py_dump_off();
    interp_clear(wd__py.interps[0]);
    if (left > 0) { /* the main interpreter's share of Py_FinalizeEx, which is not called */
        call_in("threading", "_shutdown");
        exit_funcs();
    }
    free(wd__py.interps[0]->name);
    free(wd__py.interps[0]);
    free(wd__py.interps);
    wd__py.interps = NULL;
    wd__py.n_interps = 0;
    free(wd__py.cwd);
    wd__py.cwd = NULL;
    if (wd__py.cwd_fd >= 0)
        close(wd__py.cwd_fd);
    wd__py.cwd_fd = -1;
    return left;
}
