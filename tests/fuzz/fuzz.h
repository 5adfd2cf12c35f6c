/* Shared bits of the libFuzzer targets: an invariant check that aborts with a message (so that
 * libFuzzer records a crash and saves the reproducer), and a small data-derived generator. */
#ifndef WD_FUZZ_H
#define WD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WD_FUZZ_CHECK(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* p lies in [lo, hi], and so does p + n. */
#define WD_FUZZ_INSIDE(p, n, lo, hi)                                                               \
    WD_FUZZ_CHECK((const char *)(p) >= (const char *)(lo) &&                                       \
                  (size_t)((const char *)(hi) - (const char *)(p)) >= (size_t)(n))

/* Known bugs, not yet fixed, that a long run should step over: WD_FUZZ_KNOWN="tag1,tag2" in the
 * environment turns off the checks with those tags (the meson tests never set it). */
#include <string.h>

static inline int wd_fuzz_known(const char *tag)
{
    const char *k = getenv("WD_FUZZ_KNOWN"), *p;
    size_t n = strlen(tag);

    for (p = k; p != NULL && (p = strstr(p, tag)) != NULL; p += n)
        if ((p == k || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return 1;
    return 0;
}

/* A deterministic generator seeded from the input, for piece sizes and the like. */
typedef struct wd_fuzz_rng {
    uint32_t s;
} wd_fuzz_rng_t;

static inline uint32_t wd_fuzz_next(wd_fuzz_rng_t *r)
{
    r->s = r->s * 1103515245u + 12345u;
    return r->s >> 8;
}

/* Copies n bytes into a fresh heap block of exactly n bytes (ASan catches any read past it). */
static inline char *wd_fuzz_dup(const uint8_t *data, size_t n)
{
    char *p = malloc(n ? n : 1);

    if (p == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        p[i] = (char)data[i];
    return p;
}

#endif
