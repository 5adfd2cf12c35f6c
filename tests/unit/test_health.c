/* /livez and /readyz[/GROUP] (daemon/common/health.c): a table of daemon states, each judged for
 * liveness and for readiness of every group and of each group by name. */
#include "health.h"
#include "testutil.h"

#include <stdio.h>

#define SEC 1000000000ull
#define NOW (1000 * SEC)

typedef struct hcase {
    const char *name;
    /* two groups, a and b; per group: stopped, draining, and its workers' states and heartbeat
     * ages in seconds (-1: no worker in that slot) */
    int a_stopped, a_draining, b_stopped, b_draining;
    const char *a_states[2], *b_states[2];
    int a_age[2], b_age[2];
    int live, ready, ready_a, ready_b; /* the HTTP codes expected */
    const char *says;                  /* a line the failing answer contains, or NULL */
} hcase_t;

static const hcase_t cases[] = {
    {"all ready",
     0,
     0,
     0,
     0,
     {"ready", "ready"},
     {"ready", NULL},
     {0, 1},
     {0, -1},
     200,
     200,
     200,
     200,
     NULL},
    {"a frozen worker fails liveness",
     0,
     0,
     0,
     0,
     {"ready", "ready"},
     {"ready", NULL},
     {9, 0},
     {0, -1},
     503,
     200,
     200,
     200,
     "group a worker 1 (pid 101): its loop has not run for 9.0 s"},
    {"a starting worker is not judged alive or dead",
     0,
     0,
     0,
     0,
     {"starting", NULL},
     {"ready", NULL},
     {60, -1},
     {0, -1},
     200,
     503,
     503,
     200,
     "group a: no worker has its app"},
    {"one ready worker is enough",
     0,
     0,
     0,
     0,
     {"backoff", "ready"},
     {"ready", NULL},
     {-1, 0},
     {0, -1},
     200,
     200,
     200,
     200,
     NULL},
    {"draining",
     1 - 1,
     1,
     0,
     0,
     {"ready", "ready"},
     {"ready", NULL},
     {0, 0},
     {0, -1},
     200,
     503,
     503,
     200,
     "group a: draining (stops in 7 s)"},
    {"stopped",
     0,
     0,
     1,
     0,
     {"ready", NULL},
     {NULL, NULL},
     {0, -1},
     {-1, -1},
     200,
     503,
     200,
     503,
     "group b: stopped"},
    {NULL, 0, 0, 0, 0, {NULL, NULL}, {NULL, NULL}, {0, 0}, {0, 0}, 0, 0, 0, 0, NULL},
};

static void run_case(const hcase_t *tc)
{
    wd_status_group_t groups[2] = {{.name = "a"}, {.name = "b"}};
    wd_status_worker_t workers[4];
    wd_score_t scores[4];
    size_t n = 0;
    char body[1024];
    int code;

    memset(workers, 0, sizeof workers);
    memset(scores, 0, sizeof scores);
    groups[0].stopped = tc->a_stopped;
    groups[0].draining = tc->a_draining;
    groups[0].drain_left = 7;
    groups[0].ready_queue_wait = 10;
    groups[1].stopped = tc->b_stopped;
    groups[1].draining = tc->b_draining;
    for (int g = 0; g < 2; g++) {
        for (int k = 0; k < 2; k++) {
            const char *state = g == 0 ? tc->a_states[k] : tc->b_states[k];
            int age = g == 0 ? tc->a_age[k] : tc->b_age[k];

            if (state == NULL)
                continue;
            workers[n].group = groups[g].name;
            workers[n].slot = k + 1;
            workers[n].state = state;
            if (age >= 0) {
                workers[n].pid = 101 + 100 * g + k;
                wd_score_set(&scores[n].heartbeat_ns, NOW - (uint64_t)age * SEC);
                workers[n].score = &scores[n];
            }
            n++;
        }
    }
    wd_status_t st = {.groups = groups, .n_groups = 2, .workers = workers, .n_workers = n};

    code = wd_health_eval(&st, NOW, WD_HEALTH_LIVE, NULL, 0, body, sizeof body);
    T_CHECK(code == tc->live, "%s: live %d, want %d (%s)", tc->name, code, tc->live, body);
    if (code == 200)
        T_CHECK(strcmp(body, "ok\n") == 0, "%s: live body %s", tc->name, body);
    else if (tc->says != NULL && strstr(tc->says, "loop") != NULL)
        T_CHECK(strstr(body, tc->says) != NULL, "%s: live body %s", tc->name, body);
    code = wd_health_eval(&st, NOW, WD_HEALTH_READY, NULL, 0, body, sizeof body);
    T_CHECK(code == tc->ready, "%s: ready %d, want %d (%s)", tc->name, code, tc->ready, body);
    if (code == 503 && tc->says != NULL && strstr(tc->says, "loop") == NULL)
        T_CHECK(strstr(body, tc->says) != NULL, "%s: ready body %s", tc->name, body);
    code = wd_health_eval(&st, NOW, WD_HEALTH_READY, "a", 1, body, sizeof body);
    T_CHECK(code == tc->ready_a, "%s: ready a %d, want %d", tc->name, code, tc->ready_a);
    code = wd_health_eval(&st, NOW, WD_HEALTH_READY, "bxx", 1, body, sizeof body);
    T_CHECK(code == tc->ready_b, "%s: ready b %d, want %d", tc->name, code, tc->ready_b);
    code = wd_health_eval(&st, NOW, WD_HEALTH_READY, "c", 1, body, sizeof body);
    T_CHECK(code == 404 && strcmp(body, "no group c\n") == 0, "%s: unknown group %d %s", tc->name,
            code, body);
    /* A body that does not fit is cut, never overrun. */
    code = wd_health_eval(&st, NOW, WD_HEALTH_READY, NULL, 0, body, 5);
    T_CHECK(strlen(body) < 5, "%s: cut body", tc->name);
}

/* readiness-queue-wait: two workers of 2 threads; jammed when a request has waited that long
 * (10 s) and no ready worker has a thread free. */
typedef struct qcase {
    const char *name;
    int busy[2], queued[2], waited[2]; /* waited: seconds the oldest queued request waited */
    int second_ready;                  /* 0: worker 2 is still starting */
    int second_closed;                 /* 1: worker 2 stopped accepting (stuck, full) */
    int code;
    double say; /* the wait the reason names, when 503 */
} qcase_t;

static const qcase_t qcases[] = {
    {"idle", {0, 0}, {0, 0}, {0, 0}, 1, 0, 200, 0},
    {"one worker jammed, the other with a thread free", {2, 1}, {4, 0}, {12, 0}, 1, 0, 200, 0},
    {"one worker jammed, the other's threads all running (a hung app, most connections in one "
     "worker)",
     {2, 2},
     {6, 0},
     {12, 0},
     1,
     0,
     503,
     12},
    {"both jammed: the longest wait", {2, 2}, {1, 3}, {12, 15}, 1, 0, 503, 15},
    {"all taken, but no wait that long yet", {2, 2}, {6, 1}, {9, 3}, 1, 0, 200, 0},
    {"a free thread wanted by a queued request is not free",
     {2, 1},
     {3, 1},
     {12, 0},
     1,
     0,
     503,
     12},
    {"a worker still starting has no thread to give", {2, 0}, {3, 0}, {12, 0}, 0, 0, 503, 12},
    {"a worker that stopped accepting (a request stuck past request-timeout) gives no new "
     "connection its free thread",
     {2, 1},
     {3, 0},
     {12, 0},
     1,
     1,
     503,
     12},
    {NULL, {0, 0}, {0, 0}, {0, 0}, 0, 0, 0, 0},
};

static void run_queue_case(const qcase_t *tc)
{
    wd_status_group_t g = {.name = "a", .ready_queue_wait = 10};
    wd_score_t sc[2];
    wd_status_worker_t w[2] = {
        {.group = "a", .slot = 1, .pid = 1, .state = "ready", .score = &sc[0]},
        {.group = "a",
         .slot = 2,
         .pid = 2,
         .state = tc->second_ready ? "ready" : "starting",
         .score = &sc[1]}};
    wd_status_t st = {.groups = &g, .n_groups = 1, .workers = w, .n_workers = 2};
    char body[512], want[512];
    int code;

    memset(sc, 0, sizeof sc);
    for (int k = 0; k < 2; k++) {
        wd_score_set(&sc[k].heartbeat_ns, NOW);
        wd_score_set(&sc[k].threads, 2);
        wd_score_set(&sc[k].busy_threads, (uint64_t)tc->busy[k]);
        wd_score_set(&sc[k].queued, (uint64_t)tc->queued[k]);
        wd_score_set(&sc[k].accepting, k == 1 && tc->second_closed ? 0 : 1);
        if (tc->waited[k] > 0)
            wd_score_set(&sc[k].queued_since_ns, NOW - (uint64_t)tc->waited[k] * SEC);
    }
    code = wd_health_eval(&st, NOW, WD_HEALTH_READY, NULL, 0, body, sizeof body);
    if (tc->code == 200)
        snprintf(want, sizeof want, "ok\n");
    else
        snprintf(want, sizeof want,
                 "group a: a request has waited %.1f s for a thread, and no worker has one free "
                 "(readiness-queue-wait 10.0 s)\n",
                 tc->say);
    T_CHECK(code == tc->code && strcmp(body, want) == 0, "%s: %d '%s', want %d '%s'", tc->name,
            code, body, tc->code, want);
    T_CHECK(wd_health_eval(&st, NOW, WD_HEALTH_LIVE, NULL, 0, body, sizeof body) == 200,
            "%s: alive", tc->name);
    g.ready_queue_wait = 0;
    code = wd_health_eval(&st, NOW, WD_HEALTH_READY, NULL, 0, body, sizeof body);
    T_CHECK(code == 200, "%s: readiness-queue-wait 0 is off (%d)", tc->name, code);
}

/* The HAProxy agent's answer: a table of states of two groups (a: two workers of 4 threads, b:
 * one of 2), asked about a, b and both. */
typedef struct acase {
    const char *name;
    int a_stopped, a_draining, b_stopped, b_ready; /* b_ready: b's worker has loaded its app */
    int a_busy[2], a_queued[2], b_busy;
    int a_jammed; /* every worker of a has had a request queued for 12 s (readiness-queue-wait 10)
                   */
    const char *say_a, *say_b, *say_all;
} acase_t;

static const acase_t acases[] = {
    {"idle",
     0,
     0,
     0,
     1,
     {0, 0},
     {0, 0},
     0,
     0,
     "up ready 100%\n",
     "up ready 100%\n",
     "up ready 100%\n"},
    {"busy: the lowest share of free threads",
     0,
     0,
     0,
     1,
     {3, 2},
     {0, 0},
     1,
     0,
     "up ready 37%\n",
     "up ready 50%\n",
     "up ready 37%\n"},
    {"queued requests take free threads; all taken is 1%",
     0,
     0,
     0,
     1,
     {4, 2},
     {0, 5},
     0,
     0,
     "up ready 1%\n",
     "up ready 100%\n",
     "up ready 1%\n"},
    {"draining",
     0,
     1,
     0,
     1,
     {0, 0},
     {0, 0},
     0,
     0,
     "drain #group a: draining (stops in 7 s)\n",
     "up ready 100%\n",
     "drain #group a: draining (stops in 7 s)\n"},
    {"jammed",
     0,
     0,
     0,
     1,
     {4, 4},
     {1, 1},
     0,
     1,
     "drain #group a: a request has waited 12.0 s for a thread, and no worker has one free "
     "(readiness-queue-wait 10.0 s)\n",
     "up ready 100%\n",
     NULL},
    {"stopped is down, and down is worse than drain",
     1,
     0,
     0,
     1,
     {0, 0},
     {0, 0},
     0,
     0,
     "down #group a: stopped\n",
     "up ready 100%\n",
     "down #group a: stopped\n"},
    {"no app loaded",
     0,
     1,
     0,
     0,
     {0, 0},
     {0, 0},
     0,
     0,
     "drain #group a: draining (stops in 7 s)\n",
     "down #group b: no worker has its app loaded\n",
     "down #group b: no worker has its app loaded\n"},
    {NULL, 0, 0, 0, 0, {0, 0}, {0, 0}, 0, 0, NULL, NULL, NULL},
};

static void run_agent_case(const acase_t *tc)
{
    wd_status_group_t groups[2] = {{.name = "a", .ready_queue_wait = 10, .drain_left = 7},
                                   {.name = "b"}};
    wd_score_t sc[3];
    wd_status_worker_t w[3] = {
        {.group = "a", .slot = 1, .pid = 1, .state = "ready", .score = &sc[0]},
        {.group = "a", .slot = 2, .pid = 2, .state = "ready", .score = &sc[1]},
        {.group = "b",
         .slot = 1,
         .pid = 3,
         .state = tc->b_ready ? "ready" : "starting",
         .score = &sc[2]}};
    wd_status_t st = {.groups = groups, .n_groups = 2, .workers = w, .n_workers = 3};
    char out[600];
    size_t n;

    memset(sc, 0, sizeof sc);
    groups[0].stopped = tc->a_stopped;
    groups[0].draining = tc->a_draining;
    groups[1].stopped = tc->b_stopped;
    for (int k = 0; k < 3; k++) {
        wd_score_set(&sc[k].heartbeat_ns, NOW);
        wd_score_set(&sc[k].threads, k < 2 ? 4 : 2);
        wd_score_set(&sc[k].accepting, 1);
        wd_score_set(&sc[k].busy_threads, (uint64_t)(k < 2 ? tc->a_busy[k] : tc->b_busy));
        if (k < 2) {
            wd_score_set(&sc[k].queued, (uint64_t)tc->a_queued[k]);
            if (tc->a_jammed)
                wd_score_set(&sc[k].queued_since_ns, NOW - 12 * SEC);
        }
    }
    n = wd_health_agent(&st, NOW, "a", 1, out, sizeof out);
    T_CHECK(strcmp(out, tc->say_a) == 0 && n == strlen(out), "%s: a says '%s', want '%s'", tc->name,
            out, tc->say_a);
    n = wd_health_agent(&st, NOW, "b", 1, out, sizeof out);
    T_CHECK(strcmp(out, tc->say_b) == 0 && n == strlen(out), "%s: b says '%s', want '%s'", tc->name,
            out, tc->say_b);
    n = wd_health_agent(&st, NOW, NULL, 0, out, sizeof out);
    T_CHECK(strcmp(out, tc->say_all ? tc->say_all : tc->say_a) == 0 && n == strlen(out),
            "%s: all say '%s'", tc->name, out);
    n = wd_health_agent(&st, NOW, "zz", 2, out, sizeof out);
    T_CHECK(strcmp(out, "down #no group zz\n") == 0, "%s: unknown group '%s'", tc->name, out);
    n = wd_health_agent(&st, NOW, "a", 1, out, 6);
    T_CHECK(n < 6 && strlen(out) == n, "%s: cut answer", tc->name);
}

int main(void)
{
    for (const acase_t *tc = acases; tc->name != NULL; tc++)
        run_agent_case(tc);
    for (const hcase_t *tc = cases; tc->name != NULL; tc++)
        run_case(tc);
    for (const qcase_t *tc = qcases; tc->name != NULL; tc++)
        run_queue_case(tc);
    return t_summary("health");
}
