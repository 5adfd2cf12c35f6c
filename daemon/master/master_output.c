/* What a worker writes to its stdout and stderr itself: a C library's messages, the dump of a
 * fatal error ("Fatal Python error: Segmentation fault" and its traceback), a subprocess the app
 * started with the worker's descriptors. Each of the worker's fds 1 and 2 is a pipe whose read end
 * the master keeps; each line read there becomes a line of the error log that names the worker:
 *
 *     [warn] master: group site worker 1 (pid 4242) stderr: Fatal Python error: Segmentation fault
 *
 * stderr's at level warn, stdout's at info, as the app's sys.stderr and sys.stdout are
 * (python_glue/stdio.c). Before, these bytes went to the master's own stderr as they were: no
 * group, no pid, interleaved with other workers' lines, and never into `log.file`.
 *
 * The master reads, not the worker: a worker that crashes writes its dump and dies at once, before
 * a thread of its own could read it; the master reads what is left when it reaps the worker
 * (wd__m_output_drain), so the dump comes before the line that says the worker died. A reader
 * outlives its worker until every writer is gone (a subprocess may still hold the pipe;
 * OUTPUT_ORPHANS_MAX of them), without keeping the master's loop alive (uv_unref), and is closed
 * when the master finishes. The worker's
 * own log lines do not come this way: they come through pipes of their own, whose lines the
 * master writes as they are (master_logpipe.c). */
#include "master_int.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* A longer line is logged in pieces of this size, as stdio.c cuts the app's. */
#define OUTPUT_PIECE 3800
/* Lines a reader logs a second at most; the rest are counted, and said in the next line that
 * goes. A fatal error's dump of 64 threads fits; a C library's warning for every request of a
 * flood does not fill the log (design §8; helper-61). */
#define OUTPUT_LINES_PER_S 1000
/* What a drain reads at most, once its worker is dead: a child that holds the pipe and writes
 * on is read by the loop, never in one go that would hold the master (helper-61). */
#define OUTPUT_DRAIN_MAX (1u << 20)
/* Readers left to children of dead workers at most; past it, the oldest is closed. */
#define OUTPUT_ORPHANS_MAX 64
/* The last lines the log's level left out (stderr's at level error), said at error if the worker
 * dies by a signal or a failure: a fatal error's dump (a header, a line a thread's frame, up to
 * 100 frames a thread) ends in them. Each kept to OUTPUT_HELD_LINE bytes. */
#define OUTPUT_HELD 64
#define OUTPUT_HELD_LINE 240

struct wd_output {
    uv_pipe_t pipe;
    wd_master_t *m;
    wd_output_t *next, *prev; /* the master's list (m->outputs) */
    wd_output_t **ref;        /* its worker's pointer to it (wd_proc_t.out), NULLed at close */
    wd_logpipe_t **log;       /* its worker's error log pipe (wd_proc_t.logs[0]), or NULL */
    const char *stream;       /* "stdout", "stderr" */
    wd_log_level_t level;
    int closing;
    int eof;                     /* every writer is gone; closed at its worker's detach */
    uint64_t second;             /* the second lines_in_second counts (uv_now / 1000) */
    unsigned lines_in_second;    /* ... */
    unsigned long long left_out; /* lines not logged since the last that was */
    char who[128];               /* "group site worker 1 (pid 4242)" */
    size_t len;
    char line[OUTPUT_PIECE];
    char (*held)[OUTPUT_HELD_LINE]; /* a ring of OUTPUT_HELD, allocated at the first */
    unsigned n_held;                /* lines put in it, the oldest overwritten */
};

/* A line the log's level leaves out, kept in the ring. */
static void hold(wd_output_t *o, const char *text, size_t t)
{
    if (o->held == NULL)
        o->held = xcalloc(OUTPUT_HELD, sizeof *o->held);
    snprintf(o->held[o->n_held++ % OUTPUT_HELD], OUTPUT_HELD_LINE, "%.*s", (int)t, text);
}

/* The worker died: the lines held back, the oldest first, at error. */
static void say_held(wd_output_t *o)
{
    unsigned first = o->n_held > OUTPUT_HELD ? o->n_held - OUTPUT_HELD : 0;

    if (o->n_held == 0)
        return;
    if (first > 0)
        wd_log_error("%s %s: the last %u lines it wrote, left out at this log level until its "
                     "death (%u before them are not kept):",
                     o->who, o->stream, o->n_held - first, first);
    else
        wd_log_error("%s %s: the %u lines it wrote, left out at this log level until its death:",
                     o->who, o->stream, o->n_held);
    for (unsigned i = first; i < o->n_held; i++)
        wd_log_error("%s %s: %s", o->who, o->stream, o->held[i % OUTPUT_HELD]);
    o->n_held = 0;
}

static void say(wd_output_t *o, const char *p, size_t n)
{
    uint64_t now = uv_now(&o->m->loop) / 1000;
    char text[OUTPUT_PIECE + 64];
    size_t t = 0;

    if (n > 0 && p[n - 1] == '\r')
        n--; /* a CR LF line end */
    if (n == 0)
        return; /* an empty line (a dump's separators) says nothing */
    /* Control characters as \xHH, as in the access log: a CR must not rewrite a terminal's line. */
    for (size_t i = 0; i < n && t + 5 < sizeof text; i++) {
        unsigned char c = (unsigned char)p[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            t += (size_t)snprintf(text + t, 5, "\\x%02X", c);
        else
            text[t++] = (char)c;
    }
    /* Held before the rate: the ring keeps the last lines written, not the last that passed it
     * (a dump of many threads goes over 1,000 lines in its second: helper-69). */
    if (!wd_log_level_enabled(o->level)) {
        hold(o, text, t);
        return;
    }
    if (now != o->second) {
        o->second = now;
        o->lines_in_second = 0;
    }
    if (o->lines_in_second++ >= OUTPUT_LINES_PER_S) {
        o->left_out++;
        return;
    }
    wd__m_logs_app(1); /* a worker's output, not the master's own line */
    if (o->left_out > 0) {
        wd_log(o->level, "%s %s: [%llu more lines of it were left out] %.*s", o->who, o->stream,
               o->left_out, (int)t, text);
        o->left_out = 0;
    } else {
        wd_log(o->level, "%s %s: %.*s", o->who, o->stream, (int)t, text);
    }
    wd__m_logs_app(0);
}

/* Logs the complete lines in o->line, and at eof (or with the buffer full) the rest as it is. */
static void take_lines(wd_output_t *o, int eof)
{
    size_t start = 0;
    char *nl;

    while ((nl = memchr(o->line + start, '\n', o->len - start)) != NULL) {
        say(o, o->line + start, (size_t)(nl - (o->line + start)));
        start = (size_t)(nl - o->line) + 1;
    }
    if (start == 0 && (o->len == sizeof o->line || (eof && o->len > 0))) {
        say(o, o->line, o->len);
        start = o->len;
    } else if (eof && start < o->len) {
        say(o, o->line + start, o->len - start);
        start = o->len;
    }
    memmove(o->line, o->line + start, o->len - start);
    o->len -= start;
}

static void close_cb(uv_handle_t *h)
{
    wd_output_t *o = h->data;

    free(o->held);
    free(o);
}

/* Reads a pipe's end rfd through p (initialised), without keeping the master's loop alive: this
 * reader's and master_logpipe.c's. rfd is closed on failure; p is the caller's to close. */
int wd__m_pipe_read_start(uv_pipe_t *p, int rfd, uv_alloc_cb on_alloc, uv_read_cb on_read)
{
    int rc;

    uv_unref((uv_handle_t *)p);
    rc = uv_pipe_open(p, rfd); /* non-blocking from here; libuv's fd then */
    if (rc < 0) {
        close(rfd);
        return rc;
    }
    return uv_read_start((uv_stream_t *)p, on_alloc, on_read);
}

static void output_close(wd_output_t *o)
{
    if (o->closing)
        return;
    o->closing = 1;
    take_lines(o, 1);
    if (o->ref != NULL)
        *o->ref = NULL;
    if (o->prev != NULL)
        o->prev->next = o->next;
    else
        o->m->outputs = o->next;
    if (o->next != NULL)
        o->next->prev = o->prev;
    uv_close((uv_handle_t *)&o->pipe, close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    wd_output_t *o = h->data;

    (void)hint;
    buf->base = o->line + o->len;
    buf->len = sizeof o->line - o->len;
}

/* The worker's error log lines it wrote before, first: "its Python stacks follow" comes before
 * the stacks (its log pipe is read at most every 20 ms, master_logpipe.c). */
static void log_first(wd_output_t *o)
{
    if (o->log != NULL && *o->log != NULL)
        wd__m_logpipe_drain(*o->log);
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    wd_output_t *o = st->data;

    (void)buf;
    if (n > 0) {
        log_first(o);
        o->len += (size_t)n;
        take_lines(o, 0);
    } else if (n < 0) {
        /* Every writer is gone. Its worker not reaped yet, the reader waits for it: whether the
         * lines held back are said depends on how it died (wd__m_output_detach). */
        if (o->ref != NULL) {
            take_lines(o, 1);
            uv_read_stop(st);
            o->eof = 1;
        } else {
            output_close(o);
        }
    }
}

int wd__m_output_open(wd_master_t *m, const char *stream, wd_log_level_t level, wd_output_t **out)
{
    wd_output_t *o;
    int fds[2], rc;

    *out = NULL;
    /* The write end stays blocking: a worker (or its subprocess) that writes faster than the
     * master reads waits, as it did on the master's stderr; it loses nothing. */
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    o = xcalloc(1, sizeof *o);
    o->m = m;
    o->stream = stream;
    o->level = level;
    o->pipe.data = o;
    snprintf(o->who, sizeof o->who, "a worker starting");
    /* Room for a dump of many threads written from a signal handler, which blocks the worker's
     * loop thread while the pipe is full (helper-61); a refusal (pipe-max-size) leaves 64 KiB. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
    rc = uv_pipe_init(&m->loop, &o->pipe, 0);
    if (rc < 0) {
        close(fds[0]);
        close(fds[1]);
        free(o);
        return rc;
    }
    o->next = m->outputs;
    if (o->next != NULL)
        o->next->prev = o;
    m->outputs = o;
    rc = wd__m_pipe_read_start(&o->pipe, fds[0], alloc_cb, read_cb);
    if (rc < 0) {
        close(fds[1]);
        output_close(o); /* a handle is freed in its close callback (style.md) */
        return rc;
    }
    *out = o;
    return fds[1];
}

void wd__m_output_attach(wd_output_t *o, wd_output_t **ref, wd_logpipe_t **log, const char *group,
                         int slot, int pid)
{
    snprintf(o->who, sizeof o->who, "group %s worker %d (pid %d)", group, slot, pid);
    o->log = log;
    o->ref = ref;
    *ref = o;
}

void wd__m_output_detach(wd_output_t **ref, int died)
{
    wd_output_t *o = *ref, *last = NULL;
    int orphans = 0;

    if (o == NULL)
        return;
    wd__m_output_drain(o);
    if (died)
        say_held(o);
    o->n_held = 0;
    *ref = NULL;
    o->ref = NULL;
    o->log = NULL;
    if (o->eof)
        output_close(o);
    /* Otherwise it reads on, for a child still writing. */
    /* Children that outlive their workers (a crash loop of an app that starts one) keep
     * readers: the oldest goes past OUTPUT_ORPHANS_MAX (the list is newest first). */
    for (wd_output_t *x = o->m->outputs; x != NULL; x = x->next) {
        if (x->ref == NULL && !x->closing) {
            orphans++;
            last = x;
        }
    }
    if (orphans > OUTPUT_ORPHANS_MAX)
        output_close(last);
}

void wd__m_output_close(wd_output_t *o)
{
    if (o != NULL)
        output_close(o);
}

/* The worker has exited: its last lines may not have been seen by the loop yet. What the pipe
 * holds now is read, no more (OUTPUT_DRAIN_MAX): a child still writing is the loop's to read. */
void wd__m_output_drain(wd_output_t *o)
{
    uv_os_fd_t fd;
    size_t left = OUTPUT_DRAIN_MAX;
    int avail = 0;
    ssize_t n;

    if (o == NULL || o->closing || uv_fileno((uv_handle_t *)&o->pipe, &fd) < 0)
        return;
    if (ioctl(fd, FIONREAD, &avail) == 0 && avail >= 0 && (size_t)avail < left)
        left = (size_t)avail;
    while (left > 0) {
        size_t room = sizeof o->line - o->len;

        n = read(fd, o->line + o->len, room < left ? room : left);
        if (n <= 0)
            break;
        o->len += (size_t)n;
        left -= (size_t)n;
        take_lines(o, 0);
    }
    take_lines(o, 1); /* a last line without its newline: its writer is dead */
}

void wd__m_output_close_all(wd_master_t *m)
{
    wd_output_t *o;

    while ((o = m->outputs) != NULL) {
        wd__m_output_drain(o);
        output_close(o); /* if the drain has not: o is freed by close_cb, after this */
    }
}
