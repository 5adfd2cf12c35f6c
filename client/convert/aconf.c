/* Apache configuration tokenizer (see aconf.h). Apache reads a file line by line: a line ending
 * in a backslash continues on the next, '#' starts a comment only as the first non-blank
 * character, a line starting with '<' opens a section and "</" closes it. */
#include "aconf.h"
#include "alloc.h"

#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define INCLUDE_DEPTH 16

typedef struct reader {
    wd_aconf_t *c;
    const char *file; /* owned by c */
    wd_aconf_node_t *cur;
    char *err;
    size_t errlen;
} reader_t;

static int fail(reader_t *r, int line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(r->err, r->errlen, "%s:%d: ", r->file, line);

    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < r->errlen)
        vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

const char *wd_aconf_arg(const wd_aconf_node_t *n, int i)
{
    return i >= 0 && i < n->nargs ? n->args[i] : NULL;
}

/* One argument from *sp: appended to buf, *sp moved past it. -1 on an unterminated quote.
 * option: the word may be mod_wsgi's name=value, whose value may be quoted on its own
 * (`python-home='/srv/my venv'`: mod_wsgi reads the value with ap_getword_conf, and
 * mod_wsgi-express writes its options that way): the name and '=' are kept, the quotes go. */
static int one_arg(const char **sp, char *buf, int option)
{
    const char *s = *sp;
    char quote = 0, *o = buf;

    if (*s == '"' || *s == '\'')
        quote = *s++;
    for (; *s != '\0'; s++) {
        if (quote ? *s == quote : (*s == ' ' || *s == '\t'))
            break;
        if (*s == '\\' && quote && (s[1] == quote || s[1] == '\\'))
            s++;
        *o++ = *s;
        if (option && !quote && *s == '=' && (s[1] == '"' || s[1] == '\'') &&
            memchr(buf, '=', (size_t)(o - buf) - 1) == NULL) {
            quote = *++s;
            option = 0;
        }
    }
    *o = '\0';
    if (quote) {
        if (*s != quote)
            return -1;
        s++;
    }
    *sp = s;
    return 0;
}

static int split(const char *s, char ***args, int options);

int wd_aconf_split(const char *s, char ***args)
{
    return split(s, args, 0);
}

/* mod_wsgi's directives that take name=value options. */
static int takes_options(const char *name)
{
    return strcasecmp(name, "WSGIDaemonProcess") == 0 || strcasecmp(name, "WSGIScriptAlias") == 0 ||
           strcasecmp(name, "WSGIScriptAliasMatch") == 0 ||
           strcasecmp(name, "WSGIImportScript") == 0;
}

static int split(const char *s, char ***args, int options)
{
    char *buf = xmalloc(strlen(s) + 1);
    int n = 0;

    *args = NULL;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (*s == '\0')
            break;
        if (one_arg(&s, buf, options) < 0) {
            while (n > 0)
                free((*args)[--n]);
            free(*args);
            *args = NULL;
            free(buf);
            return -1;
        }
        *args = xrealloc(*args, sizeof **args * (size_t)(n + 1));
        (*args)[n++] = xstrdup(buf);
    }
    free(buf);
    return n;
}

static wd_aconf_node_t *add_node(reader_t *r, const char *name, size_t len, int line)
{
    wd_aconf_node_t *p = r->cur, *n = xcalloc(1, sizeof *n);

    n->name = xstrndup(name, len);
    n->file = r->file;
    n->line = line;
    n->parent = p;
    p->kids = xrealloc(p->kids, sizeof *p->kids * (size_t)(p->nkids + 1));
    p->kids[p->nkids++] = n;
    return n;
}

static int parse(wd_aconf_t *c, wd_aconf_node_t *base, const char *name, const char *text,
                 char *err, size_t errlen);
static int read_file(reader_t *from, const char *path, int line);

static int include_path(reader_t *r, const char *path, int line);

/* A directory named by Include: every file in it and in its subdirectories, in name order
 * (Apache reads them all, as it does for a directory a glob matches). */
static int include_dir(reader_t *r, const char *dir, int line)
{
    glob_t g;
    char pat[4096];
    int rc = 0, grc;

    snprintf(pat, sizeof pat, "%s/*", dir);
    memset(&g, 0, sizeof g);
    grc = glob(pat, GLOB_PERIOD, NULL, &g);
    for (size_t i = 0; rc == 0 && grc == 0 && i < g.gl_pathc; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/') + 1;

        if (strcmp(base, ".") != 0 && strcmp(base, "..") != 0)
            rc = include_path(r, g.gl_pathv[i], line);
    }
    if (grc == 0)
        globfree(&g);
    return rc;
}

static int include_path(reader_t *r, const char *path, int line)
{
    struct stat st;
    int rc;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (r->c->depth >= INCLUDE_DEPTH)
            return fail(r, line, "Include %s: more than %d levels (a loop?)", path, INCLUDE_DEPTH);
        r->c->depth++;
        rc = include_dir(r, path, line);
        r->c->depth--;
        return rc;
    }
    return read_file(r, path, line);
}

/* Include / IncludeOptional: each match of the glob, in order; a directory is read whole. An
 * Include that matches nothing is an error, as it is to Apache ("apache2ctl configtest"); only
 * IncludeOptional may match nothing. */
static int do_include(reader_t *r, const wd_aconf_node_t *n, int optional)
{
    const char *pat = wd_aconf_arg(n, 0);
    char path[4096], *dir = NULL;
    glob_t g;
    int rc = 0, grc;
    size_t i;

    if (pat == NULL)
        return fail(r, n->line, "%s needs a file or a pattern", n->name);
    if (pat[0] == '/') {
        snprintf(path, sizeof path, "%s", pat);
    } else if (r->c->server_root != NULL) {
        snprintf(path, sizeof path, "%s/%s", r->c->server_root, pat);
    } else {
        /* relative to ServerRoot, which without a ServerRoot line is apache2's -d: the first
         * file's directory (Debian's /etc/apache2, apache2.conf's), not the including file's
         * (sites-enabled/site.conf's "Include conf-available/wsgi.conf") */
        char *tmp = xstrdup(r->c->nfiles > 0 ? r->c->files[0] : r->file);

        dir = xstrdup(dirname(tmp));
        free(tmp);
        snprintf(path, sizeof path, "%s/%s", dir, pat);
        free(dir);
    }
    memset(&g, 0, sizeof g);
    grc = glob(path, 0, NULL, &g);
    if (grc == GLOB_NOMATCH && !optional)
        rc = fail(r, n->line, "Include %s: %s%s", path,
                  strpbrk(pat, "*?[") == NULL
                      ? "no such file"
                      : "no file matches (only IncludeOptional may match nothing)",
                  pat[0] != '/' && r->c->server_root == NULL
                      ? " (a relative path is ServerRoot's, taken as the first file's directory "
                        "without a ServerRoot line: convert apache2.conf itself, or add "
                        "ServerRoot to a copy)"
                      : "");
    for (i = 0; rc == 0 && grc == 0 && i < g.gl_pathc; i++)
        rc = include_path(r, g.gl_pathv[i], n->line);
    if (grc == 0)
        globfree(&g);
    return rc;
}

static int close_section(reader_t *r, const char *s, int line)
{
    const char *end = s + strcspn(s, "> \t");

    if (r->cur == &r->c->root || !r->cur->section)
        return fail(r, line, "</%.*s> without its <%.*s>", (int)(end - s), s, (int)(end - s), s);
    if (strlen(r->cur->name) != (size_t)(end - s) ||
        strncasecmp(r->cur->name, s, (size_t)(end - s)) != 0)
        return fail(r, line, "</%.*s> closes <%s> (opened at line %d)", (int)(end - s), s,
                    r->cur->name, r->cur->line);
    r->cur = r->cur->parent;
    return 0;
}

static int open_section(reader_t *r, const char *s, int line)
{
    size_t len = strcspn(s, "> \t");
    const char *gt = strrchr(s, '>');
    wd_aconf_node_t *n;
    char *rest;

    if (gt == NULL)
        return fail(r, line, "<%.*s: missing '>'", (int)len, s);
    n = add_node(r, s, len, line);
    n->section = 1;
    rest = xstrndup(s + len, (size_t)(gt - (s + len)));
    n->nargs = wd_aconf_split(rest, &n->args);
    free(rest);
    if (n->nargs < 0) {
        n->nargs = 0;
        return fail(r, line, "<%s: unterminated quote", n->name);
    }
    r->cur = n;
    return 0;
}

static int directive(reader_t *r, const char *s, int line)
{
    size_t len = strcspn(s, " \t");
    wd_aconf_node_t *n = add_node(r, s, len, line);

    n->nargs = split(s + len, &n->args, takes_options(n->name));
    if (n->nargs < 0) {
        n->nargs = 0;
        return fail(r, line, "%s: unterminated quote", n->name);
    }
    if (strcasecmp(n->name, "ServerRoot") == 0 && n->nargs == 1) {
        free(r->c->server_root);
        r->c->server_root = xstrdup(n->args[0]);
    }
    if (strcasecmp(n->name, "Include") == 0 || strcasecmp(n->name, "IncludeOptional") == 0)
        return do_include(r, n, strcasecmp(n->name, "IncludeOptional") == 0);
    return 0;
}

static int one_line(reader_t *r, char *s, int line)
{
    size_t len;

    while (*s == ' ' || *s == '\t')
        s++;
    len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
        s[--len] = '\0';
    if (*s == '\0' || *s == '#')
        return 0;
    if (s[0] == '<' && s[1] == '/')
        return close_section(r, s + 2, line);
    if (s[0] == '<')
        return open_section(r, s + 1, line);
    return directive(r, s, line);
}

/* Joins the lines that end in a backslash, then reads each logical line. */
static int read_text(reader_t *r, const char *text)
{
    const char *p = text;
    char *buf = NULL;
    size_t blen = 0;
    int line = 0, start = 0, rc = 0;

    while (rc == 0 && *p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        int cont;

        line++;
        if (blen == 0)
            start = line;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        cont = n > 0 && p[n - 1] == '\\';
        buf = xrealloc(buf, blen + n + 1);
        memcpy(buf + blen, p, n - (size_t)cont);
        blen += n - (size_t)cont;
        buf[blen] = '\0';
        p = nl != NULL ? nl + 1 : p + n;
        if (cont && *p != '\0')
            continue;
        rc = one_line(r, buf, start);
        blen = 0;
    }
    free(buf);
    return rc;
}

static const char *keep_name(wd_aconf_t *c, const char *name)
{
    c->files = xrealloc(c->files, sizeof *c->files * (size_t)(c->nfiles + 1));
    c->files[c->nfiles] = xstrdup(name);
    return c->files[c->nfiles++];
}

/* A file's sections must close in that file, as Apache wants. */
static int parse(wd_aconf_t *c, wd_aconf_node_t *base, const char *name, const char *text,
                 char *err, size_t errlen)
{
    reader_t r = {c, keep_name(c, name), base, err, errlen};
    int rc = read_text(&r, text);

    if (rc == 0 && r.cur != base)
        rc = fail(&r, r.cur->line, "<%s> is not closed", r.cur->name);
    return rc;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL)
        return NULL;
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            text = xrealloc(text, cap + 1);
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        free(text);
        text = NULL;
    } else {
        text[len] = '\0';
    }
    fclose(f);
    return text;
}

/* An included file: its directives go where the Include was. */
static int read_file(reader_t *from, const char *path, int line)
{
    wd_aconf_t *c = from->c;
    char *text;
    int rc;

    if (c->depth >= INCLUDE_DEPTH)
        return fail(from, line, "Include %s: more than %d levels (a loop?)", path, INCLUDE_DEPTH);
    text = slurp(path);
    if (text == NULL)
        return fail(from, line, "Include %s: %s", path, strerror(errno));
    c->depth++;
    rc = parse(c, from->cur, path, text, from->err, from->errlen);
    c->depth--;
    free(text);
    return rc;
}

int wd_aconf_parse_file(wd_aconf_t *c, const char *path, char *err, size_t errlen)
{
    char *text = slurp(path);
    int rc;

    if (text == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    rc = parse(c, &c->root, path, text, err, errlen);
    free(text);
    return rc;
}

int wd_aconf_parse_string(wd_aconf_t *c, const char *name, const char *text, char *err,
                          size_t errlen)
{
    return parse(c, &c->root, name, text, err, errlen);
}

static void free_node(wd_aconf_node_t *n)
{
    int i;

    for (i = 0; i < n->nkids; i++) {
        free_node(n->kids[i]);
        free(n->kids[i]);
    }
    for (i = 0; i < n->nargs; i++)
        free(n->args[i]);
    free(n->args);
    free(n->kids);
    free(n->name);
}

void wd_aconf_free(wd_aconf_t *c)
{
    int i;

    free_node(&c->root);
    for (i = 0; i < c->nfiles; i++)
        free(c->files[i]);
    free(c->files);
    free(c->server_root);
    memset(c, 0, sizeof *c);
}
