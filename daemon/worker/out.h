/* A connection's response buffer: the hand-off from a Python thread (the producer) to the loop
 * thread (the consumer, the only one that touches the socket).
 *
 * The producer appends bytes (the response head, body chunks, chunked framing) and file ranges
 * (wsgi.file_wrapper); it never waits on the client. Up to mem_limit bytes are kept in memory,
 * and large pieces that cannot change (bytes objects) are lent rather than copied, within the
 * worker's budget; the rest spills to an unlinked temp file and is sent from there with sendfile.
 * Only past spill_limit pending bytes, or when the worker's spill files hold its disk budget,
 * does the producer wait for the loop to drain the buffer (backpressure, so that streams to
 * stalled clients cannot fill the disk).
 *
 * Who writes to the socket: the loop, or the producer itself. While nothing is pending on the
 * connection, the producer sends what it has with one non-blocking writev (wd_out_flush, and
 * wd_out_finish): a response that fits in the socket then reaches the client without the loop,
 * and the loop is woken once, when the response is finished, instead of once for the bytes and
 * again for the end. Whatever the socket does not take at once is left to the loop, which waits
 * for POLLOUT: the producer never waits on the client. While `hold` is set (from dispatch until
 * the producer first hands the loop something it must send), appends do not wake the loop.
 *
 * Thread rules: wd_out_write/_file are called by the Python thread with the GIL released
 * (wd_out_try_writev, _flush and _finish may keep it: they never block);
 * wd_out_send/_abort/_reset by the loop thread. The wake callback runs in the producer's thread
 * and must only signal the loop; the park callback may take the loop lock (trylock: the loop
 * takes this lock under its own) and `parked` then runs the loop's code under it. */
#ifndef WD_DAEMON_OUT_H
#define WD_DAEMON_OUT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct wd_out wd_out_t;

/* A piece the producer lends instead of having it copied: bytes that never change while obj is
 * held (a Python bytes object's storage). The buffer calls release(obj, ctx) exactly once, when
 * the loop has sent the piece or the response is dropped, from whichever thread frees it (the loop
 * mostly) with the buffer's lock held: release hands obj back to its owner and must not block.
 * The worker's budget counts a lent piece while it is pending, as it counts a copy. */
typedef struct wd_out_lend {
    void *obj;
    void *ctx;
    void (*release)(void *obj, void *ctx);
    size_t obj_len; /* the bytes obj holds, when the piece is only a part of them; else 0 */
} wd_out_lend_t;

/* Pieces from this long, or parts of an object this long (FastCGI's records cut an object into
 * parts of 64 KiB), are worth lending: a shorter object's copy costs less than its release (a
 * hand-back to a Python thread). */
#define WD_OUT_LEND_MIN (256 * 1024)

/* A worker's budget for response bytes held in memory, shared by all its connections: past it a
 * response's new chunks spill to its file (one keeps up to WD_OUT_BUDGET_FLOOR in memory all the
 * same, so that small answers never touch the disk). */
typedef struct wd_out_budget {
    _Atomic uint64_t *used; /* the worker's scoreboard gauge */
    uint64_t limit;
    /* The temp files' share (response-disk-limit): the size of every spill file a response holds
     * open, charged as it grows and given back when it is closed (NULL: none). Past disk_limit, a
     * response that must spill waits until its client has taken all it has pending, then starts a
     * fresh file (its old one closed) with WD_OUT_DISK_PIECE bytes at most, and waits again for
     * the rest: a worker's spill files hold at most disk_limit and WD_OUT_DISK_PIECE a response. */
    _Atomic uint64_t *disk_used;
    uint64_t disk_limit;
} wd_out_budget_t;

/* What a response spills past the disk budget at a time (see wd_out_budget_t). A chunk larger
 * than this went over whole: a 20 MB answer in one bytes object, 30 clients that read nothing of
 * it, and the worker's files held 572 MiB against a 16 MiB budget (helper-54), its threads free
 * (the answers were whole in the buffer) and nobody waiting. */
#define WD_OUT_DISK_PIECE (64 * 1024)

#define WD_OUT_BUDGET_FLOOR (64 * 1024)

/* The send buffer asked for a unix socket that a large response filled (SO_SNDBUF: the kernel
 * doubles it, and caps it at twice net.core.wmem_max). The kernel's default (212992 bytes) has
 * the loop woken for every 160 KiB a proxy reads: a 16 MiB answer behind nginx cost about 84
 * POLLOUT wake-ups and 3.2-4.2 ms of CPU; raised, 2.1-2.6 ms (wsgid -c8 through nginx
 * keep-alive, wmem_max 4 MiB; 1.9-2.1 ms when it stayed raised to the end, 2.6-2.8 ms only
 * doubled as at Debian's default wmem_max). What it adds over the socket's own
 * buffer is taken from the worker's budget (none left: not raised), and held until the response
 * ends; the buffer goes back to its own size as soon as the rest of the response fits in that
 * size, and the rest is offered only then (wd_out_send), so that once a response ends the kernel
 * holds no more of it than without the raise: a client that reads nothing holds no kernel memory
 * that response-memory-limit does not count. */
#define WD_OUT_SNDBUF (1 << 20)
typedef struct wd_out_seg wd_out_seg_t;
/* how: WD_OUT_WAKE_NOW; WD_OUT_WAKE_LAZY, the response is finished and all sent on a connection
 * that stays open: the loop may learn it at its next turn; WD_OUT_WAKE_SHUT, the response is
 * finished, all sent and the socket shut: only the close is left (see handoff.h). */
typedef void (*wd_out_wake_cb)(wd_out_t *out, void *data, int how);
#define WD_OUT_WAKE_NOW 0
#define WD_OUT_WAKE_LAZY 1
#define WD_OUT_WAKE_SHUT 2
/* Parking (handoff.h), asked by wd_out_finish_park with the lock held, of a finished response:
 * whether the producer's thread keeps the connection. Returns 1 when it does (the callback then
 * holds what it needs, and `parked` runs after the unlock to complete the response), 0 when not,
 * -1 when not and the finish must wake the loop even if it could be lazy. whole: the response
 * went out whole and the connection may serve another request. */
typedef int (*wd_out_park_cb)(wd_out_t *out, void *data, void *thread, int whole);
typedef void (*wd_out_parked_cb)(wd_out_t *out, void *data, void *thread);

/* The producer's, called in its thread once a response (the lock not held) when the spill file
 * fails (err: errno): the rest of the response then waits in memory (wd_out_write). */
typedef void (*wd_out_spill_failed_cb)(wd_out_t *out, void *data, int err);

struct wd_out {
    pthread_mutex_t lock;
    pthread_cond_t drained; /* signalled when pending bytes fall below spill_limit */
    wd_out_seg_t *head;
    wd_out_seg_t *tail;
    wd_out_seg_t *spare;   /* one memory segment kept for the next response */
    uint64_t mem_bytes;    /* pending bytes in memory segments */
    uint64_t lent_charged; /* budget held by its pending lent segments */
    uint64_t pending;      /* all pending bytes (memory + spill + files) */
    uint64_t mem_limit;
    uint64_t spill_limit;
    int spill_fd;       /* -1 until the first spill (and after a rotation, see out.c) */
    uint64_t spill_end; /* where the next spilled byte goes in spill_fd (its size, charged to
                           the disk budget) */
    uint64_t spilled;   /* bytes spilled this response, in all its files */
    const char *tmpdir;
    int spill_error; /* the spill file failed this response (errno): memory from then on */
    wd_out_spill_failed_cb spill_failed; /* the producer's (NULL: none) */
    void *spill_failed_data;
    uint64_t sent;          /* bytes written to the socket for this response */
    int finished;           /* the producer called wd_out_finish */
    int keep_alive;         /* its verdict: keep the connection for another request */
    int aborted;            /* the client is gone; the producer gets -EPIPE */
    int lost;               /* ... and bytes of the response never reached it: dropped unsent,
                               or refused to the producer (-EPIPE), which then stops */
    unsigned waits;         /* the producer's waits (wait_drained), for wd_out_writev's wake */
    int producer_waiting;   /* WAIT_ROOM (below spill_limit) or WAIT_EMPTY (nothing pending) */
    int sock;               /* the connection's socket, for the producer's own writes (-1: none) */
    int sending;            /* a thread is writing to sock now (the loop or the producer) */
    int hold;               /* the producer has not handed the loop anything to send yet: no wake */
    int loop_waits;         /* the loop waits for the finish (the next request came or was
                               read with this one: conn_dispatch): wake it */
    int may_shut;           /* set by the loop: the response ends its connection, and a producer
                               that sends it whole shuts the socket's sending side itself */
    int shut;               /* ... which it did: the peer has the whole response, the loop closes */
    uint64_t finished_ns;   /* when the producer called wd_out_finish (wd_now_ns) */
    uint64_t waited_ns;     /* how long the producer waited for the client (backpressure) */
    uint64_t wait_since_ns; /* when its current wait began (0: not waiting) */
    wd_out_wake_cb wake;
    void *wake_data;
    wd_out_park_cb park; /* NULL: no parking */
    wd_out_parked_cb parked;
    const wd_out_budget_t *budget; /* NULL: none */
    /* The loop's (or a thread's that holds the loop lock): the send buffer (WD_OUT_SNDBUF). */
    int sndbuf_raise;        /* the socket is a unix one: its buffer may be raised */
    int sndbuf_base;         /* its own buffer, once read for this response (0: not yet) */
    int sndbuf_up;           /* raised to this now (0: not raised) */
    int sndbuf_done;         /* raised once this response, or it cannot be */
    int file_error;          /* a file range could not be read (errno; EIO: it ended early) */
    uint64_t sndbuf_charged; /* budget the raise holds, until the response ends */
};

/* An unlinked temp file in dir (O_TMPFILE, else mkostemp + unlink, named wsgid-WHAT-XXXXXX):
 * an fd, or -errno. */
int wd_tmpfile(const char *dir, const char *what);

void wd_out_init(wd_out_t *out, uint64_t mem_limit, uint64_t spill_limit, const char *tmpdir,
                 wd_out_wake_cb wake, void *wake_data);
/* Makes the buffer count its memory bytes against b (NULL: none). Before the first write. */
void wd_out_set_budget(wd_out_t *out, const wd_out_budget_t *b);
/* Frees every segment and the spill file, and gives back the budget of a raised send buffer;
 * the buffer is ready for the next response. */
void wd_out_reset(wd_out_t *out);
/* Between responses, the connection idle: frees the memory segment kept for the next response.
 * Returns its size (0: there was none). */
size_t wd_out_trim(wd_out_t *out);
void wd_out_close(wd_out_t *out);

/* Producer side. Return 0, or -EPIPE when the client is gone (stop producing, still call
 * finish). When the spill file fails (a full disk, no file descriptor left), the rest of the
 * response waits in memory for the loop to send what is pending, as much as the memory limit at a
 * time: the producer then waits on its client, but nothing is lost (spill_failed says so). */
int wd_out_write(wd_out_t *out, const void *data, size_t len);
/* lend (NULL: copy everything) runs beside iov: where lend[i].obj is set, piece i may be lent
 * (kept by reference, see wd_out_lend_t) instead of copied, when it is at least WD_OUT_LEND_MIN
 * long and the worker's budget has room. The buffer clears lend[i].obj of each piece it keeps;
 * the producer still owns the others. */
int wd_out_writev(wd_out_t *out, const struct iovec *iov, int iovcnt, wd_out_lend_t *lend);
/* Like wd_out_writev when all of iov can be kept in memory (lent, or copied under mem_limit);
 * otherwise keeps nothing and returns -EAGAIN. Never blocks on I/O nor waits for the loop, so it
 * may be called with the GIL held: releasing the GIL for a memcpy hands it to a waiting thread, a
 * context switch. */
int wd_out_try_writev(wd_out_t *out, const struct iovec *iov, int iovcnt, wd_out_lend_t *lend);
/* Queues len bytes of fd from off, sent with sendfile; takes ownership of fd (closed when sent
 * or dropped). */
int wd_out_file(wd_out_t *out, int fd, uint64_t off, uint64_t len);
/* The response is complete (or abandoned); keep_alive says whether the connection may serve
 * another request once everything is sent, or is WD_OUT_RESET: the response broke after its head
 * went out, so the connection is reset rather than closed, and no client or proxy can take a
 * close-delimited body cut short for a whole one. Call exactly once per response. */
#define WD_OUT_RESET (-1)
void wd_out_finish(wd_out_t *out, int keep_alive);
/* wd_out_finish by a Python thread (thread: its handoff.h state), which may keep the connection
 * (park): returns 1 when it did. */
int wd_out_finish_park(wd_out_t *out, int keep_alive, void *thread);
/* While the loop has not been handed the response (`hold`), sends what is buffered with one
 * non-blocking writev; whatever the socket does not take goes to the loop (waking it), which then
 * owns the rest of the response. Returns 0 or -EPIPE. */
int wd_out_flush(wd_out_t *out);

/* Consumer side (loop thread). Writes as much as the socket takes. Returns 1 when the response is
 * finished and fully sent, 0 when there is nothing more to send for now or the socket is full
 * (*want_write says which: 1 = wait for POLLOUT), or -errno when the socket failed (the buffer is
 * then aborted). A full unix socket with much more to come has its buffer raised (WD_OUT_SNDBUF)
 * when sndbuf_raise is set, and put back when the rest fits. */
int wd_out_send(wd_out_t *out, int sock, int *want_write);
/* The client is gone: drop pending data, make the producer's calls return -EPIPE. */
void wd_out_abort(wd_out_t *out);
/* What a response was when it was dropped (wd_out_abort_seen). */
typedef struct wd_out_seen {
    uint64_t sent;        /* bytes written to the socket */
    uint64_t finished_ns; /* when the producer finished it (0: not yet) */
    int drained;          /* nothing was pending: every byte pushed had gone to the socket */
} wd_out_seen_t;
/* wd_out_abort of a response whose producer may still be running (a Python thread stuck past
 * request-timeout, conn_timeout.c), and what the response was then, read under the lock the
 * producer writes it under: the loop must not read those fields itself while the producer may
 * come back and write them (ThreadSanitizer: a data race). The producer writes nothing to the
 * socket from then on, as after wd_out_abort. */
void wd_out_abort_seen(wd_out_t *out, wd_out_seen_t *seen);
/* 1 once the producer called wd_out_finish (read under the lock). */
int wd_out_is_finished(wd_out_t *out);
/* 1 when nothing is pending: every byte pushed so far has gone to the socket. */
int wd_out_drained(wd_out_t *out);
/* 1 once the producer finished a response that ends its connection and shut the socket's sending
 * side after sending it whole (may_shut): the peer's hang-up then is not a client gone. */
int wd_out_is_shut(wd_out_t *out);
/* How long the producer has waited for the client to take its bytes, in all, this response (its
 * current wait up to now included): that time is the client's, not the app's (request-timeout). */
uint64_t wd_out_waited_ns(wd_out_t *out, uint64_t now);
/* Loop: as wd_out_is_finished; when not finished yet, the finish wakes the loop even if it could
 * have been lazy (the client sent its next request: the loop waits for this one's end). */
int wd_out_finished_or_wait(wd_out_t *out);

#endif
