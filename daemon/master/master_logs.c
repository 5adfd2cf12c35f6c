/* The master: the workers' log files. See master_int.h.
 *
 * The master opens every log file itself (as root when wsgid runs as root: log.c's
 * wd_log_file_open follows no symbolic link there) and writes to it alone: each worker gets a
 * pipe for its error log and one for its access log, in a "logs" line on the worker's socket
 * before it starts (spawn.h), and the master appends what comes there to the files
 * (master_logpipe.c). At a reopen-logs the master reopens the files in place; the workers'
 * pipes stay. A worker holding the files could take O_APPEND off and truncate the lines of the
 * other groups and of the master (helper-79). A worker never opens a log by name. When it did, as
 * its group's user, the master had to give that user the files (fchown), and so gave it any
 * root-owned file that the group's app put a symbolic link to at the log's path, the master's
 * own error log, and the access log the other groups share, which their users then could not
 * open (helper-72). Now every log file stays root's. */
#include "master_int.h"
#include "alloc.h"
#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An access log file, opened once however many workers write it, and reopened in place (dup3
 * onto the same fd number). Its fd is non-blocking: a FIFO whose reader stops (a log shipper)
 * must not hold the master up, which serves every group; what it does not take waits here, in
 * order (whole lines stay whole), WD_LOGS_HELD_MAX at most, and is written again at the readers'
 * next turn (wd__m_logs_retry); past that, lines are dropped, counted, and said. */
#define WD_LOGS_HELD_MAX (1 << 20)

struct wd_logdest {
    struct wd_logdest *next;
    char *path;     /* NULL: the master's stderr ("-"), written as the master's own lines are */
    char group[64]; /* the first group that writes it, for the messages */
    int fd;         /* -1 until it could be opened: the lines go to stderr meanwhile */
    int said;       /* its error was reported */
    unsigned users; /* the access log pipes of the workers that write it (master_logpipe.c) */
    char *held;
    size_t held_len;
    unsigned long long dropped; /* lines past WD_LOGS_HELD_MAX, since the last said */
};

static wd_logdest_t *access_files;
static int held_flush(wd_logdest_t *f);
static wd_logdest_t stderr_dest = {.fd = 2};

static wd_logdest_t *access_get(const char *path, const char *group)
{
    wd_logdest_t *f;

    for (f = access_files; f != NULL; f = f->next)
        if (strcmp(f->path, path) == 0)
            return f;
    f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    snprintf(f->group, sizeof f->group, "%s", group);
    f->fd = -1;
    f->next = access_files;
    access_files = f;
    return f;
}

/* An access log is kept while a worker writes it, and no longer: a reload that names another
 * file, once the old workers (still draining) have exited, leaves the old one, which the master
 * held and reopened at every reopen-logs for ever, an error for good once its path could not be
 * opened (helper-85). Held lines that it will not take now are dropped with it. */
void wd__m_logs_hold(wd_logdest_t *f)
{
    if (f != NULL && f != &stderr_dest)
        f->users++;
}

static void dest_free_unused(wd_logdest_t *f)
{
    wd_logdest_t **p;

    if (f == NULL || f == &stderr_dest || f->users > 0)
        return;
    for (p = &access_files; *p != NULL && *p != f; p = &(*p)->next)
        ;
    if (*p != NULL)
        *p = f->next;
    if (f->fd >= 0) {
        (void)held_flush(f);
        close(f->fd);
    }
    free(f->held);
    free(f->path);
    free(f);
}

void wd__m_logs_release(wd_logdest_t *f)
{
    if (f == NULL || f == &stderr_dest || f->users == 0)
        return;
    f->users--;
    dest_free_unused(f);
}

/* Opens f, or reopens it in place: 0 or -errno (it stays where it was). */
static int access_open(wd_logdest_t *f)
{
    int fd = wd_log_file_open(f->path), fl;

    if (fd < 0)
        return fd;
    fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (f->fd < 0) {
        f->fd = fd;
        return 0;
    }
    if (dup3(fd, f->fd, O_CLOEXEC) < 0) {
        int e = -errno;

        close(fd);
        return e;
    }
    close(fd);
    return 0;
}

/* Where a worker's access log lines go: NULL for "off". */
static wd_logdest_t *access_dest(const wd_config_t *conf, const wd_group_conf_t *g, int slot)
{
    const char *path = g->access_log ? g->access_log : conf->access_log;
    wd_logdest_t *f;
    int rc;

    if (path != NULL && strcmp(path, "off") == 0)
        return NULL;
    if (path == NULL || strcmp(path, "-") == 0)
        return &stderr_dest;
    f = access_get(path, g->name);
    if (f->fd < 0 && (rc = access_open(f)) < 0 && !f->said) {
        f->said = 1;
        wd_log_error("group %s worker %d: cannot open the access log %s: %s; its lines go to "
                     "stderr until a reopen-logs can open it",
                     g->name, slot, path, wd_log_file_why(rc));
    }
    return f;
}

/* Writes p, n: 0 done, -1 what is left (*off written) waits: EAGAIN, a FIFO that is full. */
static int write_some(int fd, const char *p, size_t n, size_t *off)
{
    ssize_t w;

    *off = 0;
    while (*off < n) {
        w = write(fd, p + *off, n - *off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return -1;
        if (w <= 0)
            return 0; /* nowhere left to say it, as for the master's own lines */
        *off += (size_t)w;
    }
    return 0;
}

static void write_all(int fd, const char *p, size_t n)
{
    size_t off;

    (void)write_some(fd, p, n, &off); /* a blocking fd: all, or an error */
}

/* What f holds goes first: 0 once it has all gone. */
static int held_flush(wd_logdest_t *f)
{
    size_t off;
    int rc;

    if (f->held_len == 0)
        return 0;
    rc = write_some(f->fd >= 0 ? f->fd : 2, f->held, f->held_len, &off);
    memmove(f->held, f->held + off, f->held_len - off);
    f->held_len -= off;
    if (rc == 0 && f->dropped > 0) {
        wd_log_warn("the access log %s (group %s) took no lines for a while (a FIFO that nobody "
                    "read?): %llu lines were dropped",
                    f->path, f->group, f->dropped);
        f->dropped = 0;
    }
    return rc;
}

/* Keeps what f did not take: the rest of a line cut, then whole lines within the bound. */
static void held_keep(wd_logdest_t *f, const char *p, size_t n)
{
    const char *nl;
    size_t first;

    if (f->held == NULL)
        f->held = xmalloc(WD_LOGS_HELD_MAX + 2 * WD_LOG_LINE_MAX);
    while (n > 0) {
        nl = memchr(p, '\n', n);
        first = nl != NULL ? (size_t)(nl - p) + 1 : n;
        if (f->held_len + first > WD_LOGS_HELD_MAX &&
            (f->held_len == 0 || f->held[f->held_len - 1] == '\n')) {
            f->dropped++;
        } else if (f->held_len + first <= WD_LOGS_HELD_MAX + 2 * WD_LOG_LINE_MAX) {
            memcpy(f->held + f->held_len, p, first);
            f->held_len += first;
        }
        p += first;
        n -= first;
    }
}

int wd__m_logs_write(wd_logdest_t *f, const char *p, size_t n)
{
    size_t off = 0;

    if (f == NULL) {
        write_all(wd_log_fd(), p, n);
        return 0;
    }
    if (f == &stderr_dest || f->fd < 0) {
        write_all(2, p, n);
        return 0;
    }
    if (held_flush(f) == 0 && write_some(f->fd, p, n, &off) == 0)
        return 0;
    if (f->held_len == 0) {
        p += off;
        n -= off;
    }
    held_keep(f, p, n);
    return -1;
}

int wd__m_logs_retry(void)
{
    int left = 0;

    for (wd_logdest_t *f = access_files; f != NULL; f = f->next)
        if (held_flush(f) < 0)
            left = 1;
    return left;
}

int wd__m_logs_give(wd_master_t *m, int sock, const wd_config_t *conf, const wd_group_conf_t *g,
                    int slot, wd_logpipe_t *readers[2])
{
    wd_logdest_t *access = access_dest(conf, g, slot);
    int off[2] = {conf->log_file != NULL && strcmp(conf->log_file, "off") == 0, access == NULL};
    int fds[2] = {-1, -1}, n_fds = 0, rc = 0, i;
    char line[32];

    readers[0] = readers[1] = NULL;
    for (i = 0; i < 2 && rc >= 0; i++)
        if (!off[i] && (rc = wd__m_logpipe_open(m, i == 0 ? NULL : access, &readers[i])) >= 0)
            fds[n_fds++] = rc;
    snprintf(line, sizeof line, "logs %s %s\n", off[0] ? "off" : "fd", off[1] ? "off" : "fd");
    /* The socket is new and empty: the line goes whole, and is there when the worker starts. */
    if (rc >= 0)
        rc = wd__m_send_fds(sock, line, strlen(line), fds, n_fds, 0);
    for (i = 0; i < n_fds; i++)
        close(fds[i]);
    if (rc < 0) {
        for (i = 0; i < 2; i++) {
            wd__m_logpipe_close(readers[i]);
            readers[i] = NULL;
        }
    }
    dest_free_unused(access); /* no pipe took it */
    return rc < 0 ? rc : 0;
}

int wd__m_reopen_logs(wd_master_t *m, char *err, size_t cap)
{
    size_t used = 0;
    wd_logdest_t *f;
    int rc = wd_log_open(m->gen->conf->log_file, "off");

    err[0] = '\0';
    if (rc == 0)
        wd_log_info("log files reopened");
    else
        used = (size_t)snprintf(err, cap, "cannot open the error log %s: %s",
                                m->gen->conf->log_file, wd_log_file_why(rc));
    for (f = access_files; f != NULL; f = f->next) {
        rc = access_open(f);
        if (rc == 0) {
            f->said = 0;
            continue;
        }
        wd_log_error("cannot open the access log %s (group %s): %s; it stays where it was", f->path,
                     f->group, wd_log_file_why(rc));
        if (used < cap)
            used += (size_t)snprintf(err + used, cap - used,
                                     "%scannot open the access log %s (group %s): %s",
                                     used ? "; " : "", f->path, f->group, wd_log_file_why(rc));
    }
    if (used > 0 && used < cap)
        snprintf(err + used, cap - used, "; the logs that cannot be opened stay where they were");
    return used > 0 ? -1 : 0;
}
