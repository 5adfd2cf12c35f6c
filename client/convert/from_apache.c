/* Apache httpd + mod_wsgi -> the model (see from_apache.h). Two steps: a walk of the tree that
 * records the daemon groups, the script aliases, the static aliases and what each scope (the
 * server, a <Location>, a <Directory>) says; then the placement of every alias, and of every
 * <Location> inside one, on a group and an nginx location, with the settings that apply there
 * merged as Apache merges them (server, then directories, then locations, then the alias's own
 * options). */
#include "from_apache.h"
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <grp.h>
#include <sys/stat.h>

/* What a scope says; NULL / -1 when it says nothing. */
typedef struct scope {
    const char *pg, *ag, *callable;
    int passauth;
    wd_cv_list_t env; /* SetEnv, in order; values borrowed from the tree */
} scope_t;

typedef struct area {
    int is_dir;
    const char *path;
    const char *file;
    int line;
    scope_t s;
} area_t;

typedef struct alias {
    const char *prefix, *script;
    scope_t s; /* its own options */
    const wd_aconf_node_t *n;
} alias_t;

typedef struct walk {
    wd_cv_t *cv;
    scope_t server;
    area_t **areas; /* pointers: a scope's address is kept while its section is read */
    int nareas;
    alias_t *aliases;
    int naliases;
    const char *user, *group, *python_home, *python_path;
    const wd_aconf_node_t *python_path_n;
    int vhosts;
} walk_t;

static void scope_init(scope_t *s)
{
    memset(s, 0, sizeof *s);
    s->passauth = -1;
}

static int is(const wd_aconf_node_t *n, const char *name)
{
    return strcasecmp(n->name, name) == 0;
}

static void note(walk_t *w, const wd_aconf_node_t *n, const char *why)
{
    wd_cv_note(w->cv, n->file, n->line, "%s%s%s: not converted: %s", n->name,
               n->nargs > 0 ? " " : "", n->nargs > 0 ? n->args[0] : "", why);
}

/* ---- the walk ----------------------------------------------------------------------------- */

static void daemon_process(walk_t *w, const wd_aconf_node_t *n)
{
    wd_cv_group_t *g;

    if (n->nargs < 1) {
        note(w, n, "no group name");
        return;
    }
    if (wd_cv_group_find(w->cv, n->args[0]) != NULL) {
        note(w, n, "the group is declared twice (the first is kept)");
        return;
    }
    g = wd_cv_group_add(w->cv, n->args[0], n->file, n->line);
    for (int i = 1; i < n->nargs; i++)
        wd_cv_apache_daemon_option(w->cv, g, n->args[i], n->file, n->line);
}

static void app_group(walk_t *w, const wd_aconf_node_t *n, const char *v, const char **out)
{
    if (v[0] == '%' && strcmp(v, "%{GLOBAL}") != 0 && strcmp(v, "%{RESOURCE}") != 0) {
        note(w, n, "wsgid's application groups are %{GLOBAL}, %{RESOURCE} or a name");
        return;
    }
    *out = v;
}

static void script_alias(walk_t *w, const wd_aconf_node_t *n)
{
    alias_t *a;

    struct stat st;
    size_t len;

    if (n->nargs < 2) {
        note(w, n, "expected URL-PATH FILE");
        return;
    }
    len = strlen(n->args[1]);
    if ((len > 0 && n->args[1][len - 1] == '/') ||
        (stat(n->args[1], &st) == 0 && S_ISDIR(st.st_mode))) {
        note(w, n, "a directory of scripts: give each script a WSGIScriptAlias of its own");
        return;
    }
    w->aliases = xrealloc(w->aliases, sizeof *w->aliases * (size_t)(w->naliases + 1));
    a = &w->aliases[w->naliases++];
    memset(a, 0, sizeof *a);
    scope_init(&a->s);
    a->prefix = n->args[0];
    a->script = n->args[1];
    a->n = n;
    for (int i = 2; i < n->nargs; i++) {
        const char *o = n->args[i];

        if (strncmp(o, "process-group=", 14) == 0)
            a->s.pg = o + 14;
        else if (strncmp(o, "application-group=", 18) == 0)
            app_group(w, n, o + 18, &a->s.ag);
        else if (strncmp(o, "callable-object=", 16) == 0)
            a->s.callable = o + 16;
        else if (strncmp(o, "pass-authorization=", 19) == 0)
            a->s.passauth = strcasecmp(o + 19, "On") == 0;
        else
            wd_cv_note(w->cv, n->file, n->line, "WSGIScriptAlias %s %s: not converted: %s",
                       a->prefix, o, "not an option wsgid knows");
    }
}

static void static_alias(walk_t *w, const wd_aconf_node_t *n)
{
    struct stat st;
    const char *url, *path;
    int dir, seen;
    wd_cv_loc_t *l;
    size_t ul;

    if (n->nargs != 2) {
        note(w, n, "expected URL-PATH FILE-OR-DIRECTORY");
        return;
    }
    url = n->args[0];
    path = n->args[1];
    ul = strlen(url);
    seen = stat(path, &st) == 0;
    /* a target not on this machine is a directory when either path ends with '/' */
    dir = (seen && S_ISDIR(st.st_mode)) || (ul > 0 && url[ul - 1] == '/') ||
          (path[0] != '\0' && path[strlen(path) - 1] == '/');
    if (!seen && !dir)
        wd_cv_note(w->cv, n->file, n->line,
                   "%s %s %s: %s is not on this machine: taken as a file (end a directory's path "
                   "with '/')",
                   n->name, url, path, path);
    l = wd_cv_loc_add(w->cv, url, dir ? WD_CV_PREFIX : WD_CV_EXACT);
    free(l->alias);
    l->alias = xstrdup(path);
    if (dir && url[ul - 1] != '/') {
        /* nginx's alias of "/x" would also serve "/xy" from "PATHy": keep to whole segments. */
        char *u = xmalloc(ul + 2), *p = xmalloc(strlen(path) + 2);

        sprintf(u, "%s/", url);
        sprintf(p, "%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/");
        l->prefix = (free(l->prefix), u);
        l->alias = (free(l->alias), p);
    }
}

static void walk_kids(walk_t *w, const wd_aconf_node_t *n, scope_t *s, int in_server);

static void section(walk_t *w, const wd_aconf_node_t *n, scope_t *s, int in_server)
{
    area_t *a;

    if (is(n, "VirtualHost")) {
        const char *colon = n->nargs > 0 ? strrchr(n->args[0], ':') : NULL;

        if (colon != NULL && w->cv->listen == NULL && strcmp(colon + 1, "*") != 0)
            w->cv->listen = xstrdup(colon + 1);
        if (w->vhosts++ > 0)
            note(w, n,
                 "a second virtual host: its directives go into the one server block written "
                 "(split nginx.conf by hand)");
        walk_kids(w, n, s, 1);
    } else if (is(n, "Location") || is(n, "Directory")) {
        if (n->nargs != 1) {
            note(w, n, "expected one path");
            return;
        }
        w->areas = xrealloc(w->areas, sizeof *w->areas * (size_t)(w->nareas + 1));
        a = w->areas[w->nareas++] = xcalloc(1, sizeof *a);
        a->is_dir = is(n, "Directory");
        a->path = n->args[0];
        a->file = n->file;
        a->line = n->line;
        scope_init(&a->s);
        walk_kids(w, n, &a->s, 0);
    } else if (is(n, "IfModule") || is(n, "IfDefine") || is(n, "IfVersion") || is(n, "Files")) {
        walk_kids(w, n, s, in_server);
    } else {
        note(w, n, "a regular-expression or other section: write its nginx location by hand");
    }
}

/* Directives that have nothing to say to wsgid or nginx once converted: module loading, what the
 * tokenizer already did, settings that only matter to Apache's own file serving (and, in
 * grants() below, access rules that let everyone in, as nginx does by default). */
static const char *const quiet[] = {
    "Options",        "AllowOverride",        "Order",   "Satisfy",
    "DirectoryIndex", "LoadModule",           "Include", "IncludeOptional",
    "ServerRoot",     "WSGIRestrictEmbedded", "Listen",  "AddDefaultCharset"};

static const struct {
    const char *name, *why;
} reasons[] = {
    {"ErrorLog", "wsgid has its own log: (and nginx its error_log)"},
    {"CustomLog", "wsgid writes an access log (log.access); nginx has access_log"},
    {"LogLevel", "wsgid's is log.level"},
    {"LogFormat", "wsgid's access-log-format is combined or json"},
    {"ServerAdmin", "nginx has no equivalent"},
    {"DocumentRoot", "nginx serves only the converted locations (add a root if needed)"},
    {"Deny", "access rules: write nginx allow/deny by hand"},
    {"Require", "access rules other than all granted: write nginx allow/deny or auth by hand"},
    {"Allow", "access rules other than from all: write nginx allow/deny by hand"},
    {"WSGISocketPrefix", "wsgid's sockets are the groups' listen: addresses"},
    {"WSGIImportScript", "wsgid imports each app when a worker starts (startup-timeout)"},
    {"WSGIScriptAliasMatch", "regular expressions: write the nginx location by hand"},
    {"WSGIScriptReloading", "wsgid reloads with reload-on-change: true"},
    {"WSGILazyInitialization", "wsgid's master never loads Python"},
    {"WSGIPythonOptimize", "set PYTHONOPTIMIZE in a group's env:"},
    {"WSGIPythonEggs", "set PYTHON_EGG_CACHE in a group's env:"},
    {"Timeout", "nginx's uwsgi_read_timeout (default 60s) and wsgid's request-timeout"},
    {"KeepAliveTimeout", "nginx's keepalive_timeout"},
};

/* "Require all granted" and "Allow from all" let everyone in, as nginx does by default; any
 * other access rule is noted, never dropped quietly. */
static int grants(const wd_aconf_node_t *n)
{
    const char *a0 = wd_aconf_arg(n, 0), *a1 = wd_aconf_arg(n, 1);

    if (n->nargs != 2)
        return 0;
    return (is(n, "Require") && strcasecmp(a0, "all") == 0 && strcasecmp(a1, "granted") == 0) ||
           (is(n, "Allow") && strcasecmp(a0, "from") == 0 && strcasecmp(a1, "all") == 0);
}

static int directive2(walk_t *w, const wd_aconf_node_t *n, scope_t *s, int in_server)
{
    const char *a0 = wd_aconf_arg(n, 0);

    if (is(n, "WSGIDaemonProcess"))
        daemon_process(w, n);
    else if (is(n, "WSGIProcessGroup") && a0 != NULL)
        s->pg = a0;
    else if (is(n, "WSGIApplicationGroup") && a0 != NULL)
        app_group(w, n, a0, &s->ag);
    else if (is(n, "WSGICallableObject") && a0 != NULL)
        s->callable = a0;
    else if (is(n, "WSGIPassAuthorization") && a0 != NULL)
        s->passauth = strcasecmp(a0, "On") == 0;
    else if (is(n, "SetEnv") && n->nargs > 1 && strchr(n->args[1], '$') != NULL)
        /* it goes to nginx's uwsgi_param, where '$' starts a variable (no escape for it) */
        note(w, n,
             "its value has a '$', which nginx would read as a variable: set it in the "
             "group's env: in wsgid.yaml");
    else if (is(n, "SetEnv") && n->nargs >= 1)
        wd_cv_key_set(&s->env, a0, n->nargs > 1 ? n->args[1] : "", 1);
    else if (is(n, "WSGIScriptAlias") && in_server)
        script_alias(w, n);
    else if (is(n, "Alias") && in_server)
        static_alias(w, n);
    else if (is(n, "WSGIPythonHome") && a0 != NULL)
        w->python_home = a0;
    else if (is(n, "WSGIPythonPath") && a0 != NULL)
        w->python_path = a0, w->python_path_n = n;
    else if ((is(n, "User") || is(n, "Group")) && a0 != NULL)
        *(is(n, "User") ? &w->user : &w->group) = a0;
    else
        return 0;
    return 1;
}

static void directive(walk_t *w, const wd_aconf_node_t *n, scope_t *s, int in_server)
{
    const char *a0 = wd_aconf_arg(n, 0);

    for (int i = 0; i < n->nargs; i++) {
        if (strstr(n->args[i], "${") != NULL) {
            wd_cv_note(w->cv, n->file, n->line,
                       "%s %s: an Apache variable (${...}) is not expanded: written as it is",
                       n->name, n->args[i]);
            break;
        }
    }
    if (directive2(w, n, s, in_server))
        return;
    if (is(n, "ServerName") && a0 != NULL && w->cv->server_name == NULL) {
        w->cv->server_name = xstrdup(a0);
        return;
    }
    if (is(n, "LimitRequestBody") && a0 != NULL && in_server) {
        free(w->cv->max_body);
        w->cv->max_body = xstrdup(a0);
        return;
    }
    for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++) {
        if (is(n, quiet[i]))
            return;
    }
    if (grants(n))
        return;
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        if (is(n, reasons[i].name)) {
            note(w, n, reasons[i].why);
            return;
        }
    }
    note(w, n,
         in_server || strncasecmp(n->name, "WSGI", 4) != 0 ? "not a directive wsgid convert maps"
                                                           : "not converted in this section");
}

static void walk_kids(walk_t *w, const wd_aconf_node_t *n, scope_t *s, int in_server)
{
    for (int i = 0; i < n->nkids; i++) {
        if (n->kids[i]->section)
            section(w, n->kids[i], s, in_server);
        else
            directive(w, n->kids[i], s, in_server);
    }
}

/* ---- placing the aliases ----------------------------------------------------------------- */

static void merge(scope_t *dst, const scope_t *src)
{
    if (src->pg != NULL)
        dst->pg = src->pg;
    if (src->ag != NULL)
        dst->ag = src->ag;
    if (src->callable != NULL)
        dst->callable = src->callable;
    if (src->passauth >= 0)
        dst->passauth = src->passauth;
    for (int i = 0; i < src->env.n; i++)
        wd_cv_key_set(&dst->env, src->env.v[i].key, src->env.v[i].value, 1);
}

/* Whether path is under dir, in whole segments. */
static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/' || dir[n - 1] == '/');
}

/* The areas that apply to a URL or a script, shortest path first, merged into e. A <Location>
 * matches in whole segments as a <Directory> does: Apache 2.4 applies <Location /admin> to
 * /admin and /admin/users, not to /administrator (tests/convert asks it). */
static void merge_areas(const walk_t *w, scope_t *e, int dirs, const char *path)
{
    size_t done = 0;

    for (;;) {
        const area_t *best = NULL;

        for (int i = 0; i < w->nareas; i++) {
            const area_t *a = w->areas[i];
            size_t len = strlen(a->path);
            int match = under(path, a->path);

            if (a->is_dir == dirs && match && len > done &&
                (best == NULL || len < strlen(best->path)))
                best = a;
        }
        if (best == NULL)
            return;
        merge(e, &best->s);
        done = strlen(best->path);
    }
}

static void effective(const walk_t *w, const alias_t *a, const char *url, scope_t *e)
{
    scope_init(e);
    merge(e, &w->server);
    merge_areas(w, e, 1, a->script);
    merge_areas(w, e, 0, url);
    merge(e, &a->s);
}

static wd_cv_group_t *embedded(walk_t *w, const alias_t *a)
{
    wd_cv_group_t *g = wd_cv_group_find(w->cv, "embedded");

    wd_cv_note(w->cv, a->n->file, a->n->line,
               "WSGIScriptAlias %s: no WSGIProcessGroup: Apache ran it in its own processes "
               "(embedded mode); wsgid runs it in a group named \"embedded\"",
               a->prefix);
    if (g != NULL)
        return g;
    g = wd_cv_group_add(w->cv, "embedded", a->n->file, a->n->line);
    if (w->python_path != NULL) {
        for (const char *p = w->python_path; *p != '\0';) {
            size_t n = strcspn(p, ":");

            g->python_path =
                xrealloc(g->python_path, sizeof *g->python_path * (size_t)(g->npython_path + 1));
            g->python_path[g->npython_path++] = xstrndup(p, n);
            p += n + (p[n] == ':');
        }
        w->python_path = NULL;
    }
    return g;
}

static void place(walk_t *w, const alias_t *a, const char *url, int match, const scope_t *e)
{
    wd_cv_group_t *g = e->pg != NULL ? wd_cv_group_find(w->cv, e->pg) : embedded(w, a);
    const char *ag = e->ag != NULL ? e->ag : "%{RESOURCE}";
    char *mp = xstrdup(strcmp(a->prefix, "/") == 0 ? "" : a->prefix);
    wd_cv_loc_t *l;
    size_t n = strlen(mp);

    if (g == NULL) {
        wd_cv_note(w->cv, a->n->file, a->n->line,
                   "WSGIScriptAlias %s: not converted: process group %s has no WSGIDaemonProcess",
                   url, e->pg);
        free(mp);
        return;
    }
    while (n > 1 && mp[n - 1] == '/')
        mp[--n] = '\0';
    for (int i = 0; i < g->nmounts; i++) {
        if (strcmp(g->mounts[i].prefix, mp) == 0 && strcmp(g->mounts[i].app_group, ag) != 0)
            wd_cv_note(w->cv, a->n->file, a->n->line,
                       "WSGIApplicationGroup %s under %s: not converted: one mount of group %s "
                       "runs in one application group (%s)",
                       ag, url, g->name, g->mounts[i].app_group);
    }
    wd_cv_mount_add(g, mp, a->script, ag, e->callable);
    free(mp);
    l = wd_cv_loc_add(w->cv, url, match);
    free(l->group);
    l->group = xstrdup(g->name);
    for (int i = 0; i < e->env.n; i++)
        wd_cv_key_set(&l->params, e->env.v[i].key, e->env.v[i].value, 1);
    if (e->passauth != 1)
        wd_cv_key_set(&l->params, "HTTP_AUTHORIZATION", "", 1);
}

static void scope_free(scope_t *s)
{
    for (int i = 0; i < s->env.n; i++) {
        free(s->env.v[i].key);
        free(s->env.v[i].value);
    }
    free(s->env.v);
}

/* The alias that serves url: the longest prefix (segment-wise). */
static const alias_t *alias_for(const walk_t *w, const char *url)
{
    const alias_t *best = NULL;

    for (int i = 0; i < w->naliases; i++) {
        const alias_t *a = &w->aliases[i];

        if ((strcmp(a->prefix, "/") == 0 || under(url, a->prefix)) &&
            (best == NULL || strlen(a->prefix) > strlen(best->prefix)))
            best = a;
    }
    return best;
}

/* A <Location> below an alias that changes its group or its settings gets an nginx location of
 * its own, to the group it names, where the alias's script is mounted at the alias's URL (so
 * that SCRIPT_NAME and PATH_INFO are what Apache gave). */
static void place_locations(walk_t *w)
{
    for (int i = 0; i < w->nareas; i++) {
        const area_t *l = w->areas[i];
        const alias_t *a;
        scope_t e;

        if (l->is_dir)
            continue;
        a = alias_for(w, l->path);
        if (a == NULL || strcmp(a->prefix, l->path) == 0) {
            if (a == NULL && (l->s.pg != NULL || l->s.ag != NULL))
                wd_cv_note(w->cv, l->file, l->line,
                           "<Location %s>: not converted: no WSGIScriptAlias serves it", l->path);
            continue;
        }
        effective(w, a, l->path, &e);
        place(w, a, l->path, WD_CV_SEGMENT, &e);
        scope_free(&e);
    }
}

static void finish_groups(walk_t *w)
{
    const char *lrb = w->cv->max_body != NULL ? w->cv->max_body : "1G";
    /* mod_wsgi's sockets belong to Apache's User, whose children connect to them; nginx's
     * workers need the group (www-data on Debian, for nginx and Apache alike). */
    const char *sgroup = w->group != NULL && strchr(w->group, '$') == NULL ? w->group
                         : getgrnam("www-data") != NULL                    ? "www-data"
                                                                           : NULL;

    for (int i = 0; i < w->cv->ngroups; i++) {
        wd_cv_group_t *g = &w->cv->groups[i];

        if (w->python_home != NULL && wd_cv_key_get(&g->keys, "python-home") == NULL)
            wd_cv_key_set(&g->keys, "python-home", w->python_home, 1);
        if (w->user != NULL && strchr(w->user, '$') == NULL &&
            wd_cv_key_get(&g->keys, "user") == NULL)
            wd_cv_key_set(&g->keys, "user", w->user, 1);
        if (wd_cv_key_get(&g->keys, "user") == NULL)
            wd_cv_note(w->cv, g->file, g->line,
                       "WSGIDaemonProcess %s: no user=: mod_wsgi ran it as Apache's User; wsgid "
                       "started as root runs it as nobody unless the group says user:",
                       g->name);
        if (sgroup != NULL)
            wd_cv_key_set(&g->keys, "socket-group", sgroup, 1);
        wd_cv_key_set(&g->keys, "limit-request-body", lrb, 0);
    }
    if (w->python_path != NULL)
        wd_cv_note(w->cv, w->python_path_n->file, w->python_path_n->line,
                   "WSGIPythonPath: not converted: mod_wsgi uses it in embedded mode only (the "
                   "daemon groups have python-path=)");
}

void wd_cv_from_apache(wd_cv_t *cv, const wd_aconf_t *conf)
{
    walk_t w;
    scope_t e;

    memset(&w, 0, sizeof w);
    w.cv = cv;
    scope_init(&w.server);
    walk_kids(&w, &conf->root, &w.server, 1);
    for (int i = 0; i < w.naliases; i++) {
        const alias_t *a = &w.aliases[i];

        effective(&w, a, a->prefix, &e);
        place(&w, a, a->prefix, strcmp(a->prefix, "/") == 0 ? WD_CV_PREFIX : WD_CV_SEGMENT, &e);
        scope_free(&e);
    }
    place_locations(&w);
    finish_groups(&w);
    if (cv->max_body == NULL)
        cv->max_body = xstrdup("1g"); /* Apache's default LimitRequestBody since 2.4.54: 1 GiB */
    for (int i = 0; i < w.nareas; i++) {
        scope_free(&w.areas[i]->s);
        free(w.areas[i]);
    }
    free(w.areas);
    for (int i = 0; i < w.naliases; i++)
        scope_free(&w.aliases[i].s);
    free(w.aliases);
    scope_free(&w.server);
}
