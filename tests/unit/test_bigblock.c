/* The big blocks kept for reuse (daemon/worker/bigblock.h): small sizes and foreign pointers
 * are not ours; a freed block is handed out again for a size it fits (not over twice over);
 * no more than WD_BIG_KEEP bytes are kept; trim unmaps what is kept and nothing in use; threads
 * that allocate and free at once get blocks of their own; a fork in the middle does not hang. */
#include "bigblock.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>

#define MIB ((size_t)1 << 20)

typedef struct {
    const char *name;
    size_t first;  /* allocated, written, freed */
    size_t second; /* then allocated: the same block again? */
    int same;
} reuse_case_t;

static const reuse_case_t reuse_cases[] = {
    {"the same size", MIB, MIB, 1},  {"a little smaller", MIB, MIB - 4096, 1},
    {"half of it", MIB, MIB / 2, 1}, {"under half of it", MIB, MIB / 2 - 65536, 0},
    {"larger", MIB, MIB + 1, 0},     {"the smallest big size", WD_BIG_MIN, WD_BIG_MIN, 1},
};

static void test_not_ours(void)
{
    char stack_byte;
    void *m = malloc(WD_BIG_MIN);

    T_CHECK(wd_big_alloc(WD_BIG_MIN - 1) == NULL, "a size under WD_BIG_MIN is malloc's");
    T_CHECK(wd_big_alloc(0) == NULL, "size 0 is malloc's");
    T_CHECK(!wd_big_free(m), "a malloc'd block is not ours");
    T_CHECK(!wd_big_free(&stack_byte), "a stack address is not ours");
    T_CHECK(!wd_big_free(NULL), "NULL is not ours");
    T_CHECK(wd_big_cap(m) == 0, "a malloc'd block has no cap of ours");
    free(m);
}

static void test_reuse(void)
{
    for (size_t i = 0; i < sizeof reuse_cases / sizeof reuse_cases[0]; i++) {
        const reuse_case_t *c = &reuse_cases[i];
        char *a = wd_big_alloc(c->first), *b;

        T_CHECK(a != NULL, "%s: first block", c->name);
        if (a == NULL)
            continue;
        T_CHECK(wd_big_cap(a) >= c->first, "%s: cap %zu < %zu", c->name, wd_big_cap(a), c->first);
        memset(a, 'a', c->first);
        T_CHECK(wd_big_free(a), "%s: the block is ours", c->name);
        b = wd_big_alloc(c->second);
        T_CHECK(b != NULL, "%s: second block", c->name);
        T_CHECK((b == a) == c->same, "%s: reused %d, want %d", c->name, b == a, c->same);
        memset(b, 'b', c->second);
        T_CHECK(wd_big_free(b), "%s: the second block is ours", c->name);
        wd_big_trim();
    }
}

static void test_keep_bound_and_trim(void)
{
    enum { N = WD_BIG_KEEP / MIB + 16 };
    char *p[N];
    size_t freed;

    for (int i = 0; i < N; i++) {
        p[i] = wd_big_alloc(MIB);
        T_CHECK(p[i] != NULL, "block %d", i);
        memset(p[i], i, MIB);
    }
    for (int i = 0; i < N; i++)
        T_CHECK(wd_big_free(p[i]), "block %d is ours", i);
    freed = wd_big_trim();
    T_CHECK(freed <= WD_BIG_KEEP, "kept %zu bytes, over WD_BIG_KEEP", freed);
    T_CHECK(freed >= WD_BIG_KEEP - MIB, "kept only %zu bytes of %d MiB freed", freed, N);
    T_CHECK(wd_big_trim() == 0, "a second trim finds nothing kept");
    for (int i = 0; i < N; i++)
        T_CHECK(wd_big_cap(p[i]) == 0, "block %d still ours after trim", i);

    /* A block in use is not trimmed, and is still ours to free. */
    p[0] = wd_big_alloc(MIB);
    p[1] = wd_big_alloc(MIB);
    wd_big_free(p[1]);
    T_CHECK(wd_big_trim() >= MIB, "the freed block was kept, then trimmed");
    T_CHECK(wd_big_cap(p[0]) >= MIB, "the block in use survived the trim");
    p[0][MIB - 1] = 1;
    T_CHECK(wd_big_free(p[0]), "the block in use is freed after the trim");
    wd_big_trim();
}

static void test_slots_run_out(void)
{
    enum { N = WD_BIG_SLOTS + 32 };
    void *p[N];
    int ours = 0;

    /* More live blocks than slots: the rest are NULL (malloc's), never a block twice. */
    for (int i = 0; i < N; i++) {
        p[i] = wd_big_alloc(WD_BIG_MIN);
        ours += p[i] != NULL;
        for (int k = 0; k < i && p[i]; k++)
            T_CHECK(p[k] != p[i], "block %d handed out twice", i);
    }
    T_CHECK(ours >= WD_BIG_SLOTS / 2 && ours < N, "%d of %d live blocks were ours", ours, N);
    for (int i = 0; i < N; i++)
        if (p[i])
            T_CHECK(wd_big_free(p[i]), "block %d is ours", i);
    wd_big_trim();
}

static void *churn(void *arg)
{
    uintptr_t id = (uintptr_t)arg;

    for (int i = 0; i < 2000; i++) {
        size_t n = WD_BIG_MIN + (size_t)((i * 7919 + (int)id * 104729) % (int)MIB);
        unsigned char *p = wd_big_alloc(n);

        if (p == NULL)
            continue;
        p[0] = p[n - 1] = (unsigned char)id;
        if (p[0] != (unsigned char)id || p[n - 1] != (unsigned char)id)
            return (void *)1; /* another thread has the same block */
        if (!wd_big_free(p))
            return (void *)2;
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];
    void *rc;

    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, churn, (void *)(i + 1));
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], &rc);
        T_CHECK(rc == NULL, "thread %d: %s", i,
                rc == (void *)1 ? "a block was shared" : "a block was not ours at free");
    }
    T_CHECK(wd_big_trim() <= WD_BIG_KEEP, "over WD_BIG_KEEP kept after the threads");
}

/* Forks 50 children while another thread works; each makes and frees ten 1 MiB blocks under a
 * 2 s alarm. Whether one of them did not finish (the first that hangs ends the loop: each waits
 * out its alarm). */
static int a_child_hung(void)
{
    for (int i = 0; i < 50; i++) {
        int status = 0;
        pid_t pid = fork();

        if (pid == 0) {
            alarm(2);
            for (int k = 0; k < 10; k++) {
                void *p = wd_big_alloc(MIB);

                if (p != NULL)
                    wd_big_free(p);
            }
            _exit(0);
        }
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 1;
    }
    return 0;
}

/* Forks while another thread allocates and frees: each child's own big allocations must not
 * wait for a lock that thread held at the fork (it does not exist in the child). */
static void test_fork(void)
{
    pthread_t t;
    int hung;

    pthread_create(&t, NULL, churn, (void *)9);
    hung = a_child_hung();
    pthread_join(t, NULL);
    T_CHECK(!hung, "a child forked mid-allocation did not finish");
    wd_big_trim();
}

static _Atomic int trimming;

static void *trim_loop(void *arg)
{
    (void)arg;
    while (atomic_load(&trimming))
        wd_big_trim();
    return NULL;
}

/* The same before the process ever made a big block: the loop thread trims at its idle ticks all
 * the same, and a child forked while it held the lock must not wait for it. First in main: it
 * needs a process where no big block was asked for yet. */
static void test_fork_while_trimming_first(void)
{
    pthread_t t;
    int hung;

    atomic_store(&trimming, 1);
    pthread_create(&t, NULL, trim_loop, NULL);
    hung = a_child_hung();
    atomic_store(&trimming, 0);
    pthread_join(t, NULL);
    T_CHECK(!hung, "a child forked while the parent trimmed (no big block made yet) hung");
}

int main(void)
{
    test_fork_while_trimming_first();
    test_not_ours();
    test_reuse();
    test_keep_bound_and_trim();
    test_slots_run_out();
    test_threads();
    test_fork();
    return t_summary("bigblock");
}
