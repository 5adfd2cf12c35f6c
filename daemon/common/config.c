/* The YAML configuration: see config.h.
 *
 * The file is loaded with libyaml's document API into a node graph, then walked once. Every key
 * of every mapping is looked up in a table that says how to read its value; every error is
 * written once, as "FILE:LINE:COL: KEY: what is wrong", and makes the loader unwind. The
 * structure being built is always in a state wd_config_free() can release, so the unwinding is
 * a single call. The loader's files share config_int.h, which lists them; this one has the file,
 * its top level and freeing. */
#include "config.h"
#include "config_int.h"
#include "alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

/* ---- top level -------------------------------------------------------------------------- */

int wd__cfg_parse_log_value(loader_t *ld, yaml_node_t *n, const char *key, char **out)
{
    const char *v = wd__cfg_scalar(ld, n, key);

    int b;

    if (v == NULL)
        return -1;
    /* a plain YAML boolean: false, no, off (any case) turn the log off, as "off" does (`false`
     * wrote the log into a file named "false"); true has no meaning here */
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && wd__cfg_bool_word(v, &b) == 0) {
        if (b)
            return fail(ld, n, key,
                        "expected off, - (standard error) or a file, got '%s' (a file of that "
                        "name: quote it)",
                        v);
        v = "off";
    }
    free(*out);
    if (strcmp(v, "-") == 0 || strcmp(v, "off") == 0)
        *out = xstrdup(v);
    else
        *out = wd__cfg_path_resolve(ld->conf->dir, v);
    return 0;
}

static int parse_log(loader_t *ld, yaml_node_t *n)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    yaml_node_pair_t *pair;
    char key[WD_KEY_MAX];
    const char *v;
    size_t i;

    if (wd__cfg_is_null(n))
        return 0;
    if (n->type != YAML_MAPPING_NODE)
        return fail(ld, n, "log", "expected a mapping (level, file, access), got %s",
                    wd__cfg_node_kind(n));
    if (wd__cfg_check_duplicates(ld, n, "log") < 0)
        return -1;
    for (pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = wd__cfg_node_at(ld, pair->key), *val = wd__cfg_node_at(ld, pair->value);
        const char *kname = (const char *)k->data.scalar.value;

        wd__cfg_key_join(key, "log", kname);
        if (strcmp(kname, "file") == 0) {
            if (wd__cfg_parse_log_value(ld, val, key, &ld->conf->log_file) < 0)
                return -1;
        } else if (strcmp(kname, "access") == 0) {
            if (wd__cfg_parse_log_value(ld, val, key, &ld->conf->access_log) < 0)
                return -1;
        } else if (strcmp(kname, "level") == 0) {
            if ((v = wd__cfg_scalar(ld, val, key)) == NULL)
                return -1;
            for (i = 0; i < 4 && strcmp(v, levels[i]) != 0; i++)
                ;
            if (i == 4 && strcmp(v, "warning") == 0)
                i = WD_LOG_WARN;
            if (i == 4)
                return fail(ld, val, key,
                            "unknown level '%s' (expected error, warn, info or "
                            "debug)",
                            v);
            ld->conf->log_level = (wd_log_level_t)i;
        } else {
            return wd__cfg_unknown_key(ld, k, "log", kname, wd__cfg_log_key_name, N_LOG_KEYS);
        }
    }
    return 0;
}

/* A master listener's HOST:PORT (metrics, agent-check): *text "HOST:PORT" ("[::1]:PORT"). */
static int parse_tcp_key(loader_t *ld, yaml_node_t *n, const char *key, char **text, char **host,
                         int *port)
{
    const char *v = wd__cfg_scalar(ld, n, key);
    char *h = NULL;
    size_t len;

    if (v == NULL)
        return -1;
    if (strncmp(v, "unix:", 5) == 0)
        return fail(ld, n, key, "expected HOST:PORT (it is served over TCP)");
    if (wd__cfg_parse_tcp(ld, n, key, v, &h, port) < 0)
        return -1;
    free(*text);
    free(*host);
    len = strlen(h) + 16;
    *text = xmalloc(len);
    snprintf(*text, len, strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, *port);
    *host = h;
    return 0;
}

/* control: PATH, the master's unix socket. A path too long for one passed --check, and the start
 * failed saying neither the file nor the line (helper-72). */
static int parse_control(loader_t *ld, yaml_node_t *n, const char *key)
{
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

    if (wd__cfg_get_path(ld, n, key, &ld->conf->control) < 0)
        return -1;
    ld->control = n;
    if (strlen(ld->conf->control) > max)
        return fail(ld, n, key,
                    "unix socket path too long (%zu bytes, at most %zu): %s; give a shorter one "
                    "(relative paths are relative to the file's directory)",
                    strlen(ld->conf->control), max, ld->conf->control);
    return 0;
}

/* Checks across the whole file, once everything is read. */
static int check_conf(loader_t *ld)
{
    wd_config_t *conf = ld->conf;
    wd_listen_conf_t m = {0}, a = {0}, h = {0};
    char *control = conf->control != NULL ? wd__cfg_unix_real(conf->control) : NULL;
    size_t i, j;
    int rc = 0;

    m.host = conf->metrics_host;
    m.port = conf->metrics_port;
    m.dual = 1;
    a.host = conf->agent_host;
    a.port = conf->agent_port;
    a.dual = 1;
    h.host = conf->health_host;
    h.port = conf->health_port;
    h.dual = 1;
    if (ld->agent != NULL && ld->metrics != NULL && wd_config_listen_same(&a, &m))
        rc = fail(ld, ld->agent, "agent-check", "'%s' is also the metrics address",
                  conf->agent_check);
    else if (ld->health != NULL && ld->agent != NULL && wd_config_listen_same(&h, &a))
        rc = fail(ld, ld->health, "health", "'%s' is also the agent-check address", conf->health);
    else if (ld->health != NULL && ld->metrics != NULL && wd_config_listen_same(&h, &m)) {
        /* shared with metrics: its listener serves /livez and /readyz already */
        if (strcmp(conf->health_host, conf->metrics_host) != 0)
            rc = fail(ld, ld->health, "health",
                      "'%s' overlaps the metrics address '%s': give the same address to "
                      "share its listener, or another port",
                      conf->health, conf->metrics);
        conf->health_port = 0;
    }
    for (i = 0; i < conf->n_groups && rc == 0; i++) {
        for (j = 0; j < conf->groups[i].n_listen && rc == 0; j++) {
            const wd_listen_conf_t *l = &conf->groups[i].listen[j];

            if (ld->control != NULL && l->is_unix && strcmp(l->real, control) == 0)
                rc = fail(ld, ld->control, "control", "%s is also a listen socket of group '%s'%s",
                          conf->control, conf->groups[i].name,
                          strcmp(l->path, conf->control) != 0 ? " (through a symbolic link)" : "");
            else if (ld->metrics != NULL && wd_config_listen_same(l, &m))
                rc = fail(ld, ld->metrics, "metrics", "'%s' is also a listen address of group '%s'",
                          conf->metrics, conf->groups[i].name);
            else if (ld->agent != NULL && wd_config_listen_same(l, &a))
                rc = fail(ld, ld->agent, "agent-check",
                          "'%s' is also a listen address of group '%s'", conf->agent_check,
                          conf->groups[i].name);
            else if (ld->health != NULL && wd_config_listen_same(l, &h))
                rc = fail(ld, ld->health, "health", "'%s' is also a listen address of group '%s'",
                          conf->health, conf->groups[i].name);
        }
    }
    free(control);
    return rc;
}

static int parse_top(loader_t *ld, yaml_node_t *root)
{
    yaml_node_pair_t *pair;
    yaml_node_t *groups = NULL;

    if (root->type != YAML_MAPPING_NODE)
        return fail(ld, root, NULL,
                    "expected a mapping of keys (control, log, groups...) at the "
                    "top level, got %s",
                    wd__cfg_node_kind(root));
    if (wd__cfg_check_duplicates(ld, root, NULL) < 0)
        return -1;
    for (pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = wd__cfg_node_at(ld, pair->key), *v = wd__cfg_node_at(ld, pair->value);
        const char *kname = (const char *)k->data.scalar.value;
        int rc;

        if (strcmp(kname, "control") == 0) {
            rc = parse_control(ld, v, kname);
        } else if (strcmp(kname, "pidfile") == 0) {
            rc = wd__cfg_get_path(ld, v, kname, &ld->conf->pidfile);
        } else if (strcmp(kname, "log") == 0) {
            rc = parse_log(ld, v);
        } else if (strcmp(kname, "metrics") == 0) {
            rc = parse_tcp_key(ld, v, kname, &ld->conf->metrics, &ld->conf->metrics_host,
                               &ld->conf->metrics_port);
            ld->metrics = v;
        } else if (strcmp(kname, "agent-check") == 0) {
            rc = parse_tcp_key(ld, v, kname, &ld->conf->agent_check, &ld->conf->agent_host,
                               &ld->conf->agent_port);
            ld->agent = v;
        } else if (strcmp(kname, "health") == 0) {
            rc = parse_tcp_key(ld, v, kname, &ld->conf->health, &ld->conf->health_host,
                               &ld->conf->health_port);
            ld->health = v;
        } else if (strcmp(kname, "groups") == 0) {
            groups = v;
            rc = 0; /* read last, so that listen checks see the whole file in order */
        } else {
            rc = wd__cfg_unknown_key(ld, k, NULL, kname, wd__cfg_top_key_name, N_TOP_KEYS);
        }
        if (rc < 0)
            return -1;
    }
    if (groups == NULL)
        return fail(ld, root, "groups", "required key is missing (at least one group)");
    if (wd__cfg_parse_groups(ld, groups) < 0)
        return -1;
    return check_conf(ld);
}

/* libyaml's reader errors carry a byte offset, not a line. */
static void offset_to_mark(const char *text, size_t len, size_t off, size_t *line, size_t *col)
{
    size_t i;

    *line = 1;
    *col = 1;
    for (i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int syntax_error(loader_t *ld, yaml_parser_t *parser, const char *text, size_t len)
{
    size_t line, col;
    const char *problem = parser->problem != NULL ? parser->problem : "unknown error";

    if (parser->error == YAML_READER_ERROR) {
        offset_to_mark(text, len, parser->problem_offset, &line, &col);
        return wd__cfg_fail_at(ld, line, col, NULL, "YAML error: %s", problem);
    }
    if (parser->error == YAML_MEMORY_ERROR)
        abort();
    line = parser->problem_mark.line + 1;
    col = parser->problem_mark.column + 1;
    if (parser->context != NULL)
        return wd__cfg_fail_at(ld, line, col, NULL, "YAML error: %s %s (line %zu, column %zu)",
                               problem, parser->context, parser->context_mark.line + 1,
                               parser->context_mark.column + 1);
    return wd__cfg_fail_at(ld, line, col, NULL, "YAML error: %s", problem);
}

int wd_config_load_string(wd_config_t *conf, const char *text, size_t len, const char *path,
                          char *err, size_t errlen)
{
    return wd_config_load_string_flags(conf, text, len, path, 0, err, errlen);
}

int wd_config_load_string_flags(wd_config_t *conf, const char *text, size_t len, const char *path,
                                int flags, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    yaml_node_t *root;
    loader_t ld = {.conf = conf,
                   .file = path != NULL ? path : "<config>",
                   .err = err,
                   .errlen = errlen,
                   .flags = flags};
    int parser_ok = 0, doc_ok = 0, rc = -1;

    memset(conf, 0, sizeof *conf);
    if (err == NULL)
        errlen = 0; /* snprintf(NULL, 0, ...) is allowed: the caller wants no message */
    if (errlen > 0)
        err[0] = '\0';
    if (wd__cfg_set_file_path(conf, path) < 0) {
        snprintf(err, errlen, "%s: cannot resolve the path: %s", ld.file, strerror(errno));
        goto done;
    }
    conf->log_level = WD_LOG_INFO;
    conf->log_file = xstrdup("-");
    conf->access_log = xstrdup("-");
    if (!yaml_parser_initialize(&parser))
        abort();
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (wd__cfg_check_shape(&ld, text, len) < 0)
        goto done;
    if (!yaml_parser_load(&parser, &ld.doc)) {
        syntax_error(&ld, &parser, text, len);
        goto done;
    }
    doc_ok = 1;
    root = yaml_document_get_root_node(&ld.doc);
    if (root == NULL) {
        wd__cfg_fail_at(&ld, 1, 1, NULL, "the file is empty (groups: is required)");
        goto done;
    }
    /* A second document would be silently ignored: say so instead. */
    if (!yaml_parser_load(&parser, &extra)) {
        syntax_error(&ld, &parser, text, len);
        goto done;
    }
    if (yaml_document_get_root_node(&extra) != NULL) {
        wd__cfg_fail_at(&ld, extra.start_mark.line + 1, extra.start_mark.column + 1, NULL,
                        "only one YAML document is expected in the file");
        yaml_document_delete(&extra);
        goto done;
    }
    yaml_document_delete(&extra);
    rc = parse_top(&ld, root);
done:
    wd__cfg_listen_index_free(&ld);
    if (doc_ok)
        yaml_document_delete(&ld.doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    if (rc < 0)
        wd_config_free(conf);
    return rc;
}

int wd_config_load_file(wd_config_t *conf, const char *path, char **text_out, size_t *len_out,
                        char *err, size_t errlen)
{
    return wd_config_load_file_flags(conf, path, 0, text_out, len_out, err, errlen);
}

int wd_config_load_file_flags(wd_config_t *conf, const char *path, int flags, char **text_out,
                              size_t *len_out, char *err, size_t errlen)
{
    FILE *f = NULL;
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    int rc = -1;

    memset(conf, 0, sizeof *conf);
    if (err == NULL)
        errlen = 0;
    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            text = realloc(text, cap + 1);
            if (text == NULL)
                abort();
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
        if (len > WD_CONFIG_MAX_FILE) {
            snprintf(err, errlen, "%s: too big for a configuration file", path);
            goto done;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    text[len] = '\0';
    rc = wd_config_load_string_flags(conf, text, len, path, flags, err, errlen);
    if (rc == 0 && text_out != NULL) {
        *text_out = text;
        text = NULL;
        if (len_out != NULL)
            *len_out = len;
    }
done:
    if (f != NULL)
        fclose(f);
    free(text);
    return rc;
}

static void free_paths(char **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i]);
    free(p);
}

static void free_env(wd_env_conf_t *env, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(env[i].name);
        free(env[i].value);
    }
    free(env);
}

static void group_free(wd_group_conf_t *g)
{
    size_t i;

    free(g->name);
    free(g->app);
    free(g->callable);
    free(g->display_name);
    for (i = 0; i < g->n_listen; i++) {
        free(g->listen[i].spec);
        free(g->listen[i].path);
        free(g->listen[i].real);
        free(g->listen[i].host);
    }
    free(g->listen);
    free(g->socket_user);
    free(g->socket_group);
    free_paths(g->python_path, g->n_python_path);
    free(g->python_home);
    free(g->chdir);
    free(g->access_log);
    free_env(g->env, g->n_env);
    for (i = 0; i < g->n_mounts; i++) {
        wd_mount_conf_t *m = &g->mounts[i];

        free(m->prefix);
        free(m->app);
        free(m->callable);
        free(m->application_group);
        free_paths(m->python_path, m->n_python_path);
        free_env(m->env, m->n_env);
        free(m->chdir);
    }
    free(g->mounts);
    free(g->application_group);
    free(g->trusted_proxies);
    for (i = 0; i < g->n_watch; i++)
        free(g->watch[i]);
    free(g->watch);
    free(g->user);
    free(g->group);
}

void wd_config_free(wd_config_t *conf)
{
    size_t i;

    if (conf == NULL)
        return;
    for (i = 0; i < conf->n_groups; i++)
        group_free(&conf->groups[i]);
    free(conf->groups);
    free(conf->path);
    free(conf->dir);
    free(conf->control);
    free(conf->pidfile);
    free(conf->log_file);
    free(conf->access_log);
    free(conf->metrics);
    free(conf->metrics_host);
    free(conf->agent_check);
    free(conf->health);
    free(conf->health_host);
    free(conf->agent_host);
    memset(conf, 0, sizeof *conf);
}

const wd_group_conf_t *wd_config_group(const wd_config_t *conf, const char *name)
{
    size_t i;

    for (i = 0; i < conf->n_groups; i++) {
        if (strcmp(conf->groups[i].name, name) == 0)
            return &conf->groups[i];
    }
    return NULL;
}

int wd_config_worker_index(const wd_config_t *conf, const wd_group_conf_t *g, int slot,
                           int *workers)
{
    int index = slot - 1, before = 1;

    *workers = 0;
    for (size_t i = 0; i < conf->n_groups; i++) {
        if (&conf->groups[i] == g)
            before = 0;
        else if (before)
            index += conf->groups[i].processes;
        *workers += conf->groups[i].processes;
    }
    return index;
}
