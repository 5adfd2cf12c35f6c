/* A connection's response buffer, the loop's side: sending what is pending to the socket
 * (wd_out_send), memory and lent bytes with writev and file ranges with sendfile, and raising a
 * full unix socket's send buffer for a large answer (WD_OUT_SNDBUF). See out.h; the buffer
 * itself, and the producer's own write, are in out.c. */
#include "out.h"
#include "out_int.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define SENDFILE_MAX ((size_t)1 << 30)

/* Whether a sendfile error is the socket's (the client, or a full buffer), not the file's. */
static int socket_errno(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EPIPE || err == ECONNRESET ||
           err == ENOTCONN || err == ETIMEDOUT || err == EINTR || err == ECONNABORTED ||
           err == EHOSTUNREACH || err == ENETUNREACH || err == ENETDOWN || err == ENOBUFS ||
           err == ENOMEM;
}

/* Sends file bytes with sendfile, or read + write when the file does not support it; *tried: how
 * many the socket was offered (fewer sent: it is full). A failure that is the file's (it cannot be
 * read, or it ends before the range: EIO) is set in *file_err too. */
static ssize_t send_file_range(int sock, int fd, uint64_t off, size_t n, size_t *tried,
                               int *file_err)
{
    off_t o = (off_t)off;
    ssize_t k = sendfile(sock, fd, &o, n);
    char buf[65536];

    *tried = n;
    if (k == 0 && n > 0)
        *file_err = EIO;
    if (k < 0 && !socket_errno(errno) && errno != EINVAL && errno != ENOSYS)
        *file_err = errno;
    if (k >= 0 || (errno != EINVAL && errno != ENOSYS))
        return k;
    k = pread(fd, buf, n < sizeof buf ? n : sizeof buf, (off_t)off);
    if (k <= 0) {
        *file_err = k < 0 ? errno : EIO;
        errno = *file_err;
        return -1;
    }
    *tried = (size_t)k;
    return write(sock, buf, (size_t)k);
}

/* The most SO_SNDBUF gives (twice net.core.wmem_max), or 0 when the host does not say. */
static int sndbuf_most(void)
{
    static _Atomic int most = -1;
    int v = atomic_load_explicit(&most, memory_order_relaxed);
    FILE *f;

    if (v >= 0)
        return v;
    v = 0;
    f = fopen("/proc/sys/net/core/wmem_max", "re");
    if (f != NULL) {
        if (fscanf(f, "%d", &v) != 1 || v <= 0 || v > INT_MAX / 2)
            v = 0;
        fclose(f);
    }
    v = 2 * (v < WD_OUT_SNDBUF ? v : WD_OUT_SNDBUF);
    atomic_store_explicit(&most, v, memory_order_relaxed);
    return v;
}

static int64_t pending_now(wd_out_t *out)
{
    uint64_t p;

    pthread_mutex_lock(&out->lock);
    p = out->pending;
    pthread_mutex_unlock(&out->lock);
    return (int64_t)p;
}

/* A full unix socket (see WD_OUT_SNDBUF): raised once a response, when more than the raised
 * buffer holds is still to send and the worker's budget has room for the growth. */
static void sndbuf_raise(wd_out_t *out, int sock)
{
    int want = WD_OUT_SNDBUF, now = 0, most = sndbuf_most();
    socklen_t len = sizeof out->sndbuf_base;

    if (out->budget == NULL ||
        (out->sndbuf_base == 0 &&
         (getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &out->sndbuf_base, &len) < 0 ||
          out->sndbuf_base <= 0 || out->sndbuf_base >= most))) {
        out->sndbuf_done = 1; /* no budget to take it from, or it cannot grow here */
        return;
    }
    /* A small answer, or a stream that has more to come: perhaps at the next full socket. */
    if (pending_now(out) <= (int64_t)most ||
        !wd__out_budget_try(out, (uint64_t)(most - out->sndbuf_base), 0))
        return;
    out->sndbuf_done = 1;
    len = sizeof now;
    if (setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &want, sizeof want) < 0 ||
        getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &now, &len) < 0)
        now = most; /* what it holds is not known: all of it is charged */
    out->sndbuf_up = now > out->sndbuf_base ? now : 0;
    out->sndbuf_charged = out->sndbuf_up ? (uint64_t)(now - out->sndbuf_base) : 0;
    wd__out_budget_give(out, (uint64_t)(most - out->sndbuf_base) - out->sndbuf_charged);
}

/* Lock held: what the socket may be offered now. A raised buffer goes back to the socket's own
 * size once the rest of the response fits in that; until then the socket is offered no more than
 * leaves such a rest, which goes out once the buffer is back: so the kernel holds no more of the
 * response at its end than it would have without the raise (the budget keeps the growth until
 * then; the socket takes the rest only once what it holds is below its own size again: one wake-up
 * more a response). A reader that drains the socket while it is written lets one write take more
 * than the buffer holds: offered everything, a write took the whole rest with the buffer still
 * raised (test_send_buffer.py failed under load). Only the producer adds to pending meanwhile. */
static uint64_t sndbuf_offer(wd_out_t *out, int sock)
{
    int half = out->sndbuf_base / 2; /* the kernel doubles what it is given */

    if (out->sndbuf_up == 0)
        return UINT64_MAX;
    if (out->pending > (uint64_t)out->sndbuf_base)
        return out->pending - (uint64_t)out->sndbuf_base;
    (void)setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &half, sizeof half);
    out->sndbuf_up = 0;
    return UINT64_MAX;
}

static size_t iov_bytes(const struct iovec *iov, int cnt)
{
    size_t n = 0;

    while (cnt-- > 0)
        n += iov[cnt].iov_len;
    return n;
}

/* Cuts iov down to at most cap bytes; returns the new count. */
static int iov_cap(struct iovec *iov, int cnt, uint64_t cap)
{
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len >= cap) {
            iov[i].iov_len = (size_t)cap;
            return i + 1;
        }
        cap -= iov[i].iov_len;
    }
    return cnt;
}

int wd_out_send(wd_out_t *out, int sock, int *want_write)
{
    *want_write = 0;
    for (;;) {
        struct iovec iov[SEND_IOV_MAX];
        wd_out_seg_t *s;
        ssize_t k;
        int cnt = 0, err;
        uint64_t cap;

        pthread_mutex_lock(&out->lock);
        cap = sndbuf_offer(out, sock);
        s = out->head;
        if (s == NULL || out->sending) {
            /* Nothing, or the producer is writing: it wakes us for what it leaves. */
            int done = s == NULL && out->finished;

            pthread_mutex_unlock(&out->lock);
            return done ? 1 : 0;
        }
        if (s->kind == SEG_FILE) {
            int fd = s->fd;
            uint64_t off = s->off;
            size_t n = s->left < SENDFILE_MAX ? (size_t)s->left : SENDFILE_MAX;

            if (n > cap)
                n = (size_t)cap;

            out->sending = 1;
            pthread_mutex_unlock(&out->lock);
            k = send_file_range(sock, fd, off, n, &n, &out->file_error);
            /* A file shorter than promised: the response cannot be completed. */
            err = k < 0 ? errno : EIO;
            pthread_mutex_lock(&out->lock);
            out->sending = 0;
            pthread_mutex_unlock(&out->lock);
            if (k <= 0) {
                errno = err;
                goto failed;
            }
            pthread_mutex_lock(&out->lock);
            wd__out_consume_file(out, (uint64_t)k);
            pthread_mutex_unlock(&out->lock);
            if ((size_t)k < n)
                goto full;
            continue;
        }
        cnt = iov_cap(iov, wd__out_mem_iov(out, iov, SEND_IOV_MAX), cap);
        if (cnt == 0) {
            pthread_mutex_unlock(&out->lock);
            return 0;
        }
        out->sending = 1;
        pthread_mutex_unlock(&out->lock);
        do
            k = writev(sock, iov, cnt);
        while (k < 0 && errno == EINTR);
        err = k < 0 ? errno : 0;
        pthread_mutex_lock(&out->lock);
        out->sending = 0;
        if (k < 0) {
            pthread_mutex_unlock(&out->lock);
            errno = err;
            goto failed;
        }
        wd__out_consume(out, (size_t)k);
        pthread_mutex_unlock(&out->lock);
        if ((size_t)k < iov_bytes(iov, cnt))
            goto full;
    }

/* The socket took less than it was given: it is full. Trying again would only be told EAGAIN
 * (one syscall more per POLLOUT: a 16 MiB answer through nginx woke the loop about a hundred
 * times), and the level-triggered poll reports it writable again at once if it is. A unix
 * socket with much more to come has its buffer raised first (WD_OUT_SNDBUF). */
full:
    if (out->sndbuf_raise && !out->sndbuf_done)
        sndbuf_raise(out, sock);
    *want_write = 1;
    return 0;

failed:
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        goto full; /* the producer's own write filled it, or the reader took nothing since */
    {
        int err = errno;

        wd_out_abort(out);
        return -err;
    }
}
