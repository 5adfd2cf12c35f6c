/* uWSGI -> the model (see from_uwsgi.h). uWSGI's sizes are bytes, reload-on-rss megabytes,
 * harakiri seconds. Options that only say what wsgid always does (master, vacuum, die-on-term,
 * enable-threads...) are dropped quietly; the others it cannot map are noted. */
#include "from_uwsgi.h"
#include "alloc.h"

#include <pwd.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct ctx {
    wd_cv_t *cv;
    wd_cv_group_t *g;
    const wd_ini_t *ini;
    const char *app, *callable, *file;
    int app_is_file;               /* wsgi-file = (else module =) */
    const wd_ini_entry_t **mounts; /* the mount = lines, applied once all is read */
    int nmounts;
    const wd_ini_entry_t *app_line; /* the module = or wsgi-file = line */
    int single_interpreter, manage_script_name;
    int uwsgi_socket; /* g->listen is a socket = (uwsgi's protocol, what nginx's uwsgi_pass speaks)
                       */
    const wd_ini_entry_t *processes; /* the last processes = */
    int harakiri, limit_post;        /* given */
    wd_cv_loc_t *root;
} ctx_t;

static const char *const quiet[] = {
    "master",        "vacuum",    "die-on-term",  "enable-threads",
    "strict",        "need-app",  "lazy-apps",    "lazy",
    "plugin",        "plugins",   "thunder-lock", "py-autoreload",
    "auto-procname", "uid-check", "no-orphans",   "hook-master-start"};

static const struct {
    const char *name, *why;
} reasons[] = {
    {"http", "nginx.conf's server block is the HTTP front (uWSGI's http router is not needed)"},
    {"logto", "wsgid's log: file"},
    {"daemonize", "wsgid runs in the foreground (systemd)"},
    {"pidfile", "set pidfile: at the top of wsgid.yaml"},
    {"stats", "wsgid's metrics: address serves /metrics and /status"},
    {"cheaper", "wsgid runs a fixed number of processes"},
    {"listen", "wsgid's listen backlog is the kernel's maximum (somaxconn)"},
    {"post-buffering", "wsgid always reads the body before the app runs"},
    {"reload-mercy", "wsgid's graceful-timeout and shutdown-timeout"},
    {"offload-threads", "wsgid's loop thread writes responses itself"},
    {"touch-reload", "wsgid: reload-on-change: true with watch:"},
    {"static-map", "write it as an nginx location with alias"},
    {"route", "uWSGI's internal routing: write nginx rules by hand"},
    {"cron", "wsgid runs no cron tasks"},
    {"attach-daemon", "wsgid runs no side daemons (use systemd)"},
};

static int is(const wd_ini_entry_t *e, const char *a, const char *b)
{
    return strcmp(e->key, a) == 0 || (b != NULL && strcmp(e->key, b) == 0);
}

/* uWSGI's boolean options are off for false, off, no and 0, on for anything else. */
static int truth(const char *v)
{
    return strcasecmp(v, "false") != 0 && strcasecmp(v, "off") != 0 && strcasecmp(v, "no") != 0 &&
           strcmp(v, "0") != 0;
}

/* The number at the start of v, as uWSGI's atoi reads `processes = 4   ; four workers` (its ini
 * has no inline comments: the value runs to the end of the line); only a comment or blanks may
 * follow it here. */
static int leading_number(const char *v, double *out)
{
    char *end;

    *out = strtod(v, &end);
    if (end == v)
        return -1;
    if (*end != '\0' && *end != ' ' && *end != '\t')
        return -1;
    end += strspn(end, " \t");
    return *end == '\0' || *end == ';' || *end == '#' ? 0 : -1;
}

static int number(ctx_t *c, const wd_ini_entry_t *e, const char *key, double mul, double min,
                  double max, const char *fmt)
{
    char buf[64];
    double v;
    int bad = leading_number(e->value, &v);

    if (bad || v * mul < min || v * mul > max) {
        wd_cv_note(c->cv, c->ini->file, e->line, "%s = %s: not converted: %s", e->key, e->value,
                   bad ? "not a number" : "outside wsgid's range");
        return -1;
    }
    snprintf(buf, sizeof buf, fmt, v);
    wd_cv_key_set(&c->g->keys, key, buf, fmt[strlen(fmt) - 1] == 's');
    return 0;
}

/* Every socket is kept (wsgid tells the protocol by the first byte); nginx's uwsgi_pass goes to
 * the first socket = (or uwsgi-socket =), else to the first socket of any kind. */
static void socket_opt(ctx_t *c, const wd_ini_entry_t *e)
{
    const char *v = e->value;
    size_t n = strlen(v) + 16;
    char *l = xmalloc(n);
    wd_cv_group_t *g = c->g;
    int uwsgi = is(e, "socket", "uwsgi-socket");

    if (strchr(v, '/') != NULL || strchr(v, ':') == NULL)
        snprintf(l, n, "unix:%s", v);
    else
        snprintf(l, n, "%s%s", v[0] == ':' ? "0.0.0.0" : "", v);
    if (g->listen != NULL) {
        g->more_listen =
            xrealloc(g->more_listen, sizeof *g->more_listen * (size_t)(g->nmore_listen + 1));
        if (uwsgi && !c->uwsgi_socket) {
            g->more_listen[g->nmore_listen++] = g->listen;
            g->listen = l;
            c->uwsgi_socket = 1;
        } else {
            g->more_listen[g->nmore_listen++] = l;
        }
        return;
    }
    g->listen = l;
    c->uwsgi_socket = uwsgi;
}

/* chmod-socket = 660 is octal, as chmod's; alone it means 666. */
static void chmod_socket(ctx_t *c, const wd_ini_entry_t *e)
{
    char buf[16];

    if (e->value[0] == '\0')
        snprintf(buf, sizeof buf, "0666");
    else
        snprintf(buf, sizeof buf, "%s%.8s", e->value[0] == '0' ? "" : "0", e->value);
    wd_cv_key_set(&c->g->keys, "socket-mode", buf, 1);
}

static void chown_socket(ctx_t *c, const wd_ini_entry_t *e)
{
    const char *colon = strchr(e->value, ':');
    char *user = xstrndup(e->value, colon ? (size_t)(colon - e->value) : strlen(e->value));

    wd_cv_key_set(&c->g->keys, "socket-user", user, 1);
    if (colon != NULL)
        wd_cv_key_set(&c->g->keys, "socket-group", colon + 1, 1);
    free(user);
}

static void env_opt(ctx_t *c, const wd_ini_entry_t *e)
{
    const char *eq = strchr(e->value, '=');
    char *k;

    if (eq == NULL) {
        wd_cv_note(c->cv, c->ini->file, e->line, "env = %s: not converted: expected NAME=VALUE",
                   e->value);
        return;
    }
    k = xstrndup(e->value, (size_t)(eq - e->value));
    wd_cv_key_set(&c->g->env, k, eq + 1, 1);
    free(k);
}

/* mount = /PREFIX=APP, kept until the whole file is read (manage-script-name may come later). */
static void mount_opt(ctx_t *c, const wd_ini_entry_t *e)
{
    const char *eq = strchr(e->value, '=');

    if (eq == NULL || e->value[0] != '/') {
        wd_cv_note(c->cv, c->ini->file, e->line, "mount = %s: not converted: expected /PREFIX=APP",
                   e->value);
        return;
    }
    c->mounts = xrealloc(c->mounts, sizeof *c->mounts * (size_t)(c->nmounts + 1));
    c->mounts[c->nmounts++] = e;
}

static void path_opt(ctx_t *c, const char *v)
{
    c->g->python_path =
        xrealloc(c->g->python_path, sizeof *c->g->python_path * (size_t)(c->g->npython_path + 1));
    c->g->python_path[c->g->npython_path++] = xstrdup(v);
}

/* cpu-affinity = N: uWSGI gives each worker N CPUs of its own, round robin; wsgid's pin-threads
 * gives each worker's Python threads one (0, uWSGI's default, pins nothing). */
static void cpu_affinity(ctx_t *c, const wd_ini_entry_t *e)
{
    char *end;
    long n = strtol(e->value, &end, 10);

    if (end == e->value || *end != '\0' || n < 0) {
        wd_cv_note(c->cv, c->ini->file, e->line,
                   "cpu-affinity = %s: not converted: expected a number of CPUs", e->value);
        return;
    }
    if (n == 0)
        return;
    wd_cv_key_set(&c->g->keys, "pin-threads", "true", 0);
    if (n > 1)
        wd_cv_note(c->cv, c->ini->file, e->line,
                   "cpu-affinity = %s: pin-threads: true keeps each worker's Python threads on "
                   "one CPU, not %ld",
                   e->value, n);
}

/* uid = / gid = as a name (wsgid's user: and group: are names); uWSGI takes a number as the id. */
static void id_opt(ctx_t *c, const wd_ini_entry_t *e)
{
    int gid = is(e, "gid", NULL);
    char *end;
    unsigned long id = strtoul(e->value, &end, 10);
    const char *name = e->value;

    if (end != e->value && *end == '\0') {
        const struct passwd *pw = gid ? NULL : getpwuid((uid_t)id);
        const struct group *gr = gid ? getgrgid((gid_t)id) : NULL;

        name = pw != NULL ? pw->pw_name : gr != NULL ? gr->gr_name : NULL;
        if (name == NULL) {
            wd_cv_note(c->cv, c->ini->file, e->line,
                       "%s = %s: not converted: no %s with that id on this machine (wsgid's %s: "
                       "is a name: create it, or write the name in wsgid.yaml)",
                       e->key, e->value, gid ? "group" : "user", gid ? "group" : "user");
            return;
        }
    }
    wd_cv_key_set(&c->g->keys, gid ? "group" : "user", name, 1);
}

static int option2(ctx_t *c, const wd_ini_entry_t *e)
{
    if (is(e, "processes", "workers"))
        c->processes = e;
    else if (is(e, "threads", NULL))
        number(c, e, "threads", 1, 1, 1024, "%.0f");
    else if (is(e, "harakiri", NULL))
        c->harakiri = number(c, e, "request-timeout", 1, 0, 7 * 86400, "%.0fs") == 0;
    else if (is(e, "max-requests", NULL))
        number(c, e, "maximum-requests", 1, 0, 1e9, "%.0f");
    else if (is(e, "reload-on-rss", NULL))
        number(c, e, "memory-limit", 1, 16, 1048576, "%.0fM");
    else if (is(e, "buffer-size", NULL))
        number(c, e, "header-buffer-size", 1, 1024, 1048576, "%.0f");
    else if (is(e, "chmod-socket", NULL))
        chmod_socket(c, e);
    else if (is(e, "chown-socket", NULL))
        chown_socket(c, e);
    else if (is(e, "socket", "uwsgi-socket") || is(e, "http-socket", "fastcgi-socket"))
        socket_opt(c, e);
    else
        return 0;
    return 1;
}

static void option(ctx_t *c, const wd_ini_entry_t *e)
{
    if (!wd_cv_utf8(e->value)) {
        wd_cv_note(c->cv, c->ini->file, e->line,
                   "%s = %s: not converted: not UTF-8, which wsgid.yaml is (rename the path, or "
                   "write the value in UTF-8)",
                   e->key, e->value);
        return;
    }
    if (option2(c, e))
        return;
    if (is(e, "module", "wsgi") || is(e, "wsgi-file", "file")) {
        c->app = e->value;
        c->app_is_file = is(e, "wsgi-file", "file");
        c->app_line = e;
    } else if (is(e, "manage-script-name", NULL) || is(e, "single-interpreter", NULL)) {
        *(is(e, "manage-script-name", NULL) ? &c->manage_script_name : &c->single_interpreter) =
            truth(e->value);
    } else if (is(e, "callable", NULL))
        c->callable = e->value;
    else if (is(e, "chdir", NULL))
        wd_cv_key_set(&c->g->keys, "chdir", e->value, 1);
    else if (is(e, "virtualenv", "venv") || is(e, "home", "pyhome"))
        wd_cv_key_set(&c->g->keys, "python-home", e->value, 1);
    else if (is(e, "pythonpath", "python-path") || is(e, "pp", NULL))
        path_opt(c, e->value);
    else if (is(e, "env", NULL))
        env_opt(c, e);
    else if (is(e, "mount", NULL))
        mount_opt(c, e);
    else if (is(e, "uid", NULL) || is(e, "gid", NULL))
        id_opt(c, e);
    else if (is(e, "procname-prefix", NULL) || is(e, "procname", NULL))
        wd_cv_key_set(&c->g->keys, "display-name", e->value, 1);
    else if (is(e, "cpu-affinity", NULL))
        cpu_affinity(c, e);
    else if (is(e, "limit-post", NULL))
        c->limit_post = number(c, e, "limit-request-body", 1, 0, 1099511627776.0, "%.0f") == 0;
    else
        goto other;
    return;
other:
    for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++) {
        if (strcmp(e->key, quiet[i]) == 0)
            return;
    }
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        if (strcmp(e->key, reasons[i].name) == 0) {
            wd_cv_note(c->cv, c->ini->file, e->line, "%s = %s: not converted: %s", e->key, e->value,
                       reasons[i].why);
            return;
        }
    }
    wd_cv_note(c->cv, c->ini->file, e->line, "%s = %s: not converted: %s", e->key, e->value,
               "not an option wsgid convert maps (nothing is lost if it only names a value for "
               "%(...))");
}

/* A script uWSGI opens relative to its working directory: chdir, else (unknown here) the ini
 * file's directory, where the emperor starts a vassal; wsgid would take it relative to
 * wsgid.yaml's, so it is made absolute. Caller frees. */
static char *script_path(ctx_t *c, const wd_ini_entry_t *e, const char *v)
{
    const char *dir = wd_cv_key_get(&c->g->keys, "chdir");
    const char *slash = strrchr(c->ini->file, '/');
    char *p;

    if (v[0] == '/')
        return xstrdup(v);
    if (dir != NULL) {
        p = xmalloc(strlen(dir) + strlen(v) + 2);
        sprintf(p, "%s/%s", dir, v);
        return p;
    }
    p = xmalloc(strlen(c->ini->file) + strlen(v) + 3);
    if (slash != NULL)
        sprintf(p, "%.*s/%s", (int)(slash - c->ini->file), c->ini->file, v);
    else
        sprintf(p, "./%s", v);
    wd_cv_note(c->cv, c->ini->file, e->line,
               "%s = %s: uWSGI opens it in its working directory (no chdir =): taken as %s, where "
               "the emperor starts a vassal (check it in wsgid.yaml)",
               e->key, e->value, p);
    return p;
}

/* A module is imported from the working directory (chdir), which goes on python-path. */
static void module_path(ctx_t *c)
{
    const char *dir = wd_cv_key_get(&c->g->keys, "chdir");
    int seen = 0;

    for (int i = 0; dir != NULL && i < c->g->npython_path; i++)
        seen |= strcmp(c->g->python_path[i], dir) == 0;
    if (dir != NULL && !seen)
        path_opt(c, dir);
}

/* uWSGI's mount loader: a .py or .wsgi file, else a module[:callable]. */
static char *mount_app(ctx_t *c, const wd_ini_entry_t *e, const char *app)
{
    size_t n = strlen(app);

    if ((n > 3 && strcmp(app + n - 3, ".py") == 0) || (n > 5 && strcmp(app + n - 5, ".wsgi") == 0))
        return script_path(c, e, app);
    module_path(c);
    return xstrdup(app);
}

/* Without manage-script-name, uWSGI picks a mount by the SCRIPT_NAME the web server sends, and
 * nginx's uwsgi_params sends none: every request goes to the default app (wsgi-file or module,
 * else the first mount), with the whole path in PATH_INFO. */
static void finish_mounts(ctx_t *c)
{
    for (int i = 0; i < c->nmounts; i++) {
        const wd_ini_entry_t *e = c->mounts[i];
        const char *eq = strchr(e->value, '=');
        char *prefix = xstrndup(e->value, (size_t)(eq - e->value)), *app;

        while (strlen(prefix) > 1 && prefix[strlen(prefix) - 1] == '/')
            prefix[strlen(prefix) - 1] = '\0';
        if (strcmp(prefix, "/") == 0)
            prefix[0] = '\0';
        if (prefix[0] != '\0' && !c->manage_script_name && c->g->nmounts > 0) {
            wd_cv_note(c->cv, c->ini->file, e->line,
                       "mount = %s: not converted: without manage-script-name uWSGI picks a mount "
                       "by the SCRIPT_NAME the web server sends, and nginx's uwsgi_params sends "
                       "none, so the default app served %s too, as wsgid does (set "
                       "manage-script-name = true and convert again to serve %s with this app)",
                       e->value, prefix, prefix);
            free(prefix);
            continue;
        }
        app = mount_app(c, e, eq + 1);
        if (prefix[0] != '\0' && !c->manage_script_name) {
            wd_cv_note(c->cv, c->ini->file, e->line,
                       "mount = %s: served at / (without manage-script-name, uWSGI's default app "
                       "is the first mount, and it serves every path with SCRIPT_NAME empty)",
                       e->value);
            prefix[0] = '\0';
        }
        wd_cv_mount_add(c->g, prefix, app, NULL, prefix[0] == '\0' ? c->callable : NULL);
        free(app);
        free(prefix);
    }
    free(c->mounts);
}

/* uWSGI imports a module from its working directory (chdir) and opens a relative wsgi-file
 * there; wsgid resolves relative paths against its config file, so they are made absolute. The
 * group's app goes first: a later mount of / is noted as wsgid's model has one app there. */
static void finish_app(ctx_t *c)
{
    char *app = NULL;

    if (wd_cv_key_get(&c->g->keys, "threads") == NULL)
        wd_cv_key_set(&c->g->keys, "threads", "1", 0); /* uWSGI's default: one thread */
    if (c->app != NULL) {
        if (c->app_is_file) {
            app = script_path(c, c->app_line, c->app);
        } else {
            module_path(c);
            app = xstrdup(c->app);
        }
        wd_cv_mount_add(c->g, "", app, NULL, c->callable);
        free(app);
    }
    finish_mounts(c);
}

/* uWSGI drops its privileges before it binds its sockets: a unix socket belongs to uid and gid
 * (nginx's workers reach it as that user or group, as chmod-socket allows) unless chown-socket
 * says otherwise. */
static void finish_socket_owner(ctx_t *c)
{
    const char *user = wd_cv_key_get(&c->g->keys, "user");
    const char *group = wd_cv_key_get(&c->g->keys, "group");

    if (c->g->listen == NULL || strncmp(c->g->listen, "unix:", 5) != 0 ||
        wd_cv_key_get(&c->g->keys, "socket-user") != NULL)
        return;
    if (user != NULL)
        wd_cv_key_set(&c->g->keys, "socket-user", user, 1);
    if (group != NULL && wd_cv_key_get(&c->g->keys, "socket-group") == NULL)
        wd_cv_key_set(&c->g->keys, "socket-group", group, 1);
}

void wd_cv_from_uwsgi(wd_cv_t *cv, const wd_ini_t *ini, const char *name)
{
    ctx_t c;
    wd_cv_loc_t *l;
    double procs;

    memset(&c, 0, sizeof c);
    c.cv = cv;
    c.ini = ini;
    c.g = wd_cv_group_add(cv, name, ini->file, 1);
    for (int i = 0; i < ini->nnotes; i++) {
        if (ini->notes[i].value != NULL)
            wd_cv_note(cv, ini->file, ini->notes[i].line,
                       "$(%s): expanded from wsgid convert's environment (uWSGI expands it from "
                       "its own when it starts: check the value in wsgid.yaml)",
                       ini->notes[i].key);
        else
            wd_cv_note(cv, ini->file, ini->notes[i].line,
                       "$(%s): not set in wsgid convert's environment: expanded to nothing, as "
                       "uWSGI does (set it and convert again, or edit wsgid.yaml)",
                       ini->notes[i].key);
    }
    for (int i = 0; i < ini->n; i++)
        option(&c, &ini->e[i]);
    /* uWSGI's wsgi.multiprocess is False for one process, as wsgid's is without the key */
    if (c.processes != NULL && (leading_number(c.processes->value, &procs) < 0 || procs != 1))
        number(&c, c.processes, "processes", 1, 1, 1024, "%.0f");
    /* uWSGI has no request timeout without harakiri, and no body limit without limit-post
     * (nginx.conf's client_max_body_size still bounds it) */
    if (!c.harakiri)
        wd_cv_key_set(&c.g->keys, "request-timeout", "0", 0);
    if (!c.limit_post)
        wd_cv_key_set(&c.g->keys, "limit-request-body", "0", 0);
    finish_app(&c);
    finish_socket_owner(&c);
    for (int i = 0; i < c.g->nmounts; i++) {
        wd_cv_mount_t *m = &c.g->mounts[i];

        if (m->prefix[0] != '\0' && !c.single_interpreter && m->app_group == NULL)
            m->app_group = xstrdup("%{RESOURCE}");
    }
    if (c.g->nmounts == 0)
        wd_cv_note(cv, ini->file, 1,
                   "[uwsgi]: no module, wsgi-file or mount: the group has no app");
    l = wd_cv_loc_add(cv, "/", WD_CV_PREFIX, 0);
    l->group = xstrdup(c.g->name);
}
