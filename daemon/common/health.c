/* See health.h. */
#include "health.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct out {
    char *p;
    size_t cap, len;
} out_t;

static void say(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(out_t *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->len >= o->cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

static int is_group(const char *name, const char *group, size_t glen)
{
    return group == NULL || (strlen(name) == glen && memcmp(name, group, glen) == 0);
}

static int live(const wd_status_t *st, uint64_t now_ns, out_t *o)
{
    int bad = 0;

    for (size_t i = 0; i < st->n_workers; i++) {
        const wd_status_worker_t *w = &st->workers[i];
        uint64_t hb;

        if (w->score == NULL || w->pid == 0 || strcmp(w->state, "ready") != 0)
            continue;
        hb = wd_score_get(&w->score->heartbeat_ns);
        if (hb == 0 || now_ns <= hb || now_ns - hb < WD_HEALTH_STALE_NS)
            continue;
        say(o, "group %s worker %d (pid %d): its loop has not run for %.1f s\n", w->group, w->slot,
            w->pid, (double)(now_ns - hb) / 1e9);
        bad = 1;
    }
    return bad;
}

/* Whether g takes more than it serves: a request in one of its ready workers has waited for a
 * thread longer than readiness-queue-wait, and no ready worker that takes new connections has a
 * thread free for a new one (every thread runs a request or is wanted by a queued one; a worker
 * that stopped accepting, for a request stuck past request-timeout, max-connections or the
 * open-file limit, serves no new connection with its free threads). *waited: the longest wait,
 * as of the worker's last tick (250 ms).
 * Not "a queue in every worker": a proxy's connections belong to the worker that accepted them,
 * and when an app hangs one worker may hold most of them; with 2 x 2 threads behind 10 clients,
 * one with 2 requests running and 6 queued and the other with 2 running and none queued is jammed
 * as a whole, and a hung host would stay in a load balancer's rotation that way (the fleet test's
 * once did, 10 s; tests/e2e/test_health.py builds that split). One worker jammed while another
 * has a thread free is not: a new connection is served there. */
static int queue_jammed(const wd_status_t *st, const wd_status_group_t *g, uint64_t now_ns,
                        double *waited)
{
    *waited = 0;
    if (g->ready_queue_wait <= 0)
        return 0;
    for (size_t k = 0; k < st->n_workers; k++) {
        const wd_status_worker_t *w = &st->workers[k];
        uint64_t since;
        double secs;

        if (strcmp(w->group, g->name) != 0 || strcmp(w->state, "ready") != 0 || w->score == NULL)
            continue;
        if (wd_score_get(&w->score->accepting) &&
            wd_score_get(&w->score->busy_threads) + wd_score_get(&w->score->queued) <
                wd_score_get(&w->score->threads))
            return 0;
        since = wd_score_get(&w->score->queued_since_ns);
        secs = since != 0 && now_ns > since ? (double)(now_ns - since) / 1e9 : 0;
        if (secs > *waited)
            *waited = secs;
    }
    return *waited > g->ready_queue_wait;
}

/* How g stands, and why not ready (one line in why). */
enum { G_READY, G_DRAIN /* not ready, still serving */, G_DOWN /* not serving */ };

static int group_state(const wd_status_t *st, const wd_status_group_t *g, uint64_t now_ns,
                       out_t *why)
{
    int n_ready = 0;
    double waited;

    for (size_t k = 0; k < st->n_workers; k++) {
        const wd_status_worker_t *w = &st->workers[k];

        n_ready += strcmp(w->group, g->name) == 0 && strcmp(w->state, "ready") == 0;
    }
    if (g->stopped) {
        say(why, "group %s: stopped\n", g->name);
        return G_DOWN;
    }
    if (g->draining) {
        say(why, "group %s: draining (stops in %.0f s)\n", g->name, g->drain_left);
        return G_DRAIN;
    }
    if (n_ready == 0) {
        say(why, "group %s: no worker has its app loaded\n", g->name);
        return G_DOWN;
    }
    if (queue_jammed(st, g, now_ns, &waited)) {
        say(why,
            "group %s: a request has waited %.1f s for a thread, and no worker has one free "
            "(readiness-queue-wait %.1f s)\n",
            g->name, waited, g->ready_queue_wait);
        return G_DRAIN;
    }
    return G_READY;
}

static int ready(const wd_status_t *st, uint64_t now_ns, const char *group, size_t glen, out_t *o,
                 int *found)
{
    int bad = 0;

    for (size_t i = 0; i < st->n_groups; i++) {
        if (!is_group(st->groups[i].name, group, glen))
            continue;
        *found = 1;
        bad |= group_state(st, &st->groups[i], now_ns, o) != G_READY;
    }
    return bad;
}

/* The share of g's threads (in its ready workers) that are free: idle, and not wanted by a queued
 * request; at least 1. */
static unsigned free_percent(const wd_status_t *st, const wd_status_group_t *g)
{
    uint64_t total = 0, busy = 0;

    for (size_t k = 0; k < st->n_workers; k++) {
        const wd_status_worker_t *w = &st->workers[k];

        if (strcmp(w->group, g->name) != 0 || strcmp(w->state, "ready") != 0 || w->score == NULL)
            continue;
        total += wd_score_get(&w->score->threads);
        busy += wd_score_get(&w->score->busy_threads) + wd_score_get(&w->score->queued);
    }
    if (total == 0 || busy >= total || (total - busy) * 100 < total)
        return 1;
    return (unsigned)((total - busy) * 100 / total);
}

size_t wd_health_agent(const wd_status_t *st, uint64_t now_ns, const char *group, size_t glen,
                       char *out, size_t cap)
{
    out_t o = {out, cap, 0};
    char why[512];
    int worst = G_READY, found = 0;
    unsigned pct = 100;

    if (cap > 0)
        out[0] = '\0';
    for (size_t i = 0; i < st->n_groups; i++) {
        const wd_status_group_t *g = &st->groups[i];
        out_t line = {why, sizeof why, 0};
        int state;

        if (!is_group(g->name, group, glen))
            continue;
        found = 1;
        state = group_state(st, g, now_ns, &line);
        if (state == G_READY) {
            unsigned p = free_percent(st, g);

            pct = p < pct ? p : pct;
        } else if (state > worst) {
            /* The reason of the worst group: "down #group site1: stopped". */
            worst = state;
            o.len = 0;
            why[strcspn(why, "\n")] = '\0';
            say(&o, "%s #%s\n", state == G_DOWN ? "down" : "drain", why);
        }
    }
    if (!found)
        say(&o, "down #no group %.*s\n", (int)(glen > 64 ? 64 : glen), group ? group : "");
    else if (worst == G_READY)
        say(&o, "up ready %u%%\n", pct);
    return o.len;
}

int wd_health_eval(const wd_status_t *st, uint64_t now_ns, wd_health_kind_t kind, const char *group,
                   size_t glen, char *body, size_t cap)
{
    out_t o = {body, cap, 0};
    int bad, found = 0;

    if (cap > 0)
        body[0] = '\0';
    if (kind == WD_HEALTH_LIVE) {
        bad = live(st, now_ns, &o);
    } else {
        bad = ready(st, now_ns, group, glen, &o, &found);
        if (!found) {
            say(&o, "no group %.*s\n", (int)(glen > 64 ? 64 : glen), group ? group : "");
            return 404;
        }
    }
    if (!bad)
        say(&o, "ok\n");
    return bad ? 503 : 200;
}
