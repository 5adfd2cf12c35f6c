/* Listen addresses in the configuration: "unix:PATH", "HOST:PORT", "[V6]:PORT", ":PORT", and
 * the check that no address is bound twice in the file. See config.c. */
#include "config.h"
#include "config_int.h"
#include "alloc.h"

#include <stdint.h>
#include <string.h>
#include <sys/un.h>
#include <yaml.h>

/* "HOST:PORT", "[V6]:PORT", ":PORT" / "*:PORT" (all IPv4 addresses). */
int wd__cfg_parse_tcp(loader_t *ld, yaml_node_t *n, const char *key, const char *v, char **host,
                      int *port)
{
    const char *colon, *h = v, *end;
    size_t hl;
    uint64_t p;

    if (v[0] == '[') {
        const char *close = strchr(v, ']');

        if (close == NULL || close[1] != ':')
            return fail(ld, n, key, "invalid address '%s' (expected [IPV6]:PORT)", v);
        h = v + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
        if (hl == 0)
            return fail(ld, n, key, "invalid address '%s': empty IPv6 host", v);
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL)
            return fail(ld, n, key, "invalid address '%s' (expected unix:PATH or HOST:PORT)", v);
        hl = (size_t)(colon - v);
        if (memchr(v, ':', hl) != NULL)
            return fail(ld, n, key, "invalid address '%s' (write IPv6 addresses as [ADDR]:PORT)",
                        v);
    }
    if (wd__cfg_parse_uint(colon + 1, &end, &p) < 0 || *end != '\0' || p < 1 || p > 65535)
        return fail(ld, n, key, "invalid port in '%s' (expected 1..65535)", v);
    if (hl == 0 || (hl == 1 && h[0] == '*'))
        *host = xstrdup("0.0.0.0");
    else
        *host = xstrndup(h, hl);
    *port = (int)p;
    return 0;
}

/* Whether binding a would take b's address too. A group's IPv6 sockets are IPv6-only
 * (listen.c), so "::" takes every IPv6 address and "0.0.0.0" every IPv4 one (and names):
 * "0.0.0.0:80" with "[::]:80" serves both families (it was refused as "listed twice", while
 * "[::]:80" alone answered on IPv6 only). The metrics and agent listeners, one address each,
 * are dual-stack on "::" (dual). */
static int covers(const wd_listen_conf_t *a, const wd_listen_conf_t *b)
{
    return (strcmp(a->host, "::") == 0 && (a->dual || strchr(b->host, ':') != NULL)) ||
           (strcmp(a->host, "0.0.0.0") == 0 && strchr(b->host, ':') == NULL);
}

int wd_config_listen_same(const wd_listen_conf_t *a, const wd_listen_conf_t *b)
{
    if (a->is_unix != b->is_unix)
        return 0;
    if (a->is_unix)
        return strcmp(a->path, b->path) == 0;
    return a->port == b->port && (strcmp(a->host, b->host) == 0 || covers(a, b) || covers(b, a));
}

/* The addresses checked so far, by what two same addresses share: a unix path, or a TCP port
 * (a wildcard host takes the port's other hosts). Each new one is compared with those of its
 * path or port only: comparing it with every one before took 5.3 s for 40,000 groups. */
typedef struct {
    const wd_listen_conf_t *l;
    const wd_group_conf_t *g;
    long prev; /* the one before it of its port, or -1 */
} listen_seen_t;

struct wd_listen_index {
    listen_seen_t *seen;
    size_t n, cap;
    long last_of_port[65536]; /* 1 + the latest of each port, or 0 */
    wd__cfg_strset_t paths;   /* unix path -> its index in seen */
};

/* A listen address must not be used twice in the file: two binds of one address fail at
 * start-up, far from the line that caused it. Of several it clashes with, the first in the file
 * is named. */
int wd__cfg_check_listen_unique(loader_t *ld, yaml_node_t *n, const char *key,
                                const wd_group_conf_t *g, const wd_listen_conf_t *l)
{
    struct wd_listen_index *x = ld->listens;
    const listen_seen_t *clash = NULL;
    long i;

    if (x == NULL)
        x = ld->listens = xcalloc(1, sizeof *x);
    if (l->is_unix) {
        i = wd__cfg_strset_find(&x->paths, l->path);
        clash = i >= 0 ? &x->seen[i] : NULL;
    } else {
        for (i = x->last_of_port[l->port] - 1; i >= 0; i = x->seen[i].prev)
            if (wd_config_listen_same(x->seen[i].l, l))
                clash = &x->seen[i]; /* the list runs from the latest */
    }
    if (clash != NULL && clash->g == g)
        return fail(ld, n, key, "'%s' is listed twice in this group", l->spec);
    if (clash != NULL)
        return fail(ld, n, key, "'%s' is already used by group '%s' ('%s')", l->spec,
                    clash->g->name, clash->l->spec);
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 16;
        x->seen = xrealloc(x->seen, x->cap * sizeof *x->seen);
    }
    x->seen[x->n] = (listen_seen_t){.l = l, .g = g, .prev = -1};
    if (l->is_unix) {
        wd__cfg_strset_add(&x->paths, l->path, x->n);
    } else {
        x->seen[x->n].prev = x->last_of_port[l->port] - 1;
        x->last_of_port[l->port] = (long)x->n + 1;
    }
    x->n++;
    return 0;
}

void wd__cfg_listen_index_free(loader_t *ld)
{
    if (ld->listens != NULL) {
        free(ld->listens->seen);
        wd__cfg_strset_free(&ld->listens->paths);
        free(ld->listens);
        ld->listens = NULL;
    }
}

int wd__cfg_parse_listen_one(loader_t *ld, yaml_node_t *n, const char *key, wd_group_conf_t *g)
{
    const char *v = wd__cfg_scalar(ld, n, key);
    wd_listen_conf_t *l;

    if (v == NULL)
        return -1;
    l = &g->listen[g->n_listen];
    memset(l, 0, sizeof *l);
    if (strncmp(v, "unix:", 5) == 0) {
        if (v[5] == '\0')
            return fail(ld, n, key, "'%s': the unix socket path is empty", v);
        l->is_unix = 1;
        l->path = wd__cfg_path_resolve(ld->conf->dir, v + 5);
        g->n_listen++; /* owned by the group from here, so that it is freed on failure */
        l->spec = xstrdup(v);
        if (strlen(l->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return fail(ld, n, key, "unix socket path too long (%zu bytes, at most %zu): %s",
                        strlen(l->path), sizeof(((struct sockaddr_un *)0)->sun_path) - 1, l->path);
    } else {
        if (wd__cfg_parse_tcp(ld, n, key, v, &l->host, &l->port) < 0)
            return -1;
        g->n_listen++;
        l->spec = xstrdup(v);
    }
    return wd__cfg_check_listen_unique(ld, n, key, g, l);
}
