/* uWSGI ini reader (see uwsgi_ini.h). */
#include "uwsgi_ini.h"
#include "alloc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct str {
    char *p;
    size_t n, cap;
} str_t;

static void put(str_t *s, const char *p, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        s->cap = (s->n + n + 1) * 2;
        s->p = xrealloc(s->p, s->cap);
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = '\0';
}

/* uWSGI's %(key) is the first value given to key anywhere in the file (a later line's too). */
static const wd_ini_entry_t *first_entry(const wd_ini_t *ini, const char *key, size_t klen)
{
    for (int i = 0; i < ini->n; i++) {
        if (strlen(ini->e[i].key) == klen && memcmp(ini->e[i].key, key, klen) == 0)
            return &ini->e[i];
    }
    return NULL;
}

/* The magic variable c of the file, or NULL. */
static void magic(const wd_ini_t *ini, const char *section, char c, str_t *o)
{
    char abs[PATH_MAX];
    const char *path = realpath(ini->file, abs) != NULL ? abs : ini->file;
    const char *slash = strrchr(path, '/'), *base = slash != NULL ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t dlen = slash != NULL ? (size_t)(slash - path) : 0;

    switch (c) {
    case 'd':
        put(o, path, dlen);
        put(o, "/", 1);
        break;
    case 'n':
        put(o, base, dot != NULL ? (size_t)(dot - base) : strlen(base));
        break;
    case 's':
        put(o, base, strlen(base));
        break;
    case 'e':
        if (dot != NULL)
            put(o, dot + 1, strlen(dot + 1));
        break;
    case 'p':
        put(o, path, strlen(path));
        break;
    case 'c': {
        const char *d = path + dlen, *q = d;

        while (q > path && q[-1] != '/')
            q--;
        put(o, q, (size_t)(d - q));
        break;
    }
    case 'x':
        put(o, section, strlen(section));
        break;
    }
}

/* $(NAME) at v (v[0] == '$', v[1] == '('): the variable's value from the environment, noted;
 * the text after it returned. */
static const char *env_var(wd_ini_t *ini, const char *v, str_t *o, int line)
{
    const char *close = strchr(v + 2, ')');
    char *name;
    const char *val;

    if (close == NULL) {
        put(o, v, 2);
        return v + 2;
    }
    name = xstrndup(v + 2, (size_t)(close - v - 2));
    val = getenv(name);
    put(o, val != NULL ? val : "", val != NULL ? strlen(val) : 0);
    if (line == 0) {
        free(name);
        return close + 1;
    }
    ini->notes = xrealloc(ini->notes, sizeof *ini->notes * (size_t)(ini->nnotes + 1));
    ini->notes[ini->nnotes].key = name;
    ini->notes[ini->nnotes].value = val != NULL ? xstrdup(val) : NULL;
    ini->notes[ini->nnotes++].line = line;
    return close + 1;
}

/* -1 (with *bad pointing at it) for a %(key) naming no key in the file, or one whose value
 * names itself (through others). v is a raw value; depth > 0 expands a %(key)'s own, whose
 * $(NAME)s its own line notes. */
static int expand(wd_ini_t *ini, const char *section, const char *v, str_t *o, const char **bad,
                  int line, int depth)
{
    put(o, "", 0);
    while (*v != '\0') {
        const char *pc = strpbrk(v, "%$");

        if (pc == NULL) {
            put(o, v, strlen(v));
            break;
        }
        put(o, v, (size_t)(pc - v));
        if (pc[0] == '$') {
            if (pc[1] == '(') {
                v = env_var(ini, pc, o, depth == 0 ? line : 0);
            } else {
                put(o, "$", 1);
                v = pc + 1;
            }
        } else if (pc[1] == '(') {
            const char *close = strchr(pc + 2, ')');
            const wd_ini_entry_t *e =
                close != NULL ? first_entry(ini, pc + 2, (size_t)(close - pc - 2)) : NULL;
            str_t val = {0};
            const char *inner = NULL;

            if (e == NULL || depth >= 16 ||
                expand(ini, section, e->value, &val, &inner, e->line, depth + 1) < 0) {
                *bad = pc;
                free(val.p);
                return -1;
            }
            put(o, val.p, val.n);
            free(val.p);
            v = close + 1;
        } else if (pc[1] != '\0' && strchr("dnsepcx", pc[1]) != NULL) {
            magic(ini, section, pc[1], o);
            v = pc + 2;
        } else {
            put(o, "%", 1);
            v = pc + (pc[1] == '%' ? 2 : 1);
        }
    }
    return 0;
}

static char *trim(char *s)
{
    size_t n;

    while (*s == ' ' || *s == '\t')
        s++;
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int one_line(wd_ini_t *ini, const char *section, char *s, int line, int *in, char *err,
                    size_t errlen)
{
    char *eq, *key;

    s = trim(s);
    if (*s == '\0' || *s == ';' || *s == '#')
        return 0;
    if (*s == '[') {
        char *close = strchr(s, ']');

        if (close == NULL) {
            snprintf(err, errlen, "%s:%d: '[' without ']'", ini->file, line);
            return -1;
        }
        *in = strncmp(s + 1, section, (size_t)(close - s - 1)) == 0 &&
              strlen(section) == (size_t)(close - s - 1);
        return 0;
    }
    if (!*in)
        return 0;
    /* a bare KEY is uWSGI's KEY = true (a flag such as master) */
    eq = strchr(s, '=');
    if (eq != NULL)
        *eq = '\0';
    key = trim(s);
    ini->e = xrealloc(ini->e, sizeof *ini->e * (size_t)(ini->n + 1));
    ini->e[ini->n].key = xstrdup(key);
    ini->e[ini->n].value = xstrdup(eq != NULL ? trim(eq + 1) : "true");
    ini->e[ini->n++].line = line;
    return 0;
}

/* uWSGI expands the placeholders once the file is read: a %(key) may name a later line's. */
static int expand_all(wd_ini_t *ini, const char *section, char *err, size_t errlen)
{
    str_t *v = xmalloc(sizeof *v * (size_t)(ini->n + 1));
    int rc = 0;

    for (int i = 0; i < ini->n; i++) {
        const char *bad = NULL;

        memset(&v[i], 0, sizeof v[i]);
        if (rc == 0 && expand(ini, section, ini->e[i].value, &v[i], &bad, ini->e[i].line, 0) < 0) {
            snprintf(err, errlen,
                     "%s:%d: %s: %.40s names no option in the file (or one whose "
                     "value names it back)",
                     ini->file, ini->e[i].line, ini->e[i].key, bad);
            rc = -1;
        }
    }
    for (int i = 0; i < ini->n; i++) {
        if (rc == 0) {
            free(ini->e[i].value);
            ini->e[i].value = v[i].p;
        } else {
            free(v[i].p);
        }
    }
    free(v);
    return rc;
}

int wd_ini_parse_string(wd_ini_t *ini, const char *path, const char *text, const char *section,
                        char *err, size_t errlen)
{
    char *copy = xstrdup(text), *p = copy, *nl;
    int line = 0, in = 0, rc = 0;

    ini->file = xstrdup(path);
    while (rc == 0 && p != NULL && *p != '\0') {
        nl = strchr(p, '\n');
        if (nl != NULL)
            *nl = '\0';
        rc = one_line(ini, section, p, ++line, &in, err, errlen);
        p = nl != NULL ? nl + 1 : NULL;
    }
    free(copy);
    if (rc == 0)
        rc = expand_all(ini, section, err, errlen);
    return rc;
}

int wd_ini_parse_file(wd_ini_t *ini, const char *path, const char *section, char *err,
                      size_t errlen)
{
    FILE *f = fopen(path, "r");
    str_t text = {0};
    char buf[4096];
    size_t n;
    int rc;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    put(&text, "", 0);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        put(&text, buf, n);
    fclose(f);
    rc = wd_ini_parse_string(ini, path, text.p, section, err, errlen);
    free(text.p);
    return rc;
}

void wd_ini_free(wd_ini_t *ini)
{
    for (int i = 0; i < ini->n; i++) {
        free(ini->e[i].key);
        free(ini->e[i].value);
    }
    free(ini->e);
    for (int i = 0; i < ini->nnotes; i++) {
        free(ini->notes[i].key);
        free(ini->notes[i].value);
    }
    free(ini->notes);
    free(ini->file);
    memset(ini, 0, sizeof *ini);
}
