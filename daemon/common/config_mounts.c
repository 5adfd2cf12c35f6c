/* The configuration of a group's apps: `mounts:` (several apps by URL prefix) and
 * `application-group:` (which interpreter runs each), with the checks that need them all. */
#include "config.h"
#include "config_int.h"
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define APP_GROUP_NAME_MAX 64

static const char *const mount_keys[] = {"app",         "callable", "application-group",
                                         "python-path", "env",      "chdir"};
#define N_MOUNT_KEYS (sizeof mount_keys / sizeof mount_keys[0])

static const char *mount_key_name(size_t i)
{
    return mount_keys[i];
}

const char *wd_app_group_of(const wd_group_conf_t *g, const wd_mount_conf_t *m)
{
    if (m != NULL && m->application_group != NULL)
        return m->application_group;
    return g->application_group != NULL ? g->application_group : WD_APP_GROUP_GLOBAL;
}

/* mod_wsgi also has %{SERVER}, %{HOST} and %{ENV:NAME}: they name things of Apache's, which wsgid
 * does not have, so they are refused rather than taken as plain names. */
int wd__cfg_app_group(loader_t *ld, yaml_node_t *n, const char *key, char **out)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    if (strcmp(v, WD_APP_GROUP_GLOBAL) != 0 && strcmp(v, WD_APP_GROUP_RESOURCE) != 0) {
        if (strstr(v, "%{") != NULL)
            return fail(ld, n, key,
                        "'%s': the expansions are %s (the main interpreter) and %s (one "
                        "interpreter per mount); any other name is one shared sub-interpreter",
                        v, WD_APP_GROUP_GLOBAL, WD_APP_GROUP_RESOURCE);
        if (strlen(v) > APP_GROUP_NAME_MAX)
            return fail(ld, n, key, "application group name too long (at most %d characters)",
                        APP_GROUP_NAME_MAX);
        for (const char *p = v; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return fail(ld, n, key,
                            "an application group name cannot contain control "
                            "characters");
        }
    }
    free(*out);
    *out = xstrdup(v);
    return 0;
}

static int mount_key(loader_t *ld, wd_mount_conf_t *m, yaml_node_t *kn, yaml_node_t *vn,
                     const char *key)
{
    const char *name = (const char *)kn->data.scalar.value;
    char sub[WD_KEY_MAX];

    wd__cfg_key_join(sub, key, name);
    /* app's ":name" and callable must agree, in either order (callable first was overwritten
     * by app's, and leaked) */
    if (strcmp(name, "app") == 0) {
        char *c = NULL;
        int rc = wd__cfg_parse_app(ld, vn, sub, &m->app, &m->app_is_script, &c);

        if (rc == 0 && c != NULL && m->callable != NULL && strcmp(m->callable, c) != 0)
            rc = fail(ld, vn, sub, "its ':%s' conflicts with the callable '%s' given above", c,
                      m->callable);
        if (c != NULL) {
            free(m->callable);
            m->callable = c;
        }
        return rc;
    }
    if (strcmp(name, "callable") == 0) {
        char *c = NULL;
        int rc = wd__cfg_get_string(ld, vn, sub, &c);

        if (rc == 0 && !wd__cfg_valid_dotted_name(c))
            rc = fail(ld, vn, sub, "invalid callable name '%s'", c);
        else if (rc == 0 && m->callable != NULL && strcmp(m->callable, c) != 0)
            rc = fail(ld, vn, sub, "conflicts with the ':%s' given in app", m->callable);
        if (rc < 0) {
            free(c);
            return -1;
        }
        free(m->callable);
        m->callable = c;
        return 0;
    }
    if (strcmp(name, "application-group") == 0) {
        m->app_group_line = (int)vn->start_mark.line + 1;
        m->app_group_column = (int)vn->start_mark.column + 1;
        return wd__cfg_app_group(ld, vn, sub, &m->application_group);
    }
    if (strcmp(name, "python-path") == 0)
        return wd__cfg_path_list(ld, vn, sub, &m->python_path, &m->n_python_path);
    if (strcmp(name, "env") == 0)
        return wd__cfg_env_map(ld, vn, sub, &m->env, &m->n_env);
    if (strcmp(name, "chdir") == 0)
        return wd__cfg_get_dir(ld, vn, sub, &m->chdir);
    return wd__cfg_unknown_key(ld, kn, key, name, mount_key_name, N_MOUNT_KEYS);
}

/* A mount's value: the app alone, or a mapping with `app` and the settings of its own. */
static int parse_mount(loader_t *ld, wd_mount_conf_t *m, yaml_node_t *kn, yaml_node_t *vn,
                       const char *key)
{
    yaml_node_pair_t *pair;

    if (vn->type != YAML_MAPPING_NODE)
        return wd__cfg_parse_app(ld, vn, key, &m->app, &m->app_is_script, &m->callable);
    if (wd__cfg_check_duplicates(ld, vn, key) < 0)
        return -1;
    for (pair = vn->data.mapping.pairs.start; pair < vn->data.mapping.pairs.top; pair++) {
        if (mount_key(ld, m, wd__cfg_node_at(ld, pair->key), wd__cfg_node_at(ld, pair->value),
                      key) < 0)
            return -1;
    }
    if (m->app == NULL)
        return fail(ld, kn, key, "the mount has no `app` (a script path or module:callable)");
    return 0;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* What is wrong with a mount point as written, or NULL. A request is routed by its decoded path
 * (python_glue/environ.c wd__py_route), so a mount point is written decoded, as nginx's location,
 * Apache's WSGIScriptAlias and the app's SCRIPT_NAME read it: "/x y" and "/café" are reached by a
 * client's /x%20y and /caf%C3%A9. A space was refused as if the mount point did not start with
 * '/' (helper-63), and "/x%20y" was taken, to match only a client's /x%2520y. */
static const char *prefix_error(const char *p, char *buf, size_t cap)
{
    if (p[0] != '/')
        return "a mount point is a URL path starting with '/'";
    for (const char *s = p; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return "a mount point holds no control character (a tab, a line break)";
        if (*s == '?' || *s == '#')
            return "'?' starts a URL's query and '#' its fragment: a mount point is matched "
                   "against the path alone";
        if (*s == '%' && is_hex(s[1]) && is_hex(s[2])) {
            snprintf(buf, cap,
                     "a mount point is written decoded, as the app's SCRIPT_NAME and nginx's "
                     "location read it (\"/x y\" for a client's /x%%20y): %%%.2s here would match "
                     "only a client's %%25%.2s",
                     s + 1, s + 1);
            return buf;
        }
    }
    return NULL;
}

/* A URL path without an empty ("//"), "." or ".." segment (a trailing '/' is allowed). */
static int plain_path(const char *p)
{
    for (const char *s = p + 1; *s != '\0';) {
        size_t n = strcspn(s, "/");

        if ((n == 0 && s[0] == '/') || (n == 1 && s[0] == '.') ||
            (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n + (s[n] == '/');
    }
    return 1;
}

int wd__cfg_parse_mounts(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    yaml_node_pair_t *pair;
    char sub[WD_KEY_MAX];
    size_t len;
    wd__cfg_strset_t prefixes = {0};
    char why[256];
    const char *bad;
    int rc = 0;

    if (wd__cfg_is_null(n))
        return 0;
    if (n->type != YAML_MAPPING_NODE)
        return fail(ld, n, key, "expected a mapping of /PREFIX: app, got %s", wd__cfg_node_kind(n));
    if (wd__cfg_check_duplicates(ld, n, key) < 0)
        return -1;
    g->mounts = xcalloc((size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start),
                        sizeof *g->mounts);
    for (pair = n->data.mapping.pairs.start; rc == 0 && pair < n->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = wd__cfg_node_at(ld, pair->key), *vn = wd__cfg_node_at(ld, pair->value);
        const char *prefix = wd__cfg_scalar(ld, kn, key);
        wd_mount_conf_t *m;

        if (prefix == NULL) {
            rc = -1;
            break;
        }
        wd__cfg_key_join(sub, key, prefix);
        if ((bad = prefix_error(prefix, why, sizeof why)) != NULL) {
            rc = fail(ld, kn, sub, "'%s': %s", prefix, bad);
            break;
        }
        if (!plain_path(prefix)) {
            rc = fail(ld, kn, sub,
                      "'%s': a mount point has no empty, '.' or '..' segment (the request's path "
                      "is matched as sent: it would never match)",
                      prefix);
            break;
        }
        m = &g->mounts[g->n_mounts++];
        m->line = (int)kn->start_mark.line + 1;
        m->column = (int)kn->start_mark.column + 1;
        for (len = strlen(prefix); len > 1 && prefix[len - 1] == '/'; len--)
            ;
        m->prefix = xstrndup(prefix, len);
        /* "/a" and "/a/" are one mount point (the mapping's own check saw two keys) */
        if (wd__cfg_strset_add(&prefixes, m->prefix, g->n_mounts - 1) >= 0)
            rc = fail(ld, kn, sub, "mount point %s is given twice", m->prefix);
        else if (parse_mount(ld, m, kn, vn, sub) < 0)
            rc = -1;
        else if (m->callable == NULL)
            m->callable = xstrdup("application");
    }
    wd__cfg_strset_free(&prefixes);
    return rc;
}

/* The interpreter of a %{RESOURCE} app is its own, named by its mount point ("/" for the group's
 * app) in wsgid.application_group and the log. A named application group of that name joined it
 * (helper-63): /b with application-group "/a" ran in /a's own interpreter, and /a saw /b's env,
 * which the env check below, skipping %{RESOURCE} apps, did not compare. It is refused rather
 * than given an interpreter of its own: the two would then have one name in environ and in the
 * log, and whoever wrote "/a" most likely meant /a's interpreter, which no other app joins.
 *
 * The group's app is the app at / (it serves what no mount matches): a mount at / beside it
 * took every request, and the group's app was never reached, silently (helper-63). */
int wd__cfg_check_app_names(loader_t *ld, const wd_group_conf_t *g, const yaml_node_t *app_node,
                            const yaml_node_t *ag_node, const char *gkey)
{
    char key[WD_KEY_MAX];
    wd__cfg_strset_t own = {0};
    int rc = 0;

    for (long a = -1; a < (long)g->n_mounts; a++) {
        const wd_mount_conf_t *m = a < 0 ? NULL : &g->mounts[a];

        if (m != NULL && g->app != NULL && strcmp(m->prefix, "/") == 0) {
            snprintf(key, sizeof key, "%s.mounts./", gkey);
            wd__cfg_fail_at(ld, (size_t)m->line, (size_t)m->column, key,
                            "the group's app (line %zu) is the app at / already (it serves what "
                            "no mount matches): a mount at / would take every request from it. "
                            "Serve one app at /: remove the group's app, or mount this one under "
                            "another prefix",
                            app_node->start_mark.line + 1);
            rc = -1;
            goto done;
        }
        if ((m != NULL || g->app != NULL) &&
            strcmp(wd_app_group_of(g, m), WD_APP_GROUP_RESOURCE) == 0)
            wd__cfg_strset_add(&own, m != NULL ? m->prefix : "/", (size_t)(a + 1));
    }
    for (long a = -1; a < (long)g->n_mounts && own.root != NULL; a++) {
        const wd_mount_conf_t *m = a < 0 ? NULL : &g->mounts[a];
        const char *ag = wd_app_group_of(g, m);
        long owner;

        if ((m == NULL && g->app == NULL) || strcmp(ag, WD_APP_GROUP_GLOBAL) == 0 ||
            strcmp(ag, WD_APP_GROUP_RESOURCE) == 0 || (owner = wd__cfg_strset_find(&own, ag)) < 0)
            continue;
        if (m != NULL && m->application_group != NULL) {
            snprintf(key, sizeof key, "%s.mounts.%s.application-group", gkey, m->prefix);
            wd__cfg_fail_at(ld, (size_t)m->app_group_line, (size_t)m->app_group_column, key,
                            "\"%s\" is the name of %s%s's own interpreter (application-group: "
                            "\"%s\"), which no other app joins: give the apps that are to share "
                            "an interpreter one name of your own, or choose another name",
                            ag, owner > 0 ? "mount " : "", owner > 0 ? ag : "the group's app",
                            WD_APP_GROUP_RESOURCE);
        } else {
            snprintf(key, sizeof key, "%s.application-group", gkey);
            wd__cfg_fail_at(ld, ag_node->start_mark.line + 1, ag_node->start_mark.column + 1, key,
                            "\"%s\" is the name of mount %s's own interpreter (application-group: "
                            "\"%s\"), which no other app joins: give the apps that are to share "
                            "an interpreter one name of your own, or choose another name",
                            ag, ag, WD_APP_GROUP_RESOURCE);
        }
        rc = -1;
        break;
    }
done:
    wd__cfg_strset_free(&own);
    return rc;
}

/* The env of app i (-1: the group's own app, which has the group's env: a mount in its
 * interpreter that set a name of it to another value changed it under the group's app, and was
 * not refused), as set in its interpreter. */
static const wd_env_conf_t *env_of(const wd_group_conf_t *g, long i, size_t *n)
{
    if (i < 0) {
        *n = g->n_env;
        return g->env;
    }
    *n = g->mounts[i].n_env;
    return g->mounts[i].env;
}

static const char *label_of(const wd_group_conf_t *g, long i)
{
    return i < 0 ? "the group's app" : g->mounts[i].prefix;
}

/* One variable set by one app, for the sort below. */
typedef struct {
    const char *app_group;
    const wd_env_conf_t *env;
    long app;  /* -1: the group's own */
    size_t at; /* its place in the app's env */
} env_set_t;

static int env_set_cmp(const void *x, const void *y)
{
    const env_set_t *a = x, *b = y;
    int c = strcmp(a->app_group, b->app_group);

    if (c == 0)
        c = strcmp(a->env->name, b->env->name);
    if (c == 0)
        c = (a->app > b->app) - (a->app < b->app);
    return c;
}

/* Two apps in one interpreter share its os.environ: if they set one variable to two values,
 * one of them would run with the other's (two Django projects with different
 * DJANGO_SETTINGS_MODULE in %{GLOBAL} is the classic case). Refused, with the fix.
 *
 * Every variable of every app that shares its interpreter, sorted by interpreter, name and app:
 * a run of one name in one interpreter is in conflict if any value differs from its first app's.
 * The error is the one the comparison of every pair of apps, in reading order, met first (the
 * earliest first app, then the earliest app to differ, then the first app's env order): that
 * took 4.07 s in `wsgid --check` on 24 mounts sharing one env of 2,000 names (0.03 s sorted),
 * and about 3.9 s of the 6.42 s that 40,000 mounts without env took (2.51 s sorted). */
int wd__cfg_check_app_groups(loader_t *ld, const wd_group_conf_t *g, const char *gkey)
{
    char key[WD_KEY_MAX];
    size_t total = 0, n = 0, i, j;
    env_set_t *sets, *best = NULL, *best_b = NULL;

    for (long a = -1; a < (long)g->n_mounts; a++) {
        env_of(g, a, &i);
        total += i;
    }
    sets = xcalloc(total, sizeof *sets);
    for (long a = -1; a < (long)g->n_mounts; a++) {
        const char *ga = wd_app_group_of(g, a < 0 ? NULL : &g->mounts[a]);
        size_t na;
        const wd_env_conf_t *ea = env_of(g, a, &na);

        if ((a < 0 && g->app == NULL) || strcmp(ga, WD_APP_GROUP_RESOURCE) == 0)
            continue;
        for (i = 0; i < na; i++)
            sets[n++] = (env_set_t){.app_group = ga, .env = &ea[i], .app = a, .at = i};
    }
    qsort(sets, n, sizeof *sets, env_set_cmp);
    for (i = 0; i < n; i = j) {
        env_set_t *first = &sets[i], *differs = NULL;

        for (j = i + 1; j < n && strcmp(sets[j].app_group, first->app_group) == 0 &&
                        strcmp(sets[j].env->name, first->env->name) == 0;
             j++) {
            if (differs == NULL && strcmp(sets[j].env->value, first->env->value) != 0)
                differs = &sets[j];
        }
        if (differs != NULL && (best == NULL || first->app < best->app ||
                                (first->app == best->app &&
                                 (differs->app < best_b->app ||
                                  (differs->app == best_b->app && first->at < best->at))))) {
            best = first;
            best_b = differs;
        }
    }
    if (best != NULL) {
        const wd_mount_conf_t *mb = &g->mounts[best_b->app];

        snprintf(key, sizeof key, "%s.mounts.%s.env.%s", gkey, mb->prefix, best_b->env->name);
        wd__cfg_fail_at(ld, (size_t)best_b->env->line, (size_t)best_b->env->column, key,
                        "%s and %s share the interpreter of application group \"%s\" but set %s "
                        "to different values (%s, %s): one interpreter has one os.environ. Give "
                        "them application-group: \"%s\" (or two names)",
                        label_of(g, best->app), mb->prefix, best->app_group, best->env->name,
                        best->env->value, best_b->env->value, WD_APP_GROUP_RESOURCE);
    }
    free(sets);
    return best != NULL ? -1 : 0;
}
