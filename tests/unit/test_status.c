/* The status renderings over a fabricated snapshot: two groups, a live worker, a worker being
 * replaced (draining), a slot backing off with no process, and past counters. */
#include "status.h"
#include "testutil.h"

#include <jansson.h>

static wd_score_t score_a, score_b, score_c;

static void fill_scores(void)
{
    memset(&score_a, 0, sizeof score_a);
    memset(&score_b, 0, sizeof score_b);
    memset(&score_c, 0, sizeof score_c);

    wd_score_set(&score_a.pid, 101);
    wd_score_set(&score_a.threads, 4);
    wd_score_set(&score_a.busy_threads, 1);
    wd_score_set(&score_a.queued, 2);
    wd_score_set(&score_a.connections, 3);
    wd_score_set(&score_a.requests, 10);
    wd_score_set(&score_a.status[2], 8);
    wd_score_set(&score_a.status[5], 2);
    wd_score_set(&score_a.duration_bucket[0], 5);  /* <= 1ms */
    wd_score_set(&score_a.duration_bucket[3], 4);  /* <= 25ms */
    wd_score_set(&score_a.duration_bucket[12], 1); /* +Inf */
    wd_score_set(&score_a.duration_sum_us, 12500000);
    wd_score_set(&score_a.bytes_sent, 1000);
    wd_score_set(&score_a.timeouts, 1);
    wd_score_set(&score_a.queued_since_ns, 3000000000ull);
    /* Thread 2 runs a request with a URI longer than the slot keeps; thread 3's slot is being
     * written (gen odd): it is not shown. */
    {
        char uri[200];

        memset(uri, 'x', sizeof uri);
        uri[0] = '/';
        wd_score_set(&score_a.running[1].thread_ident, 0x7f00aa);
        wd_score_running_begin(&score_a.running[1], 1000000000ull, "101-7", "POST", 4, uri,
                               sizeof uri);
        wd_score_running_begin(&score_a.running[2], 2000000000ull, "101-8", "GET", 3, "/", 1);
        wd_score_set(&score_a.running[2].gen, 5);
        wd_score_running_begin(&score_a.running[3], 2000000000ull, "101-9", "GET", 3, "/", 1);
        wd_score_running_end(&score_a.running[3]);
    }

    wd_score_set(&score_b.pid, 102);
    wd_score_set(&score_b.threads, 4);
    wd_score_set(&score_b.requests, 5);
    wd_score_set(&score_b.status[2], 4);
    wd_score_set(&score_b.status[4], 1);
    wd_score_set(&score_b.duration_bucket[0], 5);
    wd_score_set(&score_b.duration_sum_us, 2500);
    wd_score_set(&score_b.bytes_sent, 24);

    wd_score_set(&score_c.pid, 201);
    wd_score_set(&score_c.threads, 1);
    wd_score_set(&score_c.requests, 1);
    wd_score_set(&score_c.status[3], 1);
    wd_score_set(&score_c.duration_bucket[6], 1);
    wd_score_set(&score_c.duration_sum_us, 200000);
}

static const wd_status_group_t groups[] = {
    {.name = "site1",
     .processes = 2,
     .threads = 4,
     .restarts = 3,
     .past_requests = 100,
     .past_status = {0, 0, 90, 0, 0, 10},
     .past_duration_bucket = {50, 50},
     .past_duration_sum_us = 300000,
     .past_bytes_sent = 5000,
     .past_timeouts = 2},
    {.name = "we\"ird\\",
     .processes = 2,
     .threads = 1,
     .reload_error = "group w: cannot load app /srv/w/app.py: SyntaxError: invalid syntax (app.py, "
                     "line 3)"},
};

static const wd_status_worker_t workers[] = {
    {.group = "site1",
     .slot = 1,
     .pid = 101,
     .display_name = "(wsgi:site1)",
     .state = "ready",
     .uptime = 12.5,
     .restarts = 1,
     .rss_bytes = 123456,
     .score = &score_a},
    {.group = "site1",
     .slot = 2,
     .pid = 102,
     .display_name = "(wsgi:site1)",
     .state = "draining",
     .uptime = 3,
     .restarts = 2,
     .rss_bytes = 654321,
     .score = &score_b},
    {.group = "we\"ird\\",
     .slot = 1,
     .pid = 201,
     .display_name = "w",
     .state = "ready",
     .uptime = 1,
     .rss_bytes = 1,
     .score = &score_c},
    {.group = "we\"ird\\",
     .slot = 2,
     .pid = 0,
     .display_name = "w",
     .state = "backoff",
     .last_error = "ImportError: no module \xff named x",
     .score = NULL},
};

static const wd_status_t snapshot = {
    .version = "0.1.0",
    .master_pid = 42,
    .uptime = 99.25,
    .groups = groups,
    .n_groups = 2,
    .workers = workers,
    .n_workers = 4,
    .now_ns = 3500000000ull,
    .with_requests = 1,
};

static json_int_t jget_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static void test_json(void)
{
    json_error_t err;
    json_t *root, *g, *ws, *w;
    char *text = wd_status_json(&snapshot);

    root = json_loads(text, 0, &err);
    T_CHECK(root != NULL, "JSON does not parse: %s (%s)", err.text, text);
    if (root == NULL) {
        free(text);
        return;
    }
    T_CHECK(strcmp(json_string_value(json_object_get(root, "version")), "0.1.0") == 0, "version");
    T_CHECK(jget_int(root, "master_pid") == 42, "master_pid");
    T_CHECK(json_real_value(json_object_get(root, "uptime")) == 99.25, "uptime");
    T_CHECK(json_array_size(json_object_get(root, "groups")) == 2, "2 groups");

    g = json_array_get(json_object_get(root, "groups"), 0);
    T_CHECK(strcmp(json_string_value(json_object_get(g, "name")), "site1") == 0, "group name");
    T_CHECK(jget_int(g, "processes") == 2 && jget_int(g, "threads") == 4, "processes, threads");
    T_CHECK(jget_int(g, "restarts") == 3, "group restarts");
    T_CHECK(json_is_null(json_object_get(g, "reload_error")), "no reload_error is null");
    T_CHECK(jget_int(g, "requests") == 115, "group requests = past + live: %lld",
            (long long)jget_int(g, "requests"));
    ws = json_object_get(g, "workers");
    T_CHECK(json_array_size(ws) == 2, "site1 has 2 workers");
    w = json_array_get(ws, 1);
    T_CHECK(jget_int(w, "slot") == 2 && jget_int(w, "pid") == 102, "worker slot, pid");
    T_CHECK(strcmp(json_string_value(json_object_get(w, "state")), "draining") == 0, "state");
    T_CHECK(strcmp(json_string_value(json_object_get(w, "display_name")), "(wsgi:site1)") == 0,
            "display_name");
    T_CHECK(json_real_value(json_object_get(w, "uptime")) == 3.0, "worker uptime");
    T_CHECK(jget_int(w, "restarts") == 2 && jget_int(w, "rss_bytes") == 654321, "restarts, rss");
    T_CHECK(jget_int(w, "requests") == 5 && jget_int(w, "threads") == 4, "requests, threads");
    T_CHECK(json_is_null(json_object_get(w, "last_error")), "no last_error is null");
    w = json_array_get(ws, 0);
    T_CHECK(jget_int(w, "busy_threads") == 1 && jget_int(w, "queued") == 2 &&
                jget_int(w, "connections") == 3,
            "busy_threads, queued, connections");
    T_CHECK(json_real_value(json_object_get(w, "queue_wait")) == 0.5, "queue_wait");
    T_CHECK(json_array_size(json_object_get(w, "duration_buckets")) == WD_SCORE_BUCKETS + 1 &&
                json_integer_value(json_array_get(json_object_get(w, "duration_buckets"), 3)) == 4,
            "duration_buckets");
    {
        json_t *run = json_object_get(w, "running"), *r = json_array_get(run, 0);
        const char *path = json_string_value(json_object_get(r, "path"));

        T_CHECK(json_array_size(run) == 1,
                "one request in progress (torn and idle slots left "
                "out): %zu",
                json_array_size(run));
        T_CHECK(jget_int(r, "thread") == 2, "its thread");
        T_CHECK(strcmp(json_string_value(json_object_get(r, "thread_ident")),
                       "0x00000000007f00aa") == 0,
                "thread_ident");
        T_CHECK(strcmp(json_string_value(json_object_get(r, "id")), "101-7") == 0 &&
                    strcmp(json_string_value(json_object_get(r, "method")), "POST") == 0,
                "id, method");
        T_CHECK(path != NULL && strlen(path) == WD_SCORE_PATH - 1 && path[0] == '/',
                "path truncated to %d bytes", WD_SCORE_PATH - 1);
        T_CHECK(json_real_value(json_object_get(r, "age")) == 2.5, "age");
    }
    T_CHECK(json_array_size(json_object_get(root, "duration_bounds_us")) == WD_SCORE_BUCKETS,
            "duration_bounds_us");

    g = json_array_get(json_object_get(root, "groups"), 1);
    T_CHECK(strcmp(json_string_value(json_object_get(g, "name")), "we\"ird\\") == 0, "escaping");
    T_CHECK(jget_int(g, "requests") == 1, "second group requests");
    T_CHECK(json_is_string(json_object_get(g, "reload_error")) &&
                strstr(json_string_value(json_object_get(g, "reload_error")), "(app.py, line 3)") !=
                    NULL,
            "reload_error");
    w = json_array_get(json_object_get(g, "workers"), 1);
    T_CHECK(jget_int(w, "pid") == 0 && jget_int(w, "requests") == 0, "backing-off slot");
    T_CHECK(json_is_string(json_object_get(w, "last_error")) &&
                strcmp(json_string_value(json_object_get(w, "last_error")),
                       "ImportError: no module ? named x") == 0,
            "last_error with a non-UTF-8 byte");
    json_decref(root);
    free(text);
}

/* The value of the sample line that starts with `series ` exactly, or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

static void test_prometheus(void)
{
    char *text = wd_status_prometheus(&snapshot);
    const char *p;
    int lines = 0;

    T_CHECK(strstr(text, "# HELP wsgid_requests_total ") != NULL, "HELP line");
    T_CHECK(strstr(text, "# TYPE wsgid_requests_total counter\n") != NULL, "TYPE counter");
    T_CHECK(strstr(text, "# TYPE wsgid_threads gauge\n") != NULL, "TYPE gauge");
    T_CHECK(strstr(text, "# TYPE wsgid_request_duration_seconds histogram\n") != NULL,
            "TYPE histogram");
    T_CHECK(sample(text, "wsgid_requests_total{group=\"site1\",code_class=\"2xx\"}") == 102,
            "2xx = 90 + 8 + 4");
    T_CHECK(sample(text, "wsgid_requests_total{group=\"site1\",code_class=\"5xx\"}") == 12, "5xx");
    T_CHECK(sample(text, "wsgid_requests_total{group=\"site1\",code_class=\"4xx\"}") == 1, "4xx");
    T_CHECK(sample(text, "wsgid_requests_total{group=\"site1\",code_class=\"other\"}") == 0,
            "other");
    T_CHECK(sample(text, "wsgid_requests_total{group=\"we\\\"ird\\\\\",code_class=\"3xx\"}") == 1,
            "escaped label");
    T_CHECK(sample(text, "wsgid_threads{group=\"site1\"}") == 8, "threads");
    T_CHECK(sample(text, "wsgid_busy_threads{group=\"site1\"}") == 1, "busy threads");
    T_CHECK(sample(text, "wsgid_queue_depth{group=\"site1\"}") == 2, "queue depth");
    T_CHECK(sample(text, "wsgid_request_duration_seconds_bucket{group=\"site1\",le=\"0.001\"}") ==
                60,
            "first bucket: 50 past + 5 + 5");
    T_CHECK(sample(text, "wsgid_request_duration_seconds_bucket{group=\"site1\",le=\"0.005\"}") ==
                110,
            "cumulative");
    T_CHECK(sample(text, "wsgid_request_duration_seconds_bucket{group=\"site1\",le=\"0.025\"}") ==
                114,
            "cumulative 25ms");
    T_CHECK(sample(text, "wsgid_request_duration_seconds_bucket{group=\"site1\",le=\"10\"}") == 114,
            "10s");
    T_CHECK(sample(text, "wsgid_request_duration_seconds_bucket{group=\"site1\",le=\"+Inf\"}") ==
                115,
            "+Inf");
    T_CHECK(sample(text, "wsgid_request_duration_seconds_count{group=\"site1\"}") == 115, "count");
    T_CHECK(sample(text, "wsgid_request_duration_seconds_sum{group=\"site1\"}") == 12.8025, "sum");
    T_CHECK(sample(text, "wsgid_worker_restarts_total{group=\"site1\"}") == 3, "restarts");
    T_CHECK(sample(text, "wsgid_worker_rss_bytes{group=\"site1\",slot=\"2\",pid=\"102\"}") ==
                654321,
            "rss");
    T_CHECK(strstr(text, "pid=\"0\"") == NULL, "no rss sample for a slot without a process");
    T_CHECK(sample(text, "wsgid_workers{group=\"site1\",state=\"ready\"}") == 1, "ready");
    T_CHECK(sample(text, "wsgid_workers{group=\"site1\",state=\"draining\"}") == 1, "draining");
    T_CHECK(sample(text, "wsgid_workers{group=\"site1\",state=\"crashed\"}") == 0, "crashed");
    T_CHECK(sample(text, "wsgid_workers{group=\"we\\\"ird\\\\\",state=\"backoff\"}") == 1,
            "backoff");
    T_CHECK(sample(text, "wsgid_response_bytes_total{group=\"site1\"}") == 6024, "bytes");
    T_CHECK(sample(text, "wsgid_timeouts_total{group=\"site1\"}") == 3, "timeouts");

    /* Every line is a comment or "series value", and the text ends with a newline. */
    for (p = text; *p != '\0'; lines++) {
        const char *nl = strchr(p, '\n');

        T_CHECK(nl != NULL, "unterminated last line");
        if (nl == NULL)
            break;
        T_CHECK(p[0] == '#' || memchr(p, ' ', (size_t)(nl - p)) != NULL, "malformed line %.*s",
                (int)(nl - p), p);
        p = nl + 1;
    }
    T_CHECK(lines > 50, "%d lines", lines);
    free(text);
}

/* GET /status (with_requests 0) does not show the URIs in progress. */
static void test_no_requests(void)
{
    wd_status_t st = snapshot;
    char *text;

    st.with_requests = 0;
    text = wd_status_json(&st);
    T_CHECK(strstr(text, "\"running\"") == NULL && strstr(text, "101-7") == NULL,
            "no requests in progress without with_requests");
    T_CHECK(strstr(text, "\"duration_buckets\"") != NULL, "the histogram is still there");
    free(text);
}

static void test_empty(void)
{
    wd_status_t st = {.version = "x"};
    char *a = wd_status_json(&st), *b = wd_status_prometheus(&st);

    T_CHECK(strstr(a, "\"groups\":[]") != NULL, "empty groups: %s", a);
    T_CHECK(strstr(b, "# TYPE wsgid_requests_total counter") != NULL, "empty metrics");
    free(a);
    free(b);
}

int main(void)
{
    fill_scores();
    test_json();
    test_prometheus();
    test_no_requests();
    test_empty();
    return t_summary("status");
}
