/* Names shared by the files of the hand-off module only (handoff.c: the queue, the idle threads,
 * the ready list, spinning and resting; handoff_park.c: parking and the loop's run). */
#ifndef WD_DAEMON_HANDOFF_INT_H
#define WD_DAEMON_HANDOFF_INT_H

#include "handoff.h"

#include <stdatomic.h>
#include <stdint.h>

/* wd_handoff_thread_t.wake: how a sleeping thread learns it was handed work. */
enum { T_AWAKE, T_SLEEPING, T_WOKEN };

#define SPIN_SCORE_MAX 16 /* this many misses in a row stop a side that always found work */
#define SPIN_PROBE 16     /* while spinning does not pay, one spin in this many still tries */

/* Whether to spin now. */
static inline int spin_worth(wd_handoff_spin_t *s)
{
    if (s->score > 0 || ++s->skipped >= SPIN_PROBE) {
        s->skipped = 0;
        return 1;
    }
    return 0;
}

/* How a spin ended: found work (hit) or timed out. */
static inline void spin_paid(wd_handoff_spin_t *s, int hit)
{
    if (hit)
        s->score = s->score < SPIN_SCORE_MAX ? s->score + 2 : SPIN_SCORE_MAX;
    else if (s->score > -SPIN_SCORE_MAX)
        s->score--;
}

/* The scoreboard's gauges (wd_handoff_init's depth and busy), when there are any. */
static inline void gauge_add(_Atomic uint64_t *g, uint64_t n)
{
    if (g)
        atomic_fetch_add_explicit(g, n, memory_order_relaxed);
}

static inline void gauge_sub(_Atomic uint64_t *g, uint64_t n)
{
    if (g)
        atomic_fetch_sub_explicit(g, n, memory_order_relaxed);
}

/* handoff.c */

/* Wakes a parked thread (it polls its connection and its eventfd); counted once written. */
void wd__handoff_efd_wake(wd_handoff_thread_t *t);
/* What the loop does before it blocks (the prepare phase), for wd_handoff_run's own poll. */
void wd__handoff_prepare(wd_handoff_t *h);
/* wd_handoff_run's own poll has returned, the next turn is a UV_RUN_NOWAIT one: see lazy_cb. */
void wd__handoff_polled(wd_handoff_t *h);

/* handoff_park.c */

/* Why a park ends: input on the connection, work queued, or the loop wants it back. */
enum { PARK_END_INPUT, PARK_END_WORK, PARK_END_LOOP };
/* Thread, no lock held: t's parked connection goes back to the loop, or (input) has a request. */
wd_req_t *wd__handoff_park_end(wd_handoff_t *h, wd_handoff_thread_t *t, int why);
/* t is parked: waits on its connection and on its eventfd (a push, close, or the loop wanting
 * the connection back). A request, or NULL once the connection is the loop's again. */
wd_req_t *wd__handoff_park_wait(wd_handoff_t *h, wd_handoff_thread_t *t);
/* A thread that roamed (left its CPU while parked) goes back to the worker's CPU. */
void wd__handoff_go_home(wd_handoff_t *h, wd_handoff_thread_t *t);

#endif
