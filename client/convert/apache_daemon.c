/* WSGIDaemonProcess's options -> a wsgid group's keys. mod_wsgi's times are whole seconds and its
 * sizes bytes; wsgid takes "30s" and byte counts, within the ranges of config_group.c (a value
 * outside them is noted rather than written, so that the output passes `wsgid --check`). */
#include "from_apache.h"
#include "alloc.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { NUM, SECS, SIZE, STR, ID, PATHS, HOME, ENV, NGINX, NOPE };

typedef struct option {
    const char *name;
    enum kind kind;
    const char *key; /* the wsgid key, environment variable, or why it is not converted */
    double min, max; /* NUM and SIZE */
} option_t;

static const option_t options[] = {
    {"processes", NUM, "processes", 1, 1024},
    {"threads", NUM, "threads", 1, 1024},
    {"display-name", STR, "display-name", 0, 0},
    {"user", ID, "user", 0, 0},
    {"group", ID, "group", 0, 0},
    {"python-home", STR, "python-home", 0, 0},
    {"python-path", PATHS, "python-path", 0, 0},
    {"home", HOME, "chdir", 0, 0},
    {"maximum-requests", NUM, "maximum-requests", 0, 1e9},
    {"inactivity-timeout", SECS, "inactivity-timeout", 0, 365 * 86400},
    {"request-timeout", SECS, "request-timeout", 0, 7 * 86400},
    {"queue-timeout", SECS, "queue-timeout", 0, 7 * 86400},
    {"graceful-timeout", SECS, "graceful-timeout", 0, 86400},
    {"shutdown-timeout", SECS, "shutdown-timeout", 0, 86400},
    {"deadlock-timeout", SECS, "deadlock-timeout", 0, 86400},
    {"startup-timeout", SECS, "startup-timeout", 0, 86400},
    {"restart-interval", SECS, "restart-interval", 0, 365 * 86400},
    {"header-buffer-size", SIZE, "header-buffer-size", 1024, 1048576},
    {"response-buffer-size", SIZE, "response-buffer-size", 4096, 268435456},
    {"lang", ENV, "LANG", 0, 0},
    {"locale", ENV, "LC_ALL", 0, 0},
    {"python-eggs", ENV, "PYTHON_EGG_CACHE", 0, 0},
    {"socket-timeout", NGINX, NULL, 0, 0},
    {"memory-limit", NOPE,
     "mod_wsgi's is a hard data-size rlimit; wsgid's memory-limit is an RSS above which a worker "
     "restarts gracefully (set it if that is what is meant)",
     0, 0},
    {"virtual-memory-limit", NOPE, "wsgid sets no address-space limit (use systemd's MemoryMax=)",
     0, 0},
    {"cpu-time-limit", NOPE, "wsgid has no CPU-time limit (request-timeout bounds a request)", 0,
     0},
    {"cpu-priority", NOPE, "wsgid does not renice workers (use systemd's Nice=)", 0, 0},
    {"stack-size", NOPE, "wsgid keeps the default thread stack size", 0, 0},
    {"umask", NOPE, "wsgid keeps the umask it was started with (systemd's UMask=)", 0, 0},
    {"chroot", NOPE, "wsgid does not chroot its workers", 0, 0},
    {"script-user", NOPE, "wsgid does not check script owners", 0, 0},
    {"send-buffer-size", NOPE, "wsgid keeps the kernel's socket buffer sizes", 0, 0},
    {"receive-buffer-size", NOPE, "wsgid keeps the kernel's socket buffer sizes", 0, 0},
    {"listen-backlog", NOPE, "wsgid's listen backlog is the kernel's maximum (somaxconn)", 0, 0},
    {"connect-timeout", NOPE, "nginx's uwsgi_connect_timeout is the equivalent (default 60s)", 0,
     0},
    {"eviction-timeout", NOPE, "wsgid's graceful-timeout covers every graceful restart", 0, 0},
    {"supplementary-groups", NOPE, "wsgid gives workers the user's own groups (initgroups)", 0, 0},
    {"maximum-requests-jitter", NOPE, "not a mod_wsgi option: see maximum-requests-jitter", 0, 0},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

const char *wd_cv_apache_daemon_range(size_t i, double *min, double *max, int *secs)
{
    for (size_t k = 0; k < N_OPTIONS; k++) {
        if (options[k].kind != NUM && options[k].kind != SECS && options[k].kind != SIZE)
            continue;
        if (i-- > 0)
            continue;
        *min = options[k].min;
        *max = options[k].max;
        *secs = options[k].kind == SECS;
        return options[k].key;
    }
    return NULL;
}

/* "64k", "1m" or bytes as mod_wsgi reads them (plain bytes; a suffix is taken too). */
static int parse_size(const char *v, double *out)
{
    char *end;
    double n = strtod(v, &end);

    if (end == v || n < 0)
        return -1;
    if (*end == 'k' || *end == 'K')
        n *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        n *= 1048576, end++;
    *out = n;
    return *end == '\0' ? 0 : -1;
}

static void add_paths(wd_cv_group_t *g, const char *v)
{
    const char *p = v;

    while (*p != '\0') {
        size_t n = strcspn(p, ":");

        if (n > 0) {
            g->python_path =
                xrealloc(g->python_path, sizeof *g->python_path * (size_t)(g->npython_path + 1));
            g->python_path[g->npython_path++] = xstrndup(p, n);
        }
        p += n + (p[n] == ':');
    }
}

static int number(wd_cv_t *cv, wd_cv_group_t *g, const option_t *o, const char *v, const char *file,
                  int line)
{
    char buf[64];
    double n;
    char *end;

    if (o->kind == SIZE) {
        if (parse_size(v, &n) < 0)
            goto bad;
    } else {
        n = strtod(v, &end);
        if (end == v || *end != '\0' || n != (double)(long long)n)
            goto bad;
    }
    if (n < o->min || n > o->max) {
        wd_cv_note(cv, file, line,
                   "WSGIDaemonProcess %s %s=%s: not converted: outside wsgid's range for %s",
                   g->name, o->name, v, o->key);
        return -1;
    }
    snprintf(buf, sizeof buf, o->kind == SECS ? "%.0fs" : "%.0f", n);
    wd_cv_key_set(&g->keys, o->key, buf, o->kind == SECS);
    return 0;
bad:
    wd_cv_note(cv, file, line, "WSGIDaemonProcess %s %s=%s: not converted: not a number", g->name,
               o->name, v);
    return -1;
}

char *wd_cv_apache_id(const char *v, int is_group)
{
    char *end;
    unsigned long id;

    if (v[0] != '#')
        return xstrdup(v);
    id = strtoul(v + 1, &end, 10);
    if (end == v + 1 || *end != '\0')
        return NULL;
    if (is_group) {
        const struct group *gr = getgrgid((gid_t)id);

        return gr != NULL ? xstrdup(gr->gr_name) : NULL;
    } else {
        const struct passwd *pw = getpwuid((uid_t)id);

        return pw != NULL ? xstrdup(pw->pw_name) : NULL;
    }
}

static int apply(wd_cv_t *cv, wd_cv_group_t *g, const option_t *o, const char *v, const char *file,
                 int line)
{
    switch (o->kind) {
    case NUM:
    case SECS:
    case SIZE:
        return number(cv, g, o, v, file, line);
    case STR:
        wd_cv_key_set(&g->keys, o->key, v, 1);
        return 0;
    case ID: {
        char *name = wd_cv_apache_id(v, o->key[0] == 'g');

        if (name == NULL) {
            wd_cv_note(cv, file, line,
                       "WSGIDaemonProcess %s %s=%s: not converted: no %s with that id on this "
                       "machine (wsgid's %s: is a name)",
                       g->name, o->name, v, o->key, o->key);
            return -1;
        }
        wd_cv_key_set(&g->keys, o->key, name, 1);
        free(name);
        return 0;
    }
    case PATHS:
        add_paths(g, v);
        return 0;
    case HOME:
        /* mod_wsgi makes it the working directory and sys.path[0]; wsgid's chdir is on the path
         * only for a module app, and a converted app is a script */
        wd_cv_key_set(&g->keys, o->key, v, 1);
        g->python_path =
            xrealloc(g->python_path, sizeof *g->python_path * (size_t)(g->npython_path + 1));
        memmove(g->python_path + 1, g->python_path,
                sizeof *g->python_path * (size_t)g->npython_path);
        g->python_path[0] = xstrdup(v);
        g->npython_path++;
        return 0;
    case ENV:
        wd_cv_key_set(&g->env, o->key, v, 1);
        return 0;
    case NGINX:
        free(g->nginx_timeout);
        g->nginx_timeout = wd_cv_seconds(v);
        if (g->nginx_timeout == NULL)
            wd_cv_note(cv, file, line, "WSGIDaemonProcess %s %s=%s: not converted: not a number",
                       g->name, o->name, v);
        return g->nginx_timeout != NULL ? 0 : -1;
    case NOPE:
        break;
    }
    wd_cv_note(cv, file, line, "WSGIDaemonProcess %s %s=%s: not converted: %s", g->name, o->name, v,
               o->key);
    return -1;
}

int wd_cv_apache_daemon_option(wd_cv_t *cv, wd_cv_group_t *g, const char *opt, const char *file,
                               int line)
{
    const char *eq = strchr(opt, '=');
    size_t n = eq != NULL ? (size_t)(eq - opt) : strlen(opt);

    for (size_t i = 0; eq != NULL && i < N_OPTIONS; i++) {
        if (strlen(options[i].name) == n && strncmp(options[i].name, opt, n) == 0)
            return apply(cv, g, &options[i], eq + 1, file, line);
    }
    wd_cv_note(cv, file, line, "WSGIDaemonProcess %s %s: not converted: %s", g->name, opt,
               eq == NULL ? "expected option=value" : "not a WSGIDaemonProcess option wsgid knows");
    return -1;
}
