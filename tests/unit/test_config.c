/* The config loader: a table of YAML texts, each either loading or failing with a message that
 * names the line, the column and the key; then the values and resolved paths of a full file,
 * sizes, and every prefix of a few valid files (load or fail cleanly, never crash). Runs with
 * the working directory tests/unit (meson's workdir), where configs/ holds fixtures. */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
static int checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

#define FILE_NAME "configs/t.yaml"

/* A minimal valid group; cases append lines 5, 6... to it. */
#define G "groups:\n  a:\n    app: app.py\n    listen: 127.0.0.1:9001\n"

typedef struct config_case {
    const char *yaml;
    const char *expect; /* NULL: loads; else a substring of the error */
} config_case_t;

static const config_case_t cases[] = {
    /* Valid files and every key. */
    {G, NULL},
    {G "    callable: app\n", NULL},
    {G "    processes: 4\n    threads: 1\n", NULL},
    {G "    display-name: \"web %{GROUP}-%{PROCESS}\"\n", NULL},
    {"groups:\n  a:\n    app: app.py\n    listen: [unix:a.sock, ':9002', '[::1]:9003']\n", NULL},
    {G "    protocol: uwsgi\n", NULL},
    {G "    protocol: fastcgi\n", NULL},
    {G "    socket-mode: 0600\n    socket-user: www-data\n    socket-group: www-data\n", NULL},
    {G "    python-path: lib\n", NULL},
    {G "    python-path: [lib, /opt/lib]\n    python-home: venv\n    chdir: .\n", NULL},
    {G "    env: {A: b, PORT: 80, EMPTY: ''}\n", NULL},
    {G "    user: nobody\n    group: nogroup\n", NULL},
    {G "    maximum-requests: 1000\n    maximum-requests-jitter: 50\n", NULL},
    {G "    restart-interval: 1h\n    inactivity-timeout: 5m\n    request-timeout: 1.5\n", NULL},
    {G "    queue-timeout: 500ms\n    startup-timeout: 30s\n    graceful-timeout: 0\n"
       "    shutdown-timeout: 2\n",
     NULL},
    {G "    memory-limit: 512M\n    limit-request-body: 0\n    header-buffer-size: 1K\n", NULL},
    {G "    body-buffer-size: 1m\n    response-buffer-size: 4MB\n    response-spill-limit: 4M\n",
     NULL},
    {"control: run/c.ctl\npidfile: /run/x.pid\nlog: {level: debug, file: l.log, access: 'off'}\n"
     "metrics: ':9191'\n" G,
     NULL},
    {"log:\n" G, NULL},
    {G "  b:\n    app: pkg.mod:make\n    listen: 127.0.0.1:9002\n  c-1.x_y:\n    app: mod\n"
       "    listen: 127.0.0.1:9003\n",
     NULL},
    {G "  b:\n    app: 0.0.0.0:9001\n    listen: '[::1]:9001'\n",
     "groups.b.app: invalid callable name '9001'"},

    /* Syntax and structure. */
    {"", "configs/t.yaml:1:1: the file is empty"},
    {"groups: [\n", "configs/t.yaml:2:1: YAML error"},
    {"a: b\n c: d\n", "configs/t.yaml:2:3: YAML error"},
    {"- a\n- b\n", "configs/t.yaml:1:1: expected a mapping of keys"},
    {G "---\nx: 1\n", "5:1: only one YAML document"},
    {"control: a\n", "configs/t.yaml:1:1: groups: required key is missing"},
    {"groups: {}\n", "1:9: groups: at least one group is required"},
    {"groups:\n", "1:8: groups: expected a mapping"},
    {"groups: [a, b]\n", "1:9: groups: expected a mapping"},
    {"groups:\n  a:\n", "2:3: groups.a: expected a mapping of group settings, got nothing"},
    {"groups:\n  'a b':\n    app: app.py\n", "2:3: groups.a b: invalid group name"},
    {G "  a:\n    app: app.py\n    listen: :9005\n", "5:3: groups.a: duplicate key (first given at "
                                                     "line 2, column 3)"},
    {G "    threads: 2\n    threads: 3\n", "6:5: groups.a.threads: duplicate key"},
    {"groups:\n  a:\n    listen: :9001\n", "2:3: groups.a.app: required key is missing"},
    {"groups:\n  a:\n    listen: :9001\n    mounts: {/b: app.py}\n", NULL}, /* mounts only */
    {"groups:\n  a:\n    app: app.py\n", NULL}, /* listen: unix:DIR/a.sock */
    {"control: a\ncontrol: b\n" G, "2:1: control: duplicate key"},
    {"? [a]\n: b\n" G, "1:3: keys must be names"},
    /* The first error in the order written: a repeat, against the first of its name. */
    {G "    env: {B: 1, C: 2, C: 3, B: 4, C: 5}\n",
     "5:23: groups.a.env.C: duplicate key (first given at line 5, column 17)"},
    {G "    env: {B: 1, C: 2, B: 3, C: 4, B: 5}\n",
     "5:23: groups.a.env.B: duplicate key (first given at line 5, column 11)"},
    {G "    env: {B: 1, C: 2, B: 3, [x]: 4}\n", "5:23: groups.a.env.B: duplicate key"},
    {G "    env: {B: 1, [x]: 2, B: 3}\n", "5:17: groups.a.env: keys must be names"},

    {"groups:\n  a: &g\n    app: app.py\n    listen: :1\n  b: *g\n",
     "4:13: groups.b.listen: ':1' is already used by group 'a'"},
    {"groups: &a {x: *a}\n", "configs/t.yaml:1:"},
    {"groups: &a [*a]\n", "configs/t.yaml:1:"},
    {"groups:\n  a:\n\tapp: app.py\n", "configs/t.yaml:3:1: YAML error"},
    {"groups:\n  a:\n    app: \xff\n", "configs/t.yaml:3:10: YAML error: invalid"},
    {"\xef\xbb\xbf" G, NULL},
    {"%YAML 1.1\n---\n" G "...\n", NULL},
    {"!!map\n" G, NULL},
    {G "    threads: !!str 4\n", NULL},
    {G "    threads: !!null 4\n", "5:14: groups.a.threads: a value is required"},
    {G "    threads: '4'\n    processes: \"2\"\n", NULL},

    /* Unknown keys. */
    {G "    procesess: 2\n", "5:5: groups.a.procesess: unknown key 'procesess' (did you mean "
                             "'processes'?)"},
    {G "    thread: 2\n", "did you mean 'threads'?"},
    {G "    colour: red\n", "5:5: groups.a.colour: unknown key 'colour'"},
    {G "    control: x\n", "groups.a.control: unknown key 'control' (it belongs at the top"},
    {"threads: 4\n" G, "1:1: threads: unknown key 'threads' (it belongs in a group"},
    {"grups:\n  a: {}\n", "1:1: grups: unknown key 'grups' (did you mean 'groups'?)"},
    {"log: {levl: info}\n" G, "1:7: log.levl: unknown key 'levl' (did you mean 'level'?)"},

    /* Wrong types and values. */
    {G "    threads: abc\n", "5:14: groups.a.threads: expected a whole number, got 'abc'"},
    {G "    threads: [1]\n", "5:14: groups.a.threads: expected a single value, got a list"},
    {G "    threads: {a: 1}\n", "5:14: groups.a.threads: expected a single value, got a mapping"},
    {G "    threads:\n", "5:13: groups.a.threads: a value is required"},
    {G "    threads: 0\n", "5:14: groups.a.threads: 0 is out of range (1..1024)"},
    {G "    threads: 1025\n", "groups.a.threads: 1025 is out of range"},
    {G "    threads: 1.5\n", "groups.a.threads: expected a whole number"},
    {G "    processes: 0\n", "5:16: groups.a.processes: 0 is out of range"},
    {G "    processes: 1025\n", "5:16: groups.a.processes: 1025 is out of range"},
    /* each group has a scoreboard of its own, of twice the most processes (scoreboard.h) */
    {G "    processes: 1024\n  b:\n    app: app.py\n    listen: 127.0.0.1:9002\n"
       "    processes: 1024\n",
     NULL},
    {G "    processes: 2000\n", "groups.a.processes: 2000 is out of range"},
    {G "    processes: -1\n", "5:16: groups.a.processes: must not be negative"},
    {G "    maximum-requests: 99999999999999999999999\n", "groups.a.maximum-requests: expected"},
    {G "    maximum-requests: -5\n", "groups.a.maximum-requests: must not be negative"},
    {G "    protocol: htp\n", "5:15: groups.a.protocol: unknown protocol 'htp'"},
    {G "    socket-mode: '0680'\n", "5:18: groups.a.socket-mode: invalid mode '0680'"},
    {G "    socket-mode: 77777\n", "groups.a.socket-mode: invalid mode"},
    {G "    socket-mode: '0'\n", "5:18: groups.a.socket-mode: '0' lets no one but root connect"},
    {G "    socket-mode: '0444'\n", "groups.a.socket-mode: '0444' lets no one but root connect"},
    {G "    socket-mode: '0060'\n", NULL},
    {G "    socket-mode: '0220'\n", NULL}, /* write is what connect(2) needs */
    {G "    python-path: {a: b}\n", "groups.a.python-path: expected a path or a list"},
    {G "    python-path: [a, [b]]\n", "5:22: groups.a.python-path: expected a single value"},
    {G "    env: [A, B]\n", "5:10: groups.a.env: expected a mapping"},
    {G "    env: {A: [1]}\n", "5:14: groups.a.env.A: expected a single value, got a list"},
    {G "    env: {A: }\n", "groups.a.env.A: a value is required"},
    {G "    env: {A=B: c}\n", "5:11: groups.a.env.A=B: an environment variable name"},
    {G "    env: {A: 1, A: 2}\n", "5:17: groups.a.env.A: duplicate key"},
    {G "    user: ''\n", "5:11: groups.a.user: the value must not be empty"},
    {G "    display-name: \"a\\0b\"\n", "groups.a.display-name: the value contains a NUL byte"},
    {G "    callable: 'not valid'\n", "5:15: groups.a.callable: invalid callable name"},
    {"log: {level: loud}\n" G, "1:14: log.level: unknown level 'loud'"},
    {"log: [a]\n" G, "1:6: log: expected a mapping"},
    {"control: [a]\n" G, "1:10: control: expected a single value, got a list"},

    /* Times. */
    {G "    request-timeout: -1\n", "5:22: groups.a.request-timeout: must not be negative"},
    {G "    header-timeout: 10s\n    body-timeout: 1m\n    keepalive-timeout: 0\n"
       "    send-timeout: 250ms\n",
     NULL},
    {G "    keepalive-timeout: soon\n", "5:24: groups.a.keepalive-timeout: invalid time 'soon'"},
    {G "    send-timeout: -3\n", "5:19: groups.a.send-timeout: must not be negative"},
    {G "    busy-poll: 20us\n", NULL},
    {G "    busy-poll: 0\n", NULL},
    {G "    busy-poll: 5uss\n", "5:16: groups.a.busy-poll: invalid time '5uss'"},
    {G "    busy-poll: -1us\n", "5:16: groups.a.busy-poll: must not be negative"},
    {G "    busy-poll: 10\n", "5:16: groups.a.busy-poll: '10' has no unit: write it as e.g. 10us"},
    {G "    busy-poll: 0.00001\n", "groups.a.busy-poll: '0.00001' has no unit"},
    {G "    access-log: logs/site.log\n", NULL},
    {G "    access-log: [a]\n", "groups.a.access-log: expected a single value"},
    {G "    queue-timeout: 5x\n", "5:20: groups.a.queue-timeout: invalid time '5x'"},
    {G "    startup-timeout: ms\n", "groups.a.startup-timeout: invalid time"},
    {G "    graceful-timeout: nan\n", "groups.a.graceful-timeout: invalid time"},
    {G "    shutdown-timeout: 1.5.2\n", "groups.a.shutdown-timeout: invalid time"},
    {G "    inactivity-timeout: -0.5s\n", "groups.a.inactivity-timeout: must not be negative"},

    /* Sizes. */
    {G "    header-buffer-size: 512\n", "5:25: groups.a.header-buffer-size: '512' is out of "
                                        "range (1K..1M)"},
    {G "    header-buffer-size: 2M\n", "groups.a.header-buffer-size: '2M' is out of range"},
    {G "    memory-limit: 12Q\n", "5:19: groups.a.memory-limit: invalid size '12Q'"},
    {G "    limit-request-body: -1\n", "groups.a.limit-request-body: must not be negative"},
    {G "    body-buffer-size: 1.5M\n", "groups.a.body-buffer-size: invalid size"},
    {G "    response-buffer-size: 2M\n    response-spill-limit: 1M\n",
     "6:27: groups.a.response-spill-limit: response-spill-limit (1048576) is smaller than "
     "response-buffer-size (2097152)"},
    {G "    response-buffer-size: 2G\n", "5:27: groups.a.response-buffer-size: '2G' is out of "
                                         "range (4K..256M)"},

    /* Listen addresses. */
    {"groups:\n  a:\n    app: app.py\n    listen: []\n", "4:13: groups.a.listen: at least one"},
    {"groups:\n  a:\n    app: app.py\n    listen: {a: b}\n", "4:13: groups.a.listen: expected an "
                                                             "address or a list"},
    {"groups:\n  a:\n    app: app.py\n    listen: 8080\n",
     "4:13: groups.a.listen: invalid address '8080' (expected unix:PATH or HOST:PORT)"},
    {"groups:\n  a:\n    app: app.py\n    listen: 'h:0'\n", "groups.a.listen: invalid port"},
    {"groups:\n  a:\n    app: app.py\n    listen: 'h:65536'\n", "groups.a.listen: invalid port"},
    {"groups:\n  a:\n    app: app.py\n    listen: 'h:80x'\n", "groups.a.listen: invalid port"},
    {"groups:\n  a:\n    app: app.py\n    listen: '::1:80'\n", "write IPv6 addresses as"},
    {"groups:\n  a:\n    app: app.py\n    listen: '[::1]80'\n", "expected [IPV6]:PORT"},
    {"groups:\n  a:\n    app: app.py\n    listen: 'unix:'\n", "the unix socket path is empty"},
    {"groups:\n  a:\n    app: app.py\n    listen: [':80', 'unix:x', '0.0.0.0:80']\n",
     "4:31: groups.a.listen: '0.0.0.0:80' is listed twice in this group"},
    {G "  b:\n    app: app.py\n    listen: 127.0.0.1:9001\n",
     "7:13: groups.b.listen: '127.0.0.1:9001' is already used by group 'a'"},
    {G "  b:\n    app: app.py\n    listen: '*:9001'\n",
     "groups.b.listen: '*:9001' is already used"},
    /* of two it clashes with, the first in the file is named */
    {"groups:\n  a:\n    app: app.py\n    listen: 127.0.0.1:9001\n  b:\n    app: app.py\n"
     "    listen: 10.0.0.1:9001\n  c:\n    app: app.py\n    listen: 0.0.0.0:9001\n",
     "10:13: groups.c.listen: '0.0.0.0:9001' is already used by group 'a' ('127.0.0.1:9001')"},
    {"groups:\n  a:\n    app: app.py\n    listen: unix:s/../x.sock\n"
     "  b:\n    app: app.py\n    listen: [':1', 'unix:./x.sock']\n",
     "7:20: groups.b.listen: 'unix:./x.sock' is already used by group 'a' ('unix:s/../x.sock')"},
    {"control: x.sock\n"
     "groups:\n  a:\n    app: app.py\n    listen: unix:x.sock\n",
     "1:10: control: "},
    {"metrics: 127.0.0.1:9001\n" G, "1:10: metrics: '127.0.0.1:9001' is also a listen address"},
    /* the metrics listener is dual-stack on [::]: it takes the group's IPv4 port too */
    {"metrics: '[::]:9001'\n" G, "1:10: metrics: '[::]:9001' is also a listen address"},
    {"metrics: unix:x\n" G, "1:10: metrics: expected HOST:PORT"},
    {"agent-check: 127.0.0.1:9001\n" G,
     "1:14: agent-check: '127.0.0.1:9001' is also a listen address"},
    {"metrics: 127.0.0.1:9300\nagent-check: '*:9300'\n" G,
     "2:14: agent-check: '0.0.0.0:9300' is also the metrics address"},
    {"agent-check: unix:x\n" G, "1:14: agent-check: expected HOST:PORT"},
    {"groups:\n  a:\n    app: app.py\n    listen: unix:/" /* > 107 bytes */
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
     "unix socket path too long"},
    /* control: too: it passed, and the start failed naming neither file nor line (helper-72) */
    {"control: /"
     "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
     "cccccccccccccccccccccccccccccccccccccccccc.sock\n" G,
     "1:10: control: unix socket path too long (138 bytes, at most 107)"},

    /* mounts */
    {"groups:\n  a:\n    listen: :9001\n    mounts: {/: app.py, /blog/: 'pkg.blog:app', /api: "
     "site.wsgi}\n",
     NULL},
    /* The group's app is the app at /: a mount at / never let it be reached (helper-63). */
    {G "    mounts: {/: app.py, /blog/: 'pkg.blog:app'}\n",
     "5:14: groups.a.mounts./: the group's app (line 3) is the app at / already (it serves what "
     "no mount matches): a mount at / would take every request from it. Serve one app at /: "
     "remove the group's app, or mount this one under another prefix"},
    {G "    mounts:\n      /b: app.py\n      //: app.py\n", "groups.a.mounts.//: '//': a mount"},
    {G "    mounts:\n      /b: app.py\n      /: {app: app.py, application-group: x}\n",
     "7:7: groups.a.mounts./: the group's app (line 3) is the app at / already"},
    /* A %{RESOURCE} interpreter is its app's own: no named group joins it (helper-63). */
    {G "    mounts:\n      /a: {app: app.py, application-group: '%{RESOURCE}', env: {X: '1'}}\n"
       "      /b: {app: app.py, application-group: /a, env: {X: '2'}}\n",
     "7:44: groups.a.mounts./b.application-group: \"/a\" is the name of mount /a's own "
     "interpreter (application-group: \"%{RESOURCE}\"), which no other app joins: give the apps "
     "that are to share an interpreter one name of your own, or choose another name"},
    {G "    mounts:\n      /a/: {app: app.py, application-group: '%{RESOURCE}'}\n"
       "      /b: {app: app.py, application-group: /a}\n",
     "7:44: groups.a.mounts./b.application-group: \"/a\" is the name of mount /a's own"},
    {G "    application-group: /a\n    mounts:\n"
       "      /a: {app: app.py, application-group: '%{RESOURCE}'}\n",
     "5:24: groups.a.application-group: \"/a\" is the name of mount /a's own interpreter"},
    {"groups:\n  a:\n    listen: :1\n    application-group: /a\n    mounts:\n"
     "      /a: {app: app.py, application-group: '%{RESOURCE}'}\n      /b: app.py\n",
     "4:24: groups.a.application-group: \"/a\" is the name of mount /a's own interpreter"},
    {G "    application-group: '%{RESOURCE}'\n    mounts:\n"
       "      /b: {app: app.py, application-group: /}\n",
     "7:44: groups.a.mounts./b.application-group: \"/\" is the name of the group's app's own "
     "interpreter"},
    {G "    mounts:\n      /a: {app: app.py, application-group: '%{RESOURCE}'}\n"
       "      /b: {app: app.py, application-group: /a/}\n      /c: {app: app.py, "
       "application-group: /b}\n",
     NULL}, /* "/a/" is no interpreter's name but its own; /b is not %{RESOURCE} */
    {G "    application-group: /a\n    mounts:\n      /a: {app: app.py}\n", NULL},
    {G "    mounts:\n", NULL},
    {G "    mounts: [a]\n", "5:13: groups.a.mounts: expected a mapping of /PREFIX: app"},
    {G "    mounts: {blog: app.py}\n",
     "5:14: groups.a.mounts.blog: 'blog': a mount point is a URL path starting with '/'"},
    /* Written decoded, as the path is routed: a space was refused as if it were no path, and
     * %20 taken, to match only a client's %2520 (helper-63). */
    {G "    mounts: {'/x y': app.py, /caf\xc3\xa9: app.py, /50%: app.py, /a%2: app.py}\n", NULL},
    {G "    mounts: {/x%20y: app.py}\n",
     "5:14: groups.a.mounts./x%20y: '/x%20y': a mount point is written decoded, as the app's "
     "SCRIPT_NAME and nginx's location read it (\"/x y\" for a client's /x%20y): %20 here would "
     "match only a client's %2520"},
    {G "    mounts: {/caf%c3%a9: app.py}\n", "%c3 here would match only a client's %25c3"},
    {G "    mounts: {\"/x\\ty\": app.py}\n",
     "a mount point holds no control character (a tab, a line break)"},
    {G "    mounts: {/x?y: app.py}\n",
     "5:14: groups.a.mounts./x?y: '/x?y': '?' starts a URL's query and '#' its fragment: a mount "
     "point is matched against the path alone"},
    {G "    mounts: {'/x#y': app.py}\n", "'/x#y': '?' starts a URL's query and '#' its fragment"},
    {G "    mounts: {/b: app.py, /b/: app.py}\n", "5:26: groups.a.mounts./b/: mount point /b is "
                                                  "given twice"},
    {G "    mounts: {/b: nope.py}\n", "5:18: groups.a.mounts./b: no such file"},
    {G "    mounts: {/b: }\n", "groups.a.mounts./b: a value is required"},
    {G "    mounts: {/a/../b: app.py}\n",
     "groups.a.mounts./a/../b: '/a/../b': a mount point has no"},
    {G "    mounts: {/a//b: app.py}\n", "groups.a.mounts./a//b: '/a//b': a mount point has no"},
    {G "    mounts: {/a/./b: app.py}\n", "'/a/./b': a mount point has no empty"},
    {G "    mounts: {/a/b/: app.py, /c.d/..e: app.py}\n", NULL},
    /* a mount's own settings, application-group */
    {G "    mounts: {/b: {app: app.py, application-group: '%{RESOURCE}', python-path: [lib],"
       " env: {A: b}, chdir: ., callable: app}}\n",
     NULL},
    {G "    application-group: '%{RESOURCE}'\n    mounts: {/b: {app: 'm:f', callable: g}}\n",
     "6:41: groups.a.mounts./b.callable: conflicts with the ':f' given in app"},
    /* callable before app: the same check (app's ":f" won, and the callable leaked) */
    {G "    application-group: '%{RESOURCE}'\n    mounts: {/b: {callable: g, app: 'm:f'}}\n",
     "6:37: groups.a.mounts./b.app: its ':f' conflicts with the callable 'g' given above"},
    {G "    application-group: '%{RESOURCE}'\n    mounts: {/b: {callable: f, app: 'm:f'}}\n", NULL},
    {G "    mounts: {/b: {app: app.py, callable: 'not valid!'}}\n",
     "groups.a.mounts./b.callable: invalid callable name 'not valid!'"},
    {G "    mounts: {/b: {callable: app}}\n", "5:14: groups.a.mounts./b: the mount has no `app`"},
    {G "    mounts: {/b: {app: app.py, python_path: x}}\n",
     "5:32: groups.a.mounts./b.python_path: unknown key 'python_path' (did you mean "
     "'python-path'?)"},
    {G "    application-group: '%{GLOBAL}'\n", NULL},
    /* trusted-proxies, strip-forwarded-headers */
    {G "    trusted-proxies: [unix, 10.0.0.0/8, '::1', 'fd00::/8', 192.0.2.5]\n", NULL},
    {G "    trusted-proxies: unix\n    strip-forwarded-headers: true\n", NULL},
    {G "    trusted-proxies: [10.0.0.0/33]\n",
     "5:23: groups.a.trusted-proxies: '10.0.0.0/33' is not an address range"},
    {G "    trusted-proxies: [localhost]\n", "groups.a.trusted-proxies: 'localhost' is not"},
    {G "    trusted-proxies: {a: b}\n", "expected a list of address ranges, got a mapping"},
    {G "    strip-forwarded-headers: maybe\n", "groups.a.strip-forwarded-headers"},
    {G "    drain-delay: 2d\n", "groups.a.drain-delay"},
    {G "    access-log-format: json\n", NULL},
    {G "    forwarded-headers: forwarded\n", NULL},
    {G "    forwarded-headers: both\n", "groups.a.forwarded-headers: 'both': x-forwarded"},
    {G "    access-log-format: xml\n", "groups.a.access-log-format: 'xml': the formats are"},
    {G "    readiness-queue-wait: 0\n", NULL},
    {G "    trusted-proxies: [unix]\n    proxy-protocol: true\n", NULL},
    {G "    proxy-protocol: true\n", "5:21: groups.a.proxy-protocol: a PROXY header is believed "
                                     "only from trusted peers"},
    {G "    application-group: shared\n", NULL},
    {G "    pin-threads: false\n", NULL},
    {G "    pin-threads: cpu0\n", "5:18: groups.a.pin-threads: expected auto, true or false, got "
                                  "'cpu0'"},
    {G "    pin-threads: auto\n", NULL},
    {G "    pin-threads: yes\n", NULL},
    {G "    pin-threads: [auto]\n", "groups.a.pin-threads: expected a single value"},
    {G "    application-group: '%{SERVER}'\n", "5:24: groups.a.application-group: '%{SERVER}': "
                                               "the expansions are %{GLOBAL}"},
    {G "    application-group: [a]\n", "groups.a.application-group: expected a"},
    {G "    mounts:\n      /a: {app: app.py, env: {S: x}}\n      /b: {app: app.py, env: {S: y}}\n",
     "7:31: groups.a.mounts./b.env.S: /a and /b share the interpreter of application group "
     "\"%{GLOBAL}\" but set S to different values (x, y)"},
    /* the group's env is its own app's: a mount in the same interpreter may not change it */
    {G "    env: {S: x}\n    mounts:\n      /a: {app: app.py, env: {S: y}}\n",
     "groups.a.mounts./a.env.S: the group's app and /a share the interpreter of application "
     "group \"%{GLOBAL}\" but set S to different values (x, y)"},
    {G "    env: {S: x}\n    mounts:\n      /a: {app: app.py, env: {S: x, T: y}}\n", NULL},
    {G "    env: {S: x}\n    mounts:\n      /a: {app: app.py, env: {S: y}, application-group: p}\n",
     NULL},
    {G "    application-group: n\n    mounts:\n      /a: {app: app.py, env: {S: x}}\n"
       "      /b: {app: app.py, env: {S: x}}\n",
     NULL},
    {G "    application-group: '%{RESOURCE}'\n    mounts:\n      /a: {app: app.py, env: {S: x}}\n"
       "      /b: {app: app.py, env: {S: y}}\n",
     NULL},
    {G "    mounts:\n      /a: {app: app.py, env: {S: x}, application-group: p}\n"
       "      /b: {app: app.py, env: {S: y}, application-group: q}\n",
     NULL},
    /* of several conflicts, the one met first comparing every pair of apps in reading order: the
     * earliest app, then the earliest to differ from it */
    {G
     "    mounts:\n      /a: {app: app.py, env: {S: x, T: '1'}}\n      /b: {app: app.py, env: {T: "
     "'2'}}\n      /c: {app: app.py, env: {S: y}}\n",
     "7:31: groups.a.mounts./b.env.T: /a and /b share the interpreter of application group "
     "\"%{GLOBAL}\" but set T to different values (1, 2)"},
    {G "    mounts:\n      /a: {app: app.py, env: {S: x}}\n      /b: {app: app.py, env: {S: x}}\n"
       "      /c: {app: app.py, env: {S: y}}\n      /d: {app: app.py, env: {S: z}}\n",
     "8:31: groups.a.mounts./c.env.S: /a and /c share"},
    {G "    env: {S: x}\n    mounts:\n      /a: {app: app.py, env: {S: y}}\n"
       "      /b: {app: app.py, env: {S: z}}\n",
     "7:31: groups.a.mounts./a.env.S: the group's app and /a share"},
    /* aliases: one env for several apps; a node that contains its own alias is refused */
    {G "    env: &e {S: x}\n    mounts:\n      /a: {app: app.py, env: *e}\n", NULL},
    {G "    python-path: &p [*p]\n", "5:22: YAML alias *p stands for a node that contains it"},
    {G "    env: &e {S: *e}\n", "5:17: YAML alias *e stands for a node that contains it"},
    /* an anchor given twice (libyaml's loader refuses it too), even before it is used */
    {G "    python-path: [&a x, &a y, *a]\n",
     "5:25: YAML anchor &a is given twice (first at line 5, column 19)"},
    {G "    python-path: &a [x, &a y]\n",
     "5:25: YAML anchor &a is given twice (first at line 5, column 18)"},

    /* reload-on-change and watch (configs/ holds app.py and examples/hello/app.py). */
    {G "    reload-on-change: true\n", NULL},
    {G "    reload-on-change: off\n", NULL},
    {G "    reload-on-change: yes\n    watch: '*.py'\n", NULL},
    {G "    watch: [\"**/*.py\", examples/, examples, app.py, 'examples/*/app.py']\n", NULL},
    {G "    mounts: {/blog: examples/hello/app.py}\n    reload-on-change: true\n", NULL},
    {G "    reload-on-change: maybe\n",
     "5:23: groups.a.reload-on-change: expected true or false, got 'maybe'"},
    {G "    reload-on-change: [true]\n", "5:23: groups.a.reload-on-change: expected a single"},
    {G "    reload-on-chang: true\n", "did you mean 'reload-on-change'?"},
    {G "    watch: []\n", "5:12: groups.a.watch: at least one path or pattern is required"},
    {G "    watch:\n", "groups.a.watch: at least one path or pattern is required"},
    {G "    watch: {a: b}\n", "5:12: groups.a.watch: expected a path or a list"},
    {G "    watch: [app.py, [x]]\n", "5:21: groups.a.watch: expected a single value"},
    {G "    watch: [app.py, nope/**/*.py]\n",
     "5:21: groups.a.watch: " /* then the absolute path */},
    {G "    watch: [nope/**/*.py]\n", "/nope, where the pattern starts, does not exist"},
    {G "    watch: [app.py/*.py]\n", "/app.py, where the pattern starts, is not a directory"},
    {G "    watch: [missing.py]\n", "missing.py: no such file or directory (a file that does "
                                    "not exist yet is watched through a pattern"},
    {G "    reload-on-change: false\n    watch: [nope/**/*.py, missing.py]\n", NULL},
    {"groups:\n  a:\n    app: pkg.mod:app\n    listen: :1\n    reload-on-change: true\n",
     "5:23: groups.a.reload-on-change: the app 'pkg.mod' is a module, whose files wsgid cannot "
     "tell: list them in `watch:`"},
    {"groups:\n  a:\n    app: pkg.mod:app\n    listen: :1\n    reload-on-change: true\n"
     "    watch: '**/*.py'\n",
     NULL},
    {"groups:\n  a:\n    app: pkg.mod:app\n    listen: :1\n    watch: '**/*.py'\n", NULL},
    {G "    mounts: {/blog: 'pkg.blog:app'}\n    reload-on-change: on\n",
     "6:23: groups.a.reload-on-change: the app of mount /blog 'pkg.blog' is a module"},

    /* app and callable. */
    {"groups:\n  a:\n    app: missing.py\n    listen: :1\n", "3:10: groups.a.app: no such file "},
    {"groups:\n  a:\n    app: .\n    listen: :1\n", "3:10: groups.a.app: invalid module name"},
    {"groups:\n  a:\n    app: ./\n    listen: :1\n", "is a directory"},
    {"groups:\n  a:\n    app: 'pkg mod'\n    listen: :1\n", "groups.a.app: invalid module name"},
    {"groups:\n  a:\n    app: 'pkg.mod:'\n    listen: :1\n", "groups.a.app: invalid callable"},
    {"groups:\n  a:\n    app: pkg.mod:x\n    callable: y\n    listen: :1\n",
     "4:15: groups.a.callable: 'y' conflicts with the ':x' given in app"},
    {"groups:\n  a:\n    app: pkg.mod:x\n    callable: x\n    listen: :1\n", NULL},
    {"groups:\n  a:\n    app: app.py:handler\n    listen: :1\n", NULL},
    {"groups:\n  a:\n    app: mysite.wsgi:application\n    listen: :1\n", NULL},
    {"groups:\n  a:\n    app: site.wsgi\n    listen: :1\n", NULL},
    {"groups:\n  a:\n    app: ./no.wsgi\n    listen: :1\n", "groups.a.app: no such file"},
    {"groups:\n  a:\n    app: examples/hello/app.py\n    listen: :1\n", NULL},

    /* chdir: a directory that is there (helper-62: a missing one passed, and the worker failed). */
    {G "    chdir: examples/hello\n", NULL},
    {G "    chdir: nowhere\n", "5:12: groups.a.chdir: no such directory /"},
    {G "    chdir: examples/hello/nowhere\n",
     "/examples/hello/nowhere: give an existing directory"},
    {G "    chdir: app.py/x\n", "5:12: groups.a.chdir: no such directory /"},
    {G "    chdir: app.py\n", "5:12: groups.a.chdir: /"},
    {G "    chdir: app.py\n", "/app.py is not a directory: give the directory to work in"},
    {G "    mounts: {/b: {app: app.py, chdir: examples}}\n", NULL},
    {G "    mounts: {/b: {app: app.py, chdir: nowhere}}\n",
     "5:39: groups.a.mounts./b.chdir: no such directory /"},
    {G "    mounts: {/b: {app: app.py, chdir: site.wsgi}}\n", "5:39: groups.a.mounts./b.chdir: /"},
};

static void test_table(void)
{
    char err[512];
    wd_config_t conf;
    size_t i;
    int rc;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const config_case_t *c = &cases[i];

        rc = wd_config_load_string(&conf, c->yaml, strlen(c->yaml), FILE_NAME, err, sizeof err);
        if (c->expect == NULL) {
            CHECK(rc == 0, "case %zu should load, got: %s\n---\n%s---", i, err, c->yaml);
        } else {
            CHECK(rc == -1 && strstr(err, c->expect) != NULL &&
                      strncmp(err, FILE_NAME ":", 15) == 0,
                  "case %zu: expected error containing \"%s\", got rc %d \"%s\"\n---\n%s---", i,
                  c->expect, rc, err, c->yaml);
            CHECK(conf.groups == NULL && conf.path == NULL, "case %zu: conf not cleared", i);
        }
        if (getenv("WD_TEST_VERBOSE") != NULL)
            printf("case %zu: %s\n", i, rc == 0 ? "ok" : err);
        wd_config_free(&conf);
    }
}

/* Every numeric group key at each bound: the values given load, one step past either bound is
 * refused with the key's range. ok_lo is 0 for keys where 0 means "off" and the range starts
 * higher (bad_lo is then the first value below the range's start). */
typedef struct bound_case {
    const char *key;
    const char *ok_lo, *lo, *ok_hi;
    const char *bad_lo, *bad_hi; /* NULL: nothing below (the range starts at 0) */
    const char *range;
} bound_case_t;

static const bound_case_t bounds[] = {
    {"maximum-requests", "0", NULL, "1000000000", NULL, "1000000001", "0..1000000000"},
    {"maximum-requests-jitter", "0", NULL, "1000000000", NULL, "18446744073709551615",
     "0..1000000000"},
    {"max-connections", "0", "1", "1000000", NULL, "1000001", "1..1000000"},
    {"restart-interval", "0", "1s", "365d", "0.5", "366d", "0 (off) or 1s..365d"},
    {"inactivity-timeout", "0", "1", "8760h", "999ms", "8761h", "0 (off) or 1s..365d"},
    {"memory-limit", "0", "16M", "1T", "16383K", "1025G", "0 (off) or 16M..1T"},
    {"request-timeout", "0", "100ms", "7d", "99ms", "604801", "0 (off) or 100ms..7d"},
    {"deadlock-timeout", "0", "1s", "1d", "0.5", "86401", "0 (off) or 1s..1d"},
    {"queue-timeout", "0", "1ms", "168h", "999us", "169h", "0 (off) or 1ms..7d"},
    {"startup-timeout", "0", "1s", "1d", "0.9", "1441m", "0 (off) or 1s..1d"},
    {"graceful-timeout", "0", NULL, "24h", NULL, "86401", "0..1d"},
    {"shutdown-timeout", "0", NULL, "86400s", NULL, "99999999999999999999999", "0..1d"},
    {"header-timeout", "0", "100ms", "1d", "50ms", "2d", "100ms..1d"},
    {"body-timeout", "0", "0.1", "1d", "0.09", "86400.5", "100ms..1d"},
    {"keepalive-timeout", "0", "100ms", "1d", "10ms", "100000", "100ms..1d"},
    {"send-timeout", "0", "100ms", "1d", "1us", "25h", "100ms..1d"},
    {"busy-poll", "0", "1us", "1ms", NULL, "1001us", "up to 1ms"},
    {"limit-request-body", "0", "1", "1T", NULL, "1025G", "0 (unlimited) or 1..1T"},
    {"header-buffer-size", "1K", NULL, "1M", "1023", "1025K", "1K..1M"},
    {"body-buffer-size", "0", NULL, "64M", NULL, "65537K", "0..64M"},
    {"body-memory-limit", "1M", NULL, "1T", "1023K", "1025G", "1M..1T"},
    {"body-disk-limit", "1M", NULL, "1T", "1023K", "1025G", "1M..1T"},
    {"response-buffer-size", "4K", NULL, "256M", "4095", "262145K", "4K..256M"},
    {"response-spill-limit", "1T", NULL, "1T", "4095", "1025G", "4K..1T"},
    {"response-memory-limit", "1M", NULL, "1T", "1023K", "1025G", "1M..1T"},
    {"response-disk-limit", "1M", NULL, "1T", "1023K", "1025G", "1M..1T"},
};

static void bound_try(const char *key, const char *value, const char *range)
{
    char yaml[512], err[512], want[256];
    wd_config_t conf;
    int rc;

    snprintf(yaml, sizeof yaml, G "    %s: %s\n", key, value);
    rc = wd_config_load_string(&conf, yaml, strlen(yaml), FILE_NAME, err, sizeof err);
    if (range == NULL) {
        CHECK(rc == 0, "%s: %s should load, got: %s", key, value, err);
    } else {
        snprintf(want, sizeof want, "5:%zu: groups.a.%s: '%s' is out of range (", strlen(key) + 7,
                 key, value);
        CHECK(rc == -1 && strstr(err, want) != NULL && strstr(err, range) != NULL,
              "%s: %s: expected \"%s...%s)\", got rc %d \"%s\"", key, value, want, range, rc, err);
    }
    wd_config_free(&conf);
}

static void test_bounds(void)
{
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        const bound_case_t *b = &bounds[i];

        bound_try(b->key, b->ok_lo, NULL);
        if (b->lo != NULL)
            bound_try(b->key, b->lo, NULL);
        bound_try(b->key, b->ok_hi, NULL);
        if (b->bad_lo != NULL)
            bound_try(b->key, b->bad_lo, b->range);
        bound_try(b->key, b->bad_hi, b->range);
    }
}

static char cwd[PATH_MAX];

static int path_is(const char *got, const char *rel)
{
    char want[PATH_MAX + 64];

    snprintf(want, sizeof want, "%s/%s", cwd, rel);
    if (got == NULL || strcmp(got, want) != 0) {
        printf("  path %s, expected %s\n", got ? got : "(null)", want);
        return 0;
    }
    return 1;
}

static void test_defaults(void)
{
    char err[512];
    wd_config_t conf;
    const wd_group_conf_t *g;
    int rc;

    rc = wd_config_load_string(&conf, G, strlen(G), FILE_NAME, err, sizeof err);
    CHECK(rc == 0, "defaults: %s", err);
    if (rc != 0)
        return;
    CHECK(path_is(conf.path, "configs/t.yaml"), "conf.path");
    CHECK(path_is(conf.dir, "configs"), "conf.dir");
    CHECK(conf.control == NULL && conf.pidfile == NULL && conf.metrics == NULL, "unset paths");
    CHECK(conf.log_level == WD_LOG_INFO, "log level default");
    CHECK(strcmp(conf.log_file, "-") == 0 && strcmp(conf.access_log, "-") == 0, "log defaults");
    CHECK(conf.n_groups == 1, "one group");
    g = &conf.groups[0];
    CHECK(wd_config_group(&conf, "a") == g && wd_config_group(&conf, "b") == NULL, "lookup");
    CHECK(strcmp(g->name, "a") == 0 && g->line == 2, "name, line %d", g->line);
    CHECK(path_is(g->app, "configs/app.py") && g->app_is_script, "app");
    CHECK(strcmp(g->callable, "application") == 0, "callable default");
    CHECK(g->processes == 1 && !g->processes_set && g->threads == 15, "processes, threads");
    CHECK(strcmp(g->display_name, "%{GROUP}") == 0, "display-name default");
    CHECK(g->n_listen == 1 && !g->listen[0].is_unix &&
              strcmp(g->listen[0].host, "127.0.0.1") == 0 && g->listen[0].port == 9001 &&
              strcmp(g->listen[0].spec, "127.0.0.1:9001") == 0,
          "listen");
    CHECK(g->protocol == WD_PROTOCOL_AUTO && g->socket_mode == 0660, "protocol, socket-mode");
    CHECK(g->socket_user == NULL && g->socket_group == NULL && g->user == NULL &&
              g->group == NULL && g->python_home == NULL && g->chdir == NULL &&
              g->n_python_path == 0 && g->n_env == 0,
          "unset");
    CHECK(g->maximum_requests == 0 && g->maximum_requests_jitter == 0 && g->memory_limit == 0,
          "recycling off");
    CHECK(g->restart_interval == 0 && g->inactivity_timeout == 0 && g->request_timeout == 60 &&
              g->queue_timeout == 45 && g->startup_timeout == 15 && g->graceful_timeout == 15 &&
              g->shutdown_timeout == 5 && g->header_timeout == 30 && g->body_timeout == 60 &&
              g->keepalive_timeout == 75 && g->send_timeout == 60 && g->access_log == NULL &&
              g->busy_poll == 10e-6,
          "timeouts");
    CHECK(g->pin_threads == WD_PIN_AUTO, "pin-threads auto");
    CHECK(g->n_mounts == 0 && g->mounts == NULL, "no mounts");
    CHECK(!g->reload_on_change && g->n_watch == 0 && g->watch == NULL, "reload-on-change off");
    CHECK(g->limit_request_body == 10u << 20 && g->header_buffer_size == 64u << 10 &&
              g->body_buffer_size == 1u << 20 && g->body_memory_limit == 64ull << 20 &&
              g->response_buffer_size == 1u << 20 && g->response_spill_limit == 1ull << 30 &&
              g->response_memory_limit == 64ull << 20 && g->response_disk_limit == 1ull << 30 &&
              g->body_disk_limit == 1ull << 30,
          "sizes");
    wd_config_free(&conf);
}

static const char full[] =
    "# every key\n"
    "control: ../run/wsgid.ctl\n"
    "pidfile: run//wsgid.pid\n"
    "log:\n"
    "  level: warn\n"
    "  file: logs/error.log\n"
    "  access: 'off'\n"
    "metrics: '[::1]:9191'\n"
    "agent-check: ':9192'\n"
    "groups:\n"
    "  site1:\n"
    "    app: pkg.wsgi:app\n"
    "    processes: 3\n"
    "    threads: 8\n"
    "    display-name: site one\n"
    "    listen: [unix:run/site1.sock, ':8080', '[::1]:8081', 'localhost:8082']\n"
    "    protocol: http\n"
    "    socket-mode: \"0600\"\n"
    "    socket-user: www-data\n"
    "    socket-group: adm\n"
    "    python-path: [lib, /abs/lib/]\n"
    "    python-home: ./venv\n"
    "    chdir: /tmp\n"
    "    env: {DJANGO_SETTINGS_MODULE: mysite.settings, WORKERS: 4, EMPTY: \"\"}\n"
    "    user: www-data\n"
    "    group: www-data\n"
    "    maximum-requests: 1000\n"
    "    maximum-requests-jitter: 100\n"
    "    restart-interval: 2h\n"
    "    inactivity-timeout: 5m\n"
    "    memory-limit: 512M\n"
    "    request-timeout: 90s\n"
    "    queue-timeout: 250ms\n"
    "    startup-timeout: 1.5\n"
    "    graceful-timeout: 20\n"
    "    shutdown-timeout: 0\n"
    "    busy-poll: 120us\n"
    "    pin-threads: false\n"
    "    limit-request-body: 1G\n"
    "    header-buffer-size: 8k\n"
    "    body-buffer-size: 128KB\n"
    "    response-buffer-size: 2M\n"
    "    response-spill-limit: 3g\n"
    "    mounts: {/m/: app.py, /blog/: 'pkg.blog:make', /x: mod}\n"
    "    reload-on-change: true\n"
    "    watch: ['**/*.py', examples/hello/]\n"
    "  site2:\n"
    "    app: app.py\n"
    "    listen: unix:/tmp/site2.sock\n"
    "    python-path: one\n";

/* A plain YAML false (false, no, off, any case) turns a log off: `access: false` wrote the access
 * log into a file named "false". A quoted one is a file name; a true is refused. */
static void test_log_booleans(void)
{
    static const struct {
        const char *yaml;
        const char *access, *group; /* "off", or the end of the path; NULL: an error */
    } cases[] = {
        {"log: {access: false}\n" G "    access-log: 'off'\n", "off", "off"},
        {G "    access-log: Off\n", "-", "off"},
        {"log: {access: No}\n" G "    access-log: FALSE\n", "off", "off"},
        {"log: {access: 'false'}\n" G, "/false", NULL},
        {"log: {access: true}\n" G, NULL, NULL},
        {G "    access-log: yes\n", NULL, NULL},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512];
        wd_config_t conf;
        int rc = wd_config_load_string(&conf, cases[i].yaml, strlen(cases[i].yaml), FILE_NAME, err,
                                       sizeof err);
        const char *a = cases[i].access;

        if (a == NULL) {
            CHECK(rc < 0 && strstr(err, "expected off, - (standard error) or a file") != NULL,
                  "log case %zu: %s", i, rc < 0 ? err : "loaded");
            continue;
        }
        CHECK(rc == 0, "log case %zu: %s", i, err);
        if (rc != 0)
            continue;
        CHECK(strcmp(conf.access_log, a) == 0 ||
                  (a[0] == '/' && strlen(conf.access_log) > strlen(a) &&
                   strcmp(conf.access_log + strlen(conf.access_log) - strlen(a), a) == 0),
              "log case %zu: access %s", i, conf.access_log);
        if (cases[i].group != NULL)
            CHECK(strcmp(conf.groups[0].access_log, cases[i].group) == 0,
                  "log case %zu: group access %s", i, conf.groups[0].access_log);
        wd_config_free(&conf);
    }
}

/* A Capistrano layout: cap/current -> releases/42, the file cap/releases/42/w.yaml naming
 * ../../shared/app.py. Read as cap/current/w.yaml, ".." is the parent of the link's target, as
 * for the kernel (removed as text, "current/../.." left cap/ and found no such file). */
static void test_dotdot_after_a_symlink(void)
{
    char dir[] = "/tmp/wsgid-unit-XXXXXX", path[256], err[512];
    static const char yaml[] = "groups:\n  a:\n    app: ../../shared/app.py\n";
    wd_config_t conf;
    int rc;
    FILE *f;

    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/cap", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/cap/releases", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/cap/releases/42", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/cap/shared", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/cap/shared/app.py", dir);
    f = fopen(path, "w");
    CHECK(f != NULL, "app.py");
    if (f != NULL)
        fclose(f);
    snprintf(path, sizeof path, "%s/cap/current", dir);
    CHECK(symlink("releases/42", path) == 0, "symlink");
    snprintf(path, sizeof path, "%s/cap/current/w.yaml", dir);
    rc = wd_config_load_string(&conf, yaml, strlen(yaml), path, err, sizeof err);
    CHECK(rc == 0, "through the symlink: %s", err);
    if (rc == 0) {
        CHECK(strcmp(conf.groups[0].app + strlen(dir), "/cap/current/../../shared/app.py") == 0,
              "app %s", conf.groups[0].app);
        wd_config_free(&conf);
    }
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    CHECK(system(path) == 0, "rm");
}

/* Nesting: 64 levels are parsed (and fail here only as YAML that is not closed), 65 are refused at
 * the 65th, and so are 100,000, at once (libyaml's loader took 8 s on them, quadratic in depth). */
static void test_depth(void)
{
    static const struct {
        size_t prefix, open;
        const char *want;
    } cases[] = {
        {1, 63, "configs/t.yaml:2:1: YAML error"},
        {1, 64, "configs/t.yaml:1:67: nested deeper than 64 levels"},
        {0, 100000, "configs/t.yaml:1:65: nested deeper than 64 levels"},
    };
    char err[512];
    wd_config_t conf;
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].prefix * 3 + cases[i].open + 1;
        char *text = malloc(len + 1);
        int rc;

        memcpy(text, "x: ", cases[i].prefix * 3);
        memset(text + cases[i].prefix * 3, '[', cases[i].open);
        strcpy(text + len - 1, "\n");
        rc = wd_config_load_string(&conf, text, len, FILE_NAME, err, sizeof err);
        CHECK(rc == -1 && strncmp(err, cases[i].want, strlen(cases[i].want)) == 0,
              "depth %zu+%zu: %s", cases[i].prefix, cases[i].open, err);
        free(text);
    }
}

/* 1,000 anchors are taken, the 1,001st is refused (libyaml's loader is quadratic in them). */
static void test_anchors(void)
{
    size_t n, i, len;
    char *text = malloc(1001 * 16 + 64), err[512];
    wd_config_t conf;
    int rc;

    for (n = 1000; n <= 1001; n++) {
        len = (size_t)sprintf(text, "groups: [");
        for (i = 0; i < n; i++)
            len += (size_t)sprintf(text + len, "&a%zu 1, ", i);
        len += (size_t)sprintf(text + len, "]\n");
        rc = wd_config_load_string(&conf, text, len, FILE_NAME, err, sizeof err);
        if (n == 1000)
            CHECK(rc == -1 && strstr(err, "groups: expected a mapping") != NULL, "1000: %s", err);
        else
            CHECK(rc == -1 && strcmp(err, "configs/t.yaml:1:8900: more than 1000 YAML anchors "
                                          "(&a1000)") == 0,
                  "1001: %s", err);
    }
    free(text);
}

/* Aliases stand for at most 1,000,000 nodes in all, each counted as its whole node: a
 * python-path of 100,000 given to 9 mounts by alias loads, to 10 is refused at the 10th alias; a
 * "billion laughs" is refused at the alias that crosses the line (an env of 20,000 names given
 * to 2,000 mounts by alias had kept `wsgid --check` busy for over 120 s, at 3.4 GB). */
static void test_aliases(void)
{
    static const char laughs[] = "x0: &a0 [a, a, a, a, a, a, a, a, a, a]\n"
                                 "x1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n"
                                 "x2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n"
                                 "x3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n"
                                 "x4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n"
                                 "x5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]\n"
                                 "x6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]\n";
    size_t n, i, len;
    char *text = malloc(100000 * 10 + 10 * 64 + 256), err[512];
    wd_config_t conf;
    int rc;

    for (n = 9; n <= 10; n++) {
        len = (size_t)sprintf(text, G "    python-path: &p [");
        for (i = 0; i < 100000; i++)
            len += (size_t)sprintf(text + len, "/x%zu, ", i);
        len += (size_t)sprintf(text + len, "]\n    mounts:\n");
        for (i = 0; i < n; i++)
            len += (size_t)sprintf(text + len, "      /m%zu: {app: app.py, python-path: *p}\n", i);
        rc = wd_config_load_string(&conf, text, len, FILE_NAME, err, sizeof err);
        if (n == 9) {
            CHECK(rc == 0 && conf.groups[0].n_mounts == 9 &&
                      conf.groups[0].mounts[8].n_python_path == 100000,
                  "9 aliases: %s", err);
            if (rc == 0)
                wd_config_free(&conf);
        } else {
            CHECK(rc == -1 && strcmp(err, "configs/t.yaml:16:39: YAML aliases stand for more than "
                                          "1000000 nodes in all (a key, a value, a list or a "
                                          "mapping is one; *p alone: 100001); write them out, or "
                                          "alias smaller parts") == 0,
                  "10 aliases: %s", err);
        }
    }
    rc = wd_config_load_string(&conf, laughs, strlen(laughs), FILE_NAME, err, sizeof err);
    CHECK(rc == -1 && strcmp(err, "configs/t.yaml:6:45: YAML aliases stand for more than 1000000 "
                                  "nodes in all (a key, a value, a list or a mapping is one; *a4 "
                                  "alone: 111111); write them out, or alias smaller parts") == 0,
          "laughs: %s", err);
    /* a second document is refused before its anchors count: here the first's *a is of 60,001
     * nodes, and the second's would contain itself */
    len = (size_t)sprintf(text, "k: &a [");
    for (i = 0; i < 60000; i++)
        len += (size_t)sprintf(text + len, "x, ");
    len += (size_t)sprintf(text + len, "]\n---\nj: &a [*a, *a]\n");
    rc = wd_config_load_string(&conf, text, len, FILE_NAME, err, sizeof err);
    CHECK(rc == -1 &&
              strcmp(err, "configs/t.yaml:2:1: only one YAML document is expected in the file") ==
                  0,
          "two documents: %s", err);
    free(text);
}

/* 20,000 apps or groups, then one that repeats the first's mount point or address: found, named
 * at its line. Each was compared with all before it: 40,000 mounts took 6.4 s in `wsgid --check`
 * (now 0.11 s), 40,000 groups 5.3 s (now 0.28 s), 40,000 hosts on one port 15.5 s (now 0.05 s).
 * Item i is printed with the numbers its case says: i, then i + 10,000, or i / 256 and i % 256
 * (not with %N$: glibc's _FORTIFY_SOURCE aborts a format that skips a number, as the Debian
 * package's build of this test did). */
static void test_many(void)
{
    static const struct {
        const char *head, *item, *last, *want;
        int by_256;
    } cases[] = {
        {G "    mounts:\n", "      /m%zu: app.py\n", "      /m0/: app.py\n",
         "configs/t.yaml:20006:7: groups.a.mounts./m0/: mount point /m0 is given twice", 0},
        {"groups:\n", "  g%zu: {app: app.py, listen: [':%zu', unix:s%zu]}\n",
         "  last: {app: app.py, listen: [unix:./s0]}\n",
         "configs/t.yaml:20002:32: groups.last.listen: 'unix:./s0' is already used by group 'g0' "
         "('unix:s0')",
         0},
        {"groups:\n  a:\n    app: app.py\n    listen:\n", "      - 10.0.%zu.%zu:8000\n",
         "  b: {app: app.py, listen: '*:8000'}\n",
         "configs/t.yaml:20005:28: groups.b.listen: '*:8000' is already used by group 'a' "
         "('10.0.0.0:8000')",
         1},
    };
    size_t n = 20000, c, i, len;
    char *text = malloc(n * 96 + 256), err[512];
    wd_config_t conf;
    int rc;

    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        len = (size_t)sprintf(text, "%s", cases[c].head);
        for (i = 0; i < n; i++) {
            if (cases[c].by_256)
                len += (size_t)sprintf(text + len, cases[c].item, i / 256, i % 256);
            else
                len += (size_t)sprintf(text + len, cases[c].item, i, 10000 + i, i);
        }
        len += (size_t)sprintf(text + len, "%s", cases[c].last);
        rc = wd_config_load_string(&conf, text, len, FILE_NAME, err, sizeof err);
        CHECK(rc == -1 && strcmp(err, cases[c].want) == 0, "many %zu: %s", c, err);
    }
    free(text);
}

/* 100,000 top-level keys, the last a repeat of the first: found, named at the right line. */
static void test_many_keys(void)
{
    size_t n = 100000, i, len = 0;
    char *text = malloc(n * 16 + 64), err[512], want[128];
    wd_config_t conf;
    int rc;

    for (i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "k%zu: 1\n", i);
    len += (size_t)sprintf(text + len, "k0: 2\n");
    rc = wd_config_load_string(&conf, text, len, FILE_NAME, err, sizeof err);
    snprintf(want, sizeof want, "configs/t.yaml:%zu:1: k0: duplicate key (first given at line 1,",
             n + 1);
    CHECK(rc == -1 && strncmp(err, want, strlen(want)) == 0, "many keys: %s", err);
    free(text);
}

static void test_full(void)
{
    char err[512];
    wd_config_t conf;
    const wd_group_conf_t *g;
    int rc;

    rc = wd_config_load_string(&conf, full, strlen(full), FILE_NAME, err, sizeof err);
    CHECK(rc == 0, "full: %s", err);
    if (rc != 0)
        return;
    CHECK(path_is(conf.control, "run/wsgid.ctl"), "control");
    CHECK(path_is(conf.pidfile, "configs/run/wsgid.pid"), "pidfile");
    CHECK(conf.log_level == WD_LOG_WARN, "level");
    CHECK(path_is(conf.log_file, "configs/logs/error.log"), "log file");
    CHECK(strcmp(conf.access_log, "off") == 0, "access off");
    CHECK(strcmp(conf.metrics, "[::1]:9191") == 0 && strcmp(conf.metrics_host, "::1") == 0 &&
              conf.metrics_port == 9191,
          "metrics %s", conf.metrics);
    CHECK(conf.agent_check != NULL && conf.agent_port == 9192, "agent-check %s", conf.agent_check);
    CHECK(conf.n_groups == 2, "two groups");
    g = wd_config_group(&conf, "site1");
    CHECK(g == &conf.groups[0] && g->line == 11, "site1");
    CHECK(strcmp(g->app, "pkg.wsgi") == 0 && !g->app_is_script, "module app %s", g->app);
    CHECK(strcmp(g->callable, "app") == 0, "callable from app");
    CHECK(g->processes == 3 && g->processes_set && g->threads == 8, "counts");
    CHECK(strcmp(g->display_name, "site one") == 0, "display-name");
    CHECK(g->n_listen == 4, "4 listen");
    CHECK(g->listen[0].is_unix && path_is(g->listen[0].path, "configs/run/site1.sock") &&
              strcmp(g->listen[0].spec, "unix:run/site1.sock") == 0,
          "unix listen");
    CHECK(strcmp(g->listen[1].host, "0.0.0.0") == 0 && g->listen[1].port == 8080, ":8080");
    CHECK(strcmp(g->listen[2].host, "::1") == 0 && g->listen[2].port == 8081, "[::1]:8081");
    CHECK(strcmp(g->listen[3].host, "localhost") == 0 && g->listen[3].port == 8082, "localhost");
    CHECK(g->protocol == WD_PROTOCOL_HTTP && g->socket_mode == 0600, "protocol, mode");
    CHECK(strcmp(g->socket_user, "www-data") == 0 && strcmp(g->socket_group, "adm") == 0,
          "socket owner");
    CHECK(g->n_python_path == 2 && path_is(g->python_path[0], "configs/lib") &&
              strcmp(g->python_path[1], "/abs/lib") == 0,
          "python-path");
    CHECK(path_is(g->python_home, "configs/venv") && strcmp(g->chdir, "/tmp") == 0, "home, chdir");
    CHECK(g->n_env == 3 && strcmp(g->env[0].name, "DJANGO_SETTINGS_MODULE") == 0 &&
              strcmp(g->env[0].value, "mysite.settings") == 0 &&
              strcmp(g->env[1].value, "4") == 0 && strcmp(g->env[2].value, "") == 0,
          "env");
    CHECK(strcmp(g->user, "www-data") == 0 && strcmp(g->group, "www-data") == 0, "user, group");
    CHECK(g->maximum_requests == 1000 && g->maximum_requests_jitter == 100, "max requests");
    CHECK(g->restart_interval == 7200 && g->inactivity_timeout == 300 && g->request_timeout == 90 &&
              g->queue_timeout == 0.25 && g->startup_timeout == 1.5 && g->graceful_timeout == 20 &&
              g->shutdown_timeout == 0 && fabs(g->busy_poll - 120e-6) < 1e-12,
          "times");
    CHECK(g->pin_threads == 0, "pin-threads off");
    CHECK(g->memory_limit == 512u << 20 && g->limit_request_body == 1u << 30 &&
              g->header_buffer_size == 8192 && g->body_buffer_size == 128u << 10 &&
              g->response_buffer_size == 2u << 20 && g->response_spill_limit == 3ull << 30,
          "sizes");
    CHECK(g->n_mounts == 3 && strcmp(g->mounts[0].prefix, "/m") == 0 &&
              path_is(g->mounts[0].app, "configs/app.py") && g->mounts[0].app_is_script &&
              strcmp(g->mounts[0].callable, "application") == 0 &&
              strcmp(g->mounts[1].prefix, "/blog") == 0 &&
              strcmp(g->mounts[1].app, "pkg.blog") == 0 && !g->mounts[1].app_is_script &&
              strcmp(g->mounts[1].callable, "make") == 0 && strcmp(g->mounts[2].prefix, "/x") == 0,
          "mounts");
    CHECK(g->reload_on_change && g->n_watch == 2 && path_is(g->watch[0], "configs/**/*.py") &&
              path_is(g->watch[1], "configs/examples/hello/**"),
          "reload-on-change, watch");
    g = wd_config_group(&conf, "site2");
    CHECK(g != NULL && !g->reload_on_change && g->n_watch == 0, "site2: reload-on-change off");
    CHECK(g != NULL && path_is(g->app, "configs/app.py") && g->app_is_script && !g->n_mounts &&
              g->n_listen == 1 && strcmp(g->listen[0].path, "/tmp/site2.sock") == 0 &&
              g->n_python_path == 1 && path_is(g->python_path[0], "configs/one") &&
              !g->processes_set,
          "site2");
    wd_config_free(&conf);
}

/* A mount's own settings, the application groups in effect, and the default listen socket. */
static void test_mount_values(void)
{
    static const char text[] =
        "groups:\n"
        "  a:\n"
        "    application-group: shared\n"
        "    mounts:\n"
        "      /p1: {app: app.py, application-group: '%{RESOURCE}', python-path: [one, /x],\n"
        "            env: {K: v}, chdir: examples}\n"
        "      /p2: 'pkg.m:app'\n";
    char err[512];
    wd_config_t conf;
    const wd_group_conf_t *g;
    const wd_mount_conf_t *m;
    int rc;

    unsetenv("RUNTIME_DIRECTORY");
    rc = wd_config_load_string(&conf, text, strlen(text), FILE_NAME, err, sizeof err);
    CHECK(rc == 0, "mount values: %s", err);
    if (rc != 0)
        return;
    g = &conf.groups[0];
    m = &g->mounts[0];
    CHECK(g->app == NULL && g->n_mounts == 2, "only mounts");
    CHECK(strcmp(wd_app_group_of(g, NULL), "shared") == 0, "group's application group");
    CHECK(strcmp(wd_app_group_of(g, m), "%{RESOURCE}") == 0 &&
              strcmp(wd_app_group_of(g, &g->mounts[1]), "shared") == 0,
          "mounts' application groups");
    CHECK(m->n_python_path == 2 && path_is(m->python_path[0], "configs/one") &&
              strcmp(m->python_path[1], "/x") == 0 && m->n_env == 1 &&
              strcmp(m->env[0].name, "K") == 0 && strcmp(m->env[0].value, "v") == 0 &&
              path_is(m->chdir, "configs/examples") && m->line == 5,
          "mount /p1");
    CHECK(strcmp(g->mounts[1].callable, "app") == 0 && g->mounts[1].python_path == NULL,
          "mount /p2");
    CHECK(g->n_listen == 1 && g->listen[0].is_unix &&
              path_is(g->listen[0].path, "configs/a.sock") &&
              strncmp(g->listen[0].spec, "unix:/", 6) == 0,
          "default listen: %s", g->listen[0].path);
    wd_config_free(&conf);

    setenv("RUNTIME_DIRECTORY", "/run/wsgid:/run/other", 1);
    rc = wd_config_load_string(&conf, text, strlen(text), FILE_NAME, err, sizeof err);
    CHECK(rc == 0 && strcmp(conf.groups[0].listen[0].path, "/run/wsgid/a.sock") == 0,
          "default listen under RuntimeDirectory");
    if (rc == 0)
        wd_config_free(&conf);
    unsetenv("RUNTIME_DIRECTORY");
}

/* The example of the repository's config.example.yaml, with its app under configs/examples. */
static const char example[] =
    "control: run/wsgid.ctl\n"
    "pidfile: run/wsgid.pid\n"
    "log: {level: info, file: \"-\", access: \"-\"}\n"
    "groups:\n"
    "  hello: {app: examples/hello/app.py, threads: 4, listen: [unix:run/hello.sock, "
    "127.0.0.1:8080]}\n";

static void test_example(void)
{
    char err[512];
    wd_config_t conf;
    int rc;

    rc = wd_config_load_string(&conf, example, strlen(example), FILE_NAME, err, sizeof err);
    CHECK(rc == 0, "example: %s", err);
    if (rc != 0)
        return;
    CHECK(path_is(conf.groups[0].app, "configs/examples/hello/app.py"), "example app");
    CHECK(conf.groups[0].threads == 4 && conf.groups[0].n_listen == 2, "example group");
    CHECK(strcmp(conf.log_file, "-") == 0 && strcmp(conf.access_log, "-") == 0, "example log");
    wd_config_free(&conf);
}

static void test_app_forms(void)
{
    static const struct {
        const char *app;
        int is_script;
        const char *want_app; /* relative to the cwd when a script */
        const char *callable;
    } t[] = {
        {"app.py", 1, "configs/app.py", "application"},
        {"app.py:handler", 1, "configs/app.py", "handler"},
        {"./examples/../app.py", 1, "configs/app.py", "application"},
        {"site.wsgi", 1, "configs/site.wsgi", "application"},
        {"mysite.wsgi", 0, "mysite.wsgi", "application"},
        {"mysite.wsgi:application", 0, "mysite.wsgi", "application"},
        {"pkg.mod:make_app", 0, "pkg.mod", "make_app"},
        {"hello", 0, "hello", "application"},
    };
    char yaml[256], err[512];
    wd_config_t conf;
    size_t i;
    int rc;

    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        snprintf(yaml, sizeof yaml, "groups:\n  a:\n    app: '%s'\n    listen: :1\n", t[i].app);
        rc = wd_config_load_string(&conf, yaml, strlen(yaml), FILE_NAME, err, sizeof err);
        CHECK(rc == 0, "app '%s': %s", t[i].app, err);
        if (rc == 0) {
            const wd_group_conf_t *g = &conf.groups[0];

            CHECK(g->app_is_script == t[i].is_script, "app '%s': is_script %d", t[i].app,
                  g->app_is_script);
            CHECK(t[i].is_script ? path_is(g->app, t[i].want_app)
                                 : strcmp(g->app, t[i].want_app) == 0,
                  "app '%s': got %s", t[i].app, g->app);
            CHECK(strcmp(g->callable, t[i].callable) == 0, "app '%s': callable %s", t[i].app,
                  g->callable);
        }
        wd_config_free(&conf);
    }
}

/* pin-threads: the word read, each of its spellings. */
static void test_pin_threads(void)
{
    static const struct {
        const char *word;
        int want;
    } t[] = {{"auto", WD_PIN_AUTO}, {"true", WD_PIN_ON}, {"yes", WD_PIN_ON}, {"On", WD_PIN_ON},
             {"false", WD_PIN_OFF}, {"NO", WD_PIN_OFF},  {"off", WD_PIN_OFF}};
    char yaml[256], err[512];
    wd_config_t conf;
    int rc;

    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        snprintf(yaml, sizeof yaml, G "    pin-threads: %s\n", t[i].word);
        rc = wd_config_load_string(&conf, yaml, strlen(yaml), FILE_NAME, err, sizeof err);
        CHECK(rc == 0 && conf.groups[0].pin_threads == t[i].want, "pin-threads: %s: got %d (%s)",
              t[i].word, rc == 0 ? conf.groups[0].pin_threads : -1, rc ? err : "");
        if (rc == 0)
            wd_config_free(&conf);
    }
}

/* How `watch` entries are resolved, and when they turn reload-on-change on. */
static void test_watch(void)
{
    static const char yaml[] = G "    watch: ['**/*.py', examples, examples/hello/, app.py,\n"
                                 "            /srv/x/*.py, ../up/]\n"
                                 "    reload-on-change: no\n";
    static const char *const want[] = {"configs/**/*.py", "configs/examples/**",
                                       "configs/examples/hello/**", "configs/app.py"};
    char err[512];
    wd_config_t conf;
    const wd_group_conf_t *g;
    size_t i;
    int rc;

    rc = wd_config_load_string(&conf, yaml, strlen(yaml), FILE_NAME, err, sizeof err);
    CHECK(rc == 0, "watch: %s", err);
    if (rc == 0) {
        g = &conf.groups[0];
        CHECK(!g->reload_on_change && g->n_watch == 6, "watch: %zu entries", g->n_watch);
        for (i = 0; i < 4 && i < g->n_watch; i++)
            CHECK(path_is(g->watch[i], want[i]), "watch[%zu]", i);
        CHECK(g->n_watch == 6 && strcmp(g->watch[4], "/srv/x/*.py") == 0 &&
                  path_is(g->watch[5], "up/**"),
              "watch: absolute, and a directory with '/'");
    }
    wd_config_free(&conf);

    rc = wd_config_load_string(&conf, G "    watch: app.py\n", strlen(G "    watch: app.py\n"),
                               FILE_NAME, err, sizeof err);
    CHECK(rc == 0 && conf.groups[0].reload_on_change && conf.groups[0].n_watch == 1 &&
              path_is(conf.groups[0].watch[0], "configs/app.py"),
          "watch alone turns reload-on-change on: %s", rc ? err : "");
    wd_config_free(&conf);
}

static void test_prefixes(const char *text)
{
    char err[512];
    wd_config_t conf;
    size_t len, n_ok = 0;
    int rc;

    for (len = 0; len < strlen(text); len++) {
        char *copy = malloc(len ? len : 1); /* exactly len bytes: no NUL after them */

        memcpy(copy, text, len);
        err[0] = '\0';
        rc = wd_config_load_string(&conf, copy, len, FILE_NAME, err, sizeof err);
        CHECK(rc == 0 || (rc == -1 && strncmp(err, FILE_NAME ":", 15) == 0),
              "prefix %zu: rc %d, err \"%s\"", len, rc, err);
        n_ok += rc == 0;
        wd_config_free(&conf);
        free(copy);
    }
    CHECK(n_ok > 0, "some prefix loads");
}

static void test_sizes(void)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t v;
    } t[] = {
        {"0", 0, 0},
        {"512", 0, 512},
        {"1K", 0, 1024},
        {"1k", 0, 1024},
        {"64KB", 0, 65536},
        {"64kb", 0, 65536},
        {"10M", 0, 10u << 20},
        {"1G", 0, 1u << 30},
        {"2T", 0, 2ull << 40},
        {"7B", 0, 7},
        {"18446744073709551615", 0, UINT64_MAX},
        {"", -1, 0},
        {"K", -1, 0},
        {"-1", -1, 0},
        {"+1", -1, 0},
        {" 1", -1, 0},
        {"1 K", -1, 0},
        {"1.5M", -1, 0},
        {"1KK", -1, 0},
        {"1X", -1, 0},
        {"1Bk", -1, 0},
        {"18446744073709551616", -1, 0},
        {"17179869184G", -1, 0},
        {"0x10", -1, 0},
    };
    size_t i;
    uint64_t v;

    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        v = 12345;
        int rc = wd_config_parse_size(t[i].s, &v);

        CHECK(rc == t[i].rc && (rc < 0 || v == t[i].v), "size '%s': rc %d v %llu", t[i].s, rc,
              (unsigned long long)v);
    }
    CHECK(wd_config_parse_size(NULL, &v) == -1, "size NULL");
}

static void test_file(void)
{
    char err[512], *text = NULL;
    size_t len = 0;
    wd_config_t conf;
    FILE *f;
    int rc;

    rc = wd_config_load_file(&conf, "configs/no-such.yaml", &text, &len, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "configs/no-such.yaml") && strstr(err, "No such file"),
          "missing file: %s", err);
    CHECK(text == NULL, "no text on failure");
    wd_config_free(&conf);

    f = fopen("configs/valid.yaml", "rb");
    CHECK(f != NULL, "fixture configs/valid.yaml");
    if (f == NULL)
        return;
    fclose(f);
    rc = wd_config_load_file(&conf, "configs/valid.yaml", &text, &len, err, sizeof err);
    CHECK(rc == 0, "valid.yaml: %s", err);
    CHECK(text != NULL && len == strlen(text) && strstr(text, "groups:") != NULL, "text copy");
    if (rc == 0)
        CHECK(path_is(conf.groups[0].app, "configs/app.py"), "file-relative app");
    wd_config_free(&conf);
    free(text);
    rc = wd_config_load_file(&conf, "configs/valid.yaml", NULL, NULL, err, sizeof err);
    CHECK(rc == 0, "no text_out");
    wd_config_free(&conf);
    CHECK(wd_config_load_string(&conf, "x: 1\n", 5, FILE_NAME, NULL, 0) == -1, "no err buffer");
    CHECK(wd_config_load_file(&conf, "configs/no-such.yaml", NULL, NULL, NULL, 0) == -1,
          "no err buffer (file)");
    rc = wd_config_load_file(&conf, "configs", NULL, NULL, err, sizeof err);
    CHECK(rc == -1 && strncmp(err, "configs:", 8) == 0, "a directory: %s", err);
    wd_config_free(&conf);
}

/* A group's part of the file, as its workers get it (wd_config_split), everything the loader
 * keeps of that group and of the top level, one line each: the part must give the same. */
static void str_line(FILE *f, const char *what, const char *v)
{
    fprintf(f, "%s=%s\n", what, v != NULL ? v : "(null)");
}

static void strs_line(FILE *f, const char *what, char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        str_line(f, what, v[i]);
}

static void env_lines(FILE *f, const wd_env_conf_t *env, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "env %s=%s\n", env[i].name, env[i].value);
}

static char *group_dump(const wd_config_t *c, const wd_group_conf_t *g)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    str_line(f, "control", c->control);
    str_line(f, "pidfile", c->pidfile);
    str_line(f, "log", c->log_file);
    str_line(f, "access", c->access_log);
    str_line(f, "metrics", c->metrics);
    str_line(f, "agent", c->agent_check);
    fprintf(f, "level %d name %s dir %s path %s\n", (int)c->log_level, g->name, c->dir, c->path);
    wd_config_group_numbers(f, g);
    str_line(f, "app", g->app);
    str_line(f, "callable", g->callable);
    str_line(f, "display", g->display_name);
    for (size_t i = 0; i < g->n_listen; i++)
        fprintf(f, "listen %s %s %s %d\n", g->listen[i].spec,
                g->listen[i].path ? g->listen[i].path : "-",
                g->listen[i].host ? g->listen[i].host : "-", g->listen[i].port);
    str_line(f, "socket-user", g->socket_user);
    str_line(f, "socket-group", g->socket_group);
    strs_line(f, "python-path", g->python_path, g->n_python_path);
    str_line(f, "python-home", g->python_home);
    str_line(f, "chdir", g->chdir);
    env_lines(f, g->env, g->n_env);
    str_line(f, "user", g->user);
    str_line(f, "group", g->group);
    str_line(f, "access-log", g->access_log);
    str_line(f, "application-group", g->application_group);
    strs_line(f, "watch", g->watch, g->n_watch);
    fprintf(f, "protocol %d mode %o pin %d json %d trusted %zu\n", (int)g->protocol, g->socket_mode,
            g->pin_threads, g->access_log_json, g->n_trusted_proxies);
    for (size_t i = 0; i < g->n_mounts; i++) {
        const wd_mount_conf_t *m = &g->mounts[i];

        fprintf(f, "mount %s %s %s %s %s\n", m->prefix, m->app, m->callable,
                m->application_group ? m->application_group : "-", m->chdir ? m->chdir : "-");
        strs_line(f, "mount python-path", m->python_path, m->n_python_path);
        env_lines(f, m->env, m->n_env);
    }
    fclose(f);
    return out;
}

static void check_split(const char *what, const char *text)
{
    char err[512];
    wd_config_t whole, part;
    wd_config_part_t *parts = NULL;
    size_t n = 0;

    if (wd_config_load_string_flags(&whole, text, strlen(text), FILE_NAME, WD_CONFIG_NO_FILE_CHECKS,
                                    err, sizeof err) < 0) {
        CHECK(0, "split %s: the file: %s", what, err);
        return;
    }
    CHECK(wd_config_split(text, strlen(text), &parts, &n) == 0 && n == whole.n_groups,
          "split %s: %zu parts for %zu groups", what, n, whole.n_groups);
    for (size_t i = 0; i < n && i < whole.n_groups; i++) {
        char *want, *got;

        CHECK(strcmp(parts[i].group, whole.groups[i].name) == 0, "split %s: part %zu is %s", what,
              i, parts[i].group);
        if (wd_config_load_string_flags(&part, parts[i].text, parts[i].len, FILE_NAME,
                                        WD_CONFIG_NO_FILE_CHECKS, err, sizeof err) < 0) {
            CHECK(0, "split %s: group %s's part: %s\n%s", what, whole.groups[i].name, err,
                  parts[i].text);
            continue;
        }
        CHECK(part.n_groups == 1, "split %s: group %s's part has %zu groups", what,
              whole.groups[i].name, part.n_groups);
        want = group_dump(&whole, &whole.groups[i]);
        got = group_dump(&part, &part.groups[0]);
        CHECK(strcmp(want, got) == 0, "split %s: group %s:\n%s\nwant:\n%s\nthe part:\n%s", what,
              whole.groups[i].name, got, want, parts[i].text);
        free(want);
        free(got);
        wd_config_free(&part);
    }
    wd_config_split_free(parts, n);
    wd_config_free(&whole);
}

static void test_split(void)
{
    /* Another group's secrets stay out; an alias into them still finds its node; null, false,
     * quoted and empty values keep what they mean; flow style, comments, a quoted group name. */
    static const char tricky[] =
        "# the secret is b-secret-pw\n"
        "log: {file: false, access: 'false'}\n"
        "groups:\n"
        "  bee:\n"
        "    app: b.py\n"
        "    listen: 127.0.0.1:9002\n"
        "    env: &shared {DATABASE_PASSWORD: b-secret-pw, EMPTY: '', TILDE: '~', NUL: \"null\"}\n"
        "    python-path: &pp [lib, 'x y', \"tab\\there\"]\n"
        "  'a':\n"
        "    app: a.py\n"
        "    listen: ['127.0.0.1:9001', unix:run/a.sock]\n"
        "    env: *shared\n"
        "    python-path: *pp\n"
        "    display-name: \"%{GROUP}: caf\xc3\xa9 #1\"\n"
        "    mounts:\n"
        "      /x: {app: x.py, env: *shared, python-path: *pp, application-group: '%{RESOURCE}'}\n"
        "      /y: y.py\n"
        "  c: {app: c.py, listen: 127.0.0.1:9003, processes: 2, watch: ['**/*.py'],\n"
        "      trusted-proxies: [10.0.0.0/8, unix], env: {K: \"line\\nbreak\"}}\n";
    wd_config_part_t *parts = NULL;
    size_t n = 0;

    check_split("full", full);
    check_split("example", example);
    check_split("three groups", cases[19].yaml);
    check_split("an empty log:", cases[18].yaml);
    check_split("tricky", tricky);
    if (wd_config_split(tricky, strlen(tricky), &parts, &n) == 0 && n == 3) {
        CHECK(strstr(parts[0].text, "b-secret-pw") != NULL, "bee keeps its own env");
        CHECK(strstr(parts[2].text, "b-secret-pw") == NULL && strstr(parts[2].text, "#") == NULL,
              "c's part has neither bee's secret nor the comment:\n%s", parts[2].text);
        CHECK(strstr(parts[1].text, "bee") == NULL, "a's part names no other group");
    }
    wd_config_split_free(parts, n);
    CHECK(wd_config_split("groups: [\n", 10, &parts, &n) == -1 && parts == NULL && n == 0,
          "a text that is no file: -1");
}

int main(void)
{
    if (getcwd(cwd, sizeof cwd) == NULL)
        return 1;
    test_table();
    test_bounds();
    test_defaults();
    test_full();
    test_log_booleans();
    test_dotdot_after_a_symlink();
    test_depth();
    test_many_keys();
    test_anchors();
    test_aliases();
    test_many();
    test_mount_values();
    test_example();
    test_app_forms();
    test_watch();
    test_pin_threads();
    test_sizes();
    test_file();
    test_split();
    test_prefixes(G);
    test_prefixes(example);
    test_prefixes(cases[17].yaml);
    test_prefixes(full);
    printf("config: %zu table cases, %d checks, %d failures\n", sizeof cases / sizeof cases[0],
           checks, failures);
    return failures ? 1 : 0;
}
