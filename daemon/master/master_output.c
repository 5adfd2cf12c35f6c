/* What a worker writes to its stdout and stderr itself: a C library's messages, the dump of a
 * fatal error ("Fatal Python error: Segmentation fault" and its traceback), a subprocess the app
 * started with the worker's descriptors. Each of the worker's fds 1 and 2 is a pipe whose read end
 * the master keeps; each line read there becomes a line of the error log that names the worker:
 *
 *     [warn] wsgid: group site worker 1 (pid 4242) stderr: Fatal Python error: Segmentation fault
 *
 * stderr's at level warn, stdout's at info, as the app's sys.stderr and sys.stdout are
 * (python_glue/stdio.c). Before, these bytes went to the master's own stderr as they were: no
 * group, no pid, interleaved with other workers' lines, and never into `log.file`.
 *
 * The master reads, not the worker: a worker that crashes writes its dump and dies at once, before
 * a thread of its own could read it; the master reads what is left when it reaps the worker
 * (wd__m_output_drain), so the dump comes before the line that says the worker died. A reader
 * outlives its worker until every writer is gone (a subprocess may still hold the pipe), without
 * keeping the master's loop alive (uv_unref), and is closed when the master finishes. The worker's
 * own log lines do not come this way: with the log on stderr it writes them to the master's
 * stderr, which it gets as fd WD_WORKER_FD_STDERR (spawn.h). */
#include "master_int.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A longer line is logged in pieces of this size, as stdio.c cuts the app's. */
#define OUTPUT_PIECE 3800

struct wd_output {
    uv_pipe_t pipe;
    wd_master_t *m;
    wd_output_t *next, *prev; /* the master's list (m->outputs) */
    wd_output_t **ref;        /* its worker's pointer to it (wd_proc_t.out), NULLed at close */
    const char *stream;       /* "stdout", "stderr" */
    wd_log_level_t level;
    int closing;
    char who[128]; /* "group site worker 1 (pid 4242)" */
    size_t len;
    char line[OUTPUT_PIECE];
};

static void say(wd_output_t *o, const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;   /* a CR LF line end */
    if (n > 0) /* an empty line (a dump's separators) says nothing */
        wd_log(o->level, "%s %s: %.*s", o->who, o->stream, (int)n, p);
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
    free(h->data);
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

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    wd_output_t *o = st->data;

    (void)buf;
    if (n > 0) {
        o->len += (size_t)n;
        take_lines(o, 0);
    } else if (n < 0) {
        output_close(o); /* every writer is gone */
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
    rc = uv_pipe_init(&m->loop, &o->pipe, 0);
    if (rc == 0)
        rc = uv_pipe_open(&o->pipe, fds[0]); /* non-blocking from here */
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&o->pipe, alloc_cb, read_cb);
    if (rc < 0) {
        close(fds[0]);
        close(fds[1]);
        free(o);
        return rc;
    }
    uv_unref((uv_handle_t *)&o->pipe);
    o->next = m->outputs;
    if (o->next != NULL)
        o->next->prev = o;
    m->outputs = o;
    *out = o;
    return fds[1];
}

void wd__m_output_attach(wd_output_t *o, wd_output_t **ref, const char *group, int slot, int pid)
{
    snprintf(o->who, sizeof o->who, "group %s worker %d (pid %d)", group, slot, pid);
    o->ref = ref;
    *ref = o;
}

void wd__m_output_detach(wd_output_t **ref)
{
    wd_output_t *o = *ref;

    if (o == NULL)
        return;
    wd__m_output_drain(o);
    if (*ref != NULL) /* the drain has not closed it: it reads on, for a child still writing */
        o->ref = NULL;
    *ref = NULL;
}

/* The worker has exited: its last lines may not have been seen by the loop yet. */
void wd__m_output_drain(wd_output_t *o)
{
    uv_os_fd_t fd;
    ssize_t n;

    if (o == NULL || o->closing || uv_fileno((uv_handle_t *)&o->pipe, &fd) < 0)
        return;
    for (;;) {
        n = read(fd, o->line + o->len, sizeof o->line - o->len);
        if (n <= 0)
            break;
        o->len += (size_t)n;
        take_lines(o, 0);
    }
    if (n == 0) {
        output_close(o);
        return;
    }
    take_lines(o, 1); /* a last line without its newline: the writer is dead */
}

void wd__m_output_close_all(wd_master_t *m)
{
    wd_output_t *o;

    while ((o = m->outputs) != NULL) {
        wd__m_output_drain(o);
        output_close(o); /* if the drain has not: o is freed by close_cb, after this */
    }
}
