/* pin-threads: see affinity.h. */
#include "affinity.h"

#include <pthread.h>
#include <sched.h>

static cpu_set_t whole; /* the mask the worker started with */
static int whole_saved;

/* In a child the app forked: the whole mask back, so that the program it runs is the scheduler's
 * to place. */
static void child_unpin(void)
{
    if (whole_saved)
        (void)sched_setaffinity(0, sizeof whole, &whole);
}

int wd_affinity_home(const wd_config_t *c, const wd_group_conf_t *g, int slot)
{
    cpu_set_t allowed;
    int n, index = slot - 1;

    if (!g->pin_threads || sched_getaffinity(0, sizeof allowed, &allowed) < 0)
        return -1;
    n = CPU_COUNT(&allowed);
    if (n < 2)
        return -1;
    for (size_t i = 0; i < c->n_groups && &c->groups[i] != g; i++)
        index += c->groups[i].processes;
    index %= n;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &allowed) && index-- == 0)
            return cpu;
    return -1;
}

int wd_affinity_pin(int cpu)
{
    cpu_set_t one;

    if (!whole_saved) {
        if (sched_getaffinity(0, sizeof whole, &whole) < 0)
            return -1;
        whole_saved = 1;
        (void)pthread_atfork(NULL, NULL, child_unpin);
    }
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(0, sizeof one, &one);
}

void wd_affinity_unpin(void)
{
    child_unpin();
}
