/* A few helpers shared by the table-driven unit tests: failure counting, and buffers that end
 * right before an unreadable page so that any read past the end crashes (picohttpparser style). */
#ifndef WD_TESTS_TESTUTIL_H
#define WD_TESTS_TESTUTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int t_failures;
static int t_checks;

#define T_CHECK(cond, ...)                                                                         \
    do {                                                                                           \
        t_checks++;                                                                                \
        if (!(cond)) {                                                                             \
            t_failures++;                                                                          \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static inline int t_summary(const char *name)
{
    printf("%s: %d checks, %d failures\n", name, t_checks, t_failures);
    return t_failures ? 1 : 0;
}

/* A region of `pages` readable pages followed by one PROT_NONE page. */
typedef struct t_guard {
    char *map;
    size_t map_len;
    char *end; /* the first unreadable byte */
} t_guard_t;

static inline void t_guard_init(t_guard_t *g, size_t capacity)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (capacity + pg - 1) / pg + 1;

    g->map_len = (pages + 1) * pg;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    g->end = g->map + pages * pg;
    if (mprotect(g->end, pg, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
}

/* Copies n bytes so that they end exactly at the unreadable page; returns where they start. */
static inline char *t_guard_place(t_guard_t *g, const void *src, size_t n)
{
    char *p = g->end - n;

    memmove(p, src, n);
    return p;
}

/* How every parser table case is fed: (a) whole, ending at the unreadable page; (b) every prefix
 * from `from` bytes on, in the original buffer; (c) every prefix ending at the unreadable page
 * (for inputs over 4 KiB the first and the last 256 only: the parser waits in between). check
 * gets how ("whole", "prefix", "guarded prefix"), the length, the bytes and ctx. */
typedef void (*t_check_fn)(const char *how, size_t len, const char *data, const void *ctx);

static inline void t_feed(t_guard_t *g, const char *data, size_t len, size_t from, t_check_fn check,
                          const void *ctx)
{
    check("whole", len, t_guard_place(g, data, len), ctx);
    for (size_t l = from; l <= len; l++)
        check("prefix", l, data, ctx);
    for (size_t l = 1; l <= len; l++) {
        if (len > 4096 && l > 256 && l + 256 < len)
            continue;
        check("guarded prefix", l, t_guard_place(g, data, l), ctx);
    }
}

static inline void t_guard_free(t_guard_t *g)
{
    munmap(g->map, g->map_len);
}

/* A growing string for transcripts. */
typedef struct t_str {
    char *p;
    size_t n, cap;
} t_str_t;

static inline void t_str_addn(t_str_t *s, const char *p, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        s->cap = (s->n + n + 1) * 2;
        s->p = realloc(s->p, s->cap);
        if (s->p == NULL)
            abort();
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = '\0';
}

__attribute__((format(printf, 2, 3))) static inline void t_str_addf(t_str_t *s, const char *fmt,
                                                                    ...)
{
    char tmp[1024];
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (r > 0)
        t_str_addn(s, tmp, (size_t)r < sizeof(tmp) ? (size_t)r : sizeof(tmp) - 1);
}

static inline void t_str_clear(t_str_t *s)
{
    s->n = 0;
    if (s->p)
        s->p[0] = '\0';
}

static inline const char *t_str_get(const t_str_t *s)
{
    return s->p ? s->p : "";
}

#endif
