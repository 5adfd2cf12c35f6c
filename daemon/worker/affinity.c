/* pin-threads: see affinity.h. */
#include "affinity.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

/* CPU sets are sized at run time (CPU_ALLOC): a fixed cpu_set_t holds 1024 CPUs, and on a machine
 * whose kernel counts more, sched_getaffinity refuses it (EINVAL). CPU_ALLOC is malloc, not
 * xmalloc: out of memory here only leaves the threads unpinned, which is no reason to abort. */
typedef struct {
    cpu_set_t *set;
    size_t size; /* bytes */
} mask_t;

static mask_t whole; /* the mask the worker started with */

/* The calling thread's mask: 0, or -1 with errno. */
static int mask_get(mask_t *m)
{
    int err;

    for (int n = CPU_SETSIZE; n <= (1 << 22); n *= 2) {
        m->size = CPU_ALLOC_SIZE(n);
        m->set = CPU_ALLOC(n);
        if (m->set == NULL)
            return -1;
        if (sched_getaffinity(0, m->size, m->set) == 0)
            return 0;
        err = errno;
        CPU_FREE(m->set);
        m->set = NULL;
        errno = err;
        if (err != EINVAL)
            return -1;
    }
    return -1;
}

/* In a child the app forked: the whole mask back, so that the program it runs is the scheduler's
 * to place. */
static void child_unpin(void)
{
    if (whole.set != NULL)
        (void)sched_setaffinity(0, whole.size, whole.set);
}

int wd_affinity_home(int pin_threads, int index, int workers, char *why, size_t why_cap)
{
    mask_t allowed;
    int n, cpu = -1;

    if (why != NULL && why_cap > 0)
        why[0] = '\0';
    if (pin_threads == WD_PIN_OFF || mask_get(&allowed) < 0)
        return -1;
    n = CPU_COUNT_S(allowed.size, allowed.set);
    if (n >= 2 && (pin_threads == WD_PIN_ON || workers >= n)) {
        index %= n;
        for (int k = 0; k < (int)(allowed.size * 8) && cpu < 0; k++)
            if (CPU_ISSET_S(k, allowed.size, allowed.set) && index-- == 0)
                cpu = k;
    } else if (n >= 2 && why != NULL) { /* auto, with fewer workers than CPUs */
        snprintf(why, why_cap, "%d worker%s in all for %d CPUs", workers, workers == 1 ? "" : "s",
                 n);
    }
    CPU_FREE(allowed.set);
    return cpu;
}

int wd_affinity_pin(int cpu)
{
    cpu_set_t *one;
    size_t size;
    int rc, err;

    if (whole.set == NULL) {
        if (mask_get(&whole) < 0)
            return -1;
        (void)pthread_atfork(NULL, NULL, child_unpin);
    }
    one = CPU_ALLOC(cpu + 1);
    if (one == NULL)
        return -1;
    size = CPU_ALLOC_SIZE(cpu + 1);
    CPU_ZERO_S(size, one);
    CPU_SET_S(cpu, size, one);
    rc = sched_setaffinity(0, size, one);
    err = errno;
    CPU_FREE(one);
    errno = err;
    return rc;
}

void wd_affinity_unpin(void)
{
    child_unpin();
}
