/* The renderings of a status snapshot: see status.h.
 *
 * A group's counters are those of its workers that have exited (past_*, kept by the master) plus
 * those of its live workers, read from their scoreboard records; so a counter never goes
 * backwards when a worker is replaced. */
#include "status.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t bucket_bounds_us[WD_SCORE_BUCKETS] = WD_SCORE_BUCKET_BOUNDS_US;

/* The states a worker may be in, so that wsgid_workers shows each of them, even at 0. */
static const char *const worker_states[] = {"starting", "ready", "draining", "backoff", "crashed"};

/* What a group adds up to: its past counters plus its live workers' scores. */
typedef struct totals {
    uint64_t requests;
    uint64_t status[6];
    uint64_t bucket[WD_SCORE_BUCKETS + 1];
    uint64_t duration_sum_us;
    uint64_t bytes_sent;
    uint64_t timeouts;
    uint64_t accept_empty;
    uint64_t balance_closes;
    uint64_t threads;
    uint64_t busy_threads;
    uint64_t queued;
    uint64_t connections;
    uint64_t response_memory;
    uint64_t response_disk;
    uint64_t body_memory;
    uint64_t body_disk;
} totals_t;

static int in_group(const wd_status_worker_t *w, const wd_status_group_t *g)
{
    return w->group != NULL && g->name != NULL && strcmp(w->group, g->name) == 0;
}

static void group_totals(const wd_status_t *st, const wd_status_group_t *g, totals_t *t)
{
    const wd_score_t *s;
    size_t i, k;

    memset(t, 0, sizeof *t);
    t->requests = g->past_requests;
    memcpy(t->status, g->past_status, sizeof t->status);
    memcpy(t->bucket, g->past_duration_bucket, sizeof t->bucket);
    t->duration_sum_us = g->past_duration_sum_us;
    t->bytes_sent = g->past_bytes_sent;
    t->timeouts = g->past_timeouts;
    t->accept_empty = g->past_accept_empty;
    t->balance_closes = g->past_balance_closes;
    for (i = 0; i < st->n_workers; i++) {
        s = st->workers[i].score;
        if (s == NULL || !in_group(&st->workers[i], g))
            continue;
        t->requests += wd_score_get(&s->requests);
        for (k = 0; k < 6; k++)
            t->status[k] += wd_score_get(&s->status[k]);
        for (k = 0; k <= WD_SCORE_BUCKETS; k++)
            t->bucket[k] += wd_score_get(&s->duration_bucket[k]);
        t->duration_sum_us += wd_score_get(&s->duration_sum_us);
        t->bytes_sent += wd_score_get(&s->bytes_sent);
        t->timeouts += wd_score_get(&s->timeouts);
        t->accept_empty += wd_score_get(&s->accept_empty);
        t->balance_closes += wd_score_get(&s->balance_closes);
        t->threads += wd_score_get(&s->threads);
        t->busy_threads += wd_score_get(&s->busy_threads);
        t->queued += wd_score_get(&s->queued);
        t->connections += wd_score_get(&s->connections);
        t->response_memory += wd_score_get(&s->response_memory);
        t->response_disk += wd_score_get(&s->response_disk);
        t->body_memory += wd_score_get(&s->body_memory);
        t->body_disk += wd_score_get(&s->body_disk);
    }
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static void *xjson(void *v)
{
    if (v == NULL)
        abort(); /* jansson fails only on out-of-memory with the values we give it */
    return v;
}

/* A JSON string, or null for NULL. Bytes that are not UTF-8 (a Python error message may carry
 * any) become '?', so that the document stays valid. */
static json_t *jstr(const char *s)
{
    json_t *v;
    char *copy;
    size_t i;

    if (s == NULL)
        return json_null();
    v = json_string(s);
    if (v != NULL)
        return v;
    copy = xjson(strdup(s));
    for (i = 0; copy[i] != '\0'; i++)
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    v = xjson(json_string(copy));
    free(copy);
    return v;
}

static json_t *jint(uint64_t n)
{
    return xjson(json_integer((json_int_t)n));
}

static void set(json_t *obj, const char *key, json_t *v)
{
    if (json_object_set_new(obj, key, xjson(v)) < 0)
        abort();
}

/* The requests its Python threads run, as {thread, thread_ident, id, method, path, age}. */
static json_t *running_json(const wd_score_t *s, uint64_t now)
{
    json_t *a = xjson(json_array());
    wd_score_running_t r;
    char ident[24];

    for (size_t i = 0; s != NULL && i < WD_SCORE_RUNNING; i++) {
        json_t *o;

        if (!wd_score_running_read(&s->running[i], &r))
            continue;
        o = xjson(json_object());
        snprintf(ident, sizeof ident, "0x%016llx", (unsigned long long)r.thread_ident);
        set(o, "thread", jint(i + 1));
        set(o, "thread_ident", jstr(ident));
        set(o, "id", jstr(r.id));
        set(o, "method", jstr(r.method));
        set(o, "path", jstr(r.path));
        set(o, "age", json_real(now > r.start_ns ? (double)(now - r.start_ns) / 1e9 : 0.0));
        if (json_array_append_new(a, o) < 0)
            abort();
    }
    return a;
}

static json_t *buckets_json(const wd_score_t *s)
{
    json_t *a = xjson(json_array());

    for (size_t k = 0; k <= WD_SCORE_BUCKETS; k++)
        if (json_array_append_new(a, jint(s != NULL ? wd_score_get(&s->duration_bucket[k]) : 0)) <
            0)
            abort();
    return a;
}

static json_t *worker_json(const wd_status_worker_t *w, uint64_t now, int with_requests)
{
    const wd_score_t *s = w->score;
    json_t *o = xjson(json_object());

    set(o, "slot", jint((uint64_t)w->slot));
    set(o, "pid", jint((uint64_t)(w->pid > 0 ? w->pid : 0)));
    set(o, "display_name", jstr(w->display_name));
    set(o, "state", jstr(w->state));
    set(o, "uptime", json_real(w->pid > 0 ? w->uptime : 0.0));
    set(o, "restarts", jint(w->restarts));
    set(o, "rss_bytes", jint(w->rss_bytes));
    set(o, "requests", jint(s != NULL ? wd_score_get(&s->requests) : 0));
    set(o, "busy_threads", jint(s != NULL ? wd_score_get(&s->busy_threads) : 0));
    set(o, "threads", jint(s != NULL ? wd_score_get(&s->threads) : 0));
    set(o, "queued", jint(s != NULL ? wd_score_get(&s->queued) : 0));
    set(o, "connections", jint(s != NULL ? wd_score_get(&s->connections) : 0));
    set(o, "response_memory", jint(s != NULL ? wd_score_get(&s->response_memory) : 0));
    set(o, "response_disk", jint(s != NULL ? wd_score_get(&s->response_disk) : 0));
    set(o, "body_memory", jint(s != NULL ? wd_score_get(&s->body_memory) : 0));
    set(o, "body_disk", jint(s != NULL ? wd_score_get(&s->body_disk) : 0));
    set(o, "last_error", jstr(w->last_error));
    set(o, "last_restart", jstr(w->last_restart));
    {
        uint64_t since = s != NULL ? wd_score_get(&s->queued_since_ns) : 0;

        set(o, "queue_wait",
            json_real(since != 0 && now > since ? (double)(now - since) / 1e9 : 0));
    }
    set(o, "duration_buckets", buckets_json(s));
    if (with_requests)
        set(o, "running", running_json(s, now));
    return o;
}

static json_t *group_json(const wd_status_t *st, const wd_status_group_t *g)
{
    json_t *o = xjson(json_object());
    json_t *workers = xjson(json_array());
    totals_t t;
    size_t i;

    group_totals(st, g, &t);
    set(o, "name", jstr(g->name));
    set(o, "processes", jint((uint64_t)g->processes));
    set(o, "threads", jint((uint64_t)g->threads));
    set(o, "restarts", jint(g->restarts));
    set(o, "requests", jint(t.requests));
    set(o, "reload_error", jstr(g->reload_error));
    if (g->reload_error != NULL && g->failed_op != NULL)
        set(o, "failed_op", jstr(g->failed_op));
    set(o, "stopped", json_boolean(g->stopped));
    set(o, "draining", json_boolean(g->draining));
    if (g->draining)
        set(o, "drain_left", json_real(g->drain_left));
    for (i = 0; i < st->n_workers; i++)
        if (in_group(&st->workers[i], g) &&
            json_array_append_new(workers,
                                  worker_json(&st->workers[i], st->now_ns, st->with_requests)) < 0)
            abort();
    set(o, "workers", workers);
    return o;
}

char *wd_status_json(const wd_status_t *st)
{
    json_t *root = xjson(json_object());
    json_t *groups = xjson(json_array());
    char *out;
    size_t i;

    set(root, "version", jstr(st->version));
    set(root, "master_pid", jint((uint64_t)(st->master_pid > 0 ? st->master_pid : 0)));
    set(root, "uptime", json_real(st->uptime));
    {
        json_t *bounds = xjson(json_array());

        for (i = 0; i < WD_SCORE_BUCKETS; i++)
            if (json_array_append_new(bounds, jint(bucket_bounds_us[i])) < 0)
                abort();
        set(root, "duration_bounds_us", bounds); /* the last bucket of a worker's is +Inf */
    }
    for (i = 0; i < st->n_groups; i++)
        if (json_array_append_new(groups, group_json(st, &st->groups[i])) < 0)
            abort();
    set(root, "groups", groups);
    out = xjson(json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)));
    json_decref(root);
    return out;
}

/* ---- Prometheus text format 0.0.4 ----------------------------------------------------------- */

/* A label value, escaped as the format wants: backslash, double quote and newline. */
static void label(FILE *f, const char *v)
{
    for (; v != NULL && *v != '\0'; v++) {
        if (*v == '\\')
            fputs("\\\\", f);
        else if (*v == '"')
            fputs("\\\"", f);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample per group: `NAME{group="G"} VALUE`, with the value picked by field. */
typedef uint64_t (*pick_fn)(const totals_t *t, const wd_status_group_t *g);

static void per_group(FILE *f, const wd_status_t *st, const totals_t *tot, const char *name,
                      const char *type, const char *help, pick_fn pick)
{
    size_t i;

    head(f, name, type, help);
    for (i = 0; i < st->n_groups; i++) {
        fprintf(f, "%s{group=\"", name);
        label(f, st->groups[i].name);
        fprintf(f, "\"} %llu\n", (unsigned long long)pick(&tot[i], &st->groups[i]));
    }
}

static uint64_t pick_threads(const totals_t *t, const wd_status_group_t *g)
{
    return t->threads;
}

static uint64_t pick_busy(const totals_t *t, const wd_status_group_t *g)
{
    return t->busy_threads;
}

static uint64_t pick_queued(const totals_t *t, const wd_status_group_t *g)
{
    return t->queued;
}

static uint64_t pick_connections(const totals_t *t, const wd_status_group_t *g)
{
    return t->connections;
}

static uint64_t pick_response_memory(const totals_t *t, const wd_status_group_t *g)
{
    return t->response_memory;
}

static uint64_t pick_response_disk(const totals_t *t, const wd_status_group_t *g)
{
    return t->response_disk;
}

static uint64_t pick_body_memory(const totals_t *t, const wd_status_group_t *g)
{
    return t->body_memory;
}

static uint64_t pick_body_disk(const totals_t *t, const wd_status_group_t *g)
{
    return t->body_disk;
}

static uint64_t pick_restarts(const totals_t *t, const wd_status_group_t *g)
{
    return g->restarts;
}

static uint64_t pick_bytes(const totals_t *t, const wd_status_group_t *g)
{
    return t->bytes_sent;
}

static uint64_t pick_timeouts(const totals_t *t, const wd_status_group_t *g)
{
    return t->timeouts;
}

static uint64_t pick_accept_empty(const totals_t *t, const wd_status_group_t *g)
{
    return t->accept_empty;
}

static uint64_t pick_balance_closes(const totals_t *t, const wd_status_group_t *g)
{
    return t->balance_closes;
}

static void requests_total(FILE *f, const wd_status_t *st, const totals_t *tot)
{
    static const char *const classes[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    size_t i, k;

    head(f, "wsgid_requests_total", "counter", "Requests completed, by response status class.");
    for (i = 0; i < st->n_groups; i++) {
        for (k = 1; k <= 6; k++) {
            fputs("wsgid_requests_total{group=\"", f);
            label(f, st->groups[i].name);
            fprintf(f, "\",code_class=\"%s\"} %llu\n", classes[k % 6],
                    (unsigned long long)tot[i].status[k % 6]);
        }
    }
}

static void duration_histogram(FILE *f, const wd_status_t *st, const totals_t *tot)
{
    const char *name = "wsgid_request_duration_seconds";
    uint64_t cum;
    size_t i, k;

    head(f, name, "histogram", "Time from the request's arrival to its response's completion.");
    for (i = 0; i < st->n_groups; i++) {
        cum = 0;
        for (k = 0; k <= WD_SCORE_BUCKETS; k++) {
            cum += tot[i].bucket[k];
            fprintf(f, "%s_bucket{group=\"", name);
            label(f, st->groups[i].name);
            if (k < WD_SCORE_BUCKETS)
                fprintf(f, "\",le=\"%g\"} %llu\n", (double)bucket_bounds_us[k] / 1e6,
                        (unsigned long long)cum);
            else
                fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        fprintf(f, "%s_sum{group=\"", name);
        label(f, st->groups[i].name);
        fprintf(f, "\"} %.6f\n", (double)tot[i].duration_sum_us / 1e6);
        fprintf(f, "%s_count{group=\"", name);
        label(f, st->groups[i].name);
        fprintf(f, "\"} %llu\n", (unsigned long long)cum);
    }
}

static void worker_rss(FILE *f, const wd_status_t *st)
{
    const wd_status_worker_t *w;
    size_t i;

    head(f, "wsgid_worker_rss_bytes", "gauge", "Resident memory of each worker process.");
    for (i = 0; i < st->n_workers; i++) {
        w = &st->workers[i];
        if (w->pid <= 0)
            continue;
        fputs("wsgid_worker_rss_bytes{group=\"", f);
        label(f, w->group);
        fprintf(f, "\",slot=\"%d\",pid=\"%d\"} %llu\n", w->slot, w->pid,
                (unsigned long long)w->rss_bytes);
    }
}

static size_t count_state(const wd_status_t *st, const wd_status_group_t *g, const char *state)
{
    size_t i, n = 0;

    for (i = 0; i < st->n_workers; i++)
        if (in_group(&st->workers[i], g) && st->workers[i].state != NULL &&
            strcmp(st->workers[i].state, state) == 0)
            n++;
    return n;
}

static int known_state(const char *state)
{
    size_t k;

    for (k = 0; k < sizeof worker_states / sizeof worker_states[0]; k++)
        if (strcmp(state, worker_states[k]) == 0)
            return 1;
    return 0;
}

static void workers_by_state(FILE *f, const wd_status_t *st)
{
    const wd_status_group_t *g;
    const char *s;
    size_t i, j, k, n_states = sizeof worker_states / sizeof worker_states[0];

    head(f, "wsgid_workers", "gauge", "Worker slots, by state.");
    for (i = 0; i < st->n_groups; i++) {
        g = &st->groups[i];
        /* The known states always, then any other one once (the first worker that has it). */
        for (k = 0; k < n_states + st->n_workers; k++) {
            if (k < n_states) {
                s = worker_states[k];
            } else {
                j = k - n_states;
                s = st->workers[j].state;
                if (!in_group(&st->workers[j], g) || s == NULL || known_state(s))
                    continue;
                for (j = 0; j < k - n_states; j++)
                    if (in_group(&st->workers[j], g) && st->workers[j].state != NULL &&
                        strcmp(st->workers[j].state, s) == 0)
                        break;
                if (j < k - n_states)
                    continue;
            }
            fputs("wsgid_workers{group=\"", f);
            label(f, g->name);
            fputs("\",state=\"", f);
            label(f, s);
            fprintf(f, "\"} %zu\n", count_state(st, g, s));
        }
    }
}

char *wd_status_prometheus(const wd_status_t *st)
{
    totals_t *tot = calloc(st->n_groups + 1, sizeof *tot);
    char *out = NULL;
    size_t len = 0, i;
    FILE *f;

    f = open_memstream(&out, &len);
    if (tot == NULL || f == NULL)
        abort();
    for (i = 0; i < st->n_groups; i++)
        group_totals(st, &st->groups[i], &tot[i]);

    head(f, "wsgid_uptime_seconds", "gauge", "Seconds since the master started.");
    fprintf(f, "wsgid_uptime_seconds %.3f\n", st->uptime);
    requests_total(f, st, tot);
    per_group(f, st, tot, "wsgid_threads", "gauge", "Python threads of the live workers.",
              pick_threads);
    per_group(f, st, tot, "wsgid_busy_threads", "gauge", "Python threads running a request now.",
              pick_busy);
    per_group(f, st, tot, "wsgid_queue_depth", "gauge", "Requests waiting for a Python thread.",
              pick_queued);
    per_group(f, st, tot, "wsgid_connections", "gauge", "Open client connections.",
              pick_connections);
    per_group(f, st, tot, "wsgid_response_memory_bytes", "gauge",
              "Response bytes held in memory for the clients (response-memory-limit).",
              pick_response_memory);
    per_group(f, st, tot, "wsgid_response_disk_bytes", "gauge",
              "Response bytes held in temp files for the clients (response-disk-limit).",
              pick_response_disk);
    per_group(f, st, tot, "wsgid_body_memory_bytes", "gauge",
              "Request-body buffers held in memory (body-memory-limit).", pick_body_memory);
    per_group(f, st, tot, "wsgid_body_disk_bytes", "gauge",
              "Request bodies held in temp files (body-disk-limit).", pick_body_disk);
    duration_histogram(f, st, tot);
    per_group(f, st, tot, "wsgid_worker_restarts_total", "counter",
              "Worker processes replaced or respawned.", pick_restarts);
    worker_rss(f, st);
    workers_by_state(f, st);
    per_group(f, st, tot, "wsgid_response_bytes_total", "counter", "Response bytes sent.",
              pick_bytes);
    per_group(f, st, tot, "wsgid_timeouts_total", "counter",
              "Requests answered 504 (request-timeout or queue-timeout).", pick_timeouts);
    per_group(f, st, tot, "wsgid_accept_empty_total", "counter",
              "Times a worker woke to accept a connection and found none (a sibling took it).",
              pick_accept_empty);
    per_group(f, st, tot, "wsgid_balance_closes_total", "counter",
              "Keep-alive connections answered with Connection: close so that the proxy's next "
              "request may reach an idle worker of the group.",
              pick_balance_closes);

    if (fclose(f) != 0)
        abort();
    free(tot);
    return out;
}
