/* wsgictl: talks to a running wsgid master over its control socket (design §5; the protocol is
 * in daemon/master/control.h: one JSON object per line each way).
 *
 * Exit status: 0 done, 1 the operation failed (a safe restart refused, a reload refused...),
 * 2 usage, 3 the daemon cannot be reached. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

typedef struct verb {
    const char *name;
    const char *usage;
    const char *help;
} verb_t;

static const verb_t verbs[] = {
    {"status", "status [GROUP] [--json]",
     "Shows every group (or GROUP) and its workers: pid, state, requests, busy/total threads,\n"
     "queued requests, RSS, uptime, restarts and the last error. --json prints the JSON of\n"
     "GET /status instead of the table.\n"},
    {"restart", "restart GROUP | --all",
     "Rolling restart: for each worker of the group, starts a replacement, waits until its app\n"
     "has loaded, then lets the old worker finish its requests and exit. If a replacement\n"
     "cannot load the app, stops there: the old workers keep serving, the Python error is\n"
     "printed and the exit status is 1.\n"},
    {"reload", "reload",
     "Re-reads the configuration file: new groups start, removed groups stop, changed groups\n"
     "get a rolling restart. An invalid file is refused (FILE:LINE:COLUMN) and nothing changes.\n"},
    {"stop", "stop [GROUP]",
     "Stops the workers of GROUP gracefully (the group stays known; `start` brings it back);\n"
     "without GROUP, stops wsgid itself as SIGTERM does.\n"},
    {"start", "start GROUP", "Starts a stopped group and waits until its workers are ready.\n"},
    {"drain", "drain [GROUP]",
     "Takes GROUP (or every group) out of load balancing: GET /readyz answers 503 at once while\n"
     "the workers keep serving what still comes, for the group's drain-delay (10 s by default);\n"
     "then the group stops, as with `stop GROUP` (every group: wsgid itself stops). For a load\n"
     "balancer's health check or a Kubernetes readiness probe and preStop hook.\n"},
    {"undrain", "undrain [GROUP]",
     "Cancels a drain before its delay is over: GET /readyz answers 200 again.\n"},
    {"reopen-logs", "reopen-logs",
     "Reopens the log files of the master and of every worker (after logrotate), as SIGUSR1.\n"},
};

#define N_VERBS (sizeof verbs / sizeof verbs[0])

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "Usage: wsgictl [-c FILE | -s SOCKET] COMMAND [ARGS]\n"
               "       wsgictl --version | --help\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE    find the control socket from wsgid's configuration file\n"
               "  -s, --socket SOCKET  the master's control socket\n"
               "                       (default: $WSGID_CONTROL, else ./wsgid.yaml's `control:`)\n"
               "  -v, --version        print the version and exit\n"
               "  -h, --help           print this help and exit\n"
               "\n"
               "Commands (wsgictl COMMAND --help for each):\n");
    for (i = 0; i < N_VERBS; i++)
        fprintf(f, "  %s\n", verbs[i].usage);
    fprintf(f,
            "\nExit status: 0 done, 1 the operation failed, 2 usage, 3 wsgid cannot be reached.\n");
}

/* ---- talking to the master ---------------------------------------------------------------- */

static int connect_to(const char *path)
{
    struct sockaddr_un sun;
    int fd;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Sends the request, waits for the one-line reply (a rolling restart may take a while).
 * Returns the reply, or NULL with a message printed. */
static json_t *call(const char *path, json_t *request)
{
    char *text = json_dumps(request, JSON_COMPACT), *buf = NULL;
    size_t len = 0, cap = 0, off = 0, tlen;
    json_error_t jerr;
    json_t *reply = NULL;
    ssize_t n;
    int fd;

    fd = connect_to(path);
    if (fd < 0) {
        fprintf(stderr, "wsgictl: cannot reach wsgid (is wsgid running?) control socket %s: %s\n",
                path, strerror(errno));
        free(text);
        return NULL;
    }
    tlen = strlen(text);
    text[tlen++] = '\n'; /* json_dumps leaves room: we overwrite its NUL and send tlen bytes */
    while (off < tlen) {
        n = write(fd, text + off, tlen - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            break; /* wsgid answered and closed before reading us (a refusal): read it */
        if (n < 0)
            goto lost;
        off += (size_t)n;
    }
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            if (buf == NULL)
                abort();
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && len == 0)
            goto lost;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memchr(buf + len - (size_t)n, '\n', (size_t)n) != NULL)
            break;
    }
    if (len == 0)
        goto lost;
    buf[len] = '\0';
    reply = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
    if (reply == NULL || !json_is_object(reply)) {
        fprintf(stderr, "wsgictl: cannot understand the reply of wsgid: %s\n", jerr.text);
        json_decref(reply);
        reply = NULL;
    }
    close(fd);
    free(text);
    free(buf);
    return reply;

lost:
    fprintf(stderr, "wsgictl: the connection to wsgid (%s) was lost: %s\n", path,
            errno ? strerror(errno) : "no reply");
    close(fd);
    free(text);
    free(buf);
    return NULL;
}

/* The control socket: -s, $WSGID_CONTROL, or `control:` of -c FILE (default ./wsgid.yaml). */
static char *find_socket(const char *sock, const char *config)
{
    wd_config_t conf;
    char err[1024], *path;

    if (sock != NULL)
        return strdup(sock);
    if (config == NULL && getenv("WSGID_CONTROL") != NULL)
        return strdup(getenv("WSGID_CONTROL"));
    if (config == NULL) {
        if (access("wsgid.yaml", R_OK) != 0) {
            fprintf(stderr, "wsgictl: where is wsgid? use -s SOCKET, -c CONFIG or set "
                            "$WSGID_CONTROL (no ./wsgid.yaml)\n");
            return NULL;
        }
        config = "wsgid.yaml";
    }
    memset(&conf, 0, sizeof conf);
    if (wd_config_load_file(&conf, config, NULL, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "wsgictl: %s\n", err);
        return NULL;
    }
    if (conf.control == NULL) {
        fprintf(stderr, "wsgictl: %s has no `control:` socket\n", config);
        wd_config_free(&conf);
        return NULL;
    }
    path = strdup(conf.control);
    wd_config_free(&conf);
    return path;
}

/* ---- printing ----------------------------------------------------------------------------- */

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

static long long jint(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static void fmt_uptime(char *buf, size_t len, double s)
{
    long t = (long)s;

    if (t < 60)
        snprintf(buf, len, "%lds", t);
    else if (t < 3600)
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, len, "%ldd%02ldh", t / 86400, t / 3600 % 24);
}

static void print_status(json_t *st, const char *only)
{
    json_t *groups = json_object_get(st, "groups"), *g, *w;
    size_t i, k;
    char up[32];

    fmt_uptime(up, sizeof up, json_number_value(json_object_get(st, "uptime")));
    printf("wsgid %s, master pid %lld, up %s\n", jstr(st, "version"), jint(st, "master_pid"), up);
    json_array_foreach(groups, i, g)
    {
        json_t *workers = json_object_get(g, "workers");

        if (only != NULL && strcmp(only, jstr(g, "name")) != 0)
            continue;
        long long resp_mem = 0;

        json_array_foreach(workers, k, w) resp_mem += jint(w, "response_memory");
        printf("\ngroup %s: %lld processes x %lld threads, %lld requests, %lld restarts, %.1f MiB "
               "of responses in memory%s\n",
               jstr(g, "name"), jint(g, "processes"), jint(g, "threads"), jint(g, "requests"),
               jint(g, "restarts"), (double)resp_mem / 1048576.0,
               json_array_size(workers) == 0 ? " (stopped)" : "");
        if (json_is_true(json_object_get(g, "draining")))
            printf("  draining: not ready for load balancers, still serving; stops in %.0f s "
                   "(wsgictl undrain %s keeps it)\n",
                   json_real_value(json_object_get(g, "drain_left")), jstr(g, "name"));
        if (json_is_string(json_object_get(g, "reload_error")))
            printf("  reload failed (the old workers keep serving): %s\n", jstr(g, "reload_error"));
        if (json_array_size(workers) == 0)
            continue;
        printf("  %4s %8s %-9s %9s %9s %6s %9s %8s %8s  %s\n", "SLOT", "PID", "STATE", "REQUESTS",
               "BUSY", "QUEUED", "RSS(MiB)", "UPTIME", "RESTARTS", "LAST ERROR");
        json_array_foreach(workers, k, w)
        {
            char busy[32];

            snprintf(busy, sizeof busy, "%lld/%lld", jint(w, "busy_threads"), jint(w, "threads"));
            fmt_uptime(up, sizeof up, json_number_value(json_object_get(w, "uptime")));
            printf("  %4lld %8lld %-9s %9lld %9s %6lld %9.1f %8s %8lld  %s\n", jint(w, "slot"),
                   jint(w, "pid"), jstr(w, "state"), jint(w, "requests"), busy, jint(w, "queued"),
                   (double)jint(w, "rss_bytes") / 1048576.0, jint(w, "pid") ? up : "-",
                   jint(w, "restarts"), jstr(w, "last_error"));
            if (json_is_string(json_object_get(w, "last_restart")))
                printf("  %4s %8s last restart: %s\n", "", "", jstr(w, "last_restart"));
        }
    }
}

static void print_replaced(json_t *reply)
{
    json_t *r;
    size_t i;

    json_array_foreach(json_object_get(reply, "replaced"), i, r)
    {
        if (jint(r, "old_pid") > 0)
            printf("%s slot %lld: pid %lld \u2192 %lld\n", jstr(r, "group"), jint(r, "slot"),
                   jint(r, "old_pid"), jint(r, "new_pid"));
        else
            printf("%s slot %lld: started pid %lld\n", jstr(r, "group"), jint(r, "slot"),
                   jint(r, "new_pid"));
    }
}

static void print_list(json_t *reply, const char *key, const char *label)
{
    json_t *a = json_object_get(reply, key), *x;
    size_t i;

    if (json_array_size(a) == 0)
        return;
    printf("%s:", label);
    json_array_foreach(a, i, x) printf(" %s", json_string_value(x));
    printf("\n");
}

/* ---- verbs -------------------------------------------------------------------------------- */

static int verb_usage(const verb_t *v, const char *msg)
{
    if (msg != NULL)
        fprintf(stderr, "wsgictl %s: %s\nUsage: wsgictl [-c FILE | -s SOCKET] %s\n", v->name, msg,
                v->usage);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"socket", required_argument, NULL, 's'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *sock = NULL, *group = NULL;
    const verb_t *v = NULL;
    int c, i, as_json = 0, all = 0, rc;
    json_t *req, *reply;
    char *path;

    /* A write to a master that already closed (it refused us) must not kill us: see call(). */
    signal(SIGPIPE, SIG_IGN);

    /* '+': stop at the verb, so that its own options (--json, --all) are left to it. */
    while ((c = getopt_long(argc, argv, "+c:s:vh", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'v':
            printf("wsgictl %s\n", WD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (config != NULL && sock != NULL) {
        fprintf(stderr, "wsgictl: -c and -s are exclusive\n");
        return EXIT_USAGE;
    }
    if (optind >= argc) {
        fprintf(stderr, "wsgictl: no command given\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    for (size_t k = 0; k < N_VERBS; k++)
        if (strcmp(argv[optind], verbs[k].name) == 0)
            v = &verbs[k];
    if (v == NULL) {
        fprintf(stderr, "wsgictl: unknown command \"%s\"\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    for (i = optind + 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: wsgictl [-c FILE | -s SOCKET] %s\n\n%s", v->usage, v->help);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0 && strcmp(v->name, "status") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--all") == 0 && strcmp(v->name, "restart") == 0) {
            all = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "wsgictl %s: unknown option %s\n", v->name, argv[i]);
            return verb_usage(v, "see --help");
        } else if (group == NULL && strcmp(v->name, "reload") != 0 &&
                   strcmp(v->name, "reopen-logs") != 0) {
            group = argv[i];
        } else {
            return verb_usage(v, "too many arguments");
        }
    }
    if (strcmp(v->name, "restart") == 0 && (group == NULL) == (all == 0))
        return verb_usage(v, all ? "a GROUP or --all, not both" : "which group? (or --all)");
    if (strcmp(v->name, "start") == 0 && group == NULL)
        return verb_usage(v, "which group?");

    path = find_socket(sock, config);
    if (path == NULL)
        return sock == NULL && config == NULL ? EXIT_USAGE : EXIT_UNREACHABLE;
    req = json_pack("{s:s,s:s?,s:b}", "cmd", v->name, "group", group, "all", all);
    if (group == NULL)
        json_object_set_new(req, "group", json_null());
    {
        struct timespec t0, t1;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        reply = call(path, req);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        json_decref(req);
        free(path);
        if (reply == NULL)
            return EXIT_UNREACHABLE;
        rc = json_is_true(json_object_get(reply, "ok")) ? 0 : EXIT_FAILED;
        if (strcmp(v->name, "status") == 0 && rc == 0) {
            json_t *st = json_object_get(reply, "status");

            if (as_json) {
                char *text = json_dumps(st, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

                printf("%s\n", text);
                free(text);
            } else {
                print_status(st, group);
            }
        } else if (rc == 0) {
            print_list(reply, "added", "added");
            print_list(reply, "removed", "removed");
            print_list(reply, "restarted", "restarted");
            print_list(reply, "unchanged", "unchanged");
            print_replaced(reply);
            if (json_object_get(reply, "replaced") != NULL)
                printf("%s: %zu workers replaced in %.2f s\n", v->name,
                       json_array_size(json_object_get(reply, "replaced")),
                       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
            else
                printf("%s: done\n", v->name);
        } else {
            print_replaced(reply);
            fprintf(stderr, "wsgictl %s: %s\n", v->name, jstr(reply, "error"));
        }
        json_decref(reply);
    }
    return rc;
}
