/* The converter's model (see model.h): small owned lists, freed together. */
#include "model.h"
#include "alloc.h"
#include "utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

wd_cv_group_t *wd_cv_group_find(wd_cv_t *cv, const char *name)
{
    /* by the source's name only: "a_b" is not the group "a:b" became */
    for (int i = 0; i < cv->ngroups; i++) {
        const wd_cv_group_t *g = &cv->groups[i];

        if (strcmp(g->src_name != NULL ? g->src_name : g->name, name) == 0)
            return &cv->groups[i];
    }
    return NULL;
}

/* Whether wsgid.yaml has a group of that name already. */
static int name_taken(const wd_cv_t *cv, const char *name)
{
    for (int i = 0; i < cv->ngroups; i++) {
        if (strcmp(cv->groups[i].name, name) == 0)
            return 1;
    }
    return 0;
}

/* wsgid's group names (config_group.c): letters, digits, '_', '.', '-', at most 64. */
#define NAME_MAX_LEN 64

static char *valid_name(const char *name)
{
    size_t n = strlen(name) > NAME_MAX_LEN ? NAME_MAX_LEN : strlen(name);
    char *v = xstrndup(name, n);

    for (char *p = v; *p != '\0'; p++) {
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            *p = '_';
    }
    return v;
}

wd_cv_group_t *wd_cv_group_add(wd_cv_t *cv, const char *name, const char *file, int line)
{
    wd_cv_group_t *g;
    char *base = valid_name(name), *v = xstrdup(base);

    /* two source names may give the same valid one ("a:b", "a_b"): "a_b-2" */
    for (int k = 2; name_taken(cv, v); k++) {
        v = (free(v), xmalloc(NAME_MAX_LEN + 1));
        snprintf(v, NAME_MAX_LEN + 1, "%.*s-%d", NAME_MAX_LEN - 12, base, k);
    }
    free(base);
    cv->groups = xrealloc(cv->groups, sizeof *cv->groups * (size_t)(cv->ngroups + 1));
    g = &cv->groups[cv->ngroups++];
    memset(g, 0, sizeof *g);
    g->name = v;
    g->file = file;
    g->line = line;
    if (strcmp(g->name, name) != 0) {
        g->src_name = xstrdup(name);
        wd_cv_note(cv, file, line,
                   "group %s: named %s in wsgid.yaml (wsgid's group names are at most %d "
                   "letters, digits, '_', '.' and '-')",
                   name, g->name, NAME_MAX_LEN);
    }
    return g;
}

void wd_cv_key_set(wd_cv_list_t *l, const char *key, const char *value, int quote)
{
    for (int i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].key, key) == 0) {
            free(l->v[i].value);
            l->v[i].value = xstrdup(value);
            l->v[i].quote = quote;
            return;
        }
    }
    l->v = xrealloc(l->v, sizeof *l->v * (size_t)(l->n + 1));
    l->v[l->n].key = xstrdup(key);
    l->v[l->n].value = xstrdup(value);
    l->v[l->n++].quote = quote;
}

const char *wd_cv_key_get(const wd_cv_list_t *l, const char *key)
{
    for (int i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].key, key) == 0)
            return l->v[i].value;
    }
    return NULL;
}

void wd_cv_mount_add(wd_cv_group_t *g, const char *prefix, const char *app, const char *app_group,
                     const char *callable)
{
    wd_cv_mount_t *m;

    for (int i = 0; i < g->nmounts; i++) {
        if (strcmp(g->mounts[i].prefix, prefix) == 0)
            return;
    }
    g->mounts = xrealloc(g->mounts, sizeof *g->mounts * (size_t)(g->nmounts + 1));
    m = &g->mounts[g->nmounts++];
    m->prefix = xstrdup(prefix);
    m->app = xstrdup(app);
    m->app_group = dup_or_null(app_group);
    m->callable = dup_or_null(callable);
}

wd_cv_loc_t *wd_cv_loc_find(wd_cv_t *cv, const char *prefix, int match, int vhost)
{
    for (int i = 0; i < cv->nlocs; i++) {
        if (strcmp(cv->locs[i].prefix, prefix) == 0 && cv->locs[i].match == match &&
            cv->locs[i].vhost == vhost)
            return &cv->locs[i];
    }
    return NULL;
}

wd_cv_loc_t *wd_cv_loc_add(wd_cv_t *cv, const char *prefix, int match, int vhost)
{
    wd_cv_loc_t *l = wd_cv_loc_find(cv, prefix, match, vhost);

    if (l != NULL)
        return l;
    cv->locs = xrealloc(cv->locs, sizeof *cv->locs * (size_t)(cv->nlocs + 1));
    l = &cv->locs[cv->nlocs++];
    memset(l, 0, sizeof *l);
    l->prefix = xstrdup(prefix);
    l->match = match;
    l->vhost = vhost;
    return l;
}

int wd_cv_utf8(const char *s)
{
    for (size_t n; *s != '\0'; s += n) {
        if ((n = wd_utf8_len(s)) == 0)
            return 0;
    }
    return 1;
}

void wd_cv_note(wd_cv_t *cv, const char *file, int line, const char *fmt, ...)
{
    char buf[1024], *out, *o;
    va_list ap;
    int n = snprintf(buf, sizeof buf, "%s:%d: ", file, line);

    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof buf) /* a path of 1 KiB fills it: the note is cut */
        vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    /* written into wsgid.yaml's comments, which must be UTF-8 too: a byte that is not, as \xNN */
    o = out = xmalloc(strlen(buf) * 4 + 1);
    for (const char *s = buf; *s != '\0';) {
        size_t k = wd_utf8_len(s);

        if (k == 0) {
            o += sprintf(o, "\\x%02x", (unsigned char)*s++);
        } else {
            memcpy(o, s, k);
            o += k, s += k;
        }
    }
    *o = '\0';
    cv->notes = xrealloc(cv->notes, sizeof *cv->notes * (size_t)(cv->nnotes + 1));
    cv->notes[cv->nnotes++] = out;
}

char *wd_cv_socket(const wd_cv_t *cv, const wd_cv_group_t *g)
{
    char buf[4096];

    if (g->listen != NULL && strncmp(g->listen, "unix:", 5) == 0 && g->listen[5] == '/')
        return xstrdup(g->listen + 5);
    if (g->listen != NULL && strncmp(g->listen, "unix:", 5) == 0)
        snprintf(buf, sizeof buf, "%s/%s", cv->run_dir, g->listen + 5);
    else if (g->listen != NULL)
        return xstrdup(g->listen);
    else
        snprintf(buf, sizeof buf, "%s/%s.sock", cv->run_dir, g->name);
    return xstrdup(buf);
}

char *wd_cv_listen(const wd_cv_t *cv, const char *listen)
{
    char *out;

    if (strncmp(listen, "unix:", 5) != 0)
        return xstrdup(listen);
    out = xmalloc(strlen(cv->run_dir) + strlen(listen) + 2);
    if (listen[5] == '/')
        sprintf(out, "%s", listen);
    else
        sprintf(out, "unix:%s/%s", cv->run_dir, listen + 5);
    return out;
}

char *wd_cv_seconds(const char *s)
{
    char buf[64];
    char *end;
    unsigned long v;

    if (s == NULL || *s < '0' || *s > '9')
        return NULL;
    v = strtoul(s, &end, 10);
    if (*end != '\0' || v > 100000000)
        return NULL;
    snprintf(buf, sizeof buf, "%lus", v);
    return xstrdup(buf);
}

static void free_list(wd_cv_list_t *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].value);
    }
    free(l->v);
}

static void free_group(wd_cv_group_t *g)
{
    free(g->name);
    free(g->src_name);
    free_list(&g->keys);
    free_list(&g->env);
    for (int i = 0; i < g->npython_path; i++)
        free(g->python_path[i]);
    free(g->python_path);
    for (int i = 0; i < g->nmounts; i++) {
        free(g->mounts[i].prefix);
        free(g->mounts[i].app);
        free(g->mounts[i].app_group);
        free(g->mounts[i].callable);
    }
    free(g->mounts);
    free(g->listen);
    for (int i = 0; i < g->nmore_listen; i++)
        free(g->more_listen[i]);
    free(g->more_listen);
    free(g->nginx_timeout);
}

void wd_cv_group_remove(wd_cv_t *cv, int i)
{
    free_group(&cv->groups[i]);
    memmove(&cv->groups[i], &cv->groups[i + 1], sizeof *cv->groups * (size_t)(cv->ngroups - i - 1));
    cv->ngroups--;
}

void wd_cv_free(wd_cv_t *cv)
{
    for (int i = 0; i < cv->ngroups; i++)
        free_group(&cv->groups[i]);
    free(cv->groups);
    for (int i = 0; i < cv->nlocs; i++) {
        free(cv->locs[i].prefix);
        free(cv->locs[i].group);
        free(cv->locs[i].alias);
        free_list(&cv->locs[i].params);
    }
    free(cv->locs);
    for (int i = 0; i < cv->nnotes; i++)
        free(cv->notes[i]);
    free(cv->notes);
    for (int i = 0; i < cv->nservers; i++) {
        free(cv->servers[i].names);
        free(cv->servers[i].listen);
    }
    free(cv->servers);
    free(cv->max_body);
    free(cv->run_dir);
    memset(cv, 0, sizeof *cv);
}
