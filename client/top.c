/* wsgictl top and status --requests: see top.h.
 *
 * Every refresh asks the master for one `status` (the same reply as `wsgictl status --json`) and
 * compares it with the previous one: req/s is the difference of a worker's request counter over
 * the time between the two replies, p50/p99 come from the difference of its duration histogram
 * (percentile.h), so they describe the last interval, not the worker's whole life. A worker seen
 * for the first time (a replacement) shows "-" until the next refresh. */
#include "top.h"
#include "ctl.h"
#include "percentile.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUCKETS 32

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A string of the reply, its control characters escaped (ctl.h). */
static const char *jstr(json_t *o, const char *key)
{
    return wd_ctl_safe(json_string_value(json_object_get(o, key)));
}

static long long jint(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static int in_filter(json_t *g, const char *group)
{
    return group == NULL || strcmp(group, jstr(g, "name")) == 0;
}

/* "850us", "12ms", "1.25s": a duration in seconds, short. */
static void fmt_secs(char *buf, size_t len, double s)
{
    if (s < 0)
        snprintf(buf, len, "-");
    else if (s < 0.001)
        snprintf(buf, len, "%.0fus", s * 1e6);
    else if (s < 1)
        snprintf(buf, len, "%.*fms", s < 0.01 ? 1 : 0, s * 1e3);
    else
        snprintf(buf, len, "%.2fs", s);
}

/* ---- a group's or a worker's figures over the last interval ------------------------------- */

typedef struct figures {
    double rate; /* requests per second, -1 = unknown */
    uint64_t buckets[MAX_BUCKETS + 1];
    size_t n_buckets; /* counts in buckets (bounds + 1), 0 = unknown */
} figures_t;

static json_t *find_worker(json_t *status, long long pid)
{
    json_t *g, *w;
    size_t i, k;

    json_array_foreach(json_object_get(status, "groups"), i, g)
    {
        json_array_foreach(json_object_get(g, "workers"), k, w) if (jint(w, "pid") == pid) return w;
    }
    return NULL;
}

/* Adds w's figures since its entry in prev (dt seconds earlier) to f. */
static void worker_delta(figures_t *f, json_t *w, json_t *prev, double dt)
{
    json_t *p = jint(w, "pid") > 0 ? find_worker(prev, jint(w, "pid")) : NULL;
    json_t *cur_b = json_object_get(w, "duration_buckets");
    json_t *old_b = p != NULL ? json_object_get(p, "duration_buckets") : NULL;
    size_t n = json_array_size(cur_b), k;
    long long d;

    if (p == NULL || dt <= 0 || n == 0 || n > MAX_BUCKETS + 1 || json_array_size(old_b) != n)
        return;
    d = jint(w, "requests") - jint(p, "requests");
    f->rate = (f->rate < 0 ? 0 : f->rate) + (d > 0 ? (double)d / dt : 0);
    f->n_buckets = n;
    for (k = 0; k < n; k++) {
        d = json_integer_value(json_array_get(cur_b, k)) -
            json_integer_value(json_array_get(old_b, k));
        f->buckets[k] += d > 0 ? (uint64_t)d : 0;
    }
}

static void fmt_quantile(char *buf, size_t len, const figures_t *f, json_t *status, double q)
{
    json_t *jb = json_object_get(status, "duration_bounds_us");
    double bounds[MAX_BUCKETS], v;
    size_t n = json_array_size(jb), k;
    int over;

    if (f->n_buckets == 0 || n + 1 != f->n_buckets) {
        snprintf(buf, len, "-");
        return;
    }
    for (k = 0; k < n; k++)
        bounds[k] = (double)json_integer_value(json_array_get(jb, k)) / 1e6;
    v = wd_percentile_from_buckets(f->buckets, bounds, n, q, &over);
    if (v < 0) {
        snprintf(buf, len, "-"); /* no request in the interval ("<1.0ms" said there were) */
    } else if (over || (n > 0 && v < bounds[0])) {
        /* Past the last bound, or inside the first bucket, where interpolating from 0 would
         * invent a figure (a site answering in 100 us would show p50 500 us, p99 990 us). */
        buf[0] = over ? '>' : '<';
        fmt_secs(buf + 1, len - 1, over ? v : bounds[0]);
    } else {
        fmt_secs(buf, len, v);
    }
}

/* The width of the name column: the longest group name shown, at least 16 (names were cut at 16,
 * and two long ones that began alike showed as one). */
static int name_width(json_t *status, const char *group)
{
    json_t *g;
    size_t i;
    int w = 16;

    json_array_foreach(json_object_get(status, "groups"), i, g)
    {
        int n = (int)strlen(jstr(g, "name"));

        if (in_filter(g, group) && n > w)
            w = n > 64 ? 64 : n;
    }
    return w;
}

static void print_row(FILE *f, int nw, const char *name, const char *pid, const char *state,
                      const figures_t *fig, json_t *status, long long busy, long long threads,
                      long long queued, double wait, double rss, long long restarts)
{
    char rate[16], p50[16], p99[16], bt[32], w[16];

    if (fig->rate < 0)
        snprintf(rate, sizeof rate, "-");
    else
        snprintf(rate, sizeof rate, "%.1f", fig->rate);
    fmt_quantile(p50, sizeof p50, fig, status, 0.5);
    fmt_quantile(p99, sizeof p99, fig, status, 0.99);
    snprintf(bt, sizeof bt, "%lld/%lld", busy, threads);
    fmt_secs(w, sizeof w, wait);
    fprintf(f, "%-*.*s %7s %-9.9s %8s %9s %6lld %7s %8s %8s %9.1f %8lld\n", nw, nw, name, pid,
            state, rate, bt, queued, wait > 0 ? w : "0", p50, p99, rss, restarts);
}

/* A group's row and, within *rows (0: no limit), its workers' rows; the workers left out are
 * counted in a last line, so that the table fits the terminal. Returns the lines printed. */
static size_t print_group(FILE *f, int nw, json_t *g, json_t *cur, json_t *prev, double dt,
                          size_t rows)
{
    size_t nworkers = json_array_size(json_object_get(g, "workers"));
    figures_t gf, *wf = calloc(nworkers + 1, sizeof *wf);
    json_t *w;
    size_t k, n = 0, lines = 1;
    long long busy = 0, threads = 0, queued = 0;
    double wait = 0, rss = 0;
    char name[64], pid[16];

    if (wf == NULL)
        abort();
    memset(&gf, 0, sizeof gf);
    gf.rate = -1;
    json_array_foreach(json_object_get(g, "workers"), k, w)
    {
        wf[n].rate = -1;
        if (prev != NULL)
            worker_delta(&wf[n], w, prev, dt);
        n++;
        if (prev != NULL)
            worker_delta(&gf, w, prev, dt);
        busy += jint(w, "busy_threads");
        threads += jint(w, "threads");
        queued += jint(w, "queued");
        rss += (double)jint(w, "rss_bytes") / 1048576.0;
        if (json_number_value(json_object_get(w, "queue_wait")) > wait)
            wait = json_number_value(json_object_get(w, "queue_wait"));
    }
    print_row(f, nw, jstr(g, "name"), "",
              json_is_true(json_object_get(g, "stopped")) ? "stopped" : "", &gf, cur, busy, threads,
              queued, wait, rss, jint(g, "restarts"));
    json_array_foreach(json_object_get(g, "workers"), k, w)
    {
        if (rows > 0 && lines + 1 >= rows && k + 1 < n) {
            fprintf(f, "  ... %zu more workers\n", n - k);
            lines++;
            break;
        }
        snprintf(name, sizeof name, "  worker %lld", jint(w, "slot"));
        snprintf(pid, sizeof pid, "%lld", jint(w, "pid"));
        print_row(f, nw, name, jint(w, "pid") > 0 ? pid : "-", jstr(w, "state"), &wf[k], cur,
                  jint(w, "busy_threads"), jint(w, "threads"), jint(w, "queued"),
                  json_number_value(json_object_get(w, "queue_wait")),
                  (double)jint(w, "rss_bytes") / 1048576.0, jint(w, "restarts"));
        lines++;
    }
    free(wf);
    return lines;
}

/* ---- the requests in progress --------------------------------------------------------------- */

typedef struct running {
    json_t *r, *g, *w;
    double age;
} running_t;

static int by_age_desc(const void *a, const void *b)
{
    double x = ((const running_t *)a)->age, y = ((const running_t *)b)->age;

    return x < y ? 1 : x > y ? -1 : 0;
}

void wd_top_print_requests(FILE *f, json_t *status, const char *group, size_t max)
{
    running_t *list = NULL;
    size_t n = 0, cap = 0, i, k, j;
    json_t *g, *w, *r;
    char age[16];
    int nw = name_width(status, group);

    json_array_foreach(json_object_get(status, "groups"), i, g)
    {
        if (!in_filter(g, group))
            continue;
        json_array_foreach(json_object_get(g, "workers"), k, w)
        {
            json_array_foreach(json_object_get(w, "running"), j, r)
            {
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    list = realloc(list, cap * sizeof *list);
                    if (list == NULL)
                        abort();
                }
                list[n++] = (running_t){r, g, w, json_number_value(json_object_get(r, "age"))};
            }
        }
    }
    if (n > 1)
        qsort(list, n, sizeof *list, by_age_desc);
    fprintf(f, "%zu request%s in progress%s\n", n, n == 1 ? "" : "s",
            n > 1 ? ", slowest first" : "");
    if (n > 0)
        fprintf(f, "%8s %-*s %7s %-9s %-16s %-7s %s\n", "AGE", nw, "GROUP", "PID", "THREAD",
                "REQUEST", "METHOD", "PATH");
    for (i = 0; i < n && (max == 0 || i < max); i++) {
        char thread[16];

        fmt_secs(age, sizeof age, list[i].age);
        snprintf(thread, sizeof thread, "py%lld", jint(list[i].r, "thread"));
        fprintf(f, "%8s %-*.*s %7lld %-9s %-16s %-7s %s\n", age, nw, nw, jstr(list[i].g, "name"),
                jint(list[i].w, "pid"), thread, jstr(list[i].r, "id"), jstr(list[i].r, "method"),
                jstr(list[i].r, "path"));
    }
    if (max != 0 && n > max)
        fprintf(f, "%8s ... %zu more\n", "", n - max);
    free(list);
}

/* ---- a snapshot ----------------------------------------------------------------------------- */

/* rows: the terminal's height (0: no limit, not a terminal): the table takes what it needs of
 * it, up to all but 8 lines, and the requests in progress what is left (a group of 256 workers
 * printed 261 lines a refresh on a 24-line terminal, and the header scrolled away). */
static void render(FILE *f, json_t *cur, json_t *prev, double dt, const wd_top_opts_t *o,
                   int interactive, size_t rows)
{
    json_t *g;
    size_t i, used = 0, table = rows > 12 ? rows - 8 : rows > 0 ? 4 : 0;
    char stamp[32];
    time_t t = time(NULL);
    int nw = name_width(cur, o->group);

    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime(&t));
    fprintf(f, "wsgid %s, master pid %lld, %s%s\n", jstr(cur, "version"), jint(cur, "master_pid"),
            stamp, interactive ? "  (q to quit)" : "");
    fprintf(f, "%-*s %7s %-9s %8s %9s %6s %7s %8s %8s %9s %8s\n", nw, "GROUP / WORKER", "PID",
            "STATE", "REQ/S", "BUSY", "QUEUE", "WAIT", "P50", "P99", "RSS(MiB)", "RESTARTS");
    json_array_foreach(json_object_get(cur, "groups"), i, g)
    {
        if (in_filter(g, o->group))
            used += print_group(f, nw, g, cur, prev, dt,
                                table == 0     ? 0
                                : table > used ? table - used
                                               : 1);
    }
    fputc('\n', f);
    wd_top_print_requests(f, cur, o->group, rows == 0 ? 0 : rows > used + 7 ? rows - used - 7 : 1);
}

/* The "status" object of a fresh reply (a new reference), or NULL with *rc set: 3 when wsgid
 * cannot be reached, 1 when it refused (an unknown group). */
static json_t *fetch(const wd_top_opts_t *o, int *rc)
{
    json_t *req = json_pack("{s:s,s:s?}", "cmd", "status", "group", o->group), *reply, *st;

    reply = wd_ctl_call(o->path, req, o->timeout_ms, &stop_signal);
    json_decref(req);
    *rc = stop_signal ? 0 : 3; /* ^C while waiting: the user quits */
    if (reply == NULL)
        return NULL;
    st = json_object_get(reply, "status");
    if (!json_is_true(json_object_get(reply, "ok")) || !json_is_object(st)) {
        fprintf(stderr, "wsgictl top: %s\n", jstr(reply, "error"));
        *rc = 1;
        st = NULL;
    } else {
        json_incref(st);
        *rc = 0;
    }
    json_decref(reply);
    return st;
}

/* ---- the terminal --------------------------------------------------------------------------- */

static struct termios saved_tio;
static int raw_on;

static void raw_restore(void)
{
    if (raw_on) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
        raw_on = 0;
        fputs("\033[?25h", stdout); /* the cursor back */
        fflush(stdout);
    }
}

/* Keys without Enter and without echo; ^C still makes SIGINT (ISIG stays), which we catch. */
static int raw_enter(void)
{
    struct termios t;

    if (tcgetattr(STDIN_FILENO, &saved_tio) < 0)
        return -1;
    t = saved_tio;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0)
        return -1;
    raw_on = 1;
    atexit(raw_restore);
    fputs("\033[?25l", stdout); /* no blinking cursor over the table */
    return 0;
}

static size_t term_rows(void)
{
    struct winsize ws;

    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0)
        return ws.ws_row;
    return 24;
}

/* Waits up to secs for q (1), another key or nothing (0); -1 on a signal. */
static int wait_key(double secs, int interactive)
{
    double until = now_s() + secs, left;
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    char c;

    while (!stop_signal && (left = until - now_s()) > 0) {
        if (!interactive) {
            struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};

            nanosleep(&ts, NULL);
            continue;
        }
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        if (read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q'))
            return 1;
        if (pfd.revents & (POLLHUP | POLLERR))
            return 1;
    }
    return stop_signal ? -1 : 0;
}

int wd_top_run(const wd_top_opts_t *o)
{
    int interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO), printed = 0, rc = 0;
    json_t *prev, *cur;
    double t_prev, t_cur;
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll and nanosleep return at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (interactive && raw_enter() < 0)
        interactive = 0;
    prev = fetch(o, &rc);
    t_prev = now_s();
    if (prev == NULL) {
        raw_restore();
        return rc;
    }
    if (interactive) {
        /* Something to look at at once; the rates come with the next refresh. */
        fputs("\033[H\033[2J", stdout);
        render(stdout, prev, NULL, 0, o, 1, term_rows());
        fflush(stdout);
    }
    for (;;) {
        int k = wait_key(o->interval, interactive);

        if (k != 0)
            break;
        cur = fetch(o, &rc);
        t_cur = now_s();
        if (cur == NULL)
            break;
        if (interactive)
            fputs("\033[H\033[2J", stdout);
        else if (printed > 0)
            fputc('\n', stdout);
        render(stdout, cur, prev, t_cur - t_prev, o, interactive, interactive ? term_rows() : 0);
        fflush(stdout);
        json_decref(prev);
        prev = cur;
        t_prev = t_cur;
        if (o->count > 0 && ++printed >= o->count)
            break;
    }
    json_decref(prev);
    raw_restore();
    if (interactive)
        fputc('\n', stdout);
    return rc;
}
