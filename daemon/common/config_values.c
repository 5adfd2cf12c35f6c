/* The configuration loader's YAML helpers and value parsers: messages with FILE:LINE:COL, scalars,
 * paths, counts, sizes and times. See config.c. */
#include "config.h"
#include "config_int.h"
#include "alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <search.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

/* ---- small helpers ---------------------------------------------------------------------- */

int wd__cfg_fail_at(loader_t *ld, size_t line, size_t col, const char *key, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (ld->err == NULL || ld->errlen == 0)
        return -1;
    if (key != NULL && key[0] != '\0')
        n = snprintf(ld->err, ld->errlen, "%s:%zu:%zu: %s: ", ld->file, line, col, key);
    else
        n = snprintf(ld->err, ld->errlen, "%s:%zu:%zu: ", ld->file, line, col);
    if (n < 0 || (size_t)n >= ld->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reports an error at a node: libyaml marks are 0-based, messages are 1-based. */

yaml_node_t *wd__cfg_node_at(loader_t *ld, int index)
{
    return yaml_document_get_node(&ld->doc, index);
}

const char *wd__cfg_node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "a value";
    }
}

int wd__cfg_is_null(const yaml_node_t *n)
{
    const char *v;

    if (n->type != YAML_SCALAR_NODE)
        return 0;
    if (n->tag != NULL && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0)
        return 1;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* The text of a scalar node, or NULL after reporting why the node is not a usable one. */
const char *wd__cfg_scalar_empty_ok(loader_t *ld, yaml_node_t *n, const char *key, int empty_ok)
{
    const char *v;

    if (n->type != YAML_SCALAR_NODE) {
        fail(ld, n, key, "expected a single value, got %s", wd__cfg_node_kind(n));
        return NULL;
    }
    if (wd__cfg_is_null(n)) {
        fail(ld, n, key, "a value is required");
        return NULL;
    }
    v = (const char *)n->data.scalar.value;
    if (strlen(v) != n->data.scalar.length) {
        fail(ld, n, key, "the value contains a NUL byte");
        return NULL;
    }
    if (v[0] == '\0' && !empty_ok) {
        fail(ld, n, key, "the value must not be empty");
        return NULL;
    }
    return v;
}

const char *wd__cfg_scalar(loader_t *ld, yaml_node_t *n, const char *key)
{
    return wd__cfg_scalar_empty_ok(ld, n, key, 0);
}

/* Builds the dotted key for messages ("groups.site1.threads"); a very long one is cut short. */
void wd__cfg_key_join(char *buf, const char *parent, const char *name)
{
    int n;

    if (parent == NULL || parent[0] == '\0')
        n = snprintf(buf, WD_KEY_MAX, "%s", name);
    else
        n = snprintf(buf, WD_KEY_MAX, "%s.%s", parent, name);
    if (n >= WD_KEY_MAX)
        strcpy(buf + WD_KEY_MAX - 4, "...");
}

/* Optimal string alignment distance (Levenshtein plus transpositions), for "did you mean". */
size_t wd__cfg_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j;
    size_t d[33][33];

    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (i = 0; i <= la; i++)
        d[i][0] = i;
    for (j = 0; j <= lb; j++)
        d[0][j] = j;
    for (i = 1; i <= la; i++) {
        for (j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = d[i - 1][j] + 1;

            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* A binary tree (glibc's tsearch: red-black) ordered by strcmp: no hash an input could flood
 * (an unseeded FNV-1a table took 5.7 s on 40,000 mount points built to collide, against 0.16 s
 * on plain ones). */
typedef struct {
    const char *name;
    size_t id;
} strset_item_t;

static int strset_cmp(const void *a, const void *b)
{
    return strcmp(((const strset_item_t *)a)->name, ((const strset_item_t *)b)->name);
}

long wd__cfg_strset_add(wd__cfg_strset_t *set, const char *name, size_t id)
{
    strset_item_t *item = xmalloc(sizeof *item), **found;

    item->name = name;
    item->id = id;
    found = tsearch(item, &set->root, strset_cmp);
    if (found == NULL)
        wd_out_of_memory();
    if (*found != item) {
        free(item);
        return (long)(*found)->id;
    }
    return -1;
}

long wd__cfg_strset_find(const wd__cfg_strset_t *set, const char *name)
{
    strset_item_t key = {.name = name, .id = 0}, **found = tfind(&key, &set->root, strset_cmp);

    return found != NULL ? (long)(*found)->id : -1;
}

void wd__cfg_strset_free(wd__cfg_strset_t *set)
{
    tdestroy(set->root, free);
    set->root = NULL;
}

/* ---- paths ------------------------------------------------------------------------------ */

/* Joins dir and p (unless p is absolute) and removes ".", ".." and repeated slashes: the paths
 * need not exist yet. A ".." after a symlink stays, for the kernel to resolve: it is the parent
 * of the link's target ("current/../shared", with current -> releases/42, in a Capistrano
 * layout), which removing the link's name as text got wrong. */
char *wd__cfg_path_resolve(const char *dir, const char *p)
{
    size_t dl = p[0] == '/' ? 0 : strlen(dir);
    char *in = xmalloc(dl + strlen(p) + 2);
    char *out = xmalloc(dl + strlen(p) + 2);
    size_t o = 0;
    char *seg, *save = NULL;

    if (p[0] == '/')
        strcpy(in, p);
    else
        sprintf(in, "%s/%s", dir, p);
    for (seg = strtok_r(in, "/", &save); seg != NULL; seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0) {
            size_t last = o;
            struct stat st;

            while (last > 0 && out[last - 1] != '/')
                last--;
            out[o] = '\0';
            if (o > 0 &&
                (strcmp(out + last, "..") == 0 || (lstat(out, &st) == 0 && S_ISLNK(st.st_mode)))) {
                memcpy(out + o, "/..", 3);
                o += 3;
                continue;
            }
            o = last > 0 ? last - 1 : 0;
            continue;
        }
        out[o++] = '/';
        memcpy(out + o, seg, strlen(seg));
        o += strlen(seg);
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    free(in);
    return out;
}

int wd__cfg_set_file_path(wd_config_t *conf, const char *path)
{
    char cwd[PATH_MAX];
    char *slash;

    if (getcwd(cwd, sizeof cwd) == NULL)
        return -errno;
    conf->path = wd__cfg_path_resolve(cwd, path != NULL ? path : "wsgid.yaml");
    conf->dir = xstrdup(conf->path);
    slash = strrchr(conf->dir, '/');
    if (slash == conf->dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    return 0;
}

int wd__cfg_get_path(loader_t *ld, yaml_node_t *n, const char *key, char **out)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    free(*out);
    *out = wd__cfg_path_resolve(ld->conf->dir, v);
    return 0;
}

/* A directory the workers chdir to: refused here when it is none, as a missing app script is,
 * rather than by a worker that then fails to start (helper-62). Whether the workers' user may
 * enter it is theirs to find out, as for the script. */
int wd__cfg_get_dir(loader_t *ld, yaml_node_t *n, const char *key, char **out)
{
    struct stat st;

    if (wd__cfg_get_path(ld, n, key, out) < 0)
        return -1;
    if (ld->flags & WD_CONFIG_NO_FILE_CHECKS)
        return 0;
    if (stat(*out, &st) < 0)
        return fail(ld, n, key, "%s %s: give an existing directory",
                    errno == ENOENT || errno == ENOTDIR ? "no such directory" : strerror(errno),
                    *out);
    if (!S_ISDIR(st.st_mode))
        return fail(ld, n, key, "%s is not a directory: give the directory to work in", *out);
    return 0;
}

int wd__cfg_get_string(loader_t *ld, yaml_node_t *n, const char *key, char **out)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    free(*out);
    *out = xstrdup(v);
    return 0;
}

/* ---- numbers, sizes, times -------------------------------------------------------------- */

int wd__cfg_parse_uint(const char *s, const char **end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *end = p;
    *out = v;
    return 0;
}

int wd_config_parse_size(const char *s, uint64_t *out)
{
    const char *p;
    uint64_t v, mult = 1;

    if (s == NULL || wd__cfg_parse_uint(s, &p, &v) < 0)
        return -1;
    switch (*p) {
    case 'k':
    case 'K':
        mult = 1ull << 10;
        p++;
        break;
    case 'm':
    case 'M':
        mult = 1ull << 20;
        p++;
        break;
    case 'g':
    case 'G':
        mult = 1ull << 30;
        p++;
        break;
    case 't':
    case 'T':
        mult = 1ull << 40;
        p++;
        break;
    default:
        break;
    }
    if (*p == 'b' || *p == 'B')
        p++;
    if (*p != '\0')
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

/* Seconds: "30", "1.5", "500ms", "30s", "5m", "1h", "7d". Returns 0, -1 (not a time), -2
 * (negative). */
static int parse_time(const char *s, double *out)
{
    const char *p = s;
    double v = 0, scale = 1;
    int neg = 0, digits = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        v = v * 10 + (*p - '0');
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            scale /= 10;
            v += (*p - '0') * scale;
        }
    }
    if (digits == 0)
        return -1;
    if (strcmp(p, "ms") == 0)
        v /= 1000;
    else if (strcmp(p, "us") == 0)
        v /= 1000000;
    else if (strcmp(p, "m") == 0 || strcmp(p, "min") == 0)
        v *= 60;
    else if (strcmp(p, "h") == 0)
        v *= 3600;
    else if (strcmp(p, "d") == 0)
        v *= 86400;
    else if (*p != '\0' && strcmp(p, "s") != 0)
        return -1;
    if (neg && v != 0)
        return -2;
    *out = v;
    return 0;
}

int wd__cfg_get_count(loader_t *ld, yaml_node_t *n, const char *key, uint64_t min, uint64_t max,
                      uint64_t *out)
{
    const char *v = wd__cfg_scalar(ld, n, key);
    const char *end;
    uint64_t x;

    if (v == NULL)
        return -1;
    if (v[0] == '-' && wd__cfg_parse_uint(v + 1, &end, &x) == 0 && *end == '\0')
        return fail(ld, n, key, "must not be negative");
    if (wd__cfg_parse_uint(v, &end, &x) < 0 || *end != '\0')
        return fail(ld, n, key, "expected a whole number, got '%s'", v);
    if (x < min || x > max)
        return fail(ld, n, key, "%" PRIu64 " is out of range (%" PRIu64 "..%" PRIu64 ")", x, min,
                    max);
    *out = x;
    return 0;
}

int wd__cfg_get_size(loader_t *ld, yaml_node_t *n, const char *key, uint64_t *out)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    if (v[0] == '-')
        return fail(ld, n, key, "must not be negative");
    if (wd_config_parse_size(v, out) < 0)
        return fail(ld, n, key, "invalid size '%s' (expected bytes, or e.g. 64K, 10M, 1G)", v);
    return 0;
}

int wd__cfg_get_time(loader_t *ld, yaml_node_t *n, const char *key, double *out)
{
    const char *v = wd__cfg_scalar(ld, n, key);
    int rc;

    if (v == NULL)
        return -1;
    rc = parse_time(v, out);
    if (rc == -2)
        return fail(ld, n, key, "must not be negative");
    if (rc < 0)
        return fail(ld, n, key,
                    "invalid time '%s' (expected seconds, or e.g. 50us, 500ms, 30s, 5m)", v);
    return 0;
}

size_t wd__cfg_items(const yaml_node_t *n)
{
    if (n->type == YAML_SEQUENCE_NODE)
        return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    return n->type == YAML_SCALAR_NODE ? 1 : 0;
}

int wd__cfg_each(loader_t *ld, yaml_node_t *n, const char *key, wd__cfg_item_fn fn, void *ctx)
{
    yaml_node_item_t *it;

    if (n->type == YAML_SCALAR_NODE)
        return fn(ld, n, key, ctx);
    for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        if (fn(ld, wd__cfg_node_at(ld, *it), key, ctx) < 0)
            return -1;
    }
    return 0;
}

typedef struct path_list {
    char **paths;
    size_t *count;
} path_list_t;

static int path_item(loader_t *ld, yaml_node_t *n, const char *key, void *ctx)
{
    path_list_t *pl = ctx;

    return wd__cfg_get_path(ld, n, key, &pl->paths[(*pl->count)++]);
}

int wd__cfg_path_list(loader_t *ld, yaml_node_t *n, const char *key, char ***out, size_t *count)
{
    size_t cap = wd__cfg_items(n);
    path_list_t pl;

    if (n->type == YAML_MAPPING_NODE)
        return fail(ld, n, key, "expected a path or a list of paths, got a mapping");
    *out = xcalloc(cap ? cap : 1, sizeof **out);
    pl.paths = *out;
    pl.count = count;
    return wd__cfg_each(ld, n, key, path_item, &pl);
}

int wd__cfg_env_map(loader_t *ld, yaml_node_t *n, const char *key, wd_env_conf_t **out,
                    size_t *count)
{
    yaml_node_pair_t *pair;
    char sub[WD_KEY_MAX];

    if (wd__cfg_is_null(n))
        return 0;
    if (n->type != YAML_MAPPING_NODE)
        return fail(ld, n, key, "expected a mapping of NAME: value, got %s", wd__cfg_node_kind(n));
    if (wd__cfg_check_duplicates(ld, n, key) < 0)
        return -1;
    *out = xcalloc((size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start) + 1,
                   sizeof **out);
    for (pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = wd__cfg_node_at(ld, pair->key), *vn = wd__cfg_node_at(ld, pair->value);
        const char *name = wd__cfg_scalar(ld, kn, key), *value;

        if (name == NULL)
            return -1;
        wd__cfg_key_join(sub, key, name);
        if (name[0] == '\0' || strchr(name, '=') != NULL)
            return fail(ld, kn, sub, "an environment variable name cannot be empty or contain '='");
        value = wd__cfg_scalar_empty_ok(ld, vn, sub, 1);
        if (value == NULL)
            return -1;
        (*out)[*count].name = xstrdup(name);
        (*out)[*count].value = xstrdup(value);
        (*out)[*count].line = (int)kn->start_mark.line + 1;
        (*out)[*count].column = (int)kn->start_mark.column + 1;
        (*count)++;
    }
    return 0;
}

/* YAML 1.1's booleans, which is what an operator who knows YAML (or PyYAML) expects: true/false,
 * yes/no, on/off, in lower, Capitalised or UPPER case. */
int wd__cfg_bool_word(const char *v, int *out)
{
    static const char *const words[][2] = {
        {"true", "false"}, {"True", "False"}, {"TRUE", "FALSE"}, {"yes", "no"}, {"Yes", "No"},
        {"YES", "NO"},     {"on", "off"},     {"On", "Off"},     {"ON", "OFF"},
    };

    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcmp(v, words[i][0]) == 0 || strcmp(v, words[i][1]) == 0) {
            *out = strcmp(v, words[i][0]) == 0;
            return 0;
        }
    }
    return -1;
}

int wd__cfg_get_bool(loader_t *ld, yaml_node_t *n, const char *key, int *out)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    if (wd__cfg_bool_word(v, out) == 0)
        return 0;
    return fail(ld, n, key, "expected true or false, got '%s'", v);
}
