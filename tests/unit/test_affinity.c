/* pin-threads (daemon/worker/affinity.c): which CPU each worker's Python threads get, over
 * whatever mask the test is allowed, and that pinning, unpinning and a fork restore the mask. */
#include "affinity.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"

/* The allowed CPUs in order (sized at run time, as affinity.c does: a machine may have more than
 * CPU_SETSIZE); *bits: how many CPUs the mask could hold. */
static int allowed_list(int *out, int cap, int *bits)
{
    for (int n = CPU_SETSIZE; n <= (1 << 22); n *= 2) {
        cpu_set_t *s = CPU_ALLOC(n);
        size_t size = CPU_ALLOC_SIZE(n);
        int k = 0;

        if (s == NULL)
            return -1;
        if (sched_getaffinity(0, size, s) == 0) {
            for (int cpu = 0; cpu < (int)size * 8 && k < cap; cpu++)
                if (CPU_ISSET_S(cpu, size, s))
                    out[k++] = cpu;
            if (bits != NULL)
                *bits = (int)size * 8;
            CPU_FREE(s);
            return k;
        }
        CPU_FREE(s);
    }
    return -1;
}

static int set_mask(const int *cpus, int n)
{
    int top = 0, rc;
    cpu_set_t *s;
    size_t size;

    for (int i = 0; i < n; i++)
        top = cpus[i] > top ? cpus[i] : top;
    s = CPU_ALLOC(top + 1);
    size = CPU_ALLOC_SIZE(top + 1);
    if (s == NULL)
        return -1;
    CPU_ZERO_S(size, s);
    for (int i = 0; i < n; i++)
        CPU_SET_S(cpus[i], size, s);
    rc = sched_setaffinity(0, size, s);
    CPU_FREE(s);
    return rc;
}

enum { MAX_CPUS = 1 << 16 };
static int got[MAX_CPUS];

static int mask_is(const int *cpus, int n)
{
    int m = allowed_list(got, MAX_CPUS, NULL);

    if (m != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (got[i] != cpus[i])
            return 0;
    return 1;
}

/* As the master places a worker and the worker pins it. */
static int home(const wd_config_t *c, const wd_group_conf_t *g, int slot, char *why, size_t cap)
{
    int workers, index = wd_config_worker_index(c, g, slot, &workers);

    return wd_affinity_home(g->pin_threads, index, workers, why, cap);
}

/* Three groups in file order: a (2 workers), b (3, pin-threads off), c (3). */
static wd_group_conf_t groups[3];
static wd_config_t conf = {.groups = groups, .n_groups = 3};

static const struct {
    int group, slot;
    int index; /* the worker's place in the round robin over every group, -1: not pinned */
} cases[] = {
    {0, 1, 0},  {0, 2, 1},              /* a: the first two places */
    {1, 1, -1}, {1, 2, -1}, {1, 3, -1}, /* b: pin-threads: false (its workers still count) */
    {2, 1, 5},  {2, 2, 6},  {2, 3, 7},  /* c: after a's 2 and b's 3 */
};

static void check_homes(const int *cpus, int n, const char *what)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int want = cases[i].index < 0 || n < 2 ? -1 : cpus[cases[i].index % n];
        int got = home(&conf, &groups[cases[i].group], cases[i].slot, NULL, 0);

        T_CHECK(got == want, "%s: group %s slot %d: CPU %d, want %d", what,
                groups[cases[i].group].name, cases[i].slot, got, want);
    }
}

/* auto (the default): pinned only when the workers of every group, pinned or not, are at least
 * as many as the CPUs; on, always. x has one worker fewer than there are CPUs, y one. */
static void check_auto(const int *cpus, int n)
{
    wd_group_conf_t two[2] = {{.name = "x", .processes = n - 1, .pin_threads = WD_PIN_AUTO},
                              {.name = "y", .processes = 1, .pin_threads = WD_PIN_OFF}};
    wd_config_t c = {.groups = two, .n_groups = 2};

    for (int slot = 1; slot < n; slot++) {
        int got = home(&c, &two[0], slot, NULL, 0);

        T_CHECK(got == cpus[slot - 1], "auto, %d workers for %d CPUs: slot %d on CPU %d, want %d",
                n, n, slot, got, cpus[slot - 1]);
    }
    c.n_groups = 1;
    for (int slot = 1; slot < n; slot++) {
        char why[64], want[64];
        int got = home(&c, &two[0], slot, why, sizeof why);

        T_CHECK(got == -1, "auto, %d workers for %d CPUs: slot %d on CPU %d", n - 1, n, slot, got);
        snprintf(want, sizeof want, "%d worker%s in all for %d CPUs", n - 1, n - 1 == 1 ? "" : "s",
                 n);
        T_CHECK(strcmp(why, want) == 0, "auto says why it pins nothing: \"%s\"", why);
    }
    two[0].pin_threads = WD_PIN_ON;
    for (int slot = 1; slot < n; slot++) {
        char why[64] = "x";
        int got = home(&c, &two[0], slot, why, sizeof why);

        T_CHECK(why[0] == '\0', "on: no reason to give: \"%s\"", why);

        T_CHECK(got == cpus[slot - 1], "on, %d workers for %d CPUs: slot %d on CPU %d, want %d",
                n - 1, n, slot, got, cpus[slot - 1]);
    }
}

int main(void)
{
    static int cpus[MAX_CPUS];
    int bits = 0, n = allowed_list(cpus, MAX_CPUS, &bits), status;
    pid_t pid;

    groups[0] = (wd_group_conf_t){.name = "a", .processes = 2, .pin_threads = WD_PIN_ON};
    groups[1] = (wd_group_conf_t){.name = "b", .processes = 3, .pin_threads = WD_PIN_OFF};
    groups[2] = (wd_group_conf_t){.name = "c", .processes = 3, .pin_threads = WD_PIN_ON};
    if (n < 1) {
        printf("sched_getaffinity failed\n");
        return 1;
    }

    /* One CPU allowed: nothing is pinned. */
    T_CHECK(set_mask(cpus, 1) == 0, "cannot allow CPU %d alone", cpus[0]);
    check_homes(cpus, 1, "one CPU");
    T_CHECK(set_mask(cpus, n) == 0, "cannot restore the mask");
    if (n < 2) {
        printf("SKIP: the round robin needs two CPUs; this process may use one\n");
        return t_failures ? 1 : 77;
    }

    /* The whole mask, then pairs of allowed CPUs as the mask (taskset's case): each of the first
     * four with the last, so that the CPUs of a pair need not be next to each other. */
    check_homes(cpus, n, "the whole mask");
    check_auto(cpus, n);
    for (int i = 0; i + 1 < n && i < 4; i++) {
        int two[2] = {cpus[i], cpus[n - 1]};

        T_CHECK(set_mask(two, 2) == 0, "cannot allow CPUs %d and %d", two[0], two[1]);
        check_homes(two, 2, "two CPUs");
    }
    T_CHECK(set_mask(cpus, n) == 0, "cannot restore the mask");

    /* Pin: this thread and what it starts on one CPU; a child forked meanwhile gets the whole
     * mask back; unpin restores it here. */
    T_CHECK(wd_affinity_pin(cpus[n - 1]) == 0, "cannot pin to CPU %d", cpus[n - 1]);
    T_CHECK(mask_is(&cpus[n - 1], 1), "after pin: not on CPU %d alone", cpus[n - 1]);
    pid = fork();
    if (pid == 0)
        _exit(mask_is(cpus, n) ? 0 : 1);
    T_CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                WEXITSTATUS(status) == 0,
            "a forked child did not get the whole mask back");
    wd_affinity_unpin();
    T_CHECK(mask_is(cpus, n), "after unpin: not the whole mask");
    T_CHECK(wd_affinity_pin(bits + 5) < 0, "pinning to CPU %d, which does not exist, worked",
            bits + 5);
    T_CHECK(mask_is(cpus, n), "a refused pin changed the mask");
    return t_summary("affinity");
}
