/* A connection's response buffer: see out.h. Here the buffer, the producer's appends, its own
 * write and the finish; the loop's sending is in out_send.c.
 *
 * The buffer is a list of segments, sent in order: memory segments (bytes copied from the
 * producer), lent segments (bytes the producer lends by reference, see wd_out_lend_t) and file
 * segments (a range of the spill file, or of a file the application handed over with
 * wsgi.file_wrapper). Everything is guarded by out->lock, except the bytes of a memory segment
 * below its `len` and those of a lent one, which never change once queued: the consumer writes
 * them to the socket without holding the lock, while the producer may append behind them. Only
 * the consumer frees segments (and a producer whose write found the buffer aborted).
 *
 * Why lend: a 16 MiB response (sixteen 1 MiB bytes objects) was copied into the 1 MiB of memory
 * and then written to the spill file, and sent from there with sendfile: `perf record` on the
 * workers during `wrk -c8` direct showed pwrite to ext4 at 35 % of their CPU and the spill file's
 * close at 6 %, for 11.5 ms of CPU a request. Lent, the bytes go from the app's objects to the
 * socket. */
#include "out.h"
#include "out_int.h"
#include "alloc.h"
#include "bigblock.h"
#include "request.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_MIN_CAP (16 * 1024 - 64)
#define SPILL_ROTATE_MIN ((uint64_t)1 << 20)

/* What a waiting producer waits for (producer_waiting). */
#define WAIT_ROOM 1  /* pending below spill_limit */
#define WAIT_EMPTY 2 /* nothing pending: the worker's disk budget is spent (wd_out_budget_t) */

/* The bytes of a memory or lent segment. */
static const char *seg_bytes(const wd_out_seg_t *s)
{
    return s->kind == SEG_LENT ? s->lent : s->data;
}

void wd_out_init(wd_out_t *out, uint64_t mem_limit, uint64_t spill_limit, const char *tmpdir,
                 wd_out_wake_cb wake, void *wake_data)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_init(&out->lock, NULL);
    pthread_cond_init(&out->drained, NULL);
    out->mem_limit = mem_limit;
    out->spill_limit = spill_limit > mem_limit ? spill_limit : mem_limit;
    out->spill_fd = -1;
    out->sock = -1;
    out->tmpdir = tmpdir ? tmpdir : "/tmp";
    out->wake = wake;
    out->wake_data = wake_data;
}

void wd_out_set_budget(wd_out_t *out, const wd_out_budget_t *b)
{
    out->budget = b;
}

/* See out_int.h. */
int wd__out_budget_try(wd_out_t *out, uint64_t n, int floor)
{
    uint64_t was = atomic_fetch_add_explicit(out->budget->used, n, memory_order_relaxed);

    if (was + n <= out->budget->limit || (floor && out->mem_bytes + n <= WD_OUT_BUDGET_FLOOR))
        return 1;
    atomic_fetch_sub_explicit(out->budget->used, n, memory_order_relaxed);
    return 0;
}

/* Takes n bytes of the worker's memory budget for this response, or says no. */
static int budget_take(wd_out_t *out, uint64_t n)
{
    return out->budget == NULL || wd__out_budget_try(out, n, 1);
}

void wd__out_budget_give(wd_out_t *out, uint64_t n)
{
    if (out->budget != NULL && n > 0)
        atomic_fetch_sub_explicit(out->budget->used, n, memory_order_relaxed);
}

/* The disk budget (wd_out_budget_t): takes n bytes past it (a response with nothing pending
 * goes on, WD_OUT_DISK_PIECE at a time). */
static void disk_force(wd_out_t *out, uint64_t n)
{
    if (out->budget != NULL && out->budget->disk_used != NULL)
        atomic_fetch_add_explicit(out->budget->disk_used, n, memory_order_relaxed);
}

/* The disk budget: takes what it has room for of n bytes, if that is n or WD_OUT_DISK_PIECE at
 * least (no slivers); returns the bytes taken, 0 when none. A chunk larger than the room goes to
 * disk in parts (write_locked) rather than waiting for room it may never have whole. */
static uint64_t disk_take_some(wd_out_t *out, uint64_t n)
{
    _Atomic uint64_t *used;
    uint64_t was, room, m, least = n < WD_OUT_DISK_PIECE ? n : WD_OUT_DISK_PIECE;

    if (out->budget == NULL || out->budget->disk_used == NULL)
        return n;
    used = out->budget->disk_used;
    was = atomic_load_explicit(used, memory_order_relaxed);
    do {
        room = was < out->budget->disk_limit ? out->budget->disk_limit - was : 0;
        m = n < room ? n : room;
        if (m < least)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(used, &was, was + m, memory_order_relaxed,
                                                    memory_order_relaxed));
    return m;
}

static void disk_give(wd_out_t *out, uint64_t n)
{
    if (out->budget != NULL && out->budget->disk_used != NULL && n > 0)
        atomic_fetch_sub_explicit(out->budget->disk_used, n, memory_order_relaxed);
}

/* Closes the current spill file (none pending from it), and gives back what it held. */
static void spill_close(wd_out_t *out)
{
    if (out->spill_fd >= 0) {
        close(out->spill_fd);
        disk_give(out, out->spill_end);
    }
    out->spill_fd = -1;
    out->spill_end = 0;
}

static void seg_free(wd_out_t *out, wd_out_seg_t *seg)
{
    if (seg->kind == SEG_LENT) {
        wd__out_budget_give(out, seg->charged);
        out->lent_charged -= seg->charged;
        seg->lend.release(seg->lend.obj, seg->lend.ctx);
        free(seg);
        return;
    }
    if (seg->kind == SEG_FILE) {
        if (seg->owned)
            close(seg->fd);
        disk_give(out, seg->disk);
        free(seg);
        return;
    }
    /* Keep one memory segment of the usual size for the next response. */
    if (out->spare == NULL && seg->cap == SEG_MIN_CAP) {
        out->spare = seg;
        return;
    }
    if (!wd_big_free(seg))
        free(seg);
}

/* A large chunk's copy is a block kept for reuse (bigblock.h), not a fresh mapping each time. */
static wd_out_seg_t *seg_alloc_mem(size_t cap)
{
    wd_out_seg_t *t = wd_big_alloc(sizeof *t + cap);

    return t != NULL ? t : xmalloc(sizeof *t + cap);
}

/* Drops every pending segment. Called with the lock held, or by the only thread left. */
static void drop_all(wd_out_t *out)
{
    wd_out_seg_t *seg = out->head, *next;

    if (out->pending > 0)
        out->lost = 1;
    for (; seg; seg = next) {
        next = seg->next;
        seg_free(out, seg);
    }
    out->head = out->tail = NULL;
    wd__out_budget_give(out, out->mem_bytes);
    out->mem_bytes = 0;
    out->pending = 0;
}

/* Lock held: the client is gone and the producer's bytes (or its next ones: it stops) never
 * reach it. */
static int refused(wd_out_t *out)
{
    out->lost = 1;
    return -EPIPE;
}

void wd_out_reset(wd_out_t *out)
{
    pthread_mutex_lock(&out->lock);
    drop_all(out);
    spill_close(out);
    out->spilled = 0;
    out->sent = 0;
    out->finished = 0;
    out->keep_alive = 0;
    out->aborted = 0;
    out->lost = 0;
    out->producer_waiting = 0;
    out->sending = 0;
    out->hold = 0;
    out->loop_waits = 0;
    out->may_shut = 0;
    out->shut = 0;
    out->finished_ns = 0;
    out->waited_ns = 0;
    out->wait_since_ns = 0;
    out->sock = -1;
    out->spill_error = 0;
    pthread_mutex_unlock(&out->lock);
    /* The buffer was put back before the response's end (or the response was dropped and the
     * socket is closing). */
    wd__out_budget_give(out, out->sndbuf_charged);
    out->sndbuf_charged = 0;
    out->sndbuf_raise = 0;
    out->sndbuf_base = 0;
    out->sndbuf_up = 0;
    out->sndbuf_done = 0;
    out->file_error = 0;
}

size_t wd_out_trim(wd_out_t *out)
{
    size_t n = 0;

    pthread_mutex_lock(&out->lock);
    if (out->spare != NULL) {
        n = sizeof *out->spare + out->spare->cap;
        free(out->spare);
        out->spare = NULL;
    }
    pthread_mutex_unlock(&out->lock);
    return n;
}

void wd_out_close(wd_out_t *out)
{
    wd_out_reset(out);
    free(out->spare);
    out->spare = NULL;
    pthread_cond_destroy(&out->drained);
    pthread_mutex_destroy(&out->lock);
}

static void append_seg(wd_out_t *out, wd_out_seg_t *seg)
{
    seg->next = NULL;
    if (out->tail)
        out->tail->next = seg;
    else
        out->head = seg;
    out->tail = seg;
}

/* Copies into memory segments. Lock held. */
static void append_mem(wd_out_t *out, const char *p, size_t n)
{
    wd_out_seg_t *t = out->tail;

    if (t && t->kind == SEG_MEM && t->cap > t->len) {
        size_t k = t->cap - t->len < n ? t->cap - t->len : n;

        memcpy(t->data + t->len, p, k);
        t->len += k;
        p += k;
        n -= k;
    }
    if (n > 0) {
        size_t cap = n > SEG_MIN_CAP ? n : SEG_MIN_CAP;

        if (cap == SEG_MIN_CAP && out->spare) {
            t = out->spare;
            out->spare = NULL;
        } else {
            t = seg_alloc_mem(cap);
        }
        memset(t, 0, sizeof *t);
        t->kind = SEG_MEM;
        t->fd = -1;
        t->cap = cap;
        memcpy(t->data, p, n);
        t->len = n;
        append_seg(out, t);
    }
}

/* Lock held: the budget a lent piece of n bytes of obj takes, after prev (the object of the piece
 * queued just before it, or NULL): none when it is the same object (a list of one chunk repeated
 * holds its memory once), else n when the worker's budget and the response's share of it have
 * room; -1 when not. more: what the earlier pieces of the same wd_out_try_writev were charged,
 * not in lent_charged yet. */
static int64_t lend_charge(wd_out_t *out, const void *prev, const void *obj, size_t n,
                           uint64_t more)
{
    uint64_t after = out->lent_charged + more + n;

    if (obj == prev || out->budget == NULL)
        return obj == prev ? 0 : (int64_t)n;
    /* One response holds at most a quarter of the budget lent (at least mem_limit): past it,
     * its pieces are copied or spilled, under backpressure, and the other connections keep room. */
    if (after > out->budget->limit / 4 && after > out->mem_limit)
        return -1;
    return wd__out_budget_try(out, n, 0) ? (int64_t)n : -1;
}

/* Lock held: the object of the last queued segment when it is lent, else NULL. */
static const void *tail_lent(const wd_out_t *out)
{
    return out->tail && out->tail->kind == SEG_LENT ? out->tail->lend.obj : NULL;
}

/* Lock held: queues a lent piece, and takes its object from lend. */
static void append_lent(wd_out_t *out, const char *p, size_t n, wd_out_lend_t *lend,
                        uint64_t charged)
{
    wd_out_seg_t *t = xmalloc(sizeof *t);

    memset(t, 0, sizeof *t);
    t->kind = SEG_LENT;
    t->fd = -1;
    t->lent = p;
    t->len = n;
    t->lend = *lend;
    t->charged = charged;
    out->lent_charged += charged;
    lend->obj = NULL;
    append_seg(out, t);
    out->pending += n;
}

static int lendable(const wd_out_lend_t *lend, size_t n)
{
    return lend != NULL && lend->obj != NULL && n > 0 &&
           (n > lend->obj_len ? n : lend->obj_len) >= WD_OUT_LEND_MIN;
}

int wd_tmpfile(const char *dir, const char *what)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == ENOENT)) {
        char path[4096];

        snprintf(path, sizeof path, "%s/wsgid-%s-XXXXXX", dir, what);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
    }
    return fd < 0 ? -errno : fd;
}

static int pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);

        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            return -ENOSPC;
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* The disk a response takes must follow the bytes still pending, not the whole response (an
 * endless stream to a steady client must not fill the disk). Sent ranges of the spill file cannot
 * be reused or punched out, though: sendfile does not copy, and until the peer has read them
 * (not just acknowledged them: on the same machine the pages sit in the reader's queue) the
 * socket refers to the file's pages; punching them out changed the bytes on the wire (measured:
 * zeros from 4 MiB into a 16 MiB download through loopback). So once a spill file holds half the
 * spill limit, new spills go to a new file, and the old one is closed (its blocks freed) when its
 * last segment has been sent. A response's disk thus stays under about 1.5 x the limit plus one
 * chunk. */
static uint64_t spill_rotate_at(const wd_out_t *out)
{
    uint64_t half = out->spill_limit / 2;

    return half > SPILL_ROTATE_MIN ? half : SPILL_ROTATE_MIN;
}

/* Lock held. */
static void spill_rotate(wd_out_t *out)
{
    wd_out_seg_t *last = NULL;

    for (wd_out_seg_t *t = out->head; t; t = t->next)
        if (t->kind == SEG_FILE && t->fd == out->spill_fd)
            last = t;
    if (last == NULL) {
        spill_close(out);
        return;
    }
    last->owned = 1; /* closed when sent (seg_free), and the file's disk given back */
    last->disk = out->spill_end;
    out->spill_fd = -1;
    out->spill_end = 0;
}

/* Appends n bytes to the spill file and queues them. Lock held on entry and exit; released while
 * writing the file (only this producer appends, so the range is ours). */
static int append_spill(wd_out_t *out, const char *p, size_t n)
{
    uint64_t off;
    wd_out_seg_t *t;
    int rc;

    if (out->spill_fd >= 0 && out->spill_end >= spill_rotate_at(out))
        spill_rotate(out);
    if (out->spill_fd < 0) {
        rc = wd_tmpfile(out->tmpdir, "spill");
        if (rc < 0) {
            disk_give(out, n); /* the file holds what it was charged: not these */
            return rc;
        }
        out->spill_fd = rc;
    }
    off = out->spill_end;
    out->spill_end += n;
    out->spilled += n;
    pthread_mutex_unlock(&out->lock);
    rc = pwrite_all(out->spill_fd, p, n, off);
    pthread_mutex_lock(&out->lock);
    if (rc < 0)
        return rc;
    if (out->aborted)
        return refused(out);
    t = out->tail;
    if (t && t->kind == SEG_FILE && t->fd == out->spill_fd && t->off + t->left == off) {
        t->left += n;
        return 0;
    }
    t = xmalloc(sizeof *t);
    memset(t, 0, sizeof *t);
    t->kind = SEG_FILE;
    t->fd = out->spill_fd;
    t->owned = 0;
    t->off = off;
    t->left = n;
    append_seg(out, t);
    return 0;
}

/* Lock held. Wakes the loop when it may be idle: the buffer was empty before this append (and the
 * producer has handed it something to send). */
static void wake_locked(wd_out_t *out, int was_empty)
{
    if (was_empty && out->wake && !out->hold)
        out->wake(out, out->wake_data, WD_OUT_WAKE_NOW);
}

/* Lock held: from now on the loop sends (a file, a spill, or bytes the producer must not wait
 * for); it is woken if anything is pending. */
static void release_hold(wd_out_t *out)
{
    if (!out->hold)
        return;
    out->hold = 0;
    if (out->head && out->wake)
        out->wake(out, out->wake_data, WD_OUT_WAKE_NOW);
}

/* Lock held: the producer sleeps until the loop has sent some (WAIT_ROOM: pending under the
 * spill limit) or all (WAIT_EMPTY), or the client is gone. */
static void wait_drained(wd_out_t *out, int wait)
{
    /* What this call queued before (an earlier iov, or piece) has woken nobody yet (the wake
     * comes at the end of wd_out_writev): the loop must know of it to drain it, or both wait for
     * ever (a list of 1 MiB chunks with response-spill-limit 1M stalled after the head). */
    if (out->head != NULL && out->wake != NULL)
        out->wake(out, out->wake_data, WD_OUT_WAKE_NOW);
    out->producer_waiting = wait;
    out->waits++;
    out->wait_since_ns = wd_now_ns();
    pthread_cond_wait(&out->drained, &out->lock);
    out->waited_ns += wd_now_ns() - out->wait_since_ns;
    out->wait_since_ns = 0;
}

/* Lock held: whether n more bytes must wait for the loop to send (the spill limit's
 * backpressure, design §2): a piece always goes when nothing is pending. */
static int over_spill_limit(const wd_out_t *out, size_t n)
{
    return out->pending > 0 && out->pending + n > out->spill_limit;
}

/* Lock held. The spill file failed (spill_error): the rest goes to memory, as much as the
 * memory limit at a time (the budget's floor when the worker's budget is spent), each piece
 * once everything before it is sent. The producer waits on its client, which the spill exists
 * to spare it, but the answer goes out whole where it used to be cut: a TMPDIR filled by others
 * (logs, say) would cut every large answer of every worker (test_full_tmpdir_during_spill). */
static int append_mem_after_drain(wd_out_t *out, const char *p, size_t n)
{
    while (n > 0) {
        uint64_t m = n < out->mem_limit ? n : out->mem_limit;

        while (out->pending > 0 && !out->aborted)
            wait_drained(out, WAIT_EMPTY);
        if (out->aborted)
            return refused(out);
        if (!budget_take(out, m)) {
            m = m < WD_OUT_BUDGET_FLOOR ? m : WD_OUT_BUDGET_FLOOR;
            budget_take(out, m); /* nothing pending: the floor has room for it */
        }
        append_mem(out, p, m);
        out->mem_bytes += m;
        out->pending += m;
        p += m;
        n -= m;
    }
    return 0;
}

static int write_locked(wd_out_t *out, const char *p, size_t n, wd_out_lend_t *lend)
{
    int rc;

    if (lendable(lend, n)) {
        int64_t charged;

        /* A lent piece costs no copy, but the spill limit holds for it too: an app that yields
         * one bytes object again and again (padding, a zero-filled download) to a client that
         * reads nothing queued a segment a yield, charged nothing, and grew the worker by
         * 0.45 GiB a second (helper-60). */
        if (over_spill_limit(out, n)) {
            release_hold(out);
            do {
                if (out->aborted)
                    return refused(out);
                wait_drained(out, WAIT_ROOM);
            } while (over_spill_limit(out, n));
            if (out->aborted) /* dropped all: nothing pending, and nobody to send to */
                return refused(out);
        }
        charged = lend_charge(out, tail_lent(out), lend->obj, n, 0);
        if (charged >= 0) {
            append_lent(out, p, n, lend, (uint64_t)charged);
            return 0;
        }
    }

    /* In memory while what is there is under the limit and the chunk itself fits in it: a 1 MiB
     * answer plus its head stays in memory with the default 1M, and memory holds at most twice
     * the limit. Anything else goes to the spill file. */
    if (out->mem_bytes < out->mem_limit && n <= out->mem_limit && budget_take(out, n)) {
        append_mem(out, p, n);
        out->mem_bytes += n;
        out->pending += n;
        return 0;
    }
    release_hold(out);
    if (out->spill_error != 0)
        return append_mem_after_drain(out, p, n);
    /* Backpressure: past the spill limit, wait until the loop has sent enough; with the worker's
     * disk budget spent, until it has sent all (then a fresh file, the old one's blocks freed, and
     * at most WD_OUT_DISK_PIECE of the chunk over the budget, the rest after another wait). A
     * chunk goes in parts as the budget has room for them. */
    while (n > 0) {
        uint64_t m;

        for (;;) {
            int wait = WAIT_ROOM;

            if (out->aborted)
                return refused(out);
            if (out->pending == 0 || out->pending + n <= out->spill_limit) {
                m = disk_take_some(out, n);
                if (m > 0)
                    break;
                if (out->pending == 0) {
                    spill_close(out);
                    m = n < WD_OUT_DISK_PIECE ? n : WD_OUT_DISK_PIECE;
                    disk_force(out, m);
                    break;
                }
                wait = WAIT_EMPTY;
            }
            wait_drained(out, wait);
        }
        rc = append_spill(out, p, m);
        if (rc == -EPIPE && out->lost)
            return rc;
        if (rc != 0) {
            out->spill_error = -rc;
            if (out->spill_failed != NULL) {
                pthread_mutex_unlock(&out->lock);
                out->spill_failed(out, out->spill_failed_data, -rc);
                pthread_mutex_lock(&out->lock);
            }
            return append_mem_after_drain(out, p, n);
        }
        out->pending += m;
        p += m;
        n -= m;
    }
    return 0;
}

int wd_out_writev(wd_out_t *out, const struct iovec *iov, int iovcnt, wd_out_lend_t *lend)
{
    unsigned waits;
    int rc = 0, was_empty;
    uint64_t spilled;

    pthread_mutex_lock(&out->lock);
    if (out->aborted) {
        refused(out);
        pthread_mutex_unlock(&out->lock);
        return -EPIPE;
    }
    was_empty = out->head == NULL;
    spilled = out->spilled;
    waits = out->waits;
    for (int i = 0; i < iovcnt && rc == 0; i++) {
        if (iov[i].iov_len > 0)
            rc = write_locked(out, iov[i].iov_base, iov[i].iov_len, lend ? &lend[i] : NULL);
    }
    /* A spill releases the lock while it writes the file, and a wait sleeps on it: the loop may
     * have drained the list and gone idle meanwhile (it does, when a lent piece waits for it to
     * send all: helper-61). Wake it then too. */
    if (out->head)
        wake_locked(out, was_empty || out->spilled != spilled || out->waits != waits);
    pthread_mutex_unlock(&out->lock);
    return rc;
}

/* The most pieces wd_out_try_writev looks at for lending (with more, it copies them all). */
#define TRY_LEND_MAX 64

int wd_out_try_writev(wd_out_t *out, const struct iovec *iov, int iovcnt, wd_out_lend_t *lend)
{
    uint64_t total = 0, lent_total = 0, lent_bytes = 0;
    int64_t charge[TRY_LEND_MAX]; /* per piece: the budget it takes lent, or -1: copied */
    const void *prev;
    int was_empty;

    if (iovcnt > TRY_LEND_MAX)
        lend = NULL;
    pthread_mutex_lock(&out->lock);
    if (out->aborted) {
        refused(out);
        pthread_mutex_unlock(&out->lock);
        return -EPIPE;
    }
    /* All of it in memory (lent, or copied), or none of it: what does not fit is for
     * wd_out_writev, which may write a file or wait, so its caller releases the GIL first. The
     * lent pieces' budget is taken first, and given back if the rest does not fit. */
    prev = tail_lent(out);
    for (int i = 0; i < iovcnt; i++) {
        int64_t c = -1;

        if (lend != NULL && lendable(&lend[i], iov[i].iov_len))
            c = lend_charge(out, prev, lend[i].obj, iov[i].iov_len, lent_total);
        if (lend != NULL)
            charge[i] = c;
        if (c >= 0) {
            lent_total += (uint64_t)c;
            lent_bytes += iov[i].iov_len;
            prev = lend[i].obj;
        } else if (iov[i].iov_len > 0) {
            total += iov[i].iov_len;
            prev = NULL;
        }
    }
    /* Lent pieces past the spill limit wait, in wd_out_writev (write_locked). */
    if ((lent_bytes > 0 && over_spill_limit(out, lent_bytes)) ||
        (total > 0 && (out->mem_bytes >= out->mem_limit ||
                       total > out->mem_limit - out->mem_bytes || !budget_take(out, total)))) {
        wd__out_budget_give(out, lent_total);
        pthread_mutex_unlock(&out->lock);
        return -EAGAIN;
    }
    was_empty = out->head == NULL;
    for (int i = 0; i < iovcnt; i++) {
        if (lend != NULL && charge[i] >= 0)
            append_lent(out, iov[i].iov_base, iov[i].iov_len, &lend[i], (uint64_t)charge[i]);
        else if (iov[i].iov_len > 0)
            append_mem(out, iov[i].iov_base, iov[i].iov_len);
    }
    out->mem_bytes += total;
    out->pending += total;
    if (out->head)
        wake_locked(out, was_empty);
    pthread_mutex_unlock(&out->lock);
    return 0;
}

int wd_out_write(wd_out_t *out, const void *data, size_t len)
{
    struct iovec iov = {(void *)data, len};

    return wd_out_writev(out, &iov, 1, NULL);
}

int wd_out_file(wd_out_t *out, int fd, uint64_t off, uint64_t len)
{
    wd_out_seg_t *t;
    int was_empty;

    if (len == 0) {
        close(fd);
        return 0;
    }
    pthread_mutex_lock(&out->lock);
    if (out->aborted) {
        refused(out);
        pthread_mutex_unlock(&out->lock);
        close(fd);
        return -EPIPE;
    }
    release_hold(out);
    was_empty = out->head == NULL;
    t = xmalloc(sizeof *t);
    memset(t, 0, sizeof *t);
    t->kind = SEG_FILE;
    t->fd = fd;
    t->owned = 1;
    t->off = off;
    t->left = len;
    append_seg(out, t);
    out->pending += len;
    wake_locked(out, was_empty);
    pthread_mutex_unlock(&out->lock);
    return 0;
}

/* Lock held on entry and exit: the producer's own non-blocking writev, when nobody writes and the
 * first pending bytes are in memory. What the socket does not take goes to the loop. */
static void flush_locked(wd_out_t *out)
{
    struct iovec iov[SEND_IOV_MAX];
    ssize_t k;
    int cnt, err;

    /* Only while the loop has not been handed the response: once it has, it owns the rest (a
     * producer trying the full socket again per chunk would cost a syscall and a wake-up each). */
    if (!out->hold || out->sending || out->aborted || out->sock < 0 || out->head == NULL)
        return;
    cnt = wd__out_mem_iov(out, iov, SEND_IOV_MAX);
    if (cnt == 0) {
        release_hold(out); /* a file first: the loop sends it */
        return;
    }
    out->sending = 1;
    pthread_mutex_unlock(&out->lock);
    do
        k = writev(out->sock, iov, cnt);
    while (k < 0 && errno == EINTR);
    err = k < 0 ? errno : 0;
    pthread_mutex_lock(&out->lock);
    out->sending = 0;
    if (out->aborted || (err != 0 && err != EAGAIN && err != EWOULDBLOCK)) {
        /* The loop abandoned the response meanwhile (the client may have read these bytes and
         * closed: they count), or the client is gone. */
        if (k > 0)
            wd__out_consume(out, (size_t)k);
        out->aborted = 1;
        drop_all(out);
        return;
    }
    if (k > 0)
        wd__out_consume(out, (size_t)k);
    if (out->head)
        release_hold(out); /* the loop sends the rest, waiting for POLLOUT */
}

int wd_out_flush(wd_out_t *out)
{
    int rc;

    pthread_mutex_lock(&out->lock);
    flush_locked(out);
    /* Not `lost` by itself: the bytes pushed before may all have reached the client, which then
     * closed, and the producer knows whether its answer had more (python_glue: req->cut). */
    rc = out->aborted ? -EPIPE : 0;
    pthread_mutex_unlock(&out->lock);
    return rc;
}

/* Lock held, at the finish: a response that ends its connection (keep_alive 0: not a reset),
 * that the loop allows to (may_shut) and that went out whole is ended here, with shutdown(SHUT_WR):
 * the peer has all of it now, and the loop's close can wait for its next turn. Behind uwsgi_pass
 * (a connection a request) every answer's end otherwise needed the loop at once, which kept it
 * from resting (handoff.c: rest). With the accept capacity that lets the queue grow deep enough
 * to rest (accept.c), 2 A/B pairs of bench/run --paths uwsgi, 2 x 4, against the same without
 * this: 5 ms of I/O, 73 and 66 us of CPU a request against 76 and 70; 0.5 ms, 45 and 43 against
 * 49 and 49. Alone, with the loop unable to rest, it saved nothing: the news then wakes the loop
 * anyway (WD_HANDOFF_QUIET), one syscall more. */
static int shut_whole(wd_out_t *out, int keep_alive)
{
    if (keep_alive != 0 || !out->may_shut || out->head != NULL || out->aborted || out->sending ||
        out->sock < 0)
        return 0;
    return shutdown(out->sock, SHUT_WR) == 0;
}

void wd_out_finish(wd_out_t *out, int keep_alive)
{
    (void)wd_out_finish_park(out, keep_alive, NULL);
}

int wd_out_finish_park(wd_out_t *out, int keep_alive, void *thread)
{
    int whole, park = 0;

    pthread_mutex_lock(&out->lock);
    flush_locked(out);
    out->hold = 0;
    out->finished = 1;
    out->finished_ns = wd_now_ns();
    out->keep_alive = keep_alive;
    whole = out->head == NULL && !out->aborted && keep_alive > 0 && !out->loop_waits;
    out->shut = shut_whole(out, keep_alive);
    if (out->park != NULL && thread != NULL)
        park = out->park(out, out->wake_data, thread, whole);
    if (park == 1) {
        pthread_mutex_unlock(&out->lock);
        out->parked(out, out->wake_data, thread);
        return 1;
    }
    /* Woken with the lock held: the loop sees `finished` only after this call has returned from
     * the wake callback, so it cannot free the connection under our feet. A keep-alive response
     * that went out whole needs nothing of the loop soon: it learns at its next turn, unless it
     * already waits for it (the client got the bytes and sent its next request before this call:
     * the bytes went out in an earlier flush). Nor does one that ends its connection and that
     * this thread shut (shut_whole). */
    if (out->wake) {
        int how = WD_OUT_WAKE_NOW;

        if (park == 0 && whole)
            how = WD_OUT_WAKE_LAZY;
        else if (park == 0 && out->shut)
            how = WD_OUT_WAKE_SHUT;
        out->wake(out, out->wake_data, how);
    }
    pthread_mutex_unlock(&out->lock);
    return 0;
}

int wd_out_is_finished(wd_out_t *out)
{
    int f;

    pthread_mutex_lock(&out->lock);
    f = out->finished;
    pthread_mutex_unlock(&out->lock);
    return f;
}

int wd_out_drained(wd_out_t *out)
{
    int d;

    pthread_mutex_lock(&out->lock);
    d = out->pending == 0;
    pthread_mutex_unlock(&out->lock);
    return d;
}

int wd_out_is_shut(wd_out_t *out)
{
    int f;

    pthread_mutex_lock(&out->lock);
    f = out->finished && out->shut;
    pthread_mutex_unlock(&out->lock);
    return f;
}

uint64_t wd_out_waited_ns(wd_out_t *out, uint64_t now)
{
    uint64_t w;

    pthread_mutex_lock(&out->lock);
    w = out->waited_ns;
    if (out->wait_since_ns != 0 && now > out->wait_since_ns)
        w += now - out->wait_since_ns;
    pthread_mutex_unlock(&out->lock);
    return w;
}

int wd_out_finished_or_wait(wd_out_t *out)
{
    int f;

    pthread_mutex_lock(&out->lock);
    f = out->finished;
    if (!f)
        out->loop_waits = 1;
    pthread_mutex_unlock(&out->lock);
    return f;
}

void wd_out_abort(wd_out_t *out)
{
    wd_out_abort_seen(out, NULL);
}

void wd_out_abort_seen(wd_out_t *out, wd_out_seen_t *seen)
{
    pthread_mutex_lock(&out->lock);
    if (seen != NULL) {
        seen->sent = out->sent;
        seen->finished_ns = out->finished_ns;
        seen->drained = out->pending == 0;
    }
    out->aborted = 1;
    /* The producer may be writing from the segments right now (the loop never is when it calls
     * this): then it drops them itself when its write returns. */
    if (!out->sending)
        drop_all(out);
    pthread_cond_broadcast(&out->drained);
    pthread_mutex_unlock(&out->lock);
}

/* Lock held: the head segment is fully sent. */
static void pop_head(wd_out_t *out)
{
    wd_out_seg_t *s = out->head;

    out->head = s->next;
    if (out->head == NULL)
        out->tail = NULL;
    /* The next piece of the same object holds its budget from now on. */
    if (s->kind == SEG_LENT && s->next && s->next->kind == SEG_LENT &&
        s->next->lend.obj == s->lend.obj && s->next->charged == 0) {
        s->next->charged = s->charged;
        s->charged = 0;
    }
    seg_free(out, s);
}

/* Lock held: a producer waiting for room gets it once pending is below the spill limit, or for
 * its pending bytes to be sent, once they are. */
static void wake_producer(wd_out_t *out)
{
    if ((out->producer_waiting == WAIT_ROOM && out->pending < out->spill_limit) ||
        (out->producer_waiting == WAIT_EMPTY && out->pending == 0)) {
        out->producer_waiting = 0;
        pthread_cond_broadcast(&out->drained);
    }
}

/* See out_int.h. */
void wd__out_consume(wd_out_t *out, size_t n)
{
    out->sent += n;
    out->pending -= n;
    while (n > 0 && out->head) {
        wd_out_seg_t *s = out->head;
        size_t k = s->len - s->pos < n ? s->len - s->pos : n;

        s->pos += k;
        if (s->kind == SEG_MEM) { /* a lent one gives its budget back when freed */
            out->mem_bytes -= k;
            wd__out_budget_give(out, k);
        }
        n -= k;
        if (s->pos == s->len)
            pop_head(out); /* the producer appends to a fresh segment from now on */
    }
    wake_producer(out);
}

/* See out_int.h. The head is still the file segment the caller sent from: with a file pending the
 * loop owns the response (the producer no longer writes itself, see release_hold), and only the
 * consumer takes segments off the list. */
void wd__out_consume_file(wd_out_t *out, uint64_t n)
{
    wd_out_seg_t *s = out->head;

    s->off += n;
    s->left -= n;
    out->sent += n;
    out->pending -= n;
    if (s->left == 0)
        pop_head(out);
    wake_producer(out);
}

/* See out_int.h. */
int wd__out_mem_iov(wd_out_t *out, struct iovec *iov, int max)
{
    int cnt = 0;

    for (wd_out_seg_t *s = out->head; s && s->kind != SEG_FILE && cnt < max; s = s->next) {
        if (s->len > s->pos) {
            iov[cnt].iov_base = (char *)seg_bytes(s) + s->pos;
            iov[cnt].iov_len = s->len - s->pos;
            cnt++;
        }
    }
    return cnt;
}
