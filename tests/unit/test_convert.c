/* `wsgid convert`'s readers (client/convert/): the Apache tokenizer (arguments, quotes,
 * continuation lines, sections, comments, errors with file and line) and the uWSGI ini reader
 * (sections, repeated keys, magic variables, %(key)), each a table of cases. */
#include "aconf.h"
#include "config.h"
#include "from_apache.h"
#include "from_uwsgi.h"
#include "model.h"
#include "uwsgi_ini.h"
#include "write.h"
#include "utf8.h"
#include <jansson.h>
#include "testutil.h"

typedef struct split_case {
    const char *in;
    int n; /* -1: an error */
    const char *args[4];
} split_case_t;

static const split_case_t splits[] = {
    {"", 0, {NULL}},
    {"   \t ", 0, {NULL}},
    {"a", 1, {"a"}},
    {" a  b\tc ", 3, {"a", "b", "c"}},
    {"\"a b\" c", 2, {"a b", "c"}},
    {"'a b' c", 2, {"a b", "c"}},
    {"\"a \\\" b\"", 1, {"a \" b"}},
    {"\"a \\\\ b\"", 1, {"a \\ b"}},
    {"\"\"", 1, {""}},
    {"process-group=site application-group=%{GLOBAL}",
     2,
     {"process-group=site", "application-group=%{GLOBAL}"}},
    {"\"unterminated", -1, {NULL}},
    {"a 'x", -1, {NULL}},
};

static void test_split(void)
{
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        const split_case_t *c = &splits[i];
        char **args = NULL;
        int n = wd_aconf_split(c->in, &args);

        T_CHECK(n == c->n, "split [%s]: %d args, expected %d", c->in, n, c->n);
        for (int j = 0; j < n; j++) {
            if (j < c->n)
                T_CHECK(strcmp(args[j], c->args[j]) == 0, "split [%s] arg %d: [%s], expected [%s]",
                        c->in, j, args[j], c->args[j]);
            free(args[j]);
        }
        free(args);
    }
}

/* A config and the tree it gives, printed one node a line as "LINE:DEPTH:NAME|ARG|ARG". */
typedef struct tree_case {
    const char *text;
    const char *tree; /* NULL: an error, whose message is err */
    const char *err;
} tree_case_t;

static const tree_case_t trees[] = {
    {"# a comment\n\n  ServerName x\n", "3:0:ServerName|x\n", NULL},
    {"WSGIDaemonProcess site \\\n    processes=2 \\\n  threads=4\nX y\n",
     "1:0:WSGIDaemonProcess|site|processes=2|threads=4\n4:0:X|y\n", NULL},
    {"<VirtualHost *:80>\n  <Location /admin>\n    WSGIProcessGroup admin\n  </Location>\n"
     "</VirtualHost>\n",
     "1:0:VirtualHost|*:80\n2:1:Location|/admin\n3:2:WSGIProcessGroup|admin\n", NULL},
    {"<Directory \"/srv/my app\">\r\nRequire all granted\r\n</directory>\r\n",
     "1:0:Directory|/srv/my app\n2:1:Require|all|granted\n", NULL},
    {"SetEnv A \"b c\" # not a comment\n", "1:0:SetEnv|A|b c|#|not|a|comment\n", NULL},
    {"X a\\", "1:0:X|a\n", NULL},
    {"<Location /a>\nX\n", NULL, "t.conf:1: <Location> is not closed"},
    {"</Location>\n", NULL, "t.conf:1: </Location> without its <Location>"},
    {"<Location /a>\n</Directory>\n", NULL,
     "t.conf:2: </Directory> closes <Location> (opened at line 1)"},
    {"<Location /a\n</Location>\n", NULL, "t.conf:1: <Location: missing '>'"},
    {"\n\nSetEnv \"x\n", NULL, "t.conf:3: SetEnv: unterminated quote"},
    {"Include /nonexistent/wsgid-test.conf\n", NULL,
     "t.conf:1: Include /nonexistent/wsgid-test.conf: no such file"},
    {"IncludeOptional /nonexistent/*.conf\nX\n", "1:0:IncludeOptional|/nonexistent/*.conf\n2:0:X\n",
     NULL},
    /* Apache refuses an Include whose pattern matches nothing (it was dropped quietly) */
    {"Include /nonexistent/*.conf\nX\n", NULL,
     "t.conf:1: Include /nonexistent/*.conf: no file matches (only IncludeOptional may match "
     "nothing)"},
};

static void print_tree(const wd_aconf_node_t *n, int depth, char *out, size_t cap)
{
    for (int i = 0; i < n->nkids; i++) {
        const wd_aconf_node_t *k = n->kids[i];
        size_t len = strlen(out);

        snprintf(out + len, cap - len, "%d:%d:%s", k->line, depth, k->name);
        for (int j = 0; j < k->nargs; j++) {
            len = strlen(out);
            snprintf(out + len, cap - len, "|%s", k->args[j]);
        }
        len = strlen(out);
        snprintf(out + len, cap - len, "\n");
        print_tree(k, depth + 1, out, cap);
    }
}

static void test_tree(void)
{
    for (size_t i = 0; i < sizeof trees / sizeof trees[0]; i++) {
        const tree_case_t *c = &trees[i];
        wd_aconf_t conf;
        char err[512] = "", out[2048] = "";
        int rc;

        memset(&conf, 0, sizeof conf);
        rc = wd_aconf_parse_string(&conf, "t.conf", c->text, err, sizeof err);
        if (c->tree == NULL) {
            T_CHECK(rc < 0, "case %zu: parsed, expected the error [%s]", i, c->err);
            T_CHECK(strcmp(err, c->err) == 0, "case %zu: error [%s], expected [%s]", i, err,
                    c->err);
        } else {
            T_CHECK(rc == 0, "case %zu: error [%s]", i, err);
            print_tree(&conf.root, 0, out, sizeof out);
            T_CHECK(strcmp(out, c->tree) == 0, "case %zu: tree\n%s\nexpected\n%s", i, out, c->tree);
        }
        wd_aconf_free(&conf);
    }
}

typedef struct ini_case {
    const char *text;
    const char *entries; /* "LINE:KEY=VALUE\n"..., NULL: an error */
    const char *err;
} ini_case_t;

static const ini_case_t inis[] = {
    {"[uwsgi]\nmodule = app:application\n; comment\n# comment\n\nprocesses=4\n",
     "2:module=app:application\n6:processes=4\n", NULL},
    {"[other]\na = 1\n[uwsgi]\nb = 2\n[more]\nc = 3\n", "4:b=2\n", NULL},
    {"[uwsgi]\npythonpath = /a\npythonpath = /b\n", "2:pythonpath=/a\n3:pythonpath=/b\n", NULL},
    {"[uwsgi]\nsocket = /run/%n.sock\nlog = %d%n.log\nx = 100%%\n",
     "2:socket=/run/blog.sock\n3:log=/srv/vassals/blog.log\n4:x=100%\n", NULL},
    {"[uwsgi]\nproject = blog\nmodule = %(project).wsgi\n", "2:project=blog\n3:module=blog.wsgi\n",
     NULL},
    {"[uwsgi]\nsection = %x\n", "2:section=uwsgi\n", NULL},
    /* $(NAME): the environment's (this one is not set: nothing); a '$' alone stays */
    {"[uwsgi]\nchdir = $(WSGID_TEST_UNSET)/srv\nx = a$b $(\n", "2:chdir=/srv\n3:x=a$b $(\n", NULL},
    {"[uwsgi]\nmodule = %(nope)\n", NULL,
     "/srv/vassals/blog.ini:2: module: %(nope) names no option in the file (or one whose value "
     "names it back)"},
    {"[uwsgi]\na = %(b)\nb = %(a)\n", NULL,
     "/srv/vassals/blog.ini:2: a: %(b) names no option in the file (or one whose value names it "
     "back)"},
    /* helper-70's 10: a bare KEY is uWSGI's flag, KEY = true */
    {"[uwsgi]\nmaster\n  vacuum  \n", "2:master=true\n3:vacuum=true\n", NULL},
    /* helper-70's 11: uWSGI expands %(key) once the file is read, with key's first value */
    {"[uwsgi]\nwsgi-file = %(base)/site.wsgi\nbase = /srv/%(app)\napp = apps\n",
     "2:wsgi-file=/srv/apps/site.wsgi\n3:base=/srv/apps\n4:app=apps\n", NULL},
    {"[uwsgi]\ndir = other\ndir = apps\nchdir = /srv/%(dir)\n",
     "2:dir=other\n3:dir=apps\n4:chdir=/srv/other\n", NULL},
    {"[uwsgi\n", NULL, "/srv/vassals/blog.ini:1: '[' without ']'"},
};

static void test_ini(void)
{
    for (size_t i = 0; i < sizeof inis / sizeof inis[0]; i++) {
        const ini_case_t *c = &inis[i];
        wd_ini_t ini;
        char err[512] = "", out[2048] = "";
        int rc;

        memset(&ini, 0, sizeof ini);
        rc = wd_ini_parse_string(&ini, "/srv/vassals/blog.ini", c->text, "uwsgi", err, sizeof err);
        if (c->entries == NULL) {
            T_CHECK(rc < 0 && strcmp(err, c->err) == 0, "ini case %zu: [%s], expected [%s]", i, err,
                    c->err);
        } else {
            T_CHECK(rc == 0, "ini case %zu: error [%s]", i, err);
            for (int j = 0; j < ini.n; j++) {
                size_t len = strlen(out);

                snprintf(out + len, sizeof out - len, "%d:%s=%s\n", ini.e[j].line, ini.e[j].key,
                         ini.e[j].value);
            }
            T_CHECK(strcmp(out, c->entries) == 0, "ini case %zu:\n%s\nexpected\n%s", i, out,
                    c->entries);
        }
        wd_ini_free(&ini);
    }
}

/* A whole conversion: the lines the YAML, the nginx block and the notes must contain. */
typedef struct map_case {
    int uwsgi;
    const char *text;
    const char *want[10];
} map_case_t;

static const map_case_t maps[] = {
    {0,
     "WSGIDaemonProcess site processes=2 threads=4 request-timeout=30 home=/srv \\\n"
     "  header-buffer-size=512 memory-limit=100 lang=C.UTF-8\n"
     "WSGIScriptAlias /app /srv/app.wsgi process-group=site application-group=%{GLOBAL}\n",
     {"  \"site\":\n", "    processes: 2\n", "    request-timeout: \"30s\"\n",
      "    chdir: \"/srv\"\n", "\"LANG\": \"C.UTF-8\"",
      "\"/app\": {app: \"/srv/app.wsgi\", application-group: \"%{GLOBAL}\"}",
      "t.conf:1: WSGIDaemonProcess site header-buffer-size=512: not converted: outside",
      "t.conf:1: WSGIDaemonProcess site memory-limit=100: not converted: mod_wsgi's is"}},
    {0,
     "WSGIDaemonProcess a\nWSGIDaemonProcess b\nWSGIProcessGroup a\n"
     "WSGIScriptAlias / /srv/site.wsgi\n"
     "<Location /admin>\nWSGIProcessGroup b\nSetEnv AREA \"x y\"\n</Location>\n",
     {"    location / {\n        uwsgi_pass unix:/out/a.sock;",
      "    location = /admin {\n        uwsgi_pass unix:/out/b.sock;", "    location /admin/ {",
      "        uwsgi_param AREA \"x y\";",
      "        uwsgi_param HTTP_AUTHORIZATION \"\" if_not_empty;",
      "  \"b\":\n    app: \"/srv/site.wsgi\"\n    application-group: \"%{RESOURCE}\"", NULL}},
    {0,
     "WSGIScriptAlias /x /srv/x.wsgi\nWSGIPythonPath /srv/lib\nAlias /static/ /srv/static/\n"
     "LimitRequestBody 1000\nWSGIImportScript /srv/x.wsgi\n",
     {"  \"embedded\":\n", "python-path: [\"/srv/lib\"]", "limit-request-body: 1000\n",
      "client_max_body_size 1000;", "    location /static/ {\n        alias \"/srv/static/\";",
      "t.conf:5: WSGIImportScript /srv/x.wsgi: not converted", NULL}},
    {1,
     "[uwsgi]\nmodule = app:application\nchdir = /srv\nsocket = 127.0.0.1:3031\n"
     "chmod-socket = 660\nharakiri = 20\nreload-on-rss = 300\nmount = /b=b.py\nhttp = :8000\n"
     "cpu-affinity = 1\nmanage-script-name = true\n",
     {"    app: \"app:application\"\n", "    threads: 1\n", "socket-mode: \"0660\"",
      "request-timeout: \"20s\"", "memory-limit: 300M", "uwsgi_pass 127.0.0.1:3031;",
      "\"/b\": {app: \"/srv/b.py\", application-group: \"%{RESOURCE}\"}",
      "t.ini:9: http = :8000: not converted", "    pin-threads: true\n"}},
    /* helper-70's 17: SetEnv NAME alone is NAME='' for the app, not hidden as Authorization is */
    {0,
     "WSGIScriptAlias / /srv/site.wsgi\nSetEnv AREA\n",
     {"        uwsgi_param AREA \"\";\n",
      "        uwsgi_param HTTP_AUTHORIZATION \"\" if_not_empty;\n", NULL}},
    /* helper-70's 8: a process group picked per request is noted, and run in "embedded" */
    {0,
     "WSGIProcessGroup %{ENV:PG}\nWSGIScriptAlias / /srv/site.wsgi\n",
     {"  \"embedded\":\n    app: \"/srv/site.wsgi\"",
      "t.conf:2: WSGIScriptAlias /: WSGIProcessGroup %{ENV:PG}: not converted: mod_wsgi picks "
      "the group per request",
      NULL}},
    {1,
     "[uwsgi]\nmodule = app\nsocket = /run/a.sock\ncpu-affinity = 2\n",
     {"    pin-threads: true\n",
      "t.ini:4: cpu-affinity = 2: pin-threads: true keeps each worker's Python threads on one CPU, "
      "not 2",
      NULL}},
    {1,
     "[uwsgi]\nmodule = app\nsocket = /run/a.sock\ncpu-affinity = all\n",
     {"t.ini:4: cpu-affinity = all: not converted: expected a number of CPUs", NULL}},
};

static void test_map(void)
{
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        const map_case_t *c = &maps[i];
        wd_cv_t cv;
        char err[256] = "", *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        memset(&cv, 0, sizeof cv);
        cv.run_dir = strdup("/out");
        if (c->uwsgi) {
            wd_ini_t ini;

            memset(&ini, 0, sizeof ini);
            T_CHECK(wd_ini_parse_string(&ini, "t.ini", c->text, "uwsgi", err, sizeof err) == 0,
                    "map case %zu: %s", i, err);
            wd_cv_from_uwsgi(&cv, &ini, "t");
            wd_ini_free(&ini);
        } else {
            wd_aconf_t conf;

            memset(&conf, 0, sizeof conf);
            T_CHECK(wd_aconf_parse_string(&conf, "t.conf", c->text, err, sizeof err) == 0,
                    "map case %zu: %s", i, err);
            wd_cv_from_apache(&cv, &conf);
            wd_aconf_free(&conf);
        }
        wd_cv_write_yaml(f, &cv, "t", "test");
        wd_cv_write_nginx(f, &cv, "t", "test");
        fclose(f);
        for (int j = 0; j < 10 && c->want[j] != NULL; j++)
            T_CHECK(strstr(out, c->want[j]) != NULL, "map case %zu: no [%s] in\n%s", i, c->want[j],
                    out);
        free(out);
        wd_cv_free(&cv);
    }
}

/* Loads "groups: {g: {app: mod:app, KEY: VALUE}}" with wsgid's own loader: 0 when accepted. */
static int wsgid_accepts(const char *key, double v, int secs, char *err, size_t errlen)
{
    char text[256];
    wd_config_t conf;
    int rc;

    snprintf(text, sizeof text, "groups:\n  g:\n    app: 'mod:app'\n    %s: '%.0f%s'\n", key, v,
             secs ? "s" : "");
    memset(&conf, 0, sizeof conf);
    rc = wd_config_load_string(&conf, text, strlen(text), "t.yaml", err, errlen);
    wd_config_free(&conf);
    return rc;
}

/* The ranges the converter holds WSGIDaemonProcess's numbers to are wsgid's: both ends load, one
 * past either does not. */
static void test_ranges(void)
{
    double min, max;
    int secs;
    const char *key;
    char err[512];

    for (size_t i = 0; (key = wd_cv_apache_daemon_range(i, &min, &max, &secs)) != NULL; i++) {
        T_CHECK(wsgid_accepts(key, min, secs, err, sizeof err) == 0, "%s: %.0f refused: %s", key,
                min, err);
        T_CHECK(wsgid_accepts(key, max, secs, err, sizeof err) == 0, "%s: %.0f refused: %s", key,
                max, err);
        T_CHECK(min <= 0 || wsgid_accepts(key, min - 1, secs, err, sizeof err) != 0,
                "%s: %.0f accepted, below the converter's range", key, min - 1);
        T_CHECK(wsgid_accepts(key, max + 1, secs, err, sizeof err) != 0,
                "%s: %.0f accepted, above the converter's range", key, max + 1);
    }
}

/* UTF-8 as jansson takes it (daemon/common/utf8.c): what wd_utf8_len accepts, jansson must
 * accept too, or an error the master replies with is lost (an overlong form, a surrogate or a
 * code point past U+10FFFF was taken); and wd_utf8_copy's cut and replacement. */
static void test_utf8(void)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"plain", 1},
        {"caf\xc3\xa9", 1},
        {"\xe2\x82\xac", 1},
        {"\xf0\x9f\x98\x80", 1},
        {"\xf4\x8f\xbf\xbf", 1},
        {"\xc3", 0},
        {"\xe9t\xe9", 0},
        {"\xc0\xaf", 0},
        {"\xe0\x80\xaf", 0},
        {"\xed\xa0\x80", 0},
        {"\xf0\x80\x80\xaf", 0},
        {"\xf4\x90\x80\x80", 0},
        {"\xf5\x80\x80\x80", 0},
        {"\xff", 0},
    };
    char out[8];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = json_string(cases[i].s);

        T_CHECK(wd_cv_utf8(cases[i].s) == cases[i].ok, "utf8 case %zu", i);
        T_CHECK((j != NULL) == cases[i].ok, "jansson and utf8 case %zu", i);
        json_decref(j);
    }
    wd_utf8_copy(out, sizeof out, "ab\xe2\x82\xac\xe2\x82\xac"); /* 3 + 3 + 2: cut before the 2nd */
    T_CHECK(strcmp(out, "ab\xe2\x82\xac") == 0, "cut on a character: [%s]", out);
    wd_utf8_copy(out, sizeof out,
                 "a\xe9"
                 "b\xed\xa0\x80");
    T_CHECK(strcmp(out, "a?b???") == 0, "replaced: [%s]", out);
}

int main(void)
{
    test_utf8();
    test_ranges();
    test_split();
    test_tree();
    test_ini();
    test_map();
    return t_summary("convert");
}
