/* A group's keys: the table that says how to read each (its kind, its range, the README's text
 * for it), the keys that need code of their own (app, listen, mounts, env...), and the checks of
 * a whole group. See config.c. */
#include "config.h"
#include "config_int.h"
#include "alloc.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

/* ---- group keys ------------------------------------------------------------------------- */

int wd__cfg_valid_dotted_name(const char *s)
{
    const char *p;

    if (s[0] == '\0' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (p = s; *p; p++) {
        if (!(*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9')))
            return 0;
        if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
            return 0;
    }
    return 1;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);

    return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

/* `app`: a script path (contains '/' or ends in .py/.wsgi, optionally followed by ":callable"),
 * or "module" / "module:callable". "mysite.wsgi" is Django's module name as well as a script
 * name: without a '/', it is a script only if the file exists. The callable part goes to
 * g->callable, which an explicit `callable` key may not contradict (checked once the whole
 * group is read). */
int wd__cfg_parse_app(loader_t *ld, yaml_node_t *n, const char *key, char **app, int *is_script,
                      char **callable)
{
    const char *v = wd__cfg_scalar(ld, n, key);
    const char *colon;
    size_t len;
    char *path;
    struct stat st;

    if (v == NULL)
        return -1;
    colon = strrchr(v, ':');
    len = colon != NULL ? (size_t)(colon - v) : strlen(v);
    *is_script = memchr(v, '/', len) != NULL || ends_with(v, len, ".py");
    if (!*is_script && ends_with(v, len, ".wsgi")) {
        path = xstrndup(v, len);
        *app = wd__cfg_path_resolve(ld->conf->dir, path);
        *is_script = stat(*app, &st) == 0;
        free(path);
    }
    if (colon != NULL && *is_script && !ends_with(v, len, ".py") && !ends_with(v, len, ".wsgi")) {
        colon = NULL; /* a ':' inside a path, not a callable */
        len = strlen(v);
    }
    if (colon != NULL) {
        if (!wd__cfg_valid_dotted_name(colon + 1))
            return fail(ld, n, key, "invalid callable name '%s'", colon + 1);
        *callable = xstrdup(colon + 1);
    }
    free(*app);
    *app = NULL;
    if (!*is_script) {
        *app = xstrndup(v, len);
        if (!wd__cfg_valid_dotted_name(*app))
            return fail(ld, n, key,
                        "invalid module name '%s' (expected a script path, or "
                        "package.module[:callable])",
                        *app);
        return 0;
    }
    path = xstrndup(v, len);
    *app = wd__cfg_path_resolve(ld->conf->dir, path);
    free(path);
    if (ld->flags & WD_CONFIG_NO_FILE_CHECKS)
        return 0;
    if (stat(*app, &st) < 0)
        return fail(ld, n, key, "%s %s",
                    errno == ENOENT || errno == ENOTDIR ? "no such file" : strerror(errno), *app);
    if (S_ISDIR(st.st_mode))
        return fail(ld, n, key, "%s is a directory, not a script", *app);
    return 0;
}

static int key_app(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    char *callable = NULL;
    int rc = wd__cfg_parse_app(ld, n, key, &g->app, &g->app_is_script, &callable);

    if (callable != NULL) {
        free(g->callable);
        g->callable = callable;
        ld->app_callable = 1;
    }
    return rc;
}

static int key_callable(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    if (!wd__cfg_valid_dotted_name(v))
        return fail(ld, n, key, "invalid callable name '%s'", v);
    return 0; /* stored after the whole group is read: see parse_group() */
}

static int key_processes(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    uint64_t v;

    if (wd__cfg_get_count(ld, n, key, 1, WD_CONFIG_PROCESSES_MAX, &v) < 0)
        return -1;
    g->processes = (int)v;
    g->processes_set = 1;
    return 0;
}

static int key_threads(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    uint64_t v;

    if (wd__cfg_get_count(ld, n, key, 1, 1024, &v) < 0)
        return -1;
    g->threads = (int)v;
    return 0;
}

static int key_display_name(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_get_string(ld, n, key, &g->display_name);
}

static int listen_item(loader_t *ld, yaml_node_t *n, const char *key, void *g)
{
    return wd__cfg_parse_listen_one(ld, n, key, g);
}

static int key_listen(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    size_t count = wd__cfg_items(n);

    if (n->type == YAML_MAPPING_NODE)
        return fail(ld, n, key, "expected an address or a list of addresses, got a mapping");
    if (count == 0)
        return fail(ld, n, key, "at least one address is required");
    g->listen = xcalloc(count, sizeof *g->listen);
    return wd__cfg_each(ld, n, key, listen_item, g);
}

static int key_protocol(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    static const char *const names[] = {"auto", "uwsgi", "http", "fastcgi"};
    const char *v = wd__cfg_scalar(ld, n, key);
    size_t i;

    if (v == NULL)
        return -1;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(v, names[i]) == 0) {
            g->protocol = (wd_protocol_t)i;
            return 0;
        }
    }
    return fail(ld, n, key, "unknown protocol '%s' (expected auto, uwsgi, http or fastcgi)", v);
}

/* Always octal, whether written 0660, "0660", 660 or 0o660: modes are never meant in decimal. */
static int key_socket_mode(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    const char *v = wd__cfg_scalar(ld, n, key);
    const char *p;
    int mode = 0;

    if (v == NULL)
        return -1;
    p = (v[0] == '0' && (v[1] == 'o' || v[1] == 'O')) ? v + 2 : v;
    if (*p == '\0')
        goto bad;
    for (; *p; p++) {
        if (*p < '0' || *p > '7')
            goto bad;
        mode = mode * 8 + (*p - '0');
        if (mode > 07777)
            goto bad;
    }
    /* connecting to a unix socket needs write permission: a mode that gives it to nobody lets
     * root alone in ("0" was taken) */
    if ((mode & 0222) == 0)
        return fail(ld, n, key,
                    "'%s' lets no one but root connect (connecting needs write permission: "
                    "\"0660\" lets the socket's user and socket-group in)",
                    v);
    g->socket_mode = mode;
    return 0;
bad:
    return fail(ld, n, key, "invalid mode '%s' (expected octal, e.g. \"0660\")", v);
}

/* A user or group name must exist on this machine, as nginx -t and apache2 -t check theirs:
 * found at the start (or a reload) only, it had no file and line, and --check passed it. */
static int get_account(loader_t *ld, yaml_node_t *n, const char *key, int is_group, char **out)
{
    if (wd__cfg_get_string(ld, n, key, out) < 0)
        return -1;
    if (ld->flags & WD_CONFIG_NO_FILE_CHECKS)
        return 0;
    if (is_group ? getgrnam(*out) == NULL : getpwnam(*out) == NULL)
        return fail(ld, n, key, "no %s named \"%s\" on this machine", is_group ? "group" : "user",
                    *out);
    return 0;
}

static int key_socket_user(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return get_account(ld, n, key, 0, &g->socket_user);
}

static int key_socket_group(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return get_account(ld, n, key, 1, &g->socket_group);
}

static int key_python_path(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_path_list(ld, n, key, &g->python_path, &g->n_python_path);
}

static int key_python_home(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_get_path(ld, n, key, &g->python_home);
}

static int key_chdir(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_get_dir(ld, n, key, &g->chdir);
}

static int key_access_log_format(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    if (strcmp(v, "combined") != 0 && strcmp(v, "json") != 0)
        return fail(ld, n, key, "'%s': the formats are combined (the default) and json", v);
    g->access_log_json = strcmp(v, "json") == 0;
    return 0;
}

static int key_access_log(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_parse_log_value(ld, n, key, &g->access_log);
}

static int key_env(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_env_map(ld, n, key, &g->env, &g->n_env);
}

static int key_mounts(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_parse_mounts(ld, g, n, key);
}

/* trusted-proxies: [CIDR | unix, ...] (protocol/cidr.h). */
static int proxy_item(loader_t *ld, yaml_node_t *n, const char *key, void *ctx)
{
    wd_group_conf_t *g = ctx;
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    if (wd_cidr_parse(v, &g->trusted_proxies[g->n_trusted_proxies]) < 0)
        return fail(ld, n, key,
                    "'%s' is not an address range: write an IPv4 or IPv6 address with an "
                    "optional /BITS (10.0.0.0/8, 127.0.0.1, ::1, fd00::/8), or unix for the "
                    "peers of a unix socket",
                    v);
    g->n_trusted_proxies++;
    return 0;
}

static int key_trusted_proxies(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    size_t count = wd__cfg_items(n);

    if (n->type == YAML_MAPPING_NODE)
        return fail(ld, n, key, "expected a list of address ranges, got a mapping");
    if (count == 0 || wd__cfg_is_null(n))
        return 0;
    g->trusted_proxies = xcalloc(count, sizeof *g->trusted_proxies);
    return wd__cfg_each(ld, n, key, proxy_item, g);
}

static int key_strip_forwarded(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_get_bool(ld, n, key, &g->strip_forwarded);
}

/* Which family a trusted proxy's word is taken from: the other may come from the client, passed
 * on untouched by a proxy that only sets its own (nginx, Apache, HAProxy and Caddy all pass a
 * client's Forwarded along while they write X-Forwarded-For). */
static int key_forwarded_headers(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    if (strcmp(v, "x-forwarded") != 0 && strcmp(v, "forwarded") != 0)
        return fail(ld, n, key,
                    "'%s': x-forwarded (X-Forwarded-For, -Proto, -Host: the default) or "
                    "forwarded (RFC 7239's Forwarded), whichever your proxy sets",
                    v);
    g->forwarded_rfc7239 = strcmp(v, "forwarded") == 0;
    return 0;
}

static int key_proxy_protocol(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_get_bool(ld, n, key, &g->proxy_protocol);
}

static int key_pin_threads(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    if (v == NULL)
        return -1;
    if (strcmp(v, "auto") == 0) {
        g->pin_threads = WD_PIN_AUTO;
        return 0;
    }
    if (wd__cfg_bool_word(v, &g->pin_threads) == 0)
        return 0;
    return fail(ld, n, key, "expected auto, true or false, got '%s'", v);
}

static int key_application_group(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return wd__cfg_app_group(ld, n, key, &g->application_group);
}

static int key_user(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return get_account(ld, n, key, 0, &g->user);
}

static int key_group(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key)
{
    return get_account(ld, n, key, 1, &g->group);
}

typedef int (*group_key_fn)(loader_t *ld, wd_group_conf_t *g, yaml_node_t *n, const char *key);

enum { K_FN, K_COUNT, K_TIME, K_SIZE };

/* Flags of a numeric key. */
#define R_ZERO_OFF 1 /* 0 is allowed below min: it means "off" */
#define R_UNIT 2     /* a time below a second: the value must say its unit (10us, 1ms) */

typedef struct group_key {
    const char *name;
    int kind;
    group_key_fn fn; /* K_FN */
    size_t off;      /* the others: offset of the field in wd_group_conf_t */
    double min, max; /* K_COUNT, K_TIME (seconds), K_SIZE (bytes) */
    int flags;
    const char *range; /* the range as the README gives it, for the error message */
} group_key_t;

#define GK_FN(n, f)                                                                                \
    {                                                                                              \
        n, K_FN, f, 0, 0, 0, 0, NULL                                                               \
    }
#define GK(n, k, field, lo, hi, fl, text)                                                          \
    {                                                                                              \
        n, k, NULL, offsetof(wd_group_conf_t, field), lo, hi, fl, text                             \
    }

#define DAY 86400.0
#define KIB 1024.0
#define MIB (1024.0 * 1024)
#define GIB (1024.0 * 1024 * 1024)
#define TIB (1024.0 * 1024 * 1024 * 1024)

/* Every numeric key has a range: a value outside it is refused at load, with its line, rather
 * than left to overflow a conversion, divide by zero or exhaust the machine later. The ranges are
 * the README's; tests/unit/test_config.c checks each bound. */
static const group_key_t group_keys[] = {
    GK_FN("app", key_app),
    GK_FN("callable", key_callable),
    GK_FN("processes", key_processes),
    GK_FN("threads", key_threads),
    GK_FN("display-name", key_display_name),
    GK_FN("listen", key_listen),
    GK_FN("protocol", key_protocol),
    GK_FN("socket-mode", key_socket_mode),
    GK_FN("socket-user", key_socket_user),
    GK_FN("socket-group", key_socket_group),
    GK_FN("python-path", key_python_path),
    GK_FN("python-home", key_python_home),
    GK_FN("chdir", key_chdir),
    GK_FN("env", key_env),
    GK_FN("user", key_user),
    GK_FN("group", key_group),
    GK_FN("mounts", key_mounts),
    GK_FN("application-group", key_application_group),
    GK_FN("trusted-proxies", key_trusted_proxies),
    GK_FN("strip-forwarded-headers", key_strip_forwarded),
    GK_FN("proxy-protocol", key_proxy_protocol),
    GK_FN("pin-threads", key_pin_threads),
    GK_FN("forwarded-headers", key_forwarded_headers),
    GK_FN("reload-on-change", wd__cfg_key_reload_on_change),
    GK_FN("watch", wd__cfg_key_watch),
    GK("maximum-requests", K_COUNT, maximum_requests, 0, 1e9, 0, "0..1000000000"),
    GK("maximum-requests-jitter", K_COUNT, maximum_requests_jitter, 0, 1e9, 0, "0..1000000000"),
    GK("max-connections", K_COUNT, max_connections, 1, 1e6, R_ZERO_OFF,
       "0 (from the open-file limit) or 1..1000000"),
    GK("restart-interval", K_TIME, restart_interval, 1, 365 * DAY, R_ZERO_OFF,
       "0 (off) or 1s..365d"),
    GK("inactivity-timeout", K_TIME, inactivity_timeout, 1, 365 * DAY, R_ZERO_OFF,
       "0 (off) or 1s..365d"),
    GK("memory-limit", K_SIZE, memory_limit, 16 * MIB, TIB, R_ZERO_OFF, "0 (off) or 16M..1T"),
    GK("request-timeout", K_TIME, request_timeout, 0.1, 7 * DAY, R_ZERO_OFF,
       "0 (off) or 100ms..7d"),
    GK("deadlock-timeout", K_TIME, deadlock_timeout, 1, DAY, R_ZERO_OFF, "0 (off) or 1s..1d"),
    GK("queue-timeout", K_TIME, queue_timeout, 0.001, 7 * DAY, R_ZERO_OFF, "0 (off) or 1ms..7d"),
    GK("startup-timeout", K_TIME, startup_timeout, 1, DAY, R_ZERO_OFF, "0 (off) or 1s..1d"),
    GK("graceful-timeout", K_TIME, graceful_timeout, 0, DAY, 0, "0..1d"),
    GK("shutdown-timeout", K_TIME, shutdown_timeout, 0, DAY, 0, "0..1d"),
    GK("drain-delay", K_TIME, drain_delay, 0, DAY, 0, "0..1d"),
    GK("readiness-queue-wait", K_TIME, ready_queue_wait, 0.001, DAY, R_ZERO_OFF,
       "0 (off) or 1ms..1d"),
    GK("header-timeout", K_TIME, header_timeout, 0.1, DAY, R_ZERO_OFF, "0 (none) or 100ms..1d"),
    GK("body-timeout", K_TIME, body_timeout, 0.1, DAY, R_ZERO_OFF, "0 (none) or 100ms..1d"),
    GK("keepalive-timeout", K_TIME, keepalive_timeout, 0.1, DAY, R_ZERO_OFF,
       "0 (none) or 100ms..1d"),
    GK("send-timeout", K_TIME, send_timeout, 0.1, DAY, R_ZERO_OFF, "0 (none) or 100ms..1d"),
    GK("busy-poll", K_TIME, busy_poll, 0, 0.001, R_UNIT, "0 (off) or up to 1ms"),
    GK_FN("access-log", key_access_log),
    GK_FN("access-log-format", key_access_log_format),
    GK("limit-request-body", K_SIZE, limit_request_body, 1, TIB, R_ZERO_OFF,
       "0 (unlimited) or 1..1T"),
    GK("header-buffer-size", K_SIZE, header_buffer_size, KIB, MIB, 0, "1K..1M"),
    GK("body-buffer-size", K_SIZE, body_buffer_size, 0, 64 * MIB, 0, "0..64M"),
    GK("body-memory-limit", K_SIZE, body_memory_limit, MIB, TIB, 0, "1M..1T"),
    GK("body-disk-limit", K_SIZE, body_disk_limit, MIB, TIB, 0, "1M..1T"),
    GK("response-buffer-size", K_SIZE, response_buffer_size, 4 * KIB, 256 * MIB, 0, "4K..256M"),
    GK("response-spill-limit", K_SIZE, response_spill_limit, 4 * KIB, TIB, 0, "4K..1T"),
    GK("response-memory-limit", K_SIZE, response_memory_limit, MIB, TIB, 0, "1M..1T"),
    GK("response-disk-limit", K_SIZE, response_disk_limit, MIB, TIB, 0, "1M..1T"),
};

#define N_GROUP_KEYS (sizeof group_keys / sizeof group_keys[0])

static const char *group_key_name(size_t i)
{
    return group_keys[i].name;
}

/* "unknown key 'procesess' (did you mean 'processes'?)", or a hint that the key belongs to
 * another level of the file. */
int wd__cfg_unknown_key(loader_t *ld, yaml_node_t *kn, const char *parent, const char *name,
                        const char *(*cand)(size_t), size_t n_cand)
{
    char key[WD_KEY_MAX];
    const char *best = NULL;
    size_t i, d, best_d = 3;

    wd__cfg_key_join(key, parent, name);
    for (i = 0; i < n_cand; i++) {
        d = wd__cfg_edit_distance(name, cand(i));
        if (d < best_d && d < strlen(name)) {
            best_d = d;
            best = cand(i);
        }
    }
    if (best != NULL)
        return fail(ld, kn, key, "unknown key '%s' (did you mean '%s'?)", name, best);
    if (cand != group_key_name) {
        for (i = 0; i < N_GROUP_KEYS; i++) {
            if (strcmp(name, group_keys[i].name) == 0)
                return fail(ld, kn, key,
                            "unknown key '%s' (it belongs in a group, under "
                            "groups.NAME)",
                            name);
        }
    }
    if (cand != wd__cfg_top_key_name) {
        for (i = 0; i < N_TOP_KEYS; i++) {
            if (strcmp(name, wd__cfg_top_keys[i]) == 0)
                return fail(ld, kn, key, "unknown key '%s' (it belongs at the top level)", name);
        }
    }
    return fail(ld, kn, key, "unknown key '%s'", name);
}

/* Keys must be plain strings, and none may appear twice (libyaml keeps both silently). The
 * keys are sorted to find a second one (compared pairwise, 100,000 keys took billions of
 * strcmp in the master's loop at a reload); the error is the one a reading in order meets
 * first: the earliest key that is not a name or repeats one before it. */
typedef struct {
    const char *name;
    size_t at;
} key_at_t;

static int key_at_cmp(const void *a, const void *b)
{
    const key_at_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c != 0 ? c : (x->at > y->at) - (x->at < y->at);
}

int wd__cfg_check_duplicates(loader_t *ld, yaml_node_t *map, const char *parent)
{
    yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    size_t n = (size_t)(map->data.mapping.pairs.top - pairs), n_names = 0, i, e, dup = n;
    size_t first = 0;
    key_at_t *keys = xcalloc(n + 1, sizeof *keys);
    char key[WD_KEY_MAX];
    yaml_node_t *k, *kb;

    for (i = 0; i < n; i++) {
        k = wd__cfg_node_at(ld, pairs[i].key);
        if (k->type != YAML_SCALAR_NODE || wd__cfg_is_null(k))
            break; /* nothing after it counts */
        keys[n_names].name = (const char *)k->data.scalar.value;
        keys[n_names].at = i;
        n_names++;
    }
    qsort(keys, n_names, sizeof *keys, key_at_cmp);
    for (i = 0; i < n_names; i = e) { /* a run of one name, in the order written */
        for (e = i + 1; e < n_names && strcmp(keys[e].name, keys[i].name) == 0; e++)
            ;
        if (e - i >= 2 && keys[i + 1].at < dup) {
            dup = keys[i + 1].at;
            first = keys[i].at;
        }
    }
    free(keys);
    if (dup < n) {
        k = wd__cfg_node_at(ld, pairs[dup].key);
        kb = wd__cfg_node_at(ld, pairs[first].key);
        wd__cfg_key_join(key, parent, (char *)k->data.scalar.value);
        return fail(ld, k, key, "duplicate key (first given at line %zu, column %zu)",
                    kb->start_mark.line + 1, kb->start_mark.column + 1);
    }
    if (n_names < n) {
        k = wd__cfg_node_at(ld, pairs[n_names].key);
        return fail(ld, k, parent, "keys must be names, not %s",
                    k->type == YAML_SCALAR_NODE ? "empty" : wd__cfg_node_kind(k));
    }
    return 0;
}

void wd_config_group_numbers(FILE *f, const wd_group_conf_t *g)
{
    for (size_t i = 0; i < N_GROUP_KEYS; i++) {
        const group_key_t *k = &group_keys[i];
        const char *field = (const char *)g + k->off;

        if (k->kind == K_TIME)
            fprintf(f, "%s %a\n", k->name, *(const double *)(const void *)field);
        else if (k->kind != K_FN)
            fprintf(f, "%s %llu\n", k->name,
                    (unsigned long long)*(const uint64_t *)(const void *)field);
    }
}

/* "10" for a key whose values are below a second is most likely a mistake: 10 seconds where
 * 10 microseconds were meant (busy-poll: ten seconds of spinning after every burst). */
static int bare_number(const char *v)
{
    for (; *v; v++)
        if (!((*v >= '0' && *v <= '9') || *v == '.'))
            return 0;
    return 1;
}

static int out_of_range(loader_t *ld, const group_key_t *k, yaml_node_t *n, const char *key,
                        double x)
{
    if (x == 0 && (k->flags & R_ZERO_OFF))
        return 0;
    if (x >= k->min && x <= k->max)
        return 0;
    return fail(ld, n, key, "'%s' is out of range (%s)", (const char *)n->data.scalar.value,
                k->range);
}

static int group_key_value(loader_t *ld, wd_group_conf_t *g, const group_key_t *k, yaml_node_t *n,
                           const char *key)
{
    char *field = (char *)g + k->off;
    uint64_t u = 0;
    double d = 0;

    switch (k->kind) {
    case K_FN:
        return k->fn(ld, g, n, key);
    case K_COUNT:
        if (wd__cfg_get_count(ld, n, key, 0, UINT64_MAX, &u) < 0 ||
            out_of_range(ld, k, n, key, (double)u))
            return -1;
        *(uint64_t *)(void *)field = u;
        return 0;
    case K_TIME:
        if (wd__cfg_get_time(ld, n, key, &d) < 0)
            return -1;
        if ((k->flags & R_UNIT) && d != 0 && bare_number((const char *)n->data.scalar.value))
            return fail(ld, n, key, "'%s' has no unit: write it as e.g. 10us or 1ms (%s)",
                        (const char *)n->data.scalar.value, k->range);
        if (out_of_range(ld, k, n, key, d) < 0)
            return -1;
        *(double *)(void *)field = d;
        return 0;
    default:
        if (wd__cfg_get_size(ld, n, key, &u) < 0 || out_of_range(ld, k, n, key, (double)u))
            return -1;
        *(uint64_t *)(void *)field = u;
        return 0;
    }
}

static void group_defaults(wd_group_conf_t *g)
{
    g->callable = xstrdup("application");
    g->processes = 1;
    g->threads = 15;
    g->display_name = xstrdup("%{GROUP}");
    g->protocol = WD_PROTOCOL_AUTO;
    g->socket_mode = 0660;
    g->request_timeout = 60;
    g->deadlock_timeout = 60;
    g->queue_timeout = 45;
    g->startup_timeout = 15;
    g->graceful_timeout = 15;
    g->shutdown_timeout = 5;
    g->drain_delay = 10;
    g->ready_queue_wait = 10;
    g->header_timeout = 30;
    g->body_timeout = 60;
    g->keepalive_timeout = 75;
    g->send_timeout = 60;
    g->busy_poll = 10e-6;
    g->pin_threads = WD_PIN_AUTO;
    g->limit_request_body = 10ull << 20;
    g->header_buffer_size = 64ull << 10;
    g->body_buffer_size = 1ull << 20;
    g->body_memory_limit = 64ull << 20;
    g->body_disk_limit = 1ull << 30;
    g->response_buffer_size = 1ull << 20;
    g->response_spill_limit = 1ull << 30;
    g->response_memory_limit = 64ull << 20;
    g->response_disk_limit = 1ull << 30;
}

static int key_index(const char *name)
{
    size_t i;

    for (i = 0; i < N_GROUP_KEYS; i++) {
        if (strcmp(group_keys[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

/* A group without `listen` gets a unix socket of its own, as mod_wsgi's daemon processes do
 * (WSGISocketPrefix): GROUP.sock in systemd's RuntimeDirectory= when wsgid runs under it, else
 * beside the config file. The log names it at start; nginx's uwsgi_pass points there. */
static int default_listen(loader_t *ld, wd_group_conf_t *g, yaml_node_t *kn, const char *gkey)
{
    const char *rt = getenv("RUNTIME_DIRECTORY"); /* may list several, ':'-separated */
    char dir[PATH_MAX], key[WD_KEY_MAX];
    wd_listen_conf_t *l;

    if (rt != NULL && rt[0] == '/')
        snprintf(dir, sizeof dir, "%.*s", (int)strcspn(rt, ":"), rt);
    else
        snprintf(dir, sizeof dir, "%s", ld->conf->dir);
    g->listen = xcalloc(1, sizeof *g->listen);
    l = &g->listen[g->n_listen++];
    l->is_unix = 1;
    if (asprintf(&l->path, "%s/%s.sock", dir, g->name) < 0 ||
        asprintf(&l->spec, "unix:%s", l->path) < 0)
        wd_out_of_memory();
    l->real = wd__cfg_unix_real(l->path);
    wd__cfg_key_join(key, gkey, "listen");
    if (strlen(l->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return fail(ld, kn, key,
                    "no listen given, and the default socket path is too long (%zu bytes, at "
                    "most %zu): %s; give `listen: unix:PATH` or HOST:PORT",
                    strlen(l->path), sizeof(((struct sockaddr_un *)0)->sun_path) - 1, l->path);
    return wd__cfg_check_listen_unique(ld, kn, key, g, l);
}

/* Checks that need the whole group: required keys and values that depend on each other. */
static int check_group(loader_t *ld, wd_group_conf_t *g, yaml_node_t *kn, yaml_node_t **seen,
                       const char *gkey)
{
    char key[WD_KEY_MAX];
    yaml_node_t *n;

    if (seen[key_index("app")] == NULL && g->n_mounts == 0) {
        wd__cfg_key_join(key, gkey, "app");
        return fail(ld, kn, key,
                    "required key is missing (a script path or module:callable, or `mounts:`)");
    }
    if (seen[key_index("listen")] == NULL && default_listen(ld, g, kn, gkey) < 0)
        return -1;
    if (g->application_group == NULL)
        g->application_group = xstrdup(WD_APP_GROUP_GLOBAL);
    if (g->proxy_protocol && g->n_trusted_proxies == 0) {
        wd__cfg_key_join(key, gkey, "proxy-protocol");
        return fail(ld, seen[key_index("proxy-protocol")], key,
                    "a PROXY header is believed only from trusted peers: list the load "
                    "balancers in trusted-proxies (e.g. [10.0.0.0/8] or [unix])");
    }
    if (wd__cfg_check_app_names(ld, g, seen[key_index("app")], seen[key_index("application-group")],
                                gkey) < 0 ||
        wd__cfg_check_app_groups(ld, g, gkey) < 0)
        return -1;
    n = seen[key_index("callable")];
    if (n != NULL) {
        const char *v = (const char *)n->data.scalar.value;

        wd__cfg_key_join(key, gkey, "callable");
        if (ld->app_callable && strcmp(g->callable, v) != 0)
            return fail(ld, n, key, "'%s' conflicts with the ':%s' given in app", v, g->callable);
        free(g->callable);
        g->callable = xstrdup(v);
    }
    if (g->response_spill_limit < g->response_buffer_size) {
        n = seen[key_index("response-spill-limit")];
        wd__cfg_key_join(key, gkey, n != NULL ? "response-spill-limit" : "response-buffer-size");
        if (n == NULL)
            n = seen[key_index("response-buffer-size")];
        return fail(ld, n, key,
                    "response-spill-limit (%" PRIu64 ") is smaller than "
                    "response-buffer-size (%" PRIu64 ")",
                    g->response_spill_limit, g->response_buffer_size);
    }
    return wd__cfg_check_reload(ld, g, seen[key_index("reload-on-change")],
                                seen[key_index("watch")], gkey);
}

static int valid_group_name(const char *s)
{
    for (; *s; s++) {
        if (!(*s == '_' || *s == '.' || *s == '-' || (*s >= 'a' && *s <= 'z') ||
              (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return 0;
    }
    return 1;
}

static int parse_group(loader_t *ld, yaml_node_t *kn, yaml_node_t *gn)
{
    yaml_node_t *seen[N_GROUP_KEYS] = {0};
    char gkey[WD_KEY_MAX], key[WD_KEY_MAX];
    yaml_node_pair_t *pair;
    wd_group_conf_t *g;
    const char *name = wd__cfg_scalar(ld, kn, "groups");
    int i;

    if (name == NULL)
        return -1;
    wd__cfg_key_join(gkey, "groups", name);
    if (!valid_group_name(name))
        return fail(ld, kn, gkey, "invalid group name (use letters, digits, '_', '.', '-')");
    if (strlen(name) > 64)
        return fail(ld, kn, gkey, "group name too long (at most 64 characters)");
    if (gn->type != YAML_MAPPING_NODE)
        return fail(ld, wd__cfg_is_null(gn) ? kn : gn, gkey,
                    "expected a mapping of group settings, got %s",
                    wd__cfg_is_null(gn) ? "nothing" : wd__cfg_node_kind(gn));
    g = &ld->conf->groups[ld->conf->n_groups++];
    ld->app_callable = 0;
    g->name = xstrdup(name);
    g->line = (int)kn->start_mark.line + 1;
    group_defaults(g);
    if (wd__cfg_check_duplicates(ld, gn, gkey) < 0)
        return -1;
    for (pair = gn->data.mapping.pairs.start; pair < gn->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = wd__cfg_node_at(ld, pair->key), *v = wd__cfg_node_at(ld, pair->value);
        const char *kname = (const char *)k->data.scalar.value;

        i = key_index(kname);
        if (i < 0)
            return wd__cfg_unknown_key(ld, k, gkey, kname, group_key_name, N_GROUP_KEYS);
        wd__cfg_key_join(key, gkey, kname);
        seen[i] = v;
        if (group_key_value(ld, g, &group_keys[i], v, key) < 0)
            return -1;
    }
    return check_group(ld, g, kn, seen, gkey);
}

int wd__cfg_parse_groups(loader_t *ld, yaml_node_t *n)
{
    yaml_node_pair_t *pair;
    size_t count;

    if (n->type != YAML_MAPPING_NODE)
        return fail(ld, n, "groups",
                    "expected a mapping of NAME: {app: ..., listen: ...}, "
                    "got %s",
                    wd__cfg_is_null(n) ? "nothing" : wd__cfg_node_kind(n));
    if (wd__cfg_check_duplicates(ld, n, "groups") < 0)
        return -1;
    count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count == 0)
        return fail(ld, n, "groups", "at least one group is required");
    ld->conf->groups = xcalloc(count, sizeof *ld->conf->groups);
    for (pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top; pair++) {
        if (parse_group(ld, wd__cfg_node_at(ld, pair->key), wd__cfg_node_at(ld, pair->value)) < 0)
            return -1;
    }
    return 0;
}
