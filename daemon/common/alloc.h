/* Allocations that do not fail: out of memory, the process says so on stderr (the error log, in
 * the master and the workers) and aborts. A master or worker that cannot allocate a few bytes
 * cannot keep its promises, and the master replaces a worker that died. Requests that ask for
 * much memory (bodies, responses) are bounded by limits checked before they allocate. */
#ifndef WD_COMMON_ALLOC_H
#define WD_COMMON_ALLOC_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noreturn)) static inline void wd_out_of_memory(void)
{
    static const char msg[] = "wsgid: out of memory\n";

    if (write(2, msg, sizeof msg - 1) < 0) {
        /* Nothing more to try. */
    }
    abort();
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        wd_out_of_memory();
    return p;
}

/* Zeroed. */
static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL)
        wd_out_of_memory();
    return p;
}

static inline void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        wd_out_of_memory();
    return p;
}

static inline char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static inline char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

#endif
