/* The response buffer between a producer thread and the loop: every byte arrives, in order,
 * through memory, spill and file segments; backpressure holds the producer; abort frees it. */
#include "out.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <linux/sockios.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

typedef struct {
    const char *name;
    uint64_t mem_limit;
    uint64_t spill_limit;
    size_t chunks[8]; /* sizes; 0 ends; (size_t)-1 = a 100000-byte file segment */
    int lend;         /* 1: every chunk offered for lending (wd_out_writev); 2: wd_out_try_writev
                         first, as the Python side does */
    uint64_t budget;  /* the worker's budget (0: none) */
    int kept;         /* chunks the buffer is to keep by reference */
    uint64_t disk;    /* the worker's disk budget (0: none): never held past it and a chunk */
} out_case_t;

static const out_case_t cases[] = {
    {"small in memory", 1 << 20, 1 << 30, {5, 100, 17}, 0, 0, 0, 0},
    {"one large chunk spills", 4096, 1 << 30, {1000, 300000, 10}, 0, 0, 0, 0},
    {"many chunks around the limit", 65536, 1 << 30, {60000, 6000, 60000, 1, 70000, 3}, 0, 0, 0, 0},
    {"file segment between memory", 1 << 20, 1 << 30, {10, (size_t)-1, 20}, 0, 0, 0, 0},
    {"backpressure", 1024, 8192, {5000, 5000, 5000, 5000, 5000, 5000}, 0, 0, 0, 0},
    {"large chunks lent", 1 << 20, 1 << 30, {100, 300000, 1000, 400000, 5}, 1, 64 << 20, 2, 0},
    {"lent after a try", 1 << 20, 1 << 30, {100, 300000, 262144, 262143, 5}, 2, 64 << 20, 2, 0},
    {"lent past the memory limit", 4096, 1 << 30, {3000, 300000, 3000, 300000}, 2, 64 << 20, 2, 0},
    {"budget refuses: copied and spilled", 65536, 1 << 30, {300000, 300000, 10}, 2, 400000, 0, 0},
    {"one response's share of the budget refuses", 65536, 1 << 30, {300000, 10}, 1, 1 << 20, 0, 0},
    {"within the response's share", 65536, 1 << 30, {300000, 10}, 1, 4 << 20, 1, 0},
    {"lent under backpressure", 1024, 8192, {300000, 5000, 300000, 5000}, 1, 0, 2, 0},
    /* With the disk budget spent the producer waits for its pending bytes to go, then spills
     * again to a fresh file; a rotated file gives its disk back when its last range is sent. */
    {"disk budget: wait, then a fresh file",
     1024,
     1 << 30,
     {5000, 5000, 5000, 5000, 5000, 5000},
     0,
     0,
     0,
     8192},
    {"disk budget: rotated files",
     4096,
     2 << 20,
     {600000, 600000, 600000, 600000, 10},
     0,
     0,
     0,
     64 << 20},
    {"disk budget: a chunk larger than it",
     4096,
     1 << 30,
     {3000, 300000, 3000, 300000},
     0,
     0,
     0,
     65536},
};

/* A spill file that cannot be made or written (a full TMPDIR): the rest goes to memory, a
 * limit's worth at a time after what is pending is sent, and nothing is lost. The cases run
 * with spill files that cannot be made, then with files that stop at 4000 bytes. */
static const out_case_t spill_fail_cases[] = {
    {"memory", 4096, 1 << 30, {1000, 300000, 10, 70000, 150000, 150000}, 0, 0, 0, 0},
    {"backpressure", 1024, 8192, {5000, 5000, 5000, 5000}, 0, 0, 0, 0},
    {"budget spent", 65536, 1 << 30, {300000, 300000, 10}, 2, 100000, 0, 0},
    {"disk budget", 4096, 1 << 30, {3000, 300000, 3000}, 0, 0, 0, 65536},
};

typedef struct {
    wd_out_t out;
    const out_case_t *tc;
    int efd;
    char *expect;
    size_t expect_len;
    int result;
    _Atomic uint64_t budget_used;
    _Atomic uint64_t disk_used;
    wd_out_budget_t budget;
    _Atomic int kept;     /* chunks the buffer kept by reference */
    _Atomic int released; /* ... and released */
    int spill_failed;     /* spill_failed was called */
} run_t;

/* The lend callback: the chunk (obj, malloc'ed by the producer) is the buffer's until now. */
static void release(void *obj, void *ctx)
{
    run_t *r = ctx;

    free(obj);
    r->released++;
}

static void wake(wd_out_t *out, void *data, int how)
{
    uint64_t one = 1;
    run_t *r = data;

    (void)out;
    (void)how; /* the test's consumer waits for every wake */
    if (write(r->efd, &one, sizeof one) < 0)
        abort();
}

static void spill_failed(wd_out_t *out, void *data, int err)
{
    run_t *r = data;

    (void)out;
    CHECK(err != 0, "%s: spill_failed without an error", r->tc->name);
    r->spill_failed++;
}

static char pattern(size_t i)
{
    return (char)('a' + (i * 7 + i / 251) % 26);
}

static void *producer(void *arg)
{
    run_t *r = arg;
    size_t pos = 0;

    for (int i = 0; i < 8 && r->tc->chunks[i]; i++) {
        size_t n = r->tc->chunks[i];
        int rc;

        if (n == (size_t)-1) {
            char tmpl[] = "/tmp/wd-test-out-XXXXXX";
            int fd = mkstemp(tmpl);
            char *data = malloc(100000 + 123);

            unlink(tmpl);
            for (size_t k = 0; k < 100000 + 123; k++)
                data[k] = k < 123 ? 'X' : pattern(pos + k - 123);
            if (write(fd, data, 100000 + 123) != 100000 + 123)
                abort();
            free(data);
            rc = wd_out_file(&r->out, fd, 123, 100000);
            pos += 100000;
        } else {
            char *data = malloc(n);

            for (size_t k = 0; k < n; k++)
                data[k] = pattern(pos + k);
            if (r->tc->lend) {
                struct iovec iov = {data, n};
                wd_out_lend_t lend = {data, r, release, 0};

                rc = r->tc->lend == 2 ? wd_out_try_writev(&r->out, &iov, 1, &lend) : -EAGAIN;
                if (rc == -EAGAIN)
                    rc = wd_out_writev(&r->out, &iov, 1, &lend);
                if (lend.obj == NULL)
                    r->kept++;
                else
                    free(data);
            } else {
                rc = wd_out_write(&r->out, data, n);
                free(data);
            }
            pos += n;
        }
        if (rc < 0) {
            r->result = rc;
            break;
        }
    }
    r->expect_len = pos;
    wd_out_finish(&r->out, 1);
    return NULL;
}

/* spill_fails: 1, no spill file can be made; 2, spill files stop at 4000 bytes. */
static void run_case(const out_case_t *tc, int abort_midway, int spill_fails)
{
    run_t r = {.tc = tc};
    int sv[2];
    pthread_t t;
    char *got = NULL;
    size_t got_len = 0, got_cap = 0;
    int done = 0, want_write = 0;
    uint64_t most_disk = 0, chunk = 0;

    for (int i = 0; i < 8; i++)
        if (tc->chunks[i] != (size_t)-1 && tc->chunks[i] > chunk)
            chunk = tc->chunks[i];
    r.efd = eventfd(0, EFD_NONBLOCK);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    wd_out_init(&r.out, tc->mem_limit, tc->spill_limit,
                spill_fails == 1 ? "/nonexistent/wd-test-out" : "/tmp", wake, &r);
    r.out.spill_failed = spill_failed;
    r.out.spill_failed_data = &r;
    if (spill_fails == 2) {
        struct rlimit fsize = {4000, RLIM_INFINITY};

        signal(SIGXFSZ, SIG_IGN); /* a write past it fails with EFBIG */
        setrlimit(RLIMIT_FSIZE, &fsize);
    }
    if (tc->budget || tc->disk) {
        r.budget = (wd_out_budget_t){&r.budget_used, tc->budget ? tc->budget : (uint64_t)1 << 40,
                                     tc->disk ? &r.disk_used : NULL, tc->disk};
        wd_out_set_budget(&r.out, &r.budget);
    }
    pthread_create(&t, NULL, producer, &r);
    while (!done) {
        struct pollfd p[2] = {{r.efd, POLLIN, 0}, {sv[1], POLLIN, 0}};

        poll(p, 2, 50);
        if (p[0].revents) {
            uint64_t v;

            if (read(r.efd, &v, sizeof v) < 0) {
                /* Spurious: the next poll tells. */
            }
        }
        for (;;) {
            ssize_t k;

            if (got_len + 65536 > got_cap) {
                got_cap = got_cap ? got_cap * 2 : 1 << 20;
                got = realloc(got, got_cap);
            }
            k = read(sv[1], got + got_len, 65536);
            if (k <= 0)
                break;
            got_len += (size_t)k;
            if (abort_midway && got_len > 2000) {
                wd_out_abort(&r.out);
                close(sv[1]);
                sv[1] = -1;
                break;
            }
        }
        if (sv[1] < 0) {
            pthread_join(t, NULL);
            CHECK(r.result == -EPIPE, "%s (abort): producer got %d, not -EPIPE", tc->name,
                  r.result);
            goto out;
        }
        int rc = wd_out_send(&r.out, sv[0], &want_write);

        CHECK(rc >= 0, "%s: send failed %d", tc->name, rc);
        if (r.disk_used > most_disk)
            most_disk = r.disk_used;
        done = rc == 1;
    }
    /* Read what is still in flight. */
    for (;;) {
        ssize_t k;

        if (got_len + 65536 > got_cap) {
            got_cap *= 2;
            got = realloc(got, got_cap);
        }
        k = read(sv[1], got + got_len, 65536);
        if (k <= 0)
            break;
        got_len += (size_t)k;
    }
    pthread_join(t, NULL);
    CHECK(r.result == 0, "%s: producer error %d", tc->name, r.result);
    CHECK(r.out.spill_error == 0 || spill_fails != 0, "%s: a spill failed", tc->name);
    CHECK(r.spill_failed == (spill_fails != 0), "%s (spill fails %d): said %d times", tc->name,
          spill_fails, r.spill_failed);
    CHECK(got_len == r.expect_len, "%s: got %zu bytes, expected %zu", tc->name, got_len,
          r.expect_len);
    for (size_t i = 0; i < got_len && i < r.expect_len; i++) {
        if (got[i] != pattern(i)) {
            CHECK(0, "%s: byte %zu differs", tc->name, i);
            break;
        }
    }
    CHECK(r.out.pending == 0 && r.out.mem_bytes == 0, "%s: pending %llu mem %llu", tc->name,
          (unsigned long long)r.out.pending, (unsigned long long)r.out.mem_bytes);
out:
    if (spill_fails == 2) {
        struct rlimit fsize = {RLIM_INFINITY, RLIM_INFINITY};

        setrlimit(RLIMIT_FSIZE, &fsize);
    }
    wd_out_close(&r.out);
    if (!abort_midway)
        CHECK(r.kept == tc->kept, "%s: %d chunks lent, not %d", tc->name, r.kept, tc->kept);
    CHECK(r.released == r.kept, "%s%s: %d chunks lent, %d released", tc->name,
          abort_midway ? " (abort)" : "", r.kept, r.released);
    CHECK(r.budget_used == 0, "%s%s: %llu bytes of budget still taken", tc->name,
          abort_midway ? " (abort)" : "", (unsigned long long)r.budget_used);
    CHECK(r.disk_used == 0, "%s%s: %llu bytes of the disk budget still taken", tc->name,
          abort_midway ? " (abort)" : "", (unsigned long long)r.disk_used);
    if (tc->disk)
        CHECK(most_disk <= tc->disk + (chunk < WD_OUT_DISK_PIECE ? chunk : WD_OUT_DISK_PIECE),
              "%s: the spill files held %llu bytes (budget %llu)", tc->name,
              (unsigned long long)most_disk, (unsigned long long)tc->disk);
    CHECK(r.out.lent_charged == 0, "%s%s: the response still counts %llu bytes lent", tc->name,
          abort_midway ? " (abort)" : "", (unsigned long long)r.out.lent_charged);
    free(got);
    close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    close(r.efd);
}

static int counted;

static void count_release(void *obj, void *ctx)
{
    (void)obj;
    (void)ctx;
    counted++;
}

/* One object lent three times in a row (a list of one chunk repeated) takes its budget once,
 * and keeps it until its last piece is sent; each piece is released once. */
static void test_lend_once(void)
{
    static char chunk[300000];
    _Atomic uint64_t used = 0;
    wd_out_budget_t budget = {.used = &used, .limit = 1 << 20};
    struct iovec iov[4] = {
        {"head", 4}, {chunk, sizeof chunk}, {chunk, sizeof chunk}, {chunk, sizeof chunk}};
    wd_out_lend_t lend[4] = {{NULL, NULL, NULL, 0},
                             {chunk, NULL, count_release, 0},
                             {chunk, NULL, count_release, 0},
                             {chunk, NULL, count_release, 0}};
    wd_out_t out;
    int sv[2], want_write, rc = 0;
    size_t got = 0, peak = 0;
    char buf[65536];

    memset(chunk, 'c', sizeof chunk);
    counted = 0;
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    wd_out_init(&out, 1 << 20, 1 << 30, "/tmp", NULL, NULL);
    wd_out_set_budget(&out, &budget);
    CHECK(wd_out_try_writev(&out, iov, 4, lend) == 0, "lend once: try_writev refused");
    CHECK(lend[1].obj == NULL && lend[2].obj == NULL && lend[3].obj == NULL,
          "lend once: not every piece was kept");
    CHECK(used == 4 + sizeof chunk, "lend once: budget %llu, not %zu", (unsigned long long)used,
          4 + sizeof chunk);
    wd_out_finish(&out, 1);
    while (rc != 1) {
        ssize_t k;

        rc = wd_out_send(&out, sv[0], &want_write);
        CHECK(rc >= 0, "lend once: send failed %d", rc);
        if (rc < 0)
            break;
        if (used > peak)
            peak = used;
        CHECK(counted == 3 || used >= sizeof chunk,
              "lend once: a piece is pending and the budget is down to %llu",
              (unsigned long long)used);
        while ((k = read(sv[1], buf, sizeof buf)) > 0)
            got += (size_t)k;
    }
    CHECK(got == 4 + 3 * sizeof chunk, "lend once: %zu bytes sent", got);
    CHECK(counted == 3, "lend once: %d releases, not 3", counted);
    CHECK(used == 0, "lend once: budget %llu left", (unsigned long long)used);
    wd_out_close(&out);
    close(sv[0]);
    close(sv[1]);
}

/* Parts of one object between bytes of the producer's own (FastCGI: 64 KiB STDOUT records of a
 * 1 MiB bytes object, each after its 8-byte header): lent when the object is at least
 * WD_OUT_LEND_MIN long (obj_len), each part with its budget and its release; copied when the
 * object is shorter, or its length is not given. */
static void test_lend_parts(void)
{
    enum { PART = 65536, PARTS = 16 };
    static char obj[PART * PARTS];
    struct {
        const char *what;
        size_t obj_len;
        int lent; /* parts lent, the first ones */
        uint64_t limit, mem_limit;
    } cases[] = {
        {"parts of a 1 MiB object", sizeof obj, PARTS, 64 << 20, 4 << 20},
        {"parts of a 200 KiB object", 200 * 1024, 0, 64 << 20, 4 << 20},
        {"parts, no length given", 0, 0, 64 << 20, 4 << 20},
        /* The response's share is a quarter of the budget or mem_limit, here 512 KiB + 256: the
         * earlier parts of the same call count against it, so the first 8 are lent and the rest
         * copied (within mem_limit). */
        {"parts past the response's share", sizeof obj, 8, 2 << 20, (512 << 10) + 256},
    };

    for (int i = 0; i < PARTS; i++)
        memset(obj + i * PART, 'a' + i, PART);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        _Atomic uint64_t used = 0;
        wd_out_budget_t budget = {.used = &used, .limit = cases[c].limit};
        struct iovec iov[2 * PARTS];
        wd_out_lend_t lend[2 * PARTS];
        wd_out_t out;
        int sv[2], want_write, rc = 0, kept = 0, ok = 1;
        size_t got = 0;
        char buf[65536], head[8] = "HEADER!!", *all = malloc(PARTS * (PART + 8));

        counted = 0;
        for (int i = 0; i < PARTS; i++) {
            iov[2 * i] = (struct iovec){head, 8};
            lend[2 * i] = (wd_out_lend_t){NULL, NULL, NULL, 0};
            iov[2 * i + 1] = (struct iovec){obj + i * PART, PART};
            lend[2 * i + 1] = (wd_out_lend_t){obj, NULL, count_release, cases[c].obj_len};
        }
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
        wd_out_init(&out, cases[c].mem_limit, 1 << 30, "/tmp", NULL, NULL);
        wd_out_set_budget(&out, &budget);
        CHECK(wd_out_try_writev(&out, iov, 2 * PARTS, lend) == 0, "%s: try_writev refused",
              cases[c].what);
        for (int i = 0; i < PARTS; i++) {
            kept += lend[2 * i + 1].obj == NULL;
            CHECK((lend[2 * i + 1].obj == NULL) == (i < cases[c].lent), "%s: part %d lent: %d",
                  cases[c].what, i, lend[2 * i + 1].obj == NULL);
        }
        CHECK(kept == cases[c].lent, "%s: %d parts lent", cases[c].what, kept);
        CHECK(used == PARTS * (PART + 8), "%s: budget %llu", cases[c].what,
              (unsigned long long)used);
        wd_out_finish(&out, 1);
        while (rc != 1) {
            ssize_t k;

            rc = wd_out_send(&out, sv[0], &want_write);
            CHECK(rc >= 0, "%s: send failed %d", cases[c].what, rc);
            if (rc < 0)
                break;
            while ((k = read(sv[1], buf, sizeof buf)) > 0) {
                memcpy(all + got, buf, (size_t)k);
                got += (size_t)k;
            }
        }
        CHECK(got == PARTS * (PART + 8), "%s: %zu bytes sent", cases[c].what, got);
        for (int i = 0; i < PARTS && got == PARTS * (PART + 8); i++)
            ok &= memcmp(all + i * (PART + 8), head, 8) == 0 &&
                  memcmp(all + i * (PART + 8) + 8, obj + i * PART, PART) == 0;
        CHECK(ok, "%s: the bytes sent", cases[c].what);
        CHECK(counted == kept, "%s: %d releases for %d parts lent", cases[c].what, counted, kept);
        CHECK(used == 0, "%s: budget %llu left", cases[c].what, (unsigned long long)used);
        wd_out_close(&out);
        close(sv[0]);
        close(sv[1]);
        free(all);
    }
}

/* wd_out_try_writev takes all of an iov or nothing: a lendable piece beside a copy that does not
 * fit in memory gives its budget back, and is left to the producer. */
static void test_try_undo(void)
{
    static char chunk[300000], copy[5000];
    _Atomic uint64_t used = 0;
    wd_out_budget_t budget = {.used = &used, .limit = 4 << 20};
    struct iovec iov[2] = {{chunk, sizeof chunk}, {copy, sizeof copy}};
    wd_out_lend_t lend[2] = {{chunk, NULL, count_release, 0}, {NULL, NULL, NULL, 0}};
    wd_out_t out;

    counted = 0;
    wd_out_init(&out, 4096, 1 << 30, "/tmp", NULL, NULL);
    wd_out_set_budget(&out, &budget);
    CHECK(wd_out_try_writev(&out, iov, 2, lend) == -EAGAIN, "try undo: not refused");
    CHECK(used == 0 && out.pending == 0 && lend[0].obj == chunk,
          "try undo: budget %llu, pending %llu, piece %s", (unsigned long long)used,
          (unsigned long long)out.pending, lend[0].obj ? "left" : "taken");
    CHECK(wd_out_writev(&out, iov, 2, lend) == 0 && lend[0].obj == NULL, "try undo: writev");
    CHECK(used == sizeof chunk, "try undo: budget %llu after the writev", (unsigned long long)used);
    wd_out_close(&out);
    CHECK(counted == 1 && used == 0, "try undo: %d releases, budget %llu", counted,
          (unsigned long long)used);
}

/* One bytes object yielded again and again to a slow reader (a zero-filled download): each piece
 * is lent, and charged nothing after the first, but the spill limit's backpressure holds for it:
 * the producer waits, pending stays within the limit and a piece. Before, every yield queued a
 * piece at once, and pending grew to the whole answer (helper-60: 0.45 GiB of RSS a second). */
typedef struct {
    wd_out_t out;
    int pieces, tries;
} same_obj_t;

static char same_chunk[262144];

static void *same_obj_producer(void *arg)
{
    same_obj_t *r = arg;

    for (int i = 0; i < r->pieces; i++) {
        struct iovec iov = {same_chunk, sizeof same_chunk};
        wd_out_lend_t lend = {same_chunk, NULL, count_release, 0};
        int rc = r->tries ? wd_out_try_writev(&r->out, &iov, 1, &lend) : -EAGAIN;

        if (rc == -EAGAIN)
            rc = wd_out_writev(&r->out, &iov, 1, &lend);
        if (rc < 0)
            break;
    }
    wd_out_finish(&r->out, 1);
    return NULL;
}

static void test_lend_same_object_under_backpressure(void)
{
    for (int tries = 0; tries < 2; tries++) {
        _Atomic uint64_t used = 0;
        wd_out_budget_t budget = {.used = &used, .limit = 64 << 20};
        same_obj_t r = {.pieces = 64, .tries = tries};
        uint64_t most = 0, got = 0;
        int sv[2], want_write, rc = 0;
        char buf[65536];
        pthread_t t;

        counted = 0;
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
        wd_out_init(&r.out, 1 << 20, 1 << 20, "/tmp", NULL, NULL);
        wd_out_set_budget(&r.out, &budget);
        pthread_create(&t, NULL, same_obj_producer, &r);
        while (rc != 1) {
            ssize_t k;

            pthread_mutex_lock(&r.out.lock);
            if (r.out.pending > most)
                most = r.out.pending;
            pthread_mutex_unlock(&r.out.lock);
            rc = wd_out_send(&r.out, sv[0], &want_write);
            if (rc < 0)
                break;
            if ((k = read(sv[1], buf, sizeof buf)) > 0)
                got += (uint64_t)k;
            usleep(50); /* a slow reader */
        }
        while (got < (uint64_t)r.pieces * sizeof same_chunk) {
            ssize_t k = read(sv[1], buf, sizeof buf);

            if (k <= 0)
                break;
            got += (uint64_t)k;
        }
        pthread_join(t, NULL);
        CHECK(rc == 1 && got == (uint64_t)r.pieces * sizeof same_chunk,
              "same object (try %d): send %d, %llu bytes of %llu", tries, rc,
              (unsigned long long)got, (unsigned long long)r.pieces * sizeof same_chunk);
        CHECK(most <= (1 << 20) + sizeof same_chunk,
              "same object (try %d): %llu bytes pending at once, past the spill limit (1 MiB) "
              "and a piece",
              tries, (unsigned long long)most);
        CHECK(counted == r.pieces && used == 0, "same object (try %d): %d releases, budget %llu",
              tries, counted, (unsigned long long)used);
        wd_out_close(&r.out);
        close(sv[0]);
        close(sv[1]);
    }
}

/* A lent piece as large as the spill limit waits until the loop has sent all; the loop, having
 * sent all, goes idle (it sends only when woken, or on POLLOUT while something is pending). The
 * piece appended after the wait must wake it: before, nothing did (the buffer was not empty when
 * the call began), and the piece sat unsent until the next write or the finish (helper-61). */
typedef struct {
    wd_out_t out;
    int efd;
} idle_t;

static void idle_wake(wd_out_t *out, void *data, int how)
{
    uint64_t one = 1;

    (void)out;
    (void)how;
    if (write(((idle_t *)data)->efd, &one, sizeof one) < 0)
        abort();
}

static void *lend_after_wait(void *arg)
{
    idle_t *r = arg;
    struct iovec head = {(void *)"head", 4}, iov = {same_chunk, sizeof same_chunk};
    wd_out_lend_t lend = {same_chunk, NULL, count_release, 0};

    wd_out_writev(&r->out, &head, 1, NULL);
    wd_out_writev(&r->out, &iov, 1, &lend); /* waits: 4 bytes pending + 256 KiB > 256 KiB */
    return NULL;                            /* no finish: only the wake may bring the piece out */
}

static void lent_after_a_wait_round(int round)
{
    idle_t r;
    int sv[2], want_write = 0;
    uint64_t got = 0, v;
    char buf[65536];
    pthread_t t;

    counted = 0;
    r.efd = eventfd(0, EFD_NONBLOCK);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    wd_out_init(&r.out, 4096, sizeof same_chunk, "/tmp", idle_wake, &r);
    pthread_create(&t, NULL, lend_after_wait, &r);
    for (int waiting = 0, i = 0; !waiting && i < 2000; i++) { /* the producer waits first */
        pthread_mutex_lock(&r.out.lock);
        waiting = r.out.producer_waiting != 0;
        pthread_mutex_unlock(&r.out.lock);
        usleep(1000);
    }
    /* The loop: sends when woken, and goes on while the socket took all and more is pending. */
    for (int turns = 0; turns < 25 && got < 4 + sizeof same_chunk; turns++) {
        struct pollfd p = {r.efd, POLLIN, 0};

        if (poll(&p, 1, 20) <= 0)
            continue; /* idle: nothing pending that it knows of */
        if (read(r.efd, &v, sizeof v) < 0)
            abort();
        do {
            ssize_t k;

            if (wd_out_send(&r.out, sv[0], &want_write) < 0)
                break;
            while ((k = read(sv[1], buf, sizeof buf)) > 0)
                got += (uint64_t)k;
        } while (want_write);
    }
    CHECK(got == 4 + sizeof same_chunk, "lent after a wait (round %d): %llu bytes of %zu sent",
          round, (unsigned long long)got, 4 + sizeof same_chunk);
    wd_out_abort(&r.out);
    pthread_join(t, NULL);
    wd_out_close(&r.out);
    close(sv[0]);
    close(sv[1]);
    close(r.efd);
}

/* Whether the loop's last look at the list comes before or after the producer's append is a race:
 * several rounds (most lost the piece before). */
static void test_lent_piece_after_a_wait_wakes_the_loop(void)
{
    for (int round = 0; round < 20; round++)
        lent_after_a_wait_round(round);
}

/* The write syscalls this thread has made (/proc/thread-self/io: syscw counts writev and
 * sendfile), or -1 when the kernel does not say. */
static long long syscw(void)
{
    char line[128];
    long long n = -1;
    FILE *f = fopen("/proc/thread-self/io", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "syscw: %lld", &n) == 1)
            break;
    fclose(f);
    return n;
}

/* A socket that takes less than it is given is full: the loop's send stops there and waits for
 * POLLOUT, one writev or sendfile per call, never a second one told EAGAIN. Memory segments
 * first, then a file segment, each larger than the socket holds; the reader takes 64 KiB between
 * two calls, so most calls find more than fits. */
static void test_one_write_when_full(void)
{
    static char mem[2 << 20], buf[65536];
    char path[] = "/tmp/wsgid-test-out-XXXXXX";
    wd_out_t out;
    int sv[2], fd, want_write, rc = 0, calls = 0, doubled = 0, small = 65536;
    size_t got = 0, file_len = 3 << 20;
    long long before;

    if (syscw() < 0) {
        printf("SKIP one write when full: /proc/thread-self/io is not readable here\n");
        return;
    }
    if (getenv("LD_PRELOAD") != NULL && strstr(getenv("LD_PRELOAD"), "vgpreload") != NULL) {
        /* Its scheduler's own writes count in the thread's syscw: one write() reads as 5. */
        printf("SKIP one write when full: under valgrind, whose own writes count in "
               "/proc/thread-self/io\n");
        return;
    }
    memset(mem, 'm', sizeof mem);
    fd = mkstemp(path);
    unlink(path);
    CHECK(fd >= 0 && ftruncate(fd, (off_t)file_len) == 0, "one write when full: temp file");
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    /* Well under the segments, whatever the host's default. */
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    wd_out_init(&out, 4 << 20, 1 << 30, "/tmp", NULL, NULL);
    CHECK(wd_out_write(&out, mem, sizeof mem) == 0, "one write when full: write");
    CHECK(wd_out_file(&out, fd, 0, file_len) == 0, "one write when full: file");
    wd_out_finish(&out, 1);
    while (rc != 1 && calls < 100000) {
        uint64_t left = out.pending;
        ssize_t k;

        before = syscw();
        rc = wd_out_send(&out, sv[0], &want_write);
        calls++;
        CHECK(rc >= 0, "one write when full: send failed %d", rc);
        if (rc < 0)
            break;
        /* (The call that ends the memory segments may go on to the file: two then.) */
        int full_before = left > file_len ? left - file_len > (1 << 20) : left > (1 << 20);

        if (full_before && (rc != 0 || !want_write || syscw() - before != 1))
            doubled++;
        k = read(sv[1], buf, sizeof buf);
        if (k > 0)
            got += (size_t)k;
    }
    while (got < sizeof mem + file_len) {
        ssize_t k = read(sv[1], buf, sizeof buf);

        if (k <= 0)
            break;
        got += (size_t)k;
    }
    CHECK(rc == 1 && got == sizeof mem + file_len, "one write when full: rc %d, %zu bytes", rc,
          got);
    CHECK(doubled == 0,
          "one write when full: %d of %d calls with more than the socket holds "
          "did not make exactly one write and wait for POLLOUT",
          doubled, calls);
    wd_out_close(&out);
    close(sv[0]);
    close(sv[1]);
}

static int sndbuf(int sock)
{
    int v = 0;
    socklen_t len = sizeof v;

    getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &v, &len);
    return v;
}

/* A full unix socket with much more to send has its buffer raised (WD_OUT_SNDBUF), the growth
 * taken from the worker's budget until the response ends, and put back as soon as the rest of
 * the response fits, so that the kernel holds no more of it at its end than without the raise;
 * with no room in the budget it stays as it is (until the response's own bytes sent make room).
 * The reader takes 64 KiB a call. */
static void sndbuf_case(const char *name, uint64_t limit, int most)
{
    static char mem[4 << 20], buf[65536];
    _Atomic uint64_t used = 0;
    wd_out_budget_t budget = {.used = &used, .limit = limit};
    wd_out_t out;
    int sv[2], want_write, base, raised, expect, queued = -1, rc = 0, calls = 0;
    uint64_t charged;
    size_t got = 0;

    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    base = sndbuf(sv[0]);
    expect = most > base && limit > sizeof mem + (uint64_t)most ? most : base;
    wd_out_init(&out, sizeof mem, 1 << 30, "/tmp", NULL, NULL);
    wd_out_set_budget(&out, &budget);
    out.sndbuf_raise = 1;
    CHECK(wd_out_write(&out, mem, sizeof mem) == 0, "%s: write", name);
    wd_out_finish(&out, 1);
    rc = wd_out_send(&out, sv[0], &want_write);
    raised = sndbuf(sv[0]);
    charged = used - out.mem_bytes;
    CHECK(raised == expect && charged == (uint64_t)(raised - base),
          "%s: buffer %d (was %d, expected %d), %llu charged", name, raised, base, expect,
          (unsigned long long)charged);
    while (rc == 0 && calls++ < 100000) {
        ssize_t k = read(sv[1], buf, sizeof buf);

        if (k > 0)
            got += (size_t)k;
        rc = wd_out_send(&out, sv[0], &want_write);
        if (sndbuf(sv[0]) > raised) { /* a budget with no room at first may have room later */
            raised = sndbuf(sv[0]);
            charged = (uint64_t)(raised - base);
        }
    }
    ioctl(sv[0], SIOCOUTQ, &queued);
    CHECK(rc == 1 && sndbuf(sv[0]) == base, "%s: rc %d, buffer %d at the end, not %d", name, rc,
          sndbuf(sv[0]), base);
    /* Without the raise, what a full socket holds: its buffer and at most one more skb. */
    CHECK(queued >= 0 && queued <= base + base / 2, "%s: the kernel holds %d bytes at the end",
          name, queued);
    CHECK(used == charged, "%s: %llu of the budget held at the end, not the raise's %llu", name,
          (unsigned long long)used, (unsigned long long)charged);
    while (got < sizeof mem) {
        ssize_t k = read(sv[1], buf, sizeof buf);

        if (k <= 0)
            break;
        got += (size_t)k;
    }
    CHECK(got == sizeof mem, "%s: %zu bytes", name, got);
    wd_out_reset(&out);
    CHECK(used == 0, "%s: %llu of the budget held after the reset", name, (unsigned long long)used);
    wd_out_close(&out);
    close(sv[0]);
    close(sv[1]);
}

/* A reader that empties the socket between writes, as a fast client does while the loop writes:
 * one write can then take more than the raised buffer holds. Whenever what is left of the response
 * fits in the socket's own buffer, the buffer must be back at that size, so that the last bytes go
 * through it (it once stayed raised to the end of a response: test_send_buffer.py). */
static void sndbuf_drained_case(int most, size_t size)
{
    static char mem[8 << 20], buf[65536];
    _Atomic uint64_t used = 0;
    wd_out_budget_t budget = {.used = &used, .limit = 64 << 20};
    wd_out_t out;
    int sv[2], want_write, base, raised = 0, rc = 0, calls = 0, late = 0;
    size_t got = 0;
    ssize_t k;

    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    base = sndbuf(sv[0]);
    if (most <= base) {
        printf("SKIP sndbuf drained: no room to raise the buffer\n");
        close(sv[0]);
        close(sv[1]);
        return;
    }
    wd_out_init(&out, sizeof mem, 1 << 30, "/tmp", NULL, NULL);
    wd_out_set_budget(&out, &budget);
    out.sndbuf_raise = 1;
    CHECK(wd_out_write(&out, mem, size) == 0, "sndbuf drained: write");
    wd_out_finish(&out, 1);
    while (rc == 0 && calls++ < 100000) {
        rc = wd_out_send(&out, sv[0], &want_write);
        if (raised == 0 && out.sndbuf_up)
            raised = out.sndbuf_up;
        if (raised && out.sndbuf_up && out.pending <= (uint64_t)base)
            late++;
        while ((k = read(sv[1], buf, sizeof buf)) > 0)
            got += (size_t)k;
    }
    CHECK(raised > base, "sndbuf drained: the buffer was raised (%d, own %d)", raised, base);
    CHECK(late == 0, "sndbuf drained: %d sends left a rest the own buffer holds, still raised",
          late);
    CHECK(rc == 1 && sndbuf(sv[0]) == base, "sndbuf drained: rc %d, buffer %d at the end, not %d",
          rc, sndbuf(sv[0]), base);
    while ((k = read(sv[1], buf, sizeof buf)) > 0)
        got += (size_t)k;
    CHECK(got == size, "sndbuf drained: %zu bytes of %zu", got, size);
    wd_out_close(&out);
    close(sv[0]);
    close(sv[1]);
}

static void test_sndbuf(void)
{
    int wmem_max = 0, most;
    FILE *f = fopen("/proc/sys/net/core/wmem_max", "r");

    if (f == NULL || fscanf(f, "%d", &wmem_max) != 1) {
        printf("SKIP sndbuf: /proc/sys/net/core/wmem_max is not readable here\n");
        if (f)
            fclose(f);
        return;
    }
    fclose(f);
    /* The kernel gives twice what it is asked, up to twice net.core.wmem_max. */
    most = 2 * (WD_OUT_SNDBUF < wmem_max ? WD_OUT_SNDBUF : wmem_max);
    if (most <= 212992)
        printf("NOTE sndbuf: net.core.wmem_max %d leaves no room to raise a buffer\n", wmem_max);
    sndbuf_case("sndbuf raised and put back", 64 << 20, most);
    sndbuf_case("sndbuf: no room in the budget", (4 << 20) + 4096, most);
    /* Sizes a quarter MiB apart: for some of them a write would take the whole rest while the
     * buffer is still raised. */
    for (size_t k = 0; k < 8; k++)
        sndbuf_drained_case(most, (6 << 20) + k * (256 << 10));
}

/* A response that ends its connection, sent whole by its producer, is ended by the producer
 * (shutdown): the peer reads it whole and then the end, before the loop does anything, and the
 * loop is told lazily. Any other finish leaves the socket to the loop and wakes it, except a
 * keep-alive response sent whole (lazy, the socket open). */
typedef struct {
    const char *name;
    int keep_alive; /* at the finish */
    int may_shut;   /* the loop's permission */
    size_t len;     /* response bytes; more than the socket holds: the loop sends the rest */
    int abort;      /* the loop gave the response up before the finish */
    int shut;       /* expected: the peer sees the end after the bytes */
    int how;        /* expected: how the last wake asks the loop (WD_OUT_WAKE_*) */
} shut_case_t;

static const shut_case_t shut_cases[] = {
    {"ends its connection, whole", 0, 1, 300, 0, 1, WD_OUT_WAKE_SHUT},
    {"ends its connection, not allowed", 0, 0, 300, 0, 0, WD_OUT_WAKE_NOW},
    {"ends its connection, larger than the socket", 0, 1, 1 << 20, 0, 0, WD_OUT_WAKE_NOW},
    {"reset", WD_OUT_RESET, 1, 300, 0, 0, WD_OUT_WAKE_NOW},
    {"keep-alive, whole", 1, 1, 300, 0, 0, WD_OUT_WAKE_LAZY},
    {"keep-alive, larger than the socket", 1, 0, 1 << 20, 0, 0, WD_OUT_WAKE_NOW},
    {"ends its connection, given up", 0, 1, 300, 1, 0, WD_OUT_WAKE_NOW},
};

static int shut_wakes, shut_how;

static void shut_wake(wd_out_t *out, void *data, int how)
{
    (void)out;
    (void)data;
    shut_wakes++;
    shut_how = how;
}

static void shut_case(const shut_case_t *tc)
{
    static char mem[1 << 20], buf[65536];
    wd_out_t out;
    int sv[2], small = 65536, want_write = 0, eof = 0;
    size_t got = 0;
    ssize_t k;

    memset(mem, 's', sizeof mem);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    wd_out_init(&out, 4 << 20, 1 << 30, "/tmp", shut_wake, NULL);
    shut_wakes = 0;
    shut_how = -1;
    /* As the loop dispatches (conn.c). */
    out.sock = sv[0];
    out.hold = 1;
    out.may_shut = tc->may_shut;
    CHECK(wd_out_write(&out, mem, tc->len) == 0, "%s: write", tc->name);
    if (tc->abort)
        wd_out_abort(&out);
    wd_out_finish_park(&out, tc->keep_alive, NULL);
    /* (A response the socket did not take whole also woke the loop for the rest.) */
    CHECK(shut_wakes >= 1 && shut_how == tc->how, "%s: %d wakes, the last %d (want %d)", tc->name,
          shut_wakes, shut_how, tc->how);
    CHECK(wd_out_is_shut(&out) == tc->shut, "%s: wd_out_is_shut %d", tc->name,
          wd_out_is_shut(&out));
    /* What the peer has now, before the loop sends anything. */
    while ((k = read(sv[1], buf, sizeof buf)) > 0)
        got += (size_t)k;
    eof = k == 0;
    CHECK(eof == tc->shut, "%s: the peer %s the end after %zu bytes", tc->name,
          eof ? "saw" : "did not see", got);
    if (tc->how != WD_OUT_WAKE_NOW)
        CHECK(got == tc->len, "%s: the peer got %zu of %zu bytes", tc->name, got, tc->len);
    /* The loop sends the rest (none, when whole). */
    while (!tc->abort && got < tc->len) {
        int rc = wd_out_send(&out, sv[0], &want_write);

        CHECK(rc >= 0, "%s: send %d", tc->name, rc);
        while ((k = read(sv[1], buf, sizeof buf)) > 0)
            got += (size_t)k;
        if (rc != 0)
            break;
    }
    CHECK(tc->abort || got == tc->len, "%s: %zu of %zu bytes in all", tc->name, got, tc->len);
    wd_out_close(&out);
    close(sv[0]);
    close(sv[1]);
}

static void test_shut(void)
{
    for (size_t i = 0; i < sizeof shut_cases / sizeof shut_cases[0]; i++)
        shut_case(&shut_cases[i]);
}

/* A connection idle between responses keeps one memory segment for its next one: wd_out_trim
 * frees it (once: nothing is left to free after), and the next response is whole without it. */
static void test_trim(void)
{
    static const char *const bodies[] = {"first response", "second, after the trim",
                                         "third, from the kept segment again"};
    wd_out_t out;
    int sv[2], want_write;
    char buf[256];

    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    wd_out_init(&out, 1 << 20, 1 << 30, "/tmp", NULL, NULL);
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(bodies[i]);
        ssize_t k;
        int rc;

        CHECK(wd_out_write(&out, bodies[i], len) == 0, "trim %d: write", i);
        wd_out_finish(&out, 1);
        rc = wd_out_send(&out, sv[0], &want_write);
        CHECK(rc == 1, "trim %d: send %d", i, rc);
        k = read(sv[1], buf, sizeof buf);
        CHECK(k == (ssize_t)len && memcmp(buf, bodies[i], len) == 0, "trim %d: the peer got %zd", i,
              k);
        wd_out_reset(&out);
        if (i == 1) {
            size_t n = wd_out_trim(&out);

            CHECK(n >= 16000 && n <= 17000, "trim: the kept segment's %zu bytes", n);
            CHECK(wd_out_trim(&out) == 0, "trim: a second trim found something");
        }
    }
    wd_out_close(&out);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    size_t n = sizeof cases / sizeof cases[0];

    for (size_t i = 0; i < n; i++) {
        run_case(&cases[i], 0, 0);
        if (cases[i].mem_limit == 1024)
            run_case(&cases[i], 1, 0);
    }
    for (size_t i = 0; i < sizeof spill_fail_cases / sizeof spill_fail_cases[0]; i++) {
        for (int fails = 1; fails <= 2; fails++) {
            run_case(&spill_fail_cases[i], 0, fails);
            run_case(&spill_fail_cases[i], 1, fails);
        }
        n++;
    }
    test_lend_once();
    test_lend_same_object_under_backpressure();
    test_lent_piece_after_a_wait_wakes_the_loop();
    test_lend_parts();
    test_try_undo();
    test_one_write_when_full();
    test_sndbuf();
    test_shut();
    test_trim();
    printf("out: %zu cases, %d failures\n", n, failures);
    return failures ? 1 : 0;
}
