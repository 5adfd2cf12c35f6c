/* Large blocks kept for reuse between requests: the bytes an app reads a big body into, the copy
 * of a big response chunk.
 *
 * glibc gives every block from 128K on (the worker fixes its mmap threshold there: worker.c) a
 * mapping of its own and unmaps it at free, so that the Python threads' arenas never keep the
 * high-water mark of big requests. On these virtual machines a fresh mapping costs more than what
 * is done with it: a page fault per 4 KiB page, a TLB shootdown at munmap. A 1 MiB POST echo
 * behind nginx (-c16) took 12.1 ms of CPU per request, page faults 22 % of it (perf); uWSGI,
 * whose glibc threshold slides up, 2.2 ms.
 *
 * So a freed block from WD_BIG_MIN on is kept mapped, up to WD_BIG_KEEP bytes in all, and the
 * next big allocation of a size it fits (not more than twice over) takes it. WD_BIG_KEEP was 16
 * MiB: behind uwsgi_pass (a connection a request), 1 MiB POST echoes at -c16 have each worker hold
 * a body, the app's copy and its answer for 8 requests at once, and the blocks in use came and went
 * around that line: 0.15 unmaps a request and 38 page faults (each a fresh block's), 1,285 and
 * 1,600 us of CPU a request; with 64 MiB, none, and 802 and 803 (bench/run --tests post --paths
 * uwsgi, perf stat of both workers, alternated). The worker unmaps
 * the kept blocks once it has gone a tick without a request (wd_big_trim), so that its RSS
 * between bursts is what it was before them. Thread-safe: the Python threads allocate, the loop
 * frees sent segments. */
#ifndef WD_DAEMON_BIGBLOCK_H
#define WD_DAEMON_BIGBLOCK_H

#include <stddef.h>

#define WD_BIG_MIN (256 * 1024)
#define WD_BIG_KEEP ((size_t)64 << 20)
#define WD_BIG_SLOTS 128 /* blocks in use and kept */

/* A block of at least n bytes, or NULL when n is under WD_BIG_MIN or every slot is taken (then
 * use malloc). */
void *wd_big_alloc(size_t n);
/* Gives back a block of ours (returns 1), or returns 0 when p is not one (free it elsewhere). */
int wd_big_free(void *p);
/* The size of a block of ours, 0 when p is not one. */
size_t wd_big_cap(const void *p);
/* Unmaps the blocks kept; returns the bytes given back. */
size_t wd_big_trim(void);

#endif
