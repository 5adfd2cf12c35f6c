/* Names shared by the files of the response buffer only (out.c: appending, the producer's own
 * write, the finish; out_send.c: the loop's sending). */
#ifndef WD_DAEMON_OUT_INT_H
#define WD_DAEMON_OUT_INT_H

#include "out.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define SEND_IOV_MAX 64

enum { SEG_MEM, SEG_FILE, SEG_LENT };

struct wd_out_seg {
    wd_out_seg_t *next;
    int kind;
    int fd;             /* SEG_FILE */
    int owned;          /* SEG_FILE: close fd when done (not for the spill file) */
    uint64_t disk;      /* SEG_FILE: of the disk budget, what closing fd gives back (a spill
                           file's last segment once the file was rotated) */
    uint64_t off;       /* SEG_FILE: next byte to send */
    uint64_t left;      /* SEG_FILE: bytes still to send */
    size_t cap;         /* SEG_MEM */
    size_t pos;         /* SEG_MEM, SEG_LENT: next byte to send */
    size_t len;         /* SEG_MEM: bytes written by the producer; SEG_LENT: the piece's length */
    const char *lent;   /* SEG_LENT: the piece */
    wd_out_lend_t lend; /* SEG_LENT: released when the segment is freed */
    uint64_t charged;   /* SEG_LENT: budget bytes it holds (0: the same object as the segment
                           before it, which holds them) */
    char data[];
};

/* out.c */

/* Takes n bytes of the worker's memory budget (there must be one) if that stays within its
 * limit, or within WD_OUT_BUDGET_FLOOR of this response's memory bytes when floor is set. */
int wd__out_budget_try(wd_out_t *out, uint64_t n, int floor);
/* Gives n bytes back to the worker's budget (none: nothing to do). */
void wd__out_budget_give(wd_out_t *out, uint64_t n);

/* Lock held: n bytes of the head segments were sent (memory and lent ones: wd__out_consume; the
 * head, a file range: wd__out_consume_file). Frees what is sent whole and wakes a producer
 * waiting for room. */
void wd__out_consume(wd_out_t *out, size_t n);
void wd__out_consume_file(wd_out_t *out, uint64_t n);

/* Lock held: the pending memory and lent bytes at the head of the list, up to the first file
 * segment, into iov (at most max); returns how many. */
int wd__out_mem_iov(wd_out_t *out, struct iovec *iov, int max);

#endif
