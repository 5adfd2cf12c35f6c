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
    b->n_sib = 0;
    b->next_ns = 0;
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
    int rec[WD_SIBLINGS_MAX];
    uint64_t pid[WD_SIBLINGS_MAX];
    size_t n = 0;
    long r, p;

    for (;;) {
        while (*list == ' ')
            list++;
        if (*list == '\0')
            break;
        if (parse_one(&list, &r, &p) < 0 || r < 0 || (size_t)r >= b->n_board || p <= 0 ||
            n == WD_SIBLINGS_MAX)
            return -EINVAL;
        if (r == b->self)
            continue;
        rec[n] = (int)r;
        pid[n++] = (uint64_t)p;
    }
    for (size_t i = 0; i < n; i++) {
        b->sib[i].record = rec[i];
        b->sib[i].pid = pid[i];
    }
    b->n_sib = n;
    return (int)n;
}

/* Requests running and waiting for a thread, by a worker's gauges. */
static uint64_t load_of(const wd_score_t *s)
{
    return wd_score_get(&s->busy_threads) + wd_score_get(&s->queued);
}

/* The sibling still serves (its record holds its pid and says ready: not stopping, not dead) and
 * has at least two requests fewer than we do (one request moved from us to it would still wait
 * less there). The gauges are read without a lock: a wrong guess costs one reconnection, or one
 * request that waits as it would have anyway. */
static int sibling_lighter(const wd_score_t *s, uint64_t pid, uint64_t load)
{
    return wd_score_get(&s->pid) == pid && wd_score_get(&s->ready) == 1 && load_of(s) + 2 <= load;
}

int wd_balance_due(wd_balance_t *b, uint64_t now_ns)
{
    if (b->n_sib == 0 || now_ns < b->next_ns)
        return 0;
    b->next_ns = now_ns + WD_BALANCE_GAP_NS;
    return 1;
}

int wd_balance_should_close(wd_balance_t *b, uint64_t now_ns, uint64_t queued_since_ns)
{
    uint64_t load;

    if (b->board == NULL || queued_since_ns == 0 || now_ns < queued_since_ns + WD_BALANCE_WAIT_NS)
        return 0;
    load = load_of(&b->board[b->self]) + 1; /* the request being queued counts */
    for (size_t i = 0; i < b->n_sib; i++) {
        if (sibling_lighter(&b->board[b->sib[i].record], b->sib[i].pid, load)) {
            if (b->count != NULL)
                wd_score_add(b->count, 1);
            return 1;
        }
    }
    return 0;
}
