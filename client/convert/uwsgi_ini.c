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

static const char *last_value(const wd_ini_t *ini, const char *key, size_t klen)
{
    for (int i = ini->n - 1; i >= 0; i--) {
        if (strlen(ini->e[i].key) == klen && memcmp(ini->e[i].key, key, klen) == 0)
            return ini->e[i].value;
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
    ini->notes = xrealloc(ini->notes, sizeof *ini->notes * (size_t)(ini->nnotes + 1));
    ini->notes[ini->nnotes].key = name;
    ini->notes[ini->nnotes].value = val != NULL ? xstrdup(val) : NULL;
    ini->notes[ini->nnotes++].line = line;
    return close + 1;
}

/* -1 (with *bad pointing at it) for a %(key) naming no key given above. */
static int expand(wd_ini_t *ini, const char *section, const char *v, str_t *o, const char **bad,
                  int line)
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
                v = env_var(ini, pc, o, line);
            } else {
                put(o, "$", 1);
                v = pc + 1;
            }
        } else if (pc[1] == '(') {
            const char *close = strchr(pc + 2, ')');
            const char *val =
                close != NULL ? last_value(ini, pc + 2, (size_t)(close - pc - 2)) : NULL;

            if (val == NULL) {
                *bad = pc;
                return -1;
            }
            put(o, val, strlen(val));
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
    char *eq, *key, *val;
    const char *bad = NULL;
    str_t o = {0};

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
    eq = strchr(s, '=');
    if (eq == NULL) {
        snprintf(err, errlen, "%s:%d: expected KEY = VALUE", ini->file, line);
        return -1;
    }
    *eq = '\0';
    key = trim(s);
    val = trim(eq + 1);
    if (expand(ini, section, val, &o, &bad, line) < 0) {
        snprintf(err, errlen, "%s:%d: %s: %.40s names no option given above", ini->file, line, key,
                 bad);
        free(o.p);
        return -1;
    }
    ini->e = xrealloc(ini->e, sizeof *ini->e * (size_t)(ini->n + 1));
    ini->e[ini->n].key = xstrdup(key);
    ini->e[ini->n].value = o.p;
    ini->e[ini->n++].line = line;
    return 0;
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
