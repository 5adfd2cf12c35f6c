/* Keep-alive balance between the workers of a group: see balance.h. */
#include "balance.h"

#include <errno.h>
#include <stdlib.h>

void wd_balance_init(wd_balance_t *b, const wd_score_t *board, size_t n_board, int self,
                     _Atomic uint64_t *count)
{
    b->board = board;
    b->n_board = n_board;
    b->self = self;
    atomic_store(&b->n_sib, 0);
    atomic_store(&b->next_ns, 0);
    b->count = count;
}

static int parse_one(const char **s, long *record, long *pid)
{
    char *end;

    errno = 0;
    *record = strtol(*s, &end, 10);
    if (end == *s || *end != ':' || errno != 0)
        return -1;
    *s = end + 1;
    *pid = strtol(*s, &end, 10);
    if (end == *s || errno != 0 || (*end != ' ' && *end != '\0'))
        return -1;
    *s = end;
    return 0;
}

int wd_balance_set(wd_balance_t *b, const char *list)
{
    uint64_t sib[WD_SIBLINGS_MAX];
    size_t n = 0;
    long r, p;

    for (;;) {
        while (*list == ' ')
            list++;
        if (*list == '\0')
            break;
        if (parse_one(&list, &r, &p) < 0 || r < 0 || (size_t)r >= b->n_board || p <= 0 ||
            p > UINT32_MAX || n == WD_SIBLINGS_MAX)
            return -EINVAL;
        if (r != b->self)
            sib[n++] = (uint64_t)r << 32 | (uint64_t)p;
    }
    /* A thread reading meanwhile may pair an old count with new entries: each entry is whole,
     * and one that no longer holds its pid counts for nothing. */
    atomic_store(&b->n_sib, 0);
    for (size_t i = 0; i < n; i++)
        atomic_store(&b->sib[i], sib[i]);
    atomic_store(&b->n_sib, n);
    return (int)n;
}

int wd_balance_active(const wd_balance_t *b)
{
    return b->board != NULL && atomic_load_explicit(&b->n_sib, memory_order_relaxed) > 0;
}

int wd_balance_any_ready(const wd_balance_t *b)
{
    size_t n = atomic_load(&b->n_sib);

    for (size_t i = 0; b->board != NULL && i < n; i++) {
        uint64_t s = atomic_load_explicit(&b->sib[i], memory_order_relaxed);
        const wd_score_t *r = &b->board[s >> 32];

        if (wd_score_get(&r->pid) == (s & 0xffffffffu) && wd_score_get(&r->ready) == 1)
            return 1;
    }
    return 0;
}

/* Requests running and waiting for a thread, by a worker's gauges. */
static uint64_t load_of(const wd_score_t *s)
{
    return wd_score_get(&s->busy_threads) + wd_score_get(&s->queued);
}

/* Whether the proxy's next request on this connection would be served sooner by the sibling s
 * (pid) than here, where load requests run or wait (this one included, about to end) on our
 * threads. It would wait here when the rest fill our threads (load > threads). It waits less there
 * when s has an idle thread; when s's threads are all taken too, only when our queue is longer by
 * more than our threads: a request's wait is about its place in the queue over the threads, so
 * anything less saves it less than one request's time, and a close costs a reconnection, which
 * may land on any worker. With one thread a worker both come to "two requests fewer".
 * The sibling must still serve (its record holds its pid and says ready: not stopping, not dead).
 * The gauges are read without a lock: a wrong guess costs one reconnection, or one request that
 * waits as it would have anyway. */
static int sibling_lighter(const wd_score_t *s, uint64_t pid, uint64_t load, uint64_t threads)
{
    uint64_t sib_load, sib_threads;

    if (wd_score_get(&s->pid) != pid || wd_score_get(&s->ready) != 1 || load <= threads)
        return 0;
    sib_load = load_of(s);
    sib_threads = wd_score_get(&s->threads);
    if (sib_load < sib_threads)
        return 1;
    return load - threads > sib_load - sib_threads + threads;
}

/* At most one look per WD_BALANCE_GAP_NS, whichever thread takes it. */
static int due(wd_balance_t *b, uint64_t now_ns)
{
    uint64_t next = atomic_load_explicit(&b->next_ns, memory_order_relaxed);

    return now_ns >= next &&
           atomic_compare_exchange_strong(&b->next_ns, &next, now_ns + WD_BALANCE_GAP_NS);
}

int wd_balance_should_close(wd_balance_t *b, uint64_t now_ns, uint64_t waited_ns, unsigned gone)
{
    size_t n = atomic_load(&b->n_sib);
    uint64_t load, threads;

    if (b->board == NULL || n == 0 || waited_ns < WD_BALANCE_WAIT_NS || !due(b, now_ns))
        return 0;
    load = load_of(&b->board[b->self]) + gone;
    threads = wd_score_get(&b->board[b->self].threads);
    for (size_t i = 0; i < n; i++) {
        uint64_t s = atomic_load_explicit(&b->sib[i], memory_order_relaxed);

        if (sibling_lighter(&b->board[s >> 32], s & 0xffffffffu, load, threads)) {
            if (b->count != NULL)
                wd_score_add(b->count, 1);
            return 1;
        }
    }
    return 0;
}
