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
#include <fnmatch.h>
#include <grp.h>
#include <sys/stat.h>

/* What a scope says; NULL / -1 when it says nothing. */
typedef struct scope {
    const char *pg, *ag, *callable;
    int passauth;
    wd_cv_list_t env; /* SetEnv, in order; values borrowed from the tree */
} scope_t;

enum { LOCATION, DIRECTORY, FILES };

typedef struct area {
    int is_dir;       /* LOCATION, DIRECTORY or FILES */
    int vhost;        /* 0: the main server's; k: the k-th <VirtualHost>'s */
    const char *path; /* FILES: the file name pattern */
    const char *dir;  /* FILES: the <Directory> it is in, or NULL */
    const char *file;
    int line;
    scope_t s;
} area_t;

typedef struct alias {
    const char *prefix, *script;
    char *own_script; /* script, when it is the argument without its trailing '/' */
    int vhost;
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
    int vhost;                      /* the <VirtualHost> being read (0: none) */
    const char *dir;                /* the <Directory> being read, or NULL */
    scope_t **vscopes;              /* what each <VirtualHost> says, over the server's */
    const wd_aconf_node_t **vnodes; /* [k-1]: the k-th <VirtualHost>, nginx's k-th server block */
    char **names;                   /* [0]: the server's ServerName host, [k]: the k-th's */
    char **snames;                  /* the ServerAlias names, space-separated, likewise */
    const wd_aconf_node_t **listens;
    int nlisten;
    const char **modules; /* what LoadModule loads ("wsgi_module") */
    int nmodules;
    const char **defines; /* what Define defines */
    int ndefines;
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
    char *script;

    struct stat st;
    size_t len;

    if (n->nargs < 2) {
        note(w, n, "expected URL-PATH FILE");
        return;
    }
    /* "/srv/site.wsgi/" is the script site.wsgi (mod_wsgi maps /app/x/y to it, PATH_INFO /x/y);
     * a directory, or a path ending with '/' that is not a file here, is a directory of scripts */
    len = strlen(n->args[1]);
    while (len > 1 && n->args[1][len - 1] == '/')
        len--;
    script = xstrndup(n->args[1], len);
    if (stat(script, &st) == 0 ? !S_ISREG(st.st_mode) : len < strlen(n->args[1])) {
        note(w, n, "a directory of scripts: give each script a WSGIScriptAlias of its own");
        free(script);
        return;
    }
    w->aliases = xrealloc(w->aliases, sizeof *w->aliases * (size_t)(w->naliases + 1));
    a = &w->aliases[w->naliases++];
    memset(a, 0, sizeof *a);
    scope_init(&a->s);
    a->prefix = n->args[0];
    a->script = a->own_script = script;
    a->vhost = w->vhost;
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
    l = wd_cv_loc_add(w->cv, url, dir ? WD_CV_PREFIX : WD_CV_EXACT, w->vhost);
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

/* The modules Apache has without a LoadModule (Debian's apache2 builds them in), and those
 * Debian's apache2 enables when installed: what <IfModule> is taken to see when the file read
 * has no LoadModule (a site's file alone). mod_wsgi is loaded in any case: the file is for it. */
static const char *const builtin_modules[] = {
    "core_module",  "so_module",      "watchdog_module", "http_module", "log_config_module",
    "logio_module", "version_module", "unixd_module",    "wsgi_module"};
static const char *const debian_modules[] = {
    "access_compat_module", "alias_module",      "auth_basic_module", "authn_core_module",
    "authn_file_module",    "authz_core_module", "authz_host_module", "authz_user_module",
    "autoindex_module",     "deflate_module",    "dir_module",        "env_module",
    "filter_module",        "mime_module",       "mpm_event_module",  "negotiation_module",
    "reqtimeout_module",    "setenvif_module",   "status_module"};

static int in_list(const char *const *l, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(l[i], s) == 0)
            return 1;
    }
    return 0;
}

/* <IfModule NAME>: NAME is the module's identifier ("wsgi_module") or its source file
 * ("mod_wsgi.c"). Whether it is loaded, and the identifier (caller frees). */
static int module_loaded(const walk_t *w, const char *name, char **id)
{
    size_t n = strlen(name);

    if (strncmp(name, "mod_", 4) == 0 && n > 6 && strcmp(name + n - 2, ".c") == 0) {
        *id = xmalloc(n + 6);
        sprintf(*id, "%.*s_module", (int)(n - 6), name + 4);
    } else if (strcmp(name, "http_core.c") == 0 || strcmp(name, "core.c") == 0) {
        *id = xstrdup(name[0] == 'h' ? "http_module" : "core_module");
    } else {
        *id = xstrdup(name);
    }
    if (in_list(builtin_modules, sizeof builtin_modules / sizeof *builtin_modules, *id) ||
        in_list(w->modules, (size_t)w->nmodules, *id))
        return 1;
    return w->nmodules == 0 &&
           in_list(debian_modules, sizeof debian_modules / sizeof *debian_modules, *id);
}

/* Whether the contents of <IfModule> / <IfDefine> apply, as Apache would read them; a noted
 * "no" when they do not (they are left out, as Apache leaves them). */
static int condition(walk_t *w, const wd_aconf_node_t *n)
{
    const char *a = wd_aconf_arg(n, 0);
    int neg, yes;
    char why[512];

    if (a == NULL)
        return 1;
    neg = a[0] == '!';
    a += neg;
    if (is(n, "IfModule")) {
        char *id;

        yes = module_loaded(w, a, &id);
        snprintf(why, sizeof why,
                 yes ? "its contents are left out: %s is loaded"
                 : w->nmodules > 0
                     ? "its contents are left out: no LoadModule loads %s"
                     : "its contents are left out: %s is not loaded (no LoadModule read, and "
                       "Debian's apache2 does not enable it)",
                 id);
        free(id);
    } else if ((yes = in_list(w->defines, (size_t)w->ndefines, a))) {
        snprintf(why, sizeof why, "its contents are left out: %s is defined (Define)", a);
    } else {
        snprintf(why, sizeof why,
                 "its contents are left out: %s is not defined (no Define; for apache2 -D %s, "
                 "convert a copy with Define %s added)",
                 a, a, a);
    }
    if (yes != neg)
        return 1;
    wd_cv_note(w->cv, n->file, n->line, "<%s %s%s>: not converted: %s", n->name, neg ? "!" : "", a,
               why);
    return 0;
}

/* Each <VirtualHost> has a scope of its own over the server's: what one says (a
 * WSGIProcessGroup, a SetEnv) never reaches another's aliases. */
static void virtual_host(walk_t *w, const wd_aconf_node_t *n)
{
    int outer = w->vhost;
    scope_t *vs = xcalloc(1, sizeof *vs);

    w->vhosts++;
    w->vnodes = xrealloc(w->vnodes, sizeof *w->vnodes * (size_t)w->vhosts);
    w->vnodes[w->vhosts - 1] = n;
    w->names = xrealloc(w->names, sizeof *w->names * (size_t)(w->vhosts + 1));
    w->snames = xrealloc(w->snames, sizeof *w->snames * (size_t)(w->vhosts + 1));
    w->names[w->vhosts] = w->snames[w->vhosts] = NULL;
    for (int i = 1; i < n->nargs; i++)
        wd_cv_note(w->cv, n->file, n->line,
                   "<VirtualHost ... %s>: not converted: the server block listens on the first "
                   "address only (add a listen line to nginx.conf)",
                   n->args[i]);
    scope_init(vs);
    w->vscopes = xrealloc(w->vscopes, sizeof *w->vscopes * (size_t)w->vhosts);
    w->vscopes[w->vhosts - 1] = vs;
    w->vhost = w->vhosts;
    walk_kids(w, n, vs, 1);
    w->vhost = outer;
}

static void section(walk_t *w, const wd_aconf_node_t *n, scope_t *s, int in_server)
{
    area_t *a;

    if (is(n, "VirtualHost")) {
        virtual_host(w, n);
    } else if (is(n, "Location") || is(n, "Directory") || is(n, "Files")) {
        const char *outer = w->dir;

        if (n->nargs != 1) {
            note(w, n,
                 n->nargs == 2 && strcmp(n->args[0], "~") == 0
                     ? "a regular expression: write its nginx location by hand"
                     : "expected one path");
            return;
        }
        if (is(n, "Location") && strpbrk(n->args[0], "*?[") != NULL) {
            note(w, n,
                 "a wildcard <Location>: write its nginx location (a regular expression) by "
                 "hand");
            return;
        }
        w->areas = xrealloc(w->areas, sizeof *w->areas * (size_t)(w->nareas + 1));
        a = w->areas[w->nareas++] = xcalloc(1, sizeof *a);
        a->is_dir = is(n, "Directory") ? DIRECTORY : is(n, "Files") ? FILES : LOCATION;
        a->vhost = w->vhost;
        a->path = n->args[0];
        a->dir = a->is_dir == FILES ? w->dir : NULL;
        a->file = n->file;
        a->line = n->line;
        scope_init(&a->s);
        if (a->is_dir == DIRECTORY)
            w->dir = a->path;
        walk_kids(w, n, &a->s, 0);
        w->dir = outer;
    } else if (is(n, "IfModule") || is(n, "IfDefine")) {
        if (condition(w, n))
            walk_kids(w, n, s, in_server);
    } else if (is(n, "IfVersion")) {
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
    "ServerRoot",     "WSGIRestrictEmbedded", "Define",  "AddDefaultCharset"};

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

/* ServerName [scheme://]host[:port] is the host nginx's server_name matches (the port and
 * scheme are Apache's for the URLs it writes itself); ServerAlias adds names, its wildcards
 * nginx's too when they are a leading "*." or a trailing ".*". */
static void server_name(walk_t *w, const wd_aconf_node_t *n)
{
    char **slot = is(n, "ServerName") ? &w->names[w->vhost] : &w->snames[w->vhost];

    for (int i = 0; i < n->nargs; i++) {
        const char *v = n->args[i], *sep = strstr(v, "://");
        size_t len, old = *slot != NULL && slot == &w->snames[w->vhost] ? strlen(*slot) : 0;

        v = sep != NULL ? sep + 3 : v;
        len = v[0] == '[' && strchr(v, ']') != NULL ? (size_t)(strchr(v, ']') - v) + 1
                                                    : strcspn(v, ":");
        if (strchr(v, '?') != NULL || strchr(v, '"') != NULL || strchr(v, '$') != NULL ||
            (strchr(v, '*') != NULL && strncmp(v, "*.", 2) != 0 &&
             !(len > 2 && strncmp(v + len - 2, ".*", 2) == 0))) {
            wd_cv_note(w->cv, n->file, n->line,
                       "%s %s: not converted: nginx's server_name takes no such wildcard (add a "
                       "regular expression, ~..., to server_name by hand)",
                       n->name, n->args[i]);
            continue;
        }
        if (slot == &w->names[w->vhost]) {
            free(*slot);
            *slot = xstrndup(v, len);
            break;
        }
        *slot = xrealloc(*slot, old + len + 2);
        sprintf(*slot + old, "%s%.*s", old > 0 ? " " : "", (int)len, v);
    }
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
    if (is(n, "Listen") && a0 != NULL) {
        w->listens = xrealloc(w->listens, sizeof *w->listens * (size_t)(w->nlisten + 1));
        w->listens[w->nlisten++] = n;
        return;
    }
    if ((is(n, "ServerName") || is(n, "ServerAlias")) && a0 != NULL) {
        server_name(w, n);
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

/* A path or value in another encoding than UTF-8 (a Latin-1 file name) cannot be written in
 * wsgid.yaml, which is UTF-8, as the same bytes: the directive is noted, not converted. */
static int utf8_args(walk_t *w, const wd_aconf_node_t *n)
{
    for (int i = 0; i < n->nargs; i++) {
        if (!wd_cv_utf8(n->args[i])) {
            wd_cv_note(w->cv, n->file, n->line,
                       "%s%s %s: not converted: not UTF-8, which wsgid.yaml and nginx.conf are "
                       "(rename the path, or write the value in UTF-8)",
                       n->section ? "<" : "", n->name, n->args[i]);
            return 0;
        }
    }
    return 1;
}

static void walk_kids(walk_t *w, const wd_aconf_node_t *n, scope_t *s, int in_server)
{
    for (int i = 0; i < n->nkids; i++) {
        if (!utf8_args(w, n->kids[i]))
            continue;
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

/* Whether path is under the <Directory> dir, whose path may have wildcards (Apache matches each
 * of its segments with fnmatch: /srv/app* covers /srv/apps/site.wsgi). */
static int in_dir(const char *path, const char *dir)
{
    char *p;
    int hit = 0;

    if (strpbrk(dir, "*?[") == NULL)
        return under(path, dir);
    p = xstrdup(path);
    for (size_t i = 1; !hit && i <= strlen(path); i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        p[i] = '\0';
        hit = fnmatch(dir, p, FNM_PATHNAME) == 0;
        p[i] = path[i];
    }
    if (!hit && dir[strlen(dir) - 1] == '/') { /* a pattern ending with a slash */
        char *d = xstrndup(dir, strlen(dir) - 1);

        hit = in_dir(path, d);
        free(d);
    }
    free(p);
    return hit;
}

/* Whether the <Files> area a applies to script (its name, and its <Directory> if in one). */
static int files_match(const area_t *a, const char *script)
{
    const char *slash = strrchr(script, '/');

    return fnmatch(a->path, slash != NULL ? slash + 1 : script, 0) == 0 &&
           (a->dir == NULL || in_dir(script, a->dir));
}

/* Path segments, as Apache ranks <Directory> sections ("/srv/app" and "/srv/app/": 2). */
static int segments(const char *p)
{
    int n = 0;

    for (const char *q = p; *q != '\0'; q++)
        if (*q != '/' && (q == p || q[-1] == '/'))
            n++;
    return n;
}

/* Which of two matching areas Apache merges first: <Directory> sections by their number of
 * segments, the server's before a virtual host's, then as written; <Location> sections as
 * written, the server's before a virtual host's (not by length: a <Location /admin> written
 * before <Location /> is overridden by it). */
static int merged_before(const area_t *a, int ia, const area_t *b, int ib)
{
    if (a->is_dir == DIRECTORY && segments(a->path) != segments(b->path))
        return segments(a->path) < segments(b->path);
    if ((a->vhost == 0) != (b->vhost == 0))
        return a->vhost == 0;
    return ia < ib;
}

/* The areas that apply to a URL or a script, merged into e in Apache's order (merged_before;
 * only the first of each length was merged: a virtual host's <Location /admin> lost to the
 * server's). A <Location> matches in whole segments as a <Directory> does: Apache 2.4 applies
 * <Location /admin> to /admin and /admin/users, not to /administrator (tests/convert asks it). */
static void merge_areas(const walk_t *w, scope_t *e, int dirs, const char *path, int vhost)
{
    int *hit = xcalloc((size_t)w->nareas + 1, sizeof *hit);
    int n = 0;

    for (int i = 0; i < w->nareas; i++) {
        const area_t *a = w->areas[i];

        if (a->is_dir != dirs || (a->vhost != 0 && a->vhost != vhost))
            continue;
        if (dirs == DIRECTORY ? in_dir(path, a->path)
            : dirs == FILES   ? files_match(a, path)
                              : under(path, a->path))
            hit[n++] = i;
    }
    for (int i = 1; i < n; i++) { /* insertion sort: few areas */
        int x = hit[i], j = i;

        while (j > 0 && merged_before(w->areas[x], x, w->areas[hit[j - 1]], hit[j - 1])) {
            hit[j] = hit[j - 1];
            j--;
        }
        hit[j] = x;
    }
    for (int i = 0; i < n; i++)
        merge(e, &w->areas[hit[i]]->s);
    free(hit);
}

/* What applies to alias a at url, in virtual host vhost (a server's alias serves in every
 * virtual host: there the virtual host's settings and <Location>s apply too). */
static void effective(const walk_t *w, const alias_t *a, const char *url, int vhost, scope_t *e)
{
    scope_init(e);
    merge(e, &w->server);
    if (vhost > 0)
        merge(e, w->vscopes[vhost - 1]);
    merge_areas(w, e, DIRECTORY, a->script, vhost);
    merge_areas(w, e, FILES, a->script, vhost);
    merge_areas(w, e, LOCATION, url, vhost);
    merge(e, &a->s);
}

/* The group for an alias mod_wsgi runs in Apache's own processes: no WSGIProcessGroup, or
 * %{GLOBAL} (embedded mode said explicitly); and, noted as not converted, %{ENV:NAME}, which
 * picks a group per request. */
static wd_cv_group_t *embedded(walk_t *w, const alias_t *a, const char *pg)
{
    wd_cv_group_t *g = wd_cv_group_find(w->cv, "embedded");

    if (pg != NULL && strncmp(pg, "%{ENV:", 6) == 0)
        wd_cv_note(w->cv, a->n->file, a->n->line,
                   "WSGIScriptAlias %s: WSGIProcessGroup %s: not converted: mod_wsgi picks the "
                   "group per request from that variable; wsgid runs the alias in a group named "
                   "\"embedded\" (move it to the group it should run in, in wsgid.yaml and "
                   "nginx.conf)",
                   a->prefix, pg);
    else
        wd_cv_note(w->cv, a->n->file, a->n->line,
                   "WSGIScriptAlias %s: %s: Apache ran it in its own processes (embedded mode); "
                   "wsgid runs it in a group named \"embedded\"",
                   a->prefix, pg != NULL ? "WSGIProcessGroup %{GLOBAL}" : "no WSGIProcessGroup");
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

/* Alias a at url, with the settings e, in server block vhost (0: every block). */
static void place(walk_t *w, const alias_t *a, const char *url, int match, const scope_t *e,
                  int vhost)
{
    wd_cv_group_t *g =
        e->pg != NULL && strcmp(e->pg, "%{GLOBAL}") != 0 && strncmp(e->pg, "%{ENV:", 6) != 0
            ? wd_cv_group_find(w->cv, e->pg)
            : embedded(w, a, e->pg);
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
        const wd_cv_mount_t *m = &g->mounts[i];
        const char *was = m->callable != NULL ? m->callable : "application";
        const char *now = e->callable != NULL ? e->callable : "application";

        if (strcmp(m->prefix, mp) != 0)
            continue;
        if (strcmp(m->app, a->script) != 0)
            wd_cv_note(w->cv, a->n->file, a->n->line,
                       "WSGIScriptAlias %s %s: not converted: group %s mounts %s at %s already "
                       "(give this alias a process group of its own)",
                       url, a->script, g->name, m->app, url);
        if (strcmp(m->app_group, ag) != 0)
            wd_cv_note(w->cv, a->n->file, a->n->line,
                       "WSGIApplicationGroup %s under %s: not converted: one mount of group %s "
                       "runs in one application group (%s)",
                       ag, url, g->name, m->app_group);
        if (strcmp(was, now) != 0)
            wd_cv_note(w->cv, a->n->file, a->n->line,
                       "WSGICallableObject %s under %s: not converted: group %s mounts %s once, "
                       "with callable %s (give %s a process group of its own)",
                       now, url, g->name, a->script, was, url);
    }
    wd_cv_mount_add(g, mp, a->script, ag, e->callable);
    free(mp);
    l = wd_cv_loc_add(w->cv, url, match, vhost);
    free(l->group);
    l->group = xstrdup(g->name);
    for (int i = 0; i < e->env.n; i++)
        wd_cv_key_set(&l->params, e->env.v[i].key, e->env.v[i].value, 1);
    if (e->passauth != 1) /* unquoted and empty: hidden (model.h) */
        wd_cv_key_set(&l->params, "HTTP_AUTHORIZATION", "", 0);
}

static void scope_free(scope_t *s)
{
    for (int i = 0; i < s->env.n; i++) {
        free(s->env.v[i].key);
        free(s->env.v[i].value);
    }
    free(s->env.v);
}

/* Whether alias a serves url. */
static int serves(const alias_t *a, const char *url)
{
    return strcmp(a->prefix, "/") == 0 || under(url, a->prefix);
}

/* The alias that serves url in virtual host vhost: mod_wsgi takes the first that matches, in
 * the order written, a virtual host's own before the server's (so "WSGIScriptAlias / ..."
 * written before "WSGIScriptAlias /api ..." takes /api too: Apache never runs the second). */
static const alias_t *alias_for(const walk_t *w, const char *url, int vhost)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < w->naliases; i++) {
            const alias_t *a = &w->aliases[i];

            if (a->vhost == (pass == 0 ? vhost : 0) && serves(a, url))
                return a;
        }
    }
    return NULL;
}

/* Two URL paths that differ at most by trailing slashes ("/admin" and "/admin/"). */
static int same_path(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);

    while (na > 1 && a[na - 1] == '/')
        na--;
    while (nb > 1 && b[nb - 1] == '/')
        nb--;
    return na == nb && strncmp(a, b, na) == 0;
}

/* A <Location> below an alias that changes its group or its settings gets an nginx location of
 * its own, to the group it names, where the alias's script is mounted at the alias's URL (so
 * that SCRIPT_NAME and PATH_INFO are what Apache gave). */
static void place_locations(walk_t *w)
{
    for (int i = 0; i < w->nareas; i++) {
        const area_t *l = w->areas[i];
        int served = 0;

        if (l->is_dir != LOCATION)
            continue;
        /* a server's <Location> applies in every virtual host, under its aliases too (with
         * several, in each one's server block: the server's own requests go to one of them) */
        for (int v = l->vhost; v <= (l->vhost == 0 ? w->vhosts : l->vhost); v++) {
            const alias_t *a = alias_for(w, l->path, v);
            scope_t e;

            if (a == NULL || (v == 0 && w->vhosts > 1) ||
                (v > 0 && l->vhost == 0 && a->vhost != v && w->vhosts < 2))
                continue;
            served = 1;
            if (same_path(a->prefix, l->path))
                continue;
            effective(w, a, l->path, l->vhost > 0 ? l->vhost : v, &e);
            place(w, a, l->path, WD_CV_SEGMENT, &e, w->vhosts > 1 ? v : 0);
            scope_free(&e);
        }
        if (!served && (l->s.pg != NULL || l->s.ag != NULL))
            wd_cv_note(w->cv, l->file, l->line,
                       "<Location %s>: not converted: no WSGIScriptAlias serves it", l->path);
    }
}

static void finish_groups(walk_t *w)
{
    const char *lrb = w->cv->max_body != NULL ? w->cv->max_body : "1G";
    /* User and Group as names ("#33" is www-data's id); ${APACHE_RUN_USER} is unknown here */
    char *user =
        w->user != NULL && strchr(w->user, '$') == NULL ? wd_cv_apache_id(w->user, 0) : NULL;
    char *group =
        w->group != NULL && strchr(w->group, '$') == NULL ? wd_cv_apache_id(w->group, 1) : NULL;
    /* mod_wsgi's sockets belong to Apache's User, whose children connect to them; nginx's
     * workers need the group (www-data on Debian, for nginx and Apache alike). */
    const char *sgroup = group != NULL ? group : getgrnam("www-data") != NULL ? "www-data" : NULL;

    for (int i = 0; i < w->cv->ngroups; i++) {
        wd_cv_group_t *g = &w->cv->groups[i];

        if (w->python_home != NULL && wd_cv_key_get(&g->keys, "python-home") == NULL)
            wd_cv_key_set(&g->keys, "python-home", w->python_home, 1);
        if (user != NULL && wd_cv_key_get(&g->keys, "user") == NULL)
            wd_cv_key_set(&g->keys, "user", user, 1);
        if (wd_cv_key_get(&g->keys, "user") == NULL)
            wd_cv_note(w->cv, g->file, g->line,
                       "WSGIDaemonProcess %s: no user=: mod_wsgi ran it as Apache's User; wsgid "
                       "started as root runs it as nobody unless the group says user:",
                       g->name);
        if (sgroup != NULL)
            wd_cv_key_set(&g->keys, "socket-group", sgroup, 1);
        wd_cv_key_set(&g->keys, "limit-request-body", lrb, 0);
    }
    free(user);
    free(group);
    if (w->python_path != NULL)
        wd_cv_note(w->cv, w->python_path_n->file, w->python_path_n->line,
                   "WSGIPythonPath: not converted: mod_wsgi uses it in embedded mode only (the "
                   "daemon groups have python-path=)");
}

/* LoadModule and Define, wherever they are: what <IfModule> and <IfDefine> test. */
static void prescan(walk_t *w, const wd_aconf_node_t *n)
{
    for (int i = 0; i < n->nkids; i++) {
        const wd_aconf_node_t *k = n->kids[i];

        if (k->section) {
            prescan(w, k);
        } else if (is(k, "LoadModule") && k->nargs > 0) {
            w->modules = xrealloc(w->modules, sizeof *w->modules * (size_t)(w->nmodules + 1));
            w->modules[w->nmodules++] = k->args[0];
        } else if (is(k, "Define") && k->nargs > 0) {
            w->defines = xrealloc(w->defines, sizeof *w->defines * (size_t)(w->ndefines + 1));
            w->defines[w->ndefines++] = k->args[0];
        }
    }
}

/* An Apache address ("127.0.0.1:8080", "[::1]:80", "*:80", "_default_", "8080") as its host
 * (NULL: every address) and port (NULL: none said). Caller frees both. */
static void split_addr(const char *a, char **host, char **port)
{
    const char *colon = strrchr(a, ':');
    size_t hl;

    if (a[0] == '[') {
        const char *rb = strchr(a, ']');

        colon = rb != NULL && rb[1] == ':' ? rb + 1 : NULL;
    } else if (colon != NULL && strchr(a, ':') != colon) {
        colon = NULL; /* an IPv6 address without brackets */
    } else if (colon == NULL && strspn(a, "0123456789") == strlen(a)) {
        *host = NULL;
        *port = xstrdup(a);
        return;
    }
    hl = colon != NULL ? (size_t)(colon - a) : strlen(a);
    *host = hl == 0 || (hl == 1 && a[0] == '*') || (hl == 9 && strncmp(a, "_default_", 9) == 0)
                ? NULL
                : xstrndup(a, hl);
    *port = colon != NULL && colon[1] != '\0' && strcmp(colon + 1, "*") != 0 ? xstrdup(colon + 1)
                                                                             : NULL;
}

/* nginx's listen for virtual host vn: its address, with the address of the Listen for its port
 * when the virtual host says "*" (Listen 127.0.0.1:8000 + <VirtualHost *:8000> answers on the
 * loopback only, and so must nginx); without a virtual host, the first Listen. NULL: port 80.
 * Caller frees. */
static char *listen_of(walk_t *w, const wd_aconf_node_t *vn)
{
    char *out = NULL;
    char *host = NULL, *port = NULL, *lh, *lp;
    const wd_aconf_node_t *used = NULL;

    if (vn != NULL && vn->nargs > 0)
        split_addr(vn->args[0], &host, &port);
    for (int i = 0; i < w->nlisten && used == NULL; i++) {
        split_addr(w->listens[i]->args[0], &lh, &lp);
        if (vn == NULL || port == NULL || (lp != NULL && strcmp(lp, port) == 0)) {
            used = w->listens[i];
            if (host == NULL)
                host = lh, lh = NULL;
            if (port == NULL)
                port = lp, lp = NULL;
        }
        free(lh);
        free(lp);
    }
    for (int i = 0; vn == NULL && i < w->nlisten; i++) {
        if (w->listens[i] != used)
            wd_cv_note(w->cv, w->listens[i]->file, w->listens[i]->line,
                       "Listen %s: not converted: the server block listens on %s only (add a "
                       "listen line to nginx.conf)",
                       w->listens[i]->args[0], used->args[0]);
    }
    if (host != NULL || port != NULL) {
        out = xmalloc((host ? strlen(host) : 0) + (port ? strlen(port) : 0) + 2);
        sprintf(out, "%s%s%s", host ? host : "", host && port ? ":" : "", port ? port : "");
    }
    free(host);
    free(port);
    return out;
}

/* One nginx server block per <VirtualHost> (the main server's when there is none): its listen,
 * and its ServerName (the server's when it has none, as Apache's) and ServerAlias names. */
static void finish_servers(walk_t *w)
{
    wd_cv_t *cv = w->cv;

    cv->nservers = w->vhosts > 0 ? w->vhosts : 1;
    cv->servers = xcalloc((size_t)cv->nservers, sizeof *cv->servers);
    for (int k = 0; k < cv->nservers; k++) {
        int v = w->vhosts > 0 ? k + 1 : 0;
        const char *name = w->names[v] != NULL ? w->names[v] : w->names[0];
        const char *more = w->snames[v];

        cv->servers[k].listen = listen_of(w, w->vhosts > 0 ? w->vnodes[k] : NULL);
        if (name != NULL || more != NULL) {
            cv->servers[k].names =
                xmalloc((name ? strlen(name) : 0) + (more ? strlen(more) : 0) + 2);
            sprintf(cv->servers[k].names, "%s%s%s", name ? name : "", name && more ? " " : "",
                    more ? more : "");
        }
    }
    for (int v = 0; v <= w->vhosts; v++) {
        free(w->names[v]);
        free(w->snames[v]);
    }
    free(w->names);
    free(w->snames);
    free(w->vnodes);
}

/* A server's alias serves in every virtual host: in the one there is, with its settings; with
 * several, in each one's server block with that host's settings, unless the host has an alias
 * of its own that takes the URL first. A virtual host's alias serves in its block. */
static void place_alias(walk_t *w, const alias_t *a)
{
    int match = strcmp(a->prefix, "/") == 0 ? WD_CV_PREFIX : WD_CV_SEGMENT;
    scope_t e;

    if (a->vhost == 0 && w->vhosts > 1) {
        for (int v = 1; v <= w->vhosts; v++) {
            if (alias_for(w, a->prefix, v) != a)
                continue;
            effective(w, a, a->prefix, v, &e);
            place(w, a, a->prefix, match, &e, v);
            scope_free(&e);
        }
        return;
    }
    effective(w, a, a->prefix, a->vhost > 0 ? a->vhost : w->vhosts == 1 ? 1 : 0, &e);
    place(w, a, a->prefix, match, &e, w->vhosts > 1 ? a->vhost : 0);
    scope_free(&e);
}

void wd_cv_from_apache(wd_cv_t *cv, const wd_aconf_t *conf)
{
    walk_t w;

    memset(&w, 0, sizeof w);
    w.cv = cv;
    w.names = xcalloc(1, sizeof *w.names);
    w.snames = xcalloc(1, sizeof *w.snames);
    scope_init(&w.server);
    prescan(&w, &conf->root);
    walk_kids(&w, &conf->root, &w.server, 1);
    for (int i = 0; i < w.naliases; i++) {
        const alias_t *a = &w.aliases[i], *first = alias_for(&w, a->prefix, a->vhost);

        if (first != a) {
            wd_cv_note(cv, a->n->file, a->n->line,
                       "WSGIScriptAlias %s: not converted: WSGIScriptAlias %s (%s:%d) comes "
                       "first and takes all of its URLs (mod_wsgi takes the first alias that "
                       "matches: Apache never ran %s; write the longer URL first)",
                       a->prefix, first->prefix, first->n->file, first->n->line, a->script);
            continue;
        }
        place_alias(&w, a);
    }
    place_locations(&w);
    for (int i = 0; i < cv->ngroups;) {
        if (cv->groups[i].nmounts > 0) {
            i++;
            continue;
        }
        /* mod_wsgi starts it, idle; a wsgid group needs an app */
        wd_cv_note(cv, cv->groups[i].file, cv->groups[i].line,
                   "WSGIDaemonProcess %s: not converted: no WSGIScriptAlias runs in it",
                   cv->groups[i].src_name != NULL ? cv->groups[i].src_name : cv->groups[i].name);
        wd_cv_group_remove(cv, i);
    }
    finish_groups(&w);
    finish_servers(&w);
    if (cv->max_body == NULL)
        cv->max_body = xstrdup("1g"); /* Apache's default LimitRequestBody since 2.4.54: 1 GiB */
    for (int i = 0; i < w.nareas; i++) {
        scope_free(&w.areas[i]->s);
        free(w.areas[i]);
    }
    free(w.areas);
    for (int i = 0; i < w.naliases; i++) {
        scope_free(&w.aliases[i].s);
        free(w.aliases[i].own_script);
    }
    free(w.aliases);
    for (int i = 0; i < w.vhosts; i++) {
        scope_free(w.vscopes[i]);
        free(w.vscopes[i]);
    }
    free(w.vscopes);
    free(w.listens);
    free(w.modules);
    free(w.defines);
    scope_free(&w.server);
}
