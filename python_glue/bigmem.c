/* Python's large blocks through the worker's kept big blocks (daemon/worker/bigblock.h): a hook
 * on the raw memory domain, under pymalloc, whose allocations over 512 bytes land there (the bytes
 * an app reads a 1 MiB body into, the list it joins a response in). Smaller sizes, calloc, and
 * blocks that are not ours go to the allocator that was there before (malloc, or Python's debug
 * hooks when PYTHONMALLOC asks for them). Installed once Python is pre-initialised and before it
 * allocates anything of its runtime, for the process's life. */
#include "glue_int.h"
#include "bigblock.h"

#include <string.h>

static PyMemAllocatorEx prev_raw;

static void *raw_malloc(void *ctx, size_t n)
{
    void *p = wd_big_alloc(n);

    (void)ctx;
    return p != NULL ? p : prev_raw.malloc(prev_raw.ctx, n);
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return prev_raw.calloc(prev_raw.ctx, nelem, elsize);
}

static void *raw_realloc(void *ctx, void *p, size_t n)
{
    size_t cap = p != NULL ? wd_big_cap(p) : 0;
    void *q;

    if (cap == 0)
        return prev_raw.realloc(prev_raw.ctx, p, n);
    /* In place while it still fits at most twice over, as wd_big_alloc reuses blocks: a 16 MiB
     * buffer cut to 300 KiB and kept would otherwise keep all its pages. */
    if (n <= cap && n >= WD_BIG_MIN && n >= cap / 2)
        return p;
    q = raw_malloc(ctx, n ? n : 1);
    if (q == NULL)
        return NULL;
    memcpy(q, p, n < cap ? n : cap);
    wd_big_free(p);
    return q;
}

static void raw_free(void *ctx, void *p)
{
    (void)ctx;
    if (p != NULL && !wd_big_free(p))
        prev_raw.free(prev_raw.ctx, p);
}

void wd__py_bigmem_install(void)
{
    PyMemAllocatorEx ours = {NULL, raw_malloc, raw_calloc, raw_realloc, raw_free};

    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &prev_raw);
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &ours);
}
