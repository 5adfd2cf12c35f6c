/* Listen addresses in the configuration: "unix:PATH", "HOST:PORT", "[V6]:PORT", ":PORT", and
 * the check that no address is bound twice in the file. See config.c. */
#include "config.h"
#include "config_int.h"
#include "alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
    if (a->is_unix) /* real is NULL in a wd_listen_conf_t made outside the loader */
        return strcmp(a->real ? a->real : a->path, b->real ? b->real : b->path) == 0;
    return a->port == b->port && (strcmp(a->host, b->host) == 0 || covers(a, b) || covers(b, a));
}

/* The deepest directory of path that exists, with its symbolic links resolved, and the rest of
 * path as written: two groups on one socket through a linked directory (a: unix:/d/real/s.sock,
 * b: unix:/d/link/s.sock) are one address. They passed --check, and the start failed with "group
 * b: cannot listen on unix:/d/link/s.sock: in use by another process", the process being wsgid
 * (helper-72). The last component is left as it is: bind does not follow a link there. */
char *wd__cfg_unix_real(const char *path)
{
    char *dir = xstrdup(path), *real = NULL, *out;
    size_t cut = strlen(path);

    while (real == NULL) {
        while (cut > 0 && path[cut - 1] != '/')
            cut--;
        if (cut <= 1) {
            cut = 0;
            break; /* "/": nothing to resolve */
        }
        cut--; /* path[cut] is the '/' before the rest */
        dir[cut] = '\0';
        real = realpath(dir, NULL);
    }
    if (asprintf(&out, "%s%s", real != NULL && strcmp(real, "/") != 0 ? real : "", path + cut) < 0)
        wd_out_of_memory();
    free(real);
    free(dir);
    return out;
}

/* The addresses checked so far. Two TCP addresses are the same if they have one port and one
 * host, or one host is the wildcard of the other's family (covers). A wildcard is then the only
 * address of its family on its port, and a new wildcard clashes with the first of its family: so
 * a new address need only be compared with the one of its own port and host, and the first of
 * each family on its port. Comparing it with every one before took 5.3 s for 40,000 groups and
 * as long for 40,000 hosts on one port. */
typedef struct {
    const wd_listen_conf_t *l;
    const wd_group_conf_t *g;
    char *key; /* "PORT HOST" of a TCP address (a unix one's key is its real path) */
} listen_seen_t;

struct wd_listen_index {
    listen_seen_t *seen;
    size_t n, cap;
    wd__cfg_strset_t keys;       /* a key -> its index in seen */
    uint32_t first_of[2][65536]; /* 1 + the first of a family (IPv4 and names, IPv6) a port */
};

static int family_of(const wd_listen_conf_t *l)
{
    return strchr(l->host, ':') != NULL;
}

/* A listen address must not be used twice in the file: two binds of one address fail at
 * start-up, far from the line that caused it. Of several it clashes with, the first in the file
 * is named. */
int wd__cfg_check_listen_unique(loader_t *ld, yaml_node_t *n, const char *key,
                                const wd_group_conf_t *g, const wd_listen_conf_t *l)
{
    struct wd_listen_index *x = ld->listens;
    long candidates[3] = {-1, -1, -1}, clash = -1;
    char *k = NULL;

    if (x == NULL)
        x = ld->listens = xcalloc(1, sizeof *x);
    if (!l->is_unix) {
        if (asprintf(&k, "%d %s", l->port, l->host) < 0)
            wd_out_of_memory();
        candidates[1] = (long)x->first_of[0][l->port] - 1;
        candidates[2] = (long)x->first_of[1][l->port] - 1;
    }
    candidates[0] = wd__cfg_strset_find(&x->keys, k != NULL ? k : l->real);
    for (size_t c = 0; c < 3; c++)
        if (candidates[c] >= 0 && (clash < 0 || candidates[c] < clash) &&
            wd_config_listen_same(x->seen[candidates[c]].l, l))
            clash = candidates[c];
    if (clash >= 0) {
        free(k);
        if (l->is_unix && strcmp(l->path, x->seen[clash].l->path) != 0 && x->seen[clash].g == g)
            return fail(ld, n, key,
                        "'%s' is listed twice in this group (as '%s'): both name the socket %s, "
                        "through a symbolic link",
                        l->spec, x->seen[clash].l->spec, l->real);
        if (l->is_unix && strcmp(l->path, x->seen[clash].l->path) != 0)
            return fail(ld, n, key,
                        "'%s' is already used by group '%s' ('%s'): both name the socket %s, "
                        "through a symbolic link",
                        l->spec, x->seen[clash].g->name, x->seen[clash].l->spec, l->real);
        if (x->seen[clash].g == g)
            return fail(ld, n, key, "'%s' is listed twice in this group", l->spec);
        return fail(ld, n, key, "'%s' is already used by group '%s' ('%s')", l->spec,
                    x->seen[clash].g->name, x->seen[clash].l->spec);
    }
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 16;
        x->seen = xrealloc(x->seen, x->cap * sizeof *x->seen);
    }
    x->seen[x->n] = (listen_seen_t){.l = l, .g = g, .key = k};
    wd__cfg_strset_add(&x->keys, k != NULL ? k : l->real, x->n);
    if (!l->is_unix && x->first_of[family_of(l)][l->port] == 0)
        x->first_of[family_of(l)][l->port] = (uint32_t)x->n + 1;
    x->n++;
    return 0;
}

void wd__cfg_listen_index_free(loader_t *ld)
{
    if (ld->listens != NULL) {
        wd__cfg_strset_free(&ld->listens->keys);
        for (size_t i = 0; i < ld->listens->n; i++)
            free(ld->listens->seen[i].key);
        free(ld->listens->seen);
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
        l->real = wd__cfg_unix_real(l->path);
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
