/* The keep-alive balance (daemon/worker/balance.c): the master's list, and when the head of a
 * keep-alive response says "Connection: close": only when its request waited WD_BALANCE_WAIT_NS
 * for a thread, the proxy's next request would wait for one here, and a sibling that still serves
 * (its pid, ready) has an idle thread, or a queue shorter than ours by more than our threads;
 * looking at most once per WD_BALANCE_GAP_NS. */
#include "balance.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define N_BOARD 8

static wd_score_t board[N_BOARD];
static _Atomic uint64_t closes;

/* Record r: worker pid, ready, threads, busy, queued. */
static void put(int r, uint64_t pid, uint64_t ready, uint64_t threads, uint64_t busy,
                uint64_t queued)
{
    wd_score_set(&board[r].pid, pid);
    wd_score_set(&board[r].ready, ready);
    wd_score_set(&board[r].threads, threads);
    wd_score_set(&board[r].busy_threads, busy);
    wd_score_set(&board[r].queued, queued);
}

static void test_lists(void)
{
    static const struct {
        const char *list;
        int want; /* siblings, or -EINVAL */
    } cases[] = {
        {"", 0},
        {" 2:100", 0}, /* ourselves only */
        {" 2:100 5:200", 1},
        {" 5:200 2:100 7:300", 2},
        {"   5:200   ", 1},
        {" 5", -EINVAL},
        {" 5:", -EINVAL},
        {" :200", -EINVAL},
        {" 5:0", -EINVAL},
        {" 5:-3", -EINVAL},
        {" -1:200", -EINVAL},
        {" 8:200", -EINVAL}, /* past the board */
        {" 5:200x", -EINVAL},
        {" 5:200,6:300", -EINVAL},
        {" 99999999999999999999:1", -EINVAL},
        {" 5:4294967296", -EINVAL}, /* a pid past 32 bits */
    };
    wd_balance_t b;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wd_balance_init(&b, board, N_BOARD, 2, NULL);
        atomic_store(&b.n_sib, 1); /* a previous list, kept when the new one is malformed */
        atomic_store(&b.sib[0], (uint64_t)6 << 32 | 600);
        int got = wd_balance_set(&b, cases[i].list);
        T_CHECK(got == cases[i].want, "list \"%s\": %d siblings, want %d", cases[i].list, got,
                cases[i].want);
        T_CHECK(b.n_sib == (size_t)(cases[i].want < 0 ? 1 : cases[i].want), "list \"%s\": %zu kept",
                cases[i].list, (size_t)b.n_sib);
        T_CHECK(cases[i].want != 1 || b.sib[0] == ((uint64_t)5 << 32 | 200),
                "list \"%s\": record 5, pid 200", cases[i].list);
    }

    /* WD_SIBLINGS_MAX others and ourselves: taken; one more: refused. */
    char list[1024];
    size_t len = 0;
    wd_balance_t big;
    static wd_score_t wide[WD_SIBLINGS_MAX + 2];

    wd_balance_init(&big, wide, WD_SIBLINGS_MAX + 2, 0, NULL);
    for (int r = 0; r <= WD_SIBLINGS_MAX; r++)
        len += (size_t)snprintf(list + len, sizeof list - len, " %d:%d", r, 1000 + r);
    T_CHECK(wd_balance_set(&big, list) == WD_SIBLINGS_MAX, "a full list");
    snprintf(list + len, sizeof list - len, " %d:%d", WD_SIBLINGS_MAX + 1, 9999);
    T_CHECK(wd_balance_set(&big, list) == -EINVAL, "a list past WD_SIBLINGS_MAX");
}

#define T0 7000000000ull        /* "now" */
#define LONG WD_BALANCE_WAIT_NS /* our request waited that long for a thread */

static void test_close(void)
{
    static const struct {
        const char *what;
        uint64_t threads, busy, queued;                   /* ourselves (our request among them) */
        uint64_t pid, ready, s_threads, s_busy, s_queued; /* the sibling's record */
        uint64_t waited; /* how long our request waited for a thread */
        unsigned gone;   /* our request has left our gauges (the loop's 504) */
        int want;
    } cases[] = {
        /* 4 threads each: the next request would wait here; there, a thread is idle. */
        {"idle sibling", 4, 4, 2, 200, 1, 4, 0, 0, LONG, 0, 1},
        {"sibling with one idle thread", 4, 4, 1, 200, 1, 4, 3, 0, LONG, 0, 1},
        {"we fill our threads: the next request finds one", 4, 4, 0, 200, 1, 4, 0, 0, LONG, 0, 0},
        {"we have idle threads ourselves (two more)", 4, 3, 0, 200, 1, 4, 1, 0, LONG, 0, 0},
        /* ... the sibling's threads all taken: lighter only by more than our threads. */
        {"full sibling, two fewer", 4, 4, 2, 200, 1, 4, 4, 0, LONG, 0, 0},
        {"queues 4 apart (our threads)", 4, 4, 8, 200, 1, 4, 4, 4, LONG, 0, 0},
        {"queues 5 apart", 4, 4, 9, 200, 1, 4, 4, 4, LONG, 0, 1},
        {"one fewer", 4, 4, 2, 200, 1, 4, 4, 1, LONG, 0, 0},
        {"as many", 4, 4, 2, 200, 1, 4, 4, 2, LONG, 0, 0},
        {"more", 4, 4, 2, 200, 1, 4, 4, 9, LONG, 0, 0},
        /* One thread each: two requests fewer, whether the sibling's thread is idle or not. */
        {"1 thread: idle sibling, two here", 1, 1, 1, 200, 1, 1, 0, 0, LONG, 0, 1},
        {"1 thread: idle sibling, one here", 1, 1, 0, 200, 1, 1, 0, 0, LONG, 0, 0},
        {"1 thread: busy sibling, two fewer", 1, 1, 2, 200, 1, 1, 1, 0, LONG, 0, 1},
        {"1 thread: busy sibling, one fewer", 1, 1, 1, 200, 1, 1, 1, 0, LONG, 0, 0},
        /* Each record's own threads (a sibling started with other settings). */
        {"2 threads here, 8 there, 6 of them busy", 2, 2, 1, 200, 1, 8, 6, 0, LONG, 0, 1},
        {"8 threads here, 2 there and full", 8, 8, 3, 200, 1, 2, 2, 0, LONG, 0, 0},
        /* The loop's 504: the request left the gauges; it still counts. */
        {"504: counted back", 4, 4, 0, 200, 1, 4, 2, 0, LONG, 1, 1},
        {"504: left out, as before", 4, 4, 0, 200, 1, 4, 2, 0, LONG, 0, 0},
        /* Never: */
        {"our request waited 1 ns less", 4, 4, 2, 200, 1, 4, 0, 0, LONG - 1, 0, 0},
        {"our request did not wait", 4, 4, 2, 200, 1, 4, 0, 0, 0, 0, 0},
        {"not ready (stopping)", 4, 4, 2, 200, 0, 4, 0, 0, LONG, 0, 0},
        {"record of another pid (exited, reused)", 4, 4, 2, 201, 1, 4, 0, 0, LONG, 0, 0},
        {"record freed", 4, 4, 2, 0, 0, 0, 0, 0, LONG, 0, 0},
    };
    wd_balance_t b;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(board, 0, sizeof board);
        put(2, 100, 1, cases[i].threads, cases[i].busy, cases[i].queued);
        put(5, cases[i].pid, cases[i].ready, cases[i].s_threads, cases[i].s_busy,
            cases[i].s_queued);
        wd_balance_init(&b, board, N_BOARD, 2, &closes);
        wd_score_set(&closes, 0);
        T_CHECK(wd_balance_set(&b, " 2:100 5:200") == 1, "%s: list", cases[i].what);
        T_CHECK(wd_balance_active(&b), "%s: active", cases[i].what);
        int got = wd_balance_should_close(&b, T0, cases[i].waited, cases[i].gone);
        T_CHECK(got == cases[i].want, "%s: close %d, want %d", cases[i].what, got, cases[i].want);
        T_CHECK(wd_score_get(&closes) == (uint64_t)cases[i].want, "%s: counted %llu", cases[i].what,
                (unsigned long long)wd_score_get(&closes));
    }

    /* Any one lighter sibling of several will do. */
    memset(board, 0, sizeof board);
    put(2, 100, 1, 4, 4, 1); /* a load of 5 */
    put(5, 200, 1, 4, 4, 2);
    put(6, 300, 0, 4, 0, 0);
    put(7, 400, 1, 4, 3, 0);
    wd_balance_init(&b, board, N_BOARD, 2, NULL);
    wd_balance_set(&b, " 2:100 5:200 6:300 7:400");
    T_CHECK(wd_balance_should_close(&b, T0, LONG, 0) == 1, "the third sibling is lighter");
    put(7, 400, 1, 4, 4, 0);
    T_CHECK(wd_balance_should_close(&b, T0 + WD_BALANCE_GAP_NS, LONG, 0) == 0,
            "none lighter any more");

    /* The request as the Python thread sees it: its times, its worker's balance or none. */
    wd_req_t req = {.t_queued_ns = 5, .t_taken_ns = 5 + WD_BALANCE_WAIT_NS - 1};

    put(7, 400, 1, 4, 0, 0);
    wd_balance_init(&b, board, N_BOARD, 2, NULL);
    wd_balance_set(&b, " 7:400");
    T_CHECK(wd_balance_close_at_head(&req) == 0, "no balance on the request");
    req.balance = &b;
    T_CHECK(wd_balance_close_at_head(&req) == 0, "waited 1 ns short");
    req.t_taken_ns++;
    T_CHECK(wd_balance_close_at_head(&req) == 1, "waited long enough");
    /* The loop's 504: waited until now, with the loop's clock. */
    wd_balance_init(&b, board, N_BOARD, 2, NULL);
    wd_balance_set(&b, " 7:400");
    T_CHECK(wd_balance_close_req(&req, 5 + WD_BALANCE_WAIT_NS - 1, T0, 1) == 0, "504: 1 ns short");
    T_CHECK(wd_balance_close_req(&req, 5 + WD_BALANCE_WAIT_NS, T0, 1) == 1, "504: long enough");

    /* No list (one process, or no scoreboard): never. */
    wd_balance_init(&b, NULL, 0, 0, NULL);
    T_CHECK(!wd_balance_active(&b), "no siblings");
    T_CHECK(wd_balance_should_close(&b, T0, LONG, 0) == 0, "no siblings: keep");
    T_CHECK(wd_balance_set(&b, " 0:100 1:200") == -EINVAL, "no board: no record is valid");
    wd_balance_init(&b, board, N_BOARD, 2, NULL);
    wd_balance_set(&b, " 2:100");
    T_CHECK(!wd_balance_active(&b), "ourselves only");
}

/* A look at most once per WD_BALANCE_GAP_NS, whatever it found; a request that did not wait long
 * enough takes no look. */
static void test_gap(void)
{
    wd_balance_t b;

    memset(board, 0, sizeof board);
    put(2, 100, 1, 4, 4, 2);
    put(5, 200, 1, 4, 0, 0);
    wd_balance_init(&b, board, N_BOARD, 2, NULL);
    T_CHECK(wd_balance_should_close(&b, T0, LONG, 0) == 0, "no list yet");
    wd_balance_set(&b, " 5:200");
    T_CHECK(wd_balance_should_close(&b, T0, LONG - 1, 0) == 0, "a short wait");
    T_CHECK(wd_balance_should_close(&b, T0, LONG, 0) == 1, "first (the short wait took no look)");
    T_CHECK(wd_balance_should_close(&b, T0 + 1, LONG, 0) == 0, "within the gap");
    T_CHECK(wd_balance_should_close(&b, T0 + WD_BALANCE_GAP_NS - 1, LONG, 0) == 0,
            "the gap's last ns");
    put(5, 200, 1, 4, 4, 2);
    T_CHECK(wd_balance_should_close(&b, T0 + WD_BALANCE_GAP_NS, LONG, 0) == 0,
            "the gap is over: a look, none lighter");
    put(5, 200, 1, 4, 0, 0);
    T_CHECK(wd_balance_should_close(&b, T0 + WD_BALANCE_GAP_NS + 5, LONG, 0) == 0,
            "that look started a new gap");
    T_CHECK(wd_balance_should_close(&b, T0 + 2 * WD_BALANCE_GAP_NS, LONG, 0) == 1, "the next look");
}

int main(void)
{
    test_lists();
    test_close();
    test_gap();
    return t_summary("balance");
}
