/* The master: a worker's error log and access log lines, which come through pipes (log.h).
 *
 * A worker held the log files themselves, the error log that the master and every group write
 * and the access log that several groups may share: an app running as its group's user could
 * take O_APPEND off its fd (fcntl F_SETFL), then truncate or overwrite the other groups' lines
 * and the master's (helper-79). It now holds the write end of a pipe for each log, and the master
 * appends what comes there to the file: every log file is written by the master alone.
 *
 * A worker writes whole lines, each in one write(2) (an error log line is at most PIPE_BUF, so
 * it is never cut; the access log's lines come from its loop thread alone); the master writes
 * what it read up to the last newline in one write(2), so a line is never cut by another's. One
 * read takes up to LOGPIPE_READ bytes: under load, one read and one write carry many lines (the
 * measurement is in the commit that made this). What follows the last newline waits for the
 * rest of its line. At a worker's exit the master reads what is left (wd__m_logpipe_detach), so
 * its last lines come before the line that says it died; a child the app started that still
 * holds the pipe then writes into nothing (EPIPE). */
#include "master_int.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define LOGPIPE_READ (64 * 1024)
/* After a read that found little in it, a pipe of WD_LOG_PIPE_SIZE is read again this long after
 * at the earliest: the lines that come meanwhile wait in it and go in one read and one write,
 * where each worker's turn woke the master (helper-80's measurement, in the commit). "Little" is
 * under a quarter of a read (LOGPIPE_BUSY). A smaller pipe, where F_SETPIPE_SZ was refused (64
 * KiB, or 8 KiB for a user past fs.pipe-user-pages-soft), is read as soon as lines come: the
 * pause after any read under 64 KiB capped a worker's access log at its pipe's size each 20 ms
 * (helper-85: 17,801 of 50,000 lines dropped under ab -c 8 with 64 KiB pipes), and even a pause
 * cut in proportion to the pipe's size (1 ms for 64 KiB) left 29 of test_logs' 3,000 pipelined
 * requests out; none are without one. */
#define LOGPIPE_PAUSE_MS 20
#define LOGPIPE_BUSY (LOGPIPE_READ / 4)
/* A line longer than this without its newline (nothing a worker writes) is cut (LOGPIPE_CUT). */
#define LOGPIPE_REST (2 * WD_LOG_LINE_MAX)
/* What ends a line the master cuts: one longer than LOGPIPE_REST, or one without its newline at
 * the pipe's end (an app that wrote to the pipe itself, or a worker killed in the middle of a
 * partial write of its access lines). The bytes went as they were, and the next line in the
 * file, another group's or the master's own, went on the end of them (helper-85). The newline
 * keeps the file's lines apart; the mark says that this one is not whole, where dropping it
 * would hide what the app wrote and a bare newline would make a fragment look like a line. */
#define LOGPIPE_CUT " [cut]\n"

struct wd_logpipe {
    uv_pipe_t pipe;
    wd_logpipe_t *next, *prev; /* every reader (readers) */
    wd_logpipe_t **ref;        /* its worker's pointer to it, NULLed at close */
    wd_logdest_t *dest;        /* the access log, or NULL: the master's error log */
    int closing;
    int paused;  /* not read until the pause timer */
    size_t size; /* of the pipe, as the kernel made it (F_GETPIPE_SZ) */
    size_t len;  /* bytes in rest */
    char *rest;  /* the start of a line not whole yet */
};

static wd_logpipe_t *readers;
static uv_timer_t pause_timer; /* reads the paused pipes again */
static int pause_init;
/* One read at a time (libuv calls alloc_cb, reads, then read_cb), so one buffer serves every
 * reader: what rest holds first, then what is read. */
static char rbuf[LOGPIPE_REST + LOGPIPE_READ];

static void pause_cb(uv_timer_t *t);

static void pause_arm(void)
{
    if (pause_init && !uv_is_active((uv_handle_t *)&pause_timer))
        uv_timer_start(&pause_timer, pause_cb, LOGPIPE_PAUSE_MS, 0);
}

/* rbuf holds o->rest and n more bytes: the whole lines go, the rest waits (at eof, or past
 * LOGPIPE_REST, it goes cut: never an open line in a file that others write). */
static void take(wd_logpipe_t *o, size_t n, int eof)
{
    size_t total = o->len + n, whole;
    const char *nl = memrchr(rbuf, '\n', total);
    int cut;

    whole = nl != NULL ? (size_t)(nl - rbuf) + 1 : 0;
    cut = total > whole && (eof || total - whole > LOGPIPE_REST);
    if (cut)
        whole = total;
    (void)wd__m_logs_write(o->dest, rbuf, whole); /* what waits goes once it has room */
    if (cut)
        (void)wd__m_logs_write(o->dest, LOGPIPE_CUT, sizeof LOGPIPE_CUT - 1);
    o->len = total - whole;
    if (o->len > 0) {
        if (o->rest == NULL)
            o->rest = xmalloc(LOGPIPE_REST);
        memcpy(o->rest, rbuf + whole, o->len);
    }
}

static void close_cb(uv_handle_t *h)
{
    wd_logpipe_t *o = h->data;

    free(o->rest);
    free(o);
}

void wd__m_logpipe_close(wd_logpipe_t *o)
{
    if (o == NULL || o->closing)
        return;
    o->closing = 1;
    if (o->len > 0) {
        memcpy(rbuf, o->rest, o->len);
        take(o, 0, 1);
    }
    wd__m_logs_release(o->dest);
    o->dest = NULL;
    if (o->ref != NULL)
        *o->ref = NULL;
    if (o->prev != NULL)
        o->prev->next = o->next;
    else
        readers = o->next;
    if (o->next != NULL)
        o->next->prev = o->prev;
    uv_close((uv_handle_t *)&o->pipe, close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    wd_logpipe_t *o = h->data;

    (void)hint;
    if (o->len > 0)
        memcpy(rbuf, o->rest, o->len);
    buf->base = rbuf + o->len;
    buf->len = LOGPIPE_READ;
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void pause_cb(uv_timer_t *t)
{
    (void)t;
    for (wd_logpipe_t *o = readers; o != NULL; o = o->next) {
        if (o->paused && !o->closing) {
            o->paused = 0;
            (void)uv_read_start((uv_stream_t *)&o->pipe, alloc_cb, read_cb);
        }
    }
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    wd_logpipe_t *o = st->data;

    (void)buf;
    if (n > 0) {
        take(o, (size_t)n, 0);
        if ((size_t)n < LOGPIPE_BUSY && o->size >= WD_LOG_PIPE_SIZE && o->dest != NULL) {
            /* little came: let the next access lines gather (LOGPIPE_PAUSE_MS). Not an error
             * log's: its lines are few (rate-limited where a client sets them off), and one
             * that came 20 ms after the answer it tells of was not in the log when a test read
             * it (test_logs' test_bad_input_flood_is_not_a_log_flood, in a sanitizer run) */
            uv_read_stop(st);
            o->paused = 1;
            pause_arm();
        }
    } else if (n < 0) {
        wd__m_logpipe_close(o); /* every writer is gone */
    }
}

/* Room for bursts while the master writes: WD_LOG_PIPE_SIZE, or what the kernel gives. It may
 * refuse (fs.pipe-max-size, 1 MiB by default; a user past fs.pipe-user-pages-soft has pipes of
 * 8 KiB, 2 pages), which is said once. The size sets whether the master pauses; the worker asks
 * it of its end when it says what it dropped. WSGID_LOG_PIPE_SIZE in the master's environment
 * asks another size (for a test: a small pipe). */
static size_t pipe_size(int fd)
{
    static int warned;
    const char *env = getenv("WSGID_LOG_PIPE_SIZE");
    int want = env != NULL && atoi(env) > 0 ? atoi(env) : WD_LOG_PIPE_SIZE, got;

    (void)fcntl(fd, F_SETPIPE_SZ, want);
    got = fcntl(fd, F_GETPIPE_SZ);
    if (got <= 0)
        got = 64 * 1024; /* Linux's default */
    if (got < WD_LOG_PIPE_SIZE && !warned) {
        warned = 1;
        wd_log_warn("the pipes that bring the workers' log lines are %d KiB, not the %d KiB "
                    "asked (fs.pipe-max-size, or fs.pipe-user-pages-soft for wsgid's user): the "
                    "master reads them as lines come, and a worker's lines that come faster than "
                    "it writes them are dropped sooner; raise the sysctl to give them room",
                    got / 1024, WD_LOG_PIPE_SIZE / 1024);
    }
    return (size_t)got;
}

int wd__m_logpipe_open(wd_master_t *m, wd_logdest_t *dest, wd_logpipe_t **out)
{
    wd_logpipe_t *o;
    int fds[2], rc;
    size_t size;

    *out = NULL;
    if (!pause_init) {
        uv_timer_init(&m->loop, &pause_timer);
        uv_unref((uv_handle_t *)&pause_timer);
        pause_init = 1;
    }
    /* Both ends non-blocking: the worker's, so that it never waits for the master (log.h). */
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    size = pipe_size(fds[1]);
    o = xcalloc(1, sizeof *o);
    o->size = size;
    o->pipe.data = o;
    rc = uv_pipe_init(&m->loop, &o->pipe, 0);
    if (rc < 0) {
        close(fds[0]);
        close(fds[1]);
        free(o);
        return rc;
    }
    o->dest = dest;
    wd__m_logs_hold(dest); /* released at close */
    o->next = readers;
    if (o->next != NULL)
        o->next->prev = o;
    readers = o;
    rc = wd__m_pipe_read_start(&o->pipe, fds[0], alloc_cb, read_cb);
    if (rc < 0) {
        close(fds[1]);
        wd__m_logpipe_close(o); /* a handle is freed in its close callback (style.md) */
        return rc;
    }
    *out = o;
    return fds[1];
}

void wd__m_logpipe_attach(wd_logpipe_t *o, wd_logpipe_t **ref)
{
    o->ref = ref;
    *ref = o;
}

/* What the pipe holds now, no more: at its worker's death (a child of its app still writing must
 * not hold the master here), and before what comes on its stderr (master_output.c). */
void wd__m_logpipe_drain(wd_logpipe_t *o)
{
    uv_os_fd_t fd;
    int avail = 0;
    size_t left;
    ssize_t n;

    if (o->closing || uv_fileno((uv_handle_t *)&o->pipe, &fd) < 0 ||
        ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
        return;
    left = (size_t)avail;
    while (left > 0) {
        if (o->len > 0)
            memcpy(rbuf, o->rest, o->len);
        n = read(fd, rbuf + o->len, left < LOGPIPE_READ ? left : LOGPIPE_READ);
        if (n <= 0)
            break;
        left -= (size_t)n;
        take(o, (size_t)n, 0);
    }
}

void wd__m_logpipe_detach(wd_logpipe_t **ref)
{
    wd_logpipe_t *o = *ref;

    if (o == NULL)
        return;
    wd__m_logpipe_drain(o);
    wd__m_logpipe_close(o);
}

void wd__m_logpipe_close_all(void)
{
    while (readers != NULL) {
        wd__m_logpipe_drain(readers);
        wd__m_logpipe_close(readers);
    }
    if (pause_init) {
        uv_close((uv_handle_t *)&pause_timer, NULL);
        pause_init = 0;
    }
}
