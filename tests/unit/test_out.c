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
} out_case_t;

static const out_case_t cases[] = {
    {"small in memory", 1 << 20, 1 << 30, {5, 100, 17}},
    {"one large chunk spills", 4096, 1 << 30, {1000, 300000, 10}},
    {"many chunks around the limit", 65536, 1 << 30, {60000, 6000, 60000, 1, 70000, 3}},
    {"file segment between memory", 1 << 20, 1 << 30, {10, (size_t)-1, 20}},
    {"backpressure", 1024, 8192, {5000, 5000, 5000, 5000, 5000, 5000}},
};

typedef struct {
    wd_out_t out;
    const out_case_t *tc;
    int efd;
    char *expect;
    size_t expect_len;
    int result;
} run_t;

static void wake(wd_out_t *out, void *data, int lazy)
{
    uint64_t one = 1;
    run_t *r = data;

    (void)out;
    (void)lazy; /* the test's consumer waits for every wake */
    if (write(r->efd, &one, sizeof one) < 0)
        abort();
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
            rc = wd_out_write(&r->out, data, n);
            free(data);
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

static void run_case(const out_case_t *tc, int abort_midway)
{
    run_t r = {.tc = tc};
    int sv[2];
    pthread_t t;
    char *got = NULL;
    size_t got_len = 0, got_cap = 0;
    int done = 0, want_write = 0;

    r.efd = eventfd(0, EFD_NONBLOCK);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    wd_out_init(&r.out, tc->mem_limit, tc->spill_limit, "/tmp", wake, &r);
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
    wd_out_close(&r.out);
    free(got);
    close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    close(r.efd);
}

int main(void)
{
    size_t n = sizeof cases / sizeof cases[0];

    for (size_t i = 0; i < n; i++) {
        run_case(&cases[i], 0);
        if (cases[i].mem_limit == 1024)
            run_case(&cases[i], 1);
    }
    printf("out: %zu cases, %d failures\n", n, failures);
    return failures ? 1 : 0;
}
