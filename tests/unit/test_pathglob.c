/* The `watch:` patterns (daemon/common/pathglob.c): a table of pattern / path / expected match,
 * the same for "could something below this directory match" (the tree walk's test), the static
 * base directory of a pattern, and the noise names. */
#include "pathglob.h"
#include "testutil.h"

typedef struct glob_case {
    const char *pattern;
    const char *path;
    int match;
} glob_case_t;

static const glob_case_t matches[] = {
    /* Plain paths. */
    {"/srv/app/app.py", "/srv/app/app.py", 1},
    {"/srv/app/app.py", "/srv/app/app.pyx", 0},
    {"/srv/app/app.py", "/srv/app", 0},
    {"/srv/app/app.py", "/srv/app/app.py/x", 0},
    {"/", "/", 1},
    /* One segment: *, ?, [...], never across '/'. */
    {"/srv/app/*.py", "/srv/app/models.py", 1},
    {"/srv/app/*.py", "/srv/app/sub/models.py", 0},
    {"/srv/app/*.py", "/srv/app/.py", 0}, /* hidden: noise, "*.py" does not look like noise */
    {"/srv/app/?.py", "/srv/app/a.py", 1},
    {"/srv/app/?.py", "/srv/app/ab.py", 0},
    {"/srv/app/[ab].py", "/srv/app/b.py", 1},
    {"/srv/app/[!ab].py", "/srv/app/b.py", 0},
    {"/srv/app/[!ab].py", "/srv/app/c.py", 1},
    {"/srv/*/app.py", "/srv/x/app.py", 1},
    {"/srv/*/app.py", "/srv/x/y/app.py", 0},
    {"/srv/app/\\*.py", "/srv/app/*.py", 1},
    {"/srv/app/\\*.py", "/srv/app/a.py", 0},
    /* `**`: any number of directories, zero included. */
    {"/srv/app/**/*.py", "/srv/app/app.py", 1},
    {"/srv/app/**/*.py", "/srv/app/lib/helper.py", 1},
    {"/srv/app/**/*.py", "/srv/app/a/b/c/d.py", 1},
    {"/srv/app/**/*.py", "/srv/app/a/b/c/d.txt", 0},
    {"/srv/app/**/*.py", "/srv/other/d.py", 0},
    {"/srv/app/**/*.py", "/srv/app", 0},
    {"/srv/app/**", "/srv/app/a/b.txt", 1},
    {"/srv/app/**", "/srv/app/notes.txt", 1},
    {"/srv/**/**/x.py", "/srv/x.py", 1},
    {"/srv/**/**/x.py", "/srv/a/b/x.py", 1},
    {"/srv/**/lib/**/x.py", "/srv/a/lib/b/c/x.py", 1},
    {"/srv/**/lib/**/x.py", "/srv/a/lab/b/c/x.py", 0},
    {"/**/*.py", "/a/b.py", 1},
    /* Eight `**` against a path 41 deep: 22 s in the recursion that tried every split, 69 us
     * now (a harness with both, /tmp); the answers of 3,000,000 random cases were the same. */
    {"/**/a/**/a/**/a/**/a/**/a/**/a/**/a/**/a/z.py",
     "/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/y.py", 0},
    {"/**/a/**/a/**/a/**/a/**/a/**/a/**/a/**/a/z.py",
     "/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/z.py", 1},
    {"/srv/app/a**b.py", "/srv/app/aXXb.py", 1}, /* `**` inside a segment is two `*` */
    {"/srv/app/a**b.py", "/srv/app/a/b.py", 0},
    /* Noise: never matched by wildcards, matched by a segment that names it. */
    {"/srv/app/**/*.py", "/srv/app/__pycache__/x.py", 0},
    {"/srv/app/**/*.py", "/srv/app/.git/hooks/x.py", 0},
    {"/srv/app/**/*.py", "/srv/app/.venv/lib/x.py", 0},
    {"/srv/app/**", "/srv/app/__pycache__/app.cpython-311.pyc", 0},
    {"/srv/app/**", "/srv/app/app.cpython-311.pyc", 0},
    {"/srv/app/**", "/srv/app/.app.py.swp", 0},
    {"/srv/app/**", "/srv/app/app.py~", 0},
    {"/srv/app/**", "/srv/app/#app.py#", 0},
    {"/srv/app/**", "/srv/app/.#app.py", 0},
    {"/srv/app/**", "/srv/app/4913", 0},
    {"/srv/app/**", "/srv/app/app.py___jb_tmp___", 0},
    {"/srv/app/*", "/srv/app/app.pyc", 0},
    {"/srv/app/*.pyc", "/srv/app/app.pyc", 1},
    {"/srv/app/**/*.pyc", "/srv/app/x/app.pyc", 1},
    {"/srv/app/.env", "/srv/app/.env", 1},
    {"/srv/app/.*", "/srv/app/.env", 1},
    {"/srv/app/*~", "/srv/app/app.py~", 1},
    {"/srv/app/__pycache__/*.pyc", "/srv/app/__pycache__/a.pyc", 1},
    {"/srv/.hidden/app.py", "/srv/.hidden/app.py", 1},
    {"/srv/*/app.py", "/srv/.hidden/app.py", 0},
};

static const glob_case_t contains[] = {
    {"/srv/app/**/*.py", "/", 1},
    {"/srv/app/**/*.py", "/srv", 1},
    {"/srv/app/**/*.py", "/srv/app", 1},
    {"/srv/app/**/*.py", "/srv/app/lib", 1},
    {"/srv/app/**/*.py", "/srv/app/lib/a/b", 1},
    {"/srv/app/**/*.py", "/srv/other", 0},
    {"/srv/app/**/*.py", "/srv/app/__pycache__", 0},
    {"/srv/app/**/*.py", "/srv/app/.git", 0},
    {"/srv/app/**/*.py", "/srv/app/lib/.git", 0},
    {"/srv/app/app.py", "/srv/app", 1},
    {"/srv/app/app.py", "/srv/app/lib", 0},
    {"/srv/app/*.py", "/srv/app/lib", 0},
    {"/srv/*/app.py", "/srv/x", 1},
    {"/srv/*/app.py", "/srv/x/y", 0},
    {"/srv/app/**", "/srv/app/a/b", 1},
    {"/srv/app/__pycache__/*.pyc", "/srv/app/__pycache__", 1},
};

static const struct {
    const char *pattern;
    const char *base;
    int literal;
} bases[] = {
    {"/srv/app/app.py", "/srv/app", 1},
    {"/srv/app/**/*.py", "/srv/app", 0},
    {"/srv/app/**", "/srv/app", 0},
    {"/srv/*/app.py", "/srv", 0},
    {"/srv/a[bc]/x/y.py", "/srv", 0},
    {"/srv/a\\*/x.py", "/srv", 0},
    {"/app.py", "/", 1},
    {"/*.py", "/", 0},
    {"/**/*.py", "/", 0},
};

static const struct {
    const char *name;
    int noise;
} names[] = {
    {"app.py", 0},        {"notes.txt", 0}, {"__init__.py", 0}, {"a.pyc", 1},       {"a.pyo", 1},
    {"__pycache__", 1},   {".git", 1},      {".app.py.swp", 1}, {"app.py.swp", 1},  {"app.py~", 1},
    {"#app.py#", 1},      {".#app.py", 1},  {"4913", 1},        {"49130", 0},       {"#", 0},
    {"x___jb_old___", 1}, {"", 0},          {"pycache", 0},     {"app.py.swpx", 0}, {"~app.py", 0},
};

int main(void)
{
    size_t i;

    for (i = 0; i < sizeof matches / sizeof matches[0]; i++)
        T_CHECK(wd_pathglob_match(matches[i].pattern, matches[i].path) == matches[i].match,
                "match(%s, %s) should be %d", matches[i].pattern, matches[i].path,
                matches[i].match);
    for (i = 0; i < sizeof contains / sizeof contains[0]; i++)
        T_CHECK(wd_pathglob_may_contain(contains[i].pattern, contains[i].path) == contains[i].match,
                "may_contain(%s, %s) should be %d", contains[i].pattern, contains[i].path,
                contains[i].match);
    for (i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        size_t n = wd_pathglob_base(bases[i].pattern);

        T_CHECK(n == strlen(bases[i].base) && strncmp(bases[i].pattern, bases[i].base, n) == 0,
                "base(%s) is %.*s, expected %s", bases[i].pattern, (int)n, bases[i].pattern,
                bases[i].base);
        T_CHECK(wd_pathglob_is_literal(bases[i].pattern) == bases[i].literal,
                "is_literal(%s) should be %d", bases[i].pattern, bases[i].literal);
    }
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        T_CHECK(wd_pathglob_noise(names[i].name) == names[i].noise, "noise(%s) should be %d",
                names[i].name, names[i].noise);
    return t_summary("pathglob");
}
