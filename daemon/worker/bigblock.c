/* Large blocks kept for reuse: see bigblock.h.
 *
 * Every block handed out is a mapping of its own, registered in a slot while it lives (in use or
 * kept), so that a free can tell ours from malloc's: a pointer outside [lo, hi) of the registered
 * blocks is not ours, without taking the lock, which is what nearly every free of the Python
 * threads sees. */
#include "bigblock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

#define BIG_ROUND ((size_t)64 * 1024)

typedef struct {
    char *p;
    size_t cap;
    int used;
} big_slot_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static big_slot_t slots[WD_BIG_SLOTS];
static int n_slots;
static size_t kept; /* bytes of the blocks not in use */
static _Atomic uintptr_t lo = UINTPTR_MAX, hi;

/* A child forked while another thread held the lock (an app's os.fork, multiprocessing) would
 * wait for it for ever at its first big allocation: fork takes it first, as glibc does its own. */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

static void fork_after(void)
{
    pthread_mutex_unlock(&lock);
}

static void atfork_install(void)
{
    pthread_atfork(fork_prepare, fork_after, fork_after);
}

/* Lock held. */
static void bounds_update(void)
{
    uintptr_t l = UINTPTR_MAX, h = 0;

    for (int i = 0; i < n_slots; i++) {
        if ((uintptr_t)slots[i].p < l)
            l = (uintptr_t)slots[i].p;
        if ((uintptr_t)slots[i].p + slots[i].cap > h)
            h = (uintptr_t)slots[i].p + slots[i].cap;
    }
    atomic_store_explicit(&lo, l, memory_order_relaxed);
    atomic_store_explicit(&hi, h, memory_order_relaxed);
}

/* Lock held. */
static void slot_drop(int i)
{
    munmap(slots[i].p, slots[i].cap);
    slots[i] = slots[--n_slots];
}

/* Whether p may be ours: what a free of malloc's memory learns without the lock. */
static int in_bounds(const void *p)
{
    uintptr_t a = (uintptr_t)p;

    return a >= atomic_load_explicit(&lo, memory_order_relaxed) &&
           a < atomic_load_explicit(&hi, memory_order_relaxed);
}

/* Lock held: the slot of p, or -1. */
static int slot_of(const void *p)
{
    for (int i = 0; i < n_slots; i++) {
        if (slots[i].p == p)
            return i;
    }
    return -1;
}

void *wd_big_alloc(size_t n)
{
    int best = -1;
    size_t cap;
    void *p;

    if (n < WD_BIG_MIN)
        return NULL;
    pthread_once(&atfork_once, atfork_install);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_slots; i++) {
        if (!slots[i].used && slots[i].cap >= n && slots[i].cap / 2 <= n &&
            (best < 0 || slots[i].cap < slots[best].cap))
            best = i;
    }
    if (best >= 0) {
        slots[best].used = 1;
        kept -= slots[best].cap;
        p = slots[best].p;
        pthread_mutex_unlock(&lock);
        return p;
    }
    /* None fits: make room among the kept ones if need be, then map a new block. */
    for (int i = n_slots - 1; i >= 0 && n_slots == WD_BIG_SLOTS; i--) {
        if (!slots[i].used) {
            kept -= slots[i].cap;
            slot_drop(i);
        }
    }
    if (n_slots == WD_BIG_SLOTS || n > SIZE_MAX - BIG_ROUND) {
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    cap = (n + BIG_ROUND - 1) / BIG_ROUND * BIG_ROUND;
    p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    slots[n_slots++] = (big_slot_t){p, cap, 1};
    bounds_update();
    pthread_mutex_unlock(&lock);
    return p;
}

int wd_big_free(void *p)
{
    int i;

    if (!in_bounds(p))
        return 0;
    pthread_mutex_lock(&lock);
    i = slot_of(p);
    if (i < 0) {
        pthread_mutex_unlock(&lock);
        return 0;
    }
    /* Kept, unless that would keep more than WD_BIG_KEEP: then the largest kept ones go first
     * (this one too, if it is the largest). */
    slots[i].used = 0;
    kept += slots[i].cap;
    while (kept > WD_BIG_KEEP) {
        int big = -1;

        for (int k = 0; k < n_slots; k++) {
            if (!slots[k].used && (big < 0 || slots[k].cap > slots[big].cap))
                big = k;
        }
        kept -= slots[big].cap;
        slot_drop(big);
    }
    bounds_update();
    pthread_mutex_unlock(&lock);
    return 1;
}

size_t wd_big_cap(const void *p)
{
    size_t cap = 0;
    int i;

    if (!in_bounds(p))
        return 0;
    pthread_mutex_lock(&lock);
    i = slot_of(p);
    if (i >= 0)
        cap = slots[i].cap;
    pthread_mutex_unlock(&lock);
    return cap;
}

size_t wd_big_trim(void)
{
    size_t freed;

    /* The loop trims at idle ticks whether or not a big block was ever made: the fork handlers
     * must be in place before it first takes the lock. */
    pthread_once(&atfork_once, atfork_install);
    pthread_mutex_lock(&lock);
    freed = kept;
    for (int i = n_slots - 1; i >= 0; i--) {
        if (!slots[i].used)
            slot_drop(i);
    }
    kept = 0;
    bounds_update();
    pthread_mutex_unlock(&lock);
    return freed;
}
