/* wsgictl: talks to a running wsgid master over its control socket (design §5; the protocol is
 * in daemon/master/control.h: one JSON object per line each way).
 *
 * Exit status: 0 done, 1 the operation failed (a safe restart refused, a reload refused...),
 * 2 usage, 3 the daemon cannot be reached. */
#include "config.h"
#include "ctl.h"
#include "top.h"

#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

typedef struct verb {
    const char *name;
    const char *usage;
    const char *help;
} verb_t;

static const verb_t verbs[] = {
    {"status", "status [GROUP] [--json | --requests]",
     "Shows every group (or GROUP) and its workers: pid, state, requests, busy/total threads,\n"
     "queued requests, RSS, uptime, restarts and the last error. --json prints the JSON of\n"
     "GET /status instead of the table (with each worker's requests in progress and duration\n"
     "histogram). --requests prints the requests in progress instead, slowest first: age,\n"
     "group, worker pid, Python thread, request id, method and path.\n"},
    {"top", "top [GROUP] [--count N] [--interval SECONDS]",
     "A live view, refreshed every second (--interval): per group and worker, requests per\n"
     "second, busy/total threads, queued requests and the longest wait in the queue, p50 and\n"
     "p99 latency (over the last interval, from the duration histogram), RSS and restarts;\n"
     "below, the requests in progress, slowest first. q quits. When stdout is not a terminal,\n"
     "prints a plain snapshot every interval, N of them with --count N (else until killed);\n"
     "each snapshot covers the interval before it.\n"},
    {"stacks", "stacks GROUP",
     "Prints the Python stack of every thread of each worker of GROUP (as py-spy dump would),\n"
     "one section per worker, each thread named (wsgid-py1...) with the request it runs. The\n"
     "dump is made by faulthandler from a signal handler, without the GIL, so it works when a\n"
     "thread holds the GIL in C code; threads serving a sub-interpreter's request show\n"
     "without their Python frames. A worker from which nothing came for 2 s (one still writing\n"
     "is waited for, 20 s in all) is named and the exit status is 1; so is it for a group\n"
     "without a running worker (stopped, backing off).\n"},
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
     "without GROUP, stops wsgid itself as SIGTERM does, and returns once it has stopped (its\n"
     "workers finished their requests and exited).\n"},
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

    fprintf(f, "Usage: wsgictl [-c FILE | -s SOCKET] [-t SECS] COMMAND [ARGS]\n"
               "       wsgictl --version | --help\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE    find the control socket from wsgid's configuration file\n"
               "  -s, --socket SOCKET  the master's control socket\n"
               "                       (default: $WSGID_CONTROL, else ./wsgid.yaml's `control:`)\n"
               "  -t, --timeout SECS   wait at most SECS for wsgid's answer (0: as long as it\n"
               "                       takes); default 10 for status, top, drain, undrain and\n"
               "                       reopen-logs, 30 for stacks, none for the others\n"
               "  -v, --version        print the version and exit\n"
               "  -h, --help           print this help and exit\n"
               "\n"
               "Commands (wsgictl COMMAND --help for each):\n");
    for (i = 0; i < N_VERBS; i++)
        fprintf(f, "  %s\n", verbs[i].usage);
    fprintf(f, "A GROUP that starts with '-' goes after \"--\": wsgictl restart -- -x\n");
    fprintf(f,
            "\nExit status: 0 done, 1 the operation failed, 2 usage, 3 wsgid cannot be reached.\n");
}

/* ---- printing ----------------------------------------------------------------------------- */

/* A string of the reply, its control characters escaped (ctl.h). */
static const char *jstr(json_t *o, const char *key)
{
    return wd_ctl_safe(json_string_value(json_object_get(o, key)));
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
        long long resp_mem = 0, body_mem = 0, resp_disk = 0, body_disk = 0;
        char disk[64] = "", bdisk[64] = "";

        json_array_foreach(workers, k, w)
        {
            resp_mem += jint(w, "response_memory");
            resp_disk += jint(w, "response_disk");
            body_mem += jint(w, "body_memory");
            body_disk += jint(w, "body_disk");
        }
        if (resp_disk > 0) /* responses their clients read slower than the app writes them */
            snprintf(disk, sizeof disk, ", %.1f MiB of responses in temp files",
                     (double)resp_disk / 1048576.0);
        if (body_disk > 0) /* request bodies larger than body-buffer-size, or past its budget */
            snprintf(bdisk, sizeof bdisk, ", %.1f MiB of request bodies in temp files",
                     (double)body_disk / 1048576.0);
        printf("\ngroup %s: %lld processes x %lld threads, %lld requests, %lld restarts, %.1f MiB "
               "of responses and %.1f MiB of request bodies in memory%s%s%s\n",
               jstr(g, "name"), jint(g, "processes"), jint(g, "threads"), jint(g, "requests"),
               jint(g, "restarts"), (double)resp_mem / 1048576.0, (double)body_mem / 1048576.0,
               disk, bdisk, json_array_size(workers) == 0 ? " (stopped)" : "");
        if (json_is_true(json_object_get(g, "draining")))
            printf("  draining: not ready for load balancers, still serving; stops in %.0f s "
                   "(wsgictl undrain %s keeps it)\n",
                   json_real_value(json_object_get(g, "drain_left")), jstr(g, "name"));
        if (json_is_string(json_object_get(g, "reload_error"))) {
            const char *op =
                json_is_string(json_object_get(g, "failed_op")) ? jstr(g, "failed_op") : "reload";

            printf("  %s failed (%s): %s\n", op,
                   strcmp(op, "start") == 0 ? "the group stays stopped"
                                            : "the old workers keep serving",
                   jstr(g, "reload_error"));
        }
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
    json_array_foreach(a, i, x) printf(" %s", wd_ctl_safe(json_string_value(x)));
    printf("\n");
}

/* ---- wsgictl stacks ------------------------------------------------------------------------ */

/* One section per worker: its pid, then faulthandler's dump of its Python threads (each thread
 * line says which wsgid thread it is and the request it runs, when the master knows). Returns 0,
 * or EXIT_FAILED when a worker did not answer or had nothing to dump (still setting Python up);
 * why (the master's "error") goes to stderr too, where `wsgictl stacks site > dump` said
 * nothing. */
static int print_stacks(json_t *reply)
{
    json_t *w;
    size_t i;
    int rc = 0;

    json_array_foreach(json_object_get(reply, "workers"), i, w)
    {
        const char *text = jstr(w, "stacks");
        int answered = json_is_true(json_object_get(w, "answered"));

        printf("%s== group %s worker %lld (pid %lld)%s\n", i > 0 ? "\n" : "", jstr(w, "group"),
               jint(w, "slot"), jint(w, "pid"), answered ? "" : ": no answer (what came is below)");
        if (!answered || *jstr(w, "error"))
            rc = EXIT_FAILED;
        if (*jstr(w, "error")) {
            printf("%s\n", jstr(w, "error"));
            fprintf(stderr, "wsgictl stacks: group %s %s\n", jstr(w, "group"), jstr(w, "error"));
        }
        fputs(text, stdout);
        if (*text && text[strlen(text) - 1] != '\n')
            fputc('\n', stdout);
    }
    return rc;
}

/* ---- verbs -------------------------------------------------------------------------------- */

static int verb_usage(const verb_t *v, const char *msg)
{
    if (msg != NULL)
        fprintf(stderr, "wsgictl %s: %s\nUsage: wsgictl [-c FILE | -s SOCKET] %s\n", v->name, msg,
                v->usage);
    return EXIT_USAGE;
}

/* What follows the verb. */
typedef struct args {
    const verb_t *v;
    const char *group;
    int as_json, all, requests;
    int count;
    double interval;
    double timeout; /* -t: seconds, -1 = the command's default */
} args_t;

static int is(const args_t *a, const char *name)
{
    return strcmp(a->v->name, name) == 0;
}

/* The value of --NAME VALUE or --NAME=VALUE at argv[*i] (moving *i past it), else NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0' || *i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

/* Parses the verb's arguments; returns -1 when done (--help printed), else an exit status > 0
 * for a usage error, or 0. */
static int parse_args(args_t *a, int argc, char **argv, int first)
{
    const char *val;
    char *end;

    a->interval = 1;
    /* --help wins wherever it is, whatever else is given, up to a "--" */
    for (int i = first; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: wsgictl [-c FILE | -s SOCKET] %s\n\n%s", a->v->usage, a->v->help);
            return -1;
        }
    }
    /* After "--", a GROUP that starts with '-' (a name the config takes: "-x", "--all") */
    for (int i = first, operands = 0; i < argc; i++) {
        if (operands) {
            if (a->group != NULL || is(a, "reload") || is(a, "reopen-logs"))
                return verb_usage(a->v, "too many arguments");
            a->group = argv[i];
        } else if (strcmp(argv[i], "--") == 0) {
            operands = 1;
        } else if ((strcmp(argv[i], "--count") == 0 || strcmp(argv[i], "--interval") == 0) &&
                   is(a, "top") && i + 1 >= argc) {
            fprintf(stderr, "wsgictl top: %s wants a value\n", argv[i]);
            return verb_usage(a->v, "see --help");
        } else if (strcmp(argv[i], "--json") == 0 && is(a, "status")) {
            a->as_json = 1;
        } else if (strcmp(argv[i], "--requests") == 0 && is(a, "status")) {
            a->requests = 1;
        } else if (strcmp(argv[i], "--all") == 0 && is(a, "restart")) {
            a->all = 1;
        } else if (is(a, "top") && (val = opt_value(argc, argv, &i, "--count")) != NULL) {
            a->count = (int)strtol(val, &end, 10);
            if (*val == '\0' || *end != '\0' || a->count < 0)
                return verb_usage(a->v, "--count wants a number of snapshots (0 = no end)");
        } else if (is(a, "top") && (val = opt_value(argc, argv, &i, "--interval")) != NULL) {
            a->interval = strtod(val, &end);
            if (*val == '\0' || *end != '\0' || !(a->interval >= 0.1 && a->interval <= 3600))
                return verb_usage(a->v, "--interval wants seconds, 0.1 to 3600");
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "wsgictl %s: unknown option %s\n", a->v->name, argv[i]);
            return verb_usage(a->v, "see --help");
        } else if (a->group == NULL && !is(a, "reload") && !is(a, "reopen-logs")) {
            a->group = argv[i];
        } else {
            return verb_usage(a->v, "too many arguments");
        }
    }
    if (is(a, "restart") && (a->group == NULL) == (a->all == 0))
        return verb_usage(a->v, a->all ? "a GROUP or --all, not both" : "which group? (or --all)");
    if ((is(a, "start") || is(a, "stacks")) && a->group == NULL)
        return verb_usage(a->v, "which group?");
    if (a->as_json && a->requests)
        return verb_usage(a->v, "--json or --requests, not both (the JSON has the requests)");
    return 0;
}

/* Prints what the master answered; returns the exit status. */
static int print_reply(const args_t *a, json_t *reply, double secs)
{
    int rc = json_is_true(json_object_get(reply, "ok")) ? 0 : EXIT_FAILED;
    json_t *st = json_object_get(reply, "status");

    if (rc != 0) {
        print_replaced(reply);
        fprintf(stderr, "wsgictl %s: %s\n", a->v->name, jstr(reply, "error"));
    } else if (is(a, "status") && a->as_json) {
        char *text;

        if (a->group != NULL) {
            /* GROUP's alone, as the table (every group came, and jq '.groups[0]' read another) */
            json_t *only = json_array(), *g;
            size_t i;

            json_array_foreach(json_object_get(st, "groups"), i, g)
            {
                const char *name = json_string_value(json_object_get(g, "name"));

                if (name != NULL && strcmp(name, a->group) == 0)
                    json_array_append(only, g);
            }
            json_object_set_new(st, "groups", only);
        }
        text = json_dumps(st, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text);
        free(text);
    } else if (is(a, "status") && a->requests) {
        wd_top_print_requests(stdout, st, a->group, 0);
    } else if (is(a, "status")) {
        print_status(st, a->group);
    } else if (is(a, "stacks")) {
        rc = print_stacks(reply);
    } else {
        print_list(reply, "added", "added");
        print_list(reply, "removed", "removed");
        print_list(reply, "restarted", "restarted");
        print_list(reply, "unchanged", "unchanged");
        print_list(reply, "changed_stopped", "changed, stopped (the new config at its start)");
        print_list(reply, "not_restarted",
                   "stopped, not restarted (wsgictl start GROUP starts one)");
        if (json_array_size(json_object_get(reply, "renamed")) > 0) {
            json_t *x;
            size_t i;

            printf("renamed:");
            json_array_foreach(json_object_get(reply, "renamed"), i, x)
                printf(" %s -> %s", jstr(x, "from"), jstr(x, "to"));
            printf("\n");
        }
        if (json_array_size(json_object_get(reply, "at_next_start")) > 0) {
            json_t *x;
            size_t i;

            fprintf(stderr, "wsgictl %s: not applied until wsgid restarts:", a->v->name);
            json_array_foreach(json_object_get(reply, "at_next_start"), i, x)
                fprintf(stderr, " %s", wd_ctl_safe(json_string_value(x)));
            fprintf(stderr, "\n");
        }
        print_replaced(reply);
        if (json_object_get(reply, "replaced") != NULL)
            printf("%s: %zu workers %s in %.2f s\n", a->v->name,
                   json_array_size(json_object_get(reply, "replaced")),
                   is(a, "start") ? "started" : "replaced", secs);
        else if (is(a, "stop") && a->group == NULL)
            printf("stop: wsgid stopped in %.2f s\n", secs);
        else
            printf("%s: done\n", a->v->name);
    }
    return rc;
}

/* Sends the verb's request and prints the reply. */
static int run(const args_t *a, const char *path)
{
    struct timespec t0, t1;
    json_t *req, *reply;
    int rc, timeout_ms = 0;

    if (is(a, "top")) {
        wd_top_opts_t o = {path, a->group, a->count, a->interval,
                           a->timeout < 0                         ? WD_CTL_QUERY_TIMEOUT_MS
                           : a->timeout > 0 && a->timeout < 0.001 ? 1
                                                                  : (int)(a->timeout * 1000)};

        return wd_top_run(&o);
    }
    /* a query has its answer at once unless the master is stuck: then say so, not wait for
     * ever; an operation takes as long as its workers take to load */
    if (a->timeout >= 0)
        timeout_ms = a->timeout > 0 && a->timeout < 0.001 ? 1 : (int)(a->timeout * 1000);
    else if (is(a, "stacks"))
        timeout_ms = 30000;
    else if (is(a, "status") || is(a, "drain") || is(a, "undrain") || is(a, "reopen-logs"))
        timeout_ms = WD_CTL_QUERY_TIMEOUT_MS;
    req = json_pack("{s:s,s:s?,s:b}", "cmd", a->v->name, "group", a->group, "all", a->all);
    if (a->group == NULL)
        json_object_set_new(req, "group", json_null());
    clock_gettime(CLOCK_MONOTONIC, &t0);
    reply = wd_ctl_call(path, req, timeout_ms, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    json_decref(req);
    if (reply == NULL)
        return EXIT_UNREACHABLE;
    if (json_is_true(json_object_get(reply, "unreachable"))) { /* too many connections open */
        fprintf(stderr, "wsgictl %s: %s\n", a->v->name, jstr(reply, "error"));
        json_decref(reply);
        return EXIT_UNREACHABLE;
    }
    rc = print_reply(a, reply, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    json_decref(reply);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},  {"socket", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'}, {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *sock = NULL;
    double timeout = -1;
    args_t a;
    int c, rc;
    char *path, *end;

    /* A write to a master that already closed (it refused us) must not kill us: see ctl.c. */
    signal(SIGPIPE, SIG_IGN);

    /* '+': stop at the verb, so that its own options (--json, --all) are left to it. */
    while ((c = getopt_long(argc, argv, "+c:s:t:vh", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 't':
            timeout = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(timeout >= 0 && timeout <= 86400)) {
                fprintf(stderr, "wsgictl: --timeout wants seconds, 0 (no limit) to 86400\n");
                return EXIT_USAGE;
            }
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
    memset(&a, 0, sizeof a);
    for (size_t k = 0; k < N_VERBS; k++)
        if (strcmp(argv[optind], verbs[k].name) == 0)
            a.v = &verbs[k];
    if (a.v == NULL) {
        fprintf(stderr, "wsgictl: unknown command \"%s\"\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    a.timeout = timeout;
    rc = parse_args(&a, argc, argv, optind + 1);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    path = wd_ctl_find_socket(sock, config);
    if (path == NULL)
        return sock == NULL && config == NULL ? EXIT_USAGE : EXIT_UNREACHABLE;
    rc = run(&a, path);
    free(path);
    return rc;
}
