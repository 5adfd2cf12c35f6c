/* Names shared by the configuration loader's files only (config.c: the file and its top level;
 * config_values.c: YAML helpers and value parsers; config_listen.c: listen addresses;
 * config_group.c: a group's keys; config_mounts.c: its apps; config_reload.c: reload-on-change;
 * config_shape.c: the YAML's nesting, anchors and aliases, before it is loaded). */
#ifndef WD_COMMON_CONFIG_INT_H
#define WD_COMMON_CONFIG_INT_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#define WD_CONFIG_MAX_FILE (16u << 20) /* a config bigger than this is a mistake */
#define WD_KEY_MAX 256

typedef struct loader {
    yaml_document_t doc;
    wd_config_t *conf;
    const char *file; /* as the caller named it, for messages */
    char *err;
    size_t errlen;
    yaml_node_t *control; /* kept for the checks that need the whole file */
    yaml_node_t *metrics;
    yaml_node_t *agent;
    yaml_node_t *health;
    int app_callable;                /* the group's app named its callable ("module:name") */
    int flags;                       /* WD_CONFIG_NO_FILE_CHECKS */
    struct wd_listen_index *listens; /* the groups' addresses so far (config_listen.c) */
} loader_t;

/* config_shape.c: the text's YAML nested too deep, with too many anchors or one given twice,
 * with aliases that stand for too many nodes or for a node that contains them, or with a second
 * document: -1 with the message (FILE:LINE:COL of the excess), else 0. */
int wd__cfg_check_shape(loader_t *ld, const char *text, size_t len);

/* config_values.c: messages, YAML nodes, scalars, paths, numbers. Each returns -1 (the message
 * written with FILE:LINE:COL) or 0, unless it says otherwise. */
int wd__cfg_fail_at(loader_t *ld, size_t line, size_t col, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
yaml_node_t *wd__cfg_node_at(loader_t *ld, int index);
const char *wd__cfg_node_kind(const yaml_node_t *n);
int wd__cfg_is_null(const yaml_node_t *n);
const char *wd__cfg_scalar(loader_t *ld, yaml_node_t *n, const char *key);
const char *wd__cfg_scalar_empty_ok(loader_t *ld, yaml_node_t *n, const char *key, int empty_ok);
void wd__cfg_key_join(char *buf, const char *parent, const char *name);
/* A set of names, each with an id: the caller keeps the names alive; zeroed is empty. add
 * returns the id the name already had (the set unchanged), or -1 with it added. O(log n) a call. */
typedef struct {
    void *root;
} wd__cfg_strset_t;
long wd__cfg_strset_add(wd__cfg_strset_t *set, const char *name, size_t id);
long wd__cfg_strset_find(const wd__cfg_strset_t *set, const char *name);
void wd__cfg_strset_free(wd__cfg_strset_t *set);
size_t wd__cfg_edit_distance(const char *a, const char *b);
char *wd__cfg_path_resolve(const char *dir, const char *p);
int wd__cfg_set_file_path(wd_config_t *conf, const char *path);
int wd__cfg_get_path(loader_t *ld, yaml_node_t *n, const char *key, char **out);
int wd__cfg_get_dir(loader_t *ld, yaml_node_t *n, const char *key, char **out);
int wd__cfg_get_string(loader_t *ld, yaml_node_t *n, const char *key, char **out);
int wd__cfg_parse_uint(const char *s, const char **end, uint64_t *out);
int wd__cfg_get_count(loader_t *ld, yaml_node_t *n, const char *key, uint64_t min, uint64_t max,
                      uint64_t *out);
int wd__cfg_get_size(loader_t *ld, yaml_node_t *n, const char *key, uint64_t *out);
int wd__cfg_get_time(loader_t *ld, yaml_node_t *n, const char *key, double *out);
/* A value that is one scalar or a list of them: how many (0 for anything else), and fn called on
 * each in turn (-1 at the first that fails). */
typedef int (*wd__cfg_item_fn)(loader_t *ld, yaml_node_t *item, const char *key, void *ctx);
size_t wd__cfg_items(const yaml_node_t *n);
int wd__cfg_each(loader_t *ld, yaml_node_t *n, const char *key, wd__cfg_item_fn fn, void *ctx);
/* A path or a list of paths (*out: a new array of *count absolute paths). */
int wd__cfg_path_list(loader_t *ld, yaml_node_t *n, const char *key, char ***out, size_t *count);
/* A mapping NAME: value (*out: a new array of *count pairs). */
int wd__cfg_env_map(loader_t *ld, yaml_node_t *n, const char *key, wd_env_conf_t **out,
                    size_t *count);
int wd__cfg_get_bool(loader_t *ld, yaml_node_t *n, const char *key, int *out);
/* v one of YAML 1.1's boolean words: 0 with *out 1 or 0; else -1 (nothing said). */
int wd__cfg_bool_word(const char *v, int *out);
/* config_group.c: a Python name, dotted ("pkg.module", "app"). */
int wd__cfg_valid_dotted_name(const char *s);

/* config_listen.c: listen addresses. */
int wd__cfg_parse_tcp(loader_t *ld, yaml_node_t *n, const char *key, const char *v, char **host,
                      int *port);
/* One item of a group's `listen:`, added to g->listen (g->listen has room for it). */
int wd__cfg_parse_listen_one(loader_t *ld, yaml_node_t *n, const char *key, wd_group_conf_t *g);
/* l (one of g's) is used by no address checked before it in the file: then it is kept for the
 * checks after it. wd__cfg_listen_index_free releases what they kept. */
int wd__cfg_check_listen_unique(loader_t *ld, yaml_node_t *n, const char *key,
                                const wd_group_conf_t *g, const wd_listen_conf_t *l);
void wd__cfg_listen_index_free(loader_t *ld);
/* The file a unix socket's absolute path names, for comparisons (malloc'd). */
char *wd__cfg_unix_real(const char *path);

/* config_group.c: the `groups:` mapping, and what the top level shares with it. */
int wd__cfg_parse_groups(loader_t *ld, yaml_node_t *n);
int wd__cfg_parse_app(loader_t *ld, yaml_node_t *n, const char *key, char **app, int *is_script,
                      char **callable);
int wd__cfg_check_duplicates(loader_t *ld, yaml_node_t *map, const char *parent);
int wd__cfg_unknown_key(loader_t *ld, yaml_node_t *kn, const char *parent, const char *name,
                        const char *(*cand)(size_t), size_t n_cand);

/* config_mounts.c: `mounts:`, `application-group:` and the checks between a group's apps. */
int wd__cfg_parse_mounts(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key);
int wd__cfg_app_group(loader_t *ld, yaml_node_t *n, const char *key, char **out);
int wd__cfg_check_app_groups(loader_t *ld, const wd_group_conf_t *g, const char *gkey);
/* That each app of g has one place and one interpreter of its own name: no mount at / beside
 * the group's app (app_node), no application-group name (ag_node: the group's) that is a
 * %{RESOURCE} interpreter's. */
int wd__cfg_check_app_names(loader_t *ld, const wd_group_conf_t *g, const yaml_node_t *app_node,
                            const yaml_node_t *ag_node, const char *gkey);

/* config_reload.c: `reload-on-change:` and `watch:`; the check of both once the group is read
 * (on, wn: their nodes, NULL when absent). */
int wd__cfg_key_reload_on_change(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key);
int wd__cfg_key_watch(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key);
int wd__cfg_check_reload(loader_t *ld, wd_group_conf_t *g, yaml_node_t *on, yaml_node_t *wn,
                         const char *gkey);

/* config.c: a `log:`-style value (a path, "-" or "off"). */
int wd__cfg_parse_log_value(loader_t *ld, yaml_node_t *n, const char *key, char **out);

/* An error at node n (its line and column) for key: returns -1 (see wd__cfg_fail_at). */
#define fail(ld, node, key, ...)                                                                   \
    wd__cfg_fail_at((ld), (node)->start_mark.line + 1, (node)->start_mark.column + 1, (key),       \
                    __VA_ARGS__)

/* The keys of the top level and of `log:`, for messages that suggest one. */
static const char *const wd__cfg_top_keys[] = {"control",     "pidfile", "log",   "metrics",
                                               "agent-check", "health",  "groups"};
static const char *const wd__cfg_log_keys[] = {"level", "file", "access"};
#define N_TOP_KEYS (sizeof wd__cfg_top_keys / sizeof wd__cfg_top_keys[0])
#define N_LOG_KEYS (sizeof wd__cfg_log_keys / sizeof wd__cfg_log_keys[0])

static inline const char *wd__cfg_top_key_name(size_t i)
{
    return wd__cfg_top_keys[i];
}

static inline const char *wd__cfg_log_key_name(size_t i)
{
    return wd__cfg_log_keys[i];
}

#endif
