/* The queue between the loop thread and the Python threads: see request.h. */
#include "request.h"

#include <sched.h>
#include <time.h>

void wd_queue_init(wd_queue_t *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->head = q->tail = NULL;
    q->len = 0;
    q->closed = 0;
    q->waiting = 0;
    q->depth = NULL;
    q->busy = NULL;
    q->nthreads = 0;
    q->pops = q->kick_pops = 0;
    q->kicking = 0;
    q->spinner = 0;
    q->spin_ns = 0;
}

void wd_queue_destroy(wd_queue_t *q)
{
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
}

int wd_queue_push(wd_queue_t *q, wd_req_t *first, wd_req_t *last, size_t n)
{
    int wake, unattended;

    if (first == NULL)
        return 0;
    last->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    q->len += n;
    if (q->depth)
        atomic_fetch_add_explicit(q->depth, n, memory_order_relaxed);
    wake = q->waiting > 0 && (size_t)q->waiting >= q->nthreads;
    unattended = q->len > (size_t)wake;
    if (unattended && !q->kicking) {
        q->kicking = 1;
        q->kick_pops = q->pops;
    }
    pthread_mutex_unlock(&q->lock);
    if (wake)
        pthread_cond_signal(&q->cond);
    return unattended;
}

int wd_queue_kick(wd_queue_t *q)
{
    size_t wakes = 0;
    int more;

    pthread_mutex_lock(&q->lock);
    if (q->len > 0 && q->pops == q->kick_pops)
        wakes = q->len < (size_t)q->waiting ? q->len : (size_t)q->waiting;
    q->kick_pops = q->pops;
    more = q->len > 0;
    q->kicking = more;
    pthread_mutex_unlock(&q->lock);
    for (size_t i = 0; i < wakes; i++)
        pthread_cond_signal(&q->cond);
    return more;
}

static wd_req_t *take_locked(wd_queue_t *q)
{
    wd_req_t *req = q->head;

    if (req) {
        q->head = req->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->len--;
        q->pops++;
        req->next = NULL;
        if (q->depth) {
            atomic_fetch_sub_explicit(q->depth, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(q->busy, 1, memory_order_relaxed);
        }
    }
    return req;
}

wd_req_t *wd_queue_try_pop(wd_queue_t *q)
{
    wd_req_t *req;

    pthread_mutex_lock(&q->lock);
    req = take_locked(q);
    pthread_mutex_unlock(&q->lock);
    return req;
}

/* busy-poll: one thread at a time checks the queue for spin_ns, yielding the CPU in between,
 * before it sleeps. The loop's push sees it as busy (it is not `waiting`) and wakes nobody: a
 * request that comes meanwhile costs no wake-up. NULL when it timed out or was not the spinner. */
static wd_req_t *spin_take(wd_queue_t *q)
{
    wd_req_t *req = NULL;
    uint64_t until;
    int done;

    pthread_mutex_lock(&q->lock);
    if (q->spinner || q->head != NULL || q->closed) {
        pthread_mutex_unlock(&q->lock);
        return NULL;
    }
    q->spinner = 1;
    pthread_mutex_unlock(&q->lock);
    until = wd_now_ns() + q->spin_ns;
    do {
        sched_yield();
        pthread_mutex_lock(&q->lock);
        req = take_locked(q);
        done = req != NULL || q->closed || wd_now_ns() >= until;
        if (done)
            q->spinner = 0;
        pthread_mutex_unlock(&q->lock);
    } while (!done);
    return req;
}

wd_req_t *wd_queue_pop(wd_queue_t *q)
{
    wd_req_t *req;

    if (q->spin_ns > 0 && (req = spin_take(q)) != NULL)
        return req;
    pthread_mutex_lock(&q->lock);
    while (q->head == NULL && !q->closed) {
        q->waiting++;
        pthread_cond_wait(&q->cond, &q->lock);
        q->waiting--;
    }
    req = take_locked(q);
    pthread_mutex_unlock(&q->lock);
    return req;
}

int wd_queue_remove(wd_queue_t *q, wd_req_t *req)
{
    wd_req_t **pp, *prev = NULL;
    int found = 0;

    pthread_mutex_lock(&q->lock);
    for (pp = &q->head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == req) {
            *pp = req->next;
            if (q->tail == req)
                q->tail = prev;
            req->next = NULL;
            q->len--;
            if (q->depth)
                atomic_fetch_sub_explicit(q->depth, 1, memory_order_relaxed);
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return found;
}

void wd_queue_close(wd_queue_t *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_mutex_unlock(&q->lock);
    pthread_cond_broadcast(&q->cond);
}

uint64_t wd_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
