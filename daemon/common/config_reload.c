/* The configuration of reload-on-change: `reload-on-change:` and `watch:` (read by the master
 * only, daemon/master/master_autoreload.c), with the checks that need the whole group. */
#include "config.h"
#include "config_int.h"
#include "alloc.h"
#include "pathglob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

int wd__cfg_key_reload_on_change(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_get_bool(ld, n, key, &g->reload_on_change);
}

/* One `watch` entry, resolved against the file's directory like every path. A directory (an
 * existing one, or any entry written with a trailing '/') means everything below it: it gets a
 * last `**` segment. Whether the paths exist is checked once the group is read (check_reload). */
static int watch_one(loader_t *ld, yaml_node_t *n, const char *key, wd_group_conf_t *g)
{
    const char *v = wd__cfg_scalar(ld, n, key);
    struct stat st;
    char *p, *d;

    if (v == NULL)
        return -1;
    p = wd__cfg_path_resolve(ld->conf->dir, v);
    if (v[strlen(v) - 1] == '/' ||
        (wd_pathglob_is_literal(p) && stat(p, &st) == 0 && S_ISDIR(st.st_mode))) {
        d = xmalloc(strlen(p) + 4);
        sprintf(d, "%s%s**", p, strcmp(p, "/") == 0 ? "" : "/");
        free(p);
        p = d;
    }
    g->watch[g->n_watch++] = p;
    return 0;
}

static int watch_item(loader_t *ld, yaml_node_t *n, const char *key, void *g)
{
    return watch_one(ld, n, key, g);
}

int wd__cfg_key_watch(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    size_t count = wd__cfg_items(n);

    if (n->type == YAML_MAPPING_NODE)
        return fail(ld, n, key, "expected a path or a list of paths and patterns, got a mapping");
    if (count == 0 || wd__cfg_is_null(n))
        return fail(ld, n, key,
                    "at least one path or pattern is required, e.g. [\"**/*.py\"] (or remove "
                    "the key)");
    g->watch = xcalloc(count, sizeof *g->watch);
    return wd__cfg_each(ld, n, key, watch_item, g);
}

/* A `watch` entry must name something that exists: a plain path the file or directory itself, a
 * pattern the directory before its first wildcard (where the watching starts). */
static int check_watch_path(loader_t *ld, yaml_node_t *n, const char *key, const char *p)
{
    struct stat st;
    char *base;
    int rc = 0;

    if (wd_pathglob_is_literal(p)) {
        if (stat(p, &st) < 0)
            return fail(ld, n, key,
                        "%s: %s (a file that does not exist yet is watched through a pattern: "
                        "DIR/*.py)",
                        p,
                        errno == ENOENT || errno == ENOTDIR ? "no such file or directory"
                                                            : strerror(errno));
        return 0;
    }
    base = xstrndup(p, wd_pathglob_base(p));
    if (stat(base, &st) < 0)
        rc = fail(ld, n, key, "%s: the directory %s, where the pattern starts, %s", p, base,
                  errno == ENOENT || errno == ENOTDIR ? "does not exist" : strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        rc = fail(ld, n, key, "%s: %s, where the pattern starts, is not a directory", p, base);
    free(base);
    return rc;
}

/* reload-on-change and watch. `watch:` alone turns reload-on-change on (an operator who lists
 * files to watch wants them watched); `reload-on-change: false` next to it turns it off without
 * deleting the list (a production override of a development file). A module app has no file
 * wsgid can name, so it needs `watch:`. */
int wd__cfg_check_reload(loader_t *ld, wd_group_conf_t *g, yaml_node_t *on, yaml_node_t *wn,
                         const char *gkey)
{
    const char *module = !g->app_is_script ? g->app : NULL, *mount = NULL;
    char key[WD_KEY_MAX];
    size_t i;

    if (wn != NULL && on == NULL)
        g->reload_on_change = 1;
    if (!g->reload_on_change)
        return 0;
    if (wn != NULL) {
        wd__cfg_key_join(key, gkey, "watch");
        for (i = 0; i < g->n_watch; i++) {
            yaml_node_t *n = wn->type == YAML_SEQUENCE_NODE
                                 ? wd__cfg_node_at(ld, wn->data.sequence.items.start[i])
                                 : wn;

            if (!(ld->flags & WD_CONFIG_NO_FILE_CHECKS) &&
                check_watch_path(ld, n, key, g->watch[i]) < 0)
                return -1;
        }
        return 0;
    }
    for (i = 0; i < g->n_mounts && module == NULL; i++) {
        if (!g->mounts[i].app_is_script) {
            module = g->mounts[i].app;
            mount = g->mounts[i].prefix;
        }
    }
    if (module == NULL)
        return 0;
    wd__cfg_key_join(key, gkey, "reload-on-change");
    return fail(ld, on, key,
                "the app%s%s '%s' is a module, whose files wsgid cannot tell: list them in "
                "`watch:`, e.g. watch: [\"**/*.py\"] (relative to this file)",
                mount != NULL ? " of mount " : "", mount != NULL ? mount : "", module);
}
